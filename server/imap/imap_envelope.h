/*
 * imap_envelope.h: the IMAP ENVELOPE of a message (RFC 3501 section
 * 7.4.2, RFC 9051 section 7.5.2) from its raw header fields, so that FETCH
 * ENVELOPE is answered from the index (mindex_msg.headers for a message,
 * mime_part.envelope for a message/rfc822 inside one) without opening the
 * message.
 *
 *   ENVELOPE = "(" date SP subject SP from SP sender SP reply-to SP to SP
 *                  cc SP bcc SP in-reply-to SP message-id ")"
 *
 * Fields (names in any case; the first of each name counts, the others
 * are ignored):
 *  - Date, Subject, In-Reply-To, Message-ID: the unfolded value
 *    (msg_header_value: leading white space dropped, the rest as it is),
 *    as a string; NIL when the field is missing. Encoded words (RFC 2047)
 *    are passed through undecoded, as RFC 3501 requires; 8-bit text goes
 *    as a literal, or quoted if the writer is in UTF-8 mode and it is
 *    valid UTF-8.
 *  - From, Sender, Reply-To, To, Cc, Bcc: address lists, NIL when the
 *    field is missing or holds no address. Sender and Reply-To that are
 *    missing or hold no address are set to From (RFC 3501 7.4.2); a group,
 *    even an empty one, counts as an address there.
 *
 * Addresses (RFC 5322 section 3.4 and the obsolete forms of 4.4), each
 * written "(" name SP adl SP mailbox SP host ")":
 *  - name: the display name: its words joined by one space, quoted
 *    strings unquoted (backslash escapes resolved), encoded words kept as
 *    they are; NIL if there is none. Comments are dropped, never used as
 *    a name.
 *  - adl: the obsolete source route of an angle address ("@a,@b"), NIL if
 *    none.
 *  - mailbox: the local part without white space or comments, quoted
 *    strings unquoted (as Dovecot and UW-IMAP give it; the client quotes
 *    it again when it must); "MISSING_MAILBOX" if it is empty.
 *  - host: the domain as written without white space or comments (domain
 *    literals keep their brackets); "MISSING_DOMAIN" if there is no '@' or
 *    nothing after it. It is never NIL for a mailbox, because a NIL host
 *    means group syntax. (The placeholders are Dovecot's.)
 *  - group "name: a, b;" gives (NIL NIL "name" NIL), the members, then
 *    (NIL NIL NIL NIL); a group left open at the end of the field is closed
 *    there; an empty group name is "" (never NIL, which would end it).
 *  - Empty list elements (",,") are skipped. A word without '@' or '<'
 *    ("root") is a mailbox with MISSING_DOMAIN; several words without
 *    either ("Undisclosed recipients") are a name with MISSING_MAILBOX.
 *  - Malformed input is never an error: unterminated quotes, comments,
 *    angle brackets and domain literals run to the end of the field;
 *    stray ')' are dropped; a ':' inside a group separates members like a
 *    ','; a ';' outside a group too. Whatever comes in, the output is
 *    well-formed IMAP.
 *
 * Input is trusted for nothing; the work is linear in its size.
 */
#ifndef LOFT_IMAP_ENVELOPE_H
#define LOFT_IMAP_ENVELOPE_H

#include <stddef.h>
#include "server/imap/imap_write.h"

/* imap_envelope_write: append the ENVELOPE list built from hdr[0..len):
 * raw header fields (msg_header_cb's raw) one after the other, as
 * msg_info.headers, mindex_msg.headers and mime_part.envelope hold them,
 * or a whole message or header block (the walk stops at the first empty
 * line). hdr may be NULL when len is 0 (every field NIL). Returns 0, or -1
 * if the writer failed (imap_write.h). Cached headers can lack a field
 * that was too long (MINDEX_C_HEADERS_PARTIAL); the caller then passes the
 * message's own header instead. */
int imap_envelope_write(struct imap_write *w, const unsigned char *hdr,
    size_t len);

/* imap_envelope_write_addresses: append the address list of one unfolded
 * field value (what follows "To:", as msg_header_value gives it):
 * "(" 1*address ")", or NIL if it holds no address. Returns 0 or -1 as
 * above. */
int imap_envelope_write_addresses(struct imap_write *w,
    const unsigned char *value, size_t len);

/* imap_envelope_first_address: the first address (not a group marker)
 * of one unfolded address field value, parsed as for ENVELOPE: its
 * display name (nothing appended if it has none; encoded words kept),
 * local part and domain appended to name, mailbox and host. 1 found, 0
 * none. For SORT's FROM, TO, CC and DISPLAYFROM (RFC 5256, RFC 5957). */
struct buf;
int imap_envelope_first_address(const unsigned char *value, size_t len,
    struct buf *name, struct buf *mailbox, struct buf *host);

#endif
