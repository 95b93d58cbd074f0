/*
 * conn.h: a buffered, non-blocking connection on the ioloop (OpenSMTPD's
 * iobuf/ioev, Dovecot's istream/ostream pair cut down). The connection
 * owns its fd, reads into a bounded input buffer, queues output, and
 * reports events, not syscalls, to its owner through one callback.
 *
 * Reentrancy: the event callback may call anything here, including
 * conn_close() on its own connection; no event is reported from inside a
 * conn_* call, only from the loop.
 */
#ifndef LOFT_CONN_H
#define LOFT_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct ioloop;
struct conn;

/* Defaults; every limit can be changed per connection. */
#define CONN_DEF_OUTPUT_SOFT	(64 * 1024)	/* reading pauses above */
#define CONN_DEF_OUTPUT_HARD	(1024 * 1024)	/* conn_write refuses past */
#define CONN_READ_CHUNK		4096		/* at most per read(2) */

enum conn_event {
	CONN_EV_INPUT,		/* new bytes in the input buffer, or reading
				   resumed after a pause with bytes left */
	CONN_EV_DRAINED,	/* the output queue became empty, and the
				   transport holds nothing unsent */
	CONN_EV_TIMEOUT,	/* idle: no input nor output progress */
	CONN_EV_STALLED,	/* output queued but none sent for too long */
	CONN_EV_CLOSED,		/* the peer closed (EOF), or the close that
				   conn_close_after_flush() asked for is
				   done; bytes already buffered stay readable */
	CONN_EV_ERROR		/* read/write failed: conn_error() says why */
};

/*
 * The event callback. After ERROR, and after the CLOSED that ends
 * conn_close_after_flush(), the connection is dead (no more io;
 * conn_write() returns -1) and the owner should conn_close() it. After a
 * CLOSED for the peer's EOF nothing more is read, but queued output can
 * still go out: conn_close() drops it, conn_close_after_flush() sends it
 * first and ends with a second CLOSED. After TIMEOUT and STALLED the owner
 * decides (usually a last word and conn_close_after_flush()).
 */
typedef void conn_event_cb(struct conn *conn, enum conn_event ev, void *ctx);

/*
 * The transport: how bytes cross the fd. The default is the plain socket
 * (recv/send with MSG_NOSIGNAL, read/write for non-sockets). A TLS
 * transport (lib/conn_tls) plugs in with conn_set_transport(), a deflate
 * one (lib/conn_zlib) with conn_push_transport():
 *
 * read: up to size bytes into buf. Returns > 0 bytes, 0 at EOF (TLS:
 *	close_notify or a bare TCP close, the transport decides), or -1 with
 *	errno. errno EAGAIN means "call again when *want_r is ready", and
 *	*want_r may be CONN_WANT_WRITE: SSL_read() returning
 *	SSL_ERROR_WANT_WRITE (renegotiation, handshake) wants the fd
 *	writable before it can read. Any other errno is fatal to the
 *	connection (CONN_EV_ERROR; the transport may set the text
 *	conn_error() shows through conn_set_error()).
 * write: the same for sending size > 0 bytes, returning > 0 bytes taken;
 *	SSL_write() returning SSL_ERROR_WANT_READ sets *want_r =
 *	CONN_WANT_READ. After EAGAIN the conn retries with the same
 *	bytes, never fewer, but they may have moved in memory: a TLS
 *	transport sets SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER (and may set
 *	SSL_MODE_ENABLE_PARTIAL_WRITE).
 * pending: bytes the transport has already decrypted and buffered
 *	(SSL_pending()), or decoded input it holds, which epoll cannot see;
 *	the conn reads them without waiting for the fd. NULL means always 0.
 * close: free the transport state (SSL_shutdown() best effort, SSL_free);
 *	the conn closes the fd itself afterwards. May be NULL.
 * wpending: bytes the transport took from write() but could not send yet
 *	(a compressor's output the socket would not take). While it is
 *	non-zero the conn keeps watching for writability even with its own
 *	queue empty, calls write() with size 0 to send them (which returns
 *	0 once they are all out, or -1 with errno EAGAIN and *want_r when
 *	some remain, or another errno: fatal), and reports neither
 *	CONN_EV_DRAINED, nor the drained callback, nor the end of
 *	conn_close_after_flush() until they are out; the stalled-output
 *	timeout covers them too. A write() with size > 0 may then return
 *	-1/EAGAIN, or take bytes and keep some of its output. NULL means
 *	always 0: write() is never called with size 0.
 * unread: (conn_push_transport() only) bytes the conn had already read
 *	from the fd when the transport took over; they came after the
 *	command that switched, so they are in the transport's encoding. It
 *	must decode them before anything from the fd, and count them in
 *	pending(). Called once, before any read. May be NULL for a
 *	transport that is never pushed.
 *
 * The handshake needs no call of its own: SSL_accept() runs inside the
 * first read or write, returning EAGAIN with the direction it wants.
 */
enum conn_want {
	CONN_WANT_READ,
	CONN_WANT_WRITE
};

struct conn_transport {
	ssize_t (*read)(void *tctx, int fd, unsigned char *buf, size_t size,
	    enum conn_want *want_r);
	ssize_t (*write)(void *tctx, int fd, const unsigned char *buf,
	    size_t size, enum conn_want *want_r);
	size_t (*pending)(void *tctx);
	void (*close)(void *tctx, int fd);
	size_t (*wpending)(void *tctx);
	void (*unread)(void *tctx, const unsigned char *data, size_t len);
};

/*
 * conn_new: take over fd (made non-blocking here; it is closed by
 * conn_close()) with an input buffer of at most input_max bytes (> 0),
 * which is also the longest line conn_read_line() accepts, CRLF
 * included. Output limits start at CONN_DEF_OUTPUT_SOFT/HARD, timeouts
 * off. Never returns NULL.
 */
struct conn *conn_new(struct ioloop *loop, int fd, size_t input_max,
    conn_event_cb *cb, void *ctx);
/*
 * conn_close: close now, flushing nothing: the transport's close, then
 * close(fd), then free. *connp becomes NULL. Safe inside the event
 * callback of this very connection (memory is released after it returns).
 */
void conn_close(struct conn **connp);
/* conn_close_after_flush: stop reading; once the queued output is sent,
 * close the fd and report CONN_EV_CLOSED (or CONN_EV_ERROR / STALLED if
 * it cannot be sent); the owner then calls conn_close(). */
void conn_close_after_flush(struct conn *conn);

int conn_fd(const struct conn *conn);
/* conn_error: why the connection failed ("read: Connection reset by
 * peer"), or NULL. Valid until the connection is closed. */
const char *conn_error(const struct conn *conn);
/* conn_set_error: for transports: the text conn_error() will show. */
void conn_set_error(struct conn *conn, const char *text);

/*
 * conn_set_transport: from now on move bytes with ops and tctx (not
 * owned until this call succeeds; then ops->close frees it). Refused
 * (-1) while output is queued, or held by the current transport (its
 * wpending): send the STARTTLS/STLS answer first and switch on
 * CONN_EV_DRAINED. Input already buffered stays in the input buffer as
 * it is: for STARTTLS it is plaintext the client pipelined before TLS,
 * which the caller must drop with conn_input_discard() (Postfix
 * starttls_cmd). A transport already set (not the plain default) is
 * closed first. Returns 0.
 */
int conn_set_transport(struct conn *conn, const struct conn_transport *ops,
    void *tctx);
/*
 * conn_push_transport: switch a running connection to a transport that
 * encodes both directions from here on (IMAP COMPRESS=DEFLATE, RFC 4978),
 * over the same fd. Unlike STARTTLS, input already buffered is neither
 * discarded nor left for the owner: the peer sent it after the command
 * that switched, so it is already encoded. It is moved out of the input
 * buffer into ops->unread() (required), and the owner sees its decoded
 * form through the next CONN_EV_INPUT; a pending skip of an over-long
 * line ends. Refused (-1), with nothing changed, while output is queued
 * (send the OK first and switch on CONN_EV_DRAINED), when the connection
 * is dead or closed, and when the current transport is not the plain
 * one: ops reads and writes the fd itself and does not stack on TLS.
 * On 0, ops->close frees tctx from then on.
 */
int conn_push_transport(struct conn *conn, const struct conn_transport *ops,
    void *tctx);
/* conn_get_transport: the transport conn uses now, and its tctx in
 * *tctx_r, for that transport's module to find its state from the conn
 * (conn_zlib_release); NULL (and *tctx_r NULL) for the plain default and
 * once the fd is closed (conn_close_after_flush() done: the transport's
 * close has run then, before conn_close()). */
const struct conn_transport *conn_get_transport(const struct conn *conn,
    void **tctx_r);

/* --- input --- */

/* conn_set_input_max: change the input limit (e.g. 8 KiB before login,
 * 64 KiB after). Bytes already buffered beyond a smaller limit stay;
 * reading waits until they are consumed. max must be > 0. */
void conn_set_input_max(struct conn *conn, size_t max);
/*
 * conn_read_line: take the next line out of the input buffer.
 * 1: *line_r, *len_r hold it without its LF or CRLF (a lone CR elsewhere
 *    stays); it may hold NUL bytes; line[len] is a NUL written over the
 *    terminator; valid until the callback returns to the loop.
 * 0: no complete line yet.
 * -1: the line is longer than the input limit (terminator included): its
 *    buffered bytes are dropped and the rest, up to and including the
 *    next LF, is skipped as it arrives; the following call continues
 *    with the next line (Postfix smtp_get SMTP_GET_FLAG_SKIP). Answer
 *    the error once per -1.
 * The owner should stop taking lines while conn_output_full() is true:
 * CONN_EV_INPUT comes again when the output has drained below the limit.
 */
int conn_read_line(struct conn *conn, const unsigned char **line_r,
    size_t *len_r);
/* conn_input_peek: the buffered bytes, raw (for literals and DATA);
 * *len_r may be 0. Valid until the callback returns to the loop. */
const unsigned char *conn_input_peek(struct conn *conn, size_t *len_r);
/* conn_input_consume: drop the first n buffered bytes; n larger than
 * what is buffered is a bug (panic). */
void conn_input_consume(struct conn *conn, size_t n);
/* conn_pause_input: stop reading from the fd (true) until called with
 * false; bytes already buffered stay. For a socket about to be handed to
 * another process, whose next bytes must stay in the kernel for it. */
void conn_pause_input(struct conn *conn, bool pause);
/* conn_input_discard: drop everything buffered, and any pending skip of
 * an over-long line (STARTTLS: no pipelined plaintext may survive). */
void conn_input_discard(struct conn *conn);

/* --- output --- */

/* conn_set_output_limits: soft: above it reading pauses (flow control
 * for pipelining clients that do not read); hard: conn_write() refuses
 * what would pass it. soft <= hard, both > 0. */
void conn_set_output_limits(struct conn *conn, size_t soft, size_t hard);
/*
 * conn_write: queue len bytes. Queued inside this connection's event
 * callback, they are written as soon as it returns (an answer leaves in
 * the same turn of the loop as the command it answers, one write for all
 * the callback queued); queued elsewhere, or when the socket is full,
 * they are sent from the loop once the fd is writable. Returns 0, or -1
 * (nothing queued) when the queue would pass the hard limit or the
 * connection is closing or dead: the owner should give up on it.
 */
int conn_write(struct conn *conn, const void *data, size_t len);
int conn_printf(struct conn *conn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* conn_output_size: bytes queued and not yet given to the transport
 * (what a transport holds, its wpending, is not counted: it may be in
 * another unit, such as compressed bytes). */
size_t conn_output_size(const struct conn *conn);
/* conn_output_full: more than the soft limit is queued (reading paused). */
bool conn_output_full(const struct conn *conn);
/*
 * conn_set_output_drained_cb: report the queue becoming empty (and the
 * transport holding nothing unsent) by calling cb(ctx) instead of
 * CONN_EV_DRAINED, so that a streaming sender (RETR of a 50 MB message)
 * with its own state sends its next chunk only when the previous one has
 * left. cb NULL restores CONN_EV_DRAINED.
 */
void conn_set_output_drained_cb(struct conn *conn, void (*cb)(void *ctx),
    void *ctx);

/* --- timeouts, in milliseconds, 0 = off --- */

/* conn_set_idle_timeout: CONN_EV_TIMEOUT after msecs without input or
 * output progress (a long download is not idle). Reported once; re-armed
 * by the next input or progress. */
void conn_set_idle_timeout(struct conn *conn, unsigned msecs);
/* conn_set_output_timeout: CONN_EV_STALLED when output is queued and no
 * byte of it could be sent for msecs. Reported once per stall. */
void conn_set_output_timeout(struct conn *conn, unsigned msecs);

#endif
