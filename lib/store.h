/*
 * store.h: a user's mail, storage and index together.
 *
 * The storage (Maildir++ or mbox files) is the truth; the LMDB index
 * (mindex.h) is derived from it and kept in step by store_sync(), which
 * every reader calls before it trusts the index. A sync compares what it
 * last saw of each folder (directory or file stamps) with what is on disk
 * now and reads only what changed: files another program dropped into
 * new/, flags a mail reader changed in a file name, an mbox appended to or
 * rewritten by mutt. UIDs survive all of that:
 *  - Maildir: a file loft delivered carries its UID in its name (",U=N");
 *    a file another program left is adopted under its own name, and its
 *    UID is kept in the index and in the folder's "loft-uidlist"; each
 *    folder keeps its UIDVALIDITY and the highest UID ever given in the
 *    file "loft-uidvalidity" beside new/ and cur/. A rebuild from nothing
 *    therefore keeps every UID.
 *  - mbox: UIDs live only in the index. A rebuild with the old index
 *    matches messages by content fingerprint and keeps their UIDs; a rebuild
 *    without it gives the folder a new UIDVALIDITY.
 */
#ifndef LOFT_STORE_H
#define LOFT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "mailloc.h"
#include "mindex.h"

struct user;

/* Outcome classes of a delivery; deliver.c maps them to sysexits codes
 * and enhanced status codes. */
enum store_result {
	STORE_OK = 0,
	STORE_TEMPFAIL,		/* 4.x.x: try again later, nothing written */
	STORE_DISKFULL,		/* 4.3.1: no space, nothing written */
	STORE_LOCKED,		/* 4.2.0: mailbox lock not had in time */
	STORE_OVERQUOTA,	/* 5.2.2 (or 4.2.2 with quota_full_tempfail) */
	STORE_PERMFAIL		/* 5.x.x: e.g. a folder name that is refused */
};

struct store;

/* store_open: the mail of user u, as its mail_location says: creates the
 * Maildir root (or the mbox directory) and opens the index. Must be called
 * after any fork and uid switch (LMDB). 0, or -1 with *error_r. */
int store_open(const struct user *u, struct store **st_r,
    const char **error_r);
void store_close(struct store **st);
const struct mailloc *store_location(const struct store *st);
/* store_quota: the user's usage as the index counts it (bytes of all
 * messages, and their number) and the limit deliveries enforce (bytes,
 * the user's quota or mailbox_size_limit; 0: none). 0, or -1. */
int store_quota(struct store *st, uint64_t *bytes_r, uint64_t *messages_r,
    uint64_t *limit_r, const char **error_r);
struct mindex *store_index(struct store *st);

/* store_folder_path: the directory (Maildir) or file (mbox) of folder.
 * 0, or -1 for a name that is refused (then *error_r says why). */
int store_folder_path(struct store *st, const char *folder, char *out,
    size_t outsize, const char **error_r);

/* store_sync: bring the index of folder in step with its storage (see
 * above); force: read everything even if the stamps say nothing changed.
 * A folder that exists in neither is not an error: *exists_r = false. */
int store_sync(struct store *st, const char *folder, bool force,
    bool *exists_r, const char **error_r);
/* store_sync_lazy: store_sync without store_complete: a Maildir file the
 * index has not seen is adopted from its name alone (MINDEX_C_UNPARSED),
 * so that a login to a large mailbox filled by another program answers at
 * once. For POP3, whose first answers need only UIDs. */
int store_sync_lazy(struct store *st, const char *folder, bool *exists_r,
    const char **error_r);
/* store_complete: read the files of folder's MINDEX_C_UNPARSED records
 * and fill in their sizes, dates, cached headers and MIME trees. Cheap
 * when there are none (one folder lookup). A file that moved meanwhile
 * stays unparsed until the next call. Each record keeps its MODSEQ, and
 * the folder its HIGHESTMODSEQ (so does store_complete_sizes): no flag
 * or keyword changes, so CONDSTORE clients have nothing to hear of.
 * 0, or -1. */
int store_complete(struct store *st, const char *folder,
    const char **error_r);
/* store_complete_sizes: store_complete for sizes alone: the files of
 * unparsed records are read only to count their line ends, and the
 * records, still MINDEX_C_UNPARSED, get their exact psize and vsize
 * (MINDEX_C_SIZED). What POP3's STAT and LIST need, at a fraction of a
 * parse. 0, or -1. */
int store_complete_sizes(struct store *st, const char *folder,
    const char **error_r);
/* store_sync_all: store_sync of every folder found in storage, and
 * removal from the index of folders whose storage is gone. */
int store_sync_all(struct store *st, bool force, const char **error_r);

struct store_delivery {
	const char *folder;		/* "INBOX" or "A/B" */
	const char *sender;		/* envelope sender, "" for <> */
	time_t received;
	const unsigned char *msg;	/* the message as it is to be stored */
	size_t len;
};

struct store_delivered {
	uint32_t uid;
	uint32_t uidvalidity;
	const char *format;		/* "maildir" or "mbox" */
};

/* store_deliver: store one message durably (fsynced when mail_fsync is
 * on) and index it. On any failure nothing is left visible to readers.
 * Returns a store_result; *error_r explains anything but STORE_OK. A
 * message that reached the disk but whose indexing failed is STORE_OK (the
 * next sync indexes it) with a warning logged. */
enum store_result store_deliver(struct store *st,
    const struct store_delivery *d, struct store_delivered *out,
    const char **error_r);

/* Most bytes of the reason kept for one message of a batch. */
#define STORE_BATCH_ERROR_MAX	256

/* One message of store_deliver_batch: the delivery, and its outcome. */
struct store_batch_item {
	struct store_delivery d;		/* in */
	enum store_result result;		/* out */
	struct store_delivered done;		/* out: for STORE_OK */
	char error[STORE_BATCH_ERROR_MAX];	/* out: why, for the others */
};

/*
 * store_deliver_batch: store_deliver for each of the n messages of items,
 * in order, with every outcome store_deliver has, per message, but the
 * costs shared: each run of consecutive messages for the same folder
 * takes one folder lookup, and
 *  - Maildir: every message is written into tmp/ and (mail_fsync) all of
 *    them are fsynced back to back; then ONE index write transaction
 *    checks the quota for each in order (as n single deliveries would:
 *    one over it is STORE_OVERQUOTA, the ones after it still go in if
 *    they fit), takes their UIDs, links each into new/ as NAME,U=uid,
 *    fsyncs new/ once, adds their records and commits. A full map
 *    (MINDEX_EFULL) runs the transaction again as store_deliver does,
 *    keeping the UIDs the files carry when they are still free.
 *  - mbox: one mailbox lock, the quota checked for each in order, the
 *    accepted ones appended, one fsync (an error cuts the file back to
 *    its size before the first: all of them fail), the lock let go, then
 *    one sync indexes them.
 * A message is STORE_OK only once it is on disk as store_deliver's
 * contract says (its bytes and its name fsynced); as with store_deliver,
 * a message on disk whose indexing failed is STORE_OK with done.uid 0 or
 * the UID its name carries, and the next sync indexes it. Each item's
 * result, done and error (a copy: it stays valid) are always set.
 */
void store_deliver_batch(struct store *st, struct store_batch_item *items,
    size_t n);

/* store_reindex: rebuild the index from storage into a new environment
 * and swap it in (refused while another process has the index open).
 * UIDs are kept as described at the top. *messages_r counts them. */
int store_reindex(const struct user *u, uint64_t *messages_r,
    const char **error_r);

/*
 * Mailbox operations, for IMAP and POP3 alike: folders (store_folder.c),
 * flags (store_flags.c), expunge (store_expunge.c), append and copy
 * (store_append.c), reading a message (store_read.c).
 *
 * Folder names are taken as IMAP sends them after decoding: UTF-8 with
 * '/' between levels ("INBOX", "Archive/2024", "Entwürfe"); "INBOX" in
 * any case is the inbox, also as the first level ("inbox/x" is
 * "INBOX/x"). Every operation checks its names (store_folder_name) and
 * syncs the folder it works on first, so what another program changed is
 * seen (a reader only when a file is not where the index says). Every
 * operation that changes something has it on disk (fsynced when
 * mail_fsync is on) and in the index before it returns STORE_OP_OK, as a
 * delivery does; a crash before that leaves the old state or the new one,
 * which the next sync brings the index in step with. Error texts are in
 * the store's buffer (store_error), valid until the next store call.
 */

/* The outcome of a mailbox operation, as IMAP answers it (RFC 5530). */
enum store_op {
	STORE_OP_OK = 0,
	STORE_OP_BADNAME,	/* the name breaks the rules: [CANNOT] */
	STORE_OP_EXISTS,	/* [ALREADYEXISTS] */
	STORE_OP_NONEXISTENT,	/* no such folder (APPEND, COPY: [TRYCREATE];
				   else [NONEXISTENT]) or no such message */
	STORE_OP_CANNOT,	/* refused by the rules of RFC 3501 or of the
				   format: [CANNOT] */
	STORE_OP_OVERQUOTA,	/* [OVERQUOTA] */
	STORE_OP_INUSE,		/* the mailbox lock was not had in time */
	STORE_OP_TEMPFAIL,	/* anything else: [UNAVAILABLE] */
	STORE_OP_LIMIT		/* a keyword limit (see below): [LIMIT] */
};

/* Longest folder name, bytes of UTF-8 (so also of each part). */
#define STORE_FOLDER_NAME_MAX	255

/*
 * store_folder_name: check name against the folder name rules and write
 * its canonical spelling (the first part "INBOX" in upper case) to out
 * (outsize bytes; STORE_FOLDER_NAME_MAX + 1 always suffice). Refused,
 * with STORE_OP_BADNAME and *error_r saying why: an empty name, more than
 * STORE_FOLDER_NAME_MAX bytes, a leading or trailing '/', an empty, "."
 * or ".." part, NUL (the name ends there) or control characters (C0, DEL,
 * C1), '%' and '*' (LIST wildcards), invalid UTF-8, a '.' anywhere
 * (Maildir++: the separator on disk; mbox: a part starting with '.' would
 * be a hidden file, and store_folder_path keeps both formats to one rule
 * set), a name longer than 255 bytes on disk (Maildir++'s ".A.B" in
 * modified UTF-7, so at most 254 bytes of ASCII; mbox shares the rule),
 * and a name whose path would resolve outside the mail root (through a
 * symbolic link).
 */
enum store_op store_folder_name(struct store *st, const char *name,
    char *out, size_t outsize, const char **error_r);

/* store_folder_exists: 1 if folder (any spelling) holds messages or can:
 * a Maildir++ folder with new/ and cur/, an mbox file; INBOX always.
 * 0 if not (a parent that only holds folders is not), -1 with *error_r
 * for a refused name or a system error. */
int store_folder_exists(struct store *st, const char *folder,
    const char **error_r);

/* LIST attributes (RFC 3501, RFC 3348). */
#define STORE_FOLDER_NOSELECT	0x01u	/* holds no messages, only folders */
#define STORE_FOLDER_CHILDREN	0x02u	/* has folders below it */
#define STORE_FOLDER_NOINFERIORS 0x04u	/* can never have any (mbox file) */

/*
 * store_folder_list: every folder in storage, INBOX included, in byte
 * order of the names, with its attributes: cb(name, attrs, ctx) returns
 * 0 to go on, 1 to stop, -1 to fail (store_folder_list then returns
 * STORE_OP_TEMPFAIL with *error_r "stopped by the callback"). A parent
 * with no directory or file of its own (Maildir++ "A" when only ".A.B"
 * exists; mbox directories) is listed \Noselect. Entries whose names
 * break the rules (another program's files) are not listed.
 */
enum store_op store_folder_list(struct store *st,
    int (*cb)(const char *name, unsigned attrs, void *ctx), void *ctx,
    const char **error_r);

/*
 * store_folder_create: make folder, empty, with a new UIDVALIDITY (above
 * every one this user has had). Parents are not created as folders of
 * their own: Maildir++ needs none, mbox makes directories (\Noselect).
 * EXISTS for INBOX and for a name in use; a Maildir++ \Noselect parent
 * can be created (it becomes a folder), an mbox directory cannot (EXISTS).
 * CANNOT for an mbox folder below an mbox file.
 */
enum store_op store_folder_create(struct store *st, const char *folder,
    const char **error_r);

/*
 * store_folder_delete: remove folder with its messages. INBOX: CANNOT.
 * A folder with children (RFC 3501 DELETE): Maildir++ removes the
 * folder's own directory, so its messages are gone and the name stays
 * in LIST as a \Noselect parent of its children; deleting such a
 * \Noselect parent, or an mbox directory that still has children, is
 * CANNOT; an empty mbox directory is removed. Maildir++: the directory
 * is renamed out of sight under the index writer lock (so no delivery
 * can be half-way into it), then removed; mbox: unlinked under the
 * mailbox lock.
 */
enum store_op store_folder_delete(struct store *st, const char *folder,
    const char **error_r);

/*
 * store_folder_rename: rename folder from to to, its children with it
 * (RFC 3501 RENAME), keeping UIDVALIDITY, UIDs and flags; every message
 * gets a new MODSEQ above the folder's old HIGHESTMODSEQ (the expunge
 * history of the old name is not carried over). EXISTS if to, or the new
 * name of a child, is in use; CANNOT for a rename into the folder's own
 * subtree or below an mbox file; NONEXISTENT if from has neither storage
 * nor children. Renaming INBOX moves its messages into the new folder,
 * which takes INBOX's UIDVALIDITY and UIDs, and leaves INBOX empty (its
 * children stay where they are); for mbox the messages are copied
 * (fsynced) and INBOX then cut to zero, so a crash in between leaves them
 * in both, never in neither.
 */
enum store_op store_folder_rename(struct store *st, const char *from,
    const char *to, const char **error_r);

/* A set of UIDs: ranges in any order, overlapping or not, each given
 * either way round (5:3 is 3:5). An IMAP "*" is passed as UINT32_MAX. */
struct store_uid_range {
	uint32_t first;
	uint32_t last;
};

struct store_uidset {
	const struct store_uid_range *ranges;
	size_t count;
};

/*
 * store_flags_uids: sync folder, then the UIDs of set (NULL: all) that
 * are in it and have every flag of need (0: any), sorted, each once, into
 * *uids_r (caller frees; NULL when *count_r is 0). NONEXISTENT for a
 * folder that is not there.
 */
enum store_op store_flags_uids(struct store *st, const char *folder,
    const struct store_uidset *set, uint32_t need, uint32_t **uids_r,
    size_t *count_r, const char **error_r);

/* The flags store_flags_change sets and clears. */
#define STORE_FLAGS_SYSTEM	(MINDEX_F_SEEN | MINDEX_F_ANSWERED | \
    MINDEX_F_FLAGGED | MINDEX_F_DELETED | MINDEX_F_DRAFT | \
    MINDEX_F_FORWARDED)
/* unchangedsince when the client gave none (CONDSTORE allows 0). */
#define STORE_MODSEQ_NONE	UINT64_MAX

/*
 * Keywords: IMAP's flag keywords ("$Junk", "$NotJunk", "$MDNSent",
 * Thunderbird's "$label1"), kept per message in the index record
 * (mindex_msg.keywords). A name is 1..STORE_KEYWORD_MAX bytes of IMAP
 * ATOM-CHARs (RFC 9051: 0x21..0x7e except ( ) { % * " \ ]); names
 * compare case-insensitively (ASCII, as IMAP SEARCH and Dovecot do) and
 * the spelling stored first is kept. "$Forwarded" is the system flag
 * MINDEX_F_FORWARDED (Maildir "P"), never a keyword: given as a keyword
 * it sets or clears that flag. A message has at most STORE_KEYWORDS_MAX.
 * Keyword lists go in and out as the index keeps them: names, each
 * NUL-terminated, back to back; the store writes them sorted
 * case-insensitively, each once.
 *
 * Where they live: Maildir, in the file names, as Dovecot keeps them: a
 * letter a-z of ":2," per keyword, named by the folder's
 * "dovecot-keywords" file (maildir.h), so that Dovecot, mutt and loft
 * see each other's keywords. A Maildir folder therefore holds at most
 * MAILDIR_KEYWORDS_MAX (26) different keywords: a change that needs a
 * 27th is refused whole with STORE_OP_LIMIT. A letter the file does not
 * name (or names with a name refused here) is no keyword and stays in
 * the file name as it is. mbox: in the index only, as mbox flags are (no
 * X-Keywords header is written); store_reindex does not carry them over
 * yet (it takes an mbox message's UID and GUID from the old index only).
 */
#define STORE_KEYWORD_MAX	100	/* bytes of one keyword name */
#define STORE_KEYWORDS_MAX	64	/* keywords on one message */

/* store_keyword_valid: name is a keyword the store takes (as above). */
bool store_keyword_valid(const char *name);

enum store_flags_how {
	STORE_FLAGS_ADD,	/* +FLAGS */
	STORE_FLAGS_REMOVE,	/* -FLAGS */
	STORE_FLAGS_REPLACE	/* FLAGS */
};

struct store_flags_change {
	const struct store_uidset *uids;
	enum store_flags_how how;
	uint32_t flags;			/* STORE_FLAGS_SYSTEM bits only */
	uint64_t unchangedsince;	/* or STORE_MODSEQ_NONE */
};

/* What a STORE did to one message. */
struct store_flag_result {
	uint32_t uid;
	uint32_t flags;		/* as they are now */
	uint64_t modseq;	/* as it is now */
	bool changed;		/* flags changed (and MODSEQ with them) */
	bool modified;		/* refused: MODSEQ > unchangedsince
				   (RFC 7162 MODIFIED) */
	/* Its keywords as they are now, as the index keeps them; they lie
	 * in the same allocation as the result array (one free() frees
	 * both). NULL when keywords_len is 0. */
	const char *keywords;
	size_t keywords_len;
};

/*
 * store_flags_change: set, clear or replace system flags of the messages
 * of c->uids in folder, their keywords untouched; store_flags_change_kw
 * as below with no keywords given.
 *
 * store_flags_change_kw: set, clear or replace (as c->how says) system
 * flags and keywords of the messages of c->uids in folder: keywords as
 * the index keeps them (above), at most STORE_KEYWORDS_MAX names, each
 * valid; NULL, 0 are none, so that STORE_FLAGS_REPLACE clears every
 * keyword. Each message whose flags or keywords change gets a new MODSEQ
 * (CONDSTORE); one whose MODSEQ is above c->unchangedsince is left alone
 * and reported modified. Maildir: the
 * file is renamed into cur/ with the new ":2,FLAGS" (system flag letters,
 * and the letters of its keywords; a keyword new to the folder first gets
 * its letter in dovecot-keywords, written under the same index write
 * transaction; letters that name no keyword kept) and its record updated
 * in that transaction, the directories fsynced before the commit; a file
 * another program renamed meanwhile is found again after a sync. mbox:
 * flags and keywords live in the index only (the file is not rewritten).
 * *res_r (caller frees, with the keywords it holds; NULL when *count_r is
 * 0) has one entry per message of the set still in the folder, in UID
 * order. CANNOT for flags outside STORE_FLAGS_SYSTEM or a keyword name
 * that is not valid; LIMIT, with nothing changed, when a message would
 * have more than STORE_KEYWORDS_MAX keywords, c has more than that, or a
 * Maildir folder would need a 27th keyword; INUSE when a keyword needs a
 * new Maildir letter and Dovecot's lock of the folder is held too long.
 */
enum store_op store_flags_change(struct store *st, const char *folder,
    const struct store_flags_change *c, struct store_flag_result **res_r,
    size_t *count_r, const char **error_r);
enum store_op store_flags_change_kw(struct store *st, const char *folder,
    const struct store_flags_change *c, const char *keywords,
    size_t keywords_len, struct store_flag_result **res_r, size_t *count_r,
    const char **error_r);

/*
 * store_expunge: remove from folder the messages of set (NULL: all) that
 * have \Deleted, or, with any_flags, whatever their flags (POP3 DELE,
 * MOVE). Each expunge is recorded with its MODSEQ (mindex_expunged_iter,
 * QRESYNC). *uids_r (caller frees; NULL when *count_r is 0): the UIDs of
 * the set that were in the folder and are no longer, sorted.
 * Maildir: the files are unlinked and the directories fsynced, then a
 * sync drops their records (and writes loft-uidvalidity). mbox: under the
 * mailbox lock, if the index describes the file as it is (else sync and
 * try again, at most 3 times), a copy without those messages is written
 * beside it, fsynced and renamed over it (mbox_rewrite.h), then one index
 * transaction expunges them and records the new offsets of the others,
 * with their flags; messages delivered meanwhile (after the lock is let
 * go) are kept.
 */
enum store_op store_expunge(struct store *st, const char *folder,
    const struct store_uidset *set, bool any_flags, uint32_t **uids_r,
    size_t *count_r, const char **error_r);

struct store_append {
	const char *folder;
	const unsigned char *msg;	/* as it is to be stored, LF or CRLF */
	size_t len;			/* > 0 */
	uint32_t flags;			/* STORE_FLAGS_SYSTEM bits */
	time_t internal_date;		/* 0: now */
	const char *keywords;		/* as store_flags_change_kw takes */
	size_t keywords_len;		/* them; NULL, 0: none */
};

struct store_appended {
	uint32_t uidvalidity;
	uint32_t uid;
};

/*
 * store_append: store a message in an existing folder through the path
 * deliveries take (store_deliver: same fsyncs, same quota check), then
 * give it its flags and keywords (store_flags_change_kw) and, Maildir,
 * the internal date as the file's mtime (what a rebuild reads it from).
 * NONEXISTENT (IMAP [TRYCREATE]) if the folder does not exist; OVERQUOTA;
 * CANNOT for an empty message or an invalid keyword; LIMIT, before
 * anything is stored, for more than STORE_KEYWORDS_MAX keywords or
 * keywords a Maildir folder has no letters left for. If the flags cannot
 * be set after the message is stored, that is logged and the result is
 * still OK (the client must not append it again). out->uid is 0 if the
 * message is stored but its indexing failed (the next sync indexes it):
 * then there is no APPENDUID to give.
 */
enum store_op store_append(struct store *st, const struct store_append *a,
    struct store_appended *out, const char **error_r);

/*
 * store_append_multi: store the n messages a[0..n) (n > 0; their .folder
 * is not used) in folder, in that order, all or none (IMAP MULTIAPPEND,
 * RFC 3502). Everything store_append refuses is checked for every message
 * before anything is written (an empty message, flags, keywords and, for
 * Maildir, letters for all of them, the quota for their total size), and
 * the messages are written where no reader looks: Maildir, each into
 * tmp/ and fsynced, then all renamed into new/ (as NAME,U=uid) and new/
 * fsynced; mbox, all appended and fsynced under one mailbox lock, which
 * notes the size before the first (an error cuts the file back to it,
 * and so does the next locker if this process dies holding the lock). A
 * failure before the last rename or the fsync removes what was written:
 * nothing is kept (a Maildir crash between the renames can leave the
 * first ones, which the next sync adopts). Then the folder is synced,
 * which indexes them, and each gets its flags and keywords (as
 * store_append: if that fails it is logged and the result stays OK).
 * out[0..n) gets each message's UIDVALIDITY and UID, in the order of a
 * (increasing, and usually consecutive; uid 0 if it is stored but could
 * not be found in the index: then there is no APPENDUID to give). Returns
 * what store_append returns.
 */
enum store_op store_append_multi(struct store *st, const char *folder,
    const struct store_append *a, size_t n, struct store_appended *out,
    const char **error_r);

/* UIDPLUS COPYUID: src_uids[i] was copied to dst_uids[i] (0 for a copy
 * stored but not indexed yet, see store_append: then give no COPYUID). */
struct store_copied {
	uint32_t uidvalidity;	/* of the destination */
	uint32_t *src_uids;	/* owned, sorted */
	uint32_t *dst_uids;	/* owned */
	size_t count;
};

/*
 * store_append_copy: copy the messages of set in from to to (another
 * folder of the same user, or the same one), with their flags, keywords
 * and internal dates, in UID order, each through store_append (so LIMIT
 * when a Maildir destination has no letters left for their keywords).
 * move: then expunge them from from (RFC 6851), whatever their flags. If
 * any step fails, the copies made so far are expunged again (RFC 3501: a
 * failed COPY leaves the destination as it was) and *out is empty. out
 * is freed with store_copied_free. NONEXISTENT if to does not exist
 * ([TRYCREATE]) or from does not.
 */
enum store_op store_append_copy(struct store *st, const char *from,
    const struct store_uidset *set, const char *to, bool move,
    struct store_copied *out, const char **error_r);
/* store_copied_free: free the arrays and zero *c. */
void store_copied_free(struct store_copied *c);

/*
 * Reading a message: open, read chunks until 0, seek for a partial fetch,
 * close. The bytes are the message as stored: the Maildir file, or the
 * mbox message unescaped (mboxrd: one '>' less on each line matching
 * ^>+From , undone on the fly, also across chunk boundaries). mbox reads
 * take the mailbox lock for each chunk only (never across a network wait)
 * and check at open that the message is where the index says.
 */
struct store_read;

/* store_read_open: NONEXISTENT if folder or message is not there (a
 * Maildir file renamed by another program is looked for again after a
 * sync). The reader keeps nothing of st: st may be closed while it is
 * open. */
enum store_op store_read_open(struct store *st, const char *folder,
    uint32_t uid, struct store_read **r_r, const char **error_r);
/* store_read_next: up to size bytes into buf: 1 and *len_r > 0, 0 at the
 * end, -1 with *error_r. */
int store_read_next(struct store_read *r, unsigned char *buf, size_t size,
    size_t *len_r, const char **error_r);
/* store_read_seek: the next read starts offset bytes into the stream
 * (BODY[]<offset.n>); past the end is the end. 0, or -1 with *error_r. */
int store_read_seek(struct store_read *r, uint64_t offset,
    const char **error_r);
/* store_read_close: NULL is ignored; sets *r NULL. */
void store_read_close(struct store_read **r);

#endif
