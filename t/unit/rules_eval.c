/* Unit tests for lib/rules_eval.c (with rules_vars.c, rules_cmd.c): what
 * a rule file delivers where, through a recording folder callback: the
 * defaults, chaining, MATCH, expansion, scoring, filters, clones, errors
 * ending in ORGMAIL, and INCLUDERC nesting at N and N + 1. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "rules.h"
#include "tap.h"
#include "xmalloc.h"

static char home[256];

struct rec {
	struct buf log;		/* "KIND PATH LEN\n" per delivery */
	struct buf last;	/* the bytes of the last one */
	bool fail;		/* make every delivery fail */
};

static enum rules_status
rec_folder(void *ctx, enum rules_folder_kind kind, const char *path,
    const unsigned char *msg, size_t len, char **stored_r,
    const char **error_r)
{
	static const char kinds[] = "mMhd";
	struct rec *r = ctx;
	const char *p = path;

	(void)stored_r;
	if (strncmp(p, home, strlen(home)) == 0)
		p += strlen(home) + 1;
	buf_printf(&r->log, "%c %s %zu\n", kinds[kind], p, len);
	buf_truncate(&r->last, 0);
	buf_append(&r->last, msg, len);
	if (r->fail) {
		*error_r = "refused";
		return RULES_TEMPFAIL;
	}
	return RULES_OK;
}

static const char msg[] =
    "From: Alice <alice@example.com>\n"
    "To: bob@example.org\n"
    "Subject: report 42\n"
    "  continued\n"
    "\n"
    "body line\n";

/* Run text (NULL: no rules) on msg; the recorded log, caller frees. */
static char *
run(const char *text, struct rules_result *res, struct rec *r)
{
	struct rules_callbacks cb = { rec_folder, NULL, NULL };
	struct rules_env env;
	struct rules *rules = NULL;
	const char *err;
	char *inbox = xasprintf("%s/INBOX", home);

	memset(&env, 0, sizeof(env));
	env.user = "bob";
	env.home = home;
	env.sender = "alice@example.com";
	env.orgmail = inbox;
	env.command_timeout = 10;
	rules_limits_default(&env.limits);
	env.limits.include_max = 2;
	buf_init(&r->log, (size_t)-1);
	buf_init(&r->last, (size_t)-1);
	if (text != NULL && rules_parse_buffer("rc", text, strlen(text), NULL,
	    &rules, &err) < 0) {
		diag("%s", err);
		free(inbox);
		return xstrdup("parse error");
	}
	(void)rules_run(rules, &env, &cb, r, (const unsigned char *)msg,
	    strlen(msg), res);
	rules_free(&rules);
	free(inbox);
	return xstrdup(buf_cstr(&r->log));
}

static void
check(const char *text, const char *want, const char *name)
{
	struct rules_result res;
	struct rec r;
	char *got;

	memset(&r, 0, sizeof(r));
	got = run(text, &res, &r);
	is_string(got, want, "%s", name);
	free(got);
	buf_free(&r.log);
	buf_free(&r.last);
}

static void
write_file(const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", home, name);
	FILE *f = fopen(path, "w");

	fputs(text, f);
	fclose(f);
	free(path);
}

static void
test_basics(void)
{
	struct rules_result res;
	struct rec r;
	char *got;
	size_t n = strlen(msg);
	char want[128];

	/* mbox: the message, one final newline less than it holds (the
	 * callback writes the separator); Maildir: as it came. */
	snprintf(want, sizeof(want), "m INBOX %zu\n", n);
	check(NULL, want, "no rules: ORGMAIL");
	check("MAILDIR=$HOME\n", want, "falling off the end: DEFAULT");
	check("DEFAULT=$HOME/md/\n", "M md 94\n", "DEFAULT a Maildir");
	check(":0\n* ^Subject: report\nreports\n", "m reports 94\n",
	    "a matching recipe");
	check(":0\n* ^subject: REPORT\nci\n:0 D\nx\n", "m ci 94\n",
	    "case-insensitive by default");
	check(":0 D\n* ^subject: REPORT\ncs\n", "m INBOX 94\n",
	    "D: case-sensitive");
	check(":0\n* ^Subject:.*42   continued\njoined\n", "m joined 94\n",
	    "continuation lines are joined with their blanks");
	check(":0 c\ncopy\n:0\n* ! ^From:.*alice\nnot\n", "m copy 94\n"
	    "m INBOX 94\n", "c copies and goes on; ! negates");
	check(":0\n* ^Subject: report \\/[0-9]+\n{\nN=$MATCH\n}\n:0\nn-$N\n",
	    "m n-42 94\n", "\\/ sets MATCH");
	check(":0\n* ^Subject:.*\\/[0-9]+\n{\nN=$MATCH\n}\n:0\nn-$N\n",
	    "m n-42 94\n", "left of \\/ matches as little as it can");
	check("X=${NOPE:-dflt}\nY=\"$X\"'$X'\n:0\n$Y\n", "m dflt$X 94\n",
	    "expansion and quotes");
	check(":0 c\n* ^To:.*nobody\na\n:0 A\nb\n:0 E\nc\n", "m c 94\n",
	    "A skipped after a failed condition, E taken");
	check(":0 c\n* ^To:.*bob\na\n:0 A\nb\n", "m a 94\nm b 94\n",
	    "A after a match");
	check(":0 c\nx\n:0 E\ny\n:0 E\nz\n", "m x 94\nm INBOX 94\n",
	    "an E chain after an executed recipe");
	check(":0\n* 1^0 report\n* -2^0 alice\nscored\n", "m INBOX 94\n",
	    "a negative score does not match");
	check(":0\n* 3^0 report\n* -2^0 alice\nscored\n", "m scored 94\n",
	    "a positive one does");
	check(":0\n* < 200\nsmall\n", "m small 94\n", "size <");
	check(":0\n* > 200\nbig\n", "m INBOX 94\n", "size >");
	check("W=report\n:0\n* $ ^Subject: $W\nexp\n", "m exp 94\n",
	    "$ conditions expand");
	check(":0 B\n* ^body\nbody\n", "m body 94\n", "B searches the body");
	check(":0\n* ^body\nbody\n", "m INBOX 94\n", "H does not");
	check(":0\n* ? exit 1\nno\n:0\n* ! ? exit 1\nyes\n", "m yes 94\n",
	    "? uses the exit code");
	check(":0 hc\nh/\n:0 b\nb/\n", "M h 84\nM b 10\n",
	    "h and b feed header and body");
	check(":0 fw\n| sed s/report/XX/\n:0\n* ^Subject: XX\nf\n",
	    "m f 90\n", "a filter replaces the message");
	check(":0 fw\n| exit 3\n:0 e\nfailed\n", "m failed 94\n",
	    "a failing filter with w: e runs, message kept");
	check(":0\nV=| echo captured\n:0\n$V\n", "m captured 94\n",
	    "VAR=| captures output");
	check(":0\n/dev/null\n", "", "/dev/null takes it");
	check("MAILDIR=$HOME\n:0 wc:pipe.lock\n| test -f pipe.lock && "
	    "cat >/dev/null\n:0 e\nno-lock\n:0\n* ? test ! -f pipe.lock\n"
	    "unlocked\n", "m unlocked 94\n",
	    "a lock file is held while the command runs, then removed");
	check(":0 c\n{\n  :0\n  clone\n}\n:0\nparent\n",
	    "m clone 94\nm parent 94\n", "c on a block clones");

	memset(&r, 0, sizeof(r));
	got = run(":0\n* ^Subject\nx/\n", &res, &r);
	is_mem(r.last.data, r.last.len, msg, strlen(msg),
	    "a Maildir gets the message byte for byte");
	ok(res.delivered && res.folders == 1 && res.status == RULES_OK,
	    "result: delivered, one folder, OK");
	free(got);
	buf_free(&r.log);
	buf_free(&r.last);

	memset(&r, 0, sizeof(r));
	r.fail = true;
	got = run(":0\nx\n", &res, &r);
	is_string(got, "m x 94\nm INBOX 94\n",
	    "a failed folder falls through to DEFAULT");
	ok(!res.delivered && res.status == RULES_TEMPFAIL,
	    "nothing delivered: TEMPFAIL");
	free(got);
	buf_free(&r.log);
	buf_free(&r.last);
}

static void
test_errors(void)
{
	struct rules_result res;
	struct rec r;
	char *got;

	write_file("broken.rc", ":0 Q\nx\n");
	memset(&r, 0, sizeof(r));
	got = run(":0 c\nfirst\nINCLUDERC=$HOME/broken.rc\n:0\nnever\n",
	    &res, &r);
	is_string(got, "m first 94\nm INBOX 94\n",
	    "a broken INCLUDERC ends the rules in ORGMAIL");
	ok(res.rules_error && res.delivered, "flagged as a rules error");
	ok(strstr(res.error, "broken.rc:1: unknown flag 'Q'") != NULL,
	    "with its file and line (%s)", res.error);
	free(got);
	buf_free(&r.log);
	buf_free(&r.last);

	/* include_max is 2 here: a.rc includes b.rc (2 deep) is fine, c.rc
	 * under it (3) is not. */
	write_file("a.rc", "INCLUDERC=$HOME/b.rc\n");
	write_file("b.rc", ":0\n* ^Subject\nfrom-b\n");
	check("INCLUDERC=$HOME/a.rc\n", "m from-b 94\n",
	    "INCLUDERC nested include_max deep");
	write_file("b.rc", "INCLUDERC=$HOME/c.rc\n");
	write_file("c.rc", ":0\nfrom-c\n");
	memset(&r, 0, sizeof(r));
	got = run("INCLUDERC=$HOME/a.rc\n", &res, &r);
	is_string(got, "m INBOX 94\n", "include_max + 1 refused: ORGMAIL");
	ok(strstr(res.error, "b.rc:1: INCLUDERC nested more than 2 deep") !=
	    NULL, "saying where (%s)", res.error);
	free(got);
	buf_free(&r.log);
	buf_free(&r.last);
	check("INCLUDERC=$HOME/missing.rc\n:0\nafter\n", "m after 94\n",
	    "a missing INCLUDERC is skipped");
	write_file("loop.rc", ":0 c\nround\nSWITCHRC=$HOME/loop.rc\n");
	memset(&r, 0, sizeof(r));
	got = run("SWITCHRC=$HOME/loop.rc\n", &res, &r);
	ok(strstr(res.error, "more than 64 rule files loaded") != NULL &&
	    res.rules_error && res.delivered, "a SWITCHRC loop ends (%s)",
	    res.error);
	ok(strncmp(got, "m round 94\n", 11) == 0 &&
	    strstr(got, "m INBOX 94\n") != NULL, "in ORGMAIL");
	free(got);
	buf_free(&r.log);
	buf_free(&r.last);
}

static void
test_cmd(void)
{
	struct rules_cmd c;
	struct rules_cmd_result res;
	struct buf out;
	const char *err;
	unsigned char *big = xcalloc(1, 1 << 20);
	time_t t0;

	memset(&c, 0, sizeof(c));
	c.output_fd = c.stderr_fd = -1;
	c.umask = 077;
	buf_init(&out, 16);
	c.out = &out;
	c.shell_cmd = "cat; echo more than sixteen bytes";
	c.in = (const unsigned char *)"in";
	c.in_len = 2;
	is_int(rules_cmd_run(&c, &res, &err), 0, "a command runs");
	ok(res.status == 0 && res.out_overflow && out.len == 16 &&
	    memcmp(out.data, "inmore than sixt", 16) == 0,
	    "its output bounded by the buffer, the rest drained");
	buf_free(&out);
	c.out = NULL;
	c.shell_cmd = "exit 0";
	c.in = big;
	c.in_len = 1 << 20;
	rules_cmd_run(&c, &res, &err);
	ok(res.write_error && res.status == 0,
	    "a command that reads nothing of 1 MiB: a write error");
	c.shell_cmd = "sleep 30";
	c.in_len = 0;
	c.timeout = 1;
	t0 = time(NULL);
	rules_cmd_run(&c, &res, &err);
	ok(res.timed_out && res.status == 128 + 9 && time(NULL) - t0 < 10,
	    "the time limit kills it");
	is_int(rules_exit_status(&res), RULES_TEMPFAIL, "a timeout: TEMPFAIL");
	res.timed_out = false;
	res.status = 67;
	is_int(rules_exit_status(&res), RULES_PERMFAIL, "EX_NOUSER: PERMFAIL");
	res.status = 75;
	is_int(rules_exit_status(&res), RULES_TEMPFAIL, "EX_TEMPFAIL: TEMPFAIL");
	res.status = 1;
	is_int(rules_exit_status(&res), RULES_TEMPFAIL, "1: TEMPFAIL");
	free(big);
}

int
main(void)
{
	char *cmd;

	snprintf(home, sizeof(home), "/tmp/loft-rules-eval.%ld",
	    (long)getpid());
	mkdir(home, 0700);
	test_basics();
	test_errors();
	test_cmd();
	cmd = xasprintf("rm -rf %s", home);
	if (system(cmd) != 0)
		diag("could not remove %s", home);
	free(cmd);
	return done_testing();
}
