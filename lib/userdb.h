/*
 * userdb.h: the virtual user file (user_database), for user_lookup and
 * loftctl.
 *
 * Format: one user per line,
 *
 *	name:hash:uid:gid:home:fields
 *
 * name follows user_name_valid(); hash is a crypt(3) string or empty (no
 * password login); uid and gid are decimal numbers or empty (then
 * virtual_uid / virtual_gid apply); home is an absolute path or empty;
 * fields is a space-separated list of key=value: quota=BYTES (at least 1),
 * mail=LOCATION (a mail_location for this user; it may hold ':' but no
 * space), and any other key, kept verbatim for later versions. Trailing
 * fields may be left out ("name:hash" is a user with defaults). Lines
 * starting with '#' and blank lines are comments.
 *
 * A malformed line (bad syntax, control characters, longer than
 * USERDB_LINE_MAX, a second line for a name already seen) is logged as a
 * warning with file:line and skipped: that user is unknown. Nothing is
 * lost on rewrite: lines that are not edited are written back byte for
 * byte, comments and malformed lines included.
 *
 * Writers (for_update) hold an exclusive flock on FILE.lock from open to
 * close, so two loftctl runs cannot lose each other's change; the file is
 * replaced atomically (FILE.tmp.PID, mode 0600, or 0640 if the old file
 * had group read; owner and group kept; fsync; rename; fsync of the
 * directory), so readers need no lock and always see a whole file.
 */
#ifndef LOFT_USERDB_H
#define LOFT_USERDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "user.h"

/* Longest line, newline excluded; a longer line is malformed. */
#define USERDB_LINE_MAX 8192
/* Largest file userdb_open reads; a larger one is an error. */
#define USERDB_SIZE_MAX (64 * 1024 * 1024)

struct userdb;

/*
 * userdb_open: read the user file at path. A missing file is an empty
 * database. With for_update, FILE.lock (created 0600 if needed) is locked
 * exclusively first, waiting for another writer, and held until
 * userdb_close. Returns 0 and *db_r, or -1 with *error_r (the file or its
 * lock cannot be opened or read, is not a regular file, or is over
 * USERDB_SIZE_MAX).
 */
int userdb_open(const char *path, bool for_update, struct userdb **db_r,
    const char **error_r);
/* userdb_close: release the lock (if any) and free *db; unsaved edits are
 * dropped. Sets *db to NULL; NULL is allowed. */
void userdb_close(struct userdb **db);

/* userdb_find: 1 and a new *user_r (user_free it) straight from the file
 * (uid/gid USER_UID_UNSET/USER_GID_UNSET if empty, mail_location NULL
 * without mail=; see user_resolve_virtual), or 0 if name is not a valid
 * entry (unknown, invalid name, malformed line). */
int userdb_find(struct userdb *db, const char *name, struct user **user_r);
/* userdb_name_taken: true if any line has this name, a malformed one
 * included (such a user is unknown, but the name is not free). */
bool userdb_name_taken(struct userdb *db, const char *name);
/* userdb_next: walk the valid entries in file order. Set *pos = 0 first;
 * returns the next entry or NULL at the end. The entry is owned by db and
 * valid until the next edit or userdb_close. */
const struct user *userdb_next(struct userdb *db, size_t *pos);

/*
 * Edits change the database in memory; userdb_save writes them. All of
 * them need a database opened for_update and return 0, or -1 with
 * *error_r and nothing changed.
 * userdb_add: a new line "name:pwhash:::home:quota=N". pwhash and home may
 * be NULL or "" (none); pwhash must not hold ':', white space or control
 * characters; home must be absolute, with no ':', control characters or
 * ".." component. Fails if name has any line, even a malformed one.
 */
int userdb_add(struct userdb *db, const char *name, const char *pwhash,
    const char *home, uint64_t quota, bool has_quota, const char **error_r);
/* userdb_set_password: replace the hash (NULL or "" = no password) and drop
 * the secrets derived from the old password (scram-sha-*=). */
int userdb_set_password(struct userdb *db, const char *name,
    const char *pwhash, const char **error_r);
/* userdb_set_field: set KEY=value among the extra fields, or remove every
 * KEY= if value is NULL. quota= and mail= have their own setters and are
 * refused here; values may not hold white space or control characters. */
int userdb_set_field(struct userdb *db, const char *name, const char *key,
    const char *value, const char **error_r);
/* userdb_set_quota: set quota= (quota >= 1), or remove it if !has_quota. */
int userdb_set_quota(struct userdb *db, const char *name, uint64_t quota,
    bool has_quota, const char **error_r);
/* userdb_delete: remove every line for name, malformed ones included;
 * fails if there is none. */
int userdb_delete(struct userdb *db, const char *name, const char **error_r);
/* userdb_save: replace the file atomically if anything was edited (the
 * lock stays held). Refuses a path that is a symbolic link, since rename
 * would replace the link rather than the file. */
int userdb_save(struct userdb *db, const char **error_r);

/*
 * userdb_parse_line: parse one line (no newline, len bytes, need not be
 * NUL-terminated). Returns 1 and a new *user_r as userdb_find gives it,
 * 0 for a comment or blank line, -1 with *error_r for a malformed line.
 */
int userdb_parse_line(const char *line, size_t len, struct user **user_r,
    const char **error_r);

#endif
