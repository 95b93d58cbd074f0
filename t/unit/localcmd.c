/*
 * Unit tests for server/loftd/localcmd.c: what a command's end means
 * (Postfix's pipe_command and sysexits table), the quoting bounds at N and
 * N + 1, and the file delivery (mbox append, refusals) of the delivery
 * process, called directly. Then the master's side on a real loop with
 * real delivery processes: LOCALCMD_PROCS_MAX at 16 and 17 (commands that
 * block on FIFOs this test holds), localcmd_stop (the waiting request
 * and a new one answered "shutting down", the running ones still
 * answered), the safety timer's kill of a whole session (a command that
 * ignores SIGTERM, in a process group of its own, with a child), and
 * LOFT_LOCALCMD_GRACE's values at N and N + 1. Counts, never times: an
 * alarm only guards against a hang. The module is included whole: the
 * Makefile links unit tests with the libraries, and server/loftd's
 * objects are in none of them.
 */
#include "config.h"

#include "../../server/loftd/localcmd.c"

#include <stdlib.h>
#include <sys/stat.h>

#include "tap.h"

static enum loftd_dstatus
st(const char *cmd, int status, bool timed_out, const char *out,
    const char **dsn, char *text, size_t size)
{
	return localcmd_command_status(cmd, status, timed_out, out,
	    out != NULL ? strlen(out) : 0, dsn, text, size);
}

static void
test_status(void)
{
	char text[SMTP_QUEUE_DIAG_MAX];
	const char *dsn;

	is_int(st("/bin/x a", 0, false, "ignored\n", &dsn, text, sizeof(text)),
	    LOFTD_DELIVER_OK, "exit 0: delivered");
	is_string(dsn, "2.0.0", "  2.0.0");
	is_string(text, "delivered to command: /bin/x a", "  the log text");
	is_int(st("/bin/x", 75, false, "try later\n", &dsn, text,
	    sizeof(text)), LOFTD_DELIVER_TEMP, "exit 75: deferred");
	is_string(dsn, "4.3.0", "  4.3.0");
	is_string(text, "temporary failure. Command output: try later",
	    "  sysexits text and the output");
	is_int(st("/bin/x", 71, false, NULL, &dsn, text, sizeof(text)),
	    LOFTD_DELIVER_TEMP, "exit 71 (EX_OSERR): deferred");
	is_string(text, "system resource problem", "  without output: the "
	    "sysexits text alone");
	is_int(st("/bin/x", 67, false, "", &dsn, text, sizeof(text)),
	    LOFTD_DELIVER_PERM, "exit 67 (EX_NOUSER): bounced");
	is_string(dsn, "5.1.1", "  5.1.1");
	is_int(st("/bin/x", 78, false, "", &dsn, text, sizeof(text)),
	    LOFTD_DELIVER_PERM, "exit 78 (EX_CONFIG): bounced");
	is_string(dsn, "5.3.5", "  5.3.5");
	is_int(st("/bin/x", 1, false, "no list\nsecond\n", &dsn, text,
	    sizeof(text)), LOFTD_DELIVER_PERM, "exit 1: bounced");
	is_string(dsn, "5.3.0", "  5.3.0");
	is_string(text, "Command died with status 1: \"/bin/x\". Command "
	    "output: no list", "  the first output line quoted");
	is_int(st("/bin/x", 63, false, "", &dsn, text, sizeof(text)),
	    LOFTD_DELIVER_PERM, "exit 63 (below the sysexits): bounced");
	is_string(text, "Command died with status 63: \"/bin/x\"",
	    "  no output: no \"Command output\"");
	is_int(st("/bin/x", 79, false, "", &dsn, text, sizeof(text)),
	    LOFTD_DELIVER_PERM, "exit 79 (above the sysexits): bounced");
	is_int(st("/bin/x", 128 + 9, false, "", &dsn, text, sizeof(text)),
	    LOFTD_DELIVER_TEMP, "killed by signal 9: deferred");
	is_string(text, "Command died with signal 9: \"/bin/x\"", "  said so");
	is_int(st("/bin/x", 128 + 9, true, "partial\n", &dsn, text,
	    sizeof(text)), LOFTD_DELIVER_PERM, "time limit: bounced");
	is_string(text, "Command time limit exceeded: \"/bin/x\". Command "
	    "output: partial", "  said so");
	is_int(st("/bin/x", 1, false, "4.2.1 mailbox busy\n", &dsn, text,
	    sizeof(text)), LOFTD_DELIVER_TEMP, "\"4.2.1 text\" output: as it "
	    "says, deferred");
	is_string(dsn, "4.2.1", "  its code");
	is_string(text, "mailbox busy", "  its text");
	is_int(st("/bin/x", 75, false, "5.1.1 no such user\n", &dsn, text,
	    sizeof(text)), LOFTD_DELIVER_PERM, "\"5.1.1 text\" outweighs the "
	    "exit status");
	is_string(dsn, "5.1.1", "  its code");
	is_int(st("/bin/x", 1, false, "4.123.123 x\n", &dsn, text,
	    sizeof(text)), LOFTD_DELIVER_TEMP, "three digits a part: a code");
	is_int(st("/bin/x", 1, false, "4.1234.1 x\n", &dsn, text,
	    sizeof(text)), LOFTD_DELIVER_PERM, "four: not a code");
	is_int(st("/bin/x", 1, false, "6.1.1 x\n", &dsn, text, sizeof(text)),
	    LOFTD_DELIVER_PERM, "class 6: not a code");
	is_int(st("/bin/x", 1, false, "4.1 x\n", &dsn, text, sizeof(text)),
	    LOFTD_DELIVER_PERM, "two parts: not a code");
	is_int(st("/bin/x", 1, false, "4.1.1x\n", &dsn, text, sizeof(text)),
	    LOFTD_DELIVER_PERM, "no blank after it: not a code");
	is_int(st("/bin/x", 1, false, "a\tb\001c\r\nd", &dsn, text,
	    sizeof(text)), LOFTD_DELIVER_PERM, "control bytes");
	is_string(text, "Command died with status 1: \"/bin/x\". Command "
	    "output: a_b_c", "  shown as '_', CRLF ends the line");
}

static void
test_quote_limit(void)
{
	char cmd[LOCALCMD_QUOTE_MAX + 2], out[LOCALCMD_QUOTE_MAX + 2];
	char text[2048], want[2048];
	const char *dsn;

	memset(cmd, 'c', sizeof(cmd) - 1);
	cmd[LOCALCMD_QUOTE_MAX] = '\0';
	memset(out, 'o', sizeof(out) - 1);
	out[LOCALCMD_QUOTE_MAX] = '\0';
	st(cmd, 1, false, out, &dsn, text, sizeof(text));
	snprintf(want, sizeof(want), "Command died with status 1: \"%s\". "
	    "Command output: %s", cmd, out);
	is_string(text, want, "command and output of %d bytes: whole",
	    LOCALCMD_QUOTE_MAX);
	cmd[LOCALCMD_QUOTE_MAX] = 'C';
	cmd[LOCALCMD_QUOTE_MAX + 1] = '\0';
	out[LOCALCMD_QUOTE_MAX] = 'O';
	out[LOCALCMD_QUOTE_MAX + 1] = '\0';
	st(cmd, 1, false, out, &dsn, text, sizeof(text));
	is_string(text, want, "%d bytes: cut at %d", LOCALCMD_QUOTE_MAX + 1,
	    LOCALCMD_QUOTE_MAX);
	st(cmd, 1, false, out, &dsn, text, 40);
	is_int(strlen(text), 39, "the caller's buffer bounds the text");
}

static char *
slurp(const char *path)
{
	static char data[8192];
	FILE *f = fopen(path, "rb");
	size_t n = 0;

	if (f != NULL) {
		n = fread(data, 1, sizeof(data) - 1, f);
		fclose(f);
	}
	data[n] = '\0';
	return data;
}

static void
test_mbox(const char *dir)
{
	static const unsigned char msg[] = "Subject: x\n\nFrom here\nbye\n";
	struct localcmd_result r;
	char path[512], link_path[600], *data;
	struct stat sb;

	snprintf(path, sizeof(path), "%s/box", dir);
	memset(&r, 0, sizeof(r));
	localcmd_child_mbox(path, "s@example.org", msg, sizeof(msg) - 1, &r);
	is_int(r.status, LOFTD_DELIVER_OK, "mbox: a new file, delivered");
	snprintf(link_path, sizeof(link_path), "delivered to file: %s", path);
	is_string(r.text, link_path, "  \"delivered to file: PATH\"");
	memset(&r, 0, sizeof(r));
	localcmd_child_mbox(path, "", msg, sizeof(msg) - 1, &r);
	is_int(r.status, LOFTD_DELIVER_OK, "  appended a second time");
	data = slurp(path);
	ok(strncmp(data, "From s@example.org ", 19) == 0, "  From_ line");
	ok(strstr(data, "\n>From here\nbye\n\nFrom MAILER-DAEMON ") != NULL,
	    "  >From quoting, separator, the second From_ line (<> as "
	    "MAILER-DAEMON)");
	ok(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600,
	    "  created mode 0600");

	chmod(path, 0602);
	memset(&r, 0, sizeof(r));
	localcmd_child_mbox(path, "", msg, sizeof(msg) - 1, &r);
	is_int(r.status, LOFTD_DELIVER_PERM, "writable by others: refused");
	is_string(r.dsn, "5.2.0", "  5.2.0");
	ok(strstr(r.text, ": writable by others") != NULL, "  said why");
	chmod(path, 0620);
	memset(&r, 0, sizeof(r));
	localcmd_child_mbox(path, "", msg, sizeof(msg) - 1, &r);
	is_int(r.status, LOFTD_DELIVER_OK, "writable by the group: taken");

	snprintf(link_path, sizeof(link_path), "%s/link", dir);
	if (symlink(path, link_path) < 0)
		bail("symlink");
	memset(&r, 0, sizeof(r));
	localcmd_child_mbox(link_path, "", msg, sizeof(msg) - 1, &r);
	is_int(r.status, LOFTD_DELIVER_PERM, "a symbolic link: refused");
	ok(strstr(r.text, ": is a symbolic link") != NULL, "  said why");
	memset(&r, 0, sizeof(r));
	localcmd_child_mbox(dir, "", msg, sizeof(msg) - 1, &r);
	is_int(r.status, LOFTD_DELIVER_PERM, "a directory: refused");
	ok(strstr(r.text, ": not a regular file") != NULL, "  said why");
	snprintf(link_path, sizeof(link_path), "%s/nodir/box", dir);
	memset(&r, 0, sizeof(r));
	localcmd_child_mbox(link_path, "", msg, sizeof(msg) - 1, &r);
	is_int(r.status, LOFTD_DELIVER_PERM, "a missing directory: bounced");
	is_string(r.dsn, "5.2.0", "  5.2.0");
	memset(&r, 0, sizeof(r));
	localcmd_child_mbox("/dev/null", "", msg, sizeof(msg) - 1, &r);
	is_int(r.status, LOFTD_DELIVER_OK, "/dev/null: delivered");
}

static void
test_grace_parse(void)
{
	char big[32];

	is_int(localcmd_grace_parse("0"), 0, "grace \"0\": 0 seconds");
	is_int(localcmd_grace_parse("7"), 7, "grace \"7\"");
	snprintf(big, sizeof(big), "%d", LOCALCMD_GRACE);
	is_int(localcmd_grace_parse(big), LOCALCMD_GRACE, "grace %s (the "
	    "default, N): taken", big);
	snprintf(big, sizeof(big), "%d", LOCALCMD_GRACE + 1);
	is_int(localcmd_grace_parse(big), -1, "grace %s (N + 1): refused",
	    big);
	is_int(localcmd_grace_parse("99999999999999999999999"), -1,
	    "  a number past any integer: refused");
	is_int(localcmd_grace_parse(""), -1, "  empty: refused");
	is_int(localcmd_grace_parse("-1"), -1, "  negative: refused");
	is_int(localcmd_grace_parse("5s"), -1, "  a unit: refused");
}

/* What the master's loop saw of the module. */
static struct {
	struct ioloop *loop;
	unsigned answers;
	uint32_t last_req;
	enum loftd_dstatus status[32];
	char text[32][SMTP_QUEUE_DIAG_MAX];
	unsigned want;		/* stop the loop at this many answers */
	bool want_idle;		/* ...and no job left */
} t_ctx;

static void
t_answer(void *asker, uint32_t req, enum loftd_dstatus status,
    const char *dsn, const char *text)
{
	(void)asker;
	(void)dsn;
	t_ctx.answers++;
	t_ctx.last_req = req;
	if (req < 32) {
		t_ctx.status[req] = status;
		strlcpy(t_ctx.text[req], text, sizeof(t_ctx.text[req]));
	}
}

static void
t_sigchld(int signo, void *ctx)
{
	int status;
	pid_t pid;

	(void)signo;
	(void)ctx;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		(void)localcmd_reaped(pid, status);
}

static void
t_check(void *ctx)
{
	(void)ctx;
	if (t_ctx.answers >= t_ctx.want && (!t_ctx.want_idle ||
	    localcmd.jobs == NULL))
		ioloop_stop(t_ctx.loop);
}

static void
t_stop(void *ctx)
{
	ioloop_stop(ctx);
}

/* One turn of the loop: what is due now, at most 5 ms of waiting. */
static void
t_spin(void)
{
	struct timeout *to = timeout_add(t_ctx.loop, 5, false, t_stop,
	    t_ctx.loop);

	ioloop_run(t_ctx.loop);
	timeout_remove(&to);
}

/* Run the loop until want answers came (and, if idle, every job is
 * gone: answered, read and reaped). */
static void
t_run(unsigned want, bool idle)
{
	struct timeout *to;

	t_ctx.want = want;
	t_ctx.want_idle = idle;
	to = timeout_add(t_ctx.loop, 5, true, t_check, NULL);
	ioloop_run(t_ctx.loop);
	timeout_remove(&to);
}

static int t_content = -1;
static uid_t t_uid;
static gid_t t_gid;

/* A command job as localcmd_request makes one once checked. */
static struct localcmd_job *
t_job(uint32_t req, const char *target)
{
	struct localcmd_job *j = xcalloc(1, sizeof(*j)), **pp;

	j->asker = &t_ctx;
	j->req = req;
	j->fd = dup(t_content);
	j->res_fd = -1;
	j->kind = SMTP_ALIAS_COMMAND;
	j->target = xstrdup(target);
	j->rcpt = xstrdup("list@example.org");
	j->orig_rcpt = xstrdup("list@example.org");
	j->sender = xstrdup("s@example.org");
	j->uid = t_uid;
	j->gid = t_gid;
	j->user = xstrdup("test");
	j->home = xstrdup("/");
	for (pp = &localcmd.jobs; *pp != NULL; pp = &(*pp)->next)
		;
	*pp = j;
	return j;
}

static unsigned
t_started(void)
{
	unsigned n = 0;

	for (struct localcmd_job *j = localcmd.jobs; j != NULL; j = j->next)
		n += j->started;
	return n;
}

/* Let command n (blocked reading its FIFO) go on. */
static void
t_release(const char *dir, unsigned n)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/fifo.%u", dir, n);
	if ((fd = open(path, O_WRONLY)) < 0)	/* waits for its reader */
		bail("open %s: %s", path, strerror(errno));
	if (write(fd, "go\n", 3) != 3)
		bail("write %s", path);
	close(fd);
}

/* A LOFTD_DELIVER_LOCAL record as qmgr sends one. */
static void
t_request_msg(struct ipc_msg *m, uint32_t req)
{
	ipc_msg_init(m, LOFTD_DELIVER_LOCAL, 0);
	ipc_add_u32(m, req);
	ipc_add_str(m, "0123456789ABCDEFG");
	ipc_add_str(m, "list");
	ipc_add_u32(m, SMTP_ALIAS_COMMAND);
	ipc_add_str(m, "/bin/true");
	ipc_add_str(m, "list@example.org");
	ipc_add_str(m, "list@example.org");
	ipc_add_str(m, "s@example.org");
	ipc_msg_set_fd(m, dup(t_content));
}

static void
test_limit_and_stop(const char *dir)
{
	struct localcmd_job *j[LOCALCMD_PROCS_MAX + 3];
	static struct ipc_msg m;
	const char *error;
	char target[600], path[512];
	unsigned n, ok_count = 0;

	for (n = 1; n <= LOCALCMD_PROCS_MAX + 2; n++) {
		snprintf(path, sizeof(path), "%s/fifo.%u", dir, n);
		if (mkfifo(path, 0666) < 0 || chmod(path, 0666) < 0)
			bail("mkfifo %s", path);
	}
	/* N = 16 and N + 1 = 17 requests at once. */
	for (n = 1; n <= LOCALCMD_PROCS_MAX + 1; n++) {
		snprintf(target, sizeof(target), "read x < %s/fifo.%u", dir, n);
		j[n] = t_job(n, target);
	}
	localcmd_start_waiting();
	is_int(localcmd.running, LOCALCMD_PROCS_MAX, "%d requests: %d "
	    "processes run", LOCALCMD_PROCS_MAX + 1, LOCALCMD_PROCS_MAX);
	is_int(t_started(), LOCALCMD_PROCS_MAX, "  %d started",
	    LOCALCMD_PROCS_MAX);
	ok(j[LOCALCMD_PROCS_MAX]->started, "  the %dth runs",
	    LOCALCMD_PROCS_MAX);
	ok(!j[LOCALCMD_PROCS_MAX + 1]->started, "  the %dth waits",
	    LOCALCMD_PROCS_MAX + 1);
	is_int(t_ctx.answers, 0, "  nothing answered yet");

	t_release(dir, 1);
	t_run(1, false);
	is_int(t_ctx.last_req, 1, "the first released: it answers");
	is_int(t_ctx.status[1], LOFTD_DELIVER_OK, "  delivered");
	/* Its answer (the pipe) may come before its reaping (SIGCHLD). */
	for (int k = 0; k < 2000 && !j[LOCALCMD_PROCS_MAX + 1]->started; k++)
		t_spin();
	ok(j[LOCALCMD_PROCS_MAX + 1]->started, "  once reaped, the %dth "
	    "starts", LOCALCMD_PROCS_MAX + 1);
	is_int(localcmd.running, LOCALCMD_PROCS_MAX, "  %d run again",
	    LOCALCMD_PROCS_MAX);

	/* Another request waits behind them; then the master stops. */
	snprintf(target, sizeof(target), "read x < %s/fifo.%u", dir,
	    LOCALCMD_PROCS_MAX + 2);
	j[LOCALCMD_PROCS_MAX + 2] = t_job(LOCALCMD_PROCS_MAX + 2, target);
	localcmd_start_waiting();
	ok(!j[LOCALCMD_PROCS_MAX + 2]->started, "a request past the limit "
	    "waits");
	localcmd_stop();
	is_int(t_ctx.answers, 2, "localcmd_stop: the waiting one is answered "
	    "at once");
	is_int(t_ctx.status[LOCALCMD_PROCS_MAX + 2], LOFTD_DELIVER_TEMP,
	    "  deferred");
	is_string(t_ctx.text[LOCALCMD_PROCS_MAX + 2], "mail system is "
	    "shutting down", "  \"mail system is shutting down\"");
	is_int(t_started(), LOCALCMD_PROCS_MAX, "  and gone from the jobs, "
	    "the %d running stay", LOCALCMD_PROCS_MAX);
	t_request_msg(&m, 30);
	ok(localcmd_request(&t_ctx, &m, &error) == 0 && t_ctx.answers == 3 &&
	    t_ctx.last_req == 30, "a request after it: answered at once");
	is_int(t_ctx.status[30], LOFTD_DELIVER_TEMP, "  deferred");
	is_string(t_ctx.text[30], "mail system is shutting down", "  said "
	    "why");
	is_int(t_started(), LOCALCMD_PROCS_MAX, "  no process for it");

	for (n = 2; n <= LOCALCMD_PROCS_MAX + 1; n++)
		t_release(dir, n);
	t_run(3 + LOCALCMD_PROCS_MAX, true);
	for (n = 2; n <= LOCALCMD_PROCS_MAX + 1; n++)
		ok_count += t_ctx.status[n] == LOFTD_DELIVER_OK;
	is_int(ok_count, LOCALCMD_PROCS_MAX, "the %d running when the master "
	    "stopped: each answered, delivered", LOCALCMD_PROCS_MAX);
	is_int(localcmd.running, 0, "  every process reaped");
	ok(localcmd.jobs == NULL, "  no job left");
}

/* Whether pid is gone or a zombie. */
static bool
t_gone(pid_t pid)
{
	char name[32];
	pid_t sid;
	bool alive;

	snprintf(name, sizeof(name), "%ld", (long)pid);
	return localcmd_proc_session(name, &sid, &alive) < 0 || !alive;
}

static bool
t_read_pids(const char *path, long *a, long *b)
{
	FILE *f = fopen(path, "r");
	int n = 0;

	if (f != NULL) {
		n = fscanf(f, "%ld %ld", a, b);
		fclose(f);
	}
	return n == 2;
}

static void
test_overdue(const char *dir)
{
	struct localcmd_job *j;
	char target[2048], path[512];
	long sh_pid = 0, sleep_pid = 0;
	pid_t delivery;
	struct stat sb;

	/* As rules_cmd_run runs it: its own process group, SIGTERM
	 * ignored, a child. The pid file appears once both run. */
	snprintf(path, sizeof(path), "%s/stuck.pids", dir);
	snprintf(target, sizeof(target), "trap '' TERM HUP; sleep 1000 & "
	    "echo $$ $! > %s.tmp; mv %s.tmp %s; wait", path, path, path);
	localcmd.stopping = false;
	j = t_job(1, target);
	localcmd_start_waiting();
	if (!j->started)
		bail("the stuck job did not start");
	delivery = j->pid;
	for (int k = 0; k < 2000 && stat(path, &sb) < 0; k++)
		t_spin();
	if (!t_read_pids(path, &sh_pid, &sleep_pid) || sh_pid <= 0 ||
	    sleep_pid <= 0)
		bail("no pids in %s", path);
	ok(!t_gone((pid_t)sh_pid) && !t_gone((pid_t)sleep_pid), "the stuck "
	    "command runs (sh %ld, its sleep %ld)", sh_pid, sleep_pid);
	ok(getsid((pid_t)sh_pid) == delivery, "  in the delivery process's "
	    "session");
	ok(getpgid((pid_t)sh_pid) != delivery, "  in a process group of its "
	    "own, as rules_cmd_run makes one");
	t_ctx.answers = 0;
	localcmd_overdue(j);
	is_int(t_ctx.answers, 1, "safety timer: answered at once");
	is_int(t_ctx.status[1], LOFTD_DELIVER_TEMP, "  deferred");
	is_string(t_ctx.text[1], "local delivery process killed: it did not "
	    "end in time", "  said why");
	t_run(1, true);
	ok(localcmd.jobs == NULL && localcmd.running == 0, "  the delivery "
	    "process is reaped, the job gone");
	/* Orphans come to this process (a subreaper): reap them. Bounded
	 * by turns, not time: with them alive, this fails, not hangs. */
	for (int k = 0; k < 2000 && (!t_gone((pid_t)sh_pid) ||
	    !t_gone((pid_t)sleep_pid)); k++)
		t_spin();
	ok(t_gone((pid_t)sh_pid) && t_gone((pid_t)sleep_pid), "  the command "
	    "(SIGTERM ignored) and its child are gone too");
}

/* localcmd_kill_session by itself: a session, two groups in it, a
 * process outside it that must live. */
static void
test_kill_session(void)
{
	int p[2], st, killed_all = 0;
	pid_t leader, other, sid = 0;
	long pids[2];
	bool alive;
	char name[32];

	if (pipe(p) < 0)
		bail("pipe");
	if ((other = fork()) == 0) {
		pause();
		_exit(0);
	}
	if ((leader = fork()) == 0) {
		setsid();
		signal(SIGTERM, SIG_IGN);
		if (fork() == 0) {
			setpgid(0, 0);
			if (fork() == 0) {
				long me = (long)getpid();

				(void)write(p[1], &me, sizeof(me));
				for (;;)
					pause();
			}
			long me = (long)getpid();

			(void)write(p[1], &me, sizeof(me));
			for (;;)
				pause();
		}
		for (;;)
			pause();
	}
	close(p[1]);
	if (read(p[0], &pids[0], sizeof(pids[0])) != sizeof(pids[0]) ||
	    read(p[0], &pids[1], sizeof(pids[1])) != sizeof(pids[1]))
		bail("read pids");
	close(p[0]);
	snprintf(name, sizeof(name), "%ld", (long)pids[0]);
	ok(localcmd_proc_session(name, &sid, &alive) == 0 && sid == leader &&
	    alive, "/proc/PID/stat read: the session of the leader (%ld), "
	    "alive", (long)leader);
	is_int(localcmd_kill_session(leader), 3, "a session of 3 processes "
	    "in two groups: 3 killed");
	if (waitpid(leader, &st, 0) == leader && WIFSIGNALED(st) &&
	    WTERMSIG(st) == SIGKILL)
		killed_all++;
	/* Its descendants are this process's now (a subreaper). */
	for (int k = 0; k < 2; k++)
		if (waitpid((pid_t)pids[k], &st, 0) == (pid_t)pids[k] &&
		    WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
			killed_all++;
	is_int(killed_all, 3, "  each died of SIGKILL");
	ok(kill(other, 0) == 0 && !t_gone(other), "  the process outside "
	    "the session lives");
	kill(other, SIGKILL);
	waitpid(other, &st, 0);
	snprintf(name, sizeof(name), "%ld", (long)getpid());
	ok(localcmd_proc_session(name, &sid, &alive) == 0 && sid == getsid(0),
	    "our own session read right");
}

static void
test_processes(const char *dir)
{
	static const char msg[] = "Subject: t\r\n\r\nbody\r\n";
	char path[512];
	struct passwd *pw;
	const char *error;

	if (conf_set("command_time_limit", "600s", &error) < 0)
		bail("conf: %s", error);
	snprintf(path, sizeof(path), "%s/content", dir);
	if ((t_content = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644)) < 0 ||
	    write(t_content, msg, sizeof(msg) - 1) != sizeof(msg) - 1)
		bail("content");
	t_uid = getuid();
	t_gid = getgid();
	if (geteuid() == 0) {
		/* The delivery process refuses nothing here, but becomes
		 * the job's uid: nobody's, as default_privs. */
		if ((pw = getpwnam("nobody")) == NULL)
			bail("no user nobody");
		t_uid = pw->pw_uid;
		t_gid = pw->pw_gid;
		if (chmod(dir, 0777) < 0)
			bail("chmod");
	}
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
		bail("PR_SET_CHILD_SUBREAPER");
	t_ctx.loop = ioloop_new();
	if (ioloop_signal_add(t_ctx.loop, SIGCHLD, t_sigchld, NULL) < 0)
		bail("signal");
	localcmd_init(t_ctx.loop, t_answer);
	test_limit_and_stop(dir);
	test_overdue(dir);
	localcmd_deinit();
	ioloop_free(&t_ctx.loop);
	test_kill_session();
	close(t_content);
}

int
main(void)
{
	char dir[] = "/tmp/loft-localcmd-XXXXXX";
	const char *error;
	char cmd[256];

	/* A hang (a process that was not killed) fails, not blocks. */
	alarm(120);
	if (conf_load_buffer("test", "", 0, &error) < 0)
		bail("conf: %s", error);
	test_status();
	test_quote_limit();
	test_grace_parse();
	if (mkdtemp(dir) == NULL)
		bail("mkdtemp");
	test_mbox(dir);
	test_processes(dir);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		diag("could not remove %s", dir);
	conf_reset();
	return done_testing();
}
