/*
 * Unit tests for server/imap/imap_write.c: the exact bytes of every kind
 * of item, spacing and adjacency, the choice between quoted string and
 * literal (CR, LF, 8-bit, UTF-8 validity at its edges, the length limit
 * at N and N+1 with and without NULs and escapes), astrings, the bounded
 * buffer at N and N+1 with the rollback of imap_write_finish, the
 * panics in forked children, and the checker of imap_check.h itself
 * (it must reject what is not IMAP, or the other tests prove nothing).
 */
#include "config.h"

#include <sys/wait.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "server/imap/imap_write.h"
#include "tap.h"
#include "imap_check.h"

/* out_of: what one writer call sequence produced, as a C string (tests
 * with NUL-free output only). */
static struct buf out;
static struct imap_write w;

static void
start(unsigned flags)
{
	buf_free(&out);
	buf_init(&out, 1 << 20);
	imap_write_init(&w, &out, flags);
}

static const char *
got(void)
{
	return buf_cstr(&out);
}

/* is_str: the string s (len bytes) is written as want, which is checked
 * to be one valid IMAP item. */
static void
is_str(unsigned flags, const void *s, size_t len, const char *want,
    const char *name)
{
	const char *err;

	start(flags);
	imap_write_string_mem(&w, s, len);
	is_int(imap_write_finish(&w), 0, "%s: written", name);
	is_mem(out.data, out.len, want, strlen(want), "%s: bytes", name);
	if (out.len != strlen(want) || memcmp(out.data, want, out.len) != 0)
		diag("got [%s]", got());
	err = ick_check(out.data, out.len, (flags & IMAP_WRITE_UTF8) != 0,
	    NULL, false, false);
	ok(err == NULL, "%s: valid IMAP (%s)", name, err ? err : "ok");
}

static void
test_items(void)
{
	start(0);
	imap_write_atom(&w, "*");
	imap_write_number(&w, 12);
	imap_write_atom(&w, "FETCH");
	imap_write_list_open(&w);
	imap_write_atom(&w, "UID");
	imap_write_number(&w, 0);
	imap_write_atom(&w, "X");
	imap_write_number(&w, UINT64_MAX);
	imap_write_atom(&w, "N");
	imap_write_nil(&w);
	imap_write_atom(&w, "S");
	imap_write_nstring(&w, NULL);
	imap_write_nstring(&w, "x");
	imap_write_list_close(&w);
	imap_write_crlf(&w);
	imap_write_atom(&w, "A1");
	imap_write_atom(&w, "OK");
	imap_write_crlf(&w);
	is_int(imap_write_finish(&w), 0, "items: finish");
	is_string(got(), "* 12 FETCH (UID 0 X 18446744073709551615 N NIL "
	    "S NIL \"x\")\r\nA1 OK\r\n", "items: bytes and spaces");

	start(0);
	imap_write_list_open(&w);
	imap_write_list_open(&w);
	imap_write_list_close(&w);
	imap_write_adjacent(&w);
	imap_write_list_open(&w);
	imap_write_nil(&w);
	imap_write_list_close(&w);
	imap_write_list_open(&w);
	imap_write_list_close(&w);
	imap_write_adjacent(&w);
	imap_write_string(&w, "a");
	imap_write_list_close(&w);
	imap_write_nil(&w);
	imap_write_finish(&w);
	is_string(got(), "(()(NIL) ()\"a\") NIL", "lists: adjacency only "
	    "where asked");
}

static void
test_strings(void)
{
	char big[IMAP_WRITE_QUOTED_MAX + 8];
	char want[2 * IMAP_WRITE_QUOTED_MAX + 64];
	unsigned char nul[IMAP_WRITE_QUOTED_MAX + 8];
	size_t n;

	is_str(0, "", 0, "\"\"", "empty string");
	is_str(0, "hello world", 11, "\"hello world\"", "plain text");
	is_str(0, "a\"b\\c", 5, "\"a\\\"b\\\\c\"", "quote and backslash "
	    "escaped");
	is_str(0, "\t\x01\x7f", 3, "\"\t\x01\x7f\"", "other CTLs quoted "
	    "(TEXT-CHAR allows them)");
	is_str(0, "a\rb", 3, "{3}\r\na\rb", "CR: literal");
	is_str(0, "a\nb", 3, "{3}\r\na\nb", "LF: literal");
	is_str(0, "\r\n", 2, "{2}\r\n\r\n", "CRLF alone: literal");
	is_str(0, "a\0b", 3, "\"ab\"", "NUL dropped");
	is_str(0, "\0\0", 2, "\"\"", "only NULs: empty string");
	is_str(0, "a\0\rb", 4, "{3}\r\na\rb", "NUL dropped and not "
	    "counted in a literal");
	is_str(0, "caf\xc3\xa9", 5, "{5}\r\ncaf\xc3\xa9", "8-bit: literal");
	is_str(IMAP_WRITE_UTF8, "caf\xc3\xa9", 5, "\"caf\xc3\xa9\"",
	    "UTF-8 mode: valid UTF-8 quoted");
	is_str(IMAP_WRITE_UTF8, "caf\xe9", 4, "{4}\r\ncaf\xe9",
	    "UTF-8 mode: latin-1 byte is a literal");
	is_str(IMAP_WRITE_UTF8, "\xc3\0\xa9", 3, "\"\xc3\xa9\"",
	    "UTF-8 mode: judged after NULs are dropped");
	is_str(IMAP_WRITE_UTF8, "\xc3\xa9\r", 3, "{3}\r\n\xc3\xa9\r",
	    "UTF-8 mode: CR still a literal");

	/* The edges of RFC 3629. */
	is_str(IMAP_WRITE_UTF8, "\xc2\x80", 2, "\"\xc2\x80\"", "U+0080");
	is_str(IMAP_WRITE_UTF8, "\xdf\xbf", 2, "\"\xdf\xbf\"", "U+07FF");
	is_str(IMAP_WRITE_UTF8, "\xe0\xa0\x80", 3, "\"\xe0\xa0\x80\"",
	    "U+0800");
	is_str(IMAP_WRITE_UTF8, "\xed\x9f\xbf", 3, "\"\xed\x9f\xbf\"",
	    "U+D7FF");
	is_str(IMAP_WRITE_UTF8, "\xee\x80\x80", 3, "\"\xee\x80\x80\"",
	    "U+E000");
	is_str(IMAP_WRITE_UTF8, "\xf0\x90\x80\x80", 4,
	    "\"\xf0\x90\x80\x80\"", "U+10000");
	is_str(IMAP_WRITE_UTF8, "\xf4\x8f\xbf\xbf", 4,
	    "\"\xf4\x8f\xbf\xbf\"", "U+10FFFF");
	is_str(IMAP_WRITE_UTF8, "\xc0\x80", 2, "{2}\r\n\xc0\x80",
	    "overlong 2-byte: literal");
	is_str(IMAP_WRITE_UTF8, "\xc1\xbf", 2, "{2}\r\n\xc1\xbf",
	    "overlong C1: literal");
	is_str(IMAP_WRITE_UTF8, "\xe0\x9f\xbf", 3, "{3}\r\n\xe0\x9f\xbf",
	    "overlong 3-byte: literal");
	is_str(IMAP_WRITE_UTF8, "\xf0\x8f\xbf\xbf", 4,
	    "{4}\r\n\xf0\x8f\xbf\xbf", "overlong 4-byte: literal");
	is_str(IMAP_WRITE_UTF8, "\xed\xa0\x80", 3, "{3}\r\n\xed\xa0\x80",
	    "surrogate U+D800: literal");
	is_str(IMAP_WRITE_UTF8, "\xf4\x90\x80\x80", 4,
	    "{4}\r\n\xf4\x90\x80\x80", "past U+10FFFF: literal");
	is_str(IMAP_WRITE_UTF8, "\xf5\x80\x80\x80", 4,
	    "{4}\r\n\xf5\x80\x80\x80", "F5 lead byte: literal");
	is_str(IMAP_WRITE_UTF8, "\x80", 1, "{1}\r\n\x80",
	    "lone continuation byte: literal");
	is_str(IMAP_WRITE_UTF8, "a\xe2\x82", 3, "{3}\r\na\xe2\x82",
	    "truncated sequence at the end: literal");
	is_str(IMAP_WRITE_UTF8, "\xe2\x82z", 3, "{3}\r\n\xe2\x82z",
	    "truncated sequence before ASCII: literal");

	/* The length limit at N and N + 1. */
	memset(big, 'x', sizeof(big));
	snprintf(want, sizeof(want), "\"%.*s\"", IMAP_WRITE_QUOTED_MAX, big);
	is_str(0, big, IMAP_WRITE_QUOTED_MAX, want, "N bytes: quoted");
	snprintf(want, sizeof(want), "{%d}\r\n%.*s", IMAP_WRITE_QUOTED_MAX + 1,
	    IMAP_WRITE_QUOTED_MAX + 1, big);
	is_str(0, big, IMAP_WRITE_QUOTED_MAX + 1, want,
	    "N + 1 bytes: literal");
	memset(nul, 'y', sizeof(nul));
	nul[0] = '\0';
	nul[IMAP_WRITE_QUOTED_MAX] = '\0';
	snprintf(want, sizeof(want), "\"%.*s\"", IMAP_WRITE_QUOTED_MAX - 1,
	    (char *)nul + 1);
	is_str(0, nul, IMAP_WRITE_QUOTED_MAX + 1, want,
	    "N + 1 bytes of which 2 NUL: quoted (NULs not counted)");
	memset(big, '"', sizeof(big));
	n = 0;
	want[n++] = '"';
	while (n < 2 * IMAP_WRITE_QUOTED_MAX + 1) {
		want[n++] = '\\';
		want[n++] = '"';
	}
	want[n++] = '"';
	want[n] = '\0';
	is_str(0, big, IMAP_WRITE_QUOTED_MAX, want,
	    "N quotes: quoted (escapes not counted)");
	snprintf(want, sizeof(want), "{%d}\r\n%.*s", IMAP_WRITE_QUOTED_MAX + 1,
	    IMAP_WRITE_QUOTED_MAX + 1, big);
	is_str(0, big, IMAP_WRITE_QUOTED_MAX + 1, want,
	    "N + 1 quotes: literal");
	/* 341 three-byte characters and one more byte. */
	for (n = 0; n + 3 <= IMAP_WRITE_QUOTED_MAX; n += 3)
		memcpy(big + n, "\xe2\x82\xac", 3);
	big[n] = 'e';
	ok(imap_write_quotable((unsigned char *)big, n + 1, IMAP_WRITE_UTF8),
	    "UTF-8 mode: N bytes of UTF-8 quotable");
	memcpy(big + n, "\xc3\xa9", 2);
	ok(!imap_write_quotable((unsigned char *)big, n + 2,
	    IMAP_WRITE_UTF8), "UTF-8 mode: N + 1 bytes of UTF-8 not");
	ok(imap_write_utf8_valid((unsigned char *)big, n + 2),
	    "... though valid UTF-8");
	ok(imap_write_utf8_valid((unsigned char *)"", 0),
	    "empty is valid UTF-8");
}

static void
test_astring(void)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "INBOX", "INBOX" },
		{ "a]b", "a]b" },
		{ "Sent.2024", "Sent.2024" },
		{ "", "\"\"" },
		{ "NIL", "\"NIL\"" },
		{ "nIl", "\"nIl\"" },
		{ "NILS", "NILS" },
		{ "a b", "\"a b\"" },
		{ "a(b", "\"a(b\"" },
		{ "a)b", "\"a)b\"" },
		{ "a{b", "\"a{b\"" },
		{ "a%b", "\"a%b\"" },
		{ "a*b", "\"a*b\"" },
		{ "a\"b", "\"a\\\"b\"" },
		{ "a\\b", "\"a\\\\b\"" },
		{ "a\x7f", "\"a\x7f\"" },
		{ "\xc3\xa9", "{2}\r\n\xc3\xa9" },
		{ "a\rb", "{3}\r\na\rb" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		start(0);
		imap_write_astring(&w, cases[i].in);
		imap_write_finish(&w);
		is_string(got(), cases[i].want, "astring %zu", i);
	}
	start(IMAP_WRITE_UTF8);
	imap_write_astring(&w, "\xc3\xa9");
	imap_write_finish(&w);
	is_string(got(), "\"\xc3\xa9\"", "astring: UTF-8 mode quotes UTF-8 "
	    "(atoms are 7-bit)");
}

static void
test_literal(void)
{
	start(0);
	imap_write_atom(&w, "BODY[]");
	imap_write_literal(&w, (const unsigned char *)"a\0b\r\n", 5);
	imap_write_finish(&w);
	is_mem(out.data, out.len, "BODY[] {5}\r\na\x80" "b\r\n", 17,
	    "literal: count kept, NUL sent as 0x80");
	start(0);
	imap_write_literal(&w, (const unsigned char *)"", 0);
	imap_write_nil(&w);
	imap_write_finish(&w);
	is_string(got(), "{0}\r\n NIL", "empty literal, then a space");
}

/* write_sample: a little response of every kind of item; its length is
 * measured once with no limit, then written with the limit at N and N-1. */
static void
write_sample(struct imap_write *wr)
{
	imap_write_atom(wr, "*");
	imap_write_list_open(wr);
	imap_write_string(wr, "quoted \"x\"");
	imap_write_string(wr, "lit\r\neral");
	imap_write_nstring(wr, NULL);
	imap_write_number(wr, 42);
	imap_write_list_close(wr);
}

static void
test_bounded(void)
{
	struct buf b;
	struct imap_write wr;
	size_t n, max, pre = 7;
	int ret;

	buf_init(&b, SIZE_MAX);
	imap_write_init(&wr, &b, 0);
	write_sample(&wr);
	imap_write_finish(&wr);
	n = b.len;
	buf_free(&b);
	/* Every limit from "just the prefix" up to "exactly enough". */
	for (max = pre; max <= pre + n; max++) {
		buf_init(&b, max);
		buf_append(&b, "prefix:", pre);
		imap_write_init(&wr, &b, 0);
		write_sample(&wr);
		ret = imap_write_finish(&wr);
		if (max < pre + n) {
			if (ret != -1 || b.len != pre ||
			    memcmp(b.data, "prefix:", pre) != 0)
				break;
		} else {
			is_int(ret, 0, "limit N = %zu: fits", max);
			is_int(b.len, pre + n, "limit N: all of it");
		}
		buf_free(&b);
	}
	ok(max == pre + n + 1, "limits below N: -1, buffer cut back to the "
	    "prefix (stopped at %zu of %zu)", max, pre + n);

	buf_init(&b, pre + 3);
	buf_append(&b, "prefix:", pre);
	imap_write_init(&wr, &b, 0);
	is_int(imap_write_atom(&wr, "abc"), 0, "atom at exactly the limit");
	is_int(imap_write_nil(&wr), -1, "next item over it: -1");
	ok(wr.failed, "writer failed");
	is_int(imap_write_number(&wr, 1), -1, "failure is sticky");
	is_int(b.len, pre + 3, "nothing written after the failure");
	imap_write_list_open(&wr);
	imap_write_list_close(&wr);
	is_int(imap_write_finish(&wr), -1, "finish: -1 (lists after the "
	    "failure still balance)");
	is_int(b.len, pre, "finish cut back to the start");
	imap_write_init(&wr, &b, 0);
	is_int(imap_write_atom(&wr, "ok"), 0, "writer usable again");
	is_int(imap_write_finish(&wr), 0, "and finishes");
	buf_free(&b);

	/* A literal's count and data need room for both. */
	buf_init(&b, 10);
	imap_write_init(&wr, &b, 0);
	imap_write_string_mem(&wr, (const unsigned char *)"a\rbcde", 6);
	is_int(imap_write_finish(&wr), -1, "literal over the limit: -1");
	is_int(b.len, 0, "and nothing left of it");
	buf_free(&b);
	buf_init(&b, 11);
	imap_write_init(&wr, &b, 0);
	imap_write_string_mem(&wr, (const unsigned char *)"a\rbcde", 6);
	is_int(imap_write_finish(&wr), 0, "literal at the limit (11): fits");
	buf_free(&b);
}

/* dies: whether fn aborts in a child process. */
static bool
dies(void (*fn)(void))
{
	pid_t pid;
	int status;

	fflush(stdout);
	if ((pid = fork()) < 0)
		bail("fork");
	if (pid == 0) {
		if (freopen("/dev/null", "w", stderr) == NULL)
			_exit(2);
		fn();
		_exit(0);
	}
	if (waitpid(pid, &status, 0) < 0)
		bail("waitpid");
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

static void
panic_close(void)
{
	start(0);
	imap_write_list_close(&w);
}

static void
panic_finish_open(void)
{
	start(0);
	imap_write_list_open(&w);
	imap_write_finish(&w);
}

static void
panic_crlf_open(void)
{
	start(0);
	imap_write_list_open(&w);
	imap_write_crlf(&w);
}

static void
panic_atom_crlf(void)
{
	start(0);
	imap_write_atom(&w, "a\r\nb");
}

static void
panic_atom_empty(void)
{
	start(0);
	imap_write_atom(&w, "");
}

static void
panic_deep(void)
{
	int i;

	start(0);
	for (i = 0; i <= IMAP_WRITE_DEPTH_MAX; i++)
		imap_write_list_open(&w);
}

static void
no_panic_deep(void)
{
	int i;

	start(0);
	for (i = 0; i < IMAP_WRITE_DEPTH_MAX; i++)
		imap_write_list_open(&w);
	for (i = 0; i < IMAP_WRITE_DEPTH_MAX; i++)
		imap_write_list_close(&w);
	imap_write_finish(&w);
}

static void
test_panics(void)
{
	ok(dies(panic_close), "closing a list never opened aborts");
	ok(dies(panic_finish_open), "finish with a list open aborts");
	ok(dies(panic_crlf_open), "CRLF inside a list aborts");
	ok(dies(panic_atom_crlf), "an atom with CRLF aborts");
	ok(dies(panic_atom_empty), "an empty atom aborts");
	ok(dies(panic_deep), "nesting past IMAP_WRITE_DEPTH_MAX aborts");
	ok(!dies(no_panic_deep), "nesting at IMAP_WRITE_DEPTH_MAX does not");
}

/* The checker must reject what is not IMAP. */
static void
test_checker(void)
{
	static const struct {
		const char *s;
		bool utf8, valid;
	} cases[] = {
		{ "(NIL \"a\" {1}\r\nx 12 ATOM ((a)(b)))", false, true },
		{ "(NIL", false, false },
		{ "NIL)", false, false },
		{ "(NIL  NIL)", false, false },
		{ "( NIL)", false, false },
		{ "(NIL )", false, false },
		{ "(NIL\"a\")", false, false },
		{ "(\"a\"\"b\")", false, false },
		{ "((a) (b))", false, true },
		{ "(a(b))", false, false },
		{ "\"a\\b\"", false, false },
		{ "\"a\rb\"", false, false },
		{ "\"ab", false, false },
		{ "\"\xc3\xa9\"", false, false },
		{ "\"\xc3\xa9\"", true, true },
		{ "\"\xed\xa0\x80\"", true, false },
		{ "{2}\r\nx", false, false },
		{ "{1}\r\nxy", false, false },
		{ "{1}\nx", false, false },
		{ "{}\r\n", false, false },
		{ "{0}\r\n", false, true },
		{ "\"x\" ", false, false },
	};
	size_t i;
	const char *err;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err = ick_check((const unsigned char *)cases[i].s,
		    strlen(cases[i].s), cases[i].utf8, NULL, false, false);
		ok((err == NULL) == cases[i].valid, "checker case %zu: %s",
		    i, err ? err : "valid");
	}
	err = ick_check((const unsigned char *)"{1}\r\n\0", 6, false, NULL,
	    false, false);
	ok(err != NULL, "checker: NUL in a literal rejected");
	err = ick_check((const unsigned char *)"\"a\0\"", 4, false, NULL,
	    false, false);
	ok(err != NULL, "checker: NUL in a quoted string rejected");
	err = ick_check((const unsigned char *)"((NIL NIL \"g\" NIL))", 19,
	    false, ick_check_addresses, false, false);
	ok(err != NULL, "checker: unclosed group rejected (%s)", err);
	err = ick_check((const unsigned char *)
	    "((NIL NIL \"a\" \"b\") (NIL NIL \"c\" \"d\"))", 38,
	    false, ick_check_addresses, false, false);
	ok(err != NULL, "checker: space between addresses rejected");
	err = ick_check((const unsigned char *)
	    "(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1)", 37,
	    false, ick_check_body, false, false);
	ok(err != NULL, "checker: text body without lines rejected");
	err = ick_check((const unsigned char *)
	    "(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 2)", 39,
	    false, ick_check_body, false, false);
	ok(err == NULL, "checker: text body with lines accepted");
}

int
main(void)
{
	buf_init(&out, 1 << 20);
	test_items();
	test_strings();
	test_astring();
	test_literal();
	test_bounded();
	test_panics();
	test_checker();
	buf_free(&out);
	return done_testing();
}
