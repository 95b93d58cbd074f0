/*
 * Unit tests for smtp/smtp_queue.c, on real directories under /tmp:
 * - the queue directory: created 0700, refused when wider, foreign, a
 *   symbolic link or a file;
 * - IDs: form, order, uniqueness over 10,000 begins and across two
 *   processes, hostile IDs refused by every entry point;
 * - an envelope round trip with every field, odd bytes (all 256, CR, LF,
 *   NUL, backslashes) in the diagnostic, a golden text, files on disk
 *   without raw control bytes;
 * - the limits at N and N+1 (recipients, address, ORCPT, ENVID,
 *   diagnostic, envelope size both when writing and when parsing);
 * - a crash (a forked child _exit()ing from the test hook) at every step
 *   of commit and of save: afterwards the queue holds nothing or the
 *   whole message, old envelope or new;
 * - a full disk: real ENOSPC on a small tmpfs (when root can mount one),
 *   and ENOSPC/EDQUOT injected by the test hook at every commit and save
 *   step: the call fails, says "disk full", leaves nothing;
 * - damaged envelopes (truncated, unknown field, bad number and a dozen
 *   more; every prefix and a CR or NUL at every byte for the parser)
 *   quarantined with file and line, never deleted;
 * - locks, remove, hold, iteration with files vanishing, cleanup by age;
 * - the retry schedule at each step, expiry and its clamping.
 */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "buf.h"
#include "compat/compat.h"
#include "fsutil.h"
#include "smtp/smtp_queue.h"
#include "tap.h"

#define CRASHED		42	/* exit code of a child the hook ended */
#define NO_STEP		(-1)

static char base[256];		/* this run's directory under /tmp */
static unsigned int qcount;	/* queue directories made so far */

static int hook_step = NO_STEP;	/* the step to act on */
static int hook_errno;		/* 0: crash there; else fail with it */

static int
hook(enum smtp_queue_step step)
{
	if ((int)step != hook_step)
		return 0;
	if (hook_errno == 0)
		_exit(CRASHED);
	return hook_errno;
}

static void
set_hook(int step, int err)
{
	hook_step = step;
	hook_errno = err;
	smtp_queue_test_hook = step == NO_STEP ? NULL : hook;
}

/* new_queue: a fresh queue directory; its path into path. */
static struct smtp_queue *
new_queue(char *path, size_t pathsize)
{
	struct smtp_queue *q;
	const char *error;

	snprintf(path, pathsize, "%s/q%u", base, qcount++);
	if (smtp_queue_open(path, &q, &error) < 0)
		bail("open %s: %s", path, error);
	return q;
}

/* count: entries in dir/sub (without . and ..), -1 if it cannot be read. */
static int
count(const char *dir, const char *sub)
{
	char path[PATH_MAX];
	struct dirent *d;
	DIR *dp;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if ((dp = opendir(path)) == NULL)
		return -1;
	while ((d = readdir(dp)) != NULL)
		if (strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0)
			n++;
	closedir(dp);
	return n;
}

static bool
queue_empty(const char *dir)
{
	return count(dir, "tmp") == 0 && count(dir, "data") == 0 &&
	    count(dir, "env") == 0;
}

/* slurp: a whole file (NULL if absent); *len_r its length. */
static unsigned char *
slurp(const char *path, size_t *len_r)
{
	struct buf b;
	unsigned char chunk[65536];
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY)) < 0)
		return NULL;
	buf_init(&b, (size_t)1 << 30);
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		if (buf_append(&b, chunk, (size_t)n) < 0)
			bail("slurp %s: too big", path);
	close(fd);
	return buf_steal(&b, len_r);
}

static void
spew(const char *path, const void *data, size_t len)
{
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len || close(fd) < 0)
		bail("write %s: %s", path, strerror(errno));
}

static unsigned char *
read_fd(int fd, size_t *len_r)
{
	struct buf b;
	unsigned char chunk[65536];
	ssize_t n;

	buf_init(&b, (size_t)1 << 30);
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		if (buf_append(&b, chunk, (size_t)n) < 0)
			bail("read_fd: too big");
	return buf_steal(&b, len_r);
}

/* content: len bytes of a fixed pattern with NULs, CRs and LFs. */
static unsigned char *
content(size_t len)
{
	unsigned char *p = malloc(len + 1);
	size_t i;

	if (p == NULL)
		bail("malloc");
	for (i = 0; i < len; i++)
		p[i] = (unsigned char)((i * 7 + i / 251) % 256);
	return p;
}

/* put: a committed message from sender to n recipients r0@x.example...;
 * its id into id. */
static void
put(struct smtp_queue *q, const char *sender, const unsigned char *data,
    size_t len, unsigned int n, char id[SMTP_QUEUE_ID_MAX])
{
	struct smtp_queue_msg *msg;
	const char *error;
	char rcpt[64];
	unsigned int i;

	if (smtp_queue_begin(q, sender, 1000, &msg, &error) < 0)
		bail("begin: %s", error);
	if (smtp_queue_write(msg, data, len, &error) < 0)
		bail("write: %s", error);
	for (i = 0; i < n; i++) {
		snprintf(rcpt, sizeof(rcpt), "r%u@x.example", i);
		if (smtp_queue_add_rcpt(msg, rcpt, NULL, 0, &error) < 0)
			bail("add_rcpt: %s", error);
	}
	if (smtp_queue_commit(&msg, id, &error) < 0)
		bail("commit: %s", error);
}

/* has: whether error contains want (diag otherwise). */
static bool
has(const char *error, const char *want)
{
	if (error != NULL && strstr(error, want) != NULL)
		return true;
	diag("error \"%s\" lacks \"%s\"", error ? error : "(null)", want);
	return false;
}

/*
 * The queue directory.
 */

static void
test_open(void)
{
	struct smtp_queue *q;
	const char *error;
	char path[PATH_MAX], sub[PATH_MAX + 8];
	struct stat st;
	static const char *const subs[] = { "tmp", "data", "env", "corrupt" };
	size_t i;
	bool good = true;

	snprintf(path, sizeof(path), "%s/open", base);
	is_int(smtp_queue_open(path, &q, &error), 0, "open creates the queue");
	smtp_queue_close(&q);
	ok(q == NULL, "close clears the pointer");
	ok(stat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
	    (st.st_mode & 07777) == 0700, "queue directory is mode 0700");
	for (i = 0; i < 4; i++) {
		snprintf(sub, sizeof(sub), "%s/%s", path, subs[i]);
		if (stat(sub, &st) < 0 || (st.st_mode & 07777) != 0700)
			good = false;
	}
	ok(good, "tmp, data, env, corrupt made, mode 0700");
	is_int(smtp_queue_open(path, &q, &error), 0, "open again");
	smtp_queue_close(&q);

	chmod(path, 0750);
	is_int(smtp_queue_open(path, &q, &error), -1, "mode 0750 refused");
	ok(has(error, "mode 0750") && has(error, path),
	    "error names dir, mode");
	chmod(path, 0702);
	is_int(smtp_queue_open(path, &q, &error), -1, "mode 0702 refused");
	/* Search only, for others: local users reach maildrop/ through it
	 * (smtp_pickup.h); the subdirectories stay closed. */
	chmod(path, 0711);
	is_int(smtp_queue_open(path, &q, &error), 0, "mode 0711 accepted");
	smtp_queue_close(&q);
	chmod(path, 0700);
	snprintf(sub, sizeof(sub), "%s/env", path);
	chmod(sub, 0755);
	is_int(smtp_queue_open(path, &q, &error), -1, "env/ at 0755 refused");
	ok(has(error, "/env"), "error names the subdirectory");
	chmod(sub, 0700);

	if (geteuid() == 0) {
		if (chown(path, 1, 1) < 0)
			bail("chown: %s", strerror(errno));
		is_int(smtp_queue_open(path, &q, &error), -1,
		    "directory of another owner refused");
		ok(has(error, "owned by uid 1"), "error says the owner");
		if (chown(path, 0, 0) < 0)
			bail("chown: %s", strerror(errno));
	} else {
		ok(1, "# SKIP not root: cannot chown");
		ok(1, "# SKIP not root: cannot chown");
	}

	snprintf(sub, sizeof(sub), "%s/link", base);
	if (symlink(path, sub) < 0)
		bail("symlink: %s", strerror(errno));
	is_int(smtp_queue_open(sub, &q, &error), -1, "symbolic link refused");
	ok(has(error, "symbolic link"), "error says why");
	snprintf(sub, sizeof(sub), "%s/file", base);
	spew(sub, "x", 1);
	is_int(smtp_queue_open(sub, &q, &error), -1, "a file refused");
	snprintf(sub, sizeof(sub), "%s/missing/q", base);
	is_int(smtp_queue_open(sub, &q, &error), -1, "missing parent refused");
	ok(has(error, "mkdir"), "error says mkdir");
}

/*
 * IDs.
 */

static int
cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void
test_id_form(void)
{
	static const char *const bad[] = {
		"", "../x", "/", "..", ".", "a/b", "../../../../etc/passwd",
		"0SZ7R2QW0B7X00AB",		/* 16 */
		"0SZ7R2QW0B7X00ABCD",		/* 18 */
		"0SZ7R2QW0B7X00AB/", "/SZ7R2QW0B7X00ABC",
		"0sz7r2qw0b7x00abc",		/* lower case */
		"0SZ7R2QW0B7X00ABI", "0SZ7R2QW0B7X00ABL",
		"0SZ7R2QW0B7X00ABO", "0SZ7R2QW0B7X00ABU",
		"0SZ7R2QWZZZZ00ABC",		/* microseconds over 999999 */
		"00000000YGJ000000",		/* 1000000 microseconds */
		"0SZ7R2QW0B7X00AB ", "0SZ7R2QW0B7X00AB\n",
		"0SZ7R2QW0B7X00AB.", "0SZ7R2QW0B7X00AB\xc3",
		NULL
	};
	size_t i;
	bool all = true;

	ok(smtp_queue_id_valid("0SZ7R2QW0B7X00ABC"), "a good ID is valid");
	ok(smtp_queue_id_valid("00000000YGHZ00000"),
	    "999999 microseconds is valid");
	for (i = 0; bad[i] != NULL; i++) {
		if (smtp_queue_id_valid(bad[i])) {
			diag("accepted \"%s\"", bad[i]);
			all = false;
		}
	}
	ok(all, "%zu hostile or malformed IDs refused", i);
}

static void
test_id_hostile(void)
{
	static const char *const bad[] = {
		"", "../x", "/", "../outside", "x", "0SZ7R2QW0B7X00ABCD",
		"../q0/env/0SZ7R", NULL
	};
	struct smtp_queue *q;
	struct smtp_queue_env *env;
	const char *error;
	char path[PATH_MAX], victim[PATH_MAX + 16];
	uint64_t size;
	size_t i;
	int fd, fails = 0;

	q = new_queue(path, sizeof(path));
	snprintf(victim, sizeof(victim), "%s/outside", base);
	spew(victim, "precious", 8);
	for (i = 0; bad[i] != NULL; i++) {
		if (smtp_queue_remove(q, bad[i], &error) != -1 ||
		    !has(error, "bad queue ID"))
			fails++;
		if (smtp_queue_load(q, bad[i], 0, &env, &error) != -1)
			fails++;
		if (smtp_queue_load(q, bad[i], SMTP_QUEUE_LOCK, &env,
		    &error) != -1)
			fails++;
		if (smtp_queue_open_content(q, bad[i], &fd, &size,
		    &error) != -1)
			fails++;
		if (smtp_queue_hold(q, bad[i], true, &error) != -1)
			fails++;
	}
	is_int(fails, 0, "remove, load, open_content, hold refuse bad IDs");
	ok(access(victim, F_OK) == 0, "a file outside the queue is untouched");
	is_int(smtp_queue_remove(q, "0SZ7R2QW0B7X00ABC", &error), 0,
	    "remove of a good ID not in the queue: not found");
	is_int(smtp_queue_load(q, "0SZ7R2QW0B7X00ABC", 0, &env, &error), 0,
	    "load of an absent ID: not found");
	smtp_queue_close(&q);
}

#define MANY	10000

static void
test_id_many(void)
{
	static char ids[MANY][SMTP_QUEUE_ID_MAX];
	struct smtp_queue *q;
	struct smtp_queue_msg *msg;
	const char *error;
	char path[PATH_MAX];
	size_t i;
	bool valid = true, rising = true;

	q = new_queue(path, sizeof(path));
	for (i = 0; i < MANY; i++) {
		if (smtp_queue_begin(q, "a@b", 10, &msg, &error) < 0)
			bail("begin %zu: %s", i, error);
		strlcpy(ids[i], smtp_queue_msg_id(msg), SMTP_QUEUE_ID_MAX);
		smtp_queue_abort(&msg);
		if (strlen(ids[i]) != SMTP_QUEUE_ID_LEN ||
		    !smtp_queue_id_valid(ids[i]))
			valid = false;
		if (i > 0 && strcmp(ids[i - 1], ids[i]) >= 0)
			rising = false;
	}
	ok(valid, "%d IDs are 17 valid characters", MANY);
	ok(rising, "%d fast begins: IDs strictly rising (so unique)", MANY);
	ok(queue_empty(path), "aborts left nothing");
	ok(msg == NULL, "abort clears the pointer");
	smtp_queue_close(&q);
}

/* child_ids: in a child, n begins (committed when commit), IDs written
 * one per line to fd. */
static void
child_ids(const char *path, unsigned int n, bool commit, int fd)
{
	struct smtp_queue *q;
	struct smtp_queue_msg *msg;
	const char *error;
	char id[SMTP_QUEUE_ID_MAX], line[SMTP_QUEUE_ID_MAX + 1];
	unsigned int i;

	if (smtp_queue_open(path, &q, &error) < 0)
		_exit(2);
	for (i = 0; i < n; i++) {
		if (smtp_queue_begin(q, "", 10, &msg, &error) < 0)
			_exit(3);
		strlcpy(id, smtp_queue_msg_id(msg), sizeof(id));
		if (commit) {
			if (smtp_queue_write(msg, (const unsigned char *)"x",
			    1, &error) < 0 || smtp_queue_add_rcpt(msg, "a@b",
			    NULL, 0, &error) < 0 ||
			    smtp_queue_commit(&msg, id, &error) < 0)
				_exit(4);
		} else
			smtp_queue_abort(&msg);
		snprintf(line, sizeof(line), "%s\n", id);
		if (write(fd, line, strlen(line)) != (ssize_t)strlen(line))
			_exit(5);
	}
	_exit(0);
}

/* two_procs: two children at once; returns how many distinct IDs of
 * 2 * n they reported (2 * n when all are unique). */
static size_t
two_procs(const char *path, unsigned int n, bool commit)
{
	char file[PATH_MAX + 16], (*ids)[SMTP_QUEUE_ID_MAX];
	unsigned char *data;
	pid_t pid[2];
	size_t len, got = 0, i, distinct;
	int fd, status, k;
	char *p, *nl;

	snprintf(file, sizeof(file), "%s/ids", base);
	for (k = 0; k < 2; k++) {
		fd = open(file, O_WRONLY | O_CREAT | O_APPEND |
		    (k == 0 ? O_TRUNC : 0), 0600);
		if (fd < 0 || (pid[k] = fork()) < 0)
			bail("fork: %s", strerror(errno));
		if (pid[k] == 0)
			child_ids(path, n, commit, fd);
		close(fd);
	}
	for (k = 0; k < 2; k++)
		if (waitpid(pid[k], &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0)
			bail("child failed: %d", status);
	data = slurp(file, &len);
	ids = calloc(2 * (size_t)n + 1, sizeof(*ids));
	for (p = (char *)data; (nl = strchr(p, '\n')) != NULL &&
	    got < 2 * (size_t)n; p = nl + 1) {
		*nl = '\0';
		strlcpy(ids[got++], p, SMTP_QUEUE_ID_MAX);
	}
	qsort(ids, got, sizeof(*ids), cmp_id);
	for (i = 0, distinct = got > 0; i + 1 < got; i++)
		if (strcmp(ids[i], ids[i + 1]) != 0)
			distinct++;
	free(ids);
	free(data);
	return got == 2 * (size_t)n ? distinct : 0;
}

static void
test_id_two_procs(void)
{
	struct smtp_queue *q;
	struct smtp_queue_iter *iter;
	struct smtp_queue_env *env;
	const char *error;
	char path[PATH_MAX];
	int n = 0, bad = 0, r;

	q = new_queue(path, sizeof(path));
	is_int(two_procs(path, 5000, false), 10000,
	    "two processes, 5000 begins each: 10000 distinct IDs");
	is_int(two_procs(path, 200, true), 400,
	    "two processes committing 200 each: 400 distinct IDs");
	if (smtp_queue_iter_new(q, &iter, &error) < 0)
		bail("iter: %s", error);
	while ((r = smtp_queue_iter_next(iter, &env, &error)) != 0) {
		if (r < 0 || env->size != 1 || !env->bounce)
			bad++;
		else
			n++;
		smtp_queue_env_free(&env);
	}
	smtp_queue_iter_free(&iter);
	ok(n == 400 && bad == 0, "all 400 messages in the queue, whole");
	smtp_queue_close(&q);
}

/*
 * Round trip.
 */

static const char golden[] =
	"loft-queue 1\n"
	"id 0SZ7R2QW0B7X00ABC\n"
	"arrival 1732900000.012345\n"
	"size 4711\n"
	"sender <alice@example.org>\n"
	"bounce 0\n"
	"envid QQ314159\n"
	"ret hdrs\n"
	"attempts 3\n"
	"hold 1\n"
	"recipients 3\n"
	"rcpt <bob@example.net>\n"
	"orcpt rfc822;bob@example.net\n"
	"notify success,failure,delay\n"
	"state deferred\n"
	"attempts 2\n"
	"last 1732900300\n"
	"next 1732900900\n"
	"diag 451 4.3.0 \\x0D\\x0A\\x00\\\\x41 \xc3\xa9\\x7F\n"
	"rcpt <\"a b\\\\c\"@example.net>\n"
	"notify never\n"
	"state delivered\n"
	"attempts 1\n"
	"last 1732900300\n"
	"next 0\n"
	"diag \n"
	"rcpt <postmaster>\n"
	"state pending\n"
	"attempts 0\n"
	"last 0\n"
	"next 0\n"
	"end\n";

static void
test_golden(void)
{
	struct smtp_queue_env *env;
	struct smtp_queue_rcpt *r;
	const char *error;
	struct buf b;
	unsigned int line;
	static const unsigned char diag0[] =
	    "451 4.3.0 \r\n\0\\x41 \xc3\xa9\x7f";

	if (smtp_queue_env_parse("0SZ7R2QW0B7X00ABC",
	    (const unsigned char *)golden, sizeof(golden) - 1, &env, &line,
	    &error) < 0)
		bail("golden: %s", error);
	ok(strcmp(env->id, "0SZ7R2QW0B7X00ABC") == 0 &&
	    env->arrival == 1732900000 && env->arrival_usec == 12345 &&
	    env->size == 4711 &&
	    strcmp(env->sender, "alice@example.org") == 0 && !env->bounce &&
	    strcmp(env->envid, "QQ314159") == 0 &&
	    env->ret == SMTP_RET_HDRS && env->attempts == 3 && env->hold &&
	    env->rcpt_count == 3 && env->lock_fd == -1,
	    "golden envelope: message fields");
	r = &env->rcpts[0];
	ok(strcmp(r->addr, "bob@example.net") == 0 &&
	    strcmp(r->orcpt, "rfc822;bob@example.net") == 0 &&
	    r->notify == (SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE |
	    SMTP_NOTIFY_DELAY) && r->state == SMTP_QUEUE_DEFERRED &&
	    r->attempts == 2 && r->last_attempt == 1732900300 &&
	    r->next_attempt == 1732900900, "golden: first recipient");
	is_mem(r->diag, r->diag_len, diag0, sizeof(diag0) - 1,
	    "golden: diagnostic with CR, LF, NUL, backslash, UTF-8, DEL");
	r = &env->rcpts[1];
	ok(strcmp(r->addr, "\"a b\\c\"@example.net") == 0 &&
	    r->orcpt == NULL && r->notify == SMTP_NOTIFY_NEVER &&
	    r->state == SMTP_QUEUE_DELIVERED && r->diag != NULL &&
	    r->diag_len == 0, "golden: second recipient (quoted, escaped)");
	r = &env->rcpts[2];
	ok(strcmp(r->addr, "postmaster") == 0 && r->notify == 0 &&
	    r->state == SMTP_QUEUE_PENDING && r->diag == NULL,
	    "golden: third recipient");
	buf_init(&b, SMTP_QUEUE_ENV_MAX);
	is_int(smtp_queue_env_format(env, &b, &error), 0, "format it again");
	is_mem(b.data, b.len, golden, sizeof(golden) - 1,
	    "format gives the golden text byte for byte");
	buf_free(&b);
	smtp_queue_env_free(&env);
	ok(env == NULL, "env_free clears the pointer");
}

/* write_odd: content in pieces of 1, 2, 3... bytes, then one big one. */
static void
write_odd(struct smtp_queue_msg *msg, const unsigned char *data, size_t len)
{
	const char *error;
	size_t off = 0, n = 1;

	while (off < len && off < 100000) {
		if (n > len - off)
			n = len - off;
		if (smtp_queue_write(msg, data + off, n, &error) < 0)
			bail("write: %s", error);
		off += n;
		n = n % 600 + 1;
	}
	if (off < len && smtp_queue_write(msg, data + off, len - off,
	    &error) < 0)
		bail("write: %s", error);
}

/* clean_bytes: a file of lines with no control byte but LF. */
static bool
clean_bytes(const unsigned char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((p[i] < 0x20 && p[i] != '\n') || p[i] == 0x7f)
			return false;
	return len > 0 && p[len - 1] == '\n';
}

static void
test_roundtrip(void)
{
	struct smtp_queue *q;
	struct smtp_queue_msg *msg;
	struct smtp_queue_env *env, *env2;
	const char *error;
	char path[PATH_MAX], file[PATH_MAX + 64], id[SMTP_QUEUE_ID_MAX];
	unsigned char *data, *got, odd[256], nasty[] = "\r\n\0\\\\x41\\";
	const size_t len = 300000;
	size_t glen, i;
	uint64_t size;
	time_t t0, t1;
	struct stat st;
	bool same = true;
	int fd;

	q = new_queue(path, sizeof(path));
	data = content(len);
	t0 = time(NULL);
	if (smtp_queue_begin(q, "alice@example.org", 100, &msg, &error) < 0)
		bail("begin: %s", error);
	strlcpy(id, smtp_queue_msg_id(msg), sizeof(id));
	is_int(smtp_queue_set_dsn(msg, "QQ314159", SMTP_RET_HDRS, &error), 0,
	    "set ENVID and RET");
	write_odd(msg, data, len);
	is_int(smtp_queue_add_rcpt(msg, "bob@example.net",
	    "rfc822;bob@example.net", SMTP_NOTIFY_SUCCESS |
	    SMTP_NOTIFY_FAILURE, &error), 0, "recipient with ORCPT, NOTIFY");
	is_int(smtp_queue_add_rcpt(msg, "carol@example.net", NULL,
	    SMTP_NOTIFY_NEVER, &error), 0, "recipient with NOTIFY=NEVER");
	is_int(smtp_queue_add_rcpt(msg, "j\xc3\xb6s\xc3\xa9@ex\xc3\xa4mple.org",
	    "utf-8;j\xc3\xb6s\xc3\xa9@ex\xc3\xa4mple.org", 0, &error), 0,
	    "UTF-8 recipient");
	ok(count(path, "tmp") == 1 && count(path, "env") == 0,
	    "before commit: only tmp/ID");
	is_int(smtp_queue_commit(&msg, id, &error), 0, "commit");
	ok(msg == NULL, "commit clears the pointer");
	t1 = time(NULL);
	ok(count(path, "tmp") == 0 && count(path, "data") == 1 &&
	    count(path, "env") == 1, "after commit: data/ID and env/ID");
	snprintf(file, sizeof(file), "%s/data/%s", path, id);
	ok(stat(file, &st) == 0 && (st.st_mode & 0777) == 0600 &&
	    st.st_nlink == 1, "content file 0600, one link");

	is_int(smtp_queue_load(q, id, 0, &env, &error), 1, "load");
	ok(strcmp(env->id, id) == 0 && env->arrival >= t0 &&
	    env->arrival <= t1 && env->arrival_usec < 1000000 &&
	    env->size == len && strcmp(env->sender, "alice@example.org") == 0
	    && !env->bounce && strcmp(env->envid, "QQ314159") == 0 &&
	    env->ret == SMTP_RET_HDRS && env->attempts == 0 && !env->hold &&
	    env->rcpt_count == 3, "loaded message fields");
	ok(strcmp(env->rcpts[0].addr, "bob@example.net") == 0 &&
	    strcmp(env->rcpts[0].orcpt, "rfc822;bob@example.net") == 0 &&
	    env->rcpts[0].notify == (SMTP_NOTIFY_SUCCESS |
	    SMTP_NOTIFY_FAILURE) && env->rcpts[1].notify == SMTP_NOTIFY_NEVER
	    && env->rcpts[1].orcpt == NULL && strcmp(env->rcpts[2].addr,
	    "j\xc3\xb6s\xc3\xa9@ex\xc3\xa4mple.org") == 0 &&
	    env->rcpts[2].state == SMTP_QUEUE_PENDING &&
	    env->rcpts[2].attempts == 0 && env->rcpts[2].diag == NULL,
	    "loaded recipients");
	smtp_queue_env_free(&env);

	is_int(smtp_queue_open_content(q, id, &fd, &size, &error), 1,
	    "open content");
	got = read_fd(fd, &glen);
	close(fd);
	ok(size == len, "content size");
	is_mem(got, glen, data, len, "content bytes as written");
	free(got);

	/* Every field changed, odd bytes in the diagnostics. */
	for (i = 0; i < 256; i++)
		odd[i] = (unsigned char)i;
	is_int(smtp_queue_load(q, id, SMTP_QUEUE_LOCK, &env, &error), 1,
	    "load locked");
	smtp_queue_rcpt_result(env, 0, SMTP_QUEUE_DELIVERED, 1000, 9999,
	    (const unsigned char *)"250 2.0.0 Ok", 12);
	smtp_queue_rcpt_result(env, 1, SMTP_QUEUE_DEFERRED, 1000, 1300, odd,
	    sizeof(odd));
	smtp_queue_rcpt_result(env, 2, SMTP_QUEUE_FAILED, 1001, 0, nasty,
	    sizeof(nasty) - 1);
	smtp_queue_rcpt_result(env, 2, SMTP_QUEUE_FAILED, 1002, 0, nasty,
	    sizeof(nasty) - 1);
	env->attempts = 2;
	env->hold = true;
	is_int(smtp_queue_save(q, env, &error), 0, "save");
	ok(count(path, "tmp") == 0, "save leaves nothing in tmp/");
	snprintf(file, sizeof(file), "%s/env/%s", path, id);
	got = slurp(file, &glen);
	ok(clean_bytes(got, glen), "envelope on disk: no CR, NUL or control "
	    "byte but the LF of each line");
	free(got);
	is_int(smtp_queue_load(q, id, 0, &env2, &error), 1, "load again");
	ok(env2->attempts == 2 && env2->hold && env2->rcpt_count == 3,
	    "message fields saved");
	ok(env2->rcpts[0].state == SMTP_QUEUE_DELIVERED &&
	    env2->rcpts[0].attempts == 1 && env2->rcpts[0].last_attempt == 1000
	    && env2->rcpts[0].next_attempt == 0, "delivered: next cleared");
	ok(env2->rcpts[1].state == SMTP_QUEUE_DEFERRED &&
	    env2->rcpts[1].next_attempt == 1300, "deferred: next kept");
	ok(env2->rcpts[2].state == SMTP_QUEUE_FAILED &&
	    env2->rcpts[2].attempts == 2 &&
	    env2->rcpts[2].last_attempt == 1002, "failed twice");
	is_mem(env2->rcpts[1].diag, env2->rcpts[1].diag_len, odd, sizeof(odd),
	    "all 256 byte values survive in a diagnostic");
	is_mem(env2->rcpts[2].diag, env2->rcpts[2].diag_len, nasty,
	    sizeof(nasty) - 1, "CR LF NUL and backslashes survive");
	for (i = 0; i < 3; i++)
		if (strcmp(env->rcpts[i].addr, env2->rcpts[i].addr) != 0)
			same = false;
	ok(same, "addresses survive");
	/* Reported: FAILED becomes BOUNCED, and that is saved; the others
	 * do not change. */
	for (i = 0; i < 3; i++)
		smtp_queue_rcpt_reported(env2, i);
	ok(env2->rcpts[0].state == SMTP_QUEUE_DELIVERED &&
	    env2->rcpts[1].state == SMTP_QUEUE_DEFERRED &&
	    env2->rcpts[2].state == SMTP_QUEUE_BOUNCED &&
	    env2->rcpts[2].attempts == 2, "reported: only the failed one "
	    "becomes bounced");
	smtp_queue_env_free(&env2);
	smtp_queue_rcpt_reported(env, 2);	/* env holds the lock */
	smtp_queue_rcpt_reported(env, 3);	/* out of range: nothing */
	is_int(smtp_queue_save(q, env, &error), 0, "save it bounced");
	is_int(smtp_queue_load(q, id, 0, &env2, &error), 1, "and load");
	ok(env2->rcpts[2].state == SMTP_QUEUE_BOUNCED &&
	    strcmp(smtp_queue_state_name(env2->rcpts[2].state), "bounced") ==
	    0, "  \"state bounced\" read back");
	smtp_queue_env_free(&env2);
	smtp_queue_env_free(&env);
	free(data);
	smtp_queue_close(&q);
}

static void
test_null_sender(void)
{
	struct smtp_queue *q;
	struct smtp_queue_env *env;
	const char *error;
	char path[PATH_MAX], id[SMTP_QUEUE_ID_MAX];

	q = new_queue(path, sizeof(path));
	put(q, "", (const unsigned char *)"x\r\n", 3, 1, id);
	is_int(smtp_queue_load(q, id, 0, &env, &error), 1, "load a bounce");
	ok(env->bounce && env->sender[0] == '\0' && env->envid == NULL &&
	    env->ret == SMTP_RET_NONE, "null sender: a bounce, no DSN");
	smtp_queue_env_free(&env);
	smtp_queue_close(&q);
}

/*
 * Limits.
 */

static char *
repeat(char c, size_t n, const char *tail)
{
	size_t tl = strlen(tail);
	char *s = malloc(n + tl + 1);

	if (s == NULL)
		bail("malloc");
	memset(s, c, n);
	memcpy(s + n, tail, tl + 1);
	return s;
}

static void
test_limits(void)
{
	struct smtp_queue *q;
	struct smtp_queue_msg *msg;
	struct smtp_queue_env *env;
	const char *error;
	char path[PATH_MAX], id[SMTP_QUEUE_ID_MAX], *s;
	unsigned char big[SMTP_QUEUE_DIAG_MAX + 1];

	q = new_queue(path, sizeof(path));
	is_int(smtp_queue_begin(q, "a@b", 0, &msg, &error), -1,
	    "max_rcpts 0 refused");
	s = repeat('a', SMTP_QUEUE_ADDR_MAX - 2, "@b");
	is_int(smtp_queue_begin(q, s, 3, &msg, &error), 0,
	    "sender of 256 bytes");
	free(s);
	s = repeat('a', SMTP_QUEUE_ADDR_MAX - 1, "@b");
	is_int(smtp_queue_add_rcpt(msg, s, NULL, 0, &error), -1,
	    "recipient of 257 bytes refused");
	ok(has(error, "257 bytes"), "error gives the length");
	is_int(smtp_queue_add_rcpt(msg, "", NULL, 0, &error), -1,
	    "empty recipient refused");
	free(s);
	s = repeat('a', SMTP_QUEUE_ADDR_MAX - 2, "@b");
	is_int(smtp_queue_add_rcpt(msg, s, NULL, 0, &error), 0,
	    "recipient of 256 bytes");
	free(s);
	is_int(smtp_queue_add_rcpt(msg, "a\rb@c", NULL, 0, &error), -1,
	    "CR in a recipient refused");
	is_int(smtp_queue_add_rcpt(msg, "a\x7f@c", NULL, 0, &error), -1,
	    "DEL in a recipient refused");
	s = repeat('o', SMTP_QUEUE_ORCPT_MAX + 1, "");
	is_int(smtp_queue_add_rcpt(msg, "x@y", s, 0, &error), -1,
	    "ORCPT of 501 bytes refused");
	s[SMTP_QUEUE_ORCPT_MAX] = '\0';
	is_int(smtp_queue_add_rcpt(msg, "x@y", s, 0, &error), 0,
	    "ORCPT of 500 bytes");
	free(s);
	is_int(smtp_queue_add_rcpt(msg, "x@y", "rfc822;a b", 0, &error), -1,
	    "ORCPT with a space refused");
	is_int(smtp_queue_add_rcpt(msg, "x@y", "", 0, &error), -1,
	    "empty ORCPT refused");
	is_int(smtp_queue_add_rcpt(msg, "x@y", NULL, SMTP_NOTIFY_NEVER |
	    SMTP_NOTIFY_DELAY, &error), -1, "NOTIFY=NEVER,DELAY refused");
	is_int(smtp_queue_add_rcpt(msg, "x@y", NULL, 1u << 4, &error), -1,
	    "unknown NOTIFY bit refused");
	is_int(smtp_queue_add_rcpt(msg, "z@y", NULL, 0, &error), 0,
	    "third recipient (max_rcpts 3)");
	is_int(smtp_queue_add_rcpt(msg, "w@y", NULL, 0, &error), -1,
	    "fourth recipient refused");
	ok(has(error, "too many recipients (at most 3)"), "error says so");
	s = repeat('e', SMTP_QUEUE_ENVID_MAX + 1, "");
	is_int(smtp_queue_set_dsn(msg, s, SMTP_RET_FULL, &error), -1,
	    "ENVID of 101 bytes refused");
	s[SMTP_QUEUE_ENVID_MAX] = '\0';
	is_int(smtp_queue_set_dsn(msg, s, SMTP_RET_FULL, &error), 0,
	    "ENVID of 100 bytes");
	is_int(smtp_queue_set_dsn(msg, "a\nb", SMTP_RET_FULL, &error), -1,
	    "ENVID with LF refused");
	is_int(smtp_queue_commit(&msg, id, &error), 0,
	    "commit with limits at N");
	is_int(smtp_queue_load(q, id, SMTP_QUEUE_LOCK, &env, &error), 1,
	    "load it");
	ok(env->rcpt_count == 3 && strlen(env->sender) == 256 &&
	    strlen(env->rcpts[0].addr) == 256 &&
	    strlen(env->rcpts[1].orcpt) == 500 && strcmp(env->envid, s) == 0
	    && env->ret == SMTP_RET_FULL, "values at their limits survive");
	free(s);
	memset(big, 'd', sizeof(big));
	smtp_queue_rcpt_result(env, 0, SMTP_QUEUE_FAILED, 1, 0, big,
	    SMTP_QUEUE_DIAG_MAX);
	is_int(env->rcpts[0].diag_len, SMTP_QUEUE_DIAG_MAX,
	    "diagnostic of 512 bytes kept");
	smtp_queue_rcpt_result(env, 1, SMTP_QUEUE_FAILED, 1, 0, big,
	    SMTP_QUEUE_DIAG_MAX + 1);
	is_int(env->rcpts[1].diag_len, SMTP_QUEUE_DIAG_MAX,
	    "diagnostic of 513 bytes cut to 512");
	smtp_queue_env_free(&env);

	s = repeat('a', SMTP_QUEUE_ADDR_MAX - 1, "@b");
	is_int(smtp_queue_begin(q, s, 3, &msg, &error), -1,
	    "sender of 257 bytes refused");
	free(s);
	is_int(smtp_queue_begin(q, "a\nb@c", 3, &msg, &error), -1,
	    "LF in the sender refused");
	is_int(smtp_queue_begin(q, "a@b", 3, &msg, &error), 0, "begin");
	is_int(smtp_queue_commit(&msg, id, &error), -1,
	    "commit without recipients fails");
	ok(has(error, "no recipients"), "error says so");
	is_int(count(path, "tmp"), 0, "and leaves nothing");
	smtp_queue_close(&q);
}

/* The worst case: as many recipients as the envelope limit allows, each
 * with the longest address and ORCPT; then every diagnostic filled with
 * bytes that escape to 4 characters must still save and load. */
static void
test_env_cap(void)
{
	struct smtp_queue *q;
	struct smtp_queue_msg *msg;
	struct smtp_queue_env *env;
	const char *error;
	char path[PATH_MAX], id[SMTP_QUEUE_ID_MAX], *addr, *orcpt;
	unsigned char reply[SMTP_QUEUE_DIAG_MAX];
	unsigned int n = 0, i, expect;
	size_t worst, room;
	int r;

	q = new_queue(path, sizeof(path));
	addr = repeat('a', SMTP_QUEUE_ADDR_MAX - 2, "@b");
	orcpt = repeat('o', SMTP_QUEUE_ORCPT_MAX, "");
	/* The module's own bound: 256 fixed bytes per recipient and for the
	 * header, every string counted 4 times (header: sender "a@b"). */
	worst = 256 + 4 * (SMTP_QUEUE_ADDR_MAX + SMTP_QUEUE_ORCPT_MAX +
	    SMTP_QUEUE_DIAG_MAX);
	room = SMTP_QUEUE_ENV_MAX - (256 + 4 * 3);
	expect = (unsigned int)(room / worst);
	if (smtp_queue_begin(q, "a@b", 1000000, &msg, &error) < 0)
		bail("begin: %s", error);
	while ((r = smtp_queue_add_rcpt(msg, addr, orcpt, 0, &error)) == 0)
		n++;
	is_int(n, expect, "recipients up to the envelope limit (N)");
	ok(has(error, "one queue file"), "the N+1st is refused for size");
	is_int(smtp_queue_commit(&msg, id, &error), 0, "commit the N");
	is_int(smtp_queue_load(q, id, SMTP_QUEUE_LOCK, &env, &error), 1,
	    "load them");
	memset(reply, 1, sizeof(reply));
	for (i = 0; i < env->rcpt_count; i++)
		smtp_queue_rcpt_result(env, i, SMTP_QUEUE_DEFERRED, 2000000000,
		    2000000000, reply, sizeof(reply));
	is_int(smtp_queue_save(q, env, &error), 0,
	    "save with every diagnostic at its worst");
	smtp_queue_env_free(&env);
	is_int(smtp_queue_load(q, id, 0, &env, &error), 1,
	    "and it loads back");
	ok(env != NULL && env->rcpt_count == n &&
	    env->rcpts[n - 1].diag_len == SMTP_QUEUE_DIAG_MAX,
	    "all of it");
	smtp_queue_env_free(&env);
	free(addr);
	free(orcpt);
	smtp_queue_close(&q);
}

/* exact_env: a valid envelope text of exactly size bytes (recipients
 * whose diagnostics pad it), for message id. */
static unsigned char *
exact_env(const char *id, size_t size)
{
	static const char block[] = "rcpt <a@b>\nstate pending\nattempts 0\n"
	    "last 0\nnext 0\ndiag ";
	const size_t fixed = sizeof(block) - 1 + 1, most = 2036;
	struct buf b;
	char head[256];
	size_t n, hlen, sum, each, extra, c, i, k;

	n = size / (fixed + most) + 1;
	hlen = (size_t)snprintf(head, sizeof(head), "loft-queue 1\nid %s\n"
	    "arrival 1.000000\nsize 0\nsender <>\nbounce 1\nattempts 0\n"
	    "hold 0\nrecipients %zu\n", id, n);
	sum = size - hlen - 4 - n * fixed;
	each = sum / n;
	extra = sum % n;
	buf_init(&b, size + 1);
	buf_append(&b, head, hlen);
	for (i = 0; i < n; i++) {
		c = each + (i < extra ? 1 : 0);
		if (buf_append_str(&b, block) < 0)
			bail("exact_env");
		/* c characters: c / 4 escapes and c % 4 plain bytes. */
		for (k = 0; k < c / 4; k++)
			buf_append_str(&b, "\\x01");
		for (k = 0; k < c % 4; k++)
			buf_append_byte(&b, 'p');
		buf_append_byte(&b, '\n');
	}
	buf_append_str(&b, "end\n");
	if (b.len != size)
		bail("exact_env: %zu bytes, not %zu", b.len, size);
	return buf_steal(&b, NULL);
}

static void
test_parse_cap(void)
{
	struct smtp_queue *q;
	struct smtp_queue_env *env;
	const char *error;
	char path[PATH_MAX], file[PATH_MAX + 64], id[SMTP_QUEUE_ID_MAX];
	unsigned char *text;
	unsigned int line;
	int fd;

	text = exact_env("0SZ7R2QW0B7X00ABC", SMTP_QUEUE_ENV_MAX);
	is_int(smtp_queue_env_parse("0SZ7R2QW0B7X00ABC", text,
	    SMTP_QUEUE_ENV_MAX, &env, &line, &error), 0,
	    "an envelope of exactly SMTP_QUEUE_ENV_MAX bytes parses");
	smtp_queue_env_free(&env);
	free(text);
	text = exact_env("0SZ7R2QW0B7X00ABC", SMTP_QUEUE_ENV_MAX + 1);
	is_int(smtp_queue_env_parse("0SZ7R2QW0B7X00ABC", text,
	    SMTP_QUEUE_ENV_MAX + 1, &env, &line, &error), -1,
	    "one byte more does not");
	ok(has(error, "over the limit") && line == 0, "error says the size");
	free(text);

	/* Through files: a loaded envelope at N, then a sparse one at N+1. */
	q = new_queue(path, sizeof(path));
	put(q, "a@b", (const unsigned char *)"x", 1, 1, id);
	text = exact_env(id, SMTP_QUEUE_ENV_MAX);
	snprintf(file, sizeof(file), "%s/env/%s", path, id);
	spew(file, text, SMTP_QUEUE_ENV_MAX);
	free(text);
	is_int(smtp_queue_load(q, id, 0, &env, &error), 1,
	    "load an envelope file at the limit");
	smtp_queue_env_free(&env);
	if ((fd = open(file, O_WRONLY)) < 0 ||
	    ftruncate(fd, SMTP_QUEUE_ENV_MAX + 1) < 0)
		bail("ftruncate: %s", strerror(errno));
	close(fd);
	is_int(smtp_queue_load(q, id, 0, &env, &error), -1,
	    "an envelope file one byte over is refused");
	ok(has(error, "over the limit") && has(error, "corrupt/"),
	    "and quarantined");
	smtp_queue_close(&q);
}

/*
 * Crashes: a child ends (_exit) at one step; the queue is then checked.
 */

/* crash_commit: in a child, receive a message and crash at step; returns
 * the child's exit code (CRASHED when the step was reached). */
static int
crash_commit(const char *path, int step, const unsigned char *data,
    size_t len)
{
	struct smtp_queue *q;
	struct smtp_queue_msg *msg;
	const char *error;
	char id[SMTP_QUEUE_ID_MAX];
	int status;
	pid_t pid;

	if ((pid = fork()) < 0)
		bail("fork: %s", strerror(errno));
	if (pid == 0) {
		if (smtp_queue_open(path, &q, &error) < 0)
			_exit(2);
		set_hook(step, 0);
		if (smtp_queue_begin(q, "s@x", 10, &msg, &error) < 0 ||
		    smtp_queue_write(msg, data, len, &error) < 0 ||
		    smtp_queue_add_rcpt(msg, "r@x", NULL, 0, &error) < 0)
			_exit(3);
		_exit(smtp_queue_commit(&msg, id, &error) == 0 ? 0 : 4);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
		bail("child: %d", status);
	return WEXITSTATUS(status);
}

/* whole: how many messages the queue shows (-1 if one is broken); each
 * must load locked (no lock left behind) with all of its content. */
static int
whole(struct smtp_queue *q, const unsigned char *data, size_t len)
{
	struct smtp_queue_iter *iter;
	struct smtp_queue_env *env, *locked;
	const char *error;
	unsigned char *got;
	uint64_t size;
	size_t glen;
	int n = 0, r, fd;

	if (smtp_queue_iter_new(q, &iter, &error) < 0)
		return -1;
	while ((r = smtp_queue_iter_next(iter, &env, &error)) != 0) {
		if (r < 0)
			return -1;
		if (smtp_queue_load(q, env->id, SMTP_QUEUE_LOCK, &locked,
		    &error) != 1 || smtp_queue_open_content(q, env->id, &fd,
		    &size, &error) != 1)
			return -1;
		got = read_fd(fd, &glen);
		close(fd);
		if (glen != len || memcmp(got, data, len) != 0 ||
		    env->size != len || env->rcpt_count != 1)
			n = -1000;
		free(got);
		smtp_queue_env_free(&locked);
		smtp_queue_env_free(&env);
		n++;
	}
	smtp_queue_iter_free(&iter);
	return n;
}

static const char *const step_names[SMTP_QUEUE_STEP_COUNT] = {
	"write", "content fsync", "content link", "tmp unlink",
	"data/ fsync", "envelope write", "envelope fsync",
	"envelope rename", "env/ fsync", "committed", "save write",
	"save fsync", "save rename", "save env/ fsync"
};

static void
test_crash_commit(void)
{
	struct smtp_queue *q;
	const char *error;
	char path[PATH_MAX];
	const size_t len = 100000;
	unsigned char *data = content(len);
	unsigned int removed;
	int step, want;

	for (step = SMTP_QUEUE_STEP_WRITE; step <= SMTP_QUEUE_STEP_COMMITTED;
	    step++) {
		q = new_queue(path, sizeof(path));
		is_int(crash_commit(path, step, data, len), CRASHED,
		    "crash at %s", step_names[step]);
		want = step >= SMTP_QUEUE_STEP_ENV_DIRSYNC ? 1 : 0;
		is_int(whole(q, data, len), want, "%s: %s",
		    step_names[step], want ? "the whole message" :
		    "no message");
		if (smtp_queue_cleanup(q, 0, &removed, &error) < 0)
			bail("cleanup: %s", error);
		ok(count(path, "tmp") == 0 && count(path, "data") == want &&
		    count(path, "env") == want,
		    "%s: cleanup leaves exactly the message's files",
		    step_names[step]);
		smtp_queue_close(&q);
	}
	free(data);
}

/* crash_save: in a child, mark the recipient delivered and crash at step
 * of the save. */
static int
crash_save(const char *path, const char *id, int step)
{
	struct smtp_queue *q;
	struct smtp_queue_env *env;
	const char *error;
	int status;
	pid_t pid;

	if ((pid = fork()) < 0)
		bail("fork: %s", strerror(errno));
	if (pid == 0) {
		if (smtp_queue_open(path, &q, &error) < 0 ||
		    smtp_queue_load(q, id, SMTP_QUEUE_LOCK, &env, &error) != 1)
			_exit(2);
		smtp_queue_rcpt_result(env, 0, SMTP_QUEUE_DELIVERED, 5, 0,
		    (const unsigned char *)"250 ok", 6);
		set_hook(step, 0);
		_exit(smtp_queue_save(q, env, &error) == 0 ? 0 : 4);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
		bail("child: %d", status);
	return WEXITSTATUS(status);
}

static void
test_crash_save(void)
{
	struct smtp_queue *q;
	struct smtp_queue_env *env;
	const char *error;
	char path[PATH_MAX], id[SMTP_QUEUE_ID_MAX];
	unsigned int removed;
	int step;
	bool saved;

	for (step = SMTP_QUEUE_STEP_SAVE_WRITE;
	    step <= SMTP_QUEUE_STEP_SAVE_DIRSYNC; step++) {
		q = new_queue(path, sizeof(path));
		put(q, "s@x", (const unsigned char *)"hello\r\n", 7, 1, id);
		is_int(crash_save(path, id, step), CRASHED, "crash at %s",
		    step_names[step]);
		saved = step >= SMTP_QUEUE_STEP_SAVE_DIRSYNC;
		is_int(smtp_queue_load(q, id, SMTP_QUEUE_LOCK, &env, &error), 1,
		    "%s: envelope loads, unlocked by the crash",
		    step_names[step]);
		ok(env != NULL && env->rcpts[0].state == (saved ?
		    SMTP_QUEUE_DELIVERED : SMTP_QUEUE_PENDING) &&
		    env->rcpts[0].attempts == (saved ? 1u : 0u),
		    "%s: the %s envelope, whole", step_names[step],
		    saved ? "new" : "old");
		smtp_queue_env_free(&env);
		if (smtp_queue_cleanup(q, 0, &removed, &error) < 0)
			bail("cleanup: %s", error);
		ok(count(path, "tmp") == 0 && count(path, "env") == 1 &&
		    count(path, "data") == 1, "%s: cleanup keeps the message",
		    step_names[step]);
		smtp_queue_close(&q);
	}
}

/*
 * A full disk.
 */

static void
test_diskfull_injected(void)
{
	static const int errs[] = { ENOSPC, EDQUOT };
	struct smtp_queue *q;
	struct smtp_queue_msg *msg;
	struct smtp_queue_env *env;
	const char *error;
	char path[PATH_MAX], id[SMTP_QUEUE_ID_MAX];
	int step, r, e, bad = 0, saved_errno;

	q = new_queue(path, sizeof(path));
	for (e = 0; e < 2; e++) {
		for (step = SMTP_QUEUE_STEP_WRITE;
		    step < SMTP_QUEUE_STEP_COMMITTED; step++) {
			if (smtp_queue_begin(q, "s@x", 10, &msg, &error) < 0)
				bail("begin: %s", error);
			set_hook(step, errs[e]);
			r = smtp_queue_write(msg,
			    (const unsigned char *)"data\r\n", 6, &error);
			if (r == 0)
				r = smtp_queue_add_rcpt(msg, "r@x", NULL, 0,
				    &error);
			if (r == 0) {
				r = smtp_queue_commit(&msg, id, &error);
				saved_errno = errno;
			} else {
				saved_errno = errno;
				smtp_queue_abort(&msg);
			}
			set_hook(NO_STEP, 0);
			if (r != -1 || !has(error, "disk full") ||
			    saved_errno != errs[e] || !queue_empty(path)) {
				diag("step %s, errno %d", step_names[step],
				    errs[e]);
				bad++;
			}
		}
	}
	is_int(bad, 0, "ENOSPC and EDQUOT at every commit step: -1, "
	    "\"disk full\", errno kept, nothing left");

	put(q, "s@x", (const unsigned char *)"x", 1, 1, id);
	for (step = SMTP_QUEUE_STEP_SAVE_WRITE;
	    step <= SMTP_QUEUE_STEP_SAVE_RENAME; step++) {
		if (smtp_queue_load(q, id, SMTP_QUEUE_LOCK, &env, &error) != 1)
			bail("load: %s", error);
		env->attempts = 7;
		set_hook(step, ENOSPC);
		r = smtp_queue_save(q, env, &error);
		set_hook(NO_STEP, 0);
		smtp_queue_env_free(&env);
		if (r != -1 || !has(error, "disk full") ||
		    count(path, "tmp") != 0 ||
		    smtp_queue_load(q, id, 0, &env, &error) != 1 ||
		    env->attempts != 0)
			bad++;
		smtp_queue_env_free(&env);
	}
	is_int(bad, 0, "ENOSPC at save's write, fsync, rename: -1, the old "
	    "envelope stays, nothing in tmp/");
	smtp_queue_close(&q);
}

/* A real full disk: a 256 KiB tmpfs, when we may mount one. */
static void
test_diskfull_tmpfs(void)
{
	struct smtp_queue *q;
	struct smtp_queue_msg *msg;
	const char *error;
	char fs[PATH_MAX], path[PATH_MAX + 8], id[SMTP_QUEUE_ID_MAX];
	unsigned char *data = content(8192);
	int i, r = 0, after = 0;

	snprintf(fs, sizeof(fs), "%s/fs", base);
	if (mkdir(fs, 0700) < 0 ||
	    mount("tmpfs", fs, "tmpfs", 0, "size=256k,mode=0700") < 0) {
		diag("no tmpfs (%s): the full disk is only injected",
		    strerror(errno));
		for (i = 0; i < 5; i++)
			ok(1, "# SKIP cannot mount a tmpfs");
		free(data);
		return;
	}
	snprintf(path, sizeof(path), "%s/q", fs);
	if (smtp_queue_open(path, &q, &error) < 0)
		bail("open: %s", error);
	if (smtp_queue_begin(q, "s@x", 10, &msg, &error) < 0)
		bail("begin: %s", error);
	for (i = 0; i < 128 && r == 0; i++)
		r = smtp_queue_write(msg, data, 8192, &error);
	if (r == 0) {
		smtp_queue_add_rcpt(msg, "r@x", NULL, 0, &error);
		r = smtp_queue_commit(&msg, id, &error);
	} else {
		is_int(smtp_queue_write(msg, data, 1, &error), -1,
		    "a write after the failure fails too");
		after = 1;
		smtp_queue_add_rcpt(msg, "r@x", NULL, 0, &error);
		r = smtp_queue_commit(&msg, id, &error);
	}
	if (!after)
		ok(0, "a write after the failure fails too");
	is_int(r, -1, "1 MiB into 256 KiB: commit fails");
	ok(has(error, "disk full") && has(error, "No space left"),
	    "the error says disk full");
	ok(queue_empty(path), "nothing left behind on the full disk");
	put(q, "s@x", data, 8192, 1, id);
	ok(count(path, "env") == 1, "the space came back: a small message "
	    "fits");
	smtp_queue_close(&q);
	if (umount(fs) < 0)
		diag("umount %s: %s", fs, strerror(errno));
	free(data);
}

/*
 * Damaged envelopes.
 */

struct damage {
	const char *name;
	const char *from;	/* replaced in the envelope text... */
	const char *to;		/* ...by this */
	const char *error;	/* expected in the error */
	int line;		/* expected line (0: any) */
};

/* The envelope made by damage_env: "loft-queue 1", id, arrival, size 5,
 * sender, bounce, attempts, hold, recipients 1, rcpt, state, attempts,
 * last, next, end. */
static const struct damage damages[] = {
	{ "truncated (no end line)", "end\n", "", "no \"end\" line", 15 },
	{ "truncated inside a line", "end\n", "en", "no newline", 15 },
	{ "cut in the middle", "state pending\nattempts 0\nlast 0\nnext 0\n"
	    "end\n", "state pend", "no newline", 11 },
	{ "unknown field", "size 5\n", "size 5\ncolor blue\n",
	    "unknown field \"color\"", 5 },
	{ "bad number", "size 5\n", "size 5x\n", "bad number", 4 },
	{ "negative number", "size 5\n", "size -5\n", "bad number", 4 },
	{ "leading zero", "size 5\n", "size 05\n", "bad number", 4 },
	{ "number too big", "size 5\n", "size 18446744073709551616\n",
	    "out of range", 4 },
	{ "time too big", "last 0\n", "last 1099511627776\n",
	    "out of range", 13 },
	{ "field twice", "size 5\n", "size 5\nsize 5\n",
	    "\"size\" where \"sender\"", 5 },
	{ "fields out of order", "hold 0\nrecipients 1\n",
	    "recipients 1\nhold 0\n", "\"recipients\" where \"hold\"", 8 },
	{ "unknown version", "loft-queue 1\n", "loft-queue 2\n",
	    "unknown envelope version", 1 },
	{ "ID of another file", "id 0", "id 1", "differs from the file", 2 },
	{ "bounce disagrees", "bounce 0\n", "bounce 1\n", "disagrees", 6 },
	{ "raw CR in a value", "rcpt <r0@x.example>\n",
	    "rcpt <r0@\rx.example>\n", "raw control", 10 },
	{ "bad escape", "rcpt <r0@x.example>\n", "rcpt <r0@\\qx.example>\n",
	    "bad escape", 10 },
	{ "needless escape", "rcpt <r0@x.example>\n",
	    "rcpt <r0@\\x78.example>\n", "bad escape", 10 },
	{ "lower case escape", "state pending\n", "state pending\n"
	    "attempts 0\nlast 0\nnext 0\ndiag \\x0d\nend\n", "bad escape",
	    0 },
	{ "escaped control in an address", "rcpt <r0@x.example>\n",
	    "rcpt <r0@\\x0Dx.example>\n", "control character", 10 },
	{ "address without <>", "rcpt <r0@x.example>\n",
	    "rcpt r0@x.example\n", "not in <>", 10 },
	{ "empty recipient", "rcpt <r0@x.example>\n", "rcpt <>\n", "empty",
	    10 },
	{ "more recipients said than there are", "recipients 1\n",
	    "recipients 2\n", "\"end\" where \"rcpt\"", 15 },
	{ "impossible recipient count", "recipients 1\n",
	    "recipients 4000000000\n", "impossible number", 9 },
	{ "no recipients", "recipients 1\n", "recipients 0\n",
	    "impossible number", 9 },
	{ "data after end", "end\n", "end\nmore\n", "after the \"end\"", 16 },
	{ "end with a value", "end\n", "end now\n", "takes no value", 15 },
	{ "field without a value", "hold 0\n", "hold\n", "without a value",
	    8 },
	{ "bad state", "state pending\n", "state lost\n", "bad value", 11 },
	{ "bad notify", "state pending\n", "notify failure,success\n"
	    "state pending\n", "bad value for \"notify\"", 11 },
	{ "bad arrival", "arrival ", "arrival x", "bad number", 3 },
	{ "arrival without microseconds", ".", "", "bad time", 3 },
};

static void
test_damaged(void)
{
	struct smtp_queue *q;
	struct smtp_queue_env *env;
	struct smtp_queue_iter *iter;
	const char *error;
	char path[PATH_MAX], file[PATH_MAX + 64], id[SMTP_QUEUE_ID_MAX];
	char want[64];
	unsigned char *orig, *text, *got;
	size_t olen, tlen, glen, i, fl, tl;
	unsigned int removed;
	const char *at;
	bool quarantined;
	int r;

	for (i = 0; i < sizeof(damages) / sizeof(damages[0]); i++) {
		const struct damage *d = &damages[i];

		q = new_queue(path, sizeof(path));
		put(q, "s@x", (const unsigned char *)"body\n", 5, 1, id);
		snprintf(file, sizeof(file), "%s/env/%s", path, id);
		orig = slurp(file, &olen);
		at = strstr((char *)orig, d->from);
		if (at == NULL)
			bail("%s: \"%s\" not in the envelope", d->name,
			    d->from);
		fl = strlen(d->from);
		tl = strlen(d->to);
		tlen = olen - fl + tl;
		text = malloc(tlen + 1);
		memcpy(text, orig, (size_t)(at - (char *)orig));
		memcpy(text + (at - (char *)orig), d->to, tl);
		memcpy(text + (at - (char *)orig) + tl, at + fl,
		    olen - (size_t)(at - (char *)orig) - fl);
		spew(file, text, tlen);

		r = smtp_queue_load(q, id, 0, &env, &error);
		if (d->line > 0)
			snprintf(want, sizeof(want), "line %d: ", d->line);
		else
			strlcpy(want, "line ", sizeof(want));
		ok(r == -1 && has(error, d->error) && has(error, want) &&
		    has(error, "/env/") && has(error, id),
		    "%s: refused, with file and line", d->name);
		snprintf(file, sizeof(file), "%s/corrupt/%s.e", path, id);
		got = slurp(file, &glen);
		quarantined = got != NULL && glen == tlen &&
		    memcmp(got, text, tlen) == 0;
		free(got);
		snprintf(file, sizeof(file), "%s/corrupt/%s.d", path, id);
		got = slurp(file, &glen);
		quarantined = quarantined && got != NULL && glen == 5;
		free(got);
		if (smtp_queue_cleanup(q, 0, &removed, &error) < 0)
			bail("cleanup: %s", error);
		ok(quarantined && queue_empty(path) &&
		    count(path, "corrupt") == 2,
		    "%s: moved whole to corrupt/, kept by cleanup", d->name);
		smtp_queue_iter_new(q, &iter, &error);
		ok(smtp_queue_iter_next(iter, &env, &error) == 0 &&
		    smtp_queue_load(q, id, SMTP_QUEUE_LOCK, &env, &error) == 0,
		    "%s: no longer in the queue", d->name);
		smtp_queue_iter_free(&iter);
		free(orig);
		free(text);
		smtp_queue_close(&q);
	}
}

static void
test_no_content(void)
{
	struct smtp_queue *q;
	struct smtp_queue_env *env;
	const char *error;
	char path[PATH_MAX], file[PATH_MAX + 64], id[SMTP_QUEUE_ID_MAX];

	q = new_queue(path, sizeof(path));
	put(q, "s@x", (const unsigned char *)"x", 1, 1, id);
	snprintf(file, sizeof(file), "%s/data/%s", path, id);
	unlink(file);
	is_int(smtp_queue_load(q, id, 0, &env, &error), 1,
	    "unlocked load (mailq) does not open the content");
	smtp_queue_env_free(&env);
	is_int(smtp_queue_load(q, id, SMTP_QUEUE_LOCK, &env, &error), -1,
	    "locked load without content: damaged");
	ok(has(error, "no content file") && count(path, "corrupt") == 1 &&
	    count(path, "env") == 0, "envelope moved to corrupt/");
	smtp_queue_close(&q);
}

/* Every prefix of a good envelope, and a CR or NUL put at every byte,
 * must fail to parse; the whole must parse. */
static void
test_parse_bytes(void)
{
	struct smtp_queue_env *env;
	const char *error;
	unsigned char copy[sizeof(golden)];
	const size_t len = sizeof(golden) - 1;
	unsigned int line;
	size_t i;
	int wrong = 0;

	for (i = 0; i < len; i++) {
		if (smtp_queue_env_parse(NULL, (const unsigned char *)golden,
		    i, &env, &line, &error) == 0) {
			diag("prefix of %zu bytes parsed", i);
			smtp_queue_env_free(&env);
			wrong++;
		}
	}
	is_int(wrong, 0, "each of %zu prefixes fails", len);
	for (i = 0; i < len; i++) {
		memcpy(copy, golden, len);
		copy[i] = golden[i] == '\n' ? 'x' : '\r';
		if (golden[i] == '\n' && i + 1 == len)
			copy[i] = '\r';
		if (smtp_queue_env_parse(NULL, copy, len, &env, &line,
		    &error) == 0) {
			diag("byte %zu replaced parsed", i);
			smtp_queue_env_free(&env);
			wrong++;
		}
		copy[i] = '\0';
		if (smtp_queue_env_parse(NULL, copy, len, &env, &line,
		    &error) == 0) {
			diag("NUL at %zu parsed", i);
			smtp_queue_env_free(&env);
			wrong++;
		}
	}
	is_int(wrong, 0, "a CR (or a lost LF) or a NUL at each byte fails");
	is_int(smtp_queue_env_parse(NULL, (const unsigned char *)golden, len,
	    &env, &line, &error), 0, "the whole parses");
	smtp_queue_env_free(&env);
}

/*
 * Locks, remove, hold, iteration, cleanup.
 */

static void
test_locks(void)
{
	struct smtp_queue *q;
	struct smtp_queue_env *env, *env2;
	const char *error;
	char path[PATH_MAX], id[SMTP_QUEUE_ID_MAX];
	uint64_t size;
	time_t next;
	int fd, status;
	pid_t pid;

	q = new_queue(path, sizeof(path));
	put(q, "s@x", (const unsigned char *)"abc", 3, 3, id);
	is_int(smtp_queue_load(q, id, SMTP_QUEUE_LOCK, &env, &error), 1,
	    "lock a message");
	is_int(smtp_queue_load(q, id, SMTP_QUEUE_LOCK, &env2, &error),
	    SMTP_QUEUE_LOCKED, "a second lock: LOCKED");
	is_int(smtp_queue_remove(q, id, &error), SMTP_QUEUE_LOCKED,
	    "remove while locked: LOCKED");
	is_int(smtp_queue_hold(q, id, true, &error), SMTP_QUEUE_LOCKED,
	    "hold while locked: LOCKED");
	is_int(smtp_queue_load(q, id, 0, &env2, &error), 1,
	    "an unlocked load (mailq) works");
	smtp_queue_env_free(&env2);
	is_int(smtp_queue_open_content(q, id, &fd, &size, &error), 1,
	    "open content works");
	close(fd);

	ok(smtp_queue_env_due(env, &next) && next == 0,
	    "pending: due now");
	smtp_queue_rcpt_result(env, 0, SMTP_QUEUE_DEFERRED, 100, 500, NULL, 0);
	smtp_queue_rcpt_result(env, 1, SMTP_QUEUE_DEFERRED, 100, 300, NULL, 0);
	smtp_queue_rcpt_result(env, 2, SMTP_QUEUE_DELIVERED, 100, 900, NULL,
	    0);
	ok(smtp_queue_env_due(env, &next) && next == 300,
	    "deferred: the earliest next attempt");
	smtp_queue_rcpt_result(env, 0, SMTP_QUEUE_FAILED, 100, 0, NULL, 0);
	smtp_queue_rcpt_result(env, 1, SMTP_QUEUE_DELIVERED, 100, 0, NULL, 0);
	ok(!smtp_queue_env_due(env, NULL), "all final: nothing due");

	is_int(smtp_queue_env_remove(q, &env, &error), 0,
	    "remove the locked message");
	ok(env == NULL && queue_empty(path), "its files are gone");
	is_int(smtp_queue_remove(q, id, &error), 0, "remove again: not found");
	is_int(smtp_queue_load(q, id, 0, &env, &error), 0,
	    "load: not found");

	put(q, "s@x", (const unsigned char *)"abc", 3, 1, id);
	is_int(smtp_queue_hold(q, id, true, &error), 1, "hold");
	smtp_queue_load(q, id, 0, &env, &error);
	ok(env != NULL && env->hold, "held");
	smtp_queue_env_free(&env);
	is_int(smtp_queue_hold(q, id, false, &error), 1, "release");
	smtp_queue_load(q, id, 0, &env, &error);
	ok(env != NULL && !env->hold, "released");

	/* Saving an envelope that is not locked is a bug. */
	fflush(stdout);
	if ((pid = fork()) == 0) {
		close(2);
		smtp_queue_save(q, env, &error);
		_exit(0);
	}
	waitpid(pid, &status, 0);
	ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
	    "save of an unlocked envelope panics");
	smtp_queue_env_free(&env);

	is_int(smtp_queue_remove(q, id, &error), 1, "remove by ID");
	ok(queue_empty(path), "removed");

	/* Removals that share one fsync of env/: the envelopes go at once,
	 * the contents at the flush, after it. */
	{
		char id_b[SMTP_QUEUE_ID_MAX], p2[PATH_MAX + 64];
		struct smtp_queue_env *env_b;

		is_int(smtp_queue_removals_flush(q, &error), 0,
		    "flush with nothing to flush");
		put(q, "s@x", (const unsigned char *)"abc", 3, 1, id);
		put(q, "s@x", (const unsigned char *)"def", 3, 1, id_b);
		smtp_queue_load(q, id, SMTP_QUEUE_LOCK, &env, &error);
		smtp_queue_load(q, id_b, SMTP_QUEUE_LOCK, &env_b, &error);
		is_int(smtp_queue_env_remove_later(q, &env, &error), 0,
		    "remove later: the first");
		is_int(smtp_queue_env_remove_later(q, &env_b, &error), 0,
		    "remove later: the second");
		ok(env == NULL && env_b == NULL, "both envelopes freed");
		is_int(count(path, "env"), 0, "the envelopes are gone");
		is_int(count(path, "data"), 2, "the contents wait for the flush");
		is_int(smtp_queue_removals_flush(q, &error), 0, "flush");
		ok(queue_empty(path), "then the contents are gone too");
		is_int(smtp_queue_removals_flush(q, &error), 0,
		    "a second flush has nothing to do");

		put(q, "s@x", (const unsigned char *)"abc", 3, 1, id);
		smtp_queue_load(q, id, SMTP_QUEUE_LOCK, &env, &error);
		snprintf(p2, sizeof(p2), "%s/env/%s", path, id);
		unlink(p2);
		is_int(smtp_queue_env_remove_later(q, &env, &error), -1,
		    "remove later of an envelope gone meanwhile: -1");
		ok(env == NULL && has(error, "removed meanwhile"),
		    "freed, and said: %s", error);
		is_int(smtp_queue_removals_flush(q, &error), 0,
		    "nothing of it to flush");
		is_int(count(path, "data"), 1,
		    "its content is cleanup's, not the flush's");
		snprintf(p2, sizeof(p2), "%s/data/%s", path, id);
		unlink(p2);
	}
	smtp_queue_close(&q);
}

static void
test_abort(void)
{
	struct smtp_queue *q;
	struct smtp_queue_msg *msg;
	const char *error;
	char path[PATH_MAX];
	unsigned char *data = content(200000);

	q = new_queue(path, sizeof(path));
	smtp_queue_begin(q, "s@x", 5, &msg, &error);
	smtp_queue_write(msg, data, 200000, &error);
	smtp_queue_add_rcpt(msg, "r@x", NULL, 0, &error);
	smtp_queue_abort(&msg);
	ok(msg == NULL && queue_empty(path), "abort leaves nothing");
	smtp_queue_abort(&msg);
	ok(1, "abort of NULL is harmless");
	free(data);
	smtp_queue_close(&q);
}

static void
test_iter(void)
{
	struct smtp_queue *q;
	struct smtp_queue_iter *iter;
	struct smtp_queue_env *env;
	const char *error;
	char path[PATH_MAX], ids[30][SMTP_QUEUE_ID_MAX], file[PATH_MAX + 64];
	char prev[SMTP_QUEUE_ID_MAX] = "";
	int i, n = 0, errors = 0, r;
	bool order = true, kept = true;

	q = new_queue(path, sizeof(path));
	for (i = 0; i < 30; i++)
		put(q, "s@x", (const unsigned char *)"x", 1, 1, ids[i]);
	snprintf(file, sizeof(file), "%s/env/README", path);
	spew(file, "not an ID", 9);
	is_int(smtp_queue_iter_new(q, &iter, &error), 0, "iterate");
	/* Another process delivers and removes half meanwhile; one is
	 * damaged. */
	for (i = 0; i < 30; i += 2)
		smtp_queue_remove(q, ids[i], &error);
	snprintf(file, sizeof(file), "%s/env/%s", path, ids[5]);
	spew(file, "junk\n", 5);
	while ((r = smtp_queue_iter_next(iter, &env, &error)) != 0) {
		if (r < 0) {
			errors++;
			continue;
		}
		if (strcmp(prev, env->id) >= 0)
			order = false;
		strlcpy(prev, env->id, sizeof(prev));
		for (i = 0; i < 30; i += 2)
			if (strcmp(env->id, ids[i]) == 0)
				kept = false;
		n++;
		smtp_queue_env_free(&env);
	}
	smtp_queue_iter_free(&iter);
	ok(iter == NULL, "iter_free clears the pointer");
	is_int(n, 14, "the 14 good remaining messages");
	is_int(errors, 1, "the damaged one reported once, the walk went on");
	ok(order && kept, "in ID order, none of the removed ones");
	ok(access(file, F_OK) < 0, "the damaged one is out of env/");
	smtp_queue_close(&q);
}

static void
test_cleanup(void)
{
	struct smtp_queue *q;
	struct smtp_queue_msg *msg;
	const char *error;
	char path[PATH_MAX], file[PATH_MAX + 64], id[SMTP_QUEUE_ID_MAX];
	char orphan[SMTP_QUEUE_ID_MAX];
	struct timespec old[2] = { { 0, 0 }, { 0, 0 } };
	unsigned int removed;

	old[0].tv_sec = old[1].tv_sec = time(NULL) - 7200;
	q = new_queue(path, sizeof(path));
	put(q, "s@x", (const unsigned char *)"x", 1, 1, id);
	if (smtp_queue_begin(q, "s@x", 5, &msg, &error) < 0)
		bail("begin: %s", error);
	strlcpy(orphan, "00000001000000001", sizeof(orphan));
	snprintf(file, sizeof(file), "%s/tmp/stale.e", path);
	spew(file, "x", 1);
	snprintf(file, sizeof(file), "%s/data/%s", path, orphan);
	spew(file, "x", 1);
	is_int(smtp_queue_cleanup(q, 3600, &removed, &error), 0,
	    "cleanup at start-up");
	is_int(removed, 0, "young files are left alone");
	snprintf(file, sizeof(file), "%s/tmp/stale.e", path);
	utimensat(AT_FDCWD, file, old, 0);
	snprintf(file, sizeof(file), "%s/data/%s", path, orphan);
	utimensat(AT_FDCWD, file, old, 0);
	snprintf(file, sizeof(file), "%s/data/%s", path, id);
	utimensat(AT_FDCWD, file, old, 0);
	is_int(smtp_queue_cleanup(q, 3600, &removed, &error), 0,
	    "cleanup two hours later");
	is_int(removed, 2, "the old temporary file and orphan content went");
	ok(count(path, "tmp") == 1 && count(path, "data") == 1 &&
	    access(file, F_OK) == 0, "the live transaction and the old "
	    "message stay");
	smtp_queue_write(msg, (const unsigned char *)"y", 1, &error);
	smtp_queue_add_rcpt(msg, "r@x", NULL, 0, &error);
	is_int(smtp_queue_commit(&msg, id, &error), 0,
	    "the live transaction commits");
	smtp_queue_close(&q);
}

/*
 * The retry schedule.
 */

static void
test_schedule(void)
{
	static const struct {
		unsigned int attempts;
		time_t delay;
	} steps[] = {
		{ 0, 0 }, { 1, 300 }, { 2, 600 }, { 3, 1200 }, { 4, 2400 },
		{ 5, 4000 }, { 6, 4000 }, { 100, 4000 }, { UINT_MAX, 4000 },
	};
	const struct smtp_queue_sched def = {
		SMTP_QUEUE_DEF_MIN_BACKOFF, SMTP_QUEUE_DEF_MAX_BACKOFF,
		SMTP_QUEUE_DEF_MAX_LIFETIME, SMTP_QUEUE_DEF_BOUNCE_LIFETIME
	};
	struct smtp_queue_sched s = def;
	const time_t arr = 1700000000, now = arr + 1000;
	time_t next;
	size_t i;

	ok(def.minimal_backoff_time == 300 && def.maximal_backoff_time == 4000
	    && def.maximal_queue_lifetime == 432000 &&
	    def.bounce_queue_lifetime == 432000, "Postfix's defaults");
	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		next = -1;
		ok(smtp_queue_next_attempt(&def, arr, steps[i].attempts, false,
		    now, &next) == 1 && next == now + steps[i].delay,
		    "after %u attempts: %lld s", steps[i].attempts,
		    (long long)steps[i].delay);
	}
	ok(smtp_queue_next_attempt(&def, arr, 1, false, arr + 432000 - 1,
	    &next) == 1 && next == arr + 432000,
	    "a second before expiry: the last try at the expiry time");
	is_int(smtp_queue_next_attempt(&def, arr, 1, false, arr + 432000,
	    &next), 0, "at maximal_queue_lifetime: give up");
	s.bounce_queue_lifetime = 86400;
	ok(smtp_queue_next_attempt(&s, arr, 5, false, arr + 86400, &next) == 1
	    && next == arr + 86400 + 4000, "a message lives past a day");
	is_int(smtp_queue_next_attempt(&s, arr, 5, true, arr + 86400, &next),
	    0, "a bounce expires at bounce_queue_lifetime");
	ok(smtp_queue_next_attempt(&s, arr, 5, true, arr + 86400 - 1000,
	    &next) == 1 && next == arr + 86400, "a bounce's last try is at "
	    "its expiry");
	s.maximal_queue_lifetime = 0;
	is_int(smtp_queue_next_attempt(&s, arr, 1, false, arr, &next), 0,
	    "lifetime 0: no retry");
	s = def;
	s.minimal_backoff_time = 600;
	s.maximal_backoff_time = 100;
	ok(smtp_queue_next_attempt(&s, arr, 4, false, now, &next) == 1 &&
	    next == now + 600, "maximum under minimum: the minimum");
	s.minimal_backoff_time = 0;
	ok(smtp_queue_next_attempt(&s, arr, UINT_MAX, false, now, &next) == 1
	    && next == now, "minimum 0: at once");
}

int
main(void)
{
	const char *tmp = getenv("TMPDIR");

	if (tmp == NULL || tmp[0] != '/' || strlen(tmp) > 200)
		tmp = "/tmp";
	snprintf(base, sizeof(base), "%s/loft-queue-XXXXXX", tmp);
	if (mkdtemp(base) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	umask(022);
	test_open();
	test_id_form();
	test_id_hostile();
	test_id_many();
	test_id_two_procs();
	test_golden();
	test_roundtrip();
	test_null_sender();
	test_limits();
	test_env_cap();
	test_parse_cap();
	test_crash_commit();
	test_crash_save();
	test_diskfull_injected();
	test_diskfull_tmpfs();
	test_damaged();
	test_no_content();
	test_parse_bytes();
	test_locks();
	test_abort();
	test_iter();
	test_cleanup();
	test_schedule();
	if (fsutil_remove_tree(base) < 0)
		diag("could not remove %s", base);
	return done_testing();
}
