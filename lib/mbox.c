/*
 * mbox.c: mboxrd writing (From_ line, ">From " escaping, rollback on
 * error), scanning and un-escaping (see mbox.h for the format).
 *
 * Trusts its caller for the fd (open, locked) and the sender (an envelope
 * address the SMTP side checked; still, bytes that would break the From_
 * line are replaced). Trusts nothing in the file it scans or the message
 * it escapes: both are arbitrary bytes, NULs included, and every offset is
 * checked against the length.
 */
#include "config.h"
#include <sys/types.h>
#include <sys/stat.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "log.h"
#include "mbox.h"
#include "xmalloc.h"

#define MBOX_CHUNK	(64 * 1024)	/* escaped bytes gathered per write */

/* Collects output in a chunk and writes it in large pieces. */
struct mbox_writer {
	int fd;
	unsigned char *chunk;	/* owned, MBOX_CHUNK bytes */
	size_t len;		/* bytes waiting in chunk */
	uint64_t total;		/* bytes accepted so far */
};

static char mbox_error_buf[256];

static const char * __attribute__((format(printf, 1, 2)))
mbox_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(mbox_error_buf, sizeof(mbox_error_buf), fmt, ap);
	va_end(ap);
	return mbox_error_buf;
}

static int
mbox_write_all(int fd, const unsigned char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
mbox_flush(struct mbox_writer *w)
{
	int ret = mbox_write_all(w->fd, w->chunk, w->len);

	w->len = 0;
	return ret;
}

static int
mbox_put(struct mbox_writer *w, const void *p, size_t n)
{
	if (n > MBOX_CHUNK - w->len && mbox_flush(w) < 0)
		return -1;
	w->total += n;
	if (n >= MBOX_CHUNK)
		return mbox_write_all(w->fd, p, n);
	memcpy(w->chunk + w->len, p, n);
	w->len += n;
	return 0;
}

/* The next line at or after *pos that matches ^>*From : its start in
 * *line_r and its count of '>' in *quotes_r. Finds "From " and looks back,
 * so a message with no such line costs one memmem() pass. */
static bool
mbox_find_from_line(const unsigned char *d, size_t len, size_t *pos,
    size_t *line_r, size_t *quotes_r)
{
	const unsigned char *hit;
	size_t i, b;

	while (*pos < len &&
	    (hit = memmem(d + *pos, len - *pos, "From ", 5)) != NULL) {
		i = (size_t)(hit - d);
		*pos = i + 5;
		for (b = i; b > 0 && d[b - 1] == '>'; b--)
			;
		if (b == 0 || d[b - 1] == '\n') {
			*line_r = b;
			*quotes_r = i - b;
			return true;
		}
	}
	return false;
}

static int
mbox_escape_write(struct mbox_writer *w, const unsigned char *msg,
    size_t len)
{
	size_t pos = 0, run = 0, line, quotes;

	while (mbox_find_from_line(msg, len, &pos, &line, &quotes)) {
		if (mbox_put(w, msg + run, line - run) < 0 ||
		    mbox_put(w, ">", 1) < 0)
			return -1;
		run = line;
	}
	return mbox_put(w, msg + run, len - run);
}

int
mbox_unescape(const unsigned char *data, size_t len, struct buf *out)
{
	size_t pos = 0, run = 0, line, quotes, orig = out->len;
	bool changed = false;

	while (mbox_find_from_line(data, len, &pos, &line, &quotes)) {
		if (quotes == 0)
			continue;
		if (buf_append(out, data + run, line - run) < 0)
			goto full;
		run = line + 1;
		changed = true;
	}
	if (!changed)
		return 0;
	if (buf_append(out, data + run, len - run) < 0)
		goto full;
	return 1;
full:
	buf_truncate(out, orig);
	return -1;
}

/* Length of the empty line ("\n" or "\r\n") that ends just before off,
 * after a line end of its own; 0 if there is none. */
static size_t
mbox_sep_before(const unsigned char *map, size_t off)
{
	if (off >= 2 && map[off - 1] == '\n' && map[off - 2] == '\n')
		return 1;
	if (off >= 3 && map[off - 1] == '\n' && map[off - 2] == '\r' &&
	    map[off - 3] == '\n')
		return 2;
	return 0;
}

static const char mbox_days[7][4] = {
	"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
};
static const char mbox_months[12][4] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
};

size_t
mbox_from_format(char *out, size_t outsize, const char *sender, time_t when)
{
	char s[MBOX_SENDER_MAX + 1];
	struct tm tm;
	size_t i;
	int n;

	if (sender == NULL || *sender == '\0')
		sender = "MAILER-DAEMON";
	for (i = 0; i < MBOX_SENDER_MAX && sender[i] != '\0'; i++) {
		unsigned char c = (unsigned char)sender[i];

		/* A space would move the date, a newline forge a message. */
		s[i] = c <= 0x20 || c == 0x7f ? '_' : (char)c;
	}
	s[i] = '\0';
	if (localtime_r(&when, &tm) == NULL) {
		when = 0;
		if (localtime_r(&when, &tm) == NULL)
			return 0;
	}
	n = snprintf(out, outsize, "From %s %s %s %2d %02d:%02d:%02d %lld\n",
	    s, mbox_days[tm.tm_wday % 7], mbox_months[tm.tm_mon % 12],
	    tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    (long long)tm.tm_year + 1900);
	return n < 0 || (size_t)n >= outsize ? 0 : (size_t)n;
}

/* A cursor over the bytes of a From_ line, for the date parser. */
struct mbox_cur {
	const unsigned char *p;
	size_t n;
};

static int
mbox_cur_name(struct mbox_cur *c, const char (*names)[4], int count)
{
	int i;

	if (c->n < 3)
		return -1;
	for (i = 0; i < count; i++) {
		if (strncasecmp((const char *)c->p, names[i], 3) == 0) {
			c->p += 3;
			c->n -= 3;
			return i;
		}
	}
	return -1;
}

/* One or more spaces; -1 if none. */
static int
mbox_cur_spaces(struct mbox_cur *c)
{
	size_t k = 0;

	while (k < c->n && c->p[k] == ' ')
		k++;
	c->p += k;
	c->n -= k;
	return k > 0 ? 0 : -1;
}

/* A number of min..max digits in *v_r; -1 if there is none. */
static int
mbox_cur_num(struct mbox_cur *c, size_t min, size_t max, int *v_r)
{
	size_t k = 0;
	int v = 0;

	while (k < c->n && k < max && c->p[k] >= '0' && c->p[k] <= '9')
		v = v * 10 + (c->p[k++] - '0');
	if (k < min || (k < c->n && c->p[k] >= '0' && c->p[k] <= '9'))
		return -1;
	c->p += k;
	c->n -= k;
	*v_r = v;
	return 0;
}

static int
mbox_cur_char(struct mbox_cur *c, unsigned char ch)
{
	if (c->n == 0 || c->p[0] != ch)
		return -1;
	c->p++;
	c->n--;
	return 0;
}

/* "hh:mm[:ss]" into tm. */
static int
mbox_parse_clock(struct mbox_cur *c, struct tm *tm)
{
	if (mbox_cur_num(c, 1, 2, &tm->tm_hour) < 0 ||
	    mbox_cur_char(c, ':') < 0 ||
	    mbox_cur_num(c, 2, 2, &tm->tm_min) < 0)
		return -1;
	if (mbox_cur_char(c, ':') == 0 &&
	    mbox_cur_num(c, 2, 2, &tm->tm_sec) < 0)
		return -1;
	return tm->tm_hour > 23 || tm->tm_min > 59 || tm->tm_sec > 60 ?
	    -1 : 0;
}

/* The year, perhaps after a zone ("PST 2026", "+0100 2026"). */
static int
mbox_parse_year(struct mbox_cur *c, struct tm *tm)
{
	int year;

	if (c->n > 0 && (c->p[0] < '0' || c->p[0] > '9')) {
		while (c->n > 0 && c->p[0] != ' ') {
			c->p++;
			c->n--;
		}
		if (mbox_cur_spaces(c) < 0)
			return -1;
	}
	if (mbox_cur_num(c, 4, 4, &year) < 0 || year < 1900)
		return -1;
	tm->tm_year = year - 1900;
	return 0;
}

/* An asctime-like date at the start of c (anything may follow it). */
static int
mbox_parse_date(struct mbox_cur *c, time_t *t_r)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (mbox_cur_name(c, mbox_days, 7) < 0 || mbox_cur_spaces(c) < 0 ||
	    (tm.tm_mon = mbox_cur_name(c, mbox_months, 12)) < 0 ||
	    mbox_cur_spaces(c) < 0 ||
	    mbox_cur_num(c, 1, 2, &tm.tm_mday) < 0 || tm.tm_mday < 1 ||
	    tm.tm_mday > 31 || mbox_cur_spaces(c) < 0 ||
	    mbox_parse_clock(c, &tm) < 0 || mbox_cur_spaces(c) < 0 ||
	    mbox_parse_year(c, &tm) < 0)
		return -1;
	tm.tm_isdst = -1;
	*t_r = mktime(&tm);
	return 0;
}

static void
mbox_set_sender(struct mbox_entry *e, const unsigned char *p, size_t n)
{
	if (n > sizeof(e->sender) - 1)
		n = sizeof(e->sender) - 1;
	memcpy(e->sender, p, n);
	e->sender[n] = '\0';
}

void
mbox_from_parse(const unsigned char *line, size_t len, struct mbox_entry *e)
{
	const unsigned char *p, *nl;
	struct mbox_cur c;
	size_t i, n;

	e->sender[0] = '\0';
	e->from_time = -1;
	if (len > MBOX_FROM_LINE_MAX)
		len = MBOX_FROM_LINE_MAX;
	if ((nl = memchr(line, '\n', len)) != NULL)
		len = (size_t)(nl - line);
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len < 5 || memcmp(line, "From ", 5) != 0)
		return;
	p = line + 5;
	n = len - 5;
	for (i = 0; i < n; i++) {
		if (p[i] != ' ')
			continue;
		c.p = p + i + 1;
		c.n = n - i - 1;
		if (mbox_parse_date(&c, &e->from_time) == 0) {
			/* procmail writes two spaces before the date. */
			while (i > 0 && p[i - 1] == ' ')
				i--;
			mbox_set_sender(e, p, i);
			return;
		}
	}
	nl = memchr(p, ' ', n);
	mbox_set_sender(e, p, nl != NULL ? (size_t)(nl - p) : n);
}

/* The offset of the first From_ line in map[from..len), or len; its
 * preceding empty line's length in *sep_r. */
static size_t
mbox_next_from(const unsigned char *map, size_t len, size_t from,
    size_t *sep_r)
{
	const unsigned char *hit;
	size_t p;

	while (from < len &&
	    (hit = memmem(map + from, len - from, "\nFrom ", 6)) != NULL) {
		p = (size_t)(hit - map) + 1;
		if ((*sep_r = mbox_sep_before(map, p)) > 0)
			return p;
		from = p;
	}
	*sep_r = mbox_sep_before(map, len);
	return len;
}

static bool
mbox_is_from_line(const unsigned char *map, size_t len, size_t off)
{
	return len - off >= 5 && memcmp(map + off, "From ", 5) == 0 &&
	    (off == 0 || mbox_sep_before(map, off) > 0);
}

int
mbox_scan(const unsigned char *map, size_t len, uint64_t start,
    int (*cb)(const struct mbox_entry *e, void *ctx), void *ctx)
{
	struct mbox_entry e;
	const unsigned char *nl;
	size_t pos, next, sep, end;
	int ret;

	if (start == len)
		return 0;
	if (start > len || !mbox_is_from_line(map, len, (size_t)start))
		return -1;
	for (pos = (size_t)start; pos < len; pos = next) {
		memset(&e, 0, sizeof(e));
		e.from_offset = pos;
		nl = memchr(map + pos, '\n', len - pos);
		e.data_offset = nl != NULL ? (size_t)(nl - map) + 1 : len;
		mbox_from_parse(map + pos, e.data_offset - pos, &e);
		next = mbox_next_from(map, len, e.data_offset, &sep);
		end = next - sep;
		e.data_len = end > e.data_offset ? end - e.data_offset : 0;
		if ((ret = cb(&e, ctx)) != 0)
			return ret < 0 ? -1 : 0;
	}
	return 0;
}

/* Newlines to write before our From_ line so that it follows an empty
 * line: 0 for an empty file or one that ends with an empty line, 1 after
 * a complete line, 2 after a cut one. -1 if the end cannot be read. */
static int
mbox_pad_needed(int fd, off_t size)
{
	unsigned char tail[3];
	size_t n = size < 3 ? (size_t)size : 3;
	ssize_t r;

	if (size == 0)
		return 0;
	do {
		r = pread(fd, tail, n, size - (off_t)n);
	} while (r < 0 && errno == EINTR);
	if (r != (ssize_t)n) {
		if (r >= 0)
			errno = EIO;
		return -1;
	}
	if (tail[n - 1] != '\n')
		return 2;
	return mbox_sep_before(tail, n) > 0 ? 0 : 1;
}

/* Everything after the noted size: padding, From_ line, message,
 * separator. *data_len_r as mbox.h says. */
static int
mbox_write_message(struct mbox_writer *w, int pad, const char *from,
    size_t from_len, const unsigned char *msg, size_t len,
    uint64_t *data_len_r)
{
	uint64_t data_start;

	if (mbox_put(w, "\n\n", (size_t)pad) < 0 ||
	    mbox_put(w, from, from_len) < 0)
		return -1;
	data_start = w->total;
	if (mbox_escape_write(w, msg, len) < 0 ||
	    (len > 0 && msg[len - 1] != '\n' && mbox_put(w, "\n", 1) < 0))
		return -1;
	*data_len_r = w->total - data_start;
	if (mbox_put(w, "\n", 1) < 0)
		return -1;
	return mbox_flush(w);
}

/* Put the file back as it was; errno is kept for the caller. */
static void
mbox_rollback(int fd, off_t size)
{
	struct stat st;
	int saved_errno = errno;

	/* Skipped if nothing reached the file (an fd not open for writing
	 * cannot be truncated either). */
	if ((fstat(fd, &st) < 0 || st.st_size != size) &&
	    ftruncate(fd, size) < 0)
		log_error("cannot truncate mbox back to %lld bytes after a "
		    "failed write, it may hold a partial message: %s",
		    (long long)size, strerror(errno));
	/* Without O_APPEND the next write would leave a hole. */
	if (lseek(fd, size, SEEK_SET) < 0)
		log_warning("lseek after truncate failed: %s",
		    strerror(errno));
	errno = saved_errno;
}

int
mbox_append(int fd, const char *sender, time_t when,
    const unsigned char *msg, size_t len, bool do_fsync,
    uint64_t *from_offset_r, uint64_t *data_offset_r, uint64_t *data_len_r,
    const char **error_r)
{
	char from[MBOX_SENDER_MAX + 64];
	struct mbox_writer w;
	struct stat st;
	size_t from_len;
	uint64_t data_len;
	int pad;

	from_len = mbox_from_format(from, sizeof(from), sender, when);
	if (fstat(fd, &st) < 0 || (pad = mbox_pad_needed(fd, st.st_size)) < 0 ||
	    lseek(fd, st.st_size, SEEK_SET) < 0) {
		*error_r = mbox_error("cannot read mbox end: %s",
		    strerror(errno));
		return -1;
	}
	w.fd = fd;
	w.chunk = xmalloc(MBOX_CHUNK);
	w.len = 0;
	w.total = 0;
	if (from_len == 0)
		errno = EINVAL;
	if (from_len == 0 || mbox_write_message(&w, pad, from, from_len, msg,
	    len, &data_len) < 0 || (do_fsync && fsync(fd) < 0)) {
		*error_r = mbox_error("cannot write to mbox: %s",
		    strerror(errno));
		mbox_rollback(fd, st.st_size);
		free(w.chunk);
		return -1;
	}
	free(w.chunk);
	*from_offset_r = (uint64_t)st.st_size + (uint64_t)pad;
	*data_offset_r = *from_offset_r + from_len;
	*data_len_r = data_len;
	return 0;
}
