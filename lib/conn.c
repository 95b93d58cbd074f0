/*
 * conn.c: buffered non-blocking connections on the ioloop (see conn.h).
 *
 * Trusts nothing the peer sends: input is kept within in_max bytes, an
 * over-long line is dropped and its rest skipped as it arrives, and every
 * size is checked before it is added. Output is bounded by the hard limit
 * the owner set, and reading pauses while more than the soft limit waits,
 * so a client that pipelines without reading cannot grow our memory.
 */
#include "config.h"
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "compat/compat.h"
#include "conn.h"
#include "ioloop.h"
#include "log.h"
#include "xmalloc.h"

#define CONN_READS_PER_EVENT	16	/* then let other connections run */
#define CONN_WRITES_PER_EVENT	4	/* the same for conn_flush_queued */
#define CONN_PRINTF_STACK	512

struct conn {
	struct ioloop *loop;
	int fd;				/* owned; -1 once closed */
	conn_event_cb *cb;
	void *ctx;
	const struct conn_transport *tops;
	void *tctx;			/* owned by tops (its close frees) */
	struct io *io_rd, *io_wr;	/* owned */
	struct timeout *idle_to;	/* owned; NULL when off */
	struct timeout *stall_to;	/* owned; while output is queued */
	struct timeout *kick_to;	/* owned; work the fd cannot signal */
	unsigned idle_ms, stall_ms;

	unsigned char *in;		/* owned; in_cap bytes */
	size_t in_cap, in_pos, in_len, in_max;
	bool skipping;			/* dropping an over-long line */

	unsigned char *out;		/* owned; out_cap bytes */
	size_t out_cap, out_pos, out_len, out_soft, out_hard;

	bool read_wants_write, write_wants_read;
	bool write_full;		/* the last write left bytes queued:
					   the next waits for the fd */
	bool eof;			/* peer closed: no more reading */
	bool paused;			/* conn_pause_input() */
	bool dead;			/* failed or closed: no more io */
	bool closing;			/* conn_close_after_flush() */
	bool freed;			/* conn_close() inside a callback */
	int busy;			/* callbacks running on our stack */

	void (*drained_cb)(void *);
	void *drained_ctx;
	char error[256];
};

/* --- the plain transports --- */

static ssize_t
plain_sock_read(void *tctx, int fd, unsigned char *buf, size_t size,
    enum conn_want *want_r)
{
	(void)tctx;
	*want_r = CONN_WANT_READ;
	return recv(fd, buf, size, 0);
}

static ssize_t
plain_sock_write(void *tctx, int fd, const unsigned char *buf, size_t size,
    enum conn_want *want_r)
{
	(void)tctx;
	*want_r = CONN_WANT_WRITE;
	return send(fd, buf, size, MSG_NOSIGNAL);
}

static const struct conn_transport plain_sock = {
	plain_sock_read, plain_sock_write, NULL, NULL, NULL, NULL
};

/* Pipes (tests, inetd-style stdio): no MSG_NOSIGNAL, so the owner of a
 * process using them must ignore SIGPIPE. */
static ssize_t
plain_fd_read(void *tctx, int fd, unsigned char *buf, size_t size,
    enum conn_want *want_r)
{
	(void)tctx;
	*want_r = CONN_WANT_READ;
	return read(fd, buf, size);
}

static ssize_t
plain_fd_write(void *tctx, int fd, const unsigned char *buf, size_t size,
    enum conn_want *want_r)
{
	(void)tctx;
	*want_r = CONN_WANT_WRITE;
	return write(fd, buf, size);
}

static const struct conn_transport plain_fd = {
	plain_fd_read, plain_fd_write, NULL, NULL, NULL, NULL
};

static bool
conn_is_plain(const struct conn *c)
{
	return c->tops == &plain_sock || c->tops == &plain_fd;
}

/* --- state --- */

bool
conn_output_full(const struct conn *c)
{
	return c->out_len > c->out_soft;
}

size_t
conn_output_size(const struct conn *c)
{
	return c->out_len;
}

/* Output the transport took but has not sent (a compressor's). */
static size_t
conn_held(const struct conn *c)
{
	return c->tops->wpending != NULL ? c->tops->wpending(c->tctx) : 0;
}

/* Anything left to send, ours or the transport's. */
static bool
conn_has_output(const struct conn *c)
{
	return c->out_len > 0 || conn_held(c) > 0;
}

static bool
conn_want_input(const struct conn *c)
{
	return c->fd >= 0 && !c->dead && !c->eof && !c->closing &&
	    !c->paused && !conn_output_full(c) && c->in_len < c->in_max;
}

static void conn_io_cb(void *ctx);
static void conn_update(struct conn *c);
static void conn_destroy(struct conn *c);
static void conn_flush_queued(struct conn *c);

/* Every entry from the loop goes through here: a callback may close the
 * connection, which is then freed once nothing of ours is on the stack. */
static void
conn_enter(struct conn *c, void (*fn)(struct conn *))
{
	c->busy++;
	fn(c);
	conn_flush_queued(c);
	c->busy--;
	if (c->freed) {
		if (c->busy == 0)
			conn_destroy(c);
		return;
	}
	conn_update(c);
}

/* Report ev; false when the owner closed us or we are dead. */
static bool
conn_emit(struct conn *c, enum conn_event ev)
{
	c->cb(c, ev, c->ctx);
	return !c->freed && !c->dead;
}

static bool
conn_fail(struct conn *c, const char *what, int err)
{
	char why[sizeof(c->error)];

	/* A transport may have said why through conn_set_error(). */
	strlcpy(why, c->error[0] != '\0' ? c->error : strerror(err),
	    sizeof(why));
	snprintf(c->error, sizeof(c->error), "%s: %.200s", what, why);
	c->dead = true;
	conn_update(c);
	(void)conn_emit(c, CONN_EV_ERROR);
	return false;
}

static void
conn_stop_watching(struct conn *c)
{
	io_remove(&c->io_rd);
	io_remove(&c->io_wr);
	timeout_remove(&c->idle_to);
	timeout_remove(&c->stall_to);
	timeout_remove(&c->kick_to);
}

static void
conn_close_fd(struct conn *c)
{
	conn_stop_watching(c);
	if (c->fd < 0)
		return;
	if (c->tops->close != NULL)
		c->tops->close(c->tctx, c->fd);
	/* The state is gone: nothing may call into it again (wpending). */
	c->tops = &plain_sock;
	c->tctx = NULL;
	close(c->fd);
	c->fd = -1;
}

static void
conn_destroy(struct conn *c)
{
	conn_close_fd(c);
	free(c->in);
	free(c->out);
	free(c);
}

static void
conn_set_io(struct conn *c, struct io **iop, enum io_dir dir, bool on)
{
	if (on && *iop == NULL)
		*iop = io_add(c->loop, c->fd, dir, conn_io_cb, c);
	else if (!on && *iop != NULL)
		io_remove(iop);
}

static void conn_kick_cb(void *ctx);
static void conn_stall_cb(void *ctx);

/* Make the ios and timers match what the connection waits for now.
 * Inside a callback of ours this waits for conn_enter, which does it
 * once on the way out: an answer queued and sent within one callback
 * then costs no epoll_ctl to watch for writability and another to stop. */
static void
conn_update(struct conn *c)
{
	bool in, out, kick;

	if (c->busy > 0)
		return;
	if (c->dead || c->fd < 0) {
		conn_stop_watching(c);
		return;
	}
	in = conn_want_input(c);
	out = conn_has_output(c);
	conn_set_io(c, &c->io_rd, IO_READ, (in && !c->read_wants_write) ||
	    (out && c->write_wants_read));
	conn_set_io(c, &c->io_wr, IO_WRITE, (out && !c->write_wants_read) ||
	    (in && c->read_wants_write));
	kick = (in && c->tops->pending != NULL &&
	    c->tops->pending(c->tctx) > 0) || (c->closing && !out);
	if (kick && c->kick_to == NULL)
		c->kick_to = timeout_add(c->loop, 0, false, conn_kick_cb, c);
	if (out && c->stall_ms > 0 && c->stall_to == NULL)
		c->stall_to = timeout_add(c->loop, c->stall_ms, false,
		    conn_stall_cb, c);
	else if (!out)
		timeout_remove(&c->stall_to);
}

/* --- input --- */

/* Drop the rest of an over-long line up to and including its LF. */
static void
conn_skip(struct conn *c)
{
	unsigned char *lf;
	size_t n;

	if (!c->skipping)
		return;
	lf = memchr(c->in + c->in_pos, '\n', c->in_len);
	n = lf == NULL ? c->in_len : (size_t)(lf - (c->in + c->in_pos)) + 1;
	c->skipping = lf == NULL;
	c->in_pos += n;
	c->in_len -= n;
	if (c->in_len == 0)
		c->in_pos = 0;
}

/* Room for up to CONN_READ_CHUNK more bytes within in_max; returns it. */
static size_t
conn_in_room(struct conn *c)
{
	size_t room, cap;

	if (c->in_pos > 0 && c->in_len > 0)
		memmove(c->in, c->in + c->in_pos, c->in_len);
	c->in_pos = 0;
	room = c->in_max - c->in_len;	/* in_len < in_max: checked */
	if (room > CONN_READ_CHUNK)
		room = CONN_READ_CHUNK;
	if (c->in_cap - c->in_len < room) {
		cap = c->in_cap < 1024 ? 1024 : c->in_cap;
		while (cap - c->in_len < room)
			cap = cap > c->in_max / 2 ? c->in_max : cap * 2;
		c->in = xrealloc(c->in, cap);
		c->in_cap = cap;
	}
	return room;
}

static void
conn_progress(struct conn *c)
{
	if (c->idle_to != NULL)
		timeout_reset(c->idle_to);
}

/* Read what is there. false when the connection went away. */
static bool
conn_fill(struct conn *c)
{
	enum conn_want want;
	size_t room;
	ssize_t n;
	int i, err = 0;
	bool got = false;

	for (i = 0; i < CONN_READS_PER_EVENT && conn_want_input(c); i++) {
		room = conn_in_room(c);
		c->read_wants_write = false;
		/* A write waiting for input (a TLS handshake) may be able to
		 * go on once the transport has read: SSL_read can finish the
		 * handshake and report only "no application data yet".
		 * Waiting for the fd to become readable again would hold
		 * queued output (a greeting) until the client spoke, so let
		 * the write try again. */
		c->write_wants_read = false;
		n = c->tops->read(c->tctx, c->fd, c->in + c->in_len, room,
		    &want);
		if (n > 0) {
			c->in_len += (size_t)n;
			conn_skip(c);
			got = true;
			/* A plain socket or pipe that gave less than asked
			 * is empty: asking again would only fetch EAGAIN
			 * (level-triggered, the loop calls again when more
			 * comes). A transport may hold more than one read
			 * returns. */
			if ((size_t)n < room && conn_is_plain(c))
				break;
			continue;
		}
		if (n == 0)
			c->eof = true;
		else if (errno == EINTR)
			continue;
		else if (errno == EAGAIN || errno == EWOULDBLOCK)
			c->read_wants_write = want == CONN_WANT_WRITE;
		else
			err = errno;
		break;
	}
	if (got)
		conn_progress(c);
	if (got && c->in_len > 0 && !conn_emit(c, CONN_EV_INPUT))
		return false;
	if (err != 0)
		return conn_fail(c, "read", err);
	if (c->eof && !c->closing) {
		conn_update(c);
		return conn_emit(c, CONN_EV_CLOSED);
	}
	return true;
}

/* --- output --- */

static bool
conn_drained(struct conn *c)
{
	if (c->closing) {
		conn_close_fd(c);
		c->dead = true;
		(void)conn_emit(c, CONN_EV_CLOSED);
		return false;
	}
	if (c->drained_cb != NULL) {
		c->drained_cb(c->drained_ctx);
		return !c->freed && !c->dead;
	}
	return conn_emit(c, CONN_EV_DRAINED);
}

/* Hand the queue to the transport (with an empty queue: let it send
 * what it holds). */
static bool
conn_flush(struct conn *c)
{
	bool was_full = conn_output_full(c);
	size_t len = c->out_len, held = conn_held(c);
	enum conn_want want;
	ssize_t n;

	c->write_wants_read = false;
	/* The same the other way round (see conn_fill). */
	c->read_wants_write = false;
	c->write_full = true;
	n = c->tops->write(c->tctx, c->fd, c->out + c->out_pos, len, &want);
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
	    errno != EINTR)
		return conn_fail(c, "write", errno);
	if (n < 0) {
		c->write_wants_read = errno != EINTR && want == CONN_WANT_READ;
		n = 0;
	}
	if ((size_t)n > len)
		log_panic("conn: transport wrote %zd of %zu bytes", n, len);
	c->out_pos += (size_t)n;
	c->out_len -= (size_t)n;
	if (c->out_len == 0)
		c->out_pos = 0;
	/* A transport that holds output may move it without taking any of
	 * the queue: that is progress too. */
	if (n > 0 || conn_held(c) < held) {
		conn_progress(c);
		if (c->stall_to != NULL)
			timeout_reset(c->stall_to);
	}
	c->write_full = c->out_len > 0 || conn_held(c) > 0;
	if (!conn_has_output(c) && !conn_drained(c))
		return false;
	/* The owner stopped taking pipelined lines while we were full. */
	if (was_full && !conn_output_full(c) && c->in_len > 0 &&
	    !c->closing && !c->eof)
		return conn_emit(c, CONN_EV_INPUT);
	return true;
}

/* One fd event (either direction): send what waits, then read. */
static void
conn_handle_now(struct conn *c)
{
	if (c->dead || c->fd < 0)
		return;
	if (conn_has_output(c) && !conn_flush(c))
		return;
	if (c->closing && !conn_has_output(c)) {
		(void)conn_drained(c);
		return;
	}
	if (conn_want_input(c))
		(void)conn_fill(c);
}

/*
 * After a callback: send what it queued now rather than after another
 * round through epoll_wait for a socket that is almost always writable,
 * so that an answer leaves in the same turn of the loop as its command
 * (Dovecot's ostream flushes on uncork the same way). What a drain lets
 * the owner queue goes too, a few times, then the loop lets the others
 * run. A write that filled the socket waits for the fd, as before.
 */
static void
conn_flush_queued(struct conn *c)
{
	for (int i = 0; i < CONN_WRITES_PER_EVENT; i++) {
		if (c->freed || c->dead || c->fd < 0 || !conn_has_output(c) ||
		    c->write_wants_read || c->write_full)
			return;
		if (!conn_flush(c))
			return;
	}
}

static void
conn_io_cb(void *ctx)
{
	conn_enter(ctx, conn_handle_now);
}

static void
conn_kick_cb(void *ctx)
{
	struct conn *c = ctx;

	timeout_remove(&c->kick_to);
	conn_enter(c, conn_handle_now);
}

static void
conn_idle_now(struct conn *c)
{
	(void)conn_emit(c, CONN_EV_TIMEOUT);
}

static void
conn_idle_cb(void *ctx)
{
	conn_enter(ctx, conn_idle_now);
}

static void
conn_stall_now(struct conn *c)
{
	if (conn_has_output(c) && !c->dead)
		(void)conn_emit(c, CONN_EV_STALLED);
}

static void
conn_stall_cb(void *ctx)
{
	conn_enter(ctx, conn_stall_now);
}

/* --- public --- */

struct conn *
conn_new(struct ioloop *loop, int fd, size_t input_max, conn_event_cb *cb,
    void *ctx)
{
	struct conn *c;
	struct stat st;
	int flags;

	if (fd < 0 || input_max == 0 || cb == NULL)
		log_panic("conn_new: bad fd %d or input_max %zu", fd,
		    input_max);
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		log_panic("conn_new: fcntl(%d): %s", fd, strerror(errno));
	c = xcalloc(1, sizeof(*c));
	c->loop = loop;
	c->fd = fd;
	c->cb = cb;
	c->ctx = ctx;
	c->tops = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) ?
	    &plain_sock : &plain_fd;
	c->in_max = input_max;
	c->out_soft = CONN_DEF_OUTPUT_SOFT;
	c->out_hard = CONN_DEF_OUTPUT_HARD;
	conn_update(c);
	return c;
}

void
conn_close(struct conn **connp)
{
	struct conn *c = *connp;

	if (c == NULL)
		return;
	*connp = NULL;
	if (c->freed)
		log_panic("conn_close: closed twice");
	conn_close_fd(c);
	c->dead = true;
	if (c->busy > 0)
		c->freed = true;
	else
		conn_destroy(c);
}

void
conn_close_after_flush(struct conn *c)
{
	if (c->dead)
		return;
	c->closing = true;
	conn_update(c);
}

int
conn_fd(const struct conn *c)
{
	return c->fd;
}

const char *
conn_error(const struct conn *c)
{
	return c->error[0] != '\0' ? c->error : NULL;
}

void
conn_set_error(struct conn *c, const char *text)
{
	snprintf(c->error, sizeof(c->error), "%s", text);
}

int
conn_set_transport(struct conn *c, const struct conn_transport *ops,
    void *tctx)
{
	if (conn_has_output(c) || c->dead || c->fd < 0)
		return -1;
	if (!conn_is_plain(c) && c->tops->close != NULL)
		c->tops->close(c->tctx, c->fd);
	c->tops = ops;
	c->tctx = tctx;
	c->read_wants_write = false;
	c->write_wants_read = false;
	conn_update(c);
	return 0;
}

const struct conn_transport *
conn_get_transport(const struct conn *c, void **tctx_r)
{
	if (c->fd < 0 || conn_is_plain(c)) {
		*tctx_r = NULL;
		return NULL;
	}
	*tctx_r = c->tctx;
	return c->tops;
}

int
conn_push_transport(struct conn *c, const struct conn_transport *ops,
    void *tctx)
{
	if (ops->unread == NULL)
		log_panic("conn_push_transport: the transport has no unread");
	if (!conn_is_plain(c) || conn_has_output(c) || c->dead || c->fd < 0)
		return -1;
	/* Encoded bytes: the new transport decodes them first. */
	if (c->in_len > 0)
		ops->unread(tctx, c->in + c->in_pos, c->in_len);
	c->in_pos = 0;
	c->in_len = 0;
	c->skipping = false;
	return conn_set_transport(c, ops, tctx);
}

void
conn_set_input_max(struct conn *c, size_t max)
{
	if (max == 0)
		log_panic("conn_set_input_max: 0");
	c->in_max = max;
	conn_update(c);
}

int
conn_read_line(struct conn *c, const unsigned char **line_r, size_t *len_r)
{
	unsigned char *p, *lf;
	size_t n, len;

	conn_skip(c);
	if (c->skipping)
		return 0;
	p = c->in + c->in_pos;
	lf = c->in_len == 0 ? NULL : memchr(p, '\n', c->in_len);
	if (lf == NULL) {
		if (c->in_len < c->in_max)
			return 0;
		conn_input_consume(c, c->in_len);
		c->skipping = true;
		return -1;
	}
	n = (size_t)(lf - p) + 1;
	conn_input_consume(c, n);
	if (n > c->in_max)
		return -1;	/* buffered before the limit shrank */
	len = n - 1;
	if (len > 0 && p[len - 1] == '\r')
		len--;
	p[len] = '\0';		/* over the CR or LF, inside the buffer */
	*line_r = p;
	*len_r = len;
	return 1;
}

const unsigned char *
conn_input_peek(struct conn *c, size_t *len_r)
{
	*len_r = c->in_len;
	return c->in_len == 0 ? (const unsigned char *)"" : c->in + c->in_pos;
}

void
conn_input_consume(struct conn *c, size_t n)
{
	if (n > c->in_len)
		log_panic("conn_input_consume: %zu of %zu bytes", n,
		    c->in_len);
	c->in_pos += n;
	c->in_len -= n;
	if (c->in_len == 0)
		c->in_pos = 0;
	conn_update(c);
}

void
conn_pause_input(struct conn *c, bool pause)
{
	c->paused = pause;
	conn_update(c);
}

void
conn_input_discard(struct conn *c)
{
	c->skipping = false;
	conn_input_consume(c, c->in_len);
}

void
conn_set_output_limits(struct conn *c, size_t soft, size_t hard)
{
	if (soft == 0 || soft > hard)
		log_panic("conn_set_output_limits: %zu, %zu", soft, hard);
	c->out_soft = soft;
	c->out_hard = hard;
	conn_update(c);
}

/* Room for len more queued bytes, len <= out_hard - out_len checked. */
static void
conn_out_reserve(struct conn *c, size_t len)
{
	size_t need = c->out_len + len, cap;

	if (c->out_cap - c->out_pos - c->out_len >= len)
		return;
	if (c->out_pos > 0) {
		memmove(c->out, c->out + c->out_pos, c->out_len);
		c->out_pos = 0;
	}
	if (c->out_cap >= need)
		return;
	cap = c->out_cap < 1024 ? 1024 : c->out_cap;
	while (cap < need)
		cap = cap > c->out_hard / 2 ? c->out_hard : cap * 2;
	c->out = xrealloc(c->out, cap);
	c->out_cap = cap;
}

int
conn_write(struct conn *c, const void *data, size_t len)
{
	if (c->dead || c->closing || c->fd < 0 ||
	    c->out_len > c->out_hard || len > c->out_hard - c->out_len)
		return -1;
	if (len == 0)
		return 0;
	conn_out_reserve(c, len);
	memcpy(c->out + c->out_pos + c->out_len, data, len);
	c->out_len += len;
	conn_update(c);
	return 0;
}

int
conn_printf(struct conn *c, const char *fmt, ...)
{
	char stackbuf[CONN_PRINTF_STACK], *p = stackbuf;
	va_list ap;
	int n, ret;

	va_start(ap, fmt);
	n = vsnprintf(stackbuf, sizeof(stackbuf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n >= sizeof(stackbuf)) {
		p = xmalloc((size_t)n + 1);
		va_start(ap, fmt);
		(void)vsnprintf(p, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	ret = conn_write(c, p, (size_t)n);
	if (p != stackbuf)
		free(p);
	return ret;
}

void
conn_set_output_drained_cb(struct conn *c, void (*cb)(void *), void *ctx)
{
	c->drained_cb = cb;
	c->drained_ctx = ctx;
}

void
conn_set_idle_timeout(struct conn *c, unsigned msecs)
{
	timeout_remove(&c->idle_to);
	c->idle_ms = msecs;
	if (msecs > 0 && !c->dead)
		c->idle_to = timeout_add(c->loop, msecs, false, conn_idle_cb,
		    c);
}

void
conn_set_output_timeout(struct conn *c, unsigned msecs)
{
	timeout_remove(&c->stall_to);
	c->stall_ms = msecs;
	conn_update(c);
}
