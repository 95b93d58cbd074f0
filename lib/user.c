/*
 * user.c: user name rules and user lookup (virtual user file, then the
 * system password database).
 *
 * Names come from clients (LOGIN, AUTH, RCPT TO) and from the command
 * line: nothing about them is trusted until user_name_valid() passes, and
 * the rules are strict because a name ends up in paths (%u, %n, %d in a
 * mail_location), in the user file (':' separated lines) and in logs. The
 * user file and the system databases are trusted as the administrator's,
 * but uid 0 is refused whatever they say, except the documented fallback
 * to the effective uid (see user.h).
 */
#include "config.h"
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <shadow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "conf.h"
#include "user.h"
#include "userdb.h"
#include "xmalloc.h"

/* getpwnam_r and friends: the buffer grows on ERANGE up to this. */
#define USER_PWBUF_MAX (1024 * 1024)

static char user_error_buf[512];

/* Code points refused besides controls: Unicode white space, and format
 * characters that are invisible or reorder text (zero-width, bidi), since
 * they let two different names look the same in a log or a listing. */
static const struct {
	unsigned int lo, hi;
} user_refused_ranges[] = {
	{ 0x0080, 0x00a0 },	/* C1 controls, NEL, no-break space */
	{ 0x00ad, 0x00ad },	/* soft hyphen */
	{ 0x1680, 0x1680 },
	{ 0x180e, 0x180e },
	{ 0x2000, 0x200f },	/* spaces, zero-width, LRM/RLM */
	{ 0x2028, 0x202f },	/* line/paragraph separators, bidi embeds */
	{ 0x205f, 0x206f },	/* math space, invisible operators, isolates */
	{ 0x3000, 0x3000 },
	{ 0xfeff, 0xfeff },	/* BOM / zero-width no-break space */
};

static int
user_cp_refused(unsigned int cp)
{
	size_t i;

	for (i = 0; i < sizeof(user_refused_ranges) /
	    sizeof(user_refused_ranges[0]); i++) {
		if (cp >= user_refused_ranges[i].lo &&
		    cp <= user_refused_ranges[i].hi)
			return 1;
	}
	return 0;
}

/* Decode one UTF-8 sequence of a multibyte character at s (len bytes
 * left). Returns its length and *cp_r, or 0 if it is malformed, overlong,
 * a surrogate or past U+10FFFF. */
static size_t
user_utf8_decode(const unsigned char *s, size_t len, unsigned int *cp_r)
{
	unsigned int cp, min;
	size_t n, i;

	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2; cp = s[0] & 0x1f; min = 0x80;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3; cp = s[0] & 0x0f; min = 0x800;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4; cp = s[0] & 0x07; min = 0x10000;
	} else
		return 0;
	if (len < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	*cp_r = cp;
	return n;
}

/* The ASCII rules for one byte below 0x80. */
static const char *
user_ascii_refused(unsigned char c)
{
	if (c < 0x20 || c == 0x7f)
		return "user name holds a control character";
	if (c == ' ')
		return "user name holds white space";
	if (c == '/')
		return "user name holds '/'";
	if (c == ':')
		return "user name holds ':'";
	return NULL;
}

static int
user_name_chars(const unsigned char *s, size_t len, const char **error_r)
{
	unsigned int cp;
	size_t i = 0, n;

	while (i < len) {
		if (s[i] < 0x80) {
			if ((*error_r = user_ascii_refused(s[i])) != NULL)
				return -1;
			i++;
			continue;
		}
		if ((n = user_utf8_decode(s + i, len - i, &cp)) == 0) {
			*error_r = "user name is not valid UTF-8";
			return -1;
		}
		if (user_cp_refused(cp)) {
			*error_r = "user name holds an invisible or "
			    "white space character";
			return -1;
		}
		i += n;
	}
	return 0;
}

int
user_name_valid_len(const char *name, size_t len, const char **error_r)
{
	if (len == 0) {
		*error_r = "empty user name";
		return -1;
	}
	if (len > USER_NAME_MAX) {
		*error_r = "user name longer than 255 bytes";
		return -1;
	}
	if (memchr(name, '\0', len) != NULL) {
		*error_r = "user name holds a NUL byte";
		return -1;
	}
	if (name[0] == '-' || name[0] == '.' || name[0] == '#') {
		*error_r = "user name starts with '-', '.' or '#'";
		return -1;
	}
	if (name[0] == '@' || name[len - 1] == '@') {
		*error_r = "user name has an empty local part or domain";
		return -1;
	}
	if (memmem(name, len, "..", 2) != NULL) {
		*error_r = "user name holds \"..\"";
		return -1;
	}
	return user_name_chars((const unsigned char *)name, len, error_r);
}

int
user_name_valid(const char *name, const char **error_r)
{
	return user_name_valid_len(name, strlen(name), error_r);
}

/* A decimal id below (uid_t)-1: digits only, no sign, no overflow. */
static int
user_parse_id(const char *s, unsigned long *id_r)
{
	unsigned long v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		if (v > (0xfffffffeUL - (unsigned long)(*s - '0')) / 10)
			return -1;
		v = v * 10 + (unsigned long)(*s - '0');
	}
	*id_r = v;
	return 0;
}

/* Call fn (getpwnam_r-shaped, via the wrappers below) with a growing
 * buffer. Returns 1 found, 0 not found, -1 error (errno set). */
typedef int user_getent_fn(const void *key, void *ent, char *buf,
    size_t size, void **result);

static int
user_getent(user_getent_fn *fn, const void *key, void *ent, char **buf_r)
{
	size_t size = 4096;
	void *result;
	int err;

	for (;;) {
		*buf_r = xmalloc(size);
		err = fn(key, ent, *buf_r, size, &result);
		if (err != ERANGE || size >= USER_PWBUF_MAX)
			break;
		free(*buf_r);
		size *= 2;
	}
	if (err == 0 && result != NULL)
		return 1;
	free(*buf_r);
	*buf_r = NULL;
	/* getpwnam_r(3): these mean "no such name" on some systems. */
	if (err == 0 || err == ENOENT || err == ESRCH || err == EBADF ||
	    err == EPERM)
		return 0;
	errno = err;
	return -1;
}

/* The wrappers store the result pointer through a local of the right
 * type, so user_getent can hold it as a void *. */
static int
user_getpwnam(const void *key, void *ent, char *buf, size_t size,
    void **result)
{
	struct passwd *r = NULL;
	int err = getpwnam_r(key, ent, buf, size, &r);

	*result = r;
	return err;
}

static int
user_getpwuid(const void *key, void *ent, char *buf, size_t size,
    void **result)
{
	struct passwd *r = NULL;
	int err = getpwuid_r(*(const uid_t *)key, ent, buf, size, &r);

	*result = r;
	return err;
}

static int
user_getgrnam(const void *key, void *ent, char *buf, size_t size,
    void **result)
{
	struct group *r = NULL;
	int err = getgrnam_r(key, ent, buf, size, &r);

	*result = r;
	return err;
}

static int
user_getspnam(const void *key, void *ent, char *buf, size_t size,
    void **result)
{
	struct spwd *r = NULL;
	int err = getspnam_r(key, ent, buf, size, &r);

	*result = r;
	return err;
}

static bool
user_setting(const char *value)
{
	return value != NULL && value[0] != '\0';
}

static int
user_id_error(const char *what, const char *setting, const char *why,
    const char **error_r)
{
	snprintf(user_error_buf, sizeof(user_error_buf), "%s \"%.100s\" %s",
	    what, setting, why);
	*error_r = user_error_buf;
	return -1;
}

/* virtual_uid, a number or a user name, with that user's primary group
 * (-1 if a number has no passwd entry). */
static int
user_virtual_uid(const char *setting, uid_t *uid_r, long long *pgid_r,
    const char **error_r)
{
	struct passwd pw;
	unsigned long id;
	uid_t uid;
	char *buf;
	int ret;

	if (user_parse_id(setting, &id) == 0) {
		uid = (uid_t)id;
		*uid_r = uid;
		*pgid_r = -1;
		if (user_getent(user_getpwuid, &uid, &pw, &buf) == 1) {
			*pgid_r = pw.pw_gid;
			free(buf);
		}
		return 0;
	}
	if ((ret = user_getent(user_getpwnam, setting, &pw, &buf)) <= 0)
		return user_id_error("virtual_uid", setting, ret == 0 ?
		    "does not exist" : strerror(errno), error_r);
	*uid_r = pw.pw_uid;
	*pgid_r = pw.pw_gid;
	free(buf);
	return 0;
}

/* virtual_gid, a number or a group name. */
static int
user_virtual_gid(const char *setting, gid_t *gid_r, const char **error_r)
{
	struct group gr;
	unsigned long id;
	char *buf;
	int ret;

	if (user_parse_id(setting, &id) == 0) {
		*gid_r = (gid_t)id;
		return 0;
	}
	if ((ret = user_getent(user_getgrnam, setting, &gr, &buf)) <= 0)
		return user_id_error("virtual_gid", setting, ret == 0 ?
		    "does not exist" : strerror(errno), error_r);
	*gid_r = gr.gr_gid;
	free(buf);
	return 0;
}

/* The ids for a virtual user whose line leaves them empty: virtual_uid or
 * the effective uid; virtual_gid, or the primary group of virtual_uid, or
 * the effective gid when virtual_uid is empty too. */
static int
user_virtual_ids(const struct user_settings *set, uid_t *uid_r,
    gid_t *gid_r, const char **error_r)
{
	long long pgid = getegid();

	*uid_r = geteuid();
	if (user_setting(set->virtual_uid) &&
	    user_virtual_uid(set->virtual_uid, uid_r, &pgid, error_r) < 0)
		return -1;
	if (user_setting(set->virtual_gid))
		return user_virtual_gid(set->virtual_gid, gid_r, error_r);
	if (pgid < 0)
		return user_id_error("virtual_uid", set->virtual_uid,
		    "has no passwd entry to take a group from; set "
		    "virtual_gid", error_r);
	*gid_r = (gid_t)pgid;
	return 0;
}

static int
user_resolve_ids(const struct user_settings *set, struct user *user,
    const char **error_r)
{
	uid_t uid;
	gid_t gid;

	if (user->uid == 0) {
		*error_r = "user has uid 0 in user_database; refused";
		return 0;
	}
	if (user->uid != USER_UID_UNSET && user->gid != USER_GID_UNSET)
		return 1;
	if (user_virtual_ids(set, &uid, &gid, error_r) < 0)
		return -1;
	if (user->uid == USER_UID_UNSET) {
		if (uid == 0 && user_setting(set->virtual_uid)) {
			*error_r = "virtual_uid is root; refused";
			return 0;
		}
		user->uid = uid;
	}
	if (user->gid == USER_GID_UNSET)
		user->gid = gid;
	return 1;
}

int
user_resolve_virtual(const struct user_settings *set, struct user *user,
    const char **error_r)
{
	int ret;

	if ((ret = user_resolve_ids(set, user, error_r)) <= 0)
		return ret;
	if (user->mail_location == NULL)
		user->mail_location = xstrdup(set->mail_location != NULL &&
		    set->mail_location[0] != '\0' ? set->mail_location :
		    USER_DEFAULT_MAIL_LOCATION);
	return 1;
}

/* Virtual users. A name with a malformed line is unknown, and must not
 * fall through to a system user of the same name. */
static int
user_lookup_virtual(const struct user_settings *set, const char *name,
    struct user **user_r, bool *stop_r, const char **error_r)
{
	struct userdb *db;
	int ret;

	*stop_r = false;
	if (set->user_database == NULL || set->user_database[0] == '\0')
		return 0;
	if (userdb_open(set->user_database, false, &db, error_r) < 0)
		return -1;
	ret = userdb_find(db, name, user_r);
	if (ret == 0 && userdb_name_taken(db, name)) {
		*stop_r = true;
		*error_r = "user has a malformed line in user_database";
	}
	userdb_close(&db);
	if (ret == 0)
		return 0;
	*stop_r = true;
	if ((ret = user_resolve_virtual(set, *user_r, error_r)) != 1)
		user_free(user_r);
	return ret;
}

/* The shadow hash if this process may read it, else a crypt string in
 * pw_passwd, else "" (no password login). */
static char *
user_system_hash(const struct passwd *pw)
{
	struct spwd sp;
	char *buf, *hash;

	if (user_getent(user_getspnam, pw->pw_name, &sp, &buf) == 1) {
		hash = xstrdup(sp.sp_pwdp != NULL ? sp.sp_pwdp : "");
		if (sp.sp_pwdp != NULL)
			explicit_bzero(sp.sp_pwdp, strlen(sp.sp_pwdp));
		free(buf);
		return hash;
	}
	return xstrdup(pw->pw_passwd != NULL && pw->pw_passwd[0] == '$' ?
	    pw->pw_passwd : "");
}

static struct user *
user_from_passwd(const struct user_settings *set, const struct passwd *pw)
{
	struct user *user = xcalloc(1, sizeof(*user));

	user->name = xstrdup(pw->pw_name);
	user->pwhash = user_system_hash(pw);
	user->uid = pw->pw_uid;
	user->gid = pw->pw_gid;
	user->home = xstrdup(pw->pw_dir != NULL ? pw->pw_dir : "");
	user->mail_location = xstrdup(set->system_mail_location != NULL &&
	    set->system_mail_location[0] != '\0' ?
	    set->system_mail_location : USER_DEFAULT_SYSTEM_MAIL_LOCATION);
	user->system = true;
	user->fields = xstrdup("");
	return user;
}

static int
user_lookup_system(const struct user_settings *set, const char *name,
    struct user **user_r, const char **error_r)
{
	struct passwd pw;
	char *buf;
	int ret;

	ret = user_getent(user_getpwnam, name, &pw, &buf);
	if (ret < 0) {
		snprintf(user_error_buf, sizeof(user_error_buf),
		    "getpwnam failed: %s", strerror(errno));
		*error_r = user_error_buf;
		return -1;
	}
	if (ret == 0) {
		*error_r = "unknown user";
		return 0;
	}
	if (pw.pw_uid == 0) {
		free(buf);
		*error_r = "system user has uid 0; refused";
		return 0;
	}
	*user_r = user_from_passwd(set, &pw);
	free(buf);
	return 1;
}

int
user_lookup_with(const struct user_settings *set, const char *name,
    struct user **user_r, const char **error_r)
{
	bool stop;
	int ret;

	*user_r = NULL;
	if (user_name_valid(name, error_r) < 0)
		return 0;
	ret = user_lookup_virtual(set, name, user_r, &stop, error_r);
	if (ret != 0 || stop)
		return ret;
	if (!set->system_users) {
		*error_r = "unknown user";
		return 0;
	}
	return user_lookup_system(set, name, user_r, error_r);
}

void
user_settings_from_conf(struct user_settings *set_r)
{
	set_r->user_database = conf_str("user_database");
	set_r->system_users = conf_bool("system_users");
	set_r->virtual_uid = conf_str("virtual_uid");
	set_r->virtual_gid = conf_str("virtual_gid");
	set_r->mail_location = conf_str("mail_location");
	set_r->system_mail_location = conf_str("system_mail_location");
}

int
user_lookup(const char *name, struct user **user_r, const char **error_r)
{
	struct user_settings set;

	user_settings_from_conf(&set);
	return user_lookup_with(&set, name, user_r, error_r);
}

static char *
user_strdup_or_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

struct user *
user_dup(const struct user *user)
{
	struct user *copy = xmalloc(sizeof(*copy));

	*copy = *user;
	copy->name = xstrdup(user->name);
	copy->pwhash = xstrdup(user->pwhash);
	copy->home = xstrdup(user->home);
	copy->mail_location = user_strdup_or_null(user->mail_location);
	copy->fields = xstrdup(user->fields);
	return copy;
}

void
user_free(struct user **userp)
{
	struct user *user = *userp;

	if (user == NULL)
		return;
	*userp = NULL;
	if (user->pwhash != NULL)
		explicit_bzero(user->pwhash, strlen(user->pwhash));
	free(user->name);
	free(user->pwhash);
	free(user->home);
	free(user->mail_location);
	free(user->fields);
	free(user);
}
