/*
 * smtp_conn.c: a client of an smtpd or lmtp process, from the master's
 * LOFTD_CONN_NEW to "disconnect from": the connection, the smtp_session
 * engine fed from its input (never ahead of a decision the engine waits
 * for, never while its replies pile up unsent), the replies written back,
 * STARTTLS once "220" has left, the idle and stalled-output timeouts, and
 * the log lines of the client's life. What a recipient or a message
 * means is the role's (smtpd.c, lmtpd.c), through smtp_conn_ops.
 *
 * SECURITY: client bytes pass through here to the engine only; nothing
 * here parses them. The master's records are checked for form by role.c
 * and for content by the role. Names from clients (HELO) are logged by
 * the roles, escaped.
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "compat/compat.h"
#include "conf.h"
#include "conn.h"
#include "conn_tls.h"
#include "ioloop.h"
#include "log.h"
#include "xmalloc.h"
#include "loftd.h"
#include "smtp_conn.h"

/* Client bytes read ahead of the engine. The engine keeps its own bounded
 * queue while it waits for a decision; this is only the read buffer. */
#define SMTP_CONN_INPUT_MAX	16384

/* The process's clients and what serves them. */
struct smtp_conn_server {
	struct ioloop *loop;		/* owned */
	const struct smtp_conn_ops *ops;
	struct role_master_ops master_ops;
	struct tls_ctx *tls;		/* the role's, or NULL */
	struct smtp_conn *clients;
	unsigned timeout_ms;
	char hostname[SMTP_HELO_MAX + 1];
};

static struct smtp_conn_server smtp_conn_srv;

/*
 * Ending a client.
 */

static void
smtp_conn_free(struct smtp_conn *sc, bool notify)
{
	smtp_conn_srv.ops->free(sc);
	if (notify)
		role_conn_done(sc->id);
	/* An open transaction ends with cb->reset. */
	smtp_session_free(&sc->smtp);
	conn_close(&sc->conn);
	timeout_remove(&sc->kill_to);
	if (sc->prev != NULL)
		sc->prev->next = sc->next;
	else
		smtp_conn_srv.clients = sc->next;
	if (sc->next != NULL)
		sc->next->prev = sc->prev;
	free(sc);
	role_client_remove();
}

static void
smtp_conn_log_disconnect(const struct smtp_conn *sc)
{
	if (smtp_conn_srv.ops->auth)
		log_info("disconnect from %s mail=%u rcpt=%u/%u data=%u/%u "
		    "auth=%u/%u", sc->client, sc->n_mail, sc->n_rcpt_ok,
		    sc->n_rcpt, sc->n_data_ok, sc->n_data, sc->n_auth_ok,
		    sc->n_auth);
	else
		log_info("disconnect from %s mail=%u rcpt=%u/%u data=%u/%u",
		    sc->client, sc->n_mail, sc->n_rcpt_ok, sc->n_rcpt,
		    sc->n_data_ok, sc->n_data);
}

static void
smtp_conn_kill_now(void *ctx)
{
	struct smtp_conn *sc = ctx;

	smtp_conn_log_disconnect(sc);
	smtp_conn_free(sc, true);
}

void
smtp_conn_kill(struct smtp_conn *sc)
{
	if (sc->dying)
		return;
	sc->dying = true;
	if (sc->kill_to == NULL)
		sc->kill_to = timeout_add(smtp_conn_srv.loop, 0, false,
		    smtp_conn_kill_now, sc);
}

/* What the engine was doing, for "lost connection after X". END is seen
 * while deliveries answer (lmtp) or the message is being committed
 * (smtpd). */
static const char *
smtp_conn_state_name(const struct smtp_conn *sc)
{
	if (sc->smtp == NULL)
		return "CONNECT";
	switch (smtp_session_state(sc->smtp)) {
	case SMTP_STATE_INIT:
		return "CONNECT";
	case SMTP_STATE_READY:
		return smtp_conn_srv.ops->hello;
	case SMTP_STATE_MAIL:
		return smtp_conn_srv.ops->in_rcpt(sc) ? "RCPT" : "MAIL";
	case SMTP_STATE_DATA:
		return "DATA";
	case SMTP_STATE_CHUNKING:
		return "BDAT";
	default:
		return "END-OF-MESSAGE";
	}
}

/*
 * The engine's callbacks every role shares.
 */

void
smtp_conn_engine_write(void *ctx, const unsigned char *data, size_t len)
{
	struct smtp_conn *sc = ctx;

	if (sc->dying)
		return;
	if (conn_write(sc->conn, data, len) < 0)
		smtp_conn_kill(sc);
}

void
smtp_conn_engine_start_tls(void *ctx)
{
	struct smtp_conn *sc = ctx;

	/* Done once "220 Ready to start TLS" has left: CONN_EV_DRAINED. */
	sc->starting_tls = true;
}

void
smtp_conn_engine_closed(void *ctx)
{
	struct smtp_conn *sc = ctx;

	sc->quit = true;
	conn_close_after_flush(sc->conn);
}

/*
 * Client input.
 */

void
smtp_conn_feed(struct smtp_conn *sc)
{
	const unsigned char *data;
	size_t len, used;

	while (!sc->dying && !sc->quit && !sc->starting_tls &&
	    sc->smtp != NULL && !conn_output_full(sc->conn)) {
		data = conn_input_peek(sc->conn, &len);
		if (len == 0)
			return;
		sc->in_engine = true;
		used = smtp_session_input(sc->smtp, data, len);
		sc->in_engine = false;
		conn_input_consume(sc->conn, used);
		if (sc->starting_tls) {
			/* Plaintext after STARTTLS is never read as a
			 * command (the engine dropped what it was given). */
			conn_input_discard(sc->conn);
			return;
		}
		if (used < len)
			return;
	}
}

/* TLS on sc's connection; -1 after logging and killing sc. */
static int
smtp_conn_tls_on(struct smtp_conn *sc)
{
	const char *error;

	if (conn_tls_start(sc->conn, smtp_conn_srv.tls, &error) < 0) {
		log_error("cannot start TLS for %s: %s", sc->client, error);
		smtp_conn_kill(sc);
		return -1;
	}
	sc->secured = true;
	return 0;
}

static void
smtp_conn_tls_begin(struct smtp_conn *sc)
{
	sc->starting_tls = false;
	conn_input_discard(sc->conn);
	if (smtp_conn_tls_on(sc) == 0)
		smtp_session_tls_started(sc->smtp);
}

static void
smtp_conn_lost(struct smtp_conn *sc, struct conn *conn, enum conn_event ev)
{
	if (sc->quit)
		return;
	if (ev == CONN_EV_CLOSED)
		log_info("lost connection after %s from %s",
		    smtp_conn_state_name(sc), sc->client);
	else
		log_info("lost connection after %s from %s (%s)",
		    smtp_conn_state_name(sc), sc->client,
		    ev == CONN_EV_STALLED ? "output stalled" :
		    conn_error(conn) != NULL ? conn_error(conn) : "error");
}

static void
smtp_conn_event(struct conn *conn, enum conn_event ev, void *ctx)
{
	struct smtp_conn *sc = ctx;

	switch (ev) {
	case CONN_EV_INPUT:
		smtp_conn_feed(sc);
		break;
	case CONN_EV_DRAINED:
		if (sc->starting_tls)
			smtp_conn_tls_begin(sc);
		smtp_conn_feed(sc);
		break;
	case CONN_EV_TIMEOUT:
		log_info("timeout after %s from %s", smtp_conn_state_name(sc),
		    sc->client);
		(void)conn_printf(conn, "421 4.4.2 %s Error: timeout "
		    "exceeded\r\n", smtp_conn_srv.hostname);
		sc->quit = true;
		conn_close_after_flush(conn);
		break;
	case CONN_EV_CLOSED:
	case CONN_EV_STALLED:
	case CONN_EV_ERROR:
		smtp_conn_lost(sc, conn, ev);
		smtp_conn_kill(sc);
		break;
	}
}

/*
 * A new client.
 */

/* rip as a socket address, for relay control; "client" for the log. */
static void
smtp_conn_client_addr(struct smtp_conn *sc)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&sc->addr.ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&sc->addr.ss;

	memset(&sc->addr, 0, sizeof(sc->addr));
	if (inet_pton(AF_INET, sc->rip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sc->addr.len = sizeof(*sin);
		sc->have_addr = true;
	} else if (inet_pton(AF_INET6, sc->rip, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sc->addr.len = sizeof(*sin6);
		sc->have_addr = true;
	}
	if (sc->service == LOFTD_SVC_LMTP_UNIX)
		strlcpy(sc->client, "local", sizeof(sc->client));
	else
		snprintf(sc->client, sizeof(sc->client), "unknown[%s]",
		    sc->rip);
}

int
smtp_conn_add(struct smtp_conn *sc, struct role_conn *rc)
{
	sc->id = rc->id;
	sc->service = rc->service;
	strlcpy(sc->rip, rc->rip, sizeof(sc->rip));
	smtp_conn_client_addr(sc);
	sc->conn = conn_new(smtp_conn_srv.loop, rc->fd, SMTP_CONN_INPUT_MAX,
	    smtp_conn_event, sc);
	rc->fd = -1;
	conn_set_idle_timeout(sc->conn, smtp_conn_srv.timeout_ms);
	conn_set_output_timeout(sc->conn, smtp_conn_srv.timeout_ms);
	sc->next = smtp_conn_srv.clients;
	if (sc->next != NULL)
		sc->next->prev = sc;
	smtp_conn_srv.clients = sc;
	role_client_add();
	log_info("connect from %s", sc->client);
	if (rc->tls)
		return smtp_conn_tls_on(sc);
	return 0;
}

void
smtp_conn_settings(struct smtp_settings *set)
{
	memset(set, 0, sizeof(*set));
	set->hostname = smtp_conn_srv.hostname;
	set->size_max = (uint64_t)conf_int("message_size_limit");
	set->rcpt_max = (unsigned)conf_int("smtpd_recipient_limit");
	set->errors_max = (unsigned)conf_int("smtpd_hard_error_limit");
}

void
smtp_conn_start(struct smtp_conn *sc, const struct smtp_settings *set)
{
	sc->smtp = smtp_session_new(set, smtp_conn_srv.ops->engine, sc);
	smtp_session_greet(sc->smtp);
}

struct smtp_conn *
smtp_conn_first(void)
{
	return smtp_conn_srv.clients;
}

/*
 * The transaction: what both roles keep of it.
 */

void
smtp_conn_path_bare(const struct smtp_path *p, char *out, size_t size)
{
	char buf[SMTP_CONN_PATH_BUF];
	size_t len;

	smtp_path_format(p, buf, sizeof(buf));
	len = strlen(buf);
	if (len >= 2 && buf[0] == '<' && buf[len - 1] == '>') {
		buf[len - 1] = '\0';
		strlcpy(out, buf + 1, size);
	} else
		strlcpy(out, buf, size);
}

void
smtp_conn_mail(struct smtp_conn *sc, const struct smtp_mail *m)
{
	sc->n_mail++;
	strlcpy(sc->helo, m->helo != NULL ? m->helo : "", sizeof(sc->helo));
	if (m->from->null)
		sc->sender[0] = '\0';
	else
		smtp_conn_path_bare(m->from, sc->sender, sizeof(sc->sender));
}

/* From the HELO name and the client's address literal (no reverse DNS;
 * "local" on a UNIX socket), by myhostname, with the protocol, the ID,
 * for the recipient when there is exactly one, and the date. */
char *
smtp_conn_received(const struct smtp_conn *sc, const char *with,
    const char *id, const char *rcpt)
{
	char date[64], lit[NET_ADDR_STR_MAX + 8];
	const char *from;

	if (sc->rip[0] == '\0')
		strlcpy(lit, "local", sizeof(lit));
	else
		snprintf(lit, sizeof(lit), "[%s%s]", strchr(sc->rip, ':') !=
		    NULL ? "IPv6:" : "", sc->rip);
	from = sc->helo[0] != '\0' ? sc->helo : lit;
	loftd_date(date, sizeof(date));
	if (rcpt != NULL)
		return xasprintf("Received: from %s (%s)\r\n\tby %s (loft) "
		    "with %s id %s\r\n\tfor %s; %s\r\n", from, lit,
		    smtp_conn_srv.hostname, with, id, rcpt, date);
	return xasprintf("Received: from %s (%s)\r\n\tby %s (loft) with %s "
	    "id %s;\r\n\t%s\r\n", from, lit, smtp_conn_srv.hostname, with, id,
	    date);
}

/*
 * The process.
 */

void
smtp_conn_role_init(const char *program, bool foreground, bool have_log_fd)
{
	char *host = smtp_conn_srv.hostname;
	size_t size = sizeof(smtp_conn_srv.hostname);

	loftd_log_setup(program, foreground, have_log_fd);
	signal(SIGPIPE, SIG_IGN);
	umask(077);
	if (strlcpy(host, conf_str("myhostname"), size) >= size ||
	    host[0] == '\0' || strpbrk(host, " \t") != NULL)
		log_fatal("myhostname %s: not a host name",
		    conf_str("myhostname"));
}

const char *
smtp_conn_hostname(void)
{
	return smtp_conn_srv.hostname;
}

struct ioloop *
smtp_conn_loop_new(const struct smtp_conn_ops *ops, struct tls_ctx *tls)
{
	smtp_conn_srv.ops = ops;
	smtp_conn_srv.tls = tls;
	smtp_conn_srv.master_ops.conn_new = ops->conn_new;
	smtp_conn_srv.master_ops.msg = ops->master_msg;
	smtp_conn_srv.timeout_ms = (unsigned)conf_time("smtpd_timeout") * 1000;
	smtp_conn_srv.loop = ioloop_new();
	loftd_stop_on_sigterm(smtp_conn_srv.loop);
	role_master_open(smtp_conn_srv.loop, &smtp_conn_srv.master_ops);
	return smtp_conn_srv.loop;
}

void
smtp_conn_loop_run(void)
{
	ioloop_run(smtp_conn_srv.loop);
	if (smtp_conn_srv.ops->stop != NULL)
		smtp_conn_srv.ops->stop();
	while (smtp_conn_srv.clients != NULL)
		smtp_conn_free(smtp_conn_srv.clients, false);
	role_master_close();
}

void
smtp_conn_loop_free(void)
{
	ioloop_free(&smtp_conn_srv.loop);
	conf_reset();
}
