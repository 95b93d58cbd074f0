/*
 * Unit tests for server/pop3/pop3_session.c (with pop3_mailbox.c over a
 * real store): scripted sessions fed whole and one byte at a time,
 * compared byte for byte with expected transcripts; RETR/TOP against a
 * reference CRLF + dot-stuffing transformation (NULs, lone CR, leading
 * dots, no final newline, CRLF already there) for Maildir and mbox;
 * DELE+QUIT, DELE+drop, RSET, [IN-USE], STLS dropping pipelined input,
 * AUTH with base64 and cancel, line limits at N and N+1 (default and
 * configured), NUL bytes, pipelining, a 5 MB message streamed in bounded
 * chunks, the conversion checked across reads on a 400 KB message of
 * random lines (RETR and TOP), small messages leaving whole in one call,
 * pipelined commands held back past POP3_CHUNK of output (at N and N+1),
 * sizes made exact by STAT, LIST, RETR and TOP only (and their failure);
 * authentication answered later (PENDING, auth_reply), the
 * hand-over from a login engine to a mail engine compared with one
 * engine, the statistics, and the bugs that panic (in a forked child).
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "compat/compat.h"
#include "store.h"
#include "user.h"
#include "xmalloc.h"
#include "server/pop3/pop3_session.h"
#include "server/pop3/pop3_mailbox.h"
#include "tap.h"

static char top[PATH_MAX];
static struct buf out;			/* everything the engine wrote */
static size_t max_write;		/* largest single write */
static int writes;			/* cb->write calls */
static struct user alice;
static struct pop3_session *cur;
static int tls_calls, closed_calls, aborts;

/* Asynchronous checks and hand-over: what the callbacks saw. */
static bool pending_mode;		/* check_plain, sasl say PENDING */
static bool defer_login;		/* t_auth only records the user */
static int plain_calls, sasl_calls, auth_calls;
static char got_user[USER_NAME_MAX + 1], got_pass[64];
static const char *got_pass_ptr;	/* the engine's copy, to see it wiped */
static unsigned char got_resp[2048];
static size_t got_resp_len;
static bool got_first;
static char authed_user[USER_NAME_MAX + 1];
static struct buf *export_to;		/* t_auth exports there, as loftd */

static void
t_write(void *ctx, const unsigned char *d, size_t len)
{
	(void)ctx;
	writes++;
	if (len > max_write)
		max_write = len;
	if (buf_append(&out, d, len) < 0)
		bail("output too large");
}

static enum pop3_auth_result
t_plain(void *ctx, const char *user, const char *pass)
{
	(void)ctx;
	plain_calls++;
	strlcpy(got_user, user, sizeof(got_user));
	strlcpy(got_pass, pass, sizeof(got_pass));
	got_pass_ptr = pass;
	if (pending_mode)
		return POP3_AUTH_PENDING;
	if (strcmp(pass, "temp") == 0)
		return POP3_AUTH_TEMPFAIL;
	return strcmp(user, "alice") == 0 && strcmp(pass, "secret word") == 0 ?
	    POP3_AUTH_OK : POP3_AUTH_FAIL;
}

/* A toy mechanism: PLAIN checks "\0alice\0secret word"; X-TWO asks one
 * question ("who?") and accepts "alice". */
static enum pop3_auth_result
t_sasl(void *ctx, const char *mech, bool first, const unsigned char *resp,
    size_t len, bool has_resp, const unsigned char **chal_r,
    size_t *chal_len_r, const char **user_r)
{
	static const char plain[] = "\0alice\0secret word";

	(void)ctx;
	sasl_calls++;
	got_first = first;
	got_resp_len = len < sizeof(got_resp) ? len : sizeof(got_resp);
	if (got_resp_len > 0)
		memcpy(got_resp, resp, got_resp_len);
	if (pending_mode)
		return POP3_AUTH_PENDING;
	*user_r = "alice";
	if (strcmp(mech, "PLAIN") == 0) {
		if (first && !has_resp) {
			*chal_r = (const unsigned char *)"";
			*chal_len_r = 0;
			return POP3_AUTH_CONTINUE;
		}
		return len == sizeof(plain) - 1 &&
		    memcmp(resp, plain, len) == 0 ? POP3_AUTH_OK :
		    POP3_AUTH_FAIL;
	}
	if (first) {
		*chal_r = (const unsigned char *)"who?";
		*chal_len_r = 4;
		return POP3_AUTH_CONTINUE;
	}
	return len == 5 && memcmp(resp, "alice", 5) == 0 ? POP3_AUTH_OK :
	    POP3_AUTH_FAIL;
}

static void
t_abort(void *ctx)
{
	(void)ctx;
	aborts++;
}

static void
t_tls(void *ctx)
{
	(void)ctx;
	tls_calls++;
}

static void
t_auth(void *ctx, const char *user)
{
	(void)ctx;
	auth_calls++;
	strlcpy(authed_user, user, sizeof(authed_user));
	if (export_to != NULL)
		pop3_session_export_pending(cur, export_to);
	if (defer_login)
		return;
	if (strcmp(user, "alice") != 0)
		bail("authenticated as %s", user);
	pop3_session_login(cur, &alice);
}

static void
t_closed(void *ctx)
{
	(void)ctx;
	closed_calls++;
}

static const struct pop3_callbacks cbs = {
	t_write, t_plain, t_sasl, t_abort, t_tls, t_auth, t_closed
};

static struct pop3_settings
t_settings(bool secured, bool tls, size_t line_max)
{
	struct pop3_settings set = {
		.tls_available = tls,
		.secured = secured,
		.mechanisms = "PLAIN X-TWO",
		.line_max = line_max
	};

	return set;
}

static struct pop3_session *
t_new_max(bool secured, bool tls, size_t line_max)
{
	struct pop3_settings set = t_settings(secured, tls, line_max);
	struct pop3_session *s = pop3_session_new(&set, &cbs, NULL);

	cur = s;
	buf_truncate(&out, 0);
	pop3_session_greet(s);
	return s;
}

static struct pop3_session *
t_new(bool secured, bool tls)
{
	return t_new_max(secured, tls, 0);
}

/* Feed text (whole or byte by byte), drain streams, return output. */
static const char *
t_feed(struct pop3_session *s, const char *in, size_t len, bool bytewise)
{
	size_t done = 0;

	buf_truncate(&out, 0);
	cur = s;
	while (done < len) {
		size_t n = bytewise ? 1 : len - done, took;

		took = pop3_session_input(s, (const unsigned char *)in + done,
		    n);
		done += took;
		while (pop3_session_want_output(s))
			pop3_session_output_ready(s);
		if (pop3_session_state(s) == POP3_STATE_CLOSED)
			break;
		/* A full queue that nothing will drain: fail, do not hang. */
		if (took == 0) {
			diag("input stalled after %zu of %zu bytes", done, len);
			break;
		}
	}
	return buf_cstr(&out);
}

static const char *
t_fs(struct pop3_session *s, const char *in, bool bytewise)
{
	return t_feed(s, in, strlen(in), bytewise);
}

static const char *
t_say(struct pop3_session *s, const char *in)
{
	return t_feed(s, in, strlen(in), false);
}

/* The auth process answers; drain streams, return output. */
static const char *
t_reply(struct pop3_session *s, enum pop3_auth_result r, const char *chal,
    const char *user)
{
	buf_truncate(&out, 0);
	cur = s;
	pop3_session_auth_reply(s, r, (const unsigned char *)chal,
	    chal != NULL ? strlen(chal) : 0, user);
	while (pop3_session_want_output(s))
		pop3_session_output_ready(s);
	return buf_cstr(&out);
}

/* n copies of c into b. */
static void
t_fill(struct buf *b, char c, size_t n)
{
	while (n-- > 0)
		buf_append_byte(b, (unsigned char)c);
}

static void
t_deliver(const unsigned char *msg, size_t len)
{
	struct store *st;
	struct store_delivery d = { "INBOX", "bob@example.net", 1700000000,
	    msg, len };
	struct store_delivered r;
	const char *err;

	if (store_open(&alice, &st, &err) < 0)
		bail("store_open: %s", err);
	if (store_deliver(st, &d, &r, &err) != STORE_OK)
		bail("store_deliver: %s", err);
	store_close(&st);
}

/* The reference: bare LF -> CRLF, leading '.' doubled, CRLF added at the
 * end if missing, then ".\r\n". */
static void
t_reference(const unsigned char *m, size_t len, struct buf *r)
{
	bool bol = true;

	for (size_t i = 0; i < len; i++) {
		if (bol && m[i] == '.')
			buf_append_byte(r, '.');
		if (m[i] == '\n' && (i == 0 || m[i - 1] != '\r'))
			buf_append_byte(r, '\r');
		buf_append_byte(r, m[i]);
		bol = m[i] == '\n';
	}
	if (!bol)
		buf_append_str(r, "\r\n");
	buf_append_str(r, ".\r\n");
}

static size_t
t_count_files(const char *sub)
{
	char path[PATH_MAX + 32];
	DIR *d;
	struct dirent *de;
	size_t n = 0;

	snprintf(path, sizeof(path), "%s/Maildir/%s", top, sub);
	if ((d = opendir(path)) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static const unsigned char m1[] = "Subject: one\n\nhello\n.dot line\n";
static const unsigned char m2[] =
    "Subject: two\r\n\r\nbody\0with NUL\r\nlone\rCR\n..two dots\nno end";
static const unsigned char m3[] =
    "Subject: three\n\nFrom here\n>From there\nl1\nl2\nl3\n";

/* The sizes as RETR sends them, before dot-stuffing: each bare LF counts
 * two, and a last line without its line end gets a CRLF. */
static size_t
t_vsize(const unsigned char *m, size_t len)
{
	size_t n = len;

	for (size_t i = 0; i < len; i++)
		n += m[i] == '\n' && (i == 0 || m[i - 1] != '\r');
	if (len > 0 && m[len - 1] != '\n')
		n += 2;
	return n;
}

#define V1 t_vsize(m1, sizeof(m1) - 1)
#define V2 t_vsize(m2, sizeof(m2) - 1)
#define V3 t_vsize(m3, sizeof(m3) - 1)

static void
test_auth(void)
{
	struct pop3_session *s;
	char line[400];

	s = t_new(false, true);
	is_string(buf_cstr(&out), "+OK loft POP3 ready\r\n", "greeting");
	is_string(t_say(s, "CAPA\r\n"),
	    "+OK Capability list follows\r\nTOP\r\nUIDL\r\nSASL X-TWO\r\n"
	    "RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE NEVER\r\n"
	    "LOGIN-DELAY 0\r\nIMPLEMENTATION loft\r\nSTLS\r\n.\r\n",
	    "CAPA before TLS: no USER, no PLAIN, STLS");
	is_string(t_say(s, "USER alice\r\n"),
	    "-ERR [AUTH] Plaintext authentication disallowed on non-secure "
	    "connection\r\n", "USER refused without TLS");
	is_string(t_say(s, "AUTH PLAIN AGFsaWNlAHNlY3JldCB3b3Jk\r\n"),
	    "-ERR [AUTH] Plaintext authentication disallowed on non-secure "
	    "connection\r\n", "AUTH PLAIN refused without TLS");
	is_string(t_say(s, "STLS\r\nUSER injected\r\nPASS x\r\n"),
	    "+OK Begin TLS negotiation\r\n",
	    "STLS: input pipelined after it is dropped");
	is_int(tls_calls, 1, "start_tls called once");
	pop3_session_tls_started(s);
	is_string(t_say(s, "STLS\r\n"), "-ERR TLS is already active\r\n",
	    "no second STLS");
	is_string(t_say(s, "CAPA\r\n"),
	    "+OK Capability list follows\r\nTOP\r\nUSER\r\nUIDL\r\n"
	    "SASL PLAIN X-TWO\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
	    "PIPELINING\r\nEXPIRE NEVER\r\nLOGIN-DELAY 0\r\n"
	    "IMPLEMENTATION loft\r\n.\r\n", "CAPA after TLS");
	is_string(t_say(s, "PASS x\r\n"),
	    "-ERR No user name given (use USER first)\r\n", "PASS first");
	is_string(t_say(s, "USER alice\r\nPASS wrong\r\n"),
	    "+OK\r\n-ERR [AUTH] Authentication failed\r\n", "bad password");
	is_string(t_say(s, "USER alice\r\nPASS temp\r\n"),
	    "+OK\r\n-ERR [SYS/TEMP] Temporary authentication failure\r\n",
	    "tempfail");
	is_string(t_say(s, "AUTH\r\n"), "+OK\r\nPLAIN\r\nX-TWO\r\n.\r\n",
	    "AUTH lists mechanisms");
	is_string(t_say(s, "AUTH CRAM-MD5\r\n"),
	    "-ERR Unsupported authentication mechanism\r\n", "unknown mech");
	is_string(t_say(s, "AUTH PLAIN AGFsaWNlAHNlY3JldCB3b3J\r\n"),
	    "-ERR Invalid base64 data\r\n", "bogus initial response");
	is_string(t_say(s, "AUTH X-TWO\r\n*\r\n"),
	    "+ d2hvPw==\r\n-ERR Authentication cancelled\r\n", "cancel");
	is_int(aborts, 1, "sasl_abort on cancel");
	is_string(t_say(s, "AUTH X-TWO\r\nYWxpY2U\r\n"),
	    "+ d2hvPw==\r\n-ERR Invalid base64 data\r\n", "bad base64 reply");
	is_string(t_say(s, "AUTH x-two\r\nYm9i\r\n"),
	    "+ d2hvPw==\r\n-ERR [AUTH] Authentication failed\r\n",
	    "lower-case mechanism, wrong answer");
	is_string(t_say(s, "AUTH PLAIN\r\nAGFsaWNlAHNlY3JldCB3b3Jk\r\nSTAT\r\n"
	    "QUIT\r\n"),
	    "+ \r\n+OK Logged in\r\n+OK 0 0\r\n+OK Logging out, 0 messages "
	    "deleted\r\n", "AUTH PLAIN with empty challenge, pipelined");
	is_int(closed_calls, 1, "closed callback");
	pop3_session_free(&s);

	/* Line limit: 255 octets with CRLF pass, 256 do not. */
	s = t_new(true, false);
	memset(line, 'x', sizeof(line));
	memcpy(line, "NOOP ", 5);
	memcpy(line + 253, "\r\n", 3);
	is_string(t_say(s, line), "-ERR Command not allowed in this state\r\n",
	    "line of 255 octets is parsed");
	memcpy(line + 254, "\r\n", 3);
	is_string(t_say(s, line), "-ERR Line too long\r\n",
	    "line of 256 octets is refused");
	memcpy(line + 254, "\n", 2);
	is_string(t_say(s, line), "-ERR Command not allowed in this state\r\n",
	    "255 octets ending in bare LF");
	memset(line, 'y', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\0';
	is_string(t_say(s, line), "", "long partial line: nothing yet");
	is_string(t_say(s, "\r\nCAPA\r\n") + 0, buf_cstr(&out),
	    "(output captured)");
	ok(strncmp(buf_cstr(&out), "-ERR Line too long\r\n+OK Capability", 32)
	    == 0, "excess skipped, next line works");
	is_string(t_feed(s, "QU\0T\r\n", 6, false),
	    "-ERR NUL byte in command\r\n", "NUL byte in a command");
	is_string(t_say(s, "XYZZY\r\n"), "-ERR Unknown command\r\n",
	    "unknown command");
	pop3_session_free(&s);

	/* Ten bad commands close the session. */
	s = t_new(true, false);
	is_string(t_say(s, "A\r\nB\r\nC\r\nD\r\nE\r\nF\r\nG\r\nH\r\nI\r\n"
	    "J\r\nCAPA\r\n"),
	    "-ERR Unknown command\r\n-ERR Unknown command\r\n"
	    "-ERR Unknown command\r\n-ERR Unknown command\r\n"
	    "-ERR Unknown command\r\n-ERR Unknown command\r\n"
	    "-ERR Unknown command\r\n-ERR Unknown command\r\n"
	    "-ERR Unknown command\r\n-ERR Too many bad commands, closing\r\n",
	    "10th bad command closes");
	is_int(pop3_session_state(s), POP3_STATE_CLOSED, "state closed");
	pop3_session_free(&s);
}

static struct pop3_session *
t_login(void)
{
	struct pop3_session *s = t_new(true, false);

	if (strcmp(t_say(s, "USER alice\r\nPASS secret word\r\n"),
	    "+OK\r\n+OK Logged in\r\n") != 0)
		diag("login said: %s", buf_cstr(&out));
	return s;
}

static void
test_transaction(bool bytewise)
{
	struct pop3_session *s = t_login(), *s2;
	struct buf ref, exp;
	char uidl[3][POP3_UIDL_LEN + 1];
	const char *o;
	unsigned uv;

	is_int(pop3_session_state(s), POP3_STATE_TRANSACTION, "logged in");
	o = t_fs(s, "UIDL\r\n", bytewise);
	ok(sscanf(o, "+OK\r\n1 %16s\r\n2 %16s\r\n3 %16s\r\n.\r\n", uidl[0],
	    uidl[1], uidl[2]) == 3, "UIDL lists three");
	ok(sscanf(uidl[0], "%8x", &uv) == 1 && strlen(uidl[0]) == 16 &&
	    strcmp(uidl[0] + 8, "00000001") == 0 &&
	    strcmp(uidl[2] + 8, "00000003") == 0, "UIDL is uidvalidity+uid");
	buf_init(&exp, 4096);
	buf_printf(&exp, "+OK 3 %zu\r\n", V1 + V2 + V3);
	is_string(t_fs(s, "STAT\r\n", bytewise), buf_cstr(&exp), "STAT");
	buf_truncate(&exp, 0);
	buf_printf(&exp, "+OK 2 %zu\r\n", V2);
	is_string(t_fs(s, "LIST 2\r\n", bytewise), buf_cstr(&exp),
	    "LIST 2 is the CRLF size");
	is_string(t_fs(s, "LIST 0\r\nLIST 4\r\nLIST +1\r\nLIST 1 2\r\n"
	    "LIST  1\r\n", bytewise),
	    "-ERR There is no message 0\r\n-ERR There is no message 4\r\n"
	    "-ERR Invalid message number\r\n-ERR Syntax error\r\n"
	    "-ERR Syntax error\r\n", "LIST argument errors");

	buf_init(&ref, 1 << 20);
	buf_printf(&ref, "+OK %zu octets\r\n", V1);
	t_reference(m1, sizeof(m1) - 1, &ref);
	o = t_fs(s, "RETR 1\r\n", bytewise);
	is_mem(out.data, out.len, ref.data, ref.len, "RETR 1 byte-exact");
	buf_truncate(&ref, 0);
	buf_printf(&ref, "+OK %zu octets\r\n", V2);
	t_reference(m2, sizeof(m2) - 1, &ref);
	t_fs(s, "RETR 2\r\n", bytewise);
	is_mem(out.data, out.len, ref.data, ref.len,
	    "RETR 2 (NUL, lone CR, dots, no final newline) byte-exact");
	t_fs(s, "TOP 3 2\r\n", bytewise);
	is_mem(out.data, out.len,
	    "+OK\r\nSubject: three\r\n\r\nFrom here\r\n>From there\r\n.\r\n",
	    strlen("+OK\r\nSubject: three\r\n\r\nFrom here\r\n"
	    ">From there\r\n.\r\n"), "TOP 3 2");
	t_fs(s, "TOP 3 0\r\nTOP 1 99\r\n", bytewise);
	is_mem(out.data, out.len,
	    "+OK\r\nSubject: three\r\n\r\n.\r\n"
	    "+OK\r\nSubject: one\r\n\r\nhello\r\n..dot line\r\n.\r\n",
	    strlen("+OK\r\nSubject: three\r\n\r\n.\r\n"
	    "+OK\r\nSubject: one\r\n\r\nhello\r\n..dot line\r\n.\r\n"),
	    "TOP 3 0 and TOP past the end");
	buf_truncate(&exp, 0);
	buf_printf(&exp, "+OK message 2 deleted\r\n-ERR message 2 already "
	    "deleted\r\n-ERR message 2 already deleted\r\n+OK 2 messages "
	    "(%zu octets)\r\n1 %zu\r\n3 %zu\r\n.\r\n", V1 + V3, V1, V3);
	is_string(t_fs(s, "DELE 2\r\nDELE 2\r\nRETR 2\r\nLIST\r\n",
	    bytewise), buf_cstr(&exp), "DELE hides the message");
	buf_truncate(&exp, 0);
	buf_printf(&exp, "+OK maildrop has 3 messages (%zu octets)\r\n"
	    "+OK 3 %zu\r\n+OK\r\n", V1 + V2 + V3, V1 + V2 + V3);
	is_string(t_fs(s, "RSET\r\nSTAT\r\nNOOP\r\n", bytewise),
	    buf_cstr(&exp), "RSET undeletes");
	buf_free(&exp);

	s2 = t_new(true, false);
	is_string(t_say(s2, "USER alice\r\nPASS secret word\r\n"),
	    "+OK\r\n-ERR [IN-USE] Mailbox is in use by another POP3 "
	    "session\r\n", "second session: [IN-USE]");
	pop3_session_free(&s2);

	t_fs(s, "DELE 1\r\n", bytewise);
	pop3_session_free(&s);
	is_int(t_count_files("new") + t_count_files("cur"), 3,
	    "dropped connection deleted nothing");
	s = t_login();
	o = t_say(s, "UIDL 3\r\n");
	ok(strncmp(o, "+OK 3 ", 6) == 0 && strncmp(o + 6, uidl[2], 16) == 0,
	    "UIDL equal in the next session");
	pop3_session_free(&s);
	buf_free(&ref);
}

static void
test_dele_quit(void)
{
	struct pop3_session *s = t_login();
	struct store *st;
	struct mindex_txn *txn;
	struct mindex_folder f;
	const char *err;

	is_string(t_say(s, "DELE 1\r\nQUIT\r\n"),
	    "+OK message 1 deleted\r\n+OK Logging out, 1 messages deleted\r\n",
	    "DELE + QUIT");
	pop3_session_free(&s);
	is_int(t_count_files("new") + t_count_files("cur"), 2, "file gone");
	if (store_open(&alice, &st, &err) < 0)
		bail("store_open: %s", err);
	if (mindex_begin(store_index(st), false, &txn, &err) < 0)
		bail("begin: %s", err);
	is_int(mindex_folder_get(txn, "INBOX", &f), 1, "INBOX indexed");
	is_int(f.count, 2, "index count down to 2");
	mindex_abort(&txn);
	store_close(&st);
	s = t_login();
	ok(strncmp(t_say(s, "UIDL 1\r\n") + 6 + 8, "00000002", 8) == 0,
	    "renumbered: message 1 is now UID 2");
	pop3_session_free(&s);
}

static void
test_big(void)
{
	size_t len = 5 * 1024 * 1024, chunks = 0, total;
	unsigned char *m = xmalloc(len);
	struct pop3_session *s;
	struct buf ref;
	char cmd[32];

	for (size_t i = 0; i < len; i++)
		m[i] = i % 71 == 70 ? '\n' : (unsigned char)('a' + i % 26);
	memcpy(m, "Subject: big\n\n", 14);
	t_deliver(m, len);
	s = t_login();
	snprintf(cmd, sizeof(cmd), "RETR %u\r\nNOOP\r\n", 3);
	buf_truncate(&out, 0);
	buf_free(&out);
	buf_init(&out, 16 * 1024 * 1024);
	max_write = 0;
	pop3_session_input(s, (const unsigned char *)cmd, strlen(cmd));
	ok(pop3_session_want_output(s), "RETR of 5 MB is streaming");
	ok(strstr(buf_cstr(&out), "+OK\r\n") == NULL, "NOOP waits");
	while (pop3_session_want_output(s)) {
		pop3_session_output_ready(s);
		chunks++;
	}
	ok(chunks > 100, "arrived in %zu chunks", chunks);
	ok(max_write <= 2 * POP3_CHUNK + 64, "largest write %zu", max_write);
	buf_init(&ref, 16 * 1024 * 1024);
	buf_printf(&ref, "+OK %zu octets\r\n", t_vsize(m, len));
	t_reference(m, len, &ref);
	buf_append_str(&ref, "+OK\r\n");
	total = out.len;
	is_mem(out.data, total, ref.data, ref.len,
	    "5 MB byte-exact, NOOP answered after");
	buf_free(&ref);
	pop3_session_free(&s);
	free(m);
}

static void
t_read_file(const char *path, struct buf *b)
{
	FILE *fp;
	unsigned char chunk[4096];
	size_t n;

	buf_truncate(b, 0);
	if ((fp = fopen(path, "r")) == NULL)
		bail("cannot open %s", path);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		buf_append(b, chunk, n);
	fclose(fp);
}

static void
t_read_inbox(struct buf *b)
{
	char path[PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/inbox", top);
	t_read_file(path, b);
}

static void
test_mbox(void)
{
	struct pop3_session *s;
	struct buf ref, before, after;
	const unsigned char *second;
	const char *o;

	free(alice.mail_location);
	alice.mail_location = xstrdup("mbox:~/mail:INBOX=~/inbox");
	t_deliver(m1, sizeof(m1) - 1);
	t_deliver(m3, sizeof(m3) - 1);
	t_deliver(m2, sizeof(m2) - 1);
	s = t_login();
	buf_init(&ref, 4096);
	buf_printf(&ref, "+OK %zu octets\r\n", V3);
	t_reference(m3, sizeof(m3) - 1, &ref);
	t_feed(s, "RETR 2\r\n", 8, true);
	is_mem(out.data, out.len, ref.data, ref.len,
	    "mbox RETR un-escapes From lines, byte by byte");
	buf_truncate(&ref, 0);
	/* mbox_append adds the missing final newline, and the index counts
	 * it (as CRLF), so the size is that of the bytes a reader gets:
	 * the same as for Maildir, where RETR adds the CRLF itself. */
	buf_printf(&ref, "+OK %zu octets\r\n", V2);
	t_reference(m2, sizeof(m2) - 1, &ref);
	t_feed(s, "RETR 3\r\n", 8, false);
	is_mem(out.data, out.len, ref.data, ref.len, "mbox RETR 3");
	buf_init(&before, 1 << 20);
	buf_init(&after, 1 << 20);
	t_read_inbox(&before);
	is_string(t_say(s, "DELE 1\r\nQUIT\r\n"),
	    "+OK message 1 deleted\r\n+OK Logging out, 1 messages deleted\r\n",
	    "mbox DELE 1 + QUIT");
	pop3_session_free(&s);
	t_read_inbox(&after);
	/* Message 1 is the first From_ line up to the second one. */
	second = memmem(before.data + 1, before.len - 1, "\nFrom ", 6);
	ok(second != NULL && after.len == before.len - (size_t)(second + 1 -
	    before.data) && memcmp(after.data, second + 1, after.len) == 0,
	    "mbox is the old one without message 1's bytes");
	s = t_login();
	o = t_say(s, "STAT\r\nUIDL 1\r\n");
	ok(strncmp(o, "+OK 2 ", 6) == 0, "two messages left");
	o = strstr(o, "\r\n+OK 1 ");
	ok(o != NULL && strncmp(o + 8 + 8, "00000002", 8) == 0,
	    "message 1 is now UID 2");
	is_string(t_say(s, "DELE 1\r\n"), "+OK message 1 deleted\r\n",
	    "DELE, then drop");
	pop3_session_free(&s);
	t_read_inbox(&before);
	is_mem(before.data, before.len, after.data, after.len,
	    "a dropped session deleted nothing from the mbox");
	buf_free(&before);
	buf_free(&after);
	buf_free(&ref);
}

/* ---- Streaming: whole small messages, pipelined RETRs held back ---- */

/* alice's mail at loc from now on (a fresh mailbox for each test). */
static void
t_use(const char *loc)
{
	free(alice.mail_location);
	alice.mail_location = xstrdup(loc);
}

/* "+OK <vsize> octets\r\n" and the converted message, into r. */
static void
t_retr_ref(const unsigned char *m, size_t len, struct buf *r)
{
	buf_printf(r, "+OK %zu octets\r\n", t_vsize(m, len));
	t_reference(m, len, r);
}

/*
 * TOP's reference, line by line: the header lines up to and including
 * the first empty one ("" or a lone CR), then at most lines body lines,
 * each dot-stuffed and ended with CRLF, then ".\r\n".
 */
static void
t_reference_top(const unsigned char *m, size_t len, unsigned long lines,
    struct buf *r)
{
	size_t pos = 0;
	unsigned long body = 0;
	bool in_body = false;

	buf_append_str(r, "+OK\r\n");
	while (pos < len) {
		const unsigned char *lf = memchr(m + pos, '\n', len - pos);
		size_t end = lf != NULL ? (size_t)(lf - m) : len, n = end - pos;
		bool cr = n > 0 && m[end - 1] == '\r';

		if (in_body && body++ >= lines)
			break;
		if (m[pos] == '.' && n > 0)
			buf_append_byte(r, '.');
		buf_append(r, m + pos, cr ? n - 1 : n);
		buf_append_str(r, "\r\n");
		pos = end + 1;
		if (!in_body && (n == 0 || (n == 1 && cr))) {
			in_body = true;
			if (lines == 0)
				break;
		}
	}
	buf_append_str(r, ".\r\n");
}

/* A message of about len bytes built to catch a conversion that loses
 * its place between reads: lines from 0 to 9,000 bytes, LF or CRLF,
 * leading dots, lone CRs and NULs, no final newline. */
static unsigned char *
t_random_msg(size_t len, size_t *len_r)
{
	unsigned char *m = xmalloc(len + 64);
	unsigned long x = 12345;
	size_t n = 0;

	n += (size_t)snprintf((char *)m, 64, "Subject: random\nX-A: b\n\n");
	while (n < len) {
		size_t l;

		x = x * 6364136223846793005UL + 1442695040888963407UL;
		l = (x >> 33) % 8 == 0 ? (x >> 20) % 9000 : (x >> 20) % 90;
		if (l > len - n)
			l = len - n;
		for (size_t i = 0; i < l; i++) {
			x = x * 6364136223846793005UL + 1442695040888963407UL;
			switch ((x >> 40) % 64) {
			case 0: m[n + i] = '\r'; break;
			case 1: m[n + i] = '\0'; break;
			case 2: m[n + i] = '.'; break;
			default: m[n + i] = (unsigned char)('a' + (x >> 50) % 26);
			}
		}
		if (l > 0 && (x >> 10) % 3 == 0)
			m[n] = '.';
		n += l;
		if (n < len && (x >> 12) % 2 == 0 && n + 1 < len) {
			m[n++] = '\r';
			m[n++] = '\n';
		} else if (n < len)
			m[n++] = '\n';
	}
	/* No final newline: the engine adds the CRLF. */
	if (n > 0 && m[n - 1] == '\n')
		m[n - 1] = 'z';
	*len_r = n;
	return m;
}

/* Sizes from the conversion at chunk and read boundaries. */
static void
test_convert(void)
{
	static const unsigned long tops[] = { 0, 1, 7, 1000, 100000 };
	struct pop3_session *s;
	unsigned char *m;
	size_t len;
	struct buf ref;
	char cmd[64];

	t_use("maildir:~/Convert");
	m = t_random_msg(400 * 1024, &len);
	t_deliver(m, len);
	s = t_login();
	buf_init(&ref, 4 << 20);
	t_retr_ref(m, len, &ref);
	max_write = 0;
	t_say(s, "RETR 1\r\n");
	is_mem(out.data, out.len, ref.data, ref.len,
	    "400 KB of long and short lines, CR, NUL, dots: RETR byte-exact");
	ok(max_write <= 2 * POP3_CHUNK + 64, "largest write %zu", max_write);
	for (size_t i = 0; i < sizeof(tops) / sizeof(tops[0]); i++) {
		buf_truncate(&ref, 0);
		t_reference_top(m, len, tops[i], &ref);
		snprintf(cmd, sizeof(cmd), "TOP 1 %lu\r\n", tops[i]);
		t_say(s, cmd);
		is_mem(out.data, out.len, ref.data, ref.len, "TOP 1 %lu",
		    tops[i]);
	}
	pop3_session_free(&s);
	buf_free(&ref);
	free(m);
	t_use("maildir:~/Maildir");
}

/* A message with CRLF lines of len bytes, which RETR sends unchanged. */
static unsigned char *
t_crlf_msg(size_t len)
{
	static const char hdr[] = "Subject: held\r\n\r\n";
	unsigned char *m = xmalloc(len);

	if (len < sizeof(hdr) + 2)
		bail("t_crlf_msg: %zu bytes", len);
	memcpy(m, hdr, sizeof(hdr) - 1);
	memset(m + sizeof(hdr) - 1, 'a', len - (sizeof(hdr) - 1) - 2);
	memcpy(m + len - 2, "\r\n", 2);
	return m;
}

/* The length of a CRLF message whose RETR answer, "+OK" line to ".",
 * is total bytes. */
static size_t
t_crlf_len_for(size_t total)
{
	char line[64];

	for (size_t len = total; len > 0; len--)
		if (len + (size_t)snprintf(line, sizeof(line),
		    "+OK %zu octets\r\n", len) + 3 == total)
			return len;
	bail("no message for %zu bytes", total);
	return 0;
}

/* Feed in at once, as loftd does after the output drained. */
static void
t_drained_input(struct pop3_session *s, const char *in)
{
	cur = s;
	pop3_session_output_ready(s);
	buf_truncate(&out, 0);
	writes = 0;
	if (pop3_session_input(s, (const unsigned char *)in, strlen(in)) !=
	    strlen(in))
		diag("input not all taken");
}

static void
test_pipeline(void)
{
	struct pop3_session *s;
	unsigned char *a, *b, *c, *d;
	size_t la = t_crlf_len_for(POP3_CHUNK - 1);
	size_t lb = t_crlf_len_for(POP3_CHUNK), lc = POP3_CHUNK - 1;
	size_t ld = POP3_CHUNK;
	struct buf ref;
	size_t n;

	t_use("maildir:~/Pipeline");
	a = t_crlf_msg(la);
	b = t_crlf_msg(lb);
	c = t_crlf_msg(lc);
	d = t_crlf_msg(ld);
	t_deliver(a, la);
	t_deliver(b, lb);
	t_deliver(m1, sizeof(m1) - 1);
	t_deliver(c, lc);
	t_deliver(d, ld);
	s = t_login();
	buf_init(&ref, 1 << 20);

	/* POP3_CHUNK - 1 bytes since the drain: the next command runs. */
	t_retr_ref(a, la, &ref);
	is_int((int)ref.len, POP3_CHUNK - 1, "answer A is POP3_CHUNK - 1");
	buf_append_str(&ref, "+OK\r\n");
	t_drained_input(s, "RETR 1\r\nNOOP\r\n");
	is_mem(out.data, out.len, ref.data, ref.len,
	    "RETR under POP3_CHUNK: whole, and NOOP answered at once");
	ok(!pop3_session_want_output(s), "nothing waits");
	is_int(writes, 3, "+OK line, message with its \".\", NOOP: 3 writes");

	/* POP3_CHUNK bytes: NOOP waits for the drain. */
	buf_truncate(&ref, 0);
	t_retr_ref(b, lb, &ref);
	is_int((int)ref.len, POP3_CHUNK, "answer B is POP3_CHUNK");
	t_drained_input(s, "RETR 2\r\nNOOP\r\n");
	is_mem(out.data, out.len, ref.data, ref.len,
	    "RETR of POP3_CHUNK: whole, NOOP not yet");
	ok(pop3_session_want_output(s), "the engine waits for the drain");
	buf_append_str(&ref, "+OK\r\n");
	pop3_session_output_ready(s);
	is_mem(out.data, out.len, ref.data, ref.len, "NOOP after the drain");
	ok(!pop3_session_want_output(s), "and nothing waits");

	/* Pipelined RETRs of small messages go out in one turn. */
	buf_truncate(&ref, 0);
	for (int i = 0; i < 3; i++)
		t_retr_ref(m1, sizeof(m1) - 1, &ref);
	t_drained_input(s, "RETR 3\r\nRETR 3\r\nRETR 3\r\n");
	is_mem(out.data, out.len, ref.data, ref.len,
	    "three pipelined RETRs answered in one go");
	ok(!pop3_session_want_output(s), "without waiting");
	is_int(writes, 6, "two writes each");

	/* A message whose conversion fills exactly one chunk waits for
	 * its "."; one byte less does not. */
	buf_truncate(&ref, 0);
	t_retr_ref(c, lc, &ref);
	t_drained_input(s, "RETR 4\r\n");
	is_mem(out.data, out.len, ref.data, ref.len,
	    "POP3_CHUNK - 1 bytes of message: done in one call");
	ok(!pop3_session_want_output(s), "POP3_CHUNK - 1: not streaming");
	buf_truncate(&ref, 0);
	t_retr_ref(d, ld, &ref);
	t_drained_input(s, "RETR 5\r\n");
	n = out.len;
	ok(pop3_session_want_output(s), "POP3_CHUNK bytes: streaming");
	ok(n == ref.len - 3, "all but the \".\" line sent (%zu of %zu)", n,
	    ref.len);
	pop3_session_output_ready(s);
	is_mem(out.data, out.len, ref.data, ref.len,
	    "POP3_CHUNK bytes: \".\" after the drain");
	ok(!pop3_session_want_output(s), "done");
	pop3_session_free(&s);

	/* Before login nothing calls output_ready (the login process):
	 * nothing is held back there, however much is answered. */
	s = t_new(true, false);
	buf_truncate(&ref, 0);
	for (int i = 0; i < 400; i++)
		buf_append_str(&ref, "CAPA\r\n");
	buf_truncate(&out, 0);
	pop3_session_input(s, ref.data, ref.len);
	n = 0;
	for (const char *p = buf_cstr(&out);
	    (p = strstr(p, "+OK Capability")) != NULL; p++)
		n++;
	ok(n == 400 && out.len > POP3_CHUNK,
	    "400 pipelined CAPA answered before login (%zu, %zu bytes)", n,
	    out.len);
	ok(!pop3_session_want_output(s), "nothing waits before login");
	pop3_session_free(&s);

	buf_free(&ref);
	free(a);
	free(b);
	free(c);
	free(d);
	t_use("maildir:~/Maildir");
}

/* ---- Sizes: estimates until STAT, LIST, RETR or TOP ---- */

/* A Maildir at ~/dir with one file another program left in new/, which
 * the login adopts by name (its size then counts LF as one byte). */
static void
t_lazy_box(const char *dir, const char *msg)
{
	char path[PATH_MAX + 64];
	FILE *fp;

	for (int i = 0; i < 4; i++) {
		static const char *const sub[] = { "", "/new", "/cur", "/tmp" };

		snprintf(path, sizeof(path), "%s/%s%s", top, dir, sub[i]);
		if (mkdir(path, 0700) < 0)
			bail("mkdir %s", path);
	}
	snprintf(path, sizeof(path), "%s/%s/new/1700000000.M1P1.other", top,
	    dir);
	if ((fp = fopen(path, "w")) == NULL || fputs(msg, fp) == EOF ||
	    fclose(fp) != 0)
		bail("cannot write %s", path);
	snprintf(path, sizeof(path), "maildir:~/%s", dir);
	t_use(path);
}

/* An empty regular file at path. */
static void
t_lazy_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);

	if (fd < 0)
		bail("cannot create %s", path);
	close(fd);
}

/* RSET's answer, which reports the sizes as they are now. */
static const char *
t_rset_says(size_t size)
{
	static char line[128];

	snprintf(line, sizeof(line),
	    "+OK maildrop has 1 messages (%zu octets)\r\n", size);
	return line;
}

static void
test_sizes(void)
{
	static const char msg[] = "Subject: lazy\n\nbody\n";
	static const char *const need[] = {
		"STAT", "LIST", "LIST 1", "RETR 1", "TOP 1 0"
	};
	size_t est = sizeof(msg) - 1;
	size_t exact = t_vsize((const unsigned char *)msg, est);
	struct pop3_session *s;
	struct pop3_stats st;
	char dir[32], cmd[32], path[PATH_MAX + 64], aside[PATH_MAX + 64];

	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
		snprintf(dir, sizeof(dir), "Lazy%zu", i);
		t_lazy_box(dir, msg);
		s = t_login();
		is_string(t_say(s, "RSET\r\n"), t_rset_says(est),
		    "%s: an estimate before", need[i]);
		snprintf(cmd, sizeof(cmd), "%s\r\n", need[i]);
		ok(strncmp(t_say(s, cmd), "+OK", 3) == 0, "%s answers",
		    need[i]);
		is_string(t_say(s, "RSET\r\n"), t_rset_says(exact),
		    "%s made the sizes exact", need[i]);
		pop3_session_free(&s);
	}

	t_lazy_box("LazyNot", msg);
	s = t_login();
	t_say(s, "UIDL\r\nUIDL 1\r\nNOOP\r\nRSET\r\nDELE 1\r\n");
	is_string(t_say(s, "RSET\r\n"), t_rset_says(est),
	    "UIDL, NOOP, RSET, DELE leave the estimate");
	t_say(s, "DELE 1\r\nQUIT\r\n");
	pop3_session_stats(s, &st);
	ok(st.dele == 1 && st.dele_bytes == est,
	    "QUIT counts the estimate: it did not ask either (%llu)",
	    (unsigned long long)st.dele_bytes);
	pop3_session_free(&s);

	/* The index cannot be opened again after an idle release (a file
	 * where its directory was): what needs sizes fails, the rest not,
	 * and a later call tries again. */
	t_lazy_box("LazyFail", msg);
	s = t_login();
	is_string(t_say(s, "NOOP\r\n"), "+OK\r\n", "NOOP scans the mailbox");
	pop3_session_idle(s);
	snprintf(path, sizeof(path), "%s/LazyFail/loft-index", top);
	snprintf(aside, sizeof(aside), "%s/LazyFail/loft-index.aside", top);
	if (rename(path, aside) < 0)
		bail("rename %s", path);
	t_lazy_file(path);
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
		snprintf(cmd, sizeof(cmd), "%s\r\n", need[i]);
		is_string(t_say(s, cmd),
		    "-ERR [SYS/TEMP] Cannot read the mailbox\r\n",
		    "%s without an index: -ERR [SYS/TEMP]", need[i]);
	}
	ok(strncmp(t_say(s, "UIDL 1\r\n"), "+OK 1 ", 6) == 0,
	    "UIDL still answers");
	snprintf(path, sizeof(path), "+OK message 1 deleted\r\n%s+OK\r\n",
	    t_rset_says(est));
	is_string(t_say(s, "DELE 1\r\nRSET\r\nNOOP\r\n"), path,
	    "DELE, RSET, NOOP still answer");
	snprintf(path, sizeof(path), "%s/LazyFail/loft-index", top);
	if (unlink(path) < 0 || rename(aside, path) < 0)
		bail("cannot put the index back");
	snprintf(cmd, sizeof(cmd), "+OK 1 %zu\r\n", exact);
	is_string(t_say(s, "STAT\r\n"), cmd,
	    "the index back: STAT tries again and is exact");
	pop3_session_free(&s);

	/* The scan at the first command fails: the session ends there,
	 * having deleted nothing. */
	t_lazy_box("LazyScan", msg);
	s = t_login();
	pop3_session_idle(s);
	snprintf(path, sizeof(path), "%s/LazyScan/loft-index", top);
	snprintf(aside, sizeof(aside), "%s/LazyScan/loft-index.aside", top);
	if (rename(path, aside) < 0)
		bail("rename %s", path);
	t_lazy_file(path);
	is_string(t_say(s, "UIDL\r\nSTAT\r\n"),
	    "-ERR [SYS/TEMP] Cannot read mailbox\r\n",
	    "a scan that fails at the first command ends the session");
	is_int(pop3_session_state(s), POP3_STATE_CLOSED, "closed");
	pop3_session_free(&s);
	t_use("maildir:~/Maildir");
}

/* A session with the given policy, logged in as alice; its answer to
 * the login in *said. */
static struct pop3_session *
t_login_policy(unsigned delay, bool expire_now, const char **said)
{
	struct pop3_settings set = t_settings(true, false, 0);
	struct pop3_session *s;

	set.login_delay = delay;
	set.expire_now = expire_now;
	s = pop3_session_new(&set, &cbs, NULL);
	cur = s;
	pop3_session_greet(s);
	*said = t_say(s, "USER alice\r\nPASS secret word\r\n");
	return s;
}

/* pop3_login_delay and pop3_expire: LOGIN-DELAY is enforced from the
 * time of the last login, EXPIRE 0 deletes what RETR sent at QUIT and
 * only then. */
static void
test_policy(void)
{
	static const char msg[] = "Subject: policy\n\nbody\n";
	struct pop3_session *s;
	char path[PATH_MAX + 64];
	const char *said;
	FILE *fp;

	t_lazy_box("Policy", msg);
	s = t_login_policy(3600, true, &said);
	is_string(said, "+OK\r\n+OK Logged in\r\n",
	    "delay: the first login passes");
	ok(strstr(t_say(s, "CAPA\r\n"), "\r\nEXPIRE 0\r\nLOGIN-DELAY "
	    "3600\r\n") != NULL, "CAPA: EXPIRE 0, LOGIN-DELAY 3600");
	ok(strncmp(t_say(s, "RETR 1\r\n"), "+OK ", 4) == 0, "RETR 1");
	pop3_session_free(&s);	/* dropped: no QUIT */

	s = t_login_policy(3600, true, &said);
	is_string(said, "+OK\r\n-ERR [LOGIN-DELAY] Logged in less than 3600 "
	    "seconds ago\r\n", "delay: a second login at once is refused");
	pop3_session_free(&s);
	s = t_login_policy(0, false, &said);
	is_string(said, "+OK\r\n+OK Logged in\r\n", "no delay: it passes");
	is_string(t_say(s, "STAT\r\n"), "+OK 1 25\r\n",
	    "the dropped session deleted nothing");
	pop3_session_free(&s);

	/* The last login an hour and more ago. */
	snprintf(path, sizeof(path), "%s/Policy/loft-index/pop3.lock", top);
	if ((fp = fopen(path, "w")) == NULL || fputs("1\n", fp) == EOF ||
	    fclose(fp) != 0)
		bail("cannot write %s", path);
	s = t_login_policy(3600, true, &said);
	is_string(said, "+OK\r\n+OK Logged in\r\n",
	    "delay: a login long after the last passes");
	t_say(s, "RETR 1\r\nRSET\r\n");
	is_string(t_say(s, "QUIT\r\n"), "+OK Logging out, 1 messages "
	    "deleted\r\n", "EXPIRE 0: QUIT deletes what RETR sent, RSET "
	    "or not");
	pop3_session_free(&s);
	s = t_login_policy(0, false, &said);
	is_string(t_say(s, "STAT\r\n"), "+OK 0 0\r\n", "it is gone");
	pop3_session_free(&s);
	t_use("maildir:~/Maildir");
}

/*
 * mbox: a chunk read under the lock for one RETR serves the next ones
 * while the file is unchanged (even while another program holds the
 * dotlock: those bytes were read under it), and not once it changed.
 */
static void
test_mbox_ahead(void)
{
	char path[PATH_MAX + 32];
	unsigned char m3b[sizeof(m3)];
	struct pop3_session *s;
	struct buf ref, box;
	unsigned char *at;
	int fd;

	t_use("mbox:~/mail2:INBOX=~/inbox2");
	t_deliver(m1, sizeof(m1) - 1);
	t_deliver(m3, sizeof(m3) - 1);
	t_deliver(m2, sizeof(m2) - 1);
	/* Only a file left alone for a while is read ahead. */
	sleep(3);
	s = t_login();
	buf_init(&ref, 1 << 16);
	t_retr_ref(m1, sizeof(m1) - 1, &ref);
	t_say(s, "RETR 1\r\n");
	is_mem(out.data, out.len, ref.data, ref.len, "mbox RETR 1");

	snprintf(path, sizeof(path), "%s/inbox2.lock", top);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600)) < 0)
		bail("cannot create %s", path);
	close(fd);
	buf_truncate(&ref, 0);
	t_retr_ref(m3, sizeof(m3) - 1, &ref);
	t_retr_ref(m2, sizeof(m2) - 1, &ref);
	t_say(s, "RETR 2\r\nRETR 3\r\n");
	is_mem(out.data, out.len, ref.data, ref.len,
	    "RETR 2 and 3 while another program holds the dotlock: from "
	    "what RETR 1 read under the lock");
	unlink(path);

	/* Changed in place, same size (as mutt rewrites): read again. */
	buf_init(&box, 1 << 16);
	snprintf(path, sizeof(path), "%s/inbox2", top);
	t_read_file(path, &box);
	at = memmem(box.data, box.len, "\nl1\n", 4);
	if (at == NULL || (fd = open(path, O_WRONLY)) < 0 ||
	    pwrite(fd, "L", 1, at + 1 - box.data) != 1 || close(fd) < 0)
		bail("cannot change %s", path);
	memcpy(m3b, m3, sizeof(m3));
	at = memmem(m3b, sizeof(m3b) - 1, "\nl1\n", 4);
	at[1] = 'L';
	buf_truncate(&ref, 0);
	t_retr_ref(m3b, sizeof(m3b) - 1, &ref);
	t_say(s, "RETR 2\r\n");
	is_mem(out.data, out.len, ref.data, ref.len,
	    "the mbox changed: RETR 2 reads the new bytes");
	pop3_session_free(&s);
	buf_free(&box);
	buf_free(&ref);
	t_use("maildir:~/Maildir");
}

/* ---- Authentication answered later ---- */

static void
test_async_plain(bool bytewise)
{
	struct pop3_session *s;
	bool wiped = true;
	char exp[128];

	s = t_new(true, false);
	pending_mode = true;
	plain_calls = 0;
	is_string(t_fs(s, "USER alice\r\nPASS secret word\r\n", bytewise),
	    "+OK\r\n", "pending PASS: nothing answered");
	is_int(plain_calls, 1, "check_plain called once");
	is_string(got_pass, "secret word", "... with the password");
	/* Nothing was queued after PASS, so its buffer is still there. */
	for (size_t i = 0; i < strlen("secret word"); i++)
		wiped = wiped && got_pass_ptr[i] == '\0';
	ok(wiped, "password wiped after a PENDING return");
	is_string(t_fs(s, "STAT\r\nNOOP\r\n", bytewise), "",
	    "pipelined commands wait while pending");
	is_int(pop3_session_state(s), POP3_STATE_AUTHORIZATION,
	    "still AUTHORIZATION");
	pending_mode = false;
	snprintf(exp, sizeof(exp), "+OK Logged in\r\n+OK 3 %zu\r\n+OK\r\n",
	    V1 + V2 + V3);
	is_string(t_reply(s, POP3_AUTH_OK, NULL, NULL), exp,
	    "reply OK: logged in, queued STAT and NOOP run");
	is_string(authed_user, "alice", "authenticated as the USER name");
	is_int(plain_calls, 1, "no second check");
	pop3_session_free(&s);

	s = t_new(true, false);
	pending_mode = true;
	is_string(t_fs(s, "USER alice\r\nPASS wrong\r\nUSER alice\r\n",
	    bytewise), "+OK\r\n", "pending again");
	is_string(t_reply(s, POP3_AUTH_FAIL, NULL, "alice"),
	    "-ERR [AUTH] Authentication failed\r\n+OK\r\n",
	    "reply FAIL, then the queued USER runs");
	is_string(t_fs(s, "PASS temp\r\n", bytewise), "", "pending");
	is_string(t_reply(s, POP3_AUTH_TEMPFAIL, NULL, NULL),
	    "-ERR [SYS/TEMP] Temporary authentication failure\r\n",
	    "reply TEMPFAIL");
	is_string(t_fs(s, "USER alice\r\nPASS x\r\n", bytewise), "+OK\r\n",
	    "pending");
	is_string(t_reply(s, POP3_AUTH_CONTINUE, "who?", NULL),
	    "-ERR [AUTH] Authentication failed\r\n",
	    "reply CONTINUE to USER/PASS fails, as from check_plain");
	is_string(t_fs(s, "USER ALICE\r\nPASS x\r\nNOOP\r\n", bytewise),
	    "+OK\r\n", "pending");
	pending_mode = false;
	is_string(t_reply(s, POP3_AUTH_OK, NULL, "alice"),
	    "+OK Logged in\r\n+OK\r\n", "reply OK with the canonical name");
	is_string(authed_user, "alice", "authenticated as that name");
	pop3_session_free(&s);

	/* Free while pending: no callback, nothing written. */
	s = t_new(true, false);
	pending_mode = true;
	t_fs(s, "USER alice\r\nPASS x\r\nNOOP\r\n", bytewise);
	buf_truncate(&out, 0);
	auth_calls = 0;
	pop3_session_free(&s);
	ok(s == NULL && out.len == 0 && auth_calls == 0,
	    "free while a plain check is pending");
	pending_mode = false;
}

static void
test_async_sasl(bool bytewise)
{
	struct pop3_session *s;
	int aborts_before;

	s = t_new(true, false);
	pending_mode = true;
	sasl_calls = 0;
	is_string(t_fs(s, "AUTH X-TWO\r\nYWxpY2U=\r\nNOOP\r\n", bytewise), "",
	    "pending AUTH: nothing answered, response queued");
	ok(sasl_calls == 1 && got_first, "first step asked once");
	is_string(t_reply(s, POP3_AUTH_CONTINUE, "who?", NULL),
	    "+ d2hvPw==\r\n", "reply CONTINUE sends the challenge");
	ok(sasl_calls == 2 && !got_first, "queued line ran as the response");
	is_mem(got_resp, got_resp_len, "alice", 5, "... decoded");
	pending_mode = false;
	is_string(t_reply(s, POP3_AUTH_OK, NULL, "alice"),
	    "+OK Logged in\r\n+OK\r\n", "reply OK: logged in, NOOP runs");
	pop3_session_free(&s);

	s = t_new(true, false);
	pending_mode = true;
	aborts_before = aborts;
	is_string(t_fs(s, "AUTH PLAIN AGFsaWNlAHNlY3JldCB3b3Jk\r\nCAPA\r\n",
	    bytewise), "", "pending AUTH PLAIN with initial response");
	is_mem(got_resp, got_resp_len, "\0alice\0secret word", 18,
	    "initial response decoded");
	pending_mode = false;
	ok(strncmp(t_reply(s, POP3_AUTH_FAIL, NULL, NULL),
	    "-ERR [AUTH] Authentication failed\r\n+OK Capability list", 54)
	    == 0, "reply FAIL; the next line is a command again");
	is_int(aborts, aborts_before, "no sasl_abort after a FAIL");

	pending_mode = true;
	is_string(t_fs(s, "AUTH X-TWO\r\n", bytewise), "", "pending");
	is_string(t_reply(s, POP3_AUTH_CONTINUE, "who?", NULL),
	    "+ d2hvPw==\r\n", "challenge");
	is_string(t_fs(s, "*\r\n", bytewise), "-ERR Authentication cancelled\r\n",
	    "the client cancels after a later challenge");
	is_int(aborts, aborts_before + 1, "sasl_abort on that cancel");

	is_string(t_fs(s, "AUTH X-TWO\r\n", bytewise), "", "pending");
	buf_truncate(&out, 0);
	pop3_session_free(&s);
	ok(out.len == 0 && aborts == aborts_before + 2,
	    "free in a pending SASL exchange: only sasl_abort");
	pending_mode = false;
}

/* ---- Hand-over: login engine -> export -> mail engine ---- */

/* Adds what the login engine wrote; *x gets the export. The auth answer
 * comes later (async, like loftd) or at once; fed byte by byte or not;
 * exported from inside cb->authenticated (async only) or after. */
static void
t_login_side(const struct buf *script, size_t line_max, bool async,
    bool bytewise, bool in_cb, struct buf *said, struct buf *x)
{
	struct pop3_session *s = t_new_max(true, false, line_max);

	pending_mode = async;
	defer_login = true;
	auth_calls = 0;
	t_feed(s, (const char *)script->data, script->len, bytewise);
	buf_append(said, out.data, out.len);
	if (async) {
		export_to = in_cb ? x : NULL;
		t_reply(s, POP3_AUTH_OK, NULL, "alice");
		export_to = NULL;
		buf_append(said, out.data, out.len);
	}
	ok(auth_calls == 1 && strcmp(authed_user, "alice") == 0 &&
	    pop3_session_state(s) == POP3_STATE_AUTHORIZATION,
	    "login side: authenticated once, waits for login");
	if (!in_cb)
		pop3_session_export_pending(s, x);
	pending_mode = false;
	defer_login = false;
	pop3_session_free(&s);
}

/* Adds what a mail engine writes given x, a login and then rest. */
static void
t_mail_side(const struct buf *x, size_t line_max, const char *rest,
    struct buf *said)
{
	struct pop3_settings set = t_settings(true, false, line_max);
	struct pop3_session *s;

	buf_truncate(&out, 0);
	s = pop3_session_new_authenticated(&set, &cbs, NULL, "alice");
	cur = s;
	if (out.len != 0)
		diag("the mail engine wrote at once: %s", buf_cstr(&out));
	t_feed(s, (const char *)x->data, x->len, true);
	buf_append(said, out.data, out.len);
	buf_truncate(&out, 0);
	pop3_session_login(s, &alice);
	while (pop3_session_want_output(s))
		pop3_session_output_ready(s);
	buf_append(said, out.data, out.len);
	t_fs(s, rest, true);
	buf_append(said, out.data, out.len);
	pop3_session_free(&s);
}

/* What one engine says to script and then rest. */
static void
t_one_engine(const struct buf *script, size_t line_max, const char *rest,
    struct buf *said)
{
	struct pop3_session *s = t_new_max(true, false, line_max);

	t_feed(s, (const char *)script->data, script->len, true);
	buf_append(said, out.data, out.len);
	t_fs(s, rest, true);
	buf_append(said, out.data, out.len);
	pop3_session_free(&s);
}

/* The whole round trip: export must be want (if given), and the two
 * engines must say what one does. */
static void
t_round_trip(const struct buf *script, size_t line_max, const char *rest,
    const struct buf *want, const char *what)
{
	struct buf one, two, x;

	buf_init(&one, 1 << 20);
	buf_init(&two, 1 << 20);
	buf_init(&x, POP3_EXPORT_MAX(line_max != 0 ? line_max :
	    POP3_LINE_MAX));
	t_one_engine(script, line_max, rest, &one);
	for (int mode = 0; mode < 4; mode++) {
		bool async = mode != 1, bytewise = mode != 2, in_cb = mode == 3;
		char how[64];

		snprintf(how, sizeof(how), "%s, %s%s", async ? "async" : "sync",
		    bytewise ? "byte by byte" : "whole",
		    in_cb ? ", export in the callback" : "");
		buf_truncate(&two, 0);
		buf_truncate(&x, 0);
		t_login_side(script, line_max, async, bytewise, in_cb, &two,
		    &x);
		if (want != NULL)
			is_mem(x.data, x.len, want->data, want->len,
			    "%s (%s): exported bytes", what, how);
		t_mail_side(&x, line_max, rest, &two);
		is_mem(two.data, two.len, one.data, one.len,
		    "%s (%s): two engines answer as one", what, how);
	}
	buf_free(&one);
	buf_free(&two);
	buf_free(&x);
}

static void
test_handover(void)
{
	struct pop3_session *s;
	struct buf script, want, x;
	const char *login = "USER alice\r\nPASS secret word\r\n";

	buf_init(&script, 1 << 16);
	buf_init(&want, 1 << 16);
	buf_init(&x, POP3_EXPORT_MAX(POP3_LINE_MAX));

	/* The brief's example: lines, an over-long line, a partial. */
	buf_append_str(&script, login);
	buf_append_str(&script, "STAT\r\nLIST\r\n");
	t_fill(&script, 'x', 300);
	buf_append_str(&script, "\r\nNO");
	buf_append_str(&want, "STAT\r\nLIST\r\n");
	t_fill(&want, 'X', POP3_LINE_MAX + 1);
	buf_append_str(&want, "\r\nNO");
	t_round_trip(&script, 0, "OP\r\nQUIT\r\n", &want, "lines, long, partial");

	/* Export wipes: a second one is empty. */
	s = t_new(true, false);
	defer_login = true;
	t_say(s, "USER alice\r\nPASS secret word\r\nNOOP\r\nNO");
	pop3_session_export_pending(s, &x);
	is_mem(x.data, x.len, "NOOP\r\nNO", 8, "export");
	buf_truncate(&x, 0);
	pop3_session_export_pending(s, &x);
	is_int(x.len, 0, "a second export is empty");
	defer_login = false;
	pop3_session_free(&s);

	/* A partial line being skipped as over-long. */
	buf_truncate(&script, 0);
	buf_truncate(&want, 0);
	buf_append_str(&script, login);
	buf_append_str(&script, "NOOP\r\n");
	t_fill(&script, 'y', 300);
	buf_append_str(&want, "NOOP\r\n");
	t_fill(&want, 'X', POP3_LINE_MAX + 1);
	t_round_trip(&script, 0, "yyy\r\nNOOP\r\n", &want,
	    "partial over-long line");

	/* Bare LF at the limit stays bare; NUL bytes travel. */
	buf_truncate(&script, 0);
	buf_truncate(&want, 0);
	buf_append_str(&script, login);
	buf_append_str(&script, "NOOP\n");
	buf_append_str(&script, "NOOP ");
	t_fill(&script, 'z', POP3_LINE_MAX - 6);
	buf_append_str(&script, "\n");
	buf_append(&script, "QU\0T\r\n", 6);
	buf_append_str(&want, "NOOP\r\nNOOP ");
	t_fill(&want, 'z', POP3_LINE_MAX - 6);
	buf_append_str(&want, "\n");
	buf_append(&want, "QU\0T\r\n", 6);
	t_round_trip(&script, 0, "NOOP\r\n", &want,
	    "bare LF at the limit, NUL byte");

	/* Twelve over-long lines: the next engine closes at the tenth. */
	buf_truncate(&script, 0);
	buf_truncate(&want, 0);
	buf_append_str(&script, login);
	for (int i = 0; i < 12; i++) {
		t_fill(&script, 'x', 300);
		buf_append_str(&script, "\r\n");
	}
	buf_append_str(&script, "NOOP\r\npart");
	for (int i = 0; i < POP3_BAD_MAX; i++) {
		t_fill(&want, 'X', POP3_LINE_MAX + 1);
		buf_append_str(&want, "\r\n");
	}
	t_round_trip(&script, 0, "", &want, "over-long lines up to the tenth");

	/* A configured line limit: 1000 octets pass, 1001 do not. */
	buf_truncate(&script, 0);
	buf_truncate(&want, 0);
	buf_append_str(&script, login);
	buf_append_str(&script, "NOOP ");
	t_fill(&script, 'a', 1000 - 7);
	buf_append_str(&script, "\r\nNOOP ");
	t_fill(&script, 'b', 1000 - 6);
	buf_append_str(&script, "\r\nNOOP\r\n");
	buf_append_str(&want, "NOOP ");
	t_fill(&want, 'a', 1000 - 7);
	buf_append_str(&want, "\r\n");
	t_fill(&want, 'X', 1001);
	buf_append_str(&want, "\r\nNOOP\r\n");
	t_round_trip(&script, 1000, "QUIT\r\n", &want, "line_max 1000");

	/* Logged in by SASL. */
	buf_truncate(&script, 0);
	buf_append_str(&script, "AUTH PLAIN AGFsaWNlAHNlY3JldCB3b3Jk\r\n"
	    "STAT\r\nUIDL 2\r\n");
	t_round_trip(&script, 0, "QUIT\r\n", NULL, "AUTH PLAIN");

	buf_free(&script);
	buf_free(&want);
	buf_free(&x);
}

/* ---- A configured line limit ---- */

static void
t_b64(const unsigned char *in, size_t len, struct buf *b)
{
	static const char a[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	for (size_t i = 0; i < len; i += 3) {
		unsigned long v = (unsigned long)in[i] << 16;

		if (i + 1 < len)
			v |= (unsigned long)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		buf_append_byte(b, (unsigned char)a[v >> 18]);
		buf_append_byte(b, (unsigned char)a[(v >> 12) & 63]);
		buf_append_byte(b, i + 1 < len ? (unsigned char)a[(v >> 6) & 63]
		    : '=');
		buf_append_byte(b, i + 2 < len ? (unsigned char)a[v & 63] : '=');
	}
}

/* "NOOP " padded so that the line with its terminator is n octets. */
static void
t_noop_line(struct buf *b, size_t n, const char *end)
{
	buf_truncate(b, 0);
	buf_append_str(b, "NOOP ");
	t_fill(b, 'x', n - 5 - strlen(end));
	buf_append_str(b, end);
}

static void
test_line_max(size_t n, bool bytewise)
{
	struct pop3_session *s = t_new_max(true, false, n);
	struct buf l;
	size_t k;
	const char *noop = "NOOP\r\n";
	const char *notallowed = "-ERR Command not allowed in this state\r\n";

	buf_init(&l, n + 64);
	t_noop_line(&l, n, "\r\n");
	is_string(t_feed(s, (const char *)l.data, l.len, bytewise), notallowed,
	    "line_max %zu: a line of %zu octets is parsed", n, n);
	t_noop_line(&l, n + 1, "\r\n");
	is_string(t_feed(s, (const char *)l.data, l.len, bytewise),
	    "-ERR Line too long\r\n", "line_max %zu: %zu octets refused", n,
	    n + 1);
	t_noop_line(&l, n, "\n");
	is_string(t_feed(s, (const char *)l.data, l.len, bytewise), notallowed,
	    "line_max %zu: %zu octets ending in bare LF", n, n);
	t_noop_line(&l, n + 1, "\n");
	is_string(t_feed(s, (const char *)l.data, l.len, bytewise),
	    "-ERR Line too long\r\n", "line_max %zu: %zu with bare LF refused",
	    n, n + 1);
	buf_truncate(&l, 0);
	t_fill(&l, 'y', n + 10);
	is_string(t_feed(s, (const char *)l.data, l.len, bytewise), "",
	    "line_max %zu: long partial line, nothing yet", n);
	is_string(t_say(s, "\r\nNOOP\r\n"), "-ERR Line too long\r\n"
	    "-ERR Command not allowed in this state\r\n",
	    "line_max %zu: excess skipped, next line works", n);
	pop3_session_free(&s);

	/* Waiting for the auth answer, one longest line fits the queue. */
	s = t_new_max(true, false, n);
	pending_mode = true;
	t_say(s, "USER alice\r\nPASS x\r\n");
	t_noop_line(&l, n, "\r\n");
	is_int(pop3_session_input(s, l.data, l.len), l.len,
	    "line_max %zu: a longest line is queued while pending", n);
	/* Only a longest line of more than the usual queue fills it. */
	k = pop3_session_input(s, (const unsigned char *)noop, 6);
	is_int(k, n + 10 > POP3_QUEUE_MAX ? 5 : 6,
	    "line_max %zu: the next line queued unless the queue is full", n);
	pending_mode = false;
	buf_truncate(&l, 0);
	buf_append_str(&l, "-ERR [AUTH] Authentication failed\r\n");
	buf_append_str(&l, notallowed);
	if (k == 6)
		buf_append_str(&l, notallowed);
	is_string(t_reply(s, POP3_AUTH_FAIL, NULL, NULL), buf_cstr(&l),
	    "line_max %zu: the queued lines run after the reply", n);
	is_string(t_feed(s, noop + k, 6 - k, false),
	    k == 6 ? "" : notallowed, "line_max %zu: the rest offered again",
	    n);
	pop3_session_free(&s);
	buf_free(&l);
}

/* SASL lines at a configured limit: decoded beyond 255 octets. */
static void
test_sasl_line_max(void)
{
	const size_t n = 1002;
	struct pop3_session *s = t_new_max(true, false, n);
	unsigned char data[750];
	struct buf l;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 7 + 3);
	buf_init(&l, 2048);
	t_b64(data, sizeof(data), &l);
	buf_append_str(&l, "\r\n");
	is_int(l.len, n, "the response line is %zu octets", n);
	is_string(t_say(s, "AUTH X-TWO\r\n"), "+ d2hvPw==\r\n", "challenge");
	is_string(t_feed(s, (const char *)l.data, l.len, true),
	    "-ERR [AUTH] Authentication failed\r\n",
	    "a response line of line_max octets is taken");
	is_mem(got_resp, got_resp_len, data, sizeof(data),
	    "... and decoded (750 bytes)");
	is_string(t_say(s, "AUTH X-TWO\r\n"), "+ d2hvPw==\r\n", "challenge");
	buf_truncate(&l, l.len - 2);
	buf_append_str(&l, "A\r\n");
	is_string(t_feed(s, (const char *)l.data, l.len, true),
	    "-ERR Line too long\r\n", "a response of line_max + 1 is not");
	is_string(t_say(s, "*\r\n"), "-ERR Authentication cancelled\r\n",
	    "the exchange went on");
	buf_truncate(&l, 0);
	buf_append_str(&l, "AUTH X-TWO ");
	t_b64(data, 741, &l);
	buf_append_str(&l, "\n");
	is_int(l.len, n - 2, "initial response line of %zu octets", n - 2);
	is_string(t_say(s, buf_cstr(&l)), "+ d2hvPw==\r\n",
	    "a long initial response is taken");
	is_mem(got_resp, got_resp_len, data, 741, "... and decoded");
	t_say(s, "*\r\n");
	pop3_session_free(&s);
	buf_free(&l);
}

/* ---- Statistics ---- */

static void
t_stats_is(struct pop3_session *s, unsigned retr, size_t retr_bytes,
    unsigned top_n, size_t top_bytes, unsigned dele, size_t dele_bytes,
    bool quit, const char *what)
{
	struct pop3_stats st;

	pop3_session_stats(s, &st);
	ok(st.retr == retr && st.retr_bytes == retr_bytes && st.top == top_n &&
	    st.top_bytes == top_bytes && st.dele == dele &&
	    st.dele_bytes == dele_bytes && st.quit == quit, "stats: %s", what);
	if (st.retr != retr || st.retr_bytes != retr_bytes ||
	    st.top != top_n || st.top_bytes != top_bytes ||
	    st.dele != dele || st.dele_bytes != dele_bytes || st.quit != quit)
		diag("retr %u/%llu top %u/%llu dele %u/%llu quit %d",
		    st.retr, (unsigned long long)st.retr_bytes, st.top,
		    (unsigned long long)st.top_bytes, st.dele,
		    (unsigned long long)st.dele_bytes, st.quit);
}

static void
test_stats(void)
{
	struct pop3_session *s;
	struct pop3_stats st;
	struct buf ref;
	size_t r1, r2, t3;
	char path[] = "/tmp/loft-pop3-log-XXXXXX", logged[4096];
	int fd, saved;
	ssize_t n;

	s = t_new(true, false);
	pop3_session_stats(s, &st);
	ok(st.messages == 0 && st.size == 0 && st.retr == 0 && !st.quit,
	    "stats before login: zero");
	is_string(t_say(s, "QUIT\r\n"), "+OK Logging out\r\n", "QUIT");
	pop3_session_stats(s, &st);
	ok(!st.quit, "QUIT in AUTHORIZATION is not counted");
	pop3_session_free(&s);

	/* The login line is the daemon's now. */
	if ((fd = mkstemp(path)) < 0)
		bail("mkstemp");
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	s = t_login();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, logged, sizeof(logged) - 1, 0);
	logged[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	ok(strstr(logged, "login") == NULL, "login not logged by the engine");

	pop3_session_stats(s, &st);
	ok(st.messages == 0 && st.size == 0,
	    "no snapshot at login: the first command takes it");
	t_say(s, "NOOP\r\n");
	pop3_session_stats(s, &st);
	ok(st.messages == 3 && st.size == V1 + V2 + V3,
	    "messages and size of the snapshot");
	t_stats_is(s, 0, 0, 0, 0, 0, 0, false, "nothing yet");
	buf_init(&ref, 4096);
	t_reference(m1, sizeof(m1) - 1, &ref);
	r1 = ref.len - 3;
	buf_truncate(&ref, 0);
	t_reference(m2, sizeof(m2) - 1, &ref);
	r2 = ref.len - 3;
	buf_free(&ref);
	t3 = strlen("Subject: three\r\n\r\nFrom here\r\n>From there\r\n");
	t_fs(s, "RETR 1\r\n", true);
	t_stats_is(s, 1, r1, 0, 0, 0, 0, false, "RETR 1");
	t_fs(s, "RETR 2\r\nRETR 9\r\nRETR x\r\nLIST\r\nUIDL\r\n", false);
	t_stats_is(s, 2, r1 + r2, 0, 0, 0, 0, false,
	    "RETR 2 (final CRLF added counts); failed RETR, LIST, UIDL not");
	t_fs(s, "TOP 3 2\r\nTOP 9 1\r\n", false);
	t_stats_is(s, 2, r1 + r2, 1, t3, 0, 0, false, "TOP 3 2");
	t_say(s, "DELE 2\r\n");
	t_stats_is(s, 2, r1 + r2, 1, t3, 1, V2, false, "DELE 2, now");
	t_say(s, "RSET\r\nDELE 3\r\nDELE 1\r\n");
	t_stats_is(s, 2, r1 + r2, 1, t3, 2, V1 + V3, false,
	    "RSET, DELE 3, DELE 1");
	t_say(s, "RSET\r\nQUIT\r\n");
	t_stats_is(s, 2, r1 + r2, 1, t3, 0, 0, true, "RSET, QUIT");
	pop3_session_stats(s, &st);
	ok(st.messages == 3 && st.size == V1 + V2 + V3,
	    "messages and size kept after QUIT");
	pop3_session_free(&s);
}

/* ---- Bugs panic ---- */

static void
expect_panic(void (*fn)(void), const char *want, const char *what)
{
	char path[] = "/tmp/loft-pop3-panic-XXXXXX", got[2048];
	int fd = mkstemp(path), status;
	ssize_t n;
	pid_t pid;

	if (fd < 0)
		bail("mkstemp");
	fflush(stdout);
	if ((pid = fork()) == 0) {
		dup2(fd, STDERR_FILENO);
		fn();
		_exit(0);
	}
	waitpid(pid, &status, 0);
	ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
	    "%s: aborts", what);
	n = pread(fd, got, sizeof(got) - 1, 0);
	got[n > 0 ? n : 0] = '\0';
	ok(strstr(got, want) != NULL, "%s: says %s", what, want);
	close(fd);
	unlink(path);
}

static void
panic_reply_unasked(void)
{
	struct pop3_session *s = t_new(true, false);

	pop3_session_auth_reply(s, POP3_AUTH_OK, NULL, 0, "alice");
}

static void
panic_reply_pending(void)
{
	struct pop3_session *s = t_new(true, false);

	pending_mode = true;
	t_say(s, "USER alice\r\nPASS x\r\n");
	pop3_session_auth_reply(s, POP3_AUTH_PENDING, NULL, 0, NULL);
}

static void
panic_export(void)
{
	struct pop3_session *s = t_new(true, false);
	struct buf x;

	buf_init(&x, 1 << 20);
	t_say(s, "CAPA\r\nNO");
	pop3_session_export_pending(s, &x);
}

static void
panic_line_small(void)
{
	t_new_max(true, false, POP3_LINE_MAX - 1);
}

static void
panic_line_big(void)
{
	t_new_max(true, false, POP3_LINE_MAX_LIMIT + 1);
}

static void
panic_long_user(void)
{
	struct pop3_settings set = t_settings(true, false, 0);
	char name[USER_NAME_MAX + 2];

	memset(name, 'u', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	pop3_session_new_authenticated(&set, &cbs, NULL, name);
}

static void
test_panics(void)
{
	struct pop3_session *s;

	expect_panic(panic_reply_unasked, "without a pending check",
	    "auth_reply with nothing pending");
	expect_panic(panic_reply_pending, "result PENDING",
	    "auth_reply(PENDING)");
	expect_panic(panic_export, "not waiting for login",
	    "export before authentication");
	expect_panic(panic_line_small, "line_max 254", "line_max 254");
	expect_panic(panic_line_big, "line_max 65537", "line_max 65537");
	expect_panic(panic_long_user, "user name too long",
	    "new_authenticated with a name over USER_NAME_MAX");
	s = t_new_max(true, false, POP3_LINE_MAX);
	ok(s != NULL, "line_max 255 accepted");
	pop3_session_free(&s);
}

int
main(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(top, sizeof(top), "/tmp/loft-pop3-XXXXXX");
	if (mkdtemp(top) == NULL)
		bail("mkdtemp");
	buf_init(&out, 1 << 20);
	alice.name = xstrdup("alice");
	alice.pwhash = xstrdup("");
	alice.uid = getuid();
	alice.gid = getgid();
	alice.home = xstrdup(top);
	alice.mail_location = xstrdup("maildir:~/Maildir");
	alice.fields = xstrdup("");

	test_auth();
	test_panics();
	test_line_max(1000, true);
	test_line_max(POP3_LINE_MAX_LIMIT, false);
	test_sasl_line_max();
	test_async_sasl(false);
	test_async_sasl(true);
	t_deliver(m1, sizeof(m1) - 1);
	t_deliver(m2, sizeof(m2) - 1);
	t_deliver(m3, sizeof(m3) - 1);
	test_async_plain(false);
	test_async_plain(true);
	test_handover();
	test_stats();
	test_transaction(false);
	test_transaction(true);
	test_dele_quit();
	test_big();
	test_convert();
	test_pipeline();
	test_sizes();
	test_mbox_ahead();
	test_mbox();
	test_policy();

	free(alice.name);
	free(alice.pwhash);
	free(alice.home);
	free(alice.mail_location);
	free(alice.fields);
	buf_free(&out);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", top);
	if (system(cmd) != 0)
		diag("cannot remove %s", top);
	return done_testing();
}
