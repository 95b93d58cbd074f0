/*
 * smtp_client.h: an outbound SMTP client session (RFC 5321) on lib/conn:
 * a state machine that connects (or takes a connected fd), reads the
 * greeting, says EHLO (HELO when EHLO is refused with 5xx), starts TLS
 * (RFC 3207) by smtp_tls_security_level, authenticates with SASL PLAIN or
 * LOGIN (RFC 4954) when configured, and then sends messages one after
 * the other on the same connection: MAIL FROM (SIZE=, BODY=8BITMIME,
 * SMTPUTF8, RET=/ENVID= when offered), RCPT TO for each recipient
 * (NOTIFY=/ORCPT= when DSN is offered; MAIL and every RCPT in one write
 * when PIPELINING is offered, RFC 2920, the replies read in order), DATA
 * with the content dot-stuffed and every line ended by CRLF, the final
 * reply; RSET after a transaction that did not complete; QUIT.
 *
 * Nothing blocks but the reading of the message content from its file
 * (pread, a local disk). Everything comes back through callbacks from the
 * ioloop: ready (the session can take a message), done (a message is
 * finished, per-recipient results written into it), closed (the session
 * is over, and why).
 *
 * Replies are parsed strictly: three digits 2xx..5xx, '-' on every line
 * but the last, the same code on every line, an enhanced status code
 * ("c.s.d", RFC 3463) taken when its class matches; a reply line is at
 * most SMTP_CLIENT_LINE_MAX bytes, a reply SMTP_CLIENT_REPLY_LINES lines
 * and SMTP_CLIENT_REPLY_TOTAL bytes. Anything else ends the session
 * ("protocol error"), as does a reply when none is expected.
 *
 * Settings are fields of smtp_client_settings, each named after the
 * Postfix parameter it stands for; the caller (the queue manager) reads
 * them from the configuration, looks up smtp_sasl_password_maps and
 * picks the name to verify.
 */
#ifndef LOFT_SMTP_CLIENT_H
#define LOFT_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net.h"
#include "smtp_session.h"	/* SMTP_NOTIFY_*, enum smtp_ret */

struct buf;
struct ioloop;
struct tls_ctx;
struct smtp_client;

/* Limits. A reply line, CRLF included (RFC 5321 says 512; servers send
 * longer ones); lines of one reply (an EHLO reply has a dozen); bytes of
 * one reply; the reply text kept per recipient and per session, with its
 * NUL (as the queue keeps it: SMTP_QUEUE_DIAG_MAX); the content read
 * per step. */
#define SMTP_CLIENT_LINE_MAX	2048
#define SMTP_CLIENT_REPLY_LINES	100
#define SMTP_CLIENT_REPLY_TOTAL	(32 * 1024)
#define SMTP_CLIENT_TEXT_MAX	512
#define SMTP_CLIENT_DSN_MAX	16
#define SMTP_CLIENT_CHUNK	(64 * 1024)
/* Longest host name kept for the texts ("host[addr]:port"). */
#define SMTP_CLIENT_PEER_MAX	(255 + NET_ADDR_STR_MAX + 2)

/* Defaults, Postfix's (seconds there, milliseconds here). */
#define SMTP_CLIENT_DEF_CONNECT_TIMEOUT		(30 * 1000)
#define SMTP_CLIENT_DEF_HELO_TIMEOUT		(300 * 1000)
#define SMTP_CLIENT_DEF_STARTTLS_TIMEOUT	(300 * 1000)
#define SMTP_CLIENT_DEF_MAIL_TIMEOUT		(300 * 1000)
#define SMTP_CLIENT_DEF_RCPT_TIMEOUT		(300 * 1000)
#define SMTP_CLIENT_DEF_DATA_INIT_TIMEOUT	(120 * 1000)
#define SMTP_CLIENT_DEF_DATA_XFER_TIMEOUT	(180 * 1000)
#define SMTP_CLIENT_DEF_DATA_DONE_TIMEOUT	(600 * 1000)
#define SMTP_CLIENT_DEF_RSET_TIMEOUT		(20 * 1000)
#define SMTP_CLIENT_DEF_QUIT_TIMEOUT		(300 * 1000)
#define SMTP_CLIENT_DEF_LINE_LENGTH		998

/* smtp_tls_security_level */
enum smtp_client_tls {
	SMTP_CLIENT_TLS_NONE,	/* never STARTTLS */
	SMTP_CLIENT_TLS_MAY,	/* STARTTLS when offered; the certificate
				   is not checked; a refused STARTTLS goes
				   on in plaintext */
	SMTP_CLIENT_TLS_ENCRYPT, /* TLS or no mail; certificate unchecked */
	SMTP_CLIENT_TLS_VERIFY	/* TLS, and the certificate must verify
				   against the trust anchors and name
				   tls_verify_name */
};

struct smtp_client_settings {
	const char *helo_name;		/* smtp_helo_name ($myhostname) */
	enum smtp_client_tls tls_level;	/* smtp_tls_security_level */
	/* A tls_client_ctx_new() context (smtp_tls_protocols,
	 * smtp_tls_CAfile); borrowed, must outlive the client. Required
	 * for ENCRYPT and VERIFY; NULL makes MAY behave as NONE. */
	struct tls_ctx *tls_ctx;
	/* The name the certificate must carry for VERIFY (the MX host name,
	 * or relayhost's host: the caller knows which) and the SNI sent
	 * with any level (NULL: none). Required for VERIFY. */
	const char *tls_verify_name;
	bool sasl_enable;		/* smtp_sasl_auth_enable */
	/* The smtp_sasl_password_maps entry for this server, looked up by
	 * the caller; AUTH is used only when both are set and the server
	 * offers PLAIN or LOGIN. Borrowed; never logged nor kept. */
	const char *sasl_user;
	const char *sasl_password;
	/* smtp_sasl_security_options without "noplaintext": AUTH without
	 * TLS. Otherwise a server that offers AUTH outside TLS gets none,
	 * and the session fails (temporary). */
	bool sasl_allow_plaintext;
	bool no_pipelining;		/* "pipelining" in
					   smtp_discard_ehlo_keywords */
	/* smtp_line_length_limit: longer content lines are broken with
	 * CRLF SPACE (Postfix's way); 0: default; SIZE_MAX: never. */
	size_t line_length_limit;
	/* Timeouts in milliseconds, 0: the default above. Each is the
	 * longest the server may stay silent (or not take our bytes) in
	 * that step: smtp_connect_timeout, smtp_helo_timeout (greeting,
	 * EHLO, HELO, AUTH), smtp_starttls_timeout (STARTTLS and the
	 * handshake), smtp_mail_timeout, smtp_rcpt_timeout,
	 * smtp_data_init_timeout (DATA), smtp_data_xfer_timeout (content),
	 * smtp_data_done_timeout (the final "."), smtp_rset_timeout,
	 * smtp_quit_timeout. */
	unsigned connect_timeout;
	unsigned helo_timeout;
	unsigned starttls_timeout;
	unsigned mail_timeout;
	unsigned rcpt_timeout;
	unsigned data_init_timeout;
	unsigned data_xfer_timeout;
	unsigned data_done_timeout;
	unsigned rset_timeout;
	unsigned quit_timeout;
};

/* Which step a reply or failure belongs to, for "(in reply to ...)". */
enum smtp_client_stage {
	SMTP_CLIENT_STAGE_CONNECT,
	SMTP_CLIENT_STAGE_GREETING,
	SMTP_CLIENT_STAGE_EHLO,
	SMTP_CLIENT_STAGE_HELO,
	SMTP_CLIENT_STAGE_STARTTLS,
	SMTP_CLIENT_STAGE_TLS,		/* the handshake */
	SMTP_CLIENT_STAGE_AUTH,
	SMTP_CLIENT_STAGE_MAIL,
	SMTP_CLIENT_STAGE_RCPT,
	SMTP_CLIENT_STAGE_DATA,
	SMTP_CLIENT_STAGE_BODY,		/* sending the content */
	SMTP_CLIENT_STAGE_DOT,		/* the end of data */
	SMTP_CLIENT_STAGE_RSET,
	SMTP_CLIENT_STAGE_QUIT,
	SMTP_CLIENT_STAGE_LOCAL		/* our side: content unreadable,
					   message too big, no SMTPUTF8 */
};

enum smtp_client_result {
	SMTP_CLIENT_PENDING,		/* not finished (not seen by done) */
	SMTP_CLIENT_SENT,		/* the server took it (2xx) */
	SMTP_CLIENT_DEFERRED,		/* 4xx, or the session failed */
	SMTP_CLIENT_FAILED		/* 5xx, or refused here for good */
};

/* One recipient: the caller fills addr, orcpt and notify; the client
 * writes the rest before done. */
struct smtp_client_rcpt {
	const char *addr;		/* without <>; borrowed */
	const char *orcpt;		/* ORCPT= "type;xtext", or NULL */
	unsigned notify;		/* SMTP_NOTIFY_*, 0: not given */

	enum smtp_client_result result;
	unsigned code;			/* the reply code; 0: none (the
					   connection failed, or local) */
	char dsn[SMTP_CLIENT_DSN_MAX];	/* "2.0.0": the enhanced code given,
					   else derived from code */
	enum smtp_client_stage stage;	/* what the reply answered */
	/* The reply ("550 5.1.1 <b@x>: no such user"; the lines of a
	 * multi-line reply joined by spaces; control bytes as '?'), or the
	 * reason of a local or connection failure; cut to fit. */
	char text[SMTP_CLIENT_TEXT_MAX];
};

/* A message to send. Borrowed by smtp_client_send until done. */
struct smtp_client_msg {
	const char *sender;		/* without <>; "" for <> */
	int fd;				/* the content (the queue's data/ID):
					   read with pread from offset 0 to
					   EOF; not closed */
	uint64_t size;			/* for SIZE= and the server's limit */
	bool body_8bit;			/* send BODY=8BITMIME (if offered) */
	const char *envid;		/* DSN ENVID= xtext, or NULL */
	enum smtp_ret ret;		/* DSN RET= */
	struct smtp_client_rcpt *rcpts;
	unsigned rcpt_count;		/* >= 1 */
};

/* Why the session ended (closed callback). */
struct smtp_client_status {
	bool ok;			/* QUIT answered (or the server closed
					   after it) */
	bool temporary;			/* a failure that another server, or
					   later, may not have: defer. Only
					   a 5xx EHLO/HELO is permanent. */
	unsigned code;			/* the server's reply, 0: none */
	char dsn[SMTP_CLIENT_DSN_MAX];
	enum smtp_client_stage stage;
	char text[SMTP_CLIENT_TEXT_MAX]; /* the reply, or "connect to
					   h[a]:25: Connection refused",
					   "lost connection while sending
					   RCPT TO", "timeout ..." */
};

struct smtp_client_callbacks {
	/* ready: the session can take a message: give one with
	 * smtp_client_send(), or end with smtp_client_quit() (or
	 * smtp_client_free()). Called after the greeting, EHLO, TLS and
	 * AUTH, and again after each message on a reusable connection. */
	void (*ready)(void *ctx);
	/* done: msg is finished: every recipient has a result other than
	 * PENDING. ready or closed follows. */
	void (*done)(void *ctx, struct smtp_client_msg *msg);
	/* closed: the session is over (QUIT, or a failure; a message in
	 * progress got done first). Nothing is called afterwards; free the
	 * client here or later. */
	void (*closed)(void *ctx, const struct smtp_client_status *st);
};

/*
 * smtp_client_new: a session with the settings (strings borrowed: they
 * must outlive the client) reporting to cb/ctx. Nothing happens until
 * smtp_client_connect or smtp_client_start_fd. ENCRYPT or VERIFY without
 * tls_ctx, VERIFY without tls_verify_name, or no helo_name is a bug
 * (log_panic). Never returns NULL.
 */
struct smtp_client *smtp_client_new(struct ioloop *loop,
    const struct smtp_client_settings *set,
    const struct smtp_client_callbacks *cb, void *ctx);

/*
 * smtp_client_connect: a non-blocking TCP connection to addr, within
 * connect_timeout. host is the server's name for the texts
 * ("mx.example.net[192.0.2.3]:25"). 0: the outcome comes through ready
 * or closed (a refused connection is closed with stage CONNECT); -1 with
 * *error_r when no socket could be made (nothing will be called).
 */
int smtp_client_connect(struct smtp_client *c, const struct net_addr *addr,
    const char *host, const char **error_r);
/* smtp_client_start_fd: the same over fd, connected already (taken over:
 * closed with the session); peer names it for the texts. */
void smtp_client_start_fd(struct smtp_client *c, int fd, const char *peer);

/*
 * smtp_client_send: send msg; only between ready and the next call
 * (anything else is a bug: log_panic). Results go into msg->rcpts;
 * done(msg) reports the end. A message over the server's SIZE, or with
 * non-ASCII addresses for a server without SMTPUTF8, fails at once
 * (without MAIL) with stage LOCAL; a content fd that cannot be read ends
 * the session (the server drops the partial message) and defers.
 */
void smtp_client_send(struct smtp_client *c, struct smtp_client_msg *msg);
/* smtp_client_quit: say QUIT (only when ready, else a bug); closed
 * follows with ok. */
void smtp_client_quit(struct smtp_client *c);
/* smtp_client_free: close at once (no QUIT), no callback; *cp becomes
 * NULL; NULL is fine. Allowed inside the client's callbacks. A message
 * in progress is abandoned (its results stay as they are). */
void smtp_client_free(struct smtp_client **cp);

/* smtp_client_peer: "host[addr]:port" (or the peer given), for logs. */
const char *smtp_client_peer(const struct smtp_client *c);
/* smtp_client_tls_info: "TLSv1.3 with cipher ..." or "plaintext";
 * smtp_client_tls_verified: the certificate was checked (VERIFY). */
const char *smtp_client_tls_info(struct smtp_client *c);
bool smtp_client_tls_verified(struct smtp_client *c);
/* smtp_client_authenticated: AUTH succeeded on this session. */
bool smtp_client_authenticated(const struct smtp_client *c);
/* smtp_client_stage_name: "MAIL FROM", "RCPT TO", "end of DATA", ...
 * for "(in reply to %s command)". */
const char *smtp_client_stage_name(enum smtp_client_stage stage);

/*
 * The reply parser, exposed for tests. smtp_client_reply_init empties r;
 * smtp_client_reply_line takes one line without its CRLF: 1 the reply is
 * complete, 0 more lines follow, -1 malformed (*error_r static): fewer
 * than three digits, a first digit outside 2..5, a fourth byte other than
 * ' ' or '-', a code differing from the first line's, more than
 * SMTP_CLIENT_REPLY_LINES lines or SMTP_CLIENT_REPLY_TOTAL bytes (CRLF
 * counted). The enhanced code ("c.s.d " with 1-3 digit subject and
 * detail) is taken from the first line when its class matches the code
 * (servers send it without advertising ENHANCEDSTATUSCODES too); text
 * keeps "code [enhanced] text", lines joined by
 * spaces, control bytes as '?', cut at SMTP_CLIENT_TEXT_MAX - 1.
 * line_text/line_len point at the last line's text after "ddd-" (for
 * EHLO keywords), valid until the next call.
 */
struct smtp_client_reply {
	unsigned code;
	char enhanced[SMTP_CLIENT_DSN_MAX];	/* "" if none */
	char text[SMTP_CLIENT_TEXT_MAX];
	size_t text_len;
	unsigned lines;
	size_t total;
	const char *line_text;
	size_t line_len;
};
void smtp_client_reply_init(struct smtp_client_reply *r);
int smtp_client_reply_line(struct smtp_client_reply *r, const char *line,
    size_t len, const char **error_r);

/*
 * The content encoder, exposed for tests: turns message bytes into DATA
 * form: CRLF, bare LF and bare CR all end a line with CRLF, a '.' that
 * starts a line is doubled, lines longer than line_max (0: no limit) are
 * broken with CRLF SPACE. smtp_client_encode_init starts a message;
 * smtp_client_encode appends the encoding of in[0..len) to out (at most
 * 4 * len bytes; -1 if out's maximum would be passed, out unchanged);
 * any split of the content gives the same bytes. smtp_client_encode_end appends the last
 * CRLF if needed and ".\r\n".
 */
struct smtp_client_encoder {
	bool bol;		/* at the beginning of a line */
	bool cr;		/* a CR is pending */
	size_t col;		/* bytes on the current line */
	size_t line_max;
};
void smtp_client_encode_init(struct smtp_client_encoder *e,
    size_t line_max);
int smtp_client_encode(struct smtp_client_encoder *e,
    const unsigned char *in, size_t len, struct buf *out);
int smtp_client_encode_end(struct smtp_client_encoder *e, struct buf *out);

#endif
