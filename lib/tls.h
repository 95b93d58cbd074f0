/*
 * tls.h: TLS for the network daemons, on OpenSSL 3: a server context made
 * from the tls_* parameters of loft.conf(5), and a non-blocking TLS
 * transport over a connected socket that an event loop drives.
 *
 * The transport knows only its fd: read and write never block and report
 * TLS_WANT_READ / TLS_WANT_WRITE, meaning "call the same function again
 * once the fd is readable / writable" (TLS can need to write while
 * reading, and the reverse). The handshake happens inside the first read
 * or write. Writes go through write(2): the process must ignore SIGPIPE.
 *
 * Not thread-safe (one connection is used by one thread at a time).
 * Never logs; key material is never put in an error text.
 */
#ifndef LOFT_TLS_H
#define LOFT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define TLS_WANT_READ	(-2)	/* wait until the fd is readable */
#define TLS_WANT_WRITE	(-3)	/* wait until the fd is writable */

#define TLS_ERROR_MAX	512	/* error texts, with the NUL */

struct tls_ctx;
struct tls_conn;

/*
 * tls_ctx_new: a server context. cert is a PEM file: the server
 * certificate, then any intermediate certificates. key is a PEM private
 * key file; NULL or "" means the key is in cert. Both are read now, into
 * memory, and never again (except by tls_ctx_reload): load the context
 * before dropping privileges, so the key can be readable by root only.
 * The key must match the certificate.
 * protocols: a list of TLSv1.2 and TLSv1.3 (separated by commas or white
 * space, as conf LIST values); anything older is refused.
 * ciphers: OpenSSL cipher list for TLS 1.2 (NULL or "": OpenSSL's default);
 * suites: TLS 1.3 cipher suites separated by ":" (NULL or "": default).
 * The context refuses renegotiation and compression, prefers the server's
 * cipher order for TLS 1.2, allows session tickets, and releases the
 * buffers of idle connections.
 * Returns 0 with *ctx_r (free with tls_ctx_free), or -1 with *error_r
 * naming the parameter and file at fault, e.g.
 *   "tls_key_file /etc/loft/key.pem does not match tls_cert_file
 *    /etc/loft/cert.pem"
 */
int tls_ctx_new(const char *cert, const char *key, const char *protocols,
    const char *ciphers, const char *suites, struct tls_ctx **ctx_r,
    const char **error_r);

/*
 * tls_ctx_reload: for SIGHUP; the arguments are as for tls_ctx_new (the
 * new settings). Builds a new OpenSSL context; if that succeeds, ctx uses
 * it for every later tls_conn_new, else ctx is unchanged and -1 comes
 * with *error_r. Connections already made keep the context they were made
 * with until they are freed (OpenSSL counts references). Needs the
 * privilege to read the files, like tls_ctx_new.
 */
int tls_ctx_reload(struct tls_ctx *ctx, const char *cert, const char *key,
    const char *protocols, const char *ciphers, const char *suites,
    const char **error_r);

/*
 * tls_client_ctx_new: a client context, for loft's outbound SMTP
 * (smtp_tls_* parameters). protocols as for tls_ctx_new. ca_file: a PEM
 * file of trust anchors (smtp_tls_CAfile); NULL or "" means the system
 * store (OpenSSL's default paths: /etc/ssl/certs on Debian). Trust
 * anchors are read now; they are used only by connections made with a
 * verify name (tls_conn_new_client). The context refuses renegotiation
 * and compression and releases the buffers of idle connections, as the
 * server's does. Returns 0 with *ctx_r (free with tls_ctx_free), or -1
 * with *error_r naming the parameter at fault. A client context cannot
 * make server connections (tls_conn_new refuses it), nor a server
 * context client ones; tls_ctx_reload refuses a client context.
 */
int tls_client_ctx_new(const char *protocols, const char *ca_file,
    struct tls_ctx **ctx_r, const char **error_r);

/* tls_ctx_free: free *ctx and set it to NULL; NULL is allowed. Connections
 * made from it stay usable until freed. */
void tls_ctx_free(struct tls_ctx **ctx);

/*
 * Checks of configuration values, as conf_params.c calls them when the
 * configuration is loaded: 0 if value is good, else -1. They log nothing;
 * tls_ctx_new gives the reason. "" is good for ciphers and suites (the
 * default), not for protocols.
 */
int tls_check_protocols(const char *value);
int tls_check_ciphers(const char *value);
int tls_check_suites(const char *value);

/*
 * tls_conn_new: a server-side TLS connection on fd, a connected stream
 * socket the caller has made non-blocking. fd stays the caller's: it is
 * not closed by tls_conn_free. Returns 0 with *c_r, or -1 with *error_r.
 */
int tls_conn_new(struct tls_ctx *ctx, int fd, struct tls_conn **c_r,
    const char **error_r);

/*
 * tls_conn_read: at most len (> 0) bytes of plaintext into buf. Returns
 * the number of bytes (> 0); 0 when the peer closed the TLS session
 * cleanly (close_notify); TLS_WANT_READ or TLS_WANT_WRITE; or -1 on an
 * error, including a handshake failure and a close without close_notify
 * (text by tls_conn_error). After -1, only tls_conn_free is useful.
 */
ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t len);

/*
 * tls_conn_write: send up to len bytes from buf. Returns how many were
 * taken (> 0, possibly fewer than len: partial writes are on), 0 if len is
 * 0, TLS_WANT_READ or TLS_WANT_WRITE, or -1 (text by tls_conn_error).
 * After a TLS_WANT_*, call again with the same bytes: the buffer may have
 * moved, but must start with the same data and not be shorter.
 */
ssize_t tls_conn_write(struct tls_conn *c, const void *buf, size_t len);

/* tls_conn_pending: bytes already decrypted and waiting to be read. The
 * fd will not become readable for them, so an event loop must read them
 * without waiting. */
size_t tls_conn_pending(struct tls_conn *c);

/*
 * tls_conn_shutdown: send a close_notify alert. Returns 1 when it has been
 * sent (the peer's close_notify is not waited for: the caller may close
 * fd) or when the handshake is not done (there is no session to close),
 * TLS_WANT_READ or TLS_WANT_WRITE (call again), or -1 on an error or when
 * the connection failed before (nothing is sent then).
 */
int tls_conn_shutdown(struct tls_conn *c);

/*
 * tls_conn_new_client: a client-side TLS connection on fd (connected,
 * non-blocking, the caller's: not closed by tls_conn_free), from a
 * context of tls_client_ctx_new. The handshake starts with the first
 * tls_conn_write (or read): the client speaks first.
 * servername: sent as SNI (RFC 6066); NULL, "" or an IP address literal
 * sends none. verify_name: NULL: the peer's certificate is not checked
 * (opportunistic TLS: smtp_tls_security_level may and encrypt); else the
 * handshake fails unless the chain verifies against the context's trust
 * anchors and the certificate names verify_name (its DNS subjectAltNames,
 * or its CN when it has none; a wildcard only as a whole leftmost label).
 * A failed verification reads "TLS handshake failed: certificate verify
 * failed (<OpenSSL's reason, e.g. hostname mismatch>)" in tls_conn_error.
 * Returns 0 with *c_r, or -1 with *error_r.
 */
int tls_conn_new_client(struct tls_ctx *ctx, int fd, const char *servername,
    const char *verify_name, struct tls_conn **c_r, const char **error_r);

/* tls_conn_verified: whether the peer's certificate was verified (a
 * client connection made with a verify name, handshake done). */
bool tls_conn_verified(struct tls_conn *c);

/* tls_conn_free: free *c (not its fd) and set it to NULL; NULL allowed. */
void tls_conn_free(struct tls_conn **c);

/* tls_conn_handshake_done: whether the handshake has completed. */
bool tls_conn_handshake_done(struct tls_conn *c);

/*
 * tls_conn_info: for the log, e.g.
 * "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)", or
 * "handshake not done". Valid until the next call on c.
 */
const char *tls_conn_info(struct tls_conn *c);

/* tls_conn_error: the reason of the last -1 from c, for the log;
 * "" if none. Valid until the next call on c. */
const char *tls_conn_error(struct tls_conn *c);

#endif
