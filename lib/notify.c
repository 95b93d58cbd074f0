/*
 * notify.c: folder change notification with inotify on the ioloop (see
 * notify.h). Trusts the kernel's event records only as far as their
 * stated lengths fit in what was read.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "ioloop.h"
#include "log.h"
#include "xmalloc.h"
#include "notify.h"

#define NOTIFY_MASK	(IN_CREATE | IN_DELETE | IN_MOVED_FROM | \
			 IN_MOVED_TO | IN_CLOSE_WRITE | IN_MODIFY | \
			 IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | \
			 IN_ONLYDIR)

/* One inotify watch: a directory and everyone watching it. */
struct notify_dir {
	struct notify_dir *next;
	struct notify *n;
	int wd;
	struct notify_watch *watchers;
};

struct notify_watch {
	struct notify_watch *next;
	struct notify_dir *dir;
	char *name;			/* owned, or NULL: any entry */
	void (*cb)(void *ctx);
	void *ctx;
	bool pending, removed;
};

struct notify {
	struct ioloop *loop;
	int fd;
	struct io *io;			/* owned */
	struct notify_dir *dirs;
	bool dispatching;
};

static char notify_errbuf[512];

static struct notify_dir *
notify_dir_find(struct notify *n, int wd)
{
	for (struct notify_dir *d = n->dirs; d != NULL; d = d->next)
		if (d->wd == wd)
			return d;
	return NULL;
}

/* Mark the watchers of d that care about an event on name (NULL: the
 * directory itself, or unknown: everyone). */
static void
notify_mark(struct notify_dir *d, const char *name)
{
	for (struct notify_watch *w = d->watchers; w != NULL; w = w->next)
		if (w->name == NULL || name == NULL ||
		    strcmp(w->name, name) == 0)
			w->pending = true;
}

static void
notify_mark_all(struct notify *n)
{
	for (struct notify_dir *d = n->dirs; d != NULL; d = d->next)
		notify_mark(d, NULL);
}

/* Free the watchers removed during a dispatch, and directories nobody
 * watches any more. */
static void
notify_sweep(struct notify *n)
{
	struct notify_dir **dp = &n->dirs, *d;
	struct notify_watch **wp, *w;

	while ((d = *dp) != NULL) {
		wp = &d->watchers;
		while ((w = *wp) != NULL) {
			if (!w->removed) {
				wp = &w->next;
				continue;
			}
			*wp = w->next;
			free(w->name);
			free(w);
		}
		if (d->watchers != NULL) {
			dp = &d->next;
			continue;
		}
		*dp = d->next;
		if (d->wd >= 0)
			(void)inotify_rm_watch(n->fd, d->wd);
		free(d);
	}
}

static void
notify_dispatch(struct notify *n)
{
	n->dispatching = true;
	for (struct notify_dir *d = n->dirs; d != NULL; d = d->next)
		for (struct notify_watch *w = d->watchers; w != NULL;
		    w = w->next) {
			if (!w->pending || w->removed)
				continue;
			w->pending = false;
			w->cb(w->ctx);
		}
	n->dispatching = false;
	notify_sweep(n);
}

static void
notify_read(void *ctx)
{
	struct notify *n = ctx;
	unsigned char buf[NOTIFY_READ_MAX]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event *ev;
	struct notify_dir *d;
	ssize_t len;
	size_t off;

	len = read(n->fd, buf, sizeof(buf));
	if (len < 0) {
		if (errno != EAGAIN && errno != EINTR)
			log_error("notify: read: %s", strerror(errno));
		return;
	}
	for (off = 0; off + sizeof(*ev) <= (size_t)len;
	    off += sizeof(*ev) + ev->len) {
		ev = (const struct inotify_event *)(buf + off);
		if (ev->len > (size_t)len - off - sizeof(*ev))
			break;
		if ((ev->mask & IN_Q_OVERFLOW) != 0) {
			notify_mark_all(n);
			continue;
		}
		if ((d = notify_dir_find(n, ev->wd)) == NULL)
			continue;
		if ((ev->mask & IN_IGNORED) != 0) {
			/* The directory is gone: its watch with it. */
			d->wd = -1;
			notify_mark(d, NULL);
			continue;
		}
		notify_mark(d, ev->len > 0 && ev->name[0] != '\0' ?
		    ev->name : NULL);
	}
	notify_dispatch(n);
}

int
notify_new(struct ioloop *loop, struct notify **n_r, const char **error_r)
{
	struct notify *n;
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);

	if (fd < 0) {
		snprintf(notify_errbuf, sizeof(notify_errbuf),
		    "inotify_init1: %s", strerror(errno));
		*error_r = notify_errbuf;
		return -1;
	}
	n = xcalloc(1, sizeof(*n));
	n->loop = loop;
	n->fd = fd;
	n->io = io_add(loop, fd, IO_READ, notify_read, n);
	*n_r = n;
	return 0;
}

void
notify_free(struct notify **np)
{
	struct notify *n = *np;

	if (n == NULL)
		return;
	*np = NULL;
	for (struct notify_dir *d = n->dirs; d != NULL; d = d->next)
		for (struct notify_watch *w = d->watchers; w != NULL;
		    w = w->next)
			if (!w->removed) {
				log_warning("notify: a watch was left at free");
				w->removed = true;
			}
	notify_sweep(n);
	io_remove(&n->io);
	close(n->fd);
	free(n);
}

int
notify_add(struct notify *n, const char *dir, const char *name,
    void (*cb)(void *ctx), void *ctx, struct notify_watch **w_r,
    const char **error_r)
{
	struct notify_watch *w;
	struct notify_dir *d;
	int wd;

	wd = inotify_add_watch(n->fd, dir, NOTIFY_MASK);
	if (wd < 0) {
		snprintf(notify_errbuf, sizeof(notify_errbuf), "watch %s: %s%s",
		    dir, strerror(errno), errno == ENOSPC ?
		    " (fs.inotify.max_user_watches)" : "");
		*error_r = notify_errbuf;
		return -1;
	}
	/* The same directory gives the same watch: share it. */
	if ((d = notify_dir_find(n, wd)) == NULL) {
		d = xcalloc(1, sizeof(*d));
		d->n = n;
		d->wd = wd;
		d->next = n->dirs;
		n->dirs = d;
	}
	w = xcalloc(1, sizeof(*w));
	w->dir = d;
	w->name = name != NULL ? xstrdup(name) : NULL;
	w->cb = cb;
	w->ctx = ctx;
	w->next = d->watchers;
	d->watchers = w;
	*w_r = w;
	return 0;
}

void
notify_remove(struct notify_watch **wp)
{
	struct notify_watch *w = *wp;
	struct notify *n;

	if (w == NULL)
		return;
	*wp = NULL;
	n = w->dir->n;
	w->removed = true;
	if (!n->dispatching)
		notify_sweep(n);
}
