/*
 * utf7.c: IMAP modified UTF-7 <-> UTF-8 (RFC 3501 section 5.1.3).
 *
 * SECURITY: both directions take untrusted text (mailbox names from IMAP
 * clients, directory names from disk). Every byte is checked; the decoder
 * refuses anything but the canonical encoding, because folder names are
 * compared as bytes and one folder must not have two spellings.
 */
#include "config.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "buf.h"
#include "utf7.h"

static const char utf7_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/* State of one base64 run: bits not yet emitted (encoder) or not yet
 * assembled into a UTF-16 unit (decoder). */
struct utf7_bits {
	uint32_t bits;
	unsigned nbits;
};

static bool
utf7_is_direct(unsigned char c)
{
	return c >= 0x20 && c <= 0x7e;
}

static int
utf7_b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == ',')
		return 63;
	return -1;
}

/* utf7_utf8_next: decode one strict UTF-8 character at *pp and advance.
 * Returns the code point, or -1 for a malformed sequence. */
static int32_t
utf7_utf8_next(const unsigned char **pp)
{
	const unsigned char *p = *pp;
	uint32_t cp, min;
	unsigned i, more;

	if (p[0] < 0x80) {
		*pp = p + 1;
		return p[0];
	}
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		cp = p[0] & 0x1f;
		more = 1;
		min = 0x80;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		cp = p[0] & 0x0f;
		more = 2;
		min = 0x800;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		cp = p[0] & 0x07;
		more = 3;
		min = 0x10000;
	} else
		return -1;
	for (i = 1; i <= more; i++) {
		/* The NUL terminator is not a continuation byte, so this
		 * never reads past the end of the string. */
		if ((p[i] & 0xc0) != 0x80)
			return -1;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	*pp = p + 1 + more;
	return (int32_t)cp;
}

static int
utf7_put_utf8(struct buf *out, uint32_t cp)
{
	unsigned char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (unsigned char)(0xc0 | cp >> 6);
		u[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (unsigned char)(0xe0 | cp >> 12);
		u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		u[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (unsigned char)(0xf0 | cp >> 18);
		u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
		u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		u[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return buf_append(out, u, n);
}

/* utf7_put_unit: add a UTF-16 unit to the run, emitting whole sextets. */
static int
utf7_put_unit(struct buf *out, struct utf7_bits *b, uint32_t unit)
{
	b->bits = (b->bits << 16 | unit) & 0x3fffff;
	b->nbits += 16;
	while (b->nbits >= 6) {
		b->nbits -= 6;
		if (buf_append_byte(out,
		    (unsigned char)utf7_b64[b->bits >> b->nbits & 0x3f]) < 0)
			return -1;
	}
	return 0;
}

/* utf7_encode_run: encode the characters from *pp up to the next direct
 * one as a single shift, so that the output is canonical. */
static int
utf7_encode_run(const unsigned char **pp, struct buf *out)
{
	struct utf7_bits b = { 0, 0 };
	int32_t cp;
	uint32_t u;

	if (buf_append_byte(out, '&') < 0)
		return -1;
	while (**pp != '\0' && !utf7_is_direct(**pp)) {
		if ((cp = utf7_utf8_next(pp)) < 0)
			return -1;
		u = (uint32_t)cp;
		if (u >= 0x10000) {
			u -= 0x10000;
			if (utf7_put_unit(out, &b, 0xd800 | u >> 10) < 0 ||
			    utf7_put_unit(out, &b, 0xdc00 | (u & 0x3ff)) < 0)
				return -1;
		} else if (utf7_put_unit(out, &b, u) < 0)
			return -1;
	}
	/* Pad the last sextet with zero bits. */
	if (b.nbits > 0 && buf_append_byte(out,
	    (unsigned char)utf7_b64[b.bits << (6 - b.nbits) & 0x3f]) < 0)
		return -1;
	return buf_append_byte(out, '-');
}

int
utf7_encode(const char *utf8, struct buf *out)
{
	const unsigned char *p = (const unsigned char *)utf8;
	size_t start = out->len;
	int ret = 0;

	while (*p != '\0' && ret == 0) {
		if (*p == '&') {
			ret = buf_append(out, "&-", 2);
			p++;
		} else if (utf7_is_direct(*p))
			ret = buf_append_byte(out, *p++);
		else
			ret = utf7_encode_run(&p, out);
	}
	if (ret < 0)
		buf_truncate(out, start);
	return ret;
}

/* utf7_take_unit: one decoded UTF-16 unit; *hi holds a pending high
 * surrogate between calls. */
static int
utf7_take_unit(struct buf *out, uint32_t unit, uint32_t *hi)
{
	uint32_t cp;

	if (*hi != 0) {
		if (unit < 0xdc00 || unit > 0xdfff)
			return -1;
		cp = 0x10000 + ((*hi - 0xd800) << 10) + (unit - 0xdc00);
		*hi = 0;
		return utf7_put_utf8(out, cp);
	}
	if (unit >= 0xd800 && unit <= 0xdbff) {
		*hi = unit;
		return 0;
	}
	if (unit >= 0xdc00 && unit <= 0xdfff)
		return -1;
	/* Shifted printable ASCII is non-canonical; NUL is not text. */
	if (unit == 0 || (unit < 0x80 && utf7_is_direct((unsigned char)unit)))
		return -1;
	return utf7_put_utf8(out, unit);
}

/* utf7_decode_run: decode the base64 between '&' and '-'; *pp points
 * after the '&' and is left after the '-'. */
static int
utf7_decode_run(const unsigned char **pp, struct buf *out)
{
	const unsigned char *p = *pp;
	struct utf7_bits b = { 0, 0 };
	uint32_t hi = 0;
	int v;

	for (; *p != '-'; p++) {
		if ((v = utf7_b64_value(*p)) < 0)
			return -1;	/* also the NUL of an open run */
		b.bits = (b.bits << 6 | (uint32_t)v) & 0x3fffff;
		b.nbits += 6;
		if (b.nbits >= 16) {
			b.nbits -= 16;
			if (utf7_take_unit(out, b.bits >> b.nbits & 0xffff,
			    &hi) < 0)
				return -1;
		}
	}
	/* Fewer than six bits may be left over, and they must be zero. */
	if (hi != 0 || b.nbits >= 6 ||
	    (b.bits & ((1u << b.nbits) - 1)) != 0)
		return -1;
	*pp = p + 1;
	return 0;
}

static int
utf7_decode_all(const unsigned char *p, struct buf *out)
{
	bool after_run = false;

	while (*p != '\0') {
		if (!utf7_is_direct(*p))
			return -1;
		if (*p != '&') {
			if (buf_append_byte(out, *p++) < 0)
				return -1;
			after_run = false;
		} else if (p[1] == '-') {
			if (buf_append_byte(out, '&') < 0)
				return -1;
			p += 2;
			after_run = false;
		} else {
			/* Two runs in a row must have been one. */
			if (after_run)
				return -1;
			p++;
			if (utf7_decode_run(&p, out) < 0)
				return -1;
			after_run = true;
		}
	}
	return 0;
}

int
utf7_decode(const char *mutf7, struct buf *out)
{
	size_t start = out->len;

	if (utf7_decode_all((const unsigned char *)mutf7, out) < 0) {
		buf_truncate(out, start);
		return -1;
	}
	return 0;
}
