/*
 * smtp_pickup.c: local submission through the maildrop. sendmail (any
 * local user) writes one file per message into QUEUE/maildrop with
 * smtp_pickup_drop; the queue manager (mail_owner) moves finished files
 * into the queue with smtp_pickup_run, adding a Received: line and the
 * From:, Date: and Message-ID: fields a message lacks, with CRLF line
 * ends as smtpd stores content. The layout and the file format are in
 * smtp_pickup.h.
 *
 * Trusts: the queue directory (smtp_queue_open checked it), and the
 * configuration. Does not trust: the maildrop files, which any local user
 * writes. The submitting uid is the file's owner, never something the
 * file says; a file is opened without following a symbolic link and
 * without blocking (a FIFO), must be a regular file with one link (a
 * hard link to someone else's file is refused unread), is read up to a
 * bound, and parsed strictly (smtp_pickup_parse) before anything of it
 * reaches the queue. The sender and the full name are what the user
 * claims, as with any sendmail -f.
 */
#include "config.h"
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include "compat/compat.h"
#include "conf.h"
#include "log.h"
#include "xmalloc.h"
#include "smtp_addr.h"
#include "smtp_session.h"
#include "smtp_pickup.h"

#define SMTP_PICKUP_RAND	26	/* random base-32 digits of a name */
#define SMTP_PICKUP_SECS	11	/* digits of seconds of a final name */
/* Bytes of a maildrop file besides its content, as a bound: the magic,
 * sender, fullname, content and end lines, with their keys. */
#define SMTP_PICKUP_HEAD_MAX	(64 + SMTP_QUEUE_ADDR_MAX + \
	SMTP_PICKUP_FULLNAME_MAX)
#define SMTP_PICKUP_RCPT_LINE	(SMTP_QUEUE_ADDR_MAX + 8)
/* What the pickup adds to a message: Received:, From:, Date:, Message-ID:
 * and a separator line, as a bound. */
#define SMTP_PICKUP_ADDED_MAX	(2048 + SMTP_QUEUE_ADDR_MAX + \
	2 * SMTP_PICKUP_FULLNAME_MAX + 2 * SMTP_DOMAIN_MAX)

static const char smtp_pickup_b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
static char smtp_pickup_errbuf[1024];
static void (*smtp_pickup_queued_cb)(const char *id, void *ctx);
static void *smtp_pickup_queued_ctx;

static const char *smtp_pickup_fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static const char *
smtp_pickup_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(smtp_pickup_errbuf, sizeof(smtp_pickup_errbuf), fmt, ap);
	va_end(ap);
	return smtp_pickup_errbuf;
}

void
smtp_pickup_limits_conf(struct smtp_pickup_limits *lim)
{
	lim->size_max = (uint64_t)conf_int("message_size_limit");
	lim->rcpt_max = (unsigned int)conf_int("smtpd_recipient_limit");
	lim->line_max = SMTP_TEXT_LINE_DEFAULT;
}

static uint64_t
smtp_pickup_size_max(const struct smtp_pickup_limits *lim)
{
	return lim->size_max == 0 || lim->size_max > SMTP_PICKUP_HARD_MAX ?
	    SMTP_PICKUP_HARD_MAX : lim->size_max;
}

/*
 * Content: limits, counted as the queue will hold it.
 */

int
smtp_pickup_content_check(const unsigned char *content, size_t len,
    const struct smtp_pickup_limits *lim, uint64_t *size_r,
    const char **error_r)
{
	uint64_t size = 0, max = smtp_pickup_size_max(lim);
	size_t line = 0;

	for (size_t i = 0; i < len; i++) {
		line++;
		if (content[i] == '\n' && (i == 0 || content[i - 1] != '\r'))
			line++;		/* LF becomes CRLF */
		if (content[i] == '\n' || i + 1 == len) {
			if (content[i] != '\n')
				line += 2;	/* a final CRLF is added */
			if (line > lim->line_max) {
				*error_r = smtp_pickup_fail("content: a line "
				    "of %zu bytes exceeds the limit of %zu",
				    line, lim->line_max);
				return -1;
			}
			size += line;
			line = 0;
		}
		if (size > max) {
			*error_r = smtp_pickup_fail("content: message size "
			    "exceeds the limit of %llu bytes",
			    (unsigned long long)max);
			return -1;
		}
	}
	if (size_r != NULL)
		*size_r = size;
	return 0;
}

/*
 * The maildrop file.
 */

static bool
smtp_pickup_text_ok(const char *s, size_t max)
{
	size_t len = strlen(s);

	if (len > max)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

int
smtp_pickup_format(struct buf *out, const char *sender, const char *fullname,
    char *const *rcpts, unsigned int rcpt_count, const unsigned char *content,
    size_t len, const char **error_r)
{
	int r = 0;

	if (fullname == NULL)
		fullname = "";
	if (!smtp_pickup_text_ok(sender, SMTP_QUEUE_ADDR_MAX) ||
	    !smtp_pickup_text_ok(fullname, SMTP_PICKUP_FULLNAME_MAX)) {
		*error_r = smtp_pickup_fail("bad sender or full name");
		return -1;
	}
	r |= buf_printf(out, "%s\nsender <%s>\nfullname %s\n",
	    SMTP_PICKUP_MAGIC, sender, fullname);
	for (unsigned int i = 0; i < rcpt_count; i++) {
		if (rcpts[i][0] == '\0' ||
		    !smtp_pickup_text_ok(rcpts[i], SMTP_QUEUE_ADDR_MAX)) {
			*error_r = smtp_pickup_fail("bad recipient");
			return -1;
		}
		r |= buf_printf(out, "rcpt <%s>\n", rcpts[i]);
	}
	r |= buf_printf(out, "content %zu\n", len);
	r |= buf_append(out, content, len);
	r |= buf_append_str(out, "end\n");
	if (r != 0) {
		*error_r = smtp_pickup_fail("maildrop file too large");
		return -1;
	}
	return 0;
}

/* The parser's position in a file. */
struct smtp_pickup_parser {
	const unsigned char *data;
	size_t len, pos;
	unsigned int line;
	const unsigned char *cur;	/* the current line, without LF */
	size_t cur_len;
};

static int
smtp_pickup_next_line(struct smtp_pickup_parser *ps, const char **error_r)
{
	const unsigned char *nl;

	ps->line++;
	nl = ps->pos < ps->len ? memchr(ps->data + ps->pos, '\n',
	    ps->len - ps->pos) : NULL;
	if (nl == NULL) {
		*error_r = smtp_pickup_fail("line %u: missing (truncated "
		    "file)", ps->line);
		return -1;
	}
	ps->cur = ps->data + ps->pos;
	ps->cur_len = (size_t)(nl - ps->cur);
	ps->pos += ps->cur_len + 1;
	return 0;
}

/* smtp_pickup_key: the current line is "key " and a value (which may be
 * empty). */
static bool
smtp_pickup_key(const struct smtp_pickup_parser *ps, const char *key)
{
	size_t n = strlen(key);

	return ps->cur_len > n && memcmp(ps->cur, key, n) == 0 &&
	    ps->cur[n] == ' ';
}

/* smtp_pickup_value: the current line's value after "key ", as a string
 * of at most max bytes without control bytes; with brackets, the value
 * must be "<...>" and is given without them. */
static int
smtp_pickup_value(struct smtp_pickup_parser *ps, const char *key,
    bool brackets, size_t max, char **out, const char **error_r)
{
	const unsigned char *v;
	size_t vlen, n = strlen(key) + 1;

	if (!smtp_pickup_key(ps, key)) {
		*error_r = smtp_pickup_fail("line %u: expected \"%s\"",
		    ps->line, key);
		return -1;
	}
	v = ps->cur + n;
	vlen = ps->cur_len - n;
	if (brackets) {
		if (vlen < 2 || v[0] != '<' || v[vlen - 1] != '>') {
			*error_r = smtp_pickup_fail("line %u: %s: expected "
			    "<address>", ps->line, key);
			return -1;
		}
		v++;
		vlen -= 2;
	}
	for (size_t i = 0; i < vlen; i++) {
		if (v[i] < 0x20 || v[i] == 0x7f) {
			*error_r = smtp_pickup_fail("line %u: %s: control "
			    "byte", ps->line, key);
			return -1;
		}
	}
	if (vlen > max) {
		*error_r = smtp_pickup_fail("line %u: %s: longer than %zu "
		    "bytes", ps->line, key, max);
		return -1;
	}
	*out = xstrndup((const char *)v, vlen);
	return 0;
}

/* smtp_pickup_number: the current line's "key N", N canonical decimal. */
static int
smtp_pickup_number(struct smtp_pickup_parser *ps, const char *key,
    uint64_t max, uint64_t *n_r, const char **error_r)
{
	size_t n = strlen(key) + 1;
	uint64_t v = 0;

	if (!smtp_pickup_key(ps, key) || ps->cur_len == n ||
	    (ps->cur[n] == '0' && ps->cur_len > n + 1)) {
		*error_r = smtp_pickup_fail("line %u: expected \"%s N\"",
		    ps->line, key);
		return -1;
	}
	for (size_t i = n; i < ps->cur_len; i++) {
		if (ps->cur[i] < '0' || ps->cur[i] > '9' ||
		    v > (max - (uint64_t)(ps->cur[i] - '0')) / 10) {
			*error_r = smtp_pickup_fail("line %u: %s: not a "
			    "number up to %llu", ps->line, key,
			    (unsigned long long)max);
			return -1;
		}
		v = v * 10 + (uint64_t)(ps->cur[i] - '0');
	}
	*n_r = v;
	return 0;
}

static int
smtp_pickup_parse_rcpts(struct smtp_pickup_parser *ps,
    const struct smtp_pickup_limits *lim, struct smtp_pickup_file *f,
    const char **error_r)
{
	unsigned int alloc = 0;
	char *addr;

	while (smtp_pickup_key(ps, "rcpt")) {
		if (f->rcpt_count == lim->rcpt_max) {
			*error_r = smtp_pickup_fail("line %u: more than %u "
			    "recipients", ps->line, lim->rcpt_max);
			return -1;
		}
		if (smtp_pickup_value(ps, "rcpt", true, SMTP_QUEUE_ADDR_MAX,
		    &addr, error_r) < 0)
			return -1;
		if (addr[0] == '\0') {
			free(addr);
			*error_r = smtp_pickup_fail("line %u: empty recipient",
			    ps->line);
			return -1;
		}
		if (f->rcpt_count == alloc) {
			alloc = alloc == 0 ? 8 : alloc * 2;
			f->rcpts = xreallocarray(f->rcpts, alloc,
			    sizeof(*f->rcpts));
		}
		f->rcpts[f->rcpt_count++] = addr;
		if (smtp_pickup_next_line(ps, error_r) < 0)
			return -1;
	}
	if (f->rcpt_count == 0) {
		*error_r = smtp_pickup_fail("line %u: no recipient", ps->line);
		return -1;
	}
	return 0;
}

static int
smtp_pickup_parse_all(struct smtp_pickup_parser *ps,
    const struct smtp_pickup_limits *lim, struct smtp_pickup_file *f,
    const char **error_r)
{
	uint64_t clen;

	if (smtp_pickup_next_line(ps, error_r) < 0)
		return -1;
	if (ps->cur_len != strlen(SMTP_PICKUP_MAGIC) ||
	    memcmp(ps->cur, SMTP_PICKUP_MAGIC, ps->cur_len) != 0) {
		*error_r = smtp_pickup_fail("line 1: not a maildrop file");
		return -1;
	}
	if (smtp_pickup_next_line(ps, error_r) < 0 ||
	    smtp_pickup_value(ps, "sender", true, SMTP_QUEUE_ADDR_MAX,
	    &f->sender, error_r) < 0 ||
	    smtp_pickup_next_line(ps, error_r) < 0 ||
	    smtp_pickup_value(ps, "fullname", false, SMTP_PICKUP_FULLNAME_MAX,
	    &f->fullname, error_r) < 0 ||
	    smtp_pickup_next_line(ps, error_r) < 0 ||
	    smtp_pickup_parse_rcpts(ps, lim, f, error_r) < 0 ||
	    smtp_pickup_number(ps, "content", smtp_pickup_size_max(lim),
	    &clen, error_r) < 0)
		return -1;
	if (clen > ps->len - ps->pos) {
		*error_r = smtp_pickup_fail("line %u: content: %llu bytes, "
		    "%zu in the file (truncated)", ps->line,
		    (unsigned long long)clen, ps->len - ps->pos);
		return -1;
	}
	f->content = ps->data + ps->pos;
	f->content_len = (size_t)clen;
	if (smtp_pickup_content_check(f->content, f->content_len, lim, NULL,
	    error_r) < 0)
		return -1;
	ps->pos += f->content_len;
	if (smtp_pickup_next_line(ps, error_r) < 0)
		return -1;
	if (ps->cur_len != 3 || memcmp(ps->cur, "end", 3) != 0) {
		*error_r = smtp_pickup_fail("line %u: expected \"end\"",
		    ps->line);
		return -1;
	}
	if (ps->pos != ps->len) {
		*error_r = smtp_pickup_fail("line %u: data after \"end\"",
		    ps->line + 1);
		return -1;
	}
	return 0;
}

int
smtp_pickup_parse(const unsigned char *data, size_t len,
    const struct smtp_pickup_limits *lim, struct smtp_pickup_file *f,
    const char **error_r)
{
	struct smtp_pickup_parser ps;

	memset(f, 0, sizeof(*f));
	memset(&ps, 0, sizeof(ps));
	ps.data = data;
	ps.len = len;
	if (smtp_pickup_parse_all(&ps, lim, f, error_r) < 0) {
		smtp_pickup_file_clear(f);
		return -1;
	}
	return 0;
}

void
smtp_pickup_file_clear(struct smtp_pickup_file *f)
{
	for (unsigned int i = 0; i < f->rcpt_count; i++)
		free(f->rcpts[i]);
	free(f->rcpts);
	free(f->sender);
	free(f->fullname);
	memset(f, 0, sizeof(*f));
}

int
smtp_pickup_address(const char *addr, const char *origin, bool null_ok,
    char *out, size_t outsize, const char **error_r)
{
	char path[SMTP_PATH_MAX + 3], text[SMTP_PATH_MAX * 2 + 8];
	struct smtp_path p;
	const char *err;
	size_t n;

	if (addr[0] == '\0') {
		if (!null_ok) {
			*error_r = smtp_pickup_fail("empty address");
			return -1;
		}
		if (outsize > 0)
			out[0] = '\0';
		return 0;
	}
	if ((size_t)snprintf(text, sizeof(text), "<%s%s%s>", addr,
	    strchr(addr, '@') == NULL ? "@" : "", strchr(addr, '@') == NULL ?
	    origin : "") >= sizeof(text)) {
		*error_r = smtp_pickup_fail("address too long");
		return -1;
	}
	if (smtp_path_parse(text, strlen(text), false, true, &p, &err) < 0) {
		*error_r = smtp_pickup_fail("<%s>: %s", addr, err);
		return -1;
	}
	smtp_path_format(&p, path, sizeof(path));
	n = strlen(path);
	if (n < 3 || n - 2 >= outsize || n - 2 > SMTP_QUEUE_ADDR_MAX) {
		*error_r = smtp_pickup_fail("<%s>: address too long", addr);
		return -1;
	}
	memcpy(out, path + 1, n - 2);
	out[n - 2] = '\0';
	return 0;
}

/*
 * The queue content.
 */

/* smtp_pickup_is_field: line[0..len) starts a header field: a name of
 * printable ASCII without ':', optional blanks, ':'. */
static bool
smtp_pickup_is_field(const unsigned char *line, size_t len, size_t *name_r)
{
	size_t i = 0, name;

	while (i < len && line[i] > 0x20 && line[i] < 0x7f && line[i] != ':')
		i++;
	name = i;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (name == 0 || i == len || line[i] != ':')
		return false;
	*name_r = name;
	return true;
}

/* The fields a message may lack. */
#define SMTP_PICKUP_HAS_FROM	(1u << 0)
#define SMTP_PICKUP_HAS_DATE	(1u << 1)
#define SMTP_PICKUP_HAS_MSGID	(1u << 2)

static unsigned int
smtp_pickup_field_bit(const unsigned char *name, size_t len)
{
	static const struct {
		const char *name;
		unsigned int bit;
	} fields[] = {
		{ "From", SMTP_PICKUP_HAS_FROM },
		{ "Date", SMTP_PICKUP_HAS_DATE },
		{ "Message-ID", SMTP_PICKUP_HAS_MSGID },
	};

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (strlen(fields[i].name) == len &&
		    strncasecmp((const char *)name, fields[i].name, len) == 0)
			return fields[i].bit;
	return 0;
}

static void
smtp_pickup_date(time_t t, char *out, size_t size)
{
	struct tm tm;

	if (localtime_r(&t, &tm) == NULL ||
	    strftime(out, size, "%a, %d %b %Y %H:%M:%S %z", &tm) == 0)
		strlcpy(out, "Thu, 01 Jan 1970 00:00:00 +0000", size);
}

/* smtp_pickup_phrase: the full name as an RFC 5322 phrase: as it is when
 * it is atoms and spaces, else a quoted string. */
static int
smtp_pickup_phrase(struct buf *out, const char *name)
{
	static const char specials[] = "()<>[]:;@\\,.\"";
	bool quote = name[0] == ' ' || name[strlen(name) - 1] == ' ';
	int r = 0;

	for (const char *p = name; *p != '\0' && !quote; p++)
		quote = strchr(specials, *p) != NULL;
	if (!quote)
		return buf_append_str(out, name);
	r |= buf_append_byte(out, '"');
	for (const char *p = name; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			r |= buf_append_byte(out, '\\');
		r |= buf_append_byte(out, (unsigned char)*p);
	}
	r |= buf_append_byte(out, '"');
	return r;
}

static int
smtp_pickup_missing(const struct smtp_pickup_file *f,
    const struct smtp_pickup_stamp *st, unsigned int have, struct buf *out)
{
	char date[64];
	int r = 0;

	if ((have & SMTP_PICKUP_HAS_FROM) == 0) {
		r |= buf_append_str(out, "From: ");
		if (f->fullname[0] != '\0') {
			r |= smtp_pickup_phrase(out, f->fullname);
			r |= buf_append_str(out, " <");
		}
		if (f->sender[0] != '\0')
			r |= buf_append_str(out, f->sender);
		else
			r |= buf_printf(out, "%s@%s", st->login != NULL ?
			    st->login : "MAILER-DAEMON", st->origin);
		r |= buf_append_str(out, f->fullname[0] != '\0' ? ">\r\n" :
		    "\r\n");
	}
	if ((have & SMTP_PICKUP_HAS_DATE) == 0) {
		smtp_pickup_date(st->submitted, date, sizeof(date));
		r |= buf_printf(out, "Date: %s\r\n", date);
	}
	if ((have & SMTP_PICKUP_HAS_MSGID) == 0)
		r |= buf_printf(out, "Message-ID: <%s@%s>\r\n", st->id,
		    st->hostname);
	return r;
}

/* The state of the walk over the content's lines. */
struct smtp_pickup_walk {
	bool in_header;
	bool field_seen;	/* a continuation line belongs to a field */
	unsigned int have;	/* SMTP_PICKUP_HAS_* */
};

/* smtp_pickup_line: one line of content, without its ending. */
static int
smtp_pickup_line(const struct smtp_pickup_file *f,
    const struct smtp_pickup_stamp *st, struct smtp_pickup_walk *w,
    const unsigned char *line, size_t len, struct buf *out)
{
	size_t name;
	int r = 0;

	if (w->in_header) {
		if (len == 0) {
			w->in_header = false;
			r |= smtp_pickup_missing(f, st, w->have, out);
		} else if ((line[0] == ' ' || line[0] == '\t') &&
		    w->field_seen) {
			;	/* a continuation line */
		} else if (smtp_pickup_is_field(line, len, &name)) {
			w->field_seen = true;
			w->have |= smtp_pickup_field_bit(line, name);
		} else {
			/* The body starts without an empty line: put one. */
			w->in_header = false;
			r |= smtp_pickup_missing(f, st, w->have, out);
			r |= buf_append_str(out, "\r\n");
		}
	}
	r |= buf_append(out, line, len);
	r |= buf_append_str(out, "\r\n");
	return r;
}

int
smtp_pickup_message(const struct smtp_pickup_file *f,
    const struct smtp_pickup_stamp *st, struct buf *out)
{
	struct smtp_pickup_walk w = { .in_header = true };
	const unsigned char *p = f->content, *end = p + f->content_len, *nl;
	char date[64];
	size_t len;
	int r = 0;

	smtp_pickup_date(st->now, date, sizeof(date));
	r |= buf_printf(out, "Received: by %s (loft pickup, uid %lu)\r\n\tid "
	    "%s; %s\r\n", st->hostname, (unsigned long)st->uid, st->id, date);
	while (p < end && r == 0) {
		nl = memchr(p, '\n', (size_t)(end - p));
		len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		if (nl != NULL && len > 0 && p[len - 1] == '\r')
			len--;
		r |= smtp_pickup_line(f, st, &w, p, len, out);
		p = nl != NULL ? nl + 1 : end;
	}
	if (w.in_header)
		r |= smtp_pickup_missing(f, st, w.have, out);
	return r == 0 ? 0 : -1;
}

/*
 * The directories.
 */

/* smtp_pickup_dir_at: name in dir at, made with mode if missing, opened
 * without following a link, ours, mode set to mode. -1 or the fd. */
static int
smtp_pickup_dir_at(int at, const char *name, mode_t mode,
    const char **error_r)
{
	struct stat st;
	int fd;

	if (mkdirat(at, name, 0700) < 0 && errno != EEXIST) {
		*error_r = smtp_pickup_fail("pickup: mkdir %s: %s", name,
		    strerror(errno));
		return -1;
	}
	fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		*error_r = smtp_pickup_fail("pickup: open %s: %s%s", name,
		    strerror(errno), errno == ELOOP || errno == ENOTDIR ?
		    " (it must be a directory)" : "");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (st.st_uid != geteuid() || ((st.st_mode & 07777) != mode &&
	    fchmod(fd, mode) < 0)) {
		*error_r = smtp_pickup_fail("pickup: %s: %s", name,
		    st.st_uid != geteuid() ? "owned by another user" :
		    strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int
smtp_pickup_make_fifo(int pub, const char **error_r)
{
	struct stat st;

	if (mkfifoat(pub, "pickup", 0600) < 0 && errno != EEXIST) {
		*error_r = smtp_pickup_fail("pickup: mkfifo %s: %s",
		    SMTP_PICKUP_FIFO, strerror(errno));
		return -1;
	}
	/* public/ is ours and closed to writers: nothing can swap the
	 * name between this check and the chmod. */
	errno = 0;
	if (fstatat(pub, "pickup", &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !S_ISFIFO(st.st_mode) || st.st_uid != geteuid() ||
	    fchmodat(pub, "pickup", 0622, 0) < 0) {
		*error_r = smtp_pickup_fail("pickup: %s: %s",
		    SMTP_PICKUP_FIFO, errno != 0 ? strerror(errno) :
		    "not a FIFO of ours");
		return -1;
	}
	return 0;
}

int
smtp_pickup_prepare(const char *queue_dir, const char **error_r)
{
	struct stat st;
	int qfd, md = -1, pub = -1, r = -1;

	qfd = open(queue_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (qfd < 0 || fstat(qfd, &st) < 0 || st.st_uid != geteuid()) {
		*error_r = smtp_pickup_fail("pickup: queue %s: %s", queue_dir,
		    qfd < 0 ? strerror(errno) : "not ours");
		goto out;
	}
	/* Search permission only: others reach maildrop and public by
	 * name; tmp/ data/ env/ corrupt/ stay 0700. */
	if ((st.st_mode & 0111) != 0111) {
		if (fchmod(qfd, (st.st_mode & 07777) | 0111) < 0) {
			*error_r = smtp_pickup_fail("pickup: chmod %s: %s",
			    queue_dir, strerror(errno));
			goto out;
		}
		log_info("queue %s: mode %04o, so that local users reach "
		    "its maildrop", queue_dir,
		    (unsigned int)((st.st_mode & 07777) | 0111));
	}
	if ((md = smtp_pickup_dir_at(qfd, SMTP_PICKUP_MAILDROP, 01733,
	    error_r)) < 0 || (pub = smtp_pickup_dir_at(qfd, SMTP_PICKUP_PUBLIC,
	    0711, error_r)) < 0 || smtp_pickup_make_fifo(pub, error_r) < 0)
		goto out;
	r = 0;
out:
	if (md >= 0)
		close(md);
	if (pub >= 0)
		close(pub);
	if (qfd >= 0)
		close(qfd);
	return r;
}

int
smtp_pickup_fifo_open(const char *queue_dir, const char **error_r)
{
	char path[PATH_MAX];
	struct stat st;
	int fd;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", queue_dir,
	    SMTP_PICKUP_FIFO) >= sizeof(path)) {
		*error_r = smtp_pickup_fail("pickup: path too long");
		return -1;
	}
	fd = open(path, O_RDWR | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode)) {
		*error_r = smtp_pickup_fail("pickup: %s: %s", path,
		    fd < 0 ? strerror(errno) : "not a FIFO");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

void
smtp_pickup_fifo_drain(int fd)
{
	unsigned char b[512];

	while (read(fd, b, sizeof(b)) > 0)
		;
}

void
smtp_pickup_set_queued(void (*cb)(const char *id, void *ctx), void *ctx)
{
	smtp_pickup_queued_cb = cb;
	smtp_pickup_queued_ctx = ctx;
}

/*
 * Names.
 */

static bool
smtp_pickup_b32_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] == '\0' || strchr(smtp_pickup_b32, s[i]) == NULL)
			return false;
	return true;
}

/* smtp_pickup_name_final: "d" 11 digits "." 26 base-32 digits. */
static bool
smtp_pickup_name_final(const char *name)
{
	if (strlen(name) != 1 + SMTP_PICKUP_SECS + 1 + SMTP_PICKUP_RAND ||
	    name[0] != 'd' || name[1 + SMTP_PICKUP_SECS] != '.')
		return false;
	for (size_t i = 1; i <= SMTP_PICKUP_SECS; i++)
		if (name[i] < '0' || name[i] > '9')
			return false;
	return smtp_pickup_b32_ok(name + 2 + SMTP_PICKUP_SECS,
	    SMTP_PICKUP_RAND);
}

/* smtp_pickup_name_tmp: "t." 26 base-32 digits. */
static bool
smtp_pickup_name_tmp(const char *name)
{
	return strlen(name) == 2 + SMTP_PICKUP_RAND && name[0] == 't' &&
	    name[1] == '.' && smtp_pickup_b32_ok(name + 2, SMTP_PICKUP_RAND);
}

static int
smtp_pickup_random(char *out, size_t n)
{
	unsigned char r[SMTP_PICKUP_RAND];
	size_t got = 0;
	ssize_t k;

	while (got < n) {
		k = getrandom(r + got, n - got, 0);
		if (k < 0 && errno != EINTR)
			return -1;
		if (k > 0)
			got += (size_t)k;
	}
	for (size_t i = 0; i < n; i++)
		out[i] = smtp_pickup_b32[r[i] & 31];
	out[n] = '\0';
	return 0;
}

/*
 * The pickup.
 */

/* The run: the maildrop and its parent's corrupt/, opened once. */
struct smtp_pickup_run {
	struct smtp_queue *q;
	int md;			/* maildrop */
	int corrupt;		/* ../corrupt, or -1 until needed */
	struct smtp_pickup_limits lim;
	const char *hostname, *origin;
	unsigned int picked;
};

static void
smtp_pickup_discard(struct smtp_pickup_run *run, const char *name,
    const char *why)
{
	if (unlinkat(run->md, name, 0) < 0 && errno != ENOENT)
		log_warning("pickup: maildrop/%s: %s; cannot remove it: %s",
		    name, why, strerror(errno));
	else
		log_warning("pickup: maildrop/%s: %s: removed", name, why);
}

/* smtp_pickup_quarantine: move name to ../corrupt/maildrop.NAME (or
 * remove it when that fails), saying why and whose it was. */
static void
smtp_pickup_quarantine(struct smtp_pickup_run *run, const char *name,
    uid_t uid, const char *why)
{
	char to[SMTP_PICKUP_NAME_MAX + 16];
	int up;

	if (run->corrupt < 0) {
		up = openat(run->md, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		run->corrupt = up < 0 ? -1 : openat(up, "corrupt", O_RDONLY |
		    O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (up >= 0)
			close(up);
	}
	snprintf(to, sizeof(to), "maildrop.%s", name);
	if (run->corrupt >= 0 && renameat(run->md, name, run->corrupt,
	    to) == 0) {
		log_warning("pickup: maildrop/%s (uid %lu): %s: moved to "
		    "corrupt/%s", name, (unsigned long)uid, why, to);
		return;
	}
	smtp_pickup_discard(run, name, why);
}

/* smtp_pickup_read: the whole file, at most max bytes; 0, -1 (errno). */
static int
smtp_pickup_read(int fd, size_t max, struct buf *b)
{
	unsigned char chunk[65536];
	ssize_t n;

	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		if (b->len + (size_t)n > max || buf_append(b, chunk,
		    (size_t)n) < 0) {
			errno = EFBIG;
			return -1;
		}
	}
}

/* smtp_pickup_qualify: the file's addresses, qualified and checked. */
static int
smtp_pickup_qualify(struct smtp_pickup_run *run, struct smtp_pickup_file *f,
    const char **error_r)
{
	char addr[SMTP_QUEUE_ADDR_MAX + 1];

	if (smtp_pickup_address(f->sender, run->origin, true, addr,
	    sizeof(addr), error_r) < 0)
		return -1;
	free(f->sender);
	f->sender = xstrdup(addr);
	for (unsigned int i = 0; i < f->rcpt_count; i++) {
		if (smtp_pickup_address(f->rcpts[i], run->origin, false, addr,
		    sizeof(addr), error_r) < 0)
			return -1;
		free(f->rcpts[i]);
		f->rcpts[i] = xstrdup(addr);
	}
	return 0;
}

/* smtp_pickup_enqueue: f into the queue. 0; -1 for the queue's trouble
 * (the file stays); -2 when the queue refuses what the file says. */
static int
smtp_pickup_enqueue(struct smtp_pickup_run *run,
    const struct smtp_pickup_file *f, const struct stat *st,
    const char **error_r)
{
	struct smtp_pickup_stamp stamp;
	struct smtp_queue_msg *msg;
	struct passwd *pw = getpwuid(st->st_uid);
	char id[SMTP_QUEUE_ID_MAX], *login = pw != NULL ?
	    xstrdup(pw->pw_name) : NULL, esc[SMTP_QUEUE_ADDR_MAX * 4 + 1];
	struct buf b;
	uint64_t size;
	int r = -1;

	(void)smtp_pickup_content_check(f->content, f->content_len, &run->lim,
	    &size, error_r);
	if (smtp_queue_begin(run->q, f->sender, f->rcpt_count, &msg,
	    error_r) < 0) {
		free(login);
		return -1;
	}
	strlcpy(id, smtp_queue_msg_id(msg), sizeof(id));
	stamp = (struct smtp_pickup_stamp){ .hostname = run->hostname,
	    .origin = run->origin, .id = id, .uid = st->st_uid,
	    .login = login, .submitted = st->st_mtime, .now = time(NULL) };
	log_info("%s: uid=%lu from=<%s>", id, (unsigned long)st->st_uid,
	    log_escape(f->sender, esc, sizeof(esc)));
	buf_init(&b, (size_t)size + SMTP_PICKUP_ADDED_MAX);
	if (smtp_pickup_message(f, &stamp, &b) < 0)
		*error_r = smtp_pickup_fail("%s: message too large", id);
	else if (smtp_queue_write(msg, b.data, b.len, error_r) == 0)
		r = 0;
	for (unsigned int i = 0; r == 0 && i < f->rcpt_count; i++)
		if (smtp_queue_add_rcpt(msg, f->rcpts[i], NULL, 0, error_r) < 0)
			r = -2;
	if (r == 0 && smtp_queue_commit(&msg, id, error_r) < 0)
		r = -1;
	smtp_queue_abort(&msg);
	if (r == 0)
		log_info("%s: from=<%s>, size=%zu, nrcpt=%u (queue active)",
		    id, esc, b.len, f->rcpt_count);
	if (r == 0 && smtp_pickup_queued_cb != NULL)
		smtp_pickup_queued_cb(id, smtp_pickup_queued_ctx);
	buf_free(&b);
	free(login);
	return r;
}

/* smtp_pickup_file_max: the largest maildrop file the limits allow. */
static size_t
smtp_pickup_file_max(const struct smtp_pickup_limits *lim)
{
	return SMTP_PICKUP_HEAD_MAX + (size_t)lim->rcpt_max *
	    SMTP_PICKUP_RCPT_LINE + (size_t)smtp_pickup_size_max(lim);
}

/* smtp_pickup_take: the parsed file f into the queue, or why not (*why_r
 * set: the file is to be quarantined). 0, or -1 for the queue's trouble,
 * with its error in qerr. */
static int
smtp_pickup_take(struct smtp_pickup_run *run, struct smtp_pickup_file *f,
    const struct stat *st, const char **why_r, char *qerr, size_t qsize)
{
	const char *err = NULL;
	int r;

	if (smtp_pickup_qualify(run, f, why_r) < 0)
		return 0;
	r = smtp_pickup_enqueue(run, f, st, &err);
	if (r == -2)
		*why_r = err;
	else if (r < 0)
		strlcpy(qerr, err != NULL ? err : "queue error", qsize);
	return r == -1 ? -1 : 0;
}

/* smtp_pickup_one: the file name of maildrop. 0 (taken, refused, or
 * gone), -1 (the queue failed: stop, the file stays). */
static int
smtp_pickup_one(struct smtp_pickup_run *run, const char *name,
    const char **error_r)
{
	struct smtp_pickup_file f;
	struct stat st;
	struct buf b;
	const char *why = NULL;
	char qerr[512];
	int fd, r = 0;

	fd = openat(run->md, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
	    O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ELOOP)
			smtp_pickup_discard(run, name, "a symbolic link");
		else if (errno != ENOENT && fstatat(run->md, name, &st,
		    AT_SYMLINK_NOFOLLOW) == 0)
			smtp_pickup_quarantine(run, name, st.st_uid,
			    strerror(errno));
		return 0;
	}
	if (fstat(fd, &st) < 0) {
		log_error("pickup: maildrop/%s: fstat: %s", name,
		    strerror(errno));
		close(fd);
		return 0;
	}
	if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
		close(fd);
		smtp_pickup_discard(run, name, !S_ISREG(st.st_mode) ?
		    "not a regular file" : "a file with other links");
		return 0;
	}
	buf_init(&b, smtp_pickup_file_max(&run->lim) + 1);
	if (smtp_pickup_read(fd, smtp_pickup_file_max(&run->lim), &b) < 0)
		why = errno == EFBIG ? "larger than the limits allow" :
		    strerror(errno);
	close(fd);
	if (why == NULL && smtp_pickup_parse(b.data, b.len, &run->lim, &f,
	    &why) == 0) {
		r = smtp_pickup_take(run, &f, &st, &why, qerr, sizeof(qerr));
		smtp_pickup_file_clear(&f);
	}
	buf_free(&b);
	if (r < 0) {
		*error_r = smtp_pickup_fail("pickup: maildrop/%s: %s", name,
		    qerr);
		return -1;
	}
	if (why != NULL) {
		smtp_pickup_quarantine(run, name, st.st_uid, why);
		return 0;
	}
	run->picked++;
	if (unlinkat(run->md, name, 0) < 0)
		log_error("pickup: maildrop/%s: queued but not removed (it "
		    "will be queued again): %s", name, strerror(errno));
	return 0;
}

static int
smtp_pickup_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* smtp_pickup_list: the final names in the maildrop, sorted; removes old
 * temporary files and names sendmail does not make. */
static int
smtp_pickup_list(struct smtp_pickup_run *run, char ***names_r,
    size_t *count_r, const char **error_r)
{
	char **names = NULL;
	size_t count = 0, alloc = 0;
	struct dirent *d;
	struct stat st;
	time_t now = time(NULL);
	DIR *dp;
	int fd = dup(run->md);

	if (fd < 0 || (dp = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		*error_r = smtp_pickup_fail("pickup: maildrop: %s",
		    strerror(errno));
		return -1;
	}
	while ((d = readdir(dp)) != NULL) {
		if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
			continue;
		if (smtp_pickup_name_tmp(d->d_name)) {
			if (fstatat(run->md, d->d_name, &st,
			    AT_SYMLINK_NOFOLLOW) == 0 &&
			    now - st.st_mtime >= SMTP_PICKUP_TMP_AGE)
				smtp_pickup_discard(run, d->d_name,
				    "an abandoned temporary file");
			continue;
		}
		if (!smtp_pickup_name_final(d->d_name)) {
			smtp_pickup_discard(run, d->d_name, "not a name "
			    "sendmail makes");
			continue;
		}
		if (count == alloc) {
			alloc = alloc == 0 ? 32 : alloc * 2;
			names = xreallocarray(names, alloc, sizeof(*names));
		}
		names[count++] = xstrdup(d->d_name);
	}
	closedir(dp);
	if (count > 0)
		qsort(names, count, sizeof(*names), smtp_pickup_cmp);
	*names_r = names;
	*count_r = count;
	return 0;
}

/* smtp_pickup_open_maildrop: ours, sticky, not listable by others. */
static int
smtp_pickup_open_maildrop(const char *dir, const char **error_r)
{
	struct stat st;
	int fd;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		*error_r = smtp_pickup_fail("pickup: %s: %s", dir,
		    strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (st.st_uid != geteuid() || (st.st_mode & S_ISVTX) == 0 ||
	    (st.st_mode & 0044) != 0) {
		*error_r = smtp_pickup_fail("pickup: %s must be ours, mode "
		    "1733 (it is %04o, uid %lu)", dir,
		    (unsigned int)(st.st_mode & 07777),
		    (unsigned long)st.st_uid);
		close(fd);
		return -1;
	}
	return fd;
}

int
smtp_pickup_run(struct smtp_queue *q, const char *maildrop_dir,
    unsigned int max, unsigned int *picked_r, const char **error_r)
{
	struct smtp_pickup_run run = { .q = q, .corrupt = -1 };
	char **names;
	size_t count;
	int r = 0;

	if (picked_r != NULL)
		*picked_r = 0;
	if ((run.md = smtp_pickup_open_maildrop(maildrop_dir, error_r)) < 0)
		return -1;
	smtp_pickup_limits_conf(&run.lim);
	run.hostname = conf_str("myhostname");
	run.origin = conf_str("myorigin");
	if (smtp_pickup_list(&run, &names, &count, error_r) < 0) {
		close(run.md);
		return -1;
	}
	for (size_t i = 0; i < count; i++) {
		if (r == 0 && run.picked < max)
			r = smtp_pickup_one(&run, names[i], error_r);
		free(names[i]);
	}
	free(names);
	if (run.corrupt >= 0)
		close(run.corrupt);
	close(run.md);
	if (picked_r != NULL)
		*picked_r = run.picked;
	return r;
}

/*
 * sendmail's side.
 */

static int
smtp_pickup_write_all(int fd, const unsigned char *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* smtp_pickup_drop_at: the steps of smtp_pickup_drop in the maildrop
 * dfd (O_PATH when listable is false); *step_r names the one that
 * failed; *made_r: tmp exists. */
static int
smtp_pickup_drop_at(int dfd, bool listable, const char *tmp,
    const char *name, const unsigned char *file, size_t len, bool *made_r,
    const char **step_r)
{
	int fd, err;

	*step_r = "create";
	fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	*made_r = true;
	/* Readable by the pickup (mail_owner, not the owner) whatever the
	 * user's umask; the name is what others cannot guess. */
	*step_r = "write";
	if (fchmod(fd, 0644) < 0 || smtp_pickup_write_all(fd, file, len) < 0 ||
	    (*step_r = "fsync", fsync(fd) < 0) ||
	    (*step_r = "rename", renameat(dfd, tmp, dfd, name) < 0))
		goto fail;
	*made_r = false;
	/* The new name must be on disk before exit 0. A user cannot open
	 * the maildrop for reading (it is not listable) to fsync it, so
	 * the file system is synced through the file instead. */
	*step_r = listable ? "fsync the directory" : "syncfs";
	if ((listable ? fsync(dfd) : syncfs(fd)) < 0) {
		err = errno;
		(void)unlinkat(dfd, name, 0);
		errno = err;
		goto fail;
	}
	*step_r = "close";
	return close(fd);
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

int
smtp_pickup_drop(const char *maildrop_dir, const unsigned char *file,
    size_t len, char name_r[SMTP_PICKUP_NAME_MAX], const char **error_r)
{
	char tmp[SMTP_PICKUP_NAME_MAX], rnd[SMTP_PICKUP_RAND + 1], name[64];
	const char *step = "open";
	bool made = false, listable = true;
	int dfd, err;

	dfd = open(maildrop_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 && errno == EACCES) {
		listable = false;
		dfd = open(maildrop_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	}
	if (dfd >= 0 && (step = "random",
	    smtp_pickup_random(rnd, SMTP_PICKUP_RAND) == 0)) {
		snprintf(tmp, sizeof(tmp), "t.%s", rnd);
		snprintf(name, sizeof(name), "d%0*llu.%s", SMTP_PICKUP_SECS,
		    (unsigned long long)time(NULL) % 100000000000ULL, rnd);
		strlcpy(name_r, name, SMTP_PICKUP_NAME_MAX);
		if (smtp_pickup_drop_at(dfd, listable, tmp, name_r, file, len,
		    &made, &step) == 0) {
			close(dfd);
			return 0;
		}
	}
	err = errno;
	*error_r = smtp_pickup_fail("%s: %s: %s", maildrop_dir, step,
	    strerror(err));
	if (made)
		(void)unlinkat(dfd, tmp, 0);
	if (dfd >= 0)
		close(dfd);
	errno = err;
	return -1;
}

bool
smtp_pickup_wake(const char *fifo_path)
{
	int fd = open(fifo_path, O_WRONLY | O_NONBLOCK | O_NOFOLLOW |
	    O_CLOEXEC);
	bool ok;

	if (fd < 0)
		return false;
	ok = write(fd, "w", 1) == 1;
	close(fd);
	return ok;
}
