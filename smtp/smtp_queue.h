/*
 * smtp_queue.h: the SMTP queue: messages accepted and not yet delivered,
 * durable across crashes. One directory owned by the daemon (mode 0700):
 *
 *   tmp/      transactions in progress: tmp/ID (content), tmp/ID.e and
 *             tmp/ID.s (envelopes being written); never read
 *   data/ID   a message's content, exactly as received (CRLF lines)
 *   env/ID    its envelope (text, one field per line: doc/design.md and
 *             smtp_queue.c show it); a message is in the queue exactly
 *             when env/ID exists
 *   corrupt/  damaged envelopes (ID.e) and their content (ID.d), moved
 *             aside, never deleted, never delivered
 *
 * The order of the steps of a commit, and why a crash at any point leaves
 * either no message or a whole one, is in doc/design.md ("The SMTP
 * queue"). A message is locked (flock on data/ID) by the one process that
 * delivers, changes or removes it; reading envelopes (mailq) takes no
 * lock and copes with messages vanishing under it.
 *
 * Queue IDs are 17 characters of Crockford's base 32 (0-9 and upper case
 * letters without I, L, O, U), in ASCII order: 8 of seconds and 4 of
 * microseconds of the arrival time, then 5 of the process ID. So IDs
 * sort by arrival, are safe as file names, and are unique: a process
 * never gives the same time twice, two processes differ in their pid,
 * and a name already in use is never taken (checked at begin, and the
 * content is linked into data/ with link(2), which never replaces).
 * Every function that takes an ID from outside validates it first.
 *
 * Return values: 0 / -1, or, where something may legitimately be absent,
 * 1 found / 0 not in the queue / -1 error / SMTP_QUEUE_LOCKED (another
 * process holds the message). Errors are "queue: ..." text in a static
 * buffer of this module, valid until the next call into it; a full disk
 * reads "queue: disk full: ...", and after a failed system call errno is
 * still its errno (fsutil_is_disk_full() tells ENOSPC, EDQUOT, EFBIG, for
 * a 452 4.3.1 answer).
 */
#ifndef LOFT_SMTP_QUEUE_H
#define LOFT_SMTP_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "smtp_session.h"	/* SMTP_NOTIFY_*, enum smtp_ret, limits */

/* A queue ID: 8 + 4 + 5 base-32 digits (40 bits of seconds, 20 of
 * microseconds, 25 of pid: Linux's pid_max is at most 2^22). */
/* In the queue directory, beside tmp/ data/ env/ corrupt/: the pid of
 * the running queue manager (loftd's qmgr), which `loftctl queue flush`
 * signals (SIGUSR1) to try deferred mail at once. */
#define SMTP_QUEUE_PID_FILE	"qmgr.pid"
#define SMTP_QUEUE_ID_LEN	17
#define SMTP_QUEUE_ID_MAX	(SMTP_QUEUE_ID_LEN + 1)

/* Limits. An address (sender or recipient, stored without its angle
 * brackets) is at most the RFC 5321 path limit; ORCPT and ENVID as
 * smtp_session.h bounds them; the remote reply kept per recipient is cut
 * at SMTP_QUEUE_DIAG_MAX bytes. An envelope file is at most
 * SMTP_QUEUE_ENV_MAX bytes: begin and add_rcpt refuse a message whose
 * envelope could outgrow it (every recipient counted with the longest
 * diagnostic), so every envelope written can be read back. */
#define SMTP_QUEUE_ADDR_MAX	SMTP_PATH_MAX
#define SMTP_QUEUE_ORCPT_MAX	SMTP_ORCPT_MAX
#define SMTP_QUEUE_ENVID_MAX	SMTP_ENVID_MAX
#define SMTP_QUEUE_DIAG_MAX	512
#define SMTP_QUEUE_ENV_MAX	(32 * 1024 * 1024)

/* smtp_queue_cleanup's age: longer than any SMTP transaction can last
 * (data timeouts are minutes), so another process's live transaction is
 * never taken for a crash's leftover. */
#define SMTP_QUEUE_CLEANUP_AGE	3600

/* Returned by load, remove and hold when another process holds the
 * message (it is being delivered): try again later. */
#define SMTP_QUEUE_LOCKED	(-2)

/* smtp_queue_load flags */
#define SMTP_QUEUE_LOCK		(1u << 0)	/* lock it, to change it */

/* Retry schedule parameters, with Postfix's names and defaults (seconds):
 * minimal_backoff_time, maximal_backoff_time, maximal_queue_lifetime,
 * bounce_queue_lifetime. */
#define SMTP_QUEUE_DEF_MIN_BACKOFF	300
#define SMTP_QUEUE_DEF_MAX_BACKOFF	4000
#define SMTP_QUEUE_DEF_MAX_LIFETIME	(5 * 86400)
#define SMTP_QUEUE_DEF_BOUNCE_LIFETIME	(5 * 86400)

struct smtp_queue_sched {
	unsigned int minimal_backoff_time;
	unsigned int maximal_backoff_time;
	unsigned int maximal_queue_lifetime;
	unsigned int bounce_queue_lifetime;
};

enum smtp_queue_state {
	SMTP_QUEUE_PENDING,	/* not tried yet */
	SMTP_QUEUE_DELIVERED,	/* final: accepted by the next hop */
	SMTP_QUEUE_FAILED,	/* final: refused, or expired (bounce due) */
	SMTP_QUEUE_DEFERRED,	/* tried, temporary failure: next_attempt */
	SMTP_QUEUE_BOUNCED	/* final: failed, and the sender was told
				   (or no report was due): see
				   smtp_queue_rcpt_reported */
};

struct smtp_queue_rcpt {
	char *addr;		/* without <>; owned */
	char *orcpt;		/* ORCPT= "type;xtext" as sent, or NULL;
				   owned */
	unsigned int notify;	/* SMTP_NOTIFY_*, 0 when not given */
	enum smtp_queue_state state;
	unsigned int attempts;	/* attempts for this recipient */
	time_t last_attempt;	/* 0: never */
	time_t next_attempt;	/* DEFERRED: not before; else 0 */
	/* The last remote reply or local reason, as bytes (it came from the
	 * network: any byte, NUL too); at most SMTP_QUEUE_DIAG_MAX; owned,
	 * NULL when none. Set through smtp_queue_rcpt_result. */
	unsigned char *diag;
	size_t diag_len;
};

/* A loaded envelope. The caller may change hold, attempts and the
 * recipients' fields (diag only through smtp_queue_rcpt_result) and save
 * it when it holds the lock. */
struct smtp_queue_env {
	char id[SMTP_QUEUE_ID_MAX];
	char *sender;		/* without <>; "" for the null sender; owned */
	bool bounce;		/* null sender: never bounce this one */
	time_t arrival;		/* when begin was called */
	unsigned int arrival_usec;
	uint64_t size;		/* content bytes */
	char *envid;		/* ENVID= xtext as sent, or NULL; owned */
	enum smtp_ret ret;	/* RET=, SMTP_RET_NONE when not given */
	unsigned int attempts;	/* delivery runs over this message; the
				   scheduler adds one per run */
	bool hold;		/* on hold: not to be delivered */
	struct smtp_queue_rcpt *rcpts;	/* owned */
	unsigned int rcpt_count;
	int lock_fd;		/* private: the locked data/ID, or -1 */
};

struct smtp_queue;		/* an open queue directory */
struct smtp_queue_msg;		/* a message being received */
struct smtp_queue_iter;		/* a walk over the queue */

/*
 * smtp_queue_open: open the queue directory dir, creating it (mode 0700;
 * its parent must exist) and its subdirectories if missing. Refused: dir
 * or a subdirectory that is not a directory (a symbolic link included),
 * is owned by another user than the effective uid, or has any group or
 * other permission bit. 0 and *q_r (close with smtp_queue_close), or -1.
 */
int smtp_queue_open(const char *dir, struct smtp_queue **q_r,
    const char **error_r);
/* smtp_queue_close: close *q (NULL is fine) and set it to NULL. Messages
 * begun on it must have been committed or aborted. */
void smtp_queue_close(struct smtp_queue **q);

/*
 * smtp_queue_cleanup: remove what crashed transactions left: files in tmp/
 * and contents in data/ without an envelope, last written (mtime) at
 * least max_age seconds ago (SMTP_QUEUE_CLEANUP_AGE at start-up; younger
 * ones may belong to a transaction of another process; 0: whatever their
 * age, for a queue no other process uses). Files that vanish
 * meanwhile are skipped. *removed_r (may be NULL) counts what went.
 * 0, or -1 on the first failure.
 */
int smtp_queue_cleanup(struct smtp_queue *q, unsigned int max_age,
    unsigned int *removed_r, const char **error_r);

/* smtp_queue_id_valid: whether id is a queue ID in form (see above): the
 * check every entry point makes before it uses an ID as a file name. */
bool smtp_queue_id_valid(const char *id);

/*
 * smtp_queue_begin: start receiving a message from sender (without <>,
 * "" for the null sender: the message is then a bounce). At most
 * max_rcpts recipients (the caller passes smtpd_recipient_limit; >= 1).
 * The ID is chosen now (smtp_queue_msg_id, for the log) and the content
 * file created in tmp/. The client's identity (the Received: line) is the
 * caller's to write as content. Refused: a sender over
 * SMTP_QUEUE_ADDR_MAX bytes or with control characters, max_rcpts 0, or
 * any system call failing. 0 and *msg_r, which must end with
 * smtp_queue_commit or smtp_queue_abort; or -1.
 */
int smtp_queue_begin(struct smtp_queue *q, const char *sender,
    unsigned int max_rcpts, struct smtp_queue_msg **msg_r,
    const char **error_r);
/* smtp_queue_msg_id: the ID the message will have (valid with msg). */
const char *smtp_queue_msg_id(const struct smtp_queue_msg *msg);
/* smtp_queue_set_dsn: MAIL FROM's ENVID (xtext as sent, NULL: none; at
 * most SMTP_QUEUE_ENVID_MAX bytes, no space or control character) and
 * RET; call it before adding recipients (so that the envelope size bound
 * holds). 0, or -1 (nothing changes; the message goes on). */
int smtp_queue_set_dsn(struct smtp_queue_msg *msg, const char *envid,
    enum smtp_ret ret, const char **error_r);
/*
 * smtp_queue_write: append len bytes of content (any bytes). Streamed to
 * the file through a 64 KiB buffer: nothing more is held in memory. 0, or
 * -1 (a full disk says so): the message is then broken and can only be
 * aborted (later writes and commit fail with the same error).
 */
int smtp_queue_write(struct smtp_queue_msg *msg, const unsigned char *data,
    size_t len, const char **error_r);
/*
 * smtp_queue_add_rcpt: add recipient rcpt (without <>, 1 to
 * SMTP_QUEUE_ADDR_MAX bytes, no control character), with its ORCPT
 * ("type;xtext" as sent, or NULL; at most SMTP_QUEUE_ORCPT_MAX bytes, no
 * space or control character) and NOTIFY flags (SMTP_NOTIFY_*, NEVER
 * alone, or 0 when not given). Refused, for the SMTP side to answer 452
 * or 501 and go on: a bad value, the max_rcpts+1st recipient, or one that
 * could make the envelope outgrow SMTP_QUEUE_ENV_MAX. 0 or -1; the
 * message goes on either way.
 */
int smtp_queue_add_rcpt(struct smtp_queue_msg *msg, const char *rcpt,
    const char *orcpt, unsigned int notify, const char **error_r);
/*
 * smtp_queue_commit: make the message durable: the content fsynced and
 * linked into data/, data/ fsynced, the envelope written, fsynced and
 * renamed into env/, env/ fsynced. Only after 0 may the SMTP side answer
 * 250. On -1 (no recipient, a full disk, any failure) nothing of the
 * message is left in the queue. Frees *msg and sets it to NULL either
 * way; id_r gets the ID (also on failure, for the log).
 */
int smtp_queue_commit(struct smtp_queue_msg **msg,
    char id_r[SMTP_QUEUE_ID_MAX], const char **error_r);
/* smtp_queue_abort: drop the message (its files are removed); frees *msg
 * (NULL is fine) and sets it to NULL. */
void smtp_queue_abort(struct smtp_queue_msg **msg);

/*
 * A committer: smtp_queue_commit run on threads of its own, so that a
 * process serving many clients on one event loop does not make them all
 * wait for each one's fsyncs, and several commits wait at the same moment
 * (the file system joins their fsyncs into one journal commit). Each
 * commit is exactly smtp_queue_commit, one message per thread at a time;
 * the caller's thread keeps every other call into this module. Threads
 * are started by smtp_queue_committer_new, so a process that may start
 * none later (RLIMIT_NPROC 0) makes its committer before that.
 */
#define SMTP_QUEUE_COMMIT_THREADS_MAX	64
#define SMTP_QUEUE_COMMIT_STACK		(256 * 1024)
struct smtp_queue_committer;

/* A finished commit, on the caller's thread: result and id as from
 * smtp_queue_commit; error NULL on success, else the reason (valid during
 * the call), with errno set to the failed call's errno (so that
 * fsutil_is_disk_full can tell a full disk). */
typedef void smtp_queue_commit_cb(void *ctx, int result, const char *id,
    const char *error);

/* smtp_queue_committer_new: start threads (1 to
 * SMTP_QUEUE_COMMIT_THREADS_MAX) waiting for commits. 0 and *c_r, or -1
 * (nothing is left running). */
int smtp_queue_committer_new(unsigned int threads,
    struct smtp_queue_committer **c_r, const char **error_r);
/* smtp_queue_committer_fd: a descriptor that is readable when a commit has
 * finished: watch it on the loop and call smtp_queue_commit_reap. */
int smtp_queue_committer_fd(const struct smtp_queue_committer *c);
/* smtp_queue_committer_outstanding: commits submitted and not reaped. */
unsigned int smtp_queue_committer_outstanding(
    const struct smtp_queue_committer *c);
/* smtp_queue_commit_submit: commit *msg (taken over, set to NULL) on a
 * thread; ctx is given back to the reap callback. The message must not be
 * touched after this call. Never fails: a failed commit is reported. */
void smtp_queue_commit_submit(struct smtp_queue_committer *c,
    struct smtp_queue_msg **msg, void *ctx);
/* smtp_queue_commit_reap: call cb (may be NULL) for each commit finished
 * since the last reap, in the order they finished. Returns how many. */
unsigned int smtp_queue_commit_reap(struct smtp_queue_committer *c,
    smtp_queue_commit_cb *cb);
/* smtp_queue_committer_free: wait until every submitted commit has run,
 * reap them with cb (may be NULL), stop the threads, free *c (NULL is
 * fine) and set it to NULL. */
void smtp_queue_committer_free(struct smtp_queue_committer **c,
    smtp_queue_commit_cb *cb);

/*
 * smtp_queue_load: read the envelope of message id. With SMTP_QUEUE_LOCK
 * the message is locked (without waiting) until smtp_queue_env_free, and
 * its content must exist; only a locked envelope can be saved or removed.
 * Returns 1 and *env_r; 0 if id is not in the queue (or went meanwhile);
 * SMTP_QUEUE_LOCKED; or -1: a bad ID, a system error, or a damaged
 * envelope (or a locked load finding no content), which is moved with its
 * content to corrupt/ and the error names the file and line.
 */
int smtp_queue_load(struct smtp_queue *q, const char *id, unsigned int flags,
    struct smtp_queue_env **env_r, const char **error_r);
/* smtp_queue_env_free: free *env (NULL is fine), releasing its lock. */
void smtp_queue_env_free(struct smtp_queue_env **env);
/*
 * smtp_queue_save: write env (locked: anything else is a bug) over its
 * envelope atomically: tmp/ID.s written, fsynced, renamed onto env/ID,
 * env/ fsynced. 0, or -1: the old envelope is in place, unless the final
 * directory fsync failed (then either may survive a crash: save again).
 */
int smtp_queue_save(struct smtp_queue *q, const struct smtp_queue_env *env,
    const char **error_r);
/*
 * smtp_queue_rcpt_result: record an attempt for recipient i (< rcpt_count,
 * else a bug): state, one more attempt, last_attempt = now, next_attempt
 * = next for DEFERRED (else 0), and the reply diag (diag_len bytes, NULL
 * for none; cut at SMTP_QUEUE_DIAG_MAX). In memory only: save after.
 */
void smtp_queue_rcpt_result(struct smtp_queue_env *env, unsigned int i,
    enum smtp_queue_state state, time_t now, time_t next,
    const unsigned char *diag, size_t diag_len);
/* smtp_queue_env_due: whether a recipient is still to be delivered
 * (PENDING or DEFERRED); if so, *next_r (may be NULL) is the earliest time
 * to try (0 for a PENDING one: now). */
bool smtp_queue_env_due(const struct smtp_queue_env *env, time_t *next_r);
/* smtp_queue_rcpt_reported: recipient i, FAILED, has been reported to
 * the sender (its bounce is in the queue): it becomes BOUNCED, so that no
 * later run reports it again. Other states are left alone. */
void smtp_queue_rcpt_reported(struct smtp_queue_env *env, unsigned int i);
/* smtp_queue_state_name: "pending", "delivered", "failed", "deferred",
 * "bounced". */
const char *smtp_queue_state_name(enum smtp_queue_state state);

/* smtp_queue_open_content: open message id's content for reading: 1 with
 * *fd_r (the caller closes it) and *size_r; 0 if not there; -1. */
int smtp_queue_open_content(struct smtp_queue *q, const char *id, int *fd_r,
    uint64_t *size_r, const char **error_r);
/*
 * smtp_queue_remove: take message id out of the queue (loftctl queue
 * delete; id is user input, validated): locks it, removes the envelope,
 * fsyncs env/, removes the content. 1 removed, 0 not there,
 * SMTP_QUEUE_LOCKED, -1.
 */
int smtp_queue_remove(struct smtp_queue *q, const char *id,
    const char **error_r);
/* smtp_queue_env_remove: the same for a message the caller holds locked
 * (delivery done); frees *env and sets it to NULL either way. 0 or -1. */
int smtp_queue_env_remove(struct smtp_queue *q, struct smtp_queue_env **env,
    const char **error_r);
/* smtp_queue_env_remove_later: smtp_queue_env_remove in two steps, so
 * that the removals of a while share one fsync of env/: the envelope is
 * unlinked now, and smtp_queue_removals_flush fsyncs env/ once and then
 * removes the contents. Until the flush a crash of the machine may bring
 * the envelope back (the message is delivered again: a duplicate, never
 * a loss); the order of the two removals is kept. Frees *env. 0 or -1. */
int smtp_queue_env_remove_later(struct smtp_queue *q,
    struct smtp_queue_env **env, const char **error_r);
int smtp_queue_removals_flush(struct smtp_queue *q, const char **error_r);
/* smtp_queue_hold: put message id on hold (hold) or release it; as
 * smtp_queue_remove for the return values. */
int smtp_queue_hold(struct smtp_queue *q, const char *id, bool hold,
    const char **error_r);

/*
 * Enumeration (mailq, the scheduler): smtp_queue_iter_new takes the list
 * of IDs in env/ (names that are not IDs are skipped), sorted, so by
 * arrival; smtp_queue_iter_next loads the next envelope without locking
 * it or opening its content: 1 and *env_r (free it), 0 at the end, -1 for
 * one message that could not be read (damaged ones are quarantined as by
 * smtp_queue_load): call again to go on. Messages removed meanwhile are
 * skipped; messages added meanwhile are not seen.
 */
int smtp_queue_iter_new(struct smtp_queue *q, struct smtp_queue_iter **iter_r,
    const char **error_r);
int smtp_queue_iter_next(struct smtp_queue_iter *iter,
    struct smtp_queue_env **env_r, const char **error_r);
void smtp_queue_iter_free(struct smtp_queue_iter **iter);

/*
 * smtp_queue_next_attempt: when to try again after a temporary failure.
 * attempts is the number made so far; the delay doubles from
 * minimal_backoff_time (attempts 1) up to maximal_backoff_time (a maximum
 * below the minimum counts as the minimum); attempts 0: now. The message
 * expires when now - arrival reaches maximal_queue_lifetime
 * (bounce_queue_lifetime when bounce): returns 0 (give up: fail the
 * recipients; a bounce is not bounced). Else 1 and *next_r = now + delay,
 * but never past the expiry time, so that the last attempt is made
 * there. A lifetime of 0 gives up after the first failure, as in Postfix.
 */
int smtp_queue_next_attempt(const struct smtp_queue_sched *sched,
    time_t arrival, unsigned int attempts, bool bounce, time_t now,
    time_t *next_r);

/*
 * The envelope format, exposed for tests and tools. smtp_queue_env_format
 * appends env's text to out (see smtp_queue.c for the fields); -1 if it
 * would pass out's maximum or SMTP_QUEUE_ENV_MAX.
 * smtp_queue_env_parse parses data[0..len) strictly (fields in their
 * order, each once, numbers in canonical form, escapes as written, the
 * final "end" line, the id line equal to id unless id is NULL): 0 and
 * *env_r (unlocked; free it), or -1 with *line_r the line at fault (0:
 * the file as a whole) and the error "line N: reason" (no file name: the
 * caller knows it).
 */
int smtp_queue_env_format(const struct smtp_queue_env *env, struct buf *out,
    const char **error_r);
int smtp_queue_env_parse(const char *id, const unsigned char *data,
    size_t len, struct smtp_queue_env **env_r, unsigned int *line_r,
    const char **error_r);

/*
 * Test hook, for the unit tests only (NULL in the programs): called before
 * each step below; a nonzero return is taken as the errno of that step's
 * system call, which is then not made (ENOSPC simulates a full disk). A
 * hook that _exit()s simulates a crash at that step.
 */
enum smtp_queue_step {
	SMTP_QUEUE_STEP_WRITE,		/* each write(2) of content */
	SMTP_QUEUE_STEP_DATA_FSYNC,	/* commit: fsync tmp/ID */
	SMTP_QUEUE_STEP_DATA_LINK,	/* link tmp/ID -> data/ID */
	SMTP_QUEUE_STEP_TMP_UNLINK,	/* unlink tmp/ID */
	SMTP_QUEUE_STEP_DATA_DIRSYNC,	/* fsync data/ */
	SMTP_QUEUE_STEP_ENV_WRITE,	/* write tmp/ID.e */
	SMTP_QUEUE_STEP_ENV_FSYNC,	/* fsync tmp/ID.e */
	SMTP_QUEUE_STEP_ENV_RENAME,	/* tmp/ID.e -> env/ID: the commit */
	SMTP_QUEUE_STEP_ENV_DIRSYNC,	/* fsync env/ */
	SMTP_QUEUE_STEP_COMMITTED,	/* before commit returns 0 */
	SMTP_QUEUE_STEP_SAVE_WRITE,	/* save: write tmp/ID.s */
	SMTP_QUEUE_STEP_SAVE_FSYNC,
	SMTP_QUEUE_STEP_SAVE_RENAME,	/* tmp/ID.s -> env/ID */
	SMTP_QUEUE_STEP_SAVE_DIRSYNC,
	SMTP_QUEUE_STEP_COUNT
};
extern int (*smtp_queue_test_hook)(enum smtp_queue_step step);

#endif
