/*
 * rules_state.h: one evaluation of a rule tree (rules_eval.c), its
 * variables and expansion (rules_vars.c). Not for use outside
 * lib/rules_*.c.
 */
#ifndef LOFT_RULES_STATE_H
#define LOFT_RULES_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "buf.h"
#include "rules.h"
#include "rules_private.h"

struct rules_var {
	char *name;		/* owned */
	char *value;		/* owned */
};

/* A block being walked; a new rule file (INCLUDERC, SWITCHRC) starts a
 * frame with file_base set. The chaining state of A a E e lives per
 * block level, as procmail keeps it per nesting level. */
struct rules_frame {
	const struct rules_block *block;
	size_t pos;
	const char *file;	/* its rule file's name */
	bool file_base;
	unsigned include_depth;
	bool head_matched;	/* last recipe without A/a: conditions met */
	bool prev_executed;	/* the preceding recipe ran its action */
	bool prev_failed;	/* ... and the action failed */
	bool chain_executed;	/* an E chain: some recipe of it ran */
};

/* What every clone of one evaluation shares. */
struct rules_shared {
	const struct rules_env *env;
	const struct rules_callbacks *cb;
	void *ctx;
	struct rules_result *res;
	struct rules **includes;	/* owned: trees INCLUDERC parsed */
	size_t nincludes;
	unsigned clones;
	void *match_data;		/* pcre2_match_data * */
};

struct rules_state {
	struct rules_shared *sh;
	struct rules_var *vars;		/* owned */
	size_t nvars;
	struct buf msg;			/* From_ line + header + body */
	size_t from_len;		/* procmail's From_ line, with "\n" */
	size_t header_end;		/* where the empty line starts */
	size_t body_off;		/* after the empty line */
	size_t added_nl;		/* newlines added at the end */
	struct buf harea;		/* header, continuation lines joined */
	bool harea_valid;
	struct rules_frame *frames;	/* owned */
	size_t nframes, capframes;
	char *cwd;			/* owned: MAILDIR as resolved */
	int logfd;			/* LOGFILE, -1: none */
	bool verbose;
	mode_t umask;
	double score;
	int last_exit;
	bool delivered;
	bool failed;			/* a rules error: stop, use ORGMAIL */
	bool host_stop;			/* HOST was not this host: stop */
	size_t shift;			/* SHIFT: args skipped */
	char *lockfile;			/* owned: LOCKFILE held (its path) */
	unsigned line;			/* of the node being run */
};

enum rules_feed {
	RULES_FEED_RAW,		/* pipes, filters, MH, directories */
	RULES_FEED_FORWARD,	/* no From_ line */
	RULES_FEED_MAILDIR,	/* no From_ line, no added newlines */
	RULES_FEED_MBOX		/* no From_ line, one final newline less */
};

/* The largest message a filter may produce. */
#define RULES_FILTER_MAX	((size_t)1 << 30)

/* The message (rules_eval.c): find From_ line, header and body again
 * after it changed; make it end in an empty line (procmail's habit);
 * what h and b feed to a destination of kind how. */
void rules_msg_layout(struct rules_state *s);
void rules_msg_end(struct rules_state *s);
void rules_msg_feed(const struct rules_state *s, unsigned flags,
    enum rules_feed how, const unsigned char **p_r, size_t *len_r);
/* rules_path: p relative to $MAILDIR (as resolved); caller frees. */
char *rules_path(const struct rules_state *s, const char *p);

/* Actions (rules_action.c): RULES_OK or the failure. A folder or
 * forward that worked sets $LASTFOLDER; failures are logged. */
enum rules_status rules_do_folder(struct rules_state *s,
    const struct rules_node *n);
enum rules_status rules_do_pipe(struct rules_state *s,
    const struct rules_node *n);
enum rules_status rules_do_forward(struct rules_state *s,
    const struct rules_node *n);
enum rules_status rules_do_filter(struct rules_state *s,
    const struct rules_node *n);
enum rules_status rules_do_capture(struct rules_state *s,
    const struct rules_node *n);

/* Variables (rules_vars.c). get: NULL if unset. */
const char *rules_var_get(const struct rules_state *s, const char *name);
int rules_var_set(struct rules_state *s, const char *name,
    const char *value);
void rules_var_unset(struct rules_state *s, const char *name);
/* rules_var_envp: "NAME=VALUE" for every variable, NULL-terminated;
 * free with rules_var_envp_free. */
char **rules_var_envp(const struct rules_state *s);
void rules_var_envp_free(char **envp);

enum rules_exp {
	RULES_EXP_ASSIGN,	/* sh: quotes removed, one word */
	RULES_EXP_COND,		/* sh inside double quotes */
	RULES_EXP_WORDS		/* sh: words, each followed by a NUL */
};

/* rules_expand: in, expanded as mode says, appended to out (bounded by
 * its maximum); *nwords_r (WORDS) counts words. Backquoted commands run
 * with the message on their standard input. 0, or -1 with a message in
 * *error_r (static). */
int rules_expand(struct rules_state *s, const char *in, enum rules_exp mode,
    struct buf *out, size_t *nwords_r, const char **error_r);

/* rules_run_shell: run cmd with $SHELL -c in the rules' environment and
 * directory, in on its standard input, its output into out, or with out
 * NULL onto out_fd (-1: /dev/null; TRAP passes the log file), standard
 * error into the log file. Sets $? (last_exit). 0 or -1. */
int rules_run_shell(struct rules_state *s, const char *cmd,
    const unsigned char *in, size_t in_len, struct buf *out, int out_fd,
    struct rules_cmd_result *res, const char **error_r);

/* rules_dotlock: take the lock file name (expanded; relative to
 * $MAILDIR) as procmail does: made with O_EXCL, retried every $LOCKSLEEP
 * seconds (8) for at most the command time limit, broken when older than
 * $LOCKTIMEOUT seconds (1024; 0: never). The path to unlink afterwards,
 * or NULL (logged). */
char *rules_dotlock(struct rules_state *s, const char *name);

/* rules_log: a line into LOGFILE (if set) and, if error, to the caller's
 * log too; "NAME:LINE: " is put first when error. */
void rules_log(struct rules_state *s, bool error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* rules_assign: NAME=value with its special meaning (MAILDIR, LOGFILE,
 * LOG, VERBOSE, UMASK, INCLUDERC, SWITCHRC). 0 or -1 (a rules error). */
int rules_assign(struct rules_state *s, const char *name, const char *value);

#endif
