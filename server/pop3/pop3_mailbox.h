/*
 * pop3_mailbox.h: a user's INBOX as one POP3 session sees it (RFC 1939).
 *
 * pop3_mailbox_open locks the mailbox; pop3_mailbox_scan, which the session
 * calls at the client's first command after the +OK (so that the login is
 * answered before a folder that another program filled is adopted, as
 * Dovecot does), syncs INBOX (store_sync_lazy) and takes a snapshot of
 * (uid, vsize) from the index without reading any message: message N
 * of the session is entry N-1 of that snapshot for the whole session,
 * whatever arrives or disappears meanwhile. Files another program left in
 * a Maildir are adopted unread, so their sizes stay estimates until
 * pop3_mailbox_sizes.
 *
 * UIDL: "%08x%08x" of the folder's UIDVALIDITY and the message's UID, 16
 * lower-case hex digits. A UID is never reused within a UIDVALIDITY and
 * store.h keeps both across re-syncs and index rebuilds, so a message keeps
 * its UIDL forever, and it matches what IMAP reports for it.
 *
 * Only one POP3 session per mailbox: pop3_mailbox_open takes
 * flock(LOCK_EX|LOCK_NB) on INDEX_DIR/pop3.lock and holds it until
 * pop3_mailbox_free. The file holds the time of the last login.
 */
#ifndef LOFT_POP3_MAILBOX_H
#define LOFT_POP3_MAILBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct user;
struct pop3_mailbox;
struct pop3_mailbox_msg;

/* Length of a UIDL, without the NUL. */
#define POP3_UIDL_LEN 16

/*
 * pop3_mailbox_open: open the store of u (store_open: call after the uid
 * switch) and lock it for POP3. Returns 0 and *mb_r; 1 if another POP3
 * session holds the mailbox (*mb_r NULL: answer [IN-USE]); 2 if the last
 * login was less than login_delay seconds ago (0: no limit; answer
 * [LOGIN-DELAY]), else the login's time is recorded for the next; -1
 * with *error_r (static text, valid until the next pop3_mailbox call) on
 * any other failure. The mailbox holds no message until
 * pop3_mailbox_scan.
 */
int pop3_mailbox_open(const struct user *u, unsigned login_delay,
    struct pop3_mailbox **mb_r, const char **error_r);
/* pop3_mailbox_scan: sync INBOX and take the snapshot, once; later calls
 * return 0 at once. 0, or -1 with *error_r (the mailbox then stays
 * empty and the session should end). */
int pop3_mailbox_scan(struct pop3_mailbox *mb, const char **error_r);
/* pop3_mailbox_scanned: whether pop3_mailbox_scan has succeeded. */
bool pop3_mailbox_scanned(const struct pop3_mailbox *mb);
/* pop3_mailbox_free: close without deleting anything (a dropped
 * connection); releases the lock; sets *mb NULL; NULL is ignored. */
void pop3_mailbox_free(struct pop3_mailbox **mb);

/* pop3_mailbox_release: close the store and its index while the session
 * waits for the client (an idle session then costs its snapshot, not an
 * LMDB environment); the next message read or the expunge opens it
 * again. The POP3 lock stays held. Does nothing while a message is open. */
void pop3_mailbox_release(struct pop3_mailbox *mb);

/* pop3_mailbox_sizes: make the sizes of the snapshot exact. Until it is
 * called they may be estimates (from file names), for messages the index
 * adopted without reading them (store_complete_sizes: their files are
 * then read to count line ends, not parsed); a session that only asks
 * UIDL never pays for reading them. 0, or -1 with *error_r. */
int pop3_mailbox_sizes(struct pop3_mailbox *mb, const char **error_r);
/* Messages are numbered 0..count-1 here (the session adds 1). */
unsigned pop3_mailbox_count(const struct pop3_mailbox *mb);
/* vsize: the size with CRLF line ends, as RETR sends it before
 * dot-stuffing (the index's RFC822.SIZE). i must be < count. */
uint64_t pop3_mailbox_vsize(const struct pop3_mailbox *mb, unsigned i);
uint32_t pop3_mailbox_uid(const struct pop3_mailbox *mb, unsigned i);
/* uidl: the UIDL of message i into out (POP3_UIDL_LEN + 1 bytes). */
void pop3_mailbox_uidl(const struct pop3_mailbox *mb, unsigned i,
    char out[POP3_UIDL_LEN + 1]);

/*
 * Reading a message: open, then read chunks until it returns 0, then close.
 * The bytes are the message as stored, unescaped for mbox (mboxrd: one
 * '>' less on lines matching ^>+From , undone on the fly, also across
 * chunk boundaries). mbox reads take the mailbox lock for each chunk only,
 * never across a network wait. At most one message open at a time.
 * msg_open: 0, or -1 with *error_r (the message vanished: a Maildir file
 * is looked for again after a sync, so a flag rename by another reader
 * does not fail).
 * msg_read: up to size bytes into buf: 1 and *len_r > 0, 0 at the end,
 * -1 with *error_r.
 * msg_close: NULL is ignored; sets *m NULL.
 */
int pop3_mailbox_msg_open(struct pop3_mailbox *mb, unsigned i,
    struct pop3_mailbox_msg **m_r, const char **error_r);
int pop3_mailbox_msg_read(struct pop3_mailbox_msg *m, unsigned char *buf,
    size_t size, size_t *len_r, const char **error_r);
void pop3_mailbox_msg_close(struct pop3_mailbox_msg **m);

/*
 * pop3_mailbox_expunge: the UPDATE state: delete the messages whose
 * deleted[i] is true (count entries); nothing to delete is 0 at once.
 * This is store_expunge of their UIDs whatever their flags (lib/store.h:
 * Maildir unlinks and fsyncs, mbox is rewritten beside itself under the
 * delivery lock and renamed into place, the index follows). Messages the
 * session did not see (delivered after the snapshot) are kept; a message
 * already gone counts as deleted. Returns 0, or -1 with *error_r and the
 * mailbox unchanged.
 */
int pop3_mailbox_expunge(struct pop3_mailbox *mb, const bool *deleted,
    const char **error_r);

#endif
