/*
 * buf.h: a growable byte buffer with a hard maximum fixed at creation
 * (Dovecot's buffer_create_dynamic_max()). A spare NUL is always kept past
 * the end so buf_cstr() is safe, but data may itself hold NUL bytes: use
 * data and len for message content.
 */
#ifndef LOFT_BUF_H
#define LOFT_BUF_H

#include <stddef.h>

struct buf {
	unsigned char *data;	/* owned; NULL until the first append */
	size_t len;
	size_t cap;		/* allocated, excluding the spare NUL */
	size_t max;		/* appends that would pass it fail */
};

/* buf_init: an empty buffer that will never hold more than max bytes. */
void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
/* buf_append: 0, or -1 (buffer unchanged) if len would exceed max. */
int buf_append(struct buf *b, const void *p, size_t len);
int buf_append_str(struct buf *b, const char *s);
int buf_append_byte(struct buf *b, unsigned char c);
int buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* buf_append_uint: v in decimal; what buf_printf("%llu") gives, without
 * its two formatting passes (protocol writers append millions). */
int buf_append_uint(struct buf *b, unsigned long long v);
/* buf_reserve: make room for len more bytes; 0 or -1 past max. */
int buf_reserve(struct buf *b, size_t len);
void buf_truncate(struct buf *b, size_t len);
/* buf_cstr: the contents as a NUL-terminated string (never NULL). */
const char *buf_cstr(struct buf *b);
/* buf_steal: hand the data to the caller (who frees it); b is emptied. */
unsigned char *buf_steal(struct buf *b, size_t *len_r);

#endif
