/*
 * Unit tests for FETCH BINARY (RFC 3516, server/imap/imap_fetch_body.c),
 * through the engine, on Maildir and mbox: BINARY[2] of a base64
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
 * watched. The decoders themselves (lib/cte) are tested in t/unit/cte.c.
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
#include "imap_harness.h"

/*
 * Through the engine.
 */

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

/* The harness's write hook: the peak, while watch_mem is on. */
static void
t_mem_sample(void)
{
	if (watch_mem && t_allocated() > mem_peak)
		mem_peak = t_allocated();
}

/* Feed text; run a streamed FETCH to its end. */
static const struct buf *
t_stream(struct imap_session *s, const void *data, size_t len)
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
	return t_stream(s, text, strlen(text));
}

static bool
has_buf(const struct buf *b, const char *needle)
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
	ok(has_buf(o, "b1 OK"), "SELECT");
	o = t_cmd(s, "b2 FETCH 1 (BINARY.PEEK[2])\r\n");
	ok(has_literal(o, "BINARY[2]", attach, sizeof(attach), true) &&
	    has_buf(o, "b2 OK FETCH completed"),
	    "BINARY[2]: the base64 attachment's own bytes, as a literal8");
	o = t_cmd(s, "b3 FETCH 1 (BINARY.SIZE[2] BINARY.PEEK[2])\r\n");
	snprintf(exp, sizeof(exp), "BINARY.SIZE[2] %zu BINARY[2] ~{%zu}",
	    sizeof(attach), sizeof(attach));
	ok(has_buf(o, exp), "BINARY.SIZE beside it agrees");
	o = t_cmd(s, "b4 FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])\r\n");
	snprintf(exp, sizeof(exp), "BINARY.SIZE[1] %zu)", sizeof(qp) - 1);
	ok(has_literal(o, "BINARY[1]", qp, sizeof(qp) - 1, false) &&
	    has_buf(o, exp), "BINARY[1]: quoted-printable decoded, CRLF lines, "
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
	    has_buf(o, "BINARY[2]<400> {0}\r\n"), "partial at and past the end");
	o = t_cmd(s, "b9 FETCH 1 (BINARY.PEEK[9] BINARY.SIZE[9])\r\n");
	ok(has_buf(o, "BINARY[9] \"\" BINARY.SIZE[9] 0") && has_buf(o, "b9 OK"),
	    "a part that does not exist: empty");
	o = t_cmd(s, "b10 FETCH 1:2 (UID BINARY.PEEK[3])\r\n");
	ok(has_buf(o, "b10 NO [UNKNOWN-CTE]") && !has_buf(o, "* 1 FETCH") &&
	    has_buf(o, "* 2 FETCH (UID 2 BINARY[3] \"\")"),
	    "x-uuencode: NO [UNKNOWN-CTE], the other message answered");
	o = t_cmd(s, "b11 FETCH 1 BINARY.SIZE[3]\r\n");
	ok(has_buf(o, "b11 NO [UNKNOWN-CTE]") && !has_buf(o, "* 1 FETCH"),
	    "BINARY.SIZE of it too");
	o = t_cmd(s, "b12 FETCH 1 BINARY[1.TEXT]\r\nb13 FETCH 1 "
	    "BINARY.SIZE[1]<0.5>\r\nb14 FETCH 1 BINARY\r\n");
	ok(has_buf(o, "b12 BAD") && has_buf(o, "b13 BAD") && has_buf(o, "b14 BAD"),
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
	ok(has_buf(o, "FLAGS ()"), "not \\Seen yet");
	o = t_cmd(s, "c2 FETCH 2 (BINARY.PEEK[1])\r\nc3 FETCH 2 (FLAGS)\r\n");
	ok(!has_buf(o, "\\Seen"), "BINARY.PEEK leaves it");
	o = t_cmd(s, "c4 FETCH 2 (BINARY[1])\r\n");
	ok(has_buf(o, "FLAGS (\\Seen)") && has_buf(o, "c4 OK"),
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
	    has_buf(o, cmd), "BINARY[] gives it back byte for byte, a literal8");
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
	t_deliver_data("INBOX", m.data, m.len);
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
	ok(same && has_buf(o, "e2 OK"), "a 50 MB base64 part: the original %zu "
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
	t_deliver_data("INBOX", m.data, m.len);
	buf_free(&m);
	t_deliver_data("INBOX", (const unsigned char *)msg2, sizeof(msg2) - 1);
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
	buf_init(&out, 1 << 22);
	t_write_hook = t_mem_sample;
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
