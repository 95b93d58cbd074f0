/*
 * cte.h: Content-Transfer-Encoding decoding (RFC 2045 section 6) as a
 * state machine fed the stored bytes of a body in chunks cut anywhere: the
 * output does not depend on where the cuts fall, and memory does not grow
 * with the input (a few bytes of state, at most CTE_WS_MAX held back).
 * Used by IMAP FETCH BINARY (RFC 3516), SEARCH BODY/TEXT and FETCH
 * PREVIEW, so that all three read an encoding the same way.
 *
 *  - CTE_IDENTITY ("binary"): the bytes as they are.
 *  - CTE_TEXT ("7bit", "8bit"): the bytes as they are; with CTE_CRLF a
 *    bare LF gets its CR (lines end in CRLF, as IMAP's BODY[] has them).
 *    NUL stays NUL.
 *  - CTE_QP ("quoted-printable", RFC 2045 6.7): "=XX" in upper or lower
 *    case is the byte; "=" with optional white space before a line end
 *    (LF or CRLF) is a soft line break, removed (also at the very end,
 *    where a part's last line end belongs to the boundary); white space
 *    at the end of a line is removed (transports add it: held back up to
 *    CTE_WS_MAX bytes, so of a longer run only its last part goes);
 *    anything else after "=" is no escape and is kept as it is ("=G1",
 *    "=4x"). Line ends stay as stored (LF or CRLF), or with CTE_CRLF
 *    become CRLF; a lone CR is kept.
 *  - CTE_BASE64 (RFC 2045 6.8): bytes outside the alphabet (line ends,
 *    white space, garbage) are skipped; "=" ends a quantum (its
 *    incomplete bits are dropped) and decoding goes on after it, so a
 *    missing, short or extra padding and concatenated encodings decode to
 *    what they hold.
 *
 * Trusts nothing in the input: every byte value is taken, none can make
 * the decoder write past the bound given below.
 */
#ifndef LOFT_CTE_H
#define LOFT_CTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cte_encoding {
	CTE_IDENTITY,
	CTE_TEXT,
	CTE_QP,
	CTE_BASE64
};

/* Flags of cte_init. */
#define CTE_CRLF	0x01u	/* TEXT and QP: a bare LF becomes CRLF */

#define CTE_WS_MAX	64	/* white space held back in a QP line */
/* Output bytes beyond 2 * input that one call may write (held bytes). */
#define CTE_SLACK	(CTE_WS_MAX + 16)

/* The decoder's state: opaque, but on the caller's stack or in its
 * struct (no allocation). */
struct cte_dec {
	enum cte_encoding cte;
	unsigned flags;		/* CTE_* */
	bool prev_cr;		/* CRLF: the last input byte was CR */
	unsigned qp;		/* QP state (cte.c) */
	unsigned char qp_hi;	/* the first digit of "=XX" */
	unsigned char ws[CTE_WS_MAX];	/* QP: white space held */
	unsigned nws;
	uint32_t b64_acc;	/* BASE64: bits not written yet */
	unsigned b64_bits;
};

/* cte_from_name: the decoder for a Content-Transfer-Encoding token in
 * lower case, as the MIME tree keeps it ("7bit", "8bit", "binary",
 * "quoted-printable", "base64"): 0, or -1 for any other. */
int cte_from_name(const char *name, enum cte_encoding *cte_r);

/* cte_init: a decoder of cte with flags (CTE_*), at the start. */
void cte_init(struct cte_dec *d, enum cte_encoding cte, unsigned flags);

/* cte_decode: decode in[0..len) into out, which has room for
 * 2 * len + CTE_SLACK bytes; returns the bytes written (some input may
 * be held back until the next call or cte_finish). */
size_t cte_decode(struct cte_dec *d, const unsigned char *in, size_t len,
    unsigned char *out);

/* cte_finish: the input ended: write what is still held (at most
 * CTE_SLACK bytes) into out; returns the bytes written. d is then as
 * after cte_init with the same encoding and flags. */
size_t cte_finish(struct cte_dec *d, unsigned char *out);

/* The alphabets, one table each for every user (RFC 2047 encoded words
 * in imap_search.c decode their own small strings with them):
 * cte_hex_value: 0..15 for 0-9, A-F, a-f; else -1.
 * cte_b64_value: 0..63 for the base64 alphabet of RFC 4648 section 4
 * (A-Z a-z 0-9 + /); else -1 ('=' included). */
int cte_hex_value(unsigned char c);
int cte_b64_value(unsigned char c);

#endif
