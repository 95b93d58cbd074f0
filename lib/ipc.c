/*
 * ipc.c: records between loftd's processes: building, reading, and
 * channels over non-blocking UNIX stream sockets with fd passing.
 *
 * Trusts nothing the peer sends: the peer may be a compromised pre-login
 * process. Every header length is checked against IPC_MAX_PAYLOAD before
 * a byte of payload is kept, every field length against what is left of
 * its record, and every fd that arrives is either attached to the record
 * that announced it or closed, so a peer can neither overrun a buffer nor
 * make us leak descriptors. Only what the caller builds is trusted.
 */
#include "config.h"
#include <sys/types.h>
#include <sys/socket.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "buf.h"
#include "ipc.h"
#include "log.h"
#include "xmalloc.h"

/* Most fds one recvmsg may carry before we call it truncated; only one
 * is allowed, the room for more lets us see (and close) extras. */
#define IPC_CMSG_FDS		8
/* Received fds waiting for their record: the partial record at the end
 * of the buffer may own one, and a read may bring the next one. */
#define IPC_IN_FDS_MAX		2
#define IPC_ERROR_MAX		256
/* The input buffer exists only while it holds bytes, so that an idle
 * channel costs its struct alone: the master keeps one per child, and
 * with system users that is one per mailbox owner logged in. It starts at
 * IPC_IN_MIN bytes and grows to the record its header announces. */
#define IPC_IN_MIN		4096
#define IPC_IN_MAX		(IPC_HDR_SIZE + IPC_MAX_PAYLOAD)

struct ipc_out_fd {
	size_t off;		/* where in out its record starts */
	int fd;			/* owned until sent */
};

struct ipc_chan {
	int fd;			/* the socket; owned */
	bool failed;
	bool closed;		/* clean EOF between records */
	char error[IPC_ERROR_MAX];

	/* input: bytes in[in_off .. in_len) are not yet handed out */
	unsigned char *in;	/* owned, in_size bytes; NULL while empty */
	size_t in_size, in_off, in_len;
	int in_fds[IPC_IN_FDS_MAX];	/* owned, in arrival order */
	size_t in_nfds;

	/* output: out.data[out_off .. out.len) not yet written */
	struct buf out;
	size_t out_off;
	struct ipc_out_fd out_fds[IPC_QUEUE_FDS_MAX];	/* by offset */
	size_t out_nfds;
};

/* --- records ----------------------------------------------------------- */

void
ipc_msg_init(struct ipc_msg *m, uint32_t type, uint32_t id)
{
	m->type = type;
	m->id = id;
	m->len = 0;
	m->pos = 0;
	m->fd = -1;
	m->error = NULL;
}

void
ipc_msg_clear(struct ipc_msg *m)
{
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
}

static int
ipc_put(struct ipc_msg *m, const void *p, size_t len)
{
	if (m->error != NULL)
		return -1;
	if (len > IPC_MAX_PAYLOAD - m->len) {
		m->error = "record payload too large";
		return -1;
	}
	if (len > 0)
		memcpy(m->data + m->len, p, len);
	m->len += len;
	return 0;
}

int
ipc_add_u32(struct ipc_msg *m, uint32_t v)
{
	return ipc_put(m, &v, sizeof(v));
}

int
ipc_add_u64(struct ipc_msg *m, uint64_t v)
{
	return ipc_put(m, &v, sizeof(v));
}

/* The whole field is checked first, so a failed add leaves no half. */
static int
ipc_put_counted(struct ipc_msg *m, const void *p, size_t len, size_t extra)
{
	uint32_t n = (uint32_t)len;

	if (m->error != NULL)
		return -1;
	if (len > IPC_MAX_PAYLOAD || sizeof(n) + len + extra >
	    IPC_MAX_PAYLOAD - m->len) {
		m->error = "record payload too large";
		return -1;
	}
	(void)ipc_put(m, &n, sizeof(n));
	(void)ipc_put(m, p, len);
	return extra > 0 ? ipc_put(m, "", 1) : 0;
}

int
ipc_add_strn(struct ipc_msg *m, const char *s, size_t len)
{
	if (m->error != NULL)
		return -1;
	if (memchr(s, '\0', len) != NULL) {
		m->error = "NUL inside a string field";
		return -1;
	}
	return ipc_put_counted(m, s, len, 1);
}

int
ipc_add_str(struct ipc_msg *m, const char *s)
{
	return ipc_add_strn(m, s, strlen(s));
}

int
ipc_add_data(struct ipc_msg *m, const void *p, size_t len)
{
	return ipc_put_counted(m, p, len, 0);
}

void
ipc_msg_set_fd(struct ipc_msg *m, int fd)
{
	if (fd < 0 || m->fd >= 0)
		log_panic("ipc_msg_set_fd: fd %d, record already has %d",
		    fd, m->fd);
	m->fd = fd;
}

/* Mark m bad; the first reason wins. */
static int
ipc_get_fail(struct ipc_msg *m, const char *why)
{
	if (m->error == NULL)
		m->error = why;
	return -1;
}

static int
ipc_take(struct ipc_msg *m, void *p, size_t len, const char *why)
{
	if (m->error != NULL)
		return -1;
	if (len > m->len - m->pos)
		return ipc_get_fail(m, why);
	memcpy(p, m->data + m->pos, len);
	m->pos += len;
	return 0;
}

int
ipc_get_u32(struct ipc_msg *m, uint32_t *v_r)
{
	*v_r = 0;
	return ipc_take(m, v_r, sizeof(*v_r), "record truncated in a u32");
}

int
ipc_get_u64(struct ipc_msg *m, uint64_t *v_r)
{
	*v_r = 0;
	return ipc_take(m, v_r, sizeof(*v_r), "record truncated in a u64");
}

/* The length prefix of a str or data field, checked against the rest. */
static int
ipc_get_count(struct ipc_msg *m, size_t extra, size_t *len_r)
{
	uint32_t n;

	if (ipc_take(m, &n, sizeof(n), "record truncated in a length") < 0)
		return -1;
	if (n > m->len - m->pos || extra > m->len - m->pos - n)
		return ipc_get_fail(m, "field length passes the record");
	*len_r = n;
	return 0;
}

int
ipc_get_str(struct ipc_msg *m, const char **s_r)
{
	const char *s;
	size_t n;

	*s_r = "";
	if (ipc_get_count(m, 1, &n) < 0)
		return -1;
	s = (const char *)m->data + m->pos;
	if (memchr(s, '\0', n) != NULL)
		return ipc_get_fail(m, "NUL inside a string field");
	if (s[n] != '\0')
		return ipc_get_fail(m, "string field not terminated");
	m->pos += n + 1;
	*s_r = s;
	return 0;
}

int
ipc_get_data(struct ipc_msg *m, const unsigned char **p_r, size_t *len_r)
{
	size_t n;

	*p_r = NULL;
	*len_r = 0;
	if (ipc_get_count(m, 0, &n) < 0)
		return -1;
	if (n > 0)
		*p_r = m->data + m->pos;
	*len_r = n;
	m->pos += n;
	return 0;
}

int
ipc_get_end(struct ipc_msg *m, const char **error_r)
{
	if (m->error == NULL && m->pos != m->len)
		m->error = "unexpected bytes at the end of a record";
	if (m->error != NULL) {
		*error_r = m->error;
		return -1;
	}
	return 0;
}

int
ipc_msg_take_fd(struct ipc_msg *m)
{
	int fd = m->fd;

	m->fd = -1;
	return fd;
}

/* --- channels: common ------------------------------------------------- */

struct ipc_chan *
ipc_chan_new(int fd)
{
	struct ipc_chan *chan;
	int fl;

	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		log_panic("ipc_chan_new: fd %d: %s", fd, strerror(errno));
	chan = xcalloc(1, sizeof(*chan));
	chan->fd = fd;
	buf_init(&chan->out, IPC_QUEUE_MAX);
	return chan;
}

static void
ipc_chan_close_fds(struct ipc_chan *chan)
{
	size_t i;

	for (i = 0; i < chan->in_nfds; i++)
		close(chan->in_fds[i]);
	chan->in_nfds = 0;
	for (i = 0; i < chan->out_nfds; i++)
		close(chan->out_fds[i].fd);
	chan->out_nfds = 0;
}

void
ipc_chan_free(struct ipc_chan **chanp)
{
	struct ipc_chan *chan = *chanp;

	if (chan == NULL)
		return;
	*chanp = NULL;
	ipc_chan_close_fds(chan);
	buf_free(&chan->out);
	free(chan->in);
	close(chan->fd);
	free(chan);
}

int
ipc_chan_fd(const struct ipc_chan *chan)
{
	return chan->fd;
}

bool
ipc_chan_closed(const struct ipc_chan *chan)
{
	return chan->closed;
}

bool
ipc_chan_want_write(const struct ipc_chan *chan)
{
	return chan->out_off < chan->out.len;
}

static int
ipc_chan_fail(struct ipc_chan *chan, const char **error_r,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The channel is dead from now on: nothing it holds survives. */
static int
ipc_chan_fail(struct ipc_chan *chan, const char **error_r,
    const char *fmt, ...)
{
	va_list ap;

	if (!chan->failed) {
		va_start(ap, fmt);
		vsnprintf(chan->error, sizeof(chan->error), fmt, ap);
		va_end(ap);
		chan->failed = true;
	}
	ipc_chan_close_fds(chan);
	*error_r = chan->error;
	return -1;
}

/* --- channels: output ------------------------------------------------- */

int
ipc_chan_send(struct ipc_chan *chan, struct ipc_msg *m, const char **error_r)
{
	unsigned char hdr[IPC_HDR_SIZE];
	uint32_t f[4];
	size_t off = chan->out.len;

	if (chan->failed) {
		*error_r = chan->error;
		return -1;
	}
	if (m->error != NULL) {
		*error_r = m->error;
		return -1;
	}
	if (m->fd >= 0 && chan->out_nfds == IPC_QUEUE_FDS_MAX) {
		*error_r = "too many file descriptors queued";
		return -1;
	}
	/* m->len <= IPC_MAX_PAYLOAD, so the cast is exact */
	f[0] = m->type;
	f[1] = (uint32_t)m->len;
	f[2] = m->id;
	f[3] = m->fd >= 0 ? IPC_HDR_F_FD : 0;
	memcpy(hdr, f, sizeof(hdr));
	if (buf_reserve(&chan->out, sizeof(hdr) + m->len) < 0) {
		*error_r = "output queue full";
		return -1;
	}
	(void)buf_append(&chan->out, hdr, sizeof(hdr));
	(void)buf_append(&chan->out, m->data, m->len);
	if (m->fd >= 0) {
		chan->out_fds[chan->out_nfds].off = off;
		chan->out_fds[chan->out_nfds].fd = ipc_msg_take_fd(m);
		chan->out_nfds++;
	}
	return 0;
}

/* Drop what was written, so the queue's limit counts unsent bytes only. */
static void
ipc_chan_compact_out(struct ipc_chan *chan)
{
	size_t i, left = chan->out.len - chan->out_off;

	if (chan->out_off == 0)
		return;
	memmove(chan->out.data, chan->out.data + chan->out_off, left);
	buf_truncate(&chan->out, left);
	for (i = 0; i < chan->out_nfds; i++)
		chan->out_fds[i].off -= chan->out_off;
	chan->out_off = 0;
}

/* Write bytes up to the next record with an fd; a record with an fd goes
 * out with its fd in the control data of its first byte. */
static ssize_t
ipc_chan_write(struct ipc_chan *chan)
{
	union {
		struct cmsghdr hdr;
		char space[CMSG_SPACE(sizeof(int))];
	} cbuf;
	struct msghdr msg;
	struct iovec iov;
	struct cmsghdr *cm;
	size_t end = chan->out.len;
	bool with_fd = chan->out_nfds > 0 &&
	    chan->out_fds[0].off == chan->out_off;

	if (chan->out_nfds > (with_fd ? 1u : 0u))
		end = chan->out_fds[with_fd ? 1 : 0].off;
	memset(&msg, 0, sizeof(msg));
	iov.iov_base = chan->out.data + chan->out_off;
	iov.iov_len = end - chan->out_off;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (with_fd) {
		memset(&cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf.space;
		msg.msg_controllen = sizeof(cbuf.space);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &chan->out_fds[0].fd, sizeof(int));
	}
	return sendmsg(chan->fd, &msg, MSG_NOSIGNAL);
}

/* The fd at the front went out with its record's first byte: our copy
 * is no longer needed. */
static void
ipc_chan_sent_fd(struct ipc_chan *chan)
{
	close(chan->out_fds[0].fd);
	chan->out_nfds--;
	memmove(&chan->out_fds[0], &chan->out_fds[1],
	    chan->out_nfds * sizeof(chan->out_fds[0]));
}

int
ipc_chan_flush(struct ipc_chan *chan, const char **error_r)
{
	ssize_t n;
	bool with_fd;

	if (chan->failed) {
		*error_r = chan->error;
		return -1;
	}
	while (chan->out_off < chan->out.len) {
		with_fd = chan->out_nfds > 0 &&
		    chan->out_fds[0].off == chan->out_off;
		n = ipc_chan_write(chan);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ipc_chan_compact_out(chan);
			return 1;
		}
		if (n <= 0)
			return ipc_chan_fail(chan, error_r, "send: %s",
			    n < 0 ? strerror(errno) : "nothing written");
		if (with_fd)
			ipc_chan_sent_fd(chan);
		chan->out_off += (size_t)n;
	}
	/* All written: the queue's memory goes too (see IPC_IN_MIN). */
	chan->out_off = 0;
	buf_free(&chan->out);
	return 0;
}

/* --- channels: input -------------------------------------------------- */

/*
 * Collect the fds of one recvmsg into fds (room for IPC_CMSG_FDS).
 * Returns how many, or -1 if the control data was not only SCM_RIGHTS;
 * the fds found are in fds either way, for the caller to keep or close.
 */
static int
ipc_chan_cmsg_fds(struct msghdr *msg, int *fds, size_t *nfds_r,
    const char **why_r)
{
	struct cmsghdr *cm;
	size_t i, n;

	*nfds_r = 0;
	for (cm = CMSG_FIRSTHDR(msg); cm != NULL; cm = CMSG_NXTHDR(msg, cm)) {
		if (cm->cmsg_level != SOL_SOCKET ||
		    cm->cmsg_type != SCM_RIGHTS) {
			*why_r = "unexpected control message";
			return -1;
		}
		/* the kernel wrote it; still, never read past our buffer */
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n && *nfds_r < IPC_CMSG_FDS; i++)
			memcpy(&fds[(*nfds_r)++],
			    CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
	}
	return 0;
}

/* Keep the fds of one read, or close them all and say why not. */
static int
ipc_chan_accept_fds(struct ipc_chan *chan, struct msghdr *msg,
    const char **error_r)
{
	int fds[IPC_CMSG_FDS];
	const char *why = NULL;
	size_t i, nfds;

	if (ipc_chan_cmsg_fds(msg, fds, &nfds, &why) == 0) {
		if ((msg->msg_flags & MSG_CTRUNC) != 0)
			why = "control data truncated";
		else if (nfds > 1)
			why = "more than one fd in one read";
		else if (nfds + chan->in_nfds > IPC_IN_FDS_MAX)
			why = "fds arrived without records";
	}
	if (why != NULL) {
		for (i = 0; i < nfds; i++)
			close(fds[i]);
		return ipc_chan_fail(chan, error_r, "recv: %s", why);
	}
	for (i = 0; i < nfds; i++)
		chan->in_fds[chan->in_nfds++] = fds[i];
	return 0;
}

/*
 * Make room in the input buffer for one more byte, and for the whole
 * record whose header is buffered (its length was checked by
 * ipc_chan_extract, which found the record incomplete: so in_len is below
 * IPC_IN_MAX, and so is what this allocates).
 */
static void
ipc_chan_in_room(struct ipc_chan *chan)
{
	size_t want = chan->in_len + 1;
	uint32_t f[2];

	if (chan->in_len >= IPC_HDR_SIZE) {
		memcpy(f, chan->in, sizeof(f));
		if (f[1] <= IPC_MAX_PAYLOAD && IPC_HDR_SIZE + f[1] > want)
			want = IPC_HDR_SIZE + f[1];
	}
	if (want <= chan->in_size)
		return;
	if (want < IPC_IN_MIN)
		want = IPC_IN_MIN;
	if (want > IPC_IN_MAX)
		want = IPC_IN_MAX;
	chan->in = xrealloc(chan->in, want);
	chan->in_size = want;
}

/* One recvmsg into the free end of the input buffer. Returns 1 when bytes
 * came, 0 when the socket would block, -1 (failed) on error or EOF. */
static int
ipc_chan_read(struct ipc_chan *chan, const char **error_r)
{
	union {
		struct cmsghdr hdr;
		char space[CMSG_SPACE(IPC_CMSG_FDS * sizeof(int))];
	} cbuf;
	struct msghdr msg;
	struct iovec iov;
	size_t left = chan->in_len - chan->in_off;
	ssize_t n;

	if (chan->in_off > 0)
		memmove(chan->in, chan->in + chan->in_off, left);
	chan->in_off = 0;
	chan->in_len = left;
	ipc_chan_in_room(chan);
	memset(&msg, 0, sizeof(msg));
	iov.iov_base = chan->in + chan->in_len;
	iov.iov_len = chan->in_size - chan->in_len;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cbuf.space;
	msg.msg_controllen = sizeof(cbuf.space);
	do {
		n = recvmsg(chan->fd, &msg, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		if (chan->in_len == 0) {
			/* Idle: see IPC_IN_MIN. */
			free(chan->in);
			chan->in = NULL;
			chan->in_size = 0;
		}
		return 0;
	}
	if (n < 0)
		return ipc_chan_fail(chan, error_r, "recv: %s",
		    strerror(errno));
	if (ipc_chan_accept_fds(chan, &msg, error_r) < 0)
		return -1;
	if (n == 0 && chan->in_len > 0)
		return ipc_chan_fail(chan, error_r,
		    "recv: peer closed in the middle of a record");
	if (n == 0) {
		chan->closed = chan->in_nfds == 0;
		return ipc_chan_fail(chan, error_r, chan->closed ?
		    "peer closed the connection" :
		    "recv: peer closed with an fd no record claimed");
	}
	chan->in_len += (size_t)n;
	return 1;
}

/* Hand the received fd the header announced to m. */
static int
ipc_chan_attach_fd(struct ipc_chan *chan, struct ipc_msg *m, uint32_t flags,
    const char **error_r)
{
	if ((flags & IPC_HDR_F_FD) == 0)
		return 0;
	if (chan->in_nfds == 0)
		return ipc_chan_fail(chan, error_r,
		    "recv: record announces an fd that did not come");
	m->fd = chan->in_fds[0];
	chan->in_nfds--;
	memmove(&chan->in_fds[0], &chan->in_fds[1],
	    chan->in_nfds * sizeof(chan->in_fds[0]));
	return 0;
}

/* A whole buffered record into m: 1, 0 if none is whole yet, -1. */
static int
ipc_chan_extract(struct ipc_chan *chan, struct ipc_msg *m,
    const char **error_r)
{
	const unsigned char *p;
	size_t avail = chan->in_len - chan->in_off;
	uint32_t f[4];

	if (avail == 0 && chan->in_nfds > 0)
		return ipc_chan_fail(chan, error_r,
		    "recv: fd that no record claims");
	if (avail < IPC_HDR_SIZE)
		return 0;
	p = chan->in + chan->in_off;
	memcpy(f, p, sizeof(f));
	if (f[1] > IPC_MAX_PAYLOAD)
		return ipc_chan_fail(chan, error_r,
		    "recv: record length %u over %u", f[1], IPC_MAX_PAYLOAD);
	if ((f[3] & ~IPC_HDR_F_FD) != 0)
		return ipc_chan_fail(chan, error_r,
		    "recv: unknown record flags 0x%x", f[3]);
	if (avail - IPC_HDR_SIZE < f[1])
		return 0;
	ipc_msg_init(m, f[0], f[2]);
	if (ipc_chan_attach_fd(chan, m, f[3], error_r) < 0)
		return -1;
	memcpy(m->data, p + IPC_HDR_SIZE, f[1]);
	m->len = f[1];
	chan->in_off += IPC_HDR_SIZE + f[1];
	return 1;
}

int
ipc_chan_recv(struct ipc_chan *chan, struct ipc_msg *m, const char **error_r)
{
	int r;

	for (;;) {
		if (chan->failed) {
			*error_r = chan->error;
			return -1;
		}
		r = ipc_chan_extract(chan, m, error_r);
		if (r != 0)
			return r;
		r = ipc_chan_read(chan, error_r);
		if (r <= 0)
			return r;
	}
}

/* --- blocking calls --------------------------------------------------- */

static long long
ipc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for events on the socket until deadline (< 0: none). */
static int
ipc_chan_wait(struct ipc_chan *chan, short events, long long deadline,
    const char **error_r)
{
	struct pollfd pfd;
	long long left;
	int r;

	for (;;) {
		left = deadline < 0 ? -1 : deadline - ipc_now_ms();
		if (deadline >= 0 && left <= 0)
			return ipc_chan_fail(chan, error_r,
			    "ipc call timed out");
		pfd.fd = chan->fd;
		pfd.events = events;
		pfd.revents = 0;
		r = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return ipc_chan_fail(chan, error_r, "poll: %s",
			    strerror(errno));
	}
}

int
ipc_call(struct ipc_chan *chan, struct ipc_msg *req, struct ipc_msg *resp,
    int timeout_ms, const char **error_r)
{
	long long deadline = timeout_ms < 0 ? -1 : ipc_now_ms() + timeout_ms;
	int r;

	if (ipc_chan_send(chan, req, error_r) < 0)
		return -1;
	while ((r = ipc_chan_flush(chan, error_r)) > 0)
		if (ipc_chan_wait(chan, POLLOUT, deadline, error_r) < 0)
			return -1;
	if (r < 0)
		return -1;
	while ((r = ipc_chan_recv(chan, resp, error_r)) == 0)
		if (ipc_chan_wait(chan, POLLIN, deadline, error_r) < 0)
			return -1;
	if (r < 0)
		return -1;
	if (resp->id != req->id) {
		ipc_msg_clear(resp);
		return ipc_chan_fail(chan, error_r,
		    "ipc call: answer id %u for request %u", resp->id, req->id);
	}
	return 0;
}
