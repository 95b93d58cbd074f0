/*
 * tls.c: TLS on OpenSSL 3 (tls.h): a server context built from the tls_*
 * parameters, a client context for outbound SMTP (system or given trust
 * anchors, certificate names checked per connection when asked), and a
 * non-blocking transport that maps OpenSSL's SSL_ERROR_WANT_* onto
 * TLS_WANT_* for the event loop.
 *
 * Trusts the configuration (cert, key, protocol and cipher settings: the
 * administrator's, though they are checked and refused with a reason) and
 * nothing that comes from the network: every record from the peer goes
 * through OpenSSL, and the error texts built from a session contain only
 * OpenSSL's own reason strings, never peer data or key material.
 */
#include "config.h"
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "compat/compat.h"
#include "xmalloc.h"
#include "tls.h"

struct tls_ctx {
	SSL_CTX *ssl_ctx;		/* owned; one reference */
	bool client;			/* made by tls_client_ctx_new */
};

struct tls_conn {
	SSL *ssl;			/* owned; holds a reference to its
					   SSL_CTX */
	bool failed;			/* a fatal error happened */
	bool verify;			/* client: the peer's name checked */
	char error[TLS_ERROR_MAX];
	char info[128];
};

/* Protocol settings: a [min, max] range is all OpenSSL 3 offers, and with
 * two versions allowed every choice is a range. */
struct tls_protocols {
	int min, max;
};

#define TLS_LIST_SEP	", \t\r\n"
#define TLS_SUITE_SEP	":"
#define TLS_SESSION_ID	"loft"

static char tls_error_buf[TLS_ERROR_MAX];

static const char *const tls_old_protocols[] = {
	"SSLv2", "SSLv3", "TLSv1", "TLSv1.0", "TLSv1.1", NULL
};

/* tls_reason: the first reason on OpenSSL's error queue (the root cause:
 * later entries wrap it), as text; the queue is emptied. */
static const char *
tls_reason(char *out, size_t outsize)
{
	unsigned long e;
	const char *r;

	if ((e = ERR_get_error()) == 0) {
		strlcpy(out, "unknown OpenSSL error", outsize);
		return out;
	}
	if (ERR_SYSTEM_ERROR(e))
		strlcpy(out, strerror(ERR_GET_REASON(e)), outsize);
	else if ((r = ERR_reason_error_string(e)) != NULL)
		strlcpy(out, r, outsize);
	else
		ERR_error_string_n(e, out, outsize);
	ERR_clear_error();
	return out;
}

static int __attribute__((format(printf, 2, 3)))
tls_fail(const char **error_r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tls_error_buf, sizeof(tls_error_buf), fmt, ap);
	va_end(ap);
	*error_r = tls_error_buf;
	return -1;
}

/* tls_fail_ssl: "<what>: <OpenSSL reason>". */
static int
tls_fail_ssl(const char **error_r, const char *what)
{
	char reason[256];

	tls_reason(reason, sizeof(reason));
	return tls_fail(error_r, "%s: %s", what, reason);
}

static bool
tls_is_item(const char *const *items, const char *s, size_t len)
{
	for (; *items != NULL; items++)
		if (strlen(*items) == len && strncmp(*items, s, len) == 0)
			return true;
	return false;
}

/* tls_protocol_item: the version of one list item, or 0 with *error_r. */
static int
tls_protocol_item(const char *s, size_t len, const char **error_r)
{
	if (len == 7 && strncmp(s, "TLSv1.2", 7) == 0)
		return TLS1_2_VERSION;
	if (len == 7 && strncmp(s, "TLSv1.3", 7) == 0)
		return TLS1_3_VERSION;
	if (tls_is_item(tls_old_protocols, s, len))
		tls_fail(error_r, "tls_protocols: %.*s is not secure and not "
		    "supported: use TLSv1.2 and TLSv1.3", (int)len, s);
	else
		tls_fail(error_r, "tls_protocols: unknown protocol \"%.*s\": "
		    "expected TLSv1.2 or TLSv1.3", (int)(len > 64 ? 64 : len),
		    s);
	return 0;
}

/* tls_parse_protocols: a list of TLSv1.2 and TLSv1.3 into a range. */
static int
tls_parse_protocols(const char *s, struct tls_protocols *p,
    const char **error_r)
{
	size_t len;
	int v;

	p->min = p->max = 0;
	if (s == NULL)
		s = "";
	for (s += strspn(s, TLS_LIST_SEP); *s != '\0';
	    s += strspn(s, TLS_LIST_SEP)) {
		len = strcspn(s, TLS_LIST_SEP);
		if ((v = tls_protocol_item(s, len, error_r)) == 0)
			return -1;
		if (p->min == 0 || v < p->min)
			p->min = v;
		if (v > p->max)
			p->max = v;
		s += len;
	}
	if (p->min == 0)
		return tls_fail(error_r, "tls_protocols: empty: expected "
		    "TLSv1.2, TLSv1.3 or both");
	return 0;
}

/* tls_suite_known: whether the TLS 1.3 suite name (len bytes) is among
 * the ciphers of ctx. OpenSSL skips unknown names in a list that has one
 * known name; a typing error must not pass silently. */
static bool
tls_suite_known(SSL_CTX *ctx, const char *s, size_t len)
{
	STACK_OF(SSL_CIPHER) *list = SSL_CTX_get_ciphers(ctx);
	const char *name;
	int i;

	for (i = 0; i < sk_SSL_CIPHER_num(list); i++) {
		name = SSL_CIPHER_get_name(sk_SSL_CIPHER_value(list, i));
		if (strlen(name) == len && strncmp(name, s, len) == 0)
			return true;
	}
	return false;
}

static int
tls_set_suites(SSL_CTX *ctx, const char *suites, const char **error_r)
{
	const char *s;
	size_t len;

	if (suites == NULL || *suites == '\0')
		return 0;
	if (SSL_CTX_set_ciphersuites(ctx, suites) != 1)
		return tls_fail_ssl(error_r, "tls_ciphersuites");
	for (s = suites + strspn(suites, TLS_SUITE_SEP); *s != '\0';
	    s += strspn(s, TLS_SUITE_SEP)) {
		len = strcspn(s, TLS_SUITE_SEP);
		if (!tls_suite_known(ctx, s, len))
			return tls_fail(error_r, "tls_ciphersuites: unknown "
			    "TLS 1.3 cipher suite \"%.*s\"",
			    (int)(len > 64 ? 64 : len), s);
		s += len;
	}
	return 0;
}

static int
tls_set_ciphers(SSL_CTX *ctx, const char *ciphers, const char **error_r)
{
	if (ciphers == NULL || *ciphers == '\0')
		return 0;
	if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1)
		return tls_fail_ssl(error_r, "tls_ciphers");
	return 0;
}

/* A key protected by a pass phrase is refused rather than prompted for:
 * the daemon has no terminal. */
static int
tls_no_passphrase(char *buf, int size, int rwflag, void *arg)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)arg;
	return -1;
}

static int
tls_load_keys(SSL_CTX *ctx, const char *cert, const char *key,
    const char **error_r)
{
	char reason[256];

	if (cert == NULL || *cert == '\0')
		return tls_fail(error_r, "tls_cert_file is not set");
	if (key == NULL || *key == '\0')
		key = cert;
	SSL_CTX_set_default_passwd_cb(ctx, tls_no_passphrase);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
		return tls_fail(error_r, "tls_cert_file %s: cannot load the "
		    "certificate: %s", cert,
		    tls_reason(reason, sizeof(reason)));
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		return tls_fail(error_r, "tls_key_file %s: cannot load the "
		    "private key: %s", key, tls_reason(reason, sizeof(reason)));
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ERR_clear_error();
		return tls_fail(error_r, "tls_key_file %s does not match "
		    "tls_cert_file %s", key, cert);
	}
	return 0;
}

/* tls_settings: everything but the keys, so that the checks of the
 * configuration can use it on an empty context. */
static int
tls_settings(SSL_CTX *ctx, const char *protocols, const char *ciphers,
    const char *suites, const char **error_r)
{
	struct tls_protocols p;

	if (tls_parse_protocols(protocols, &p, error_r) < 0)
		return -1;
	if (SSL_CTX_set_min_proto_version(ctx, p.min) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, p.max) != 1)
		return tls_fail_ssl(error_r, "tls_protocols");
	if (tls_set_ciphers(ctx, ciphers, error_r) < 0 ||
	    tls_set_suites(ctx, suites, error_r) < 0)
		return -1;
	/* Client-initiated renegotiation costs the server a handshake for
	 * free; compression leaks plaintext (CRIME). ECDH curves are chosen
	 * automatically by OpenSSL 3; tickets stay on (its default). */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* The connection layer writes what fits and retries from a buffer
	 * that may have moved; idle sessions give their buffers back. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	return 0;
}

static SSL_CTX *
tls_ssl_ctx_new(const char **error_r)
{
	SSL_CTX *ctx;

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL)
		tls_fail_ssl(error_r, "cannot create a TLS context");
	return ctx;
}

/* tls_build: a complete server SSL_CTX, or NULL with *error_r. */
static SSL_CTX *
tls_build(const char *cert, const char *key, const char *protocols,
    const char *ciphers, const char *suites, const char **error_r)
{
	SSL_CTX *ctx;

	ERR_clear_error();
	if ((ctx = tls_ssl_ctx_new(error_r)) == NULL)
		return NULL;
	if (tls_settings(ctx, protocols, ciphers, suites, error_r) < 0 ||
	    tls_load_keys(ctx, cert, key, error_r) < 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* Sessions resumed from the cache must belong to us. */
	SSL_CTX_set_session_id_context(ctx,
	    (const unsigned char *)TLS_SESSION_ID, strlen(TLS_SESSION_ID));
	return ctx;
}

int
tls_ctx_new(const char *cert, const char *key, const char *protocols,
    const char *ciphers, const char *suites, struct tls_ctx **ctx_r,
    const char **error_r)
{
	SSL_CTX *ssl_ctx;

	ssl_ctx = tls_build(cert, key, protocols, ciphers, suites, error_r);
	if (ssl_ctx == NULL)
		return -1;
	*ctx_r = xcalloc(1, sizeof(**ctx_r));
	(*ctx_r)->ssl_ctx = ssl_ctx;
	return 0;
}

int
tls_ctx_reload(struct tls_ctx *ctx, const char *cert, const char *key,
    const char *protocols, const char *ciphers, const char *suites,
    const char **error_r)
{
	SSL_CTX *ssl_ctx;

	if (ctx->client)
		return tls_fail(error_r, "tls_ctx_reload: not a server context");
	ssl_ctx = tls_build(cert, key, protocols, ciphers, suites, error_r);
	if (ssl_ctx == NULL)
		return -1;
	/* Connections made from the old one hold their own references. */
	SSL_CTX_free(ctx->ssl_ctx);
	ctx->ssl_ctx = ssl_ctx;
	return 0;
}

void
tls_ctx_free(struct tls_ctx **ctx)
{
	if (*ctx == NULL)
		return;
	SSL_CTX_free((*ctx)->ssl_ctx);
	free(*ctx);
	*ctx = NULL;
}

/* tls_check: run the settings on a throw-away context. */
static int
tls_check(const char *protocols, const char *ciphers, const char *suites)
{
	const char *error;
	SSL_CTX *ctx;
	int ret;

	ERR_clear_error();
	if ((ctx = tls_ssl_ctx_new(&error)) == NULL)
		return -1;
	ret = tls_settings(ctx, protocols, ciphers, suites, &error);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return ret;
}

int
tls_check_protocols(const char *value)
{
	const char *error;
	struct tls_protocols p;

	return tls_parse_protocols(value, &p, &error);
}

int
tls_check_ciphers(const char *value)
{
	return *value == '\0' ? 0 : tls_check("TLSv1.2", value, NULL);
}

int
tls_check_suites(const char *value)
{
	return *value == '\0' ? 0 : tls_check("TLSv1.3", NULL, value);
}

int
tls_conn_new(struct tls_ctx *ctx, int fd, struct tls_conn **c_r,
    const char **error_r)
{
	struct tls_conn *c;
	SSL *ssl;

	if (ctx->client)
		return tls_fail(error_r, "not a server TLS context");
	ERR_clear_error();
	if ((ssl = SSL_new(ctx->ssl_ctx)) == NULL)
		return tls_fail_ssl(error_r, "cannot create a TLS session");
	/* A socket BIO without BIO_CLOSE: the fd stays the caller's. */
	if (SSL_set_fd(ssl, fd) != 1) {
		SSL_free(ssl);
		return tls_fail_ssl(error_r, "cannot attach the TLS session");
	}
	SSL_set_accept_state(ssl);
	c = xcalloc(1, sizeof(*c));
	c->ssl = ssl;
	*c_r = c;
	return 0;
}

/* tls_conn_syscall: the text of SSL_ERROR_SYSCALL; errno is that of the
 * failed call. */
static void
tls_conn_syscall(struct tls_conn *c, const char *op, int saved_errno)
{
	char reason[256];

	if (ERR_peek_error() != 0)
		snprintf(c->error, sizeof(c->error), "TLS %s failed: %s", op,
		    tls_reason(reason, sizeof(reason)));
	else if (saved_errno != 0)
		snprintf(c->error, sizeof(c->error), "TLS %s failed: %s", op,
		    strerror(saved_errno));
	else
		snprintf(c->error, sizeof(c->error), "TLS %s failed: "
		    "connection closed", op);
}

/* tls_conn_verify_text: " (why)" when a client's verification of the
 * peer failed, else "": "certificate verify failed" alone does not say
 * whether the name or the chain was wrong. */
static const char *
tls_conn_verify_text(struct tls_conn *c)
{
	static char text[160];
	long v;

	if (!c->verify || (v = SSL_get_verify_result(c->ssl)) == X509_V_OK)
		return "";
	snprintf(text, sizeof(text), " (%s)", X509_verify_cert_error_string(v));
	return text;
}

/* tls_conn_status: what a failed SSL call (ret) means for the caller. */
static int
tls_conn_status(struct tls_conn *c, int ret, int saved_errno, bool reading)
{
	const char *op = SSL_is_init_finished(c->ssl) ? (reading ? "read" :
	    "write") : "handshake";
	char reason[256];

	switch (SSL_get_error(c->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		return TLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TLS_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		if (reading)
			return 0;
		snprintf(c->error, sizeof(c->error), "TLS write failed: "
		    "the peer closed the session");
		break;
	case SSL_ERROR_SYSCALL:
		tls_conn_syscall(c, op, saved_errno);
		break;
	case SSL_ERROR_SSL:
		snprintf(c->error, sizeof(c->error), "TLS %s failed: %s%s", op,
		    tls_reason(reason, sizeof(reason)), tls_conn_verify_text(c));
		break;
	default:
		snprintf(c->error, sizeof(c->error), "TLS %s failed: "
		    "unexpected OpenSSL status", op);
		break;
	}
	ERR_clear_error();
	c->failed = true;
	return -1;
}

ssize_t
tls_conn_read(struct tls_conn *c, void *buf, size_t len)
{
	size_t n = 0;
	int ret;

	if (c->failed)
		return -1;
	ERR_clear_error();
	errno = 0;
	if ((ret = SSL_read_ex(c->ssl, buf, len, &n)) == 1)
		return (ssize_t)n;
	return tls_conn_status(c, ret, errno, true);
}

ssize_t
tls_conn_write(struct tls_conn *c, const void *buf, size_t len)
{
	size_t n = 0;
	int ret;

	if (c->failed)
		return -1;
	if (len == 0)
		return 0;
	ERR_clear_error();
	errno = 0;
	if ((ret = SSL_write_ex(c->ssl, buf, len, &n)) == 1)
		return (ssize_t)n;
	return tls_conn_status(c, ret, errno, false);
}

size_t
tls_conn_pending(struct tls_conn *c)
{
	int n = SSL_pending(c->ssl);

	return n > 0 ? (size_t)n : 0;
}

int
tls_conn_shutdown(struct tls_conn *c)
{
	int ret;

	if (c->failed)
		return -1;
	/* Before the handshake there is no session to close. */
	if (!SSL_is_init_finished(c->ssl))
		return 1;
	ERR_clear_error();
	errno = 0;
	if ((ret = SSL_shutdown(c->ssl)) >= 0)
		return 1;
	return tls_conn_status(c, ret, errno, false);
}

void
tls_conn_free(struct tls_conn **c)
{
	if (*c == NULL)
		return;
	SSL_free((*c)->ssl);
	free(*c);
	*c = NULL;
}

bool
tls_conn_handshake_done(struct tls_conn *c)
{
	return SSL_is_init_finished(c->ssl) == 1;
}

const char *
tls_conn_info(struct tls_conn *c)
{
	const SSL_CIPHER *cipher;
	int bits, alg_bits = 0;

	if (!SSL_is_init_finished(c->ssl) ||
	    (cipher = SSL_get_current_cipher(c->ssl)) == NULL)
		return "handshake not done";
	bits = SSL_CIPHER_get_bits(cipher, &alg_bits);
	snprintf(c->info, sizeof(c->info), "%s with cipher %s (%d/%d bits)",
	    SSL_get_version(c->ssl), SSL_CIPHER_get_name(cipher), bits,
	    alg_bits);
	return c->info;
}

const char *
tls_conn_error(struct tls_conn *c)
{
	return c->error;
}

/* --- the client side --- */

/* tls_client_settings: what a client context needs besides trust. */
static int
tls_client_settings(SSL_CTX *ctx, const char *protocols,
    const char **error_r)
{
	struct tls_protocols p;

	if (tls_parse_protocols(protocols, &p, error_r) < 0)
		return -1;
	if (SSL_CTX_set_min_proto_version(ctx, p.min) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, p.max) != 1)
		return tls_fail_ssl(error_r, "smtp_tls_protocols");
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	/* Verification is asked per connection (tls_conn_new_client): an
	 * opportunistic session must not fail on a self-signed peer. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	return 0;
}

static int
tls_client_trust(SSL_CTX *ctx, const char *ca_file, const char **error_r)
{
	char reason[256];

	if (ca_file == NULL || *ca_file == '\0') {
		if (SSL_CTX_set_default_verify_paths(ctx) != 1)
			return tls_fail_ssl(error_r, "cannot load the system "
			    "certificate store");
		return 0;
	}
	if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)
		return tls_fail(error_r, "smtp_tls_CAfile %s: cannot load the "
		    "certificates: %s", ca_file,
		    tls_reason(reason, sizeof(reason)));
	return 0;
}

int
tls_client_ctx_new(const char *protocols, const char *ca_file,
    struct tls_ctx **ctx_r, const char **error_r)
{
	SSL_CTX *ssl_ctx;

	ERR_clear_error();
	if ((ssl_ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		return tls_fail_ssl(error_r, "cannot create a TLS context");
	if (tls_client_settings(ssl_ctx, protocols, error_r) < 0 ||
	    tls_client_trust(ssl_ctx, ca_file, error_r) < 0) {
		SSL_CTX_free(ssl_ctx);
		return -1;
	}
	*ctx_r = xcalloc(1, sizeof(**ctx_r));
	(*ctx_r)->ssl_ctx = ssl_ctx;
	(*ctx_r)->client = true;
	return 0;
}

/* tls_is_ip_literal: SNI must not carry an address (RFC 6066 section 3). */
static bool
tls_is_ip_literal(const char *name)
{
	return strspn(name, "0123456789.") == strlen(name) ||
	    strchr(name, ':') != NULL;
}

/* tls_client_names: SNI and, when asked, the name the peer must carry. */
static int
tls_client_names(SSL *ssl, const char *servername, const char *verify_name,
    const char **error_r)
{
	if (servername != NULL && *servername != '\0' &&
	    !tls_is_ip_literal(servername) &&
	    SSL_set_tlsext_host_name(ssl, servername) != 1)
		return tls_fail_ssl(error_r, "cannot set the TLS server name");
	if (verify_name == NULL)
		return 0;
	if (*verify_name == '\0')
		return tls_fail(error_r, "TLS: empty name to verify");
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (SSL_set1_host(ssl, verify_name) != 1)
		return tls_fail_ssl(error_r, "cannot set the TLS name to "
		    "verify");
	SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
	return 0;
}

int
tls_conn_new_client(struct tls_ctx *ctx, int fd, const char *servername,
    const char *verify_name, struct tls_conn **c_r, const char **error_r)
{
	struct tls_conn *c;
	SSL *ssl;

	if (!ctx->client)
		return tls_fail(error_r, "not a client TLS context");
	ERR_clear_error();
	if ((ssl = SSL_new(ctx->ssl_ctx)) == NULL)
		return tls_fail_ssl(error_r, "cannot create a TLS session");
	if (SSL_set_fd(ssl, fd) != 1) {
		SSL_free(ssl);
		return tls_fail_ssl(error_r, "cannot attach the TLS session");
	}
	if (tls_client_names(ssl, servername, verify_name, error_r) < 0) {
		SSL_free(ssl);
		return -1;
	}
	SSL_set_connect_state(ssl);
	c = xcalloc(1, sizeof(*c));
	c->ssl = ssl;
	c->verify = verify_name != NULL;
	*c_r = c;
	return 0;
}

bool
tls_conn_verified(struct tls_conn *c)
{
	return c->verify && SSL_is_init_finished(c->ssl) == 1 &&
	    SSL_get_verify_result(c->ssl) == X509_V_OK;
}
