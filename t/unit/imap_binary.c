/*
 * Unit tests for FETCH BINARY (RFC 3516, server/imap/imap_fetch_body.c):
 *
 * The decoders (imap_cte_*) on their own: quoted-printable (=XX in upper
 * and lower case, soft line breaks after LF, CRLF and white space, white
 * space at line ends removed, invalid escapes kept as they are, "=" at
 * the very end), base64 (line breaks, white space and garbage skipped,
 * missing, short, extra and inner padding, a lone last character), 7bit
 * (bare LF to CRLF, NUL kept) and binary; each case decoded whole, byte
 * by byte and cut at every place into two chunks, with the output bound
 * (2 * len + IMAP_CTE_SLACK) guarded by canary bytes; random input of
 * every kind cut at random must decode the same as whole.
 *
 * Through the engine, on Maildir and mbox: BINARY[2] of a base64
 * attachment holding NUL bytes is the original bytes, as a literal8;
 * BINARY.SIZE agrees with it, also beside it in one FETCH; a
 * quoted-printable part and a 7bit part decoded with CRLF lines, as
 * literals; partial fetches (the literal8 only when the range holds a
 * NUL); BINARY[] of the whole message; a part that does not exist; an
 * unknown encoding failing the FETCH with NO [UNKNOWN-CTE] while the other
 * messages are answered; BAD for BINARY[1.TEXT] and BINARY.SIZE with a
 * partial; BINARY setting \Seen and BINARY.PEEK not; a message APPENDed
 * as a literal8 with a NUL given back by BINARY[] byte for byte. Maildir:
 * a 50 MB base64 part streamed with the process's allocated memory
 * watched.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif
#ifdef T_ASAN
size_t __sanitizer_get_current_allocated_bytes(void);
#else
#include <malloc.h>
#endif

#include "base64.h"
#include "buf.h"
#include "store.h"
#include "user.h"
#include "xmalloc.h"
#include "server/imap/imap_private.h"
#include "tap.h"

/*
 * The decoders.
 */

struct dcase {
	const char *name;
	enum imap_cte cte;
	const char *in;
	size_t in_len;
	const char *want;
	size_t want_len;
};

#define D(n, c, in, want) { n, c, in, sizeof(in) - 1, want, sizeof(want) - 1 }

static const struct dcase dcases[] = {
	D("QP: =XX upper case", IMAP_CTE_QP, "Caf=C3=A9", "Caf\xc3\xa9"),
	D("QP: =xx lower case", IMAP_CTE_QP, "=c3=a9=3d", "\xc3\xa9="),
	D("QP: =Xx mixed case", IMAP_CTE_QP, "=3D=3d=aB", "==\xab"),
	D("QP: soft break after LF", IMAP_CTE_QP, "ab=\ncd", "abcd"),
	D("QP: soft break after CRLF", IMAP_CTE_QP, "ab=\r\ncd", "abcd"),
	D("QP: soft break with white space", IMAP_CTE_QP, "ab= \t \r\ncd",
	    "abcd"),
	D("QP: soft break with white space, LF", IMAP_CTE_QP, "ab=\t\ncd",
	    "abcd"),
	D("QP: hard line breaks become CRLF", IMAP_CTE_QP, "a\nb\r\nc\n",
	    "a\r\nb\r\nc\r\n"),
	D("QP: white space at line ends goes", IMAP_CTE_QP,
	    "a  \r\nb \t\nc", "a\r\nb\r\nc"),
	D("QP: encoded white space stays", IMAP_CTE_QP, "a=20=09\r\n",
	    "a \t\r\n"),
	D("QP: white space inside stays", IMAP_CTE_QP, "a b\tc", "a b\tc"),
	D("QP: white space at the very end goes", IMAP_CTE_QP, "ab \t",
	    "ab"),
	D("QP: = at the very end is a soft break", IMAP_CTE_QP, "ab=", "ab"),
	D("QP: = and white space at the very end", IMAP_CTE_QP, "ab=  ",
	    "ab"),
	D("QP: =G1 kept", IMAP_CTE_QP, "x=G1y", "x=G1y"),
	D("QP: =4x kept", IMAP_CTE_QP, "=4x", "=4x"),
	D("QP: =4 at the end kept", IMAP_CTE_QP, "a=4", "a=4"),
	D("QP: == then an escape", IMAP_CTE_QP, "==41", "=A"),
	D("QP: =4=41", IMAP_CTE_QP, "=4=41", "=4A"),
	D("QP: = space then text kept", IMAP_CTE_QP, "a= b", "a= b"),
	D("QP: = CR then text kept", IMAP_CTE_QP, "a=\rb", "a=\rb"),
	D("QP: a lone CR kept", IMAP_CTE_QP, "a\rb", "a\rb"),
	D("QP: white space then a lone CR kept", IMAP_CTE_QP, "a \rb",
	    "a \rb"),
	D("QP: CR at the very end", IMAP_CTE_QP, "a \r", "a \r"),
	D("QP: NUL and 8-bit pass", IMAP_CTE_QP, "a\0\xff", "a\0\xff"),
	D("QP: 70 blanks before text stay", IMAP_CTE_QP,
	    "                                                              "
	    "        x",
	    "                                                              "
	    "        x"),
	D("QP: of 70 blanks at a line end the last held go", IMAP_CTE_QP,
	    "                                                              "
	    "        \n",
	    "                                                              "
	    "  \r\n"),
	D("QP: empty", IMAP_CTE_QP, "", ""),
	D("base64", IMAP_CTE_BASE64, "QUJD", "ABC"),
	D("base64: line breaks", IMAP_CTE_BASE64, "QU\r\nJD\n", "ABC"),
	D("base64: white space", IMAP_CTE_BASE64, " Q U\tJ D ", "ABC"),
	D("base64: garbage skipped", IMAP_CTE_BASE64, "QU*J-D!", "ABC"),
	D("base64: padding ==", IMAP_CTE_BASE64, "QQ==", "A"),
	D("base64: padding =", IMAP_CTE_BASE64, "QUI=", "AB"),
	D("base64: no padding, 2 left", IMAP_CTE_BASE64, "QQ", "A"),
	D("base64: no padding, 3 left", IMAP_CTE_BASE64, "QUI", "AB"),
	D("base64: short padding", IMAP_CTE_BASE64, "QQ=", "A"),
	D("base64: extra padding", IMAP_CTE_BASE64, "QQ=====", "A"),
	D("base64: a lone last character", IMAP_CTE_BASE64, "QUJDR", "ABC"),
	D("base64: only one character", IMAP_CTE_BASE64, "Q", ""),
	D("base64: two encodings concatenated", IMAP_CTE_BASE64,
	    "QQ==\nQUI=\n", "AAB"),
	D("base64: binary bytes", IMAP_CTE_BASE64, "AAEC/+/+",
	    "\0\1\2\xff\xef\xfe"),
	D("base64: nothing of the alphabet", IMAP_CTE_BASE64, "!!!\r\n", ""),
	D("7bit: bare LF to CRLF", IMAP_CTE_TEXT, "a\nb\r\nc\n",
	    "a\r\nb\r\nc\r\n"),
	D("7bit: NUL and lone CR kept", IMAP_CTE_TEXT, "a\0\rb", "a\0\rb"),
	D("7bit: LF first", IMAP_CTE_TEXT, "\n\n", "\r\n\r\n"),
	D("binary: as is", IMAP_CTE_IDENTITY, "a\nb\0\r", "a\nb\0\r"),
};

#define CANARY	0xa5
#define CANARY_N 16

/* Decode in[0..len) cut at the given places (cuts[0..ncuts), ascending)
 * into out; false if a call wrote past its bound. */
static bool
t_decode_cut(enum imap_cte cte, const unsigned char *in, size_t len,
    const size_t *cuts, size_t ncuts, struct buf *out)
{
	struct imap_cte_dec d;
	unsigned char *o;
	size_t start = 0, n;
	bool fine = true;

	buf_truncate(out, 0);
	imap_cte_init(&d, cte);
	for (size_t i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : len;
		size_t room = 2 * (end - start) + IMAP_CTE_SLACK;

		o = xmalloc(room + CANARY_N);
		memset(o + room, CANARY, CANARY_N);
		n = imap_cte_decode(&d, in + start, end - start, o);
		for (size_t k = 0; k < CANARY_N; k++)
			fine &= o[room + k] == CANARY;
		fine &= n <= room;
		buf_append(out, o, n);
		free(o);
		start = end;
	}
	o = xmalloc(IMAP_CTE_SLACK + CANARY_N);
	memset(o + IMAP_CTE_SLACK, CANARY, CANARY_N);
	n = imap_cte_finish(&d, o);
	for (size_t k = 0; k < CANARY_N; k++)
		fine &= o[IMAP_CTE_SLACK + k] == CANARY;
	fine &= n <= IMAP_CTE_SLACK;
	buf_append(out, o, n);
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
		bounds = t_decode_cut(dc->cte, in, dc->in_len, NULL, 0, &out);
		whole = out.len == want.len && memcmp(out.data, want.data,
		    want.len) == 0;
		if (!whole) {
			t_dump("got ", &out);
			t_dump("want", &want);
		}
		cuts = xreallocarray(NULL, dc->in_len + 1, sizeof(*cuts));
		for (size_t i = 0; i < dc->in_len; i++)
			cuts[i] = i + 1;
		bounds &= t_decode_cut(dc->cte, in, dc->in_len, cuts,
		    dc->in_len > 0 ? dc->in_len - 1 : 0, &out);
		bytes = out.len == want.len && memcmp(out.data, want.data,
		    want.len) == 0;
		for (size_t i = 1; i < dc->in_len; i++) {
			bounds &= t_decode_cut(dc->cte, in, dc->in_len, &i, 1,
			    &out);
			split &= out.len == want.len && memcmp(out.data,
			    want.data, want.len) == 0;
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
	static const enum imap_cte ctes[] = { IMAP_CTE_QP, IMAP_CTE_BASE64,
	    IMAP_CTE_TEXT, IMAP_CTE_IDENTITY };
	size_t len = 1 << 16, cuts[512], ncuts;
	unsigned char *in = xmalloc(len);
	struct buf whole, chunked;
	bool same = true, bounds = true;

	buf_init(&whole, 4 * len);
	buf_init(&chunked, 4 * len);
	for (int round = 0; round < 40; round++) {
		enum imap_cte cte = ctes[round % 4];

		for (size_t i = 0; i < len; i++)
			in[i] = rng() % 3 == 0 ? (unsigned char)rng() :
			    (unsigned char)alpha[rng() % (sizeof(alpha) - 1)];
		/* Long runs of blanks now and then, past IMAP_CTE_WS_MAX. */
		if (round % 8 < 4)
			memset(in + rng() % (len - 200), ' ', 150);
		ncuts = 1 + rng() % (sizeof(cuts) / sizeof(cuts[0]) - 1);
		for (size_t i = 0; i < ncuts; i++)
			cuts[i] = rng() % len;
		qsort(cuts, ncuts, sizeof(cuts[0]), t_size_cmp);
		bounds &= t_decode_cut(cte, in, len, NULL, 0, &whole);
		bounds &= t_decode_cut(cte, in, len, cuts, ncuts, &chunked);
		same &= whole.len == chunked.len &&
		    memcmp(whole.data, chunked.data, whole.len) == 0;
	}
	ok(same, "random input cut at random decodes as whole");
	ok(bounds, "and never past the output bound");
	buf_free(&whole);
	buf_free(&chunked);
	free(in);
}

static void
test_cte_names(void)
{
	enum imap_cte c = IMAP_CTE_IDENTITY;

	ok(imap_cte_from_name("7bit", &c) == 0 && c == IMAP_CTE_TEXT &&
	    imap_cte_from_name("8bit", &c) == 0 && c == IMAP_CTE_TEXT &&
	    imap_cte_from_name("binary", &c) == 0 && c == IMAP_CTE_IDENTITY &&
	    imap_cte_from_name("base64", &c) == 0 && c == IMAP_CTE_BASE64 &&
	    imap_cte_from_name("quoted-printable", &c) == 0 &&
	    c == IMAP_CTE_QP, "the five encodings of RFC 2045");
	ok(imap_cte_from_name("x-uuencode", &c) < 0 &&
	    imap_cte_from_name("base-64", &c) < 0 &&
	    imap_cte_from_name("", &c) < 0, "others are unknown");
}

/*
 * Through the engine.
 */

static struct buf out;
static struct user alice;
static bool maildir;
/* Peak of the process's allocated bytes seen by t_write, when on. */
static bool watch_mem;
static size_t mem_peak;

static size_t
t_allocated(void)
{
#ifdef T_ASAN
	return __sanitizer_get_current_allocated_bytes();
#else
	return mallinfo2().uordblks;
#endif
}

static void
t_write(void *ctx, const unsigned char *d, size_t len)
{
	(void)ctx;
	if (watch_mem && t_allocated() > mem_peak)
		mem_peak = t_allocated();
	if (buf_append(&out, d, len) < 0)
		bail("output too large");
}

static const struct imap_callbacks cb = { .write = t_write };

/* Feed text; run a streamed FETCH to its end. */
static const struct buf *
t_say(struct imap_session *s, const void *data, size_t len)
{
	buf_truncate(&out, 0);
	if (imap_session_input(s, data, len) != len)
		diag("input not all taken");
	for (int i = 0; imap_session_waiting(s) && i < 100000; i++)
		imap_session_output_ready(s);
	return &out;
}

static const struct buf *
t_cmd(struct imap_session *s, const char *text)
{
	return t_say(s, text, strlen(text));
}

static bool
has(const struct buf *b, const char *needle)
{
	return memmem(b->data, b->len, needle, strlen(needle)) != NULL;
}

/* The bytes of b after "what {n}\r\n" or "what ~{n}\r\n" (n of them) are
 * want, and the literal is a literal8 exactly when lit8. */
static bool
has_literal(const struct buf *b, const char *what, const void *want,
    size_t want_len, bool lit8)
{
	char head[256];
	const unsigned char *p;

	snprintf(head, sizeof(head), "%s %s{%zu}\r\n", what, lit8 ? "~" : "",
	    want_len);
	p = memmem(b->data, b->len, head, strlen(head));
	if (p == NULL)
		return false;
	p += strlen(head);
	return (size_t)(b->data + b->len - p) >= want_len &&
	    memcmp(p, want, want_len) == 0;
}

static void
t_deliver(const char *folder, const unsigned char *msg, size_t len)
{
	struct store *st;
	struct store_delivery d = { folder, "bob@example.net", 1700000000,
	    msg, len };
	struct store_delivered r;
	const char *err;

	if (store_open(&alice, &st, &err) < 0)
		bail("store_open: %s", err);
	if (store_deliver(st, &d, &r, &err) != STORE_OK)
		bail("store_deliver: %s", err);
	store_close(&st);
}

static struct imap_session *
t_session(void)
{
	struct imap_settings set;
	struct imap_session *s;

	memset(&set, 0, sizeof(set));
	set.mechanisms = "";
	s = imap_session_new_authenticated(&set, &cb, NULL, "alice");
	if (imap_session_login(s, &alice) < 0)
		bail("login");
	return s;
}

/* The attachment: 300 bytes, NULs and all byte values. */
static unsigned char attach[300];

/* Message 1: multipart/mixed of a quoted-printable text, a base64
 * attachment, a part in x-uuencode and a 7bit text. LF line ends. */
static void
t_message1(struct buf *m)
{
	struct buf b64;

	for (size_t i = 0; i < sizeof(attach); i++)
		attach[i] = (unsigned char)(i * 7);
	buf_init(&b64, 4096);
	base64_encode(attach, sizeof(attach), &b64);
	buf_append_str(m, "From: a@example.org\nTo: b@example.org\n"
	    "Subject: binary\nMIME-Version: 1.0\n"
	    "Content-Type: multipart/mixed; boundary=\"XYZ\"\n\n"
	    "preamble\n--XYZ\n"
	    "Content-Type: text/plain; charset=utf-8\n"
	    "Content-Transfer-Encoding: quoted-printable\n\n"
	    "Caf=C3=A9 =3d ok=20=20\nsoft=\n break  \n--XYZ\n"
	    "Content-Type: application/octet-stream\n"
	    "Content-Transfer-Encoding: base64\n\n");
	for (size_t i = 0; i < b64.len; i += 76) {
		buf_append(m, b64.data + i, b64.len - i < 76 ? b64.len - i :
		    76);
		buf_append_byte(m, '\n');
	}
	buf_append_str(m, "--XYZ\nContent-Type: text/plain\n"
	    "Content-Transfer-Encoding: x-uuencode\n\nbegin 644 x\n--XYZ\n"
	    "Content-Type: text/plain\n\nplain line one\nline two\n"
	    "--XYZ--\n");
	buf_free(&b64);
}

/* Message 2: not multipart, its body base64 of "Hello\0World". */
static const char msg2[] = "Subject: single\nMIME-Version: 1.0\n"
    "Content-Transfer-Encoding: base64\n\nSGVsbG8AV29ybGQ=\n";

static void
test_fetch_parts(struct imap_session *s)
{
	static const char qp[] = "Caf\xc3\xa9 = ok  \r\nsoft break";
	static const char text[] = "plain line one\r\nline two";
	const struct buf *o;
	char exp[64];

	o = t_cmd(s, "b1 SELECT INBOX\r\n");
	ok(has(o, "b1 OK"), "SELECT");
	o = t_cmd(s, "b2 FETCH 1 (BINARY.PEEK[2])\r\n");
	ok(has_literal(o, "BINARY[2]", attach, sizeof(attach), true) &&
	    has(o, "b2 OK FETCH completed"),
	    "BINARY[2]: the base64 attachment's own bytes, as a literal8");
	o = t_cmd(s, "b3 FETCH 1 (BINARY.SIZE[2] BINARY.PEEK[2])\r\n");
	snprintf(exp, sizeof(exp), "BINARY.SIZE[2] %zu BINARY[2] ~{%zu}",
	    sizeof(attach), sizeof(attach));
	ok(has(o, exp), "BINARY.SIZE beside it agrees");
	o = t_cmd(s, "b4 FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])\r\n");
	snprintf(exp, sizeof(exp), "BINARY.SIZE[1] %zu)", sizeof(qp) - 1);
	ok(has_literal(o, "BINARY[1]", qp, sizeof(qp) - 1, false) &&
	    has(o, exp), "BINARY[1]: quoted-printable decoded, CRLF lines, "
	    "a literal; its size");
	o = t_cmd(s, "b5 FETCH 1 (BINARY.PEEK[4])\r\n");
	ok(has_literal(o, "BINARY[4]", text, sizeof(text) - 1, false),
	    "BINARY[4]: 7bit with CRLF lines");
	o = t_cmd(s, "b6 FETCH 1 (BINARY.PEEK[1]<6.6>)\r\n");
	ok(has_literal(o, "BINARY[1]<6>", "= ok  ", 6, false),
	    "partial: offsets in the decoded data");
	o = t_cmd(s, "b7 FETCH 1 (BINARY.PEEK[2]<1.5> BINARY.PEEK[2]<0.3>)"
	    "\r\n");
	ok(has_literal(o, "BINARY[2]<1>", attach + 1, 5, false) &&
	    has_literal(o, "BINARY[2]<0>", attach, 3, true),
	    "partial: a literal8 only if the range holds a NUL");
	o = t_cmd(s, "b8 FETCH 1 (BINARY.PEEK[2]<299.10> BINARY.PEEK[2]"
	    "<400.10>)\r\n");
	ok(has_literal(o, "BINARY[2]<299>", attach + 299, 1, false) &&
	    has(o, "BINARY[2]<400> {0}\r\n"), "partial at and past the end");
	o = t_cmd(s, "b9 FETCH 1 (BINARY.PEEK[9] BINARY.SIZE[9])\r\n");
	ok(has(o, "BINARY[9] \"\" BINARY.SIZE[9] 0") && has(o, "b9 OK"),
	    "a part that does not exist: empty");
	o = t_cmd(s, "b10 FETCH 1:2 (UID BINARY.PEEK[3])\r\n");
	ok(has(o, "b10 NO [UNKNOWN-CTE]") && !has(o, "* 1 FETCH") &&
	    has(o, "* 2 FETCH (UID 2 BINARY[3] \"\")"),
	    "x-uuencode: NO [UNKNOWN-CTE], the other message answered");
	o = t_cmd(s, "b11 FETCH 1 BINARY.SIZE[3]\r\n");
	ok(has(o, "b11 NO [UNKNOWN-CTE]") && !has(o, "* 1 FETCH"),
	    "BINARY.SIZE of it too");
	o = t_cmd(s, "b12 FETCH 1 BINARY[1.TEXT]\r\nb13 FETCH 1 "
	    "BINARY.SIZE[1]<0.5>\r\nb14 FETCH 1 BINARY\r\n");
	ok(has(o, "b12 BAD") && has(o, "b13 BAD") && has(o, "b14 BAD"),
	    "BINARY[1.TEXT], BINARY.SIZE with a partial, bare BINARY: BAD");
	o = t_cmd(s, "b15 FETCH 2 (BINARY.PEEK[1] BINARY.PEEK[])\r\n");
	ok(has_literal(o, "BINARY[1]", "Hello\0World", 11, true),
	    "a single part: BINARY[1] is its body decoded");
	ok(has_literal(o, "BINARY[]", "Subject: single\r\nMIME-Version: "
	    "1.0\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	    "SGVsbG8AV29ybGQ=\r\n", sizeof(msg2) - 1 + 5, false),
	    "BINARY[]: the whole message, CRLF lines");
}

static void
test_fetch_seen(struct imap_session *s)
{
	const struct buf *o;

	o = t_cmd(s, "c1 FETCH 2 (FLAGS)\r\n");
	ok(has(o, "FLAGS ()"), "not \\Seen yet");
	o = t_cmd(s, "c2 FETCH 2 (BINARY.PEEK[1])\r\nc3 FETCH 2 (FLAGS)\r\n");
	ok(!has(o, "\\Seen"), "BINARY.PEEK leaves it");
	o = t_cmd(s, "c4 FETCH 2 (BINARY[1])\r\n");
	ok(has(o, "FLAGS (\\Seen)") && has(o, "c4 OK"),
	    "BINARY sets \\Seen, and says so");
}

/* APPEND ~{n} with a NUL; BINARY[] gives the bytes back. */
static void
test_append_literal8(struct imap_session *s)
{
	static const char msg[] = "Subject: nul\r\n\r\na\0b\r\n";
	const struct buf *o;
	char cmd[128];
	unsigned uv, uid = 0;
	const unsigned char *p;

	snprintf(cmd, sizeof(cmd), "d1 APPEND INBOX ~{%zu+}\r\n",
	    sizeof(msg) - 1);
	buf_truncate(&out, 0);
	(void)imap_session_input(s, (const unsigned char *)cmd, strlen(cmd));
	(void)imap_session_input(s, (const unsigned char *)msg,
	    sizeof(msg) - 1);
	o = t_cmd(s, "\r\n");
	p = memmem(o->data, o->len, "d1 OK [APPENDUID ", 17);
	ok(p != NULL && sscanf((const char *)p, "d1 OK [APPENDUID %u %u]",
	    &uv, &uid) == 2, "APPEND of a literal8 with a NUL: stored");
	snprintf(cmd, sizeof(cmd), "d2 UID FETCH %u (BINARY.PEEK[] "
	    "BINARY.SIZE[])\r\n", uid);
	o = t_cmd(s, cmd);
	snprintf(cmd, sizeof(cmd), "BINARY.SIZE[] %zu)", sizeof(msg) - 1);
	ok(has_literal(o, "BINARY[]", msg, sizeof(msg) - 1, true) &&
	    has(o, cmd), "BINARY[] gives it back byte for byte, a literal8");
	snprintf(cmd, sizeof(cmd), "d3 UID FETCH %u (BODY.PEEK[TEXT])\r\n",
	    uid);
	o = t_cmd(s, cmd);
	ok(has_literal(o, "BODY[TEXT]", "a\x80" "b\r\n", 5, false),
	    "while BODY[] still keeps NUL out of its literal");
}

/* A 50 MB base64 part streamed, memory watched. */
static void
test_fetch_large(struct imap_session *s)
{
	size_t raw = 37 * 1024 * 1024, got_len;
	unsigned char *data = xmalloc(raw);
	struct buf m, b64;
	const struct buf *o;
	const unsigned char *p;
	size_t before;
	char head[64];
	bool same;

	for (size_t i = 0; i < raw; i++)
		data[i] = (unsigned char)(i * 31 + (i >> 11));
	buf_init(&b64, SIZE_MAX);
	base64_encode(data, raw, &b64);
	buf_init(&m, SIZE_MAX);
	buf_append_str(&m, "Subject: large\nMIME-Version: 1.0\n"
	    "Content-Type: multipart/mixed; boundary=\"B\"\n\n--B\n"
	    "Content-Type: application/octet-stream\n"
	    "Content-Transfer-Encoding: base64\n\n");
	for (size_t i = 0; i < b64.len; i += 76) {
		buf_append(&m, b64.data + i, b64.len - i < 76 ? b64.len - i :
		    76);
		buf_append_byte(&m, '\n');
	}
	buf_append_str(&m, "--B--\n");
	buf_free(&b64);
	t_deliver("INBOX", m.data, m.len);
	diag("a part of %zu bytes of base64", m.len);
	buf_free(&m);
	t_cmd(s, "e1 NOOP\r\n");
	buf_free(&out);
	buf_init(&out, raw + 4096);
	(void)buf_reserve(&out, raw + 4096);
	before = t_allocated();
	mem_peak = before;
	watch_mem = true;
	o = t_cmd(s, "e2 FETCH 4 (BINARY.PEEK[1])\r\n");
	watch_mem = false;
	snprintf(head, sizeof(head), "BINARY[1] ~{%zu}\r\n", raw);
	p = memmem(o->data, o->len, head, strlen(head));
	got_len = p != NULL ? (size_t)(o->data + o->len - p) - strlen(head) :
	    0;
	same = p != NULL && got_len >= raw &&
	    memcmp(p + strlen(head), data, raw) == 0;
	ok(same && has(o, "e2 OK"), "a 50 MB base64 part: the original %zu "
	    "bytes", raw);
	ok(mem_peak - before < 4 * 1024 * 1024, "streamed: %zu KiB more "
	    "allocated at most (the decoded part is %zu KiB)",
	    (mem_peak - before) / 1024, raw / 1024);
	free(data);
	buf_free(&out);
	buf_init(&out, 1 << 22);
}

static void
t_format(const char *location, bool md)
{
	struct imap_session *s;
	char home[] = "/tmp/loft-imapb-XXXXXX", cmd[64];
	struct buf m;

	if (mkdtemp(home) == NULL)
		bail("mkdtemp");
	maildir = md;
	alice.home = home;
	alice.mail_location = (char *)location;
	diag("format %s", location);
	buf_init(&m, 1 << 20);
	t_message1(&m);
	t_deliver("INBOX", m.data, m.len);
	buf_free(&m);
	t_deliver("INBOX", (const unsigned char *)msg2, sizeof(msg2) - 1);
	s = t_session();
	test_fetch_parts(s);
	test_fetch_seen(s);
	test_append_literal8(s);
	if (md)
		test_fetch_large(s);
	imap_session_free(&s);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", home);
	if (system(cmd) != 0)
		diag("cleanup failed");
}

int
main(void)
{
	test_decode_cases();
	test_decode_random();
	test_cte_names();

	buf_init(&out, 1 << 22);
	alice.name = xstrdup("alice");
	alice.pwhash = xstrdup("");
	alice.uid = getuid();
	alice.gid = getgid();
	alice.fields = xstrdup("");
	alice.has_quota = true;
	alice.quota = (uint64_t)1 << 30;
	t_format("maildir:~/Maildir", true);
	t_format("mbox:~/mail:INBOX=~/inbox", false);
	alice.home = NULL;
	alice.mail_location = NULL;
	free(alice.name);
	free(alice.pwhash);
	free(alice.fields);
	buf_free(&out);
	return done_testing();
}
