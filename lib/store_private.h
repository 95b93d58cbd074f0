/*
 * store_private.h: what store.c, store_maildir.c, store_mbox.c and
 * store_reindex.c share. Not for use outside lib/store*.c.
 */
#ifndef LOFT_STORE_PRIVATE_H
#define LOFT_STORE_PRIVATE_H

#include "lock.h"
#include "store.h"

/* How many new messages one write transaction indexes: keeps each LMDB
 * transaction (and the writer lock every delivery waits on) short. */
#define STORE_BATCH 256
/* How many files one write transaction adopts by name, or gives the sizes
 * their line ends were counted for (no file is read inside it, so a larger
 * batch still keeps the writer lock short). */
#define STORE_ADOPT_BATCH 4096

struct store {
	struct mailloc ml;
	struct mindex *ix;	/* owned */
	char *user;		/* owned copy of the user name */
	bool fsync;		/* mail_fsync */
	struct lock_opts lock;	/* mailbox_delivery_lock and friends */
	uint64_t quota_limit;	/* bytes, 0 = none */
	/* Reindex only: the old index, to keep mbox UIDs (borrowed). */
	struct mindex *old_ix;
};

/* What a reindex or a sync knows of a message from before. */
struct store_prev {
	uint32_t uid;
	uint32_t flags;
	uint64_t fingerprint;
	uint8_t guid[16];
	bool used;
};

/* store_open_index: store_open with the index in index_dir instead of
 * the one mail_location names (NULL: that one). */
int store_open_index(const struct user *u, const char *index_dir,
    struct store **st_r, const char **error_r);
/* store_error: format an error into the store's buffer (valid until the
 * next store_error) and return it, for *error_r. */
const char *store_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* store_folder_forget: drop folder from the index (its storage is gone). */
int store_folder_forget(struct store *st, const char *folder,
    const char **error_r);
int64_t store_now_ns(void);
/* store_stamp_of: fill a stamp from st (mtime in ns); checked_ns given. */
struct stat;
void store_stamp_of(const struct stat *sb, int64_t checked_ns,
    struct mindex_stamp *s_r);
/* store_stamp_settled: whether the object was old enough when the stamp
 * was taken that a later change must show in its mtime (a tenth of a
 * second; a second on file systems with whole-second times: store.c).
 * store_stamp_same: unchanged and settled. */
bool store_stamp_settled(const struct mindex_stamp *s);
bool store_stamp_same(const struct mindex_stamp *old,
    const struct mindex_stamp *now);
/* store_folder_ensure: get folder name in txn, creating it (with
 * uidvalidity if non-zero) when missing. 1 created, 0 existed, -1, EFULL. */
int store_folder_ensure(struct store *st, struct mindex_txn *txn,
    const char *name,
    uint32_t uidvalidity, struct mindex_folder *f_r, const char **error_r);
/* store_fill_msg: the index record of a parsed message. */
struct msg_info;
void store_fill_msg(struct mindex_msg *m, const struct msg_info *info,
    uint64_t psize, time_t internal_date);
/* store_prev_collect: the messages of folder (by name) in ix, or none. */
int store_prev_collect(struct mindex *ix, const char *folder,
    struct store_prev **prev_r, size_t *count_r, uint32_t *uidvalidity_r,
    uint32_t *uidnext_r, const char **error_r);

/* store_maildir_sync adopts new files unparsed (MINDEX_C_UNPARSED);
 * store_maildir_complete parses them, or with sizes only counts their
 * line ends (MINDEX_C_SIZED). */
int store_maildir_sync(struct store *st, const char *folder,
    const char *dir, bool force, bool *exists_r, const char **error_r);
int store_maildir_complete(struct store *st, const char *folder,
    const char *dir, bool sizes, const char **error_r);
/* store_maildir_expunged: drop the records of uids[n], whose files this
 * process has just unlinked, in one index transaction, as a sync does for
 * files it finds gone, without listing the folder. The stamps stay: the
 * directories changed, so the next sync lists them, and sees whatever
 * else changed meanwhile. A uid already gone from the index is skipped. */
int store_maildir_expunged(struct store *st, const char *folder,
    const char *dir, const uint32_t *uids, size_t n, const char **error_r);
enum store_result store_maildir_deliver(struct store *st, const char *dir,
    const struct store_delivery *d, struct store_delivered *out,
    const char **error_r);
/* For store_deliver_batch (store_append.c), which indexes Maildir
 * deliveries itself: store_maildir_guid, the GUID of the message at loc
 * ("new/NAME,U=n"), from its base name, as every Maildir record gets it;
 * store_maildir_uidfile_write, dir's loft-uidvalidity file (0 or -1), as
 * a delivery writes it when it creates the folder's record. */
void store_maildir_guid(const char *loc, uint8_t guid[16]);
int store_maildir_uidfile_write(const char *dir, uint32_t uidvalidity,
    uint32_t uidnext, bool do_fsync);
int store_mbox_sync(struct store *st, const char *folder, const char *path,
    bool force, bool *exists_r, const char **error_r);
enum store_result store_mbox_deliver(struct store *st, const char *path,
    const struct store_delivery *d, struct store_delivered *out,
    const char **error_r);

#endif
