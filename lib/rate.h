/*
 * rate.h: the command rate limit of one client connection
 * (command_rate_limit): at most limit lines per second pass; the rest
 * wait in the connection's bounded input buffer, so a client that floods
 * commands slows itself down instead of the process.
 */
#ifndef LOFT_LOFTD_RATE_H
#define LOFT_LOFTD_RATE_H

#include <stddef.h>
#include <stdint.h>

struct rate {
	uint64_t window_ms;	/* start of the current one-second window */
	unsigned lines;		/* lines passed in it */
};

/*
 * rate_take: how many of the len bytes at data may pass now, at now_ms
 * (monotonic): all of them when limit is 0 or they hold fewer line ends
 * than the window has left, else up to and including the last LF the
 * window allows. The lines passed are counted. When fewer than len bytes
 * may pass, *wait_ms_r says how long until the next window (else 0).
 */
size_t rate_take(struct rate *r, unsigned limit, uint64_t now_ms,
    const unsigned char *data, size_t len, unsigned *wait_ms_r);

#endif
