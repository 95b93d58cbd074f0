/*
 * smtp_bounce.h: delivery status notifications for mail that failed: a
 * bounce (RFC 3464 multipart/report; report-type=delivery-status) to the
 * envelope sender of a queued message, about its failed recipients, put
 * into the queue as a new message from the null sender <>, which is never
 * bounced itself.
 *
 * The report has three parts, as Postfix's bounce(8) writes them: a
 * human-readable text ("This is the mail system at host X. I'm sorry to
 * have to inform you ..." and one paragraph per recipient quoting the
 * diagnostic); a message/delivery-status part (Reporting-MTA, X-Loft-
 * Queue-ID, X-Loft-Sender, Original-Envelope-Id, Arrival-Date, then per
 * recipient Final-Recipient, Original-Recipient from ORCPT, Action:
 * failed, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date); and the
 * original: message/rfc822 in full, or text/rfc822-headers when the sender
 * asked for headers only (RET=HDRS) or the original is larger than
 * bounce_size_limit (Postfix: "When truncating a large message, don't
 * damage the MIME structure: send the message headers only").
 *
 * Lines end in CRLF, as the queue keeps all content (smtp_queue.h). No
 * line we write passes 998 bytes; text lines are folded near 78.
 *
 * Which recipients are reported: state SMTP_QUEUE_FAILED, and NOTIFY not
 * given or including FAILURE (RFC 3461 section 4.1: NEVER, or a list
 * without FAILURE, asks for no failure report). The queue has no state
 * "failed and reported", so a failed recipient stays reportable as long
 * as the message is queued: call smtp_bounce_enqueue once, when no
 * recipient is due any more (smtp_queue_env_due false), just before the
 * message is removed. A crash between the bounce's commit and that
 * removal sends the bounce twice (a duplicate, never a loss).
 *
 * The diagnostic of a recipient (smtp_queue_rcpt.diag, at most
 * SMTP_QUEUE_DIAG_MAX bytes) is read as qmgr records it, "DSN TEXT": an
 * optional enhanced status code ("c.s.d ", RFC 3463), then TEXT in one
 * of these forms:
 *
 *   host H[A] said: 550 5.1.1 text (in reply to RCPT TO command)
 *       a remote reply, as Postfix words it: Remote-MTA: dns; H and
 *       Diagnostic-Code: smtp; 550 5.1.1 text
 *   550 5.1.1 text
 *       a reply from an unnamed server: Diagnostic-Code: smtp; ...
 *   anything else: a local reason, Diagnostic-Code: X-Loft; TEXT
 *
 * The text part quotes TEXT. Status is the leading code when its class is
 * 5 or 4 (4: a temporary failure that outlived maximal_queue_lifetime,
 * reported as Postfix does, RFC 3463 "persistent transient failure");
 * else the reply's enhanced code when its class matches the reply code's;
 * else C.0.0 from a 5xx or 4xx reply code; else 5.0.0. The diagnostic
 * came from the network: in the report its bytes outside printable ASCII
 * become '?'.
 * ORCPT and ENVID are xtext (RFC 3461 section 4) and shown decoded, or as
 * sent when the decoded text would not be printable ASCII.
 *
 * Errors are "bounce: ..." text in a static buffer of this module, valid
 * until the next call into it.
 */
#ifndef LOFT_SMTP_BOUNCE_H
#define LOFT_SMTP_BOUNCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "smtp_queue.h"

/* bounce_size_limit, with Postfix's name, meaning and default: the
 * largest original returned in full; a larger one is returned as its
 * headers only. */
#define SMTP_BOUNCE_DEF_SIZE_LIMIT	50000
/* Of an original returned as headers only, at most this many bytes of
 * its header are returned (Postfix's header_size_limit), cut at a line
 * end. */
#define SMTP_BOUNCE_HEADER_MAX		102400
/* A MIME boundary we choose: 7 + 32 characters ("=_loft_" and hex). */
#define SMTP_BOUNCE_BOUNDARY_MAX	70

/* What a report is made from. Everything is borrowed. */
struct smtp_bounce_in {
	/* The original message: sender, ID, arrival, ENVID, RET and the
	 * recipients (the failed ones that asked for it are reported). */
	const struct smtp_queue_env *env;
	const char *reporting_mta;	/* myhostname: From:, Reporting-MTA */
	const char *postmaster;		/* named in the text; NULL:
					   "postmaster" */
	const char *id;			/* the report's own queue ID, for
					   Received: and Message-ID:; NULL:
					   neither is written */
	time_t now;			/* Date: and Received: */
	uint64_t bounce_size_limit;	/* see above; 0: no limit */
	/* Tried first as the MIME boundary (tests); NULL or found in the
	 * report: random ones. At most SMTP_BOUNCE_BOUNDARY_MAX bytes of
	 * RFC 2046 bchars. */
	const char *boundary;
};

/*
 * smtp_bounce_due: whether recipient i (< env->rcpt_count) is one a bounce
 * reports: failed, and NOTIFY not given or with FAILURE.
 */
bool smtp_bounce_due(const struct smtp_queue_env *env, unsigned int i);

/*
 * smtp_bounce_compose: append the whole report (header and body, CRLF
 * lines) for in to out. content_fd is the original's content (read with
 * pread from offset 0 to its size, the offset untouched; not closed), or
 * -1: the report then has no third part. Memory: the part of the original
 * returned (at most bounce_size_limit, or SMTP_BOUNCE_HEADER_MAX of
 * header) is held in memory. Returns 0; 1 when no bounce is due (the
 * null sender, or no recipient smtp_bounce_due; out unchanged); -1 when
 * the content cannot be read, in->boundary is malformed, or out would
 * pass its maximum (out is then truncated back).
 */
int smtp_bounce_compose(const struct smtp_bounce_in *in, int content_fd,
    struct buf *out, const char **error_r);

/*
 * smtp_bounce_set_size_limit: bounce_size_limit for smtp_bounce_enqueue
 * (the caller passes conf_int("bounce_size_limit") at start-up; until
 * then SMTP_BOUNCE_DEF_SIZE_LIMIT).
 */
void smtp_bounce_set_size_limit(uint64_t limit);

/*
 * smtp_bounce_enqueue: write a bounce for env (the original, loaded from
 * q) to env's sender about every recipient smtp_bounce_due, as a new
 * message in q from the null sender with one recipient, the sender,
 * fsynced and committed as smtpd commits mail (smtp_queue_commit).
 * content_fd: the original's content as for smtp_bounce_compose, or -1 to
 * open it from q (a content that is gone gives a report without the
 * original). reporting_mta: myhostname; postmaster as in smtp_bounce_in.
 * Logs the new message's "NEWID: from=<>, size=N, nrcpt=1 (queue
 * active)" line (the caller logs "ID: sender non-delivery notification:
 * NEWID", as qmgr does). Returns 0 with the new ID in
 * new_id_r (new_id_size at least SMTP_QUEUE_ID_MAX, else -1 at once); 1
 * when no bounce is due (null sender: never bounce a bounce; no failed
 * recipient; every failed one with NOTIFY without FAILURE), nothing
 * written; -1 and *error_r ("bounce: ...", a full disk saying "disk
 * full" and errno kept) with nothing left in the queue.
 */
int smtp_bounce_enqueue(struct smtp_queue *q,
    const struct smtp_queue_env *env, int content_fd,
    const char *reporting_mta, const char *postmaster, char *new_id_r,
    size_t new_id_size, const char **error_r);

/*
 * smtp_bounce_xtext_decode: RFC 3461 xtext ("+2B" for '+') in text,
 * decoded into out (NUL-terminated, at most outsize - 1 bytes). 0; -1
 * when text is not xtext (a '+' without two upper-case hex digits, a byte
 * outside '!'..'~', a raw '='), the decoded bytes hold one outside
 * printable ASCII, or it does not fit.
 */
int smtp_bounce_xtext_decode(const char *text, char *out, size_t outsize);

/* Tests only (NULL / 0 in the programs): smtp_bounce_enqueue's boundary
 * to try first, and its clock instead of time(NULL). */
extern const char *smtp_bounce_test_boundary;
extern time_t smtp_bounce_test_now;

#endif
