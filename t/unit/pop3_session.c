/*
 * Unit tests for server/pop3/pop3_session.c (with pop3_mailbox.c over a
 * real store): scripted sessions fed whole and one byte at a time,
 * compared byte for byte with expected transcripts; RETR/TOP against a
 * reference CRLF + dot-stuffing transformation (NULs, lone CR, leading
 * dots, no final newline, CRLF already there) for Maildir and mbox;
 * DELE+QUIT, DELE+drop, RSET, [IN-USE], STLS dropping pipelined input,
 * AUTH with base64 and cancel, line limits at N and N+1, NUL bytes,
 * pipelining, a 5 MB message streamed in bounded chunks.
 */
#include "config.h"

#include <sys/stat.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "store.h"
#include "user.h"
#include "xmalloc.h"
#include "server/pop3/pop3_session.h"
#include "server/pop3/pop3_mailbox.h"
#include "tap.h"

static char top[PATH_MAX];
static struct buf out;			/* everything the engine wrote */
static size_t max_write;		/* largest single write */
static struct user alice;
static struct pop3_session *cur;
static int tls_calls, closed_calls, aborts;

static void
t_write(void *ctx, const unsigned char *d, size_t len)
{
	(void)ctx;
	if (len > max_write)
		max_write = len;
	if (buf_append(&out, d, len) < 0)
		bail("output too large");
}

static enum pop3_auth_result
t_plain(void *ctx, const char *user, const char *pass)
{
	(void)ctx;
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

static struct pop3_session *
t_new(bool secured, bool tls)
{
	struct pop3_settings set = { tls, secured, false, "PLAIN X-TWO" };
	struct pop3_session *s = pop3_session_new(&set, &cbs, NULL);

	cur = s;
	buf_truncate(&out, 0);
	pop3_session_greet(s);
	return s;
}

/* Feed text (whole or byte by byte), drain streams, return output. */
static const char *
t_feed(struct pop3_session *s, const char *in, size_t len, bool bytewise)
{
	size_t done = 0;

	buf_truncate(&out, 0);
	cur = s;
	while (done < len) {
		size_t n = bytewise ? 1 : len - done;

		done += pop3_session_input(s, (const unsigned char *)in + done,
		    n);
		while (pop3_session_want_output(s))
			pop3_session_output_ready(s);
		if (pop3_session_state(s) == POP3_STATE_CLOSED)
			break;
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

/* The CRLF sizes: each bare LF counts two. */
static size_t
t_vsize(const unsigned char *m, size_t len)
{
	size_t n = len;

	for (size_t i = 0; i < len; i++)
		n += m[i] == '\n' && (i == 0 || m[i - 1] != '\r');
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
t_read_inbox(struct buf *b)
{
	char path[PATH_MAX + 16];
	FILE *fp;
	unsigned char chunk[4096];
	size_t n;

	snprintf(path, sizeof(path), "%s/inbox", top);
	buf_truncate(b, 0);
	if ((fp = fopen(path, "r")) == NULL)
		bail("cannot open %s", path);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		buf_append(b, chunk, n);
	fclose(fp);
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
	 * it (as CRLF), so the size is that of the bytes a reader gets. */
	buf_printf(&ref, "+OK %zu octets\r\n", V2 + 2);
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
	t_deliver(m1, sizeof(m1) - 1);
	t_deliver(m2, sizeof(m2) - 1);
	t_deliver(m3, sizeof(m3) - 1);
	test_transaction(false);
	test_transaction(true);
	test_dele_quit();
	test_big();
	test_mbox();

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
