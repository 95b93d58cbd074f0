/*
 * cte.c: Content-Transfer-Encoding decoders (quoted-printable, base64,
 * and the line ends of 7bit/8bit text) as byte-at-a-time state machines;
 * the contract is in cte.h.
 *
 * Input is message bytes from storage, trusted in nothing: any byte
 * value moves the machine to a defined state, and what one byte may
 * write is bounded (itself, plus what was held back before it), which is
 * where the 2 * len + CTE_SLACK bound of cte.h comes from: a bare LF
 * under CTE_CRLF writes two bytes, a byte that ends a held "=X" or run
 * of white space writes those first.
 */
#include "config.h"

#include <stdbool.h>
#include <string.h>

#include "cte.h"

/* Quoted-printable states (struct cte_dec.qp). */
enum cte_qp_state {
	CTE_QP_TEXT,
	CTE_QP_CR,		/* a CR in the text: a line end if LF comes */
	CTE_QP_EQ,		/* "=" */
	CTE_QP_HEX,		/* "=" and one hex digit (qp_hi) */
	CTE_QP_EQ_WS,		/* "=" and white space (held in ws) */
	CTE_QP_EQ_CR		/* "=", maybe white space, CR */
};

/* Value + 1 of each byte; 0: not of the alphabet. */
static const unsigned char cte_b64_tab[256] = {
	['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5,
	['F'] = 6, ['G'] = 7, ['H'] = 8, ['I'] = 9, ['J'] = 10,
	['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15,
	['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20,
	['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24, ['Y'] = 25,
	['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30,
	['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35,
	['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
	['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45,
	['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49, ['x'] = 50,
	['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55,
	['3'] = 56, ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60,
	['8'] = 61, ['9'] = 62, ['+'] = 63, ['/'] = 64
};

static const unsigned char cte_hex_tab[256] = {
	['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5,
	['5'] = 6, ['6'] = 7, ['7'] = 8, ['8'] = 9, ['9'] = 10,
	['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15,
	['F'] = 16, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14,
	['e'] = 15, ['f'] = 16
};

int
cte_hex_value(unsigned char c)
{
	return (int)cte_hex_tab[c] - 1;
}

int
cte_b64_value(unsigned char c)
{
	return (int)cte_b64_tab[c] - 1;
}

int
cte_from_name(const char *name, enum cte_encoding *cte_r)
{
	static const struct {
		const char *name;
		enum cte_encoding cte;
	} map[] = {
		{ "7bit", CTE_TEXT },
		{ "8bit", CTE_TEXT },
		{ "binary", CTE_IDENTITY },
		{ "quoted-printable", CTE_QP },
		{ "base64", CTE_BASE64 },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(name, map[i].name) == 0) {
			*cte_r = map[i].cte;
			return 0;
		}
	return -1;
}

void
cte_init(struct cte_dec *d, enum cte_encoding cte, unsigned flags)
{
	memset(d, 0, sizeof(*d));
	d->cte = cte;
	d->flags = flags;
	d->qp = CTE_QP_TEXT;
}

/*
 * Quoted-printable.
 */

/* The white space held back, written out: it was not at a line end. */
static unsigned char *
cte_qp_ws(struct cte_dec *d, unsigned char *o)
{
	memcpy(o, d->ws, d->nws);
	o += d->nws;
	d->nws = 0;
	return o;
}

/* "=" and what followed it was no escape: as it was, then the byte that
 * showed it is looked at again in TEXT. */
static unsigned char *
cte_qp_not_escape(struct cte_dec *d, unsigned char *o)
{
	*o++ = '=';
	if (d->qp == CTE_QP_HEX)
		*o++ = d->qp_hi;
	o = cte_qp_ws(d, o);
	if (d->qp == CTE_QP_EQ_CR)
		*o++ = '\r';
	d->qp = CTE_QP_TEXT;
	return o;
}

/* One byte of quoted-printable text in TEXT state. */
static unsigned char *
cte_qp_text(struct cte_dec *d, unsigned char c, unsigned char *o)
{
	if (c == ' ' || c == '\t') {
		if (d->nws == CTE_WS_MAX)
			o = cte_qp_ws(d, o);
		d->ws[d->nws++] = c;
	} else if (c == '\r')
		d->qp = CTE_QP_CR;
	else if (c == '\n') {
		/* A bare line end (CTE_CRLF gave it its CR before, so this
		 * is stored LF-only text): the white space before it goes. */
		d->nws = 0;
		*o++ = c;
	} else {
		o = cte_qp_ws(d, o);
		if (c == '=')
			d->qp = CTE_QP_EQ;
		else
			*o++ = c;
	}
	return o;
}

/* "=" seen: a hex digit, white space or a line end may follow. 1: done
 * with c; -1: c is white space or a line end, to be looked at again in
 * EQ_WS; 0: c shows this was no escape. */
static int
cte_qp_eq(struct cte_dec *d, unsigned char c)
{
	if (cte_hex_tab[c] != 0) {
		d->qp_hi = c;
		d->qp = CTE_QP_HEX;
		return 1;
	}
	if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
		d->qp = CTE_QP_EQ_WS;
		return -1;
	}
	return 0;
}

/* "=" and white space: more of it, or the line end of a soft break. 1:
 * done with c; 0: c shows this was no escape. */
static int
cte_qp_eq_ws(struct cte_dec *d, unsigned char c)
{
	if ((c == ' ' || c == '\t') && d->nws < CTE_WS_MAX) {
		d->ws[d->nws++] = c;
		return 1;
	}
	if (c == '\r') {
		d->qp = CTE_QP_EQ_CR;
		return 1;
	}
	if (c == '\n') {
		/* A soft line break: nothing of it stays. */
		d->nws = 0;
		d->qp = CTE_QP_TEXT;
		return 1;
	}
	return 0;
}

/* One byte of quoted-printable. Each byte writes at most itself and
 * what was held before it. */
static unsigned char *
cte_qp_byte(struct cte_dec *d, unsigned char c, unsigned char *o)
{
	int r;

	for (;;) {
		switch (d->qp) {
		case CTE_QP_TEXT:
			return cte_qp_text(d, c, o);
		case CTE_QP_CR:
			d->qp = CTE_QP_TEXT;
			if (c == '\n') {
				d->nws = 0;
				*o++ = '\r';
				*o++ = '\n';
				return o;
			}
			/* A lone CR: text, white space before it kept. */
			o = cte_qp_ws(d, o);
			*o++ = '\r';
			continue;
		case CTE_QP_EQ:
			if ((r = cte_qp_eq(d, c)) > 0)
				return o;
			if (r < 0)
				continue;
			break;
		case CTE_QP_HEX:
			if (cte_hex_tab[c] != 0) {
				*o++ = (unsigned char)((cte_hex_tab[d->qp_hi] -
				    1) << 4 | (cte_hex_tab[c] - 1));
				d->qp = CTE_QP_TEXT;
				return o;
			}
			break;
		case CTE_QP_EQ_WS:
			if (cte_qp_eq_ws(d, c) > 0)
				return o;
			break;
		case CTE_QP_EQ_CR:
			if (c == '\n') {
				d->nws = 0;
				d->qp = CTE_QP_TEXT;
				return o;
			}
			break;
		}
		o = cte_qp_not_escape(d, o);
	}
}

/*
 * Base64 and line ends.
 */

static unsigned char *
cte_b64_byte(struct cte_dec *d, unsigned char c, unsigned char *o)
{
	unsigned v = cte_b64_tab[c];

	if (c == '=') {
		/* Padding: the quantum ends, its spare bits go. */
		d->b64_acc = 0;
		d->b64_bits = 0;
		return o;
	}
	if (v == 0)
		return o;
	d->b64_acc = (d->b64_acc << 6 | (uint32_t)(v - 1)) & 0xffffff;
	d->b64_bits += 6;
	if (d->b64_bits >= 8) {
		d->b64_bits -= 8;
		*o++ = (unsigned char)(d->b64_acc >> d->b64_bits);
	}
	return o;
}

/* TEXT and QP under CTE_CRLF: a bare LF gets its CR first. */
static unsigned char *
cte_crlf_byte(struct cte_dec *d, unsigned char c, unsigned char *o)
{
	bool lf_alone = c == '\n' && !d->prev_cr;

	d->prev_cr = c == '\r';
	if (d->cte == CTE_TEXT) {
		if (lf_alone)
			*o++ = '\r';
		*o++ = c;
		return o;
	}
	if (lf_alone)
		o = cte_qp_byte(d, '\r', o);
	return cte_qp_byte(d, c, o);
}

size_t
cte_decode(struct cte_dec *d, const unsigned char *in, size_t len,
    unsigned char *out)
{
	unsigned char *o = out;
	bool crlf = (d->flags & CTE_CRLF) != 0;

	switch (d->cte) {
	case CTE_IDENTITY:
		memcpy(out, in, len);
		return len;
	case CTE_BASE64:
		for (size_t i = 0; i < len; i++)
			o = cte_b64_byte(d, in[i], o);
		break;
	case CTE_TEXT:
		if (!crlf) {
			memcpy(out, in, len);
			return len;
		}
		/* FALLTHROUGH */
	default:
		for (size_t i = 0; i < len; i++)
			o = crlf ? cte_crlf_byte(d, in[i], o) :
			    cte_qp_byte(d, in[i], o);
		break;
	}
	return (size_t)(o - out);
}

size_t
cte_finish(struct cte_dec *d, unsigned char *out)
{
	unsigned char *o = out;

	if (d->cte == CTE_QP) {
		switch (d->qp) {
		case CTE_QP_HEX:
			o = cte_qp_not_escape(d, o);
			break;
		case CTE_QP_CR:
			o = cte_qp_ws(d, o);
			*o++ = '\r';
			break;
		default:
			/* White space at the end of the last line, or a
			 * soft line break there: neither stays. */
			break;
		}
	}
	cte_init(d, d->cte, d->flags);
	return (size_t)(o - out);
}
