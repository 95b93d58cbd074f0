/*
 * Unit tests for lib/conn_tls.c: a server conn on the ioloop, over a
 * socketpair, against an OpenSSL client in a forked child that blocks.
 * The child checks what it receives and exits with the number of the step
 * that failed (0: all good); the parent asserts what the server saw.
 * Implicit TLS echo (lines in one record, byte by byte, with NUL), 1 MiB
 * of replies through output flow control with decrypted bytes left in
 * OpenSSL (pending), the STLS upgrade with pipelined plaintext that must
 * be dropped, refusals of conn_tls_start, clients that vanish during the
 * handshake or speak no TLS, and the OpenSSL memory of an idle session.
 * Certificates are made with the openssl command (skipped without it).
 * Timers only bound runs; nothing asserts elapsed time.
 */
#include "config.h"
#include <sys/socket.h>
#include <sys/wait.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "conn.h"
#include "conn_tls.h"
#include "ioloop.h"
#include "tls.h"
#include "tap.h"
#include "ossl_mem.h"

#define FLOW_LINES	256
#define FLOW_LINE_LEN	64	/* 256 x 64 = 16 KiB: one TLS record */
#define FLOW_REPLY	4096	/* 256 x 4 KiB = 1 MiB back */
#define FLOW_SOFT	(16 * 1024)
#define FLOW_HARD	(64 * 1024)
#define MANY_LINES	40
#define MANY_LEN	60
#define RUN_MS		10000	/* bound of one scenario */

static char dir[] = "/tmp/loft-conn-tls-XXXXXX";
static char cert[256], key[256];
static struct ioloop *loop;
static struct tls_ctx *sctx;

static int
run(const char *cmd)
{
	int status = system(cmd);

	return status != -1 && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0 ? 0 : -1;
}

static void
make_certs(void)
{
	char cmd[1024];

	if (run("openssl version >/dev/null 2>&1") < 0)
		skip_all("no openssl command");
	if (mkdtemp(dir) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	snprintf(cmd, sizeof(cmd), "openssl req -x509 -newkey ec -pkeyopt "
	    "ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost -days 2 "
	    "-keyout %s -out %s >/dev/null 2>&1", key, cert);
	if (run(cmd) < 0)
		bail("openssl could not make the test certificate");
}

static unsigned char
flow_byte(size_t off)
{
	return (unsigned char)((off * 7 + off / 251) & 0xff);
}

/* --- the client, in the child: returns 0 or the failed step --- */

static SSL *
cl_connect(int fd)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl;

	if (ctx == NULL || (ssl = SSL_new(ctx)) == NULL ||
	    SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1)
		return NULL;
	return ssl;
}

static int
cl_write(SSL *ssl, const void *buf, size_t len)
{
	size_t n;

	return SSL_write_ex(ssl, buf, len, &n) == 1 && n == len ? 0 : -1;
}

static int
cl_read(SSL *ssl, unsigned char *buf, size_t len)
{
	size_t got = 0, n;

	while (got < len) {
		if (SSL_read_ex(ssl, buf + got, len - got, &n) != 1)
			return -1;
		got += n;
	}
	return 0;
}

static int
cl_expect(SSL *ssl, const char *text)
{
	unsigned char buf[256];
	size_t len = strlen(text);

	return len <= sizeof(buf) && cl_read(ssl, buf, len) == 0 &&
	    memcmp(buf, text, len) == 0 ? 0 : -1;
}

/* The server's close: a close_notify, then EOF. */
static int
cl_expect_close_notify(SSL *ssl)
{
	unsigned char b;
	size_t n;

	return SSL_read_ex(ssl, &b, 1, &n) != 1 &&
	    SSL_get_error(ssl, 0) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

static int
cl_quit(SSL *ssl)
{
	if (cl_write(ssl, "QUIT\r\n", 6) < 0 || cl_expect(ssl, "BYE\r\n") < 0)
		return -1;
	return cl_expect_close_notify(ssl);
}

static int
client_echo(int fd)
{
	static const unsigned char nul[] = "a\0b\r\n";
	const char *bytes = "byte by byte\r\n";
	unsigned char b[sizeof(nul)];
	static unsigned char many[MANY_LINES * MANY_LEN + 7];
	SSL *ssl = cl_connect(fd);
	size_t i;

	if (ssl == NULL)
		return 1;
	if (cl_write(ssl, "hello\r\nworld\r\n", 14) < 0 ||
	    cl_expect(ssl, "hello\r\nworld\r\n") < 0)
		return 2;
	for (i = 0; bytes[i] != '\0'; i++)	/* one record per byte */
		if (cl_write(ssl, bytes + i, 1) < 0)
			return 3;
	if (cl_expect(ssl, "byte by byte\r\n") < 0)
		return 4;
	/* 2400 bytes of silent lines then COUNT, in one record, more than
	 * the server's 1024-byte input buffer: the rest waits decrypted
	 * inside OpenSSL, where epoll cannot see it, and no output is
	 * queued to wake the server (only the transport's pending can). */
	memset(many, 'm', sizeof(many));
	for (i = 0; i < MANY_LINES; i++)
		memcpy(many + (i + 1) * MANY_LEN - 2, "\r\n", 2);
	memcpy(many + MANY_LINES * MANY_LEN, "COUNT\r\n", 7);
	if (cl_write(ssl, many, sizeof(many)) < 0 ||
	    cl_expect(ssl, "+OK 40\r\n") < 0)
		return 8;
	if (cl_write(ssl, nul, sizeof(nul) - 1) < 0 ||
	    cl_read(ssl, b, sizeof(nul) - 1) < 0 ||
	    memcmp(b, nul, sizeof(nul) - 1) != 0)
		return 5;
	if (cl_write(ssl, "IDLE\r\n", 6) < 0 ||
	    cl_expect(ssl, "+OK idle\r\n") < 0)
		return 6;
	return cl_quit(ssl) < 0 ? 7 : 0;
}

static int
client_flow(int fd)
{
	static unsigned char lines[FLOW_LINES * FLOW_LINE_LEN];
	static unsigned char got[FLOW_LINES * FLOW_REPLY];
	SSL *ssl = cl_connect(fd);
	size_t i;

	if (ssl == NULL)
		return 1;
	memset(lines, 'x', sizeof(lines));
	for (i = 0; i < FLOW_LINES; i++) {
		memcpy(lines + i * FLOW_LINE_LEN, "GET ", 4);
		memcpy(lines + (i + 1) * FLOW_LINE_LEN - 2, "\r\n", 2);
	}
	if (cl_write(ssl, lines, sizeof(lines)) < 0)
		return 2;
	/* Let the server fill its queue before we read. */
	usleep(100 * 1000);
	if (cl_read(ssl, got, sizeof(got)) < 0)
		return 3;
	for (i = 0; i < sizeof(got); i++)
		if (got[i] != flow_byte(i))
			return 4;
	return cl_quit(ssl) < 0 ? 5 : 0;
}

static int
client_stls(int fd)
{
	static const char cmds[] = "STLS\r\nUSER x\r\n";
	char reply[5];
	SSL *ssl;

	/* One write: the USER line is pipelined plaintext. */
	if (write(fd, cmds, sizeof(cmds) - 1) != sizeof(cmds) - 1)
		return 1;
	if (recv(fd, reply, sizeof(reply), MSG_WAITALL) != sizeof(reply) ||
	    memcmp(reply, "+OK\r\n", 5) != 0)
		return 2;
	if ((ssl = cl_connect(fd)) == NULL)
		return 3;
	if (cl_write(ssl, "NOOP\r\n", 6) < 0 ||
	    cl_expect(ssl, "+OK noop\r\n") < 0)
		return 4;
	return cl_quit(ssl) < 0 ? 5 : 0;
}

/* The first bytes of a real ClientHello; all of it if whole. */
static int
client_hello(int fd, bool whole)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	unsigned char hello[4096], b[64];
	BIO *rb, *wb;
	SSL *ssl;
	int n;

	if (ctx == NULL || (ssl = SSL_new(ctx)) == NULL)
		return 1;
	rb = BIO_new(BIO_s_mem());
	wb = BIO_new(BIO_s_mem());
	SSL_set_bio(ssl, rb, wb);
	if (SSL_connect(ssl) == 1 || (n = BIO_read(wb, hello,
	    sizeof(hello))) <= 10)
		return 2;
	if (!whole)
		n /= 2;
	if (write(fd, hello, (size_t)n) != n)
		return 3;
	/* Whole: wait for the server's flight, then vanish. */
	if (whole && read(fd, b, sizeof(b)) <= 0)
		return 4;
	return 0;
}

static int
client_garbage(int fd)
{
	static const char req[] = "GET / HTTP/1.0\r\n\r\n";
	char b[64];

	if (write(fd, req, sizeof(req) - 1) != sizeof(req) - 1)
		return 1;
	while (read(fd, b, sizeof(b)) > 0)
		continue;
	return 0;
}

enum client {
	CL_ECHO, CL_FLOW, CL_STLS, CL_HALF_HELLO, CL_HELLO_GONE, CL_GARBAGE
};

static int
client_run(enum client which, int fd)
{
	switch (which) {
	case CL_ECHO:
		return client_echo(fd);
	case CL_FLOW:
		return client_flow(fd);
	case CL_STLS:
		return client_stls(fd);
	case CL_HALF_HELLO:
		return client_hello(fd, false);
	case CL_HELLO_GONE:
		return client_hello(fd, true);
	case CL_GARBAGE:
		return client_garbage(fd);
	}
	return 99;
}

/* --- the server, in the parent --- */

struct srv {
	struct conn *conn;
	bool implicit, stls;
	bool starting;		/* STLS answered, TLS not started */
	bool idle_pending;
	size_t base_bytes, idle_bytes;
	char lines[512];	/* "line|" per line */
	size_t lines_len;
	char info[128];
	char discarded[64];
	int start_queued, start_twice;
	char start_error[256];
	int ev[6];
	int write_fails, many;
	bool was_full;
	size_t max_out, flow_off;
	char error[256];
	bool done;
};

static void
srv_append(struct srv *s, const unsigned char *p, size_t n)
{
	if (s->lines_len + n + 2 < sizeof(s->lines)) {
		memcpy(s->lines + s->lines_len, p, n);
		s->lines_len += n;
		s->lines[s->lines_len++] = '|';
		s->lines[s->lines_len] = '\0';
	}
}

static void
srv_write(struct srv *s, const void *p, size_t n)
{
	if (conn_write(s->conn, p, n) < 0)
		s->write_fails++;
	if (conn_output_size(s->conn) > s->max_out)
		s->max_out = conn_output_size(s->conn);
	if (conn_output_full(s->conn))
		s->was_full = true;
}

static void
srv_flow_reply(struct srv *s)
{
	unsigned char buf[FLOW_REPLY];
	size_t i;

	for (i = 0; i < sizeof(buf); i++)
		buf[i] = flow_byte(s->flow_off + i);
	s->flow_off += sizeof(buf);
	srv_write(s, buf, sizeof(buf));
}

/* One command; false: take no more lines now. */
static bool
srv_line(struct srv *s, const unsigned char *line, size_t len)
{
	const char *error;

	if (s->info[0] == '\0' && conn_tls_get(s->conn) != NULL)
		snprintf(s->info, sizeof(s->info), "%s",
		    conn_tls_info(s->conn));
	if (len > 4 && memcmp(line, "GET ", 4) == 0) {
		srv_flow_reply(s);
		return true;
	}
	if (len == MANY_LEN - 2 && line[0] == 'm') {
		s->many++;
		return true;
	}
	if (len == 5 && memcmp(line, "COUNT", 5) == 0) {
		conn_printf(s->conn, "+OK %d\r\n", s->many);
		return true;
	}
	srv_append(s, line, len);
	if (len == 4 && memcmp(line, "QUIT", 4) == 0) {
		srv_write(s, "BYE\r\n", 5);
		conn_close_after_flush(s->conn);
		return false;
	}
	if (len == 4 && memcmp(line, "STLS", 4) == 0 && s->stls) {
		srv_write(s, "+OK\r\n", 5);
		s->start_queued = conn_tls_start(s->conn, sctx, &error);
		if (s->start_queued < 0)
			snprintf(s->start_error, sizeof(s->start_error),
			    "%s", error);
		s->starting = true;
		return false;
	}
	if (len == 4 && memcmp(line, "NOOP", 4) == 0)
		srv_write(s, "+OK noop\r\n", 10);
	else if (len == 4 && memcmp(line, "IDLE", 4) == 0) {
		srv_write(s, "+OK idle\r\n", 10);
		s->idle_pending = true;
	} else {
		srv_write(s, line, len);
		srv_write(s, "\r\n", 2);
	}
	return true;
}

static void
srv_input(struct srv *s)
{
	const unsigned char *line;
	size_t len;
	int r;

	while (!s->starting && !conn_output_full(s->conn)) {
		r = conn_read_line(s->conn, &line, &len);
		if (r <= 0 || !srv_line(s, line, len))
			return;
	}
}

static void
srv_drained(struct srv *s)
{
	const unsigned char *p;
	const char *error;
	size_t len;

	if (s->idle_pending) {
		s->idle_pending = false;
		s->idle_bytes = ossl_bytes - s->base_bytes;
	}
	if (!s->starting)
		return;
	s->starting = false;
	p = conn_input_peek(s->conn, &len);
	snprintf(s->discarded, sizeof(s->discarded), "%.*s", (int)len, p);
	conn_input_discard(s->conn);
	if (conn_tls_start(s->conn, sctx, &error) < 0)
		bail("conn_tls_start after STLS: %s", error);
	s->start_twice = conn_tls_start(s->conn, sctx, &error);
}

static void
srv_event(struct conn *c, enum conn_event ev, void *ctx)
{
	struct srv *s = ctx;

	s->ev[ev]++;
	switch (ev) {
	case CONN_EV_INPUT:
		srv_input(s);
		break;
	case CONN_EV_DRAINED:
		srv_drained(s);
		break;
	default:
		if (conn_error(c) != NULL)
			snprintf(s->error, sizeof(s->error), "%s",
			    conn_error(c));
		conn_close(&s->conn);
		s->done = true;
		ioloop_stop(loop);
		break;
	}
}

static void
stop_cb(void *ctx)
{
	(void)ctx;
	ioloop_stop(loop);
}

/* Run a scenario: returns the child's exit status (0 good), -1 if it
 * died otherwise. */
static int
scenario(struct srv *s, enum client which, bool implicit, bool small_buf)
{
	struct timeout *t;
	const char *error;
	int fds[2], status, small = 4096;
	pid_t pid;

	memset(s, 0, sizeof(*s));
	s->start_queued = s->start_twice = 1;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0)
		bail("socketpair: %s", strerror(errno));
	if (small_buf)
		setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small,
		    sizeof(small));
	fflush(stdout);
	if ((pid = fork()) < 0)
		bail("fork: %s", strerror(errno));
	if (pid == 0) {
		close(fds[0]);
		_exit(client_run(which, fds[1]));
	}
	close(fds[1]);
	s->conn = conn_new(loop, fds[0], 1024, srv_event, s);
	s->stls = !implicit;
	if (which == CL_FLOW)
		conn_set_output_limits(s->conn, FLOW_SOFT, FLOW_HARD);
	s->base_bytes = ossl_bytes;
	if (implicit && conn_tls_start(s->conn, sctx, &error) < 0)
		bail("conn_tls_start: %s", error);
	t = timeout_add(loop, RUN_MS, false, stop_cb, NULL);
	ioloop_run(loop);
	timeout_remove(&t);
	if (!s->done) {
		diag("scenario %d did not end", (int)which);
		conn_close(&s->conn);
		kill(pid, SIGKILL);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static void
test_echo(void)
{
	static const char want[] = "hello|world|byte by byte|a\0b|IDLE|QUIT|";
	struct srv s;

	is_int(scenario(&s, CL_ECHO, true, false), 0,
	    "implicit TLS: the client got its lines back and a close_notify");
	ok(s.done && s.ev[CONN_EV_CLOSED] == 1 && s.ev[CONN_EV_ERROR] == 0,
	    "the server ends with CLOSED after flushing BYE");
	is_mem(s.lines, s.lines_len, want, sizeof(want) - 1,
	    "the server saw every line, "
	    "the one sent byte by byte and the one with a NUL");
	ok(strncmp(s.info, "TLSv1.", 6) == 0 && strstr(s.info, "cipher"),
	    "conn_tls_info names the protocol and cipher");
	diag("conn_tls_info: %s", s.info);
	is_int(s.many, MANY_LINES, "40 lines from one record larger than "
	    "the input buffer, all read (pending bytes)");
	is_int(s.write_fails, 0, "no write refused");
	ok(s.idle_bytes > 0 && s.idle_bytes <= 64 * 1024, "an idle TLS "
	    "connection holds %zu bytes of OpenSSL memory (at most 65536)",
	    s.idle_bytes);
}

static void
test_flow(void)
{
	struct srv s;

	is_int(scenario(&s, CL_FLOW, true, true), 0,
	    "1 MiB of replies arrived intact, then BYE and close_notify");
	is_int((int)s.flow_off, FLOW_LINES * FLOW_REPLY, "all 256 answered");
	ok(s.was_full, "the output queue passed the soft limit (reading "
	    "paused)");
	ok(s.max_out <= FLOW_SOFT + FLOW_REPLY, "the queue never "
	    "held more than soft limit + one reply (%zu)", s.max_out);
	is_int(s.write_fails, 0, "no write refused");
	ok(s.done && s.ev[CONN_EV_CLOSED] == 1 && s.ev[CONN_EV_ERROR] == 0,
	    "clean end");
}

static void
test_stls(void)
{
	struct srv s;

	is_int(scenario(&s, CL_STLS, false, false), 0,
	    "STLS: +OK in plaintext, handshake, NOOP answered inside TLS");
	is_string(s.lines, "STLS|NOOP|QUIT|",
	    "the server never saw the pipelined USER x");
	is_string(s.discarded, "USER x\r\n",
	    "the pipelined plaintext was buffered, and discarded");
	is_int(s.start_queued, -1,
	    "conn_tls_start refuses while the +OK is queued");
	ok(strstr(s.start_error, "queued") != NULL, "... saying why: %s",
	    s.start_error);
	is_int(s.start_twice, -1, "conn_tls_start refuses a second start");
	ok(strncmp(s.info, "TLSv1.", 6) == 0, "TLS was on for NOOP");
	ok(s.done && s.ev[CONN_EV_ERROR] == 0, "clean end");
}

static void
test_vanish(enum client which, const char *name, const char *want)
{
	struct srv s;

	is_int(scenario(&s, which, true, false), 0, "%s: client ran", name);
	ok(s.done && s.ev[CONN_EV_ERROR] + s.ev[CONN_EV_CLOSED] == 1,
	    "%s: one ERROR or CLOSED, and the conn was closed", name);
	ok(s.ev[CONN_EV_INPUT] == 0 && s.lines_len == 0,
	    "%s: no input reached the owner", name);
	ok(strstr(s.error, want) != NULL, "%s: error \"%s\"", name, s.error);
}

static void
test_plain_info(void)
{
	int fds[2];
	struct srv s;
	struct conn *c;
	const char *error;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0)
		bail("socketpair: %s", strerror(errno));
	c = conn_new(loop, fds[0], 1024, srv_event, &s);
	is_string(conn_tls_info(c), "plaintext", "plaintext before TLS");
	ok(conn_tls_get(c) == NULL, "no session before TLS");
	ok(conn_tls_start(c, sctx, &error) == 0, "start");
	ok(conn_tls_get(c) != NULL, "a session after");
	is_string(conn_tls_info(c), "handshake not done",
	    "info before the handshake");
	conn_close(&c);
	close(fds[1]);
}

int
main(void)
{
	const char *error;
	char cmd[512];

	if (ossl_mem_install() != 1)
		bail("CRYPTO_set_mem_functions failed");
	signal(SIGPIPE, SIG_IGN);
	alarm(120);
	make_certs();
	if (tls_ctx_new(cert, key, "TLSv1.2, TLSv1.3", "", "", &sctx,
	    &error) < 0)
		bail("tls_ctx_new: %s", error);
	loop = ioloop_new();
	test_plain_info();
	test_echo();
	test_flow();
	test_stls();
	test_vanish(CL_HALF_HELLO, "half a ClientHello", "TLS handshake");
	test_vanish(CL_HELLO_GONE, "gone after ClientHello",
	    "TLS handshake");
	test_vanish(CL_GARBAGE, "HTTP instead of TLS", "TLS handshake");
	ioloop_free(&loop);
	tls_ctx_free(&sctx);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	run(cmd);
	return done_testing();
}
