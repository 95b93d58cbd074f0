/*
 * store_read.c: reading one message as a stream of its stored bytes
 * (Maildir: the file; mbox: the message un-escaped on the fly, read under
 * the mailbox lock one chunk at a time), with seeking for partial
 * fetches; and the mbox lock as every mailbox operation takes it.
 *
 * Trusts the index for where a message is, but checks it: a Maildir file
 * that is not there is looked for again after a sync, and an mbox message
 * must start with a From_ line at its indexed offset. The bytes are the
 * user's and are passed on, never interpreted beyond the mboxrd escaping.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compat/compat.h"
#include "fsutil.h"
#include "log.h"
#include "store_ops_private.h"
#include "xmalloc.h"

/* Bytes read from an mbox per lock: each lock costs a dotlock made and
 * removed, so chunks are large; a reader holds at most one, and one more
 * waits for the next reader (store_read_ahead). */
#define STORE_READ_CHUNK (64 * 1024)
/* How long a folder resolved for one message is taken as it was for the
 * next (store_read_memo), and an mbox chunk read for one message is used
 * for the next (store_read_ahead). */
#define STORE_READ_MEMO_MS 1000
/* How long an mbox must have been left alone before a chunk read from it
 * may be used again: a write in the same tick of the file times as the
 * write before could otherwise go unseen. */
#define STORE_READ_QUIET_SECS 2

/* mboxrd un-escaping as a byte state machine, so that a line split over
 * two chunks is handled exactly like one that is not. */
struct store_read_unescape {
	bool matching;		/* at a line start, inside ^>+From  */
	uint64_t gt;		/* '>' seen in the candidate prefix */
	unsigned k;		/* bytes of "From " matched after them */
	uint64_t fl_gt;		/* to emit: '>' ... */
	unsigned fl_pos, fl_k;	/* ... then "From "[fl_pos..fl_k) */
	bool have_held;		/* a byte to emit after the flush */
	unsigned char held;
};

/* An mbox file as fstat saw it: any write changes size, mtime or ctime,
 * a rewrite into a new file the inode. */
struct store_read_ident {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
};

/* A chunk of an mbox read under the lock, and when and from what. */
struct store_read_chunk {
	unsigned char *data;		/* owned, STORE_READ_CHUNK bytes */
	uint64_t off;			/* file offset of data[0] */
	size_t len;			/* bytes read there */
	struct store_read_ident id;	/* the file while they were read */
	bool quiet;			/* and it had not changed for
					   STORE_READ_QUIET_SECS: reusable */
	uint64_t read_ms;		/* CLOCK_MONOTONIC */
};

struct store_read {
	enum mailloc_format format;
	int fd;
	uint64_t stream_pos;		/* bytes handed out so far */
	/* mbox only */
	char *path;			/* owned */
	struct lock_opts lock;
	uint64_t start, pos, end;	/* file offsets: message, next raw
					   read, end of the message */
	struct store_read_unescape un;
	struct store_read_chunk raw;	/* data: NULL until the first read;
					   the message's part of it is
					   raw_pos..raw_len */
	size_t raw_pos, raw_len;
};

/*
 * Read-ahead between readers of an mbox. Each lock costs a dotlock made
 * and removed (files created and unlinked in the mail directory), which
 * for a POP3 client fetching small messages one after the other would be
 * most of the work. A reader reads a whole chunk under the lock, more
 * than its message when that is small, and leaves the chunk here when it
 * closes; the next reader uses it if its message starts inside it, the
 * file is the same (inode, size, mtime and ctime as seen under the lock)
 * and it was read less than STORE_READ_MEMO_MS ago. Every byte handed out
 * was read under the lock; what is reused is a copy from that moment, as
 * a reader that had read it then and sent it slowly would have sent.
 * Any write since (mutt rewriting in place, a delivery appending) moves
 * the file's times on, so it is not served stale: only a chunk of a file
 * that had been left alone for STORE_READ_QUIET_SECS when it was read is
 * kept, so that the times of a write cannot equal those before it.
 */
static struct store_read_chunk store_read_ahead;

/*
 * The folder the last store_read_open resolved, and from what. Resolving
 * checks that no symbolic link leads the path out of the mail root (a
 * realpath of each, a readlink per path component), which costs a POP3
 * client fetching the mailbox message after message more than reading
 * the messages. The same name under the same location resolves the same
 * way unless links change on disk, so the answer is reused for
 * STORE_READ_MEMO_MS: a link put in meanwhile is seen that much later.
 * The key is the strings, not the store (which may be closed and another
 * one opened at the same address); only successes are kept.
 */
struct store_read_memo {
	bool valid;
	uint64_t until_ms;		/* CLOCK_MONOTONIC */
	enum mailloc_format format;
	char root[PATH_MAX];		/* st->ml.root */
	char inbox[PATH_MAX];		/* st->ml.inbox, or "" */
	char folder[STORE_FOLDER_NAME_MAX + 1];	/* as asked */
	char canon[STORE_FOLDER_NAME_MAX + 1];	/* the answer */
	char path[PATH_MAX];
};

static struct store_read_memo store_read_memo;

/* What the index says about where a message is. */
struct store_read_loc {
	char location[MINDEX_KEY_MAX + 64];	/* Maildir */
	uint64_t mbox_offset;			/* mbox: the From_ line */
	uint64_t data_offset;			/* mbox: first header byte */
	uint64_t psize;				/* mbox: escaped bytes */
};

int
store_read_lock_mbox(const struct lock_opts *o, int fd, const char *path,
    struct lock_mbox **lk_r, const char **error_r)
{
	struct stat sb;
	uint64_t size;
	int ret;

	ret = lock_mbox_acquire(fd, path, o, lk_r, error_r);
	if (ret != 0 || !lock_mbox_recovered(*lk_r, &size))
		return ret;
	/* A loft process died holding the lock, maybe half-way through an
	 * append it never acknowledged: cut the file back to the size it
	 * noted, so nobody reads half a message. */
	if (fstat(fd, &sb) == 0 && (uint64_t)sb.st_size > size) {
		if (ftruncate(fd, (off_t)size) < 0 || fsync(fd) < 0) {
			*error_r = store_error("cannot cut back %s: %s", path,
			    strerror(errno));
			lock_mbox_release(lk_r);
			return -1;
		}
		log_warning("%s: removed %llu bytes left by a delivery that "
		    "was killed while writing", path,
		    (unsigned long long)((uint64_t)sb.st_size - size));
	}
	return 0;
}

/* Where uid is now: 1 found, 0 not in the index, -1 error. */
static int
store_read_locate(struct store *st, const char *folder, uint32_t uid,
    struct store_read_loc *loc_r, const char **error_r)
{
	struct mindex_txn *txn;
	struct mindex_folder f;
	struct mindex_msg m;
	int ret;

	if (mindex_begin(st->ix, false, &txn, error_r) < 0)
		return -1;
	ret = mindex_folder_get(txn, folder, &f);
	if (ret == 1)
		ret = mindex_msg_get(txn, f.id, uid, &m);
	if (ret == 1) {
		if (strlcpy(loc_r->location, m.location,
		    sizeof(loc_r->location)) >= sizeof(loc_r->location))
			ret = -1;
		loc_r->mbox_offset = m.mbox_offset;
		loc_r->data_offset = m.mbox_data_offset;
		loc_r->psize = m.psize;
	}
	mindex_abort(&txn);
	if (ret < 0)
		*error_r = store_error("cannot read the index: %s",
		    mindex_last_error());
	return ret;
}

/* Open the Maildir file of uid; after ENOENT (another reader renamed it
 * to change flags, or moved it from new/ to cur/) sync and look again. */
static enum store_op
store_read_open_maildir(struct store *st, const char *folder,
    const char *dir, uint32_t uid, int *fd_r, const char **error_r)
{
	struct store_read_loc loc;
	char path[PATH_MAX];
	int ret;

	for (int attempt = 0; attempt < 2; attempt++) {
		if (attempt > 0 && store_sync(st, folder, true, NULL,
		    error_r) < 0)
			return STORE_OP_TEMPFAIL;
		if ((ret = store_read_locate(st, folder, uid, &loc,
		    error_r)) < 0)
			return STORE_OP_TEMPFAIL;
		if (ret == 0)
			break;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
		    loc.location) >= sizeof(path)) {
			*error_r = "message path too long";
			return STORE_OP_TEMPFAIL;
		}
		if ((*fd_r = fsutil_open_read_noatime(path, 0)) >= 0)
			return STORE_OP_OK;
		if (errno != ENOENT) {
			*error_r = store_error("cannot open %s: %s", path,
			    strerror(errno));
			return STORE_OP_TEMPFAIL;
		}
	}
	*error_r = "message is no longer in the folder";
	return STORE_OP_NONEXISTENT;
}

static uint64_t
store_read_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int
store_read_ident_of(int fd, struct store_read_ident *id_r)
{
	struct stat sb;

	if (fstat(fd, &sb) < 0)
		return -1;
	memset(id_r, 0, sizeof(*id_r));
	id_r->dev = sb.st_dev;
	id_r->ino = sb.st_ino;
	id_r->size = sb.st_size;
	id_r->mtime = sb.st_mtim;
	id_r->ctime = sb.st_ctim;
	return 0;
}

static bool
store_read_ident_same(const struct store_read_ident *a,
    const struct store_read_ident *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	    a->mtime.tv_sec == b->mtime.tv_sec &&
	    a->mtime.tv_nsec == b->mtime.tv_nsec &&
	    a->ctime.tv_sec == b->ctime.tv_sec &&
	    a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* Had the file been left alone for STORE_READ_QUIET_SECS? */
static bool
store_read_ident_quiet(const struct store_read_ident *id)
{
	struct timespec now;
	time_t last = id->mtime.tv_sec > id->ctime.tv_sec ?
	    id->mtime.tv_sec : id->ctime.tv_sec;

	return clock_gettime(CLOCK_REALTIME, &now) == 0 &&
	    now.tv_sec - last >= STORE_READ_QUIET_SECS;
}

/* A chunk of the mbox from off into r->raw, under the lock, held for this
 * read only (and the fstat that lets another reader reuse it). */
static int
store_read_pread(struct store_read *r, uint64_t off, const char **error_r)
{
	struct store_read_chunk *c = &r->raw;
	struct lock_mbox *lk;
	ssize_t n;
	int ret;

	if (c->data == NULL)
		c->data = xmalloc(STORE_READ_CHUNK);
	c->quiet = false;
	ret = store_read_lock_mbox(&r->lock, r->fd, r->path, &lk, error_r);
	if (ret != 0) {
		if (ret == LOCK_TIMEOUT)
			*error_r = "mailbox is locked";
		return -1;
	}
	do
		n = pread(r->fd, c->data, STORE_READ_CHUNK, (off_t)off);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		*error_r = store_error("cannot read %s: %s", r->path,
		    strerror(errno));
	/* Not to be reused if this fails: the chunk is only ours then. */
	else
		c->quiet = store_read_ident_of(r->fd, &c->id) == 0 &&
		    store_read_ident_quiet(&c->id);
	lock_mbox_release(&lk);
	if (n < 0) {
		c->len = 0;
		return -1;
	}
	c->off = off;
	c->len = (size_t)n;
	c->read_ms = store_read_now_ms();
	return 0;
}

/* Back to the first byte of the message. */
static void
store_read_rewind(struct store_read *r)
{
	r->pos = r->start;
	r->raw_pos = r->raw_len = 0;
	memset(&r->un, 0, sizeof(r->un));
	r->un.matching = true;
	r->stream_pos = 0;
}

/* The message's bytes in r->raw from file offset from (inside it) on:
 * up to the message's end, the rest is the next messages'. */
static void
store_read_use_chunk(struct store_read *r, uint64_t from)
{
	const struct store_read_chunk *c = &r->raw;
	uint64_t n = c->len;

	if (n > r->end - c->off)
		n = r->end - c->off;
	if (from - c->off >= n)
		return;		/* nothing of the message: read at start */
	r->raw_pos = (size_t)(from - c->off);
	r->raw_len = (size_t)n;
	r->pos = c->off + n;
}

/* Does the chunk hold the From_ line at off? */
static bool
store_read_chunk_from(const struct store_read_chunk *c, uint64_t off)
{
	return off >= c->off && c->len >= 5 && off - c->off <= c->len - 5 &&
	    memcmp(c->data + (off - c->off), "From ", 5) == 0;
}

/* The read-ahead chunk, if it fits: r->fd is the same file, unchanged. */
static bool
store_read_take_ahead(struct store_read *r, const struct store_read_loc *loc)
{
	struct store_read_chunk *a = &store_read_ahead;
	struct store_read_ident id;

	if (a->data == NULL || r->raw.data != NULL ||
	    store_read_now_ms() - a->read_ms >= STORE_READ_MEMO_MS ||
	    store_read_ident_of(r->fd, &id) < 0 ||
	    !store_read_ident_same(&id, &a->id) ||
	    !store_read_chunk_from(a, loc->mbox_offset))
		return false;
	r->raw = *a;
	memset(a, 0, sizeof(*a));
	return true;
}

/*
 * The first bytes of the message, from the read-ahead or from the
 * From_ line on under one lock: they check that the message is still
 * where the index says, and hold its start (all of a message smaller
 * than the chunk), so that reading it takes no lock of its own.
 */
static int
store_read_first(struct store_read *r, const struct store_read_loc *loc,
    const char **error_r)
{
	if (!store_read_take_ahead(r, loc)) {
		if (store_read_pread(r, loc->mbox_offset, error_r) < 0)
			return -1;
		if (!store_read_chunk_from(&r->raw, loc->mbox_offset)) {
			*error_r = "mailbox changed; message not found where "
			    "indexed";
			return -1;
		}
	}
	store_read_use_chunk(r, loc->data_offset);
	return 0;
}

/* Leave r's chunk for the next reader if it holds more than r's message. */
static void
store_read_leave_ahead(struct store_read *r)
{
	struct store_read_chunk *c = &r->raw;

	if (c->data == NULL || !c->quiet || r->end < c->off ||
	    c->len <= r->end - c->off) {
		free(c->data);
		c->data = NULL;
		return;
	}
	free(store_read_ahead.data);
	store_read_ahead = *c;
	c->data = NULL;
}

static enum store_op
store_read_open_mbox(struct store *st, const char *folder, uint32_t uid,
    struct store_read *r, const char **error_r)
{
	struct store_read_loc loc;
	int ret;

	if ((ret = store_read_locate(st, folder, uid, &loc, error_r)) <= 0) {
		if (ret < 0)
			return STORE_OP_TEMPFAIL;
		*error_r = "message is no longer in the folder";
		return STORE_OP_NONEXISTENT;
	}
	/* fcntl's write lock needs a descriptor open for writing. */
	if ((r->fd = open(r->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) < 0) {
		*error_r = store_error("cannot open %s: %s", r->path,
		    strerror(errno));
		return errno == ENOENT ? STORE_OP_NONEXISTENT :
		    STORE_OP_TEMPFAIL;
	}
	r->lock = st->lock;
	/* The offsets are from the index: check they still fit the file
	 * (mutt may have rewritten it since). */
	if (loc.data_offset < loc.mbox_offset ||
	    loc.psize > UINT64_MAX - loc.data_offset) {
		*error_r = "mailbox changed; message not found where indexed";
		return STORE_OP_TEMPFAIL;
	}
	r->start = loc.data_offset;
	r->end = loc.data_offset + loc.psize;
	store_read_rewind(r);
	if (store_read_first(r, &loc, error_r) < 0)
		return STORE_OP_TEMPFAIL;
	return STORE_OP_OK;
}

static bool
store_read_memo_fits(const struct store_read_memo *mo, const struct store *st,
    const char *folder, uint64_t now)
{
	return mo->valid && now < mo->until_ms &&
	    mo->format == st->ml.format &&
	    strcmp(mo->root, st->ml.root) == 0 &&
	    strcmp(mo->inbox, st->ml.inbox != NULL ? st->ml.inbox : "") == 0 &&
	    strcmp(mo->folder, folder) == 0;
}

/* store_folder_resolve through the memo: canon and path (PATH_MAX and
 * STORE_FOLDER_NAME_MAX + 1 bytes). */
static enum store_op
store_read_resolve(struct store *st, const char *folder, char *canon,
    char *path, const char **error_r)
{
	struct store_read_memo *mo = &store_read_memo;
	uint64_t now = store_read_now_ms();
	enum store_op ret;

	if (store_read_memo_fits(mo, st, folder, now)) {
		memcpy(canon, mo->canon, sizeof(mo->canon));
		memcpy(path, mo->path, sizeof(mo->path));
		return STORE_OP_OK;
	}
	ret = store_folder_resolve(st, folder, canon,
	    STORE_FOLDER_NAME_MAX + 1, path, PATH_MAX, error_r);
	mo->valid = false;
	if (ret != STORE_OP_OK ||
	    strlcpy(mo->root, st->ml.root, sizeof(mo->root)) >=
	    sizeof(mo->root) ||
	    strlcpy(mo->inbox, st->ml.inbox != NULL ? st->ml.inbox : "",
	    sizeof(mo->inbox)) >= sizeof(mo->inbox) ||
	    strlcpy(mo->folder, folder, sizeof(mo->folder)) >=
	    sizeof(mo->folder))
		return ret;
	mo->format = st->ml.format;
	memcpy(mo->canon, canon, sizeof(mo->canon));
	memcpy(mo->path, path, sizeof(mo->path));
	mo->until_ms = now + STORE_READ_MEMO_MS;
	mo->valid = true;
	return STORE_OP_OK;
}

enum store_op
store_read_open(struct store *st, const char *folder, uint32_t uid,
    struct store_read **r_r, const char **error_r)
{
	char canon[STORE_FOLDER_NAME_MAX + 1], path[PATH_MAX];
	struct store_read *r;
	enum store_op ret;

	*r_r = NULL;
	if ((ret = store_read_resolve(st, folder, canon, path, error_r)) !=
	    STORE_OP_OK)
		return ret;
	r = xcalloc(1, sizeof(*r));
	r->format = st->ml.format;
	r->fd = -1;
	if (r->format == MAILLOC_MAILDIR)
		ret = store_read_open_maildir(st, canon, path, uid, &r->fd,
		    error_r);
	else {
		r->path = xstrdup(path);
		ret = store_read_open_mbox(st, canon, uid, r, error_r);
	}
	if (ret != STORE_OP_OK) {
		store_read_close(&r);
		return ret;
	}
	*r_r = r;
	return STORE_OP_OK;
}

/* What the state holds back becomes output: '>'s and a partial "From ". */
static void
store_read_un_flush(struct store_read_unescape *un)
{
	un->fl_gt = un->gt;
	un->fl_pos = 0;
	un->fl_k = un->k;
	un->gt = 0;
	un->k = 0;
	un->matching = false;
}

/* Feed one byte; the caller drains before feeding the next. */
static void
store_read_un_byte(struct store_read_unescape *un, unsigned char c)
{
	static const char from[] = "From ";

	if (!un->matching) {
		un->held = c;
		un->have_held = true;
		return;
	}
	if (un->k == 0 && c == '>') {
		un->gt++;
		return;
	}
	if (un->gt > 0 && (unsigned char)from[un->k] == c) {
		if (++un->k == 5) {
			/* ^>+From : one '>' less. */
			un->gt--;
			store_read_un_flush(un);
		}
		return;
	}
	store_read_un_flush(un);
	un->held = c;
	un->have_held = true;
}

/* Emit what the state holds into out; returns bytes written. */
static size_t
store_read_un_drain(struct store_read_unescape *un, unsigned char *out,
    size_t size)
{
	size_t n = 0;

	while (n < size && un->fl_gt > 0) {
		out[n++] = '>';
		un->fl_gt--;
	}
	while (n < size && un->fl_pos < un->fl_k)
		out[n++] = (unsigned char)"From "[un->fl_pos++];
	if (n < size && un->fl_gt == 0 && un->fl_pos == un->fl_k &&
	    un->have_held) {
		out[n++] = un->held;
		un->have_held = false;
		if (un->held == '\n')
			un->matching = true;
	}
	return n;
}

static bool
store_read_un_pending(const struct store_read_unescape *un)
{
	return un->fl_gt > 0 || un->fl_pos < un->fl_k || un->have_held;
}

/* Past a line's start nothing is escaped: the bytes up to and including
 * the next LF go out as they are, in one copy, as store_read_un_byte
 * would pass them one by one. Returns bytes written (> 0). */
static size_t
store_read_mid_line(struct store_read *r, unsigned char *out, size_t size)
{
	const unsigned char *p = r->raw.data + r->raw_pos, *lf;
	size_t n = r->raw_len - r->raw_pos;

	if (n > size)
		n = size;
	if ((lf = memchr(p, '\n', n)) != NULL) {
		n = (size_t)(lf - p) + 1;
		r->un.matching = true;
	}
	memcpy(out, p, n);
	r->raw_pos += n;
	return n;
}

static int
store_read_next_mbox(struct store_read *r, unsigned char *buf, size_t size,
    size_t *len_r, const char **error_r)
{
	size_t n = 0;

	while (n < size) {
		if (store_read_un_pending(&r->un)) {
			n += store_read_un_drain(&r->un, buf + n, size - n);
			continue;
		}
		if (r->raw_pos == r->raw_len) {
			if (r->pos == r->end)
				break;
			if (store_read_pread(r, r->pos, error_r) < 0)
				return -1;
			if (r->raw.len == 0) {
				*error_r = "mailbox shrank while reading";
				return -1;
			}
			store_read_use_chunk(r, r->pos);
		}
		if (!r->un.matching) {
			n += store_read_mid_line(r, buf + n, size - n);
			continue;
		}
		store_read_un_byte(&r->un, r->raw.data[r->raw_pos++]);
	}
	if (n == 0 && r->pos == r->end && r->raw_pos == r->raw_len) {
		/* A prefix like ">>Fro" at the very end is message text. */
		store_read_un_flush(&r->un);
		n = store_read_un_drain(&r->un, buf, size);
	}
	*len_r = n;
	return n > 0 ? 1 : 0;
}

int
store_read_next(struct store_read *r, unsigned char *buf, size_t size,
    size_t *len_r, const char **error_r)
{
	ssize_t n;
	int ret;

	if (r->format == MAILLOC_MBOX) {
		if ((ret = store_read_next_mbox(r, buf, size, len_r,
		    error_r)) > 0)
			r->stream_pos += *len_r;
		return ret;
	}
	do
		n = read(r->fd, buf, size);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		*error_r = store_error("cannot read message: %s",
		    strerror(errno));
		return -1;
	}
	*len_r = (size_t)n;
	r->stream_pos += (size_t)n;
	return n > 0 ? 1 : 0;
}

int
store_read_seek(struct store_read *r, uint64_t offset, const char **error_r)
{
	unsigned char skip[4096];
	size_t n;
	int ret;

	if (r->format == MAILLOC_MAILDIR) {
		/* Beyond what off_t holds is beyond any file: the end. */
		if ((offset > (uint64_t)LLONG_MAX ?
		    lseek(r->fd, 0, SEEK_END) :
		    lseek(r->fd, (off_t)offset, SEEK_SET)) < 0) {
			*error_r = store_error("cannot seek: %s",
			    strerror(errno));
			return -1;
		}
		r->stream_pos = offset;
		return 0;
	}
	/* Un-escaped offsets are not file offsets: read up to the place,
	 * from the start if it lies behind. */
	if (offset < r->stream_pos)
		store_read_rewind(r);
	while (r->stream_pos < offset) {
		n = offset - r->stream_pos < sizeof(skip) ?
		    (size_t)(offset - r->stream_pos) : sizeof(skip);
		if ((ret = store_read_next(r, skip, n, &n, error_r)) < 0)
			return -1;
		if (ret == 0)
			break;
	}
	return 0;
}

void
store_read_close(struct store_read **rp)
{
	struct store_read *r = *rp;

	if (r == NULL)
		return;
	if (r->format == MAILLOC_MBOX)
		store_read_leave_ahead(r);
	if (r->fd >= 0)
		close(r->fd);
	free(r->path);
	free(r->raw.data);
	free(r);
	*rp = NULL;
}
