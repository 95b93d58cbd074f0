/*
 * smtp_pickup.h: local submission without a privileged program: the
 * maildrop, into which `sendmail` (ctl/ctl_sendmail.c, run by any local
 * user) drops one file per message, and the pickup, which the queue
 * manager (mail_owner) runs to move those files into the queue.
 *
 * Layout, beside the queue's own directories (doc/design.md, "Local
 * submission"):
 *
 *   QUEUE/            mode 0711: others may reach maildrop and public by
 *                     name, and list or open nothing else
 *   QUEUE/maildrop/   mode 1733, mail_owner: anyone may create a file,
 *                     nobody else may list the directory or remove
 *                     another's file
 *   QUEUE/public/     mode 0711; public/pickup is a FIFO (mode 0622) that
 *                     sendmail writes one byte to, to wake the pickup
 *
 * A maildrop file is written under a temporary name ("t." and 26 random
 * base-32 digits), fsynced, and renamed to its final name ("d", 11 digits
 * of seconds, ".", 26 random digits), so the pickup never sees a file
 * before it is complete. Names are random because the files are readable
 * by mail_owner only through their mode (0644: the pickup is not their
 * owner), and the directory cannot be listed by others. The submitting
 * user is the file's owner; the file does not name it.
 *
 * The file (text lines end in LF; content is any bytes):
 *
 *   loft-maildrop 1
 *   sender <alice>              the envelope sender ("<>": null); an
 *   fullname Alice Example      address without '@' gets @myorigin;
 *   rcpt <bob@example.org>      full name for From: (may be empty);
 *   rcpt <carol>                1 .. smtpd_recipient_limit recipients
 *   content 1234                the message's length in bytes, then
 *   <1234 bytes>                the message as sendmail read it (LF or
 *   end                         CRLF lines), then "end" and nothing more
 *
 * Errors are text in a static buffer of this module, valid until the next
 * call into it.
 */
#ifndef LOFT_SMTP_PICKUP_H
#define LOFT_SMTP_PICKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "buf.h"
#include "smtp_queue.h"

#define SMTP_PICKUP_MAILDROP	"maildrop"
#define SMTP_PICKUP_PUBLIC	"public"
#define SMTP_PICKUP_FIFO	"public/pickup"
#define SMTP_PICKUP_MAGIC	"loft-maildrop 1"
/* "d" + 11 digits + "." + 26 random digits, and the NUL. */
#define SMTP_PICKUP_NAME_MAX	40
/* A full name (-F, or the passwd entry's): bytes, no control byte. */
#define SMTP_PICKUP_FULLNAME_MAX	256
/* What is read of a maildrop file when message_size_limit is 0 (no
 * limit): the pickup holds one file in memory at a time. */
#define SMTP_PICKUP_HARD_MAX	(256u * 1024 * 1024)
/* A temporary file older than this is a crashed sendmail's: removed. */
#define SMTP_PICKUP_TMP_AGE	SMTP_QUEUE_CLEANUP_AGE

/* The limits a message is held to, from the configuration
 * (smtp_pickup_limits_conf) or set by a test. A line is counted with a
 * CRLF ending, as the queue stores it; sizes too. */
struct smtp_pickup_limits {
	uint64_t size_max;	/* message_size_limit; 0: SMTP_PICKUP_HARD_MAX */
	unsigned int rcpt_max;	/* smtpd_recipient_limit */
	size_t line_max;	/* SMTP_TEXT_LINE_DEFAULT, as smtpd's DATA */
};

/* A parsed maildrop file: strings owned, content borrowed from the data
 * parsed. */
struct smtp_pickup_file {
	char *sender;		/* without <>, "" for the null sender */
	char *fullname;		/* may be "" */
	char **rcpts;
	unsigned int rcpt_count;
	const unsigned char *content;
	size_t content_len;
};

/* What the pickup adds, and what it knows of the message. */
struct smtp_pickup_stamp {
	const char *hostname;	/* myhostname: Received:, Message-ID: */
	const char *origin;	/* myorigin: unqualified addresses */
	const char *id;		/* the queue ID */
	uid_t uid;		/* the file's owner */
	const char *login;	/* uid's login name, for From: with a null
				   sender; NULL: "uid N" is not an address,
				   then "MAILER-DAEMON" */
	time_t submitted;	/* the file's mtime: Date: */
	time_t now;		/* Received: */
};

/* smtp_pickup_limits_conf: the limits from the loaded configuration. */
void smtp_pickup_limits_conf(struct smtp_pickup_limits *lim);

/*
 * smtp_pickup_content_check: whether content[0..len) fits lim: at most
 * size_max bytes and no line over line_max bytes, both counted after LF
 * line ends became CRLF (a final line without an ending gets one).
 * 0 and *size_r (may be NULL: the bytes counted so), or -1 with *error_r
 * naming the limit ("message size N exceeds ...").
 */
int smtp_pickup_content_check(const unsigned char *content, size_t len,
    const struct smtp_pickup_limits *lim, uint64_t *size_r,
    const char **error_r);

/*
 * smtp_pickup_format: append to out the maildrop file for sender (without
 * <>; "" null), fullname (NULL or ""), the rcpt_count recipients and the
 * content. The caller has checked them (sendmail refuses bad input with
 * its own exit codes); a string with a control byte (a newline too) or
 * over its limit, an empty recipient, or out's maximum reached give -1.
 */
int smtp_pickup_format(struct buf *out, const char *sender,
    const char *fullname, char *const *rcpts, unsigned int rcpt_count,
    const unsigned char *content, size_t len, const char **error_r);

/*
 * smtp_pickup_parse: parse a maildrop file data[0..len) strictly: the
 * lines above in their order, each once (rcpt 1 to lim->rcpt_max times),
 * each address 1 to SMTP_QUEUE_ADDR_MAX bytes (the sender may be empty)
 * without control bytes, the length a canonical decimal number, the
 * content within lim (smtp_pickup_content_check), "end\n" last and
 * nothing after it. Addresses are not qualified or checked here (see
 * smtp_pickup_address). 0 and *f (free with smtp_pickup_file_clear), or
 * -1 with *error_r ("line N: ..." or "content: ...") and *f empty.
 */
int smtp_pickup_parse(const unsigned char *data, size_t len,
    const struct smtp_pickup_limits *lim, struct smtp_pickup_file *f,
    const char **error_r);
void smtp_pickup_file_clear(struct smtp_pickup_file *f);

/*
 * smtp_pickup_address: addr qualified (an address without '@' gets
 * "@origin") and checked as an RFC 5321 path (smtp_path_parse, SMTPUTF8
 * allowed; "" only when null_ok), into out (without <>; at least
 * SMTP_QUEUE_ADDR_MAX + 1 bytes) in the form smtp_path_format writes
 * (domain in lower case). 0, or -1 with *error_r.
 */
int smtp_pickup_address(const char *addr, const char *origin, bool null_ok,
    char *out, size_t outsize, const char **error_r);

/*
 * smtp_pickup_message: append to out the queue content of f: the pickup's
 * Received: line, then f's content with every line ending CRLF (LF and
 * CRLF become CRLF; a final line without one gets it), and at the end of
 * its header block the fields it lacks: From: (f's sender, with its full
 * name; for a null sender the login of the stamp, or MAILER-DAEMON, at
 * origin), Date: (the submission time), Message-ID: (<ID@hostname>). The
 * header block ends at the first empty line, or before the first line
 * that is neither a field nor a continuation (an empty line is then put
 * in). f's sender must be qualified already. -1 if out's maximum was
 * reached.
 */
int smtp_pickup_message(const struct smtp_pickup_file *f,
    const struct smtp_pickup_stamp *st, struct buf *out);

/*
 * smtp_pickup_prepare: as the queue's owner (the queue manager at start),
 * make what local submission needs in queue_dir, which smtp_queue_open
 * has checked: the queue directory itself mode 0711 (was 0700), maildrop
 * (1733), public (0711) and public/pickup (a FIFO, 0622), each created if
 * missing and its mode set; refused: any of them not ours, not of its
 * type, or a symbolic link. 0 or -1.
 */
int smtp_pickup_prepare(const char *queue_dir, const char **error_r);

/*
 * smtp_pickup_fifo_open: public/pickup of queue_dir opened for the queue
 * manager to watch (read end, non-blocking; opened read-write so that the
 * last writer closing it does not leave it readable at EOF for ever).
 * Readable means a wake-up: drain it (smtp_pickup_fifo_drain), then
 * smtp_pickup_run. The fd, or -1 with *error_r.
 */
int smtp_pickup_fifo_open(const char *queue_dir, const char **error_r);
/* smtp_pickup_fifo_drain: read what is in the FIFO, without blocking. */
void smtp_pickup_fifo_drain(int fd);

/*
 * smtp_pickup_set_queued: cb(id, ctx) is called by smtp_pickup_run for
 * each message it commits into the queue (the queue manager notes it
 * due now); NULL: none.
 */
void smtp_pickup_set_queued(void (*cb)(const char *id, void *ctx), void *ctx);

/*
 * smtp_pickup_run: move up to max finished files of maildrop_dir (oldest
 * name first) into queue q, each as a new message (smtp_pickup_message),
 * committed before the maildrop file is removed: a crash in between
 * gives a duplicate, never a loss. The limits, myhostname and myorigin
 * come from the configuration. Each file is untrusted: opened without
 * following a symbolic link and without blocking; a file that is not
 * regular, or has other links than its name, or a name not of sendmail's
 * form is removed with a warning (never read); one that does not parse or
 * breaks a limit is moved to the queue's corrupt/ as "maildrop.NAME" with
 * a warning naming its owner; temporary names older than
 * SMTP_PICKUP_TMP_AGE are removed. Logs "ID: uid=N from=<sender>" and
 * "ID: from=<...>, size=N, nrcpt=N (queue active)" per message.
 * *picked_r (may be NULL): messages queued. 0; or -1 with *error_r when
 * the maildrop cannot be read or the queue refuses a message (the file
 * stays for the next run).
 */
int smtp_pickup_run(struct smtp_queue *q, const char *maildrop_dir,
    unsigned int max, unsigned int *picked_r, const char **error_r);

/*
 * smtp_pickup_drop: sendmail's side: write file[0..len) into maildrop_dir
 * atomically (created O_EXCL under a temporary name, mode 0644, written,
 * fsynced, renamed to its final name, the directory fsynced; a caller
 * who may not read the directory, any user but root and mail_owner,
 * makes the rename durable with syncfs(2) through the file). 0 and
 * name_r, or -1 with *error_r (the temporary file removed).
 */
int smtp_pickup_drop(const char *maildrop_dir, const unsigned char *file,
    size_t len, char name_r[SMTP_PICKUP_NAME_MAX], const char **error_r);
/* smtp_pickup_wake: write one byte to fifo_path without blocking; true if
 * a pickup was listening (false: none, or the FIFO already full). */
bool smtp_pickup_wake(const char *fifo_path);

#endif
