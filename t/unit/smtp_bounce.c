/*
 * Unit tests for smtp/smtp_bounce.c:
 * - xtext decoding (RFC 3461), at the output size N and N+1;
 * - a whole report for one failed recipient against a golden text;
 * - which recipients are reported: three of six (delivered, NOTIFY
 *   without FAILURE and NOTIFY=NEVER are not); no bounce for the null
 *   sender, without failures, or when no failure asked for one;
 * - RET=HDRS and bounce_size_limit at N and N+1: headers only;
 * - ORCPT decoded and shown; Status and Diagnostic-Code from each form
 *   of diagnostic; hostile bytes in a diagnostic never reach the report;
 *   folding keeps lines short; the boundary occurs in no part;
 * - Python's email package reads the report as a multipart/report;
 * - into a real queue: the bounce read back with the queue API (sender
 *   <>, one recipient: the original sender, the content as composed).
 */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "buf.h"
#include "smtp/smtp_bounce.h"
#include "smtp/smtp_queue.h"
#include "tap.h"

#define ORIG_ID		"0SZ7R2QW0B7X00ABC"
#define ARRIVAL		1732900000
#define NOW		1733000000

static char base[256];		/* this run's directory under /tmp */
static unsigned int nfiles;

static const char orig_msg[] =
    "Received: from client (client [192.0.2.9])\r\n"
    "\tby mail.example.org (loft) with ESMTP id " ORIG_ID ";\r\n"
    "\tFri, 29 Nov 2024 17:06:40 +0000\r\n"
    "From: Alice <alice@example.org>\r\n"
    "To: Bob <bob@example.net>\r\n"
    "Subject: lunch\r\n"
    "\r\n"
    "Shall we meet at noon?\r\n"
    "BODYMARK\r\n";

/* content_fd: a file holding len bytes of data, open for reading. */
static int
content_fd(const void *data, size_t len)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/c%u", base, nfiles++);
	if ((fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600)) < 0)
		bail("open %s: %s", path, strerror(errno));
	if (len > 0 && write(fd, data, len) != (ssize_t)len)
		bail("write %s: %s", path, strerror(errno));
	return fd;
}

static void
rcpt_set(struct smtp_queue_rcpt *r, const char *addr, const char *orcpt,
    unsigned notify, enum smtp_queue_state state, const char *diag)
{
	memset(r, 0, sizeof(*r));
	r->addr = (char *)addr;
	r->orcpt = (char *)orcpt;
	r->notify = notify;
	r->state = state;
	r->diag = (unsigned char *)diag;
	r->diag_len = diag != NULL ? strlen(diag) : 0;
}

static void
env_set(struct smtp_queue_env *env, const char *sender,
    struct smtp_queue_rcpt *rcpts, unsigned count)
{
	memset(env, 0, sizeof(*env));
	strcpy(env->id, ORIG_ID);
	env->sender = (char *)sender;
	env->bounce = sender[0] == '\0';
	env->arrival = ARRIVAL;
	env->ret = SMTP_RET_NONE;
	env->rcpts = rcpts;
	env->rcpt_count = count;
	env->lock_fd = -1;
}

static void
in_set(struct smtp_bounce_in *in, const struct smtp_queue_env *env)
{
	memset(in, 0, sizeof(*in));
	in->env = env;
	in->reporting_mta = "mail.example.org";
	in->postmaster = "postmaster";
	in->id = "0SZ7R3AAAAAAA0DEF";
	in->now = NOW;
	in->bounce_size_limit = SMTP_BOUNCE_DEF_SIZE_LIMIT;
	in->boundary = "BOUNDARY";
}

/* compose: the report as a string (free it), or NULL; *ret_r the
 * return value. */
static char *
compose(const struct smtp_bounce_in *in, int fd, int *ret_r)
{
	struct buf b;
	const char *error = NULL;

	buf_init(&b, 1 << 24);
	*ret_r = smtp_bounce_compose(in, fd, &b, &error);
	if (*ret_r < 0)
		diag("compose: %s", error);
	if (*ret_r != 0) {
		buf_free(&b);
		return NULL;
	}
	buf_cstr(&b);
	return (char *)buf_steal(&b, NULL);
}

static unsigned
occurrences(const char *hay, const char *needle)
{
	unsigned n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

/* lines_ok: every line ends in CRLF, no CR or LF elsewhere, none longer
 * than max bytes (CRLF not counted). */
static bool
lines_ok(const char *s, size_t max)
{
	const char *p = s, *lf;

	while (*p != '\0') {
		if ((lf = strchr(p, '\n')) == NULL)
			return false;
		if (lf == p || lf[-1] != '\r' || (size_t)(lf - p - 1) > max)
			return false;
		if (memchr(p, '\r', (size_t)(lf - p - 1)) != NULL)
			return false;
		p = lf + 1;
	}
	return true;
}

/* part_of: the text between "Content-Type: TYPE" and the next
 * "--BOUNDARY" line, as a new string, or NULL. */
static char *
part_of(const char *report, const char *type, const char *boundary)
{
	char want[128], delim[128];
	const char *p, *end;

	snprintf(want, sizeof(want), "\r\nContent-Type: %s", type);
	snprintf(delim, sizeof(delim), "\r\n--%s", boundary);
	if ((p = strstr(report, want)) == NULL ||
	    (p = strstr(p, "\r\n\r\n")) == NULL)
		return NULL;
	p += 4;
	if ((end = strstr(p, delim)) == NULL)
		return NULL;
	return strndup(p, (size_t)(end - p));
}

/*
 * xtext
 */

static void
test_xtext(void)
{
	char out[16];

	ok(smtp_bounce_xtext_decode("bob+2Bx@ex", out, sizeof(out)) == 0 &&
	    strcmp(out, "bob+x@ex") == 0, "xtext: +2B decodes to +");
	ok(smtp_bounce_xtext_decode("a+3Db", out, sizeof(out)) == 0 &&
	    strcmp(out, "a=b") == 0, "xtext: +3D decodes to =");
	is_int(smtp_bounce_xtext_decode("a+2b", out, sizeof(out)), -1,
	    "xtext: lower-case hex refused");
	is_int(smtp_bounce_xtext_decode("a+2", out, sizeof(out)), -1,
	    "xtext: a cut escape refused");
	is_int(smtp_bounce_xtext_decode("a=b", out, sizeof(out)), -1,
	    "xtext: a raw = refused");
	is_int(smtp_bounce_xtext_decode("a b", out, sizeof(out)), -1,
	    "xtext: a raw space refused");
	is_int(smtp_bounce_xtext_decode("a+0Db", out, sizeof(out)), -1,
	    "xtext: an encoded CR is not shown");
	is_int(smtp_bounce_xtext_decode("a+00b", out, sizeof(out)), -1,
	    "xtext: an encoded NUL is not shown");
	is_int(smtp_bounce_xtext_decode("a+C3+A9", out, sizeof(out)), -1,
	    "xtext: encoded 8-bit bytes are not shown decoded");
	/* 15 characters fill 16 bytes with the NUL; 16 do not. */
	is_int(smtp_bounce_xtext_decode("abcdefghijklmno", out, 16), 0,
	    "xtext: output of outsize - 1 bytes fits");
	is_int(smtp_bounce_xtext_decode("abcdefghijklmnop", out, 16), -1,
	    "xtext: outsize bytes do not");
}

/*
 * The golden report.
 */

static const char golden[] =
    "Received: by mail.example.org (loft) id 0SZ7R3AAAAAAA0DEF;\r\n"
    "\tSat, 30 Nov 2024 20:53:20 +0000\r\n"
    "Auto-Submitted: auto-replied\r\n"
    "From: \"Mail Delivery System\" <MAILER-DAEMON@mail.example.org>\r\n"
    "To: <alice@example.org>\r\n"
    "Subject: Undelivered Mail Returned to Sender\r\n"
    "Date: Sat, 30 Nov 2024 20:53:20 +0000\r\n"
    "Message-ID: <0SZ7R3AAAAAAA0DEF@mail.example.org>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
    "\tboundary=\"BOUNDARY\"\r\n"
    "Content-Transfer-Encoding: 7bit\r\n"
    "\r\n"
    "This is a MIME-encapsulated message.\r\n"
    "\r\n"
    "--BOUNDARY\r\n"
    "Content-Description: Notification\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "This is the mail system at host mail.example.org.\r\n"
    "\r\n"
    "I'm sorry to have to inform you that your message could not\r\n"
    "be delivered to one or more recipients. It's attached below.\r\n"
    "\r\n"
    "For further assistance, please send mail to postmaster.\r\n"
    "\r\n"
    "If you do so, please include this problem report. You can\r\n"
    "delete your own text from the attached returned message.\r\n"
    "\r\n"
    "                   The mail system\r\n"
    "\r\n"
    "<bob@example.net>: host mx.example.net[192.0.2.3] said: 550 5.1.1\r\n"
    "    <bob@example.net>: Recipient address rejected: User unknown "
    "(in reply to\r\n"
    "    RCPT TO command)\r\n"
    "\r\n"
    "\r\n"
    "--BOUNDARY\r\n"
    "Content-Description: Delivery report\r\n"
    "Content-Type: message/delivery-status\r\n"
    "\r\n"
    "Reporting-MTA: dns; mail.example.org\r\n"
    "X-Loft-Queue-ID: " ORIG_ID "\r\n"
    "X-Loft-Sender: rfc822; alice@example.org\r\n"
    "Arrival-Date: Fri, 29 Nov 2024 17:06:40 +0000\r\n"
    "\r\n"
    "Final-Recipient: rfc822; bob@example.net\r\n"
    "Original-Recipient: rfc822;bob@example.net\r\n"
    "Action: failed\r\n"
    "Status: 5.1.1\r\n"
    "Remote-MTA: dns; mx.example.net\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: Recipient "
    "address\r\n"
    "    rejected: User unknown\r\n"
    "Last-Attempt-Date: Sat, 30 Nov 2024 20:43:20 +0000\r\n"
    "\r\n"
    "--BOUNDARY\r\n"
    "Content-Description: Undelivered Message\r\n"
    "Content-Type: message/rfc822\r\n"
    "\r\n";

/* As qmgr records a remote refusal: its DSN, then Postfix's words. */
#define REMOTE_550 "5.1.1 host mx.example.net[192.0.2.3] said: 550 5.1.1 " \
    "<bob@example.net>: Recipient address rejected: User unknown " \
    "(in reply to RCPT TO command)"

static void
test_golden(void)
{
	struct smtp_queue_rcpt r[1];
	struct smtp_queue_env env;
	struct smtp_bounce_in in;
	char *got, *want;
	int fd, ret;

	rcpt_set(&r[0], "bob@example.net", "rfc822;bob@example.net", 0,
	    SMTP_QUEUE_FAILED, REMOTE_550);
	r[0].last_attempt = NOW - 600;
	env_set(&env, "alice@example.org", r, 1);
	in_set(&in, &env);
	fd = content_fd(orig_msg, strlen(orig_msg));
	got = compose(&in, fd, &ret);
	is_int(ret, 0, "golden: compose for one failed recipient");
	if (asprintf(&want, "%s%s\r\n--BOUNDARY--\r\n", golden,
	    orig_msg) < 0)
		bail("asprintf");
	is_string(got, want, "golden: the whole report, byte for byte");
	if (got != NULL && strcmp(got, want) != 0)
		diag("%s", got);
	ok(got != NULL && lines_ok(got, 78), "golden: CRLF lines, none "
	    "over 78");
	free(want);
	free(got);
	close(fd);
}

/*
 * Who is reported.
 */

static void
test_three(void)
{
	struct smtp_queue_rcpt r[6];
	struct smtp_queue_env env;
	struct smtp_bounce_in in;
	char *got, *status;
	int fd, ret;

	rcpt_set(&r[0], "one@example.net", NULL, 0, SMTP_QUEUE_FAILED,
	    "550 5.1.1 no such user");
	rcpt_set(&r[1], "ok@example.net", NULL, 0, SMTP_QUEUE_DELIVERED,
	    "250 2.0.0 Ok");
	rcpt_set(&r[2], "two@example.net", NULL, SMTP_NOTIFY_FAILURE |
	    SMTP_NOTIFY_DELAY, SMTP_QUEUE_FAILED, "5.2.2 mailbox full");
	rcpt_set(&r[3], "quiet@example.net", NULL, SMTP_NOTIFY_SUCCESS,
	    SMTP_QUEUE_FAILED, "550 5.1.1 quiet");
	rcpt_set(&r[4], "never@example.net", NULL, SMTP_NOTIFY_NEVER,
	    SMTP_QUEUE_FAILED, "550 5.1.1 never");
	rcpt_set(&r[5], "three@example.net", NULL, 0, SMTP_QUEUE_FAILED,
	    "451 4.4.1 connection timed out");
	env_set(&env, "alice@example.org", r, 6);
	in_set(&in, &env);
	fd = content_fd(orig_msg, strlen(orig_msg));
	got = compose(&in, fd, &ret);
	is_int(ret, 0, "three: compose");
	if (got == NULL)
		got = strdup("");
	status = part_of(got, "message/delivery-status", "BOUNDARY");
	ok(status != NULL, "three: a delivery-status part");
	if (status == NULL)
		status = strdup("");
	is_int(occurrences(status, "Final-Recipient:"), 3,
	    "three: three recipients in the status part");
	is_int(occurrences(status, "Action: failed\r\n"), 3,
	    "three: each with Action: failed");
	ok(strstr(status, "Final-Recipient: rfc822; one@example.net\r\n") &&
	    strstr(status, "Final-Recipient: rfc822; two@example.net\r\n") &&
	    strstr(status, "Final-Recipient: rfc822; three@example.net\r\n"),
	    "three: the failed ones that asked for it");
	ok(strstr(got, "ok@example.net") == NULL &&
	    strstr(got, "quiet@example.net") == NULL &&
	    strstr(got, "never@example.net") == NULL,
	    "three: not the delivered one, nor NOTIFY=SUCCESS or NEVER");
	ok(strstr(got, "\r\n<one@example.net>: 550 5.1.1 no such user\r\n") &&
	    strstr(got, "\r\n<two@example.net>: mailbox full\r\n") &&
	    strstr(got, "\r\n<three@example.net>: 451 4.4.1 connection "
	    "timed out\r\n"), "three: a paragraph each in the text part");
	is_int(occurrences(got, "\r\n--BOUNDARY\r\n"), 3,
	    "three: three parts");
	is_int(occurrences(got, "\r\n--BOUNDARY--\r\n"), 1,
	    "three: one closing delimiter");
	free(status);
	free(got);
	close(fd);
}

static void
test_not_due(void)
{
	struct smtp_queue_rcpt r[2];
	struct smtp_queue_env env;
	struct smtp_bounce_in in;
	struct buf b;
	const char *error;

	buf_init(&b, 1 << 20);
	buf_append_str(&b, "keep");
	rcpt_set(&r[0], "bob@example.net", NULL, 0, SMTP_QUEUE_FAILED,
	    "550 5.1.1 no");
	rcpt_set(&r[1], "carol@example.net", NULL, 0, SMTP_QUEUE_FAILED,
	    "550 5.1.1 no");
	env_set(&env, "", r, 2);
	in_set(&in, &env);
	is_int(smtp_bounce_compose(&in, -1, &b, &error), 1,
	    "null sender: no bounce");
	is_int(b.len, 4, "null sender: out unchanged");
	env_set(&env, "alice@example.org", r, 2);
	env.bounce = true;
	is_int(smtp_bounce_compose(&in, -1, &b, &error), 1,
	    "a bounce (bounce flag) is never bounced");
	env.bounce = false;
	r[0].state = SMTP_QUEUE_DELIVERED;
	r[1].state = SMTP_QUEUE_DEFERRED;
	is_int(smtp_bounce_compose(&in, -1, &b, &error), 1,
	    "no failed recipient: no bounce");
	r[0].state = r[1].state = SMTP_QUEUE_FAILED;
	r[0].notify = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_DELAY;
	r[1].notify = SMTP_NOTIFY_NEVER;
	is_int(smtp_bounce_compose(&in, -1, &b, &error), 1,
	    "every failure with NOTIFY without FAILURE: no bounce");
	r[1].notify = SMTP_NOTIFY_FAILURE;
	is_int(smtp_bounce_compose(&in, -1, &b, &error), 0,
	    "one with NOTIFY=FAILURE: a bounce");
	ok(b.len > 4 && memcmp(b.data, "keep", 4) == 0,
	    "the report is appended to out");
	buf_free(&b);
}

/*
 * What of the original is returned.
 */

/* third: compose for one failure with ret and limit; the third part's
 * type into type_r (static) and whether the body came along. */
static int
third(enum smtp_ret ret, uint64_t limit, const char *msg, size_t len,
    const char **type_r, bool *body_r)
{
	struct smtp_queue_rcpt r[1];
	struct smtp_queue_env env;
	struct smtp_bounce_in in;
	char *got;
	int fd, rv;

	rcpt_set(&r[0], "bob@example.net", NULL, 0, SMTP_QUEUE_FAILED,
	    "550 5.1.1 no");
	env_set(&env, "alice@example.org", r, 1);
	env.ret = ret;
	in_set(&in, &env);
	in.bounce_size_limit = limit;
	fd = content_fd(msg, len);
	got = compose(&in, fd, &rv);
	close(fd);
	*type_r = "none";
	*body_r = false;
	if (got == NULL)
		return rv;
	if (strstr(got, "Content-Type: message/rfc822\r\n"))
		*type_r = "message/rfc822";
	else if (strstr(got, "Content-Type: text/rfc822-headers\r\n"))
		*type_r = "text/rfc822-headers";
	*body_r = strstr(got, "BODYMARK") != NULL;
	free(got);
	return rv;
}

static void
test_original(void)
{
	size_t len = strlen(orig_msg);
	const char *type;
	bool body;
	char *hdrs;
	struct smtp_queue_rcpt r[1];
	struct smtp_queue_env env;
	struct smtp_bounce_in in;
	char *got;
	int fd, rv;

	third(SMTP_RET_NONE, len, orig_msg, len, &type, &body);
	ok(strcmp(type, "message/rfc822") == 0 && body,
	    "size == bounce_size_limit: returned in full");
	third(SMTP_RET_NONE, len - 1, orig_msg, len, &type, &body);
	ok(strcmp(type, "text/rfc822-headers") == 0 && !body,
	    "size == bounce_size_limit + 1: headers only");
	third(SMTP_RET_FULL, 0, orig_msg, len, &type, &body);
	ok(strcmp(type, "message/rfc822") == 0 && body,
	    "bounce_size_limit 0: no limit");
	third(SMTP_RET_HDRS, 1 << 20, orig_msg, len, &type, &body);
	ok(strcmp(type, "text/rfc822-headers") == 0 && !body,
	    "RET=HDRS: headers only");

	/* The header part holds the fields and ends at the last one. */
	rcpt_set(&r[0], "bob@example.net", NULL, 0, SMTP_QUEUE_FAILED,
	    "550 5.1.1 no");
	env_set(&env, "alice@example.org", r, 1);
	env.ret = SMTP_RET_HDRS;
	in_set(&in, &env);
	fd = content_fd(orig_msg, len);
	got = compose(&in, fd, &rv);
	hdrs = got != NULL ? part_of(got, "text/rfc822-headers",
	    "BOUNDARY") : NULL;
	ok(hdrs != NULL && strlen(hdrs) ==
	    (size_t)(strstr(orig_msg, "\r\n\r\n") + 2 - orig_msg) &&
	    memcmp(hdrs, orig_msg, strlen(hdrs)) == 0,
	    "RET=HDRS: the header fields exactly, without the empty line");
	free(hdrs);
	free(got);
	close(fd);

	/* No content: two parts. */
	env.ret = SMTP_RET_NONE;
	got = compose(&in, -1, &rv);
	ok(got != NULL && occurrences(got, "\r\n--BOUNDARY\r\n") == 2 &&
	    strstr(got, "message/rfc822") == NULL,
	    "no content fd: two parts");
	free(got);
}

/* A header longer than SMTP_BOUNCE_HEADER_MAX is cut at a line end. */
static void
test_long_header(void)
{
	struct smtp_queue_rcpt r[1];
	struct smtp_queue_env env;
	struct smtp_bounce_in in;
	struct buf m;
	char *got, *hdrs;
	int fd, rv;

	buf_init(&m, 1 << 20);
	while (m.len < SMTP_BOUNCE_HEADER_MAX + 1000)
		buf_append_str(&m, "X-Filler: 0123456789012345678901234567"
		    "89012345678901234567890123456789\r\n");
	buf_append_str(&m, "\r\nBODYMARK\r\n");
	rcpt_set(&r[0], "bob@example.net", NULL, 0, SMTP_QUEUE_FAILED,
	    "550 5.1.1 no");
	env_set(&env, "alice@example.org", r, 1);
	in_set(&in, &env);
	fd = content_fd(m.data, m.len);
	got = compose(&in, fd, &rv);
	hdrs = got != NULL ? part_of(got, "text/rfc822-headers",
	    "BOUNDARY") : NULL;
	ok(hdrs != NULL && strlen(hdrs) <= SMTP_BOUNCE_HEADER_MAX &&
	    strlen(hdrs) > SMTP_BOUNCE_HEADER_MAX - 100 &&
	    hdrs[strlen(hdrs) - 1] == '\n' &&
	    memcmp(hdrs, m.data, strlen(hdrs)) == 0,
	    "a long header: cut at SMTP_BOUNCE_HEADER_MAX, at a line end");
	ok(got != NULL && strstr(got, "BODYMARK") == NULL,
	    "a long header: no body");
	free(hdrs);
	free(got);
	close(fd);
	buf_free(&m);
}

/*
 * Fields of the status part.
 */

/* status_for: the status part of a report for one failed recipient
 * with diag (diag_len bytes) and orcpt. */
static char *
status_for(const char *reason, size_t reason_len, const char *orcpt,
    char **whole_r)
{
	struct smtp_queue_rcpt r[1];
	struct smtp_queue_env env;
	struct smtp_bounce_in in;
	char *got, *status;
	int rv;

	rcpt_set(&r[0], "bob@example.net", orcpt, 0, SMTP_QUEUE_FAILED, NULL);
	r[0].diag = (unsigned char *)reason;
	r[0].diag_len = reason_len;
	env_set(&env, "alice@example.org", r, 1);
	in_set(&in, &env);
	got = compose(&in, -1, &rv);
	status = got != NULL ? part_of(got, "message/delivery-status",
	    "BOUNDARY") : NULL;
	if (whole_r != NULL)
		*whole_r = got;
	else
		free(got);
	return status != NULL ? status : strdup("");
}

static void
check_status(const char *reason, const char *want1, const char *want2,
    const char *name)
{
	char *s = status_for(reason, strlen(reason), NULL, NULL);

	ok(strstr(s, want1) != NULL && (want2 == NULL ||
	    strstr(s, want2) != NULL), "%s", name);
	if (strstr(s, want1) == NULL || (want2 != NULL &&
	    strstr(s, want2) == NULL))
		diag("%s", s);
	free(s);
}

static void
test_status(void)
{
	char *s, *whole;

	check_status("550 5.1.1 no such user", "\r\nStatus: 5.1.1\r\n",
	    "\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n",
	    "a reply with an enhanced code: Status 5.1.1, smtp diagnostic");
	check_status("552 5.3.4 message too big", "\r\nStatus: 5.3.4\r\n",
	    NULL, "another enhanced code: Status 5.3.4");
	check_status("554 Transaction failed", "\r\nStatus: 5.0.0\r\n",
	    "Diagnostic-Code: smtp; 554 Transaction failed\r\n",
	    "a 5xx reply without enhanced code: 5.0.0");
	check_status("550 4.1.1 mismatched", "\r\nStatus: 5.0.0\r\n", NULL,
	    "an enhanced code of another class than the reply: 5.0.0");
	check_status("451 4.4.1 timed out", "\r\nStatus: 4.4.1\r\n", NULL,
	    "an expired 4xx: its code, as Postfix");
	check_status("5.2.2 mailbox full", "\r\nStatus: 5.2.2\r\n",
	    "\r\nDiagnostic-Code: X-Loft; mailbox full\r\n",
	    "a local reason: its code, X-Loft diagnostic without it");
	check_status("5.1.10 x", "\r\nStatus: 5.1.10\r\n", NULL,
	    "a two-digit detail");
	check_status("5.1.1000 x", "\r\nStatus: 5.0.0\r\n", NULL,
	    "a four-digit detail is no enhanced code");
	check_status("2.0.0 odd", "\r\nStatus: 5.0.0\r\n", NULL,
	    "a success code on a failure: 5.0.0");
	check_status("mail loops back", "\r\nStatus: 5.0.0\r\n",
	    "\r\nDiagnostic-Code: X-Loft; mail loops back\r\n",
	    "free text: 5.0.0");
	check_status(REMOTE_550, "\r\nRemote-MTA: dns; mx.example.net\r\n",
	    "\r\nStatus: 5.1.1\r\n", "a remote reply: Remote-MTA");
	check_status(REMOTE_550 + 6, "\r\nRemote-MTA: dns; mx.example.net"
	    "\r\n", "\r\nStatus: 5.1.1\r\n",
	    "a remote reply without leading DSN: Remote-MTA, its code");
	check_status("4.4.1 host mx.example.net[192.0.2.3] said: 451 4.3.0 "
	    "busy (in reply to end of DATA command)",
	    "\r\nStatus: 4.4.1\r\n",
	    "\r\nDiagnostic-Code: smtp; 451 4.3.0 busy\r\n",
	    "an expired remote deferral: the leading code");
	check_status("5.0.0 554 5.7.1 no relay", "\r\nStatus: 5.0.0\r\n",
	    "\r\nDiagnostic-Code: smtp; 554 5.7.1 no relay\r\n",
	    "the leading code wins over the reply's");
	check_status("2.0.0 554 5.7.1 no relay", "\r\nStatus: 5.7.1\r\n",
	    NULL, "a leading success code is passed over");
	check_status("5.4.4 host mx.example.net[192.0.2.3] said: bogus",
	    "\r\nStatus: 5.4.4\r\n", "\r\nDiagnostic-Code: X-Loft; host "
	    "mx.example.net[192.0.2.3] said: bogus\r\n",
	    "a remote text without reply code: a local reason");
	check_status("host mx.example.net said: 550 5.7.1 denied",
	    "\r\nRemote-MTA: dns; mx.example.net\r\n",
	    "\r\nDiagnostic-Code: smtp; 550 5.7.1 denied\r\n",
	    "a remote reply without address and stage");
	s = status_for("", 0, NULL, NULL);
	ok(strstr(s, "\r\nStatus: 5.0.0\r\n") != NULL &&
	    strstr(s, "Diagnostic-Code") == NULL &&
	    strstr(s, "Remote-MTA") == NULL,
	    "no diagnostic: 5.0.0, no Diagnostic-Code");
	free(s);
	s = status_for("550 5.1.1 x", 11, "rfc822;bob+2Bold@example.net",
	    &whole);
	ok(strstr(s, "\r\nOriginal-Recipient: rfc822;bob+old@example.net"
	    "\r\n") != NULL, "ORCPT: Original-Recipient, xtext decoded");
	ok(whole != NULL && strstr(whole, "\r\n<bob@example.net> (expanded "
	    "from <bob+old@example.net>): 550 5.1.1 x\r\n") != NULL,
	    "ORCPT: named in the text part when it differs");
	free(s);
	free(whole);
	s = status_for("550 5.1.1 x", 11, "rfc822;evil+0D+0AX:y@example.net",
	    NULL);
	ok(strstr(s, "\r\nOriginal-Recipient: rfc822;evil+0D+0AX:y@example."
	    "net\r\n") != NULL, "ORCPT decoding to CR LF: shown as sent");
	free(s);
}

static void
test_envid(void)
{
	struct smtp_queue_rcpt r[1];
	struct smtp_queue_env env;
	struct smtp_bounce_in in;
	char *got;
	int rv;

	rcpt_set(&r[0], "bob@example.net", NULL, 0, SMTP_QUEUE_FAILED,
	    "550 5.1.1 x");
	env_set(&env, "alice@example.org", r, 1);
	env.envid = (char *)"QQ+2B314159";
	in_set(&in, &env);
	got = compose(&in, -1, &rv);
	ok(got != NULL && strstr(got, "\r\nOriginal-Envelope-Id: QQ+314159"
	    "\r\n") != NULL, "ENVID: Original-Envelope-Id, decoded");
	free(got);
}

/* Hostile diagnostics: control bytes, NUL, 8-bit, 512 bytes. */
static void
test_hostile(void)
{
	unsigned char bad[SMTP_QUEUE_DIAG_MAX];
	char *s, *whole;
	size_t i;

	memcpy(bad, "550 5.1.1 ", 10);
	for (i = 10; i < sizeof(bad); i++)
		bad[i] = (unsigned char)(i % 7 == 0 ? ' ' : i % 256);
	bad[20] = '\r';
	bad[21] = '\n';
	bad[22] = '\0';
	s = status_for((const char *)bad, sizeof(bad), NULL, &whole);
	ok(whole != NULL && lines_ok(whole, 78),
	    "hostile diagnostic: CRLF lines only, folded under 78");
	ok(whole != NULL && strstr(whole, "\r\n--BOUNDARY--\r\n") != NULL &&
	    strstr(s, "\r\nStatus: 5.1.1\r\n") != NULL,
	    "hostile diagnostic: the report is whole");
	ok(whole != NULL && !memchr(whole, 0x80, strlen(whole)) &&
	    strstr(whole, "Content-Transfer-Encoding: 7bit") != NULL,
	    "hostile diagnostic: no 8-bit bytes, 7bit");
	free(s);
	free(whole);

	/* One word of 512 bytes: a line longer than 78, under 998. */
	memset(bad, 'x', sizeof(bad));
	memcpy(bad, "550 5.1.1 ", 10);
	s = status_for((const char *)bad, sizeof(bad), NULL, &whole);
	ok(whole != NULL && lines_ok(whole, 998) && !lines_ok(whole, 78),
	    "a 512-byte word: kept on one line, under 998");
	free(s);
	free(whole);
}

/* 8-bit addresses (SMTPUTF8) and content: declared 8bit and utf-8. */
static void
test_8bit(void)
{
	static const char msg8[] = "Subject: caf\xc3\xa9\r\n\r\nbody\r\n";
	struct smtp_queue_rcpt r[1];
	struct smtp_queue_env env;
	struct smtp_bounce_in in;
	char *got;
	int fd, rv;

	rcpt_set(&r[0], "j\xc3\xbcrgen@example.net", NULL, 0,
	    SMTP_QUEUE_FAILED, "550 5.1.1 x");
	env_set(&env, "alice@example.org", r, 1);
	in_set(&in, &env);
	got = compose(&in, -1, &rv);
	ok(got != NULL && strstr(got, "\r\nContent-Transfer-Encoding: "
	    "8bit\r\n\r\nThis is a MIME") != NULL &&
	    strstr(got, "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n") != NULL,
	    "an 8-bit address: 8bit, and utf-8 text");
	free(got);
	rcpt_set(&r[0], "bob@example.net", NULL, 0, SMTP_QUEUE_FAILED,
	    "550 5.1.1 x");
	fd = content_fd(msg8, strlen(msg8));
	got = compose(&in, fd, &rv);
	ok(got != NULL && strstr(got, "charset=us-ascii") != NULL &&
	    strstr(got, "Content-Type: message/rfc822\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n") != NULL &&
	    occurrences(got, "Content-Transfer-Encoding: 8bit") == 2,
	    "8-bit content: its part and the whole say 8bit");
	free(got);
	close(fd);
}

/*
 * The boundary.
 */

static void
test_boundary(void)
{
	struct smtp_queue_rcpt r[1];
	struct smtp_queue_env env;
	struct smtp_bounce_in in;
	struct buf b;
	const char *error, *p;
	char msg[512], boundary[128], *got, delim[160];
	int fd, rv;
	size_t n;

	snprintf(msg, sizeof(msg), "Subject: x\r\n\r\n--BOUNDARY\r\n"
	    "Content-Type: text/plain\r\n\r\nfake\r\n--BOUNDARY--\r\n");
	rcpt_set(&r[0], "bob@example.net", NULL, 0, SMTP_QUEUE_FAILED,
	    "550 5.1.1 x");
	env_set(&env, "alice@example.org", r, 1);
	in_set(&in, &env);
	fd = content_fd(msg, strlen(msg));
	got = compose(&in, fd, &rv);
	is_int(rv, 0, "boundary: compose with the hint in the content");
	p = got != NULL ? strstr(got, "boundary=\"") : NULL;
	n = p != NULL ? strcspn(p + 10, "\"") : 0;
	ok(p != NULL && n > 0 && n < sizeof(boundary),
	    "boundary: one is declared");
	if (p != NULL && n > 0 && n < sizeof(boundary)) {
		memcpy(boundary, p + 10, n);
		boundary[n] = '\0';
	} else
		strcpy(boundary, "BOUNDARY");
	ok(strcmp(boundary, "BOUNDARY") != 0 &&
	    strncmp(boundary, "=_loft_", 7) == 0 && strlen(boundary) == 39,
	    "boundary: the hint found in the content is not taken");
	ok(strstr(msg, boundary) == NULL,
	    "boundary: the one taken is not in the content");
	snprintf(delim, sizeof(delim), "\r\n--%s", boundary);
	is_int(got != NULL ? occurrences(got, delim) : 0, 4,
	    "boundary: three delimiters and the close");
	free(got);
	close(fd);

	/* The hint in the diagnostic counts as well. */
	rcpt_set(&r[0], "bob@example.net", NULL, 0, SMTP_QUEUE_FAILED,
	    "550 5.1.1 BOUNDARY");
	got = compose(&in, -1, &rv);
	ok(got != NULL && strstr(got, "boundary=\"BOUNDARY\"") == NULL,
	    "boundary: the hint in the text part is not taken");
	free(got);

	/* A malformed hint is refused. */
	in.boundary = "bad boundary";
	buf_init(&b, 1 << 20);
	is_int(smtp_bounce_compose(&in, -1, &b, &error), -1,
	    "boundary: a hint with a space is refused");
	buf_free(&b);
}

/* Out of room, unreadable content, bad names. */
static void
test_errors(void)
{
	struct smtp_queue_rcpt r[1];
	struct smtp_queue_env env;
	struct smtp_bounce_in in;
	struct buf b;
	const char *error;
	int fd;

	rcpt_set(&r[0], "bob@example.net", NULL, 0, SMTP_QUEUE_FAILED,
	    "550 5.1.1 x");
	env_set(&env, "alice@example.org", r, 1);
	in_set(&in, &env);
	buf_init(&b, 1 << 20);
	is_int(smtp_bounce_compose(&in, -1, &b, &error), 0, "room: compose");
	{
		size_t need = b.len;

		buf_free(&b);
		buf_init(&b, need);
		is_int(smtp_bounce_compose(&in, -1, &b, &error), 0,
		    "room: exactly the report's size (N) is enough");
		buf_free(&b);
		buf_init(&b, need - 1);
		is_int(smtp_bounce_compose(&in, -1, &b, &error), -1,
		    "room: N - 1 is not");
		is_int(b.len, 0, "room: out untouched");
		buf_free(&b);
	}
	buf_init(&b, 1 << 20);
	if ((fd = open(base, O_RDONLY | O_DIRECTORY)) < 0)
		bail("open %s: %s", base, strerror(errno));
	is_int(smtp_bounce_compose(&in, fd, &b, &error), -1,
	    "unreadable content (a directory): -1");
	ok(strncmp(error, "bounce: read content of " ORIG_ID, 24 + 17) == 0,
	    "unreadable content: said so (%s)", error);
	close(fd);
	in.reporting_mta = "mail example.org";
	is_int(smtp_bounce_compose(&in, -1, &b, &error), -1,
	    "a reporting MTA with a space: -1");
	in.reporting_mta = "mail.example.org\r\nBcc: x@y";
	is_int(smtp_bounce_compose(&in, -1, &b, &error), -1,
	    "a reporting MTA with CRLF: -1");
	in.reporting_mta = "mail.example.org";
	in.postmaster = "postmaster\n";
	is_int(smtp_bounce_compose(&in, -1, &b, &error), -1,
	    "a postmaster with LF: -1");
	is_int(b.len, 0, "nothing appended on errors");
	buf_free(&b);
}

/*
 * Python's email package reads it.
 */

static const char py_check[] =
    "import email, sys\n"
    "m = email.message_from_binary_file(open(sys.argv[1], 'rb'))\n"
    "assert m.get_content_type() == 'multipart/report', 1\n"
    "assert m.get_param('report-type') == 'delivery-status', 2\n"
    "p = m.get_payload()\n"
    "assert len(p) == 3, 3\n"
    "assert [x.get_content_type() for x in p] == ['text/plain', "
    "'message/delivery-status', 'message/rfc822'], 4\n"
    "ds = p[1].get_payload()\n"
    "assert len(ds) == 4, 5\n"
    "assert ds[0]['Reporting-MTA'] == 'dns; mail.example.org', 6\n"
    "assert [r['Action'] for r in ds[1:]] == ['failed'] * 3, 7\n"
    "assert [r['Status'] for r in ds[1:]] == ['5.1.1', '5.2.2', "
    "'5.0.0'], 8\n"
    "assert p[2].get_payload()[0]['Subject'] == 'lunch', 9\n"
    "assert m['Auto-Submitted'] == 'auto-replied', 10\n"
    "assert not m.defects and not any(x.defects for x in p), 11\n";

static void
test_python(void)
{
	struct smtp_queue_rcpt r[3];
	struct smtp_queue_env env;
	struct smtp_bounce_in in;
	char path[PATH_MAX], cmd[PATH_MAX * 2 + 64], *got;
	int fd, out, rv;
	FILE *f;

	if (system("python3 -c 'import email' >/dev/null 2>&1") != 0) {
		ok(1, "# SKIP no python3");
		return;
	}
	rcpt_set(&r[0], "one@example.net", "rfc822;one@example.net", 0,
	    SMTP_QUEUE_FAILED, REMOTE_550);
	rcpt_set(&r[1], "two@example.net", NULL, 0, SMTP_QUEUE_FAILED,
	    "5.2.2 mailbox full");
	rcpt_set(&r[2], "three@example.net", NULL, 0, SMTP_QUEUE_FAILED,
	    "");
	env_set(&env, "alice@example.org", r, 3);
	in_set(&in, &env);
	in.boundary = NULL;
	fd = content_fd(orig_msg, strlen(orig_msg));
	got = compose(&in, fd, &rv);
	close(fd);
	snprintf(path, sizeof(path), "%s/report.eml", base);
	out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (got == NULL || out < 0 ||
	    write(out, got, strlen(got)) != (ssize_t)strlen(got))
		bail("write %s", path);
	close(out);
	snprintf(cmd, sizeof(cmd), "%s/check.py", base);
	if ((f = fopen(cmd, "w")) == NULL)
		bail("fopen %s", cmd);
	fputs(py_check, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "python3 %s/check.py %s", base, path);
	is_int(system(cmd), 0, "python's email reads a multipart/report of "
	    "three parts, three recipients, the original, no defects");
	free(got);
}

/*
 * Into a queue.
 */

static struct smtp_queue *
queue_new(char *path, size_t size)
{
	struct smtp_queue *q;
	const char *error;

	snprintf(path, size, "%s/queue", base);
	if (smtp_queue_open(path, &q, &error) < 0)
		bail("queue open: %s", error);
	return q;
}

/* queue_put: a message from sender to rcpt with orig_msg; its ID. */
static void
queue_put(struct smtp_queue *q, const char *sender, const char *rcpt,
    char id[SMTP_QUEUE_ID_MAX])
{
	struct smtp_queue_msg *msg;
	const char *error;

	if (smtp_queue_begin(q, sender, 10, &msg, &error) < 0 ||
	    smtp_queue_write(msg, (const unsigned char *)orig_msg,
	    strlen(orig_msg), &error) < 0 ||
	    smtp_queue_add_rcpt(msg, rcpt, "rfc822;bob@example.net", 0,
	    &error) < 0 ||
	    smtp_queue_commit(&msg, id, &error) < 0)
		bail("queue put: %s", error);
}

static int
env_count(const char *qdir)
{
	char path[PATH_MAX];
	struct dirent *d;
	DIR *dp;
	int n = 0;

	snprintf(path, sizeof(path), "%s/env", qdir);
	if ((dp = opendir(path)) == NULL)
		return -1;
	while ((d = readdir(dp)) != NULL)
		if (d->d_name[0] != '.')
			n++;
	closedir(dp);
	return n;
}

/* read_content: message id's content as a string (free it). */
static char *
read_content(struct smtp_queue *q, const char *id)
{
	const char *error;
	uint64_t size;
	char *s;
	int fd;

	if (smtp_queue_open_content(q, id, &fd, &size, &error) != 1)
		return NULL;
	s = calloc(1, (size_t)size + 1);
	if (s == NULL || pread(fd, s, (size_t)size, 0) != (ssize_t)size)
		bail("read content");
	close(fd);
	return s;
}

static void
test_enqueue(void)
{
	struct smtp_queue *q;
	struct smtp_queue_env *env, *benv;
	struct smtp_bounce_in in;
	char qdir[PATH_MAX], id[SMTP_QUEUE_ID_MAX], bid[SMTP_QUEUE_ID_MAX];
	char small[SMTP_QUEUE_ID_MAX - 1], *content, *want;
	const char *error;
	const char *reason = "550 5.1.1 no such user";
	int fd, rv;

	q = queue_new(qdir, sizeof(qdir));
	queue_put(q, "alice@example.org", "bob@example.net", id);
	if (smtp_queue_load(q, id, SMTP_QUEUE_LOCK, &env, &error) != 1)
		bail("load: %s", error);
	smtp_queue_rcpt_result(env, 0, SMTP_QUEUE_FAILED, NOW - 60, 0,
	    (const unsigned char *)reason, strlen(reason));
	if (smtp_queue_save(q, env, &error) < 0)
		bail("save: %s", error);
	smtp_bounce_test_boundary = "QBOUNDARY";
	smtp_bounce_test_now = NOW;

	is_int(smtp_bounce_enqueue(q, env, -1, "mail.example.org",
	    "postmaster", small, sizeof(small), &error), -1,
	    "enqueue: an ID buffer of SMTP_QUEUE_ID_MAX - 1 is refused");
	is_int(env_count(qdir), 1, "enqueue: and nothing was queued");
	is_int(smtp_bounce_enqueue(q, env, -1, "bad host", "postmaster",
	    bid, sizeof(bid), &error), -1, "enqueue: a bad host name: -1");
	is_int(env_count(qdir), 1, "enqueue: nothing queued on error");

	fd = -1;
	if (smtp_queue_open_content(q, id, &fd, &(uint64_t){0}, &error) != 1)
		bail("open content: %s", error);
	rv = smtp_bounce_enqueue(q, env, fd, "mail.example.org",
	    "postmaster", bid, sizeof(bid), &error);
	if (!ok(rv == 0, "enqueue: 0"))
		diag("%s", error);
	close(fd);
	ok(smtp_queue_id_valid(bid) && strcmp(bid, id) != 0,
	    "enqueue: a new queue ID");
	is_int(env_count(qdir), 2, "enqueue: two messages queued");
	benv = NULL;
	is_int(smtp_queue_load(q, bid, 0, &benv, &error), 1,
	    "enqueue: the bounce loads");
	if (benv == NULL)
		bail("no bounce");
	is_string(benv->sender, "", "bounce: the null sender");
	ok(benv->bounce, "bounce: marked a bounce");
	is_int(benv->rcpt_count, 1, "bounce: one recipient");
	is_string(benv->rcpts[0].addr, "alice@example.org",
	    "bounce: to the original sender");
	ok(benv->rcpts[0].state == SMTP_QUEUE_PENDING &&
	    benv->rcpts[0].orcpt == NULL && benv->rcpts[0].notify == 0,
	    "bounce: pending, no ORCPT, no NOTIFY");

	content = read_content(q, bid);
	in_set(&in, env);
	in.id = bid;
	in.boundary = "QBOUNDARY";
	fd = content_fd(orig_msg, strlen(orig_msg));
	want = compose(&in, fd, &rv);
	close(fd);
	ok(content != NULL && want != NULL && strcmp(content, want) == 0,
	    "bounce: the content is the report as composed");
	is_int(benv->size, want != NULL ? strlen(want) : 0,
	    "bounce: the envelope's size");
	ok(content != NULL && strstr(content, "\r\nMessage-ID: <" ) &&
	    strstr(content, bid) != NULL,
	    "bounce: its Message-ID names its queue ID");
	free(content);
	free(want);
	smtp_queue_env_free(&benv);

	/* content_fd -1: opened from the queue; a small size limit. */
	smtp_bounce_set_size_limit(10);
	is_int(smtp_bounce_enqueue(q, env, -1, "mail.example.org", NULL,
	    bid, sizeof(bid), &error), 0,
	    "enqueue: content opened from the queue");
	content = read_content(q, bid);
	ok(content != NULL && strstr(content, "text/rfc822-headers") &&
	    strstr(content, "Subject: lunch\r\n") &&
	    !strstr(content, "noon"),
	    "enqueue: bounce_size_limit set: headers only");
	free(content);
	smtp_bounce_set_size_limit(SMTP_BOUNCE_DEF_SIZE_LIMIT);
	is_int(env_count(qdir), 3, "enqueue: three messages queued");

	/* The bounce's bounce: never. */
	if (smtp_queue_load(q, bid, SMTP_QUEUE_LOCK, &benv, &error) != 1)
		bail("load bounce: %s", error);
	smtp_queue_rcpt_result(benv, 0, SMTP_QUEUE_FAILED, NOW, 0,
	    (const unsigned char *)reason, strlen(reason));
	is_int(smtp_bounce_enqueue(q, benv, -1, "mail.example.org", NULL,
	    bid, sizeof(bid), &error), 1,
	    "enqueue: a failed bounce is not bounced");
	is_int(env_count(qdir), 3, "enqueue: nothing more queued");
	smtp_queue_env_free(&benv);

	/* Nothing failed: 1. */
	env->rcpts[0].state = SMTP_QUEUE_DEFERRED;
	is_int(smtp_bounce_enqueue(q, env, -1, "mail.example.org", NULL,
	    bid, sizeof(bid), &error), 1, "enqueue: no failure, no bounce");
	is_int(env_count(qdir), 3, "enqueue: still three");
	smtp_queue_env_free(&env);
	smtp_queue_close(&q);
	smtp_bounce_test_boundary = NULL;
	smtp_bounce_test_now = 0;
}

int
main(void)
{
	char cmd[300];

	setenv("TZ", "UTC", 1);
	tzset();
	snprintf(base, sizeof(base), "/tmp/loft-bounce-XXXXXX");
	if (mkdtemp(base) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	test_xtext();
	test_golden();
	test_three();
	test_not_due();
	test_original();
	test_long_header();
	test_status();
	test_envid();
	test_hostile();
	test_8bit();
	test_boundary();
	test_errors();
	test_python();
	test_enqueue();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	if (system(cmd) != 0)
		diag("could not remove %s", base);
	return done_testing();
}
