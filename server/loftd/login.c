/*
 * login.c: a login process of loftd. It takes client connections from
 * the master, speaks TLS and the protocol up to authentication (the POP3
 * engine in AUTHORIZATION state), asks the auth process whether the
 * credentials are good, and on success hands the client over: a
 * plaintext socket goes to the master as it is; a TLS client stays here,
 * since OpenSSL's state cannot move, and its plaintext is relayed over a
 * socketpair whose other end goes to the master.
 *
 * SECURITY: this is the process that parses what clients send before they
 * are known. Started as root, it loads the TLS key, then locks itself into
 * login_chroot (an empty directory) as login_user, with no way back to
 * root (no_new_privs) and no core dumps: a bug here reaches neither a
 * mailbox nor the password database, only other clients' pre-login
 * traffic. Everything it tells the master is checked there.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "compat/compat.h"
#include "conf.h"
#include "conn.h"
#include "conn_tls.h"
#include "ioloop.h"
#include "ipc.h"
#include "log.h"
#include "net.h"
#include "tls.h"
#include "user.h"
#include "xmalloc.h"
#include "auth_proto.h"
#include "pop3_session.h"
#include "server/imap/imap_session.h"
#include "chan.h"
#include "loftd.h"
#include "rate.h"

/* Bytes of client input buffered before login: room for a few pipelined
 * command lines, little enough that idle clients cost little. */
#define LOGIN_INPUT_MAX		2048
#define LOGIN_RELAY_INPUT_MAX	(16 * 1024)
#define LOGIN_OUTPUT_TIMEOUT_MS	(10 * 60 * 1000)

struct login_client {
	struct login_client *prev, *next;
	uint32_t id;			/* the master's conn_id */
	uint32_t service;
	char rip[NET_ADDR_STR_MAX];
	char user[USER_NAME_MAX + 1];	/* as claimed, for the log */
	struct conn *conn;		/* owned: the client */
	struct pop3_session *pop3;	/* owned until handed over (POP3) */
	struct imap_session *imap;	/* owned until handed over (IMAP) */
	bool secured, starting_tls, quit, dying, eof;
	uint32_t auth_id;		/* request awaiting an answer, or 0 */
	uint32_t sasl_id;		/* the SASL session, or 0 */
	bool handing_over;
	bool handover_drain;		/* the login OK is still queued: hand
					   the socket over on its DRAINED */
	struct buf handover;		/* owned: what the client pipelined
					   after login, for the mail process */
	int relay_fd;			/* our end while handing over */
	struct conn *peer;		/* owned: the mail side of a relay */
	unsigned char token[64];
	size_t token_len;
	struct rate rate;
	struct timeout *rate_to;	/* owned */
	struct timeout *kill_to;	/* owned */
	const char *reason;		/* why it ended, for the log */
	char reason_buf[160];
};

struct login {
	struct ioloop *loop;
	struct chan *master;		/* owned */
	struct chan *auth;		/* owned */
	struct tls_ctx *tls;		/* owned, or NULL */
	char *mechs;			/* owned: every SASL mechanism */
	struct login_client *clients;
	size_t nclients;
	uint32_t next_id;
	bool retired;
	unsigned rate_limit;
	unsigned timeout_ms;
	size_t line_max;
};

static struct login login;
static struct ipc_msg login_out;

static void login_feed(struct login_client *c);
static void login_client_event(struct conn *conn, enum conn_event ev,
    void *ctx);

static void
login_maybe_exit(void)
{
	if (login.retired && login.nclients == 0)
		ioloop_stop(login.loop);
}

/*
 * Ending a client.
 */

static void
login_client_log_end(struct login_client *c)
{
	char euser[sizeof(c->user) * 4];

	if (c->reason == NULL)
		return;
	log_info("%s: disconnect: rip=%s, user=<%s>, reason=%s, %s",
	    loftd_service_name(c->service), c->rip,
	    log_escape(c->user, euser, sizeof(euser)), c->reason,
	    c->secured ? "TLS" : "plaintext");
}

/* Forget the bytes kept for the hand-over: they may hold a password the
 * client pipelined (a second LOGIN). */
static void
login_handover_wipe(struct login_client *c)
{
	if (c->handover.data != NULL)
		explicit_bzero(c->handover.data, c->handover.len);
	buf_free(&c->handover);
}

/* Free c now. notify: tell the master this process holds it no more. */
static void
login_client_free(struct login_client *c, bool notify)
{
	if (c->sasl_id != 0 && chan_ok(login.auth)) {
		struct auth_req req;
		const char *error;

		memset(&req, 0, sizeof(req));
		req.type = AUTH_REQ_SASL_ABORT;
		req.id = ++login.next_id;
		req.session = c->sasl_id;
		if (auth_proto_req_encode(&login_out, &req, &error) == 0)
			(void)chan_send(login.auth, &login_out);
	}
	if (notify && chan_ok(login.master)) {
		ipc_msg_init(&login_out, LOFTD_CONN_DONE, 0);
		ipc_add_u32(&login_out, c->id);
		(void)chan_send(login.master, &login_out);
	}
	pop3_session_free(&c->pop3);
	imap_session_free(&c->imap);
	conn_close(&c->conn);
	conn_close(&c->peer);
	if (c->relay_fd >= 0)
		close(c->relay_fd);
	login_handover_wipe(c);
	timeout_remove(&c->rate_to);
	timeout_remove(&c->kill_to);
	explicit_bzero(c->token, sizeof(c->token));
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		login.clients = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	login.nclients--;
	free(c);
	login_maybe_exit();
}

static void
login_client_kill_now(void *ctx)
{
	struct login_client *c = ctx;

	login_client_log_end(c);
	login_client_free(c, true);
}

/* End c from inside a callback that may still use it: the free runs
 * from the loop, right after. */
static void
login_client_kill(struct login_client *c, const char *reason)
{
	if (c->dying)
		return;
	c->dying = true;
	if (c->reason == NULL)
		c->reason = reason;
	if (c->kill_to == NULL)
		c->kill_to = timeout_add(login.loop, 0, false,
		    login_client_kill_now, c);
}

/*
 * The POP3 engine's callbacks.
 */

static void
login_pop3_write(void *ctx, const unsigned char *data, size_t len)
{
	struct login_client *c = ctx;

	if (c->dying)
		return;
	if (conn_write(c->conn, data, len) < 0)
		login_client_kill(c, "output buffer full");
}

/* Send req to the auth process: 0 (the answer comes later), or -1. */
static int
login_auth_send(struct login_client *c, struct auth_req *req)
{
	const char *error;
	int ret;

	req->id = ++login.next_id;
	if (req->id == 0)
		req->id = ++login.next_id;
	req->service = loftd_service_name(c->service);
	req->ip = c->rip;
	req->secure = c->secured;
	ret = auth_proto_req_encode(&login_out, req, &error);
	if (ret == 0)
		ret = chan_send(login.auth, &login_out);
	else
		log_warning("auth request: %s", error);
	/* The record held the password: gone from here at least. */
	explicit_bzero(login_out.data, sizeof(login_out.data));
	if (ret < 0)
		return -1;
	c->auth_id = req->id;
	return 0;
}

static int
login_check_plain(struct login_client *c, const char *user, const char *pass)
{
	struct auth_req req;

	strlcpy(c->user, user, sizeof(c->user));
	memset(&req, 0, sizeof(req));
	req.type = AUTH_REQ_PLAIN;
	req.user = user;
	req.password = pass;
	return login_auth_send(c, &req);
}

static int
login_sasl(struct login_client *c, const char *mech, bool first,
    const unsigned char *resp, size_t resp_len, bool has_resp)
{
	struct auth_req req;
	int r;

	memset(&req, 0, sizeof(req));
	if (first) {
		req.type = AUTH_REQ_SASL_START;
		req.mech = mech;
		req.has_initial = has_resp;
		req.initial = resp;
		req.initial_len = resp_len;
	} else {
		req.type = AUTH_REQ_SASL_STEP;
		req.session = c->sasl_id;
		req.data = resp;
		req.data_len = resp_len;
	}
	r = login_auth_send(c, &req);
	if (first && r == 0)
		c->sasl_id = c->auth_id;
	return r;
}

static enum pop3_auth_result
login_pop3_check_plain(void *ctx, const char *user, const char *pass)
{
	return login_check_plain(ctx, user, pass) < 0 ? POP3_AUTH_TEMPFAIL :
	    POP3_AUTH_PENDING;
}

static enum pop3_auth_result
login_pop3_sasl(void *ctx, const char *mech, bool first,
    const unsigned char *resp, size_t resp_len, bool has_resp,
    const unsigned char **challenge_r, size_t *challenge_len_r,
    const char **user_r)
{
	(void)challenge_r;
	(void)challenge_len_r;
	(void)user_r;
	return login_sasl(ctx, mech, first, resp, resp_len, has_resp) < 0 ?
	    POP3_AUTH_TEMPFAIL : POP3_AUTH_PENDING;
}

static enum imap_auth_result
login_imap_check_plain(void *ctx, const char *user, const char *pass)
{
	return login_check_plain(ctx, user, pass) < 0 ? IMAP_AUTH_TEMPFAIL :
	    IMAP_AUTH_PENDING;
}

static enum imap_auth_result
login_imap_sasl(void *ctx, const char *mech, bool first,
    const unsigned char *resp, size_t resp_len, bool has_resp,
    const unsigned char **challenge_r, size_t *challenge_len_r,
    const char **user_r)
{
	(void)challenge_r;
	(void)challenge_len_r;
	(void)user_r;
	return login_sasl(ctx, mech, first, resp, resp_len, has_resp) < 0 ?
	    IMAP_AUTH_TEMPFAIL : IMAP_AUTH_PENDING;
}

static void
login_pop3_sasl_abort(void *ctx)
{
	struct login_client *c = ctx;
	struct auth_req req;
	const char *error;

	if (c->sasl_id == 0)
		return;
	memset(&req, 0, sizeof(req));
	req.type = AUTH_REQ_SASL_ABORT;
	req.id = ++login.next_id;
	req.session = c->sasl_id;
	c->sasl_id = 0;
	/* Its answer is ignored: no client waits for it. */
	if (auth_proto_req_encode(&login_out, &req, &error) == 0)
		(void)chan_send(login.auth, &login_out);
}

static void
login_pop3_start_tls(void *ctx)
{
	struct login_client *c = ctx;

	/* Done once "+OK Begin TLS negotiation" has left: CONN_EV_DRAINED. */
	c->starting_tls = true;
}

/* The hand-over did not happen: POP3 answers and goes on; IMAP has
 * answered its tagged OK already, so the session ends with BYE. */
static void
login_engine_login_failed(struct login_client *c)
{
	if (c->pop3 != NULL) {
		pop3_session_login_failed(c->pop3);
		return;
	}
	(void)conn_printf(c->conn, "* BYE [UNAVAILABLE] Cannot start the "
	    "session, try again\r\n");
	c->quit = true;
	c->reason = "session could not start";
	conn_close_after_flush(c->conn);
}

/* The hand-over did not happen: this process keeps the client. */
static void
login_handover_failed(struct login_client *c)
{
	login_handover_wipe(c);
	c->handing_over = false;
	c->handover_drain = false;
	if (c->relay_fd >= 0)
		close(c->relay_fd);
	c->relay_fd = -1;
	conn_set_idle_timeout(c->conn, login.timeout_ms);
	conn_pause_input(c->conn, false);
	login_engine_login_failed(c);
}

/* Send the master the client (its socket, or our relay's other end), the
 * login token and the bytes pipelined after login. */
static void
login_handover_send(struct login_client *c)
{
	int fd, sp[2];

	c->handover_drain = false;
	if (c->secured) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
		    sp) < 0) {
			log_error("socketpair: %s", strerror(errno));
			fd = -1;
		} else {
			c->relay_fd = sp[0];
			fd = sp[1];
		}
	} else
		fd = fcntl(conn_fd(c->conn), F_DUPFD_CLOEXEC, 0);
	if (fd < 0) {
		login_handover_failed(c);
		return;
	}
	ipc_msg_init(&login_out, LOFTD_LOGIN, 0);
	ipc_add_u32(&login_out, c->id);
	ipc_add_data(&login_out, c->token, c->token_len);
	ipc_add_u32(&login_out, c->secured);
	ipc_add_u32(&login_out, c->secured);
	ipc_add_data(&login_out, c->handover.data, c->handover.len);
	ipc_msg_set_fd(&login_out, fd);
	login_handover_wipe(c);
	explicit_bzero(c->token, sizeof(c->token));
	if (chan_send(login.master, &login_out) < 0)
		login_handover_failed(c);
}

/*
 * Logged in: hand the client over to a mail process, with what it
 * pipelined behind the login command (IMAP stops consuming at the end of
 * that command, so it is all in the connection's buffer; POP3 also holds
 * some). A plaintext socket changes process, so the login OK must have
 * left first: the mail process writes to the same socket, and its
 * answers to the pipelined commands (COMPRESS, then compressed ones)
 * must come after our OK, never before it or around it; the
 * LOGIN_RESULT that ends our copy would also drop an OK still queued. A
 * TLS client stays here behind the relay, which queues the mail
 * process's output after ours, so it goes at once.
 */
static void
login_authenticated(struct login_client *c, const char *user)
{
	const unsigned char *rest;
	size_t rest_len;

	strlcpy(c->user, user, sizeof(c->user));
	/* Room for all the engine may hold; what goes to the mail process
	 * must fit one record. */
	login_handover_wipe(c);
	buf_init(&c->handover, POP3_EXPORT_MAX(login.line_max) +
	    LOGIN_INPUT_MAX);
	if (c->pop3 != NULL)
		pop3_session_export_pending(c->pop3, &c->handover);
	rest = conn_input_peek(c->conn, &rest_len);
	if (buf_append(&c->handover, rest, rest_len) < 0 ||
	    c->handover.len > LOFTD_PENDING_MAX) {
		login_handover_wipe(c);
		(void)conn_printf(c->conn, c->pop3 != NULL ? "-ERR [SYS/TEMP] "
		    "Too much pipelined input at login\r\n" : "* BYE Too "
		    "much pipelined input at login\r\n");
		c->quit = true;
		c->reason = "too much pipelined input at login";
		conn_close_after_flush(c->conn);
		return;
	}
	conn_input_consume(c->conn, rest_len);
	c->handing_over = true;
	/* From here the mail process's idle_timeout applies. */
	conn_set_idle_timeout(c->conn, 0);
	if (!c->secured) {
		/* What the client sends from now on stays in the socket for
		 * the mail process. */
		conn_pause_input(c->conn, true);
		/* No transport on a plaintext socket: the queue is all. */
		if (conn_output_size(c->conn) > 0) {
			c->handover_drain = true;
			return;
		}
	}
	login_handover_send(c);
}

static void
login_pop3_authenticated(void *ctx, const char *user)
{
	login_authenticated(ctx, user);
}

static void
login_pop3_closed(void *ctx)
{
	struct login_client *c = ctx;
	struct pop3_stats st;

	pop3_session_stats(c->pop3, &st);
	c->quit = true;
	if (c->reason == NULL)
		c->reason = st.bad >= POP3_BAD_MAX ? "too many bad commands" :
		    "QUIT";
	conn_close_after_flush(c->conn);
}

static const struct pop3_callbacks login_pop3_cb = {
	.write = login_pop3_write,
	.check_plain = login_pop3_check_plain,
	.sasl = login_pop3_sasl,
	.sasl_abort = login_pop3_sasl_abort,
	.start_tls = login_pop3_start_tls,
	.authenticated = login_pop3_authenticated,
	.closed = login_pop3_closed,
};

static void
login_imap_closed(void *ctx)
{
	struct login_client *c = ctx;
	struct imap_stats st;

	imap_session_stats(c->imap, &st);
	c->quit = true;
	if (c->reason == NULL)
		c->reason = st.logout ? "LOGOUT" : st.bad >= IMAP_BAD_MAX ?
		    "too many bad commands" : "closed by the server";
	conn_close_after_flush(c->conn);
}

static const struct imap_callbacks login_imap_cb = {
	.write = login_pop3_write,
	.check_plain = login_imap_check_plain,
	.sasl = login_imap_sasl,
	.sasl_abort = login_pop3_sasl_abort,
	.start_tls = login_pop3_start_tls,
	.authenticated = login_pop3_authenticated,
	.closed = login_imap_closed,
};

/*
 * The engine of the client's protocol.
 */

static size_t
login_engine_input(struct login_client *c, const unsigned char *data,
    size_t len)
{
	if (c->imap != NULL)
		return imap_session_input(c->imap, data, len);
	return pop3_session_input(c->pop3, data, len);
}

static void
login_engine_tls_started(struct login_client *c)
{
	if (c->imap != NULL)
		imap_session_tls_started(c->imap);
	else
		pop3_session_tls_started(c->pop3);
}

/*
 * Client input.
 */

static void
login_rate_resume(void *ctx)
{
	struct login_client *c = ctx;

	timeout_remove(&c->rate_to);
	login_feed(c);
}

/*
 * A client that sent its last commands and closed its side (a script,
 * "printf ... | nc") still gets them answered: EOF only ends the session
 * once nothing is pending (a credential check, a rate pause, output to
 * drain) and the engine has taken what it could. A partial last line is
 * dropped. The answers are flushed before the close.
 */
static void
login_eof_check(struct login_client *c)
{
	if (!c->eof || c->dying || c->quit || c->handing_over ||
	    c->auth_id != 0 || c->rate_to != NULL ||
	    (!c->starting_tls && conn_output_full(c->conn)))
		return;
	c->reason = "client closed";
	c->quit = true;
	conn_close_after_flush(c->conn);
}

static void
login_feed_input(struct login_client *c)
{
	const unsigned char *data;
	size_t len, allowed, used;
	unsigned wait_ms;

	while (!c->dying && !c->quit && !c->handing_over && !c->starting_tls &&
	    c->auth_id == 0 && c->rate_to == NULL &&
	    (c->pop3 != NULL || c->imap != NULL) &&
	    !conn_output_full(c->conn)) {
		data = conn_input_peek(c->conn, &len);
		if (len == 0)
			return;
		allowed = rate_take(&c->rate, login.rate_limit,
		    ioloop_now_ms(), data, len, &wait_ms);
		if (allowed == 0) {
			c->rate_to = timeout_add(login.loop, wait_ms, false,
			    login_rate_resume, c);
			return;
		}
		used = login_engine_input(c, data, allowed);
		conn_input_consume(c->conn, used);
		if (c->starting_tls) {
			/* Plaintext after STLS is never read as a command. */
			conn_input_discard(c->conn);
			return;
		}
		if (used < allowed)
			return;
	}
}

static void
login_feed(struct login_client *c)
{
	login_feed_input(c);
	login_eof_check(c);
}

static void
login_start_tls(struct login_client *c)
{
	const char *error;

	c->starting_tls = false;
	conn_input_discard(c->conn);
	if (conn_tls_start(c->conn, login.tls, &error) < 0) {
		log_error("%s: rip=%s: cannot start TLS: %s",
		    loftd_service_name(c->service), c->rip, error);
		login_client_kill(c, "TLS failed to start");
		return;
	}
	c->secured = true;
	login_engine_tls_started(c);
}

/*
 * The relay of a logged-in TLS client.
 */

/* Move what from has read to to, as far as to's queue allows. */
static void
login_relay_pump(struct conn *from, struct conn *to)
{
	const unsigned char *data;
	size_t len;

	if (from == NULL || to == NULL || conn_output_full(to))
		return;
	data = conn_input_peek(from, &len);
	if (len == 0)
		return;
	if (conn_write(to, data, len) == 0)
		conn_input_consume(from, len);
}

static void
login_relay_event(struct conn *conn, enum conn_event ev, void *ctx)
{
	struct login_client *c = ctx;
	bool client = conn == c->conn;
	struct conn *other = client ? c->peer : c->conn;

	switch (ev) {
	case CONN_EV_INPUT:
		login_relay_pump(conn, other);
		break;
	case CONN_EV_DRAINED:
		login_relay_pump(other, conn);
		break;
	case CONN_EV_CLOSED:
		/* One side is done: pass on what it said (a client's last
		 * "QUIT" must reach the mail process), and close the other
		 * side once that has gone; its CLOSED then ends the relay. */
		if (c->quit) {
			login_client_kill(c, NULL);
			break;
		}
		login_relay_pump(conn, other);
		c->quit = true;
		conn_close_after_flush(other);
		break;
	case CONN_EV_TIMEOUT:
	case CONN_EV_STALLED:
	case CONN_EV_ERROR:
		login_client_kill(c, NULL);
		break;
	}
}

static void
login_relay_start(struct login_client *c)
{
	c->peer = conn_new(login.loop, c->relay_fd, LOGIN_RELAY_INPUT_MAX,
	    login_relay_event, c);
	c->relay_fd = -1;
	conn_set_output_timeout(c->peer, LOGIN_OUTPUT_TIMEOUT_MS);
	conn_set_input_max(c->conn, LOGIN_RELAY_INPUT_MAX);
	conn_set_output_timeout(c->conn, LOGIN_OUTPUT_TIMEOUT_MS);
	/* Reuse the client connection's callback for the relay. */
	c->reason = NULL;
	pop3_session_free(&c->pop3);
	imap_session_free(&c->imap);
	c->handing_over = false;
	login_relay_pump(c->conn, c->peer);
	if (c->eof) {
		/* The client left while its login was being handed over. */
		c->quit = true;
		conn_close_after_flush(c->peer);
	}
}

/*
 * Client events before login.
 */

static void
login_client_event(struct conn *conn, enum conn_event ev, void *ctx)
{
	struct login_client *c = ctx;

	if (c->peer != NULL) {
		login_relay_event(conn, ev, ctx);
		return;
	}
	switch (ev) {
	case CONN_EV_INPUT:
		login_feed(c);
		break;
	case CONN_EV_DRAINED:
		if (c->handover_drain) {
			login_handover_send(c);
			break;
		}
		if (c->starting_tls)
			login_start_tls(c);
		login_feed(c);
		break;
	case CONN_EV_TIMEOUT:
		c->reason = "login_timeout";
		(void)conn_printf(conn, "-ERR [SYS/TEMP] Disconnected for "
		    "inactivity\r\n");
		c->quit = true;
		conn_close_after_flush(conn);
		break;
	case CONN_EV_CLOSED:
		if (c->quit) {
			/* The close asked for (QUIT, an error, EOF) is done. */
			login_client_kill(c, NULL);
			break;
		}
		c->eof = true;
		/* Handing over: the mail process may already have the socket,
		 * and answers the rest. */
		if (!c->handing_over)
			login_feed(c);
		break;
	case CONN_EV_STALLED:
		login_client_kill(c, "output stalled");
		break;
	case CONN_EV_ERROR:
		if (c->quit) {
			login_client_kill(c, NULL);
			break;
		}
		snprintf(c->reason_buf, sizeof(c->reason_buf), "%s",
		    conn_error(conn) != NULL ? conn_error(conn) : "error");
		login_client_kill(c, c->reason_buf);
		break;
	}
}

/*
 * Records from the master.
 */

static void
login_engine_new(struct login_client *c)
{
	if (c->service == LOFTD_SVC_IMAP) {
		struct imap_settings set;

		memset(&set, 0, sizeof(set));
		set.tls_available = login.tls != NULL;
		set.secured = c->secured;
		set.allow_plaintext = !conf_bool("disable_plaintext_auth");
		set.mechanisms = login.mechs;
		c->imap = imap_session_new(&set, &login_imap_cb, c);
		imap_session_greet(c->imap);
	} else {
		struct pop3_settings set;

		memset(&set, 0, sizeof(set));
		set.tls_available = login.tls != NULL;
		set.secured = c->secured;
		set.allow_plaintext = !conf_bool("disable_plaintext_auth");
		set.mechanisms = login.mechs;
		set.line_max = login.line_max;
		loftd_pop3_policy(&set);
		c->pop3 = pop3_session_new(&set, &login_pop3_cb, c);
		pop3_session_greet(c->pop3);
	}
}

static void
login_conn_new(struct ipc_msg *m)
{
	struct login_client *c;
	const char *rip, *lip, *error;
	uint32_t id, service, tls, rport, lport;
	int fd = ipc_msg_take_fd(m);

	ipc_get_u32(m, &id);
	ipc_get_u32(m, &service);
	ipc_get_u32(m, &tls);
	ipc_get_str(m, &rip);
	ipc_get_u32(m, &rport);
	ipc_get_str(m, &lip);
	ipc_get_u32(m, &lport);
	if (ipc_get_end(m, &error) < 0 || fd < 0 ||
	    (service != LOFTD_SVC_POP3 && service != LOFTD_SVC_IMAP) ||
	    (tls && login.tls == NULL)) {
		log_warning("bad connection record from the master");
		if (fd >= 0)
			close(fd);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->id = id;
	c->service = service;
	c->relay_fd = -1;
	strlcpy(c->rip, rip, sizeof(c->rip));
	c->conn = conn_new(login.loop, fd, LOGIN_INPUT_MAX, login_client_event,
	    c);
	conn_set_idle_timeout(c->conn, login.timeout_ms);
	conn_set_output_timeout(c->conn, login.timeout_ms);
	c->next = login.clients;
	if (c->next != NULL)
		c->next->prev = c;
	login.clients = c;
	login.nclients++;
	if (tls) {
		if (conn_tls_start(c->conn, login.tls, &error) < 0) {
			log_error("%s: cannot start TLS: %s",
			    loftd_service_name(service), error);
			login_client_kill(c, "TLS failed to start");
			return;
		}
		c->secured = true;
	}
	login_engine_new(c);
}

static struct login_client *
login_client_find(uint32_t id, bool by_auth)
{
	for (struct login_client *c = login.clients; c != NULL; c = c->next)
		if ((by_auth ? c->auth_id : c->id) == id)
			return c;
	return NULL;
}

static void
login_login_result(struct ipc_msg *m)
{
	struct login_client *c;
	const char *error;
	uint32_t id, ok;

	ipc_get_u32(m, &id);
	ipc_get_u32(m, &ok);
	if (ipc_get_end(m, &error) < 0 ||
	    (c = login_client_find(id, false)) == NULL || !c->handing_over)
		return;
	if (!ok) {
		login_handover_failed(c);
		login_feed(c);
		return;
	}
	if (c->relay_fd >= 0) {
		login_relay_start(c);
		return;
	}
	/* The mail process has the socket; this copy just goes. */
	c->reason = NULL;
	login_client_free(c, false);
}

static void
login_master_msg(struct chan *ch, struct ipc_msg *m, void *ctx)
{
	(void)ch;
	(void)ctx;
	switch (m->type) {
	case LOFTD_CONN_NEW:
		login_conn_new(m);
		break;
	case LOFTD_LOGIN_RESULT:
		login_login_result(m);
		break;
	case LOFTD_RETIRE:
		login.retired = true;
		login_maybe_exit();
		break;
	default:
		log_warning("unexpected record %u from the master", m->type);
	}
}

static void
login_master_closed(struct chan *ch, const char *error, void *ctx)
{
	(void)ch;
	(void)ctx;
	if (error != NULL)
		log_error("master channel: %s", error);
	/* Without the master nothing can log in: end everything. */
	ioloop_stop(login.loop);
}

static const struct chan_callbacks login_master_cb = {
	.msg = login_master_msg,
	.closed = login_master_closed,
};

/*
 * Answers from the auth process.
 */

static void
login_auth_msg(struct chan *ch, struct ipc_msg *m, void *ctx)
{
	struct auth_resp r;
	struct login_client *c;
	const char *error;
	enum auth_result res;

	(void)ch;
	(void)ctx;
	if (auth_proto_resp_decode(m, &r, &error) < 0) {
		log_error("auth channel: %s", error);
		ioloop_stop(login.loop);
		return;
	}
	if (r.id == 0 || (c = login_client_find(r.id, true)) == NULL)
		return;	/* an ABORT's answer, or the client left */
	c->auth_id = 0;
	res = (enum auth_result)r.result;
	if (res == AUTH_RESULT_OK) {
		if (r.token_len > sizeof(c->token))
			res = AUTH_RESULT_TEMPFAIL;
		else {
			memcpy(c->token, r.token, r.token_len);
			c->token_len = r.token_len;
		}
	}
	if (res != AUTH_RESULT_CONTINUE)
		c->sasl_id = 0;
	if (r.user[0] != '\0')
		strlcpy(c->user, r.user, sizeof(c->user));
	if (c->imap != NULL)
		imap_session_auth_reply(c->imap, res == AUTH_RESULT_OK ?
		    IMAP_AUTH_OK : res == AUTH_RESULT_CONTINUE ?
		    IMAP_AUTH_CONTINUE : res == AUTH_RESULT_TEMPFAIL ?
		    IMAP_AUTH_TEMPFAIL : IMAP_AUTH_FAIL, r.challenge,
		    r.challenge_len, r.user);
	else if (c->pop3 != NULL)
		pop3_session_auth_reply(c->pop3, res == AUTH_RESULT_OK ?
		    POP3_AUTH_OK : res == AUTH_RESULT_CONTINUE ?
		    POP3_AUTH_CONTINUE : res == AUTH_RESULT_TEMPFAIL ?
		    POP3_AUTH_TEMPFAIL : POP3_AUTH_FAIL, r.challenge,
		    r.challenge_len, r.user);
	if (!c->handing_over)
		login_feed(c);
}

static void
login_auth_closed(struct chan *ch, const char *error, void *ctx)
{
	(void)ch;
	(void)ctx;
	log_error("auth channel closed%s%s", error != NULL ? ": " : "",
	    error != NULL ? error : "");
	/* The master starts a new generation when we exit. */
	ioloop_stop(login.loop);
}

static const struct chan_callbacks login_auth_cb = {
	.msg = login_auth_msg,
	.closed = login_auth_closed,
};

/*
 * Start.
 */

int
login_main(bool foreground, bool have_log_fd)
{
	const char *error;

	loftd_log_setup("login", foreground, have_log_fd);
	signal(SIGPIPE, SIG_IGN);
	if (role_tls_ctx(&login.tls, &error) < 0)
		log_fatal("%s", error);
	/* Every mechanism; the engine decides per connection which of them
	 * a client may use. */
	if (role_auth_mechs(&login.mechs, &error) < 0)
		log_fatal("asking the auth process for mechanisms: %s", error);
	loftd_drop_privileges("login_user", conf_str("login_chroot"));
	login.rate_limit = (unsigned)conf_int("command_rate_limit");
	login.timeout_ms = (unsigned)conf_time("login_timeout") * 1000;
	login.line_max = (size_t)conf_int("pop3_line_limit");
	/* The login OK names what the mail process will offer. */
	imap_session_offer_compress(conf_bool("imap_compress"));
	login.loop = ioloop_new();
	loftd_stop_on_sigterm(login.loop);
	login.master = chan_new(login.loop, LOFTD_FD_MASTER, &login_master_cb,
	    NULL);
	login.auth = chan_new(login.loop, LOFTD_FD_AUTH, &login_auth_cb, NULL);
	ioloop_run(login.loop);
	while (login.clients != NULL) {
		login.clients->reason = NULL;
		login_client_free(login.clients, false);
	}
	chan_free(&login.master);
	chan_free(&login.auth);
	tls_ctx_free(&login.tls);
	free(login.mechs);
	ioloop_free(&login.loop);
	conf_reset();
	return 0;
}
