/*
 * mime.c: the MIME tree of a message (rules in mime.h), its binary form for
 * the index, and a canonical dump for tests.
 *
 * SECURITY: the message is untrusted and so is a blob given to
 * mime_deserialize (an index file can be damaged). The parser walks the
 * message once, line by line, with a cursor that only moves forward; at a
 * line starting with "--" it compares the boundaries of all enclosing
 * multiparts (at most MIME_MAX_DEPTH of them). Recursion is bounded by
 * MIME_MAX_DEPTH, the number of parts by MIME_MAX_PARTS, and memory is
 * allocated per part and per parameter, never per byte. The deserializer
 * checks every length and count against the bytes left before allocating.
 */
#include "config.h"
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "buf.h"
#include "mime.h"
#include "msg.h"
#include "xmalloc.h"

/* A position in the message with the counts needed for sizes and lines,
 * so that no range is ever scanned twice. */
struct mime_mark {
	size_t pos;
	uint64_t nlf;		/* LFs in data[0..pos) */
	uint64_t nbare;		/* of which not preceded by CR */
};

struct mime_bound {
	const char *s;		/* owned by the multipart's parameters */
	size_t len;
};

/* A parameter as written, before RFC 2231 joining. Names and values live in
 * mime_parser.pbuf; the pointers are set once it stops growing. */
struct mime_rawparam {
	size_t name_off, name_len, val_off, val_len;
	const unsigned char *name, *val;
	long section;		/* MIME_SEC_PLAIN, MIME_SEC_EXT, or N */
	bool encoded;		/* name* or name*N*: percent-encoded */
	size_t order;		/* position in the field */
};

#define MIME_SEC_PLAIN	(-2L)	/* name= */
#define MIME_SEC_EXT	(-1L)	/* name*= */
#define MIME_SEC_MAX	9999L	/* larger section numbers are not RFC 2231 */

struct mime_parser {
	const unsigned char *data;
	size_t len;
	struct mime_mark cur;	/* always at a line start, or at len */
	struct mime_bound bounds[MIME_MAX_DEPTH];
	size_t nbounds;
	int hit;		/* bounds[] index of the boundary line at cur,
				   -1 if cur is not at one (or at the end) */
	bool hit_close;		/* ... and it is a closing one */
	size_t nparts;
	struct buf value;	/* scratch: an unfolded header value */
	struct buf pbuf;	/* scratch: parameter names and values */
	struct buf join;	/* scratch: one joined parameter value */
	struct buf env;		/* scratch: envelope fields */
	struct mime_rawparam *raw;	/* scratch array */
	size_t nraw, rawcap;
};

/* Which Content-* fields a part has seen (only the first counts). */
enum mime_field {
	MIME_F_TYPE = 1 << 0,
	MIME_F_ENCODING = 1 << 1,
	MIME_F_ID = 1 << 2,
	MIME_F_DESCRIPTION = 1 << 3,
	MIME_F_MD5 = 1 << 4,
	MIME_F_DISPOSITION = 1 << 5,
	MIME_F_LANGUAGE = 1 << 6,
	MIME_F_LOCATION = 1 << 7,
};

struct mime_fields_ctx {
	struct mime_parser *p;
	struct mime_part *part;
	unsigned seen;
	bool envelope;		/* collect envelope fields into p->env */
};

/* What a part is to its parent. */
#define MIME_IN_DIGEST		0x1	/* a part of multipart/digest */
#define MIME_IN_MESSAGE		0x2	/* an encapsulated message */

static struct mime_mark mime_parse_part(struct mime_parser *p,
    struct mime_part *part, const struct mime_mark *start, int level,
    unsigned in);

/*
 * Small helpers
 */

static unsigned char
mime_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static bool
mime_is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* RFC 2045 token: any CHAR but SPACE, CTLs and tspecials; 8-bit bytes are
 * let in, as mailers write them. */
static bool
mime_is_token(unsigned char c)
{
	switch (c) {
	case '(': case ')': case '<': case '>': case '@': case ',': case ';':
	case ':': case '\\': case '"': case '/': case '[': case ']': case '?':
	case '=':
		return false;
	default:
		return c > ' ' && c != 0x7f;
	}
}

/* An unquoted parameter value: wider than a token because real mail has
 * boundary=----=_Part_1 and name=a/b unquoted. */
static bool
mime_is_value(unsigned char c)
{
	return c > ' ' && c != 0x7f && c != ';' && c != '"' && c != '(';
}

/* mime_strdup: s[0..n) as a new C string, NUL bytes dropped, ASCII letters
 * lowercased if lower. */
static char *
mime_strdup(const unsigned char *s, size_t n, bool lower)
{
	char *d = xmalloc(n + 1);
	size_t i, j = 0;

	for (i = 0; i < n; i++) {
		if (s[i] != '\0')
			d[j++] = (char)(lower ? mime_lower(s[i]) : s[i]);
	}
	d[j] = '\0';
	return d;
}

static bool
mime_caseeq(const unsigned char *s, size_t n, const char *word)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (word[i] == '\0' ||
		    mime_lower(s[i]) != (unsigned char)word[i])
			return false;
	}
	return word[n] == '\0';
}

/*
 * Lines and boundaries
 */

/* mime_advance: move the cursor past the line it is at (LF included). */
static void
mime_advance(struct mime_parser *p)
{
	const unsigned char *nl;

	nl = memchr(p->data + p->cur.pos, '\n', p->len - p->cur.pos);
	if (nl == NULL) {
		p->cur.pos = p->len;
		return;
	}
	p->cur.nlf++;
	if (nl == p->data || nl[-1] != '\r')
		p->cur.nbare++;
	p->cur.pos = (size_t)(nl - p->data) + 1;
}

static bool
mime_line_empty(const struct mime_parser *p)
{
	const unsigned char *s = p->data + p->cur.pos;
	size_t n = p->len - p->cur.pos;

	return n > 0 && (s[0] == '\n' || (n > 1 && s[0] == '\r' &&
	    s[1] == '\n'));
}

/* mime_rest_blank: s[i..n) is optional SP/HT then a line ending or the end
 * of the data. */
static bool
mime_rest_blank(const unsigned char *s, size_t n, size_t i)
{
	while (i < n && mime_is_wsp(s[i]))
		i++;
	return i == n || s[i] == '\n' ||
	    (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n');
}

/* mime_at_boundary: whether the line at the cursor is a boundary line of an
 * enclosing multipart; sets hit and hit_close. */
static bool
mime_at_boundary(struct mime_parser *p)
{
	const unsigned char *s = p->data + p->cur.pos;
	size_t n = p->len - p->cur.pos, i, e;
	bool close;

	p->hit = -1;
	if (p->nbounds == 0 || n < 2 || s[0] != '-' || s[1] != '-')
		return false;
	/* Innermost first; an outer one replaces it only if longer. */
	for (i = p->nbounds; i-- > 0;) {
		const struct mime_bound *b = &p->bounds[i];

		if (b->len > n - 2 || memcmp(s + 2, b->s, b->len) != 0)
			continue;
		e = 2 + b->len;
		close = n - e >= 2 && s[e] == '-' && s[e + 1] == '-';
		if (!mime_rest_blank(s, n, close ? e + 2 : e))
			continue;
		if (p->hit < 0 || b->len > p->bounds[p->hit].len) {
			p->hit = (int)i;
			p->hit_close = close;
		}
	}
	return p->hit >= 0;
}

/* mime_skip_to_boundary: move the cursor to the next boundary line, or to
 * the end of the data (hit = -1). */
static void
mime_skip_to_boundary(struct mime_parser *p)
{
	while (p->cur.pos < p->len) {
		if (mime_at_boundary(p))
			return;
		mime_advance(p);
	}
	p->hit = -1;
}

/* mime_end_mark: where the range that the cursor stops ends: at the cursor,
 * minus the line ending before a boundary line (it belongs to the
 * boundary), never before floor. */
static struct mime_mark
mime_end_mark(const struct mime_parser *p, const struct mime_mark *floor)
{
	struct mime_mark m = p->cur;

	if (p->hit >= 0 && m.pos > 0 && p->data[m.pos - 1] == '\n') {
		m.pos--;
		m.nlf--;
		if (m.pos > 0 && p->data[m.pos - 1] == '\r')
			m.pos--;
		else
			m.nbare--;
	}
	return m.pos < floor->pos ? *floor : m;
}

static void
mime_set_range(const struct mime_mark *a, const struct mime_mark *b,
    uint64_t *off_r, uint64_t *psize_r, uint64_t *vsize_r)
{
	*off_r = a->pos;
	*psize_r = b->pos - a->pos;
	*vsize_r = *psize_r + (b->nbare - a->nbare);
}

static uint32_t
mime_lines(const struct mime_parser *p, const struct mime_mark *a,
    const struct mime_mark *b)
{
	uint64_t n = b->nlf - a->nlf;

	if (b->pos > a->pos && p->data[b->pos - 1] != '\n')
		n++;
	return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/*
 * Structured header values (RFC 2045 5.1, RFC 2822 comments)
 */

/* mime_skip_comment: s[*i] is '('; skip to after the matching ')'. */
static void
mime_skip_comment(const unsigned char *s, size_t n, size_t *i)
{
	size_t depth = 0;

	for (; *i < n; (*i)++) {
		if (s[*i] == '\\' && *i + 1 < n)
			(*i)++;
		else if (s[*i] == '(')
			depth++;
		else if (s[*i] == ')' && --depth == 0) {
			(*i)++;
			return;
		}
	}
}

static void
mime_skip_cfws(const unsigned char *s, size_t n, size_t *i)
{
	while (*i < n) {
		if (s[*i] == '(')
			mime_skip_comment(s, n, i);
		else if (mime_is_wsp(s[*i]) || s[*i] == '\r' || s[*i] == '\n')
			(*i)++;
		else
			return;
	}
}

/* mime_quoted: s[*i] is '"'; append the unquoted string to out and skip
 * it. An unterminated string runs to the end. */
static void
mime_quoted(const unsigned char *s, size_t n, size_t *i, struct buf *out)
{
	size_t start;

	for ((*i)++; *i < n && s[*i] != '"';) {
		if (s[*i] == '\\') {
			if (++*i < n)
				buf_append_byte(out, s[(*i)++]);
			continue;
		}
		start = *i;
		while (*i < n && s[*i] != '"' && s[*i] != '\\')
			(*i)++;
		buf_append(out, s + start, *i - start);
	}
	if (*i < n)
		(*i)++;
}

/* mime_skip_garbage: move to the next ';' outside quotes and comments. */
static void
mime_skip_garbage(const unsigned char *s, size_t n, size_t *i)
{
	size_t q;

	while (*i < n && s[*i] != ';') {
		if (s[*i] == '(')
			mime_skip_comment(s, n, i);
		else if (s[*i] == '"') {
			/* Skip without copying: scan for the closing quote. */
			for (q = *i + 1; q < n && s[q] != '"'; q++)
				if (s[q] == '\\')
					q++;
			*i = q < n ? q + 1 : n;
		} else
			(*i)++;
	}
}

/* mime_token: the token at s[*i] (after CFWS); false if there is none. */
static bool
mime_token(const unsigned char *s, size_t n, size_t *i, size_t *start_r,
    size_t *len_r)
{
	mime_skip_cfws(s, n, i);
	*start_r = *i;
	while (*i < n && mime_is_token(s[*i]))
		(*i)++;
	*len_r = *i - *start_r;
	return *len_r > 0;
}

/*
 * Parameters and RFC 2231
 */

/* mime_param_name: split name*N* into its parts; a name that is not of an
 * RFC 2231 form is a plain name. */
static void
mime_param_name(const unsigned char *s, size_t n, size_t *base_len_r,
    long *section_r, bool *encoded_r)
{
	const unsigned char *star = memchr(s, '*', n);
	size_t i;
	long sec = 0;

	*base_len_r = n;
	*section_r = MIME_SEC_PLAIN;
	*encoded_r = false;
	if (star == NULL || star == s)
		return;
	i = (size_t)(star - s) + 1;
	if (i == n) {
		*base_len_r = i - 1;
		*section_r = MIME_SEC_EXT;
		*encoded_r = true;
		return;
	}
	for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
		if ((sec = sec * 10 + (s[i] - '0')) > MIME_SEC_MAX)
			return;
	}
	if (s[i - 1] == '*' || (i < n && (s[i] != '*' || i + 1 != n)))
		return;		/* no digits, or junk after them */
	*base_len_r = (size_t)(star - s);
	*section_r = sec;
	*encoded_r = i < n;
}

static void
mime_raw_add(struct mime_parser *p, const unsigned char *name, size_t nlen,
    size_t val_off)
{
	struct mime_rawparam *r;
	size_t base_len;

	if (p->nraw == p->rawcap) {
		p->rawcap = p->rawcap == 0 ? 8 : p->rawcap * 2;
		p->raw = xreallocarray(p->raw, p->rawcap, sizeof(*p->raw));
	}
	r = &p->raw[p->nraw];
	mime_param_name(name, nlen, &base_len, &r->section, &r->encoded);
	r->val_off = val_off;
	r->val_len = p->pbuf.len - val_off;
	r->name_off = p->pbuf.len;
	r->name_len = base_len;
	r->order = p->nraw++;
	buf_append(&p->pbuf, name, base_len);
}

/* mime_param_value: parse the value at s[*i] into pbuf; returns its
 * offset there. */
static size_t
mime_param_value(struct mime_parser *p, const unsigned char *s, size_t n,
    size_t *i)
{
	size_t off = p->pbuf.len, start;

	mime_skip_cfws(s, n, i);
	if (*i < n && s[*i] == '"') {
		mime_quoted(s, n, i, &p->pbuf);
		return off;
	}
	start = *i;
	while (*i < n && mime_is_value(s[*i]))
		(*i)++;
	buf_append(&p->pbuf, s + start, *i - start);
	return off;
}

/* mime_params_collect: the "; name=value" list at s[i..n) into p->raw. */
static void
mime_params_collect(struct mime_parser *p, const unsigned char *s, size_t n,
    size_t i)
{
	size_t a, al, off, k;

	p->nraw = 0;
	buf_truncate(&p->pbuf, 0);
	for (;;) {
		mime_skip_garbage(s, n, &i);
		if (i >= n)
			break;
		i++;
		if (!mime_token(s, n, &i, &a, &al))
			continue;
		mime_skip_cfws(s, n, &i);
		if (i >= n || s[i] != '=')
			continue;
		i++;
		off = mime_param_value(p, s, n, &i);
		mime_raw_add(p, s + a, al, off);
	}
	for (k = 0; k < p->nraw; k++) {
		p->raw[k].name = p->pbuf.data + p->raw[k].name_off;
		p->raw[k].val = p->pbuf.data + p->raw[k].val_off;
	}
}

static int
mime_raw_cmp(const void *va, const void *vb)
{
	const struct mime_rawparam *a = va, *b = vb;
	size_t n = a->name_len < b->name_len ? a->name_len : b->name_len, i;
	int c;

	/* Names are compared lowercased: they are case-insensitive. */
	for (i = 0; i < n; i++) {
		c = (int)mime_lower(a->name[i]) - (int)mime_lower(b->name[i]);
		if (c != 0)
			return c;
	}
	if (a->name_len != b->name_len)
		return a->name_len < b->name_len ? -1 : 1;
	if (a->section != b->section)
		return a->section < b->section ? -1 : 1;
	return a->order < b->order ? -1 : a->order > b->order;
}

static bool
mime_same_name(const struct mime_rawparam *a, const struct mime_rawparam *b)
{
	size_t i;

	if (a->name_len != b->name_len)
		return false;
	for (i = 0; i < a->name_len; i++)
		if (mime_lower(a->name[i]) != mime_lower(b->name[i]))
			return false;
	return true;
}

static int
mime_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = mime_lower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* mime_percent_decode: append s[0..n) to out with %XX decoded; a '%' not
 * followed by two hex digits stays as it is. */
static void
mime_percent_decode(const unsigned char *s, size_t n, struct buf *out)
{
	size_t i;
	int hi, lo;

	for (i = 0; i < n; i++) {
		if (s[i] == '%' && n - i >= 3 &&
		    (hi = mime_hexval(s[i + 1])) >= 0 &&
		    (lo = mime_hexval(s[i + 2])) >= 0) {
			buf_append_byte(out, (unsigned char)(hi << 4 | lo));
			i += 2;
		} else
			buf_append_byte(out, s[i]);
	}
}

/* mime_ext_first: the first piece of an encoded value,
 * "charset'language'text": returns the charset (or NULL) and decodes the
 * text into out. Without the two quotes, all of it is text. */
static char *
mime_ext_first(const unsigned char *s, size_t n, struct buf *out)
{
	const unsigned char *q1, *q2 = NULL;
	char *charset = NULL;

	q1 = memchr(s, '\'', n);
	if (q1 != NULL)
		q2 = memchr(q1 + 1, '\'', n - (size_t)(q1 + 1 - s));
	if (q2 == NULL) {
		mime_percent_decode(s, n, out);
		return NULL;
	}
	if (q1 > s)
		charset = mime_strdup(s, (size_t)(q1 - s), false);
	q2++;
	mime_percent_decode(q2, n - (size_t)(q2 - s), out);
	return charset;
}

/* mime_group_value: the value of one parameter name from its raw pieces
 * g[0..n) (sorted: plain, name*, then sections in order): an RFC 2231 value
 * if there is one, else the plain one. False if there is none. */
static bool
mime_group_value(const struct mime_rawparam *g, size_t n, struct buf *out,
    char **charset_r)
{
	size_t k = 0;
	long next = 0;

	*charset_r = NULL;
	buf_truncate(out, 0);
	while (k < n && g[k].section == MIME_SEC_PLAIN)
		k++;
	if (k < n && g[k].section == MIME_SEC_EXT) {
		*charset_r = mime_ext_first(g[k].val, g[k].val_len, out);
		return true;
	}
	if (k < n && g[k].section == 0) {
		for (; k < n && g[k].section <= next; k++) {
			if (g[k].section < next)
				continue;	/* a repeated section */
			if (next == 0 && g[k].encoded)
				*charset_r = mime_ext_first(g[k].val,
				    g[k].val_len, out);
			else if (g[k].encoded)
				mime_percent_decode(g[k].val, g[k].val_len,
				    out);
			else
				buf_append(out, g[k].val, g[k].val_len);
			next++;
		}
		return true;
	}
	if (g[0].section != MIME_SEC_PLAIN)
		return false;
	buf_append(out, g[0].val, g[0].val_len);
	return true;
}

struct mime_param_out {
	struct mime_param param;
	size_t order;
};

static int
mime_out_cmp(const void *va, const void *vb)
{
	const struct mime_param_out *a = va, *b = vb;

	return a->order < b->order ? -1 : a->order > b->order;
}

/* mime_params_build: join the raw parameters into a new array, in the
 * order in which each name first appeared. */
static void
mime_params_build(struct mime_parser *p, struct mime_param **params_r,
    size_t *n_r)
{
	struct mime_param_out *out;
	struct mime_param *params;
	size_t g, e, k, nout = 0, first;
	char *charset;

	*params_r = NULL;
	*n_r = 0;
	if (p->nraw == 0)
		return;
	qsort(p->raw, p->nraw, sizeof(*p->raw), mime_raw_cmp);
	out = xreallocarray(NULL, p->nraw, sizeof(*out));
	for (g = 0; g < p->nraw; g = e) {
		first = p->raw[g].order;
		for (e = g + 1; e < p->nraw &&
		    mime_same_name(&p->raw[e], &p->raw[g]); e++) {
			if (p->raw[e].order < first)
				first = p->raw[e].order;
		}
		if (!mime_group_value(p->raw + g, e - g, &p->join, &charset))
			continue;
		out[nout].param.name = mime_strdup(p->raw[g].name,
		    p->raw[g].name_len, true);
		out[nout].param.value = mime_strdup(p->join.data == NULL ?
		    (const unsigned char *)"" : p->join.data, p->join.len,
		    false);
		out[nout].param.charset = charset;
		out[nout++].order = first;
	}
	if (nout == 0) {
		free(out);
		return;
	}
	qsort(out, nout, sizeof(*out), mime_out_cmp);
	params = xreallocarray(NULL, nout, sizeof(*params));
	for (k = 0; k < nout; k++)
		params[k] = out[k].param;
	free(out);
	*params_r = params;
	*n_r = nout;
}

/*
 * Content-* fields
 */

static void
mime_free_params(struct mime_param **params, size_t *n)
{
	size_t i;

	for (i = 0; i < *n; i++) {
		free((*params)[i].name);
		free((*params)[i].value);
		free((*params)[i].charset);
	}
	free(*params);
	*params = NULL;
	*n = 0;
}

/* mime_set_type: type/subtype and, for text/plain, charset=us-ascii, in
 * place of whatever the part had. */
static void
mime_set_type(struct mime_part *part, const char *type, const char *subtype)
{
	free(part->type);
	free(part->subtype);
	mime_free_params(&part->params, &part->nparams);
	part->type = xstrdup(type);
	part->subtype = xstrdup(subtype);
	if (strcmp(type, "text") == 0 && strcmp(subtype, "plain") == 0) {
		part->params = xcalloc(1, sizeof(*part->params));
		part->params[0].name = xstrdup("charset");
		part->params[0].value = xstrdup("us-ascii");
		part->nparams = 1;
	}
}

static void
mime_content_type(struct mime_parser *p, struct mime_part *part,
    const unsigned char *s, size_t n)
{
	size_t i = 0, t, tl, st, stl;

	if (!mime_token(s, n, &i, &t, &tl))
		return;
	mime_skip_cfws(s, n, &i);
	if (i >= n || s[i] != '/')
		return;
	i++;
	if (!mime_token(s, n, &i, &st, &stl))
		return;
	part->type = mime_strdup(s + t, tl, true);
	part->subtype = mime_strdup(s + st, stl, true);
	mime_params_collect(p, s, n, i);
	mime_params_build(p, &part->params, &part->nparams);
}

static void
mime_content_disposition(struct mime_parser *p, struct mime_part *part,
    const unsigned char *s, size_t n)
{
	size_t i = 0, t, tl;

	if (!mime_token(s, n, &i, &t, &tl))
		return;
	part->disposition = mime_strdup(s + t, tl, true);
	mime_params_collect(p, s, n, i);
	mime_params_build(p, &part->disp_params, &part->ndisp_params);
}

static char *
mime_content_token(const unsigned char *s, size_t n)
{
	size_t i = 0, t, tl;

	if (!mime_token(s, n, &i, &t, &tl))
		return NULL;
	return mime_strdup(s + t, tl, true);
}

/* mime_content_text: an unstructured value, trailing white space cut. */
static char *
mime_content_text(const unsigned char *s, size_t n)
{
	while (n > 0 && (mime_is_wsp(s[n - 1]) || s[n - 1] == '\r' ||
	    s[n - 1] == '\n'))
		n--;
	return mime_strdup(s, n, false);
}

static const struct {
	const char *name;	/* after "content-" */
	enum mime_field field;
} mime_fields[] = {
	{ "type", MIME_F_TYPE },
	{ "transfer-encoding", MIME_F_ENCODING },
	{ "id", MIME_F_ID },
	{ "description", MIME_F_DESCRIPTION },
	{ "md5", MIME_F_MD5 },
	{ "disposition", MIME_F_DISPOSITION },
	{ "language", MIME_F_LANGUAGE },
	{ "location", MIME_F_LOCATION },
};

static enum mime_field
mime_field_lookup(const unsigned char *name, size_t len)
{
	size_t i;

	if (len <= 8 || !mime_caseeq(name, 8, "content-"))
		return 0;
	for (i = 0; i < sizeof(mime_fields) / sizeof(mime_fields[0]); i++)
		if (mime_caseeq(name + 8, len - 8, mime_fields[i].name))
			return mime_fields[i].field;
	return 0;
}

static int
mime_header_field(const unsigned char *name, size_t name_len,
    const unsigned char *raw, size_t raw_len, void *vctx)
{
	struct mime_fields_ctx *ctx = vctx;
	struct mime_part *part = ctx->part;
	struct buf *v = &ctx->p->value;
	enum mime_field f = mime_field_lookup(name, name_len);
	const unsigned char *s;

	if (ctx->envelope && msg_envelope_field(name, name_len))
		buf_append(&ctx->p->env, raw, raw_len);
	if (f == 0 || (ctx->seen & f) != 0)
		return 0;
	ctx->seen |= f;
	buf_truncate(v, 0);
	msg_header_value(raw, raw_len, v);
	s = v->data == NULL ? (const unsigned char *)"" : v->data;
	switch (f) {
	case MIME_F_TYPE:
		mime_content_type(ctx->p, part, s, v->len);
		break;
	case MIME_F_ENCODING:
		part->encoding = mime_content_token(s, v->len);
		break;
	case MIME_F_ID:
		part->id = mime_content_text(s, v->len);
		break;
	case MIME_F_DESCRIPTION:
		part->description = mime_content_text(s, v->len);
		break;
	case MIME_F_MD5:
		part->md5 = mime_content_text(s, v->len);
		break;
	case MIME_F_DISPOSITION:
		mime_content_disposition(ctx->p, part, s, v->len);
		break;
	case MIME_F_LANGUAGE:
		part->language = mime_content_text(s, v->len);
		break;
	case MIME_F_LOCATION:
		part->location = mime_content_text(s, v->len);
		break;
	}
	return 0;
}

/* mime_header_fields: the Content-* fields of data[start..end), with the
 * defaults for those that are missing or invalid, and the envelope of an
 * encapsulated message. */
static void
mime_header_fields(struct mime_parser *p, struct mime_part *part,
    size_t start, size_t end, unsigned in)
{
	struct mime_fields_ctx ctx = { p, part, 0, (in & MIME_IN_MESSAGE) != 0 };

	buf_truncate(&p->env, 0);
	msg_header_iter(p->data + start, end - start, mime_header_field, &ctx,
	    NULL);
	if (p->env.len > 0) {
		part->envelope = xmalloc(p->env.len);
		memcpy(part->envelope, p->env.data, p->env.len);
		part->envelope_len = p->env.len;
	}
	if (part->type == NULL) {
		if ((in & MIME_IN_DIGEST) != 0)
			mime_set_type(part, "message", "rfc822");
		else
			mime_set_type(part, "text", "plain");
	}
	if (part->encoding == NULL)
		part->encoding = xstrdup("7bit");
}

/*
 * The tree
 */

static const char *
mime_param_get(const struct mime_part *part, const char *name)
{
	size_t i;

	for (i = 0; i < part->nparams; i++)
		if (strcmp(part->params[i].name, name) == 0)
			return part->params[i].value;
	return NULL;
}

static struct mime_part *
mime_add_child(struct mime_part *part)
{
	size_t n = part->nchildren;

	/* The capacity is the least power of two >= n, so a full array is
	 * one whose count is a power of two. */
	if (n == 0 || (n & (n - 1)) == 0)
		part->children = xreallocarray(part->children,
		    n == 0 ? 1 : n * 2, sizeof(*part->children));
	memset(&part->children[n], 0, sizeof(part->children[n]));
	part->nchildren++;
	return &part->children[n];
}

/* mime_scan_header: move the cursor over the header block that begins at
 * start (the cursor, or just before it when the cursor is at a boundary
 * line or the end); returns its end. *sep_r says whether an empty line
 * ended it (rather than a boundary line or the end of the data). */
static struct mime_mark
mime_scan_header(struct mime_parser *p, const struct mime_mark *start,
    bool *sep_r)
{
	bool empty;

	*sep_r = false;
	while (p->cur.pos < p->len) {
		if (mime_at_boundary(p))
			return mime_end_mark(p, start);
		empty = mime_line_empty(p);
		mime_advance(p);
		if (empty) {
			*sep_r = true;
			return p->cur;
		}
	}
	p->hit = -1;
	return p->cur;
}

/* mime_parse_multipart: the body at the cursor, up to the end of the
 * enclosing body, as parts separated by boundary. *last_r is set to the
 * end of the last part. */
static void
mime_parse_multipart(struct mime_parser *p, struct mime_part *part,
    int level, const char *boundary, struct mime_mark *last_r)
{
	int own = (int)p->nbounds;
	bool digest = strcmp(part->subtype, "digest") == 0, epilogue = false;

	p->bounds[p->nbounds].s = boundary;
	p->bounds[p->nbounds++].len = strlen(boundary);
	mime_skip_to_boundary(p);
	while (p->hit == own) {
		mime_advance(p);
		if (p->hit_close || p->nparts >= MIME_MAX_PARTS) {
			epilogue = true;
			break;
		}
		*last_r = mime_parse_part(p, mime_add_child(part), &p->cur,
		    level + 1, digest ? MIME_IN_DIGEST : 0);
	}
	p->nbounds--;
	if (epilogue)
		mime_skip_to_boundary(p);
}

static bool
mime_is_message(const struct mime_part *part)
{
	return strcmp(part->type, "message") == 0 &&
	    (strcmp(part->subtype, "rfc822") == 0 ||
	    strcmp(part->subtype, "global") == 0);
}

/* mime_parse_body: the body at the cursor; containers recurse, the rest is
 * skipped. Containers that cannot be parsed become opaque text/plain.
 * Returns where the body may end at the earliest: its start, or the end of
 * its last child, which may have taken the line ending that would otherwise
 * go to the boundary (an empty header just before a boundary line). */
static struct mime_mark
mime_parse_body(struct mime_parser *p, struct mime_part *part,
    const struct mime_mark *body, int level, bool sep)
{
	bool multi = strcmp(part->type, "multipart") == 0;
	bool room = level < MIME_MAX_DEPTH && p->nparts < MIME_MAX_PARTS;
	const char *boundary = multi ? mime_param_get(part, "boundary") : NULL;
	struct mime_mark floor = *body;

	if (multi && room && sep && boundary != NULL && *boundary != '\0') {
		mime_parse_multipart(p, part, level, boundary, &floor);
		if (part->nchildren == 0)
			mime_set_type(part, "text", "plain");
		return floor;
	}
	if (mime_is_message(part) && room)
		return mime_parse_part(p, mime_add_child(part), body,
		    level + 1, MIME_IN_MESSAGE);
	if (multi || mime_is_message(part))
		mime_set_type(part, "text", "plain");
	mime_skip_to_boundary(p);
	return floor;
}

/* mime_parse_part: the part beginning at start, up to the next boundary
 * line of an enclosing multipart or the end; returns its end. */
static struct mime_mark
mime_parse_part(struct mime_parser *p, struct mime_part *part,
    const struct mime_mark *startp, int level, unsigned in)
{
	struct mime_mark start = *startp, body, floor, end;
	bool sep;

	p->nparts++;
	body = mime_scan_header(p, &start, &sep);
	mime_set_range(&start, &body, &part->hdr_offset, &part->hdr_psize,
	    &part->hdr_vsize);
	mime_header_fields(p, part, start.pos, body.pos, in);
	floor = mime_parse_body(p, part, &body, level, sep);
	end = mime_end_mark(p, &floor);
	mime_set_range(&body, &end, &part->body_offset, &part->body_psize,
	    &part->body_vsize);
	part->body_lines = mime_lines(p, &body, &end);
	return end;
}

struct mime_part *
mime_parse(const unsigned char *data, size_t len)
{
	static const unsigned char empty[1];
	struct mime_parser p;
	struct mime_part *root = xcalloc(1, sizeof(*root));

	memset(&p, 0, sizeof(p));
	p.data = data == NULL ? empty : data;
	p.len = data == NULL ? 0 : len;
	p.hit = -1;
	buf_init(&p.value, SIZE_MAX);
	buf_init(&p.pbuf, SIZE_MAX);
	buf_init(&p.join, SIZE_MAX);
	buf_init(&p.env, SIZE_MAX);
	mime_parse_part(&p, root, &p.cur, 1, 0);
	buf_free(&p.env);
	buf_free(&p.value);
	buf_free(&p.pbuf);
	buf_free(&p.join);
	free(p.raw);
	return root;
}

static void
mime_part_clear(struct mime_part *part)
{
	size_t i;

	free(part->type);
	free(part->subtype);
	mime_free_params(&part->params, &part->nparams);
	free(part->id);
	free(part->description);
	free(part->encoding);
	free(part->md5);
	free(part->disposition);
	free(part->language);
	free(part->location);
	mime_free_params(&part->disp_params, &part->ndisp_params);
	free(part->envelope);
	for (i = 0; i < part->nchildren; i++)
		mime_part_clear(&part->children[i]);
	free(part->children);
	memset(part, 0, sizeof(*part));
}

void
mime_part_free(struct mime_part **part)
{
	if (*part == NULL)
		return;
	mime_part_clear(*part);
	free(*part);
	*part = NULL;
}

/*
 * Binary form. Numbers are LEB128 varints; a string is its length then its
 * bytes; a string that may be NULL stores length + 1, 0 meaning NULL.
 *   blob  = version part
 *   part  = type subtype params id description encoding md5 disposition
 *           language location disp_params envelope hdr_offset hdr_psize
 *           hdr_vsize body_offset body_psize body_vsize body_lines
 *           nchildren part*
 * The envelope is bytes (it may hold NUL), stored like a nullable string.
 *   params = count (name value charset?)*
 */

/* Fewest bytes a part and a parameter can take, to bound counts. */
#define MIME_MIN_PART_BYTES	20
#define MIME_MIN_PARAM_BYTES	3

static int
mime_put_num(struct buf *out, uint64_t v)
{
	unsigned char b[10];
	size_t n = 0;

	do {
		b[n] = v & 0x7f;
		v >>= 7;
		if (v != 0)
			b[n] |= 0x80;
		n++;
	} while (v != 0);
	return buf_append(out, b, n);
}

static int
mime_put_bytes(struct buf *out, const void *p, size_t len, bool nullable)
{
	if (p == NULL)
		return nullable ? mime_put_num(out, 0) : -1;
	if (mime_put_num(out, (uint64_t)len + (nullable ? 1 : 0)) < 0)
		return -1;
	return buf_append(out, p, len);
}

static int
mime_put_str(struct buf *out, const char *s, bool nullable)
{
	return mime_put_bytes(out, s, s == NULL ? 0 : strlen(s), nullable);
}

static int
mime_put_params(struct buf *out, const struct mime_param *params, size_t n)
{
	size_t i;

	if (mime_put_num(out, n) < 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (mime_put_str(out, params[i].name, false) < 0 ||
		    mime_put_str(out, params[i].value, false) < 0 ||
		    mime_put_str(out, params[i].charset, true) < 0)
			return -1;
	}
	return 0;
}

static int
mime_put_part(struct buf *out, const struct mime_part *part, int level,
    size_t *nparts)
{
	const char *const strs[] = { part->id, part->description,
	    part->encoding, part->md5, part->disposition, part->language,
	    part->location };
	const uint64_t nums[] = { part->hdr_offset, part->hdr_psize,
	    part->hdr_vsize, part->body_offset, part->body_psize,
	    part->body_vsize, part->body_lines, part->nchildren };
	size_t i;

	/* What mime_deserialize would refuse is not written. */
	if (level > MIME_MAX_DEPTH || ++*nparts > MIME_MAX_PARTS)
		return -1;
	if (mime_put_str(out, part->type, false) < 0 ||
	    mime_put_str(out, part->subtype, false) < 0 ||
	    mime_put_params(out, part->params, part->nparams) < 0)
		return -1;
	for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		if (mime_put_str(out, strs[i], true) < 0)
			return -1;
	if (mime_put_params(out, part->disp_params, part->ndisp_params) < 0 ||
	    mime_put_bytes(out, part->envelope, part->envelope_len, true) < 0)
		return -1;
	for (i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
		if (mime_put_num(out, nums[i]) < 0)
			return -1;
	for (i = 0; i < part->nchildren; i++)
		if (mime_put_part(out, &part->children[i], level + 1,
		    nparts) < 0)
			return -1;
	return 0;
}

int
mime_serialize(const struct mime_part *part, struct buf *out)
{
	size_t start = out->len, nparts = 0;

	if (buf_append_byte(out, MIME_SERIAL_VERSION) < 0 ||
	    mime_put_part(out, part, 1, &nparts) < 0) {
		buf_truncate(out, start);
		return -1;
	}
	return 0;
}

struct mime_reader {
	const unsigned char *p;
	size_t left;
	size_t nparts;
};

static int
mime_get_num(struct mime_reader *r, uint64_t max, uint64_t *v_r)
{
	uint64_t v = 0;
	unsigned shift = 0;
	unsigned char b;

	do {
		if (r->left == 0 || shift > 63)
			return -1;
		b = *r->p++;
		r->left--;
		/* The tenth byte holds only the top bit. */
		if (shift == 63 && (b & 0x7e) != 0)
			return -1;
		v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
	} while (b & 0x80);
	if (v > max)
		return -1;
	*v_r = v;
	return 0;
}

/* mime_get_count: a count of items that take at least unit bytes each,
 * checked against the bytes left after it (so nothing huge is allocated). */
static int
mime_get_count(struct mime_reader *r, size_t unit, uint64_t *n_r)
{
	if (mime_get_num(r, UINT64_MAX, n_r) < 0 || *n_r > r->left / unit)
		return -1;
	return 0;
}

/* mime_get_envelope: nullable bytes, NUL allowed. */
static int
mime_get_envelope(struct mime_reader *r, struct mime_part *part)
{
	uint64_t n;

	if (mime_get_num(r, UINT64_MAX, &n) < 0)
		return -1;
	if (n-- == 0)
		return 0;
	if (n > r->left)
		return -1;
	part->envelope = xmalloc(n == 0 ? 1 : (size_t)n);
	memcpy(part->envelope, r->p, (size_t)n);
	part->envelope_len = (size_t)n;
	r->p += n;
	r->left -= n;
	return 0;
}

static int
mime_get_str(struct mime_reader *r, bool nullable, char **s_r)
{
	uint64_t n;

	*s_r = NULL;
	if (mime_get_num(r, UINT64_MAX, &n) < 0)
		return -1;
	if (nullable && n-- == 0)
		return 0;
	if (n > r->left || memchr(r->p, '\0', (size_t)n) != NULL)
		return -1;
	*s_r = xstrndup((const char *)r->p, (size_t)n);
	r->p += n;
	r->left -= n;
	return 0;
}

/* mime_get_params: the array is allocated zeroed before it is filled, so
 * that on error mime_part_clear frees what was read. */
static int
mime_get_params(struct mime_reader *r, struct mime_param **params_r,
    size_t *n_r)
{
	uint64_t n, i;

	if (mime_get_count(r, MIME_MIN_PARAM_BYTES, &n) < 0)
		return -1;
	if (n == 0)
		return 0;
	*params_r = xcalloc((size_t)n, sizeof(**params_r));
	*n_r = (size_t)n;
	for (i = 0; i < n; i++) {
		if (mime_get_str(r, false, &(*params_r)[i].name) < 0 ||
		    mime_get_str(r, false, &(*params_r)[i].value) < 0 ||
		    mime_get_str(r, true, &(*params_r)[i].charset) < 0)
			return -1;
	}
	return 0;
}

static int
mime_get_range(struct mime_reader *r, uint64_t *off, uint64_t *psize,
    uint64_t *vsize)
{
	if (mime_get_num(r, UINT64_MAX, off) < 0 ||
	    mime_get_num(r, UINT64_MAX - *off, psize) < 0 ||
	    mime_get_num(r, UINT64_MAX, vsize) < 0)
		return -1;
	return 0;
}

static int
mime_get_part(struct mime_reader *r, struct mime_part *part, int level)
{
	char **const strs[] = { &part->id, &part->description,
	    &part->encoding, &part->md5, &part->disposition, &part->language,
	    &part->location };
	uint64_t lines, n, i;

	if (level > MIME_MAX_DEPTH || ++r->nparts > MIME_MAX_PARTS)
		return -1;
	if (mime_get_str(r, false, &part->type) < 0 ||
	    mime_get_str(r, false, &part->subtype) < 0 ||
	    mime_get_params(r, &part->params, &part->nparams) < 0)
		return -1;
	for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		if (mime_get_str(r, true, strs[i]) < 0)
			return -1;
	if (mime_get_params(r, &part->disp_params, &part->ndisp_params) < 0 ||
	    mime_get_envelope(r, part) < 0 ||
	    mime_get_range(r, &part->hdr_offset, &part->hdr_psize,
	    &part->hdr_vsize) < 0 ||
	    mime_get_range(r, &part->body_offset, &part->body_psize,
	    &part->body_vsize) < 0 ||
	    mime_get_num(r, UINT32_MAX, &lines) < 0 ||
	    mime_get_count(r, MIME_MIN_PART_BYTES, &n) < 0)
		return -1;
	part->body_lines = (uint32_t)lines;
	if (n == 0)
		return 0;
	part->children = xcalloc((size_t)n, sizeof(*part->children));
	part->nchildren = (size_t)n;
	for (i = 0; i < n; i++)
		if (mime_get_part(r, &part->children[i], level + 1) < 0)
			return -1;
	return 0;
}

int
mime_deserialize(const unsigned char *blob, size_t len,
    struct mime_part **part_r)
{
	struct mime_reader r;
	struct mime_part *part;

	*part_r = NULL;
	if (len < 1 || blob[0] != MIME_SERIAL_VERSION)
		return -1;
	r.p = blob + 1;
	r.left = len - 1;
	r.nparts = 0;
	part = xcalloc(1, sizeof(*part));
	if (mime_get_part(&r, part, 1) < 0 || r.left != 0) {
		mime_part_free(&part);
		return -1;
	}
	*part_r = part;
	return 0;
}

/*
 * Dump
 */

static void
mime_dump_bytes(struct buf *out, const unsigned char *u, size_t n,
    bool quote)
{
	size_t i;

	if (quote)
		buf_append_byte(out, '"');
	for (i = 0; i < n; i++) {
		if (u[i] == '"' || u[i] == '\\')
			buf_printf(out, "\\%c", u[i]);
		else if (u[i] < 0x20 || u[i] > 0x7e)
			buf_printf(out, "\\x%02x", u[i]);
		else
			buf_append_byte(out, u[i]);
	}
	if (quote)
		buf_append_byte(out, '"');
}

static void
mime_dump_str(struct buf *out, const char *s, bool quote)
{
	mime_dump_bytes(out, (const unsigned char *)s, strlen(s), quote);
}

static void
mime_dump_params(struct buf *out, const struct mime_param *params, size_t n)
{
	size_t i;

	buf_append_str(out, " (");
	for (i = 0; i < n; i++) {
		if (i > 0)
			buf_append_byte(out, ' ');
		mime_dump_str(out, params[i].name, false);
		if (params[i].charset != NULL) {
			buf_append_byte(out, '*');
			mime_dump_str(out, params[i].charset, false);
		}
		buf_append_byte(out, '=');
		mime_dump_str(out, params[i].value, true);
	}
	buf_append_byte(out, ')');
}

static void
mime_dump_opt(struct buf *out, const char *label, const char *s)
{
	if (s == NULL)
		return;
	buf_printf(out, " %s=", label);
	mime_dump_str(out, s, true);
}

static void
mime_dump_part(const struct mime_part *part, struct buf *path,
    struct buf *out)
{
	size_t i, plen = path->len;

	buf_append_str(out, path->len == 0 ? "root" : buf_cstr(path));
	buf_append_byte(out, ' ');
	mime_dump_str(out, part->type == NULL ? "" : part->type, false);
	buf_append_byte(out, '/');
	mime_dump_str(out, part->subtype == NULL ? "" : part->subtype, false);
	mime_dump_params(out, part->params, part->nparams);
	buf_append_str(out, " enc=");
	mime_dump_str(out, part->encoding == NULL ? "" : part->encoding,
	    false);
	mime_dump_opt(out, "id", part->id);
	mime_dump_opt(out, "desc", part->description);
	mime_dump_opt(out, "md5", part->md5);
	if (part->disposition != NULL) {
		mime_dump_opt(out, "disp", part->disposition);
		mime_dump_params(out, part->disp_params, part->ndisp_params);
	}
	mime_dump_opt(out, "lang", part->language);
	mime_dump_opt(out, "loc", part->location);
	if (part->envelope != NULL) {
		buf_append_str(out, " env=");
		mime_dump_bytes(out, part->envelope, part->envelope_len, true);
	}
	buf_printf(out, " hdr=%llu+%llu/%llu body=%llu+%llu/%llu lines=%lu\n",
	    (unsigned long long)part->hdr_offset,
	    (unsigned long long)part->hdr_psize,
	    (unsigned long long)part->hdr_vsize,
	    (unsigned long long)part->body_offset,
	    (unsigned long long)part->body_psize,
	    (unsigned long long)part->body_vsize,
	    (unsigned long)part->body_lines);
	for (i = 0; i < part->nchildren; i++) {
		buf_printf(path, plen == 0 ? "%zu" : ".%zu", i + 1);
		mime_dump_part(&part->children[i], path, out);
		buf_truncate(path, plen);
	}
}

void
mime_dump(const struct mime_part *part, struct buf *out)
{
	struct buf path;

	buf_init(&path, SIZE_MAX);
	mime_dump_part(part, &path, out);
	buf_free(&path);
}
