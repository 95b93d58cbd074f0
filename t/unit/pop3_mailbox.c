/*
 * Unit tests for lib/mbox_rewrite.c and the mbox deletion of
 * server/pop3/pop3_mailbox.c over a real store: the mbox bytes after an
 * expunge equal the original without exactly the deleted messages' bytes
 * (From_ line through separator), UIDs and offsets in the index, a
 * message delivered during the session kept, everything deleted leaves a
 * zero-byte file, a dropped session deletes nothing, a file rewritten
 * underneath (mutt) is synced first, the lock is released and no
 * temporary file is left.
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
#include <unistd.h>

#include "buf.h"
#include "fsutil.h"
#include "lock.h"
#include "maildir.h"
#include "mindex.h"
#include "mbox.h"
#include "mbox_rewrite.h"
#include "store.h"
#include "user.h"
#include "xmalloc.h"
#include "server/pop3/pop3_mailbox.h"
#include "tap.h"

static char top[PATH_MAX];
static char inbox[PATH_MAX + 16];
static struct user alice;

static const unsigned char m1[] = "Subject: one\n\nhello\n";
static const unsigned char m2[] = "Subject: two\n\nFrom the middle\nx\n";
/* Every message ends in a newline: a rewrite sync (store_mbox.c) does
 * not re-find one that lacks it (see the report). */
static const unsigned char m3[] = "Subject: three\n\n>From quoted\nend\n";
static const unsigned char m4[] = "Subject: four\n\nlate\n";

static void
t_write_file(const char *path, const void *d, size_t len)
{
	FILE *fp = fopen(path, "w");

	if (fp == NULL || fwrite(d, 1, len, fp) != len || fclose(fp) != 0)
		bail("cannot write %s", path);
}

static void
t_read_file(const char *path, struct buf *b)
{
	struct fsutil_map m;

	buf_truncate(b, 0);
	if (fsutil_map_path(path, &m) < 0)
		bail("cannot read %s: %s", path, strerror(errno));
	buf_append(b, m.data, m.len);
	fsutil_unmap(&m);
}

static void
t_deliver(const unsigned char *msg, size_t len)
{
	struct store *st;
	struct store_delivery d = { "INBOX", "bob@example.net", 1700000000,
	    msg, len };
	struct store_delivered r;
	const char *err;

	if (store_open(&alice, &st, &err) < 0)
		bail("store_open: %s", err);
	if (store_deliver(st, &d, &r, &err) != STORE_OK)
		bail("store_deliver: %s", err);
	store_close(&st);
}

/* A delivery from another process, as the MDA would (one struct mindex
 * per process: a second one in ours would break LMDB's reader slots). */
static void
t_deliver_forked(const unsigned char *msg, size_t len)
{
	int status;
	pid_t pid;

	fflush(stdout);
	if ((pid = fork()) < 0)
		bail("fork");
	if (pid == 0) {
		t_deliver(msg, len);
		_exit(0);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			bail("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		bail("delivery failed");
}

/* Remove everything of the mailbox: a fresh start per test. */
static void
t_reset(void)
{
	char cmd[2 * PATH_MAX + 32];

	snprintf(cmd, sizeof(cmd), "rm -rf %s/mail %s/inbox", top, top);
	if (system(cmd) != 0)
		bail("cannot reset");
}

struct t_ranges {
	uint64_t from[16];
	size_t n;
};

static int
t_scan_cb(const struct mbox_entry *e, void *ctx)
{
	struct t_ranges *r = ctx;

	if (r->n < 16)
		r->from[r->n++] = e->from_offset;
	return 0;
}

/* The file without messages whose bit is set in drop (bit k: message k
 * in file order), computed independently of the code under test. */
static void
t_without(const struct buf *file, unsigned drop, struct buf *out)
{
	struct t_ranges r = { { 0 }, 0 };

	buf_truncate(out, 0);
	if (file->len > 0 && mbox_scan(file->data, file->len, 0, t_scan_cb,
	    &r) < 0)
		bail("not an mbox");
	for (size_t k = 0; k < r.n; k++) {
		uint64_t end = k + 1 < r.n ? r.from[k + 1] : file->len;

		if ((drop & (1u << k)) == 0)
			buf_append(out, file->data + r.from[k],
			    (size_t)(end - r.from[k]));
	}
}

struct t_idx {
	uint32_t uid[16];
	uint64_t off[16];
	size_t n;
	uint32_t count;
};

static int
t_idx_cb(const struct mindex_msg *m, void *ctx)
{
	struct t_idx *x = ctx;

	if (x->n < 16) {
		x->uid[x->n] = m->uid;
		x->off[x->n++] = m->mbox_offset;
	}
	return 0;
}

/* The index as it is, optionally after a store_sync. */
static void
t_index(struct t_idx *x, bool sync)
{
	struct store *st;
	struct mindex_txn *txn;
	struct mindex_folder f;
	const char *err;

	memset(x, 0, sizeof(*x));
	if (store_open(&alice, &st, &err) < 0)
		bail("store_open: %s", err);
	if (sync && store_sync(st, "INBOX", false, NULL, &err) < 0)
		bail("store_sync: %s", err);
	if (mindex_begin(store_index(st), false, &txn, &err) < 0)
		bail("begin: %s", err);
	if (mindex_folder_get(txn, "INBOX", &f) == 1) {
		x->count = f.count;
		mindex_msg_iter(txn, f.id, 1, t_idx_cb, x);
	}
	mindex_abort(&txn);
	store_close(&st);
}

static struct pop3_mailbox *
t_open(void)
{
	struct pop3_mailbox *mb;
	const char *err;

	if (pop3_mailbox_open(&alice, 0, &mb, &err) != 0)
		bail("pop3_mailbox_open: %s", err);
	ok(!pop3_mailbox_scanned(mb) && pop3_mailbox_count(mb) == 0,
	    "open: locked, not yet scanned");
	if (pop3_mailbox_scan(mb, &err) != 0)
		bail("pop3_mailbox_scan: %s", err);
	return mb;
}

/* Can another process lock the mbox? (fcntl locks of our own process
 * never conflict with each other, so ask a child.) */
static bool
t_lockable(void)
{
	struct lock_opts o = { LOCK_M_FCNTL | LOCK_M_DOTLOCK, 1, 10, 0 };
	struct lock_mbox *lk;
	const char *err;
	int fd, status;
	pid_t pid;

	fflush(stdout);
	if ((pid = fork()) < 0)
		bail("fork");
	if (pid == 0) {
		fd = open(inbox, O_RDWR);
		if (fd < 0 || lock_mbox_acquire(fd, inbox, &o, &lk, &err) != 0)
			_exit(1);
		lock_mbox_release(&lk);
		_exit(0);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			bail("waitpid");
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* No dotlock, no temporary file, and the lock free. */
static void
t_clean(const char *what)
{
	char path[PATH_MAX + 32];
	bool tmp_left = false;
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "%s.lock", inbox);
	ok(access(path, F_OK) < 0 && errno == ENOENT, "%s: no dotlock", what);
	if ((d = opendir(top)) == NULL)
		bail("opendir");
	while ((de = readdir(d)) != NULL)
		tmp_left |= strstr(de->d_name, MBOX_REWRITE_INFIX) != NULL;
	closedir(d);
	ok(!tmp_left, "%s: no temporary file left", what);
	ok(t_lockable(), "%s: another process can lock the mbox", what);
}

static void
test_rewrite(void)
{
	char path[PATH_MAX + 16], tmp[PATH_MAX + 64];
	static const char data[] = "AAAAbbbbCCCCddddEEEE";
	struct mbox_rewrite_range r[2] = { { 4, 4 }, { 12, 4 } };
	struct mbox_rewrite_range bad[2] = { { 4, 8 }, { 10, 2 } };
	struct mbox_rewrite_range past = { 16, 5 }, at_end = { 16, 4 };
	struct buf b;
	struct stat sb;
	const char *err;
	int fd, nfd;

	buf_init(&b, 1 << 20);
	snprintf(path, sizeof(path), "%s/rw", top);
	t_write_file(path, data, 20);
	chmod(path, 0640);
	if ((fd = open(path, O_RDWR)) < 0)
		bail("open");
	if (mbox_rewrite_temp_path(path, tmp, sizeof(tmp)) < 0)
		bail("temp path");
	t_write_file(tmp, "stale", 5);
	is_int(mbox_rewrite(fd, path, (const unsigned char *)data, 20, bad, 2,
	    LOCK_M_FCNTL, true, &nfd, &err), -1, "overlapping ranges refused");
	is_int(errno, EINVAL, "with EINVAL");
	is_int(mbox_rewrite(fd, path, (const unsigned char *)data, 20, &past,
	    1, LOCK_M_FCNTL, true, &nfd, &err), -1, "range past the end (N+1)");
	is_int(nfd, -1, "no fd on failure");
	t_read_file(path, &b);
	is_mem(b.data, b.len, data, 20, "file untouched after refusals");
	is_int(mbox_rewrite(fd, path, (const unsigned char *)data, 20, r, 2,
	    LOCK_M_FCNTL | LOCK_M_FLOCK, true, &nfd, &err), 0, "rewrite");
	ok(nfd >= 0, "new fd returned");
	t_read_file(path, &b);
	is_mem(b.data, b.len, "AAAACCCCEEEE", 12, "ranges dropped, rest kept");
	if (stat(path, &sb) < 0)
		bail("stat");
	is_int(sb.st_mode & 07777, 0640, "mode kept");
	ok(access(tmp, F_OK) < 0, "stale temporary file replaced and gone");
	close(nfd);
	close(fd);
	if ((fd = open(path, O_RDWR)) < 0)
		bail("open");
	is_int(mbox_rewrite(fd, path, b.data, b.len, &at_end, 0, LOCK_M_FCNTL,
	    false, &nfd, &err), 0, "nothing dropped");
	close(nfd);
	at_end.offset = 8;
	is_int(mbox_rewrite(fd, path, (const unsigned char *)"AAAACCCCEEEE",
	    12, &at_end, 1, LOCK_M_FCNTL, false, &nfd, &err), 0,
	    "range ending exactly at the end (N)");
	close(nfd);
	close(fd);
	t_read_file(path, &b);
	is_mem(b.data, b.len, "AAAACCCC", 8, "tail dropped");
	unlink(path);
	buf_free(&b);
}

/* DELE 2 + QUIT: exactly message 2's bytes go; UIDs and offsets. */
static void
test_dele_middle(void)
{
	struct pop3_mailbox *mb;
	struct pop3_mailbox_msg *m;
	struct buf before, after, want;
	struct t_idx x;
	bool del[3] = { false, true, false };
	unsigned char rd[256];
	size_t n;
	const char *err;

	t_reset();
	t_deliver(m1, sizeof(m1) - 1);
	t_deliver(m2, sizeof(m2) - 1);
	t_deliver(m3, sizeof(m3) - 1);
	buf_init(&before, 1 << 20);
	buf_init(&after, 1 << 20);
	buf_init(&want, 1 << 20);
	t_read_file(inbox, &before);
	mb = t_open();
	is_int(pop3_mailbox_count(mb), 3, "three messages");
	is_int(pop3_mailbox_expunge(mb, del, &err), 0, "expunge message 2");
	pop3_mailbox_free(&mb);
	t_read_file(inbox, &after);
	t_without(&before, 1u << 1, &want);
	ok(after.len < before.len, "file shrank");
	is_mem(after.data, after.len, want.data, want.len,
	    "mbox is the original minus message 2's bytes");
	t_clean("DELE 2");
	t_index(&x, false);
	ok(x.count == 2 && x.n == 2 && x.uid[0] == 1 && x.uid[1] == 3,
	    "index: UIDs 1 and 3 left");
	ok(x.off[0] == 0 && x.n == 2 && x.off[1] < after.len &&
	    memcmp(after.data + x.off[1], "From ", 5) == 0 &&
	    memcmp(after.data + x.off[1] + 5, "bob@", 4) == 0 &&
	    x.off[1] + 5 < after.len,
	    "index: new offset of UID 3 is its From_ line");
	/* Read message 3 through the recorded offsets, before any sync:
	 * pop3_mailbox_open syncs, so read the index record directly. */
	mb = t_open();
	is_int(pop3_mailbox_count(mb), 2, "next session sees two");
	is_int(pop3_mailbox_uid(mb, 1), 3, "message 2 is now UID 3");
	if (pop3_mailbox_msg_open(mb, 1, &m, &err) < 0)
		bail("msg_open: %s", err);
	buf_truncate(&want, 0);
	while (pop3_mailbox_msg_read(m, rd, sizeof(rd), &n, &err) == 1)
		buf_append(&want, rd, n);
	pop3_mailbox_msg_close(&m);
	is_mem(want.data, want.len, m3, sizeof(m3) - 1,
	    "UID 3 reads back intact (un-escaped)");
	pop3_mailbox_free(&mb);
	t_index(&x, true);
	ok(x.count == 2 && x.uid[0] == 1 && x.uid[1] == 3,
	    "after another sync UIDs are still 1 and 3");
	buf_free(&before);
	buf_free(&after);
	buf_free(&want);
}

/* The offsets as recorded, without a sync in between. */
static void
test_offsets_unsynced(void)
{
	struct pop3_mailbox *mb;
	struct buf file;
	struct t_idx x;
	struct t_ranges r = { { 0 }, 0 };
	bool del[3] = { true, false, false };
	const char *err;

	t_reset();
	t_deliver(m1, sizeof(m1) - 1);
	t_deliver(m2, sizeof(m2) - 1);
	t_deliver(m3, sizeof(m3) - 1);
	mb = t_open();
	is_int(pop3_mailbox_expunge(mb, del, &err), 0, "expunge message 1");
	pop3_mailbox_free(&mb);
	buf_init(&file, 1 << 20);
	t_read_file(inbox, &file);
	mbox_scan(file.data, file.len, 0, t_scan_cb, &r);
	t_index(&x, false);
	ok(x.n == 2 && r.n == 2 && x.uid[0] == 2 && x.uid[1] == 3 &&
	    x.off[0] == r.from[0] && x.off[1] == r.from[1],
	    "recorded offsets match the new file without a sync");
	buf_free(&file);
}

/* A message delivered during the session survives. */
static void
test_delivered_during(void)
{
	struct pop3_mailbox *mb;
	struct buf before, after, want;
	struct t_idx x;
	bool del[2] = { true, true };
	const char *err;

	t_reset();
	t_deliver(m1, sizeof(m1) - 1);
	t_deliver(m2, sizeof(m2) - 1);
	mb = t_open();
	t_deliver_forked(m4, sizeof(m4) - 1);
	buf_init(&before, 1 << 20);
	buf_init(&after, 1 << 20);
	buf_init(&want, 1 << 20);
	t_read_file(inbox, &before);
	is_int(pop3_mailbox_count(mb), 2, "snapshot of two");
	if (!ok(pop3_mailbox_expunge(mb, del, &err) == 0, "expunge both"))
		diag("%s", err);
	pop3_mailbox_free(&mb);
	t_read_file(inbox, &after);
	t_without(&before, 3, &want);
	is_mem(after.data, after.len, want.data, want.len,
	    "only the late message is left, byte for byte");
	ok(after.len > 0 && memmem(after.data, after.len, "late\n", 5) != NULL,
	    "it is the late one");
	t_index(&x, true);
	ok(x.count == 1 && x.uid[0] == 3, "it keeps UID 3");
	t_clean("late delivery");
	buf_free(&before);
	buf_free(&after);
	buf_free(&want);
}

static void
test_dele_all_and_drop(void)
{
	struct pop3_mailbox *mb;
	struct buf before, after;
	struct stat sb;
	struct t_idx x;
	bool del[3] = { true, true, true };
	bool none[3] = { false, false, false };
	const char *err;
	ino_t ino;

	t_reset();
	t_deliver(m1, sizeof(m1) - 1);
	t_deliver(m2, sizeof(m2) - 1);
	t_deliver(m3, sizeof(m3) - 1);
	buf_init(&before, 1 << 20);
	buf_init(&after, 1 << 20);
	t_read_file(inbox, &before);

	/* Dropped: nothing deleted. */
	mb = t_open();
	pop3_mailbox_free(&mb);
	t_read_file(inbox, &after);
	is_mem(after.data, after.len, before.data, before.len,
	    "dropped session: mbox unchanged");
	/* Nothing marked: the file is not even rewritten. */
	if (stat(inbox, &sb) < 0)
		bail("stat");
	ino = sb.st_ino;
	mb = t_open();
	is_int(pop3_mailbox_expunge(mb, none, &err), 0, "QUIT, nothing marked");
	pop3_mailbox_free(&mb);
	ok(stat(inbox, &sb) == 0 && sb.st_ino == ino, "file not rewritten");

	mb = t_open();
	is_int(pop3_mailbox_expunge(mb, del, &err), 0, "expunge all");
	pop3_mailbox_free(&mb);
	ok(stat(inbox, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size == 0,
	    "zero-byte mbox left");
	t_index(&x, false);
	is_int(x.count, 0, "index empty");
	t_index(&x, true);
	is_int(x.count, 0, "still empty after a sync");
	t_clean("DELE all");
	t_deliver(m4, sizeof(m4) - 1);
	t_index(&x, true);
	ok(x.count == 1 && x.uid[0] == 4, "next delivery gets UID 4");
	buf_free(&before);
	buf_free(&after);
}

/* mutt rewrote the file during the session (message 1 deleted by it,
 * new inode). The session deletes 1 (gone already) and 2. */
static void
test_rewritten_underneath(void)
{
	struct pop3_mailbox *mb;
	struct buf before, after, want;
	char tmp[PATH_MAX + 16];
	struct t_idx x;
	bool del[3] = { true, true, false };
	const char *err;

	t_reset();
	t_deliver(m1, sizeof(m1) - 1);
	t_deliver(m2, sizeof(m2) - 1);
	t_deliver(m3, sizeof(m3) - 1);
	buf_init(&before, 1 << 20);
	buf_init(&after, 1 << 20);
	buf_init(&want, 1 << 20);
	t_read_file(inbox, &before);
	mb = t_open();
	t_without(&before, 1, &want);
	snprintf(tmp, sizeof(tmp), "%s/mutt.tmp", top);
	t_write_file(tmp, want.data, want.len);
	if (rename(tmp, inbox) < 0)
		bail("rename");
	t_read_file(inbox, &before);
	is_int(pop3_mailbox_expunge(mb, del, &err), 0,
	    "expunge after a rewrite underneath");
	pop3_mailbox_free(&mb);
	t_read_file(inbox, &after);
	t_without(&before, 1, &want);
	is_mem(after.data, after.len, want.data, want.len,
	    "message 2 found again and removed; 3 kept");
	t_index(&x, true);
	ok(x.count == 1 && x.uid[0] == 3, "UID 3 left");
	t_clean("rewritten");
	buf_free(&before);
	buf_free(&after);
	buf_free(&want);
}

/* A Maildir another program filled: the login adopts its files by name
 * (estimates, nothing renamed), pop3_mailbox_sizes reads them. */
static void
test_maildir_lazy(void)
{
	static const char a[] = "Subject: a\n\nbody\n";
	static const char b[] = "Subject: b\r\n\r\nx\r\n";
	static const char c[] = "Subject: c\n\nno final newline";
	char path[PATH_MAX + 256], bname[128];
	struct pop3_mailbox *mb;
	struct mindex_txn *txn;
	struct mindex_folder f;
	struct mindex_msg m;
	struct store *st;
	const char *err;
	char *loc = alice.mail_location;

	alice.mail_location = xstrdup("maildir:~/md");
	snprintf(path, sizeof(path), "%s/md", top);
	if (maildir_create(path, false, &err) < 0)
		bail("maildir_create: %s", err);
	snprintf(path, sizeof(path), "%s/md/new/1700000001.1_0.host", top);
	t_write_file(path, a, strlen(a));
	snprintf(bname, sizeof(bname), "1700000002.2_0.host,S=%zu:2,S",
	    strlen(b));
	snprintf(path, sizeof(path), "%s/md/cur/%s", top, bname);
	t_write_file(path, b, strlen(b));
	snprintf(path, sizeof(path), "%s/md/new/1700000003.3_0.host", top);
	t_write_file(path, c, strlen(c));

	if (pop3_mailbox_open(&alice, 0, &mb, &err) != 0 ||
	    pop3_mailbox_scan(mb, &err) != 0)
		bail("pop3_mailbox_open: %s", err);
	is_int(pop3_mailbox_count(mb), 3, "lazy: three files adopted");
	ok(pop3_mailbox_uid(mb, 0) == 1 && pop3_mailbox_uid(mb, 1) == 2 &&
	    pop3_mailbox_uid(mb, 2) == 3,
	    "lazy: UIDs 1..3 in the order of the names, new/ and cur/ mixed");
	/* Before: what the names and a stat say. */
	ok(pop3_mailbox_vsize(mb, 1) == strlen(b) &&
	    pop3_mailbox_vsize(mb, 0) == strlen(a),
	    "lazy: ,S= or a stat gives the size before any file is read");
	ok(pop3_mailbox_sizes(mb, &err) == 0, "lazy: sizes read");
	ok(pop3_mailbox_vsize(mb, 1) == strlen(b),
	    "lazy: CRLF file's size (%llu)",
	    (unsigned long long)pop3_mailbox_vsize(mb, 1));
	ok(pop3_mailbox_vsize(mb, 0) == strlen(a) + 3,
	    "lazy: bare LFs count as CRLF (%llu)",
	    (unsigned long long)pop3_mailbox_vsize(mb, 0));
	ok(pop3_mailbox_vsize(mb, 2) == strlen(c) + 2 + 2,
	    "lazy: no final newline: RETR adds a CRLF (%llu)",
	    (unsigned long long)pop3_mailbox_vsize(mb, 2));
	pop3_mailbox_free(&mb);

	snprintf(path, sizeof(path), "%s/md/new/1700000001.1_0.host", top);
	ok(access(path, F_OK) == 0, "lazy: the adopted file kept its name");
	if (store_open(&alice, &st, &err) < 0)
		bail("store_open: %s", err);
	if (mindex_begin(store_index(st), false, &txn, &err) < 0)
		bail("mindex_begin: %s", err);
	ok(mindex_folder_get(txn, "INBOX", &f) == 1 && f.unparsed == 3 &&
	    f.count == 3, "lazy: sizes alone leave the files unparsed");
	for (uint32_t uid = 1; uid <= 3; uid++) {
		const char *want = uid == 1 ? a : uid == 2 ? b : c;
		uint64_t vs = uid == 1 ? strlen(a) + 3 : uid == 2 ?
		    strlen(b) : strlen(c) + 2;

		ok(mindex_msg_get(txn, f.id, uid, &m) == 1 &&
		    (m.cache_flags & (MINDEX_C_UNPARSED | MINDEX_C_SIZED)) ==
		    (MINDEX_C_UNPARSED | MINDEX_C_SIZED) &&
		    m.psize == strlen(want) && m.vsize == vs &&
		    ((m.cache_flags & MINDEX_C_NO_FINAL_LF) != 0) == (uid == 3)
		    && m.headers_len == 0,
		    "lazy: uid %u sized (psize %llu vsize %llu), not parsed",
		    uid, (unsigned long long)m.psize,
		    (unsigned long long)m.vsize);
	}
	mindex_abort(&txn);
	ok(store_complete(st, "INBOX", &err) == 0, "complete: parse them");
	if (mindex_begin(store_index(st), false, &txn, &err) < 0)
		bail("mindex_begin: %s", err);
	ok(mindex_folder_get(txn, "INBOX", &f) == 1 && f.unparsed == 0 &&
	    f.count == 3, "lazy: nothing left unparsed in the folder record");
	ok(mindex_msg_get(txn, f.id, 1, &m) == 1 && m.headers_len > 0 &&
	    m.mime_len > 0 && (m.cache_flags & (MINDEX_C_UNPARSED |
	    MINDEX_C_SIZED)) == 0 && m.internal_date != 0 &&
	    m.vsize == strlen(a) + 3,
	    "lazy: the record has its headers, MIME tree and date now, and "
	    "the size the count found");
	ok(mindex_msg_get(txn, f.id, 3, &m) == 1 &&
	    m.vsize == strlen(c) + 2 &&
	    (m.cache_flags & MINDEX_C_NO_FINAL_LF) != 0,
	    "lazy: the parse agrees on the message without a final newline");
	mindex_abort(&txn);
	store_close(&st);
	free(alice.mail_location);
	alice.mail_location = loc;
}

int
main(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(top, sizeof(top), "/tmp/loft-pop3mb-XXXXXX");
	if (mkdtemp(top) == NULL)
		bail("mkdtemp");
	snprintf(inbox, sizeof(inbox), "%s/inbox", top);
	alice.name = xstrdup("alice");
	alice.pwhash = xstrdup("");
	alice.uid = getuid();
	alice.gid = getgid();
	alice.home = xstrdup(top);
	alice.mail_location = xstrdup("mbox:~/mail:INBOX=~/inbox");
	alice.fields = xstrdup("");

	test_rewrite();
	test_dele_middle();
	test_offsets_unsynced();
	test_delivered_during();
	test_dele_all_and_drop();
	test_rewritten_underneath();
	test_maildir_lazy();

	free(alice.name);
	free(alice.pwhash);
	free(alice.home);
	free(alice.mail_location);
	free(alice.fields);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", top);
	if (system(cmd) != 0)
		diag("cannot remove %s", top);
	return done_testing();
}
