/*
 * notify.h: wake a session when a mail folder changes on disk, without
 * polling: inotify(7) on the process's ioloop. For IMAP IDLE and for new
 * mail while a session is open: a delivery by loft-deliver, procmail or
 * the SMTP side renames a file into a Maildir's new/, or appends to an
 * mbox, and the sessions watching that folder are called within one loop
 * iteration.
 *
 * One inotify instance per process (struct notify); each watched
 * directory is one inotify watch however many sessions watch it (the
 * kernel's max_user_watches is per user, and an ISP's mail process serves
 * many sessions of few folders). A callback says only "something
 * changed": the session syncs the folder (store_sync) to learn what.
 * Bursts are not coalesced here: every read of the inotify descriptor
 * calls each interested watcher at most once.
 */
#ifndef LOFT_NOTIFY_H
#define LOFT_NOTIFY_H

struct ioloop;
struct notify;
struct notify_watch;

/* NOTIFY_READ_MAX: event bytes read per wake-up (then the loop comes
 * back for the rest: level-triggered). */
#define NOTIFY_READ_MAX	(16 * 1024)

/* notify_new: an inotify instance on loop. Returns 0 and *n_r, or -1
 * with *error_r (inotify_init1 failed: out of instances). */
int notify_new(struct ioloop *loop, struct notify **n_r,
    const char **error_r);
/* notify_free: every watch must have been removed (a leftover is a bug in
 * its owner: logged, then freed). *n becomes NULL; NULL is fine. */
void notify_free(struct notify **n);

/*
 * notify_add: call cb(ctx) after changes in directory dir: a file created,
 * moved in or out, deleted, written and closed, modified, or its
 * attributes changed; with name non-NULL, only changes to that entry of
 * dir (an mbox file: watch its directory, so that a rewrite renamed into
 * place is seen too). Returns 0 and *w_r, or -1 with *error_r (static
 * text): dir missing or not a directory, no permission, out of watches
 * (the kernel's fs.inotify.max_user_watches).
 */
int notify_add(struct notify *n, const char *dir, const char *name,
    void (*cb)(void *ctx), void *ctx, struct notify_watch **w_r,
    const char **error_r);
/* notify_remove: stop calling; *w becomes NULL; NULL is fine. Safe inside
 * any notify callback, including its own. */
void notify_remove(struct notify_watch **w);

#endif
