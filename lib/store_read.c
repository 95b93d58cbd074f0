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
#include <unistd.h>

#include "compat/compat.h"
#include "log.h"
#include "store_ops_private.h"
#include "xmalloc.h"

/* Bytes read from an mbox per lock: each lock costs a dotlock made and
 * removed, so chunks are large; a reader holds at most one. */
#define STORE_READ_CHUNK (64 * 1024)

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
	unsigned char *raw;		/* owned, STORE_READ_CHUNK bytes */
	size_t raw_pos, raw_len;
};

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
		if ((*fd_r = open(path, O_RDONLY | O_CLOEXEC)) >= 0)
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

/* pread from the mbox under its lock, held for this read only. */
static int
store_read_pread(struct store_read *r, unsigned char *buf, size_t size,
    uint64_t off, size_t *len_r, const char **error_r)
{
	struct lock_mbox *lk;
	ssize_t n;
	int ret;

	ret = store_read_lock_mbox(&r->lock, r->fd, r->path, &lk, error_r);
	if (ret != 0) {
		if (ret == LOCK_TIMEOUT)
			*error_r = "mailbox is locked";
		return -1;
	}
	do
		n = pread(r->fd, buf, size, (off_t)off);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		*error_r = store_error("cannot read %s: %s", r->path,
		    strerror(errno));
	lock_mbox_release(&lk);
	if (n < 0)
		return -1;
	*len_r = (size_t)n;
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

static enum store_op
store_read_open_mbox(struct store *st, const char *folder, uint32_t uid,
    struct store_read *r, const char **error_r)
{
	struct store_read_loc loc;
	unsigned char from[5];
	size_t n;
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
	if (store_read_pread(r, from, sizeof(from), loc.mbox_offset, &n,
	    error_r) < 0)
		return STORE_OP_TEMPFAIL;
	if (n != sizeof(from) || memcmp(from, "From ", 5) != 0 ||
	    loc.data_offset < loc.mbox_offset ||
	    loc.psize > UINT64_MAX - loc.data_offset) {
		*error_r = "mailbox changed; message not found where indexed";
		return STORE_OP_TEMPFAIL;
	}
	r->start = loc.data_offset;
	r->end = loc.data_offset + loc.psize;
	r->raw = xmalloc(STORE_READ_CHUNK);
	store_read_rewind(r);
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
	if ((ret = store_folder_resolve(st, folder, canon, sizeof(canon), path,
	    sizeof(path), error_r)) != STORE_OP_OK)
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

static int
store_read_next_mbox(struct store_read *r, unsigned char *buf, size_t size,
    size_t *len_r, const char **error_r)
{
	size_t n = 0, got;

	while (n < size) {
		if (store_read_un_pending(&r->un)) {
			n += store_read_un_drain(&r->un, buf + n, size - n);
			continue;
		}
		if (r->raw_pos == r->raw_len) {
			if (r->pos == r->end)
				break;
			got = r->end - r->pos < STORE_READ_CHUNK ?
			    (size_t)(r->end - r->pos) : STORE_READ_CHUNK;
			if (store_read_pread(r, r->raw, got, r->pos, &got,
			    error_r) < 0)
				return -1;
			if (got == 0) {
				*error_r = "mailbox shrank while reading";
				return -1;
			}
			r->pos += got;
			r->raw_pos = 0;
			r->raw_len = got;
		}
		store_read_un_byte(&r->un, r->raw[r->raw_pos++]);
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
	if (r->fd >= 0)
		close(r->fd);
	free(r->path);
	free(r->raw);
	free(r);
	*rp = NULL;
}
