/*
 * imap_parser.h: the IMAP command parser (RFC 3501, RFC 9051, LITERAL+ and
 * LITERAL- of RFC 7888, literal8 of RFC 3516) as a pure, incremental
 * state machine: bytes in through imap_parser_input(), one command at a
 * time out of imap_parser_next(). No sockets and no replies: the engine
 * above answers BAD, writes the "+ OK" continuations the parser asks for
 * and decides which commands stream their literals.
 *
 * A command is "tag SP name [SP arguments] CRLF" (a bare LF is accepted
 * too). "UID name" is folded into the name with cmd->uid set. The
 * arguments are a tree of struct imap_arg: atoms (numbers, flags such as
 * \Seen, "*", sequence sets, and FETCH items such as
 * BODY.PEEK[HEADER.FIELDS (A B)]<0.100> are atoms, kept as sent), NIL,
 * quoted strings, literals {n} {n+} {n-} and literal8 ~{n}, and lists.
 * Read them with the imap_arg_* accessors, which check the type and give
 * an error message fit for a BAD reply.
 *
 * Input flow: imap_parser_input() consumes bytes until a command is
 * complete (its final LF) or has failed and been skipped to its end, and
 * then stops: it consumes nothing more until imap_parser_next() has
 * handed that command out. Bytes after a command are therefore left to
 * the engine, which can read IDLE's "DONE", AUTHENTICATE responses or
 * drop what follows STARTTLS itself.
 *
 * Literals: a synchronizing literal's size is checked against the limits
 * (and the command's remaining budget) before cb->need_continuation is
 * called, so a "+ OK" is never sent for a literal the parser would
 * refuse. For a command the engine marks IMAP_PARSER_CMD_STREAM (APPEND),
 * every literal but the first argument (the mailbox) goes to
 * cb->literal_start / literal_data / literal_end in chunks as it arrives
 * and is never buffered; such a literal is bounded only by what
 * literal_start accepts (APPENDLIMIT).
 *
 * Errors: imap_parser_next() returns -1 once the failed command has been
 * consumed to its end (a non-synchronizing literal's bytes included; a
 * synchronizing literal ends the command, the client waits for a "+"
 * that does not come), so the next command parses cleanly. cmd->tag is
 * the tag if it was read, for the engine's BAD.
 */
#ifndef LOFT_IMAP_PARSER_H
#define LOFT_IMAP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Defaults of struct imap_parser_settings (a 0 field takes these). */
#define IMAP_PARSER_LINE_MAX	65536	/* bytes of one line, CRLF included */
#define IMAP_PARSER_LITERAL_MAX	65536	/* one buffered literal */
#define IMAP_PARSER_COMMAND_MAX	(256 * 1024)	/* lines + buffered literals */
#define IMAP_PARSER_DEPTH_MAX	32	/* nested parenthesized lists */
#define IMAP_PARSER_ARGS_MAX	4096	/* arguments, list elements and
					   lists themselves, in all */
/* Fixed limits. */
#define IMAP_PARSER_LINE_MIN	64	/* least line_max */
#define IMAP_PARSER_TAG_MAX	64	/* bytes of a tag */
#define IMAP_PARSER_NAME_MAX	32	/* bytes of a command name */
#define IMAP_LITERAL_MINUS_MAX	4096	/* a {n-} literal (RFC 7888) */
/* Largest literal size that parses: number64 of RFC 9051; a larger one
 * is refused without reading its digits' value further. */
#define IMAP_LITERAL_SIZE_MAX	((uint64_t)INT64_MAX)

enum imap_arg_type {
	IMAP_ARG_ATOM,		/* data: the atom as sent, NUL-terminated */
	IMAP_ARG_NIL,		/* the atom NIL in any case; data as sent */
	IMAP_ARG_STRING,	/* quoted: data unescaped, NUL-terminated */
	IMAP_ARG_LITERAL,	/* data: len bytes (may hold NUL), plus a NUL */
	IMAP_ARG_STREAMED,	/* a literal given to cb->literal_data: no data,
				   size bytes */
	IMAP_ARG_LIST		/* list: count elements */
};

struct imap_arg {
	enum imap_arg_type type;
	bool literal8;		/* LITERAL, STREAMED: sent as ~{n} */
	bool nonsync;		/* LITERAL, STREAMED: {n+} or {n-} */
	unsigned pos;		/* 1-based place in its list or command */
	unsigned depth;		/* 0 for a command argument, 1 inside one
				   list, and so on */
	const unsigned char *data;
	size_t len;
	uint64_t size;		/* STREAMED: the literal's size */
	const struct imap_arg *list;
	unsigned count;
};

/* What the parser returns a command as; owned by the parser (see
 * imap_parser_next for how long it lives). */
enum imap_parse_error {
	IMAP_PARSE_ERR_NONE,
	IMAP_PARSE_ERR_SYNTAX,	/* answer BAD */
	IMAP_PARSE_ERR_TOOBIG,	/* a limit was passed (line, literal, command
				   size, depth, arguments): BAD, [TOOBIG] */
	IMAP_PARSE_ERR_REFUSED,	/* cb->need_continuation or
				   cb->literal_start returned -1: the engine
				   answers as it decided then (NO or BAD) */
	IMAP_PARSE_ERR_UNKNOWN,	/* cb->command said
				   IMAP_PARSER_CMD_UNKNOWN */
	IMAP_PARSE_ERR_FATAL	/* the command's end cannot be found (a
				   {n+} literal with a size beyond
				   IMAP_LITERAL_SIZE_MAX): answer BAD or
				   BYE and close; the parser takes nothing
				   more */
};

struct imap_cmd {
	const char *tag;	/* NULL if the line had no valid tag */
	const char *name;	/* upper case; NULL if not reached */
	bool uid;		/* the command came as "UID name" */
	unsigned flags;		/* IMAP_PARSER_CMD_* from cb->command */
	const struct imap_arg *args;	/* argc of them; NULL on error */
	unsigned argc;
	enum imap_parse_error error;	/* on -1 */
	const char *error_msg;	/* on -1: static ASCII text, no client
				   bytes and no response code (the engine
				   adds [TOOBIG] for ERR_TOOBIG), fit for
				   "tag BAD <error_msg>" */
	uint64_t bytes;		/* consumed for this command, streamed
				   literals included */
};

/* Returned by cb->command. */
#define IMAP_PARSER_CMD_STREAM	0x01	/* stream every literal but the
					   first argument (the mailbox) */
#define IMAP_PARSER_CMD_UNKNOWN	0x02	/* skip the rest, fail with
					   IMAP_PARSE_ERR_UNKNOWN */

struct imap_parser_callbacks {
	/*
	 * command: optional. Called once the name is known (cmd->tag,
	 * cmd->name, cmd->uid are set, nothing else), before any argument
	 * is read; returns IMAP_PARSER_CMD_* flags. UNKNOWN skips the
	 * command without a continuation for its literals. Without it, no
	 * flags.
	 */
	unsigned (*command)(void *ctx, const struct imap_cmd *cmd);
	/*
	 * need_continuation: required. A synchronizing literal of size bytes
	 * passed the limits (for a streamed one, literal_start accepted it
	 * first): write "+ OK" (or "+ ...") and return 0, or return -1 to
	 * refuse: the command then ends there (the client sends no data)
	 * and imap_parser_next gives IMAP_PARSE_ERR_REFUSED; answer it then.
	 */
	int (*need_continuation)(void *ctx, uint64_t size);
	/*
	 * literal_start: required if command may return STREAM. A literal of
	 * a streaming command (not its first argument) announces size bytes;
	 * size is not checked against the parser's limits. Return 0 to take
	 * it through literal_data, -1 to refuse (the client's data for a
	 * {n+} literal is read and dropped, and the command fails with
	 * IMAP_PARSE_ERR_REFUSED). A {n-} literal over
	 * IMAP_LITERAL_MINUS_MAX (or {n+} without settings.literal_plus) is
	 * refused before it is offered.
	 */
	int (*literal_start)(void *ctx, uint64_t size, bool literal8);
	/* literal_data: the next len bytes (len > 0) of the literal, in
	 * order, straight from the buffer given to imap_parser_input. */
	void (*literal_data)(void *ctx, const unsigned char *data, size_t len);
	/* literal_end: optional: all size bytes were given. The command may
	 * still fail afterwards (a syntax error after the literal): the
	 * engine learns it from imap_parser_next. */
	void (*literal_end)(void *ctx);
};

struct imap_parser_settings {
	size_t line_max;	/* 0: IMAP_PARSER_LINE_MAX; else at least
				   IMAP_PARSER_LINE_MIN */
	size_t literal_max;	/* 0: IMAP_PARSER_LITERAL_MAX */
	size_t command_max;	/* 0: IMAP_PARSER_COMMAND_MAX, or line_max
				   if larger; never below line_max */
	unsigned depth_max;	/* 0: IMAP_PARSER_DEPTH_MAX */
	unsigned args_max;	/* 0: IMAP_PARSER_ARGS_MAX */
	bool literal_plus;	/* LITERAL+ offered: {n+} up to literal_max;
				   else {n+} is held to the {n-} limit */
	bool utf8;		/* UTF8=ACCEPT enabled: quoted strings may hold
				   UTF-8 (checked); else 8-bit there is BAD */
};

struct imap_parser;

/* imap_parser_new: settings are copied (see imap_parser_set_settings);
 * cb and ctx are borrowed for the parser's life. cb->need_continuation
 * NULL or settings out of range is a bug (log_panic). */
struct imap_parser *imap_parser_new(const struct imap_parser_settings *set,
    const struct imap_parser_callbacks *cb, void *ctx);
/* imap_parser_free: *p set NULL; no callback is called. */
void imap_parser_free(struct imap_parser **p);
/* imap_parser_set_settings: new limits or UTF-8 mode, from the next
 * command on (the one in progress, if any, keeps the old ones). */
void imap_parser_set_settings(struct imap_parser *p,
    const struct imap_parser_settings *set);

/*
 * imap_parser_input: parse up to len bytes. Returns how many were
 * consumed: all of them, or fewer when a command became complete (or
 * failed) at that point: call imap_parser_next, then offer the rest
 * again. While a command waits for imap_parser_next, and after
 * IMAP_PARSE_ERR_FATAL, nothing is consumed. Callbacks run from here.
 * Invalidates the command imap_parser_next last returned.
 */
size_t imap_parser_input(struct imap_parser *p, const unsigned char *data,
    size_t len);
/*
 * imap_parser_next: 1 with *cmd_r a complete command, 0 if more input is
 * needed, -1 with *cmd_r a failed one (error, error_msg, and tag and name
 * if they were read). Each command is returned once; after
 * IMAP_PARSE_ERR_FATAL every call returns -1 with that same failure.
 * *cmd_r and everything it points to stay valid until the next call of
 * imap_parser_input, imap_parser_next or imap_parser_free.
 */
int imap_parser_next(struct imap_parser *p, struct imap_cmd **cmd_r);
/* imap_parser_pending: bytes of a command not yet complete have been
 * consumed (so a STARTTLS or the end of IDLE did not end cleanly). */
bool imap_parser_pending(const struct imap_parser *p);

/*
 * Argument accessors. arg may be NULL (a missing argument: fails with
 * "Missing argument"). Each returns 0 with the value, or -1 with
 * *error_r a message for a BAD reply naming the argument's place
 * ("Argument 2: ..." or "List item 3: ..."), in a static buffer valid
 * until the next failing accessor call. Returned text points into the
 * command and lives as long as it.
 */
/* imap_cmd_arg: the command's argument i (0-based), or NULL. */
const struct imap_arg *imap_cmd_arg(const struct imap_cmd *cmd, unsigned i);
/* imap_arg_atom: ATOM or NIL, as sent (FETCH items, flags, "*", sets). */
int imap_arg_atom(const struct imap_arg *arg, const char **atom_r,
    const char **error_r);
/* imap_arg_astring: an atom of ASTRING-CHARs only (NIL is the text "NIL"
 * as sent), a quoted string, or a literal without NUL bytes (not
 * literal8). */
int imap_arg_astring(const struct imap_arg *arg, const char **str_r,
    const char **error_r);
/* imap_arg_list_mailbox: as astring, but the atom may hold the LIST
 * wildcards % and *. */
int imap_arg_list_mailbox(const struct imap_arg *arg, const char **str_r,
    const char **error_r);
/* imap_arg_string: a quoted string or a literal without NUL bytes. */
int imap_arg_string(const struct imap_arg *arg, const char **str_r,
    const char **error_r);
/* imap_arg_nstring: as imap_arg_string, or NIL giving *str_r NULL. */
int imap_arg_nstring(const struct imap_arg *arg, const char **str_r,
    const char **error_r);
/* imap_arg_data: a quoted string or a literal (literal8 included) as
 * bytes, which may hold NUL. */
int imap_arg_data(const struct imap_arg *arg, const unsigned char **data_r,
    size_t *len_r, const char **error_r);
/* imap_arg_number: an atom of digits in 0 .. 4294967295 (RFC 3501
 * number); imap_arg_number64: 0 .. 2^63 - 1 (mod-sequences, RFC 9051
 * number64). Leading zeros are accepted; the engine checks nonzero. */
int imap_arg_number(const struct imap_arg *arg, uint32_t *num_r,
    const char **error_r);
int imap_arg_number64(const struct imap_arg *arg, uint64_t *num_r,
    const char **error_r);
/* imap_arg_list: a list: its elements and their count (maybe 0). */
int imap_arg_list(const struct imap_arg *arg, const struct imap_arg **list_r,
    unsigned *count_r, const char **error_r);

#endif
