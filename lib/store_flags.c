/*
 * store_flags.c: which messages a UID set names, and setting or clearing
 * their system flags (IMAP STORE, with CONDSTORE's MODSEQ and
 * UNCHANGEDSINCE).
 *
 * Maildir keeps flags in file names (":2,FLAGS"): a change renames the
 * file into cur/ and updates its record in the same index write
 * transaction, and the directories are fsynced before that transaction
 * commits, so the index never promises a name the disk may not have. The
 * transaction may run twice (mindex_write grows a full map and runs it
 * again): each rename is remembered, so the second run finds the file
 * where the first one put it. mbox keeps flags in the index only.
 *
 * UID sets come from clients (already parsed into numbers): any order,
 * overlaps and ranges up to UINT32_MAX are fine; only UIDs the index has
 * are ever acted on.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "log.h"
#include "maildir.h"
#include "store_ops_private.h"
#include "xmalloc.h"

static int
store_flags_range_cmp(const void *a, const void *b)
{
	const struct store_uid_range *x = a, *y = b;

	return x->first < y->first ? -1 : x->first > y->first;
}

/* The set as sorted, disjoint ranges (a copy; NULL set: everything).
 * Ranges given backwards (5:3) are turned round, as IMAP means them. */
static struct store_uid_range *
store_flags_ranges(const struct store_uidset *set, size_t *n_r)
{
	struct store_uid_range *r;
	size_t n = set != NULL ? set->count : 1, o = 0;

	r = xreallocarray(NULL, n + 1, sizeof(*r));
	for (size_t i = 0; i < n; i++) {
		uint32_t a = set != NULL ? set->ranges[i].first : 1;
		uint32_t b = set != NULL ? set->ranges[i].last : UINT32_MAX;

		r[i].first = a < b ? a : b;
		r[i].last = a < b ? b : a;
	}
	qsort(r, n, sizeof(*r), store_flags_range_cmp);
	for (size_t i = 0; i < n; i++) {
		if (o > 0 && (r[o - 1].last == UINT32_MAX ||
		    r[i].first <= r[o - 1].last + 1)) {
			if (r[i].last > r[o - 1].last)
				r[o - 1].last = r[i].last;
			continue;
		}
		r[o++] = r[i];
	}
	*n_r = o;
	return r;
}

struct store_flags_pick {
	uint32_t last;		/* of the range being walked */
	uint32_t need;
	uint32_t *uids;
	size_t count, alloc;
};

static int
store_flags_pick_cb(const struct mindex_msg *m, void *ctx)
{
	struct store_flags_pick *p = ctx;

	if (m->uid > p->last)
		return 1;
	if ((m->flags & p->need) != p->need)
		return 0;
	if (p->count == p->alloc) {
		p->alloc = p->alloc == 0 ? 64 : p->alloc * 2;
		p->uids = xreallocarray(p->uids, p->alloc, sizeof(*p->uids));
	}
	p->uids[p->count++] = m->uid;
	return 0;
}

enum store_op
store_flags_uids(struct store *st, const char *folder,
    const struct store_uidset *set, uint32_t need, uint32_t **uids_r,
    size_t *count_r, const char **error_r)
{
	char canon[STORE_FOLDER_NAME_MAX + 1];
	struct store_flags_pick p = { 0, need, NULL, 0, 0 };
	struct store_uid_range *r;
	struct mindex_txn *txn;
	struct mindex_folder f;
	enum store_op op;
	size_t nr;
	bool exists;
	int ret;

	*uids_r = NULL;
	*count_r = 0;
	if ((op = store_folder_resolve(st, folder, canon, sizeof(canon), NULL,
	    0, error_r)) != STORE_OP_OK)
		return op;
	if (store_sync(st, canon, false, &exists, error_r) < 0)
		return STORE_OP_TEMPFAIL;
	if (!exists && strcmp(canon, "INBOX") != 0) {
		*error_r = "no such folder";
		return STORE_OP_NONEXISTENT;
	}
	if (mindex_begin(st->ix, false, &txn, error_r) < 0)
		return STORE_OP_TEMPFAIL;
	r = store_flags_ranges(set, &nr);
	ret = mindex_folder_get(txn, canon, &f);
	for (size_t i = 0; i < nr && ret == 1; i++) {
		p.last = r[i].last;
		if (mindex_msg_iter(txn, f.id, r[i].first, store_flags_pick_cb,
		    &p) < 0)
			ret = -1;
	}
	mindex_abort(&txn);
	free(r);
	if (ret < 0) {
		free(p.uids);
		*error_r = store_error("cannot read the index: %s",
		    mindex_last_error());
		return STORE_OP_TEMPFAIL;
	}
	*uids_r = p.uids;
	*count_r = p.count;
	return STORE_OP_OK;
}

struct store_flags_ctx {
	struct store *st;
	const char *folder;		/* canonical */
	const char *dir;		/* Maildir: the folder's directory */
	const struct store_flags_change *c;
	const uint32_t *uids;		/* this round's */
	size_t n;
	char **moved;			/* owned: where we renamed uids[i] */
	struct store_flag_result *res;	/* owned, for every round */
	size_t nres, res_base;
	uint32_t *missing;		/* owned: files not found */
	size_t nmissing;
	bool renamed_new, renamed_cur;	/* directories to fsync */
};

static uint32_t
store_flags_apply(const struct store_flags_change *c, uint32_t flags)
{
	switch (c->how) {
	case STORE_FLAGS_ADD:
		return flags | c->flags;
	case STORE_FLAGS_REMOVE:
		return flags & ~c->flags;
	case STORE_FLAGS_REPLACE:
		/* Bits that are not system flags (none today) stay. */
		return (flags & ~STORE_FLAGS_SYSTEM) | c->flags;
	}
	log_panic("store_flags_apply: how %d", (int)c->how);
}

/*
 * Maildir: rename message i to "cur/BASE:2,FLAGS" for flags. 1 done
 * (*loc_r is the new location, owned by x->moved), 0 the file is not
 * where the index says (another program renamed it), -1 error.
 */
static int
store_flags_rename(struct store_flags_ctx *x, size_t i,
    const struct mindex_msg *m, uint32_t flags, const char **loc_r,
    const char **error_r)
{
	const char *cur = x->moved[i] != NULL ? x->moved[i] : m->location;
	char info[MAILDIR_INFO_SIZE], src[PATH_MAX];
	char dst[PATH_MAX];
	struct maildir_name mn;
	char *loc;

	if ((strncmp(cur, "new/", 4) != 0 && strncmp(cur, "cur/", 4) != 0) ||
	    maildir_name_parse(cur + 4, &mn) < 0) {
		*error_r = "bad message location in the index";
		return -1;
	}
	/* Letters that are not flags (Dovecot keywords) stay. */
	maildir_flags_to_info(flags, mn.info, info, sizeof(info));
	loc = xasprintf("cur/%.*s:%s", (int)mn.base_len, cur + 4, info);
	if (strcmp(loc, cur) != 0) {
		if ((size_t)snprintf(src, sizeof(src), "%s/%s", x->dir, cur) >=
		    sizeof(src) || (size_t)snprintf(dst, sizeof(dst), "%s/%s",
		    x->dir, loc) >= sizeof(dst) || rename(src, dst) < 0) {
			free(loc);
			if (errno == ENOENT)
				return 0;
			*error_r = store_error("cannot rename %s: %s", src,
			    strerror(errno));
			return -1;
		}
		x->renamed_cur = true;
		if (cur[0] == 'n')
			x->renamed_new = true;
	}
	free(x->moved[i]);
	x->moved[i] = loc;
	*loc_r = loc;
	return 1;
}

/* Make this round's renames durable before the index records them. */
static int
store_flags_fsync(struct store_flags_ctx *x, const char **error_r)
{
	char path[PATH_MAX];

	if (!x->st->fsync)
		return 0;
	if (x->renamed_new && ((size_t)snprintf(path, sizeof(path), "%s/new",
	    x->dir) >= sizeof(path) || fsutil_fsync_dir(path) < 0))
		goto fail;
	if (x->renamed_cur && ((size_t)snprintf(path, sizeof(path), "%s/cur",
	    x->dir) >= sizeof(path) || fsutil_fsync_dir(path) < 0))
		goto fail;
	return 0;
fail:
	*error_r = store_error("cannot fsync %s: %s", path, strerror(errno));
	return -1;
}

static void
store_flags_result(struct store_flags_ctx *x, const struct mindex_msg *m,
    bool changed, bool modified)
{
	struct store_flag_result *r = &x->res[x->nres++];

	r->uid = m->uid;
	r->flags = m->flags;
	r->modseq = m->modseq;
	r->changed = changed;
	r->modified = modified;
}

/* One message: 0 done (or nothing to do), -1 or MINDEX_EFULL. */
static int
store_flags_one(struct mindex_txn *txn, struct store_flags_ctx *x,
    struct mindex_folder *f, size_t i, const char **error_r)
{
	const struct store_flags_change *c = x->c;
	struct mindex_msg m;
	const char *loc;
	uint32_t flags;
	int ret;

	if ((ret = mindex_msg_get(txn, f->id, x->uids[i], &m)) <= 0)
		return ret;	/* expunged meanwhile: nothing to report */
	if (c->unchangedsince != STORE_MODSEQ_NONE &&
	    m.modseq > c->unchangedsince) {
		store_flags_result(x, &m, false, true);
		return 0;
	}
	flags = store_flags_apply(c, m.flags);
	if (flags == m.flags) {
		store_flags_result(x, &m, false, false);
		return 0;
	}
	if (x->dir != NULL) {
		if ((ret = store_flags_rename(x, i, &m, flags, &loc,
		    error_r)) <= 0) {
			if (ret == 0)
				x->missing[x->nmissing++] = m.uid;
			return ret;
		}
		m.location = loc;
		m.location_len = strlen(loc);
	}
	m.flags = flags;
	if ((ret = mindex_msg_update(txn, f, &m)) < 0)
		return ret;
	store_flags_result(x, &m, true, false);
	return 0;
}

static int
store_flags_fn(struct mindex_txn *txn, void *ctx, const char **error_r)
{
	struct store_flags_ctx *x = ctx;
	struct mindex_folder f;
	int ret;

	x->nres = x->res_base;
	x->nmissing = 0;
	x->renamed_new = x->renamed_cur = false;
	if ((ret = mindex_folder_get(txn, x->folder, &f)) <= 0)
		return ret < 0 ? -1 : 0;	/* gone: nothing to change */
	for (size_t i = 0; i < x->n; i++)
		if ((ret = store_flags_one(txn, x, &f, i, error_r)) < 0)
			return ret;
	if (store_flags_fsync(x, error_r) < 0)
		return -1;
	return mindex_folder_put(txn, x->folder, &f);
}

/* One round over uids[0..n); the files not found are left in
 * x->missing. */
static int
store_flags_round(struct store_flags_ctx *x, const uint32_t *uids, size_t n,
    const char **error_r)
{
	int ret;

	x->uids = uids;
	x->n = n;
	x->moved = xcalloc(n + 1, sizeof(*x->moved));
	x->res_base = x->nres;
	*error_r = NULL;
	ret = mindex_write(x->st->ix, store_flags_fn, x, error_r);
	for (size_t i = 0; i < n; i++)
		free(x->moved[i]);
	free(x->moved);
	x->moved = NULL;
	if (ret < 0 && *error_r == NULL)
		*error_r = mindex_last_error();
	return ret;
}

static int
store_flags_res_cmp(const void *a, const void *b)
{
	const struct store_flag_result *x = a, *y = b;

	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

enum store_op
store_flags_change(struct store *st, const char *folder,
    const struct store_flags_change *c, struct store_flag_result **res_r,
    size_t *count_r, const char **error_r)
{
	char canon[STORE_FOLDER_NAME_MAX + 1], path[PATH_MAX];
	struct store_flags_ctx x;
	uint32_t *uids, *again = NULL;
	size_t n;
	enum store_op op;
	int ret;

	*res_r = NULL;
	*count_r = 0;
	if ((c->flags & ~STORE_FLAGS_SYSTEM) != 0) {
		*error_r = "only system flags can be stored";
		return STORE_OP_CANNOT;
	}
	if ((op = store_folder_resolve(st, folder, canon, sizeof(canon), path,
	    sizeof(path), error_r)) != STORE_OP_OK ||
	    (op = store_flags_uids(st, canon, c->uids, 0, &uids, &n,
	    error_r)) != STORE_OP_OK || n == 0)
		return op;
	memset(&x, 0, sizeof(x));
	x.st = st;
	x.folder = canon;
	x.dir = st->ml.format == MAILLOC_MAILDIR ? path : NULL;
	x.c = c;
	x.res = xcalloc(n + 1, sizeof(*x.res));
	x.missing = xcalloc(n + 1, sizeof(*x.missing));
	ret = store_flags_round(&x, uids, n, error_r);
	if (ret == 0 && x.nmissing > 0) {
		/* Renamed by another program: a sync finds them again. */
		again = xreallocarray(NULL, x.nmissing, sizeof(*again));
		memcpy(again, x.missing, x.nmissing * sizeof(*again));
		ret = store_sync(st, canon, true, NULL, error_r);
		if (ret == 0)
			ret = store_flags_round(&x, again, x.nmissing, error_r);
	}
	free(again);
	free(x.missing);
	free(uids);
	if (ret < 0) {
		free(x.res);
		return STORE_OP_TEMPFAIL;
	}
	qsort(x.res, x.nres, sizeof(*x.res), store_flags_res_cmp);
	*res_r = x.res;
	*count_r = x.nres;
	if (x.nres == 0) {
		free(x.res);
		*res_r = NULL;
	}
	return STORE_OP_OK;
}
