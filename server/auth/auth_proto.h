/*
 * auth_proto.h: the records between the auth process and its two kinds of
 * peer (doc/design.md, "Process model"), carried by lib/ipc:
 *
 * - login channels: an unprivileged login process sends what the client
 *   typed and gets back a verdict; it never sees the user database. On
 *   success it also gets a one-time token, which it hands to the master
 *   with the client.
 * - master channels: the master redeems that token for the user record
 *   (AUTH_REQ_USER), so it never has to believe the login process about
 *   who logged in, and never reads the user database itself.
 * - smtpd channels: an smtpd process (unprivileged, as mail_owner) checks
 *   SMTP AUTH like a login process (no token: nothing is handed over, the
 *   smtpd process keeps the session) and asks whether a local recipient
 *   is a user (AUTH_REQ_EXISTS), since it cannot read the user database.
 *
 * Every request carries an ipc id chosen by the sender; its answer repeats
 * it. Fields, in order (ipc.h types):
 *
 *	login channel:
 *	AUTH_REQ_PLAIN		str service, str ip, u32 secure, str user,
 *				str password
 *	AUTH_REQ_SASL_START	str service, str ip, u32 secure, str mech,
 *				u32 has_initial, data initial
 *	AUTH_REQ_SASL_STEP	u32 session, data response
 *	AUTH_REQ_SASL_ABORT	u32 session
 *	AUTH_REQ_MECHS		u32 secure
 *	AUTH_RESP		u32 result, str user, str reason, data
 *				challenge, data token (answers every
 *				request but MECHS)
 *
 *	smtpd channel: the login channel's requests, and
 *	AUTH_REQ_EXISTS		str user
 *				answered by AUTH_RESP: OK (a user of that
 *				name exists; user is its canonical name),
 *				FAIL (no such user, or an invalid name) or
 *				TEMPFAIL (the user database could not be
 *				read); never counted as a failure, never
 *				delayed, no token
 *	AUTH_RESP_MECHS		str mechs (space-separated, upper case)
 *
 *	master channel:
 *	AUTH_REQ_USER		data token
 *	AUTH_RESP_USER		u32 result, str reason, str service,
 *				str ip, then a user record when result
 *				is OK (absent otherwise)
 *
 *	user record (auth_proto_add_user; also master -> mail process):
 *				str name, u32 uid, u32 gid, str home,
 *				str mail_location, u32 has_quota, u64 quota,
 *				u32 system
 *
 * service is "pop3", "imap", "smtp" or "submission"; secure is 0 or 1;
 * has_initial 0 means the client sent no initial response (initial is
 * then empty), 1 that it did, possibly empty. A SASL session is named by the ipc id of
 * its AUTH_REQ_SASL_START: STEP and ABORT carry that number.
 *
 * AUTH_RESP: result is one of enum auth_result; user is the canonical name
 * on OK, else what the client claimed if known, else ""; reason is for the
 * login process's log (never a password); challenge is the next server
 * challenge on CONTINUE (raw, to base64-encode), empty otherwise; token is
 * AUTH_TOKEN_LEN random bytes when a login (PLAIN or SASL) succeeded,
 * empty otherwise (also on the OK that answers an ABORT). An ABORT is
 * answered OK if the session existed, FAIL if not.
 *
 * AUTH_REQ_USER: token is exactly AUTH_TOKEN_LEN bytes, as the login
 * process got it. AUTH_RESP_USER: result is OK (the token was valid and
 * the user exists: the record follows), FAIL (an unknown token, which is
 * also what a used one is, since redeeming removes it; an expired token;
 * or the user is gone: reason says which) or TEMPFAIL (the user database
 * could not be read); never CONTINUE. A token is good once: whatever the
 * answer, it cannot be redeemed again. service and ip are
 * what the token was issued for ("" when the token is unknown), so the
 * master can check them against the connection it was handed.
 *
 * The user record carries what a mail process needs to become the user
 * and open the mailbox, never the password hash or the raw fields. uid and
 * gid are as user_lookup resolved them (they may be 0: the process that
 * switches to the user must refuse that).
 */
#ifndef LOFT_AUTH_PROTO_H
#define LOFT_AUTH_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ipc.h"
#include "user.h"

/* AUTH_TOKEN_LEN: bytes of a login token (128 random bits). */
#define AUTH_TOKEN_LEN		16

enum auth_proto_type {
	AUTH_REQ_PLAIN = 1,
	AUTH_REQ_SASL_START = 2,
	AUTH_REQ_SASL_STEP = 3,
	AUTH_REQ_SASL_ABORT = 4,
	AUTH_REQ_MECHS = 5,
	AUTH_REQ_USER = 6,		/* master channels only */
	AUTH_REQ_EXISTS = 7,		/* smtpd channels only */
	AUTH_RESP = 100,
	AUTH_RESP_MECHS = 101,
	AUTH_RESP_USER = 102
};

enum auth_result {
	AUTH_RESULT_OK = 0,
	AUTH_RESULT_FAIL = 1,
	AUTH_RESULT_TEMPFAIL = 2,	/* database unreadable: try later */
	AUTH_RESULT_CONTINUE = 3	/* SASL: send the challenge; never
					 * in AUTH_RESP_USER */
};

/*
 * A decoded request. Strings and data point into the ipc_msg it was
 * decoded from and live as long as its payload does; fields a type does
 * not carry are NULL / 0. initial is NULL when has_initial is false.
 */
struct auth_req {
	uint32_t type;		/* enum auth_proto_type */
	uint32_t id;
	const char *service;
	const char *ip;
	bool secure;
	const char *user;		/* PLAIN, EXISTS */
	const char *password;
	const char *mech;
	bool has_initial;
	const unsigned char *initial;	/* START: initial response */
	size_t initial_len;
	uint32_t session;		/* STEP, ABORT */
	const unsigned char *data;	/* STEP: client response */
	size_t data_len;
	const unsigned char *token;	/* USER: AUTH_TOKEN_LEN bytes */
	size_t token_len;
};

/* A decoded AUTH_RESP (or, with mechs set, AUTH_RESP_MECHS). Pointers
 * into the ipc_msg as for struct auth_req. */
struct auth_resp {
	uint32_t type;
	uint32_t id;
	uint32_t result;		/* enum auth_result */
	const char *user;
	const char *reason;
	const unsigned char *challenge;
	size_t challenge_len;
	const unsigned char *token;	/* NULL, or AUTH_TOKEN_LEN bytes */
	size_t token_len;
	const char *mechs;		/* AUTH_RESP_MECHS only */
};

/* A decoded AUTH_RESP_USER. Strings point into the ipc_msg as for struct
 * auth_req. */
struct auth_user_resp {
	uint32_t id;
	uint32_t result;		/* OK, FAIL or TEMPFAIL */
	const char *reason;
	const char *service;		/* as the token was issued, or "" */
	const char *ip;
	struct user *user;	/* OK only, else NULL; owned by the caller:
				 * user_free */
};

/*
 * auth_proto_req_encode: build req (by req->type, with req->id) into m,
 * which is initialized first. NULL strings are sent as "". Returns 0, or
 * -1 with *error_r (an unknown type, a field too long for one record, an
 * AUTH_REQ_USER token that is not AUTH_TOKEN_LEN bytes).
 */
int auth_proto_req_encode(struct ipc_msg *m, const struct auth_req *req,
    const char **error_r);
/*
 * auth_proto_req_decode: read the request in m into *req_r. Returns 0, or
 * -1 with *error_r (static text) for an unknown type, a missing,
 * truncated or extra field, secure or has_initial other than 0 or 1, an
 * unknown service, or an AUTH_REQ_USER token that is not AUTH_TOKEN_LEN
 * bytes: the peer broke the protocol and its channel should be closed.
 * Which channel may send which type is the caller's business.
 */
int auth_proto_req_decode(struct ipc_msg *m, struct auth_req *req_r,
    const char **error_r);

/* auth_proto_resp_encode: AUTH_RESP answering id into m (initialized
 * first). user and reason may be NULL (sent as ""); challenge and token
 * may be NULL with len 0. Returns 0, or -1 with *error_r (too long, or
 * token_len neither 0 nor AUTH_TOKEN_LEN). */
int auth_proto_resp_encode(struct ipc_msg *m, uint32_t id,
    enum auth_result result, const char *user, const char *reason,
    const unsigned char *challenge, size_t challenge_len,
    const unsigned char *token, size_t token_len, const char **error_r);
/* auth_proto_mechs_encode: AUTH_RESP_MECHS answering id into m. */
int auth_proto_mechs_encode(struct ipc_msg *m, uint32_t id,
    const char *mechs, const char **error_r);
/* auth_proto_resp_decode: read an AUTH_RESP or AUTH_RESP_MECHS. Returns
 * 0, or -1 with *error_r for anything else or a malformed record (a token
 * neither empty nor AUTH_TOKEN_LEN bytes included). */
int auth_proto_resp_decode(struct ipc_msg *m, struct auth_resp *resp_r,
    const char **error_r);

/* auth_proto_user_req_encode: AUTH_REQ_USER with id into m (initialized
 * first). The token comes from a login process: a len other than
 * AUTH_TOKEN_LEN is refused here, -1 with *error_r, so a bad one is
 * answered by the master without closing its channel. */
int auth_proto_user_req_encode(struct ipc_msg *m, uint32_t id,
    const unsigned char *token, size_t len, const char **error_r);
/*
 * auth_proto_user_resp_encode: AUTH_RESP_USER answering id into m
 * (initialized first). reason, service and ip may be NULL (sent as "").
 * u is the user's record, required when result is OK and refused
 * otherwise. Returns 0, or -1 with *error_r (result CONTINUE or unknown,
 * u present or missing against that rule, a field too long, a record
 * auth_proto_add_user refuses).
 */
int auth_proto_user_resp_encode(struct ipc_msg *m, uint32_t id,
    enum auth_result result, const char *reason, const char *service,
    const char *ip, const struct user *u, const char **error_r);
/*
 * auth_proto_user_resp_decode: read an AUTH_RESP_USER into *r. Returns 0
 * (r->user is then the caller's to user_free when non-NULL), or -1 with
 * *error_r and nothing allocated for another type, a result other than
 * OK, FAIL or TEMPFAIL, a missing, truncated or extra field, a record
 * auth_proto_get_user refuses, or a service that is neither "" nor valid
 * ("" on OK is refused too).
 */
int auth_proto_user_resp_decode(struct ipc_msg *m, struct auth_user_resp *r,
    const char **error_r);

/*
 * auth_proto_add_user: append u as a user record (see the top) to m.
 * u->home NULL is sent as "". Returns 0, or -1 when the record does not
 * fit or u->mail_location is NULL or empty (a struct straight from
 * userdb, not from user_lookup); the failure is sticky in m->error as
 * for the ipc_add_*() builders.
 */
int auth_proto_add_user(struct ipc_msg *m, const struct user *u);
/*
 * auth_proto_get_user: read a user record from m at its read position
 * into a new *u_r (pwhash and fields are "", so user_free works). The
 * record may be followed by other fields: the caller ends with
 * ipc_get_end. Returns 0, or -1 with *error_r (static text) and *u_r NULL
 * for a truncated field, a name user_name_valid refuses, a home neither
 * empty nor absolute, an empty mail_location, has_quota or system other
 * than 0 or 1, a quota that disagrees with has_quota (0 with a quota, or
 * a quota of 0), or uid or gid (uint32_t)-1 (USER_UID_UNSET: setresuid
 * would read it as "leave unchanged").
 */
int auth_proto_get_user(struct ipc_msg *m, struct user **u_r,
    const char **error_r);

/* auth_proto_service_valid: service is one auth_proto accepts. */
bool auth_proto_service_valid(const char *service);

#endif
