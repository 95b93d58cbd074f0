/*
 * localcmd.h: delivery to the commands ("|command") and files ("/file",
 * "/dir/") of the administrator's alias maps, as Postfix's local(8) does
 * them ("EXTERNAL COMMAND DELIVERY", "EXTERNAL FILE DELIVERY"): in a
 * short-lived process the master forks for each, as the owner of the
 * alias database or include file the target came from, or default_privs
 * when that owner is root (doc/design.md, "Process model").
 *
 * The record (qmgr -> master; lib/ipc types, fields in order):
 *
 *	LOFTD_DELIVER_LOCAL  fd: the content (data/ID), read-only. u32 req
 *			(qmgr's, repeated in the LOFTD_DELIVER_RESULT),
 *			str queue_id, str alias (the local name qmgr gave
 *			smtp_alias_expand), u32 kind (SMTP_ALIAS_COMMAND or
 *			SMTP_ALIAS_FILE), str target (the command line or
 *			the path, as expanded), str rcpt (the address:
 *			Delivered-To:, RECIPIENT), str orig_rcpt
 *			(ORIGINAL_RECIPIENT), str sender (Return-Path:,
 *			SENDER; "" for <>). Answered exactly once with
 *			LOFTD_DELIVER_RESULT, as a LOFTD_DELIVER is.
 *
 * Trust: the master believes qmgr's request only as "run this target of
 * alias A now": it expands A again itself, from the alias maps of the
 * configuration it runs with, and runs the target only if that expansion
 * holds it, with the uid that expansion gives (smtp_alias_target's
 * source_uid). A qmgr process that was taken over can therefore choose
 * which of the administrator's commands and files run and when, with
 * which headers and environment strings, but no other command, no other
 * path and no other uid; never root, never mail_owner.
 *
 * Each delivery process leads a session of its own (setsid): whatever
 * the command starts stays in it, even in process groups of its own
 * (rules_cmd_run makes one), unless it calls setsid itself. When the
 * master's safety timer fires it kills that whole session.
 */
#ifndef LOFT_LOCALCMD_H
#define LOFT_LOCALCMD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "loftd.h"

/* Delivery processes at once; more requests wait, in order. */
#define LOCALCMD_PROCS_MAX	16
/* Bytes of a command's output (standard output and error together) kept
 * for the diagnostic; the rest is read and dropped. */
#define LOCALCMD_OUTPUT_MAX	4096
/* Bytes of the command line and of its output's first line quoted in a
 * diagnostic (the queue keeps SMTP_QUEUE_DIAG_MAX of it). */
#define LOCALCMD_QUOTE_MAX	160
/* Seconds the master gives a delivery process beyond command_time_limit
 * (locks, fsync) before it kills it, with its session, and defers the
 * delivery. For tests only, the environment variable LOFT_LOCALCMD_GRACE
 * (decimal seconds, 0 to LOCALCMD_GRACE; anything else is ignored with a
 * warning) read once by localcmd_init shortens it. */
#define LOCALCMD_GRACE		60
#define LOCALCMD_GRACE_ENV	"LOFT_LOCALCMD_GRACE"
/* Passes over /proc when the safety timer kills a session: one more
 * after each that found a live process, for what forked meanwhile. */
#define LOCALCMD_KILL_ROUNDS	4
/* The answer to a request during shutdown (as master.c's for
 * LOFTD_DELIVER). */
#define LOCALCMD_STOPPING_TEXT	"mail system is shutting down"

struct ioloop;
struct ipc_msg;

/* How the master answers the asker of request req (its
 * master_deliver_answer). */
typedef void localcmd_answer_fn(void *asker, uint32_t req,
    enum loftd_dstatus status, const char *dsn, const char *text);

/* localcmd_init: run on loop, answering through answer; reads
 * LOCALCMD_GRACE_ENV. */
void localcmd_init(struct ioloop *loop, localcmd_answer_fn *answer);
/*
 * localcmd_stop: the master is shutting down (its SIGTERM). Requests
 * waiting for a process, and every request from now on, are answered at
 * once: LOFTD_DELIVER_TEMP, "4.3.0", LOCALCMD_STOPPING_TEXT; no process
 * starts any more. Processes running go on, and their answers still go
 * to qmgr while it lives (a retiring qmgr waits for them, up to
 * shutdown_timeout).
 */
void localcmd_stop(void);
/* localcmd_deinit: forget everything; processes still running are left
 * to finish under their own command_time_limit (logged with their
 * number; their answers are lost: qmgr delivers those again, a
 * duplicate, never a loss), requests waiting are closed unanswered. */
void localcmd_deinit(void);

/*
 * localcmd_request: a LOFTD_DELIVER_LOCAL record m from asker (the qmgr
 * process); takes m's descriptor. A well-formed record is answered
 * exactly once through the answer function: at once when it is refused
 * (not in the alias maps, a bad field, no such user, after
 * localcmd_stop), or when its process has reported. One that must wait
 * for a process (LOCALCMD_PROCS_MAX run) is logged as waiting. Returns
 * 0, or -1 with *error_r for a malformed record (a bug in qmgr, which
 * would wait for an answer forever: the caller closes its channel).
 */
int localcmd_request(void *asker, struct ipc_msg *m, const char **error_r);

/* localcmd_asker_gone: asker exited: its answers are dropped. */
void localcmd_asker_gone(void *asker);

/* localcmd_reaped: the master reaped pid, which is none of its roles:
 * true if it was a delivery process of this module. */
bool localcmd_reaped(pid_t pid, int status);

/*
 * For the delivery process, and for tests: what a command's end means,
 * as Postfix's pipe_command() says it. status is the exit status (128 +
 * N for signal N), timed_out whether command_time_limit killed it, out
 * its output (may be NULL). Sets *dsn_r (static) and writes the
 * diagnostic into text (size bytes): "delivered to command: CMD",
 * "Command died with status 1: \"CMD\". Command output: LINE", ...
 */
enum loftd_dstatus localcmd_command_status(const char *cmd, int status,
    bool timed_out, const char *out, size_t out_len, const char **dsn_r,
    char *text, size_t size);

#endif
