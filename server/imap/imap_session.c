/*
 * imap_session.c: the IMAP engine's core (see imap_session.h): the input
 * loop over the command parser, the command table and states, replies,
 * authentication (LOGIN, AUTHENTICATE with SASL-IR, asynchronous answers),
 * STARTTLS, the hand-over to the mail process, COMPRESS, ID, ENABLE
 * (which also switches the parser to UTF-8 quoted strings), NOOP,
 * IDLE and LOGOUT. Mailbox commands live in imap_mailbox.c, FETCH in
 * imap_fetch.c.
 *
 * Trusts nothing from the client: every command comes through
 * server/imap/imap_parser with its limits, every argument through its
 * typed accessors; passwords and SASL data are wiped after use and never
 * logged. Trusts its callbacks and settings.
 */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base64.h"
#include "compat/compat.h"
#include "log.h"
#include "mailloc.h"
#include "store.h"
#include "xmalloc.h"
#include "server/imap/imap_notify.h"
#include "server/imap/imap_private.h"
#include "server/imap/imap_sort.h"
#include "server/imap/imap_write.h"

#define IMAP_REPLY_MAX		1024
/* A SASL response or IDLE's DONE line, CRLF included. */
#define IMAP_AUX_LINE_MAX	(IMAP_SASL_MAX * 2 + 8)

static void imap_run(struct imap_session *s);
static void imap_out(struct imap_session *s, const void *data, size_t len);

/*
 * Replies.
 */

static void
imap_out(struct imap_session *s, const void *data, size_t len)
{
	if (!s->closed || len > 0)
		s->cb->write(s->ctx, data, len);
}

static void
imap_vline(struct imap_session *s, const char *prefix, const char *fmt,
    va_list ap)
{
	char line[IMAP_REPLY_MAX];
	int n, m;

	n = snprintf(line, sizeof(line) - 2, "%s", prefix);
	m = vsnprintf(line + n, sizeof(line) - 2 - (size_t)n, fmt, ap);
	if (m < 0)
		log_panic("imap: bad reply format");
	n += m;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)(sizeof(line) - 3);
	line[n++] = '\r';
	line[n++] = '\n';
	imap_out(s, line, (size_t)n);
}

void
imap_untagged(struct imap_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	imap_vline(s, "* ", fmt, ap);
	va_end(ap);
}

void
imap_tagged(struct imap_session *s, const char *status, const char *fmt, ...)
{
	char prefix[IMAP_PARSER_TAG_MAX + 16];
	va_list ap;

	snprintf(prefix, sizeof(prefix), "%s %s ", s->tag[0] != '\0' ?
	    s->tag : "*", status);
	va_start(ap, fmt);
	imap_vline(s, prefix, fmt, ap);
	va_end(ap);
}

void
imap_send(struct imap_session *s)
{
	if (s->out.len > 0)
		imap_out(s, s->out.data, s->out.len);
	buf_truncate(&s->out, 0);
}

void
imap_untagged_buf(struct imap_session *s, const struct buf *line)
{
	buf_append_str(&s->out, "* ");
	buf_append(&s->out, line->data, line->len);
	buf_append_str(&s->out, "\r\n");
	imap_send(s);
}

unsigned
imap_write_flags(const struct imap_session *s)
{
	return (s->utf8 ? IMAP_WRITE_UTF8 : 0) |
	    (s->rev2 ? IMAP_WRITE_REV2 : 0);
}

static void
imap_close_session(struct imap_session *s)
{
	if (s->closed)
		return;
	s->closed = true;
	s->state = IMAP_STATE_LOGOUT;
	if (s->cb->closed != NULL)
		s->cb->closed(s->ctx);
}

void
imap_bad(struct imap_session *s, const char *text)
{
	s->stats.bad = ++s->bad;
	imap_tagged(s, "BAD", "%s", text);
	if (s->bad >= IMAP_BAD_MAX) {
		imap_untagged(s, "BYE Too many bad commands");
		imap_close_session(s);
	}
}

struct store *
imap_store(struct imap_session *s)
{
	const char *error;

	if (s->st == NULL && s->u != NULL &&
	    store_open(s->u, &s->st, &error) < 0) {
		log_error("imap: user=<%s>, cannot open the mail store (%s)",
		    s->user, error);
		imap_tagged(s, "NO", "[UNAVAILABLE] Mail store unavailable");
		return NULL;
	}
	return s->st;
}

/*
 * Capabilities: only what works.
 */

static bool
imap_plaintext_ok(const struct imap_session *s)
{
	return s->set.secured || s->set.allow_plaintext;
}

static bool
imap_mech_plaintext(const char *mech)
{
	return strcasecmp(mech, "PLAIN") == 0 || strcasecmp(mech, "LOGIN") == 0;
}

/* Append " AUTH=X" for each mechanism usable now. */
static void
imap_caps_auth(const struct imap_session *s, struct buf *b)
{
	const char *p = s->set.mechanisms;
	char mech[64];
	size_t n;

	while (p != NULL && *p != '\0') {
		n = strcspn(p, " ");
		if (n > 0 && n < sizeof(mech)) {
			memcpy(mech, p, n);
			mech[n] = '\0';
			if (!imap_mech_plaintext(mech) || imap_plaintext_ok(s))
				buf_printf(b, " AUTH=%s", mech);
		}
		p += n;
		while (*p == ' ')
			p++;
	}
}

static bool imap_compress_offered = true;

void
imap_session_offer_compress(bool on)
{
	imap_compress_offered = on;
}

static void
imap_caps(const struct imap_session *s, bool after_login, struct buf *b)
{
	buf_append_str(b, "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE "
	    "IDLE NAMESPACE UNSELECT UIDPLUS MULTIAPPEND BINARY MOVE "
	    "CONDSTORE QRESYNC QUOTA QUOTA=RES-STORAGE STATUS=SIZE "
	    "LIST-EXTENDED LIST-STATUS SPECIAL-USE CREATE-SPECIAL-USE XLIST "
	    "CHILDREN ESEARCH SEARCHRES WITHIN SAVEDATE PREVIEW SORT "
	    "SORT=DISPLAY ESORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES "
	    "UTF8=ACCEPT CONTEXT=SEARCH CONTEXT=SORT CATENATE");
	buf_printf(b, " APPENDLIMIT=%u", (unsigned)IMAP_APPEND_LIMIT);
	/* The login OK speaks for the session after login, which the mail
	 * process serves with COMPRESS; before login it is not valid. */
	if (imap_compress_offered && (after_login ||
	    (s->state != IMAP_STATE_NOT_AUTH && s->cb->start_compress != NULL)))
		buf_append_str(b, " COMPRESS=DEFLATE");
	/* NOTIFY works where the process gave an inotify instance: the
	 * mail process, so not in the login OK, which the login process
	 * writes (a client asks CAPABILITY after login to learn it). */
	if (s->state != IMAP_STATE_NOT_AUTH && !after_login &&
	    imap_notify_available())
		buf_append_str(b, " NOTIFY");
	if (after_login || s->state != IMAP_STATE_NOT_AUTH)
		return;
	if (s->set.tls_available && !s->set.secured)
		buf_append_str(b, " STARTTLS");
	if (!imap_plaintext_ok(s))
		buf_append_str(b, " LOGINDISABLED");
	imap_caps_auth(s, b);
}

void
imap_session_greet(struct imap_session *s)
{
	struct buf b;

	buf_init(&b, 4096);
	imap_caps(s, false, &b);
	imap_untagged(s, "OK [CAPABILITY %s] loft IMAP ready", buf_cstr(&b));
	buf_free(&b);
}

static void
imap_cmd_capability(struct imap_session *s, const struct imap_cmd *cmd)
{
	struct buf b;

	(void)cmd;
	buf_init(&b, 4096);
	imap_caps(s, false, &b);
	imap_untagged(s, "CAPABILITY %s", buf_cstr(&b));
	buf_free(&b);
	imap_tagged(s, "OK", "CAPABILITY completed");
}

/*
 * Simple commands.
 */

static void
imap_cmd_noop(struct imap_session *s, const struct imap_cmd *cmd)
{
	if (s->state == IMAP_STATE_SELECTED && imap_view_sync(s, true) < 0)
		return;
	imap_tagged(s, "OK", "%s completed", cmd->name);
}

static void
imap_cmd_logout(struct imap_session *s, const struct imap_cmd *cmd)
{
	(void)cmd;
	s->stats.logout = true;
	imap_untagged(s, "BYE Logging out");
	imap_tagged(s, "OK", "LOGOUT completed");
	imap_close_session(s);
}

/* ID (RFC 2971): say who we are; the client's list is not kept. */
static void
imap_cmd_id(struct imap_session *s, const struct imap_cmd *cmd)
{
	const struct imap_arg *list;
	unsigned count;
	const char *error, *dummy;

	if (cmd->argc != 1 ||
	    (cmd->args[0].type != IMAP_ARG_NIL &&
	    imap_arg_list(&cmd->args[0], &list, &count, &error) < 0)) {
		imap_bad(s, "ID takes a list or NIL");
		return;
	}
	if (cmd->args[0].type == IMAP_ARG_LIST) {
		if (count % 2 != 0 || count > 60) {
			imap_bad(s, "ID list: up to 30 field-value pairs");
			return;
		}
		for (unsigned i = 0; i < count; i += 2)
			if (imap_arg_string(&list[i], &dummy, &error) < 0 ||
			    imap_arg_nstring(&list[i + 1], &dummy,
			    &error) < 0) {
				imap_bad(s, error);
				return;
			}
	}
	imap_untagged(s, "ID (\"name\" \"loft\")");
	imap_tagged(s, "OK", "ID completed");
}

/* The parser's settings for this session: its line limit, LITERAL+,
 * and UTF-8 in quoted strings once utf8 is on. */
static void
imap_parser_settings_of(const struct imap_session *s,
    struct imap_parser_settings *ps)
{
	memset(ps, 0, sizeof(*ps));
	ps->line_max = s->set.line_max;
	ps->literal_plus = true;
	ps->utf8 = s->utf8;
}

/* imap_enable_one: turn on what capability name atom names, if it is
 * off; its name (or names: QRESYNC brings CONDSTORE) into b. */
static void
imap_enable_one(struct imap_session *s, const char *atom, struct buf *b)
{
	if (strcasecmp(atom, "QRESYNC") == 0 && !s->qresync) {
		s->qresync = true;
		buf_append_str(b, " QRESYNC");
	}
	if ((strcasecmp(atom, "CONDSTORE") == 0 ||
	    strcasecmp(atom, "QRESYNC") == 0) && !s->condstore) {
		s->condstore = true;
		buf_append_str(b, " CONDSTORE");
	}
	if (strcasecmp(atom, "UTF8=ACCEPT") == 0 && !s->utf8_accept) {
		s->utf8_accept = s->utf8 = true;
		buf_append_str(b, " UTF8=ACCEPT");
	}
	if (strcasecmp(atom, "IMAP4rev2") == 0 && !s->rev2) {
		s->rev2 = s->utf8 = true;
		buf_append_str(b, " IMAP4rev2");
	}
}

/* ENABLE (RFC 5161, authenticated state only): CONDSTORE and QRESYNC
 * (RFC 7162; QRESYNC brings CONDSTORE with it), UTF8=ACCEPT (RFC 6855)
 * and IMAP4rev2 (RFC 9051); other names are accepted and not enabled.
 * "* ENABLED" names what this command turned on. UTF-8 reaches the
 * parser from the next command on. */
static void
imap_cmd_enable(struct imap_session *s, const struct imap_cmd *cmd)
{
	struct imap_parser_settings ps;
	const char *atom, *error;
	struct buf b;

	if (cmd->argc == 0) {
		imap_bad(s, "ENABLE needs capability names");
		return;
	}
	for (unsigned i = 0; i < cmd->argc; i++)
		if (imap_arg_atom(&cmd->args[i], &atom, &error) < 0) {
			imap_bad(s, error);
			return;
		}
	buf_init(&b, 256);
	buf_append_str(&b, "ENABLED");
	for (unsigned i = 0; i < cmd->argc; i++) {
		(void)imap_arg_atom(&cmd->args[i], &atom, &error);
		imap_enable_one(s, atom, &b);
	}
	imap_parser_settings_of(s, &ps);
	imap_parser_set_settings(s->parser, &ps);
	imap_untagged(s, "%s", buf_cstr(&b));
	buf_free(&b);
	imap_tagged(s, "OK", "ENABLE completed");
}

static void
imap_cmd_starttls(struct imap_session *s, const struct imap_cmd *cmd)
{
	(void)cmd;
	if (s->set.secured) {
		imap_bad(s, "TLS is already active");
		return;
	}
	if (!s->set.tls_available || s->cb->start_tls == NULL) {
		imap_tagged(s, "NO", "STARTTLS is not available");
		return;
	}
	imap_tagged(s, "OK", "Begin TLS negotiation now");
	/* Nothing the client pipelined may be read as a command in TLS. */
	s->tls_reset = true;
	s->cb->start_tls(s->ctx);
}

/*
 * COMPRESS DEFLATE (RFC 4978): the tagged OK is the last uncompressed
 * line; the owner switches the connection once it has been sent. Until it
 * says so, no input is taken (handed_over: the bytes after the command are
 * the transport's to inflate, not ours to parse), so a client that
 * pipelines compressed commands behind COMPRESS loses nothing.
 */
static void
imap_cmd_compress(struct imap_session *s, const struct imap_cmd *cmd)
{
	const char *alg, *error;

	if (cmd->argc != 1 ||
	    imap_arg_atom(&cmd->args[0], &alg, &error) < 0) {
		imap_bad(s, "COMPRESS takes one algorithm: COMPRESS DEFLATE");
		return;
	}
	if (strcasecmp(alg, "DEFLATE") != 0) {
		imap_bad(s, "Unknown compression algorithm (DEFLATE only)");
		return;
	}
	if (s->cb->start_compress == NULL) {
		imap_tagged(s, "NO", "COMPRESS is not available");
		return;
	}
	/* The owner switches on the drain that follows our OK. */
	if (s->cb->start_compress(s->ctx) < 0) {
		imap_tagged(s, "NO", "[COMPRESSIONACTIVE] DEFLATE is already "
		    "active");
		return;
	}
	imap_tagged(s, "OK", "DEFLATE active");
	s->handed_over = true;
}

/* IDLE (RFC 2177): report changes as they come until "DONE". */
static void
imap_cmd_idle(struct imap_session *s, const struct imap_cmd *cmd)
{
	(void)cmd;
	imap_out(s, "+ idling\r\n", 10);
	s->idling = true;
	if (s->state == IMAP_STATE_SELECTED)
		(void)imap_view_sync(s, true);
}

static void
imap_idle_line(struct imap_session *s, const char *line)
{
	s->idling = false;
	if (strcasecmp(line, "DONE") != 0) {
		imap_bad(s, "Expected DONE");
		return;
	}
	imap_tagged(s, "OK", "IDLE terminated");
}

/*
 * Authentication.
 */

static void
imap_sasl_end(struct imap_session *s, bool abort)
{
	if (abort && s->cb->sasl_abort != NULL)
		s->cb->sasl_abort(s->ctx);
	free(s->sasl_mech);
	s->sasl_mech = NULL;
}

static void
imap_authenticated(struct imap_session *s, const char *user)
{
	struct buf b;

	if (strlcpy(s->user, user, sizeof(s->user)) >= sizeof(s->user)) {
		imap_tagged(s, "NO", "[AUTHENTICATIONFAILED] Authentication "
		    "failed");
		return;
	}
	buf_init(&b, 4096);
	imap_caps(s, true, &b);
	imap_tagged(s, "OK", "[CAPABILITY %s] Logged in", buf_cstr(&b));
	buf_free(&b);
	s->handed_over = true;
	s->state = IMAP_STATE_AUTH;
	s->cb->authenticated(s->ctx, s->user);
}

static void
imap_auth_result(struct imap_session *s, enum imap_auth_result r,
    const char *user)
{
	if (r == IMAP_AUTH_OK)
		imap_authenticated(s, user);
	else if (r == IMAP_AUTH_TEMPFAIL)
		imap_tagged(s, "NO", "[UNAVAILABLE] Temporary authentication "
		    "failure");
	else
		imap_tagged(s, "NO", "[AUTHENTICATIONFAILED] Authentication "
		    "failed");
}

static void
imap_sasl_answer(struct imap_session *s, enum imap_auth_result r,
    const unsigned char *chal, size_t chal_len, const char *user)
{
	struct buf b;

	if (r == IMAP_AUTH_PENDING) {
		s->waiting_auth = true;
		return;
	}
	if (r != IMAP_AUTH_CONTINUE) {
		imap_sasl_end(s, false);
		imap_auth_result(s, r, user != NULL ? user : "");
		return;
	}
	if (chal_len > IMAP_SASL_MAX)
		log_panic("imap: SASL challenge of %zu bytes", chal_len);
	buf_init(&b, IMAP_SASL_MAX * 2);
	buf_append_str(&b, "+ ");
	base64_encode(chal, chal_len, &b);
	buf_append_str(&b, "\r\n");
	imap_out(s, b.data, b.len);
	buf_free(&b);
}

static void
imap_sasl_step(struct imap_session *s, bool first, const unsigned char *resp,
    size_t len, bool has_resp)
{
	const unsigned char *chal = NULL;
	size_t chal_len = 0;
	const char *user = NULL;
	enum imap_auth_result r;

	r = s->cb->sasl(s->ctx, s->sasl_mech, first, resp, len, has_resp,
	    &chal, &chal_len, &user);
	imap_sasl_answer(s, r, chal, chal_len, user);
}

static void
imap_sasl_line(struct imap_session *s, char *line, size_t len)
{
	unsigned char *dec;
	size_t dlen = 0;

	if (len == 1 && line[0] == '*') {
		imap_sasl_end(s, true);
		imap_tagged(s, "BAD", "Authentication cancelled");
		return;
	}
	dec = xmalloc(len + 1);
	if (base64_decode(line, len, dec, &dlen) < 0) {
		imap_sasl_end(s, true);
		imap_tagged(s, "BAD", "Invalid base64 data");
	} else
		imap_sasl_step(s, false, dec, dlen, true);
	explicit_bzero(dec, len + 1);
	free(dec);
}

static bool
imap_mech_offered(const struct imap_session *s, const char *mech)
{
	const char *p = s->set.mechanisms;
	size_t n, want = strlen(mech);

	while (p != NULL && *p != '\0') {
		n = strcspn(p, " ");
		if (n == want && strncasecmp(p, mech, n) == 0)
			return true;
		p += n;
		while (*p == ' ')
			p++;
	}
	return false;
}

static void
imap_cmd_authenticate(struct imap_session *s, const struct imap_cmd *cmd)
{
	const char *mech, *ir = NULL, *error;
	unsigned char *dec = NULL;
	size_t dlen = 0;
	char name[64];

	if (cmd->argc < 1 || cmd->argc > 2 ||
	    imap_arg_atom(&cmd->args[0], &mech, &error) < 0 ||
	    (cmd->argc == 2 && imap_arg_atom(&cmd->args[1], &ir,
	    &error) < 0)) {
		imap_bad(s, "AUTHENTICATE mechanism [initial-response]");
		return;
	}
	if (strlen(mech) >= sizeof(name) || !imap_mech_offered(s, mech) ||
	    s->cb->sasl == NULL) {
		imap_tagged(s, "NO", "Unsupported authentication mechanism");
		return;
	}
	strlcpy(name, mech, sizeof(name));
	for (char *p = name; *p != '\0'; p++)
		*p = (char)toupper((unsigned char)*p);
	if (imap_mech_plaintext(name) && !imap_plaintext_ok(s)) {
		imap_tagged(s, "NO", "[PRIVACYREQUIRED] Plaintext "
		    "authentication disallowed on non-secure connection");
		return;
	}
	/* SASL-IR: "=" is an empty initial response. */
	if (ir != NULL && strcmp(ir, "=") != 0) {
		dec = xmalloc(strlen(ir) + 1);
		if (base64_decode(ir, strlen(ir), dec, &dlen) < 0) {
			free(dec);
			imap_bad(s, "Invalid base64 data");
			return;
		}
	}
	s->sasl_mech = xstrdup(name);
	imap_sasl_step(s, true, dec != NULL ? dec : (const unsigned char *)"",
	    dlen, ir != NULL);
	if (dec != NULL) {
		explicit_bzero(dec, dlen);
		free(dec);
	}
}

static void
imap_cmd_login(struct imap_session *s, const struct imap_cmd *cmd)
{
	const char *user, *pass, *error;
	enum imap_auth_result r;

	if (!imap_plaintext_ok(s)) {
		imap_tagged(s, "NO", "[PRIVACYREQUIRED] Plaintext "
		    "authentication disallowed on non-secure connection");
		return;
	}
	if (cmd->argc != 2 ||
	    imap_arg_astring(&cmd->args[0], &user, &error) < 0 ||
	    imap_arg_astring(&cmd->args[1], &pass, &error) < 0) {
		imap_bad(s, "LOGIN user password");
		return;
	}
	if (s->cb->check_plain == NULL) {
		imap_tagged(s, "NO", "[AUTHENTICATIONFAILED] Authentication "
		    "failed");
		return;
	}
	strlcpy(s->user, user, sizeof(s->user));
	r = s->cb->check_plain(s->ctx, user, pass);
	explicit_bzero((char *)pass, strlen(pass));
	if (r == IMAP_AUTH_PENDING) {
		s->waiting_auth = true;
		return;
	}
	imap_auth_result(s, r, s->user);
}

void
imap_session_auth_reply(struct imap_session *s, enum imap_auth_result r,
    const unsigned char *challenge, size_t challenge_len, const char *user)
{
	if (!s->waiting_auth || r == IMAP_AUTH_PENDING)
		log_panic("imap_session_auth_reply without a pending check");
	s->waiting_auth = false;
	if (s->sasl_mech != NULL)
		imap_sasl_answer(s, r, challenge, challenge_len, user);
	else
		imap_auth_result(s, r, user != NULL && user[0] != '\0' ?
		    user : s->user);
}

/*
 * The command table.
 */

#define ST_NOT	(1u << IMAP_STATE_NOT_AUTH)
#define ST_AUTH	(1u << IMAP_STATE_AUTH)
#define ST_SEL	(1u << IMAP_STATE_SELECTED)
#define ST_ANY	(ST_NOT | ST_AUTH | ST_SEL)

struct imap_command {
	const char *name;
	unsigned states;
	bool uid;		/* may come as UID name */
	void (*fn)(struct imap_session *s, const struct imap_cmd *cmd);
};

static const struct imap_command imap_commands[] = {
	{ "CAPABILITY", ST_ANY, false, imap_cmd_capability },
	{ "NOOP", ST_ANY, false, imap_cmd_noop },
	{ "LOGOUT", ST_ANY, false, imap_cmd_logout },
	{ "ID", ST_ANY, false, imap_cmd_id },
	{ "STARTTLS", ST_NOT, false, imap_cmd_starttls },
	{ "LOGIN", ST_NOT, false, imap_cmd_login },
	{ "AUTHENTICATE", ST_NOT, false, imap_cmd_authenticate },
	{ "ENABLE", ST_AUTH, false, imap_cmd_enable },
	{ "SELECT", ST_AUTH | ST_SEL, false, imap_cmd_select },
	{ "EXAMINE", ST_AUTH | ST_SEL, false, imap_cmd_select },
	{ "LIST", ST_AUTH | ST_SEL, false, imap_cmd_list_ext },
	{ "XLIST", ST_AUTH | ST_SEL, false, imap_cmd_list_ext },
	{ "LSUB", ST_AUTH | ST_SEL, false, imap_cmd_list_ext },
	{ "STATUS", ST_AUTH | ST_SEL, false, imap_cmd_status },
	{ "NAMESPACE", ST_AUTH | ST_SEL, false, imap_cmd_namespace },
	{ "IDLE", ST_AUTH | ST_SEL, false, imap_cmd_idle },
	{ "NOTIFY", ST_AUTH | ST_SEL, false, imap_cmd_notify },
	{ "COMPRESS", ST_AUTH | ST_SEL, false, imap_cmd_compress },
	{ "CHECK", ST_SEL, false, imap_cmd_noop },
	{ "CLOSE", ST_SEL, false, imap_cmd_close },
	{ "UNSELECT", ST_SEL, false, imap_cmd_close },
	{ "FETCH", ST_SEL, true, imap_cmd_fetch },
	{ "SEARCH", ST_SEL, true, imap_cmd_search },
	{ "SORT", ST_SEL, true, imap_cmd_sort },
	{ "CANCELUPDATE", ST_SEL, false, imap_cmd_cancelupdate },
	{ "THREAD", ST_SEL, true, imap_cmd_thread },
	{ "GETQUOTAROOT", ST_AUTH | ST_SEL, false, imap_cmd_getquotaroot },
	{ "GETQUOTA", ST_AUTH | ST_SEL, false, imap_cmd_getquota },
	{ "SETQUOTA", ST_AUTH | ST_SEL, false, imap_cmd_setquota },
	{ "STORE", ST_SEL, true, imap_cmd_store },
	{ "EXPUNGE", ST_SEL, true, imap_cmd_expunge },
	{ "COPY", ST_SEL, true, imap_cmd_copy },
	{ "MOVE", ST_SEL, true, imap_cmd_copy },
	{ "APPEND", ST_AUTH | ST_SEL, false, imap_cmd_append },
	{ "CREATE", ST_AUTH | ST_SEL, false, imap_cmd_create_ext },
	{ "DELETE", ST_AUTH | ST_SEL, false, imap_cmd_delete },
	{ "RENAME", ST_AUTH | ST_SEL, false, imap_cmd_rename },
	{ "SUBSCRIBE", ST_AUTH | ST_SEL, false, imap_cmd_subscribe },
	{ "UNSUBSCRIBE", ST_AUTH | ST_SEL, false, imap_cmd_subscribe },
};

static const struct imap_command *
imap_command_find(const char *name)
{
	for (size_t i = 0; i < sizeof(imap_commands) /
	    sizeof(imap_commands[0]); i++)
		if (strcmp(imap_commands[i].name, name) == 0)
			return &imap_commands[i];
	return NULL;
}

/* Known IMAP commands this version does not serve yet: NO, not BAD. */
static bool
imap_command_known(const char *name)
{
	static const char *const later[] = {
		"ESEARCH", NULL
	};

	for (size_t i = 0; later[i] != NULL; i++)
		if (strcmp(later[i], name) == 0)
			return true;
	return false;
}

static unsigned
imap_parser_command_cb(void *ctx, const struct imap_cmd *cmd)
{
	struct imap_session *s = ctx;

	if (imap_command_find(cmd->name) == NULL &&
	    !imap_command_known(cmd->name))
		return IMAP_PARSER_CMD_UNKNOWN;
	/* Only a logged-in user may make us write a message to disk. */
	if (strcmp(cmd->name, "APPEND") == 0 && !cmd->uid &&
	    (s->state == IMAP_STATE_AUTH || s->state == IMAP_STATE_SELECTED))
		return IMAP_PARSER_CMD_STREAM;
	return 0;
}

static int
imap_parser_literal_start_cb(void *ctx, uint64_t size, bool literal8)
{
	return imap_append_literal_start(ctx, size, literal8);
}

static void
imap_parser_literal_data_cb(void *ctx, const unsigned char *data,
    size_t len)
{
	imap_append_literal_data(ctx, data, len);
}

static int
imap_parser_continuation_cb(void *ctx, uint64_t size)
{
	struct imap_session *s = ctx;

	(void)size;
	imap_out(s, "+ OK\r\n", 6);
	return 0;
}

static const struct imap_parser_callbacks imap_parser_cb = {
	.command = imap_parser_command_cb,
	.need_continuation = imap_parser_continuation_cb,
	.literal_start = imap_parser_literal_start_cb,
	.literal_data = imap_parser_literal_data_cb,
};

static void
imap_dispatch(struct imap_session *s, const struct imap_cmd *cmd)
{
	const struct imap_command *c = imap_command_find(cmd->name);

	if (c == NULL) {
		imap_tagged(s, "NO", "[CANNOT] %s is not supported yet",
		    cmd->name);
		return;
	}
	if ((c->states & (1u << s->state)) == 0) {
		imap_bad(s, s->state == IMAP_STATE_NOT_AUTH ?
		    "Log in first" : "Command not valid in this state");
		return;
	}
	if (cmd->uid && !c->uid) {
		imap_bad(s, "No UID form of this command");
		return;
	}
	s->bad = 0;
	c->fn(s, cmd);
	imap_notify_command_done(s, c->name);
}

static void
imap_parse_failed(struct imap_session *s, const struct imap_cmd *cmd)
{
	strlcpy(s->tag, cmd->tag != NULL ? cmd->tag : "*", sizeof(s->tag));
	if (cmd->error == IMAP_PARSE_ERR_REFUSED && imap_append_refused(s))
		return;
	imap_append_free(s);
	switch (cmd->error) {
	case IMAP_PARSE_ERR_UNKNOWN:
		imap_bad(s, "Unknown command");
		break;
	case IMAP_PARSE_ERR_TOOBIG: {
		char text[256];

		snprintf(text, sizeof(text), "[TOOBIG] %s",
		    cmd->error_msg != NULL ? cmd->error_msg : "Too long");
		imap_bad(s, text);
		break;
	}
	case IMAP_PARSE_ERR_FATAL:
		imap_bad(s, cmd->error_msg != NULL ? cmd->error_msg :
		    "Command cannot be read");
		imap_untagged(s, "BYE Cannot go on with this connection");
		imap_close_session(s);
		break;
	default:
		imap_bad(s, cmd->error_msg != NULL ? cmd->error_msg :
		    "Syntax error");
		break;
	}
}

/*
 * Input.
 */

/* Take one line (SASL response, DONE) out of data; 1 with *line_r, 0 for
 * more input. *used_r: bytes consumed. An over-long line is dropped and
 * returned as empty (the caller answers it as wrong). */
static int
imap_aux_line(struct imap_session *s, const unsigned char *data, size_t len,
    size_t *used_r, char **line_r, size_t *llen_r)
{
	const unsigned char *lf = memchr(data, '\n', len);
	size_t take = lf != NULL ? (size_t)(lf - data) + 1 : len;

	*used_r = take;
	if (!s->line_skipping && buf_append(&s->line, data, take) < 0) {
		explicit_bzero(s->line.data, s->line.len);
		buf_truncate(&s->line, 0);
		s->line_skipping = true;
	}
	if (lf == NULL)
		return 0;
	if (s->line_skipping) {
		s->line_skipping = false;
		buf_truncate(&s->line, 0);
	}
	while (s->line.len > 0 && (s->line.data[s->line.len - 1] == '\n' ||
	    s->line.data[s->line.len - 1] == '\r'))
		s->line.len--;
	buf_append_byte(&s->line, '\0');
	s->line.len--;
	*line_r = (char *)s->line.data != NULL ? (char *)s->line.data : "";
	*llen_r = s->line.len;
	return 1;
}

static bool
imap_blocked(const struct imap_session *s)
{
	return s->closed || s->waiting_auth || s->handed_over || s->tls_reset ||
	    s->fetch != NULL;
}

size_t
imap_session_input(struct imap_session *s, const unsigned char *data,
    size_t len)
{
	struct imap_cmd *cmd;
	size_t used = 0, n;
	char *line;
	size_t llen;
	int r;

	while (used < len && !imap_blocked(s)) {
		if (s->idling || s->sasl_mech != NULL) {
			if (imap_aux_line(s, data + used, len - used, &n,
			    &line, &llen) == 0) {
				used += n;
				continue;
			}
			used += n;
			if (s->idling)
				imap_idle_line(s, line);
			else
				imap_sasl_line(s, line, llen);
			explicit_bzero(s->line.data, s->line.len);
			buf_truncate(&s->line, 0);
			continue;
		}
		used += imap_parser_input(s->parser, data + used, len - used);
		r = imap_parser_next(s->parser, &cmd);
		if (r == 0)
			continue;
		if (r < 0) {
			imap_parse_failed(s, cmd);
			continue;
		}
		strlcpy(s->tag, cmd->tag, sizeof(s->tag));
		imap_dispatch(s, cmd);
	}
	if (s->tls_reset) {
		/* STARTTLS: the rest is dropped, never run in TLS. */
		return len;
	}
	return used;
}

/* The output drained: go on with what waits for it. */
static void
imap_run(struct imap_session *s)
{
	if (s->fetch != NULL && !s->closed)
		(void)imap_fetch_job_run(s);
	/* Notifications held while the response streamed. */
	imap_notify_flush(s);
}

void
imap_session_output_ready(struct imap_session *s)
{
	imap_notify_drained(s);
	imap_run(s);
}

bool
imap_session_waiting(const struct imap_session *s)
{
	return imap_blocked(s);
}

void
imap_session_tls_started(struct imap_session *s)
{
	s->set.secured = true;
	s->tls_reset = false;
}

void
imap_session_compress_started(struct imap_session *s)
{
	if (!s->handed_over || s->state == IMAP_STATE_NOT_AUTH ||
	    s->cb->start_compress == NULL)
		log_panic("imap_session_compress_started without COMPRESS");
	s->handed_over = false;
}

/*
 * Life.
 */

static struct imap_session *
imap_session_alloc(const struct imap_settings *set,
    const struct imap_callbacks *cb, void *ctx)
{
	struct imap_session *s = xcalloc(1, sizeof(*s));
	struct imap_parser_settings ps;

	s->set = *set;
	s->set.mechanisms = xstrdup(set->mechanisms != NULL ?
	    set->mechanisms : "");
	s->cb = cb;
	s->ctx = ctx;
	imap_parser_settings_of(s, &ps);
	s->parser = imap_parser_new(&ps, &imap_parser_cb, s);
	buf_init(&s->line, IMAP_AUX_LINE_MAX);
	buf_init(&s->out, SIZE_MAX);
	return s;
}

struct imap_session *
imap_session_new(const struct imap_settings *set,
    const struct imap_callbacks *cb, void *ctx)
{
	struct imap_session *s = imap_session_alloc(set, cb, ctx);

	s->state = IMAP_STATE_NOT_AUTH;
	return s;
}

struct imap_session *
imap_session_new_authenticated(const struct imap_settings *set,
    const struct imap_callbacks *cb, void *ctx, const char *user)
{
	struct imap_session *s = imap_session_alloc(set, cb, ctx);

	if (strlcpy(s->user, user, sizeof(s->user)) >= sizeof(s->user))
		log_panic("imap_session_new_authenticated: name too long");
	s->state = IMAP_STATE_AUTH;
	return s;
}

int
imap_session_login(struct imap_session *s, const struct user *u)
{
	const char *error;

	s->u = user_dup(u);
	if (store_open(s->u, &s->st, &error) < 0) {
		log_error("imap: user=<%s>, cannot open the mail store (%s)",
		    s->user, error);
		imap_untagged(s, "BYE [UNAVAILABLE] Mail store unavailable");
		imap_close_session(s);
		return -1;
	}
	/* Sent, Drafts, Trash, Junk, Archive for a new user. */
	if (s->set.default_folders)
		(void)imap_default_folders(s);
	return 0;
}

void
imap_session_free(struct imap_session **sp)
{
	struct imap_session *s = *sp;

	if (s == NULL)
		return;
	*sp = NULL;
	if (s->sasl_mech != NULL)
		imap_sasl_end(s, true);
	imap_fetch_job_free(&s->fetch);
	imap_append_free(s);
	imap_notify_free(s);
	imap_view_free(&s->view);
	imap_seqset_deinit(&s->searchres);
	store_close(&s->st);
	user_free(&s->u);
	imap_parser_free(&s->parser);
	if (s->line.data != NULL)
		explicit_bzero(s->line.data, s->line.len);
	buf_free(&s->line);
	buf_free(&s->out);
	free((char *)s->set.mechanisms);
	free(s);
}

void
imap_session_changed(struct imap_session *s)
{
	unsigned fetch;

	s->view.dirty = true;
	if (s->state != IMAP_STATE_SELECTED)
		return;
	if (s->idling)
		(void)imap_view_sync(s, true);
	else if (imap_notify_selected(s, &fetch) > 0 &&
	    imap_notify_can_send(s))
		/* NOTIFY SELECTED: at once, between commands too (RFC 5465
		 * 5.2, 5.3); SELECTED-DELAYED keeps expunges for a
		 * command. */
		(void)imap_view_sync(s, !imap_notify_selected_delayed(s));
}

void
imap_session_idle_release(struct imap_session *s)
{
	store_close(&s->st);
}

unsigned
imap_session_watches(struct imap_session *s, struct imap_watch out[2])
{
	char path[4096], *slash;
	const char *error;
	struct store *st;

	if (s->state != IMAP_STATE_SELECTED || s->u == NULL ||
	    (st = imap_store(s)) == NULL ||
	    store_folder_path(st, s->view.name, path, sizeof(path),
	    &error) < 0)
		return 0;
	if (store_location(st)->format == MAILLOC_MAILDIR) {
		if (strlen(path) + 5 > sizeof(s->watch_dirs[0]))
			return 0;
		strlcpy(s->watch_dirs[0], path, sizeof(s->watch_dirs[0]));
		strlcat(s->watch_dirs[0], "/new", sizeof(s->watch_dirs[0]));
		strlcpy(s->watch_dirs[1], path, sizeof(s->watch_dirs[1]));
		strlcat(s->watch_dirs[1], "/cur", sizeof(s->watch_dirs[1]));
		out[0].dir = s->watch_dirs[0];
		out[0].name = NULL;
		out[1].dir = s->watch_dirs[1];
		out[1].name = NULL;
		return 2;
	}
	/* mbox: its entry in its directory, so a rewrite is seen too. */
	if ((slash = strrchr(path, '/')) == NULL)
		return 0;
	strlcpy(s->watch_name, slash + 1, sizeof(s->watch_name));
	*slash = '\0';
	strlcpy(s->watch_dirs[0], path[0] != '\0' ? path : "/",
	    sizeof(s->watch_dirs[0]));
	out[0].dir = s->watch_dirs[0];
	out[0].name = s->watch_name;
	/* And the index: an mbox message's flags live there alone, so a
	 * STORE by another session changes no file of the mailbox. Any
	 * write to the user's index wakes the session, which syncs and
	 * finds out whether it concerned this folder. */
	if (strlcpy(s->watch_dirs[1], store_location(st)->index_dir,
	    sizeof(s->watch_dirs[1])) >= sizeof(s->watch_dirs[1]))
		return 1;
	out[1].dir = s->watch_dirs[1];
	out[1].name = "data.mdb";
	return 2;
}

enum imap_state
imap_session_state(const struct imap_session *s)
{
	return s->state;
}

void
imap_session_stats(const struct imap_session *s, struct imap_stats *st)
{
	*st = s->stats;
}
