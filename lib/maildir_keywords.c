/*
 * maildir_keywords.c: Dovecot's "dovecot-keywords" file, the map from the
 * keyword letters a-z of one Maildir folder's file names to IMAP keyword
 * names ("0 $Junk" names the letter 'a'). loft reads and writes it as
 * Dovecot does, so a keyword one of them sets is seen by the other.
 *
 * SECURITY: the file may have been written by Dovecot, by loft or by the
 * user: it is untrusted. At most MAILDIR_KEYWORDS_FILE_MAX bytes of it
 * are read, and a line that is not exactly "N NAME" (N 0..25, NAME of
 * printable ASCII without spaces, bounded) is skipped. The directory
 * argument is trusted (the store made it from the configuration and a
 * checked folder name). Runs as the mailbox owner.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "compat/compat.h"
#include "fsutil.h"
#include "maildir.h"
#include "xmalloc.h"

#define MAILDIR_KW_ERR_SIZE 1024

static char maildir_kw_errbuf[MAILDIR_KW_ERR_SIZE];

static const char * __attribute__((format(printf, 1, 2)))
maildir_kw_err(const char *fmt, ...)
{
	va_list ap;
	int saved_errno = errno;

	va_start(ap, fmt);
	vsnprintf(maildir_kw_errbuf, sizeof(maildir_kw_errbuf), fmt, ap);
	va_end(ap);
	errno = saved_errno;
	return maildir_kw_errbuf;
}

void
maildir_keywords_free(struct maildir_keywords *kw)
{
	for (size_t i = 0; i < MAILDIR_KEYWORDS_MAX; i++) {
		free(kw->name[i]);
		kw->name[i] = NULL;
	}
}

/* A name the file can hold: 1..MAILDIR_KEYWORD_NAME_MAX bytes of
 * 0x21..0x7e (a space would end it, a line end split the line). */
static bool
maildir_kw_name_ok(const char *name, size_t len)
{
	if (len == 0 || len > MAILDIR_KEYWORD_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)name[i] <= 0x20 ||
		    (unsigned char)name[i] >= 0x7f)
			return false;
	return true;
}

/* One line (without its '\n'): "N NAME" into kw, or nothing. */
static void
maildir_kw_line(struct maildir_keywords *kw, const char *line, size_t len)
{
	size_t i = 0;
	unsigned n = 0;

	/* One or two digits, no leading zero unless it is "0". */
	while (i < len && i < 3 && line[i] >= '0' && line[i] <= '9')
		n = n * 10 + (unsigned)(line[i++] - '0');
	if (i == 0 || i > 2 || (i == 2 && line[0] == '0') ||
	    n >= MAILDIR_KEYWORDS_MAX || i >= len || line[i] != ' ')
		return;
	i++;
	if (!maildir_kw_name_ok(line + i, len - i))
		return;
	free(kw->name[n]);
	kw->name[n] = xstrndup(line + i, len - i);
}

static void
maildir_kw_parse(struct maildir_keywords *kw, const char *data, size_t len,
    bool whole)
{
	const char *p = data, *end = data + len, *nl;

	while (p < end) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL) {
			/* A last line without '\n' counts only if the file
			 * ended there, not where the read limit cut it. */
			if (whole)
				maildir_kw_line(kw, p, (size_t)(end - p));
			return;
		}
		maildir_kw_line(kw, p, (size_t)(nl - p));
		p = nl + 1;
	}
}

int
maildir_keywords_read(const char *dir, struct maildir_keywords *kw,
    const char **error_r)
{
	char path[PATH_MAX], *data;
	size_t got = 0;
	struct stat sb;
	ssize_t n;
	int fd;

	memset(kw, 0, sizeof(*kw));
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
	    MAILDIR_KEYWORDS_FILE) >= sizeof(path)) {
		errno = ENAMETOOLONG;
		*error_r = maildir_kw_err("path too long: %s", dir);
		return -1;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
		if (errno == ENOENT)
			return 0;
		*error_r = maildir_kw_err("open %s: %s", path,
		    strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) < 0) {
		*error_r = maildir_kw_err("fstat %s: %s", path,
		    strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(sb.st_mode)) {
		close(fd);
		errno = EINVAL;
		*error_r = maildir_kw_err("%s: not a regular file", path);
		return -1;
	}
	/* One byte more than the limit tells whether the file ends there. */
	data = xmalloc(MAILDIR_KEYWORDS_FILE_MAX + 1);
	while (got <= MAILDIR_KEYWORDS_FILE_MAX && (n = read(fd, data + got,
	    MAILDIR_KEYWORDS_FILE_MAX + 1 - got)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			*error_r = maildir_kw_err("read %s: %s", path,
			    strerror(errno));
			free(data);
			close(fd);
			return -1;
		}
		got += (size_t)n;
	}
	close(fd);
	if (got > MAILDIR_KEYWORDS_FILE_MAX)
		maildir_kw_parse(kw, data, MAILDIR_KEYWORDS_FILE_MAX, false);
	else
		maildir_kw_parse(kw, data, got, true);
	free(data);
	return 0;
}

int
maildir_keywords_lookup(const struct maildir_keywords *kw, const char *name)
{
	for (int i = 0; i < MAILDIR_KEYWORDS_MAX; i++)
		if (kw->name[i] != NULL && strcasecmp(kw->name[i], name) == 0)
			return i;
	return -1;
}

int
maildir_keywords_assign(struct maildir_keywords *kw, const char *name,
    bool *added_r)
{
	int i;

	*added_r = false;
	if ((i = maildir_keywords_lookup(kw, name)) >= 0)
		return i;
	if (!maildir_kw_name_ok(name, strlen(name)))
		return -1;
	for (i = 0; i < MAILDIR_KEYWORDS_MAX; i++)
		if (kw->name[i] == NULL) {
			kw->name[i] = xstrdup(name);
			*added_r = true;
			return i;
		}
	return -1;
}

/* The mtime the new file gets: now, but above the old file's, in whole
 * seconds, since Dovecot notices a change by the seconds of the mtime. */
static time_t
maildir_kw_mtime(const char *path)
{
	struct stat sb;
	time_t now = time(NULL);

	if (stat(path, &sb) == 0 && sb.st_mtime >= now)
		return sb.st_mtime + 1;
	return now;
}

static int
maildir_kw_write_fd(int fd, const struct buf *b, time_t mtime, bool do_fsync)
{
	struct timespec ts[2];
	size_t off = 0;
	ssize_t n;

	while (off < b->len) {
		if ((n = write(fd, b->data + off, b->len - off)) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		off += (size_t)n;
	}
	ts[0].tv_sec = mtime;
	ts[0].tv_nsec = 0;
	ts[1] = ts[0];
	if (futimens(fd, ts) < 0)
		return -1;
	return do_fsync ? fsync(fd) : 0;
}

int
maildir_keywords_write(const char *dir, const struct maildir_keywords *kw,
    bool do_fsync, const char **error_r)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	struct buf b;
	int fd, ret;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
	    MAILDIR_KEYWORDS_FILE) >= sizeof(path) ||
	    (size_t)snprintf(tmp, sizeof(tmp), "%s.loft.%ld", path,
	    (long)getpid()) >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		*error_r = maildir_kw_err("path too long: %s", dir);
		return -1;
	}
	/* 26 lines of at most 2 + 1 + MAILDIR_KEYWORD_NAME_MAX + 1 bytes. */
	buf_init(&b, MAILDIR_KEYWORDS_MAX * (MAILDIR_KEYWORD_NAME_MAX + 4));
	for (int i = 0; i < MAILDIR_KEYWORDS_MAX; i++) {
		if (kw->name[i] == NULL)
			continue;
		/* A name Dovecot could not read back is never written. */
		if (!maildir_kw_name_ok(kw->name[i], strlen(kw->name[i])) ||
		    buf_printf(&b, "%d %s\n", i, kw->name[i]) < 0) {
			buf_free(&b);
			errno = EINVAL;
			*error_r = maildir_kw_err("keyword %d cannot be "
			    "written", i);
			return -1;
		}
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0) {
		*error_r = maildir_kw_err("create %s: %s", tmp,
		    strerror(errno));
		buf_free(&b);
		return -1;
	}
	ret = maildir_kw_write_fd(fd, &b, maildir_kw_mtime(path), do_fsync);
	buf_free(&b);
	if (close(fd) < 0)
		ret = -1;
	if (ret < 0 || rename(tmp, path) < 0) {
		*error_r = maildir_kw_err("write %s: %s", path,
		    strerror(errno));
		(void)unlink(tmp);
		return -1;
	}
	if (do_fsync && fsutil_fsync_dir(dir) < 0) {
		*error_r = maildir_kw_err("fsync %s: %s", dir,
		    strerror(errno));
		return -1;
	}
	return 0;
}

int
maildir_keywords_lock(const char *dir, const char **error_r)
{
	char path[PATH_MAX], host[256], line[320];
	struct timespec pause = { 0,
	    MAILDIR_KEYWORDS_LOCK_SLEEP_MS * 1000L * 1000L };
	struct stat sb;
	int fd, n;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
	    MAILDIR_KEYWORDS_LOCK) >= sizeof(path)) {
		errno = ENAMETOOLONG;
		*error_r = maildir_kw_err("path too long: %s", dir);
		return -1;
	}
	if (gethostname(host, sizeof(host)) < 0)
		strlcpy(host, "localhost", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	for (int i = 0; i < MAILDIR_KEYWORDS_LOCK_TRIES; i++) {
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
		    O_NOFOLLOW, 0600);
		if (fd >= 0) {
			/* Dovecot reads "PID:HOST" to see a dead holder. */
			n = snprintf(line, sizeof(line), "%ld:%s",
			    (long)getpid(), host);
			if (n < 0 || write(fd, line, (size_t)n) != n) {
				*error_r = maildir_kw_err("write %s: %s", path,
				    strerror(errno));
				close(fd);
				(void)unlink(path);
				return -1;
			}
			close(fd);
			return 1;
		}
		if (errno != EEXIST) {
			*error_r = maildir_kw_err("create %s: %s", path,
			    strerror(errno));
			return -1;
		}
		if (lstat(path, &sb) == 0 &&
		    sb.st_mtime < time(NULL) - MAILDIR_KEYWORDS_LOCK_STALE) {
			(void)unlink(path);	/* left by a dead holder */
			continue;
		}
		(void)nanosleep(&pause, NULL);
	}
	*error_r = maildir_kw_err("%s is held by another process", path);
	return 0;
}

void
maildir_keywords_unlock(const char *dir)
{
	char path[PATH_MAX];

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
	    MAILDIR_KEYWORDS_LOCK) < sizeof(path))
		(void)unlink(path);
}
