/*
 * store.c: opening a user's mail, folder paths, and the parts of sync and
 * delivery that do not depend on the storage format (store_maildir.c and
 * store_mbox.c hold the rest). Trusts the configuration and the user
 * record; folder names may come from users and are checked here.
 */
#include "config.h"
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <strings.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "buf.h"
#include "compat/compat.h"
#include "conf.h"
#include "fsutil.h"
#include "log.h"
#include "maildir.h"
#include "msg.h"
#include "store_private.h"
#include "user.h"
#include "utf7.h"
#include "xmalloc.h"

static char store_errbuf[1024];

const char *
store_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(store_errbuf, sizeof(store_errbuf), fmt, ap);
	va_end(ap);
	return store_errbuf;
}

static int
store_forget_fn(struct mindex_txn *txn, void *ctx, const char **error_r)
{
	const char *folder = ctx;
	struct mindex_folder f;
	int ret = mindex_folder_get(txn, folder, &f);

	(void)error_r;
	if (ret != 1)
		return ret < 0 ? -1 : 0;
	return mindex_folder_delete(txn, folder);
}

int
store_folder_forget(struct store *st, const char *folder,
    const char **error_r)
{
	return mindex_write(st->ix, store_forget_fn, (void *)folder, error_r);
}

int64_t
store_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
store_stamp_of(const struct stat *sb, int64_t checked_ns,
    struct mindex_stamp *s_r)
{
	s_r->dev = (uint64_t)sb->st_dev;
	s_r->ino = (uint64_t)sb->st_ino;
	s_r->size = (uint64_t)sb->st_size;
	s_r->mtime_ns = (int64_t)sb->st_mtim.tv_sec * 1000000000 +
	    sb->st_mtim.tv_nsec;
	s_r->checked_ns = checked_ns;
}

/*
 * How old an object must already have been when its stamp was taken for
 * the stamp to be trusted. The look (the stat, then the listing) starts
 * after checked_ns; a change made after it shows in the mtime only if the
 * clock that stamps it has moved past the old mtime by then. On a file
 * system with whole-second times (their nanoseconds are 0) that takes a
 * second. With finer times the kernel stamps with its coarse clock, which
 * moves every tick (1 to 10 ms, a little later under load): a tenth of a
 * second is ten ticks or more. Without this shorter wait, every command
 * within a second of a change (a STORE, an EXPUNGE, a delivery) would
 * list the folder again, and a command that syncs twice, twice.
 */
#define STORE_STAMP_SETTLE_NS		(100 * 1000000LL)
#define STORE_STAMP_SETTLE_COARSE_NS	(1000 * 1000000LL)

bool
store_stamp_settled(const struct mindex_stamp *s)
{
	int64_t settle = s->mtime_ns % 1000000000 == 0 ?
	    STORE_STAMP_SETTLE_COARSE_NS : STORE_STAMP_SETTLE_NS;

	return s->checked_ns - s->mtime_ns >= settle;
}

bool
store_stamp_same(const struct mindex_stamp *old,
    const struct mindex_stamp *now)
{
	if (old->dev != now->dev || old->ino != now->ino ||
	    old->size != now->size || old->mtime_ns != now->mtime_ns)
		return false;
	return store_stamp_settled(old);
}

/*
 * ROOT/.loft-uidvalidity-last remembers the last UIDVALIDITY given to any
 * folder of this user, outside the index: an index rebuilt from nothing
 * (or a folder deleted and made again) within the same second as the old
 * one must still not repeat a UIDVALIDITY, or clients would trust UIDs
 * that now name other messages.
 */
static uint32_t
store_uidvalidity_last(const struct store *st, char *path, size_t size)
{
	unsigned long v = 0;
	FILE *fp;

	if ((size_t)snprintf(path, size, "%s/.loft-uidvalidity-last",
	    st->ml.root) >= size)
		return 0;
	if ((fp = fopen(path, "re")) != NULL) {
		if (fscanf(fp, "%lu", &v) != 1 || v > UINT32_MAX)
			v = 0;
		fclose(fp);
	}
	return (uint32_t)v;
}

static void
store_uidvalidity_note(const struct store *st, struct mindex_folder *f,
    bool keep)
{
	char path[PATH_MAX], tmp[PATH_MAX + 32];
	uint32_t last = store_uidvalidity_last(st, path, sizeof(path));
	FILE *fp;

	if (!keep && f->uidvalidity <= last)
		f->uidvalidity = last + 1;
	if (f->uidvalidity <= last)
		return;
	snprintf(tmp, sizeof(tmp), "%s.%ld", path, (long)getpid());
	if ((fp = fopen(tmp, "we")) == NULL)
		return;
	fprintf(fp, "%u\n", f->uidvalidity);
	if (fclose(fp) != 0 || rename(tmp, path) < 0)
		unlink(tmp);
}

int
store_folder_ensure(struct store *st, struct mindex_txn *txn,
    const char *name, uint32_t uidvalidity, struct mindex_folder *f_r,
    const char **error_r)
{
	int ret = mindex_folder_get(txn, name, f_r);

	if (ret == 1)
		return 0;
	if (ret < 0) {
		*error_r = "cannot read folder record from index";
		return -1;
	}
	ret = mindex_folder_create(txn, name, uidvalidity, f_r);
	if (ret == MINDEX_EFULL)
		return MINDEX_EFULL;
	if (ret < 0) {
		*error_r = "cannot create folder record in index";
		return -1;
	}
	/* A UIDVALIDITY handed down from storage or an old index is kept;
	 * a new one must be above every one given before. */
	store_uidvalidity_note(st, f_r, uidvalidity != 0);
	if ((ret = mindex_folder_put(txn, name, f_r)) < 0)
		return ret == MINDEX_EFULL ? MINDEX_EFULL : -1;
	return 1;
}

void
store_fill_msg(struct mindex_msg *m, const struct msg_info *info,
    uint64_t psize, time_t internal_date)
{
	memset(m, 0, sizeof(*m));
	m->internal_date = internal_date;
	m->save_date = time(NULL);
	m->psize = psize;
	m->vsize = info->vsize;
	m->fingerprint = info->fingerprint;
	m->cache_flags = (info->headers_partial ? MINDEX_C_HEADERS_PARTIAL :
	    0) | (info->no_final_lf ? MINDEX_C_NO_FINAL_LF : 0);
	m->headers = info->headers.data;
	m->headers_len = info->headers.len;
	m->mime = info->mime.data;
	m->mime_len = info->mime.len;
}

struct store_prev_ctx {
	struct store_prev *prev;
	size_t count, alloc;
};

static int
store_prev_cb(const struct mindex_msg *m, void *ctx)
{
	struct store_prev_ctx *c = ctx;
	struct store_prev *p;

	if (c->count == c->alloc) {
		c->alloc = c->alloc == 0 ? 256 : c->alloc * 2;
		c->prev = xreallocarray(c->prev, c->alloc, sizeof(*c->prev));
	}
	p = &c->prev[c->count++];
	p->uid = m->uid;
	p->flags = m->flags;
	p->fingerprint = m->fingerprint;
	memcpy(p->guid, m->guid, sizeof(p->guid));
	p->used = false;
	return 0;
}

int
store_prev_collect(struct mindex *ix, const char *folder,
    struct store_prev **prev_r, size_t *count_r, uint32_t *uidvalidity_r,
    uint32_t *uidnext_r, const char **error_r)
{
	struct store_prev_ctx c = { NULL, 0, 0 };
	struct mindex_txn *txn;
	struct mindex_folder f;
	int ret;

	*prev_r = NULL;
	*count_r = 0;
	*uidvalidity_r = 0;
	*uidnext_r = 1;
	if (mindex_begin(ix, false, &txn, error_r) < 0)
		return -1;
	ret = mindex_folder_get(txn, folder, &f);
	if (ret == 1) {
		*uidvalidity_r = f.uidvalidity;
		*uidnext_r = f.uidnext;
		ret = mindex_msg_iter(txn, f.id, 1, store_prev_cb, &c);
	}
	mindex_abort(&txn);
	if (ret < 0) {
		free(c.prev);
		*error_r = "cannot read the index";
		return -1;
	}
	*prev_r = c.prev;
	*count_r = c.count;
	return 0;
}

static int
store_lock_opts(struct lock_opts *o, const char **error_r)
{
	char **items = conf_list("mailbox_delivery_lock", NULL);
	int ret;

	ret = lock_methods_parse(items, &o->methods, error_r);
	conf_list_free(&items);
	if (ret < 0)
		return -1;
	o->attempts = (unsigned)conf_int("deliver_lock_attempts");
	o->delay_ms = (unsigned)(conf_time("deliver_lock_delay") * 1000);
	o->stale_secs = (unsigned)conf_time("stale_lock_time");
	return 0;
}

static int
store_make_root(const struct mailloc *ml, const char **error_r)
{
	if (ml->format == MAILLOC_MAILDIR)
		return maildir_create(ml->root, false, error_r);
	if (fsutil_mkdir_p(ml->root, 0700) < 0) {
		*error_r = store_error("cannot create %s: %s", ml->root,
		    strerror(errno));
		return -1;
	}
	return 0;
}

int
store_open(const struct user *u, struct store **st_r, const char **error_r)
{
	return store_open_index(u, NULL, st_r, error_r);
}

int
store_open_index(const struct user *u, const char *index_dir,
    struct store **st_r, const char **error_r)
{
	struct mindex_options opts;
	struct store *st = xcalloc(1, sizeof(*st));

	st->user = xstrdup(u->name);
	st->fsync = conf_bool("mail_fsync");
	st->quota_limit = u->has_quota ? u->quota :
	    (uint64_t)conf_int("mailbox_size_limit");
	if (store_lock_opts(&st->lock, error_r) < 0 ||
	    mailloc_parse(u->mail_location, u->name, u->home, &st->ml,
	    error_r) < 0 || store_make_root(&st->ml, error_r) < 0) {
		store_close(&st);
		return -1;
	}
	if (index_dir != NULL) {
		free(st->ml.index_dir);
		st->ml.index_dir = xstrdup(index_dir);
	}
	opts.map_size = (uint64_t)conf_int("index_map_size");
	opts.max_map_size = (uint64_t)conf_int("index_max_size");
	opts.nosync = !st->fsync;
	if (fsutil_mkdir_p(st->ml.index_dir, 0700) < 0) {
		*error_r = store_error("cannot create index directory %s: %s",
		    st->ml.index_dir, strerror(errno));
		store_close(&st);
		return -1;
	}
	if (mindex_open(st->ml.index_dir, &opts, &st->ix, error_r) < 0) {
		*error_r = store_error("index %s: %s", st->ml.index_dir,
		    *error_r);
		store_close(&st);
		return -1;
	}
	*st_r = st;
	return 0;
}

void
store_close(struct store **stp)
{
	struct store *st = *stp;

	if (st == NULL)
		return;
	if (st->ix != NULL)
		mindex_close(&st->ix);
	mailloc_free(&st->ml);
	free(st->user);
	free(st);
	*stp = NULL;
}

int
store_quota(struct store *st, uint64_t *bytes_r, uint64_t *messages_r,
    uint64_t *limit_r, const char **error_r)
{
	struct mindex_txn *txn;
	int ret;

	*limit_r = st->quota_limit;
	if (mindex_begin(st->ix, false, &txn, error_r) < 0)
		return -1;
	ret = mindex_quota_get(txn, bytes_r, messages_r);
	mindex_abort(&txn);
	if (ret < 0) {
		*error_r = mindex_last_error();
		return -1;
	}
	return 0;
}

const struct mailloc *
store_location(const struct store *st)
{
	return &st->ml;
}

struct mindex *
store_index(struct store *st)
{
	return st->ix;
}

static bool
store_is_inbox(const char *folder)
{
	return strcasecmp(folder, "INBOX") == 0;
}

int
store_folder_path(struct store *st, const char *folder, char *out,
    size_t outsize, const char **error_r)
{
	struct buf enc;
	int n;

	/* The Maildir mapping holds loft's folder name rules; mbox folders
	 * obey the same rules so that both formats accept the same names. */
	if (maildir_folder_path(st->ml.root, folder, out, outsize,
	    error_r) < 0)
		return -1;
	if (st->ml.format == MAILLOC_MAILDIR)
		return 0;
	if (store_is_inbox(folder)) {
		if (strlcpy(out, st->ml.inbox, outsize) >= outsize) {
			*error_r = "path too long";
			return -1;
		}
		return 0;
	}
	buf_init(&enc, PATH_MAX);
	if (utf7_encode(folder, &enc) < 0) {
		buf_free(&enc);
		*error_r = "folder name is not valid UTF-8";
		return -1;
	}
	n = snprintf(out, outsize, "%s/%s", st->ml.root, buf_cstr(&enc));
	buf_free(&enc);
	if (n < 0 || (size_t)n >= outsize) {
		*error_r = "path too long";
		return -1;
	}
	return 0;
}

/* The canonical spelling of a folder name in the index. */
static const char *
store_folder_key(const char *folder)
{
	return store_is_inbox(folder) ? "INBOX" : folder;
}

static int
store_sync_folder(struct store *st, const char *folder, bool force,
    bool complete, bool *exists_r, const char **error_r)
{
	char path[PATH_MAX];
	bool exists;

	if (exists_r == NULL)
		exists_r = &exists;
	if (store_folder_path(st, folder, path, sizeof(path), error_r) < 0)
		return -1;
	folder = store_folder_key(folder);
	if (st->ml.format != MAILLOC_MAILDIR)
		return store_mbox_sync(st, folder, path, force, exists_r,
		    error_r);
	if (store_maildir_sync(st, folder, path, force, exists_r,
	    error_r) < 0)
		return -1;
	if (!complete || !*exists_r)
		return 0;
	return store_maildir_complete(st, folder, path, false, error_r);
}

int
store_sync_lazy(struct store *st, const char *folder, bool *exists_r,
    const char **error_r)
{
	return store_sync_folder(st, folder, false, false, exists_r, error_r);
}

int
store_sync(struct store *st, const char *folder, bool force, bool *exists_r,
    const char **error_r)
{
	return store_sync_folder(st, folder, force, true, exists_r, error_r);
}

static int
store_complete_mode(struct store *st, const char *folder, bool sizes,
    const char **error_r)
{
	char path[PATH_MAX];

	if (st->ml.format != MAILLOC_MAILDIR)
		return 0;	/* an mbox sync reads every message it adds */
	if (store_folder_path(st, folder, path, sizeof(path), error_r) < 0)
		return -1;
	return store_maildir_complete(st, store_folder_key(folder), path,
	    sizes, error_r);
}

int
store_complete(struct store *st, const char *folder, const char **error_r)
{
	return store_complete_mode(st, folder, false, error_r);
}

int
store_complete_sizes(struct store *st, const char *folder,
    const char **error_r)
{
	return store_complete_mode(st, folder, true, error_r);
}

struct store_names {
	char **names;
	size_t count, alloc;
};

static void
store_names_add(struct store_names *n, const char *name)
{
	if (n->count == n->alloc) {
		n->alloc = n->alloc == 0 ? 16 : n->alloc * 2;
		n->names = xreallocarray(n->names, n->alloc, sizeof(char *));
	}
	n->names[n->count++] = xstrdup(name);
}

static void
store_names_free(struct store_names *n)
{
	for (size_t i = 0; i < n->count; i++)
		free(n->names[i]);
	free(n->names);
	n->names = NULL;
	n->count = n->alloc = 0;
}

static int
store_names_cb(const char *folder, void *ctx)
{
	store_names_add(ctx, folder);
	return 0;
}

static int
store_index_names_cb(const char *name, const struct mindex_folder *f,
    void *ctx)
{
	(void)f;
	store_names_add(ctx, name);
	return 0;
}

/* store_mbox_walk: folder files under dir (relative name prefix rel). */
static int
store_mbox_walk(struct store *st, const char *dir, const char *rel,
    int depth, struct store_names *n)
{
	DIR *d;
	struct dirent *de;
	char path[PATH_MAX], name[PATH_MAX];
	struct buf dec;
	struct stat sb;

	if (depth > 16 || (d = opendir(dir)) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
		    de->d_name) >= sizeof(path) ||
		    (size_t)snprintf(name, sizeof(name), "%s%s", rel,
		    de->d_name) >= sizeof(name) || lstat(path, &sb) < 0)
			continue;
		if (strcmp(path, st->ml.inbox) == 0)
			continue;
		buf_init(&dec, PATH_MAX);
		if (utf7_decode(name, &dec) == 0) {
			if (S_ISREG(sb.st_mode))
				store_names_add(n, buf_cstr(&dec));
			else if (S_ISDIR(sb.st_mode)) {
				char sub[PATH_MAX];

				if ((size_t)snprintf(sub, sizeof(sub), "%s/",
				    name) < sizeof(sub))
					store_mbox_walk(st, path, sub,
					    depth + 1, n);
			}
		}
		buf_free(&dec);
	}
	closedir(d);
	return 0;
}

int
store_sync_all(struct store *st, bool force, const char **error_r)
{
	struct store_names found = { NULL, 0, 0 }, indexed = { NULL, 0, 0 };
	struct mindex_txn *txn;
	int ret = 0;

	store_names_add(&found, "INBOX");
	if (st->ml.format == MAILLOC_MAILDIR) {
		if (maildir_list_folders(st->ml.root, store_names_cb, &found,
		    error_r) < 0) {
			store_names_free(&found);
			return -1;
		}
	} else
		store_mbox_walk(st, st->ml.root, "", 0, &found);
	for (size_t i = 0; i < found.count && ret == 0; i++)
		ret = store_sync(st, found.names[i], force, NULL, error_r);
	/* Folders the index knows but storage no longer has: a sync of
	 * each notices and drops it. */
	if (ret == 0 && mindex_begin(st->ix, false, &txn, error_r) == 0) {
		mindex_folder_iter(txn, store_index_names_cb, &indexed);
		mindex_abort(&txn);
		for (size_t i = 0; i < indexed.count && ret == 0; i++) {
			bool known = false;

			for (size_t j = 0; j < found.count && !known; j++)
				known = strcmp(found.names[j],
				    indexed.names[i]) == 0;
			if (!known)
				ret = store_sync(st, indexed.names[i], false,
				    NULL, error_r);
		}
	}
	store_names_free(&found);
	store_names_free(&indexed);
	return ret;
}

enum store_result
store_deliver(struct store *st, const struct store_delivery *d,
    struct store_delivered *out, const char **error_r)
{
	char path[PATH_MAX];
	struct store_delivery dd = *d;
	enum store_result r;

	if (store_folder_path(st, d->folder, path, sizeof(path),
	    error_r) < 0)
		return STORE_PERMFAIL;
	dd.folder = store_folder_key(d->folder);
	memset(out, 0, sizeof(*out));
	/* The message is fsynced in storage before the index hears of it,
	 * and the next sync adopts it again should a system crash undo the
	 * commit: a lazy meta page (one synchronous write, not two). */
	mindex_set_lazy_meta(st->ix, true);
	if (st->ml.format == MAILLOC_MAILDIR) {
		out->format = "maildir";
		r = store_maildir_deliver(st, path, &dd, out, error_r);
	} else {
		out->format = "mbox";
		r = store_mbox_deliver(st, path, &dd, out, error_r);
	}
	mindex_set_lazy_meta(st->ix, false);
	return r;
}
