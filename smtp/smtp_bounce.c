/*
 * smtp_bounce.c: bounces (RFC 3464 delivery status notifications) for the
 * failed recipients of a queued message: the report is composed in memory
 * in three parts (text, message/delivery-status, the original or its
 * header) under a boundary that occurs in none of them, then committed to
 * the queue as a message from <> to the original sender.
 *
 * Trusts: the envelope as smtp_queue's strict parser gives it (addresses
 * without control bytes, bounded lengths), reporting_mta and postmaster
 * from the configuration (checked for header safety all the same).
 * Does not trust: the diagnostics (remote replies: any byte, sanitized to
 * printable ASCII), ORCPT and ENVID (xtext from the client, decoded only
 * when the result is printable), the original content (any bytes, never
 * parsed beyond finding the end of its header; read only up to
 * bounce_size_limit or SMTP_BOUNCE_HEADER_MAX).
 */
#include "config.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include "compat/compat.h"
#include "log.h"
#include "xmalloc.h"
#include "smtp_bounce.h"

/* Text lines are folded before this column (RFC 5322's 78), never past
 * SMTP_BOUNCE_LINE_MAX (998, its hard limit, less room for the CRLF). */
#define SMTP_BOUNCE_WRAP	78
#define SMTP_BOUNCE_LINE_MAX	990
#define SMTP_BOUNCE_INDENT	"    "
/* @UNSAFE hand-computed bounds of the composed parts: the header and the
 * fixed text are under 2 KiB; a recipient's paragraph and status group
 * under 4 KiB (address 256, ORCPT 500, diagnostic 512, each folded: a
 * CRLF and 4 spaces per 70 bytes at worst, and the field names). */
#define SMTP_BOUNCE_FIXED	16384
#define SMTP_BOUNCE_NAME_MAX	SMTP_QUEUE_ADDR_MAX	/* host, postmaster */
#define SMTP_BOUNCE_PER_RCPT	8192
#define SMTP_BOUNCE_TRIES	16	/* random boundaries tried */
#define SMTP_BOUNCE_RAND	16	/* random bytes in one */
#define SMTP_BOUNCE_READ	65536

/* How a diagnostic reads (smtp_bounce.h lists the forms). */
enum smtp_bounce_diag_kind {
	SMTP_BOUNCE_DIAG_NONE,
	SMTP_BOUNCE_DIAG_REMOTE,	/* host H[A] said: REPLY (...) */
	SMTP_BOUNCE_DIAG_REPLY,		/* REPLY */
	SMTP_BOUNCE_DIAG_TEXT		/* a local reason */
};

struct smtp_bounce_diag {
	enum smtp_bounce_diag_kind kind;
	char text[SMTP_QUEUE_DIAG_MAX + 1];	/* sanitized, all of it */
	char host[SMTP_QUEUE_DIAG_MAX + 1];	/* REMOTE: H */
	const char *reply;	/* REMOTE, REPLY: into text; else NULL */
	size_t reply_len;	/* without "(in reply to ...)" */
	const char *human;	/* what the text part quotes: text without
				   its leading enhanced code */
	char status[16];	/* "5.1.1" */
};

/* The report's body parts, before the boundary is known. */
struct smtp_bounce_parts {
	struct buf text;	/* the human-readable part */
	struct buf status;	/* message/delivery-status */
	struct buf orig;	/* the original or its header */
	bool have_orig;		/* a third part (content_fd was given) */
	bool headers_only;	/* text/rfc822-headers */
};

const char *smtp_bounce_test_boundary;
time_t smtp_bounce_test_now;

static uint64_t smtp_bounce_size_limit = SMTP_BOUNCE_DEF_SIZE_LIMIT;
static char smtp_bounce_errbuf[1024];

static const char *smtp_bounce_fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* smtp_bounce_fail: format an error into the module's buffer, errno
 * kept (a full disk stays recognisable). */
static const char *
smtp_bounce_fail(const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	va_start(ap, fmt);
	vsnprintf(smtp_bounce_errbuf, sizeof(smtp_bounce_errbuf), fmt, ap);
	va_end(ap);
	errno = saved;
	return smtp_bounce_errbuf;
}

void
smtp_bounce_set_size_limit(uint64_t limit)
{
	smtp_bounce_size_limit = limit;
}

bool
smtp_bounce_due(const struct smtp_queue_env *env, unsigned int i)
{
	const struct smtp_queue_rcpt *r = &env->rcpts[i];

	if (r->state != SMTP_QUEUE_FAILED)
		return false;
	return r->notify == 0 || (r->notify & SMTP_NOTIFY_FAILURE) != 0;
}

/* smtp_bounce_wanted: whether env gets a bounce at all. */
static bool
smtp_bounce_wanted(const struct smtp_queue_env *env)
{
	if (env->bounce || env->sender == NULL || env->sender[0] == '\0')
		return false;
	for (unsigned int i = 0; i < env->rcpt_count; i++)
		if (smtp_bounce_due(env, i))
			return true;
	return false;
}

/*
 * Small text helpers.
 */

static int
smtp_bounce_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
smtp_bounce_xtext_decode(const char *text, char *out, size_t outsize)
{
	size_t o = 0;
	int hi, lo;
	unsigned char c;

	for (const char *p = text; *p != '\0'; p++) {
		c = (unsigned char)*p;
		if (c < '!' || c > '~' || c == '=')
			return -1;
		if (c == '+') {
			if ((hi = smtp_bounce_hexval(p[1])) < 0 ||
			    (lo = smtp_bounce_hexval(p[2])) < 0)
				return -1;
			c = (unsigned char)(hi * 16 + lo);
			p += 2;
			if (c < ' ' || c > '~')
				return -1;
		}
		if (o + 1 >= outsize)
			return -1;
		out[o++] = (char)c;
	}
	if (outsize == 0)
		return -1;
	out[o] = '\0';
	return 0;
}

/* smtp_bounce_show_xtext: text decoded for display, or as sent (xtext is
 * printable ASCII) when it does not decode to printable ASCII. */
static void
smtp_bounce_show_xtext(const char *text, char *out, size_t outsize)
{
	size_t i;

	if (smtp_bounce_xtext_decode(text, out, outsize) == 0)
		return;
	/* Not well-formed: show its printable bytes only. */
	for (i = 0; text[i] != '\0' && i + 1 < outsize; i++)
		out[i] = text[i] >= '!' && text[i] <= '~' ? text[i] : '?';
	if (outsize > 0)
		out[i] = '\0';
}

/* smtp_bounce_date: an RFC 5322 date-time in local time, without the
 * locale's names. */
static void
smtp_bounce_date(time_t t, char *out, size_t size)
{
	static const char *const days[] = {
		"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
	};
	static const char *const months[] = {
		"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
		"Oct", "Nov", "Dec"
	};
	struct tm tm;
	long off;

	if (localtime_r(&t, &tm) == NULL) {
		t = 0;
		gmtime_r(&t, &tm);
	}
	off = tm.tm_gmtoff / 60;
	snprintf(out, size, "%s, %d %s %d %02d:%02d:%02d %c%02ld%02ld",
	    days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    off < 0 ? '-' : '+', labs(off) / 60, labs(off) % 60);
}

/* smtp_bounce_header_safe: s is a non-empty run of printable ASCII
 * without spaces (a host name in From:, Reporting-MTA, Message-ID). */
static bool
smtp_bounce_header_safe(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (*s <= ' ' || *s > '~')
			return false;
	return true;
}

/* smtp_bounce_has_8bit: whether len bytes at p hold one over 0x7f. */
static bool
smtp_bounce_has_8bit(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] >= 0x80)
			return true;
	return false;
}

/*
 * Folding: words (runs without spaces) are laid out after the prefix,
 * a line broken before a word that would pass SMTP_BOUNCE_WRAP, each
 * further line starting with SMTP_BOUNCE_INDENT. A word too long for
 * any line is cut at SMTP_BOUNCE_LINE_MAX.
 */

static void
smtp_bounce_fold_word(struct buf *b, const char *w, size_t wlen,
    size_t *col, bool *fresh)
{
	size_t indent = strlen(SMTP_BOUNCE_INDENT), n;

	if (!*fresh && *col + 1 + wlen > SMTP_BOUNCE_WRAP) {
		buf_append_str(b, "\r\n" SMTP_BOUNCE_INDENT);
		*col = indent;
	} else if (!*fresh) {
		buf_append_byte(b, ' ');
		(*col)++;
	}
	while (wlen > 0) {
		if (*col >= SMTP_BOUNCE_LINE_MAX) {
			buf_append_str(b, "\r\n" SMTP_BOUNCE_INDENT);
			*col = indent;
		}
		n = SMTP_BOUNCE_LINE_MAX - *col;
		if (n > wlen)
			n = wlen;
		buf_append(b, w, n);
		*col += n;
		w += n;
		wlen -= n;
	}
	*fresh = false;
}

/* smtp_bounce_fold: prefix, then text[0..len) folded, then CRLF. */
static void
smtp_bounce_fold(struct buf *b, const char *prefix, const char *text,
    size_t len)
{
	size_t col = strlen(prefix), i = 0, start;
	bool fresh = true;

	buf_append_str(b, prefix);
	while (i < len) {
		while (i < len && text[i] == ' ')
			i++;
		start = i;
		while (i < len && text[i] != ' ')
			i++;
		if (i > start)
			smtp_bounce_fold_word(b, text + start, i - start, &col,
			    &fresh);
	}
	buf_append_str(b, "\r\n");
}

/* smtp_bounce_fold_str: the same for a NUL-terminated text. */
static void
smtp_bounce_fold_str(struct buf *b, const char *prefix, const char *text)
{
	smtp_bounce_fold(b, prefix, text, strlen(text));
}

/*
 * Diagnostics.
 */

/* smtp_bounce_enhanced: the length of an enhanced status code
 * ("c.s.d", RFC 3463: class 2, 4 or 5, subject and detail of 1 to 3
 * digits) at p followed by a space or the end; 0 if there is none. */
static size_t
smtp_bounce_enhanced(const char *p)
{
	size_t i = 1, n;

	if (p[0] != '2' && p[0] != '4' && p[0] != '5')
		return 0;
	for (int part = 0; part < 2; part++) {
		if (p[i++] != '.')
			return 0;
		for (n = 0; n < 4 && p[i] >= '0' && p[i] <= '9'; n++)
			i++;
		if (n == 0 || n > 3)
			return 0;
	}
	return p[i] == ' ' || p[i] == '\0' ? i : 0;
}

/* smtp_bounce_reply_code: whether p starts with an SMTP reply code
 * (2xx to 5xx) followed by a space or the end. */
static bool
smtp_bounce_reply_code(const char *p)
{
	return p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' &&
	    p[2] >= '0' && p[2] <= '9' && (p[3] == ' ' || p[3] == '\0');
}

/* smtp_bounce_sanitize: diag bytes as printable ASCII into out (size
 * SMTP_QUEUE_DIAG_MAX + 1), '?' for the others. */
static void
smtp_bounce_sanitize(const unsigned char *diag, size_t len, char *out)
{
	if (diag == NULL)
		len = 0;
	if (len > SMTP_QUEUE_DIAG_MAX)
		len = SMTP_QUEUE_DIAG_MAX;
	for (size_t i = 0; i < len; i++)
		out[i] = diag[i] >= ' ' && diag[i] <= '~' ? (char)diag[i] :
		    '?';
	out[len] = '\0';
}

/* smtp_bounce_diag_remote: "host H[A] said: REPLY (in reply to X
 * command)" at p: H into d->host, REPLY into d->reply. false if p does
 * not read so, or REPLY does not start with a reply code. */
static bool
smtp_bounce_diag_remote(struct smtp_bounce_diag *d, const char *p)
{
	const char *said, *end, *in;
	size_t hlen;

	if (strncmp(p, "host ", 5) != 0 ||
	    (said = strstr(p, " said: ")) == NULL)
		return false;
	hlen = strcspn(p + 5, "[ ");
	if (hlen == 0 || p + 5 + hlen > said ||
	    !smtp_bounce_reply_code(said + 7))
		return false;
	memcpy(d->host, p + 5, hlen);
	d->host[hlen] = '\0';
	d->reply = said + 7;
	end = d->reply + strlen(d->reply);
	in = strstr(d->reply, " (in reply to ");
	if (in != NULL && end[-1] == ')')
		end = in;
	d->reply_len = (size_t)(end - d->reply);
	return true;
}

/* smtp_bounce_status_of: "c.s.d" (len bytes) into d->status when its
 * class is 4 or 5 and, unless code_class is 0, that class; true if so. */
static bool
smtp_bounce_status_of(struct smtp_bounce_diag *d, const char *code,
    size_t len, char code_class)
{
	if (len == 0 || len >= sizeof(d->status) ||
	    (code[0] != '4' && code[0] != '5') ||
	    (code_class != 0 && code[0] != code_class))
		return false;
	memcpy(d->status, code, len);
	d->status[len] = '\0';
	return true;
}

/* smtp_bounce_diag_status: d->status: the leading code (lead, lead_len)
 * when it is a failure's; else the reply's enhanced code when its class
 * matches the reply code's (RFC 3463 section 3.1; smtp_client takes it
 * so too); else C.0.0 from a 4xx or 5xx reply; else 5.0.0. */
static void
smtp_bounce_diag_status(struct smtp_bounce_diag *d, const char *lead,
    size_t lead_len)
{
	const char *p;

	if (smtp_bounce_status_of(d, lead, lead_len, 0))
		return;
	if (d->reply != NULL) {
		p = d->reply + 3 + (d->reply[3] == ' ');
		if (smtp_bounce_status_of(d, p, smtp_bounce_enhanced(p),
		    d->reply[0]))
			return;
		if (d->reply[0] == '4' || d->reply[0] == '5') {
			snprintf(d->status, sizeof(d->status), "%c.0.0",
			    d->reply[0]);
			return;
		}
	}
	strlcpy(d->status, "5.0.0", sizeof(d->status));
}

/* smtp_bounce_diag_parse: read a recipient's diagnostic: an optional
 * leading enhanced code (qmgr records "dsn text"), then a remote reply,
 * a bare reply, or text. */
static void
smtp_bounce_diag_parse(const struct smtp_queue_rcpt *r,
    struct smtp_bounce_diag *d)
{
	size_t lead = 0;
	const char *rest;

	memset(d, 0, sizeof(*d));
	smtp_bounce_sanitize(r->diag, r->diag_len, d->text);
	if ((lead = smtp_bounce_enhanced(d->text)) > 0)
		rest = d->text + lead + (d->text[lead] == ' ');
	else
		rest = d->text;
	d->human = rest;
	if (smtp_bounce_diag_remote(d, rest))
		d->kind = SMTP_BOUNCE_DIAG_REMOTE;
	else if (smtp_bounce_reply_code(rest)) {
		d->kind = SMTP_BOUNCE_DIAG_REPLY;
		d->reply = rest;
		d->reply_len = strlen(rest);
	} else if (*rest != '\0')
		d->kind = SMTP_BOUNCE_DIAG_TEXT;
	else {
		d->kind = SMTP_BOUNCE_DIAG_NONE;
		d->human = "delivery failed (no reason recorded)";
	}
	smtp_bounce_diag_status(d, d->text, lead);
}

/*
 * The human-readable part.
 */

static void
smtp_bounce_text_intro(struct buf *b, const struct smtp_bounce_in *in)
{
	const char *pm = in->postmaster != NULL && in->postmaster[0] != '\0' ?
	    in->postmaster : "postmaster";

	buf_printf(b, "This is the mail system at host %s.\r\n\r\n",
	    in->reporting_mta);
	buf_append_str(b, "I'm sorry to have to inform you that your message "
	    "could not\r\nbe delivered to one or more recipients. It's "
	    "attached below.\r\n\r\n");
	buf_printf(b, "For further assistance, please send mail to %s.\r\n\r\n",
	    pm);
	buf_append_str(b, "If you do so, please include this problem report. "
	    "You can\r\ndelete your own text from the attached returned "
	    "message.\r\n\r\n                   The mail system\r\n\r\n");
}

/* smtp_bounce_orcpt_addr: the address of an ORCPT ("type;xtext"),
 * decoded for display, into out; "" when there is none. */
static void
smtp_bounce_orcpt_addr(const char *orcpt, char *out, size_t outsize)
{
	const char *semi;

	out[0] = '\0';
	if (orcpt == NULL || (semi = strchr(orcpt, ';')) == NULL)
		return;
	smtp_bounce_show_xtext(semi + 1, out, outsize);
}

static void
smtp_bounce_text_rcpt(struct buf *b, const struct smtp_queue_rcpt *r,
    const struct smtp_bounce_diag *d)
{
	char orig[SMTP_QUEUE_ORCPT_MAX + 1];
	char *prefix;

	smtp_bounce_orcpt_addr(r->orcpt, orig, sizeof(orig));
	if (orig[0] != '\0' && strcasecmp(orig, r->addr) != 0)
		prefix = xasprintf("<%s> (expanded from <%s>): ", r->addr,
		    orig);
	else
		prefix = xasprintf("<%s>: ", r->addr);
	smtp_bounce_fold_str(b, prefix, d->human);
	buf_append_str(b, "\r\n");
	free(prefix);
}

/*
 * The message/delivery-status part.
 */

static void
smtp_bounce_status_msg(struct buf *b, const struct smtp_bounce_in *in)
{
	const struct smtp_queue_env *env = in->env;
	char date[64], envid[SMTP_QUEUE_ENVID_MAX + 1];

	buf_printf(b, "Reporting-MTA: dns; %s\r\n", in->reporting_mta);
	buf_printf(b, "X-Loft-Queue-ID: %s\r\n", env->id);
	smtp_bounce_fold_str(b, "X-Loft-Sender: rfc822; ", env->sender);
	if (env->envid != NULL) {
		smtp_bounce_show_xtext(env->envid, envid, sizeof(envid));
		smtp_bounce_fold_str(b, "Original-Envelope-Id: ", envid);
	}
	smtp_bounce_date(env->arrival, date, sizeof(date));
	buf_printf(b, "Arrival-Date: %s\r\n", date);
}

/* smtp_bounce_status_orcpt: "Original-Recipient: type;address". */
static void
smtp_bounce_status_orcpt(struct buf *b, const char *orcpt)
{
	char addr[SMTP_QUEUE_ORCPT_MAX + 1], *prefix;
	const char *semi = strchr(orcpt, ';');

	if (semi == NULL || semi == orcpt)
		return;
	smtp_bounce_orcpt_addr(orcpt, addr, sizeof(addr));
	prefix = xasprintf("Original-Recipient: %.*s;", (int)(semi - orcpt),
	    orcpt);
	smtp_bounce_fold_str(b, prefix, addr);
	free(prefix);
}

static void
smtp_bounce_status_rcpt(struct buf *b, const struct smtp_queue_rcpt *r,
    const struct smtp_bounce_diag *d)
{
	char date[64];

	buf_append_str(b, "\r\n");
	smtp_bounce_fold_str(b, "Final-Recipient: rfc822; ", r->addr);
	if (r->orcpt != NULL)
		smtp_bounce_status_orcpt(b, r->orcpt);
	buf_append_str(b, "Action: failed\r\n");
	buf_printf(b, "Status: %s\r\n", d->status);
	if (d->kind == SMTP_BOUNCE_DIAG_REMOTE)
		smtp_bounce_fold_str(b, "Remote-MTA: dns; ", d->host);
	if (d->kind == SMTP_BOUNCE_DIAG_REMOTE ||
	    d->kind == SMTP_BOUNCE_DIAG_REPLY)
		smtp_bounce_fold(b, "Diagnostic-Code: smtp; ", d->reply,
		    d->reply_len);
	else if (d->kind != SMTP_BOUNCE_DIAG_NONE)
		smtp_bounce_fold_str(b, "Diagnostic-Code: X-Loft; ", d->human);
	if (r->last_attempt != 0) {
		smtp_bounce_date(r->last_attempt, date, sizeof(date));
		buf_printf(b, "Last-Attempt-Date: %s\r\n", date);
	}
}

/* smtp_bounce_reports: the text and status parts, every recipient due. */
static void
smtp_bounce_reports(const struct smtp_bounce_in *in,
    struct smtp_bounce_parts *p)
{
	const struct smtp_queue_env *env = in->env;
	struct smtp_bounce_diag d;

	smtp_bounce_text_intro(&p->text, in);
	smtp_bounce_status_msg(&p->status, in);
	for (unsigned int i = 0; i < env->rcpt_count; i++) {
		if (!smtp_bounce_due(env, i))
			continue;
		smtp_bounce_diag_parse(&env->rcpts[i], &d);
		smtp_bounce_text_rcpt(&p->text, &env->rcpts[i], &d);
		smtp_bounce_status_rcpt(&p->status, &env->rcpts[i], &d);
	}
}

/*
 * The original.
 */

/* smtp_bounce_pread: up to want bytes of fd from offset 0 appended to b;
 * fewer at end of file. 0 or -1 (errno). */
static int
smtp_bounce_pread(int fd, size_t want, struct buf *b)
{
	unsigned char chunk[SMTP_BOUNCE_READ];
	size_t got = 0, n;
	ssize_t r;

	while (got < want) {
		n = want - got < sizeof(chunk) ? want - got : sizeof(chunk);
		r = pread(fd, chunk, n, (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		if (buf_append(b, chunk, (size_t)r) < 0) {
			errno = EFBIG;
			return -1;
		}
		got += (size_t)r;
	}
	return 0;
}

/* smtp_bounce_header_end: the bytes of the header at data[0..len) up to
 * and including the line end of its last field, without the empty line
 * after it. When the header goes on past len (cut at the limit) the
 * last, partial line is left out too. */
static size_t
smtp_bounce_header_end(const unsigned char *data, size_t len, bool whole)
{
	size_t pos = 0;
	const unsigned char *lf;

	while (pos < len) {
		if (data[pos] == '\n' || (data[pos] == '\r' &&
		    pos + 1 < len && data[pos + 1] == '\n'))
			return pos;	/* the empty line */
		lf = memchr(data + pos, '\n', len - pos);
		if (lf == NULL)
			return whole ? len : pos;
		pos = (size_t)(lf - data) + 1;
	}
	return pos;
}

/* smtp_bounce_original: the third part's content into p->orig: all of it,
 * or its header when RET=HDRS or the original is over the limit. */
static int
smtp_bounce_original(const struct smtp_bounce_in *in, int fd,
    struct smtp_bounce_parts *p, const char **error_r)
{
	struct stat st;
	uint64_t size;
	size_t want;

	if (fstat(fd, &st) < 0) {
		*error_r = smtp_bounce_fail("bounce: fstat content of %s: %s",
		    in->env->id, strerror(errno));
		return -1;
	}
	size = st.st_size < 0 ? 0 : (uint64_t)st.st_size;
	p->have_orig = true;
	p->headers_only = in->env->ret == SMTP_RET_HDRS ||
	    (in->bounce_size_limit > 0 && size > in->bounce_size_limit);
	if (!p->headers_only && size > SIZE_MAX / 2) {
		*error_r = smtp_bounce_fail("bounce: content of %s too large",
		    in->env->id);
		return -1;
	}
	want = p->headers_only ? (size < SMTP_BOUNCE_HEADER_MAX ?
	    (size_t)size : SMTP_BOUNCE_HEADER_MAX) : (size_t)size;
	buf_init(&p->orig, want);
	if (smtp_bounce_pread(fd, want, &p->orig) < 0) {
		*error_r = smtp_bounce_fail("bounce: read content of %s: %s",
		    in->env->id, strerror(errno));
		return -1;
	}
	if (p->headers_only)
		buf_truncate(&p->orig, smtp_bounce_header_end(p->orig.data,
		    p->orig.len, (uint64_t)p->orig.len == size));
	return 0;
}

/*
 * The boundary.
 */

/* smtp_bounce_bchar: RFC 2046 bchars (a space is allowed inside, not
 * last; we take none). */
static bool
smtp_bounce_bchar(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z') || strchr("'()+_,-./:=?", c) != NULL;
}

static bool
smtp_bounce_boundary_valid(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > SMTP_BOUNCE_BOUNDARY_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!smtp_bounce_bchar(s[i]))
			return false;
	return true;
}

static bool
smtp_bounce_in_buf(const struct buf *b, const char *s)
{
	return b->len > 0 && memmem(b->data, b->len, s, strlen(s)) != NULL;
}

/* smtp_bounce_boundary_free: whether s occurs in none of the parts. */
static bool
smtp_bounce_boundary_free(const struct smtp_bounce_parts *p, const char *s)
{
	return !smtp_bounce_in_buf(&p->text, s) &&
	    !smtp_bounce_in_buf(&p->status, s) &&
	    !smtp_bounce_in_buf(&p->orig, s);
}

/* smtp_bounce_boundary: the hint when it is free, else a random
 * "=_loft_" and 32 hex digits ("=_" never occurs in quoted-printable)
 * that is. */
static int
smtp_bounce_boundary(const struct smtp_bounce_parts *p, const char *hint,
    char out[SMTP_BOUNCE_BOUNDARY_MAX + 1], const char **error_r)
{
	unsigned char rnd[SMTP_BOUNCE_RAND];
	size_t o;

	if (hint != NULL && !smtp_bounce_boundary_valid(hint)) {
		*error_r = smtp_bounce_fail("bounce: bad boundary");
		return -1;
	}
	if (hint != NULL && smtp_bounce_boundary_free(p, hint)) {
		strlcpy(out, hint, SMTP_BOUNCE_BOUNDARY_MAX + 1);
		return 0;
	}
	for (int t = 0; t < SMTP_BOUNCE_TRIES; t++) {
		arc4random_buf(rnd, sizeof(rnd));
		o = strlcpy(out, "=_loft_", SMTP_BOUNCE_BOUNDARY_MAX + 1);
		for (size_t i = 0; i < sizeof(rnd); i++, o += 2)
			snprintf(out + o, 3, "%02x", rnd[i]);
		if (smtp_bounce_boundary_free(p, out))
			return 0;
	}
	*error_r = smtp_bounce_fail("bounce: no free MIME boundary found");
	return -1;
}

/*
 * Assembly.
 */

static void
smtp_bounce_head(struct buf *b, const struct smtp_bounce_in *in,
    const char *boundary, bool eight)
{
	char date[64];

	smtp_bounce_date(in->now, date, sizeof(date));
	if (in->id != NULL)
		buf_printf(b, "Received: by %s (loft) id %s;\r\n\t%s\r\n",
		    in->reporting_mta, in->id, date);
	buf_append_str(b, "Auto-Submitted: auto-replied\r\n");
	buf_printf(b, "From: \"Mail Delivery System\" <MAILER-DAEMON@%s>\r\n",
	    in->reporting_mta);
	buf_printf(b, "To: <%s>\r\n", in->env->sender);
	buf_append_str(b, "Subject: Undelivered Mail Returned to Sender\r\n");
	buf_printf(b, "Date: %s\r\n", date);
	if (in->id != NULL)
		buf_printf(b, "Message-ID: <%s@%s>\r\n", in->id,
		    in->reporting_mta);
	buf_append_str(b, "MIME-Version: 1.0\r\n");
	buf_printf(b, "Content-Type: multipart/report; "
	    "report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n", boundary);
	buf_printf(b, "Content-Transfer-Encoding: %s\r\n\r\n",
	    eight ? "8bit" : "7bit");
	buf_append_str(b, "This is a MIME-encapsulated message.\r\n\r\n");
}

/* smtp_bounce_part: one body part: delimiter, its header, content. */
static void
smtp_bounce_part(struct buf *b, const char *boundary, const char *desc,
    const char *type, const struct buf *content)
{
	bool eight = content->len > 0 &&
	    smtp_bounce_has_8bit(content->data, content->len);

	buf_printf(b, "--%s\r\n", boundary);
	buf_printf(b, "Content-Description: %s\r\n", desc);
	buf_printf(b, "Content-Type: %s\r\n", type);
	if (eight)
		buf_append_str(b, "Content-Transfer-Encoding: 8bit\r\n");
	buf_append_str(b, "\r\n");
	if (content->len > 0)
		buf_append(b, content->data, content->len);
	/* The CRLF before a delimiter belongs to it (RFC 2046 5.1.1). */
	buf_append_str(b, "\r\n");
}

static void
smtp_bounce_assemble(struct buf *b, const struct smtp_bounce_in *in,
    const struct smtp_bounce_parts *p, const char *boundary)
{
	bool text8 = smtp_bounce_has_8bit(p->text.data, p->text.len);
	bool eight = text8 ||
	    smtp_bounce_has_8bit(p->status.data, p->status.len) ||
	    (p->orig.len > 0 && smtp_bounce_has_8bit(p->orig.data,
	    p->orig.len));

	smtp_bounce_head(b, in, boundary, eight);
	smtp_bounce_part(b, boundary, "Notification", text8 ?
	    "text/plain; charset=utf-8" : "text/plain; charset=us-ascii",
	    &p->text);
	smtp_bounce_part(b, boundary, "Delivery report",
	    "message/delivery-status", &p->status);
	if (p->have_orig)
		smtp_bounce_part(b, boundary, p->headers_only ?
		    "Undelivered Message Headers" : "Undelivered Message",
		    p->headers_only ? "text/rfc822-headers" : "message/rfc822",
		    &p->orig);
	buf_printf(b, "--%s--\r\n", boundary);
}

static void
smtp_bounce_parts_free(struct smtp_bounce_parts *p)
{
	buf_free(&p->text);
	buf_free(&p->status);
	buf_free(&p->orig);
}

/* smtp_bounce_check_in: the fields that reach a header verbatim, and
 * the lengths SMTP_BOUNCE_FIXED counts on. */
static int
smtp_bounce_check_in(const struct smtp_bounce_in *in, const char **error_r)
{
	if (!smtp_bounce_header_safe(in->reporting_mta) ||
	    strlen(in->reporting_mta) > SMTP_BOUNCE_NAME_MAX) {
		*error_r = smtp_bounce_fail("bounce: bad reporting MTA name");
		return -1;
	}
	if (in->postmaster != NULL && in->postmaster[0] != '\0' &&
	    (!smtp_bounce_header_safe(in->postmaster) ||
	    strlen(in->postmaster) > SMTP_BOUNCE_NAME_MAX)) {
		*error_r = smtp_bounce_fail("bounce: bad postmaster address");
		return -1;
	}
	/* smtp_bounce_build's bounds must not wrap (a 32-bit size_t). */
	if ((uint64_t)in->env->rcpt_count * SMTP_BOUNCE_PER_RCPT >
	    (uint64_t)(SIZE_MAX / 4)) {
		*error_r = smtp_bounce_fail("bounce: too many recipients");
		return -1;
	}
	if (in->id != NULL && !smtp_bounce_header_safe(in->id)) {
		*error_r = smtp_bounce_fail("bounce: bad queue ID");
		return -1;
	}
	return 0;
}

/* smtp_bounce_build: the parts, the boundary and the whole report into
 * a buffer of its own (its bound computed from the parts). */
static int
smtp_bounce_build(const struct smtp_bounce_in *in, int content_fd,
    struct buf *whole, const char **error_r)
{
	struct smtp_bounce_parts p;
	char boundary[SMTP_BOUNCE_BOUNDARY_MAX + 1];
	size_t per = SMTP_BOUNCE_FIXED +
	    (size_t)in->env->rcpt_count * SMTP_BOUNCE_PER_RCPT;
	int ret = -1;

	memset(&p, 0, sizeof(p));
	buf_init(&p.text, per);
	buf_init(&p.status, per);
	buf_init(&p.orig, 0);
	smtp_bounce_reports(in, &p);
	if (content_fd >= 0 &&
	    smtp_bounce_original(in, content_fd, &p, error_r) < 0)
		goto out;
	if (smtp_bounce_boundary(&p, in->boundary, boundary, error_r) < 0)
		goto out;
	buf_init(whole, SMTP_BOUNCE_FIXED + p.text.len + p.status.len +
	    p.orig.len);
	smtp_bounce_assemble(whole, in, &p, boundary);
	ret = 0;
out:
	smtp_bounce_parts_free(&p);
	return ret;
}

int
smtp_bounce_compose(const struct smtp_bounce_in *in, int content_fd,
    struct buf *out, const char **error_r)
{
	struct buf whole;
	int ret;

	if (!smtp_bounce_wanted(in->env))
		return 1;
	if (smtp_bounce_check_in(in, error_r) < 0)
		return -1;
	if (smtp_bounce_build(in, content_fd, &whole, error_r) < 0)
		return -1;
	ret = buf_append(out, whole.data, whole.len);
	if (ret < 0)
		*error_r = smtp_bounce_fail("bounce: report for %s: %zu "
		    "bytes, more than the buffer takes", in->env->id,
		    whole.len);
	buf_free(&whole);
	return ret;
}

/*
 * Into the queue.
 */

/* smtp_bounce_content: the original's fd: the caller's, or opened from
 * the queue (*own_r: ours to close; -1 in *fd_r when it is gone). */
static int
smtp_bounce_content(struct smtp_queue *q, const struct smtp_queue_env *env,
    int content_fd, int *fd_r, bool *own_r, const char **error_r)
{
	const char *error;
	uint64_t size;
	int r;

	*own_r = false;
	*fd_r = content_fd;
	if (content_fd >= 0)
		return 0;
	if ((r = smtp_queue_open_content(q, env->id, fd_r, &size,
	    &error)) < 0) {
		*error_r = smtp_bounce_fail("bounce: %s", error);
		return -1;
	}
	if (r == 0)
		*fd_r = -1;
	*own_r = r == 1;
	return 0;
}

/* smtp_bounce_commit: the composed report as a message from <> to the
 * sender; frees *msg either way. */
static int
smtp_bounce_commit(struct smtp_queue_msg **msg, const struct buf *report,
    char id_r[SMTP_QUEUE_ID_MAX], const char **error_r)
{
	const char *error;

	if (smtp_queue_write(*msg, report->data, report->len, &error) < 0) {
		strlcpy(id_r, smtp_queue_msg_id(*msg), SMTP_QUEUE_ID_MAX);
		smtp_queue_abort(msg);
		*error_r = smtp_bounce_fail("bounce: %s", error);
		return -1;
	}
	if (smtp_queue_commit(msg, id_r, &error) < 0) {
		*error_r = smtp_bounce_fail("bounce: %s", error);
		return -1;
	}
	return 0;
}

/* smtp_bounce_make: begin the new message, compose into it, commit;
 * *size_r its bytes. */
static int
smtp_bounce_make(struct smtp_queue *q, struct smtp_bounce_in *in, int fd,
    char id_r[SMTP_QUEUE_ID_MAX], size_t *size_r, const char **error_r)
{
	struct smtp_queue_msg *msg;
	struct buf report;
	const char *error;
	int ret;

	if (smtp_queue_begin(q, "", 1, &msg, &error) < 0) {
		*error_r = smtp_bounce_fail("bounce: %s", error);
		return -1;
	}
	if (smtp_queue_add_rcpt(msg, in->env->sender, NULL, 0, &error) < 0) {
		*error_r = smtp_bounce_fail("bounce: %s", error);
		smtp_queue_abort(&msg);
		return -1;
	}
	in->id = smtp_queue_msg_id(msg);
	if (smtp_bounce_build(in, fd, &report, error_r) < 0) {
		smtp_queue_abort(&msg);
		return -1;
	}
	*size_r = report.len;
	ret = smtp_bounce_commit(&msg, &report, id_r, error_r);
	buf_free(&report);
	return ret;
}

int
smtp_bounce_enqueue(struct smtp_queue *q, const struct smtp_queue_env *env,
    int content_fd, const char *reporting_mta, const char *postmaster,
    char *new_id_r, size_t new_id_size, const char **error_r)
{
	struct smtp_bounce_in in;
	char id[SMTP_QUEUE_ID_MAX];
	size_t size = 0;
	bool own;
	int fd, ret;

	if (new_id_size < SMTP_QUEUE_ID_MAX) {
		*error_r = smtp_bounce_fail("bounce: ID buffer too small");
		return -1;
	}
	if (!smtp_bounce_wanted(env))
		return 1;
	memset(&in, 0, sizeof(in));
	in.env = env;
	in.reporting_mta = reporting_mta;
	in.postmaster = postmaster;
	in.now = smtp_bounce_test_now != 0 ? smtp_bounce_test_now :
	    time(NULL);
	in.bounce_size_limit = smtp_bounce_size_limit;
	in.boundary = smtp_bounce_test_boundary;
	if (smtp_bounce_check_in(&in, error_r) < 0 ||
	    smtp_bounce_content(q, env, content_fd, &fd, &own, error_r) < 0)
		return -1;
	ret = smtp_bounce_make(q, &in, fd, id, &size, error_r);
	if (own)
		close(fd);
	if (ret < 0)
		return -1;
	strlcpy(new_id_r, id, new_id_size);
	log_info("%s: from=<>, size=%llu, nrcpt=1 (queue active)", id,
	    (unsigned long long)size);
	return 0;
}
