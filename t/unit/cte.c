/*
 * Unit tests for lib/cte (Content-Transfer-Encoding decoding):
 *
 * The two alphabets against an independent reference, for all 256 byte
 * values. Quoted-printable (=XX in upper and lower case, soft line
 * breaks after LF, CRLF and white space, white space at line ends
 * removed, the CTE_WS_MAX bound at N and N + 1, invalid escapes kept as
 * they are, "=" at the very end), base64 (line breaks, white space and
 * garbage skipped, missing, short, extra and inner padding, a lone last
 * character), 7bit (bare LF to CRLF, NUL kept) and binary, with CTE_CRLF
 * (as FETCH BINARY uses them) and without (as SEARCH and PREVIEW do: line
 * ends stay as stored); each case decoded whole, byte by byte and cut at
 * every place into two chunks, with the output bound (2 * len +
 * CTE_SLACK) guarded by canary bytes; random input of every kind cut at
 * random must decode the same as whole; the encoding names.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cte.h"
#include "xmalloc.h"
#include "tap.h"

struct dcase {
	const char *name;
	enum cte_encoding cte;
	unsigned flags;
	const char *in;
	size_t in_len;
	const char *want;
	size_t want_len;
};

#define D(n, c, f, in, want) \
	{ n, c, f, in, sizeof(in) - 1, want, sizeof(want) - 1 }
#define BLANKS32 "                                "
#define BLANKS64 BLANKS32 BLANKS32

static const struct dcase dcases[] = {
	D("QP: =XX upper case", CTE_QP, CTE_CRLF, "Caf=C3=A9", "Caf\xc3\xa9"),
	D("QP: =xx lower case", CTE_QP, CTE_CRLF, "=c3=a9=3d", "\xc3\xa9="),
	D("QP: =Xx mixed case", CTE_QP, CTE_CRLF, "=3D=3d=aB", "==\xab"),
	D("QP: soft break after LF", CTE_QP, CTE_CRLF, "ab=\ncd", "abcd"),
	D("QP: soft break after CRLF", CTE_QP, CTE_CRLF, "ab=\r\ncd", "abcd"),
	D("QP: soft break with white space", CTE_QP, CTE_CRLF,
	    "ab= \t \r\ncd", "abcd"),
	D("QP: soft break with white space, LF", CTE_QP, CTE_CRLF,
	    "ab=\t\ncd", "abcd"),
	D("QP: hard line breaks become CRLF", CTE_QP, CTE_CRLF, "a\nb\r\nc\n",
	    "a\r\nb\r\nc\r\n"),
	D("QP: white space at line ends goes", CTE_QP, CTE_CRLF,
	    "a  \r\nb \t\nc", "a\r\nb\r\nc"),
	D("QP: encoded white space stays", CTE_QP, CTE_CRLF, "a=20=09\r\n",
	    "a \t\r\n"),
	D("QP: white space inside stays", CTE_QP, CTE_CRLF, "a b\tc",
	    "a b\tc"),
	D("QP: white space at the very end goes", CTE_QP, CTE_CRLF, "ab \t",
	    "ab"),
	D("QP: = at the very end is a soft break", CTE_QP, CTE_CRLF, "ab=",
	    "ab"),
	D("QP: = and white space at the very end", CTE_QP, CTE_CRLF, "ab=  ",
	    "ab"),
	D("QP: =G1 kept", CTE_QP, CTE_CRLF, "x=G1y", "x=G1y"),
	D("QP: =4x kept", CTE_QP, CTE_CRLF, "=4x", "=4x"),
	D("QP: =4 at the end kept", CTE_QP, CTE_CRLF, "a=4", "a=4"),
	D("QP: == then an escape", CTE_QP, CTE_CRLF, "==41", "=A"),
	D("QP: =4=41", CTE_QP, CTE_CRLF, "=4=41", "=4A"),
	D("QP: = space then text kept", CTE_QP, CTE_CRLF, "a= b", "a= b"),
	D("QP: = CR then text kept", CTE_QP, CTE_CRLF, "a=\rb", "a=\rb"),
	D("QP: a lone CR kept", CTE_QP, CTE_CRLF, "a\rb", "a\rb"),
	D("QP: white space then a lone CR kept", CTE_QP, CTE_CRLF, "a \rb",
	    "a \rb"),
	D("QP: CR at the very end", CTE_QP, CTE_CRLF, "a \r", "a \r"),
	D("QP: NUL and 8-bit pass", CTE_QP, CTE_CRLF, "a\0\xff", "a\0\xff"),
	D("QP: 70 blanks before text stay", CTE_QP, CTE_CRLF,
	    BLANKS64 "      x", BLANKS64 "      x"),
	D("QP: of 70 blanks at a line end the last held go", CTE_QP,
	    CTE_CRLF, BLANKS64 "      \n", BLANKS64 "\r\n"),
	/* The limit: CTE_WS_MAX blanks are held and go; one more, and the
	 * first CTE_WS_MAX are written when the last comes. */
	D("QP: 64 blanks at a line end all go", CTE_QP, CTE_CRLF,
	    "a" BLANKS64 "\r\nb", "a\r\nb"),
	D("QP: of 65 blanks at a line end 64 stay", CTE_QP, CTE_CRLF,
	    "a" BLANKS64 " \r\nb", "a" BLANKS64 "\r\nb"),
	D("QP: 64 blanks after a soft break's = are one", CTE_QP, CTE_CRLF,
	    "a=" BLANKS64 "\r\nb", "ab"),
	D("QP: 65 blanks after = are no soft break", CTE_QP, CTE_CRLF,
	    "a=" BLANKS64 " \r\nb", "a=" BLANKS64 "\r\nb"),
	D("QP: empty", CTE_QP, CTE_CRLF, "", ""),
	D("base64", CTE_BASE64, 0, "QUJD", "ABC"),
	D("base64: line breaks", CTE_BASE64, 0, "QU\r\nJD\n", "ABC"),
	D("base64: white space", CTE_BASE64, 0, " Q U\tJ D ", "ABC"),
	D("base64: garbage skipped", CTE_BASE64, 0, "QU*J-D!", "ABC"),
	D("base64: padding ==", CTE_BASE64, 0, "QQ==", "A"),
	D("base64: padding =", CTE_BASE64, 0, "QUI=", "AB"),
	D("base64: no padding, 2 left", CTE_BASE64, 0, "QQ", "A"),
	D("base64: no padding, 3 left", CTE_BASE64, 0, "QUI", "AB"),
	D("base64: short padding", CTE_BASE64, 0, "QQ=", "A"),
	D("base64: extra padding", CTE_BASE64, 0, "QQ=====", "A"),
	D("base64: a lone last character", CTE_BASE64, 0, "QUJDR", "ABC"),
	D("base64: only one character", CTE_BASE64, 0, "Q", ""),
	D("base64: two encodings concatenated", CTE_BASE64, 0,
	    "QQ==\nQUI=\n", "AAB"),
	D("base64: binary bytes", CTE_BASE64, 0, "AAEC/+/+",
	    "\0\1\2\xff\xef\xfe"),
	D("base64: nothing of the alphabet", CTE_BASE64, 0, "!!!\r\n", ""),
	D("base64: CTE_CRLF changes nothing", CTE_BASE64, CTE_CRLF,
	    "Cg0KCg==", "\n\r\n\n"),
	D("7bit: bare LF to CRLF", CTE_TEXT, CTE_CRLF, "a\nb\r\nc\n",
	    "a\r\nb\r\nc\r\n"),
	D("7bit: NUL and lone CR kept", CTE_TEXT, CTE_CRLF, "a\0\rb",
	    "a\0\rb"),
	D("7bit: LF first", CTE_TEXT, CTE_CRLF, "\n\n", "\r\n\r\n"),
	D("binary: as is", CTE_IDENTITY, 0, "a\nb\0\r", "a\nb\0\r"),
	D("binary: CTE_CRLF changes nothing", CTE_IDENTITY, CTE_CRLF, "a\nb",
	    "a\nb"),
	/* Without CTE_CRLF (SEARCH, PREVIEW): line ends as stored. */
	D("QP, as stored: bare LF stays", CTE_QP, 0, "a\nb\r\nc\n",
	    "a\nb\r\nc\n"),
	D("QP, as stored: white space before LF goes", CTE_QP, 0,
	    "a \t\nb  \r\nc", "a\nb\r\nc"),
	D("QP, as stored: soft breaks", CTE_QP, 0, "a=\nb= \r\nc", "abc"),
	D("QP, as stored: escapes", CTE_QP, 0, "caf=E9=\n=3d", "caf\xe9="),
	D("QP, as stored: a lone CR", CTE_QP, 0, "a\rb\r", "a\rb\r"),
	D("7bit, as stored: the bytes", CTE_TEXT, 0, "a\nb\r\n\0",
	    "a\nb\r\n\0"),
};

#define CANARY	0xa5
#define CANARY_N 16

/* Decode in[0..len) cut at the given places (cuts[0..ncuts), ascending)
 * into out; false if a call wrote past its bound. */
static bool
t_decode_cut(enum cte_encoding cte, unsigned flags, const unsigned char *in,
    size_t len, const size_t *cuts, size_t ncuts, struct buf *out)
{
	struct cte_dec d;
	unsigned char *o;
	size_t start = 0, n;
	bool fine = true;

	buf_truncate(out, 0);
	cte_init(&d, cte, flags);
	for (size_t i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : len;
		size_t room = 2 * (end - start) + CTE_SLACK;

		o = xmalloc(room + CANARY_N);
		memset(o + room, CANARY, CANARY_N);
		n = cte_decode(&d, in + start, end - start, o);
		for (size_t k = 0; k < CANARY_N; k++)
			fine &= o[room + k] == CANARY;
		fine &= n <= room;
		buf_append(out, o, n);
		free(o);
		start = end;
	}
	o = xmalloc(CTE_SLACK + CANARY_N);
	memset(o + CTE_SLACK, CANARY, CANARY_N);
	n = cte_finish(&d, o);
	for (size_t k = 0; k < CANARY_N; k++)
		fine &= o[CTE_SLACK + k] == CANARY;
	fine &= n <= CTE_SLACK;
	buf_append(out, o, n);
	free(o);
	/* finish leaves the decoder as new: a second finish writes
	 * nothing. */
	o = xmalloc(CTE_SLACK);
	fine &= cte_finish(&d, o) == 0 && d.cte == cte && d.flags == flags;
	free(o);
	return fine;
}

static void
t_dump(const char *what, const struct buf *b)
{
	struct buf d;

	buf_init(&d, 1 << 16);
	for (size_t i = 0; i < b->len; i++) {
		unsigned char c = b->data[i];

		if (c >= 0x20 && c < 0x7f && c != '\\')
			buf_append_byte(&d, c);
		else
			buf_printf(&d, "\\x%02x", c);
	}
	diag("%s \"%s\"", what, buf_cstr(&d));
	buf_free(&d);
}

static bool
t_same(const struct buf *a, const struct buf *b)
{
	return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

static void
test_decode_cases(void)
{
	struct buf out, want;
	size_t *cuts;

	buf_init(&out, 1 << 20);
	buf_init(&want, 1 << 20);
	for (size_t c = 0; c < sizeof(dcases) / sizeof(dcases[0]); c++) {
		const struct dcase *dc = &dcases[c];
		const unsigned char *in = (const unsigned char *)dc->in;
		bool whole, bytes, split = true, bounds;

		buf_truncate(&want, 0);
		buf_append(&want, dc->want, dc->want_len);
		bounds = t_decode_cut(dc->cte, dc->flags, in, dc->in_len, NULL,
		    0, &out);
		whole = t_same(&out, &want);
		if (!whole) {
			t_dump("got ", &out);
			t_dump("want", &want);
		}
		cuts = xreallocarray(NULL, dc->in_len + 1, sizeof(*cuts));
		for (size_t i = 0; i < dc->in_len; i++)
			cuts[i] = i + 1;
		bounds &= t_decode_cut(dc->cte, dc->flags, in, dc->in_len,
		    cuts, dc->in_len > 0 ? dc->in_len - 1 : 0, &out);
		bytes = t_same(&out, &want);
		for (size_t i = 1; i < dc->in_len; i++) {
			bounds &= t_decode_cut(dc->cte, dc->flags, in,
			    dc->in_len, &i, 1, &out);
			split &= t_same(&out, &want);
		}
		free(cuts);
		ok(whole && bytes && split && bounds,
		    "%s (whole %d, byte by byte %d, two chunks %d, bounds %d)",
		    dc->name, whole, bytes, split, bounds);
	}
	buf_free(&out);
	buf_free(&want);
}

static uint32_t rng_state = 2463534242u;

static uint32_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

static int
t_size_cmp(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

/* Random input, biased to the bytes the decoders care about, decoded
 * whole and in random chunks: the same output, within the bounds. */
static void
test_decode_random(void)
{
	static const char alpha[] = "= \t\r\n0123456789abcdefABCDEFGQ+/\0\x80";
	static const enum cte_encoding ctes[] = { CTE_QP, CTE_BASE64,
	    CTE_TEXT, CTE_IDENTITY };
	size_t len = 1 << 16, cuts[512], ncuts;
	unsigned char *in = xmalloc(len);
	struct buf whole, chunked;
	bool same = true, bounds = true;

	buf_init(&whole, 4 * len);
	buf_init(&chunked, 4 * len);
	for (int round = 0; round < 48; round++) {
		enum cte_encoding cte = ctes[round % 4];
		unsigned flags = round % 8 < 4 ? CTE_CRLF : 0;

		for (size_t i = 0; i < len; i++)
			in[i] = rng() % 3 == 0 ? (unsigned char)rng() :
			    (unsigned char)alpha[rng() % (sizeof(alpha) - 1)];
		/* Long runs of blanks now and then, past CTE_WS_MAX. */
		if (round % 3 == 0)
			memset(in + rng() % (len - 200), ' ', 150);
		ncuts = 1 + rng() % (sizeof(cuts) / sizeof(cuts[0]) - 1);
		for (size_t i = 0; i < ncuts; i++)
			cuts[i] = rng() % len;
		qsort(cuts, ncuts, sizeof(cuts[0]), t_size_cmp);
		bounds &= t_decode_cut(cte, flags, in, len, NULL, 0, &whole);
		bounds &= t_decode_cut(cte, flags, in, len, cuts, ncuts,
		    &chunked);
		same &= t_same(&whole, &chunked);
	}
	ok(same, "random input cut at random decodes as whole");
	ok(bounds, "and never past the output bound");
	buf_free(&whole);
	buf_free(&chunked);
	free(in);
}

/* Every byte value against the alphabets as RFC 4648 and RFC 2045 write
 * them. */
static void
test_alphabets(void)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn"
	    "opqrstuvwxyz0123456789+/";
	bool hex_ok = true, b64_ok = true;

	for (unsigned c = 0; c < 256; c++) {
		const char *p = c != 0 ? strchr(b64, (int)c) : NULL;
		int want_b = p != NULL ? (int)(p - b64) : -1, want_h = -1;

		if (c >= '0' && c <= '9')
			want_h = (int)c - '0';
		else if (c >= 'a' && c <= 'f')
			want_h = (int)c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			want_h = (int)c - 'A' + 10;
		if (cte_hex_value((unsigned char)c) != want_h) {
			diag("hex %u: %d", c, cte_hex_value((unsigned char)c));
			hex_ok = false;
		}
		if (cte_b64_value((unsigned char)c) != want_b) {
			diag("b64 %u: %d", c, cte_b64_value((unsigned char)c));
			b64_ok = false;
		}
	}
	ok(hex_ok, "cte_hex_value: 0-9 A-F a-f, nothing else, all 256 bytes");
	ok(b64_ok, "cte_b64_value: the 64 letters, '=' and the rest -1");
}

static void
test_names(void)
{
	enum cte_encoding c = CTE_IDENTITY;

	ok(cte_from_name("7bit", &c) == 0 && c == CTE_TEXT &&
	    cte_from_name("8bit", &c) == 0 && c == CTE_TEXT &&
	    cte_from_name("binary", &c) == 0 && c == CTE_IDENTITY &&
	    cte_from_name("base64", &c) == 0 && c == CTE_BASE64 &&
	    cte_from_name("quoted-printable", &c) == 0 && c == CTE_QP,
	    "the five encodings of RFC 2045");
	ok(cte_from_name("x-uuencode", &c) < 0 &&
	    cte_from_name("base-64", &c) < 0 &&
	    cte_from_name("BASE64", &c) < 0 &&
	    cte_from_name("", &c) < 0, "others (and upper case) are unknown");
}

int
main(void)
{
	test_alphabets();
	test_decode_cases();
	test_decode_random();
	test_names();
	return done_testing();
}
