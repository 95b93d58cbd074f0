/*
 * smtp_client.c: the outbound SMTP client session (smtp_client.h): one
 * enum of states and one function per reply it waits for, on lib/conn;
 * replies parsed line by line as they arrive, message content read from
 * its file in SMTP_CLIENT_CHUNK pieces, encoded (CRLF, dot-stuffing,
 * folding) and written once the previous piece has left.
 *
 * Trusts nothing from the server: every reply line is bounded by conn's
 * input limit, replies by line count and size, codes checked digit by
 * digit, texts cut and stripped of control bytes before anyone sees
 * them, EHLO keywords and the SIZE value parsed with bounds; a reply that
 * comes when none is due ends the session. Plaintext the server sent
 * after its 220 to STARTTLS is dropped. Trusts the caller's message:
 * addresses from the queue (still refused with control bytes, which
 * would forge commands).
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base64.h"
#include "buf.h"
#include "compat/compat.h"
#include "conn.h"
#include "conn_tls.h"
#include "ioloop.h"
#include "log.h"
#include "tls.h"
#include "xmalloc.h"
#include "smtp_client.h"

#define CLIENT_OUT_SOFT		(1024 * 1024)
#define CLIENT_OUT_HARD		(2 * 1024 * 1024)
#define CLIENT_CMD_MAX		(SMTP_PATH_MAX + SMTP_ORCPT_MAX + 128)
#define CLIENT_AUTH_MAX		1024	/* user + password for AUTH PLAIN */

enum client_state {
	ST_NEW,
	ST_CONNECTING,
	ST_GREETING,
	ST_EHLO,
	ST_HELO,
	ST_STARTTLS,
	ST_AUTH_PLAIN,
	ST_AUTH_USER,		/* AUTH LOGIN, waiting to send the user */
	ST_AUTH_PASS,		/* ... the password */
	ST_AUTH_DONE,		/* ... the outcome */
	ST_READY,
	ST_LOCAL,		/* a message refused here, reported soon */
	ST_MAIL,
	ST_RCPT,
	ST_DATA,
	ST_BODY,
	ST_DOT,
	ST_RSET,
	ST_QUIT,
	ST_CLOSED
};

/* Extensions the server offered (SMTP_EXT_* of smtp_session.h). */
struct smtp_client {
	struct ioloop *loop;
	struct smtp_client_settings set;	/* strings borrowed */
	const struct smtp_client_callbacks *cb;
	void *ctx;

	struct conn *conn;		/* owned, NULL before connect and
					   after close */
	int connect_fd;			/* owned until conn takes it */
	int connect_errno;
	struct io *connect_io;
	struct timeout *connect_to;
	struct timeout *local_to;	/* reports a local refusal */
	char peer[SMTP_CLIENT_PEER_MAX];

	enum client_state state;
	unsigned ext;
	uint64_t size_max;		/* SIZE n; 0: none given */
	bool auth_plain, auth_login, authed;
	bool tls, tls_tried, tls_handshaking;

	struct smtp_client_reply reply;
	bool reply_open;		/* lines of a reply came */

	struct smtp_client_msg *msg;	/* borrowed, while sending */
	bool *accepted;			/* per recipient, owned */
	unsigned rcpt_next;		/* next RCPT to write */
	unsigned rcpt_replied;
	unsigned rcpt_ok;
	bool mail_failed;
	uint64_t body_off;
	struct smtp_client_encoder enc;
	struct buf body;		/* one encoded chunk */

	int busy;			/* entries from the loop on the stack */
	bool freed;			/* smtp_client_free called inside */
};

static char client_error[256];

/* --- names and texts --- */

const char *
smtp_client_stage_name(enum smtp_client_stage stage)
{
	static const char *const names[] = {
		"connect", "greeting", "EHLO", "HELO", "STARTTLS",
		"TLS handshake", "AUTH", "MAIL FROM", "RCPT TO", "DATA",
		"message body", "end of DATA", "RSET", "QUIT", "local"
	};

	if ((unsigned)stage >= sizeof(names) / sizeof(names[0]))
		return "?";
	return names[stage];
}

static enum smtp_client_stage
client_stage(const struct smtp_client *c)
{
	switch (c->state) {
	case ST_NEW:
	case ST_CONNECTING:
		return SMTP_CLIENT_STAGE_CONNECT;
	case ST_GREETING:
		return SMTP_CLIENT_STAGE_GREETING;
	case ST_EHLO:
		return c->tls_handshaking ? SMTP_CLIENT_STAGE_TLS :
		    SMTP_CLIENT_STAGE_EHLO;
	case ST_HELO:
		return SMTP_CLIENT_STAGE_HELO;
	case ST_STARTTLS:
		return SMTP_CLIENT_STAGE_STARTTLS;
	case ST_AUTH_PLAIN:
	case ST_AUTH_USER:
	case ST_AUTH_PASS:
	case ST_AUTH_DONE:
		return SMTP_CLIENT_STAGE_AUTH;
	case ST_MAIL:
		return SMTP_CLIENT_STAGE_MAIL;
	case ST_RCPT:
		return SMTP_CLIENT_STAGE_RCPT;
	case ST_DATA:
		return SMTP_CLIENT_STAGE_DATA;
	case ST_BODY:
		return SMTP_CLIENT_STAGE_BODY;
	case ST_DOT:
		return SMTP_CLIENT_STAGE_DOT;
	case ST_RSET:
		return SMTP_CLIENT_STAGE_RSET;
	case ST_QUIT:
		return SMTP_CLIENT_STAGE_QUIT;
	default:
		return SMTP_CLIENT_STAGE_LOCAL;
	}
}

/* client_dsn: the enhanced code of reply, else one from its class. */
static void
client_dsn(const struct smtp_client_reply *r, char *out, size_t size)
{
	if (r->enhanced[0] != '\0')
		strlcpy(out, r->enhanced, size);
	else
		snprintf(out, size, "%u.0.0", r->code / 100);
}

/* --- the reply parser --- */

void
smtp_client_reply_init(struct smtp_client_reply *r)
{
	memset(r, 0, sizeof(*r));
}

static int
reply_fail(const char **error_r, const char *what)
{
	strlcpy(client_error, what, sizeof(client_error));
	*error_r = client_error;
	return -1;
}

/* reply_enhanced: length of "c.s.d" at s[0..len) with class cls, followed
 * by a space or the end; 0 if there is none. */
static size_t
reply_enhanced(const char *s, size_t len, char cls)
{
	size_t i = 2, part, n;

	if (len < 5 || s[0] != cls || s[1] != '.')
		return 0;
	for (part = 0; part < 2; part++) {
		for (n = 0; i < len && n < 4 && s[i] >= '0' && s[i] <= '9';
		    n++)
			i++;
		if (n == 0 || n > 3)
			return 0;
		if (part == 0 && (i >= len || s[i++] != '.'))
			return 0;
	}
	return i == len || s[i] == ' ' ? i : 0;
}

/* reply_text: append text (len bytes) to r->text, control bytes as '?',
 * cut at the end of the buffer. */
static void
reply_text(struct smtp_client_reply *r, const char *s, size_t len)
{
	unsigned char ch;

	for (size_t i = 0; i < len && r->text_len + 1 < sizeof(r->text);
	    i++) {
		ch = (unsigned char)s[i];
		r->text[r->text_len++] = ch < 0x20 || ch == 0x7f ? '?' :
		    (char)ch;
	}
	r->text[r->text_len] = '\0';
}

/* reply_code: the code of a line, or 0 if malformed. */
static unsigned
reply_code(const char *line, size_t len)
{
	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' ||
	    line[1] > '9' || line[2] < '0' || line[2] > '9')
		return 0;
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return 0;
	return (unsigned)((line[0] - '0') * 100 + (line[1] - '0') * 10 +
	    (line[2] - '0'));
}

int
smtp_client_reply_line(struct smtp_client_reply *r, const char *line,
    size_t len, const char **error_r)
{
	unsigned code = reply_code(line, len);
	const char *text = len > 4 ? line + 4 : line + len;
	size_t tlen = len > 4 ? len - 4 : 0, e;

	if (code == 0)
		return reply_fail(error_r, "malformed reply line");
	if (r->lines > 0 && code != r->code)
		return reply_fail(error_r, "reply code changes within a "
		    "multi-line reply");
	if (++r->lines > SMTP_CLIENT_REPLY_LINES)
		return reply_fail(error_r, "reply has too many lines");
	r->total += len + 2;
	if (r->total > SMTP_CLIENT_REPLY_TOTAL)
		return reply_fail(error_r, "reply too long");
	e = reply_enhanced(text, tlen, line[0]);
	if (r->lines == 1) {
		r->code = code;
		if (e > 0 && e < sizeof(r->enhanced)) {
			memcpy(r->enhanced, text, e);
			r->enhanced[e] = '\0';
		}
		reply_text(r, line, 3);
	} else if (e > 0 && e == strlen(r->enhanced) &&
	    memcmp(text, r->enhanced, e) == 0) {
		/* Each line repeats the enhanced code: keep it once. */
		text += e;
		tlen -= e;
		while (tlen > 0 && *text == ' ') {
			text++;
			tlen--;
		}
	}
	if (tlen > 0) {
		reply_text(r, " ", 1);
		reply_text(r, text, tlen);
	}
	r->line_text = len > 4 ? line + 4 : line + len;
	r->line_len = len > 4 ? len - 4 : 0;
	return len > 3 && line[3] == '-' ? 0 : 1;
}

/* --- the content encoder --- */

void
smtp_client_encode_init(struct smtp_client_encoder *e, size_t line_max)
{
	e->bol = true;
	e->cr = false;
	e->col = 0;
	e->line_max = line_max;
}

static void
enc_put(unsigned char **o, const char *s, size_t n)
{
	memcpy(*o, s, n);
	*o += n;
}

static void
enc_eol(struct smtp_client_encoder *e, unsigned char **o)
{
	enc_put(o, "\r\n", 2);
	e->bol = true;
	e->col = 0;
}

/* enc_byte: one input byte; at most 4 bytes out. */
static void
enc_byte(struct smtp_client_encoder *e, unsigned char b, unsigned char **o)
{
	if (e->cr) {
		/* A CR ends the line whatever follows: CRLF stays one line
		 * end, a bare CR becomes one. */
		e->cr = false;
		enc_eol(e, o);
		if (b == '\n')
			return;
	}
	if (b == '\r') {
		e->cr = true;
		return;
	}
	if (b == '\n') {
		enc_eol(e, o);
		return;
	}
	if (e->bol && b == '.') {
		enc_put(o, ".", 1);
		e->col++;
	}
	if (e->line_max > 0 && e->col >= e->line_max) {
		enc_put(o, "\r\n ", 3);
		e->col = 1;
	}
	*(*o)++ = b;
	e->col++;
	e->bol = false;
}

int
smtp_client_encode(struct smtp_client_encoder *e, const unsigned char *in,
    size_t len, struct buf *out)
{
	unsigned char *o, *start;

	if (len > (SIZE_MAX - 8) / 4 || buf_reserve(out, 4 * len + 8) < 0)
		return -1;
	start = o = out->data + out->len;
	for (size_t i = 0; i < len; i++)
		enc_byte(e, in[i], &o);
	out->len += (size_t)(o - start);
	out->data[out->len] = '\0';
	return 0;
}

int
smtp_client_encode_end(struct smtp_client_encoder *e, struct buf *out)
{
	if (e->cr || !e->bol) {
		e->cr = false;
		if (buf_append(out, "\r\n", 2) < 0)
			return -1;
		e->bol = true;
		e->col = 0;
	}
	return buf_append(out, ".\r\n", 3);
}

/* --- life cycle --- */

static unsigned
client_ms(unsigned v, unsigned def)
{
	return v > 0 ? v : def;
}

struct smtp_client *
smtp_client_new(struct ioloop *loop, const struct smtp_client_settings *set,
    const struct smtp_client_callbacks *cb, void *ctx)
{
	struct smtp_client *c;

	if (set->helo_name == NULL || *set->helo_name == '\0')
		log_panic("smtp_client_new: no helo_name");
	if (set->tls_level >= SMTP_CLIENT_TLS_ENCRYPT && set->tls_ctx == NULL)
		log_panic("smtp_client_new: TLS required without a context");
	if (set->tls_level == SMTP_CLIENT_TLS_VERIFY &&
	    set->tls_verify_name == NULL)
		log_panic("smtp_client_new: verify without a name");
	c = xcalloc(1, sizeof(*c));
	c->loop = loop;
	c->set = *set;
	c->cb = cb;
	c->ctx = ctx;
	c->connect_fd = -1;
	c->state = ST_NEW;
	if (c->set.line_length_limit == 0)
		c->set.line_length_limit = SMTP_CLIENT_DEF_LINE_LENGTH;
	else if (c->set.line_length_limit == SIZE_MAX)
		c->set.line_length_limit = 0;
	buf_init(&c->body, 4 * SMTP_CLIENT_CHUNK + 16);
	return c;
}

static void
client_stop_connect(struct smtp_client *c)
{
	io_remove(&c->connect_io);
	timeout_remove(&c->connect_to);
	if (c->connect_fd >= 0)
		close(c->connect_fd);
	c->connect_fd = -1;
}

static void
client_destroy(struct smtp_client *c)
{
	client_stop_connect(c);
	timeout_remove(&c->local_to);
	if (c->conn != NULL)
		conn_close(&c->conn);
	free(c->accepted);
	buf_free(&c->body);
	free(c);
}

void
smtp_client_free(struct smtp_client **cp)
{
	struct smtp_client *c = *cp;

	if (c == NULL)
		return;
	*cp = NULL;
	if (c->busy > 0) {
		/* Inside one of our callbacks: stop everything now, free
		 * on the way out. */
		c->freed = true;
		client_stop_connect(c);
		timeout_remove(&c->local_to);
		if (c->conn != NULL)
			conn_close(&c->conn);
		return;
	}
	client_destroy(c);
}

static void
client_enter(struct smtp_client *c)
{
	c->busy++;
}

static void
client_leave(struct smtp_client *c)
{
	if (--c->busy == 0 && c->freed)
		client_destroy(c);
}

const char *
smtp_client_peer(const struct smtp_client *c)
{
	return c->peer;
}

const char *
smtp_client_tls_info(struct smtp_client *c)
{
	return c->conn != NULL ? conn_tls_info(c->conn) : "plaintext";
}

bool
smtp_client_tls_verified(struct smtp_client *c)
{
	struct tls_conn *t;

	if (c->conn == NULL || (t = conn_tls_get(c->conn)) == NULL)
		return false;
	return tls_conn_verified(t);
}

bool
smtp_client_authenticated(const struct smtp_client *c)
{
	return c->authed;
}

/* --- ending --- */

/* client_rcpt_set: a recipient's result. */
static void
client_rcpt_set(struct smtp_client_rcpt *r, enum smtp_client_result res,
    unsigned code, const char *dsn, enum smtp_client_stage stage,
    const char *text)
{
	r->result = res;
	r->code = code;
	r->stage = stage;
	strlcpy(r->dsn, dsn, sizeof(r->dsn));
	strlcpy(r->text, text, sizeof(r->text));
}

/* client_rcpt_reply: a recipient's result from the reply r. */
static void
client_rcpt_reply(struct smtp_client_rcpt *rc,
    const struct smtp_client_reply *r, enum smtp_client_stage stage)
{
	char dsn[SMTP_CLIENT_DSN_MAX];

	client_dsn(r, dsn, sizeof(dsn));
	client_rcpt_set(rc, r->code < 300 ? SMTP_CLIENT_SENT : r->code < 500 ?
	    SMTP_CLIENT_DEFERRED : SMTP_CLIENT_FAILED, r->code, dsn, stage,
	    r->text);
}

/* client_msg_finish: report the message; false if freed meanwhile. */
static bool
client_msg_finish(struct smtp_client *c)
{
	struct smtp_client_msg *m = c->msg;

	c->msg = NULL;
	free(c->accepted);
	c->accepted = NULL;
	if (m == NULL)
		return true;
	c->cb->done(c->ctx, m);
	return !c->freed;
}

/* client_close: end the session with st, reporting any message first. */
static void
client_close(struct smtp_client *c, struct smtp_client_status *st)
{
	struct smtp_client_msg *m = c->msg;

	if (m != NULL) {
		for (unsigned i = 0; i < m->rcpt_count; i++) {
			if (m->rcpts[i].result != SMTP_CLIENT_PENDING)
				continue;
			client_rcpt_set(&m->rcpts[i], st->temporary ||
			    st->code < 500 ? SMTP_CLIENT_DEFERRED :
			    SMTP_CLIENT_FAILED, st->code, st->dsn, st->stage,
			    st->text);
		}
	}
	client_stop_connect(c);
	timeout_remove(&c->local_to);
	if (c->conn != NULL)
		conn_close(&c->conn);
	c->state = ST_CLOSED;
	if (!client_msg_finish(c))
		return;
	c->cb->closed(c->ctx, st);
}

/* client_fail: end the session for a reason of ours (no reply). */
static void __attribute__((format(printf, 3, 4)))
client_fail(struct smtp_client *c, const char *dsn, const char *fmt, ...)
{
	struct smtp_client_status st;
	va_list ap;

	memset(&st, 0, sizeof(st));
	st.temporary = true;
	st.stage = client_stage(c);
	strlcpy(st.dsn, dsn, sizeof(st.dsn));
	va_start(ap, fmt);
	vsnprintf(st.text, sizeof(st.text), fmt, ap);
	va_end(ap);
	client_close(c, &st);
}

/* client_fail_reply: end the session because of the reply r. */
static void
client_fail_reply(struct smtp_client *c, const struct smtp_client_reply *r,
    bool temporary)
{
	struct smtp_client_status st;

	memset(&st, 0, sizeof(st));
	st.temporary = temporary;
	st.code = r->code;
	st.stage = client_stage(c);
	client_dsn(r, st.dsn, sizeof(st.dsn));
	if (temporary && st.dsn[0] == '5')
		st.dsn[0] = '4';
	strlcpy(st.text, r->text, sizeof(st.text));
	client_close(c, &st);
}

/* --- writing --- */

static void
client_timeouts(struct smtp_client *c, unsigned ms)
{
	conn_set_idle_timeout(c->conn, ms);
	conn_set_output_timeout(c->conn, ms);
}

static void
client_enter_state(struct smtp_client *c, enum client_state st)
{
	const struct smtp_client_settings *s = &c->set;
	unsigned ms = 0;

	c->state = st;
	switch (st) {
	case ST_GREETING: case ST_EHLO: case ST_HELO: case ST_AUTH_PLAIN:
	case ST_AUTH_USER: case ST_AUTH_PASS: case ST_AUTH_DONE:
		ms = client_ms(s->helo_timeout, SMTP_CLIENT_DEF_HELO_TIMEOUT);
		break;
	case ST_STARTTLS:
		ms = client_ms(s->starttls_timeout,
		    SMTP_CLIENT_DEF_STARTTLS_TIMEOUT);
		break;
	case ST_MAIL:
		ms = client_ms(s->mail_timeout, SMTP_CLIENT_DEF_MAIL_TIMEOUT);
		break;
	case ST_RCPT:
		ms = client_ms(s->rcpt_timeout, SMTP_CLIENT_DEF_RCPT_TIMEOUT);
		break;
	case ST_DATA:
		ms = client_ms(s->data_init_timeout,
		    SMTP_CLIENT_DEF_DATA_INIT_TIMEOUT);
		break;
	case ST_BODY:
		ms = client_ms(s->data_xfer_timeout,
		    SMTP_CLIENT_DEF_DATA_XFER_TIMEOUT);
		break;
	case ST_DOT:
		ms = client_ms(s->data_done_timeout,
		    SMTP_CLIENT_DEF_DATA_DONE_TIMEOUT);
		break;
	case ST_RSET:
		ms = client_ms(s->rset_timeout, SMTP_CLIENT_DEF_RSET_TIMEOUT);
		break;
	case ST_QUIT:
		ms = client_ms(s->quit_timeout, SMTP_CLIENT_DEF_QUIT_TIMEOUT);
		break;
	default:
		break;
	}
	if (c->conn != NULL)
		client_timeouts(c, ms);
}

/* client_write: queue bytes; false (session failed) when conn refuses. */
static bool
client_write(struct smtp_client *c, const void *data, size_t len)
{
	if (conn_write(c->conn, data, len) == 0)
		return true;
	client_fail(c, "4.4.2", "lost connection with %s while sending %s",
	    c->peer, smtp_client_stage_name(client_stage(c)));
	return false;
}

static bool __attribute__((format(printf, 2, 3)))
client_cmd(struct smtp_client *c, const char *fmt, ...)
{
	char line[CLIENT_CMD_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		log_panic("smtp_client: command over %zu bytes", sizeof(line));
	memcpy(line + n, "\r\n", 3);
	return client_write(c, line, (size_t)n + 2);
}

/* --- the session up to READY --- */

static void client_ready(struct smtp_client *c);
static void client_after_ehlo(struct smtp_client *c);

static void
client_ehlo(struct smtp_client *c)
{
	c->ext = 0;
	c->size_max = 0;
	c->auth_plain = c->auth_login = false;
	client_enter_state(c, ST_EHLO);
	(void)client_cmd(c, "EHLO %s", c->set.helo_name);
}

static void
client_on_greeting(struct smtp_client *c, const struct smtp_client_reply *r)
{
	/* A 5xx greeting says nothing about the recipients: Postfix
	 * (smtp_skip_5xx_greeting) tries the next server and defers. */
	if (r->code != 220) {
		client_fail_reply(c, r, true);
		return;
	}
	client_ehlo(c);
}

/* ehlo_size: SIZE's argument; 0 when absent or out of range. */
static uint64_t
ehlo_size(const char *s, size_t len)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < len && s[i] == ' '; i++)
		;
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
		if (v > (UINT64_MAX - 9) / 10)
			return 0;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	return v;
}

static void
ehlo_auth(struct smtp_client *c, const char *s, size_t len)
{
	size_t i = 0, n;

	while (i < len) {
		while (i < len && s[i] == ' ')
			i++;
		for (n = 0; i + n < len && s[i + n] != ' '; n++)
			;
		if (n == 5 && strncasecmp(s + i, "PLAIN", 5) == 0)
			c->auth_plain = true;
		if (n == 5 && strncasecmp(s + i, "LOGIN", 5) == 0)
			c->auth_login = true;
		i += n;
	}
}

static const struct {
	const char *name;
	unsigned bit;
} client_keywords[] = {
	{ "PIPELINING", SMTP_EXT_PIPELINING },
	{ "SIZE", SMTP_EXT_SIZE },
	{ "8BITMIME", SMTP_EXT_8BITMIME },
	{ "STARTTLS", SMTP_EXT_STARTTLS },
	{ "AUTH", SMTP_EXT_AUTH },
	{ "ENHANCEDSTATUSCODES", SMTP_EXT_ENHANCED },
	{ "SMTPUTF8", SMTP_EXT_SMTPUTF8 },
	{ "CHUNKING", SMTP_EXT_CHUNKING },
	{ "DSN", SMTP_EXT_DSN },
};

/* ehlo_keyword: one line of the EHLO reply after the first. */
static void
ehlo_keyword(struct smtp_client *c, const char *s, size_t len)
{
	size_t n, i;

	for (n = 0; n < len && s[n] != ' ' && s[n] != '='; n++)
		;
	/* "AUTH=LOGIN" is the old form some servers still send. */
	if (n == 4 && strncasecmp(s, "AUTH", 4) == 0 && n < len) {
		ehlo_auth(c, s + n + 1, len - n - 1);
	}
	for (i = 0; i < sizeof(client_keywords) / sizeof(client_keywords[0]);
	    i++) {
		if (strlen(client_keywords[i].name) != n ||
		    strncasecmp(s, client_keywords[i].name, n) != 0)
			continue;
		if (client_keywords[i].bit == SMTP_EXT_PIPELINING &&
		    c->set.no_pipelining)
			return;
		c->ext |= client_keywords[i].bit;
		if (client_keywords[i].bit == SMTP_EXT_SIZE)
			c->size_max = ehlo_size(s + n, len - n);
		return;
	}
}

static void
client_on_ehlo(struct smtp_client *c, const struct smtp_client_reply *r)
{
	c->tls_handshaking = false;
	if (r->code == 250) {
		client_after_ehlo(c);
		return;
	}
	if (r->code >= 500) {
		/* RFC 5321 section 3.2: an old server; say HELO. */
		c->ext = 0;
		client_enter_state(c, ST_HELO);
		(void)client_cmd(c, "HELO %s", c->set.helo_name);
		return;
	}
	client_fail_reply(c, r, true);
}

static void
client_on_helo(struct smtp_client *c, const struct smtp_client_reply *r)
{
	if (r->code != 250) {
		client_fail_reply(c, r, r->code < 500);
		return;
	}
	client_after_ehlo(c);
}

static void
client_on_starttls(struct smtp_client *c, const struct smtp_client_reply *r)
{
	const char *error, *name = c->set.tls_verify_name;

	c->tls_tried = true;
	if (r->code != 220) {
		if (c->set.tls_level >= SMTP_CLIENT_TLS_ENCRYPT)
			client_fail_reply(c, r, true);
		else
			client_after_ehlo(c);
		return;
	}
	/* What came after the 220 was sent in plaintext: an attacker's
	 * (CVE-2011-0411 the other way round), never a reply inside TLS. */
	conn_input_discard(c->conn);
	if (conn_tls_start_client(c->conn, c->set.tls_ctx, name,
	    c->set.tls_level == SMTP_CLIENT_TLS_VERIFY ? name : NULL,
	    &error) < 0) {
		client_fail(c, "4.7.5", "cannot start TLS with %s: %s",
		    c->peer, error);
		return;
	}
	c->tls = true;
	c->tls_handshaking = true;
	client_ehlo(c);
}

static void
client_auth_start(struct smtp_client *c)
{
	unsigned char raw[CLIENT_AUTH_MAX];
	size_t ul = strlen(c->set.sasl_user), pl = strlen(c->set.sasl_password);
	struct buf b;

	if (!c->auth_login || c->auth_plain) {
		if (ul + pl + 2 > sizeof(raw)) {
			client_fail(c, "4.7.0", "SASL user name and password "
			    "too long for %s", c->peer);
			return;
		}
		raw[0] = '\0';
		memcpy(raw + 1, c->set.sasl_user, ul);
		raw[1 + ul] = '\0';
		memcpy(raw + 2 + ul, c->set.sasl_password, pl);
		buf_init(&b, 2 * CLIENT_AUTH_MAX);
		(void)buf_append_str(&b, "AUTH PLAIN ");
		base64_encode(raw, ul + pl + 2, &b);
		(void)buf_append(&b, "\r\n", 2);
		explicit_bzero(raw, sizeof(raw));
		client_enter_state(c, ST_AUTH_PLAIN);
		(void)client_write(c, b.data, b.len);
		explicit_bzero(b.data, b.len);
		buf_free(&b);
		return;
	}
	client_enter_state(c, ST_AUTH_USER);
	(void)client_cmd(c, "AUTH LOGIN");
}

/* client_auth_send: AUTH LOGIN's user or password line, base64. */
static void
client_auth_send(struct smtp_client *c, const char *secret)
{
	struct buf b;

	buf_init(&b, 2 * CLIENT_AUTH_MAX);
	base64_encode((const unsigned char *)secret, strnlen(secret,
	    CLIENT_AUTH_MAX), &b);
	(void)buf_append(&b, "\r\n", 2);
	(void)client_write(c, b.data, b.len);
	explicit_bzero(b.data, b.len);
	buf_free(&b);
}

static void
client_on_auth(struct smtp_client *c, const struct smtp_client_reply *r)
{
	if (r->code == 235 && (c->state == ST_AUTH_PLAIN ||
	    c->state == ST_AUTH_DONE)) {
		c->authed = true;
		client_ready(c);
		return;
	}
	if (r->code == 334 && c->state == ST_AUTH_USER) {
		client_enter_state(c, ST_AUTH_PASS);
		client_auth_send(c, c->set.sasl_user);
		return;
	}
	if (r->code == 334 && c->state == ST_AUTH_PASS) {
		client_enter_state(c, ST_AUTH_DONE);
		client_auth_send(c, c->set.sasl_password);
		return;
	}
	/* A refused password is a configuration matter to fix, not a
	 * reason to bounce (Postfix smtp_sasl_auth_soft_bounce). */
	client_fail_reply(c, r, true);
}

static bool
client_sasl_wanted(const struct smtp_client *c)
{
	return c->set.sasl_enable && c->set.sasl_user != NULL &&
	    c->set.sasl_password != NULL && !c->authed &&
	    (c->ext & SMTP_EXT_AUTH) != 0;
}

static void
client_after_ehlo(struct smtp_client *c)
{
	if (!c->tls && !c->tls_tried && c->set.tls_ctx != NULL &&
	    c->set.tls_level >= SMTP_CLIENT_TLS_MAY &&
	    (c->ext & SMTP_EXT_STARTTLS) != 0) {
		client_enter_state(c, ST_STARTTLS);
		(void)client_cmd(c, "STARTTLS");
		return;
	}
	if (!c->tls && c->set.tls_level >= SMTP_CLIENT_TLS_ENCRYPT) {
		client_fail(c, "4.7.4", "TLS is required, but was not offered "
		    "by host %s", c->peer);
		return;
	}
	if (!client_sasl_wanted(c)) {
		client_ready(c);
		return;
	}
	if (!c->auth_plain && !c->auth_login)
		client_fail(c, "4.7.0", "SASL authentication failed: no "
		    "mechanism in common with %s (PLAIN, LOGIN)", c->peer);
	else if (!c->tls && !c->set.sasl_allow_plaintext)
		client_fail(c, "4.7.0", "SASL authentication refused: %s "
		    "offers no TLS, and plaintext AUTH is not allowed",
		    c->peer);
	else
		client_auth_start(c);
}

static void
client_ready(struct smtp_client *c)
{
	client_enter_state(c, ST_READY);
	c->cb->ready(c->ctx);
}

/* --- a message --- */

static bool
client_has_ctl(const char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

static bool
client_non_ascii(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

static bool
client_msg_utf8(const struct smtp_client_msg *m)
{
	if (client_non_ascii(m->sender))
		return true;
	for (unsigned i = 0; i < m->rcpt_count; i++)
		if (client_non_ascii(m->rcpts[i].addr))
			return true;
	return false;
}

/* client_local_cb: report a message refused before anything was sent. */
static void
client_local_cb(void *ctx)
{
	struct smtp_client *c = ctx;

	client_enter(c);
	timeout_remove(&c->local_to);
	if (client_msg_finish(c))
		client_ready(c);
	client_leave(c);
}

/* client_local_fail: every recipient fails (dsn 5.x.x) or defers, without
 * a word to the server; reported from the loop, not from inside send. */
static void
client_local_fail(struct smtp_client *c, const char *dsn, const char *text)
{
	struct smtp_client_msg *m = c->msg;

	for (unsigned i = 0; i < m->rcpt_count; i++)
		client_rcpt_set(&m->rcpts[i], dsn[0] == '5' ?
		    SMTP_CLIENT_FAILED : SMTP_CLIENT_DEFERRED, 0, dsn,
		    SMTP_CLIENT_STAGE_LOCAL, text);
	c->state = ST_LOCAL;
	c->local_to = timeout_add(c->loop, 0, false, client_local_cb, c);
}

static const char *
client_notify(unsigned n, char *out, size_t size)
{
	out[0] = '\0';
	if (n & SMTP_NOTIFY_NEVER)
		return strlcpy(out, "NEVER", size), out;
	if (n & SMTP_NOTIFY_SUCCESS)
		strlcat(out, ",SUCCESS", size);
	if (n & SMTP_NOTIFY_FAILURE)
		strlcat(out, ",FAILURE", size);
	if (n & SMTP_NOTIFY_DELAY)
		strlcat(out, ",DELAY", size);
	return out + (out[0] == ',');
}

static bool
client_send_rcpt(struct smtp_client *c, unsigned i)
{
	const struct smtp_client_rcpt *r = &c->msg->rcpts[i];
	char notify[40], orcpt[SMTP_ORCPT_MAX + 8];
	bool dsn = (c->ext & SMTP_EXT_DSN) != 0;

	notify[0] = orcpt[0] = '\0';
	if (dsn && r->notify != 0) {
		char n[32];

		snprintf(notify, sizeof(notify), " NOTIFY=%s",
		    client_notify(r->notify, n, sizeof(n)));
	}
	if (dsn && r->orcpt != NULL)
		snprintf(orcpt, sizeof(orcpt), " ORCPT=%s", r->orcpt);
	c->rcpt_next = i + 1;
	return client_cmd(c, "RCPT TO:<%s>%s%s", r->addr, notify, orcpt);
}

static bool
client_send_mail(struct smtp_client *c, bool utf8)
{
	const struct smtp_client_msg *m = c->msg;
	char size[32], envid[SMTP_ENVID_MAX + 8];
	bool dsn = (c->ext & SMTP_EXT_DSN) != 0;

	size[0] = envid[0] = '\0';
	if (c->ext & SMTP_EXT_SIZE)
		snprintf(size, sizeof(size), " SIZE=%" PRIu64, m->size);
	if (dsn && m->envid != NULL)
		snprintf(envid, sizeof(envid), " ENVID=%s", m->envid);
	return client_cmd(c, "MAIL FROM:<%s>%s%s%s%s%s", m->sender, size,
	    m->body_8bit && (c->ext & SMTP_EXT_8BITMIME) ? " BODY=8BITMIME" :
	    "", utf8 ? " SMTPUTF8" : "", dsn && m->ret == SMTP_RET_FULL ?
	    " RET=FULL" : dsn && m->ret == SMTP_RET_HDRS ? " RET=HDRS" : "",
	    envid);
}

/* client_msg_bad: a value that would break the command line. */
static bool
client_msg_bad(const struct smtp_client_msg *m)
{
	if (client_has_ctl(m->sender) || client_has_ctl(m->envid) ||
	    strlen(m->sender) > SMTP_PATH_MAX || (m->envid != NULL &&
	    strlen(m->envid) > SMTP_ENVID_MAX) || m->rcpt_count == 0)
		return true;
	for (unsigned i = 0; i < m->rcpt_count; i++)
		if (client_has_ctl(m->rcpts[i].addr) ||
		    client_has_ctl(m->rcpts[i].orcpt) ||
		    strlen(m->rcpts[i].addr) > SMTP_PATH_MAX ||
		    (m->rcpts[i].orcpt != NULL &&
		    strlen(m->rcpts[i].orcpt) > SMTP_ORCPT_MAX))
			return true;
	return false;
}

void
smtp_client_send(struct smtp_client *c, struct smtp_client_msg *msg)
{
	bool utf8;
	char text[128];

	if (c->state != ST_READY || c->msg != NULL)
		log_panic("smtp_client_send: session not ready");
	c->msg = msg;
	c->accepted = xcalloc(msg->rcpt_count > 0 ? msg->rcpt_count : 1,
	    sizeof(*c->accepted));
	c->rcpt_next = c->rcpt_replied = c->rcpt_ok = 0;
	c->mail_failed = false;
	for (unsigned i = 0; i < msg->rcpt_count; i++)
		msg->rcpts[i].result = SMTP_CLIENT_PENDING;
	if (client_msg_bad(msg)) {
		client_local_fail(c, "5.5.2", "invalid address in envelope");
		return;
	}
	if ((c->ext & SMTP_EXT_SIZE) && c->size_max > 0 &&
	    msg->size > c->size_max) {
		snprintf(text, sizeof(text), "message size %" PRIu64 " exceeds "
		    "size limit %" PRIu64 " of server", msg->size, c->size_max);
		client_local_fail(c, "5.3.4", text);
		return;
	}
	utf8 = client_msg_utf8(msg);
	if (utf8 && (c->ext & SMTP_EXT_SMTPUTF8) == 0) {
		client_local_fail(c, "5.6.7", "SMTPUTF8 is required, but was "
		    "not offered by host");
		return;
	}
	client_enter_state(c, ST_MAIL);
	if (!client_send_mail(c, utf8))
		return;
	if (c->ext & SMTP_EXT_PIPELINING)
		for (unsigned i = 0; i < msg->rcpt_count; i++)
			if (!client_send_rcpt(c, i))
				return;
}

/* client_txn_over: the message is done; RSET first when the server may
 * still hold part of the transaction. */
static void
client_txn_over(struct smtp_client *c, bool rset)
{
	if (!client_msg_finish(c))
		return;
	if (!rset) {
		client_ready(c);
		return;
	}
	client_enter_state(c, ST_RSET);
	(void)client_cmd(c, "RSET");
}

static void
client_data(struct smtp_client *c)
{
	if (c->rcpt_ok == 0) {
		client_txn_over(c, true);
		return;
	}
	client_enter_state(c, ST_DATA);
	(void)client_cmd(c, "DATA");
}

static void
client_on_mail(struct smtp_client *c, const struct smtp_client_reply *r)
{
	struct smtp_client_msg *m = c->msg;

	if (r->code >= 300) {
		for (unsigned i = 0; i < m->rcpt_count; i++)
			client_rcpt_reply(&m->rcpts[i], r,
			    SMTP_CLIENT_STAGE_MAIL);
		c->mail_failed = true;
	}
	client_enter_state(c, ST_RCPT);
	if (c->rcpt_next > 0)
		return;		/* pipelined: their replies follow */
	if (c->mail_failed)
		client_txn_over(c, true);
	else
		(void)client_send_rcpt(c, 0);
}

static void
client_on_rcpt(struct smtp_client *c, const struct smtp_client_reply *r)
{
	struct smtp_client_msg *m = c->msg;
	unsigned i = c->rcpt_replied++;

	if (!c->mail_failed) {
		if (r->code < 300) {
			c->accepted[i] = true;
			c->rcpt_ok++;
		} else
			client_rcpt_reply(&m->rcpts[i], r,
			    SMTP_CLIENT_STAGE_RCPT);
	}
	if (c->rcpt_replied < m->rcpt_count) {
		if (c->rcpt_next == c->rcpt_replied)
			(void)client_send_rcpt(c, c->rcpt_replied);
		return;
	}
	if (c->mail_failed)
		client_txn_over(c, true);
	else
		client_data(c);
}

/* client_accepted_reply: the reply r for every accepted recipient. */
static void
client_accepted_reply(struct smtp_client *c, const struct smtp_client_reply *r,
    enum smtp_client_stage stage)
{
	struct smtp_client_msg *m = c->msg;

	for (unsigned i = 0; i < m->rcpt_count; i++)
		if (c->accepted[i])
			client_rcpt_reply(&m->rcpts[i], r, stage);
}

static void client_body_next(struct smtp_client *c);

static void
client_on_data(struct smtp_client *c, const struct smtp_client_reply *r)
{
	if (r->code == 354) {
		client_enter_state(c, ST_BODY);
		c->body_off = 0;
		smtp_client_encode_init(&c->enc, c->set.line_length_limit);
		client_body_next(c);
		return;
	}
	if (r->code < 400) {
		client_fail(c, "4.5.0", "unexpected reply to DATA from %s: %s",
		    c->peer, r->text);
		return;
	}
	client_accepted_reply(c, r, SMTP_CLIENT_STAGE_DATA);
	client_txn_over(c, true);
}

static void
client_on_dot(struct smtp_client *c, const struct smtp_client_reply *r)
{
	client_accepted_reply(c, r, SMTP_CLIENT_STAGE_DOT);
	client_txn_over(c, false);
}

static void
client_on_rset(struct smtp_client *c, const struct smtp_client_reply *r)
{
	if (r->code != 250) {
		client_fail_reply(c, r, true);
		return;
	}
	client_ready(c);
}

/* client_body_next: the next piece of content, or the end of data. */
static void
client_body_next(struct smtp_client *c)
{
	unsigned char in[SMTP_CLIENT_CHUNK];
	ssize_t n;

	buf_truncate(&c->body, 0);
	n = pread(c->msg->fd, in, sizeof(in), (off_t)c->body_off);
	if (n < 0) {
		/* Closing without the final dot makes the server drop what
		 * it got: defer, never a truncated message. */
		client_fail(c, "4.3.0", "error reading the message content: "
		    "%s", strerror(errno));
		return;
	}
	if (n == 0) {
		if (smtp_client_encode_end(&c->enc, &c->body) < 0)
			log_panic("smtp_client: body buffer too small");
		client_enter_state(c, ST_DOT);
	} else {
		c->body_off += (uint64_t)n;
		if (smtp_client_encode(&c->enc, in, (size_t)n, &c->body) < 0)
			log_panic("smtp_client: body buffer too small");
	}
	(void)client_write(c, c->body.data, c->body.len);
}

void
smtp_client_quit(struct smtp_client *c)
{
	if (c->state != ST_READY)
		log_panic("smtp_client_quit: session not ready");
	client_enter_state(c, ST_QUIT);
	(void)client_cmd(c, "QUIT");
}

static void
client_quit_done(struct smtp_client *c, unsigned code, const char *text)
{
	struct smtp_client_status st;

	memset(&st, 0, sizeof(st));
	st.ok = true;
	st.code = code;
	st.stage = SMTP_CLIENT_STAGE_QUIT;
	strlcpy(st.dsn, "2.0.0", sizeof(st.dsn));
	strlcpy(st.text, text, sizeof(st.text));
	client_close(c, &st);
}

/* --- input --- */

/* client_dispatch: a complete reply, to the state that waits for it. */
static void
client_dispatch(struct smtp_client *c, const struct smtp_client_reply *r)
{
	switch (c->state) {
	case ST_GREETING:
		client_on_greeting(c, r);
		break;
	case ST_EHLO:
		client_on_ehlo(c, r);
		break;
	case ST_HELO:
		client_on_helo(c, r);
		break;
	case ST_STARTTLS:
		client_on_starttls(c, r);
		break;
	case ST_AUTH_PLAIN: case ST_AUTH_USER: case ST_AUTH_PASS:
	case ST_AUTH_DONE:
		client_on_auth(c, r);
		break;
	case ST_MAIL:
		client_on_mail(c, r);
		break;
	case ST_RCPT:
		client_on_rcpt(c, r);
		break;
	case ST_DATA:
		client_on_data(c, r);
		break;
	case ST_DOT:
		client_on_dot(c, r);
		break;
	case ST_RSET:
		client_on_rset(c, r);
		break;
	case ST_QUIT:
		client_quit_done(c, r->code, r->text);
		break;
	default:
		/* A reply nobody asked for: 421 from a server going away,
		 * or an early answer in the middle of DATA. */
		client_fail_reply(c, r, true);
		break;
	}
}

/* client_line: one reply line. false when the session ended. */
static bool
client_line(struct smtp_client *c, const unsigned char *line, size_t len)
{
	const char *error;
	int r;

	if (!c->reply_open)
		smtp_client_reply_init(&c->reply);
	c->reply_open = true;
	r = smtp_client_reply_line(&c->reply, (const char *)line, len, &error);
	if (r < 0) {
		client_fail(c, "4.5.0", "protocol error from %s: %s", c->peer,
		    error);
		return false;
	}
	if (c->state == ST_EHLO && c->reply.lines > 1)
		ehlo_keyword(c, c->reply.line_text, c->reply.line_len);
	if (r == 0)
		return true;
	c->reply_open = false;
	client_dispatch(c, &c->reply);
	return c->conn != NULL && !c->freed;
}

static void
client_input(struct smtp_client *c)
{
	const unsigned char *line;
	size_t len;
	int r;

	while (c->conn != NULL && !c->freed &&
	    (r = conn_read_line(c->conn, &line, &len)) != 0) {
		if (r < 0) {
			client_fail(c, "4.5.0", "protocol error from %s: reply "
			    "line longer than %d bytes", c->peer,
			    SMTP_CLIENT_LINE_MAX);
			return;
		}
		if (!client_line(c, line, len))
			return;
	}
}

static const char *
client_while(const struct smtp_client *c)
{
	static char text[64];

	switch (client_stage(c)) {
	case SMTP_CLIENT_STAGE_GREETING:
		return "receiving the initial server greeting";
	case SMTP_CLIENT_STAGE_BODY:
		return "sending message body";
	case SMTP_CLIENT_STAGE_TLS:
		return "performing the TLS handshake";
	default:
		snprintf(text, sizeof(text), "sending %s",
		    smtp_client_stage_name(client_stage(c)));
		return text;
	}
}

static void
client_event(struct conn *conn, enum conn_event ev, void *ctx)
{
	struct smtp_client *c = ctx;

	(void)conn;
	client_enter(c);
	switch (ev) {
	case CONN_EV_INPUT:
		client_input(c);
		break;
	case CONN_EV_DRAINED:
		if (c->state == ST_BODY)
			client_body_next(c);
		break;
	case CONN_EV_CLOSED:
		client_input(c);
		if (c->conn == NULL || c->freed)
			break;
		if (c->state == ST_QUIT)
			client_quit_done(c, 0, "connection closed after QUIT");
		else
			client_fail(c, "4.4.2", "lost connection with %s while "
			    "%s", c->peer, client_while(c));
		break;
	case CONN_EV_ERROR:
		if (c->state == ST_QUIT)
			client_quit_done(c, 0, "connection lost after QUIT");
		else if (c->tls_handshaking)
			client_fail(c, "4.7.5", "TLS with %s failed: %s",
			    c->peer, conn_error(conn));
		else
			client_fail(c, "4.4.2", "lost connection with %s while "
			    "%s (%s)", c->peer, client_while(c),
			    conn_error(conn));
		break;
	case CONN_EV_TIMEOUT:
	case CONN_EV_STALLED:
		if (c->state == ST_QUIT)
			client_quit_done(c, 0, "timeout after QUIT");
		else
			client_fail(c, "4.4.2", "conversation with %s timed "
			    "out while %s", c->peer, client_while(c));
		break;
	}
	client_leave(c);
}

/* --- connecting --- */

static void
client_start_conn(struct smtp_client *c, int fd)
{
	c->conn = conn_new(c->loop, fd, SMTP_CLIENT_LINE_MAX, client_event, c);
	conn_set_output_limits(c->conn, CLIENT_OUT_SOFT, CLIENT_OUT_HARD);
	client_enter_state(c, ST_GREETING);
}

void
smtp_client_start_fd(struct smtp_client *c, int fd, const char *peer)
{
	if (c->state != ST_NEW)
		log_panic("smtp_client_start_fd: already started");
	strlcpy(c->peer, peer, sizeof(c->peer));
	client_start_conn(c, fd);
}

static void
client_connect_done(struct smtp_client *c, int err)
{
	int fd = c->connect_fd;

	io_remove(&c->connect_io);
	timeout_remove(&c->connect_to);
	if (err != 0) {
		client_fail(c, "4.4.1", "connect to %s: %s", c->peer,
		    strerror(err));
		return;
	}
	c->connect_fd = -1;
	client_start_conn(c, fd);
}

static void
client_connect_io(void *ctx)
{
	struct smtp_client *c = ctx;
	socklen_t len = sizeof(int);
	int err = 0;

	client_enter(c);
	if (getsockopt(c->connect_fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	client_connect_done(c, err);
	client_leave(c);
}

static void
client_connect_timeout(void *ctx)
{
	struct smtp_client *c = ctx;

	client_enter(c);
	client_connect_done(c, c->connect_errno != 0 ? c->connect_errno :
	    ETIMEDOUT);
	client_leave(c);
}

int
smtp_client_connect(struct smtp_client *c, const struct net_addr *addr,
    const char *host, const char **error_r)
{
	char a[NET_ADDR_STR_MAX];
	int fd;

	if (c->state != ST_NEW)
		log_panic("smtp_client_connect: already started");
	snprintf(c->peer, sizeof(c->peer), "%s[%s]:%u", host,
	    net_addr_str(addr, a, sizeof(a)), net_addr_port(addr));
	fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(client_error, sizeof(client_error), "socket: %s",
		    strerror(errno));
		*error_r = client_error;
		return -1;
	}
	c->connect_fd = fd;
	c->state = ST_CONNECTING;
	if (connect(fd, (const struct sockaddr *)&addr->ss, addr->len) == 0 ||
	    errno == EINPROGRESS) {
		c->connect_io = io_add(c->loop, fd, IO_WRITE,
		    client_connect_io, c);
		c->connect_to = timeout_add(c->loop,
		    client_ms(c->set.connect_timeout,
		    SMTP_CLIENT_DEF_CONNECT_TIMEOUT), false,
		    client_connect_timeout, c);
		return 0;
	}
	/* Refused at once: say so from the loop, like any other outcome. */
	c->connect_errno = errno;
	c->connect_to = timeout_add(c->loop, 0, false, client_connect_timeout,
	    c);
	return 0;
}
