/*
 * Unit tests for lib/maildir.c: folder name <-> path mapping and every
 * refused form, creating maildirs, delivery through tmp/ into new/ (bytes
 * on disk, never overwriting, disk full), UID renames, scanning, file
 * name parsing, flags, listing folders, dovecot-keywords (each line form,
 * every prefix of a file, the read limit at N and N + 1, 26 letters and a
 * 27th, names of 255 and 256 bytes, the mtime growing, Dovecot's lock
 * held, free and stale). Works in a fresh
 * directory under $TMPDIR (or /tmp) and removes it at the end.
 */
#include "config.h"
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <ftw.h>
#include <regex.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "buf.h"
#include "compat/compat.h"
#include "maildir.h"
#include "mindex.h"
#include "tap.h"

static char top[256];
static char md[300];	/* top/Maildir */

/* helpers */

static char *
tpath(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
tpath(const char *fmt, ...)
{
	static char bufs[4][1200];
	static int n;
	char rel[900];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rel, sizeof(rel), fmt, ap);
	va_end(ap);
	n = (n + 1) % 4;
	snprintf(bufs[n], sizeof(bufs[n]), "%s/%s", top, rel);
	return bufs[n];
}

static void
put_file(const char *path, const char *data)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, data, strlen(data)) != (ssize_t)strlen(data))
		bail("cannot write %s: %s", path, strerror(errno));
	close(fd);
}

/* get_file: contents into buf (size bufsize); length or -1. */
static ssize_t
get_file(const char *path, unsigned char *buf, size_t bufsize)
{
	ssize_t n;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return -1;
	n = read(fd, buf, bufsize);
	close(fd);
	return n;
}

static int
mode_of(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return -1;
	return (int)(st.st_mode & 07777);
}

static int
is_dir(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int
gone(const char *path)
{
	struct stat st;

	return lstat(path, &st) < 0 && errno == ENOENT;
}

static int
count_entries(const char *dir)
{
	char cmd[1100];
	FILE *f;
	int n = -1;

	snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
	if ((f = popen(cmd, "r")) != NULL) {
		if (fscanf(f, "%d", &n) != 1)
			n = -1;
		pclose(f);
	}
	return n;
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

/* path mapping */

struct map {
	const char *root, *folder, *path;
};

static const struct map maps[] = {
	{ "/r", "INBOX", "/r" },
	{ "/r", "inbox", "/r" },
	{ "/r", "InBoX", "/r" },
	{ "/r/", "INBOX", "/r/" },
	{ "/r", "A", "/r/.A" },
	{ "/r/", "A", "/r/.A" },
	{ "/r", "A/B", "/r/.A.B" },
	{ "/r", "A/B/C", "/r/.A.B.C" },
	{ "/r", "INBOX/Sub", "/r/.INBOX.Sub" },
	{ "/r", "inbox/Sub", "/r/.INBOX.Sub" },
	{ "/r", "INBOXES", "/r/.INBOXES" },
	{ "/r", "Sub/inbox", "/r/.Sub.inbox" },
	{ "/r", "\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
	    "/r/.&U,BTFw-.&ZeVnLIqe-" },
	{ "/r", "&", "/r/.&-" },
	{ "/r", "a b~-", "/r/.a b~-" },
	{ "/r", "\xc2\xa0", "/r/.&AKA-" },
	{ "/r", "\xf0\x9f\x98\x80", "/r/.&2D3eAA-" },
};

struct refused {
	const char *folder, *why;
};

static const struct refused refusals[] = {
	{ "", "empty name" },
	{ "/", "starts with '/'" },
	{ "/A", "starts with '/'" },
	{ "A/", "ends with '/'" },
	{ "INBOX/", "ends with '/'" },
	{ "A//B", "empty part" },
	{ ".", "'.' and '..'" },
	{ "..", "'.' and '..'" },
	{ "A/./B", "'.' and '..'" },
	{ "A/..", "'.' and '..'" },
	{ "A.B", "separator on disk" },
	{ ".A", "separator on disk" },
	{ "A/B.", "separator on disk" },
	{ "A%", "wildcards" },
	{ "*", "wildcards" },
	{ "A\tB", "control character" },
	{ "\x01", "control character" },
	{ "\x1f", "control character" },
	{ "A\x7f", "control character" },
	{ "A\xc2\x80", "control character" },
	{ "A\xc2\x85", "control character" },
	{ "A\xc2\x9f", "control character" },
	{ "\xc3", "not valid UTF-8" },
	{ "A\xff", "not valid UTF-8" },
	{ "\xc0\xaf", "not valid UTF-8" },
	{ "\xed\xa0\x80", "not valid UTF-8" },
	{ "\xf4\x90\x80\x80", "not valid UTF-8" },
};

static void
test_path_map(void)
{
	char out[1200], name[600];
	const char *error;
	size_t i;

	for (i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
		error = NULL;
		is_int(maildir_folder_path(maps[i].root, maps[i].folder, out,
		    sizeof(out), &error), 0, "path of folder #%zu", i);
		is_string(out, maps[i].path, "path of folder #%zu", i);
	}
	for (i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
		error = NULL;
		is_int(maildir_folder_path("/r", refusals[i].folder, out,
		    sizeof(out), &error), -1, "refused: %s #%zu",
		    refusals[i].why, i);
		ok(error != NULL && strstr(error, refusals[i].why) != NULL,
		    "error says \"%s\" (%s)", refusals[i].why,
		    error ? error : "(null)");
	}

	/* 254 bytes + the dot is 255 on disk: N; one more: N+1. */
	memset(name, 'a', 254);
	name[254] = '\0';
	is_int(maildir_folder_path("/r", name, out, sizeof(out), &error), 0,
	    "255-byte directory name allowed");
	is_int(strlen(out), 3 + 255, "255-byte directory name in path");
	name[254] = 'a';
	name[255] = '\0';
	is_int(maildir_folder_path("/r", name, out, sizeof(out), &error), -1,
	    "256-byte directory name refused");
	ok(strstr(error, "longer than 255") != NULL, "error says why (%s)",
	    error);
	/* "a" + 94 "ä" is ".a&" + 251 base64 + "-" = 255; "aa" ... = 256. */
	name[0] = 'a';
	for (i = 0; i < 94; i++)
		memcpy(name + 1 + 2 * i, "\xc3\xa4", 2);
	name[1 + 2 * 94] = '\0';
	is_int(maildir_folder_path("/r", name, out, sizeof(out), &error), 0,
	    "255 bytes on disk after modified UTF-7");
	is_int(strlen(out), 3 + 255, "encoded length 255");
	memmove(name + 1, name, strlen(name) + 1);
	is_int(maildir_folder_path("/r", name, out, sizeof(out), &error), -1,
	    "256 bytes on disk after modified UTF-7 refused");
	memset(name, 'a', 511);
	name[511] = '\0';
	is_int(maildir_folder_path("/r", name, out, sizeof(out), &error), -1,
	    "511-byte name refused");

	/* "/r/.A" is 5 bytes: outsize 6 fits, 5 does not. */
	is_int(maildir_folder_path("/r", "A", out, 6, &error), 0,
	    "path fits outsize exactly");
	is_int(maildir_folder_path("/r", "A", out, 5, &error), -1,
	    "path one byte over outsize refused");
	ok(strstr(error, "too long") != NULL, "error says too long (%s)",
	    error);
	is_int(maildir_folder_path("", "A", out, sizeof(out), &error), -1,
	    "empty root refused");
}

struct name_case {
	const char *dirent, *folder;	/* folder NULL: refused */
};

static const struct name_case names[] = {
	{ ".A", "A" },
	{ ".A.B", "A/B" },
	{ ".A.B.C", "A/B/C" },
	{ ".&U,BTFw-.&ZeVnLIqe-",
	    "\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e" },
	{ ".INBOX.Sub", "INBOX/Sub" },
	{ ".INBOXES", "INBOXES" },
	{ ".&-", "&" },
	{ ".&2D3eAA-", "\xf0\x9f\x98\x80" },
	{ "A", NULL },
	{ "", NULL },
	{ ".", NULL },
	{ "..", NULL },
	{ "..A", NULL },
	{ ".A.", NULL },
	{ ".A..B", NULL },
	{ ".INBOX", NULL },
	{ ".inbox", NULL },
	{ ".Inbox", NULL },
	{ ".inbox.Sub", NULL },
	{ ".&AGE-", NULL },
	{ ".&AOQ-&APY-", NULL },
	{ ".A&", NULL },
	{ ".A%", NULL },
	{ ".A*", NULL },
	{ ".A\tB", NULL },
	{ ".&AAk-", NULL },
	{ ".&AIU-", NULL },
	{ ".\xc3\xa4", NULL },
	{ ".A/B", NULL },
};

static void
test_folder_name(void)
{
	char out[1200], d[300];
	size_t i;
	int r;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		out[0] = '\0';
		r = maildir_folder_name(names[i].dirent, out, sizeof(out));
		if (names[i].folder != NULL) {
			is_int(r, 0, "folder name of %s", names[i].dirent);
			is_string(out, names[i].folder, "folder name of %s",
			    names[i].dirent);
		} else
			is_int(r, -1, "not a folder: \"%s\"",
			    names[i].dirent);
	}
	/* Every path the forward table makes maps back. */
	for (i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
		const char *slash = strrchr(maps[i].path, '/');

		if (slash[1] != '.')
			continue;
		r = maildir_folder_name(slash + 1, out, sizeof(out));
		is_int(r, 0, "reverse of %s", slash + 1);
		is_string(out, strncmp(maps[i].folder, "inbox/", 6) == 0 ?
		    "INBOX/Sub" : maps[i].folder, "reverse of %s", slash + 1);
	}
	is_int(maildir_folder_name(".AB", out, 3), 0, "name fits outsize");
	is_int(maildir_folder_name(".AB", out, 2), -1,
	    "name one over outsize refused");
	d[0] = '.';
	memset(d + 1, 'a', 254);
	d[255] = '\0';
	is_int(maildir_folder_name(d, out, sizeof(out)), 0,
	    "255-byte entry accepted");
	d[255] = 'a';
	d[256] = '\0';
	is_int(maildir_folder_name(d, out, sizeof(out)), -1,
	    "256-byte entry refused");
}

/* creating */

static void
test_create(void)
{
	const char *error;

	is_int(maildir_create(tpath("Maildir"), false, &error), 0,
	    "create INBOX maildir");
	ok(is_dir(tpath("Maildir/tmp")) && is_dir(tpath("Maildir/new")) &&
	    is_dir(tpath("Maildir/cur")), "tmp, new, cur exist");
	is_int(mode_of(tpath("Maildir")), 0700, "root is 0700");
	is_int(mode_of(tpath("Maildir/cur")), 0700, "cur is 0700");
	ok(gone(tpath("Maildir/maildirfolder")), "no maildirfolder in root");
	is_int(maildir_create(tpath("Maildir/.A.B"), true, &error), 0,
	    "create subfolder");
	is_int(mode_of(tpath("Maildir/.A.B/new")), 0700, "sub new is 0700");
	is_int(mode_of(tpath("Maildir/.A.B/maildirfolder")), 0600,
	    "maildirfolder is a 0600 file");
	put_file(tpath("Maildir/.A.B/new/keep"), "x");
	is_int(maildir_create(tpath("Maildir/.A.B"), true, &error), 0,
	    "create again succeeds");
	ok(!gone(tpath("Maildir/.A.B/new/keep")), "and keeps what is there");
	is_int(maildir_create(tpath("deep/er/still/Maildir"), false, &error),
	    0, "parents are created");
	is_int(mode_of(tpath("deep/er")), 0700, "parents are 0700");
	ok(is_dir(tpath("deep/er/still/Maildir/cur")), "deep cur exists");
	put_file(tpath("plainfile"), "x");
	is_int(maildir_create(tpath("plainfile"), false, &error), -1,
	    "a file in the way is an error");
	ok(strstr(error, "plainfile") != NULL, "error names it (%s)", error);
	is_int(maildir_create(tpath("plainfile/sub"), false, &error), -1,
	    "a file as parent is an error");
}

/* delivery */

static const unsigned char msg[] =
    "From: a@example.org\r\nSubject: x\r\n\r\nbody\0with NUL\n";
#define MSGLEN (sizeof(msg) - 1)

static int
name_ok(const char *name, size_t size)
{
	char re_src[256];
	regex_t re;
	int r;

	snprintf(re_src, sizeof(re_src), "^[0-9]+\\.M[0-9]{6}P[0-9]+Q[0-9]+"
	    "R[0-9a-f]{16}\\.[^/:,]+,S=%zu$", size);
	if (regcomp(&re, re_src, REG_EXTENDED | REG_NOSUB) != 0)
		bail("regcomp");
	r = regexec(&re, name, 0, NULL, 0) == 0;
	regfree(&re);
	return r;
}

static unsigned
name_counter(const char *name)
{
	const char *q = strchr(name, 'Q');

	return q == NULL ? 0 : (unsigned)strtoul(q + 1, NULL, 10);
}

static void
test_deliver(void)
{
	unsigned char got[256];
	char *name = NULL, *name2 = NULL, *final = NULL, want[512];
	const char *error;
	struct maildir_name mn;

	is_int(maildir_tmp_write(md, msg, MSGLEN, true, &name, &error), 0,
	    "tmp write");
	ok(name != NULL && name_ok(name, MSGLEN), "unique name form: %s",
	    name);
	is_int(get_file(tpath("Maildir/tmp/%s", name), got, sizeof(got)),
	    MSGLEN, "tmp file has the length");
	is_mem(got, MSGLEN, msg, MSGLEN, "tmp file has the bytes");
	is_int(mode_of(tpath("Maildir/tmp/%s", name)), 0600, "tmp file 0600");
	is_int(maildir_name_parse(name, &mn), 0, "tmp name parses");
	ok(mn.has_size && mn.size == MSGLEN && mn.uid == 0 &&
	    mn.info == NULL, "tmp name: ,S= is the size, no uid");

	is_int(maildir_tmp_write(md, msg, MSGLEN, false, &name2, &error), 0,
	    "second tmp write");
	ok(strcmp(name, name2) != 0, "names differ");
	is_int(name_counter(name2), name_counter(name) + 1,
	    "counter goes up by one");

	is_int(maildir_tmp_to_new(md, name, 42, true, &final, &error), 0,
	    "tmp to new");
	snprintf(want, sizeof(want), "new/%s,U=42", name);
	is_string(final, want, "final location is new/NAME,U=42");
	is_int(get_file(tpath("Maildir/%s", want), got, sizeof(got)), MSGLEN,
	    "new file has the length");
	is_mem(got, MSGLEN, msg, MSGLEN, "new file has exactly the bytes");
	ok(gone(tpath("Maildir/tmp/%s", name)), "tmp file is gone");
	is_int(maildir_name_parse(final + 4, &mn), 0, "final name parses");
	ok(mn.uid == 42 && mn.has_size && mn.size == MSGLEN &&
	    mn.base_len == strlen(final + 4), "final name: uid 42, size");
	free(final);
	final = NULL;

	/* Never overwrite: the target exists. */
	put_file(tpath("Maildir/new/%s,U=7", name2), "other");
	errno = 0;
	is_int(maildir_tmp_to_new(md, name2, 7, true, &final, &error), -1,
	    "existing target refused");
	is_int(errno, EEXIST, "errno is EEXIST");
	ok(final == NULL, "no final location on error");
	is_int(get_file(tpath("Maildir/new/%s,U=7", name2), got,
	    sizeof(got)), 5, "existing file untouched (length)");
	is_mem(got, 5, "other", 5, "existing file untouched (bytes)");
	is_int(get_file(tpath("Maildir/tmp/%s", name2), got, sizeof(got)),
	    MSGLEN, "tmp file still there for a retry");
	is_int(maildir_tmp_to_new(md, name2, 8, false, &final, &error), 0,
	    "retry under another uid works");
	ok(gone(tpath("Maildir/tmp/%s", name2)), "tmp file gone after retry");
	free(final);
	free(name2);

	errno = 0;
	is_int(maildir_tmp_to_new(md, name, 43, true, &final, &error), -1,
	    "tmp file no longer there");
	is_int(errno, ENOENT, "errno ENOENT");
	is_int(maildir_tmp_to_new(md, "../x", 1, true, &final, &error), -1,
	    "tmp name with '/' refused");
	is_int(maildir_tmp_to_new(md, ".x", 1, true, &final, &error), -1,
	    "dot tmp name refused");
	is_int(maildir_tmp_to_new(md, "", 1, true, &final, &error), -1,
	    "empty tmp name refused");
	free(name);

	name = (char *)1;
	is_int(maildir_tmp_write(tpath("nonexistent"), msg, MSGLEN, true,
	    &name, &error), -1, "tmp write into a missing maildir fails");
	ok(name == NULL && strstr(error, "nonexistent") != NULL,
	    "no name, error names the path (%s)", error);

	is_int(maildir_tmp_write(md, msg, 0, true, &name, &error), 0,
	    "empty message");
	ok(name_ok(name, 0), "empty message has ,S=0");
	is_int(get_file(tpath("Maildir/tmp/%s", name), got, sizeof(got)), 0,
	    "empty file on disk");
	unlink(tpath("Maildir/tmp/%s", name));
	free(name);
}

/* test_full: a file size limit makes write fail with EFBIG; the partial
 * file must be removed. Limit 20: 20 bytes fit (N), 21 do not (N+1). */
static void
test_full(void)
{
	struct rlimit old, lim;
	const char *error;
	char *name = NULL;
	int before, r, r2, e;

	signal(SIGXFSZ, SIG_IGN);
	if (getrlimit(RLIMIT_FSIZE, &old) < 0)
		bail("getrlimit");
	before = count_entries(tpath("Maildir/tmp"));
	lim = old;
	lim.rlim_cur = 20;
	if (setrlimit(RLIMIT_FSIZE, &lim) < 0)
		bail("setrlimit");
	/* Nothing may be printed while the limit holds: stdout may be a
	 * file. */
	r = maildir_tmp_write(md, msg, 20, true, &name, &error);
	if (r == 0)
		unlink(tpath("Maildir/tmp/%s", name));
	free(name);
	name = NULL;
	r2 = maildir_tmp_write(md, msg, 21, true, &name, &error);
	e = errno;
	setrlimit(RLIMIT_FSIZE, &old);
	is_int(r, 0, "message at the file size limit written");
	is_int(r2, -1, "message one byte over the limit fails");
	is_int(e, EFBIG, "errno EFBIG (caller says disk full)");
	ok(name == NULL, "no name on error");
	ok(strstr(error, "write") != NULL, "error says write (%s)", error);
	is_int(count_entries(tpath("Maildir/tmp")), before,
	    "partial file removed from tmp/");
	signal(SIGXFSZ, SIG_DFL);
}

/* test_host: in a UTS namespace, a host name with the escaped bytes. */
static void
test_host(void)
{
	const char *host = "a/b:c,d\\e f";
	const char *want = ".a\\057b\\072c\\054d\\134e\\040f,S=3";
	const char *error;
	char *name;
	pid_t pid;
	int status;

	fflush(stdout);
	if ((pid = fork()) == 0) {
		if (unshare(CLONE_NEWUTS) < 0 ||
		    sethostname(host, strlen(host)) < 0)
			_exit(77);
		if (maildir_tmp_write(md, msg, 3, false, &name,
		    &error) < 0)
			_exit(1);
		unlink(tpath("Maildir/tmp/%s", name));
		_exit(strstr(name, want) != NULL &&
		    strlen(strstr(name, want)) == strlen(want) ? 0 : 2);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		bail("fork");
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		ok(1, "# SKIP cannot set a host name here");
	else
		ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		    "host name escaped as %s", want);
}

/* renaming */

static void
check_rename(const char *from, uint32_t uid, const char *to)
{
	char *final = NULL;
	const char *error = "";
	unsigned char got[16];

	put_file(tpath("Maildir/%s", from), "abc");
	is_int(maildir_rename_uid(md, from, uid, true, &final,
	    &error), 0, "rename %s to uid %u (%s)", from, uid, error);
	is_string(final, to, "new location of %s", from);
	is_int(get_file(tpath("Maildir/%s", to), got, sizeof(got)), 3,
	    "file at %s", to);
	if (strcmp(from, to) != 0)
		ok(gone(tpath("Maildir/%s", from)), "old name gone");
	unlink(tpath("Maildir/%s", to));
	free(final);
}

static void
test_rename(void)
{
	static const char *const bad[] = {
		"tmp/x", "new/", "new/../x", "x", "new/.x", "cur/a/b", "new",
		"/new/x",
	};
	const char *error;
	char *final;
	unsigned char got[16];
	size_t i;

	check_rename("new/1.M1P1Q1Rab.host,S=3,U=42", 43,
	    "new/1.M1P1Q1Rab.host,S=3,U=43");
	check_rename("new/1.M1P1Q1Rab.host,S=3,U=42", 42,
	    "new/1.M1P1Q1Rab.host,S=3,U=42");
	check_rename("cur/1.M1P1Q1Rab.host,S=3,U=5:2,FS", 6,
	    "cur/1.M1P1Q1Rab.host,S=3,U=6:2,FS");
	check_rename("cur/1732870000.12345_0.host:2,S", 9,
	    "cur/1732870000.12345_0.host,U=9:2,S");
	check_rename("new/1732870000.12345_0.host", 10,
	    "new/1732870000.12345_0.host,U=10");
	check_rename("new/B,U=5,S=3", 4294967295u, "new/B,U=4294967295,S=3");
	check_rename("new/C,U=99999999999", 1, "new/C,U=1");

	put_file(tpath("Maildir/new/X,U=1"), "one");
	put_file(tpath("Maildir/new/X,U=2"), "two");
	errno = 0;
	final = NULL;
	is_int(maildir_rename_uid(md, "new/X,U=1", 2, true, &final, &error),
	    -1, "rename onto an existing file refused");
	is_int(errno, EEXIST, "errno EEXIST");
	ok(final == NULL, "no location on error");
	ok(get_file(tpath("Maildir/new/X,U=1"), got, sizeof(got)) == 3 &&
	    memcmp(got, "one", 3) == 0, "source untouched");
	ok(get_file(tpath("Maildir/new/X,U=2"), got, sizeof(got)) == 3 &&
	    memcmp(got, "two", 3) == 0, "target untouched");
	unlink(tpath("Maildir/new/X,U=1"));
	unlink(tpath("Maildir/new/X,U=2"));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errno = 0;
		is_int(maildir_rename_uid(md, bad[i], 1, true, &final,
		    &error), -1, "bad location \"%s\" refused", bad[i]);
		is_int(errno, EINVAL, "errno EINVAL for \"%s\"", bad[i]);
	}
	errno = 0;
	is_int(maildir_rename_uid(md, "new/missing,U=1", 2, true, &final,
	    &error), -1, "missing file");
	is_int(errno, ENOENT, "errno ENOENT");
}

/* scanning */

struct seen {
	char list[1024];
	int calls, stop_after, ret;
};

static int
scan_cb(const char *sub, const char *name, void *ctx)
{
	struct seen *s = ctx;
	char item[300];

	snprintf(item, sizeof(item), "%s/%s|", sub, name);
	strlcat(s->list, item, sizeof(s->list));
	s->calls++;
	return s->calls == s->stop_after ? s->ret : 0;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* sorted: the '|'-separated items of list, sorted, in out. */
static void
sorted(const char *list, char *out, size_t outsize)
{
	char copy[1024], *items[64], *p, *tok;
	size_t n = 0, i;

	snprintf(copy, sizeof(copy), "%s", list);
	for (p = copy; n < 64 && (tok = strsep(&p, "|")) != NULL; )
		if (*tok != '\0')
			items[n++] = tok;
	qsort(items, n, sizeof(items[0]), cmp_str);
	out[0] = '\0';
	for (i = 0; i < n; i++) {
		strlcat(out, items[i], outsize);
		strlcat(out, "|", outsize);
	}
}

static void
test_scan(void)
{
	const char *error;
	struct seen s;
	char got[1024], md_scan[1200];

	snprintf(md_scan, sizeof(md_scan), "%s", tpath("scan"));
	if (maildir_create(md_scan, false, &error) < 0)
		bail("create: %s", error);
	put_file(tpath("scan/new/a"), "1");
	put_file(tpath("scan/new/b,S=1"), "1");
	put_file(tpath("scan/new/.hidden"), "1");
	mkdir(tpath("scan/new/adir"), 0700);
	put_file(tpath("scan/cur/c:2,S"), "1");
	put_file(tpath("scan/cur/.dot:2,S"), "1");
	if (symlink("c:2,S", tpath("scan/cur/link")) < 0)
		bail("symlink");
	put_file(tpath("scan/tmp/t"), "1");

	memset(&s, 0, sizeof(s));
	is_int(maildir_scan(md_scan, scan_cb, &s, &error), 0, "scan");
	sorted(s.list, got, sizeof(got));
	is_string(got, "cur/c:2,S|new/a|new/b,S=1|",
	    "scan sees new and cur files, no dot files, dirs, links or tmp");
	is_int(s.calls, 3, "three callbacks");
	ok(strncmp(s.list, "new/", 4) == 0 &&
	    strstr(s.list, "cur/c:2,S|") == s.list + strlen(s.list) - 10,
	    "new/ before cur/ (%s)", s.list);

	memset(&s, 0, sizeof(s));
	s.stop_after = 1;
	s.ret = 1;
	is_int(maildir_scan(md_scan, scan_cb, &s, &error), 0,
	    "stop: returns 0");
	is_int(s.calls, 1, "stop after the first");
	memset(&s, 0, sizeof(s));
	s.stop_after = 2;
	s.ret = -1;
	is_int(maildir_scan(md_scan, scan_cb, &s, &error), -1,
	    "callback error");
	is_int(s.calls, 2, "no call after the error");
	ok(strstr(error, "stopped by callback") != NULL, "error says so (%s)",
	    error);
	rmdir(tpath("scan/new/adir"));
	unlink(tpath("scan/cur/c:2,S"));
	unlink(tpath("scan/cur/.dot:2,S"));
	unlink(tpath("scan/cur/link"));
	rmdir(tpath("scan/cur"));
	memset(&s, 0, sizeof(s));
	errno = 0;
	is_int(maildir_scan(md_scan, scan_cb, &s, &error), -1, "missing cur/");
	is_int(errno, ENOENT, "errno ENOENT");
	ok(strstr(error, "scan/cur") != NULL, "error names cur (%s)", error);
}

/* file names */

struct parse_case {
	const char *name;
	int ret;
	size_t base_len;
	uint32_t uid;
	int has_size;
	uint64_t size;
	uint32_t flags;
	const char *info;
};

#define F_ALL (MINDEX_F_DRAFT | MINDEX_F_FLAGGED | MINDEX_F_FORWARDED | \
    MINDEX_F_ANSWERED | MINDEX_F_SEEN | MINDEX_F_DELETED)

static const struct parse_case parses[] = {
	{ "1732870000.12345_0.host", 0, 23, 0, 0, 0, 0, NULL },
	{ "1732870000.M1P2Q3R00ff.host,S=1234", 0, 34, 0, 1, 1234, 0, NULL },
	{ "1.M1P2Q3R0.host,S=1234,U=42", 0, 27, 42, 1, 1234, 0, NULL },
	{ "1.M1P2Q3R0.host,S=1234,U=42:2,FS", 0, 27, 42, 1, 1234,
	    MINDEX_F_FLAGGED | MINDEX_F_SEEN, "FS" },
	{ "1035478339.M629185P30113.host,S=1234,W=1260:2,Sab", 0, 43, 0, 1,
	    1234, MINDEX_F_SEEN, "Sab" },
	{ "1.M1.host,W=1260,S=5:2,", 0, 20, 0, 1, 5, 0, "" },
	{ "x:2,DFPRST", 0, 1, 0, 0, 0, F_ALL, "DFPRST" },
	{ "x:2,D", 0, 1, 0, 0, 0, MINDEX_F_DRAFT, "D" },
	{ "x:2,P", 0, 1, 0, 0, 0, MINDEX_F_FORWARDED, "P" },
	{ "x:2,R", 0, 1, 0, 0, 0, MINDEX_F_ANSWERED, "R" },
	{ "x:2,T", 0, 1, 0, 0, 0, MINDEX_F_DELETED, "T" },
	{ "x:2,sfz", 0, 1, 0, 0, 0, 0, "sfz" },
	{ "x:1,S", 0, 1, 0, 0, 0, 0, NULL },
	{ "x:S", 0, 1, 0, 0, 0, 0, NULL },
	{ "x,S=", 0, 4, 0, 0, 0, 0, NULL },
	{ "x,S=12x", 0, 7, 0, 0, 0, 0, NULL },
	{ "x,S=-1", 0, 6, 0, 0, 0, 0, NULL },
	{ "x,S=18446744073709551615", 0, 24, 0, 1, UINT64_MAX, 0, NULL },
	{ "x,S=18446744073709551616", 0, 24, 0, 0, 0, 0, NULL },
	{ "x,U=4294967295", 0, 14, 4294967295u, 0, 0, 0, NULL },
	{ "x,U=4294967296", 0, 14, 0, 0, 0, 0, NULL },
	{ "x,U=0,S=1", 0, 9, 0, 1, 1, 0, NULL },
	{ "x,U=3,U=4", 0, 9, 3, 0, 0, 0, NULL },
	{ "x,s=5,u=6", 0, 9, 0, 0, 0, 0, NULL },
	{ "x:2,S,U=5", 0, 1, 0, 0, 0, MINDEX_F_SEEN, "S,U=5" },
	{ ".hidden", -1, 0, 0, 0, 0, 0, NULL },
	{ ".x,S=1,U=1:2,S", -1, 0, 0, 0, 0, 0, NULL },
	{ "", -1, 0, 0, 0, 0, 0, NULL },
};

static void
test_parse(void)
{
	const struct parse_case *c;
	struct maildir_name mn;
	size_t i;
	int r;

	for (i = 0; i < sizeof(parses) / sizeof(parses[0]); i++) {
		c = &parses[i];
		r = maildir_name_parse(c->name, &mn);
		if (c->ret < 0) {
			is_int(r, -1, "not a message: \"%s\"", c->name);
			continue;
		}
		ok(r == 0 && mn.base_len == c->base_len && mn.uid == c->uid &&
		    mn.has_size == (c->has_size != 0) && mn.size == c->size &&
		    mn.flags == c->flags, "parse %s", c->name);
		if (mn.base_len != c->base_len || mn.uid != c->uid ||
		    mn.size != c->size || mn.flags != c->flags)
			diag("got base_len %zu uid %u size %llu flags %#x",
			    mn.base_len, mn.uid, (unsigned long long)mn.size,
			    mn.flags);
		is_string(mn.info, c->info, "info of %s", c->name);
	}
}

struct info_case {
	uint32_t flags;
	const char *keep, *info;
};

static const struct info_case infos[] = {
	{ 0, NULL, "2," },
	{ MINDEX_F_SEEN, NULL, "2,S" },
	{ MINDEX_F_SEEN | MINDEX_F_FLAGGED, NULL, "2,FS" },
	{ F_ALL, NULL, "2,DFPRST" },
	{ MINDEX_F_ANSWERED | MINDEX_F_DRAFT, "", "2,DR" },
	{ MINDEX_F_SEEN, "ba", "2,Sab" },
	{ MINDEX_F_SEEN, "2,FSab", "2,Sab" },
	{ 0, "zZ9,!a", "2,Zaz" },
	{ 0, "aa", "2,a" },
	{ 0x40 | 0x80000000u, NULL, "2," },
	{ MINDEX_F_DELETED, "ABCEGHIJKLMNOQUVWXYZabcdefghijklmnopqrstuvwxyz",
	    "2,ABCEGHIJKLMNOQTUVWXYZabcdefghijklmnopqrstuvwxyz" },
};

static void
test_info(void)
{
	char out[MAILDIR_INFO_SIZE], name[80];
	struct maildir_name mn;
	uint32_t f;
	size_t i;
	int bad = 0, status;
	pid_t pid;

	for (i = 0; i < sizeof(infos) / sizeof(infos[0]); i++) {
		maildir_flags_to_info(infos[i].flags, infos[i].keep, out,
		    sizeof(out));
		is_string(out, infos[i].info, "info #%zu", i);
	}
	for (f = 0; f <= F_ALL; f++) {
		if ((f & ~F_ALL) != 0)
			continue;
		maildir_flags_to_info(f, "ab", out, sizeof(out));
		snprintf(name, sizeof(name), "x,U=1:%s", out);
		if (maildir_name_parse(name, &mn) < 0 || mn.flags != f ||
		    strcmp(mn.info + strlen(mn.info) - 2, "ab") != 0)
			bad++;
	}
	is_int(bad, 0, "every flag combination survives info and parse");

	/* "2,DFPRST" is 8 bytes + NUL: outsize 9 fits (N). */
	maildir_flags_to_info(F_ALL, NULL, out, 9);
	is_string(out, "2,DFPRST", "info fits outsize exactly");
	fflush(stdout);
	if ((pid = fork()) == 0) {
		close(STDERR_FILENO);
		maildir_flags_to_info(F_ALL, NULL, out, 8);
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		bail("fork");
	ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
	    "outsize one short panics (N+1)");
}

/* listing folders */

static int
list_cb(const char *folder, void *ctx)
{
	struct seen *s = ctx;

	strlcat(s->list, folder, sizeof(s->list));
	strlcat(s->list, "|", sizeof(s->list));
	s->calls++;
	return s->calls == s->stop_after ? s->ret : 0;
}

static void
test_list(void)
{
	static const char *const dirs[] = {
		".A", ".A.B", ".&U,BTFw-", ".INBOX", ".bad%x", ".x..y",
		".&AGE-", "notdot",
	};
	const char *error;
	struct seen s;
	char got[1024], root[1200];
	size_t i;

	snprintf(root, sizeof(root), "%s", tpath("list"));
	if (maildir_create(root, false, &error) < 0)
		bail("create: %s", error);
	for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		if (maildir_create(tpath("list/%s", dirs[i]), true,
		    &error) < 0)
			bail("create: %s", error);
	put_file(tpath("list/.file"), "x");
	if (symlink(".A", tpath("list/.lnk")) < 0 ||
	    symlink("nowhere", tpath("list/.dangling")) < 0)
		bail("symlink");

	memset(&s, 0, sizeof(s));
	is_int(maildir_list_folders(root, list_cb, &s, &error), 0, "list");
	sorted(s.list, got, sizeof(got));
	is_string(got, "A|A/B|lnk|\xe5\x8f\xb0\xe5\x8c\x97|",
	    "list sees the folders loft accepts, symlinked ones too");
	memset(&s, 0, sizeof(s));
	s.stop_after = 1;
	s.ret = 1;
	is_int(maildir_list_folders(root, list_cb, &s, &error), 0,
	    "list stopped");
	is_int(s.calls, 1, "stopped after one");
	memset(&s, 0, sizeof(s));
	s.stop_after = 1;
	s.ret = -1;
	is_int(maildir_list_folders(root, list_cb, &s, &error), -1,
	    "list callback error");
	errno = 0;
	is_int(maildir_list_folders(tpath("nolist"), list_cb, &s, &error),
	    -1, "missing root");
	is_int(errno, ENOENT, "errno ENOENT");
}

struct ul_seen {
	char text[512];
	size_t n;
};

static void
ul_cb(uint32_t uid, const char *base, size_t base_len, void *ctx)
{
	struct ul_seen *u = ctx;
	size_t off = strlen(u->text);

	snprintf(u->text + off, sizeof(u->text) - off, "%u=%.*s;", uid,
	    (int)base_len, base);
	u->n++;
}

/* loft-uidlist: appended lines read back in order, a name with a line end
 * left out, lines that do not parse skipped, a cut last line ignored,
 * replace is the whole list. */
static void
test_uidlist(void)
{
	struct ul_seen u;
	struct buf b;
	char dir[PATH_MAX], path[PATH_MAX + 32];
	FILE *fp;

	snprintf(dir, sizeof(dir), "%s/ul", top);
	if (mkdir(dir, 0700) < 0)
		bail("mkdir %s", dir);
	memset(&u, 0, sizeof(u));
	ok(maildir_uidlist_read(dir, ul_cb, &u) == 0 && u.n == 0,
	    "uidlist: a missing list reads as empty");
	is_int(maildir_uidlist_size(dir), 0, "uidlist: size 0 when missing");
	buf_init(&b, (size_t)-1);
	maildir_uidlist_add(&b, 7, "1700.1_0.h", 10);
	maildir_uidlist_add(&b, 9, "bad\nname", 8);
	maildir_uidlist_add(&b, 8, "1700.2_0.h,S=5:2,S", 10);
	ok(maildir_uidlist_append(dir, &b, true) == 0, "uidlist: append");
	buf_truncate(&b, 0);
	maildir_uidlist_add(&b, 11, "1700.1_0.h", 10);
	ok(maildir_uidlist_append(dir, &b, false) == 0,
	    "uidlist: append again");
	snprintf(path, sizeof(path), "%s/loft-uidlist", dir);
	fp = fopen(path, "a");
	if (fp == NULL)
		bail("fopen %s", path);
	fputs("0 zero\nx 1\n12 a/b\n4294967296 big\n13 \n14 cut", fp);
	fclose(fp);
	memset(&u, 0, sizeof(u));
	ok(maildir_uidlist_read(dir, ul_cb, &u) == 0, "uidlist: read");
	is_string(u.text, "7=1700.1_0.h;8=1700.2_0.h;11=1700.1_0.h;",
	    "uidlist: good lines in order, the rest skipped");
	buf_truncate(&b, 0);
	maildir_uidlist_add(&b, 11, "1700.1_0.h", 10);
	ok(maildir_uidlist_replace(dir, &b, true) == 0, "uidlist: replace");
	memset(&u, 0, sizeof(u));
	maildir_uidlist_read(dir, ul_cb, &u);
	is_string(u.text, "11=1700.1_0.h;", "uidlist: replaced whole");
	is_int(maildir_uidlist_size(dir), 14, "uidlist: its size");
	snprintf(path, sizeof(path), "%s/loft-uidlist.tmp", dir);
	ok(access(path, F_OK) < 0, "uidlist: no temporary file left");
	buf_free(&b);
}

/*
 * dovecot-keywords (maildir_keywords.c).
 */

static void
test_kw_letters(void)
{
	struct maildir_name mn;

	ok(maildir_name_parse("1.M1P1.h,U=3:2,Sab", &mn) == 0 &&
	    mn.kw_letters == 3u && mn.flags == MINDEX_F_SEEN,
	    "kw_letters: a and b, S a flag");
	ok(maildir_name_parse("1.M1P1.h:2,FSz", &mn) == 0 &&
	    mn.kw_letters == 1u << 25, "kw_letters: z is bit 25");
	ok(maildir_name_parse("1.M1P1.h:2,ABCDRT", &mn) == 0 &&
	    mn.kw_letters == 0, "kw_letters: capitals are none");
	ok(maildir_name_parse("1.M1P1.h", &mn) == 0 && mn.kw_letters == 0,
	    "kw_letters: no info, none");
	ok(maildir_name_parse("1.M1P1.h:1,ab", &mn) == 0 && mn.kw_letters == 0,
	    "kw_letters: only after :2,");
}

/* Read dir's file written as text; names as "i=name,..." into out. */
static int
t_kw_read(const char *dir, const char *text, char *out, size_t size)
{
	struct maildir_keywords kw;
	const char *err;
	size_t o = 0;
	char path[1300];
	int ret;

	snprintf(path, sizeof(path), "%s/dovecot-keywords", dir);
	if (text != NULL)
		put_file(path, text);
	out[0] = '\0';
	if ((ret = maildir_keywords_read(dir, &kw, &err)) < 0)
		return -1;
	for (int i = 0; i < MAILDIR_KEYWORDS_MAX && o < size; i++)
		if (kw.name[i] != NULL)
			o += (size_t)snprintf(out + o, size - o, "%s%d=%s",
			    o > 0 ? "," : "", i, kw.name[i]);
	maildir_keywords_free(&kw);
	return ret;
}

static void
test_kw_read(void)
{
	char dir[1200], out[4096], name[300], text[1024];
	struct buf big;
	const char *err;
	struct maildir_keywords kw;
	int ret;

	snprintf(dir, sizeof(dir), "%s", tpath("kw"));
	mkdir(dir, 0700);
	ok(t_kw_read(dir, NULL, out, sizeof(out)) == 0 && out[0] == '\0',
	    "keywords: no file is an empty map");
	ok(t_kw_read(dir, "0 $Junk\n1 work\n25 last\n", out, sizeof(out)) ==
	    0 && strcmp(out, "0=$Junk,1=work,25=last") == 0,
	    "keywords: lines N NAME (%s)", out);
	ok(t_kw_read(dir, "26 x\n-1 x\n01 x\na x\n3\n3 \n4 two words\n"
	    "5  lead\n6 cr\r\n+7 x\n 8 x\n9 dup\n9 later\n10 end", out,
	    sizeof(out)) == 0 && strcmp(out, "9=later,10=end") == 0,
	    "keywords: bad lines skipped, the later line wins, a last "
	    "line without LF counts (%s)", out);
	memset(name, 'n', sizeof(name));
	name[MAILDIR_KEYWORD_NAME_MAX] = '\0';
	snprintf(text, sizeof(text), "2 %s\n", name);
	ok(t_kw_read(dir, text, out, sizeof(out)) == 0 &&
	    strlen(out) == 2 + MAILDIR_KEYWORD_NAME_MAX,
	    "keywords: a name of 255 bytes");
	name[MAILDIR_KEYWORD_NAME_MAX] = 'n';
	name[MAILDIR_KEYWORD_NAME_MAX + 1] = '\0';
	snprintf(text, sizeof(text), "2 %s\n3 ok\n", name);
	ok(t_kw_read(dir, text, out, sizeof(out)) == 0 &&
	    strcmp(out, "3=ok") == 0, "keywords: 256 bytes: skipped");
	/* Every prefix of a file: whole lines, and the last one as it is
	 * where the file ends. */
	{
		static const char full[] = "0 a\n1 bb\n";
		static const char *want[] = { "", "", "", "0=a", "0=a", "0=a",
		    "0=a", "0=a,1=b", "0=a,1=bb", "0=a,1=bb" };
		int bad = 0;

		for (size_t k = 0; k <= sizeof(full) - 1; k++) {
			char part[16];

			memcpy(part, full, k);
			part[k] = '\0';
			if (t_kw_read(dir, part, out, sizeof(out)) != 0 ||
			    strcmp(out, want[k]) != 0) {
				diag("prefix %zu: %s", k, out);
				bad++;
			}
		}
		is_int(bad, 0, "keywords: every prefix of a file");
	}
	/* Past MAILDIR_KEYWORDS_FILE_MAX nothing is read, and a line the
	 * limit cuts is not taken either. */
	buf_init(&big, 1 << 20);
	buf_append_str(&big, "0 first\n");
	while (big.len < MAILDIR_KEYWORDS_FILE_MAX - 4)
		buf_append_str(&big, "# padding\n");
	buf_truncate(&big, MAILDIR_KEYWORDS_FILE_MAX - 4);
	buf_append_str(&big, "\n1 cut\n2 far\n");
	ok(t_kw_read(dir, buf_cstr(&big), out, sizeof(out)) == 0 &&
	    strcmp(out, "0=first") == 0,
	    "keywords: past 64 KiB nothing (%s)", out);
	buf_truncate(&big, MAILDIR_KEYWORDS_FILE_MAX - 4);
	buf_append_str(&big, "\n1 x\n");
	ok(big.len == MAILDIR_KEYWORDS_FILE_MAX + 1 &&
	    t_kw_read(dir, buf_cstr(&big), out, sizeof(out)) == 0 &&
	    strcmp(out, "0=first") == 0,
	    "keywords: a file of 64 KiB + 1: its last line is cut off");
	buf_truncate(&big, MAILDIR_KEYWORDS_FILE_MAX - 4);
	buf_append_str(&big, "\n1 x");
	ok(big.len == MAILDIR_KEYWORDS_FILE_MAX &&
	    t_kw_read(dir, buf_cstr(&big), out, sizeof(out)) == 0 &&
	    strcmp(out, "0=first,1=x") == 0,
	    "keywords: a file of 64 KiB is read whole");
	buf_free(&big);
	unlink(tpath("kw/dovecot-keywords"));
	mkdir(tpath("kw/dovecot-keywords"), 0700);
	ret = maildir_keywords_read(dir, &kw, &err);
	ok(ret < 0 && kw.name[0] == NULL,
	    "keywords: a directory is an error (%s)", ret < 0 ? err : "");
	rmdir(tpath("kw/dovecot-keywords"));
}

static void
test_kw_assign(void)
{
	struct maildir_keywords kw;
	char name[300], dir[1200], out[4096];
	struct stat a, b;
	const char *err;
	bool added;
	int i, n = 0;

	memset(&kw, 0, sizeof(kw));
	kw.name[1] = strdup("$Junk");
	ok(maildir_keywords_lookup(&kw, "$junk") == 1 &&
	    maildir_keywords_lookup(&kw, "junk") == -1,
	    "keywords: lookup ignores case");
	ok(maildir_keywords_assign(&kw, "$JUNK", &added) == 1 && !added,
	    "keywords: assign finds one it has");
	ok(maildir_keywords_assign(&kw, "a", &added) == 0 && added &&
	    maildir_keywords_assign(&kw, "b", &added) == 2 && added,
	    "keywords: new ones take the lowest free letter");
	ok(maildir_keywords_assign(&kw, "two words", &added) == -1 &&
	    maildir_keywords_assign(&kw, "", &added) == -1 && !added,
	    "keywords: a name the file cannot hold: -1");
	memset(name, 'n', sizeof(name));
	name[MAILDIR_KEYWORD_NAME_MAX + 1] = '\0';
	ok(maildir_keywords_assign(&kw, name, &added) == -1,
	    "keywords: 256 bytes: -1");
	name[MAILDIR_KEYWORD_NAME_MAX] = '\0';
	ok(maildir_keywords_assign(&kw, name, &added) == 3 && added,
	    "keywords: 255 bytes: fine");
	for (i = 4; i < MAILDIR_KEYWORDS_MAX; i++) {
		snprintf(name, sizeof(name), "k%d", i);
		n += maildir_keywords_assign(&kw, name, &added) == i;
	}
	is_int(n, MAILDIR_KEYWORDS_MAX - 4, "keywords: up to 26");
	ok(maildir_keywords_assign(&kw, "one-more", &added) == -1 && !added,
	    "keywords: a 27th: -1");
	snprintf(dir, sizeof(dir), "%s", tpath("kw"));
	ok(maildir_keywords_write(dir, &kw, true, &err) == 0,
	    "keywords: written");
	ok(t_kw_read(dir, NULL, out, sizeof(out)) == 0 &&
	    strncmp(out, "0=a,1=$Junk,2=b,3=nnn", 21) == 0 &&
	    strstr(out, ",25=k25") != NULL, "keywords: and read back");
	ok(stat(tpath("kw/dovecot-keywords"), &a) == 0 &&
	    (a.st_mode & 0777) == 0600, "keywords: mode 0600");
	ok(maildir_keywords_write(dir, &kw, false, &err) == 0 &&
	    stat(tpath("kw/dovecot-keywords"), &b) == 0 &&
	    b.st_mtime > a.st_mtime,
	    "keywords: written again, its mtime grows (Dovecot looks at it)");
	{
		struct dirent *de;
		DIR *d = opendir(dir);
		int others = 0;

		while (d != NULL && (de = readdir(d)) != NULL)
			others += de->d_name[0] != '.' &&
			    strcmp(de->d_name, "dovecot-keywords") != 0;
		if (d != NULL)
			closedir(d);
		is_int(others, 0, "keywords: no temporary file left");
	}
	free(kw.name[5]);
	kw.name[5] = strdup("bad name");
	i = maildir_keywords_write(dir, &kw, false, &err);
	ok(i < 0 && errno == EINVAL, "keywords: a name Dovecot could not "
	    "read back is not written (%s)", i < 0 ? err : "");
	ok(t_kw_read(dir, NULL, out, sizeof(out)) == 0 &&
	    strstr(out, "5=k5") != NULL, "keywords: the file is unchanged");
	maildir_keywords_free(&kw);
	ok(kw.name[0] == NULL && kw.name[25] == NULL, "keywords: freed");
}

/* Dovecot's lock, taken to give a letter. */
static void
test_kw_lock(void)
{
	char dir[1200], lock[1300], text[64];
	struct timeval tv[2];
	const char *err;
	FILE *f;

	snprintf(dir, sizeof(dir), "%s", tpath("kwlock"));
	mkdir(dir, 0700);
	snprintf(lock, sizeof(lock), "%s/dovecot-uidlist.lock", dir);
	is_int(maildir_keywords_lock(dir, &err), 1, "lock: taken");
	text[0] = '\0';
	if ((f = fopen(lock, "r")) != NULL) {
		if (fgets(text, sizeof(text), f) == NULL)
			text[0] = '\0';
		fclose(f);
	}
	ok(strtol(text, NULL, 10) == (long)getpid() &&
	    strchr(text, ':') != NULL, "lock: holds PID:HOST (%s)", text);
	is_int(maildir_keywords_lock(dir, &err), 0,
	    "lock: held: 0 after the tries");
	maildir_keywords_unlock(dir);
	ok(access(lock, F_OK) < 0, "lock: unlock removes it");
	put_file(lock, "1:elsewhere");
	tv[0].tv_sec = tv[1].tv_sec = time(NULL) - MAILDIR_KEYWORDS_LOCK_STALE
	    + 2;
	tv[0].tv_usec = tv[1].tv_usec = 0;
	utimes(lock, tv);
	is_int(maildir_keywords_lock(dir, &err), 0,
	    "lock: one not yet stale is respected");
	tv[0].tv_sec = tv[1].tv_sec = time(NULL) - MAILDIR_KEYWORDS_LOCK_STALE
	    - 2;
	utimes(lock, tv);
	is_int(maildir_keywords_lock(dir, &err), 1,
	    "lock: a stale one (over 120 s) is broken");
	maildir_keywords_unlock(dir);
}

int
main(void)
{
	const char *tmp = getenv("TMPDIR");

	umask(022);
	snprintf(top, sizeof(top), "%s/loft-maildir-XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(top) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	snprintf(md, sizeof(md), "%s/Maildir", top);
	test_path_map();
	test_folder_name();
	test_create();
	test_deliver();
	test_full();
	test_host();
	test_rename();
	test_scan();
	test_parse();
	test_info();
	test_list();
	test_uidlist();
	test_kw_letters();
	test_kw_read();
	test_kw_assign();
	test_kw_lock();
	nftw(top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return done_testing();
}
