/*
 * Unit tests for the IMAP engine (server/imap/imap_session.c and its
 * mailbox and fetch files), driven by bytes against a real Maildir and
 * index: greeting and capabilities before and after TLS, LOGIN and
 * AUTHENTICATE (SASL-IR, continuation, cancel, asynchronous answers),
 * the hand-over to an authenticated session, SELECT, FETCH of index
 * items by sequence number and UID, STATUS, LIST, NAMESPACE, NOOP and
 * IDLE reporting a new delivery, unknown and unserved commands, too many
 * bad commands, LOGOUT.
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "compat/compat.h"
#include "store.h"
#include "user.h"
#include "xmalloc.h"
#include "server/imap/imap_session.h"
#include "tap.h"
#include "imap_harness.h"

static char top[PATH_MAX];
static bool pending;
static int closed_calls, tls_calls, selected_calls;
static char authed[USER_NAME_MAX + 1];

static enum imap_auth_result
t_plain(void *ctx, const char *user, const char *pass)
{
	(void)ctx;
	if (pending)
		return IMAP_AUTH_PENDING;
	return strcmp(user, "alice") == 0 && strcmp(pass, "secret") == 0 ?
	    IMAP_AUTH_OK : IMAP_AUTH_FAIL;
}

static enum imap_auth_result
t_sasl(void *ctx, const char *mech, bool first, const unsigned char *resp,
    size_t len, bool has_resp, const unsigned char **chal_r,
    size_t *chal_len_r, const char **user_r)
{
	static const char plain[] = "\0alice\0secret";

	(void)ctx;
	(void)mech;
	*user_r = "alice";
	if (first && !has_resp) {
		*chal_r = (const unsigned char *)"";
		*chal_len_r = 0;
		return IMAP_AUTH_CONTINUE;
	}
	return len == sizeof(plain) - 1 && memcmp(resp, plain, len) == 0 ?
	    IMAP_AUTH_OK : IMAP_AUTH_FAIL;
}

static void
t_tls(void *ctx)
{
	(void)ctx;
	tls_calls++;
}

static void
t_authenticated(void *ctx, const char *user)
{
	(void)ctx;
	strlcpy(authed, user, sizeof(authed));
}

static void
t_closed(void *ctx)
{
	(void)ctx;
	closed_calls++;
}

static void
t_selected(void *ctx)
{
	(void)ctx;
	selected_calls++;
}

static const struct imap_callbacks cb = {
	.write = t_write, .check_plain = t_plain, .sasl = t_sasl,
	.start_tls = t_tls, .authenticated = t_authenticated,
	.closed = t_closed, .selected = t_selected,
};

static struct imap_session *
t_new(bool secured, bool plaintext)
{
	struct imap_settings set = { true, secured, plaintext, "PLAIN LOGIN "
	    "SCRAM-SHA-256", 0, false };

	return imap_session_new(&set, &cb, NULL);
}

static void
test_preauth(bool bytewise)
{
	struct imap_session *s = t_new(false, false);
	const char *o;

	tls_calls = 0;
	buf_truncate(&out, 0);
	imap_session_greet(s);
	o = buf_cstr(&out);
	ok(strncmp(o, "* OK [CAPABILITY IMAP4rev1 ", 27) == 0,
	    "greeting carries the capabilities");
	ok(has(o, "STARTTLS") && has(o, "LOGINDISABLED") &&
	    has(o, "AUTH=SCRAM-SHA-256") && !has(o, "AUTH=PLAIN"),
	    "before TLS: STARTTLS, LOGINDISABLED, no plaintext mechanism");
	o = t_send(s, "a1 CAPABILITY\r\n", bytewise);
	ok(has(o, "* CAPABILITY IMAP4rev1") && has(o, "a1 OK CAPABILITY"),
	    "CAPABILITY");
	o = t_send(s, "a2 LOGIN alice secret\r\n", bytewise);
	ok(has(o, "a2 NO [PRIVACYREQUIRED]"), "LOGIN refused before TLS");
	o = t_send(s, "a3 AUTHENTICATE PLAIN\r\n", bytewise);
	ok(has(o, "a3 NO [PRIVACYREQUIRED]"),
	    "AUTHENTICATE PLAIN refused before TLS");
	o = t_send(s, "a4 SELECT INBOX\r\n", bytewise);
	ok(has(o, "a4 BAD"), "SELECT before login: BAD");
	o = t_send(s, "a5 FOO\r\n", bytewise);
	ok(has(o, "a5 BAD"), "an unknown command: BAD");
	o = t_send(s, "a6 NOOP\r\na7 STARTTLS\r\na8 NOOP\r\n", bytewise);
	ok(has(o, "a6 OK") && has(o, "a7 OK Begin TLS") && !has(o, "a8"),
	    "STARTTLS: what was pipelined behind it is not run");
	is_int(tls_calls, 1, "start_tls called");
	imap_session_tls_started(s);
	o = t_send(s, "b1 CAPABILITY\r\n", bytewise);
	ok(!has(o, "STARTTLS") && !has(o, "LOGINDISABLED") &&
	    has(o, "AUTH=PLAIN"), "after TLS: LOGIN and PLAIN offered");
	o = t_send(s, "b2 LOGIN alice wrong\r\n", bytewise);
	ok(has(o, "b2 NO [AUTHENTICATIONFAILED]"), "wrong password");
	o = t_send(s, "b3 AUTHENTICATE PLAIN\r\n", bytewise);
	ok(strcmp(o, "+ \r\n") == 0, "AUTHENTICATE without SASL-IR: \"+ \"");
	o = t_send(s, "*\r\n", bytewise);
	ok(has(o, "b3 BAD"), "\"*\" cancels");
	o = t_send(s, "b4 AUTHENTICATE PLAIN !!!!\r\n", bytewise);
	ok(has(o, "b4 BAD"), "bogus base64 initial response: BAD");
	authed[0] = '\0';
	o = t_send(s, "b5 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n"
	    "b6 SELECT INBOX\r\n", bytewise);
	ok(has(o, "b5 OK [CAPABILITY IMAP4rev1") && has(o, "Logged in") &&
	    !has(o, "b6"), "SASL-IR PLAIN logs in; the next command waits");
	is_string(authed, "alice", "authenticated callback");
	ok(imap_session_waiting(s), "hand-over: the engine takes no input");
	imap_session_free(&s);
}

static void
test_async(void)
{
	struct imap_session *s = t_new(true, false);
	const char *o;

	pending = true;
	authed[0] = '\0';
	o = t_send(s, "c1 LOGIN alice secret\r\nc2 NOOP\r\n", false);
	ok(strcmp(o, "") == 0, "a pending check answers nothing yet");
	ok(imap_session_waiting(s), "and waits");
	buf_truncate(&out, 0);
	imap_session_auth_reply(s, IMAP_AUTH_FAIL, NULL, 0, NULL);
	ok(has(buf_cstr(&out), "c1 NO [AUTHENTICATIONFAILED]"),
	    "the late FAIL is answered");
	o = t_send(s, "c2 NOOP\r\nc3 LOGIN alice secret\r\n", false);
	ok(has(o, "c2 OK"), "the queued command runs after the answer");
	buf_truncate(&out, 0);
	imap_session_auth_reply(s, IMAP_AUTH_OK, NULL, 0, "alice");
	ok(has(buf_cstr(&out), "c3 OK [CAPABILITY"), "the late OK logs in");
	is_string(authed, "alice", "with the canonical user");
	pending = false;
	imap_session_free(&s);
}

static void
test_mailbox(bool bytewise)
{
	struct imap_settings set = { false, true, false, "", 0, false };
	struct imap_session *s;
	const char *o;
	char exp[128];

	s = imap_session_new_authenticated(&set, &cb, NULL, "alice");
	is_int(imap_session_login(s, &alice), 0, "mail side: login");
	selected_calls = 0;
	o = t_send(s, "d1 SELECT INBOX\r\n", bytewise);
	ok(has(o, "* 2 EXISTS") && has(o, "* OK [UIDVALIDITY ") &&
	    has(o, "* OK [UIDNEXT 3]") && has(o, "* OK [UNSEEN 1]") &&
	    has(o, "d1 OK [READ-WRITE]"), "SELECT INBOX");
	is_int(selected_calls, 1, "the daemon hears of the selection");
	o = t_send(s, "d2 FETCH 1:* (UID FLAGS RFC822.SIZE)\r\n", bytewise);
	/* 47 bytes with 4 bare LFs; 22 with 3. */
	ok(has(o, "* 1 FETCH (UID 1 FLAGS () RFC822.SIZE 51)") &&
	    has(o, "* 2 FETCH (UID 2 FLAGS () RFC822.SIZE 25)") &&
	    has(o, "d2 OK FETCH"), "FETCH 1:* UID FLAGS RFC822.SIZE");
	o = t_send(s, "d3 UID FETCH 2 (FLAGS)\r\n", bytewise);
	ok(has(o, "* 2 FETCH (UID 2 FLAGS ())") && has(o, "d3 OK UID FETCH"),
	    "UID FETCH adds UID");
	o = t_send(s, "d4 FETCH 1 (ENVELOPE BODYSTRUCTURE INTERNALDATE)\r\n",
	    bytewise);
	ok(has(o, "ENVELOPE (") && has(o, "\"Hello\"") &&
	    has(o, "BODYSTRUCTURE (\"text\" \"plain\"") &&
	    has(o, "INTERNALDATE \"14-Nov-2023 22:13:20 +0000\""),
	    "ENVELOPE, BODYSTRUCTURE, INTERNALDATE from the index");
	o = t_send(s, "d5 FETCH 3 FLAGS\r\n", bytewise);
	ok(has(o, "d5 BAD"), "FETCH past the last message: BAD");
	o = t_send(s, "d6 FETCH 1 BINARY.PEEK[]\r\n", bytewise);
	ok(has(o, "BINARY[] {") && has(o, "d6 OK"),
	    "BINARY.PEEK[]: the whole message");
	o = t_send(s, "d7 STATUS INBOX (MESSAGES UIDNEXT UNSEEN SIZE)\r\n",
	    bytewise);
	ok(has(o, "* STATUS \"INBOX\" (MESSAGES 2 UIDNEXT 3 UNSEEN 2 SIZE "),
	    "STATUS");
	o = t_send(s, "d8 LIST \"\" *\r\n", bytewise);
	ok(has(o, "* LIST (\\HasNoChildren) \"/\" \"INBOX\"") &&
	    has(o, "d8 OK"), "LIST");
	o = t_send(s, "d9 LIST \"\" \"\"\r\n", bytewise);
	ok(has(o, "* LIST (\\Noselect) \"/\" \"\""),
	    "LIST with an empty pattern: the separator");
	o = t_send(s, "q1 GETQUOTAROOT INBOX\r\n", bytewise);
	ok(has(o, "* QUOTAROOT INBOX \"\"\r\n") &&
	    has(o, "* QUOTA \"\" (STORAGE 1 50000)") && has(o, "q1 OK"),
	    "GETQUOTAROOT: the root, usage in KiB, the default limit");
	o = t_send(s, "q2 GETQUOTA \"\"\r\nq3 GETQUOTA other\r\n"
	    "q4 SETQUOTA \"\" (STORAGE 1)\r\n", bytewise);
	ok(has(o, "q2 OK") && has(o, "q3 NO [NONEXISTENT]") &&
	    has(o, "q4 NO [NOPERM]"), "GETQUOTA; SETQUOTA refused");
	o = t_send(s, "e1 NAMESPACE\r\n", bytewise);
	ok(has(o, "* NAMESPACE ((\"\" \"/\")) NIL NIL"), "NAMESPACE");
	t_deliver("INBOX", "Subject: third\n\nnew\n");
	o = t_send(s, "e2 NOOP\r\n", bytewise);
	ok(has(o, "* 3 EXISTS") && has(o, "e2 OK"),
	    "NOOP reports a new delivery");
	o = t_send(s, "e3 IDLE\r\n", bytewise);
	ok(strncmp(o, "+ ", 2) == 0, "IDLE: continuation");
	t_deliver("INBOX", "Subject: fourth\n\nnew\n");
	buf_truncate(&out, 0);
	imap_session_changed(s);
	ok(has(buf_cstr(&out), "* 4 EXISTS"),
	    "in IDLE a change notification reports at once");
	o = t_send(s, "DONE\r\n", bytewise);
	ok(has(o, "e3 OK IDLE"), "DONE ends IDLE");
	o = t_send(s, "e5 SELECT Nowhere\r\n", bytewise);
	ok(has(o, "e5 NO [NONEXISTENT]"), "SELECT of a missing folder");
	is_int(imap_session_state(s), IMAP_STATE_AUTH,
	    "a failed SELECT leaves nothing selected");
	o = t_send(s, "e6 SELECT ../../etc\r\n", bytewise);
	ok(has(o, "e6 NO"), "a name leaving the storage is refused");
	o = t_send(s, "e7 SELECT inbox\r\ne8 CLOSE\r\n", bytewise);
	ok(has(o, "e7 OK") && has(o, "e8 OK"), "inbox in any case; CLOSE");
	snprintf(exp, sizeof(exp), "f1 OK LOGOUT");
	closed_calls = 0;
	o = t_send(s, "f1 LOGOUT\r\n", bytewise);
	ok(has(o, "* BYE") && has(o, exp), "LOGOUT");
	is_int(closed_calls, 1, "closed callback");
	imap_session_free(&s);
}

/* Feed text, then let the output "drain" until the engine stops waiting
 * (a FETCH streaming bodies); returns everything written. */
static const char *
t_run(struct imap_session *s, const char *text, size_t *len_r)
{
	int rounds = 0;

	(void)t_send(s, text, false);
	while (imap_session_waiting(s) && rounds++ < 100000)
		imap_session_output_ready(s);
	*len_r = out.len;
	return buf_cstr(&out);
}

/* The literal that follows "NAME {" in o: its bytes into lit. */
static bool
t_literal(const char *o, size_t olen, const char *name, struct buf *lit)
{
	const char *p = strstr(o, name), *end;
	unsigned long n;

	buf_truncate(lit, 0);
	if (p == NULL || strncmp(p + strlen(name), " {", 2) != 0)
		return false;
	n = strtoul(p + strlen(name) + 2, (char **)&end, 10);
	if (strncmp(end, "}\r\n", 3) != 0 ||
	    (size_t)(end + 3 - o) + n > olen)
		return false;
	buf_append(lit, end + 3, n);
	return true;
}

static void
t_crlf(const char *in, struct buf *b)
{
	buf_truncate(b, 0);
	for (size_t i = 0; in[i] != '\0'; i++) {
		if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
			buf_append_byte(b, '\r');
		buf_append_byte(b, (unsigned char)in[i]);
	}
}

static const char t_mp[] =
    "From: a@b\nSubject: multi\nMIME-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=XX\n\npre\n--XX\n"
    "Content-Type: text/plain\n\npart one\n--XX\n"
    "Content-Type: message/rfc822\n\nSubject: inner\nX-A: 1\n\ninner body\n"
    "--XX--\n";

static const char h1_start[] =
    "* 5 FETCH (BODY[1] {8}\r\npart one BODY[2.HEADER]";

static void
test_body(void)
{
	struct imap_settings set = { false, true, false, "", 0, false };
	struct imap_session *s;
	struct buf lit, want;
	const char *o;
	size_t olen;
	char *big;
	size_t bigsz = 3 * 1024 * 1024;

	buf_init(&lit, 1 << 23);
	buf_init(&want, 1 << 23);
	s = imap_session_new_authenticated(&set, &cb, NULL, "alice");
	is_int(imap_session_login(s, &alice), 0, "body: login");
	(void)t_send(s, "g0 EXAMINE INBOX\r\n", false);
	o = t_run(s, "g1 FETCH 1 (BODY.PEEK[])\r\n", &olen);
	t_crlf("From: Bob <bob@example.net>\nSubject: Hello\n\nhi\n", &want);
	ok(t_literal(o, olen, "BODY[]", &lit) && lit.len == want.len &&
	    memcmp(lit.data, want.data, lit.len) == 0 && has(o, "g1 OK"),
	    "BODY.PEEK[]: the stored message with CRLF, named BODY[]");
	o = t_run(s, "g2 FETCH 1 (RFC822.SIZE BODY[HEADER])\r\n", &olen);
	t_crlf("From: Bob <bob@example.net>\nSubject: Hello\n\n", &want);
	ok(has(o, "RFC822.SIZE 51 BODY[HEADER] {") &&
	    t_literal(o, olen, "BODY[HEADER]", &lit) && lit.len == want.len &&
	    memcmp(lit.data, want.data, lit.len) == 0,
	    "BODY[HEADER] with its empty line, after an index item");
	o = t_run(s, "g3 FETCH 1 BODY[TEXT]\r\n", &olen);
	ok(t_literal(o, olen, "BODY[TEXT]", &lit) && lit.len == 4 &&
	    memcmp(lit.data, "hi\r\n", 4) == 0, "BODY[TEXT]");
	o = t_run(s, "g4 FETCH 1 BODY.PEEK[HEADER.FIELDS (subject)]\r\n",
	    &olen);
	ok(t_literal(o, olen, "BODY[HEADER.FIELDS (SUBJECT)]", &lit) &&
	    lit.len == 18 && memcmp(lit.data, "Subject: Hello\r\n\r\n", 18) == 0,
	    "HEADER.FIELDS: the field and the empty line");
	o = t_run(s, "g5 FETCH 1 BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)]\r\n",
	    &olen);
	ok(t_literal(o, olen, "BODY[HEADER.FIELDS.NOT (SUBJECT)]", &lit) &&
	    lit.len == 31 && memcmp(lit.data,
	    "From: Bob <bob@example.net>\r\n\r\n", 31) == 0,
	    "HEADER.FIELDS.NOT");
	o = t_run(s, "g6 FETCH 1 BODY.PEEK[]<6.3>\r\n", &olen);
	ok(t_literal(o, olen, "BODY[]<6>", &lit) && lit.len == 3 &&
	    memcmp(lit.data, "Bob", 3) == 0, "partial <6.3>");
	o = t_run(s, "g7 FETCH 1 BODY.PEEK[]<1000.10>\r\n", &olen);
	ok(has(o, "BODY[]<1000> {0}\r\n"), "partial past the end: empty");
	o = t_run(s, "g8 FETCH 1 BODY.PEEK[9]\r\n", &olen);
	ok(has(o, "BODY[9] \"\""), "a part that does not exist: empty");
	o = t_run(s, "g9 FETCH 1 BODY[1.X]\r\n", &olen);
	ok(has(o, "g9 BAD"), "a malformed section: BAD");
	imap_session_free(&s);

	/* A multipart, and a message inside it. */
	t_deliver("INBOX", t_mp);
	big = xmalloc(bigsz + 64);
	memcpy(big, "Subject: big\n\n", 15);
	for (size_t i = 15; i < bigsz; i++)
		big[i] = (i % 77 == 76) ? '\n' : (char)('a' + i % 26);
	big[bigsz] = '\0';
	t_deliver("INBOX", big);
	s = imap_session_new_authenticated(&set, &cb, NULL, "alice");
	(void)imap_session_login(s, &alice);
	o = t_send(s, "h0 EXAMINE INBOX\r\n", false);
	ok(has(o, "* 6 EXISTS"), "six messages now");
	o = t_run(s, "h1 FETCH 5 (BODY.PEEK[1] BODY.PEEK[2.HEADER] "
	    "BODY.PEEK[2.TEXT] BODY.PEEK[1.MIME])\r\n", &olen);
	/* The line end before a boundary belongs to the boundary. */
	ok(strncmp(o, h1_start, sizeof(h1_start) - 1) == 0,
	    "BODY[1] of a multipart, first in the list");
	ok(t_literal(o, olen, "BODY[2.HEADER]", &lit) && lit.len == 26 &&
	    memcmp(lit.data, "Subject: inner\r\nX-A: 1\r\n\r\n", 26) == 0,
	    "BODY[2.HEADER]: the header of the enclosed message");
	ok(t_literal(o, olen, "BODY[2.TEXT]", &lit) && lit.len == 10 &&
	    memcmp(lit.data, "inner body", 10) == 0, "BODY[2.TEXT]");
	ok(t_literal(o, olen, "BODY[1.MIME]", &lit) && lit.len == 28 &&
	    memcmp(lit.data, "Content-Type: text/plain\r\n\r\n", 28) == 0,
	    "BODY[1.MIME]");
	buf_truncate(&out, 0);
	o = t_run(s, "h2 FETCH 6 BODY.PEEK[]\r\n", &olen);
	t_crlf(big, &want);
	ok(t_literal(o, olen, "BODY[]", &lit) && lit.len == want.len &&
	    memcmp(lit.data, want.data, lit.len) == 0 && has(o, "h2 OK"),
	    "a 3 MB body streamed in steps, byte-exact");
	o = t_run(s, "h3 FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n",
	    &olen);
	ok(has(o, "* 6 FETCH (UID 6 BODY[HEADER.FIELDS (SUBJECT)] {16}\r\n"
	    "Subject: big\r\n\r\n)") && has(o, "h3 OK"),
	    "header fields of every message");
	imap_session_free(&s);
	free(big);
	buf_free(&lit);
	buf_free(&want);
}

static void
test_bad_limit(void)
{
	struct imap_session *s = t_new(true, true);
	const char *o = "";

	for (int i = 0; i < 20; i++)
		o = t_send(s, "x FOO\r\n", false);
	ok(has(o, "* BYE Too many bad commands"),
	    "twenty bad commands in a row: BYE");
	imap_session_free(&s);
}

int
main(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(top, sizeof(top), "/tmp/loft-imap-XXXXXX");
	if (mkdtemp(top) == NULL)
		bail("mkdtemp");
	buf_init(&out, 1 << 22);
	alice.name = xstrdup("alice");
	alice.pwhash = xstrdup("");
	alice.uid = getuid();
	alice.gid = getgid();
	alice.home = xstrdup(top);
	alice.mail_location = xstrdup("maildir:~/Maildir");
	alice.fields = xstrdup("");

	test_preauth(false);
	test_preauth(true);
	test_async();
	t_deliver("INBOX", "From: Bob <bob@example.net>\nSubject: Hello\n\nhi\n");
	t_deliver("INBOX", "Subject: second\n\nbody\n");
	test_mailbox(false);
	test_body();
	test_bad_limit();

	snprintf(cmd, sizeof(cmd), "rm -rf %s", top);
	if (system(cmd) != 0)
		diag("cleanup failed");
	free(alice.name);
	free(alice.pwhash);
	free(alice.home);
	free(alice.mail_location);
	free(alice.fields);
	buf_free(&out);
	return done_testing();
}
