/*
 * Unit tests for lib/lock.c: method lists, fcntl/flock/dotlock conflicts
 * with forked children, stale dotlocks, no lock left behind, and the
 * opposite-order taker (procmail: dotlock, then fcntl) not deadlocking us.
 */
#include "config.h"
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include "compat/compat.h"
#include "lock.h"
#include "tap.h"

static char dir[] = "/tmp/loft-lock-XXXXXX";
static char mbox[300], dotlock[310];

struct child {
	pid_t pid;
	int to;			/* write a byte: the child goes on */
	int from;		/* the child writes a byte when ready */
};

static int
open_mbox(void)
{
	int fd = open(mbox, O_RDWR | O_CREAT, 0600);

	if (fd < 0)
		bail("open %s: %s", mbox, strerror(errno));
	return fd;
}

static int
wait_byte(int fd)
{
	char c;

	return read(fd, &c, 1) == 1 ? 0 : -1;
}

static void
send_byte(int fd)
{
	if (write(fd, "g", 1) != 1)
		bail("pipe write: %s", strerror(errno));
}

/* Fork a child that runs fn(), says it is ready, waits for the parent's
 * byte, then runs done() (may be NULL) and exits. */
static void
child_start(struct child *c, int (*fn)(void), void (*done)(void))
{
	int down[2], up[2];

	if (pipe(down) < 0 || pipe(up) < 0)
		bail("pipe");
	fflush(stdout);
	if ((c->pid = fork()) < 0)
		bail("fork");
	if (c->pid == 0) {
		close(down[1]);
		close(up[0]);
		if (fn() < 0)
			_exit(2);
		send_byte(up[1]);
		wait_byte(down[0]);
		if (done != NULL)
			done();
		_exit(0);
	}
	close(down[0]);
	close(up[1]);
	c->to = down[1];
	c->from = up[0];
	if (wait_byte(c->from) < 0)
		bail("child failed to start");
}

static int
child_finish(struct child *c)
{
	int status;

	/* The child may be gone already (SIGPIPE is ignored). */
	if (write(c->to, "g", 1) < 0 && errno != EPIPE)
		diag("pipe write: %s", strerror(errno));
	close(c->to);
	close(c->from);
	if (waitpid(c->pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* Child bodies: take a lock the way another program would, and keep it
 * (the child's fds stay open until it exits). */
static int
hold_fcntl(void)
{
	struct flock fl;
	int fd = open_mbox();

	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	return fcntl(fd, F_SETLK, &fl);
}

static int
hold_flock(void)
{
	return flock(open_mbox(), LOCK_EX | LOCK_NB);
}

static struct lock_mbox *child_lk;	/* the child's, in hold_loft */

static int
hold_loft(void)
{
	struct lock_opts o = { LOCK_M_FCNTL | LOCK_M_DOTLOCK, 1, 1, 600 };
	const char *error;

	return lock_mbox_acquire(open_mbox(), mbox, &o, &child_lk, &error);
}

static void
release_loft(void)
{
	lock_mbox_release(&child_lk);
}

/* procmail's order: dotlock first (created here by hand, as lockfile(1)
 * would), then it waits for fcntl with F_SETLKW while holding it. */
static int
hold_dotlock_by_hand(void)
{
	int fd = open(dotlock, O_WRONLY | O_CREAT | O_EXCL, 0644);

	return fd < 0 ? -1 : close(fd);
}

static void
procmail_order_finish(void)
{
	struct flock fl;
	int fd = open_mbox();

	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	if (fcntl(fd, F_SETLKW, &fl) < 0 || write(fd, "p", 1) != 1 ||
	    unlink(dotlock) < 0)
		_exit(3);
	fl.l_type = F_UNLCK;
	fcntl(fd, F_SETLK, &fl);
	_exit(0);
}

/* Whether some other process holds an fcntl lock on the mbox, as seen
 * from a forked child (F_GETLK never reports our own locks). */
static int
fcntl_held_elsewhere(void)
{
	struct flock fl;
	pid_t pid;
	int status;

	fflush(stdout);
	if ((pid = fork()) == 0) {
		int fd = open_mbox();

		memset(&fl, 0, sizeof(fl));
		fl.l_type = F_WRLCK;
		fl.l_whence = SEEK_SET;
		if (fcntl(fd, F_GETLK, &fl) < 0)
			_exit(2);
		_exit(fl.l_type == F_UNLCK ? 0 : 1);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
		bail("fcntl probe child failed");
	return WEXITSTATUS(status);
}

/* Entries of dir other than "." and ".."; the first few names in
 * names (size namesize), space separated. */
static int
dir_entries(char *names, size_t namesize)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	names[0] = '\0';
	if (d == NULL)
		bail("opendir");
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		n++;
		strlcat(names, de->d_name, namesize);
		strlcat(names, " ", namesize);
	}
	closedir(d);
	return n;
}

static void
make_dotlock(time_t age)
{
	struct timespec ts[2];
	int fd = open(dotlock, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || write(fd, "other\n", 6) != 6)
		bail("make dotlock");
	ts[0].tv_sec = ts[1].tv_sec = time(NULL) - age;
	ts[0].tv_nsec = ts[1].tv_nsec = 0;
	if (futimens(fd, ts) < 0)
		bail("futimens");
	close(fd);
}

static int
dotlock_is_other(void)
{
	char buf[16] = "";
	int fd = open(dotlock, O_RDONLY);

	if (fd < 0)
		return 0;
	if (read(fd, buf, sizeof(buf) - 1) < 0)
		buf[0] = '\0';
	close(fd);
	return strcmp(buf, "other\n") == 0;
}

static void
test_parse(void)
{
	char *both[] = { "fcntl", "dotlock", NULL };
	char *all[] = { "dotlock", "flock", "fcntl", "fcntl", NULL };
	char *bad[] = { "fcntl", "lockf\n", NULL };
	char *none[] = { NULL };
	const char *error = NULL;
	unsigned m = 0;

	is_int(lock_methods_parse(both, &m, &error), 0, "parse fcntl, dotlock");
	is_int(m, LOCK_M_FCNTL | LOCK_M_DOTLOCK, "bits of fcntl, dotlock");
	is_int(lock_methods_parse(all, &m, &error), 0, "any order, repeats");
	is_int(m, LOCK_M_FCNTL | LOCK_M_DOTLOCK | LOCK_M_FLOCK, "all bits");
	m = 99;
	is_int(lock_methods_parse(bad, &m, &error), -1, "unknown method: -1");
	ok(strstr(error, "\"lockf\\012\"") != NULL && m == 99,
	    "error names it, escaped: %s", error);
	is_int(lock_methods_parse(none, &m, &error), -1, "empty list: -1");
}

static void
test_plain(void)
{
	struct lock_opts o = { LOCK_M_FCNTL | LOCK_M_DOTLOCK, 3, 1, 600 };
	struct lock_mbox *lk = NULL;
	const char *error = NULL;
	char names[256], buf[32];
	int fd = open_mbox(), dfd;
	ssize_t n;

	is_int(lock_mbox_acquire(fd, mbox, &o, &lk, &error), 0,
	    "uncontended acquire");
	ok(lk != NULL, "lock returned");
	is_int(fcntl_held_elsewhere(), 1, "fcntl lock seen by others");
	dfd = open(dotlock, O_RDONLY);
	n = dfd < 0 ? -1 : read(dfd, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	if (dfd >= 0)
		close(dfd);
	ok(n > 0 && atol(buf) == (long)getpid(), "PATH.lock holds our pid");
	is_int(dir_entries(names, sizeof(names)), 2,
	    "only mbox and mbox.lock, no temp file: %s", names);
	lock_mbox_release(&lk);
	ok(lk == NULL, "release clears the pointer");
	is_int(dir_entries(names, sizeof(names)), 1,
	    "release leaves no PATH.lock behind: %s", names);
	is_int(fcntl_held_elsewhere(), 0, "fcntl lock released");
	lock_mbox_release(&lk);
	ok(1, "releasing NULL is harmless");
	o.methods = 0;
	is_int(lock_mbox_acquire(fd, mbox, &o, &lk, &error), -1,
	    "no method: -1");
	o.methods = 0x8;
	is_int(lock_mbox_acquire(fd, mbox, &o, &lk, &error), -1,
	    "unknown method bit: -1");
	close(fd);
}

static void
test_fcntl_conflict(void)
{
	struct lock_opts o = { LOCK_M_FCNTL | LOCK_M_DOTLOCK, 2, 1, 600 };
	struct lock_mbox *lk = NULL;
	const char *error = NULL;
	struct child c;
	char names[256];
	int fd = open_mbox();

	child_start(&c, hold_fcntl, NULL);
	is_int(lock_mbox_acquire(fd, mbox, &o, &lk, &error), LOCK_TIMEOUT,
	    "fcntl held by a child: timeout");
	ok(lk == NULL && strstr(error, "fcntl") != NULL &&
	    strstr(error, "2 attempts") != NULL, "error: %s", error);
	is_int(dir_entries(names, sizeof(names)), 1,
	    "no dotlock taken while fcntl is busy: %s", names);
	o.attempts = 0;
	is_int(lock_mbox_acquire(fd, mbox, &o, &lk, &error), LOCK_TIMEOUT,
	    "attempts 0 counts as 1");
	o.methods = LOCK_M_FLOCK | LOCK_M_DOTLOCK;
	is_int(lock_mbox_acquire(fd, mbox, &o, &lk, &error), 0,
	    "flock does not see fcntl locks (Linux)");
	lock_mbox_release(&lk);
	is_int(child_finish(&c), 0, "child exits");
	o.methods = LOCK_M_FCNTL;
	is_int(lock_mbox_acquire(fd, mbox, &o, &lk, &error), 0,
	    "fcntl free again after the child: acquired");
	lock_mbox_release(&lk);
	close(fd);
}

static void
test_flock_conflict(void)
{
	struct lock_opts o = { LOCK_M_FLOCK, 2, 1, 600 };
	struct lock_mbox *lk = NULL;
	const char *error = NULL;
	struct child c;
	int fd = open_mbox();

	child_start(&c, hold_flock, NULL);
	is_int(lock_mbox_acquire(fd, mbox, &o, &lk, &error), LOCK_TIMEOUT,
	    "flock held by a child: timeout");
	ok(strstr(error, "flock") != NULL, "error: %s", error);
	o.methods = LOCK_M_FCNTL | LOCK_M_FLOCK;
	is_int(lock_mbox_acquire(fd, mbox, &o, &lk, &error), LOCK_TIMEOUT,
	    "fcntl + flock: timeout");
	is_int(fcntl_held_elsewhere(), 0, "fcntl dropped again while waiting "
	    "for flock");
	is_int(child_finish(&c), 0, "child exits");
	is_int(lock_mbox_acquire(fd, mbox, &o, &lk, &error), 0,
	    "fcntl + flock once free");
	lock_mbox_release(&lk);
	close(fd);
}

static void
test_dotlock_conflict(void)
{
	struct lock_opts o = { LOCK_M_DOTLOCK, 3, 1, 600 };
	struct lock_mbox *lk = NULL;
	const char *error = NULL;
	struct child c;
	char names[256];
	int fd = open_mbox();

	child_start(&c, hold_loft, release_loft);
	is_int(lock_mbox_acquire(fd, mbox, &o, &lk, &error), LOCK_TIMEOUT,
	    "dotlock held by another loft process: timeout");
	ok(strstr(error, "dotlock") != NULL, "error: %s", error);
	is_int(dir_entries(names, sizeof(names)), 2,
	    "their PATH.lock stays, no temp file of ours: %s", names);
	is_int(child_finish(&c), 0, "child releases and exits");
	is_int(dir_entries(names, sizeof(names)), 1,
	    "the child's release removed its PATH.lock: %s", names);

	make_dotlock(0);
	o.methods = LOCK_M_FCNTL | LOCK_M_DOTLOCK;
	is_int(lock_mbox_acquire(fd, mbox, &o, &lk, &error), LOCK_TIMEOUT,
	    "fresh foreign dotlock: timeout");
	is_int(fcntl_held_elsewhere(), 0,
	    "fcntl not kept while the dotlock was busy");
	ok(dotlock_is_other(), "foreign dotlock left alone");
	unlink(dotlock);
	close(fd);
}

static void
test_stale(void)
{
	struct lock_opts o = { LOCK_M_FCNTL | LOCK_M_DOTLOCK, 1, 1, 100 };
	struct lock_mbox *lk = NULL;
	const char *error = NULL;
	int fd = open_mbox();

	/* Ages one second inside and outside the limit: a clock tick
	 * between making the lock and judging it cannot change the answer. */
	make_dotlock(100 - 1);
	is_int(lock_mbox_acquire(fd, mbox, &o, &lk, &error), LOCK_TIMEOUT,
	    "dotlock of age stale_secs - 1 is respected");
	ok(dotlock_is_other(), "and kept");
	make_dotlock(100 + 1);
	is_int(lock_mbox_acquire(fd, mbox, &o, &lk, &error), 0,
	    "dotlock of age stale_secs + 1 is removed as stale");
	ok(!dotlock_is_other() && access(dotlock, F_OK) == 0,
	    "PATH.lock is now ours");
	lock_mbox_release(&lk);
	ok(access(dotlock, F_OK) < 0, "and gone after release");
	o.stale_secs = 0;
	make_dotlock(100000);
	is_int(lock_mbox_acquire(fd, mbox, &o, &lk, &error), LOCK_TIMEOUT,
	    "stale_secs 0: never removed");
	unlink(dotlock);
	o.stale_secs = 100;
	if (mkdir(dotlock, 0755) < 0)
		bail("mkdir");
	is_int(lock_mbox_acquire(fd, mbox, &o, &lk, &error), LOCK_TIMEOUT,
	    "a directory named PATH.lock is not removed");
	rmdir(dotlock);
	close(fd);
}

static void
test_replaced(void)
{
	struct lock_opts o = { LOCK_M_FCNTL | LOCK_M_DOTLOCK, 1, 1, 100 };
	struct lock_mbox *lk = NULL;
	const char *error = NULL;
	char other[320], names[256];
	int fd = open_mbox(), ofd, ret, err;

	is_int(lock_mbox_acquire(fd, mbox, &o, &lk, &error), 0, "acquire");
	/* Someone judged ours stale and made their own. */
	unlink(dotlock);
	make_dotlock(0);
	lock_mbox_release(&lk);
	ok(dotlock_is_other(), "release leaves a dotlock that is not ours");
	unlink(dotlock);

	snprintf(other, sizeof(other), "%s/other", dir);
	ofd = open(other, O_RDWR | O_CREAT, 0600);
	if (ofd < 0 || rename(other, mbox) < 0)
		bail("rename");
	close(ofd);
	ret = lock_mbox_acquire(fd, mbox, &o, &lk, &error);
	err = errno;
	is_int(ret, -1, "mbox replaced under our fd: -1");
	is_int(err, ESTALE, "errno ESTALE: reopen");
	ok(strstr(error, "replaced") != NULL, "error: %s", error);
	is_int(dir_entries(names, sizeof(names)), 1,
	    "nothing left locked: %s", names);
	close(fd);
}

/* procmail takes the dotlock first and then waits for fcntl. If we
 * waited for the dotlock holding fcntl, neither would ever go on. */
static void
test_opposite_order(void)
{
	struct lock_opts o = { LOCK_M_FCNTL | LOCK_M_DOTLOCK, 5000, 2, 600 };
	struct lock_mbox *lk = NULL;
	const char *error = NULL;
	struct child c;
	struct stat st;
	int fd = open_mbox(), ret;

	if (ftruncate(fd, 0) < 0)
		bail("ftruncate");
	child_start(&c, hold_dotlock_by_hand, procmail_order_finish);
	/* The child now waits in F_SETLKW as soon as it has our byte. */
	send_byte(c.to);
	ret = lock_mbox_acquire(fd, mbox, &o, &lk, &error);
	is_int(ret, 0, "acquired after the opposite-order holder finished");
	ok(fstat(fd, &st) == 0 && st.st_size == 1,
	    "the other process wrote first, under its locks");
	lock_mbox_release(&lk);
	/* Closing drops any fcntl lock a broken acquire kept, so that a
	 * deadlock fails the test above instead of hanging it. */
	close(fd);
	is_int(child_finish(&c), 0, "opposite-order child got fcntl and "
	    "finished");
}

/* A directory we cannot write (/var/mail without group mail): -1 and a
 * clear error, so that the caller can decide. */
static void
test_unwritable(void)
{
	struct lock_opts o = { LOCK_M_FCNTL | LOCK_M_DOTLOCK, 1, 1, 600 };
	char rodir[320], ropath[340];
	int pfd[2], status;
	char msg[512] = "";
	ssize_t n;
	pid_t pid;

	snprintf(rodir, sizeof(rodir), "%s/ro", dir);
	snprintf(ropath, sizeof(ropath), "%s/mbox", rodir);
	if (mkdir(rodir, 0755) < 0 || chmod(dir, 0755) < 0)
		bail("mkdir ro");
	close(open(ropath, O_RDWR | O_CREAT, 0666));
	chmod(ropath, 0666);
	chmod(rodir, 0555);
	if (pipe(pfd) < 0)
		bail("pipe");
	fflush(stdout);
	if ((pid = fork()) == 0) {
		struct lock_mbox *lk;
		const char *error = "";
		int fd, ret, err;

		close(pfd[0]);
		/* As root, permissions do not apply: become nobody. */
		if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
			_exit(2);
		if ((fd = open(ropath, O_RDWR)) < 0)
			_exit(3);
		ret = lock_mbox_acquire(fd, ropath, &o, &lk, &error);
		err = errno;
		if (write(pfd[1], error, strlen(error)) < 0)
			_exit(4);
		_exit(ret == -1 && err == EACCES ? 0 : 1);
	}
	close(pfd[1]);
	n = read(pfd[0], msg, sizeof(msg) - 1);
	msg[n > 0 ? n : 0] = '\0';
	close(pfd[0]);
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "unwritable directory: -1, errno EACCES");
	ok(strstr(msg, "not writable") != NULL, "error says so: %s", msg);
	chmod(rodir, 0755);
	unlink(ropath);
	rmdir(rodir);
	chmod(dir, 0700);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (mkdtemp(dir) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	snprintf(mbox, sizeof(mbox), "%s/mbox", dir);
	snprintf(dotlock, sizeof(dotlock), "%s.lock", mbox);
	test_parse();
	test_plain();
	test_fcntl_conflict();
	test_flock_conflict();
	test_dotlock_conflict();
	test_stale();
	test_replaced();
	test_opposite_order();
	test_unwritable();
	unlink(dotlock);
	unlink(mbox);
	rmdir(dir);
	return done_testing();
}
