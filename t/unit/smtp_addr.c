/*
 * Unit tests for smtp/smtp_addr.c: a table of good paths (every field and
 * flag of struct smtp_path checked, and the formatted form) and bad ones
 * (the error named), the limits at N and N+1 (local part, label, path,
 * IPv4 octets), hostile bytes (NUL, controls, invalid UTF-8, 8-bit
 * without SMTPUTF8), every prefix of a good path, and formatting into
 * short buffers.
 */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "compat/compat.h"
#include "smtp/smtp_addr.h"
#include "tap.h"

#define RCPT	0x0		/* allow_null false */
#define MAIL	0x1		/* allow_null true */
#define UTF8	0x2		/* smtputf8 */

struct good {
	const char *in;
	unsigned int opts;
	const char *local;
	const char *domain;
	const char *flags;	/* letters of the flags set, see flags() */
	const char *fmt;	/* smtp_path_format */
};

static const struct good goods[] = {
	{ "<>", MAIL, "", "", "n", "<>" },
	{ "<a@b>", RCPT, "a", "b", "", "<a@b>" },
	{ "<alice@example.org>", RCPT, "alice", "example.org", "",
	    "<alice@example.org>" },
	{ "<Alice@EXAMPLE.Org>", MAIL, "Alice", "example.org", "",
	    "<Alice@example.org>" },
	{ "<first.last@example.org>", RCPT, "first.last", "example.org", "",
	    "<first.last@example.org>" },
	{ "<a!#$&'*+-/=?^_`{|}~@x.y>", RCPT, "a!#$&'*+-/=?^_`{|}~", "x.y",
	    "b", "<a!#$&'*+-/=?^_`{|}~@x.y>" },
	{ "<user+tag@example.org>", RCPT, "user+tag", "example.org", "",
	    "<user+tag@example.org>" },
	{ "<x@a-b.c-d.example>", RCPT, "x", "a-b.c-d.example", "",
	    "<x@a-b.c-d.example>" },
	{ "<x@1.2.3.4.example>", RCPT, "x", "1.2.3.4.example", "",
	    "<x@1.2.3.4.example>" },
	{ "<x@123>", RCPT, "x", "123", "", "<x@123>" },
	/* Quoted strings. */
	{ "<\"a b\"@x>", RCPT, "a b", "x", "q", "<\"a b\"@x>" },
	{ "<\"john\"@x>", RCPT, "john", "x", "q", "<john@x>" },
	{ "<\"a\\\"b\"@x>", RCPT, "a\"b", "x", "q", "<\"a\\\"b\"@x>" },
	{ "<\"a\\\\b\"@x>", RCPT, "a\\b", "x", "q", "<\"a\\\\b\"@x>" },
	{ "<\"\\a\"@x>", RCPT, "a", "x", "q", "<a@x>" },
	{ "<\"a@b\"@x>", RCPT, "a@b", "x", "q", "<\"a@b\"@x>" },
	{ "<\"a>b\"@x>", RCPT, "a>b", "x", "q", "<\"a>b\"@x>" },
	{ "<\"a..b\"@x>", RCPT, "a..b", "x", "q", "<\"a..b\"@x>" },
	{ "<\".a\"@x>", RCPT, ".a", "x", "q", "<\".a\"@x>" },
	{ "<\"a%b\"@x>", RCPT, "a%b", "x", "qp", "<a%b@x>" },
	{ "<\"a!b\"@x>", RCPT, "a!b", "x", "qb", "<a!b@x>" },
	{ "<\"a\\ b\"@x>", RCPT, "a b", "x", "q", "<\"a b\"@x>" },
	/* Routing forms. */
	{ "<user%other@x>", RCPT, "user%other", "x", "p",
	    "<user%other@x>" },
	{ "<other!user@x>", RCPT, "other!user", "x", "b",
	    "<other!user@x>" },
	{ "<a%b!c@x>", RCPT, "a%b!c", "x", "pb", "<a%b!c@x>" },
	{ "<@a:user@b>", RCPT, "user", "b", "r", "<user@b>" },
	{ "<@a.example,@b.example:user@c.example>", RCPT, "user",
	    "c.example", "r", "<user@c.example>" },
	{ "<@A:u%v@B.>", RCPT, "u%v", "b", "rpd", "<u%v@b>" },
	/* Trailing dot. */
	{ "<u@example.org.>", RCPT, "u", "example.org", "d",
	    "<u@example.org>" },
	{ "<u@x.>", MAIL, "u", "x", "d", "<u@x>" },
	/* Address literals. */
	{ "<u@[192.0.2.1]>", RCPT, "u", "[192.0.2.1]", "l",
	    "<u@[192.0.2.1]>" },
	{ "<u@[0.0.0.0]>", RCPT, "u", "[0.0.0.0]", "l", "<u@[0.0.0.0]>" },
	{ "<u@[255.255.255.255]>", RCPT, "u", "[255.255.255.255]", "l",
	    "<u@[255.255.255.255]>" },
	{ "<u@[001.02.3.4]>", RCPT, "u", "[001.02.3.4]", "l",
	    "<u@[001.02.3.4]>" },
	{ "<u@[IPv6:2001:DB8::1]>", RCPT, "u", "[ipv6:2001:db8::1]", "l",
	    "<u@[ipv6:2001:db8::1]>" },
	{ "<u@[ipv6:::1]>", RCPT, "u", "[ipv6:::1]", "l",
	    "<u@[ipv6:::1]>" },
	{ "<u@[IPv6:::ffff:192.0.2.1]>", RCPT, "u",
	    "[ipv6:::ffff:192.0.2.1]", "l", "<u@[ipv6:::ffff:192.0.2.1]>" },
	/* 45 characters, the longest IPv6 text. */
	{ "<u@[IPv6:0000:0000:0000:0000:0000:ffff:255.255.255.255]>", RCPT,
	    "u", "[ipv6:0000:0000:0000:0000:0000:ffff:255.255.255.255]", "l",
	    "<u@[ipv6:0000:0000:0000:0000:0000:ffff:255.255.255.255]>" },
	{ "<\"a b\"@[192.0.2.1]>", RCPT, "a b", "[192.0.2.1]", "ql",
	    "<\"a b\"@[192.0.2.1]>" },
	/* postmaster. */
	{ "<postmaster>", RCPT, "postmaster", "", "m", "<postmaster>" },
	{ "<PostMaster>", RCPT, "postmaster", "", "m", "<postmaster>" },
	{ "<postmaster@example.org>", RCPT, "postmaster", "example.org", "",
	    "<postmaster@example.org>" },
	/* SMTPUTF8. */
	{ "<j\xc3\xb6rg@example.org>", RCPT | UTF8, "j\xc3\xb6rg",
	    "example.org", "u", "<j\xc3\xb6rg@example.org>" },
	{ "<u@b\xc3\xbc" "cher.example>", RCPT | UTF8, "u",
	    "b\xc3\xbc" "cher.example", "u", "<u@b\xc3\xbc" "cher.example>" },
	{ "<\"\xe2\x82\xac x\"@x>", RCPT | UTF8, "\xe2\x82\xac x", "x", "qu",
	    "<\"\xe2\x82\xac x\"@x>" },
	{ "<\xf0\x9f\x93\xa7@x>", RCPT | UTF8, "\xf0\x9f\x93\xa7", "x", "u",
	    "<\xf0\x9f\x93\xa7@x>" },
	{ "<\xf4\x8f\xbf\xbf@x>", RCPT | UTF8, "\xf4\x8f\xbf\xbf", "x", "u",
	    "<\xf4\x8f\xbf\xbf@x>" },
	{ "<plain@x>", RCPT | UTF8, "plain", "x", "", "<plain@x>" },
	{ "<>", MAIL | UTF8, "", "", "n", "<>" },
};

struct bad {
	const char *in;
	unsigned int opts;
	const char *why;	/* must appear in the error */
};

static const struct bad bads[] = {
	{ "", MAIL, "empty address" },
	{ "<", MAIL, "angle brackets" },
	{ ">", MAIL, "angle brackets" },
	{ "a@b", RCPT, "angle brackets" },
	{ "<a@b", RCPT, "angle brackets" },
	{ "a@b>", RCPT, "angle brackets" },
	{ " <a@b>", RCPT, "angle brackets" },
	{ "<a@b> ", RCPT, "angle brackets" },
	{ "<>", RCPT, "null address not allowed" },
	{ "< >", MAIL, "malformed local part" },
	{ "<<a@b>>", RCPT, "malformed local part" },
	{ "<a@b>c>", RCPT, "malformed domain" },
	{ "<@b>", RCPT, "source route" },
	{ "<a>", RCPT, "missing domain" },
	{ "<postmaster>", MAIL, "missing domain" },
	{ "<@a:postmaster>", RCPT, "missing domain" },
	{ "<a@>", RCPT, "empty domain" },
	{ "<@x>", RCPT, "source route" },
	{ "<a..b@x>", RCPT, "malformed local part" },
	{ "<.a@x>", RCPT, "malformed local part" },
	{ "<a.@x>", RCPT, "malformed local part" },
	{ "<a b@x>", RCPT, "malformed local part" },
	{ "<a(b)@x>", RCPT, "malformed local part" },
	{ "<a,b@x>", RCPT, "malformed local part" },
	{ "<a[b@x>", RCPT, "malformed local part" },
	{ "<a\\b@x>", RCPT, "malformed local part" },
	{ "<\"\"@x>", RCPT, "empty local part" },
	{ "<\"a@x>", RCPT, "unbalanced quote" },
	{ "<\"a\\\"@x>", RCPT, "unbalanced quote" },
	{ "<\"a\"b@x>", RCPT, "malformed local part" },
	{ "<a\"b\"@x>", RCPT, "malformed local part" },
	{ "<\"a\".b@x>", RCPT, "malformed local part" },
	{ "<a@b@c>", RCPT, "malformed domain" },
	{ "<a@.x>", RCPT, "malformed domain" },
	{ "<a@x..y>", RCPT, "malformed domain" },
	{ "<a@x.>.>", RCPT, "malformed domain" },
	{ "<a@x..>", RCPT, "malformed domain" },
	{ "<a@.>", RCPT, "malformed domain" },
	{ "<a@-x>", RCPT, "malformed domain" },
	{ "<a@x->", RCPT, "malformed domain" },
	{ "<a@x-.y>", RCPT, "malformed domain" },
	{ "<a@x.-y>", RCPT, "malformed domain" },
	{ "<a@ex_ample.org>", RCPT, "malformed domain" },
	{ "<a@exa mple.org>", RCPT, "malformed domain" },
	{ "<a@x y>", RCPT, "malformed domain" },
	{ "<a@x,y>", RCPT, "malformed domain" },
	{ "<@a,b:u@x>", RCPT, "source route" },
	{ "<@a:@b:u@x>", RCPT, "empty local part" },
	{ "<@a;u@x>", RCPT, "source route" },
	{ "<@:u@x>", RCPT, "source route" },
	{ "<@a.:u@x>", RCPT, "source route" },
	{ "<@[192.0.2.1]:u@x>", RCPT, "source route" },
	{ "<@a,:u@x>", RCPT, "source route" },
	{ "<a@[192.0.2.1>", RCPT, "malformed address literal" },
	{ "<a@192.0.2.1]>", RCPT, "malformed domain" },
	{ "<a@[]>", RCPT, "malformed address literal" },
	{ "<a@[192.0.2]>", RCPT, "malformed address literal" },
	{ "<a@[192.0.2.1.5]>", RCPT, "malformed address literal" },
	{ "<a@[192.0.2.256]>", RCPT, "malformed address literal" },
	{ "<a@[192.0.2.0001]>", RCPT, "malformed address literal" },
	{ "<a@[192.0.2.-1]>", RCPT, "malformed address literal" },
	{ "<a@[192.0.2.1].>", RCPT, "malformed address literal" },
	{ "<a@[192.0.2.1]x>", RCPT, "malformed address literal" },
	{ "<a@[IPv6:2001:db8::g]>", RCPT, "malformed address literal" },
	{ "<a@[IPv6:2001:db8:::1]>", RCPT, "malformed address literal" },
	{ "<a@[IPv6:192.0.2.1]>", RCPT, "malformed address literal" },
	{ "<a@[2001:db8::1]>", RCPT, "unsupported address literal" },
	{ "<a@[x400:abc]>", RCPT, "unsupported address literal" },
	{ "<a@[IPv6:0000:0000:0000:0000:0000:ffff:255.255.255.2550]>", RCPT,
	    "malformed address literal" },
	{ "<a@[a]b]>", RCPT, "malformed address literal" },
	/* 8-bit and UTF-8. */
	{ "<j\xc3\xb6rg@example.org>", RCPT, "without SMTPUTF8" },
	{ "<u@b\xc3\xbc" "cher.example>", MAIL, "without SMTPUTF8" },
	{ "<j\xf6rg@example.org>", RCPT | UTF8, "invalid UTF-8" },
	{ "<j\xc0\xafrg@x>", RCPT | UTF8, "invalid UTF-8" },
	{ "<j\xe0\x80\xafrg@x>", RCPT | UTF8, "invalid UTF-8" },
	{ "<j\xed\xa0\x80rg@x>", RCPT | UTF8, "invalid UTF-8" },
	{ "<j\xf4\x90\x80\x80rg@x>", RCPT | UTF8, "invalid UTF-8" },
	{ "<j\xf5\x80\x80\x80rg@x>", RCPT | UTF8, "invalid UTF-8" },
	{ "<j\xc3@x>", RCPT | UTF8, "invalid UTF-8" },
	{ "<j@x\xe2\x82>", RCPT | UTF8, "invalid UTF-8" },
	{ "<\"\\\xc3\xb6\"@x>", RCPT | UTF8, "malformed local part" },
	{ "<\xc3\xb6@x>", RCPT | UTF8 | MAIL, NULL },	/* must pass */
	/* Control bytes. */
	{ "<a\r\n@x>", RCPT, "control character" },
	{ "<a@x\r>", RCPT, "control character" },
	{ "<a@x\n>", RCPT, "control character" },
	{ "<a\t@x>", RCPT, "control character" },
	{ "<\"a\tb\"@x>", RCPT, "control character" },
	{ "<\"a\\\x7f\"@x>", RCPT, "control character" },
	{ "<a\x1b[0m@x>", RCPT, "control character" },
	{ "<a@x\x7f>", RCPT, "control character" },
};

/* show: s with bytes outside printable ASCII as \xHH, for test names
 * (a raw CR or LF would break the TAP output). */
static const char *
show(const char *s)
{
	static char out[4][1024];
	static unsigned int which;
	char *o = out[which++ % 4];
	size_t n = 0;

	for (; *s != '\0' && n + 5 < sizeof(out[0]); s++) {
		unsigned char c = (unsigned char)*s;

		if (c >= 0x20 && c < 0x7f)
			o[n++] = (char)c;
		else
			n += (size_t)snprintf(o + n, 5, "\\x%02x", c);
	}
	o[n] = '\0';
	return o;
}

/* flags: the letters of the flags of p that are set, in a fixed order. */
static const char *
flags(const struct smtp_path *p, char *out)
{
	char *o = out;

	if (p->null)
		*o++ = 'n';
	if (p->quoted)
		*o++ = 'q';
	if (p->route)
		*o++ = 'r';
	if (p->literal)
		*o++ = 'l';
	if (p->trailing_dot)
		*o++ = 'd';
	if (p->percent)
		*o++ = 'p';
	if (p->bang)
		*o++ = 'b';
	if (p->utf8)
		*o++ = 'u';
	if (p->postmaster)
		*o++ = 'm';
	*o = '\0';
	return out;
}

/* canonical: the letters in flags()'s order, whatever order the table
 * wrote them in. */
static const char *
canonical(const char *letters, char *out)
{
	const char *order = "nqrldpbum", *c;
	char *o = out;

	for (c = order; *c != '\0'; c++)
		if (strchr(letters, *c) != NULL)
			*o++ = *c;
	*o = '\0';
	return out;
}

static int
parse(const char *in, size_t len, unsigned int opts, struct smtp_path *p,
    const char **err)
{
	return smtp_path_parse(in, len, (opts & MAIL) != 0,
	    (opts & UTF8) != 0, p, err);
}

static void
test_goods(void)
{
	struct smtp_path p;
	char got[16], want[16], fmt[SMTP_PATH_MAX + 3];
	const char *err;
	size_t i;

	for (i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
		const struct good *g = &goods[i];

		err = NULL;
		memset(&p, 0x5a, sizeof(p));
		if (!ok(parse(g->in, strlen(g->in), g->opts, &p, &err) == 0,
		    "good %zu: %s", i, show(g->in))) {
			diag("error: %s", err);
			continue;
		}
		is_string(p.local, g->local, "  local part");
		is_string(p.domain, g->domain, "  domain");
		is_string(flags(&p, got), canonical(g->flags, want),
		    "  flags");
		is_string(smtp_path_format(&p, fmt, sizeof(fmt)), g->fmt,
		    "  formatted");
	}
}

static void
test_bads(void)
{
	struct smtp_path p, before;
	const char *err;
	size_t i;

	for (i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		const struct bad *b = &bads[i];

		err = NULL;
		memset(&p, 0x5a, sizeof(p));
		before = p;
		if (b->why == NULL) {
			ok(parse(b->in, strlen(b->in), b->opts, &p, &err) == 0,
			    "good %zu: %s", i, show(b->in));
			continue;
		}
		if (!ok(parse(b->in, strlen(b->in), b->opts, &p, &err) == -1 &&
		    err != NULL && strstr(err, b->why) != NULL,
		    "bad %zu: %s", i, show(b->in)))
			diag("error: %s", err != NULL ? err : "(none)");
		ok(memcmp(&p, &before, sizeof(p)) == 0, "  result untouched");
	}
}

/* repeat: n copies of c into out, NUL-terminated. */
static char *
repeat(char *out, char c, size_t n)
{
	memset(out, c, n);
	out[n] = '\0';
	return out;
}

/* check: parse text; want_error NULL means it must succeed. */
static void
check(const char *text, unsigned int opts, const char *want_error,
    const char *name)
{
	struct smtp_path p;
	const char *err = NULL;
	int r;

	r = parse(text, strlen(text), opts, &p, &err);
	if (want_error == NULL) {
		if (!ok(r == 0, "%s", name))
			diag("error: %s", err);
	} else if (!ok(r == -1 && strstr(err, want_error) != NULL, "%s",
	    name))
		diag("got %d, error: %s", r, err != NULL ? err : "(none)");
}

static void
test_limits(void)
{
	char local[100], label[100], text[600], dom[420];
	struct smtp_path p;
	const char *err;

	/* Local part: 64 octets as sent. */
	snprintf(text, sizeof(text), "<%s@x>", repeat(local, 'l', 64));
	check(text, RCPT, NULL, "local part of 64");
	ok(parse(text, strlen(text), RCPT, &p, &err) == 0 &&
	    strlen(p.local) == 64, "  kept whole");
	snprintf(text, sizeof(text), "<%s@x>", repeat(local, 'l', 65));
	check(text, RCPT, "local part too long", "local part of 65");
	/* Quoted: 62 inside + 2 quotes = 64. */
	snprintf(text, sizeof(text), "<\"%s\"@x>", repeat(local, ' ', 62));
	check(text, RCPT, NULL, "quoted local part of 64 as sent");
	snprintf(text, sizeof(text), "<\"%s\"@x>", repeat(local, ' ', 63));
	check(text, RCPT, "local part too long",
	    "quoted local part of 65 as sent");
	/* Backslashes count as sent: 31 pairs + 2 = 64, 32 pairs = 66. */
	repeat(local, 'x', 62);
	for (size_t i = 0; i < 62; i += 2)
		local[i] = '\\';
	snprintf(text, sizeof(text), "<\"%s\"@x>", local);
	check(text, RCPT, NULL, "quoted pairs, 64 as sent");
	ok(parse(text, strlen(text), RCPT, &p, &err) == 0 &&
	    strlen(p.local) == 31, "  31 characters unquoted");
	snprintf(text, sizeof(text), "<\"%s\\x\"@x>", local);
	check(text, RCPT, "local part too long", "quoted pairs, 66 as sent");
	/* UTF-8 counts in octets: 32 two-byte characters = 64. */
	text[0] = '<';
	for (size_t i = 0; i < 32; i++)
		memcpy(text + 1 + 2 * i, "\xc3\xa9", 2);
	strlcpy(text + 65, "@x>", sizeof(text) - 65);
	check(text, RCPT | UTF8, NULL, "UTF-8 local part of 64 octets");
	text[0] = '<';
	text[1] = 'a';
	for (size_t i = 0; i < 32; i++)
		memcpy(text + 2 + 2 * i, "\xc3\xa9", 2);
	strlcpy(text + 66, "@x>", sizeof(text) - 66);
	check(text, RCPT | UTF8, "local part too long",
	    "UTF-8 local part of 65 octets");

	/* A label: 63. */
	snprintf(text, sizeof(text), "<u@%s.org>", repeat(label, 'd', 63));
	check(text, RCPT, NULL, "label of 63");
	snprintf(text, sizeof(text), "<u@%s.org>", repeat(label, 'd', 64));
	check(text, RCPT, "label too long", "label of 64");
	snprintf(text, sizeof(text), "<u@x.%s>", repeat(label, 'd', 64));
	check(text, RCPT, "label too long", "last label of 64");
	snprintf(text, sizeof(text), "<@%s:u@x>", repeat(label, 'd', 64));
	check(text, RCPT, "source route", "route label of 64");

	/* The path: 256 with the brackets. "<u@" + 252 + ">" = 256, where
	 * the domain (at most 255) always fits. */
	snprintf(dom, sizeof(dom), "%s.%s.%s.%s", repeat(label, 'a', 63),
	    label, label, repeat(local, 'b', 60));
	is_int(strlen(dom), 252, "domain of 252");
	snprintf(text, sizeof(text), "<u@%s>", dom);
	is_int(strlen(text), 256, "path of 256");
	check(text, RCPT, NULL, "path of 256 accepted");
	ok(parse(text, strlen(text), RCPT, &p, &err) == 0 &&
	    strcmp(p.domain, dom) == 0, "  domain kept whole");
	snprintf(text, sizeof(text), "<uu@%s>", dom);
	check(text, RCPT, "too long", "path of 257 refused");
	snprintf(text, sizeof(text), "<u@%s.>", dom);
	check(text, RCPT, "too long", "path of 257 by its trailing dot");
	snprintf(text, sizeof(text), "<@r:u@%s>", repeat(local, 'c', 61));
	check(text, RCPT, NULL, "path of 256 with a route");
	ok(parse(text, strlen(text), RCPT, &p, &err) == 0 && p.route,
	    "  route flagged");
	snprintf(text, sizeof(text), "<@r:u@%s>", dom);
	check(text, RCPT, "too long", "the route counts");
	text[0] = '<';
	repeat(text + 1, 'x', sizeof(text) - 3);
	text[sizeof(text) - 2] = '>';
	text[sizeof(text) - 1] = '\0';
	check(text, RCPT, "too long", "a long junk path");

	/* IPv4 octets: 255 and 256, three digits and four. */
	check("<u@[1.2.3.255]>", RCPT, NULL, "octet 255");
	check("<u@[1.2.3.256]>", RCPT, "literal", "octet 256");
	check("<u@[1.2.3.099]>", RCPT, NULL, "octet of 3 digits");
	check("<u@[1.2.3.0099]>", RCPT, "literal", "octet of 4 digits");
}

/* Hostile bytes that C strings cannot carry. */
static void
test_hostile(void)
{
	struct smtp_path p;
	const char *err;
	char text[64], fmt[SMTP_PATH_MAX + 3];
	unsigned int c;
	int refused;

	err = NULL;
	ok(smtp_path_parse("<a\0b@x>", 7, false, true, &p, &err) == -1 &&
	    strstr(err, "NUL") != NULL, "NUL in the local part");
	ok(smtp_path_parse("<ab@x\0>", 7, false, true, &p, &err) == -1 &&
	    strstr(err, "NUL") != NULL, "NUL in the domain");
	ok(smtp_path_parse("<\"a\0\"@x>", 8, false, true, &p, &err) == -1 &&
	    strstr(err, "NUL") != NULL, "NUL in a quoted string");
	ok(smtp_path_parse("<ab@x>\0", 7, false, true, &p, &err) == -1,
	    "NUL after the path");
	ok(smtp_path_parse("<ab@x>junk", 6, false, false, &p, &err) == 0 &&
	    strcmp(p.domain, "x") == 0, "only len bytes are read");

	/* Every byte value in a dot-string local part: only atext passes,
	 * and the 8-bit ones only with SMTPUTF8 (never as a lone byte). */
	refused = 0;
	for (c = 1; c < 256; c++) {
		bool atext = (c >= 'a' && c <= 'z') || (c >= 'A' &&
		    c <= 'Z') || (c >= '0' && c <= '9') ||
		    strchr(".!#$%&'*+-/=?^_`{|}~", (int)c) != NULL;

		snprintf(text, sizeof(text), "<a%cb@x>", (char)c);
		if ((smtp_path_parse(text, strlen(text), false, true, &p,
		    &err) == 0) != atext) {
			diag("byte 0x%02x", c);
			refused = -1;
			break;
		}
		if (atext)
			is_string(smtp_path_format(&p, fmt, sizeof(fmt)), text,
			    "byte 0x%02x formats back", c);
	}
	is_int(refused, 0, "every byte: atext accepted, the rest refused");

	/* Every byte in a quoted string: 32..126 but '"' and '\'. */
	refused = 0;
	for (c = 1; c < 256; c++) {
		bool qtext = c >= 32 && c <= 126 && c != '"' && c != '\\';
		struct smtp_path q;

		snprintf(text, sizeof(text), "<\"a%c\"@x>", (char)c);
		if ((smtp_path_parse(text, strlen(text), false, true, &p,
		    &err) == 0) != qtext) {
			diag("byte 0x%02x", c);
			refused = -1;
			break;
		}
		/* Formatting and parsing again gives the same mailbox. */
		if (!qtext)
			continue;
		smtp_path_format(&p, fmt, sizeof(fmt));
		if (smtp_path_parse(fmt, strlen(fmt), false, true, &q,
		    &err) < 0 ||
		    strcmp(q.local, p.local) != 0) {
			diag("byte 0x%02x: %s", c, fmt);
			refused = -1;
			break;
		}
	}
	is_int(refused, 0, "every byte in a quoted string");
}

/* Every proper prefix of a good path, and every one-byte truncation of
 * its inside, is refused (ASan watches the reads past the end). */
static void
test_prefixes(void)
{
	static const char *const paths[] = {
		"<@a.example,@b.example:\"q \\\" x\"@[IPv6:2001:db8::1]>",
		"<user%other@example.org.>",
		"<j\xc3\xb6rg@b\xc3\xbc" "cher.example>",
		"<u@[192.0.2.1]>",
	};
	struct smtp_path p;
	const char *err;
	size_t i, n, len;
	int bad;

	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		len = strlen(paths[i]);
		ok(smtp_path_parse(paths[i], len, false, true, &p, &err) == 0,
		    "whole: %s", show(paths[i]));
		bad = 0;
		for (n = 0; n < len; n++) {
			char *copy = malloc(n > 0 ? n : 1);

			memcpy(copy, paths[i], n);
			if (smtp_path_parse(copy, n, false, true, &p,
			    &err) == 0)
				bad++;
			free(copy);
		}
		is_int(bad, 0, "  every prefix refused");
	}
}

static void
test_format_short(void)
{
	struct smtp_path p;
	const char *err;
	char out[8];

	ok(smtp_path_parse("<alice@example.org>", 19, false, false, &p,
	    &err) == 0, "parse for a short buffer");
	is_string(smtp_path_format(&p, out, sizeof(out)), "<alice@",
	    "formatted into 8 bytes: cut, NUL-terminated");
	is_string(smtp_path_format(&p, out, 1), "", "into 1 byte");
	out[0] = 'x';
	smtp_path_format(&p, out, 0);
	is_int(out[0], 'x', "into 0 bytes: nothing written");
}

int
main(void)
{
	test_goods();
	test_bads();
	test_limits();
	test_hostile();
	test_prefixes();
	test_format_short();
	return done_testing();
}
