/*
 * buf.c: bounded growable buffers.
 */
#include "config.h"
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "buf.h"
#include "xmalloc.h"

void
buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	/* Keep cap * 2 and cap + 1 (the spare NUL) from overflowing. */
	b->max = max > SIZE_MAX / 4 ? SIZE_MAX / 4 : max;
}

void
buf_free(struct buf *b)
{
	free(b->data);
	buf_init(b, b->max);
}

int
buf_reserve(struct buf *b, size_t len)
{
	size_t need, cap;

	if (len > b->max || b->len > b->max - len)
		return -1;
	need = b->len + len;
	if (need <= b->cap && b->data != NULL)
		return 0;
	cap = b->cap < 64 ? 64 : b->cap;
	while (cap < need)
		cap = cap > b->max / 2 ? b->max : cap * 2;
	if (cap > b->max)
		cap = b->max;
	b->data = xrealloc(b->data, cap + 1);
	b->cap = cap;
	b->data[b->len] = '\0';
	return 0;
}

int
buf_append(struct buf *b, const void *p, size_t len)
{
	if (buf_reserve(b, len) < 0)
		return -1;
	if (len > 0)
		memcpy(b->data + b->len, p, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

int
buf_append_str(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int
buf_append_byte(struct buf *b, unsigned char c)
{
	return buf_append(b, &c, 1);
}

int
buf_append_uint(struct buf *b, unsigned long long v)
{
	char d[20];
	size_t n = sizeof(d);

	do {
		d[--n] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return buf_append(b, d + n, sizeof(d) - n);
}

int
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(b, (size_t)n) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void
buf_truncate(struct buf *b, size_t len)
{
	if (len < b->len) {
		b->len = len;
		b->data[len] = '\0';
	}
}

const char *
buf_cstr(struct buf *b)
{
	if (b->data == NULL)
		return "";
	return (const char *)b->data;
}

unsigned char *
buf_steal(struct buf *b, size_t *len_r)
{
	unsigned char *p = b->data;

	if (len_r != NULL)
		*len_r = b->len;
	if (p == NULL)
		p = xcalloc(1, 1);
	buf_init(b, b->max);
	return p;
}
