/*
 * mindex.c: the per-user mail index, one LMDB environment per user (the
 * contract is in mindex.h).
 *
 * What it trusts: it runs as the mailbox owner on files in the owner's own
 * directory, but the records are still decoded as untrusted bytes. A value
 * that is short, has a length field pointing past its end, or carries an
 * unknown format number (disk damage, a bug, a different version of
 * loft) gives "corrupt index record" and never a read outside the value
 * LMDB handed back. Arguments from callers (names, storage keys, field
 * lengths) are checked against the limits in mindex.h before they reach
 * LMDB.
 *
 * Records are written field by field in little-endian order, never as a
 * struct dump, so that padding never reaches the disk and the layout does
 * not depend on the compiler. Keys are big-endian so that LMDB's byte
 * order is numeric order and a folder's messages sit together in uid
 * order.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compat/compat.h"
#include "log.h"
#include "mindex.h"
#include "xmalloc.h"

/* Of the index: meta "version". 2 added the brief database; a version 1
 * index gets it built when it is next opened (mindex_version). 3 lets a
 * brief record carry the location and keywords (mindex_state_put): a
 * version 2 index is a valid version 3 one and only gets the number. */
#define MINDEX_VERSION		3
#define MINDEX_MSG_FORMAT	1	/* first byte of a message record */
#define MINDEX_FOLDER_FORMAT	2	/* first byte of a folder record */
/* format (1), reserved (3), flags (4), eight 64-bit fields, guid (16) */
#define MINDEX_MSG_FIXED	(1 + 3 + 4 + 4 + 8 * 8 + 16)
/* format (1), reserved (3), six 32-bit and three 64-bit counters, two
 * stamps of five 64-bit fields, sync_offset, then (format 2) unparsed.
 * Format 1 records, without unparsed, are still read (as 0). */
#define MINDEX_FOLDER_SIZE_1	(1 + 3 + 6 * 4 + 3 * 8 + 2 * 5 * 8 + 8)
#define MINDEX_FOLDER_SIZE	(MINDEX_FOLDER_SIZE_1 + 4)
#define MINDEX_QUOTA_SIZE	16
#define MINDEX_MAXDBS		8	/* six used; room for a new one */
#define MINDEX_MAP_SIZE_MIN	(64u * 1024u)
#define MINDEX_WRITE_RUNS	64	/* mindex_write: runs of fn at most */
#define MINDEX_RESIZED_TRIES	8	/* adoptions of a grown map per begin */
#define MINDEX_LOCK_TRIES	8	/* loft.lock replaced while we waited */
#define MINDEX_ERR_MAX		512

enum mindex_db {
	MINDEX_DB_META,
	MINDEX_DB_FOLDERS,
	MINDEX_DB_MSGS,
	MINDEX_DB_LOCS,
	MINDEX_DB_EXPUNGED,
	MINDEX_DB_BRIEF,
	MINDEX_DB_COUNT
};

static const char *const mindex_db_names[MINDEX_DB_COUNT] = {
	"meta", "folders", "msgs", "locs", "expunged", "brief"
};

/*
 * A brief record: flags, cache flags (32 bits each), vsize, modseq (64).
 * These four are always the message's own: every change writes them. A
 * longer brief record (a "state" record) goes on with the location and
 * the keywords, each after a 32-bit length as in the full record, and
 * then those two override the full record's too. Why: a flag change (IMAP
 * STORE, a Maildir rename) touches only these fields, and rewriting the
 * full record, with its header cache and MIME tree, copied every page of
 * the msgs database for a STORE on a whole folder (16 MB for 10,000
 * messages, against 1 MB of state records). A full write (add, refresh,
 * an update that changes more) writes the short form again.
 */
#define MINDEX_BRIEF_SIZE	24

struct mindex_txn {
	struct mindex *ix;
	MDB_txn *mdb;
	bool write;
	bool full;		/* hit MDB_MAP_FULL: only abort is left */
};

/*
 * One open environment of this process. LMDB forbids opening the same
 * environment twice in one process (closing either would drop the other's
 * fcntl locks on lock.mdb: MDB_BAD_RSLOT and worse), and loftd's mail
 * process serves several sessions of one user at once. So every
 * mindex_open of a directory already open here shares its environment,
 * counted, and the last mindex_close closes it.
 */
struct mindex_shared {
	struct mindex_shared *next;
	dev_t dev;		/* of the index directory */
	ino_t ino;
	unsigned refs;
	MDB_env *env;		/* owned */
	int lock_fd;		/* owned */
	MDB_dbi dbi[MINDEX_DB_COUNT];
	size_t psize;
	uint64_t max_map_size;
};

static struct mindex_shared *mindex_shared_list;

struct mindex {
	MDB_env *env;		/* owned, or borrowed from shared */
	MDB_dbi dbi[MINDEX_DB_COUNT];
	int lock_fd;		/* dir/loft.lock, LOCK_SH held while open */
	struct mindex_shared *shared;	/* NULL until the open is done */
	size_t psize;		/* LMDB page size */
	uint64_t max_map_size;
	bool txn_active;	/* txn below is in use */
	bool lazy_meta;		/* commit with MDB_NOMETASYNC (mindex.h) */
	struct mindex_txn txn;	/* the one transaction; no allocation */
};

/* A cursor over a record being decoded: every read is checked against
 * len, and the first one that does not fit sets bad. */
struct mindex_dec {
	const unsigned char *p;
	size_t len;
	size_t off;
	bool bad;
};

/* The same for writing into a buffer sized by the caller beforehand. */
struct mindex_enc {
	unsigned char *p;
	size_t size;
	size_t off;
};

static char mindex_err[MINDEX_ERR_MAX];

static int mindex_brief_put(MDB_txn *mdb, MDB_dbi dbi, MDB_val *k,
    const struct mindex_msg *m, bool add);
static int mindex_brief_overlay(const MDB_val *v, struct mindex_msg *m);
static int mindex_msg_decode(const MDB_val *k, const MDB_val *v,
    struct mindex_msg *m);

static int mindex_fail(const char **error_r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* mindex_fail: set the module's error text (and *error_r if given) and
 * return -1, so that error exits stay one line. */
static int
mindex_fail(const char **error_r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(mindex_err, sizeof(mindex_err), fmt, ap);
	va_end(ap);
	if (error_r != NULL)
		*error_r = mindex_err;
	return -1;
}

const char *
mindex_last_error(void)
{
	return mindex_err;
}

/* Byte order. */

static void
mindex_put_le32(unsigned char *p, uint32_t v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
	p[2] = (v >> 16) & 0xff;
	p[3] = (v >> 24) & 0xff;
}

static void
mindex_put_le64(unsigned char *p, uint64_t v)
{
	mindex_put_le32(p, (uint32_t)v);
	mindex_put_le32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t
mindex_get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static uint64_t
mindex_get_le64(const unsigned char *p)
{
	return (uint64_t)mindex_get_le32(p) |
	    (uint64_t)mindex_get_le32(p + 4) << 32;
}

static void
mindex_put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (v >> 24) & 0xff;
	p[1] = (v >> 16) & 0xff;
	p[2] = (v >> 8) & 0xff;
	p[3] = v & 0xff;
}

static uint32_t
mindex_get_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Encoding and decoding cursors. */

static void
mindex_enc_bytes(struct mindex_enc *e, const void *p, size_t n)
{
	if (n > e->size - e->off)
		log_panic("mindex: record encoding overflows (%zu + %zu > %zu)",
		    e->off, n, e->size);
	if (n > 0)
		memcpy(e->p + e->off, p, n);
	e->off += n;
}

static void
mindex_enc_u32(struct mindex_enc *e, uint32_t v)
{
	unsigned char b[4];

	mindex_put_le32(b, v);
	mindex_enc_bytes(e, b, sizeof(b));
}

static void
mindex_enc_u64(struct mindex_enc *e, uint64_t v)
{
	unsigned char b[8];

	mindex_put_le64(b, v);
	mindex_enc_bytes(e, b, sizeof(b));
}

static void
mindex_enc_head(struct mindex_enc *e, unsigned char format)
{
	static const unsigned char zero[3];

	mindex_enc_bytes(e, &format, 1);
	mindex_enc_bytes(e, zero, sizeof(zero));
}

static const unsigned char *
mindex_dec_take(struct mindex_dec *d, size_t n)
{
	const unsigned char *q;

	if (d->bad || n > d->len - d->off) {
		d->bad = true;
		return NULL;
	}
	q = d->p + d->off;
	d->off += n;
	return q;
}

static uint32_t
mindex_dec_u32(struct mindex_dec *d)
{
	const unsigned char *q = mindex_dec_take(d, 4);

	return q == NULL ? 0 : mindex_get_le32(q);
}

static uint64_t
mindex_dec_u64(struct mindex_dec *d)
{
	const unsigned char *q = mindex_dec_take(d, 8);

	return q == NULL ? 0 : mindex_get_le64(q);
}

/* mindex_dec_head: the format byte must be ours and the reserved bytes
 * zero. */
static void
mindex_dec_head(struct mindex_dec *d, unsigned char format)
{
	const unsigned char *q = mindex_dec_take(d, 4);

	if (q != NULL && (q[0] != format || q[1] != 0 || q[2] != 0 ||
	    q[3] != 0))
		d->bad = true;
}

/* mindex_dec_field: a 32-bit length and that many bytes. */
static const unsigned char *
mindex_dec_field(struct mindex_dec *d, size_t *len_r)
{
	uint32_t len = mindex_dec_u32(d);
	const unsigned char *q = mindex_dec_take(d, len);

	*len_r = q == NULL ? 0 : len;
	return q;
}

/* mindex_dec_done: all of the value was used, and nothing was bad. */
static bool
mindex_dec_done(const struct mindex_dec *d)
{
	return !d->bad && d->off == d->len;
}

/* Keys. */

static void
mindex_key_uid(unsigned char kb[8], uint32_t folder_id, uint32_t uid,
    MDB_val *k)
{
	mindex_put_be32(kb, folder_id);
	mindex_put_be32(kb + 4, uid);
	k->mv_data = kb;
	k->mv_size = 8;
}

static int
mindex_key_name(const char *name, MDB_val *k)
{
	size_t len = strlen(name);

	if (len == 0 || len > MINDEX_KEY_MAX)
		return mindex_fail(NULL, "folder name must be 1 to %d bytes",
		    MINDEX_KEY_MAX);
	k->mv_data = (void *)name;
	k->mv_size = len;
	return 0;
}

static int
mindex_key_loc(unsigned char kb[4 + MINDEX_KEY_MAX], uint32_t folder_id,
    const char *key, size_t key_len, MDB_val *k)
{
	if (key_len == 0 || key_len > MINDEX_KEY_MAX)
		return mindex_fail(NULL, "storage key must be 1 to %d bytes",
		    MINDEX_KEY_MAX);
	mindex_put_be32(kb, folder_id);
	memcpy(kb + 4, key, key_len);
	k->mv_data = kb;
	k->mv_size = 4 + key_len;
	return 0;
}

/* Map size. */

static uint64_t
mindex_map_size(struct mindex *ix)
{
	MDB_envinfo ei;

	mdb_env_info(ix->env, &ei);
	return ei.me_mapsize;
}

static uint64_t
mindex_used(struct mindex *ix)
{
	MDB_envinfo ei;

	mdb_env_info(ix->env, &ei);
	return ((uint64_t)ei.me_last_pgno + 1) * ix->psize;
}

/* mindex_grow: double the map, up to max_map_size. Only legal with no
 * transaction open in this process, which one-at-a-time guarantees.
 * Returns 1 grown, 0 already at the maximum, -1 with *rc_r. */
static int
mindex_grow(struct mindex *ix, int *rc_r)
{
	uint64_t cur = mindex_map_size(ix), next;

	if (cur >= ix->max_map_size)
		return 0;
	next = cur > ix->max_map_size / 2 ? ix->max_map_size : cur * 2;
	if ((*rc_r = mdb_env_set_mapsize(ix->env, (size_t)next)) != 0)
		return -1;
	return 1;
}

/* mindex_make_room: before a write transaction, grow while less than a
 * quarter of the map is free, so that MDB_MAP_FULL stays rare. */
static int
mindex_make_room(struct mindex *ix, const char **error_r)
{
	int r, rc;

	while (mindex_used(ix) > mindex_map_size(ix) / 4 * 3) {
		if ((r = mindex_grow(ix, &rc)) == 0)
			break;
		if (r < 0)
			return mindex_fail(error_r, "grow index map: %s",
			    mdb_strerror(rc));
	}
	return 0;
}

/* mindex_regrow: after MDB_MAP_FULL ended a transaction. Returns
 * MINDEX_EFULL (grown: run it again) or -1 (at the maximum, or error). */
static int
mindex_regrow(struct mindex *ix, const char **error_r)
{
	int r, rc;

	if ((r = mindex_grow(ix, &rc)) > 0)
		return MINDEX_EFULL;
	if (r == 0)
		return mindex_fail(error_r, "index full (%llu bytes)",
		    (unsigned long long)ix->max_map_size);
	return mindex_fail(error_r, "grow index map: %s", mdb_strerror(rc));
}

/* mindex_full: what a write that found the map full returns. */
static int
mindex_full(struct mindex_txn *txn)
{
	txn->full = true;
	if (mindex_map_size(txn->ix) >= txn->ix->max_map_size)
		return mindex_fail(NULL, "index full (%llu bytes)",
		    (unsigned long long)txn->ix->max_map_size);
	return MINDEX_EFULL;
}

/* mindex_mdb_fail: an LMDB error inside a transaction. */
static int
mindex_mdb_fail(struct mindex_txn *txn, int rc, const char *what)
{
	if (rc == MDB_MAP_FULL)
		return mindex_full(txn);
	return mindex_fail(NULL, "%s: %s", what, mdb_strerror(rc));
}

/* mindex_writable: 0, or what a write call must return at once. */
static int
mindex_writable(struct mindex_txn *txn)
{
	if (txn->full)
		return mindex_full(txn);
	if (!txn->write)
		return mindex_fail(NULL, "write in a read-only transaction");
	return 0;
}

/* Transactions. */

/* mindex_txn_begin: mdb_txn_begin, adopting a map that another process
 * grew past ours (MDB_MAP_RESIZED): mdb_env_set_mapsize(0) takes the size
 * recorded in the file. */
static int
mindex_txn_begin(struct mindex *ix, unsigned flags, MDB_txn **mdb_r,
    const char **error_r)
{
	int rc, tries;

	for (tries = 0;; tries++) {
		rc = mdb_txn_begin(ix->env, NULL, flags, mdb_r);
		if (rc != MDB_MAP_RESIZED || tries == MINDEX_RESIZED_TRIES)
			break;
		if ((rc = mdb_env_set_mapsize(ix->env, 0)) != 0)
			break;
	}
	if (rc != 0)
		return mindex_fail(error_r, "begin index transaction: %s",
		    mdb_strerror(rc));
	return 0;
}

int
mindex_begin(struct mindex *ix, bool write, struct mindex_txn **txn_r,
    const char **error_r)
{
	MDB_txn *mdb;

	if (ix->txn_active)
		return mindex_fail(error_r, "an index transaction is open");
	if (write && mindex_make_room(ix, error_r) < 0)
		return -1;
	if (mindex_txn_begin(ix, write ? 0 : MDB_RDONLY, &mdb, error_r) < 0)
		return -1;
	ix->txn.ix = ix;
	ix->txn.mdb = mdb;
	ix->txn.write = write;
	ix->txn.full = false;
	ix->txn_active = true;
	*txn_r = &ix->txn;
	return 0;
}

int
mindex_commit(struct mindex_txn **txnp, const char **error_r)
{
	struct mindex_txn *txn = *txnp;
	struct mindex *ix = txn->ix;
	int rc;

	*txnp = NULL;
	if (txn->full) {
		mdb_txn_abort(txn->mdb);
		ix->txn_active = false;
		return mindex_regrow(ix, error_r);
	}
	/* The flag is the environment's, which other handles of this
	 * process share: set for this commit only (one thread). */
	if (ix->lazy_meta && txn->write)
		(void)mdb_env_set_flags(ix->env, MDB_NOMETASYNC, 1);
	rc = mdb_txn_commit(txn->mdb);
	if (ix->lazy_meta && txn->write)
		(void)mdb_env_set_flags(ix->env, MDB_NOMETASYNC, 0);
	ix->txn_active = false;
	if (rc == MDB_MAP_FULL)
		return mindex_regrow(ix, error_r);
	if (rc != 0)
		return mindex_fail(error_r, "commit index transaction: %s",
		    mdb_strerror(rc));
	return 0;
}

void
mindex_set_lazy_meta(struct mindex *ix, bool on)
{
	ix->lazy_meta = on;
}

void
mindex_abort(struct mindex_txn **txnp)
{
	struct mindex_txn *txn = *txnp;
	struct mindex *ix;
	int rc;

	if (txn == NULL)
		return;
	*txnp = NULL;
	ix = txn->ix;
	mdb_txn_abort(txn->mdb);
	ix->txn_active = false;
	/* Not through mindex_fail: the caller may still hold its text. */
	if (txn->full && mindex_grow(ix, &rc) < 0)
		log_warning("mindex: cannot grow the index map: %s",
		    mdb_strerror(rc));
}

int
mindex_write(struct mindex *ix,
    int (*fn)(struct mindex_txn *txn, void *ctx, const char **error_r),
    void *ctx, const char **error_r)
{
	struct mindex_txn *txn;
	int run, rc;

	for (run = 0; run < MINDEX_WRITE_RUNS; run++) {
		if (mindex_begin(ix, true, &txn, error_r) < 0)
			return -1;
		*error_r = NULL;
		rc = fn(txn, ctx, error_r);
		if (rc == 0)
			rc = mindex_commit(&txn, error_r);
		else if (rc == MINDEX_EFULL) {
			/* fn may say full without our call saying so */
			mdb_txn_abort(txn->mdb);
			ix->txn_active = false;
			rc = mindex_regrow(ix, error_r);
		} else {
			if (*error_r == NULL)
				*error_r = mindex_err;
			mindex_abort(&txn);
			return -1;
		}
		if (rc != MINDEX_EFULL)
			return rc == 0 ? 0 : -1;
	}
	return mindex_fail(error_r, "index full (no room after %d runs)",
	    MINDEX_WRITE_RUNS);
}

/* Opening. */

static int
mindex_path(char *buf, size_t size, const char *dir, const char *name,
    const char **error_r)
{
	int n = snprintf(buf, size, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= size)
		return mindex_fail(error_r, "index path too long: %s", dir);
	return 0;
}

/* mindex_lock_path: take LOCK_SH on path. Returns 1 locked, 0 the file
 * was replaced while we waited (try again), -1 error. */
static int
mindex_lock_path(struct mindex *ix, const char *path, const char **error_r)
{
	struct stat held, now;

	ix->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (ix->lock_fd < 0)
		return mindex_fail(error_r, "open %s: %s", path,
		    strerror(errno));
	while (flock(ix->lock_fd, LOCK_SH) < 0) {
		if (errno != EINTR)
			return mindex_fail(error_r, "flock %s: %s", path,
			    strerror(errno));
	}
	/* A rebuild swaps in a whole new directory under LOCK_EX; whoever
	 * waited meanwhile holds the old directory's lock file. */
	if (fstat(ix->lock_fd, &held) == 0 && stat(path, &now) == 0 &&
	    held.st_dev == now.st_dev && held.st_ino == now.st_ino)
		return 1;
	close(ix->lock_fd);
	ix->lock_fd = -1;
	return 0;
}

/* mindex_open_dir: create dir and take the shared maintenance lock, which
 * keeps mindex_compact (and a rebuild's swap) out while we use the
 * environment. */
static int
mindex_open_dir(struct mindex *ix, const char *dir, const char **error_r)
{
	char path[PATH_MAX];
	int r, tries;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return mindex_fail(error_r, "mkdir %s: %s", dir,
		    strerror(errno));
	if (mindex_path(path, sizeof(path), dir, "loft.lock", error_r) < 0)
		return -1;
	for (tries = 0; tries < MINDEX_LOCK_TRIES; tries++)
		if ((r = mindex_lock_path(ix, path, error_r)) != 0)
			return r < 0 ? -1 : 0;
	return mindex_fail(error_r, "%s keeps being replaced", path);
}

/* mindex_round: round up to a multiple of page, within size_t. */
static uint64_t
mindex_round(uint64_t v, uint64_t page)
{
	uint64_t top = (uint64_t)(SIZE_MAX / 2) / page * page;

	if (v > top)
		return top;
	return (v + page - 1) / page * page;
}

static void
mindex_sizes(const struct mindex_options *opts, uint64_t *map_r,
    uint64_t *max_r)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t map = MINDEX_MAP_SIZE_DEFAULT;
	uint64_t max = MINDEX_MAX_MAP_SIZE_DEFAULT;

	if (opts != NULL && opts->map_size != 0)
		map = opts->map_size;
	if (opts != NULL && opts->max_map_size != 0)
		max = opts->max_map_size;
	if (map < MINDEX_MAP_SIZE_MIN)
		map = MINDEX_MAP_SIZE_MIN;
	*map_r = mindex_round(map, page);
	*max_r = mindex_round(max, page);
	if (*max_r < *map_r)
		*max_r = *map_r;
}

/* mindex_env_setup: create the handle and choose the initial map size. A
 * new file takes ours; an existing one its own (0 below), which other
 * processes may have grown, and then ours if that is larger. */
static int
mindex_env_setup(struct mindex *ix, const char *dir, uint64_t map,
    const char **error_r)
{
	char path[PATH_MAX];
	struct stat st;
	bool exists;
	int rc;

	if (mindex_path(path, sizeof(path), dir, "data.mdb", error_r) < 0)
		return -1;
	exists = stat(path, &st) == 0;
	if ((rc = mdb_env_create(&ix->env)) != 0) {
		ix->env = NULL;
		return mindex_fail(error_r, "mdb_env_create: %s",
		    mdb_strerror(rc));
	}
	if ((rc = mdb_env_set_maxdbs(ix->env, MINDEX_MAXDBS)) != 0 ||
	    (rc = mdb_env_set_mapsize(ix->env, exists ? 0 : map)) != 0)
		return mindex_fail(error_r, "index setup: %s",
		    mdb_strerror(rc));
	return 0;
}

static int
mindex_open_env(struct mindex *ix, const char *dir,
    const struct mindex_options *opts, const char **error_r)
{
	/* MDB_NOTLS: reader slots belong to transactions, not threads, so
	 * two handles sharing the environment in one thread may both read. */
	unsigned flags = MDB_NOTLS |
	    (opts != NULL && opts->nosync ? MDB_NOSYNC : 0);
	uint64_t map;
	MDB_stat ms;
	int rc, dead = 0;

	mindex_sizes(opts, &map, &ix->max_map_size);
	if (mindex_env_setup(ix, dir, map, error_r) < 0)
		return -1;
	if ((rc = mdb_env_open(ix->env, dir, flags, 0600)) != 0)
		return mindex_fail(error_r, "open index %s: %s", dir,
		    mdb_strerror(rc));
	if (mindex_map_size(ix) < map &&
	    (rc = mdb_env_set_mapsize(ix->env, (size_t)map)) != 0)
		return mindex_fail(error_r, "set index map size: %s",
		    mdb_strerror(rc));
	/* Slots of readers that died would pin old pages forever. */
	if ((rc = mdb_reader_check(ix->env, &dead)) != 0)
		return mindex_fail(error_r, "index reader check: %s",
		    mdb_strerror(rc));
	if (dead > 0)
		log_info("mindex: %s: cleared %d stale reader slots", dir,
		    dead);
	mdb_env_stat(ix->env, &ms);
	ix->psize = ms.ms_psize;
	if (mdb_env_get_maxkeysize(ix->env) < 4 + MINDEX_KEY_MAX)
		return mindex_fail(error_r, "LMDB maximum key size %d is too "
		    "small", mdb_env_get_maxkeysize(ix->env));
	return 0;
}

/* mindex_upgrade: version 1 -> 2: a brief record for every message;
 * 2 -> 3: the number alone. */
static int
mindex_upgrade(struct mindex *ix, MDB_txn *mdb, uint32_t version,
    const char **error_r)
{
	MDB_val k = { 7, (void *)"version" }, v, mk, mv;
	unsigned char b[4];
	struct mindex_msg m;
	MDB_cursor *c;
	int rc;

	if (version >= 2)
		goto done;
	if ((rc = mdb_cursor_open(mdb, ix->dbi[MINDEX_DB_MSGS], &c)) != 0)
		return mindex_fail(error_r, "upgrade index: %s",
		    mdb_strerror(rc));
	for (rc = mdb_cursor_get(c, &mk, &mv, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(c, &mk, &mv, MDB_NEXT)) {
		if (mindex_msg_decode(&mk, &mv, &m) < 0) {
			mdb_cursor_close(c);
			return mindex_fail(error_r, "upgrade index: %s",
			    mindex_last_error());
		}
		if ((rc = mindex_brief_put(mdb, ix->dbi[MINDEX_DB_BRIEF], &mk,
		    &m, true)) != 0)
			break;
	}
	mdb_cursor_close(c);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return mindex_fail(error_r, "upgrade index: %s",
		    mdb_strerror(rc));
done:
	mindex_put_le32(b, MINDEX_VERSION);
	v.mv_data = b;
	v.mv_size = sizeof(b);
	if ((rc = mdb_put(mdb, ix->dbi[MINDEX_DB_META], &k, &v, 0)) != 0)
		return mindex_fail(error_r, "upgrade index: %s",
		    mdb_strerror(rc));
	return 0;
}

/* mindex_version: check meta "version"; a missing one is a new index,
 * which gets ours when create is set. Returns 0, 1 (new, not created) or
 * -1. */
static int
mindex_version(struct mindex *ix, MDB_txn *mdb, bool create,
    const char **error_r)
{
	MDB_val k = { 7, (void *)"version" }, v;
	unsigned char b[4];
	uint32_t version;
	int rc;

	rc = mdb_get(mdb, ix->dbi[MINDEX_DB_META], &k, &v);
	if (rc == MDB_NOTFOUND && !create)
		return 1;
	if (rc == MDB_NOTFOUND) {
		mindex_put_le32(b, MINDEX_VERSION);
		v.mv_data = b;
		v.mv_size = sizeof(b);
		rc = mdb_put(mdb, ix->dbi[MINDEX_DB_META], &k, &v, 0);
		if (rc == 0)
			return 0;
	}
	if (rc != 0)
		return mindex_fail(error_r, "read index version: %s",
		    mdb_strerror(rc));
	if (v.mv_size != 4 || (version = mindex_get_le32(v.mv_data)) == 0)
		return mindex_fail(error_r, "corrupt index record (version)");
	if (version > MINDEX_VERSION)
		return mindex_fail(error_r, "index version %u is newer than "
		    "this program's %u", version, MINDEX_VERSION);
	if (version < MINDEX_VERSION) {
		/* Brought up to date by the write attach that follows. */
		if (!create)
			return 1;
		return mindex_upgrade(ix, mdb, version, error_r);
	}
	return 0;
}

/* mindex_attach: open the named databases and check the version in one
 * transaction. Without MDB_CREATE it is read-only, so that the usual open
 * does not wait for the writer lock. Returns 0, 1 (must be created) or
 * -1. */
static int
mindex_attach(struct mindex *ix, unsigned create, const char **error_r)
{
	MDB_txn *mdb;
	int i, r = 0, rc = 0;

	if (mindex_txn_begin(ix, create ? 0 : MDB_RDONLY, &mdb, error_r) < 0)
		return -1;
	for (i = 0; i < MINDEX_DB_COUNT && rc == 0; i++)
		rc = mdb_dbi_open(mdb, mindex_db_names[i], create,
		    &ix->dbi[i]);
	if (rc == MDB_NOTFOUND && !create)
		r = 1;
	else if (rc != 0)
		r = mindex_fail(error_r, "open index database %s: %s",
		    mindex_db_names[i - 1], mdb_strerror(rc));
	else
		r = mindex_version(ix, mdb, create != 0, error_r);
	if (r != 0) {
		mdb_txn_abort(mdb);
		return r;
	}
	if ((rc = mdb_txn_commit(mdb)) != 0)
		return mindex_fail(error_r, "open index databases: %s",
		    mdb_strerror(rc));
	return 0;
}

static int
mindex_open_dbs(struct mindex *ix, const char **error_r)
{
	int r;

	if ((r = mindex_attach(ix, 0, error_r)) <= 0)
		return r;
	if (mindex_make_room(ix, error_r) < 0)
		return -1;
	return mindex_attach(ix, MDB_CREATE, error_r);
}

/* The environment of dir if this process has it open already. */
static struct mindex_shared *
mindex_shared_find(const char *dir)
{
	struct stat st;

	if (stat(dir, &st) < 0)
		return NULL;
	for (struct mindex_shared *sh = mindex_shared_list; sh != NULL;
	    sh = sh->next)
		if (sh->dev == st.st_dev && sh->ino == st.st_ino)
			return sh;
	return NULL;
}

static void
mindex_share(struct mindex *ix, const char *dir)
{
	struct mindex_shared *sh = xcalloc(1, sizeof(*sh));
	struct stat st;

	if (stat(dir, &st) == 0) {
		sh->dev = st.st_dev;
		sh->ino = st.st_ino;
	}
	sh->refs = 1;
	sh->env = ix->env;
	sh->lock_fd = ix->lock_fd;
	memcpy(sh->dbi, ix->dbi, sizeof(sh->dbi));
	sh->psize = ix->psize;
	sh->max_map_size = ix->max_map_size;
	sh->next = mindex_shared_list;
	mindex_shared_list = sh;
	ix->shared = sh;
}

int
mindex_open(const char *dir, const struct mindex_options *opts,
    struct mindex **ix_r, const char **error_r)
{
	struct mindex *ix = xcalloc(1, sizeof(*ix));
	struct mindex_shared *sh;

	*ix_r = NULL;
	ix->lock_fd = -1;
	if ((sh = mindex_shared_find(dir)) != NULL) {
		sh->refs++;
		ix->shared = sh;
		ix->env = sh->env;
		ix->lock_fd = sh->lock_fd;
		memcpy(ix->dbi, sh->dbi, sizeof(ix->dbi));
		ix->psize = sh->psize;
		ix->max_map_size = sh->max_map_size;
		*ix_r = ix;
		return 0;
	}
	if (mindex_open_dir(ix, dir, error_r) < 0 ||
	    mindex_open_env(ix, dir, opts, error_r) < 0 ||
	    mindex_open_dbs(ix, error_r) < 0) {
		mindex_close(&ix);
		return -1;
	}
	mindex_share(ix, dir);
	*ix_r = ix;
	return 0;
}

/* Let go of ix's environment: close it if nobody else here uses it. */
static void
mindex_unshare(struct mindex *ix)
{
	struct mindex_shared *sh = ix->shared, **pp;

	ix->env = NULL;
	ix->lock_fd = -1;
	if (--sh->refs > 0)
		return;
	for (pp = &mindex_shared_list; *pp != NULL; pp = &(*pp)->next)
		if (*pp == sh) {
			*pp = sh->next;
			break;
		}
	mdb_env_close(sh->env);
	if (sh->lock_fd >= 0)
		close(sh->lock_fd);
	free(sh);
}

void
mindex_close(struct mindex **ixp)
{
	struct mindex *ix = *ixp;
	struct mindex_txn *txn;

	if (ix == NULL)
		return;
	*ixp = NULL;
	if (ix->txn_active) {
		log_warning("mindex: closing with a transaction open");
		txn = &ix->txn;
		mindex_abort(&txn);
	}
	if (ix->shared != NULL)
		mindex_unshare(ix);
	if (ix->env != NULL)
		mdb_env_close(ix->env);
	if (ix->lock_fd >= 0)
		close(ix->lock_fd);
	free(ix);
}

/* Meta values. */

static int
mindex_meta_get(struct mindex_txn *txn, const char *name, size_t size,
    unsigned char *out)
{
	MDB_val k = { strlen(name), (void *)name }, v;
	int rc;

	rc = mdb_get(txn->mdb, txn->ix->dbi[MINDEX_DB_META], &k, &v);
	if (rc == MDB_NOTFOUND) {
		memset(out, 0, size);
		return 0;
	}
	if (rc != 0)
		return mindex_mdb_fail(txn, rc, "read index meta");
	if (v.mv_size != size)
		return mindex_fail(NULL, "corrupt index record (%s)", name);
	memcpy(out, v.mv_data, size);
	return 0;
}

static int
mindex_meta_put(struct mindex_txn *txn, const char *name, size_t size,
    unsigned char *in)
{
	MDB_val k = { strlen(name), (void *)name }, v = { size, in };
	int rc;

	rc = mdb_put(txn->mdb, txn->ix->dbi[MINDEX_DB_META], &k, &v, 0);
	if (rc != 0)
		return mindex_mdb_fail(txn, rc, "write index meta");
	return 0;
}

static int
mindex_meta_get32(struct mindex_txn *txn, const char *name, uint32_t *v_r)
{
	unsigned char b[4];

	if (mindex_meta_get(txn, name, sizeof(b), b) < 0)
		return -1;
	*v_r = mindex_get_le32(b);
	return 0;
}

static int
mindex_meta_put32(struct mindex_txn *txn, const char *name, uint32_t v)
{
	unsigned char b[4];

	mindex_put_le32(b, v);
	return mindex_meta_put(txn, name, sizeof(b), b);
}

/* Quota. */

int
mindex_quota_get(struct mindex_txn *txn, uint64_t *bytes_r,
    uint64_t *messages_r)
{
	unsigned char b[MINDEX_QUOTA_SIZE];

	if (mindex_meta_get(txn, "quota", sizeof(b), b) < 0)
		return -1;
	*bytes_r = mindex_get_le64(b);
	*messages_r = mindex_get_le64(b + 8);
	return 0;
}

int
mindex_quota_set(struct mindex_txn *txn, uint64_t bytes, uint64_t messages)
{
	unsigned char b[MINDEX_QUOTA_SIZE];
	int rc;

	if ((rc = mindex_writable(txn)) != 0)
		return rc;
	mindex_put_le64(b, bytes);
	mindex_put_le64(b + 8, messages);
	return mindex_meta_put(txn, "quota", sizeof(b), b);
}

/* mindex_sub: v - d, stopping at 0: a count that would go below zero was
 * already wrong, and wrapping would make it absurd. */
static uint64_t
mindex_sub(uint64_t v, uint64_t d)
{
	return d > v ? 0 : v - d;
}

/* mindex_quota_adjust: add the first pair to the usage, subtract the
 * second. */
static int
mindex_quota_adjust(struct mindex_txn *txn, uint64_t add_bytes,
    uint64_t add_msgs, uint64_t sub_bytes, uint64_t sub_msgs)
{
	uint64_t bytes, msgs;

	/* A flag change rewrites the record with the same size: spare the
	 * read and the write of the quota record for each message. */
	if (add_bytes == sub_bytes && add_msgs == sub_msgs)
		return 0;
	if (mindex_quota_get(txn, &bytes, &msgs) < 0)
		return -1;
	bytes = mindex_sub(bytes + add_bytes, sub_bytes);
	msgs = mindex_sub(msgs + add_msgs, sub_msgs);
	return mindex_quota_set(txn, bytes, msgs);
}

/* Folder records. */

static void
mindex_folder_encode(const struct mindex_folder *f,
    unsigned char out[MINDEX_FOLDER_SIZE])
{
	struct mindex_enc e = { out, MINDEX_FOLDER_SIZE, 0 };
	int i;

	mindex_enc_head(&e, MINDEX_FOLDER_FORMAT);
	mindex_enc_u32(&e, f->id);
	mindex_enc_u32(&e, f->uidvalidity);
	mindex_enc_u32(&e, f->uidnext);
	mindex_enc_u32(&e, f->count);
	mindex_enc_u32(&e, f->unseen);
	mindex_enc_u32(&e, f->deleted);
	mindex_enc_u64(&e, f->vsize);
	mindex_enc_u64(&e, f->psize);
	mindex_enc_u64(&e, f->highestmodseq);
	for (i = 0; i < 2; i++) {
		mindex_enc_u64(&e, f->stamp[i].dev);
		mindex_enc_u64(&e, f->stamp[i].ino);
		mindex_enc_u64(&e, f->stamp[i].size);
		mindex_enc_u64(&e, (uint64_t)f->stamp[i].mtime_ns);
		mindex_enc_u64(&e, (uint64_t)f->stamp[i].checked_ns);
	}
	mindex_enc_u64(&e, f->sync_offset);
	mindex_enc_u32(&e, f->unparsed);
}

static int
mindex_folder_decode(const MDB_val *v, struct mindex_folder *f)
{
	struct mindex_dec d = { v->mv_data, v->mv_size, 0, false };
	bool v1 = v->mv_size == MINDEX_FOLDER_SIZE_1;
	int i;

	mindex_dec_head(&d, v1 ? 1 : MINDEX_FOLDER_FORMAT);
	f->id = mindex_dec_u32(&d);
	f->uidvalidity = mindex_dec_u32(&d);
	f->uidnext = mindex_dec_u32(&d);
	f->count = mindex_dec_u32(&d);
	f->unseen = mindex_dec_u32(&d);
	f->deleted = mindex_dec_u32(&d);
	f->vsize = mindex_dec_u64(&d);
	f->psize = mindex_dec_u64(&d);
	f->highestmodseq = mindex_dec_u64(&d);
	for (i = 0; i < 2; i++) {
		f->stamp[i].dev = mindex_dec_u64(&d);
		f->stamp[i].ino = mindex_dec_u64(&d);
		f->stamp[i].size = mindex_dec_u64(&d);
		f->stamp[i].mtime_ns = (int64_t)mindex_dec_u64(&d);
		f->stamp[i].checked_ns = (int64_t)mindex_dec_u64(&d);
	}
	f->sync_offset = mindex_dec_u64(&d);
	f->unparsed = v1 ? 0 : mindex_dec_u32(&d);
	if (!mindex_dec_done(&d) || f->id == 0)
		return mindex_fail(NULL, "corrupt index record (folder)");
	return 0;
}

static int
mindex_folder_store(struct mindex_txn *txn, MDB_val *k,
    const struct mindex_folder *f, unsigned flags)
{
	unsigned char b[MINDEX_FOLDER_SIZE];
	MDB_val v = { sizeof(b), b };
	int rc;

	mindex_folder_encode(f, b);
	rc = mdb_put(txn->mdb, txn->ix->dbi[MINDEX_DB_FOLDERS], k, &v, flags);
	if (rc == MDB_KEYEXIST)
		return mindex_fail(NULL, "folder exists");
	if (rc != 0)
		return mindex_mdb_fail(txn, rc, "write folder");
	return 0;
}

int
mindex_folder_get(struct mindex_txn *txn, const char *name,
    struct mindex_folder *f_r)
{
	MDB_val k, v;
	int rc;

	if (mindex_key_name(name, &k) < 0)
		return -1;
	rc = mdb_get(txn->mdb, txn->ix->dbi[MINDEX_DB_FOLDERS], &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return mindex_mdb_fail(txn, rc, "read folder");
	if (mindex_folder_decode(&v, f_r) < 0)
		return -1;
	return 1;
}

/* mindex_next_id: folder ids count up and are never reused, so that a
 * stale reference to a deleted folder can never reach a new one. */
static int
mindex_next_id(struct mindex_txn *txn, uint32_t *id_r)
{
	uint32_t last;
	int rc;

	if (mindex_meta_get32(txn, "folder_id_last", &last) < 0)
		return -1;
	if (last == UINT32_MAX)
		return mindex_fail(NULL, "folder ids exhausted");
	if ((rc = mindex_meta_put32(txn, "folder_id_last", last + 1)) != 0)
		return rc;
	*id_r = last + 1;
	return 0;
}

/* mindex_next_uidvalidity: a given value is used as it is; 0 asks for one
 * above every value handed out before (so that a folder deleted and made
 * again never repeats one: RFC 9051 2.3.1.1) and at least the time. */
static int
mindex_next_uidvalidity(struct mindex_txn *txn, uint32_t given,
    uint32_t *v_r)
{
	uint32_t last, v = given;
	time_t now = time(NULL);
	int rc;

	if (mindex_meta_get32(txn, "uidvalidity_last", &last) < 0)
		return -1;
	if (v == 0) {
		if (last == UINT32_MAX)
			return mindex_fail(NULL, "uidvalidity exhausted");
		v = last + 1;
		if (now > (time_t)v && (uint64_t)now <= UINT32_MAX)
			v = (uint32_t)now;
	}
	if (v > last &&
	    (rc = mindex_meta_put32(txn, "uidvalidity_last", v)) != 0)
		return rc;
	*v_r = v;
	return 0;
}

int
mindex_folder_create(struct mindex_txn *txn, const char *name,
    uint32_t uidvalidity, struct mindex_folder *f_r)
{
	struct mindex_folder f;
	MDB_val k;
	int rc;

	if ((rc = mindex_writable(txn)) != 0)
		return rc;
	/* Before taking an id, so that a failed create changes nothing. */
	if ((rc = mindex_folder_get(txn, name, &f)) != 0)
		return rc < 0 ? -1 : mindex_fail(NULL, "folder exists");
	memset(&f, 0, sizeof(f));
	if ((rc = mindex_next_id(txn, &f.id)) != 0 ||
	    (rc = mindex_next_uidvalidity(txn, uidvalidity,
	    &f.uidvalidity)) != 0)
		return rc;
	f.uidnext = 1;
	if (mindex_key_name(name, &k) < 0)
		return -1;
	if ((rc = mindex_folder_store(txn, &k, &f, MDB_NOOVERWRITE)) != 0)
		return rc;
	*f_r = f;
	return 0;
}

int
mindex_folder_put(struct mindex_txn *txn, const char *name,
    const struct mindex_folder *f)
{
	MDB_val k;
	int rc;

	if ((rc = mindex_writable(txn)) != 0)
		return rc;
	if (mindex_key_name(name, &k) < 0)
		return -1;
	if (f->id == 0)
		return mindex_fail(NULL, "folder id 0 is never valid");
	return mindex_folder_store(txn, &k, f, 0);
}

/* mindex_range_delete: every record of db whose key starts with folder
 * id; for msgs also sum what the quota counted. */
static int
mindex_range_delete(struct mindex_txn *txn, enum mindex_db db, uint32_t id,
    uint64_t *bytes_r, uint64_t *count_r)
{
	unsigned char pfx[4];
	struct mindex_msg m;
	MDB_cursor *c;
	MDB_val k, v;
	int rc;

	mindex_put_be32(pfx, id);
	if ((rc = mdb_cursor_open(txn->mdb, txn->ix->dbi[db], &c)) != 0)
		return mindex_mdb_fail(txn, rc, "open index cursor");
	for (;;) {
		/* Position afresh after each delete rather than rely on
		 * where mdb_cursor_del leaves the cursor. */
		k.mv_data = pfx;
		k.mv_size = sizeof(pfx);
		rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
		if (rc != 0 || k.mv_size < 4 || memcmp(k.mv_data, pfx, 4) != 0)
			break;
		if (bytes_r != NULL) {
			(*count_r)++;
			if (mindex_msg_decode(&k, &v, &m) == 0)
				*bytes_r += m.psize;
		}
		if ((rc = mdb_cursor_del(c, 0)) != 0)
			break;
	}
	mdb_cursor_close(c);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return mindex_mdb_fail(txn, rc, "delete folder");
	return 0;
}

int
mindex_folder_delete(struct mindex_txn *txn, const char *name)
{
	struct mindex_folder f;
	uint64_t bytes = 0, msgs = 0;
	MDB_val k;
	int rc;

	if ((rc = mindex_writable(txn)) != 0)
		return rc;
	if ((rc = mindex_folder_get(txn, name, &f)) <= 0)
		return rc;
	if ((rc = mindex_range_delete(txn, MINDEX_DB_MSGS, f.id, &bytes,
	    &msgs)) != 0 ||
	    (rc = mindex_range_delete(txn, MINDEX_DB_LOCS, f.id, NULL,
	    NULL)) != 0 ||
	    (rc = mindex_range_delete(txn, MINDEX_DB_EXPUNGED, f.id, NULL,
	    NULL)) != 0 ||
	    (rc = mindex_range_delete(txn, MINDEX_DB_BRIEF, f.id, NULL,
	    NULL)) != 0)
		return rc;
	(void)mindex_key_name(name, &k);
	rc = mdb_del(txn->mdb, txn->ix->dbi[MINDEX_DB_FOLDERS], &k, NULL);
	if (rc != 0)
		return mindex_mdb_fail(txn, rc, "delete folder");
	return mindex_quota_adjust(txn, 0, 0, bytes, msgs);
}

int
mindex_folder_iter(struct mindex_txn *txn,
    int (*cb)(const char *name, const struct mindex_folder *f, void *ctx),
    void *ctx)
{
	char name[MINDEX_KEY_MAX + 1];
	struct mindex_folder f;
	MDB_cursor *c;
	MDB_val k, v;
	int rc, r = 0;

	rc = mdb_cursor_open(txn->mdb, txn->ix->dbi[MINDEX_DB_FOLDERS], &c);
	if (rc != 0)
		return mindex_mdb_fail(txn, rc, "open index cursor");
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (k.mv_size == 0 || k.mv_size > MINDEX_KEY_MAX ||
		    memchr(k.mv_data, '\0', k.mv_size) != NULL) {
			r = mindex_fail(NULL, "corrupt index record (folder "
			    "name)");
			break;
		}
		memcpy(name, k.mv_data, k.mv_size);
		name[k.mv_size] = '\0';
		if ((r = mindex_folder_decode(&v, &f)) != 0 ||
		    (r = cb(name, &f, ctx)) != 0)
			break;
	}
	mdb_cursor_close(c);
	if (r != 0)
		return r < 0 ? -1 : 0;
	if (rc != MDB_NOTFOUND)
		return mindex_mdb_fail(txn, rc, "read folders");
	return 0;
}

/* Message records: the fixed header, then location (stored with its NUL
 * so that readers get a C string straight from the map), keywords,
 * headers and mime, each after a 32-bit length. */

static size_t
mindex_msg_size(const struct mindex_msg *m)
{
	return MINDEX_MSG_FIXED + 4 * 4 + m->location_len + 1 +
	    m->keywords_len + m->headers_len + m->mime_len;
}

static void
mindex_enc_field(struct mindex_enc *e, const void *p, size_t len)
{
	mindex_enc_u32(e, (uint32_t)len);
	mindex_enc_bytes(e, p, len);
}

static void
mindex_msg_encode(const struct mindex_msg *m, unsigned char *out,
    size_t size)
{
	struct mindex_enc e = { out, size, 0 };

	mindex_enc_head(&e, MINDEX_MSG_FORMAT);
	mindex_enc_u32(&e, m->flags);
	mindex_enc_u32(&e, m->cache_flags);
	mindex_enc_u64(&e, m->modseq);
	mindex_enc_u64(&e, (uint64_t)m->internal_date);
	mindex_enc_u64(&e, (uint64_t)m->save_date);
	mindex_enc_u64(&e, m->psize);
	mindex_enc_u64(&e, m->vsize);
	mindex_enc_u64(&e, m->fingerprint);
	mindex_enc_u64(&e, m->mbox_offset);
	mindex_enc_u64(&e, m->mbox_data_offset);
	mindex_enc_bytes(&e, m->guid, sizeof(m->guid));
	mindex_enc_u32(&e, (uint32_t)(m->location_len + 1));
	mindex_enc_bytes(&e, m->location, m->location_len);
	mindex_enc_bytes(&e, "", 1);
	mindex_enc_field(&e, m->keywords, m->keywords_len);
	mindex_enc_field(&e, m->headers, m->headers_len);
	mindex_enc_field(&e, m->mime, m->mime_len);
	if (e.off != size)
		log_panic("mindex: record size %zu, encoded %zu", size, e.off);
}

static void
mindex_dec_location(struct mindex_dec *d, struct mindex_msg *m)
{
	const unsigned char *q;
	size_t len;

	q = mindex_dec_field(d, &len);
	if (q == NULL || len == 0 || q[len - 1] != '\0' ||
	    memchr(q, '\0', len - 1) != NULL) {
		d->bad = true;
		return;
	}
	m->location = (const char *)q;
	m->location_len = len - 1;
}

static void
mindex_dec_fields(struct mindex_dec *d, struct mindex_msg *m)
{
	const unsigned char *q;

	m->flags = mindex_dec_u32(d);
	m->cache_flags = mindex_dec_u32(d);
	m->modseq = mindex_dec_u64(d);
	m->internal_date = (int64_t)mindex_dec_u64(d);
	m->save_date = (int64_t)mindex_dec_u64(d);
	m->psize = mindex_dec_u64(d);
	m->vsize = mindex_dec_u64(d);
	m->fingerprint = mindex_dec_u64(d);
	m->mbox_offset = mindex_dec_u64(d);
	m->mbox_data_offset = mindex_dec_u64(d);
	if ((q = mindex_dec_take(d, sizeof(m->guid))) != NULL)
		memcpy(m->guid, q, sizeof(m->guid));
	mindex_dec_location(d, m);
	m->keywords = (const char *)mindex_dec_field(d, &m->keywords_len);
	m->headers = mindex_dec_field(d, &m->headers_len);
	m->mime = mindex_dec_field(d, &m->mime_len);
	if (m->keywords_len > 0 && m->keywords[m->keywords_len - 1] != '\0')
		d->bad = true;
}

static int
mindex_msg_decode(const MDB_val *k, const MDB_val *v, struct mindex_msg *m)
{
	struct mindex_dec d = { v->mv_data, v->mv_size, 0, false };
	uint32_t folder_id = 0;

	memset(m, 0, sizeof(*m));
	if (k->mv_size == 8) {
		folder_id = mindex_get_be32(k->mv_data);
		m->uid = mindex_get_be32((const unsigned char *)k->mv_data + 4);
	} else
		d.bad = true;
	mindex_dec_head(&d, MINDEX_MSG_FORMAT);
	mindex_dec_fields(&d, m);
	if (!mindex_dec_done(&d))
		return mindex_fail(NULL, "corrupt index record (folder %u "
		    "uid %u)", folder_id, m->uid);
	return 0;
}

/* mindex_msg_check: what a caller hands to add or update. */
static int
mindex_msg_check(const struct mindex_msg *m)
{
	if (m->location_len > MINDEX_FIELD_MAX ||
	    m->keywords_len > MINDEX_FIELD_MAX ||
	    m->headers_len > MINDEX_FIELD_MAX || m->mime_len > MINDEX_FIELD_MAX)
		return mindex_fail(NULL, "message field longer than %u bytes",
		    (unsigned)MINDEX_FIELD_MAX);
	if ((m->location == NULL && m->location_len > 0) ||
	    (m->keywords == NULL && m->keywords_len > 0) ||
	    (m->headers == NULL && m->headers_len > 0) ||
	    (m->mime == NULL && m->mime_len > 0))
		return mindex_fail(NULL, "message field without data");
	if (m->location_len > 0 &&
	    memchr(m->location, '\0', m->location_len) != NULL)
		return mindex_fail(NULL, "message location contains NUL");
	if (m->keywords_len > 0 && m->keywords[m->keywords_len - 1] != '\0')
		return mindex_fail(NULL, "message keywords must end in NUL");
	return 0;
}

/* The brief record of m (under the same key as its full one). */
/*
 * mindex_put_new: put a key that must not exist yet. New messages come
 * with ever larger UIDs, so in the folder that was created last (the
 * INBOX of a first sync, which adopts thousands of files) the key goes
 * at the very end of the database: MDB_APPEND then skips the search and
 * fills pages whole. Anywhere else LMDB refuses the append with
 * MDB_KEYEXIST, and the ordinary put decides.
 */
static int
mindex_put_new(MDB_txn *mdb, MDB_dbi dbi, MDB_val *k, MDB_val *v)
{
	int rc = mdb_put(mdb, dbi, k, v, MDB_APPEND);

	if (rc == MDB_KEYEXIST)
		rc = mdb_put(mdb, dbi, k, v, MDB_NOOVERWRITE);
	return rc;
}

static int
mindex_brief_put(MDB_txn *mdb, MDB_dbi dbi, MDB_val *k,
    const struct mindex_msg *m, bool add)
{
	unsigned char vb[MINDEX_BRIEF_SIZE];
	MDB_val v = { sizeof(vb), vb };

	mindex_put_le32(vb, m->flags);
	mindex_put_le32(vb + 4, m->cache_flags);
	mindex_put_le64(vb + 8, m->vsize);
	mindex_put_le64(vb + 16, m->modseq);
	return add ? mindex_put_new(mdb, dbi, k, &v) :
	    mdb_put(mdb, dbi, k, &v, 0);
}

/* mindex_state_put: m's brief record in the long form, with its location
 * and keywords (the full record under k is left as it is). */
static int
mindex_state_put(struct mindex_txn *txn, MDB_val *k,
    const struct mindex_msg *m)
{
	size_t size = MINDEX_BRIEF_SIZE + 4 + m->location_len + 1 + 4 +
	    m->keywords_len;
	unsigned char *buf = xmalloc(size);
	struct mindex_enc e = { buf, size, 0 };
	MDB_val v = { size, buf };
	int rc;

	/* Into our own buffer first: m's fields may point into the very
	 * record being replaced. */
	mindex_enc_u32(&e, m->flags);
	mindex_enc_u32(&e, m->cache_flags);
	mindex_enc_u64(&e, m->vsize);
	mindex_enc_u64(&e, m->modseq);
	mindex_enc_u32(&e, (uint32_t)(m->location_len + 1));
	mindex_enc_bytes(&e, m->location, m->location_len);
	mindex_enc_bytes(&e, "", 1);
	mindex_enc_field(&e, m->keywords, m->keywords_len);
	if (e.off != size)
		log_panic("mindex: state size %zu, encoded %zu", size, e.off);
	rc = mdb_put(txn->mdb, txn->ix->dbi[MINDEX_DB_BRIEF], k, &v, 0);
	free(buf);
	return rc;
}

/* mindex_brief_overlay: put what the brief record v says over m, decoded
 * from the full record. 0, or -1 if v does not decode. */
static int
mindex_brief_overlay(const MDB_val *v, struct mindex_msg *m)
{
	struct mindex_dec d = { v->mv_data, v->mv_size, 0, false };

	m->flags = mindex_dec_u32(&d);
	m->cache_flags = mindex_dec_u32(&d);
	m->vsize = mindex_dec_u64(&d);
	m->modseq = mindex_dec_u64(&d);
	if (!d.bad && d.off < d.len) {
		mindex_dec_location(&d, m);
		m->keywords = (const char *)mindex_dec_field(&d,
		    &m->keywords_len);
		if (m->keywords_len > 0 &&
		    m->keywords[m->keywords_len - 1] != '\0')
			d.bad = true;
	}
	if (!mindex_dec_done(&d))
		return mindex_fail(NULL, "corrupt index record (brief, uid "
		    "%u)", m->uid);
	return 0;
}

/* mindex_brief_get: the brief record under k over m. A missing one leaves
 * m as the full record has it. */
static int
mindex_brief_get(struct mindex_txn *txn, MDB_val *k, struct mindex_msg *m)
{
	MDB_val v;
	int rc;

	rc = mdb_get(txn->mdb, txn->ix->dbi[MINDEX_DB_BRIEF], k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return mindex_mdb_fail(txn, rc, "read message");
	return mindex_brief_overlay(&v, m);
}

static int
mindex_msg_store(struct mindex_txn *txn, uint32_t folder_id,
    const struct mindex_msg *m, bool add)
{
	size_t size = mindex_msg_size(m);
	unsigned char kb[8], *buf = xmalloc(size);
	MDB_val k, v = { size, buf };
	int rc;

	/* Encoded into our own buffer before LMDB sees it: m's fields may
	 * point into the map, even into the very record being replaced. */
	mindex_msg_encode(m, buf, size);
	mindex_key_uid(kb, folder_id, m->uid, &k);
	rc = add ? mindex_put_new(txn->mdb, txn->ix->dbi[MINDEX_DB_MSGS],
	    &k, &v) : mdb_put(txn->mdb, txn->ix->dbi[MINDEX_DB_MSGS], &k, &v, 0);
	free(buf);
	if (rc == 0)
		rc = mindex_brief_put(txn->mdb, txn->ix->dbi[MINDEX_DB_BRIEF],
		    &k, m, add);
	if (rc == MDB_KEYEXIST)
		return mindex_fail(NULL, "uid exists (folder %u uid %u)",
		    folder_id, m->uid);
	if (rc != 0)
		return mindex_mdb_fail(txn, rc, "write message");
	return 0;
}

static bool
mindex_guid_zero(const uint8_t guid[16])
{
	size_t i;

	for (i = 0; i < 16; i++)
		if (guid[i] != 0)
			return false;
	return true;
}

static int
mindex_guid_new(uint8_t guid[16])
{
	size_t got = 0;
	ssize_t n;

	while (got < 16) {
		n = getrandom(guid + got, 16 - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return mindex_fail(NULL, "getrandom: %s",
			    strerror(errno));
		got += (size_t)n;
	}
	return 0;
}

static uint32_t
mindex_step(uint32_t v, bool add)
{
	if (add)
		return v + 1;
	return v == 0 ? 0 : v - 1;
}

/* mindex_folder_tally: count m into f's counters, or out of them. */
static void
mindex_folder_tally(struct mindex_folder *f, const struct mindex_msg *m,
    bool add)
{
	f->count = mindex_step(f->count, add);
	if ((m->flags & MINDEX_F_SEEN) == 0)
		f->unseen = mindex_step(f->unseen, add);
	if ((m->flags & MINDEX_F_DELETED) != 0)
		f->deleted = mindex_step(f->deleted, add);
	if ((m->cache_flags & MINDEX_C_UNPARSED) != 0)
		f->unparsed = mindex_step(f->unparsed, add);
	f->vsize = add ? f->vsize + m->vsize : mindex_sub(f->vsize, m->vsize);
	f->psize = add ? f->psize + m->psize : mindex_sub(f->psize, m->psize);
}

int
mindex_msg_get(struct mindex_txn *txn, uint32_t folder_id, uint32_t uid,
    struct mindex_msg *m_r)
{
	unsigned char kb[8];
	MDB_val k, v;
	int rc;

	mindex_key_uid(kb, folder_id, uid, &k);
	rc = mdb_get(txn->mdb, txn->ix->dbi[MINDEX_DB_MSGS], &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return mindex_mdb_fail(txn, rc, "read message");
	if (mindex_msg_decode(&k, &v, m_r) < 0 ||
	    mindex_brief_get(txn, &k, m_r) < 0)
		return -1;
	return 1;
}

int
mindex_msg_add(struct mindex_txn *txn, struct mindex_folder *f,
    struct mindex_msg *m)
{
	struct mindex_msg rec = *m;
	int rc;

	if ((rc = mindex_writable(txn)) != 0)
		return rc;
	if (m->uid < f->uidnext || m->uid == 0)
		return mindex_fail(NULL, "uid not above uidnext (uid %u, "
		    "uidnext %u)", m->uid, f->uidnext);
	/* uidnext = uid + 1 must still fit */
	if (m->uid == UINT32_MAX)
		return mindex_fail(NULL, "uid %u out of range", m->uid);
	if (mindex_msg_check(m) < 0)
		return -1;
	if (mindex_guid_zero(rec.guid) && mindex_guid_new(rec.guid) < 0)
		return -1;
	rec.modseq = f->highestmodseq + 1;
	if ((rc = mindex_msg_store(txn, f->id, &rec, true)) != 0 ||
	    (rc = mindex_quota_adjust(txn, rec.psize, 1, 0, 0)) != 0)
		return rc;
	mindex_folder_tally(f, &rec, true);
	f->uidnext = rec.uid + 1;
	f->highestmodseq = rec.modseq;
	m->modseq = rec.modseq;
	memcpy(m->guid, rec.guid, sizeof(m->guid));
	return 0;
}

static bool
mindex_same_bytes(const void *a, size_t alen, const void *b, size_t blen)
{
	return alen == blen && (a == b || alen == 0 || memcmp(a, b, alen) == 0);
}

/* mindex_msg_state_only: whether rec differs from old only in what the
 * brief record carries (flags, cache flags, vsize, modseq, location,
 * keywords): then the full record stays as it is. */
static bool
mindex_msg_state_only(const struct mindex_msg *old,
    const struct mindex_msg *rec)
{
	return rec->internal_date == old->internal_date &&
	    rec->save_date == old->save_date && rec->psize == old->psize &&
	    rec->fingerprint == old->fingerprint &&
	    rec->mbox_offset == old->mbox_offset &&
	    rec->mbox_data_offset == old->mbox_data_offset &&
	    memcmp(rec->guid, old->guid, sizeof(rec->guid)) == 0 &&
	    mindex_same_bytes(rec->headers, rec->headers_len, old->headers,
	    old->headers_len) &&
	    mindex_same_bytes(rec->mime, rec->mime_len, old->mime,
	    old->mime_len);
}

static int
mindex_msg_state_store(struct mindex_txn *txn, uint32_t folder_id,
    const struct mindex_msg *m)
{
	unsigned char kb[8];
	MDB_val k;
	int rc;

	mindex_key_uid(kb, folder_id, m->uid, &k);
	if ((rc = mindex_state_put(txn, &k, m)) != 0)
		return mindex_mdb_fail(txn, rc, "write message");
	return 0;
}

static int
mindex_msg_replace(struct mindex_txn *txn, struct mindex_folder *f,
    struct mindex_msg *m, bool bump)
{
	struct mindex_msg old, rec = *m;
	int rc;

	if ((rc = mindex_writable(txn)) != 0)
		return rc;
	if (mindex_msg_check(m) < 0)
		return -1;
	if ((rc = mindex_msg_get(txn, f->id, m->uid, &old)) <= 0)
		return rc < 0 ? -1 : mindex_fail(NULL, "uid %u not in the "
		    "index (folder %u)", m->uid, f->id);
	if (mindex_guid_zero(rec.guid))
		memcpy(rec.guid, old.guid, sizeof(rec.guid));
	rec.modseq = bump ? f->highestmodseq + 1 : old.modseq;
	/* From here on only old's fixed fields are used: the store may
	 * move the record its pointers lead into. */
	if (mindex_msg_state_only(&old, &rec))
		rc = mindex_msg_state_store(txn, f->id, &rec);
	else
		rc = mindex_msg_store(txn, f->id, &rec, false);
	if (rc != 0 ||
	    (rc = mindex_quota_adjust(txn, rec.psize, 0, old.psize, 0)) != 0)
		return rc;
	mindex_folder_tally(f, &old, false);
	mindex_folder_tally(f, &rec, true);
	if (bump)
		f->highestmodseq = rec.modseq;
	m->modseq = rec.modseq;
	memcpy(m->guid, rec.guid, sizeof(m->guid));
	return 0;
}

int
mindex_msg_update(struct mindex_txn *txn, struct mindex_folder *f,
    struct mindex_msg *m)
{
	return mindex_msg_replace(txn, f, m, true);
}

int
mindex_msg_refresh(struct mindex_txn *txn, struct mindex_folder *f,
    struct mindex_msg *m)
{
	return mindex_msg_replace(txn, f, m, false);
}

int
mindex_msg_expunge(struct mindex_txn *txn, struct mindex_folder *f,
    uint32_t uid)
{
	struct mindex_msg old;
	unsigned char kb[8], vb[8];
	MDB_val k, v = { sizeof(vb), vb };
	uint64_t modseq = f->highestmodseq + 1;
	int rc;

	if ((rc = mindex_writable(txn)) != 0)
		return rc;
	if ((rc = mindex_msg_get(txn, f->id, uid, &old)) <= 0)
		return rc;
	mindex_key_uid(kb, f->id, uid, &k);
	rc = mdb_del(txn->mdb, txn->ix->dbi[MINDEX_DB_MSGS], &k, NULL);
	if (rc == 0)
		rc = mdb_del(txn->mdb, txn->ix->dbi[MINDEX_DB_BRIEF], &k, NULL);
	if (rc != 0)
		return mindex_mdb_fail(txn, rc, "expunge message");
	mindex_put_le64(vb, modseq);
	rc = mdb_put(txn->mdb, txn->ix->dbi[MINDEX_DB_EXPUNGED], &k, &v, 0);
	if (rc != 0)
		return mindex_mdb_fail(txn, rc, "record expunge");
	if ((rc = mindex_quota_adjust(txn, 0, 0, old.psize, 1)) != 0)
		return rc;
	mindex_folder_tally(f, &old, false);
	f->highestmodseq = modseq;
	return 0;
}

/* mindex_walk: call each for the records of db from folder_id + first_uid
 * to the end of that folder's range. each returns 0 go on, 1 stop, -1
 * error. Returns 0 or -1. */
static int
mindex_walk(struct mindex_txn *txn, enum mindex_db db, uint32_t folder_id,
    uint32_t first_uid,
    int (*each)(const MDB_val *k, const MDB_val *v, void *ctx), void *ctx)
{
	unsigned char kb[8];
	MDB_cursor *c;
	MDB_val k, v;
	int rc, r = 0;

	if ((rc = mdb_cursor_open(txn->mdb, txn->ix->dbi[db], &c)) != 0)
		return mindex_mdb_fail(txn, rc, "open index cursor");
	mindex_key_uid(kb, folder_id, first_uid, &k);
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
	    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (k.mv_size < 4 || mindex_get_be32(k.mv_data) != folder_id)
			break;
		if ((r = each(&k, &v, ctx)) != 0)
			break;
	}
	mdb_cursor_close(c);
	if (r != 0)
		return r < 0 ? -1 : 0;
	if (rc != 0 && rc != MDB_NOTFOUND)
		return mindex_mdb_fail(txn, rc, "read index");
	return 0;
}

struct mindex_msg_walk {
	int (*cb)(const struct mindex_msg *m, void *ctx);
	void *ctx;
	struct mindex_txn *txn;
	MDB_cursor *brief;	/* walks beside the msgs cursor */
	bool brief_placed;
};

/* The brief record of the message under k, the brief cursor walking in
 * step with the msgs one (both databases hold the same keys): one step
 * per message, a search only where they differ. */
static int
mindex_msg_walk_brief(struct mindex_msg_walk *w, const MDB_val *k,
    struct mindex_msg *m)
{
	MDB_val bk, bv;
	int rc;

	rc = w->brief_placed ? mdb_cursor_get(w->brief, &bk, &bv, MDB_NEXT) :
	    MDB_NOTFOUND;
	if (rc != 0 || bk.mv_size != k->mv_size ||
	    memcmp(bk.mv_data, k->mv_data, k->mv_size) != 0) {
		bk = *k;
		rc = mdb_cursor_get(w->brief, &bk, &bv, MDB_SET_KEY);
	}
	w->brief_placed = rc == 0;
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return mindex_mdb_fail(w->txn, rc, "read index");
	return mindex_brief_overlay(&bv, m);
}

static int
mindex_msg_each(const MDB_val *k, const MDB_val *v, void *ctx)
{
	struct mindex_msg_walk *w = ctx;
	struct mindex_msg m;
	int r;

	if (mindex_msg_decode(k, v, &m) < 0 ||
	    mindex_msg_walk_brief(w, k, &m) < 0)
		return -1;
	r = w->cb(&m, w->ctx);
	return r < 0 ? -1 : r > 0 ? 1 : 0;
}

int
mindex_msg_iter(struct mindex_txn *txn, uint32_t folder_id,
    uint32_t first_uid,
    int (*cb)(const struct mindex_msg *m, void *ctx), void *ctx)
{
	struct mindex_msg_walk w = { cb, ctx, txn, NULL, false };
	int rc;

	if ((rc = mdb_cursor_open(txn->mdb, txn->ix->dbi[MINDEX_DB_BRIEF],
	    &w.brief)) != 0)
		return mindex_mdb_fail(txn, rc, "open index cursor");
	rc = mindex_walk(txn, MINDEX_DB_MSGS, folder_id, first_uid,
	    mindex_msg_each, &w);
	mdb_cursor_close(w.brief);
	return rc;
}

struct mindex_brief_walk {
	int (*cb)(const struct mindex_brief *b, void *ctx);
	void *ctx;
};

static int
mindex_brief_each(const MDB_val *k, const MDB_val *v, void *ctx)
{
	struct mindex_brief_walk *w = ctx;
	const unsigned char *vp = v->mv_data;
	struct mindex_brief b;
	int r;

	/* A longer one is a state record: the location and keywords that
	 * follow are not brief's business. */
	if (k->mv_size != 8 || v->mv_size < MINDEX_BRIEF_SIZE)
		return mindex_fail(NULL, "corrupt index record (brief)");
	b.uid = mindex_get_be32((const unsigned char *)k->mv_data + 4);
	b.flags = mindex_get_le32(vp);
	b.cache_flags = mindex_get_le32(vp + 4);
	b.vsize = mindex_get_le64(vp + 8);
	b.modseq = mindex_get_le64(vp + 16);
	r = w->cb(&b, w->ctx);
	return r < 0 ? -1 : r > 0 ? 1 : 0;
}

int
mindex_brief_iter(struct mindex_txn *txn, uint32_t folder_id,
    uint32_t first_uid,
    int (*cb)(const struct mindex_brief *b, void *ctx), void *ctx)
{
	struct mindex_brief_walk w = { cb, ctx };

	return mindex_walk(txn, MINDEX_DB_BRIEF, folder_id, first_uid,
	    mindex_brief_each, &w);
}

struct mindex_expunged_walk {
	int (*cb)(uint32_t uid, uint64_t modseq, void *ctx);
	void *ctx;
};

static int
mindex_expunged_each(const MDB_val *k, const MDB_val *v, void *ctx)
{
	struct mindex_expunged_walk *w = ctx;
	const unsigned char *kp = k->mv_data;
	int r;

	if (k->mv_size != 8 || v->mv_size != 8)
		return mindex_fail(NULL, "corrupt index record (expunged)");
	r = w->cb(mindex_get_be32(kp + 4), mindex_get_le64(v->mv_data),
	    w->ctx);
	return r < 0 ? -1 : r > 0 ? 1 : 0;
}

int
mindex_expunged_iter(struct mindex_txn *txn, uint32_t folder_id,
    uint32_t first_uid,
    int (*cb)(uint32_t uid, uint64_t modseq, void *ctx), void *ctx)
{
	struct mindex_expunged_walk w = { cb, ctx };

	return mindex_walk(txn, MINDEX_DB_EXPUNGED, folder_id, first_uid,
	    mindex_expunged_each, &w);
}

/* Storage keys. */

int
mindex_loc_get(struct mindex_txn *txn, uint32_t folder_id,
    const char *key, size_t key_len, uint32_t *uid_r)
{
	unsigned char kb[4 + MINDEX_KEY_MAX];
	MDB_val k, v;
	int rc;

	if (mindex_key_loc(kb, folder_id, key, key_len, &k) < 0)
		return -1;
	rc = mdb_get(txn->mdb, txn->ix->dbi[MINDEX_DB_LOCS], &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return mindex_mdb_fail(txn, rc, "read storage key");
	if (v.mv_size != 4)
		return mindex_fail(NULL, "corrupt index record (storage key)");
	*uid_r = mindex_get_le32(v.mv_data);
	return 1;
}

int
mindex_loc_put(struct mindex_txn *txn, uint32_t folder_id,
    const char *key, size_t key_len, uint32_t uid)
{
	unsigned char kb[4 + MINDEX_KEY_MAX], vb[4];
	MDB_val k, v = { sizeof(vb), vb };
	int rc;

	if ((rc = mindex_writable(txn)) != 0)
		return rc;
	if (mindex_key_loc(kb, folder_id, key, key_len, &k) < 0)
		return -1;
	mindex_put_le32(vb, uid);
	rc = mdb_put(txn->mdb, txn->ix->dbi[MINDEX_DB_LOCS], &k, &v, 0);
	if (rc != 0)
		return mindex_mdb_fail(txn, rc, "write storage key");
	return 0;
}

int
mindex_loc_delete(struct mindex_txn *txn, uint32_t folder_id,
    const char *key, size_t key_len)
{
	unsigned char kb[4 + MINDEX_KEY_MAX];
	MDB_val k;
	int rc;

	if ((rc = mindex_writable(txn)) != 0)
		return rc;
	if (mindex_key_loc(kb, folder_id, key, key_len, &k) < 0)
		return -1;
	rc = mdb_del(txn->mdb, txn->ix->dbi[MINDEX_DB_LOCS], &k, NULL);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return mindex_mdb_fail(txn, rc, "delete storage key");
	return 0;
}

/* Maintenance. */

/* mindex_count_reader: mdb_reader_list hands over a title line, then one
 * line per slot held ("pid thread txnid"), or "(no active readers)". */
static int
mindex_count_reader(const char *msg, void *ctx)
{
	unsigned *n = ctx;

	while (*msg == ' ')
		msg++;
	if (*msg >= '0' && *msg <= '9')
		(*n)++;
	return 0;
}

int
mindex_stats(struct mindex *ix, struct mindex_stats *st_r,
    const char **error_r)
{
	MDB_envinfo ei;
	MDB_stat ms;
	MDB_txn *mdb;
	unsigned readers = 0;
	int rc;

	mdb_env_info(ix->env, &ei);
	if (mdb_reader_list(ix->env, mindex_count_reader, &readers) < 0)
		return mindex_fail(error_r, "cannot list index readers");
	if (ix->txn_active)
		rc = mdb_stat(ix->txn.mdb, ix->dbi[MINDEX_DB_MSGS], &ms);
	else {
		if (mindex_txn_begin(ix, MDB_RDONLY, &mdb, error_r) < 0)
			return -1;
		rc = mdb_stat(mdb, ix->dbi[MINDEX_DB_MSGS], &ms);
		mdb_txn_abort(mdb);
	}
	if (rc != 0)
		return mindex_fail(error_r, "index stats: %s",
		    mdb_strerror(rc));
	st_r->map_size = ei.me_mapsize;
	st_r->used = ((uint64_t)ei.me_last_pgno + 1) * ix->psize;
	st_r->readers = readers;
	st_r->entries = ms.ms_entries;
	return 0;
}

/* mindex_sibling: dir without trailing slashes, plus ".compact". */
static int
mindex_sibling(char *buf, size_t size, const char *dir,
    const char **error_r)
{
	size_t len;

	if (strlcpy(buf, dir, size) >= size)
		return mindex_fail(error_r, "index path too long: %s", dir);
	for (len = strlen(buf); len > 0 && buf[len - 1] == '/'; len--)
		buf[len - 1] = '\0';
	if (len == 0)
		return mindex_fail(error_r, "bad index directory: %s", dir);
	if (strlcat(buf, ".compact", size) >= size)
		return mindex_fail(error_r, "index path too long: %s", dir);
	return 0;
}

static int
mindex_unlink(const char *dir, const char *name, const char **error_r)
{
	char path[PATH_MAX];

	if (mindex_path(path, sizeof(path), dir, name, error_r) < 0)
		return -1;
	if (unlink(path) < 0 && errno != ENOENT)
		return mindex_fail(error_r, "unlink %s: %s", path,
		    strerror(errno));
	return 0;
}

/* mindex_compact_clear: remove what a compaction left in tmp. */
static int
mindex_compact_clear(const char *tmp, const char **error_r)
{
	if (mindex_unlink(tmp, "data.mdb", error_r) < 0 ||
	    mindex_unlink(tmp, "lock.mdb", error_r) < 0)
		return -1;
	if (rmdir(tmp) < 0 && errno != ENOENT)
		return mindex_fail(error_r, "rmdir %s: %s", tmp,
		    strerror(errno));
	return 0;
}

static int
mindex_compact_copy(const char *dir, const char *tmp, const char **error_r)
{
	MDB_env *env;
	int rc;

	if ((rc = mdb_env_create(&env)) != 0)
		return mindex_fail(error_r, "mdb_env_create: %s",
		    mdb_strerror(rc));
	if ((rc = mdb_env_set_maxdbs(env, MINDEX_MAXDBS)) == 0 &&
	    (rc = mdb_env_set_mapsize(env, 0)) == 0 &&
	    (rc = mdb_env_open(env, dir, MDB_RDONLY, 0600)) == 0)
		rc = mdb_env_copy2(env, tmp, MDB_CP_COMPACT);
	mdb_env_close(env);
	if (rc != 0)
		return mindex_fail(error_r, "compact %s: %s", dir,
		    mdb_strerror(rc));
	return 0;
}

/* mindex_fsync: fsync path (a file or a directory); mode, if not 0, is
 * set first. */
static int
mindex_fsync(const char *path, mode_t mode, const char **error_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return mindex_fail(error_r, "open %s: %s", path,
		    strerror(errno));
	if ((mode != 0 && fchmod(fd, mode) < 0) || fsync(fd) < 0) {
		mindex_fail(error_r, "sync %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* mindex_compact_locked: runs with LOCK_EX on loft.lock, so no process
 * has the environment open, and none can open it until we are done. That
 * is required, not a nicety: a process that had it open would keep its
 * map and file descriptor of the old data.mdb, go on reading a deleted
 * inode and commit its writes to it, where they would be lost; and
 * lock.mdb, which records transaction ids, would describe the old file.
 * With nobody left, lock.mdb is removed and LMDB makes a fresh one. */
static int
mindex_compact_locked(const char *dir, const char **error_r)
{
	char tmp[PATH_MAX], from[PATH_MAX], to[PATH_MAX];

	if (mindex_sibling(tmp, sizeof(tmp), dir, error_r) < 0 ||
	    mindex_path(from, sizeof(from), tmp, "data.mdb", error_r) < 0 ||
	    mindex_path(to, sizeof(to), dir, "data.mdb", error_r) < 0)
		return -1;
	if (mindex_compact_clear(tmp, error_r) < 0)
		return -1;
	if (mkdir(tmp, 0700) < 0)
		return mindex_fail(error_r, "mkdir %s: %s", tmp,
		    strerror(errno));
	if (mindex_compact_copy(dir, tmp, error_r) < 0 ||
	    mindex_fsync(from, 0600, error_r) < 0)
		goto fail;
	if (rename(from, to) < 0) {
		mindex_fail(error_r, "rename %s: %s", from, strerror(errno));
		goto fail;
	}
	if (mindex_unlink(dir, "lock.mdb", error_r) < 0 ||
	    mindex_fsync(dir, 0, error_r) < 0)
		return -1;
	return mindex_compact_clear(tmp, error_r);
fail:
	(void)mindex_compact_clear(tmp, NULL);
	return -1;
}

int
mindex_compact(const char *dir, const char **error_r)
{
	char path[PATH_MAX];
	int fd, r;

	if (mindex_path(path, sizeof(path), dir, "loft.lock", error_r) < 0)
		return -1;
	if ((fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return mindex_fail(error_r, "open %s: %s", path,
		    strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			r = mindex_fail(error_r, "index in use: %s", dir);
		else
			r = mindex_fail(error_r, "flock %s: %s", path,
			    strerror(errno));
		close(fd);
		return r;
	}
	r = mindex_compact_locked(dir, error_r);
	close(fd);
	return r;
}
