/*
 * smtp_queue.c: the durable SMTP queue: a message enters in one
 * transaction (begin, content streamed to tmp/, recipients, commit), its
 * envelope is a strictly parsed text file rewritten atomically after each
 * delivery attempt, and whatever a crash leaves half-done is either
 * invisible (no envelope in env/) or removed by smtp_queue_cleanup. The
 * commit order and its reasons are in doc/design.md, "The SMTP queue".
 *
 * Trusts: the queue directory, once smtp_queue_open has checked that it
 * is ours and closed to others (all access goes through its descriptors,
 * with O_NOFOLLOW). Does not trust: queue IDs from callers (loftctl passes
 * user input: smtp_queue_id_valid is checked before any file name is
 * made), envelope files (parsed strictly, bounded, quarantined when
 * damaged), addresses and remote replies (bounded; control bytes never
 * reach a file raw).
 *
 * Threads: a committer (smtp_queue_committer_new) runs commits on its own
 * threads, one message per thread at a time; everything else runs on the
 * caller's one thread. A commit touches only its message, the queue's
 * directory descriptors (read only) and the per-thread error buffer.
 */
#include "config.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include "compat/compat.h"
#include "fsutil.h"
#include "log.h"
#include "xmalloc.h"
#include "smtp_queue.h"

/* Crockford's base 32, whose digits are in ASCII order. */
static const char smtp_queue_b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
#define SMTP_QUEUE_ID_SEC	8	/* digits of seconds */
#define SMTP_QUEUE_ID_USEC	4	/* digits of microseconds */
#define SMTP_QUEUE_ID_PID	5	/* digits of the pid */
#define SMTP_QUEUE_ID_TRIES	100	/* IDs tried at begin, at most */

#define SMTP_QUEUE_VERSION	"1"
/* Times in an envelope: 0 .. 2^40 seconds (as the ID's 8 digits). */
#define SMTP_QUEUE_TIME_MAX	(((time_t)1 << 40) - 1)
/* @UNSAFE hand-computed: the bytes of an envelope besides its escaped
 * strings, as a bound: the header lines are 177 bytes at most, a
 * recipient's lines 124 (with 13-digit times and 10-digit counters). */
#define SMTP_QUEUE_HDR_FIXED	256
#define SMTP_QUEUE_RCPT_FIXED	256
/* Less than the shortest recipient block (47 bytes: "rcpt <x>", "state
 * failed", "attempts 0", "last 0", "next 0"), which bounds what a
 * "recipients" line may ask to allocate. */
#define SMTP_QUEUE_RCPT_MIN	40
/* A string escaped is at most 4 times as long ("\xHH" per byte). */
#define SMTP_QUEUE_ESC		4
#define SMTP_QUEUE_WBUF		65536
#define SMTP_QUEUE_SHOW_MAX	40	/* of a bad field name, in errors */

enum smtp_queue_dir {
	SMTP_QUEUE_DIR_TMP,
	SMTP_QUEUE_DIR_DATA,
	SMTP_QUEUE_DIR_ENV,
	SMTP_QUEUE_DIR_CORRUPT,
	SMTP_QUEUE_DIR_COUNT
};
static const char *const smtp_queue_dir_names[SMTP_QUEUE_DIR_COUNT] = {
	"tmp", "data", "env", "corrupt"
};

struct smtp_queue {
	char *path;				/* for messages; owned */
	int dir_fd;				/* the queue directory */
	int fd[SMTP_QUEUE_DIR_COUNT];		/* its subdirectories */
	/* smtp_queue_env_remove_later: envelopes unlinked, their env/
	 * fsync and content removal still to come (owned). */
	char (*gone)[SMTP_QUEUE_ID_MAX];
	size_t ngone, gone_alloc;
};

/* The names a message being received has on disk, removed by
 * smtp_queue_msg_free unless the commit went through. */
#define SMTP_QUEUE_NAME_TMP	(1u << 0)	/* tmp/ID */
#define SMTP_QUEUE_NAME_DATA	(1u << 1)	/* data/ID */
#define SMTP_QUEUE_NAME_ENVTMP	(1u << 2)	/* tmp/ID.e */
#define SMTP_QUEUE_NAME_ENV	(1u << 3)	/* env/ID */

struct smtp_queue_msg {
	struct smtp_queue *q;
	int fd;			/* tmp/ID, locked until the end; owned */
	unsigned int names;	/* SMTP_QUEUE_NAME_* */
	struct smtp_queue_env env;	/* being built; lock_fd unused */
	unsigned int max_rcpts;
	unsigned int rcpt_alloc;
	size_t worst;		/* envelope bytes, every diagnostic full */
	char error[512];	/* a write failed: the error, sticky */
	size_t wlen;
	unsigned char wbuf[SMTP_QUEUE_WBUF];
};

struct smtp_queue_iter {
	struct smtp_queue *q;
	char (*ids)[SMTP_QUEUE_ID_MAX];		/* sorted; owned */
	size_t count;
	size_t pos;
};

int (*smtp_queue_test_hook)(enum smtp_queue_step step);

/* Per thread: a committer's threads run smtp_queue_commit beside the
 * loop's thread (see the committer, below). */
static _Thread_local char smtp_queue_errbuf[1024];
/* The last time an ID was made from, in microseconds: IDs of this process
 * never repeat, even if the clock goes back. */
static uint64_t smtp_queue_last_us;

static const char *smtp_queue_fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* smtp_queue_fail: format an error into the module's buffer. errno is
 * kept, so a caller can still tell a full disk. */
static const char *
smtp_queue_fail(const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	va_start(ap, fmt);
	vsnprintf(smtp_queue_errbuf, sizeof(smtp_queue_errbuf), fmt, ap);
	va_end(ap);
	errno = saved;
	return smtp_queue_errbuf;
}

/* smtp_queue_sysfail: "queue: WHAT DIR/NAME: strerror", said to be a full
 * disk when it is one. */
static const char *
smtp_queue_sysfail(const char *what, enum smtp_queue_dir dir,
    const char *name)
{
	int err = errno;

	return smtp_queue_fail("queue: %s%s %s/%s: %s",
	    fsutil_is_disk_full(err) ? "disk full: " : "", what,
	    smtp_queue_dir_names[dir], name, strerror(err));
}

/* smtp_queue_step: the test hook before a step: 0 go on, or -1 with errno
 * set to what the hook asked for. */
static int
smtp_queue_step(enum smtp_queue_step step)
{
	int err;

	if (smtp_queue_test_hook == NULL ||
	    (err = smtp_queue_test_hook(step)) == 0)
		return 0;
	errno = err;
	return -1;
}

/* smtp_queue_exists: whether dir/name exists: 1, 0, or -1 (errno). */
static int
smtp_queue_exists(const struct smtp_queue *q, enum smtp_queue_dir dir,
    const char *name)
{
	struct stat st;

	if (fstatat(q->fd[dir], name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return 1;
	return errno == ENOENT ? 0 : -1;
}

/* smtp_queue_write_all: write len bytes to fd, each write(2) preceded by
 * the hook's step. 0 or -1 (errno). */
static int
smtp_queue_write_all(int fd, const unsigned char *p, size_t len,
    enum smtp_queue_step step)
{
	ssize_t n;

	while (len > 0) {
		if (smtp_queue_step(step) < 0)
			return -1;
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * IDs.
 */

static void
smtp_queue_b32_put(char *out, uint64_t v, size_t digits)
{
	while (digits-- > 0) {
		out[digits] = smtp_queue_b32[v & 31];
		v >>= 5;
	}
}

/* smtp_queue_id_make: a new ID from the clock (never the same time twice
 * in this process) and the pid; *us_r the time it stands for. */
static void
smtp_queue_id_make(char id[SMTP_QUEUE_ID_MAX], uint64_t *us_r)
{
	struct timespec ts;
	uint64_t us;

	if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
		log_panic("smtp_queue: clock_gettime: %s", strerror(errno));
	us = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
	if (us <= smtp_queue_last_us)
		us = smtp_queue_last_us + 1;
	smtp_queue_last_us = us;
	smtp_queue_b32_put(id, us / 1000000, SMTP_QUEUE_ID_SEC);
	smtp_queue_b32_put(id + SMTP_QUEUE_ID_SEC, us % 1000000,
	    SMTP_QUEUE_ID_USEC);
	smtp_queue_b32_put(id + SMTP_QUEUE_ID_SEC + SMTP_QUEUE_ID_USEC,
	    (uint64_t)getpid(), SMTP_QUEUE_ID_PID);
	id[SMTP_QUEUE_ID_LEN] = '\0';
	*us_r = us;
}

bool
smtp_queue_id_valid(const char *id)
{
	const char *digit;
	uint64_t usec = 0;
	size_t i;

	for (i = 0; i < SMTP_QUEUE_ID_LEN; i++) {
		if (id[i] == '\0' ||
		    (digit = strchr(smtp_queue_b32, id[i])) == NULL)
			return false;
		if (i >= SMTP_QUEUE_ID_SEC &&
		    i < SMTP_QUEUE_ID_SEC + SMTP_QUEUE_ID_USEC)
			usec = usec * 32 + (uint64_t)(digit - smtp_queue_b32);
	}
	return id[i] == '\0' && usec < 1000000;
}

/* smtp_queue_id_check: the error for a bad ID from outside. */
static int
smtp_queue_id_check(const char *id, const char **error_r)
{
	char show[SMTP_QUEUE_ID_LEN + 8];

	if (smtp_queue_id_valid(id))
		return 0;
	log_escape(id, show, sizeof(show));
	*error_r = smtp_queue_fail("queue: bad queue ID \"%s\"", show);
	return -1;
}

/*
 * Opening the queue.
 */

/* smtp_queue_check_dir: fd is a directory of ours, closed to others;
 * the queue directory itself (top) may let them search it (0711), so
 * that local users reach its maildrop (smtp/smtp_pickup.h). */
static int
smtp_queue_check_dir(int fd, const char *path, bool top,
    const char **error_r)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		*error_r = smtp_queue_fail("queue: stat %s: %s", path,
		    strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		*error_r = smtp_queue_fail("queue: %s is not a directory",
		    path);
		return -1;
	}
	if (st.st_uid != geteuid()) {
		*error_r = smtp_queue_fail("queue: %s is owned by uid %lu, "
		    "not by uid %lu that runs the queue", path,
		    (unsigned long)st.st_uid, (unsigned long)geteuid());
		return -1;
	}
	if ((st.st_mode & (top ? 066 : 077)) != 0) {
		*error_r = smtp_queue_fail("queue: %s has mode %04o: group "
		    "and others must have no access (chmod %s)", path,
		    (unsigned int)(st.st_mode & 07777), top ? "711" : "700");
		return -1;
	}
	return 0;
}

/* smtp_queue_open_dir: mkdir (mode 0700) if missing, open without
 * following a symbolic link, check. -1 or the descriptor. */
static int
smtp_queue_open_dir(int at, const char *name, const char *path, bool top,
    const char **error_r)
{
	int fd, err;

	if (mkdirat(at, name, 0700) < 0 && errno != EEXIST) {
		*error_r = smtp_queue_fail("queue: mkdir %s: %s", path,
		    strerror(errno));
		return -1;
	}
	fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (fd < 0) {
		err = errno;
		*error_r = smtp_queue_fail("queue: open %s: %s%s", path,
		    strerror(err), err == ELOOP || err == ENOTDIR ?
		    " (it must be a directory, not a symbolic link)" : "");
		return -1;
	}
	if (smtp_queue_check_dir(fd, path, top, error_r) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int
smtp_queue_open(const char *dir, struct smtp_queue **q_r,
    const char **error_r)
{
	struct smtp_queue *q;
	char *path;
	size_t i;

	q = xcalloc(1, sizeof(*q));
	q->path = xstrdup(dir);
	for (i = 0; i < SMTP_QUEUE_DIR_COUNT; i++)
		q->fd[i] = -1;
	q->dir_fd = smtp_queue_open_dir(AT_FDCWD, dir, dir, true, error_r);
	for (i = 0; q->dir_fd >= 0 && i < SMTP_QUEUE_DIR_COUNT; i++) {
		path = xasprintf("%s/%s", dir, smtp_queue_dir_names[i]);
		q->fd[i] = smtp_queue_open_dir(q->dir_fd,
		    smtp_queue_dir_names[i], path, false, error_r);
		free(path);
		if (q->fd[i] < 0)
			break;
	}
	if (q->dir_fd < 0 || i < SMTP_QUEUE_DIR_COUNT) {
		smtp_queue_close(&q);
		return -1;
	}
	*q_r = q;
	return 0;
}

void
smtp_queue_close(struct smtp_queue **qp)
{
	struct smtp_queue *q = *qp;
	size_t i;

	if (q == NULL)
		return;
	*qp = NULL;
	for (i = 0; i < SMTP_QUEUE_DIR_COUNT; i++)
		if (q->fd[i] >= 0)
			close(q->fd[i]);
	if (q->dir_fd >= 0)
		close(q->dir_fd);
	free(q->gone);
	free(q->path);
	free(q);
}

/*
 * Cleanup after crashes.
 */

/* smtp_queue_leftover: whether dir/name is a crash's leftover: a regular
 * file not written since limit, and in data/ an ID without an envelope.
 * The content's mtime is that of its last write, just before its commit
 * links it into data/, so a commit in progress is never that old.
 * 1, 0 (not, or gone), -1. */
static int
smtp_queue_leftover(const struct smtp_queue *q, enum smtp_queue_dir dir,
    const char *name, time_t limit)
{
	struct stat st;

	if (fstatat(q->fd[dir], name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISREG(st.st_mode) || st.st_mtime > limit)
		return 0;
	if (dir != SMTP_QUEUE_DIR_DATA)
		return 1;
	if (!smtp_queue_id_valid(name))
		return 0;
	switch (smtp_queue_exists(q, SMTP_QUEUE_DIR_ENV, name)) {
	case 0:
		return 1;
	case 1:
		return 0;
	default:
		return -1;
	}
}

static int
smtp_queue_cleanup_dir(struct smtp_queue *q, enum smtp_queue_dir dir,
    time_t limit, unsigned int *removed, const char **error_r)
{
	struct dirent *d;
	DIR *dp;
	int fd, r = 0;

	fd = openat(q->fd[dir], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || (dp = fdopendir(fd)) == NULL) {
		*error_r = smtp_queue_sysfail("open", dir, "");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while (r == 0 && (d = readdir(dp)) != NULL) {
		if (d->d_name[0] == '.')
			continue;
		switch (smtp_queue_leftover(q, dir, d->d_name, limit)) {
		case 1:
			if (unlinkat(q->fd[dir], d->d_name, 0) == 0)
				(*removed)++;
			else if (errno != ENOENT)
				r = -1;
			break;
		case -1:
			r = -1;
			break;
		}
		if (r < 0)
			*error_r = smtp_queue_sysfail("clean up", dir,
			    d->d_name);
	}
	closedir(dp);
	return r;
}

int
smtp_queue_cleanup(struct smtp_queue *q, unsigned int max_age,
    unsigned int *removed_r, const char **error_r)
{
	unsigned int removed = 0;
	/* 0: whatever the age. A file just written may carry an mtime a
	 * little ahead of time(): file times come from a finer clock. */
	time_t limit = max_age == 0 ? (time_t)INT64_MAX :
	    time(NULL) - (time_t)max_age;
	int r;

	r = smtp_queue_cleanup_dir(q, SMTP_QUEUE_DIR_TMP, limit, &removed,
	    error_r);
	if (r == 0)
		r = smtp_queue_cleanup_dir(q, SMTP_QUEUE_DIR_DATA, limit,
		    &removed, error_r);
	if (removed_r != NULL)
		*removed_r = removed;
	return r;
}

/*
 * Values: addresses, xtext, and their bounds.
 */

static bool
smtp_queue_has_control(const unsigned char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (s[i] < 0x20 || s[i] == 0x7f)
			return true;
	return false;
}

/* smtp_queue_addr_check: an address as stored: at most
 * SMTP_QUEUE_ADDR_MAX bytes, no control character, empty only if
 * allow_empty. what names it in the error. */
static int
smtp_queue_addr_check(const char *what, const char *addr, size_t len,
    bool allow_empty, const char **error_r)
{
	if (len == 0 && !allow_empty)
		*error_r = smtp_queue_fail("queue: empty %s", what);
	else if (len > SMTP_QUEUE_ADDR_MAX)
		*error_r = smtp_queue_fail("queue: %s of %zu bytes, over "
		    "the limit of %d", what, len, SMTP_QUEUE_ADDR_MAX);
	else if (smtp_queue_has_control((const unsigned char *)addr, len))
		*error_r = smtp_queue_fail("queue: control character in %s",
		    what);
	else
		return 0;
	return -1;
}

/* smtp_queue_xtext_check: ENVID or ORCPT as sent: 1..max bytes, no space
 * or control character (RFC 3461 xtext; 8-bit bytes for RFC 6533). */
static int
smtp_queue_xtext_check(const char *what, const char *s, size_t len,
    size_t max, const char **error_r)
{
	size_t i;

	if (len == 0 || len > max) {
		*error_r = smtp_queue_fail("queue: %s of %zu bytes, must be "
		    "1 to %zu", what, len, max);
		return -1;
	}
	for (i = 0; i < len; i++) {
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f) {
			*error_r = smtp_queue_fail("queue: space or control "
			    "character in %s", what);
			return -1;
		}
	}
	return 0;
}

/* smtp_queue_rcpt_worst: the most envelope bytes a recipient can take. */
static size_t
smtp_queue_rcpt_worst(size_t addr_len, size_t orcpt_len)
{
	return SMTP_QUEUE_RCPT_FIXED + SMTP_QUEUE_ESC *
	    (addr_len + orcpt_len + SMTP_QUEUE_DIAG_MAX);
}

static bool
smtp_queue_notify_valid(unsigned int notify)
{
	if ((notify & ~(SMTP_NOTIFY_NEVER | SMTP_NOTIFY_SUCCESS |
	    SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY)) != 0)
		return false;
	return (notify & SMTP_NOTIFY_NEVER) == 0 ||
	    notify == SMTP_NOTIFY_NEVER;
}

/*
 * The envelope, written. One field per line, "name value", in a fixed
 * order; optional fields (envid, ret, orcpt, notify, diag) are left out
 * when empty:
 *
 *   loft-queue 1
 *   id 0SZ7R2QW0B7X00ABC
 *   arrival 1732900000.123456
 *   size 4711
 *   sender <alice@example.org>       (<> for the null sender)
 *   bounce 0                         (1 exactly for the null sender)
 *   envid QQ314159                   (ENVID xtext as sent)
 *   ret hdrs                         (full or hdrs)
 *   attempts 0
 *   hold 0
 *   recipients 1
 *   rcpt <bob@example.net>           (then per recipient, in this order)
 *   orcpt rfc822;bob@example.net
 *   notify success,failure           (never, or a list in this order)
 *   state deferred                   (pending delivered failed deferred)
 *   attempts 1
 *   last 1732900300
 *   next 1732900600
 *   diag 451 4.3.0 try later
 *   end
 *
 * Strings are escaped: '\' as "\\", bytes below 0x20 and 0x7f as "\xHH"
 * (upper case); nothing else, so CR, LF and NUL never appear raw and each
 * value has exactly one spelling. Numbers are decimal without leading
 * zeros. The final "end" line tells a whole file from a cut one.
 */

static const char *const smtp_queue_state_names[] = {
	"pending", "delivered", "failed", "deferred", "bounced"
};

const char *
smtp_queue_state_name(enum smtp_queue_state state)
{
	if ((unsigned int)state >= sizeof(smtp_queue_state_names) /
	    sizeof(smtp_queue_state_names[0]))
		return "unknown";
	return smtp_queue_state_names[state];
}

static const struct {
	unsigned int flag;
	const char *name;
} smtp_queue_notify_names[] = {
	{ SMTP_NOTIFY_SUCCESS, "success" },
	{ SMTP_NOTIFY_FAILURE, "failure" },
	{ SMTP_NOTIFY_DELAY, "delay" },
};
#define SMTP_QUEUE_NOTIFY_COUNT \
	(sizeof(smtp_queue_notify_names) / sizeof(smtp_queue_notify_names[0]))

/* smtp_queue_notify_format: the canonical spelling of notify (non-zero,
 * valid) into out. */
static void
smtp_queue_notify_format(unsigned int notify, char *out, size_t outsize)
{
	size_t i;

	out[0] = '\0';
	if (notify == SMTP_NOTIFY_NEVER) {
		strlcpy(out, "never", outsize);
		return;
	}
	for (i = 0; i < SMTP_QUEUE_NOTIFY_COUNT; i++) {
		if ((notify & smtp_queue_notify_names[i].flag) == 0)
			continue;
		if (out[0] != '\0')
			strlcat(out, ",", outsize);
		strlcat(out, smtp_queue_notify_names[i].name, outsize);
	}
}

/* smtp_queue_put_text: "key " and the escaped bytes, then LF. */
static int
smtp_queue_put_text(struct buf *b, const char *key, const void *data,
    size_t len, const char *open, const char *close)
{
	const unsigned char *s = data;
	int r = buf_printf(b, "%s %s", key, open);
	size_t i;

	for (i = 0; r == 0 && i < len; i++) {
		if (s[i] == '\\')
			r = buf_append(b, "\\\\", 2);
		else if (s[i] < 0x20 || s[i] == 0x7f)
			r = buf_printf(b, "\\x%02X", s[i]);
		else
			r = buf_append_byte(b, s[i]);
	}
	return r == 0 ? buf_printf(b, "%s\n", close) : -1;
}

static bool
smtp_queue_time_ok(time_t t)
{
	return t >= 0 && t <= SMTP_QUEUE_TIME_MAX;
}

static int
smtp_queue_format_rcpt(struct buf *b, const struct smtp_queue_rcpt *r)
{
	char notify[64];

	if (!smtp_queue_time_ok(r->last_attempt) ||
	    !smtp_queue_time_ok(r->next_attempt) ||
	    (unsigned int)r->state > SMTP_QUEUE_BOUNCED ||
	    !smtp_queue_notify_valid(r->notify) ||
	    r->diag_len > SMTP_QUEUE_DIAG_MAX)
		return -1;
	if (smtp_queue_put_text(b, "rcpt", r->addr, strlen(r->addr), "<",
	    ">") < 0)
		return -1;
	if (r->orcpt != NULL && smtp_queue_put_text(b, "orcpt", r->orcpt,
	    strlen(r->orcpt), "", "") < 0)
		return -1;
	smtp_queue_notify_format(r->notify, notify, sizeof(notify));
	if (r->notify != 0 && buf_printf(b, "notify %s\n", notify) < 0)
		return -1;
	if (buf_printf(b, "state %s\nattempts %u\nlast %lld\nnext %lld\n",
	    smtp_queue_state_names[r->state], r->attempts,
	    (long long)r->last_attempt, (long long)r->next_attempt) < 0)
		return -1;
	if (r->diag != NULL && smtp_queue_put_text(b, "diag", r->diag,
	    r->diag_len, "", "") < 0)
		return -1;
	return 0;
}

static int
smtp_queue_format_head(struct buf *b, const struct smtp_queue_env *env)
{
	if (!smtp_queue_time_ok(env->arrival) || env->arrival_usec >= 1000000)
		return -1;
	if (buf_printf(b, "loft-queue %s\nid %s\narrival %lld.%06u\n"
	    "size %llu\n", SMTP_QUEUE_VERSION, env->id,
	    (long long)env->arrival, env->arrival_usec,
	    (unsigned long long)env->size) < 0)
		return -1;
	if (smtp_queue_put_text(b, "sender", env->sender,
	    strlen(env->sender), "<", ">") < 0 ||
	    buf_printf(b, "bounce %d\n", env->sender[0] == '\0') < 0)
		return -1;
	if (env->envid != NULL && smtp_queue_put_text(b, "envid", env->envid,
	    strlen(env->envid), "", "") < 0)
		return -1;
	if (env->ret != SMTP_RET_NONE && buf_printf(b, "ret %s\n",
	    env->ret == SMTP_RET_FULL ? "full" : "hdrs") < 0)
		return -1;
	return buf_printf(b, "attempts %u\nhold %d\nrecipients %u\n",
	    env->attempts, env->hold ? 1 : 0, env->rcpt_count);
}

int
smtp_queue_env_format(const struct smtp_queue_env *env, struct buf *out,
    const char **error_r)
{
	size_t start = out->len, max = out->max;
	unsigned int i;
	int r;

	if (out->max - out->len > SMTP_QUEUE_ENV_MAX)
		out->max = out->len + SMTP_QUEUE_ENV_MAX;
	r = env->rcpt_count == 0 ? -1 : smtp_queue_format_head(out, env);
	for (i = 0; r == 0 && i < env->rcpt_count; i++)
		r = smtp_queue_format_rcpt(out, &env->rcpts[i]);
	if (r == 0)
		r = buf_append_str(out, "end\n");
	out->max = max;
	if (r < 0) {
		buf_truncate(out, start);
		*error_r = smtp_queue_fail("queue: envelope of %s cannot be "
		    "written: a value out of range, no recipient, or over "
		    "%d bytes", env->id, SMTP_QUEUE_ENV_MAX);
		return -1;
	}
	return 0;
}

/*
 * The envelope, parsed: a cursor over lines, one expected field after
 * the other.
 */

struct smtp_queue_parser {
	const unsigned char *p, *end;
	size_t total;			/* the file's length */
	unsigned int line;		/* of the line last read */
	bool pending;			/* key/val: read, not consumed */
	const unsigned char *key, *val;
	size_t keylen, vallen;
	bool has_val;			/* a space followed the key */
	char reason[256];
};

static const char *const smtp_queue_keys[] = {
	"loft-queue", "id", "arrival", "size", "sender", "bounce", "envid",
	"ret", "attempts", "hold", "recipients", "rcpt", "orcpt", "notify",
	"state", "last", "next", "diag", "end", NULL
};

static int smtp_queue_pfail(struct smtp_queue_parser *ps, const char *fmt,
    ...) __attribute__((format(printf, 2, 3)));

static int
smtp_queue_pfail(struct smtp_queue_parser *ps, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ps->reason, sizeof(ps->reason), fmt, ap);
	va_end(ap);
	return -1;
}

/* smtp_queue_next_line: split the next line into key and value. */
static int
smtp_queue_next_line(struct smtp_queue_parser *ps)
{
	const unsigned char *nl, *sp;

	if (ps->pending)
		return 0;
	if (ps->p == ps->end) {
		ps->line++;
		return smtp_queue_pfail(ps, "truncated: no \"end\" line");
	}
	ps->line++;
	nl = memchr(ps->p, '\n', (size_t)(ps->end - ps->p));
	if (nl == NULL)
		return smtp_queue_pfail(ps, "truncated: no newline");
	ps->key = ps->p;
	sp = memchr(ps->p, ' ', (size_t)(nl - ps->p));
	ps->has_val = sp != NULL;
	ps->keylen = (size_t)((sp != NULL ? sp : nl) - ps->p);
	ps->val = sp != NULL ? sp + 1 : nl;
	ps->vallen = (size_t)(nl - ps->val);
	ps->p = nl + 1;
	ps->pending = true;
	return 0;
}

static bool
smtp_queue_key_is(const struct smtp_queue_parser *ps, const char *name)
{
	return ps->keylen == strlen(name) &&
	    memcmp(ps->key, name, ps->keylen) == 0;
}

/* smtp_queue_field: the next line must be field name (1), may be another
 * when optional (0, the line stays), else -1. */
static int
smtp_queue_field(struct smtp_queue_parser *ps, const char *name,
    bool optional)
{
	char show[SMTP_QUEUE_SHOW_MAX + 1];
	size_t i;

	if (smtp_queue_next_line(ps) < 0)
		return -1;
	if (smtp_queue_key_is(ps, name)) {
		ps->pending = false;
		if (ps->has_val == (strcmp(name, "end") == 0))
			return smtp_queue_pfail(ps, "\"%s\" %s", name,
			    ps->has_val ? "takes no value" : "without a value");
		return 1;
	}
	if (optional)
		return 0;
	for (i = 0; i < ps->keylen && i < SMTP_QUEUE_SHOW_MAX; i++)
		show[i] = ps->key[i] > 0x20 && ps->key[i] < 0x7f ?
		    (char)ps->key[i] : '?';
	show[i] = '\0';
	for (i = 0; smtp_queue_keys[i] != NULL; i++)
		if (smtp_queue_key_is(ps, smtp_queue_keys[i]))
			return smtp_queue_pfail(ps, "field \"%s\" where \"%s\" "
			    "was expected", show, name);
	return smtp_queue_pfail(ps, "unknown field \"%s\"", show);
}

/* smtp_queue_parse_uint: decimal digits, no leading zero, <= max. */
static int
smtp_queue_parse_uint(struct smtp_queue_parser *ps, const char *name,
    const unsigned char *s, size_t len, uint64_t max, uint64_t *v_r)
{
	uint64_t v = 0, d;
	size_t i;

	if (len == 0 || (len > 1 && s[0] == '0'))
		return smtp_queue_pfail(ps, "bad number for \"%s\"", name);
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return smtp_queue_pfail(ps, "bad number for \"%s\"",
			    name);
		d = s[i] - '0';
		if (v > (max - d) / 10)
			return smtp_queue_pfail(ps, "number out of range for "
			    "\"%s\"", name);
		v = v * 10 + d;
	}
	*v_r = v;
	return 0;
}

static int
smtp_queue_uint_field(struct smtp_queue_parser *ps, const char *name,
    uint64_t max, uint64_t *v_r)
{
	if (smtp_queue_field(ps, name, false) < 0)
		return -1;
	return smtp_queue_parse_uint(ps, name, ps->val, ps->vallen, max, v_r);
}

static int
smtp_queue_unsigned_field(struct smtp_queue_parser *ps, const char *name,
    unsigned int *v_r)
{
	uint64_t v;

	if (smtp_queue_uint_field(ps, name, UINT_MAX, &v) < 0)
		return -1;
	*v_r = (unsigned int)v;
	return 0;
}

static int
smtp_queue_time_field(struct smtp_queue_parser *ps, const char *name,
    time_t *t_r)
{
	uint64_t v;

	if (smtp_queue_uint_field(ps, name, SMTP_QUEUE_TIME_MAX, &v) < 0)
		return -1;
	*t_r = (time_t)v;
	return 0;
}

static int
smtp_queue_bool_field(struct smtp_queue_parser *ps, const char *name,
    bool *b_r)
{
	uint64_t v;

	if (smtp_queue_uint_field(ps, name, 1, &v) < 0)
		return -1;
	*b_r = v == 1;
	return 0;
}

/* smtp_queue_unescape: the value's bytes, escapes undone, into a new
 * NUL-terminated buffer; at most max bytes. Escapes as the writer makes
 * them only: "\\", and "\xHH" for exactly the bytes that need it. */
static int
smtp_queue_unescape(struct smtp_queue_parser *ps, const char *name,
    const unsigned char *s, size_t len, size_t max, unsigned char **out_r,
    size_t *len_r)
{
	static const char hex[] = "0123456789ABCDEF";
	const char *hi, *lo;
	unsigned char *out = xmalloc(len + 1), c;
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		c = s[i];
		if (c < 0x20 || c == 0x7f)
			goto bad_raw;
		if (c == '\\' && i + 1 < len && s[i + 1] == '\\') {
			i++;
		} else if (c == '\\') {
			if (i + 3 >= len || s[i + 1] != 'x' ||
			    s[i + 2] == '\0' || s[i + 3] == '\0' ||
			    (hi = strchr(hex, s[i + 2])) == NULL ||
			    (lo = strchr(hex, s[i + 3])) == NULL)
				goto bad_escape;
			c = (unsigned char)((hi - hex) * 16 + (lo - hex));
			if (c >= 0x20 && c != 0x7f)
				goto bad_escape;
			i += 3;
		}
		out[n++] = c;
	}
	if (n > max) {
		free(out);
		return smtp_queue_pfail(ps, "\"%s\" of %zu bytes, over %zu",
		    name, n, max);
	}
	out[n] = '\0';
	*out_r = out;
	*len_r = n;
	return 0;
bad_raw:
	free(out);
	return smtp_queue_pfail(ps, "raw control character in \"%s\"", name);
bad_escape:
	free(out);
	return smtp_queue_pfail(ps, "bad escape in \"%s\"", name);
}

/* smtp_queue_addr_field: "<address>", checked as the API checks it. */
static int
smtp_queue_addr_field(struct smtp_queue_parser *ps, const char *name,
    bool allow_empty, char **addr_r)
{
	unsigned char *addr;
	const char *error;
	size_t len;

	if (smtp_queue_field(ps, name, false) < 0)
		return -1;
	if (ps->vallen < 2 || ps->val[0] != '<' ||
	    ps->val[ps->vallen - 1] != '>')
		return smtp_queue_pfail(ps, "\"%s\" is not in <>", name);
	if (smtp_queue_unescape(ps, name, ps->val + 1, ps->vallen - 2,
	    SMTP_QUEUE_ADDR_MAX, &addr, &len) < 0)
		return -1;
	if (smtp_queue_addr_check(name, (char *)addr, len, allow_empty,
	    &error) < 0) {
		free(addr);
		return smtp_queue_pfail(ps, "%s", error + strlen("queue: "));
	}
	*addr_r = (char *)addr;
	return 0;
}

/* smtp_queue_xtext_field: an optional ENVID or ORCPT: 1, 0 absent, -1. */
static int
smtp_queue_xtext_field(struct smtp_queue_parser *ps, const char *name,
    size_t max, char **s_r)
{
	unsigned char *s;
	const char *error;
	size_t len;
	int r;

	if ((r = smtp_queue_field(ps, name, true)) <= 0)
		return r;
	if (smtp_queue_unescape(ps, name, ps->val, ps->vallen, max, &s,
	    &len) < 0)
		return -1;
	if (smtp_queue_xtext_check(name, (char *)s, len, max, &error) < 0) {
		free(s);
		return smtp_queue_pfail(ps, "%s", error + strlen("queue: "));
	}
	*s_r = (char *)s;
	return 1;
}

/* smtp_queue_notify_field: optional; the spelling must be canonical. */
static int
smtp_queue_notify_field(struct smtp_queue_parser *ps, unsigned int *n_r)
{
	char canon[64];
	unsigned int flags;
	int r;

	if ((r = smtp_queue_field(ps, "notify", true)) <= 0)
		return r;
	/* Each of the 9 valid values has one spelling: find the one that
	 * was written. */
	for (flags = 1; flags <= 0xf; flags++) {
		if (!smtp_queue_notify_valid(flags))
			continue;
		smtp_queue_notify_format(flags, canon, sizeof(canon));
		if (strlen(canon) == ps->vallen &&
		    memcmp(canon, ps->val, ps->vallen) == 0) {
			*n_r = flags;
			return 1;
		}
	}
	return smtp_queue_pfail(ps, "bad value for \"notify\"");
}

/* smtp_queue_word_field: the value must be one of words; its index. */
static int
smtp_queue_word_field(struct smtp_queue_parser *ps, const char *name,
    const char *const *words, size_t count, bool optional, size_t *i_r)
{
	size_t i;
	int r;

	if ((r = smtp_queue_field(ps, name, optional)) <= 0)
		return r;
	for (i = 0; i < count; i++) {
		if (strlen(words[i]) == ps->vallen &&
		    memcmp(words[i], ps->val, ps->vallen) == 0) {
			*i_r = i;
			return 1;
		}
	}
	return smtp_queue_pfail(ps, "bad value for \"%s\"", name);
}

static int
smtp_queue_parse_rcpt(struct smtp_queue_parser *ps, struct smtp_queue_rcpt *r)
{
	size_t state;
	int got;

	if (smtp_queue_addr_field(ps, "rcpt", false, &r->addr) < 0 ||
	    smtp_queue_xtext_field(ps, "orcpt", SMTP_QUEUE_ORCPT_MAX,
	    &r->orcpt) < 0 ||
	    smtp_queue_notify_field(ps, &r->notify) < 0 ||
	    smtp_queue_word_field(ps, "state", smtp_queue_state_names, 5,
	    false, &state) < 0 ||
	    smtp_queue_unsigned_field(ps, "attempts", &r->attempts) < 0 ||
	    smtp_queue_time_field(ps, "last", &r->last_attempt) < 0 ||
	    smtp_queue_time_field(ps, "next", &r->next_attempt) < 0)
		return -1;
	r->state = (enum smtp_queue_state)state;
	if ((got = smtp_queue_field(ps, "diag", true)) < 0)
		return -1;
	if (got == 1 && smtp_queue_unescape(ps, "diag", ps->val, ps->vallen,
	    SMTP_QUEUE_DIAG_MAX, &r->diag, &r->diag_len) < 0)
		return -1;
	return 0;
}

static int
smtp_queue_parse_arrival(struct smtp_queue_parser *ps,
    struct smtp_queue_env *env)
{
	const unsigned char *dot;
	uint64_t sec, usec;
	size_t seclen;

	if (smtp_queue_field(ps, "arrival", false) < 0)
		return -1;
	dot = memchr(ps->val, '.', ps->vallen);
	if (dot == NULL || ps->vallen - (size_t)(dot - ps->val) != 7)
		return smtp_queue_pfail(ps, "bad time for \"arrival\"");
	seclen = (size_t)(dot - ps->val);
	if (smtp_queue_parse_uint(ps, "arrival", ps->val, seclen,
	    SMTP_QUEUE_TIME_MAX, &sec) < 0)
		return -1;
	/* Six digits exactly, leading zeros included. */
	for (usec = 0, dot++; dot < ps->val + ps->vallen; dot++) {
		if (*dot < '0' || *dot > '9')
			return smtp_queue_pfail(ps, "bad time for \"arrival\"");
		usec = usec * 10 + (uint64_t)(*dot - '0');
	}
	env->arrival = (time_t)sec;
	env->arrival_usec = (unsigned int)usec;
	return 0;
}

static int
smtp_queue_parse_head(struct smtp_queue_parser *ps, const char *id,
    struct smtp_queue_env *env)
{
	static const char *const rets[] = { "full", "hdrs" };
	size_t ret;
	bool bounce;
	int r;

	if (smtp_queue_field(ps, "loft-queue", false) < 0)
		return -1;
	if (ps->vallen != 1 || ps->val[0] != SMTP_QUEUE_VERSION[0])
		return smtp_queue_pfail(ps, "unknown envelope version");
	if (smtp_queue_field(ps, "id", false) < 0)
		return -1;
	if (ps->vallen != SMTP_QUEUE_ID_LEN)
		return smtp_queue_pfail(ps, "bad queue ID");
	memcpy(env->id, ps->val, SMTP_QUEUE_ID_LEN);
	env->id[SMTP_QUEUE_ID_LEN] = '\0';
	if (!smtp_queue_id_valid(env->id))
		return smtp_queue_pfail(ps, "bad queue ID");
	if (id != NULL && strcmp(id, env->id) != 0)
		return smtp_queue_pfail(ps, "queue ID differs from the file "
		    "name");
	if (smtp_queue_parse_arrival(ps, env) < 0 ||
	    smtp_queue_uint_field(ps, "size", UINT64_MAX, &env->size) < 0 ||
	    smtp_queue_addr_field(ps, "sender", true, &env->sender) < 0 ||
	    smtp_queue_bool_field(ps, "bounce", &bounce) < 0)
		return -1;
	env->bounce = env->sender[0] == '\0';
	if (bounce != env->bounce)
		return smtp_queue_pfail(ps, "\"bounce\" disagrees with the "
		    "sender");
	if (smtp_queue_xtext_field(ps, "envid", SMTP_QUEUE_ENVID_MAX,
	    &env->envid) < 0 ||
	    (r = smtp_queue_word_field(ps, "ret", rets, 2, true, &ret)) < 0)
		return -1;
	env->ret = r == 0 ? SMTP_RET_NONE :
	    ret == 0 ? SMTP_RET_FULL : SMTP_RET_HDRS;
	if (smtp_queue_unsigned_field(ps, "attempts", &env->attempts) < 0 ||
	    smtp_queue_bool_field(ps, "hold", &env->hold) < 0)
		return -1;
	return 0;
}

static int
smtp_queue_parse(struct smtp_queue_parser *ps, const char *id,
    struct smtp_queue_env *env)
{
	uint64_t count, most;

	if (ps->total > SMTP_QUEUE_ENV_MAX)
		return smtp_queue_pfail(ps, "envelope of %zu bytes, over the "
		    "limit of %d", ps->total, SMTP_QUEUE_ENV_MAX);
	if (smtp_queue_parse_head(ps, id, env) < 0)
		return -1;
	/* Bounded by the file: no allocation from a number alone. */
	most = ps->total / SMTP_QUEUE_RCPT_MIN;
	if (smtp_queue_uint_field(ps, "recipients", UINT_MAX, &count) < 0)
		return -1;
	if (count == 0 || count > most)
		return smtp_queue_pfail(ps, "impossible number of recipients");
	env->rcpts = xcalloc((size_t)count, sizeof(*env->rcpts));
	while (env->rcpt_count < count) {
		if (smtp_queue_parse_rcpt(ps,
		    &env->rcpts[env->rcpt_count++]) < 0)
			return -1;
	}
	if (smtp_queue_field(ps, "end", false) < 0)
		return -1;
	if (ps->p != ps->end) {
		ps->line++;
		return smtp_queue_pfail(ps, "data after the \"end\" line");
	}
	return 0;
}

static void
smtp_queue_env_clear(struct smtp_queue_env *env)
{
	unsigned int i;

	for (i = 0; i < env->rcpt_count; i++) {
		free(env->rcpts[i].addr);
		free(env->rcpts[i].orcpt);
		free(env->rcpts[i].diag);
	}
	free(env->rcpts);
	free(env->sender);
	free(env->envid);
	if (env->lock_fd >= 0)
		close(env->lock_fd);
	memset(env, 0, sizeof(*env));
	env->lock_fd = -1;
}

static struct smtp_queue_env *
smtp_queue_env_new(void)
{
	struct smtp_queue_env *env = xcalloc(1, sizeof(*env));

	env->lock_fd = -1;
	return env;
}

int
smtp_queue_env_parse(const char *id, const unsigned char *data, size_t len,
    struct smtp_queue_env **env_r, unsigned int *line_r,
    const char **error_r)
{
	struct smtp_queue_parser ps;
	struct smtp_queue_env *env = smtp_queue_env_new();

	memset(&ps, 0, sizeof(ps));
	ps.p = data;
	ps.end = data + len;
	ps.total = len;
	if (smtp_queue_parse(&ps, id, env) < 0) {
		smtp_queue_env_free(&env);
		*line_r = ps.total > SMTP_QUEUE_ENV_MAX ? 0 : ps.line;
		if (*line_r == 0)
			*error_r = smtp_queue_fail("%s", ps.reason);
		else
			*error_r = smtp_queue_fail("line %u: %s", ps.line,
			    ps.reason);
		return -1;
	}
	*env_r = env;
	return 0;
}

void
smtp_queue_env_free(struct smtp_queue_env **envp)
{
	if (*envp == NULL)
		return;
	smtp_queue_env_clear(*envp);
	free(*envp);
	*envp = NULL;
}

/*
 * Receiving a message.
 */

/* smtp_queue_msg_free: close, and remove every name the message still
 * has: the envelope first, so that it leaves the queue before its
 * content. errno is kept. */
static void
smtp_queue_msg_free(struct smtp_queue_msg *msg)
{
	struct smtp_queue *q = msg->q;
	char name[SMTP_QUEUE_ID_MAX + 2];
	int saved = errno;

	snprintf(name, sizeof(name), "%s.e", msg->env.id);
	if (msg->names & SMTP_QUEUE_NAME_ENV) {
		unlinkat(q->fd[SMTP_QUEUE_DIR_ENV], msg->env.id, 0);
		fsync(q->fd[SMTP_QUEUE_DIR_ENV]);
	}
	if (msg->names & SMTP_QUEUE_NAME_ENVTMP)
		unlinkat(q->fd[SMTP_QUEUE_DIR_TMP], name, 0);
	if (msg->names & SMTP_QUEUE_NAME_DATA)
		unlinkat(q->fd[SMTP_QUEUE_DIR_DATA], msg->env.id, 0);
	if (msg->names & SMTP_QUEUE_NAME_TMP)
		unlinkat(q->fd[SMTP_QUEUE_DIR_TMP], msg->env.id, 0);
	if (msg->fd >= 0)
		close(msg->fd);
	smtp_queue_env_clear(&msg->env);
	free(msg);
	errno = saved;
}

/* smtp_queue_create: make a fresh ID whose name is free everywhere and
 * create tmp/ID, locked (the lock goes with the inode into data/, so that
 * no one takes the message before the commit is over). */
static int
smtp_queue_create(struct smtp_queue_msg *msg, const char **error_r)
{
	struct smtp_queue *q = msg->q;
	uint64_t us;
	int tries, used;

	for (tries = 0; tries < SMTP_QUEUE_ID_TRIES; tries++) {
		smtp_queue_id_make(msg->env.id, &us);
		used = smtp_queue_exists(q, SMTP_QUEUE_DIR_DATA, msg->env.id);
		if (used == 0)
			used = smtp_queue_exists(q, SMTP_QUEUE_DIR_ENV,
			    msg->env.id);
		if (used < 0)
			break;
		if (used > 0)
			continue;
		msg->fd = openat(q->fd[SMTP_QUEUE_DIR_TMP], msg->env.id,
		    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		    0600);
		if (msg->fd < 0 && errno == EEXIST)
			continue;
		if (msg->fd < 0)
			break;
		msg->names |= SMTP_QUEUE_NAME_TMP;
		if (flock(msg->fd, LOCK_EX | LOCK_NB) < 0)
			break;
		msg->env.arrival = (time_t)(us / 1000000);
		msg->env.arrival_usec = (unsigned int)(us % 1000000);
		return 0;
	}
	if (tries == SMTP_QUEUE_ID_TRIES)
		errno = EEXIST;
	*error_r = smtp_queue_sysfail("create", SMTP_QUEUE_DIR_TMP,
	    msg->env.id);
	return -1;
}

int
smtp_queue_begin(struct smtp_queue *q, const char *sender,
    unsigned int max_rcpts, struct smtp_queue_msg **msg_r,
    const char **error_r)
{
	struct smtp_queue_msg *msg;
	size_t len = strlen(sender);

	if (max_rcpts == 0) {
		*error_r = smtp_queue_fail("queue: no recipient allowed");
		return -1;
	}
	if (smtp_queue_addr_check("sender", sender, len, true, error_r) < 0)
		return -1;
	msg = xcalloc(1, sizeof(*msg));
	msg->q = q;
	msg->fd = -1;
	msg->env.lock_fd = -1;
	msg->max_rcpts = max_rcpts;
	msg->worst = SMTP_QUEUE_HDR_FIXED + SMTP_QUEUE_ESC * len;
	if (smtp_queue_create(msg, error_r) < 0) {
		smtp_queue_msg_free(msg);
		return -1;
	}
	msg->env.sender = xstrdup(sender);
	msg->env.bounce = len == 0;
	*msg_r = msg;
	return 0;
}

const char *
smtp_queue_msg_id(const struct smtp_queue_msg *msg)
{
	return msg->env.id;
}

int
smtp_queue_set_dsn(struct smtp_queue_msg *msg, const char *envid,
    enum smtp_ret ret, const char **error_r)
{
	size_t old = msg->env.envid == NULL ? 0 : strlen(msg->env.envid);

	if (ret != SMTP_RET_NONE && ret != SMTP_RET_FULL &&
	    ret != SMTP_RET_HDRS) {
		*error_r = smtp_queue_fail("queue: bad RET value");
		return -1;
	}
	if (envid != NULL && smtp_queue_xtext_check("ENVID", envid,
	    strlen(envid), SMTP_QUEUE_ENVID_MAX, error_r) < 0)
		return -1;
	if (envid != NULL && SMTP_QUEUE_ESC * strlen(envid) >
	    SMTP_QUEUE_ENV_MAX - (msg->worst - SMTP_QUEUE_ESC * old)) {
		*error_r = smtp_queue_fail("queue: ENVID too long for this "
		    "many recipients");
		return -1;
	}
	msg->worst -= SMTP_QUEUE_ESC * old;
	free(msg->env.envid);
	msg->env.envid = envid == NULL ? NULL : xstrdup(envid);
	msg->worst += SMTP_QUEUE_ESC * (envid == NULL ? 0 : strlen(envid));
	msg->env.ret = ret;
	return 0;
}

/* smtp_queue_broken: a write failed: keep its error for later calls. */
static int
smtp_queue_broken(struct smtp_queue_msg *msg, const char **error_r)
{
	*error_r = smtp_queue_sysfail("write", SMTP_QUEUE_DIR_TMP,
	    msg->env.id);
	strlcpy(msg->error, *error_r, sizeof(msg->error));
	return -1;
}

static int
smtp_queue_flush(struct smtp_queue_msg *msg, const char **error_r)
{
	if (msg->wlen > 0 && smtp_queue_write_all(msg->fd, msg->wbuf,
	    msg->wlen, SMTP_QUEUE_STEP_WRITE) < 0)
		return smtp_queue_broken(msg, error_r);
	msg->wlen = 0;
	return 0;
}

int
smtp_queue_write(struct smtp_queue_msg *msg, const unsigned char *data,
    size_t len, const char **error_r)
{
	if (msg->error[0] != '\0') {
		*error_r = smtp_queue_fail("%s", msg->error);
		return -1;
	}
	if (len > UINT64_MAX - msg->env.size) {
		errno = EFBIG;
		return smtp_queue_broken(msg, error_r);
	}
	if (len > sizeof(msg->wbuf) - msg->wlen) {
		if (smtp_queue_flush(msg, error_r) < 0)
			return -1;
		/* Big pieces go straight to the file. */
		if (len >= sizeof(msg->wbuf)) {
			if (smtp_queue_write_all(msg->fd, data, len,
			    SMTP_QUEUE_STEP_WRITE) < 0)
				return smtp_queue_broken(msg, error_r);
			msg->env.size += len;
			return 0;
		}
	}
	memcpy(msg->wbuf + msg->wlen, data, len);
	msg->wlen += len;
	msg->env.size += len;
	return 0;
}

int
smtp_queue_add_rcpt(struct smtp_queue_msg *msg, const char *rcpt,
    const char *orcpt, unsigned int notify, const char **error_r)
{
	struct smtp_queue_rcpt *r;
	size_t len = strlen(rcpt), olen = orcpt == NULL ? 0 : strlen(orcpt);
	size_t worst = smtp_queue_rcpt_worst(len, olen);

	if (smtp_queue_addr_check("recipient", rcpt, len, false,
	    error_r) < 0 || (orcpt != NULL && smtp_queue_xtext_check("ORCPT",
	    orcpt, olen, SMTP_QUEUE_ORCPT_MAX, error_r) < 0))
		return -1;
	if (!smtp_queue_notify_valid(notify)) {
		*error_r = smtp_queue_fail("queue: bad NOTIFY flags");
		return -1;
	}
	if (msg->env.rcpt_count >= msg->max_rcpts) {
		*error_r = smtp_queue_fail("queue: too many recipients (at "
		    "most %u)", msg->max_rcpts);
		return -1;
	}
	if (worst > SMTP_QUEUE_ENV_MAX - msg->worst) {
		*error_r = smtp_queue_fail("queue: too many recipients for "
		    "one queue file");
		return -1;
	}
	if (msg->env.rcpt_count == msg->rcpt_alloc) {
		msg->rcpt_alloc = msg->rcpt_alloc == 0 ? 8 :
		    msg->rcpt_alloc * 2;
		msg->env.rcpts = xreallocarray(msg->env.rcpts,
		    msg->rcpt_alloc, sizeof(*msg->env.rcpts));
	}
	r = &msg->env.rcpts[msg->env.rcpt_count++];
	memset(r, 0, sizeof(*r));
	r->addr = xstrdup(rcpt);
	r->orcpt = orcpt == NULL ? NULL : xstrdup(orcpt);
	r->notify = notify;
	r->state = SMTP_QUEUE_PENDING;
	msg->worst += worst;
	return 0;
}

/* smtp_queue_write_file: tmp/name with data, fsynced; the steps are the
 * hook's. excl: the name must be new (commit), else it is overwritten (a
 * save's leftover). 0 or -1 (error set, tmp/name removed). */
static int
smtp_queue_write_file(struct smtp_queue *q, const char *name,
    const struct buf *data, bool excl, enum smtp_queue_step write_step,
    enum smtp_queue_step fsync_step, const char **error_r)
{
	const char *what = "create";
	int fd, saved;

	fd = openat(q->fd[SMTP_QUEUE_DIR_TMP], name, O_WRONLY | O_CREAT |
	    O_NOFOLLOW | O_CLOEXEC | (excl ? O_EXCL : O_TRUNC), 0600);
	if (fd < 0) {
		*error_r = smtp_queue_sysfail(what, SMTP_QUEUE_DIR_TMP, name);
		return -1;
	}
	if (smtp_queue_write_all(fd, data->data, data->len, write_step) < 0)
		what = "write";
	else if (smtp_queue_step(fsync_step) < 0 || fsync(fd) < 0)
		what = "fsync";
	else if (close(fd) == 0)
		return 0;
	else {
		fd = -1;
		what = "close";
	}
	*error_r = smtp_queue_sysfail(what, SMTP_QUEUE_DIR_TMP, name);
	saved = errno;
	if (fd >= 0)
		close(fd);
	unlinkat(q->fd[SMTP_QUEUE_DIR_TMP], name, 0);
	errno = saved;
	return -1;
}

/* smtp_queue_content_in: the content safe in data/ID: fsynced, linked
 * (link refuses an existing name), the tmp name gone, data/ fsynced. */
static int
smtp_queue_content_in(struct smtp_queue_msg *msg, const char **error_r)
{
	struct smtp_queue *q = msg->q;
	const char *id = msg->env.id;

	if (smtp_queue_flush(msg, error_r) < 0)
		return -1;
	if (smtp_queue_step(SMTP_QUEUE_STEP_DATA_FSYNC) < 0 ||
	    fsync(msg->fd) < 0) {
		*error_r = smtp_queue_sysfail("fsync", SMTP_QUEUE_DIR_TMP, id);
		return -1;
	}
	if (smtp_queue_step(SMTP_QUEUE_STEP_DATA_LINK) < 0 ||
	    linkat(q->fd[SMTP_QUEUE_DIR_TMP], id, q->fd[SMTP_QUEUE_DIR_DATA],
	    id, 0) < 0) {
		*error_r = smtp_queue_sysfail("link", SMTP_QUEUE_DIR_DATA, id);
		return -1;
	}
	msg->names |= SMTP_QUEUE_NAME_DATA;
	if (smtp_queue_step(SMTP_QUEUE_STEP_TMP_UNLINK) < 0 ||
	    unlinkat(q->fd[SMTP_QUEUE_DIR_TMP], id, 0) < 0) {
		*error_r = smtp_queue_sysfail("unlink", SMTP_QUEUE_DIR_TMP, id);
		return -1;
	}
	msg->names &= ~SMTP_QUEUE_NAME_TMP;
	if (smtp_queue_step(SMTP_QUEUE_STEP_DATA_DIRSYNC) < 0 ||
	    fsync(q->fd[SMTP_QUEUE_DIR_DATA]) < 0) {
		*error_r = smtp_queue_sysfail("fsync", SMTP_QUEUE_DIR_DATA, "");
		return -1;
	}
	return 0;
}

/* smtp_queue_envelope_in: the envelope written and fsynced in tmp/, then
 * renamed into env/ (the commit point), env/ fsynced. */
static int
smtp_queue_envelope_in(struct smtp_queue_msg *msg, const struct buf *text,
    const char **error_r)
{
	struct smtp_queue *q = msg->q;
	const char *id = msg->env.id;
	char name[SMTP_QUEUE_ID_MAX + 2];

	snprintf(name, sizeof(name), "%s.e", id);
	msg->names |= SMTP_QUEUE_NAME_ENVTMP;
	if (smtp_queue_write_file(q, name, text, true,
	    SMTP_QUEUE_STEP_ENV_WRITE, SMTP_QUEUE_STEP_ENV_FSYNC,
	    error_r) < 0)
		return -1;
	if (smtp_queue_step(SMTP_QUEUE_STEP_ENV_RENAME) < 0 ||
	    renameat(q->fd[SMTP_QUEUE_DIR_TMP], name,
	    q->fd[SMTP_QUEUE_DIR_ENV], id) < 0) {
		*error_r = smtp_queue_sysfail("rename", SMTP_QUEUE_DIR_ENV, id);
		return -1;
	}
	msg->names &= ~SMTP_QUEUE_NAME_ENVTMP;
	msg->names |= SMTP_QUEUE_NAME_ENV;
	/* Should this fail, the message may not survive a crash: it is
	 * taken out again (still locked by us: nobody has started on it). */
	if (smtp_queue_step(SMTP_QUEUE_STEP_ENV_DIRSYNC) < 0 ||
	    fsync(q->fd[SMTP_QUEUE_DIR_ENV]) < 0) {
		*error_r = smtp_queue_sysfail("fsync", SMTP_QUEUE_DIR_ENV, "");
		return -1;
	}
	return 0;
}

static int
smtp_queue_commit_steps(struct smtp_queue_msg *msg, const char **error_r)
{
	struct buf text;
	int r;

	if (msg->error[0] != '\0') {
		*error_r = smtp_queue_fail("%s", msg->error);
		return -1;
	}
	if (msg->env.rcpt_count == 0) {
		*error_r = smtp_queue_fail("queue: no recipients");
		return -1;
	}
	buf_init(&text, SMTP_QUEUE_ENV_MAX);
	r = smtp_queue_env_format(&msg->env, &text, error_r);
	if (r == 0)
		r = smtp_queue_content_in(msg, error_r);
	if (r == 0)
		r = smtp_queue_envelope_in(msg, &text, error_r);
	buf_free(&text);
	if (r == 0) {
		msg->names = 0;
		if (smtp_queue_test_hook != NULL)
			(void)smtp_queue_test_hook(SMTP_QUEUE_STEP_COMMITTED);
	}
	return r;
}

int
smtp_queue_commit(struct smtp_queue_msg **msgp, char id_r[SMTP_QUEUE_ID_MAX],
    const char **error_r)
{
	struct smtp_queue_msg *msg = *msgp;
	int r;

	*msgp = NULL;
	strlcpy(id_r, msg->env.id, SMTP_QUEUE_ID_MAX);
	r = smtp_queue_commit_steps(msg, error_r);
	smtp_queue_msg_free(msg);
	return r;
}

void
smtp_queue_abort(struct smtp_queue_msg **msgp)
{
	if (*msgp == NULL)
		return;
	smtp_queue_msg_free(*msgp);
	*msgp = NULL;
}

/*
 * Committing off the caller's thread. A commit waits for four fsyncs,
 * milliseconds each on a busy disk; a process serving many clients on one
 * event loop would make all of them wait for each one's. A committer's
 * threads run whole commits, several at once, and the file system joins
 * the fsyncs that are waiting at the same moment into one journal commit
 * (group commit, done by the kernel): four clients committing together
 * cost about what one did. The commit is exactly smtp_queue_commit, so
 * the order of the steps and the crash-safety argument do not change.
 */

struct smtp_queue_job {
	struct smtp_queue_job *next;
	struct smtp_queue_msg *msg;	/* owned until the commit ran */
	void *ctx;			/* the caller's */
	int result;
	int error_errno;
	char id[SMTP_QUEUE_ID_MAX];
	char error[512];
};

struct smtp_queue_committer {
	pthread_mutex_t mutex;
	pthread_cond_t cond;		/* a job to run, or stopping */
	struct smtp_queue_job *waiting, **waiting_tail;	/* owned, FIFO */
	struct smtp_queue_job *done, **done_tail;	/* owned, FIFO */
	unsigned int outstanding;	/* submitted, not reaped */
	bool stopping;
	int event_fd;			/* readable: something is done */
	pthread_t *threads;		/* owned */
	unsigned int nthreads;
};

static void
smtp_queue_committer_lock(struct smtp_queue_committer *c)
{
	int err = pthread_mutex_lock(&c->mutex);

	if (err != 0)
		log_panic("smtp_queue: mutex: %s", strerror(err));
}

static void
smtp_queue_committer_unlock(struct smtp_queue_committer *c)
{
	(void)pthread_mutex_unlock(&c->mutex);
}

/* A worker: take the oldest job, commit it, hand it back, wake the
 * caller's loop. Ends when stopping and nothing is left to do. */
static void *
smtp_queue_committer_run(void *arg)
{
	struct smtp_queue_committer *c = arg;
	struct smtp_queue_job *job;
	const char *error = "";
	uint64_t one = 1;

	for (;;) {
		smtp_queue_committer_lock(c);
		while (c->waiting == NULL && !c->stopping)
			(void)pthread_cond_wait(&c->cond, &c->mutex);
		if ((job = c->waiting) == NULL) {
			smtp_queue_committer_unlock(c);
			return NULL;
		}
		if ((c->waiting = job->next) == NULL)
			c->waiting_tail = &c->waiting;
		smtp_queue_committer_unlock(c);

		job->result = smtp_queue_commit(&job->msg, job->id, &error);
		job->error_errno = job->result < 0 ? errno : 0;
		if (job->result < 0)
			strlcpy(job->error, error, sizeof(job->error));

		smtp_queue_committer_lock(c);
		job->next = NULL;
		*c->done_tail = job;
		c->done_tail = &job->next;
		smtp_queue_committer_unlock(c);
		/* An eventfd counter cannot overflow here (one per job). */
		while (write(c->event_fd, &one, sizeof(one)) < 0 &&
		    errno == EINTR)
			;
	}
}

int
smtp_queue_committer_new(unsigned int threads,
    struct smtp_queue_committer **c_r, const char **error_r)
{
	struct smtp_queue_committer *c;
	pthread_attr_t attr;
	int err = 0;

	if (threads == 0 || threads > SMTP_QUEUE_COMMIT_THREADS_MAX) {
		*error_r = smtp_queue_fail("queue: %u commit threads (1 to "
		    "%u)", threads, SMTP_QUEUE_COMMIT_THREADS_MAX);
		return -1;
	}
	c = xcalloc(1, sizeof(*c));
	c->waiting_tail = &c->waiting;
	c->done_tail = &c->done;
	c->threads = xreallocarray(NULL, threads, sizeof(*c->threads));
	if ((c->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		*error_r = smtp_queue_fail("queue: eventfd: %s",
		    strerror(errno));
		free(c->threads);
		free(c);
		return -1;
	}
	(void)pthread_mutex_init(&c->mutex, NULL);
	(void)pthread_cond_init(&c->cond, NULL);
	/* A commit needs little stack: its buffers are on the heap. */
	(void)pthread_attr_init(&attr);
	(void)pthread_attr_setstacksize(&attr, SMTP_QUEUE_COMMIT_STACK);
	while (c->nthreads < threads && (err = pthread_create(
	    &c->threads[c->nthreads], &attr, smtp_queue_committer_run,
	    c)) == 0)
		c->nthreads++;
	(void)pthread_attr_destroy(&attr);
	if (err != 0) {
		*error_r = smtp_queue_fail("queue: starting a commit thread: "
		    "%s", strerror(err));
		smtp_queue_committer_free(&c, NULL);
		return -1;
	}
	*c_r = c;
	return 0;
}

int
smtp_queue_committer_fd(const struct smtp_queue_committer *c)
{
	return c->event_fd;
}

unsigned int
smtp_queue_committer_outstanding(const struct smtp_queue_committer *c)
{
	return c->outstanding;
}

void
smtp_queue_commit_submit(struct smtp_queue_committer *c,
    struct smtp_queue_msg **msgp, void *ctx)
{
	struct smtp_queue_job *job = xcalloc(1, sizeof(*job));

	job->msg = *msgp;
	*msgp = NULL;
	job->ctx = ctx;
	smtp_queue_committer_lock(c);
	if (c->stopping)
		log_panic("smtp_queue_commit_submit: the committer stops");
	*c->waiting_tail = job;
	c->waiting_tail = &job->next;
	c->outstanding++;
	(void)pthread_cond_signal(&c->cond);
	smtp_queue_committer_unlock(c);
}

unsigned int
smtp_queue_commit_reap(struct smtp_queue_committer *c,
    smtp_queue_commit_cb *cb)
{
	struct smtp_queue_job *list, *job;
	uint64_t count;
	unsigned int n = 0;

	/* Reset the counter first: a job finishing after our look at the
	 * list writes it again, so the loop is woken for it. */
	(void)read(c->event_fd, &count, sizeof(count));
	smtp_queue_committer_lock(c);
	list = c->done;
	c->done = NULL;
	c->done_tail = &c->done;
	smtp_queue_committer_unlock(c);
	while ((job = list) != NULL) {
		list = job->next;
		c->outstanding--;
		n++;
		errno = job->error_errno;
		if (cb != NULL)
			cb(job->ctx, job->result, job->id,
			    job->result < 0 ? job->error : NULL);
		free(job);
	}
	return n;
}

void
smtp_queue_committer_free(struct smtp_queue_committer **cp,
    smtp_queue_commit_cb *cb)
{
	struct smtp_queue_committer *c = *cp;

	if (c == NULL)
		return;
	*cp = NULL;
	smtp_queue_committer_lock(c);
	c->stopping = true;
	(void)pthread_cond_broadcast(&c->cond);
	smtp_queue_committer_unlock(c);
	/* The threads run what was submitted before they end. */
	for (unsigned int i = 0; i < c->nthreads; i++)
		(void)pthread_join(c->threads[i], NULL);
	(void)smtp_queue_commit_reap(c, cb);
	(void)pthread_mutex_destroy(&c->mutex);
	(void)pthread_cond_destroy(&c->cond);
	close(c->event_fd);
	free(c->threads);
	free(c);
}

/*
 * Messages in the queue.
 */

/* smtp_queue_lock: open data/ID and lock it without waiting: 1 and *fd_r,
 * 0 no content (or removed while we locked), SMTP_QUEUE_LOCKED, -1. */
static int
smtp_queue_lock(struct smtp_queue *q, const char *id, int *fd_r,
    const char **error_r)
{
	struct stat st, now;
	int fd;

	fd = openat(q->fd[SMTP_QUEUE_DIR_DATA], id, O_RDONLY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0) {
		*error_r = smtp_queue_sysfail("open", SMTP_QUEUE_DIR_DATA, id);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		close(fd);
		if (errno == EWOULDBLOCK)
			return SMTP_QUEUE_LOCKED;
		*error_r = smtp_queue_sysfail("lock", SMTP_QUEUE_DIR_DATA, id);
		return -1;
	}
	/* The one who held the lock may have removed the message. */
	if (fstat(fd, &st) < 0 || fstatat(q->fd[SMTP_QUEUE_DIR_DATA], id,
	    &now, AT_SYMLINK_NOFOLLOW) < 0 || st.st_ino != now.st_ino ||
	    st.st_dev != now.st_dev) {
		close(fd);
		return 0;
	}
	*fd_r = fd;
	return 1;
}

/* smtp_queue_read_env: env/ID's bytes (one more than the limit at most,
 * for the parser to refuse): 1, 0 absent, -1. */
static int
smtp_queue_read_env(struct smtp_queue *q, const char *id,
    unsigned char **data_r, size_t *len_r, const char **error_r)
{
	struct stat st;
	unsigned char *data;
	size_t want, got = 0;
	ssize_t n = 0;
	int fd;

	fd = openat(q->fd[SMTP_QUEUE_DIR_ENV], id, O_RDONLY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0 || fstat(fd, &st) < 0) {
		*error_r = smtp_queue_sysfail("open", SMTP_QUEUE_DIR_ENV, id);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	want = st.st_size > SMTP_QUEUE_ENV_MAX ? SMTP_QUEUE_ENV_MAX + 1 :
	    (size_t)st.st_size;
	data = xmalloc(want + 1);
	while (got < want && ((n = read(fd, data + got, want - got)) > 0 ||
	    (n < 0 && errno == EINTR)))
		got += n > 0 ? (size_t)n : 0;
	if (got < want && n < 0) {
		*error_r = smtp_queue_sysfail("read", SMTP_QUEUE_DIR_ENV, id);
		close(fd);
		free(data);
		return -1;
	}
	close(fd);
	*data_r = data;
	*len_r = got;
	return 1;
}

/* smtp_queue_quarantine: move a damaged message to corrupt/: its content
 * first, so that a crash in between leaves an envelope without content
 * (found and moved by the next locked load), never a content without an
 * envelope (which cleanup would delete). */
static int
smtp_queue_quarantine(struct smtp_queue *q, const char *id)
{
	char name[SMTP_QUEUE_ID_MAX + 2];
	int r = 0;

	snprintf(name, sizeof(name), "%s.d", id);
	if (renameat(q->fd[SMTP_QUEUE_DIR_DATA], id,
	    q->fd[SMTP_QUEUE_DIR_CORRUPT], name) < 0 && errno != ENOENT)
		r = -1;
	if (r == 0 && fsync(q->fd[SMTP_QUEUE_DIR_CORRUPT]) < 0)
		r = -1;
	name[SMTP_QUEUE_ID_LEN + 1] = 'e';
	if (r == 0 && renameat(q->fd[SMTP_QUEUE_DIR_ENV], id,
	    q->fd[SMTP_QUEUE_DIR_CORRUPT], name) < 0 && errno != ENOENT)
		r = -1;
	if (r == 0 && (fsync(q->fd[SMTP_QUEUE_DIR_CORRUPT]) < 0 ||
	    fsync(q->fd[SMTP_QUEUE_DIR_ENV]) < 0))
		r = -1;
	return r;
}

/* smtp_queue_damaged: quarantine id; the error names file and line. */
static int
smtp_queue_damaged(struct smtp_queue *q, const char *id, const char *why,
    const char **error_r)
{
	char reason[512];

	strlcpy(reason, why, sizeof(reason));
	if (smtp_queue_quarantine(q, id) < 0)
		*error_r = smtp_queue_fail("queue: %s/env/%s: %s; moving it "
		    "to corrupt/ failed: %s", q->path, id, reason,
		    strerror(errno));
	else
		*error_r = smtp_queue_fail("queue: %s/env/%s: %s; moved to "
		    "%s/corrupt/%s.e", q->path, id, reason, q->path, id);
	return -1;
}

/* smtp_queue_lock_env: lock id for a load; an envelope whose content is
 * missing is damaged. As smtp_queue_lock. */
static int
smtp_queue_lock_env(struct smtp_queue *q, const char *id, int *fd_r,
    const char **error_r)
{
	int r;

	r = smtp_queue_lock(q, id, fd_r, error_r);
	if (r != 0)
		return r;
	switch (smtp_queue_exists(q, SMTP_QUEUE_DIR_ENV, id)) {
	case 0:
		return 0;
	case 1:
		return smtp_queue_damaged(q, id, "no content file", error_r);
	default:
		*error_r = smtp_queue_sysfail("stat", SMTP_QUEUE_DIR_ENV, id);
		return -1;
	}
}

int
smtp_queue_load(struct smtp_queue *q, const char *id, unsigned int flags,
    struct smtp_queue_env **env_r, const char **error_r)
{
	unsigned char *data;
	unsigned int line;
	size_t len;
	int r, lock_fd = -1;

	if (smtp_queue_id_check(id, error_r) < 0)
		return -1;
	if ((flags & SMTP_QUEUE_LOCK) != 0 &&
	    (r = smtp_queue_lock_env(q, id, &lock_fd, error_r)) != 1)
		return r;
	r = smtp_queue_read_env(q, id, &data, &len, error_r);
	if (r == 1) {
		r = smtp_queue_env_parse(id, data, len, env_r, &line, error_r);
		free(data);
		if (r < 0)
			r = smtp_queue_damaged(q, id, *error_r, error_r);
		else
			r = 1;
	}
	if (r == 1)
		(*env_r)->lock_fd = lock_fd;
	else if (lock_fd >= 0)
		close(lock_fd);
	return r;
}

int
smtp_queue_save(struct smtp_queue *q, const struct smtp_queue_env *env,
    const char **error_r)
{
	char name[SMTP_QUEUE_ID_MAX + 2];
	struct buf text;
	int r;

	if (env->lock_fd < 0)
		log_panic("smtp_queue_save: %s is not locked", env->id);
	snprintf(name, sizeof(name), "%s.s", env->id);
	buf_init(&text, SMTP_QUEUE_ENV_MAX);
	r = smtp_queue_env_format(env, &text, error_r);
	if (r == 0)
		r = smtp_queue_write_file(q, name, &text, false,
		    SMTP_QUEUE_STEP_SAVE_WRITE, SMTP_QUEUE_STEP_SAVE_FSYNC,
		    error_r);
	buf_free(&text);
	if (r < 0)
		return -1;
	/* Removed behind our back (not through this API): do not bring
	 * back an envelope whose content may be gone. */
	if (smtp_queue_exists(q, SMTP_QUEUE_DIR_ENV, env->id) != 1) {
		*error_r = smtp_queue_fail("queue: %s was removed meanwhile",
		    env->id);
		unlinkat(q->fd[SMTP_QUEUE_DIR_TMP], name, 0);
		return -1;
	}
	if (smtp_queue_step(SMTP_QUEUE_STEP_SAVE_RENAME) < 0 ||
	    renameat(q->fd[SMTP_QUEUE_DIR_TMP], name,
	    q->fd[SMTP_QUEUE_DIR_ENV], env->id) < 0) {
		*error_r = smtp_queue_sysfail("rename", SMTP_QUEUE_DIR_ENV,
		    env->id);
		unlinkat(q->fd[SMTP_QUEUE_DIR_TMP], name, 0);
		return -1;
	}
	if (smtp_queue_step(SMTP_QUEUE_STEP_SAVE_DIRSYNC) < 0 ||
	    fsync(q->fd[SMTP_QUEUE_DIR_ENV]) < 0) {
		*error_r = smtp_queue_sysfail("fsync", SMTP_QUEUE_DIR_ENV, "");
		return -1;
	}
	return 0;
}

void
smtp_queue_rcpt_reported(struct smtp_queue_env *env, unsigned int i)
{
	if (i < env->rcpt_count && env->rcpts[i].state == SMTP_QUEUE_FAILED)
		env->rcpts[i].state = SMTP_QUEUE_BOUNCED;
}

void
smtp_queue_rcpt_result(struct smtp_queue_env *env, unsigned int i,
    enum smtp_queue_state state, time_t now, time_t next,
    const unsigned char *diag, size_t diag_len)
{
	struct smtp_queue_rcpt *r;

	if (i >= env->rcpt_count || (unsigned int)state > SMTP_QUEUE_DEFERRED)
		log_panic("smtp_queue_rcpt_result: recipient %u of %u, "
		    "state %d", i, env->rcpt_count, (int)state);
	r = &env->rcpts[i];
	r->state = state;
	if (r->attempts < UINT_MAX)
		r->attempts++;
	r->last_attempt = now;
	r->next_attempt = state == SMTP_QUEUE_DEFERRED ? next : 0;
	free(r->diag);
	r->diag = NULL;
	r->diag_len = 0;
	if (diag != NULL) {
		r->diag_len = diag_len > SMTP_QUEUE_DIAG_MAX ?
		    SMTP_QUEUE_DIAG_MAX : diag_len;
		r->diag = xmalloc(r->diag_len + 1);
		memcpy(r->diag, diag, r->diag_len);
		r->diag[r->diag_len] = '\0';
	}
}

bool
smtp_queue_env_due(const struct smtp_queue_env *env, time_t *next_r)
{
	const struct smtp_queue_rcpt *r;
	bool due = false;
	time_t next = 0, t;
	unsigned int i;

	for (i = 0; i < env->rcpt_count; i++) {
		r = &env->rcpts[i];
		if (r->state != SMTP_QUEUE_PENDING &&
		    r->state != SMTP_QUEUE_DEFERRED)
			continue;
		t = r->state == SMTP_QUEUE_PENDING ? 0 : r->next_attempt;
		if (!due || t < next)
			next = t;
		due = true;
	}
	if (due && next_r != NULL)
		*next_r = next;
	return due;
}

int
smtp_queue_open_content(struct smtp_queue *q, const char *id, int *fd_r,
    uint64_t *size_r, const char **error_r)
{
	struct stat st;
	int fd, in;

	if (smtp_queue_id_check(id, error_r) < 0)
		return -1;
	fd = openat(q->fd[SMTP_QUEUE_DIR_DATA], id, O_RDONLY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0 || fstat(fd, &st) < 0) {
		*error_r = smtp_queue_sysfail("open", SMTP_QUEUE_DIR_DATA, id);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	/* A content without an envelope is no message (yet, or any more). */
	in = smtp_queue_exists(q, SMTP_QUEUE_DIR_ENV, id);
	if (in != 1 || !S_ISREG(st.st_mode)) {
		if (in < 0)
			*error_r = smtp_queue_sysfail("stat",
			    SMTP_QUEUE_DIR_ENV, id);
		close(fd);
		return in < 0 ? -1 : 0;
	}
	*fd_r = fd;
	*size_r = (uint64_t)st.st_size;
	return 1;
}

/* smtp_queue_unlink_locked: remove a message we hold locked: envelope
 * (the message leaves the queue; made durable), then content. 1, 0 (no
 * envelope: not in the queue), -1. */
static int
smtp_queue_unlink_locked(struct smtp_queue *q, const char *id,
    const char **error_r)
{
	if (unlinkat(q->fd[SMTP_QUEUE_DIR_ENV], id, 0) < 0) {
		if (errno == ENOENT)
			return 0;
		*error_r = smtp_queue_sysfail("unlink", SMTP_QUEUE_DIR_ENV, id);
		return -1;
	}
	if (fsync(q->fd[SMTP_QUEUE_DIR_ENV]) < 0) {
		*error_r = smtp_queue_sysfail("fsync", SMTP_QUEUE_DIR_ENV, "");
		return -1;
	}
	/* A content left here by a crash now is cleanup's. */
	if (unlinkat(q->fd[SMTP_QUEUE_DIR_DATA], id, 0) < 0 &&
	    errno != ENOENT) {
		*error_r = smtp_queue_sysfail("unlink", SMTP_QUEUE_DIR_DATA,
		    id);
		return -1;
	}
	return 1;
}

int
smtp_queue_remove(struct smtp_queue *q, const char *id,
    const char **error_r)
{
	int fd = -1, r;

	if (smtp_queue_id_check(id, error_r) < 0)
		return -1;
	r = smtp_queue_lock(q, id, &fd, error_r);
	if (r == 1) {
		r = smtp_queue_unlink_locked(q, id, error_r);
		close(fd);
	} else if (r == 0) {
		/* An envelope without content: take it out too. */
		if (unlinkat(q->fd[SMTP_QUEUE_DIR_ENV], id, 0) == 0) {
			fsync(q->fd[SMTP_QUEUE_DIR_ENV]);
			r = 1;
		} else if (errno != ENOENT) {
			*error_r = smtp_queue_sysfail("unlink",
			    SMTP_QUEUE_DIR_ENV, id);
			r = -1;
		}
	}
	return r;
}

int
smtp_queue_env_remove(struct smtp_queue *q, struct smtp_queue_env **envp,
    const char **error_r)
{
	struct smtp_queue_env *env = *envp;
	int r;

	if (env->lock_fd < 0)
		log_panic("smtp_queue_env_remove: %s is not locked", env->id);
	r = smtp_queue_unlink_locked(q, env->id, error_r);
	if (r == 0)
		*error_r = smtp_queue_fail("queue: %s was removed meanwhile",
		    env->id);
	smtp_queue_env_free(envp);
	return r == 1 ? 0 : -1;
}

int
smtp_queue_env_remove_later(struct smtp_queue *q,
    struct smtp_queue_env **envp, const char **error_r)
{
	struct smtp_queue_env *env = *envp;
	int r = 0;

	if (env->lock_fd < 0)
		log_panic("smtp_queue_env_remove_later: %s is not locked",
		    env->id);
	if (unlinkat(q->fd[SMTP_QUEUE_DIR_ENV], env->id, 0) < 0) {
		*error_r = errno == ENOENT ?
		    smtp_queue_fail("queue: %s was removed meanwhile",
		    env->id) : smtp_queue_sysfail("unlink",
		    SMTP_QUEUE_DIR_ENV, env->id);
		r = -1;
	} else {
		if (q->ngone == q->gone_alloc) {
			q->gone_alloc = q->gone_alloc == 0 ? 16 :
			    q->gone_alloc * 2;
			q->gone = xreallocarray(q->gone, q->gone_alloc,
			    sizeof(*q->gone));
		}
		strlcpy(q->gone[q->ngone++], env->id, sizeof(*q->gone));
	}
	smtp_queue_env_free(envp);
	return r;
}

int
smtp_queue_removals_flush(struct smtp_queue *q, const char **error_r)
{
	size_t n = q->ngone;

	if (n == 0)
		return 0;
	q->ngone = 0;
	if (fsync(q->fd[SMTP_QUEUE_DIR_ENV]) < 0) {
		*error_r = smtp_queue_sysfail("fsync", SMTP_QUEUE_DIR_ENV, "");
		return -1;
	}
	/* Contents whose envelope is durably gone; one left by a crash
	 * before this point is cleanup's, as in smtp_queue_unlink_locked. */
	for (size_t i = 0; i < n; i++)
		if (unlinkat(q->fd[SMTP_QUEUE_DIR_DATA], q->gone[i], 0) < 0 &&
		    errno != ENOENT) {
			*error_r = smtp_queue_sysfail("unlink",
			    SMTP_QUEUE_DIR_DATA, q->gone[i]);
			return -1;
		}
	return 0;
}

int
smtp_queue_hold(struct smtp_queue *q, const char *id, bool hold,
    const char **error_r)
{
	struct smtp_queue_env *env;
	int r;

	r = smtp_queue_load(q, id, SMTP_QUEUE_LOCK, &env, error_r);
	if (r != 1)
		return r;
	env->hold = hold;
	r = smtp_queue_save(q, env, error_r) < 0 ? -1 : 1;
	smtp_queue_env_free(&env);
	return r;
}

/*
 * Enumeration.
 */

static int
smtp_queue_id_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

int
smtp_queue_iter_new(struct smtp_queue *q, struct smtp_queue_iter **iter_r,
    const char **error_r)
{
	struct smtp_queue_iter *iter;
	struct dirent *d;
	size_t alloc = 0;
	DIR *dp;
	int fd;

	fd = openat(q->fd[SMTP_QUEUE_DIR_ENV], ".", O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC);
	if (fd < 0 || (dp = fdopendir(fd)) == NULL) {
		*error_r = smtp_queue_sysfail("open", SMTP_QUEUE_DIR_ENV, "");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	iter = xcalloc(1, sizeof(*iter));
	iter->q = q;
	while ((d = readdir(dp)) != NULL) {
		if (!smtp_queue_id_valid(d->d_name))
			continue;
		if (iter->count == alloc) {
			alloc = alloc == 0 ? 64 : alloc * 2;
			iter->ids = xreallocarray(iter->ids, alloc,
			    sizeof(*iter->ids));
		}
		strlcpy(iter->ids[iter->count++], d->d_name,
		    SMTP_QUEUE_ID_MAX);
	}
	closedir(dp);
	if (iter->count > 0)
		qsort(iter->ids, iter->count, sizeof(*iter->ids),
		    smtp_queue_id_cmp);
	*iter_r = iter;
	return 0;
}

int
smtp_queue_iter_next(struct smtp_queue_iter *iter,
    struct smtp_queue_env **env_r, const char **error_r)
{
	int r;

	while (iter->pos < iter->count) {
		r = smtp_queue_load(iter->q, iter->ids[iter->pos++], 0, env_r,
		    error_r);
		if (r != 0)
			return r;
	}
	return 0;
}

void
smtp_queue_iter_free(struct smtp_queue_iter **iterp)
{
	if (*iterp == NULL)
		return;
	free((*iterp)->ids);
	free(*iterp);
	*iterp = NULL;
}

/*
 * The retry schedule.
 */

int
smtp_queue_next_attempt(const struct smtp_queue_sched *sched,
    time_t arrival, unsigned int attempts, bool bounce, time_t now,
    time_t *next_r)
{
	uint64_t delay, max;
	time_t expiry;
	unsigned int i;

	expiry = arrival + (time_t)(bounce ? sched->bounce_queue_lifetime :
	    sched->maximal_queue_lifetime);
	if (now >= expiry)
		return 0;
	delay = sched->minimal_backoff_time;
	max = sched->maximal_backoff_time < delay ? delay :
	    sched->maximal_backoff_time;
	if (attempts == 0)
		delay = 0;
	/* Both below 2^32: doubling cannot overflow before it stops. */
	for (i = 1; i < attempts && delay > 0 && delay < max; i++)
		delay *= 2;
	if (delay > max)
		delay = max;
	*next_r = now + (time_t)delay > expiry ? expiry : now + (time_t)delay;
	return 1;
}
