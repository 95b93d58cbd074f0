/*
 * Unit tests for the mailbox operations of lib/store (store_folder.c,
 * store_flags.c, store_expunge.c, store_append.c, store_read.c), each
 * run against a real temporary Maildir++ tree and a real mbox tree:
 * every refused name (limits at N and N+1), LIST attributes, CREATE,
 * DELETE and RENAME (INBOX too) with UIDVALIDITY and UIDs kept, flags
 * with MODSEQ and UNCHANGEDSINCE, expunge with its QRESYNC records,
 * append and copy/move with their UID mapping, reading byte by byte and
 * with seeks, and deliveries from another process during expunges.
 * Keywords: set, cleared, replaced, with their limits (names of 100 and
 * 101 bytes, 64 and 65 on a message, 26 and 27 in a Maildir folder)
 * refused whole; carried by APPEND, COPY and MOVE, kept by EXPUNGE, a
 * new store and a rebuild; Maildir letters and dovecot-keywords on disk,
 * and keywords Dovecot or mutt set read back.
 *
 * Run with "deliver LOCATION HOME FOLDER COUNT PREFIX" it is that other
 * process: a fresh exec, so its LMDB environment is its own.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "compat/compat.h"
#include "fsutil.h"
#include "mbox.h"
#include "store.h"
#include "user.h"
#include "xmalloc.h"
#include "tap.h"

#define T_MAX 128

static char top[256];	/* the temporary directory */
static struct user users[2];	/* [0] Maildir, [1] mbox */
static int fmt;			/* which of them the tests use now */
static const char *fmt_name[2] = { "maildir", "mbox" };

static const char m1[] = "Subject: one\n\nhello\n";
static const char m2[] = "Subject: two\n\nFrom the middle\nx\n";
static const char m3[] = "Subject: three\n\n>From quoted\n>>From twice\nend\n";
static const char m4[] = "Subject: four\r\n\r\nFrom crlf\r\n>From\r\nlast\r\n";

/*
 * Helpers.
 */

static struct store *
t_store_as(const struct user *u)
{
	struct store *st;
	const char *err;

	if (store_open(u, &st, &err) < 0)
		bail("store_open: %s", err);
	return st;
}

static struct store *
t_store(void)
{
	return t_store_as(&users[fmt]);
}

static void
t_user_init(struct user *u, const char *name, const char *home,
    const char *location)
{
	memset(u, 0, sizeof(*u));
	u->name = xstrdup(name);
	u->pwhash = xstrdup("");
	u->uid = getuid();
	u->gid = getgid();
	u->home = xstrdup(home);
	u->mail_location = xstrdup(location);
	u->fields = xstrdup("");
}

static void
t_user_free(struct user *u)
{
	free(u->name);
	free(u->pwhash);
	free(u->home);
	free(u->mail_location);
	free(u->fields);
}

/* A fresh, empty mail tree for both users. */
static void
t_reset(void)
{
	char cmd[PATH_MAX + 64];

	snprintf(cmd, sizeof(cmd), "rm -rf %s/md %s/mb && mkdir %s/md %s/mb",
	    top, top, top, top);
	if (system(cmd) != 0)
		bail("cannot reset");
}

static uint32_t
t_deliver(struct store *st, const char *folder, const char *msg)
{
	struct store_delivery d = { folder, "bob@example.net", 1700000000,
	    (const unsigned char *)msg, strlen(msg) };
	struct store_delivered r;
	const char *err;

	if (store_deliver(st, &d, &r, &err) != STORE_OK)
		bail("store_deliver: %s", err);
	return r.uid;
}

static uint32_t
t_append(struct store *st, const char *folder, const char *msg,
    uint32_t flags, time_t date)
{
	struct store_append a = { folder, (const unsigned char *)msg,
	    strlen(msg), flags, date, NULL, 0 };
	struct store_appended r;
	const char *err;

	if (store_append(st, &a, &r, &err) != STORE_OP_OK)
		bail("store_append to %s: %s", folder, err);
	return r.uid;
}

/* What the index says about a folder. */
struct t_idx {
	bool exists;
	uint32_t uidvalidity, uidnext, count, unseen, deleted;
	uint64_t hms;
	size_t n;
	uint32_t uid[T_MAX], flags[T_MAX];
	uint64_t modseq[T_MAX];
	int64_t idate[T_MAX];
	char loc[T_MAX][160];
	size_t nexp;
	uint32_t exp_uid[T_MAX];
	uint64_t exp_modseq[T_MAX];
};

static int
t_idx_cb(const struct mindex_msg *m, void *ctx)
{
	struct t_idx *x = ctx;

	if (x->n < T_MAX) {
		x->uid[x->n] = m->uid;
		x->flags[x->n] = m->flags;
		x->modseq[x->n] = m->modseq;
		x->idate[x->n] = m->internal_date;
		snprintf(x->loc[x->n], sizeof(x->loc[0]), "%s", m->location);
		x->n++;
	}
	return 0;
}

static int
t_exp_cb(uint32_t uid, uint64_t modseq, void *ctx)
{
	struct t_idx *x = ctx;

	if (x->nexp < T_MAX) {
		x->exp_uid[x->nexp] = uid;
		x->exp_modseq[x->nexp++] = modseq;
	}
	return 0;
}

static void
t_index(struct store *st, const char *folder, struct t_idx *x)
{
	struct mindex_txn *txn;
	struct mindex_folder f;
	const char *err;

	memset(x, 0, sizeof(*x));
	if (mindex_begin(store_index(st), false, &txn, &err) < 0)
		bail("mindex_begin: %s", err);
	if (mindex_folder_get(txn, folder, &f) == 1) {
		x->exists = true;
		x->uidvalidity = f.uidvalidity;
		x->uidnext = f.uidnext;
		x->count = f.count;
		x->unseen = f.unseen;
		x->deleted = f.deleted;
		x->hms = f.highestmodseq;
		mindex_msg_iter(txn, f.id, 1, t_idx_cb, x);
		mindex_expunged_iter(txn, f.id, 1, t_exp_cb, x);
	}
	mindex_abort(&txn);
}

static ssize_t
t_find(const struct t_idx *x, uint32_t uid)
{
	for (size_t i = 0; i < x->n; i++)
		if (x->uid[i] == uid)
			return (ssize_t)i;
	return -1;
}

/* Read a message in chunks of chunk bytes; returns the open result. */
static enum store_op
t_read(struct store *st, const char *folder, uint32_t uid, size_t chunk,
    struct buf *out)
{
	unsigned char b[4096];
	struct store_read *r;
	enum store_op op;
	const char *err;
	size_t n;
	int ret;

	buf_truncate(out, 0);
	if ((op = store_read_open(st, folder, uid, &r, &err)) != STORE_OP_OK)
		return op;
	while ((ret = store_read_next(r, b, chunk, &n, &err)) == 1)
		buf_append(out, b, n);
	if (ret < 0)
		diag("store_read_next: %s", err);
	store_read_close(&r);
	return ret < 0 ? STORE_OP_TEMPFAIL : STORE_OP_OK;
}

static bool
t_read_is(struct store *st, const char *folder, uint32_t uid,
    const char *want)
{
	struct buf b;
	bool same;

	buf_init(&b, 1 << 20);
	same = t_read(st, folder, uid, sizeof(b), &b) == STORE_OP_OK &&
	    b.len == strlen(want) && memcmp(b.data, want, b.len) == 0;
	buf_free(&b);
	return same;
}

static void
t_file(const char *path, struct buf *b)
{
	struct fsutil_map m;

	buf_truncate(b, 0);
	if (fsutil_map_path(path, &m) < 0)
		return;
	buf_append(b, m.data, m.len);
	fsutil_unmap(&m);
}

/* Is there something at rel below the temporary directory? */
static bool
t_exists(const char *rel)
{
	char path[PATH_MAX];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/%s", top, rel);
	return lstat(path, &sb) == 0;
}

/* The folder's directory (Maildir) or file (mbox). */
static void
t_path(struct store *st, const char *folder, char *out, size_t size)
{
	const char *err;

	if (store_folder_path(st, folder, out, size, &err) < 0)
		bail("store_folder_path %s: %s", folder, err);
}

/* Count the files in DIR/new and DIR/cur; the one with uid (",U=N") in
 * its name into name_r. */
static int
t_md_files(const char *dir, uint32_t uid, char *name_r, size_t size)
{
	static const char *subs[2] = { "new", "cur" };
	char path[PATH_MAX + 16], tag[32];
	struct dirent *de;
	int count = 0;
	DIR *d;

	snprintf(tag, sizeof(tag), ",U=%u", uid);
	if (name_r != NULL)
		name_r[0] = '\0';
	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, subs[i]);
		if ((d = opendir(path)) == NULL)
			continue;
		while ((de = readdir(d)) != NULL) {
			const char *u;

			if (de->d_name[0] == '.')
				continue;
			count++;
			u = strstr(de->d_name, tag);
			if (name_r != NULL && u != NULL &&
			    (u[strlen(tag)] == ':' || u[strlen(tag)] == ',' ||
			    u[strlen(tag)] == '\0'))
				snprintf(name_r, size, "%s/%s", subs[i],
				    de->d_name);
		}
		closedir(d);
	}
	return count;
}

struct t_froms {
	uint64_t off[T_MAX];
	size_t n;
};

static int
t_scan_cb(const struct mbox_entry *e, void *ctx)
{
	struct t_froms *f = ctx;

	if (f->n < T_MAX)
		f->off[f->n++] = e->from_offset;
	return 0;
}

/* The mbox file without the messages whose bit is set in drop (bit k:
 * message k in file order), computed apart from the code under test. */
static void
t_mbox_without(const struct buf *file, unsigned drop, struct buf *out)
{
	struct t_froms f = { { 0 }, 0 };

	buf_truncate(out, 0);
	if (file->len > 0 && mbox_scan(file->data, file->len, 0, t_scan_cb,
	    &f) < 0)
		bail("not an mbox");
	for (size_t k = 0; k < f.n; k++) {
		uint64_t end = k + 1 < f.n ? f.off[k + 1] : file->len;

		if ((drop & (1u << k)) == 0)
			buf_append(out, file->data + f.off[k],
			    (size_t)(end - f.off[k]));
	}
}

/* A UID set of single UIDs. */
struct t_set {
	struct store_uid_range r[T_MAX];
	struct store_uidset s;
};

static const struct store_uidset *
t_uids(struct t_set *t, size_t n, const uint32_t *uids)
{
	for (size_t i = 0; i < n; i++)
		t->r[i].first = t->r[i].last = uids[i];
	t->s.ranges = t->r;
	t->s.count = n;
	return &t->s;
}

static enum store_op
t_flags(struct store *st, const char *folder, const struct store_uidset *set,
    enum store_flags_how how, uint32_t flags, uint64_t unchangedsince,
    struct store_flag_result **res, size_t *n)
{
	struct store_flags_change c = { set, how, flags, unchangedsince };
	const char *err;
	enum store_op op;

	op = store_flags_change(st, folder, &c, res, n, &err);
	if (op != STORE_OP_OK)
		diag("store_flags_change: %s", err);
	return op;
}

static void
t_flag_uids(struct store *st, const char *folder, uint32_t flags,
    size_t n, const uint32_t *uids)
{
	struct store_flag_result *res;
	struct t_set ts;
	size_t k;

	if (t_flags(st, folder, t_uids(&ts, n, uids), STORE_FLAGS_ADD, flags,
	    STORE_MODSEQ_NONE, &res, &k) != STORE_OP_OK)
		bail("cannot set flags");
	free(res);
}

/*
 * Names.
 */

/* Every operation refuses a bad name, in every position. */
static void
t_bad_everywhere(struct store *st, const char *bad)
{
	struct store_uid_range r = { 1, 1 };
	struct store_uidset set = { &r, 1 };
	struct store_flags_change fc = { &set, STORE_FLAGS_ADD, MINDEX_F_SEEN,
	    STORE_MODSEQ_NONE };
	struct store_append a = { bad, (const unsigned char *)m1, strlen(m1),
	    0, 0, NULL, 0 };
	struct store_flag_result *res;
	struct store_appended ar;
	struct store_copied c;
	struct store_read *rd;
	uint32_t *uids;
	size_t n;
	const char *err;
	int refused = 0;

	t_deliver(st, "INBOX", m1);
	refused += store_folder_exists(st, bad, &err) == -1;
	refused += store_folder_delete(st, bad, &err) == STORE_OP_BADNAME;
	refused += store_folder_rename(st, bad, "X", &err) == STORE_OP_BADNAME;
	refused += store_folder_rename(st, "INBOX", bad, &err) ==
	    STORE_OP_BADNAME;
	refused += store_flags_uids(st, bad, NULL, 0, &uids, &n, &err) ==
	    STORE_OP_BADNAME;
	refused += store_flags_change(st, bad, &fc, &res, &n, &err) ==
	    STORE_OP_BADNAME;
	refused += store_expunge(st, bad, NULL, false, &uids, &n, &err) ==
	    STORE_OP_BADNAME;
	refused += store_append(st, &a, &ar, &err) == STORE_OP_BADNAME;
	refused += store_append_copy(st, bad, &set, "INBOX", false, &c,
	    &err) == STORE_OP_BADNAME;
	refused += store_append_copy(st, "INBOX", &set, bad, true, &c,
	    &err) == STORE_OP_BADNAME;
	refused += store_read_open(st, bad, 1, &rd, &err) == STORE_OP_BADNAME;
	is_int(refused, 11, "%s: \"%s\" refused by all 11 operations",
	    fmt_name[fmt], bad);
}

/* A refused name and the reason given, for Maildir++ and for mbox. */
struct t_bad {
	const char *name;
	const char *why[2];
};

static void
test_names(void)
{
	static const struct t_bad bad[] = {
		{ "", { "empty name", "empty name" } },
		{ "/", { "starts with '/'", "starts with '/'" } },
		{ "/a", { "starts with '/'", "starts with '/'" } },
		{ "a/", { "ends with '/'", "ends with '/'" } },
		{ "a//b", { "empty part", "empty part" } },
		{ ".", { "'.' and '..'", "'.' and '..'" } },
		{ "..", { "'.' and '..'", "'.' and '..'" } },
		{ "a/./b", { "'.' and '..'", "'.' and '..'" } },
		{ "a/../b", { "'.' and '..'", "'.' and '..'" } },
		{ "../x", { "'.' and '..'", "'.' and '..'" } },
		{ "a%b", { "wildcards", "wildcards" } },
		{ "a*", { "wildcards", "wildcards" } },
		{ "a\x01" "b", { "control", "control" } },
		{ "a\tb", { "control", "control" } },
		{ "a\x7f", { "control", "control" } },
		{ "a\xc2\x85", { "control", "control" } },
		{ "\xff", { "UTF-8", "UTF-8" } },
		{ "a\xc3", { "UTF-8", "UTF-8" } },
		{ "\xc0\xaf", { "UTF-8", "UTF-8" } },
		{ "\xed\xa0\x80", { "UTF-8", "UTF-8" } },
		{ "a.b", { "separator", "not allowed" } },
		{ "x.lock", { "separator", "not allowed" } },
		{ ".a", { "separator", "hidden file" } },
		{ "a/.b", { "separator", "hidden file" } },
	};
	char name[600], out[STORE_FOLDER_NAME_MAX + 1];
	struct store *st = t_store();
	const char *err;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		is_int(store_folder_name(st, bad[i].name, out, sizeof(out),
		    &err), STORE_OP_BADNAME, "%s: name #%zu refused",
		    fmt_name[fmt], i);
		ok(err != NULL && strstr(err, "invalid folder name") != NULL &&
		    strstr(err, bad[i].why[fmt]) != NULL,
		    "%s: ... because %s (%s)", fmt_name[fmt], bad[i].why[fmt],
		    err != NULL ? err : "no reason");
		is_int(store_folder_create(st, bad[i].name, &err),
		    STORE_OP_BADNAME, "%s: create of name #%zu refused",
		    fmt_name[fmt], i);
	}
	t_bad_everywhere(st, "a%b");
	is_int(store_folder_name(st, "inbox/Sub", out, sizeof(out), &err),
	    STORE_OP_OK, "%s: inbox/Sub accepted", fmt_name[fmt]);
	is_string(out, "INBOX/Sub", "%s: INBOX spelt one way", fmt_name[fmt]);
	store_folder_name(st, "iNbOx", out, sizeof(out), &err);
	is_string(out, "INBOX", "%s: iNbOx is INBOX", fmt_name[fmt]);
	store_folder_name(st, "Entw\xc3\xbcrfe", out, sizeof(out), &err);
	is_string(out, "Entw\xc3\xbcrfe", "%s: UTF-8 kept", fmt_name[fmt]);
	/* 255 bytes in total (N) against 256 (N+1): CJK takes 3 bytes in
	 * UTF-8 and less in modified UTF-7, so the disk limit is far. */
	name[0] = '\0';
	for (int i = 0; i < 85; i++)
		strlcat(name, "\xe6\x97\xa5", sizeof(name));
	is_int(store_folder_name(st, name, out, sizeof(out), &err),
	    STORE_OP_OK, "%s: 255 bytes accepted", fmt_name[fmt]);
	strlcat(name, "x", sizeof(name));
	is_int(store_folder_name(st, name, out, sizeof(out), &err),
	    STORE_OP_BADNAME, "%s: 256 bytes refused", fmt_name[fmt]);
	ok(strstr(err, "on disk") == NULL &&
	    strstr(err, "longer than 255 bytes") != NULL, "%s: says why (%s)",
	    fmt_name[fmt], err);
	/* On disk ".NAME" is one byte more than an ASCII name. */
	memset(name, 'x', sizeof(name));
	memcpy(name + 100, "/", 1);
	name[254] = '\0';
	is_int(store_folder_name(st, name, out, sizeof(out), &err),
	    STORE_OP_OK, "%s: 254 bytes, 255 on disk (N)", fmt_name[fmt]);
	name[254] = 'x';
	name[255] = '\0';
	is_int(store_folder_name(st, name, out, sizeof(out), &err),
	    STORE_OP_BADNAME, "%s: 255 bytes, 256 on disk refused (N+1)",
	    fmt_name[fmt]);
	ok(strstr(err, "on disk") != NULL, "%s: ... for its length on disk "
	    "(%s)", fmt_name[fmt], err);
	store_close(&st);
}

/* A symbolic link inside the root that leads out of it. */
static void
test_names_outside(void)
{
	char link[PATH_MAX], out[STORE_FOLDER_NAME_MAX + 1], dir[PATH_MAX];
	struct store *st = t_store();
	const char *err;

	snprintf(dir, sizeof(dir), "%s/outside", top);
	mkdir(dir, 0700);
	snprintf(link, sizeof(link), fmt == 0 ? "%s/md/Maildir/.evil" :
	    "%s/mb/mail/evil", top);
	if (symlink(dir, link) < 0)
		bail("symlink: %s", strerror(errno));
	is_int(store_folder_name(st, fmt == 0 ? "evil" : "evil/x", out,
	    sizeof(out), &err), STORE_OP_BADNAME,
	    "%s: a name through a link out of the root is refused",
	    fmt_name[fmt]);
	ok(strstr(err, "outside the mail root") != NULL, "%s: says why (%s)",
	    fmt_name[fmt], err);
	is_int(store_folder_create(st, fmt == 0 ? "evil" : "evil/x", &err),
	    STORE_OP_BADNAME, "%s: and cannot be created", fmt_name[fmt]);
	ok(!t_exists(fmt == 0 ? "outside/new" : "outside/x"),
	    "%s: nothing made outside", fmt_name[fmt]);
	unlink(link);
	rmdir(dir);
	store_close(&st);
}

/*
 * LIST, CREATE, DELETE.
 */

struct t_list {
	char names[32][64];
	unsigned attrs[32];
	size_t n;
};

static int
t_list_cb(const char *name, unsigned attrs, void *ctx)
{
	struct t_list *l = ctx;

	if (l->n < 32) {
		snprintf(l->names[l->n], sizeof(l->names[0]), "%s", name);
		l->attrs[l->n++] = attrs;
	}
	return 0;
}

static void
t_list(struct store *st, struct t_list *l)
{
	const char *err;

	memset(l, 0, sizeof(*l));
	if (store_folder_list(st, t_list_cb, l, &err) != STORE_OP_OK)
		bail("store_folder_list: %s", err);
}

/* "INBOX=0 A=2 ..." */
static void
t_list_str(struct store *st, char *out, size_t size)
{
	struct t_list l;
	size_t o = 0;

	t_list(st, &l);
	out[0] = '\0';
	for (size_t i = 0; i < l.n && o < size; i++)
		o += (size_t)snprintf(out + o, size - o, "%s%s=%u",
		    i > 0 ? " " : "", l.names[i], l.attrs[i]);
}

static void
test_create_list(void)
{
	struct store *st = t_store();
	char got[1024], path[PATH_MAX];
	struct t_idx in, ar;
	struct buf b;
	const char *err;

	t_deliver(st, "INBOX", m1);
	is_int(store_folder_create(st, "Archive", &err), STORE_OP_OK,
	    "%s: create Archive", fmt_name[fmt]);
	if (fmt == 0)
		ok(t_exists("md/Maildir/.Archive/cur") &&
		    t_exists("md/Maildir/.Archive/new") &&
		    t_exists("md/Maildir/.Archive/tmp") &&
		    t_exists("md/Maildir/.Archive/maildirfolder"),
		    "maildir: .Archive with cur, new, tmp, maildirfolder");
	else {
		buf_init(&b, 1 << 20);
		snprintf(path, sizeof(path), "%s/mb/mail/Archive", top);
		t_file(path, &b);
		ok(t_exists("mb/mail/Archive") && b.len == 0,
		    "mbox: empty file mail/Archive");
		buf_free(&b);
	}
	t_index(st, "INBOX", &in);
	t_index(st, "Archive", &ar);
	ok(ar.exists && ar.uidvalidity > in.uidvalidity && ar.uidnext == 1,
	    "%s: indexed with a new UIDVALIDITY", fmt_name[fmt]);
	is_int(store_folder_create(st, "Archive", &err), STORE_OP_EXISTS,
	    "%s: create again: exists", fmt_name[fmt]);
	is_int(store_folder_create(st, "inbox", &err), STORE_OP_EXISTS,
	    "%s: create inbox: exists", fmt_name[fmt]);
	is_int(store_folder_create(st, "Archive/2024", &err),
	    fmt == 0 ? STORE_OP_OK : STORE_OP_CANNOT,
	    "%s: a child of Archive: %s", fmt_name[fmt],
	    fmt == 0 ? "made" : "refused below an mbox file");
	is_int(store_folder_create(st, "Lists/loft", &err), STORE_OP_OK,
	    "%s: create Lists/loft", fmt_name[fmt]);
	is_int(store_folder_create(st, "Entw\xc3\xbcrfe", &err), STORE_OP_OK,
	    "%s: create Entwürfe", fmt_name[fmt]);
	ok(fmt == 0 ? t_exists("md/Maildir/.Entw&APw-rfe/cur") :
	    t_exists("mb/mail/Entw&APw-rfe"),
	    "%s: stored in modified UTF-7", fmt_name[fmt]);
	if (fmt == 1)
		is_int(store_folder_create(st, "Lists", &err),
		    STORE_OP_EXISTS, "mbox: a directory name is in use");
	is_int(store_folder_exists(st, "Lists", &err), 0,
	    "%s: a parent holds no messages", fmt_name[fmt]);
	is_int(store_folder_exists(st, "Lists/loft", &err), 1,
	    "%s: its child does", fmt_name[fmt]);
	is_int(store_folder_create(st, "\xc3\x9c" "ber/Sub", &err), STORE_OP_OK,
	    "%s: create Über/Sub", fmt_name[fmt]);
	is_int(store_folder_create(st, "INBOX/kid", &err), STORE_OP_OK,
	    "%s: create INBOX/kid", fmt_name[fmt]);
	t_list_str(st, got, sizeof(got));
	is_string(got, fmt == 0 ?
	    "Archive=2 Archive/2024=0 Entw\xc3\xbcrfe=0 INBOX=2 INBOX/kid=0 "
	    "Lists=3 Lists/loft=0 \xc3\x9c" "ber=3 \xc3\x9c" "ber/Sub=0" :
	    "Archive=4 Entw\xc3\xbcrfe=4 INBOX=2 INBOX/kid=4 Lists=3 "
	    "Lists/loft=4 \xc3\x9c" "ber=3 \xc3\x9c" "ber/Sub=4",
	    "%s: LIST names and attributes", fmt_name[fmt]);
	store_folder_delete(st, "\xc3\x9c" "ber/Sub", &err);
	store_folder_delete(st, "INBOX/kid", &err);
	if (fmt == 1)
		store_folder_delete(st, "\xc3\x9c" "ber", &err);
	store_close(&st);
}

static void
test_delete(void)
{
	struct store *st = t_store();
	struct t_idx x, y;
	char got[1024];
	const char *err;
	uint32_t uv;

	is_int(store_folder_delete(st, "INBOX", &err), STORE_OP_CANNOT,
	    "%s: INBOX cannot be deleted", fmt_name[fmt]);
	is_int(store_folder_delete(st, "inbox", &err), STORE_OP_CANNOT,
	    "%s: in any case", fmt_name[fmt]);
	is_int(store_folder_delete(st, "Nope", &err), STORE_OP_NONEXISTENT,
	    "%s: no such folder", fmt_name[fmt]);
	t_deliver(st, "Lists/loft", m2);
	t_deliver(st, "Lists/loft", m3);
	t_index(st, "Lists/loft", &x);
	uv = x.uidvalidity;
	is_int(store_folder_delete(st, "Lists", &err), STORE_OP_CANNOT,
	    "%s: a parent that only holds folders", fmt_name[fmt]);
	if (fmt == 0) {
		is_int(store_folder_delete(st, "Archive", &err), STORE_OP_OK,
		    "maildir: delete Archive, which has a child");
		ok(!t_exists("md/Maildir/.Archive") &&
		    t_exists("md/Maildir/.Archive.2024/cur"),
		    "maildir: its directory gone, the child's kept");
		t_list_str(st, got, sizeof(got));
		ok(strstr(got, "Archive=3 Archive/2024=0") != NULL,
		    "maildir: Archive is now \\Noselect with children (%s)",
		    got);
		is_int(store_folder_delete(st, "Archive", &err),
		    STORE_OP_CANNOT, "maildir: deleting it again: cannot");
		t_index(st, "Archive", &y);
		ok(!y.exists, "maildir: Archive gone from the index");
	}
	is_int(store_folder_delete(st, "Lists/loft", &err), STORE_OP_OK,
	    "%s: delete Lists/loft with its messages", fmt_name[fmt]);
	t_index(st, "Lists/loft", &y);
	ok(!y.exists, "%s: gone from the index", fmt_name[fmt]);
	ok(fmt == 0 ? !t_exists("md/Maildir/.Lists.loft") :
	    !t_exists("mb/mail/Lists/loft"),
	    "%s: and from disk", fmt_name[fmt]);
	t_list_str(st, got, sizeof(got));
	ok(strstr(got, "Lists/loft") == NULL && strstr(got, "loft-deleted") ==
	    NULL, "%s: no longer listed (%s)", fmt_name[fmt], got);
	if (fmt == 1) {
		ok(strstr(got, "Lists=1") != NULL,
		    "mbox: its directory stays, \\Noselect without children");
		ok(!t_exists("mb/mail/Lists/loft.lock"),
		    "mbox: no dotlock left");
		is_int(store_folder_delete(st, "Lists", &err), STORE_OP_OK,
		    "mbox: delete the empty directory");
		ok(!t_exists("mb/mail/Lists"), "mbox: it is gone");
		is_int(store_folder_delete(st, "Archive", &err), STORE_OP_OK,
		    "mbox: delete Archive");
	} else
		ok(strstr(got, "Lists") == NULL, "maildir: nor is Lists");
	is_int(store_folder_create(st, "Lists/loft", &err), STORE_OP_OK,
	    "%s: create it again", fmt_name[fmt]);
	t_index(st, "Lists/loft", &y);
	ok(y.exists && y.uidvalidity > uv && y.count == 0 && y.uidnext == 1,
	    "%s: a new UIDVALIDITY, no messages", fmt_name[fmt]);
	is_int(t_deliver(st, "Lists/loft", m1), 1, "%s: UIDs start at 1",
	    fmt_name[fmt]);
	if (fmt == 0) {
		is_int(store_folder_create(st, "Archive", &err), STORE_OP_OK,
		    "maildir: a \\Noselect parent can become a folder");
		t_list_str(st, got, sizeof(got));
		ok(strstr(got, "Archive=2 Archive/2024=0") != NULL,
		    "maildir: selectable, with children (%s)", got);
	}
	store_close(&st);
}

/* A delete cut short leaves a trash directory that nobody lists and the
 * next delete removes. */
static void
test_delete_leftover(void)
{
	struct store *st;
	char path[PATH_MAX + 64], got[1024];
	const char *err;

	fmt = 0;
	st = t_store();
	snprintf(path, sizeof(path), "%s/md/Maildir/..loft-deleted.1.1", top);
	if (mkdir(path, 0700) < 0)
		bail("mkdir");
	t_list_str(st, got, sizeof(got));
	ok(strstr(got, "loft-deleted") == NULL, "maildir: trash not listed");
	store_folder_create(st, "Tmp", &err);
	is_int(store_folder_delete(st, "Tmp", &err), STORE_OP_OK,
	    "maildir: delete Tmp");
	ok(access(path, F_OK) < 0, "maildir: the leftover trash is removed");
	store_close(&st);
}

/*
 * RENAME.
 */

static void
test_rename(void)
{
	struct store *st = t_store();
	struct t_idx before, after, gone;
	uint32_t u1, u2, u3, one[1];
	char got[1024];
	const char *err;

	store_folder_create(st, "Work", &err);
	u1 = t_deliver(st, "Work", m1);
	u2 = t_deliver(st, "Work", m2);
	u3 = t_deliver(st, "Work", m3);
	one[0] = u2;
	t_flag_uids(st, "Work", MINDEX_F_FLAGGED | MINDEX_F_SEEN, 1, one);
	t_index(st, "Work", &before);
	is_int(store_folder_rename(st, "Work", "Work/Sub", &err),
	    STORE_OP_CANNOT, "%s: not below itself", fmt_name[fmt]);
	is_int(store_folder_rename(st, "Work", "INBOX", &err),
	    STORE_OP_EXISTS, "%s: not to INBOX", fmt_name[fmt]);
	is_int(store_folder_rename(st, "Work", "Lists/loft", &err),
	    STORE_OP_EXISTS, "%s: not to a folder that exists",
	    fmt_name[fmt]);
	is_int(store_folder_rename(st, "Nope", "Nope2", &err),
	    STORE_OP_NONEXISTENT, "%s: no such folder", fmt_name[fmt]);
	is_int(store_folder_rename(st, "Work", "Done/Work 2024", &err),
	    STORE_OP_OK, "%s: rename Work to Done/Work 2024", fmt_name[fmt]);
	t_index(st, "Done/Work 2024", &after);
	t_index(st, "Work", &gone);
	ok(!gone.exists, "%s: old name gone from the index", fmt_name[fmt]);
	ok(fmt == 0 ? !t_exists("md/Maildir/.Work") &&
	    t_exists("md/Maildir/.Done.Work 2024/cur") :
	    !t_exists("mb/mail/Work") &&
	    t_exists("mb/mail/Done/Work 2024"),
	    "%s: and from disk, new name there", fmt_name[fmt]);
	ok(after.exists && after.uidvalidity == before.uidvalidity &&
	    after.uidnext == before.uidnext, "%s: UIDVALIDITY and UIDNEXT kept",
	    fmt_name[fmt]);
	ok(after.n == 3 && after.uid[0] == u1 && after.uid[1] == u2 &&
	    after.uid[2] == u3, "%s: UIDs kept", fmt_name[fmt]);
	ok(after.n == 3 && after.flags[1] == (MINDEX_F_FLAGGED |
	    MINDEX_F_SEEN) && after.flags[0] == 0, "%s: flags kept",
	    fmt_name[fmt]);
	ok(after.n == 3 && after.modseq[0] > before.hms &&
	    after.hms >= after.modseq[2], "%s: MODSEQs above the old "
	    "HIGHESTMODSEQ %llu", fmt_name[fmt],
	    (unsigned long long)before.hms);
	ok(t_read_is(st, "Done/Work 2024", u3, m3),
	    "%s: messages read back", fmt_name[fmt]);
	is_int(store_sync_all(st, true, &err), 0, "%s: full sync",
	    fmt_name[fmt]);
	t_index(st, "Done/Work 2024", &after);
	t_index(st, "Work", &gone);
	ok(!gone.exists && after.n == 3 && after.uid[2] == u3 &&
	    after.uidvalidity == before.uidvalidity &&
	    after.flags[1] == (MINDEX_F_FLAGGED | MINDEX_F_SEEN),
	    "%s: a full sync agrees", fmt_name[fmt]);
	t_list_str(st, got, sizeof(got));
	ok(strstr(got, "Done=3 Done/Work 2024=") != NULL &&
	    strstr(got, " Work=") == NULL,
	    "%s: listed as Done/Work 2024 (%s)", fmt_name[fmt], got);
	/* A parent that is only a parent (Maildir++: no directory; mbox: a
	 * directory) moves with its children. */
	store_folder_create(st, "Lists2/sub", &err);
	u1 = t_deliver(st, "Lists2/sub", m4);
	t_index(st, "Lists2/sub", &before);
	is_int(store_folder_rename(st, "Lists2", "L3", &err), STORE_OP_OK,
	    "%s: rename a \\Noselect parent", fmt_name[fmt]);
	t_index(st, "L3/sub", &after);
	ok(after.exists && after.n == 1 && after.uid[0] == u1 &&
	    after.uidvalidity == before.uidvalidity &&
	    t_read_is(st, "L3/sub", u1, m4), "%s: its child moved along",
	    fmt_name[fmt]);
	ok(store_folder_exists(st, "Lists2/sub", &err) == 0,
	    "%s: and is not under the old name", fmt_name[fmt]);
	store_close(&st);
}

/* A Maildir++ folder with children: they move along. */
static void
test_rename_children(void)
{
	struct store *st;
	struct t_idx p, c;
	uint32_t uc;
	const char *err;

	fmt = 0;
	st = t_store();
	store_folder_create(st, "P", &err);
	store_folder_create(st, "P/C", &err);
	t_deliver(st, "P", m1);
	uc = t_deliver(st, "P/C", m2);
	t_index(st, "P/C", &c);
	is_int(store_folder_rename(st, "P", "Q", &err), STORE_OP_OK,
	    "maildir: rename P with child P/C to Q");
	ok(t_exists("md/Maildir/.Q/cur") &&
	    t_exists("md/Maildir/.Q.C/cur") &&
	    !t_exists("md/Maildir/.P") &&
	    !t_exists("md/Maildir/.P.C"),
	    "maildir: .Q and .Q.C on disk, .P and .P.C gone");
	t_index(st, "Q/C", &p);
	ok(p.exists && p.uidvalidity == c.uidvalidity && p.n == 1 &&
	    p.uid[0] == uc, "maildir: the child keeps UIDVALIDITY and UIDs");
	ok(t_read_is(st, "Q/C", uc, m2), "maildir: and its message");
	t_index(st, "P/C", &p);
	ok(!p.exists, "maildir: P/C gone from the index");
	store_close(&st);
}

static void
test_rename_inbox(void)
{
	struct store *st = t_store();
	struct t_idx before, in, old;
	char path[PATH_MAX];
	struct stat sb;
	uint32_t u1, u2, u3, one[1];
	const char *err;

	store_folder_create(st, "INBOX/kid", &err);
	u1 = t_deliver(st, "INBOX", m1);
	u2 = t_deliver(st, "INBOX", m2);
	one[0] = u2;
	t_flag_uids(st, "INBOX", MINDEX_F_ANSWERED, 1, one);
	t_index(st, "INBOX", &before);
	is_int(store_folder_rename(st, "INBOX", "Old", &err), STORE_OP_OK,
	    "%s: rename INBOX to Old", fmt_name[fmt]);
	t_index(st, "Old", &old);
	t_index(st, "INBOX", &in);
	ok(old.exists && old.n == before.n && old.uid[0] == before.uid[0] &&
	    old.uid[old.n - 1] == u2 && old.uidvalidity == before.uidvalidity,
	    "%s: Old has INBOX's messages, UIDs and UIDVALIDITY",
	    fmt_name[fmt]);
	ok(old.n >= 2 && old.flags[t_find(&old, u2)] == MINDEX_F_ANSWERED,
	    "%s: with their flags", fmt_name[fmt]);
	ok(in.exists && in.count == 0 && in.n == 0 &&
	    in.uidvalidity == before.uidvalidity,
	    "%s: INBOX is empty and keeps its UIDVALIDITY", fmt_name[fmt]);
	ok(in.nexp >= 2 && in.exp_modseq[in.nexp - 1] > before.hms,
	    "%s: INBOX recorded the messages as expunged", fmt_name[fmt]);
	ok(t_read_is(st, "Old", u1, m1) && t_read_is(st, "Old", u2, m2),
	    "%s: Old's messages read back", fmt_name[fmt]);
	t_path(st, "INBOX", path, sizeof(path));
	if (fmt == 0)
		is_int(t_md_files(path, 0, NULL, 0), 0,
		    "maildir: INBOX's new/ and cur/ are empty");
	else
		ok(stat(path, &sb) == 0 && sb.st_size == 0,
		    "mbox: the INBOX file is empty");
	ok(store_folder_exists(st, "INBOX/kid", &err) == 1,
	    "%s: INBOX's child stays", fmt_name[fmt]);
	u3 = t_deliver(st, "INBOX", m3);
	ok(u3 > u2, "%s: the next delivery to INBOX gets a new UID (%u)",
	    fmt_name[fmt], u3);
	is_int(store_sync_all(st, true, &err), 0, "%s: full sync",
	    fmt_name[fmt]);
	t_index(st, "Old", &old);
	t_index(st, "INBOX", &in);
	ok(old.n == 2 && old.uid[1] == u2 && in.n == 1 && in.uid[0] == u3 &&
	    old.uidvalidity == before.uidvalidity,
	    "%s: a full sync agrees", fmt_name[fmt]);
	ok(in.uidnext > u3 && old.uidnext > u2,
	    "%s: UIDNEXT of both above what was given", fmt_name[fmt]);
	(void)u1;
	store_close(&st);
}

/*
 * Flags.
 */

static void
test_flags(void)
{
	struct store *st = t_store();
	struct store_flag_result *res;
	struct store_uid_range r[3] = { { 3, 2 }, { 1, 1 }, { 2, UINT32_MAX } };
	struct store_uidset all = { r, 3 };
	struct t_idx a, b;
	struct buf before, after;
	char path[PATH_MAX], name[PATH_MAX];
	uint32_t u[3], one[1];
	size_t n;

	buf_init(&before, 1 << 20);
	buf_init(&after, 1 << 20);
	u[0] = t_deliver(st, "INBOX", m1);
	u[1] = t_deliver(st, "INBOX", m2);
	u[2] = t_deliver(st, "INBOX", m3);
	t_path(st, "INBOX", path, sizeof(path));
	t_file(path, &before);
	t_index(st, "INBOX", &a);
	one[0] = u[0];
	{
		struct t_set ts;
		uint32_t two[2] = { u[0], u[1] };

		is_int(t_flags(st, "INBOX", t_uids(&ts, 2, two),
		    STORE_FLAGS_ADD, MINDEX_F_SEEN, STORE_MODSEQ_NONE, &res,
		    &n), STORE_OP_OK, "%s: +FLAGS \\Seen on two",
		    fmt_name[fmt]);
	}
	ok(n == 2 && res[0].uid == u[0] && res[1].uid == u[1] &&
	    res[0].changed && res[1].changed && res[0].flags ==
	    MINDEX_F_SEEN, "%s: both changed", fmt_name[fmt]);
	ok(n == 2 && res[0].modseq > a.hms && res[1].modseq > res[0].modseq,
	    "%s: each with a new, higher MODSEQ", fmt_name[fmt]);
	free(res);
	t_index(st, "INBOX", &b);
	ok(b.flags[0] == MINDEX_F_SEEN && b.flags[2] == 0 &&
	    b.unseen == 1 && b.uidvalidity == a.uidvalidity,
	    "%s: index flags and unseen count; UIDVALIDITY kept",
	    fmt_name[fmt]);
	if (fmt == 0) {
		t_md_files(path, u[0], name, sizeof(name));
		ok(strncmp(name, "cur/", 4) == 0 &&
		    strcmp(name + strlen(name) - 4, ":2,S") == 0 &&
		    strcmp(name, b.loc[0]) == 0,
		    "maildir: file renamed to cur/...:2,S (%s)", name);
	} else {
		t_file(path, &after);
		is_mem(after.data, after.len, before.data, before.len,
		    "mbox: the file is not touched");
	}
	is_int(t_flags(st, "INBOX", &all, STORE_FLAGS_ADD, MINDEX_F_SEEN,
	    STORE_MODSEQ_NONE, &res, &n), STORE_OP_OK,
	    "%s: \\Seen on 3:2,1,2:* (overlapping, backwards)", fmt_name[fmt]);
	ok(n == 3 && !res[0].changed && !res[1].changed && res[2].changed &&
	    res[0].modseq == b.modseq[0], "%s: each UID once; only the third "
	    "changed, the others kept their MODSEQ", fmt_name[fmt]);
	free(res);
	t_index(st, "INBOX", &a);
	is_int(t_flags(st, "INBOX", &all, STORE_FLAGS_REPLACE,
	    MINDEX_F_FLAGGED | MINDEX_F_DRAFT, a.modseq[0] - 1, &res, &n),
	    STORE_OP_OK, "%s: FLAGS with UNCHANGEDSINCE", fmt_name[fmt]);
	ok(n == 3 && res[0].modified && !res[0].changed &&
	    res[0].flags == MINDEX_F_SEEN && res[0].modseq == a.modseq[0] &&
	    res[1].modified && res[2].modified, "%s: MODSEQ > UNCHANGEDSINCE: "
	    "all modified, none changed (N+1)", fmt_name[fmt]);
	free(res);
	is_int(t_flags(st, "INBOX", &all, STORE_FLAGS_REPLACE,
	    MINDEX_F_FLAGGED | MINDEX_F_DRAFT, a.modseq[0], &res, &n),
	    STORE_OP_OK, "%s: again, UNCHANGEDSINCE = MODSEQ of the first",
	    fmt_name[fmt]);
	ok(n == 3 && !res[0].modified && res[0].changed &&
	    res[0].flags == (MINDEX_F_FLAGGED | MINDEX_F_DRAFT) &&
	    res[1].modified && res[2].modified,
	    "%s: MODSEQ = UNCHANGEDSINCE changed, the others not (N)",
	    fmt_name[fmt]);
	free(res);
	is_int(t_flags(st, "INBOX", &all, STORE_FLAGS_REMOVE, MINDEX_F_DRAFT,
	    STORE_MODSEQ_NONE, &res, &n), STORE_OP_OK, "%s: -FLAGS \\Draft",
	    fmt_name[fmt]);
	free(res);
	t_index(st, "INBOX", &b);
	ok(b.flags[0] == MINDEX_F_FLAGGED && b.flags[1] == MINDEX_F_SEEN &&
	    b.flags[2] == MINDEX_F_SEEN && b.unseen == 1,
	    "%s: flags as asked", fmt_name[fmt]);
	ok(b.hms > a.hms && b.hms == (b.modseq[0] > b.modseq[2] ?
	    (b.modseq[0] > b.modseq[1] ? b.modseq[0] : b.modseq[1]) :
	    (b.modseq[2] > b.modseq[1] ? b.modseq[2] : b.modseq[1])),
	    "%s: HIGHESTMODSEQ is the highest MODSEQ", fmt_name[fmt]);
	is_int(t_flags(st, "INBOX", &all, STORE_FLAGS_ADD, 0x100,
	    STORE_MODSEQ_NONE, &res, &n), STORE_OP_CANNOT,
	    "%s: unknown flag bits refused", fmt_name[fmt]);
	is_int(t_flags(st, "Nope", &all, STORE_FLAGS_ADD, MINDEX_F_SEEN,
	    STORE_MODSEQ_NONE, &res, &n), STORE_OP_NONEXISTENT,
	    "%s: no such folder", fmt_name[fmt]);
	(void)one;
	buf_free(&before);
	buf_free(&after);
	store_close(&st);
}

/* Maildir: another program renamed a file (flags, keyword letters)
 * behind the index's back. */
static void
test_flags_renamed(void)
{
	struct store *st;
	struct store_flag_result *res;
	struct t_set ts;
	struct t_idx x;
	char path[PATH_MAX], name[PATH_MAX], from[PATH_MAX * 2 + 8];
	char to[PATH_MAX * 2 + 8];
	uint32_t u, one[1];
	size_t n;

	fmt = 0;
	t_reset();
	st = t_store();
	u = t_deliver(st, "INBOX", m1);
	t_path(st, "INBOX", path, sizeof(path));
	t_md_files(path, u, name, sizeof(name));
	snprintf(from, sizeof(from), "%s/%s", path, name);
	snprintf(to, sizeof(to), "%s/cur/%s:2,Rab", path, name + 4);
	if (rename(from, to) < 0)
		bail("rename");
	one[0] = u;
	is_int(t_flags(st, "INBOX", t_uids(&ts, 1, one), STORE_FLAGS_ADD,
	    MINDEX_F_FLAGGED, STORE_MODSEQ_NONE, &res, &n), STORE_OP_OK,
	    "maildir: +FLAGS on a file mutt renamed");
	ok(n == 1 && res[0].changed &&
	    res[0].flags == (MINDEX_F_FLAGGED | MINDEX_F_ANSWERED),
	    "maildir: found again; mutt's \\Answered kept");
	free(res);
	t_md_files(path, u, name, sizeof(name));
	ok(strcmp(name + strlen(name) - 6, ":2,FRa") != 0 &&
	    strcmp(name + strlen(name) - 7, ":2,FRab") == 0,
	    "maildir: keyword letters kept (%s)", name);
	t_index(st, "INBOX", &x);
	ok(x.n == 1 && strcmp(x.loc[0], name) == 0,
	    "maildir: the index has the new name");
	store_close(&st);
}

/* Set dir's times to a minute ago: a stamp taken now is settled. */
static void
t_age(const char *dir, const char *sub)
{
	char path[PATH_MAX + 8];
	struct timespec ts[2];

	clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[0].tv_sec -= 60;
	ts[1] = ts[0];
	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if (utimensat(AT_FDCWD, path, ts, 0) < 0)
		bail("utimensat %s", path);
}

static void
t_put_file(const char *dir, const char *rel, const char *msg)
{
	char path[PATH_MAX * 2];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	if ((f = fopen(path, "w")) == NULL || fputs(msg, f) < 0 ||
	    fclose(f) != 0)
		bail("write %s", path);
}

/* A sync whose cur/ is unchanged lists new/ alone: what arrived in new/
 * is adopted, cur/ is taken as its stamp says (a file removed there with
 * the directory's time put back is not seen until a full sync). A file
 * in new/ whose name a cur/ record has sends it to a full listing. */
static void
test_sync_new_only(void)
{
	struct store *st;
	struct t_idx x;
	const char *err;
	char path[PATH_MAX], name[PATH_MAX], from[PATH_MAX * 2 + 8];
	char to[PATH_MAX * 2 + 8], base[PATH_MAX];
	struct stat sb;
	struct timespec keep[2];
	uint32_t u1;

	fmt = 0;
	t_reset();
	st = t_store();
	u1 = t_deliver(st, "INBOX", m1);
	(void)t_deliver(st, "INBOX", m2);
	t_path(st, "INBOX", path, sizeof(path));
	t_md_files(path, u1, name, sizeof(name));
	snprintf(from, sizeof(from), "%s/%s", path, name);
	snprintf(base, sizeof(base), "%s", name + 4);
	snprintf(to, sizeof(to), "%s/cur/%s:2,S", path, base);
	if (rename(from, to) < 0)
		bail("rename");
	t_age(path, "new");
	t_age(path, "cur");
	is_int(store_sync(st, "INBOX", true, NULL, &err), 0,
	    "new only: full sync records settled stamps");
	t_index(st, "INBOX", &x);
	ok(x.n == 2 && strncmp(x.loc[0], "cur/", 4) == 0,
	    "new only: two records, the first in cur/ (%s)", x.loc[0]);

	/* cur/ loses a file behind the index's back, its time put back;
	 * new/ gets one. */
	snprintf(to, sizeof(to), "%s/cur", path);
	if (stat(to, &sb) < 0)
		bail("stat");
	keep[0] = sb.st_atim;
	keep[1] = sb.st_mtim;
	snprintf(from, sizeof(from), "%s/cur/%s:2,S", path, base);
	if (unlink(from) < 0 || utimensat(AT_FDCWD, to, keep, 0) < 0)
		bail("unlink in cur");
	t_put_file(path, "new/1700000100.M1P1.elsewhere", m3);
	is_int(store_sync(st, "INBOX", false, NULL, &err), 0,
	    "new only: sync after a file came into new/");
	t_index(st, "INBOX", &x);
	ok(x.n == 3 && strcmp(x.loc[2], "new/1700000100.M1P1.elsewhere") == 0,
	    "new only: the new file adopted, cur/ not listed (%zu records)",
	    x.n);
	is_int(store_sync(st, "INBOX", true, NULL, &err), 0,
	    "new only: a full sync");
	t_index(st, "INBOX", &x);
	ok(x.n == 2 && x.uid[0] != u1, "new only: the full sync saw cur/ "
	    "lose its file (%zu records)", x.n);

	/* new/ gets a file under the name of a cur/ record. */
	u1 = t_deliver(st, "INBOX", m1);
	t_md_files(path, u1, name, sizeof(name));
	snprintf(from, sizeof(from), "%s/%s", path, name);
	snprintf(base, sizeof(base), "%s", name + 4);
	snprintf(to, sizeof(to), "%s/cur/%s:2,S", path, base);
	if (rename(from, to) < 0)
		bail("rename");
	t_age(path, "new");
	t_age(path, "cur");
	is_int(store_sync(st, "INBOX", true, NULL, &err), 0,
	    "new only: full sync again");
	snprintf(to, sizeof(to), "%s/cur", path);
	if (stat(to, &sb) < 0)
		bail("stat");
	keep[0] = sb.st_atim;
	keep[1] = sb.st_mtim;
	snprintf(from, sizeof(from), "%s/cur/%s:2,S", path, base);
	snprintf(to, sizeof(to), "%s/new/%s", path, base);
	if (link(from, to) < 0 || unlink(from) < 0)
		bail("move back");
	snprintf(to, sizeof(to), "%s/cur", path);
	if (utimensat(AT_FDCWD, to, keep, 0) < 0)
		bail("utimensat");
	is_int(store_sync(st, "INBOX", false, NULL, &err), 0,
	    "new only: sync with a cur/ record's name in new/");
	t_index(st, "INBOX", &x);
	ok(x.n == 3, "new only: no record doubled (%zu)", x.n);
	for (size_t i = 0; i < x.n; i++)
		if (x.uid[i] == u1)
			ok(strncmp(x.loc[i], "new/", 4) == 0,
			    "new only: its record follows it to new/ (%s)",
			    x.loc[i]);
	store_close(&st);
}

/* mbox flags live in the index and survive rewrites, even for a
 * message whose Status: header says otherwise. */
static void
test_flags_mbox_kept(void)
{
	static const char st_msg[] = "Status: RO\nX-Status: A\n"
	    "Subject: status\n\nbody\n";
	struct store *st;
	struct t_idx x;
	uint32_t us, u2, u3, u4, del[1];
	uint32_t *gone;
	size_t n;
	struct t_set ts;
	struct store_flag_result *res;
	const char *err;

	fmt = 1;
	t_reset();
	st = t_store();
	us = t_deliver(st, "INBOX", st_msg);
	u2 = t_deliver(st, "INBOX", m2);
	u3 = t_deliver(st, "INBOX", m3);
	del[0] = us;
	t_flags(st, "INBOX", t_uids(&ts, 1, del), STORE_FLAGS_REPLACE,
	    MINDEX_F_FLAGGED, STORE_MODSEQ_NONE, &res, &n);
	free(res);
	del[0] = u2;
	t_flag_uids(st, "INBOX", MINDEX_F_DELETED, 1, del);
	is_int(store_expunge(st, "INBOX", NULL, false, &gone, &n, &err),
	    STORE_OP_OK, "mbox: expunge a message in the middle");
	free(gone);
	is_int(store_sync(st, "INBOX", false, NULL, &err), 0, "mbox: sync");
	t_index(st, "INBOX", &x);
	ok(x.n == 2 && x.uid[0] == us && x.flags[0] == MINDEX_F_FLAGGED,
	    "mbox: flags from the index kept over Status: RO, X-Status: A");
	ok(t_read_is(st, "INBOX", u3, m3), "mbox: the last one reads back");
	/* Now the last message goes: the file is read again, and a
	 * message without Status: keeps its flags all the same. */
	u4 = t_deliver(st, "INBOX", m4);
	del[0] = u3;
	t_flag_uids(st, "INBOX", MINDEX_F_SEEN, 1, del);
	del[0] = u4;
	t_flag_uids(st, "INBOX", MINDEX_F_DELETED, 1, del);
	is_int(store_expunge(st, "INBOX", NULL, false, &gone, &n, &err),
	    STORE_OP_OK, "mbox: expunge the last message");
	ok(n == 1 && gone[0] == u4, "mbox: it is reported");
	free(gone);
	is_int(store_sync(st, "INBOX", true, NULL, &err), 0,
	    "mbox: forced sync");
	t_index(st, "INBOX", &x);
	ok(x.n == 2 && x.uid[1] == u3 && x.flags[1] == MINDEX_F_SEEN,
	    "mbox: \\Seen of a message without Status: kept");
	store_close(&st);
}

/*
 * Expunge.
 */

static void
test_expunge(void)
{
	struct store *st = t_store();
	struct t_idx a, b, c;
	struct t_set ts;
	struct buf before, after;
	char path[PATH_MAX], vpath[PATH_MAX + 32], line[64];
	uint32_t u[4], del[2], *gone;
	size_t n;
	const char *err;

	buf_init(&before, 1 << 20);
	buf_init(&after, 1 << 20);
	for (int i = 0; i < 4; i++)
		u[i] = t_deliver(st, "INBOX", i == 0 ? m1 : i == 1 ? m2 :
		    i == 2 ? m3 : m4);
	del[0] = u[1];
	del[1] = u[3];
	t_flag_uids(st, "INBOX", MINDEX_F_DELETED, 2, del);
	t_index(st, "INBOX", &a);
	t_path(st, "INBOX", path, sizeof(path));
	t_file(path, &before);
	del[0] = u[0];
	is_int(store_expunge(st, "INBOX", t_uids(&ts, 1, del), false, &gone,
	    &n, &err), STORE_OP_OK, "%s: UID EXPUNGE of a message without "
	    "\\Deleted", fmt_name[fmt]);
	ok(n == 0 && gone == NULL, "%s: expunges nothing", fmt_name[fmt]);
	is_int(store_expunge(st, "INBOX", NULL, false, &gone, &n, &err),
	    STORE_OP_OK, "%s: EXPUNGE", fmt_name[fmt]);
	ok(n == 2 && gone[0] == u[1] && gone[1] == u[3],
	    "%s: the two \\Deleted ones", fmt_name[fmt]);
	free(gone);
	t_index(st, "INBOX", &b);
	ok(b.n == 2 && b.uid[0] == u[0] && b.uid[1] == u[2] &&
	    b.uidvalidity == a.uidvalidity && b.deleted == 0,
	    "%s: the others stay, UIDVALIDITY kept", fmt_name[fmt]);
	ok(b.nexp == 2 && b.exp_uid[0] == u[1] && b.exp_uid[1] == u[3] &&
	    b.exp_modseq[0] > a.hms && b.exp_modseq[1] > b.exp_modseq[0] &&
	    b.hms >= b.exp_modseq[1], "%s: expunges recorded with MODSEQs "
	    "for QRESYNC", fmt_name[fmt]);
	/* Maildir: the records went without a listing of the folder: one
	 * now finds the index as the expunge left it. */
	if (fmt == 0) {
		is_int(store_sync(st, "INBOX", true, NULL, &err), 0,
		    "maildir: a forced sync after it");
		t_index(st, "INBOX", &c);
		ok(c.n == b.n && c.nexp == b.nexp && c.hms == b.hms &&
		    c.uid[0] == b.uid[0] && c.uid[1] == b.uid[1],
		    "maildir: finds nothing more to change");
	}
	if (fmt == 0) {
		is_int(t_md_files(path, 0, NULL, 0), 2,
		    "maildir: two files left");
		snprintf(vpath, sizeof(vpath), "%s/loft-uidvalidity", path);
		t_file(vpath, &after);
		snprintf(line, sizeof(line), "%u %u\n", a.uidvalidity,
		    u[3] + 1);
		is_mem(after.data, after.len, line, strlen(line),
		    "maildir: loft-uidvalidity has UIDNEXT");
	} else {
		struct buf want;

		buf_init(&want, 1 << 20);
		t_file(path, &after);
		t_mbox_without(&before, 1u << 1 | 1u << 3, &want);
		ok(after.len < before.len, "mbox: the file shrank");
		is_mem(after.data, after.len, want.data, want.len,
		    "mbox: it is the old one without messages 2 and 4");
		buf_free(&want);
	}
	ok(t_read_is(st, "INBOX", u[0], m1) && t_read_is(st, "INBOX", u[2],
	    m3), "%s: the others read back", fmt_name[fmt]);
	del[0] = u[0];
	is_int(store_expunge(st, "INBOX", t_uids(&ts, 1, del), true, &gone,
	    &n, &err), STORE_OP_OK, "%s: expunge whatever the flags",
	    fmt_name[fmt]);
	ok(n == 1 && gone[0] == u[0], "%s: gone", fmt_name[fmt]);
	free(gone);
	ok(t_deliver(st, "INBOX", m1) == u[3] + 1,
	    "%s: UIDs are not given again", fmt_name[fmt]);
	is_int(store_expunge(st, "Nope", NULL, false, &gone, &n, &err),
	    STORE_OP_NONEXISTENT, "%s: no such folder", fmt_name[fmt]);
	buf_free(&before);
	buf_free(&after);
	store_close(&st);
}

/* The other process of the concurrency test. */
static int
t_deliver_main(int argc, char **argv)
{
	struct user u;
	struct store *st;
	char msg[128];
	int count, retries = 0;

	if (argc != 7)
		return 2;
	t_user_init(&u, "alice", argv[3], argv[2]);
	count = atoi(argv[5]);
	st = t_store_as(&u);
	for (int i = 0; i < count; i++) {
		struct store_delivery d = { argv[4], "bob@example.net",
		    1700000000, (const unsigned char *)msg, 0 };
		struct store_delivered r;
		enum store_result res;
		const char *err;
		int tries = 0;

		snprintf(msg, sizeof(msg), "Subject: %s-%d\n\nbody %d\n",
		    argv[6], i, i);
		d.len = strlen(msg);
		/* As an MTA does: a temporary failure (an mbox replaced by
		 * an expunge while we waited for its lock) is tried again. */
		while ((res = store_deliver(st, &d, &r, &err)) ==
		    STORE_TEMPFAIL && ++tries < 50)
			;
		if (res != STORE_OK) {
			fprintf(stderr, "deliver: %s\n", err);
			return 1;
		}
		retries += tries;
	}
	if (retries > 0)
		fprintf(stderr, "# %d deliveries were tried again\n", retries);
	store_close(&st);
	t_user_free(&u);
	return 0;
}

static pid_t
t_spawn_deliver(const char *folder, int count, const char *prefix)
{
	char n[16];
	pid_t pid;

	snprintf(n, sizeof(n), "%d", count);
	fflush(stdout);
	if ((pid = fork()) < 0)
		bail("fork");
	if (pid == 0) {
		execl("/proc/self/exe", "store_ops", "deliver",
		    users[fmt].mail_location, users[fmt].home, folder, n,
		    prefix, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void
t_wait(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			bail("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		bail("delivering process failed");
}

/* Deliveries from another process while old messages are expunged one
 * by one: every new message is kept, every old one goes. */
static void
test_expunge_concurrent(void)
{
	enum { OLD = 15, NEW = 40 };
	struct store *st = t_store();
	struct t_idx x;
	struct t_set ts;
	struct buf b;
	char msg[64];
	uint32_t old[OLD], *gone;
	size_t n, expunged = 0;
	int seen_new = 0, seen_old = 0;
	const char *err;
	pid_t pid;

	for (int i = 0; i < OLD; i++) {
		snprintf(msg, sizeof(msg), "Subject: old-%d\n\nold\n", i);
		old[i] = t_deliver(st, "INBOX", msg);
	}
	pid = t_spawn_deliver("INBOX", NEW, "new");
	for (int i = 0; i < OLD; i++) {
		if (store_expunge(st, "INBOX", t_uids(&ts, 1, &old[i]), true,
		    &gone, &n, &err) != STORE_OP_OK)
			diag("expunge: %s", err);
		expunged += n;
		free(gone);
	}
	t_wait(pid);
	is_int(expunged, OLD, "%s: every old message expunged",
	    fmt_name[fmt]);
	is_int(store_sync(st, "INBOX", true, NULL, &err), 0, "%s: sync",
	    fmt_name[fmt]);
	t_index(st, "INBOX", &x);
	buf_init(&b, 1 << 20);
	for (size_t i = 0; i < x.n; i++) {
		if (t_read(st, "INBOX", x.uid[i], 7, &b) != STORE_OP_OK)
			continue;
		seen_new += b.len > 13 && memcmp(b.data, "Subject: new-",
		    13) == 0;
		seen_old += b.len > 13 && memcmp(b.data, "Subject: old-",
		    13) == 0;
	}
	buf_free(&b);
	ok(x.n == NEW && seen_new == NEW && seen_old == 0,
	    "%s: all %d delivered meanwhile are there, no old one (%zu "
	    "messages, %d new, %d old)", fmt_name[fmt], NEW, x.n, seen_new,
	    seen_old);
	ok(x.n == NEW && x.uid[0] > old[OLD - 1], "%s: with new UIDs",
	    fmt_name[fmt]);
	store_close(&st);
}

/*
 * Append, copy, move.
 */

static void
test_append(void)
{
	struct store *st = t_store();
	struct store_append a = { "INBOX", (const unsigned char *)m4,
	    strlen(m4), MINDEX_F_SEEN | MINDEX_F_FLAGGED, 1600000000, NULL,
	    0 };
	struct store_appended r;
	char path[PATH_MAX], name[PATH_MAX], full[PATH_MAX * 2 + 8];
	struct t_idx x;
	struct stat sb;
	ssize_t k;
	const char *err;

	t_deliver(st, "INBOX", m1);
	is_int(store_append(st, &a, &r, &err), STORE_OP_OK,
	    "%s: APPEND with flags and a date", fmt_name[fmt]);
	t_index(st, "INBOX", &x);
	k = t_find(&x, r.uid);
	ok(r.uid == 2 && r.uidvalidity == x.uidvalidity && k == 1,
	    "%s: APPENDUID %u %u", fmt_name[fmt], r.uidvalidity, r.uid);
	ok(k == 1 && x.flags[k] == (MINDEX_F_SEEN | MINDEX_F_FLAGGED) &&
	    x.idate[k] == 1600000000, "%s: flags and internal date indexed",
	    fmt_name[fmt]);
	ok(t_read_is(st, "INBOX", r.uid, m4), "%s: bytes read back "
	    "(CRLF, From lines)", fmt_name[fmt]);
	if (fmt == 0) {
		t_path(st, "INBOX", path, sizeof(path));
		t_md_files(path, r.uid, name, sizeof(name));
		snprintf(full, sizeof(full), "%s/%s", path, name);
		ok(strncmp(name, "cur/", 4) == 0 &&
		    strcmp(name + strlen(name) - 5, ":2,FS") == 0,
		    "maildir: in cur/ with :2,FS (%s)", name);
		ok(stat(full, &sb) == 0 && sb.st_mtime == 1600000000,
		    "maildir: mtime is the internal date");
	}
	a.folder = "Nope";
	is_int(store_append(st, &a, &r, &err), STORE_OP_NONEXISTENT,
	    "%s: to a folder that does not exist: TRYCREATE", fmt_name[fmt]);
	a.folder = "a%b";
	is_int(store_append(st, &a, &r, &err), STORE_OP_BADNAME,
	    "%s: to a bad name", fmt_name[fmt]);
	a.folder = "INBOX";
	a.flags = 0x400;
	is_int(store_append(st, &a, &r, &err), STORE_OP_CANNOT,
	    "%s: unknown flag bits", fmt_name[fmt]);
	a.flags = 0;
	a.len = 0;
	is_int(store_append(st, &a, &r, &err), STORE_OP_CANNOT,
	    "%s: an empty message", fmt_name[fmt]);
	a.len = strlen(m4);
	is_int(store_append(st, &a, &r, &err), STORE_OP_OK,
	    "%s: APPEND without flags", fmt_name[fmt]);
	t_index(st, "INBOX", &x);
	ok(x.n == 3 && x.flags[2] == 0 && x.uid[2] == 3,
	    "%s: indexed without flags", fmt_name[fmt]);
	store_close(&st);
}

static void
test_copy_move(void)
{
	struct store *st = t_store();
	struct store_copied c;
	struct t_idx src, dst, after;
	struct t_set ts;
	uint32_t u[3], pick[2];
	const char *err;

	u[0] = t_append(st, "INBOX", m1, MINDEX_F_SEEN, 1500000000);
	u[1] = t_append(st, "INBOX", m2, 0, 1500000001);
	u[2] = t_append(st, "INBOX", m3, MINDEX_F_ANSWERED | MINDEX_F_DRAFT,
	    1500000002);
	store_folder_create(st, "Archive", &err);
	t_index(st, "INBOX", &src);
	pick[0] = u[0];
	pick[1] = u[2];
	is_int(store_append_copy(st, "INBOX", t_uids(&ts, 2, pick), "Archive",
	    false, &c, &err), STORE_OP_OK, "%s: COPY 1,3", fmt_name[fmt]);
	t_index(st, "Archive", &dst);
	ok(c.count == 2 && c.src_uids[0] == u[0] && c.src_uids[1] == u[2] &&
	    c.dst_uids[0] == 1 && c.dst_uids[1] == 2 &&
	    c.uidvalidity == dst.uidvalidity, "%s: COPYUID %u 1,3 1:2",
	    fmt_name[fmt], c.uidvalidity);
	store_copied_free(&c);
	ok(dst.n == 2 && dst.flags[0] == MINDEX_F_SEEN &&
	    dst.flags[1] == (MINDEX_F_ANSWERED | MINDEX_F_DRAFT) &&
	    dst.idate[0] == 1500000000 && dst.idate[1] == 1500000002,
	    "%s: flags and internal dates copied", fmt_name[fmt]);
	ok(t_read_is(st, "Archive", 1, m1) && t_read_is(st, "Archive", 2, m3),
	    "%s: bytes copied", fmt_name[fmt]);
	t_index(st, "INBOX", &after);
	ok(after.n == 3 && after.hms == src.hms, "%s: the source untouched",
	    fmt_name[fmt]);
	pick[0] = u[1];
	is_int(store_append_copy(st, "INBOX", t_uids(&ts, 1, pick), "Archive",
	    true, &c, &err), STORE_OP_OK, "%s: MOVE 2", fmt_name[fmt]);
	ok(c.count == 1 && c.src_uids[0] == u[1] && c.dst_uids[0] == 3,
	    "%s: COPYUID for the move", fmt_name[fmt]);
	store_copied_free(&c);
	t_index(st, "INBOX", &after);
	t_index(st, "Archive", &dst);
	ok(after.n == 2 && t_find(&after, u[1]) < 0 && after.nexp == 1 &&
	    after.exp_uid[0] == u[1], "%s: gone from the source, recorded "
	    "as expunged", fmt_name[fmt]);
	ok(dst.n == 3 && t_read_is(st, "Archive", 3, m2),
	    "%s: in the destination", fmt_name[fmt]);
	is_int(store_append_copy(st, "INBOX", t_uids(&ts, 1, pick), "Nope",
	    false, &c, &err), STORE_OP_NONEXISTENT,
	    "%s: to a folder that does not exist", fmt_name[fmt]);
	is_int(store_append_copy(st, "Nope", t_uids(&ts, 1, pick), "INBOX",
	    false, &c, &err), STORE_OP_NONEXISTENT,
	    "%s: from a folder that does not exist", fmt_name[fmt]);
	is_int(store_append_copy(st, "INBOX", t_uids(&ts, 1, pick), "Archive",
	    false, &c, &err), STORE_OP_OK, "%s: COPY of an expunged UID",
	    fmt_name[fmt]);
	ok(c.count == 0, "%s: copies nothing", fmt_name[fmt]);
	store_close(&st);
}

/* A COPY that fails half-way (quota) leaves the destination as it was. */
static void
test_copy_rollback(void)
{
	struct store *st = t_store();
	struct store_copied c;
	struct t_idx dst, after;
	struct mindex_txn *txn;
	struct store_uid_range all = { 1, UINT32_MAX };
	struct store_uidset set = { &all, 1 };
	uint64_t bytes, msgs;
	struct user q;
	const char *err;

	store_folder_create(st, "Archive", &err);
	t_deliver(st, "INBOX", m1);
	t_deliver(st, "INBOX", m2);
	t_deliver(st, "Archive", m3);
	t_index(st, "Archive", &dst);
	if (mindex_begin(store_index(st), false, &txn, &err) < 0 ||
	    mindex_quota_get(txn, &bytes, &msgs) < 0)
		bail("quota");
	mindex_abort(&txn);
	store_close(&st);
	q = users[fmt];
	q.has_quota = true;
	q.quota = bytes + strlen(m1) + 1;	/* room for one copy only */
	st = t_store_as(&q);
	is_int(store_append_copy(st, "INBOX", &set, "Archive", false, &c,
	    &err), STORE_OP_OVERQUOTA, "%s: COPY over quota fails",
	    fmt_name[fmt]);
	ok(c.count == 0 && c.src_uids == NULL, "%s: reports nothing",
	    fmt_name[fmt]);
	t_index(st, "Archive", &after);
	ok(after.n == dst.n && after.uid[0] == dst.uid[0],
	    "%s: the destination has only what it had (%zu)", fmt_name[fmt],
	    after.n);
	store_close(&st);
}

/*
 * Reading.
 */

static void
test_read(void)
{
	struct store *st = t_store();
	const char *msgs[2] = { m3, m4 };
	struct store_read *r;
	struct buf b;
	unsigned char c[8];
	const char *err;
	size_t n, len;
	bool all_ok;
	int ret;

	buf_init(&b, 1 << 20);
	for (int k = 0; k < 2; k++) {
		uint32_t u = t_deliver(st, "INBOX", msgs[k]);

		len = strlen(msgs[k]);
		is_int(t_read(st, "INBOX", u, 1, &b), STORE_OP_OK,
		    "%s: read message %d one byte at a time", fmt_name[fmt],
		    k);
		is_mem(b.data, b.len, msgs[k], len, "%s: ... as stored, "
		    "un-escaped", fmt_name[fmt]);
		all_ok = true;
		for (size_t off = 0; off <= len + 1; off++) {
			if (store_read_open(st, "INBOX", u, &r, &err) !=
			    STORE_OP_OK)
				bail("store_read_open: %s", err);
			/* Read a little first, so that seeks go back too. */
			store_read_next(r, c, 3, &n, &err);
			if (store_read_seek(r, off, &err) < 0)
				all_ok = false;
			buf_truncate(&b, 0);
			while ((ret = store_read_next(r, c, sizeof(c), &n,
			    &err)) == 1)
				buf_append(&b, c, n);
			store_read_close(&r);
			if (ret < 0 || b.len != (off < len ? len - off : 0) ||
			    memcmp(b.data, msgs[k] + (off < len ? off : len),
			    b.len) != 0) {
				diag("seek to %zu: %zu bytes", off, b.len);
				all_ok = false;
			}
		}
		ok(all_ok, "%s: seek to every offset 0..len+1 (N, N+1)",
		    fmt_name[fmt]);
	}
	is_int(t_read(st, "INBOX", 999, 1, &b), STORE_OP_NONEXISTENT,
	    "%s: no such message", fmt_name[fmt]);
	is_int(store_read_open(st, "Nope", 1, &r, &err), STORE_OP_NONEXISTENT,
	    "%s: no such folder", fmt_name[fmt]);
	is_int(store_read_open(st, "a*", 1, &r, &err), STORE_OP_BADNAME,
	    "%s: bad name", fmt_name[fmt]);
	buf_free(&b);
	store_close(&st);
}

/* The reader needs nothing of the store once open. */
static void
test_read_after_close(void)
{
	struct store *st = t_store();
	struct store_read *r;
	unsigned char buf[256];
	uint32_t u = t_deliver(st, "INBOX", m2);
	const char *err;
	size_t n;

	if (store_read_open(st, "INBOX", u, &r, &err) != STORE_OP_OK)
		bail("store_read_open: %s", err);
	store_close(&st);
	is_int(store_read_next(r, buf, sizeof(buf), &n, &err), 1,
	    "%s: read after the store is closed", fmt_name[fmt]);
	is_mem(buf, n, m2, strlen(m2), "%s: whole message", fmt_name[fmt]);
	store_read_close(&r);
	ok(r == NULL, "%s: close clears the pointer", fmt_name[fmt]);
}

/*
 * Keywords.
 */

/* The keywords of uid in folder, space-separated ("" for none, "?" for
 * no such message); static, valid until the next call. */
static const char *
t_kw(struct store *st, const char *folder, uint32_t uid)
{
	static char out[8192];
	struct mindex_txn *txn;
	struct mindex_folder f;
	struct mindex_msg m;
	const char *err;
	size_t n;

	if (mindex_begin(store_index(st), false, &txn, &err) < 0)
		bail("mindex_begin: %s", err);
	snprintf(out, sizeof(out), "?");
	if (mindex_folder_get(txn, folder, &f) == 1 &&
	    mindex_msg_get(txn, f.id, uid, &m) == 1) {
		n = m.keywords_len < sizeof(out) ? m.keywords_len :
		    sizeof(out) - 1;
		memcpy(out, m.keywords, n);
		for (size_t i = 0; i < n; i++)
			if (out[i] == '\0')
				out[i] = ' ';
		out[n > 0 ? n - 1 : 0] = '\0';
	}
	mindex_abort(&txn);
	return out;
}

/* "a b c" as the index keeps keywords ("a\0b\0c\0") into b. */
static void
t_kwlist(struct buf *b, const char *spaced)
{
	buf_truncate(b, 0);
	for (const char *p = spaced; *p != '\0';) {
		size_t n = strcspn(p, " ");

		if (n > 0) {
			buf_append(b, p, n);
			buf_append_byte(b, '\0');
		}
		p += n + (p[n] == ' ');
	}
}

/* "prefixNN ..." for count names from first on, space-separated. */
static void
t_kwnames(char *out, size_t size, const char *prefix, int first, int count)
{
	size_t o = 0;

	out[0] = '\0';
	for (int i = 0; i < count && o < size; i++)
		o += (size_t)snprintf(out + o, size - o, "%s%s%02d",
		    i > 0 ? " " : "", prefix, first + i);
}

/* store_flags_change_kw of the uids with the keywords "a b c". */
static enum store_op
t_kwflags(struct store *st, const char *folder, size_t nu,
    const uint32_t *uids, enum store_flags_how how, uint32_t flags,
    const char *spaced, uint64_t unchangedsince,
    struct store_flag_result **res, size_t *n)
{
	struct t_set ts;
	struct store_flags_change c = { t_uids(&ts, nu, uids), how, flags,
	    unchangedsince };
	struct buf b;
	const char *err;
	enum store_op op;

	buf_init(&b, 1 << 20);
	t_kwlist(&b, spaced);
	op = store_flags_change_kw(st, folder, &c, (const char *)b.data, b.len,
	    res, n, &err);
	buf_free(&b);
	if (op != STORE_OP_OK) {
		*res = NULL;
		*n = 0;
	}
	return op;
}

/* Maildir: the name (below cur/ or new/) of uid in folder into name. */
static void
t_md_name(struct store *st, const char *folder, uint32_t uid, char *name,
    size_t size)
{
	char path[PATH_MAX];

	t_path(st, folder, path, sizeof(path));
	t_md_files(path, uid, name, size);
}

/* Maildir: the end of uid's file name is tail. */
static bool
t_md_tail(struct store *st, const char *folder, uint32_t uid,
    const char *tail)
{
	char name[PATH_MAX];
	size_t n, t = strlen(tail);

	t_md_name(st, folder, uid, name, sizeof(name));
	n = strlen(name);
	return n >= t && strcmp(name + n - t, tail) == 0 &&
	    strchr(name + n - t, ':') != NULL;
}

/* Maildir: folder's dovecot-keywords as text into b. */
static void
t_kwfile(struct store *st, const char *folder, struct buf *b)
{
	char path[PATH_MAX], file[PATH_MAX + 32];

	t_path(st, folder, path, sizeof(path));
	snprintf(file, sizeof(file), "%s/dovecot-keywords", path);
	t_file(file, b);
	(void)buf_cstr(b);
}

/* Set, clear and replace keywords; the rules of the names. */
static void
test_kw_change(void)
{
	struct store *st = t_store();
	struct store_flag_result *res;
	struct buf b;
	uint32_t u[3];
	uint64_t ms;
	size_t n;
	const char *F = fmt_name[fmt];

	buf_init(&b, 1 << 20);
	u[0] = t_deliver(st, "INBOX", m1);
	u[1] = t_deliver(st, "INBOX", m2);
	u[2] = t_deliver(st, "INBOX", m3);
	is_int(t_kwflags(st, "INBOX", 1, u, STORE_FLAGS_ADD, 0, "work $Junk",
	    STORE_MODSEQ_NONE, &res, &n), STORE_OP_OK, "%s: +keywords", F);
	ok(n == 1 && res[0].changed && res[0].keywords_len == 11 &&
	    memcmp(res[0].keywords, "$Junk\0work\0", 11) == 0,
	    "%s: the result has them, sorted", F);
	ms = n == 1 ? res[0].modseq : 0;
	free(res);
	is_string(t_kw(st, "INBOX", u[0]), "$Junk work", "%s: in the index", F);
	if (fmt == 0) {
		ok(t_md_tail(st, "INBOX", u[0], ":2,ab"),
		    "maildir: the name carries the letters ab");
		t_kwfile(st, "INBOX", &b);
		is_string(buf_cstr(&b), "0 $Junk\n1 work\n",
		    "maildir: dovecot-keywords names them");
	}
	is_int(t_kwflags(st, "INBOX", 1, u, STORE_FLAGS_ADD, 0, "WORK $junk",
	    STORE_MODSEQ_NONE, &res, &n), STORE_OP_OK, "%s: again, in "
	    "another case", F);
	ok(n == 1 && !res[0].changed && res[0].modseq == ms,
	    "%s: nothing changed, MODSEQ kept", F);
	free(res);
	is_string(t_kw(st, "INBOX", u[0]), "$Junk work",
	    "%s: the first spelling stays", F);
	is_int(t_kwflags(st, "INBOX", 1, u, STORE_FLAGS_REMOVE, 0, "$JUNK",
	    STORE_MODSEQ_NONE, &res, &n), STORE_OP_OK, "%s: -keyword", F);
	ok(n == 1 && res[0].changed && res[0].modseq > ms,
	    "%s: changed, with a new MODSEQ", F);
	free(res);
	is_string(t_kw(st, "INBOX", u[0]), "work", "%s: one left", F);
	if (fmt == 0)
		ok(t_md_tail(st, "INBOX", u[0], ":2,b"),
		    "maildir: the letter a is gone from the name");
	is_int(t_kwflags(st, "INBOX", 1, u, STORE_FLAGS_REPLACE, MINDEX_F_SEEN,
	    "zz aa", STORE_MODSEQ_NONE, &res, &n), STORE_OP_OK,
	    "%s: FLAGS (\\Seen zz aa)", F);
	free(res);
	is_string(t_kw(st, "INBOX", u[0]), "aa zz", "%s: replaced", F);
	{
		struct t_set ts;
		struct store_flags_change c = { t_uids(&ts, 1, u),
		    STORE_FLAGS_REPLACE, MINDEX_F_FLAGGED, STORE_MODSEQ_NONE };
		const char *err;

		is_int(store_flags_change(st, "INBOX", &c, &res, &n, &err),
		    STORE_OP_OK, "%s: store_flags_change FLAGS (\\Flagged)",
		    F);
		ok(n == 1 && res[0].flags == MINDEX_F_FLAGGED &&
		    res[0].keywords_len == 6, "%s: keywords untouched", F);
		free(res);
	}
	is_int(t_kwflags(st, "INBOX", 1, u, STORE_FLAGS_REPLACE, 0, "",
	    STORE_MODSEQ_NONE, &res, &n), STORE_OP_OK, "%s: FLAGS ()", F);
	ok(n == 1 && res[0].keywords == NULL && res[0].keywords_len == 0 &&
	    res[0].flags == 0, "%s: all cleared", F);
	free(res);
	if (fmt == 0) {
		char name[PATH_MAX];

		t_md_name(st, "INBOX", u[0], name, sizeof(name));
		ok(strcmp(name + strlen(name) - 3, ":2,") == 0,
		    "maildir: :2, with no letter (%s)", name);
	}
	is_int(t_kwflags(st, "INBOX", 1, u + 1, STORE_FLAGS_ADD, 0,
	    "$Forwarded", STORE_MODSEQ_NONE, &res, &n), STORE_OP_OK,
	    "%s: $Forwarded given as a keyword", F);
	ok(n == 1 && res[0].flags == MINDEX_F_FORWARDED &&
	    res[0].keywords_len == 0, "%s: is the flag, no keyword", F);
	free(res);
	is_int(t_kwflags(st, "INBOX", 1, u, STORE_FLAGS_ADD, 0, "a]b",
	    STORE_MODSEQ_NONE, &res, &n), STORE_OP_CANNOT,
	    "%s: a name with ]: CANNOT", F);
	is_int(t_kwflags(st, "INBOX", 1, u, STORE_FLAGS_ADD, 0, "\\Seen",
	    STORE_MODSEQ_NONE, &res, &n), STORE_OP_CANNOT,
	    "%s: a name with \\: CANNOT", F);
	{
		char name[STORE_KEYWORD_MAX + 2];

		memset(name, 'k', sizeof(name) - 1);
		name[STORE_KEYWORD_MAX] = '\0';
		is_int(t_kwflags(st, "INBOX", 1, u, STORE_FLAGS_ADD, 0, name,
		    STORE_MODSEQ_NONE, &res, &n), STORE_OP_OK,
		    "%s: a name of 100 bytes", F);
		free(res);
		is_string(t_kw(st, "INBOX", u[0]), name, "%s: stored", F);
		name[STORE_KEYWORD_MAX] = 'k';
		name[STORE_KEYWORD_MAX + 1] = '\0';
		is_int(t_kwflags(st, "INBOX", 1, u, STORE_FLAGS_ADD, 0, name,
		    STORE_MODSEQ_NONE, &res, &n), STORE_OP_CANNOT,
		    "%s: 101 bytes: CANNOT", F);
	}
	{
		const char *err;
		struct t_set ts;
		struct store_flags_change c = { t_uids(&ts, 1, u),
		    STORE_FLAGS_ADD, 0, STORE_MODSEQ_NONE };

		is_int(store_flags_change_kw(st, "INBOX", &c, "ab", 2, &res,
		    &n, &err), STORE_OP_CANNOT,
		    "%s: a list not ending in NUL: CANNOT", F);
	}
	ok(store_keyword_valid("$MDNSent") && store_keyword_valid("a") &&
	    !store_keyword_valid("") && !store_keyword_valid("a b") &&
	    !store_keyword_valid("a(") && !store_keyword_valid("{") &&
	    !store_keyword_valid("a\"") && !store_keyword_valid("%") &&
	    !store_keyword_valid("*") && !store_keyword_valid("\x7f") &&
	    !store_keyword_valid("\xc3\xa4"), "store_keyword_valid");
	buf_free(&b);
	store_close(&st);
}

/* A message's limit (64, 65), a list's, and UNCHANGEDSINCE. */
static void
test_kw_limits(void)
{
	struct store *st = t_store();
	struct store_flag_result *res;
	char names[8192];
	uint32_t u[2], both[2];
	uint64_t ms;
	size_t n;
	const char *F = fmt_name[fmt];

	u[0] = t_deliver(st, "INBOX", m1);
	u[1] = t_deliver(st, "INBOX", m2);
	both[0] = u[0];
	both[1] = u[1];
	t_kwnames(names, sizeof(names), "q", 1, STORE_KEYWORDS_MAX + 1);
	is_int(t_kwflags(st, "INBOX", 1, u, STORE_FLAGS_REMOVE, 0, names,
	    STORE_MODSEQ_NONE, &res, &n), STORE_OP_LIMIT,
	    "%s: a list of 65: LIMIT", F);
	if (fmt == 1) {
		t_kwnames(names, sizeof(names), "q", 1, STORE_KEYWORDS_MAX);
		is_int(t_kwflags(st, "INBOX", 1, u, STORE_FLAGS_ADD, 0, names,
		    STORE_MODSEQ_NONE, &res, &n), STORE_OP_OK,
		    "mbox: 64 keywords on a message");
		free(res);
		ok(strncmp(t_kw(st, "INBOX", u[0]), "q01 q02 ", 8) == 0 &&
		    strlen(t_kw(st, "INBOX", u[0])) == 64 * 4 - 1,
		    "mbox: all 64 stored");
		is_int(t_kwflags(st, "INBOX", 2, both, STORE_FLAGS_ADD, 0,
		    "r01", STORE_MODSEQ_NONE, &res, &n), STORE_OP_LIMIT,
		    "mbox: a 65th on one of two: LIMIT");
		ok(strstr(t_kw(st, "INBOX", u[0]), "r01") == NULL &&
		    strcmp(t_kw(st, "INBOX", u[1]), "") == 0,
		    "mbox: neither message changed");
	} else {
		t_kwnames(names, sizeof(names), "q", 1, 26);
		is_int(t_kwflags(st, "INBOX", 1, u, STORE_FLAGS_ADD, 0, names,
		    STORE_MODSEQ_NONE, &res, &n), STORE_OP_OK,
		    "maildir: 26 keywords in a folder");
		free(res);
		ok(t_md_tail(st, "INBOX", u[0],
		    ":2,abcdefghijklmnopqrstuvwxyz"),
		    "maildir: every letter a-z in the name");
		is_int(t_kwflags(st, "INBOX", 2, both, STORE_FLAGS_ADD, 0,
		    "q01 r01", STORE_MODSEQ_NONE, &res, &n), STORE_OP_LIMIT,
		    "maildir: a 27th: LIMIT");
		ok(strstr(t_kw(st, "INBOX", u[0]), "r01") == NULL &&
		    strcmp(t_kw(st, "INBOX", u[1]), "") == 0 &&
		    t_md_tail(st, "INBOX", u[0],
		    ":2,abcdefghijklmnopqrstuvwxyz") &&
		    !t_md_tail(st, "INBOX", u[1], ":2,a"),
		    "maildir: nothing changed, nothing renamed");
		is_int(t_kwflags(st, "INBOX", 1, u + 1, STORE_FLAGS_ADD, 0,
		    "Q05", STORE_MODSEQ_NONE, &res, &n), STORE_OP_OK,
		    "maildir: a keyword the folder has is fine");
		free(res);
		ok(t_md_tail(st, "INBOX", u[1], ":2,e") &&
		    strcmp(t_kw(st, "INBOX", u[1]), "q05") == 0,
		    "maildir: letter e, spelt as the folder spells it");
	}
	is_int(t_kwflags(st, "INBOX", 1, u + 1, STORE_FLAGS_ADD, 0, "",
	    STORE_MODSEQ_NONE, &res, &n), STORE_OP_OK, "%s: nothing", F);
	ms = n == 1 ? res[0].modseq : 0;
	free(res);
	is_int(t_kwflags(st, "INBOX", 1, u + 1, STORE_FLAGS_ADD, 0, "q02",
	    ms - 1, &res, &n), STORE_OP_OK, "%s: UNCHANGEDSINCE below", F);
	ok(n == 1 && res[0].modified && !res[0].changed &&
	    strstr(t_kw(st, "INBOX", u[1]), "q02") == NULL,
	    "%s: reported modified, not changed (N+1)", F);
	free(res);
	is_int(t_kwflags(st, "INBOX", 1, u + 1, STORE_FLAGS_ADD, 0, "q02",
	    ms, &res, &n), STORE_OP_OK, "%s: UNCHANGEDSINCE equal", F);
	ok(n == 1 && !res[0].modified && res[0].changed && res[0].modseq > ms,
	    "%s: changed (N)", F);
	free(res);
	store_close(&st);
}

/* APPEND, COPY, MOVE and EXPUNGE keep them; a new store and a rebuild
 * see them. */
static void
test_kw_carry(void)
{
	struct store *st = t_store();
	struct store_flag_result *res;
	struct store_append a = { "INBOX", (const unsigned char *)m4,
	    strlen(m4), MINDEX_F_SEEN, 1600000000, "$MDNSent\0$Junk\0", 16 };
	struct store_appended r;
	struct store_copied c;
	struct t_set ts;
	struct buf b;
	uint32_t u[3], ua, *gone;
	uint64_t msgs;
	size_t n;
	const char *err, *F = fmt_name[fmt];

	buf_init(&b, 1 << 20);
	u[0] = t_deliver(st, "INBOX", m1);
	u[1] = t_deliver(st, "INBOX", m2);
	u[2] = t_deliver(st, "INBOX", m3);
	is_int(store_append(st, &a, &r, &err), STORE_OP_OK,
	    "%s: APPEND with keywords", F);
	is_string(t_kw(st, "INBOX", r.uid), "$Junk $MDNSent",
	    "%s: the appended message has them", F);
	ua = r.uid;
	if (fmt == 0)
		ok(t_md_tail(st, "INBOX", ua, ":2,Sab"),
		    "maildir: its name carries them");
	a.keywords = "a]b\0";
	a.keywords_len = 4;
	is_int(store_append(st, &a, &r, &err), STORE_OP_CANNOT,
	    "%s: APPEND with a bad keyword: CANNOT", F);
	is_int(t_kwflags(st, "INBOX", 1, u, STORE_FLAGS_ADD, 0, "one",
	    STORE_MODSEQ_NONE, &res, &n), STORE_OP_OK, "%s: keyword on 1", F);
	free(res);
	is_int(t_kwflags(st, "INBOX", 1, u + 1, STORE_FLAGS_ADD,
	    MINDEX_F_DELETED, "two", STORE_MODSEQ_NONE, &res, &n),
	    STORE_OP_OK, "%s: keyword on 2", F);
	free(res);
	is_int(t_kwflags(st, "INBOX", 1, u + 2, STORE_FLAGS_ADD, 0, "three",
	    STORE_MODSEQ_NONE, &res, &n), STORE_OP_OK, "%s: keyword on 3", F);
	free(res);
	is_int(store_folder_create(st, "Dest", &err), STORE_OP_OK,
	    "%s: CREATE Dest", F);
	is_int(store_append_copy(st, "INBOX", t_uids(&ts, 1, u), "Dest",
	    false, &c, &err), STORE_OP_OK, "%s: COPY", F);
	ok(c.count == 1 && strcmp(t_kw(st, "Dest", c.dst_uids[0]), "one") == 0,
	    "%s: the copy has the keyword", F);
	store_copied_free(&c);
	is_int(store_append_copy(st, "INBOX", t_uids(&ts, 1, u + 2), "Dest",
	    true, &c, &err), STORE_OP_OK, "%s: MOVE", F);
	ok(c.count == 1 &&
	    strcmp(t_kw(st, "Dest", c.dst_uids[0]), "three") == 0 &&
	    strcmp(t_kw(st, "INBOX", u[2]), "?") == 0,
	    "%s: the moved message has it, and left", F);
	if (fmt == 0) {
		t_kwfile(st, "Dest", &b);
		is_string(buf_cstr(&b), "0 one\n1 three\n",
		    "maildir: Dest names its own letters");
		ok(c.count == 1 && t_md_tail(st, "Dest", c.dst_uids[0],
		    ":2,b"), "maildir: the moved file has Dest's letter");
	}
	store_copied_free(&c);
	is_int(store_expunge(st, "INBOX", NULL, false, &gone, &n, &err),
	    STORE_OP_OK, "%s: EXPUNGE of \\Deleted", F);
	ok(n == 1 && gone[0] == u[1], "%s: the second went", F);
	free(gone);
	is_int(store_sync(st, "INBOX", true, NULL, &err), 0, "%s: sync", F);
	ok(strcmp(t_kw(st, "INBOX", u[0]), "one") == 0 &&
	    strcmp(t_kw(st, "INBOX", ua), "$Junk $MDNSent") == 0,
	    "%s: the others keep theirs", F);
	store_close(&st);
	st = t_store();
	ok(strcmp(t_kw(st, "INBOX", u[0]), "one") == 0,
	    "%s: a new store sees them", F);
	store_close(&st);
	if (fmt == 0) {
		is_int(store_reindex(&users[0], &msgs, &err), 0,
		    "maildir: rebuild the index from storage");
		st = t_store();
		ok(strcmp(t_kw(st, "INBOX", u[0]), "one") == 0 &&
		    strcmp(t_kw(st, "Dest", 2), "three") == 0,
		    "maildir: keywords come back from names and "
		    "dovecot-keywords");
		store_close(&st);
	}
	buf_free(&b);
}

/* Maildir: keywords another program (Dovecot, mutt) sets, and a folder
 * that is full refusing APPEND and COPY whole. */
static void
test_kw_maildir_others(void)
{
	struct store *st;
	struct store_flag_result *res;
	struct store_append a = { "INBOX", (const unsigned char *)m1,
	    strlen(m1), 0, 0, "zz\0", 3 };
	struct store_appended r;
	struct store_copied c;
	struct t_set ts;
	char path[PATH_MAX], name[PATH_MAX], from[PATH_MAX * 2 + 8];
	char to[PATH_MAX * 2 + 8], names[4096];
	uint32_t u[2];
	size_t n;
	int files;
	FILE *f;
	const char *err;

	fmt = 0;
	t_reset();
	st = t_store();
	u[0] = t_deliver(st, "INBOX", m1);
	u[1] = t_deliver(st, "INBOX", m2);
	is_int(t_kwflags(st, "INBOX", 1, u, STORE_FLAGS_ADD, 0, "mine",
	    STORE_MODSEQ_NONE, &res, &n), STORE_OP_OK, "maildir: loft's");
	free(res);
	/* Dovecot names a letter of its own, and mutt leaves one unnamed. */
	t_path(st, "INBOX", path, sizeof(path));
	snprintf(from, sizeof(from), "%s/dovecot-keywords", path);
	if ((f = fopen(from, "w")) == NULL)
		bail("dovecot-keywords");
	fprintf(f, "0 mine\n3 $NotJunk\n4 bad]name\n");
	fclose(f);
	t_md_files(path, u[1], name, sizeof(name));
	snprintf(from, sizeof(from), "%s/%s", path, name);
	snprintf(to, sizeof(to), "%s/cur/%s:2,Sdey", path, name + 4);
	if (rename(from, to) < 0)
		bail("rename");
	is_int(store_sync(st, "INBOX", true, NULL, &err), 0, "maildir: sync");
	is_string(t_kw(st, "INBOX", u[1]), "$NotJunk",
	    "maildir: a keyword Dovecot set is read (a bad name and an "
	    "unnamed letter are none)");
	is_int(t_kwflags(st, "INBOX", 1, u + 1, STORE_FLAGS_ADD, 0, "new",
	    STORE_MODSEQ_NONE, &res, &n), STORE_OP_OK,
	    "maildir: loft adds one");
	free(res);
	is_string(t_kw(st, "INBOX", u[1]), "$NotJunk new",
	    "maildir: both");
	ok(t_md_tail(st, "INBOX", u[1], ":2,Sbdey"),
	    "maildir: the new letter b (free), d kept, e and y (no keyword "
	    "here) kept too");
	/* A file dropped in with letters is adopted with its keywords. */
	snprintf(to, sizeof(to), "%s/cur/1700000000.M1P1.other:2,Sa", path);
	if ((f = fopen(to, "w")) == NULL)
		bail("drop");
	fputs(m3, f);
	fclose(f);
	is_int(store_sync(st, "INBOX", false, NULL, &err), 0,
	    "maildir: sync adopts it");
	is_string(t_kw(st, "INBOX", 3), "mine",
	    "maildir: with the keyword of its letter");
	/* Dovecot holds its lock: a new letter waits, then INUSE; a
	 * keyword that has its letter needs no lock. */
	snprintf(to, sizeof(to), "%s/dovecot-uidlist.lock", path);
	if ((f = fopen(to, "w")) == NULL)
		bail("lock");
	fclose(f);
	is_int(t_kwflags(st, "INBOX", 1, u, STORE_FLAGS_ADD, 0, "locked",
	    STORE_MODSEQ_NONE, &res, &n), STORE_OP_INUSE,
	    "maildir: a new letter while Dovecot holds its lock: INUSE");
	is_int(t_kwflags(st, "INBOX", 1, u, STORE_FLAGS_ADD, 0, "$NotJunk",
	    STORE_MODSEQ_NONE, &res, &n), STORE_OP_OK,
	    "maildir: a letter the file has: no lock needed");
	free(res);
	unlink(to);
	ok(strcmp(t_kw(st, "INBOX", u[0]), "$NotJunk mine") == 0,
	    "maildir: only that one changed");
	/* Fill the folder: APPEND and COPY needing a 27th are refused. */
	t_kwnames(names, sizeof(names), "f", 1, 22);
	is_int(t_kwflags(st, "INBOX", 1, u, STORE_FLAGS_ADD, 0, names,
	    STORE_MODSEQ_NONE, &res, &n), STORE_OP_OK,
	    "maildir: the folder's 26 letters taken");
	free(res);
	files = t_md_files(path, 0, NULL, 0);
	is_int(store_append(st, &a, &r, &err), STORE_OP_LIMIT,
	    "maildir: APPEND with a 27th: LIMIT");
	is_int(t_md_files(path, 0, NULL, 0), files,
	    "maildir: and nothing stored");
	is_int(store_folder_create(st, "Other", &err), STORE_OP_OK,
	    "maildir: CREATE Other");
	a.folder = "Other";
	is_int(store_append(st, &a, &r, &err), STORE_OP_OK,
	    "maildir: APPEND there is fine");
	is_int(store_append_copy(st, "Other", t_uids(&ts, 1, &r.uid), "INBOX",
	    false, &c, &err), STORE_OP_LIMIT,
	    "maildir: COPY of it to the full folder: LIMIT");
	is_int(t_md_files(path, 0, NULL, 0), files,
	    "maildir: and nothing left behind");
	store_close(&st);
}

static void
test_keywords(void)
{
	t_reset();
	test_kw_change();
	t_reset();
	test_kw_limits();
	t_reset();
	test_kw_carry();
}

static void
run_format(int f)
{
	fmt = f;
	t_reset();
	test_names();
	test_names_outside();
	test_create_list();
	test_delete();
	fmt = f;
	test_rename();
	fmt = f;
	t_reset();
	test_rename_inbox();
	t_reset();
	test_flags();
	t_reset();
	test_expunge();
	t_reset();
	test_expunge_concurrent();
	t_reset();
	test_append();
	t_reset();
	test_copy_move();
	t_reset();
	test_copy_rollback();
	t_reset();
	test_read();
	test_read_after_close();
	test_keywords();
}

int
main(int argc, char **argv)
{
	char cmd[PATH_MAX + 16], home[PATH_MAX + 8];

	if (argc > 1 && strcmp(argv[1], "deliver") == 0)
		return t_deliver_main(argc, argv);
	snprintf(top, sizeof(top), "/tmp/loft-storeops-XXXXXX");
	if (mkdtemp(top) == NULL)
		bail("mkdtemp");
	snprintf(home, sizeof(home), "%s/md", top);
	t_user_init(&users[0], "alice", home, "maildir:~/Maildir");
	snprintf(home, sizeof(home), "%s/mb", top);
	t_user_init(&users[1], "alice", home, "mbox:~/mail:INBOX=~/inbox");

	run_format(0);
	fmt = 0;
	t_reset();
	test_delete_leftover();
	t_reset();
	test_rename_children();
	test_flags_renamed();
	test_sync_new_only();
	test_kw_maildir_others();
	run_format(1);
	test_flags_mbox_kept();

	t_user_free(&users[0]);
	t_user_free(&users[1]);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", top);
	if (system(cmd) != 0)
		diag("cannot remove %s", top);
	return done_testing();
}
