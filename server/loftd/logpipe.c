/*
 * logpipe.c: the master's end of the maillog (see logpipe.h).
 *
 * A child inherits the pipe's write end as LOFTD_FD_LOG and writes each
 * line with one write(2) of at most PIPE_BUF bytes (lib/log.c), which the
 * kernel keeps whole; the master, the only reader and the only writer of
 * the file, copies the bytes in the order they came. The write end blocks:
 * a child waits for the master rather than lose a line, and the pipe is
 * made large so that a burst does not make anyone wait.
 *
 * Trusts: its children, which write whole lines. Nothing from the network
 * reaches this file but as text the children have already escaped.
 */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "ioloop.h"
#include "log.h"
#include "logpipe.h"

/* The pipe's size when the system allows it (pipe-max-size is 1 MiB by
 * default): about 4,000 lines of 250 bytes before a writer waits. */
#define LOGPIPE_SIZE	(1024 * 1024)
#define LOGPIPE_CHUNK	(64 * 1024)

static int logpipe_fds[2] = { -1, -1 };
static struct io *logpipe_io;

int
logpipe_open(const char *path, const char **error_r)
{
	static char error[256];
	int fds[2];

	if (pipe2(fds, O_CLOEXEC) < 0) {
		snprintf(error, sizeof(error), "pipe: %s", strerror(errno));
		*error_r = error;
		return -1;
	}
	if (log_set_file(path) < 0) {
		snprintf(error, sizeof(error), "cannot open maillog_file %s",
		    path);
		close(fds[0]);
		close(fds[1]);
		*error_r = error;
		return -1;
	}
	(void)fcntl(fds[0], F_SETFL, O_NONBLOCK);
	(void)fcntl(fds[1], F_SETPIPE_SZ, LOGPIPE_SIZE);
	logpipe_fds[0] = fds[0];
	logpipe_fds[1] = fds[1];
	return 0;
}

int
logpipe_child_fd(void)
{
	return logpipe_fds[1];
}

/* Append len bytes to the file, whatever short writes it takes: the master
 * is the file's only writer, so no other line can come in between. */
static void
logpipe_append(const char *p, size_t len)
{
	int fd = log_file_fd();

	while (fd >= 0 && len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;	/* a full disk: the lines are lost */
		p += n;
		len -= (size_t)n;
	}
}

static void
logpipe_drain(void *ctx)
{
	char chunk[LOGPIPE_CHUNK];
	ssize_t n;

	(void)ctx;
	for (;;) {
		n = read(logpipe_fds[0], chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		logpipe_append(chunk, (size_t)n);
	}
}

void
logpipe_watch(struct ioloop *loop)
{
	if (logpipe_fds[0] >= 0)
		logpipe_io = io_add(loop, logpipe_fds[0], IO_READ,
		    logpipe_drain, NULL);
}

void
logpipe_reopen(const char *path)
{
	if (logpipe_fds[0] < 0 || path[0] == '\0')
		return;
	/* Lines already in the pipe were written before the signal: they
	 * belong to the old file. */
	logpipe_drain(NULL);
	if (log_set_file(path) == 0)
		log_info("maillog_file %s reopened", path);
}

void
logpipe_close(void)
{
	if (logpipe_fds[0] < 0)
		return;
	logpipe_drain(NULL);
	io_remove(&logpipe_io);
	close(logpipe_fds[0]);
	close(logpipe_fds[1]);
	logpipe_fds[0] = logpipe_fds[1] = -1;
}
