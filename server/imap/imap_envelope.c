/*
 * imap_envelope.c: ENVELOPE from raw header fields (rules in
 * imap_envelope.h).
 *
 * SECURITY: header fields are untrusted and may hold any byte. An address
 * field is cut into tokens in one pass (comments, quoted strings and
 * domain literals end at their closing character or at the end of the
 * value, never past it), then read token by token; each output string is
 * built in a scratch buffer and handed to imap_write, which quotes or
 * literalizes it, so no header byte can break the response syntax. Memory
 * and time are linear in the field size: at most one token per byte, each
 * token copied into at most one string, and at most two placeholders per
 * list element.
 */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "msg.h"
#include "xmalloc.h"
#include "server/imap/imap_envelope.h"
#include "server/imap/imap_write.h"

#define IMAP_ENV_MISSING_MAILBOX	"MISSING_MAILBOX"
#define IMAP_ENV_MISSING_DOMAIN		"MISSING_DOMAIN"

enum imap_env_field {
	IMAP_ENV_DATE, IMAP_ENV_SUBJECT, IMAP_ENV_FROM, IMAP_ENV_SENDER,
	IMAP_ENV_REPLY_TO, IMAP_ENV_TO, IMAP_ENV_CC, IMAP_ENV_BCC,
	IMAP_ENV_IN_REPLY_TO, IMAP_ENV_MESSAGE_ID, IMAP_ENV_NFIELDS
};

static const char *const imap_env_names[IMAP_ENV_NFIELDS] = {
	"date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc",
	"in-reply-to", "message-id",
};

enum imap_env_tok_type {
	IMAP_ENV_ATOM,		/* a run of other bytes (dots included) */
	IMAP_ENV_QUOTED,	/* "...", quotes included if present */
	IMAP_ENV_DOMLIT,	/* [...], brackets included if present */
	IMAP_ENV_SPECIAL	/* one of < > @ , ; : */
};

struct imap_env_tok {
	enum imap_env_tok_type type;
	size_t off, len;	/* in the value */
	bool sp;		/* white space or a comment came before it */
};

/* A piece of imap_env_list.text, or NIL. */
struct imap_env_span {
	size_t off, len;
	bool nil;
};

enum { IMAP_ENV_NAME, IMAP_ENV_ADL, IMAP_ENV_MAILBOX, IMAP_ENV_HOST };

struct imap_env_addr {
	struct imap_env_span f[4];	/* name, adl, mailbox, host */
};

struct imap_env_list {
	struct imap_env_addr *addrs;	/* owned */
	size_t n, cap;
	struct buf text;	/* owned: the strings of addrs */
};

struct imap_env_parser {
	const unsigned char *v;	/* the unfolded value */
	size_t len;
	struct imap_env_tok *toks;	/* owned */
	size_t ntoks, cap;
	struct imap_env_list *list;	/* where addresses go */
	bool in_group;
};

/*
 * Tokens
 */

static bool
imap_env_is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool
imap_env_is_special(unsigned char c)
{
	return c == '<' || c == '>' || c == '@' || c == ',' || c == ';' ||
	    c == ':';
}

/* imap_env_atom_end: where an atom starting at i ends. */
static size_t
imap_env_atom_end(const unsigned char *v, size_t len, size_t i)
{
	while (i < len && !imap_env_is_wsp(v[i]) && !imap_env_is_special(v[i])
	    && v[i] != '(' && v[i] != ')' && v[i] != '"' && v[i] != '[')
		i++;
	return i;
}

/* imap_env_delim_end: the index after the close character that ends a
 * quoted string or domain literal opened at i, or len if it never ends. */
static size_t
imap_env_delim_end(const unsigned char *v, size_t len, size_t i,
    unsigned char close)
{
	for (i++; i < len; i++) {
		if (v[i] == '\\')
			i++;
		else if (v[i] == close)
			return i + 1;
	}
	return len;
}

/* imap_env_comment_end: the index after a (possibly nested) comment that
 * starts at i, or len if it never ends. */
static size_t
imap_env_comment_end(const unsigned char *v, size_t len, size_t i)
{
	size_t depth = 0;

	for (; i < len; i++) {
		if (v[i] == '\\')
			i++;
		else if (v[i] == '(')
			depth++;
		else if (v[i] == ')' && --depth == 0)
			return i + 1;
	}
	return len;
}

static void
imap_env_add_tok(struct imap_env_parser *p, enum imap_env_tok_type type,
    size_t off, size_t len, bool sp)
{
	struct imap_env_tok *t;

	if (p->ntoks == p->cap) {
		p->cap = p->cap == 0 ? 16 : p->cap * 2;
		p->toks = xreallocarray(p->toks, p->cap, sizeof(*p->toks));
	}
	t = &p->toks[p->ntoks++];
	t->type = type;
	t->off = off;
	t->len = len;
	t->sp = sp;
}

static void
imap_env_tokenize(struct imap_env_parser *p)
{
	const unsigned char *v = p->v;
	size_t i = 0, end;
	bool sp = false;

	p->ntoks = 0;
	while (i < p->len) {
		if (imap_env_is_wsp(v[i]) || v[i] == ')') {
			/* A stray ')' separates like white space. */
			sp = true;
			i++;
			continue;
		}
		if (v[i] == '(') {
			sp = true;
			i = imap_env_comment_end(v, p->len, i);
			continue;
		}
		if (v[i] == '"') {
			end = imap_env_delim_end(v, p->len, i, '"');
			imap_env_add_tok(p, IMAP_ENV_QUOTED, i, end - i, sp);
		} else if (v[i] == '[') {
			end = imap_env_delim_end(v, p->len, i, ']');
			imap_env_add_tok(p, IMAP_ENV_DOMLIT, i, end - i, sp);
		} else if (imap_env_is_special(v[i])) {
			end = i + 1;
			imap_env_add_tok(p, IMAP_ENV_SPECIAL, i, 1, sp);
		} else {
			end = imap_env_atom_end(v, p->len, i);
			imap_env_add_tok(p, IMAP_ENV_ATOM, i, end - i, sp);
		}
		sp = false;
		i = end;
	}
}

static bool
imap_env_tok_is(const struct imap_env_parser *p, size_t k, unsigned char c)
{
	const struct imap_env_tok *t = &p->toks[k];

	return t->type == IMAP_ENV_SPECIAL && p->v[t->off] == c;
}

/* imap_env_find: the first special c in tokens [i, j), or j. */
static size_t
imap_env_find(const struct imap_env_parser *p, size_t i, size_t j,
    unsigned char c)
{
	while (i < j && !imap_env_tok_is(p, i, c))
		i++;
	return i;
}

/*
 * Strings of an address, built in list->text
 */

static struct imap_env_span
imap_env_span_nil(void)
{
	struct imap_env_span s = { 0, 0, true };

	return s;
}

static struct imap_env_span
imap_env_span_begin(const struct imap_env_list *l)
{
	struct imap_env_span s = { l->text.len, 0, false };

	return s;
}

static void
imap_env_span_end(const struct imap_env_list *l, struct imap_env_span *s)
{
	s->len = l->text.len - s->off;
}

/* The scratch text has no maximum of its own (the value bounds it), so
 * an append cannot fail. */
static void
imap_env_text(struct imap_env_list *l, const void *p, size_t len)
{
	(void)buf_append(&l->text, p, len);
}

static struct imap_env_span
imap_env_span_str(struct imap_env_list *l, const char *s)
{
	struct imap_env_span span = imap_env_span_begin(l);

	imap_env_text(l, s, strlen(s));
	imap_env_span_end(l, &span);
	return span;
}

/* imap_env_put_tok: a token's text; a quoted string without its quotes
 * and with its backslash escapes resolved if decode. */
static void
imap_env_put_tok(struct imap_env_parser *p, size_t k, bool decode)
{
	const struct imap_env_tok *t = &p->toks[k];
	const unsigned char *s = p->v + t->off;
	size_t i, n = t->len;

	if (t->type != IMAP_ENV_QUOTED || !decode) {
		imap_env_text(p->list, s, n);
		return;
	}
	/* The token ends at its closing quote, if it has one. */
	for (i = 1; i < n; i++) {
		if (s[i] == '\\') {
			if (++i == n)
				break;
		} else if (s[i] == '"') {
			break;
		}
		imap_env_text(p->list, s + i, 1);
	}
}

/* imap_env_phrase: the words of tokens [i, j) joined by one space where
 * the message had white space or a comment between them. */
static struct imap_env_span
imap_env_phrase(struct imap_env_parser *p, size_t i, size_t j)
{
	struct imap_env_span span = imap_env_span_begin(p->list);
	size_t k;

	for (k = i; k < j; k++) {
		if (k > i && p->toks[k].sp)
			imap_env_text(p->list, " ", 1);
		imap_env_put_tok(p, k, true);
	}
	imap_env_span_end(p->list, &span);
	return span;
}

/* imap_env_concat: tokens [i, j) without the white space between them;
 * an empty result gives the placeholder instead. */
static struct imap_env_span
imap_env_concat(struct imap_env_parser *p, size_t i, size_t j, bool decode,
    const char *placeholder)
{
	struct imap_env_span span = imap_env_span_begin(p->list);
	size_t k;

	for (k = i; k < j; k++)
		imap_env_put_tok(p, k, decode);
	imap_env_span_end(p->list, &span);
	if (span.len == 0 && placeholder != NULL)
		return imap_env_span_str(p->list, placeholder);
	return span;
}

/*
 * Addresses
 */

static void
imap_env_add(struct imap_env_parser *p, struct imap_env_span name,
    struct imap_env_span adl, struct imap_env_span mailbox,
    struct imap_env_span host)
{
	struct imap_env_list *l = p->list;
	struct imap_env_addr *a;

	if (l->n == l->cap) {
		l->cap = l->cap == 0 ? 8 : l->cap * 2;
		l->addrs = xreallocarray(l->addrs, l->cap, sizeof(*l->addrs));
	}
	a = &l->addrs[l->n++];
	a->f[IMAP_ENV_NAME] = name;
	a->f[IMAP_ENV_ADL] = adl;
	a->f[IMAP_ENV_MAILBOX] = mailbox;
	a->f[IMAP_ENV_HOST] = host;
}

/* imap_env_domain_end: where the domain that starts at token i ends: at
 * the first token that cannot be part of one (a special, a quoted
 * string), so garbage after a domain stays out of the host. i may be j + 1
 * (no '@' at all), which gives an empty domain. */
static size_t
imap_env_domain_end(const struct imap_env_parser *p, size_t i, size_t j)
{
	if (i > j)
		return i;
	while (i < j && (p->toks[i].type == IMAP_ENV_ATOM ||
	    p->toks[i].type == IMAP_ENV_DOMLIT))
		i++;
	return i;
}

/* imap_env_addr_spec: local-part "@" domain in tokens [i, j). */
static void
imap_env_addr_spec(struct imap_env_parser *p, size_t i, size_t j,
    struct imap_env_span name, struct imap_env_span adl)
{
	size_t at = imap_env_find(p, i, j, '@');
	struct imap_env_span mailbox, host;

	mailbox = imap_env_concat(p, i, at, true, IMAP_ENV_MISSING_MAILBOX);
	host = imap_env_concat(p, at + 1, imap_env_domain_end(p, at + 1, j),
	    false, IMAP_ENV_MISSING_DOMAIN);
	imap_env_add(p, name, adl, mailbox, host);
}

/* imap_env_angle_addr: [phrase] "<" [route ":"] addr-spec ">" where the
 * "<" is token lt and [i, j) is the whole element; what follows the ">"
 * is ignored. */
static void
imap_env_angle_addr(struct imap_env_parser *p, size_t i, size_t lt,
    size_t j)
{
	struct imap_env_span name, adl = imap_env_span_nil();
	size_t a = lt + 1, gt = imap_env_find(p, a, j, '>'), colon;

	name = imap_env_phrase(p, i, lt);
	if (name.len == 0)
		name = imap_env_span_nil();
	if (a < gt && imap_env_tok_is(p, a, '@')) {
		colon = imap_env_find(p, a, gt, ':');
		if (colon < gt) {
			adl = imap_env_concat(p, a, colon, false, NULL);
			a = colon + 1;
		}
	}
	imap_env_addr_spec(p, a, gt, name, adl);
}

/* imap_env_one_word: whether tokens [i, j) are words with no white space
 * between them ("root", "first.last"), so they can be a local part. */
static bool
imap_env_one_word(const struct imap_env_parser *p, size_t i, size_t j)
{
	size_t k;

	for (k = i; k < j; k++)
		if ((k > i && p->toks[k].sp) ||
		    p->toks[k].type == IMAP_ENV_SPECIAL)
			return false;
	return true;
}

/* imap_env_mailbox: one list element, tokens [i, j) between separators. */
static void
imap_env_mailbox(struct imap_env_parser *p, size_t i, size_t j)
{
	struct imap_env_span nil = imap_env_span_nil(), name, mailbox, host;
	size_t lt;

	if (i == j)
		return;
	lt = imap_env_find(p, i, j, '<');
	if (lt < j) {
		imap_env_angle_addr(p, i, lt, j);
	} else if (imap_env_find(p, i, j, '@') < j) {
		imap_env_addr_spec(p, i, j, nil, nil);
	} else if (imap_env_one_word(p, i, j)) {
		imap_env_addr_spec(p, i, j, nil, nil);
	} else {
		name = imap_env_phrase(p, i, j);
		mailbox = imap_env_span_str(p->list,
		    IMAP_ENV_MISSING_MAILBOX);
		host = imap_env_span_str(p->list, IMAP_ENV_MISSING_DOMAIN);
		imap_env_add(p, name, nil, mailbox, host);
	}
}

static void
imap_env_group_start(struct imap_env_parser *p, size_t i, size_t j)
{
	struct imap_env_span nil = imap_env_span_nil();

	/* Never NIL: (NIL NIL NIL NIL) would end the group. */
	imap_env_add(p, nil, nil, imap_env_phrase(p, i, j), nil);
	p->in_group = true;
}

static void
imap_env_group_end(struct imap_env_parser *p)
{
	struct imap_env_span nil = imap_env_span_nil();

	imap_env_add(p, nil, nil, nil, nil);
	p->in_group = false;
}

/* imap_env_element_end: the first ',', ';' or ':' at or after token i
 * that is not inside angle brackets (where ',' and ':' belong to a
 * source route), or ntoks. */
static size_t
imap_env_element_end(const struct imap_env_parser *p, size_t i)
{
	bool angle = false;
	unsigned char c;

	for (; i < p->ntoks; i++) {
		if (p->toks[i].type != IMAP_ENV_SPECIAL)
			continue;
		c = p->v[p->toks[i].off];
		if (angle)
			angle = c != '>';
		else if (c == '<')
			angle = true;
		else if (c == ',' || c == ';' || c == ':')
			break;
	}
	return i;
}

/* imap_env_parse: every address of the value into p->list. */
static void
imap_env_parse(struct imap_env_parser *p)
{
	size_t i = 0, j;

	imap_env_tokenize(p);
	p->in_group = false;
	while (i < p->ntoks) {
		j = imap_env_element_end(p, i);
		if (j < p->ntoks && imap_env_tok_is(p, j, ':') &&
		    !p->in_group) {
			imap_env_group_start(p, i, j);
		} else {
			imap_env_mailbox(p, i, j);
			if (j < p->ntoks && imap_env_tok_is(p, j, ';') &&
			    p->in_group)
				imap_env_group_end(p);
		}
		i = j + 1;
	}
	if (p->in_group)
		imap_env_group_end(p);
}

/*
 * Writing
 */

static void
imap_env_list_init(struct imap_env_list *l)
{
	memset(l, 0, sizeof(*l));
	buf_init(&l->text, SIZE_MAX);
}

static void
imap_env_list_free(struct imap_env_list *l)
{
	free(l->addrs);
	buf_free(&l->text);
	memset(l, 0, sizeof(*l));
}

/* imap_env_list_parse: the addresses of value[0..len) into l (which
 * should be empty). */
static void
imap_env_list_parse(struct imap_env_list *l, const unsigned char *value,
    size_t len)
{
	struct imap_env_parser p;

	memset(&p, 0, sizeof(p));
	p.v = value;
	p.len = len;
	p.list = l;
	imap_env_parse(&p);
	free(p.toks);
}

static int
imap_env_write_span(struct imap_write *w, const struct imap_env_list *l,
    const struct imap_env_span *s)
{
	if (s->nil)
		return imap_write_nil(w);
	return imap_write_string_mem(w, l->text.data + s->off, s->len);
}

static int
imap_env_write_list(struct imap_write *w, const struct imap_env_list *l)
{
	size_t i, f;

	if (l->n == 0)
		return imap_write_nil(w);
	imap_write_list_open(w);
	for (i = 0; i < l->n; i++) {
		imap_write_adjacent(w);
		imap_write_list_open(w);
		for (f = 0; f < 4; f++)
			imap_env_write_span(w, l, &l->addrs[i].f[f]);
		imap_write_list_close(w);
	}
	return imap_write_list_close(w);
}

int
imap_envelope_write_addresses(struct imap_write *w,
    const unsigned char *value, size_t len)
{
	struct imap_env_list l;
	int ret;

	imap_env_list_init(&l);
	imap_env_list_parse(&l, value, len);
	ret = imap_env_write_list(w, &l);
	imap_env_list_free(&l);
	return ret;
}

/*
 * The envelope
 */

struct imap_env_fields {
	const unsigned char *raw[IMAP_ENV_NFIELDS];
	size_t raw_len[IMAP_ENV_NFIELDS];
};

static int
imap_env_field_cb(const unsigned char *name, size_t name_len,
    const unsigned char *raw, size_t raw_len, void *ctx)
{
	struct imap_env_fields *fields = ctx;
	size_t f;

	for (f = 0; f < IMAP_ENV_NFIELDS; f++) {
		if (strlen(imap_env_names[f]) != name_len ||
		    strncasecmp((const char *)name, imap_env_names[f],
		    name_len) != 0)
			continue;
		if (fields->raw[f] == NULL) {
			fields->raw[f] = raw;
			fields->raw_len[f] = raw_len;
		}
		break;
	}
	return 0;
}

/* imap_env_value: the unfolded value of field f into v, false if the
 * field is missing. */
static bool
imap_env_value(const struct imap_env_fields *fields, enum imap_env_field f,
    struct buf *v)
{
	buf_truncate(v, 0);
	if (fields->raw[f] == NULL)
		return false;
	(void)msg_header_value(fields->raw[f], fields->raw_len[f], v);
	return true;
}

static int
imap_env_write_text(struct imap_write *w, const struct imap_env_fields *fields,
    enum imap_env_field f, struct buf *v)
{
	if (!imap_env_value(fields, f, v))
		return imap_write_nil(w);
	return imap_write_string_mem(w, v->data, v->len);
}

/* imap_env_addresses: the list of field f into l (empty if missing). */
static void
imap_env_addresses(const struct imap_env_fields *fields,
    enum imap_env_field f, struct buf *v, struct imap_env_list *l)
{
	imap_env_list_init(l);
	if (imap_env_value(fields, f, v))
		imap_env_list_parse(l, v->data, v->len);
}

static void
imap_env_write_addr_fields(struct imap_write *w,
    const struct imap_env_fields *fields, struct buf *v)
{
	struct imap_env_list from, l;
	enum imap_env_field f;

	imap_env_addresses(fields, IMAP_ENV_FROM, v, &from);
	imap_env_write_list(w, &from);
	for (f = IMAP_ENV_SENDER; f <= IMAP_ENV_BCC; f++) {
		imap_env_addresses(fields, f, v, &l);
		if (l.n == 0 &&
		    (f == IMAP_ENV_SENDER || f == IMAP_ENV_REPLY_TO))
			imap_env_write_list(w, &from);
		else
			imap_env_write_list(w, &l);
		imap_env_list_free(&l);
	}
	imap_env_list_free(&from);
}

int
imap_envelope_write(struct imap_write *w, const unsigned char *hdr,
    size_t len)
{
	struct imap_env_fields fields;
	struct buf v;

	memset(&fields, 0, sizeof(fields));
	if (len > 0)
		(void)msg_header_iter(hdr, len, imap_env_field_cb, &fields,
		    NULL);
	buf_init(&v, SIZE_MAX);
	imap_write_list_open(w);
	imap_env_write_text(w, &fields, IMAP_ENV_DATE, &v);
	imap_env_write_text(w, &fields, IMAP_ENV_SUBJECT, &v);
	imap_env_write_addr_fields(w, &fields, &v);
	imap_env_write_text(w, &fields, IMAP_ENV_IN_REPLY_TO, &v);
	imap_env_write_text(w, &fields, IMAP_ENV_MESSAGE_ID, &v);
	buf_free(&v);
	return imap_write_list_close(w);
}

int
imap_envelope_first_address(const unsigned char *value, size_t len,
    struct buf *name, struct buf *mailbox, struct buf *host)
{
	struct imap_env_list l;
	const struct imap_env_addr *a = NULL;
	int ret = 0;

	imap_env_list_init(&l);
	imap_env_list_parse(&l, value, len);
	/* Group markers have a NIL host; members are real addresses. */
	for (size_t i = 0; i < l.n && a == NULL; i++)
		if (!l.addrs[i].f[IMAP_ENV_HOST].nil)
			a = &l.addrs[i];
	if (a != NULL) {
		const struct imap_env_span *f = a->f;

		if (!f[IMAP_ENV_NAME].nil)
			(void)buf_append(name, l.text.data +
			    f[IMAP_ENV_NAME].off, f[IMAP_ENV_NAME].len);
		(void)buf_append(mailbox, l.text.data +
		    f[IMAP_ENV_MAILBOX].off, f[IMAP_ENV_MAILBOX].len);
		(void)buf_append(host, l.text.data + f[IMAP_ENV_HOST].off,
		    f[IMAP_ENV_HOST].len);
		ret = 1;
	}
	imap_env_list_free(&l);
	return ret;
}
