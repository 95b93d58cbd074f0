/*
 * pop3_session.h: the POP3 protocol (RFC 1939, 2449, 2595, 3206, 5034)
 * as a pure engine: bytes in through pop3_session_input(), bytes out
 * through the write callback. No sockets, no TLS, no password checking:
 * the I/O layer, TLS and the auth process are reached through callbacks,
 * so the engine can be driven byte by byte in tests and plugged into
 * loftd's connection layer.
 *
 * Flow: AUTHORIZATION (USER/PASS, AUTH, STLS, CAPA, QUIT) -> the auth
 * callback says OK, at once or later through pop3_session_auth_reply()
 * -> the engine calls cb->authenticated(ctx, user) and waits (further
 * input is queued); the daemon side then calls pop3_session_login() with
 * the user record, at once or later -> the mailbox is opened ->
 * TRANSACTION -> QUIT -> UPDATE (deletions) -> closed.
 *
 * loftd runs the engine twice per client: in the login process up to
 * cb->authenticated, which hands the client over with what it pipelined
 * (pop3_session_export_pending), and in the mail process, which resumes
 * there (pop3_session_new_authenticated, the exported bytes as input,
 * pop3_session_login).
 *
 * Pipelining: complete lines are queued (at most POP3_QUEUE_MAX bytes, or
 * one line of line_max if that is more) and answered in order. RETR/TOP
 * convert a message into chunks of POP3_CHUNK to 2 * POP3_CHUNK bytes (a
 * message smaller than that goes out whole, with its +OK and "." line,
 * in one call): one chunk per pop3_session_output_ready() call; queued
 * commands run when the message is done. In TRANSACTION, once
 * POP3_CHUNK bytes were written since the last output_ready call, queued
 * commands wait for the next one, so that pipelined RETRs of small
 * messages share a write to the client yet do not pile up unsent.
 */
#ifndef LOFT_POP3_SESSION_H
#define LOFT_POP3_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;
struct user;
struct pop3_session;

/* A command line, including its CRLF (RFC 2449 section 4): the default
 * and least line_max, and the largest line_max (pop3_line_limit). */
#define POP3_LINE_MAX		255
#define POP3_LINE_MAX_LIMIT	65536
/* Bad commands before the session is closed. */
#define POP3_BAD_MAX		10
/* Bytes of pipelined lines kept while a command is in progress. */
#define POP3_QUEUE_MAX		4096
/* Message bytes read from storage per output chunk. */
#define POP3_CHUNK		(32 * 1024)
/* Longest SASL challenge the engine sends, before base64. */
#define POP3_SASL_MAX		1024
/* Most bytes pop3_session_export_pending appends for a session with
 * line limit line_max (a queue of lines, at most POP3_BAD_MAX over-long
 * ones, a partial line). @UNSAFE: hand-computed from the queue record
 * layout in pop3_session.c. */
#define POP3_EXPORT_MAX(line_max) \
	(POP3_QUEUE_MAX + (POP3_BAD_MAX + 2) * ((size_t)(line_max) + 4))

enum pop3_state {
	POP3_STATE_AUTHORIZATION,
	POP3_STATE_TRANSACTION,
	POP3_STATE_UPDATE,
	POP3_STATE_CLOSED
};

enum pop3_auth_result {
	POP3_AUTH_OK,
	POP3_AUTH_FAIL,
	POP3_AUTH_TEMPFAIL,
	POP3_AUTH_CONTINUE,	/* SASL only: send *challenge, wait */
	/*
	 * check_plain and sasl only: the answer comes later through
	 * pop3_session_auth_reply(). Until then the engine answers nothing
	 * and runs nothing; input is queued as while waiting for login. The
	 * password or response passed to the callback is wiped when it
	 * returns: copy what the asynchronous check needs.
	 */
	POP3_AUTH_PENDING
};

struct pop3_callbacks {
	/* write: send len bytes to the client. Required. */
	void (*write)(void *ctx, const unsigned char *data, size_t len);
	/* check_plain: USER/PASS. The password is wiped after the call.
	 * May return PENDING (not CONTINUE). */
	enum pop3_auth_result (*check_plain)(void *ctx, const char *user,
	    const char *pass);
	/*
	 * sasl: one step of mechanism mech (upper case, one of the
	 * settings' mechanisms). first: the AUTH command itself (resp is
	 * the initial response, has_resp false if none was given). resp is
	 * decoded (may hold NUL bytes). CONTINUE: *challenge_r (at most
	 * POP3_SASL_MAX bytes, the callback's memory, valid until its next
	 * call) is sent base64-encoded. OK: *user_r is the authenticated
	 * name (callback's memory, valid until the next call). PENDING:
	 * none of the out-parameters is read; the reply brings them.
	 */
	enum pop3_auth_result (*sasl)(void *ctx, const char *mech, bool first,
	    const unsigned char *resp, size_t resp_len, bool has_resp,
	    const unsigned char **challenge_r, size_t *challenge_len_r,
	    const char **user_r);
	/* sasl_abort: the exchange ended without OK (cancel, bad base64). */
	void (*sasl_abort)(void *ctx);
	/* start_tls: called after "+OK Begin TLS negotiation" was written:
	 * the I/O layer must flush that, start TLS, and discard any
	 * plaintext it received and has not passed in (the engine already
	 * discarded what it was given after the STLS line). */
	void (*start_tls)(void *ctx);
	/* authenticated: user passed; call pop3_session_login() or
	 * pop3_session_login_failed() now or later. Required. */
	void (*authenticated)(void *ctx, const char *user);
	/* closed: the engine is done (QUIT answered, or too many errors);
	 * close the connection after the output drains. Optional. */
	void (*closed)(void *ctx);
};

struct pop3_settings {
	bool tls_available;	/* offer STLS (before TLS) */
	bool secured;		/* the connection is TLS already */
	bool allow_plaintext;	/* USER/PASS and PLAIN/LOGIN without TLS */
	const char *mechanisms;	/* SASL mechanisms, space separated,
				   upper case, e.g. "PLAIN LOGIN" */
	size_t line_max;	/* longest command line, CRLF included:
				   0 for POP3_LINE_MAX, else POP3_LINE_MAX ..
				   POP3_LINE_MAX_LIMIT (pop3_line_limit);
				   also bounds a SASL response line */
	unsigned login_delay;	/* seconds between logins of a user, 0 =
				   any (pop3_login_delay; RFC 2449
				   LOGIN-DELAY, [LOGIN-DELAY] if sooner) */
	bool expire_now;	/* EXPIRE 0 (pop3_expire = 0): a message
				   RETR sent is deleted at QUIT like a DELE;
				   else EXPIRE NEVER */
};

/* What a session did, for the daemon's logout line (pop3_session_stats). */
struct pop3_stats {
	unsigned messages;	/* in the snapshot (taken at the first
				   command after login), 0 before */
	unsigned retr, top;	/* RETR / TOP that started sending a message */
	unsigned dele;		/* marked deleted at QUIT, or now */
	uint64_t size;		/* of the snapshot (CRLF sizes) */
	/* Message bytes handed to cb->write for RETR / TOP: after CRLF
	 * conversion and dot-stuffing, with the CRLF added to a message
	 * without a final newline, without the +OK line and the final
	 * ".\r\n". */
	uint64_t retr_bytes, top_bytes;
	uint64_t dele_bytes;	/* CRLF sizes of the dele messages */
	bool quit;		/* QUIT received in TRANSACTION */
	unsigned bad;		/* bad commands; POP3_BAD_MAX or more: the
				   engine closed the session for them */
};

/* pop3_session_new: nothing is written yet (call pop3_session_greet).
 * The settings strings are copied; cb and ctx are borrowed. A line_max
 * out of range is a bug (log_panic). */
struct pop3_session *pop3_session_new(const struct pop3_settings *set,
    const struct pop3_callbacks *cb, void *ctx);
/*
 * pop3_session_new_authenticated: the mail process's side of a hand-over.
 * A session in AUTHORIZATION already waiting for pop3_session_login() for
 * user (at most USER_NAME_MAX bytes, else log_panic), as after
 * cb->authenticated, which is not called; no greeting is ever written.
 * Feed it the bytes pop3_session_export_pending gave the login process
 * with pop3_session_input (they are queued), then call
 * pop3_session_login(), which answers "+OK Logged in" and runs them. Use
 * the login process's settings (the same line_max in particular).
 * Arguments as for pop3_session_new.
 */
struct pop3_session *pop3_session_new_authenticated(
    const struct pop3_settings *set, const struct pop3_callbacks *cb,
    void *ctx, const char *user);
/* pop3_session_free: without QUIT nothing is deleted. *s set NULL. Fine
 * while an authentication is pending: its reply must then not be given.
 * Inside a SASL exchange, pending or not, cb->sasl_abort is called;
 * nothing is called after this returns. */
void pop3_session_free(struct pop3_session **s);
void pop3_session_greet(struct pop3_session *s);

/*
 * pop3_session_input: bytes from the client. Returns how many were
 * consumed: fewer than len only when the pipeline queue is full (keep the
 * rest, stop reading, offer it again after output_ready) or the session
 * closed. After STLS, everything after the STLS line is consumed and
 * dropped. Lines end in LF or CRLF; a line longer than line_max gets
 * "-ERR Line too long" (in order) and its bytes are skipped. The rest is
 * offered again after output_ready, auth_reply or login.
 */
size_t pop3_session_input(struct pop3_session *s, const unsigned char *data,
    size_t len);
/* pop3_session_output_ready: the output written so far drained (call it
 * each time it has, streaming or not): send the next chunk of a message
 * or listing being sent, then run queued commands. */
void pop3_session_output_ready(struct pop3_session *s);
/* pop3_session_want_output: the engine waits for output_ready before it
 * goes on: a message or listing is being streamed, or queued commands
 * wait for the output to drain. Offer no input meanwhile (it would only
 * be queued). */
bool pop3_session_want_output(const struct pop3_session *s);

/* pop3_session_login: after cb->authenticated: open u's mailbox (u is
 * borrowed for this call) and answer +OK, -ERR [IN-USE] or
 * -ERR [SYS/TEMP]. pop3_session_login_failed: the daemon side could not
 * find or switch to the user: -ERR [SYS/TEMP], back to AUTHORIZATION. */
void pop3_session_login(struct pop3_session *s, const struct user *u);
void pop3_session_login_failed(struct pop3_session *s);
/*
 * pop3_session_auth_reply: the answer to a check_plain or sasl call that
 * returned POP3_AUTH_PENDING; the engine goes on exactly as if the
 * callback had returned r, then runs the queued input. r is not PENDING.
 * During SASL: CONTINUE sends challenge (at most POP3_SASL_MAX bytes,
 * borrowed for this call) and the next client line is the response; OK
 * authenticates user (NULL as ""). For USER/PASS: OK authenticates user,
 * the canonical name from the auth process, or the USER name if user is
 * NULL or "". Any other r fails as from the callback. Calling it with
 * nothing pending (also from inside the callback, before it returned
 * PENDING) or with r == PENDING is a bug: log_panic.
 */
void pop3_session_auth_reply(struct pop3_session *s, enum pop3_auth_result r,
    const unsigned char *challenge, size_t challenge_len, const char *user);

/*
 * pop3_session_export_pending: the login process's side of a hand-over,
 * only while waiting for pop3_session_login (log_panic otherwise).
 * Appends to out the client bytes s holds and has not run: each queued
 * line re-terminated with CRLF (bare LF if CR would push it past
 * line_max: it came with a bare LF then), in order; each queued over-long
 * line as line_max + 1 'X' bytes and CRLF, so that an engine with the
 * same line_max answers "-ERR Line too long" in its place, up to
 * POP3_BAD_MAX of them (the next engine closes there, so nothing after
 * that one is exported); then the partial line, as received, or, if it
 * is being skipped as over-long, line_max + 1 'X' bytes (skipped again).
 * At most POP3_EXPORT_MAX(line_max) bytes: out must have room for them
 * (log_panic otherwise). What was exported is wiped from s. It may be
 * called from inside cb->authenticated when that runs from
 * pop3_session_auth_reply (everything fed is queued by then); when a
 * callback said OK at once, cb->authenticated runs inside
 * pop3_session_input, and the rest of that input is queued only after
 * it returns: export after pop3_session_input returned. Bytes
 * pop3_session_input did not consume (queue full) or was not yet given
 * come after the exported ones.
 */
void pop3_session_export_pending(struct pop3_session *s, struct buf *out);

/*
 * pop3_session_stats: what the session did so far into *st_r (see struct
 * pop3_stats): all zero before a login opened the mailbox. dele and
 * dele_bytes are taken at QUIT (whether or not the deletion then
 * succeeded: a failure is logged by the engine), or computed now while
 * in TRANSACTION.
 */
void pop3_session_stats(const struct pop3_session *s, struct pop3_stats *st_r);

/* pop3_session_tls_started: the connection is now TLS. */
void pop3_session_tls_started(struct pop3_session *s);

/* pop3_session_idle: the client has been quiet for a while: let go of
 * what can be opened again (the mailbox's index, pop3_mailbox_release)
 * and the streaming buffers kept from one message to the next, so that
 * idle sessions stay small. Harmless at any time; does nothing while a
 * message or listing is being sent. */
void pop3_session_idle(struct pop3_session *s);

enum pop3_state pop3_session_state(const struct pop3_session *s);

#endif
