/*
 * imap_session.h: the IMAP protocol (RFC 3501, RFC 9051) as a pure
 * engine, like server/pop3: bytes in through imap_session_input(), bytes
 * out through the write callback; TLS, the auth process and the sockets
 * are the daemon's, reached through callbacks, so the engine can be driven
 * byte by byte in tests and run in two halves in loftd: the login process
 * before authentication, the mail process after it.
 *
 * Flow: not authenticated (CAPABILITY, NOOP, LOGOUT, STARTTLS, LOGIN,
 * AUTHENTICATE with SASL-IR, ID, ENABLE) -> the check callback answers,
 * now or later (imap_session_auth_reply) -> on OK the engine answers the
 * tagged "OK [CAPABILITY ...] Logged in" itself and calls
 * cb->authenticated; input stops being consumed there (what follows is
 * the hand-over's: the daemon passes the unconsumed bytes to the mail
 * process) -> the mail process makes a session with
 * imap_session_new_authenticated and calls imap_session_login, which
 * opens the user's store -> authenticated / selected -> LOGOUT.
 *
 * This version serves: CAPABILITY, NOOP, LOGOUT, STARTTLS, LOGIN,
 * AUTHENTICATE, ID, ENABLE (CONDSTORE, QRESYNC, UTF8=ACCEPT of RFC 6855
 * and IMAP4rev2 of RFC 9051, each then on for the rest of the session;
 * other names accepted and not enabled), SELECT,
 * EXAMINE, CLOSE, UNSELECT, LIST, LSUB, STATUS, NAMESPACE, CHECK, IDLE
 * (with the daemon's change notification), FETCH / UID FETCH (index items
 * and streamed body sections), STORE, EXPUNGE, COPY, MOVE (UIDPLUS),
 * APPEND (with CATENATE of RFC 4469), CREATE, DELETE, RENAME, SUBSCRIBE,
 * UNSUBSCRIBE, SEARCH / UID SEARCH (RFC 5267 contexts: RETURN (UPDATE),
 * PARTIAL; CANCELUPDATE), COMPRESS DEFLATE (RFC 4978, delegated to the owner like
 * STARTTLS). Commands it does not serve yet are answered "NO [CANNOT] ...
 * not supported yet" and are not advertised.
 */
#ifndef LOFT_IMAP_SESSION_H
#define LOFT_IMAP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct user;
struct imap_session;

/* Bad commands in a row before the session is closed with BYE. */
#define IMAP_BAD_MAX		20
/* Longest SASL challenge the engine sends, before base64. */
#define IMAP_SASL_MAX		4096

enum imap_state {
	IMAP_STATE_NOT_AUTH,
	IMAP_STATE_AUTH,
	IMAP_STATE_SELECTED,
	IMAP_STATE_LOGOUT
};

enum imap_auth_result {
	IMAP_AUTH_OK,
	IMAP_AUTH_FAIL,
	IMAP_AUTH_TEMPFAIL,
	IMAP_AUTH_CONTINUE,	/* SASL: send the challenge, wait */
	IMAP_AUTH_PENDING	/* answered later: imap_session_auth_reply */
};

struct imap_callbacks {
	/* write: send len bytes to the client. Required. */
	void (*write)(void *ctx, const unsigned char *data, size_t len);
	/* check_plain: LOGIN. The password is wiped after the call. */
	enum imap_auth_result (*check_plain)(void *ctx, const char *user,
	    const char *pass);
	/* sasl: as pop3_callbacks.sasl (first: the AUTHENTICATE command,
	 * with its SASL-IR initial response if has_resp). */
	enum imap_auth_result (*sasl)(void *ctx, const char *mech, bool first,
	    const unsigned char *resp, size_t resp_len, bool has_resp,
	    const unsigned char **challenge_r, size_t *challenge_len_r,
	    const char **user_r);
	void (*sasl_abort)(void *ctx);
	/* start_tls: "OK Begin TLS negotiation now" was written: flush it,
	 * start TLS, discard plaintext received after the command. */
	void (*start_tls)(void *ctx);
	/* start_compress: COMPRESS DEFLATE came (authenticated or selected
	 * state). Return -1 if the connection is compressed already (by
	 * an earlier COMPRESS, or a lower layer): the engine answers NO
	 * [COMPRESSIONACTIVE]. Return 0 and the engine writes "OK DEFLATE
	 * active" next, then takes no input: once that OK has been sent
	 * (CONN_EV_DRAINED), switch the connection to deflate both ways,
	 * with every byte the client sent after the command (none of them
	 * consumed: imap_session_input returned short) as compressed
	 * input, then call imap_session_compress_started. NULL where the
	 * session cannot compress (the login process): COMPRESS=DEFLATE is
	 * then not advertised after login and COMPRESS is answered NO. */
	int (*start_compress)(void *ctx);
	/* authenticated: the tagged OK was written; hand the session over.
	 * The engine consumes no more input. Required before login. */
	void (*authenticated)(void *ctx, const char *user);
	/* closed: LOGOUT answered, or BYE sent: close after the output
	 * drains. Optional. */
	void (*closed)(void *ctx);
	/* selected: a folder was selected or unselected: the daemon asks
	 * imap_session_watches what to watch now. Optional. */
	void (*selected)(void *ctx);
};

struct imap_settings {
	bool tls_available;	/* offer STARTTLS (before TLS) */
	bool secured;		/* TLS already */
	bool allow_plaintext;	/* LOGIN and PLAIN/LOGIN without TLS */
	const char *mechanisms;	/* SASL mechanisms, space separated */
	size_t line_max;	/* 0: the parser's default */
	bool default_folders;	/* at login, make Sent, Drafts, Trash, Junk
				   and Archive for a user with only INBOX */
};

struct imap_stats {
	unsigned fetches;	/* FETCH commands */
	uint64_t fetched;	/* FETCH responses (messages) */
	unsigned bad;		/* bad commands so far */
	bool logout;		/* LOGOUT received */
};

/* imap_session_new: before authentication; nothing written yet (call
 * imap_session_greet). Settings strings are copied. */
/* imap_session_offer_compress: whether sessions of this process name
 * COMPRESS=DEFLATE among their capabilities (default yes; the daemon sets
 * imap_compress). A session whose owner gives no start_compress callback
 * never offers it, whatever this says. */
void imap_session_offer_compress(bool on);

struct imap_session *imap_session_new(const struct imap_settings *set,
    const struct imap_callbacks *cb, void *ctx);
/* imap_session_new_authenticated: for the mail process: user has logged
 * in (the login process answered the tagged OK); call imap_session_login
 * next, then feed the bytes the client sent after the login command. */
struct imap_session *imap_session_new_authenticated(
    const struct imap_settings *set, const struct imap_callbacks *cb,
    void *ctx, const char *user);
void imap_session_free(struct imap_session **s);
/* imap_session_greet: "* OK [CAPABILITY ...] loft IMAP ready". */
void imap_session_greet(struct imap_session *s);

/* imap_session_input: client bytes; returns how many were consumed:
 * fewer than len while a command waits (auth, hand-over, output being
 * streamed) or after LOGOUT; offer the rest again later. */
size_t imap_session_input(struct imap_session *s, const unsigned char *data,
    size_t len);
/* imap_session_output_ready: the output drained: continue a streamed
 * response, then run what waits. */
void imap_session_output_ready(struct imap_session *s);
/* imap_session_waiting: true while the engine takes no input (auth,
 * hand-over, a response being streamed). */
bool imap_session_waiting(const struct imap_session *s);

/* imap_session_auth_reply: the answer to a PENDING check_plain or sasl;
 * as if the callback had returned r. */
void imap_session_auth_reply(struct imap_session *s, enum imap_auth_result r,
    const unsigned char *challenge, size_t challenge_len, const char *user);
/* imap_session_tls_started: the connection speaks TLS now. */
void imap_session_tls_started(struct imap_session *s);
/* imap_session_compress_started: after cb->start_compress returned 0, the
 * connection is compressed now: the engine takes input again (feed it
 * what the transport inflates). Calling it at any other time is a bug
 * (panic). */
void imap_session_compress_started(struct imap_session *s);

/* imap_session_login: (mail process) open u's store. 0, or -1 after
 * writing "* BYE ..." (then cb->closed was called). */
int imap_session_login(struct imap_session *s, const struct user *u);
/* imap_session_changed: the daemon's notification that a watched folder
 * changed: an IDLE session syncs and reports at once; others at their
 * next command. */
void imap_session_changed(struct imap_session *s);
/* imap_session_idle_release: the client has been quiet: close the store
 * (reopened on the next command), as pop3_session_idle does. */
void imap_session_idle_release(struct imap_session *s);
/* imap_session_watches: what the daemon should watch for the selected
 * folder (Maildir new/ and cur/; or the mbox's entry in its directory
 * and the index's data.mdb, where an mbox message's flags live); count 0
 * when nothing is selected. Valid until the next call into the
 * session. */
struct imap_watch {
	const char *dir;
	const char *name;	/* NULL: any entry */
};
unsigned imap_session_watches(struct imap_session *s,
    struct imap_watch out[2]);

enum imap_state imap_session_state(const struct imap_session *s);
void imap_session_stats(const struct imap_session *s, struct imap_stats *st);

#endif
