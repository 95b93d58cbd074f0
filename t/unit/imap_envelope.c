/*
 * Unit tests for server/imap/imap_envelope.c: address lists (display
 * names, quoted strings, comments, route-addrs, groups, encoded words,
 * 8-bit, and a catalogue of malformed input) compared byte for byte;
 * whole envelopes (missing fields, Sender and Reply-To falling back to
 * From, first field wins, folding, names in any case, cached headers and
 * whole messages giving the same answer); every prefix of every tricky
 * value and a seeded random fuzz, each output parsed by imap_check.h's
 * grammar; the output limit at N and N+1.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "msg.h"
#include "server/imap/imap_envelope.h"
#include "server/imap/imap_write.h"
#include "tap.h"
#include "imap_check.h"

static const struct {
	const char *in, *want;
} addr_cases[] = {
	/* RFC 5322 appendix A. */
	{ "John Doe <jdoe@machine.example>",
	  "((\"John Doe\" NIL \"jdoe\" \"machine.example\"))" },
	{ "Mary Smith <mary@example.net>, jdoe@example.org, "
	  "Who? <one@y.test>",
	  "((\"Mary Smith\" NIL \"mary\" \"example.net\")"
	  "(NIL NIL \"jdoe\" \"example.org\")"
	  "(\"Who?\" NIL \"one\" \"y.test\"))" },
	{ "\"Joe Q. Public\" <john.q.public@example.com>",
	  "((\"Joe Q. Public\" NIL \"john.q.public\" \"example.com\"))" },
	{ "<boss@nil.test>, "
	  "\"Giant; \\\"Big\\\" Box\" <sysservices@example.net>",
	  "((NIL NIL \"boss\" \"nil.test\")"
	  "(\"Giant; \\\"Big\\\" Box\" NIL \"sysservices\" \"example.net\"))" },
	{ "A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;",
	  "((NIL NIL \"A Group\" NIL)(\"Ed Jones\" NIL \"c\" \"a.test\")"
	  "(NIL NIL \"joe\" \"where.test\")(\"John\" NIL \"jdoe\" \"one.test\")"
	  "(NIL NIL NIL NIL))" },
	{ "Undisclosed recipients:;",
	  "((NIL NIL \"Undisclosed recipients\" NIL)(NIL NIL NIL NIL))" },
	{ "Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
	  "((\"Pete\" NIL \"pete\" \"silly.test\"))" },
	{ "A Group(Some people)\r\n"
	  "     :Chris Jones <c@(Chris's host.)public.example>,\r\n"
	  "         joe@example.org,\r\n"
	  "  John <jdoe@one.test> (my dear friend); "
	  "(the end of the group)",
	  "((NIL NIL \"A Group\" NIL)(\"Chris Jones\" NIL \"c\" "
	  "\"public.example\")(NIL NIL \"joe\" \"example.org\")"
	  "(\"John\" NIL \"jdoe\" \"one.test\")(NIL NIL NIL NIL))" },
	{ "(Empty list)(start)Hidden recipients  :(nobody(that I know))  ;",
	  "((NIL NIL \"Hidden recipients\" NIL)(NIL NIL NIL NIL))" },
	{ "Joe Q. Public <john.q.public@example.com>",
	  "((\"Joe Q. Public\" NIL \"john.q.public\" \"example.com\"))" },
	{ "Mary Smith <@node.test:mary@example.net>, , jdoe@test  . example",
	  "((\"Mary Smith\" \"@node.test\" \"mary\" \"example.net\")"
	  "(NIL NIL \"jdoe\" \"test.example\"))" },
	{ "John Doe <jdoe@machine(comment).  example>",
	  "((\"John Doe\" NIL \"jdoe\" \"machine.example\"))" },
	/* Routes, quoting, literals. */
	{ "<@route1,@route2:u@d>",
	  "((NIL \"@route1,@route2\" \"u\" \"d\"))" },
	{ "<@a, @b : u@d>", "((NIL \"@a,@b\" \"u\" \"d\"))" },
	{ "\"quoted local\"@example.com",
	  "((NIL NIL \"quoted local\" \"example.com\"))" },
	{ "\"a\\\"b\"@x", "((NIL NIL \"a\\\"b\" \"x\"))" },
	{ "a.\"b c\".d@x", "((NIL NIL \"a.b c.d\" \"x\"))" },
	{ "<a@[1.2.3.4]>", "((NIL NIL \"a\" \"[1.2.3.4]\"))" },
	{ "a@[IPv6:: 1]", "((NIL NIL \"a\" \"[IPv6:: 1]\"))" },
	{ "\"\" <a@b>", "((NIL NIL \"a\" \"b\"))" },
	{ "\"  spaced  \" <a@b>", "((\"  spaced  \" NIL \"a\" \"b\"))" },
	{ "Last, First <a@b>",
	  "((NIL NIL \"Last\" \"MISSING_DOMAIN\")"
	  "(\"First\" NIL \"a\" \"b\"))" },
	/* Comments are dropped, never a name. */
	{ "user@host (Comment Name)", "((NIL NIL \"user\" \"host\"))" },
	{ "(only comment)", "NIL" },
	{ "(nested (comment) here) a@b", "((NIL NIL \"a\" \"b\"))" },
	/* Encoded words are passed through. */
	{ "=?utf-8?q?J=C3=B6rg?= <j@x>",
	  "((\"=?utf-8?q?J=C3=B6rg?=\" NIL \"j\" \"x\"))" },
	{ "=?utf-8?q?a?= =?utf-8?q?b?= <j@x>",
	  "((\"=?utf-8?q?a?= =?utf-8?q?b?=\" NIL \"j\" \"x\"))" },
	{ "\"=?utf-8?q?J=C3=B6rg?=\" <j@x>",
	  "((\"=?utf-8?q?J=C3=B6rg?=\" NIL \"j\" \"x\"))" },
	/* 8-bit (RFC 6532) goes as a literal here (not UTF-8 mode). */
	{ "Jos\xc3\xa9 <jos\xc3\xa9@exampl\xc3\xa9.org>",
	  "(({5}\r\nJos\xc3\xa9 NIL {5}\r\njos\xc3\xa9 "
	  "{12}\r\nexampl\xc3\xa9.org))" },
	/* Empty and missing pieces. */
	{ "", "NIL" },
	{ "   ", "NIL" },
	{ ",,, ,", "NIL" },
	{ "root", "((NIL NIL \"root\" \"MISSING_DOMAIN\"))" },
	{ "first.last", "((NIL NIL \"first.last\" \"MISSING_DOMAIN\"))" },
	{ "x y z",
	  "((\"x y z\" NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\"))" },
	{ "<>", "((NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\"))" },
	{ "@", "((NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\"))" },
	{ "a@", "((NIL NIL \"a\" \"MISSING_DOMAIN\"))" },
	{ "@b", "((NIL NIL \"MISSING_MAILBOX\" \"b\"))" },
	{ "<@>", "((NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\"))" },
	{ "Name <>",
	  "((\"Name\" NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\"))" },
	/* Groups. */
	{ ": a@b;",
	  "((NIL NIL \"\" NIL)(NIL NIL \"a\" \"b\")(NIL NIL NIL NIL))" },
	{ "g: a@b",
	  "((NIL NIL \"g\" NIL)(NIL NIL \"a\" \"b\")(NIL NIL NIL NIL))" },
	{ "g:", "((NIL NIL \"g\" NIL)(NIL NIL NIL NIL))" },
	{ "g1: a@b;, g2: c@d;",
	  "((NIL NIL \"g1\" NIL)(NIL NIL \"a\" \"b\")(NIL NIL NIL NIL)"
	  "(NIL NIL \"g2\" NIL)(NIL NIL \"c\" \"d\")(NIL NIL NIL NIL))" },
	{ "g1: a@b, g2: c@d;",
	  "((NIL NIL \"g1\" NIL)(NIL NIL \"a\" \"b\")"
	  "(NIL NIL \"g2\" \"MISSING_DOMAIN\")(NIL NIL \"c\" \"d\")"
	  "(NIL NIL NIL NIL))" },
	{ "a:b:c;d;",
	  "((NIL NIL \"a\" NIL)(NIL NIL \"b\" \"MISSING_DOMAIN\")"
	  "(NIL NIL \"c\" \"MISSING_DOMAIN\")(NIL NIL NIL NIL)"
	  "(NIL NIL \"d\" \"MISSING_DOMAIN\"))" },
	{ ";;;", "NIL" },
	{ "a@b; c@d", "((NIL NIL \"a\" \"b\")(NIL NIL \"c\" \"d\"))" },
	{ "\"quoted: group\": x@y;",
	  "((NIL NIL \"quoted: group\" NIL)(NIL NIL \"x\" \"y\")"
	  "(NIL NIL NIL NIL))" },
	/* Malformed. */
	{ "a@b@c, d@e",
	  "((NIL NIL \"a\" \"b\")(NIL NIL \"d\" \"e\"))" },
	{ "broken <unterminated@x, \"open quote",
	  "((\"broken\" NIL \"unterminated\" \"x\"))" },
	{ "\"open quote <a@b>",
	  "((NIL NIL \"open quote <a@b>\" \"MISSING_DOMAIN\"))" },
	{ "(open comment a@b", "NIL" },
	{ "a@b (open comment", "((NIL NIL \"a\" \"b\"))" },
	{ "a@[open", "((NIL NIL \"a\" \"[open\"))" },
	{ "Name <a@b> trailing junk, c@d",
	  "((\"Name\" NIL \"a\" \"b\")(NIL NIL \"c\" \"d\"))" },
	{ "a) b@c", "((NIL NIL \"ab\" \"c\"))" },
	{ ">a@b", "((NIL NIL \">a\" \"b\"))" },
	{ "<<a@b>>", "((NIL NIL \"<a\" \"b\"))" },
	{ "\\\"x\\\" <a@b>",
	  "((NIL NIL \"\\\\x\\\" <a@b>\" \"MISSING_DOMAIN\"))" },
	{ "Name\r <a@b>", "((\"Name\" NIL \"a\" \"b\"))" },
	{ "\"a\rb\" <c@d>", "(({3}\r\na\rb NIL \"c\" \"d\"))" },
	{ "\"x\\", "((NIL NIL \"x\" \"MISSING_DOMAIN\"))" },
};

static struct buf out;

/* addresses: the address list of value, checked to be valid IMAP; the
 * result is a C string (outputs hold no NUL). */
static const char *
addresses(const char *value, size_t len, unsigned flags)
{
	struct imap_write w;
	const char *err;

	buf_truncate(&out, 0);
	imap_write_init(&w, &out, flags);
	imap_envelope_write_addresses(&w, (const unsigned char *)value, len);
	if (imap_write_finish(&w) < 0)
		bail("address list did not fit");
	err = ick_check(out.data, out.len, (flags & IMAP_WRITE_UTF8) != 0,
	    ick_check_addresses, false, false);
	if (err != NULL) {
		diag("invalid output for [%s]: %s", value, err);
		diag("output: [%s]", buf_cstr(&out));
		return "INVALID";
	}
	return buf_cstr(&out);
}

static void
test_addresses(void)
{
	size_t i;

	for (i = 0; i < sizeof(addr_cases) / sizeof(addr_cases[0]); i++)
		is_string(addresses(addr_cases[i].in, strlen(addr_cases[i].in),
		    0), addr_cases[i].want, "address list %zu", i);
	is_string(addresses("Jos\xc3\xa9 <a@b>", 10, IMAP_WRITE_UTF8),
	    "((\"Jos\xc3\xa9\" NIL \"a\" \"b\"))", "UTF-8 mode: UTF-8 name "
	    "quoted");
	is_string(addresses("Jos\xe9 <a@b>", 9, IMAP_WRITE_UTF8),
	    "(({4}\r\nJos\xe9 NIL \"a\" \"b\"))", "UTF-8 mode: latin-1 name "
	    "still a literal");
	is_string(addresses("a\0b@c\0d", 7, 0), "((NIL NIL \"ab\" \"cd\"))",
	    "NUL bytes dropped");
	is_string(addresses("\0", 1, 0),
	    "((NIL NIL \"\" \"MISSING_DOMAIN\"))",
	    "a lone NUL is a word that drops to nothing, still well-formed");
}

/* envelope: the ENVELOPE of hdr, checked by the grammar. */
static const char *
envelope(const char *hdr, size_t len, unsigned flags)
{
	struct imap_write w;
	const char *err;

	buf_truncate(&out, 0);
	imap_write_init(&w, &out, flags);
	imap_envelope_write(&w, (const unsigned char *)hdr, len);
	if (imap_write_finish(&w) < 0)
		bail("envelope did not fit");
	err = ick_check(out.data, out.len, (flags & IMAP_WRITE_UTF8) != 0,
	    ick_check_envelope, false, false);
	if (err != NULL) {
		diag("invalid envelope: %s: [%s]", err, buf_cstr(&out));
		return "INVALID";
	}
	return buf_cstr(&out);
}

#define ENV(h) envelope((h), strlen(h), 0)

static void
test_envelopes(void)
{
	const char *full =
	    "Date: Thu, 13 Feb 1969 23:32:54 -0330\r\n"
	    "Subject: Re: \"quoted\" \\ back\r\n"
	    "From: A <a@x.test>\r\n"
	    "Sender: S <s@x.test>\r\n"
	    "Reply-To: R <r@x.test>\r\n"
	    "To: T <t@x.test>, g: u@x.test;\r\n"
	    "Cc: c@x.test\r\n"
	    "Bcc: b@x.test\r\n"
	    "In-Reply-To: <parent@x.test>\r\n"
	    "Message-ID: <id@x.test>\r\n"
	    "References: <parent@x.test>\r\n"
	    "\r\n"
	    "body\r\n";

	is_string(ENV(full),
	    "(\"Thu, 13 Feb 1969 23:32:54 -0330\" "
	    "\"Re: \\\"quoted\\\" \\\\ back\" "
	    "((\"A\" NIL \"a\" \"x.test\")) ((\"S\" NIL \"s\" \"x.test\")) "
	    "((\"R\" NIL \"r\" \"x.test\")) ((\"T\" NIL \"t\" \"x.test\")"
	    "(NIL NIL \"g\" NIL)(NIL NIL \"u\" \"x.test\")(NIL NIL NIL NIL)) "
	    "((NIL NIL \"c\" \"x.test\")) ((NIL NIL \"b\" \"x.test\")) "
	    "\"<parent@x.test>\" \"<id@x.test>\")",
	    "every field, from a whole message");
	is_string(envelope(NULL, 0, 0),
	    "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)", "no header: all NIL");
	is_string(ENV("\n\nFrom: a@b\n"),
	    "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
	    "empty header block: all NIL (the walk stops at the empty line)");
	is_string(ENV("X-Other: y\nReferences: <r@x>\n"),
	    "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
	    "only other fields: all NIL");
	is_string(ENV("From: a@b\n"),
	    "(NIL NIL ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) "
	    "((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL NIL)",
	    "Sender and Reply-To missing: From");
	is_string(ENV("Sender:\nReply-To:  \t\nFrom: a@b\n"),
	    "(NIL NIL ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) "
	    "((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL NIL)",
	    "Sender and Reply-To empty: From");
	is_string(ENV("Sender: (nobody) ,\nReply-To: ;\nFrom: a@b\n"),
	    "(NIL NIL ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) "
	    "((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL NIL)",
	    "Sender and Reply-To without an address: From");
	is_string(ENV("Sender: s@t\n"),
	    "(NIL NIL NIL ((NIL NIL \"s\" \"t\")) NIL NIL NIL NIL NIL NIL)",
	    "no From: Reply-To NIL, Sender kept");
	is_string(ENV("Subject:\nDate: \nMessage-ID:\n"),
	    "(\"\" \"\" NIL NIL NIL NIL NIL NIL NIL \"\")",
	    "present but empty text fields: empty strings");
	is_string(ENV("SUBJECT: one\nsubject: two\nfRoM: a@b\nfrom: c@d\n"),
	    "(NIL \"one\" ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) "
	    "((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL NIL)",
	    "names in any case; the first of each wins");
	is_string(ENV("Subject: folded\r\n  over\r\n\tlines  \r\n"),
	    "(NIL \"folded  over\tlines  \" NIL NIL NIL NIL NIL NIL NIL NIL)",
	    "folded value unfolded, trailing white space kept");
	is_string(ENV("In-Reply-To:  <a@b> (x)  \n"),
	    "(NIL NIL NIL NIL NIL NIL NIL NIL \"<a@b> (x)  \" NIL)",
	    "In-Reply-To as it is");
	is_string(ENV("Subject: =?utf-8?B?w4kgbGEgcGxhZ2U=?=\n"),
	    "(NIL \"=?utf-8?B?w4kgbGEgcGxhZ2U=?=\" NIL NIL NIL NIL NIL NIL "
	    "NIL NIL)", "encoded word not decoded");
	is_string(ENV("Subject: Caf\xc3\xa9\n"),
	    "(NIL {5}\r\nCaf\xc3\xa9 NIL NIL NIL NIL NIL NIL NIL NIL)",
	    "8-bit subject: literal");
	is_string(envelope("Subject: Caf\xc3\xa9\n", 15, IMAP_WRITE_UTF8),
	    "(NIL \"Caf\xc3\xa9\" NIL NIL NIL NIL NIL NIL NIL NIL)",
	    "UTF-8 mode: quoted");
	is_string(envelope("Subject: a\0b\rc\n", 15, 0),
	    "(NIL {4}\r\nab\rc NIL NIL NIL NIL NIL NIL NIL NIL)",
	    "NUL dropped, bare CR sent in a literal");
	is_string(ENV("Subject: no line end"),
	    "(NIL \"no line end\" NIL NIL NIL NIL NIL NIL NIL NIL)",
	    "last field without a line end");
	is_string(ENV("From : spaced@name\n"),
	    "(NIL NIL ((NIL NIL \"spaced\" \"name\")) ((NIL NIL \"spaced\" "
	    "\"name\")) ((NIL NIL \"spaced\" \"name\")) NIL NIL NIL NIL NIL)",
	    "obsolete \"Name :\" syntax");
}

/* test_cached: the cached header block of msg_parse gives the same
 * envelope as the whole message. */
static void
test_cached(void)
{
	static const char msg[] =
	    "Received: from x by y\r\n"
	    "From: \"Alice\" <alice@example.org>\r\n"
	    "To: undisclosed-recipients:;\r\n"
	    "Subject: cached\r\n"
	    "X-Spam: no\r\n"
	    "Message-ID: <m1@example.org>\r\n"
	    "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
	    "\r\n"
	    "Subject: not a header\r\n";
	struct msg_info info;
	char *whole;

	msg_parse((const unsigned char *)msg, sizeof(msg) - 1, &info);
	whole = strdup(envelope(msg, sizeof(msg) - 1, 0));
	is_string(envelope((const char *)info.headers.data, info.headers.len,
	    0), whole, "cached headers and whole message agree");
	is_string(whole,
	    "(\"Mon, 1 Jan 2024 10:00:00 +0000\" \"cached\" "
	    "((\"Alice\" NIL \"alice\" \"example.org\")) "
	    "((\"Alice\" NIL \"alice\" \"example.org\")) "
	    "((\"Alice\" NIL \"alice\" \"example.org\")) "
	    "((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) "
	    "NIL NIL NIL \"<m1@example.org>\")", "and the answer is right");
	free(whole);
	msg_info_free(&info);
}

/* test_partial: a field too long for the cache is left out of it, and
 * the record says so; the envelope from the cache then lacks it, which is
 * why the caller must use the message's own header when headers_partial
 * (MINDEX_C_HEADERS_PARTIAL) is set. */
static void
test_partial(void)
{
	struct buf m;
	struct msg_info info;
	size_t i;

	buf_init(&m, SIZE_MAX);
	buf_append_str(&m, "From: a@b\nTo: ");
	for (i = 0; i < 600; i++)
		buf_printf(&m, "%suser%zu@example.org", i ? ", " : "", i);
	buf_append_str(&m, "\nSubject: s\n\nbody\n");
	msg_parse(m.data, m.len, &info);
	ok(info.headers_partial, "a 13 KB To: is not cached");
	ok(strstr(envelope((const char *)info.headers.data, info.headers.len,
	    0), "\"s\" ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) "
	    "((NIL NIL \"a\" \"b\")) NIL NIL NIL") != NULL,
	    "cached envelope: To is NIL");
	ok(strstr(envelope((const char *)m.data, m.len, 0),
	    "(NIL NIL \"user599\" \"example.org\")) NIL NIL NIL NIL)") !=
	    NULL, "the message's own header: all 600");
	msg_info_free(&info);
	buf_free(&m);
}

/* Values whose every prefix is tried: each cut can leave a quote, a
 * comment, an angle bracket or a group open. */
static const char *const tricky[] = {
	"\"Joe \\\"Q\\\" Public\" (c (nested) \\) x) "
	"<@r1,@r2:joe.q@[1.2.3.4]>, "
	"G(x): a@b, \"c d\"@e;, ;x",
	"=?utf-8?q?x?= <a@b>, Caf\xc3\xa9 <\xe9@\xff>, \"\\",
	"a:b:c;d;e<f@g>h@i(j)[k]\"l\"",
	"<<<>>>@@@,,,;;;:::\"\"\"((()))[[[]]]\\\\\\",
};

static void
test_prefixes(void)
{
	size_t t, n, bad = 0, runs = 0;
	const char *v;

	for (t = 0; t < sizeof(tricky) / sizeof(tricky[0]); t++) {
		v = tricky[t];
		for (n = 0; n <= strlen(v); n++) {
			runs++;
			if (strcmp(addresses(v, n, 0), "INVALID") == 0 ||
			    strcmp(addresses(v, n, IMAP_WRITE_UTF8),
			    "INVALID") == 0)
				bad++;
		}
	}
	is_int(bad, 0, "every prefix of the tricky values (%zu runs) gives "
	    "a valid address list", runs);
}

/* test_fuzz: seeded random values over an alphabet heavy in specials;
 * every one must give a valid envelope. */
static void
test_fuzz(void)
{
	static const char alphabet[] = "<>@,;:\"()[]\\. \t\r\nab=?\xc3\xa9\xff";
	char hdr[512];
	size_t i, k, n, bad = 0;
	unsigned long seed = 12345;
	const char *fields[] = { "From: ", "To: ", "Sender: ", "Subject: " };

	for (i = 0; i < 5000; i++) {
		n = 0;
		for (k = 0; k < 4; k++) {
			memcpy(hdr + n, fields[k], strlen(fields[k]));
			n += strlen(fields[k]);
			while (n < (k + 1) * 120) {
				seed = seed * 6364136223846793005ul +
				    1442695040888963407ul;
				hdr[n++] = alphabet[(seed >> 33) %
				    (sizeof(alphabet) - 1)];
			}
			hdr[n++] = '\n';
		}
		if (strcmp(envelope(hdr, n, i % 2 ? IMAP_WRITE_UTF8 : 0),
		    "INVALID") == 0)
			bad++;
	}
	is_int(bad, 0, "5000 random headers give valid envelopes");
}

/* test_limit: the envelope into a buffer of exactly its size, and of one
 * byte less. */
static void
test_limit(void)
{
	const char *hdr = "From: A <a@b>\nTo: g: c@d;\nSubject: \xc3\xa9\n";
	struct imap_write w;
	struct buf b;
	size_t n;

	buf_init(&b, SIZE_MAX);
	imap_write_init(&w, &b, 0);
	imap_envelope_write(&w, (const unsigned char *)hdr, strlen(hdr));
	imap_write_finish(&w);
	n = b.len;
	buf_free(&b);

	buf_init(&b, n);
	imap_write_init(&w, &b, 0);
	is_int(imap_envelope_write(&w, (const unsigned char *)hdr,
	    strlen(hdr)), 0, "limit N: envelope written");
	is_int(imap_write_finish(&w), 0, "limit N: finish");
	is_int(b.len, n, "limit N: all of it");
	buf_free(&b);

	buf_init(&b, n - 1);
	imap_write_init(&w, &b, 0);
	is_int(imap_envelope_write(&w, (const unsigned char *)hdr,
	    strlen(hdr)), -1, "limit N - 1: -1");
	is_int(imap_write_finish(&w), -1, "limit N - 1: finish -1");
	is_int(b.len, 0, "limit N - 1: nothing left");
	buf_free(&b);
}

/* test_big: a long list is linear and stays valid. */
static void
test_big(void)
{
	struct buf v;
	size_t i;
	const char *res;

	buf_init(&v, SIZE_MAX);
	for (i = 0; i < 20000; i++)
		buf_printf(&v, "%sName %zu <user%zu@example.org>",
		    i ? ", " : "", i, i);
	res = addresses((const char *)v.data, v.len, 0);
	ok(strncmp(res, "((\"Name 0\" NIL \"user0\" \"example.org\")", 37)
	    == 0 && strstr(res, "(\"Name 19999\" NIL \"user19999\" "
	    "\"example.org\"))") != NULL, "20000 addresses, valid");
	buf_free(&v);
}

int
main(void)
{
	buf_init(&out, 64u << 20);
	test_addresses();
	test_envelopes();
	test_cached();
	test_partial();
	test_prefixes();
	test_fuzz();
	test_limit();
	test_big();
	buf_free(&out);
	return done_testing();
}
