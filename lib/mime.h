/*
 * mime.h: the MIME structure of a message (RFC 2045, 2046, 2231) as a tree
 * of parts, its compact binary form for the index, and a canonical text
 * dump for tests.
 *
 * Parsing rules (lines end at LF, an optional CR before it belongs to the
 * line ending):
 *  - A part is a header block (up to and including the first empty line)
 *    and a body. Header field names are case-insensitive; only the first of
 *    each Content-* field counts.
 *  - Content-Type is "type/subtype *(; name=value)"; type, subtype and
 *    parameter names are lowercased; values are tokens (anything but white
 *    space, CTLs, ';', '"' and '(') or quoted strings with backslash
 *    escapes; comments in parentheses are ignored between tokens; garbage up
 *    to the next ';' is skipped. A missing or invalid Content-Type means
 *    text/plain; charset=us-ascii, or message/rfc822 (no parameters) for a
 *    child of multipart/digest.
 *  - RFC 2231: name*0*=, name*1*=, name*1= continuations are joined in
 *    section order from 0 (sections past a gap are dropped); name*= and
 *    encoded sections are percent-decoded (bytes kept as they are, no
 *    charset conversion) and the charset of "charset'lang'" is kept in
 *    mime_param.charset. An RFC 2231 value wins over a plain one of the same
 *    name; otherwise the first parameter of a name wins.
 *  - multipart/<any>: boundary lines are "--boundary" at line start, then
 *    optional SP/HT, then the line ending or the end of data; the closing one
 *    is "--boundary--" (same trailing rule). The line ending before a
 *    boundary line belongs to the boundary, unless it is the empty line
 *    that ends a header block (the header keeps it, and so do the parts
 *    that contain that header). Text before the first boundary
 *    is the preamble, after the closing one the epilogue; neither is a part.
 *    Boundaries of every enclosing multipart are watched at once (one pass):
 *    a line matching an outer boundary ends the inner parts too. If a line
 *    matches several, the longest boundary wins, then the innermost. A part
 *    whose closing boundary is missing runs to the end of the enclosing body.
 *  - message/rfc822 and message/global bodies are parsed as messages: such a
 *    part has exactly one child, the encapsulated message, whose header
 *    starts at the body offset and which ends where the body ends.
 *  - Limits: at most MIME_MAX_DEPTH levels (the root is level 1); a
 *    container part on the last level, a multipart without a usable boundary
 *    and a multipart in which no part was found are all treated as opaque
 *    text/plain (type, subtype and parameters become the default ones; the
 *    rest of the part is kept). At most MIME_MAX_PARTS parts in a tree: past
 *    it no new part is started and the rest of the multipart is epilogue.
 *  - NUL bytes cannot live in C strings, so they are dropped from every
 *    string in the tree.
 */
#ifndef LOFT_MIME_H
#define LOFT_MIME_H

#include <stddef.h>
#include <stdint.h>
#include "buf.h"

#define MIME_MAX_DEPTH		100	/* levels of a tree, root included */
#define MIME_MAX_PARTS		10000	/* parts of a tree, root included */
#define MIME_SERIAL_VERSION	1	/* first byte of the binary form */

struct mime_param {
	char *name;		/* lowercased; for RFC 2231 without the '*' */
	char *value;		/* unquoted, joined, percent-decoded */
	char *charset;		/* RFC 2231 charset as written, or NULL */
};

/* Every string is owned by its part; every offset is relative to the start
 * of the data given to mime_parse. */
struct mime_part {
	char *type, *subtype;	/* lowercased, never NULL */
	struct mime_param *params;
	size_t nparams;
	char *id;		/* Content-ID value, unfolded, or NULL */
	char *description;	/* Content-Description, encoded words kept */
	char *encoding;		/* Content-Transfer-Encoding, lowercased token;
				   "7bit" if missing or invalid */
	char *md5;		/* Content-MD5 */
	char *disposition;	/* Content-Disposition type, lowercased */
	char *language;		/* Content-Language, unfolded */
	char *location;		/* Content-Location, unfolded */
	struct mime_param *disp_params;
	size_t ndisp_params;
	unsigned char *envelope;	/* an encapsulated message (the child
				   of message/rfc822 or message/global) only:
				   the raw fields of its header that an IMAP
				   ENVELOPE needs (msg_envelope_field), in
				   order, so BODYSTRUCTURE needs no file; NULL
				   elsewhere or if it has none */
	size_t envelope_len;
	uint64_t hdr_offset, hdr_psize, hdr_vsize;	/* header block */
	uint64_t body_offset, body_psize, body_vsize;	/* body */
	uint32_t body_lines;	/* LFs in the body, plus one if it ends with
				   an unterminated line */
	struct mime_part *children;	/* owned array */
	size_t nchildren;	/* multipart: its parts (at least one);
				   message/rfc822, message/global: exactly one,
				   the encapsulated message; else 0 */
};

/* mime_parse: the tree of the whole message data[0..len), whose root part is
 * the message itself (hdr_offset 0, body ending at len). Never fails and
 * never reads past data[len - 1]; the work is one pass over the data plus
 * the header blocks once more. Free the tree with mime_part_free. */
struct mime_part *mime_parse(const unsigned char *data, size_t len);

/* mime_part_free: free a tree returned by mime_parse or mime_deserialize
 * and set *part to NULL. NULL is fine. */
void mime_part_free(struct mime_part **part);

/* mime_serialize: append the tree to out in a compact, versioned binary
 * form (MIME_SERIAL_VERSION, then the parts depth first, every string and
 * number length-prefixed or varint-encoded). Returns 0, or -1 if out would
 * pass its maximum (out is then unchanged). The form is stable: indexes
 * keep it. */
int mime_serialize(const struct mime_part *part, struct buf *out);

/* mime_deserialize: rebuild a tree from exactly len bytes written by
 * mime_serialize. Every length, count and number is checked against what
 * is left, and the depth and part limits are enforced, so a corrupt or
 * hostile blob gives -1 (never a crash, never a huge allocation). Returns 0
 * with *part_r (free with mime_part_free) or -1. mime_serialize of the
 * result gives back the same bytes. */
int mime_deserialize(const unsigned char *blob, size_t len,
    struct mime_part **part_r);

/* mime_dump: append a canonical text form of the tree to out, one line per
 * part in depth-first order, for golden-file tests:
 *   PATH TYPE/SUBTYPE (PARAMS) enc=ENC [id=..] [desc=..] [md5=..]
 *       [disp=.. (PARAMS)] [lang=..] [loc=..] [env=..] hdr=OFF+PSIZE/VSIZE
 *       body=OFF+PSIZE/VSIZE lines=N
 * PATH is "root" for the root, then the 1-based index of each child down
 * the tree ("2.1": the first child of the second child of the root; for a
 * message/rfc822 part N the encapsulated message is N.1, so this is a tree
 * path, not an IMAP section number). PARAMS are name="value", or
 * name*charset="value" for RFC 2231 ones. Strings are quoted, with '"' and
 * '\' backslash-escaped and bytes outside 0x20-0x7e written as \xHH. */
void mime_dump(const struct mime_part *part, struct buf *out);

#endif
