/*
 * imap_check.h: a strict, independent reader of IMAP response syntax for
 * the unit tests of server/imap (imap_write, imap_envelope,
 * imap_bodystruct): it parses what they wrote into a tree, rejecting
 * anything RFC 3501 section 9 (or RFC 9051 with UTF-8) does not allow:
 * unbalanced parentheses, a missing or doubled space, a quoted string with
 * CR, LF, NUL, a bad escape or (outside UTF-8 mode) an 8-bit byte, invalid
 * UTF-8, a literal whose count does not match or that holds a NUL. Then
 * it checks the grammar of an ENVELOPE and of a BODY/BODYSTRUCTURE on that
 * tree: field counts and types, the spacing between addresses and bodies,
 * group markers that open and close in order.
 *
 * Written apart from the code it checks (no shared helper), so that one
 * misreading of the RFC does not hide itself. Header-only, like tap.h.
 */
#ifndef LOFT_T_IMAP_CHECK_H
#define LOFT_T_IMAP_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum ick_type { ICK_ATOM, ICK_NUMBER, ICK_NIL, ICK_STRING, ICK_LIST };

struct ick_item {
	enum ick_type type;
	unsigned char *s;	/* atom text or decoded string (owned, NUL-
				   terminated; strings may not hold NUL) */
	size_t len;
	bool literal;		/* the string was a literal */
	bool sp;		/* a SP came before it in its list */
	struct ick_item *kids;	/* ICK_LIST (owned) */
	size_t n, cap;
};

struct ick_parser {
	const unsigned char *p;
	size_t len, i;
	bool utf8;
	unsigned depth;
	const char *error;
};

static void __attribute__((unused))
ick_free(struct ick_item *it)
{
	size_t k;

	for (k = 0; k < it->n; k++)
		ick_free(&it->kids[k]);
	free(it->kids);
	free(it->s);
	memset(it, 0, sizeof(*it));
}

static bool
ick_fail(struct ick_parser *ps, const char *why)
{
	if (ps->error == NULL)
		ps->error = why;
	return false;
}

/* ick_utf8: length of a valid UTF-8 sequence at p[0..left), or 0. */
static size_t
ick_utf8(const unsigned char *p, size_t left)
{
	unsigned c = p[0];
	size_t n, k;
	unsigned long cp;

	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (left < n)
		return 0;
	for (k = 1; k < n; k++) {
		if ((p[k] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[k] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static bool
ick_atom_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && strchr("(){%*\"\\", c) == NULL;
}

static void
ick_set(struct ick_item *it, const unsigned char *s, size_t len)
{
	it->s = malloc(len + 1);
	if (it->s == NULL)
		abort();
	if (len > 0)
		memcpy(it->s, s, len);
	it->s[len] = '\0';
	it->len = len;
}

/* ick_quoted_char: the length of the quoted-string element at ps->i
 * (1, 2 for an escape, 2-4 for UTF-8), or 0 with *why if it is not one. */
static size_t
ick_quoted_char(const struct ick_parser *ps, const char **why)
{
	unsigned char c = ps->p[ps->i];
	size_t u;

	if (c == '\r' || c == '\n' || c == '\0') {
		*why = "CR, LF or NUL in a quoted string";
		return 0;
	}
	if (c == '\\') {
		if (ps->i + 1 < ps->len && (ps->p[ps->i + 1] == '"' ||
		    ps->p[ps->i + 1] == '\\'))
			return 2;
		*why = "bad escape in a quoted string";
		return 0;
	}
	if (c < 0x80)
		return 1;
	u = ps->utf8 ? ick_utf8(ps->p + ps->i, ps->len - ps->i) : 0;
	if (u == 0)
		*why = "8-bit byte (or bad UTF-8) in a quoted string";
	return u;
}

static bool
ick_quoted(struct ick_parser *ps, struct ick_item *it)
{
	unsigned char *tmp;
	size_t n = 0, k, end, esc;
	const char *why = NULL;

	/* The decoded text is never longer than the quoted one. */
	for (end = ps->i + 1; end < ps->len && ps->p[end] != '"'; end++)
		if (ps->p[end] == '\\')
			end++;
	if ((tmp = malloc(end - ps->i + 1)) == NULL)
		abort();
	for (ps->i++; ps->i < ps->len && ps->p[ps->i] != '"'; ps->i += k) {
		if ((k = ick_quoted_char(ps, &why)) == 0)
			break;
		/* An escape keeps only the escaped byte. */
		esc = ps->p[ps->i] == '\\';
		memcpy(tmp + n, ps->p + ps->i + esc, k - esc);
		n += k - esc;
	}
	if (why == NULL && ps->i >= ps->len)
		why = "unterminated quoted string";
	if (why != NULL) {
		free(tmp);
		return ick_fail(ps, why);
	}
	ps->i++;
	it->type = ICK_STRING;
	ick_set(it, tmp, n);
	free(tmp);
	return true;
}

static bool
ick_literal(struct ick_parser *ps, struct ick_item *it)
{
	size_t n = 0, start, k;

	for (ps->i++, start = ps->i; ps->i < ps->len &&
	    ps->p[ps->i] >= '0' && ps->p[ps->i] <= '9'; ps->i++) {
		if (n > ((size_t)-1 - 9) / 10)
			return ick_fail(ps, "literal count overflows");
		n = n * 10 + (ps->p[ps->i] - '0');
	}
	if (ps->i == start || ps->len - ps->i < 3 || ps->p[ps->i] != '}' ||
	    ps->p[ps->i + 1] != '\r' || ps->p[ps->i + 2] != '\n')
		return ick_fail(ps, "bad literal header");
	ps->i += 3;
	if (n > ps->len - ps->i)
		return ick_fail(ps, "literal longer than the data");
	for (k = 0; k < n; k++)
		if (ps->p[ps->i + k] == '\0')
			return ick_fail(ps, "NUL in a literal");
	it->type = ICK_STRING;
	it->literal = true;
	ick_set(it, ps->p + ps->i, n);
	ps->i += n;
	return true;
}

static bool
ick_atom(struct ick_parser *ps, struct ick_item *it)
{
	size_t start = ps->i, k;
	bool digits = true;

	while (ps->i < ps->len && (ick_atom_char(ps->p[ps->i]) ||
	    ps->p[ps->i] == ']'))
		ps->i++;
	if (ps->i == start)
		return ick_fail(ps, "unexpected byte");
	ick_set(it, ps->p + start, ps->i - start);
	for (k = 0; k < it->len; k++)
		digits = digits && it->s[k] >= '0' && it->s[k] <= '9';
	if (digits && (it->len == 1 || it->s[0] != '0'))
		it->type = ICK_NUMBER;
	else if (strcmp((char *)it->s, "NIL") == 0)
		it->type = ICK_NIL;
	else
		it->type = ICK_ATOM;
	return true;
}

static bool ick_items(struct ick_parser *ps, struct ick_item *list,
    bool top);

static bool
ick_item(struct ick_parser *ps, struct ick_item *it)
{
	unsigned char c = ps->p[ps->i];

	if (c == '"')
		return ick_quoted(ps, it);
	if (c == '{')
		return ick_literal(ps, it);
	if (c == '(') {
		if (++ps->depth > 2000)
			return ick_fail(ps, "nesting too deep");
		ps->i++;
		it->type = ICK_LIST;
		if (!ick_items(ps, it, false))
			return false;
		ps->depth--;
		return true;
	}
	return ick_atom(ps, it);
}

/* ick_items: items up to the ')' that closes list (consumed), or to the
 * end of the data at top level. */
static bool
ick_items(struct ick_parser *ps, struct ick_item *list, bool top)
{
	bool sp = false;
	struct ick_item *it;

	for (;;) {
		if (ps->i >= ps->len) {
			if (!top)
				return ick_fail(ps, "unbalanced '('");
			return sp ? ick_fail(ps, "trailing space") : true;
		}
		if (ps->p[ps->i] == ')') {
			if (top)
				return ick_fail(ps, "unbalanced ')'");
			if (sp)
				return ick_fail(ps, "space before ')'");
			ps->i++;
			return true;
		}
		if (ps->p[ps->i] == ' ') {
			if (sp || list->n == 0)
				return ick_fail(ps, "doubled or leading space");
			sp = true;
			ps->i++;
			continue;
		}
		/* Only a list may follow a list without a space. */
		if (list->n > 0 && !sp && (ps->p[ps->i] != '(' ||
		    list->kids[list->n - 1].type != ICK_LIST))
			return ick_fail(ps, "items not separated by a space");
		if (list->n == list->cap) {
			list->cap = list->cap == 0 ? 8 : list->cap * 2;
			list->kids = realloc(list->kids,
			    list->cap * sizeof(*list->kids));
			if (list->kids == NULL)
				abort();
		}
		it = &list->kids[list->n++];
		memset(it, 0, sizeof(*it));
		it->sp = sp;
		sp = false;
		if (!ick_item(ps, it))
			return false;
	}
}

/* ick_parse: data[0..len) as a sequence of items separated by single
 * spaces, into *top (a list; free with ick_free). Returns NULL, or why it
 * is not valid. */
static __attribute__((unused)) const char *
ick_parse(const unsigned char *data, size_t len, bool utf8,
    struct ick_item *top)
{
	struct ick_parser ps = { data, len, 0, utf8, 0, NULL };

	memset(top, 0, sizeof(*top));
	top->type = ICK_LIST;
	if (!ick_items(&ps, top, true) && ps.error == NULL)
		ps.error = "invalid";
	return ps.error;
}

/*
 * Grammar of ENVELOPE and BODY
 */

static bool
ick_nstring(const struct ick_item *it)
{
	return it->type == ICK_NIL || it->type == ICK_STRING;
}

/* ick_spaced: a list of n items, each after the first preceded by SP. */
static bool
ick_spaced(const struct ick_item *it, size_t n)
{
	size_t k;

	if (it->type != ICK_LIST || it->n != n)
		return false;
	for (k = 1; k < n; k++)
		if (!it->kids[k].sp)
			return false;
	return true;
}

static const char *
ick_address_list(const struct ick_item *it)
{
	const struct ick_item *a;
	bool group = false;
	size_t k, f;

	if (it->type == ICK_NIL)
		return NULL;
	if (it->type != ICK_LIST || it->n == 0)
		return "address list is neither NIL nor a non-empty list";
	for (k = 0; k < it->n; k++) {
		a = &it->kids[k];
		if (a->sp)
			return "space between addresses";
		if (!ick_spaced(a, 4))
			return "address is not 4 spaced items";
		for (f = 0; f < 4; f++)
			if (!ick_nstring(&a->kids[f]))
				return "address field is not an nstring";
		if (a->kids[3].type != ICK_NIL) {
			if (a->kids[2].type == ICK_NIL)
				return "address with a host but no mailbox";
			continue;
		}
		if (a->kids[2].type != ICK_NIL) {
			if (group)
				return "group opened inside a group";
			group = true;
		} else {
			if (!group)
				return "group end outside a group";
			group = false;
		}
	}
	return group ? "group not closed" : NULL;
}

static __attribute__((unused)) const char *
ick_envelope(const struct ick_item *it)
{
	const char *err;
	size_t k;

	if (!ick_spaced(it, 10))
		return "envelope is not 10 spaced items";
	for (k = 0; k < 10; k++) {
		if (k >= 2 && k <= 7) {
			if ((err = ick_address_list(&it->kids[k])) != NULL)
				return err;
		} else if (!ick_nstring(&it->kids[k])) {
			return "envelope text field is not an nstring";
		}
	}
	return NULL;
}

static bool
ick_params(const struct ick_item *it)
{
	size_t k;

	if (it->type == ICK_NIL)
		return true;
	if (it->type != ICK_LIST || it->n == 0 || it->n % 2 != 0 ||
	    !ick_spaced(it, it->n))
		return false;
	for (k = 0; k < it->n; k++)
		if (it->kids[k].type != ICK_STRING)
			return false;
	return true;
}

static bool
ick_dsp(const struct ick_item *it)
{
	if (it->type == ICK_NIL)
		return true;
	return ick_spaced(it, 2) && it->kids[0].type == ICK_STRING &&
	    ick_params(&it->kids[1]);
}

static bool
ick_lang(const struct ick_item *it)
{
	size_t k;

	if (ick_nstring(it))
		return true;
	if (it->type != ICK_LIST || it->n == 0 || !ick_spaced(it, it->n))
		return false;
	for (k = 0; k < it->n; k++)
		if (it->kids[k].type != ICK_STRING)
			return false;
	return true;
}

/* ick_ext_tail: dsp SP lang SP loc at kids[k..k+2]. */
static bool
ick_ext_tail(const struct ick_item *it, size_t k)
{
	return ick_dsp(&it->kids[k]) && ick_lang(&it->kids[k + 1]) &&
	    ick_nstring(&it->kids[k + 2]);
}

static bool
ick_str_is(const struct ick_item *it, const char *s)
{
	return it->type == ICK_STRING && strcasecmp((char *)it->s, s) == 0;
}

static const char *ick_body(const struct ick_item *it, bool ext, bool rev2);

static const char *
ick_body_mpart(const struct ick_item *it, bool ext, bool rev2)
{
	const char *err;
	size_t k;

	for (k = 0; k < it->n && it->kids[k].type == ICK_LIST; k++) {
		if (k > 0 && it->kids[k].sp)
			return "space between the bodies of a multipart";
		if ((err = ick_body(&it->kids[k], ext, rev2)) != NULL)
			return err;
	}
	if (k == it->n || it->kids[k].type != ICK_STRING || !it->kids[k].sp)
		return "multipart subtype missing";
	if (it->n - k - 1 != (ext ? 4u : 0u))
		return "wrong multipart extension data";
	for (k++; k < it->n; k++)
		if (!it->kids[k].sp)
			return "multipart extension data not spaced";
	if (ext && (!ick_params(&it->kids[it->n - 4]) ||
	    !ick_ext_tail(it, it->n - 3)))
		return "bad multipart extension data";
	return NULL;
}

static const char *
ick_body_1part(const struct ick_item *it, bool ext, bool rev2)
{
	const struct ick_item *k = it->kids;
	bool msg, text;
	size_t want, i;
	const char *err;

	if (it->n < 7 || k[0].type != ICK_STRING || k[1].type != ICK_STRING ||
	    !ick_params(&k[2]) || !ick_nstring(&k[3]) || !ick_nstring(&k[4]) ||
	    k[5].type != ICK_STRING || k[6].type != ICK_NUMBER)
		return "bad body fields";
	msg = ick_str_is(&k[0], "message") && (ick_str_is(&k[1], "rfc822") ||
	    (rev2 && ick_str_is(&k[1], "global")));
	text = ick_str_is(&k[0], "text");
	want = 7 + (msg ? 3 : text ? 1 : 0);
	if (it->n != want + (ext ? 4 : 0) || !ick_spaced(it, it->n))
		return "wrong number of body items, or not spaced";
	if (msg) {
		if ((err = ick_envelope(&k[7])) != NULL)
			return err;
		if ((err = ick_body(&k[8], ext, rev2)) != NULL)
			return err;
	}
	if ((msg || text) && k[want - 1].type != ICK_NUMBER)
		return "body lines missing";
	i = want;
	if (ext && (!ick_nstring(&k[i]) || !ick_ext_tail(it, i + 1)))
		return "bad body extension data";
	return NULL;
}

/* ick_body: it is a BODY (ext false) or BODYSTRUCTURE list. rev2: whether
 * message/global carries an envelope and body. */
static const char *
ick_body(const struct ick_item *it, bool ext, bool rev2)
{
	if (it->type != ICK_LIST || it->n == 0)
		return "body is not a list";
	if (it->kids[0].type == ICK_LIST)
		return ick_body_mpart(it, ext, rev2);
	return ick_body_1part(it, ext, rev2);
}

/* ick_check: parse data as exactly one item and check it with fn (NULL:
 * syntax only). Returns NULL or why it is wrong. */
static __attribute__((unused)) const char *
ick_check(const unsigned char *data, size_t len, bool utf8,
    const char *(*fn)(const struct ick_item *, bool, bool), bool ext,
    bool rev2)
{
	struct ick_item top;
	const char *err = ick_parse(data, len, utf8, &top);

	if (err == NULL && top.n != 1)
		err = "not exactly one item";
	if (err == NULL && fn != NULL)
		err = fn(&top.kids[0], ext, rev2);
	ick_free(&top);
	return err;
}

/* Adapters for ick_check. */
static __attribute__((unused)) const char *
ick_check_envelope(const struct ick_item *it, bool ext, bool rev2)
{
	(void)ext;
	(void)rev2;
	return ick_envelope(it);
}

static __attribute__((unused)) const char *
ick_check_addresses(const struct ick_item *it, bool ext, bool rev2)
{
	(void)ext;
	(void)rev2;
	return ick_address_list(it);
}

static __attribute__((unused)) const char *
ick_check_body(const struct ick_item *it, bool ext, bool rev2)
{
	return ick_body(it, ext, rev2);
}

#endif
