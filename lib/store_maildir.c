/*
 * store_maildir.c: Maildir++ folders and their index: delivery and sync.
 *
 * Delivery writes the message into tmp/ and fsyncs it outside any lock,
 * then, inside one index write transaction (LMDB's writer lock serialises
 * it with every other writer of this user's index), takes the next UID,
 * renames the file into new/ with ",U=<uid>" in its name, fsyncs new/ and
 * adds the record. Because the rename happens under the writer lock, a
 * concurrent sync that saw the file early finds its record when it gets
 * the lock and leaves it alone.
 *
 * Sync lists new/ and cur/ only when their stamps changed, maps each file
 * to its UID through the locs table (keyed by the base name, the part
 * before ":2,"), updates records whose flags or directory changed, expunges
 * records whose file is gone and indexes files it has not seen, giving
 * each a UID (its own ",U=" if that is still free, else a new one written
 * into its name). Files come from the user's own mail programs: a name
 * that does not parse is skipped, never trusted as a path.
 */
#include "config.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "buf.h"
#include "compat/compat.h"
#include "fsutil.h"
#include "log.h"
#include "maildir.h"
#include "msg.h"
#include "store_private.h"
#include "xmalloc.h"

#define MD_UIDFILE "loft-uidvalidity"

/*
 * The loft-uidvalidity file: "UIDVALIDITY UIDNEXT\n". It lets a rebuild
 * from nothing keep the folder's UIDVALIDITY and never hand out a UID that
 * was given before (UIDs of expunged messages included).
 */
static int
md_uidfile_read(const char *dir, uint32_t *uidvalidity_r, uint32_t *uidnext_r)
{
	char path[PATH_MAX], line[64];
	unsigned long v, n;
	FILE *fp;
	int ret = -1;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, MD_UIDFILE) >=
	    sizeof(path) || (fp = fopen(path, "re")) == NULL)
		return -1;
	if (fgets(line, sizeof(line), fp) != NULL &&
	    sscanf(line, "%lu %lu", &v, &n) == 2 && v > 0 && v <= UINT32_MAX &&
	    n > 0 && n <= UINT32_MAX) {
		*uidvalidity_r = (uint32_t)v;
		*uidnext_r = (uint32_t)n;
		ret = 0;
	}
	fclose(fp);
	return ret;
}

static int
md_uidfile_write(const char *dir, uint32_t uidvalidity, uint32_t uidnext,
    bool do_fsync)
{
	char path[PATH_MAX], tmp[PATH_MAX], line[64];
	int fd, n, ok;

	n = snprintf(line, sizeof(line), "%u %u\n", uidvalidity, uidnext);
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, MD_UIDFILE) >=
	    sizeof(path) || (size_t)snprintf(tmp, sizeof(tmp), "%s.%ld",
	    path, (long)getpid()) >= sizeof(tmp))
		return -1;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	ok = write(fd, line, (size_t)n) == n && (!do_fsync || fsync(fd) == 0);
	if (close(fd) < 0)
		ok = 0;
	if (!ok || rename(tmp, path) < 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/*
 * The GUID of a Maildir message comes from its file name: the unique part
 * before the first ',' (which renames for flags or UIDs never change), so
 * a rebuilt index gives every message the GUID it had before.
 */
static void
md_guid(const char *loc, uint8_t guid[16])
{
	const char *name = loc + 4;
	size_t n = strcspn(name, ",:");
	uint64_t a = msg_hash64((const unsigned char *)name, n, 0x4755494431ULL);
	uint64_t b = msg_hash64((const unsigned char *)name, n, a);

	memcpy(guid, &a, 8);
	memcpy(guid + 8, &b, 8);
}

/* A file found in new/ or cur/. */
struct md_entry {
	char *loc;		/* "new/NAME" or "cur/NAME:2,..." (owned) */
	size_t base_len;	/* of the base name, which starts at loc + 4 */
	uint32_t name_uid;	/* ",U=" in its name, 0 if none */
	uint32_t uid;		/* its record, 0 if not indexed */
	uint32_t flags;
};

struct md_list {
	struct md_entry *e;
	size_t count, alloc;
};

static int
md_scan_cb(const char *sub, const char *name, void *ctx)
{
	struct md_list *l = ctx;
	struct maildir_name mn;
	struct md_entry *e;

	if (maildir_name_parse(name, &mn) < 0)
		return 0;
	if (l->count == l->alloc) {
		l->alloc = l->alloc == 0 ? 256 : l->alloc * 2;
		l->e = xreallocarray(l->e, l->alloc, sizeof(*l->e));
	}
	e = &l->e[l->count++];
	e->loc = xasprintf("%s/%s", sub, name);
	e->base_len = mn.base_len;
	e->name_uid = mn.uid;
	e->uid = 0;
	e->flags = mn.flags;
	return 0;
}

static void
md_list_free(struct md_list *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->e[i].loc);
	free(l->e);
	l->e = NULL;
	l->count = l->alloc = 0;
}

/* A record the index has, as the sync needs it. */
struct md_rec {
	uint32_t uid;
	char *loc;		/* owned copy */
	bool seen;		/* its file was found */
};

struct md_recs {
	struct md_rec *r;
	size_t count, alloc;
};

static int
md_rec_cb(const struct mindex_msg *m, void *ctx)
{
	struct md_recs *rs = ctx;

	if (rs->count == rs->alloc) {
		rs->alloc = rs->alloc == 0 ? 256 : rs->alloc * 2;
		rs->r = xreallocarray(rs->r, rs->alloc, sizeof(*rs->r));
	}
	rs->r[rs->count].uid = m->uid;
	rs->r[rs->count].loc = xstrndup(m->location, m->location_len);
	rs->r[rs->count].seen = false;
	rs->count++;
	return 0;
}

static void
md_recs_free(struct md_recs *rs)
{
	for (size_t i = 0; i < rs->count; i++)
		free(rs->r[i].loc);
	free(rs->r);
	rs->r = NULL;
	rs->count = rs->alloc = 0;
}

static struct md_rec *
md_recs_find(struct md_recs *rs, uint32_t uid)
{
	size_t lo = 0, hi = rs->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (rs->r[mid].uid == uid)
			return &rs->r[mid];
		if (rs->r[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The base name of a location "new/NAME" or "cur/NAME:2,FLAGS". */
static size_t
md_loc_base(const char *loc, const char **base_r)
{
	const char *base = loc + 4, *colon = strchr(base, ':');

	*base_r = base;
	return colon != NULL ? (size_t)(colon - base) : strlen(base);
}

/* Candidates first by the UID their names carry (so that those can be
 * adopted in increasing order), then files without one by name, which for
 * Maildir names is delivery order. */
static int
md_cand_cmp(const void *a, const void *b)
{
	const struct md_entry *x = *(struct md_entry * const *)a;
	const struct md_entry *y = *(struct md_entry * const *)b;

	if ((x->name_uid == 0) != (y->name_uid == 0))
		return x->name_uid == 0 ? 1 : -1;
	if (x->name_uid != y->name_uid)
		return x->name_uid < y->name_uid ? -1 : 1;
	return strcmp(x->loc, y->loc);
}

struct md_sync {
	struct store *st;
	const char *folder;
	const char *dir;
	struct md_list files;
	struct md_recs recs;
	struct md_entry **cand;		/* files without a record */
	size_t ncand;
	/* the batch being indexed */
	size_t batch_start, batch_end;
	struct msg_info *infos;
	struct stat *stats;
	bool *parsed;
	struct mindex_stamp stamp[2];
	bool expunged;
	bool renamed;		/* this batch gave files their UIDs */
	uint32_t uidvalidity_hint, uidnext_hint;
	struct mindex_folder f;
};

/* Phase 1: which files have records, and which records lost their file. */
static int
md_sync_classify(struct md_sync *s, const char **error_r)
{
	struct mindex_txn *txn;
	struct mindex_folder f;
	int ret;

	if (mindex_begin(s->st->ix, false, &txn, error_r) < 0)
		return -1;
	ret = mindex_folder_get(txn, s->folder, &f);
	if (ret == 1) {
		for (size_t i = 0; i < s->files.count; i++) {
			struct md_entry *e = &s->files.e[i];

			if (mindex_loc_get(txn, f.id, e->loc + 4, e->base_len,
			    &e->uid) != 1)
				e->uid = 0;
		}
		ret = mindex_msg_iter(txn, f.id, 1, md_rec_cb, &s->recs);
	}
	mindex_abort(&txn);
	if (ret < 0) {
		*error_r = "cannot read the index";
		return -1;
	}
	s->cand = xreallocarray(NULL, s->files.count + 1, sizeof(*s->cand));
	for (size_t i = 0; i < s->files.count; i++) {
		struct md_entry *e = &s->files.e[i];
		struct md_rec *r = e->uid != 0 ?
		    md_recs_find(&s->recs, e->uid) : NULL;

		if (r != NULL)
			r->seen = true;
		else {
			e->uid = 0;
			s->cand[s->ncand++] = e;
		}
	}
	if (s->ncand > 1)
		qsort(s->cand, s->ncand, sizeof(*s->cand), md_cand_cmp);
	return 0;
}

static int
md_folder_begin(struct md_sync *s, struct mindex_txn *txn,
    const char **error_r)
{
	int ret = store_folder_ensure(s->st, txn, s->folder, s->uidvalidity_hint,
	    &s->f, error_r);

	if (ret == 1) {
		/* A folder entering the index from storage: its files' own
		 * UIDs are adopted first, and the hint applies after them
		 * (md_next_uid), so it must not raise uidnext yet. */
		if (md_uidfile_write(s->dir, s->f.uidvalidity, s->f.uidnext,
		    s->st->fsync) < 0)
			log_warning("cannot write %s/%s: %s", s->dir,
			    MD_UIDFILE, strerror(errno));
	}
	return ret < 0 ? ret : 0;
}

/* Phase 2: records whose file moved (new/ to cur/) or changed flags, and
 * records whose file is gone. */
static int
md_sync_apply_fn(struct mindex_txn *txn, void *ctx, const char **error_r)
{
	struct md_sync *s = ctx;
	int ret;

	if ((ret = md_folder_begin(s, txn, error_r)) < 0)
		return ret;
	s->expunged = false;
	for (size_t i = 0; i < s->files.count; i++) {
		struct md_entry *e = &s->files.e[i];
		struct md_rec *r;
		struct mindex_msg m;
		struct buf copy;

		if (e->uid == 0 || (r = md_recs_find(&s->recs, e->uid)) ==
		    NULL || strcmp(r->loc, e->loc) == 0)
			continue;
		if (mindex_msg_get(txn, s->f.id, e->uid, &m) != 1)
			continue;
		/* The record's variable fields point into pages this
		 * transaction may rewrite: copy them first. */
		buf_init(&copy, (size_t)-1);
		buf_append(&copy, m.keywords, m.keywords_len);
		buf_append(&copy, m.headers, m.headers_len);
		buf_append(&copy, m.mime, m.mime_len);
		m.keywords = (const char *)copy.data;
		m.headers = copy.data + m.keywords_len;
		m.mime = copy.data + m.keywords_len + m.headers_len;
		m.location = e->loc;
		m.location_len = strlen(e->loc);
		m.flags = e->flags;
		ret = mindex_msg_update(txn, &s->f, &m);
		buf_free(&copy);
		if (ret < 0)
			return ret == MINDEX_EFULL ? ret : -1;
	}
	for (size_t i = 0; i < s->recs.count; i++) {
		struct md_rec *r = &s->recs.r[i];
		const char *base;
		size_t blen;

		if (r->seen)
			continue;
		blen = md_loc_base(r->loc, &base);
		if ((ret = mindex_msg_expunge(txn, &s->f, r->uid)) < 0 ||
		    (ret = mindex_loc_delete(txn, s->f.id, base, blen)) < 0)
			return ret == MINDEX_EFULL ? ret : -1;
		s->expunged = true;
	}
	if ((ret = mindex_folder_put(txn, s->folder, &s->f)) < 0)
		return ret;
	return 0;
}

static void
md_batch_release(struct md_sync *s)
{
	for (size_t i = s->batch_start; i < s->batch_end; i++)
		if (s->parsed[i - s->batch_start])
			msg_info_free(&s->infos[i - s->batch_start]);
}

/* Read and parse the files of the batch, outside any transaction. */
/* Files up to this size are read into a buffer; larger ones are mapped.
 * For the typical small message, read() costs less than setting up and
 * tearing down a mapping. */
#define MD_READ_MAX (128 * 1024)

/* Parse the open file fd (whose stat is sb) into info; false if unreadable. */
static bool
md_parse_fd(int fd, struct stat *sb, struct buf *rbuf, struct msg_info *info)
{
	struct fsutil_map map;
	size_t size = (size_t)sb->st_size, got = 0;
	ssize_t n;

	if (size > MD_READ_MAX) {
		if (fsutil_map_fd(fd, &map) < 0)
			return false;
		msg_parse(map.data, map.len, info);
		fsutil_unmap(&map);
		return true;
	}
	buf_truncate(rbuf, 0);
	if (buf_reserve(rbuf, size + 1) < 0)
		return false;
	/* Read one byte past the size seen, to notice a file that grew. */
	while (got <= size && (n = read(fd, rbuf->data + got,
	    size + 1 - got)) > 0)
		got += (size_t)n;
	if (got > size)
		return false;
	sb->st_size = (off_t)got;	/* what was parsed is what is indexed */
	msg_parse(rbuf->data, got, info);
	return true;
}

/* Read and parse the files of the batch, outside any transaction. */
static void
md_batch_parse(struct md_sync *s)
{
	struct buf rbuf;

	buf_init(&rbuf, MD_READ_MAX + 1);
	for (size_t i = s->batch_start; i < s->batch_end; i++) {
		size_t k = i - s->batch_start;
		char path[PATH_MAX];
		int fd;

		s->parsed[k] = false;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", s->dir,
		    s->cand[i]->loc) >= sizeof(path))
			continue;
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			continue;	/* moved or expunged meanwhile */
		if (fstat(fd, &s->stats[k]) == 0 &&
		    S_ISREG(s->stats[k].st_mode))
			s->parsed[k] = md_parse_fd(fd, &s->stats[k], &rbuf,
			    &s->infos[k]);
		close(fd);
	}
	buf_free(&rbuf);
}

/* Give e the UID uid in its file name; 0, or -1 if the file is gone. */
static int
md_entry_set_uid(struct md_sync *s, struct md_entry *e, uint32_t uid)
{
	struct maildir_name mn;
	const char *err;
	char *final;

	/* No fsync per file: the batch fsyncs new/ and cur/ once, before
	 * its transaction commits (md_sync_batch_fn). */
	if (maildir_rename_uid(s->dir, e->loc, uid, false, &final, &err) < 0)
		return -1;
	s->renamed = true;
	free(e->loc);
	e->loc = final;
	if (maildir_name_parse(e->loc + 4, &mn) == 0)
		e->base_len = mn.base_len;
	e->name_uid = uid;
	return 0;
}

/* A new UID for a file that cannot keep its own: past everything the
 * index and the folder's loft-uidvalidity file know was ever given. */
static uint32_t
md_next_uid(struct md_sync *s)
{
	if (s->uidnext_hint > s->f.uidnext)
		s->f.uidnext = s->uidnext_hint;
	return s->f.uidnext;
}

/* Make renames in new/ and cur/ durable before the index records them. */
static int
md_fsync_subdirs(const char *dir)
{
	char path[PATH_MAX];

	if ((size_t)snprintf(path, sizeof(path), "%s/new", dir) >=
	    sizeof(path) || fsutil_fsync_dir(path) < 0)
		return -1;
	if ((size_t)snprintf(path, sizeof(path), "%s/cur", dir) >=
	    sizeof(path) || fsutil_fsync_dir(path) < 0)
		return -1;
	return 0;
}

static int
md_sync_batch_fn(struct mindex_txn *txn, void *ctx, const char **error_r)
{
	struct md_sync *s = ctx;
	int ret;

	s->renamed = false;
	if ((ret = md_folder_begin(s, txn, error_r)) < 0)
		return ret;
	for (size_t i = s->batch_start; i < s->batch_end; i++) {
		size_t k = i - s->batch_start;
		struct md_entry *e = s->cand[i];
		struct mindex_msg m;
		uint32_t uid, have;

		if (!s->parsed[k])
			continue;
		/* Indexed meanwhile by a delivery or another sync? */
		if (mindex_loc_get(txn, s->f.id, e->loc + 4, e->base_len,
		    &have) == 1)
			continue;
		uid = e->name_uid != 0 && e->name_uid >= s->f.uidnext ?
		    e->name_uid : md_next_uid(s);
		if (uid != e->name_uid && md_entry_set_uid(s, e, uid) < 0)
			continue;
		store_fill_msg(&m, &s->infos[k], (uint64_t)s->stats[k].st_size,
		    s->stats[k].st_mtim.tv_sec);
		m.uid = uid;
		m.flags = e->flags;
		m.location = e->loc;
		m.location_len = strlen(e->loc);
		md_guid(e->loc, m.guid);
		if ((ret = mindex_msg_add(txn, &s->f, &m)) < 0 ||
		    (ret = mindex_loc_put(txn, s->f.id, e->loc + 4,
		    e->base_len, uid)) < 0)
			return ret == MINDEX_EFULL ? ret : -1;
	}
	if (s->renamed && s->st->fsync && md_fsync_subdirs(s->dir) < 0) {
		*error_r = store_error("fsync of %s failed: %s", s->dir,
		    strerror(errno));
		return -1;
	}
	return mindex_folder_put(txn, s->folder, &s->f);
}

static int
md_sync_stamp_fn(struct mindex_txn *txn, void *ctx, const char **error_r)
{
	struct md_sync *s = ctx;
	int ret;

	if ((ret = md_folder_begin(s, txn, error_r)) < 0)
		return ret;
	s->f.stamp[0] = s->stamp[0];
	s->f.stamp[1] = s->stamp[1];
	(void)md_next_uid(s);
	return mindex_folder_put(txn, s->folder, &s->f);
}

static int
md_sync_index_new(struct md_sync *s, const char **error_r)
{
	size_t n = s->ncand < STORE_BATCH ? s->ncand : STORE_BATCH;
	int ret = 0;

	s->infos = xcalloc(n + 1, sizeof(*s->infos));
	s->stats = xcalloc(n + 1, sizeof(*s->stats));
	s->parsed = xcalloc(n + 1, sizeof(*s->parsed));
	for (s->batch_start = 0; s->batch_start < s->ncand && ret == 0;
	    s->batch_start = s->batch_end) {
		s->batch_end = s->batch_start + STORE_BATCH;
		if (s->batch_end > s->ncand)
			s->batch_end = s->ncand;
		md_batch_parse(s);
		ret = mindex_write(s->st->ix, md_sync_batch_fn, s, error_r);
		md_batch_release(s);
	}
	free(s->infos);
	free(s->stats);
	free(s->parsed);
	return ret;
}

/* md_sync_quick: 1 if the stamps say nothing changed. */
static int
md_sync_quick(struct md_sync *s, const char **error_r)
{
	struct mindex_txn *txn;
	struct mindex_folder f;
	int ret;

	if (mindex_begin(s->st->ix, false, &txn, error_r) < 0)
		return -1;
	ret = mindex_folder_get(txn, s->folder, &f);
	mindex_abort(&txn);
	if (ret < 0) {
		*error_r = "cannot read the index";
		return -1;
	}
	return ret == 1 && store_stamp_same(&f.stamp[0], &s->stamp[0]) &&
	    store_stamp_same(&f.stamp[1], &s->stamp[1]);
}

static int
md_sync_stat(struct md_sync *s, bool *exists_r)
{
	static const char *subs[2] = { "new", "cur" };
	int64_t now = store_now_ns();

	*exists_r = false;
	for (int i = 0; i < 2; i++) {
		char path[PATH_MAX];
		struct stat sb;

		if ((size_t)snprintf(path, sizeof(path), "%s/%s", s->dir,
		    subs[i]) >= sizeof(path))
			return -1;
		if (stat(path, &sb) < 0)
			return errno == ENOENT ? 0 : -1;
		store_stamp_of(&sb, now, &s->stamp[i]);
	}
	*exists_r = true;
	return 0;
}

/* Files left in tmp/ by deliveries that died: the Maildir convention
 * (qmail, Dovecot) is to remove them once they are 36 hours old, when no
 * live delivery can still be writing them. Done on full scans only. */
#define MD_TMP_MAX_AGE (36 * 3600)

static void
md_clean_tmp(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *de;
	struct stat sb;
	time_t old = time(NULL) - MD_TMP_MAX_AGE;
	DIR *d;

	if ((size_t)snprintf(path, sizeof(path), "%s/tmp", dir) >=
	    sizeof(path) || (d = opendir(path)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' ||
		    fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(sb.st_mode) || sb.st_mtime >= old)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			log_info("removed %s/%s left by a failed delivery",
			    path, de->d_name);
	}
	closedir(d);
}

int
store_maildir_sync(struct store *st, const char *folder, const char *dir,
    bool force, bool *exists_r, const char **error_r)
{
	struct md_sync s;
	int ret;

	memset(&s, 0, sizeof(s));
	s.st = st;
	s.folder = folder;
	s.dir = dir;
	if (md_sync_stat(&s, exists_r) < 0) {
		*error_r = store_error("cannot stat %s: %s", dir, strerror(errno));
		return -1;
	}
	if (!*exists_r)
		return store_folder_forget(st, folder, error_r);
	if (!force && (ret = md_sync_quick(&s, error_r)) != 0)
		return ret < 0 ? -1 : 0;
	if (md_uidfile_read(dir, &s.uidvalidity_hint, &s.uidnext_hint) < 0) {
		s.uidvalidity_hint = 0;
		s.uidnext_hint = 0;
	}
	md_clean_tmp(dir);
	if (maildir_scan(dir, md_scan_cb, &s.files, error_r) < 0)
		ret = -1;
	else if ((ret = md_sync_classify(&s, error_r)) == 0 &&
	    (ret = mindex_write(st->ix, md_sync_apply_fn, &s, error_r)) == 0)
		ret = md_sync_index_new(&s, error_r);
	if (ret == 0 && s.expunged &&
	    md_uidfile_write(dir, s.f.uidvalidity, s.f.uidnext, st->fsync) < 0)
		log_warning("cannot write %s/%s: %s", dir, MD_UIDFILE,
		    strerror(errno));
	if (ret == 0)
		ret = mindex_write(st->ix, md_sync_stamp_fn, &s, error_r);
	md_list_free(&s.files);
	md_recs_free(&s.recs);
	free(s.cand);
	return ret;
}

/*
 * Delivery.
 */
struct md_deliver {
	struct store *st;
	const char *dir;
	const struct store_delivery *d;
	struct msg_info info;
	char *tmpname;		/* in tmp/, until renamed (owned) */
	char *final;		/* "new/NAME,U=n" once renamed (owned) */
	uint32_t uid;
	uint32_t uidvalidity;
	enum store_result result;
	bool indexed_by_other;
};

static int
md_deliver_fn(struct mindex_txn *txn, void *ctx, const char **error_r)
{
	struct md_deliver *c = ctx;
	struct mindex_folder f;
	struct mindex_msg m;
	struct maildir_name mn;
	uint64_t qbytes, qmsgs;
	uint32_t have;
	int ret;

	ret = store_folder_ensure(c->st, txn, c->d->folder, 0, &f, error_r);
	if (ret < 0)
		return ret;
	if (ret == 1 && md_uidfile_write(c->dir, f.uidvalidity, f.uidnext,
	    c->st->fsync) < 0)
		log_warning("cannot write %s/%s: %s", c->dir, MD_UIDFILE,
		    strerror(errno));
	c->uidvalidity = f.uidvalidity;
	if (c->final == NULL) {
		if (mindex_quota_get(txn, &qbytes, &qmsgs) < 0) {
			*error_r = "cannot read quota usage from the index";
			return -1;
		}
		if (c->st->quota_limit > 0 &&
		    qbytes + c->d->len > c->st->quota_limit) {
			c->result = STORE_OVERQUOTA;
			*error_r = store_error("mailbox is full: %llu of %llu "
			    "bytes used", (unsigned long long)qbytes,
			    (unsigned long long)c->st->quota_limit);
			return -1;
		}
		c->uid = f.uidnext;
		if (maildir_tmp_to_new(c->dir, c->tmpname, c->uid,
		    c->st->fsync, &c->final, error_r) < 0) {
			c->result = fsutil_is_disk_full(errno) ?
			    STORE_DISKFULL : STORE_TEMPFAIL;
			return -1;
		}
	} else {
		/* A retry after the map grew: the file already carries a
		 * UID, which may have been taken or indexed meanwhile. */
		if (maildir_name_parse(c->final + 4, &mn) == 0 &&
		    mindex_loc_get(txn, f.id, c->final + 4, mn.base_len,
		    &have) == 1) {
			c->uid = have;
			c->indexed_by_other = true;
			return 0;
		}
		if (c->uid < f.uidnext) {
			char *moved;

			if (maildir_rename_uid(c->dir, c->final, f.uidnext,
			    c->st->fsync, &moved, error_r) < 0)
				return -1;
			free(c->final);
			c->final = moved;
			c->uid = f.uidnext;
		}
	}
	store_fill_msg(&m, &c->info, c->d->len, c->d->received);
	m.uid = c->uid;
	m.location = c->final;
	m.location_len = strlen(c->final);
	md_guid(c->final, m.guid);
	if (maildir_name_parse(c->final + 4, &mn) < 0) {
		*error_r = "delivered file name does not parse";
		return -1;
	}
	if ((ret = mindex_msg_add(txn, &f, &m)) < 0 ||
	    (ret = mindex_loc_put(txn, f.id, c->final + 4, mn.base_len,
	    c->uid)) < 0)
		return ret == MINDEX_EFULL ? ret : -1;
	return mindex_folder_put(txn, c->d->folder, &f);
}

static int
md_deliver_prepare_dir(const char *folder, const char *dir,
    const char **error_r)
{
	bool sub = strcmp(folder, "INBOX") != 0;
	char path[PATH_MAX];
	struct stat sb;

	if ((size_t)snprintf(path, sizeof(path), "%s/tmp", dir) <
	    sizeof(path) && stat(path, &sb) == 0)
		return 0;
	return maildir_create(dir, sub, error_r);
}

enum store_result
store_maildir_deliver(struct store *st, const char *dir,
    const struct store_delivery *d, struct store_delivered *out,
    const char **error_r)
{
	struct md_deliver c;
	int ret;

	memset(&c, 0, sizeof(c));
	c.st = st;
	c.dir = dir;
	c.d = d;
	c.result = STORE_TEMPFAIL;
	if (md_deliver_prepare_dir(d->folder, dir, error_r) < 0)
		return STORE_TEMPFAIL;
	if (maildir_tmp_write(dir, d->msg, d->len, st->fsync, &c.tmpname,
	    error_r) < 0)
		return fsutil_is_disk_full(errno) ? STORE_DISKFULL :
		    STORE_TEMPFAIL;
	msg_parse(d->msg, d->len, &c.info);
	ret = mindex_write(st->ix, md_deliver_fn, &c, error_r);
	msg_info_free(&c.info);
	if (ret < 0 && c.final == NULL) {
		char path[PATH_MAX];

		if ((size_t)snprintf(path, sizeof(path), "%s/tmp/%s", dir,
		    c.tmpname) < sizeof(path))
			unlink(path);
		free(c.tmpname);
		return c.result;
	}
	if (ret < 0)
		log_warning("%s: message stored as %s/%s but not indexed (%s);"
		    " the next sync will index it", st->user, dir, c.final,
		    *error_r);
	out->uid = c.uid;
	out->uidvalidity = c.uidvalidity;
	free(c.tmpname);
	free(c.final);
	return STORE_OK;
}
