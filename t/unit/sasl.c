/* Unit tests for lib/sasl.c: the server side against libsasl2's own client
 * side in the same process, PLAIN, LOGIN and SCRAM-SHA-1/256 with users
 * from a temporary user_database; and the SCRAM secrets of lib/pwhash.c. */
#include "config.h"
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <openssl/evp.h>
#include <sasl/sasl.h>
#include "conf.h"
#include "pwhash.h"
#include "sasl.h"
#include "user.h"
#include "xmalloc.h"
#include "tap.h"

/* libsasl2 stores every callback as int (*)(void); going through
 * void (*)(void) tells the compiler the cast is meant. */
#define CB_PROC(f) ((int (*)(void))(void (*)(void))(f))
#define PLUGIN_DIR "/usr/lib/x86_64-linux-gnu/sasl2"

static char dir[] = "/tmp/loft-sasl-XXXXXX";

/* What the test client says: authentication and authorization ids and
 * the password, handed out by the callbacks below. */
struct client_creds {
	const char *authid;
	const char *authzid;
	const char *password;
	sasl_secret_t *secret;
};

static int
cb_simple(void *context, int id, const char **result, unsigned *len)
{
	struct client_creds *c = context;

	*result = id == SASL_CB_USER ? c->authzid : c->authid;
	if (len != NULL)
		*len = (unsigned)strlen(*result);
	return SASL_OK;
}

static int
cb_pass(sasl_conn_t *conn, void *context, int id, sasl_secret_t **psecret)
{
	struct client_creds *c = context;
	size_t len = strlen(c->password);

	(void)conn;
	(void)id;
	free(c->secret);
	c->secret = xcalloc(1, sizeof(*c->secret) + len);
	c->secret->len = len;
	memcpy(c->secret->data, c->password, len);
	*psecret = c->secret;
	return SASL_OK;
}

/* Outcome of one exchange. */
struct run {
	int result;		/* last sasl_sess_* return */
	char error[1024];
	char user[300];
	int steps;
};

/* Drive client against a new server session until it ends. */
static void
exchange(struct sasl_sess *s, sasl_conn_t *cc, const char *mech,
    struct run *r)
{
	const char *cout = NULL, *chosen, *error = NULL;
	const unsigned char *sout;
	unsigned coutlen = 0;
	size_t soutlen;
	int crc;

	crc = sasl_client_start(cc, mech, NULL, &cout, &coutlen, &chosen);
	if (crc != SASL_OK && crc != SASL_CONTINUE) {
		snprintf(r->error, sizeof(r->error), "client start: %s",
		    sasl_errdetail(cc));
		r->result = -2;
		return;
	}
	r->result = sasl_sess_start(s, mech, (const unsigned char *)cout,
	    coutlen, &sout, &soutlen, &error);
	while (r->result == 0 && r->steps++ < 10) {
		crc = sasl_client_step(cc, (const char *)sout,
		    (unsigned)soutlen, NULL, &cout, &coutlen);
		if (crc != SASL_OK && crc != SASL_CONTINUE) {
			snprintf(r->error, sizeof(r->error),
			    "client step: %s", sasl_errdetail(cc));
			r->result = -2;
			return;
		}
		r->result = sasl_sess_step(s, (const unsigned char *)cout,
		    coutlen, &sout, &soutlen, &error);
	}
	if (r->result < 0 && error != NULL)
		snprintf(r->error, sizeof(r->error), "%s", error);
	if (r->result == 1)
		snprintf(r->user, sizeof(r->user), "%s", sasl_sess_user(s));
}

/* One whole authentication: mech as authid/authzid with password. */
static struct run
auth(const char *mech, const char *authid, const char *authzid,
    const char *password)
{
	struct client_creds c = { authid, authzid, password, NULL };
	sasl_callback_t cbs[] = {
		{ SASL_CB_AUTHNAME, CB_PROC(cb_simple), &c },
		{ SASL_CB_USER, CB_PROC(cb_simple), &c },
		{ SASL_CB_PASS, CB_PROC(cb_pass), &c },
		{ SASL_CB_LIST_END, NULL, NULL },
	};
	struct run r;
	struct sasl_sess *s;
	sasl_conn_t *cc;
	const char *error;

	memset(&r, 0, sizeof(r));
	if (sasl_sess_new("imap", true, false, &s, &error) < 0)
		bail("sasl_sess_new: %s", error);
	if (sasl_client_new("imap", "localhost", NULL, NULL, cbs, 0, &cc) !=
	    SASL_OK)
		bail("sasl_client_new failed");
	exchange(s, cc, mech, &r);
	sasl_dispose(&cc);
	sasl_sess_free(&s);
	ok(s == NULL, "sasl_sess_free clears the pointer");
	free(c.secret);
	return r;
}

static void
auth_ok(const char *mech, const char *authid, const char *authzid,
    const char *password, const char *what)
{
	struct run r = auth(mech, authid, authzid, password);

	is_int(r.result, 1, "%s %s: authenticated", mech, what);
	if (r.result != 1)
		diag("error: %s", r.error);
	is_string(r.user, authid, "%s %s: user", mech, what);
}

static char last_error[1024];

static void
auth_fail(const char *mech, const char *authid, const char *authzid,
    const char *password, const char *what, const char *want_error)
{
	struct run r = auth(mech, authid, authzid, password);

	is_int(r.result, -1, "%s %s: refused", mech, what);
	snprintf(last_error, sizeof(last_error), "%s", r.error);
	ok(strchr(r.error, '\n') == NULL, "%s %s: error is one line", mech,
	    what);
	if (want_error != NULL)
		is_string(r.error, want_error, "%s %s: error", mech, what);
	ok(strstr(r.error, password) == NULL || password[0] == '\0',
	    "%s %s: error does not hold the password", mech, what);
}

static void
write_users(const char *path)
{
	char *alice, *bob, *s1, *s256;
	const char *error;
	FILE *f;

	if (pwhash_make("alice secret", &alice, &error) < 0 ||
	    pwhash_make("bob-pw", &bob, &error) < 0 ||
	    pwhash_scram_make("SCRAM-SHA-1", "alice secret", &s1, &error) < 0 ||
	    pwhash_scram_make("scram-sha-256", "alice secret", &s256,
	    &error) < 0)
		bail("pwhash: %s", error);
	if ((f = fopen(path, "w")) == NULL)
		bail("fopen %s: %s", path, strerror(errno));
	fprintf(f, "alice:%s:::/nonexistent:quota=1000 scram-sha-1=%s "
	    "scram-sha-256=%s\n", alice, s1, s256);
	fprintf(f, "bob:%s:::/nonexistent:other=x\n", bob);
	fprintf(f, "carol::::/nonexistent:\n");
	if (fclose(f) != 0)
		bail("write %s", path);
	free(alice);
	free(bob);
	free(s1);
	free(s256);
}

static void
setup(void)
{
	char users[256], *cf;
	const char *error;

	if (mkdtemp(dir) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	snprintf(users, sizeof(users), "%s/users", dir);
	write_users(users);
	cf = xasprintf("user_database = %s\n", users);
	if (conf_load_buffer("sasl-test.conf", cf, strlen(cf), &error) < 0)
		bail("conf_load_buffer: %s", error);
	free(cf);
}

static void
teardown(void)
{
	char users[256];

	snprintf(users, sizeof(users), "%s/users", dir);
	unlink(users);
	rmdir(dir);
}

/* ---- SCRAM secrets (pwhash) ---- */

static void
test_scram_secret(void)
{
	unsigned char salt[64];
	char *sec;
	const char *error;
	int n;

	/* RFC 5803 section 4's example: "pencil", SCRAM-SHA-1, i=4096. */
	n = EVP_DecodeBlock(salt, (const unsigned char *)"QSXCR+Q6sek8bf92",
	    16);
	is_int(pwhash_scram_make_salt("SCRAM-SHA-1", "pencil", salt,
	    (size_t)n, 4096, &sec, &error), 0, "RFC 5803 example derives");
	is_string(sec, "4096:QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=:"
	    "D+CSWLOshSulAsxiupA+qs2/fTE=", "RFC 5803 example secret");
	free(sec);
	is_int(pwhash_scram_make_salt("SCRAM-SHA-1", "pencil", salt,
	    (size_t)n, PWHASH_SCRAM_ITERATIONS_MIN - 1, &sec, &error), -1,
	    "iterations below the minimum refused");
	ok(sec == NULL, "  no secret");
	is_int(pwhash_scram_make_salt("SCRAM-SHA-1", "pencil", salt, 0, 4096,
	    &sec, &error), -1, "empty salt refused");
	is_int(pwhash_scram_make_salt("SCRAM-SHA-1", "pencil", salt,
	    PWHASH_SCRAM_SALT_MAX, 4096, &sec, &error), 0, "salt at max");
	free(sec);
	is_int(pwhash_scram_make_salt("SCRAM-SHA-1", "pencil", salt,
	    PWHASH_SCRAM_SALT_MAX + 1, 4096, &sec, &error), -1,
	    "salt over max refused");
	is_int(pwhash_scram_make("SCRAM-MD5", "pencil", &sec, &error), -1,
	    "unknown mechanism refused");
	is_string(error, "unknown SCRAM mechanism", "  error");
	is_int(pwhash_scram_make("SCRAM-SHA-256", "", &sec, &error), -1,
	    "empty password refused");
	is_int(pwhash_scram_make("SCRAM-SHA-256", "x", &sec, &error), 0,
	    "SCRAM-SHA-256 secret");
	/* 16 salt bytes = 24 base64 chars; 32-byte keys = 44 chars. */
	is_int(strlen(sec), strlen("4096:") + 24 + 1 + 44 + 1 + 44,
	    "  length of a SHA-256 secret");
	ok(strchr(sec, ' ') == NULL, "  no space in the secret");
	free(sec);
}

/* ---- mechanism lists ---- */

static void
mechs_is(bool secure, bool plain, const char *want, const char *what)
{
	struct sasl_sess *s;
	const char *error;

	if (sasl_sess_new("imap", secure, plain, &s, &error) < 0)
		bail("sasl_sess_new: %s", error);
	is_string(sasl_sess_mechs(s), want, "mechanisms %s", what);
	sasl_sess_free(&s);
}

static void
test_mechs(void)
{
	mechs_is(true, false, "SCRAM-SHA-256 SCRAM-SHA-1 PLAIN LOGIN",
	    "with TLS");
	mechs_is(false, true, "SCRAM-SHA-256 SCRAM-SHA-1 PLAIN LOGIN",
	    "plaintext allowed");
	mechs_is(false, false, "SCRAM-SHA-256 SCRAM-SHA-1",
	    "no TLS: no PLAIN/LOGIN");
}

/* PLAIN refused on a session where it is not offered. */
static void
test_plain_not_offered(void)
{
	static const unsigned char msg[] = "\0alice\0alice secret";
	const unsigned char *out;
	struct sasl_sess *s;
	const char *error = NULL;
	size_t outlen;

	if (sasl_sess_new("pop", false, false, &s, &error) < 0)
		bail("sasl_sess_new: %s", error);
	is_int(sasl_sess_start(s, "PLAIN", msg, sizeof(msg) - 1, &out,
	    &outlen, &error), -1, "PLAIN without TLS refused");
	ok(sasl_sess_user(s) == NULL, "  no user");
	is_int(sasl_sess_step(s, msg, 0, &out, &outlen, &error), -1,
	    "  step after failure refused");
	is_string(error, "authentication already ended", "  error");
	sasl_sess_free(&s);
}

/* PLAIN by hand: exact bytes, steps out of order, input limit. */
static int
plain_raw(const unsigned char *msg, size_t len, const char **error_r,
    char *user, size_t usize)
{
	const unsigned char *out;
	struct sasl_sess *s;
	size_t outlen;
	int ret;

	if (sasl_sess_new("smtp", true, false, &s, error_r) < 0)
		bail("sasl_sess_new: %s", *error_r);
	ret = sasl_sess_start(s, "plain", msg, len, &out, &outlen, error_r);
	snprintf(user, usize, "%s",
	    sasl_sess_user(s) != NULL ? sasl_sess_user(s) : "(null)");
	sasl_sess_free(&s);
	return ret;
}

static void
test_plain_raw(void)
{
	static const unsigned char good[] = "alice\0alice\0alice secret";
	static const unsigned char nul[] = "\0alice\0alice secret\0x";
	unsigned char *big;
	const unsigned char *out;
	struct sasl_sess *s;
	const char *error = NULL;
	char user[300];
	size_t outlen;

	is_int(plain_raw(good, sizeof(good) - 1, &error, user, sizeof(user)),
	    1, "raw PLAIN, lower-case mech name, authzid = authcid");
	is_string(user, "alice", "  user");
	is_int(plain_raw(nul, sizeof(nul) - 1, &error, user, sizeof(user)),
	    -1, "password with a NUL byte refused");
	is_string(user, "(null)", "  no user");

	/* At the limit the exchange runs (and fails on the too-long name);
	 * one byte over, it is refused before libsasl2 sees it. */
	big = xcalloc(1, SASL_SESS_INPUT_MAX + 1);
	memset(big + 1, 'a', SASL_SESS_INPUT_MAX - 3);
	big[SASL_SESS_INPUT_MAX - 1] = 'x';
	is_int(plain_raw(big, SASL_SESS_INPUT_MAX, &error, user,
	    sizeof(user)), -1, "PLAIN at SASL_SESS_INPUT_MAX: runs");
	ok(strncmp(error, "invalid user name <aaa", 22) == 0,
	    "  refused for the name, not the length");
	is_int(plain_raw(big, SASL_SESS_INPUT_MAX + 1, &error, user,
	    sizeof(user)), -1, "PLAIN one byte over: refused");
	is_string(error, "client response too long", "  error");
	free(big);

	if (sasl_sess_new("imap", true, false, &s, &error) < 0)
		bail("sasl_sess_new: %s", error);
	is_int(sasl_sess_step(s, good, sizeof(good) - 1, &out, &outlen,
	    &error), -1, "step before start refused");
	is_string(error, "no authentication in progress", "  error");
	sasl_sess_free(&s);

	if (sasl_sess_new("imap", true, false, &s, &error) < 0)
		bail("sasl_sess_new: %s", error);
	is_int(sasl_sess_start(s, "PLAIN", NULL, 0, &out, &outlen, &error),
	    0, "PLAIN without initial response: empty challenge");
	is_int(outlen, 0, "  challenge is empty");
	is_int(sasl_sess_step(s, good, sizeof(good) - 1, &out, &outlen,
	    &error), 1, "  response authenticates");
	is_string(sasl_sess_user(s), "alice", "  user");
	is_int(sasl_sess_step(s, good, 0, &out, &outlen, &error), -1,
	    "  step after success refused");
	sasl_sess_free(&s);
	sasl_sess_free(&s);
	ok(s == NULL, "sasl_sess_free(NULL) is harmless");

	if (sasl_sess_new("imap", true, false, &s, &error) < 0)
		bail("sasl_sess_new: %s", error);
	is_int(sasl_sess_start(s, "CRAM-MD5", NULL, 0, &out, &outlen,
	    &error), -1, "mechanism not in the list refused");
	sasl_sess_free(&s);
}

static void
test_plain(void)
{
	char name[USER_NAME_MAX + 2], *want;

	auth_ok("PLAIN", "alice", "", "alice secret", "good password");
	auth_ok("PLAIN", "bob", "", "bob-pw", "second user");
	auth_ok("PLAIN", "alice", "alice", "alice secret",
	    "authzid equal to the user");
	auth_fail("PLAIN", "alice", "", "alice secreT", "bad password",
	    "wrong password for <alice>");
	auth_fail("PLAIN", "alice", "", "bob-pw", "other user's password",
	    "wrong password for <alice>");
	auth_fail("PLAIN", "nobody", "", "alice secret", "unknown user",
	    "unknown user <nobody>");
	auth_fail("PLAIN", "alice", "bob", "alice secret",
	    "authzid of another user",
	    "authorization identity differs from <alice>");
	auth_fail("PLAIN", "carol", "", "x", "user without a password",
	    "wrong password for <carol>");
	auth_fail("PLAIN", "../etc", "", "x", "invalid name",
	    "invalid user name <../etc>");
	auth_fail("PLAIN", "al\tice", "", "x", "control character in name",
	    "invalid user name <al\\011ice>");
	memset(name, 'a', USER_NAME_MAX + 1);
	name[USER_NAME_MAX + 1] = '\0';
	auth_fail("PLAIN", name, "", "x", "name over USER_NAME_MAX", NULL);
	want = xasprintf("invalid user name <%.*s>", USER_NAME_MAX, name);
	is_string(last_error, want, "  error (name cut short)");
	free(want);
	name[USER_NAME_MAX] = '\0';
	auth_fail("PLAIN", name, "", "x", "unknown name at USER_NAME_MAX",
	    NULL);
	want = xasprintf("unknown user <%s>", name);
	is_string(last_error, want, "  error names the whole user");
	free(want);
}

static void
test_login(void)
{
	auth_ok("LOGIN", "alice", "", "alice secret", "good password");
	auth_ok("LOGIN", "bob", "", "bob-pw", "second user");
	auth_fail("LOGIN", "bob", "", "bob-pW", "bad password",
	    "wrong password for <bob>");
	auth_fail("LOGIN", "ghost", "", "bob-pw", "unknown user",
	    "unknown user <ghost>");
}

static void
test_scram(void)
{
	struct run r;

	auth_ok("SCRAM-SHA-256", "alice", "", "alice secret",
	    "good password");
	auth_ok("SCRAM-SHA-1", "alice", "", "alice secret", "good password");
	auth_ok("SCRAM-SHA-256", "alice", "alice", "alice secret",
	    "authzid equal to the user");
	auth_fail("SCRAM-SHA-256", "alice", "", "alice secreT",
	    "bad password", "authentication failure (SASL(-13): "
	    "authentication failure: StoredKey mismatch)");
	auth_fail("SCRAM-SHA-1", "alice", "", "bob-pw", "bad password", NULL);
	auth_fail("SCRAM-SHA-256", "alice", "bob", "alice secret",
	    "authzid of another user",
	    "authorization identity differs from <alice>");
	/* No secret, or no user: a made-up secret carries the exchange to
	 * the proof, which fails as a wrong password's does (RFC 5802 9). */
	auth_fail("SCRAM-SHA-256", "bob", "", "bob-pw", "user without secret",
	    "authentication failure (SASL(-13): authentication failure: "
	    "StoredKey mismatch)");
	auth_fail("SCRAM-SHA-256", "nobody", "", "x", "unknown user",
	    "authentication failure (SASL(-13): authentication failure: "
	    "StoredKey mismatch)");
	auth_fail("SCRAM-SHA-1", "nobody", "", "x", "unknown user",
	    "authentication failure (SASL(-13): authentication failure: "
	    "StoredKey mismatch)");
	r = auth("SCRAM-SHA-256", "alice", "", "alice secret");
	is_int(r.steps, 2, "SCRAM-SHA-256: server-first, then signature");
	r = auth("SCRAM-SHA-256", "nobody", "", "x");
	is_int(r.steps, 1, "unknown user: a server-first message, like a "
	    "known one, then the proof fails");
}

int
main(void)
{
	const char *error;
	struct stat st;

	if (stat(PLUGIN_DIR "/libplain.so", &st) < 0 ||
	    stat(PLUGIN_DIR "/liblogin.so", &st) < 0 ||
	    stat(PLUGIN_DIR "/libscram.so", &st) < 0)
		skip_all("libsasl2 PLAIN/LOGIN/SCRAM plugins not installed "
		    "(apt-get install libsasl2-modules)");
	setup();
	if (sasl_lib_init("loft-test", &error) < 0)
		bail("sasl_lib_init: %s", error);
	is_int(sasl_lib_init("loft-test", &error), 0, "second init is a no-op");
	if (sasl_client_init(NULL) != SASL_OK)
		bail("sasl_client_init failed");
	test_scram_secret();
	test_mechs();
	test_plain_not_offered();
	test_plain_raw();
	test_plain();
	test_login();
	test_scram();
	sasl_client_done();
	sasl_lib_deinit();
	conf_reset();
	teardown();
	return done_testing();
}
