/*
 * mbox_rewrite.h: replace an mbox by a copy of itself without some of
 * its messages, crash-safely: the copy is a new file beside the mbox and a
 * rename() puts it in place, so after a crash at any point the path names
 * either the old file or the complete new one, never a mix.
 */
#ifndef LOFT_MBOX_REWRITE_H
#define LOFT_MBOX_REWRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Infix of the temporary file: DIR/.BASE.loft-rewrite.PID */
#define MBOX_REWRITE_INFIX	".loft-rewrite."

/* A byte range of the old file: [offset, offset + len). */
struct mbox_rewrite_range {
	uint64_t offset;
	uint64_t len;
};

/*
 * mbox_rewrite: replace the mbox at path, open as fd and locked by the
 * caller (lock.h), whose whole content is map[0..len), by a copy of it
 * without the byte ranges drop[0..ndrop), which must be sorted by offset,
 * must not overlap and must lie inside len (anything else: -1, EINVAL,
 * nothing done). Every other byte is copied as it is.
 * The copy is written to DIR/.BASE.loft-rewrite.PID (a leftover of that
 * name, from a crashed earlier run of a process with our pid, is removed
 * first), created with O_EXCL and given the permission bits, owner and
 * group of fd. Before the rename it is locked with a fcntl write lock
 * (and flock if lock_methods has LOCK_M_FLOCK), so that a process that
 * opens path after the rename waits for the caller as it would have for
 * the old file. If do_fsync, it is fsynced before the rename (the commit
 * point) and the directory after it.
 * Returns 0 with *new_fd_r: the new file, open read-write and locked; the
 * caller finishes its work (an index update), then closes it (which drops
 * those locks) and then releases its own lock on fd. Returns -1 with
 * *error_r (static text, valid until the next call) and errno kept: path
 * is untouched and the temporary file removed. Once the rename is done
 * the result is 0: a failed directory fsync after it is only logged (a
 * crash may then bring back the old file, which is still whole).
 */
int mbox_rewrite(int fd, const char *path, const unsigned char *map,
    size_t len, const struct mbox_rewrite_range *drop, size_t ndrop,
    unsigned lock_methods, bool do_fsync, int *new_fd_r,
    const char **error_r);

/* mbox_rewrite_temp_path: the temporary name mbox_rewrite uses for path
 * in this process, into out (size outsize). 0, or -1 if it does not fit. */
int mbox_rewrite_temp_path(const char *path, char *out, size_t outsize);

#endif
