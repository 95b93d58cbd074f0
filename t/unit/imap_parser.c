/*
 * Unit tests for server/imap/imap_parser.c: every construct (atoms, NIL,
 * quoted strings, the four literal forms, lists, FETCH sections, flags,
 * UID commands) fed whole, one byte at a time and in random chunks, each
 * compared with an expected dump of the argument tree; every failure
 * followed by a command that must parse; limits at N and N + 1 (line,
 * literal of each kind, command size, depth, arguments, tag, name);
 * {4294967295} and larger; NUL and bare CR; 8-bit in quoted strings with
 * and without UTF-8 mode; literals streamed to the engine, refused,
 * discarded; MULTIAPPEND's literals (literal8 among them) offered in turn
 * and a refused second one ending the command as its kind says;
 * a 50 MB APPEND streamed in random chunks with a checksum and
 * the process's allocated memory watched; the accessors and their error
 * messages; and the bugs that panic, in a forked child.
 */
#include "config.h"

#include <sys/wait.h>

#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Under AddressSanitizer malloc is ASan's, which mallinfo2 does not see:
 * ask ASan instead (libasan exports it; gcc ships no header for it). */
#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif
#ifdef T_ASAN
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#include "buf.h"
#include "server/imap/imap_parser.h"
#include "tap.h"

/* What the callbacks saw. */
struct rec {
	size_t base;			/* input offset of the current feed */
	size_t feed_len;
	const unsigned char *in;
	int conts;			/* need_continuation calls */
	int cont_not_at_lf;		/* ... while a non-LF byte was fed */
	uint64_t cont_size;
	bool cont_refuse;
	int starts, ends;
	uint64_t start_size;
	bool start_lit8;
	unsigned lit8_starts;		/* literal_start calls for ~{n} */
	bool start_refuse;
	int start_refuse_at;		/* refuse only this call (1-based) */
	uint64_t streamed;		/* bytes given to literal_data */
	uint64_t fnv;			/* FNV-1a of them */
	unsigned chunks;
	bool keep;			/* keep streamed bytes in data */
	struct buf data;
	int commands;
};

static uint64_t
fnv_add(uint64_t h, const unsigned char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

#define FNV_INIT 0xcbf29ce484222325ULL

static unsigned
cb_command(void *ctx, const struct imap_cmd *cmd)
{
	struct rec *r = ctx;

	r->commands++;
	if (strcmp(cmd->name, "APPEND") == 0)
		return IMAP_PARSER_CMD_STREAM;
	if (strcmp(cmd->name, "FOO") == 0)
		return IMAP_PARSER_CMD_UNKNOWN;
	return 0;
}

static int
cb_cont(void *ctx, uint64_t size)
{
	struct rec *r = ctx;

	r->conts++;
	r->cont_size = size;
	/* In byte mode the byte being fed must be the LF of "{n}\r\n". */
	if (r->feed_len == 1 && r->in[r->base] != '\n')
		r->cont_not_at_lf++;
	return r->cont_refuse ? -1 : 0;
}

static int
cb_start(void *ctx, uint64_t size, bool literal8)
{
	struct rec *r = ctx;

	r->starts++;
	r->start_size = size;
	r->start_lit8 = literal8;
	r->lit8_starts += literal8;
	return r->start_refuse || r->starts == r->start_refuse_at ? -1 : 0;
}

static void
cb_data(void *ctx, const unsigned char *data, size_t len)
{
	struct rec *r = ctx;

	r->streamed += len;
	r->fnv = fnv_add(r->fnv, data, len);
	r->chunks++;
	if (r->keep && buf_append(&r->data, data, len) < 0)
		bail("stream capture overflow");
}

static void
cb_end(void *ctx)
{
	struct rec *r = ctx;

	r->ends++;
}

static const struct imap_parser_callbacks t_cb = {
	.command = cb_command,
	.need_continuation = cb_cont,
	.literal_start = cb_start,
	.literal_data = cb_data,
	.literal_end = cb_end,
};

static void
rec_init(struct rec *r)
{
	memset(r, 0, sizeof(*r));
	r->fnv = FNV_INIT;
	r->keep = true;
	buf_init(&r->data, 1 << 20);
}

/* Dumping a command. */

static void
dump_bytes(struct buf *out, const unsigned char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (p[i] == '"' || p[i] == '\\')
			buf_printf(out, "\\%c", p[i]);
		else if (p[i] >= 0x20 && p[i] < 0x7f)
			buf_append_byte(out, p[i]);
		else
			buf_printf(out, "\\x%02x", p[i]);
	}
}

static void
dump_args(struct buf *out, const struct imap_arg *args, unsigned n)
{
	const struct imap_arg *a;
	unsigned i;

	for (i = 0; i < n; i++) {
		a = &args[i];
		if (i > 0)
			buf_append_byte(out, ' ');
		switch (a->type) {
		case IMAP_ARG_ATOM:
			buf_append(out, a->data, a->len);
			break;
		case IMAP_ARG_NIL:
			buf_append_str(out, "NIL");
			break;
		case IMAP_ARG_STRING:
			buf_append_byte(out, '"');
			dump_bytes(out, a->data, a->len);
			buf_append_byte(out, '"');
			break;
		case IMAP_ARG_LITERAL:
			buf_printf(out, "%s{%zu%s}\"", a->literal8 ? "~" : "",
			    a->len, a->nonsync ? "+" : "");
			dump_bytes(out, a->data, a->len);
			buf_append_byte(out, '"');
			break;
		case IMAP_ARG_STREAMED:
			buf_printf(out, "%s{%llu%s stream}",
			    a->literal8 ? "~" : "", (unsigned long long)a->size,
			    a->nonsync ? "+" : "");
			break;
		case IMAP_ARG_LIST:
			buf_append_byte(out, '(');
			dump_args(out, a->list, a->count);
			buf_append_byte(out, ')');
			break;
		}
	}
}

static void
dump_cmd(struct buf *out, const struct imap_cmd *cmd, int r)
{
	if (out->len > 0)
		buf_append_byte(out, '|');
	if (r < 0) {
		buf_printf(out, "BAD%d %s %s", (int)cmd->error,
		    cmd->tag != NULL ? cmd->tag : "*", cmd->error_msg);
		return;
	}
	buf_printf(out, "%s %s%s", cmd->tag, cmd->uid ? "UID " : "",
	    cmd->name);
	if (cmd->argc > 0)
		buf_append_byte(out, ' ');
	dump_args(out, cmd->args, cmd->argc);
}

/* Feeding. */

enum feed_mode { FEED_WHOLE, FEED_BYTES, FEED_RANDOM };
static const char *const mode_names[] = { "whole", "byte by byte",
    "random chunks" };

static uint32_t rng_state = 12345;

static uint32_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

struct run {
	struct buf out;			/* the dumps, '|'-separated */
	int not_at_lf;			/* byte mode: a command ended off LF */
	int stalled;			/* input consumed less, nothing ready */
	uint64_t bytes;			/* sum of cmd->bytes */
	bool fatal;
};

/* drive: feed in[0..len) to p in the given mode; dumps go to run->out. */
static void
drive(struct imap_parser *p, struct rec *r, const unsigned char *in,
    size_t len, enum feed_mode mode, struct run *run)
{
	struct imap_cmd *cmd;
	size_t off = 0, end, n;
	int ret;

	r->in = in;
	while (off < len && !run->fatal) {
		if (mode == FEED_WHOLE)
			end = len;
		else if (mode == FEED_BYTES)
			end = off + 1;
		else
			end = off + 1 + rng() % 7;
		if (end > len)
			end = len;
		while (off < end) {
			r->base = off;
			r->feed_len = end - off;
			n = imap_parser_input(p, in + off, end - off);
			off += n;
			ret = imap_parser_next(p, &cmd);
			if (ret == 0) {
				if (off < end)
					run->stalled++;
				break;
			}
			if (mode == FEED_BYTES && in[off - 1] != '\n')
				run->not_at_lf++;
			dump_cmd(&run->out, cmd, ret);
			run->bytes += cmd->bytes;
			if (ret < 0 && cmd->error == IMAP_PARSE_ERR_FATAL) {
				run->fatal = true;
				break;
			}
		}
	}
	if (!run->fatal && imap_parser_next(p, &cmd) != 0)
		run->stalled++;
}

struct pcase {
	const char *name;
	const char *in;
	size_t len;
	const char *want;		/* the commands' dumps, '|'-separated */
	int conts;			/* continuations; -1: not checked */
	const char *stream;		/* streamed bytes, dumped; NULL: none
					   expected */
	int starts;			/* literal_start calls; -1: unchecked */
	unsigned refuse;		/* REFUSE_* */
};

#define REFUSE_START	1
#define REFUSE_CONT	2
#define REFUSE_SECOND	4	/* literal_start refuses its second call */

#define C(n, in, want, conts) { n, in, sizeof(in) - 1, want, conts, NULL, 0, 0 }
#define CS(n, in, want, conts, stream, starts) \
	{ n, in, sizeof(in) - 1, want, conts, stream, starts, 0 }
#define CR(n, in, want, conts, stream, starts, refuse) \
	{ n, in, sizeof(in) - 1, want, conts, stream, starts, refuse }

/* run_case: one case in all three modes, each with a fresh parser; one
 * test per mode, which also checks the continuations asked for, that
 * nothing stalled, that in byte mode every command and every
 * continuation came at an LF, and that the commands' byte counts add up
 * to the input. */
static void
run_case(const struct imap_parser_settings *set, const struct pcase *c)
{
	struct imap_parser *p;
	struct rec r;
	struct run run;
	struct buf sdump;
	const char *got;
	int mode;
	bool good;

	for (mode = FEED_WHOLE; mode <= FEED_RANDOM; mode++) {
		rec_init(&r);
		r.start_refuse = (c->refuse & REFUSE_START) != 0;
		r.start_refuse_at = (c->refuse & REFUSE_SECOND) != 0 ? 2 : 0;
		r.cont_refuse = (c->refuse & REFUSE_CONT) != 0;
		memset(&run, 0, sizeof(run));
		buf_init(&run.out, 1 << 20);
		p = imap_parser_new(set, &t_cb, &r);
		drive(p, &r, (const unsigned char *)c->in, c->len, mode, &run);
		got = buf_cstr(&run.out);
		buf_init(&sdump, 1 << 20);
		dump_bytes(&sdump, r.data.data, r.data.len);
		good = strcmp(got, c->want) == 0 &&
		    strcmp(buf_cstr(&sdump), c->stream != NULL ?
		    c->stream : "") == 0 &&
		    (c->starts < 0 || r.starts == c->starts) &&
		    r.ends <= r.starts &&
		    (c->conts < 0 || r.conts == c->conts) &&
		    run.stalled == 0 && run.not_at_lf == 0 &&
		    r.cont_not_at_lf == 0 && (run.fatal || run.bytes == c->len);
		if (!ok(good, "%s (%s)", c->name, mode_names[mode])) {
			diag("got  \"%s\"", got);
			diag("want \"%s\"", c->want);
			diag("streamed \"%s\", %d starts, %d ends",
			    buf_cstr(&sdump), r.starts, r.ends);
			diag("continuations %d (want %d), stalled %d, "
			    "off LF %d/%d, bytes %llu of %zu", r.conts,
			    c->conts, run.stalled, run.not_at_lf,
			    r.cont_not_at_lf, (unsigned long long)run.bytes,
			    c->len);
		}
		imap_parser_free(&p);
		buf_free(&sdump);
		buf_free(&run.out);
		buf_free(&r.data);
	}
}

static void
run_cases(const struct imap_parser_settings *set, const struct pcase *cs,
    size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		run_case(set, &cs[i]);
}

#define NCASES(a) (sizeof(a) / sizeof((a)[0]))

/* Every construct, default settings. */
static const struct pcase syntax_cases[] = {
	C("simple", "a1 NOOP\r\n", "a1 NOOP", 0),
	C("lower case name, bare LF", "a1 noop\n", "a1 NOOP", 0),
	C("two commands", "a NOOP\r\nb CAPABILITY\r\n", "a NOOP|b CAPABILITY",
	    0),
	C("UID FETCH", "A2 UID fetch 1:*,5 (FLAGS UID)\r\n",
	    "A2 UID FETCH 1:*,5 (FLAGS UID)", 0),
	C("uid in lower case", "a uid store 1 flags x\r\n",
	    "a UID STORE 1 flags x", 0),
	C("flags", "a STORE 1 +FLAGS.SILENT (\\Seen \\Answered $Label)\r\n",
	    "a STORE 1 +FLAGS.SILENT (\\Seen \\Answered $Label)", 0),
	C("NIL", "a X nil (NiL NIL) NILS\r\n", "a X NIL (NIL NIL) NILS", 0),
	C("quoted strings", "a LOGIN \"us\\\"er\" \"p\\\\ss word\" \"\"\r\n",
	    "a LOGIN \"us\\\"er\" \"p\\\\ss word\" \"\"", 0),
	C("quoted with a TAB", "a X \"t\tb\"\r\n", "a X \"t\\x09b\"", 0),
	C("synchronizing literals", "a LOGIN {4}\r\nuser {4}\r\npass\r\n",
	    "a LOGIN {4}\"user\" {4}\"pass\"", 2),
	C("LITERAL+", "a LOGIN {4+}\r\nuser {4+}\r\npass\r\n",
	    "a LOGIN {4+}\"user\" {4+}\"pass\"", 0),
	C("LITERAL-", "a LOGIN {4-}\r\nuser pass\r\n",
	    "a LOGIN {4+}\"user\" pass", 0),
	C("literal8", "a X ~{3}\r\na\0" "b ~{2+}\r\nxy\r\n",
	    "a X ~{3}\"a\\x00b\" ~{2+}\"xy\"", 1),
	C("literal holding CRLF and NUL", "a X {6}\r\na\r\nb\0" "c\r\n",
	    "a X {6}\"a\\x0d\\x0ab\\x00c\"", 1),
	C("literal with bare LF announce", "a X {2}\nab\n", "a X {2}\"ab\"",
	    1),
	C("8-bit in a literal", "a X {2}\r\n\xc3\xa9\r\n",
	    "a X {2}\"\\xc3\\xa9\"", 1),
	C("zero-length literals", "a X {0}\r\n {0+}\r\n\r\n",
	    "a X {0}\"\" {0+}\"\"", 1),
	C("literals in a list", "a X ({1}\r\nx {2+}\r\nyz) y\r\n",
	    "a X ({1}\"x\" {2+}\"yz\") y", 1),
	C("nested lists", "a X (a (b (c)) () \"s\") ()\r\n",
	    "a X (a (b (c)) () \"s\") ()", 0),
	C("FETCH items",
	    "a FETCH 1:3,5 (UID BODY.PEEK[HEADER.FIELDS (From \"To\" Subj)]"
	    "<0.100> body[] BINARY[1.2] BINARY.SIZE[1] RFC822.SIZE)\r\n",
	    "a FETCH 1:3,5 (UID BODY.PEEK[HEADER.FIELDS (From \"To\" Subj)]"
	    "<0.100> body[] BINARY[1.2] BINARY.SIZE[1] RFC822.SIZE)", 0),
	C("section with ] and escapes quoted",
	    "a FETCH 1 BODY[HEADER.FIELDS (\"a]\\\"b\")]\r\n",
	    "a FETCH 1 BODY[HEADER.FIELDS (\"a]\\\"b\")]", 0),
	C("section ending a list", "a FETCH 1 (BODY[TEXT])\r\n",
	    "a FETCH 1 (BODY[TEXT])", 0),
	C("brackets in a mailbox atom", "a SELECT [Gmail]/Sent\r\n",
	    "a SELECT [Gmail]/Sent", 0),
	C("unbalanced [ in a mailbox atom", "a SELECT foo[bar\r\n",
	    "a SELECT foo[bar", 0),
	C("wildcards and *", "a LIST \"\" %/* *\r\n", "a LIST \"\" %/* *",
	    0),
	C("atoms with ~", "a SELECT ~foo ~\r\n", "a SELECT ~foo ~", 0),
	C("extra spaces", "a  NOOP  \r\nb X  a  ( b ) \r\n",
	    "a NOOP|b X a (b)", 0),
	C("tag with ]", "a] NOOP\r\n", "a] NOOP", 0),
};

/* Failures, each followed by a command that must parse. */
static const struct pcase error_cases[] = {
	C("empty line", "\r\nb NOOP\r\n", "BAD1 * Empty command line|b NOOP",
	    0),
	C("empty line, bare LF", "\nb NOOP\r\n",
	    "BAD1 * Empty command line|b NOOP", 0),
	C("tag only", "a\r\nb NOOP\r\n", "BAD1 a Missing command name|b NOOP",
	    0),
	C("tag and space", "a \r\nb NOOP\r\n",
	    "BAD1 a Missing command name|b NOOP", 0),
	C("UID alone", "a UID\r\nb NOOP\r\n",
	    "BAD1 a Missing command after UID|b NOOP", 0),
	C("UID and space", "a UID \r\nb NOOP\r\n",
	    "BAD1 a Missing command after UID|b NOOP", 0),
	C("UID UID", "a UID UID FETCH 1\r\nb NOOP\r\n",
	    "BAD1 a UID after UID|b NOOP", 0),
	C("* in tag", "a*b NOOP\r\nb NOOP\r\n", "BAD1 * Invalid tag|b NOOP", 0),
	C("+ as tag", "+ NOOP\r\nb NOOP\r\n", "BAD1 * Invalid tag|b NOOP", 0),
	C("leading space", " a NOOP\r\nb NOOP\r\n", "BAD1 * Invalid tag|b NOOP",
	    0),
	C("( in name", "a NO(OP\r\nb NOOP\r\n",
	    "BAD1 a Invalid command name|b NOOP", 0),
	C("bare CR", "a NOOP\rx\r\nb NOOP\r\n", "BAD1 a Bare CR|b NOOP", 0),
	C("bare CR in the tag", "a\rb NOOP\r\nb NOOP\r\n",
	    "BAD1 * Bare CR|b NOOP", 0),
	C("bare CR in an atom", "a X ab\rc\r\nb NOOP\r\n",
	    "BAD1 a Bare CR|b NOOP", 0),
	C("CR CR LF", "a NOOP\r\r\nb NOOP\r\n", "BAD1 a Bare CR|b NOOP", 0),
	C("CR in quoted", "a X \"a\rb\"\r\nb NOOP\r\n",
	    "BAD1 a Unterminated quoted string|b NOOP", 0),
	C("bare CR after a literal announce", "a X {3}\rx\r\nb NOOP\r\n",
	    "BAD1 a Bare CR|b NOOP", 0),
	C("NUL in an atom", "a X f\0o\r\nb NOOP\r\n",
	    "BAD1 a NUL in command|b NOOP", 0),
	C("NUL in quoted", "a X \"\0\"\r\nb NOOP\r\n",
	    "BAD1 a NUL in command|b NOOP", 0),
	C("NUL in the tag", "a\0 NOOP\r\nb NOOP\r\n",
	    "BAD1 * NUL in command|b NOOP", 0),
	C("NUL between arguments", "a X \0\r\nb NOOP\r\n",
	    "BAD1 a NUL in command|b NOOP", 0),
	C("NUL in a section", "a FETCH 1 BODY[\0]\r\nb NOOP\r\n",
	    "BAD1 a NUL in command|b NOOP", 0),
	C("bad escape", "a X \"\\n\"\r\nb NOOP\r\n",
	    "BAD1 a Invalid escape in quoted string|b NOOP", 0),
	C("8-bit quoted without UTF-8", "a X \"caf\xc3\xa9\"\r\nb NOOP\r\n",
	    "BAD1 a 8-bit data in quoted string|b NOOP", 0),
	C("8-bit in an atom", "a X caf\xc3\xa9\r\nb NOOP\r\n",
	    "BAD1 a Invalid character in atom|b NOOP", 0),
	C("8-bit starting a token", "a X \xc3\xa9\r\nb NOOP\r\n",
	    "BAD1 a Invalid character in command|b NOOP", 0),
	C("control character in an atom", "a X a\x01" "b\r\nb NOOP\r\n",
	    "BAD1 a Invalid character in atom|b NOOP", 0),
	C("unclosed list", "a X (a (b)\r\nb NOOP\r\n",
	    "BAD1 a Missing )|b NOOP", 0),
	C("unexpected )", "a X a)\r\nb NOOP\r\n", "BAD1 a Unexpected )|b NOOP",
	    0),
	C("unterminated quoted", "a X \"abc\r\nb NOOP\r\n",
	    "BAD1 a Unterminated quoted string|b NOOP", 0),
	C("unterminated section", "a FETCH 1 BODY[TEXT\r\nb NOOP\r\n",
	    "BAD1 a Invalid character in section|b NOOP", 0),
	C("literal in a section", "a FETCH 1 BODY[HEADER.FIELDS {3}\r\n"
	    "b NOOP\r\n", "BAD1 a Invalid character in section|b NOOP", 0),
	C("junk in a literal size", "a X {5x}\r\nb NOOP\r\n",
	    "BAD1 a Invalid literal size|b NOOP", 0),
	C("literal without digits", "a X {}\r\nb NOOP\r\n",
	    "BAD1 a Invalid literal size|b NOOP", 0),
	C("literal with +-", "a X {5+-}\r\nb NOOP\r\n",
	    "BAD1 a Invalid literal size|b NOOP", 0),
	C("literal not at the end", "a X {5} y\r\nb NOOP\r\n",
	    "BAD1 a Literal not at the end of the line|b NOOP", 0),
	C("missing space after quoted", "a X \"a\"\"b\"\r\nb NOOP\r\n",
	    "BAD1 a Missing space between arguments|b NOOP", 0),
	C("missing space between lists", "a X (a)(b)\r\nb NOOP\r\n",
	    "BAD1 a Missing space between arguments|b NOOP", 0),
	C("quote in an atom", "a X ab\"c\"\r\nb NOOP\r\n",
	    "BAD1 a Invalid character in atom|b NOOP", 0),
	C("{ in an atom: no continuation", "a X ab{3}\r\nb NOOP\r\n",
	    "BAD1 a Invalid character in atom|b NOOP", 0),
	C("a failure skips {n+} data",
	    "a X \"\\q\" {8+}\r\nb NOOP\r\n c\r\nd NOOP\r\n",
	    "BAD1 a Invalid escape in quoted string|d NOOP", 0),
	C("a failure before {n}: no continuation",
	    "a X \"\\q\" {8}\r\nd NOOP\r\n",
	    "BAD1 a Invalid escape in quoted string|d NOOP", 0),
	C("a failure skips {n-} and ~{n+}",
	    "a X \x01 {3-}\r\n)\r\n ~{2+}\r\n\r\n x\r\nb NOOP\r\n",
	    "BAD1 a Invalid character in command|b NOOP", 0),
	C("failures in a row", "a X )\r\nb X (\r\nc NOOP\r\n",
	    "BAD1 a Unexpected )|BAD1 b Missing )|c NOOP", 0),
	C("unknown command: no continuation", "a FOO {3}\r\nb NOOP\r\n",
	    "BAD4 a Unknown command|b NOOP", 0),
	C("unknown command: {n+} skipped",
	    "a foo {5+}\r\nb X\r\n\r\nb NOOP\r\n",
	    "BAD4 a Unknown command|b NOOP", 0),
	C("unknown command without arguments", "a FOO\r\nb NOOP\r\n",
	    "BAD4 a Unknown command|b NOOP", 0),
};

/* Sizes past what any limit allows. */
static const struct pcase huge_cases[] = {
	C("{4294967295} refused", "a LOGIN {4294967295}\r\nb NOOP\r\n",
	    "BAD2 a Literal too big|b NOOP", 0),
	C("{2^63-1} refused", "a LOGIN {9223372036854775807}\r\nb NOOP\r\n",
	    "BAD2 a Literal too big|b NOOP", 0),
	C("{2^63} refused", "a LOGIN {9223372036854775808}\r\nb NOOP\r\n",
	    "BAD2 a Literal too big|b NOOP", 0),
	C("{10^30} refused",
	    "a LOGIN {1000000000000000000000000000000}\r\nb NOOP\r\n",
	    "BAD2 a Literal too big|b NOOP", 0),
	C("{2^63+} is fatal", "a X {9223372036854775808+}\r\nb NOOP\r\n",
	    "BAD5 a Literal size too big", 0),
	C("{10^30+} while skipping is fatal",
	    "a X \x01 {1000000000000000000000000000000+}\r\nb NOOP\r\n",
	    "BAD5 a Literal size too big", 0),
};

/* UTF-8 mode. */
static const struct pcase utf8_cases[] = {
	C("UTF-8 in quoted",
	    "a X \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 "
	    "\xf4\x8f\xbf\xbf\"\r\n",
	    "a X \"caf\\xc3\\xa9 \\xe2\\x82\\xac \\xf0\\x9f\\x98\\x80 "
	    "\\xf4\\x8f\\xbf\\xbf\"", 0),
	C("UTF-8 in a section",
	    "a FETCH 1 BODY[HEADER.FIELDS (\"\xc3\xa9\")]\r\n",
	    "a FETCH 1 BODY[HEADER.FIELDS (\"\xc3\xa9\")]", 0),
	C("overlong 2-byte", "a X \"\xc0\x80\"\r\nb NOOP\r\n",
	    "BAD1 a Invalid UTF-8 in quoted string|b NOOP", 0),
	C("overlong 3-byte", "a X \"\xe0\x80\x80\"\r\nb NOOP\r\n",
	    "BAD1 a Invalid UTF-8 in quoted string|b NOOP", 0),
	C("overlong 4-byte", "a X \"\xf0\x80\x80\x80\"\r\nb NOOP\r\n",
	    "BAD1 a Invalid UTF-8 in quoted string|b NOOP", 0),
	C("surrogate", "a X \"\xed\xa0\x80\"\r\nb NOOP\r\n",
	    "BAD1 a Invalid UTF-8 in quoted string|b NOOP", 0),
	C("past U+10FFFF", "a X \"\xf4\x90\x80\x80\"\r\nb NOOP\r\n",
	    "BAD1 a Invalid UTF-8 in quoted string|b NOOP", 0),
	C("lone continuation byte", "a X \"\x80\"\r\nb NOOP\r\n",
	    "BAD1 a Invalid UTF-8 in quoted string|b NOOP", 0),
	C("truncated before the quote", "a X \"\xc3\"\r\nb NOOP\r\n",
	    "BAD1 a Invalid UTF-8 in quoted string|b NOOP", 0),
	C("escape inside a sequence", "a X \"\xc3\\\"\"\r\nb NOOP\r\n",
	    "BAD1 a Invalid UTF-8 in quoted string|b NOOP", 0),
	C("8-bit atom still bad", "a X caf\xc3\xa9\r\nb NOOP\r\n",
	    "BAD1 a Invalid character in atom|b NOOP", 0),
};

/* Streaming (cb_command marks APPEND) and refusals. */
static const struct pcase stream_cases[] = {
	CS("APPEND streams its message",
	    "a APPEND INBOX (\\Seen) \"1-Jan-2024 00:00:00 +0000\" {10}\r\n"
	    "0123456789\r\n",
	    "a APPEND INBOX (\\Seen) \"1-Jan-2024 00:00:00 +0000\" {10 stream}",
	    1, "0123456789", 1),
	CS("APPEND mailbox literal is buffered",
	    "a APPEND {5}\r\nINBOX {3+}\r\nabc\r\n",
	    "a APPEND {5}\"INBOX\" {3+ stream}", 1, "abc", 1),
	CS("MULTIAPPEND", "a APPEND INBOX {3+}\r\nabc (\\Seen) {2}\r\nde\r\n",
	    "a APPEND INBOX {3+ stream} (\\Seen) {2 stream}", 1, "abcde", 2),
	CS("APPEND literal8", "a APPEND INBOX ~{3}\r\na\0" "b\r\n",
	    "a APPEND INBOX ~{3 stream}", 1, "a\\x00b", 1),
	CS("APPEND empty message", "a APPEND INBOX {0}\r\n\r\n",
	    "a APPEND INBOX {0 stream}", 1, "", 1),
	CS("CATENATE text in a list",
	    "a APPEND INBOX CATENATE (TEXT {3+}\r\nabc)\r\n",
	    "a APPEND INBOX CATENATE (TEXT {3+ stream})", 0, "abc", 1),
	CS("syntax error after the stream",
	    "a APPEND INBOX {3+}\r\nabc x\"\r\nb NOOP\r\n",
	    "BAD1 a Invalid character in atom|b NOOP", 0, "abc", 1),
	CS("other commands buffer", "a LOGIN {3+}\r\nabc x\r\n",
	    "a LOGIN {3+}\"abc\" x", 0, NULL, 0),
	CR("literal_start refuses {n}", "a APPEND INBOX {10}\r\nb NOOP\r\n",
	    "BAD3 a Literal refused|b NOOP", 0, NULL, 1, REFUSE_START),
	CR("literal_start refuses {n+}: data dropped",
	    "a APPEND INBOX {10+}\r\n0123456789\r\nb NOOP\r\n",
	    "BAD3 a Literal refused|b NOOP", 0, NULL, 1, REFUSE_START),
	CR("need_continuation refuses", "a LOGIN {4}\r\nb NOOP\r\n",
	    "BAD3 a Literal refused|b NOOP", 1, NULL, 0, REFUSE_CONT),
	CR("need_continuation refuses a stream",
	    "a APPEND INBOX {4}\r\nb NOOP\r\n",
	    "BAD3 a Literal refused|b NOOP", 1, NULL, 1, REFUSE_CONT),
	/* MULTIAPPEND (RFC 3502): every message literal is offered in
	 * turn; a refused one fails the command as the client expects. */
	CS("MULTIAPPEND: flags, date, literal8 and literal",
	    "a APPEND INBOX (\\Seen) \"1-Jan-2024 00:00:00 +0000\" ~{3}\r\n"
	    "a\0" "b (\\Draft) {2}\r\nxy ~{1+}\r\nz\r\n",
	    "a APPEND INBOX (\\Seen) \"1-Jan-2024 00:00:00 +0000\" "
	    "~{3 stream} (\\Draft) {2 stream} ~{1+ stream}", 2,
	    "a\\x00bxyz", 3),
	CR("MULTIAPPEND: a second {n} refused ends the command",
	    "a APPEND INBOX {3}\r\nabc (\\Seen) {5}\r\nb NOOP\r\n",
	    "BAD3 a Literal refused|b NOOP", 1, "abc", 2, REFUSE_SECOND),
	CR("MULTIAPPEND: a second {n+} refused: its data and the rest "
	    "dropped, later literals not offered",
	    "a APPEND INBOX {3+}\r\nabc (\\Seen) {6+}\r\n0{1}\r\n {2+}\r\n"
	    "xy ~{2+}\r\n\r\n\r\nb NOOP\r\n",
	    "BAD3 a Literal refused|b NOOP", 0, "abc", 2, REFUSE_SECOND),
	CR("APPEND ~{2^63-1}: offered to literal_start (which refuses)",
	    "a APPEND INBOX ~{9223372036854775807}\r\nb NOOP\r\n",
	    "BAD3 a Literal refused|b NOOP", 0, NULL, 1, REFUSE_START),
	CS("APPEND ~{2^63}: too big before literal_start",
	    "a APPEND INBOX ~{9223372036854775808}\r\nb NOOP\r\n",
	    "BAD2 a Literal too big|b NOOP", 0, NULL, 0),
	CS("APPEND ~{2^63+}: fatal, never offered",
	    "a APPEND INBOX ~{9223372036854775808+}\r\nb NOOP\r\n",
	    "BAD5 a Literal size too big", 0, NULL, 0),
	CR("MULTIAPPEND: a second {n+} refused, then a {n}: the client "
	    "waits, the command ends",
	    "a APPEND INBOX {1+}\r\na {1+}\r\nb {1}\r\nb NOOP\r\n",
	    "BAD3 a Literal refused|b NOOP", 0, "a", 2, REFUSE_SECOND),
};

/* Dynamic cases: text built at run time. */

static void
run_dyn(const struct imap_parser_settings *set, const char *name,
    const struct buf *in, const char *want, int conts)
{
	struct pcase c;

	memset(&c, 0, sizeof(c));
	c.name = name;
	c.in = (const char *)in->data;
	c.len = in->len;
	c.want = want;
	c.conts = conts;
	c.starts = -1;
	run_case(set, &c);
}

static void
fill(struct buf *b, char c, size_t n)
{
	while (n-- > 0)
		buf_append_byte(b, (unsigned char)c);
}

/* line_text: "a X " + n x's + eol. */
static void
line_text(struct buf *b, size_t n, const char *eol)
{
	buf_truncate(b, 0);
	buf_append_str(b, "a X ");
	fill(b, 'x', n);
	buf_append_str(b, eol);
}

static char want_buf[16384];

/* want_c: prefix, n times c, suffix (in a static buffer). */
static const char *
want_c(const char *prefix, char c, size_t n, const char *suffix)
{
	size_t len = strlen(prefix);

	if (len + n + strlen(suffix) >= sizeof(want_buf))
		bail("want_c: too long");
	memcpy(want_buf, prefix, len);
	memset(want_buf + len, c, n);
	snprintf(want_buf + len + n, sizeof(want_buf) - len - n, "%s",
	    suffix);
	return want_buf;
}

static const char *
want_x(const char *prefix, size_t n, const char *suffix)
{
	return want_c(prefix, 'x', n, suffix);
}

/* want_lit: the dump of "a X" and one literal of n 'y' bytes. */
static const char *
want_lit(const char *announce, size_t n)
{
	char prefix[64];

	snprintf(prefix, sizeof(prefix), "a X %s\"", announce);
	return want_c(prefix, 'y', n, "\"");
}

static void
test_line_limits(void)
{
	struct imap_parser_settings set = { .line_max = 64,
	    .literal_max = 100, .command_max = 300, .depth_max = 4,
	    .args_max = 10 };
	struct buf b;

	buf_init(&b, 1 << 20);
	line_text(&b, 64 - 6, "\r\n");
	run_dyn(&set, "line at line_max", &b, want_x("a X ", 58, ""), 0);
	line_text(&b, 64 - 5, "\r\nb NOOP\r\n");
	run_dyn(&set, "line at line_max + 1", &b,
	    "BAD2 a Line too long|b NOOP", 0);
	line_text(&b, 64 - 5, "\n");
	run_dyn(&set, "bare-LF line at line_max", &b, want_x("a X ", 59, ""),
	    0);
	line_text(&b, 64 - 4, "\nb NOOP\n");
	run_dyn(&set, "bare-LF line at line_max + 1", &b,
	    "BAD2 a Line too long|b NOOP", 0);

	/* The limit is per line: the one after a literal starts afresh. */
	buf_truncate(&b, 0);
	buf_append_str(&b, "a X {3}\r\nabc ");
	fill(&b, 'x', 61);
	buf_append_str(&b, "\r\n");
	run_dyn(&set, "line after a literal at line_max", &b,
	    want_x("a X {3}\"abc\" ", 61, ""), 1);
	buf_truncate(&b, 0);
	buf_append_str(&b, "a X {3}\r\nabc ");
	fill(&b, 'x', 62);
	buf_append_str(&b, "\r\nb NOOP\r\n");
	run_dyn(&set, "line after a literal at line_max + 1", &b,
	    "BAD2 a Line too long|b NOOP", 1);

	/* An over-long line's closing {n+} is still honoured. */
	line_text(&b, 53, " {3+}\r\nxyz\r\n");
	run_dyn(&set, "line ending in {3+} at line_max", &b,
	    want_x("a X ", 53, " {3+}\"xyz\""), 0);
	line_text(&b, 54, " {8+}\r\nb NOOP\r\n x\r\nc NOOP\r\n");
	run_dyn(&set, "line ending in {8+} at line_max + 1: data skipped",
	    &b, "BAD2 a Line too long|c NOOP", 0);
	line_text(&b, 200, " {8+}\r\nb NOOP\r\n x\r\nc NOOP\r\n");
	run_dyn(&set, "long line ending in {8+}: data skipped", &b,
	    "BAD2 a Line too long|c NOOP", 0);
	line_text(&b, 200, " {3}\r\nb NOOP\r\n");
	run_dyn(&set, "long line ending in {3}: no continuation", &b,
	    "BAD2 a Line too long|b NOOP", 0);
	buf_free(&b);
}

/* literal_text: "a X " + open + n + close + n bytes of data + rest. */
static void
literal_text(struct buf *b, const char *open, size_t n, const char *close,
    bool data, const char *rest)
{
	buf_truncate(b, 0);
	buf_append_str(b, "a X ");
	buf_printf(b, "%s%zu%s", open, n, close);
	if (data)
		fill(b, 'y', n);
	buf_append_str(b, rest);
}

static void
test_literal_limits(void)
{
	struct imap_parser_settings set = { .line_max = 64,
	    .literal_max = 100, .command_max = 300 };
	struct imap_parser_settings minus = { .line_max = 64,
	    .literal_max = 8192, .command_max = 65536 };
	struct buf b;

	buf_init(&b, 1 << 20);
	/* {n} at N: data follows the continuation; at N + 1: no
	 * continuation, the client sends nothing more. */
	literal_text(&b, "{", 100, "}\r\n", true, "\r\n");
	run_dyn(&set, "{n} at literal_max", &b, want_lit("{100}", 100), 1);
	literal_text(&b, "{", 101, "}\r\n", false, "b NOOP\r\n");
	run_dyn(&set, "{n} at literal_max + 1", &b,
	    "BAD2 a Literal too big|b NOOP", 0);
	literal_text(&b, "~{", 100, "}\r\n", true, "\r\n");
	run_dyn(&set, "~{n} at literal_max", &b, want_lit("~{100}", 100),
	    1);
	literal_text(&b, "~{", 101, "}\r\n", false, "b NOOP\r\n");
	run_dyn(&set, "~{n} at literal_max + 1", &b,
	    "BAD2 a Literal too big|b NOOP", 0);
	/* {n+} past the limit: the data comes anyway and is dropped. */
	literal_text(&b, "{", 100, "+}\r\n", true, "\r\n");
	run_dyn(&set, "{n+} at literal_max", &b, want_lit("{100+}", 100),
	    0);
	literal_text(&b, "{", 101, "+}\r\n", true, "\r\nb NOOP\r\n");
	run_dyn(&set, "{n+} at literal_max + 1: data dropped", &b,
	    "BAD2 a Literal too big|b NOOP", 0);
	literal_text(&b, "~{", 101, "+}\r\n", true, "\r\nb NOOP\r\n");
	run_dyn(&set, "~{n+} at literal_max + 1: data dropped", &b,
	    "BAD2 a Literal too big|b NOOP", 0);

	/* LITERAL-: 4096, whatever literal_max says. */
	literal_text(&b, "{", 4096, "-}\r\n", true, "\r\n");
	run_dyn(&minus, "{n-} at 4096", &b, want_lit("{4096+}", 4096), 0);
	literal_text(&b, "{", 4097, "-}\r\n", true, "\r\nb NOOP\r\n");
	run_dyn(&minus, "{n-} at 4097: data dropped", &b,
	    "BAD2 a Non-synchronizing literal too big|b NOOP", 0);
	literal_text(&b, "{", 4096, "+}\r\n", true, "\r\n");
	run_dyn(&minus, "{n+} without LITERAL+ at 4096", &b,
	    want_lit("{4096+}", 4096), 0);
	literal_text(&b, "{", 4097, "+}\r\n", true, "\r\nb NOOP\r\n");
	run_dyn(&minus, "{n+} without LITERAL+ at 4097", &b,
	    "BAD2 a Non-synchronizing literal too big|b NOOP", 0);
	minus.literal_plus = true;
	literal_text(&b, "{", 8192, "+}\r\n", true, "\r\n");
	run_dyn(&minus, "{n+} with LITERAL+ at literal_max", &b,
	    want_lit("{8192+}", 8192), 0);
	literal_text(&b, "{", 8193, "+}\r\n", true, "\r\nb NOOP\r\n");
	run_dyn(&minus, "{n+} with LITERAL+ at literal_max + 1", &b,
	    "BAD2 a Literal too big|b NOOP", 0);
	literal_text(&b, "{", 4097, "-}\r\n", true, "\r\nb NOOP\r\n");
	run_dyn(&minus, "{n-} at 4097 even with LITERAL+", &b,
	    "BAD2 a Non-synchronizing literal too big|b NOOP", 0);

	/* command_max counts lines and buffered literals: 300 here. */
	set.literal_max = 1000;
	literal_text(&b, "{", 287, "}\r\n", true, "\r\n");
	run_dyn(&set, "command at command_max", &b, want_lit("{287}", 287),
	    1);
	literal_text(&b, "{", 288, "}\r\n", true, "\r\nb NOOP\r\n");
	run_dyn(&set, "command at command_max + 1", &b,
	    "BAD2 a Command too long|b NOOP", 1);
	/* After "a X {289}\r\n" 289 bytes are left: 289 fits, 290 not. */
	literal_text(&b, "{", 290, "}\r\n", false, "b NOOP\r\n");
	run_dyn(&set, "literal past the command's budget", &b,
	    "BAD2 a Literal too big|b NOOP", 0);
	buf_free(&b);
}

static void
test_count_limits(void)
{
	struct imap_parser_settings set = { .depth_max = 4, .args_max = 10 };
	struct buf b;
	char tag[80];

	buf_init(&b, 1 << 16);
	buf_truncate(&b, 0);
	buf_append_str(&b, "a X ((((x))))\r\n");
	run_dyn(&set, "depth at depth_max", &b, "a X ((((x))))", 0);
	buf_truncate(&b, 0);
	buf_append_str(&b, "a X (((((x)))))\r\nb NOOP\r\n");
	run_dyn(&set, "depth at depth_max + 1", &b,
	    "BAD2 a Lists nested too deeply|b NOOP", 0);
	buf_truncate(&b, 0);
	buf_append_str(&b, "a X 1 2 3 4 5 6 7 8 9 10\r\n");
	run_dyn(&set, "arguments at args_max", &b,
	    "a X 1 2 3 4 5 6 7 8 9 10", 0);
	buf_truncate(&b, 0);
	buf_append_str(&b, "a X 1 2 3 4 5 6 7 8 9 10 11\r\nb NOOP\r\n");
	run_dyn(&set, "arguments at args_max + 1", &b,
	    "BAD2 a Too many arguments|b NOOP", 0);
	buf_truncate(&b, 0);
	buf_append_str(&b, "a X (1 2 3 4 5 6 7 8 9)\r\n");
	run_dyn(&set, "list and items at args_max", &b,
	    "a X (1 2 3 4 5 6 7 8 9)", 0);
	buf_truncate(&b, 0);
	buf_append_str(&b, "a X (1 2 3 4 5 6 7 8 9 10)\r\nb NOOP\r\n");
	run_dyn(&set, "list and items at args_max + 1", &b,
	    "BAD2 a Too many arguments|b NOOP", 0);
	/* The 11th argument is a literal: its data is read, and the line
	 * goes on after it. */
	buf_truncate(&b, 0);
	buf_append_str(&b, "a X 1 2 3 4 5 6 7 8 9 10 {2+}\r\nab x\r\n"
	    "b NOOP\r\n");
	run_dyn(&set, "literal as argument args_max + 1", &b,
	    "BAD2 a Too many arguments|b NOOP", 0);
	buf_truncate(&b, 0);
	buf_append_str(&b, "a X 1 2 3 4 5 6 7 8 9 10 {0+}\r\n x\r\n"
	    "b NOOP\r\n");
	run_dyn(&set, "empty literal as argument args_max + 1", &b,
	    "BAD2 a Too many arguments|b NOOP", 0);
	buf_truncate(&b, 0);
	buf_append_str(&b, "a APPEND 1 2 3 4 5 6 7 8 9 10 {0}\r\n x\r\n"
	    "b NOOP\r\n");
	run_dyn(&set, "streamed literal as argument args_max + 1", &b,
	    "BAD2 a Too many arguments|b NOOP", 1);

	memset(tag, 't', sizeof(tag));
	buf_truncate(&b, 0);
	buf_append(&b, tag, IMAP_PARSER_TAG_MAX);
	buf_append_str(&b, " NOOP\r\n");
	snprintf(tag + IMAP_PARSER_TAG_MAX, sizeof(tag) - IMAP_PARSER_TAG_MAX,
	    " NOOP");
	run_dyn(&set, "tag at IMAP_PARSER_TAG_MAX", &b, tag, 0);
	memset(tag, 't', sizeof(tag));
	buf_truncate(&b, 0);
	buf_append(&b, tag, IMAP_PARSER_TAG_MAX + 1);
	buf_append_str(&b, " NOOP\r\nb NOOP\r\n");
	run_dyn(&set, "tag at IMAP_PARSER_TAG_MAX + 1", &b,
	    "BAD1 * Tag too long|b NOOP", 0);
	buf_truncate(&b, 0);
	buf_append_str(&b, "a ");
	fill(&b, 'N', IMAP_PARSER_NAME_MAX);
	buf_append_str(&b, "\r\n");
	snprintf(tag, sizeof(tag), "a %.*s", IMAP_PARSER_NAME_MAX,
	    (const char *)b.data + 2);
	run_dyn(&set, "name at IMAP_PARSER_NAME_MAX", &b, tag, 0);
	buf_truncate(&b, 0);
	buf_append_str(&b, "a ");
	fill(&b, 'N', IMAP_PARSER_NAME_MAX + 1);
	buf_append_str(&b, "\r\nb NOOP\r\n");
	run_dyn(&set, "name at IMAP_PARSER_NAME_MAX + 1", &b,
	    "BAD1 a Command name too long|b NOOP", 0);
	buf_free(&b);
}

static void
test_minus_stream(void)
{
	struct buf b;

	/* A streamed {n-} over 4096 is refused before it is offered. */
	buf_init(&b, 1 << 16);
	buf_append_str(&b, "a APPEND INBOX {4097-}\r\n");
	fill(&b, 'z', 4097);
	buf_append_str(&b, "\r\nb NOOP\r\n");
	run_dyn(&(struct imap_parser_settings){ .literal_plus = true },
	    "streamed {n-} at 4097", &b,
	    "BAD2 a Non-synchronizing literal too big|b NOOP", 0);
	buf_free(&b);
}

static struct imap_parser *
t_parser(const struct imap_parser_settings *set, struct rec *r)
{
	rec_init(r);
	return imap_parser_new(set, &t_cb, r);
}

static size_t
feed_str(struct imap_parser *p, const char *s)
{
	return imap_parser_input(p, (const unsigned char *)s, strlen(s));
}

static void
t_parser_free(struct imap_parser **p, struct rec *r)
{
	imap_parser_free(p);
	buf_free(&r->data);
}

static void
test_flow(void)
{
	struct imap_parser_settings set = { 0 };
	struct imap_parser *p;
	struct imap_cmd *cmd;
	struct rec r;
	const char *in = "a NOOP\r\nb NO";

	p = t_parser(&set, &r);
	is_int(feed_str(p, in), 8, "input stops after a complete command");
	ok(!imap_parser_pending(p), "a complete command is not pending");
	is_int(feed_str(p, in + 8), 0,
	    "nothing is consumed while a command waits");
	is_int(imap_parser_next(p, &cmd), 1, "next gives the command");
	is_string(cmd->tag, "a", "its tag");
	is_int(cmd->bytes, 8, "its size in bytes");
	is_int(imap_parser_next(p, &cmd), 0, "a command is given once");
	is_int(feed_str(p, in + 8), 4, "the rest is taken");
	ok(imap_parser_pending(p), "a partial command is pending");
	is_int(imap_parser_next(p, &cmd), 0, "need more");
	is_int(feed_str(p, "OP\r\n"), 4, "the end of the second command");
	ok(imap_parser_next(p, &cmd) == 1 && strcmp(cmd->name, "NOOP") == 0,
	    "second command");
	ok(!imap_parser_pending(p), "nothing pending after it");
	is_int(r.commands, 2, "cb->command ran once per command");
	is_int(feed_str(p, ""), 0, "empty input");
	is_int(imap_parser_next(p, &cmd), 0, "still nothing");
	t_parser_free(&p, &r);
}

static void
test_settings_change(void)
{
	struct imap_parser_settings set = { .line_max = 64 };
	struct imap_parser *p;
	struct imap_cmd *cmd;
	struct rec r;
	struct buf b;

	buf_init(&b, 1024);
	p = t_parser(&set, &r);
	line_text(&b, 100, "\r\n");
	is_int(imap_parser_input(p, b.data, 4), 4, "first bytes taken");
	set.line_max = 128;
	imap_parser_set_settings(p, &set);
	is_int(imap_parser_input(p, b.data + 4, b.len - 4), b.len - 4,
	    "rest taken");
	ok(imap_parser_next(p, &cmd) == -1 &&
	    cmd->error == IMAP_PARSE_ERR_TOOBIG,
	    "the command in progress keeps the old line limit");
	is_int(imap_parser_input(p, b.data, b.len), b.len, "same line again");
	is_int(imap_parser_next(p, &cmd), 1,
	    "the next command has the new limit");
	set.utf8 = true;
	imap_parser_set_settings(p, &set);
	feed_str(p, "c X \"\xc3\xa9\"\r\n");
	is_int(imap_parser_next(p, &cmd), 1,
	    "UTF-8 mode set between commands applies to the next");
	t_parser_free(&p, &r);
	buf_free(&b);

	/* A line_max above IMAP_PARSER_COMMAND_MAX raises the default
	 * command_max with it. */
	buf_init(&b, 1 << 20);
	set = (struct imap_parser_settings){ .line_max = 512 * 1024 };
	p = t_parser(&set, &r);
	line_text(&b, 300 * 1024, "\r\n");
	imap_parser_input(p, b.data, b.len);
	is_int(imap_parser_next(p, &cmd), 1,
	    "300 KiB line with line_max 512 KiB, command_max by default");
	t_parser_free(&p, &r);
	buf_free(&b);
}

static void
test_accessors(void)
{
	static const char in[] = "a X 0 4294967295 4294967296 "
	    "9223372036854775807 9223372036854775808 abc \"s p\" {3}\r\na\0"
	    "b nil (7 x) ~{2}\r\nxy [Gmail]/Sent a%b \\Seen \"\" 12a\r\n";
	struct imap_parser_settings set = { 0 };
	const struct imap_arg *list;
	const unsigned char *data;
	struct imap_parser *p;
	struct imap_cmd *cmd;
	struct rec r;
	const char *s, *err;
	uint64_t n64;
	uint32_t n;
	unsigned count;
	size_t len;

	p = t_parser(&set, &r);
	imap_parser_input(p, (const unsigned char *)in, sizeof(in) - 1);
	if (imap_parser_next(p, &cmd) != 1)
		bail("accessor command did not parse: %s", cmd->error_msg);
	is_int(cmd->argc, 16, "16 arguments");
#define A(i) imap_cmd_arg(cmd, i)
	ok(imap_arg_number(A(0), &n, &err) == 0 && n == 0, "number 0");
	ok(imap_arg_number(A(1), &n, &err) == 0 && n == 4294967295U,
	    "number 4294967295");
	ok(imap_arg_number(A(2), &n, &err) == -1, "number 4294967296 fails");
	is_string(err, "Argument 3: number too big", "... too big");
	ok(imap_arg_number64(A(2), &n64, &err) == 0 && n64 == 4294967296ULL,
	    "number64 4294967296");
	ok(imap_arg_number64(A(3), &n64, &err) == 0 &&
	    n64 == 9223372036854775807ULL, "number64 2^63 - 1");
	ok(imap_arg_number64(A(4), &n64, &err) == -1, "number64 2^63 fails");
	is_string(err, "Argument 5: number too big", "... too big");
	ok(imap_arg_number(A(5), &n, &err) == -1, "atom is no number");
	is_string(err, "Argument 6: number expected", "... message");
	ok(imap_arg_number(A(6), &n, &err) == -1, "quoted is no number");
	ok(imap_arg_number(A(15), &n, &err) == -1, "12a is no number");
	is_string(err, "Argument 16: number expected", "... message");
	ok(imap_arg_astring(A(5), &s, &err) == 0 && strcmp(s, "abc") == 0,
	    "astring from an atom");
	ok(imap_arg_astring(A(6), &s, &err) == 0 && strcmp(s, "s p") == 0,
	    "astring from quoted");
	ok(imap_arg_atom(A(6), &s, &err) == -1, "quoted is no atom");
	is_string(err, "Argument 7: atom expected", "... message");
	ok(imap_arg_astring(A(7), &s, &err) == -1,
	    "astring refuses a literal with NUL");
	is_string(err, "Argument 8: NUL in string", "... message");
	ok(imap_arg_data(A(7), &data, &len, &err) == 0 && len == 3 &&
	    memcmp(data, "a\0b", 3) == 0, "the literal as data");
	ok(!A(7)->literal8 && !A(7)->nonsync, "plain {3}");
	is_int(A(8)->type, IMAP_ARG_NIL, "nil is NIL");
	ok(imap_arg_astring(A(8), &s, &err) == 0 && strcmp(s, "nil") == 0,
	    "NIL as astring is the atom as sent");
	ok(imap_arg_nstring(A(8), &s, &err) == 0 && s == NULL,
	    "NIL as nstring is NULL");
	ok(imap_arg_atom(A(8), &s, &err) == 0, "NIL as atom");
	ok(imap_arg_string(A(8), &s, &err) == -1, "NIL is no string");
	is_string(err, "Argument 9: string expected", "... message");
	ok(imap_arg_list(A(9), &list, &count, &err) == 0 && count == 2,
	    "list of 2");
	ok(list[0].pos == 1 && list[0].depth == 1 && list[1].pos == 2,
	    "list items know their place");
	ok(imap_arg_number(&list[0], &n, &err) == 0 && n == 7, "list item 1");
	ok(imap_arg_number(&list[1], &n, &err) == -1, "list item 2 fails");
	is_string(err, "List item 2: number expected", "... message");
	ok(imap_arg_astring(A(9), &s, &err) == -1, "list is no astring");
	is_string(err, "Argument 10: string expected", "... message");
	ok(imap_arg_list(A(5), &list, &count, &err) == -1, "atom is no list");
	is_string(err, "Argument 6: list expected", "... message");
	ok(A(10)->literal8, "~{2} is literal8");
	ok(imap_arg_astring(A(10), &s, &err) == -1,
	    "astring refuses literal8");
	is_string(err, "Argument 11: binary literal not allowed",
	    "... message");
	ok(imap_arg_data(A(10), &data, &len, &err) == 0 && len == 2 &&
	    memcmp(data, "xy", 2) == 0, "literal8 as data");
	ok(imap_arg_astring(A(11), &s, &err) == 0 &&
	    strcmp(s, "[Gmail]/Sent") == 0, "[Gmail]/Sent is an astring");
	ok(imap_arg_astring(A(12), &s, &err) == -1, "a%%b is no astring");
	is_string(err, "Argument 13: invalid character in atom",
	    "... message");
	ok(imap_arg_list_mailbox(A(12), &s, &err) == 0 &&
	    strcmp(s, "a%b") == 0, "a%%b is a list-mailbox");
	ok(imap_arg_atom(A(13), &s, &err) == 0 && strcmp(s, "\\Seen") == 0,
	    "\\Seen as atom");
	ok(imap_arg_astring(A(13), &s, &err) == -1, "\\Seen is no astring");
	ok(imap_arg_astring(A(14), &s, &err) == 0 && *s == '\0',
	    "empty quoted string");
	ok(imap_arg_nstring(A(14), &s, &err) == 0 && s != NULL && *s == '\0',
	    "empty quoted as nstring");
	ok(A(16) == NULL, "no argument 16");
	ok(imap_arg_astring(A(16), &s, &err) == -1, "missing argument fails");
	is_string(err, "Missing argument", "... message");
#undef A
	t_parser_free(&p, &r);
}

static void
test_fatal(void)
{
	struct imap_parser_settings set = { 0 };
	struct imap_parser *p;
	struct imap_cmd *cmd;
	struct rec r;

	p = t_parser(&set, &r);
	feed_str(p, "a X {99999999999999999999+}\r\n");
	ok(imap_parser_next(p, &cmd) == -1 &&
	    cmd->error == IMAP_PARSE_ERR_FATAL, "fatal");
	is_int(feed_str(p, "b NOOP\r\n"), 0, "nothing taken after fatal");
	ok(imap_parser_next(p, &cmd) == -1 &&
	    cmd->error == IMAP_PARSE_ERR_FATAL, "still fatal");
	t_parser_free(&p, &r);
}

static size_t
allocated(void)
{
#ifdef T_ASAN
	return __sanitizer_get_current_allocated_bytes();
#else
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
#endif
}

/* A {4294967295+} literal over the limit is read and dropped: 4 GiB go
 * through without being stored. */
static void
test_discard_4g(void)
{
	struct imap_parser_settings set = { .literal_plus = true };
	const size_t chunk = 1 << 20;
	unsigned char *zero;
	struct imap_parser *p;
	struct imap_cmd *cmd;
	struct rec r;
	uint64_t left = 4294967295ULL;
	size_t before, peak = 0, n, got;
	bool all = true;

	zero = calloc(1, chunk);
	p = t_parser(&set, &r);
	feed_str(p, "a X {4294967295+}\r\n");
	is_int(r.conts, 0, "{4294967295+}: no continuation");
	before = allocated();
	while (left > 0) {
		n = left < chunk ? (size_t)left : chunk;
		got = imap_parser_input(p, zero, n);
		if (got != n || imap_parser_next(p, &cmd) != 0)
			all = false;
		left -= n;
		if (allocated() > before && allocated() - before > peak)
			peak = allocated() - before;
	}
	ok(all, "4294967295 bytes dropped, nothing ready meanwhile");
	ok(peak < 64 * 1024, "no memory grew (%zu bytes)", peak);
	feed_str(p, "\r\n");
	ok(imap_parser_next(p, &cmd) == -1 &&
	    cmd->error == IMAP_PARSE_ERR_TOOBIG,
	    "then BAD [TOOBIG] at the line end");
	is_int(cmd->bytes, 4294967295ULL + 21, "all bytes counted");
	feed_str(p, "b NOOP\r\n");
	is_int(imap_parser_next(p, &cmd), 1, "the next command parses");
	t_parser_free(&p, &r);
	free(zero);
}

/* A 50 MB APPEND streamed in random chunks: same bytes, same checksum,
 * memory flat. */
static void
test_stream_50mb(void)
{
	const uint64_t size = 50ULL * 1024 * 1024;
	struct imap_parser_settings set = { 0 };
	static unsigned char chunk[65536];
	struct imap_parser *p;
	struct imap_cmd *cmd;
	struct rec r;
	uint64_t left = size, src = FNV_INIT;
	size_t before, peak = 0, n, i, now;
	uint32_t x = 2463534242U;
	bool all = true;

	p = t_parser(&set, &r);
	r.keep = false;
	feed_str(p, "A1 APPEND INBOX (\\Seen) {52428800}\r\n");
	ok(r.starts == 1 && r.start_size == size && r.conts == 1,
	    "50 MB: literal_start, then one continuation");
	before = allocated();
	while (left > 0) {
		if (rng() % 16 == 0)
			n = 1 + rng() % 16;
		else
			n = 1 + rng() % sizeof(chunk);
		if (n > left)
			n = (size_t)left;
		for (i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			chunk[i] = (unsigned char)x;
		}
		src = fnv_add(src, chunk, n);
		if (imap_parser_input(p, chunk, n) != n ||
		    imap_parser_next(p, &cmd) != 0)
			all = false;
		left -= n;
		now = allocated();
		if (now > before && now - before > peak)
			peak = now - before;
	}
	ok(all, "every chunk taken, nothing ready before the line end");
	is_int(r.streamed, size, "52428800 bytes streamed");
	ok(r.fnv == src, "checksum matches");
	ok(r.chunks > 1000, "in chunks as they came (%u)", r.chunks);
	is_int(r.ends, 1, "literal_end once");
	ok(peak < 1024 * 1024, "memory stayed under 1 MB more (%zu bytes)",
	    peak);
	feed_str(p, "\r\n");
	ok(imap_parser_next(p, &cmd) == 1 && cmd->argc == 3 &&
	    cmd->args[2].type == IMAP_ARG_STREAMED &&
	    cmd->args[2].size == size, "APPEND complete at the line end");
	is_int(cmd->bytes, size + 38, "bytes of the command");
	feed_str(p, "A2 NOOP\r\n");
	is_int(imap_parser_next(p, &cmd), 1, "next command parses");
	t_parser_free(&p, &r);
}

/* Bugs abort, in a forked child. */

static void
expect_panic(void (*fn)(void), const char *want, const char *what)
{
	char path[] = "/tmp/loft-imap-panic-XXXXXX", got[2048];
	int fd = mkstemp(path), status;
	ssize_t n;
	pid_t pid;

	if (fd < 0)
		bail("mkstemp");
	fflush(stdout);
	if ((pid = fork()) == 0) {
		dup2(fd, STDERR_FILENO);
		fn();
		_exit(0);
	}
	waitpid(pid, &status, 0);
	ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
	    "%s: aborts", what);
	n = pread(fd, got, sizeof(got) - 1, 0);
	got[n > 0 ? n : 0] = '\0';
	ok(strstr(got, want) != NULL, "%s: says %s", what, want);
	close(fd);
	unlink(path);
}

static void
panic_no_cont(void)
{
	static const struct imap_parser_callbacks cb = { 0 };

	imap_parser_new(&(struct imap_parser_settings){ 0 }, &cb, NULL);
}

static void
panic_line_small(void)
{
	imap_parser_new(&(struct imap_parser_settings){
	    .line_max = IMAP_PARSER_LINE_MIN - 1 }, &t_cb, NULL);
}

static void
panic_command_small(void)
{
	imap_parser_new(&(struct imap_parser_settings){ .line_max = 1000,
	    .command_max = 999 }, &t_cb, NULL);
}

static void
panic_no_stream_cb(void)
{
	static const struct imap_parser_callbacks cb = {
		.command = cb_command,
		.need_continuation = cb_cont,
	};
	struct imap_parser *p;
	struct rec r;

	rec_init(&r);
	p = imap_parser_new(&(struct imap_parser_settings){ 0 }, &cb, &r);
	feed_str(p, "a APPEND INBOX {1+}\r\n");
}

/* Which literals of a MULTIAPPEND were literal8, as literal_start was
 * told, fed byte by byte. */
static void
test_multiappend_lit8(void)
{
	static const char in[] = "a APPEND INBOX ~{3}\r\na\0b {2}\r\nxy "
	    "~{1+}\r\n\0\r\n";
	struct imap_parser *p;
	struct imap_cmd *cmd;
	struct rec r;
	int ret = 0;

	rec_init(&r);
	p = imap_parser_new(&(struct imap_parser_settings){ 0 }, &t_cb, &r);
	for (size_t i = 0; i < sizeof(in) - 1; i++) {
		r.in = (const unsigned char *)in;
		r.base = i;
		r.feed_len = 1;
		if (imap_parser_input(p, (const unsigned char *)in + i, 1) != 1)
			break;
		if ((ret = imap_parser_next(p, &cmd)) != 0)
			break;
	}
	ok(ret == 1 && r.starts == 3 && r.lit8_starts == 2 && r.start_lit8 &&
	    r.streamed == 6 && memcmp(r.data.data, "a\0bxy\0", 6) == 0,
	    "MULTIAPPEND byte by byte: literal_start told which are literal8; "
	    "NUL bytes streamed as they are");
	ok(ret == 1 && cmd->argc == 4 && cmd->args[1].literal8 &&
	    !cmd->args[2].literal8 && cmd->args[3].literal8 &&
	    cmd->args[3].nonsync && cmd->args[3].size == 1,
	    "and the streamed arguments say so");
	imap_parser_free(&p);
	buf_free(&r.data);
}

static void
test_panics(void)
{
	expect_panic(panic_no_cont, "need_continuation is required",
	    "no need_continuation");
	expect_panic(panic_line_small, "settings out of range",
	    "line_max below IMAP_PARSER_LINE_MIN");
	expect_panic(panic_command_small, "settings out of range",
	    "command_max below line_max");
	expect_panic(panic_no_stream_cb, "streaming without callbacks",
	    "STREAM without literal callbacks");
}

int
main(void)
{
	struct imap_parser_settings def = { 0 }, utf8 = { .utf8 = true };

	run_cases(&def, syntax_cases, NCASES(syntax_cases));
	run_cases(&def, error_cases, NCASES(error_cases));
	run_cases(&def, huge_cases, NCASES(huge_cases));
	run_cases(&utf8, utf8_cases, NCASES(utf8_cases));
	run_cases(&def, stream_cases, NCASES(stream_cases));
	test_line_limits();
	test_literal_limits();
	test_count_limits();
	test_minus_stream();
	test_flow();
	test_settings_change();
	test_accessors();
	test_fatal();
	test_discard_4g();
	test_stream_50mb();
	test_multiappend_lit8();
	test_panics();
	return done_testing();
}
