/*
 * Unit tests for lib/conn.c over socketpairs and loopback TCP: lines fed
 * byte by byte, CRLF and LF, the limit at N and N+1 with the rest skipped,
 * NUL bytes, peek/consume/discard, output flow control against a peer that
 * does not read, the drained callback, idle and stalled timeouts, peer
 * close, close after flush, errors, closing inside the callback, a
 * pluggable transport that wants the other direction and buffers bytes,
 * one that holds output itself (wpending: DRAINED, the drained callback
 * and close-after-flush wait for it), and conn_push_transport handing
 * buffered input to the new transport.
 * Timers only bound runs; nothing asserts elapsed time.
 */
#include "config.h"
#include <sys/socket.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <unistd.h>
#include "conn.h"
#include "ioloop.h"
#include "log.h"
#include "net.h"
#include "tap.h"

static struct ioloop *loop;

struct owner {
	struct conn *conn;
	int ev[6];		/* count per enum conn_event */
	char lines[1024];	/* "line|" per line, "<long>|" per -1 */
	size_t nlines_len;
	int calls0;		/* conn_read_line returned 0 */
	bool stop_on_input, close_on_input, stop_on_any, no_lines;
	/* flow control */
	bool echo;
	size_t chunk, max_out, processed;
};

static void
stop_cb(void *ctx)
{
	(void)ctx;
	ioloop_stop(loop);
}

static void
run_bounded(unsigned msecs)
{
	struct timeout *t = timeout_add(loop, msecs, false, stop_cb, NULL);

	ioloop_run(loop);
	timeout_remove(&t);
}

static void
append(struct owner *o, const void *p, size_t n)
{
	if (o->nlines_len + n + 1 < sizeof(o->lines)) {
		memcpy(o->lines + o->nlines_len, p, n);
		o->nlines_len += n;
		o->lines[o->nlines_len] = '\0';
	}
}

static void
take_lines(struct owner *o, struct conn *c)
{
	const unsigned char *line;
	size_t len;
	int r;

	while (!(o->echo && conn_output_full(c))) {
		r = conn_read_line(c, &line, &len);
		if (r == 0) {
			o->calls0++;
			return;
		}
		if (r < 0) {
			append(o, "<long>|", 7);
			continue;
		}
		if (line[len] != '\0')
			append(o, "<noNUL>", 7);
		append(o, line, len);
		append(o, "|", 1);
		if (o->echo) {
			static char big[100000];

			memset(big, 'r', o->chunk);
			if (conn_write(c, big, o->chunk) < 0)
				append(o, "<wfail>", 7);
			o->processed++;
			if (conn_output_size(c) > o->max_out)
				o->max_out = conn_output_size(c);
		}
	}
}

static void
owner_cb(struct conn *c, enum conn_event ev, void *ctx)
{
	struct owner *o = ctx;

	o->ev[ev]++;
	if (ev == CONN_EV_INPUT && o->close_on_input) {
		conn_close(&o->conn);
		ioloop_stop(loop);
		return;
	}
	if (ev == CONN_EV_INPUT && !o->no_lines)
		take_lines(o, c);
	if (o->stop_on_any || (ev == CONN_EV_INPUT && o->stop_on_input))
		ioloop_stop(loop);
}

static void
xsocketpair(int sv[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		bail("socketpair: %s", strerror(errno));
}

static void
put(int fd, const void *p, size_t n)
{
	if (write(fd, p, n) != (ssize_t)n)
		bail("write: %s", strerror(errno));
}

/* Read exactly n bytes from a blocking fd (bounded by poll). */
static size_t
get(int fd, char *buf, size_t n)
{
	struct pollfd pfd = { fd, POLLIN, 0 };
	size_t got = 0;
	ssize_t r;

	while (got < n && poll(&pfd, 1, 2000) == 1) {
		if ((r = read(fd, buf + got, n - got)) <= 0)
			break;
		got += (size_t)r;
	}
	return got;
}

static void
owner_init(struct owner *o, int fd, size_t max)
{
	memset(o, 0, sizeof(*o));
	o->conn = conn_new(loop, fd, max, owner_cb, o);
	o->stop_on_input = true;
}

/* Send s one byte per loop pass; the line only comes at the end. */
static void
test_bytewise(void)
{
	static const char s[] = "abc\r\nde\nx\0y\r\na\rb\n";
	struct owner o;
	int sv[2], early = 0;
	size_t i;

	xsocketpair(sv);
	owner_init(&o, sv[0], 16);
	for (i = 0; i < 5; i++) {
		put(sv[1], s + i, 1);
		run_bounded(2000);
		if (i < 4 && o.nlines_len != 0)
			early++;
	}
	is_int(early, 0, "no line before its LF arrives (byte by byte)");
	is_int(o.calls0, 5, "need-more after each byte");
	is_string(o.lines, "abc|", "CRLF line returned without CRLF");
	for (; i < sizeof(s) - 1; i++) {
		put(sv[1], s + i, 1);
		run_bounded(2000);
	}
	is_mem(o.lines, o.nlines_len, "abc|de|x\0y|a\rb|", 15,
	    "LF line, NUL inside a line, lone CR kept");
	conn_close(&o.conn);
	ok(o.conn == NULL, "conn_close clears the pointer");
	close(sv[1]);
}

static void
test_limit(void)
{
	struct owner o;
	int sv[2];
	size_t i;
	const char *over = "123456789012345\r\n";

	xsocketpair(sv);
	owner_init(&o, sv[0], 16);
	put(sv[1], "12345678901234\r\n", 16);
	run_bounded(2000);
	is_string(o.lines, "12345678901234|", "CRLF line of 16 = limit taken");
	o.nlines_len = 0;
	put(sv[1], "123456789012345\n", 16);
	run_bounded(2000);
	is_string(o.lines, "123456789012345|", "LF line of 16 = limit taken");
	o.nlines_len = 0;
	for (i = 0; i < 17; i++) {
		put(sv[1], over + i, 1);
		run_bounded(i == 16 ? 30 : 2000);
	}
	is_string(o.lines, "<long>|", "17 bytes byte by byte: one -1");
	o.nlines_len = 0;
	put(sv[1], "ok\r\n", 4);
	run_bounded(2000);
	is_string(o.lines, "ok|", "next line after the over-long one is fine");
	o.nlines_len = 0;
	put(sv[1], "0123456789012345678901234567890123456789\r\nnext\n", 47);
	run_bounded(2000);
	run_bounded(30);
	is_string(o.lines, "<long>|next|",
	    "40-byte line in one go: one -1, its rest skipped, then next");
	o.nlines_len = 0;
	conn_set_input_max(o.conn, 64);
	put(sv[1], "0123456789012345678901234567890123456789\r\n", 42);
	run_bounded(2000);
	is_string(o.lines, "0123456789012345678901234567890123456789|",
	    "raised limit takes the 40-byte line");
	conn_close(&o.conn);
	close(sv[1]);
}

static void
test_peek(void)
{
	struct owner o;
	const unsigned char *p;
	size_t n;
	int sv[2];

	xsocketpair(sv);
	owner_init(&o, sv[0], 64);
	o.no_lines = true;
	put(sv[1], "DATA\r\nhello", 11);
	run_bounded(2000);
	p = conn_input_peek(o.conn, &n);
	is_mem(p, n, "DATA\r\nhello", 11, "peek sees raw bytes");
	conn_input_consume(o.conn, 8);
	p = conn_input_peek(o.conn, &n);
	is_mem(p, n, "llo", 3, "consume drops from the front");
	conn_input_discard(o.conn);
	(void)conn_input_peek(o.conn, &n);
	is_int(n, 0, "discard empties the buffer");
	conn_close(&o.conn);
	close(sv[1]);
}

static void
test_write_drained(void)
{
	struct owner o;
	char buf[32];
	int sv[2];

	xsocketpair(sv);
	owner_init(&o, sv[0], 64);
	o.stop_on_any = true;
	is_int(conn_printf(o.conn, "+OK %d %s\r\n", 5, "go"), 0, "printf");
	is_int(conn_output_size(o.conn), 10, "queued, not yet sent");
	run_bounded(2000);
	is_int(o.ev[CONN_EV_DRAINED], 1, "DRAINED once sent");
	is_int(get(sv[1], buf, 10), 10, "peer got it");
	is_mem(buf, 10, "+OK 5 go\r\n", 10, "bytes");
	conn_set_output_limits(o.conn, 8, 16);
	is_int(conn_write(o.conn, "0123456789abcdef", 16), 0,
	    "write up to the hard limit");
	is_int(conn_write(o.conn, "x", 1), -1, "one byte past it refused");
	is_int(conn_output_size(o.conn), 16, "queue unchanged");
	ok(conn_output_full(o.conn), "above soft limit: full");
	conn_close(&o.conn);
	close(sv[1]);
}

/* Pipelining peer that never reads: the queue must stop growing. */
static struct owner *fc_owner;
static size_t fc_last, fc_same;

static void
fc_check_cb(void *ctx)
{
	(void)ctx;
	if (fc_owner->processed == fc_last && conn_output_full(fc_owner->conn))
		fc_same++;
	else
		fc_same = 0;
	fc_last = fc_owner->processed;
	if (fc_same >= 5)
		ioloop_stop(loop);
}

static size_t fc_got;

static void
fc_peer_cb(void *ctx)
{
	char buf[65536];
	ssize_t n;

	while ((n = read(*(int *)ctx, buf, sizeof(buf))) > 0)
		fc_got += (size_t)n;
	if (fc_got >= 2000 * 1000)
		ioloop_stop(loop);
}

static void
test_flow_control(void)
{
	struct owner o;
	struct timeout *t;
	struct io *pio;
	char req[4000];
	int sv[2], i;

	xsocketpair(sv);
	owner_init(&o, sv[0], 1024);
	o.stop_on_input = false;
	o.echo = true;
	o.chunk = 1000;
	conn_set_output_limits(o.conn, 4096, 1024 * 1024);
	for (i = 0; i < 2000; i++)
		memcpy(req + 2 * i, "x\n", 2);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	put(sv[1], req, sizeof(req));
	fc_owner = &o;
	t = timeout_add(loop, 5, true, fc_check_cb, NULL);
	run_bounded(10000);
	timeout_remove(&t);
	ok(o.processed < 2000, "reading paused before all requests (%zu)",
	    o.processed);
	ok(conn_output_full(o.conn), "output above the soft limit");
	ok(o.max_out <= 4096 + 1000,
	    "queue never past soft limit + one chunk (max %zu)", o.max_out);
	pio = io_add(loop, sv[1], IO_READ, fc_peer_cb, &sv[1]);
	run_bounded(20000);
	io_remove(&pio);
	is_int(o.processed, 2000, "all requests answered once the peer reads");
	is_int(fc_got, 2000 * 1000, "peer got every response byte");
	ok(o.max_out <= 4096 + 1000, "bound held to the end (max %zu)",
	    o.max_out);
	conn_close(&o.conn);
	close(sv[1]);
}

/* Streaming with the drained callback. */
struct streamer {
	struct conn *conn;
	int sent, calls;
};

static void
stream_next(void *ctx)
{
	struct streamer *s = ctx;
	char chunk[8192];

	s->calls++;
	if (s->sent == 50) {
		conn_set_output_drained_cb(s->conn, NULL, NULL);
		return;
	}
	memset(chunk, 'a' + s->sent % 26, sizeof(chunk));
	if (conn_write(s->conn, chunk, sizeof(chunk)) == 0)
		s->sent++;
	if (conn_output_size(s->conn) > 8192)
		s->calls += 1000;	/* queued past one chunk: wrong */
}

static size_t st_got;
static int st_bad;

static void
st_peer_cb(void *ctx)
{
	char buf[4096];
	ssize_t n, i;

	while ((n = read(*(int *)ctx, buf, sizeof(buf))) > 0) {
		for (i = 0; i < n; i++)
			if (buf[i] != 'a' + (char)((st_got + (size_t)i) /
			    8192 % 26))
				st_bad++;
		st_got += (size_t)n;
	}
	if (st_got >= 50 * 8192)
		ioloop_stop(loop);
}

static void
test_drained_cb(void)
{
	struct owner o;
	struct streamer s = { 0 };
	struct io *pio;
	int sv[2];

	xsocketpair(sv);
	owner_init(&o, sv[0], 64);
	s.conn = o.conn;
	conn_set_output_drained_cb(o.conn, stream_next, &s);
	stream_next(&s);
	s.calls = 0;
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	pio = io_add(loop, sv[1], IO_READ, st_peer_cb, &sv[1]);
	run_bounded(20000);
	run_bounded(20);
	io_remove(&pio);
	is_int(s.sent, 50, "streamer sent 50 chunks, one per drain");
	is_int(s.calls, 50, "drained callback once per chunk, never queued "
	    "more than one");
	is_int(st_got, 50 * 8192, "peer got all bytes");
	is_int(st_bad, 0, "in order");
	is_int(o.ev[CONN_EV_DRAINED], 0,
	    "no DRAINED event while the callback was set");
	conn_close(&o.conn);
	close(sv[1]);
}

static void
test_timeouts(void)
{
	struct owner o;
	int sv[2];
	char big[65536];

	xsocketpair(sv);
	owner_init(&o, sv[0], 64);
	o.stop_on_any = true;
	conn_set_idle_timeout(o.conn, 10);
	run_bounded(5000);
	is_int(o.ev[CONN_EV_TIMEOUT], 1, "idle timeout reported");
	o.stop_on_any = false;
	run_bounded(40);
	is_int(o.ev[CONN_EV_TIMEOUT], 1, "only once without new input");
	o.stop_on_any = true;
	put(sv[1], "hi\n", 3);
	run_bounded(5000);
	run_bounded(5000);
	is_int(o.ev[CONN_EV_TIMEOUT], 2, "input re-arms the idle timeout");
	conn_set_idle_timeout(o.conn, 0);

	conn_set_output_limits(o.conn, 1024 * 1024, 8 * 1024 * 1024);
	memset(big, 'z', sizeof(big));
	while (conn_output_size(o.conn) < 4 * 1024 * 1024)
		(void)conn_write(o.conn, big, sizeof(big));
	conn_set_output_timeout(o.conn, 10);
	o.stop_on_any = false;
	o.ev[CONN_EV_DRAINED] = 0;
	run_bounded(100);
	is_int(o.ev[CONN_EV_STALLED], 1,
	    "stalled-output reported once, peer not reading");
	conn_close(&o.conn);
	close(sv[1]);
}

static void
test_peer_close(void)
{
	struct owner o;
	int sv[2];

	xsocketpair(sv);
	owner_init(&o, sv[0], 64);
	o.stop_on_input = false;
	put(sv[1], "last\n", 5);
	close(sv[1]);
	run_bounded(50);
	is_string(o.lines, "last|", "data before EOF delivered");
	is_int(o.ev[CONN_EV_CLOSED], 1, "then CLOSED");
	is_int(conn_write(o.conn, "x\r\n", 3), 0, "writes still queue");
	run_bounded(50);
	is_int(o.ev[CONN_EV_ERROR], 1, "writing to the gone peer: ERROR");
	ok(conn_error(o.conn) != NULL &&
	    strncmp(conn_error(o.conn), "write: ", 7) == 0,
	    "conn_error says write (%s)", conn_error(o.conn));
	is_int(conn_write(o.conn, "x", 1), -1, "dead: write refused");
	conn_close(&o.conn);
}

static void
test_close_after_flush(void)
{
	struct owner o;
	char buf[16];
	int sv[2];

	xsocketpair(sv);
	owner_init(&o, sv[0], 64);
	conn_write(o.conn, "bye\r\n", 5);
	conn_close_after_flush(o.conn);
	is_int(conn_write(o.conn, "x", 1), -1, "no writes while closing");
	put(sv[1], "ignored\n", 8);
	run_bounded(50);
	is_int(get(sv[1], buf, sizeof(buf)), 5, "peer got bye, then EOF");
	is_mem(buf, 5, "bye\r\n", 5, "bytes");
	is_int(o.ev[CONN_EV_CLOSED], 1, "CLOSED after the flush");
	is_int(o.ev[CONN_EV_INPUT], 0, "no input read while closing");
	is_int(conn_fd(o.conn), -1, "fd closed");
	conn_close(&o.conn);
	close(sv[1]);

	xsocketpair(sv);
	owner_init(&o, sv[0], 64);
	o.close_on_input = true;
	put(sv[1], "x\n", 2);
	run_bounded(2000);
	ok(o.conn == NULL && o.ev[CONN_EV_INPUT] == 1,
	    "conn_close inside its own callback (ASan checks the rest)");
	ok(get(sv[1], buf, 1) == 0, "fd closed by conn_close");
	close(sv[1]);
}

/* A transport that flips bit 0x20, first wants the other direction, and
 * hands out one byte per read from its own buffer (like SSL_pending). */
struct flip {
	bool wanted_write, wanted_read, closed;
	unsigned char buf[256];
	size_t pos, len;
	int reads;
};

static ssize_t
flip_read(void *tctx, int fd, unsigned char *buf, size_t size,
    enum conn_want *want_r)
{
	struct flip *f = tctx;
	ssize_t n;

	f->reads++;
	if (!f->wanted_write) {
		f->wanted_write = true;
		*want_r = CONN_WANT_WRITE;
		errno = EAGAIN;
		return -1;
	}
	if (f->len == 0) {
		n = read(fd, f->buf, sizeof(f->buf));
		if (n <= 0) {
			*want_r = CONN_WANT_READ;
			return n;
		}
		f->pos = 0;
		f->len = (size_t)n;
	}
	(void)size;
	buf[0] = f->buf[f->pos++] ^ 0x20;
	f->len--;
	return 1;
}

static ssize_t
flip_write(void *tctx, int fd, const unsigned char *buf, size_t size,
    enum conn_want *want_r)
{
	struct flip *f = tctx;
	unsigned char tmp[256];
	size_t i, n = size < sizeof(tmp) ? size : sizeof(tmp);

	if (!f->wanted_read) {
		f->wanted_read = true;
		*want_r = CONN_WANT_READ;
		errno = EAGAIN;
		return -1;
	}
	for (i = 0; i < n; i++)
		tmp[i] = buf[i] ^ 0x20;
	*want_r = CONN_WANT_WRITE;
	return write(fd, tmp, n);
}

static size_t
flip_pending(void *tctx)
{
	return ((struct flip *)tctx)->len;
}

static void
flip_close(void *tctx, int fd)
{
	(void)fd;
	((struct flip *)tctx)->closed = true;
}

static const struct conn_transport flip_ops = {
	flip_read, flip_write, flip_pending, flip_close, NULL, NULL
};

static void
test_transport(void)
{
	struct owner o;
	struct flip f = { 0 };
	char buf[16];
	int sv[2], i;

	xsocketpair(sv);
	owner_init(&o, sv[0], 64);
	o.stop_on_input = false;
	conn_write(o.conn, "x", 1);
	is_int(conn_set_transport(o.conn, &flip_ops, &f), -1,
	    "transport switch refused while output is queued");
	run_bounded(30);
	(void)get(sv[1], buf, 1);
	put(sv[1], "plain\n", 6);
	run_bounded(30);
	is_string(o.lines, "plain|", "plaintext line before the switch");
	is_int(conn_set_transport(o.conn, &flip_ops, &f), 0, "switched");
	conn_input_discard(o.conn);
	o.nlines_len = 0;
	/* "HELLO THERE\n" flipped: 0x20 toggled; '\n' ^ 0x20 = '*'. */
	put(sv[1], "hello\0there\0this\0is\0a\0longer\0line*", 34);
	for (i = 0; i < 50 && o.nlines_len == 0; i++)
		run_bounded(10);
	is_string(o.lines, "HELLO THERE THIS IS A LONGER LINE|",
	    "bytes read through the transport, one per read, via pending");
	ok(f.wanted_write, "read that wanted write was retried");
	ok(f.reads > 16,
	    "more reads than one event allows: pending drove them");
	conn_write(o.conn, "OK\n", 3);
	run_bounded(30);
	run_bounded(30);
	put(sv[1], "z", 1);	/* lets the write that wanted read go on */
	run_bounded(30);
	is_int(get(sv[1], buf, 3), 3, "peer got the reply");
	is_mem(buf, 3, "ok*", 3, "written through the transport");
	conn_close(&o.conn);
	ok(f.closed, "transport close hook ran");
	close(sv[1]);
}

/* A transport like a TLS server in its handshake: writes wait for input
 * until a read has consumed the peer's last handshake message, and that
 * read returns "nothing for you yet", as SSL_read does once the
 * handshake completes. */
struct hs {
	bool done;
	int writes_refused;
};

static ssize_t
hs_read(void *tctx, int fd, unsigned char *buf, size_t size,
    enum conn_want *want_r)
{
	struct hs *h = tctx;
	unsigned char tmp[64];
	ssize_t n;

	(void)buf;
	(void)size;
	n = read(fd, tmp, sizeof(tmp));
	if (n > 0)
		h->done = true;	/* the "Finished" message */
	*want_r = CONN_WANT_READ;
	errno = EAGAIN;
	return n == 0 ? 0 : -1;
}

static ssize_t
hs_write(void *tctx, int fd, const unsigned char *buf, size_t size,
    enum conn_want *want_r)
{
	struct hs *h = tctx;

	if (!h->done) {
		h->writes_refused++;
		*want_r = CONN_WANT_READ;
		errno = EAGAIN;
		return -1;
	}
	*want_r = CONN_WANT_WRITE;
	return write(fd, buf, size);
}

static const struct conn_transport hs_ops = {
	hs_read, hs_write, NULL, NULL, NULL, NULL
};

static void
test_write_after_handshake_read(void)
{
	struct owner o;
	struct hs h = { 0 };
	char buf[16];
	int sv[2];

	xsocketpair(sv);
	owner_init(&o, sv[0], 64);
	is_int(conn_set_transport(o.conn, &hs_ops, &h), 0, "hs transport");
	conn_write(o.conn, "+OK hi\r\n", 8);
	run_bounded(30);
	ok(h.writes_refused > 0, "greeting waits for the handshake");
	put(sv[1], "F", 1);
	run_bounded(30);
	run_bounded(30);
	is_int(get(sv[1], buf, 8), 8,
	    "greeting sent once a read finished the handshake, without more "
	    "input from the peer");
	is_mem(buf, 8, "+OK hi\r\n", 8, "the greeting's bytes");
	conn_close(&o.conn);
	close(sv[1]);
}

/* A transport that takes whatever conn writes into its own buffer and
 * sends at most 7 bytes of it per call, like a compressor facing a full
 * socket: conn must keep going until it is out before DRAINED. */
struct hold {
	unsigned char buf[4096];
	size_t len;
	int calls0;		/* write() with size 0 */
	int drained_early;	/* DRAINED seen while bytes were held */
	char unread[64];
	size_t unread_len;
	bool stuck;		/* send nothing */
};

static void
hold_send(struct hold *h, int fd)
{
	size_t n = h->len < 7 ? h->len : 7;
	ssize_t w;

	if (h->stuck)
		return;
	w = write(fd, h->buf, n);
	if (w > 0) {
		memmove(h->buf, h->buf + w, h->len - (size_t)w);
		h->len -= (size_t)w;
	}
}

static ssize_t
hold_write(void *tctx, int fd, const unsigned char *buf, size_t size,
    enum conn_want *want_r)
{
	struct hold *h = tctx;

	*want_r = CONN_WANT_WRITE;
	if (size == 0)
		h->calls0++;
	if (h->len > 0) {
		hold_send(h, fd);
		if (h->len > 0 || size == 0) {
			errno = EAGAIN;
			return h->len > 0 ? -1 : 0;
		}
	}
	if (size > sizeof(h->buf))
		size = sizeof(h->buf);
	memcpy(h->buf, buf, size);
	h->len = size;
	hold_send(h, fd);
	return (ssize_t)size;
}

static ssize_t
hold_read(void *tctx, int fd, unsigned char *buf, size_t size,
    enum conn_want *want_r)
{
	struct hold *h = tctx;
	size_t n;

	*want_r = CONN_WANT_READ;
	if (h->unread_len > 0) {
		n = h->unread_len < size ? h->unread_len : size;
		memcpy(buf, h->unread, n);
		for (size_t i = 0; i < n; i++)	/* "decode": upper case */
			if (buf[i] >= 'a' && buf[i] <= 'z')
				buf[i] -= 32;
		memmove(h->unread, h->unread + n, h->unread_len - n);
		h->unread_len -= n;
		return (ssize_t)n;
	}
	return read(fd, buf, size);
}

static size_t
hold_pending(void *tctx)
{
	return ((struct hold *)tctx)->unread_len;
}

static size_t
hold_wpending(void *tctx)
{
	return ((struct hold *)tctx)->len;
}

static void
hold_unread(void *tctx, const unsigned char *data, size_t len)
{
	struct hold *h = tctx;

	if (len > sizeof(h->unread) - h->unread_len)
		bail("hold_unread: %zu bytes", len);
	memcpy(h->unread + h->unread_len, data, len);
	h->unread_len += len;
}

static const struct conn_transport hold_ops = {
	hold_read, hold_write, hold_pending, NULL, hold_wpending, hold_unread
};

static struct hold *hold_now;

static void
hold_owner_cb(struct conn *c, enum conn_event ev, void *ctx)
{
	if (ev == CONN_EV_DRAINED && hold_now->len > 0)
		hold_now->drained_early++;
	owner_cb(c, ev, ctx);
}

static int hold_dcb_calls, hold_dcb_early;

static void
hold_drained_cb(void *ctx)
{
	(void)ctx;
	hold_dcb_calls++;
	if (hold_now->len > 0)
		hold_dcb_early++;
}

static void
test_held_output(void)
{
	static const char msg[] = "* 1 FETCH (BODY[] {40}\r\n"
	    "0123456789012345678901234567890123456789)\r\n";
	struct hold h;
	struct owner o;
	char buf[128];
	int sv[2], i;

	memset(&h, 0, sizeof(h));
	hold_now = &h;
	xsocketpair(sv);
	memset(&o, 0, sizeof(o));
	o.conn = conn_new(loop, sv[0], 64, hold_owner_cb, &o);
	is_int(conn_push_transport(o.conn, &hold_ops, &h), 0,
	    "hold transport pushed");
	is_int(conn_write(o.conn, msg, sizeof(msg) - 1), 0, "queued");
	for (i = 0; i < 100 && o.ev[CONN_EV_DRAINED] == 0; i++)
		run_bounded(5);
	is_int(o.ev[CONN_EV_DRAINED], 1, "DRAINED once");
	is_int(h.drained_early, 0, "not before the transport's bytes left");
	ok(h.calls0 > 0, "conn asked the transport to flush (write of 0) "
	    "with its own queue empty (%d times)", h.calls0);
	is_int(get(sv[1], buf, sizeof(msg) - 1), (int)sizeof(msg) - 1,
	    "peer got every byte");
	is_mem(buf, sizeof(msg) - 1, msg, sizeof(msg) - 1, "in order");

	/* The drained callback waits the same way. */
	conn_set_output_drained_cb(o.conn, hold_drained_cb, NULL);
	(void)conn_write(o.conn, msg, sizeof(msg) - 1);
	for (i = 0; i < 100 && hold_dcb_calls == 0; i++)
		run_bounded(5);
	is_int(hold_dcb_calls, 1, "drained callback once");
	is_int(hold_dcb_early, 0, "only once the transport had sent all");
	(void)get(sv[1], buf, sizeof(msg) - 1);
	conn_set_output_drained_cb(o.conn, NULL, NULL);

	/* Stuck: everything taken, nothing sent. A transport switch waits
	 * for held bytes, and so does close after flush. */
	h.stuck = true;
	(void)conn_write(o.conn, msg, sizeof(msg) - 1);
	run_bounded(20);
	is_int(conn_output_size(o.conn), 0, "conn's queue given away");
	is_int((int)h.len, (int)sizeof(msg) - 1, "all held by the transport");
	is_int(o.ev[CONN_EV_DRAINED], 1, "no DRAINED while held");
	is_int(conn_set_transport(o.conn, &hold_ops, &h), -1,
	    "no transport switch while the transport holds output");
	conn_close_after_flush(o.conn);
	run_bounded(20);
	is_int(o.ev[CONN_EV_CLOSED], 0, "close after flush waits for them");
	h.stuck = false;
	for (i = 0; i < 100 && o.ev[CONN_EV_CLOSED] == 0; i++)
		run_bounded(5);
	is_int(o.ev[CONN_EV_CLOSED], 1, "then closes");
	is_int(get(sv[1], buf, sizeof(buf)), (int)sizeof(msg) - 1,
	    "the held bytes went out, then EOF");
	{
		void *tctx = &h;

		ok(conn_get_transport(o.conn, &tctx) == NULL && tctx == NULL,
		    "fd closed: no transport to find (its close has run)");
	}
	conn_close(&o.conn);
	close(sv[1]);
}

static void
test_push(void)
{
	struct owner o;
	struct hold h, h2;
	int sv[2], i;

	memset(&h, 0, sizeof(h));
	memset(&h2, 0, sizeof(h2));
	hold_now = &h;
	xsocketpair(sv);
	owner_init(&o, sv[0], 64);
	o.no_lines = true;
	o.stop_on_input = true;
	put(sv[1], "a compress deflate\r\nencoded", 27);
	run_bounded(2000);
	{
		size_t n;
		const unsigned char *p = conn_input_peek(o.conn, &n);

		is_mem(p, n, "a compress deflate\r\nencoded", 27,
		    "command and the bytes after it buffered");
	}
	conn_input_consume(o.conn, 20);
	(void)conn_write(o.conn, "a OK\r\n", 6);
	is_int(conn_push_transport(o.conn, &hold_ops, &h), -1,
	    "push refused while output is queued");
	is_int((int)h.unread_len, 0, "and nothing handed over");
	run_bounded(30);
	{
		char buf[8];

		(void)get(sv[1], buf, 6);
	}
	{
		void *tctx = &h;

		ok(conn_get_transport(o.conn, &tctx) == NULL && tctx == NULL,
		    "plain: conn_get_transport gives NULL");
	}
	is_int(conn_push_transport(o.conn, &hold_ops, &h), 0, "pushed");
	{
		void *tctx = NULL;

		ok(conn_get_transport(o.conn, &tctx) == &hold_ops &&
		    tctx == &h, "conn_get_transport finds it");
	}
	is_mem(h.unread, h.unread_len, "encoded", 7,
	    "the buffered bytes went to the transport's unread");
	{
		size_t n;

		(void)conn_input_peek(o.conn, &n);
		is_int((int)n, 0, "and left the input buffer");
	}
	o.no_lines = false;
	o.stop_on_input = false;
	put(sv[1], "!\n", 2);
	for (i = 0; i < 50 && o.nlines_len == 0; i++)
		run_bounded(10);
	is_string(o.lines, "ENCODED!|",
	    "decoded form read first, without waiting, then the fd");
	is_int(conn_push_transport(o.conn, &hold_ops, &h2), -1,
	    "no push over a transport other than the plain one");
	is_int((int)h2.unread_len, 0, "and nothing handed over");
	conn_close(&o.conn);
	close(sv[1]);
}

static void
test_tcp(void)
{
	struct net_addr *a, peer;
	struct owner o;
	const char *error;
	size_t n;
	int lfd = -1, cfd, afd, port;
	char buf[16], spec[32];
	struct pollfd pfd;

	for (port = 20000 + getpid() % 20000; lfd < 0 && port < 65000;
	    port += 7) {
		snprintf(spec, sizeof(spec), "127.0.0.1:%d", port);
		if (net_parse_listen(spec, &a, &n, &error) < 0)
			bail("%s", error);
		lfd = net_listen(a, 0, &error);
		if (lfd >= 0)
			break;
		free(a);
	}
	if (lfd < 0)
		bail("no port");
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(cfd, (struct sockaddr *)&a->ss, a->len) < 0)
		bail("connect: %s", strerror(errno));
	free(a);
	pfd.fd = lfd;
	pfd.events = POLLIN;
	(void)poll(&pfd, 1, 2000);
	afd = net_accept(lfd, &peer);
	if (afd < 0)
		bail("accept");
	owner_init(&o, afd, 64);
	put(cfd, "NO", 2);
	run_bounded(2000);
	put(cfd, "OP\r\n", 4);
	run_bounded(2000);
	is_string(o.lines, "NOOP|", "TCP line split across two segments");
	conn_printf(o.conn, "+OK\r\n");
	conn_close_after_flush(o.conn);
	run_bounded(2000);
	is_int(get(cfd, buf, sizeof(buf)), 5, "TCP reply then EOF");
	is_mem(buf, 5, "+OK\r\n", 5, "TCP reply bytes");
	conn_close(&o.conn);
	close(cfd);
	close(lfd);
}

int
main(void)
{
	log_open("conn-test", LOG_DEST_STDERR);
	loop = ioloop_new();
	test_bytewise();
	test_limit();
	test_peek();
	test_write_drained();
	test_flow_control();
	test_drained_cb();
	test_timeouts();
	test_peer_close();
	test_close_after_flush();
	test_transport();
	test_write_after_handshake_read();
	test_held_output();
	test_push();
	test_tcp();
	ioloop_free(&loop);
	return done_testing();
}
