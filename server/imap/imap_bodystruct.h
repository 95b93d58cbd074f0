/*
 * imap_bodystruct.h: FETCH BODY and BODYSTRUCTURE (RFC 3501 section
 * 7.4.2, RFC 9051 section 7.5.2) from the MIME tree of lib/mime.h, which
 * the index keeps serialized, so neither opens the message.
 *
 * What is written, per part (the tree's strings are lowercased where MIME
 * is case-insensitive, and are written that way, as Dovecot does):
 *  - multipart with at least one part:
 *      "(" 1*body SP subtype [SP params SP dsp SP lang SP loc] ")"
 *    (the bracketed extension data in BODYSTRUCTURE only; params include
 *    the boundary);
 *  - message/rfc822 with its encapsulated message (and message/global
 *    when the writer has IMAP_WRITE_REV2, whose grammar has it; IMAP4rev1
 *    gets message/global as a basic part, as Dovecot sends it):
 *      "(" type SP subtype SP params SP id SP desc SP enc SP octets SP
 *          envelope SP body SP lines [SP md5 SP dsp SP lang SP loc] ")"
 *    with the envelope from the encapsulated message's envelope fields
 *    (mime_part.envelope; all NIL if it has none);
 *  - text/<any>: as a basic part followed by SP lines;
 *  - anything else: "(" type SP subtype SP params SP id SP desc SP enc SP
 *    octets [SP md5 SP dsp SP lang SP loc] ")".
 * octets is the body's size with CRLF line ends (body_vsize), lines is
 * body_lines. A multipart without parts, a message/rfc822 without its
 * child (a hand-made or damaged tree; mime_parse never makes one) and a
 * multipart or message on level MIME_MAX_DEPTH (the root is level 1;
 * mime_parse never puts a container there) are written with one empty
 * text/plain part (and an all-NIL envelope) in place of their content,
 * as Dovecot does: the output always parses as its type says, and the
 * recursion is bounded whatever tree is passed.
 *
 * Fields:
 *  - params: "(" name SP value *(SP name SP value) ")" or NIL. A text part
 *    without a charset parameter gets "charset" "us-ascii" after its
 *    parameters (the MIME default, RFC 2046 section 4.1.2; Dovecot does
 *    the same).
 *  - RFC 2231 parameters (mime_param.charset set) are written:
 *    . as name and value when the value is printable ASCII (0x20-0x7e):
 *      nothing is lost;
 *    . with IMAP_WRITE_UTF8, as name and decoded UTF-8 value, as
 *      IMAP4rev2 and UTF8=ACCEPT clients expect, when the charset is
 *      utf-8, utf8 or us-ascii and the value is valid UTF-8, or when the
 *      charset is iso-8859-1 (or iso8859-1, latin1: converted here);
 *    . otherwise as "name*" and "charset''value" with the value
 *      percent-encoded (RFC 2231 section 4: every byte that is not an
 *      attribute-char becomes %XX), which is 7-bit, keeps the charset, and
 *      is what Dovecot sends; the language is not kept by mime.h, so it is
 *      empty. Other charsets are not converted: that needs iconv and its
 *      tables, and the encoded form loses nothing.
 *  - id, desc, md5, loc: the field text as mime.h keeps it (unfolded,
 *    encoded words not decoded), or NIL.
 *  - enc: the Content-Transfer-Encoding token, "7bit" by default.
 *  - dsp: "(" type SP params ")" or NIL.
 *  - lang: Content-Language split at commas and white space (comments
 *    dropped): NIL if empty, one string, or a list of several.
 */
#ifndef LOFT_IMAP_BODYSTRUCT_H
#define LOFT_IMAP_BODYSTRUCT_H

#include <stdbool.h>
#include <stddef.h>
#include "mime.h"
#include "server/imap/imap_write.h"

/* imap_bodystruct_write: append BODYSTRUCTURE (ext true) or BODY (ext
 * false) of the tree rooted at part: the root of a message gives the
 * message's structure. Returns 0, or -1 if the writer failed
 * (imap_write.h). */
int imap_bodystruct_write(struct imap_write *w, const struct mime_part *part,
    bool ext);

/* imap_bodystruct_write_blob: the same from a tree serialized by
 * mime_serialize (mindex_msg.mime). Returns 0; or -1 with *error_r (static
 * text): the blob is corrupt (nothing written: the caller can parse the
 * message instead), or the writer failed. */
int imap_bodystruct_write_blob(struct imap_write *w,
    const unsigned char *blob, size_t len, bool ext, const char **error_r);

#endif
