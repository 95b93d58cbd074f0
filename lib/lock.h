/*
 * lock.h: mailbox locks that interoperate with procmail, mutt, Dovecot and
 * Postfix on Debian (policy 22.6: fcntl and dotlock; Postfix's
 * mailbox_delivery_lock = fcntl, dotlock).
 *
 * Order: fcntl, then flock, then the dotlock PATH.lock; release is the
 * reverse. Others take them in other orders (procmail: dotlock, then
 * fcntl), so a lock is never waited for while another is held: each
 * attempt waits up to delay_ms for the fcntl lock (in the kernel, while
 * holding nothing), then tries the others without blocking, and if one is
 * busy, drops what it holds, sleeps delay_ms and starts again (Dovecot
 * mbox-lock.c documents the deadlock that waiting would cause).
 *
 * Caveat of fcntl locks, which every caller must keep: they belong to the
 * process and vanish when ANY descriptor of the file is closed by it, so
 * while locked, do not open and close the mbox through another fd.
 */
#ifndef LOFT_LOCK_H
#define LOFT_LOCK_H

#include <stdbool.h>
#include <stdint.h>

#define LOCK_M_FCNTL	0x1
#define LOCK_M_DOTLOCK	0x2
#define LOCK_M_FLOCK	0x4

/* lock_mbox_acquire() result when a lock could not be had in time; the
 * caller defers the delivery (4.2.0). */
#define LOCK_TIMEOUT	(-2)

/* Defaults as loft.conf documents them. */
#define LOCK_DEF_ATTEMPTS	20
#define LOCK_DEF_DELAY_MS	500
#define LOCK_DEF_STALE_SECS	600	/* Postfix stale_lock_time is 500 */

struct lock_opts {
	unsigned methods;	/* LOCK_M_* bits, at least one */
	unsigned attempts;	/* rounds over all methods, 0 counts as 1 */
	unsigned delay_ms;	/* sleep between rounds */
	unsigned stale_secs;	/* older dotlock (mtime) removed; 0: never */
};

struct lock_mbox;

/*
 * lock_mbox_acquire: lock the mbox open as fd (for writing: fcntl's write
 * lock needs it) whose path is path. The dotlock is path with ".lock"
 * appended, made with the link() trick through a temporary file
 * "PATH.lock.HOST.PID.RANDOM" in the same directory, so that directory
 * must be writable by us: if it is not (/var/mail 2775 root:mail without
 * group mail), this fails with -1, errno EACCES, EPERM or EROFS and an
 * error saying so, and the caller decides whether to try again without
 * LOCK_M_DOTLOCK.
 * A dotlock whose mtime is more than stale_secs old is removed with a
 * warning in the log. After locking, path must still name the file open as
 * fd; if another program renamed or replaced it meanwhile, -1 with errno
 * ESTALE: reopen and try again.
 * Returns 0 with *lk_r set (free it with lock_mbox_release), -1 on error
 * (errno says which), or LOCK_TIMEOUT when some lock stayed busy for all
 * attempts; *error_r then names the busy lock. Nothing is held after a
 * failure.
 */
int lock_mbox_acquire(int fd, const char *path, const struct lock_opts *o,
    struct lock_mbox **lk_r, const char **error_r);

/* lock_mbox_recovered: true if acquiring broke the dotlock of a loft
 * process on this host that died holding it (it cannot be writing any
 * more); *size_r is the mbox size that process noted before it wrote, so
 * the caller, now holding every lock, can cut off a message it half-wrote. */
bool lock_mbox_recovered(const struct lock_mbox *lk, uint64_t *size_r);

/* lock_mbox_release: release in the reverse order: the dotlock (only if it
 * is still the file we created), flock, fcntl. Frees *lk and sets it NULL;
 * a NULL *lk is ignored. Does not close the fd. */
void lock_mbox_release(struct lock_mbox **lk);

/* lock_methods_parse: NULL-terminated list items such as {"fcntl",
 * "dotlock", NULL} -> LOCK_M_* bits in *methods_r. The order of the items
 * does not matter (see above). 0, or -1 for an unknown item or an empty
 * list, with *error_r naming it. */
int lock_methods_parse(char **items, unsigned *methods_r,
    const char **error_r);

#endif
