/*
 * Unit tests for lib/msg.c: header iteration (including every shortened
 * copy of a header, in buffers of exact size so ASan sees any overread),
 * unfolding, the date table, virtual sizes, the hash, and msg_parse: sizes,
 * lines, cached headers and their limits at N and N+1, the fingerprint, and
 * the MIME blob, over inline messages and the t/data/mime corpus.
 */
#include "config.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "buf.h"
#include "mime.h"
#include "msg.h"
#include "xmalloc.h"
#include "tap.h"

/* exact: a copy of s[0..n) in a buffer of exactly n bytes. */
static unsigned char *
exact(const void *s, size_t n)
{
	unsigned char *p = xmalloc(n == 0 ? 1 : n);

	if (n > 0)
		memcpy(p, s, n);
	return p;
}

/*
 * msg_header_iter
 */

struct fields {
	const unsigned char *base;
	size_t len;
	struct buf text;	/* "name|raw" per field, joined with '#' */
	size_t n;
	int stop_at;		/* return 7 at this field (1-based), or 0 */
	bool out_of_range;
};

static int
collect(const unsigned char *name, size_t name_len, const unsigned char *raw,
    size_t raw_len, void *ctx)
{
	struct fields *f = ctx;

	if (name < f->base || raw < f->base || raw + raw_len > f->base +
	    f->len || name + name_len > raw + raw_len || name != raw)
		f->out_of_range = true;
	f->n++;
	if (f->n > 1)
		buf_append_byte(&f->text, '#');
	buf_append(&f->text, name, name_len);
	buf_append_byte(&f->text, '|');
	buf_append(&f->text, raw, raw_len);
	return f->stop_at > 0 && (size_t)f->stop_at == f->n ? 7 : 0;
}

/* iter: run msg_header_iter over s[0..n) copied exactly; returns the
 * fields as "name|raw#name|raw" and the header size. */
static char *
iter(const char *s, size_t n, size_t *hdr_size_r, int *ret_r, int stop_at)
{
	struct fields f;
	unsigned char *p = exact(s, n);
	char *out;

	memset(&f, 0, sizeof(f));
	f.base = p;
	f.len = n;
	f.stop_at = stop_at;
	buf_init(&f.text, SIZE_MAX);
	*hdr_size_r = 12345;
	*ret_r = msg_header_iter(p, n, collect, &f, hdr_size_r);
	out = xstrdup(buf_cstr(&f.text));
	if (f.out_of_range)
		diag("field pointers outside the data");
	buf_free(&f.text);
	free(p);
	return out;
}

static void
is_iter(const char *s, size_t n, const char *want, size_t want_size,
    const char *what)
{
	size_t size;
	int ret;
	char *got = iter(s, n, &size, &ret, 0);

	is_string(got, want, "iter %s: fields", what);
	is_int(size, want_size, "iter %s: header size", what);
	free(got);
}

#define IS_ITER(s, want, size, what) is_iter(s, sizeof(s) - 1, want, size, what)

static void
test_iter(void)
{
	size_t size;
	int ret;
	char *got;

	IS_ITER("From: a\nSubject: hello\n world\n\tagain\nX-Bad line\n cont"
	    "\nTo : b\n\nbody\nNot: header\n",
	    "From|From: a\n#Subject|Subject: hello\n world\n\tagain\n"
	    "#To|To : b\n", 62, "folding, junk line, space before colon");
	IS_ITER("A: 1\r\nB: 2\r\n  more\r\n\r\nbody", "A|A: 1\r\n#B|B: 2\r\n"
	    "  more\r\n", 22, "CRLF");
	IS_ITER("A: 1\nB: 2", "A|A: 1\n#B|B: 2", 9, "no separator");
	IS_ITER("", "", 0, "empty");
	IS_ITER("\nA: 1\n", "", 1, "separator first");
	IS_ITER("\r\nA: 1\n", "", 2, "CRLF separator first");
	IS_ITER(" x\n\ty\nA: 1\n\n", "A|A: 1\n", 12, "continuation at start");
	IS_ITER("Caf\xc3\xa9: x\n more\nB: y\n\n", "B|B: y\n", 21,
	    "8-bit name skipped with its continuation");
	IS_ITER("A: x\ry\n\r\r\nB: 2\n\n", "A|A: x\ry\n#B|B: 2\n", 16,
	    "bare CR is no line ending");
	IS_ITER("From a@b Mon Jan  1 10:00:00 2024\nA: 1\n\n", "A|A: 1\n",
	    40, "mbox From_ line skipped");
	IS_ITER(": x\nA\t :1\n\n", "A|A\t :1\n", 11, "empty name skipped");
	IS_ITER("A: 1\n\n", "A|A: 1\n", 6, "LF separator");
	IS_ITER("A:\n", "A|A:\n", 3, "empty value");
	is_iter("A: x\0y\nB: 2\n\n", 13, "A|A: x", 13, "NUL (shown cut)");

	got = iter("A: 1\nB: 2\nC: 3\n\n", 16, &size, &ret, 2);
	is_int(ret, 7, "iter: the callback's value stops the walk");
	is_string(got, "A|A: 1\n#B|B: 2\n", "iter: no field after the stop");
	is_int(size, 12345, "iter: header size not set when stopped");
	free(got);
	ok(msg_header_iter(NULL, 0, collect, NULL, NULL) == 0,
	    "iter: NULL data of length 0, NULL hdr_size_r");
}

/* Every shortened copy of a header: pointers stay inside, the size never
 * passes the length, and fields only appear as the copy grows. */
static void
test_iter_shortened(void)
{
	static const char hdr[] = "Return-Path: <a@b>\r\nSubject: one\r\n two"
	    "\n\tthree\r\nX-8bit: caf\xc3\xa9\nbad line\n  cont\nTo:x\r\r\n"
	    "Cc : y\n\r\nbody: not a field\n";
	size_t n, size, prev_fields = 0, fields;
	int ret, bad = 0;
	char *got;
	const char *p;

	for (n = sizeof(hdr) - 1; n != (size_t)-1; n--) {
		got = iter(hdr, n, &size, &ret, 0);
		for (fields = 0, p = got; *p != '\0'; p++)
			fields += *p == '#';
		fields += *got != '\0';
		if (ret != 0 || size > n ||
		    (n < sizeof(hdr) - 1 && fields > prev_fields))
			bad++;
		prev_fields = fields;
		free(got);
	}
	is_int(bad, 0, "iter over %zu shortened copies", sizeof(hdr));
}

/*
 * msg_header_value
 */

static void
is_value(const char *raw, size_t n, size_t max, const char *want,
    size_t want_len, int want_ret, const char *what)
{
	struct buf out;
	unsigned char *p = exact(raw, n);

	buf_init(&out, max);
	is_int(msg_header_value(p, n, &out), want_ret, "value %s: returns",
	    what);
	is_mem(out.data == NULL ? (const unsigned char *)"" : out.data,
	    out.len, want, want_len, "value %s: bytes", what);
	buf_free(&out);
	free(p);
}

#define IS_VALUE(raw, want, what) is_value(raw, sizeof(raw) - 1, \
	SIZE_MAX, want, sizeof(want) - 1, 0, what)

static void
test_value(void)
{
	struct buf out;

	IS_VALUE("Subject: hello\n", "hello", "plain");
	IS_VALUE("Subject:   hello  world \r\n", "hello  world ",
	    "leading white space dropped, trailing kept");
	IS_VALUE("Subject: a\r\n b\r\n\tc\r\n", "a b\tc", "unfolded");
	IS_VALUE("Subject:\r\n  folded start\n", "folded start",
	    "fold right after the colon");
	IS_VALUE("Subject:\n", "", "empty");
	IS_VALUE("Subject: x\ry\r", "x\ry\r", "bare CR kept");
	IS_VALUE("A: x\0y\n", "x\0y", "NUL kept");
	IS_VALUE("A: a:b\n", "a:b", "only the first colon counts");
	IS_VALUE("no colon\n", "", "no colon");
	is_value("S: 123456789\n", 13, 9, "123456789", 9, 0, "at max");
	is_value("S: 1234567890\n", 14, 9, "123456789", 9, -1, "past max");
	is_value("S: 12\n 34567890\n", 16, 5, "12 34", 5, -1,
	    "past max across a fold");
	buf_init(&out, SIZE_MAX);
	buf_append_str(&out, "X");
	msg_header_value((const unsigned char *)"S: y\n", 5, &out);
	is_string(buf_cstr(&out), "Xy", "value appends");
	buf_free(&out);
}

/*
 * msg_date_parse
 */

static const struct {
	const char *s;
	long long t;
} dates[] = {
	{ "Mon, 1 Jan 2024 10:00:00 +0100", 1704099600 },
	{ "1 Jan 2024 10:00:00 +0100", 1704099600 },
	{ "Mon, 01 Jan 2024 10:00 +0100", 1704099600 },
	{ "Mon, 1 Jan 24 10:00:00 +0100", 1704099600 },
	{ "mon, 1 jan 2024 10:00:00 gmt", 1704103200 },
	{ "1 Jan 99 00:00:00 GMT", 915148800 },
	{ "1 Jan 49 00:00:00 GMT", 2493072000LL },
	{ "1 Jan 50 00:00:00 GMT", -631152000 },
	{ "1 Jan 101 00:00:00 GMT", 978307200 },
	{ "Mon, 1 Jan 2024 10:00:00 EST", 1704121200 },
	{ "Mon, 1 Jan 2024 10:00:00 PDT", 1704128400 },
	{ "Mon, 1 Jan 2024 10:00:00 UT", 1704103200 },
	{ "Mon, 1 Jan 2024 10:00:00 Z", 1704103200 },
	{ "Mon, 1 Jan 2024 10:00:00 A", 1704103200 },
	{ "Mon, 1 Jan 2024 10:00:00 CET", 1704103200 },
	{ "Mon, 1 Jan 2024 10:00:00", 1704103200 },
	{ "Mon, 1 Jan 2024 10:00:00 -0500 (EST)", 1704121200 },
	{ "Mon, 1 Jan 2024 10:00:00 +0000 (Coordinated (Universal) Time)",
	    1704103200 },
	{ "(early) Mon, 1 Jan 2024 10:00:00 +0000", 1704103200 },
	{ "Monday, 1 January 2024 10:00:00 +0000", 1704103200 },
	{ "Sun, 1 Sept 2024 10:00:00 +0000", 1725184800 },
	{ "Mon, 1-Jan-2024 10:00:00 +0000", 1704103200 },
	{ "Mon Jan  1 10:00:00 2024", 1704103200 },
	{ "Mon Jan  1 10:00:00 EST 2024", 1704121200 },
	{ "2024-01-01 10:00:00", 1704103200 },
	{ "2024-01-01T10:00:00Z", 1704103200 },
	{ "2024-01-01T10:00:00+02:00", 1704096000 },
	{ "1 Jan 2024 10:00:00 GMT+0100", 1704099600 },
	{ "1 Jan 2024 10:00:00 +01:30", 1704097800 },
	{ "1 Jan 2024 10:00:00 PM +0000", 1704146400 },
	{ "1 Jan 2024 12:30:00 AM +0000", 1704069000 },
	{ "1 Jan 2024 10:00:00.123 +0000", 1704103200 },
	{ "1 Jan 2024 10:00:60 +0000", 1704103260 },
	{ "1 Jan 2024", 1704067200 },
	{ "29 Feb 2024 00:00:00 +0000", 1709164800 },
	{ "1 Jan 1970 00:00:00 +0000", 0 },
	{ "1 Jan 1900 00:00:00 +0000", -2208988800LL },
	{ "Fri, 13 Feb 2009 23:31:30 +0000", 1234567890 },
	{ "31 Dec 9999 23:59:59 +0000", 253402300799LL },
	{ "29 Feb 2023 00:00:00 +0000", -1 },
	{ "31 Apr 2024 00:00:00 +0000", -1 },
	{ "1 Jan 2024 24:00:00 +0000", -1 },
	{ "1 Jan 2024 10:60:00 +0000", -1 },
	{ "1 Jan 2024 10:00:00 +0160", -1 },
	{ "1 Jan 2024 1:2:3 +0000", -1 },
	{ "1 Jan 1234567890123 10:00:00", -1 },
	{ "1 Jan 2024 13:00:00 PM", -1 },
	{ "", -1 },
	{ "garbage", -1 },
	{ "Jan 2024", -1 },
	{ "1 2024 10:00:00", -1 },
	{ "(unterminated 1 Jan 2024", -1 },
};

static void
test_dates(void)
{
	size_t i;

	for (i = 0; i < sizeof(dates) / sizeof(dates[0]); i++)
		is_int(msg_date_parse(dates[i].s), dates[i].t, "date \"%s\"",
		    dates[i].s);
}

/*
 * Sizes and hash
 */

static void
test_vsize(void)
{
	static const struct {
		const char *s;
		size_t len;
		uint64_t vsize;
	} t[] = {
		{ "", 0, 0 }, { "a", 1, 1 }, { "\n", 1, 2 }, { "\r\n", 2, 2 },
		{ "\r", 1, 1 }, { "a\nb\n", 4, 6 }, { "\r\r\n", 3, 3 },
		{ "\n\r\n", 3, 4 }, { "\n\n", 2, 4 }, { "x\r\n\n", 4, 5 },
		{ "\0\n", 2, 3 },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		unsigned char *p = exact(t[i].s, t[i].len);

		is_int(msg_vsize(p, t[i].len), t[i].vsize, "vsize #%zu", i);
		free(p);
	}
}

static void
test_hash(void)
{
	const unsigned char *s = (const unsigned char *)
	    "0123456789abcdef0123456789abcdef";
	uint64_t h[33];
	size_t i, j, same = 0;

	/* Stored in indexes: these values must never change. They are
	 * XXH64's, as computed by libxxhash. */
	is_int(msg_hash64(s, 0, 0) == 0xef46db3751d8e999ULL, 1,
	    "hash of nothing is XXH64's");
	is_int(msg_hash64(s, 32, 0) == 0x642a94958e71e6c5ULL, 1,
	    "hash of 32 bytes (four lanes) is XXH64's");
	is_int(msg_hash64((const unsigned char *)"body\n", 5, 0) ==
	    0x5836805aa5f21089ULL, 1, "hash of 5 bytes is XXH64's");
	for (i = 0; i <= 32; i++)
		h[i] = msg_hash64(s, i, 0);
	for (i = 0; i <= 32; i++)
		for (j = i + 1; j <= 32; j++)
			same += h[i] == h[j];
	is_int(same, 0, "every length from 0 to 32 hashes differently");
	ok(msg_hash64(s, 5, 1) != msg_hash64(s, 5, 0), "the seed matters");
}

static void
test_cache_names(void)
{
	ok(msg_cache_field((const unsigned char *)"SUBJECT", 7), "SUBJECT");
	ok(msg_cache_field((const unsigned char *)"x-Priority", 10),
	    "x-Priority");
	ok(msg_cache_field((const unsigned char *)
	    "Disposition-Notification-To", 27), "Disposition-Notification-To");
	ok(!msg_cache_field((const unsigned char *)"Subjects", 8), "Subjects");
	ok(!msg_cache_field((const unsigned char *)"Subjec", 6), "Subjec");
	ok(!msg_cache_field((const unsigned char *)"Received", 8), "Received");
	ok(!msg_cache_field((const unsigned char *)"", 0), "empty name");
	ok(msg_envelope_field((const unsigned char *)"In-Reply-To", 11),
	    "In-Reply-To is an envelope field");
	ok(msg_envelope_field((const unsigned char *)"bcc", 3),
	    "bcc is an envelope field");
	ok(!msg_envelope_field((const unsigned char *)"References", 10),
	    "References is not");
	ok(!msg_envelope_field((const unsigned char *)"Content-Type", 12),
	    "Content-Type is not");
}

/*
 * msg_parse
 */

static void
parse_str(const char *s, size_t n, struct msg_info *info)
{
	unsigned char *p = exact(s, n);

	msg_parse(p, n, info);
	free(p);
}

#define PARSE(s, info) parse_str(s, sizeof(s) - 1, info)

static uint64_t
fingerprint(const char *s)
{
	struct msg_info info;
	uint64_t fp;

	parse_str(s, strlen(s), &info);
	fp = info.fingerprint;
	msg_info_free(&info);
	return fp;
}

static void
test_parse_simple(void)
{
	static const char m[] = "Return-Path: <a@example.org>\n"
	    "Received: from x by y\n"
	    "Date: Mon, 1 Jan 2024 10:00:00 +0100\n"
	    "SUBJECT: hi\n\tthere\n"
	    "X-Other: no\n"
	    "Message-ID: <1@example.org>\n"
	    "\n"
	    "body\r\nline 2\n";
	static const char cached[] = "Return-Path: <a@example.org>\n"
	    "Date: Mon, 1 Jan 2024 10:00:00 +0100\n"
	    "SUBJECT: hi\n\tthere\n"
	    "Message-ID: <1@example.org>\n";
	struct msg_info info;
	struct mime_part *tree = NULL;

	PARSE(m, &info);
	is_int(info.psize, sizeof(m) - 1, "parse: psize");
	is_int(info.vsize, sizeof(m) - 1 + 9, "parse: vsize");
	is_int(info.lines, 10, "parse: lines");
	is_int(info.date, 1704099600, "parse: date");
	is_mem(info.headers.data, info.headers.len, cached, sizeof(cached) - 1,
	    "parse: cached fields, raw, in order");
	ok(!info.headers_partial, "parse: nothing left out");
	is_int(mime_deserialize(info.mime.data, info.mime.len, &tree), 0,
	    "parse: the MIME blob decodes");
	if (tree != NULL)
		is_int(tree->body_psize, 13, "parse: its body size");
	mime_part_free(&tree);
	msg_info_free(&info);
}

static void
test_parse_lines(void)
{
	static const struct {
		const char *s;
		uint32_t lines;
	} t[] = {
		{ "", 0 }, { "A: 1", 1 }, { "A: 1\n", 1 }, { "A: 1\n\n", 2 },
		{ "A: 1\n\nbody", 3 }, { "A: 1\n\nbody\n", 3 },
		{ "\n", 1 }, { "\nx", 2 },
	};
	struct msg_info info;
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		parse_str(t[i].s, strlen(t[i].s), &info);
		is_int(info.lines, t[i].lines, "lines #%zu", i);
		is_int(info.date, -1, "no date #%zu", i);
		msg_info_free(&info);
	}
}

static void
test_parse_fingerprint(void)
{
	uint64_t base = fingerprint("From: a\nMessage-ID: <x@y>\n\nbody\n");

	is_int(fingerprint("Status: RO\nFrom: a\nX-Status: A\n"
	    "Message-ID:  <x@y> \n\nbody\n") == base, 1,
	    "fingerprint: same after a mail reader rewrote headers");
	is_int(fingerprint("From: a\nMessage-ID: <x@y>\n\nbody!\n") == base, 0,
	    "fingerprint: the body counts");
	is_int(fingerprint("From: a\nMessage-ID: <x@z>\n\nbody\n") == base, 0,
	    "fingerprint: the Message-ID counts");
	is_int(fingerprint("From: a\n\nbody\n") == base, 0,
	    "fingerprint: a missing Message-ID counts");
	is_int(fingerprint("From: a\n\nbody\n") ==
	    msg_hash64((const unsigned char *)"body\n", 5, 0), 1,
	    "fingerprint: without Message-ID, the body hash");
}

/* field: a header field of exactly n raw bytes ("Subject: xxx\n"). */
static void
add_field(struct buf *b, const char *name, size_t n)
{
	size_t i, fixed = strlen(name) + 3;

	buf_printf(b, "%s: ", name);
	for (i = fixed; i < n; i++)
		buf_append_byte(b, 'x');
	buf_append_byte(b, '\n');
}

static void
test_parse_limits(void)
{
	struct msg_info info;
	struct buf b;
	int i;

	buf_init(&b, SIZE_MAX);
	add_field(&b, "Subject", MSG_CACHE_FIELD_MAX);
	buf_append_str(&b, "\nbody\n");
	parse_str((const char *)b.data, b.len, &info);
	is_int(info.headers.len, MSG_CACHE_FIELD_MAX,
	    "field of N bytes cached");
	ok(!info.headers_partial, "... and nothing left out");
	msg_info_free(&info);

	buf_truncate(&b, 0);
	add_field(&b, "Subject", MSG_CACHE_FIELD_MAX + 1);
	buf_append_str(&b, "To: t\n\nbody\n");
	parse_str((const char *)b.data, b.len, &info);
	is_mem(info.headers.data, info.headers.len, "To: t\n", 6,
	    "field of N+1 bytes not cached, the next one is");
	ok(info.headers_partial, "... and the loss is flagged");
	msg_info_free(&info);

	buf_truncate(&b, 0);
	for (i = 0; i < MSG_CACHE_MAX / MSG_CACHE_FIELD_MAX; i++)
		add_field(&b, "Subject", MSG_CACHE_FIELD_MAX);
	buf_append_str(&b, "\nbody\n");
	parse_str((const char *)b.data, b.len, &info);
	is_int(info.headers.len, MSG_CACHE_MAX, "cached block of N bytes");
	ok(!info.headers_partial, "... complete");
	msg_info_free(&info);

	buf_truncate(&b, 0);
	for (i = 0; i < MSG_CACHE_MAX / MSG_CACHE_FIELD_MAX; i++)
		add_field(&b, "Subject", MSG_CACHE_FIELD_MAX);
	buf_append_str(&b, "To:\n\nbody\n");
	parse_str((const char *)b.data, b.len, &info);
	is_int(info.headers.len, MSG_CACHE_MAX, "cached block stops at N");
	ok(info.headers_partial, "... and N+1 is flagged");
	msg_info_free(&info);

	/* A 1 MB Subject, then a 2 KB Date: only the Date is cached, and
	 * only the first MSG_VALUE_MAX bytes of its value are parsed. */
	buf_truncate(&b, 0);
	add_field(&b, "Subject", 1024 * 1024);
	buf_append_str(&b, "Date: 1 Jan 2024 10:00:00 +0000 (");
	for (i = 0; i < 2 * MSG_VALUE_MAX; i++)
		buf_append_byte(&b, 'c');
	buf_append_str(&b, ")\n\nbody\n");
	parse_str((const char *)b.data, b.len, &info);
	is_int(info.date, 1704103200, "long Date: value, its prefix parsed");
	ok(info.headers_partial && info.headers.len > 2 * MSG_VALUE_MAX &&
	    memcmp(info.headers.data, "Date: ", 6) == 0,
	    "1 MB Subject left out, the Date cached");
	msg_info_free(&info);
	buf_free(&b);
}

static void
test_parse_top_level_only(void)
{
	struct msg_info info;

	PARSE("Subject: top\nContent-Type: message/rfc822\n\n"
	    "Subject: inner\nDate: 1 Jan 2024\n\nx\n", &info);
	is_mem(info.headers.data, info.headers.len, "Subject: top\n"
	    "Content-Type: message/rfc822\n", 42,
	    "only top-level fields are cached");
	is_int(info.date, -1, "an inner Date: is not the message's");
	msg_info_free(&info);

	PARSE("Date: garbage\nDate: 1 Jan 2024\n\n", &info);
	is_int(info.date, -1, "only the first Date: counts");
	msg_info_free(&info);
}

static unsigned char *
read_file(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	unsigned char chunk[65536];
	size_t n;

	if (f == NULL)
		return NULL;
	buf_init(&b, SIZE_MAX);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(&b, chunk, n);
	fclose(f);
	*len_r = b.len;
	return buf_steal(&b, NULL);
}

/* Over the corpus: sizes and lines agree with a direct count, and the blob
 * is the tree of mime_parse. */
static void
test_parse_corpus(void)
{
	static const char *const names[] = { "simple", "rfc822", "crlf",
	    "mixed_eol", "no_separator", "empty", "nul", "bare_cr",
	    "garbage", "from_line" };
	const char *top = getenv("LOFT_TOP");
	char path[4096];
	struct msg_info info;
	struct mime_part *a, *b = NULL;
	struct buf da, db;
	unsigned char *data;
	size_t i, len, k;
	uint32_t lines;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/t/data/mime/%s.eml",
		    top != NULL ? top : ".", names[i]);
		if ((data = read_file(path, &len)) == NULL)
			bail("cannot read %s", path);
		msg_parse(data, len, &info);
		for (k = 0, lines = 0; k < len; k++)
			lines += data[k] == '\n';
		lines += len > 0 && data[len - 1] != '\n';
		is_int(info.vsize, msg_vsize(data, len), "%s: vsize", names[i]);
		is_int(info.lines, lines, "%s: lines", names[i]);
		a = mime_parse(data, len);
		mime_deserialize(info.mime.data, info.mime.len, &b);
		buf_init(&da, SIZE_MAX);
		buf_init(&db, SIZE_MAX);
		mime_dump(a, &da);
		if (b != NULL)
			mime_dump(b, &db);
		is_string(buf_cstr(&db), buf_cstr(&da), "%s: MIME blob",
		    names[i]);
		buf_free(&da);
		buf_free(&db);
		mime_part_free(&a);
		mime_part_free(&b);
		msg_info_free(&info);
		free(data);
	}
}

int
main(void)
{
	test_iter();
	test_iter_shortened();
	test_value();
	test_dates();
	test_vsize();
	test_hash();
	test_cache_names();
	test_parse_simple();
	test_parse_lines();
	test_parse_fingerprint();
	test_parse_limits();
	test_parse_top_level_only();
	test_parse_corpus();
	return done_testing();
}
