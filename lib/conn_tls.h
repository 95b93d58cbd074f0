/*
 * conn_tls.h: TLS (lib/tls) as the transport of a buffered connection
 * (lib/conn). After conn_tls_start() the owner keeps using conn_read_line,
 * conn_write and the events as before; the bytes on the wire are TLS.
 *
 * Not thread-safe: like lib/tls, one process, one thread.
 */
#ifndef LOFT_CONN_TLS_H
#define LOFT_CONN_TLS_H

struct conn;
struct tls_ctx;
struct tls_conn;

/*
 * conn_tls_start: from now on conn speaks TLS as the server, with a
 * tls_conn made from ctx on conn's fd. The handshake runs inside the
 * connection's next reads and writes; nothing blocks. A failed handshake
 * or TLS error later is CONN_EV_ERROR, with conn_error() giving OpenSSL's
 * reason ("read: TLS handshake failed: ..."); a peer's close_notify is
 * CONN_EV_CLOSED. A close without close_notify is CONN_EV_ERROR too
 * ("... unexpected eof ..."): after QUIT/LOGOUT the owner is closing
 * anyway and may ignore it. The TLS state is freed by conn_close(), after
 * one non-blocking try to send close_notify (conn_close_after_flush()
 * thus ends with a close_notify once the output has gone).
 *
 * Implicit TLS (POP3S 995, IMAPS 993, SMTPS 465): call it right after
 * conn_new() on the accepted fd, before writing the greeting (which is
 * then queued and sent once the handshake is done).
 *
 * STARTTLS / STLS, in this order:
 *   1. on the command line, stop taking lines from conn_read_line();
 *   2. conn_write() the OK reply ("+OK Begin TLS", "220 2.0.0 Ready",
 *      "OK Begin TLS negotiation now");
 *   3. wait for CONN_EV_DRAINED (or the drained callback): the reply must
 *      be sent in plaintext, and conn_tls_start refuses while output is
 *      queued;
 *   4. conn_input_discard(): whatever the client sent after the command
 *      before the handshake is plaintext an attacker could have injected
 *      (CVE-2011-0411 class); it must never be read as a command inside
 *      TLS. A client that sends its ClientHello before reading the reply
 *      loses it and fails the handshake, as with Postfix;
 *   5. conn_tls_start(); then forget the protocol state learnt in
 *      plaintext (capabilities, EHLO), as the RFCs require.
 *
 * Returns 0, or -1 with *error_r (static, valid until the next call into
 * this module) when conn is closed or dead, when output is still queued,
 * when TLS is already on (STARTTLS twice is the caller's protocol error
 * to answer), or when the TLS session cannot be made; conn is unchanged
 * then and still plaintext.
 */
int conn_tls_start(struct conn *conn, struct tls_ctx *ctx,
    const char **error_r);

/*
 * conn_tls_start_client: the same for the client side (outbound SMTP
 * after "220 Ready to start TLS"): a tls_conn_new_client session from ctx
 * (a tls_client_ctx_new context) with servername (SNI) and verify_name
 * (NULL: the certificate is not checked) as tls_conn_new_client takes
 * them. The client speaks first: the handshake runs inside the first
 * write, so queue the next command (EHLO) right after; its reply is the
 * first thing read inside TLS. A failed handshake, a failed verification
 * included, is CONN_EV_ERROR with conn_error() saying why ("write: TLS
 * handshake failed: certificate verify failed (hostname mismatch)").
 * Before calling it, drop what the server sent after its 220 with
 * conn_input_discard(): it was plaintext and must not be read as a reply
 * inside TLS. Returns 0, or -1 with *error_r for the same reasons as
 * conn_tls_start; conn is then unchanged and plaintext.
 */
int conn_tls_start_client(struct conn *conn, struct tls_ctx *ctx,
    const char *servername, const char *verify_name, const char **error_r);

/*
 * conn_tls_get: the TLS session of conn, or NULL if conn does not speak
 * TLS (never started, or closed). Borrowed: owned by conn, valid until
 * conn_close() or conn_set_transport(); do not read or write through it.
 * For tls_conn_handshake_done() and tls_conn_info().
 */
struct tls_conn *conn_tls_get(struct conn *conn);

/*
 * conn_tls_info: for the log: tls_conn_info() of conn's session
 * ("TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)",
 * "handshake not done"), or "plaintext" without TLS. Valid until the next
 * call on conn or into this module.
 */
const char *conn_tls_info(struct conn *conn);

#endif
