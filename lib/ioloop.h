/*
 * ioloop.h: the event loop of a loft process (Dovecot's ioloop, Redis ae).
 * This is the only module that calls epoll_wait(2). A process runs one loop;
 * everything that waits (sockets, timers, signals) waits through it, and
 * every callback runs from ioloop_run(), never from a signal handler.
 *
 * Reentrancy: any callback may add or remove any io or timeout, including
 * the one being run and ones whose events are pending in the same batch;
 * a removed io or timeout is never called again. ioloop_stop() may be called
 * from any callback.
 *
 * Descriptors are watched level-triggered: a callback that leaves data
 * unread is called again on the next iteration.
 */
#ifndef LOFT_IOLOOP_H
#define LOFT_IOLOOP_H

#include <stdbool.h>
#include <stdint.h>

struct ioloop;
struct io;
struct timeout;

enum io_dir {
	IO_READ = 0,	/* readable, or hang-up / error pending */
	IO_WRITE = 1	/* writable, or hang-up / error pending */
};

/* IOLOOP_MAX_EVENTS: how many ready descriptors one epoll_wait returns. */
#define IOLOOP_MAX_EVENTS	64

/* ioloop_new: a loop with no ios, timeouts or signals. Out of descriptors
 * is fatal (logged, exit): a process cannot work without its loop. */
struct ioloop *ioloop_new(void);
/*
 * ioloop_free: close the loop, clear *loopp. Every io and timeout should
 * have been removed first: leftovers are a bug in their owner, are logged
 * as a warning and freed (their owners' pointers then dangle). Signals
 * taken with ioloop_signal_add() get the signal mask back that the process
 * had before; pending ones are discarded first.
 */
void ioloop_free(struct ioloop **loopp);

/*
 * io_add: call cb(ctx) from the loop while fd is ready in direction dir.
 * At most one io per fd and direction (a second one is a bug: panic); a
 * read io and a write io on the same fd are fine. fd is not owned: remove
 * the io before closing fd. fd must be pollable (socket, pipe, eventfd...;
 * a regular file is a bug: panic). Never returns NULL.
 */
struct io *io_add(struct ioloop *loop, int fd, enum io_dir dir,
    void (*cb)(void *ctx), void *ctx);
/* io_remove: stop watching and free the io; *iop becomes NULL. NULL *iop is
 * accepted. Safe inside any callback, including the io's own. */
void io_remove(struct io **iop);

/*
 * timeout_add: call cb(ctx) once msecs milliseconds from now (monotonic
 * clock), or every msecs milliseconds when repeat is true (a repeating
 * timeout of 0 runs every 1 ms, so it cannot starve the loop). A one-shot
 * timeout that has fired stays allocated, inactive, until timeout_remove()
 * or timeout_reset() (which arms it again). Never returns NULL.
 */
struct timeout *timeout_add(struct ioloop *loop, unsigned msecs, bool repeat,
    void (*cb)(void *ctx), void *ctx);
/* timeout_remove: cancel and free; *tp becomes NULL; NULL *tp accepted.
 * Safe inside any callback, including the timeout's own. */
void timeout_remove(struct timeout **tp);
/* timeout_reset: restart the countdown of msecs from now (idle timers reset
 * on every input); re-arms a one-shot timeout that already fired. */
void timeout_reset(struct timeout *t);

/* ioloop_run: wait and dispatch until ioloop_stop(). Events still pending
 * when it stops are delivered by the next ioloop_run(). Failure of
 * epoll_wait other than EINTR is fatal. */
void ioloop_run(struct ioloop *loop);
/* ioloop_stop: make ioloop_run() return after the current callback. */
void ioloop_stop(struct ioloop *loop);

/*
 * ioloop_signal_add: deliver signo through the loop: cb(signo, ctx) runs
 * from ioloop_run() after the signal arrived (signalfd(2)). The signal is
 * blocked in the process from now until ioloop_free(), so use one loop per
 * process for signals, and let a fork()ed child that exec()s restore its
 * mask first (sigprocmask(SIG_SETMASK, empty set)). Signals of one kind
 * coalesce: after SIGCHLD, reap with waitpid(WNOHANG) until none is left.
 * Adding a signal again replaces its callback. Returns 0, or -1 with errno
 * EINVAL for an unusable signal number (SIGKILL, SIGSTOP, out of range) or
 * the errno of signalfd(2).
 */
int ioloop_signal_add(struct ioloop *loop, int signo,
    void (*cb)(int signo, void *ctx), void *ctx);

/* ioloop_now_ms: the monotonic clock the timers run on, in milliseconds
 * (for rate limits and ages that must not jump with the wall clock). */
uint64_t ioloop_now_ms(void);

#endif
