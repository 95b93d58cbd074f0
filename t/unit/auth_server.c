/*
 * Unit tests for server/auth: the auth service in a forked child running
 * its loop, this process as the login side sending auth_proto records over
 * lib/ipc (PLAIN, SASL PLAIN/LOGIN/SCRAM-SHA-256 driven by libsasl2's
 * client, mechanisms, TEMPFAIL, the failure delay by ordering, malformed
 * records), and auth_server_handle called directly for the limits
 * (failure tables, SASL sessions, delay growth, password wiping).
 * Login tokens: issued on OK logins only, redeemed once for the user
 * record on a master channel, each kind of channel closed when it sends
 * the other kind's request; expiry (on a clock the test moves), the token
 * table at N and N+1, TEMPFAIL and a vanished user, called directly.
 * smtpd channels: AUTH_REQ_EXISTS (a user, in other case, unknown,
 * invalid, TEMPFAIL), refused on login and master channels; logins there
 * get no token.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sasl/sasl.h>

#include "conf.h"
#include "ioloop.h"
#include "ipc.h"
#include "pwhash.h"
#include "sasl.h"
#include "user.h"
#include "xmalloc.h"
#include "server/auth/auth_proto.h"
#include "server/auth/auth_server.h"
#include "tap.h"

#define CB_PROC(f) ((int (*)(void))(void (*)(void))(f))
#define ALICE_PW "alice secret"

static char dir[] = "/tmp/loft-auth-XXXXXX";
static char users_path[256], log_path[256];
static struct ipc_msg req_m, resp_m;	/* large: off the stack */

/* chan[0] and chan[1] are login channels, chan[2] (if nchan is 3) the
 * master's. */
struct child {
	pid_t pid;
	int nchan;
	struct ipc_chan *chan[3];
};

/* alice and bob take uid and gid from virtual_uid/gid (unset: ours);
 * carol, unless left out, has her own ids, quota and mail location. */
static void
write_users(bool with_carol)
{
	char *alice, *bob, *carol, *s256;
	const char *error;
	FILE *f;

	if (pwhash_make(ALICE_PW, &alice, &error) < 0 ||
	    pwhash_make("bob-pw", &bob, &error) < 0 ||
	    pwhash_make("carol-pw", &carol, &error) < 0 ||
	    pwhash_scram_make("SCRAM-SHA-256", ALICE_PW, &s256, &error) < 0)
		bail("pwhash: %s", error);
	if ((f = fopen(users_path, "w")) == NULL)
		bail("fopen: %s", strerror(errno));
	fprintf(f, "alice:%s:::/nonexistent:scram-sha-256=%s\n", alice, s256);
	fprintf(f, "bob:%s:::/nonexistent:\n", bob);
	if (with_carol)
		fprintf(f, "carol:%s:1234:5678:/home/carol:quota=1000000 "
		    "mail=mbox:~/mail:INBOX=/var/mail/carol\n", carol);
	if (fclose(f) != 0)
		bail("fclose");
	free(alice);
	free(bob);
	free(carol);
	free(s256);
}

static void
load_conf(const char *userdb, const char *extra)
{
	const char *error;
	char *cf = xasprintf("user_database = %s\n%s", userdb, extra);

	if (conf_load_buffer("auth-test.conf", cf, strlen(cf), &error) < 0)
		bail("conf: %s", error);
	free(cf);
}

static void
child_idle(void *ctx)
{
	ioloop_stop(ctx);
}

/* The service in a child with two login channels and, with master, a
 * master channel; it logs to log_path and exits 0 once every channel is
 * closed. */
static void
child_start(struct child *c, unsigned int delay_ms, bool master)
{
	struct auth_settings set;
	struct auth_server *srv;
	struct ioloop *loop;
	const char *error;
	int sv[3][2], i, fd;

	c->nchan = master ? 3 : 2;
	for (i = 0; i < c->nchan; i++)
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]) < 0)
			bail("socketpair: %s", strerror(errno));
	fflush(stdout);
	if ((c->pid = fork()) < 0)
		bail("fork: %s", strerror(errno));
	if (c->pid == 0) {
		fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd < 0 || dup2(fd, 2) < 0)
			_exit(3);
		close(fd);
		for (i = 0; i < c->nchan; i++)
			close(sv[i][0]);
		loop = ioloop_new();
		auth_settings_default(&set);
		set.fail_delay_ms = delay_ms;
		if (auth_server_new(loop, &set, &srv, &error) < 0)
			_exit(4);
		auth_server_set_idle_cb(srv, child_idle, loop);
		auth_conn_new(srv, sv[0][1]);
		auth_conn_new(srv, sv[1][1]);
		if (master)
			auth_conn_new_master(srv, sv[2][1]);
		ioloop_run(loop);
		auth_server_free(&srv);
		ioloop_free(&loop);
		sasl_lib_deinit();
		_exit(0);
	}
	for (i = 0; i < c->nchan; i++) {
		close(sv[i][1]);
		c->chan[i] = ipc_chan_new(sv[i][0]);
	}
}

static int
child_wait(struct child *c)
{
	int status, i;

	for (i = 0; i < c->nchan; i++)
		ipc_chan_free(&c->chan[i]);
	if (waitpid(c->pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* Send req on chan, wait for its answer. */
static int
call(struct ipc_chan *chan, const struct auth_req *req,
    struct auth_resp *resp)
{
	const char *error;

	if (auth_proto_req_encode(&req_m, req, &error) < 0)
		bail("encode: %s", error);
	if (ipc_call(chan, &req_m, &resp_m, 20000, &error) < 0) {
		diag("ipc_call: %s", error);
		return -1;
	}
	if (auth_proto_resp_decode(&resp_m, resp, &error) < 0) {
		diag("decode: %s", error);
		return -1;
	}
	return 0;
}

static struct auth_req
plain(uint32_t id, const char *service, bool secure, const char *user,
    const char *pw)
{
	struct auth_req r;

	memset(&r, 0, sizeof(r));
	r.type = AUTH_REQ_PLAIN;
	r.id = id;
	r.service = service;
	r.ip = "192.0.2.7";
	r.secure = secure;
	r.user = user;
	r.password = pw;
	return r;
}

static struct auth_req
start(uint32_t id, const char *mech, const void *in, size_t len)
{
	struct auth_req r;

	memset(&r, 0, sizeof(r));
	r.type = AUTH_REQ_SASL_START;
	r.id = id;
	r.service = "imap";
	r.ip = "198.51.100.1";
	r.secure = true;
	r.mech = mech;
	r.has_initial = in != NULL;
	r.initial = in;
	r.initial_len = len;
	return r;
}

static struct auth_req
step(uint32_t id, uint32_t session, const void *in, size_t len)
{
	struct auth_req r;

	memset(&r, 0, sizeof(r));
	r.type = AUTH_REQ_SASL_STEP;
	r.id = id;
	r.session = session;
	r.data = in;
	r.data_len = len;
	return r;
}

static const char *
mechs(struct ipc_chan *chan, bool secure)
{
	static char buf[256];
	struct auth_req r;
	struct auth_resp a;

	memset(&r, 0, sizeof(r));
	r.type = AUTH_REQ_MECHS;
	r.id = 7;
	r.secure = secure;
	if (call(chan, &r, &a) < 0 || a.mechs == NULL)
		return "(error)";
	snprintf(buf, sizeof(buf), "%s", a.mechs);
	return buf;
}

/* ---- plain and mechanisms ---- */

static void
test_plain(struct ipc_chan *chan)
{
	struct auth_req r;
	struct auth_resp a;

	r = plain(1, "pop3", true, "alice", ALICE_PW);
	is_int(call(chan, &r, &a), 0, "plain good: answered");
	is_int(a.result, AUTH_RESULT_OK, "plain good: OK");
	is_int(a.id, 1, "plain good: id echoed");
	is_string(a.user, "alice", "plain good: canonical user");

	r = plain(2, "pop3", true, "alice", "wrong-pw-XYZ");
	is_int(call(chan, &r, &a), 0, "plain bad: answered");
	is_int(a.result, AUTH_RESULT_FAIL, "plain bad: FAIL");
	ok(strstr(a.reason, "wrong-pw-XYZ") == NULL,
	    "plain bad: reason has no password");
	is_string(a.reason, "wrong password", "plain bad: reason");

	r = plain(3, "imap", true, "nobody", "x");
	call(chan, &r, &a);
	is_int(a.result, AUTH_RESULT_FAIL, "unknown user: FAIL");
	is_string(a.reason, "unknown user", "unknown user: reason");

	r = plain(4, "pop3", false, "alice", ALICE_PW);
	call(chan, &r, &a);
	is_int(a.result, AUTH_RESULT_FAIL, "plain before TLS: FAIL");
	ok(strstr(a.reason, "TLS") != NULL, "plain before TLS: reason");

	r = plain(5, "smtp", true, "../etc", "x");
	call(chan, &r, &a);
	is_int(a.result, AUTH_RESULT_FAIL, "invalid name: FAIL");

	ok(strstr(mechs(chan, false), "PLAIN") == NULL &&
	    strstr(mechs(chan, false), "LOGIN") == NULL,
	    "mechs before TLS: no PLAIN or LOGIN (%s)", mechs(chan, false));
	ok(strstr(mechs(chan, false), "SCRAM-SHA-256") != NULL,
	    "mechs before TLS: SCRAM-SHA-256");
	ok(strstr(mechs(chan, true), "PLAIN") != NULL &&
	    strstr(mechs(chan, true), "LOGIN") != NULL,
	    "mechs with TLS: PLAIN and LOGIN (%s)", mechs(chan, true));
}

/* ---- SASL ---- */

static void
test_sasl_plain_login(struct ipc_chan *chan)
{
	static const char ir[] = "\0alice\0" ALICE_PW;
	struct auth_req r;
	struct auth_resp a;

	r = start(10, "PLAIN", ir, sizeof(ir) - 1);
	call(chan, &r, &a);
	is_int(a.result, AUTH_RESULT_OK, "SASL PLAIN with initial: OK");
	is_string(a.user, "alice", "SASL PLAIN: user");

	r = start(11, "LOGIN", NULL, 0);
	call(chan, &r, &a);
	is_int(a.result, AUTH_RESULT_CONTINUE, "LOGIN start: CONTINUE");
	r = step(12, 11, "alice", 5);
	call(chan, &r, &a);
	is_int(a.result, AUTH_RESULT_CONTINUE, "LOGIN user: CONTINUE");
	is_int(a.id, 12, "LOGIN step: id echoed");
	r = step(13, 11, ALICE_PW, strlen(ALICE_PW));
	call(chan, &r, &a);
	is_int(a.result, AUTH_RESULT_OK, "LOGIN password: OK");
	is_string(a.user, "alice", "LOGIN: user");
	r = step(14, 11, "x", 1);
	call(chan, &r, &a);
	is_int(a.result, AUTH_RESULT_FAIL, "session freed after success");

	r = start(15, "LOGIN", NULL, 0);
	call(chan, &r, &a);
	r = step(16, 15, "alice", 5);
	call(chan, &r, &a);
	r = step(17, 15, "nope", 4);
	call(chan, &r, &a);
	is_int(a.result, AUTH_RESULT_FAIL, "LOGIN wrong password: FAIL");
	is_string(a.user, "alice", "LOGIN failure names the claimed user");
	memset(&r, 0, sizeof(r));
	r.type = AUTH_REQ_SASL_ABORT;
	r.id = 18;
	r.session = 15;
	call(chan, &r, &a);
	is_int(a.result, AUTH_RESULT_FAIL, "session freed after failure");
}

static int
cb_simple(void *context, int id, const char **result, unsigned *len)
{
	(void)context;
	(void)id;
	*result = "alice";
	if (len != NULL)
		*len = 5;
	return SASL_OK;
}

static int
cb_pass(sasl_conn_t *conn, void *context, int id, sasl_secret_t **psecret)
{
	static sasl_secret_t *secret;
	const char *pw = context;

	(void)conn;
	(void)id;
	free(secret);
	secret = xcalloc(1, sizeof(*secret) + strlen(pw));
	secret->len = strlen(pw);
	memcpy(secret->data, pw, strlen(pw));
	*psecret = secret;
	return SASL_OK;
}

/* SCRAM-SHA-256 through the service with libsasl2's client. */
static uint32_t
scram(struct ipc_chan *chan, const char *pw, struct auth_resp *a)
{
	sasl_callback_t cbs[] = {
		{ SASL_CB_AUTHNAME, CB_PROC(cb_simple), NULL },
		{ SASL_CB_USER, CB_PROC(cb_simple), NULL },
		{ SASL_CB_PASS, CB_PROC(cb_pass), (void *)pw },
		{ SASL_CB_LIST_END, NULL, NULL },
	};
	const char *out, *chosen;
	unsigned outlen, n = 0;
	struct auth_req r;
	sasl_conn_t *cc;
	int crc;

	if (sasl_client_new("imap", "localhost", NULL, NULL, cbs, 0, &cc) !=
	    SASL_OK)
		bail("sasl_client_new");
	crc = sasl_client_start(cc, "SCRAM-SHA-256", NULL, &out, &outlen,
	    &chosen);
	if (crc != SASL_CONTINUE && crc != SASL_OK)
		bail("sasl_client_start: %s", sasl_errdetail(cc));
	r = start(20, "SCRAM-SHA-256", out, outlen);
	call(chan, &r, a);
	while (a->result == AUTH_RESULT_CONTINUE && n++ < 5) {
		crc = sasl_client_step(cc, (const char *)a->challenge,
		    (unsigned)a->challenge_len, NULL, &out, &outlen);
		if (crc != SASL_CONTINUE && crc != SASL_OK)
			break;
		r = step(21 + n, 20, out, outlen);
		call(chan, &r, a);
	}
	sasl_dispose(&cc);
	return n;
}

static void
test_scram(struct ipc_chan *chan)
{
	struct auth_resp a;
	uint32_t n;

	n = scram(chan, ALICE_PW, &a);
	is_int(a.result, AUTH_RESULT_OK, "SCRAM-SHA-256: OK");
	is_string(a.user, "alice", "SCRAM-SHA-256: user");
	ok(n >= 2, "SCRAM-SHA-256: took %u steps", n);
	scram(chan, "bad password", &a);
	is_int(a.result, AUTH_RESULT_FAIL, "SCRAM-SHA-256 bad password: FAIL");
}

/* ---- delay ordering, log ---- */

static int
recv_one(struct ipc_chan *chan, struct auth_resp *a)
{
	struct pollfd pfd = { ipc_chan_fd(chan), POLLIN, 0 };
	const char *error;
	int ret;

	for (;;) {
		ret = ipc_chan_recv(chan, &resp_m, &error);
		if (ret < 0)
			return -1;
		if (ret > 0)
			return auth_proto_resp_decode(&resp_m, a, &error);
		if (poll(&pfd, 1, 20000) <= 0)
			return -1;
	}
}

static void
send_req(struct ipc_chan *chan, const struct auth_req *r)
{
	const char *error;

	if (auth_proto_req_encode(&req_m, r, &error) < 0 ||
	    ipc_chan_send(chan, &req_m, &error) < 0 ||
	    ipc_chan_flush(chan, &error) != 0)
		bail("send: %s", error);
}

static void
test_delay_order(struct ipc_chan *chan)
{
	struct auth_req r;
	struct auth_resp a;

	r = plain(50, "pop3", true, "bob", "wrong");
	send_req(chan, &r);
	r = plain(51, "pop3", true, "bob", "bob-pw");
	send_req(chan, &r);
	is_int(recv_one(chan, &a), 0, "delay: first answer");
	is_int(a.id, 51, "delay: the later good login is answered first");
	is_int(a.result, AUTH_RESULT_OK, "  and succeeds");
	is_int(recv_one(chan, &a), 0, "delay: second answer");
	is_int(a.id, 50, "delay: the failure comes after it");
	is_int(a.result, AUTH_RESULT_FAIL, "  and fails");
}

/* Truncated record closes channel 0; channel 1 keeps working. */
static void
test_malformed(struct child *c)
{
	struct auth_resp a;
	const char *error;

	ipc_msg_init(&req_m, AUTH_REQ_PLAIN, 60);
	ipc_add_str(&req_m, "pop3");
	ipc_add_str(&req_m, "192.0.2.7");
	ipc_add_u32(&req_m, 1);
	ipc_add_str(&req_m, "alice");	/* password missing */
	if (ipc_chan_send(c->chan[0], &req_m, &error) < 0 ||
	    ipc_chan_flush(c->chan[0], &error) != 0)
		bail("send: %s", error);
	is_int(recv_one(c->chan[0], &a), -1, "truncated record: no answer");
	ok(ipc_chan_closed(c->chan[0]), "truncated record: channel closed");
	ok(strstr(mechs(c->chan[1], true), "PLAIN") != NULL,
	    "the other channel still answers");

	ipc_msg_init(&req_m, 77, 61);
	if (ipc_chan_send(c->chan[1], &req_m, &error) < 0 ||
	    ipc_chan_flush(c->chan[1], &error) != 0)
		bail("send: %s", error);
	is_int(recv_one(c->chan[1], &a), -1, "unknown type: no answer");
	ok(ipc_chan_closed(c->chan[1]), "unknown type: channel closed");
	is_int(child_wait(c), 0, "service exits 0 when no channel is left");
}

static void
test_log(void)
{
	char buf[65536];
	ssize_t n;
	int fd;

	if ((fd = open(log_path, O_RDONLY)) < 0)
		bail("open log: %s", strerror(errno));
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	ok(strstr(buf, "pop3 login failed: user=<alice>, rip=192.0.2.7, "
	    "reason=wrong password") != NULL, "log: failure line");
	ok(strstr(buf, "imap login failed: user=<alice>, rip=198.51.100.1")
	    != NULL, "log: SASL failure names the user");
	ok(strstr(buf, "wrong-pw-XYZ") == NULL && strstr(buf, "nope") == NULL
	    && strstr(buf, ALICE_PW) == NULL, "log: no password");
	ok(strstr(buf, "closing login channel") != NULL,
	    "log: malformed record noted");
}

static void
test_tempfail(void)
{
	struct child c;
	struct auth_req r;
	struct auth_resp a;

	load_conf(dir, "");	/* a directory: unreadable as a user file */
	child_start(&c, 0, false);
	r = plain(70, "pop3", true, "alice", ALICE_PW);
	is_int(call(c.chan[0], &r, &a), 0, "tempfail: answered");
	is_int(a.result, AUTH_RESULT_TEMPFAIL, "unreadable database: TEMPFAIL");
	is_int(child_wait(&c), 0, "tempfail service exits 0");
	load_conf(users_path, "");
}

static void
test_plaintext_allowed(void)
{
	struct child c;
	struct auth_req r;
	struct auth_resp a;

	load_conf(users_path, "disable_plaintext_auth = no\n");
	child_start(&c, 0, false);
	ok(strstr(mechs(c.chan[0], false), "PLAIN") != NULL,
	    "disable_plaintext_auth = no: PLAIN before TLS");
	r = plain(80, "pop3", false, "alice", ALICE_PW);
	call(c.chan[0], &r, &a);
	is_int(a.result, AUTH_RESULT_OK, "  and plain login before TLS");
	is_int(child_wait(&c), 0, "service exits 0");
	load_conf(users_path, "");
}

/* ---- limits, in this process ---- */

static int
handle(struct auth_conn *conn, const struct auth_req *r,
    struct auth_resp *a, unsigned int *delay)
{
	const char *error;

	if (auth_proto_req_encode(&req_m, r, &error) < 0)
		bail("encode: %s", error);
	if (auth_server_handle(conn, &req_m, &resp_m, delay, &error) < 0)
		return -1;
	if (auth_proto_resp_decode(&resp_m, a, &error) < 0)
		bail("resp decode: %s", error);
	return 0;
}

static void
test_limits(void)
{
	struct auth_settings set;
	struct auth_server *srv;
	struct auth_conn *conn;
	struct ioloop *loop = ioloop_new();
	struct auth_req r;
	struct auth_resp a;
	const char *error;
	unsigned int d, i, delays[12];
	char ip[64];
	int sv[2], saved_err, devnull;

	/* Thousands of failure lines: keep prove's output readable. */
	saved_err = dup(2);
	if ((devnull = open("/dev/null", O_WRONLY)) < 0 || saved_err < 0 ||
	    dup2(devnull, 2) < 0)
		bail("redirect stderr: %s", strerror(errno));
	close(devnull);
	auth_settings_default(&set);
	set.fail_delay_ms = 100;
	set.fail_delay_max_ms = 1000;
	set.sasl_sessions_max = 4;
	if (auth_server_new(loop, &set, &srv, &error) < 0)
		bail("auth_server_new: %s", error);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		bail("socketpair");
	conn = auth_conn_new(srv, sv[0]);

	/* Growth: "../x" is invalid and cheap; counted per IP. */
	for (i = 0; i < 12; i++) {
		r = plain(i, "pop3", true, "../x", "pw");
		handle(conn, &r, &a, &delays[i]);
	}
	is_int(delays[0], 100, "first failure: 1 x delay");
	is_int(delays[1], 200, "second failure: 2 x delay");
	is_int(delays[9], 1000, "tenth failure: at the cap");
	is_int(delays[10], 1000, "eleventh failure: capped");
	is_int(auth_server_failures(srv, "192.0.2.7", NULL), 12, "IP count");

	/* Per user: a good login resets it; failures from elsewhere count. */
	r = plain(100, "pop3", true, "bob", "x");
	r.ip = "203.0.113.9";
	handle(conn, &r, &a, &d);
	is_int(auth_server_failures(srv, NULL, "bob"), 1, "user count 1");
	r.ip = "203.0.113.10";
	handle(conn, &r, &a, &d);
	is_int(d, 200, "second IP, same user: delay from the user count");
	r.password = "bob-pw";
	handle(conn, &r, &a, &d);
	is_int(a.result, AUTH_RESULT_OK, "good login");
	is_int(d, 0, "  not delayed");
	is_int(auth_server_failures(srv, NULL, "bob"), 0, "  resets the user");

	/* Wiping. */
	r = plain(101, "pop3", true, "bob", "Secret-To-Wipe");
	auth_proto_req_encode(&req_m, &r, &error);
	auth_server_handle(conn, &req_m, &resp_m, &d, &error);
	ok(memmem(req_m.data, sizeof(req_m.data), "Secret-To-Wipe", 14) ==
	    NULL, "password wiped from the request");

	/* Failure table: 4096 distinct IPs fit, the 4097th drops the LRU. */
	for (i = 0; i < AUTH_FAIL_TABLE_MAX + 1; i++) {
		snprintf(ip, sizeof(ip), "10.%u.%u.%u", i >> 16,
		    (i >> 8) & 255, i & 255);
		r = plain(200, "pop3", true, "../x", "pw");
		r.ip = ip;
		handle(conn, &r, &a, &d);
		if (i == AUTH_FAIL_TABLE_MAX - 1) {
			is_int(auth_server_fail_entries(srv, false),
			    AUTH_FAIL_TABLE_MAX, "table full at N");
			is_int(auth_server_failures(srv, "10.0.0.0", NULL), 1,
			    "  the oldest still counted");
		}
	}
	is_int(auth_server_fail_entries(srv, false), AUTH_FAIL_TABLE_MAX,
	    "table bounded after N+1 distinct IPs");
	is_int(auth_server_failures(srv, "10.0.0.0", NULL), 0,
	    "  the oldest dropped");
	is_int(auth_server_failures(srv, "10.0.16.0", NULL), 1,
	    "  the newest counted");

	/* SASL sessions: 4 fit, a 5th drops the oldest. */
	for (i = 1; i <= 5; i++) {
		r = start(1000 + i, "LOGIN", NULL, 0);
		handle(conn, &r, &a, &d);
		if (i == 4) {
			r = step(999, 1001, "alice", 5);
			handle(conn, &r, &a, &d);
			is_int(a.result, AUTH_RESULT_CONTINUE,
			    "N sessions: the oldest still open");
		}
	}
	r = step(999, 1001, ALICE_PW, strlen(ALICE_PW));
	handle(conn, &r, &a, &d);
	is_int(a.result, AUTH_RESULT_FAIL, "N+1 sessions: the oldest dropped");
	is_string(a.reason, "no such SASL session", "  reason");
	r = step(999, 1002, "alice", 5);
	handle(conn, &r, &a, &d);
	is_int(a.result, AUTH_RESULT_CONTINUE, "  the second still open");

	/* Malformed directly. */
	ipc_msg_init(&req_m, AUTH_REQ_MECHS, 1);
	ipc_add_u32(&req_m, 2);
	is_int(auth_server_handle(conn, &req_m, &resp_m, &d, &error), -1,
	    "secure = 2 refused (%s)", error);
	ipc_msg_init(&req_m, AUTH_REQ_MECHS, 1);
	ipc_add_u32(&req_m, 1);
	ipc_add_u32(&req_m, 1);
	is_int(auth_server_handle(conn, &req_m, &resp_m, &d, &error), -1,
	    "extra field refused");
	r = plain(1, "ftp", true, "a", "b");
	auth_proto_req_encode(&req_m, &r, &error);
	is_int(auth_server_handle(conn, &req_m, &resp_m, &d, &error), -1,
	    "unknown service refused");

	auth_server_free(&srv);	/* frees conn and its sessions */
	ok(srv == NULL, "auth_server_free clears the pointer");
	close(sv[1]);
	ioloop_free(&loop);
	dup2(saved_err, 2);
	close(saved_err);
}

/* ---- login tokens ---- */

static bool
log_contains(const char *s)
{
	static char buf[1 << 20];
	ssize_t n;
	int fd;

	if ((fd = open(log_path, O_RDONLY)) < 0)
		bail("open log: %s", strerror(errno));
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return strstr(buf, s) != NULL;
}

/* A login answer's token, copied; bails unless it has one. */
static void
take_token(const struct auth_resp *a, unsigned char *token_r)
{
	if (a->token_len != AUTH_TOKEN_LEN || a->token == NULL)
		bail("no token in the answer (%zu bytes)", a->token_len);
	memcpy(token_r, a->token, AUTH_TOKEN_LEN);
}

static int
redeem(struct ipc_chan *chan, uint32_t id, const unsigned char *token,
    struct auth_user_resp *ur)
{
	const char *error;

	if (auth_proto_user_req_encode(&req_m, id, token, AUTH_TOKEN_LEN,
	    &error) < 0)
		bail("encode: %s", error);
	if (ipc_call(chan, &req_m, &resp_m, 20000, &error) < 0) {
		diag("ipc_call: %s", error);
		return -1;
	}
	if (auth_proto_user_resp_decode(&resp_m, ur, &error) < 0) {
		diag("decode: %s", error);
		return -1;
	}
	return 0;
}

/* Send a record and expect no answer but the channel closed. */
static void
send_expect_close(struct ipc_chan *chan, const char *what)
{
	struct auth_resp a;
	const char *error;

	if (ipc_chan_send(chan, &req_m, &error) < 0 ||
	    ipc_chan_flush(chan, &error) != 0)
		bail("send: %s", error);
	is_int(recv_one(chan, &a), -1, "%s: no answer", what);
	ok(ipc_chan_closed(chan), "%s: channel closed", what);
}

/* Which tokens OK, FAIL, CONTINUE and ABORT answers carry. */
static void
test_tokens_issued(struct child *c, unsigned char *t_alice,
    unsigned char *t_alice2, unsigned char *t_sasl, unsigned char *t_carol)
{
	static const char ir[] = "\0alice\0" ALICE_PW;
	struct auth_req r;
	struct auth_resp a;

	r = plain(300, "pop3", true, "alice", ALICE_PW);
	call(c->chan[0], &r, &a);
	is_int(a.result, AUTH_RESULT_OK, "token: plain login OK");
	is_int(a.token_len, AUTH_TOKEN_LEN, "  with a %d-byte token",
	    AUTH_TOKEN_LEN);
	take_token(&a, t_alice);
	call(c->chan[0], &r, &a);
	take_token(&a, t_alice2);
	ok(memcmp(t_alice, t_alice2, AUTH_TOKEN_LEN) != 0,
	    "  a second login gets another token");

	r = plain(301, "pop3", true, "alice", "wrong");
	call(c->chan[0], &r, &a);
	ok(a.result == AUTH_RESULT_FAIL && a.token == NULL &&
	    a.token_len == 0, "FAIL: no token");
	r = start(302, "LOGIN", NULL, 0);
	call(c->chan[0], &r, &a);
	ok(a.result == AUTH_RESULT_CONTINUE && a.token_len == 0,
	    "CONTINUE: no token");
	memset(&r, 0, sizeof(r));
	r.type = AUTH_REQ_SASL_ABORT;
	r.id = 303;
	r.session = 302;
	call(c->chan[0], &r, &a);
	ok(a.result == AUTH_RESULT_OK && a.token_len == 0,
	    "OK answering an ABORT: no token");
	r = start(304, "PLAIN", ir, sizeof(ir) - 1);
	call(c->chan[0], &r, &a);
	is_int(a.token_len, AUTH_TOKEN_LEN, "SASL PLAIN OK: a token");
	take_token(&a, t_sasl);
	r = plain(305, "imap", true, "carol", "carol-pw");
	r.ip = "203.0.113.5";
	call(c->chan[1], &r, &a);
	is_int(a.result, AUTH_RESULT_OK, "carol logs in on the other channel");
	take_token(&a, t_carol);
}

static void
test_tokens_redeemed(struct child *c, const unsigned char *t_alice,
    const unsigned char *t_sasl, const unsigned char *t_carol)
{
	static const unsigned char made_up[AUTH_TOKEN_LEN] = { 0x5a, 0x5a };
	struct auth_user_resp ur;
	struct user *want = NULL;
	const char *error;

	if (user_lookup("alice", &want, &error) != 1)
		bail("user_lookup: %s", error);
	is_int(redeem(c->chan[2], 400, t_alice, &ur), 0, "redeem: answered");
	is_int(ur.result, AUTH_RESULT_OK, "redeem: OK");
	is_int(ur.id, 400, "  id echoed");
	if (ur.user == NULL)
		bail("no user record");
	is_string(ur.user->name, "alice", "  canonical name");
	ok(ur.user->uid == want->uid && ur.user->gid == want->gid,
	    "  uid %u, gid %u as user_lookup resolves them",
	    (unsigned)ur.user->uid, (unsigned)ur.user->gid);
	is_string(ur.user->home, "/nonexistent", "  home");
	is_string(ur.user->mail_location, want->mail_location,
	    "  mail_location");
	ok(!ur.user->has_quota && !ur.user->system, "  no quota, virtual");
	is_string(ur.service, "pop3", "  service as issued");
	is_string(ur.ip, "192.0.2.7", "  ip as issued");
	user_free(&ur.user);
	user_free(&want);

	redeem(c->chan[2], 401, t_alice, &ur);
	is_int(ur.result, AUTH_RESULT_FAIL, "second redeem: FAIL");
	is_string(ur.reason, "unknown or already used login token",
	    "  reason");
	ok(ur.user == NULL && ur.service[0] == '\0', "  no user, no service");

	redeem(c->chan[2], 402, t_sasl, &ur);
	is_int(ur.result, AUTH_RESULT_OK, "SASL token: OK");
	is_string(ur.service, "imap", "  service imap");
	is_string(ur.ip, "198.51.100.1", "  its ip");
	user_free(&ur.user);

	redeem(c->chan[2], 403, t_carol, &ur);
	is_int(ur.result, AUTH_RESULT_OK, "carol's token: OK");
	ok(ur.user != NULL && ur.user->uid == 1234 && ur.user->gid == 5678 &&
	    strcmp(ur.user->home, "/home/carol") == 0 && ur.user->has_quota &&
	    ur.user->quota == 1000000 && strcmp(ur.user->mail_location,
	    "mbox:~/mail:INBOX=/var/mail/carol") == 0,
	    "  her uid, gid, home, quota and mail location");
	ok(strcmp(ur.service, "imap") == 0 && strcmp(ur.ip, "203.0.113.5") ==
	    0, "  service and ip of her login");
	user_free(&ur.user);

	redeem(c->chan[2], 404, made_up, &ur);
	is_int(ur.result, AUTH_RESULT_FAIL, "made-up token: FAIL");
}

/* The kinds of channel keep to their requests. */
static void
test_tokens_channels(struct child *c, const unsigned char *t_alice2)
{
	struct auth_user_resp ur;
	struct auth_req r;
	const char *error;

	auth_proto_user_req_encode(&req_m, 500, t_alice2, AUTH_TOKEN_LEN,
	    &error);
	send_expect_close(c->chan[1], "AUTH_REQ_USER on a login channel");
	redeem(c->chan[2], 501, t_alice2, &ur);
	is_int(ur.result, AUTH_RESULT_OK,
	    "  the token it carried is still good on the master channel");
	user_free(&ur.user);

	r = plain(502, "pop3", true, "alice", ALICE_PW);
	auth_proto_req_encode(&req_m, &r, &error);
	send_expect_close(c->chan[2], "a login request on the master channel");
	ok(strstr(mechs(c->chan[0], true), "PLAIN") != NULL,
	    "the remaining login channel still answers");
	is_int(child_wait(c), 0, "service exits 0");
	ok(log_contains("pop3 session: user=<alice>, rip=192.0.2.7"),
	    "log: session line");
	ok(log_contains("master presented an unknown login token"),
	    "log: unknown token warned about");
	ok(log_contains("closing login channel: user request on a login "
	    "channel"), "log: user request on a login channel");
	ok(log_contains("closing master channel: login request on the "
	    "master channel"), "log: login request on the master channel");
}

static void
test_tokens_wire(void)
{
	unsigned char t_alice[AUTH_TOKEN_LEN], t_alice2[AUTH_TOKEN_LEN];
	unsigned char t_sasl[AUTH_TOKEN_LEN], t_carol[AUTH_TOKEN_LEN];
	struct child c;

	child_start(&c, 0, true);
	test_tokens_issued(&c, t_alice, t_alice2, t_sasl, t_carol);
	test_tokens_redeemed(&c, t_alice, t_sasl, t_carol);
	test_tokens_channels(&c, t_alice2);
}

/* ---- login tokens, called directly, on a clock the test moves ---- */

static uint64_t fake_now = 1000000;

static uint64_t
fake_clock(void *ctx)
{
	(void)ctx;
	return fake_now;
}

static void
login_direct(struct auth_conn *conn, const char *user, const char *pw,
    unsigned char *token_r)
{
	struct auth_req r;
	struct auth_resp a;
	unsigned int d;

	r = plain(600, "smtp", true, user, pw);
	r.ip = "198.51.100.77";
	if (handle(conn, &r, &a, &d) < 0 || a.result != AUTH_RESULT_OK)
		bail("login of %s failed", user);
	take_token(&a, token_r);
}

static int
redeem_direct(struct auth_conn *conn, const unsigned char *token,
    struct auth_user_resp *ur)
{
	const char *error;
	unsigned int d;

	if (auth_proto_user_req_encode(&req_m, 601, token, AUTH_TOKEN_LEN,
	    &error) < 0)
		bail("encode: %s", error);
	if (auth_server_handle(conn, &req_m, &resp_m, &d, &error) < 0)
		return -1;
	if (auth_proto_user_resp_decode(&resp_m, ur, &error) < 0)
		bail("user resp decode: %s", error);
	if (d != 0)
		diag("a master answer was delayed %u ms", d);
	return 0;
}

/* The result of redeeming token; frees the record. */
static uint32_t
redeem_result(struct auth_conn *conn, const unsigned char *token)
{
	struct auth_user_resp ur;

	if (redeem_direct(conn, token, &ur) < 0)
		return 99;
	user_free(&ur.user);
	return ur.result;
}

static void
test_tokens_expiry(struct auth_server *srv, struct auth_conn *login,
    struct auth_conn *master)
{
	unsigned char tk[2][AUTH_TOKEN_LEN];
	struct auth_user_resp ur;

	login_direct(login, "alice", ALICE_PW, tk[0]);
	is_int(auth_server_tokens(srv), 1, "one token held");
	fake_now += AUTH_TOKEN_TTL_SECS * 1000 - 1;
	is_int(redeem_result(master, tk[0]), AUTH_RESULT_OK,
	    "redeemed at TTL - 1 ms: OK");
	is_int(auth_server_tokens(srv), 0, "  and gone from the table");
	ok(memmem(req_m.data, sizeof(req_m.data), tk[0], AUTH_TOKEN_LEN) ==
	    NULL, "  and wiped from the request");
	login_direct(login, "alice", ALICE_PW, tk[1]);
	fake_now += AUTH_TOKEN_TTL_SECS * 1000;
	redeem_direct(master, tk[1], &ur);
	is_int(ur.result, AUTH_RESULT_FAIL, "redeemed at TTL: FAIL");
	is_string(ur.reason, "login token expired", "  reason");
	ok(strcmp(ur.service, "smtp") == 0 &&
	    strcmp(ur.ip, "198.51.100.77") == 0 && ur.user == NULL,
	    "  service and ip as issued, no user");
	redeem_direct(master, tk[1], &ur);
	is_string(ur.reason, "unknown or already used login token",
	    "an expired token is used up too");
	is_int(auth_server_tokens(srv), 0, "  the table is empty");
}

/* tokens_max is 4 here. */
static void
test_tokens_table(struct auth_server *srv, struct auth_conn *login,
    struct auth_conn *master)
{
	unsigned char tk[6][AUTH_TOKEN_LEN];
	int i;

	for (i = 0; i < 4; i++)
		login_direct(login, "alice", ALICE_PW, tk[i]);
	is_int(auth_server_tokens(srv), 4, "N tokens held");
	is_int(redeem_result(master, tk[0]), AUTH_RESULT_OK,
	    "  at N the oldest is still good");
	login_direct(login, "alice", ALICE_PW, tk[4]);
	is_int(auth_server_tokens(srv), 4, "N again after a redeem");
	login_direct(login, "alice", ALICE_PW, tk[5]);
	is_int(auth_server_tokens(srv), 4, "N + 1 issued: still N held");
	is_int(redeem_result(master, tk[1]), AUTH_RESULT_FAIL,
	    "  the oldest was dropped");
	for (i = 2; i < 6; i++)
		if (redeem_result(master, tk[i]) != AUTH_RESULT_OK)
			break;
	is_int(i, 6, "  the N others are good");
	is_int(auth_server_tokens(srv), 0, "  and now used up");
	ok(log_contains("login tokens not redeemed: dropping the oldest"),
	    "log: dropping warned about");
}

static void
test_tokens_refused(struct auth_conn *login, struct auth_conn *master)
{
	unsigned char tk[AUTH_TOKEN_LEN];
	struct auth_user_resp ur;
	struct auth_req r;
	const char *error;
	unsigned int d;

	login_direct(login, "alice", ALICE_PW, tk);
	auth_proto_user_req_encode(&req_m, 700, tk, AUTH_TOKEN_LEN, &error);
	is_int(auth_server_handle(login, &req_m, &resp_m, &d, &error), -1,
	    "direct: AUTH_REQ_USER on a login channel refused (%s)", error);
	ok(memmem(req_m.data, sizeof(req_m.data), tk, AUTH_TOKEN_LEN) ==
	    NULL, "  the token wiped from the refused request");
	r = plain(701, "pop3", true, "alice", ALICE_PW);
	auth_proto_req_encode(&req_m, &r, &error);
	is_int(auth_server_handle(master, &req_m, &resp_m, &d, &error), -1,
	    "direct: login request on the master channel refused");
	ipc_msg_init(&req_m, AUTH_REQ_USER, 702);
	ipc_add_data(&req_m, tk, AUTH_TOKEN_LEN - 1);
	is_int(auth_server_handle(master, &req_m, &resp_m, &d, &error), -1,
	    "direct: a short token is a protocol error");
	is_int(redeem_result(master, tk), AUTH_RESULT_OK,
	    "  none of these used the token up");

	login_direct(login, "carol", "carol-pw", tk);
	write_users(false);
	redeem_direct(master, tk, &ur);
	is_int(ur.result, AUTH_RESULT_FAIL, "user gone since login: FAIL");
	is_string(ur.reason, "user no longer exists (unknown user)",
	    "  reason");
	write_users(true);

	login_direct(login, "alice", ALICE_PW, tk);
	load_conf(dir, "");	/* a directory: unreadable as a user file */
	redeem_direct(master, tk, &ur);
	is_int(ur.result, AUTH_RESULT_TEMPFAIL, "unreadable database: "
	    "TEMPFAIL");
	ok(strncmp(ur.reason, "temporary failure", 17) == 0 &&
	    strcmp(ur.service, "smtp") == 0, "  reason %s", ur.reason);
	load_conf(users_path, "");
	is_int(redeem_result(master, tk), AUTH_RESULT_FAIL,
	    "  and the token is used up");
}

static void
test_tokens_direct(void)
{
	struct auth_settings set;
	struct auth_server *srv;
	struct auth_conn *login, *master;
	struct ioloop *loop = ioloop_new();
	const char *error;
	int sv[2][2], saved_err, fd;

	saved_err = dup(2);
	if ((fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600)) < 0 ||
	    saved_err < 0 || dup2(fd, 2) < 0)
		bail("redirect stderr: %s", strerror(errno));
	close(fd);
	auth_settings_default(&set);
	set.fail_delay_ms = 0;
	set.tokens_max = 4;
	if (auth_server_new(loop, &set, &srv, &error) < 0)
		bail("auth_server_new: %s", error);
	auth_server_set_clock(srv, fake_clock, NULL);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv[0]) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, sv[1]) < 0)
		bail("socketpair");
	login = auth_conn_new(srv, sv[0][0]);
	master = auth_conn_new_master(srv, sv[1][0]);

	test_tokens_expiry(srv, login, master);
	test_tokens_table(srv, login, master);
	test_tokens_refused(login, master);

	auth_server_free(&srv);
	close(sv[0][1]);
	close(sv[1][1]);
	ioloop_free(&loop);
	dup2(saved_err, 2);
	close(saved_err);
}

static int
exists_direct(struct auth_conn *conn, const char *user, struct auth_resp *a)
{
	struct auth_req r;
	unsigned int d = 99;

	memset(&r, 0, sizeof(r));
	r.type = AUTH_REQ_EXISTS;
	r.id = 900;
	r.user = user;
	if (handle(conn, &r, a, &d) < 0)
		return -1;
	is_int(d, 0, "  EXISTS %s: answered at once", user);
	return a->result;
}

static void
test_exists(void)
{
	struct auth_settings set;
	struct auth_server *srv;
	struct auth_conn *login, *smtpd, *master;
	struct ioloop *loop = ioloop_new();
	struct auth_resp a;
	struct auth_req r;
	const char *error;
	unsigned int d;
	int sv[3][2], saved_err, fd, i;

	saved_err = dup(2);
	if ((fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600)) < 0 ||
	    saved_err < 0 || dup2(fd, 2) < 0)
		bail("redirect stderr: %s", strerror(errno));
	close(fd);
	auth_settings_default(&set);
	set.fail_delay_ms = 500;
	if (auth_server_new(loop, &set, &srv, &error) < 0)
		bail("auth_server_new: %s", error);
	for (i = 0; i < 3; i++)
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]) < 0)
			bail("socketpair");
	login = auth_conn_new(srv, sv[0][0]);
	smtpd = auth_conn_new_smtpd(srv, sv[1][0]);
	master = auth_conn_new_master(srv, sv[2][0]);

	is_int(exists_direct(smtpd, "alice", &a), AUTH_RESULT_OK,
	    "smtpd channel: EXISTS alice: OK");
	is_string(a.user, "alice", "  canonical name");
	is_int(exists_direct(smtpd, "ALICE", &a), AUTH_RESULT_OK,
	    "EXISTS ALICE (other case): OK");
	is_string(a.user, "alice", "  canonical name alice");
	is_int(exists_direct(smtpd, "nobody", &a), AUTH_RESULT_FAIL,
	    "EXISTS nobody: FAIL");
	is_int(exists_direct(smtpd, "../etc", &a), AUTH_RESULT_FAIL,
	    "EXISTS of an invalid name: FAIL");
	is_int(auth_server_failures(srv, NULL, "nobody"), 0,
	    "  not counted as a login failure");
	load_conf(dir, "");	/* a directory: unreadable as a user file */
	is_int(exists_direct(smtpd, "alice", &a), AUTH_RESULT_TEMPFAIL,
	    "unreadable user database: TEMPFAIL");
	load_conf(users_path, "");

	memset(&r, 0, sizeof(r));
	r.type = AUTH_REQ_EXISTS;
	r.id = 901;
	r.user = "alice";
	is_int(handle(login, &r, &a, &d), -1,
	    "EXISTS on a login channel: refused (protocol error)");
	is_int(handle(master, &r, &a, &d), -1,
	    "EXISTS on the master channel: refused");

	r = plain(902, "submission", true, "alice", ALICE_PW);
	is_int(handle(smtpd, &r, &a, &d), 0, "smtpd channel: PLAIN as alice");
	ok(a.result == AUTH_RESULT_OK && a.token_len == 0 && d == 0,
	    "  OK, without a token");
	is_int(auth_server_tokens(srv), 0, "  no token held");
	r = plain(903, "submission", true, "alice", "wrong");
	is_int(handle(smtpd, &r, &a, &d), 0, "smtpd channel: wrong password");
	ok(a.result == AUTH_RESULT_FAIL && d == 500,
	    "  FAIL, delayed like a login's (%u ms)", d);
	ok(log_contains("submission login failed: user=<alice>, "
	    "rip=192.0.2.7, reason=wrong password"),
	    "  logged as a submission login failure");

	auth_server_free(&srv);
	for (i = 0; i < 3; i++)
		close(sv[i][1]);
	ioloop_free(&loop);
	dup2(saved_err, 2);
	close(saved_err);
}

int
main(void)
{
	struct child c;

	if (mkdtemp(dir) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	snprintf(users_path, sizeof(users_path), "%s/users", dir);
	snprintf(log_path, sizeof(log_path), "%s/log", dir);
	write_users(true);
	load_conf(users_path, "");

	child_start(&c, 300, false);
	test_plain(c.chan[0]);
	test_sasl_plain_login(c.chan[0]);
	if (sasl_client_init(NULL) != SASL_OK)
		bail("sasl_client_init");
	test_scram(c.chan[0]);
	test_delay_order(c.chan[1]);
	test_malformed(&c);
	test_log();
	test_tempfail();
	test_plaintext_allowed();
	test_limits();
	test_tokens_wire();
	test_tokens_direct();
	test_exists();

	unlink(users_path);
	unlink(log_path);
	rmdir(dir);
	sasl_lib_deinit();
	return done_testing();
}
