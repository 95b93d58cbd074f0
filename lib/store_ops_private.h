/*
 * store_ops_private.h: what the mailbox operations (store_folder.c,
 * store_flags.c, store_expunge.c, store_append.c, store_read.c) share.
 * Not for use outside lib/store*.c.
 */
#ifndef LOFT_STORE_OPS_PRIVATE_H
#define LOFT_STORE_OPS_PRIVATE_H

#include "lock.h"
#include "store_private.h"

/*
 * store_folder_resolve: store_folder_name, and the folder's directory
 * (Maildir) or file (mbox) into path (pathsize bytes). canon and path may
 * be NULL. STORE_OP_OK, or STORE_OP_BADNAME with *error_r.
 */
enum store_op store_folder_resolve(struct store *st, const char *name,
    char *canon, size_t canonsize, char *path, size_t pathsize,
    const char **error_r);

/*
 * store_read_lock_mbox: lock the mbox open as fd (read-write) at path as
 * deliveries do (lock.h), and if that broke the dotlock of a loft process
 * that died while appending, cut the file back to the size it noted, so
 * nobody reads half a message. 0 with *lk_r, -1 with *error_r (errno
 * ESTALE: path names another file now, reopen), or LOCK_TIMEOUT.
 */
int store_read_lock_mbox(const struct lock_opts *o, int fd,
    const char *path, struct lock_mbox **lk_r, const char **error_r);

/*
 * store_expunge_stamp_ok: does the folder record f describe the mbox
 * file whose fstat is sb (same file, size and mtime as its last sync or
 * delivery recorded)? Only then do its offsets fit the file.
 */
struct stat;
bool store_expunge_stamp_ok(const struct mindex_folder *f,
    const struct stat *sb);

#endif
