/*
 * user.h: who a mail user is. Name rules shared by every place that takes a
 * user name (lookup, loftctl, delivery), and the lookup that turns a name
 * into ids, a home and a mail_location: virtual users from user_database
 * first (see userdb.h), then, if system_users = yes, the system password
 * database.
 */
#ifndef LOFT_USER_H
#define LOFT_USER_H

#include <sys/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest user name, in bytes (UTF-8 counts bytes, not characters). */
#define USER_NAME_MAX 255

/* In a struct user that came straight from userdb (userdb_find,
 * userdb_next) rather than from user_lookup: the file left uid or gid
 * empty, so virtual_uid / virtual_gid apply. user_lookup never returns
 * these. */
#define USER_UID_UNSET ((uid_t)-1)
#define USER_GID_UNSET ((gid_t)-1)

/* Every string is owned by the struct and freed by user_free(). */
struct user {
	char *name;
	char *pwhash;		/* crypt(3) string; "" = no password login */
	uid_t uid;		/* resolved by user_lookup (see above) */
	gid_t gid;
	char *home;		/* absolute path; "" if none */
	uint64_t quota;		/* bytes; 0 = none set (mailbox_size_limit) */
	bool has_quota;
	/* The mail_location template (mailloc.h) to use: the per-user mail=
	 * field or the configuration's. NULL only in a struct straight from
	 * userdb when the user has no mail= field. */
	char *mail_location;
	bool system;		/* from the system password database */
	char *fields;		/* the raw key=value fields; "" if none */
};

/* What user_lookup_with() needs; user_settings_from_conf() fills it from
 * the configuration. The strings are borrowed, not copied. */
struct user_settings {
	const char *user_database;	/* NULL or "": no virtual users */
	bool system_users;
	/* virtual_uid: a user name or number; NULL or "" = the effective
	 * uid. virtual_gid: a group name or number; NULL or "" = the primary
	 * group of virtual_uid, or the effective gid if that is empty too. */
	const char *virtual_uid;
	const char *virtual_gid;
	/* NULL or "": USER_DEFAULT_MAIL_LOCATION and
	 * USER_DEFAULT_SYSTEM_MAIL_LOCATION. */
	const char *mail_location;
	const char *system_mail_location;
};

#define USER_DEFAULT_MAIL_LOCATION "maildir:~/Maildir"
#define USER_DEFAULT_SYSTEM_MAIL_LOCATION "mbox:~/mail:INBOX=/var/mail/%u"

/*
 * user_name_valid: 0 if name may be a user name, -1 (with *error_r saying
 * why) if not. NOTE: 0 means valid; test with "< 0".
 * A name is 1..USER_NAME_MAX bytes of well-formed UTF-8 and refuses:
 * '/', ':', '.' or '..' or any "..", a leading '-', '.' or '#' (a line of
 * the user file starting with '#' is a comment), a leading or trailing '@'
 * (an empty local part or domain would make %n or %d empty in a
 * mail_location), ASCII control characters and DEL, C1 controls, ASCII
 * and Unicode white space, NUL. '@' elsewhere and other UTF-8 are allowed.
 */
int user_name_valid(const char *name, const char **error_r)
    __attribute__((warn_unused_result));
/* user_name_valid_len: the same for a name that is not NUL-terminated
 * (from the network); an embedded NUL byte makes it invalid. */
int user_name_valid_len(const char *name, size_t len, const char **error_r)
    __attribute__((warn_unused_result));

/*
 * user_lookup: find name, reading user_database, system_users,
 * virtual_uid, virtual_gid, mail_location and system_mail_location from
 * the configuration (conf.h). Returns 1 and a new *user_r (free it with
 * user_free), 0 if the user is unknown (*error_r says why: also for an
 * invalid name, a malformed line, or a user that would run as uid 0), or
 * -1 on a temporary error (the database cannot be read, an id setting does
 * not resolve) with *error_r.
 * Virtual users: uid/gid from the file, else virtual_uid/virtual_gid
 * (see struct user_settings).
 * An explicit uid 0 (in the file or virtual_uid) is refused; the fallback
 * to the effective uid is not, so when loft runs as root with virtual_uid
 * empty the user resolves to uid 0 and the process that switches to it
 * must refuse. System users (getpwnam): home, uid and gid from it,
 * mail_location = system_mail_location, pwhash from the shadow database if
 * this process can read it ("" otherwise); uid 0 is refused.
 */
int user_lookup(const char *name, struct user **user_r, const char **error_r);
/* user_lookup_with: user_lookup with explicit settings (no conf). */
int user_lookup_with(const struct user_settings *set, const char *name,
    struct user **user_r, const char **error_r);
/* user_settings_from_conf: the settings of the loaded configuration. The
 * strings belong to conf and live until it is reloaded. */
void user_settings_from_conf(struct user_settings *set_r);

/* user_resolve_virtual: turn a struct straight from userdb into what
 * user_lookup returns: unset uid/gid from virtual_uid/virtual_gid, a NULL
 * mail_location from set->mail_location. Returns 1, 0 if the result is
 * refused (uid 0 from an explicit setting), -1 if an id setting does not
 * resolve; *error_r says why. */
int user_resolve_virtual(const struct user_settings *set, struct user *user,
    const char **error_r);

/* user_dup: a deep copy (never NULL). */
struct user *user_dup(const struct user *user);
/* user_free: free *user and everything it owns (the hash is wiped first);
 * sets *user to NULL. NULL is allowed. */
void user_free(struct user **user);

#endif
