/*
 * userdb.c: the virtual user file: read it, look names up, edit it in
 * memory and replace it atomically under a lock.
 *
 * The file is the administrator's, edited by loftctl or by hand, so it is
 * trusted not to be hostile but not to be well formed: every line is
 * checked, a bad line is logged and skipped (that user is unknown), and
 * lines are kept byte for byte unless they are edited, so a rewrite never
 * loses what this version does not understand. Edits are validated by
 * composing the new line and parsing it back, so what is written is
 * always what will be read. The file holds password hashes: it is never
 * created readable by others, and only keeps group read if it had it.
 */
#include "config.h"
#include <sys/file.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "buf.h"
#include "compat/compat.h"
#include "log.h"
#include "mailloc.h"
#include "user.h"
#include "userdb.h"
#include "xmalloc.h"

#define USERDB_FIELDS 6
#define USERDB_READ_CHUNK 65536

struct userdb_line {
	char *text;		/* the line without its newline; owned */
	size_t len;		/* may hold NUL bytes if malformed */
	char *name;		/* its name field if a valid name, else NULL */
	struct user *user;	/* the entry; NULL for comments, bad lines */
};

struct userdb {
	char *path;
	int lock_fd;			/* FILE.lock, held; -1 if read-only */
	struct userdb_line *lines;	/* count used, alloc allocated */
	size_t count, alloc;
	size_t *slots;			/* name -> line index + 1; 0 = empty */
	size_t nslots;			/* 0 or a power of two > 2 * names */
	size_t names;
	bool dirty;			/* edited since read or saved */
};

/* A line cut at its first five ':' (fields itself may hold ':'). */
struct userdb_split {
	const char *f[USERDB_FIELDS];
	size_t len[USERDB_FIELDS];
	size_t n;			/* fields present */
};

static char userdb_error_buf[512];

static const char * __attribute__((format(printf, 1, 2)))
userdb_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(userdb_error_buf, sizeof(userdb_error_buf), fmt, ap);
	va_end(ap);
	return userdb_error_buf;
}

/* ---- parsing one line ---- */

static void
userdb_split(const char *line, size_t len, struct userdb_split *sp)
{
	const char *p = line, *end = line + len, *colon;
	size_t i;

	sp->n = 0;
	while (sp->n < USERDB_FIELDS - 1 &&
	    (colon = memchr(p, ':', (size_t)(end - p))) != NULL) {
		sp->f[sp->n] = p;
		sp->len[sp->n++] = (size_t)(colon - p);
		p = colon + 1;
	}
	sp->f[sp->n] = p;
	sp->len[sp->n++] = (size_t)(end - p);
	for (i = sp->n; i < USERDB_FIELDS; i++) {
		sp->f[i] = "";
		sp->len[i] = 0;
	}
}

static bool
userdb_blank(const char *line, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (line[i] != ' ')
			return false;
	}
	return true;
}

static int
userdb_check_bytes(const char *s, size_t len, const char **error_r)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\0') {
			*error_r = "NUL byte";
			return -1;
		}
		if (c < 0x20 || c == 0x7f) {
			*error_r = "control character";
			return -1;
		}
	}
	return 0;
}

/* crypt(3) strings are printable ASCII without ':' or space. */
static int
userdb_hash_ok(const char *s, size_t len, const char **error_r)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] <= ' ' || s[i] >= 0x7f || s[i] == ':') {
			*error_r = "password hash holds a character that no "
			    "crypt(3) string has";
			return -1;
		}
	}
	return 0;
}

static int
userdb_home_ok(const char *s, size_t len, const char **error_r)
{
	size_t i, start;

	if (len == 0)
		return 0;
	if (s[0] != '/' || memchr(s, ':', len) != NULL ||
	    userdb_check_bytes(s, len, error_r) < 0) {
		*error_r = "home is not an absolute path without ':' and "
		    "control characters";
		return -1;
	}
	for (i = 0; i < len; i = start) {
		while (i < len && s[i] == '/')
			i++;
		if (i == len)
			break;
		for (start = i; start < len && s[start] != '/'; start++)
			;
		if (s[i] == '.' && (start - i == 1 ||
		    (start - i == 2 && s[i + 1] == '.'))) {
			*error_r = "home has a '.' or '..' component";
			return -1;
		}
	}
	return 0;
}

/* Digits only, no sign, at most max. Empty is refused here. */
static int
userdb_parse_number(const char *s, size_t len, uint64_t max,
    uint64_t *value_r)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0)
		return -1;
	for (i = 0; i < len; i++) {
		unsigned int d = (unsigned char)s[i] - '0';

		if (d > 9 || v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*value_r = v;
	return 0;
}

static int
userdb_parse_ids(const struct userdb_split *sp, struct user *user,
    const char **error_r)
{
	uint64_t v;

	user->uid = USER_UID_UNSET;
	user->gid = USER_GID_UNSET;
	if (sp->len[2] > 0) {
		if (userdb_parse_number(sp->f[2], sp->len[2],
		    (uid_t)-1 - 1, &v) < 0) {
			*error_r = "uid is not a number";
			return -1;
		}
		user->uid = (uid_t)v;
	}
	if (sp->len[3] > 0) {
		if (userdb_parse_number(sp->f[3], sp->len[3],
		    (gid_t)-1 - 1, &v) < 0) {
			*error_r = "gid is not a number";
			return -1;
		}
		user->gid = (gid_t)v;
	}
	return 0;
}

static int
userdb_parse_quota(struct user *user, const char *v, size_t len,
    const char **error_r)
{
	if (user->has_quota) {
		*error_r = "quota= given twice";
		return -1;
	}
	if (userdb_parse_number(v, len, UINT64_MAX, &user->quota) < 0 ||
	    user->quota == 0) {
		*error_r = "quota= is not a number of bytes >= 1";
		return -1;
	}
	user->has_quota = true;
	return 0;
}

static int
userdb_parse_mail(struct user *user, const char *v, size_t len,
    const char **error_r)
{
	struct mailloc ml;
	const char *error;

	if (user->mail_location != NULL || len == 0) {
		*error_r = "mail= given twice or empty";
		return -1;
	}
	user->mail_location = xstrndup(v, len);
	/* Check it now, so a typo shows in loftctl and the log at once
	 * rather than at the first delivery. */
	if (mailloc_parse(user->mail_location, user->name, user->home, &ml,
	    &error) < 0) {
		*error_r = userdb_err("mail=: %s", error);
		return -1;
	}
	mailloc_free(&ml);
	return 0;
}

static int
userdb_key_ok(const char *key, size_t len)
{
	size_t i;

	if (len == 0)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)key[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

/* One key=value token of the fields list. */
static int
userdb_parse_token(struct user *user, const char *tok, size_t len,
    const char **error_r)
{
	const char *eq = memchr(tok, '=', len);
	size_t klen, vlen;

	if (eq == NULL || !userdb_key_ok(tok, (size_t)(eq - tok))) {
		*error_r = "a field is not key=value";
		return -1;
	}
	klen = (size_t)(eq - tok);
	vlen = len - klen - 1;
	if (klen == 5 && memcmp(tok, "quota", 5) == 0)
		return userdb_parse_quota(user, eq + 1, vlen, error_r);
	if (klen == 4 && memcmp(tok, "mail", 4) == 0)
		return userdb_parse_mail(user, eq + 1, vlen, error_r);
	return 0;
}

static int
userdb_parse_fields(struct user *user, const char **error_r)
{
	const char *p = user->fields;
	size_t len;

	while (*p != '\0') {
		if (*p == ' ') {
			p++;
			continue;
		}
		len = strcspn(p, " ");
		if (userdb_parse_token(user, p, len, error_r) < 0)
			return -1;
		p += len;
	}
	return 0;
}

static int
userdb_parse_split(const struct userdb_split *sp, struct user *user,
    const char **error_r)
{
	if (user_name_valid_len(sp->f[0], sp->len[0], error_r) < 0)
		return -1;
	user->name = xstrndup(sp->f[0], sp->len[0]);
	if (userdb_hash_ok(sp->f[1], sp->len[1], error_r) < 0)
		return -1;
	user->pwhash = xstrndup(sp->f[1], sp->len[1]);
	if (userdb_parse_ids(sp, user, error_r) < 0)
		return -1;
	if (userdb_home_ok(sp->f[4], sp->len[4], error_r) < 0)
		return -1;
	user->home = xstrndup(sp->f[4], sp->len[4]);
	user->fields = xstrndup(sp->f[5], sp->len[5]);
	return userdb_parse_fields(user, error_r);
}

int
userdb_parse_line(const char *line, size_t len, struct user **user_r,
    const char **error_r)
{
	struct userdb_split sp;
	struct user *user;

	*user_r = NULL;
	if (len > USERDB_LINE_MAX) {
		*error_r = "line longer than 8192 bytes";
		return -1;
	}
	if (userdb_check_bytes(line, len, error_r) < 0)
		return -1;
	if (userdb_blank(line, len) || line[0] == '#')
		return 0;
	userdb_split(line, len, &sp);
	if (sp.n < 2) {
		*error_r = "no ':' after the name";
		return -1;
	}
	user = xcalloc(1, sizeof(*user));
	if (userdb_parse_split(&sp, user, error_r) < 0) {
		user_free(&user);
		return -1;
	}
	*user_r = user;
	return 1;
}

/* ---- the name index: open addressing, FNV-1a ---- */

static size_t
userdb_hash(const char *s)
{
	uint64_t h = 14695981039346656037ULL;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return (size_t)h;
}

/* The slot holding name, or the empty slot where it would go. */
static size_t *
userdb_slot(struct userdb *db, const char *name)
{
	size_t mask = db->nslots - 1, i = userdb_hash(name) & mask;

	while (db->slots[i] != 0 &&
	    strcmp(db->lines[db->slots[i] - 1].name, name) != 0)
		i = (i + 1) & mask;
	return &db->slots[i];
}

static void
userdb_index_rebuild(struct userdb *db, size_t nslots)
{
	size_t i, *slot;

	free(db->slots);
	db->slots = xcalloc(nslots, sizeof(*db->slots));
	db->nslots = nslots;
	db->names = 0;
	for (i = 0; i < db->count; i++) {
		if (db->lines[i].name == NULL)
			continue;
		slot = userdb_slot(db, db->lines[i].name);
		if (*slot == 0) {
			*slot = i + 1;
			db->names++;
		}
	}
}

/* Index line i under its name unless an earlier line has it. */
static void
userdb_index_add(struct userdb *db, size_t i)
{
	size_t *slot;

	if (db->nslots == 0 || (db->names + 1) > db->nslots / 2)
		userdb_index_rebuild(db, db->nslots == 0 ? 64 :
		    db->nslots * 2);
	slot = userdb_slot(db, db->lines[i].name);
	if (*slot == 0) {
		*slot = i + 1;
		db->names++;
	}
}

/* The first line with name, or NULL. */
static struct userdb_line *
userdb_line_of(struct userdb *db, const char *name)
{
	size_t *slot;

	if (db->nslots == 0)
		return NULL;
	slot = userdb_slot(db, name);
	return *slot == 0 ? NULL : &db->lines[*slot - 1];
}

/* ---- reading ---- */

/* The name field of a line if it is a valid name (so a malformed line
 * still keeps its name from being added twice). */
static char *
userdb_line_name(const char *text, size_t len)
{
	const char *colon = memchr(text, ':', len), *error;
	size_t nlen = colon != NULL ? (size_t)(colon - text) : len;

	if (user_name_valid_len(text, nlen, &error) < 0)
		return NULL;
	return xstrndup(text, nlen);
}

static struct userdb_line *
userdb_append(struct userdb *db, const char *text, size_t len)
{
	struct userdb_line *l;

	if (db->count == db->alloc) {
		db->alloc = db->alloc == 0 ? 64 : db->alloc * 2;
		db->lines = xreallocarray(db->lines, db->alloc,
		    sizeof(*db->lines));
	}
	l = &db->lines[db->count++];
	l->text = xmalloc(len + 1);
	memcpy(l->text, text, len);
	l->text[len] = '\0';
	l->len = len;
	l->name = NULL;
	l->user = NULL;
	return l;
}

/* A line as read from the file; lineno counts from 1. */
static void
userdb_read_line(struct userdb *db, const char *text, size_t len,
    size_t lineno)
{
	struct userdb_line *l = userdb_append(db, text, len), *first;
	const char *error;
	int ret;

	ret = userdb_parse_line(text, len, &l->user, &error);
	if (ret == 0)
		return;
	l->name = userdb_line_name(text, len);
	if (ret > 0 && (first = userdb_line_of(db, l->name)) != NULL) {
		user_free(&l->user);
		error = userdb_err("duplicate of line %zu",
		    (size_t)(first - db->lines) + 1);
		ret = -1;
	}
	if (ret < 0)
		log_warning("%s:%zu: %s; line skipped", db->path, lineno,
		    error);
	if (l->name != NULL)
		userdb_index_add(db, db->count - 1);
}

static void
userdb_split_lines(struct userdb *db, const char *data, size_t len)
{
	const char *p = data, *end = data + len, *nl;
	size_t lineno = 1;

	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		userdb_read_line(db, p, (size_t)(nl - p), lineno++);
		p = nl + 1;
	}
}

static int
userdb_read_fd(int fd, const char *path, struct buf *b, const char **error_r)
{
	char chunk[USERDB_READ_CHUNK];
	ssize_t n;

	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error_r = userdb_err("read %s: %s", path,
			    strerror(errno));
			return -1;
		}
		if (n == 0)
			return 0;
		if (buf_append(b, chunk, (size_t)n) < 0) {
			*error_r = userdb_err("%s is larger than %d bytes",
			    path, USERDB_SIZE_MAX);
			return -1;
		}
	}
}

static int
userdb_read(struct userdb *db, const char **error_r)
{
	struct stat st;
	struct buf b;
	int fd, ret;

	fd = open(db->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0) {
		*error_r = userdb_err("open %s: %s", db->path,
		    strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > USERDB_SIZE_MAX) {
		*error_r = userdb_err("%s is not a regular file of at most "
		    "%d bytes", db->path, USERDB_SIZE_MAX);
		close(fd);
		return -1;
	}
	buf_init(&b, USERDB_SIZE_MAX);
	ret = userdb_read_fd(fd, db->path, &b, error_r);
	close(fd);
	if (ret == 0)
		userdb_split_lines(db, (const char *)b.data, b.len);
	buf_free(&b);
	return ret;
}

static int
userdb_lock(struct userdb *db, const char **error_r)
{
	char *lock_path = xasprintf("%s.lock", db->path);
	int ret;

	db->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC |
	    O_NOFOLLOW | O_NOCTTY, 0600);
	if (db->lock_fd < 0) {
		*error_r = userdb_err("open %s: %s", lock_path,
		    strerror(errno));
		free(lock_path);
		return -1;
	}
	while ((ret = flock(db->lock_fd, LOCK_EX)) < 0 && errno == EINTR)
		;
	if (ret < 0)
		*error_r = userdb_err("flock %s: %s", lock_path,
		    strerror(errno));
	free(lock_path);
	return ret;
}

int
userdb_open(const char *path, bool for_update, struct userdb **db_r,
    const char **error_r)
{
	struct userdb *db = xcalloc(1, sizeof(*db));

	*db_r = NULL;
	if (path[0] == '\0') {
		*error_r = "user_database is not set";
		free(db);
		return -1;
	}
	db->path = xstrdup(path);
	db->lock_fd = -1;
	/* Lock before reading, so the copy edited is the newest one. */
	if ((for_update && userdb_lock(db, error_r) < 0) ||
	    userdb_read(db, error_r) < 0) {
		userdb_close(&db);
		return -1;
	}
	*db_r = db;
	return 0;
}

static void
userdb_line_free(struct userdb_line *l)
{
	explicit_bzero(l->text, l->len);
	free(l->text);
	free(l->name);
	user_free(&l->user);
}

void
userdb_close(struct userdb **dbp)
{
	struct userdb *db = *dbp;
	size_t i;

	if (db == NULL)
		return;
	*dbp = NULL;
	for (i = 0; i < db->count; i++)
		userdb_line_free(&db->lines[i]);
	free(db->lines);
	free(db->slots);
	if (db->lock_fd >= 0)
		close(db->lock_fd);
	free(db->path);
	free(db);
}

/* ---- lookups ---- */

int
userdb_find(struct userdb *db, const char *name, struct user **user_r)
{
	struct userdb_line *l;
	const char *error;

	*user_r = NULL;
	if (user_name_valid(name, &error) < 0)
		return 0;
	l = userdb_line_of(db, name);
	if (l == NULL || l->user == NULL)
		return 0;
	*user_r = user_dup(l->user);
	return 1;
}

bool
userdb_name_taken(struct userdb *db, const char *name)
{
	return userdb_line_of(db, name) != NULL;
}

const struct user *
userdb_next(struct userdb *db, size_t *pos)
{
	while (*pos < db->count) {
		struct userdb_line *l = &db->lines[(*pos)++];

		if (l->user != NULL)
			return l->user;
	}
	return NULL;
}

/* ---- edits ---- */

static int
userdb_check_update(struct userdb *db, const char *name,
    const char **error_r)
{
	if (db->lock_fd < 0) {
		*error_r = "user database not opened for update";
		return -1;
	}
	return user_name_valid(name, error_r);
}

/* The entry for name, or NULL with *error_r. */
static struct userdb_line *
userdb_entry(struct userdb *db, const char *name, const char **error_r)
{
	struct userdb_line *l = userdb_line_of(db, name);

	if (l == NULL) {
		*error_r = userdb_err("no such user: %s", name);
		return NULL;
	}
	if (l->user == NULL) {
		*error_r = userdb_err("the line of %s is malformed; fix or "
		    "delete it", name);
		return NULL;
	}
	return l;
}

static void
userdb_id_str(char *out, size_t size, uint64_t id, bool unset)
{
	if (unset)
		out[0] = '\0';
	else
		snprintf(out, size, "%" PRIu64, id);
}

static char *
userdb_compose(const char *name, const char *pwhash, uid_t uid, gid_t gid,
    const char *home, const char *fields)
{
	char u[24], g[24];

	userdb_id_str(u, sizeof(u), uid, uid == USER_UID_UNSET);
	userdb_id_str(g, sizeof(g), gid, gid == USER_GID_UNSET);
	return xasprintf("%s:%s:%s:%s:%s:%s", name, pwhash, u, g, home,
	    fields);
}

/* Parse the composed text back; on success it replaces l's line (or is
 * appended if l is NULL). text is taken over either way. */
static int
userdb_store(struct userdb *db, struct userdb_line *l, char *text,
    const char *name, const char **error_r)
{
	struct user *user;
	const char *error = "not a user line";
	size_t len = strlen(text);

	if (userdb_parse_line(text, len, &user, &error) != 1 ||
	    strcmp(user->name, name) != 0) {
		*error_r = userdb_err("the new line would be invalid: %s",
		    user == NULL ? error : "name changed");
		user_free(&user);
		free(text);
		return -1;
	}
	if (l == NULL) {
		l = userdb_append(db, text, len);
		l->name = xstrdup(name);
		userdb_index_add(db, db->count - 1);
		free(text);
	} else {
		explicit_bzero(l->text, l->len);
		free(l->text);
		user_free(&l->user);
		l->text = text;
		l->len = len;
	}
	l->user = user;
	db->dirty = true;
	return 0;
}

int
userdb_add(struct userdb *db, const char *name, const char *pwhash,
    const char *home, uint64_t quota, bool has_quota, const char **error_r)
{
	char *fields;
	int ret;

	if (pwhash == NULL)
		pwhash = "";
	if (home == NULL)
		home = "";
	if (userdb_check_update(db, name, error_r) < 0 ||
	    userdb_hash_ok(pwhash, strlen(pwhash), error_r) < 0 ||
	    userdb_home_ok(home, strlen(home), error_r) < 0)
		return -1;
	if (userdb_line_of(db, name) != NULL) {
		*error_r = userdb_err("user %s already exists", name);
		return -1;
	}
	if (has_quota && quota == 0) {
		*error_r = "quota must be at least 1 byte";
		return -1;
	}
	fields = has_quota ? xasprintf("quota=%" PRIu64, quota) : xstrdup("");
	ret = userdb_store(db, NULL, userdb_compose(name, pwhash,
	    USER_UID_UNSET, USER_GID_UNSET, home, fields), name, error_r);
	free(fields);
	return ret;
}

/* fields with every KEY= token dropped and, if value is not NULL,
 * KEY=value in place of the first one (or at the end). NULL if it grows
 * too long. */
static char *
userdb_fields_set(const char *fields, const char *key, const char *value)
{
	struct buf b;
	const char *p = fields;
	size_t klen = strlen(key), len;
	bool placed = value == NULL;
	char *result = NULL;

	buf_init(&b, USERDB_LINE_MAX);
	while (*p != '\0') {
		if (*p == ' ') {
			p++;
			continue;
		}
		len = strcspn(p, " ");
		if (len <= klen || strncmp(p, key, klen) != 0 || p[klen] != '=') {
			if ((b.len > 0 && buf_append_byte(&b, ' ') < 0) ||
			    buf_append(&b, p, len) < 0)
				goto fail;
		} else if (!placed) {
			if ((b.len > 0 && buf_append_byte(&b, ' ') < 0) ||
			    buf_printf(&b, "%s=%s", key, value) < 0)
				goto fail;
			placed = true;
		}
		p += len;
	}
	if (!placed && ((b.len > 0 && buf_append_byte(&b, ' ') < 0) ||
	    buf_printf(&b, "%s=%s", key, value) < 0))
		goto fail;
	result = xstrdup(buf_cstr(&b));
fail:
	buf_free(&b);
	return result;
}

/* Keys of secrets derived from the password, which a new password must
 * not leave behind (an old SCRAM secret would still log in). */
static const char *const userdb_password_keys[] = {
	"scram-sha-256", "scram-sha-1",
};

int
userdb_set_password(struct userdb *db, const char *name, const char *pwhash,
    const char **error_r)
{
	struct userdb_line *l;
	struct user *u;
	char *fields;
	int ret;

	if (pwhash == NULL)
		pwhash = "";
	if (userdb_check_update(db, name, error_r) < 0 ||
	    userdb_hash_ok(pwhash, strlen(pwhash), error_r) < 0 ||
	    (l = userdb_entry(db, name, error_r)) == NULL)
		return -1;
	u = l->user;
	fields = xstrdup(u->fields);
	for (size_t i = 0; i < sizeof(userdb_password_keys) /
	    sizeof(userdb_password_keys[0]) && fields != NULL; i++) {
		char *next = userdb_fields_set(fields, userdb_password_keys[i],
		    NULL);

		free(fields);
		fields = next;
	}
	if (fields == NULL) {
		*error_r = "line too long";
		return -1;
	}
	ret = userdb_store(db, l, userdb_compose(u->name, pwhash, u->uid,
	    u->gid, u->home, fields), name, error_r);
	free(fields);
	return ret;
}

int
userdb_set_field(struct userdb *db, const char *name, const char *key,
    const char *value, const char **error_r)
{
	struct userdb_line *l;
	struct user *u;
	char *fields;
	int ret;

	if (strcmp(key, "quota") == 0 || strcmp(key, "mail") == 0 ||
	    key[0] == '\0' || key[strcspn(key, "= :\t\r\n")] != '\0') {
		*error_r = userdb_err("field name not allowed here: %s", key);
		return -1;
	}
	for (const char *v = value; v != NULL && *v != '\0'; v++) {
		if ((unsigned char)*v <= ' ' || *v == 0x7f) {
			*error_r = "field value may not hold white space or "
			    "control characters";
			return -1;
		}
	}
	if (userdb_check_update(db, name, error_r) < 0 ||
	    (l = userdb_entry(db, name, error_r)) == NULL)
		return -1;
	u = l->user;
	if ((fields = userdb_fields_set(u->fields, key, value)) == NULL) {
		*error_r = "line too long";
		return -1;
	}
	ret = userdb_store(db, l, userdb_compose(u->name, u->pwhash, u->uid,
	    u->gid, u->home, fields), name, error_r);
	free(fields);
	return ret;
}

int
userdb_set_quota(struct userdb *db, const char *name, uint64_t quota,
    bool has_quota, const char **error_r)
{
	struct userdb_line *l;
	struct user *u;
	char *fields, qbuf[32];
	int ret;

	if (userdb_check_update(db, name, error_r) < 0 ||
	    (l = userdb_entry(db, name, error_r)) == NULL)
		return -1;
	if (has_quota && quota == 0) {
		*error_r = "quota must be at least 1 byte";
		return -1;
	}
	u = l->user;
	snprintf(qbuf, sizeof(qbuf), "%" PRIu64, quota);
	if ((fields = userdb_fields_set(u->fields, "quota",
	    has_quota ? qbuf : NULL)) == NULL) {
		*error_r = "line too long";
		return -1;
	}
	ret = userdb_store(db, l, userdb_compose(u->name, u->pwhash, u->uid,
	    u->gid, u->home, fields), name, error_r);
	free(fields);
	return ret;
}

int
userdb_delete(struct userdb *db, const char *name, const char **error_r)
{
	size_t i, kept = 0;

	if (userdb_check_update(db, name, error_r) < 0)
		return -1;
	if (userdb_line_of(db, name) == NULL) {
		*error_r = userdb_err("no such user: %s", name);
		return -1;
	}
	for (i = 0; i < db->count; i++) {
		if (db->lines[i].name != NULL &&
		    strcmp(db->lines[i].name, name) == 0)
			userdb_line_free(&db->lines[i]);
		else
			db->lines[kept++] = db->lines[i];
	}
	db->count = kept;
	userdb_index_rebuild(db, db->nslots);
	db->dirty = true;
	return 0;
}

/* ---- saving ---- */

/* The mode and owner to give the new file: 0600, plus group read if the
 * old file had it; a symbolic link is refused (rename would replace it). */
static int
userdb_target(const char *path, struct stat *st_r, bool *exists_r,
    const char **error_r)
{
	*exists_r = false;
	if (lstat(path, st_r) < 0) {
		if (errno == ENOENT)
			return 0;
		*error_r = userdb_err("stat %s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st_r->st_mode)) {
		*error_r = userdb_err("%s is not a regular file (a symbolic "
		    "link? point user_database at the file itself)", path);
		return -1;
	}
	*exists_r = true;
	return 0;
}

static int
userdb_write_all(int fd, const unsigned char *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
userdb_contents(struct userdb *db, struct buf *b, const char **error_r)
{
	size_t i;

	buf_init(b, USERDB_SIZE_MAX);
	for (i = 0; i < db->count; i++) {
		if (buf_append(b, db->lines[i].text, db->lines[i].len) < 0 ||
		    buf_append_byte(b, '\n') < 0) {
			*error_r = userdb_err("the file would be larger than "
			    "%d bytes", USERDB_SIZE_MAX);
			return -1;
		}
	}
	return 0;
}

/* Give fd the old file's owner and group (if they differ from ours),
 * then its mode; ownership first, so that group read never applies to a
 * group other than the old one. */
static int
userdb_set_perms(int fd, const struct stat *old, bool exists,
    const char **error_r)
{
	mode_t mode = 0600;

	if (exists) {
		mode |= old->st_mode & 0040;
		if ((old->st_uid != geteuid() || old->st_gid != getegid()) &&
		    fchown(fd, old->st_uid, old->st_gid) < 0) {
			*error_r = userdb_err("cannot keep owner %lu:%lu: %s",
			    (unsigned long)old->st_uid,
			    (unsigned long)old->st_gid, strerror(errno));
			return -1;
		}
	}
	if (fchmod(fd, mode) < 0) {
		*error_r = userdb_err("fchmod: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int
userdb_write_tmp(const char *tmp, const struct buf *b, const struct stat *old,
    bool exists, const char **error_r)
{
	int fd;

	/* A stale file of a dead process with our pid; we hold the lock. */
	if (unlink(tmp) < 0 && errno != ENOENT) {
		*error_r = userdb_err("unlink %s: %s", tmp, strerror(errno));
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    0600);
	if (fd < 0) {
		*error_r = userdb_err("create %s: %s", tmp, strerror(errno));
		return -1;
	}
	if (userdb_set_perms(fd, old, exists, error_r) < 0) {
		close(fd);
		return -1;
	}
	if (userdb_write_all(fd, b->data, b->len) < 0 || fsync(fd) < 0) {
		*error_r = userdb_err("write %s: %s", tmp, strerror(errno));
		close(fd);
		return -1;
	}
	if (close(fd) < 0) {
		*error_r = userdb_err("close %s: %s", tmp, strerror(errno));
		return -1;
	}
	return 0;
}

/* Make the rename durable: fsync the directory holding path. */
static int
userdb_fsync_dir(const char *path, const char **error_r)
{
	char *dir = xstrdup(path), *slash = strrchr(dir, '/');
	int fd, ret = -1;

	if (slash == NULL)
		strlcpy(dir, ".", 2);
	else
		slash[slash == dir ? 1 : 0] = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		ret = fsync(fd);
		close(fd);
	}
	if (ret < 0)
		*error_r = userdb_err("fsync %s: %s", dir, strerror(errno));
	free(dir);
	return ret;
}

int
userdb_save(struct userdb *db, const char **error_r)
{
	struct stat old;
	struct buf b;
	bool exists;
	char *tmp;
	int ret = -1;

	if (db->lock_fd < 0) {
		*error_r = "user database not opened for update";
		return -1;
	}
	if (!db->dirty)
		return 0;
	if (userdb_target(db->path, &old, &exists, error_r) < 0)
		return -1;
	if (userdb_contents(db, &b, error_r) < 0) {
		buf_free(&b);
		return -1;
	}
	tmp = xasprintf("%s.tmp.%ld", db->path, (long)getpid());
	if (userdb_write_tmp(tmp, &b, &old, exists, error_r) == 0) {
		if (rename(tmp, db->path) < 0)
			*error_r = userdb_err("rename %s to %s: %s", tmp,
			    db->path, strerror(errno));
		else
			ret = 0;
	}
	if (ret < 0)
		unlink(tmp);
	else if ((ret = userdb_fsync_dir(db->path, error_r)) == 0)
		db->dirty = false;
	if (b.data != NULL)
		explicit_bzero(b.data, b.len);
	buf_free(&b);
	free(tmp);
	return ret;
}
