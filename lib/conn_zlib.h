/*
 * conn_zlib.h: raw deflate (RFC 1951, zlib's windowBits -15) as the
 * transport of a buffered connection (lib/conn), for IMAP COMPRESS=DEFLATE
 * (RFC 4978). After conn_zlib_start() the owner keeps using conn_write,
 * conn_input_peek and the events as before; the bytes on the wire are
 * deflate, one stream each way, over the plain socket (in loftd the mail
 * process's socket, which for TLS clients is the relay to the login
 * process, so compression ends up inside TLS).
 *
 * Output: every conn write ends with Z_SYNC_FLUSH, so each response
 * reaches the peer whole (RFC 4978 section 4). Compressed bytes the socket
 * does not take are kept here (at most about one chunk's worth: new
 * output is compressed only once they are out) and the conn sends them
 * before it reports CONN_EV_DRAINED (its wpending op).
 *
 * Input: at most what the conn asks for per read is inflated, and the
 * conn asks only while its bounded input buffer has room, so a
 * decompression bomb costs no memory; compressed bytes not yet inflated
 * stay here (at most one recv's worth, or what conn handed over at the
 * switch) and count as pending.
 *
 * Memory (zlib 1.2.13, counted by conn_zlib_memory() in
 * t/unit/conn_zlib.c): the inflater needs the peer's full 32 KiB window
 * (the peer chooses; RFC 4978 clients use 15 bits) plus its 7 KiB
 * state for the whole session: 40,288 bytes with ours. The deflater,
 * 137,024 bytes with the parameters below, exists only while there is
 * output to compress: conn_zlib_release() ends it when the session is
 * quiet and the next write starts a fresh one (see conn_zlib.c for why
 * the stream stays valid). A quiet compressed session thus holds 39.3
 * KiB (30 to 41 KiB more RSS than a plaintext one in loftd's mail
 * process, t/imap_compress.t), a busy one 173 KiB.
 *
 * Not thread-safe: one process, one thread (shared scratch buffers).
 */
#ifndef LOFT_CONN_ZLIB_H
#define LOFT_CONN_ZLIB_H

#include <stddef.h>
#include <stdint.h>

struct conn;

/*
 * The deflater's parameters. Level 6 is zlib's default and Dovecot's
 * imap_compress_deflate_level; on mail text level 4 sends 4% more bytes
 * and level 1 18% more, for two to three times less CPU; level 6 still
 * compresses text at about 35 MB/s on one core here (FETCH lists at
 * 100, base64 at 30), faster than the links compression is for. The
 * window and memLevel set the memory, (1 << (bits + 2)) + (1
 * << (mem + 9)) bytes: 15/8 (zlib's default, Dovecot's) is 256 KiB, 14/7
 * is 128 KiB. Measured at level 6 with a sync flush per 16 KiB, on text
 * bodies (Debian changelogs, t/data's messages), 14/7 sends 0.290 of the
 * bytes against 0.275 for 15/8 (5% more), and the same on FETCH ENVELOPE
 * lists (0.069) and base64 attachments (0.76); 13/6 (64 KiB) falls to
 * 0.318 on text (16% more). A deflater smaller than the peer's inflater
 * is always readable: the peer keeps its 32 KiB window anyway. Since the
 * deflater is released while a session is quiet, it is paid only by
 * sessions that are sending, and half of Dovecot's there.
 */
#define CONN_ZLIB_LEVEL		6
#define CONN_ZLIB_WINDOW_BITS	14
#define CONN_ZLIB_MEM_LEVEL	7
/* Plaintext compressed per deflate() call, and what one recv(2) asks. */
#define CONN_ZLIB_CHUNK		16384
#define CONN_ZLIB_RECV		4096

struct conn_zlib_stats {
	uint64_t in_wire;	/* compressed bytes received */
	uint64_t in_plain;	/* bytes they inflated to (given to conn) */
	uint64_t out_plain;	/* bytes conn gave to be compressed */
	uint64_t out_wire;	/* compressed bytes sent */
};

/*
 * conn_zlib_start: from now on conn (whose fd must be a socket: recv and
 * send with MSG_NOSIGNAL) speaks raw deflate both ways, through
 * conn_push_transport(). The peer's next bytes are compressed, and so are
 * early[0..early_len) (bytes the caller received on this connection
 * after the COMPRESS command but keeps outside conn: loftd's mail process
 * holds what the client pipelined through the login process) and then
 * whatever conn has buffered (conn_input_peek): both are inflated, in
 * that order, before anything read from the fd. Call it once the OK has
 * been sent (on CONN_EV_DRAINED): output still queued is refused.
 *
 * stats, if not NULL, is the caller's: zeroed here and counted into as
 * bytes move, so the counts outlive the transport (which conn frees when
 * its fd closes, possibly before conn_close()); it must stay valid until
 * conn_close().
 *
 * A peer sending what does not inflate is CONN_EV_ERROR, conn_error()
 * "read: COMPRESS: invalid deflate data from the peer (...zlib's
 * reason...)"; a peer ending its deflate stream (Z_FINISH) is EOF,
 * CONN_EV_CLOSED.
 *
 * Returns 0, or -1 with *error_r (static, valid until the next call into
 * this module) when conn is dead, closed, has output queued, or has a
 * transport other than the plain one (COMPRESS twice, or over TLS in
 * this process); conn is unchanged then.
 */
int conn_zlib_start(struct conn *conn, const unsigned char *early,
    size_t early_len, struct conn_zlib_stats *stats, const char **error_r);

/*
 * conn_zlib_release: the session is quiet: free conn's deflater (about
 * 134 KiB) if everything given to it has been flushed; the next write
 * makes a new one, which costs the dictionary (the next response
 * compresses a little worse) and the allocation. The inflater stays: the
 * peer's next bytes may refer back 32 KiB into what it sent before. Safe
 * at any time; nothing happens unless conn speaks deflate.
 */
void conn_zlib_release(struct conn *conn);

/* conn_zlib_memory: bytes conn's deflate transport holds now: zlib's
 * allocations for both streams (as zlib asked for them), the unsent
 * output, the input not yet inflated, and the state itself; malloc's own
 * overhead excluded. 0 unless conn speaks deflate. */
size_t conn_zlib_memory(const struct conn *conn);

#endif
