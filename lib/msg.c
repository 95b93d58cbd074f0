/*
 * msg.c: RFC 5322 header blocks, unfolding, dates, virtual sizes, the
 * message fingerprint, and msg_parse(), which gathers what the index keeps
 * about a message.
 *
 * SECURITY: every byte of the message is untrusted: it may come from any
 * sender on the Internet, or from an mbox another program wrote. Nothing
 * here allocates per byte, loops without consuming input, or reads outside
 * data[0..len); lengths come from the data and are checked against len.
 */
#include "config.h"
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include "buf.h"
#include "log.h"
#include "mime.h"
#include "msg.h"

static bool
msg_is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

static bool
msg_is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool
msg_is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static unsigned char
msg_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* msg_caseeq: data[0..len) equals the lowercase ASCII word, in any case. */
static bool
msg_caseeq(const unsigned char *data, size_t len, const char *word)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (word[i] == '\0' ||
		    msg_lower(data[i]) != (unsigned char)word[i])
			return false;
	}
	return word[len] == '\0';
}

/*
 * Header blocks
 */

/* msg_line_next: index just past the LF ending the line at pos, or len. */
static size_t
msg_line_next(const unsigned char *data, size_t len, size_t pos)
{
	const unsigned char *nl = memchr(data + pos, '\n', len - pos);

	return nl == NULL ? len : (size_t)(nl - data) + 1;
}

static bool
msg_line_is_empty(const unsigned char *line, size_t n)
{
	return (n == 1 && line[0] == '\n') ||
	    (n == 2 && line[0] == '\r' && line[1] == '\n');
}

/* msg_field_name_len: length of the field name at line[0] (trailing white
 * space excluded), or 0 if the line is not a header field. The scan stops
 * at the first byte that is neither a name byte nor SP/HT, so it never goes
 * past the line's LF. */
static size_t
msg_field_name_len(const unsigned char *line, size_t n)
{
	size_t i = 0, name_len;

	while (i < n && line[i] > ' ' && line[i] < 0x7f && line[i] != ':')
		i++;
	name_len = i;
	while (i < n && msg_is_wsp(line[i]))
		i++;
	if (name_len == 0 || i >= n || line[i] != ':')
		return 0;
	return name_len;
}

int
msg_header_iter(const unsigned char *data, size_t len, msg_header_cb *cb,
    void *ctx, size_t *hdr_size_r)
{
	size_t pos = 0, next, field = 0, name_len = 0, end = len;
	int ret;

	while (pos < len) {
		next = msg_line_next(data, len, pos);
		if (msg_line_is_empty(data + pos, next - pos)) {
			end = next;
			break;
		}
		/* A continuation line extends the open field, if any. */
		if (!msg_is_wsp(data[pos])) {
			if (name_len > 0 && (ret = cb(data + field, name_len,
			    data + field, pos - field, ctx)) != 0)
				return ret;
			name_len = msg_field_name_len(data + pos, len - pos);
			field = pos;
		}
		pos = next;
	}
	if (name_len > 0 && (ret = cb(data + field, name_len, data + field,
	    pos - field, ctx)) != 0)
		return ret;
	if (hdr_size_r != NULL)
		*hdr_size_r = end;
	return 0;
}

/* msg_append_prefix: append as much of p[0..n) as out can take; -1 if that
 * was not all of it. */
static int
msg_append_prefix(struct buf *out, const unsigned char *p, size_t n)
{
	size_t room = out->max - out->len;

	if (n <= room)
		return buf_append(out, p, n);
	buf_append(out, p, room);
	return -1;
}

int
msg_header_value(const unsigned char *raw, size_t raw_len, struct buf *out)
{
	const unsigned char *p, *end = raw + raw_len, *nl, *stop;
	bool leading = true;

	p = memchr(raw, ':', raw_len);
	if (p == NULL)
		return 0;
	for (p++; p < end; p = nl == NULL ? end : nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		stop = nl == NULL ? end : nl;
		if (nl != NULL && stop > p && stop[-1] == '\r')
			stop--;
		while (leading && p < stop && msg_is_wsp(*p))
			p++;
		if (p == stop)
			continue;
		leading = false;
		if (msg_append_prefix(out, p, (size_t)(stop - p)) < 0)
			return -1;
	}
	return 0;
}

/*
 * Dates
 */

struct msg_date {
	int day, mon, year, year_digits;	/* mon 1-12 */
	int hour, min, sec;
	int zone;				/* minutes east of UTC */
	bool have_day, have_mon, have_year, have_time;
	bool have_zone, zone_numeric;
};

static const char *const msg_month_names[12] = {
	"january", "february", "march", "april", "may", "june", "july",
	"august", "september", "october", "november", "december"
};

static const char *const msg_day_names[7] = {
	"monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
	"sunday"
};

static const struct {
	const char *name;
	int minutes;
} msg_zones[] = {
	{ "ut", 0 }, { "utc", 0 }, { "gmt", 0 }, { "z", 0 },
	{ "est", -5 * 60 }, { "edt", -4 * 60 }, { "cst", -6 * 60 },
	{ "cdt", -5 * 60 }, { "mst", -7 * 60 }, { "mdt", -6 * 60 },
	{ "pst", -8 * 60 }, { "pdt", -7 * 60 },
};

/* msg_word_abbrev: word (lowercase, wl >= 3 bytes) is a prefix of name,
 * so "sep", "sept" and "september" all name September. */
static bool
msg_word_abbrev(const char *word, size_t wl, const char *name)
{
	return wl >= 3 && wl <= strlen(name) && memcmp(word, name, wl) == 0;
}

/* msg_date_skip_comment: s is at '('; return what follows the matching
 * ')' (comments nest, '\' quotes the next byte), or the end of s. */
static const char *
msg_date_skip_comment(const char *s)
{
	int depth = 0;

	for (; *s != '\0'; s++) {
		if (*s == '\\' && s[1] != '\0')
			s++;
		else if (*s == '(')
			depth++;
		else if (*s == ')' && --depth == 0)
			return s + 1;
	}
	return s;
}

/* msg_date_num: read up to 9 digits at *sp; returns the digit count (0 if
 * none, -1 if more than 9) and the value in *val_r. */
static int
msg_date_num(const char **sp, int *val_r)
{
	const char *s = *sp;
	int v = 0, n = 0;

	while (msg_is_digit((unsigned char)*s)) {
		if (++n > 9)
			return -1;
		v = v * 10 + (*s++ - '0');
	}
	*sp = s;
	*val_r = v;
	return n;
}

/* msg_date_time: s is at the ':' after the hour digits. */
static int
msg_date_time(const char **sp, struct msg_date *d, int hour, int digits)
{
	const char *s = *sp + 1;
	int min, sec = 0;

	if (digits > 2 || msg_date_num(&s, &min) != 2)
		return -1;
	if (*s == ':' && (s++, msg_date_num(&s, &sec) != 2))
		return -1;
	if (*s == '.')			/* fractions of a second */
		while (msg_is_digit((unsigned char)*++s))
			;
	if (!d->have_time) {
		d->hour = hour;
		d->min = min;
		d->sec = sec;
		d->have_time = true;
	}
	*sp = s;
	return 0;
}

/* msg_date_iso: "YYYY-MM-DD", s at the first '-', year already read. */
static int
msg_date_iso(const char **sp, struct msg_date *d, int year)
{
	const char *s = *sp + 1;
	int mon, day;

	if (msg_date_num(&s, &mon) < 1 || *s != '-')
		return -1;
	s++;
	if (msg_date_num(&s, &day) < 1)
		return -1;
	if ((*s == 'T' || *s == 't') && msg_is_digit((unsigned char)s[1]))
		s++;
	d->year = year;
	d->year_digits = 4;
	d->mon = mon;
	d->day = day;
	d->have_year = d->have_mon = d->have_day = true;
	*sp = s;
	return 0;
}

static int
msg_date_numeric(const char **sp, struct msg_date *d)
{
	const char *s = *sp;
	int v, n;

	if ((n = msg_date_num(&s, &v)) < 0)
		return -1;
	*sp = s;
	if (*s == ':')
		return msg_date_time(sp, d, v, n);
	if (n == 4 && *s == '-' && msg_is_digit((unsigned char)s[1]) &&
	    !d->have_year && !d->have_mon)
		return msg_date_iso(sp, d, v);
	if (!d->have_day && n <= 2 && v >= 1 && v <= 31) {
		d->day = v;
		d->have_day = true;
	} else if (!d->have_year) {
		d->year = v;
		d->year_digits = n;
		d->have_year = true;
	}
	return 0;
}

/* msg_date_zone: s at '+' or '-' followed by a digit: "+hhmm", "+hh:mm",
 * "+hh". Other digit counts are skipped as garbage. */
static int
msg_date_zone(const char **sp, struct msg_date *d)
{
	const char *s = *sp;
	int sign = *s == '-' ? -1 : 1, v, n, hh, mm = 0;

	s++;
	if ((n = msg_date_num(&s, &v)) < 0)
		return -1;
	if (n == 4) {
		hh = v / 100;
		mm = v % 100;
	} else if (n <= 2) {
		hh = v;
		if (*s == ':' && msg_is_digit((unsigned char)s[1])) {
			s++;
			if (msg_date_num(&s, &mm) != 2)
				return -1;
		}
	} else {
		*sp = s;
		return 0;
	}
	if (mm >= 60)
		return -1;
	d->zone = sign * (hh * 60 + mm);
	d->have_zone = d->zone_numeric = true;
	*sp = s;
	return 0;
}

static void
msg_date_word_zone(const char *w, size_t wl, struct msg_date *d)
{
	size_t i;

	if (d->have_zone)
		return;
	for (i = 0; i < sizeof(msg_zones) / sizeof(msg_zones[0]); i++) {
		if (strlen(msg_zones[i].name) == wl &&
		    memcmp(msg_zones[i].name, w, wl) == 0) {
			d->zone = msg_zones[i].minutes;
			d->have_zone = true;
			return;
		}
	}
	/* RFC 5322 4.3: military zones were defined backwards and, like
	 * unknown names, mean "no information": treat as +0000. */
	if (wl == 1 && w[0] != 'j') {
		d->zone = 0;
		d->have_zone = true;
	}
}

static int
msg_date_word(const char **sp, struct msg_date *d)
{
	const char *s = *sp;
	char w[16];
	size_t wl = 0, i;

	for (; msg_is_alpha((unsigned char)*s); s++) {
		if (wl < sizeof(w))
			w[wl] = (char)msg_lower((unsigned char)*s);
		wl++;
	}
	*sp = s;
	if (wl > sizeof(w))
		return 0;
	for (i = 0; i < 12 && !d->have_mon; i++) {
		if (msg_word_abbrev(w, wl, msg_month_names[i])) {
			d->mon = (int)i + 1;
			d->have_mon = true;
			return 0;
		}
	}
	for (i = 0; i < 7; i++)
		if (msg_word_abbrev(w, wl, msg_day_names[i]))
			return 0;
	if (d->have_time && wl == 2 && w[1] == 'm' &&
	    (w[0] == 'a' || w[0] == 'p')) {
		if (d->hour < 1 || d->hour > 12)
			return -1;
		d->hour = d->hour % 12 + (w[0] == 'p' ? 12 : 0);
		return 0;
	}
	if (d->have_time)
		msg_date_word_zone(w, wl, d);
	return 0;
}

/* msg_days_before: days from 0001-01-01 to y-01-01 (proleptic Gregorian). */
static int64_t
msg_days_before(int64_t y)
{
	y--;
	return y * 365 + y / 4 - y / 100 + y / 400;
}

static bool
msg_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static time_t
msg_date_finish(struct msg_date *d)
{
	static const int mdays[12] = {
		31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
	};
	static const int ydays[12] = {
		0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334
	};
	int64_t days;
	int y = d->year;

	if (!d->have_day || !d->have_mon || !d->have_year)
		return -1;
	/* RFC 5322 4.3, obsolete years. */
	if (d->year_digits == 2)
		y += y < 50 ? 2000 : 1900;
	else if (d->year_digits == 3)
		y += 1900;
	if (y < 1 || y > 9999 || d->mon < 1 || d->mon > 12 || d->day < 1 ||
	    d->day > mdays[d->mon - 1] + (d->mon == 2 && msg_leap(y)) ||
	    d->hour > 23 || d->min > 59 || d->sec > 60)
		return -1;
	days = msg_days_before(y) - msg_days_before(1970) + ydays[d->mon - 1] +
	    (d->mon > 2 && msg_leap(y)) + d->day - 1;
	return (time_t)(days * 86400 + d->hour * 3600 + d->min * 60 + d->sec -
	    (int64_t)d->zone * 60);
}

time_t
msg_date_parse(const char *s)
{
	struct msg_date d;
	unsigned char c;
	int ret = 0;

	memset(&d, 0, sizeof(d));
	while (ret == 0 && (c = (unsigned char)*s) != '\0') {
		if (c == '(')
			s = msg_date_skip_comment(s);
		else if (msg_is_digit(c))
			ret = msg_date_numeric(&s, &d);
		else if (msg_is_alpha(c))
			ret = msg_date_word(&s, &d);
		else if ((c == '+' || c == '-') && d.have_time &&
		    !d.zone_numeric && msg_is_digit((unsigned char)s[1]))
			ret = msg_date_zone(&s, &d);
		else
			s++;	/* separators: white space , - / . */
	}
	return ret < 0 ? -1 : msg_date_finish(&d);
}

/*
 * Sizes and hashing
 */

uint64_t
msg_vsize(const unsigned char *data, size_t len)
{
	const unsigned char *p = data, *end = data + len, *nl;
	uint64_t size = len;

	if (len == 0)
		return 0;
	while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		if (nl == data || nl[-1] != '\r')
			size++;
		p = nl + 1;
	}
	return size;
}

#define MSG_H_P1	0x9e3779b185ebca87ULL
#define MSG_H_P2	0xc2b2ae3d27d4eb4fULL
#define MSG_H_P3	0x165667b19e3779f9ULL
#define MSG_H_P4	0x85ebca77c2b2ae63ULL
#define MSG_H_P5	0x27d4eb2f165667c5ULL

static uint64_t
msg_rotl(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

/* Little-endian loads, so the hash is the same on every machine. */
static inline uint64_t
msg_load64(const unsigned char *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
#else
	return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
	    (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
	    (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
#endif
}

static uint64_t
msg_load32(const unsigned char *p)
{
	return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
	    (uint64_t)p[3] << 24;
}

static uint64_t
msg_hash_round(uint64_t acc, uint64_t input)
{
	return msg_rotl(acc + input * MSG_H_P2, 31) * MSG_H_P1;
}

static uint64_t
msg_hash_merge(uint64_t h, uint64_t v)
{
	return (h ^ msg_hash_round(0, v)) * MSG_H_P1 + MSG_H_P4;
}

/* msg_hash_stripes: the four independent lanes over 32-byte stripes, which
 * is where the speed comes from; returns the merged state, *data_r and
 * *len_r moved past the stripes. */
static uint64_t
msg_hash_stripes(const unsigned char **data_r, size_t *len_r, uint64_t seed)
{
	const unsigned char *p = *data_r;
	size_t len = *len_r;
	uint64_t v1 = seed + MSG_H_P1 + MSG_H_P2, v2 = seed + MSG_H_P2;
	uint64_t v3 = seed, v4 = seed - MSG_H_P1, h;

	for (; len >= 32; p += 32, len -= 32) {
		v1 = msg_hash_round(v1, msg_load64(p));
		v2 = msg_hash_round(v2, msg_load64(p + 8));
		v3 = msg_hash_round(v3, msg_load64(p + 16));
		v4 = msg_hash_round(v4, msg_load64(p + 24));
	}
	h = msg_rotl(v1, 1) + msg_rotl(v2, 7) + msg_rotl(v3, 12) +
	    msg_rotl(v4, 18);
	h = msg_hash_merge(h, v1);
	h = msg_hash_merge(h, v2);
	h = msg_hash_merge(h, v3);
	h = msg_hash_merge(h, v4);
	*data_r = p;
	*len_r = len;
	return h;
}

/* XXH64, written from its published description (and checked against
 * libxxhash at every length from 0 to 1 KiB). */
uint64_t
msg_hash64(const unsigned char *data, size_t len, uint64_t seed)
{
	uint64_t total = len, h;

	h = len >= 32 ? msg_hash_stripes(&data, &len, seed) : seed + MSG_H_P5;
	h += total;
	for (; len >= 8; data += 8, len -= 8)
		h = msg_rotl(h ^ msg_hash_round(0, msg_load64(data)), 27) *
		    MSG_H_P1 + MSG_H_P4;
	if (len >= 4) {
		h = msg_rotl(h ^ (msg_load32(data) * MSG_H_P1), 23) *
		    MSG_H_P2 + MSG_H_P3;
		data += 4;
		len -= 4;
	}
	for (; len > 0; data++, len--)
		h = msg_rotl(h ^ (*data * MSG_H_P5), 11) * MSG_H_P1;
	h ^= h >> 33;
	h *= MSG_H_P2;
	h ^= h >> 29;
	h *= MSG_H_P3;
	h ^= h >> 32;
	return h;
}

/*
 * msg_parse
 */

struct msg_name {
	const char *name;	/* lowercase */
	size_t len;
};

#define MSG_NAME(s)	{ s, sizeof(s) - 1 }
static const struct msg_name msg_cached_names[] = {
	MSG_NAME("date"), MSG_NAME("subject"), MSG_NAME("from"),
	MSG_NAME("sender"), MSG_NAME("reply-to"), MSG_NAME("to"),
	MSG_NAME("cc"), MSG_NAME("bcc"), MSG_NAME("in-reply-to"),
	MSG_NAME("message-id"), MSG_NAME("references"),
	MSG_NAME("content-type"), MSG_NAME("content-transfer-encoding"),
	MSG_NAME("mime-version"), MSG_NAME("priority"),
	MSG_NAME("x-priority"), MSG_NAME("importance"),
	MSG_NAME("newsgroups"), MSG_NAME("list-id"), MSG_NAME("list-post"),
	MSG_NAME("list-unsubscribe"), MSG_NAME("disposition-notification-to"),
	MSG_NAME("return-path"), MSG_NAME("delivered-to"),
};

static const struct msg_name msg_envelope_names[] = {
	MSG_NAME("date"), MSG_NAME("subject"), MSG_NAME("from"),
	MSG_NAME("sender"), MSG_NAME("reply-to"), MSG_NAME("to"),
	MSG_NAME("cc"), MSG_NAME("bcc"), MSG_NAME("in-reply-to"),
	MSG_NAME("message-id"),
};

static bool
msg_name_in(const unsigned char *name, size_t name_len,
    const struct msg_name *names, size_t n)
{
	size_t i;

	/* Every header field of every message comes through here. */
	for (i = 0; i < n; i++) {
		if (names[i].len == name_len &&
		    msg_caseeq(name, name_len, names[i].name))
			return true;
	}
	return false;
}

bool
msg_cache_field(const unsigned char *name, size_t name_len)
{
	return msg_name_in(name, name_len, msg_cached_names,
	    sizeof(msg_cached_names) / sizeof(msg_cached_names[0]));
}

bool
msg_envelope_field(const unsigned char *name, size_t name_len)
{
	return msg_name_in(name, name_len, msg_envelope_names,
	    sizeof(msg_envelope_names) / sizeof(msg_envelope_names[0]));
}

struct msg_parse_ctx {
	struct msg_info *info;
	bool have_date, have_msgid;
	struct buf value;	/* Date: value, as a C string */
	struct buf msgid;	/* Message-ID: value */
};

static void
msg_cache(struct msg_info *info, const unsigned char *raw, size_t raw_len)
{
	if (raw_len > MSG_CACHE_FIELD_MAX ||
	    buf_append(&info->headers, raw, raw_len) < 0)
		info->headers_partial = true;
}

static int
msg_parse_field(const unsigned char *name, size_t name_len,
    const unsigned char *raw, size_t raw_len, void *vctx)
{
	struct msg_parse_ctx *ctx = vctx;

	if (!msg_cache_field(name, name_len))
		return 0;
	msg_cache(ctx->info, raw, raw_len);
	if (!ctx->have_date && msg_caseeq(name, name_len, "date")) {
		ctx->have_date = true;
		/* A Date: value longer than MSG_VALUE_MAX is garbage; its
		 * prefix is parsed like the rest. */
		msg_header_value(raw, raw_len, &ctx->value);
		ctx->info->date = msg_date_parse(buf_cstr(&ctx->value));
	} else if (!ctx->have_msgid && msg_caseeq(name, name_len,
	    "message-id")) {
		ctx->have_msgid = true;
		msg_header_value(raw, raw_len, &ctx->msgid);
		while (ctx->msgid.len > 0 &&
		    (msg_is_wsp(ctx->msgid.data[ctx->msgid.len - 1]) ||
		    ctx->msgid.data[ctx->msgid.len - 1] == '\r'))
			buf_truncate(&ctx->msgid, ctx->msgid.len - 1);
	}
	return 0;
}

static uint64_t
msg_count_lf(const unsigned char *data, size_t len)
{
	const unsigned char *p = data, *end = data + len, *nl;
	uint64_t n = 0;

	while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		n++;
		p = nl + 1;
	}
	return n;
}

void
msg_parse(const unsigned char *data, size_t len, struct msg_info *info)
{
	static const unsigned char empty[1];
	struct msg_parse_ctx ctx;
	struct mime_part *root;
	uint64_t lines, hdr_size;

	if (data == NULL)
		data = empty;
	memset(info, 0, sizeof(*info));
	buf_init(&info->headers, MSG_CACHE_MAX);
	buf_init(&info->mime, SIZE_MAX);
	info->date = -1;
	memset(&ctx, 0, sizeof(ctx));
	ctx.info = info;
	buf_init(&ctx.value, MSG_VALUE_MAX);
	buf_init(&ctx.msgid, MSG_VALUE_MAX);

	root = mime_parse(data, len);
	hdr_size = root->hdr_psize;
	msg_header_iter(data, (size_t)hdr_size, msg_parse_field, &ctx, NULL);
	info->psize = len;
	info->vsize = root->hdr_vsize + root->body_vsize;
	info->no_final_lf = len > 0 && data[len - 1] != '\n';
	/* The header block ends with its LF unless it runs to the end. */
	lines = msg_count_lf(data, (size_t)hdr_size) + root->body_lines;
	if (root->body_psize == 0 && len > 0 && data[len - 1] != '\n')
		lines++;
	info->lines = lines > UINT32_MAX ? UINT32_MAX : (uint32_t)lines;
	info->fingerprint = msg_hash64(data + hdr_size, len - (size_t)hdr_size,
	    0);
	if (ctx.have_msgid)
		info->fingerprint = msg_hash64(ctx.msgid.data == NULL ? empty :
		    ctx.msgid.data, ctx.msgid.len, info->fingerprint);
	if (mime_serialize(root, &info->mime) < 0)
		log_panic("msg_parse: MIME tree does not fit a buffer");
	mime_part_free(&root);
	buf_free(&ctx.value);
	buf_free(&ctx.msgid);
}

void
msg_info_free(struct msg_info *info)
{
	buf_free(&info->headers);
	buf_free(&info->mime);
}
