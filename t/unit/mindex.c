/*
 * Unit tests for lib/mindex.c: folders, messages (every field, NUL bytes
 * included, round-tripping), counters and quota against a model, limits
 * at N and N+1, corrupt records written with raw LMDB, map growth and the
 * full map, writers in two processes, stale readers, a map grown by
 * another process, compaction. Everything lives in a temporary directory
 * under /tmp, removed at the end.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compat/compat.h"
#include "mindex.h"
#include "tap.h"

#define KIB	1024u
#define HDR_MAX	1100

static char top[PATH_MAX];
static pid_t top_owner;		/* only this process removes top */

/* Helpers. */

static const char *
tpath(char *buf, size_t size, const char *name)
{
	int n = snprintf(buf, size, "%s/%s", top, name);

	if (n < 0 || (size_t)n >= size)
		bail("path too long");
	return buf;
}

/* join: a then b into buf, or bail. */
static const char *
join(char *buf, size_t size, const char *a, const char *b)
{
	int n = snprintf(buf, size, "%s%s", a, b);

	if (n < 0 || (size_t)n >= size)
		bail("path too long");
	return buf;
}

static bool
has(const char *s, const char *sub)
{
	return s != NULL && strstr(s, sub) != NULL;
}

static struct mindex *
xopen(const char *dir, uint64_t map, uint64_t max, bool nosync)
{
	struct mindex_options o = { map, max, nosync };
	struct mindex *ix;
	const char *err;

	if (mindex_open(dir, &o, &ix, &err) < 0)
		bail("mindex_open %s: %s", dir, err);
	return ix;
}

static struct mindex_txn *
xbegin(struct mindex *ix, bool write)
{
	struct mindex_txn *txn;
	const char *err;

	if (mindex_begin(ix, write, &txn, &err) < 0)
		bail("mindex_begin: %s", err);
	return txn;
}

static void
xcommit(struct mindex_txn **txn)
{
	const char *err;
	int rc = mindex_commit(txn, &err);

	if (rc != 0)
		bail("mindex_commit: %d %s", rc, rc == -1 ? err : "");
}

static struct mindex_stats
xstats(struct mindex *ix)
{
	struct mindex_stats st;
	const char *err;

	if (mindex_stats(ix, &st, &err) < 0)
		bail("mindex_stats: %s", err);
	return st;
}

static struct mindex_folder
xfolder(struct mindex_txn *txn, const char *name)
{
	struct mindex_folder f;

	if (mindex_folder_get(txn, name, &f) != 1)
		bail("folder %s: %s", name, mindex_last_error());
	return f;
}

static struct mindex_folder
xcreate(struct mindex *ix, const char *name)
{
	struct mindex_txn *txn = xbegin(ix, true);
	struct mindex_folder f;

	if (mindex_folder_create(txn, name, 0, &f) != 0)
		bail("create %s: %s", name, mindex_last_error());
	xcommit(&txn);
	return f;
}

static int
rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

static void
rm_tree(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static off_t
file_size(const char *dir, const char *name)
{
	char path[PATH_MAX];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (stat(path, &st) < 0)
		return -1;
	return st.st_size;
}

/* A message whose every field is a function of its uid, so that any
 * record can be checked later without remembering it. */
struct msgbuf {
	char loc[64];
	unsigned char hdr[HDR_MAX];
};

static void
fill_msg(struct mindex_msg *m, struct msgbuf *b, uint32_t uid,
    size_t hdr_len)
{
	size_t i;

	memset(m, 0, sizeof(*m));
	m->uid = uid;
	m->psize = 1000 + uid;
	m->vsize = 2000 + uid;
	m->internal_date = uid;
	snprintf(b->loc, sizeof(b->loc), "cur/%u.host:2,", uid);
	for (i = 0; i < hdr_len && i < sizeof(b->hdr); i++)
		b->hdr[i] = (unsigned char)(uid * 31 + i);
	m->location = b->loc;
	m->location_len = strlen(b->loc);
	m->headers = b->hdr;
	m->headers_len = hdr_len;
}

static bool
msg_matches(const struct mindex_msg *m, size_t hdr_len)
{
	struct msgbuf b;
	struct mindex_msg want;

	fill_msg(&want, &b, m->uid, hdr_len);
	return m->psize == want.psize && m->vsize == want.vsize &&
	    m->headers_len == hdr_len &&
	    memcmp(m->headers, b.hdr, hdr_len) == 0 &&
	    m->location_len == want.location_len &&
	    strcmp(m->location, b.loc) == 0;
}

/* batch_fn: add n messages (uids from the folder's uidnext, read inside
 * the transaction, so a rerun after MINDEX_EFULL repeats nothing). */
struct batch {
	const char *folder;
	unsigned n;
	size_t hdr_len;
	unsigned runs;		/* calls of batch_fn, retries included */
	int tag;		/* >= 0: location "childTAG/SEQ" */
	unsigned seq;
};

static int
batch_fn(struct mindex_txn *txn, void *ctx, const char **error_r)
{
	struct batch *b = ctx;
	struct mindex_folder f;
	struct mindex_msg m;
	struct msgbuf mb;
	unsigned i;
	int rc;

	b->runs++;
	if ((rc = mindex_folder_get(txn, b->folder, &f)) != 1) {
		*error_r = rc == 0 ? "no such folder" : mindex_last_error();
		return -1;
	}
	for (i = 0; i < b->n; i++) {
		fill_msg(&m, &mb, f.uidnext, b->hdr_len);
		if (b->tag >= 0) {
			snprintf(mb.loc, sizeof(mb.loc), "child%d/%u", b->tag,
			    b->seq + i);
			m.location_len = strlen(mb.loc);
		}
		if ((rc = mindex_msg_add(txn, &f, &m)) != 0)
			return rc;
	}
	return mindex_folder_put(txn, b->folder, &f);
}

/* Iteration checks. */
struct seq {
	unsigned count;
	uint32_t last;
	bool ordered;
	bool content_ok;
	size_t hdr_len;		/* check content when != (size_t)-1 */
	unsigned stop_after;	/* 0: never */
	int fail_at;		/* > 0: return -1 at that count */
	uint32_t uids[64];	/* the first 64 uids seen */
};

static void
seq_init(struct seq *s, size_t hdr_len)
{
	memset(s, 0, sizeof(*s));
	s->ordered = true;
	s->content_ok = true;
	s->hdr_len = hdr_len;
}

static int
seq_cb(const struct mindex_msg *m, void *ctx)
{
	struct seq *s = ctx;

	if (s->count > 0 && m->uid <= s->last)
		s->ordered = false;
	if (s->hdr_len != (size_t)-1 && !msg_matches(m, s->hdr_len))
		s->content_ok = false;
	if (s->count < 64)
		s->uids[s->count] = m->uid;
	s->last = m->uid;
	s->count++;
	if (s->fail_at > 0 && s->count == (unsigned)s->fail_at)
		return -1;
	if (s->stop_after > 0 && s->count == s->stop_after)
		return 1;
	return 0;
}

static unsigned
count_msgs(struct mindex *ix, uint32_t folder_id, size_t hdr_len,
    bool *ok_r)
{
	struct mindex_txn *txn = xbegin(ix, false);
	struct seq s;
	int rc;

	seq_init(&s, hdr_len);
	rc = mindex_msg_iter(txn, folder_id, 0, seq_cb, &s);
	mindex_abort(&txn);
	*ok_r = rc == 0 && s.ordered && s.content_ok;
	return s.count;
}

/* Raw LMDB, to write what mindex never would. */
static void
raw_begin(const char *dir, MDB_env **env_r, MDB_txn **txn_r)
{
	int rc;

	if ((rc = mdb_env_create(env_r)) != 0 ||
	    (rc = mdb_env_set_maxdbs(*env_r, 8)) != 0 ||
	    (rc = mdb_env_set_mapsize(*env_r, 64u * KIB * KIB)) != 0 ||
	    (rc = mdb_env_open(*env_r, dir, 0, 0600)) != 0 ||
	    (rc = mdb_txn_begin(*env_r, NULL, 0, txn_r)) != 0)
		bail("raw lmdb %s: %s", dir, mdb_strerror(rc));
}

static MDB_dbi
raw_dbi(MDB_txn *txn, const char *name)
{
	MDB_dbi dbi;
	int rc;

	if ((rc = mdb_dbi_open(txn, name, 0, &dbi)) != 0)
		bail("raw dbi %s: %s", name, mdb_strerror(rc));
	return dbi;
}

static void
raw_put(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kl, const void *v,
    size_t vl)
{
	MDB_val key = { kl, (void *)k }, val = { vl, (void *)v };
	int rc;

	if ((rc = mdb_put(txn, dbi, &key, &val, 0)) != 0)
		bail("raw put: %s", mdb_strerror(rc));
}

static void
raw_end(MDB_env *env, MDB_txn *txn)
{
	int rc;

	if ((rc = mdb_txn_commit(txn)) != 0)
		bail("raw commit: %s", mdb_strerror(rc));
	mdb_env_close(env);
}

static void
raw_key(unsigned char k[8], uint32_t folder_id, uint32_t uid)
{
	k[0] = folder_id >> 24;
	k[1] = folder_id >> 16;
	k[2] = folder_id >> 8;
	k[3] = folder_id;
	k[4] = uid >> 24;
	k[5] = uid >> 16;
	k[6] = uid >> 8;
	k[7] = uid;
}

/* Folders. */

static bool
folder_eq(const struct mindex_folder *a, const struct mindex_folder *b)
{
	int i;

	if (a->id != b->id || a->uidvalidity != b->uidvalidity ||
	    a->uidnext != b->uidnext || a->count != b->count ||
	    a->unseen != b->unseen || a->deleted != b->deleted ||
	    a->vsize != b->vsize || a->psize != b->psize ||
	    a->highestmodseq != b->highestmodseq ||
	    a->sync_offset != b->sync_offset)
		return false;
	for (i = 0; i < 2; i++)
		if (a->stamp[i].dev != b->stamp[i].dev ||
		    a->stamp[i].ino != b->stamp[i].ino ||
		    a->stamp[i].size != b->stamp[i].size ||
		    a->stamp[i].mtime_ns != b->stamp[i].mtime_ns ||
		    a->stamp[i].checked_ns != b->stamp[i].checked_ns)
			return false;
	return true;
}

struct names {
	char list[2048];
	unsigned count;
	unsigned stop_after;
	bool fail;
};

static int
names_cb(const char *name, const struct mindex_folder *f, void *ctx)
{
	struct names *n = ctx;

	(void)f;
	if (n->count > 0)
		strlcat(n->list, ",", sizeof(n->list));
	strlcat(n->list, strlen(name) > 10 ? "LONG" : name, sizeof(n->list));
	n->count++;
	if (n->fail)
		return -1;
	return n->stop_after > 0 && n->count == n->stop_after ? 1 : 0;
}

static void
test_folder_create(struct mindex_txn *txn, struct mindex_folder *inbox,
    uint32_t *trash_uidvalidity_r)
{
	char name[MINDEX_KEY_MAX + 2];
	struct mindex_folder sent, trash, f, g;
	time_t now = time(NULL);

	is_int(mindex_folder_create(txn, "INBOX", 0, inbox), 0,
	    "create INBOX");
	is_int(inbox->id, 1, "first folder id is 1");
	ok(inbox->uidvalidity >= (uint32_t)now, "uidvalidity 0 gives >= now");
	ok(inbox->uidnext == 1 && inbox->count == 0 &&
	    inbox->highestmodseq == 0, "new folder: uidnext 1, empty");
	is_int(mindex_folder_create(txn, "Sent", 12345, &sent), 0,
	    "create Sent with a given uidvalidity");
	ok(sent.id == 2 && sent.uidvalidity == 12345, "given uidvalidity kept");
	is_int(mindex_folder_create(txn, "INBOX", 0, &f), -1,
	    "create of an existing folder fails");
	is_string(mindex_last_error(), "folder exists", "error: folder exists");
	is_int(mindex_folder_create(txn, "Trash", 0, &trash), 0,
	    "create Trash");
	is_int(trash.id, 3, "failed create used no folder id");
	ok(trash.uidvalidity > inbox->uidvalidity,
	    "uidvalidity above the last one");
	*trash_uidvalidity_r = trash.uidvalidity;

	memset(name, 'a', sizeof(name));
	name[MINDEX_KEY_MAX] = '\0';
	is_int(mindex_folder_create(txn, name, 0, &f), 0,
	    "folder name of %d bytes accepted", MINDEX_KEY_MAX);
	is_int(mindex_folder_get(txn, name, &g), 1, "and found");
	name[MINDEX_KEY_MAX] = 'a';
	name[MINDEX_KEY_MAX + 1] = '\0';
	is_int(mindex_folder_create(txn, name, 0, &f), -1,
	    "folder name of %d bytes refused", MINDEX_KEY_MAX + 1);
	ok(has(mindex_last_error(), "folder name"), "error says why");
	is_int(mindex_folder_get(txn, name, &f), -1, "get with it fails");
	is_int(mindex_folder_create(txn, "", 0, &f), -1, "empty name refused");
	is_int(mindex_folder_get(txn, "INBOX", &f), 1, "get INBOX");
	ok(folder_eq(&f, inbox), "get returns what create returned");
	is_int(mindex_folder_get(txn, "Nope", &f), 0, "get missing: 0");
}

static void
test_folder_put_iter(struct mindex_txn *txn, struct mindex_folder *mod)
{
	struct mindex_folder f;
	struct names n;

	mod->uidnext = 77;
	mod->count = 7;
	mod->unseen = 3;
	mod->deleted = 1;
	mod->vsize = 0x123456789aull;
	mod->psize = 0xfedcba987654ull;
	mod->highestmodseq = 99;
	mod->stamp[0] = (struct mindex_stamp){ 1, 2, 3, -4, 5 };
	mod->stamp[1] = (struct mindex_stamp){ UINT64_MAX, 1ull << 63,
	    42, INT64_MIN, INT64_MAX };
	mod->sync_offset = 1ull << 40;
	is_int(mindex_folder_put(txn, "INBOX", mod), 0, "put INBOX");
	is_int(mindex_folder_get(txn, "INBOX", &f), 1, "get it back");
	ok(folder_eq(&f, mod), "every folder field round-trips");
	f.id = 0;
	is_int(mindex_folder_put(txn, "INBOX", &f), -1,
	    "put with id 0 refused");

	memset(&n, 0, sizeof(n));
	is_int(mindex_folder_iter(txn, names_cb, &n), 0, "folder iter");
	is_string(n.list, "INBOX,Sent,Trash,LONG", "all folders, name order");
	memset(&n, 0, sizeof(n));
	n.stop_after = 2;
	is_int(mindex_folder_iter(txn, names_cb, &n), 0, "iter stopped by cb");
	is_int(n.count, 2, "stopped after 2");
	memset(&n, 0, sizeof(n));
	n.fail = true;
	is_int(mindex_folder_iter(txn, names_cb, &n), -1, "cb error: -1");
}

static void
test_folder_recreate(struct mindex_txn *txn, uint32_t prev)
{
	struct mindex_folder f, g;
	int i;

	for (i = 0; i < 3; i++) {
		is_int(mindex_folder_delete(txn, "Trash"), 0, "delete Trash");
		is_int(mindex_folder_get(txn, "Trash", &f), 0, "gone");
		is_int(mindex_folder_delete(txn, "Trash"), 0,
		    "delete of a missing folder: 0");
		is_int(mindex_folder_create(txn, "Trash", 0, &f), 0,
		    "recreate");
		ok(f.uidvalidity > prev, "uidvalidity strictly increases "
		    "(%u > %u)", f.uidvalidity, prev);
		is_int(f.id, 5 + i, "folder ids are never reused");
		prev = f.uidvalidity;
	}
	is_int(mindex_folder_create(txn, "X", 4000000000u, &f), 0,
	    "create with a large given uidvalidity");
	is_int(mindex_folder_create(txn, "Y", 0, &g), 0, "then one with 0");
	is_int(g.uidvalidity, 4000000001u, "0 gives one above any given");
}

static void
test_folders(void)
{
	char dir[PATH_MAX], path[PATH_MAX];
	struct mindex_folder inbox, f;
	struct mindex_txn *txn;
	struct mindex *ix;
	struct stat st;
	uint32_t trash_uidvalidity;

	diag("folders");
	tpath(dir, sizeof(dir), "folders");
	ix = xopen(dir, 0, 0, true);
	ok(stat(dir, &st) == 0 && S_ISDIR(st.st_mode) &&
	    (st.st_mode & 07777) == 0700, "index directory created 0700");
	ok(stat(tpath(path, sizeof(path), "folders/loft.lock"), &st) == 0,
	    "loft.lock created");
	txn = xbegin(ix, true);
	test_folder_create(txn, &inbox, &trash_uidvalidity);
	test_folder_put_iter(txn, &inbox);
	xcommit(&txn);
	mindex_close(&ix);
	ok(ix == NULL, "close clears the pointer");

	ix = xopen(dir, 0, 0, true);
	txn = xbegin(ix, false);
	is_int(mindex_folder_get(txn, "INBOX", &f), 1, "after reopen");
	ok(folder_eq(&f, &inbox), "folder survived close and open");
	mindex_abort(&txn);
	ok(txn == NULL, "abort clears the pointer");
	txn = xbegin(ix, true);
	test_folder_recreate(txn, trash_uidvalidity);
	xcommit(&txn);
	mindex_close(&ix);
}

/* Messages. */

static const unsigned char hdr1[] =
    "Subject: a\0b\r\nFrom: <x@example.org>\r\n\r\n";
static const unsigned char mime1[] = { 0, 1, 2, 0, 255, 0 };
static const char kw1[] = "$Junk\0work\0";
static const char loc1[] = "cur/1234.M1P2.host:2,S";

static void
msg1(struct mindex_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->uid = 1;
	m->flags = MINDEX_F_SEEN | MINDEX_F_FORWARDED;
	m->internal_date = -5;
	m->save_date = 1700000000;
	m->psize = 1000;
	m->vsize = 1020;
	m->fingerprint = 0xdeadbeefcafef00dull;
	m->cache_flags = MINDEX_C_HEADERS_PARTIAL;
	m->mbox_offset = 1ull << 40;
	m->mbox_data_offset = (1ull << 40) + 77;
	m->location = loc1;
	m->location_len = strlen(loc1);
	m->keywords = kw1;
	m->keywords_len = sizeof(kw1) - 1;
	m->headers = hdr1;
	m->headers_len = sizeof(hdr1) - 1;
	m->mime = mime1;
	m->mime_len = sizeof(mime1);
}

static bool
msg_eq(const struct mindex_msg *a, const struct mindex_msg *b)
{
	return a->uid == b->uid && a->flags == b->flags &&
	    a->cache_flags == b->cache_flags &&
	    a->modseq == b->modseq && a->internal_date == b->internal_date &&
	    a->save_date == b->save_date && a->psize == b->psize &&
	    a->vsize == b->vsize && a->fingerprint == b->fingerprint &&
	    a->mbox_offset == b->mbox_offset &&
	    a->mbox_data_offset == b->mbox_data_offset &&
	    memcmp(a->guid, b->guid, 16) == 0 &&
	    a->location_len == b->location_len &&
	    memcmp(a->location, b->location, a->location_len) == 0 &&
	    a->keywords_len == b->keywords_len &&
	    (a->keywords_len == 0 ||
	    memcmp(a->keywords, b->keywords, a->keywords_len) == 0) &&
	    a->headers_len == b->headers_len &&
	    (a->headers_len == 0 ||
	    memcmp(a->headers, b->headers, a->headers_len) == 0) &&
	    a->mime_len == b->mime_len &&
	    (a->mime_len == 0 || memcmp(a->mime, b->mime, a->mime_len) == 0);
}

struct xlist {
	unsigned count;
	uint32_t uid[8];
	uint64_t modseq[8];
};

static int
xlist_cb(uint32_t uid, uint64_t modseq, void *ctx)
{
	struct xlist *x = ctx;

	if (x->count < 8) {
		x->uid[x->count] = uid;
		x->modseq[x->count] = modseq;
	}
	x->count++;
	return 0;
}

static void
test_msg_get(struct mindex_txn *txn, uint32_t folder_id,
    const struct mindex_msg *m1)
{
	struct mindex_msg got;

	is_int(mindex_msg_get(txn, folder_id, 1, &got), 1, "get message 1");
	ok(msg_eq(&got, m1), "every field round-trips, NUL bytes included");
	is_mem(got.headers, got.headers_len, hdr1, sizeof(hdr1) - 1,
	    "headers with a NUL byte exact");
	is_mem(got.mime, got.mime_len, mime1, sizeof(mime1), "mime exact");
	is_mem(got.keywords, got.keywords_len, kw1, sizeof(kw1) - 1,
	    "keywords exact");
	is_string(got.location, loc1, "location is a C string");
	is_int(mindex_msg_get(txn, folder_id, 2, &got), 0,
	    "get missing uid: 0");
	is_int(mindex_msg_get(txn, folder_id + 100, 1, &got), 0,
	    "get in another folder: 0");
}

static void
test_msg_add_get(struct mindex_txn *txn, struct mindex_folder *f,
    struct mindex_msg *m1)
{
	static const uint8_t guid2[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
	    11, 12, 13, 14, 15, 16 };
	static const uint8_t zero[16];
	struct mindex_folder before, stale;
	struct mindex_msg m2, m, got;

	msg1(m1);
	is_int(mindex_msg_add(txn, f, m1), 0, "add message 1");
	is_int(m1->modseq, 1, "first modseq is 1");
	ok(memcmp(m1->guid, zero, 16) != 0, "a GUID was made");
	ok(f->uidnext == 2 && f->highestmodseq == 1 && f->count == 1 &&
	    f->unseen == 0 && f->deleted == 0 && f->vsize == 1020 &&
	    f->psize == 1000, "folder counters after add 1");
	stale = *f;

	memset(&m2, 0, sizeof(m2));
	m2.uid = 5;
	m2.flags = MINDEX_F_DELETED;
	m2.psize = 200;
	m2.vsize = 210;
	memcpy(m2.guid, guid2, 16);
	m2.location = "new/x";
	m2.location_len = 5;
	is_int(mindex_msg_add(txn, f, &m2), 0, "add uid 5, a gap");
	ok(m2.modseq == 2 && memcmp(m2.guid, guid2, 16) == 0,
	    "modseq 2, given GUID kept");
	ok(f->uidnext == 6 && f->count == 2 && f->unseen == 1 &&
	    f->deleted == 1 && f->psize == 1200 && f->vsize == 1230,
	    "folder counters after add 2");

	before = *f;
	m = m2;
	m.uid = 5;
	is_int(mindex_msg_add(txn, f, &m), -1, "uid == uidnext - 1 refused");
	ok(has(mindex_last_error(), "uid not above uidnext"), "error says so");
	m.uid = 3;
	is_int(mindex_msg_add(txn, f, &m), -1, "uid below uidnext refused");
	ok(folder_eq(f, &before), "a refused add leaves f alone");
	m.uid = 5;
	is_int(mindex_msg_add(txn, &stale, &m), -1,
	    "duplicate uid refused (stale uidnext)");
	ok(has(mindex_last_error(), "uid exists"), "error: uid exists");
	is_int(stale.count, 1, "stale folder copy untouched");
	is_int(mindex_msg_get(txn, f->id, 5, &got), 1,
	    "transaction usable after the refusal");
	ok(got.location_len == 5 && strcmp(got.location, "new/x") == 0 &&
	    got.flags == MINDEX_F_DELETED, "uid 5 not overwritten");

	test_msg_get(txn, f->id, m1);
}

static void
test_msg_limits(struct mindex_txn *txn, struct mindex_folder *f)
{
	struct mindex_folder before = *f;
	struct mindex_msg m;

	memset(&m, 0, sizeof(m));
	m.uid = f->uidnext;
	m.location = "a\0b";
	m.location_len = 3;
	is_int(mindex_msg_add(txn, f, &m), -1, "location with NUL refused");
	m.location = "ab";
	m.location_len = 2;
	m.keywords = "ab";
	m.keywords_len = 2;
	is_int(mindex_msg_add(txn, f, &m), -1,
	    "keywords not ending in NUL refused");
	m.keywords = NULL;
	m.keywords_len = 0;
	m.mime_len = 3;
	is_int(mindex_msg_add(txn, f, &m), -1, "length without data refused");
	m.mime_len = 0;
	m.headers = (const unsigned char *)"";
	m.headers_len = (size_t)MINDEX_FIELD_MAX + 1;
	is_int(mindex_msg_add(txn, f, &m), -1,
	    "field of MINDEX_FIELD_MAX + 1 bytes refused");
	ok(has(mindex_last_error(), "longer than"), "error says why");
	m.headers_len = 0;
	m.uid = UINT32_MAX;
	is_int(mindex_msg_add(txn, f, &m), -1, "uid 2^32-1 refused");
	ok(folder_eq(f, &before), "refusals leave f alone");
}

static void
test_msg_update(struct mindex_txn *txn, struct mindex_folder *f,
    const struct mindex_msg *m1)
{
	static const unsigned char hdr2[] = "X: 1\r\n\0\0";
	struct mindex_msg m, got;
	uint64_t bytes, msgs;

	m = *m1;
	m.flags = MINDEX_F_FLAGGED;
	m.location = "cur/1234.M1P2.host:2,F";
	m.location_len = strlen(m.location);
	m.keywords = NULL;
	m.keywords_len = 0;
	m.headers = hdr2;
	m.headers_len = sizeof(hdr2) - 1;
	m.psize = 1500;
	m.vsize = 1530;
	memset(m.guid, 0, 16);
	is_int(mindex_msg_update(txn, f, &m), 0, "update message 1");
	is_int(m.modseq, 3, "update takes a new modseq");
	ok(memcmp(m.guid, m1->guid, 16) == 0, "zero GUID keeps the stored one");
	ok(f->count == 2 && f->unseen == 2 && f->deleted == 1 &&
	    f->psize == 1700 && f->vsize == 1740 && f->highestmodseq == 3,
	    "counters follow the update");
	is_int(mindex_quota_get(txn, &bytes, &msgs), 0, "quota get");
	ok(bytes == 1700 && msgs == 2, "quota follows (%llu, %llu)",
	    (unsigned long long)bytes, (unsigned long long)msgs);
	is_int(mindex_msg_get(txn, f->id, 1, &got), 1, "get updated");
	ok(msg_eq(&got, &m), "updated record round-trips");

	/* From the map, with fields moved so the record keeps its size:
	 * the new record overlaps the old one byte for byte. */
	m = got;
	m.location = got.location + 4;
	m.location_len = got.location_len - 4;
	m.keywords = got.location + got.location_len - 3;
	m.keywords_len = 4;
	is_int(mindex_msg_update(txn, f, &m), 0,
	    "update from fields pointing into the map");
	is_int(mindex_msg_get(txn, f->id, 1, &got), 1, "get again");
	is_string(got.location, "1234.M1P2.host:2,F", "moved location right");
	is_mem(got.keywords, got.keywords_len, "2,F", 4,
	    "moved keywords right");
	is_mem(got.headers, got.headers_len, hdr2, sizeof(hdr2) - 1,
	    "headers intact");
	m.uid = 4;
	is_int(mindex_msg_update(txn, f, &m), -1, "update of a missing uid");

	/* refresh: new content, the modseq and highestmodseq stay. */
	{
		uint64_t high = f->highestmodseq, was = got.modseq;

		m = got;
		m.vsize = 1531;
		is_int(mindex_msg_refresh(txn, f, &m), 0, "refresh message 1");
		ok(m.modseq == was && f->highestmodseq == high,
		    "refresh keeps the modseq (%llu) and highestmodseq (%llu)",
		    (unsigned long long)m.modseq,
		    (unsigned long long)f->highestmodseq);
		is_int(mindex_msg_get(txn, f->id, 1, &got), 1, "get refreshed");
		ok(got.vsize == 1531 && got.modseq == was &&
		    f->vsize == 1741, "the new size is stored and counted");
		m = got;
		m.vsize = 1530;
		is_int(mindex_msg_refresh(txn, f, &m), 0, "refresh back");
		m.uid = 4;
		is_int(mindex_msg_refresh(txn, f, &m), -1,
		    "refresh of a missing uid");
	}
}

static void
test_msg_expunge(struct mindex_txn *txn, struct mindex_folder *f)
{
	struct mindex_msg got;
	struct xlist x;
	uint64_t bytes, msgs;

	is_int(mindex_msg_expunge(txn, f, 5), 0, "expunge uid 5");
	is_int(mindex_msg_get(txn, f->id, 5, &got), 0, "uid 5 gone");
	ok(f->count == 1 && f->deleted == 0 && f->unseen == 1 &&
	    f->psize == 1500 && f->vsize == 1530 && f->highestmodseq == 5,
	    "counters after expunge");
	mindex_quota_get(txn, &bytes, &msgs);
	ok(bytes == 1500 && msgs == 1, "quota after expunge");
	memset(&x, 0, sizeof(x));
	is_int(mindex_expunged_iter(txn, f->id, 0, xlist_cb, &x), 0,
	    "expunged iter");
	ok(x.count == 1 && x.uid[0] == 5 && x.modseq[0] == 5,
	    "expunge recorded with its modseq");
	is_int(mindex_msg_expunge(txn, f, 5), 0, "expunge again: 0");
	is_int(f->highestmodseq, 5, "no new modseq for nothing");
}

static void
test_msg_iter(struct mindex_txn *txn, struct mindex_folder *f,
    struct mindex_folder *other)
{
	struct mindex_msg m;
	struct msgbuf mb;
	struct seq s;
	uint32_t uid;
	int ok_adds = 0;

	for (uid = 6; uid <= 20; uid++) {
		fill_msg(&m, &mb, uid, 10);
		ok_adds += mindex_msg_add(txn, f, &m) == 0;
	}
	for (uid = 1; uid <= 3; uid++) {
		fill_msg(&m, &mb, uid, 10);
		ok_adds += mindex_msg_add(txn, other, &m) == 0;
	}
	is_int(ok_adds, 18, "18 more messages in two folders");
	seq_init(&s, (size_t)-1);
	is_int(mindex_msg_iter(txn, f->id, 0, seq_cb, &s), 0, "iter INBOX");
	ok(s.count == 16 && s.ordered && s.uids[0] == 1 && s.uids[1] == 6 &&
	    s.last == 20, "its 16 messages in uid order, no other folder's");
	seq_init(&s, 10);
	is_int(mindex_msg_iter(txn, f->id, 10, seq_cb, &s), 0, "iter from 10");
	ok(s.count == 11 && s.uids[0] == 10 && s.content_ok, "uids 10..20");
	seq_init(&s, 10);
	is_int(mindex_msg_iter(txn, f->id, 21, seq_cb, &s), 0,
	    "iter past the end");
	is_int(s.count, 0, "nothing");
	seq_init(&s, 10);
	is_int(mindex_msg_iter(txn, other->id, 0, seq_cb, &s), 0,
	    "iter the other folder");
	ok(s.count == 3 && s.uids[0] == 1 && s.last == 3 && s.content_ok,
	    "its three messages only");
	seq_init(&s, (size_t)-1);
	s.stop_after = 3;
	is_int(mindex_msg_iter(txn, f->id, 0, seq_cb, &s), 0, "cb stops: 0");
	is_int(s.count, 3, "stopped after 3");
	seq_init(&s, (size_t)-1);
	s.fail_at = 2;
	is_int(mindex_msg_iter(txn, f->id, 0, seq_cb, &s), -1, "cb error: -1");
}

/* test_folder_gone: nothing of folder id is left; keep's messages are. */
static void
test_folder_gone(struct mindex_txn *txn, uint32_t id, uint32_t keep)
{
	struct mindex_msg got;
	struct xlist x;
	struct seq s;
	uint32_t uid;

	seq_init(&s, (size_t)-1);
	mindex_msg_iter(txn, id, 0, seq_cb, &s);
	is_int(s.count, 0, "deleted folder has no messages left");
	is_int(mindex_msg_get(txn, id, 1, &got), 0, "its uid 1 is gone");
	is_int(mindex_loc_get(txn, id, "k1", 2, &uid), 0, "its locs are gone");
	memset(&x, 0, sizeof(x));
	mindex_expunged_iter(txn, id, 0, xlist_cb, &x);
	is_int(x.count, 0, "its expunge records are gone");
	seq_init(&s, (size_t)-1);
	mindex_msg_iter(txn, keep, 0, seq_cb, &s);
	is_int(s.count, 16, "the other folder's messages are kept");
}

static void
test_messages(void)
{
	char dir[PATH_MAX];
	struct mindex_folder f, other, g;
	struct mindex_msg m1, got;
	struct mindex_txn *txn;
	struct mindex *ix;
	uint64_t bytes, msgs;

	diag("messages");
	tpath(dir, sizeof(dir), "msgs");
	ix = xopen(dir, 0, 0, false);
	f = xcreate(ix, "INBOX");
	other = xcreate(ix, "Other");
	txn = xbegin(ix, true);
	test_msg_add_get(txn, &f, &m1);
	test_msg_limits(txn, &f);
	test_msg_update(txn, &f, &m1);
	test_msg_expunge(txn, &f);
	test_msg_iter(txn, &f, &other);
	is_int(mindex_folder_put(txn, "INBOX", &f), 0, "put INBOX");
	is_int(mindex_folder_put(txn, "Other", &other), 0, "put Other");
	xcommit(&txn);
	mindex_close(&ix);

	ix = xopen(dir, 0, 0, false);
	txn = xbegin(ix, false);
	is_int(mindex_folder_get(txn, "INBOX", &g), 1, "reopened");
	ok(folder_eq(&g, &f), "folder counters persisted");
	is_int(mindex_msg_get(txn, f.id, 1, &got), 1, "message 1 persisted");
	is_string(got.location, "1234.M1P2.host:2,F", "with its last update");
	mindex_quota_get(txn, &bytes, &msgs);
	ok(msgs == 19 && bytes == 1500 + 15 * 1000 + (6 + 20) * 15 / 2 +
	    3 * 1000 + 6, "quota persisted (%llu, %llu)",
	    (unsigned long long)bytes, (unsigned long long)msgs);
	mindex_abort(&txn);

	txn = xbegin(ix, true);
	is_int(mindex_loc_put(txn, other.id, "k1", 2, 1), 0, "loc in Other");
	is_int(mindex_msg_expunge(txn, &other, 2), 0, "expunge in Other");
	is_int(mindex_folder_delete(txn, "Other"), 0, "delete Other");
	mindex_quota_get(txn, &bytes, &msgs);
	ok(msgs == 16 && bytes == 1500 + 15 * 1000 + (6 + 20) * 15 / 2,
	    "folder delete takes its messages off the quota");
	test_folder_gone(txn, other.id, f.id);
	xcommit(&txn);
	mindex_close(&ix);
}

static void
test_locs(struct mindex_txn *txn)
{
	char key[MINDEX_KEY_MAX + 1];
	uint32_t uid;

	is_int(mindex_loc_put(txn, 1, "key1", 4, 7), 0, "loc put");
	is_int(mindex_loc_get(txn, 1, "key1", 4, &uid), 1, "loc get");
	is_int(uid, 7, "uid 7");
	is_int(mindex_loc_put(txn, 1, "key1", 4, 9), 0, "loc put replaces");
	mindex_loc_get(txn, 1, "key1", 4, &uid);
	is_int(uid, 9, "uid 9 now");
	is_int(mindex_loc_get(txn, 2, "key1", 4, &uid), 0,
	    "same key in another folder: not found");
	is_int(mindex_loc_get(txn, 1, "key", 3, &uid), 0, "prefix: not found");
	is_int(mindex_loc_put(txn, 1, "a\0b", 3, 11), 0, "key with a NUL");
	is_int(mindex_loc_get(txn, 1, "a\0b", 3, &uid), 1, "found");
	ok(uid == 11 && mindex_loc_get(txn, 1, "a", 1, &uid) == 0,
	    "and distinct from \"a\"");
	memset(key, 'k', sizeof(key));
	is_int(mindex_loc_put(txn, 1, key, MINDEX_KEY_MAX, 12), 0,
	    "key of %d bytes", MINDEX_KEY_MAX);
	is_int(mindex_loc_get(txn, 1, key, MINDEX_KEY_MAX, &uid), 1, "found");
	is_int(mindex_loc_put(txn, 1, key, MINDEX_KEY_MAX + 1, 12), -1,
	    "key of %d bytes refused", MINDEX_KEY_MAX + 1);
	ok(has(mindex_last_error(), "storage key"), "error says why");
	is_int(mindex_loc_get(txn, 1, key, MINDEX_KEY_MAX + 1, &uid), -1,
	    "get with it fails too");
	is_int(mindex_loc_put(txn, 1, key, 0, 12), -1, "empty key refused");
	is_int(mindex_loc_delete(txn, 1, "key1", 4), 0, "loc delete");
	is_int(mindex_loc_get(txn, 1, "key1", 4, &uid), 0, "gone");
	is_int(mindex_loc_delete(txn, 1, "key1", 4), 0, "delete missing: 0");
}

static void
test_read_only(struct mindex_txn *txn)
{
	struct mindex_folder f;
	struct mindex_msg m;
	uint64_t bytes, msgs;

	is_int(mindex_folder_get(txn, "Gone", &f), 0, "abort left no folder");
	mindex_quota_get(txn, &bytes, &msgs);
	ok(bytes == 0 && msgs == 0, "nor quota");
	is_int(mindex_loc_put(txn, 1, "k", 1, 1), -1,
	    "write in a read transaction refused");
	ok(has(mindex_last_error(), "read-only"), "error says why");
	is_int(mindex_quota_set(txn, 1, 1), -1, "quota set refused");
	is_int(mindex_folder_create(txn, "A", 0, &f), -1, "create refused");
	f.id = 1;
	f.uidnext = 1;
	memset(&m, 0, sizeof(m));
	m.uid = 1;
	is_int(mindex_msg_add(txn, &f, &m), -1, "msg add refused");
	is_int(mindex_folder_delete(txn, "A"), -1, "folder delete refused");
}

static void
test_locs_quota_txn(void)
{
	char dir[PATH_MAX];
	struct mindex_txn *txn, *txn2;
	struct mindex_folder f;
	struct mindex *ix;
	const char *err;
	uint64_t bytes, msgs;

	diag("storage keys, quota, transaction rules");
	tpath(dir, sizeof(dir), "locs");
	ix = xopen(dir, 0, 0, true);
	txn = xbegin(ix, true);
	is_int(mindex_quota_get(txn, &bytes, &msgs), 0, "quota of a new index");
	ok(bytes == 0 && msgs == 0, "is 0, 0");
	test_locs(txn);
	is_int(mindex_quota_set(txn, 123, 4), 0, "quota set");
	mindex_quota_get(txn, &bytes, &msgs);
	ok(bytes == 123 && msgs == 4, "quota get returns it");
	is_int(mindex_begin(ix, false, &txn2, &err), -1,
	    "second transaction refused");
	ok(has(err, "transaction is open"), "error says why");
	is_int(mindex_folder_create(txn, "Gone", 0, &f), 0, "create Gone");
	mindex_abort(&txn);
	mindex_abort(&txn);
	txn = xbegin(ix, false);
	test_read_only(txn);
	mindex_abort(&txn);
	mindex_close(&ix);
}

/* A random sequence of adds, updates and expunges over several
 * transactions, checked against a model of what the counters must be. */
#define MODEL_UIDS 400

struct model {
	bool present[MODEL_UIDS + 1];
	uint32_t flags[MODEL_UIDS + 1];
	uint64_t psize[MODEL_UIDS + 1];
	uint64_t vsize[MODEL_UIDS + 1];
	uint32_t next;
	uint64_t rnd;
	bool walk_ok;
	unsigned walked;
};

static uint32_t
model_rand(struct model *md)
{
	md->rnd = md->rnd * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(md->rnd >> 33);
}

static int
model_step(struct mindex_txn *txn, struct mindex_folder *f,
    struct model *md)
{
	uint32_t r = model_rand(md) % 10;
	struct mindex_msg m;
	int rc;

	memset(&m, 0, sizeof(m));
	m.flags = model_rand(md) & 0x3f;
	m.psize = model_rand(md) % 5000;
	m.vsize = m.psize + model_rand(md) % 100;
	if (r < 5 && md->next <= MODEL_UIDS) {
		m.uid = md->next++;
		rc = mindex_msg_add(txn, f, &m);
	} else {
		m.uid = 1 + model_rand(md) % MODEL_UIDS;
		if (!md->present[m.uid] || r >= 8) {
			rc = mindex_msg_expunge(txn, f, m.uid);
			if (rc == 0)
				md->present[m.uid] = false;
			return rc;
		}
		rc = mindex_msg_update(txn, f, &m);
	}
	if (rc == 0) {
		md->present[m.uid] = true;
		md->flags[m.uid] = m.flags;
		md->psize[m.uid] = m.psize;
		md->vsize[m.uid] = m.vsize;
	}
	return rc;
}

static int
model_cb(const struct mindex_msg *m, void *ctx)
{
	struct model *md = ctx;

	md->walked++;
	if (m->uid > MODEL_UIDS || !md->present[m->uid] ||
	    md->flags[m->uid] != m->flags || md->psize[m->uid] != m->psize ||
	    md->vsize[m->uid] != m->vsize)
		md->walk_ok = false;
	return 0;
}

static void raw_meta(const char *dir, const void *v, size_t len);
static void raw_drop_brief(const char *dir);

struct brief_check {
	struct model *md;
	unsigned walked;
	bool ok;
	uint64_t modseq_max;
};

static int
brief_cb(const struct mindex_brief *b, void *ctx)
{
	struct brief_check *bc = ctx;
	struct model *md = bc->md;

	bc->walked++;
	if (b->uid > MODEL_UIDS || !md->present[b->uid] ||
	    md->flags[b->uid] != b->flags || md->vsize[b->uid] != b->vsize ||
	    b->modseq == 0)
		bc->ok = false;
	if (b->modseq > bc->modseq_max)
		bc->modseq_max = b->modseq;
	return 0;
}

static void
test_model(void)
{
	char dir[PATH_MAX];
	struct mindex_folder f;
	struct mindex_txn *txn;
	struct mindex *ix;
	struct model *md = calloc(1, sizeof(*md));
	uint64_t bytes, msgs, ps = 0, vs = 0;
	unsigned i, j, count = 0, unseen = 0, deleted = 0;
	int bad = 0;

	diag("counters against a model");
	md->next = 1;
	md->rnd = 42;
	tpath(dir, sizeof(dir), "model");
	ix = xopen(dir, 0, 0, true);
	xcreate(ix, "INBOX");
	for (i = 0; i < 20; i++) {
		txn = xbegin(ix, true);
		f = xfolder(txn, "INBOX");
		for (j = 0; j < 100; j++)
			bad += model_step(txn, &f, md) != 0;
		mindex_folder_put(txn, "INBOX", &f);
		xcommit(&txn);
	}
	is_int(bad, 0, "2000 random operations succeeded");
	for (i = 1; i <= MODEL_UIDS; i++) {
		if (!md->present[i])
			continue;
		count++;
		unseen += (md->flags[i] & MINDEX_F_SEEN) == 0;
		deleted += (md->flags[i] & MINDEX_F_DELETED) != 0;
		ps += md->psize[i];
		vs += md->vsize[i];
	}
	txn = xbegin(ix, false);
	f = xfolder(txn, "INBOX");
	ok(f.count == count && f.unseen == unseen && f.deleted == deleted &&
	    f.psize == ps && f.vsize == vs, "folder counters match the model "
	    "(count %u/%u unseen %u/%u deleted %u/%u)", f.count, count,
	    f.unseen, unseen, f.deleted, deleted);
	ok(count > 50 && unseen > 0 && deleted > 0, "the model is not trivial");
	mindex_quota_get(txn, &bytes, &msgs);
	ok(bytes == ps && msgs == count, "quota matches the model");
	md->walk_ok = true;
	is_int(mindex_msg_iter(txn, f.id, 0, model_cb, md), 0, "walk");
	ok(md->walk_ok && md->walked == count,
	    "records match the model one by one");
	{
		struct brief_check bc = { md, 0, true, 0 };

		is_int(mindex_brief_iter(txn, f.id, 1, brief_cb, &bc), 0,
		    "brief walk");
		ok(bc.ok && bc.walked == count && bc.modseq_max ==
		    f.highestmodseq, "brief records match the model one by one "
		    "(%u of %u)", bc.walked, count);
	}
	mindex_abort(&txn);
	/* A version 1 index (no brief records) is upgraded on open. */
	mindex_close(&ix);
	raw_meta(dir, "\1\0\0\0", 4);
	raw_drop_brief(dir);
	ix = xopen(dir, 0, 0, true);
	txn = xbegin(ix, false);
	{
		struct brief_check bc = { md, 0, true, 0 };

		is_int(mindex_brief_iter(txn, f.id, 1, brief_cb, &bc), 0,
		    "brief walk after the upgrade from version 1");
		ok(bc.ok && bc.walked == count, "upgrade rebuilt every brief "
		    "record (%u of %u)", bc.walked, count);
	}
	mindex_abort(&txn);
	/* Deleting the folder deletes its brief records. */
	txn = xbegin(ix, true);
	is_int(mindex_folder_delete(txn, "INBOX"), 0, "delete the folder");
	{
		struct brief_check bc = { md, 0, true, 0 };

		mindex_brief_iter(txn, f.id, 1, brief_cb, &bc);
		is_int(bc.walked, 0, "no brief record is left");
	}
	xcommit(&txn);
	mindex_close(&ix);
	free(md);
}

/* Corrupt records, written with raw LMDB where mindex would not. */

static unsigned char *
raw_record(const char *dir, size_t *len_r)
{
	unsigned char k[8], *copy;
	MDB_env *env;
	MDB_txn *txn;
	MDB_val key = { 8, k }, val;

	raw_begin(dir, &env, &txn);
	raw_key(k, 1, 1);
	if (mdb_get(txn, raw_dbi(txn, "msgs"), &key, &val) != 0)
		bail("raw get");
	copy = malloc(val.mv_size + 1);
	memcpy(copy, val.mv_data, val.mv_size);
	*len_r = val.mv_size;
	raw_end(env, txn);
	return copy;
}

/* The special cases go to uids 3000 and up of folder 1. */
static void
raw_variants(MDB_txn *txn, MDB_dbi dbi, const unsigned char *rec,
    size_t len)
{
	unsigned char k[8], *v = malloc(len + 1);
	size_t loc_len_off = 4 + 4 + 4 + 8 * 8 + 16;

	raw_key(k, 1, 3000);
	memcpy(v, rec, len);
	v[0] = 2;
	raw_put(txn, dbi, k, 8, v, len);
	raw_key(k, 1, 3001);
	memcpy(v, rec, len);
	v[2] = 1;
	raw_put(txn, dbi, k, 8, v, len);
	raw_key(k, 1, 3002);
	memcpy(v, rec, len);
	v[len] = 0;
	raw_put(txn, dbi, k, 8, v, len + 1);
	raw_key(k, 1, 3003);
	memcpy(v, rec, len);
	memset(v + loc_len_off, 0xff, 4);
	raw_put(txn, dbi, k, 8, v, len);
	raw_key(k, 1, 3004);
	memcpy(v, rec, len);
	v[loc_len_off + 4 + strlen(loc1)] = 'x';
	raw_put(txn, dbi, k, 8, v, len);
	free(v);
}

static void
raw_corrupt(const char *dir, const unsigned char *rec, size_t len)
{
	unsigned char k[8], *v = malloc(len);
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi msgs;
	size_t i;

	raw_begin(dir, &env, &txn);
	msgs = raw_dbi(txn, "msgs");
	for (i = 0; i < len; i++) {
		raw_key(k, 1, 1000 + i);
		raw_put(txn, msgs, k, 8, rec, i);
		raw_key(k, 3, 1 + i);
		memcpy(v, rec, len);
		v[i] ^= 0xff;
		raw_put(txn, msgs, k, 8, v, len);
	}
	raw_variants(txn, msgs, rec, len);
	raw_key(k, 2, 1);
	raw_put(txn, msgs, k, 8, "garbage", 7);
	raw_put(txn, raw_dbi(txn, "folders"), "Bad", 3, "0123456789", 10);
	raw_key(k, 1, 7);
	raw_put(txn, raw_dbi(txn, "expunged"), k, 8, "abc", 3);
	raw_key(k, 1, 0);
	memcpy(k + 4, "kk", 2);
	raw_put(txn, raw_dbi(txn, "locs"), k, 6, "abc", 3);
	raw_end(env, txn);
	free(v);
}

static void
test_corrupt_reads(struct mindex_txn *txn, size_t len)
{
	struct mindex_folder f;
	struct mindex_msg m;
	struct names n;
	struct xlist x;
	struct seq s;
	unsigned trunc = 0, special = 0, flip_bad = 0, flip_missing = 0;
	uint32_t uid;
	size_t i;

	for (i = 0; i < len; i++) {
		trunc += mindex_msg_get(txn, 1, 1000 + i, &m) == -1 &&
		    has(mindex_last_error(), "corrupt index record");
		switch (mindex_msg_get(txn, 3, 1 + i, &m)) {
		case -1:
			flip_bad++;
			break;
		case 0:
			flip_missing++;
		}
	}
	is_int(trunc, len, "all %zu truncations are corrupt records", len);
	ok(flip_missing == 0 && flip_bad > 0 && flip_bad < len,
	    "flipped bytes: %u refused, the rest decode, no crash", flip_bad);
	for (uid = 3000; uid <= 3004; uid++)
		special += mindex_msg_get(txn, 1, uid, &m) == -1;
	is_int(special, 5, "bad format, reserved byte, trailing byte, huge "
	    "length, unterminated location: all refused");
	is_string(mindex_last_error(), "corrupt index record (folder 1 uid "
	    "3004)", "the error names the record");
	is_int(mindex_msg_get(txn, 1, 1, &m), 1, "the good record still reads");
	seq_init(&s, (size_t)-1);
	is_int(mindex_msg_iter(txn, 2, 0, seq_cb, &s), -1,
	    "iter over a corrupt record: -1");
	is_int(mindex_folder_get(txn, "Bad", &f), -1, "corrupt folder: -1");
	ok(has(mindex_last_error(), "corrupt index record"), "error says so");
	memset(&n, 0, sizeof(n));
	is_int(mindex_folder_iter(txn, names_cb, &n), -1,
	    "folder iter over it: -1");
	memset(&x, 0, sizeof(x));
	is_int(mindex_expunged_iter(txn, 1, 0, xlist_cb, &x), -1,
	    "corrupt expunge record: -1");
	is_int(mindex_loc_get(txn, 1, "kk", 2, &uid), -1,
	    "corrupt storage key record: -1");
}

static void
test_corrupt(void)
{
	char dir[PATH_MAX];
	struct mindex_folder f;
	struct mindex_txn *txn;
	struct mindex_msg m;
	struct mindex *ix;
	unsigned char *rec;
	size_t len;

	diag("corrupt records");
	tpath(dir, sizeof(dir), "corrupt");
	ix = xopen(dir, 0, 0, true);
	f = xcreate(ix, "INBOX");
	txn = xbegin(ix, true);
	msg1(&m);
	is_int(mindex_msg_add(txn, &f, &m), 0, "add a good record");
	xcommit(&txn);
	mindex_close(&ix);
	rec = raw_record(dir, &len);
	is_int(len, 4 + 4 + 4 + 8 * 8 + 16 + 4 + strlen(loc1) + 1 + 4 +
	    m.keywords_len + 4 + m.headers_len + 4 + m.mime_len,
	    "record size is the documented layout");
	is_int(rec[0], 1, "format byte 1");
	is_int(rec[4] | rec[5] << 8, MINDEX_F_SEEN | MINDEX_F_FORWARDED,
	    "flags little-endian");
	raw_corrupt(dir, rec, len);
	ix = xopen(dir, 0, 0, true);
	txn = xbegin(ix, false);
	test_corrupt_reads(txn, len);
	mindex_abort(&txn);
	mindex_close(&ix);
	free(rec);
}

static void
raw_meta(const char *dir, const void *v, size_t len)
{
	MDB_env *env;
	MDB_txn *txn;

	raw_begin(dir, &env, &txn);
	raw_put(txn, raw_dbi(txn, "meta"), "version", 7, v, len);
	raw_end(env, txn);
}

/* Make the index look as version 1 left it: no brief database. */
static void
raw_drop_brief(const char *dir)
{
	MDB_env *env;
	MDB_txn *txn;

	raw_begin(dir, &env, &txn);
	if (mdb_drop(txn, raw_dbi(txn, "brief"), 1) != 0)
		bail("mdb_drop brief");
	raw_end(env, txn);
}

static void
test_version(void)
{
	char dir[PATH_MAX];
	struct mindex *ix;
	const char *err;

	diag("index version");
	tpath(dir, sizeof(dir), "version");
	ix = xopen(dir, 0, 0, true);
	mindex_close(&ix);
	raw_meta(dir, "\4\0\0\0", 4);
	ix = (struct mindex *)dir;	/* any non-NULL value */
	is_int(mindex_open(dir, NULL, &ix, &err), -1,
	    "an index of a newer version is refused");
	ok(has(err, "newer"), "error: %s", err);
	ok(ix == NULL, "nothing returned");
	raw_meta(dir, "\1\0\0", 3);
	is_int(mindex_open(dir, NULL, &ix, &err), -1,
	    "a version of the wrong size is refused");
	ok(has(err, "corrupt index record"), "error: %s", err);
	raw_meta(dir, "\1\0\0\0", 4);
	is_int(mindex_open(dir, NULL, &ix, &err), 0, "version 1 opens");
	mindex_close(&ix);
	raw_meta(dir, "\2\0\0\0", 4);
	is_int(mindex_open(dir, NULL, &ix, &err), 0, "version 2 opens");
	mindex_close(&ix);
	raw_meta(dir, "\3\0\0\0", 4);
	is_int(mindex_open(dir, NULL, &ix, &err), 0, "version 3 opens");
	mindex_close(&ix);
	is_int(mindex_open("/nonexistent/dir/x", NULL, &ix, &err), -1,
	    "a missing parent directory is an error");
}

/* State records: a change of flags, location or keywords alone leaves
 * the full record as it was and puts them into the brief record. */

static unsigned char *
raw_copy(const char *dir, const char *db, uint32_t uid, size_t *len_r)
{
	unsigned char k[8], *copy;
	MDB_env *env;
	MDB_txn *txn;
	MDB_val key = { 8, k }, val;

	raw_begin(dir, &env, &txn);
	raw_key(k, 1, uid);
	if (mdb_get(txn, raw_dbi(txn, db), &key, &val) != 0)
		bail("raw get %s", db);
	copy = malloc(val.mv_size + 1);
	memcpy(copy, val.mv_data, val.mv_size);
	*len_r = val.mv_size;
	raw_end(env, txn);
	return copy;
}

static int
state_iter_cb(const struct mindex_msg *m, void *ctx)
{
	struct mindex_msg *out = ctx;

	if (m->uid == 1) {
		*out = *m;
		return 1;
	}
	return 0;
}

static int
state_brief_cb(const struct mindex_brief *b, void *ctx)
{
	uint32_t *flags = ctx;

	if (b->uid == 1)
		*flags = b->flags;
	return 0;
}

static void
test_state(void)
{
	static const char loc2[] = "cur/1234.M1P2.host:2,FSa";
	static const char kw2[] = "$Done\0";
	static const unsigned char hdr2[] = "Y: 2\r\n";
	char dir[PATH_MAX], locbuf[64], kwbuf[16];
	unsigned char *full0, *full1, *brief;
	size_t full0_len, full1_len, brief_len;
	struct mindex_folder f;
	struct mindex_msg m, got, walked;
	struct mindex_txn *txn;
	struct mindex *ix;
	uint32_t bflags = 0;

	diag("state records");
	tpath(dir, sizeof(dir), "state");
	ix = xopen(dir, 0, 0, true);
	txn = xbegin(ix, true);
	is_int(mindex_folder_create(txn, "INBOX", 7, &f), 0, "create");
	msg1(&m);
	is_int(mindex_msg_add(txn, &f, &m), 0, "add");
	is_int(mindex_folder_put(txn, "INBOX", &f), 0, "put folder");
	xcommit(&txn);
	full0 = raw_copy(dir, "msgs", 1, &full0_len);

	txn = xbegin(ix, true);
	is_int(mindex_msg_get(txn, f.id, 1, &got), 1, "get");
	m = got;
	m.flags = MINDEX_F_FLAGGED | MINDEX_F_SEEN;
	m.location = loc2;
	m.location_len = strlen(loc2);
	m.keywords = kw2;
	m.keywords_len = sizeof(kw2) - 1;
	m.vsize = got.vsize + 1;
	is_int(mindex_msg_update(txn, &f, &m), 0, "update flags, location, "
	    "keywords and vsize");
	is_int(mindex_folder_put(txn, "INBOX", &f), 0, "put folder");
	xcommit(&txn);
	full1 = raw_copy(dir, "msgs", 1, &full1_len);
	brief = raw_copy(dir, "brief", 1, &brief_len);
	ok(full1_len == full0_len && memcmp(full0, full1, full0_len) == 0,
	    "the full record is untouched");
	is_int(brief_len, 24 + 4 + sizeof(loc2) + 4 + sizeof(kw2) - 1,
	    "the brief record carries location and keywords");
	free(full1);
	free(brief);

	txn = xbegin(ix, false);
	is_int(mindex_msg_get(txn, f.id, 1, &got), 1, "get after");
	ok(got.flags == m.flags && got.modseq == m.modseq &&
	    got.vsize == m.vsize, "flags, modseq, vsize from the state");
	is_string(got.location, loc2, "location from the state");
	is_mem(got.keywords, got.keywords_len, kw2, sizeof(kw2) - 1,
	    "keywords from the state");
	is_mem(got.headers, got.headers_len, hdr1, sizeof(hdr1) - 1,
	    "headers from the full record");
	memset(&walked, 0, sizeof(walked));
	is_int(mindex_msg_iter(txn, f.id, 1, state_iter_cb, &walked), 0,
	    "iter");
	ok(msg_eq(&walked, &got), "iter sees what get sees");
	is_int(mindex_brief_iter(txn, f.id, 1, state_brief_cb, &bflags), 0,
	    "brief iter over a state record");
	is_int(bflags, m.flags, "brief iter flags");
	mindex_abort(&txn);

	/* A change beyond the state writes the full record and the short
	 * brief again, with the state's location kept. */
	txn = xbegin(ix, true);
	is_int(mindex_msg_get(txn, f.id, 1, &got), 1, "get");
	m = got;
	strlcpy(locbuf, got.location, sizeof(locbuf));
	memcpy(kwbuf, got.keywords, got.keywords_len);
	m.location = locbuf;
	m.keywords = kwbuf;
	m.headers = hdr2;
	m.headers_len = sizeof(hdr2) - 1;
	is_int(mindex_msg_refresh(txn, &f, &m), 0, "refresh with new headers");
	xcommit(&txn);
	brief = raw_copy(dir, "brief", 1, &brief_len);
	is_int(brief_len, 24, "the brief record is short again");
	free(brief);
	txn = xbegin(ix, false);
	is_int(mindex_msg_get(txn, f.id, 1, &got), 1, "get after refresh");
	is_string(got.location, loc2, "location kept");
	is_mem(got.keywords, got.keywords_len, kw2, sizeof(kw2) - 1,
	    "keywords kept");
	is_mem(got.headers, got.headers_len, hdr2, sizeof(hdr2) - 1,
	    "new headers");
	ok(got.flags == m.flags, "flags kept");
	mindex_abort(&txn);

	/* A state record that does not decode is corrupt, never read past. */
	{
		unsigned char k[8], v[24 + 4 + 3];
		MDB_env *env;
		MDB_txn *rt;

		memset(v, 0, sizeof(v));
		v[24] = 200;	/* location length past the end */
		mindex_close(&ix);
		raw_begin(dir, &env, &rt);
		raw_key(k, 1, 1);
		raw_put(rt, raw_dbi(rt, "brief"), k, 8, v, sizeof(v));
		raw_end(env, rt);
		ix = xopen(dir, 0, 0, true);
		txn = xbegin(ix, false);
		is_int(mindex_msg_get(txn, f.id, 1, &got), -1,
		    "a corrupt state record: -1");
		ok(has(mindex_last_error(), "corrupt index record"), "error: %s",
		    mindex_last_error());
		mindex_abort(&txn);
	}
	mindex_close(&ix);
	free(full0);

	/* Commits with a lazy meta page: written, and read back after a
	 * reopen; the handle's later commits are the usual ones. */
	tpath(dir, sizeof(dir), "lazymeta");
	ix = xopen(dir, 0, 0, false);
	mindex_set_lazy_meta(ix, true);
	txn = xbegin(ix, true);
	is_int(mindex_folder_create(txn, "INBOX", 7, &f), 0, "lazy: create");
	msg1(&m);
	is_int(mindex_msg_add(txn, &f, &m), 0, "lazy: add");
	is_int(mindex_folder_put(txn, "INBOX", &f), 0, "lazy: put folder");
	xcommit(&txn);
	mindex_set_lazy_meta(ix, false);
	txn = xbegin(ix, true);
	m.uid = 2;
	is_int(mindex_msg_add(txn, &f, &m), 0, "then a synced add");
	is_int(mindex_folder_put(txn, "INBOX", &f), 0, "put folder");
	xcommit(&txn);
	mindex_close(&ix);
	ix = xopen(dir, 0, 0, false);
	txn = xbegin(ix, false);
	is_int(mindex_msg_get(txn, f.id, 1, &got), 1,
	    "the lazy commit's message after a reopen");
	is_int(mindex_msg_get(txn, f.id, 2, &got), 1, "and the next one");
	mindex_abort(&txn);
	mindex_close(&ix);
}

/* Map growth. */

static void
test_growth(void)
{
	char dir[PATH_MAX];
	struct batch b = { "INBOX", 50, 1024, 0, -1, 0 };
	struct mindex_stats st;
	struct mindex_folder f;
	struct mindex_txn *txn;
	struct mindex *ix;
	const char *err;
	uint64_t grown;
	unsigned i, fails = 0;
	bool good;

	diag("map growth");
	tpath(dir, sizeof(dir), "grow");
	ix = xopen(dir, 64 * KIB, 0, true);
	st = xstats(ix);
	is_int(st.map_size, 64 * KIB, "map starts at 64 KiB");
	f = xcreate(ix, "INBOX");
	for (i = 0; i < 100; i++)
		fails += mindex_write(ix, batch_fn, &b, &err) != 0;
	is_int(fails, 0, "100 mindex_write runs of 50 messages of 1 KiB");
	ok(b.runs > 100, "MINDEX_EFULL made mindex_write run fn again "
	    "(%u runs)", b.runs);
	is_int(count_msgs(ix, f.id, 1024, &good), 5000, "all 5000 present");
	ok(good, "in uid order, every 1 KiB header blob exact");
	is_int(mindex_stats(ix, &st, &err), 0, "stats");
	ok(st.map_size > 64 * KIB, "the map grew to %llu",
	    (unsigned long long)st.map_size);
	ok(st.used > 5000 * KIB && st.used <= st.map_size, "used %llu",
	    (unsigned long long)st.used);
	is_int(st.entries, 5000, "stats counts 5000 messages");
	txn = xbegin(ix, false);
	f = xfolder(txn, "INBOX");
	ok(f.count == 5000 && f.uidnext == 5001 && f.highestmodseq == 5000,
	    "folder counters");
	mindex_abort(&txn);
	mindex_close(&ix);
	grown = st.map_size;

	ix = xopen(dir, 64 * KIB, 0, true);
	st = xstats(ix);
	is_int(st.map_size, grown,
	    "reopened: the larger size in the file wins");
	mindex_close(&ix);
	ix = xopen(dir, grown * 2, 0, true);
	st = xstats(ix);
	is_int(st.map_size, grown * 2, "reopened: a larger map_size wins");
	mindex_close(&ix);
}

/* test_early_growth: small transactions never see MINDEX_EFULL, because
 * begin grows the map while a quarter of it is still free. */
static void
test_early_growth(void)
{
	char dir[PATH_MAX];
	struct batch b = { "INBOX", 1, 1024, 0, -1, 0 };
	struct mindex_stats st;
	struct mindex *ix;
	const char *err;
	unsigned i, fails = 0;

	tpath(dir, sizeof(dir), "early");
	ix = xopen(dir, 64 * KIB, 0, true);
	xcreate(ix, "INBOX");
	for (i = 0; i < 300; i++)
		fails += mindex_write(ix, batch_fn, &b, &err) != 0;
	is_int(fails, 0, "300 transactions of one 1 KiB message");
	st = xstats(ix);
	ok(st.map_size >= 512 * KIB, "the map grew to %llu",
	    (unsigned long long)st.map_size);
	ok(st.used <= st.map_size / 4 * 3 + 16 * KIB,
	    "a quarter of it is kept free (%llu used)",
	    (unsigned long long)st.used);
	is_int(b.runs, 300, "before it was needed: no transaction ran twice");
	mindex_close(&ix);
}

struct big {
	const unsigned char *data;
	size_t len;
	unsigned runs;
};

static int
big_fn(struct mindex_txn *txn, void *ctx, const char **error_r)
{
	struct big *b = ctx;
	struct mindex_folder f;
	struct mindex_msg m;
	int rc;

	(void)error_r;
	b->runs++;
	f = xfolder(txn, "INBOX");
	memset(&m, 0, sizeof(m));
	m.uid = f.uidnext;
	m.headers = b->data;
	m.headers_len = b->len;
	if ((rc = mindex_msg_add(txn, &f, &m)) != 0)
		return rc;
	return mindex_folder_put(txn, "INBOX", &f);
}

static void
test_field_max(void)
{
	char dir[PATH_MAX];
	unsigned char *data = malloc((size_t)MINDEX_FIELD_MAX + 1);
	struct big b = { data, MINDEX_FIELD_MAX, 0 };
	struct mindex_folder f;
	struct mindex_txn *txn;
	struct mindex_msg m;
	struct mindex *ix;
	const char *err;
	size_t i;

	diag("largest field");
	for (i = 0; i <= MINDEX_FIELD_MAX; i++)
		data[i] = (unsigned char)(i % 251);
	tpath(dir, sizeof(dir), "big");
	ix = xopen(dir, 0, 0, true);
	f = xcreate(ix, "INBOX");
	is_int(mindex_write(ix, big_fn, &b, &err), 0,
	    "a header field of MINDEX_FIELD_MAX bytes is stored");
	ok(b.runs > 1, "after growing the map from 1 MiB (%u runs)", b.runs);
	txn = xbegin(ix, false);
	is_int(mindex_msg_get(txn, f.id, 1, &m), 1, "read back");
	is_mem(m.headers, m.headers_len, data, (size_t)MINDEX_FIELD_MAX,
	    "all of it exact");
	mindex_abort(&txn);
	b.len++;
	is_int(mindex_write(ix, big_fn, &b, &err), -1,
	    "MINDEX_FIELD_MAX + 1 bytes refused by mindex_write");
	ok(has(err, "longer than"), "fn's error passed on: %s", err);
	mindex_close(&ix);
	free(data);
}

static void
test_full(void)
{
	char dir[PATH_MAX];
	struct batch b = { "INBOX", 1, 1024, 0, -1, 0 };
	struct mindex_stats st;
	struct mindex_folder f;
	struct mindex_txn *txn;
	struct mindex *ix;
	const char *err = NULL;
	uint64_t bytes, msgs;
	unsigned n;
	int rc = 0;
	bool good;

	diag("max_map_size");
	tpath(dir, sizeof(dir), "full");
	ix = xopen(dir, 64 * KIB, 256 * KIB, true);
	f = xcreate(ix, "INBOX");
	for (n = 0; n < 1000; n++)
		if ((rc = mindex_write(ix, batch_fn, &b, &err)) != 0)
			break;
	is_int(rc, -1, "writing past max_map_size fails after %u messages", n);
	ok(has(err, "index full"), "error: %s", err ? err : "(none)");
	ok(n > 50 && n < 256, "but first the map was used");
	st = xstats(ix);
	is_int(st.map_size, 256 * KIB, "the map stopped at max_map_size");
	is_int(count_msgs(ix, f.id, 1024, &good), n, "the index is readable");
	ok(good, "and intact");
	is_int(mindex_write(ix, batch_fn, &b, &err), -1, "still full");
	txn = xbegin(ix, false);
	mindex_quota_get(txn, &bytes, &msgs);
	is_int(msgs, n, "quota agrees");
	mindex_abort(&txn);
	mindex_close(&ix);
	ix = xopen(dir, 64 * KIB, 256 * KIB, true);
	is_int(count_msgs(ix, f.id, 1024, &good), n, "reopened: all there");
	mindex_close(&ix);
	ix = xopen(dir, 64 * KIB, 1024 * KIB, true);
	is_int(mindex_write(ix, batch_fn, &b, &err), 0,
	    "a larger max_map_size makes room again");
	is_int(count_msgs(ix, f.id, 1024, &good), n + 1, "one more");
	mindex_close(&ix);
}

/* fill_txn: add 1 KiB messages in one transaction until a call fails. */
static int
fill_txn(struct mindex_txn *txn, struct mindex_folder *f)
{
	struct mindex_msg m;
	struct msgbuf mb;
	int i, rc = 0;

	for (i = 0; i < 1000 && rc == 0; i++) {
		fill_msg(&m, &mb, f->uidnext, 1024);
		rc = mindex_msg_add(txn, f, &m);
	}
	return rc;
}

static void
test_efull(void)
{
	char dir[PATH_MAX];
	struct batch b = { "INBOX", 60, 1024, 0, -1, 0 };
	struct mindex_stats st;
	struct mindex_folder f;
	struct mindex_txn *txn;
	struct mindex *ix;
	const char *err;
	uint64_t map;
	bool good;

	diag("MINDEX_EFULL by hand");
	tpath(dir, sizeof(dir), "efull");
	ix = xopen(dir, 64 * KIB, 0, true);
	xcreate(ix, "INBOX");
	st = xstats(ix);
	map = st.map_size;
	txn = xbegin(ix, true);
	f = xfolder(txn, "INBOX");
	is_int(fill_txn(txn, &f), MINDEX_EFULL,
	    "a transaction that outgrows the map gets MINDEX_EFULL");
	is_int(mindex_quota_set(txn, 1, 1), MINDEX_EFULL, "so does every "
	    "later write in it");
	is_int(mindex_loc_put(txn, 1, "k", 1, 1), MINDEX_EFULL, "loc put too");
	mindex_abort(&txn);
	st = xstats(ix);
	is_int(st.map_size, map * 2, "abort doubled the map");
	map = st.map_size;
	txn = xbegin(ix, true);
	f = xfolder(txn, "INBOX");
	is_int(fill_txn(txn, &f), MINDEX_EFULL, "full again");
	is_int(mindex_commit(&txn, &err), MINDEX_EFULL,
	    "commit of a full transaction: MINDEX_EFULL");
	ok(txn == NULL, "and the transaction is over");
	st = xstats(ix);
	is_int(st.map_size, map * 2, "the map doubled again");
	is_int(count_msgs(ix, 1, 1024, &good), 0, "nothing was written");
	is_int(mindex_write(ix, batch_fn, &b, &err), 0,
	    "mindex_write gets it done");
	is_int(count_msgs(ix, 1, 1024, &good), 60, "60 messages");
	mindex_close(&ix);
}

/* Processes. */

static int
child_writer(const char *dir, int tag, int gate)
{
	struct mindex_options o = { 64 * KIB, 0, false };
	struct batch b = { "INBOX", 1, 64, 0, tag, 0 };
	struct mindex *ix;
	const char *err;
	unsigned i;
	char c;

	if (mindex_open(dir, &o, &ix, &err) < 0) {
		fprintf(stderr, "child %d: %s\n", tag, err);
		return 1;
	}
	if (read(gate, &c, 1) < 0)
		return 1;
	for (i = 0; i < 500; i++) {
		b.seq = i;
		if (mindex_write(ix, batch_fn, &b, &err) != 0) {
			fprintf(stderr, "child %d: %s\n", tag, err);
			return 1;
		}
	}
	mindex_close(&ix);
	return 0;
}

struct tally {
	bool seen[2][500];
	unsigned count;
	uint32_t last;
	bool ok;
};

static int
tally_cb(const struct mindex_msg *m, void *ctx)
{
	struct tally *t = ctx;
	int tag;
	unsigned seq;

	if (m->uid != t->last + 1 ||
	    sscanf(m->location, "child%d/%u", &tag, &seq) != 2 ||
	    tag < 0 || tag > 1 || seq >= 500 || t->seen[tag][seq])
		t->ok = false;
	else
		t->seen[tag][seq] = true;
	t->last = m->uid;
	t->count++;
	return 0;
}

static bool
child_ok(pid_t pid)
{
	int status;

	return waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0;
}

static void
test_concurrent(void)
{
	char dir[PATH_MAX];
	struct tally *t = calloc(1, sizeof(*t));
	struct mindex_folder f;
	struct mindex_txn *txn;
	struct mindex *ix;
	int gate[2], c;
	pid_t pid[2];

	diag("two writing processes");
	tpath(dir, sizeof(dir), "conc");
	ix = xopen(dir, 64 * KIB, 0, false);
	xcreate(ix, "INBOX");
	mindex_close(&ix);
	if (pipe(gate) < 0)
		bail("pipe");
	fflush(stdout);
	for (c = 0; c < 2; c++) {
		if ((pid[c] = fork()) < 0)
			bail("fork");
		if (pid[c] == 0) {
			close(gate[1]);
			_exit(child_writer(dir, c, gate[0]));
		}
	}
	close(gate[0]);
	close(gate[1]);
	ok(child_ok(pid[0]) & child_ok(pid[1]),
	    "both writers added 500 messages");
	ix = xopen(dir, 0, 0, false);
	txn = xbegin(ix, false);
	f = xfolder(txn, "INBOX");
	ok(f.count == 1000 && f.uidnext == 1001 && f.highestmodseq == 1000,
	    "1000 messages, uidnext 1001 (count %u)", f.count);
	t->ok = true;
	is_int(mindex_msg_iter(txn, f.id, 0, tally_cb, t), 0, "iterate");
	ok(t->ok && t->count == 1000, "uids 1..1000, each child's 500 once");
	mindex_abort(&txn);
	mindex_close(&ix);
	free(t);
}

/* Two handles on one directory in one process (two POP3 or IMAP sessions
 * of one user in a loftd mail process) share the environment: both read
 * and write, at once too, and closing one leaves the other working. */
static void
test_shared(void)
{
	char dir[PATH_MAX];
	struct mindex *a, *b;
	struct mindex_txn *ta, *tb;
	struct mindex_folder f;
	const char *err;

	diag("two handles on one index in one process");
	tpath(dir, sizeof(dir), "shared");
	a = xopen(dir, 0, 0, true);
	b = xopen(dir, 0, 0, true);
	ta = xbegin(a, false);
	tb = xbegin(b, false);
	ok(ta != NULL && tb != NULL, "both read at the same time");
	mindex_abort(&ta);
	mindex_abort(&tb);
	tb = xbegin(b, true);
	is_int(mindex_folder_create(tb, "INBOX", 7, &f), 0,
	    "write through the second handle");
	is_int(mindex_commit(&tb, &err), 0, "commit");
	mindex_close(&a);
	ta = NULL;
	tb = xbegin(b, false);
	is_int(mindex_folder_get(tb, "INBOX", &f), 1,
	    "the second handle still reads after the first closed");
	is_int(f.uidvalidity, 7, "and sees the folder");
	mindex_abort(&tb);
	tb = xbegin(b, true);
	is_int(mindex_folder_delete(tb, "INBOX"), 0, "and writes");
	is_int(mindex_commit(&tb, &err), 0, "commit after the first closed");
	mindex_close(&b);
	a = xopen(dir, 0, 0, true);
	ta = xbegin(a, false);
	is_int(mindex_folder_get(ta, "INBOX", &f), 0,
	    "reopened after both closed: the delete is there");
	mindex_abort(&ta);
	mindex_close(&a);
}

static void
test_readers(void)
{
	char dir[PATH_MAX], c;
	int hold[2], ready[2];
	struct mindex_stats st;
	struct mindex_txn *txn;
	struct mindex *ix;
	const char *err;
	pid_t a, b;

	diag("stale reader slots");
	tpath(dir, sizeof(dir), "readers");
	ix = xopen(dir, 0, 0, true);
	mindex_close(&ix);
	if (pipe(hold) < 0 || pipe(ready) < 0)
		bail("pipe");
	fflush(stdout);
	if ((a = fork()) == 0) {
		close(hold[1]);
		ix = xopen(dir, 0, 0, true);
		txn = xbegin(ix, false);
		if (write(ready[1], "a", 1) != 1 || read(hold[0], &c, 1) < 0)
			_exit(1);
		mindex_abort(&txn);
		mindex_close(&ix);
		_exit(0);
	}
	if ((b = fork()) == 0) {
		ix = xopen(dir, 0, 0, true);
		txn = xbegin(ix, false);
		/* dies holding a read transaction */
		_exit(txn != NULL && write(ready[1], "b", 1) == 1 ? 0 : 1);
	}
	close(hold[0]);
	close(ready[1]);
	ok(read(ready[0], &c, 1) == 1 && read(ready[0], &c, 1) == 1,
	    "two readers started");
	ok(child_ok(b), "one of them died without closing");
	ix = xopen(dir, 0, 0, true);
	is_int(mindex_stats(ix, &st, &err), 0, "stats");
	/* Slots belong to read transactions (MDB_NOTLS): the live reader
	 * holds one, the dead one's is cleared, we hold none between
	 * transactions. */
	is_int(st.readers, 1, "open cleared the dead reader's slot");
	close(hold[1]);
	ok(child_ok(a), "the other closed and exited");
	st = xstats(ix);
	is_int(st.readers, 0, "the live reader's slot went with its "
	    "transaction");
	mindex_close(&ix);
	close(ready[0]);
}

static void
test_resized(void)
{
	char dir[PATH_MAX];
	struct batch b = { "INBOX", 100, 1024, 0, -1, 0 };
	struct mindex_stats st;
	struct mindex_folder f;
	struct mindex *ix, *cix;
	const char *err;
	pid_t pid;
	bool good;
	int i, rc = 0;

	diag("a map grown by another process");
	tpath(dir, sizeof(dir), "resized");
	ix = xopen(dir, 64 * KIB, 0, true);
	f = xcreate(ix, "INBOX");
	fflush(stdout);
	if ((pid = fork()) == 0) {
		cix = xopen(dir, 64 * KIB, 0, true);
		for (i = 0; i < 20 && rc == 0; i++)
			rc = mindex_write(cix, batch_fn, &b, &err);
		mindex_close(&cix);
		_exit(rc == 0 ? 0 : 1);
	}
	ok(child_ok(pid), "another process added 2000 messages of 1 KiB");
	st = xstats(ix);
	is_int(st.map_size, 64 * KIB, "our map is still 64 KiB");
	is_int(count_msgs(ix, f.id, 1024, &good), 2000,
	    "a read adopts the grown map and sees all");
	ok(good, "intact");
	st = xstats(ix);
	ok(st.map_size > 64 * KIB, "our map is now %llu",
	    (unsigned long long)st.map_size);
	b.n = 1;
	is_int(mindex_write(ix, batch_fn, &b, &err), 0, "and we can write");
	is_int(count_msgs(ix, f.id, 1024, &good), 2001, "2001 messages");
	mindex_close(&ix);
}

/* Compaction. */

static void
compact_fill(const char *dir, struct mindex_msg *m1)
{
	struct batch b = { "Big", 500, 1024, 0, -1, 0 };
	struct mindex_folder f;
	struct mindex_txn *txn;
	struct mindex *ix;
	const char *err;
	uint32_t uid;
	int i, fails = 0;

	ix = xopen(dir, 0, 0, true);
	xcreate(ix, "Big");
	xcreate(ix, "INBOX");
	for (i = 0; i < 6; i++)
		fails += mindex_write(ix, batch_fn, &b, &err) != 0;
	txn = xbegin(ix, true);
	f = xfolder(txn, "INBOX");
	msg1(m1);
	fails += mindex_msg_add(txn, &f, m1) != 0;
	fails += mindex_folder_put(txn, "INBOX", &f) != 0;
	xcommit(&txn);
	txn = xbegin(ix, true);
	f = xfolder(txn, "Big");
	for (uid = 51; uid <= 3000; uid++)
		fails += mindex_msg_expunge(txn, &f, uid) != 0;
	fails += mindex_folder_put(txn, "Big", &f) != 0;
	xcommit(&txn);
	mindex_close(&ix);
	is_int(fails, 0, "3000 messages added, 2950 of them expunged");
}

static void
test_compact(void)
{
	char dir[PATH_MAX], sib[PATH_MAX + 16];
	struct batch b = { "Big", 1, 1024, 0, -1, 0 };
	struct mindex_msg m1, got;
	struct mindex_txn *txn;
	struct mindex *ix;
	struct xlist x;
	struct stat st;
	const char *err;
	uint64_t bytes, msgs;
	off_t before, after;
	bool good;

	diag("compaction");
	tpath(dir, sizeof(dir), "compact");
	compact_fill(dir, &m1);
	before = file_size(dir, "data.mdb");
	is_int(mindex_compact(dir, &err), 0, "compact");
	after = file_size(dir, "data.mdb");
	ok(after > 0 && after < before / 4, "data.mdb shrank from %lld to %lld",
	    (long long)before, (long long)after);
	snprintf(sib, sizeof(sib), "%s.compact", dir);
	ok(stat(sib, &st) < 0 && errno == ENOENT, "the sibling is gone");
	snprintf(sib, sizeof(sib), "%s/data.mdb", dir);
	ok(stat(sib, &st) == 0 && (st.st_mode & 0777) == 0600,
	    "data.mdb is 0600");
	ix = xopen(dir, 0, 0, true);
	is_int(count_msgs(ix, 1, 1024, &good), 50, "the 50 left survived");
	ok(good, "every byte");
	txn = xbegin(ix, false);
	is_int(mindex_msg_get(txn, 2, 1, &got), 1, "INBOX message");
	ok(msg_eq(&got, &m1), "exact");
	mindex_quota_get(txn, &bytes, &msgs);
	ok(msgs == 51 && bytes == 50 * 1000 + 50 * 51 / 2 + 1000, "quota");
	memset(&x, 0, sizeof(x));
	mindex_expunged_iter(txn, 1, 0, xlist_cb, &x);
	is_int(x.count, 2950, "expunge records survived");
	mindex_abort(&txn);
	is_int(mindex_write(ix, batch_fn, &b, &err), 0, "write after compact");
	mindex_close(&ix);
	ix = xopen(dir, 0, 0, true);
	is_int(count_msgs(ix, 1, 1024, &good), 51, "and it stuck");
	mindex_close(&ix);
}

static void
test_compact_busy(void)
{
	char dir[PATH_MAX], c;
	int hold[2], ready[2];
	struct mindex *ix;
	const char *err;
	bool good;
	pid_t pid;

	diag("compaction while in use");
	tpath(dir, sizeof(dir), "compact");
	if (pipe(hold) < 0 || pipe(ready) < 0)
		bail("pipe");
	fflush(stdout);
	if ((pid = fork()) == 0) {
		close(hold[1]);
		ix = xopen(dir, 0, 0, true);
		if (write(ready[1], "r", 1) != 1 || read(hold[0], &c, 1) < 0)
			_exit(1);
		mindex_close(&ix);
		_exit(0);
	}
	close(hold[0]);
	close(ready[1]);
	ok(read(ready[0], &c, 1) == 1, "another process has the index open");
	is_int(mindex_compact(dir, &err), -1, "compact refused");
	ok(has(err, "index in use"), "error: %s", err);
	close(hold[1]);
	close(ready[0]);
	ok(child_ok(pid), "it closed");
	ix = xopen(dir, 0, 0, true);
	is_int(mindex_compact(dir, &err), -1,
	    "refused while this process has it open too");
	is_int(count_msgs(ix, 1, 1024, &good), 51, "the index is untouched");
	mindex_close(&ix);
	is_int(mindex_compact(dir, &err), 0, "compact once nobody has it");
	is_int(mindex_compact(top, &err), -1, "compact of a non-index fails");
}

/* wait_blocked: until /proc/locks shows a process waiting for a lock on
 * inode ino (bounded, so a kernel without the file only loses coverage). */
static void
wait_blocked(unsigned long ino)
{
	char line[256], want[32];
	bool found = false;
	FILE *fp;
	int i;

	snprintf(want, sizeof(want), ":%lu ", ino);
	for (i = 0; i < 2000 && !found; i++) {
		if ((fp = fopen("/proc/locks", "r")) == NULL)
			return;
		while (!found && fgets(line, sizeof(line), fp) != NULL)
			found = strstr(line, "->") != NULL &&
			    strstr(line, want) != NULL;
		fclose(fp);
		if (!found)
			usleep(5000);
	}
}

/* swap_child: what a rebuild does: LOCK_EX on loft.lock, then put a new
 * index directory in place of the old one. */
static int
swap_child(const char *dir, int ready)
{
	char path[PATH_MAX], other[PATH_MAX];
	struct stat st;
	int fd;

	join(path, sizeof(path), dir, "/loft.lock");
	if ((fd = open(path, O_RDWR)) < 0 || flock(fd, LOCK_EX) < 0 ||
	    fstat(fd, &st) < 0 || write(ready, "r", 1) != 1)
		return 1;
	wait_blocked((unsigned long)st.st_ino);
	join(path, sizeof(path), dir, ".old");
	join(other, sizeof(other), dir, ".new");
	if (rename(dir, path) < 0 || rename(other, dir) < 0)
		return 1;
	return 0;
}

static void
test_swap(void)
{
	char dir[PATH_MAX], newdir[PATH_MAX + 8], c;
	struct mindex_folder f;
	struct mindex_txn *txn;
	struct mindex *ix;
	const char *err;
	int ready[2];
	pid_t pid;

	diag("an index directory swapped while open waits");
	tpath(dir, sizeof(dir), "swap");
	snprintf(newdir, sizeof(newdir), "%s.new", dir);
	ix = xopen(dir, 0, 0, true);
	xcreate(ix, "Old");
	mindex_close(&ix);
	ix = xopen(newdir, 0, 0, true);
	xcreate(ix, "New");
	mindex_close(&ix);
	if (pipe(ready) < 0)
		bail("pipe");
	fflush(stdout);
	if ((pid = fork()) == 0)
		_exit(swap_child(dir, ready[1]));
	ok(read(ready[0], &c, 1) == 1, "a rebuild holds LOCK_EX");
	ix = xopen(dir, 0, 0, true);
	ok(child_ok(pid), "it swapped the directories while we waited");
	txn = xbegin(ix, false);
	ok(mindex_folder_get(txn, "New", &f) == 1 &&
	    mindex_folder_get(txn, "Old", &f) == 0, "we opened the new index");
	mindex_abort(&txn);
	is_int(mindex_compact(dir, &err), -1,
	    "and hold the new one's lock: compact refused");
	mindex_close(&ix);
	close(ready[0]);
	close(ready[1]);
}

/* 100,000 records in batches of 1,000: a correctness check. */
static void
test_bulk(void)
{
	char dir[PATH_MAX];
	struct batch b = { "Bulk", 1000, 0, 0, -1, 0 };
	struct batch side = { "A-before", 10, 16, 0, -1, 0 };
	struct mindex_folder f;
	struct mindex_stats st;
	struct mindex_txn *txn;
	struct mindex *ix;
	const char *err;
	struct seq s;
	unsigned i, fails = 0;
	bool good;

	diag("100,000 records");
	tpath(dir, sizeof(dir), "bulk");
	ix = xopen(dir, 0, 0, true);
	xcreate(ix, "A-before");
	f = xcreate(ix, "Bulk");
	xcreate(ix, "Z-after");
	fails += mindex_write(ix, batch_fn, &side, &err) != 0;
	side.folder = "Z-after";
	fails += mindex_write(ix, batch_fn, &side, &err) != 0;
	for (i = 0; i < 100; i++)
		fails += mindex_write(ix, batch_fn, &b, &err) != 0;
	is_int(fails, 0, "100 transactions of 1,000 messages");
	txn = xbegin(ix, false);
	seq_init(&s, 0);
	is_int(mindex_msg_iter(txn, f.id, 0, seq_cb, &s), 0, "iterate");
	ok(s.count == 100000 && s.ordered && s.uids[0] == 1 &&
	    s.last == 100000, "all 100,000 in uid order (%u)", s.count);
	ok(s.content_ok, "each record right");
	mindex_abort(&txn);
	st = xstats(ix);
	is_int(st.entries, 100020, "stats entries");
	txn = xbegin(ix, true);
	is_int(mindex_folder_delete(txn, "Bulk"), 0, "delete the big folder");
	xcommit(&txn);
	st = xstats(ix);
	is_int(st.entries, 20, "its messages are gone");
	ok(count_msgs(ix, f.id - 1, 16, &good) == 10 && good &&
	    count_msgs(ix, f.id + 1, 16, &good) == 10 && good,
	    "its neighbours' messages are intact");
	mindex_close(&ix);
}

/* cleanup: also after bail(), but never from a forked child. */
static void
cleanup(void)
{
	if (getpid() == top_owner && top[0] != '\0')
		rm_tree(top);
}

int
main(void)
{
	char tmpl[] = "/tmp/mindex-t.XXXXXX";
	struct stat st;

	if (mkdtemp(tmpl) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	strlcpy(top, tmpl, sizeof(top));
	top_owner = getpid();
	atexit(cleanup);
	test_folders();
	test_messages();
	test_locs_quota_txn();
	test_model();
	test_corrupt();
	test_version();
	test_state();
	test_growth();
	test_early_growth();
	test_field_max();
	test_full();
	test_efull();
	test_concurrent();
	test_shared();
	test_readers();
	test_resized();
	test_compact();
	test_compact_busy();
	test_swap();
	test_bulk();
	rm_tree(top);
	ok(stat(top, &st) < 0, "temporary directory removed");
	return done_testing();
}
