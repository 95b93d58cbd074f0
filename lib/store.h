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
 *  - Maildir: every file carries its UID in its name (",U=N"); files that
 *    arrive without one are renamed to carry the UID they are given, and
 *    each folder keeps its UIDVALIDITY and the highest UID ever given in
 *    the file "loft-uidvalidity" beside new/ and cur/. A rebuild from nothing
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

/* store_reindex: rebuild the index from storage into a new environment
 * and swap it in (refused while another process has the index open).
 * UIDs are kept as described at the top. *messages_r counts them. */
int store_reindex(const struct user *u, uint64_t *messages_r,
    const char **error_r);

#endif
