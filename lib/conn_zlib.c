/*
 * conn_zlib.c: raw deflate as a lib/conn transport (see conn_zlib.h), for
 * IMAP COMPRESS=DEFLATE. One z_stream each way over the plain socket:
 * reads recv(2) compressed bytes and inflate them into the conn's buffer;
 * writes deflate the conn's queue in chunks, the last one with
 * Z_SYNC_FLUSH, and send the result, keeping what the socket refuses.
 *
 * Trusts nothing from the peer: its bytes go to zlib's inflate, which
 * checks them and writes at most the room conn gives per read (bounded by
 * the conn's input buffer, so a decompression bomb cannot grow memory);
 * what inflate rejects is a connection error. The compressed input held
 * here is at most one recv's worth plus what conn handed over at the
 * switch (bounded by its own buffers).
 *
 * Releasing the deflater mid-stream: a Z_SYNC_FLUSH ends the current
 * block, adds an empty stored block and leaves the output byte-aligned,
 * and raw deflate has no header, trailer or stream-wide state: a stream
 * is just blocks, and only the one with BFINAL ends it (RFC 1951 3.2.3).
 * So once everything is flushed, the deflater can be freed and a new one
 * made later; its blocks follow the old ones and refer back only to what
 * it sent itself, which the peer's inflater has in its window. pigz joins
 * independently compressed deflate blocks the same way. We never send
 * Z_FINISH, so no block is final.
 */
#include "config.h"
#include <sys/types.h>
#include <sys/socket.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define ZLIB_CONST		/* next_in is const */
#include <zlib.h>
#include "compat/compat.h"
#include "conn.h"
#include "conn_zlib.h"
#include "log.h"
#include "xmalloc.h"

/* The inflater's window: the peer picks its own, and RFC 4978 clients
 * (and zlib's default) use 32 KiB; a smaller one would fail on their
 * back-references. */
#define CONN_ZLIB_INFLATE_BITS	15
/* zlib's allocations carry their size before them for the accounting;
 * max_align_t keeps what zlib gets aligned. */
#define CONN_ZLIB_HDR		sizeof(max_align_t)

struct conn_zlib {
	struct conn *conn;		/* not owned: conn owns us */
	z_stream in;			/* inflater, for the whole session */
	z_stream out;			/* deflater, while out_on */
	bool out_on;
	bool out_synced;		/* all given to deflate was flushed */
	bool in_more;			/* the last inflate filled the buffer:
					   zlib may hold more output */
	bool in_end;			/* the peer ended its stream */
	bool in_bad;			/* inflate failed: no more reading */
	const char *in_bad_msg;		/* zlib's static reason */
	unsigned char *rbuf;		/* owned: compressed input not inflated
					   yet; NULL when rlen is 0 */
	size_t rpos, rlen, rcap;
	unsigned char *wbuf;		/* owned: compressed output not sent;
					   NULL when wlen is 0 */
	size_t wpos, wlen, wcap;
	size_t zmem;			/* bytes zlib holds (both streams) */
	struct conn_zlib_stats *st;	/* the caller's, or own */
	struct conn_zlib_stats own;
};

/* One process, one thread: recv and deflate go through these, and only
 * leftovers are copied to the session's own buffers, so that a quiet
 * session holds none. */
static unsigned char conn_zlib_rscratch[CONN_ZLIB_RECV];
static unsigned char conn_zlib_wscratch[CONN_ZLIB_CHUNK];
static char conn_zlib_error[256];

/* --- zlib's memory, counted per session --- */

static voidpf
conn_zlib_alloc(voidpf opaque, uInt items, uInt size)
{
	struct conn_zlib *z = opaque;
	size_t n;
	unsigned char *p;

	/* @UNSAFE: items * size + header, checked against SIZE_MAX. */
	if (size != 0 && items > (SIZE_MAX - CONN_ZLIB_HDR) / size)
		return Z_NULL;
	n = (size_t)items * size;
	p = xmalloc(n + CONN_ZLIB_HDR);
	memcpy(p, &n, sizeof(n));
	z->zmem += n;
	return p + CONN_ZLIB_HDR;
}

static void
conn_zlib_free(voidpf opaque, voidpf ptr)
{
	struct conn_zlib *z = opaque;
	unsigned char *p = (unsigned char *)ptr - CONN_ZLIB_HDR;
	size_t n;

	memcpy(&n, p, sizeof(n));
	z->zmem -= n;
	free(p);
}

static void
conn_zlib_stream_init(struct conn_zlib *z, z_stream *strm)
{
	memset(strm, 0, sizeof(*strm));
	strm->zalloc = conn_zlib_alloc;
	strm->zfree = conn_zlib_free;
	strm->opaque = z;
}

/* --- input --- */

/* Keep len more compressed bytes after those held. */
static void
conn_zlib_rhold(struct conn_zlib *z, const unsigned char *data, size_t len)
{
	unsigned char *p;

	if (len == 0)
		return;
	/* Both lengths are of bounded buffers (ours, conn's): no overflow. */
	p = xmalloc(z->rlen + len);
	if (z->rlen > 0)
		memcpy(p, z->rbuf + z->rpos, z->rlen);
	memcpy(p + z->rlen, data, len);
	free(z->rbuf);
	z->rbuf = p;
	z->rpos = 0;
	z->rlen += len;
	z->rcap = z->rlen;
}

static void
conn_zlib_rconsume(struct conn_zlib *z, size_t n)
{
	if (n == 0)
		return;
	z->rpos += n;
	z->rlen -= n;
	if (z->rlen == 0) {
		free(z->rbuf);
		z->rbuf = NULL;
		z->rpos = z->rcap = 0;
	}
}

static ssize_t
conn_zlib_bad_input(struct conn_zlib *z)
{
	snprintf(conn_zlib_error, sizeof(conn_zlib_error),
	    "COMPRESS: invalid deflate data from the peer (%s)",
	    z->in_bad_msg);
	conn_set_error(z->conn, conn_zlib_error);
	errno = EPROTO;
	return -1;
}

/* Inflate in[0..len) into buf; *used_r: input taken. Returns the bytes
 * produced (0: more input needed, or the stream ended), or -1. */
static ssize_t
conn_zlib_inflate(struct conn_zlib *z, const unsigned char *in, size_t len,
    unsigned char *buf, size_t size, size_t *used_r)
{
	uInt ilen = len > UINT_MAX ? UINT_MAX : (uInt)len;
	uInt osize = size > UINT_MAX ? UINT_MAX : (uInt)size;
	int r;

	z->in.next_in = in;
	z->in.avail_in = ilen;
	z->in.next_out = buf;
	z->in.avail_out = osize;
	r = inflate(&z->in, Z_SYNC_FLUSH);
	*used_r = ilen - z->in.avail_in;
	z->in_more = z->in.avail_out == 0;
	switch (r) {
	case Z_OK:
	case Z_BUF_ERROR:	/* no progress: wants more input */
		break;
	case Z_STREAM_END:
		z->in_end = true;
		break;
	case Z_MEM_ERROR:
		log_fatal("conn_zlib: inflate: out of memory");
	default:		/* Z_DATA_ERROR, Z_NEED_DICT, Z_STREAM_ERROR */
		/* What inflated before the bad bytes still counts; the
		 * error is the next read's. */
		z->in_bad = true;
		z->in_bad_msg = z->in.msg != NULL ? z->in.msg :
		    "inflate failed";
		if (osize == z->in.avail_out)
			return conn_zlib_bad_input(z);
		break;
	}
	z->st->in_plain += osize - z->in.avail_out;
	return (ssize_t)(osize - z->in.avail_out);
}

static ssize_t
conn_zlib_read(void *tctx, int fd, unsigned char *buf, size_t size,
    enum conn_want *want_r)
{
	struct conn_zlib *z = tctx;
	size_t used;
	ssize_t n, got;

	*want_r = CONN_WANT_READ;
	if (z->in_bad)
		return conn_zlib_bad_input(z);
	if (z->in_end)
		return 0;
	if (z->rlen > 0 || z->in_more) {
		n = conn_zlib_inflate(z, z->rlen > 0 ? z->rbuf + z->rpos :
		    NULL, z->rlen, buf, size, &used);
		conn_zlib_rconsume(z, used);
		/* Nothing produced means inflate took all that was held
		 * (it stops early only when the output is full): read. */
		if (n != 0 || z->in_end)
			return n;
	}
	for (;;) {
		got = recv(fd, conn_zlib_rscratch, sizeof(conn_zlib_rscratch),
		    0);
		if (got <= 0)
			return got;
		z->st->in_wire += (uint64_t)got;
		n = conn_zlib_inflate(z, conn_zlib_rscratch, (size_t)got, buf,
		    size, &used);
		if (n < 0)
			return n;
		if (z->in_end)
			return n;	/* bytes after the end are dropped */
		conn_zlib_rhold(z, conn_zlib_rscratch + used,
		    (size_t)got - used);
		if (n > 0)
			return n;
	}
}

/* Bytes a read can return without the fd: held input, output zlib may
 * hold, or the EOF of a stream the peer ended, or its error. */
static size_t
conn_zlib_pending(void *tctx)
{
	struct conn_zlib *z = tctx;

	return z->rlen + (z->in_more || z->in_end || z->in_bad ? 1 : 0);
}

static void
conn_zlib_unread(void *tctx, const unsigned char *data, size_t len)
{
	struct conn_zlib *z = tctx;

	z->st->in_wire += len;
	conn_zlib_rhold(z, data, len);
}

/* --- output --- */

/* Send what is held: 0 when all is out, else -1 with errno (EAGAIN: some
 * is left; the socket is full). */
static int
conn_zlib_send_held(struct conn_zlib *z, int fd)
{
	ssize_t n;

	if (z->wlen == 0)
		return 0;
	n = send(fd, z->wbuf + z->wpos, z->wlen, MSG_NOSIGNAL);
	if (n < 0)
		return -1;
	z->st->out_wire += (uint64_t)n;
	z->wpos += (size_t)n;
	z->wlen -= (size_t)n;
	if (z->wlen > 0) {
		errno = EAGAIN;
		return -1;
	}
	free(z->wbuf);
	z->wbuf = NULL;
	z->wpos = z->wcap = 0;
	return 0;
}

/* Keep len more bytes to send after those held. */
static void
conn_zlib_whold(struct conn_zlib *z, const unsigned char *data, size_t len)
{
	size_t cap;

	if (z->wpos > 0 && z->wcap - z->wpos - z->wlen < len) {
		memmove(z->wbuf, z->wbuf + z->wpos, z->wlen);
		z->wpos = 0;
	}
	if (z->wcap - z->wlen < len) {
		/* Bounded: one deflate call's output, see conn_zlib_deflate. */
		cap = z->wlen + len;
		if (cap < 2 * z->wcap)
			cap = 2 * z->wcap;
		z->wbuf = xrealloc(z->wbuf, cap);
		z->wcap = cap;
	}
	memcpy(z->wbuf + z->wpos + z->wlen, data, len);
	z->wlen += len;
}

/* Send data, or keep what the socket does not take. -1 with errno only
 * for a fatal error. */
static int
conn_zlib_emit(struct conn_zlib *z, int fd, const unsigned char *data,
    size_t len)
{
	ssize_t n = 0;

	if (z->wlen == 0) {
		n = send(fd, data, len, MSG_NOSIGNAL);
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR)
			return -1;
		if (n < 0)
			n = 0;
		z->st->out_wire += (uint64_t)n;
	}
	if ((size_t)n < len)
		conn_zlib_whold(z, data + n, len - (size_t)n);
	return 0;
}

static void
conn_zlib_deflate_init(struct conn_zlib *z)
{
	conn_zlib_stream_init(z, &z->out);
	if (deflateInit2(&z->out, CONN_ZLIB_LEVEL, Z_DEFLATED,
	    -CONN_ZLIB_WINDOW_BITS, CONN_ZLIB_MEM_LEVEL,
	    Z_DEFAULT_STRATEGY) != Z_OK)
		log_panic("conn_zlib: deflateInit2: %s", z->out.msg != NULL ?
		    z->out.msg : "failed");
	z->out_on = true;
	z->out_synced = true;
}

/*
 * Compress in[0..len) (len <= CONN_ZLIB_CHUNK), flushed if sync, and send
 * or keep the output. Called only with nothing held, so what is kept is
 * one call's output: the chunk's compressed size plus what zlib had
 * pending from earlier unflushed chunks (at most one block, which
 * memLevel bounds), i.e. a few tens of KiB.
 */
static int
conn_zlib_deflate(struct conn_zlib *z, int fd, const unsigned char *in,
    size_t len, bool sync)
{
	size_t produced;

	z->out.next_in = in;
	z->out.avail_in = (uInt)len;
	do {
		z->out.next_out = conn_zlib_wscratch;
		z->out.avail_out = sizeof(conn_zlib_wscratch);
		if (deflate(&z->out, sync ? Z_SYNC_FLUSH : Z_NO_FLUSH) ==
		    Z_STREAM_ERROR)
			log_panic("conn_zlib: deflate: stream error");
		produced = sizeof(conn_zlib_wscratch) - z->out.avail_out;
		if (produced > 0 && conn_zlib_emit(z, fd, conn_zlib_wscratch,
		    produced) < 0)
			return -1;
	} while (z->out.avail_out == 0);
	/* Room left over: all input taken and, if sync, flushed. */
	z->out_synced = sync;
	z->st->out_plain += len;
	return 0;
}

static ssize_t
conn_zlib_write(void *tctx, int fd, const unsigned char *buf, size_t size,
    enum conn_want *want_r)
{
	struct conn_zlib *z = tctx;
	size_t taken = 0, chunk;

	*want_r = CONN_WANT_WRITE;
	if (conn_zlib_send_held(z, fd) < 0)
		return -1;
	if (size == 0)
		return 0;
	if (!z->out_on)
		conn_zlib_deflate_init(z);
	/* New output only while nothing is held: that bounds what we keep. */
	while (taken < size && z->wlen == 0) {
		chunk = size - taken < CONN_ZLIB_CHUNK ? size - taken :
		    CONN_ZLIB_CHUNK;
		if (conn_zlib_deflate(z, fd, buf + taken, chunk,
		    taken + chunk == size) < 0)
			return -1;
		taken += chunk;
	}
	return (ssize_t)taken;
}

static size_t
conn_zlib_wpending(void *tctx)
{
	return ((struct conn_zlib *)tctx)->wlen;
}

static void
conn_zlib_destroy(struct conn_zlib *z)
{
	(void)inflateEnd(&z->in);
	if (z->out_on)
		(void)deflateEnd(&z->out);
	free(z->rbuf);
	free(z->wbuf);
	free(z);
}

static void
conn_zlib_close(void *tctx, int fd)
{
	(void)fd;
	conn_zlib_destroy(tctx);
}

static const struct conn_transport conn_zlib_ops = {
	conn_zlib_read, conn_zlib_write, conn_zlib_pending, conn_zlib_close,
	conn_zlib_wpending, conn_zlib_unread
};

/* --- public --- */

static int
conn_zlib_fail(const char **error_r, const char *what)
{
	strlcpy(conn_zlib_error, what, sizeof(conn_zlib_error));
	*error_r = conn_zlib_error;
	return -1;
}

int
conn_zlib_start(struct conn *conn, const unsigned char *early,
    size_t early_len, struct conn_zlib_stats *stats, const char **error_r)
{
	struct conn_zlib *z;

	if (conn_fd(conn) < 0)
		return conn_zlib_fail(error_r, "COMPRESS: the connection is "
		    "closed");
	if (conn_output_size(conn) > 0)
		return conn_zlib_fail(error_r, "COMPRESS: output is still "
		    "queued (start once the OK has been sent)");
	z = xcalloc(1, sizeof(*z));
	z->conn = conn;
	z->out_synced = true;
	z->st = stats != NULL ? stats : &z->own;
	memset(z->st, 0, sizeof(*z->st));
	conn_zlib_stream_init(z, &z->in);
	if (inflateInit2(&z->in, -CONN_ZLIB_INFLATE_BITS) != Z_OK)
		log_panic("conn_zlib: inflateInit2: %s", z->in.msg != NULL ?
		    z->in.msg : "failed");
	conn_zlib_unread(z, early, early_len);
	if (conn_push_transport(conn, &conn_zlib_ops, z) < 0) {
		conn_zlib_destroy(z);
		return conn_zlib_fail(error_r, "COMPRESS: the connection "
		    "cannot switch (failed, output held, or another transport "
		    "such as TLS or COMPRESS is active)");
	}
	return 0;
}

/* conn's deflate state, or NULL. */
static struct conn_zlib *
conn_zlib_get(const struct conn *conn)
{
	void *tctx;

	return conn_get_transport(conn, &tctx) == &conn_zlib_ops ? tctx :
	    NULL;
}

void
conn_zlib_release(struct conn *conn)
{
	struct conn_zlib *z = conn_zlib_get(conn);

	if (z == NULL || !z->out_on || !z->out_synced)
		return;
	/* Z_DATA_ERROR here only says the stream was not finished. */
	(void)deflateEnd(&z->out);
	z->out_on = false;
}

size_t
conn_zlib_memory(const struct conn *conn)
{
	struct conn_zlib *z = conn_zlib_get(conn);

	return z == NULL ? 0 : sizeof(*z) + z->zmem + z->rcap + z->wcap;
}
