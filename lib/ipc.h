/*
 * ipc.h: fixed, length-prefixed records between loftd's processes over
 * UNIX stream socketpairs, with at most one file descriptor (SCM_RIGHTS)
 * per record. Nothing here is text to re-parse ("Don't parse", qmail):
 * a record is a header and a payload of typed fields, and the reader checks
 * every length, as OpenSMTPD's m_get_*() in mproc.c do.
 *
 * Wire format (both ends run on the same host: native byte order):
 *
 *	uint32 type	chosen by the protocol that uses the channel
 *	uint32 len	payload bytes that follow, <= IPC_MAX_PAYLOAD
 *	uint32 id	chosen by the sender; an answer repeats its request's
 *	uint32 flags	IPC_HDR_F_FD: one fd travels with this record;
 *			no other bit may be set
 *	len bytes	fields, each as written by one ipc_add_*():
 *			u32, u64: 4 or 8 bytes, no padding
 *			str: uint32 n, n bytes without NUL, then one NUL
 *			data: uint32 n, n bytes
 *
 * The fd is sent with the record's first byte, so it has always arrived
 * once the whole record has.
 */
#ifndef LOFT_IPC_H
#define LOFT_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* IPC_MAX_PAYLOAD: largest payload of one record; a bigger length in a
 * header is a protocol error, a builder refuses to grow past it. */
#define IPC_MAX_PAYLOAD		(16 * 1024)
#define IPC_HDR_SIZE		16
#define IPC_HDR_F_FD		0x1u
/* IPC_QUEUE_MAX: most bytes a channel queues for a peer that does not
 * read; ipc_chan_send fails past it. */
#define IPC_QUEUE_MAX		(1024 * 1024)
/* IPC_QUEUE_FDS_MAX: most fds queued and not yet sent. */
#define IPC_QUEUE_FDS_MAX	64

/*
 * One record, being built or read. It is large (the payload is inline, so
 * building and reading never allocate): keep it in a struct or static, or
 * on the stack of a short function.
 */
struct ipc_msg {
	uint32_t type;
	uint32_t id;
	size_t len;		/* payload bytes */
	size_t pos;		/* read cursor of the ipc_get_*() */
	int fd;			/* attached fd or -1; owned by the msg */
	const char *error;	/* first add/get failure (static text) */
	unsigned char data[IPC_MAX_PAYLOAD];
};

struct ipc_chan;

/* ipc_msg_init: an empty record to build. An fd attached to m before is
 * not closed (m may be uninitialized): use ipc_msg_clear for that. */
void ipc_msg_init(struct ipc_msg *m, uint32_t type, uint32_t id);
/* ipc_msg_clear: close the attached fd, if any; m can be reused after
 * ipc_msg_init. Call it on every received record whose fd was not taken. */
void ipc_msg_clear(struct ipc_msg *m);

/*
 * Builders. Each appends one field and returns 0, or -1 if the payload
 * would pass IPC_MAX_PAYLOAD (or, for strings, the text holds a NUL). A
 * failure is sticky: m->error is set, later adds fail too and
 * ipc_chan_send refuses the record, so a caller may add every field and
 * check only the send.
 */
int ipc_add_u32(struct ipc_msg *m, uint32_t v);
int ipc_add_u64(struct ipc_msg *m, uint64_t v);
/* ipc_add_str: s is NUL-terminated text. */
int ipc_add_str(struct ipc_msg *m, const char *s);
/* ipc_add_strn: len bytes of text; a NUL among them fails. */
int ipc_add_strn(struct ipc_msg *m, const char *s, size_t len);
/* ipc_add_data: len bytes of anything (they may hold NUL). */
int ipc_add_data(struct ipc_msg *m, const void *p, size_t len);
/* ipc_msg_set_fd: attach fd (>= 0); the message owns it from now on and
 * the channel closes it once sent. Attaching a second one panics. */
void ipc_msg_set_fd(struct ipc_msg *m, int fd);

/*
 * Readers, in the order the fields were added. Each returns 0, or -1 when
 * the field does not fit in what is left of the payload or is malformed;
 * the out-parameters are then zeroed (0, "", NULL and 0), m->error is set
 * and every later get fails. Pointers point into m->data: valid until m
 * is received into or initialized again.
 */
int ipc_get_u32(struct ipc_msg *m, uint32_t *v_r);
int ipc_get_u64(struct ipc_msg *m, uint64_t *v_r);
/* ipc_get_str: text, NUL-terminated; fails if its length passes the
 * payload, if it holds a NUL, or if its terminating NUL is missing. */
int ipc_get_str(struct ipc_msg *m, const char **s_r);
/* ipc_get_data: *p_r is NULL when *len_r is 0. */
int ipc_get_data(struct ipc_msg *m, const unsigned char **p_r,
    size_t *len_r);
/* ipc_get_end: 0 if every get succeeded and no byte is left; otherwise -1
 * with *error_r (static text) saying what was wrong first. A reader treats
 * -1 as fatal for the peer. */
int ipc_get_end(struct ipc_msg *m, const char **error_r);
/* ipc_msg_take_fd: the attached fd (CLOEXEC), now the caller's, or -1 if
 * the record carried none. */
int ipc_msg_take_fd(struct ipc_msg *m);

/*
 * ipc_chan_new: a channel over the UNIX stream socket fd, which it owns
 * from now on and makes non-blocking. Never NULL.
 */
struct ipc_chan *ipc_chan_new(int fd);
/* ipc_chan_free: close the socket and every fd still queued or received
 * and not handed out; *chanp becomes NULL. Unsent output is dropped. */
void ipc_chan_free(struct ipc_chan **chanp);
/* ipc_chan_fd: the socket, for the event loop. */
int ipc_chan_fd(const struct ipc_chan *chan);

/*
 * ipc_chan_send: queue m (nothing is written: call ipc_chan_flush). On 0
 * the attached fd, if any, moved to the channel (m->fd is -1). Returns -1
 * with *error_r when m has a builder error, the queue would pass
 * IPC_QUEUE_MAX or IPC_QUEUE_FDS_MAX, or the channel has failed; m then
 * keeps its fd.
 */
int ipc_chan_send(struct ipc_chan *chan, struct ipc_msg *m,
    const char **error_r);
/*
 * ipc_chan_flush: write what the socket takes now. Returns 0 when the
 * queue is empty, 1 when bytes remain (wait until the socket is writable
 * and call again), -1 on a write error (the peer went away: EPIPE, never
 * SIGPIPE), after which the channel has failed.
 */
int ipc_chan_flush(struct ipc_chan *chan, const char **error_r);
/* ipc_chan_want_write: bytes are queued. */
bool ipc_chan_want_write(const struct ipc_chan *chan);

/*
 * ipc_chan_recv: the next record into m (overwritten: take or clear a
 * previous record's fd first). Reads only when no whole record is
 * buffered, so call it until it returns 0 before waiting for input again.
 * Returns:
 *	1	a record is in m; its fd, if the header announced one, is
 *		attached (the caller takes it, or ipc_msg_clear closes it)
 *	0	need more input (the socket would block)
 *	-1	the peer is gone or broke the protocol; *error_r says which.
 * Protocol errors: a length over IPC_MAX_PAYLOAD, unknown flag bits, EOF
 * in the middle of a record, a record announcing an fd that did not come,
 * an fd that no record claims, more than one fd in one recvmsg, truncated
 * control data (MSG_CTRUNC), control data other than SCM_RIGHTS. A clean
 * EOF between records is also -1, with ipc_chan_closed() true. After -1
 * the channel has failed: every fd it received and had not handed out is
 * closed, and later calls return -1 again. Received fds are CLOEXEC.
 * *error_r points into chan: valid until ipc_chan_free.
 */
int ipc_chan_recv(struct ipc_chan *chan, struct ipc_msg *m,
    const char **error_r);
/* ipc_chan_closed: the peer closed the socket between two records. */
bool ipc_chan_closed(const struct ipc_chan *chan);

/*
 * ipc_call: blocking request/response for the simple paths. Sends req
 * (its fd moves as with ipc_chan_send), waits until it is written, then
 * until one record arrives in resp; that record must carry req's id,
 * otherwise it is a protocol error (resp's fd, if any, is closed). The
 * whole call takes at most timeout_ms milliseconds (< 0: no limit).
 * Returns 0, or -1 with *error_r (timeout included; the channel then has
 * failed, since a late answer would pair with the wrong request).
 */
int ipc_call(struct ipc_chan *chan, struct ipc_msg *req,
    struct ipc_msg *resp, int timeout_ms, const char **error_r);

#endif
