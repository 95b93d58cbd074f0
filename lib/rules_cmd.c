/*
 * rules_cmd.c: run one command for the rules engine: fork, exec (argv, or
 * $SHELL -c), feed it the message, collect its output, wait, with a time
 * limit after which its whole process group is killed.
 *
 * SECURITY: the commands are the user's own and run as the user (the
 * caller has switched uid). The child gets exactly the environment the
 * caller builds, no descriptor but 0, 1 and 2, and the umask given.
 * Output is bounded by the caller's buffer; the rest is read and dropped
 * so the child never blocks on a full pipe.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "rules.h"

static char rules_cmd_errbuf[256];

static long long
rules_cmd_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void __attribute__((noreturn))
rules_cmd_child(const struct rules_cmd *c, int in_fd, int out_fd)
{
	static char *const empty[] = { NULL };
	const char *shell = c->shell != NULL && c->shell[0] != '\0' ?
	    c->shell : "/bin/sh";
	char *argv[4];
	int null_fd, err_fd, fd;

	setpgid(0, 0);
	signal(SIGPIPE, SIG_DFL);
	umask(c->umask);
	null_fd = open("/dev/null", O_RDWR);
	if (out_fd < 0)
		out_fd = c->output_fd >= 0 ? c->output_fd : null_fd;
	err_fd = c->stderr_fd >= 0 ? c->stderr_fd : null_fd;
	if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
		_exit(EX_OSERR);
	for (fd = 3; fd < 1024; fd++)
		close(fd);
	if (c->cwd != NULL && chdir(c->cwd) < 0) {
		dprintf(2, "loft rules: chdir %s: %s\n", c->cwd,
		    strerror(errno));
		_exit(EX_OSERR);
	}
	if (c->argv != NULL) {
		execve(c->argv[0], c->argv, c->envp != NULL ? c->envp : empty);
		dprintf(2, "loft rules: %s: %s\n", c->argv[0], strerror(errno));
		_exit(errno == ENOENT ? EX_UNAVAILABLE : EX_OSERR);
	}
	argv[0] = (char *)shell;
	argv[1] = (char *)"-c";
	argv[2] = (char *)(c->shell_cmd != NULL ? c->shell_cmd : "");
	argv[3] = NULL;
	execve(shell, argv, c->envp != NULL ? c->envp : empty);
	dprintf(2, "loft rules: %s: %s\n", shell, strerror(errno));
	_exit(EX_OSERR);
}

struct rules_cmd_io {
	int in_w, out_r;
	size_t sent;
};

/* Move bytes both ways until both pipes are done or the time is up. */
static void
rules_cmd_pump(const struct rules_cmd *c, struct rules_cmd_io *io,
    struct rules_cmd_result *res, long long deadline)
{
	unsigned char chunk[16384];

	while (io->in_w >= 0 || io->out_r >= 0) {
		struct pollfd pf[2];
		int n = 0, wait_ms = -1, in_i = -1, out_i = -1;
		ssize_t k;

		if (io->in_w >= 0) {
			pf[n].fd = io->in_w;
			pf[n].events = POLLOUT;
			in_i = n++;
		}
		if (io->out_r >= 0) {
			pf[n].fd = io->out_r;
			pf[n].events = POLLIN;
			out_i = n++;
		}
		if (deadline > 0) {
			long long left = deadline - rules_cmd_now_ms();

			if (left <= 0) {
				res->timed_out = true;
				return;
			}
			wait_ms = left > 1000000 ? 1000000 : (int)left;
		}
		if (poll(pf, (nfds_t)n, wait_ms) < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		if (in_i >= 0 && pf[in_i].revents != 0) {
			size_t want = c->in_len - io->sent;

			k = want == 0 ? 0 : write(io->in_w, c->in + io->sent,
			    want > 65536 ? 65536 : want);
			if (k < 0 && (errno == EAGAIN || errno == EINTR))
				k = 0;
			if (k < 0) {
				res->write_error = true;
				close(io->in_w);
				io->in_w = -1;
			} else {
				io->sent += (size_t)k;
				if (io->sent == c->in_len) {
					close(io->in_w);
					io->in_w = -1;
				}
			}
		}
		if (out_i >= 0 && pf[out_i].revents != 0) {
			k = read(io->out_r, chunk, sizeof(chunk));
			if (k < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (k <= 0) {
				close(io->out_r);
				io->out_r = -1;
			} else if (buf_append(c->out, chunk, (size_t)k) < 0) {
				/* Keep what fits; read the rest away. */
				size_t room = c->out->max - c->out->len;

				if (room > 0)
					buf_append(c->out, chunk, room);
				res->out_overflow = true;
			}
		}
	}
}

static int
rules_cmd_wait(pid_t pid, struct rules_cmd_result *res, long long deadline)
{
	int st;

	for (;;) {
		pid_t w = waitpid(pid, &st, deadline > 0 ? WNOHANG : 0);

		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
			return -1;
		if (w == 0) {
			if (rules_cmd_now_ms() >= deadline) {
				res->timed_out = true;
				kill(-pid, SIGKILL);
				kill(pid, SIGKILL);
				deadline = 0;
				continue;
			}
			usleep(2000);
		}
	}
	if (WIFEXITED(st))
		res->status = WEXITSTATUS(st);
	else if (WIFSIGNALED(st))
		res->status = 128 + WTERMSIG(st);
	if (res->timed_out && res->status == 0)
		res->status = 128 + SIGKILL;
	return 0;
}

int
rules_cmd_run(const struct rules_cmd *c, struct rules_cmd_result *res,
    const char **error_r)
{
	struct rules_cmd_io io = { -1, -1, 0 };
	void (*old_pipe)(int);
	int in[2], out[2] = { -1, -1 };
	long long deadline;
	pid_t pid;

	memset(res, 0, sizeof(*res));
	if (pipe2(in, O_CLOEXEC) < 0 ||
	    (c->out != NULL && pipe2(out, O_CLOEXEC) < 0)) {
		snprintf(rules_cmd_errbuf, sizeof(rules_cmd_errbuf),
		    "pipe: %s", strerror(errno));
		*error_r = rules_cmd_errbuf;
		return -1;
	}
	old_pipe = signal(SIGPIPE, SIG_IGN);
	pid = fork();
	if (pid < 0) {
		snprintf(rules_cmd_errbuf, sizeof(rules_cmd_errbuf),
		    "fork: %s", strerror(errno));
		*error_r = rules_cmd_errbuf;
		close(in[0]);
		close(in[1]);
		if (out[0] >= 0) {
			close(out[0]);
			close(out[1]);
		}
		signal(SIGPIPE, old_pipe);
		return -1;
	}
	if (pid == 0)
		rules_cmd_child(c, in[0], out[1]);
	/* Also in the parent: no race with kill(-pid) at the timeout. */
	setpgid(pid, pid);
	close(in[0]);
	if (out[1] >= 0)
		close(out[1]);
	io.in_w = in[1];
	io.out_r = out[0];
	fcntl(io.in_w, F_SETFL, O_NONBLOCK);
	if (io.out_r >= 0)
		fcntl(io.out_r, F_SETFL, O_NONBLOCK);
	if (c->in_len == 0) {
		close(io.in_w);
		io.in_w = -1;
	}
	deadline = c->timeout > 0 ?
	    rules_cmd_now_ms() + (long long)c->timeout * 1000 : 0;
	rules_cmd_pump(c, &io, res, deadline);
	if (io.in_w >= 0)
		close(io.in_w);
	if (io.out_r >= 0)
		close(io.out_r);
	if (res->timed_out) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
	}
	rules_cmd_wait(pid, res, res->timed_out ? 0 : deadline);
	signal(SIGPIPE, old_pipe);
	return 0;
}

enum rules_status
rules_exit_status(const struct rules_cmd_result *res)
{
	if (res->timed_out)
		return RULES_TEMPFAIL;
	switch (res->status) {
	case 0:
		return RULES_OK;
	case EX_USAGE:
	case EX_DATAERR:
	case EX_NOINPUT:
	case EX_NOUSER:
	case EX_NOHOST:
	case EX_UNAVAILABLE:
	case EX_PROTOCOL:
	case EX_NOPERM:
	case EX_CONFIG:
		return RULES_PERMFAIL;
	default:
		return RULES_TEMPFAIL;
	}
}
