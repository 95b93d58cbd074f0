/*
 * rate.c: per-connection command rate limiting (see rate.h). Counts LF
 * bytes; trusts nothing else about the data.
 */
#include "config.h"

#include <string.h>

#include "rate.h"

size_t
rate_take(struct rate *r, unsigned limit, uint64_t now_ms,
    const unsigned char *data, size_t len, unsigned *wait_ms_r)
{
	const unsigned char *p = data, *end = data + len, *lf;

	*wait_ms_r = 0;
	if (limit == 0)
		return len;
	if (now_ms < r->window_ms || now_ms - r->window_ms >= 1000) {
		r->window_ms = now_ms;
		r->lines = 0;
	}
	while (p < end && (lf = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		if (r->lines >= limit) {
			*wait_ms_r = (unsigned)(1000 - (now_ms - r->window_ms));
			return (size_t)(p - data);
		}
		r->lines++;
		p = lf + 1;
	}
	return len;
}
