/*
 * log.c: maillog output to syslog, a file or standard error.
 * Trusts its callers' format strings; escapes nothing by itself (callers use
 * log_escape() for text from outside).
 */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include "compat/compat.h"
#include "log.h"

#define LOG_LINE_MAX 4096
#define LOG_WRITE_MAX PIPE_BUF

static char log_ident_buf[64] = "loft";
static int log_facility = LOG_MAIL;
static enum log_dest log_dest = LOG_DEST_STDERR;
static int log_fd = -1;
static int log_fatal_exit = 1;

void
log_open(const char *ident, enum log_dest dest)
{
	strlcpy(log_ident_buf, ident, sizeof(log_ident_buf));
	log_dest = dest;
	if (dest == LOG_DEST_SYSLOG)
		openlog(log_ident_buf, LOG_PID | LOG_NDELAY, log_facility);
}

int
log_set_syslog(const char *name, const char *program, const char *facility)
{
	static const struct {
		const char *name;
		int value;
	} facilities[] = {
		{ "mail", LOG_MAIL }, { "user", LOG_USER },
		{ "auth", LOG_AUTH }, { "authpriv", LOG_AUTHPRIV },
		{ "daemon", LOG_DAEMON }, { "local0", LOG_LOCAL0 },
		{ "local1", LOG_LOCAL1 }, { "local2", LOG_LOCAL2 },
		{ "local3", LOG_LOCAL3 }, { "local4", LOG_LOCAL4 },
		{ "local5", LOG_LOCAL5 }, { "local6", LOG_LOCAL6 },
		{ "local7", LOG_LOCAL7 },
	};
	char ident[sizeof(log_ident_buf)];

	for (size_t i = 0; i < sizeof(facilities) / sizeof(facilities[0]);
	    i++) {
		if (strcmp(facility, facilities[i].name) != 0)
			continue;
		snprintf(ident, sizeof(ident), "%s/%s", name, program);
		log_facility = facilities[i].value;
		closelog();
		log_open(ident, LOG_DEST_SYSLOG);
		return 0;
	}
	return -1;
}

int
log_set_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

	if (fd < 0) {
		log_warning("cannot open maillog_file %s: %s", path,
		    strerror(errno));
		return -1;
	}
	if (log_fd >= 0)
		close(log_fd);
	log_fd = fd;
	log_dest = LOG_DEST_FILE;
	return 0;
}

void
log_set_fd(int fd)
{
	if (log_fd >= 0 && log_fd != fd)
		close(log_fd);
	log_fd = fd;
	log_dest = LOG_DEST_FILE;
}

int
log_file_fd(void)
{
	return log_dest == LOG_DEST_FILE ? log_fd : -1;
}

void
log_set_fatal_status(int status)
{
	log_fatal_exit = status;
}

const char *
log_ident(void)
{
	return log_ident_buf;
}

/*
 * Write one formatted line of n bytes (snprintf's count) from line[size]:
 * cut to at most LOG_WRITE_MAX bytes, always ending in a newline. One
 * write per line, no loop on a short write: a line written in pieces could
 * interleave with another process's. LOG_WRITE_MAX is PIPE_BUF because
 * loftd's processes log into a pipe that the master empties into the
 * file, and only writes up to PIPE_BUF are atomic on a pipe.
 */
static void
log_write_line(int fd, char *line, size_t size, int n)
{
	size_t len;

	if (n <= 0)
		return;
	len = (size_t)n < size ? (size_t)n : size - 1;
	if (len > LOG_WRITE_MAX)
		len = LOG_WRITE_MAX;
	line[len - 1] = '\n';
	if (write(fd, line, len) < 0)
		return;
}

static void
log_vemit(int prio, const char *label, const char *fmt, va_list ap)
{
	char msg[LOG_LINE_MAX], line[LOG_LINE_MAX + 256];
	int n, saved_errno = errno;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	switch (log_dest) {
	case LOG_DEST_SYSLOG:
		syslog(prio, "%s%s", label, msg);
		break;
	case LOG_DEST_FILE: {
		char stamp[64], host[256];
		time_t now = time(NULL);
		struct tm tm;

		localtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm);
		if (gethostname(host, sizeof(host)) < 0)
			strlcpy(host, "localhost", sizeof(host));
		host[sizeof(host) - 1] = '\0';
		n = snprintf(line, sizeof(line), "%s %s %s[%ld]: %s%s\n",
		    stamp, host, log_ident_buf, (long)getpid(), label, msg);
		log_write_line(log_fd, line, sizeof(line), n);
		break;
	}
	case LOG_DEST_STDERR:
		n = snprintf(line, sizeof(line), "%s: %s%s\n", log_ident_buf,
		    label, msg);
		log_write_line(STDERR_FILENO, line, sizeof(line), n);
		break;
	}
	errno = saved_errno;
}

#define LOG_DEFINE(fname, prio, label)				\
void								\
fname(const char *fmt, ...)					\
{								\
	va_list ap;						\
	va_start(ap, fmt);					\
	log_vemit(prio, label, fmt, ap);			\
	va_end(ap);						\
}

LOG_DEFINE(log_info, LOG_INFO, "")
LOG_DEFINE(log_warning, LOG_WARNING, "warning: ")
LOG_DEFINE(log_error, LOG_ERR, "error: ")

void
log_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_CRIT, "fatal: ", fmt, ap);
	va_end(ap);
	exit(log_fatal_exit);
}

void
log_fatal_status(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_CRIT, "fatal: ", fmt, ap);
	va_end(ap);
	exit(status);
}

void
log_panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_CRIT, "panic: ", fmt, ap);
	va_end(ap);
	abort();
}

char *
log_escape(const char *s, char *out, size_t outsize)
{
	size_t o = 0;

	if (outsize == 0)
		return out;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c >= 0x20 && c < 0x7f && c != '\\') {
			if (o + 1 >= outsize)
				break;
			out[o++] = (char)c;
		} else {
			if (o + 4 >= outsize)
				break;
			snprintf(out + o, 5, "\\%03o", c);
			o += 4;
		}
	}
	out[o] = '\0';
	return out;
}
