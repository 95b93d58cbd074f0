/*
 * Unit tests for lib/ipc.c: every field type, limits at N and N+1, every
 * truncation, records fed one byte at a time by another process, fd
 * passing, fds that must be closed (counted in /proc/self/fd), broken
 * headers and peers, 100,000 records in order, records of every size
 * class in pieces, ipc_call.
 */
#include "config.h"
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include "ipc.h"
#include "tap.h"

#define RECORDS		100000

static const char pattern[] = "0123456789abcdefghij";

static struct ipc_msg m, r;	/* large: kept off the stack */

static int
count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (d == NULL)
		bail("opendir /proc/self/fd: %s", strerror(errno));
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void
make_pair(int sv[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		bail("socketpair: %s", strerror(errno));
}

static void
make_pipe(int p[2])
{
	if (pipe(p) < 0)
		bail("pipe: %s", strerror(errno));
}

/* Raw header bytes in the documented wire format. */
static void
put_hdr(unsigned char *p, uint32_t type, uint32_t len, uint32_t id,
    uint32_t flags)
{
	uint32_t f[4] = { type, len, id, flags };

	memcpy(p, f, sizeof(f));
}

/* sendmsg of len bytes with nfds fds in one SCM_RIGHTS message. */
static ssize_t
send_with_fds(int s, const void *p, size_t len, const int *fds, size_t nfds)
{
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(16 * sizeof(int))];
	} cbuf;
	struct msghdr msg;
	struct iovec iov;
	struct cmsghdr *cm;

	memset(&msg, 0, sizeof(msg));
	memset(&cbuf, 0, sizeof(cbuf));
	iov.iov_base = (void *)p;
	iov.iov_len = len;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (nfds > 0) {
		msg.msg_control = cbuf.space;
		msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
	}
	return sendmsg(s, &msg, MSG_NOSIGNAL);
}

/* Is every read end of the pipe closed, in every process? Writing to
 * p[1] gives EPIPE only when no read end is left anywhere. */
static int
read_ends_gone(int pw)
{
	return write(pw, "x", 1) < 0 && errno == EPIPE;
}

/* The record every field test uses. */
static const unsigned char blob[] = { 0, 1, 0xff, 0, 'x' };

static void
build_full(struct ipc_msg *b)
{
	ipc_msg_init(b, 7, 42);
	ipc_add_u32(b, 0xdeadbeef);
	ipc_add_u32(b, 0);
	ipc_add_u64(b, UINT64_MAX - 1);
	ipc_add_str(b, "alice@example.org");
	ipc_add_str(b, "");
	ipc_add_data(b, blob, sizeof(blob));
	ipc_add_data(b, NULL, 0);
}

/* Read build_full's fields; 0 if all of them came back exactly. */
static int
read_full(struct ipc_msg *b, const char **error_r)
{
	uint32_t a, z;
	uint64_t big;
	const char *s1, *s2;
	const unsigned char *d1, *d2;
	size_t l1, l2;

	ipc_get_u32(b, &a);
	ipc_get_u32(b, &z);
	ipc_get_u64(b, &big);
	ipc_get_str(b, &s1);
	ipc_get_str(b, &s2);
	ipc_get_data(b, &d1, &l1);
	ipc_get_data(b, &d2, &l2);
	if (ipc_get_end(b, error_r) < 0)
		return -1;
	if (a != 0xdeadbeef || z != 0 || big != UINT64_MAX - 1 ||
	    strcmp(s1, "alice@example.org") != 0 || strcmp(s2, "") != 0 ||
	    l1 != sizeof(blob) || memcmp(d1, blob, l1) != 0 ||
	    l2 != 0 || d2 != NULL) {
		*error_r = "values differ";
		return -1;
	}
	return 0;
}

/* Send m on a and receive into r on b, both in this process. */
static int
pass(struct ipc_chan *a, struct ipc_chan *b, const char **error_r)
{
	int ret;

	if (ipc_chan_send(a, &m, error_r) < 0 ||
	    ipc_chan_flush(a, error_r) != 0)
		return -1;
	ret = ipc_chan_recv(b, &r, error_r);
	if (ret == 0)
		*error_r = "nothing arrived";
	return ret == 1 ? 0 : -1;
}

static void
test_round_trip(void)
{
	struct ipc_chan *a, *b;
	const char *error = NULL;
	int sv[2];

	make_pair(sv);
	a = ipc_chan_new(sv[0]);
	b = ipc_chan_new(sv[1]);
	build_full(&m);
	ok(pass(a, b, &error) == 0, "record crosses the channel");
	is_int(r.type, 7, "type kept");
	is_int(r.id, 42, "id kept");
	is_int(r.fd, -1, "no fd attached");
	ok(read_full(&r, &error) == 0, "every field type round-trips (%s)",
	    error ? error : "ok");
	is_int(ipc_chan_recv(b, &r, &error), 0, "then nothing: need more");
	is_int(ipc_chan_flush(a, &error), 0, "flush of an empty queue is 0");
	ok(!ipc_chan_want_write(a), "no write wanted");
	ipc_chan_free(&a);
	ok(a == NULL, "free clears the pointer");
	is_int(ipc_chan_recv(b, &r, &error), -1, "clean EOF is -1");
	ok(ipc_chan_closed(b), "and reported as a clean close");
	is_int(ipc_chan_recv(b, &r, &error), -1, "failure is sticky");
	ipc_chan_free(&b);
}

static void
test_builder_limits(void)
{
	static char big[IPC_MAX_PAYLOAD + 1];
	struct ipc_chan *a, *b;
	const char *error = NULL, *s;
	const unsigned char *d;
	size_t dl;
	int sv[2];

	ipc_msg_init(&m, 1, 1);
	is_int(ipc_add_data(&m, big, IPC_MAX_PAYLOAD - 4), 0,
	    "data filling the payload exactly (N)");
	is_int(m.len, IPC_MAX_PAYLOAD, "payload at the maximum");
	ipc_msg_init(&m, 1, 1);
	is_int(ipc_add_data(&m, big, IPC_MAX_PAYLOAD - 3), -1,
	    "data one byte over (N+1) refused");
	is_int(m.len, 0, "a refused field leaves nothing behind");
	is_int(ipc_add_u32(&m, 1), -1, "builder failure is sticky");
	is_int(ipc_add_data(&m, big, (size_t)UINT32_MAX + 1), -1,
	    "absurd length refused");

	memset(big, 'a', sizeof(big) - 1);
	big[IPC_MAX_PAYLOAD - 5] = '\0';
	ipc_msg_init(&m, 1, 1);
	is_int(ipc_add_str(&m, big), 0, "string of N = max - 5 bytes fits");
	big[IPC_MAX_PAYLOAD - 5] = 'a';
	big[IPC_MAX_PAYLOAD - 4] = '\0';
	ipc_msg_init(&m, 1, 1);
	is_int(ipc_add_str(&m, big), -1, "string of N+1 bytes refused");

	ipc_msg_init(&m, 1, 1);
	ipc_add_data(&m, big, IPC_MAX_PAYLOAD - 8);
	is_int(ipc_add_u32(&m, 5), 0, "u32 into the last 4 bytes");
	is_int(ipc_add_u32(&m, 5), -1, "u32 past the end refused");

	make_pair(sv);
	a = ipc_chan_new(sv[0]);
	b = ipc_chan_new(sv[1]);
	is_int(ipc_chan_send(a, &m, &error), -1, "send refuses a bad record");
	is_string(error, "record payload too large", "and says why");

	big[IPC_MAX_PAYLOAD - 5] = '\0';
	ipc_msg_init(&m, 9, 9);
	ipc_add_str(&m, big);
	error = NULL;
	ok(pass(a, b, &error) == 0, "max payload crosses the channel (%s)",
	    error ? error : "ok");
	ipc_get_str(&r, &s);
	ok(ipc_get_end(&r, &error) == 0 && strlen(s) == IPC_MAX_PAYLOAD - 5,
	    "and reads back whole");

	ipc_msg_init(&m, 9, 10);
	ipc_add_data(&m, "", 0);
	ok(pass(a, b, &error) == 0, "empty data field");
	ipc_get_data(&r, &d, &dl);
	ok(ipc_get_end(&r, &error) == 0 && d == NULL && dl == 0,
	    "empty data reads back as NULL, 0");
	ipc_chan_free(&a);
	ipc_chan_free(&b);
}

static void
test_truncations(void)
{
	static struct ipc_msg full, cut;
	const char *error;
	size_t l, rejected = 0;

	build_full(&full);
	for (l = 0; l < full.len; l++) {
		cut = full;
		cut.len = l;
		error = NULL;
		if (read_full(&cut, &error) < 0 && error != NULL &&
		    strcmp(error, "values differ") != 0)
			rejected++;
		else
			diag("truncation to %zu accepted", l);
	}
	is_int(rejected, full.len,
	    "all %zu truncations rejected by the getters", full.len);
	cut = full;
	ok(read_full(&cut, &error) == 0, "the whole record is accepted");
	cut = full;
	cut.data[cut.len++] = 0;
	ok(read_full(&cut, &error) < 0, "one extra byte: ipc_get_end fails");
	is_string(error, "unexpected bytes at the end of a record",
	    "with its reason");
}

/* A payload holding one str field of n bytes s and terminator t. */
static void
raw_str(struct ipc_msg *b, uint32_t n, const char *s, size_t slen,
    unsigned char t)
{
	ipc_msg_init(b, 1, 1);
	memcpy(b->data, &n, 4);
	memcpy(b->data + 4, s, slen);
	b->data[4 + slen] = t;
	b->len = 4 + slen + 1;
}

static void
test_strings(void)
{
	const char *s, *error = NULL;
	const unsigned char *d;
	size_t dl;
	uint32_t v;
	uint64_t big;

	ipc_msg_init(&m, 1, 1);
	is_int(ipc_add_strn(&m, "a\0b", 3), -1, "NUL inside refused at add");
	is_string(m.error, "NUL inside a string field", "with its reason");
	ipc_msg_init(&m, 1, 1);
	is_int(ipc_add_strn(&m, "abc", 3), 0, "strn without NUL accepted");

	raw_str(&r, 3, "a\0b", 3, 0);
	is_int(ipc_get_str(&r, &s), -1, "NUL inside refused at get");
	is_string(s, "", "failed get gives the empty string");
	ipc_get_end(&r, &error);
	is_string(error, "NUL inside a string field", "with its reason");
	raw_str(&r, 3, "abc", 3, 'x');
	is_int(ipc_get_str(&r, &s), -1, "missing terminator refused");
	raw_str(&r, 4, "abc", 3, 0);
	is_int(ipc_get_str(&r, &s), -1, "length one past the record refused");
	raw_str(&r, UINT32_MAX, "abc", 3, 0);
	is_int(ipc_get_str(&r, &s), -1, "length 2^32-1 refused");
	raw_str(&r, 3, "abc", 3, 0);
	is_int(ipc_get_str(&r, &s), 0, "well-formed string accepted");
	is_string(s, "abc", "and read");
	raw_str(&r, 3, "abc", 3, 0);
	is_int(ipc_get_data(&r, &d, &dl), 0, "the same bytes read as data");
	is_mem(d, dl, "abc", 3, "take exactly the counted bytes");
	is_int(ipc_get_u32(&r, &v), -1, "u32 from the 1 byte left fails");
	is_int(v, 0, "failed u32 reads as 0");

	/* each fixed-size field one byte short (N-1) and exact (N) */
	ipc_msg_init(&r, 1, 1);
	r.len = 3;
	is_int(ipc_get_u32(&r, &v), -1, "u32 from 3 bytes fails");
	ipc_msg_init(&r, 1, 1);
	r.len = 4;
	is_int(ipc_get_u32(&r, &v), 0, "u32 from 4 bytes");
	ipc_msg_init(&r, 1, 1);
	r.len = 7;
	is_int(ipc_get_u64(&r, &big), -1, "u64 from 7 bytes fails");
	ipc_msg_init(&r, 1, 1);
	r.len = 8;
	is_int(ipc_get_u64(&r, &big), 0, "u64 from 8 bytes");
	ipc_msg_init(&r, 1, 1);
	memset(r.data, 0, 4);
	r.data[0] = 2;
	r.len = 5;
	is_int(ipc_get_data(&r, &d, &dl), -1, "data one byte short fails");
	ok(r.pos <= r.len, "a failed get never moves past the record");
}

static void
test_fd_passing(void)
{
	struct ipc_chan *a, *b;
	const char *error = NULL;
	char got[8] = "";
	int sv[2], p[2], q[2], fd, fd2, before;

	before = count_fds();
	make_pair(sv);
	make_pipe(p);
	a = ipc_chan_new(sv[0]);
	b = ipc_chan_new(sv[1]);
	ipc_msg_init(&m, 3, 3);
	ipc_add_str(&m, "client");
	ipc_msg_set_fd(&m, p[0]);
	ok(pass(a, b, &error) == 0, "record with an fd crosses");
	is_int(m.fd, -1, "the channel took the sent fd");
	fd = ipc_msg_take_fd(&r);
	/* the sender's copy was closed once sent, so the number may repeat */
	ok(fd >= 0, "the receiver got the fd");
	is_int(ipc_msg_take_fd(&r), -1, "taken only once");
	ok((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0, "received fd is CLOEXEC");
	is_int(write(p[1], "ping", 4), 4, "write into the pipe");
	is_int(read(fd, got, sizeof(got) - 1), 4, "read from the passed fd");
	is_string(got, "ping", "the bytes came through");
	close(fd);
	signal(SIGPIPE, SIG_IGN);
	ok(read_ends_gone(p[1]), "the sender closed its copy once sent");
	close(p[1]);

	/* two records with fds back to back, one flush */
	make_pipe(p);
	make_pipe(q);
	ipc_msg_init(&m, 3, 5);
	ipc_msg_set_fd(&m, p[0]);
	ipc_chan_send(a, &m, &error);
	ipc_msg_init(&m, 3, 6);
	ipc_msg_set_fd(&m, q[0]);
	ipc_chan_send(a, &m, &error);
	is_int(ipc_chan_flush(a, &error), 0, "both flushed");
	is_int(ipc_chan_recv(b, &r, &error), 1, "first record");
	fd = ipc_msg_take_fd(&r);
	is_int(ipc_chan_recv(b, &r, &error), 1, "second record");
	fd2 = ipc_msg_take_fd(&r);
	ok(write(p[1], "1", 1) == 1 && write(q[1], "2", 1) == 1 &&
	    fd >= 0 && fd2 >= 0 && read(fd, got, 1) == 1 && got[0] == '1' &&
	    read(fd2, got, 1) == 1 && got[0] == '2',
	    "each fd came with its own record");
	close(fd);
	close(fd2);
	ok(read_ends_gone(p[1]) && read_ends_gone(q[1]),
	    "no copy left behind in the sender");
	close(p[1]);
	close(q[1]);

	/* an fd queued but never sent is closed by ipc_chan_free */
	make_pipe(p);
	ipc_msg_init(&m, 3, 4);
	ipc_msg_set_fd(&m, p[0]);
	is_int(ipc_chan_send(a, &m, &error), 0, "queue a record with an fd");
	ipc_chan_free(&a);
	ipc_chan_free(&b);
	close(p[1]);
	is_int(count_fds(), before, "no fd left open after free");
}

/* Child: write rec one byte at a time, the first byte with fd, waiting
 * for the parent's go before each. */
static void
child_bytes(int s, int go, const unsigned char *rec, size_t len, int fd)
{
	char c;
	size_t i;

	for (i = 0; i < len; i++) {
		if (read(go, &c, 1) != 1)
			_exit(2);
		if (send_with_fds(s, rec + i, 1, &fd, i == 0 ? 1 : 0) != 1)
			_exit(3);
	}
	_exit(0);
}

static void
test_byte_by_byte(void)
{
	static unsigned char rec[IPC_HDR_SIZE + 64];
	struct ipc_chan *b;
	const char *error = NULL;
	struct pollfd pfd;
	size_t i, len, early = 0;
	int sv[2], go[2], p[2], st, ret = 0, fd;
	char got[4] = "";
	pid_t pid;

	build_full(&m);
	len = IPC_HDR_SIZE + m.len;
	if (len > sizeof(rec))
		bail("test record too long");
	put_hdr(rec, m.type, (uint32_t)m.len, m.id, IPC_HDR_F_FD);
	memcpy(rec + IPC_HDR_SIZE, m.data, m.len);
	make_pair(sv);
	make_pipe(go);
	make_pipe(p);
	if ((pid = fork()) < 0)
		bail("fork: %s", strerror(errno));
	if (pid == 0) {
		close(sv[1]);
		child_bytes(sv[0], go[0], rec, len, p[0]);
	}
	close(sv[0]);
	close(go[0]);
	close(p[0]);
	b = ipc_chan_new(sv[1]);
	for (i = 0; i < len; i++) {
		if (write(go[1], "g", 1) != 1)
			bail("write go");
		pfd.fd = sv[1];
		pfd.events = POLLIN;
		poll(&pfd, 1, 10000);
		ret = ipc_chan_recv(b, &r, &error);
		if (i + 1 < len && ret != 0)
			early++;
	}
	is_int(early, 0, "need more after each of the first %zu bytes",
	    len - 1);
	is_int(ret, 1, "record complete after the last byte");
	ok(read_full(&r, &error) == 0, "its fields read back");
	fd = ipc_msg_take_fd(&r);
	ok(fd >= 0, "the fd sent with the first byte is attached");
	ok(fd >= 0 && write(p[1], "ok", 2) == 2 && read(fd, got, 2) == 2 && strcmp(got, "ok") == 0,
	    "and works");
	if (fd >= 0)
		close(fd);
	close(p[1]);
	close(go[1]);
	waitpid(pid, &st, 0);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer exited cleanly");
	ipc_chan_free(&b);
}

static void
test_bad_fds(void)
{
	unsigned char hdr[IPC_HDR_SIZE];
	struct ipc_chan *b;
	const char *error = NULL;
	int sv[2], p1[2], p2[2], fds[10], before, i;

	signal(SIGPIPE, SIG_IGN);

	/* two fds in one sendmsg */
	before = count_fds();
	make_pair(sv);
	make_pipe(p1);
	make_pipe(p2);
	b = ipc_chan_new(sv[1]);
	put_hdr(hdr, 1, 0, 1, IPC_HDR_F_FD);
	fds[0] = p1[0];
	fds[1] = p2[0];
	is_int(send_with_fds(sv[0], hdr, sizeof(hdr), fds, 2), sizeof(hdr),
	    "hand-crafted sendmsg with two fds");
	close(p1[0]);
	close(p2[0]);
	is_int(ipc_chan_recv(b, &r, &error), -1, "two fds in one read: -1");
	is_string(error, "recv: more than one fd in one read", "reason");
	ok(read_ends_gone(p1[1]) && read_ends_gone(p2[1]),
	    "both received fds were closed");
	close(p1[1]);
	close(p2[1]);
	close(sv[0]);
	ipc_chan_free(&b);
	is_int(count_fds(), before, "fd count back to where it was");

	/* more fds than the control buffer takes: MSG_CTRUNC */
	make_pair(sv);
	make_pipe(p1);
	b = ipc_chan_new(sv[1]);
	for (i = 0; i < 10; i++)
		fds[i] = p1[0];
	send_with_fds(sv[0], hdr, sizeof(hdr), fds, 10);
	close(p1[0]);
	is_int(ipc_chan_recv(b, &r, &error), -1, "10 fds: -1");
	is_string(error, "recv: control data truncated", "reason");
	ok(read_ends_gone(p1[1]), "every received copy was closed");
	close(p1[1]);
	close(sv[0]);
	ipc_chan_free(&b);

	/* an fd with a record that does not announce one */
	make_pair(sv);
	make_pipe(p1);
	b = ipc_chan_new(sv[1]);
	put_hdr(hdr, 1, 0, 1, 0);
	send_with_fds(sv[0], hdr, sizeof(hdr), &p1[0], 1);
	close(p1[0]);
	is_int(ipc_chan_recv(b, &r, &error), 1, "unannounced fd: record comes");
	is_int(r.fd, -1, "without the fd");
	is_int(ipc_chan_recv(b, &r, &error), -1, "then the stray fd is -1");
	is_string(error, "recv: fd that no record claims", "reason");
	ok(read_ends_gone(p1[1]), "and the stray fd was closed");
	close(p1[1]);
	close(sv[0]);
	ipc_chan_free(&b);

	/* a record announcing an fd that never came */
	make_pair(sv);
	b = ipc_chan_new(sv[1]);
	put_hdr(hdr, 1, 0, 1, IPC_HDR_F_FD);
	if (write(sv[0], hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr))
		bail("write: %s", strerror(errno));
	is_int(ipc_chan_recv(b, &r, &error), -1, "announced fd missing: -1");
	close(sv[0]);
	ipc_chan_free(&b);
	is_int(count_fds(), before, "fd count unchanged after all of it");
}

static void
test_bad_headers(void)
{
	static unsigned char rec[IPC_HDR_SIZE + IPC_MAX_PAYLOAD];
	struct ipc_chan *b;
	const char *error = NULL;
	int sv[2];

	/* N on the wire: a hand-made header of exactly the maximum */
	make_pair(sv);
	b = ipc_chan_new(sv[1]);
	memset(rec, 'z', sizeof(rec));
	put_hdr(rec, 1, IPC_MAX_PAYLOAD, 2, 0);
	is_int(send(sv[0], rec, sizeof(rec), 0), sizeof(rec), "send N");
	is_int(ipc_chan_recv(b, &r, &error), 1, "length N accepted");
	is_int(r.len, IPC_MAX_PAYLOAD, "whole payload");
	put_hdr(rec, 1, IPC_MAX_PAYLOAD + 1, 2, 0);
	send(sv[0], rec, IPC_HDR_SIZE, 0);
	is_int(ipc_chan_recv(b, &r, &error), -1, "length N+1 is -1");
	ok(!ipc_chan_closed(b), "not a clean close");
	close(sv[0]);
	ipc_chan_free(&b);

	make_pair(sv);
	b = ipc_chan_new(sv[1]);
	put_hdr(rec, 1, 0xffffffff, 2, 0);
	send(sv[0], rec, IPC_HDR_SIZE, 0);
	is_int(ipc_chan_recv(b, &r, &error), -1, "garbage length is -1");
	close(sv[0]);
	ipc_chan_free(&b);

	make_pair(sv);
	b = ipc_chan_new(sv[1]);
	put_hdr(rec, 1, 0, 2, 0x80);
	send(sv[0], rec, IPC_HDR_SIZE, 0);
	is_int(ipc_chan_recv(b, &r, &error), -1, "unknown flag is -1");
	close(sv[0]);
	ipc_chan_free(&b);

	/* the peer goes away mid-record, in the header and in the payload */
	make_pair(sv);
	b = ipc_chan_new(sv[1]);
	put_hdr(rec, 1, 10, 2, 0);
	send(sv[0], rec, IPC_HDR_SIZE + 5, 0);
	is_int(ipc_chan_recv(b, &r, &error), 0, "half a record: need more");
	close(sv[0]);
	is_int(ipc_chan_recv(b, &r, &error), -1, "peer closed mid-payload: -1");
	is_string(error, "recv: peer closed in the middle of a record",
	    "reason");
	ok(!ipc_chan_closed(b), "not a clean close");
	ipc_chan_free(&b);

	make_pair(sv);
	b = ipc_chan_new(sv[1]);
	send(sv[0], rec, 3, 0);
	close(sv[0]);
	is_int(ipc_chan_recv(b, &r, &error), -1, "peer closed mid-header: -1");
	ipc_chan_free(&b);
}

static void
test_queue_limit(void)
{
	static char big[IPC_MAX_PAYLOAD - 4];
	struct ipc_chan *a;
	const char *error = NULL;
	size_t sent = 0;
	int sv[2], i, p[2], before;

	make_pair(sv);
	a = ipc_chan_new(sv[0]);
	ipc_msg_init(&m, 1, 1);
	ipc_add_data(&m, big, sizeof(big));
	while (ipc_chan_send(a, &m, &error) == 0)
		sent += IPC_HDR_SIZE + IPC_MAX_PAYLOAD;
	ok(sent <= IPC_QUEUE_MAX &&
	    sent + IPC_HDR_SIZE + IPC_MAX_PAYLOAD > IPC_QUEUE_MAX,
	    "queue fills up to IPC_QUEUE_MAX and no further (%zu)", sent);
	is_string(error, "output queue full", "reason");
	ok(ipc_chan_want_write(a), "write wanted");
	is_int(ipc_chan_flush(a, &error), 1, "flush into a full socket: 1");
	ipc_chan_free(&a);
	close(sv[1]);

	before = count_fds();
	make_pair(sv);
	make_pipe(p);
	a = ipc_chan_new(sv[0]);
	for (i = 0; i <= IPC_QUEUE_FDS_MAX; i++) {
		ipc_msg_init(&m, 1, (uint32_t)i);
		ipc_msg_set_fd(&m, dup(p[0]));
		if (ipc_chan_send(a, &m, &error) < 0)
			break;
	}
	is_int(i, IPC_QUEUE_FDS_MAX,
	    "IPC_QUEUE_FDS_MAX fds queue up, one more does not");
	ok(m.fd >= 0, "the refused record keeps its fd");
	ipc_msg_clear(&m);
	ipc_chan_free(&a);
	close(sv[1]);
	close(p[0]);
	close(p[1]);
	is_int(count_fds(), before, "every queued fd closed by free");
}

/* Child: send RECORDS records, flushing when the socket is full. */
static void
child_many(int s)
{
	struct ipc_chan *a = ipc_chan_new(s);
	const char *error;
	struct pollfd pfd;
	uint32_t i;
	int ret;

	for (i = 0; i < RECORDS; i++) {
		ipc_msg_init(&m, 5, i);
		ipc_add_u32(&m, i);
		ipc_add_str(&m, i % 2 ? "odd" : "even");
		ipc_add_data(&m, pattern + i % 7, i % 13);
		if (ipc_chan_send(a, &m, &error) < 0)
			_exit(2);
		/* let up to 64 records queue up, then drain */
		while ((ret = ipc_chan_flush(a, &error)) == 1 &&
		    i % 64 == 0) {
			pfd.fd = s;
			pfd.events = POLLOUT;
			poll(&pfd, 1, -1);
		}
		if (ret < 0)
			_exit(3);
	}
	while (ipc_chan_flush(a, &error) == 1) {
		pfd.fd = s;
		pfd.events = POLLOUT;
		poll(&pfd, 1, -1);
	}
	ipc_chan_free(&a);
	_exit(0);
}

/* One received record is what child_many sent as number want. */
static int
check_many(struct ipc_msg *b, uint32_t want)
{
	const char *s, *error;
	const unsigned char *d;
	size_t dl;
	uint32_t v;

	ipc_get_u32(b, &v);
	ipc_get_str(b, &s);
	ipc_get_data(b, &d, &dl);
	return ipc_get_end(b, &error) == 0 && b->id == want && v == want &&
	    strcmp(s, want % 2 ? "odd" : "even") == 0 && dl == want % 13 &&
	    (dl == 0 || memcmp(d, pattern + want % 7, dl) == 0);
}

static void
test_many(void)
{
	struct ipc_chan *b;
	const char *error = NULL;
	struct pollfd pfd;
	uint32_t n = 0, bad = 0;
	int sv[2], ret, st;
	pid_t pid;

	make_pair(sv);
	if ((pid = fork()) < 0)
		bail("fork: %s", strerror(errno));
	if (pid == 0) {
		close(sv[1]);
		child_many(sv[0]);
	}
	close(sv[0]);
	b = ipc_chan_new(sv[1]);
	for (;;) {
		ret = ipc_chan_recv(b, &r, &error);
		if (ret == 1) {
			if (!check_many(&r, n) && bad++ < 3)
				diag("record %u wrong", n);
			n++;
			continue;
		}
		if (ret < 0)
			break;
		pfd.fd = sv[1];
		pfd.events = POLLIN;
		poll(&pfd, 1, -1);
	}
	is_int(n, RECORDS, "%d records arrived", RECORDS);
	is_int(bad, 0, "all in order and intact");
	ok(ipc_chan_closed(b), "then a clean close (%s)", error);
	waitpid(pid, &st, 0);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sender exited cleanly");
	ipc_chan_free(&b);
}

/*
 * Records of sizes around the channel's first input buffer (4 KiB) and at
 * the maximum, in one stream that arrives in 777-byte pieces, so that
 * headers and payloads are split across reads while the buffer grows,
 * empties and comes back; then the same sizes from one queue flushed at
 * once.
 */
static const size_t sizes[] = {
	5, IPC_MAX_PAYLOAD, 4096 - IPC_HDR_SIZE - 1, 4096 - IPC_HDR_SIZE,
	4096 - IPC_HDR_SIZE + 1, 0, IPC_MAX_PAYLOAD - 1, 1, 8192, 3
};
#define NSIZES	(sizeof(sizes) / sizeof(sizes[0]))

static void
fill_sized(struct ipc_msg *b, size_t i)
{
	ipc_msg_init(b, 300 + (uint32_t)i, (uint32_t)i);
	for (size_t k = 0; k < sizes[i]; k++)
		b->data[k] = (unsigned char)(k * 7 + i);
	b->len = sizes[i];
}

static int
check_sized(const struct ipc_msg *b, size_t i)
{
	if (b->type != 300 + i || b->id != i || b->len != sizes[i])
		return 0;
	for (size_t k = 0; k < sizes[i]; k++)
		if (b->data[k] != (unsigned char)(k * 7 + i))
			return 0;
	return 1;
}

static void
test_input_sizes(void)
{
	static unsigned char stream[NSIZES * (IPC_HDR_SIZE + IPC_MAX_PAYLOAD)];
	struct ipc_chan *a, *b;
	const char *error = NULL;
	size_t len = 0, off, n, got = 0, bad = 0, i;
	int sv[2], ret = 0;

	for (i = 0; i < NSIZES; i++) {
		fill_sized(&m, i);
		put_hdr(stream + len, m.type, (uint32_t)m.len, m.id, 0);
		memcpy(stream + len + IPC_HDR_SIZE, m.data, m.len);
		len += IPC_HDR_SIZE + m.len;
	}
	make_pair(sv);
	b = ipc_chan_new(sv[1]);
	for (off = 0; off < len; off += n) {
		n = len - off < 777 ? len - off : 777;
		if (write(sv[0], stream + off, n) != (ssize_t)n)
			bail("write: %s", strerror(errno));
		while ((ret = ipc_chan_recv(b, &r, &error)) == 1) {
			if (got < NSIZES && !check_sized(&r, got))
				bad++;
			got++;
		}
		if (ret < 0)
			break;
	}
	is_int(ret, 0, "pieces of 777 bytes: no error (%s)",
	    ret < 0 ? error : "none");
	is_int(got, NSIZES, "every record came out whole");
	is_int(bad, 0, "in order, with its bytes");

	a = ipc_chan_new(sv[0]);
	for (i = 0; i < NSIZES; i++) {
		fill_sized(&m, i);
		if (ipc_chan_send(a, &m, &error) < 0)
			bail("send: %s", error);
	}
	got = bad = 0;
	while (got < NSIZES) {
		ret = ipc_chan_flush(a, &error);
		if (ret < 0)
			break;
		while ((ret = ipc_chan_recv(b, &r, &error)) == 1) {
			if (!check_sized(&r, got))
				bad++;
			got++;
		}
		if (ret < 0)
			break;
	}
	is_int(got, NSIZES, "one queue of the same records: all came");
	is_int(bad, 0, "in order, with their bytes");
	is_int(ipc_chan_flush(a, &error), 0, "queue empty");
	fill_sized(&m, 1);
	ok(pass(a, b, &error) == 0 && check_sized(&r, 1),
	    "the largest record again after both buffers emptied (%s)",
	    error != NULL ? error : "ok");
	ipc_chan_free(&a);
	ipc_chan_free(&b);
}

/* Child: answer one request with id + id_delta, or (silent) never. */
static void
serve_one(int s, int id_delta, int silent)
{
	struct ipc_chan *a = ipc_chan_new(s);
	const char *error, *str;
	struct pollfd pfd;
	int ret;

	while ((ret = ipc_chan_recv(a, &r, &error)) == 0) {
		pfd.fd = s;
		pfd.events = POLLIN;
		poll(&pfd, 1, -1);
	}
	if (ret < 0)
		_exit(2);
	ipc_get_str(&r, &str);
	if (ipc_get_end(&r, &error) < 0)
		_exit(3);
	if (silent) {
		/* hold the socket open without answering */
		while (ipc_chan_recv(a, &r, &error) >= 0) {
			pfd.fd = s;
			pfd.events = POLLIN;
			poll(&pfd, 1, -1);
		}
		_exit(0);
	}
	ipc_msg_init(&m, 2, r.id + (uint32_t)id_delta);
	ipc_add_str(&m, str);
	ipc_add_str(&m, "answered");
	ipc_chan_send(a, &m, &error);
	while (ipc_chan_flush(a, &error) == 1) {
		pfd.fd = s;
		pfd.events = POLLOUT;
		poll(&pfd, 1, -1);
	}
	ipc_chan_free(&a);
	_exit(0);
}

/* One ipc_call against serve_one; the error is copied out of the channel
 * (it lives there until ipc_chan_free). */
static int
call_child(int id_delta, int silent, int timeout, const char **error_r)
{
	static char error[256];
	struct ipc_chan *b;
	int sv[2], ret, st;
	pid_t pid;

	make_pair(sv);
	if ((pid = fork()) < 0)
		bail("fork: %s", strerror(errno));
	if (pid == 0) {
		close(sv[1]);
		serve_one(sv[0], id_delta, silent);
	}
	close(sv[0]);
	b = ipc_chan_new(sv[1]);
	ipc_msg_init(&m, 1, 77);
	ipc_add_str(&m, "question");
	*error_r = NULL;
	ret = ipc_call(b, &m, &r, timeout, error_r);
	if (*error_r != NULL) {
		snprintf(error, sizeof(error), "%s", *error_r);
		*error_r = error;
	}
	ipc_chan_free(&b);
	waitpid(pid, &st, 0);
	return ret;
}

static void
test_call(void)
{
	const char *error = NULL, *s1, *s2;

	is_int(call_child(0, 0, 10000, &error), 0, "ipc_call gets its answer");
	is_int(r.id, 77, "with the request's id");
	ipc_get_str(&r, &s1);
	ipc_get_str(&r, &s2);
	ok(ipc_get_end(&r, &error) == 0 && strcmp(s1, "question") == 0 &&
	    strcmp(s2, "answered") == 0, "and the answer's fields");
	is_int(call_child(1, 0, 10000, &error), -1, "wrong answer id: -1");
	is_string(error, "ipc call: answer id 78 for request 77", "reason");
	is_int(call_child(0, 1, 50, &error), -1, "no answer: timeout, -1");
	is_string(error, "ipc call timed out", "reason");
}

int
main(void)
{
	test_round_trip();
	test_builder_limits();
	test_truncations();
	test_strings();
	test_fd_passing();
	test_byte_by_byte();
	test_bad_fds();
	test_bad_headers();
	test_queue_limit();
	test_many();
	test_input_sizes();
	test_call();
	return done_testing();
}
