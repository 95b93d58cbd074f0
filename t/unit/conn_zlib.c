/*
 * Unit tests for lib/conn_zlib.c: a conn switched to deflate over a
 * socketpair, against a peer in this test that speaks raw deflate with
 * zlib directly (windowBits -15, as RFC 4978 clients do). Round trips of
 * 0 bytes to 6 MB both ways, compressed input delivered byte by byte, a
 * socket that takes little at a time (compressed output kept by the
 * transport; DRAINED only once it is out), garbage input, a peer ending
 * its stream, input pipelined right after the COMPRESS command (in the
 * conn's buffer and given as early bytes), a decompression bomb against
 * the bounded input buffer, the deflater released while quiet and made
 * again mid-stream, and the memory a session holds, active and quiet.
 * Timers only bound runs; nothing asserts elapsed time.
 */
#include "config.h"
#include <sys/socket.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include "conn.h"
#include "conn_zlib.h"
#include "ioloop.h"
#include "log.h"
#include "tap.h"
#include "xmalloc.h"

static struct ioloop *loop;

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

/* A growable byte array for the tests' own bookkeeping. */
struct bytes {
	unsigned char *p;
	size_t len, cap;
};

static void
bytes_add(struct bytes *b, const void *data, size_t len)
{
	if (len == 0)
		return;
	if (b->cap - b->len < len) {
		b->cap = b->cap * 2 + len + 4096;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
}

static void
bytes_free(struct bytes *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* Mail-like bytes: words, line breaks and some noise, so that they
 * compress, but not to nothing. */
static void
make_payload(struct bytes *b, size_t len, uint32_t seed)
{
	static const char *const words[] = { "Received: ", "from ", "the ",
	    "message ", "IMAP ", "deflate ", "\r\n", "Subject: ", "lorem ",
	    "ipsum ", "=?UTF-8?Q?=C3=A9?= ", "base64 " };
	uint32_t x = seed * 2654435761u + 1;
	char c;

	while (b->len < len) {
		x = x * 1103515245u + 12345u;
		if ((x >> 16) % 5 == 0) {
			c = (char)(x >> 8);
			bytes_add(b, &c, 1);
		} else {
			const char *w = words[(x >> 20) % 12];
			size_t n = strlen(w);

			bytes_add(b, w, n < len - b->len ? n : len - b->len);
		}
	}
}

/* --- the peer: a raw-deflate speaker on the other end --- */

struct peer {
	int fd;
	z_stream def, inf;
	struct bytes tx;	/* compressed, to send */
	size_t tx_pos;
	struct bytes rx;	/* inflated from what came */
	size_t wire_in;		/* compressed bytes read */
	size_t read_max;	/* per event; 0: all there is */
	bool reading;
	int inflate_err;
	struct io *io_r, *io_w;
};

static void peer_update(struct peer *p);

static void
peer_read_cb(void *ctx)
{
	struct peer *p = ctx;
	unsigned char buf[65536], out[65536];
	size_t want = p->read_max > 0 && p->read_max < sizeof(buf) ?
	    p->read_max : sizeof(buf);
	ssize_t n;
	int r;

	n = read(p->fd, buf, want);
	if (n <= 0) {
		io_remove(&p->io_r);
		return;
	}
	p->wire_in += (size_t)n;
	p->inf.next_in = buf;
	p->inf.avail_in = (uInt)n;
	do {
		p->inf.next_out = out;
		p->inf.avail_out = sizeof(out);
		r = inflate(&p->inf, Z_SYNC_FLUSH);
		if (r != Z_OK && r != Z_BUF_ERROR) {
			p->inflate_err = r;
			break;
		}
		bytes_add(&p->rx, out, sizeof(out) - p->inf.avail_out);
	} while (p->inf.avail_in > 0 || p->inf.avail_out == 0);
}

static void
peer_write_cb(void *ctx)
{
	struct peer *p = ctx;
	ssize_t n;

	n = write(p->fd, p->tx.p + p->tx_pos, p->tx.len - p->tx_pos);
	if (n > 0)
		p->tx_pos += (size_t)n;
	peer_update(p);
}

static void
peer_update(struct peer *p)
{
	bool w = p->tx_pos < p->tx.len;

	if (w && p->io_w == NULL)
		p->io_w = io_add(loop, p->fd, IO_WRITE, peer_write_cb, p);
	else if (!w && p->io_w != NULL)
		io_remove(&p->io_w);
	if (p->reading && p->io_r == NULL)
		p->io_r = io_add(loop, p->fd, IO_READ, peer_read_cb, p);
	else if (!p->reading && p->io_r != NULL)
		io_remove(&p->io_r);
}

static void
peer_init(struct peer *p, int fd)
{
	memset(p, 0, sizeof(*p));
	p->fd = fd;
	fcntl(fd, F_SETFL, O_NONBLOCK);
	if (deflateInit2(&p->def, 6, Z_DEFLATED, -15, 8,
	    Z_DEFAULT_STRATEGY) != Z_OK || inflateInit2(&p->inf, -15) != Z_OK)
		bail("peer: zlib init");
	p->reading = true;
	peer_update(p);
}

/* Compress data into the send queue, with flush (Z_SYNC_FLUSH, as a
 * client does per command, or Z_FINISH). */
static void
peer_send(struct peer *p, const void *data, size_t len, int flush)
{
	unsigned char out[65536];
	int r;

	p->def.next_in = (unsigned char *)(uintptr_t)data;
	p->def.avail_in = (uInt)len;
	do {
		p->def.next_out = out;
		p->def.avail_out = sizeof(out);
		r = deflate(&p->def, flush);
		if (r == Z_STREAM_ERROR)
			bail("peer: deflate");
		bytes_add(&p->tx, out, sizeof(out) - p->def.avail_out);
	} while (p->def.avail_out == 0);
	peer_update(p);
}

static void
peer_free(struct peer *p)
{
	io_remove(&p->io_r);
	io_remove(&p->io_w);
	deflateEnd(&p->def);
	inflateEnd(&p->inf);
	bytes_free(&p->tx);
	bytes_free(&p->rx);
	close(p->fd);
}

/* --- the owner of the server's conn --- */

struct owner {
	struct conn *conn;
	struct conn_zlib_stats zst;	/* counted by the transport */
	bool started;
	int ev[6];
	bool take;		/* consume input as it comes */
	bool discard;		/* ... without keeping it in got */
	size_t taken;
	bool lines;		/* ... as lines, into lines */
	bool switch_on_drain;	/* COMPRESS: start deflate on DRAINED */
	struct bytes got;	/* input taken */
	char lines_text[256];
	/* output streamed with the drained callback */
	const unsigned char *src;
	size_t src_len, src_pos, piece;
	int early_drains;	/* DRAINED/drained while not all sent */
	struct peer *peer;	/* for checks at DRAINED */
	uint64_t wire_at_drain;
	size_t max_mem, max_in;
	const unsigned char *early;
	size_t early_len;
};

static void
owner_take(struct owner *o)
{
	const unsigned char *d, *line;
	size_t len;
	int r;

	if (o->lines) {
		while ((r = conn_read_line(o->conn, &line, &len)) != 0) {
			size_t at = strlen(o->lines_text);

			if (r < 0)
				snprintf(o->lines_text + at,
				    sizeof(o->lines_text) - at, "<long>|");
			else
				snprintf(o->lines_text + at,
				    sizeof(o->lines_text) - at, "%.*s|",
				    (int)len, (const char *)line);
		}
		return;
	}
	d = conn_input_peek(o->conn, &len);
	if (len > o->max_in)
		o->max_in = len;
	if (!o->discard)
		bytes_add(&o->got, d, len);
	o->taken += len;
	conn_input_consume(o->conn, len);
}

static void
owner_start(struct owner *o)
{
	const char *error;

	o->switch_on_drain = false;
	if (conn_zlib_start(o->conn, o->early, o->early_len, &o->zst,
	    &error) < 0)
		bail("conn_zlib_start: %s", error);
	o->started = true;
}

static void
owner_cb(struct conn *c, enum conn_event ev, void *ctx)
{
	struct owner *o = ctx;

	(void)c;
	o->ev[ev]++;
	if (ev == CONN_EV_INPUT && o->take)
		owner_take(o);
	if (ev == CONN_EV_DRAINED && o->switch_on_drain)
		owner_start(o);
	if (ev == CONN_EV_DRAINED && o->started)
		o->wire_at_drain = o->zst.out_wire;
	if (o->started && conn_zlib_memory(o->conn) > o->max_mem)
		o->max_mem = conn_zlib_memory(o->conn);
}

static void
owner_next_piece(void *ctx)
{
	struct owner *o = ctx;
	size_t n = o->src_len - o->src_pos;

	if (n == 0) {
		conn_set_output_drained_cb(o->conn, NULL, NULL);
		return;
	}
	if (n > o->piece)
		n = o->piece;
	if (conn_write(o->conn, o->src + o->src_pos, n) < 0)
		bail("conn_write refused");
	o->src_pos += n;
	if (conn_zlib_memory(o->conn) > o->max_mem)
		o->max_mem = conn_zlib_memory(o->conn);
}

static void
xsocketpair(int sv[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		bail("socketpair: %s", strerror(errno));
}

/* A conn already switched to deflate, and its peer. */
static void
setup(struct owner *o, struct peer *p, size_t input_max)
{
	const char *error;
	int sv[2];

	memset(o, 0, sizeof(*o));
	xsocketpair(sv);
	o->conn = conn_new(loop, sv[0], input_max, owner_cb, o);
	o->take = true;
	o->peer = p;
	if (conn_zlib_start(o->conn, NULL, 0, &o->zst, &error) < 0)
		bail("conn_zlib_start: %s", error);
	o->started = true;
	peer_init(p, sv[1]);
}

static void
teardown(struct owner *o, struct peer *p)
{
	conn_close(&o->conn);
	peer_free(p);
	bytes_free(&o->got);
}

/* Run until cond or about 20 s. */
#define RUN_UNTIL(cond) do {						\
	for (int i_ = 0; i_ < 2000 && !(cond); i_++)			\
		run_bounded(10);					\
} while (0)

/* --- tests --- */

static void
test_round_trip(size_t len)
{
	struct owner o;
	struct peer p;
	struct bytes pl = { 0 };
	struct conn_zlib_stats st;

	setup(&o, &p, 65536);
	make_payload(&pl, len, (uint32_t)len);
	/* In: the peer's commands of len bytes, flushed per 64 KiB. */
	for (size_t off = 0; off < len; off += 65536) {
		size_t n = len - off < 65536 ? len - off : 65536;

		peer_send(&p, pl.p + off, n, Z_SYNC_FLUSH);
	}
	if (len == 0)
		peer_send(&p, "", 0, Z_SYNC_FLUSH);
	RUN_UNTIL(o.got.len >= len && p.tx_pos == p.tx.len);
	run_bounded(5);
	is_int((long long)o.got.len, (long long)len,
	    "%zu bytes in: all inflated", len);
	ok(o.got.len == len && (len == 0 || memcmp(o.got.p, pl.p, len) == 0),
	    "%zu bytes in: the same bytes", len);
	is_int(o.ev[CONN_EV_ERROR], 0, "%zu bytes in: no error (%s)", len,
	    conn_error(o.conn) ? conn_error(o.conn) : "");
	/* Out: the same payload back, 100 KiB at a time on each drain. */
	o.src = pl.p;
	o.src_len = len;
	o.piece = 100 * 1024;
	conn_set_output_drained_cb(o.conn, owner_next_piece, &o);
	owner_next_piece(&o);
	RUN_UNTIL(p.rx.len >= len && o.src_pos == len &&
	    conn_output_size(o.conn) == 0);
	run_bounded(5);
	is_int((long long)p.rx.len, (long long)len,
	    "%zu bytes out: the peer inflated all", len);
	ok(p.rx.len == len && (len == 0 || memcmp(p.rx.p, pl.p, len) == 0),
	    "%zu bytes out: the same bytes", len);
	is_int(p.inflate_err, 0, "%zu bytes out: a valid raw deflate stream",
	    len);
	st = o.zst;
	ok(st.in_plain == len && st.out_plain == len &&
	    st.in_wire == p.tx.len && st.out_wire == p.wire_in,
	    "%zu bytes: stats in %llu/%llu out %llu/%llu", len,
	    (unsigned long long)st.in_wire, (unsigned long long)st.in_plain,
	    (unsigned long long)st.out_plain,
	    (unsigned long long)st.out_wire);
	if (len == 0)
		is_int((long long)st.out_wire, 0, "nothing written: nothing "
		    "on the wire");
	teardown(&o, &p);
	bytes_free(&pl);
}

/* Lines complete in what a reference inflater made of the same bytes. */
static int
count_lf(const struct bytes *b)
{
	int n = 0;

	for (size_t i = 0; i < b->len; i++)
		n += b->p[i] == '\n';
	return n;
}

static int
count_bar(const char *s)
{
	int n = 0;

	for (; *s != '\0'; s++)
		n += *s == '|';
	return n;
}

static void
test_bytewise(void)
{
	static const char cmd[] = "a1 SELECT INBOX\r\nb2 NOOP\r\n";
	struct owner o;
	struct peer p;
	struct bytes ref = { 0 };
	z_stream rz;
	unsigned char out[256];
	size_t i, wire;
	int mismatch = 0, steps_without = 0;

	setup(&o, &p, 1024);
	o.lines = true;
	p.reading = false;
	peer_update(&p);
	memset(&rz, 0, sizeof(rz));
	if (inflateInit2(&rz, -15) != Z_OK)
		bail("inflateInit2");
	/* Compress it, but send it ourselves, one byte per loop pass. */
	peer_send(&p, cmd, 17, Z_SYNC_FLUSH);
	peer_send(&p, cmd + 17, sizeof(cmd) - 1 - 17, Z_SYNC_FLUSH);
	io_remove(&p.io_w);
	wire = p.tx.len;
	for (i = 0; i < wire; i++) {
		if (write(p.fd, p.tx.p + i, 1) != 1)
			bail("write");
		run_bounded(2);
		rz.next_in = p.tx.p + i;
		rz.avail_in = 1;
		rz.next_out = out;
		rz.avail_out = sizeof(out);
		(void)inflate(&rz, Z_SYNC_FLUSH);
		bytes_add(&ref, out, sizeof(out) - rz.avail_out);
		if (count_bar(o.lines_text) != count_lf(&ref))
			mismatch++;
		if (count_lf(&ref) == 0)
			steps_without++;
	}
	diag("%zu compressed bytes for %zu; the first line was whole after "
	    "%d of them", wire, sizeof(cmd) - 1, steps_without + 1);
	ok(steps_without > 1, "the first line needed more than one byte");
	is_int(mismatch, 0, "after each byte, exactly the lines a reference "
	    "inflater had completed: none early, none late");
	is_string(o.lines_text, "a1 SELECT INBOX|b2 NOOP|",
	    "byte by byte: both lines, whole and in order");
	is_int(o.ev[CONN_EV_ERROR], 0, "no error");
	inflateEnd(&rz);
	bytes_free(&ref);
	teardown(&o, &p);
}

/* The socket takes little; the peer reads slowly. */
static void
test_slow_socket(void)
{
	struct owner o;
	struct peer p;
	struct bytes pl = { 0 };
	struct conn_zlib_stats st;
	int sndbuf = 4096, held_seen = 0;
	size_t len = 3 * 1024 * 1024;

	setup(&o, &p, 4096);
	(void)setsockopt(conn_fd(o.conn), SOL_SOCKET, SO_SNDBUF, &sndbuf,
	    sizeof(sndbuf));
	/* Random: compresses to more than the socket takes at once. */
	{
		uint32_t x = 7;

		while (pl.len < len) {
			unsigned char c;

			x = x * 1103515245u + 12345u;
			c = (unsigned char)(x >> 16);
			bytes_add(&pl, &c, 1);
		}
	}
	p.reading = false;
	peer_update(&p);
	/* One chunk: compressed, it is more than the socket takes. */
	o.src = pl.p;
	o.src_len = len;
	o.piece = CONN_ZLIB_CHUNK;
	conn_set_output_drained_cb(o.conn, owner_next_piece, &o);
	owner_next_piece(&o);
	run_bounded(50);
	st = o.zst;
	if (conn_output_size(o.conn) == 0 && st.out_plain == o.src_pos &&
	    st.out_wire < st.out_plain)
		held_seen = 1;
	ok(held_seen, "peer not reading: conn's queue handed over (%zu "
	    "left), compressed %llu of %zu, sent %llu: the rest is held",
	    conn_output_size(o.conn), (unsigned long long)st.out_plain,
	    o.src_pos, (unsigned long long)st.out_wire);
	is_int((long long)o.src_pos, CONN_ZLIB_CHUNK,
	    "no next piece: the drained callback waits for held bytes");
	o.piece = 256 * 1024;
	p.reading = true;
	p.read_max = 1000;
	peer_update(&p);
	RUN_UNTIL(p.rx.len >= len);
	run_bounded(20);
	is_int((long long)p.rx.len, (long long)len,
	    "slow reader got all %zu bytes", len);
	ok(p.rx.len == len && memcmp(p.rx.p, pl.p, len) == 0, "in order");
	st = o.zst;
	is_int((long long)st.out_wire, (long long)p.wire_in,
	    "every compressed byte sent was read");
	ok(o.max_mem < 200 * 1024, "memory never past 200 KiB (max %zu)",
	    o.max_mem);
	/* DRAINED, with no callback, comes only after the held bytes. */
	conn_set_output_drained_cb(o.conn, NULL, NULL);
	o.ev[CONN_EV_DRAINED] = 0;
	o.wire_at_drain = 0;
	p.reading = false;
	peer_update(&p);
	if (conn_write(o.conn, pl.p, 512 * 1024) < 0)
		bail("conn_write");
	run_bounded(50);
	is_int(o.ev[CONN_EV_DRAINED], 0, "no DRAINED while the transport "
	    "holds compressed bytes");
	p.reading = true;
	peer_update(&p);
	RUN_UNTIL(o.ev[CONN_EV_DRAINED] > 0 && p.rx.len >= len + 512 * 1024);
	run_bounded(20);
	is_int(o.ev[CONN_EV_DRAINED], 1, "then DRAINED once");
	is_int((long long)o.wire_at_drain, (long long)p.wire_in,
	    "at DRAINED every compressed byte had been sent");
	teardown(&o, &p);
	bytes_free(&pl);
}

static void
test_garbage(void)
{
	static const unsigned char junk[] = "\xff\xff\xff\xff garbage";
	struct owner o;
	struct peer p;

	setup(&o, &p, 1024);
	bytes_add(&p.tx, junk, sizeof(junk) - 1);
	peer_update(&p);
	RUN_UNTIL(o.ev[CONN_EV_ERROR] > 0);
	is_int(o.ev[CONN_EV_ERROR], 1, "garbage: CONN_EV_ERROR");
	ok(conn_error(o.conn) != NULL && strstr(conn_error(o.conn),
	    "read: COMPRESS: invalid deflate data from the peer (") != NULL,
	    "conn_error says so: %s", conn_error(o.conn));
	is_int((long long)o.got.len, 0, "nothing reached the owner");
	teardown(&o, &p);

	/* Valid data, then garbage: the first part still arrives. */
	setup(&o, &p, 1024);
	o.lines = true;
	peer_send(&p, "a NOOP\r\n", 8, Z_SYNC_FLUSH);
	bytes_add(&p.tx, "\x07\x07\x07", 3);
	peer_update(&p);
	RUN_UNTIL(o.ev[CONN_EV_ERROR] > 0);
	is_string(o.lines_text, "a NOOP|", "good bytes before it delivered");
	is_int(o.ev[CONN_EV_ERROR], 1, "then the error");
	teardown(&o, &p);
}

static void
test_peer_finish(void)
{
	struct owner o;
	struct peer p;

	setup(&o, &p, 1024);
	o.lines = true;
	peer_send(&p, "z LOGOUT\r\n", 10, Z_FINISH);
	RUN_UNTIL(o.ev[CONN_EV_CLOSED] > 0);
	is_string(o.lines_text, "z LOGOUT|", "data before the stream's end");
	is_int(o.ev[CONN_EV_CLOSED], 1, "a finished stream is EOF: CLOSED");
	is_int(o.ev[CONN_EV_ERROR], 0, "not an error");
	teardown(&o, &p);
}

/* COMPRESS as IMAP does it: the command line in plaintext, the OK, the
 * switch on DRAINED; the client's compressed bytes come right after its
 * command, some before the switch. */
static void
test_pipelined(void)
{
	static const char cmd[] = "a COMPRESS DEFLATE\r\n";
	struct owner o;
	struct peer p;
	struct bytes plain = { 0 };
	const char *error;
	int sv[2];

	memset(&o, 0, sizeof(o));
	xsocketpair(sv);
	o.conn = conn_new(loop, sv[0], 1024, owner_cb, &o);
	peer_init(&p, sv[1]);
	/* Plaintext command, then compressed "b", in one write. */
	bytes_add(&plain, cmd, sizeof(cmd) - 1);
	peer_send(&p, "b SELECT INBOX\r\n", 16, Z_SYNC_FLUSH);
	bytes_add(&plain, p.tx.p, p.tx.len);
	p.tx.len = p.tx_pos = 0;
	if (write(p.fd, plain.p, plain.len) != (ssize_t)plain.len)
		bail("write");
	RUN_UNTIL(o.ev[CONN_EV_INPUT] > 0);
	{
		const unsigned char *line;
		size_t len;

		ok(conn_read_line(o.conn, &line, &len) == 1 &&
		    len == sizeof(cmd) - 3 && memcmp(line, cmd, len) == 0,
		    "the COMPRESS line read in plaintext");
	}
	is_int(conn_zlib_start(o.conn, NULL, 0, &o.zst, &error), 0,
	    "nothing queued: could start now");
	conn_close(&o.conn);
	peer_free(&p);
	bytes_free(&plain);

	/* Again, the proper way: OK first, start on DRAINED. */
	memset(&o, 0, sizeof(o));
	xsocketpair(sv);
	o.conn = conn_new(loop, sv[0], 1024, owner_cb, &o);
	peer_init(&p, sv[1]);
	p.reading = false;
	peer_update(&p);
	bytes_add(&plain, cmd, sizeof(cmd) - 1);
	peer_send(&p, "b SELECT INBOX\r\n", 16, Z_SYNC_FLUSH);
	bytes_add(&plain, p.tx.p, p.tx.len);
	p.tx.len = p.tx_pos = 0;
	if (write(p.fd, plain.p, plain.len) != (ssize_t)plain.len)
		bail("write");
	RUN_UNTIL(o.ev[CONN_EV_INPUT] > 0);
	{
		const unsigned char *line;
		size_t len;

		(void)conn_read_line(o.conn, &line, &len);
	}
	(void)conn_write(o.conn, "a OK DEFLATE active\r\n", 21);
	is_int(conn_zlib_start(o.conn, NULL, 0, &o.zst, &error), -1,
	    "refused while the OK is queued");
	ok(strstr(error, "queued") != NULL, "error: %s", error);
	o.switch_on_drain = true;
	o.lines = true;
	o.take = true;
	RUN_UNTIL(o.lines_text[0] != '\0');
	is_string(o.lines_text, "b SELECT INBOX|",
	    "compressed bytes buffered before the switch were inflated");
	peer_send(&p, "c NOOP\r\n", 8, Z_SYNC_FLUSH);
	RUN_UNTIL(strlen(o.lines_text) > 15);
	is_string(o.lines_text, "b SELECT INBOX|c NOOP|",
	    "and the stream goes on from the fd");
	{
		char buf[32];
		struct pollfd pfd = { p.fd, POLLIN, 0 };
		ssize_t n;

		(void)poll(&pfd, 1, 1000);
		n = read(p.fd, buf, 21);
		ok(n == 21 && memcmp(buf, "a OK DEFLATE active\r\n", 21) == 0,
		    "the OK came in plaintext");
	}
	is_int(conn_zlib_start(o.conn, NULL, 0, &o.zst, &error), -1,
	    "COMPRESS twice: refused");
	diag("%s", error);
	conn_close(&o.conn);
	peer_free(&p);
	bytes_free(&plain);

	/* Early bytes (the caller's own buffer), then the conn's, then the
	 * fd: inflated in that order. */
	memset(&o, 0, sizeof(o));
	xsocketpair(sv);
	o.conn = conn_new(loop, sv[0], 1024, owner_cb, &o);
	peer_init(&p, sv[1]);
	p.reading = false;
	peer_update(&p);
	peer_send(&p, "e1 NOOP\r\ne2 NOOP\r\ne3 NOOP\r\n", 27, Z_SYNC_FLUSH);
	io_remove(&p.io_w);
	{
		size_t third = p.tx.len / 3;

		o.early = p.tx.p;
		o.early_len = third;
		if (write(p.fd, p.tx.p + third, third) != (ssize_t)third)
			bail("write");
		o.take = false;
		RUN_UNTIL(o.ev[CONN_EV_INPUT] > 0);
		owner_start(&o);
		o.take = true;
		o.lines = true;
		run_bounded(20);
		if (write(p.fd, p.tx.p + 2 * third, p.tx.len - 2 * third) !=
		    (ssize_t)(p.tx.len - 2 * third))
			bail("write");
	}
	RUN_UNTIL(strlen(o.lines_text) >= 24);
	is_string(o.lines_text, "e1 NOOP|e2 NOOP|e3 NOOP|",
	    "early bytes, buffered bytes, then the fd, in order");
	conn_close(&o.conn);
	peer_free(&p);
}

/* LOGOUT: the last answer, compressed, then close after flush. The
 * transport is freed when the fd closes, before conn_close(): the counts
 * (the caller's) stay, and the functions that find the transport from
 * the conn find none (ASan checks that nothing touches freed state). */
static void
test_close_after_flush(void)
{
	static const char bye[] = "* BYE Logging out\r\nz OK LOGOUT\r\n";
	struct owner o;
	struct peer p;

	setup(&o, &p, 1024);
	o.take = false;
	if (conn_write(o.conn, bye, sizeof(bye) - 1) < 0)
		bail("conn_write");
	conn_close_after_flush(o.conn);
	RUN_UNTIL(o.ev[CONN_EV_CLOSED] > 0);
	run_bounded(20);
	is_int(o.ev[CONN_EV_CLOSED], 1, "close after flush: CLOSED");
	is_mem(p.rx.p, p.rx.len, bye, sizeof(bye) - 1,
	    "the last answer arrived compressed and whole");
	is_int((long long)o.zst.out_plain, (long long)sizeof(bye) - 1,
	    "the counts outlive the transport");
	is_int((long long)o.zst.out_wire, (long long)p.wire_in,
	    "every compressed byte counted");
	is_int((long long)conn_zlib_memory(o.conn), 0,
	    "no transport once the fd is closed");
	conn_zlib_release(o.conn);
	ok(1, "release after the close: nothing to do, no crash");
	teardown(&o, &p);
}

/* 64 MB of zeros compress to 64 KiB: the conn must not inflate more
 * than its input buffer holds, however little the peer sent. */
static void
test_bomb(void)
{
	struct owner o;
	struct peer p;
	unsigned char *zeros = xcalloc(1, 1024 * 1024);
	size_t n;

	setup(&o, &p, 8192);
	o.take = false;
	for (int i = 0; i < 64; i++)
		peer_send(&p, zeros, 1024 * 1024, Z_NO_FLUSH);
	peer_send(&p, "", 0, Z_SYNC_FLUSH);
	diag("bomb: %zu compressed bytes for 64 MB", p.tx.len);
	run_bounded(100);
	(void)conn_input_peek(o.conn, &n);
	is_int((long long)n, 8192, "input buffer full at its limit");
	ok(conn_zlib_memory(o.conn) < 48 * 1024,
	    "transport memory bounded while the owner does not read (%zu)",
	    conn_zlib_memory(o.conn));
	/* Take it all, a buffer at a time: memory never grows. */
	o.max_mem = 0;
	o.take = true;
	o.discard = true;
	owner_take(&o);
	RUN_UNTIL(o.taken >= 64 * 1024 * 1024);
	is_int((long long)o.taken, 64 * 1024 * 1024,
	    "64 MB inflated, a buffer at a time");
	ok(o.max_in <= 8192, "never more than the input limit at once (%zu)",
	    o.max_in);
	ok(o.max_mem < 48 * 1024, "max transport memory %zu bytes",
	    o.max_mem);
	teardown(&o, &p);
	free(zeros);
}

static void
test_memory_release(void)
{
	struct owner o;
	struct peer p;
	struct bytes pl = { 0 };
	size_t fresh, active, quiet, again;

	setup(&o, &p, 65536);
	fresh = conn_zlib_memory(o.conn);
	make_payload(&pl, 200000, 3);
	peer_send(&p, pl.p, 1000, Z_SYNC_FLUSH);
	RUN_UNTIL(o.got.len >= 1000);
	if (conn_write(o.conn, pl.p, 100000) < 0)
		bail("conn_write");
	RUN_UNTIL(p.rx.len >= 100000);
	active = conn_zlib_memory(o.conn);
	conn_zlib_release(o.conn);
	quiet = conn_zlib_memory(o.conn);
	diag("memory per session: %zu bytes at the start, %zu with both "
	    "streams in use, %zu when quiet (deflater released)", fresh,
	    active, quiet);
	ok(quiet < 41 * 1024, "quiet session under 41 KiB (%zu)", quiet);
	ok(active > quiet + 100 * 1024 && active < 140 * 1024 + quiet,
	    "the deflater is about 134 KiB (%zu)", active - quiet);
	/* A new deflater mid-stream: the peer's one inflater goes on. */
	if (conn_write(o.conn, pl.p + 100000, 100000) < 0)
		bail("conn_write");
	RUN_UNTIL(p.rx.len >= 200000);
	again = conn_zlib_memory(o.conn);
	is_int((long long)p.rx.len, 200000, "all bytes after the release");
	ok(p.rx.len == 200000 && memcmp(p.rx.p, pl.p, 200000) == 0 &&
	    p.inflate_err == 0, "one valid stream across the new deflater");
	is_int((long long)again, (long long)active,
	    "the deflater is back while in use");
	conn_zlib_release(o.conn);
	conn_zlib_release(o.conn);
	is_int((long long)conn_zlib_memory(o.conn), (long long)quiet,
	    "released again (twice is harmless)");
	teardown(&o, &p);
	bytes_free(&pl);
}

/* A write from outside any conn callback (a timer here, inotify in the
 * mail process), the way IDLE's EXISTS comes. */
struct late_write {
	struct conn *conn;
	const char *text;
};

static void
late_write_cb(void *ctx)
{
	struct late_write *w = ctx;

	if (conn_write(w->conn, w->text, strlen(w->text)) < 0)
		bail("conn_write refused");
}

/*
 * IDLE on a quiet session: the deflater is released, then an untagged
 * line is written from a timer while nothing else happens (the peer
 * sends nothing, so no input event can push it out). It must reach the
 * peer by itself, each time, inflating as one stream. Then the same
 * with the release done while compressed bytes are still held (the peer
 * not reading): the held bytes and the next write both arrive, in order.
 */
static void
test_release_idle_write(void)
{
	static const char *const lines[] = { "* 4 EXISTS\r\n",
	    "* 5 EXISTS\r\n", "* 6 EXISTS\r\n" };
	struct owner o;
	struct peer p;
	struct bytes want = { 0 }, pl = { 0 };
	struct late_write w;
	struct timeout *to;
	size_t quiet;
	int inputs;

	setup(&o, &p, 4096);
	if (conn_write(o.conn, "+ idling\r\n", 10) < 0)
		bail("conn_write");
	bytes_add(&want, "+ idling\r\n", 10);
	RUN_UNTIL(p.rx.len >= want.len);
	inputs = o.ev[CONN_EV_INPUT];
	for (size_t i = 0; i < 3; i++) {
		conn_zlib_release(o.conn);
		quiet = conn_zlib_memory(o.conn);
		ok(quiet < 41 * 1024, "write %zu: released first (%zu bytes)",
		    i + 1, quiet);
		w.conn = o.conn;
		w.text = lines[i];
		to = timeout_add(loop, 1, false, late_write_cb, &w);
		bytes_add(&want, lines[i], strlen(lines[i]));
		RUN_UNTIL(p.rx.len >= want.len);
		timeout_remove(&to);
		is_mem(p.rx.p, p.rx.len, want.p, want.len, "write %zu after "
		    "the release: arrived by itself, whole", i + 1);
		is_int(conn_output_size(o.conn), 0, "write %zu: nothing left "
		    "queued", i + 1);
	}
	is_int(o.ev[CONN_EV_INPUT], inputs, "no input event helped");
	is_int(p.inflate_err, 0, "one valid stream across three deflaters");
	teardown(&o, &p);
	bytes_free(&want);

	/* Released with compressed bytes held: they are not zlib's. */
	setup(&o, &p, 4096);
	{
		int sndbuf = 4096;

		(void)setsockopt(conn_fd(o.conn), SOL_SOCKET, SO_SNDBUF,
		    &sndbuf, sizeof(sndbuf));
	}
	p.reading = false;
	peer_update(&p);
	{
		uint32_t x = 11;

		while (pl.len < 200000) {
			unsigned char c;

			x = x * 1103515245u + 12345u;
			c = (unsigned char)(x >> 16);
			bytes_add(&pl, &c, 1);
		}
	}
	/* One write, one deflate call, more than the socket takes. */
	if (conn_write(o.conn, pl.p, 16000) < 0)
		bail("conn_write");
	run_bounded(20);
	/* Random bytes do not shrink: less than 16000 sent means held. */
	ok(o.zst.out_plain == 16000 && o.zst.out_wire < 16000 &&
	    conn_output_size(o.conn) == 0, "the peer not reading: compressed "
	    "bytes held (%llu of 16000 sent; %llu given, %zu queued)",
	    (unsigned long long)o.zst.out_wire,
	    (unsigned long long)o.zst.out_plain, conn_output_size(o.conn));
	conn_zlib_release(o.conn);
	w.conn = o.conn;
	w.text = "* 7 EXISTS\r\n";
	to = timeout_add(loop, 1, false, late_write_cb, &w);
	run_bounded(20);
	p.reading = true;
	peer_update(&p);
	RUN_UNTIL(p.rx.len >= 16000 + 12);
	timeout_remove(&to);
	ok(p.rx.len == 16000 + 12 && memcmp(p.rx.p, pl.p, 16000) == 0 &&
	    memcmp(p.rx.p + 16000, "* 7 EXISTS\r\n", 12) == 0,
	    "released while holding output: it all arrives, in order (%zu)",
	    p.rx.len);
	is_int(p.inflate_err, 0, "still one valid stream");
	teardown(&o, &p);
	bytes_free(&pl);
}

int
main(void)
{
	static const size_t sizes[] = { 0, 1, 100, 65536, 6 * 1024 * 1024 };

	log_open("conn-zlib-test", LOG_DEST_STDERR);
	loop = ioloop_new();
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		test_round_trip(sizes[i]);
	test_bytewise();
	test_slow_socket();
	test_garbage();
	test_peer_finish();
	test_pipelined();
	test_close_after_flush();
	test_bomb();
	test_memory_release();
	test_release_idle_write();
	ioloop_free(&loop);
	return done_testing();
}
