/*
 * Unit tests for server/auth/auth_proto.c, the records only: the login
 * token in AUTH_RESP (0 or AUTH_TOKEN_LEN bytes, nothing between),
 * AUTH_REQ_USER, AUTH_RESP_USER, and the user record: a round trip, each
 * malformed field refused, every truncation refused, trailing bytes
 * refused, the name at USER_NAME_MAX and one past it; AUTH_REQ_EXISTS
 * and the "submission" service.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "user.h"
#include "server/auth/auth_proto.h"
#include "tap.h"

static struct ipc_msg m;	/* large: off the stack */

static const unsigned char token16[AUTH_TOKEN_LEN + 1] = {
	0x00, 0x01, 0xfe, 0xff, 0x10, 0x20, 0x30, 0x40,
	0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0
};

/* The fields of a user record, to build good and bad ones by hand. */
struct rec {
	const char *name;
	uint32_t uid, gid;
	const char *home, *loc;
	uint32_t has_quota;
	uint64_t quota;
	uint32_t system;
};

static const struct rec good = {
	"alice@example.org", 1234, 5678, "/home/alice", "maildir:~/Maildir",
	1, 10000000000ULL, 0
};

static void
rec_add(struct ipc_msg *msg, const struct rec *r)
{
	ipc_add_str(msg, r->name);
	ipc_add_u32(msg, r->uid);
	ipc_add_u32(msg, r->gid);
	ipc_add_str(msg, r->home);
	ipc_add_str(msg, r->loc);
	ipc_add_u32(msg, r->has_quota);
	ipc_add_u64(msg, r->quota);
	ipc_add_u32(msg, r->system);
}

/* An AUTH_RESP_USER, OK, with r as its record. */
static void
user_resp_build(const struct rec *r)
{
	ipc_msg_init(&m, AUTH_RESP_USER, 9);
	ipc_add_u32(&m, AUTH_RESULT_OK);
	ipc_add_str(&m, "");
	ipc_add_str(&m, "imap");
	ipc_add_str(&m, "192.0.2.7");
	rec_add(&m, r);
}

/* Decode the record in m alone (then ipc_get_end); frees what it got. */
static int
get_user_only(const char **error_r)
{
	struct user *u = NULL;
	int ret;

	m.pos = 0;
	u = (struct user *)&m;		/* must become NULL on -1 */
	ret = auth_proto_get_user(&m, &u, error_r);
	if (ret < 0 && u != NULL) {
		diag("a refused record still returned a user");
		return 0;
	}
	if (ret == 0 && ipc_get_end(&m, error_r) < 0)
		ret = -1;
	user_free(&u);
	return ret;
}

/* The record r, alone, must be refused. */
static void
refused(const struct rec *r, const char *what)
{
	struct auth_user_resp ur;
	const char *error = "";

	ipc_msg_init(&m, 0, 0);
	rec_add(&m, r);
	is_int(get_user_only(&error), -1, "get_user refuses %s (%s)", what,
	    error);
	user_resp_build(r);
	ur.user = (struct user *)&ur;	/* must become NULL */
	ok(auth_proto_user_resp_decode(&m, &ur, &error) == -1 &&
	    ur.user == NULL, "  so does user_resp_decode");
}

static void
test_resp_token(void)
{
	struct auth_resp a;
	const char *error;
	size_t len;

	is_int(auth_proto_resp_encode(&m, 3, AUTH_RESULT_OK, "alice", "",
	    NULL, 0, token16, AUTH_TOKEN_LEN, &error), 0,
	    "AUTH_RESP with a token encodes");
	is_int(auth_proto_resp_decode(&m, &a, &error), 0, "  and decodes");
	is_mem(a.token, a.token_len, token16, AUTH_TOKEN_LEN,
	    "  token bytes as sent");
	is_string(a.user, "alice", "  user as sent");
	is_int(auth_proto_resp_encode(&m, 3, AUTH_RESULT_FAIL, "alice",
	    "wrong password", NULL, 0, NULL, 0, &error), 0,
	    "AUTH_RESP without a token encodes");
	is_int(auth_proto_resp_decode(&m, &a, &error), 0, "  and decodes");
	ok(a.token == NULL && a.token_len == 0, "  token empty");

	for (len = AUTH_TOKEN_LEN - 1; len <= AUTH_TOKEN_LEN + 1; len += 2) {
		is_int(auth_proto_resp_encode(&m, 3, AUTH_RESULT_OK, "a", "",
		    NULL, 0, token16, len, &error), -1,
		    "encode refuses a %zu-byte token", len);
		/* By hand, as a broken auth process would send it. */
		ipc_msg_init(&m, AUTH_RESP, 3);
		ipc_add_u32(&m, AUTH_RESULT_OK);
		ipc_add_str(&m, "a");
		ipc_add_str(&m, "");
		ipc_add_data(&m, NULL, 0);
		ipc_add_data(&m, token16, len);
		is_int(auth_proto_resp_decode(&m, &a, &error), -1,
		    "decode refuses a %zu-byte token (%s)", len, error);
	}
	/* The record of the old protocol, without the token field. */
	ipc_msg_init(&m, AUTH_RESP, 3);
	ipc_add_u32(&m, AUTH_RESULT_OK);
	ipc_add_str(&m, "a");
	ipc_add_str(&m, "");
	ipc_add_data(&m, NULL, 0);
	is_int(auth_proto_resp_decode(&m, &a, &error), -1,
	    "AUTH_RESP without the token field refused");
}

static void
test_user_req(void)
{
	struct auth_req r;
	const char *error;
	size_t len;

	is_int(auth_proto_user_req_encode(&m, 42, token16, AUTH_TOKEN_LEN,
	    &error), 0, "AUTH_REQ_USER encodes");
	is_int(m.type, AUTH_REQ_USER, "  type");
	is_int(auth_proto_req_decode(&m, &r, &error), 0, "  decodes");
	is_int(r.type, AUTH_REQ_USER, "  decoded type");
	is_int(r.id, 42, "  id");
	is_mem(r.token, r.token_len, token16, AUTH_TOKEN_LEN, "  token");
	for (len = AUTH_TOKEN_LEN - 1; len <= AUTH_TOKEN_LEN + 1; len += 2) {
		is_int(auth_proto_user_req_encode(&m, 42, token16, len,
		    &error), -1, "encode refuses a %zu-byte token", len);
		ipc_msg_init(&m, AUTH_REQ_USER, 42);
		ipc_add_data(&m, token16, len);
		is_int(auth_proto_req_decode(&m, &r, &error), -1,
		    "decode refuses a %zu-byte token (%s)", len, error);
	}
	is_int(auth_proto_user_req_encode(&m, 42, NULL, 0, &error), -1,
	    "encode refuses no token");
	ipc_msg_init(&m, AUTH_REQ_USER, 42);
	ipc_add_data(&m, token16, AUTH_TOKEN_LEN);
	ipc_add_u32(&m, 0);
	is_int(auth_proto_req_decode(&m, &r, &error), -1,
	    "AUTH_REQ_USER with trailing bytes refused");

	memset(&r, 0, sizeof(r));
	r.type = AUTH_REQ_USER;
	r.id = 43;
	r.token = token16;
	r.token_len = AUTH_TOKEN_LEN;
	is_int(auth_proto_req_encode(&m, &r, &error), 0,
	    "auth_proto_req_encode builds AUTH_REQ_USER too");
	is_int(auth_proto_req_decode(&m, &r, &error), 0, "  and it decodes");
	is_int(r.id, 43, "  id");
}

static void
test_user_roundtrip(void)
{
	struct user u, *got = NULL;
	const char *error;

	memset(&u, 0, sizeof(u));
	u.name = (char *)"alice@example.org";
	u.pwhash = (char *)"$6$SecretHashText";
	u.uid = 1234;
	u.gid = 5678;
	u.home = (char *)"/home/alice";
	u.quota = 10000000000ULL;
	u.has_quota = true;
	u.mail_location = (char *)"maildir:~/Maildir:INDEX=/var/idx/%u";
	u.fields = (char *)"private-field=SecretFieldText";
	ipc_msg_init(&m, 0, 0);
	is_int(auth_proto_add_user(&m, &u), 0, "add_user");
	ok(memmem(m.data, m.len, "SecretHashText", 14) == NULL &&
	    memmem(m.data, m.len, "SecretFieldText", 15) == NULL,
	    "  neither the hash nor the raw fields are sent");
	is_int(get_user_only(&error), 0, "get_user takes it back");
	m.pos = 0;
	auth_proto_get_user(&m, &got, &error);
	if (got == NULL)
		bail("get_user: %s", error);
	is_string(got->name, "alice@example.org", "  name");
	is_int(got->uid, 1234, "  uid");
	is_int(got->gid, 5678, "  gid");
	is_string(got->home, "/home/alice", "  home");
	is_string(got->mail_location, "maildir:~/Maildir:INDEX=/var/idx/%u",
	    "  mail_location");
	ok(got->has_quota && got->quota == 10000000000ULL,
	    "  quota past 32 bits");
	ok(!got->system, "  not a system user");
	ok(got->pwhash != NULL && got->pwhash[0] == '\0' &&
	    got->fields != NULL && got->fields[0] == '\0',
	    "  pwhash and fields are \"\"");
	user_free(&got);

	u.home = (char *)"";
	u.has_quota = false;
	u.quota = 0;
	u.system = true;
	u.uid = 0;
	u.gid = 0;
	ipc_msg_init(&m, 0, 0);
	auth_proto_add_user(&m, &u);
	m.pos = 0;
	is_int(auth_proto_get_user(&m, &got, &error), 0,
	    "empty home, no quota, system user, ids 0");
	ok(got != NULL && got->home[0] == '\0' && !got->has_quota &&
	    got->system && got->uid == 0 && got->gid == 0, "  as sent");
	user_free(&got);

	u.mail_location = NULL;
	ipc_msg_init(&m, 0, 0);
	is_int(auth_proto_add_user(&m, &u), -1,
	    "add_user refuses a NULL mail_location");
	ok(m.error != NULL, "  sticky in m.error");
	u.mail_location = (char *)"";
	ipc_msg_init(&m, 0, 0);
	is_int(auth_proto_add_user(&m, &u), -1,
	    "add_user refuses an empty mail_location");
}

static void
test_user_malformed(void)
{
	char name[USER_NAME_MAX + 2];
	struct rec r;
	const char *error;
	size_t full, len;

	r = good;
	r.name = "../etc";
	refused(&r, "a name with ..");
	r = good;
	r.name = "";
	refused(&r, "an empty name");
	r = good;
	r.name = "a b";
	refused(&r, "a name with a space");
	memset(name, 'x', sizeof(name));
	name[USER_NAME_MAX] = '\0';
	r = good;
	r.name = name;
	ipc_msg_init(&m, 0, 0);
	rec_add(&m, &r);
	is_int(get_user_only(&error), 0, "name of USER_NAME_MAX bytes taken");
	name[USER_NAME_MAX] = 'x';
	name[USER_NAME_MAX + 1] = '\0';
	refused(&r, "a name of USER_NAME_MAX + 1 bytes");
	r = good;
	r.home = "home/alice";
	refused(&r, "a relative home");
	r = good;
	r.loc = "";
	refused(&r, "an empty mail_location");
	r = good;
	r.has_quota = 2;
	refused(&r, "has_quota 2");
	r = good;
	r.system = 2;
	refused(&r, "system 2");
	r = good;
	r.has_quota = 0;
	refused(&r, "a quota without has_quota");
	r = good;
	r.quota = 0;
	refused(&r, "has_quota with a quota of 0");
	r = good;
	r.uid = UINT32_MAX;
	refused(&r, "uid (uint32_t)-1");
	r = good;
	r.gid = UINT32_MAX;
	refused(&r, "gid (uint32_t)-1");

	/* Every truncation of a good record, one byte at a time. */
	ipc_msg_init(&m, 0, 0);
	rec_add(&m, &good);
	full = m.len;
	for (len = 0; len < full; len++) {
		m.len = len;
		m.error = NULL;
		if (get_user_only(&error) != -1)
			break;
	}
	is_int(len, full, "every truncation of the record refused");
	m.len = full;
	m.error = NULL;
	is_int(get_user_only(&error), 0, "  and the whole record taken");
	ipc_add_u32(&m, 0);
	is_int(get_user_only(&error), -1, "trailing bytes refused (%s)",
	    error);
}

static void
test_user_resp(void)
{
	struct auth_user_resp ur;
	struct user u;
	const char *error;
	size_t full, len;

	memset(&u, 0, sizeof(u));
	u.name = (char *)"bob";
	u.pwhash = (char *)"";
	u.uid = 1001;
	u.gid = 1002;
	u.home = (char *)"/home/bob";
	u.mail_location = (char *)"mbox:~/mail:INBOX=/var/mail/bob";
	u.fields = (char *)"";
	is_int(auth_proto_user_resp_encode(&m, 5, AUTH_RESULT_OK, NULL,
	    "pop3", "2001:db8::1", &u, &error), 0, "user_resp OK encodes");
	is_int(auth_proto_user_resp_decode(&m, &ur, &error), 0,
	    "  decodes");
	ok(ur.id == 5 && ur.result == AUTH_RESULT_OK, "  id and result");
	is_string(ur.reason, "", "  reason");
	is_string(ur.service, "pop3", "  service");
	is_string(ur.ip, "2001:db8::1", "  ip");
	ok(ur.user != NULL && strcmp(ur.user->name, "bob") == 0 &&
	    ur.user->uid == 1001 && ur.user->gid == 1002 &&
	    strcmp(ur.user->mail_location, u.mail_location) == 0,
	    "  user record");
	user_free(&ur.user);

	/* Every truncation of an OK answer, and one byte more. */
	auth_proto_user_resp_encode(&m, 5, AUTH_RESULT_OK, "", "pop3", "ip",
	    &u, &error);
	full = m.len;
	for (len = 0; len < full; len++) {
		m.len = len;
		m.error = NULL;
		if (auth_proto_user_resp_decode(&m, &ur, &error) != -1 ||
		    ur.user != NULL)
			break;
	}
	is_int(len, full, "every truncation of an OK answer refused");
	m.len = full;
	m.error = NULL;
	ipc_add_u32(&m, 0);
	is_int(auth_proto_user_resp_decode(&m, &ur, &error), -1,
	    "OK answer with trailing bytes refused (%s)", error);
	ok(ur.user == NULL, "  and no user left to free");

	is_int(auth_proto_user_resp_encode(&m, 6, AUTH_RESULT_FAIL,
	    "login token expired", "imap", "192.0.2.7", NULL, &error), 0,
	    "FAIL encodes without a record");
	is_int(auth_proto_user_resp_decode(&m, &ur, &error), 0, "  decodes");
	ok(ur.result == AUTH_RESULT_FAIL && ur.user == NULL,
	    "  FAIL, no user");
	is_string(ur.reason, "login token expired", "  reason");
	is_int(auth_proto_user_resp_encode(&m, 6, AUTH_RESULT_FAIL,
	    "unknown", "", "", NULL, &error), 0, "FAIL with no service");
	is_int(auth_proto_user_resp_decode(&m, &ur, &error), 0, "  decodes");

	is_int(auth_proto_user_resp_encode(&m, 6, AUTH_RESULT_OK, "",
	    "imap", "ip", NULL, &error), -1, "OK without a record refused");
	is_int(auth_proto_user_resp_encode(&m, 6, AUTH_RESULT_FAIL, "",
	    "imap", "ip", &u, &error), -1, "FAIL with a record refused");
	is_int(auth_proto_user_resp_encode(&m, 6, AUTH_RESULT_CONTINUE, "",
	    "imap", "ip", NULL, &error), -1, "CONTINUE refused");

	/* By hand: what the encoder would not build. */
	ipc_msg_init(&m, AUTH_RESP_USER, 7);
	ipc_add_u32(&m, AUTH_RESULT_CONTINUE);
	ipc_add_str(&m, "");
	ipc_add_str(&m, "imap");
	ipc_add_str(&m, "ip");
	is_int(auth_proto_user_resp_decode(&m, &ur, &error), -1,
	    "decode refuses CONTINUE");
	ipc_msg_init(&m, AUTH_RESP_USER, 7);
	ipc_add_u32(&m, AUTH_RESULT_FAIL);
	ipc_add_str(&m, "");
	ipc_add_str(&m, "imap");
	ipc_add_str(&m, "ip");
	rec_add(&m, &good);
	is_int(auth_proto_user_resp_decode(&m, &ur, &error), -1,
	    "decode refuses a record after FAIL");
	user_resp_build(&good);
	is_int(auth_proto_user_resp_decode(&m, &ur, &error), 0,
	    "hand-built OK answer decodes");
	user_free(&ur.user);
	ipc_msg_init(&m, AUTH_RESP_USER, 7);
	ipc_add_u32(&m, AUTH_RESULT_OK);
	ipc_add_str(&m, "");
	ipc_add_str(&m, "");
	ipc_add_str(&m, "ip");
	rec_add(&m, &good);
	is_int(auth_proto_user_resp_decode(&m, &ur, &error), -1,
	    "decode refuses OK without a service");
	ok(ur.user == NULL, "  and frees the record it read");
	ipc_msg_init(&m, AUTH_RESP_USER, 7);
	ipc_add_u32(&m, AUTH_RESULT_OK);
	ipc_add_str(&m, "");
	ipc_add_str(&m, "ftp");
	ipc_add_str(&m, "ip");
	rec_add(&m, &good);
	is_int(auth_proto_user_resp_decode(&m, &ur, &error), -1,
	    "decode refuses an unknown service");
	user_resp_build(&good);
	m.type = AUTH_RESP;
	is_int(auth_proto_user_resp_decode(&m, &ur, &error), -1,
	    "decode refuses another type");
}

static void
test_exists(void)
{
	struct auth_req r, d;
	const char *error;

	memset(&r, 0, sizeof(r));
	r.type = AUTH_REQ_EXISTS;
	r.id = 77;
	r.user = "alice+tag";
	is_int(auth_proto_req_encode(&m, &r, &error), 0,
	    "AUTH_REQ_EXISTS encodes");
	is_int(auth_proto_req_decode(&m, &d, &error), 0, "  and decodes");
	ok(d.type == AUTH_REQ_EXISTS && d.id == 77 && d.service == NULL,
	    "  type, id, no service");
	is_string(d.user, "alice+tag", "  user as sent");
	ipc_msg_init(&m, AUTH_REQ_EXISTS, 78);
	is_int(auth_proto_req_decode(&m, &d, &error), -1,
	    "EXISTS without its field refused (%s)", error);
	ipc_msg_init(&m, AUTH_REQ_EXISTS, 78);
	ipc_add_str(&m, "a");
	ipc_add_u32(&m, 1);
	is_int(auth_proto_req_decode(&m, &d, &error), -1,
	    "EXISTS with an extra field refused (%s)", error);
	ok(auth_proto_service_valid("submission") &&
	    auth_proto_service_valid("smtp") &&
	    !auth_proto_service_valid("submissions"),
	    "services: smtp and submission valid, submissions not");
	memset(&r, 0, sizeof(r));
	r.type = AUTH_REQ_PLAIN;
	r.id = 79;
	r.service = "submission";
	r.ip = "192.0.2.1";
	r.user = "alice";
	r.password = "pw";
	is_int(auth_proto_req_encode(&m, &r, &error), 0,
	    "PLAIN for submission encodes");
	is_int(auth_proto_req_decode(&m, &d, &error), 0, "  and decodes");
	is_string(d.service, "submission", "  service as sent");
}

int
main(void)
{
	test_exists();
	test_resp_token();
	test_user_req();
	test_user_roundtrip();
	test_user_malformed();
	test_user_resp();
	return done_testing();
}
