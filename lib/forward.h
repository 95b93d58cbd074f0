/*
 * forward.h: a user's ~/.forward, as sendmail and Postfix's local(8) read
 * it: addresses to send the message on to, "|command" pipes, /file (mbox)
 * and /dir/ (Maildir) targets, :include:/path lists, and \user (or the
 * user's own name): the user's own mailbox, without forwarding again.
 *
 * The file belongs to the user, who may write anything into it; so may
 * whoever could write it, which is why forward_read refuses a file that
 * is group- or world-writable, owned by someone else, or a symbolic link
 * that leads out of the home directory. The caller then delivers to the
 * mailbox and logs the reason: a bad .forward never loses mail.
 *
 * Running the targets goes through the callbacks of the rule engine
 * (rules.h), so that a .forward's /file and the procmail recipe that
 * names the same file write it the same way, under the same locks.
 */
#ifndef LOFT_FORWARD_H
#define LOFT_FORWARD_H

#include <sys/types.h>
#include <stdbool.h>
#include <stddef.h>

#include "rules.h"

/* Bounds; each is tested at N and N + 1 in t/unit/forward.c. */
#define FORWARD_FILE_MAX	(64 * 1024)	/* bytes of one file */
#define FORWARD_ENTRY_MAX	1024	/* bytes of one entry */
#define FORWARD_ENTRIES_MAX	256	/* entries, includes counted */
#define FORWARD_INCLUDE_DEPTH	5	/* :include: within :include: */

enum forward_kind {
	FORWARD_SELF,		/* \user, or the user's own name */
	FORWARD_ADDRESS,	/* send on to this address */
	FORWARD_PIPE,		/* |command, run with $SHELL -c */
	FORWARD_MBOX,		/* /path/file */
	FORWARD_MAILDIR,	/* /path/dir/ */
	FORWARD_INCLUDE		/* :include:/path (forward_parse only:
				   forward_read replaces it by the entries
				   of that file) */
};

struct forward_entry {
	enum forward_kind kind;
	char *value;		/* owned: the address, command or path;
				   the name for FORWARD_SELF */
	unsigned line;		/* in its file, for the log */
};

struct forward {
	struct forward_entry *e;	/* owned */
	size_t n, alloc;
};

/*
 * forward_parse: append the entries of text (len bytes of a .forward or
 * an :include: file) to f. self is the user's name: "\self" and a bare
 * "self" become FORWARD_SELF. Entries are separated by commas and line
 * ends; a line whose first non-blank byte is '#' is a comment; a double-
 * quoted entry may hold commas and blanks ("|cmd a, b"); an unquoted
 * "|command" runs to the end of its line. Returns 0, or -1 with *error_r
 * ("NAME:LINE: what"): a NUL byte, an entry over FORWARD_ENTRY_MAX, more
 * than FORWARD_ENTRIES_MAX entries, an unterminated quote, a relative
 * path, an address that is not one.
 */
int forward_parse(const char *name, const char *text, size_t len,
    const char *self, struct forward *f, const char **error_r);

/*
 * forward_read: read and parse the .forward at path for the user (uid,
 * home, name self), following :include: lists (as forward_parse, at most
 * FORWARD_INCLUDE_DEPTH deep). The file must be a regular file owned by
 * uid (an :include: file: by uid or root), writable by no one else, and,
 * if it is a symbolic link, lead to such a file inside home. Returns 1
 * with the entries in *f (which must be empty; free with forward_free),
 * 0 when there is no .forward or it holds no entry, -1 with *error_r when
 * it is refused or does not parse.
 */
int forward_read(const char *path, uid_t uid, const char *home,
    const char *self, struct forward *f, const char **error_r);

void forward_free(struct forward *f);

/* What running the entries needs to know. Strings are borrowed. */
struct forward_env {
	const char *user;	/* LOGNAME, USER */
	const char *home;	/* HOME, and the commands' directory */
	const char *shell;	/* NULL: /bin/sh */
	const char *path;	/* PATH; NULL: "/usr/bin:/bin" */
	const char *sender;	/* the envelope sender; "" for <> */
	const char *recipient;	/* RECIPIENT, for commands */
	const char *sendmail;	/* the program addresses are given to */
	unsigned command_timeout;	/* seconds; 0: none */
};

struct forward_result {
	bool self;		/* the user's mailbox is among the targets:
				   the caller delivers there too */
	enum rules_status status;	/* the worst of the targets */
	unsigned done;		/* targets that took the message */
	char error[256];	/* the first failure, for the log */
};

/*
 * forward_run: hand msg (len bytes, as it is to be stored) to every entry
 * of f: the addresses together, in one run of env->sendmail (-oi -f
 * SENDER -- ADDRESS...), which keeps the envelope sender as Postfix's
 * local does; pipes through cb->command (a non-zero exit fails, mapped
 * by rules_exit_status); files through cb->folder. A NULL cb->command
 * runs commands with rules_cmd_run. Every entry is tried even after one
 * failed; res->status is the worst outcome. Returns 0, or -1 if no target
 * took the message and none is the mailbox.
 */
int forward_run(const struct forward *f, const struct forward_env *env,
    const struct rules_callbacks *cb, void *ctx, const unsigned char *msg,
    size_t len, struct forward_result *res);

#endif
