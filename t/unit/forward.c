/*
 * forward.c: tests of lib/forward.c: the .forward parser (entries,
 * quoting, comments, bounds at N and N + 1, byte by byte is not needed:
 * the parser takes whole texts), the file checks (owner, mode, symbolic
 * links, :include:) and forward_run through recording callbacks.
 */
#include "config.h"
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "buf.h"
#include "compat/compat.h"
#include "forward.h"
#include "t/unit/tap.h"
#include "xmalloc.h"

static char tmpdir[64];	/* "/tmp/loft-forward-XXXXXX" */

/* Parse text; the entries as "kind:value" lines in out, or the error. */
static int
t_parse(const char *text, struct buf *out)
{
	static const char *kinds[] = { "self", "addr", "pipe", "mbox",
	    "maildir", "include" };
	struct forward f = { NULL, 0, 0 };
	const char *err;
	int ret;

	buf_truncate(out, 0);
	ret = forward_parse("t", text, strlen(text), "alice", &f, &err);
	if (ret < 0)
		buf_append_str(out, err);
	else
		for (size_t i = 0; i < f.n; i++) {
			char line[1200];

			snprintf(line, sizeof(line), "%s:%s@%u\n",
			    kinds[f.e[i].kind], f.e[i].value, f.e[i].line);
			buf_append_str(out, line);
		}
	buf_append(out, "", 1);
	forward_free(&f);
	return ret;
}

static void
test_parse(void)
{
	struct buf b;

	buf_init(&b, (size_t)-1);
	is_int(t_parse("bob@example.org\n", &b), 0, "one address");
	is_string((char *)b.data, "addr:bob@example.org@1\n", "  as it is");
	t_parse("# a comment\n\\alice, bob@example.org,carol\n", &b);
	is_string((char *)b.data, "self:alice@2\naddr:bob@example.org@2\n"
	    "addr:carol@2\n", "comment, \\self, commas");
	t_parse("alice\n", &b);
	is_string((char *)b.data, "self:alice@1\n",
	    "the user's own name is the mailbox");
	t_parse("\\bob\n", &b);
	is_string((char *)b.data, "addr:bob@1\n",
	    "\\ with another name is an address");
	t_parse("|/usr/bin/vacation -a alice, really\n", &b);
	is_string((char *)b.data, "pipe:/usr/bin/vacation -a alice, "
	    "really@1\n", "an unquoted pipe runs to the end of its line");
	t_parse("\"|/bin/prog \\\"a, b\\\"\", /home/a/mbox\n", &b);
	is_string((char *)b.data, "pipe:/bin/prog \"a, b\"@1\n"
	    "mbox:/home/a/mbox@1\n", "a quoted pipe with commas and an "
	    "escaped quote");
	t_parse("/home/a/Maildir/\r\n/home/a/file  \n", &b);
	is_string((char *)b.data, "maildir:/home/a/Maildir/@1\n"
	    "mbox:/home/a/file@2\n", "trailing / is a Maildir; CR and "
	    "blanks trimmed");
	t_parse(":include:/etc/mail/list\n", &b);
	is_string((char *)b.data, "include:/etc/mail/list@1\n", ":include:");
	t_parse("Bob Smith <bob@example.org>\n", &b);
	is_string((char *)b.data, "addr:bob@example.org@1\n",
	    "Name <address>");
	t_parse("a@b # not a comment here\n", &b);
	ok(strstr((char *)b.data, "not an address") != NULL,
	    "'#' after an entry is not a comment: an error");
	t_parse("\n\n  \n, ,\n", &b);
	is_string((char *)b.data, "", "nothing but blanks and commas");
	t_parse("x@y", &b);
	is_string((char *)b.data, "addr:x@y@1\n", "no final line end");

	is_int(t_parse("-oQ/tmp\n", &b), -1, "an option is not an address");
	is_int(t_parse("a b@c\n", &b), -1, "a blank inside an address");
	is_int(t_parse("\"|cmd\n", &b), -1, "unterminated quote");
	is_string((char *)b.data, "t:1: unterminated quoted entry",
	    "  says file and line");
	is_int(t_parse("\"/x\" y\n", &b), -1, "text after a quoted entry");
	is_int(t_parse(":include:rel/path\n", &b), -1,
	    ":include: of a relative path");
	is_int(t_parse("|  \n", &b), -1, "a pipe without a command");
	is_int(forward_parse("t", "a@b\0c", 5, "alice",
	    &(struct forward){ NULL, 0, 0 }, &(const char *){ NULL }), -1,
	    "a NUL byte");
	buf_free(&b);
}

static void
test_bounds(void)
{
	struct buf text, out;
	struct forward f = { NULL, 0, 0 };
	const char *err;

	buf_init(&text, (size_t)-1);
	buf_init(&out, (size_t)-1);
	/* An entry of FORWARD_ENTRY_MAX bytes, then one more. */
	buf_append_str(&text, "/");
	while (text.len < FORWARD_ENTRY_MAX)
		buf_append_str(&text, "x");
	buf_append(&text, "", 1);
	is_int(t_parse((char *)text.data, &out), 0,
	    "an entry of FORWARD_ENTRY_MAX bytes");
	text.len--;
	buf_append_str(&text, "x");
	buf_append(&text, "", 1);
	is_int(t_parse((char *)text.data, &out), -1, "  and one more byte");
	ok(strstr((char *)out.data, "too long") != NULL, "  entry too long");

	buf_truncate(&text, 0);
	for (int i = 0; i < FORWARD_ENTRIES_MAX; i++)
		buf_append_str(&text, "a@b\n");
	is_int(forward_parse("t", (char *)text.data, text.len, "u", &f,
	    &err), 0, "FORWARD_ENTRIES_MAX entries");
	is_int((int)f.n, FORWARD_ENTRIES_MAX, "  all of them");
	forward_free(&f);
	buf_append_str(&text, "a@b\n");
	is_int(forward_parse("t", (char *)text.data, text.len, "u", &f,
	    &err), -1, "  and one more");
	forward_free(&f);
	buf_free(&text);
	buf_free(&out);
}

static void
t_write(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		bail("write %s: %s", path, strerror(errno));
	close(fd);
	if (chmod(path, mode) < 0)
		bail("chmod %s", path);
}

static int
t_read(const char *name, const char *home, uid_t uid, struct forward *f,
    const char **err)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	return forward_read(path, uid, home, "alice", f, err);
}

static void
test_files(void)
{
	char home[PATH_MAX], path[PATH_MAX], list[PATH_MAX], text[PATH_MAX *
	    2], other[PATH_MAX];
	struct forward f = { NULL, 0, 0 };
	const char *err = NULL;
	uid_t me = geteuid();

	snprintf(home, sizeof(home), "%s/home", tmpdir);
	mkdir(home, 0755);
	snprintf(path, sizeof(path), "%s/home/.forward", tmpdir);
	is_int(t_read("home/.forward", home, me, &f, &err), 0,
	    "no .forward: 0");

	t_write(path, "bob@example.org\n", 0644);
	is_int(t_read("home/.forward", home, me, &f, &err), 1,
	    "a .forward of the user, mode 644");
	ok(f.n == 1 && strcmp(f.e[0].value, "bob@example.org") == 0,
	    "  its entry");
	forward_free(&f);

	t_write(path, "# only a comment\n", 0644);
	is_int(t_read("home/.forward", home, me, &f, &err), 0,
	    "a .forward without entries: 0");

	t_write(path, "bob@example.org\n", 0664);
	is_int(t_read("home/.forward", home, me, &f, &err), -1,
	    "group-writable: refused");
	ok(err != NULL && strstr(err, "writable by group") != NULL,
	    "  says why");
	t_write(path, "bob@example.org\n", 0646);
	is_int(t_read("home/.forward", home, me, &f, &err), -1,
	    "world-writable: refused");
	t_write(path, "bob@example.org\n", 0600);
	is_int(t_read("home/.forward", home, me + 1, &f, &err), -1,
	    "owned by another user: refused");
	ok(err != NULL && strstr(err, "not owned by the user") != NULL,
	    "  says why");

	/* A symbolic link: inside the home, fine; out of it, refused. */
	snprintf(other, sizeof(other), "%s/home/fwd-real", tmpdir);
	t_write(other, "carol@example.org\n", 0600);
	unlink(path);
	if (symlink(other, path) < 0)
		bail("symlink");
	is_int(t_read("home/.forward", home, me, &f, &err), 1,
	    "a symbolic link to a file inside the home");
	forward_free(&f);
	snprintf(other, sizeof(other), "%s/elsewhere", tmpdir);
	t_write(other, "mallory@example.org\n", 0600);
	unlink(path);
	if (symlink(other, path) < 0)
		bail("symlink");
	is_int(t_read("home/.forward", home, me, &f, &err), -1,
	    "a symbolic link out of the home: refused");
	ok(err != NULL && strstr(err, "out of the home") != NULL,
	    "  says why");
	unlink(path);
	if (symlink("/nonexistent/x", path) < 0)
		bail("symlink");
	is_int(t_read("home/.forward", home, me, &f, &err), -1,
	    "a dangling symbolic link: refused");
	unlink(path);

	/* :include: lists, expanded in place. */
	snprintf(list, sizeof(list), "%s/list", tmpdir);
	t_write(list, "dave@example.org, erin@example.org\n", 0644);
	snprintf(text, sizeof(text), "first@example.org\n:include:%s\n"
	    "\\alice\n", list);
	t_write(path, text, 0600);
	is_int(t_read("home/.forward", home, me, &f, &err), 1,
	    ":include: read");
	ok(f.n == 4 && strcmp(f.e[0].value, "first@example.org") == 0 &&
	    strcmp(f.e[1].value, "dave@example.org") == 0 &&
	    strcmp(f.e[2].value, "erin@example.org") == 0 &&
	    f.e[3].kind == FORWARD_SELF, "  its entries where it was");
	forward_free(&f);
	t_write(list, "dave@example.org\n", 0666);
	is_int(t_read("home/.forward", home, me, &f, &err), -1,
	    "a world-writable :include: file: refused");
	/* A list that includes itself stops at the depth bound. */
	snprintf(text, sizeof(text), ":include:%s\n", list);
	t_write(list, text, 0644);
	is_int(t_read("home/.forward", home, me, &f, &err), -1,
	    ":include: of itself: refused");
	ok(err != NULL && strstr(err, "too deep") != NULL, "  too deep");
	snprintf(text, sizeof(text), ":include:%s/nope\n", tmpdir);
	t_write(path, text, 0600);
	is_int(t_read("home/.forward", home, me, &f, &err), -1,
	    "a missing :include: file: refused");
	unlink(path);
}

/* Recording callbacks. */
struct t_rec {
	struct buf log;
	enum rules_status folder_st, command_st;
};

static enum rules_status
t_folder(void *ctx, enum rules_folder_kind kind, const char *path,
    const unsigned char *msg, size_t len, char **stored_r,
    const char **error_r)
{
	struct t_rec *r = ctx;
	char line[PATH_MAX + 64];

	snprintf(line, sizeof(line), "folder %d %s %zu\n", (int)kind, path,
	    len);
	buf_append_str(&r->log, line);
	(void)msg;
	*stored_r = NULL;
	*error_r = "disk on fire";
	return r->folder_st;
}

static enum rules_status
t_command(void *ctx, char *const *argv, const char *shell_cmd,
    char *const *envp, const char *cwd, const unsigned char *msg,
    size_t len, bool check, bool ignore_werr, const char **error_r)
{
	struct t_rec *r = ctx;

	buf_append_str(&r->log, "command");
	if (argv != NULL)
		for (size_t i = 0; argv[i] != NULL; i++) {
			buf_append_str(&r->log, " [");
			buf_append_str(&r->log, argv[i]);
			buf_append_str(&r->log, "]");
		}
	else {
		buf_append_str(&r->log, " sh ");
		buf_append_str(&r->log, shell_cmd);
	}
	for (size_t i = 0; envp[i] != NULL; i++)
		if (strncmp(envp[i], "SENDER=", 7) == 0 ||
		    strncmp(envp[i], "HOME=", 5) == 0) {
			buf_append_str(&r->log, " ");
			buf_append_str(&r->log, envp[i]);
		}
	buf_append_str(&r->log, check ? " check" : "");
	buf_append_str(&r->log, "\n");
	(void)cwd;
	(void)msg;
	(void)len;
	(void)ignore_werr;
	*error_r = "exit 75";
	return r->command_st;
}

static void
test_run(void)
{
	static const char text[] = "bob@example.org\n\"|/bin/prog x\"\n"
	    "/home/a/mbox\n/home/a/Maildir/\ncarol@example.org\n\\alice\n";
	struct rules_callbacks cb = { t_folder, t_command, NULL };
	struct forward_env env = { "alice", "/home/a", NULL, NULL,
	    "sender@example.net", "alice@example.org", "/usr/sbin/sendmail",
	    10 };
	struct forward f = { NULL, 0, 0 };
	struct forward_result res;
	struct t_rec r;
	const char *err;

	buf_init(&r.log, (size_t)-1);
	r.folder_st = RULES_OK;
	r.command_st = RULES_OK;
	if (forward_parse("t", text, strlen(text), "alice", &f, &err) < 0)
		bail("%s", err);
	is_int(forward_run(&f, &env, &cb, &r, (const unsigned char *)"m\n",
	    2, &res), 0, "run every target");
	buf_append(&r.log, "", 1);
	is_string((char *)r.log.data,
	    "command sh /bin/prog x HOME=/home/a SENDER=sender@example.net "
	    "check\n"
	    "folder 0 /home/a/mbox 2\n"
	    "folder 1 /home/a/Maildir/ 2\n"
	    "command [/usr/sbin/sendmail] [-oi] [-f] [sender@example.net] "
	    "[--] [bob@example.org] [carol@example.org] HOME=/home/a "
	    "SENDER=sender@example.net check\n",
	    "pipes and files in order, then one sendmail for the addresses");
	ok(res.self && res.status == RULES_OK && res.done == 5,
	    "  the mailbox too; five targets done");

	buf_truncate(&r.log, 0);
	r.folder_st = RULES_PERMFAIL;
	r.command_st = RULES_TEMPFAIL;
	is_int(forward_run(&f, &env, &cb, &r, (const unsigned char *)"m\n",
	    2, &res), 0, "failures: still 0 (the mailbox is a target)");
	ok(res.status == RULES_TEMPFAIL && res.done == 0,
	    "  a temporary failure outweighs a permanent one");
	is_string(res.error, "/bin/prog x: exit 75", "  the first failure");
	forward_free(&f);

	if (forward_parse("t", "/x/file\n", 8, "alice", &f, &err) < 0)
		bail("%s", err);
	r.folder_st = RULES_PERMFAIL;
	is_int(forward_run(&f, &env, &cb, &r, (const unsigned char *)"m\n",
	    2, &res), -1, "nothing took it, no mailbox: -1");
	ok(res.status == RULES_PERMFAIL, "  permanent");
	forward_free(&f);
	buf_free(&r.log);
}

int
main(void)
{
	char tmpl[] = "/tmp/loft-forward-XXXXXX";

	if (mkdtemp(tmpl) == NULL)
		bail("mkdtemp");
	strlcpy(tmpdir, tmpl, sizeof(tmpdir));
	test_parse();
	test_bounds();
	test_files();
	test_run();
	{
		char cmd[PATH_MAX + 16];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			diag("could not remove %s", tmpdir);
	}
	return done_testing();
}
