/*
 * Unit tests for lib/notify.c: changes in a watched directory reach the
 * watchers from the loop (file created, renamed in, written, deleted),
 * a named watch sees only its entry (an mbox rewritten by rename too),
 * several watchers share one inotify watch, removal inside a callback,
 * a vanished directory, errors. Timers only bound the runs.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compat/compat.h"
#include "ioloop.h"
#include "notify.h"
#include "tap.h"

static struct ioloop *loop;
static char top[64];

struct counter {
	int calls;
	struct notify_watch **self;	/* remove on the first call */
};

static void
count_cb(void *ctx)
{
	struct counter *c = ctx;

	c->calls++;
	if (c->self != NULL)
		notify_remove(c->self);
}

static void
stop_cb(void *ctx)
{
	(void)ctx;
	ioloop_stop(loop);
}

/* Run the loop for a while: long enough for inotify, bounded. */
static void
spin(void)
{
	struct timeout *t = timeout_add(loop, 100, false, stop_cb, NULL);

	ioloop_run(loop);
	timeout_remove(&t);
}

static void
put(const char *name, const char *text)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", top, name);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	if (fd < 0 || write(fd, text, strlen(text)) < 0)
		bail("write %s: %s", path, strerror(errno));
	close(fd);
}

/* Watches of the process's inotify descriptors, from /proc. */
static int
watches(void)
{
	char line[512];
	FILE *f;
	int n = 0, fd;

	for (fd = 3; fd < 64; fd++) {
		char path[64];

		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		while (fgets(line, sizeof(line), f) != NULL)
			n += strncmp(line, "inotify wd:", 11) == 0;
		fclose(f);
	}
	return n;
}

int
main(void)
{
	struct counter any = { 0 }, any2 = { 0 }, mbox = { 0 }, once = { 0 };
	struct notify_watch *w_any, *w_any2, *w_mbox, *w_once, *w;
	struct notify *n;
	const char *error;
	char from[256], to[256];
	int ret;

	strlcpy(top, "/tmp/notify-t.XXXXXX", sizeof(top));
	if (mkdtemp(top) == NULL)
		bail("mkdtemp");
	loop = ioloop_new();
	is_int(notify_new(loop, &n, &error), 0, "notify_new");

	is_int(notify_add(n, top, NULL, count_cb, &any, &w_any, &error), 0,
	    "watch the directory");
	is_int(notify_add(n, top, NULL, count_cb, &any2, &w_any2, &error), 0,
	    "a second watcher of the same directory");
	is_int(notify_add(n, top, "mbox", count_cb, &mbox, &w_mbox, &error),
	    0, "a watcher of one entry");
	is_int(watches(), 1, "three watchers, one inotify watch");

	put("msg1", "Subject: x\n\nbody\n");
	spin();
	ok(any.calls >= 1 && any2.calls >= 1, "a new file wakes both "
	    "directory watchers (%d, %d)", any.calls, any2.calls);
	is_int(mbox.calls, 0, "not the watcher of another entry");

	any.calls = any2.calls = 0;
	put("mbox", "From a@b Thu Jan  1 00:00:00 1970\n\nhi\n");
	spin();
	ok(mbox.calls >= 1, "writing the mbox wakes its watcher");
	ok(any.calls >= 1, "and the directory watchers");

	/* A rewrite renamed over the mbox. */
	mbox.calls = 0;
	put("mbox.tmp", "rewritten\n");
	snprintf(from, sizeof(from), "%s/mbox.tmp", top);
	snprintf(to, sizeof(to), "%s/mbox", top);
	if (rename(from, to) < 0)
		bail("rename");
	spin();
	ok(mbox.calls >= 1, "an mbox replaced by rename wakes its watcher");

	/* Removal inside the callback. */
	once.self = &w_once;
	is_int(notify_add(n, top, NULL, count_cb, &once, &w_once, &error), 0,
	    "a watcher that removes itself");
	put("msg2", "x\n");
	spin();
	put("msg3", "x\n");
	spin();
	is_int(once.calls, 1, "called once, then removed from its callback");
	ok(w_once == NULL, "its pointer cleared");

	notify_remove(&w_any2);
	notify_remove(&w_mbox);
	is_int(watches(), 1, "one watcher left: the watch stays");
	any.calls = 0;
	snprintf(from, sizeof(from), "%s/msg1", top);
	unlink(from);
	spin();
	ok(any.calls >= 1, "a deleted file wakes the watcher");
	notify_remove(&w_any);
	is_int(watches(), 0, "last watcher gone: no inotify watch left");

	error = "";
	ret = notify_add(n, "/nonexistent/dir", NULL, count_cb, &any, &w,
	    &error);
	ok(ret < 0 && strstr(error, "/nonexistent/dir") != NULL,
	    "a missing directory is an error naming it (%s)", error);
	snprintf(from, sizeof(from), "%s/msg2", top);
	ok(notify_add(n, from, NULL, count_cb, &any, &w, &error) < 0,
	    "a file is not a directory");

	/* The directory itself goes away. */
	snprintf(to, sizeof(to), "%s/sub", top);
	if (mkdir(to, 0700) < 0)
		bail("mkdir");
	any.calls = 0;
	is_int(notify_add(n, to, NULL, count_cb, &any, &w, &error), 0,
	    "watch a subdirectory");
	rmdir(to);
	spin();
	ok(any.calls >= 1, "its removal wakes the watcher");
	notify_remove(&w);

	notify_free(&n);
	ok(n == NULL, "notify_free");
	ioloop_free(&loop);
	snprintf(from, sizeof(from), "rm -rf %s", top);
	if (system(from) != 0)
		diag("cleanup failed");
	return done_testing();
}
