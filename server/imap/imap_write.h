/*
 * imap_write.h: appending IMAP response syntax (RFC 3501 section 9,
 * RFC 9051 section 9) to a bounded lib/buf: atoms, numbers, NIL, strings
 * (quoted or literal, chosen here), astrings, nstrings and parenthesized
 * lists, with the separating spaces put in by the writer.
 *
 * Spacing: every item written after another one at the same level is
 * preceded by one SP, except the first item after a "(" and the item after
 * imap_write_adjacent(), which is how "1*address" and "1*body" (no SP
 * between the elements) are written. imap_write_crlf() ends a line and
 * starts a new one without a space.
 *
 * Strings: a string is sent quoted when every byte may appear in a quoted
 * string and it is at most IMAP_WRITE_QUOTED_MAX bytes long; '"' and '\'
 * are then backslash-escaped. Otherwise it is sent as a literal
 * "{N}\r\n" followed by the N bytes. Bytes that force a literal: CR, LF,
 * and bytes >= 0x80, except that with IMAP_WRITE_UTF8 bytes >= 0x80 that
 * form valid UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
 * past U+10FFFF) may be quoted, as RFC 9051 and RFC 6855 allow. NUL bytes
 * are dropped from every string and never counted: no IMAP string can
 * carry one (CHAR8 is %x01-ff), so a quoted string could not, and neither
 * could a literal.
 *
 * Errors: the buffer is bounded. When an append would pass its maximum
 * the writer fails: that call and every later one return -1 and write
 * nothing more, and imap_write_finish() cuts the buffer back to where the
 * writer started, so a response is never left half-written. The writer
 * never allocates on its own account.
 */
#ifndef LOFT_IMAP_WRITE_H
#define LOFT_IMAP_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "buf.h"

/* Longest string, in bytes (NULs not counted, escapes not counted), that
 * is sent quoted; longer ones are literals. 1024 keeps response lines
 * short enough for clients with fixed line buffers. */
#define IMAP_WRITE_QUOTED_MAX	1024

/* Flags of imap_write_init. */
#define IMAP_WRITE_UTF8	0x01u	/* IMAP4rev2 or UTF8=ACCEPT enabled:
				   valid UTF-8 may go in quoted strings */
#define IMAP_WRITE_REV2	0x02u	/* IMAP4rev2 grammar (RFC 9051): a
				   message/global part is written with an
				   envelope and body, as message/rfc822 is */

/* Deepest list nesting; deeper is a bug (log_panic). A BODYSTRUCTURE of
 * MIME_MAX_DEPTH levels needs one list per level and four more. */
#define IMAP_WRITE_DEPTH_MAX	1024

struct imap_write {
	struct buf *out;	/* not owned */
	size_t start;		/* out->len at imap_write_init */
	unsigned flags;		/* IMAP_WRITE_* */
	unsigned depth;		/* lists open */
	bool sp;		/* the next item needs a space before it */
	bool failed;		/* an append would have passed out->max */
};

/* imap_write_init: start writing at the end of out with flags
 * (IMAP_WRITE_*). The first item gets no space before it. */
void imap_write_init(struct imap_write *w, struct buf *out, unsigned flags);

/* imap_write_finish: 0 if everything fit; -1 if the writer failed, and
 * out is then cut back to its length at imap_write_init. Lists left open
 * are a bug (log_panic). The writer may be used again after it. */
int imap_write_finish(struct imap_write *w);

/* Every function below returns 0, or -1 if the writer has failed (in this
 * call or before; nothing is written after a failure). */

/* imap_write_atom: text written as it is: an atom, a flag, a response
 * word ("*", "FETCH"), a section ("BODY[1.MIME]<0>"). The caller
 * guarantees its syntax; CR, LF or an empty atom are a bug (log_panic). */
int imap_write_atom(struct imap_write *w, const char *atom);
int imap_write_number(struct imap_write *w, uint64_t n);
int imap_write_nil(struct imap_write *w);

/* imap_write_string: s (never NULL) as a quoted string or a literal, by
 * the rules above. _mem: len bytes that may hold NULs (dropped). */
int imap_write_string(struct imap_write *w, const char *s);
int imap_write_string_mem(struct imap_write *w, const unsigned char *s,
    size_t len);
/* imap_write_nstring: NIL if s is NULL, else a string. */
int imap_write_nstring(struct imap_write *w, const char *s);
int imap_write_nstring_mem(struct imap_write *w, const unsigned char *s,
    size_t len);
/* imap_write_astring: s (never NULL) as an atom when it is a non-empty
 * run of ASTRING-CHARs and not "NIL" in any case (which a careless client
 * would take for NIL), otherwise as a string. */
int imap_write_astring(struct imap_write *w, const char *s);

/* imap_write_literal: data always as a literal "{len}\r\n" + data, for
 * message content. NUL bytes are sent as 0x80 (as Dovecot does), so the
 * count stays the size the client was told (RFC822.SIZE and friends). */
int imap_write_literal(struct imap_write *w, const unsigned char *data,
    size_t len);

/* Lists: open writes "(" (after a space if one is due), close writes ")".
 * Closing a list that is not open is a bug (log_panic). */
int imap_write_list_open(struct imap_write *w);
int imap_write_list_close(struct imap_write *w);
/* imap_write_adjacent: the next item follows the previous one without a
 * space. */
void imap_write_adjacent(struct imap_write *w);
/* imap_write_crlf: end the response line; lists must be closed (else
 * log_panic). */
int imap_write_crlf(struct imap_write *w);

/* imap_write_quotable: whether s[0..len) would be sent quoted under flags
 * (IMAP_WRITE_*): no CR or LF, at most IMAP_WRITE_QUOTED_MAX bytes besides
 * NULs, and 7-bit or (with IMAP_WRITE_UTF8) valid UTF-8. */
bool imap_write_quotable(const unsigned char *s, size_t len, unsigned flags);

/* imap_write_utf8_valid: whether s[0..len) is valid UTF-8 (RFC 3629). */
bool imap_write_utf8_valid(const unsigned char *s, size_t len);

#endif
