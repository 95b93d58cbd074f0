/*
 * lock_hold: test helper for t/mbox_lock_procmail.t. Takes loft's lock on
 * an mbox exactly as delivery does (lib/lock.c), and then, if it got it,
 * waits for a line on standard input before appending a message (lib/mbox.c)
 * and releasing, so that the test decides when each step happens.
 *
 *	lock_hold MBOX METHODS ATTEMPTS DELAY_MS [MESSAGE-FILE]
 *
 * METHODS is a comma-separated list ("fcntl,dotlock"). Prints "locked",
 * then "released" (or "timeout: ..." / "error: ...") on standard output.
 * Exit status 0 after a release, 2 on LOCK_TIMEOUT, 1 on any error.
 * Trusts its arguments: it is only run by the test suite.
 */
#include "config.h"
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "lock.h"
#include "mbox.h"

#define HOLD_MSG_MAX	(1024 * 1024)

static int
hold_parse_methods(char *list, unsigned *methods_r, const char **error_r)
{
	char *items[8], *save = NULL, *p;
	size_t n = 0;

	for (p = strtok_r(list, ", ", &save); p != NULL && n < 7;
	    p = strtok_r(NULL, ", ", &save))
		items[n++] = p;
	items[n] = NULL;
	return lock_methods_parse(items, methods_r, error_r);
}

static int
hold_append(int fd, const char *file, const char **error_r)
{
	static unsigned char msg[HOLD_MSG_MAX];
	uint64_t from_off, data_off, data_len;
	ssize_t n;
	int mfd;

	if ((mfd = open(file, O_RDONLY)) < 0 ||
	    (n = read(mfd, msg, sizeof(msg))) < 0) {
		*error_r = strerror(errno);
		return -1;
	}
	close(mfd);
	return mbox_append(fd, "helper@example.org", time(NULL), msg,
	    (size_t)n, true, &from_off, &data_off, &data_len, error_r);
}

int
main(int argc, char **argv)
{
	struct lock_opts o;
	struct lock_mbox *lk;
	const char *error;
	char line[64];
	int fd, ret;

	if (argc < 5 || argc > 6) {
		fprintf(stderr, "usage: lock_hold MBOX METHODS ATTEMPTS "
		    "DELAY_MS [MESSAGE-FILE]\n");
		return 1;
	}
	memset(&o, 0, sizeof(o));
	o.attempts = (unsigned)strtoul(argv[3], NULL, 10);
	o.delay_ms = (unsigned)strtoul(argv[4], NULL, 10);
	o.stale_secs = LOCK_DEF_STALE_SECS;
	if (hold_parse_methods(argv[2], &o.methods, &error) < 0) {
		printf("error: %s\n", error);
		return 1;
	}
	if ((fd = open(argv[1], O_RDWR | O_CREAT | O_APPEND, 0600)) < 0) {
		printf("error: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	ret = lock_mbox_acquire(fd, argv[1], &o, &lk, &error);
	if (ret != 0) {
		printf("%s: %s\n", ret == LOCK_TIMEOUT ? "timeout" : "error",
		    error);
		return ret == LOCK_TIMEOUT ? 2 : 1;
	}
	printf("locked\n");
	fflush(stdout);
	if (fgets(line, sizeof(line), stdin) == NULL)
		line[0] = '\0';
	if (argc == 6 && hold_append(fd, argv[5], &error) < 0) {
		printf("error: %s\n", error);
		lock_mbox_release(&lk);
		return 1;
	}
	lock_mbox_release(&lk);
	printf("released\n");
	return 0;
}
