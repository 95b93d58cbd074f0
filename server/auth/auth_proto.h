/*
 * auth_proto.h: the records between a login process and the auth process
 * (doc/design.md, "Process model"), carried by lib/ipc. The login side is
 * unprivileged and never sees the user database: it sends what the client
 * typed and gets back a verdict.
 *
 * Every request carries an ipc id chosen by the sender; its answer repeats
 * it. Fields, in order (ipc.h types):
 *
 *	AUTH_REQ_PLAIN		str service, str ip, u32 secure, str user,
 *				str password
 *	AUTH_REQ_SASL_START	str service, str ip, u32 secure, str mech,
 *				u32 has_initial, data initial
 *	AUTH_REQ_SASL_STEP	u32 session, data response
 *	AUTH_REQ_SASL_ABORT	u32 session
 *	AUTH_REQ_MECHS		u32 secure
 *	AUTH_RESP		u32 result, str user, str reason, data
 *				challenge (answers every request but MECHS)
 *	AUTH_RESP_MECHS		str mechs (space-separated, upper case)
 *
 * service is "pop3", "imap" or "smtp"; secure is 0 or 1; has_initial 0
 * means the client sent no initial response (initial is then empty), 1
 * that it did, possibly empty. A SASL session is named by the ipc id of
 * its AUTH_REQ_SASL_START: STEP and ABORT carry that number.
 *
 * AUTH_RESP: result is one of enum auth_result; user is the canonical name
 * on OK, else what the client claimed if known, else ""; reason is for the
 * login process's log (never a password); challenge is the next server
 * challenge on CONTINUE (raw, to base64-encode), empty otherwise. An ABORT
 * is answered OK if the session existed, FAIL if not.
 */
#ifndef LOFT_AUTH_PROTO_H
#define LOFT_AUTH_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ipc.h"

enum auth_proto_type {
	AUTH_REQ_PLAIN = 1,
	AUTH_REQ_SASL_START = 2,
	AUTH_REQ_SASL_STEP = 3,
	AUTH_REQ_SASL_ABORT = 4,
	AUTH_REQ_MECHS = 5,
	AUTH_RESP = 100,
	AUTH_RESP_MECHS = 101
};

enum auth_result {
	AUTH_RESULT_OK = 0,
	AUTH_RESULT_FAIL = 1,
	AUTH_RESULT_TEMPFAIL = 2,	/* database unreadable: try later */
	AUTH_RESULT_CONTINUE = 3	/* SASL: send the challenge */
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
	const char *user;
	const char *password;
	const char *mech;
	bool has_initial;
	const unsigned char *initial;	/* START: initial response */
	size_t initial_len;
	uint32_t session;		/* STEP, ABORT */
	const unsigned char *data;	/* STEP: client response */
	size_t data_len;
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
	const char *mechs;		/* AUTH_RESP_MECHS only */
};

/*
 * auth_proto_req_encode: build req (by req->type, with req->id) into m,
 * which is initialized first. NULL strings are sent as "". Returns 0, or
 * -1 with *error_r (an unknown type, a field too long for one record).
 */
int auth_proto_req_encode(struct ipc_msg *m, const struct auth_req *req,
    const char **error_r);
/*
 * auth_proto_req_decode: read the request in m into *req_r. Returns 0, or
 * -1 with *error_r (static text) for an unknown type, a missing,
 * truncated or extra field, secure or has_initial other than 0 or 1, or
 * an unknown service: the peer broke the protocol and its channel should
 * be closed.
 */
int auth_proto_req_decode(struct ipc_msg *m, struct auth_req *req_r,
    const char **error_r);

/* auth_proto_resp_encode: AUTH_RESP answering id into m (initialized
 * first). user and reason may be NULL (sent as ""); challenge may be NULL
 * with len 0. Returns 0, or -1 with *error_r (too long). */
int auth_proto_resp_encode(struct ipc_msg *m, uint32_t id,
    enum auth_result result, const char *user, const char *reason,
    const unsigned char *challenge, size_t challenge_len,
    const char **error_r);
/* auth_proto_mechs_encode: AUTH_RESP_MECHS answering id into m. */
int auth_proto_mechs_encode(struct ipc_msg *m, uint32_t id,
    const char *mechs, const char **error_r);
/* auth_proto_resp_decode: read an AUTH_RESP or AUTH_RESP_MECHS. Returns
 * 0, or -1 with *error_r for anything else or a malformed record. */
int auth_proto_resp_decode(struct ipc_msg *m, struct auth_resp *resp_r,
    const char **error_r);

/* auth_proto_service_valid: service is one auth_proto accepts. */
bool auth_proto_service_valid(const char *service);

#endif
