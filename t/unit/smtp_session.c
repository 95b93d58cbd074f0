/*
 * Unit tests for smtp/smtp_session.c: the engine driven through a fake
 * I/O layer and callbacks. Whole conversations fed in one piece and one
 * byte at a time and compared byte for byte; pipelined groups written in
 * one write; sequencing, syntax and unknown-command errors; the error,
 * recipient, size, command line, SASL line and text line limits at N and
 * N+1; bare CR and LF in commands and the SMTP smuggling variants in DATA
 * and BDAT; dot-unstuffing; STARTTLS dropping pipelined plaintext (fed
 * directly and from the queue kept while waiting); BDAT with and without
 * LAST, refused chunks whose bytes are still skipped, BDAT mixed with
 * DATA; LMTP replies per recipient; AUTH (initial response, challenges,
 * cancel, bad base64, answered later); MAIL and RCPT answered later with
 * the input kept (bounded); DSN and SMTPUTF8 parameters handed on; and
 * the API misuses that panic, in forked children.
 */
#include "config.h"

#include <sys/wait.h>

#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "compat/compat.h"
#include "smtp/smtp_session.h"
#include "tap.h"

#define HOST	"mx.example.org"
/* A sender and a recipient. */
#define MR	"MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\n"

static struct smtp_session *cur;
static struct buf out;			/* everything written */
static int writes;			/* cb->write calls */
static struct buf msg;			/* message bytes received */
static int data_calls, begin_calls, end_calls, reset_calls;
static int mail_calls, rcpt_calls, tls_calls, closed_calls, aborts;
static int sasl_calls;

/* What the callbacks do. */
static bool mail_pending, rcpt_pending, sasl_pending, auto_done = true;
static bool tls_auto = true;
static char got_from[600], got_to[600], got_envid[128], got_orcpt[600];
static char got_auth[600], got_auth_user[300], got_helo[300];
static unsigned got_notify, got_index;
static bool got_utf8, got_has_size;
static uint64_t got_size;
static enum smtp_body got_body;
static enum smtp_ret got_ret;
/* LMTP: the codes data_end answers, one per recipient. */
static unsigned lmtp_codes[8];
static unsigned lmtp_n;

static void
t_write(void *ctx, const unsigned char *d, size_t len)
{
	(void)ctx;
	writes++;
	if (buf_append(&out, d, len) < 0)
		bail("output too large");
}

static void
t_path(const struct smtp_path *p, char *dst, size_t size)
{
	if (p->null)
		strlcpy(dst, "<>", size);
	else
		snprintf(dst, size, "%s@%s", p->local, p->domain);
}

static void
t_mail(void *ctx, const struct smtp_mail *m)
{
	(void)ctx;
	mail_calls++;
	t_path(m->from, got_from, sizeof(got_from));
	strlcpy(got_envid, m->envid != NULL ? m->envid : "-",
	    sizeof(got_envid));
	strlcpy(got_auth, m->auth != NULL ? m->auth : "-", sizeof(got_auth));
	strlcpy(got_auth_user, m->auth_user != NULL ? m->auth_user : "-",
	    sizeof(got_auth_user));
	strlcpy(got_helo, m->helo, sizeof(got_helo));
	got_utf8 = m->smtputf8;
	got_has_size = m->has_size;
	got_size = m->size;
	got_body = m->body;
	got_ret = m->ret;
	if (mail_pending)
		return;
	if (strcmp(m->from->local, "refused") == 0)
		smtp_session_reply(cur, 550, "5.7.1", "Sender refused");
	else
		smtp_session_reply(cur, 250, "2.1.0", "Ok");
}

static void
t_rcpt(void *ctx, const struct smtp_rcpt *r)
{
	(void)ctx;
	rcpt_calls++;
	t_path(r->to, got_to, sizeof(got_to));
	got_notify = r->notify;
	got_index = r->index;
	strlcpy(got_orcpt, r->orcpt != NULL ? r->orcpt : "-",
	    sizeof(got_orcpt));
	if (rcpt_pending)
		return;
	if (strncmp(r->to->local, "unknown", 7) == 0)
		smtp_session_reply(cur, 550, "5.1.1", "User unknown");
	else
		smtp_session_reply(cur, 250, "2.1.5", "Ok");
}

static void
t_begin(void *ctx)
{
	(void)ctx;
	begin_calls++;
	buf_truncate(&msg, 0);
}

static void
t_data(void *ctx, const unsigned char *d, size_t len)
{
	(void)ctx;
	data_calls++;
	if (len == 0)
		bail("empty data call");
	if (buf_append(&msg, d, len) < 0)
		bail("message too large");
}

static void
t_end(void *ctx)
{
	(void)ctx;
	end_calls++;
	if (!auto_done)
		return;
	if (lmtp_n == 0) {
		smtp_session_data_done(cur, 250, "2.0.0", "Ok: queued");
		return;
	}
	for (unsigned i = 0; i < lmtp_n; i++)
		smtp_session_data_done(cur, lmtp_codes[i],
		    lmtp_codes[i] < 300 ? "2.0.0" : "4.2.2",
		    lmtp_codes[i] < 300 ? "Delivered" : "Over quota");
}

static void
t_reset(void *ctx)
{
	(void)ctx;
	reset_calls++;
}

/* PLAIN checks "\0alice\0secret"; X-TWO asks "who?" and wants "alice". */
static enum smtp_auth_result
t_sasl(void *ctx, const char *mech, bool first, const unsigned char *resp,
    size_t len, bool has_resp, const unsigned char **chal_r,
    size_t *chal_len_r, const char **user_r)
{
	static const char plain[] = "\0alice\0secret";

	(void)ctx;
	sasl_calls++;
	if (sasl_pending)
		return SMTP_AUTH_PENDING;
	*user_r = "alice";
	if (strcmp(mech, "PLAIN") == 0) {
		if (first && !has_resp) {
			*chal_r = (const unsigned char *)"";
			*chal_len_r = 0;
			return SMTP_AUTH_CONTINUE;
		}
		if (len == 5 && memcmp(resp, "\0x\0tf", 5) == 0)
			return SMTP_AUTH_TEMPFAIL;
		return len == sizeof(plain) - 1 &&
		    memcmp(resp, plain, len) == 0 ? SMTP_AUTH_OK :
		    SMTP_AUTH_FAIL;
	}
	if (first) {
		*chal_r = (const unsigned char *)"who?";
		*chal_len_r = 4;
		return SMTP_AUTH_CONTINUE;
	}
	return len == 5 && memcmp(resp, "alice", 5) == 0 ? SMTP_AUTH_OK :
	    SMTP_AUTH_FAIL;
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
	if (tls_auto)
		smtp_session_tls_started(cur);
}

static void
t_closed(void *ctx)
{
	(void)ctx;
	closed_calls++;
}

static const struct smtp_callbacks cbs = {
	.write = t_write, .mail = t_mail, .rcpt = t_rcpt,
	.data_begin = t_begin, .data = t_data, .data_end = t_end,
	.reset = t_reset, .sasl = t_sasl, .sasl_abort = t_abort,
	.start_tls = t_tls, .closed = t_closed
};

static struct smtp_settings
t_set(void)
{
	struct smtp_settings set;

	memset(&set, 0, sizeof(set));
	set.hostname = HOST;
	set.extensions = SMTP_EXT_ALL;
	set.tls_available = true;
	set.mechanisms = "PLAIN X-TWO";
	set.size_max = 1000000;
	return set;
}

static void
t_counters(void)
{
	writes = data_calls = begin_calls = end_calls = reset_calls = 0;
	mail_calls = rcpt_calls = tls_calls = closed_calls = aborts = 0;
	sasl_calls = 0;
	mail_pending = rcpt_pending = sasl_pending = false;
	auto_done = tls_auto = true;
	lmtp_n = 0;
	buf_truncate(&msg, 0);
}

/* A new session with set, greeted; output cleared. */
static struct smtp_session *
t_new_set(const struct smtp_settings *set)
{
	struct smtp_session *s = smtp_session_new(set, &cbs, NULL);

	cur = s;
	t_counters();
	buf_truncate(&out, 0);
	smtp_session_greet(s);
	buf_truncate(&out, 0);
	writes = 0;
	return s;
}

static struct smtp_session *
t_new(void)
{
	struct smtp_settings set = t_set();

	return t_new_set(&set);
}

/* Feed len bytes (whole or one at a time); returns the output. Stops,
 * with a diagnostic, if the engine takes nothing. */
static const char *
t_feed(struct smtp_session *s, const char *in, size_t len, bool bytewise)
{
	size_t done = 0;

	buf_truncate(&out, 0);
	writes = 0;
	cur = s;
	while (done < len) {
		size_t n = bytewise ? 1 : len - done;
		size_t took = smtp_session_input(s,
		    (const unsigned char *)in + done, n);

		done += took;
		if (smtp_session_state(s) == SMTP_STATE_CLOSED)
			break;
		if (took == 0) {
			diag("input stalled after %zu of %zu bytes", done, len);
			break;
		}
	}
	return buf_cstr(&out);
}

static const char *
t_fs(struct smtp_session *s, const char *in, bool bytewise)
{
	return t_feed(s, in, strlen(in), bytewise);
}

static const char *
t_say(struct smtp_session *s, const char *in)
{
	return t_feed(s, in, strlen(in), false);
}

/* got starts with want, and is one line. */
static bool
t_prefix(const char *got, const char *want)
{
	const char *crlf = strstr(got, "\r\n");

	return strncmp(got, want, strlen(want)) == 0 && crlf != NULL &&
	    crlf[2] == '\0';
}

static const char *
t_out_reset(void)
{
	buf_truncate(&out, 0);
	writes = 0;
	return "";
}

/* An EHLO'd session (all extensions). */
static struct smtp_session *
t_ehlo(void)
{
	struct smtp_session *s = t_new();

	t_say(s, "EHLO client.example.net\r\n");
	t_out_reset();
	return s;
}

/* MAIL and one RCPT accepted. */
static struct smtp_session *
t_txn(void)
{
	struct smtp_session *s = t_ehlo();

	t_say(s, MR);
	t_out_reset();
	return s;
}

static const char ehlo_reply[] =
    "250-" HOST "\r\n"
    "250-PIPELINING\r\n"
    "250-SIZE 1000000\r\n"
    "250-STARTTLS\r\n"
    "250-ENHANCEDSTATUSCODES\r\n"
    "250-8BITMIME\r\n"
    "250-DSN\r\n"
    "250-SMTPUTF8\r\n"
    "250 CHUNKING\r\n";

static const char conv_in[] =
    "EHLO client.example.net\r\n"
    "MAIL FROM:<a@example.net> SIZE=42 BODY=8BITMIME\r\n"
    "RCPT TO:<b@example.org>\r\n"
    "DATA\r\n"
    "Subject: hi\r\n"
    "\r\n"
    "..leading dot\r\n"
    ".\tdot tab\r\n"
    "...\r\n"
    "last\r\n"
    ".\r\n"
    "QUIT\r\n";

static const char conv_out[] =
    "250-" HOST "\r\n"
    "250-PIPELINING\r\n"
    "250-SIZE 1000000\r\n"
    "250-STARTTLS\r\n"
    "250-ENHANCEDSTATUSCODES\r\n"
    "250-8BITMIME\r\n"
    "250-DSN\r\n"
    "250-SMTPUTF8\r\n"
    "250 CHUNKING\r\n"
    "250 2.1.0 Ok\r\n"
    "250 2.1.5 Ok\r\n"
    "354 End data with <CR><LF>.<CR><LF>\r\n"
    "250 2.0.0 Ok: queued\r\n"
    "221 2.0.0 " HOST " closing connection\r\n";

static const char conv_msg[] =
    "Subject: hi\r\n"
    "\r\n"
    ".leading dot\r\n"
    "\tdot tab\r\n"
    "..\r\n"
    "last\r\n";

static void
test_conversation(void)
{
	struct smtp_session *s;
	struct smtp_settings set = t_set();

	s = smtp_session_new(&set, &cbs, NULL);
	cur = s;
	buf_truncate(&out, 0);
	smtp_session_greet(s);
	is_string(buf_cstr(&out), "220 " HOST " ESMTP loft\r\n", "greeting");
	smtp_session_free(&s);
	ok(s == NULL, "free clears the pointer");

	for (int bw = 0; bw < 2; bw++) {
		s = t_new();
		is_string(t_feed(s, conv_in, strlen(conv_in), bw), conv_out,
		    "conversation transcript (%s)", bw ? "bytewise" : "whole");
		is_mem(msg.data, msg.len, conv_msg, strlen(conv_msg),
		    "message unstuffed, CRLF (%s)", bw ? "bytewise" : "whole");
		is_int(end_calls, 1, "data_end once");
		is_int(begin_calls, 1, "data_begin once");
		is_int(reset_calls, 0, "no reset");
		is_int(closed_calls, 1, "closed after QUIT");
		ok(got_has_size && got_size == 42, "SIZE handed on");
		is_int(got_body, SMTP_BODY_8BITMIME, "BODY handed on");
		is_string(got_from, "a@example.net", "sender");
		is_string(got_to, "b@example.org", "recipient");
		is_string(got_helo, "client.example.net", "helo name");
		is_int(smtp_session_state(s), SMTP_STATE_CLOSED, "closed");
		is_int(smtp_session_input(s, (const unsigned char *)"NOOP\r\n",
		    6), 0, "nothing taken after QUIT");
		smtp_session_free(&s);
	}
}

static void
test_pipelining(void)
{
	struct smtp_session *s = t_ehlo();
	const char *o;

	o = t_say(s, MR
	    "RCPT TO:<unknown@example.org>\r\nRCPT TO:<c@example.org>\r\n"
	    "DATA\r\n");
	is_string(o, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
	    "550 5.1.1 User unknown\r\n"
	    "250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n",
	    "pipelined group answered in order");
	is_int(writes, 1, "group answered in one write");
	is_int(got_index, 1, "rcpt index counts accepted ones");
	is_int(smtp_session_rcpt_count(s), 2, "two recipients accepted");
	/* Data fed in two pieces reaches cb->data as it arrives. */
	t_say(s, "part one\r\n");
	is_mem(msg.data, msg.len, "part one\r\n", 10,
	    "data passed on before the end");
	o = t_say(s, "part two\r\n.\r\nRSET\r\nNOOP\r\n");
	is_string(o, "250 2.0.0 Ok: queued\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n",
	    "end of data and pipelined commands after it");
	is_int(writes, 1, "one write");
	is_mem(msg.data, msg.len, "part one\r\npart two\r\n", 20,
	    "whole message");
	smtp_session_free(&s);
}

static void
test_sequencing(void)
{
	struct smtp_session *s = t_new();

	is_string(t_say(s, "MAIL FROM:<a@example.net>\r\n"),
	    "503 Send HELO/EHLO first\r\n",
	    "MAIL before HELO (no enhanced code before EHLO)");
	is_string(t_say(s, "HELO client.example.net\r\n"), "250 " HOST "\r\n",
	    "HELO");
	is_string(t_say(s, "RCPT TO:<b@example.org>\r\n"),
	    "503 Need MAIL command\r\n", "RCPT before MAIL, after HELO");
	is_string(t_say(s, "MAIL FROM:<a@example.net> SIZE=10\r\n"),
	    "555 Unsupported parameter SIZE\r\n",
	    "SIZE after HELO: not an extension in force");
	smtp_session_free(&s);

	s = t_ehlo();
	is_string(t_say(s, "DATA\r\n"), "503 5.5.1 Need MAIL command\r\n",
	    "DATA before MAIL");
	t_say(s, "MAIL FROM:<a@example.net>\r\n");
	is_string(t_say(s, "MAIL FROM:<a@example.net>\r\n"),
	    "503 5.5.1 Nested MAIL command\r\n", "nested MAIL");
	is_string(t_say(s, "DATA\r\n"), "503 5.5.1 Need RCPT command\r\n",
	    "DATA before RCPT");
	t_say(s, "RCPT TO:<unknown@example.org>\r\n");
	is_string(t_say(s, "DATA\r\n"), "554 5.5.1 No valid recipients\r\n",
	    "DATA when every RCPT failed");
	is_string(t_say(s, "RSET\r\n"), "250 2.0.0 Ok\r\n", "RSET");
	is_int(reset_calls, 1, "RSET resets the transaction");
	is_string(t_say(s, "RSET\r\n"), "250 2.0.0 Ok\r\n", "RSET again");
	is_int(reset_calls, 1, "no transaction, no reset");
	is_string(t_say(s, "RSET x\r\n"), "501 5.5.4 Syntax: RSET\r\n",
	    "RSET with an argument");
	is_string(t_say(s, "MAIL FROM:<refused@example.net>\r\n"),
	    "550 5.7.1 Sender refused\r\n", "MAIL refused by the daemon");
	is_string(t_say(s, "RCPT TO:<b@example.org>\r\n"),
	    "503 5.5.1 Need MAIL command\r\n", "no transaction after refusal");
	is_string(t_say(s, "NOOP hello\r\n"), "250 2.0.0 Ok\r\n", "NOOP");
	is_string(t_say(s, "VRFY bob\r\n"), "252 2.5.0 Cannot VRFY user, but "
	    "will accept message and attempt delivery\r\n", "VRFY");
	is_string(t_say(s, "VRFY\r\n"), "501 5.5.4 Syntax: VRFY address\r\n",
	    "VRFY without argument");
	is_string(t_say(s, "EXPN list\r\n"), "502 5.5.1 EXPN not available\r\n",
	    "EXPN");
	ok(strncmp(t_say(s, "HELP\r\n"), "214 2.0.0 Commands:", 19) == 0,
	    "HELP");
	is_string(t_say(s, "LHLO x\r\n"), "500 5.5.1 Command unrecognized\r\n",
	    "LHLO in SMTP");
	is_string(t_say(s, "FOO\r\n"), "500 5.5.1 Command unrecognized\r\n",
	    "unknown command");
	is_string(t_say(s, "\r\n"), "500 5.5.2 Empty command\r\n",
	    "empty line");
	is_string(t_say(s, "QUIT now\r\n"), "501 5.5.4 Syntax: QUIT\r\n",
	    "QUIT with an argument");
	is_string(t_say(s, "EHLO\r\n"), "501 5.5.4 Syntax: EHLO hostname\r\n",
	    "EHLO without a name");
	is_string(t_say(s, "ehlo second.example.net\r\n"), ehlo_reply,
	    "EHLO again (any case)");
	smtp_session_free(&s);
}

static void
test_mail_syntax(void)
{
	struct smtp_session *s = t_ehlo();

	is_string(t_say(s, "MAIL <a@example.net>\r\n"),
	    "501 5.5.4 Syntax: MAIL FROM:<address>\r\n", "MAIL without FROM:");
	ok(t_prefix(t_say(s, "MAIL FROM:a@example.net\r\n"),
	    "501 5.1.7 Bad sender address syntax ("),
	    "path without brackets");
	is_string(t_say(s, "MAIL FROM:<a@example.net>X\r\n"),
	    "501 5.5.4 Syntax: MAIL FROM:<address>\r\n", "junk after path");
	is_string(t_say(s, "MAIL FROM:<a@example.net> FOO=1\r\n"),
	    "555 5.5.4 Unsupported parameter FOO\r\n", "unknown parameter");
	is_string(t_say(s, "MAIL FROM:<a@example.net> SIZE=1 SIZE=2\r\n"),
	    "501 5.5.4 Duplicate SIZE parameter\r\n", "duplicate parameter");
	is_string(t_say(s, "MAIL FROM:<a@example.net> SIZE=x\r\n"),
	    "501 5.5.4 Invalid SIZE parameter\r\n", "bad SIZE");
	is_string(t_say(s, "MAIL FROM:<a@example.net> "
	    "SIZE=99999999999999999999999\r\n"),
	    "501 5.5.4 Invalid SIZE parameter\r\n", "SIZE overflow");
	is_string(t_say(s, "MAIL FROM:<a@example.net> SIZE=1000001\r\n"),
	    "552 5.3.4 Message size exceeds fixed limit\r\n",
	    "SIZE over the limit (N+1)");
	is_string(t_say(s, "MAIL FROM:<a@example.net> SIZE=1000000\r\n"),
	    "250 2.1.0 Ok\r\n", "SIZE at the limit (N)");
	t_say(s, "RSET\r\n");
	is_string(t_say(s, "MAIL FROM:<a@example.net> BODY=BINARYMIME\r\n"),
	    "555 5.5.4 Unsupported parameter BODY\r\n", "BODY=BINARYMIME");
	is_string(t_say(s, "MAIL FROM:<a@example.net> A=1 B=2 C=3 D=4 E=5 F=6 "
	    "G=7 H=8 I=9\r\n"), "501 5.5.4 Syntax: MAIL FROM:<address>\r\n",
	    "too many parameters");
	is_string(t_say(s, "MAIL FROM:<a@example.net> RET=ALL\r\n"),
	    "501 5.5.4 Invalid RET parameter\r\n", "bad RET");
	is_string(t_say(s, "MAIL FROM:<a@example.net> ENVID=a=b\r\n"),
	    "501 5.5.4 Invalid ENVID parameter\r\n", "ENVID with '='");
	is_string(t_say(s, "MAIL FROM:<a@example.net> ENVID=a+4\r\n"),
	    "501 5.5.4 Invalid ENVID parameter\r\n", "ENVID bad hexchar");
	is_string(t_say(s, "MAIL FROM:<>  RET=HDRS ENVID=QQ+2B1 "
	    "smtputf8 AUTH=<>\r\n"), "250 2.1.0 Ok\r\n",
	    "null sender with DSN parameters (case, extra spaces)");
	is_string(got_from, "<>", "null sender");
	is_int(got_ret, SMTP_RET_HDRS, "RET handed on");
	is_string(got_envid, "QQ+2B1", "ENVID handed on as xtext");
	is_string(got_auth, "<>", "AUTH=<> handed on");
	ok(got_utf8, "SMTPUTF8 handed on");
	is_string(t_say(s, "RCPT TO:<b@example.org> NOTIFY=SUCCESS,delay "
	    "ORCPT=rfc822;b+40example.org\r\n"), "250 2.1.5 Ok\r\n",
	    "RCPT with NOTIFY and ORCPT");
	is_int(got_notify, SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_DELAY,
	    "NOTIFY handed on");
	is_string(got_orcpt, "rfc822;b+40example.org", "ORCPT handed on");
	is_string(t_say(s, "RCPT TO:<c@example.org> NOTIFY=NEVER,DELAY\r\n"),
	    "501 5.5.4 Invalid NOTIFY parameter\r\n", "NEVER not alone");
	is_string(t_say(s, "RCPT TO:<c@example.org> ORCPT=rfc822\r\n"),
	    "501 5.5.4 Invalid ORCPT parameter\r\n", "ORCPT without ';'");
	is_string(t_say(s, "RCPT TO:<c@example.org> SIZE=1\r\n"),
	    "555 5.5.4 Unsupported parameter SIZE\r\n", "SIZE on RCPT");
	ok(t_prefix(t_say(s, "RCPT TO:<>\r\n"),
	    "501 5.1.3 Bad recipient address syntax ("),
	    "RCPT TO:<>");
	is_string(t_say(s, "RCPT TO:<j\xc3\xbcrg@example.org>\r\n"),
	    "250 2.1.5 Ok\r\n", "UTF-8 recipient after MAIL ... SMTPUTF8");
	t_say(s, "RSET\r\n");
	t_say(s, "MAIL FROM:<a@example.net>\r\n");
	ok(strncmp(t_say(s, "RCPT TO:<j\xc3\xbcrg@example.org>\r\n"),
	    "501 5.1.3 ", 10) == 0, "UTF-8 recipient without SMTPUTF8");
	is_string(t_say(s, "RCPT TO: <b@example.org>\r\n"), "250 2.1.5 Ok\r\n",
	    "a space after TO: is tolerated");
	smtp_session_free(&s);
}

static void
test_error_limit(void)
{
	struct smtp_settings set = t_set();
	struct smtp_session *s;

	set.errors_max = 3;
	s = t_new_set(&set);
	t_say(s, "EHLO c.example.net\r\n");
	is_string(t_say(s, "FOO\r\nBAR\r\n"),
	    "500 5.5.1 Command unrecognized\r\n"
	    "500 5.5.1 Command unrecognized\r\n", "N-1 errors: still open");
	is_int(closed_calls, 0, "not closed");
	is_string(t_say(s, "BAZ\r\nNOOP\r\n"),
	    "500 5.5.1 Command unrecognized\r\n"
	    "421 4.7.0 " HOST " Error: too many errors, closing "
	    "connection\r\n",
	    "N-th error: 421 and nothing after it runs");
	is_int(closed_calls, 1, "closed");
	is_int(smtp_session_state(s), SMTP_STATE_CLOSED, "state closed");
	smtp_session_free(&s);

	/* A delivered message forgives the errors before it. */
	s = t_new_set(&set);
	t_say(s, "EHLO c.example.net\r\nFOO\r\nFOO\r\n");
	t_say(s, MR
	    "DATA\r\nx\r\n.\r\nFOO\r\nFOO\r\n");
	is_int(closed_calls, 0, "errors counted again from 0 after a message");
	smtp_session_free(&s);

	/* Refused recipients count (dictionary attacks). */
	s = t_new_set(&set);
	t_say(s, "EHLO c.example.net\r\nMAIL FROM:<a@example.net>\r\n");
	t_say(s, "RCPT TO:<unknown1@example.org>\r\n"
	    "RCPT TO:<unknown2@example.org>\r\n"
	    "RCPT TO:<unknown3@example.org>\r\n");
	is_int(closed_calls, 1, "three refused RCPTs close at errors_max 3");
	is_int(reset_calls, 1, "the open transaction was reset");
	smtp_session_free(&s);
}

static void
test_rcpt_limit(void)
{
	struct smtp_settings set = t_set();
	struct smtp_session *s;

	set.rcpt_max = 3;
	s = t_new_set(&set);
	t_say(s, "EHLO c.example.net\r\nMAIL FROM:<a@example.net>\r\n");
	is_string(t_say(s, "RCPT TO:<b1@example.org>\r\n"
	    "RCPT TO:<b2@example.org>\r\nRCPT TO:<b3@example.org>\r\n"),
	    "250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n",
	    "N recipients accepted");
	is_string(t_say(s, "RCPT TO:<b4@example.org>\r\n"),
	    "452 4.5.3 Too many recipients\r\n", "N+1-th: 452 4.5.3");
	is_int(rcpt_calls, 3, "the daemon is not asked for the N+1-th");
	is_int(smtp_session_rcpt_count(s), 3, "three recipients");
	is_string(t_say(s, "DATA\r\nx\r\n.\r\n"),
	    "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n",
	    "message goes to the N accepted");
	is_int(smtp_session_rcpt_count(s), 0,
	    "count cleared after the message");
	smtp_session_free(&s);

	set.rcpt_max = 0;
	s = t_new_set(&set);
	t_say(s, "EHLO c.example.net\r\nMAIL FROM:<a@example.net>\r\n");
	for (int i = 0; i < SMTP_RCPT_MAX_DEFAULT; i++)
		t_say(s, "RCPT TO:<b@example.org>\r\n");
	is_int(smtp_session_rcpt_count(s), SMTP_RCPT_MAX_DEFAULT,
	    "default limit: N accepted");
	is_string(t_say(s, "RCPT TO:<b@example.org>\r\n"),
	    "452 4.5.3 Too many recipients\r\n", "default limit: N+1 refused");
	smtp_session_free(&s);
}

/* A DATA message with body (which must end in CRLF) under set. */
static const char *
t_message(struct smtp_session *s, const char *body, size_t len)
{
	static struct buf b;

	buf_free(&b);
	buf_init(&b, len + 256);
	buf_append_str(&b, MR
	    "DATA\r\n");
	buf_append(&b, body, len);
	buf_append_str(&b, ".\r\n");
	return t_feed(s, (const char *)b.data, b.len, false);
}

static void
test_size_limit(void)
{
	struct smtp_settings set = t_set();
	struct smtp_session *s;
	struct buf body;
	const char *o;

	set.size_max = 100;
	buf_init(&body, 200);
	/* 98 bytes + CRLF = 100 after unstuffing. */
	for (int i = 0; i < 98; i++)
		buf_append_byte(&body, 'a');
	buf_append_str(&body, "\r\n");
	s = t_new_set(&set);
	t_say(s, "EHLO c.example.net\r\n");
	o = t_message(s, (const char *)body.data, body.len);
	ok(strstr(o, "250 2.0.0 Ok: queued\r\n") != NULL, "size N accepted");
	is_int(msg.len, 100, "100 bytes passed on");
	buf_truncate(&body, 0);
	for (int i = 0; i < 99; i++)
		buf_append_byte(&body, 'a');
	buf_append_str(&body, "\r\n");
	end_calls = reset_calls = 0;
	o = t_message(s, (const char *)body.data, body.len);
	ok(strstr(o, "552 5.3.4 Message size exceeds fixed limit\r\n") != NULL,
	    "size N+1 refused at the end of data");
	is_int(end_calls, 0, "no data_end");
	is_int(reset_calls, 1, "reset instead");
	/* A leading dot is stuffing, not size: 99 bytes on the wire. */
	buf_truncate(&body, 0);
	buf_append_byte(&body, '.');
	for (int i = 0; i < 98; i++)
		buf_append_byte(&body, 'a');
	buf_append_str(&body, "\r\n");
	o = t_message(s, (const char *)body.data, body.len);
	ok(strstr(o, "250 2.0.0 Ok: queued\r\n") != NULL,
	    "size counted after unstuffing");
	smtp_session_free(&s);
	buf_free(&body);
}

/* A line of total bytes (CRLF included): prefix, then 'x' padding. */
static void
t_line(struct buf *b, const char *prefix, size_t total)
{
	buf_truncate(b, 0);
	buf_append_str(b, prefix);
	while (b->len < total - 2)
		buf_append_byte(b, 'x');
	buf_append_str(b, "\r\n");
}

static void
test_line_limits(void)
{
	struct smtp_session *s;
	struct buf b;

	buf_init(&b, 64 * 1024);
	for (int bw = 0; bw < 2; bw++) {
		s = t_ehlo();
		t_line(&b, "NOOP ", SMTP_LINE_MAX);
		is_string(t_feed(s, (const char *)b.data, b.len, bw),
		    "250 2.0.0 Ok\r\n", "command line of %d bytes (%s)",
		    SMTP_LINE_MAX, bw ? "bytewise" : "whole");
		t_line(&b, "NOOP ", SMTP_LINE_MAX + 1);
		buf_append_str(&b, "NOOP\r\n");
		is_string(t_feed(s, (const char *)b.data, b.len, bw),
		    "500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n",
		    "command line of N+1 bytes refused, next runs (%s)",
		    bw ? "bytewise" : "whole");
		smtp_session_free(&s);
	}
	s = t_ehlo();
	t_line(&b, "MAIL FROM:<a@example.net> ENVID=", SMTP_PARAM_LINE_MAX);
	is_string(t_feed(s, (const char *)b.data, b.len, false),
	    "501 5.5.4 Invalid ENVID parameter\r\n",
	    "MAIL line of %d bytes is read (ENVID then too long)",
	    SMTP_PARAM_LINE_MAX);
	t_line(&b, "MAIL FROM:<a@example.net> ENVID=", SMTP_PARAM_LINE_MAX + 1);
	is_string(t_feed(s, (const char *)b.data, b.len, false),
	    "500 5.5.2 Line too long\r\n", "MAIL line of N+1 bytes skipped");
	t_line(&b, "MAIL FROM:<a@example.net> ENVID=", 32 + 2 + 100);
	is_string(t_feed(s, (const char *)b.data, b.len, false),
	    "250 2.1.0 Ok\r\n", "ENVID of 100 bytes");
	t_say(s, "RSET\r\n");
	t_line(&b, "MAIL FROM:<a@example.net> ENVID=", 32 + 2 + 101);
	is_string(t_feed(s, (const char *)b.data, b.len, false),
	    "501 5.5.4 Invalid ENVID parameter\r\n", "ENVID of 101 bytes");
	t_line(&b, "RSET ", SMTP_LINE_MAX + 1);
	is_string(t_feed(s, (const char *)b.data, b.len, false),
	    "500 5.5.2 Line too long\r\n",
	    "a 513-byte non-MAIL line is refused even though it was read");
	smtp_session_free(&s);

	/* DATA text lines: limit 1000 configured. */
	for (int bw = 0; bw < 2; bw++) {
		struct smtp_settings set = t_set();

		set.text_line_max = 1000;
		s = t_new_set(&set);
		t_say(s, "EHLO c.example.net\r\n");
		t_line(&b, "", 1000);
		t_say(s, MR
		    "DATA\r\n");
		t_feed(s, (const char *)b.data, b.len, bw);
		is_string(t_say(s, ".\r\n"), "250 2.0.0 Ok: queued\r\n",
		    "text line of 1000 bytes (%s)", bw ? "bytewise" : "whole");
		t_line(&b, "", 1001);
		t_say(s, MR
		    "DATA\r\n");
		t_feed(s, (const char *)b.data, b.len, bw);
		is_string(t_say(s, ".\r\n"), "550 5.6.0 Message has a line "
		    "longer than 1000 bytes\r\n",
		    "text line of 1001 bytes (%s)",
		    bw ? "bytewise" : "whole");
		smtp_session_free(&s);
	}
	buf_free(&b);
}

static void
test_bare_eol_commands(void)
{
	struct smtp_session *s = t_ehlo();

	is_string(t_say(s, "NOOP\n"), "500 5.5.2 Bare LF in command\r\n",
	    "bare LF ends no command");
	is_string(t_say(s, "NO\rOP\r\n"), "500 5.5.2 Bare CR in command\r\n",
	    "bare CR inside a command");
	is_string(t_say(s, "MAIL FROM:<a@example.net>\r\r\n"),
	    "500 5.5.2 Bare CR in command\r\n", "CR CR LF");
	is_int(mail_calls, 0, "no MAIL ran");
	is_string(t_feed(s, "NOOP\0x\r\n", 8, false),
	    "500 5.5.2 NUL in command\r\n", "NUL in a command");
	smtp_session_free(&s);
}

/* Smuggling: each body carries a fake end of data and a second message;
 * none may end the first one, and the whole is refused. */
static void
test_smuggling(void)
{
	static const char *const ends[] = {
		"\n.\r\n", "\r\n.\n", "\r.\r\n", "\n.\n", "\r\n.\r",
		"\r.\n", "\n..\r\n", "\r\n\r.\r\n", "\r\n.\r\r\n",
	};
	static const char tail[] =
	    "MAIL FROM:<evil@example.net>\r\n"
	    "RCPT TO:<victim@example.org>\r\n"
	    "DATA\r\n"
	    "Subject: smuggled\r\n"
	    "\r\n";
	char body[512];

	for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++) {
		for (int bw = 0; bw < 2; bw++) {
			struct smtp_session *s = t_ehlo();
			const char *o;
			int n;

			n = snprintf(body, sizeof(body), MR "DATA\r\n"
			    "Subject: x\r\n\r\nbody%s%sevil\r\n.\r\n"
			    "NOOP\r\n", ends[i], tail);
			o = t_feed(s, body, (size_t)n, bw);
			is_string(o, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
			    "354 End data with <CR><LF>.<CR><LF>\r\n"
			    "550 5.6.0 Message contains bare CR or LF "
			    "characters, refused\r\n250 2.0.0 Ok\r\n",
			    "smuggling variant %zu refused as one message (%s)",
			    i, bw ? "bytewise" : "whole");
			ok(mail_calls == 1 && end_calls == 0 &&
			    reset_calls == 1, "variant %zu: one MAIL, no "
			    "data_end, one reset (%s)", i,
			    bw ? "bytewise" : "whole");
			smtp_session_free(&s);
		}
	}

	/* A real CRLF "." CRLF after a bare CR ends the message (refused);
	 * what follows is a new command, as any server reads it. */
	{
		struct smtp_session *s = t_ehlo();

		is_string(t_say(s, MR "DATA\r\nbody\r\n.\r\r\n.\r\nNOOP\r\n"),
		    "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
		    "354 End data with <CR><LF>.<CR><LF>\r\n"
		    "550 5.6.0 Message contains bare CR or LF characters, "
		    "refused\r\n250 2.0.0 Ok\r\n",
		    "CR CR LF . CR LF: refused at the real end");
		smtp_session_free(&s);
	}

	/* Bare LF and bare CR inside a line. */
	{
		struct smtp_session *s = t_ehlo();

		ok(strstr(t_message(s, "a\nb\r\n", 5), "550 5.6.0") != NULL,
		    "bare LF inside the message");
		ok(strstr(t_message(s, "a\rb\r\n", 5), "550 5.6.0") != NULL,
		    "bare CR inside the message");
		ok(strstr(t_message(s, "a\r\r\n", 4), "550 5.6.0") != NULL,
		    "CR CR LF in the message");
		ok(strstr(t_message(s, "ok\r\n", 4), "250 2.0.0") != NULL,
		    "a clean message after them is accepted");
		is_mem(msg.data, msg.len, "ok\r\n", 4, "and passed on whole");
		smtp_session_free(&s);
	}
	/* "." + CRLF only at the start of a line ends the message. */
	{
		struct smtp_session *s = t_ehlo();

		t_say(s, MR
		    "DATA\r\n");
		t_out_reset();
		is_string(t_say(s, "x.\r\n.x\r\n. \r\n"), "",
		    "no end before CRLF . CRLF");
		is_string(t_say(s, ".\r\n"), "250 2.0.0 Ok: queued\r\n", "end");
		is_mem(msg.data, msg.len, "x.\r\nx\r\n \r\n", 10,
		    "dots unstuffed only at line starts");
		smtp_session_free(&s);
	}
	/* The DATA line itself ends a line: an empty message. */
	{
		struct smtp_session *s = t_ehlo();

		ok(strstr(t_message(s, "", 0), "250 2.0.0 Ok: queued") != NULL,
		    "DATA CRLF . CRLF: empty message handed on");
		is_int(msg.len, 0, "no bytes");
		is_int(data_calls, 0, "no data call");
		smtp_session_free(&s);
	}
}

static void
test_starttls(void)
{
	struct smtp_settings set = t_set();
	struct smtp_session *s;
	const char *in = "STARTTLS\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:"
	    "<b@example.org>\r\n";
	size_t took;

	s = t_ehlo();
	buf_truncate(&out, 0);
	took = smtp_session_input(s, (const unsigned char *)in, strlen(in));
	is_int(took, strlen(in), "everything after STARTTLS consumed");
	is_string(buf_cstr(&out), "220 2.0.0 Ready to start TLS\r\n",
	    "only the STARTTLS reply");
	is_int(tls_calls, 1, "start_tls called");
	is_int(mail_calls, 0, "pipelined MAIL dropped");
	is_string(t_say(s, "MAIL FROM:<a@example.net>\r\n"),
	    "503 Send HELO/EHLO first\r\n", "EHLO needed again after TLS");
	ok(strstr(t_say(s, "EHLO c.example.net\r\n"), "STARTTLS") == NULL,
	    "no STARTTLS offered over TLS");
	ok(strstr(buf_cstr(&out), "250-AUTH PLAIN X-TWO\r\n") != NULL,
	    "AUTH offered over TLS");
	is_string(t_say(s, "STARTTLS\r\n"), "503 5.5.1 TLS already active\r\n",
	    "STARTTLS twice");
	smtp_session_free(&s);

	/* Without a certificate. */
	set.tls_available = false;
	s = t_new_set(&set);
	ok(strstr(t_say(s, "EHLO c.example.net\r\n"), "STARTTLS") == NULL,
	    "no STARTTLS without a certificate");
	is_string(t_say(s, "STARTTLS\r\n"),
	    "502 5.5.1 Command not implemented\r\n", "STARTTLS refused");
	smtp_session_free(&s);

	/* STARTTLS run from the kept queue drops what follows it there. */
	s = t_ehlo();
	mail_pending = true;
	t_say(s, "MAIL FROM:<a@example.net>\r\nRSET\r\nSTARTTLS\r\n"
	    "NOOP\r\nNOOP\r\n");
	t_out_reset();
	mail_pending = false;
	smtp_session_reply(s, 250, NULL, "Ok");
	is_string(buf_cstr(&out), "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"
	    "220 2.0.0 Ready to start TLS\r\n",
	    "queued STARTTLS runs; the NOOPs behind it are dropped");
	is_int(tls_calls, 1, "start_tls");
	is_int(reset_calls, 1, "RSET reset the transaction");
	is_string(t_say(s, "NOOP\r\n"), "250 Ok\r\n",
	    "the next input is the TLS stream (no EHLO: no enhanced code)");
	smtp_session_free(&s);

	/* STARTTLS inside a transaction. */
	s = t_txn();
	is_string(t_say(s, "STARTTLS\r\n"), "503 5.5.1 STARTTLS not allowed in "
	    "a mail transaction\r\n", "STARTTLS in a transaction");
	smtp_session_free(&s);
}

static void
test_bdat(void)
{
	struct smtp_session *s;
	const char *o;

	for (int bw = 0; bw < 2; bw++) {
		static const char in[] =
		    "BDAT 9\r\nSubject: "
		    "BDAT 6\r\nQUIT\r\n"
		    "BDAT 5 LAST\r\nb\r\n\r\n"
		    "NOOP\r\n";

		s = t_txn();
		o = t_feed(s, in, strlen(in), bw);
		is_string(o, "250 2.0.0 9 octets received\r\n"
		    "250 2.0.0 6 octets received\r\n"
		    "250 2.0.0 Ok: queued\r\n250 2.0.0 Ok\r\n",
		    "BDAT chunks, LAST, then a command (%s)",
		    bw ? "bytewise" : "whole");
		is_mem(msg.data, msg.len, "Subject: QUIT\r\nb\r\n\r\n", 20,
		    "chunk bytes passed on as they are (%s)",
		    bw ? "bytewise" : "whole");
		is_int(closed_calls, 0, "QUIT inside a chunk is data");
		is_int(begin_calls, 1, "data_begin once");
		is_int(end_calls, 1, "data_end once");
		/* Then DATA in the same session, then BDAT again. */
		o = t_message(s, "by data\r\n", 9);
		ok(strstr(o, "250 2.0.0 Ok: queued\r\n") != NULL,
		    "DATA after a BDAT message");
		is_mem(msg.data, msg.len, "by data\r\n", 9, "DATA message");
		o = t_fs(s, "MAIL FROM:<a@example.net>\r\nRCPT TO:"
		    "<b@example.org>\r\nBDAT 5 LAST\r\n..x\r\n", bw);
		ok(strstr(o, "250 2.0.0 Ok: queued\r\n") != NULL,
		    "BDAT after a DATA message");
		is_mem(msg.data, msg.len, "..x\r\n", 5,
		    "BDAT content is not unstuffed");
		smtp_session_free(&s);
	}

	/* CR at the end of one chunk, LF at the start of the next. */
	s = t_txn();
	o = t_say(s, "BDAT 2\r\na\rBDAT 2 LAST\r\n\nb");
	ok(strstr(o, "550") == NULL, "CRLF split across chunks is fine");
	smtp_session_free(&s);
	s = t_txn();
	o = t_say(s, "BDAT 2 LAST\r\na\r");
	is_string(o, "550 5.6.0 Message contains bare CR or LF characters, "
	    "refused\r\n", "bare CR at the very end");
	is_int(reset_calls, 1, "reset");
	smtp_session_free(&s);
	s = t_txn();
	o = t_say(s, "BDAT 3\r\na\nbBDAT 1 LAST\r\nc");
	is_string(o, "550 5.6.0 Message contains bare CR or LF characters, "
	    "refused\r\n503 5.5.1 Need MAIL command\r\n",
	    "bare LF in a chunk: refused at its end; the next chunk has no "
	    "transaction (its byte skipped)");
	smtp_session_free(&s);

	/* BDAT 0 LAST; BDAT without LAST then RSET. */
	s = t_txn();
	is_string(t_say(s, "BDAT 0 LAST\r\n"), "250 2.0.0 Ok: queued\r\n",
	    "BDAT 0 LAST");
	smtp_session_free(&s);
	s = t_txn();
	is_string(t_say(s, "BDAT 3\r\nabcRSET\r\n"),
	    "250 2.0.0 3 octets received\r\n250 2.0.0 Ok\r\n",
	    "BDAT then RSET");
	is_int(reset_calls, 1, "RSET resets a chunked transaction");
	is_int(end_calls, 0, "no data_end");
	smtp_session_free(&s);
	s = t_txn();
	is_string(t_say(s, "BDAT 3\r\nabcDATA\r\n"),
	    "250 2.0.0 3 octets received\r\n"
	    "503 5.5.1 DATA not allowed after BDAT\r\n", "DATA after BDAT");
	smtp_session_free(&s);

	/* A refused BDAT still has its bytes read. */
	s = t_ehlo();
	o = t_say(s, "BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n");
	is_string(o, "503 5.5.1 Need MAIL command\r\n250 2.0.0 Ok\r\n",
	    "BDAT without MAIL: bytes skipped, not run");
	is_int(closed_calls, 0, "the QUIT in it did not run");
	smtp_session_free(&s);
	s = t_ehlo();
	t_say(s, "MAIL FROM:<a@example.net>\r\n"
	    "RCPT TO:<unknown@example.org>\r\n");
	is_string(t_say(s, "BDAT 2 LAST\r\nxy"), "554 5.5.1 No valid "
	    "recipients\r\n", "BDAT with no valid recipient");
	smtp_session_free(&s);
	s = t_ehlo();
	is_string(t_say(s, "BDAT x\r\n"),
	    "501 5.5.4 Syntax: BDAT size [LAST]\r\n",
	    "BDAT syntax");
	is_string(t_say(s, "BDAT 1 FIRST\r\n"),
	    "501 5.5.4 Syntax: BDAT size [LAST]\r\n", "BDAT bad keyword");
	smtp_session_free(&s);

	/* Size: chunks adding up past the limit. */
	{
		struct smtp_settings set = t_set();

		set.size_max = 10;
		s = t_new_set(&set);
		t_say(s, "EHLO c.example.net\r\nMAIL FROM:<a@example.net>\r\n"
		    "RCPT TO:<b@example.org>\r\n");
		t_out_reset();
		o = t_say(s, "BDAT 8\r\n12345678BDAT 2 LAST\r\n\r\n");
		ok(strstr(o, "250 2.0.0 Ok: queued") != NULL,
		    "chunks of N bytes");
		t_say(s, MR);
		o = t_say(s, "BDAT 9\r\n123456789BDAT 2 LAST\r\n\r\n");
		ok(strstr(o, "552 5.3.4 Message size exceeds fixed limit")
		    != NULL, "chunks of N+1 bytes");
		smtp_session_free(&s);
	}

	/* Without CHUNKING offered BDAT is unknown. */
	{
		struct smtp_settings set = t_set();

		set.extensions &= ~SMTP_EXT_CHUNKING;
		s = t_new_set(&set);
		ok(strstr(t_say(s, "EHLO c.example.net\r\n"),
		    "CHUNKING") == NULL,
		    "no CHUNKING in EHLO");
		is_string(t_say(s, "BDAT 1 LAST\r\n"),
		    "500 5.5.1 Command unrecognized\r\n", "BDAT unknown");
		smtp_session_free(&s);
	}
}

static void
test_lmtp(void)
{
	struct smtp_settings set = t_set();
	struct smtp_session *s;
	const char *o;

	set.lmtp = true;
	set.extensions = SMTP_EXT_8BITMIME | SMTP_EXT_CHUNKING;
	s = smtp_session_new(&set, &cbs, NULL);
	cur = s;
	t_counters();
	buf_truncate(&out, 0);
	smtp_session_greet(s);
	is_string(buf_cstr(&out), "220 " HOST " LMTP loft\r\n",
	    "LMTP greeting");
	is_string(t_say(s, "EHLO x\r\n"),
	    "500 Command unrecognized: use LHLO\r\n",
	    "EHLO in LMTP");
	is_string(t_say(s, "LHLO c.example.net\r\n"), "250-" HOST "\r\n"
	    "250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
	    "250 CHUNKING\r\n",
	    "LHLO: PIPELINING and ENHANCEDSTATUSCODES are implied");
	lmtp_n = 2;
	lmtp_codes[0] = 250;
	lmtp_codes[1] = 452;
	o = t_say(s, MR
	    "RCPT TO:<unknown@example.org>\r\nRCPT TO:<c@example.org>\r\n"
	    "DATA\r\nhi\r\n.\r\nNOOP\r\n");
	is_string(o, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
	    "550 5.1.1 User unknown\r\n"
	    "250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
	    "250 2.0.0 Delivered\r\n452 4.2.2 Over quota\r\n250 2.0.0 Ok\r\n",
	    "one reply per accepted recipient, then the next command");

	/* Answered later, one at a time. */
	auto_done = false;
	t_say(s, MR
	    "RCPT TO:<c@example.org>\r\nBDAT 4 LAST\r\nhi\r\nNOOP\r\n");
	if (!ok(smtp_session_state(s) == SMTP_STATE_END, "waiting for replies"))
		diag("%s", buf_cstr(&out)), fflush(stdout);
	t_out_reset();
	smtp_session_data_done(s, 250, "2.0.0", "b ok");
	is_string(buf_cstr(&out), "250 2.0.0 b ok\r\n", "first reply written");
	is_int(smtp_session_state(s), SMTP_STATE_END, "still waiting");
	t_out_reset();
	smtp_session_data_done(s, 550, "5.1.1", "c gone");
	is_string(buf_cstr(&out), "550 5.1.1 c gone\r\n250 2.0.0 Ok\r\n",
	    "second reply, then the kept NOOP");
	is_int(smtp_session_state(s), SMTP_STATE_READY, "ready again");
	smtp_session_free(&s);
}

/* base64 of s (for the tests only). */
static const char *
t_b64(const char *s, size_t len)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	static char o[20000];
	size_t n = 0;

	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned char)s[i] << 16;

		if (i + 1 < len)
			v |= (unsigned char)s[i + 1] << 8;
		if (i + 2 < len)
			v |= (unsigned char)s[i + 2];
		o[n++] = tab[v >> 18];
		o[n++] = tab[(v >> 12) & 63];
		o[n++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
		o[n++] = i + 2 < len ? tab[v & 63] : '=';
	}
	o[n] = '\0';
	return o;
}

static void
test_auth(void)
{
	struct smtp_settings set = t_set();
	struct smtp_session *s;
	char line[256];
	struct buf b;

	/* Before TLS, without allow_plaintext_auth: not offered. */
	s = t_ehlo();
	ok(strstr(t_say(s, "EHLO c.example.net\r\n"), "AUTH") == NULL,
	    "AUTH not offered before TLS");
	is_string(t_say(s, "AUTH PLAIN\r\n"), "538 5.7.11 Encryption required "
	    "for requested authentication mechanism\r\n", "AUTH before TLS");
	smtp_session_free(&s);

	set.allow_plaintext_auth = true;
	s = t_new_set(&set);
	is_string(t_say(s, "AUTH PLAIN\r\n"), "503 Send EHLO first\r\n",
	    "AUTH before EHLO");
	ok(strstr(t_say(s, "EHLO c.example.net\r\n"),
	    "250-AUTH PLAIN X-TWO\r\n") != NULL, "AUTH offered when allowed");
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n",
	    t_b64("\0alice\0wrong", 12));
	is_string(t_say(s, line), "535 5.7.8 Authentication credentials "
	    "invalid\r\n", "wrong password");
	is_string(t_say(s, "AUTH CRAM-MD5\r\n"), "504 5.5.4 Unrecognized "
	    "authentication type\r\n", "unknown mechanism");
	is_string(t_say(s, "AUTH PLAIN !!!!\r\n"), "501 5.5.2 Invalid base64 "
	    "data\r\n", "bad initial response");
	is_string(t_say(s, "AUTH PLAIN\r\n"), "334 \r\n", "empty challenge");
	is_string(t_say(s, "*\r\n"), "501 5.0.0 Authentication cancelled\r\n",
	    "cancelled");
	is_int(aborts, 1, "sasl_abort on cancel");
	is_string(t_say(s, "AUTH x-two\r\n"), "334 d2hvPw==\r\n", "challenge");
	is_string(t_say(s, "%%%\r\n"), "501 5.5.2 Invalid base64 data\r\n",
	    "bad response");
	is_int(aborts, 2, "sasl_abort on bad base64");
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n",
	    t_b64("\0x\0tf", 5));
	is_string(t_say(s, line), "454 4.7.0 Temporary authentication "
	    "failure\r\n", "temporary failure");
	t_say(s, "AUTH X-TWO\r\n");
	snprintf(line, sizeof(line), "%s\r\n", t_b64("alice", 5));
	is_string(t_say(s, line), "235 2.7.0 Authentication successful\r\n",
	    "two-step success");
	is_string(smtp_session_auth_user(s), "alice", "user known");
	is_string(t_say(s, "AUTH PLAIN\r\n"), "503 5.5.1 Already "
	    "authenticated\r\n", "AUTH twice");
	t_say(s, "MAIL FROM:<a@example.net> AUTH=a+40example.net\r\n");
	is_string(got_auth_user, "alice", "auth user handed to MAIL");
	is_string(got_auth, "a+40example.net", "AUTH= handed on");
	smtp_session_free(&s);

	/* Initial response "=", pending answers, and the line limit. */
	s = t_new_set(&set);
	t_say(s, "EHLO c.example.net\r\n");
	sasl_pending = true;
	is_string(t_say(s, "AUTH PLAIN =\r\nNOOP\r\n"), "",
	    "pending: nothing answered");
	t_out_reset();
	smtp_session_auth_reply(s, SMTP_AUTH_CONTINUE,
	    (const unsigned char *)"more", 4, NULL);
	is_string(buf_cstr(&out), "334 bW9yZQ==\r\n", "challenge given later; "
	    "the queued NOOP is the response");
	t_out_reset();
	smtp_session_auth_reply(s, SMTP_AUTH_OK, NULL, 0, "bob");
	is_string(buf_cstr(&out), "235 2.7.0 Authentication successful\r\n",
	    "success given later");
	is_string(smtp_session_auth_user(s), "bob", "user from the reply");
	smtp_session_free(&s);

	buf_init(&b, SMTP_SASL_LINE_MAX + 16);
	for (int extra = 0; extra < 2; extra++) {
		s = t_new_set(&set);
		t_say(s, "EHLO c.example.net\r\nAUTH X-TWO\r\n");
		t_line(&b, "", SMTP_SASL_LINE_MAX + (size_t)extra);
		sasl_calls = 0;
		t_feed(s, (const char *)b.data, b.len, false);
		if (extra == 0)
			ok(sasl_calls == 0 && strcmp(buf_cstr(&out),
			    "501 5.5.2 Invalid base64 data\r\n") == 0,
			    "SASL line of N bytes read and decoded (501)");
		else
			ok(sasl_calls == 0 && strcmp(buf_cstr(&out),
			    "500 5.5.6 Authentication exchange line is too "
			    "long\r\n") == 0,
			    "SASL line of N+1 bytes: 500 5.5.6");
		smtp_session_free(&s);
	}
	buf_free(&b);

	/* Submission: TLS and AUTH required before MAIL. */
	set = t_set();
	set.require_tls = true;
	set.require_auth = true;
	set.allow_plaintext_auth = true;
	s = t_new_set(&set);
	ok(strstr(t_say(s, "EHLO c.example.net\r\n"), "AUTH") == NULL,
	    "require_tls: no AUTH before TLS, whatever allow_plaintext_auth");
	is_string(t_say(s, "AUTH PLAIN\r\n"), "538 5.7.11 Encryption required "
	    "for requested authentication mechanism\r\n",
	    "require_tls: AUTH refused before TLS");
	is_string(t_say(s, "MAIL FROM:<a@example.net>\r\n"), "530 5.7.0 Must "
	    "issue a STARTTLS command first\r\n", "587: TLS first");
	t_say(s, "STARTTLS\r\n");
	t_say(s, "EHLO c.example.net\r\n");
	is_string(t_say(s, "MAIL FROM:<a@example.net>\r\n"), "530 5.7.0 "
	    "Authentication required\r\n", "587: AUTH first");
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n",
	    t_b64("\0alice\0secret", 13));
	is_string(t_say(s, line), "235 2.7.0 Authentication successful\r\n",
	    "AUTH PLAIN with initial response over TLS");
	is_string(t_say(s, "MAIL FROM:<a@example.net>\r\n"), "250 2.1.0 Ok\r\n",
	    "MAIL after AUTH");
	is_string(t_say(s, "AUTH PLAIN\r\n"), "503 5.5.1 Already "
	    "authenticated\r\n", "AUTH in a transaction (already authed)");
	smtp_session_free(&s);
}

static void
test_async(void)
{
	struct smtp_session *s = t_ehlo();
	struct buf b;
	size_t took;

	mail_pending = true;
	is_string(t_say(s, MR "NOOP\r\n"), "",
	    "MAIL pending: nothing answered");
	is_int(rcpt_calls, 0, "RCPT waits");
	rcpt_pending = true;
	t_out_reset();
	smtp_session_reply(s, 250, "2.1.0", "Sender ok");
	is_string(buf_cstr(&out), "250 2.1.0 Sender ok\r\n",
	    "MAIL answered later; RCPT now pending");
	is_int(rcpt_calls, 1, "RCPT asked");
	t_out_reset();
	smtp_session_reply(s, 451, "4.3.0", "Try\r\nlater");
	is_string(buf_cstr(&out), "451 4.3.0 Try??later\r\n250 2.0.0 Ok\r\n",
	    "RCPT answered later (text made safe), then NOOP");
	smtp_session_free(&s);

	/* The queue kept while waiting: N bytes, not N+1. */
	buf_init(&b, 2 * SMTP_QUEUE_MAX);
	s = t_ehlo();
	mail_pending = true;
	t_say(s, "MAIL FROM:<a@example.net>\r\n");
	while (b.len < SMTP_QUEUE_MAX + 1)
		buf_append_str(&b, "NOOP\r\n");
	buf_truncate(&b, SMTP_QUEUE_MAX + 1);
	took = smtp_session_input(s, b.data, b.len);
	is_int(took, SMTP_QUEUE_MAX, "a full queue takes N bytes");
	is_int(smtp_session_input(s, b.data + took, 1), 0,
	    "and not the N+1-th");
	t_out_reset();
	smtp_session_reply(s, 250, NULL, "Ok");
	is_int(out.len, (1 + SMTP_QUEUE_MAX / 6) * strlen("250 2.0.0 Ok\r\n"),
	    "every kept NOOP answered");
	ok(writes >= 1, "written");
	took = smtp_session_input(s, b.data + took, 1);
	is_int(took, 1, "room again");
	smtp_session_free(&s);
	buf_free(&b);

	/* Freed while a transaction is open. */
	s = t_txn();
	t_say(s, "DATA\r\nabc");
	reset_calls = 0;
	smtp_session_free(&s);
	is_int(reset_calls, 1, "free resets an open transaction");
}

static void
test_enhanced(void)
{
	struct smtp_settings set = t_set();
	struct smtp_session *s;

	set.extensions &= ~SMTP_EXT_ENHANCED;
	s = t_new_set(&set);
	ok(strstr(t_say(s, "EHLO c.example.net\r\n"), "ENHANCED") == NULL,
	    "ENHANCEDSTATUSCODES not offered");
	is_string(t_say(s, "MAIL FROM:<a@example.net>\r\n"), "250 Ok\r\n",
	    "no enhanced code then");
	smtp_session_free(&s);
	set = t_set();
	set.size_max = 0;
	s = t_new_set(&set);
	ok(strstr(t_say(s, "EHLO c.example.net\r\n"), "250-SIZE\r\n") != NULL,
	    "SIZE without a limit");
	smtp_session_free(&s);
}

/* fn must panic (abort) in a child. */
static void
t_expect_panic(void (*fn)(void), const char *name)
{
	pid_t pid;
	int status;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		bail("fork");
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		if (fd >= 0)
			dup2(fd, 2);
		fn();
		_exit(0);
	}
	waitpid(pid, &status, 0);
	ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
	    "panic: %s", name);
}

static void
p_reply_nothing(void)
{
	struct smtp_session *s = t_ehlo();

	smtp_session_reply(s, 250, NULL, "Ok");
}

static void
p_done_nothing(void)
{
	struct smtp_session *s = t_txn();

	smtp_session_data_done(s, 250, NULL, "Ok");
}

static void
p_bad_enh(void)
{
	struct smtp_session *s = t_ehlo();

	mail_pending = true;
	t_say(s, "MAIL FROM:<a@example.net>\r\n");
	smtp_session_reply(s, 550, "4.1.0", "mismatch");
}

static void
p_auth_nothing(void)
{
	struct smtp_session *s = t_ehlo();

	smtp_session_auth_reply(s, SMTP_AUTH_OK, NULL, 0, "x");
}

static void
p_bad_line_max(void)
{
	struct smtp_settings set = t_set();

	set.text_line_max = 999;
	(void)smtp_session_new(&set, &cbs, NULL);
}

int
main(void)
{
	buf_init(&out, 1024 * 1024);
	buf_init(&msg, 1024 * 1024);
	test_conversation();
	test_pipelining();
	test_sequencing();
	test_mail_syntax();
	test_error_limit();
	test_rcpt_limit();
	test_size_limit();
	test_line_limits();
	test_bare_eol_commands();
	test_smuggling();
	test_starttls();
	test_bdat();
	test_lmtp();
	test_auth();
	test_async();
	test_enhanced();
	t_expect_panic(p_reply_nothing, "reply with nothing pending");
	t_expect_panic(p_done_nothing, "data_done without a message");
	t_expect_panic(p_bad_enh, "enhanced code of another class");
	t_expect_panic(p_auth_nothing, "auth_reply with nothing pending");
	t_expect_panic(p_bad_line_max, "text_line_max below 1000");
	buf_free(&out);
	buf_free(&msg);
	return done_testing();
}
