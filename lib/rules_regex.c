/*
 * rules_regex.c: procmail's egrep dialect (procmailrc(5), "Extended
 * regular expressions" and "MISCELLANEOUS") translated into PCRE2.
 *
 * What differs from PCRE and is rewritten: the macros ^TO_, ^TO,
 * ^FROM_DAEMON and ^FROM_MAILER; "^^" (start or end of the search area);
 * \< and \> (a non-word character, newline included); "\/" (the rest is
 * MATCH, group 1; the left side matches as little as it can, which is
 * what procmail's MATCH gives: "^Subject:.*\/[0-9]+" yields all the
 * digits); "{" has no meaning (no intervals); "\" before a letter or
 * digit is that letter (no \d, \w, \n classes); a negated bracket
 * expression never matches a newline.
 *
 * SECURITY: the input is the user's rule text. Output is bounded by the
 * buffer's maximum; PCRE2 compiles it with its own limits.
 */
#include "config.h"

#include <ctype.h>
#include <string.h>

#include "buf.h"
#include "rules_private.h"

static const char rules_macro_to_[] =
    "(^((Original-)?(Resent-)?(To|Cc|Bcc)|(X-Envelope|Apparently(-Resent)?)"
    "-To):(.*[^-a-zA-Z0-9_.])?)";
static const char rules_macro_to[] =
    "(^((Original-)?(Resent-)?(To|Cc|Bcc)|(X-Envelope|Apparently(-Resent)?)"
    "-To):(.*[^a-zA-Z])?)";
static const char rules_macro_from_daemon[] =
    "(^(Mailing-List:|Precedence:.*(junk|bulk|list)|To: Multiple "
    "recipients of |(((Resent-)?(From|Sender)|X-Envelope-From):|>?From )"
    "([^>]*[^(.%@a-z0-9])?(Post(ma?(st(e?r)?|n)|office)|(send)?Mail(er)?"
    "|daemon|m(mdf|ajordomo)|n?uucp|LIST(SERV|proc)|NETSERV|o(wner|ps)"
    "|r(e(quest|sponse)|oot)|b(ounce|bs\\.smtp)|echo|mirror|s(erv(ices?|er)"
    "|mtp(error)?|ystem)|A(dmin(istrator)?|MMGR|utoanswer))(([^).!:a-z0-9]"
    "[-_a-z0-9]*)?[%@>\t ][^<)]*(\\(.*\\).*)?)?$([^>]|$)))";
static const char rules_macro_from_mailer[] =
    "(^(((Resent-)?(From|Sender)|X-Envelope-From):|>?From )"
    "([^>]*[^(.%@a-z0-9])?(Post(ma(st(er)?|n)|office)|(send)?Mail(er)?"
    "|daemon|mmdf|n?uucp|ops|r(esponse|oot)|(bbs\\.)?smtp(error)?"
    "|s(erv(ices?|er)|ystem)|A(dmin(istrator)?|MMGR))(([^).!:a-z0-9]"
    "[-_a-z0-9]*)?[%@>\t ][^<)]*(\\(.*\\).*)?)?$([^>]|$))";

/* The macro at re, if any: its expansion and the length it replaces. */
static const char *
rules_regex_macro(const char *re, size_t *len_r)
{
	static const struct {
		const char *name;
		const char *text;
	} macros[] = {
		{ "^FROM_DAEMON", rules_macro_from_daemon },
		{ "^FROM_MAILER", rules_macro_from_mailer },
		{ "^TO_", rules_macro_to_ },
		{ "^TO", rules_macro_to },
	};
	size_t i;

	for (i = 0; i < sizeof(macros) / sizeof(macros[0]); i++) {
		size_t n = strlen(macros[i].name);

		if (strncmp(re, macros[i].name, n) == 0) {
			*len_r = n;
			return macros[i].text;
		}
	}
	return NULL;
}

/* Macros first, into plain procmail syntax. */
static int
rules_regex_macros(const char *re, struct buf *out)
{
	const char *m;
	size_t n;

	while (*re != '\0') {
		size_t plain = strcspn(re, "\\^");

		if (plain > 0) {
			if (buf_append(out, re, plain) < 0)
				return -1;
			re += plain;
			continue;
		}
		if (*re == '\\' && re[1] != '\0') {
			if (buf_append(out, re, 2) < 0)
				return -1;
			re += 2;
			continue;
		}
		m = *re == '^' ? rules_regex_macro(re, &n) : NULL;
		if (m != NULL) {
			if (buf_append_str(out, m) < 0)
				return -1;
			re += n;
			continue;
		}
		if (buf_append_byte(out, (unsigned char)*re++) < 0)
			return -1;
	}
	return 0;
}

/* A bracket expression starting at re[0] == '['; returns its length. */
static int
rules_regex_bracket(const char *re, struct buf *out, size_t *len_r)
{
	size_t i = 1, start = out->len;
	bool negated = re[1] == '^';

	if (buf_append_byte(out, '[') < 0)
		return -1;
	if (negated) {
		if (buf_append_byte(out, '^') < 0)
			return -1;
		i++;
	}
	if (re[i] == ']') {
		if (buf_append_str(out, "\\]") < 0)
			return -1;
		i++;
	}
	for (; re[i] != '\0' && re[i] != ']'; i++) {
		int ret;

		if (re[i] == '\\' && re[i + 1] != '\0') {
			i++;
			ret = isalnum((unsigned char)re[i]) ?
			    buf_append_byte(out, (unsigned char)re[i]) :
			    buf_printf(out, "\\%c", re[i]);
		} else if (re[i] == '[')
			ret = buf_append_str(out, "\\[");
		else
			ret = buf_append_byte(out, (unsigned char)re[i]);
		if (ret < 0)
			return -1;
	}
	if (re[i] == '\0') {
		/* Unclosed: procmail takes "[" literally; so do we. */
		buf_truncate(out, start);
		*len_r = 1;
		return buf_append_str(out, "\\[");
	}
	*len_r = i + 1;
	/* procmailrc(5): [^...] never matches a newline; last, so that it
	 * cannot become the end of a range. */
	if (negated && buf_append_str(out, "\\n") < 0)
		return -1;
	return buf_append_byte(out, ']');
}

static int
rules_regex_escape(char c, struct buf *out)
{
	if (c == '<' || c == '>')
		return buf_append_str(out, "[^a-zA-Z0-9_]");
	if (isalnum((unsigned char)c))
		return buf_append_byte(out, (unsigned char)c);
	return buf_printf(out, "\\%c", c);
}

int
rules_regex_translate(const char *re, struct buf *out, bool *has_match_r)
{
	struct buf m;
	const char *p;
	bool left;
	size_t n = 1;
	int ret = -1;

	buf_init(&m, out->max);
	if (rules_regex_macros(re, &m) < 0)
		goto done;
	p = buf_cstr(&m);
	left = strstr(p, "\\/") != NULL;
	*has_match_r = left;
	if (strncmp(p, "^^", 2) == 0) {
		if (buf_append_str(out, "\\A") < 0)
			goto done;
		p += 2;
	}
	while (*p != '\0') {
		int r = 0;

		if (p[0] == '^' && p[1] == '^' && p[2] == '\0') {
			r = buf_append_str(out, "\\z");
			p += 2;
		} else if (p[0] == '\\' && p[1] == '/' && left) {
			r = buf_append_byte(out, '(');
			left = false;
			p += 2;
		} else if (p[0] == '\\' && p[1] != '\0') {
			r = rules_regex_escape(p[1], out);
			p += 2;
		} else if (p[0] == '[') {
			r = rules_regex_bracket(p, out, &n);
			p += n;
		} else if (p[0] == '{' || p[0] == '}') {
			r = buf_printf(out, "\\%c", p[0]);
			p++;
		} else if (p[0] == '*' || p[0] == '+' || p[0] == '?') {
			/* Left of \/ as short as possible. */
			r = buf_append_byte(out, (unsigned char)p[0]);
			if (r == 0 && left)
				r = buf_append_byte(out, '?');
			p++;
		} else
			r = buf_append_byte(out, (unsigned char)*p++);
		if (r < 0)
			goto done;
	}
	if (*has_match_r && buf_append_byte(out, ')') < 0)
		goto done;
	ret = 0;
done:
	buf_free(&m);
	return ret;
}

/* --- the literal every match contains (a prefilter) ---------------- */

/* The length of the bracket expression at re (re[0] == '['), parsed as
 * rules_regex_bracket does; 0 when it is not closed. */
static size_t
rules_regex_bracket_len(const char *re)
{
	size_t i = 1;

	if (re[i] == '^')
		i++;
	if (re[i] == ']')
		i++;
	for (; re[i] != '\0' && re[i] != ']'; i++)
		if (re[i] == '\\' && re[i + 1] != '\0')
			i++;
	return re[i] == ']' ? i + 1 : 0;
}

static bool
rules_regex_is_quant(char c)
{
	return c == '*' || c == '+' || c == '?';
}

struct rules_lit {
	struct buf run;		/* the literal being read */
	struct buf *best;	/* the longest so far */
};

static void
rules_lit_flush(struct rules_lit *l)
{
	if (l->run.len > l->best->len) {
		buf_truncate(l->best, 0);
		buf_append(l->best, l->run.data, l->run.len);
	}
	buf_truncate(&l->run, 0);
}

/* Inside a group: skip to its end; depth counts the open ones. */
static size_t
rules_lit_skip(const char *p, unsigned *depth)
{
	size_t n;

	if (p[0] == '\\' && p[1] != '\0')
		return 2;
	if (p[0] == '[')
		return (n = rules_regex_bracket_len(p)) > 0 ? n : 1;
	if (p[0] == '(')
		(*depth)++;
	else if (p[0] == ')')
		(*depth)--;
	return 1;
}

/* One item at depth 0: 1 and its byte in *c if it is a literal, 0 if not
 * (anchors, ., classes, groups), -1 if re is not plain enough to tell;
 * *n_r is its length. */
static int
rules_lit_item(const char *p, unsigned *depth, char *c, size_t *n_r)
{
	*n_r = 1;
	switch (p[0]) {
	case '|':
	case ')':
	case '*':
	case '+':
	case '?':
		return -1;
	case '(':
		(*depth)++;
		return 0;
	case '.':
	case '^':
	case '$':
		return 0;
	case '[':
		*n_r = rules_regex_bracket_len(p);
		if (*n_r > 0)
			return 0;
		*n_r = 1;
		*c = '[';	/* unclosed: taken literally */
		return 1;
	case '\\':
		if (p[1] == '\0')
			return -1;
		*n_r = 2;
		if (p[1] == '<' || p[1] == '>' || p[1] == '/')
			return 0;
		*c = p[1];
		return 1;
	}
	*c = p[0];
	return 1;
}

static int
rules_lit_scan(const char *p, struct rules_lit *l)
{
	unsigned depth = 0;
	size_t n;
	char c;
	int r;

	while (*p != '\0') {
		if (depth > 0) {
			p += rules_lit_skip(p, &depth);
			/* A group's quantifier, as an item's below. */
			if (depth == 0 && rules_regex_is_quant(*p) &&
			    rules_regex_is_quant(*++p))
				return -1;
			continue;
		}
		if ((r = rules_lit_item(p, &depth, &c, &n)) < 0)
			return -1;
		p += n;
		if (r == 0) {
			/* ".*", "[a-z]+", "\<?": not a literal, whatever
			 * follows; an anchor quantified is too odd to tell. */
			rules_lit_flush(l);
			if (depth == 0 && rules_regex_is_quant(*p)) {
				if (p[-1] == '^' || p[-1] == '$' ||
				    rules_regex_is_quant(*++p))
					return -1;
			}
			continue;
		}
		if (rules_regex_is_quant(*p)) {
			/* "c*" "c?" need no c; "c+" needs one, then others. */
			if (*p == '+')
				buf_append_byte(&l->run, (unsigned char)c);
			rules_lit_flush(l);
			if (rules_regex_is_quant(*++p))
				return -1;
			continue;
		}
		buf_append_byte(&l->run, (unsigned char)c);
	}
	rules_lit_flush(l);
	return depth == 0 ? 0 : -1;
}

int
rules_regex_literal(const char *re, struct buf *out)
{
	struct rules_lit l;
	struct buf m;
	int ret = -1;

	buf_truncate(out, 0);
	buf_init(&m, RULES_VALUE_MAX);
	buf_init(&l.run, RULES_VALUE_MAX);
	l.best = out;
	if (rules_regex_macros(re, &m) == 0 &&
	    rules_lit_scan(buf_cstr(&m), &l) == 0)
		ret = 0;
	if (ret < 0)
		buf_truncate(out, 0);
	buf_free(&m);
	buf_free(&l.run);
	return ret;
}
