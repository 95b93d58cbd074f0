/*
 * Unit tests for store_deliver_batch (lib/store_append.c): n messages in
 * one call become n files (Maildir) or n messages of the file (mbox),
 * byte for byte, with increasing UIDs in the order given and an index
 * record each; the quota is checked per message in order (a limit met
 * exactly at N bytes, refused at N + 1, and a message over it failing
 * alone); a batch whose records overflow the index map mid-transaction
 * is run again without a message lost, doubled or renumbered; an index
 * that cannot grow leaves the messages stored (STORE_OK) for the next
 * sync; runs of different folders; and batches mixed with store_deliver.
 * Everything against real temporary trees; trusts nothing but them.
 */
#include "config.h"

#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "compat/compat.h"
#include "conf.h"
#include "mindex.h"
#include "store.h"
#include "user.h"
#include "xmalloc.h"
#include "tap.h"

#define T_N	40

static char top[256];
static struct user user;
static char bodies[T_N][512];

static void
t_user(const char *location, bool quota, uint64_t limit)
{
	char home[PATH_MAX];

	free(user.name);
	free(user.pwhash);
	free(user.home);
	free(user.mail_location);
	free(user.fields);
	memset(&user, 0, sizeof(user));
	snprintf(home, sizeof(home), "%s/home", top);
	user.name = xstrdup("carol");
	user.pwhash = xstrdup("");
	user.uid = getuid();
	user.gid = getgid();
	user.home = xstrdup(home);
	user.mail_location = xstrdup(location);
	user.fields = xstrdup("");
	user.has_quota = quota;
	user.quota = limit;
}

static void
t_reset(void)
{
	char cmd[PATH_MAX + 64];

	snprintf(cmd, sizeof(cmd), "rm -rf %s/home && mkdir %s/home", top,
	    top);
	if (system(cmd) != 0)
		bail("cannot reset");
}

static struct store *
t_open(void)
{
	struct store *st;
	const char *err;

	if (store_open(&user, &st, &err) < 0)
		bail("store_open: %s", err);
	return st;
}

/* n items for folder, message i being bodies[first + i]. */
static struct store_batch_item *
t_items(size_t n, size_t first, const char *folder)
{
	struct store_batch_item *it = xcalloc(n, sizeof(*it));

	for (size_t i = 0; i < n; i++) {
		it[i].d.folder = folder;
		it[i].d.sender = "alice@example.org";
		it[i].d.received = 1700000000 + (time_t)i;
		it[i].d.msg = (const unsigned char *)bodies[first + i];
		it[i].d.len = strlen(bodies[first + i]);
	}
	return it;
}

/* The file of Maildir message uid in dir/new, read into b: 1 found. */
static int
t_md_file(const char *dir, uint32_t uid, struct buf *b, size_t *count_r)
{
	char path[PATH_MAX], want[32];
	struct dirent *de;
	DIR *d;
	int found = 0;
	size_t count = 0;

	snprintf(path, sizeof(path), "%s/new", dir);
	snprintf(want, sizeof(want), ",U=%u", uid);
	if ((d = opendir(path)) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name), wl = strlen(want);

		if (de->d_name[0] == '.')
			continue;
		count++;
		if (b != NULL && len > wl &&
		    strcmp(de->d_name + len - wl, want) == 0) {
			char fp[PATH_MAX + 300];
			unsigned char chunk[4096];
			ssize_t r;
			int fd;

			found++;
			snprintf(fp, sizeof(fp), "%s/%s", path, de->d_name);
			if ((fd = open(fp, O_RDONLY)) < 0)
				continue;
			while ((r = read(fd, chunk, sizeof(chunk))) > 0)
				(void)buf_append(b, chunk, (size_t)r);
			close(fd);
		}
	}
	closedir(d);
	if (count_r != NULL)
		*count_r = count;
	return found;
}

static size_t
t_dir_count(const char *dir)
{
	struct dirent *de;
	size_t n = 0;
	DIR *d = opendir(dir);

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* The UIDs the index has for folder (after a sync). */
static size_t
t_index_uids(struct store *st, const char *folder, uint32_t **uids)
{
	size_t n = 0;
	const char *err;

	if (store_flags_uids(st, folder, NULL, 0, uids, &n, &err) !=
	    STORE_OP_OK)
		bail("store_flags_uids: %s", err);
	return n;
}

/* Read message uid of folder back through the store. */
static bool
t_read_is(struct store *st, const char *folder, uint32_t uid,
    const char *want)
{
	struct store_read *r;
	unsigned char chunk[4096];
	struct buf b;
	size_t len;
	const char *err;
	bool same;

	if (store_read_open(st, folder, uid, &r, &err) != STORE_OP_OK)
		return false;
	buf_init(&b, 1 << 20);
	while (store_read_next(r, chunk, sizeof(chunk), &len, &err) == 1)
		(void)buf_append(&b, chunk, len);
	store_read_close(&r);
	same = b.len == strlen(want) && memcmp(b.data, want, b.len) == 0;
	buf_free(&b);
	return same;
}

static void
test_maildir_n(size_t n)
{
	struct store *st;
	struct store_batch_item *it;
	char dir[PATH_MAX];
	uint32_t *uids;
	size_t count, nix, all_ok = 0, bytes_ok = 0, order_ok = 1;

	t_reset();
	t_user("maildir:~/Maildir", false, 0);
	st = t_open();
	it = t_items(n, 0, "INBOX");
	store_deliver_batch(st, it, n);
	snprintf(dir, sizeof(dir), "%s/home/Maildir", top);
	for (size_t i = 0; i < n; i++) {
		struct buf b;

		all_ok += it[i].result == STORE_OK;
		if (i > 0 && it[i].done.uid != it[i - 1].done.uid + 1)
			order_ok = 0;
		buf_init(&b, 1 << 20);
		if (t_md_file(dir, it[i].done.uid, &b, &count) == 1 &&
		    b.len == it[i].d.len && memcmp(b.data, it[i].d.msg,
		    b.len) == 0)
			bytes_ok++;
		buf_free(&b);
	}
	is_int(all_ok, n, "maildir, %zu in a batch: every one STORE_OK", n);
	is_int(it[0].done.uid, 1, "maildir, %zu: the first gets UID 1", n);
	ok(order_ok, "maildir, %zu: UIDs increase by one in the order given",
	    n);
	is_int(bytes_ok, n, "maildir, %zu: each file in new/ holds its bytes",
	    n);
	(void)t_md_file(dir, 1, NULL, &count);
	is_int(count, n, "maildir, %zu: exactly %zu files in new/", n, n);
	snprintf(dir, sizeof(dir), "%s/home/Maildir/tmp", top);
	is_int(t_dir_count(dir), 0, "maildir, %zu: nothing left in tmp/", n);
	nix = t_index_uids(st, "INBOX", &uids);
	is_int(nix, n, "maildir, %zu: the index has %zu records", n, n);
	ok(nix == n && uids[n - 1] == it[n - 1].done.uid,
	    "maildir, %zu: the last record is the last UID", n);
	ok(t_read_is(st, "INBOX", it[n / 2].done.uid, bodies[n / 2]),
	    "maildir, %zu: a message reads back through the store", n);
	ok(it[0].done.uidvalidity != 0 && strcmp(it[0].done.format,
	    "maildir") == 0, "maildir, %zu: uidvalidity and format set", n);
	free(uids);
	free(it);
	store_close(&st);
}

static void
test_mbox_n(size_t n)
{
	struct store *st;
	struct store_batch_item *it;
	char path[PATH_MAX];
	uint32_t *uids;
	size_t nix, all_ok = 0, read_ok = 0, order_ok = 1, froms = 0;
	FILE *fp;
	char line[1024];

	t_reset();
	t_user("mbox:~/mail:INBOX=~/inbox", false, 0);
	st = t_open();
	it = t_items(n, 0, "INBOX");
	store_deliver_batch(st, it, n);
	for (size_t i = 0; i < n; i++) {
		all_ok += it[i].result == STORE_OK;
		if (i > 0 && it[i].done.uid != it[i - 1].done.uid + 1)
			order_ok = 0;
		read_ok += t_read_is(st, "INBOX", it[i].done.uid, bodies[i]);
	}
	is_int(all_ok, n, "mbox, %zu in a batch: every one STORE_OK", n);
	is_int(it[0].done.uid, 1, "mbox, %zu: the first gets UID 1", n);
	ok(order_ok, "mbox, %zu: UIDs increase by one in the order given", n);
	is_int(read_ok, n, "mbox, %zu: each reads back with its bytes", n);
	snprintf(path, sizeof(path), "%s/home/inbox", top);
	if ((fp = fopen(path, "r")) != NULL) {
		while (fgets(line, sizeof(line), fp) != NULL)
			froms += strncmp(line, "From alice@example.org ",
			    23) == 0;
		fclose(fp);
	}
	is_int(froms, n, "mbox, %zu: %zu From_ lines with the sender", n, n);
	nix = t_index_uids(st, "INBOX", &uids);
	is_int(nix, n, "mbox, %zu: the index has %zu records", n, n);
	ok(strcmp(it[0].done.format, "mbox") == 0, "mbox: format set");
	free(uids);
	free(it);
	store_close(&st);
}

/* Quota: the messages are 100 bytes each (bodies padded below); a limit
 * of 250 takes two, refuses the third, and takes a smaller fourth that
 * still fits: exactly at the limit (N) is in, one byte over (N + 1) out. */
static void
test_quota(const char *location, const char *name)
{
	static char small[] = "Subject: s\n\n1234567890123456789012345678"
	    "901234567890\n";
	struct store *st;
	struct store_batch_item *it;
	uint32_t *uids;
	size_t nix, fourth = strlen(small);

	for (int limit_plus = 0; limit_plus < 2; limit_plus++) {
		/* 200 taken by the first two; the fourth is fourth bytes: a
		 * limit of 200 + fourth takes it (N), 200 + fourth - 1 does
		 * not (N + 1 over). */
		uint64_t limit = 200 + fourth - (uint64_t)limit_plus;

		t_reset();
		t_user(location, true, limit);
		st = t_open();
		it = t_items(4, 0, "INBOX");
		for (int i = 0; i < 3; i++)
			it[i].d.len = 100;
		it[3].d.msg = (const unsigned char *)small;
		it[3].d.len = fourth;
		store_deliver_batch(st, it, 4);
		ok(it[0].result == STORE_OK && it[1].result == STORE_OK,
		    "%s quota %llu: the first two fit", name,
		    (unsigned long long)limit);
		ok(it[2].result == STORE_OVERQUOTA && strstr(it[2].error,
		    "mailbox is full") != NULL, "%s quota %llu: the third "
		    "is over quota (%s)", name, (unsigned long long)limit,
		    it[2].error);
		if (limit_plus == 0)
			ok(it[3].result == STORE_OK && it[3].done.uid ==
			    it[1].done.uid + 1, "%s quota %llu: the fourth "
			    "fits exactly and gets the next UID", name,
			    (unsigned long long)limit);
		else
			ok(it[3].result == STORE_OVERQUOTA, "%s quota %llu: "
			    "the fourth is one byte over", name,
			    (unsigned long long)limit);
		nix = t_index_uids(st, "INBOX", &uids);
		is_int(nix, 3 - (size_t)limit_plus, "%s quota %llu: only "
		    "the ones that fit are indexed", name,
		    (unsigned long long)limit);
		free(uids);
		free(it);
		store_close(&st);
	}
}

/* The records of a batch overflow the 64 KiB map mid-transaction: the
 * transaction runs again (the files are linked already) and every message
 * ends up once, with the UIDs of its file name. */
static void
test_map_full(void)
{
	struct store *st;
	struct store_batch_item *it;
	struct mindex_stats ms;
	static char big[T_N][20000];
	char dir[PATH_MAX];
	const char *err;
	uint32_t *uids;
	size_t nix, count, all_ok = 0, bytes_ok = 0;
	uint64_t before;

	if (conf_set("index_map_size", "65536", &err) < 0)
		bail("conf_set: %s", err);
	t_reset();
	t_user("maildir:~/Maildir", false, 0);
	st = t_open();
	if (mindex_stats(store_index(st), &ms, &err) < 0)
		bail("mindex_stats: %s", err);
	before = ms.map_size;
	it = t_items(32, 0, "INBOX");
	for (size_t i = 0; i < 32; i++) {
		/* Large cached fields: about 16 KiB of record each. */
		int n = snprintf(big[i], sizeof(big[i]), "Subject: %zu ", i);

		memset(big[i] + n, 'a' + (int)(i % 26), 7000);
		n += 7000;
		n += snprintf(big[i] + n, sizeof(big[i]) - (size_t)n,
		    "\nTo: ");
		memset(big[i] + n, 'x', 7000);
		n += 7000;
		n += snprintf(big[i] + n, sizeof(big[i]) - (size_t)n,
		    "\n\nbody %zu\n", i);
		it[i].d.msg = (const unsigned char *)big[i];
		it[i].d.len = (size_t)n;
	}
	store_deliver_batch(st, it, 32);
	if (mindex_stats(store_index(st), &ms, &err) < 0)
		bail("mindex_stats: %s", err);
	ok(before == 65536 && ms.map_size > before, "the map grew from %llu "
	    "to %llu during the batch", (unsigned long long)before,
	    (unsigned long long)ms.map_size);
	snprintf(dir, sizeof(dir), "%s/home/Maildir", top);
	for (size_t i = 0; i < 32; i++) {
		struct buf b;

		all_ok += it[i].result == STORE_OK &&
		    it[i].done.uid == (uint32_t)i + 1;
		buf_init(&b, 1 << 20);
		if (t_md_file(dir, it[i].done.uid, &b, NULL) == 1 &&
		    b.len == it[i].d.len && memcmp(b.data, it[i].d.msg,
		    b.len) == 0)
			bytes_ok++;
		buf_free(&b);
	}
	is_int(all_ok, 32, "full map: all 32 STORE_OK with UIDs 1..32");
	is_int(bytes_ok, 32, "full map: each file once, with its bytes");
	(void)t_md_file(dir, 1, NULL, &count);
	is_int(count, 32, "full map: 32 files in new/, no leftover");
	nix = t_index_uids(st, "INBOX", &uids);
	is_int(nix, 32, "full map: 32 records");
	ok(nix == 32 && uids[0] == 1 && uids[31] == 32,
	    "full map: records for UIDs 1..32");
	free(uids);
	free(it);
	store_close(&st);
	if (conf_set("index_map_size", "1048576", &err) < 0)
		bail("conf_set: %s", err);
}

/* An index that cannot grow: the messages are stored all the same
 * (STORE_OK, as store_deliver), and the next sync indexes them. */
static void
test_index_full(void)
{
	struct store *st;
	struct store_batch_item *it;
	static char big[8][20000];
	const char *err;
	uint32_t *uids;
	size_t nix, all_ok = 0, count;
	char dir[PATH_MAX];

	if (conf_set("index_map_size", "65536", &err) < 0 ||
	    conf_set("index_max_size", "65536", &err) < 0)
		bail("conf_set: %s", err);
	t_reset();
	t_user("maildir:~/Maildir", false, 0);
	st = t_open();
	it = t_items(8, 0, "INBOX");
	for (size_t i = 0; i < 8; i++) {
		int n = snprintf(big[i], sizeof(big[i]), "Subject: ");

		memset(big[i] + n, 'q', 7500);
		n += 7500;
		n += snprintf(big[i] + n, sizeof(big[i]) - (size_t)n,
		    "\nCc: ");
		memset(big[i] + n, 'r', 7500);
		n += 7500;
		n += snprintf(big[i] + n, sizeof(big[i]) - (size_t)n,
		    "\n\n%zu\n", i);
		it[i].d.msg = (const unsigned char *)big[i];
		it[i].d.len = (size_t)n;
	}
	store_deliver_batch(st, it, 8);
	for (size_t i = 0; i < 8; i++)
		all_ok += it[i].result == STORE_OK;
	is_int(all_ok, 8, "index full: all 8 stored (STORE_OK)");
	snprintf(dir, sizeof(dir), "%s/home/Maildir", top);
	(void)t_md_file(dir, 1, NULL, &count);
	is_int(count, 8, "index full: 8 files in new/");
	store_close(&st);
	if (conf_set("index_map_size", "1048576", &err) < 0 ||
	    conf_set("index_max_size", "4294967296", &err) < 0)
		bail("conf_set: %s", err);
	st = t_open();
	nix = t_index_uids(st, "INBOX", &uids);
	is_int(nix, 8, "index full: a sync with room indexes all 8");
	free(uids);
	free(it);
	store_close(&st);
}

/* Runs of two folders in one batch, and batches mixed with single
 * deliveries: UIDs go on from where the other left them. */
static void
test_folders_mixed(const char *location, const char *name)
{
	struct store *st;
	struct store_batch_item *it;
	struct store_delivered one;
	const char *err;
	uint32_t *uids;
	size_t nix;

	t_reset();
	t_user(location, false, 0);
	st = t_open();
	if (store_deliver(st, &(struct store_delivery){ "INBOX", "", 1,
	    (const unsigned char *)bodies[0], strlen(bodies[0]) }, &one,
	    &err) != STORE_OK)
		bail("store_deliver: %s", err);
	if (store_folder_create(st, "Sub", &err) != STORE_OP_OK)
		bail("create: %s", err);
	it = t_items(5, 1, "INBOX");
	it[2].d.folder = "Sub";
	it[3].d.folder = "Sub";
	store_deliver_batch(st, it, 5);
	ok(it[0].result == STORE_OK && it[0].done.uid == 2 &&
	    it[1].done.uid == 3, "%s: after a single delivery the batch goes "
	    "on at UID 2", name);
	ok(it[2].result == STORE_OK && it[2].done.uid == 1 &&
	    it[3].done.uid == 2, "%s: the run for Sub gets its own UIDs",
	    name);
	ok(it[4].result == STORE_OK && it[4].done.uid == 4,
	    "%s: back to INBOX, UID 4", name);
	nix = t_index_uids(st, "Sub", &uids);
	is_int(nix, 2, "%s: Sub indexes 2", name);
	free(uids);
	ok(t_read_is(st, "Sub", 2, bodies[4]), "%s: Sub's UID 2 is the "
	    "fourth item", name);
	if (store_deliver(st, &(struct store_delivery){ "INBOX", "", 1,
	    (const unsigned char *)bodies[9], strlen(bodies[9]) }, &one,
	    &err) != STORE_OK)
		bail("store_deliver: %s", err);
	is_int(one.uid, 5, "%s: a single delivery after it gets UID 5", name);
	it[0].d.folder = "bad/../name";
	store_deliver_batch(st, it, 1);
	is_int(it[0].result, STORE_PERMFAIL, "%s: a refused folder name is "
	    "PERMFAIL (%s)", name, it[0].error);
	free(it);
	store_close(&st);
}

int
main(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(top, sizeof(top), "/tmp/loft-storebatch-XXXXXX");
	if (mkdtemp(top) == NULL)
		bail("mkdtemp");
	for (size_t i = 0; i < T_N; i++) {
		int n = snprintf(bodies[i], sizeof(bodies[i]),
		    "Subject: message %zu\nFrom: a@b\n\nline one of %zu\n"
		    "From the middle\n", i, i);

		/* Pad to 100 bytes for the quota test. */
		while (n < 99)
			bodies[i][n++] = 'p';
		bodies[i][n++] = '\n';
		bodies[i][n] = '\0';
	}
	test_maildir_n(1);
	test_maildir_n(2);
	test_maildir_n(32);
	test_mbox_n(1);
	test_mbox_n(32);
	test_quota("maildir:~/Maildir", "maildir");
	test_quota("mbox:~/mail:INBOX=~/inbox", "mbox");
	test_map_full();
	test_index_full();
	test_folders_mixed("maildir:~/Maildir", "maildir");
	test_folders_mixed("mbox:~/mail:INBOX=~/inbox", "mbox");
	t_user("maildir:~/Maildir", false, 0);
	free(user.name);
	free(user.pwhash);
	free(user.home);
	free(user.mail_location);
	free(user.fields);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", top);
	if (system(cmd) != 0)
		diag("cannot remove %s", top);
	conf_reset();
	return done_testing();
}
