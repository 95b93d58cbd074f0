/*
 * rate.c: tests of the per-connection command rate limit (lib/rate).
 */
#include "config.h"

#include <string.h>

#include "rate.h"
#include "tap.h"

static size_t
take(struct rate *r, unsigned limit, uint64_t now, const char *s,
    unsigned *wait_r)
{
	return rate_take(r, limit, now, (const unsigned char *)s, strlen(s),
	    wait_r);
}

int
main(void)
{
	struct rate r;
	unsigned wait;

	memset(&r, 0, sizeof(r));
	is_int(take(&r, 0, 5, "A\nB\nC\n", &wait), 6, "limit 0: all pass");
	is_int(wait, 0, "limit 0: no wait");

	memset(&r, 0, sizeof(r));
	is_int(take(&r, 3, 1000, "A\nB\nC\n", &wait), 6,
	    "3 lines at limit 3 pass");
	is_int(wait, 0, "no wait at the limit");
	is_int(take(&r, 3, 1200, "D\nE\n", &wait), 0,
	    "the 4th line in the same second waits");
	is_int(wait, 800, "until the window ends");
	is_int(take(&r, 3, 1200, "partial", &wait), 7,
	    "bytes without a line end pass");
	is_int(take(&r, 3, 2000, "D\nE\nF\nG\nH", &wait), 6,
	    "next window: 3 lines pass, up to the last allowed LF");
	is_int(wait, 1000, "a full window to wait");

	memset(&r, 0, sizeof(r));
	is_int(take(&r, 1, 5000, "one\ntwo\n", &wait), 4, "limit 1");
	is_int(take(&r, 1, 10, "two\n", &wait), 4,
	    "a clock going back starts a new window");
	return done_testing();
}
