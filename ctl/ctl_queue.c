/*
 * ctl_queue.c: loftctl mailq (also installed as mailq) and loftctl queue,
 * the administrator's view of the SMTP queue: Postfix's mailq, postsuper
 * -d / -h / -H, postqueue -f and postcat -hq.
 *
 *   loftctl mailq
 *	list the queue as Postfix's mailq does
 *   loftctl queue delete|hold|release ID ... | ALL
 *	take messages out of the queue, put them on hold, release them
 *   loftctl queue flush
 *	make every deferred recipient due now (see ctl_queue_flush)
 *   loftctl queue show ID
 *	print a message's envelope and the header of its content
 *
 * Privileges: the queue is mail_owner's and closed to others (0700).
 * Started as root, this becomes mail_owner for good before it touches the
 * queue, as loftd's smtpd processes do; anyone else must own the queue
 * directory, or is told so. Nothing is run and no file outside the queue
 * is opened (smtp_queue does every access, through its descriptors).
 *
 * Trusts: the configuration. Does not trust: IDs from the command line
 * (checked with smtp_queue_id_valid before anything is done), and what
 * the queue holds: addresses, remote replies and headers came from the
 * network, so control bytes are escaped before they reach the terminal.
 */
#include "config.h"
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>
#include "buf.h"
#include "conf.h"
#include "ctl.h"
#include "log.h"
#include "xmalloc.h"
#include "smtp/smtp_queue.h"

/* Postfix's headings and layout for long queue IDs, which fit our
 * 17-character IDs: ID and status (18), size (8), arrival (19), then the
 * sender; recipients start in the sender's column. */
#define CTL_QUEUE_HEADINGS \
	"----Queue ID------ --Size-- ---Arrival Time---- --Sender/Recipient------\n"
#define CTL_QUEUE_RCPT_INDENT	48	/* 18 + 1 + 8 + 1 + 19 + 1 */
#define CTL_QUEUE_REASON_END	78	/* reasons end in this column */
#define CTL_QUEUE_READ		65536	/* content read at a time (show) */

/* A flock(2) lock some process holds, from /proc/locks. */
struct ctl_queue_lock {
	unsigned int major, minor;
	unsigned long ino;
};

struct ctl_queue_locks {
	struct ctl_queue_lock *v;	/* owned */
	size_t count;
};

/* The per-ID commands: what smtp_queue does, and what to print. */
enum ctl_queue_op {
	CTL_QUEUE_DELETE,
	CTL_QUEUE_HOLD,
	CTL_QUEUE_RELEASE
};
static const char *const ctl_queue_op_names[] = {
	"delete", "hold", "release"
};
static const char *const ctl_queue_op_done[] = {
	"deleted", "held", "released"
};

/*
 * Opening the queue with the right identity.
 */

/* ctl_queue_become_owner: root becomes mail_owner (uid, gid, groups:
 * real, effective and saved), for good, and checks root is gone. */
static int
ctl_queue_become_owner(const char *cmd)
{
	const char *name = conf_str("mail_owner");
	struct passwd *pw = getpwnam(name);
	gid_t gid;
	uid_t uid;

	if (pw == NULL || pw->pw_uid == 0) {
		fprintf(stderr, "loftctl: %s: mail_owner %s: %s\n", cmd, name,
		    pw == NULL ? "no such user" : "must not be root");
		return -1;
	}
	uid = pw->pw_uid;
	gid = pw->pw_gid;
	if (setgroups(1, &gid) < 0 || setresgid(gid, gid, gid) < 0 ||
	    setresuid(uid, uid, uid) < 0 || setuid(0) == 0 ||
	    geteuid() != uid) {
		fprintf(stderr, "loftctl: %s: cannot become mail_owner %s: "
		    "%s\n", cmd, name, strerror(errno));
		return -1;
	}
	return 0;
}

/* ctl_queue_owner_name: the name of uid, or its number. */
static const char *
ctl_queue_owner_name(uid_t uid, char *buf, size_t size)
{
	struct passwd *pw = getpwuid(uid);

	if (pw != NULL)
		return pw->pw_name;
	snprintf(buf, size, "uid %lu", (unsigned long)uid);
	return buf;
}

/* ctl_queue_check_owner: the queue directory exists and is ours, said
 * plainly otherwise (smtp_queue_open would create a missing one, which
 * listing the queue must not do). */
static int
ctl_queue_check_owner(const char *cmd, const char *dir, bool was_root)
{
	char num[32];
	const char *owner;
	struct stat st;

	if (stat(dir, &st) < 0) {
		fprintf(stderr, "loftctl: %s: queue_directory %s: %s%s\n", cmd,
		    dir, strerror(errno), errno == EACCES ? " (run loftctl "
		    "as root or as mail_owner)" : errno == ENOENT ? " (loftd "
		    "makes it when an SMTP listener is configured)" : "");
		return -1;
	}
	if (st.st_uid == geteuid())
		return 0;
	owner = ctl_queue_owner_name(st.st_uid, num, sizeof(num));
	if (was_root)
		fprintf(stderr, "loftctl: %s: the queue %s belongs to %s, not "
		    "to mail_owner %s\n", cmd, dir, owner,
		    conf_str("mail_owner"));
	else
		fprintf(stderr, "loftctl: %s: permission denied: the queue %s "
		    "is open only to %s (mode 0700): run loftctl as root or "
		    "as %s\n", cmd, dir, owner, owner);
	return -1;
}

/* ctl_queue_open: the configured queue, opened as its owner: 0 and *q_r,
 * or -1 (said why). */
static int
ctl_queue_open(const char *cmd, struct smtp_queue **q_r)
{
	const char *dir = conf_str("queue_directory"), *err;
	bool root = geteuid() == 0;

	if (dir[0] != '/') {
		fprintf(stderr, "loftctl: %s: queue_directory must be an "
		    "absolute path\n", cmd);
		return -1;
	}
	if (root && ctl_queue_become_owner(cmd) < 0)
		return -1;
	if (ctl_queue_check_owner(cmd, dir, root) < 0)
		return -1;
	if (smtp_queue_open(dir, q_r, &err) < 0) {
		fprintf(stderr, "loftctl: %s: %s\n", cmd, err);
		return -1;
	}
	return 0;
}

/*
 * Printing what came from the network.
 */

/* ctl_queue_put_bytes: s[0..len) with control bytes (TAB too) as \xHH
 * and '\' as "\\", the envelope's own escaping. */
static void
ctl_queue_put_bytes(const unsigned char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\\')
			fputs("\\\\", stdout);
		else if (s[i] < 0x20 || s[i] == 0x7f)
			printf("\\x%02X", s[i]);
		else
			putchar(s[i]);
	}
}

static void
ctl_queue_put_str(const char *s)
{
	ctl_queue_put_bytes((const unsigned char *)s, strlen(s));
}

/* ctl_queue_time: t as asctime(3) has it, without the year: "Sun Nov 29
 * 19:30:01" (19 characters), in local time. */
static void
ctl_queue_time(time_t t, char out[32])
{
	struct tm tm;

	if (localtime_r(&t, &tm) == NULL ||
	    strftime(out, 32, "%a %b %e %H:%M:%S", &tm) == 0)
		snprintf(out, 32, "%lld", (long long)t);
}

/*
 * Which messages are locked (being delivered or changed): '*' in mailq.
 * smtp_queue locks with flock(2) on data/ID; mailq must take no lock (it
 * would make the queue manager skip the message), so it looks the locks
 * up in /proc/locks instead. Where that file is missing or names other
 * inodes than stat(2) does (some stacked file systems), no '*' is shown.
 */

/* ctl_queue_locks_read: the flock(2) locks held on device dev. */
static void
ctl_queue_locks_read(dev_t dev, struct ctl_queue_locks *locks)
{
	struct ctl_queue_lock l;
	size_t alloc = 0;
	char line[256], type[16];
	FILE *f = fopen("/proc/locks", "re");

	locks->v = NULL;
	locks->count = 0;
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		/* "1: FLOCK  ADVISORY  WRITE 2640 fe:00:10969305 0 EOF";
		 * waiters read "1: -> FLOCK ..." and hold nothing yet. */
		if (sscanf(line, "%*u: %15s %*s %*s %*d %x:%x:%lu", type,
		    &l.major, &l.minor, &l.ino) != 4 ||
		    strcmp(type, "FLOCK") != 0 || l.major != major(dev) ||
		    l.minor != minor(dev))
			continue;
		if (locks->count == alloc) {
			alloc = alloc == 0 ? 16 : alloc * 2;
			locks->v = xreallocarray(locks->v, alloc,
			    sizeof(*locks->v));
		}
		locks->v[locks->count++] = l;
	}
	fclose(f);
}

/* ctl_queue_locked: whether some process holds message id's lock. The
 * content is opened (never locked) only to learn its inode, and only when
 * some lock is held on the queue's device at all. */
static bool
ctl_queue_locked(struct smtp_queue *q, const char *id,
    const struct ctl_queue_locks *locks)
{
	struct stat st;
	uint64_t size;
	const char *err;
	bool held = false;
	int fd;

	if (locks->count == 0 ||
	    smtp_queue_open_content(q, id, &fd, &size, &err) != 1)
		return false;
	if (fstat(fd, &st) == 0) {
		for (size_t i = 0; i < locks->count && !held; i++)
			held = locks->v[i].ino == (unsigned long)st.st_ino;
	}
	close(fd);
	return held;
}

/*
 * mailq
 */

/* ctl_mailq_why: recipient r's reason (the last reply of a deferred
 * one; none for others) and its length. */
static size_t
ctl_mailq_why(const struct smtp_queue_rcpt *r, const unsigned char **why_r)
{
	if (r == NULL || r->state != SMTP_QUEUE_DEFERRED || r->diag == NULL) {
		*why_r = (const unsigned char *)"";
		return 0;
	}
	*why_r = r->diag;
	return r->diag_len;
}

/* ctl_mailq_reason: Postfix's "(reason)" line, ending in column 78,
 * printed when r's reason differs from that of the recipient before it
 * (prev, NULL for the first): "(reason unavailable)" when r has none. */
static void
ctl_mailq_reason(const struct smtp_queue_rcpt *r,
    const struct smtp_queue_rcpt *prev)
{
	static const char none[] = "reason unavailable";
	const unsigned char *why, *was;
	size_t len = ctl_mailq_why(r, &why), was_len = ctl_mailq_why(prev,
	    &was), width = 0;

	if (len == was_len && memcmp(why, was, len) == 0)
		return;
	if (len == 0) {
		why = (const unsigned char *)none;
		len = sizeof(none) - 1;
	}
	for (size_t i = 0; i < len; i++)
		width += why[i] == '\\' ? 2 : why[i] < 0x20 ||
		    why[i] == 0x7f ? 4 : 1;
	width = width + 2 < CTL_QUEUE_REASON_END ?
	    CTL_QUEUE_REASON_END - 2 - width : 0;
	printf("%*s(", (int)width, "");
	ctl_queue_put_bytes(why, len);
	fputs(")\n", stdout);
}

/* ctl_mailq_message: one message: its line, then each recipient still to
 * be delivered, each preceded by a changed reason. */
static void
ctl_mailq_message(const struct smtp_queue_env *env, bool locked)
{
	const struct smtp_queue_rcpt *r, *prev = NULL;
	char when[32];

	ctl_queue_time(env->arrival, when);
	printf("%s%c %8llu %-19s ", env->id, env->hold ? '!' : locked ?
	    '*' : ' ', (unsigned long long)env->size, when);
	ctl_queue_put_str(env->sender[0] == '\0' ? "MAILER-DAEMON" :
	    env->sender);
	putchar('\n');
	for (unsigned int i = 0; i < env->rcpt_count; i++) {
		r = &env->rcpts[i];
		if (r->state != SMTP_QUEUE_PENDING &&
		    r->state != SMTP_QUEUE_DEFERRED)
			continue;
		ctl_mailq_reason(r, prev);
		prev = r;
		printf("%*s", CTL_QUEUE_RCPT_INDENT, "");
		ctl_queue_put_str(r->addr);
		putchar('\n');
	}
}

/* ctl_mailq_list: every message, then the summary. 0, or 1 if one could
 * not be read (the others are still listed). */
static int
ctl_mailq_list(struct smtp_queue *q, struct smtp_queue_iter *iter,
    const struct ctl_queue_locks *locks)
{
	struct smtp_queue_env *env;
	unsigned long long bytes = 0, count = 0;
	const char *err;
	int r, status = 0;

	while ((r = smtp_queue_iter_next(iter, &env, &err)) != 0) {
		if (r < 0) {
			fprintf(stderr, "loftctl: mailq: %s\n", err);
			status = 1;
			continue;
		}
		fputs(count == 0 ? CTL_QUEUE_HEADINGS : "\n", stdout);
		ctl_mailq_message(env, ctl_queue_locked(q, env->id, locks));
		bytes += env->size;
		count++;
		smtp_queue_env_free(&env);
	}
	if (count == 0)
		puts("Mail queue is empty");
	else
		printf("\n-- %llu Kbytes in %llu Request%s.\n", bytes / 1024,
		    count, count == 1 ? "" : "s");
	return status;
}

int
ctl_mailq_main(int argc, char **argv)
{
	struct ctl_queue_locks locks;
	struct smtp_queue_iter *iter;
	struct smtp_queue *q;
	struct stat st;
	const char *err;
	int status;

	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: loftctl mailq\n");
		return EX_USAGE;
	}
	if (ctl_queue_open("mailq", &q) < 0)
		return 1;
	if (smtp_queue_iter_new(q, &iter, &err) < 0) {
		fprintf(stderr, "loftctl: mailq: %s\n", err);
		smtp_queue_close(&q);
		return 1;
	}
	locks.count = 0;
	locks.v = NULL;
	if (stat(conf_str("queue_directory"), &st) == 0)
		ctl_queue_locks_read(st.st_dev, &locks);
	status = ctl_mailq_list(q, iter, &locks);
	free(locks.v);
	smtp_queue_iter_free(&iter);
	smtp_queue_close(&q);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "loftctl: mailq: write error\n");
		status = 1;
	}
	return status;
}

/*
 * queue delete | hold | release
 */

/* ctl_queue_ids_valid: every argument is ALL (alone) or a queue ID; else
 * say which one is not, and nothing is done. */
static bool
ctl_queue_ids_valid(const char *op, int argc, char **argv)
{
	char show[64];

	if (argc == 1 && strcmp(argv[0], "ALL") == 0)
		return true;
	for (int i = 0; i < argc; i++) {
		if (smtp_queue_id_valid(argv[i]))
			continue;
		log_escape(argv[i], show, sizeof(show));
		fprintf(stderr, "loftctl: queue %s: \"%s\" is not a queue ID "
		    "(%d characters: digits and capital letters but I, L, O, "
		    "U)%s; nothing done\n", op, show, SMTP_QUEUE_ID_LEN,
		    strcmp(argv[i], "ALL") == 0 ? ", or ALL alone" : "");
		return false;
	}
	return true;
}

/* ctl_queue_op_one: the operation on one message; 0 done, 1 not. */
static int
ctl_queue_op_one(struct smtp_queue *q, enum ctl_queue_op op, const char *id)
{
	const char *err = NULL;
	int r;

	if (op == CTL_QUEUE_DELETE)
		r = smtp_queue_remove(q, id, &err);
	else
		r = smtp_queue_hold(q, id, op == CTL_QUEUE_HOLD, &err);
	if (r == 1) {
		printf("%s: %s\n", id, ctl_queue_op_done[op]);
		return 0;
	}
	if (r == 0)
		err = "no such message in the queue";
	else if (r == SMTP_QUEUE_LOCKED)
		err = "being delivered: try again in a moment";
	fprintf(stderr, "loftctl: queue %s: %s: %s\n", ctl_queue_op_names[op],
	    id, err);
	return 1;
}

/* ctl_queue_op_all: the operation on every message in the queue. */
static int
ctl_queue_op_all(struct smtp_queue *q, enum ctl_queue_op op)
{
	struct smtp_queue_iter *iter;
	struct smtp_queue_env *env;
	char id[SMTP_QUEUE_ID_MAX];
	const char *err;
	int r, status = 0;

	if (smtp_queue_iter_new(q, &iter, &err) < 0) {
		fprintf(stderr, "loftctl: queue %s: %s\n",
		    ctl_queue_op_names[op], err);
		return 1;
	}
	while ((r = smtp_queue_iter_next(iter, &env, &err)) != 0) {
		if (r < 0) {
			fprintf(stderr, "loftctl: queue %s: %s\n",
			    ctl_queue_op_names[op], err);
			status = 1;
			continue;
		}
		memcpy(id, env->id, sizeof(id));
		smtp_queue_env_free(&env);
		status |= ctl_queue_op_one(q, op, id);
	}
	smtp_queue_iter_free(&iter);
	return status;
}

static int
ctl_queue_op(enum ctl_queue_op op, int argc, char **argv)
{
	struct smtp_queue *q;
	int status = 0;

	if (argc < 1) {
		fprintf(stderr, "usage: loftctl queue %s ID ... | ALL\n",
		    ctl_queue_op_names[op]);
		return EX_USAGE;
	}
	if (!ctl_queue_ids_valid(ctl_queue_op_names[op], argc, argv))
		return 1;
	if (ctl_queue_open(op == CTL_QUEUE_DELETE ? "queue delete" :
	    op == CTL_QUEUE_HOLD ? "queue hold" : "queue release", &q) < 0)
		return 1;
	if (strcmp(argv[0], "ALL") == 0)
		status = ctl_queue_op_all(q, op);
	else
		for (int i = 0; i < argc; i++)
			status |= ctl_queue_op_one(q, op, argv[i]);
	smtp_queue_close(&q);
	return status;
}

/*
 * queue flush
 *
 * loftd keeps no pid file to signal, and its queue manager has no command
 * channel (yet): so flush makes the mail due instead. Every deferred
 * recipient of every message not on hold gets next_attempt = now, saved
 * under the message's lock; the queue manager sends it at its next scan
 * of the queue. A message being delivered (locked) is skipped: it is
 * being tried right now.
 */

/* ctl_queue_flush_due: whether env has a deferred recipient not due yet;
 * with set, make them due at now. */
static bool
ctl_queue_flush_due(struct smtp_queue_env *env, time_t now, bool set)
{
	bool later = false;

	for (unsigned int i = 0; i < env->rcpt_count; i++) {
		if (env->rcpts[i].state != SMTP_QUEUE_DEFERRED ||
		    env->rcpts[i].next_attempt <= now)
			continue;
		later = true;
		if (set)
			env->rcpts[i].next_attempt = now;
	}
	return later;
}

/* ctl_queue_flush_one: 1 made due, 0 nothing to do, SMTP_QUEUE_LOCKED,
 * -1 (err set). */
static int
ctl_queue_flush_one(struct smtp_queue *q, const char *id, time_t now,
    const char **err)
{
	struct smtp_queue_env *env;
	int r;

	r = smtp_queue_load(q, id, SMTP_QUEUE_LOCK, &env, err);
	if (r != 1)
		return r;
	/* Looked at again under the lock: it may have changed. */
	r = 0;
	if (!env->hold && ctl_queue_flush_due(env, now, true))
		r = smtp_queue_save(q, env, err) < 0 ? -1 : 1;
	smtp_queue_env_free(&env);
	return r;
}

static int
ctl_queue_flush_all(struct smtp_queue *q, struct smtp_queue_iter *iter)
{
	struct smtp_queue_env *env;
	char id[SMTP_QUEUE_ID_MAX];
	unsigned int due = 0, busy = 0;
	time_t now = time(NULL);
	const char *err;
	bool later;
	int r, status = 0;

	while ((r = smtp_queue_iter_next(iter, &env, &err)) != 0) {
		later = r > 0 && !env->hold &&
		    ctl_queue_flush_due(env, now, false);
		if (r > 0) {
			memcpy(id, env->id, sizeof(id));
			smtp_queue_env_free(&env);
		}
		if (later)
			r = ctl_queue_flush_one(q, id, now, &err);
		if (r == 1 && later)
			due++;
		else if (r == SMTP_QUEUE_LOCKED)
			busy++;
		else if (r < 0) {
			fprintf(stderr, "loftctl: queue flush: %s\n", err);
			status = 1;
		}
	}
	printf("%u message%s due now", due, due == 1 ? "" : "s");
	if (busy > 0)
		printf(", %u being delivered", busy);
	putchar('\n');
	return status;
}

/*
 * Tell the running queue manager (its pid in the queue's pid file, and
 * its command line that of loftd's qmgr, so that a pid reused by another
 * program is left alone) to try deferred mail now. As mail_owner, which
 * the queue manager runs as too. 1 told, 0 none running.
 */
static int
ctl_queue_flush_signal(void)
{
	char path[PATH_MAX], text[32], cmd[256];
	ssize_t n;
	long pid;
	char *end;
	int fd;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s",
	    conf_str("queue_directory"), SMTP_QUEUE_PID_FILE) >= sizeof(path) ||
	    (fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return 0;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	text[n] = '\0';
	pid = strtol(text, &end, 10);
	if (pid <= 1 || (*end != '\n' && *end != '\0'))
		return 0;
	snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, cmd, sizeof(cmd) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	/* argv is NUL-separated: "... -X qmgr ..." */
	for (ssize_t i = 0; i < n; i++)
		if (cmd[i] == '\0')
			cmd[i] = ' ';
	cmd[n] = '\0';
	if (strstr(cmd, " -X qmgr") == NULL)
		return 0;
	return kill((pid_t)pid, SIGUSR1) == 0 ? 1 : 0;
}

static int
ctl_queue_flush(int argc)
{
	struct smtp_queue_iter *iter;
	struct smtp_queue *q;
	const char *err;
	int status;

	if (argc != 0) {
		fprintf(stderr, "usage: loftctl queue flush\n");
		return EX_USAGE;
	}
	if (ctl_queue_open("queue flush", &q) < 0)
		return 1;
	if (smtp_queue_iter_new(q, &iter, &err) < 0) {
		fprintf(stderr, "loftctl: queue flush: %s\n", err);
		smtp_queue_close(&q);
		return 1;
	}
	status = ctl_queue_flush_all(q, iter);
	smtp_queue_iter_free(&iter);
	smtp_queue_close(&q);
	if (ctl_queue_flush_signal())
		printf("the queue manager was told to try them now\n");
	else
		printf("loftd's queue manager is not running: they are tried "
		    "when it starts\n");
	return status;
}

/*
 * queue show
 */

/* State of the header copy: the header ends at the first empty line. */
struct ctl_queue_hdr {
	bool bol;		/* at the start of a line */
	bool cr;		/* a CR seen, its meaning not yet known */
	bool cr_bol;		/* that CR came at the start of a line */
	bool done;
};

/* ctl_queue_hdr_byte: one byte of content; CRLF and LF end lines, a CR
 * alone is shown escaped, as every other control byte but TAB. */
static void
ctl_queue_hdr_byte(struct ctl_queue_hdr *h, unsigned char c)
{
	if (h->cr) {
		h->cr = false;
		if (c == '\n') {
			h->done = h->cr_bol;
			if (!h->done)
				putchar('\n');
			h->bol = true;
			return;
		}
		fputs("\\x0D", stdout);
		h->bol = false;
	}
	if (c == '\r') {
		h->cr = true;
		h->cr_bol = h->bol;
	} else if (c == '\n') {
		h->done = h->bol;
		if (!h->done)
			putchar('\n');
		h->bol = true;
	} else {
		if (c == '\t')
			putchar(c);
		else
			ctl_queue_put_bytes(&c, 1);
		h->bol = false;
	}
}

/* ctl_queue_show_header: the content's header lines, from fd. */
static int
ctl_queue_show_header(int fd)
{
	struct ctl_queue_hdr h = { .bol = true };
	unsigned char *data = xmalloc(CTL_QUEUE_READ);
	ssize_t n;

	while (!h.done && ((n = read(fd, data, CTL_QUEUE_READ)) > 0 ||
	    (n < 0 && errno == EINTR))) {
		for (ssize_t i = 0; i < n && !h.done; i++)
			ctl_queue_hdr_byte(&h, data[i]);
	}
	free(data);
	if (h.cr)
		fputs("\\x0D", stdout);
	if (!h.bol || h.cr)
		putchar('\n');
	return h.done || n == 0 ? 0 : -1;
}

/* ctl_queue_show_env: the envelope as stored (smtp_queue_env_format). */
static int
ctl_queue_show_env(const struct smtp_queue_env *env)
{
	struct buf text;
	const char *err;

	buf_init(&text, SMTP_QUEUE_ENV_MAX);
	if (smtp_queue_env_format(env, &text, &err) < 0) {
		fprintf(stderr, "loftctl: queue show: %s\n", err);
		buf_free(&text);
		return -1;
	}
	printf("*** ENVELOPE %s ***\n", env->id);
	fwrite(text.data, 1, text.len, stdout);
	buf_free(&text);
	return 0;
}

/* ctl_queue_show_content: the header of id's content, framed. */
static int
ctl_queue_show_content(struct smtp_queue *q, const char *id)
{
	const char *err = "removed meanwhile";
	uint64_t size;
	int r, fd;

	if ((r = smtp_queue_open_content(q, id, &fd, &size, &err)) != 1) {
		fprintf(stderr, "loftctl: queue show: %s: %s\n", id, err);
		return 1;
	}
	printf("*** HEADER %s ***\n", id);
	r = ctl_queue_show_header(fd);
	close(fd);
	printf("*** END %s ***\n", id);
	if (r < 0) {
		fprintf(stderr, "loftctl: queue show: %s: read: %s\n", id,
		    strerror(errno));
		return 1;
	}
	return 0;
}

static int
ctl_queue_show_msg(struct smtp_queue *q, const char *id)
{
	struct smtp_queue_env *env;
	const char *err = "no such message in the queue";
	int r;

	if ((r = smtp_queue_load(q, id, 0, &env, &err)) != 1) {
		fprintf(stderr, "loftctl: queue show: %s: %s\n", id, err);
		return 1;
	}
	r = ctl_queue_show_env(env);
	smtp_queue_env_free(&env);
	return r < 0 ? 1 : ctl_queue_show_content(q, id);
}

static int
ctl_queue_show(int argc, char **argv)
{
	struct smtp_queue *q;
	int status;

	if (argc != 1 || strcmp(argv[0], "ALL") == 0) {
		fprintf(stderr, "usage: loftctl queue show ID\n");
		return EX_USAGE;
	}
	if (!ctl_queue_ids_valid("show", argc, argv))
		return 1;
	if (ctl_queue_open("queue show", &q) < 0)
		return 1;
	status = ctl_queue_show_msg(q, argv[0]);
	smtp_queue_close(&q);
	return status;
}

int
ctl_queue_main(int argc, char **argv)
{
	static const char *const usage =
	    "usage: loftctl queue delete|hold|release ID ... | ALL\n"
	    "       loftctl queue flush\n"
	    "       loftctl queue show ID\n";
	const char *sub = argc >= 2 ? argv[1] : "";

	if (strcmp(sub, "delete") == 0)
		return ctl_queue_op(CTL_QUEUE_DELETE, argc - 2, argv + 2);
	if (strcmp(sub, "hold") == 0)
		return ctl_queue_op(CTL_QUEUE_HOLD, argc - 2, argv + 2);
	if (strcmp(sub, "release") == 0)
		return ctl_queue_op(CTL_QUEUE_RELEASE, argc - 2, argv + 2);
	if (strcmp(sub, "flush") == 0)
		return ctl_queue_flush(argc - 2);
	if (strcmp(sub, "show") == 0)
		return ctl_queue_show(argc - 2, argv + 2);
	fputs(usage, stderr);
	return EX_USAGE;
}
