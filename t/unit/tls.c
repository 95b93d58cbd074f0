/*
 * tls.c: tests of lib/tls.c. Certificates are made at start-up with the
 * openssl command (skipped without it) in a temporary directory. The
 * server side is driven the way the event loop will drive it: both ends of
 * a socketpair are non-blocking, and a pump calls each side in turn until
 * neither has anything to do. The client is OpenSSL's, in-process; one
 * test runs "openssl s_client" against a forked server on 127.0.0.1.
 */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include "conf.h"
#include "tls.h"
#include "tap.h"
#include "ossl_mem.h"

#define PUMP_MAX	200000	/* rounds before a pump gives up */
#define BIG_SIZE	(1024 * 1024)

static char dir[] = "/tmp/loft-tls-XXXXXX";
static char cert1[256], key1[256], cert2[256], key2[256], combined[256];
static char garbage[256], missing[256], enckey[256];

struct pair {
	int sfd, cfd;
	struct tls_conn *s;
	SSL *cl;
};

static void
path(char *out, size_t size, const char *name)
{
	snprintf(out, size, "%s/%s", dir, name);
}

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
	char cmd[4096];

	if (run("openssl version >/dev/null 2>&1") < 0)
		skip_all("no openssl command");
	if (mkdtemp(dir) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	path(cert1, sizeof(cert1), "cert1.pem");
	path(key1, sizeof(key1), "key1.pem");
	path(cert2, sizeof(cert2), "cert2.pem");
	path(key2, sizeof(key2), "key2.pem");
	path(combined, sizeof(combined), "combined.pem");
	path(garbage, sizeof(garbage), "garbage.pem");
	path(missing, sizeof(missing), "missing.pem");
	path(enckey, sizeof(enckey), "enckey.pem");
	snprintf(cmd, sizeof(cmd), "openssl req -x509 -newkey rsa:2048 "
	    "-nodes -subj /CN=localhost -days 2 -keyout %s -out %s "
	    ">/dev/null 2>&1 && openssl req -x509 -newkey ec -pkeyopt "
	    "ec_paramgen_curve:prime256v1 -nodes -subj /CN=other -days 2 "
	    "-keyout %s -out %s >/dev/null 2>&1 && cat %s %s >%s && "
	    "echo not a certificate >%s && openssl pkey -in %s -aes128 "
	    "-passout pass:secret -out %s 2>/dev/null",
	    key1, cert1, key2, cert2, cert1, key1, combined, garbage, key1,
	    enckey);
	if (run(cmd) < 0)
		bail("openssl could not make the test certificates");
}

static SSL_CTX *
client_ctx(int min, int max, const char *ciphers)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		bail("SSL_CTX_new failed");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (min == TLS1_1_VERSION)
		SSL_CTX_set_security_level(ctx, 0);
	SSL_CTX_set_min_proto_version(ctx, min);
	SSL_CTX_set_max_proto_version(ctx, max);
	if (ciphers != NULL && SSL_CTX_set_cipher_list(ctx, ciphers) != 1)
		bail("client cipher list %s refused", ciphers);
	return ctx;
}

static struct tls_ctx *
server_ctx(const char *cert, const char *key, const char *protocols,
    const char *ciphers, const char *suites)
{
	struct tls_ctx *ctx;
	const char *error;

	if (tls_ctx_new(cert, key, protocols, ciphers, suites, &ctx,
	    &error) < 0)
		bail("tls_ctx_new: %s", error);
	return ctx;
}

static void
pair_new(struct pair *p, struct tls_ctx *ctx, SSL_CTX *cctx)
{
	int fds[2], small = 4096;
	const char *error;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0)
		bail("socketpair: %s", strerror(errno));
	p->sfd = fds[0];
	p->cfd = fds[1];
	/* Small socket buffers, so that writes stop half-way. */
	setsockopt(p->sfd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(p->cfd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	fcntl(p->sfd, F_SETFL, O_NONBLOCK);
	fcntl(p->cfd, F_SETFL, O_NONBLOCK);
	if (tls_conn_new(ctx, p->sfd, &p->s, &error) < 0)
		bail("tls_conn_new: %s", error);
	if ((p->cl = SSL_new(cctx)) == NULL || SSL_set_fd(p->cl, p->cfd) != 1)
		bail("client SSL_new failed");
	SSL_set_connect_state(p->cl);
}

static void
pair_free(struct pair *p)
{
	tls_conn_free(&p->s);
	SSL_free(p->cl);
	close(p->sfd);
	if (p->cfd >= 0)
		close(p->cfd);
}

/* client_status: the client's result as tls.h would give it. */
static ssize_t
client_status(SSL *cl, int ret)
{
	switch (SSL_get_error(cl, ret)) {
	case SSL_ERROR_WANT_READ:
		return TLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TLS_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default:
		return -1;
	}
}

static ssize_t
client_read(SSL *cl, void *buf, size_t len)
{
	size_t n;
	int ret;

	ERR_clear_error();
	if ((ret = SSL_read_ex(cl, buf, len, &n)) == 1)
		return (ssize_t)n;
	return client_status(cl, ret);
}

static ssize_t
client_write(SSL *cl, const void *buf, size_t len)
{
	size_t n;
	int ret;

	ERR_clear_error();
	if ((ret = SSL_write_ex(cl, buf, len, &n)) == 1)
		return (ssize_t)n;
	return client_status(cl, ret);
}

/* handshake: pump both sides until both are done (0) or one fails (-1).
 * The server side only ever reads, as a server waiting for a command. */
static int
handshake(struct pair *p)
{
	unsigned char b[16];
	ssize_t s = TLS_WANT_READ;
	int c = 0, i;

	for (i = 0; i < PUMP_MAX; i++) {
		if (!tls_conn_handshake_done(p->s) &&
		    (s = tls_conn_read(p->s, b, sizeof(b))) == -1)
			return -1;
		if (c != 1) {
			ERR_clear_error();
			c = SSL_do_handshake(p->cl);
			if (c <= 0 && client_status(p->cl, c) == -1)
				return -1;
		}
		if (c == 1 && tls_conn_handshake_done(p->s))
			return 0;
	}
	diag("handshake pump gave up (server %zd)", s);
	return -1;
}

/* Piece sizes for the transfers: odd ones, and some over a record. */
static const size_t pieces[] = { 1, 2, 3, 1000, 4096, 16384, 16385, 65536,
    7, 30000 };
#define NPIECES	(sizeof(pieces) / sizeof(pieces[0]))

struct flow {
	const unsigned char *data;
	unsigned char *got;
	size_t len, woff, roff, wpiece, want_write, rounds;
	size_t retry;			/* length to retry after WANT_* */
};

static void
flow_write(struct flow *f, bool server, struct pair *p)
{
	size_t n;
	ssize_t r;

	if (f->woff == f->len)
		return;
	n = f->retry != 0 ? f->retry : pieces[f->wpiece++ % NPIECES];
	if (n > f->len - f->woff)
		n = f->len - f->woff;
	r = server ? tls_conn_write(p->s, f->data + f->woff, n) :
	    client_write(p->cl, f->data + f->woff, n);
	if (r > 0) {
		f->woff += (size_t)r;
		f->retry = 0;
	} else if (r == TLS_WANT_READ || r == TLS_WANT_WRITE) {
		f->retry = n;
		f->want_write++;
	} else
		f->rounds = PUMP_MAX;	/* failure: stop */
}

static void
flow_read(struct flow *f, bool server, struct pair *p)
{
	size_t n = pieces[(f->rounds + 3) % NPIECES];
	ssize_t r;

	if (n > f->len - f->roff)
		n = f->len - f->roff;
	if (n == 0)
		return;
	r = server ? tls_conn_read(p->s, f->got + f->roff, n) :
	    client_read(p->cl, f->got + f->roff, n);
	if (r > 0)
		f->roff += (size_t)r;
	else if (r != TLS_WANT_READ && r != TLS_WANT_WRITE)
		f->rounds = PUMP_MAX;
}

/* transfer: len bytes from one side to the other; 0 if all arrived. */
static int
transfer(struct pair *p, bool from_server, const unsigned char *data,
    size_t len, size_t *wants_r)
{
	struct flow f;
	int ret;

	memset(&f, 0, sizeof(f));
	f.data = data;
	f.len = len;
	f.got = malloc(len);
	for (; f.rounds < PUMP_MAX && f.roff < len; f.rounds++) {
		flow_write(&f, from_server, p);
		flow_read(&f, !from_server, p);
	}
	ret = f.roff == len && memcmp(f.got, data, len) == 0 ? 0 : -1;
	if (ret < 0)
		diag("transfer: wrote %zu, read %zu of %zu", f.woff, f.roff,
		    len);
	*wants_r = f.want_write;
	free(f.got);
	return ret;
}

static bool
contains(const char *s, const char *part)
{
	return s != NULL && strstr(s, part) != NULL;
}

static void
test_ctx_errors(void)
{
	struct tls_ctx *ctx = NULL;
	const char *error;

	ok(tls_ctx_new(cert1, key1, "TLSv1.2, TLSv1.3", "", "", &ctx,
	    &error) == 0 && ctx != NULL, "context from a good cert and key");
	tls_ctx_free(&ctx);
	ok(ctx == NULL, "tls_ctx_free clears the pointer");
	tls_ctx_free(&ctx);
	ok(tls_ctx_new(combined, NULL, "TLSv1.3", NULL, NULL, &ctx,
	    &error) == 0, "key taken from the cert file when not given");
	tls_ctx_free(&ctx);

	error = NULL;
	ok(tls_ctx_new(cert1, key2, "TLSv1.3", "", "", &ctx, &error) == -1,
	    "mismatched key refused");
	ok(contains(error, "does not match") && contains(error, key2) &&
	    contains(error, cert1), "and the error names both files");
	diag("%s", error);
	ok(tls_ctx_new(cert2, key1, "TLSv1.3", "", "", &ctx, &error) == -1,
	    "mismatched key refused (other way)");
	ok(tls_ctx_new(missing, key1, "TLSv1.3", "", "", &ctx, &error) == -1,
	    "missing cert file refused");
	ok(contains(error, "tls_cert_file") && contains(error, missing) &&
	    contains(error, "No such file"), "naming it and why");
	diag("%s", error);
	ok(tls_ctx_new(cert1, missing, "TLSv1.3", "", "", &ctx, &error) == -1
	    && contains(error, "tls_key_file") && contains(error, missing),
	    "missing key file refused, naming it");
	ok(tls_ctx_new(garbage, key1, "TLSv1.3", "", "", &ctx, &error) == -1
	    && contains(error, garbage), "a file that is not PEM refused");
	diag("%s", error);
	ok(tls_ctx_new(cert1, garbage, "TLSv1.3", "", "", &ctx, &error) == -1
	    && contains(error, garbage), "a key file that is not PEM refused");
	ok(tls_ctx_new(cert1, enckey, "TLSv1.3", "", "", &ctx, &error) == -1
	    && contains(error, enckey),
	    "a key with a pass phrase refused without prompting");
	ok(tls_ctx_new("", key1, "TLSv1.3", "", "", &ctx, &error) == -1 &&
	    contains(error, "tls_cert_file is not set"), "empty cert refused");
	ok(tls_ctx_new(cert1, key1, "TLSv1.3", "NOPE", "", &ctx, &error) == -1
	    && contains(error, "tls_ciphers"), "bad cipher list refused");
	diag("%s", error);
	ok(tls_ctx_new(cert1, key1, "TLSv1.3", "", "TLS_AES_128_GCM_SHA256:"
	    "TLS_NOPE", &ctx, &error) == -1 && contains(error, "TLS_NOPE"),
	    "unknown TLS 1.3 suite refused, even next to a known one");
	diag("%s", error);
	ok(ctx == NULL, "no context was made by the failures");
}

static void
test_protocols(void)
{
	struct tls_ctx *ctx = NULL;
	const char *error;

	ok(tls_ctx_new(cert1, key1, "TLSv1.1", "", "", &ctx, &error) == -1 &&
	    contains(error, "TLSv1.1 is not secure"), "TLSv1.1 refused");
	diag("%s", error);
	ok(tls_ctx_new(cert1, key1, "TLSv1.2, TLSv1.1", "", "", &ctx,
	    &error) == -1 && contains(error, "TLSv1.1"),
	    "TLSv1.1 refused next to TLSv1.2");
	ok(tls_ctx_new(cert1, key1, "TLSv9", "", "", &ctx, &error) == -1 &&
	    contains(error, "unknown protocol \"TLSv9\""),
	    "unknown protocol refused, naming it");
	ok(tls_ctx_new(cert1, key1, " , ", "", "", &ctx, &error) == -1 &&
	    contains(error, "empty"), "no protocol refused");
	ok(ctx == NULL, "none made a context");

	is_int(tls_check_protocols("TLSv1.2, TLSv1.3"), 0, "check: default");
	is_int(tls_check_protocols("TLSv1.3"), 0, "check: TLSv1.3");
	is_int(tls_check_protocols(" TLSv1.2\t"), 0, "check: blanks");
	is_int(tls_check_protocols("TLSv1.2,TLSv1.3"), 0, "check: comma");
	is_int(tls_check_protocols("TLSv1.3x"), -1, "check: TLSv1.3x");
	is_int(tls_check_protocols("TLSv1."), -1, "check: TLSv1.");
	is_int(tls_check_protocols("TLSv1"), -1, "check: TLSv1");
	is_int(tls_check_protocols("SSLv3"), -1, "check: SSLv3");
	is_int(tls_check_protocols("tlsv1.3"), -1, "check: case matters");
	is_int(tls_check_protocols(""), -1, "check: empty");
	is_int(tls_check_ciphers(""), 0, "check: empty cipher list");
	is_int(tls_check_ciphers("HIGH:!aNULL"), 0, "check: HIGH:!aNULL");
	is_int(tls_check_ciphers("NOPE"), -1, "check: bad cipher list");
	is_int(tls_check_suites(""), 0, "check: empty suites");
	is_int(tls_check_suites("TLS_CHACHA20_POLY1305_SHA256"), 0,
	    "check: one suite");
	is_int(tls_check_suites("TLS_AES_128_GCM_SHA256:TLS_NOPE"), -1,
	    "check: one unknown suite");
}

static void
test_conf(void)
{
	const char *error = NULL;

	conf_reset();
	is_string(conf_str("tls_protocols"), "TLSv1.2, TLSv1.3",
	    "conf: tls_protocols default");
	ok(conf_bool("disable_plaintext_auth"), "conf: "
	    "disable_plaintext_auth defaults to yes");
	is_string(conf_str("tls_cert_file"), "", "conf: no cert by default");
	ok(conf_set("tls_protocols", "TLSv1.1", &error) == -1 &&
	    contains(error, "tls_protocols") && contains(error, "not secure"),
	    "conf: tls_protocols = TLSv1.1 refused");
	diag("%s", error);
	ok(conf_set("tls_ciphers", "NOPE", &error) == -1 &&
	    contains(error, "tls_ciphers"), "conf: bad tls_ciphers refused");
	ok(conf_set("tls_ciphersuites", "TLS_NOPE", &error) == -1,
	    "conf: bad tls_ciphersuites refused");
	ok(conf_set("tls_ciphersuites", "TLS_AES_256_GCM_SHA384", &error) == 0,
	    "conf: good tls_ciphersuites taken");
	ok(conf_set("tls_cert_file", "cert.pem", &error) == -1,
	    "conf: relative tls_cert_file refused");
	conf_reset();
}

static void
test_handshake_data(void)
{
	struct tls_ctx *ctx = server_ctx(cert1, key1, "TLSv1.2, TLSv1.3", "",
	    "");
	SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, NULL);
	unsigned char *big, b[128];
	struct pair p;
	size_t i, wants;

	pair_new(&p, ctx, cctx);
	is_string(tls_conn_info(p.s), "handshake not done",
	    "info before the handshake");
	ok(handshake(&p) == 0, "handshake over a non-blocking socketpair");
	ok(contains(tls_conn_info(p.s), "TLSv1.3 with cipher TLS_"),
	    "TLS 1.3 negotiated: %s", tls_conn_info(p.s));
	is_int(tls_conn_read(p.s, b, sizeof(b)), TLS_WANT_READ,
	    "read with nothing sent: want read");
	is_int(tls_conn_write(p.s, b, 0), 0, "write of 0 bytes");

	is_int(client_write(p.cl, "0123456789", 10), 10, "client sends 10");
	is_int(tls_conn_read(p.s, b, 3), 3, "server reads 3 of them");
	is_mem(b, 3, "012", 3, "the first three");
	is_int(tls_conn_pending(p.s), 7, "7 decrypted bytes pending");
	is_int(tls_conn_read(p.s, b, sizeof(b)), 7, "then reads 7");
	is_mem(b, 7, "3456789", 7, "the rest, in order");
	is_int(tls_conn_pending(p.s), 0, "none pending");

	big = malloc(BIG_SIZE);
	for (i = 0; i < BIG_SIZE; i++)
		big[i] = (unsigned char)((i * 7919) ^ (i >> 11));
	big[0] = '\0';
	ok(transfer(&p, true, big, BIG_SIZE, &wants) == 0,
	    "1 MB server to client, in pieces, byte-exact");
	ok(wants > 0, "the server write had to wait (%zu times)", wants);
	ok(transfer(&p, false, big, BIG_SIZE, &wants) == 0,
	    "1 MB client to server, in pieces, byte-exact");
	free(big);

	is_int(tls_conn_shutdown(p.s), 1, "server sends close_notify");
	is_int(client_read(p.cl, b, sizeof(b)), 0,
	    "client sees a clean close");
	SSL_shutdown(p.cl);
	is_int(tls_conn_read(p.s, b, sizeof(b)), 0,
	    "server sees the client's close_notify: 0");
	is_string(tls_conn_error(p.s), "", "no error text");
	pair_free(&p);
	SSL_CTX_free(cctx);
	tls_ctx_free(&ctx);
}

static void
test_unclean_close(void)
{
	struct tls_ctx *ctx = server_ctx(cert1, key1, "TLSv1.3", "", "");
	SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, NULL);
	unsigned char b[16];
	struct pair p;

	pair_new(&p, ctx, cctx);
	ok(handshake(&p) == 0, "handshake");
	close(p.cfd);
	p.cfd = -1;
	is_int(tls_conn_read(p.s, b, sizeof(b)), -1,
	    "close without close_notify: -1");
	ok(contains(tls_conn_error(p.s), "TLS read failed"),
	    "error: %s", tls_conn_error(p.s));
	is_int(tls_conn_read(p.s, b, sizeof(b)), -1, "and -1 again");
	is_int(tls_conn_shutdown(p.s), -1, "no close_notify after an error");
	pair_free(&p);

	/* A peer that goes away in the middle of the handshake. */
	pair_new(&p, ctx, cctx);
	ERR_clear_error();
	SSL_do_handshake(p.cl);
	is_int(tls_conn_read(p.s, b, sizeof(b)), TLS_WANT_READ,
	    "server answered the ClientHello, waits");
	is_int(tls_conn_shutdown(p.s), 1,
	    "shutdown during the handshake has nothing to send");
	close(p.cfd);
	p.cfd = -1;
	is_int(tls_conn_read(p.s, b, sizeof(b)), -1,
	    "peer gone during the handshake: -1");
	ok(contains(tls_conn_error(p.s), "TLS handshake failed"),
	    "error: %s", tls_conn_error(p.s));
	pair_free(&p);
	SSL_CTX_free(cctx);
	tls_ctx_free(&ctx);
}

/* try_client: handshake of a client [min, max] with a server using
 * protocols; returns the handshake result, *info_r the server's info. */
static int
try_client(const char *protocols, const char *ciphers, const char *suites,
    SSL_CTX *cctx, char *info, size_t infosize, char *err, size_t errsize)
{
	struct tls_ctx *ctx = server_ctx(cert1, key1, protocols, ciphers,
	    suites);
	struct pair p;
	int ret;

	pair_new(&p, ctx, cctx);
	ret = handshake(&p);
	snprintf(info, infosize, "%s", tls_conn_info(p.s));
	snprintf(err, errsize, "%s", tls_conn_error(p.s));
	pair_free(&p);
	tls_ctx_free(&ctx);
	return ret;
}

static void
test_versions(void)
{
	SSL_CTX *cctx;
	char info[128], err[TLS_ERROR_MAX];

	cctx = client_ctx(TLS1_1_VERSION, TLS1_1_VERSION,
	    "DEFAULT:@SECLEVEL=0");
	ok(try_client("TLSv1.2, TLSv1.3", "", "", cctx, info, sizeof(info),
	    err, sizeof(err)) == -1, "a TLS 1.1 client fails the handshake");
	ok(contains(err, "unsupported protocol"), "server says: %s", err);
	SSL_CTX_free(cctx);

	cctx = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION, NULL);
	ok(try_client("TLSv1.2, TLSv1.3", "", "", cctx, info, sizeof(info),
	    err, sizeof(err)) == 0 && strncmp(info, "TLSv1.2 with cipher "
	    "ECDHE-", 20) == 0, "TLS 1.2 client: %s", info);
	ok(try_client("TLSv1.3", "", "", cctx, info, sizeof(info), err,
	    sizeof(err)) == -1, "TLS 1.2 client, server TLSv1.3 only: fails");
	SSL_CTX_free(cctx);

	cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, NULL);
	ok(try_client("TLSv1.2", "", "", cctx, info, sizeof(info), err,
	    sizeof(err)) == 0 && strncmp(info, "TLSv1.2 ", 8) == 0,
	    "server TLSv1.2 only: %s", info);
	ok(try_client("TLSv1.3", "", "TLS_CHACHA20_POLY1305_SHA256", cctx,
	    info, sizeof(info), err, sizeof(err)) == 0 &&
	    contains(info, "TLS_CHACHA20_POLY1305_SHA256"),
	    "tls_ciphersuites used: %s", info);
	SSL_CTX_free(cctx);

	/* The client prefers AES256, the server AES128: the server wins. */
	cctx = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION,
	    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256");
	ok(try_client("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256:"
	    "ECDHE-RSA-AES256-GCM-SHA384", "", cctx, info, sizeof(info),
	    err, sizeof(err)) == 0 &&
	    contains(info, "ECDHE-RSA-AES128-GCM-SHA256"),
	    "server's cipher order wins: %s", info);
	SSL_CTX_free(cctx);
}

static void
test_renegotiation(void)
{
	struct tls_ctx *ctx = server_ctx(cert1, key1, "TLSv1.2, TLSv1.3", "",
	    "");
	SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION, NULL);
	unsigned char b[16];
	struct pair p;
	ssize_t s = 0;
	int c = 0, i;
	unsigned long e = 0;

	pair_new(&p, ctx, cctx);
	ok(handshake(&p) == 0, "TLS 1.2 handshake");
	ok(SSL_renegotiate(p.cl) == 1, "client asks to renegotiate");
	for (i = 0; i < 1000; i++) {
		s = tls_conn_read(p.s, b, sizeof(b));
		ERR_clear_error();
		c = SSL_do_handshake(p.cl);
		if (c <= 0 && client_status(p.cl, c) == -1) {
			e = ERR_peek_error();
			break;
		}
		if (c == 1 && !SSL_renegotiate_pending(p.cl))
			break;
	}
	ok(c != 1, "renegotiation did not complete");
	is_int(ERR_GET_REASON(e), SSL_R_NO_RENEGOTIATION,
	    "the client was told: no renegotiation");
	ok(s == TLS_WANT_READ || s == -1, "server did not hand out data");
	ERR_clear_error();
	pair_free(&p);
	SSL_CTX_free(cctx);
	tls_ctx_free(&ctx);
}

/* peer_cn: the CN the client saw, into cn. */
static void
peer_cn(SSL *cl, char *cn, size_t size)
{
	X509 *x = SSL_get1_peer_certificate(cl);

	cn[0] = '\0';
	if (x == NULL)
		return;
	X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName,
	    cn, (int)size);
	X509_free(x);
}

/* test_idle_memory: what an idle session costs the server, after a
 * handshake and some traffic. The target for a whole idle connection is
 * 64 KiB; TLS may take half, the rest is the connection layer's. Without
 * SSL_MODE_RELEASE_BUFFERS OpenSSL 3.0 keeps about 46 KiB. */
static void
test_idle_memory(void)
{
	struct tls_ctx *ctx = server_ctx(cert1, key1, "TLSv1.2, TLSv1.3", "",
	    "");
	SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, NULL);
	unsigned char data[20000], b[sizeof(data)];
	size_t before, after, wants;
	struct pair p;

	memset(data, 'x', sizeof(data));
	/* Freeing the server's session alone gives back what it held. */
	pair_new(&p, ctx, cctx);
	ok(handshake(&p) == 0, "handshake");
	ok(transfer(&p, false, data, sizeof(data), &wants) == 0 &&
	    transfer(&p, true, data, sizeof(data), &wants) == 0,
	    "traffic both ways");
	is_int(tls_conn_read(p.s, b, sizeof(b)), TLS_WANT_READ, "now idle");
	before = ossl_bytes;
	tls_conn_free(&p.s);
	after = ossl_bytes;
	ok(before - after <= 32 * 1024, "an idle session holds %zu bytes "
	    "of OpenSSL memory (at most 32768)", before - after);
	pair_free(&p);
	SSL_CTX_free(cctx);
	tls_ctx_free(&ctx);
}

static void
test_reload(void)
{
	struct tls_ctx *ctx = server_ctx(cert1, key1, "TLSv1.2, TLSv1.3", "",
	    "");
	SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, NULL);
	struct pair old, cur;
	const char *error;
	char cn[64];

	pair_new(&old, ctx, cctx);
	ok(tls_ctx_reload(ctx, cert2, key2, "TLSv1.3", "", "", &error) == 0,
	    "reload with another certificate");
	pair_new(&cur, ctx, cctx);
	error = NULL;
	ok(tls_ctx_reload(ctx, garbage, key2, "TLSv1.3", "", "", &error) == -1
	    && contains(error, garbage), "reload with a broken file fails");
	diag("%s", error);
	ok(tls_ctx_reload(ctx, cert2, key1, "TLSv1.3", "", "", &error) == -1,
	    "reload with a mismatched key fails");
	ok(tls_ctx_reload(ctx, cert2, key2, "TLSv1.1", "", "", &error) == -1,
	    "reload with TLSv1.1 fails");
	tls_ctx_free(&ctx);
	ok(handshake(&old) == 0, "a session made before the reload works "
	    "after the context was freed");
	peer_cn(old.cl, cn, sizeof(cn));
	is_string(cn, "localhost", "with the old certificate");
	ok(handshake(&cur) == 0, "a session made after the reload works");
	peer_cn(cur.cl, cn, sizeof(cn));
	is_string(cn, "other", "with the new certificate, not the broken one");
	pair_free(&old);
	pair_free(&cur);
	SSL_CTX_free(cctx);
}

/* priv_child: in a child, load as root, become nobody, then use and
 * reload; the exit status has a bit per failed step. */
static int
priv_child(void)
{
	struct tls_ctx *ctx;
	SSL_CTX *cctx;
	const char *error;
	struct pair p;
	int bad = 0;

	if (tls_ctx_new(cert1, key1, "TLSv1.3", "", "", &ctx, &error) < 0)
		return 1;
	if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
		return 2;
	if (access(key1, R_OK) == 0)
		bad |= 4;
	cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, NULL);
	pair_new(&p, ctx, cctx);
	if (handshake(&p) < 0)
		bad |= 8;
	pair_free(&p);
	if (tls_ctx_reload(ctx, cert1, key1, "TLSv1.3", "", "", &error) == 0 ||
	    !contains(error, "Permission denied"))
		bad |= 16;
	pair_new(&p, ctx, cctx);
	if (handshake(&p) < 0)
		bad |= 32;
	pair_free(&p);
	SSL_CTX_free(cctx);
	tls_ctx_free(&ctx);
	return bad;
}

static void
test_privileges(void)
{
	int status;
	pid_t pid;

	if (geteuid() != 0) {
		ok(1, "# SKIP not root: privilege drop not tested");
		return;
	}
	chmod(key1, 0600);
	fflush(stdout);
	if ((pid = fork()) == 0)
		_exit(priv_child());
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "key readable by "
	    "root only: loaded as root, used as nobody, reload refused and "
	    "the old context kept (status %d)", WEXITSTATUS(status));
}

/* serve_one: accept one connection, handshake, read until the end;
 * exit 0 if the handshake gave TLS 1.3. */
static int
serve_one(int lfd)
{
	struct tls_ctx *ctx = server_ctx(cert1, key1, "TLSv1.2, TLSv1.3", "",
	    "");
	struct tls_conn *c;
	struct pollfd pfd;
	const char *error;
	char b[256];
	ssize_t r = TLS_WANT_READ;
	int fd, v13 = 0;

	alarm(30);
	if ((fd = accept(lfd, NULL, NULL)) < 0)
		return 2;
	fcntl(fd, F_SETFL, O_NONBLOCK);
	if (tls_conn_new(ctx, fd, &c, &error) < 0)
		return 3;
	while (r == TLS_WANT_READ || r == TLS_WANT_WRITE || r > 0) {
		pfd.fd = fd;
		pfd.events = r == TLS_WANT_WRITE ? POLLOUT : POLLIN;
		if (r <= 0 && poll(&pfd, 1, 10000) <= 0)
			break;
		r = tls_conn_read(c, b, sizeof(b));
		if (tls_conn_handshake_done(c) &&
		    strncmp(tls_conn_info(c), "TLSv1.3 ", 8) == 0)
			v13 = 1;
	}
	tls_conn_free(&c);
	close(fd);
	tls_ctx_free(&ctx);
	return v13 ? 0 : 1;
}

static int
listen_local(int *port_r)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd;

	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		return -1;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(fd, 1) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
		close(fd);
		return -1;
	}
	*port_r = ntohs(sin.sin_port);
	return fd;
}

static void
test_s_client(void)
{
	char cmd[256], out[4096];
	size_t n = 0;
	int lfd, port, status;
	pid_t pid;
	FILE *fp;

	if ((lfd = listen_local(&port)) < 0) {
		ok(0, "listen on 127.0.0.1: %s", strerror(errno));
		return;
	}
	fflush(stdout);
	if ((pid = fork()) == 0)
		_exit(serve_one(lfd));
	close(lfd);
	snprintf(cmd, sizeof(cmd), "openssl s_client -connect 127.0.0.1:%d "
	    "-brief </dev/null 2>&1", port);
	if ((fp = popen(cmd, "r")) != NULL) {
		n = fread(out, 1, sizeof(out) - 1, fp);
		pclose(fp);
	}
	out[n] = '\0';
	waitpid(pid, &status, 0);
	ok(contains(out, "Protocol version: TLSv1.3"),
	    "openssl s_client negotiates TLSv1.3");
	if (!contains(out, "Protocol version: TLSv1.3"))
		diag("s_client said: %s", out);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "the forked server saw TLSv1.3 and a clean end");
}

int
main(void)
{
	char cmd[512];

	if (ossl_mem_install() != 1)
		bail("CRYPTO_set_mem_functions failed");
	signal(SIGPIPE, SIG_IGN);
	alarm(120);
	make_certs();
	test_ctx_errors();
	test_protocols();
	test_conf();
	test_handshake_data();
	test_unclean_close();
	test_versions();
	test_renegotiation();
	test_idle_memory();
	test_reload();
	test_privileges();
	test_s_client();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	run(cmd);
	return done_testing();
}
