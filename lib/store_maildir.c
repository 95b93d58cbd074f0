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
 * records whose file is gone and adopts files it has not seen, giving
 * each a UID: its own ",U=" if that is still free (else a new one, written
 * into its name so that a rebuild cannot trust the stale one), the one the
 * old index had during a rebuild, or the next. Adoption reads no file: the
 * record takes its size from the name's ",S=" (or a stat) and is marked
 * MINDEX_C_UNPARSED, and the name of a file without ",U=" is left alone
 * (its UID lives in the locs table). A POP3 login to 10,000 messages
 * another program left therefore lists directories and writes records,
 * and nothing more; store_maildir_complete reads and parses those files
 * when a reader first needs what is in them. Keywords are the letters
 * a-z of a name, named by the folder's dovecot-keywords (read once per
 * full sync): an adopted file gets those of its name, and so does a
 * record whose file another program renamed (Dovecot or mutt setting a
 * keyword); a file whose name did not change keeps the record's. Files
 * come from the user's own mail programs: a name that does not parse is
 * skipped, never trusted as a path.
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
#include "store_ops_private.h"
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

/* The two hooks store_append.c's store_deliver_batch uses (store_private.h):
 * the GUID and the loft-uidvalidity file exactly as a single delivery
 * makes them. */
void
store_maildir_guid(const char *loc, uint8_t guid[16])
{
	md_guid(loc, guid);
}

int
store_maildir_uidfile_write(const char *dir, uint32_t uidvalidity,
    uint32_t uidnext, bool do_fsync)
{
	return md_uidfile_write(dir, uidvalidity, uidnext, do_fsync);
}

/* A file found in new/ or cur/. */
struct md_entry {
	char *loc;		/* "new/NAME" or "cur/NAME:2,..." (owned) */
	size_t base_len;	/* of the base name, which starts at loc + 4 */
	uint32_t name_uid;	/* ",U=" in its name, 0 if none */
	uint32_t want_uid;	/* name_uid, or the old index's in a rebuild */
	uint32_t uid;		/* its record, 0 if not indexed */
	uint32_t flags;
	uint32_t kw_letters;	/* its keyword letters (maildir_name) */
	uint64_t size;		/* from ",S=" or a stat, once sized */
	int64_t mtime;		/* from the stat, or the time in the name */
	bool sized;
};

struct md_list {
	struct md_entry *e;
	size_t count, alloc;
};

/* "sub/name", allocated: xasprintf's format parsing showed in the
 * profile of a first sync of 100,000 files. */
static char *
md_join(const char *sub, const char *name)
{
	size_t sl = strlen(sub), nl = strlen(name);
	char *p = xmalloc(sl + 1 + nl + 1);

	memcpy(p, sub, sl);
	p[sl] = '/';
	memcpy(p + sl + 1, name, nl + 1);
	return p;
}

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
	e->loc = md_join(sub, name);
	e->base_len = mn.base_len;
	e->name_uid = mn.uid;
	e->want_uid = mn.uid;
	e->uid = 0;
	e->flags = mn.flags;
	e->kw_letters = mn.kw_letters;
	e->size = mn.size;
	e->sized = mn.has_size;
	e->mtime = 0;
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
	bool new_only;		/* only the records of files in new/ */
};

static int
md_rec_cb(const struct mindex_msg *m, void *ctx)
{
	struct md_recs *rs = ctx;

	if (rs->new_only && strncmp(m->location, "new/", 4) != 0)
		return 0;
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

/* Candidates first by the UID they should keep (so that those can be
 * adopted in increasing order), then files without one by name, which for
 * Maildir names is delivery order. */
static int
md_cand_cmp(const void *a, const void *b)
{
	const struct md_entry *x = *(struct md_entry * const *)a;
	const struct md_entry *y = *(struct md_entry * const *)b;

	if ((x->want_uid == 0) != (y->want_uid == 0))
		return x->want_uid == 0 ? 1 : -1;
	if (x->want_uid != y->want_uid)
		return x->want_uid < y->want_uid ? -1 : 1;
	return strcmp(x->loc + 4, y->loc + 4);	/* after "new/", "cur/" */
}

struct md_sync {
	struct store *st;
	const char *folder;
	const char *dir;
	struct md_list files;
	struct md_recs recs;
	struct md_entry **cand;		/* files without a record */
	size_t ncand;
	size_t batch_start, batch_end;	/* of cand, being adopted */
	struct buf uidlist;		/* lines for loft-uidlist */
	bool in_index;			/* the index had the folder */
	bool cur_same;			/* cur/ unchanged since its stamp */
	bool new_only;			/* this sync lists new/ alone */
	struct mindex_stamp stamp[2];
	bool expunged;
	bool renamed;		/* this batch gave files their UIDs */
	uint32_t uidvalidity_hint, uidnext_hint;
	struct mindex_folder f;
	struct maildir_keywords kw;	/* the folder's keyword letters */
	struct buf kwbuf;		/* one record's keywords */
};

/* The keywords and flags of e's name into s->kwbuf and *flags_r. */
static void
md_entry_keywords(struct md_sync *s, const struct md_entry *e,
    uint32_t *flags_r)
{
	*flags_r = e->flags;
	buf_truncate(&s->kwbuf, 0);
	store_keywords_from_letters(&s->kw, e->kw_letters, &s->kwbuf,
	    flags_r);
}

/* A rebuild keeps the UIDs of files whose names carry none: from the
 * old index (its locs table) while it still opens, else from the folder's
 * loft-uidlist. */
static int
md_sync_old_uids(struct md_sync *s)
{
	struct mindex_txn *txn;
	struct mindex_folder f;
	const char *err;
	int ret;

	if (mindex_begin(s->st->old_ix, false, &txn, &err) < 0)
		return -1;
	ret = mindex_folder_get(txn, s->folder, &f);
	for (size_t i = 0; ret == 1 && i < s->files.count; i++) {
		struct md_entry *e = &s->files.e[i];
		uint32_t uid;

		if (e->want_uid == 0 && mindex_loc_get(txn, f.id, e->loc + 4,
		    e->base_len, &uid) == 1)
			e->want_uid = uid;
	}
	mindex_abort(&txn);
	return ret < 0 ? -1 : 0;
}

/* Files by base name, to look up loft-uidlist lines. */
static int
md_base_cmp(const void *a, const void *b)
{
	const struct md_entry *x = *(struct md_entry * const *)a;
	const struct md_entry *y = *(struct md_entry * const *)b;
	size_t n = x->base_len < y->base_len ? x->base_len : y->base_len;
	int c = memcmp(x->loc + 4, y->loc + 4, n);

	if (c != 0)
		return c;
	return x->base_len < y->base_len ? -1 : x->base_len > y->base_len;
}

struct md_uidlist_ctx {
	struct md_entry **byname;
	size_t count;
};

static void
md_uidlist_cb(uint32_t uid, const char *base, size_t base_len, void *ctx)
{
	struct md_uidlist_ctx *u = ctx;
	size_t lo = 0, hi = u->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		struct md_entry *e = u->byname[mid];
		size_t n = e->base_len < base_len ? e->base_len : base_len;
		int c = memcmp(e->loc + 4, base, n);

		if (c == 0)
			c = e->base_len < base_len ? -1 : e->base_len > base_len;
		if (c == 0) {
			e->want_uid = uid;	/* the last line wins */
			return;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
}

static int
md_sync_listed_uids(struct md_sync *s)
{
	struct md_uidlist_ctx u = { NULL, 0 };
	int ret;

	if (maildir_uidlist_size(s->dir) == 0)
		return 0;
	u.byname = xreallocarray(NULL, s->files.count + 1, sizeof(*u.byname));
	for (size_t i = 0; i < s->files.count; i++)
		if (s->files.e[i].name_uid == 0)
			u.byname[u.count++] = &s->files.e[i];
	if (u.count > 1)
		qsort(u.byname, u.count, sizeof(*u.byname), md_base_cmp);
	ret = u.count == 0 ? 0 :
	    maildir_uidlist_read(s->dir, md_uidlist_cb, &u);
	free(u.byname);
	if (ret < 0)
		log_warning("cannot read %s/loft-uidlist: %s", s->dir,
		    strerror(errno));
	return 0;
}

static int
md_sync_known_uids(struct md_sync *s)
{
	if (s->in_index)
		return 0;	/* its locs table knows them */
	if (s->st->old_ix != NULL)
		return md_sync_old_uids(s);
	return md_sync_listed_uids(s);
}

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
	s->in_index = ret == 1;
	if (ret == 1) {
		for (size_t i = 0; i < s->files.count; i++) {
			struct md_entry *e = &s->files.e[i];

			if (mindex_loc_get(txn, f.id, e->loc + 4, e->base_len,
			    &e->uid) != 1)
				e->uid = 0;
		}
		s->recs.new_only = s->new_only;
		ret = mindex_msg_iter(txn, f.id, 1, md_rec_cb, &s->recs);
	}
	mindex_abort(&txn);
	if (ret < 0 || md_sync_known_uids(s) < 0) {
		*error_r = "cannot read the index";
		return -1;
	}
	/* Listing new/ alone assumed that every record outside new/ still
	 * has its file in cur/. A file in new/ whose record says cur/ (a
	 * copy under the same name) breaks that: list both after all. */
	for (size_t i = 0; s->new_only && i < s->files.count; i++)
		if (s->files.e[i].uid != 0 &&
		    md_recs_find(&s->recs, s->files.e[i].uid) == NULL)
			return 1;
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
		 * transaction may rewrite: copy them first. Renamed by
		 * another program: its keywords are its name's now. */
		buf_init(&copy, (size_t)-1);
		buf_append(&copy, m.headers, m.headers_len);
		buf_append(&copy, m.mime, m.mime_len);
		m.headers = copy.data;
		m.mime = copy.data + m.headers_len;
		m.location = e->loc;
		m.location_len = strlen(e->loc);
		md_entry_keywords(s, e, &m.flags);
		m.keywords = s->kwbuf.len > 0 ? (const char *)s->kwbuf.data :
		    NULL;
		m.keywords_len = s->kwbuf.len;
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

/* Files up to this size are read into a buffer; larger ones are mapped.
 * For the typical small message, read() costs less than setting up and
 * tearing down a mapping. */
#define MD_READ_MAX (128 * 1024)

/* Hand the bytes of the open file fd (whose stat is sb) to fn; false if
 * unreadable. A file that grew while being read is refused; one that
 * shrank gives what was read, and sb->st_size says how much. */
static bool
md_with_fd(int fd, struct stat *sb, struct buf *rbuf,
    void (*fn)(const unsigned char *data, size_t len, void *ctx), void *ctx)
{
	struct fsutil_map map;
	size_t size = (size_t)sb->st_size, got = 0;
	ssize_t n;

	if (size > MD_READ_MAX) {
		if (fsutil_map_fd(fd, &map) < 0)
			return false;
		fn(map.data, map.len, ctx);
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
	fn(rbuf->data, got, ctx);
	return true;
}

static void
md_parse_cb(const unsigned char *data, size_t len, void *ctx)
{
	msg_parse(data, len, ctx);
}

/* Parse the open file fd (whose stat is sb) into info; false if unreadable. */
static bool
md_parse_fd(int fd, struct stat *sb, struct buf *rbuf, struct msg_info *info)
{
	return md_with_fd(fd, sb, rbuf, md_parse_cb, info);
}

/*
 * Completion: records adopted unread get what is in their files.
 */
struct md_unparsed {
	uint32_t uid;
	char *loc;		/* as the record had it (owned) */
	bool parsed;
	struct stat sb;
	struct msg_info info;	/* unless sizes */
	uint64_t vsize;		/* sizes: the file's CRLF size */
	bool no_final_lf;	/* sizes */
};

struct md_complete {
	struct store *st;
	const char *folder;
	const char *dir;
	bool sizes;		/* only count line ends (MINDEX_C_SIZED) */
	struct md_unparsed *t;
	size_t count, alloc;
	size_t start, end;	/* the batch being parsed and written */
	struct mindex_folder f;
};

static int
md_unparsed_cb(const struct mindex_msg *m, void *ctx)
{
	struct md_complete *c = ctx;

	if ((m->cache_flags & MINDEX_C_UNPARSED) == 0 ||
	    (c->sizes && (m->cache_flags & MINDEX_C_SIZED) != 0))
		return 0;
	if (c->count == c->alloc) {
		c->alloc = c->alloc == 0 ? 256 : c->alloc * 2;
		c->t = xreallocarray(c->t, c->alloc, sizeof(*c->t));
	}
	memset(&c->t[c->count], 0, sizeof(c->t[c->count]));
	c->t[c->count].uid = m->uid;
	c->t[c->count].loc = xstrndup(m->location, m->location_len);
	c->count++;
	return 0;
}

/* The unparsed records of the folder; none (one lookup) if its count
 * says so. */
static int
md_complete_collect(struct md_complete *c, const char **error_r)
{
	struct mindex_txn *txn;
	struct mindex_folder f;
	int ret;

	if (mindex_begin(c->st->ix, false, &txn, error_r) < 0)
		return -1;
	ret = mindex_folder_get(txn, c->folder, &f);
	if (ret == 1 && f.unparsed > 0)
		ret = mindex_msg_iter(txn, f.id, 1, md_unparsed_cb, c);
	mindex_abort(&txn);
	if (ret < 0) {
		*error_r = "cannot read the index";
		return -1;
	}
	return 0;
}

static void
md_size_cb(const unsigned char *data, size_t len, void *ctx)
{
	struct md_unparsed *t = ctx;

	t->vsize = msg_vsize(data, len);
	t->no_final_lf = len > 0 && data[len - 1] != '\n';
}

/* Read and parse (or, for sizes, count) the batch's files, outside any
 * transaction. */
static void
md_complete_parse(struct md_complete *c)
{
	struct buf rbuf;

	buf_init(&rbuf, MD_READ_MAX + 1);
	for (size_t i = c->start; i < c->end; i++) {
		struct md_unparsed *t = &c->t[i];
		char path[PATH_MAX];
		int fd;

		if ((size_t)snprintf(path, sizeof(path), "%s/%s", c->dir,
		    t->loc) >= sizeof(path))
			continue;
		fd = fsutil_open_read_noatime(path, O_NOFOLLOW);
		if (fd < 0)
			continue;	/* moved or expunged meanwhile */
		if (fstat(fd, &t->sb) == 0 && S_ISREG(t->sb.st_mode))
			t->parsed = c->sizes ?
			    md_with_fd(fd, &t->sb, &rbuf, md_size_cb, t) :
			    md_parse_fd(fd, &t->sb, &rbuf, &t->info);
		close(fd);
	}
	buf_free(&rbuf);
}

static void
md_complete_release(struct md_complete *c)
{
	for (size_t i = c->start; i < c->end; i++)
		if (c->t[i].parsed) {
			if (!c->sizes)
				msg_info_free(&c->t[i].info);
			c->t[i].parsed = false;
		}
}

/* Rewrite the records of the batch's parsed files, if they still are
 * unparsed and at the place the file was read from. */
static int
md_complete_fn(struct mindex_txn *txn, void *ctx, const char **error_r)
{
	struct md_complete *c = ctx;
	int ret;

	(void)error_r;
	if ((ret = mindex_folder_get(txn, c->folder, &c->f)) <= 0)
		return ret;
	for (size_t i = c->start; i < c->end; i++) {
		struct md_unparsed *t = &c->t[i];
		struct mindex_msg old, m;

		if (!t->parsed ||
		    mindex_msg_get(txn, c->f.id, t->uid, &old) != 1 ||
		    (old.cache_flags & MINDEX_C_UNPARSED) == 0 ||
		    strcmp(old.location, t->loc) != 0)
			continue;
		/* old's fields point into the map; update copies them
		 * before it writes (mindex.h). */
		if (c->sizes) {
			m = old;
			m.psize = (uint64_t)t->sb.st_size;
			m.vsize = t->vsize;
			m.cache_flags |= MINDEX_C_SIZED |
			    (t->no_final_lf ? MINDEX_C_NO_FINAL_LF : 0);
			if ((ret = mindex_msg_refresh(txn, &c->f, &m)) < 0)
				return ret == MINDEX_EFULL ? ret : -1;
			continue;
		}
		store_fill_msg(&m, &t->info, (uint64_t)t->sb.st_size,
		    t->sb.st_mtim.tv_sec);
		m.uid = old.uid;
		m.flags = old.flags;
		m.save_date = old.save_date;
		memcpy(m.guid, old.guid, sizeof(m.guid));
		m.location = old.location;
		m.location_len = old.location_len;
		m.keywords = old.keywords;
		m.keywords_len = old.keywords_len;
		/* Nothing a client sees changes: the MODSEQ stays, and no
		 * CONDSTORE client is sent FLAGS that did not change. */
		if ((ret = mindex_msg_refresh(txn, &c->f, &m)) < 0)
			return ret == MINDEX_EFULL ? ret : -1;
	}
	return mindex_folder_put(txn, c->folder, &c->f);
}

int
store_maildir_complete(struct store *st, const char *folder,
    const char *dir, bool sizes, const char **error_r)
{
	struct md_complete c;
	int ret;

	memset(&c, 0, sizeof(c));
	c.st = st;
	c.folder = folder;
	c.dir = dir;
	c.sizes = sizes;
	ret = md_complete_collect(&c, error_r);
	for (c.start = 0; ret == 0 && c.start < c.count; c.start = c.end) {
		/* Counting holds nothing per file but its sizes; a parse
		 * holds its header cache and MIME tree. */
		c.end = c.start + (sizes ? STORE_ADOPT_BATCH : STORE_BATCH);
		if (c.end > c.count)
			c.end = c.count;
		md_complete_parse(&c);
		ret = mindex_write(st->ix, md_complete_fn, &c, error_r);
		md_complete_release(&c);
	}
	for (size_t i = 0; i < c.count; i++)
		free(c.t[i].loc);
	free(c.t);
	return ret;
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

/* A new UID for a file that cannot keep the one it should: past everything the
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

/* The time at the start of a Maildir name ("SECS.something"), or now. */
static int64_t
md_name_time(const char *base)
{
	int64_t t = 0;
	int n = 0;

	for (; *base >= '0' && *base <= '9' && n < 12; base++, n++)
		t = t * 10 + (*base - '0');
	return n >= 9 && *base == '.' ? t : (int64_t)time(NULL);
}

/* Size the batch's files whose names do not say their size: one stat
 * each, outside any transaction. A file gone meanwhile stays unsized and
 * is not adopted. */
static void
md_adopt_stat(struct md_sync *s)
{
	for (size_t i = s->batch_start; i < s->batch_end; i++) {
		struct md_entry *e = s->cand[i];
		char path[PATH_MAX];
		struct stat sb;

		if (e->sized)
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", s->dir,
		    e->loc) >= sizeof(path) || lstat(path, &sb) < 0 ||
		    !S_ISREG(sb.st_mode))
			continue;
		e->size = (uint64_t)sb.st_size;
		e->mtime = sb.st_mtim.tv_sec;
		e->sized = true;
	}
}

/* The record of a file adopted unread (MINDEX_C_UNPARSED); its keywords
 * are in s->kwbuf until the next entry. */
static void
md_adopt_msg(struct md_sync *s, const struct md_entry *e, uint32_t uid,
    struct mindex_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->uid = uid;
	md_entry_keywords(s, e, &m->flags);
	m->keywords = s->kwbuf.len > 0 ? (const char *)s->kwbuf.data : NULL;
	m->keywords_len = s->kwbuf.len;
	m->cache_flags = MINDEX_C_UNPARSED;
	m->internal_date = e->mtime != 0 ? e->mtime : md_name_time(e->loc + 4);
	m->save_date = time(NULL);
	m->psize = e->size;
	m->vsize = e->size;
	m->location = e->loc;
	m->location_len = strlen(e->loc);
	md_guid(e->loc, m->guid);
}

static int
md_sync_adopt_fn(struct mindex_txn *txn, void *ctx, const char **error_r)
{
	struct md_sync *s = ctx;
	int ret;

	s->renamed = false;
	buf_truncate(&s->uidlist, 0);
	if ((ret = md_folder_begin(s, txn, error_r)) < 0)
		return ret;
	for (size_t i = s->batch_start; i < s->batch_end; i++) {
		struct md_entry *e = s->cand[i];
		struct mindex_msg m;
		uint32_t uid, have;

		if (!e->sized)
			continue;
		/* Indexed meanwhile by a delivery or another sync? */
		if (mindex_loc_get(txn, s->f.id, e->loc + 4, e->base_len,
		    &have) == 1)
			continue;
		uid = e->want_uid != 0 && e->want_uid >= s->f.uidnext ?
		    e->want_uid : md_next_uid(s);
		if (e->name_uid != 0 && uid != e->name_uid &&
		    md_entry_set_uid(s, e, uid) < 0)
			continue;
		md_adopt_msg(s, e, uid, &m);
		if ((ret = mindex_msg_add(txn, &s->f, &m)) < 0 ||
		    (ret = mindex_loc_put(txn, s->f.id, e->loc + 4,
		    e->base_len, uid)) < 0)
			return ret == MINDEX_EFULL ? ret : -1;
		e->uid = uid;
		if (e->name_uid == 0)
			maildir_uidlist_add(&s->uidlist, uid, e->loc + 4,
			    e->base_len);
	}
	if (s->renamed && s->st->fsync && md_fsync_subdirs(s->dir) < 0) {
		*error_r = store_error("fsync of %s failed: %s", s->dir,
		    strerror(errno));
		return -1;
	}
	/* Before the commit: a UID the index gives is in the list first. */
	if (maildir_uidlist_append(s->dir, &s->uidlist, s->st->fsync) < 0) {
		*error_r = store_error("cannot write %s/loft-uidlist: %s",
		    s->dir, strerror(errno));
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

/* Rewrite loft-uidlist without the lines of files that are gone once
 * they make up most of it: the live lines are those of the files found
 * without ",U=" that have a record. */
static void
md_uidlist_compact(struct md_sync *s)
{
	struct buf b;
	size_t live = 0;

	for (size_t i = 0; i < s->files.count; i++)
		if (s->files.e[i].name_uid == 0 && s->files.e[i].uid != 0)
			live += s->files.e[i].base_len + 12;
	if (maildir_uidlist_size(s->dir) <= (int64_t)(2 * live + 65536))
		return;
	buf_init(&b, (size_t)-1);
	for (size_t i = 0; i < s->files.count; i++) {
		struct md_entry *e = &s->files.e[i];

		if (e->name_uid == 0 && e->uid != 0)
			maildir_uidlist_add(&b, e->uid, e->loc + 4,
			    e->base_len);
	}
	if (maildir_uidlist_replace(s->dir, &b, s->st->fsync) < 0)
		log_warning("cannot rewrite %s/loft-uidlist: %s", s->dir,
		    strerror(errno));
	buf_free(&b);
}

static int
md_sync_adopt(struct md_sync *s, const char **error_r)
{
	int ret = 0;

	buf_init(&s->uidlist, (size_t)-1);
	for (s->batch_start = 0; s->batch_start < s->ncand && ret == 0;
	    s->batch_start = s->batch_end) {
		s->batch_end = s->batch_start + STORE_ADOPT_BATCH;
		if (s->batch_end > s->ncand)
			s->batch_end = s->ncand;
		md_adopt_stat(s);
		ret = mindex_write(s->st->ix, md_sync_adopt_fn, s, error_r);
	}
	buf_free(&s->uidlist);
	/* The live lines are counted over every file: a full listing's. */
	if (ret == 0 && !s->new_only)
		md_uidlist_compact(s);
	return ret;
}

/* md_sync_quick: 1 if the stamps say nothing changed; s->cur_same says
 * whether cur/ did not. */
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
	s->cur_same = ret == 1 && store_stamp_same(&f.stamp[1], &s->stamp[1]);
	return s->cur_same && store_stamp_same(&f.stamp[0], &s->stamp[0]);
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

/* md_sync_reset: forget a listing, for another. */
static void
md_sync_reset(struct md_sync *s)
{
	md_list_free(&s->files);
	md_recs_free(&s->recs);
	free(s->cand);
	s->cand = NULL;
	s->ncand = 0;
}

/* md_sync_list: list (new/ alone when s->new_only), classify, apply and
 * adopt. 0, -1, or 1: new/ alone was not enough, list both. */
static int
md_sync_list(struct md_sync *s, const char **error_r)
{
	int ret;

	if ((s->new_only ? maildir_scan_new(s->dir, md_scan_cb, &s->files,
	    error_r) : maildir_scan(s->dir, md_scan_cb, &s->files,
	    error_r)) < 0)
		return -1;
	if ((ret = md_sync_classify(s, error_r)) != 0)
		return ret;
	if ((ret = mindex_write(s->st->ix, md_sync_apply_fn, s,
	    error_r)) == 0)
		ret = md_sync_adopt(s, error_r);
	return ret;
}

/*
 * A sync lists new/ alone when cur/ is what its stamp says (unchanged and
 * settled): then every record of a file in cur/ still has its file, and
 * only new/ can hold files that came or went. That is the sync a delivery
 * causes (a session in IDLE, the next NOOP): listing 10,000 files of cur/
 * for the one file that arrived in new/ was most of its cost.
 */
int
store_maildir_sync(struct store *st, const char *folder, const char *dir,
    bool force, bool *exists_r, const char **error_r)
{
	struct md_sync s;
	const char *kwerr;
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
	s.new_only = !force && s.cur_same;
	if (md_uidfile_read(dir, &s.uidvalidity_hint, &s.uidnext_hint) < 0) {
		s.uidvalidity_hint = 0;
		s.uidnext_hint = 0;
	}
	if (!s.new_only)
		md_clean_tmp(dir);
	if (maildir_keywords_read(dir, &s.kw, &kwerr) < 0)
		log_warning("%s: %s; keywords of files renamed meanwhile are "
		    "not read", st->user, kwerr);
	buf_init(&s.kwbuf, (size_t)-1);
	if ((ret = md_sync_list(&s, error_r)) == 1) {
		md_sync_reset(&s);
		s.new_only = false;
		md_clean_tmp(dir);
		ret = md_sync_list(&s, error_r);
	}
	if (ret == 0 && s.expunged &&
	    md_uidfile_write(dir, s.f.uidvalidity, s.f.uidnext, st->fsync) < 0)
		log_warning("cannot write %s/%s: %s", dir, MD_UIDFILE,
		    strerror(errno));
	if (ret == 0)
		ret = mindex_write(st->ix, md_sync_stamp_fn, &s, error_r);
	md_sync_reset(&s);
	maildir_keywords_free(&s.kw);
	buf_free(&s.kwbuf);
	return ret;
}

/*
 * Expunges this process made (store_expunge.c).
 */
struct md_expunged {
	const char *folder;
	const uint32_t *uids;
	size_t n;
	struct mindex_folder f;
	bool any;
};

static int
md_expunged_fn(struct mindex_txn *txn, void *ctx, const char **error_r)
{
	struct md_expunged *x = ctx;
	char loc[PATH_MAX];
	struct mindex_msg m;
	const char *b;
	size_t blen;
	int ret;

	x->any = false;
	if ((ret = mindex_folder_get(txn, x->folder, &x->f)) != 1)
		return ret < 0 ? -1 : 0;
	for (size_t i = 0; i < x->n; i++) {
		if ((ret = mindex_msg_get(txn, x->f.id, x->uids[i], &m)) < 0)
			return -1;
		if (ret == 0)
			continue;	/* a sync took it out already */
		if (m.location_len < 5 || m.location_len >= sizeof(loc)) {
			*error_r = "a message location in the index is "
			    "not a Maildir one";
			return -1;
		}
		/* The record points into pages the deletes below may
		 * rewrite: copy the key first. */
		memcpy(loc, m.location, m.location_len);
		loc[m.location_len] = '\0';
		blen = md_loc_base(loc, &b);
		if ((ret = mindex_loc_delete(txn, x->f.id, b, blen)) < 0 ||
		    (ret = mindex_msg_expunge(txn, &x->f, x->uids[i])) < 0)
			return ret == MINDEX_EFULL ? ret : -1;
		x->any = true;
	}
	return x->any ? mindex_folder_put(txn, x->folder, &x->f) : 0;
}

int
store_maildir_expunged(struct store *st, const char *folder,
    const char *dir, const uint32_t *uids, size_t n, const char **error_r)
{
	struct md_expunged x = { folder, uids, n, { 0 }, false };

	if (n == 0)
		return 0;
	if (mindex_write(st->ix, md_expunged_fn, &x, error_r) < 0)
		return -1;
	/* As after a sync that expunged: a rebuild must not give the
	 * highest UIDs again. */
	if (x.any && md_uidfile_write(dir, x.f.uidvalidity, x.f.uidnext,
	    st->fsync) < 0)
		log_warning("cannot write %s/%s: %s", dir, MD_UIDFILE,
		    strerror(errno));
	return 0;
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
