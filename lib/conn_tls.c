/*
 * conn_tls.c: lib/tls as a transport of lib/conn (see conn_tls.h), for
 * both the server side and the outbound SMTP client. It maps
 * the TLS_WANT_* results of tls_conn_read/write to the EAGAIN + direction
 * that conn expects, TLS errors to a fatal errno with OpenSSL's reason as
 * the connection's error text, and close to a best-effort close_notify.
 *
 * Trusts nothing from the peer; all parsing of TLS is OpenSSL's, and the
 * bytes it yields go through conn's bounded buffers. The only state here
 * besides the sessions is a table from fd to session, so that a conn can
 * be asked for its session without conn exposing its transport.
 */
#include "config.h"
#include <sys/types.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "compat/compat.h"
#include "conn.h"
#include "conn_tls.h"
#include "log.h"
#include "tls.h"
#include "xmalloc.h"

#define CONN_TLS_TABLE_MIN	16	/* first size of the fd table */

struct conn_tls {
	struct conn *conn;	/* not owned: the conn owns us */
	struct tls_conn *tls;	/* owned */
	int fd;			/* conn's; our slot in the table */
};

/* Sessions by fd: an fd names one open connection at a time, and our
 * close clears the slot before conn closes the fd. Freed when empty. */
static struct conn_tls **conn_tls_table;
static size_t conn_tls_table_size, conn_tls_count;
static char conn_tls_error[TLS_ERROR_MAX + 64];

static void
conn_tls_register(struct conn_tls *t)
{
	size_t fd = (size_t)t->fd, size;

	if (fd >= conn_tls_table_size) {
		size = conn_tls_table_size < CONN_TLS_TABLE_MIN ?
		    CONN_TLS_TABLE_MIN : conn_tls_table_size;
		while (size <= fd)
			size *= 2;
		conn_tls_table = xreallocarray(conn_tls_table, size,
		    sizeof(*conn_tls_table));
		memset(conn_tls_table + conn_tls_table_size, 0,
		    (size - conn_tls_table_size) * sizeof(*conn_tls_table));
		conn_tls_table_size = size;
	}
	if (conn_tls_table[fd] != NULL)
		log_panic("conn_tls: fd %d registered twice", t->fd);
	conn_tls_table[fd] = t;
	conn_tls_count++;
}

static void
conn_tls_unregister(struct conn_tls *t)
{
	size_t fd = (size_t)t->fd;

	if (fd >= conn_tls_table_size || conn_tls_table[fd] != t)
		log_panic("conn_tls: fd %d not registered", t->fd);
	conn_tls_table[fd] = NULL;
	if (--conn_tls_count == 0) {
		free(conn_tls_table);
		conn_tls_table = NULL;
		conn_tls_table_size = 0;
	}
}

static struct conn_tls *
conn_tls_lookup(struct conn *conn)
{
	int fd = conn_fd(conn);
	struct conn_tls *t;

	if (fd < 0 || (size_t)fd >= conn_tls_table_size)
		return NULL;
	t = conn_tls_table[fd];
	return t != NULL && t->conn == conn ? t : NULL;
}

/* --- the transport --- */

/* What a tls_conn_read/write result means to conn. */
static ssize_t
conn_tls_result(struct conn_tls *t, ssize_t n, enum conn_want *want_r)
{
	switch (n) {
	case TLS_WANT_READ:
		*want_r = CONN_WANT_READ;
		errno = EAGAIN;
		return -1;
	case TLS_WANT_WRITE:
		*want_r = CONN_WANT_WRITE;
		errno = EAGAIN;
		return -1;
	case -1:
		conn_set_error(t->conn, tls_conn_error(t->tls));
		errno = EPROTO;
		return -1;
	default:
		return n;
	}
}

static ssize_t
conn_tls_read(void *tctx, int fd, unsigned char *buf, size_t size,
    enum conn_want *want_r)
{
	struct conn_tls *t = tctx;

	(void)fd;
	return conn_tls_result(t, tls_conn_read(t->tls, buf, size), want_r);
}

static ssize_t
conn_tls_write(void *tctx, int fd, const unsigned char *buf, size_t size,
    enum conn_want *want_r)
{
	struct conn_tls *t = tctx;

	(void)fd;
	return conn_tls_result(t, tls_conn_write(t->tls, buf, size), want_r);
}

static size_t
conn_tls_pending(void *tctx)
{
	struct conn_tls *t = tctx;

	return tls_conn_pending(t->tls);
}

/* One try at close_notify: conn is closing and will not wait for the fd. */
static void
conn_tls_close(void *tctx, int fd)
{
	struct conn_tls *t = tctx;

	(void)fd;
	(void)tls_conn_shutdown(t->tls);
	tls_conn_free(&t->tls);
	conn_tls_unregister(t);
	free(t);
}

static const struct conn_transport conn_tls_ops = {
	.read = conn_tls_read,
	.write = conn_tls_write,
	.pending = conn_tls_pending,
	.close = conn_tls_close
};

/* --- public --- */

static int
conn_tls_fail(const char **error_r, const char *what)
{
	strlcpy(conn_tls_error, what, sizeof(conn_tls_error));
	*error_r = conn_tls_error;
	return -1;
}

/* conn_tls_usable: whether conn can switch to TLS now. */
static int
conn_tls_usable(struct conn *conn, const char **error_r)
{
	if (conn_fd(conn) < 0)
		return conn_tls_fail(error_r, "TLS: the connection is closed");
	if (conn_tls_lookup(conn) != NULL)
		return conn_tls_fail(error_r, "TLS is already active");
	if (conn_output_size(conn) > 0)
		return conn_tls_fail(error_r, "TLS: output is still queued "
		    "(start TLS once the reply has been sent)");
	return 0;
}

/* conn_tls_attach: make tls (owned from here on) conn's transport. */
static int
conn_tls_attach(struct conn *conn, struct tls_conn *tls,
    const char **error_r)
{
	struct conn_tls *t;

	t = xcalloc(1, sizeof(*t));
	t->conn = conn;
	t->tls = tls;
	t->fd = conn_fd(conn);
	if (conn_set_transport(conn, &conn_tls_ops, t) < 0) {
		tls_conn_free(&t->tls);
		free(t);
		return conn_tls_fail(error_r, "TLS: the connection has "
		    "failed");
	}
	conn_tls_register(t);
	return 0;
}

int
conn_tls_start(struct conn *conn, struct tls_ctx *ctx, const char **error_r)
{
	struct tls_conn *tls;
	const char *error;

	if (conn_tls_usable(conn, error_r) < 0)
		return -1;
	if (tls_conn_new(ctx, conn_fd(conn), &tls, &error) < 0)
		return conn_tls_fail(error_r, error);
	return conn_tls_attach(conn, tls, error_r);
}

int
conn_tls_start_client(struct conn *conn, struct tls_ctx *ctx,
    const char *servername, const char *verify_name, const char **error_r)
{
	struct tls_conn *tls;
	const char *error;

	if (conn_tls_usable(conn, error_r) < 0)
		return -1;
	if (tls_conn_new_client(ctx, conn_fd(conn), servername, verify_name,
	    &tls, &error) < 0)
		return conn_tls_fail(error_r, error);
	return conn_tls_attach(conn, tls, error_r);
}

struct tls_conn *
conn_tls_get(struct conn *conn)
{
	struct conn_tls *t = conn_tls_lookup(conn);

	return t == NULL ? NULL : t->tls;
}

const char *
conn_tls_info(struct conn *conn)
{
	struct conn_tls *t = conn_tls_lookup(conn);

	return t == NULL ? "plaintext" : tls_conn_info(t->tls);
}
