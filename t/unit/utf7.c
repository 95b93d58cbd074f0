/*
 * Unit tests for lib/utf7.c: RFC 3501's examples, vectors computed by an
 * independent encoder (Python's UTF-16 and base64), every malformed form,
 * buffer limits at N and N+1, and seeded random round trips.
 */
#include "config.h"
#include <stdint.h>
#include <string.h>
#include "buf.h"
#include "utf7.h"
#include "tap.h"

struct pair {
	const char *utf8;
	const char *mutf7;
};

static const struct pair pairs[] = {
	{ "", "" },
	{ "INBOX", "INBOX" },
	{ "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/"
	    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
	    "~peter/mail/&U,BTFw-/&ZeVnLIqe-" },
	{ "&", "&-" },
	{ "&&", "&-&-" },
	{ "a&b", "a&-b" },
	{ "-", "-" },
	{ " ~", " ~" },
	{ "\xc3\xa4", "&AOQ-" },
	{ "\xc3\xa4\xc3\xb6", "&AOQA9g-" },
	{ "\xc3\xa4&\xc3\xb6", "&AOQ-&-&APY-" },
	{ "\xc3\xa4-x", "&AOQ--x" },
	{ "a\x01" "b", "a&AAE-b" },
	{ "\x1f", "&AB8-" },
	{ "\x7f", "&AH8-" },
	{ "\xc2\x80", "&AIA-" },
	{ "\xc2\x9f", "&AJ8-" },
	{ "\xc4\x80", "&AQA-" },
	{ "\xc3\xa9", "&AOk-" },
	{ "\xc7\x85", "&AcU-" },
	{ "\xe2\x82\xac", "&IKw-" },
	{ "\xed\x9f\xbf", "&1,8-" },
	{ "\xee\x80\x80", "&4AA-" },
	{ "\xef\xbf\xbf", "&,,8-" },
	{ "\xf0\x9f\x98\x80", "&2D3eAA-" },
	{ "a\xf0\x9f\x98\x80" "b", "a&2D3eAA-b" },
	{ "\xf4\x8f\xbf\xbf", "&2,,f,w-" },
};

static const char *const bad_utf8[] = {
	"\xc3",			/* truncated 2-byte */
	"a\xe2\x82",		/* truncated 3-byte */
	"\xf0\x9f\x98",		/* truncated 4-byte */
	"\xc3(",		/* bad continuation */
	"\x80",			/* stray continuation */
	"\xbf",
	"\xc0\xaf",		/* overlong '/' */
	"\xc1\xbf",
	"\xe0\x80\xaf",		/* overlong 3-byte */
	"\xe0\x9f\xbf",
	"\xf0\x8f\xbf\xbf",	/* overlong 4-byte */
	"\xed\xa0\x80",		/* U+D800 */
	"\xed\xbf\xbf",		/* U+DFFF */
	"\xf4\x90\x80\x80",	/* U+110000 */
	"\xf5\x80\x80\x80",
	"\xfe",
	"\xff",
	"ok\xc3\xa4\xff",	/* bad byte after a good run */
};

struct bad {
	const char *mutf7;
	const char *why;
};

static const struct bad bad_mutf7[] = {
	{ "&", "unterminated shift at end" },
	{ "&AOQ", "unterminated shift" },
	{ "a&AOQA9g", "unterminated shift after text" },
	{ "&AO/-", "'/' is not modified base64" },
	{ "&AO=-", "padding is not allowed" },
	{ "&A O-", "space inside a shift" },
	{ "&AOQ_-", "'_' inside a shift" },
	{ "&AGE-", "shifted 'a'" },
	{ "&ACY-", "shifted '&'" },
	{ "&ACA-", "shifted space (0x20)" },
	{ "&AH4-", "shifted '~' (0x7e)" },
	{ "&AOQAYQ-", "shifted 'a' after a good char" },
	{ "&AAA-", "U+0000" },
	{ "&AOQAAA-", "U+0000 after a good char" },
	{ "&AOR-", "non-zero padding bits" },
	{ "&AOQA-", "superfluous base64 char" },
	{ "&A-", "6 bits, no unit" },
	{ "&AA-", "12 bits, no unit" },
	{ "&AOQ-&APY-", "two shifts in a row" },
	{ "&2D0-", "lone high surrogate" },
	{ "&3gA-", "lone low surrogate" },
	{ "&3gDYPQ-", "reversed surrogates" },
	{ "&2D0A5A-", "high surrogate then a BMP char" },
	{ "&2D3YPQ-", "two high surrogates" },
	{ "&2D3eANg9-", "pair then a lone high surrogate" },
	{ "\xc3\xa4", "raw 8-bit bytes" },
	{ "a\tb", "raw control character" },
	{ "a\x7f", "raw DEL" },
};

static void
test_pairs(void)
{
	struct buf b;
	size_t i;

	buf_init(&b, 1024);
	for (i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		buf_truncate(&b, 0);
		is_int(utf7_encode(pairs[i].utf8, &b), 0, "encode #%zu", i);
		is_string(buf_cstr(&b), pairs[i].mutf7, "encode #%zu bytes",
		    i);
		buf_truncate(&b, 0);
		is_int(utf7_decode(pairs[i].mutf7, &b), 0, "decode %s",
		    pairs[i].mutf7);
		is_string(buf_cstr(&b), pairs[i].utf8, "decode %s bytes",
		    pairs[i].mutf7);
	}
	buf_free(&b);
}

static void
test_bad(void)
{
	struct buf b;
	size_t i;

	buf_init(&b, 1024);
	for (i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
		buf_truncate(&b, 0);
		buf_append_str(&b, "keep");
		is_int(utf7_encode(bad_utf8[i], &b), -1,
		    "invalid UTF-8 #%zu refused", i);
		is_string(buf_cstr(&b), "keep", "out unchanged after #%zu", i);
	}
	for (i = 0; i < sizeof(bad_mutf7) / sizeof(bad_mutf7[0]); i++) {
		buf_truncate(&b, 0);
		buf_append_str(&b, "keep");
		is_int(utf7_decode(bad_mutf7[i].mutf7, &b), -1,
		    "malformed refused: %s", bad_mutf7[i].why);
		is_string(buf_cstr(&b), "keep", "out unchanged: %s",
		    bad_mutf7[i].why);
	}
	buf_free(&b);
}

static void
test_limits(void)
{
	struct buf b;

	/* "&AOQ-" is 5 bytes; "\xc3\xa4" is 2. */
	buf_init(&b, 5);
	is_int(utf7_encode("\xc3\xa4", &b), 0, "encode fits max exactly");
	is_string(buf_cstr(&b), "&AOQ-", "encode at max");
	buf_free(&b);
	buf_init(&b, 4);
	is_int(utf7_encode("\xc3\xa4", &b), -1, "encode one past max fails");
	is_int(b.len, 0, "failed encode leaves buffer empty");
	buf_free(&b);
	buf_init(&b, 2);
	is_int(utf7_decode("&AOQ-", &b), 0, "decode fits max exactly");
	buf_free(&b);
	buf_init(&b, 1);
	is_int(utf7_decode("&AOQ-", &b), -1, "decode one past max fails");
	is_int(b.len, 0, "failed decode leaves buffer empty");
	buf_free(&b);
	buf_init(&b, 64);
	buf_append_str(&b, "x/");
	utf7_encode("\xc3\xa4", &b);
	utf7_decode("&-", &b);
	is_string(buf_cstr(&b), "x/&AOQ-&", "both append to what is there");
	buf_free(&b);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t
rng(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state % n);
}

/* A code point from one of the classes the codec treats differently. */
static uint32_t
random_cp(void)
{
	uint32_t cp;

	switch (rng(6)) {
	case 0:
		return 0x20 + rng(0x5f);		/* direct, incl. & */
	case 1:
		return rng(2) ? 1 + rng(0x1f) : 0x7f;	/* controls */
	case 2:
		return 0x80 + rng(0x780);		/* 2 bytes */
	case 3:
		do
			cp = 0x800 + rng(0xf800);	/* 3 bytes */
		while (cp >= 0xd800 && cp <= 0xdfff);
		return cp;
	case 4:
		return 0x10000 + rng(0x100000);		/* 4 bytes */
	default:
		return '&';
	}
}

/* The test's own UTF-8 encoder, so the library is not checked against
 * itself. */
static size_t
put_cp(unsigned char *p, uint32_t cp)
{
	if (cp < 0x80) {
		p[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		p[0] = (unsigned char)(0xc0 | cp >> 6);
		p[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		p[0] = (unsigned char)(0xe0 | cp >> 12);
		p[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		p[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	p[0] = (unsigned char)(0xf0 | cp >> 18);
	p[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
	p[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
	p[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

static int
only_direct(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return 0;
	return 1;
}

static void
test_random(void)
{
	unsigned char in[30 * 4 + 1];
	struct buf enc, dec, re;
	int i, n, len, bad_rt = 0, bad_direct = 0, bad_canon = 0, four = 0;
	size_t o;
	uint32_t cp;

	buf_init(&enc, 4096);
	buf_init(&dec, 4096);
	buf_init(&re, 4096);
	for (i = 0; i < 5000; i++) {
		len = (int)rng(30) + 1;
		for (o = 0, n = 0; n < len; n++) {
			cp = random_cp();
			four += cp >= 0x10000;
			o += put_cp(in + o, cp);
		}
		in[o] = '\0';
		buf_truncate(&enc, 0);
		buf_truncate(&dec, 0);
		buf_truncate(&re, 0);
		if (utf7_encode((char *)in, &enc) < 0 ||
		    utf7_decode(buf_cstr(&enc), &dec) < 0 ||
		    dec.len != o || memcmp(dec.data, in, o) != 0) {
			if (bad_rt++ == 0)
				diag("round trip failed for \"%s\"",
				    buf_cstr(&enc));
			continue;
		}
		bad_direct += !only_direct(buf_cstr(&enc));
		if (utf7_encode(buf_cstr(&dec), &re) < 0 ||
		    strcmp(buf_cstr(&re), buf_cstr(&enc)) != 0)
			bad_canon++;
	}
	ok(four > 1000, "random strings include surrogate pairs (%d)", four);
	is_int(bad_rt, 0, "5000 random UTF-8 strings survive a round trip");
	is_int(bad_direct, 0, "encoded forms hold only 0x20-0x7e");
	is_int(bad_canon, 0, "re-encoding the decoded text gives the same "
	    "bytes");
	buf_free(&enc);
	buf_free(&dec);
	buf_free(&re);
}

int
main(void)
{
	test_pairs();
	test_bad();
	test_limits();
	test_random();
	return done_testing();
}
