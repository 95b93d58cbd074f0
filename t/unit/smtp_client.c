/*
 * Unit tests for smtp/smtp_client.c. The reply parser and the content
 * encoder alone (byte by byte against whole, limits at N and N+1); then
 * whole sessions in one process on one ioloop: the client on one end of
 * a socketpair, and on the other either loft's own ESMTP engine
 * (smtp/smtp_session, a real server state machine, with STARTTLS through
 * lib/conn_tls and AUTH answered here) or a scripted server that answers
 * each command with canned bytes, for what the engine never does (a 554
 * greeting, EHLO refused, multi-line and over-long replies, plaintext
 * injected after STARTTLS, closing mid-DATA, silence). Every case runs
 * the same way each time: timers only bound the runs and drive the one
 * timeout test, nothing asserts elapsed time. Certificates are made with
 * the openssl command (the TLS cases are skipped without it).
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "compat/compat.h"
#include "conn.h"
#include "conn_tls.h"
#include "ioloop.h"
#include "net.h"
#include "tls.h"
#include "smtp/smtp_client.h"
#include "smtp/smtp_session.h"
#include "tap.h"

#define RUN_MS		20000		/* bound of one session */
#define BIG_SIZE	(10 * 1024 * 1024)

static char dir[] = "/tmp/loft-smtp-client-XXXXXX";
static char cert[256], key[256];
static bool have_tls;
static struct ioloop *loop;
static struct tls_ctx *sctx, *cctx, *cctx_ca;

/* --- helpers --- */

static int
run_cmd(const char *cmd)
{
	int status = system(cmd);

	return status != -1 && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0 ? 0 : -1;
}

static void
make_tls(void)
{
	char cmd[1024];
	const char *error;

	if (mkdtemp(dir) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	snprintf(cmd, sizeof(cmd), "openssl req -x509 -newkey ec -pkeyopt "
	    "ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost -days 2 "
	    "-keyout %s -out %s >/dev/null 2>&1", key, cert);
	if (run_cmd(cmd) < 0)
		return;
	if (tls_ctx_new(cert, key, "TLSv1.2 TLSv1.3", "", "", &sctx,
	    &error) < 0)
		bail("tls_ctx_new: %s", error);
	if (tls_client_ctx_new("TLSv1.2 TLSv1.3", NULL, &cctx, &error) < 0)
		bail("tls_client_ctx_new: %s", error);
	if (tls_client_ctx_new("TLSv1.2 TLSv1.3", cert, &cctx_ca,
	    &error) < 0)
		bail("tls_client_ctx_new with CA: %s", error);
	have_tls = true;
}

/* content: a temporary file holding data, open for reading. */
static int
content(const void *data, size_t len)
{
	char path[300];
	int fd;

	snprintf(path, sizeof(path), "%s/msgXXXXXX", dir);
	if ((fd = mkstemp(path)) < 0)
		bail("mkstemp: %s", strerror(errno));
	unlink(path);
	if (len > 0 && write(fd, data, len) != (ssize_t)len)
		bail("write content: %s", strerror(errno));
	return fd;
}

/* --- the server side: the engine --- */

struct srv {
	struct conn *conn;
	struct smtp_session *s;
	bool raw;			/* scripted, no engine */
	bool starting_tls, quit, dead;
	unsigned greetings;
	unsigned mails, rcpts, messages, resets;
	struct buf msg;			/* the last message */
	char from[600];
	bool has_size;
	uint64_t size;
	enum smtp_body body;
	char auth_user[64];
	bool secured;
	/* behaviour */
	unsigned dot_code;		/* data_done; 0: 250 */
	const char *password;		/* AUTH expects user "u" with it */
	char login_user[64];
	int login_step;
	/* raw */
	const char *const *script;	/* replies by command, see raw_reply */
	struct buf seen;		/* everything the raw server read */
	bool in_data;
	size_t data_bytes;
	size_t close_in_data;		/* close after this many DATA bytes */
	bool mail_saw_rcpt;		/* RCPT already buffered at MAIL */
	bool tls_after_drain;
};

static struct srv srv;

static void srv_feed(struct srv *v);

static void
srv_write(void *ctx, const unsigned char *data, size_t len)
{
	struct srv *v = ctx;

	if (!v->dead && conn_write(v->conn, data, len) < 0)
		v->dead = true;
}

static void
srv_mail(void *ctx, const struct smtp_mail *m)
{
	struct srv *v = ctx;

	v->mails++;
	snprintf(v->from, sizeof(v->from), "%s@%s", m->from->local,
	    m->from->domain);
	v->has_size = m->has_size;
	v->size = m->size;
	v->body = m->body;
	if (strcmp(m->from->local, "refused") == 0)
		smtp_session_reply(v->s, 550, "5.7.1", "Sender refused");
	else
		smtp_session_reply(v->s, 250, "2.1.0", "Ok");
}

static void
srv_rcpt(void *ctx, const struct smtp_rcpt *r)
{
	struct srv *v = ctx;

	v->rcpts++;
	if (strncmp(r->to->local, "unknown", 7) == 0)
		smtp_session_reply(v->s, 550, "5.1.1", "User unknown");
	else if (strncmp(r->to->local, "defer", 5) == 0)
		smtp_session_reply(v->s, 450, "4.2.0", "Try later");
	else
		smtp_session_reply(v->s, 250, "2.1.5", "Ok");
}

static void
srv_data_begin(void *ctx)
{
	struct srv *v = ctx;

	buf_truncate(&v->msg, 0);
}

static void
srv_data(void *ctx, const unsigned char *d, size_t len)
{
	struct srv *v = ctx;

	if (buf_append(&v->msg, d, len) < 0)
		bail("server: message too large");
}

static void
srv_data_end(void *ctx)
{
	struct srv *v = ctx;
	char text[64];

	v->messages++;
	snprintf(text, sizeof(text), "Ok: queued as M%u", v->messages);
	if (v->dot_code == 0 || v->dot_code == 250)
		smtp_session_data_done(v->s, 250, "2.0.0", text);
	else
		smtp_session_data_done(v->s, v->dot_code, v->dot_code < 500 ?
		    "4.3.0" : "5.7.1", "Not today");
}

static void
srv_reset(void *ctx)
{
	struct srv *v = ctx;

	v->resets++;
}

static enum smtp_auth_result
srv_sasl(void *ctx, const char *mech, bool first, const unsigned char *resp,
    size_t resp_len, bool has_resp, const unsigned char **challenge_r,
    size_t *challenge_len_r, const char **user_r)
{
	struct srv *v = ctx;
	char want[128];
	size_t wl;

	*challenge_len_r = 0;
	*challenge_r = (const unsigned char *)"";
	*user_r = "u";
	if (strcmp(mech, "PLAIN") == 0) {
		if (first && !has_resp)
			return SMTP_AUTH_CONTINUE;
		wl = (size_t)snprintf(want, sizeof(want), "%cu%c%s", 0, 0,
		    v->password);
		return resp_len == wl && memcmp(resp, want, wl) == 0 ?
		    SMTP_AUTH_OK : SMTP_AUTH_FAIL;
	}
	if (first) {
		v->login_step = 1;
		*challenge_r = (const unsigned char *)"Username:";
		*challenge_len_r = 9;
		return SMTP_AUTH_CONTINUE;
	}
	if (v->login_step == 1) {
		v->login_step = 2;
		snprintf(v->login_user, sizeof(v->login_user), "%.*s",
		    (int)resp_len, (const char *)resp);
		*challenge_r = (const unsigned char *)"Password:";
		*challenge_len_r = 9;
		return SMTP_AUTH_CONTINUE;
	}
	return strcmp(v->login_user, "u") == 0 &&
	    resp_len == strlen(v->password) &&
	    memcmp(resp, v->password, resp_len) == 0 ? SMTP_AUTH_OK :
	    SMTP_AUTH_FAIL;
}

static void
srv_start_tls(void *ctx)
{
	struct srv *v = ctx;

	v->starting_tls = true;
}

static void
srv_closed(void *ctx)
{
	struct srv *v = ctx;

	v->quit = true;
	conn_close_after_flush(v->conn);
}

static const struct smtp_callbacks srv_cb = {
	.write = srv_write,
	.mail = srv_mail,
	.rcpt = srv_rcpt,
	.data_begin = srv_data_begin,
	.data = srv_data,
	.data_end = srv_data_end,
	.reset = srv_reset,
	.sasl = srv_sasl,
	.start_tls = srv_start_tls,
	.closed = srv_closed,
};

static void
srv_tls_begin(struct srv *v)
{
	const char *error;

	v->starting_tls = false;
	conn_input_discard(v->conn);
	if (conn_tls_start(v->conn, sctx, &error) < 0)
		bail("server conn_tls_start: %s", error);
	v->secured = true;
	if (!v->raw)
		smtp_session_tls_started(v->s);
}

/* --- the server side: scripted --- */

/*
 * The script is a list of "VERB reply" strings: a client line whose verb
 * (first word, upper case) matches gets the reply bytes (with "\n" in
 * the reply written as CRLF). Verbs: GREETING (sent at start), EHLO,
 * HELO, STARTTLS, AUTH, MAIL, RCPT, DATA, DOT (after the end of data),
 * RSET, QUIT. Missing ones: "250 ok"; QUIT: "221 bye", then close.
 */
static void
raw_send(struct srv *v, const char *reply)
{
	char out[8192];
	size_t o = 0;

	for (; *reply != '\0' && o + 4 < sizeof(out); reply++) {
		if (*reply == '\n')
			out[o++] = '\r';
		out[o++] = *reply;
	}
	/* Scripts may leave out the last line end. */
	if (o > 0 && out[o - 1] != '\n') {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	srv_write(v, (const unsigned char *)out, o);
}

static const char *
raw_reply(struct srv *v, const char *verb)
{
	size_t n = strlen(verb);

	for (const char *const *s = v->script; *s != NULL; s++)
		if (strncmp(*s, verb, n) == 0 && (*s)[n] == ' ')
			return *s + n + 1;
	return NULL;
}

static void
raw_command(struct srv *v, const char *line)
{
	char verb[16];
	const char *r;
	size_t n = strcspn(line, " :");

	snprintf(verb, sizeof(verb), "%.*s", (int)(n < 15 ? n : 15), line);
	for (char *p = verb; *p != '\0'; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	if (strcmp(verb, "MAIL") == 0) {
		size_t len;
		const unsigned char *rest = conn_input_peek(v->conn, &len);

		v->mail_saw_rcpt = len >= 4 && memcmp(rest, "RCPT", 4) == 0;
	}
	r = raw_reply(v, verb);
	if (strcmp(verb, "DATA") == 0 && (r == NULL || r[0] == '3')) {
		v->in_data = true;
		v->data_bytes = 0;
	}
	if (r == NULL)
		r = strcmp(verb, "QUIT") == 0 ? "221 bye\n" :
		    strcmp(verb, "DATA") == 0 ? "354 go\n" : "250 ok\n";
	raw_send(v, r);
	if (strcmp(verb, "QUIT") == 0) {
		v->quit = true;
		conn_close_after_flush(v->conn);
	}
	if (strcmp(verb, "STARTTLS") == 0 && r[0] == '2')
		v->tls_after_drain = true;
}

static void
raw_feed(struct srv *v)
{
	const unsigned char *line;
	size_t len;
	const char *r;
	int ret;

	while (!v->dead && !v->quit && !v->tls_after_drain && v->conn &&
	    (ret = conn_read_line(v->conn, &line, &len)) != 0) {
		if (ret < 0)
			bail("raw server: line too long");
		(void)buf_append(&v->seen, line, len);
		(void)buf_append(&v->seen, "\n", 1);
		if (!v->in_data) {
			raw_command(v, (const char *)line);
			continue;
		}
		v->data_bytes += len + 2;
		if (v->close_in_data > 0 && v->data_bytes >= v->close_in_data) {
			v->dead = true;
			conn_close(&v->conn);
			return;
		}
		if (len == 1 && line[0] == '.') {
			v->in_data = false;
			v->messages++;
			r = raw_reply(v, "DOT");
			raw_send(v, r != NULL ? r : "250 queued\n");
		}
	}
}

static void
srv_feed(struct srv *v)
{
	const unsigned char *data;
	size_t len, used;

	if (v->raw) {
		raw_feed(v);
		return;
	}
	while (!v->dead && !v->quit && !v->starting_tls &&
	    !conn_output_full(v->conn)) {
		data = conn_input_peek(v->conn, &len);
		if (len == 0)
			return;
		used = smtp_session_input(v->s, data, len);
		conn_input_consume(v->conn, used);
		if (v->starting_tls) {
			conn_input_discard(v->conn);
			return;
		}
		if (used < len)
			return;
	}
}

static void
srv_event(struct conn *conn, enum conn_event ev, void *ctx)
{
	struct srv *v = ctx;

	(void)conn;
	switch (ev) {
	case CONN_EV_INPUT:
		srv_feed(v);
		break;
	case CONN_EV_DRAINED:
		if (v->starting_tls)
			srv_tls_begin(v);
		if (v->tls_after_drain) {
			v->tls_after_drain = false;
			srv_tls_begin(v);
		}
		srv_feed(v);
		break;
	default:
		v->dead = true;
		conn_close(&v->conn);
		break;
	}
}

/* srv_start: the server on fd: the engine with set, or the script. */
static void
srv_start(int fd, const struct smtp_settings *set,
    const char *const *script)
{
	buf_free(&srv.msg);
	buf_free(&srv.seen);
	memset(&srv, 0, sizeof(srv));
	buf_init(&srv.msg, 2 * BIG_SIZE);
	buf_init(&srv.seen, 2 * BIG_SIZE);
	srv.password = "secret";
	srv.conn = conn_new(loop, fd, 64 * 1024, srv_event, &srv);
	srv.greetings++;
	if (script != NULL) {
		const char *g;

		srv.raw = true;
		srv.script = script;
		g = raw_reply(&srv, "GREETING");
		if (g != NULL && strcmp(g, "none") != 0)
			raw_send(&srv, g);
		else if (g == NULL)
			raw_send(&srv, "220 raw.test ESMTP\n");
		return;
	}
	srv.s = smtp_session_new(set, &srv_cb, &srv);
	smtp_session_greet(srv.s);
}

static void
srv_stop(void)
{
	if (srv.s != NULL)
		smtp_session_free(&srv.s);
	if (srv.conn != NULL)
		conn_close(&srv.conn);
}

static void
engine_settings(struct smtp_settings *set, unsigned ext)
{
	memset(set, 0, sizeof(*set));
	set->hostname = "mx.test";
	set->extensions = ext;
	set->tls_available = have_tls;
	set->mechanisms = "PLAIN LOGIN";
	set->size_max = 0;
}

/* --- the client side --- */

struct cl {
	struct smtp_client *c;
	struct smtp_client_msg *msgs[4];
	int nmsgs, next;
	int ready, done;
	bool closed;
	struct smtp_client_status st;
	bool verified, authed;
	char tls_info[128];
};

static struct cl cl;
static bool idle_421;		/* when ready: the server says 421 */

static void
cl_ready(void *ctx)
{
	(void)ctx;
	cl.ready++;
	cl.verified = smtp_client_tls_verified(cl.c);
	cl.authed = smtp_client_authenticated(cl.c);
	strlcpy(cl.tls_info, smtp_client_tls_info(cl.c), sizeof(cl.tls_info));
	if (cl.next < cl.nmsgs)
		smtp_client_send(cl.c, cl.msgs[cl.next++]);
	else if (idle_421)
		raw_send(&srv, "421 4.3.2 shutting down\n");
	else
		smtp_client_quit(cl.c);
}

static void
cl_done(void *ctx, struct smtp_client_msg *m)
{
	(void)ctx;
	(void)m;
	cl.done++;
}

static void
cl_closed(void *ctx, const struct smtp_client_status *st)
{
	(void)ctx;
	cl.closed = true;
	cl.st = *st;
	ioloop_stop(loop);
}

static const struct smtp_client_callbacks cl_cb = {
	.ready = cl_ready, .done = cl_done, .closed = cl_closed
};

static void
client_settings(struct smtp_client_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->helo_name = "client.test";
}

static bool guard_fired;
/* Called right after the server started, to change its behaviour. */
static size_t setup_close_in_data;
static unsigned setup_dot_code;

static void
guard(void *ctx)
{
	(void)ctx;
	guard_fired = true;
	ioloop_stop(loop);
}

/*
 * session: run a client with cs against the engine (set) or a script,
 * sending msgs[0..n) then QUIT. Returns once the client closed.
 */
static void
session(const struct smtp_client_settings *cs, const struct smtp_settings *set,
    const char *const *script, struct smtp_client_msg **msgs, int n)
{
	struct timeout *t;
	int fds[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0)
		bail("socketpair: %s", strerror(errno));
	memset(&cl, 0, sizeof(cl));
	for (int i = 0; i < n; i++)
		cl.msgs[i] = msgs[i];
	cl.nmsgs = n;
	srv_start(fds[0], set, script);
	srv.close_in_data = setup_close_in_data;
	srv.dot_code = setup_dot_code;
	cl.c = smtp_client_new(loop, cs, &cl_cb, NULL);
	smtp_client_start_fd(cl.c, fds[1], "peer.test");
	guard_fired = false;
	t = timeout_add(loop, RUN_MS, false, guard, NULL);
	ioloop_run(loop);
	timeout_remove(&t);
	if (guard_fired)
		diag("session did not end in %d ms", RUN_MS);
	smtp_client_free(&cl.c);
	srv_stop();
}

/* A message with n recipients taken from addrs. */
struct tmsg {
	struct smtp_client_msg m;
	struct smtp_client_rcpt r[4];
};

static struct smtp_client_msg *
tmsg(struct tmsg *t, const char *from, int fd, uint64_t size,
    const char *r0, const char *r1)
{
	memset(t, 0, sizeof(*t));
	t->m.sender = from;
	t->m.fd = fd;
	t->m.size = size;
	t->m.rcpts = t->r;
	t->r[0].addr = r0;
	t->r[1].addr = r1;
	t->m.rcpt_count = r1 != NULL ? 2 : 1;
	return &t->m;
}

/* --- the reply parser --- */

static int
feed_reply(struct smtp_client_reply *r, const char *text)
{
	const char *error, *nl;
	int ret = 0;

	smtp_client_reply_init(r);
	while (*text != '\0') {
		nl = strchr(text, '\n');
		ret = smtp_client_reply_line(r, text, (size_t)(nl - text),
		    &error);
		if (ret != 0)
			return ret;
		text = nl + 1;
	}
	return ret;
}

static void
test_reply(void)
{
	struct smtp_client_reply r;
	char line[SMTP_CLIENT_LINE_MAX];
	const char *error;
	int ret = 0;

	is_int(feed_reply(&r, "250 ok\n"), 1, "one line: complete");
	ok(r.code == 250 && strcmp(r.text, "250 ok") == 0 &&
	    r.enhanced[0] == '\0', "code 250, text \"%s\", no enhanced",
	    r.text);
	is_int(feed_reply(&r, "250\n"), 1, "bare code: complete");
	is_string(r.text, "250", "bare code: text is the code");
	is_int(feed_reply(&r, "550-5.1.1 first\n550-5.1.1 second\n"
	    "550 5.1.1 third\n"), 1, "three lines: complete at the last");
	is_string(r.enhanced, "5.1.1", "enhanced code taken");
	is_string(r.text, "550 5.1.1 first second third",
	    "lines joined, the enhanced code said once");
	is_int(r.lines, 3, "three lines counted");
	is_int(feed_reply(&r, "550-first\n"), 0, "a '-' line: more to come");
	is_int(feed_reply(&r, "451 5.1.1 mismatch\n"), 1,
	    "enhanced class differs from the code: complete");
	is_string(r.enhanced, "", "and not taken as enhanced");
	is_int(feed_reply(&r, "250 2.1.0x\n"), 1, "2.1.0x: complete");
	is_string(r.enhanced, "", "2.1.0x is no enhanced code");
	is_int(feed_reply(&r, "250 2.1234.0 x\n"), 1, "4-digit subject");
	is_string(r.enhanced, "", "is no enhanced code");
	is_int(feed_reply(&r, "250 2.123.123 x\n"), 1, "3-digit parts");
	is_string(r.enhanced, "2.123.123", "are one");
	is_int(feed_reply(&r, "250 a\tb\x01" "c\n"), 1, "control bytes");
	is_string(r.text, "250 a?b?c", "become '?'");
	is_int(feed_reply(&r, "250-a\n251 b\n"), -1, "code changes: error");
	is_int(feed_reply(&r, "25\n"), -1, "two digits: error");
	is_int(feed_reply(&r, "2500 x\n"), -1, "fourth byte a digit: error");
	is_int(feed_reply(&r, "250x\n"), -1, "fourth byte a letter: error");
	is_int(feed_reply(&r, "150 x\n"), -1, "1xx: error");
	is_int(feed_reply(&r, "650 x\n"), -1, "6xx: error");
	is_int(feed_reply(&r, "2a0 x\n"), -1, "a letter in the code: error");
	is_int(feed_reply(&r, "\n"), -1, "empty line: error");

	/* SMTP_CLIENT_REPLY_LINES lines at most. */
	for (int n = SMTP_CLIENT_REPLY_LINES; n <= SMTP_CLIENT_REPLY_LINES + 1;
	    n++) {
		smtp_client_reply_init(&r);
		for (int i = 0; i < n; i++) {
			ret = smtp_client_reply_line(&r, i < n - 1 ?
			    "250-x" : "250 x", 5, &error);
			if (ret != 0)
				break;
		}
		is_int(ret, n <= SMTP_CLIENT_REPLY_LINES ? 1 : -1,
		    "%d lines: %s", n, n <= SMTP_CLIENT_REPLY_LINES ?
		    "complete" : "error");
	}
	/* SMTP_CLIENT_REPLY_TOTAL bytes at most, CRLF counted: 16 lines of
	 * 2046 + 2 make it exactly; one byte more is too much. */
	for (int extra = 0; extra <= 1; extra++) {
		smtp_client_reply_init(&r);
		memset(line, 'x', sizeof(line));
		memcpy(line, "250-", 4);
		for (int i = 0; i < 16; i++) {
			size_t len = 2046 + (i == 15 ? (size_t)extra : 0);

			if (i == 15)
				line[3] = ' ';
			ret = smtp_client_reply_line(&r, line, len, &error);
			if (ret != 0)
				break;
		}
		is_int(ret, extra == 0 ? 1 : -1, "%d bytes: %s",
		    SMTP_CLIENT_REPLY_TOTAL + extra, extra == 0 ? "complete" :
		    "error");
		if (extra == 0)
			is_int((int)r.text_len, SMTP_CLIENT_TEXT_MAX - 1,
			    "text cut at %d bytes", SMTP_CLIENT_TEXT_MAX - 1);
	}
}

/* --- the encoder --- */

static void
encode(const char *in, size_t len, size_t line_max, bool bytewise,
    struct buf *out)
{
	struct smtp_client_encoder e;

	buf_truncate(out, 0);
	smtp_client_encode_init(&e, line_max);
	if (bytewise) {
		for (size_t i = 0; i < len; i++)
			if (smtp_client_encode(&e, (const unsigned char *)in + i,
			    1, out) < 0)
				bail("encode failed");
	} else if (smtp_client_encode(&e, (const unsigned char *)in, len,
	    out) < 0)
		bail("encode failed");
	if (smtp_client_encode_end(&e, out) < 0)
		bail("encode_end failed");
}

static void
enc_case(const char *in, const char *want, size_t line_max,
    const char *name)
{
	struct buf a, b;

	buf_init(&a, 1 << 20);
	buf_init(&b, 1 << 20);
	encode(in, strlen(in), line_max, false, &a);
	encode(in, strlen(in), line_max, true, &b);
	ok(a.len == strlen(want) && memcmp(a.data, want, a.len) == 0,
	    "encode %s", name);
	ok(a.len == b.len && memcmp(a.data, b.data, a.len) == 0,
	    "encode %s: byte by byte the same", name);
	buf_free(&a);
	buf_free(&b);
}

static void
test_encode(void)
{
	char in[1200], want[1300];

	enc_case("", ".\r\n", 0, "an empty message");
	enc_case("a\r\nb\r\n", "a\r\nb\r\n.\r\n", 0, "CRLF lines");
	enc_case("a\nb\n", "a\r\nb\r\n.\r\n", 0, "bare LF -> CRLF");
	enc_case("a\rb\r", "a\r\nb\r\n.\r\n", 0, "bare CR -> CRLF");
	enc_case("a\r\r\nb", "a\r\n\r\nb\r\n.\r\n", 0,
	    "CR CR LF: two line ends");
	enc_case("no end", "no end\r\n.\r\n", 0, "last line without end");
	enc_case(".\r\n..\r\n.x\r\nx.\r\n", "..\r\n...\r\n..x\r\nx.\r\n"
	    ".\r\n", 0, "leading dots doubled, others not");
	enc_case(".", "..\r\n.\r\n", 0, "a lone dot as the last line");
	enc_case("a\n.\n", "a\r\n..\r\n.\r\n", 0, "a dot after a bare LF");
	enc_case("a\r.\r", "a\r\n..\r\n.\r\n", 0, "a dot after a bare CR");
	{
		struct buf a;

		buf_init(&a, 64);
		encode("a\0b\n", 4, 0, false, &a);
		is_mem(a.data, a.len, "a\0b\r\n.\r\n", 8, "encode keeps NUL");
		buf_free(&a);
	}
	/* Folding at line_max: N bytes stay, N + 1 are broken. */
	memset(in, 'x', 998);
	strlcpy(in + 998, "\n", sizeof(in) - 998);
	memset(want, 'x', 998);
	strlcpy(want + 998, "\r\n.\r\n", sizeof(want) - 998);
	enc_case(in, want, 998, "a 998-byte line is not folded");
	memset(in, 'x', 999);
	strlcpy(in + 999, "\n", sizeof(in) - 999);
	memset(want, 'x', 998);
	strlcpy(want + 998, "\r\n x\r\n.\r\n", sizeof(want) - 998);
	enc_case(in, want, 998, "a 999-byte line is folded with CRLF SP");
}

/* --- sessions --- */

static const char *
res_name(enum smtp_client_result r)
{
	static const char *const n[] = { "pending", "sent", "deferred",
	    "failed" };

	return n[r];
}

static void
test_basic(void)
{
	static const char body[] = "Subject: hi\n\n.leading dot\nline\n";
	static const char want[] = "Subject: hi\r\n\r\n.leading dot\r\n"
	    "line\r\n";
	struct smtp_client_settings cs;
	struct smtp_settings set;
	struct smtp_client_msg *m[1];
	struct tmsg t;
	int fd = content(body, sizeof(body) - 1);

	client_settings(&cs);
	engine_settings(&set, SMTP_EXT_ALL & ~SMTP_EXT_STARTTLS);
	m[0] = tmsg(&t, "a@example.net", fd, 4711, "b@example.org",
	    "unknown@example.org");
	t.m.body_8bit = true;
	session(&cs, &set, NULL, m, 1);
	ok(cl.closed && cl.st.ok, "basic: closed after QUIT (%s)",
	    cl.st.text);
	is_int(cl.ready, 2, "basic: ready twice (start, after the message)");
	is_int(cl.done, 1, "basic: one message done");
	ok(t.r[0].result == SMTP_CLIENT_SENT && t.r[0].code == 250 &&
	    strcmp(t.r[0].dsn, "2.0.0") == 0 &&
	    t.r[0].stage == SMTP_CLIENT_STAGE_DOT, "basic: first recipient "
	    "sent (%s: %s)", res_name(t.r[0].result), t.r[0].text);
	is_string(t.r[0].text, "250 2.0.0 Ok: queued as M1",
	    "basic: the final reply kept");
	ok(t.r[1].result == SMTP_CLIENT_FAILED && t.r[1].code == 550 &&
	    strcmp(t.r[1].dsn, "5.1.1") == 0 &&
	    t.r[1].stage == SMTP_CLIENT_STAGE_RCPT, "basic: unknown "
	    "recipient failed at RCPT (%s)", t.r[1].text);
	is_mem(srv.msg.data, srv.msg.len, want, sizeof(want) - 1,
	    "basic: the server got the message with CRLF, dot unstuffed");
	is_string(srv.from, "a@example.net", "basic: sender");
	ok(srv.has_size && srv.size == 4711, "basic: SIZE=4711 sent");
	ok(srv.body == SMTP_BODY_8BITMIME, "basic: BODY=8BITMIME sent");
	close(fd);
}

static void
test_reuse(void)
{
	struct smtp_client_settings cs;
	struct smtp_settings set;
	struct smtp_client_msg *m[3];
	struct tmsg t[3];
	int fd[3];
	char body[64];
	bool all = true;

	client_settings(&cs);
	engine_settings(&set, SMTP_EXT_ALL & ~SMTP_EXT_STARTTLS);
	for (int i = 0; i < 3; i++) {
		snprintf(body, sizeof(body), "Subject: %d\r\n\r\nbody %d\r\n",
		    i, i);
		fd[i] = content(body, strlen(body));
		m[i] = tmsg(&t[i], "a@example.net", fd[i], strlen(body),
		    "b@example.org", NULL);
	}
	session(&cs, &set, NULL, m, 3);
	for (int i = 0; i < 3; i++) {
		char want[64];

		snprintf(want, sizeof(want), "250 2.0.0 Ok: queued as M%d",
		    i + 1);
		all &= t[i].r[0].result == SMTP_CLIENT_SENT &&
		    strcmp(t[i].r[0].text, want) == 0;
		close(fd[i]);
	}
	ok(all, "reuse: three messages sent");
	is_int(srv.greetings, 1, "reuse: over one connection");
	is_int(srv.messages, 3, "reuse: the server stored three");
	is_int(cl.ready, 4, "reuse: ready four times");
	ok(cl.st.ok, "reuse: QUIT at the end");
}

static void
test_refusals(void)
{
	struct smtp_client_settings cs;
	struct smtp_settings set;
	struct smtp_client_msg *m[3];
	struct tmsg t[3];
	int fd = content("x\r\n", 3);

	client_settings(&cs);
	engine_settings(&set, SMTP_EXT_ALL & ~SMTP_EXT_STARTTLS);
	m[0] = tmsg(&t[0], "refused@example.net", fd, 3, "b@example.org",
	    "c@example.org");
	m[1] = tmsg(&t[1], "a@example.net", fd, 3, "unknown1@example.org",
	    "defer@example.org");
	m[2] = tmsg(&t[2], "a@example.net", fd, 3, "b@example.org", NULL);
	session(&cs, &set, NULL, m, 3);
	ok(t[0].r[0].result == SMTP_CLIENT_FAILED &&
	    t[0].r[1].result == SMTP_CLIENT_FAILED &&
	    t[0].r[0].stage == SMTP_CLIENT_STAGE_MAIL &&
	    strcmp(t[0].r[1].text, "550 5.7.1 Sender refused") == 0,
	    "MAIL refused: every recipient failed at MAIL (%s)",
	    t[0].r[1].text);
	ok(t[1].r[0].result == SMTP_CLIENT_FAILED &&
	    t[1].r[1].result == SMTP_CLIENT_DEFERRED &&
	    t[1].r[1].code == 450 && strcmp(t[1].r[1].dsn, "4.2.0") == 0,
	    "no recipient accepted: 5xx failed, 4xx deferred (%s)",
	    t[1].r[1].text);
	ok(t[2].r[0].result == SMTP_CLIENT_SENT,
	    "after RSET the next message goes (%s)", t[2].r[0].text);
	is_int(srv.messages, 1, "refusals: only the last message stored");
	is_int(srv.resets, 1, "refusals: RSET ended the transaction whose "
	    "recipients were all refused");
	ok(cl.st.ok, "refusals: QUIT at the end");

	/* The final reply: 4xx defers, 5xx fails. */
	for (unsigned code = 451; code <= 554; code += 103) {
		struct smtp_client_msg *one[1];

		one[0] = tmsg(&t[0], "a@example.net", fd, 3, "b@example.org",
		    NULL);
		setup_dot_code = code;
		session(&cs, &set, NULL, one, 1);
		setup_dot_code = 0;
		ok(t[0].r[0].result == (code < 500 ? SMTP_CLIENT_DEFERRED :
		    SMTP_CLIENT_FAILED) && t[0].r[0].code == code &&
		    t[0].r[0].stage == SMTP_CLIENT_STAGE_DOT,
		    "%u at the end of data: %s (%s)", code,
		    res_name(t[0].r[0].result), t[0].r[0].text);
	}
	close(fd);
}

static void
test_pipelining(void)
{
	static const char *const script[] = { "EHLO 250-raw\n250 PIPELINING",
	    NULL };
	static const char *const script_np[] = { "EHLO 250 raw", NULL };
	struct smtp_client_settings cs;
	struct smtp_client_msg *m[1];
	struct tmsg t;
	int fd = content("x\r\n", 3);

	client_settings(&cs);
	m[0] = tmsg(&t, "a@example.net", fd, 3, "b@example.org",
	    "c@example.org");
	session(&cs, NULL, script, m, 1);
	ok(srv.mail_saw_rcpt, "PIPELINING: RCPT came with MAIL");
	ok(t.r[0].result == SMTP_CLIENT_SENT && t.r[1].result ==
	    SMTP_CLIENT_SENT, "PIPELINING: both sent");
	ok(strstr(buf_cstr(&srv.seen), "MAIL FROM:<a@example.net>\n"
	    "RCPT TO:<b@example.org>\nRCPT TO:<c@example.org>\nDATA\n") !=
	    NULL, "PIPELINING: MAIL without SIZE (not offered), RCPTs, DATA");
	session(&cs, NULL, script_np, m, 1);
	ok(!srv.mail_saw_rcpt, "no PIPELINING: MAIL alone");
	ok(t.r[0].result == SMTP_CLIENT_SENT && t.r[1].result ==
	    SMTP_CLIENT_SENT, "no PIPELINING: both sent");
	cs.no_pipelining = true;
	session(&cs, NULL, script, m, 1);
	ok(!srv.mail_saw_rcpt, "no_pipelining: MAIL alone though offered");
	close(fd);
}

static void
test_script_errors(void)
{
	static const char *const g554[] = { "GREETING 554 5.7.1 go away",
	    NULL };
	static const char *const ehlo500[] = { "EHLO 500 what", "HELO 250 hi",
	    NULL };
	static const char *const ehlo421[] = { "EHLO 421 4.3.2 busy", NULL };
	static const char *const multi[] = {
	    "GREETING 220-raw.test first\n220-second line\n220 third",
	    "EHLO 250-raw\n250-PIPELINING\n250 ENHANCEDSTATUSCODES",
	    "RCPT 550-5.1.1 no such\n550-5.1.1 user\n550 5.1.1 here",
	    NULL };
	static const char *const data554[] = { "DATA 554 5.5.1 no thanks",
	    NULL };
	static const char *const data250[] = { "DATA 250 what?", NULL };
	static const char *const none[] = { "GREETING none", NULL };
	struct smtp_client_settings cs;
	struct smtp_client_msg *m[1];
	struct tmsg t;
	int fd = content("x\r\n", 3);

	client_settings(&cs);
	m[0] = tmsg(&t, "a@example.net", fd, 3, "b@example.org", NULL);
	session(&cs, NULL, g554, m, 1);
	ok(cl.closed && !cl.st.ok && cl.st.temporary && cl.st.code == 554 &&
	    cl.st.stage == SMTP_CLIENT_STAGE_GREETING && cl.ready == 0,
	    "554 greeting: closed, temporary, never ready (%s)", cl.st.text);
	is_string(cl.st.dsn, "4.7.1", "554 greeting: dsn made temporary");
	ok(t.r[0].result == SMTP_CLIENT_PENDING, "554 greeting: the message "
	    "was never given");

	session(&cs, NULL, ehlo500, m, 1);
	ok(strstr(buf_cstr(&srv.seen), "EHLO client.test\nHELO client.test\n"
	    "MAIL FROM:<a@example.net>\nRCPT") != NULL && t.r[0].result ==
	    SMTP_CLIENT_SENT, "EHLO 500: HELO, then sent without extensions");

	session(&cs, NULL, ehlo421, m, 1);
	ok(cl.closed && cl.st.temporary && cl.st.code == 421 &&
	    cl.st.stage == SMTP_CLIENT_STAGE_EHLO && strstr(buf_cstr(
	    &srv.seen), "HELO") == NULL, "EHLO 421: no HELO, temporary (%s)",
	    cl.st.text);

	session(&cs, NULL, multi, m, 1);
	ok(cl.ready == 2 && t.r[0].result == SMTP_CLIENT_FAILED &&
	    strcmp(t.r[0].text, "550 5.1.1 no such user here") == 0,
	    "multi-line greeting and RCPT reply (%s)", t.r[0].text);
	ok(strstr(buf_cstr(&srv.seen), "RSET") != NULL,
	    "no recipient: RSET");

	session(&cs, NULL, data554, m, 1);
	ok(t.r[0].result == SMTP_CLIENT_FAILED && t.r[0].stage ==
	    SMTP_CLIENT_STAGE_DATA && t.r[0].code == 554,
	    "DATA 554: failed at DATA (%s)", t.r[0].text);
	ok(cl.st.ok && strstr(buf_cstr(&srv.seen), "DATA\nRSET\nQUIT") !=
	    NULL, "DATA 554: RSET, QUIT");

	session(&cs, NULL, data250, m, 1);
	ok(t.r[0].result == SMTP_CLIENT_DEFERRED && cl.st.temporary &&
	    !cl.st.ok, "DATA 250: protocol error, deferred (%s)",
	    t.r[0].text);

	cs.helo_timeout = 50;
	session(&cs, NULL, none, m, 1);
	ok(cl.closed && !guard_fired && cl.st.temporary && strstr(cl.st.text,
	    "timed out while receiving the initial server greeting") != NULL,
	    "silent server: timeout (%s)", cl.st.text);
	close(fd);
}

static void
test_lines(void)
{
	char g[SMTP_CLIENT_LINE_MAX + 64];
	const char *script[3] = { g, "EHLO 250 raw", NULL };
	struct smtp_client_settings cs;
	struct smtp_client_msg *m[1];
	struct tmsg t;
	int fd = content("x\r\n", 3);

	client_settings(&cs);
	m[0] = tmsg(&t, "a@example.net", fd, 3, "b@example.org", NULL);
	for (int extra = 0; extra <= 1; extra++) {
		/* "GREETING " + a line of LINE_MAX - 2 (+ extra) + CRLF. */
		size_t n = SMTP_CLIENT_LINE_MAX - 2 + (size_t)extra;

		memcpy(g, "GREETING 220 ", 13);
		memset(g + 13, 'g', n - 4);
		g[13 + n - 4] = '\n';
		g[13 + n - 3] = '\0';
		session(&cs, NULL, script, m, 1);
		if (extra == 0)
			ok(cl.ready == 2 && t.r[0].result == SMTP_CLIENT_SENT,
			    "a %d-byte reply line is fine",
			    SMTP_CLIENT_LINE_MAX);
		else
			ok(cl.ready == 0 && cl.st.temporary && strstr(
			    cl.st.text, "longer than") != NULL,
			    "a %d-byte reply line ends the session (%s)",
			    SMTP_CLIENT_LINE_MAX + 1, cl.st.text);
	}
	close(fd);
}

static void
test_big(void)
{
	struct smtp_client_settings cs;
	struct smtp_settings set;
	struct smtp_client_msg *m[1];
	struct tmsg t;
	unsigned char *big = malloc(BIG_SIZE);
	size_t i, col = 0;
	int fd;

	if (big == NULL)
		bail("malloc");
	/* Lines of 1..200 bytes, some starting with a dot, CRLF ends. */
	for (i = 0; i < BIG_SIZE; i++) {
		if (col > 0 && i + 1 < BIG_SIZE && (i * 7919) % 211 == 0) {
			big[i++] = '\r';
			big[i] = '\n';
			col = 0;
			continue;
		}
		big[i] = col == 0 && i % 3 == 0 ? '.' :
		    (unsigned char)('a' + i % 26);
		col++;
	}
	big[BIG_SIZE - 2] = '\r';
	big[BIG_SIZE - 1] = '\n';
	fd = content(big, BIG_SIZE);
	client_settings(&cs);
	engine_settings(&set, SMTP_EXT_ALL & ~SMTP_EXT_STARTTLS);
	m[0] = tmsg(&t, "a@example.net", fd, BIG_SIZE, "b@example.org",
	    NULL);
	session(&cs, &set, NULL, m, 1);
	ok(t.r[0].result == SMTP_CLIENT_SENT, "10 MB: sent (%s)",
	    t.r[0].text);
	ok(srv.msg.len == BIG_SIZE && memcmp(srv.msg.data, big, BIG_SIZE) ==
	    0, "10 MB: the server got it byte for byte (%zu bytes)",
	    srv.msg.len);

	/* The same message, the server closes after some 100 KB of it. */
	{
		static const char *const script[] = { "EHLO 250 raw", NULL };

		setup_close_in_data = 100000;
		session(&cs, NULL, script, m, 1);
		setup_close_in_data = 0;
	}
	ok(cl.closed && cl.st.temporary && t.r[0].result ==
	    SMTP_CLIENT_DEFERRED && t.r[0].stage == SMTP_CLIENT_STAGE_BODY,
	    "closed mid-DATA: deferred at the body (%s)", t.r[0].text);
	ok(strstr(t.r[0].text, "lost connection with peer.test while sending "
	    "message body") != NULL, "closed mid-DATA: said so");
	close(fd);

	/* A message that is all leading dots. */
	for (i = 0; i + 3 <= 300000; i += 3)
		memcpy(big + i, ".\r\n", 3);
	fd = content(big, i);
	m[0] = tmsg(&t, "a@example.net", fd, i, "b@example.org", NULL);
	session(&cs, &set, NULL, m, 1);
	ok(t.r[0].result == SMTP_CLIENT_SENT && srv.msg.len == i &&
	    memcmp(srv.msg.data, big, i) == 0,
	    "100,000 lines of \".\": stuffed and unstuffed exactly");
	close(fd);
	free(big);
}

static void
test_size(void)
{
	struct smtp_client_settings cs;
	struct smtp_settings set;
	struct smtp_client_msg *m[2];
	struct tmsg t[2];
	int fd = content("x\r\n", 3);

	client_settings(&cs);
	engine_settings(&set, SMTP_EXT_ALL & ~SMTP_EXT_STARTTLS);
	set.size_max = 1000;
	m[0] = tmsg(&t[0], "a@example.net", fd, 1001, "b@example.org", NULL);
	m[1] = tmsg(&t[1], "a@example.net", fd, 1000, "b@example.org", NULL);
	session(&cs, &set, NULL, m, 2);
	ok(t[0].r[0].result == SMTP_CLIENT_FAILED && t[0].r[0].code == 0 &&
	    strcmp(t[0].r[0].dsn, "5.3.4") == 0 && t[0].r[0].stage ==
	    SMTP_CLIENT_STAGE_LOCAL, "SIZE 1000: 1001 bytes refused here (%s)",
	    t[0].r[0].text);
	ok(t[1].r[0].result == SMTP_CLIENT_SENT, "SIZE 1000: 1000 bytes sent");
	is_int(srv.mails, 1, "SIZE: one MAIL only");

	engine_settings(&set, SMTP_EXT_ALL & ~(SMTP_EXT_STARTTLS |
	    SMTP_EXT_SMTPUTF8));
	m[0] = tmsg(&t[0], "a@example.net", fd, 3, "j\xc3\xb6rg@example.org",
	    NULL);
	m[1] = tmsg(&t[1], "a@example.net", fd, 3, "b@example.org\r\nRSET",
	    NULL);
	session(&cs, &set, NULL, m, 2);
	ok(t[0].r[0].result == SMTP_CLIENT_FAILED && strcmp(t[0].r[0].dsn,
	    "5.6.7") == 0, "non-ASCII address, no SMTPUTF8: failed here (%s)",
	    t[0].r[0].text);
	ok(t[1].r[0].result == SMTP_CLIENT_FAILED && strcmp(t[1].r[0].dsn,
	    "5.5.2") == 0, "CR LF in an address: never sent (%s)",
	    t[1].r[0].text);
	is_int(srv.mails, 0, "neither reached MAIL");
	ok(cl.st.ok, "and the session ended with QUIT");
	close(fd);
}

static void
test_tls(void)
{
	struct smtp_client_settings cs;
	struct smtp_settings set;
	struct smtp_client_msg *m[1];
	struct tmsg t;
	int fd = content("x\r\n", 3);

	if (!have_tls) {
		ok(1, "# SKIP no openssl command: no TLS tests");
		close(fd);
		return;
	}
	client_settings(&cs);
	engine_settings(&set, SMTP_EXT_ALL);
	m[0] = tmsg(&t, "a@example.net", fd, 3, "b@example.org", NULL);

	cs.tls_level = SMTP_CLIENT_TLS_MAY;
	cs.tls_ctx = cctx;
	session(&cs, &set, NULL, m, 1);
	ok(t.r[0].result == SMTP_CLIENT_SENT && srv.secured &&
	    strncmp(cl.tls_info, "TLSv1.", 6) == 0 && !cl.verified,
	    "may: STARTTLS, sent inside TLS (%s), not verified",
	    cl.tls_info);

	cs.tls_level = SMTP_CLIENT_TLS_VERIFY;
	cs.tls_ctx = cctx_ca;
	cs.tls_verify_name = "localhost";
	session(&cs, &set, NULL, m, 1);
	ok(t.r[0].result == SMTP_CLIENT_SENT && cl.verified,
	    "verify: localhost verified against the CA file (%s)",
	    t.r[0].text);

	cs.tls_verify_name = "mx.other.test";
	session(&cs, &set, NULL, m, 1);
	ok(cl.ready == 0 && cl.st.temporary && strcmp(cl.st.dsn, "4.7.5") ==
	    0 && strstr(cl.st.text, "hostname mismatch") != NULL &&
	    srv.mails == 0, "verify: another name fails the handshake (%s)",
	    cl.st.text);

	cs.tls_ctx = cctx;
	cs.tls_verify_name = "localhost";
	session(&cs, &set, NULL, m, 1);
	ok(cl.ready == 0 && strstr(cl.st.text, "certificate verify failed")
	    != NULL, "verify: the system store does not know the test CA "
	    "(%s)", cl.st.text);

	cs.tls_level = SMTP_CLIENT_TLS_ENCRYPT;
	engine_settings(&set, SMTP_EXT_ALL & ~SMTP_EXT_STARTTLS);
	session(&cs, &set, NULL, m, 1);
	ok(cl.ready == 0 && strcmp(cl.st.dsn, "4.7.4") == 0 && srv.mails ==
	    0, "encrypt: no STARTTLS offered, no mail (%s)", cl.st.text);

	cs.tls_level = SMTP_CLIENT_TLS_MAY;
	session(&cs, &set, NULL, m, 1);
	ok(t.r[0].result == SMTP_CLIENT_SENT && !srv.secured,
	    "may: no STARTTLS offered, plaintext");
	close(fd);
}

static void
test_tls_injection(void)
{
	static const char *const script[] = {
	    "EHLO 250-raw\n250 STARTTLS",
	    "STARTTLS 220 go ahead\n250-injected\n250 PIPELINING",
	    NULL };
	struct smtp_client_settings cs;
	struct smtp_client_msg *m[1];
	struct tmsg t;
	int fd = content("x\r\n", 3);

	if (!have_tls) {
		ok(1, "# SKIP no TLS");
		close(fd);
		return;
	}
	client_settings(&cs);
	cs.tls_level = SMTP_CLIENT_TLS_MAY;
	cs.tls_ctx = cctx;
	m[0] = tmsg(&t, "a@example.net", fd, 3, "b@example.org", NULL);
	session(&cs, NULL, script, m, 1);
	ok(t.r[0].result == SMTP_CLIENT_SENT && srv.secured &&
	    strstr(buf_cstr(&srv.seen), "STARTTLS\nEHLO client.test\n"
	    "MAIL") != NULL, "plaintext after 220 to STARTTLS is dropped: "
	    "EHLO again inside TLS");
	ok(!srv.mail_saw_rcpt, "and the injected PIPELINING was not "
	    "believed");
	close(fd);
}

static void
test_auth(void)
{
	struct smtp_client_settings cs;
	struct smtp_settings set;
	struct smtp_client_msg *m[1];
	struct tmsg t;
	int fd = content("x\r\n", 3);

	client_settings(&cs);
	cs.sasl_enable = true;
	cs.sasl_user = "u";
	cs.sasl_password = "secret";
	m[0] = tmsg(&t, "a@example.net", fd, 3, "b@example.org", NULL);
	engine_settings(&set, SMTP_EXT_ALL & ~SMTP_EXT_STARTTLS);
	set.allow_plaintext_auth = true;

	session(&cs, &set, NULL, m, 1);
	ok(cl.ready == 0 && cl.st.temporary && strstr(cl.st.text,
	    "plaintext AUTH is not allowed") != NULL,
	    "AUTH without TLS: refused here (%s)", cl.st.text);

	cs.sasl_allow_plaintext = true;
	session(&cs, &set, NULL, m, 1);
	ok(cl.authed && t.r[0].result == SMTP_CLIENT_SENT,
	    "AUTH PLAIN (plaintext allowed): authenticated, sent");

	set.mechanisms = "LOGIN";
	session(&cs, &set, NULL, m, 1);
	ok(cl.authed && t.r[0].result == SMTP_CLIENT_SENT,
	    "AUTH LOGIN: authenticated, sent");

	set.mechanisms = "PLAIN";
	cs.sasl_password = "wrong";
	session(&cs, &set, NULL, m, 1);
	ok(cl.ready == 0 && cl.st.temporary && cl.st.code == 535 &&
	    cl.st.stage == SMTP_CLIENT_STAGE_AUTH && srv.mails == 0,
	    "wrong password: 535, temporary, no MAIL (%s)", cl.st.text);
	cs.sasl_password = "secret";

	set.mechanisms = "CRAM-MD5";
	session(&cs, &set, NULL, m, 1);
	ok(cl.ready == 0 && strstr(cl.st.text, "no mechanism in common") !=
	    NULL, "no PLAIN or LOGIN: temporary (%s)", cl.st.text);

	if (have_tls) {
		cs.sasl_allow_plaintext = false;
		cs.tls_level = SMTP_CLIENT_TLS_ENCRYPT;
		cs.tls_ctx = cctx;
		set.mechanisms = "PLAIN LOGIN";
		set.allow_plaintext_auth = false;
		engine_settings(&set, SMTP_EXT_ALL);
		set.allow_plaintext_auth = false;
		session(&cs, &set, NULL, m, 1);
		ok(cl.authed && srv.secured && t.r[0].result ==
		    SMTP_CLIENT_SENT, "AUTH inside TLS (%s)", cl.st.text);
	} else
		ok(1, "# SKIP no TLS");
	close(fd);
}

static void
test_idle_421(void)
{
	static const char *const script[] = { "EHLO 250 raw", NULL };
	struct smtp_client_settings cs;

	client_settings(&cs);
	idle_421 = true;
	session(&cs, NULL, script, NULL, 0);
	idle_421 = false;
	ok(cl.ready == 1 && cl.closed && cl.st.temporary && cl.st.code ==
	    421 && strstr(buf_cstr(&srv.seen), "QUIT") == NULL,
	    "421 while idle: closed, temporary (%s)", cl.st.text);
}

static void
cl_connect_closed(void *ctx, const struct smtp_client_status *st)
{
	cl_closed(ctx, st);
}

static void
test_connect(void)
{
	static const struct smtp_client_callbacks cb = {
		.ready = cl_ready, .done = cl_done,
		.closed = cl_connect_closed
	};
	struct smtp_client_settings cs;
	struct net_addr a;
	struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;
	struct timeout *to;
	const char *error;
	socklen_t len = sizeof(*sin);
	int s;

	/* A port nobody listens on: bind one, close it. */
	memset(&a, 0, sizeof(a));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((s = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    bind(s, (struct sockaddr *)sin, sizeof(*sin)) < 0 ||
	    getsockname(s, (struct sockaddr *)sin, &len) < 0)
		bail("bind: %s", strerror(errno));
	close(s);
	a.len = sizeof(*sin);
	client_settings(&cs);
	memset(&cl, 0, sizeof(cl));
	cl.c = smtp_client_new(loop, &cs, &cb, NULL);
	ok(smtp_client_connect(cl.c, &a, "nobody.test", &error) == 0,
	    "connect: started");
	to = timeout_add(loop, RUN_MS, false, guard, NULL);
	ioloop_run(loop);
	timeout_remove(&to);
	ok(cl.closed && cl.st.temporary && cl.st.stage ==
	    SMTP_CLIENT_STAGE_CONNECT && strstr(cl.st.text, "connect to "
	    "nobody.test[127.0.0.1]:") != NULL && strstr(cl.st.text,
	    "refused") != NULL, "connect refused: %s", cl.st.text);
	smtp_client_free(&cl.c);
}

static void
read_file(const char *path, struct buf *b)
{
	char tmp[4096];
	ssize_t n;
	int fd;

	buf_truncate(b, 0);
	if ((fd = open(path, O_RDONLY)) < 0)
		return;
	while ((n = read(fd, tmp, sizeof(tmp))) > 0)
		(void)buf_append(b, tmp, (size_t)n);
	close(fd);
}
/* --- against another implementation: Python's smtpd --- */

static const char py_server[] =
    "import asyncore, os, smtpd, sys\n"
    "class S(smtpd.SMTPServer):\n"
    "    n = 0\n"
    "    def process_message(self, peer, mailfrom, rcpttos, data, **kw):\n"
    "        S.n += 1\n"
    "        p = os.path.join(sys.argv[1], 'py%d' % S.n)\n"
    "        with open(p + '.tmp', 'wb') as f:\n"
    "            f.write(('%s %s\\n' % (mailfrom, ','.join(rcpttos)))"
    ".encode() + data)\n"
    "        os.rename(p + '.tmp', p)\n"
    "s = S(('127.0.0.1', 0), None, decode_data=False,"
    " data_size_limit=100000)\n"
    "sys.stdout.write('%d\\n' % s.socket.getsockname()[1])\n"
    "sys.stdout.flush()\n"
    "asyncore.loop(timeout=0.1, count=600)\n";

static int py_fd = -1;

/* py_start: run the server; its port, or 0 (skip) with *pid_r. */
static unsigned
py_start(pid_t *pid_r)
{
	char path[300], line[32] = "";
	int p[2], fd;
	ssize_t n = 0;
	pid_t pid;

	if (run_cmd("python3 -W ignore -c 'import smtpd, asyncore' "
	    ">/dev/null 2>&1") < 0)
		return 0;
	snprintf(path, sizeof(path), "%s/srv.py", dir);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0 ||
	    write(fd, py_server, sizeof(py_server) - 1) !=
	    (ssize_t)sizeof(py_server) - 1)
		bail("write %s", path);
	close(fd);
	if (pipe(p) < 0 || (pid = fork()) < 0)
		bail("pipe/fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		execlp("python3", "python3", "-W", "ignore", path, dir,
		    (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	*pid_r = pid;
	/* Up to the newline: the port may come in pieces. The pipe stays
	 * open (py_fd) until the server is stopped. */
	for (size_t got = 0; got < sizeof(line) - 1; got += (size_t)n) {
		n = read(p[0], line + got, sizeof(line) - 1 - got);
		if (n <= 0)
			break;
		line[got + (size_t)n] = '\0';
		if (strchr(line, '\n') != NULL)
			break;
	}
	py_fd = p[0];
	return strchr(line, '\n') != NULL ? (unsigned)atoi(line) : 0;
}

static void
test_python(void)
{
	static const char body1[] = "Subject: one\r\n\r\n.dot\r\nline\r\n";
	static const char body2[] = "Subject: two\n\nbare LF\n";
	struct smtp_client_settings cs;
	struct smtp_client_msg *m[2];
	struct tmsg t[2];
	struct net_addr a;
	struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;
	struct buf got;
	struct timeout *to;
	const char *error;
	char path[300];
	unsigned port;
	pid_t pid = -1;
	int fd[2], status;

	if ((port = py_start(&pid)) == 0) {
		ok(1, "# SKIP python3 with smtpd not available");
		if (pid > 0) {
			kill(pid, SIGTERM);
			waitpid(pid, &status, 0);
			close(py_fd);
		}
		return;
	}
	memset(&a, 0, sizeof(a));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.len = sizeof(*sin);
	fd[0] = content(body1, sizeof(body1) - 1);
	fd[1] = content(body2, sizeof(body2) - 1);
	m[0] = tmsg(&t[0], "a@example.net", fd[0], sizeof(body1) - 1,
	    "b@example.org", "c@example.org");
	m[1] = tmsg(&t[1], "", fd[1], sizeof(body2) - 1, "d@example.org",
	    NULL);
	client_settings(&cs);
	memset(&cl, 0, sizeof(cl));
	cl.msgs[0] = m[0];
	cl.msgs[1] = m[1];
	cl.nmsgs = 2;
	cl.c = smtp_client_new(loop, &cs, &cl_cb, NULL);
	if (smtp_client_connect(cl.c, &a, "python.test", &error) < 0)
		bail("connect: %s", error);
	to = timeout_add(loop, RUN_MS, false, guard, NULL);
	ioloop_run(loop);
	timeout_remove(&to);
	smtp_client_free(&cl.c);
	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	close(py_fd);
	ok(cl.st.ok && t[0].r[0].result == SMTP_CLIENT_SENT &&
	    t[0].r[1].result == SMTP_CLIENT_SENT && t[1].r[0].result ==
	    SMTP_CLIENT_SENT, "python smtpd: two messages over TCP (%s)",
	    t[1].r[0].text);
	buf_init(&got, 4096);
	snprintf(path, sizeof(path), "%s/py1", dir);
	read_file(path, &got);
	is_string(buf_cstr(&got), "a@example.net b@example.org,c@example.org\n"
	    "Subject: one\n\n.dot\nline", "python smtpd: first message, "
	    "unstuffed");
	snprintf(path, sizeof(path), "%s/py2", dir);
	read_file(path, &got);
	is_string(buf_cstr(&got), "<> d@example.org\nSubject: two\n\nbare LF",
	    "python smtpd: null sender, bare LF lines");
	buf_free(&got);
	close(fd[0]);
	close(fd[1]);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	loop = ioloop_new();
	make_tls();
	test_reply();
	test_encode();
	test_basic();
	test_reuse();
	test_refusals();
	test_pipelining();
	test_script_errors();
	test_lines();
	test_big();
	test_size();
	test_tls();
	test_tls_injection();
	test_auth();
	test_idle_421();
	test_connect();
	test_python();
	buf_free(&srv.msg);
	buf_free(&srv.seen);
	tls_ctx_free(&sctx);
	tls_ctx_free(&cctx);
	tls_ctx_free(&cctx_ca);
	ioloop_free(&loop);
	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		(void)run_cmd(cmd);
	}
	return done_testing();
}
