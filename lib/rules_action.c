/*
 * rules_action.c: the action lines of procmail recipes: folders (through
 * the caller's callback), "| command" pipes, "! address" forwards through
 * $SENDMAIL, filters (f) that replace the message, and VAR=| captures.
 *
 * SECURITY: commands are the user's own, run as the user with the
 * rules' variables as their whole environment; the message is untrusted
 * and only fed to them or handed to the callback. Filter output is
 * bounded (RULES_FILTER_MAX), captures by RULES_CAPTURE_MAX.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "rules_state.h"
#include "xmalloc.h"

static void
rules_result_status(struct rules_state *s, enum rules_status st)
{
	if (st > s->sh->res->status)
		s->sh->res->status = st;
}

static void
rules_lastfolder(struct rules_state *s, const char *name, size_t size)
{
	const char *abs = rules_var_get(s, "LOGABSTRACT");

	rules_var_set(s, "LASTFOLDER", name);
	snprintf(s->sh->res->lastfolder, sizeof(s->sh->res->lastfolder),
	    "%s", name);
	if (s->logfd >= 0 && (abs == NULL || strcasecmp(abs, "no") != 0))
		dprintf(s->logfd, "  Folder: %s\t%zu\n", name, size);
}

/* The kind of folder an action names, and its absolute path. */
static enum rules_folder_kind
rules_folder_kind(const struct rules_state *s, const char *name,
    char **path_r)
{
	size_t len = strlen(name);
	struct stat st;
	char *p;

	if (len >= 2 && strcmp(name + len - 2, "/.") == 0) {
		p = xstrndup(name, len - 2);
		*path_r = rules_path(s, p);
		free(p);
		return RULES_FOLDER_MH;
	}
	if (len >= 1 && name[len - 1] == '/') {
		while (len > 1 && name[len - 1] == '/')
			len--;
		p = xstrndup(name, len);
		*path_r = rules_path(s, p);
		free(p);
		return RULES_FOLDER_MAILDIR;
	}
	*path_r = rules_path(s, name);
	if (stat(*path_r, &st) == 0 && S_ISDIR(st.st_mode))
		return RULES_FOLDER_DIR;
	return RULES_FOLDER_MBOX;
}

enum rules_status
rules_do_folder(struct rules_state *s, const struct rules_node *n)
{
	const struct rules_shared *sh = s->sh;
	enum rules_folder_kind kind;
	enum rules_status st;
	const unsigned char *p;
	struct buf name;
	char *path, *stored = NULL;
	const char *err = NULL;
	size_t len;

	buf_init(&name, RULES_VALUE_MAX);
	if (rules_expand(s, n->arg, RULES_EXP_ASSIGN, &name, NULL, &err) < 0) {
		rules_log(s, true, "folder: %s", err);
		buf_free(&name);
		return RULES_TEMPFAIL;
	}
	if (strcmp(buf_cstr(&name), "/dev/null") == 0) {
		rules_lastfolder(s, "/dev/null", s->msg.len);
		buf_free(&name);
		return RULES_OK;
	}
	kind = rules_folder_kind(s, buf_cstr(&name), &path);
	rules_msg_feed(s, n->flags, kind == RULES_FOLDER_MBOX ?
	    RULES_FEED_MBOX : kind == RULES_FOLDER_MAILDIR ?
	    RULES_FEED_MAILDIR : RULES_FEED_RAW, &p, &len);
	st = sh->cb->folder(sh->ctx, kind, path, p, len, &stored, &err);
	if (st == RULES_OK) {
		sh->res->folders++;
		rules_lastfolder(s, stored != NULL ? stored : buf_cstr(&name),
		    len);
	} else {
		rules_log(s, true, "couldn't deliver to \"%s\": %s", path,
		    err != NULL ? err : "failed");
		rules_result_status(s, st);
	}
	free(stored);
	free(path);
	buf_free(&name);
	return st;
}

static enum rules_status
rules_command(struct rules_state *s, char *const *argv, const char *cmd,
    const unsigned char *p, size_t len, bool check, bool ignore_werr,
    const char **error_r)
{
	const struct rules_shared *sh = s->sh;
	struct rules_cmd_result res;
	struct rules_cmd c;
	enum rules_status st;
	char **envp = rules_var_envp(s);

	if (sh->cb->command != NULL) {
		st = sh->cb->command(sh->ctx, argv, cmd, envp, s->cwd, p, len,
		    check, ignore_werr, error_r);
		rules_var_envp_free(envp);
		return st;
	}
	memset(&c, 0, sizeof(c));
	c.argv = argv;
	c.shell = rules_var_get(s, "SHELL");
	c.shell_cmd = cmd;
	c.envp = envp;
	c.cwd = s->cwd;
	c.in = p;
	c.in_len = len;
	c.output_fd = -1;
	c.stderr_fd = s->logfd;
	c.timeout = sh->env->command_timeout;
	c.umask = s->umask;
	if (rules_cmd_run(&c, &res, error_r) < 0) {
		rules_var_envp_free(envp);
		return RULES_TEMPFAIL;
	}
	rules_var_envp_free(envp);
	s->last_exit = res.status;
	if (res.write_error && !ignore_werr) {
		*error_r = "the command did not read all of the message";
		return RULES_TEMPFAIL;
	}
	if (!check && !res.timed_out)
		return RULES_OK;
	st = rules_exit_status(&res);
	if (st != RULES_OK)
		*error_r = res.timed_out ? "timed out" : "non-zero exit status";
	return st;
}

/* procmail's LOCKSLEEP and LOCKTIMEOUT defaults. */
#define RULES_LOCK_SLEEP	8
#define RULES_LOCK_STALE	1024

/*
 * ":0:name" on a command: the dotlock name (relative to $MAILDIR), made
 * with O_EXCL, waited for every RULES_LOCK_SLEEP seconds for at most the
 * command time limit, removed when older than RULES_LOCK_STALE seconds
 * (procmail's rules). Folders need none: the folder callback locks them.
 * Returns the path to unlink afterwards (NULL: no lock), or sets *failed.
 */
static char *
rules_lock(struct rules_state *s, const struct rules_node *n, bool *failed)
{
	unsigned waited = 0, limit = s->sh->env->command_timeout;
	struct buf name;
	struct stat st;
	const char *err;
	char *path;
	int fd;

	*failed = false;
	if (!n->has_lock || n->lockfile == NULL)
		return NULL;
	buf_init(&name, RULES_VALUE_MAX);
	if (rules_expand(s, n->lockfile, RULES_EXP_ASSIGN, &name, NULL,
	    &err) < 0) {
		rules_log(s, true, "lock file: %s", err);
		buf_free(&name);
		*failed = true;
		return NULL;
	}
	path = rules_path(s, buf_cstr(&name));
	buf_free(&name);
	while ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    0444)) < 0) {
		if (errno != EEXIST || (limit > 0 && waited >= limit)) {
			rules_log(s, true, "cannot lock \"%s\": %s", path,
			    errno == EEXIST ? "timed out" : strerror(errno));
			free(path);
			*failed = true;
			return NULL;
		}
		if (stat(path, &st) == 0 &&
		    time(NULL) - st.st_mtime > RULES_LOCK_STALE) {
			unlink(path);
			continue;
		}
		sleep(RULES_LOCK_SLEEP);
		waited += RULES_LOCK_SLEEP;
	}
	close(fd);
	return path;
}

static void
rules_unlock(char *path)
{
	if (path == NULL)
		return;
	unlink(path);
	free(path);
}

enum rules_status
rules_do_pipe(struct rules_state *s, const struct rules_node *n)
{
	const unsigned char *p;
	const char *err = NULL;
	enum rules_status st;
	size_t len;
	bool check = (n->flags & (RULES_F_WAIT | RULES_F_WAIT_QUIET)) != 0;

	char *lock;
	bool lock_failed;

	lock = rules_lock(s, n, &lock_failed);
	if (lock_failed)
		return RULES_TEMPFAIL;
	rules_msg_feed(s, n->flags, RULES_FEED_RAW, &p, &len);
	st = rules_command(s, NULL, n->arg, p, len, check,
	    (n->flags & RULES_F_IGNORE_WERR) != 0, &err);
	rules_unlock(lock);
	if (st == RULES_OK)
		rules_lastfolder(s, n->arg, len);
	else if (!(n->flags & RULES_F_WAIT_QUIET))
		rules_log(s, true, "program failure of \"%s\": %s", n->arg,
		    err != NULL ? err : "failed");
	return st;
}

enum rules_status
rules_do_forward(struct rules_state *s, const struct rules_node *n)
{
	struct buf words, flags;
	const unsigned char *p;
	const char *err = NULL, *sm = rules_var_get(s, "SENDMAIL");
	const char *smf = rules_var_get(s, "SENDMAILFLAGS");
	enum rules_status st = RULES_TEMPFAIL;
	size_t nw = 0, nf = 0, i, k = 0, len;
	char **argv, *w;

	buf_init(&words, RULES_VALUE_MAX);
	buf_init(&flags, RULES_VALUE_MAX);
	if (rules_expand(s, n->arg, RULES_EXP_WORDS, &words, &nw, &err) < 0 ||
	    rules_expand(s, smf != NULL ? smf : "", RULES_EXP_WORDS, &flags,
	    &nf, &err) < 0 || nw == 0) {
		rules_log(s, true, "forward: %s", err != NULL ? err :
		    "no address");
		goto done;
	}
	argv = xcalloc(nw + nf + 2, sizeof(*argv));
	argv[k++] = (char *)(sm != NULL && sm[0] != '\0' ? sm :
	    "/usr/sbin/sendmail");
	for (i = 0, w = (char *)flags.data; i < nf; i++, w += strlen(w) + 1)
		argv[k++] = w;
	for (i = 0, w = (char *)words.data; i < nw; i++, w += strlen(w) + 1)
		argv[k++] = w;
	rules_msg_feed(s, n->flags, RULES_FEED_FORWARD, &p, &len);
	st = rules_command(s, argv, NULL, p, len, true,
	    (n->flags & RULES_F_IGNORE_WERR) != 0, &err);
	if (st == RULES_OK)
		rules_lastfolder(s, argv[0], len);
	else
		rules_log(s, true, "forwarding with %s failed: %s", argv[0],
		    err != NULL ? err : "failed");
	free(argv);
done:
	buf_free(&words);
	buf_free(&flags);
	return st;
}

/* f: the output replaces what was fed (header, body or both). */
enum rules_status
rules_do_filter(struct rules_state *s, const struct rules_node *n)
{
	struct rules_cmd_result res;
	struct buf out, repl;
	const unsigned char *p;
	const char *err;
	size_t len;
	bool check = (n->flags & (RULES_F_WAIT | RULES_F_WAIT_QUIET)) != 0;
	bool h = (n->flags & RULES_F_HEADER_FEED) != 0;
	bool b = (n->flags & RULES_F_BODY_FEED) != 0;

	rules_msg_feed(s, n->flags, RULES_FEED_RAW, &p, &len);
	buf_init(&out, RULES_FILTER_MAX);
	if (rules_run_shell(s, n->arg, p, len, &out, &res, &err) < 0 ||
	    res.out_overflow || res.timed_out ||
	    (res.write_error && !(n->flags & RULES_F_IGNORE_WERR)) ||
	    (check && res.status != 0) || (res.status != 0 && out.len == 0)) {
		if (!(n->flags & RULES_F_WAIT_QUIET))
			rules_log(s, true, "filter \"%s\" failed (exit %d)",
			    n->arg, res.status);
		buf_free(&out);
		return RULES_TEMPFAIL;
	}
	buf_init(&repl, RULES_FILTER_MAX);
	if ((h && !b) || (!h && b)) {
		if (b)
			buf_append(&repl, s->msg.data, s->body_off);
		buf_append(&repl, out.data, out.len);
		if (h)
			buf_append(&repl, s->msg.data + s->body_off,
			    s->msg.len - s->body_off);
		buf_free(&out);
		out = repl;
	} else
		buf_free(&repl);
	buf_free(&s->msg);
	s->msg = out;
	if (!(n->flags & RULES_F_RAW))
		rules_msg_end(s);
	else
		s->added_nl = 0;
	rules_msg_layout(s);
	return RULES_OK;
}

enum rules_status
rules_do_capture(struct rules_state *s, const struct rules_node *n)
{
	struct rules_cmd_result res;
	struct buf out;
	const unsigned char *p;
	const char *err;
	size_t len;

	rules_msg_feed(s, n->flags, RULES_FEED_RAW, &p, &len);
	buf_init(&out, RULES_CAPTURE_MAX);
	if (rules_run_shell(s, n->arg, p, len, &out, &res, &err) < 0) {
		rules_log(s, true, "cannot run \"%s\": %s", n->arg, err);
		buf_free(&out);
		return RULES_TEMPFAIL;
	}
	/* procmailrc(5) BUGS: exactly one trailing newline is stripped. */
	if (out.len > 0 && out.data[out.len - 1] == '\n')
		buf_truncate(&out, out.len - 1);
	if (rules_assign(s, n->capture, buf_cstr(&out)) < 0)
		s->failed = true;
	buf_free(&out);
	return (n->flags & (RULES_F_WAIT | RULES_F_WAIT_QUIET)) &&
	    res.status != 0 ? RULES_TEMPFAIL : RULES_OK;
}

