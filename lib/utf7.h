/*
 * utf7.h: IMAP modified UTF-7 (RFC 3501 section 5.1.3), the form in which
 * IMAP carries mailbox names and Dovecot and Courier store Maildir++ folder
 * names on disk.
 *
 * Printable US-ASCII (0x20-0x7e) stands for itself, except '&', which is
 * written "&-". Every other character is written as UTF-16 in base64 with
 * ',' in place of '/', no padding, between '&' and '-'. The encoder always
 * produces the one canonical form; the decoder accepts only that form, so
 * that two different byte strings never name the same mailbox.
 */
#ifndef LOFT_UTF7_H
#define LOFT_UTF7_H

#include "buf.h"

/* utf7_encode: append the modified UTF-7 form of the NUL-terminated UTF-8
 * text utf8 to out. UTF-8 must be strict: no overlong forms, no surrogates
 * (U+D800-U+DFFF), nothing above U+10FFFF, no truncated sequences.
 * Returns 0, or -1 if utf8 is not valid UTF-8 or out's maximum would be
 * passed; on -1 out is left exactly as it was. */
int utf7_encode(const char *utf8, struct buf *out);

/* utf7_decode: append the UTF-8 form of the modified UTF-7 text mutf7 to
 * out. Returns 0, or -1 (out left as it was) for:
 *  - a byte outside 0x20-0x7e;
 *  - an unterminated shift ("&AOQ" with no '-');
 *  - a character outside the modified base64 alphabet inside a shift;
 *  - a non-canonical form: a shifted printable ASCII character ("&AGE-"
 *    for "a", "&ACY-" for "&"), two shifts in a row ("&AOQ-&APY-" where
 *    "&AOQA9g-" is the form), a superfluous base64 character or non-zero
 *    padding bits at the end of a shift;
 *  - a lone or reversed UTF-16 surrogate, or a shift ending after a high
 *    surrogate;
 *  - U+0000, which cannot be part of NUL-terminated text;
 *  - out's maximum being passed.
 * Control characters other than NUL (U+0001-U+001F, U+007F-U+009F) are
 * well-formed here; callers that refuse them check the result. */
int utf7_decode(const char *mutf7, struct buf *out);

#endif
