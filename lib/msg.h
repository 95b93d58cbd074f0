/*
 * msg.h: RFC 5322 messages at the header level: header fields, unfolding,
 * dates, sizes, and msg_parse(), which computes everything the index keeps
 * about a message (sizes, date, fingerprint, cached header lines and the
 * serialized MIME tree of mime.h) in one call.
 *
 * Input is always a whole message in memory, data + len, which may hold NUL
 * bytes, bare CR, mixed CRLF/LF and 8-bit bytes anywhere. Nothing here
 * fails on bad input; out of memory is fatal (xmalloc.h).
 *
 * Lines end at LF; a CR only counts as part of a line ending when it comes
 * right before the LF. Sizes come in two flavours: physical (bytes in data)
 * and virtual (as IMAP counts them: every LF not preceded by CR counts 2,
 * which is the size the message would have with CRLF line endings).
 */
#ifndef LOFT_MSG_H
#define LOFT_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "buf.h"

/* A header field longer than this (raw bytes: name, colon, value, folded
 * lines and line ending) is not put in msg_info.headers. */
#define MSG_CACHE_FIELD_MAX	8192
/* msg_info.headers never grows past this; fields that would are left out. */
#define MSG_CACHE_MAX		65536
/* Only the first this many bytes of the Date: and Message-ID: values are
 * looked at (a longer value is garbage; its prefix is still hashed). */
#define MSG_VALUE_MAX		1024

/* msg_header_cb: one header field. name is not NUL-terminated and has no
 * trailing white space (obsolete "Name : value" syntax is accepted); raw is
 * the whole field including the name, colon, folded continuation lines and
 * the final line ending (the last field of a block without a separator may
 * lack one). Both point into the data given to msg_header_iter. Return 0 to
 * go on, anything else to stop the walk. */
typedef int msg_header_cb(const unsigned char *name, size_t name_len,
    const unsigned char *raw, size_t raw_len, void *ctx);

/* msg_header_iter: walk the header block starting at data[0] and call cb
 * for each field in order; stops at the first empty line (LF or CRLF alone).
 * A field name is one or more printable ASCII bytes other than ':', possibly
 * followed by spaces or tabs, then ':'. Lines that are not fields (no colon,
 * 8-bit or white space inside the name, "From " lines) are skipped with
 * their continuation lines, not fatal; so are continuation lines (starting
 * with SP or HT) at the start of the block. Never reads data[len] or beyond.
 * Returns 0 when the block was walked to its end, with *hdr_size_r (if not
 * NULL) = bytes of the header block including the empty separator line, or
 * all of data if there is none; returns cb's value when cb stopped the walk
 * (*hdr_size_r is then not set). */
int msg_header_iter(const unsigned char *data, size_t len, msg_header_cb *cb,
    void *ctx, size_t *hdr_size_r);

/* msg_header_value: append the unfolded value of a raw field (as given to a
 * msg_header_cb) to out: what follows the first colon, leading white space
 * dropped, each CRLF or LF followed by SP/HT dropped (the SP/HT is kept),
 * the trailing line ending dropped. Bare CR, NUL and 8-bit bytes are kept.
 * Returns 0, or -1 if out reached its maximum (it then holds the longest
 * prefix of the value that fits). */
int msg_header_value(const unsigned char *raw, size_t raw_len,
    struct buf *out);

/* msg_date_parse: an RFC 5322 date-time (the value of a Date: field) as
 * seconds since the epoch, or -1 if it cannot be understood. Tolerated:
 * missing day name, missing seconds, missing time (midnight), missing zone
 * (UTC), comments anywhere, two- and three-digit years (RFC 5322 4.3),
 * obsolete zone names (UT, GMT, EST...PDT; military and unknown names count
 * as +0000), full month and day names, "GMT+0100", "+01:00", AM/PM, dashes
 * ("1-Jan-2001"), asctime order ("Mon Jan  1 10:00:00 2001") and ISO 8601
 * ("2001-01-01 10:00:00"). Impossible dates (31 Feb, 25:00) give -1. A date
 * of exactly 1969-12-31 23:59:59 UTC is indistinguishable from failure. */
time_t msg_date_parse(const char *s);

/* msg_vsize: virtual size of data[0..len): len plus one for each LF that is
 * not preceded by a CR inside the range. */
uint64_t msg_vsize(const unsigned char *data, size_t len);

/* msg_hash64: XXH64 of data with seed: fast (several GB/s), not
 * cryptographic, the same on every platform and in every release (it is
 * stored in indexes). Chain calls by passing one result as the next seed. */
uint64_t msg_hash64(const unsigned char *data, size_t len, uint64_t seed);

struct msg_info {
	uint64_t psize;		/* bytes of the message */
	uint64_t vsize;		/* RFC822.SIZE */
	uint32_t lines;		/* lines of the whole message: LFs, plus one
				   if it ends with an unterminated line */
	time_t date;		/* Date: header, -1 if missing/unparseable */
	uint64_t fingerprint;	/* msg_hash64 of the body bytes (after the
				   header block), chained with the Message-ID
				   value (unfolded, trailing white space cut);
				   re-finds mbox messages whose headers
				   (Status:, X-Status:) a mail reader rewrote */
	struct buf headers;	/* owned: raw fields (msg_header_cb's raw) of
				   the top-level header whose names are in the
				   cached list, in message order */
	bool no_final_lf;	/* not empty, and the last byte is not LF */
	bool headers_partial;	/* a cached field was left out of headers
				   (over MSG_CACHE_FIELD_MAX, or the block would
				   pass MSG_CACHE_MAX): the reader must then go
				   to the message for HEADER.FIELDS */
	struct buf mime;	/* owned: serialized MIME tree (mime.h) */
};

/* msg_cache_field: whether a header field name (any case) is one that
 * msg_parse caches: Date, Subject, From, Sender, Reply-To, To, Cc, Bcc,
 * In-Reply-To, Message-ID, References, Content-Type,
 * Content-Transfer-Encoding, MIME-Version, Priority, X-Priority, Importance,
 * Newsgroups, List-Id, List-Post, List-Unsubscribe,
 * Disposition-Notification-To, Return-Path, Delivered-To. */
bool msg_cache_field(const unsigned char *name, size_t name_len);

/* msg_envelope_field: whether a header field name (any case) is one an IMAP
 * ENVELOPE is built from: Date, Subject, From, Sender, Reply-To, To, Cc,
 * Bcc, In-Reply-To, Message-ID. */
bool msg_envelope_field(const unsigned char *name, size_t name_len);

/* msg_parse: fill info from a whole message. Never fails on bad input (out
 * of memory is fatal). info need not be initialised; free it with
 * msg_info_free. */
void msg_parse(const unsigned char *data, size_t len, struct msg_info *info);
void msg_info_free(struct msg_info *info);

#endif
