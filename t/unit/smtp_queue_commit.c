/*
 * Unit tests for the committer of smtp/smtp_queue.c (commits on threads),
 * on real queue directories under /tmp:
 * - its thread count at the limits (0 and MAX+1 refused, 1 and MAX
 *   accepted);
 * - 200 messages submitted to 1 and to 8 threads: the descriptor turns
 *   readable, every commit is reaped once with its context and the ID the
 *   message had, each envelope and content is on disk and loads with its
 *   recipient, nothing is left in tmp/;
 * - a commit that fails (no recipient) is reported with -1, an error and
 *   the ID, and leaves nothing;
 * - freeing the committer with commits not yet reaped waits for them and
 *   reaps each once.
 */
#include "config.h"
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "compat/compat.h"
#include "smtp/smtp_queue.h"
#include "tap.h"

#define NMSG	200

static char base[256];
static unsigned int qcount;

struct seen {
	unsigned int calls;		/* reap callbacks */
	unsigned int ok, failed;
	unsigned int dup;		/* a context reaped twice */
	unsigned int wrong_id;		/* the ID differs from begin's */
	unsigned char done[NMSG + 1];
	char ids[NMSG + 1][SMTP_QUEUE_ID_MAX];
	char last_error[512];
};

static struct seen seen;

static void
reaped(void *ctx, int result, const char *id, const char *error)
{
	unsigned int i = (unsigned int)(uintptr_t)ctx;

	seen.calls++;
	if (i > NMSG)
		return;
	if (seen.done[i]++)
		seen.dup++;
	if (strcmp(seen.ids[i], id) != 0)
		seen.wrong_id++;
	if (result == 0 && error == NULL)
		seen.ok++;
	else {
		seen.failed++;
		strlcpy(seen.last_error, error != NULL ? error : "(none)",
		    sizeof(seen.last_error));
	}
}

static struct smtp_queue *
new_queue(char *path, size_t size)
{
	struct smtp_queue *q;
	const char *error;

	snprintf(path, size, "%s/q%u", base, qcount++);
	if (smtp_queue_open(path, &q, &error) < 0)
		bail("open %s: %s", path, error);
	return q;
}

static unsigned int
count_dir(const char *qdir, const char *sub)
{
	char path[512];
	struct dirent *de;
	unsigned int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/%s", qdir, sub);
	if ((d = opendir(path)) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Message i (1..NMSG): begun, some content, one recipient (none when
 * norcpt, so that its commit fails). */
static struct smtp_queue_msg *
make_msg(struct smtp_queue *q, unsigned int i, bool norcpt)
{
	struct smtp_queue_msg *msg;
	const char *error;
	char text[64], rcpt[64];

	if (smtp_queue_begin(q, "sender@example.org", 10, &msg, &error) < 0)
		bail("begin: %s", error);
	strlcpy(seen.ids[i], smtp_queue_msg_id(msg), SMTP_QUEUE_ID_MAX);
	snprintf(text, sizeof(text), "Subject: %u\r\n\r\nbody\r\n", i);
	if (smtp_queue_write(msg, (const unsigned char *)text, strlen(text),
	    &error) < 0)
		bail("write: %s", error);
	snprintf(rcpt, sizeof(rcpt), "r%u@example.net", i);
	if (!norcpt && smtp_queue_add_rcpt(msg, rcpt, NULL, 0, &error) < 0)
		bail("add_rcpt: %s", error);
	return msg;
}

static void
test_limits(void)
{
	struct smtp_queue_committer *c = NULL;
	const char *error;

	is_int(smtp_queue_committer_new(0, &c, &error), -1,
	    "0 threads refused");
	ok(c == NULL && strstr(error, "commit threads") != NULL,
	    "  with a reason: %s", error);
	is_int(smtp_queue_committer_new(SMTP_QUEUE_COMMIT_THREADS_MAX + 1,
	    &c, &error), -1, "MAX+1 threads refused");
	is_int(smtp_queue_committer_new(SMTP_QUEUE_COMMIT_THREADS_MAX, &c,
	    &error), 0, "MAX threads accepted");
	is_int((int)smtp_queue_committer_outstanding(c), 0,
	    "  nothing outstanding");
	smtp_queue_committer_free(&c, reaped);
	ok(c == NULL, "  freed, pointer cleared");
	is_int(smtp_queue_committer_new(1, &c, &error), 0,
	    "1 thread accepted");
	smtp_queue_committer_free(&c, reaped);
	smtp_queue_committer_free(&c, reaped);	/* NULL is fine */
	is_int((int)seen.calls, 0, "  no callback without commits");
}

/* Wait on the descriptor and reap until every message came back. */
static unsigned int
reap_all(struct smtp_queue_committer *c, unsigned int want)
{
	struct pollfd pfd;
	unsigned int got = 0, rounds = 0;

	pfd.fd = smtp_queue_committer_fd(c);
	pfd.events = POLLIN;
	while (got < want && rounds++ < 10000) {
		if (poll(&pfd, 1, 10000) <= 0)
			break;
		got += smtp_queue_commit_reap(c, reaped);
	}
	return got;
}

static void
test_many(unsigned int threads)
{
	struct smtp_queue_committer *c;
	struct smtp_queue_msg *msg;
	struct smtp_queue_env *env;
	struct smtp_queue *q;
	const char *error;
	char qdir[512], rcpt[64];
	unsigned int i, loaded = 0;

	memset(&seen, 0, sizeof(seen));
	q = new_queue(qdir, sizeof(qdir));
	if (smtp_queue_committer_new(threads, &c, &error) < 0)
		bail("committer: %s", error);
	for (i = 1; i <= NMSG; i++) {
		msg = make_msg(q, i, false);
		smtp_queue_commit_submit(c, &msg, (void *)(uintptr_t)i);
		if (msg != NULL)
			bail("submit did not take the message");
	}
	is_int((int)reap_all(c, NMSG), NMSG,
	    "%u threads: %u commits reaped", threads, NMSG);
	is_int((int)seen.ok, NMSG, "  each succeeded");
	is_int((int)(seen.dup + seen.wrong_id + seen.failed), 0,
	    "  each once, with its context and ID");
	is_int((int)smtp_queue_committer_outstanding(c), 0,
	    "  nothing outstanding");
	is_int((int)smtp_queue_commit_reap(c, reaped), 0,
	    "  a reap now finds nothing");
	for (i = 1; i <= NMSG; i++) {
		snprintf(rcpt, sizeof(rcpt), "r%u@example.net", i);
		if (smtp_queue_load(q, seen.ids[i], 0, &env, &error) == 1 &&
		    env->rcpt_count == 1 &&
		    strcmp(env->rcpts[0].addr, rcpt) == 0)
			loaded++;
		smtp_queue_env_free(&env);
	}
	is_int((int)loaded, NMSG, "  every envelope loads, its recipient");
	is_int((int)count_dir(qdir, "data"), NMSG, "  every content in data/");
	is_int((int)count_dir(qdir, "tmp"), 0, "  nothing left in tmp/");
	smtp_queue_committer_free(&c, reaped);
	is_int((int)seen.calls, NMSG, "  free reaps nothing more");
	smtp_queue_close(&q);
}

static void
test_failure_and_free(void)
{
	struct smtp_queue_committer *c;
	struct smtp_queue_msg *msg;
	struct smtp_queue *q;
	const char *error;
	char qdir[512];
	unsigned int i;

	memset(&seen, 0, sizeof(seen));
	q = new_queue(qdir, sizeof(qdir));
	if (smtp_queue_committer_new(4, &c, &error) < 0)
		bail("committer: %s", error);
	msg = make_msg(q, 1, true);
	smtp_queue_commit_submit(c, &msg, (void *)(uintptr_t)1);
	is_int((int)reap_all(c, 1), 1, "a commit without recipients reaped");
	is_int((int)seen.failed, 1, "  as failed");
	ok(strstr(seen.last_error, "no recipients") != NULL,
	    "  with the reason: %s", seen.last_error);
	is_int((int)seen.wrong_id, 0, "  and its ID");
	is_int((int)(count_dir(qdir, "tmp") + count_dir(qdir, "data") +
	    count_dir(qdir, "env")), 0, "  nothing left of it");

	memset(&seen, 0, sizeof(seen));
	for (i = 1; i <= 50; i++) {
		msg = make_msg(q, i, false);
		smtp_queue_commit_submit(c, &msg, (void *)(uintptr_t)i);
	}
	ok(smtp_queue_committer_outstanding(c) == 50,
	    "50 submitted, none reaped yet");
	smtp_queue_committer_free(&c, reaped);
	is_int((int)seen.calls, 50, "free waits for them and reaps each");
	is_int((int)seen.ok, 50, "  all committed");
	is_int((int)seen.dup, 0, "  each once");
	is_int((int)count_dir(qdir, "env"), 50, "  50 envelopes in env/");
	smtp_queue_close(&q);
}

int
main(void)
{
	char cmd[300];

	snprintf(base, sizeof(base), "/tmp/loft-sqc.%ld", (long)getpid());
	if (mkdir(base, 0700) < 0)
		bail("mkdir %s: %s", base, strerror(errno));
	test_limits();
	test_many(1);
	test_many(8);
	test_failure_and_free();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	if (system(cmd) != 0)
		diag("could not remove %s", base);
	done_testing();
}
