/*
 * forward.c: reading a user's ~/.forward and :include: lists, and handing
 * the message to what they name (see forward.h).
 *
 * Trusts: nothing in the files, which the user writes (and, for an
 * :include:, whoever owns it). They are read as the user, bounded in size
 * and entries, parsed by an explicit state machine, and their text is
 * never given to a shell except a "|command" entry, which is the user's
 * own command run as the user. Addresses go to sendmail as separate
 * arguments after "--", so none can pass for an option.
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
#include "rules.h"
#include "xmalloc.h"

static char forward_errbuf[PATH_MAX + 256];

static const char *
forward_error(const char *name, unsigned line, const char *what)
{
	if (line > 0)
		snprintf(forward_errbuf, sizeof(forward_errbuf), "%s:%u: %s",
		    name, line, what);
	else
		snprintf(forward_errbuf, sizeof(forward_errbuf), "%s: %s",
		    name, what);
	return forward_errbuf;
}

/*
 * The parser.
 */

enum forward_state {
	FS_START,	/* before an entry: blanks, commas, line ends */
	FS_COMMENT,	/* after '#' at the start of a line */
	FS_TOKEN,	/* an unquoted entry, up to ',' or the line end */
	FS_QUOTED,	/* inside "..." */
	FS_QUOTED_ESC,	/* after '\' inside "..." */
	FS_AFTER_QUOTE,	/* after the closing '"': blanks, then ',' or end */
	FS_PIPE		/* an unquoted "|command": the rest of the line */
};

struct forward_parser {
	const char *name;
	const char *self;
	struct forward *f;
	enum forward_state state;
	unsigned line;
	bool line_start;	/* nothing but blanks seen on this line */
	unsigned entry_line;
	char entry[FORWARD_ENTRY_MAX + 1];
	size_t len;
	bool quoted;
};

static void
forward_add(struct forward *f, enum forward_kind kind, const char *value,
    unsigned line)
{
	if (f->n == f->alloc) {
		f->alloc = f->alloc == 0 ? 8 : f->alloc * 2;
		f->e = xreallocarray(f->e, f->alloc, sizeof(*f->e));
	}
	f->e[f->n].kind = kind;
	f->e[f->n].value = xstrdup(value);
	f->e[f->n].line = line;
	f->n++;
}

static bool
forward_blank(int c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* An address as a .forward may give it: "Name <addr>" is taken as addr;
 * the rest must be one word of printable bytes (UTF-8 allowed) that does
 * not start with '-'. */
static const char *
forward_address(char *s)
{
	char *lt = strchr(s, '<'), *gt;

	if (lt != NULL) {
		if ((gt = strchr(lt, '>')) == NULL || gt[1] != '\0')
			return NULL;
		*gt = '\0';
		s = lt + 1;
	}
	if (s[0] == '\0' || s[0] == '-')
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0';
	    p++)
		if (*p <= ' ' || *p == 0x7f || *p == '<' || *p == '>' ||
		    *p == '"' || *p == ',' || *p == '\\')
			return NULL;
	return s;
}

/* Classify the entry collected in p->entry. */
static int
forward_entry_done(struct forward_parser *p, const char **error_r)
{
	char *s = p->entry;
	const char *addr;
	size_t n = p->len;

	s[n] = '\0';
	if (!p->quoted) {
		while (n > 0 && forward_blank(s[n - 1]))
			s[--n] = '\0';
	}
	p->len = 0;
	if (n == 0 && !p->quoted)
		return 0;
	if (p->f->n >= FORWARD_ENTRIES_MAX) {
		*error_r = forward_error(p->name, p->entry_line,
		    "too many entries");
		return -1;
	}
	if (s[0] == '|') {
		s++;
		while (forward_blank(*s))
			s++;
		if (*s == '\0') {
			*error_r = forward_error(p->name, p->entry_line,
			    "a pipe without a command");
			return -1;
		}
		forward_add(p->f, FORWARD_PIPE, s, p->entry_line);
		return 0;
	}
	if (strncmp(s, ":include:", 9) == 0) {
		s += 9;
		while (forward_blank(*s))
			s++;
		if (*s != '/') {
			*error_r = forward_error(p->name, p->entry_line,
			    ":include: needs an absolute path");
			return -1;
		}
		forward_add(p->f, FORWARD_INCLUDE, s, p->entry_line);
		return 0;
	}
	if (s[0] == '/') {
		forward_add(p->f, s[strlen(s) - 1] == '/' ? FORWARD_MAILDIR :
		    FORWARD_MBOX, s, p->entry_line);
		return 0;
	}
	if (s[0] == '\\') {
		s++;
		if (p->self != NULL && strcmp(s, p->self) == 0) {
			forward_add(p->f, FORWARD_SELF, s, p->entry_line);
			return 0;
		}
	} else if (p->self != NULL && strcmp(s, p->self) == 0) {
		forward_add(p->f, FORWARD_SELF, s, p->entry_line);
		return 0;
	}
	if ((addr = forward_address(s)) == NULL) {
		*error_r = forward_error(p->name, p->entry_line,
		    "not an address, a |command, a /path or an :include:");
		return -1;
	}
	forward_add(p->f, FORWARD_ADDRESS, addr, p->entry_line);
	return 0;
}

static int
forward_entry_byte(struct forward_parser *p, char c, const char **error_r)
{
	if (p->len >= FORWARD_ENTRY_MAX) {
		*error_r = forward_error(p->name, p->entry_line,
		    "entry too long");
		return -1;
	}
	p->entry[p->len++] = c;
	return 0;
}

static void
forward_entry_start(struct forward_parser *p, bool quoted)
{
	p->len = 0;
	p->quoted = quoted;
	p->entry_line = p->line;
}

static int
forward_feed_byte(struct forward_parser *p, char c, const char **error_r)
{
	switch (p->state) {
	case FS_START:
		if (c == '\n') {
			p->line++;
			p->line_start = true;
		} else if (c == ',' || forward_blank(c))
			;
		else if (c == '#' && p->line_start)
			p->state = FS_COMMENT;
		else if (c == '"') {
			forward_entry_start(p, true);
			p->state = FS_QUOTED;
		} else {
			forward_entry_start(p, false);
			p->state = c == '|' ? FS_PIPE : FS_TOKEN;
			return forward_entry_byte(p, c, error_r);
		}
		if (c == ',')
			p->line_start = false;
		return 0;
	case FS_COMMENT:
		if (c == '\n') {
			p->line++;
			p->state = FS_START;
		}
		return 0;
	case FS_TOKEN:
	case FS_PIPE:
		if (c == '\n' || (c == ',' && p->state == FS_TOKEN)) {
			p->state = FS_START;
			if (forward_entry_done(p, error_r) < 0)
				return -1;
			if (c == '\n') {
				p->line++;
				p->line_start = true;
			} else
				p->line_start = false;
			return 0;
		}
		return forward_entry_byte(p, c, error_r);
	case FS_QUOTED:
		if (c == '"') {
			p->state = FS_AFTER_QUOTE;
			return forward_entry_done(p, error_r);
		}
		if (c == '\\') {
			p->state = FS_QUOTED_ESC;
			return 0;
		}
		if (c == '\n') {
			*error_r = forward_error(p->name, p->entry_line,
			    "unterminated quoted entry");
			return -1;
		}
		return forward_entry_byte(p, c, error_r);
	case FS_QUOTED_ESC:
		p->state = FS_QUOTED;
		if (c == '\n') {
			*error_r = forward_error(p->name, p->entry_line,
			    "unterminated quoted entry");
			return -1;
		}
		return forward_entry_byte(p, c, error_r);
	case FS_AFTER_QUOTE:
		if (forward_blank(c))
			return 0;
		if (c == ',' || c == '\n') {
			p->state = FS_START;
			p->line_start = c == '\n';
			if (c == '\n')
				p->line++;
			return 0;
		}
		*error_r = forward_error(p->name, p->line,
		    "text after a quoted entry");
		return -1;
	}
	return 0;
}

int
forward_parse(const char *name, const char *text, size_t len,
    const char *self, struct forward *f, const char **error_r)
{
	struct forward_parser *p = xcalloc(1, sizeof(*p));
	int ret = 0;

	p->name = name;
	p->self = self;
	p->f = f;
	p->state = FS_START;
	p->line = 1;
	p->line_start = true;
	for (size_t i = 0; i < len && ret == 0; i++) {
		if (text[i] == '\0') {
			*error_r = forward_error(name, p->line, "a NUL byte");
			ret = -1;
		} else
			ret = forward_feed_byte(p, text[i], error_r);
	}
	/* The end of the text ends a line. */
	if (ret == 0 && (p->state == FS_QUOTED ||
	    p->state == FS_QUOTED_ESC)) {
		*error_r = forward_error(name, p->entry_line,
		    "unterminated quoted entry");
		ret = -1;
	} else if (ret == 0)
		ret = forward_feed_byte(p, '\n', error_r);
	free(p);
	return ret;
}

/*
 * Reading the files.
 */

/* Whether path (made absolute by realpath) lies inside dir. */
static bool
forward_inside(const char *path, const char *dir)
{
	char real[PATH_MAX];
	size_t n;

	if (dir == NULL || dir[0] != '/' || realpath(dir, real) == NULL)
		return false;
	n = strlen(real);
	if (n == 1)
		return true;	/* a home of "/" holds everything */
	return strncmp(path, real, n) == 0 && path[n] == '/';
}

/*
 * Open path for reading as the rules say: a .forward (include false) must
 * be owned by uid, and a symbolic link must lead inside home; an :include:
 * file may also be root's (a list the administrator keeps) and lie
 * anywhere. Either must pass the check loft-deliver makes of the rule file
 * (rules_file_suspicious): a regular file that neither group nor others
 * may write. The symbolic link rule is this file's own: a .forward is
 * always in the home, and a link out of it would let the user point the
 * delivery at a file that is not really theirs to name.
 */
static int
forward_open(const char *path, uid_t uid, const char *home, bool include,
    struct stat *sb, const char **error_r)
{
	char real[PATH_MAX];
	struct stat lsb;
	const char *why;
	int fd;

	if (lstat(path, &lsb) < 0) {
		if (errno == ENOENT && !include)
			return -2;
		*error_r = forward_error(path, 0, strerror(errno));
		return -1;
	}
	if (S_ISLNK(lsb.st_mode)) {
		if (realpath(path, real) == NULL) {
			*error_r = forward_error(path, 0, errno == ENOENT ?
			    "a symbolic link to nothing" : strerror(errno));
			return -1;
		}
		if (!include && !forward_inside(real, home)) {
			*error_r = forward_error(path, 0, "a symbolic link "
			    "out of the home directory");
			return -1;
		}
		path = real;
	}
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK |
	    O_CLOEXEC)) < 0) {
		*error_r = forward_error(path, 0, errno == ELOOP ?
		    "a symbolic link (changed while read)" : strerror(errno));
		return -1;
	}
	if (fstat(fd, sb) < 0) {
		*error_r = forward_error(path, 0, strerror(errno));
		close(fd);
		return -1;
	}
	if ((why = rules_file_suspicious(sb, uid, include)) != NULL) {
		close(fd);
		*error_r = forward_error(path, 0, why);
		return -1;
	}
	return fd;
}

/* Read all of fd, at most FORWARD_FILE_MAX bytes, into b. */
static int
forward_slurp(int fd, const char *path, struct buf *b, const char **error_r)
{
	char chunk[8192];
	ssize_t n;

	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error_r = forward_error(path, 0, strerror(errno));
			return -1;
		}
		if (n == 0)
			return 0;
		if (b->len + (size_t)n > FORWARD_FILE_MAX) {
			*error_r = forward_error(path, 0, "file too large");
			return -1;
		}
		buf_append(b, chunk, (size_t)n);
	}
}

static int
forward_load(const char *path, uid_t uid, const char *home, bool include,
    const char *self, struct forward *f, const char **error_r)
{
	struct stat sb;
	struct buf b;
	int fd, ret;

	if ((fd = forward_open(path, uid, home, include, &sb, error_r)) < 0)
		return fd == -2 ? 0 : -1;
	buf_init(&b, FORWARD_FILE_MAX);
	ret = forward_slurp(fd, path, &b, error_r);
	close(fd);
	if (ret == 0)
		ret = forward_parse(path, (const char *)b.data, b.len, self,
		    f, error_r);
	buf_free(&b);
	return ret < 0 ? -1 : 1;
}

/* Replace every FORWARD_INCLUDE of f from index 'from' by its file's
 * entries, depth levels deep at most. */
static int
forward_expand(struct forward *f, size_t from, uid_t uid, const char *home,
    const char *self, unsigned depth, const char **error_r)
{
	for (size_t i = from; i < f->n; i++) {
		struct forward sub = { NULL, 0, 0 };
		struct forward_entry inc;
		int ret;

		if (f->e[i].kind != FORWARD_INCLUDE)
			continue;
		if (depth >= FORWARD_INCLUDE_DEPTH) {
			*error_r = forward_error(f->e[i].value, 0,
			    ":include: nested too deep");
			return -1;
		}
		inc = f->e[i];
		ret = forward_load(inc.value, uid, home, true, self, &sub,
		    error_r);
		if (ret < 0 || forward_expand(&sub, 0, uid, home, self,
		    depth + 1, error_r) < 0) {
			forward_free(&sub);
			return -1;
		}
		if (f->n - 1 + sub.n > FORWARD_ENTRIES_MAX) {
			forward_free(&sub);
			*error_r = forward_error(inc.value, 0,
			    "too many entries");
			return -1;
		}
		/* Put sub's entries where the :include: was. */
		if (f->n - 1 + sub.n > f->alloc) {
			f->alloc = f->n - 1 + sub.n;
			f->e = xreallocarray(f->e, f->alloc, sizeof(*f->e));
		}
		memmove(&f->e[i + sub.n], &f->e[i + 1],
		    (f->n - i - 1) * sizeof(*f->e));
		if (sub.n > 0)
			memcpy(&f->e[i], sub.e, sub.n * sizeof(*sub.e));
		f->n = f->n - 1 + sub.n;
		free(inc.value);
		free(sub.e);
		i = i + sub.n - 1;	/* sub is expanded already */
	}
	return 0;
}

int
forward_read(const char *path, uid_t uid, const char *home,
    const char *self, struct forward *f, const char **error_r)
{
	int ret = forward_load(path, uid, home, false, self, f, error_r);

	if (ret == 1 && forward_expand(f, 0, uid, home, self, 0,
	    error_r) < 0)
		ret = -1;
	if (ret < 0) {
		forward_free(f);
		return -1;
	}
	return f->n > 0 ? 1 : 0;
}

void
forward_free(struct forward *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->e[i].value);
	free(f->e);
	f->e = NULL;
	f->n = f->alloc = 0;
}

/*
 * Running the entries.
 */

/* A temporary failure outweighs a permanent one: the message comes back
 * and the target that may work then gets its chance. */
static int
forward_severity(enum rules_status st)
{
	return st == RULES_TEMPFAIL ? 2 : st == RULES_PERMFAIL ? 1 : 0;
}

static void
forward_fail(struct forward_result *res, enum rules_status st,
    const struct forward_entry *e, const char *what)
{
	if (forward_severity(st) > forward_severity(res->status))
		res->status = st;
	if (res->error[0] == '\0')
		snprintf(res->error, sizeof(res->error), "%s: %s", e->value,
		    what);
}

/* The environment of a command: what Postfix's local(8) gives one. */
static char **
forward_envp(const struct forward_env *env)
{
	char **v = xcalloc(8, sizeof(*v));
	size_t n = 0;

	v[n++] = xasprintf("HOME=%s", env->home);
	v[n++] = xasprintf("USER=%s", env->user);
	v[n++] = xasprintf("LOGNAME=%s", env->user);
	v[n++] = xasprintf("SHELL=%s", env->shell != NULL ? env->shell :
	    "/bin/sh");
	v[n++] = xasprintf("PATH=%s", env->path != NULL ? env->path :
	    "/usr/bin:/bin");
	v[n++] = xasprintf("SENDER=%s", env->sender);
	v[n++] = xasprintf("RECIPIENT=%s", env->recipient != NULL ?
	    env->recipient : env->user);
	v[n] = NULL;
	return v;
}

static void
forward_envp_free(char **v)
{
	for (size_t i = 0; v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

/* Run a command through the callback, or by itself when there is none. */
static enum rules_status
forward_command(const struct forward_env *env,
    const struct rules_callbacks *cb, void *ctx, char *const *argv,
    const char *shell_cmd, char *const *envp, const unsigned char *msg,
    size_t len, const char **error_r)
{
	struct rules_cmd c;
	struct rules_cmd_result r;

	if (cb->command != NULL)
		return cb->command(ctx, argv, shell_cmd, envp, env->home, msg,
		    len, true, false, error_r);
	memset(&c, 0, sizeof(c));
	c.argv = argv;
	c.shell = env->shell;
	c.shell_cmd = shell_cmd;
	c.envp = envp;
	c.cwd = env->home;
	c.in = msg;
	c.in_len = len;
	c.output_fd = -1;
	c.stderr_fd = -1;
	c.timeout = env->command_timeout;
	c.umask = 077;
	if (rules_cmd_run(&c, &r, error_r) < 0)
		return RULES_TEMPFAIL;
	if (r.timed_out)
		*error_r = "timed out";
	else if (r.status != 0)
		*error_r = "exited with an error";
	return rules_exit_status(&r);
}

/* All the addresses of f in one run of sendmail. */
static void
forward_send(const struct forward *f, const struct forward_env *env,
    const struct rules_callbacks *cb, void *ctx, char *const *envp,
    const unsigned char *msg, size_t len, struct forward_result *res)
{
	const char **argv = xcalloc(f->n + 7, sizeof(*argv));
	const struct forward_entry *first = NULL;
	const char *error = "failed";
	enum rules_status st;
	size_t n = 0, naddr = 0;

	argv[n++] = env->sendmail;
	argv[n++] = "-oi";
	argv[n++] = "-f";
	argv[n++] = env->sender;
	argv[n++] = "--";
	for (size_t i = 0; i < f->n; i++)
		if (f->e[i].kind == FORWARD_ADDRESS) {
			if (first == NULL)
				first = &f->e[i];
			argv[n++] = f->e[i].value;
			naddr++;
		}
	argv[n] = NULL;
	if (naddr > 0) {
		st = forward_command(env, cb, ctx, (char *const *)argv, NULL,
		    envp, msg, len, &error);
		if (st == RULES_OK)
			res->done += (unsigned)naddr;
		else
			forward_fail(res, st, first, error);
	}
	free(argv);
}

int
forward_run(const struct forward *f, const struct forward_env *env,
    const struct rules_callbacks *cb, void *ctx, const unsigned char *msg,
    size_t len, struct forward_result *res)
{
	char **envp = forward_envp(env);

	memset(res, 0, sizeof(*res));
	res->status = RULES_OK;
	for (size_t i = 0; i < f->n; i++) {
		const struct forward_entry *e = &f->e[i];
		const char *error = "failed";
		enum rules_status st = RULES_OK;
		char *stored = NULL;

		switch (e->kind) {
		case FORWARD_SELF:
			res->self = true;
			continue;
		case FORWARD_ADDRESS:
		case FORWARD_INCLUDE:
			continue;	/* together below; expanded before */
		case FORWARD_PIPE:
			st = forward_command(env, cb, ctx, NULL, e->value,
			    envp, msg, len, &error);
			break;
		case FORWARD_MBOX:
		case FORWARD_MAILDIR:
			st = cb->folder(ctx, e->kind == FORWARD_MBOX ?
			    RULES_FOLDER_MBOX : RULES_FOLDER_MAILDIR,
			    e->value, msg, len, &stored, &error);
			free(stored);
			break;
		}
		if (st == RULES_OK)
			res->done++;
		else
			forward_fail(res, st, e, error);
	}
	forward_send(f, env, cb, ctx, envp, msg, len, res);
	forward_envp_free(envp);
	return res->done > 0 || res->self ? 0 : -1;
}
