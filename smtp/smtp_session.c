/*
 * smtp_session.c: the ESMTP/LMTP server state machine (RFC 5321, 2033,
 * 1870, 2034, 2920, 3030, 3207, 3461, 4954, 6152, 6531): input split into
 * CRLF lines with per-command length limits, a byte state machine for DATA
 * (CRLF "." CRLF, dot-unstuffing, bare CR and LF), BDAT chunks counted
 * exactly, the command table with check-then-act handlers, decisions and
 * SASL steps delegated to callbacks that answer at once or later, and the
 * raw input kept (bounded) meanwhile.
 *
 * Trusts nothing from the client: every line is length-checked before it
 * is stored, every argument parsed strictly, every count checked for
 * overflow; SASL data is wiped after use and never logged. Trusts its
 * settings and callbacks (misuse of the API is a bug: log_panic).
 */
#include "config.h"

#include <ctype.h>
#include <inttypes.h>
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
#include "xmalloc.h"
#include "smtp_addr.h"
#include "smtp_session.h"

/* A reply line: code, enhanced code, text, CRLF, with room to spare. */
#define SMTP_REPLY_MAX		(SMTP_TEXT_MAX + 32)
/* Longest mechanisms setting (it goes into one EHLO line). */
#define SMTP_MECHS_MAX		400

enum smtp_wait {
	SMTP_WAIT_NONE,
	SMTP_WAIT_MAIL,		/* cb->mail's smtp_session_reply */
	SMTP_WAIT_RCPT,		/* cb->rcpt's smtp_session_reply */
	SMTP_WAIT_AUTH,		/* a SASL step said PENDING */
	SMTP_WAIT_DONE		/* smtp_session_data_done */
};

/* Where DATA content is: after CRLF (or at the start), after a leading
 * dot, after a leading dot and CR, inside a line, after a CR. */
enum smtp_dstate {
	SMTP_D_BOL,
	SMTP_D_DOT,
	SMTP_D_DOTCR,
	SMTP_D_MID,
	SMTP_D_CR
};

/* Why a message is refused when it ends (smtp_session.bad). */
#define SMTP_BAD_EOL	(1u << 0)	/* bare CR or LF */
#define SMTP_BAD_SIZE	(1u << 1)
#define SMTP_BAD_LINE	(1u << 2)

struct smtp_session {
	enum smtp_state state;
	struct smtp_settings set;	/* hostname, mechanisms: owned */
	const struct smtp_callbacks *cb;
	void *ctx;

	struct buf line;		/* the partial command line */
	bool skipping;			/* in an over-long line */
	struct buf in;			/* input kept while waiting */
	size_t in_pos;
	bool running;			/* inside smtp_process */
	bool tls_reset;			/* STARTTLS: drop all input */
	enum smtp_wait wait;
	struct buf out;			/* replies not yet written */
	unsigned errors;

	bool ehlo;			/* EHLO/LHLO: extensions in force */
	bool esc;			/* enhanced status codes in replies */
	char helo[SMTP_HELO_MAX + 1];
	bool authed;
	char auth_user[SMTP_USER_MAX + 1];
	char *sasl_mech;		/* owned; non-NULL in an exchange */

	/* The transaction. */
	bool utf8, pend_utf8;		/* SMTPUTF8 (pending MAIL's) */
	unsigned rcpts;			/* accepted */
	unsigned rcpt_tries;		/* RCPTs the daemon decided */
	unsigned done;			/* LMTP: data_done replies */

	/* Message content. */
	enum smtp_dstate dstate;
	unsigned bad;			/* SMTP_BAD_* */
	size_t text_line;		/* bytes of the current line */
	uint64_t msg_size;		/* bytes passed on */
	struct buf chunk;		/* bytes for the next cb->data */
	bool in_chunk;			/* reading a BDAT chunk */
	uint64_t bdat_left, bdat_size;
	bool bdat_last, bdat_cr;
	/* A refused BDAT's reply, written when its bytes are read. */
	bool bdat_refused;
	unsigned bdat_code;
	char bdat_enh[8];
	char bdat_text[64];
};

struct smtp_cmd {
	const char *name;
	size_t line_max;		/* with CRLF */
	void (*fn)(struct smtp_session *s, char *args);
};

/* Output. */

static void
smtp_flush(struct smtp_session *s)
{
	if (s->out.len == 0)
		return;
	s->cb->write(s->ctx, s->out.data, s->out.len);
	buf_truncate(&s->out, 0);
}

static void
smtp_out(struct smtp_session *s, const void *data, size_t len)
{
	if (buf_append(&s->out, data, len) < 0)
		log_panic("smtp: reply of %zu bytes overflows", len);
	if (s->out.len >= SMTP_OUT_FLUSH)
		smtp_flush(s);
}

/* One reply line; sep is ' ' (last) or '-'. The enhanced code is shown
 * once EHLO turned them on. */
static void
smtp_line(struct smtp_session *s, unsigned code, char sep, const char *enh,
    const char *text)
{
	char line[SMTP_REPLY_MAX];
	int n;

	if (s->esc && enh != NULL)
		n = snprintf(line, sizeof(line) - 2, "%03u%c%s %s", code, sep,
		    enh, text);
	else
		n = snprintf(line, sizeof(line) - 2, "%03u%c%s", code, sep,
		    text);
	if (n < 0)
		log_panic("smtp_line: bad format");
	if ((size_t)n > sizeof(line) - 3)
		n = (int)(sizeof(line) - 3);
	line[n++] = '\r';
	line[n++] = '\n';
	smtp_out(s, line, (size_t)n);
}

static void smtp_vreply(struct smtp_session *s, unsigned code,
    const char *enh, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
static void smtp_reply(struct smtp_session *s, unsigned code,
    const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
smtp_vreply(struct smtp_session *s, unsigned code, const char *enh,
    const char *fmt, va_list ap)
{
	char text[SMTP_TEXT_MAX + 1];

	if (vsnprintf(text, sizeof(text), fmt, ap) < 0)
		log_panic("smtp_reply: bad format");
	smtp_line(s, code, ' ', enh, text);
}

static void
smtp_reply(struct smtp_session *s, unsigned code, const char *enh,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	smtp_vreply(s, code, enh, fmt, ap);
	va_end(ap);
}

/* The one function that changes state. */
static void
smtp_enter_state(struct smtp_session *s, enum smtp_state st)
{
	s->state = st;
	if (st == SMTP_STATE_CLOSED) {
		s->wait = SMTP_WAIT_NONE;
		smtp_flush(s);
		if (s->cb->closed != NULL)
			s->cb->closed(s->ctx);
	}
}

/* A reply to a client error; at errors_max the session ends. */
static void smtp_error(struct smtp_session *s, unsigned code,
    const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void smtp_txn_abort(struct smtp_session *s);

static void
smtp_count_error(struct smtp_session *s)
{
	if (++s->errors < s->set.errors_max)
		return;
	smtp_reply(s, 421, "4.7.0", "%s Error: too many errors, closing "
	    "connection", s->set.hostname);
	smtp_txn_abort(s);
	smtp_enter_state(s, SMTP_STATE_CLOSED);
}

static void
smtp_error(struct smtp_session *s, unsigned code, const char *enh,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	smtp_vreply(s, code, enh, fmt, ap);
	va_end(ap);
	smtp_count_error(s);
}

/* Transactions. */

static bool
smtp_in_txn(const struct smtp_session *s)
{
	return s->state == SMTP_STATE_MAIL || s->state == SMTP_STATE_DATA ||
	    s->state == SMTP_STATE_CHUNKING || s->state == SMTP_STATE_END;
}

/* Forget the transaction's counters and content state. */
static void
smtp_txn_clear(struct smtp_session *s)
{
	s->utf8 = false;
	s->rcpts = 0;
	s->rcpt_tries = 0;
	s->done = 0;
	s->bad = 0;
	s->msg_size = 0;
	s->text_line = 0;
	s->dstate = SMTP_D_BOL;
	s->bdat_cr = false;
	s->bdat_size = 0;
	buf_truncate(&s->chunk, 0);
}

/* End an open transaction without a message: the daemon drops it. */
static void
smtp_txn_abort(struct smtp_session *s)
{
	if (!smtp_in_txn(s))
		return;
	smtp_txn_clear(s);
	smtp_enter_state(s, SMTP_STATE_READY);
	if (s->cb->reset != NULL)
		s->cb->reset(s->ctx);
}

static bool
smtp_ext(const struct smtp_session *s, unsigned ext)
{
	return s->ehlo && (s->set.extensions & ext) != 0;
}

static bool
smtp_auth_allowed(const struct smtp_session *s)
{
	return s->set.secured ||
	    (s->set.allow_plaintext_auth && !s->set.require_tls);
}

static bool
smtp_auth_offered(const struct smtp_session *s)
{
	return smtp_ext(s, SMTP_EXT_AUTH) && s->cb->sasl != NULL &&
	    s->set.mechanisms[0] != '\0';
}

static bool
smtp_tls_offered(const struct smtp_session *s)
{
	return (s->set.extensions & SMTP_EXT_STARTTLS) != 0 &&
	    s->set.tls_available && !s->set.secured &&
	    s->cb->start_tls != NULL;
}

/* AUTH. */

static bool
smtp_mech_configured(const struct smtp_session *s, const char *want)
{
	const char *p = s->set.mechanisms;
	size_t wlen = strlen(want);

	while (*p != '\0') {
		size_t len;

		while (*p == ' ')
			p++;
		len = strcspn(p, " ");
		if (len > 0 && len == wlen && memcmp(p, want, len) == 0)
			return true;
		p += len;
	}
	return false;
}

static void
smtp_sasl_end(struct smtp_session *s, bool abort)
{
	if (s->sasl_mech == NULL)
		return;
	if (abort && s->cb->sasl_abort != NULL)
		s->cb->sasl_abort(s->ctx);
	free(s->sasl_mech);
	s->sasl_mech = NULL;
}

/* What a SASL step answered (never PENDING). */
static void
smtp_sasl_result(struct smtp_session *s, enum smtp_auth_result r,
    const unsigned char *chal, size_t chal_len, const char *user)
{
	struct buf b;

	if (r == SMTP_AUTH_CONTINUE) {
		if (chal_len > SMTP_SASL_MAX)
			log_panic("smtp: SASL challenge of %zu bytes",
			    chal_len);
		buf_init(&b, SMTP_SASL_MAX * 2);
		buf_append_str(&b, "334 ");
		base64_encode(chal, chal_len, &b);
		buf_append_str(&b, "\r\n");
		smtp_out(s, b.data, b.len);
		buf_free(&b);
		return;
	}
	smtp_sasl_end(s, false);
	if (r == SMTP_AUTH_OK) {
		if (user == NULL)
			user = "";
		if (strlcpy(s->auth_user, user, sizeof(s->auth_user)) <
		    sizeof(s->auth_user)) {
			s->authed = true;
			smtp_reply(s, 235, "2.7.0",
			    "Authentication successful");
			return;
		}
		s->auth_user[0] = '\0';
		r = SMTP_AUTH_FAIL;
	}
	if (r == SMTP_AUTH_TEMPFAIL)
		smtp_reply(s, 454, "4.7.0", "Temporary authentication failure");
	else
		smtp_error(s, 535, "5.7.8", "Authentication credentials "
		    "invalid");
}

/* One step with a decoded response; resp is wiped by the caller. */
static void
smtp_sasl_step(struct smtp_session *s, bool first, const unsigned char *resp,
    size_t len, bool has_resp)
{
	const unsigned char *chal = NULL;
	size_t chal_len = 0;
	const char *user = NULL;
	enum smtp_auth_result r;

	r = s->cb->sasl(s->ctx, s->sasl_mech, first, resp, len, has_resp,
	    &chal, &chal_len, &user);
	if (r == SMTP_AUTH_PENDING)
		s->wait = SMTP_WAIT_AUTH;
	else
		smtp_sasl_result(s, r, chal, chal_len, user);
}

/* Decode text and run a step; -1 (nothing called) if not base64. */
static int
smtp_sasl_decode_step(struct smtp_session *s, bool first, const char *text,
    size_t len, bool has_resp)
{
	size_t size = len / 4 * 3 + 1, n = 0;
	unsigned char *dec = xmalloc(size);
	int ret = base64_decode(text, len, dec, &n);

	if (ret == 0)
		smtp_sasl_step(s, first, dec, n, has_resp);
	explicit_bzero(dec, size);
	free(dec);
	return ret;
}

static void
smtp_sasl_response(struct smtp_session *s, char *line, size_t len)
{
	if (len == 1 && line[0] == '*') {
		smtp_sasl_end(s, true);
		smtp_error(s, 501, "5.0.0", "Authentication cancelled");
		return;
	}
	if (smtp_sasl_decode_step(s, false, line, len, true) < 0) {
		smtp_sasl_end(s, true);
		smtp_error(s, 501, "5.5.2", "Invalid base64 data");
	}
}

/* Argument helpers. */

static bool
smtp_no_args(struct smtp_session *s, const char *args, const char *syntax)
{
	if (args == NULL)
		return true;
	smtp_error(s, 501, "5.5.4", "Syntax: %s", syntax);
	return false;
}

/* A decimal number, refused well before it could overflow 64 bits. */
static int
smtp_number(const char *p, uint64_t *v_r)
{
	uint64_t v = 0;

	if (*p == '\0')
		return -1;
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*v_r = v;
	return 0;
}

/* RFC 3461 section 4: xtext, 1..max bytes. */
static bool
smtp_xtext_valid(const char *p, size_t max)
{
	size_t len = strlen(p);

	if (len == 0 || len > max)
		return false;
	for (; *p != '\0'; p++) {
		if (*p == '+') {
			if (!isxdigit((unsigned char)p[1]) ||
			    !isxdigit((unsigned char)p[2]))
				return false;
			p += 2;
		} else if (*p < 0x21 || *p > 0x7e || *p == '=')
			return false;
	}
	return true;
}

/* The end of a path: past the '>' that closes it (quotes and escapes
 * inside respected), or the first space if there is no '<'. */
static size_t
smtp_path_span(const char *p)
{
	bool quoted = false;
	size_t i;

	if (p[0] != '<')
		return strcspn(p, " ");
	for (i = 1; p[i] != '\0'; i++) {
		if (quoted && p[i] == '\\' && p[i + 1] != '\0')
			i++;
		else if (p[i] == '"')
			quoted = !quoted;
		else if (p[i] == '>' && !quoted)
			return i + 1;
	}
	return i;
}

/* After "FROM:" or "TO:" (any case, spaces after the colon tolerated):
 * the path and the parameter string (or NULL). -1: no such prefix or
 * junk after the path. */
static int
smtp_split_path(char *args, const char *prefix, char **path_r,
    size_t *path_len_r, char **params_r)
{
	size_t plen = strlen(prefix), span;
	char *p;

	if (args == NULL || strncasecmp(args, prefix, plen) != 0)
		return -1;
	p = args + plen;
	while (*p == ' ')
		p++;
	span = smtp_path_span(p);
	*path_r = p;
	*path_len_r = span;
	*params_r = NULL;
	if (p[span] == '\0')
		return 0;
	if (p[span] != ' ')
		return -1;
	*params_r = p + span + 1;
	return 0;
}

/* Split params at spaces into KEY[=VALUE] pairs (keys upper-cased);
 * -1 on too many or a malformed keyword. */
static int
smtp_split_params(char *params, char **key, char **val, int *n_r)
{
	int n = 0;
	char *tok;

	*n_r = 0;
	while (params != NULL && (tok = strsep(&params, " ")) != NULL) {
		char *eq;

		if (*tok == '\0')
			continue;
		if (n == SMTP_PARAMS_MAX)
			return -1;
		if ((eq = strchr(tok, '=')) != NULL)
			*eq++ = '\0';
		if (*tok == '\0' || !isalnum((unsigned char)*tok))
			return -1;
		for (char *c = tok; *c != '\0'; c++) {
			if (!isalnum((unsigned char)*c) && *c != '-')
				return -1;
			*c = (char)toupper((unsigned char)*c);
		}
		if (eq != NULL && *eq == '\0')
			return -1;
		key[n] = tok;
		val[n++] = eq;
	}
	*n_r = n;
	return 0;
}

/* -1 if key[i] appeared before i. */
static int
smtp_param_dup(char **key, int i)
{
	for (int j = 0; j < i; j++)
		if (strcmp(key[j], key[i]) == 0)
			return -1;
	return 0;
}

/* MAIL. */

/* One MAIL parameter into *m; 0, or -1 after replying. */
static int
smtp_mail_param(struct smtp_session *s, const char *key, char *val,
    struct smtp_mail *m)
{
	if (strcmp(key, "SIZE") == 0 && smtp_ext(s, SMTP_EXT_SIZE)) {
		if (val == NULL || smtp_number(val, &m->size) < 0)
			goto syntax;
		m->has_size = true;
		if (s->set.size_max > 0 && m->size > s->set.size_max) {
			smtp_error(s, 552, "5.3.4", "Message size exceeds "
			    "fixed limit");
			return -1;
		}
	} else if (strcmp(key, "BODY") == 0 &&
	    smtp_ext(s, SMTP_EXT_8BITMIME)) {
		if (val != NULL && strcasecmp(val, "7BIT") == 0)
			m->body = SMTP_BODY_7BIT;
		else if (val != NULL && strcasecmp(val, "8BITMIME") == 0)
			m->body = SMTP_BODY_8BITMIME;
		else
			goto unsupported;
	} else if (strcmp(key, "SMTPUTF8") == 0 &&
	    smtp_ext(s, SMTP_EXT_SMTPUTF8)) {
		if (val != NULL)
			goto syntax;
		m->smtputf8 = true;
	} else if (strcmp(key, "RET") == 0 && smtp_ext(s, SMTP_EXT_DSN)) {
		if (val != NULL && strcasecmp(val, "FULL") == 0)
			m->ret = SMTP_RET_FULL;
		else if (val != NULL && strcasecmp(val, "HDRS") == 0)
			m->ret = SMTP_RET_HDRS;
		else
			goto syntax;
	} else if (strcmp(key, "ENVID") == 0 && smtp_ext(s, SMTP_EXT_DSN)) {
		if (val == NULL || !smtp_xtext_valid(val, SMTP_ENVID_MAX))
			goto syntax;
		m->envid = val;
	} else if (strcmp(key, "AUTH") == 0 && smtp_auth_offered(s)) {
		if (val == NULL || (strcmp(val, "<>") != 0 &&
		    !smtp_xtext_valid(val, SMTP_AUTH_PARAM_MAX)))
			goto syntax;
		m->auth = val;
	} else
		goto unsupported;
	return 0;
syntax:
	smtp_error(s, 501, "5.5.4", "Invalid %s parameter", key);
	return -1;
unsupported:
	smtp_error(s, 555, "5.5.4", "Unsupported parameter %s", key);
	return -1;
}

/* What a command before the greeting command is told. */
static const char *
smtp_hello_first(const struct smtp_session *s)
{
	return s->set.lmtp ? "Send LHLO first" : "Send HELO/EHLO first";
}

/* Check MAIL may come now; -1 after replying. */
static int
smtp_check_mail(struct smtp_session *s)
{
	if (s->state == SMTP_STATE_INIT) {
		smtp_error(s, 503, "5.5.1", "%s", smtp_hello_first(s));
		return -1;
	}
	if (s->state != SMTP_STATE_READY) {
		smtp_error(s, 503, "5.5.1", "Nested MAIL command");
		return -1;
	}
	if (s->set.require_tls && !s->set.secured) {
		smtp_error(s, 530, "5.7.0", "Must issue a STARTTLS command "
		    "first");
		return -1;
	}
	if (s->set.require_auth && !s->authed) {
		smtp_error(s, 530, "5.7.0", "Authentication required");
		return -1;
	}
	return 0;
}

static void
smtp_cmd_mail(struct smtp_session *s, char *args)
{
	struct smtp_mail m;
	struct smtp_path from;
	char *path, *params, *key[SMTP_PARAMS_MAX], *val[SMTP_PARAMS_MAX];
	const char *error;
	size_t path_len;
	int n;

	if (smtp_check_mail(s) < 0)
		return;
	if (smtp_split_path(args, "FROM:", &path, &path_len, &params) < 0 ||
	    smtp_split_params(params, key, val, &n) < 0) {
		smtp_error(s, 501, "5.5.4", "Syntax: MAIL FROM:<address>");
		return;
	}
	memset(&m, 0, sizeof(m));
	for (int i = 0; i < n; i++) {
		if (smtp_param_dup(key, i) < 0) {
			smtp_error(s, 501, "5.5.4", "Duplicate %s parameter",
			    key[i]);
			return;
		}
		if (smtp_mail_param(s, key[i], val[i], &m) < 0)
			return;
	}
	if (smtp_path_parse(path, path_len, true, m.smtputf8, &from,
	    &error) < 0) {
		smtp_error(s, 501, "5.1.7", "Bad sender address syntax (%s)",
		    error);
		return;
	}
	m.from = &from;
	m.helo = s->helo;
	m.auth_user = s->authed ? s->auth_user : NULL;
	s->pend_utf8 = m.smtputf8;
	s->wait = SMTP_WAIT_MAIL;
	if (s->cb->mail != NULL)
		s->cb->mail(s->ctx, &m);
	else
		smtp_session_reply(s, 250, "2.1.0", "Ok");
}

/* RCPT. */

static int
smtp_notify_parse(char *val, unsigned *notify_r)
{
	char *tok;

	*notify_r = 0;
	while ((tok = strsep(&val, ",")) != NULL) {
		if (strcasecmp(tok, "NEVER") == 0)
			*notify_r |= SMTP_NOTIFY_NEVER;
		else if (strcasecmp(tok, "SUCCESS") == 0)
			*notify_r |= SMTP_NOTIFY_SUCCESS;
		else if (strcasecmp(tok, "FAILURE") == 0)
			*notify_r |= SMTP_NOTIFY_FAILURE;
		else if (strcasecmp(tok, "DELAY") == 0)
			*notify_r |= SMTP_NOTIFY_DELAY;
		else
			return -1;
	}
	/* NEVER stands alone (RFC 3461 section 4.1). */
	if ((*notify_r & SMTP_NOTIFY_NEVER) != 0 &&
	    *notify_r != SMTP_NOTIFY_NEVER)
		return -1;
	return 0;
}

/* ORCPT: addr-type ";" xtext (RFC 3461 section 4.2). */
static bool
smtp_orcpt_valid(const char *val)
{
	const char *semi = strchr(val, ';');

	if (semi == NULL || semi == val || strlen(val) > SMTP_ORCPT_MAX)
		return false;
	for (const char *p = val; p < semi; p++)
		if (!isalnum((unsigned char)*p) && *p != '-')
			return false;
	return smtp_xtext_valid(semi + 1, SMTP_ORCPT_MAX);
}

static int
smtp_rcpt_param(struct smtp_session *s, const char *key, char *val,
    struct smtp_rcpt *r)
{
	if (strcmp(key, "NOTIFY") == 0 && smtp_ext(s, SMTP_EXT_DSN)) {
		if (val == NULL || smtp_notify_parse(val, &r->notify) < 0)
			goto syntax;
	} else if (strcmp(key, "ORCPT") == 0 && smtp_ext(s, SMTP_EXT_DSN)) {
		if (val == NULL || !smtp_orcpt_valid(val))
			goto syntax;
		r->orcpt = val;
	} else {
		smtp_error(s, 555, "5.5.4", "Unsupported parameter %s", key);
		return -1;
	}
	return 0;
syntax:
	smtp_error(s, 501, "5.5.4", "Invalid %s parameter", key);
	return -1;
}

static int
smtp_check_rcpt(struct smtp_session *s)
{
	if (s->state == SMTP_STATE_INIT) {
		smtp_error(s, 503, "5.5.1", "%s", smtp_hello_first(s));
		return -1;
	}
	if (s->state != SMTP_STATE_MAIL) {
		smtp_error(s, 503, "5.5.1", "Need MAIL command");
		return -1;
	}
	return 0;
}

static void
smtp_cmd_rcpt(struct smtp_session *s, char *args)
{
	struct smtp_rcpt r;
	struct smtp_path to;
	char *path, *params, *key[SMTP_PARAMS_MAX], *val[SMTP_PARAMS_MAX];
	const char *error;
	size_t path_len;
	int n;

	if (smtp_check_rcpt(s) < 0)
		return;
	if (smtp_split_path(args, "TO:", &path, &path_len, &params) < 0 ||
	    smtp_split_params(params, key, val, &n) < 0) {
		smtp_error(s, 501, "5.5.4", "Syntax: RCPT TO:<address>");
		return;
	}
	memset(&r, 0, sizeof(r));
	for (int i = 0; i < n; i++) {
		if (smtp_param_dup(key, i) < 0) {
			smtp_error(s, 501, "5.5.4", "Duplicate %s parameter",
			    key[i]);
			return;
		}
		if (smtp_rcpt_param(s, key[i], val[i], &r) < 0)
			return;
	}
	if (smtp_path_parse(path, path_len, false, s->utf8, &to, &error) < 0) {
		smtp_error(s, 501, "5.1.3", "Bad recipient address syntax "
		    "(%s)", error);
		return;
	}
	/* Not an error of the client's: RFC 5321 4.5.3.1.10. */
	if (s->rcpts >= s->set.rcpt_max) {
		smtp_reply(s, 452, "4.5.3", "Too many recipients");
		return;
	}
	r.to = &to;
	r.index = s->rcpts;
	s->wait = SMTP_WAIT_RCPT;
	if (s->cb->rcpt != NULL)
		s->cb->rcpt(s->ctx, &r);
	else
		smtp_session_reply(s, 250, "2.1.5", "Ok");
}

/* DATA and BDAT. */

/* A message may start (DATA or a first BDAT); -1 after the reply was
 * decided: *code_r etc. (not yet written). */
static int
smtp_check_data(struct smtp_session *s, unsigned *code_r, const char **enh_r,
    const char **text_r)
{
	*enh_r = "5.5.1";
	*code_r = 503;
	if (s->state == SMTP_STATE_INIT)
		*text_r = smtp_hello_first(s);
	else if (s->state != SMTP_STATE_MAIL)
		*text_r = "Need MAIL command";
	else if (s->rcpts == 0 && s->rcpt_tries > 0 && !s->set.lmtp) {
		*code_r = 554;
		*text_r = "No valid recipients";
	} else if (s->rcpts == 0 && s->rcpt_tries > 0) {
		/* RFC 2033 section 4.2: 503 in LMTP, where 554 would be
		 * taken for a refusal of the message itself. */
		*text_r = "No valid recipients";
	} else if (s->rcpts == 0)
		*text_r = "Need RCPT command";
	else
		return 0;
	return -1;
}

static void
smtp_cmd_data(struct smtp_session *s, char *args)
{
	const char *enh, *text;
	unsigned code;

	if (!smtp_no_args(s, args, "DATA"))
		return;
	if (s->state == SMTP_STATE_CHUNKING) {
		smtp_error(s, 503, "5.5.1", "DATA not allowed after BDAT");
		return;
	}
	if (smtp_check_data(s, &code, &enh, &text) < 0) {
		smtp_error(s, code, enh, "%s", text);
		return;
	}
	/* No enhanced code on 354: it is no outcome (as Postfix). */
	smtp_line(s, 354, ' ', NULL, "End data with <CR><LF>.<CR><LF>");
	smtp_enter_state(s, SMTP_STATE_DATA);
	s->dstate = SMTP_D_BOL;
	if (s->cb->data_begin != NULL)
		s->cb->data_begin(s->ctx);
}

/* Parse "n" or "n LAST"; -1 if malformed. */
static int
smtp_bdat_args(char *args, uint64_t *n_r, bool *last_r)
{
	char *sp;

	if (args == NULL)
		return -1;
	*last_r = false;
	if ((sp = strchr(args, ' ')) != NULL) {
		*sp = '\0';
		if (strcasecmp(sp + 1, "LAST") != 0)
			return -1;
		*last_r = true;
	}
	return smtp_number(args, n_r);
}

static void
smtp_bdat_refuse(struct smtp_session *s, unsigned code, const char *enh,
    const char *text)
{
	s->bdat_refused = true;
	s->bdat_code = code;
	strlcpy(s->bdat_enh, enh, sizeof(s->bdat_enh));
	strlcpy(s->bdat_text, text, sizeof(s->bdat_text));
}

static void smtp_chunk_end(struct smtp_session *s);

static void
smtp_cmd_bdat(struct smtp_session *s, char *args)
{
	const char *enh, *text;
	unsigned code;
	uint64_t n;
	bool last;

	if (smtp_bdat_args(args, &n, &last) < 0) {
		smtp_error(s, 501, "5.5.4", "Syntax: BDAT size [LAST]");
		return;
	}
	s->in_chunk = true;
	s->bdat_left = n;
	s->bdat_last = last;
	s->bdat_refused = false;
	if (s->state != SMTP_STATE_CHUNKING &&
	    smtp_check_data(s, &code, &enh, &text) < 0)
		smtp_bdat_refuse(s, code, enh, text);
	else if (s->state == SMTP_STATE_MAIL) {
		smtp_enter_state(s, SMTP_STATE_CHUNKING);
		if (s->cb->data_begin != NULL)
			s->cb->data_begin(s->ctx);
	}
	s->bdat_size = n;
	if (n == 0)
		smtp_chunk_end(s);
}

/* Message bytes on their way to cb->data; past the size limit or once
 * the message is refused they only count. */
static void
smtp_emit(struct smtp_session *s, const unsigned char *p, size_t len)
{
	if (s->bad != 0)
		return;
	if (s->set.size_max > 0 && len > s->set.size_max - s->msg_size) {
		s->bad |= SMTP_BAD_SIZE;
		return;
	}
	s->msg_size += len;
	while (len > 0) {
		size_t room = SMTP_DATA_CHUNK - s->chunk.len;
		size_t k = len < room ? len : room;

		buf_append(&s->chunk, p, k);
		p += k;
		len -= k;
		if (s->chunk.len == SMTP_DATA_CHUNK) {
			s->cb->data(s->ctx, s->chunk.data, s->chunk.len);
			buf_truncate(&s->chunk, 0);
		}
	}
}

static void
smtp_data_flush(struct smtp_session *s)
{
	if (s->chunk.len > 0 && s->bad == 0)
		s->cb->data(s->ctx, s->chunk.data, s->chunk.len);
	buf_truncate(&s->chunk, 0);
}

/* Count n bytes of the current text line. */
static void
smtp_text_count(struct smtp_session *s, size_t n)
{
	s->text_line += n;
	if (s->text_line > s->set.text_line_max)
		s->bad |= SMTP_BAD_LINE;
}

/* The refusal of a message the engine found bad. */
static void
smtp_message_refuse(struct smtp_session *s)
{
	if ((s->bad & SMTP_BAD_EOL) != 0)
		smtp_reply(s, 550, "5.6.0", "Message contains bare CR or LF "
		    "characters, refused");
	else if ((s->bad & SMTP_BAD_SIZE) != 0)
		smtp_reply(s, 552, "5.3.4", "Message size exceeds fixed "
		    "limit");
	else
		smtp_reply(s, 550, "5.6.0", "Message has a line longer than "
		    "%zu bytes", s->set.text_line_max);
}

/* The message ended: refuse it, or hand it over and wait. */
static void
smtp_message_end(struct smtp_session *s)
{
	if (s->bad != 0) {
		/* LMTP: the client waits for one reply per recipient
		 * (RFC 2033 section 4.2), refusals included. */
		for (unsigned i = 0; i < (s->set.lmtp ? s->rcpts : 1); i++)
			smtp_message_refuse(s);
		smtp_txn_abort(s);
		return;
	}
	smtp_data_flush(s);
	smtp_enter_state(s, SMTP_STATE_END);
	s->wait = SMTP_WAIT_DONE;
	s->cb->data_end(s->ctx);
}

/* The bytes of a line of DATA up to its next CR or LF, in one go. */
static size_t
smtp_data_run(struct smtp_session *s, const unsigned char *p, size_t len)
{
	size_t n = 0;

	while (n < len && p[n] != '\r' && p[n] != '\n')
		n++;
	smtp_text_count(s, n);
	smtp_emit(s, p, n);
	s->dstate = SMTP_D_MID;
	return n;
}

/* DATA content; returns the bytes consumed, up to the final LF. */
static size_t
smtp_data_bytes(struct smtp_session *s, const unsigned char *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = p[i];

		switch (s->dstate) {
		case SMTP_D_BOL:
			if (c == '.') {
				smtp_text_count(s, 1);
				s->dstate = SMTP_D_DOT;
				i++;
				continue;
			}
			break;
		case SMTP_D_DOT:
			if (c == '\r') {
				smtp_text_count(s, 1);
				s->dstate = SMTP_D_DOTCR;
				i++;
				continue;
			}
			break;		/* the stuffed dot is dropped */
		case SMTP_D_DOTCR:
			if (c == '\n') {
				s->text_line = 0;
				s->dstate = SMTP_D_BOL;
				smtp_message_end(s);
				return i + 1;
			}
			s->bad |= SMTP_BAD_EOL;
			break;
		case SMTP_D_CR:
			if (c == '\n') {
				smtp_text_count(s, 1);
				smtp_emit(s, (const unsigned char *)"\r\n", 2);
				s->text_line = 0;
				s->dstate = SMTP_D_BOL;
				i++;
				continue;
			}
			s->bad |= SMTP_BAD_EOL;
			break;
		case SMTP_D_MID:
			break;
		}
		/* Inside a line. A bare LF never starts a line, so it can
		 * never begin the final dot either. */
		if (c == '\r') {
			smtp_text_count(s, 1);
			s->dstate = SMTP_D_CR;
			i++;
		} else if (c == '\n') {
			smtp_text_count(s, 1);
			s->bad |= SMTP_BAD_EOL;
			s->dstate = SMTP_D_MID;
			i++;
		} else
			i += smtp_data_run(s, p + i, len - i);
	}
	return len;
}

/* A BDAT chunk was read. */
static void
smtp_chunk_end(struct smtp_session *s)
{
	s->in_chunk = false;
	if (s->bdat_refused) {
		s->bdat_refused = false;
		smtp_error(s, s->bdat_code, s->bdat_enh, "%s", s->bdat_text);
		return;
	}
	if (s->bdat_last && s->bdat_cr)
		s->bad |= SMTP_BAD_EOL;
	if (s->bad == 0 && !s->bdat_last) {
		smtp_reply(s, 250, "2.0.0", "%" PRIu64 " octets received",
		    s->bdat_size);
		return;
	}
	smtp_message_end(s);
}

/* Check BDAT bytes for bare CR and LF and line length, the runs between
 * line ends in one go. */
static void
smtp_chunk_check(struct smtp_session *s, const unsigned char *p, size_t len)
{
	size_t i = 0, n;

	while (i < len) {
		if (s->bdat_cr != (p[i] == '\n'))
			s->bad |= SMTP_BAD_EOL;
		if (p[i] == '\r' || p[i] == '\n') {
			s->bdat_cr = p[i] == '\r';
			smtp_text_count(s, 1);
			if (p[i++] == '\n')
				s->text_line = 0;
			continue;
		}
		for (n = 0; i + n < len && p[i + n] != '\r' &&
		    p[i + n] != '\n'; n++)
			;
		s->bdat_cr = false;
		smtp_text_count(s, n);
		i += n;
	}
}

/* BDAT content: checked for bare CR and LF like DATA (a CR at the end
 * of a chunk waits for the next one), passed on as it is. */
static size_t
smtp_chunk_bytes(struct smtp_session *s, const unsigned char *p, size_t len)
{
	size_t k = len < s->bdat_left ? len : (size_t)s->bdat_left;

	if (!s->bdat_refused) {
		smtp_chunk_check(s, p, k);
		smtp_emit(s, p, k);
	}
	s->bdat_left -= k;
	if (s->bdat_left == 0)
		smtp_chunk_end(s);
	return k;
}

/* The other commands. */

static bool
smtp_helo_valid(const char *arg)
{
	size_t len = strlen(arg);

	if (len == 0 || len > SMTP_HELO_MAX)
		return false;
	for (; *arg != '\0'; arg++)
		if (*arg < 0x21 || *arg > 0x7e)
			return false;
	return true;
}

static void
smtp_ehlo_reply(struct smtp_session *s)
{
	const char *ext[12];
	char size[32], auth[SMTP_MECHS_MAX + 8];
	int n = 0;

	if (smtp_ext(s, SMTP_EXT_PIPELINING))
		ext[n++] = "PIPELINING";
	if (smtp_ext(s, SMTP_EXT_SIZE)) {
		if (s->set.size_max > 0)
			snprintf(size, sizeof(size), "SIZE %" PRIu64,
			    s->set.size_max);
		else
			strlcpy(size, "SIZE", sizeof(size));
		ext[n++] = size;
	}
	if (smtp_tls_offered(s))
		ext[n++] = "STARTTLS";
	if (smtp_auth_offered(s) && smtp_auth_allowed(s)) {
		snprintf(auth, sizeof(auth), "AUTH %s", s->set.mechanisms);
		ext[n++] = auth;
	}
	if (smtp_ext(s, SMTP_EXT_ENHANCED))
		ext[n++] = "ENHANCEDSTATUSCODES";
	if (smtp_ext(s, SMTP_EXT_8BITMIME))
		ext[n++] = "8BITMIME";
	if (smtp_ext(s, SMTP_EXT_DSN))
		ext[n++] = "DSN";
	if (smtp_ext(s, SMTP_EXT_SMTPUTF8))
		ext[n++] = "SMTPUTF8";
	if (smtp_ext(s, SMTP_EXT_CHUNKING))
		ext[n++] = "CHUNKING";
	smtp_line(s, 250, n > 0 ? '-' : ' ', NULL, s->set.hostname);
	for (int i = 0; i < n; i++)
		smtp_line(s, 250, i + 1 < n ? '-' : ' ', NULL, ext[i]);
}

/* HELO, EHLO, LHLO. */
static void
smtp_hello(struct smtp_session *s, char *args, bool ehlo, const char *verb)
{
	if (args == NULL || !smtp_helo_valid(args)) {
		smtp_error(s, 501, "5.5.4", "Syntax: %s hostname", verb);
		return;
	}
	/* RFC 5321 4.1.4: as RSET. */
	smtp_txn_abort(s);
	strlcpy(s->helo, args, sizeof(s->helo));
	s->ehlo = ehlo;
	s->esc = ehlo && (s->set.extensions & SMTP_EXT_ENHANCED) != 0;
	smtp_enter_state(s, SMTP_STATE_READY);
	if (ehlo)
		smtp_ehlo_reply(s);
	else
		smtp_line(s, 250, ' ', NULL, s->set.hostname);
}

static void
smtp_cmd_helo(struct smtp_session *s, char *args)
{
	if (s->set.lmtp)
		smtp_error(s, 500, "5.5.1", "Command unrecognized: use LHLO");
	else
		smtp_hello(s, args, false, "HELO");
}

static void
smtp_cmd_ehlo(struct smtp_session *s, char *args)
{
	if (s->set.lmtp)
		smtp_error(s, 500, "5.5.1", "Command unrecognized: use LHLO");
	else
		smtp_hello(s, args, true, "EHLO");
}

static void
smtp_cmd_lhlo(struct smtp_session *s, char *args)
{
	if (!s->set.lmtp)
		smtp_error(s, 500, "5.5.1", "Command unrecognized");
	else
		smtp_hello(s, args, true, "LHLO");
}

static void
smtp_cmd_rset(struct smtp_session *s, char *args)
{
	if (!smtp_no_args(s, args, "RSET"))
		return;
	smtp_txn_abort(s);
	smtp_reply(s, 250, "2.0.0", "Ok");
}

static void
smtp_cmd_noop(struct smtp_session *s, char *args)
{
	(void)args;		/* RFC 5321 4.1.1.9: a string is allowed */
	smtp_reply(s, 250, "2.0.0", "Ok");
}

static void
smtp_cmd_quit(struct smtp_session *s, char *args)
{
	if (!smtp_no_args(s, args, "QUIT"))
		return;
	smtp_reply(s, 221, "2.0.0", "%s closing connection",
	    s->set.hostname);
	smtp_txn_abort(s);
	smtp_enter_state(s, SMTP_STATE_CLOSED);
}

static void
smtp_cmd_vrfy(struct smtp_session *s, char *args)
{
	if (args == NULL) {
		smtp_error(s, 501, "5.5.4", "Syntax: VRFY address");
		return;
	}
	smtp_reply(s, 252, "2.5.0", "Cannot VRFY user, but will accept "
	    "message and attempt delivery");
}

static void
smtp_cmd_expn(struct smtp_session *s, char *args)
{
	(void)args;
	smtp_error(s, 502, "5.5.1", "EXPN not available");
}

static void
smtp_cmd_help(struct smtp_session *s, char *args)
{
	(void)args;
	smtp_reply(s, 214, "2.0.0", "Commands: %s MAIL RCPT DATA BDAT RSET "
	    "NOOP QUIT VRFY HELP STARTTLS AUTH",
	    s->set.lmtp ? "LHLO" : "HELO EHLO");
}

static void
smtp_cmd_starttls(struct smtp_session *s, char *args)
{
	if (!smtp_no_args(s, args, "STARTTLS"))
		return;
	if (s->set.secured) {
		smtp_error(s, 503, "5.5.1", "TLS already active");
		return;
	}
	if (!smtp_tls_offered(s)) {
		smtp_error(s, 502, "5.5.1", "Command not implemented");
		return;
	}
	if (smtp_in_txn(s)) {
		smtp_error(s, 503, "5.5.1", "STARTTLS not allowed in a mail "
		    "transaction");
		return;
	}
	smtp_reply(s, 220, "2.0.0", "Ready to start TLS");
	smtp_flush(s);
	/* RFC 3207 section 4.2: forget what the client said; no plaintext
	 * pipelined after the command may reach the TLS session. */
	smtp_enter_state(s, SMTP_STATE_INIT);
	s->ehlo = false;
	s->esc = false;
	s->helo[0] = '\0';
	s->authed = false;
	s->auth_user[0] = '\0';
	s->tls_reset = true;
	s->in_pos = s->in.len;
	buf_truncate(&s->line, 0);
	s->skipping = false;
	s->cb->start_tls(s->ctx);
}

/* Checks before AUTH; -1 after replying. */
static int
smtp_check_auth(struct smtp_session *s)
{
	if (!s->ehlo) {
		smtp_error(s, 503, "5.5.1", "Send EHLO first");
		return -1;
	}
	if (!smtp_auth_offered(s)) {
		smtp_error(s, 502, "5.5.1", "Command not implemented");
		return -1;
	}
	if (!smtp_auth_allowed(s)) {
		smtp_error(s, 538, "5.7.11", "Encryption required for "
		    "requested authentication mechanism");
		return -1;
	}
	if (s->authed) {
		smtp_error(s, 503, "5.5.1", "Already authenticated");
		return -1;
	}
	if (s->state != SMTP_STATE_READY) {
		smtp_error(s, 503, "5.5.1", "AUTH not allowed in a mail "
		    "transaction");
		return -1;
	}
	return 0;
}

static void
smtp_cmd_auth(struct smtp_session *s, char *args)
{
	char *mech, *resp;

	if (smtp_check_auth(s) < 0)
		return;
	if (args == NULL || *args == '\0' || *args == ' ') {
		smtp_error(s, 501, "5.5.4", "Syntax: AUTH mechanism "
		    "[initial-response]");
		return;
	}
	mech = strsep(&args, " ");
	resp = args;
	for (char *p = mech; *p != '\0'; p++)
		*p = (char)toupper((unsigned char)*p);
	if (!smtp_mech_configured(s, mech)) {
		smtp_error(s, 504, "5.5.4", "Unrecognized authentication "
		    "type");
		return;
	}
	s->sasl_mech = xstrdup(mech);
	/* "=" is an empty initial response (RFC 4954 section 4). */
	if (resp != NULL && strcmp(resp, "=") == 0)
		resp = "";
	if (smtp_sasl_decode_step(s, true, resp != NULL ? resp : "",
	    resp != NULL ? strlen(resp) : 0, resp != NULL) < 0) {
		smtp_sasl_end(s, false);
		smtp_error(s, 501, "5.5.2", "Invalid base64 data");
	}
}

static const struct smtp_cmd smtp_cmds[] = {
	{ "HELO", SMTP_LINE_MAX, smtp_cmd_helo },
	{ "EHLO", SMTP_LINE_MAX, smtp_cmd_ehlo },
	{ "LHLO", SMTP_LINE_MAX, smtp_cmd_lhlo },
	{ "MAIL", SMTP_PARAM_LINE_MAX, smtp_cmd_mail },
	{ "RCPT", SMTP_PARAM_LINE_MAX, smtp_cmd_rcpt },
	{ "DATA", SMTP_LINE_MAX, smtp_cmd_data },
	{ "BDAT", SMTP_LINE_MAX, smtp_cmd_bdat },
	{ "RSET", SMTP_LINE_MAX, smtp_cmd_rset },
	{ "NOOP", SMTP_LINE_MAX, smtp_cmd_noop },
	{ "QUIT", SMTP_LINE_MAX, smtp_cmd_quit },
	{ "VRFY", SMTP_LINE_MAX, smtp_cmd_vrfy },
	{ "EXPN", SMTP_LINE_MAX, smtp_cmd_expn },
	{ "HELP", SMTP_LINE_MAX, smtp_cmd_help },
	{ "STARTTLS", SMTP_LINE_MAX, smtp_cmd_starttls },
	{ "AUTH", SMTP_LINE_MAX, smtp_cmd_auth },
};

/* Input. */

static const struct smtp_cmd *
smtp_cmd_find(const struct smtp_session *s, const char *verb)
{
	for (size_t i = 0; i < sizeof(smtp_cmds) / sizeof(smtp_cmds[0]); i++) {
		if (strcasecmp(verb, smtp_cmds[i].name) != 0)
			continue;
		/* Without CHUNKING, BDAT is not a command (its bytes are
		 * then read as commands, which is the client's problem). */
		if (smtp_cmds[i].fn == smtp_cmd_bdat &&
		    !smtp_ext(s, SMTP_EXT_CHUNKING))
			return NULL;
		return &smtp_cmds[i];
	}
	return NULL;
}

/* A line with a bad ending or length: refused, never run. */
static void
smtp_line_refuse(struct smtp_session *s, const char *text)
{
	if (s->sasl_mech != NULL) {
		smtp_sasl_end(s, true);
		if (s->skipping) {
			smtp_error(s, 500, "5.5.6", "Authentication exchange "
			    "line is too long");
			return;
		}
	}
	smtp_error(s, 500, "5.5.2", "%s", text);
}

static void
smtp_dispatch(struct smtp_session *s, char *line, size_t len)
{
	const struct smtp_cmd *cmd;
	char *args = NULL, *sp;

	if (s->sasl_mech != NULL) {
		smtp_sasl_response(s, line, len);
		return;
	}
	if ((sp = strchr(line, ' ')) != NULL) {
		*sp = '\0';
		args = sp + 1;
	}
	if ((cmd = smtp_cmd_find(s, line)) == NULL) {
		smtp_error(s, 500, "5.5.1", "Command unrecognized");
		return;
	}
	if (len + 2 > cmd->line_max) {
		smtp_error(s, 500, "5.5.2", "Line too long");
		return;
	}
	cmd->fn(s, args);
}

/* A complete line (its LF consumed) in s->line. */
static void
smtp_line_done(struct smtp_session *s)
{
	char *line = (char *)s->line.data;
	size_t len = s->line.len;

	if (s->skipping)
		smtp_line_refuse(s, "Line too long");
	else if (len == 0 || line[len - 1] != '\r')
		smtp_line_refuse(s, "Bare LF in command");
	else if (memchr(line, '\r', len - 1) != NULL)
		smtp_line_refuse(s, "Bare CR in command");
	else if (memchr(line, '\0', len - 1) != NULL)
		smtp_line_refuse(s, "NUL in command");
	else if (len == 1 && s->sasl_mech == NULL)
		smtp_error(s, 500, "5.5.2", "Empty command");
	else {
		line[len - 1] = '\0';
		smtp_dispatch(s, line, len - 1);
	}
	s->skipping = false;
	/* SASL responses leave no copy behind. */
	if (s->line.len > 0)
		explicit_bzero(s->line.data, s->line.len);
	buf_truncate(&s->line, 0);
}

/* Command bytes up to and including one LF; returns those consumed. */
static size_t
smtp_cmd_bytes(struct smtp_session *s, const unsigned char *p, size_t len)
{
	const unsigned char *lf = memchr(p, '\n', len);
	size_t n = lf != NULL ? (size_t)(lf - p) : len;
	size_t limit = s->sasl_mech != NULL ? SMTP_SASL_LINE_MAX :
	    SMTP_PARAM_LINE_MAX;

	/* Room is kept for the LF: a line may take limit bytes with it. */
	if (!s->skipping && s->line.len + n + 1 > limit) {
		if (s->line.len > 0)
			explicit_bzero(s->line.data, s->line.len);
		buf_truncate(&s->line, 0);
		s->skipping = true;
	}
	if (!s->skipping && buf_append(&s->line, p, n) < 0)
		log_panic("smtp: line buffer");
	if (lf == NULL)
		return len;
	smtp_line_done(s);
	return n + 1;
}

static bool
smtp_blocked(const struct smtp_session *s)
{
	return s->wait != SMTP_WAIT_NONE || s->state == SMTP_STATE_CLOSED ||
	    s->tls_reset;
}

/* Run input until it is used up or the engine must wait. */
static size_t
smtp_process(struct smtp_session *s, const unsigned char *p, size_t len)
{
	size_t i = 0;

	s->running = true;
	while (i < len && !smtp_blocked(s)) {
		if (s->state == SMTP_STATE_DATA)
			i += smtp_data_bytes(s, p + i, len - i);
		else if (s->in_chunk)
			i += smtp_chunk_bytes(s, p + i, len - i);
		else
			i += smtp_cmd_bytes(s, p + i, len - i);
	}
	/* What arrived goes on now, not when the message ends. */
	if (s->state == SMTP_STATE_DATA || s->state == SMTP_STATE_CHUNKING)
		smtp_data_flush(s);
	s->running = false;
	return i;
}

static void
smtp_in_drop(struct smtp_session *s)
{
	buf_truncate(&s->in, 0);
	s->in_pos = 0;
}

/* Run the kept input after a decision (not from inside a callback). A
 * STARTTLS found there leaves tls_reset set for the caller. */
static void
smtp_resume_run(struct smtp_session *s)
{
	if (s->running)
		return;
	if (s->in_pos < s->in.len && !smtp_blocked(s))
		s->in_pos += smtp_process(s, s->in.data + s->in_pos,
		    s->in.len - s->in_pos);
	if (s->tls_reset || s->in_pos >= s->in.len ||
	    s->state == SMTP_STATE_CLOSED)
		smtp_in_drop(s);
}

/* The same from a decision: nothing else is being fed in. */
static void
smtp_resume(struct smtp_session *s)
{
	if (s->running)
		return;
	smtp_resume_run(s);
	s->tls_reset = false;
	smtp_flush(s);
}

/* Keep what cannot be run yet; returns how many bytes were kept. */
static size_t
smtp_keep(struct smtp_session *s, const unsigned char *data, size_t len)
{
	size_t room;

	if (s->in_pos > 0) {
		memmove(s->in.data, s->in.data + s->in_pos,
		    s->in.len - s->in_pos);
		buf_truncate(&s->in, s->in.len - s->in_pos);
		s->in_pos = 0;
	}
	room = SMTP_QUEUE_MAX - s->in.len;
	if (len > room)
		len = room;
	if (buf_append(&s->in, data, len) < 0)
		log_panic("smtp: input queue");
	return len;
}

size_t
smtp_session_input(struct smtp_session *s, const unsigned char *data,
    size_t len)
{
	size_t n = 0;

	if (s->running)
		log_panic("smtp_session_input from inside a callback");
	smtp_resume_run(s);
	if (s->state == SMTP_STATE_CLOSED) {
		smtp_flush(s);
		return 0;
	}
	if (s->in_pos == s->in.len && !smtp_blocked(s))
		n = smtp_process(s, data, len);
	if (s->tls_reset) {
		s->tls_reset = false;
		smtp_in_drop(s);
		smtp_flush(s);
		return len;
	}
	if (s->state != SMTP_STATE_CLOSED && n < len)
		n += smtp_keep(s, data + n, len - n);
	smtp_flush(s);
	return n;
}

/* Decisions from the daemon side. */

/* n digits (1..max) at *p; advances p. */
static bool
smtp_digits(const char **p, int max)
{
	int n = 0;

	while (isdigit((unsigned char)**p) && n <= max) {
		(*p)++;
		n++;
	}
	return n >= 1 && n <= max;
}

/* A code and enhanced code the daemon gave into buf ("c.0.0" for NULL):
 * a mistake is a bug. */
static void
smtp_check_code(unsigned code, const char *enh, char *buf, size_t size)
{
	const char *p = enh;

	if (code < 200 || code > 599)
		log_panic("smtp: reply code %u", code);
	if (enh == NULL) {
		snprintf(buf, size, "%u.0.0", code / 100);
		return;
	}
	if ((unsigned)(enh[0] - '0') != code / 100 || enh[1] != '.' ||
	    (p += 2, !smtp_digits(&p, 3)) || *p++ != '.' ||
	    !smtp_digits(&p, 3) || *p != '\0')
		log_panic("smtp: enhanced code %s for %u", enh, code);
	strlcpy(buf, enh, size);
}

/* The daemon's reply line, its text made safe. */
static void
smtp_decision(struct smtp_session *s, unsigned code, const char *enh,
    const char *text)
{
	char e[16], t[SMTP_TEXT_MAX + 1];
	size_t i;

	smtp_check_code(code, enh, e, sizeof(e));
	if (text == NULL)
		text = "";
	for (i = 0; i < sizeof(t) - 1 && text[i] != '\0'; i++)
		t[i] = (unsigned char)text[i] < 0x20 || text[i] == 0x7f ?
		    '?' : text[i];
	t[i] = '\0';
	smtp_line(s, code, ' ', e, t);
}

void
smtp_session_reply(struct smtp_session *s, unsigned code,
    const char *enhanced, const char *text)
{
	enum smtp_wait w = s->wait;

	if (w != SMTP_WAIT_MAIL && w != SMTP_WAIT_RCPT)
		log_panic("smtp_session_reply without a pending MAIL or RCPT");
	s->wait = SMTP_WAIT_NONE;
	smtp_decision(s, code, enhanced, text);
	if (w == SMTP_WAIT_MAIL && code < 300) {
		smtp_txn_clear(s);
		s->utf8 = s->pend_utf8;
		smtp_enter_state(s, SMTP_STATE_MAIL);
	} else if (w == SMTP_WAIT_RCPT) {
		s->rcpt_tries++;
		if (code < 300)
			s->rcpts++;
	}
	if (code >= 400)
		smtp_count_error(s);
	smtp_resume(s);
}

void
smtp_session_data_done(struct smtp_session *s, unsigned code,
    const char *enhanced, const char *text)
{
	if (s->state != SMTP_STATE_END || s->wait != SMTP_WAIT_DONE)
		log_panic("smtp_session_data_done without a message");
	smtp_decision(s, code, enhanced, text);
	/* A client that delivers is no longer counted for its errors. */
	if (code < 300)
		s->errors = 0;
	if (s->set.lmtp && ++s->done < s->rcpts) {
		if (!s->running)
			smtp_flush(s);
		return;
	}
	s->wait = SMTP_WAIT_NONE;
	smtp_txn_clear(s);
	smtp_enter_state(s, SMTP_STATE_READY);
	smtp_resume(s);
}

void
smtp_session_auth_reply(struct smtp_session *s, enum smtp_auth_result r,
    const unsigned char *challenge, size_t challenge_len, const char *user)
{
	if (s->wait != SMTP_WAIT_AUTH)
		log_panic("smtp_session_auth_reply without a pending step");
	if (r == SMTP_AUTH_PENDING)
		log_panic("smtp_session_auth_reply: result PENDING");
	s->wait = SMTP_WAIT_NONE;
	smtp_sasl_result(s, r, challenge, challenge_len, user);
	smtp_resume(s);
}

/* Lifecycle. */

static void
smtp_settings_check(const struct smtp_settings *set,
    const struct smtp_callbacks *cb)
{
	if (cb->write == NULL || cb->data == NULL || cb->data_end == NULL)
		log_panic("smtp_session_new: write, data, data_end required");
	if (set->hostname == NULL || !smtp_helo_valid(set->hostname))
		log_panic("smtp_session_new: bad hostname");
	if (set->mechanisms != NULL &&
	    strlen(set->mechanisms) > SMTP_MECHS_MAX)
		log_panic("smtp_session_new: mechanisms too long");
	if (set->text_line_max != 0 &&
	    (set->text_line_max < SMTP_TEXT_LINE_MIN ||
	    set->text_line_max > SMTP_TEXT_LINE_LIMIT))
		log_panic("smtp_session_new: text_line_max %zu",
		    set->text_line_max);
}

struct smtp_session *
smtp_session_new(const struct smtp_settings *set,
    const struct smtp_callbacks *cb, void *ctx)
{
	struct smtp_session *s;

	smtp_settings_check(set, cb);
	s = xcalloc(1, sizeof(*s));
	s->set = *set;
	s->set.hostname = xstrdup(set->hostname);
	s->set.mechanisms = xstrdup(set->mechanisms != NULL ?
	    set->mechanisms : "");
	if (s->set.lmtp)	/* RFC 2033 section 5: both required */
		s->set.extensions |= SMTP_EXT_PIPELINING | SMTP_EXT_ENHANCED;
	if (s->set.rcpt_max == 0)
		s->set.rcpt_max = SMTP_RCPT_MAX_DEFAULT;
	if (s->set.errors_max == 0)
		s->set.errors_max = SMTP_ERRORS_MAX_DEFAULT;
	if (s->set.text_line_max == 0)
		s->set.text_line_max = SMTP_TEXT_LINE_DEFAULT;
	s->cb = cb;
	s->ctx = ctx;
	smtp_enter_state(s, SMTP_STATE_INIT);
	buf_init(&s->line, SMTP_SASL_LINE_MAX);
	buf_init(&s->in, SMTP_QUEUE_MAX);
	/* Flushed at SMTP_OUT_FLUSH; one more reply (EHLO, a challenge)
	 * always fits above it. */
	buf_init(&s->out, SMTP_OUT_FLUSH + 4096);
	buf_init(&s->chunk, SMTP_DATA_CHUNK);
	return s;
}

void
smtp_session_free(struct smtp_session **sp)
{
	struct smtp_session *s = *sp;

	if (s == NULL)
		return;
	s->running = true;	/* callbacks may not re-enter */
	smtp_sasl_end(s, true);
	smtp_txn_abort(s);
	if (s->line.len > 0)
		explicit_bzero(s->line.data, s->line.len);
	if (s->in.len > 0)
		explicit_bzero(s->in.data, s->in.len);
	buf_free(&s->line);
	buf_free(&s->in);
	buf_free(&s->out);
	buf_free(&s->chunk);
	free((char *)s->set.hostname);
	free((char *)s->set.mechanisms);
	free(s);
	*sp = NULL;
}

void
smtp_session_greet(struct smtp_session *s)
{
	smtp_reply(s, 220, NULL, "%s %s loft", s->set.hostname,
	    s->set.lmtp ? "LMTP" : "ESMTP");
	smtp_flush(s);
}

void
smtp_session_tls_started(struct smtp_session *s)
{
	s->set.secured = true;
}

enum smtp_state
smtp_session_state(const struct smtp_session *s)
{
	return s->state;
}

unsigned
smtp_session_rcpt_count(const struct smtp_session *s)
{
	return s->rcpts;
}

const char *
smtp_session_auth_user(const struct smtp_session *s)
{
	return s->authed ? s->auth_user : NULL;
}
