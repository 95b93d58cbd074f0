/*
 * smtp_session.h: the ESMTP server protocol (RFC 5321) and, by a flag,
 * LMTP (RFC 2033), as a pure engine: bytes in through smtp_session_input(),
 * bytes out through the write callback, no socket, no TLS, no policy. The
 * daemon side decides MAIL, RCPT and the fate of each message through
 * callbacks that answer at once or later, and receives message data as it
 * arrives, never the whole message at once.
 *
 * Extensions (each advertised only when set in smtp_settings.extensions):
 * SIZE (RFC 1870), 8BITMIME (RFC 6152), PIPELINING (RFC 2920), STARTTLS
 * (RFC 3207), AUTH (RFC 4954), ENHANCEDSTATUSCODES (RFC 2034, 3463),
 * SMTPUTF8 (RFC 6531), CHUNKING (RFC 3030), DSN (RFC 3461).
 *
 * Flow of a message: MAIL -> cb->mail -> smtp_session_reply(); each RCPT
 * -> cb->rcpt -> smtp_session_reply(); DATA (354) or BDAT: cb->data_begin,
 * then cb->data with the message bytes as they arrive (dot-unstuffed, CRLF
 * line ends) -> at the final dot or BDAT LAST, cb->data_end -> the daemon
 * stores and fsyncs, then calls smtp_session_data_done() (LMTP: once per
 * accepted recipient, in RCPT order). A transaction that ends any other
 * way (RSET, HELO/EHLO, STARTTLS, a message the engine refused, too many
 * errors, smtp_session_free) ends with cb->reset: discard what was
 * received.
 *
 * Strict input: every line ends in CRLF. A command line with a bare CR or
 * LF is refused (500 5.5.2). In DATA, only CRLF "." CRLF ends the message;
 * a bare CR or LF anywhere in DATA or BDAT content makes the engine refuse
 * the message when it ends (550 5.6.0), so no byte sequence turns one
 * message into two (SMTP smuggling, CVE-2023-51764). After STARTTLS every
 * byte that came with or after the command is dropped (CVE-2011-0411).
 *
 * LMTP (smtp_settings.lmtp, RFC 2033): LHLO instead of HELO and EHLO,
 * PIPELINING and ENHANCEDSTATUSCODES always on; DATA (or BDAT) without an
 * accepted recipient is 503 (section 4.2), and a message the engine
 * refuses when it ends (bare CR or LF, size, line length) is answered once
 * per accepted recipient, as every end of data is, so that the client's
 * count of replies stays right.
 *
 * Pipelining: replies are written in command order; the replies of the
 * commands found in one input call are collected and written together
 * (in pieces of SMTP_OUT_FLUSH bytes at most). While the engine waits for
 * a decision (MAIL, RCPT, AUTH, data_done), input is kept unprocessed, at
 * most SMTP_QUEUE_MAX bytes.
 */
#ifndef LOFT_SMTP_SESSION_H
#define LOFT_SMTP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp_addr.h"

struct smtp_session;

/*
 * Limits. A command line, CRLF included, is at most SMTP_LINE_MAX bytes
 * (RFC 5321 section 4.5.3.1.4), except MAIL and RCPT, whose extensions
 * raise it (RFC 4954 section 5: AUTH= +500; RFC 3461 section 4: ENVID and
 * RET +100 for MAIL, NOTIFY and ORCPT +500 for RCPT; RFC 1870: SIZE +26;
 * RFC 6531: SMTPUTF8 +10; BODY= +15): 512 + 651 for MAIL, rounded up to
 * SMTP_PARAM_LINE_MAX. A SASL response line may be SMTP_SASL_LINE_MAX
 * (RFC 4954 section 4). A line longer than SMTP_PARAM_LINE_MAX (in SASL,
 * SMTP_SASL_LINE_MAX) is skipped to its end as it arrives, never stored;
 * it and a stored line over its command's limit are answered 500 5.5.2
 * (500 5.5.6 in SASL) and not run.
 */
#define SMTP_LINE_MAX		512
#define SMTP_PARAM_LINE_MAX	1280
#define SMTP_SASL_LINE_MAX	12288
/*
 * A line of message text, CRLF included: RFC 5321 section 4.5.3.1.6 says
 * 1000, but the same section asks servers to be liberal, and real mail
 * (single-line HTML from generators) breaks it; message data is streamed,
 * so a long line costs no memory here. The default refuses only absurd
 * lines; the outbound side folds lines to 998 for peers that care.
 */
#define SMTP_TEXT_LINE_MIN	1000
#define SMTP_TEXT_LINE_DEFAULT	65536
#define SMTP_TEXT_LINE_LIMIT	(16 * 1024 * 1024)
/* smtpd_recipient_limit (Postfix's default; RFC 5321 4.5.3.1.8 asks for
 * at least 100) and smtpd_hard_error_limit defaults. */
#define SMTP_RCPT_MAX_DEFAULT	1000
#define SMTP_ERRORS_MAX_DEFAULT	20
/* Unprocessed input kept while the engine waits for a decision. */
#define SMTP_QUEUE_MAX		4096
/* Replies collected before a write. */
#define SMTP_OUT_FLUSH		16384
/* Message bytes collected before a cb->data call. */
#define SMTP_DATA_CHUNK		8192
/* Longest SASL challenge, before base64; longest reply text. */
#define SMTP_SASL_MAX		1024
#define SMTP_TEXT_MAX		400
/* ESMTP parameters of one MAIL or RCPT; ENVID (RFC 3461: 100) and ORCPT
 * (500) values as sent, xtext-encoded. */
#define SMTP_PARAMS_MAX		8
#define SMTP_ENVID_MAX		100
#define SMTP_ORCPT_MAX		500
#define SMTP_AUTH_PARAM_MAX	500
#define SMTP_USER_MAX		255
#define SMTP_HELO_MAX		255

/* smtp_settings.extensions */
#define SMTP_EXT_SIZE		(1u << 0)
#define SMTP_EXT_8BITMIME	(1u << 1)
#define SMTP_EXT_PIPELINING	(1u << 2)
#define SMTP_EXT_STARTTLS	(1u << 3)
#define SMTP_EXT_AUTH		(1u << 4)
#define SMTP_EXT_ENHANCED	(1u << 5)	/* ENHANCEDSTATUSCODES */
#define SMTP_EXT_SMTPUTF8	(1u << 6)
#define SMTP_EXT_CHUNKING	(1u << 7)
#define SMTP_EXT_DSN		(1u << 8)
#define SMTP_EXT_ALL		0x1ffu

enum smtp_state {
	SMTP_STATE_INIT,	/* greeted (or after STARTTLS): needs HELO */
	SMTP_STATE_READY,	/* no transaction */
	SMTP_STATE_MAIL,	/* MAIL accepted; RCPTs, then DATA or BDAT */
	SMTP_STATE_DATA,	/* reading DATA content */
	SMTP_STATE_CHUNKING,	/* between BDAT chunks */
	SMTP_STATE_END,		/* message in, waiting for data_done */
	SMTP_STATE_CLOSED
};

enum smtp_auth_result {
	SMTP_AUTH_OK,
	SMTP_AUTH_FAIL,
	SMTP_AUTH_TEMPFAIL,
	SMTP_AUTH_CONTINUE,	/* send *challenge_r, wait for a response */
	/* The answer comes later through smtp_session_auth_reply(); the
	 * response passed to the callback is wiped when it returns. */
	SMTP_AUTH_PENDING
};

enum smtp_body { SMTP_BODY_NONE, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME };
enum smtp_ret { SMTP_RET_NONE, SMTP_RET_FULL, SMTP_RET_HDRS };

/* smtp_rcpt.notify (RFC 3461 NOTIFY=); 0 when not given. */
#define SMTP_NOTIFY_NEVER	(1u << 0)
#define SMTP_NOTIFY_SUCCESS	(1u << 1)
#define SMTP_NOTIFY_FAILURE	(1u << 2)
#define SMTP_NOTIFY_DELAY	(1u << 3)

/* MAIL FROM as parsed; everything borrowed for the cb->mail call. */
struct smtp_mail {
	const struct smtp_path *from;
	bool has_size;
	uint64_t size;			/* SIZE=, when has_size */
	enum smtp_body body;
	bool smtputf8;
	enum smtp_ret ret;
	const char *envid;		/* ENVID= xtext as sent, or NULL */
	const char *auth;		/* AUTH= xtext as sent ("<>" too) or
					   NULL; the daemon decides whether
					   to trust it (RFC 4954 section 5) */
	const char *helo;		/* the HELO/EHLO/LHLO argument */
	const char *auth_user;		/* AUTH'd user, or NULL */
};

/* RCPT TO as parsed; borrowed for the cb->rcpt call. */
struct smtp_rcpt {
	const struct smtp_path *to;
	unsigned notify;		/* SMTP_NOTIFY_* */
	const char *orcpt;		/* ORCPT= "type;xtext" as sent, or
					   NULL */
	unsigned index;			/* its index (from 0) among the
					   accepted ones, if accepted */
};

struct smtp_callbacks {
	/* write: send len bytes to the client. Required. */
	void (*write)(void *ctx, const unsigned char *data, size_t len);
	/* mail, rcpt: decide; answer with smtp_session_reply() from inside
	 * the call or later. NULL: accepted at once (250). */
	void (*mail)(void *ctx, const struct smtp_mail *m);
	void (*rcpt)(void *ctx, const struct smtp_rcpt *r);
	/* data_begin: a message starts (DATA answered 354, or the first
	 * BDAT of the transaction). Optional. */
	void (*data_begin)(void *ctx);
	/* data: message bytes, dot-unstuffed, CRLF line ends, in order;
	 * len > 0. Required. */
	void (*data)(void *ctx, const unsigned char *data, size_t len);
	/* data_end: the whole message was passed to data; make it durable,
	 * then call smtp_session_data_done() (now or later). Required. */
	void (*data_end)(void *ctx);
	/* reset: the transaction ended without data_end: drop it. Optional. */
	void (*reset)(void *ctx);
	/* sasl: one step of mechanism mech (upper case, configured). first:
	 * the AUTH command itself, has_resp when it carried an initial
	 * response. resp is decoded (may hold NUL bytes), wiped after the
	 * call. CONTINUE: *challenge_r (at most SMTP_SASL_MAX bytes, valid
	 * until the next call) is sent. OK: *user_r (valid until the next
	 * call) is authenticated. PENDING: see smtp_session_auth_reply. */
	enum smtp_auth_result (*sasl)(void *ctx, const char *mech, bool first,
	    const unsigned char *resp, size_t resp_len, bool has_resp,
	    const unsigned char **challenge_r, size_t *challenge_len_r,
	    const char **user_r);
	/* sasl_abort: an exchange ended without a result. Optional. */
	void (*sasl_abort)(void *ctx);
	/* start_tls: "220 Ready to start TLS" has been written: flush it,
	 * start TLS, and drop any plaintext received and not passed in (the
	 * engine dropped what it was given). Then smtp_session_tls_started. */
	void (*start_tls)(void *ctx);
	/* closed: QUIT answered or 421 written: close after the output
	 * drains. Optional. */
	void (*closed)(void *ctx);
};

struct smtp_settings {
	const char *hostname;	/* greeting, EHLO, 221 (myhostname) */
	bool lmtp;		/* RFC 2033: LHLO only, a reply per recipient
				   at the end of data; implies PIPELINING
				   and ENHANCEDSTATUSCODES */
	unsigned extensions;	/* SMTP_EXT_* offered */
	bool tls_available;	/* STARTTLS can work (a certificate) */
	bool secured;		/* TLS already (submissions, 465) */
	bool allow_plaintext_auth; /* AUTH offered without TLS */
	bool require_tls;	/* MAIL and AUTH refused before STARTTLS */
	bool require_auth;	/* MAIL refused before AUTH (587) */
	const char *mechanisms;	/* SASL, space separated, upper case */
	uint64_t size_max;	/* message_size_limit; 0: none */
	unsigned rcpt_max;	/* recipients per message; 0: default */
	unsigned errors_max;	/* errors per session; 0: default */
	size_t text_line_max;	/* DATA line with CRLF; 0: default, else
				   SMTP_TEXT_LINE_MIN..SMTP_TEXT_LINE_LIMIT */
};

/* smtp_session_new: nothing is written yet (smtp_session_greet). The
 * settings' strings are copied; cb and ctx are borrowed. A missing write,
 * data or data_end callback, a NULL or over-long hostname or an
 * out-of-range text_line_max is a bug (log_panic). */
struct smtp_session *smtp_session_new(const struct smtp_settings *set,
    const struct smtp_callbacks *cb, void *ctx);
/* smtp_session_free: *s set NULL. An open transaction gets cb->reset, a
 * SASL exchange cb->sasl_abort; a pending decision must then not be
 * answered. Nothing is called after it returns. Not from inside a
 * callback (a write that failed: free the session after it returned). */
void smtp_session_free(struct smtp_session **s);
/* smtp_session_greet: "220 hostname ESMTP loft" (LMTP: "LMTP"). */
void smtp_session_greet(struct smtp_session *s);

/*
 * smtp_session_input: bytes from the client. Returns how many were
 * consumed: fewer than len only when the engine waits for a decision and
 * SMTP_QUEUE_MAX bytes are kept (keep the rest, offer it again after the
 * next smtp_session_reply / data_done / auth_reply), or the session closed
 * (the rest is of no use). After STARTTLS everything given is consumed and
 * dropped. Not from inside a callback (log_panic).
 */
size_t smtp_session_input(struct smtp_session *s, const unsigned char *data,
    size_t len);

/*
 * smtp_session_reply: the answer to cb->mail or cb->rcpt, from inside the
 * callback or later: code 200..599 (2xx accepts), enhanced "c.s.d" whose
 * class matches code, or NULL for "c.0.0"; text one line (control
 * characters become '?', cut at SMTP_TEXT_MAX). A 4xx or 5xx counts
 * toward errors_max, as the engine's own error replies do (so a client
 * probing for addresses is cut off). Nothing pending or a bad code or
 * enhanced code is a bug (log_panic).
 */
void smtp_session_reply(struct smtp_session *s, unsigned code,
    const char *enhanced, const char *text);
/*
 * smtp_session_data_done: the message given to cb->data is safe (2xx) or
 * refused (4xx, 5xx). SMTP: once. LMTP: once per accepted recipient, in
 * RCPT order (smtp_session_rcpt_count); each is written at once (from
 * inside cb->data_end: when it returns). A 2xx clears the error count.
 * Arguments as for smtp_session_reply; outside SMTP_STATE_END it is a bug.
 */
void smtp_session_data_done(struct smtp_session *s, unsigned code,
    const char *enhanced, const char *text);
/*
 * smtp_session_auth_reply: the answer to a cb->sasl that returned PENDING,
 * as if the callback had returned r (not PENDING): CONTINUE sends
 * challenge (at most SMTP_SASL_MAX bytes, borrowed), OK authenticates user
 * (NULL: ""). Nothing pending is a bug (log_panic).
 */
void smtp_session_auth_reply(struct smtp_session *s, enum smtp_auth_result r,
    const unsigned char *challenge, size_t challenge_len, const char *user);

/* smtp_session_tls_started: the connection is TLS now. */
void smtp_session_tls_started(struct smtp_session *s);

enum smtp_state smtp_session_state(const struct smtp_session *s);
/* Recipients accepted in the current transaction. */
unsigned smtp_session_rcpt_count(const struct smtp_session *s);
/* The AUTH'd user, or NULL. */
const char *smtp_session_auth_user(const struct smtp_session *s);

#endif
