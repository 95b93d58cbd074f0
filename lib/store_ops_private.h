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

/*
 * Keywords (store_flags.c), shared with store_append.c and
 * store_maildir.c.
 */
struct buf;
struct maildir_keywords;

/*
 * store_keywords_norm: check the keyword list kw (kw_len bytes, names
 * each NUL-terminated) and write it to out as the store keeps it
 * (sorted case-insensitively, each once); "$Forwarded" goes into *flags
 * as MINDEX_F_FORWARDED instead. STORE_OP_OK; CANNOT (a name that is not
 * valid, or kw not NUL-terminated) or LIMIT (more than
 * STORE_KEYWORDS_MAX names) with *error_r.
 */
enum store_op store_keywords_norm(const char *kw, size_t kw_len,
    struct buf *out, uint32_t *flags, const char **error_r);

/*
 * store_keywords_from_letters: the keywords of a Maildir file whose
 * keyword letters are letters (maildir_name.kw_letters), named through
 * map: the names the store takes, sorted, each once, appended to out (a
 * letter named "$Forwarded" sets MINDEX_F_FORWARDED in *flags instead).
 * Letters without a name, or with a name refused, give nothing.
 */
void store_keywords_from_letters(const struct maildir_keywords *map,
    uint32_t letters, struct buf *out, uint32_t *flags);

/*
 * store_keywords_fit: can the Maildir folder at dir take the keywords of
 * kw (normalised) on some message: are there letters for the names its
 * dovecot-keywords does not have yet? STORE_OP_OK, LIMIT, or TEMPFAIL
 * (the file cannot be read), with *error_r. Says nothing for sure (it
 * holds no lock), it only refuses early what would be refused later.
 */
enum store_op store_keywords_fit(const char *dir, const char *kw,
    size_t kw_len, const char **error_r);

#endif
