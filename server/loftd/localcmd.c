/*
 * localcmd.c: the master's deliveries to alias commands and files
 * (localcmd.h). For each LOFTD_DELIVER_LOCAL from qmgr the master checks
 * the target against its own expansion of the alias, picks the uid as
 * Postfix's local(8) does (the owner of the alias database or include
 * file, default_privs when that is root), and forks a short-lived
 * delivery process: it closes every descriptor but the content and its
 * result pipe, becomes that uid for good (no new privileges, not
 * dumpable), and runs the command with rules_cmd_run (/bin/sh -c, the
 * message on standard input, a minimal environment, command_time_limit)
 * or appends to the file as an mbox (mbox_append under the delivery
 * locks, fsynced) or a Maildir. It writes one fixed result record into
 * the pipe and exits. The master reads the record on its loop and reaps
 * the process through its SIGCHLD handler (localcmd_reaped), so a
 * command that runs for minutes never holds the loop; at most
 * LOCALCMD_PROCS_MAX run at once, the others wait in order. The delivery
 * process leads a session of its own, so that the safety timer (the
 * limit plus LOCALCMD_GRACE) can kill everything it started, which it
 * finds through /proc. Once the master stops (localcmd_stop) nothing
 * new starts.
 *
 * SECURITY: runs in the master (root). It trusts the alias maps and the
 * configuration, not qmgr: the target, its kind and its uid come from
 * the master's own expansion (see localcmd.h). The strings qmgr gives
 * for headers and the environment are bounded and free of control bytes
 * before use. The delivery process never returns into the master's
 * code and holds none of its descriptors once it runs as the target's
 * uid; the file it appends to is refused when it is a symbolic link,
 * not a regular file, or writable by others.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "compat/compat.h"
#include "conf.h"
#include "fsutil.h"
#include "ioloop.h"
#include "ipc.h"
#include "lock.h"
#include "log.h"
#include "maildir.h"
#include "mbox.h"
#include "priv.h"
#include "rules.h"
#include "user.h"
#include "xmalloc.h"
/* Spelled from the top, so that t/unit/localcmd.c can include this file
 * with the unit tests' include path. */
#include "smtp/smtp_alias.h"
#include "smtp/smtp_queue.h"
#include "localcmd.h"

/* Descriptors of the delivery process. */
#define LOCALCMD_FD_CONTENT	3
#define LOCALCMD_FD_RESULT	4

/* What the delivery process writes into its pipe: one record, written
 * at once (smaller than PIPE_BUF, so never split). */
struct localcmd_result {
	uint32_t status;			/* enum loftd_dstatus */
	char dsn[8];				/* "2.0.0", NUL-terminated */
	char text[SMTP_QUEUE_DIAG_MAX];		/* NUL-terminated */
};

struct localcmd_job {
	struct localcmd_job *next;
	void *asker;			/* NULL once gone */
	uint32_t req;
	int fd;				/* the content until started; -1 */
	enum smtp_alias_kind kind;
	char *target;			/* owned: command line or path */
	char *rcpt, *orig_rcpt, *sender;	/* owned */
	uid_t uid;
	gid_t gid;
	char *user, *home;		/* owned: of uid */
	/* Once started: */
	pid_t pid;			/* 0: not started, or reaped */
	pid_t sid;			/* its session: the pid it had */
	bool started, answered;
	int res_fd;			/* owned: the pipe's read end, or -1 */
	struct io *io;			/* owned */
	struct timeout *to;		/* owned: LOCALCMD_GRACE past the limit */
	struct localcmd_result res;
	size_t res_len;
	bool res_bad;			/* more bytes than one record */
};

static struct {
	struct ioloop *loop;
	localcmd_answer_fn *answer;
	struct localcmd_job *jobs;	/* owned, in arrival order */
	size_t running;			/* processes not reaped yet */
	unsigned grace;			/* LOCALCMD_GRACE, or a test's */
	bool stopping;			/* localcmd_stop was called */
} localcmd;

static char localcmd_dsn[16];

/*
 * What a command's end means (Postfix's pipe_command() and sys_exits).
 */

static const struct {
	int code;
	const char *dsn, *text;
} localcmd_sysexits[] = {
	{ EX_USAGE, "5.3.0", "command line usage error" },
	{ EX_DATAERR, "5.6.0", "data format error" },
	{ EX_NOINPUT, "5.3.0", "cannot open input" },
	{ EX_NOUSER, "5.1.1", "user unknown" },
	{ EX_NOHOST, "5.1.2", "host name unknown" },
	{ EX_UNAVAILABLE, "5.3.0", "service unavailable" },
	{ EX_SOFTWARE, "5.3.0", "internal software error" },
	{ EX_OSERR, "4.3.0", "system resource problem" },
	{ EX_OSFILE, "5.3.0", "critical OS file missing" },
	{ EX_CANTCREAT, "5.2.0", "can't create user output file" },
	{ EX_IOERR, "5.3.0", "input/output error" },
	{ EX_TEMPFAIL, "4.3.0", "temporary failure" },
	{ EX_PROTOCOL, "5.5.0", "remote error in protocol" },
	{ EX_NOPERM, "5.7.0", "permission denied" },
	{ EX_CONFIG, "5.3.5", "local configuration error" },
};

/* s[0..len) up to its first line end, at most LOCALCMD_QUOTE_MAX bytes,
 * bytes outside printable ASCII as '_' (Postfix's printable()). */
static void
localcmd_quote(const char *s, size_t len, char *out, size_t size)
{
	size_t i, n = 0;

	for (i = 0; i < len && s[i] != '\n' && n + 1 < size &&
	    n < LOCALCMD_QUOTE_MAX; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\r' && (i + 1 == len || s[i + 1] == '\n'))
			break;
		out[n++] = c >= 0x20 && c < 0x7f ? (char)c : '_';
	}
	out[n] = '\0';
}

/* A "D.S.N text" line (RFC 3463 class 4 or 5): the length of the code,
 * else 0. */
static size_t
localcmd_dsn_len(const char *s)
{
	size_t i = 2, d;

	if ((s[0] != '4' && s[0] != '5') || s[1] != '.')
		return 0;
	for (int part = 0; part < 2; part++) {
		for (d = 0; s[i] >= '0' && s[i] <= '9' && d < 3; d++)
			i++;
		if (d == 0 || (part == 0 && s[i++] != '.'))
			return 0;
	}
	return s[i] == ' ' || s[i] == '\0' ? i : 0;
}

enum loftd_dstatus
localcmd_command_status(const char *cmd, int status, bool timed_out,
    const char *out, size_t out_len, const char **dsn_r, char *text,
    size_t size)
{
	char qcmd[LOCALCMD_QUOTE_MAX + 1], line[LOCALCMD_QUOTE_MAX + 1];
	const char *sep;
	size_t k;

	localcmd_quote(cmd, strlen(cmd), qcmd, sizeof(qcmd));
	localcmd_quote(out != NULL ? out : "", out != NULL ? out_len : 0,
	    line, sizeof(line));
	sep = line[0] != '\0' ? ". Command output: " : "";
	if (timed_out) {
		*dsn_r = "5.3.0";
		snprintf(text, size, "Command time limit exceeded: \"%s\"%s%s",
		    qcmd, sep, line);
		return LOFTD_DELIVER_PERM;
	}
	if (status == 0) {
		*dsn_r = "2.0.0";
		snprintf(text, size, "delivered to command: %s", qcmd);
		return LOFTD_DELIVER_OK;
	}
	if (status > 128 && status <= 128 + 64) {
		*dsn_r = "4.3.0";
		snprintf(text, size, "Command died with signal %d: \"%s\"%s%s",
		    status - 128, qcmd, sep, line);
		return LOFTD_DELIVER_TEMP;
	}
	if ((k = localcmd_dsn_len(line)) > 0) {
		memcpy(localcmd_dsn, line, k);
		localcmd_dsn[k] = '\0';
		*dsn_r = localcmd_dsn;
		snprintf(text, size, "%s", line[k] == ' ' ? line + k + 1 :
		    line + k);
		return line[0] == '4' ? LOFTD_DELIVER_TEMP : LOFTD_DELIVER_PERM;
	}
	for (k = 0; k < sizeof(localcmd_sysexits) /
	    sizeof(localcmd_sysexits[0]); k++)
		if (localcmd_sysexits[k].code == status) {
			*dsn_r = localcmd_sysexits[k].dsn;
			snprintf(text, size, "%s%s%s",
			    localcmd_sysexits[k].text, sep, line);
			return (*dsn_r)[0] == '4' ? LOFTD_DELIVER_TEMP :
			    LOFTD_DELIVER_PERM;
		}
	*dsn_r = "5.3.0";
	snprintf(text, size, "Command died with status %d: \"%s\"%s%s",
	    status, qcmd, sep, line);
	return LOFTD_DELIVER_PERM;
}

/*
 * The delivery process. Everything from here to localcmd_child runs in
 * the forked process only, as the target's uid.
 */

static void
localcmd_set(struct localcmd_result *r, enum loftd_dstatus status,
    const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
localcmd_set(struct localcmd_result *r, enum loftd_dstatus status,
    const char *dsn, const char *fmt, ...)
{
	va_list ap;

	r->status = (uint32_t)status;
	strlcpy(r->dsn, dsn, sizeof(r->dsn));
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof(r->text), fmt, ap);
	va_end(ap);
}

/*
 * The message as the target gets it: for a command the From_ line
 * Postfix's local(8) puts on top, then Return-Path: and Delivered-To: as
 * every local delivery of loft writes them, then the content with CRLF
 * line ends made LF (an mbox writer adds its own From_ line). 0, or -1
 * with r set.
 */
static int
localcmd_compose(const struct localcmd_job *j, bool from_line,
    struct buf *out, struct localcmd_result *r)
{
	unsigned char chunk[65536];
	char from[MBOX_SENDER_MAX + 64];
	struct stat sb;
	bool cr = false;
	off_t off = 0;
	ssize_t n;

	if (fstat(LOCALCMD_FD_CONTENT, &sb) < 0) {
		localcmd_set(r, LOFTD_DELIVER_TEMP, "4.3.0", "reading the queue "
		    "file: %s", strerror(errno));
		return -1;
	}
	buf_init(out, (size_t)sb.st_size + sizeof(from) +
	    2 * SMTP_QUEUE_ADDR_MAX + 64);
	if (from_line && mbox_from_format(from, sizeof(from), j->sender,
	    time(NULL)) > 0)
		buf_append_str(out, from);
	buf_printf(out, "Return-Path: <%s>\nDelivered-To: %s\n", j->sender,
	    j->rcpt);
	while ((n = pread(LOCALCMD_FD_CONTENT, chunk, sizeof(chunk), off)) !=
	    0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			localcmd_set(r, LOFTD_DELIVER_TEMP, "4.3.0", "reading "
			    "the queue file: %s", strerror(errno));
			return -1;
		}
		off += n;
		for (ssize_t i = 0; i < n; i++) {
			if (cr && chunk[i] != '\n')
				buf_append_byte(out, '\r');
			cr = chunk[i] == '\r';
			if (!cr && buf_append_byte(out, chunk[i]) < 0) {
				localcmd_set(r, LOFTD_DELIVER_TEMP, "4.3.0",
				    "the queue file grew while read");
				return -1;
			}
		}
	}
	if (cr)
		buf_append_byte(out, '\r');
	return 0;
}

/* Lower-cased copy of s[0..len). */
static char *
localcmd_lower(const char *s, size_t len)
{
	char *out = xstrndup(s, len);

	for (char *p = out; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return out;
}

/* The environment Postfix's local(8) gives a command (its "EXTERNAL
 * COMMAND DELIVERY"): who it runs as, the envelope, the recipient split
 * into LOCAL (folded to lower case, extension included), EXTENSION (only
 * when there is one) and DOMAIN. */
static char **
localcmd_envp(const struct localcmd_job *j)
{
	const char *delim = conf_str("recipient_delimiter");
	const char *at = strrchr(j->rcpt, '@');
	size_t llen = at != NULL ? (size_t)(at - j->rcpt) : strlen(j->rcpt);
	char **v = xcalloc(12, sizeof(*v)), *local, *domain;
	size_t n = 0, cut;

	local = localcmd_lower(j->rcpt, llen);
	domain = localcmd_lower(at != NULL ? at + 1 : "", at != NULL ?
	    strlen(at + 1) : 0);
	v[n++] = xasprintf("HOME=%s", j->home);
	v[n++] = xasprintf("USER=%s", j->user);
	v[n++] = xasprintf("LOGNAME=%s", j->user);
	v[n++] = xstrdup("PATH=/usr/bin:/bin");
	v[n++] = xasprintf("SENDER=%s", j->sender);
	v[n++] = xasprintf("RECIPIENT=%s", j->rcpt);
	v[n++] = xasprintf("ORIGINAL_RECIPIENT=%s", j->orig_rcpt);
	v[n++] = xasprintf("LOCAL=%s", local);
	v[n++] = xasprintf("DOMAIN=%s", domain);
	cut = delim[0] != '\0' ? strcspn(local, delim) : strlen(local);
	if (cut > 0 && local[cut] != '\0')
		v[n++] = xasprintf("EXTENSION=%s", local + cut + 1);
	v[n] = NULL;
	free(local);
	free(domain);
	return v;
}

static void
localcmd_child_command(const struct localcmd_job *j,
    const unsigned char *msg, size_t len, struct localcmd_result *r)
{
	struct rules_cmd c;
	struct rules_cmd_result res;
	struct buf out;
	const char *error, *dsn;
	char **envp = localcmd_envp(j);
	/* Standard error joins standard output, which is bounded, as
	 * Postfix captures both for the diagnostic. */
	char *script = xasprintf("exec 2>&1\n%s", j->target);
	enum loftd_dstatus st;

	buf_init(&out, LOCALCMD_OUTPUT_MAX);
	memset(&c, 0, sizeof(c));
	c.shell = "/bin/sh";
	c.shell_cmd = script;
	c.envp = envp;
	c.in = msg;
	c.in_len = len;
	c.out = &out;
	c.output_fd = -1;
	c.stderr_fd = -1;
	c.timeout = (unsigned)conf_time("command_time_limit");
	c.umask = 077;
	if (rules_cmd_run(&c, &res, &error) < 0) {
		localcmd_set(r, LOFTD_DELIVER_TEMP, "4.3.0", "cannot run "
		    "command: %s", error);
		return;
	}
	/* A command that exits without reading all of its input has
	 * taken the message (Postfix ignores EPIPE alike). */
	st = localcmd_command_status(j->target, res.status, res.timed_out,
	    (const char *)out.data, out.len, &dsn, r->text, sizeof(r->text));
	r->status = (uint32_t)st;
	strlcpy(r->dsn, dsn, sizeof(r->dsn));
}

/* An open(2) or lstat(2) error on a file target: permanent when only
 * the administrator can change it, as Postfix bounces "cannot open
 * file". */
static void
localcmd_file_error(struct localcmd_result *r, const char *path,
    const char *what, int err)
{
	bool perm = err == EACCES || err == EPERM || err == EROFS ||
	    err == ENOENT || err == ENOTDIR || err == EISDIR || err == ELOOP;

	if (fsutil_is_disk_full(err))
		localcmd_set(r, LOFTD_DELIVER_TEMP, "4.3.1", "cannot append "
		    "message to file %s: %s: %s", path, what, strerror(err));
	else
		localcmd_set(r, perm ? LOFTD_DELIVER_PERM : LOFTD_DELIVER_TEMP,
		    perm ? "5.2.0" : "4.3.0", "cannot append message to file "
		    "%s: %s: %s", path, what, err == ELOOP ?
		    "is a symbolic link" : strerror(err));
}

/* Whether sb may be appended to; else r says why (permanent). */
static bool
localcmd_file_ok(const struct stat *sb, const char *path,
    struct localcmd_result *r)
{
	const char *why = S_ISLNK(sb->st_mode) ? "is a symbolic link" :
	    !S_ISREG(sb->st_mode) ? "not a regular file" :
	    (sb->st_mode & S_IWOTH) != 0 ? "writable by others" : NULL;

	if (why == NULL)
		return true;
	localcmd_set(r, LOFTD_DELIVER_PERM, "5.2.0", "cannot append message to "
	    "file %s: %s", path, why);
	return false;
}

/* The delivery locks; a dotlock where we may not create one is given up
 * (Postfix's file delivery: its dotlock "may fail"). */
static int
localcmd_lock(int fd, const char *path, struct lock_mbox **lk_r,
    const char **error_r)
{
	char **items = conf_list("mailbox_delivery_lock", NULL);
	struct lock_opts lo;
	int ret;

	if (lock_methods_parse(items, &lo.methods, error_r) < 0)
		lo.methods = LOCK_M_FCNTL | LOCK_M_DOTLOCK;
	conf_list_free(&items);
	lo.attempts = (unsigned)conf_int("deliver_lock_attempts");
	lo.delay_ms = (unsigned)(conf_time("deliver_lock_delay") * 1000);
	lo.stale_secs = (unsigned)conf_time("stale_lock_time");
	ret = lock_mbox_acquire(fd, path, &lo, lk_r, error_r);
	if (ret == -1 && (errno == EACCES || errno == EPERM ||
	    errno == EROFS) && (lo.methods & LOCK_M_DOTLOCK) != 0 &&
	    lo.methods != LOCK_M_DOTLOCK) {
		lo.methods &= ~(unsigned)LOCK_M_DOTLOCK;
		ret = lock_mbox_acquire(fd, path, &lo, lk_r, error_r);
	}
	return ret;
}

static void
localcmd_child_mbox(const char *path, const char *sender,
    const unsigned char *msg, size_t len, struct localcmd_result *r)
{
	struct lock_mbox *lk = NULL;
	uint64_t a, b, c;
	struct stat sb;
	const char *error;
	bool created;
	int fd, ret;

	if (strcmp(path, "/dev/null") == 0) {
		localcmd_set(r, LOFTD_DELIVER_OK, "2.0.0", "delivered to file: "
		    "%s", path);
		return;
	}
	created = lstat(path, &sb) < 0;
	if (created && errno != ENOENT) {
		localcmd_file_error(r, path, "cannot look at file", errno);
		return;
	}
	if (!created && !localcmd_file_ok(&sb, path, r))
		return;
	fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK |
	    O_NOCTTY | O_CLOEXEC, 0600);
	if (fd < 0) {
		localcmd_file_error(r, path, "cannot open file", errno);
		return;
	}
	/* Again on what was opened: the name may have changed since. */
	if (fstat(fd, &sb) < 0 || !localcmd_file_ok(&sb, path, r) ||
	    fcntl(fd, F_SETFL, O_APPEND) < 0) {
		if (r->dsn[0] == '\0')
			localcmd_file_error(r, path, "fstat", errno);
		close(fd);
		return;
	}
	if ((ret = localcmd_lock(fd, path, &lk, &error)) < 0) {
		localcmd_set(r, LOFTD_DELIVER_TEMP, ret == LOCK_TIMEOUT ?
		    "4.2.0" : "4.3.0", "cannot append message to file %s: %s",
		    path, error);
		close(fd);
		return;
	}
	ret = mbox_append(fd, sender, time(NULL), msg, len, true, &a, &b, &c,
	    &error);
	if (ret < 0)
		localcmd_set(r, LOFTD_DELIVER_TEMP, fsutil_is_disk_full(errno) ?
		    "4.3.1" : "4.3.0", "cannot append message to file %s: %s",
		    path, error);
	lock_mbox_release(&lk);
	close(fd);
	if (ret == 0 && created && fsutil_fsync_parent(path) < 0)
		localcmd_file_error(r, path, "fsync of its directory", errno);
	else if (ret == 0)
		localcmd_set(r, LOFTD_DELIVER_OK, "2.0.0", "delivered to file: "
		    "%s", path);
}

/* "/dir/": a Maildir (lib/maildir), written as every Maildir writer
 * does: tmp/, fsync, link into new/, fsync new/. */
static void
localcmd_child_maildir(const char *target, const unsigned char *msg,
    size_t len, struct localcmd_result *r)
{
	char dir[4096], from[4200], to[4200], nd[4200];
	const char *error;
	char *name = NULL;
	struct stat sb;

	strlcpy(dir, target, sizeof(dir));
	while (strlen(dir) > 1 && dir[strlen(dir) - 1] == '/')
		dir[strlen(dir) - 1] = '\0';
	if (lstat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
		localcmd_set(r, LOFTD_DELIVER_PERM, "5.2.0", "cannot deliver to "
		    "maildir %s: %s", target, S_ISLNK(sb.st_mode) ?
		    "is a symbolic link" : "not a directory");
		return;
	}
	if (maildir_create(dir, false, &error) < 0 ||
	    maildir_tmp_write(dir, msg, len, true, &name, &error) < 0) {
		localcmd_set(r, LOFTD_DELIVER_TEMP, fsutil_is_disk_full(errno) ?
		    "4.3.1" : "4.3.0", "cannot deliver to maildir %s: %s",
		    target, error);
		return;
	}
	snprintf(from, sizeof(from), "%s/tmp/%s", dir, name);
	snprintf(to, sizeof(to), "%s/new/%s", dir, name);
	snprintf(nd, sizeof(nd), "%s/new", dir);
	free(name);
	if (link(from, to) < 0 || fsutil_fsync_dir(nd) < 0) {
		localcmd_set(r, LOFTD_DELIVER_TEMP, "4.3.0", "cannot deliver to "
		    "maildir %s: %s", target, strerror(errno));
		unlink(from);
		return;
	}
	unlink(from);
	localcmd_set(r, LOFTD_DELIVER_OK, "2.0.0", "delivered to maildir: %s",
	    target);
}

/* Descriptors: the content on LOCALCMD_FD_CONTENT, the result pipe on
 * LOCALCMD_FD_RESULT, /dev/null on 0, 1 and 2, nothing else. */
static int
localcmd_child_fds(int content, int result)
{
	int c = fcntl(content, F_DUPFD, 10), w = fcntl(result, F_DUPFD, 10);
	int null_fd;

	if (c < 0 || w < 0 || dup2(c, LOCALCMD_FD_CONTENT) < 0 ||
	    dup2(w, LOCALCMD_FD_RESULT) < 0 ||
	    close_range(LOCALCMD_FD_RESULT + 1, ~0U, 0) < 0)
		return -1;
	if ((null_fd = open("/dev/null", O_RDWR)) < 0 ||
	    dup2(null_fd, 0) < 0 || dup2(null_fd, 1) < 0 ||
	    dup2(null_fd, 2) < 0)
		return -1;
	if (null_fd > 2)
		close(null_fd);
	return 0;
}

/* Become the target's uid for good. Not root (development): stay. */
static int
localcmd_child_become(const struct localcmd_job *j, const char **error_r)
{
	struct user u;

	memset(&u, 0, sizeof(u));
	u.uid = j->uid;
	u.gid = j->gid;
	if (geteuid() == 0 && priv_become(&u, true, error_r) < 0)
		return -1;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		*error_r = "prctl failed";
		return -1;
	}
	umask(077);
	if (j->home[0] == '\0' || chdir(j->home) < 0)
		(void)chdir("/");
	return 0;
}

static void __attribute__((noreturn))
localcmd_child(const struct localcmd_job *j, int result_fd)
{
	struct localcmd_result r;
	const char *error;
	sigset_t none;
	struct buf msg;
	size_t len;

	memset(&r, 0, sizeof(r));
	/* A session of its own, for the master's safety timer to kill
	 * (never fails: a child just forked leads no group). */
	(void)setsid();
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGCHLD, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	if (localcmd_child_fds(j->fd, result_fd) < 0)
		_exit(EX_OSERR);
	if (localcmd_child_become(j, &error) < 0)
		localcmd_set(&r, LOFTD_DELIVER_TEMP, "4.3.0", "cannot become "
		    "uid %lu: %s", (unsigned long)j->uid, error);
	else if (localcmd_compose(j, j->kind == SMTP_ALIAS_COMMAND, &msg,
	    &r) == 0) {
		len = strlen(j->target);
		if (j->kind == SMTP_ALIAS_COMMAND)
			localcmd_child_command(j, msg.data, msg.len, &r);
		else if (len > 1 && j->target[len - 1] == '/')
			localcmd_child_maildir(j->target, msg.data, msg.len,
			    &r);
		else
			localcmd_child_mbox(j->target, j->sender, msg.data,
			    msg.len, &r);
	}
	(void)write(LOCALCMD_FD_RESULT, &r, sizeof(r));
	_exit(0);
}

/*
 * The master's side.
 */

static void
localcmd_job_free(struct localcmd_job *j)
{
	struct localcmd_job **pp;

	for (pp = &localcmd.jobs; *pp != NULL && *pp != j; pp = &(*pp)->next)
		;
	if (*pp == j)
		*pp = j->next;
	io_remove(&j->io);
	timeout_remove(&j->to);
	if (j->res_fd >= 0)
		close(j->res_fd);
	if (j->fd >= 0)
		close(j->fd);
	free(j->target);
	free(j->rcpt);
	free(j->orig_rcpt);
	free(j->sender);
	free(j->user);
	free(j->home);
	free(j);
}

static void
localcmd_answer(struct localcmd_job *j, enum loftd_dstatus status,
    const char *dsn, const char *text)
{
	if (j->answered)
		return;
	j->answered = true;
	if (j->asker != NULL)
		localcmd.answer(j->asker, j->req, status, dsn, text);
}

/* Gone once answered, its pipe read and its process reaped. */
static void
localcmd_job_check(struct localcmd_job *j)
{
	if (j->answered && j->res_fd < 0 && j->pid == 0)
		localcmd_job_free(j);
}

static void localcmd_start_waiting(void);

/* The pipe's end: the record, or a process that died without one. */
static void
localcmd_result_done(struct localcmd_job *j)
{
	struct localcmd_result *r = &j->res;

	io_remove(&j->io);
	close(j->res_fd);
	j->res_fd = -1;
	timeout_remove(&j->to);
	if (j->res_bad || j->res_len != sizeof(*r) || r->status > LOFTD_DELIVER_PERM ||
	    memchr(r->dsn, '\0', sizeof(r->dsn)) == NULL ||
	    memchr(r->text, '\0', sizeof(r->text)) == NULL ||
	    (r->dsn[0] != '2' && r->dsn[0] != '4' && r->dsn[0] != '5'))
		localcmd_answer(j, LOFTD_DELIVER_TEMP, "4.3.0", "local "
		    "delivery process ended without a result");
	else
		localcmd_answer(j, (enum loftd_dstatus)r->status, r->dsn,
		    r->text);
	localcmd_job_check(j);
}

static void
localcmd_readable(void *ctx)
{
	struct localcmd_job *j = ctx;
	unsigned char tmp[sizeof(j->res) + 1];
	ssize_t n;

	for (;;) {
		n = read(j->res_fd, tmp, sizeof(tmp));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0)
			break;
		/* More than one record: a broken process. */
		if (j->res_len + (size_t)n > sizeof(j->res))
			j->res_bad = true;
		else {
			memcpy((unsigned char *)&j->res + j->res_len, tmp,
			    (size_t)n);
			j->res_len += (size_t)n;
		}
	}
	localcmd_result_done(j);
}

/* The session of process pid (a name in /proc) and whether it is alive
 * (not a zombie): 0, or -1 when it is gone or unreadable. */
static int
localcmd_proc_session(const char *pid, pid_t *sid_r, bool *alive_r)
{
	char path[64], line[256], *p, state;
	int fd, ppid, pgrp, sid;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%s/stat", pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	n = read(fd, line, sizeof(line) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	line[n] = '\0';
	/* "PID (NAME) STATE PPID PGRP SESSION ...": NAME (15 bytes at
	 * most) may hold anything, numbers alone follow its last ')'. */
	if ((p = strrchr(line, ')')) == NULL || sscanf(p + 1, " %c %d %d %d",
	    &state, &ppid, &pgrp, &sid) != 4)
		return -1;
	*sid_r = (pid_t)sid;
	*alive_r = state != 'Z' && state != 'X';
	return 0;
}

/*
 * SIGKILL to every live process of session sid, found in /proc; again
 * while a pass finds one, for what forked between reading its parent
 * and killing it (LOCALCMD_KILL_ROUNDS passes at most). The caller makes
 * sure that sid is a session that still exists (its leader is not
 * reaped), so that the number cannot be another session's. Returns how
 * many the first pass killed.
 */
static unsigned
localcmd_kill_session(pid_t sid)
{
	unsigned first = 0, found = 1;
	struct dirent *e;
	bool alive;
	pid_t s;
	DIR *d;

	for (int round = 0; round < LOCALCMD_KILL_ROUNDS && found > 0;
	    round++) {
		if ((d = opendir("/proc")) == NULL) {
			log_error("opendir /proc: %s", strerror(errno));
			break;
		}
		found = 0;
		while ((e = readdir(d)) != NULL) {
			if (e->d_name[0] < '1' || e->d_name[0] > '9' ||
			    localcmd_proc_session(e->d_name, &s, &alive) < 0 ||
			    s != sid || !alive)
				continue;
			if (kill((pid_t)strtol(e->d_name, NULL, 10),
			    SIGKILL) == 0)
				found++;
		}
		closedir(d);
		if (round == 0)
			first = found;
	}
	return first;
}

/* command_time_limit and the grace are over: the process is stuck (a
 * lock, a file system, stopped): killed with all it started, and the
 * delivery deferred. */
static void
localcmd_overdue(void *ctx)
{
	struct localcmd_job *j = ctx;

	timeout_remove(&j->to);
	/* Reaped already: the session id may be free for reuse; its pipe
	 * is about to report the end anyway. */
	if (j->pid != 0) {
		kill(j->pid, SIGKILL);
		(void)localcmd_kill_session(j->sid);
	}
	log_warning("local delivery process %ld for %s did not end in time: "
	    "killed, with every process of its session", (long)j->sid,
	    j->target);
	localcmd_answer(j, LOFTD_DELIVER_TEMP, "4.3.0", "local delivery "
	    "process killed: it did not end in time");
}

/* Milliseconds before the safety timer: the limit and the grace,
 * bounded by what timeout_add takes. */
static unsigned
localcmd_overdue_ms(unsigned limit)
{
	unsigned long long ms = ((unsigned long long)limit + localcmd.grace) *
	    1000u;

	return ms > UINT_MAX ? UINT_MAX : (unsigned)ms;
}

static void
localcmd_start(struct localcmd_job *j)
{
	unsigned limit = (unsigned)conf_time("command_time_limit");
	int p[2];
	pid_t pid;

	j->started = true;
	p[0] = p[1] = -1;
	if (pipe2(p, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
		char text[128];

		snprintf(text, sizeof(text), "cannot start a local delivery "
		    "process: %s", strerror(errno));
		if (p[0] >= 0) {
			close(p[0]);
			close(p[1]);
		}
		localcmd_answer(j, LOFTD_DELIVER_TEMP, "4.3.0", text);
		close(j->fd);
		j->fd = -1;
		localcmd_job_check(j);
		return;
	}
	if (pid == 0)
		localcmd_child(j, p[1]);
	close(p[1]);
	close(j->fd);
	j->fd = -1;
	j->pid = j->sid = pid;
	j->res_fd = p[0];
	(void)fcntl(p[0], F_SETFL, O_NONBLOCK);
	j->io = io_add(localcmd.loop, p[0], IO_READ, localcmd_readable, j);
	j->to = timeout_add(localcmd.loop, localcmd_overdue_ms(limit), false,
	    localcmd_overdue, j);
	localcmd.running++;
}

static void
localcmd_start_waiting(void)
{
	struct localcmd_job *j, *next;

	if (localcmd.stopping)
		return;
	for (j = localcmd.jobs; j != NULL &&
	    localcmd.running < LOCALCMD_PROCS_MAX; j = next) {
		next = j->next;
		if (!j->started)
			localcmd_start(j);
	}
}

bool
localcmd_reaped(pid_t pid, int status)
{
	struct localcmd_job *j;

	for (j = localcmd.jobs; j != NULL; j = j->next)
		if (j->pid == pid)
			break;
	if (j == NULL)
		return false;
	if (WIFSIGNALED(status))
		log_warning("local delivery process %ld killed by signal %d",
		    (long)pid, WTERMSIG(status));
	j->pid = 0;
	localcmd.running--;
	localcmd_job_check(j);
	localcmd_start_waiting();
	return true;
}

/*
 * Checking a request.
 */

/* Text for a header or the environment: bounded, no control byte. */
static bool
localcmd_str_ok(const char *s, size_t max)
{
	size_t n;

	for (n = 0; s[n] != '\0'; n++)
		if ((unsigned char)s[n] < 0x20 || s[n] == 0x7f)
			return false;
	return n <= max;
}

/* The uid, gid, name and home a target of uid source_uid runs as:
 * source_uid, or default_privs for root. Refused: root, mail_owner (it
 * could rewrite the queue), an unknown user. 0, or -1 with text. */
static int
localcmd_account(struct localcmd_job *j, uid_t source_uid, char *text,
    size_t size)
{
	const char *privs = conf_str("default_privs");
	struct passwd *pw, *owner;
	uid_t owner_uid;

	pw = source_uid != 0 ? getpwuid(source_uid) : getpwnam(privs);
	if (pw == NULL) {
		if (source_uid != 0)
			snprintf(text, size, "uid %lu of the alias source has "
			    "no passwd entry", (unsigned long)source_uid);
		else
			snprintf(text, size, "default_privs %s: no such user",
			    privs);
		return -1;
	}
	j->uid = pw->pw_uid;
	j->gid = pw->pw_gid;
	j->user = xstrdup(pw->pw_name);
	j->home = xstrdup(pw->pw_dir != NULL ? pw->pw_dir : "");
	if (geteuid() != 0)
		return 0;	/* development: no uid switch at all */
	owner = getpwnam(conf_str("mail_owner"));
	owner_uid = owner != NULL ? owner->pw_uid : 0;
	if (j->uid == 0 || (owner != NULL && j->uid == owner_uid)) {
		snprintf(text, size, "refusing to deliver to a command or file "
		    "as %s (%s)", j->uid == 0 ? "root" : "mail_owner",
		    source_uid == 0 ? "default_privs" : "owner of the alias "
		    "source");
		return -1;
	}
	return 0;
}

/* Expand alias again and find the target of kind: 1 with its source's
 * uid, 0 when that expansion does not hold it, -1 (text) on an error. */
static int
localcmd_lookup(const char *alias, enum smtp_alias_kind kind,
    const char *target, uid_t *uid_r, char *text, size_t size)
{
	struct smtp_alias_map *map;
	struct smtp_alias_target *t;
	const char *error;
	size_t n, k;
	int ret;

	if (smtp_alias_open_conf(&map, &error) < 0) {
		snprintf(text, size, "alias_maps: %s", error);
		return -1;
	}
	ret = smtp_alias_expand(map, alias, conf_str("recipient_delimiter"),
	    conf_str("myhostname"), &t, &n, &error);
	if (ret < 0)
		snprintf(text, size, "alias_maps: %s", error);
	if (ret == 1) {
		ret = 0;
		for (k = 0; k < n && ret == 0; k++)
			if (t[k].kind == kind && strcmp(t[k].value,
			    target) == 0) {
				*uid_r = t[k].source_uid;
				ret = 1;
			}
		smtp_alias_targets_free(t, n);
	}
	smtp_alias_close(&map);
	return ret;
}

/* Check a parsed request: 0 (j is ready to run), or -1 with the answer
 * to give (*dsn_r, text). */
static int
localcmd_check(struct localcmd_job *j, const char *qid, const char *alias,
    uint32_t kind, const char **dsn_r, char *text, size_t size)
{
	uid_t uid = 0;
	int ret;

	if (!smtp_queue_id_valid(qid) || (kind != SMTP_ALIAS_COMMAND &&
	    kind != SMTP_ALIAS_FILE) || j->target[0] == '\0' ||
	    strlen(j->target) > SMTP_ALIAS_LINE_MAX ||
	    !localcmd_str_ok(alias, SMTP_ALIAS_NAME_MAX) ||
	    !localcmd_str_ok(j->rcpt, SMTP_QUEUE_ADDR_MAX) ||
	    !localcmd_str_ok(j->orig_rcpt, SMTP_QUEUE_ADDR_MAX) ||
	    !localcmd_str_ok(j->sender, SMTP_QUEUE_ADDR_MAX)) {
		*dsn_r = "5.3.0";
		snprintf(text, size, "bad delivery request");
		return -1;
	}
	j->kind = (enum smtp_alias_kind)kind;
	if ((ret = localcmd_lookup(alias, j->kind, j->target, &uid, text,
	    size)) <= 0) {
		*dsn_r = "4.3.0";
		if (ret == 0)
			snprintf(text, size, "%s %s is no longer a target of "
			    "alias %s", smtp_alias_kind_name(j->kind),
			    j->target, alias);
		return -1;
	}
	if (localcmd_account(j, uid, text, size) < 0) {
		*dsn_r = "4.3.5";
		return -1;
	}
	return 0;
}

/* A request that waits for a process: said once, as it happens. */
static void
localcmd_log_wait(const char *qid, const struct localcmd_job *j)
{
	char target[512];

	log_info("%s: %s %s waits (%zu local delivery processes running, "
	    "the most at once)", qid, smtp_alias_kind_name(j->kind),
	    log_escape(j->target, target, sizeof(target)), localcmd.running);
}

int
localcmd_request(void *asker, struct ipc_msg *m, const char **error_r)
{
	const char *qid, *alias, *target, *rcpt, *orig, *sender, *dsn;
	struct localcmd_job *j, **pp;
	char text[SMTP_QUEUE_DIAG_MAX];
	uint32_t req, kind;
	int fd = ipc_msg_take_fd(m);

	ipc_get_u32(m, &req);
	ipc_get_str(m, &qid);
	ipc_get_str(m, &alias);
	ipc_get_u32(m, &kind);
	ipc_get_str(m, &target);
	ipc_get_str(m, &rcpt);
	ipc_get_str(m, &orig);
	ipc_get_str(m, &sender);
	if (ipc_get_end(m, error_r) < 0 || fd < 0) {
		if (fd >= 0)
			close(fd);
		else
			*error_r = "no descriptor";
		return -1;
	}
	if (localcmd.stopping) {
		close(fd);
		localcmd.answer(asker, req, LOFTD_DELIVER_TEMP, "4.3.0",
		    LOCALCMD_STOPPING_TEXT);
		return 0;
	}
	j = xcalloc(1, sizeof(*j));
	j->asker = asker;
	j->req = req;
	j->fd = fd;
	j->res_fd = -1;
	j->target = xstrdup(target);
	j->rcpt = xstrdup(rcpt);
	j->orig_rcpt = xstrdup(orig);
	j->sender = xstrdup(sender);
	if (localcmd_check(j, qid, alias, kind, &dsn, text,
	    sizeof(text)) < 0) {
		localcmd.answer(asker, req, dsn[0] == '5' ?
		    LOFTD_DELIVER_PERM : LOFTD_DELIVER_TEMP, dsn, text);
		localcmd_job_free(j);
		return 0;
	}
	for (pp = &localcmd.jobs; *pp != NULL; pp = &(*pp)->next)
		;
	*pp = j;
	localcmd_start_waiting();
	if (!j->started)
		localcmd_log_wait(qid, j);
	return 0;
}

void
localcmd_asker_gone(void *asker)
{
	struct localcmd_job *j, *next;

	for (j = localcmd.jobs; j != NULL; j = next) {
		next = j->next;
		if (j->asker != asker)
			continue;
		j->asker = NULL;
		/* Not started: its successor asks again. */
		if (!j->started)
			localcmd_job_free(j);
	}
}

/* LOCALCMD_GRACE_ENV's value: decimal seconds from 0 to LOCALCMD_GRACE;
 * -1 for anything else. */
static long
localcmd_grace_parse(const char *s)
{
	long v = 0;

	if (s[0] == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
		if (v > LOCALCMD_GRACE)
			return -1;
	}
	return v;
}

void
localcmd_init(struct ioloop *loop, localcmd_answer_fn *answer)
{
	const char *env = getenv(LOCALCMD_GRACE_ENV);
	long grace = env != NULL ? localcmd_grace_parse(env) : -1;

	localcmd.loop = loop;
	localcmd.answer = answer;
	localcmd.stopping = false;
	localcmd.grace = grace >= 0 ? (unsigned)grace : LOCALCMD_GRACE;
	if (env != NULL && grace < 0)
		log_warning("%s: not a number of seconds from 0 to %d: "
		    "ignored", LOCALCMD_GRACE_ENV, LOCALCMD_GRACE);
	else if (env != NULL)
		log_info("%s: local delivery processes get %ld seconds past "
		    "command_time_limit", LOCALCMD_GRACE_ENV, grace);
}

void
localcmd_stop(void)
{
	struct localcmd_job *j, **pp;

	localcmd.stopping = true;
	for (;;) {
		for (pp = &localcmd.jobs; *pp != NULL && (*pp)->started;
		    pp = &(*pp)->next)
			;
		if ((j = *pp) == NULL)
			break;
		/* Out of the list before the answer, whatever it leads to. */
		*pp = j->next;
		localcmd_answer(j, LOFTD_DELIVER_TEMP, "4.3.0",
		    LOCALCMD_STOPPING_TEXT);
		localcmd_job_free(j);
	}
}

void
localcmd_deinit(void)
{
	if (localcmd.running > 0)
		log_warning("stopping with %zu local delivery processes "
		    "running: their results are lost, those deliveries are "
		    "made again", localcmd.running);
	while (localcmd.jobs != NULL)
		localcmd_job_free(localcmd.jobs);
	localcmd.running = 0;
	localcmd.stopping = false;
}
