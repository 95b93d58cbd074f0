/*
 * mbox_rewrite.c: write a copy of a locked mbox without some byte ranges
 * into a temporary file beside it, fsync it, lock it, and rename it over
 * the mbox (see mbox_rewrite.h). Trusts its caller for the ranges (they
 * are checked against the map anyway) and the path; the file content is
 * copied, never parsed.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "compat/compat.h"
#include "fsutil.h"
#include "lock.h"
#include "log.h"
#include "mbox_rewrite.h"

static char mbox_rewrite_errbuf[PATH_MAX + 128];

static const char *
mbox_rewrite_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static const char *
mbox_rewrite_error(const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	va_start(ap, fmt);
	vsnprintf(mbox_rewrite_errbuf, sizeof(mbox_rewrite_errbuf), fmt, ap);
	va_end(ap);
	errno = saved;
	return mbox_rewrite_errbuf;
}

int
mbox_rewrite_temp_path(const char *path, char *out, size_t outsize)
{
	const char *slash = strrchr(path, '/');
	int dirlen = slash != NULL ? (int)(slash - path) : 1;
	const char *dir = slash != NULL ? path : ".";
	const char *base = slash != NULL ? slash + 1 : path;
	int n;

	if (slash == path)
		dirlen = 0;	/* "/mbox": the root directory */
	n = snprintf(out, outsize, "%.*s/.%s%s%ld", dirlen, dir, base,
	    MBOX_REWRITE_INFIX, (long)getpid());
	return n < 0 || (size_t)n >= outsize ? -1 : 0;
}

static bool
mbox_rewrite_ranges_ok(const struct mbox_rewrite_range *drop, size_t ndrop,
    size_t len)
{
	uint64_t end = 0;

	for (size_t i = 0; i < ndrop; i++) {
		if (drop[i].offset < end || drop[i].offset > len ||
		    drop[i].len > len - drop[i].offset)
			return false;
		end = drop[i].offset + drop[i].len;
	}
	return true;
}

static int
mbox_rewrite_write_all(int fd, const unsigned char *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len > (1u << 20) ? (1u << 20) : len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Everything of map outside the drop ranges, in order. */
static int
mbox_rewrite_copy(int out, const unsigned char *map, size_t len,
    const struct mbox_rewrite_range *drop, size_t ndrop)
{
	uint64_t pos = 0;

	for (size_t i = 0; i <= ndrop; i++) {
		uint64_t end = i < ndrop ? drop[i].offset : len;

		if (end > pos && mbox_rewrite_write_all(out, map + pos,
		    (size_t)(end - pos)) < 0)
			return -1;
		if (i < ndrop)
			pos = drop[i].offset + drop[i].len;
	}
	return 0;
}

/* Mode, owner and group of the old file; fchown only if they differ,
 * since an unprivileged owner may not be able to give any group. */
static int
mbox_rewrite_attrs(int fd, int out)
{
	struct stat old, now;

	if (fstat(fd, &old) < 0 || fstat(out, &now) < 0)
		return -1;
	if ((old.st_uid != now.st_uid || old.st_gid != now.st_gid) &&
	    fchown(out, old.st_uid, old.st_gid) < 0)
		return -1;
	return fchmod(out, old.st_mode & 07777);
}

/* The new file is locked before anybody can open it by name. */
static int
mbox_rewrite_lock(int out, unsigned lock_methods)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	if (fcntl(out, F_SETLK, &fl) < 0)
		return -1;
	if ((lock_methods & LOCK_M_FLOCK) != 0 &&
	    flock(out, LOCK_EX | LOCK_NB) < 0)
		return -1;
	return 0;
}

/* Create, fill, fsync and lock the temporary file; -1 leaves nothing. */
static int
mbox_rewrite_temp(int fd, const char *tmp, const unsigned char *map,
    size_t len, const struct mbox_rewrite_range *drop, size_t ndrop,
    unsigned lock_methods, bool do_fsync, const char **error_r)
{
	int out, saved;

	if (unlink(tmp) < 0 && errno != ENOENT) {
		*error_r = mbox_rewrite_error("cannot remove %s: %s", tmp,
		    strerror(errno));
		return -1;
	}
	out = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    0600);
	if (out < 0) {
		*error_r = mbox_rewrite_error("cannot create %s: %s", tmp,
		    strerror(errno));
		return -1;
	}
	if (mbox_rewrite_attrs(fd, out) < 0 ||
	    mbox_rewrite_copy(out, map, len, drop, ndrop) < 0 ||
	    (do_fsync && fsync(out) < 0) ||
	    mbox_rewrite_lock(out, lock_methods) < 0) {
		saved = errno;
		*error_r = mbox_rewrite_error("cannot write %s: %s", tmp,
		    strerror(errno));
		close(out);
		unlink(tmp);
		errno = saved;
		return -1;
	}
	return out;
}

int
mbox_rewrite(int fd, const char *path, const unsigned char *map,
    size_t len, const struct mbox_rewrite_range *drop, size_t ndrop,
    unsigned lock_methods, bool do_fsync, int *new_fd_r,
    const char **error_r)
{
	char tmp[PATH_MAX];
	int out, saved;

	*new_fd_r = -1;
	if (!mbox_rewrite_ranges_ok(drop, ndrop, len)) {
		errno = EINVAL;
		*error_r = "mbox_rewrite: bad ranges";
		return -1;
	}
	if (mbox_rewrite_temp_path(path, tmp, sizeof(tmp)) < 0) {
		errno = ENAMETOOLONG;
		*error_r = "mbox_rewrite: path too long";
		return -1;
	}
	out = mbox_rewrite_temp(fd, tmp, map, len, drop, ndrop, lock_methods,
	    do_fsync, error_r);
	if (out < 0)
		return -1;
	if (rename(tmp, path) < 0) {
		saved = errno;
		*error_r = mbox_rewrite_error("cannot rename %s to %s: %s",
		    tmp, path, strerror(errno));
		close(out);
		unlink(tmp);
		errno = saved;
		return -1;
	}
	if (do_fsync && fsutil_fsync_parent(path) < 0)
		log_warning("%s: cannot fsync its directory after a rewrite: %s",
		    path, strerror(errno));
	*new_fd_r = out;
	return 0;
}
