/*
 * rules.h: procmail-compatible delivery rules (procmailrc(5)), parsed into
 * a tree and evaluated against one message with PCRE2.
 *
 * The engine decides; it writes no mail itself. What a recipe delivers
 * is handed to the caller's callbacks (a folder path and its kind, a
 * command, a sendmail command line), so that loft-deliver and loftd's
 * mail process can each store through their own store (store.h) and keep
 * the index right. Filters (`f`), `* ?` conditions, backquotes and
 * `VAR=|cmd` captures change only the engine's own state, so the engine
 * runs them itself (rules_cmd_run).
 *
 * What is supported, and where it differs from procmail 3.23, is listed
 * in doc/design.md, "## Rules".
 */
#ifndef LOFT_RULES_H
#define LOFT_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

struct buf;

/* Bounds of the parser and of an evaluation; every one is checked at N
 * (allowed) and N + 1 (refused) in t/unit/rules_parse.c. */
#define RULES_FILE_MAX		(256 * 1024)	/* bytes of one rule file */
#define RULES_LINE_MAX		4096	/* bytes of a line, joined or not */
#define RULES_DEPTH_MAX		32	/* nested { } blocks */
#define RULES_RECIPES_MAX	2000	/* recipes in one file */
#define RULES_INCLUDE_MAX	8	/* INCLUDERC inside INCLUDERC ... */
#define RULES_VALUE_MAX		(64 * 1024)	/* an expanded value */
#define RULES_VARS_MAX		256	/* variables one evaluation holds */
#define RULES_CAPTURE_MAX	(64 * 1024)	/* VAR=|cmd, backquotes */
#define RULES_CLONES_MAX	16	/* `c` blocks running clones */
#define RULES_FILES_MAX		64	/* rule files one evaluation loads
					   (INCLUDERC, SWITCHRC: a file that
					   switches to itself ends here) */

struct rules_limits {
	size_t file_max;
	size_t line_max;
	unsigned depth_max;
	unsigned recipes_max;
	unsigned include_max;
};

/* rules_limits_default: the RULES_*_MAX values above. */
void rules_limits_default(struct rules_limits *l);

/* Recipe flags (procmailrc(5) "Flags"). */
#define RULES_F_HEADER_GREP	0x0001u	/* H */
#define RULES_F_BODY_GREP	0x0002u	/* B */
#define RULES_F_HEADER_FEED	0x0004u	/* h */
#define RULES_F_BODY_FEED	0x0008u	/* b */
#define RULES_F_COPY		0x0010u	/* c */
#define RULES_F_FILTER		0x0020u	/* f */
#define RULES_F_WAIT		0x0040u	/* w */
#define RULES_F_WAIT_QUIET	0x0080u	/* W */
#define RULES_F_IGNORE_WERR	0x0100u	/* i */
#define RULES_F_CASE		0x0200u	/* D */
#define RULES_F_AND		0x0400u	/* A */
#define RULES_F_AND_OK		0x0800u	/* a */
#define RULES_F_ELSE		0x1000u	/* E */
#define RULES_F_ELSE_ERR	0x2000u	/* e */
#define RULES_F_RAW		0x4000u	/* r */

struct rules;
struct rules_parser;

/*
 * The parser is an incremental state machine: feed it the file in pieces
 * of any size (one byte at a time works), then finish. It reads no file
 * itself (rules_parse_file does). Errors are "NAME:LINE: what" in the
 * module's static buffer, valid until the next call into rules_parse.c.
 */
/* rules_parser_new: name is used in errors and as $_; lim NULL: the
 * defaults. Never NULL. */
struct rules_parser *rules_parser_new(const char *name,
    const struct rules_limits *lim);
/* rules_parser_feed: 0 (need more), or -1 with *error_r; after -1 the
 * parser only accepts rules_parser_free. */
int rules_parser_feed(struct rules_parser *p, const void *data, size_t len,
    const char **error_r);
/* rules_parser_finish: end of input: 0 and *r_r (free with rules_free),
 * or -1 with *error_r (an open recipe or block, ...). */
int rules_parser_finish(struct rules_parser *p, struct rules **r_r,
    const char **error_r);
/* rules_parser_free: NULL is ignored; sets *p NULL. */
void rules_parser_free(struct rules_parser **p);

/* rules_parse_buffer: the whole of text at once. 0 or -1. */
int rules_parse_buffer(const char *name, const void *text, size_t len,
    const struct rules_limits *lim, struct rules **r_r,
    const char **error_r);
/* rules_parse_file: read path (a regular file, at most lim->file_max
 * bytes; no symbolic link is refused here: the caller runs as the user)
 * and parse it. 1 parsed, 0 the file does not exist (not an error), -1
 * with *error_r. */
int rules_parse_file(const char *path, const struct rules_limits *lim,
    struct rules **r_r, const char **error_r);
/* rules_file_path: the rule file that setting (mda_rules_file) names for a
 * user whose home is home: "~/x" and "x" under the home, "/x" as it is;
 * false for "" or "none", for a relative name without a home, or when it
 * does not fit in size (rules_file.c: no PCRE2). */
bool rules_file_path(const char *setting, const char *home, char *out,
    size_t size);
/* rules_file_suspicious: why a file whose status is st (stat or fstat, as
 * the caller's symbolic link policy wants) may not be trusted as uid's own
 * instructions (procmail's "suspicious rcfile"; the rule file, .forward
 * and :include: files): not a regular file, owned by neither uid nor
 * (with root_ok) root, or writable by group or others. NULL if it may be
 * trusted, else a static text such as "not owned by the user"
 * (rules_file.c: no PCRE2). */
const char *rules_file_suspicious(const struct stat *st, uid_t uid,
    bool root_ok);
/* rules_free: the tree and the regexes compiled for it; NULL ignored. */
void rules_free(struct rules **r);
/* rules_name: the name given to the parser. */
const char *rules_name(const struct rules *r);
/* rules_dump: a canonical one-line-per-item text of the tree (for tests):
 * "3: assign NAME=value", "5: recipe flags=Hc lock=- {", "6:  cond !re
 * ^Subject", "7:  action folder x", "}" ... Appended to out. */
void rules_dump(const struct rules *r, struct buf *out);

/* Evaluation. */

enum rules_status {
	RULES_OK = 0,
	RULES_TEMPFAIL,		/* try again later */
	RULES_PERMFAIL		/* will not work */
};

enum rules_folder_kind {
	RULES_FOLDER_MBOX,	/* "file": appended, From_ line first */
	RULES_FOLDER_MAILDIR,	/* "dir/": tmp/ then new/ */
	RULES_FOLDER_MH,	/* "dir/.": the next free number */
	RULES_FOLDER_DIR	/* an existing "dir": a new $MSGPREFIX file */
};

struct rules_callbacks {
	/* folder: store msg into path (absolute; "/dev/null" never comes
	 * here). msg is what procmail would write there, header and body as
	 * h and b say: RULES_FOLDER_MBOX, the message without procmail's
	 * From_ line and without the final empty line (the callback writes
	 * its From_ line and the separator, as mbox_append does);
	 * RULES_FOLDER_MAILDIR, the message as it came; RULES_FOLDER_MH and
	 * _DIR, procmail's From_ line, the message, and a final empty line
	 * (procmail writes them so). *stored_r, when set (malloc'd, the engine frees it),
	 * is what $LASTFOLDER becomes (procmail: "dir/new/NAME" for a
	 * Maildir, "dir/N" for MH, else path). */
	enum rules_status (*folder)(void *ctx, enum rules_folder_kind kind,
	    const char *path, const unsigned char *msg, size_t len,
	    char **stored_r, const char **error_r);
	/* command: run argv (argv[0] a path; NULL-terminated) or, when
	 * argv is NULL, shell_cmd with $SHELL -c, with msg on its standard
	 * input, envp its whole environment, cwd its directory: a
	 * delivering pipe (`| cmd`) and a forward (`! addr`, argv being
	 * $SENDMAIL $SENDMAILFLAGS addr...). check: w or W (or a forward):
	 * a non-zero exit fails; else the exit status is ignored, as in
	 * procmail. ignore_werr: i. NULL: the engine runs it with
	 * rules_cmd_run. */
	enum rules_status (*command)(void *ctx, char *const *argv,
	    const char *shell_cmd, char *const *envp, const char *cwd,
	    const unsigned char *msg, size_t len, bool check,
	    bool ignore_werr, const char **error_r);
	/* log: one line for LOGFILE-less diagnostics (errors, VERBOSE);
	 * NULL: log_info/log_warning. */
	void (*log)(void *ctx, bool error, const char *line);
};

/* What the engine knows of the delivery. Strings are borrowed. */
struct rules_env {
	const char *user;	/* LOGNAME and USER */
	const char *home;	/* HOME, and MAILDIR's default */
	const char *shell;	/* SHELL; NULL: /bin/sh */
	const char *path;	/* PATH; NULL: procmail's default */
	const char *sender;	/* envelope sender, "" for <> */
	const char *recipient;	/* for the log; may be NULL */
	const char *orgmail;	/* ORGMAIL and DEFAULT's default: the
				   user's inbox, as a folder path */
	const char *sendmail;	/* SENDMAIL's default */
	const char *hostname;	/* HOST; assigning HOST anything but this
				   or gethostname()'s name stops the rules */
	char *const *args;	/* $1, $2 ... (SHIFT shifts them); borrowed */
	size_t nargs;
	int stdout_fd;		/* a bare "|" writes the message here;
				   <= 0: refused (the recipe fails) */
	unsigned command_timeout;	/* seconds; 0: none */
	struct rules_limits limits;
};

struct rules_result {
	bool delivered;		/* a delivering action, or $DEFAULT, took it */
	bool rules_error;	/* the rule file failed: defaults were used */
	bool host_stop;		/* HOST did not name this host: the rules
				   stopped, nothing was delivered, and (as
				   procmail) that counts as done */
	int exitcode;		/* EXITCODE (or, EXITCODE empty, TRAP's
				   exit) when it is 1..255, for the caller to
				   exit with; 0: the caller's own */
	enum rules_status status;	/* worst folder-write failure */
	unsigned folders;	/* folder writes that succeeded */
	char lastfolder[512];	/* where it went last, for the log */
	char error[512];	/* the first error, for the log */
};

/*
 * rules_run: evaluate r (parsed from r's file; NULL: no rule file) against
 * msg (the message as it is to be stored, header and body, no From_ line),
 * calling cb for every delivery. Falling off the end delivers to
 * $DEFAULT. A runtime error (an INCLUDERC that does not parse, a bound
 * hit) is logged with file and line, sets rules_error, ends the rules and
 * delivers to $ORGMAIL, so a broken rule never loses mail. The message is
 * delivered (res->delivered) when a recipe without `c` delivered it, or
 * $DEFAULT (or, that failing, $ORGMAIL) took it; res->status is the worst
 * failure of a folder write (carbon copies included), which the caller
 * must not acknowledge as success. At the end a global LOCKFILE is
 * removed and $TRAP runs (the message on its standard input, its output
 * into LOGFILE), which with EXITCODE sets res->exitcode. Returns 0, or -1
 * when nothing could be delivered at all (res says why); HOST stopping
 * the rules returns 0 with res->host_stop.
 */
int rules_run(const struct rules *r, const struct rules_env *env,
    const struct rules_callbacks *cb, void *ctx, const unsigned char *msg,
    size_t len, struct rules_result *res);

/*
 * Commands (rules_cmd.c): fork, exec, feed, collect, with a time limit.
 */
struct rules_cmd {
	char *const *argv;	/* NULL: shell -c shell_cmd */
	const char *shell;	/* NULL: /bin/sh */
	const char *shell_cmd;
	char *const *envp;	/* the whole environment; NULL: empty */
	const char *cwd;	/* NULL: inherited */
	const unsigned char *in;	/* standard input */
	size_t in_len;
	struct buf *out;	/* standard output (bounded by its max);
				   NULL: output_fd */
	int output_fd;		/* -1: /dev/null */
	int stderr_fd;		/* -1: /dev/null */
	unsigned timeout;	/* seconds; 0: none */
	mode_t umask;
};

struct rules_cmd_result {
	int status;		/* exit status, or 128 + signal */
	bool timed_out;		/* killed after timeout seconds */
	bool write_error;	/* it did not read all of its input */
	bool out_overflow;	/* more output than out could hold */
};

/* rules_cmd_run: 0 with *res (whatever the command's exit), -1 if it
 * could not be started (fork, pipe), with *error_r. The command runs in
 * its own process group, which is killed (SIGKILL) at the timeout. */
int rules_cmd_run(const struct rules_cmd *c, struct rules_cmd_result *res,
    const char **error_r);

/* rules_exit_status: what a delivering command's exit status means for
 * the delivery: 0 OK; EX_NOUSER, EX_NOHOST, EX_UNAVAILABLE, EX_DATAERR,
 * EX_NOPERM, EX_USAGE, EX_NOINPUT, EX_PROTOCOL, EX_CONFIG permanent;
 * anything else (EX_TEMPFAIL, 1, a signal, a timeout) temporary. */
enum rules_status rules_exit_status(const struct rules_cmd_result *res);

/*
 * The folder callback as loft delivers (rules_store.c), for loft-deliver
 * and loftd's mail process alike: a path inside the user's mail store
 * (its INBOX, a Maildir++ ".A.B/" folder given as "dir/", an mbox folder
 * file below the mbox root) goes through store_deliver, so quota and
 * index stay right; any other path is written directly: mbox under the
 * store's locks (lock.h: fcntl and dotlock), Maildir (tmp/, fsync, new/),
 * MH (the next free number, O_EXCL) or a plain directory ($MSGPREFIX
 * file), fsynced with their directories when do_fsync.
 */
struct store;
struct rules_store {
	struct store *st;		/* borrowed */
	const char *sender;		/* for the From_ line; "" for <> */
	time_t received;
	bool do_fsync;			/* mail_fsync */
	unsigned lock_methods;		/* LOCK_M_* */
	unsigned lock_attempts, lock_delay_ms, lock_stale_secs;
	unsigned stored;		/* deliveries made (a count) */
	int store_failure;		/* enum store_result of the last
					   failed write (STORE_OK: none) */
	char failure[256];		/* and its text */
	enum rules_folder_kind last_kind;
	char last_folder[512];		/* store folder name or path */
};

/* rules_store_folder: a rules_callbacks.folder for ctx = struct
 * rules_store *. STORE_OVERQUOTA maps to RULES_PERMFAIL, everything that
 * may pass (locks, disk full) to RULES_TEMPFAIL. */
enum rules_status rules_store_folder(void *ctx, enum rules_folder_kind kind,
    const char *path, const unsigned char *msg, size_t len, char **stored_r,
    const char **error_r);
/* rules_store_inbox: the path and kind of the store's INBOX, as
 * rules_env.orgmail wants it ("ROOT/" for a Maildir). Caller frees. */
char *rules_store_inbox(struct store *st);

#endif
