/*
 * smtp_alias.h: the alias database, as Postfix's aliases(5) and sendmail
 * read /etc/aliases: parsed from text, compiled into an LMDB file by
 * `loftctl newaliases`, and expanded for local delivery.
 *
 * Source syntax (one entry per logical line):
 *
 *	name: value, value, ...
 *	  more values		a line starting with white space
 *				continues the entry above (blank lines and
 *				comment lines in between are skipped, as
 *				Postfix's readlline() does)
 *	# comment		a line whose first non-blank byte is '#'
 *	"a b": value		a quoted name (backslash escapes one byte)
 *
 * Names are compared without case (stored lower-cased); they hold no
 * control byte and no '@'. Values, separated by commas (a comma inside
 * double quotes is part of the value):
 *
 *	user			a local name: looked up again as an alias,
 *				else a local user
 *	user@domain		an address, handed back as it is
 *	\user			a local user, never looked up as an alias
 *	|command args		a command fed the message
 *	"|command args"		the same (a comma may then be inside)
 *	/path/file		a file the message is appended to
 *	:include:/path		a file of more values, read at expansion
 *
 * A bad entry (syntax, NUL byte, control byte, a logical line over
 * SMTP_ALIAS_LINE_MAX, more than SMTP_ALIAS_VALUES_MAX values, an empty
 * value list) is reported with file and line and skipped; the rest is
 * used, as Postfix's postalias does. A duplicate name is reported and the
 * first entry wins.
 *
 * Trust: the source file is the administrator's (compile refuses one that
 * another user could have written); include files are read at expansion
 * and trusted only as far as their permissions allow; the local part to
 * expand comes from the network (through smtp_path_parse).
 */
#ifndef LOFT_SMTP_ALIAS_H
#define LOFT_SMTP_ALIAS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A logical line (physical lines joined without their newlines). */
#define SMTP_ALIAS_LINE_MAX		(64 * 1024)
/* An alias name, unquoted. Keys stay within LMDB's 511-byte key limit;
 * "owner-" plus any SMTP local part (64) fits. */
#define SMTP_ALIAS_NAME_MAX		255
/* Values in one entry, and in one include file. */
#define SMTP_ALIAS_VALUES_MAX		10000
/* The source file compiled by smtp_alias_compile. */
#define SMTP_ALIAS_SOURCE_MAX		(64 * 1024 * 1024)
/* Aliases and include files nested inside one another (sendmail's
 * MaxAliasRecursion). */
#define SMTP_ALIAS_DEPTH_MAX		10
/* Targets one expansion may produce, duplicates removed. */
#define SMTP_ALIAS_EXPAND_MAX		10000
/* An include file. */
#define SMTP_ALIAS_INCLUDE_SIZE_MAX	(1024 * 1024)
/* An address value (RFC 5321 section 4.5.3.1: the path without "<>"),
 * and its local part as written. */
#define SMTP_ALIAS_ADDRESS_MAX		254
#define SMTP_ALIAS_LOCAL_MAX		64

enum smtp_alias_kind {
	SMTP_ALIAS_ADDRESS,	/* "name" (local) or "local@domain" */
	SMTP_ALIAS_COMMAND,	/* the command line, without the '|' */
	SMTP_ALIAS_FILE,	/* an absolute path */
	SMTP_ALIAS_INCLUDE,	/* an absolute path; parsed values only,
				   never a target of expansion */
	SMTP_ALIAS_ERROR	/* expansion only: a value that cannot be
				   delivered (see reason) */
};

/* One value as parsed: text is unquoted ("|cmd a b" gives "cmd a b").
 * An ADDRESS keeps its quoted local part as written when it has a
 * domain ("\"a b\"@example.org"); a domain is lower-cased. */
struct smtp_alias_value {
	enum smtp_alias_kind kind;
	bool noexpand;		/* ADDRESS written "\name" */
	char *text;		/* owned */
};

/* An entry as parsed; only valid during the callback. */
struct smtp_alias_entry {
	const char *name;	/* lower-cased, unquoted */
	unsigned int line;	/* where its logical line starts */
	const struct smtp_alias_value *values;
	size_t count;		/* 1 .. SMTP_ALIAS_VALUES_MAX */
};

/* One result of expansion; all strings owned by the array. */
struct smtp_alias_target {
	enum smtp_alias_kind kind;	/* never SMTP_ALIAS_INCLUDE */
	/*
	 * ADDRESS: a local user name (lower-cased, unquoted, no '@'; not an
	 * alias, or an alias that names itself, or written "\name"), to be
	 * delivered by the delivery agent, or "local@domain" (RFC 5321
	 * mailbox form) for the caller to route; an address in a local
	 * domain is the caller's to expand again, as Postfix re-queues it
	 * (its loop protection is Delivered-To). COMMAND, FILE: as parsed.
	 * ERROR: the value as written (":include:/x", "|cmd").
	 */
	char *value;
	/* "owner-NAME" or "owner-NAME@domain" (with smtp_alias_expand's
	 * domain): the envelope sender for this target, NAME being the
	 * nearest enclosing alias that has an owner- alias; NULL: keep the
	 * message's sender. */
	char *owner;
	/* The file this value was read from: the alias database (its .lmdb
	 * path) or an include file. The caller runs COMMAND and FILE
	 * targets as source_uid, or as default_privs ("nobody") when
	 * source_uid is 0, as Postfix's local(8) does. */
	char *source;
	uid_t source_uid;
	/* ERROR only (NULL otherwise): static text, e.g. "include file is
	 * missing"; temporary: a retry may succeed (4.3.0), else bounce
	 * (5.3.0). */
	const char *reason;
	bool temporary;
};

/* ---- Parsing ---- */

struct smtp_alias_parser;

/* Called once per good entry, in file order (duplicates included: the
 * caller decides). */
typedef void smtp_alias_entry_cb(const struct smtp_alias_entry *entry,
    void *ctx);
/* Called once per skipped entry or stray line; msg is "FILE:LINE: what"
 * (control bytes escaped), valid during the call. */
typedef void smtp_alias_warning_cb(unsigned int line, const char *msg,
    void *ctx);

/* smtp_alias_parser_new: a parser for the file named name (used in
 * warnings only). Neither callback may be NULL. */
struct smtp_alias_parser *smtp_alias_parser_new(const char *name,
    smtp_alias_entry_cb *entry_cb, smtp_alias_warning_cb *warning_cb,
    void *ctx);
/* smtp_alias_parser_feed: the next len bytes of the file, any split (a
 * byte at a time gives the same callbacks as the whole file at once).
 * An entry is reported once the line after it starts, or at finish. */
void smtp_alias_parser_feed(struct smtp_alias_parser *p,
    const unsigned char *data, size_t len);
/* smtp_alias_parser_finish: end of file (a last line without a newline
 * counts); reports what is pending. Feeding after finish is a bug. */
void smtp_alias_parser_finish(struct smtp_alias_parser *p);
/* smtp_alias_parser_free: free *p (NULL is fine) and set it to NULL. */
void smtp_alias_parser_free(struct smtp_alias_parser **p);

/*
 * smtp_alias_parse_values: the value list text[0..len) (the part of an
 * entry after "name:", or one line of an include file; no newline) into
 * a new array (*values_r, *count_r, freed with smtp_alias_values_free),
 * at most max values. An empty list gives 0 values. Returns 0, or -1
 * with *error_r (static buffer of this module) and nothing allocated.
 */
int smtp_alias_parse_values(const char *text, size_t len, size_t max,
    struct smtp_alias_value **values_r, size_t *count_r,
    const char **error_r);
void smtp_alias_values_free(struct smtp_alias_value *values, size_t count);

/* ---- Compiling ---- */

/*
 * smtp_alias_item_paths: an item of alias_maps or alias_database,
 * "lmdb:/etc/aliases", "hash:/etc/aliases" (Postfix's spelling, taken as
 * ours) or "/etc/aliases", into the source path ("/etc/aliases") and the
 * compiled database's ("/etc/aliases.lmdb"), newly allocated. Another
 * type, a relative path or an empty one is an error: -1 with *error_r.
 */
int smtp_alias_item_paths(const char *item, char **source_r, char **db_r,
    const char **error_r);

/*
 * smtp_alias_compile: parse source and write db_path (mode 0644), built
 * in a temporary file beside it, synced, and renamed over the old one, so
 * a process that opens db_path sees the old map or the new one, never a
 * part. Each skipped entry and each duplicate is logged with
 * log_warning ("FILE:LINE: ...") and counted in *warnings_r; *entries_r
 * counts the entries stored (either pointer may be NULL).
 * Refused (-1 with *error_r, db_path untouched): a source that is not a
 * regular file, is owned by someone other than root and the effective
 * user, is writable by its group or others, is larger than
 * SMTP_ALIAS_SOURCE_MAX, or cannot be read; a source with at least one
 * bad entry and no good one (nothing could be read: a wrong file, most
 * likely); a database that cannot be written. An empty source (or one
 * of comments) gives an empty map.
 */
int smtp_alias_compile(const char *source, const char *db_path,
    unsigned int *entries_r, unsigned int *warnings_r, const char **error_r);

/* ---- Lookups ---- */

struct smtp_alias_map;

/*
 * smtp_alias_open: open the compiled database db_path read-only (no lock
 * file: a compiled database is never written again, only replaced).
 * Refused: a missing file, one writable by group or others, one that is
 * not a loft alias database. Returns 0 with *map_r (free with
 * smtp_alias_close), or -1 with *error_r.
 *
 * A map that is open keeps reading the database it opened, even after
 * newaliases replaced it (the old file stays mapped until closed): the
 * caller picks up a new one with smtp_alias_refresh, for instance before
 * each delivery.
 */
int smtp_alias_open(const char *db_path, struct smtp_alias_map **map_r,
    const char **error_r);
/* smtp_alias_open_conf: every item of alias_maps (conf.h), searched in
 * order by the lookups; an empty alias_maps gives a map with nothing in
 * it. Errors as smtp_alias_open, naming the database. */
int smtp_alias_open_conf(struct smtp_alias_map **map_r, const char **error_r);
/* smtp_alias_close: close *map (NULL is fine) and set it to NULL. */
void smtp_alias_close(struct smtp_alias_map **map);
/* smtp_alias_refresh: reopen each database whose file was replaced since
 * it was opened. Returns 1 if one was, 0 if none, -1 with *error_r if a
 * new file could not be opened (that database keeps the old one). */
int smtp_alias_refresh(struct smtp_alias_map *map, const char **error_r);

/*
 * smtp_alias_lookup: the values stored for name (compared without case;
 * no address extension is removed), from the first database that has
 * it: 1 with a new array (free with smtp_alias_values_free) and, if
 * source_r is not NULL, the database's path (valid while the map is
 * open), 0 when name is no alias, -1 with *error_r on a database error.
 */
int smtp_alias_lookup(struct smtp_alias_map *map, const char *name,
    struct smtp_alias_value **values_r, size_t *count_r,
    const char **source_r, const char **error_r);

/*
 * smtp_alias_expand: the targets of mail for the local part local.
 *
 * The alias looked up is local, or if it is none, local without its
 * address extension: local is cut at the first byte that is in
 * delimiters (recipient_delimiter; NULL or "" for none), so "user+tag"
 * tries "user+tag", then "user", as Postfix does. As in Postfix's
 * split_addr(), the names "postmaster" and "mailer-daemon" themselves
 * are never cut, nor, when '-' is a delimiter, "owner-x" and
 * "x-request".
 *
 * Values are expanded recursively: a local name that is an alias is
 * replaced by its values (the same two lookups), an include file by its
 * values (read now: one value list per line, '#' comments and blank
 * lines skipped; a bad line is logged and skipped). A name that is being
 * expanded already, directly ("root: root, x") or through others
 * ("a: b", "b: a"), is not expanded again but delivered as a local user;
 * an include file that includes itself, directly or not, is skipped with
 * a warning. Duplicate targets are dropped (the first is kept).
 *
 * Include files: one that is missing or unreadable, is not a regular
 * file, is larger than SMTP_ALIAS_INCLUDE_SIZE_MAX or holds more than
 * SMTP_ALIAS_VALUES_MAX values gives one ERROR target for its
 * ":include:" value (temporary for errors other than a missing file,
 * permission denied, too big or too many), and nothing of its contents.
 * One that is writable by group or others gives its addresses, but an
 * ERROR target in place of each command and file (sendmail's unsafe
 * include file).
 *
 * domain, if not NULL or "", is appended to owner- addresses
 * ("owner-list@example.org"); Postfix leaves it to $myorigin.
 *
 * Returns 1 with the targets (*targets_r, *count_r; free with
 * smtp_alias_targets_free; count may be 0, for an empty include file),
 * 0 when local is no alias (nothing allocated), or -1 with *error_r when
 * the expansion cannot be done as a whole: a database error, nesting
 * deeper than SMTP_ALIAS_DEPTH_MAX, more than SMTP_ALIAS_EXPAND_MAX
 * targets. A -1 is a configuration problem the administrator must fix:
 * the caller defers (4.3.0), as Postfix does when a table fails.
 */
int smtp_alias_expand(struct smtp_alias_map *map, const char *local,
    const char *delimiters, const char *domain,
    struct smtp_alias_target **targets_r, size_t *count_r,
    const char **error_r);
void smtp_alias_targets_free(struct smtp_alias_target *targets,
    size_t count);

/* smtp_alias_kind_name: "address", "command", "file", "include",
 * "error". */
const char *smtp_alias_kind_name(enum smtp_alias_kind kind);

#endif
