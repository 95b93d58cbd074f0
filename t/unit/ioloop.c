/*
 * Unit tests for lib/ioloop.c: ios on pipes, removal from inside callbacks
 * (own, and another pending in the same batch), timer order and removal,
 * reset, stop and resume, signals through the loop, bugs that panic.
 * Timers only bound the runs; no assertion depends on elapsed time.
 */
#include "config.h"
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <unistd.h>
#include "ioloop.h"
#include "log.h"
#include "tap.h"

static struct ioloop *loop;
static bool in_run;

static void
stop_cb(void *ctx)
{
	(void)ctx;
	ioloop_stop(loop);
}

/* Run the loop, with a safety stop so a broken loop cannot hang prove. */
static void
run_bounded(unsigned msecs)
{
	struct timeout *t = timeout_add(loop, msecs, false, stop_cb, NULL);

	in_run = true;
	ioloop_run(loop);
	in_run = false;
	timeout_remove(&t);
}

static void
xpipe(int fds[2])
{
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
		bail("pipe2: %s", strerror(errno));
}

/* --- an io that reads a byte, removes itself, stops the loop --- */

struct rd {
	int fd;
	struct io *io;
	int calls;
	char got;
};

static void
rd_once_cb(void *ctx)
{
	struct rd *r = ctx;

	r->calls++;
	if (read(r->fd, &r->got, 1) != 1)
		r->got = '?';
	io_remove(&r->io);
	ioloop_stop(loop);
}

static void
test_io_basic(void)
{
	struct rd r = { 0 };
	int p[2];

	xpipe(p);
	r.fd = p[0];
	r.io = io_add(loop, p[0], IO_READ, rd_once_cb, &r);
	if (write(p[1], "x", 1) != 1)
		bail("write");
	run_bounded(5000);
	is_int(r.calls, 1, "read io called once, then removed itself");
	ok(r.got == 'x', "read io read the byte");
	ok(r.io == NULL, "io_remove cleared the pointer");
	if (write(p[1], "y", 1) != 1)
		bail("write");
	run_bounded(20);
	is_int(r.calls, 1, "removed io is not called again");
	close(p[0]);
	close(p[1]);
}

/* --- two ready ios: whichever runs first removes the other, closes its
 * pipe and puts a fresh pipe (likely the same fd numbers) in its place. --- */

struct pair_side {
	int p[2];
	struct io *io;
	int calls;
	struct pair_side *other;
};

static int fresh_calls;

static void
fresh_cb(void *ctx)
{
	(void)ctx;
	fresh_calls++;
}

static void
pair_cb(void *ctx)
{
	struct pair_side *s = ctx, *o = s->other;
	char c;

	s->calls++;
	(void)read(s->p[0], &c, 1);
	io_remove(&s->io);
	if (o->io != NULL) {
		io_remove(&o->io);
		close(o->p[0]);
		close(o->p[1]);
		xpipe(o->p);
		o->io = io_add(loop, o->p[0], IO_READ, fresh_cb, NULL);
	}
}

static void
test_remove_other_pending(void)
{
	struct pair_side a = { 0 }, b = { 0 };

	xpipe(a.p);
	xpipe(b.p);
	a.other = &b;
	b.other = &a;
	a.io = io_add(loop, a.p[0], IO_READ, pair_cb, &a);
	b.io = io_add(loop, b.p[0], IO_READ, pair_cb, &b);
	if (write(a.p[1], "a", 1) != 1 || write(b.p[1], "b", 1) != 1)
		bail("write");
	run_bounded(50);
	is_int(a.calls + b.calls, 1,
	    "io removed by another callback of the same batch is not called");
	is_int(fresh_calls, 0,
	    "stale event does not reach a new io on a reused fd number");
	io_remove(&a.io);
	io_remove(&b.io);
	close(a.p[0]);
	close(a.p[1]);
	close(b.p[0]);
	close(b.p[1]);
}

/* --- read and write ios on the same fd, removed independently --- */

static int wr_calls, rd2_calls;
static struct io *wr_io, *rd2_io;

static void
wr_cb(void *ctx)
{
	(void)ctx;
	wr_calls++;
	io_remove(&wr_io);
}

static void
rd2_cb(void *ctx)
{
	int fd = *(int *)ctx;
	char c;

	rd2_calls++;
	if (read(fd, &c, 1) == 1 && c == 'q')
		ioloop_stop(loop);
}

static void
test_both_directions(void)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
		bail("socketpair");
	rd2_io = io_add(loop, sv[0], IO_READ, rd2_cb, &sv[0]);
	wr_io = io_add(loop, sv[0], IO_WRITE, wr_cb, NULL);
	run_bounded(20);
	is_int(wr_calls, 1, "write io ran once and removed itself");
	is_int(rd2_calls, 0, "read io on the same fd not called without data");
	if (write(sv[1], "q", 1) != 1)
		bail("write");
	run_bounded(5000);
	is_int(rd2_calls, 1, "read io still works after the write io went");
	io_remove(&rd2_io);
	close(sv[0]);
	close(sv[1]);
}

/* --- timers --- */

static char order[8];
static size_t norder;

static void
order_cb(void *ctx)
{
	if (norder < sizeof(order) - 1)
		order[norder++] = *(const char *)ctx;
}

static void
test_timer_order(void)
{
	struct timeout *t1, *t2, *t3;

	t3 = timeout_add(loop, 30, false, order_cb, "3");
	t1 = timeout_add(loop, 1, false, order_cb, "1");
	t2 = timeout_add(loop, 15, false, order_cb, "2");
	run_bounded(60);
	is_string(order, "123", "timeouts fire in expiry order");
	timeout_remove(&t1);
	timeout_remove(&t2);
	timeout_remove(&t3);
	ok(t1 == NULL && t2 == NULL && t3 == NULL, "timeout_remove clears");
}

static struct timeout *rep;
static int rep_calls;

static void
rep_cb(void *ctx)
{
	(void)ctx;
	if (++rep_calls == 3)
		timeout_remove(&rep);
}

static struct timeout *mut[2];
static int mut_calls;

static void
mut_cb(void *ctx)
{
	int i = *(int *)ctx;

	mut_calls++;
	timeout_remove(&mut[1 - i]);
	timeout_remove(&mut[i]);
}

static void
test_timer_removal(void)
{
	static int idx[2] = { 0, 1 };

	rep = timeout_add(loop, 1, true, rep_cb, NULL);
	run_bounded(100);
	is_int(rep_calls, 3, "repeating timeout removed itself on 3rd call");
	ok(rep == NULL, "own removal cleared the pointer");

	mut[0] = timeout_add(loop, 0, false, mut_cb, &idx[0]);
	mut[1] = timeout_add(loop, 0, false, mut_cb, &idx[1]);
	run_bounded(30);
	is_int(mut_calls, 1,
	    "timeout removed by another due in the same pass is not called");
}

static int reset_calls;

static void
reset_cb(void *ctx)
{
	(void)ctx;
	reset_calls++;
}

static void
test_timer_reset(void)
{
	struct timeout *t;

	t = timeout_add(loop, 0, false, reset_cb, NULL);
	run_bounded(20);
	is_int(reset_calls, 1, "one-shot fired once");
	run_bounded(20);
	is_int(reset_calls, 1, "fired one-shot stays quiet");
	timeout_reset(t);
	run_bounded(20);
	is_int(reset_calls, 2, "timeout_reset re-arms a fired one-shot");
	timeout_remove(&t);
}

/* --- stop inside a batch, resume later --- */

static int stopper_calls;

static void
stopper_cb(void *ctx)
{
	int fd = *(int *)ctx;
	char c;

	stopper_calls++;
	(void)read(fd, &c, 1);
	ioloop_stop(loop);
}

static void
test_stop_resume(void)
{
	int a[2], b[2];
	struct io *ia, *ib;

	xpipe(a);
	xpipe(b);
	ia = io_add(loop, a[0], IO_READ, stopper_cb, &a[0]);
	ib = io_add(loop, b[0], IO_READ, stopper_cb, &b[0]);
	if (write(a[1], "a", 1) != 1 || write(b[1], "b", 1) != 1)
		bail("write");
	in_run = true;
	ioloop_run(loop);
	is_int(stopper_calls, 1, "stop returns after the current callback");
	ioloop_run(loop);
	in_run = false;
	is_int(stopper_calls, 2, "other event delivered by the next run");
	io_remove(&ia);
	io_remove(&ib);
	close(a[0]);
	close(a[1]);
	close(b[0]);
	close(b[1]);
}

/* --- signals --- */

static int sig_got, sig_in_run;

static void
sig_cb(int signo, void *ctx)
{
	(void)ctx;
	sig_got = signo;
	sig_in_run = in_run;
	ioloop_stop(loop);
}

static void
test_signals(void)
{
	pid_t pid;
	int status;

	errno = 0;
	is_int(ioloop_signal_add(loop, SIGKILL, sig_cb, NULL), -1,
	    "SIGKILL refused");
	is_int(errno, EINVAL, "with EINVAL");
	is_int(ioloop_signal_add(loop, NSIG, sig_cb, NULL), -1,
	    "out of range refused");
	is_int(ioloop_signal_add(loop, SIGHUP, sig_cb, NULL), 0,
	    "SIGHUP taken");
	is_int(ioloop_signal_add(loop, SIGCHLD, sig_cb, NULL), 0,
	    "SIGCHLD taken");
	raise(SIGHUP);
	ok(sig_got == 0, "raised signal not handled outside the loop");
	run_bounded(5000);
	is_int(sig_got, SIGHUP, "SIGHUP callback ran");
	ok(sig_in_run, "... from inside ioloop_run");
	sig_got = 0;
	if ((pid = fork()) == 0)
		_exit(0);
	run_bounded(5000);
	is_int(sig_got, SIGCHLD, "SIGCHLD from an exiting child delivered");
	is_int(waitpid(pid, &status, WNOHANG), pid, "child reaped");
}

/* --- bugs panic (in a forked child) --- */

static void
test_duplicate_io_panics(void)
{
	pid_t pid;
	int status, p[2];

	xpipe(p);
	fflush(stdout);
	if ((pid = fork()) == 0) {
		struct ioloop *l2 = ioloop_new();

		close(2);
		(void)io_add(l2, p[0], IO_READ, fresh_cb, NULL);
		(void)io_add(l2, p[0], IO_READ, fresh_cb, NULL);
		_exit(0);
	}
	waitpid(pid, &status, 0);
	ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
	    "second io for the same fd and direction panics");
	close(p[0]);
	close(p[1]);
}

int
main(void)
{
	struct ioloop *l;
	sigset_t mask;

	log_open("ioloop-test", LOG_DEST_STDERR);
	loop = ioloop_new();
	test_io_basic();
	test_remove_other_pending();
	test_both_directions();
	test_timer_order();
	test_timer_removal();
	test_timer_reset();
	test_stop_resume();
	test_signals();
	test_duplicate_io_panics();
	l = loop;
	ioloop_free(&loop);
	ok(loop == NULL && l != NULL, "ioloop_free clears the pointer");
	sigprocmask(SIG_SETMASK, NULL, &mask);
	ok(!sigismember(&mask, SIGHUP) && !sigismember(&mask, SIGCHLD),
	    "ioloop_free restores the signal mask");
	return done_testing();
}
