/*
 * pop3_session.c: the POP3 state machine (RFC 1939 with RFC 2449 CAPA and
 * response codes, RFC 2595 STLS, RFC 3206 codes, RFC 5034 AUTH): line
 * splitting with the line limit (255 octets by default), the pipeline
 * queue, the command table, asynchronous authentication, the hand-over
 * of a session between processes, and streaming of messages and listings
 * in bounded chunks, counted for the logout line.
 * Trusts nothing from the client: every line is length-checked before it
 * is stored, every argument parsed strictly; passwords and SASL data are
 * wiped after use and never logged. Trusts its callbacks and settings,
 * and the bytes handed over from the login process no more than any
 * client input.
 */
#include "config.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base64.h"
#include "buf.h"
#include "compat/compat.h"
#include "log.h"
#include "user.h"
#include "xmalloc.h"
#include "pop3_mailbox.h"
#include "pop3_session.h"

#define POP3_REC_LINE		'L'
#define POP3_REC_TOOLONG	'T'
#define POP3_REC_HDR		3	/* type, 2-byte length */
#define POP3_REPLY_MAX		512

enum pop3_stream_kind {
	POP3_STREAM_NONE,
	POP3_STREAM_MSG,
	POP3_STREAM_LIST,
	POP3_STREAM_UIDL
};

/* The CRLF and dot-stuffing conversion, resumable at any byte. */
struct pop3_xform {
	bool bol;		/* at the start of a line */
	bool prev_cr;
	size_t line_len;	/* bytes of the current line, CR included */
	bool in_body;
	bool top;		/* TOP: stop after body_max body lines */
	unsigned long body_max, body_lines;
	bool done;
};

struct pop3_session {
	enum pop3_state state;
	struct pop3_settings set;	/* mechanisms: owned copy */
	const struct pop3_callbacks *cb;
	void *ctx;

	struct buf line;		/* the partial input line */
	bool skipping;			/* in an over-long line */
	struct buf queue;		/* complete lines, POP3_REC_* */
	size_t queue_pos;
	bool running, tls_reset;
	unsigned bad;

	char user[USER_NAME_MAX + 1];	/* from USER */
	bool have_user;
	bool auth_pending;		/* a check returned PENDING */
	bool waiting_login;
	char login_user[USER_NAME_MAX + 1];
	char *sasl_mech;		/* owned; non-NULL in an exchange */

	struct pop3_mailbox *mb;	/* owned, in TRANSACTION */
	bool *deleted;			/* owned, one per message */
	bool *retrieved;		/* owned, one per message: RETR sent
					   it (for expire_now) */

	enum pop3_stream_kind stream;
	struct pop3_mailbox_msg *msg;	/* owned while streaming */
	struct pop3_xform xf;
	unsigned cursor;		/* listing position */
	/* Both kept from one message to the next (a client fetching the
	 * whole mailbox would otherwise allocate them per message) and
	 * let go by pop3_session_idle. */
	unsigned char *raw;		/* owned, POP3_CHUNK bytes, or NULL */
	struct buf out;			/* a chunk being built */
	/* Bytes written since the last pop3_session_output_ready: past
	 * POP3_CHUNK, queued commands wait for the output to drain, so
	 * that pipelined RETRs of small messages share one write to the
	 * client without any number of them piling up unsent. */
	size_t unflushed;
	struct pop3_stats stats;	/* dele, dele_bytes: set at QUIT */
};

struct pop3_cmd {
	const char *name;
	unsigned states;		/* 1 << enum pop3_state */
	bool scan;			/* needs the snapshot (pop3_scan) */
	void (*fn)(struct pop3_session *s, char *args);
};

#define AUTH_ST	(1u << POP3_STATE_AUTHORIZATION)
#define TRANS_ST (1u << POP3_STATE_TRANSACTION)

static void pop3_run(struct pop3_session *s);

/* Output. */

static void
pop3_write(struct pop3_session *s, const void *data, size_t len)
{
	if (s->state != POP3_STATE_CLOSED || s->stream == POP3_STREAM_NONE) {
		s->cb->write(s->ctx, data, len);
		s->unflushed += len;
	}
}

static void pop3_reply(struct pop3_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
pop3_reply(struct pop3_session *s, const char *fmt, ...)
{
	char line[POP3_REPLY_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		log_panic("pop3_reply: bad format");
	if ((size_t)n > sizeof(line) - 3)
		n = (int)(sizeof(line) - 3);
	line[n++] = '\r';
	line[n++] = '\n';
	pop3_write(s, line, (size_t)n);
}

/* The one function that changes state. */
static void
pop3_enter_state(struct pop3_session *s, enum pop3_state st)
{
	s->state = st;
	if (st == POP3_STATE_CLOSED && s->cb->closed != NULL)
		s->cb->closed(s->ctx);
}

static void
pop3_bad(struct pop3_session *s, const char *reply)
{
	if (++s->bad >= POP3_BAD_MAX) {
		pop3_reply(s, "-ERR Too many bad commands, closing");
		pop3_enter_state(s, POP3_STATE_CLOSED);
		return;
	}
	pop3_reply(s, "%s", reply);
}

/* Decoded SASL data on the heap, sized from its line (at most line_max
 * bytes of base64, so bounded), wiped when freed. */
struct pop3_dec {
	unsigned char *data;
	size_t len, size;
};

/* Decode len bytes of base64; -1 if they are not (free d all the same). */
static int
pop3_dec_init(struct pop3_dec *d, const char *in, size_t len)
{
	d->size = len / 4 * 3 + 1;
	d->data = xmalloc(d->size);
	d->len = 0;
	return base64_decode(in, len, d->data, &d->len);
}

static void
pop3_dec_free(struct pop3_dec *d)
{
	explicit_bzero(d->data, d->size);
	free(d->data);
	d->data = NULL;
}

/* Arguments. */

/* Split args at single spaces into at most max tokens; -1 on empty
 * tokens (double or trailing spaces) or too many. */
static int
pop3_split(char *args, char **tok, int max, int *n_r)
{
	int n = 0;

	*n_r = 0;
	if (args == NULL)
		return 0;
	while (n < max) {
		char *sp = strchr(args, ' ');

		if (*args == '\0' || sp == args)
			return -1;
		tok[n++] = args;
		if (sp == NULL) {
			*n_r = n;
			return 0;
		}
		*sp = '\0';
		args = sp + 1;
	}
	return -1;
}

/* A decimal number without sign or leading junk, at most max. */
static int
pop3_number(const char *p, unsigned long max, unsigned long *v_r)
{
	unsigned long v = 0;

	if (*p == '\0')
		return -1;
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		if (v > (ULONG_MAX - 9) / 10)
			return -1;
		v = v * 10 + (unsigned long)(*p - '0');
		if (v > max)
			return -1;
	}
	*v_r = v;
	return 0;
}

/* A message number of this session; replies and returns -1 if not. */
static int
pop3_msgnum(struct pop3_session *s, const char *arg, unsigned *i_r)
{
	unsigned long v;

	if (pop3_number(arg, ULONG_MAX - 10, &v) < 0) {
		pop3_bad(s, "-ERR Invalid message number");
		return -1;
	}
	if (v == 0 || v > pop3_mailbox_count(s->mb)) {
		pop3_reply(s, "-ERR There is no message %lu", v);
		return -1;
	}
	if (s->deleted[v - 1]) {
		pop3_reply(s, "-ERR message %lu already deleted", v);
		return -1;
	}
	*i_r = (unsigned)(v - 1);
	return 0;
}

static bool
pop3_plaintext_ok(const struct pop3_session *s)
{
	return s->set.secured || s->set.allow_plaintext;
}

static bool
pop3_mech_plaintext(const char *mech)
{
	return strcmp(mech, "PLAIN") == 0 || strcmp(mech, "LOGIN") == 0;
}

/* Mechanism i of the settings into out; false past the end. */
static bool
pop3_mech_at(const struct pop3_session *s, size_t *pos, char *out,
    size_t size)
{
	const char *p = s->set.mechanisms + *pos;
	size_t len;

	while (*p == ' ')
		p++;
	len = strcspn(p, " ");
	if (len == 0)
		return false;
	*pos = (size_t)(p + len - s->set.mechanisms);
	if (len >= size)
		len = size - 1;
	memcpy(out, p, len);
	out[len] = '\0';
	return true;
}

/* Mechanisms offered now, space separated, into out. */
static void
pop3_mechs_offered(const struct pop3_session *s, struct buf *out)
{
	char mech[64];
	size_t pos = 0;

	while (pop3_mech_at(s, &pos, mech, sizeof(mech))) {
		if (pop3_mech_plaintext(mech) && !pop3_plaintext_ok(s))
			continue;
		if (out->len > 0)
			buf_append_byte(out, ' ');
		buf_append_str(out, mech);
	}
}

static bool
pop3_mech_configured(const struct pop3_session *s, const char *want)
{
	char mech[64];
	size_t pos = 0;

	while (pop3_mech_at(s, &pos, mech, sizeof(mech)))
		if (strcmp(mech, want) == 0)
			return true;
	return false;
}

/* Authentication. */

static void
pop3_authenticated(struct pop3_session *s, const char *user)
{
	if (strlcpy(s->login_user, user, sizeof(s->login_user)) >=
	    sizeof(s->login_user)) {
		pop3_reply(s, "-ERR [AUTH] Authentication failed");
		return;
	}
	s->waiting_login = true;
	s->cb->authenticated(s->ctx, s->login_user);
}

static void
pop3_auth_result(struct pop3_session *s, enum pop3_auth_result r,
    const char *user)
{
	if (r == POP3_AUTH_OK)
		pop3_authenticated(s, user);
	else if (r == POP3_AUTH_TEMPFAIL)
		pop3_reply(s, "-ERR [SYS/TEMP] Temporary authentication "
		    "failure");
	else
		pop3_reply(s, "-ERR [AUTH] Authentication failed");
}

static void
pop3_sasl_end(struct pop3_session *s, bool abort)
{
	if (abort && s->cb->sasl_abort != NULL)
		s->cb->sasl_abort(s->ctx);
	free(s->sasl_mech);
	s->sasl_mech = NULL;
}

/* What a SASL step answered, from the callback or pop3_session_auth_reply
 * (r is not PENDING). */
static void
pop3_sasl_result(struct pop3_session *s, enum pop3_auth_result r,
    const unsigned char *chal, size_t chal_len, const char *user)
{
	struct buf b;

	if (r != POP3_AUTH_CONTINUE) {
		pop3_sasl_end(s, false);
		pop3_auth_result(s, r, user != NULL ? user : "");
		return;
	}
	if (chal_len > POP3_SASL_MAX)
		log_panic("pop3: SASL challenge of %zu bytes", chal_len);
	buf_init(&b, POP3_SASL_MAX * 2);
	buf_append_str(&b, "+ ");
	base64_encode(chal, chal_len, &b);
	buf_append_str(&b, "\r\n");
	pop3_write(s, b.data, b.len);
	buf_free(&b);
}

/* One SASL step with a decoded response (or none on the first). */
static void
pop3_sasl_step(struct pop3_session *s, bool first, const unsigned char *resp,
    size_t len, bool has_resp)
{
	const unsigned char *chal = NULL;
	size_t chal_len = 0;
	const char *user = NULL;
	enum pop3_auth_result r;

	r = s->cb->sasl(s->ctx, s->sasl_mech, first, resp, len, has_resp,
	    &chal, &chal_len, &user);
	if (r == POP3_AUTH_PENDING)
		s->auth_pending = true;
	else
		pop3_sasl_result(s, r, chal, chal_len, user);
}

static void
pop3_sasl_response(struct pop3_session *s, char *line, size_t len)
{
	struct pop3_dec dec;

	if (len == 1 && line[0] == '*') {
		pop3_sasl_end(s, true);
		pop3_reply(s, "-ERR Authentication cancelled");
		return;
	}
	if (pop3_dec_init(&dec, line, len) < 0) {
		pop3_dec_free(&dec);
		pop3_sasl_end(s, true);
		pop3_reply(s, "-ERR Invalid base64 data");
		return;
	}
	pop3_sasl_step(s, false, dec.data, dec.len, true);
	pop3_dec_free(&dec);
}

/* Commands, in RFC order. */

static void
pop3_cmd_user(struct pop3_session *s, char *args)
{
	if (!pop3_plaintext_ok(s)) {
		pop3_reply(s, "-ERR [AUTH] Plaintext authentication "
		    "disallowed on non-secure connection");
		return;
	}
	if (args == NULL || *args == '\0' ||
	    strlcpy(s->user, args, sizeof(s->user)) >= sizeof(s->user)) {
		pop3_bad(s, "-ERR Invalid user name");
		return;
	}
	s->have_user = true;
	pop3_reply(s, "+OK");
}

static void
pop3_cmd_pass(struct pop3_session *s, char *args)
{
	enum pop3_auth_result r;

	if (!pop3_plaintext_ok(s)) {
		pop3_reply(s, "-ERR [AUTH] Plaintext authentication "
		    "disallowed on non-secure connection");
		return;
	}
	if (!s->have_user) {
		pop3_reply(s, "-ERR No user name given (use USER first)");
		return;
	}
	s->have_user = false;
	if (args == NULL || s->cb->check_plain == NULL) {
		pop3_reply(s, "-ERR [AUTH] Authentication failed");
		return;
	}
	/* RFC 1939: the password is the rest of the line, spaces and all.
	 * pop3_run wipes it when we return, pending or not. */
	r = s->cb->check_plain(s->ctx, s->user, args);
	if (r == POP3_AUTH_PENDING)
		s->auth_pending = true;
	else
		pop3_auth_result(s, r, s->user);
}

static void
pop3_cmd_auth_list(struct pop3_session *s)
{
	struct buf b;
	size_t start = 0;

	buf_init(&b, 1024);
	pop3_mechs_offered(s, &b);
	pop3_reply(s, "+OK");
	for (size_t i = 0; i <= b.len; i++) {
		if (i == b.len || b.data[i] == ' ') {
			if (i > start) {
				pop3_write(s, b.data + start, i - start);
				pop3_write(s, "\r\n", 2);
			}
			start = i + 1;
		}
	}
	pop3_write(s, ".\r\n", 3);
	buf_free(&b);
}

static void
pop3_cmd_auth(struct pop3_session *s, char *args)
{
	struct pop3_dec dec;
	const char *resp;
	char *tok[2];
	int n;

	if (args == NULL) {
		pop3_cmd_auth_list(s);
		return;
	}
	if (pop3_split(args, tok, 2, &n) < 0 || n == 0) {
		pop3_bad(s, "-ERR Syntax error");
		return;
	}
	for (char *p = tok[0]; *p != '\0'; p++)
		*p = (char)toupper((unsigned char)*p);
	if (!pop3_mech_configured(s, tok[0]) || s->cb->sasl == NULL) {
		pop3_reply(s, "-ERR Unsupported authentication mechanism");
		return;
	}
	if (pop3_mech_plaintext(tok[0]) && !pop3_plaintext_ok(s)) {
		pop3_reply(s, "-ERR [AUTH] Plaintext authentication "
		    "disallowed on non-secure connection");
		return;
	}
	/* "=" is an empty initial response (RFC 5034 section 4). */
	resp = n == 2 && strcmp(tok[1], "=") != 0 ? tok[1] : "";
	if (pop3_dec_init(&dec, resp, strlen(resp)) < 0) {
		pop3_dec_free(&dec);
		pop3_reply(s, "-ERR Invalid base64 data");
		return;
	}
	s->sasl_mech = xstrdup(tok[0]);
	pop3_sasl_step(s, true, dec.data, dec.len, n == 2);
	pop3_dec_free(&dec);
}

static void
pop3_cmd_stls(struct pop3_session *s, char *args)
{
	if (args != NULL) {
		pop3_bad(s, "-ERR Syntax error");
		return;
	}
	if (s->set.secured) {
		pop3_reply(s, "-ERR TLS is already active");
		return;
	}
	if (!s->set.tls_available || s->cb->start_tls == NULL) {
		pop3_reply(s, "-ERR STLS is not available");
		return;
	}
	pop3_reply(s, "+OK Begin TLS negotiation");
	/* No plaintext pipelined after STLS may survive into TLS. */
	buf_truncate(&s->queue, 0);
	s->queue_pos = 0;
	buf_truncate(&s->line, 0);
	s->skipping = false;
	s->tls_reset = true;
	s->cb->start_tls(s->ctx);
}

static void
pop3_cmd_capa(struct pop3_session *s, char *args)
{
	struct buf m;

	(void)args;
	pop3_reply(s, "+OK Capability list follows");
	pop3_reply(s, "TOP");
	if (s->state == POP3_STATE_AUTHORIZATION && pop3_plaintext_ok(s))
		pop3_reply(s, "USER");
	pop3_reply(s, "UIDL");
	buf_init(&m, 1024);
	if (s->state == POP3_STATE_AUTHORIZATION)
		pop3_mechs_offered(s, &m);
	if (m.len > 0)
		pop3_reply(s, "SASL %s", buf_cstr(&m));
	buf_free(&m);
	pop3_reply(s, "RESP-CODES");
	pop3_reply(s, "AUTH-RESP-CODE");
	pop3_reply(s, "PIPELINING");
	pop3_reply(s, "EXPIRE %s", s->set.expire_now ? "0" : "NEVER");
	pop3_reply(s, "LOGIN-DELAY %u", s->set.login_delay);
	pop3_reply(s, "IMPLEMENTATION loft");
	if (s->state == POP3_STATE_AUTHORIZATION && s->set.tls_available &&
	    !s->set.secured)
		pop3_reply(s, "STLS");
	pop3_reply(s, ".");
}

static void
pop3_totals(const struct pop3_session *s, unsigned *n_r, uint64_t *size_r)
{
	*n_r = 0;
	*size_r = 0;
	for (unsigned i = 0; i < pop3_mailbox_count(s->mb); i++) {
		if (s->deleted[i])
			continue;
		(*n_r)++;
		*size_r += pop3_mailbox_vsize(s->mb, i);
	}
}

/*
 * The mailbox is scanned (synced, its snapshot taken) at the first command
 * that numbers messages, not at login: the +OK of the login goes out
 * before a Maildir that another program filled is adopted. A scan that
 * fails ends the session, for no command can be answered without it.
 */
static int
pop3_scan(struct pop3_session *s)
{
	const char *error;

	if (pop3_mailbox_scanned(s->mb))
		return 0;
	if (pop3_mailbox_scan(s->mb, &error) < 0) {
		log_error("pop3: user=<%s>, cannot read mailbox (%s)",
		    s->login_user, error);
		pop3_reply(s, "-ERR [SYS/TEMP] Cannot read mailbox");
		pop3_mailbox_free(&s->mb);
		pop3_enter_state(s, POP3_STATE_CLOSED);
		return -1;
	}
	s->deleted = xcalloc(pop3_mailbox_count(s->mb) + 1, sizeof(bool));
	s->retrieved = xcalloc(pop3_mailbox_count(s->mb) + 1, sizeof(bool));
	pop3_totals(s, &s->stats.messages, &s->stats.size);
	return 0;
}

static bool
pop3_no_args(struct pop3_session *s, const char *args)
{
	if (args == NULL)
		return true;
	pop3_bad(s, "-ERR Syntax error");
	return false;
}

/*
 * Make the snapshot's sizes exact before STAT, LIST, RETR or TOP uses
 * one: after a lazy sync some are estimates from file names, and a
 * session that only asks UIDL (and DELE, QUIT) never pays for reading
 * the messages. Cheap once they are exact. -1: answered.
 */
static int
pop3_sizes(struct pop3_session *s)
{
	const char *error;

	if (pop3_mailbox_sizes(s->mb, &error) == 0)
		return 0;
	log_error("pop3: user=<%s>, reading the message sizes failed (%s)",
	    s->login_user, error);
	pop3_reply(s, "-ERR [SYS/TEMP] Cannot read the mailbox");
	return -1;
}

static void
pop3_cmd_stat(struct pop3_session *s, char *args)
{
	unsigned n;
	uint64_t size;

	if (!pop3_no_args(s, args) || pop3_sizes(s) < 0)
		return;
	pop3_totals(s, &n, &size);
	pop3_reply(s, "+OK %u %llu", n, (unsigned long long)size);
}

/* One message number or none: 1 one (*i_r), 0 none, -1 answered. */
static int
pop3_opt_msgnum(struct pop3_session *s, char *args, unsigned *i_r)
{
	char *tok[1];
	int n;

	if (pop3_split(args, tok, 1, &n) < 0) {
		pop3_bad(s, "-ERR Syntax error");
		return -1;
	}
	if (n == 0)
		return 0;
	return pop3_msgnum(s, tok[0], i_r) < 0 ? -1 : 1;
}

static void pop3_stream_step(struct pop3_session *s);

static void
pop3_stream_start(struct pop3_session *s, enum pop3_stream_kind kind)
{
	s->stream = kind;
	s->cursor = 0;
	pop3_stream_step(s);
}

static void
pop3_cmd_list(struct pop3_session *s, char *args)
{
	unsigned i, n;
	uint64_t size;
	int ret;

	if ((ret = pop3_opt_msgnum(s, args, &i)) < 0 || pop3_sizes(s) < 0)
		return;
	if (ret == 1) {
		pop3_reply(s, "+OK %u %llu", i + 1,
		    (unsigned long long)pop3_mailbox_vsize(s->mb, i));
		return;
	}
	pop3_totals(s, &n, &size);
	pop3_reply(s, "+OK %u messages (%llu octets)", n,
	    (unsigned long long)size);
	pop3_stream_start(s, POP3_STREAM_LIST);
}

static void
pop3_cmd_uidl(struct pop3_session *s, char *args)
{
	char uidl[POP3_UIDL_LEN + 1];
	unsigned i;
	int ret;

	if ((ret = pop3_opt_msgnum(s, args, &i)) < 0)
		return;
	if (ret == 1) {
		pop3_mailbox_uidl(s->mb, i, uidl);
		pop3_reply(s, "+OK %u %s", i + 1, uidl);
		return;
	}
	pop3_reply(s, "+OK");
	pop3_stream_start(s, POP3_STREAM_UIDL);
}

static void
pop3_send_msg(struct pop3_session *s, unsigned i, bool top,
    unsigned long lines)
{
	const char *error;

	if (pop3_mailbox_msg_open(s->mb, i, &s->msg, &error) < 0) {
		log_error("pop3: cannot read message %u: %s", i + 1, error);
		pop3_reply(s, "-ERR [SYS/TEMP] Cannot read message %u", i + 1);
		return;
	}
	memset(&s->xf, 0, sizeof(s->xf));
	s->xf.bol = true;
	s->xf.top = top;
	s->xf.body_max = lines;
	if (top) {
		s->stats.top++;
		pop3_reply(s, "+OK");
	} else {
		s->stats.retr++;
		s->retrieved[i] = true;
		pop3_reply(s, "+OK %llu octets",
		    (unsigned long long)pop3_mailbox_vsize(s->mb, i));
	}
	if (s->raw == NULL)
		s->raw = xmalloc(POP3_CHUNK);
	pop3_stream_start(s, POP3_STREAM_MSG);
}

static void
pop3_cmd_retr(struct pop3_session *s, char *args)
{
	char *tok[1];
	unsigned i;
	int n;

	if (pop3_split(args, tok, 1, &n) < 0 || n != 1) {
		pop3_bad(s, "-ERR Syntax error");
		return;
	}
	if (pop3_msgnum(s, tok[0], &i) == 0 && pop3_sizes(s) == 0)
		pop3_send_msg(s, i, false, 0);
}

static void
pop3_cmd_top(struct pop3_session *s, char *args)
{
	char *tok[2];
	unsigned long lines;
	unsigned i;
	int n;

	if (pop3_split(args, tok, 2, &n) < 0 || n != 2) {
		pop3_bad(s, "-ERR Syntax error");
		return;
	}
	if (pop3_number(tok[1], ULONG_MAX - 10, &lines) < 0) {
		pop3_bad(s, "-ERR Invalid line count");
		return;
	}
	if (pop3_msgnum(s, tok[0], &i) == 0 && pop3_sizes(s) == 0)
		pop3_send_msg(s, i, true, lines);
}

static void
pop3_cmd_dele(struct pop3_session *s, char *args)
{
	char *tok[1];
	unsigned i;
	int n;

	if (pop3_split(args, tok, 1, &n) < 0 || n != 1) {
		pop3_bad(s, "-ERR Syntax error");
		return;
	}
	if (pop3_msgnum(s, tok[0], &i) < 0)
		return;
	s->deleted[i] = true;
	pop3_reply(s, "+OK message %u deleted", i + 1);
}

static void
pop3_cmd_noop(struct pop3_session *s, char *args)
{
	if (pop3_no_args(s, args))
		pop3_reply(s, "+OK");
}

static void
pop3_cmd_rset(struct pop3_session *s, char *args)
{
	unsigned n;
	uint64_t size;

	if (!pop3_no_args(s, args))
		return;
	memset(s->deleted, 0, pop3_mailbox_count(s->mb) * sizeof(bool));
	pop3_totals(s, &n, &size);
	pop3_reply(s, "+OK maildrop has %u messages (%llu octets)", n,
	    (unsigned long long)size);
}

/* The messages marked deleted, and their sizes. */
static void
pop3_deleted(const struct pop3_session *s, unsigned *n_r, uint64_t *size_r)
{
	*n_r = 0;
	*size_r = 0;
	for (unsigned i = 0; i < pop3_mailbox_count(s->mb); i++) {
		if (!s->deleted[i])
			continue;
		(*n_r)++;
		*size_r += pop3_mailbox_vsize(s->mb, i);
	}
}

static void
pop3_update(struct pop3_session *s)
{
	const char *error;
	unsigned n;

	pop3_enter_state(s, POP3_STATE_UPDATE);
	/* EXPIRE 0: what was retrieved goes as if the client had deleted
	 * it (RFC 2449 section 6.7); a dropped session keeps it all. */
	for (unsigned i = 0; s->set.expire_now &&
	    i < pop3_mailbox_count(s->mb); i++)
		if (s->retrieved[i])
			s->deleted[i] = true;
	pop3_deleted(s, &s->stats.dele, &s->stats.dele_bytes);
	s->stats.quit = true;
	n = s->stats.dele;
	if (n > 0 && pop3_mailbox_expunge(s->mb, s->deleted, &error) < 0) {
		log_error("pop3: user=<%s>, deleting %u messages failed (%s)",
		    s->login_user, n, error);
		pop3_reply(s, "-ERR [SYS/TEMP] Some deleted messages were "
		    "not removed");
	} else
		pop3_reply(s, "+OK Logging out, %u messages deleted", n);
	pop3_mailbox_free(&s->mb);
}

static void
pop3_cmd_quit(struct pop3_session *s, char *args)
{
	if (args != NULL) {
		pop3_bad(s, "-ERR Syntax error");
		return;
	}
	if (s->state == POP3_STATE_TRANSACTION)
		pop3_update(s);
	else
		pop3_reply(s, "+OK Logging out");
	pop3_enter_state(s, POP3_STATE_CLOSED);
}

static const struct pop3_cmd pop3_cmds[] = {
	{ "CAPA", AUTH_ST | TRANS_ST, false, pop3_cmd_capa },
	{ "USER", AUTH_ST, false, pop3_cmd_user },
	{ "PASS", AUTH_ST, false, pop3_cmd_pass },
	{ "AUTH", AUTH_ST, false, pop3_cmd_auth },
	{ "STLS", AUTH_ST, false, pop3_cmd_stls },
	{ "STAT", TRANS_ST, true, pop3_cmd_stat },
	{ "LIST", TRANS_ST, true, pop3_cmd_list },
	{ "RETR", TRANS_ST, true, pop3_cmd_retr },
	{ "DELE", TRANS_ST, true, pop3_cmd_dele },
	{ "NOOP", TRANS_ST, true, pop3_cmd_noop },
	{ "RSET", TRANS_ST, true, pop3_cmd_rset },
	{ "TOP", TRANS_ST, true, pop3_cmd_top },
	{ "UIDL", TRANS_ST, true, pop3_cmd_uidl },
	{ "QUIT", AUTH_ST | TRANS_ST, false, pop3_cmd_quit },
};

/* Streaming. */

/* Chunk bytes into s->out, which has room for them by construction
 * (see pop3_stream_msg): running out of it is a bug. */
static void
pop3_out(struct pop3_session *s, const void *data, size_t len)
{
	if (buf_append(&s->out, data, len) < 0)
		log_panic("pop3: chunk of %zu bytes overflows",
		    s->out.len + len);
}

/* The LF of a line (after any CR) becomes CRLF; TOP counts its lines. */
static void
pop3_xform_eol(struct pop3_session *s)
{
	struct pop3_xform *xf = &s->xf;
	bool empty = xf->line_len == 0 || (xf->line_len == 1 && xf->prev_cr);

	if (xf->prev_cr)
		pop3_out(s, "\n", 1);
	else
		pop3_out(s, "\r\n", 2);
	if (xf->top) {
		if (xf->in_body && ++xf->body_lines >= xf->body_max)
			xf->done = true;
		else if (!xf->in_body && empty) {
			xf->in_body = true;
			xf->done = xf->body_max == 0;
		}
	}
	xf->bol = true;
	xf->line_len = 0;
	xf->prev_cr = false;
}

/*
 * Message bytes into s->out as CRLF lines, dot-stuffed, resumable at any
 * byte: the bytes between two LFs are copied in one go, not one at a
 * time. At most 2 * len bytes come out: an LF grows to CRLF or a leading
 * dot doubles, one byte each.
 */
static void
pop3_xform(struct pop3_session *s, const unsigned char *p, size_t len)
{
	struct pop3_xform *xf = &s->xf;
	const unsigned char *end = p + len, *lf;
	size_t n;

	while (p < end && !xf->done) {
		if (xf->bol && *p == '.')
			pop3_out(s, ".", 1);
		lf = memchr(p, '\n', (size_t)(end - p));
		n = (size_t)((lf != NULL ? lf : end) - p);
		if (n > 0) {
			pop3_out(s, p, n);
			xf->line_len += n;
			xf->prev_cr = p[n - 1] == '\r';
			xf->bol = false;
			p += n;
		}
		if (lf != NULL) {
			pop3_xform_eol(s);
			p++;
		}
	}
}

/* Count message bytes about to be written (listings are not counted). */
static void
pop3_stream_count(struct pop3_session *s)
{
	if (s->stream != POP3_STREAM_MSG)
		return;
	if (s->xf.top)
		s->stats.top_bytes += s->out.len;
	else
		s->stats.retr_bytes += s->out.len;
}

/* The stream is over: raw and out stay for the next one. */
static void
pop3_stream_stop(struct pop3_session *s)
{
	pop3_mailbox_msg_close(&s->msg);
	buf_truncate(&s->out, 0);
	s->stream = POP3_STREAM_NONE;
}

static void
pop3_stream_end(struct pop3_session *s)
{
	if (s->stream == POP3_STREAM_MSG && !s->xf.bol)
		pop3_out(s, "\r\n", 2);
	pop3_stream_count(s);
	pop3_out(s, ".\r\n", 3);
	pop3_write(s, s->out.data, s->out.len);
	pop3_stream_stop(s);
}

/*
 * Read and convert until s->out holds POP3_CHUNK bytes or the message
 * ends, so that a small message goes out whole with its "." in one
 * write instead of one write and one wait for the client per read.
 * Each read asks for half the room left below 2 * POP3_CHUNK (the
 * conversion at most doubles), so a chunk stays within 2 * POP3_CHUNK
 * plus the ending. 1 more to come, 0 done, -1 error.
 */
static int
pop3_stream_msg(struct pop3_session *s)
{
	const char *error;
	size_t len;
	int ret;

	while (s->out.len < POP3_CHUNK && !s->xf.done) {
		ret = pop3_mailbox_msg_read(s->msg, s->raw,
		    (2 * POP3_CHUNK - s->out.len) / 2, &len, &error);
		if (ret < 0) {
			log_error("pop3: user=<%s>, reading a message failed "
			    "(%s)", s->login_user, error);
			return -1;
		}
		if (ret == 0)
			return 0;
		pop3_xform(s, s->raw, len);
	}
	return s->xf.done ? 0 : 1;
}

static int
pop3_stream_list(struct pop3_session *s)
{
	char uidl[POP3_UIDL_LEN + 1];
	unsigned count = pop3_mailbox_count(s->mb);

	for (; s->cursor < count && s->out.len < POP3_CHUNK; s->cursor++) {
		unsigned i = s->cursor;

		if (s->deleted[i])
			continue;
		if (s->stream == POP3_STREAM_LIST)
			buf_printf(&s->out, "%u %llu\r\n", i + 1,
			    (unsigned long long)pop3_mailbox_vsize(s->mb, i));
		else {
			pop3_mailbox_uidl(s->mb, i, uidl);
			buf_printf(&s->out, "%u %s\r\n", i + 1, uidl);
		}
	}
	return s->cursor < count ? 1 : 0;
}

/* The next chunk of the stream, and its end if it is there. */
static void
pop3_stream_step(struct pop3_session *s)
{
	int ret;

	buf_truncate(&s->out, 0);
	ret = s->stream == POP3_STREAM_MSG ? pop3_stream_msg(s) :
	    pop3_stream_list(s);
	if (ret < 0) {
		/* After +OK no -ERR can be sent: drop the line. */
		pop3_stream_stop(s);
		pop3_enter_state(s, POP3_STATE_CLOSED);
		return;
	}
	if (ret == 0)
		pop3_stream_end(s);
	else {
		pop3_stream_count(s);
		pop3_write(s, s->out.data, s->out.len);
	}
}

/* Queued commands wait for the output written so far to drain (only in
 * TRANSACTION: the login process never calls output_ready). */
static bool
pop3_held(const struct pop3_session *s)
{
	return s->state == POP3_STATE_TRANSACTION &&
	    s->unflushed >= POP3_CHUNK;
}

void
pop3_session_output_ready(struct pop3_session *s)
{
	s->unflushed = 0;
	if (s->stream != POP3_STREAM_NONE)
		pop3_stream_step(s);
	if (s->stream == POP3_STREAM_NONE)
		pop3_run(s);
}

bool
pop3_session_want_output(const struct pop3_session *s)
{
	return s->stream != POP3_STREAM_NONE ||
	    (pop3_held(s) && s->queue_pos < s->queue.len);
}

/* Input. */

static void
pop3_dispatch(struct pop3_session *s, char *line, size_t len)
{
	char *args = NULL, *sp;
	size_t i;

	if (memchr(line, '\0', len) != NULL) {
		pop3_bad(s, "-ERR NUL byte in command");
		return;
	}
	if (s->sasl_mech != NULL) {
		pop3_sasl_response(s, line, len);
		return;
	}
	if ((sp = strchr(line, ' ')) != NULL) {
		*sp = '\0';
		args = sp + 1;
	}
	for (i = 0; i < sizeof(pop3_cmds) / sizeof(pop3_cmds[0]); i++)
		if (strcasecmp(line, pop3_cmds[i].name) == 0)
			break;
	if (i == sizeof(pop3_cmds) / sizeof(pop3_cmds[0])) {
		pop3_bad(s, "-ERR Unknown command");
		return;
	}
	if ((pop3_cmds[i].states & (1u << s->state)) == 0) {
		pop3_bad(s, "-ERR Command not allowed in this state");
		return;
	}
	if (s->state == POP3_STATE_TRANSACTION && pop3_cmds[i].scan &&
	    pop3_scan(s) < 0)
		return;
	pop3_cmds[i].fn(s, args);
}

static void
pop3_run(struct pop3_session *s)
{
	if (s->running)
		return;
	s->running = true;
	while (s->state != POP3_STATE_CLOSED &&
	    s->stream == POP3_STREAM_NONE && !s->waiting_login &&
	    !s->auth_pending && !pop3_held(s) &&
	    s->queue_pos < s->queue.len) {
		unsigned char *rec = s->queue.data + s->queue_pos;
		size_t len = (size_t)rec[1] << 8 | rec[2];

		s->queue_pos += POP3_REC_HDR + len + 1;
		if (rec[0] == POP3_REC_TOOLONG)
			pop3_bad(s, "-ERR Line too long");
		else
			pop3_dispatch(s, (char *)rec + POP3_REC_HDR, len);
		/* Passwords and SASL data leave no copy behind; STLS may
		 * have emptied the queue under us. */
		if (s->queue_pos <= s->queue.len)
			explicit_bzero(rec, POP3_REC_HDR + len + 1);
	}
	if (s->queue_pos >= s->queue.len) {
		buf_truncate(&s->queue, 0);
		s->queue_pos = 0;
	}
	s->running = false;
}

/* Queue the current line; -1 if the queue has no room. */
static int
pop3_enqueue(struct pop3_session *s)
{
	unsigned char hdr[POP3_REC_HDR];
	size_t len = s->skipping ? 0 : s->line.len;

	if (!s->skipping && len > 0 && s->line.data[len - 1] == '\r')
		len--;
	hdr[0] = s->skipping ? POP3_REC_TOOLONG : POP3_REC_LINE;
	hdr[1] = (unsigned char)(len >> 8);
	hdr[2] = (unsigned char)len;
	if (s->queue.len + sizeof(hdr) + len + 1 > s->queue.max)
		return -1;
	buf_append(&s->queue, hdr, sizeof(hdr));
	buf_append(&s->queue, s->line.data, len);
	buf_append_byte(&s->queue, '\0');	/* lines are text for cmds */
	explicit_bzero(s->line.data, s->line.len);
	buf_truncate(&s->line, 0);
	s->skipping = false;
	return 0;
}

size_t
pop3_session_input(struct pop3_session *s, const unsigned char *data,
    size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = data[i];

		if (s->state == POP3_STATE_CLOSED)
			return i;
		if (c != '\n') {
			/* With its LF a line may take line_max. */
			if (s->skipping)
				continue;
			if (s->line.len + 1 >= s->set.line_max) {
				explicit_bzero(s->line.data, s->line.len);
				buf_truncate(&s->line, 0);
				s->skipping = true;
				continue;
			}
			buf_append_byte(&s->line, c);
			continue;
		}
		if (pop3_enqueue(s) < 0)
			return i;
		pop3_run(s);
		if (s->tls_reset) {
			s->tls_reset = false;
			return len;
		}
	}
	return len;
}

/* Lifecycle. */

struct pop3_session *
pop3_session_new(const struct pop3_settings *set,
    const struct pop3_callbacks *cb, void *ctx)
{
	struct pop3_session *s = xcalloc(1, sizeof(*s));
	size_t line_max = set->line_max == 0 ? POP3_LINE_MAX : set->line_max;

	if (line_max < POP3_LINE_MAX || line_max > POP3_LINE_MAX_LIMIT)
		log_panic("pop3_session_new: line_max %zu", line_max);
	s->set = *set;
	s->set.line_max = line_max;
	s->set.mechanisms = xstrdup(set->mechanisms != NULL ?
	    set->mechanisms : "");
	s->cb = cb;
	s->ctx = ctx;
	s->state = POP3_STATE_AUTHORIZATION;
	buf_init(&s->line, line_max);
	/* A chunk and its ending (pop3_stream_msg). */
	buf_init(&s->out, 2 * POP3_CHUNK + 64);
	/* Room for one longest line at least, or input could stall on a
	 * line that never fits an empty queue; its length fits the 2-byte
	 * record header since line_max <= 65536. */
	buf_init(&s->queue, POP3_QUEUE_MAX > line_max + POP3_REC_HDR + 1 ?
	    POP3_QUEUE_MAX : line_max + POP3_REC_HDR + 1);
	return s;
}

struct pop3_session *
pop3_session_new_authenticated(const struct pop3_settings *set,
    const struct pop3_callbacks *cb, void *ctx, const char *user)
{
	struct pop3_session *s = pop3_session_new(set, cb, ctx);

	if (strlcpy(s->login_user, user, sizeof(s->login_user)) >=
	    sizeof(s->login_user))
		log_panic("pop3_session_new_authenticated: user name too long");
	s->waiting_login = true;
	return s;
}

void
pop3_session_greet(struct pop3_session *s)
{
	pop3_reply(s, "+OK loft POP3 ready");
}

void
pop3_session_free(struct pop3_session **sp)
{
	struct pop3_session *s = *sp;

	if (s == NULL)
		return;
	pop3_mailbox_msg_close(&s->msg);
	pop3_mailbox_free(&s->mb);
	if (s->sasl_mech != NULL)
		pop3_sasl_end(s, true);
	free(s->deleted);
	free(s->retrieved);
	free(s->raw);
	buf_free(&s->out);
	explicit_bzero(s->user, sizeof(s->user));
	if (s->line.data != NULL)
		explicit_bzero(s->line.data, s->line.len);
	if (s->queue.data != NULL)
		explicit_bzero(s->queue.data, s->queue.len);
	buf_free(&s->line);
	buf_free(&s->queue);
	free((char *)s->set.mechanisms);
	free(s);
	*sp = NULL;
}

void
pop3_session_login(struct pop3_session *s, const struct user *u)
{
	const char *error;
	int ret;

	if (!s->waiting_login)
		log_panic("pop3_session_login without authentication");
	s->waiting_login = false;
	ret = pop3_mailbox_open(u, s->set.login_delay, &s->mb, &error);
	if (ret == 0) {
		pop3_enter_state(s, POP3_STATE_TRANSACTION);
		pop3_reply(s, "+OK Logged in");
	} else if (ret == 1)
		pop3_reply(s, "-ERR [IN-USE] Mailbox is in use by another "
		    "POP3 session");
	else if (ret == 2)
		pop3_reply(s, "-ERR [LOGIN-DELAY] Logged in less than %u "
		    "seconds ago", s->set.login_delay);
	else {
		log_error("pop3: user=<%s>, cannot open mailbox (%s)",
		    s->login_user, error);
		pop3_reply(s, "-ERR [SYS/TEMP] Cannot open mailbox");
	}
	pop3_run(s);
}

void
pop3_session_login_failed(struct pop3_session *s)
{
	if (!s->waiting_login)
		log_panic("pop3_session_login_failed without authentication");
	s->waiting_login = false;
	pop3_reply(s, "-ERR [SYS/TEMP] Temporary authentication failure");
	pop3_run(s);
}

void
pop3_session_auth_reply(struct pop3_session *s, enum pop3_auth_result r,
    const unsigned char *challenge, size_t challenge_len, const char *user)
{
	if (!s->auth_pending)
		log_panic("pop3_session_auth_reply without a pending check");
	if (r == POP3_AUTH_PENDING)
		log_panic("pop3_session_auth_reply: result PENDING");
	s->auth_pending = false;
	if (s->sasl_mech != NULL)
		pop3_sasl_result(s, r, challenge, challenge_len, user);
	else
		pop3_auth_result(s, r, user != NULL && *user != '\0' ? user :
		    s->user);
	pop3_run(s);
}

/* Hand-over. */

static void
pop3_export_append(struct buf *out, const void *data, size_t len)
{
	if (buf_append(out, data, len) < 0)
		log_panic("pop3_session_export_pending: out is full");
}

/* n 'X' bytes: an over-long line's stand-in. */
static void
pop3_export_filler(struct buf *out, size_t n)
{
	unsigned char x[64];

	memset(x, 'X', sizeof(x));
	while (n > 0) {
		size_t k = n < sizeof(x) ? n : sizeof(x);

		pop3_export_append(out, x, k);
		n -= k;
	}
}

/* The queued records; false if the next engine closes within them. */
static bool
pop3_export_queue(struct pop3_session *s, struct buf *out)
{
	size_t line_max = s->set.line_max, pos = s->queue_pos;
	unsigned toolong = 0;

	while (pos < s->queue.len) {
		const unsigned char *rec = s->queue.data + pos;
		size_t len = (size_t)rec[1] << 8 | rec[2];

		pos += POP3_REC_HDR + len + 1;
		if (rec[0] == POP3_REC_TOOLONG) {
			pop3_export_filler(out, line_max + 1);
			pop3_export_append(out, "\r\n", 2);
			/* Each one is a bad command over there. */
			if (++toolong == POP3_BAD_MAX)
				return false;
			continue;
		}
		pop3_export_append(out, rec + POP3_REC_HDR, len);
		/* It came with a bare LF if CRLF does not fit. */
		if (len + 2 <= line_max)
			pop3_export_append(out, "\r\n", 2);
		else
			pop3_export_append(out, "\n", 1);
	}
	return true;
}

void
pop3_session_export_pending(struct pop3_session *s, struct buf *out)
{
	if (!s->waiting_login)
		log_panic("pop3_session_export_pending while not waiting "
		    "for login");
	if (pop3_export_queue(s, out)) {
		if (s->skipping)
			pop3_export_filler(out, s->set.line_max + 1);
		else
			pop3_export_append(out, s->line.data, s->line.len);
	}
	if (s->queue.len > 0)
		explicit_bzero(s->queue.data, s->queue.len);
	buf_truncate(&s->queue, 0);
	s->queue_pos = 0;
	if (s->line.len > 0)
		explicit_bzero(s->line.data, s->line.len);
	buf_truncate(&s->line, 0);
	s->skipping = false;
}

void
pop3_session_stats(const struct pop3_session *s, struct pop3_stats *st_r)
{
	*st_r = s->stats;
	st_r->bad = s->bad;
	if (s->mb != NULL && s->deleted != NULL)
		pop3_deleted(s, &st_r->dele, &st_r->dele_bytes);
}

void
pop3_session_tls_started(struct pop3_session *s)
{
	s->set.secured = true;
	s->have_user = false;
}

void
pop3_session_idle(struct pop3_session *s)
{
	if (s->stream != POP3_STREAM_NONE)
		return;
	if (s->state == POP3_STATE_TRANSACTION && s->mb != NULL)
		pop3_mailbox_release(s->mb);
	free(s->raw);
	s->raw = NULL;
	buf_free(&s->out);
}

enum pop3_state
pop3_session_state(const struct pop3_session *s)
{
	return s->state;
}
