/*
 * smtp_alias.c: aliases(5): the parser of /etc/aliases text, its compiler
 * into an LMDB file (loftctl newaliases) and the expansion of a local
 * part into delivery targets (aliases inside aliases, :include: files).
 *
 * The parser is a byte state machine over physical lines: it can be fed
 * any split of the file and holds at most one logical line
 * (SMTP_ALIAS_LINE_MAX). A compiled database stores, under the
 * lower-cased name, each value as one kind byte, its text and a NUL, so
 * expansion reads values straight from the map without parsing text; a
 * database is written once into a temporary file and renamed into place,
 * so it is opened without a lock file (MDB_NOLOCK): nobody ever writes
 * to a file a reader has open.
 *
 * Trusts: the source file only after checking its owner and mode; the
 * database as written by this module (a record that does not decode is
 * an error, not a crash); include files as far as their mode allows
 * (commands and files from one writable by others are refused); the
 * local part given to smtp_alias_expand not at all (it comes from SMTP).
 */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include "buf.h"
#include "compat/compat.h"
#include "conf.h"
#include "fsutil.h"
#include "log.h"
#include "xmalloc.h"
#include "smtp_alias.h"

/* The key that marks a loft alias database; a name never holds a control
 * byte, so it cannot collide. */
#define SMTP_ALIAS_FORMAT_KEY	"\001loft-alias-format"
#define SMTP_ALIAS_FORMAT	"1"
/* Record kind bytes. */
#define SMTP_ALIAS_REC_ADDRESS	'a'
#define SMTP_ALIAS_REC_NOEXPAND	'n'
#define SMTP_ALIAS_REC_COMMAND	'c'
#define SMTP_ALIAS_REC_FILE	'f'
#define SMTP_ALIAS_REC_INCLUDE	'i'
/* A record: at most a logical line of text plus a kind byte and a NUL
 * per value. */
#define SMTP_ALIAS_REC_MAX \
	(SMTP_ALIAS_LINE_MAX + 2 * SMTP_ALIAS_VALUES_MAX + 16)
#define SMTP_ALIAS_READ_CHUNK	65536
/* Bytes of a bad value or name shown in a message. */
#define SMTP_ALIAS_SHOW_MAX	80
/* Hand-computed: "\ooo" is the longest form of a byte, then "..." and
 * the NUL. */
#define SMTP_ALIAS_SHOW_SIZE	(SMTP_ALIAS_SHOW_MAX * 4 + 4)
#define SMTP_ALIAS_INCLUDE_PREFIX	":include:"
#define SMTP_ALIAS_WS		" \t\r"

static char smtp_alias_errbuf[1024];

static int smtp_alias_fail(const char **error_r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
smtp_alias_fail(const char **error_r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(smtp_alias_errbuf, sizeof(smtp_alias_errbuf), fmt, ap);
	va_end(ap);
	*error_r = smtp_alias_errbuf;
	return -1;
}

/* smtp_alias_show: len bytes of s for a message inside double quotes:
 * '"' and '\\' get a backslash, control and 8-bit bytes are written
 * \ooo (so text from a file cannot forge log lines), cut after
 * SMTP_ALIAS_SHOW_MAX bytes with "...". outsize: SMTP_ALIAS_SHOW_SIZE. */
static const char *
smtp_alias_show(const char *s, size_t len, char *out, size_t outsize)
{
	size_t n = len < SMTP_ALIAS_SHOW_MAX ? len : SMTP_ALIAS_SHOW_MAX, o = 0;

	if (outsize < SMTP_ALIAS_SHOW_SIZE)
		log_panic("smtp_alias_show: buffer of %zu bytes", outsize);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c >= 0x7f)
			o += (size_t)snprintf(out + o, outsize - o, "\\%03o",
			    c);
		else {
			if (c == '"' || c == '\\')
				out[o++] = '\\';
			out[o++] = (char)c;
		}
	}
	out[o] = '\0';
	if (n < len)
		strlcat(out, "...", outsize);
	return out;
}

static bool
smtp_alias_is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static bool
smtp_alias_is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

static void
smtp_alias_lower(char *s)
{
	for (; *s != '\0'; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

const char *
smtp_alias_kind_name(enum smtp_alias_kind kind)
{
	switch (kind) {
	case SMTP_ALIAS_ADDRESS:
		return "address";
	case SMTP_ALIAS_COMMAND:
		return "command";
	case SMTP_ALIAS_FILE:
		return "file";
	case SMTP_ALIAS_INCLUDE:
		return "include";
	case SMTP_ALIAS_ERROR:
		return "error";
	}
	return "?";
}

/* ---- Values ---- */

/* smtp_alias_quoted_end: the index of the '"' closing the quoted string
 * that starts at s[0], or len if it is not closed. */
static size_t
smtp_alias_quoted_end(const char *s, size_t len)
{
	size_t i;

	for (i = 1; i < len; i++) {
		if (s[i] == '\\' && i + 1 < len)
			i++;
		else if (s[i] == '"')
			return i;
	}
	return len;
}

/* smtp_alias_unquote: the content of the quoted string s[0..end] (end
 * is the closing quote), backslashes removed; newly allocated. */
static char *
smtp_alias_unquote(const char *s, size_t end)
{
	char *out = xmalloc(end), *o = out;

	for (size_t i = 1; i < end; i++) {
		if (s[i] == '\\' && i + 1 < end)
			i++;
		*o++ = s[i];
	}
	*o = '\0';
	return out;
}

static bool
smtp_alias_is_atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c >= 0x80 ||
	    strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* smtp_alias_dot_atom: s[0..len) is atext runs separated by single dots. */
static bool
smtp_alias_dot_atom(const char *s, size_t len)
{
	if (len == 0 || s[0] == '.' || s[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '.') {
			if (s[i + 1] == '.')
				return false;
		} else if (!smtp_alias_is_atext((unsigned char)s[i]))
			return false;
	}
	return true;
}

/* smtp_alias_domain_ok: a host name (labels of letters, digits, '-',
 * '_', 8-bit bytes) or an address literal "[...]". */
static bool
smtp_alias_domain_ok(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > 255)
		return false;
	if (s[0] == '[') {
		if (len < 3 || s[len - 1] != ']')
			return false;
		/* The literal's own syntax is the router's business; here
		 * only what cannot hide a separator. */
		for (i = 1; i < len - 1; i++)
			if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' &&
			    s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
			    s[i] == ':' || s[i] == '.'))
				return false;
		return true;
	}
	if (s[0] == '.' || s[len - 1] == '.')
		return false;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.' ? s[i + 1] == '.' : !((c >= 'a' && c <= 'z') ||
		    (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c >= 0x80))
			return false;
	}
	return true;
}

static void
smtp_alias_value_set(struct smtp_alias_value *v, enum smtp_alias_kind kind,
    bool noexpand, const char *text, size_t len)
{
	v->kind = kind;
	v->noexpand = noexpand;
	v->text = xstrndup(text, len);
}

/* smtp_alias_address: s[0..len) as an address, unquoted: "name" or
 * "local@domain" (quoted_local: the local part s[0..quoted_local) was a
 * quoted string, already checked). The domain is lower-cased. */
static int
smtp_alias_address(const char *s, size_t len, size_t quoted_local,
    struct smtp_alias_value *v, const char **why_r)
{
	const char *at = quoted_local > 0 ? s + quoted_local :
	    memchr(s, '@', len);
	size_t llen = at != NULL ? (size_t)(at - s) : len;

	if (memchr(s + quoted_local, ' ', len - quoted_local) != NULL ||
	    memchr(s + quoted_local, '\t', len - quoted_local) != NULL ||
	    memchr(s + quoted_local, '\r', len - quoted_local) != NULL)
		return *why_r = "white space in an address (a missing comma?)",
		    -1;
	if (llen > SMTP_ALIAS_LOCAL_MAX || len > SMTP_ALIAS_ADDRESS_MAX)
		return *why_r = "address too long", -1;
	if (quoted_local == 0 && !smtp_alias_dot_atom(s, llen))
		return *why_r = "bad address", -1;
	if (at == NULL) {
		smtp_alias_value_set(v, SMTP_ALIAS_ADDRESS, false, s, len);
		return 0;
	}
	if (!smtp_alias_domain_ok(at + 1, len - llen - 1))
		return *why_r = "bad domain in an address", -1;
	smtp_alias_value_set(v, SMTP_ALIAS_ADDRESS, false, s, len);
	smtp_alias_lower(v->text + llen);
	return 0;
}

/* smtp_alias_special: text (unquoted, len bytes) starting with '|', '/'
 * or ":include:" as a command, file or include; 1 done, 0 not one of
 * them, -1 bad. quoted: it was written in double quotes (white space is
 * then allowed in a path). */
static int
smtp_alias_special(const char *t, size_t len, bool quoted,
    struct smtp_alias_value *v, const char **why_r)
{
	size_t plen = sizeof(SMTP_ALIAS_INCLUDE_PREFIX) - 1;
	bool ws = strcspn(t, SMTP_ALIAS_WS) < len;

	if (t[0] == '|') {
		if (len == 1)
			return *why_r = "empty command", -1;
		smtp_alias_value_set(v, SMTP_ALIAS_COMMAND, false, t + 1,
		    len - 1);
		return 1;
	}
	if (t[0] == '/') {
		if (ws && !quoted)
			return *why_r = "white space in a file name "
			    "(quote it, or a missing comma?)", -1;
		smtp_alias_value_set(v, SMTP_ALIAS_FILE, false, t, len);
		return 1;
	}
	if (len >= plen && strncasecmp(t, SMTP_ALIAS_INCLUDE_PREFIX,
	    plen) == 0) {
		if (len == plen || t[plen] != '/')
			return *why_r = "an include file needs an absolute "
			    "path", -1;
		if (ws && !quoted)
			return *why_r = "white space in an include file name",
			    -1;
		smtp_alias_value_set(v, SMTP_ALIAS_INCLUDE, false, t + plen,
		    len - plen);
		return 1;
	}
	return 0;
}

/* smtp_alias_quoted_value: an item starting with '"': a quoted command,
 * file, include or local name, or "local part"@domain. */
static int
smtp_alias_quoted_value(const char *s, size_t len,
    struct smtp_alias_value *v, const char **why_r)
{
	size_t end = smtp_alias_quoted_end(s, len);
	char *inner;
	int ret;

	if (end + 1 < len) {
		if (s[end + 1] != '@')
			return *why_r = "text after a quoted string", -1;
		return smtp_alias_address(s, len, end + 1, v, why_r);
	}
	inner = smtp_alias_unquote(s, end);
	if (inner[0] == '\0')
		ret = (*why_r = "empty quoted string", -1);
	else if ((ret = smtp_alias_special(inner, strlen(inner), true, v,
	    why_r)) == 0) {
		/* A quoted local name: kept unquoted, as the SMTP side gives
		 * local parts (smtp_path.local). */
		if (strchr(inner, '@') != NULL)
			ret = (*why_r = "'@' inside a quoted local name", -1);
		else if (strlen(inner) > SMTP_ALIAS_LOCAL_MAX)
			ret = (*why_r = "address too long", -1);
		else
			smtp_alias_value_set(v, SMTP_ALIAS_ADDRESS, false,
			    inner, strlen(inner));
	}
	free(inner);
	return ret < 0 ? -1 : 0;
}

/* smtp_alias_classify: one item (trimmed, non-empty, quotes balanced). */
static int
smtp_alias_classify(const char *s, size_t len, struct smtp_alias_value *v,
    const char **why_r)
{
	char *t;
	int ret;

	for (size_t i = 0; i < len; i++)
		if (smtp_alias_is_ctl((unsigned char)s[i]) && s[i] != '\t' &&
		    s[i] != '\r')
			return *why_r = s[i] == '\0' ? "NUL byte" :
			    "control character", -1;
	if (s[0] == '"')
		return smtp_alias_quoted_value(s, len, v, why_r);
	if (s[0] == '\\') {
		if (len == 1 || memchr(s, '@', len) != NULL ||
		    !smtp_alias_dot_atom(s + 1, len - 1) ||
		    len - 1 > SMTP_ALIAS_LOCAL_MAX)
			return *why_r = "bad local name after '\\'", -1;
		smtp_alias_value_set(v, SMTP_ALIAS_ADDRESS, true, s + 1,
		    len - 1);
		return 0;
	}
	if (s[0] == '<') {
		if (len < 3 || s[len - 1] != '>')
			return *why_r = "bad address in angle brackets", -1;
		s++;
		len -= 2;
		if (s[0] == '"')
			return smtp_alias_quoted_value(s, len, v, why_r);
		return smtp_alias_address(s, len, 0, v, why_r);
	}
	t = xstrndup(s, len);
	ret = smtp_alias_special(t, len, false, v, why_r);
	free(t);
	if (ret != 0)
		return ret < 0 ? -1 : 0;
	return smtp_alias_address(s, len, 0, v, why_r);
}

/* smtp_alias_item_end: from s[pos], the end of the item: the first ','
 * outside double quotes, or len; SIZE_MAX if a quote is not closed. */
static size_t
smtp_alias_item_end(const char *s, size_t len, size_t pos)
{
	for (; pos < len && s[pos] != ','; pos++) {
		if (s[pos] != '"')
			continue;
		pos += smtp_alias_quoted_end(s + pos, len - pos);
		if (pos >= len)
			return SIZE_MAX;
	}
	return pos;
}

void
smtp_alias_values_free(struct smtp_alias_value *values, size_t count)
{
	if (values == NULL)
		return;
	for (size_t i = 0; i < count; i++)
		free(values[i].text);
	free(values);
}

int
smtp_alias_parse_values(const char *text, size_t len, size_t max,
    struct smtp_alias_value **values_r, size_t *count_r,
    const char **error_r)
{
	struct smtp_alias_value *v = NULL;
	size_t count = 0, alloc = 0, pos = 0, end, stop;
	const char *why;
	char show[SMTP_ALIAS_SHOW_SIZE];

	for (;;) {
		while (pos < len && (smtp_alias_is_ws((unsigned char)text[pos])
		    || text[pos] == ','))
			pos++;
		if (pos == len)
			break;
		if ((end = smtp_alias_item_end(text, len, pos)) == SIZE_MAX) {
			smtp_alias_values_free(v, count);
			return smtp_alias_fail(error_r, "unbalanced quote in "
			    "\"%s\"", smtp_alias_show(text + pos, len - pos,
			    show, sizeof(show)));
		}
		for (stop = end; smtp_alias_is_ws((unsigned char)
		    text[stop - 1]); stop--)
			;
		if (count == max) {
			smtp_alias_values_free(v, count);
			return smtp_alias_fail(error_r, "more than %zu values",
			    max);
		}
		if (count == alloc) {
			alloc = alloc == 0 ? 8 : alloc * 2;
			v = xreallocarray(v, alloc, sizeof(*v));
		}
		if (smtp_alias_classify(text + pos, stop - pos, &v[count],
		    &why) < 0) {
			smtp_alias_values_free(v, count);
			return smtp_alias_fail(error_r, "%s: \"%s\"", why,
			    smtp_alias_show(text + pos, stop - pos, show,
			    sizeof(show)));
		}
		count++;
		pos = end;
	}
	*values_r = v;
	*count_r = count;
	return 0;
}

/* ---- The parser ---- */

enum smtp_alias_pstate {
	SMTP_ALIAS_P_START,	/* at the first byte of a physical line */
	SMTP_ALIAS_P_BLANK,	/* only white space on this line so far */
	SMTP_ALIAS_P_TEXT,	/* a line that belongs to the pending entry */
	SMTP_ALIAS_P_SKIP	/* a comment, or a line of a stray entry */
};

struct smtp_alias_parser {
	char *name;			/* owned; for messages */
	smtp_alias_entry_cb *entry_cb;
	smtp_alias_warning_cb *warning_cb;
	void *ctx;
	enum smtp_alias_pstate state;
	unsigned int line;		/* the physical line being read */
	unsigned int start;		/* first line of the pending entry;
					   0: none */
	struct buf text;		/* the pending logical line */
	size_t blanks;			/* leading blanks held back */
	bool too_long;			/* bytes lost past the limit */
	bool nul;			/* a NUL byte in the pending entry */
	bool stray;			/* continuation lines of nothing */
	bool finished;
};

struct smtp_alias_parser *
smtp_alias_parser_new(const char *name, smtp_alias_entry_cb *entry_cb,
    smtp_alias_warning_cb *warning_cb, void *ctx)
{
	struct smtp_alias_parser *p = xcalloc(1, sizeof(*p));

	p->name = xstrdup(name);
	p->entry_cb = entry_cb;
	p->warning_cb = warning_cb;
	p->ctx = ctx;
	p->line = 1;
	buf_init(&p->text, SMTP_ALIAS_LINE_MAX);
	return p;
}

void
smtp_alias_parser_free(struct smtp_alias_parser **pp)
{
	struct smtp_alias_parser *p = *pp;

	if (p == NULL)
		return;
	buf_free(&p->text);
	free(p->name);
	free(p);
	*pp = NULL;
}

static void smtp_alias_warn(struct smtp_alias_parser *p, unsigned int line,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
smtp_alias_warn(struct smtp_alias_parser *p, unsigned int line,
    const char *fmt, ...)
{
	char what[1024], file[256], msg[1400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(msg, sizeof(msg), "%s:%u: %s",
	    log_escape(p->name, file, sizeof(file)), line, what);
	p->warning_cb(line, msg, p->ctx);
}

/* smtp_alias_parse_name: the name at the start of an entry and the ':'
 * after it; *pos_r is then just past the ':'. */
static int
smtp_alias_parse_name(const char *s, size_t len, char *name,
    size_t *pos_r, const char **why_r)
{
	size_t i = 0, n = 0, end;

	if (s[0] == '"') {
		if ((end = smtp_alias_quoted_end(s, len)) == len)
			return *why_r = "unbalanced quote in the name", -1;
		for (i = 1; i < end; i++) {
			if (s[i] == '\\' && i + 1 < end)
				i++;
			if (n == SMTP_ALIAS_NAME_MAX)
				return *why_r = "name too long", -1;
			name[n++] = s[i];
		}
		i = end + 1;
	} else {
		for (; i < len && s[i] != ':' && s[i] != '"' &&
		    !smtp_alias_is_ws((unsigned char)s[i]); i++) {
			if (n == SMTP_ALIAS_NAME_MAX)
				return *why_r = "name too long", -1;
			name[n++] = s[i];
		}
	}
	name[n] = '\0';
	if (n == 0)
		return *why_r = "empty name", -1;
	for (size_t k = 0; k < n; k++) {
		if (smtp_alias_is_ctl((unsigned char)name[k]))
			return *why_r = "control character in the name", -1;
		if (name[k] == '@')
			return *why_r = "a name has no domain ('@')", -1;
	}
	while (i < len && smtp_alias_is_ws((unsigned char)s[i]))
		i++;
	if (i == len || s[i] != ':')
		return *why_r = "missing ':' after the name", -1;
	smtp_alias_lower(name);
	*pos_r = i + 1;
	return 0;
}

/* smtp_alias_parse_entry: one complete logical line. */
static void
smtp_alias_parse_entry(struct smtp_alias_parser *p, const char *s,
    size_t len)
{
	char name[SMTP_ALIAS_NAME_MAX + 1], show[SMTP_ALIAS_SHOW_SIZE];
	struct smtp_alias_entry e;
	struct smtp_alias_value *v;
	const char *why;
	size_t pos, count;

	if (smtp_alias_parse_name(s, len, name, &pos, &why) < 0) {
		smtp_alias_warn(p, p->start, "%s: \"%s\": entry skipped", why,
		    smtp_alias_show(s, len, show, sizeof(show)));
		return;
	}
	if (smtp_alias_parse_values(s + pos, len - pos, SMTP_ALIAS_VALUES_MAX,
	    &v, &count, &why) < 0) {
		smtp_alias_warn(p, p->start, "alias \"%s\": %s: entry skipped",
		    smtp_alias_show(name, strlen(name), show, sizeof(show)),
		    why);
		return;
	}
	if (count == 0) {
		smtp_alias_warn(p, p->start, "alias \"%s\": no value: entry "
		    "skipped", smtp_alias_show(name, strlen(name), show,
		    sizeof(show)));
		return;
	}
	e.name = name;
	e.line = p->start;
	e.values = v;
	e.count = count;
	p->entry_cb(&e, p->ctx);
	smtp_alias_values_free(v, count);
}

/* smtp_alias_flush: the pending entry is complete. */
static void
smtp_alias_flush(struct smtp_alias_parser *p)
{
	if (p->start == 0)
		return;
	if (p->nul)
		smtp_alias_warn(p, p->start, "NUL byte in the entry: entry "
		    "skipped");
	else if (p->too_long)
		smtp_alias_warn(p, p->start, "entry longer than %d bytes: "
		    "entry skipped", SMTP_ALIAS_LINE_MAX);
	else
		smtp_alias_parse_entry(p, buf_cstr(&p->text), p->text.len);
	buf_truncate(&p->text, 0);
	p->start = 0;
	p->nul = p->too_long = false;
}

static void
smtp_alias_append(struct smtp_alias_parser *p, unsigned char c)
{
	if (c == '\0')
		p->nul = true;
	else if (!p->too_long && buf_append_byte(&p->text, c) < 0)
		p->too_long = true;
}

/* smtp_alias_line_start: the first byte of a physical line. */
static void
smtp_alias_line_start(struct smtp_alias_parser *p, unsigned char c)
{
	if (c == '\n')
		p->line++;
	else if (smtp_alias_is_ws(c)) {
		p->blanks = 1;
		p->state = SMTP_ALIAS_P_BLANK;
	} else if (c == '#')
		p->state = SMTP_ALIAS_P_SKIP;
	else {
		smtp_alias_flush(p);
		p->stray = false;
		p->start = p->line;
		smtp_alias_append(p, c);
		p->state = SMTP_ALIAS_P_TEXT;
	}
}

/* smtp_alias_continue: the first non-blank byte of an indented line. */
static void
smtp_alias_continue(struct smtp_alias_parser *p, unsigned char c)
{
	if (p->start == 0) {
		if (!p->stray)
			smtp_alias_warn(p, p->line, "continuation line "
			    "without an entry above: skipped");
		p->stray = true;
		p->state = SMTP_ALIAS_P_SKIP;
		return;
	}
	/* The leading white space is kept as spaces: it separates, and
	 * counts toward the logical line's length. */
	for (; p->blanks > 0; p->blanks--)
		smtp_alias_append(p, ' ');
	smtp_alias_append(p, c);
	p->state = SMTP_ALIAS_P_TEXT;
}

static void
smtp_alias_byte(struct smtp_alias_parser *p, unsigned char c)
{
	switch (p->state) {
	case SMTP_ALIAS_P_START:
		smtp_alias_line_start(p, c);
		break;
	case SMTP_ALIAS_P_BLANK:
		if (c == '\n') {
			p->line++;
			p->state = SMTP_ALIAS_P_START;
		} else if (smtp_alias_is_ws(c))
			p->blanks++;
		else if (c == '#')
			p->state = SMTP_ALIAS_P_SKIP;
		else
			smtp_alias_continue(p, c);
		break;
	case SMTP_ALIAS_P_TEXT:
		if (c == '\n') {
			p->line++;
			p->state = SMTP_ALIAS_P_START;
		} else
			smtp_alias_append(p, c);
		break;
	case SMTP_ALIAS_P_SKIP:
		if (c == '\n') {
			p->line++;
			p->state = SMTP_ALIAS_P_START;
		}
		break;
	}
}

void
smtp_alias_parser_feed(struct smtp_alias_parser *p,
    const unsigned char *data, size_t len)
{
	if (p->finished)
		log_panic("smtp_alias_parser_feed after finish");
	for (size_t i = 0; i < len; i++)
		smtp_alias_byte(p, data[i]);
}

void
smtp_alias_parser_finish(struct smtp_alias_parser *p)
{
	if (p->finished)
		log_panic("smtp_alias_parser_finish twice");
	smtp_alias_flush(p);
	p->finished = true;
}

/* ---- Records: the stored form of a value list ---- */

static char
smtp_alias_rec_kind(const struct smtp_alias_value *v)
{
	switch (v->kind) {
	case SMTP_ALIAS_ADDRESS:
		return v->noexpand ? SMTP_ALIAS_REC_NOEXPAND :
		    SMTP_ALIAS_REC_ADDRESS;
	case SMTP_ALIAS_COMMAND:
		return SMTP_ALIAS_REC_COMMAND;
	case SMTP_ALIAS_FILE:
		return SMTP_ALIAS_REC_FILE;
	case SMTP_ALIAS_INCLUDE:
		return SMTP_ALIAS_REC_INCLUDE;
	case SMTP_ALIAS_ERROR:
		break;
	}
	log_panic("smtp_alias_rec_kind: kind %d", (int)v->kind);
}

/* smtp_alias_rec_encode: values into b (emptied first). */
static int
smtp_alias_rec_encode(const struct smtp_alias_value *v, size_t count,
    struct buf *b)
{
	buf_truncate(b, 0);
	for (size_t i = 0; i < count; i++) {
		if (buf_append_byte(b, (unsigned char)smtp_alias_rec_kind(
		    &v[i])) < 0 || buf_append(b, v[i].text,
		    strlen(v[i].text) + 1) < 0)
			return -1;
	}
	return 0;
}

/* A decoded value: text points into the record (valid during the read
 * transaction). */
struct smtp_alias_rec {
	enum smtp_alias_kind kind;
	bool noexpand;
	const char *text;
};

/* smtp_alias_rec_next: the value at *pos of the record data[0..len);
 * 1 with *r and *pos advanced, 0 at the end, -1 if the record is bad. */
static int
smtp_alias_rec_next(const unsigned char *data, size_t len, size_t *pos,
    struct smtp_alias_rec *r)
{
	const unsigned char *nul;

	if (*pos == len)
		return 0;
	if (len - *pos < 3 || (nul = memchr(data + *pos + 1, '\0',
	    len - *pos - 1)) == NULL || nul == data + *pos + 1)
		return -1;
	r->noexpand = false;
	switch (data[*pos]) {
	case SMTP_ALIAS_REC_NOEXPAND:
		r->noexpand = true;
		/* FALLTHROUGH */
	case SMTP_ALIAS_REC_ADDRESS:
		r->kind = SMTP_ALIAS_ADDRESS;
		break;
	case SMTP_ALIAS_REC_COMMAND:
		r->kind = SMTP_ALIAS_COMMAND;
		break;
	case SMTP_ALIAS_REC_FILE:
		r->kind = SMTP_ALIAS_FILE;
		break;
	case SMTP_ALIAS_REC_INCLUDE:
		r->kind = SMTP_ALIAS_INCLUDE;
		break;
	default:
		return -1;
	}
	r->text = (const char *)data + *pos + 1;
	*pos = (size_t)(nul - data) + 1;
	return 1;
}

/* ---- Compiling ---- */

int
smtp_alias_item_paths(const char *item, char **source_r, char **db_r,
    const char **error_r)
{
	const char *path = item;
	char show[SMTP_ALIAS_SHOW_SIZE];

	if (strncmp(item, "lmdb:", 5) == 0)
		path = item + 5;
	else if (strncmp(item, "hash:", 5) == 0)
		path = item + 5;
	if (path[0] != '/' || path[1] == '\0' ||
	    path[strlen(path) - 1] == '/')
		return smtp_alias_fail(error_r, "bad alias table \"%s\": "
		    "expected lmdb:/path, hash:/path or /path",
		    smtp_alias_show(item, strlen(item), show, sizeof(show)));
	*source_r = xstrdup(path);
	*db_r = xasprintf("%s.lmdb", path);
	return 0;
}

/* smtp_alias_source_open: open source and check who could have written
 * it; 0 with *fd_r and *size_r, or -1. */
static int
smtp_alias_source_open(const char *source, int *fd_r, off_t *size_r,
    const char **error_r)
{
	struct stat st;
	int fd;

	if ((fd = open(source, O_RDONLY | O_NOCTTY | O_NONBLOCK |
	    O_CLOEXEC)) < 0)
		return smtp_alias_fail(error_r, "open %s: %s", source,
		    strerror(errno));
	if (fstat(fd, &st) < 0) {
		close(fd);
		return smtp_alias_fail(error_r, "fstat %s: %s", source,
		    strerror(errno));
	}
	*fd_r = fd;
	*size_r = st.st_size;
	if (!S_ISREG(st.st_mode))
		smtp_alias_fail(error_r, "%s: not a regular file", source);
	else if (st.st_uid != 0 && st.st_uid != geteuid())
		smtp_alias_fail(error_r, "%s: owned by uid %lu, neither root "
		    "nor uid %lu: refused", source, (unsigned long)st.st_uid,
		    (unsigned long)geteuid());
	else if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
		smtp_alias_fail(error_r, "%s: writable by group or others "
		    "(mode %03o): refused", source,
		    (unsigned int)(st.st_mode & 0777));
	else if (st.st_size > SMTP_ALIAS_SOURCE_MAX)
		smtp_alias_fail(error_r, "%s: larger than %d bytes", source,
		    SMTP_ALIAS_SOURCE_MAX);
	else
		return 0;
	close(fd);
	return -1;
}

struct smtp_alias_build {
	const char *source;	/* for messages */
	MDB_txn *txn;
	MDB_dbi dbi;
	struct buf rec;
	unsigned int entries, warnings;
	int rc;			/* the first LMDB error, 0 if none */
};

static void
smtp_alias_build_warning(unsigned int line, const char *msg, void *ctx)
{
	struct smtp_alias_build *b = ctx;

	(void)line;
	log_warning("%s", msg);
	b->warnings++;
}

static void
smtp_alias_build_entry(const struct smtp_alias_entry *e, void *ctx)
{
	struct smtp_alias_build *b = ctx;
	char show[SMTP_ALIAS_SHOW_SIZE], file[256];
	MDB_val k, v;
	int rc;

	if (b->rc != 0)
		return;
	if (smtp_alias_rec_encode(e->values, e->count, &b->rec) < 0)
		log_panic("smtp_alias: record over SMTP_ALIAS_REC_MAX");
	k.mv_data = (void *)e->name;
	k.mv_size = strlen(e->name);
	v.mv_data = b->rec.data;
	v.mv_size = b->rec.len;
	rc = mdb_put(b->txn, b->dbi, &k, &v, MDB_NOOVERWRITE);
	if (rc == 0)
		b->entries++;
	else if (rc == MDB_KEYEXIST) {
		log_warning("%s:%u: duplicate alias \"%s\": ignored, the "
		    "first one wins", log_escape(b->source, file,
		    sizeof(file)), e->line, smtp_alias_show(e->name,
		    k.mv_size, show, sizeof(show)));
		b->warnings++;
	} else
		b->rc = rc;
}

/* smtp_alias_build_read: feed the whole source to a parser. */
static int
smtp_alias_build_read(int fd, const char *source, struct smtp_alias_build *b,
    const char **error_r)
{
	struct smtp_alias_parser *p;
	unsigned char *chunk = xmalloc(SMTP_ALIAS_READ_CHUNK);
	size_t total = 0;
	ssize_t n;
	int ret = 0;

	p = smtp_alias_parser_new(source, smtp_alias_build_entry,
	    smtp_alias_build_warning, b);
	while ((n = read(fd, chunk, SMTP_ALIAS_READ_CHUNK)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = smtp_alias_fail(error_r, "read %s: %s", source,
			    strerror(errno));
			break;
		}
		if ((total += (size_t)n) > SMTP_ALIAS_SOURCE_MAX) {
			ret = smtp_alias_fail(error_r, "%s: larger than %d "
			    "bytes", source, SMTP_ALIAS_SOURCE_MAX);
			break;
		}
		smtp_alias_parser_feed(p, chunk, (size_t)n);
	}
	if (ret == 0)
		smtp_alias_parser_finish(p);
	smtp_alias_parser_free(&p);
	free(chunk);
	return ret;
}

/* smtp_alias_build_txn: fill the write transaction b->txn; 0 (an LMDB
 * error, MDB_MAP_FULL among them, is left in b->rc) or -1. */
static int
smtp_alias_build_txn(int src, const char *source, struct smtp_alias_build *b,
    const char **error_r)
{
	MDB_val k = { sizeof(SMTP_ALIAS_FORMAT_KEY) - 1,
	    (void *)SMTP_ALIAS_FORMAT_KEY };
	MDB_val v = { sizeof(SMTP_ALIAS_FORMAT) - 1,
	    (void *)SMTP_ALIAS_FORMAT };
	int rc;

	if ((rc = mdb_dbi_open(b->txn, NULL, 0, &b->dbi)) != 0 ||
	    (rc = mdb_put(b->txn, b->dbi, &k, &v, 0)) != 0) {
		b->rc = rc;
		return 0;
	}
	if (lseek(src, 0, SEEK_SET) < 0)
		return smtp_alias_fail(error_r, "lseek %s: %s", source,
		    strerror(errno));
	return smtp_alias_build_read(src, source, b, error_r);
}

/* smtp_alias_build_env: one attempt at writing the database into the
 * (empty) file tmp with a map of mapsize bytes. Returns 0, -1 with
 * *error_r, or 1 if the map was too small. */
static int
smtp_alias_build_env(int src, const char *source, const char *tmp,
    size_t mapsize, struct smtp_alias_build *b, const char **error_r)
{
	MDB_env *env;
	int rc, ret;

	b->entries = b->warnings = 0;
	b->rc = 0;
	if ((rc = mdb_env_create(&env)) != 0)
		return smtp_alias_fail(error_r, "mdb_env_create: %s",
		    mdb_strerror(rc));
	if ((rc = mdb_env_set_mapsize(env, mapsize)) != 0 ||
	    (rc = mdb_env_open(env, tmp, MDB_NOSUBDIR | MDB_NOLOCK,
	    0644)) != 0 || (rc = mdb_txn_begin(env, NULL, 0, &b->txn)) != 0) {
		mdb_env_close(env);
		return smtp_alias_fail(error_r, "%s: %s", tmp,
		    mdb_strerror(rc));
	}
	ret = smtp_alias_build_txn(src, source, b, error_r);
	if (ret == 0 && b->rc == 0)
		b->rc = mdb_txn_commit(b->txn);
	else
		mdb_txn_abort(b->txn);
	b->txn = NULL;
	mdb_env_close(env);
	if (ret < 0)
		return -1;
	if (b->rc == MDB_MAP_FULL)
		return 1;
	if (b->rc != 0)
		return smtp_alias_fail(error_r, "%s: %s", tmp,
		    mdb_strerror(b->rc));
	return 0;
}

/* smtp_alias_build: write the database into the temporary file (fd
 * tmpfd), growing the map on MDB_MAP_FULL. */
static int
smtp_alias_build(int src, off_t size, const char *source, int tmpfd,
    const char *tmp, struct smtp_alias_build *b, const char **error_r)
{
	/* Room for the worst case of small entries in half-full pages;
	 * the file only takes the pages written. */
	size_t mapsize = (size_t)size * 10 + 1024 * 1024;
	int ret;

	for (int tries = 0; tries < 4; tries++, mapsize *= 2) {
		if (ftruncate(tmpfd, 0) < 0)
			return smtp_alias_fail(error_r, "ftruncate %s: %s",
			    tmp, strerror(errno));
		if ((ret = smtp_alias_build_env(src, source, tmp, mapsize, b,
		    error_r)) <= 0)
			return ret;
	}
	return smtp_alias_fail(error_r, "%s: %s", tmp,
	    mdb_strerror(MDB_MAP_FULL));
}

/* smtp_alias_install: the built temporary file becomes db_path. */
static int
smtp_alias_install(int tmpfd, const char *tmp, const char *db_path,
    const char **error_r)
{
	if (fchmod(tmpfd, 0644) < 0 || fsync(tmpfd) < 0)
		return smtp_alias_fail(error_r, "%s: %s", tmp,
		    strerror(errno));
	if (rename(tmp, db_path) < 0)
		return smtp_alias_fail(error_r, "rename %s to %s: %s", tmp,
		    db_path, strerror(errno));
	if (fsutil_fsync_parent(db_path) < 0)
		log_warning("fsync of the directory of %s: %s", db_path,
		    strerror(errno));
	return 0;
}

int
smtp_alias_compile(const char *source, const char *db_path,
    unsigned int *entries_r, unsigned int *warnings_r, const char **error_r)
{
	struct smtp_alias_build b;
	char *tmp;
	off_t size = 0;
	int src = -1, tmpfd, ret;

	if (smtp_alias_source_open(source, &src, &size, error_r) < 0)
		return -1;
	tmp = xasprintf("%s.tmpXXXXXX", db_path);
	if ((tmpfd = mkstemp(tmp)) < 0) {
		ret = smtp_alias_fail(error_r, "mkstemp %s: %s", tmp,
		    strerror(errno));
		close(src);
		free(tmp);
		return ret;
	}
	memset(&b, 0, sizeof(b));
	b.source = source;
	buf_init(&b.rec, SMTP_ALIAS_REC_MAX);
	ret = smtp_alias_build(src, size, source, tmpfd, tmp, &b, error_r);
	if (ret == 0 && b.entries == 0 && b.warnings > 0)
		ret = smtp_alias_fail(error_r, "%s: no valid entry (%u "
		    "skipped): %s not replaced", source, b.warnings, db_path);
	if (ret == 0)
		ret = smtp_alias_install(tmpfd, tmp, db_path, error_r);
	if (ret < 0)
		unlink(tmp);
	else {
		if (entries_r != NULL)
			*entries_r = b.entries;
		if (warnings_r != NULL)
			*warnings_r = b.warnings;
	}
	close(tmpfd);
	close(src);
	buf_free(&b.rec);
	free(tmp);
	return ret;
}

/* ---- Opening ---- */

struct smtp_alias_db {
	char *path;		/* owned */
	MDB_env *env;		/* owned */
	MDB_dbi dbi;
	uid_t uid;		/* the file's owner */
	dev_t dev;		/* which file is open, for refresh */
	ino_t ino;
};

struct smtp_alias_map {
	struct smtp_alias_db *dbs;	/* owned; searched in order */
	size_t count;
};

/* smtp_alias_db_check: the opened file is safe and is ours. */
static int
smtp_alias_db_check(struct smtp_alias_db *db, const char **error_r)
{
	MDB_val k = { sizeof(SMTP_ALIAS_FORMAT_KEY) - 1,
	    (void *)SMTP_ALIAS_FORMAT_KEY }, v;
	struct stat st;
	MDB_txn *txn;
	int fd, rc;

	if ((rc = mdb_env_get_fd(db->env, &fd)) != 0 || fstat(fd, &st) < 0)
		return smtp_alias_fail(error_r, "%s: %s", db->path,
		    rc != 0 ? mdb_strerror(rc) : strerror(errno));
	if (!S_ISREG(st.st_mode) || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
		return smtp_alias_fail(error_r, "%s: not a regular file, or "
		    "writable by group or others: refused", db->path);
	db->uid = st.st_uid;
	db->dev = st.st_dev;
	db->ino = st.st_ino;
	if ((rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn)) != 0)
		return smtp_alias_fail(error_r, "%s: %s", db->path,
		    mdb_strerror(rc));
	if ((rc = mdb_dbi_open(txn, NULL, 0, &db->dbi)) == 0)
		rc = mdb_get(txn, db->dbi, &k, &v);
	mdb_txn_abort(txn);
	if (rc == MDB_NOTFOUND || (rc == 0 && (v.mv_size !=
	    sizeof(SMTP_ALIAS_FORMAT) - 1 || memcmp(v.mv_data,
	    SMTP_ALIAS_FORMAT, v.mv_size) != 0)))
		return smtp_alias_fail(error_r, "%s: not a loft alias "
		    "database (format %s)", db->path, SMTP_ALIAS_FORMAT);
	if (rc != 0)
		return smtp_alias_fail(error_r, "%s: %s", db->path,
		    mdb_strerror(rc));
	return 0;
}

static void
smtp_alias_db_close(struct smtp_alias_db *db)
{
	if (db->env != NULL)
		mdb_env_close(db->env);
	db->env = NULL;
	free(db->path);
	db->path = NULL;
}

static int
smtp_alias_db_open(struct smtp_alias_db *db, const char *path,
    const char **error_r)
{
	int rc;

	memset(db, 0, sizeof(*db));
	db->path = xstrdup(path);
	if ((rc = mdb_env_create(&db->env)) != 0) {
		db->env = NULL;
		smtp_alias_db_close(db);
		return smtp_alias_fail(error_r, "mdb_env_create: %s",
		    mdb_strerror(rc));
	}
	if ((rc = mdb_env_open(db->env, path, MDB_NOSUBDIR | MDB_NOLOCK |
	    MDB_RDONLY, 0)) != 0) {
		smtp_alias_fail(error_r, "open %s: %s", path,
		    mdb_strerror(rc));
		smtp_alias_db_close(db);
		return -1;
	}
	if (smtp_alias_db_check(db, error_r) < 0) {
		smtp_alias_db_close(db);
		return -1;
	}
	return 0;
}

int
smtp_alias_open(const char *db_path, struct smtp_alias_map **map_r,
    const char **error_r)
{
	struct smtp_alias_map *map = xcalloc(1, sizeof(*map));

	map->dbs = xcalloc(1, sizeof(*map->dbs));
	if (smtp_alias_db_open(&map->dbs[0], db_path, error_r) < 0) {
		free(map->dbs);
		free(map);
		return -1;
	}
	map->count = 1;
	*map_r = map;
	return 0;
}

int
smtp_alias_open_conf(struct smtp_alias_map **map_r, const char **error_r)
{
	struct smtp_alias_map *map = xcalloc(1, sizeof(*map));
	char **items = conf_list("alias_maps", &map->count), *src, *db;
	int ret = 0;

	map->dbs = xcalloc(map->count + 1, sizeof(*map->dbs));
	for (size_t i = 0; i < map->count && ret == 0; i++) {
		if (smtp_alias_item_paths(items[i], &src, &db, error_r) < 0) {
			map->count = i;
			ret = -1;
			break;
		}
		if ((ret = smtp_alias_db_open(&map->dbs[i], db,
		    error_r)) < 0)
			map->count = i;
		free(src);
		free(db);
	}
	conf_list_free(&items);
	if (ret < 0)
		smtp_alias_close(&map);
	else
		*map_r = map;
	return ret;
}

void
smtp_alias_close(struct smtp_alias_map **mapp)
{
	struct smtp_alias_map *map = *mapp;

	if (map == NULL)
		return;
	for (size_t i = 0; i < map->count; i++)
		smtp_alias_db_close(&map->dbs[i]);
	free(map->dbs);
	free(map);
	*mapp = NULL;
}

int
smtp_alias_refresh(struct smtp_alias_map *map, const char **error_r)
{
	struct smtp_alias_db fresh;
	struct stat st;
	int ret = 0;

	for (size_t i = 0; i < map->count; i++) {
		struct smtp_alias_db *db = &map->dbs[i];

		if (stat(db->path, &st) == 0 && st.st_dev == db->dev &&
		    st.st_ino == db->ino)
			continue;
		if (smtp_alias_db_open(&fresh, db->path, error_r) < 0)
			return -1;
		smtp_alias_db_close(db);
		*db = fresh;
		ret = 1;
	}
	return ret;
}

/* ---- Lookups ---- */

/* A read transaction on every database of a map, for one lookup or one
 * whole expansion (so it sees each file as of one moment). */
struct smtp_alias_read {
	struct smtp_alias_map *map;
	MDB_txn **txns;		/* owned; map->count of them */
};

static int
smtp_alias_read_begin(struct smtp_alias_map *map, struct smtp_alias_read *r,
    const char **error_r)
{
	int rc;

	r->map = map;
	r->txns = xcalloc(map->count + 1, sizeof(*r->txns));
	for (size_t i = 0; i < map->count; i++) {
		if ((rc = mdb_txn_begin(map->dbs[i].env, NULL, MDB_RDONLY,
		    &r->txns[i])) != 0) {
			while (i-- > 0)
				mdb_txn_abort(r->txns[i]);
			free(r->txns);
			return smtp_alias_fail(error_r, "%s: %s",
			    map->dbs[i].path, mdb_strerror(rc));
		}
	}
	return 0;
}

static void
smtp_alias_read_end(struct smtp_alias_read *r)
{
	for (size_t i = 0; i < r->map->count; i++)
		mdb_txn_abort(r->txns[i]);
	free(r->txns);
}

/* smtp_alias_get: the record of key (already lower-cased) from the first
 * database that has it: 1 with *val and *db_r, 0, or -1. */
static int
smtp_alias_get(struct smtp_alias_read *r, const char *key, MDB_val *val,
    struct smtp_alias_db **db_r, const char **error_r)
{
	MDB_val k = { strlen(key), (void *)key };
	int rc;

	if (k.mv_size == 0 || k.mv_size > SMTP_ALIAS_NAME_MAX)
		return 0;
	for (size_t i = 0; i < r->map->count; i++) {
		rc = mdb_get(r->txns[i], r->map->dbs[i].dbi, &k, val);
		if (rc == MDB_NOTFOUND)
			continue;
		if (rc != 0)
			return smtp_alias_fail(error_r, "%s: %s",
			    r->map->dbs[i].path, mdb_strerror(rc));
		*db_r = &r->map->dbs[i];
		return 1;
	}
	return 0;
}

/* smtp_alias_key: name lower-cased into key (SMTP_ALIAS_NAME_MAX + 1
 * bytes); false if it cannot be an alias name. */
static bool
smtp_alias_key(const char *name, char *key)
{
	size_t len = strlen(name);

	if (len == 0 || len > SMTP_ALIAS_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (smtp_alias_is_ctl((unsigned char)name[i]))
			return false;
	memcpy(key, name, len + 1);
	smtp_alias_lower(key);
	return true;
}

int
smtp_alias_lookup(struct smtp_alias_map *map, const char *name,
    struct smtp_alias_value **values_r, size_t *count_r,
    const char **source_r, const char **error_r)
{
	char key[SMTP_ALIAS_NAME_MAX + 1];
	struct smtp_alias_value *v = NULL;
	struct smtp_alias_read r;
	struct smtp_alias_rec rec;
	struct smtp_alias_db *db;
	size_t count = 0, pos = 0;
	MDB_val val;
	int ret;

	if (!smtp_alias_key(name, key))
		return 0;
	if (smtp_alias_read_begin(map, &r, error_r) < 0)
		return -1;
	if ((ret = smtp_alias_get(&r, key, &val, &db, error_r)) == 1) {
		while ((ret = smtp_alias_rec_next(val.mv_data, val.mv_size,
		    &pos, &rec)) == 1) {
			v = xreallocarray(v, count + 1, sizeof(*v));
			smtp_alias_value_set(&v[count++], rec.kind,
			    rec.noexpand, rec.text, strlen(rec.text));
		}
		if (ret < 0) {
			smtp_alias_values_free(v, count);
			ret = smtp_alias_fail(error_r, "%s: alias \"%s\": "
			    "corrupt record", db->path, key);
		} else {
			ret = 1;
			*values_r = v;
			*count_r = count;
			if (source_r != NULL)
				*source_r = db->path;
		}
	}
	smtp_alias_read_end(&r);
	return ret;
}

/* ---- Expansion ---- */

/* Where a value came from, and so what may be done with it. */
struct smtp_alias_origin {
	const char *source;	/* database or include file path */
	uid_t uid;		/* its owner */
	bool unsafe;		/* an include file others may write */
	const char *owner;	/* owner- address for targets, or NULL */
};

struct smtp_alias_exp {
	struct smtp_alias_read r;
	const char *delimiters;		/* NULL: none */
	const char *domain;		/* of owner- addresses, or NULL */
	struct smtp_alias_target *t;	/* owned until handed over */
	size_t count, alloc;
	size_t *slots;			/* dedup hash: target index + 1 */
	size_t nslots;			/* a power of two, or 0 */
	/* The aliases and include files being expanded, outermost first:
	 * what a value may not expand into again. Borrowed. */
	const char *names[SMTP_ALIAS_DEPTH_MAX + 1];
	size_t nnames;
	const char *includes[SMTP_ALIAS_DEPTH_MAX + 1];
	size_t nincludes;
	const char *error;
};

static int smtp_alias_exp_alias(struct smtp_alias_exp *e, const char *key,
    MDB_val *val, struct smtp_alias_db *db, const char *owner,
    unsigned int depth);
static int smtp_alias_exp_value(struct smtp_alias_exp *e,
    const struct smtp_alias_rec *v, const struct smtp_alias_origin *o,
    unsigned int depth);

static uint64_t
smtp_alias_hash(enum smtp_alias_kind kind, const char *s)
{
	/* FNV-1a: the dedup table only needs a spread, not secrecy (the
	 * values come from the administrator's files). */
	uint64_t h = 14695981039346656037ULL ^ (uint64_t)kind;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* smtp_alias_slot: the dedup slot of (kind, value): one holding it, or
 * the empty one where it goes. */
static size_t *
smtp_alias_slot(struct smtp_alias_exp *e, enum smtp_alias_kind kind,
    const char *value)
{
	size_t mask = e->nslots - 1, i;

	for (i = (size_t)smtp_alias_hash(kind, value) & mask;
	    e->slots[i] != 0; i = (i + 1) & mask) {
		const struct smtp_alias_target *t = &e->t[e->slots[i] - 1];

		if (t->kind == kind && strcmp(t->value, value) == 0)
			break;
	}
	return &e->slots[i];
}

/* smtp_alias_grow: keep the dedup table at most half full. */
static void
smtp_alias_grow(struct smtp_alias_exp *e)
{
	if (e->count + 1 <= e->nslots / 2)
		return;
	free(e->slots);
	e->nslots = e->nslots == 0 ? 64 : e->nslots * 2;
	e->slots = xcalloc(e->nslots, sizeof(*e->slots));
	for (size_t i = 0; i < e->count; i++)
		*smtp_alias_slot(e, e->t[i].kind, e->t[i].value) = i + 1;
}

/* smtp_alias_emit: add a target unless it is there already. */
static int
smtp_alias_emit(struct smtp_alias_exp *e, enum smtp_alias_kind kind,
    const char *value, const struct smtp_alias_origin *o, const char *reason,
    bool temporary)
{
	struct smtp_alias_target *t;
	size_t *slot;

	smtp_alias_grow(e);
	slot = smtp_alias_slot(e, kind, value);
	if (*slot != 0)
		return 0;
	if (e->count == SMTP_ALIAS_EXPAND_MAX)
		return smtp_alias_fail(&e->error, "more than %d targets",
		    SMTP_ALIAS_EXPAND_MAX);
	if (e->count == e->alloc) {
		e->alloc = e->alloc == 0 ? 16 : e->alloc * 2;
		e->t = xreallocarray(e->t, e->alloc, sizeof(*e->t));
	}
	t = &e->t[e->count];
	t->kind = kind;
	t->value = xstrdup(value);
	t->owner = o->owner != NULL ? xstrdup(o->owner) : NULL;
	t->source = xstrdup(o->source);
	t->source_uid = o->uid;
	t->reason = reason;
	t->temporary = temporary;
	*slot = ++e->count;
	return 0;
}

/* smtp_alias_split: where name's address extension starts (the first
 * delimiter byte), or 0 if it has none to remove. */
static size_t
smtp_alias_split(const char *name, const char *delimiters)
{
	size_t len = strlen(name), cut;

	if (delimiters == NULL || *delimiters == '\0' ||
	    strcmp(name, "postmaster") == 0 ||
	    strcmp(name, "mailer-daemon") == 0)
		return 0;
	/* Lists named owner-x and x-request predate '-' as a delimiter:
	 * Postfix never cuts them, and neither do we. */
	if (strchr(delimiters, '-') != NULL && (strncmp(name, "owner-",
	    6) == 0 || (len > 8 && strcmp(name + len - 8, "-request") == 0)))
		return 0;
	cut = strcspn(name, delimiters);
	return cut < len ? cut : 0;
}

/* smtp_alias_resolve: look key up, then key without its extension;
 * 1 with the key that matched in matched (SMTP_ALIAS_NAME_MAX + 1
 * bytes), *val and *db_r; 0; -1. */
static int
smtp_alias_resolve(struct smtp_alias_exp *e, const char *key, char *matched,
    MDB_val *val, struct smtp_alias_db **db_r)
{
	size_t cut;
	int ret;

	if ((ret = smtp_alias_get(&e->r, key, val, db_r, &e->error)) != 0) {
		if (ret > 0)
			strlcpy(matched, key, SMTP_ALIAS_NAME_MAX + 1);
		return ret;
	}
	if ((cut = smtp_alias_split(key, e->delimiters)) == 0)
		return 0;
	memcpy(matched, key, cut);
	matched[cut] = '\0';
	return smtp_alias_get(&e->r, matched, val, db_r, &e->error);
}

/* smtp_alias_owner: "owner-KEY[@domain]" if that alias exists (newly
 * allocated), else NULL. */
static int
smtp_alias_owner(struct smtp_alias_exp *e, const char *key, char **owner_r)
{
	char name[SMTP_ALIAS_NAME_MAX + 1];
	struct smtp_alias_db *db;
	MDB_val val;
	int ret;

	*owner_r = NULL;
	if ((size_t)snprintf(name, sizeof(name), "owner-%s", key) >=
	    sizeof(name))
		return 0;
	if ((ret = smtp_alias_get(&e->r, name, &val, &db, &e->error)) <= 0)
		return ret;
	if (e->domain != NULL && *e->domain != '\0')
		*owner_r = xasprintf("%s@%s", name, e->domain);
	else
		*owner_r = xstrdup(name);
	return 0;
}

static bool
smtp_alias_on_stack(const char *const *stack, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(stack[i], s) == 0)
			return true;
	return false;
}

/* smtp_alias_exp_local: a local name from a value: an alias to expand,
 * or a user. */
static int
smtp_alias_exp_local(struct smtp_alias_exp *e, const char *name,
    const struct smtp_alias_origin *o, unsigned int depth)
{
	char key[SMTP_ALIAS_NAME_MAX + 1], matched[SMTP_ALIAS_NAME_MAX + 1];
	struct smtp_alias_db *db;
	MDB_val val;
	int ret;

	if (!smtp_alias_key(name, key))
		return smtp_alias_fail(&e->error, "bad local name in %s",
		    o->source);
	if ((ret = smtp_alias_resolve(e, key, matched, &val, &db)) < 0)
		return -1;
	/* Not an alias, or one being expanded ("root: root, x"): the
	 * user of that name. */
	if (ret == 0 || smtp_alias_on_stack(e->names, e->nnames, matched))
		return smtp_alias_emit(e, SMTP_ALIAS_ADDRESS, key, o, NULL,
		    false);
	if (depth + 1 > SMTP_ALIAS_DEPTH_MAX)
		return smtp_alias_fail(&e->error, "aliases nested deeper "
		    "than %d at \"%s\"", SMTP_ALIAS_DEPTH_MAX, matched);
	return smtp_alias_exp_alias(e, matched, &val, db, o->owner, depth + 1);
}

/* smtp_alias_include_read: the whole include file, or a reason. */
static int
smtp_alias_include_read(const char *path, struct buf *b, struct stat *st,
    const char **reason_r, bool *temporary_r)
{
	char chunk[8192];
	ssize_t n;
	int fd, ret = 0;

	*temporary_r = false;
	if ((fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK |
	    O_CLOEXEC)) < 0) {
		*temporary_r = errno != ENOENT && errno != EACCES &&
		    errno != ENOTDIR && errno != ELOOP;
		*reason_r = errno == ENOENT ? "include file is missing" :
		    "include file cannot be opened";
		log_warning("include file %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
		close(fd);
		*reason_r = "include file is not a regular file";
		return -1;
	}
	while (ret == 0 && (n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*temporary_r = true;
			*reason_r = "include file cannot be read";
			ret = -1;
		} else if (buf_append(b, chunk, (size_t)n) < 0) {
			*reason_r = "include file is too big";
			ret = -1;
		}
	}
	close(fd);
	return ret;
}

/* smtp_alias_include_line: one line of an include file (no newline)
 * appended to *v; a bad line is logged and skipped. */
static void
smtp_alias_include_line(const char *path, unsigned int lineno,
    const char *s, size_t len, struct smtp_alias_value **v, size_t *count)
{
	struct smtp_alias_value *lv;
	size_t lcount, skip = strspn(s, SMTP_ALIAS_WS);
	const char *why;

	if (skip >= len || s[skip] == '#')
		return;
	if (len > SMTP_ALIAS_LINE_MAX) {
		log_warning("%s:%u: line longer than %d bytes: skipped", path,
		    lineno, SMTP_ALIAS_LINE_MAX);
		return;
	}
	if (smtp_alias_parse_values(s, len, SIZE_MAX, &lv, &lcount,
	    &why) < 0) {
		log_warning("%s:%u: %s: line skipped", path, lineno, why);
		return;
	}
	*v = xreallocarray(*v, *count + lcount + 1, sizeof(**v));
	memcpy(*v + *count, lv, lcount * sizeof(*lv));
	*count += lcount;
	free(lv);
}

/* smtp_alias_include_parse: every value of the include file text. */
static void
smtp_alias_include_parse(const char *path, struct buf *b,
    struct smtp_alias_value **v_r, size_t *count_r)
{
	const char *s = buf_cstr(b), *end = s + b->len, *nl;
	unsigned int lineno = 1;

	*v_r = NULL;
	*count_r = 0;
	for (; s < end; s = nl + 1, lineno++) {
		if ((nl = memchr(s, '\n', (size_t)(end - s))) == NULL)
			nl = end;
		smtp_alias_include_line(path, lineno, s, (size_t)(nl - s),
		    v_r, count_r);
	}
}

/* smtp_alias_exp_include_values: expand what an include file holds. */
static int
smtp_alias_exp_include_values(struct smtp_alias_exp *e, const char *path,
    const struct smtp_alias_value *v, size_t count,
    const struct smtp_alias_origin *o, unsigned int depth)
{
	struct smtp_alias_rec rec;

	e->includes[e->nincludes++] = path;
	for (size_t i = 0; i < count; i++) {
		rec.kind = v[i].kind;
		rec.noexpand = v[i].noexpand;
		rec.text = v[i].text;
		if (smtp_alias_exp_value(e, &rec, o, depth) < 0) {
			e->nincludes--;
			return -1;
		}
	}
	e->nincludes--;
	return 0;
}

/* smtp_alias_exp_include: ":include:path" from a value with origin o. */
static int
smtp_alias_exp_include(struct smtp_alias_exp *e, const char *path,
    const struct smtp_alias_origin *o, unsigned int depth)
{
	struct smtp_alias_origin io = *o;
	struct smtp_alias_value *v = NULL;
	const char *reason = NULL;
	struct stat st;
	struct buf b;
	size_t count = 0;
	bool temporary;
	char *shown;
	int ret;

	if (smtp_alias_on_stack(e->includes, e->nincludes, path)) {
		log_warning("include file %s includes itself: skipped", path);
		return 0;
	}
	if (depth + 1 > SMTP_ALIAS_DEPTH_MAX)
		return smtp_alias_fail(&e->error, "aliases nested deeper "
		    "than %d at include file %s", SMTP_ALIAS_DEPTH_MAX, path);
	buf_init(&b, SMTP_ALIAS_INCLUDE_SIZE_MAX);
	if (smtp_alias_include_read(path, &b, &st, &reason, &temporary) == 0) {
		smtp_alias_include_parse(path, &b, &v, &count);
		if (count > SMTP_ALIAS_VALUES_MAX) {
			reason = "include file has too many values";
			smtp_alias_values_free(v, count);
			v = NULL;
		}
	}
	buf_free(&b);
	if (reason != NULL) {
		shown = xasprintf(SMTP_ALIAS_INCLUDE_PREFIX "%s", path);
		ret = smtp_alias_emit(e, SMTP_ALIAS_ERROR, shown, o, reason,
		    temporary);
		free(shown);
		return ret;
	}
	io.source = path;
	io.uid = st.st_uid;
	io.unsafe = (st.st_mode & (S_IWGRP | S_IWOTH)) != 0;
	ret = smtp_alias_exp_include_values(e, path, v, count, &io,
	    depth + 1);
	smtp_alias_values_free(v, count);
	return ret;
}

/* smtp_alias_exp_unsafe: a command or file from an include file others
 * may write: refused, as sendmail refuses them. */
static int
smtp_alias_exp_unsafe(struct smtp_alias_exp *e, const struct smtp_alias_rec *v,
    const struct smtp_alias_origin *o)
{
	char *shown = xasprintf("%s%s", v->kind == SMTP_ALIAS_COMMAND ?
	    "|" : "", v->text);
	int ret;

	log_warning("include file %s is writable by group or others: "
	    "%s refused", o->source, v->kind == SMTP_ALIAS_COMMAND ?
	    "command" : "file");
	ret = smtp_alias_emit(e, SMTP_ALIAS_ERROR, shown, o,
	    v->kind == SMTP_ALIAS_COMMAND ? "command from an unsafe include "
	    "file" : "file from an unsafe include file", false);
	free(shown);
	return ret;
}

static int
smtp_alias_exp_value(struct smtp_alias_exp *e, const struct smtp_alias_rec *v,
    const struct smtp_alias_origin *o, unsigned int depth)
{
	char key[SMTP_ALIAS_NAME_MAX + 1];

	switch (v->kind) {
	case SMTP_ALIAS_ADDRESS:
		if (strchr(v->text, '@') != NULL)
			return smtp_alias_emit(e, SMTP_ALIAS_ADDRESS, v->text,
			    o, NULL, false);
		if (!v->noexpand)
			return smtp_alias_exp_local(e, v->text, o, depth);
		if (!smtp_alias_key(v->text, key))
			return smtp_alias_fail(&e->error, "bad local name in "
			    "%s", o->source);
		return smtp_alias_emit(e, SMTP_ALIAS_ADDRESS, key, o, NULL,
		    false);
	case SMTP_ALIAS_COMMAND:
	case SMTP_ALIAS_FILE:
		if (o->unsafe)
			return smtp_alias_exp_unsafe(e, v, o);
		return smtp_alias_emit(e, v->kind, v->text, o, NULL, false);
	case SMTP_ALIAS_INCLUDE:
		return smtp_alias_exp_include(e, v->text, o, depth);
	case SMTP_ALIAS_ERROR:
		break;
	}
	return smtp_alias_fail(&e->error, "bad value kind in %s", o->source);
}

/* smtp_alias_exp_alias: the values of the alias key (its record val in
 * db), at nesting depth (1 for the alias mailed to). */
static int
smtp_alias_exp_alias(struct smtp_alias_exp *e, const char *key,
    MDB_val *val, struct smtp_alias_db *db, const char *owner,
    unsigned int depth)
{
	struct smtp_alias_origin o;
	struct smtp_alias_rec rec;
	char *own;
	size_t pos = 0;
	int ret;

	if (smtp_alias_owner(e, key, &own) < 0)
		return -1;
	o.source = db->path;
	o.uid = db->uid;
	o.unsafe = false;
	o.owner = own != NULL ? own : owner;
	e->names[e->nnames++] = key;
	while ((ret = smtp_alias_rec_next(val->mv_data, val->mv_size, &pos,
	    &rec)) == 1)
		if ((ret = smtp_alias_exp_value(e, &rec, &o, depth)) < 0)
			break;
	if (ret < 0 && e->error == NULL)
		smtp_alias_fail(&e->error, "%s: alias \"%s\": corrupt record",
		    db->path, key);
	e->nnames--;
	free(own);
	return ret < 0 ? -1 : 0;
}

void
smtp_alias_targets_free(struct smtp_alias_target *t, size_t count)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < count; i++) {
		free(t[i].value);
		free(t[i].owner);
		free(t[i].source);
	}
	free(t);
}

int
smtp_alias_expand(struct smtp_alias_map *map, const char *local,
    const char *delimiters, const char *domain,
    struct smtp_alias_target **targets_r, size_t *count_r,
    const char **error_r)
{
	char key[SMTP_ALIAS_NAME_MAX + 1], matched[SMTP_ALIAS_NAME_MAX + 1];
	struct smtp_alias_exp e;
	struct smtp_alias_db *db;
	MDB_val val;
	int ret;

	if (!smtp_alias_key(local, key))
		return 0;
	memset(&e, 0, sizeof(e));
	e.delimiters = delimiters;
	e.domain = domain;
	if (smtp_alias_read_begin(map, &e.r, error_r) < 0)
		return -1;
	if ((ret = smtp_alias_resolve(&e, key, matched, &val, &db)) == 1 &&
	    smtp_alias_exp_alias(&e, matched, &val, db, NULL, 1) < 0)
		ret = -1;
	smtp_alias_read_end(&e.r);
	free(e.slots);
	if (ret == 1) {
		*targets_r = e.t;
		*count_r = e.count;
		return 1;
	}
	smtp_alias_targets_free(e.t, e.count);
	if (ret < 0) {
		/* Errors during expansion wrote the module's buffer. */
		*error_r = e.error != NULL ? e.error : smtp_alias_errbuf;
	}
	return ret;
}
