/*
 * store_expunge.c: removing messages from a folder for good (IMAP
 * EXPUNGE, UID EXPUNGE and MOVE, POP3 DELE at QUIT).
 *
 * Maildir: unlink the files, fsync the directories, then drop the records
 * of the files unlinked (recording each expunge with its MODSEQ) in one
 * index transaction, without listing the folder again: the directories'
 * stamps changed, so the next sync lists them and sees anything else.
 * mbox: under the mailbox lock, check that the index describes the file
 * as it is, copy the file without the messages beside it and rename the
 * copy over it (mbox_rewrite.h: the rename is the commit point), then
 * expunge them and record the new offsets of the others in one index
 * transaction. The index then describes the new file, so the next sync
 * need not read it again, and flags (which live in the index) stay as
 * they are.
 *
 * Trusts the index for which messages to remove, but checks it against
 * the file (offsets, From_ lines) under the lock before removing a byte.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compat/compat.h"
#include "fsutil.h"
#include "log.h"
#include "mbox.h"
#include "mbox_rewrite.h"
#include "store_ops_private.h"
#include "xmalloc.h"

/* mbox: rounds of sync, lock and check before giving up on a file that
 * keeps changing underneath. */
#define STORE_EXPUNGE_ATTEMPTS 3

bool
store_expunge_stamp_ok(const struct mindex_folder *f, const struct stat *sb)
{
	const struct mindex_stamp *s = &f->stamp[0];
	int64_t mtime_ns = (int64_t)sb->st_mtim.tv_sec * 1000000000 +
	    sb->st_mtim.tv_nsec;

	return s->dev == (uint64_t)sb->st_dev &&
	    s->ino == (uint64_t)sb->st_ino &&
	    s->size == (uint64_t)sb->st_size && s->mtime_ns == mtime_ns;
}

/*
 * Maildir.
 */

/* Where a message is and its flags, as the index says now. */
struct store_expunge_md {
	uint32_t uid;
	uint32_t flags;
	char *loc;		/* owned; NULL: not in the index */
};

static int
store_expunge_md_locate(struct store *st, const char *folder,
    struct store_expunge_md *e, size_t n, const char **error_r)
{
	struct mindex_txn *txn;
	struct mindex_folder f;
	struct mindex_msg m;
	int ret;

	if (mindex_begin(st->ix, false, &txn, error_r) < 0)
		return -1;
	ret = mindex_folder_get(txn, folder, &f);
	for (size_t i = 0; i < n && ret >= 0; i++) {
		free(e[i].loc);
		e[i].loc = NULL;
		if (ret == 1 && (ret = mindex_msg_get(txn, f.id, e[i].uid,
		    &m)) == 1) {
			e[i].loc = xstrndup(m.location, m.location_len);
			e[i].flags = m.flags;
		}
		if (ret == 0)
			ret = 1;
	}
	mindex_abort(&txn);
	if (ret < 0) {
		*error_r = store_error("cannot read the index: %s",
		    mindex_last_error());
		return -1;
	}
	return 0;
}

/* Unlink the files of e[] that still have the flags need, adding their
 * uids to done[*ndone_r]; those not where the index said are left in
 * *missing_r for another look after a sync. */
static int
store_expunge_md_unlink(const char *dir, struct store_expunge_md *e,
    size_t n, uint32_t need, size_t *missing_r, uint32_t *done,
    size_t *ndone_r, const char **error_r)
{
	char path[PATH_MAX];
	size_t missing = 0;

	for (size_t i = 0; i < n; i++) {
		if (e[i].loc == NULL || (e[i].flags & need) != need)
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
		    e[i].loc) >= sizeof(path)) {
			*error_r = "message path too long";
			return -1;
		}
		if (unlink(path) == 0) {
			done[(*ndone_r)++] = e[i].uid;
			continue;
		}
		if (errno != ENOENT) {
			*error_r = store_error("cannot delete %s: %s", path,
			    strerror(errno));
			return -1;
		}
		/* Renamed by another reader (flags, new/ to cur/). */
		e[missing++].uid = e[i].uid;
	}
	*missing_r = missing;
	return 0;
}

static void
store_expunge_md_free(struct store_expunge_md *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(e[i].loc);
	free(e);
}

static enum store_op
store_expunge_maildir(struct store *st, const char *folder, const char *dir,
    const uint32_t *uids, size_t n, uint32_t need, const char **error_r)
{
	struct store_expunge_md *e = xcalloc(n + 1, sizeof(*e));
	uint32_t *done = xreallocarray(NULL, n + 1, sizeof(*done));
	size_t left = n, ndone = 0;
	bool unlinked;
	int ret = 0;

	for (size_t i = 0; i < n; i++)
		e[i].uid = uids[i];
	for (int attempt = 0; attempt < 2 && left > 0 && ret == 0;
	    attempt++) {
		if (attempt > 0 && store_sync(st, folder, true, NULL,
		    error_r) < 0)
			ret = -1;
		else if ((ret = store_expunge_md_locate(st, folder, e, left,
		    error_r)) == 0)
			ret = store_expunge_md_unlink(dir, e, left, need, &left,
			    done, &ndone, error_r);
	}
	store_expunge_md_free(e, n);
	unlinked = ndone > 0;
	if (ret < 0 && !unlinked) {
		free(done);
		return STORE_OP_TEMPFAIL;
	}
	/* Whatever was unlinked is gone: make it durable and drop its
	 * records, even if something else failed. */
	if (unlinked && st->fsync) {
		char sub[PATH_MAX];

		if (((size_t)snprintf(sub, sizeof(sub), "%s/new", dir) <
		    sizeof(sub) && fsutil_fsync_dir(sub) < 0) ||
		    ((size_t)snprintf(sub, sizeof(sub), "%s/cur", dir) <
		    sizeof(sub) && fsutil_fsync_dir(sub) < 0)) {
			*error_r = store_error("cannot fsync %s: %s", sub,
			    strerror(errno));
			ret = -1;
		}
	}
	/* Their records go at once, without listing the folder again. */
	if (store_maildir_expunged(st, folder, dir, done, ndone,
	    error_r) < 0)
		ret = -1;
	free(done);
	return ret < 0 ? STORE_OP_TEMPFAIL : STORE_OP_OK;
}

/*
 * mbox.
 */

/* A message of the index, as the rewrite needs it. */
struct store_expunge_rec {
	uint32_t uid;
	uint32_t flags;
	uint64_t from, data, psize;
};

/* A message found in the file. */
struct store_expunge_fent {
	uint64_t from, data, len;
	uint64_t new_from;	/* its offset in the new file (if kept) */
	bool drop;
};

struct store_expunge_rw {
	struct store *st;
	const char *folder;
	const char *path;
	const uint32_t *uids;		/* borrowed, sorted */
	size_t nuids;
	uint32_t need;
	struct fsutil_map map;
	struct stat sb;
	struct stat new_sb;		/* of the new file */
	struct mindex_folder f;
	struct store_expunge_rec *recs;		/* owned, in uid order */
	size_t nrecs, arecs;
	struct store_expunge_fent *fents;	/* owned, in file order */
	size_t nfents, afents;
	uint32_t *gone;			/* owned: uids to expunge */
	size_t ngone;
	uint64_t new_len;
};

static int
store_expunge_rec_cb(const struct mindex_msg *m, void *ctx)
{
	struct store_expunge_rw *rw = ctx;
	struct store_expunge_rec *r;

	if (rw->nrecs == rw->arecs) {
		rw->arecs = rw->arecs == 0 ? 64 : rw->arecs * 2;
		rw->recs = xreallocarray(rw->recs, rw->arecs,
		    sizeof(*rw->recs));
	}
	r = &rw->recs[rw->nrecs++];
	r->uid = m->uid;
	r->flags = m->flags;
	r->from = m->mbox_offset;
	r->data = m->mbox_data_offset;
	r->psize = m->psize;
	return 0;
}

/* The folder record and every message record; 1 if there is no folder. */
static int
store_expunge_rw_read_index(struct store_expunge_rw *rw,
    const char **error_r)
{
	struct mindex_txn *txn;
	int ret;

	if (mindex_begin(rw->st->ix, false, &txn, error_r) < 0)
		return -1;
	ret = mindex_folder_get(txn, rw->folder, &rw->f);
	if (ret == 1)
		ret = mindex_msg_iter(txn, rw->f.id, 1, store_expunge_rec_cb,
		    rw) < 0 ? -1 : 0;
	else if (ret == 0)
		ret = 1;
	mindex_abort(&txn);
	if (ret < 0)
		*error_r = store_error("cannot read the index: %s",
		    mindex_last_error());
	return ret;
}

static int
store_expunge_fent_cb(const struct mbox_entry *e, void *ctx)
{
	struct store_expunge_rw *rw = ctx;

	if (rw->nfents == rw->afents) {
		rw->afents = rw->afents == 0 ? 64 : rw->afents * 2;
		rw->fents = xreallocarray(rw->fents, rw->afents,
		    sizeof(*rw->fents));
	}
	memset(&rw->fents[rw->nfents], 0, sizeof(rw->fents[0]));
	rw->fents[rw->nfents].from = e->from_offset;
	rw->fents[rw->nfents].data = e->data_offset;
	rw->fents[rw->nfents].len = e->data_len;
	rw->nfents++;
	return 0;
}

static struct store_expunge_rec *
store_expunge_rec_find(struct store_expunge_rw *rw, uint32_t uid)
{
	size_t lo = 0, hi = rw->nrecs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (rw->recs[mid].uid == uid)
			return &rw->recs[mid];
		if (rw->recs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The file entry whose From_ line is at off, or NULL. */
static struct store_expunge_fent *
store_expunge_fent_find(struct store_expunge_rw *rw, uint64_t off)
{
	size_t lo = 0, hi = rw->nfents;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (rw->fents[mid].from == off)
			return &rw->fents[mid];
		if (rw->fents[mid].from < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The end of file entry k: the next From_ line, or the end of the file;
 * so the separator line goes with the message. */
static uint64_t
store_expunge_fent_end(const struct store_expunge_rw *rw, size_t k)
{
	return k + 1 < rw->nfents ? rw->fents[k + 1].from : rw->map.len;
}

/* Mark what to drop: 0 done, 1 the file does not match the index (sync
 * and try again). A uid gone from the index is expunged already; one
 * that lost a flag it needed meanwhile stays. */
static int
store_expunge_rw_mark(struct store_expunge_rw *rw)
{
	struct store_expunge_rec *r;
	struct store_expunge_fent *fe;
	uint64_t dropped = 0;

	rw->gone = xreallocarray(NULL, rw->nuids + 1, sizeof(*rw->gone));
	for (size_t i = 0; i < rw->nuids; i++) {
		if ((r = store_expunge_rec_find(rw, rw->uids[i])) == NULL ||
		    (r->flags & rw->need) != rw->need)
			continue;
		fe = store_expunge_fent_find(rw, r->from);
		if (fe == NULL || fe->data != r->data || fe->len != r->psize)
			return 1;
		fe->drop = true;
		rw->gone[rw->ngone++] = r->uid;
	}
	for (size_t k = 0; k < rw->nfents; k++) {
		rw->fents[k].new_from = rw->fents[k].from - dropped;
		if (rw->fents[k].drop)
			dropped += store_expunge_fent_end(rw, k) -
			    rw->fents[k].from;
	}
	rw->new_len = rw->map.len - dropped;
	return 0;
}

static struct mbox_rewrite_range *
store_expunge_rw_ranges(struct store_expunge_rw *rw, size_t *n_r)
{
	struct mbox_rewrite_range *r;
	size_t n = 0;

	r = xreallocarray(NULL, rw->nfents + 1, sizeof(*r));
	for (size_t k = 0; k < rw->nfents; k++) {
		if (!rw->fents[k].drop)
			continue;
		r[n].offset = rw->fents[k].from;
		r[n].len = store_expunge_fent_end(rw, k) - rw->fents[k].from;
		n++;
	}
	*n_r = n;
	return r;
}

/* Where old offset off is in the new file: a From_ line or the end. */
static uint64_t
store_expunge_rw_shift(struct store_expunge_rw *rw, uint64_t off)
{
	struct store_expunge_fent *fe;

	if (off == rw->map.len)
		return rw->new_len;
	fe = store_expunge_fent_find(rw, off);
	return fe != NULL ? fe->new_from : 0;
}

static int
store_expunge_rw_move(struct mindex_txn *txn, struct store_expunge_rw *rw,
    const struct store_expunge_rec *r)
{
	struct store_expunge_fent *fe = store_expunge_fent_find(rw, r->from);
	struct mindex_msg m;
	int ret;

	if (fe == NULL || fe->drop || fe->new_from == fe->from)
		return 0;	/* unchanged, or left for the next sync */
	if ((ret = mindex_msg_get(txn, rw->f.id, r->uid, &m)) <= 0)
		return ret;
	m.mbox_offset = fe->new_from;
	m.mbox_data_offset = r->data - (fe->from - fe->new_from);
	return mindex_msg_update(txn, &rw->f, &m);
}

/*
 * The folder's stamps describe the new file. stamp[1] remembers the last
 * message for store_mbox.c's "only appended?" check: its offset and a
 * hash of its bytes to the end of the file. If that message stays, its
 * bytes to the end are the same and only its offset moves; if it goes,
 * the stamps are cleared and the next sync reads the file again (and
 * flags found in Status: headers then win over the index's).
 */
static void
store_expunge_rw_stamps(struct store_expunge_rw *rw)
{
	struct store_expunge_fent *last;

	last = store_expunge_fent_find(rw, rw->f.stamp[1].size);
	if (rw->new_len > 0 && (last == NULL || last->drop ||
	    last != &rw->fents[rw->nfents - 1])) {
		memset(rw->f.stamp, 0, sizeof(rw->f.stamp));
		return;
	}
	if (rw->new_len == 0)
		memset(&rw->f.stamp[1], 0, sizeof(rw->f.stamp[1]));
	else
		rw->f.stamp[1].size = last->new_from;
	store_stamp_of(&rw->new_sb, store_now_ns(), &rw->f.stamp[0]);
}

/* The index transaction; absolute values only, so mindex_write may run
 * it again after growing the map. */
static int
store_expunge_rw_index_fn(struct mindex_txn *txn, void *ctx,
    const char **error_r)
{
	struct store_expunge_rw *rw = ctx;
	int ret;

	if ((ret = mindex_folder_get(txn, rw->folder, &rw->f)) <= 0) {
		*error_r = "folder is gone from the index";
		return -1;
	}
	for (size_t i = 0; i < rw->ngone; i++)
		if ((ret = mindex_msg_expunge(txn, &rw->f, rw->gone[i])) < 0)
			return ret;
	for (size_t i = 0; i < rw->nrecs; i++)
		if ((ret = store_expunge_rw_move(txn, rw, &rw->recs[i])) < 0)
			return ret;
	rw->f.sync_offset = store_expunge_rw_shift(rw, rw->f.sync_offset);
	store_expunge_rw_stamps(rw);
	return mindex_folder_put(txn, rw->folder, &rw->f);
}

/* Rewrite and reindex, with fd locked and mapped. */
static int
store_expunge_rw_commit(struct store_expunge_rw *rw, int fd,
    const char **error_r)
{
	struct mbox_rewrite_range *ranges;
	size_t n;
	int new_fd, ret;

	ranges = store_expunge_rw_ranges(rw, &n);
	if (n == 0) {
		free(ranges);
		return 0;
	}
	ret = mbox_rewrite(fd, rw->path, rw->map.data, rw->map.len, ranges, n,
	    rw->st->lock.methods, rw->st->fsync, &new_fd, error_r);
	free(ranges);
	if (ret < 0)
		return -1;
	/* The rename was the commit: from here on, a failure only leaves
	 * the index behind, and the next sync (new inode) catches up. */
	*error_r = NULL;
	if (fstat(new_fd, &rw->new_sb) < 0)
		memset(&rw->new_sb, 0, sizeof(rw->new_sb));
	if (mindex_write(rw->st->ix, store_expunge_rw_index_fn, rw,
	    error_r) < 0)
		log_warning("%s: messages expunged but the index not updated "
		    "(%s); the next sync will", rw->path,
		    *error_r != NULL ? *error_r : mindex_last_error());
	close(new_fd);		/* drops the locks on the new file */
	return 0;
}

/* Check and act with fd locked: 0 done, 1 changed underneath, -1. */
static int
store_expunge_rw_locked(struct store_expunge_rw *rw, int fd,
    const char **error_r)
{
	int ret;

	if (fstat(fd, &rw->sb) < 0 || fsutil_map_fd(fd, &rw->map) < 0) {
		*error_r = store_error("cannot read %s: %s", rw->path,
		    strerror(errno));
		return -1;
	}
	if ((ret = store_expunge_rw_read_index(rw, error_r)) != 0)
		return ret;
	if (!store_expunge_stamp_ok(&rw->f, &rw->sb))
		return 1;
	if (rw->map.len > 0 && mbox_scan(rw->map.data, rw->map.len, 0,
	    store_expunge_fent_cb, rw) < 0) {
		*error_r = store_error("%s is not in mbox format", rw->path);
		return -1;
	}
	if ((ret = store_expunge_rw_mark(rw)) != 0)
		return ret;
	return store_expunge_rw_commit(rw, fd, error_r);
}

static void
store_expunge_rw_reset(struct store_expunge_rw *rw)
{
	fsutil_unmap(&rw->map);
	free(rw->recs);
	free(rw->fents);
	free(rw->gone);
	rw->recs = NULL;
	rw->fents = NULL;
	rw->gone = NULL;
	rw->nrecs = rw->arecs = rw->nfents = rw->afents = rw->ngone = 0;
}

/* One attempt: 0 done, 1 try again after a sync, -1 error. */
static int
store_expunge_rw_try(struct store_expunge_rw *rw, enum store_op *op_r,
    const char **error_r)
{
	struct lock_mbox *lk;
	int fd, ret;

	/* Read-write only because fcntl's write lock needs it. */
	if ((fd = open(rw->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) < 0) {
		if (errno == ENOENT)
			return 0;	/* every message is gone */
		*error_r = store_error("cannot open %s: %s", rw->path,
		    strerror(errno));
		return -1;
	}
	ret = store_read_lock_mbox(&rw->st->lock, fd, rw->path, &lk, error_r);
	if (ret != 0) {
		close(fd);
		if (ret == LOCK_TIMEOUT)
			*op_r = STORE_OP_INUSE;
		return ret == -1 && errno == ESTALE ? 1 : -1;
	}
	ret = store_expunge_rw_locked(rw, fd, error_r);
	lock_mbox_release(&lk);
	store_expunge_rw_reset(rw);
	close(fd);
	return ret;
}

static enum store_op
store_expunge_mbox(struct store *st, const char *folder, const char *path,
    const uint32_t *uids, size_t n, uint32_t need, const char **error_r)
{
	struct store_expunge_rw rw;
	enum store_op op = STORE_OP_TEMPFAIL;
	int ret;

	memset(&rw, 0, sizeof(rw));
	rw.st = st;
	rw.folder = folder;
	rw.path = path;
	rw.uids = uids;
	rw.nuids = n;
	rw.need = need;
	/* A sync may not run while we hold the lock: it opens and closes
	 * the mbox, which would drop our fcntl lock. So sync, then lock and
	 * check; if the file changed meanwhile, go round again. The caller
	 * synced before the first round. */
	for (int attempt = 0; attempt < STORE_EXPUNGE_ATTEMPTS; attempt++) {
		if (attempt > 0 && store_sync(st, folder, true, NULL,
		    error_r) < 0)
			return STORE_OP_TEMPFAIL;
		if ((ret = store_expunge_rw_try(&rw, &op, error_r)) <= 0)
			return ret == 0 ? STORE_OP_OK : op;
	}
	*error_r = "mailbox kept changing while expunging";
	return STORE_OP_TEMPFAIL;
}

/* Which of uids the index no longer has. */
static int
store_expunge_gone(struct store *st, const char *folder,
    const uint32_t *uids, size_t n, uint32_t **gone_r, size_t *count_r,
    const char **error_r)
{
	struct mindex_txn *txn;
	struct mindex_folder f;
	struct mindex_msg m;
	uint32_t *gone = xreallocarray(NULL, n + 1, sizeof(*gone));
	size_t count = 0;
	int have, ret = 0;

	if (mindex_begin(st->ix, false, &txn, error_r) < 0) {
		free(gone);
		return -1;
	}
	have = mindex_folder_get(txn, folder, &f);
	for (size_t i = 0; i < n && have >= 0 && ret >= 0; i++) {
		ret = have == 1 ? mindex_msg_get(txn, f.id, uids[i], &m) : 0;
		if (ret == 0)
			gone[count++] = uids[i];
	}
	mindex_abort(&txn);
	if (have < 0 || ret < 0) {
		free(gone);
		*error_r = store_error("cannot read the index: %s",
		    mindex_last_error());
		return -1;
	}
	if (count == 0) {
		free(gone);
		gone = NULL;
	}
	*gone_r = gone;
	*count_r = count;
	return 0;
}

enum store_op
store_expunge(struct store *st, const char *folder,
    const struct store_uidset *set, bool any_flags, uint32_t **uids_r,
    size_t *count_r, const char **error_r)
{
	char canon[STORE_FOLDER_NAME_MAX + 1], path[PATH_MAX];
	uint32_t need = any_flags ? 0 : MINDEX_F_DELETED;
	uint32_t *uids;
	size_t n;
	enum store_op ret;

	*uids_r = NULL;
	*count_r = 0;
	if ((ret = store_folder_resolve(st, folder, canon, sizeof(canon), path,
	    sizeof(path), error_r)) != STORE_OP_OK ||
	    (ret = store_flags_uids(st, canon, set, need, &uids, &n,
	    error_r)) != STORE_OP_OK || n == 0)
		return ret;
	ret = st->ml.format == MAILLOC_MAILDIR ?
	    store_expunge_maildir(st, canon, path, uids, n, need, error_r) :
	    store_expunge_mbox(st, canon, path, uids, n, need, error_r);
	if (ret == STORE_OP_OK && store_expunge_gone(st, canon, uids, n,
	    uids_r, count_r, error_r) < 0)
		ret = STORE_OP_TEMPFAIL;
	free(uids);
	return ret;
}
