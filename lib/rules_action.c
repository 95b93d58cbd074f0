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

/* One folder of an action: *stored_r (malloc'd) is what $LASTFOLDER
 * names, *len_r what was written. */
static enum rules_status
rules_folder_one(struct rules_state *s, const struct rules_node *n,
    const char *name, enum rules_folder_kind kind, enum rules_folder_kind
    shape, const char *path, char **stored_r, size_t *len_r)
{
	const struct rules_shared *sh = s->sh;
	const unsigned char *p;
	const char *err = NULL;
	enum rules_status st;
	char *stored = NULL;

	rules_msg_feed(s, n->flags, shape == RULES_FOLDER_MBOX ?
	    RULES_FEED_MBOX : shape == RULES_FOLDER_MAILDIR ?
	    RULES_FEED_MAILDIR : RULES_FEED_RAW, &p, len_r);
	st = sh->cb->folder(sh->ctx, kind, path, p, *len_r, &stored, &err);
	if (st == RULES_OK) {
		sh->res->folders++;
		*stored_r = stored != NULL ? stored : xstrdup(name);
		return st;
	}
	free(stored);
	rules_log(s, true, "couldn't deliver to \"%s\": %s", path,
	    err != NULL ? err : "failed");
	rules_result_status(s, st);
	return st;
}

/*
 * Several directories in one action ("a/ b/. c"): each gets the message
 * (procmail links one file into each; loft writes each, so that a folder
 * of the store is written by the store), shaped as the first one's kind
 * wants it (procmail's links share the first file's bytes: a Maildir
 * first, no From_ line in the MH ones either), $LASTFOLDER lists them.
 * As in procmail, when the first name is a file the others are skipped. The
 * result is the first one's; a later failure is still a failed write
 * (res->status).
 */
static enum rules_status
rules_folders(struct rules_state *s, const struct rules_node *n,
    const char *words, size_t nw)
{
	enum rules_folder_kind kind, shape = RULES_FOLDER_MBOX;
	enum rules_status st = RULES_OK, one;
	struct buf names;
	const char *w = words;
	char *path, *stored;
	size_t i, len = 0;

	buf_init(&names, RULES_VALUE_MAX);
	for (i = 0; i < nw; i++, w += strlen(w) + 1) {
		kind = rules_folder_kind(s, w, &path);
		if (i > 0 && kind == RULES_FOLDER_MBOX) {
			rules_log(s, true, "skipped \"%s\": not a directory",
			    w);
			free(path);
			continue;
		}
		if (i == 0)
			shape = kind;
		stored = NULL;
		one = rules_folder_one(s, n, w, kind, shape, path, &stored,
		    &len);
		free(path);
		if (i == 0)
			st = one;
		if (one == RULES_OK) {
			if (names.len > 0)
				buf_append_byte(&names, ' ');
			buf_append_str(&names, stored);
		}
		free(stored);
		if (i == 0 && kind == RULES_FOLDER_MBOX) {
			if (nw > 1)
				rules_log(s, true, "skipped \"%s\": \"%s\" is "
				    "not a directory", w + strlen(w) + 1, words);
			break;
		}
	}
	if (names.len > 0)
		rules_lastfolder(s, buf_cstr(&names), len);
	buf_free(&names);
	return st;
}

enum rules_status
rules_do_folder(struct rules_state *s, const struct rules_node *n)
{
	enum rules_status st;
	struct buf words;
	const char *err = NULL;
	size_t nw = 0;

	buf_init(&words, RULES_VALUE_MAX);
	if (rules_expand(s, n->arg, RULES_EXP_WORDS, &words, &nw, &err) < 0) {
		rules_log(s, true, "folder: %s", err);
		buf_free(&words);
		return RULES_TEMPFAIL;
	}
	if (nw == 0)
		buf_append_byte(&words, '\0');
	if (nw <= 1 && strcmp(buf_cstr(&words), "/dev/null") == 0) {
		rules_lastfolder(s, "/dev/null", s->msg.len);
		buf_free(&words);
		return RULES_OK;
	}
	st = rules_folders(s, n, (const char *)words.data, nw > 0 ? nw : 1);
	buf_free(&words);
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

static unsigned
rules_var_uint(const struct rules_state *s, const char *name, unsigned def)
{
	const char *v = rules_var_get(s, name);
	char *end;
	unsigned long n;

	if (v == NULL || v[0] < '0' || v[0] > '9')
		return def;
	n = strtoul(v, &end, 10);
	return *end == '\0' && n <= 86400 ? (unsigned)n : def;
}

char *
rules_dotlock(struct rules_state *s, const char *name)
{
	unsigned waited = 0, limit = s->sh->env->command_timeout;
	unsigned nap = rules_var_uint(s, "LOCKSLEEP", RULES_LOCK_SLEEP);
	unsigned stale = rules_var_uint(s, "LOCKTIMEOUT", RULES_LOCK_STALE);
	struct stat st;
	char *path = rules_path(s, name);
	int fd;

	while ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    0444)) < 0) {
		if (errno != EEXIST || (limit > 0 && waited >= limit)) {
			rules_log(s, true, "cannot lock \"%s\": %s", path,
			    errno == EEXIST ? "timed out" : strerror(errno));
			free(path);
			return NULL;
		}
		if (stale > 0 && stat(path, &st) == 0 &&
		    time(NULL) - st.st_mtime > (time_t)stale) {
			unlink(path);
			continue;
		}
		sleep(nap > 0 ? nap : 1);
		waited += nap > 0 ? nap : 1;
	}
	close(fd);
	return path;
}

/*
 * ":0:name" on a command: its lock file (rules_dotlock). Folders need
 * none: the folder callback locks them. Returns the path to unlink
 * afterwards (NULL: no lock), or sets *failed.
 */
static char *
rules_lock(struct rules_state *s, const struct rules_node *n, bool *failed)
{
	struct buf name;
	const char *err;
	char *path;

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
	path = rules_dotlock(s, buf_cstr(&name));
	buf_free(&name);
	*failed = path == NULL;
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

/* A bare "|": the message (as a pipe gets it) on standard output. */
static enum rules_status
rules_to_stdout(struct rules_state *s, const unsigned char *p, size_t len,
    const char **error_r)
{
	int fd = s->sh->env->stdout_fd;
	ssize_t n;

	if (fd <= 0) {
		*error_r = "no standard output to write to";
		return RULES_TEMPFAIL;
	}
	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			*error_r = "cannot write to standard output";
			return RULES_TEMPFAIL;
		}
		p += n;
		len -= (size_t)n;
	}
	return RULES_OK;
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
	if (n->arg[0] == '\0')
		st = rules_to_stdout(s, p, len, &err);
	else
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
	if (rules_run_shell(s, n->arg, p, len, &out, -1, &res, &err) < 0 ||
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
	if (rules_run_shell(s, n->arg, p, len, &out, -1, &res, &err) < 0) {
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

