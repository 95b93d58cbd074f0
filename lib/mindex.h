/*
 * mindex.h: the per-user mail index, one LMDB environment per user.
 *
 * The index is derived data: the mail files are the truth, and everything
 * here can be rebuilt from them (see store.h). It exists so that SELECT,
 * STATUS, UIDL, LIST and the common FETCH items never open a message.
 *
 * LMDB contract (lmdb.h "Caveats"), which every caller must keep:
 *  - open the environment in the process that uses it, after fork() and
 *    after the uid switch; never share a struct mindex across fork();
 *  - one struct mindex per process per user; one transaction at a time;
 *  - never hold a read transaction across a network wait: begin, read what
 *    is needed into memory, end;
 *  - write transactions are short; LMDB serialises writers across
 *    processes, so a long one stalls every delivery to that user.
 *
 * Named databases (keys are big-endian so that byte order is numeric order;
 * numbers inside values are little-endian):
 *   meta      "version", "quota" (bytes, messages), "uidvalidity_last",
 *             "folder_id_last"
 *   folders   folder name (UTF-8, "INBOX" for the inbox) -> mindex_folder
 *   msgs      folder id (4) + uid (4)                      -> message record
 *   locs      folder id (4) + storage key (maildir base name) -> uid (4)
 *   expunged  folder id (4) + uid (4)                      -> modseq (8)
 *   brief     folder id (4) + uid (4) -> flags, cache flags, vsize, modseq
 *             (24 bytes): what a POP3 snapshot or an IMAP view needs of
 *             every message, kept beside the full record (some 900 bytes
 *             with the header cache and MIME tree) so that listing 100,000
 *             messages reads 2 MB instead of 90 MB
 *
 * A message record is a fixed little header followed by four variable
 * fields (location, keywords, cached header block, serialized MIME tree);
 * the layout is private to mindex.c and versioned.
 *
 * Errors: calls with an error_r argument set it; the others return -1 and
 * leave the text for mindex_last_error(). Text is static, valid until the
 * next mindex call.
 */
#ifndef LOFT_MINDEX_H
#define LOFT_MINDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Returned by any write call when the map is full: the caller aborts the
 * transaction (mindex_abort grows the map) and runs it again from the
 * start. mindex_write() does this loop for you. */
#define MINDEX_EFULL (-2)

/* Longest folder name and storage key, bytes (LMDB's default maximum key
 * is 511; a locs key is the 4-byte folder id plus the storage key). */
#define MINDEX_KEY_MAX		400
/* Longest variable field of a message record, bytes. */
#define MINDEX_FIELD_MAX	(16u * 1024u * 1024u)
/* Used when the options leave a size 0. */
#define MINDEX_MAP_SIZE_DEFAULT		(1024u * 1024u)
#define MINDEX_MAX_MAP_SIZE_DEFAULT	(4096ull * 1024u * 1024u)

/* System flags, kept as bits in the record. */
#define MINDEX_F_SEEN		0x01u
#define MINDEX_F_ANSWERED	0x02u
#define MINDEX_F_FLAGGED	0x04u
#define MINDEX_F_DELETED	0x08u
#define MINDEX_F_DRAFT		0x10u
#define MINDEX_F_FORWARDED	0x20u	/* $Forwarded; Maildir "P" */

/* Cache flags: HEADERS_PARTIAL means some header field was too large to
 * cache, so a field missing from `headers` may still be in the message. */
#define MINDEX_C_HEADERS_PARTIAL	0x01u
/* NO_FINAL_LF: the message does not end with a line end, so a POP3 RETR,
 * which must end its last line before the ".", sends vsize + 2 bytes. */
#define MINDEX_C_NO_FINAL_LF		0x02u
/* UNPARSED: a Maildir file adopted from its name alone, unread: psize
 * comes from the name's ",S=" (or a stat), vsize is psize, internal_date
 * the time in the name, and the header and MIME fields are empty, until
 * store_complete() reads the file and rewrites the record. */
#define MINDEX_C_UNPARSED		0x04u
/* SIZED: UNPARSED, but psize, vsize and NO_FINAL_LF are exact: the file
 * was read to count its line ends (store_complete_sizes), not parsed. */
#define MINDEX_C_SIZED			0x08u

struct mindex;
struct mindex_txn;

/* Sizes are rounded up to whole pages, and map_size to at least 64 KiB;
 * 0 means the default, and a max_map_size below map_size is raised to
 * it. */
struct mindex_options {
	uint64_t map_size;	/* initial map size, bytes (index_map_size);
				   a larger size already in the file wins */
	uint64_t max_map_size;	/* growth stops here (index_max_size) */
	bool nosync;		/* mail_fsync = no: MDB_NOSYNC */
};

/* What the last sync saw of a storage object (a Maildir new/ or cur/
 * directory, or an mbox file). checked_ns is when that look began; the
 * stamp is trusted only if the object had been unchanged for at least a
 * second by then, because file system timestamps are coarse. */
struct mindex_stamp {
	uint64_t dev;
	uint64_t ino;
	uint64_t size;
	int64_t mtime_ns;
	int64_t checked_ns;
};

struct mindex_folder {
	uint32_t id;		/* key prefix of its messages; never reused */
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint32_t count;		/* messages */
	uint32_t unseen;	/* messages without \Seen */
	uint32_t deleted;	/* messages with \Deleted */
	uint64_t vsize;		/* sum of vsize (STATUS SIZE) */
	uint64_t psize;		/* sum of psize (quota) */
	uint64_t highestmodseq;
	struct mindex_stamp stamp[2];	/* maildir: new/, cur/; mbox: [0] */
	uint64_t sync_offset;	/* mbox: end of the last indexed message */
	uint32_t unparsed;	/* messages with MINDEX_C_UNPARSED */
};

struct mindex_msg {
	uint32_t uid;
	uint32_t flags;		/* MINDEX_F_* */
	uint32_t cache_flags;	/* MINDEX_C_*: what the cached fields lack */
	uint64_t modseq;
	int64_t internal_date;	/* seconds since the epoch */
	int64_t save_date;	/* when it entered this folder */
	uint64_t psize;		/* bytes in storage (mbox: escaped, no From_) */
	uint64_t vsize;		/* RFC822.SIZE: unescaped, bare LF as CRLF */
	uint64_t fingerprint;	/* content hash, to re-find mbox messages */
	uint64_t mbox_offset;	/* mbox: offset of the From_ line */
	uint64_t mbox_data_offset; /* mbox: offset of the first header */
	uint8_t guid[16];	/* stable message GUID; zero = make one */
	/* Variable fields. From mindex_msg_get() and mindex_msg_iter() they
	 * point into the map and live until the transaction ends or, in a
	 * write transaction, until the next change made in it; for
	 * mindex_msg_add/update they are the caller's (and may point into the
	 * map: they are copied before anything is written). */
	/* location: text without NUL bytes; as returned it is NUL-terminated
	 * (location_len excludes the NUL). */
	const char *location;	/* maildir: "new/NAME" or "cur/NAME:2,FS" */
	size_t location_len;
	const char *keywords;	/* keyword names, each NUL-terminated
				   (so empty, or ending in NUL) */
	size_t keywords_len;
	const unsigned char *headers;	/* cached raw header lines */
	size_t headers_len;
	const unsigned char *mime;	/* serialized MIME tree (mime.h) */
	size_t mime_len;
};

/* mindex_open: open (creating, mode 0700; the parent must exist) the
 * environment in dir, clear stale reader slots and adopt a map another
 * process grew. A directory this process has open already shares that
 * environment (LMDB allows one per process): the last close closes it. Holds flock(LOCK_SH) on dir/loft.lock until close (it
 * waits while mindex_compact runs). opts may be NULL (defaults). Fails on
 * an index written by a newer version. Returns 0, or -1 with *ix_r NULL
 * and *error_r (static text, valid until the next mindex call). */
int mindex_open(const char *dir, const struct mindex_options *opts,
    struct mindex **ix_r, const char **error_r);
/* mindex_close: aborts a transaction left open; sets *ix to NULL. */
void mindex_close(struct mindex **ix);
/* mindex_last_error: the text of the last -1 from a call that has no
 * error_r argument. */
const char *mindex_last_error(void);

/* Transactions. A write transaction first grows the map when less than a
 * quarter of it is free, so MINDEX_EFULL is rare. One transaction at a
 * time per struct mindex: a second begin fails. Write calls in a read
 * transaction fail. After a call returned MINDEX_EFULL every further call
 * in that transaction returns it too: only abort is left. When the map is
 * already at max_map_size, a full map is an error ("index full"), -1. */
int mindex_begin(struct mindex *ix, bool write, struct mindex_txn **txn_r,
    const char **error_r);
/* commit: always ends the transaction and sets *txn to NULL. Returns 0
 * (durable unless nosync), -1, or MINDEX_EFULL (the map has been grown:
 * run the transaction again). */
int mindex_commit(struct mindex_txn **txn, const char **error_r);
/* mindex_set_lazy_meta: with on, this handle's commits sync their data
 * pages but write the meta page without waiting for it (MDB_NOMETASYNC):
 * one synchronous write a commit instead of two. A system crash (not a
 * process crash) may then undo the last such commit, never more and
 * never leaving the index inconsistent: the next commit of any handle
 * makes it durable. For deliveries only, whose messages are fsynced in
 * storage first, so the next sync adopts an undone one again
 * (doc/design.md, "Crash-safety contract"). Nothing with nosync. */
void mindex_set_lazy_meta(struct mindex *ix, bool on);
/* abort: end it without a trace; grows the map if it had become full.
 * Sets *txn to NULL; NULL is ignored. */
void mindex_abort(struct mindex_txn **txn);
/* mindex_write: run fn in a write transaction and commit; on MINDEX_EFULL
 * from fn or the commit, grow the map and run fn again (fn must therefore
 * make no change outside the transaction that a second run would repeat
 * wrongly). fn returns 0, -1 (abort; *error_r set by fn, or left NULL for
 * mindex_last_error()) or MINDEX_EFULL. Returns 0 or -1. */
int mindex_write(struct mindex *ix,
    int (*fn)(struct mindex_txn *txn, void *ctx, const char **error_r),
    void *ctx, const char **error_r);

/* Folders. Names are 1..MINDEX_KEY_MAX bytes. Write calls return 0, -1
 * or MINDEX_EFULL.
 * get: 1 found, 0 not found, -1 error. */
int mindex_folder_get(struct mindex_txn *txn, const char *name,
    struct mindex_folder *f_r);
/* create: new id, uidvalidity (0: one larger than any given before and at
 * least the current time), uidnext 1, highestmodseq 0, the rest 0.
 * Fails if it exists ("folder exists"). */
int mindex_folder_create(struct mindex_txn *txn, const char *name,
    uint32_t uidvalidity, struct mindex_folder *f_r);
/* put: store f (after message changes, which only update it in memory). */
int mindex_folder_put(struct mindex_txn *txn, const char *name,
    const struct mindex_folder *f);
/* delete: the folder, its messages, locs and expunge records; the quota
 * usage drops by its messages. 0 also when there was no such folder. */
int mindex_folder_delete(struct mindex_txn *txn, const char *name);
/* iter: every folder in name order; cb returns 0 go on, 1 stop, -1 error
 * (then iter returns -1). */
int mindex_folder_iter(struct mindex_txn *txn,
    int (*cb)(const char *name, const struct mindex_folder *f, void *ctx),
    void *ctx);

/* Messages. Write calls return 0, -1 or MINDEX_EFULL, and change f only
 * when they succeed. A record that does not decode is an error ("corrupt
 * index record"), never a crash.
 * get: 1 found, 0 not found, -1 error. */
int mindex_msg_get(struct mindex_txn *txn, uint32_t folder_id, uint32_t uid,
    struct mindex_msg *m_r);
/* add: store a new message with m->uid (which must be >= f->uidnext; then
 * f->uidnext = uid + 1), a new modseq and a GUID if m's is zero (both
 * written back into m); update f's counters and the user's quota usage.
 * An existing uid is never overwritten ("uid exists"). */
int mindex_msg_add(struct mindex_txn *txn, struct mindex_folder *f,
    struct mindex_msg *m);
/* update: replace the record of an existing uid (flags, keywords,
 * location, and every other field of m) with a new modseq (written back
 * into m), keeping f's counters and the quota usage right. A zero GUID
 * keeps the stored one. A uid not in the index is an error. */
int mindex_msg_update(struct mindex_txn *txn, struct mindex_folder *f,
    struct mindex_msg *m);
/* refresh: mindex_msg_update for what no client sees change (a parse of
 * the file filling in sizes, headers and MIME tree): the record keeps
 * its modseq (written back into m) and f's highestmodseq stays, so no
 * CONDSTORE client hears of it. Flags and keywords must be the stored
 * ones. */
int mindex_msg_refresh(struct mindex_txn *txn, struct mindex_folder *f,
    struct mindex_msg *m);
/* expunge: remove uid, record the expunge with a new modseq, update f's
 * counters and the quota usage. 0 also when the uid was not there. */
int mindex_msg_expunge(struct mindex_txn *txn, struct mindex_folder *f,
    uint32_t uid);
/* iter: messages of folder_id with uid >= first_uid in uid order. cb
 * returns 0 go on, 1 stop, -1 error (then iter returns -1; the error text
 * is the callback's). Returns 0 or -1. */
/* The brief record of a message (see "brief" above). */
struct mindex_brief {
	uint32_t uid;
	uint32_t flags;		/* MINDEX_F_* */
	uint32_t cache_flags;	/* MINDEX_C_* */
	uint64_t vsize;
	uint64_t modseq;
};
/* mindex_brief_iter: as mindex_msg_iter, over the brief records. */
int mindex_brief_iter(struct mindex_txn *txn, uint32_t folder_id,
    uint32_t first_uid,
    int (*cb)(const struct mindex_brief *b, void *ctx), void *ctx);
int mindex_msg_iter(struct mindex_txn *txn, uint32_t folder_id,
    uint32_t first_uid,
    int (*cb)(const struct mindex_msg *m, void *ctx), void *ctx);
/* expunged_iter: the expunge records of folder_id with uid >= first_uid in
 * uid order (QRESYNC), with the modseq of each expunge; cb as above. */
int mindex_expunged_iter(struct mindex_txn *txn, uint32_t folder_id,
    uint32_t first_uid,
    int (*cb)(uint32_t uid, uint64_t modseq, void *ctx), void *ctx);

/* Storage keys (Maildir base names, without the ":2," part) -> uid. Keys
 * are 1..MINDEX_KEY_MAX bytes. get: 1 found, 0 not found, -1 error; put
 * replaces; delete returns 0 also when the key was not there. */
int mindex_loc_get(struct mindex_txn *txn, uint32_t folder_id,
    const char *key, size_t key_len, uint32_t *uid_r);
int mindex_loc_put(struct mindex_txn *txn, uint32_t folder_id,
    const char *key, size_t key_len, uint32_t uid);
int mindex_loc_delete(struct mindex_txn *txn, uint32_t folder_id,
    const char *key, size_t key_len);

/* Quota usage of the whole user (0, 0 in a new index). */
int mindex_quota_get(struct mindex_txn *txn, uint64_t *bytes_r,
    uint64_t *messages_r);
int mindex_quota_set(struct mindex_txn *txn, uint64_t bytes,
    uint64_t messages);

/* Maintenance. compact: write a compacted copy to dir.compact/ and rename
 * its data.mdb into place. Takes flock(LOCK_EX|LOCK_NB) on dir/loft.lock
 * itself and fails ("index in use") while any struct mindex, in this or
 * another process, has dir open; mindex_open waits while it runs.
 * stats: map size, bytes in use, reader slots in use (read transactions
 * open now, in any process, and slots of dead processes not yet cleared),
 * messages. */
int mindex_compact(const char *dir, const char **error_r);
struct mindex_stats {
	uint64_t map_size;
	uint64_t used;
	unsigned readers;
	uint64_t entries;	/* messages over all folders */
};
int mindex_stats(struct mindex *ix, struct mindex_stats *st_r,
    const char **error_r);

#endif
