/*
 * pop3_session.h: the POP3 protocol (RFC 1939, 2449, 2595, 3206, 5034)
 * as a pure engine: bytes in through pop3_session_input(), bytes out
 * through the write callback. No sockets, no TLS, no password checking:
 * the I/O layer, TLS and the auth process are reached through callbacks,
 * so the engine can be driven byte by byte in tests and plugged into
 * loftd's connection layer.
 *
 * Flow: AUTHORIZATION (USER/PASS, AUTH, STLS, CAPA, QUIT) -> the auth
 * callback says OK -> the engine calls cb->authenticated(ctx, user) and
 * waits (further input is queued); the daemon side then calls
 * pop3_session_login() with the user record, at once or later -> the
 * mailbox is opened -> TRANSACTION -> QUIT -> UPDATE (deletions) -> closed.
 *
 * Pipelining: complete lines are queued (at most POP3_QUEUE_MAX bytes) and
 * answered in order. While RETR/TOP stream a message, one chunk of at most
 * about 2 * POP3_CHUNK bytes goes out per pop3_session_output_ready() call;
 * queued commands run when the message is done.
 */
#ifndef LOFT_POP3_SESSION_H
#define LOFT_POP3_SESSION_H

#include <stdbool.h>
#include <stddef.h>

struct user;
struct pop3_session;

/* A command line, including its CRLF (RFC 2449 section 4). */
#define POP3_LINE_MAX		255
/* Bad commands before the session is closed. */
#define POP3_BAD_MAX		10
/* Bytes of pipelined lines kept while a command is in progress. */
#define POP3_QUEUE_MAX		4096
/* Message bytes read from storage per output chunk. */
#define POP3_CHUNK		(32 * 1024)
/* Longest SASL challenge the engine sends, before base64. */
#define POP3_SASL_MAX		1024

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
	POP3_AUTH_CONTINUE	/* SASL only: send *challenge, wait */
};

struct pop3_callbacks {
	/* write: send len bytes to the client. Required. */
	void (*write)(void *ctx, const unsigned char *data, size_t len);
	/* check_plain: USER/PASS. The password is wiped after the call. */
	enum pop3_auth_result (*check_plain)(void *ctx, const char *user,
	    const char *pass);
	/*
	 * sasl: one step of mechanism mech (upper case, one of the
	 * settings' mechanisms). first: the AUTH command itself (resp is
	 * the initial response, has_resp false if none was given). resp is
	 * decoded (may hold NUL bytes). CONTINUE: *challenge_r (at most
	 * POP3_SASL_MAX bytes, the callback's memory, valid until its next
	 * call) is sent base64-encoded. OK: *user_r is the authenticated
	 * name (callback's memory, valid until the next call).
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
};

/* pop3_session_new: nothing is written yet (call pop3_session_greet).
 * The settings strings are copied; cb and ctx are borrowed. */
struct pop3_session *pop3_session_new(const struct pop3_settings *set,
    const struct pop3_callbacks *cb, void *ctx);
/* pop3_session_free: without QUIT nothing is deleted. *s set NULL. */
void pop3_session_free(struct pop3_session **s);
void pop3_session_greet(struct pop3_session *s);

/*
 * pop3_session_input: bytes from the client. Returns how many were
 * consumed: fewer than len only when the pipeline queue is full (keep the
 * rest, stop reading, offer it again after output_ready) or the session
 * closed. After STLS, everything after the STLS line is consumed and
 * dropped. Lines end in LF or CRLF; a line longer than POP3_LINE_MAX gets
 * "-ERR line too long" (in order) and its bytes are skipped.
 */
size_t pop3_session_input(struct pop3_session *s, const unsigned char *data,
    size_t len);
/* pop3_session_output_ready: the previous output drained: send the next
 * chunk of a message being sent, then run queued commands. */
void pop3_session_output_ready(struct pop3_session *s);
/* pop3_session_want_output: a message is being streamed. */
bool pop3_session_want_output(const struct pop3_session *s);

/* pop3_session_login: after cb->authenticated: open u's mailbox (u is
 * borrowed for this call) and answer +OK, -ERR [IN-USE] or
 * -ERR [SYS/TEMP]. pop3_session_login_failed: the daemon side could not
 * find or switch to the user: -ERR [SYS/TEMP], back to AUTHORIZATION. */
void pop3_session_login(struct pop3_session *s, const struct user *u);
void pop3_session_login_failed(struct pop3_session *s);
/* pop3_session_tls_started: the connection is now TLS. */
void pop3_session_tls_started(struct pop3_session *s);

enum pop3_state pop3_session_state(const struct pop3_session *s);

#endif
