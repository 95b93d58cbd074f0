/*
 * qmgr_smtp.h: remote delivery for the queue manager (qmgr.c): the
 * recipients of a message that are not local, grouped by destination
 * (relayhost, else the recipient's domain), sent by smtp_client sessions
 * that are kept per destination and reused for the next message to it.
 * Bounded: default_destination_concurrency_limit sessions per
 * destination, default_process_limit in all.
 *
 * Everything runs on qmgr's loop but the destination lookups, which block
 * (smtp_mx.h): one lookup per loop turn, bounded by short resolver
 * timeouts, results kept while the destination is in use, a failed one
 * kept for QMGR_SMTP_DEAD_SECS, and after a lookup that timed out no
 * other for as long (doc/design.md, "Outbound").
 */
#ifndef LOFT_QMGR_SMTP_H
#define LOFT_QMGR_SMTP_H

#include <stdbool.h>
#include <sys/time.h>

#include "loftd.h"		/* enum loftd_dstatus */

struct ioloop;
struct smtp_queue_env;

/* How long a failed destination (lookup, loop, every address down) is
 * failed again at once without a new try; a flush forgets it. */
#define QMGR_SMTP_DEAD_SECS	60

/*
 * A message as qmgr hands it over; the caller's, and it must stay until
 * every job of it has called job_done. env and fd are borrowed (the
 * locked envelope and its content).
 */
struct qmgr_smtp_msg {
	const char *id;
	const struct smtp_queue_env *env;
	int fd;
	struct timeval run_start;	/* when this run took the message */
	/* part: one outcome for recipient rcpt (an index into env->rcpts)
	 * delivered as to; relay "host[addr]:port" or "none"; delays
	 * "a/b/c/d" or NULL. Logged and ranked by the caller. */
	void (*part)(void *ctx, unsigned rcpt, const char *to,
	    const char *relay, const char *delays, enum loftd_dstatus status,
	    const char *dsn, const char *text);
	/* job_done: one job (a value qmgr_smtp_submit counted) is over. */
	void (*job_done)(void *ctx);
	void *ctx;
	struct qmgr_smtp_job *open;	/* private: jobs being filled */
};

/*
 * qmgr_smtp_init: read the settings (relayhost, smtp_*), make the TLS
 * client context, read smtp_sasl_password_maps and the local listener
 * addresses. Call it before dropping privileges (the password file may
 * be root's). kick is called when sessions end, so that a retired qmgr
 * can see it is done. Fatal on a bad relayhost or, at encrypt and
 * verify, a TLS context that cannot be made.
 */
void qmgr_smtp_init(struct ioloop *loop, void (*kick)(void));
/* qmgr_smtp_deinit: close every session at once, free everything; jobs
 * still waiting are dropped without a call (the caller is going). */
void qmgr_smtp_deinit(void);

/*
 * qmgr_smtp_add: recipient rcpt of m, to be delivered to address to (the
 * recipient, or what an alias made of it) in domain (lower case) from
 * sender ("" for <>). Grouped with what was added before into jobs by
 * destination and sender; nothing is sent before qmgr_smtp_submit.
 */
void qmgr_smtp_add(struct qmgr_smtp_msg *m, unsigned rcpt, const char *to,
    const char *domain, const char *sender);
/* qmgr_smtp_submit: hand m's jobs to their destinations; returns how many
 * there are: job_done is called once for each, never from inside this
 * call. */
unsigned qmgr_smtp_submit(struct qmgr_smtp_msg *m);

/* qmgr_smtp_flush: forget failed destinations and lookups (a flush tries
 * everything again). */
void qmgr_smtp_flush(void);
/* qmgr_smtp_retire: end idle sessions (QUIT), start no new ones. */
void qmgr_smtp_retire(void);
/* qmgr_smtp_busy: whether any session or job is left. */
bool qmgr_smtp_busy(void);

#endif
