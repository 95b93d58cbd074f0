/*
 * lock.c: fcntl, flock and dotlock locks on an mbox, taken without ever
 * waiting on one while holding another (see lock.h).
 *
 * Trusts its caller for the path and the options (they come from the
 * configuration and the user database). Trusts nothing it finds on disk: a
 * dotlock is only ever created with O_EXCL and link(), and is removed at
 * release only if it is still the very file we linked.
 */
#include "config.h"
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <errno.h>
#include <signal.h>
#include <sys/time.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "lock.h"
#include "log.h"
#include "xmalloc.h"

#define LOCK_M_ALL	(LOCK_M_FCNTL | LOCK_M_DOTLOCK | LOCK_M_FLOCK)
#define LOCK_HOST_MAX	32	/* of the host name in temporary file names */

struct lock_mbox {
	int fd;			/* the caller's; never closed here */
	unsigned held;		/* LOCK_M_* bits held right now */
	char *dotlock;		/* owned: "PATH.lock", NULL without dotlock */
	struct stat dot_st;	/* of the dotlock we linked, for release */
	bool recovered;		/* we broke the dotlock of a dead loft */
	uint64_t recovered_size; /* the mbox size that process noted */
};

static char lock_error_buf[PATH_MAX + 256];

static const char * __attribute__((format(printf, 1, 2)))
lock_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(lock_error_buf, sizeof(lock_error_buf), fmt, ap);
	va_end(ap);
	return lock_error_buf;
}

static int
lock_fcntl_try(int fd, const char **error_r)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	if (fcntl(fd, F_SETLK, &fl) == 0)
		return 0;
	if (errno == EAGAIN || errno == EACCES || errno == EINTR)
		return LOCK_TIMEOUT;
	*error_r = lock_error("fcntl lock failed: %s", strerror(errno));
	return -1;
}

static volatile sig_atomic_t lock_alarm_fired;

static void
lock_alarm(int sig)
{
	(void)sig;
	lock_alarm_fired = 1;
}

/*
 * lock_fcntl_wait: wait up to ms for the fcntl lock. Waiting in the kernel
 * (F_SETLKW) rather than sleeping and polling matters under contention:
 * a poller that sleeps a second between tries can lose every round to
 * writers that happen to ask at the right moment. A timer without
 * SA_RESTART interrupts the wait; the old SIGALRM disposition and timer
 * are put back.
 */
static int
lock_fcntl_wait(int fd, unsigned ms, const char **error_r)
{
	struct sigaction sa, old_sa;
	struct itimerval it, old_it;
	struct flock fl;
	int ret, saved_errno;

	if (ms == 0)
		return lock_fcntl_try(fd, error_r);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = lock_alarm;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, &old_sa) < 0)
		return lock_fcntl_try(fd, error_r);
	memset(&it, 0, sizeof(it));
	it.it_value.tv_sec = ms / 1000;
	it.it_value.tv_usec = (long)(ms % 1000) * 1000;
	lock_alarm_fired = 0;
	setitimer(ITIMER_REAL, &it, &old_it);
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	ret = fcntl(fd, F_SETLKW, &fl);
	saved_errno = errno;
	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	sigaction(SIGALRM, &old_sa, NULL);
	if (ret == 0)
		return 0;
	/* EDEADLK: the kernel saw a cycle with another waiter; back off
	 * like any busy lock. */
	if (saved_errno == EINTR || saved_errno == EAGAIN ||
	    saved_errno == EACCES || saved_errno == EDEADLK)
		return LOCK_TIMEOUT;
	*error_r = lock_error("fcntl lock failed: %s", strerror(saved_errno));
	errno = saved_errno;
	return -1;
}

static void
lock_fcntl_drop(int fd)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_UNLCK;
	fl.l_whence = SEEK_SET;
	if (fcntl(fd, F_SETLK, &fl) < 0)
		log_warning("fcntl unlock failed: %s", strerror(errno));
}

static int
lock_flock_try(int fd, const char **error_r)
{
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return 0;
	if (errno == EWOULDBLOCK || errno == EINTR)
		return LOCK_TIMEOUT;
	*error_r = lock_error("flock failed: %s", strerror(errno));
	return -1;
}

static void
lock_flock_drop(int fd)
{
	if (flock(fd, LOCK_UN) < 0)
		log_warning("flock unlock failed: %s", strerror(errno));
}

/* The unique temporary name "PATH.lock.HOST.PID.RANDOM". 0, or -1 if it
 * does not fit. */
static int
lock_dotlock_tmpname(const char *dotlock, char *out, size_t outsize)
{
	char host[LOCK_HOST_MAX + 1];
	unsigned int rnd;
	size_t i;
	int n;

	if (gethostname(host, sizeof(host)) < 0)
		host[0] = '\0';
	host[sizeof(host) - 1] = '\0';
	for (i = 0; host[i] != '\0'; i++) {
		/* Keep the name one path component, whatever the host name. */
		if (host[i] == '/' || (unsigned char)host[i] < 0x21 ||
		    (unsigned char)host[i] > 0x7e)
			host[i] = '_';
	}
	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
		rnd = (unsigned int)time(NULL) ^ ((unsigned int)getpid() << 16);
	n = snprintf(out, outsize, "%s.%s.%ld.%08x", dotlock,
	    host[0] != '\0' ? host : "localhost", (long)getpid(), rnd);
	return n < 0 || (size_t)n >= outsize ? -1 : 0;
}

/* Create the temporary file, holding our pid like liblockfile's. 0, busy
 * (a name collision: try again next round) or -1. */
static int
lock_dotlock_mktemp(const struct lock_mbox *lk, const char *tmp,
    const char **error_r)
{
	char pid[128], host[LOCK_HOST_MAX + 1];
	struct stat st;
	ssize_t w;
	int fd, n, saved_errno;

	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    0644);
	if (fd < 0) {
		if (errno == EEXIST)
			return LOCK_TIMEOUT;
		if (errno == EACCES || errno == EPERM || errno == EROFS)
			*error_r = lock_error("cannot create dotlock %s: "
			    "directory not writable by uid %ld (%s)", tmp,
			    (long)geteuid(), strerror(errno));
		else
			*error_r = lock_error("cannot create dotlock %s: %s",
			    tmp, strerror(errno));
		return -1;
	}
	/* First line: our pid, as liblockfile writes it. Second: the size
	 * of the mbox now, before we write anything, so that whoever finds
	 * this lock left by a dead loft can cut off what it half-wrote. */
	if (gethostname(host, sizeof(host)) < 0)
		host[0] = '\0';
	host[sizeof(host) - 1] = '\0';
	if (fstat(lk->fd, &st) == 0)
		n = snprintf(pid, sizeof(pid), "%ld\nloft %llu %s\n",
		    (long)getpid(), (unsigned long long)st.st_size, host);
	else
		n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if ((w = write(fd, pid, (size_t)n)) != n) {
		saved_errno = w < 0 ? errno : EIO;
		*error_r = lock_error("cannot write dotlock %s: %s", tmp,
		    strerror(saved_errno));
		close(fd);
		unlink(tmp);
		errno = saved_errno;
		return -1;
	}
	close(fd);
	return 0;
}

/* An existing dotlock: remove it if stale. Returns 1 if it is gone (so
 * the link is worth trying again), 0 if it stays. Another process may judge
 * the same lock stale and replace it between our lstat and unlink; procmail
 * and liblockfile share that window, which stale_secs keeps rare. */
/*
 * Was the dotlock made by a loft process of this host that has died? Then
 * it cannot be writing any more, the lock is stale at once, and *size_r is
 * the mbox size it noted before writing.
 */
static bool
lock_dotlock_dead_loft(const char *dotlock, uint64_t *size_r)
{
	char buf[160], host[LOCK_HOST_MAX + 1], lhost[LOCK_HOST_MAX + 1];
	unsigned long long size;
	long pid;
	ssize_t n;
	int fd;

	fd = open(dotlock, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	if (gethostname(host, sizeof(host)) < 0)
		return false;
	host[sizeof(host) - 1] = '\0';
	if (sscanf(buf, "%ld\nloft %llu %32s", &pid, &size, lhost) != 3 ||
	    pid <= 0 || strcmp(lhost, host) != 0)
		return false;
	if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
		return false;
	*size_r = size;
	return true;
}

static int
lock_dotlock_unstale(struct lock_mbox *lk, unsigned stale_secs)
{
	struct stat st;
	time_t now;
	uint64_t size;
	bool dead;

	if (lstat(lk->dotlock, &st) < 0)
		return errno == ENOENT ? 1 : 0;
	now = time(NULL);
	dead = S_ISREG(st.st_mode) &&
	    lock_dotlock_dead_loft(lk->dotlock, &size);
	if (!dead && (stale_secs == 0 || !S_ISREG(st.st_mode) ||
	    now - st.st_mtime <= (time_t)stale_secs))
		return 0;
	if (unlink(lk->dotlock) < 0 && errno != ENOENT) {
		log_warning("cannot remove stale dotlock %s: %s", lk->dotlock,
		    strerror(errno));
		return 0;
	}
	if (dead) {
		lk->recovered = true;
		lk->recovered_size = size;
		log_warning("removed dotlock %s of a loft process that died "
		    "holding it", lk->dotlock);
	} else
		log_warning("removed stale dotlock %s (%lld seconds old)",
		    lk->dotlock, (long long)(now - st.st_mtime));
	return 1;
}

/* link() the temporary file to the dotlock. On a local disk link()'s
 * result is the answer; a link count of 2 is also success, for the case
 * (NFS) where link() reports an error for a link it made. */
static int
lock_dotlock_link(struct lock_mbox *lk, const char *tmp, int *link_errno_r)
{
	struct stat st;

	if (link(tmp, lk->dotlock) == 0) {
		*link_errno_r = 0;
		return 0;
	}
	*link_errno_r = errno;
	return lstat(tmp, &st) == 0 && st.st_nlink == 2 ? 0 : -1;
}

static int
lock_dotlock_try(struct lock_mbox *lk, unsigned stale_secs,
    const char **error_r)
{
	char tmp[PATH_MAX];
	int ret, link_errno;

	if (lock_dotlock_tmpname(lk->dotlock, tmp, sizeof(tmp)) < 0) {
		*error_r = lock_error("dotlock name too long: %s", lk->dotlock);
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((ret = lock_dotlock_mktemp(lk, tmp, error_r)) != 0)
		return ret;
	ret = lock_dotlock_link(lk, tmp, &link_errno);
	if (ret < 0 && link_errno == EEXIST &&
	    lock_dotlock_unstale(lk, stale_secs))
		ret = lock_dotlock_link(lk, tmp, &link_errno);
	if (unlink(tmp) < 0)
		log_warning("cannot remove %s: %s", tmp, strerror(errno));
	if (ret == 0) {
		/* Inode numbers are reused at once: the change time as
		 * well (the unlink above set it) tells our lock from one
		 * made later, at release. */
		if (lstat(lk->dotlock, &lk->dot_st) < 0)
			memset(&lk->dot_st, 0, sizeof(lk->dot_st));
		return 0;
	}
	if (link_errno == EEXIST)
		return LOCK_TIMEOUT;
	*error_r = lock_error("cannot link dotlock %s: %s", lk->dotlock,
	    strerror(link_errno));
	errno = link_errno;
	return -1;
}

static void
lock_dotlock_drop(struct lock_mbox *lk)
{
	struct stat st;

	if (lstat(lk->dotlock, &st) < 0) {
		log_warning("dotlock %s vanished while we held it: %s",
		    lk->dotlock, strerror(errno));
		return;
	}
	if (st.st_dev != lk->dot_st.st_dev || st.st_ino != lk->dot_st.st_ino ||
	    st.st_ctim.tv_sec != lk->dot_st.st_ctim.tv_sec ||
	    st.st_ctim.tv_nsec != lk->dot_st.st_ctim.tv_nsec) {
		/* Someone judged ours stale and took it over: not ours. */
		log_warning("dotlock %s was replaced by another process; "
		    "left alone", lk->dotlock);
		return;
	}
	if (unlink(lk->dotlock) < 0)
		log_warning("cannot remove dotlock %s: %s", lk->dotlock,
		    strerror(errno));
}

static void
lock_drop_all(struct lock_mbox *lk)
{
	if (lk->held & LOCK_M_DOTLOCK)
		lock_dotlock_drop(lk);
	if (lk->held & LOCK_M_FLOCK)
		lock_flock_drop(lk->fd);
	if (lk->held & LOCK_M_FCNTL)
		lock_fcntl_drop(lk->fd);
	lk->held = 0;
}

/* One round: each method in order, none waited for. On anything but
 * success, what was taken is dropped again. *busy_r names the busy one. */
static int
lock_round(struct lock_mbox *lk, const struct lock_opts *o,
    const char **busy_r, const char **error_r)
{
	static const unsigned order[] = {
		LOCK_M_FCNTL, LOCK_M_FLOCK, LOCK_M_DOTLOCK
	};
	static const char *const names[] = {
		"fcntl lock", "flock", "dotlock"
	};
	size_t i;
	int ret = 0, saved_errno;

	for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		if ((o->methods & order[i]) == 0)
			continue;
		if (order[i] == LOCK_M_FCNTL)
			ret = lock_fcntl_wait(lk->fd, o->delay_ms, error_r);
		else if (order[i] == LOCK_M_FLOCK)
			ret = lock_flock_try(lk->fd, error_r);
		else
			ret = lock_dotlock_try(lk, o->stale_secs, error_r);
		if (ret != 0) {
			*busy_r = names[i];
			saved_errno = errno;
			lock_drop_all(lk);
			errno = saved_errno;
			return ret;
		}
		lk->held |= order[i];
	}
	return 0;
}

static void
lock_sleep_ms(unsigned ms)
{
	struct timespec ts;

	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Does path still name the file open as fd? A mail reader that rewrote the
 * mbox by rename() while we waited would leave us appending to a ghost. */
static int
lock_same_file(int fd, const char *path, const char **error_r)
{
	struct stat fst, pst;

	if (fstat(fd, &fst) < 0) {
		*error_r = lock_error("fstat %s: %s", path, strerror(errno));
		return -1;
	}
	if (stat(path, &pst) < 0 || pst.st_dev != fst.st_dev ||
	    pst.st_ino != fst.st_ino) {
		*error_r = lock_error("%s was renamed or replaced while we "
		    "locked it; reopen it", path);
		return -1;
	}
	return 0;
}

int
lock_mbox_acquire(int fd, const char *path, const struct lock_opts *o,
    struct lock_mbox **lk_r, const char **error_r)
{
	struct lock_mbox *lk;
	const char *busy = "lock";
	unsigned i, attempts = o->attempts > 0 ? o->attempts : 1;
	int ret = LOCK_TIMEOUT, saved_errno;

	if (o->methods == 0 || (o->methods & ~LOCK_M_ALL) != 0) {
		*error_r = lock_error("invalid lock methods 0x%x", o->methods);
		return -1;
	}
	lk = xcalloc(1, sizeof(*lk));
	lk->fd = fd;
	if (o->methods & LOCK_M_DOTLOCK)
		lk->dotlock = xasprintf("%s.lock", path);
	for (i = 0; i < attempts && ret == LOCK_TIMEOUT; i++) {
		/* A round that failed on the fcntl lock has already waited
		 * for it in the kernel. */
		if (i > 0 && strcmp(busy, "fcntl lock") != 0)
			lock_sleep_ms(o->delay_ms);
		ret = lock_round(lk, o, &busy, error_r);
	}
	if (ret == 0 && lock_same_file(fd, path, error_r) < 0) {
		lock_drop_all(lk);
		errno = ESTALE;
		ret = -1;
	}
	if (ret == LOCK_TIMEOUT)
		*error_r = lock_error("%s on %s still held by another "
		    "process after %u attempts", busy, path, attempts);
	if (ret != 0) {
		saved_errno = errno;
		free(lk->dotlock);
		free(lk);
		errno = saved_errno;
		return ret;
	}
	*lk_r = lk;
	return 0;
}

bool
lock_mbox_recovered(const struct lock_mbox *lk, uint64_t *size_r)
{
	if (!lk->recovered)
		return false;
	*size_r = lk->recovered_size;
	return true;
}

void
lock_mbox_release(struct lock_mbox **lkp)
{
	struct lock_mbox *lk = *lkp;

	if (lk == NULL)
		return;
	*lkp = NULL;
	lock_drop_all(lk);
	free(lk->dotlock);
	free(lk);
}

int
lock_methods_parse(char **items, unsigned *methods_r, const char **error_r)
{
	char esc[128];
	unsigned methods = 0;
	size_t i;

	for (i = 0; items[i] != NULL; i++) {
		if (strcmp(items[i], "fcntl") == 0)
			methods |= LOCK_M_FCNTL;
		else if (strcmp(items[i], "dotlock") == 0)
			methods |= LOCK_M_DOTLOCK;
		else if (strcmp(items[i], "flock") == 0)
			methods |= LOCK_M_FLOCK;
		else {
			*error_r = lock_error("unknown lock method \"%s\" "
			    "(fcntl, dotlock or flock)",
			    log_escape(items[i], esc, sizeof(esc)));
			return -1;
		}
	}
	if (methods == 0) {
		*error_r = lock_error("no lock method given");
		return -1;
	}
	*methods_r = methods;
	return 0;
}
