/*
 * ioloop.c: the epoll event loop (see ioloop.h): descriptors, timers in a
 * binary heap keyed on the monotonic clock, and signals through signalfd.
 *
 * Trusts its callers (the rest of loft) to pass descriptors they own; it
 * reads no data itself except signalfd records, which come from the kernel.
 *
 * Safe removal: epoll hands back, for each ready descriptor, the fd number
 * and the generation of its slot packed in the 64-bit user data. A slot's
 * generation changes whenever its last io goes and a new one comes, and
 * dispatch looks the io up again before each call, so an event for an io
 * removed earlier in the same batch finds nothing and is dropped.
 */
#include "config.h"
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "ioloop.h"
#include "log.h"
#include "xmalloc.h"

#define TIMEOUT_NOT_QUEUED	SIZE_MAX

struct io {
	struct ioloop *loop;
	int fd;
	enum io_dir dir;
	void (*cb)(void *);
	void *ctx;
};

/* One per descriptor number, indexed by fd. */
struct io_slot {
	struct io *io[2];	/* owned by their adders, by direction */
	uint32_t gen;		/* bumped when the slot is registered anew */
	uint32_t events;	/* EPOLLIN / EPOLLOUT registered */
};

struct timeout {
	struct ioloop *loop;
	uint64_t expire;	/* monotonic ms */
	unsigned msecs;
	bool repeat;
	size_t idx;		/* heap position, TIMEOUT_NOT_QUEUED */
	void (*cb)(void *);
	void *ctx;
};

struct ioloop_sig {
	void (*cb)(int, void *);
	void *ctx;
};

struct ioloop {
	int epfd;
	bool running;
	struct io_slot *slots;	/* owned; nslots entries */
	size_t nslots;
	unsigned nios;
	struct timeout **heap;	/* owned array; the timeouts are not */
	size_t heap_len, heap_cap;
	/* Every timeout, queued or fired, so that free can find leaks. */
	size_t ntimeouts;
	int sigfd;		/* -1 until a signal is added */
	struct io *sig_io;
	sigset_t sigset;	/* signals we took */
	sigset_t oldmask;	/* the process mask before we took any */
	struct ioloop_sig sig[NSIG];
};

uint64_t
ioloop_now_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
		log_panic("clock_gettime(CLOCK_MONOTONIC): %s",
		    strerror(errno));
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct ioloop *
ioloop_new(void)
{
	struct ioloop *loop;

	loop = xcalloc(1, sizeof(*loop));
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0)
		log_fatal("epoll_create1: %s", strerror(errno));
	loop->sigfd = -1;
	sigemptyset(&loop->sigset);
	return loop;
}

/* --- descriptors --- */

static void
io_slots_grow(struct ioloop *loop, int fd)
{
	size_t n = loop->nslots;

	if ((size_t)fd < n)
		return;
	n = n < 64 ? 64 : n;
	while (n <= (size_t)fd)
		n *= 2;
	loop->slots = xreallocarray(loop->slots, n, sizeof(*loop->slots));
	memset(loop->slots + loop->nslots, 0,
	    (n - loop->nslots) * sizeof(*loop->slots));
	loop->nslots = n;
}

/* Tell epoll what the slot wants now; op chosen from what it had. */
static void
io_slot_update(struct ioloop *loop, int fd, uint32_t had)
{
	struct io_slot *s = &loop->slots[fd];
	struct epoll_event ev;
	int op;

	s->events = (s->io[IO_READ] != NULL ? EPOLLIN : 0) |
	    (s->io[IO_WRITE] != NULL ? EPOLLOUT : 0);
	if (s->events == 0) {
		/* EBADF/ENOENT: the owner closed fd first; nothing to undo. */
		(void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
		return;
	}
	if (had == 0)
		s->gen++;
	memset(&ev, 0, sizeof(ev));
	ev.events = s->events;
	ev.data.u64 = (uint64_t)s->gen << 32 | (uint32_t)fd;
	op = had == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
	if (epoll_ctl(loop->epfd, op, fd, &ev) < 0) {
		if (errno == ENOMEM || errno == ENOSPC)
			log_fatal("epoll_ctl(%d): %s", fd, strerror(errno));
		log_panic("epoll_ctl(%d): %s", fd, strerror(errno));
	}
}

struct io *
io_add(struct ioloop *loop, int fd, enum io_dir dir, void (*cb)(void *),
    void *ctx)
{
	struct io *io;
	uint32_t had;

	if (fd < 0 || (dir != IO_READ && dir != IO_WRITE))
		log_panic("io_add: bad fd %d or direction %d", fd, (int)dir);
	io_slots_grow(loop, fd);
	if (loop->slots[fd].io[dir] != NULL)
		log_panic("io_add: fd %d already has an io for %s", fd,
		    dir == IO_READ ? "reading" : "writing");
	io = xcalloc(1, sizeof(*io));
	io->loop = loop;
	io->fd = fd;
	io->dir = dir;
	io->cb = cb;
	io->ctx = ctx;
	had = loop->slots[fd].events;
	loop->slots[fd].io[dir] = io;
	io_slot_update(loop, fd, had);
	loop->nios++;
	return io;
}

void
io_remove(struct io **iop)
{
	struct io *io = *iop;
	struct ioloop *loop;
	uint32_t had;

	if (io == NULL)
		return;
	*iop = NULL;
	loop = io->loop;
	had = loop->slots[io->fd].events;
	loop->slots[io->fd].io[io->dir] = NULL;
	io_slot_update(loop, io->fd, had);
	loop->nios--;
	free(io);
}

/* Look the io up afresh: an earlier callback may have removed it. */
static struct io *
io_lookup(struct ioloop *loop, uint64_t data, enum io_dir dir)
{
	uint32_t fd = (uint32_t)data;
	uint32_t gen = (uint32_t)(data >> 32);

	if (fd >= loop->nslots || loop->slots[fd].gen != gen)
		return NULL;
	return loop->slots[fd].io[dir];
}

static void
ioloop_dispatch(struct ioloop *loop, const struct epoll_event *ev)
{
	const uint32_t rd = EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP;
	const uint32_t wr = EPOLLOUT | EPOLLHUP | EPOLLERR;
	struct io *io;

	if ((ev->events & rd) != 0 &&
	    (io = io_lookup(loop, ev->data.u64, IO_READ)) != NULL)
		io->cb(io->ctx);
	if (!loop->running)
		return;
	if ((ev->events & wr) != 0 &&
	    (io = io_lookup(loop, ev->data.u64, IO_WRITE)) != NULL)
		io->cb(io->ctx);
}

/* --- timeouts: a binary min-heap on expire --- */

static void
heap_set(struct ioloop *loop, size_t i, struct timeout *t)
{
	loop->heap[i] = t;
	t->idx = i;
}

static void
heap_up(struct ioloop *loop, size_t i)
{
	struct timeout *t = loop->heap[i];
	size_t parent;

	while (i > 0) {
		parent = (i - 1) / 2;
		if (loop->heap[parent]->expire <= t->expire)
			break;
		heap_set(loop, i, loop->heap[parent]);
		i = parent;
	}
	heap_set(loop, i, t);
}

static void
heap_down(struct ioloop *loop, size_t i)
{
	struct timeout *t = loop->heap[i];
	size_t child;

	/* i < heap_len <= SIZE_MAX / sizeof(ptr), so 2 * i + 2 fits. */
	while ((child = 2 * i + 1) < loop->heap_len) {
		if (child + 1 < loop->heap_len &&
		    loop->heap[child + 1]->expire < loop->heap[child]->expire)
			child++;
		if (t->expire <= loop->heap[child]->expire)
			break;
		heap_set(loop, i, loop->heap[child]);
		i = child;
	}
	heap_set(loop, i, t);
}

static void
heap_push(struct ioloop *loop, struct timeout *t)
{
	if (loop->heap_len == loop->heap_cap) {
		loop->heap_cap = loop->heap_cap < 16 ? 16 :
		    loop->heap_cap * 2;
		loop->heap = xreallocarray(loop->heap, loop->heap_cap,
		    sizeof(*loop->heap));
	}
	loop->heap[loop->heap_len++] = t;
	heap_up(loop, loop->heap_len - 1);
}

static void
heap_remove(struct ioloop *loop, struct timeout *t)
{
	size_t i = t->idx;
	struct timeout *last;

	t->idx = TIMEOUT_NOT_QUEUED;
	last = loop->heap[--loop->heap_len];
	if (i == loop->heap_len)
		return;
	heap_set(loop, i, last);
	heap_up(loop, i);
	heap_down(loop, last->idx);
}

static void
timeout_arm(struct timeout *t)
{
	if (t->idx != TIMEOUT_NOT_QUEUED)
		heap_remove(t->loop, t);
	t->expire = ioloop_now_ms() + t->msecs;
	heap_push(t->loop, t);
}

struct timeout *
timeout_add(struct ioloop *loop, unsigned msecs, bool repeat,
    void (*cb)(void *), void *ctx)
{
	struct timeout *t;

	t = xcalloc(1, sizeof(*t));
	t->loop = loop;
	t->msecs = repeat && msecs == 0 ? 1 : msecs;
	t->repeat = repeat;
	t->idx = TIMEOUT_NOT_QUEUED;
	t->cb = cb;
	t->ctx = ctx;
	timeout_arm(t);
	loop->ntimeouts++;
	return t;
}

void
timeout_remove(struct timeout **tp)
{
	struct timeout *t = *tp;

	if (t == NULL)
		return;
	*tp = NULL;
	if (t->idx != TIMEOUT_NOT_QUEUED)
		heap_remove(t->loop, t);
	t->loop->ntimeouts--;
	free(t);
}

void
timeout_reset(struct timeout *t)
{
	timeout_arm(t);
}

/* Milliseconds epoll_wait may sleep: until the first timer, or forever. */
static int
ioloop_wait_ms(struct ioloop *loop)
{
	uint64_t now, expire;

	if (loop->heap_len == 0)
		return -1;
	now = ioloop_now_ms();
	expire = loop->heap[0]->expire;
	if (expire <= now)
		return 0;
	return expire - now > INT32_MAX ? INT32_MAX : (int)(expire - now);
}

/*
 * Run the timers due now. A repeating timer is queued again before its
 * callback runs (which may then remove or reset it); one due again within
 * this pass waits for the next one, since it expires after now.
 */
static void
ioloop_run_timeouts(struct ioloop *loop)
{
	uint64_t now = ioloop_now_ms();
	struct timeout *t;

	while (loop->running && loop->heap_len > 0 &&
	    loop->heap[0]->expire <= now) {
		t = loop->heap[0];
		heap_remove(loop, t);
		if (t->repeat) {
			t->expire = now + t->msecs;
			heap_push(loop, t);
		}
		t->cb(t->ctx);
	}
}

void
ioloop_run(struct ioloop *loop)
{
	struct epoll_event evs[IOLOOP_MAX_EVENTS];
	int i, n;

	loop->running = true;
	while (loop->running) {
		n = epoll_wait(loop->epfd, evs, IOLOOP_MAX_EVENTS,
		    ioloop_wait_ms(loop));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_fatal("epoll_wait: %s", strerror(errno));
		}
		for (i = 0; i < n && loop->running; i++)
			ioloop_dispatch(loop, &evs[i]);
		ioloop_run_timeouts(loop);
	}
}

void
ioloop_stop(struct ioloop *loop)
{
	loop->running = false;
}

/* --- signals --- */

static void
ioloop_signal_read(void *ctx)
{
	struct ioloop *loop = ctx;
	struct signalfd_siginfo si;
	ssize_t n;
	uint32_t signo;

	/* Drain them all: one read per signal, a full record each time. */
	while ((n = read(loop->sigfd, &si, sizeof(si))) == sizeof(si)) {
		signo = si.ssi_signo;
		if (signo > 0 && signo < NSIG && loop->sig[signo].cb != NULL)
			loop->sig[signo].cb((int)signo, loop->sig[signo].ctx);
		if (loop->sigfd < 0)
			return;
	}
	if (n < 0 && errno != EAGAIN && errno != EINTR)
		log_error("read(signalfd): %s", strerror(errno));
}

int
ioloop_signal_add(struct ioloop *loop, int signo,
    void (*cb)(int, void *), void *ctx)
{
	sigset_t one;
	int fd;

	if (signo <= 0 || signo >= NSIG || signo == SIGKILL ||
	    signo == SIGSTOP || cb == NULL) {
		errno = EINVAL;
		return -1;
	}
	sigemptyset(&one);
	sigaddset(&one, signo);
	if (sigprocmask(SIG_BLOCK, &one,
	    sigisemptyset(&loop->sigset) ? &loop->oldmask : NULL) < 0)
		return -1;
	sigaddset(&loop->sigset, signo);
	fd = signalfd(loop->sigfd, &loop->sigset, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		return -1;
	loop->sig[signo].cb = cb;
	loop->sig[signo].ctx = ctx;
	if (loop->sigfd < 0) {
		loop->sigfd = fd;
		loop->sig_io = io_add(loop, fd, IO_READ, ioloop_signal_read,
		    loop);
		loop->nios--;	/* ours: not counted as a leak */
	}
	return 0;
}

static void
ioloop_signal_deinit(struct ioloop *loop)
{
	struct signalfd_siginfo si;

	if (loop->sigfd < 0)
		return;
	/* Pending signals would strike with their default action once
	 * unblocked; they were meant for the loop, which is going. */
	while (read(loop->sigfd, &si, sizeof(si)) == sizeof(si))
		;
	loop->nios++;
	io_remove(&loop->sig_io);
	close(loop->sigfd);
	loop->sigfd = -1;
	(void)sigprocmask(SIG_SETMASK, &loop->oldmask, NULL);
}

void
ioloop_free(struct ioloop **loopp)
{
	struct ioloop *loop = *loopp;
	size_t i;

	if (loop == NULL)
		return;
	*loopp = NULL;
	ioloop_signal_deinit(loop);
	if (loop->nios > 0 || loop->ntimeouts > 0)
		log_warning("ioloop_free: %u io(s) and %zu timeout(s) "
		    "were not removed", loop->nios, loop->ntimeouts);
	for (i = 0; i < loop->nslots; i++) {
		free(loop->slots[i].io[IO_READ]);
		free(loop->slots[i].io[IO_WRITE]);
	}
	/* Fired one-shot timeouts are out of the heap and cannot be found:
	 * they leak with their owner's bug, the warning above says so. */
	for (i = 0; i < loop->heap_len; i++)
		free(loop->heap[i]);
	free(loop->heap);
	free(loop->slots);
	close(loop->epfd);
	free(loop);
}
