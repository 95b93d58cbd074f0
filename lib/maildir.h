/*
 * maildir.h: Maildir++ storage, laid out as Dovecot, Courier, mutt and
 * procmail read it.
 *
 *   ROOT/{tmp,new,cur}            INBOX
 *   ROOT/.A/{tmp,new,cur}         folder "A", plus an empty maildirfolder
 *   ROOT/.A.B/                    folder "A/B"
 *   ROOT/.&ZeVnLIqe-/             folder "日本語" (IMAP modified UTF-7)
 *
 * Message files are named
 *
 *   SECONDS.M<usec>P<pid>Q<counter>R<random hex>.HOST,S=SIZE,U=UID
 *
 * (Dovecot's unique part; in HOST, '/', ':', ',', '\' and any byte outside
 * 0x21-0x7e are written as \ooo, e.g. '/' as \057 and ':' as \072, so
 * that the name holds no path separator, info separator or field
 * separator), followed in cur/ by ":2," and the flag letters in
 * ASCII order: D draft, F flagged, P passed (forwarded), R replied, S seen,
 * T trashed (deleted), then any other letters (Dovecot keywords a-z).
 * ",S=" is the size in bytes on disk, for quota tools; ",U=" is the IMAP
 * UID, so that rebuilding the index from the files keeps UIDs.
 *
 * Unless a function says otherwise it returns 0, or -1 with *error_r set
 * to text in a static buffer of this module, valid until the next call
 * into it; errno is kept from the failing system call.
 */
#ifndef LOFT_MAILDIR_H
#define LOFT_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest directory entry name a folder may have on disk (".A.B" with
 * the leading dot), NAME_MAX on Linux. */
#define MAILDIR_DIRENT_MAX 255
/* Enough for any maildir_flags_to_info() result: "2," + 52 letters + NUL. */
#define MAILDIR_INFO_SIZE 64

/* maildir_folder_path: the directory of folder under the Maildir root,
 * written to out (outsize bytes, NUL included). "INBOX" in any case is
 * root itself; "A/B" is ROOT/.A.B with each part in modified UTF-7; a
 * first part "INBOX" in any case is written "INBOX", so "inbox/x" and
 * "INBOX/x" are one folder. Refused with a message saying why: an empty
 * name, a leading or trailing '/', an empty, "." or ".." part, any '.'
 * (Maildir++ uses it as the separator on disk; not supported in this
 * version), '%' or '*' (IMAP LIST wildcards), control characters (C0, DEL
 * and C1), invalid UTF-8, a directory name longer than MAILDIR_DIRENT_MAX
 * bytes, and a path that does not fit in out. */
int maildir_folder_path(const char *root, const char *folder, char *out,
    size_t outsize, const char **error_r);

/* maildir_folder_name: the reverse, for a directory entry name such as
 * ".A.B": writes "A/B" (UTF-8) to out. Returns 0, or -1 if dirent is not
 * exactly what maildir_folder_path() would make for some folder (so ".",
 * "..", ".INBOX", ".inbox.x", non-canonical modified UTF-7 and names with
 * refused characters all give -1), or if the name does not fit in out. */
int maildir_folder_name(const char *dirent, char *out, size_t outsize);

/* maildir_create: make dir and any missing parents, then dir/tmp,
 * dir/new and dir/cur, each mode 0700 (less the umask); what exists
 * already is kept. is_subfolder: also create the empty file
 * dir/maildirfolder (0600) that marks a Maildir++ folder. */
int maildir_create(const char *dir, bool is_subfolder, const char **error_r);

/* maildir_tmp_write: write msg (len bytes, may hold NULs) to a new file in
 * dir/tmp/ with a unique name ending in ",S=len", and fsync it when
 * do_fsync. *name_r is that base name (no directory, no ",U=" yet), which
 * the caller frees. On error the file is removed, errno is that of the
 * failure (ENOSPC, EDQUOT or EFBIG mean the disk or quota is full) and
 * *name_r is NULL. A process with a file size limit must ignore SIGXFSZ
 * for that limit to show as EFBIG instead of killing it. */
int maildir_tmp_write(const char *dir, const unsigned char *msg, size_t len,
    bool do_fsync, char **name_r, const char **error_r);

/* maildir_tmp_to_new: move dir/tmp/tmpname to dir/new/tmpname,U=uid and,
 * when do_fsync, fsync dir/new so that the new name is on disk. Never
 * replaces an existing file: if the target exists this fails with errno
 * EEXIST and the tmp file stays where it was, for a retry under another
 * uid. *final_r (caller frees) is "new/tmpname,U=uid". tmpname must be a
 * plain file name (no '/', not starting with '.'). */
int maildir_tmp_to_new(const char *dir, const char *tmpname, uint32_t uid,
    bool do_fsync, char **final_r, const char **error_r);

/* maildir_rename_uid: give the message at dir/location (location as
 * stored in the index: "new/NAME" or "cur/NAME:2,FLAGS") the uid uid:
 * its ",U=" field is replaced, or added at the end of the base name. The
 * same no-replace and fsync rules as maildir_tmp_to_new apply; if the
 * name would not change, nothing is renamed. *final_r (caller frees) is
 * the new location. */
int maildir_rename_uid(const char *dir, const char *location, uint32_t uid,
    bool do_fsync, char **final_r, const char **error_r);

struct maildir_name {
	size_t base_len;	/* the unique base name: up to the first ':'
				   (the one before "2,"), or all of it */
	uint32_t uid;		/* from ",U=", 0 if absent or too big */
	uint64_t size;		/* from ",S=", 0 if absent */
	bool has_size;
	uint32_t flags;		/* MINDEX_F_* from ":2,FLAGS" */
	const char *info;	/* points after ":2," in the name, or NULL */
	uint32_t kw_letters;	/* bit N: keyword letter 'a' + N is in info
				   (names: dovecot-keywords, below) */
};

/* maildir_name_parse: split a message file name (no directory). Fields
 * ",S=" and ",U=" are read from the base name; one whose value is not all
 * digits, or does not fit, is ignored. Flag letters other than DFPRST
 * are left for the caller in info. Names in other formats (procmail's
 * "1732870000.12345_0.host", mutt's, Courier's) parse as a base with no
 * fields. Returns 0, or -1 if name is empty or starts with '.', which is
 * never a message. *mn_r points into name. */
int maildir_name_parse(const char *name, struct maildir_name *mn_r);

/* maildir_flags_to_info: the info part "2,FLAGS" for MINDEX_F_* flags,
 * merged with the letters of keep_letters (may be NULL) that are ASCII
 * letters other than DFPRST, e.g. the Dovecot keywords a-z of the old
 * info; letters sorted in ASCII order, each once. out must have room
 * for the result, which MAILDIR_INFO_SIZE always has; a smaller outsize
 * that cannot hold it is a bug (log_panic). */
void maildir_flags_to_info(uint32_t flags, const char *keep_letters,
    char *out, size_t outsize);

/* maildir_scan: call cb(sub, name, ctx) for each message file in dir/new
 * (sub "new") and then dir/cur (sub "cur"), in directory order. Dot files
 * and anything that is not a regular file (directories, symlinks) are
 * skipped, judged by d_type, with lstat only where d_type is DT_UNKNOWN.
 * cb returns 0 to go on, 1 to stop (maildir_scan then returns 0), or -1
 * (maildir_scan returns -1 with *error_r "scan stopped by callback"; cb
 * keeps its own error). A missing new/ or cur/ is an error (ENOENT). */
int maildir_scan(const char *dir,
    int (*cb)(const char *sub, const char *name, void *ctx), void *ctx,
    const char **error_r);
/* maildir_scan_new: maildir_scan of dir/new alone. */
int maildir_scan_new(const char *dir,
    int (*cb)(const char *sub, const char *name, void *ctx), void *ctx,
    const char **error_r);

/* maildir_list_folders: call cb(folder, ctx) with the name (UTF-8, "A/B")
 * of each ROOT/.X directory (or symlink to one) that
 * maildir_folder_name() accepts, in directory order; other entries are
 * skipped silently. INBOX (the root) is not reported. cb returns as for
 * maildir_scan. */
int maildir_list_folders(const char *root,
    int (*cb)(const char *folder, void *ctx), void *ctx,
    const char **error_r);

/*
 * loft-uidlist (maildir_uidlist.c): the UIDs given to files whose names
 * carry none, as lines "UID BASE\n" in the folder directory, so that a
 * rebuild of the index from storage alone keeps them; the last line of a
 * base name wins. These return 0, or -1 with errno (no *error_r).
 */
struct buf;
/* add: one line for uid and the base name into b (nothing is written);
 * a name holding a line end is left out. */
void maildir_uidlist_add(struct buf *b, uint32_t uid, const char *base,
    size_t base_len);
/* append: add the lines of b to dir's list (created if missing). */
int maildir_uidlist_append(const char *dir, const struct buf *b,
    bool do_fsync);
/* replace: make b the whole list, atomically (a temporary file renamed). */
int maildir_uidlist_replace(const char *dir, const struct buf *b,
    bool do_fsync);
/* size: of the list in bytes, 0 if there is none. */
int64_t maildir_uidlist_size(const char *dir);
/* read: cb for each line that parses, in file order; a missing list is 0.
 * base (not NUL-terminated) holds no '/' and no NUL. */
int maildir_uidlist_read(const char *dir,
    void (*cb)(uint32_t uid, const char *base, size_t base_len, void *ctx),
    void *ctx);

/*
 * dovecot-keywords (maildir_keywords.c): Dovecot's map from the keyword
 * letters a-z of a folder's file names to IMAP keyword names, one file
 * per folder directory, lines "N NAME\n", N = 0..25 naming the letter
 * 'a' + N. Letters are never renamed, only added; a letter without a
 * line has no name (and is left alone in file names). The file is
 * replaced whole (a temporary file renamed), with an mtime above the
 * old one: Dovecot re-reads it only when its mtime (in seconds) moves.
 */
#define MAILDIR_KEYWORDS_FILE		"dovecot-keywords"
/* Letters a-z: 26 keywords at most per folder. */
#define MAILDIR_KEYWORDS_MAX		26
/* Longest name read or written, bytes; a longer line is skipped. */
#define MAILDIR_KEYWORD_NAME_MAX	255
/* Bytes of the file read at most; lines past it are not seen. */
#define MAILDIR_KEYWORDS_FILE_MAX	(64 * 1024)

struct maildir_keywords {
	char *name[MAILDIR_KEYWORDS_MAX];	/* owned; NULL: no name */
};

/* maildir_keywords_read: the file of folder directory dir into kw (which
 * need not be initialised; free it with maildir_keywords_free). A missing
 * file is an empty map. Lines that are not "N NAME" with N a decimal
 * 0..25 without sign or leading zeros and NAME 1..MAILDIR_KEYWORD_NAME_MAX
 * bytes of 0x21..0x7e are skipped; of two lines for one N the later
 * wins. 0, or -1 with *error_r (kw is then empty). */
int maildir_keywords_read(const char *dir, struct maildir_keywords *kw,
    const char **error_r);
void maildir_keywords_free(struct maildir_keywords *kw);
/* maildir_keywords_lookup: the index (letter - 'a') of name, compared
 * case-insensitively (ASCII, as Dovecot and IMAP do), or -1. */
int maildir_keywords_lookup(const struct maildir_keywords *kw,
    const char *name);
/* maildir_keywords_assign: the index of name, giving it the lowest free
 * one (a copy of name) if it has none: -1 when all 26 are taken or name
 * is not one the file can hold (as read above). *added_r tells whether
 * kw changed (then the file must be written before a file name uses
 * the letter). */
int maildir_keywords_assign(struct maildir_keywords *kw, const char *name,
    bool *added_r);
/* maildir_keywords_write: replace dir's file with kw, atomically (a
 * temporary file in dir, fsynced when do_fsync, renamed over it, and dir
 * fsynced), its mtime above the old file's. 0, or -1 with *error_r. */
int maildir_keywords_write(const char *dir, const struct maildir_keywords *kw,
    bool do_fsync, const char **error_r);

/*
 * Dovecot changes dovecot-keywords only while it holds its lock on the
 * folder's control files, the dotlock "dovecot-uidlist.lock" (made with
 * O_EXCL, holding "PID:HOST", stale after two minutes). Whoever gives a
 * keyword a new letter must hold it from reading the file to writing
 * it, or two writers could give one letter two names.
 */
#define MAILDIR_KEYWORDS_LOCK		"dovecot-uidlist.lock"
/* Tries, MAILDIR_KEYWORDS_LOCK_SLEEP_MS apart, before giving up. */
#define MAILDIR_KEYWORDS_LOCK_TRIES	20
#define MAILDIR_KEYWORDS_LOCK_SLEEP_MS	10
/* A lock older than this (seconds) is left over and removed. */
#define MAILDIR_KEYWORDS_LOCK_STALE	120
/* maildir_keywords_lock: take that lock of folder directory dir,
 * waiting at most TRIES x SLEEP_MS (the process sleeps: the lock is
 * taken only to add a letter, and Dovecot holds it briefly). 1 taken, 0
 * held by another, -1 with *error_r. */
int maildir_keywords_lock(const char *dir, const char **error_r);
/* maildir_keywords_unlock: let it go (remove the file). */
void maildir_keywords_unlock(const char *dir);

#endif
