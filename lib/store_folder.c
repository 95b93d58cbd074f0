/*
 * store_folder.c: the folders of a user: the name rules, LIST, CREATE,
 * DELETE and RENAME, on Maildir++ (ROOT/.A.B directories) and mbox (files
 * and directories under the mail root), with the index kept in step.
 *
 * SECURITY: folder names come from IMAP clients and are checked byte by
 * byte before any path is made from them (store_folder_rules), and the
 * path must stay inside the mail root even through symbolic links
 * (store_folder_inside). Directory entries found on disk are the user's
 * and other programs': a name that does not pass the same rules is
 * skipped. The mail root and the INBOX path come from the configuration
 * and are trusted. Runs as the mailbox owner.
 */
#include "config.h"

#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "buf.h"
#include "compat/compat.h"
#include "fsutil.h"
#include "log.h"
#include "maildir.h"
#include "store_ops_private.h"
#include "utf7.h"
#include "xmalloc.h"

/* A deleted Maildir++ folder is renamed to ROOT/..loft-deleted.PID.N
 * first. Two leading dots: maildir_folder_name() refuses the name, so
 * neither LIST nor a sync ever sees it. */
#define STORE_FOLDER_TRASH	"..loft-deleted."
/* The INBOX mbox copied for a RENAME is written to .NAME.loft-rename.PID
 * beside the new file first. */
#define STORE_FOLDER_RENAME_INFIX ".loft-rename."
/* mbox folder trees deeper than this are not listed (a loop guard). */
#define STORE_FOLDER_DEPTH_MAX	16
/* Messages copied per step when the index moves a folder to a new name. */
#define STORE_FOLDER_MOVE_BATCH	256

/*
 * Names.
 */

static bool
store_folder_is_inbox(const char *name, size_t len)
{
	return len == 5 && strncasecmp(name, "INBOX", 5) == 0;
}

/* The reason why one part (len bytes at p, inside a name) is refused. */
static const char *
store_folder_part_rules(const unsigned char *p, size_t len,
    enum mailloc_format format)
{
	if (len == 0)
		return "empty part between '/'";
	if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' &&
	    p[1] == '.'))
		return "'.' and '..' are not folder names";
	if (format == MAILLOC_MBOX && p[0] == '.')
		return "a part may not start with '.' (a hidden file in mbox)";
	if (memchr(p, '.', len) != NULL)
		return format == MAILLOC_MAILDIR ?
		    "'.' is the Maildir++ hierarchy separator on disk" :
		    "'.' is not allowed in folder names (one rule set for "
		    "Maildir++ and mbox)";
	return NULL;
}

/* The rules on single bytes; UTF-8 validity is checked by encoding. */
static const char *
store_folder_byte_rules(const unsigned char *p)
{
	for (; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f ||
		    (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f))
			return "control character";
		if (*p == '%' || *p == '*')
			return "'%' and '*' are LIST wildcards";
	}
	return NULL;
}

static const char *
store_folder_rules(const char *name, enum mailloc_format format)
{
	const unsigned char *p = (const unsigned char *)name, *end;
	size_t len = strlen(name);
	const char *why;
	struct buf enc;
	int ret;

	if (len == 0)
		return "empty name";
	if (len > STORE_FOLDER_NAME_MAX)
		return "longer than 255 bytes";
	if (name[0] == '/')
		return "starts with '/'";
	if (name[len - 1] == '/')
		return "ends with '/'";
	if ((why = store_folder_byte_rules(p)) != NULL)
		return why;
	for (;; p = end + 1) {
		end = (const unsigned char *)strchr((const char *)p, '/');
		if ((why = store_folder_part_rules(p, end != NULL ?
		    (size_t)(end - p) : strlen((const char *)p), format)) !=
		    NULL)
			return why;
		if (end == NULL)
			break;
	}
	/* Modified UTF-7 takes at most 5 bytes per byte of UTF-8. */
	buf_init(&enc, 5 * STORE_FOLDER_NAME_MAX + 16);
	ret = utf7_encode(name, &enc);
	buf_free(&enc);
	return ret < 0 ? "not valid UTF-8" : NULL;
}

/*
 * Does path stay inside the mail root? Only a symbolic link can lead out
 * ('/', "." and ".." parts are refused), so resolve what exists of path
 * and compare with the resolved root.
 */
static bool
store_folder_inside(const char *root, const char *path)
{
	char rroot[PATH_MAX], probe[PATH_MAX], real[PATH_MAX];
	char *slash;
	size_t n;

	if (realpath(root, rroot) == NULL ||
	    strlcpy(probe, path, sizeof(probe)) >= sizeof(probe))
		return false;
	while (realpath(probe, real) == NULL) {
		if (errno != ENOENT && errno != ENOTDIR)
			return false;
		if ((slash = strrchr(probe, '/')) == NULL || slash == probe)
			return false;
		*slash = '\0';
	}
	n = strlen(rroot);
	if (n == 1)
		return true;	/* the root is "/" */
	return strncmp(real, rroot, n) == 0 &&
	    (real[n] == '\0' || real[n] == '/');
}

enum store_op
store_folder_resolve(struct store *st, const char *name, char *canon,
    size_t canonsize, char *path, size_t pathsize, const char **error_r)
{
	char cbuf[STORE_FOLDER_NAME_MAX + 1], pbuf[PATH_MAX];
	char esc[128];
	const char *why;

	if ((why = store_folder_rules(name, st->ml.format)) == NULL) {
		/* The inbox and its children are spelt one way. */
		strlcpy(cbuf, name, sizeof(cbuf));
		if (store_folder_is_inbox(cbuf, strcspn(cbuf, "/")))
			memcpy(cbuf, "INBOX", 5);
		/* It also holds the rule on the length on disk, which mbox
		 * shares with Maildir++ (store.c). */
		if (store_folder_path(st, cbuf, pbuf, sizeof(pbuf),
		    error_r) < 0)
			return STORE_OP_BADNAME;
		if ((st->ml.format == MAILLOC_MAILDIR ||
		    strcmp(cbuf, "INBOX") != 0) &&
		    !store_folder_inside(st->ml.root, pbuf))
			why = "it would resolve outside the mail root";
	}
	if (why != NULL) {
		*error_r = store_error("invalid folder name \"%s\": %s",
		    log_escape(name, esc, sizeof(esc)), why);
		return STORE_OP_BADNAME;
	}
	if ((canon != NULL && strlcpy(canon, cbuf, canonsize) >= canonsize) ||
	    (path != NULL && strlcpy(path, pbuf, pathsize) >= pathsize)) {
		*error_r = "folder name or path too long";
		return STORE_OP_BADNAME;
	}
	return STORE_OP_OK;
}

enum store_op
store_folder_name(struct store *st, const char *name, char *out,
    size_t outsize, const char **error_r)
{
	return store_folder_resolve(st, name, out, outsize, NULL, 0, error_r);
}

static bool
store_folder_is_dir(const char *dir, const char *sub)
{
	char path[PATH_MAX];
	struct stat sb;

	if ((size_t)snprintf(path, sizeof(path), "%s%s%s", dir,
	    sub[0] != '\0' ? "/" : "", sub) >= sizeof(path))
		return false;
	return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Does the folder at path (not INBOX) hold messages, or can it? */
static bool
store_folder_here(const struct store *st, const char *path)
{
	struct stat sb;

	if (st->ml.format == MAILLOC_MAILDIR)
		return store_folder_is_dir(path, "new") &&
		    store_folder_is_dir(path, "cur");
	return lstat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

int
store_folder_exists(struct store *st, const char *folder,
    const char **error_r)
{
	char canon[STORE_FOLDER_NAME_MAX + 1], path[PATH_MAX];

	if (store_folder_resolve(st, folder, canon, sizeof(canon), path,
	    sizeof(path), error_r) != STORE_OP_OK)
		return -1;
	if (strcmp(canon, "INBOX") == 0)
		return 1;
	return store_folder_here(st, path) ? 1 : 0;
}

/*
 * LIST.
 */

struct store_folder_ent {
	char *name;		/* owned */
	unsigned attrs;
};

struct store_folder_set {
	struct store *st;
	struct store_folder_ent *e;
	size_t count, alloc;
};

static void
store_folder_set_add(struct store_folder_set *s, const char *name,
    size_t len, unsigned attrs)
{
	if (s->count == s->alloc) {
		s->alloc = s->alloc == 0 ? 32 : s->alloc * 2;
		s->e = xreallocarray(s->e, s->alloc, sizeof(*s->e));
	}
	s->e[s->count].name = xstrndup(name, len);
	s->e[s->count].attrs = attrs;
	s->count++;
}

static void
store_folder_set_free(struct store_folder_set *s)
{
	for (size_t i = 0; i < s->count; i++)
		free(s->e[i].name);
	free(s->e);
	s->e = NULL;
	s->count = s->alloc = 0;
}

/* A name found on disk is listed only if it is the canonical spelling of
 * a name the rules accept, whose path is the one it was found at. */
static bool
store_folder_listable(struct store *st, const char *name, char *path,
    size_t pathsize)
{
	char canon[STORE_FOLDER_NAME_MAX + 1];
	const char *err;

	return store_folder_resolve(st, name, canon, sizeof(canon), path,
	    pathsize, &err) == STORE_OP_OK && strcmp(canon, name) == 0;
}

static int
store_folder_maildir_cb(const char *folder, void *ctx)
{
	struct store_folder_set *s = ctx;
	char path[PATH_MAX];

	if (store_folder_listable(s->st, folder, path, sizeof(path)))
		store_folder_set_add(s, folder, strlen(folder),
		    store_folder_here(s->st, path) ? 0 :
		    STORE_FOLDER_NOSELECT);
	return 0;
}

/* One entry of an mbox directory: a folder file, or a directory of
 * folders (\Noselect) to walk into. rel is the path from the root to
 * dir as on disk (modified UTF-7), with a trailing '/'. */
static void store_folder_mbox_walk(struct store_folder_set *s,
    const char *dir, const char *rel, int depth);

static void
store_folder_mbox_entry(struct store_folder_set *s, const char *dir,
    const char *rel, const char *dname, int depth)
{
	char path[PATH_MAX], name[PATH_MAX];
	char want[PATH_MAX];
	struct buf dec;
	struct stat sb;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, dname) >=
	    sizeof(path) || lstat(path, &sb) < 0 ||
	    strcmp(path, s->st->ml.inbox) == 0)
		return;
	buf_init(&dec, PATH_MAX);
	if ((size_t)snprintf(name, sizeof(name), "%s%s", rel, dname) <
	    sizeof(name) && utf7_decode(name, &dec) == 0) {
		const char *folder = buf_cstr(&dec);
		bool listed;

		/* INBOX's directory holds its children; INBOX itself is
		 * listed anyway. */
		listed = strcmp(folder, "INBOX") == 0 ||
		    ((S_ISREG(sb.st_mode) || S_ISDIR(sb.st_mode)) &&
		    store_folder_listable(s->st, folder, want,
		    sizeof(want)) && strcmp(want, path) == 0);
		if (listed && strcmp(folder, "INBOX") != 0)
			store_folder_set_add(s, folder, strlen(folder),
			    S_ISREG(sb.st_mode) ? STORE_FOLDER_NOINFERIORS :
			    STORE_FOLDER_NOSELECT);
		if (listed && S_ISDIR(sb.st_mode) &&
		    strlcat(name, "/", sizeof(name)) < sizeof(name))
			store_folder_mbox_walk(s, path, name, depth + 1);
	}
	buf_free(&dec);
}

static void
store_folder_mbox_walk(struct store_folder_set *s, const char *dir,
    const char *rel, int depth)
{
	struct dirent *de;
	DIR *d;

	if (depth > STORE_FOLDER_DEPTH_MAX || (d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			store_folder_mbox_entry(s, dir, rel, de->d_name,
			    depth);
	closedir(d);
}

static int
store_folder_ent_cmp(const void *a, const void *b)
{
	return strcmp(((const struct store_folder_ent *)a)->name,
	    ((const struct store_folder_ent *)b)->name);
}

static struct store_folder_ent *
store_folder_set_find(struct store_folder_set *s, const char *name)
{
	struct store_folder_ent key = { (char *)name, 0 };

	return bsearch(&key, s->e, s->count, sizeof(*s->e),
	    store_folder_ent_cmp);
}

/* Parents that exist only through their children become \Noselect
 * entries; duplicates merge (a name that holds messages once is
 * selectable); every parent is marked as having children. */
static void
store_folder_set_finish(struct store_folder_set *s)
{
	struct store_folder_ent *p;
	size_t n = s->count, o = 0;

	for (size_t i = 0; i < n; i++) {
		const char *name = s->e[i].name;

		for (const char *sl = strchr(name, '/'); sl != NULL;
		    sl = strchr(sl + 1, '/'))
			store_folder_set_add(s, name, (size_t)(sl - name),
			    STORE_FOLDER_NOSELECT);
	}
	qsort(s->e, s->count, sizeof(*s->e), store_folder_ent_cmp);
	for (size_t i = 0; i < s->count; i++) {
		if (o > 0 && strcmp(s->e[o - 1].name, s->e[i].name) == 0) {
			s->e[o - 1].attrs = (s->e[o - 1].attrs & s->e[i].attrs &
			    STORE_FOLDER_NOSELECT) | ((s->e[o - 1].attrs |
			    s->e[i].attrs) & STORE_FOLDER_NOINFERIORS);
			free(s->e[i].name);
			continue;
		}
		s->e[o++] = s->e[i];
	}
	s->count = o;
	for (size_t i = 0; i < s->count; i++) {
		const char *sl = strrchr(s->e[i].name, '/');
		char *parent;

		if (sl == NULL)
			continue;
		parent = xstrndup(s->e[i].name, (size_t)(sl - s->e[i].name));
		if ((p = store_folder_set_find(s, parent)) != NULL)
			p->attrs |= STORE_FOLDER_CHILDREN;
		free(parent);
	}
}

static int
store_folder_collect(struct store *st, struct store_folder_set *s,
    const char **error_r)
{
	memset(s, 0, sizeof(*s));
	s->st = st;
	store_folder_set_add(s, "INBOX", 5, 0);
	if (st->ml.format == MAILLOC_MAILDIR) {
		if (maildir_list_folders(st->ml.root, store_folder_maildir_cb,
		    s, error_r) < 0) {
			store_folder_set_free(s);
			return -1;
		}
	} else
		store_folder_mbox_walk(s, st->ml.root, "", 0);
	store_folder_set_finish(s);
	return 0;
}

enum store_op
store_folder_list(struct store *st,
    int (*cb)(const char *name, unsigned attrs, void *ctx), void *ctx,
    const char **error_r)
{
	struct store_folder_set s;
	int ret = 0;

	if (store_folder_collect(st, &s, error_r) < 0)
		return STORE_OP_TEMPFAIL;
	for (size_t i = 0; i < s.count && ret == 0; i++)
		ret = cb(s.e[i].name, s.e[i].attrs, ctx);
	store_folder_set_free(&s);
	if (ret < 0) {
		*error_r = "folder list stopped by the callback";
		return STORE_OP_TEMPFAIL;
	}
	return STORE_OP_OK;
}

/* Does any folder on disk lie below name? */
static int
store_folder_has_children(struct store *st, const char *name,
    const char **error_r)
{
	struct store_folder_set s;
	size_t len = strlen(name);
	bool any = false;

	if (store_folder_collect(st, &s, error_r) < 0)
		return -1;
	for (size_t i = 0; i < s.count && !any; i++)
		any = strncmp(s.e[i].name, name, len) == 0 &&
		    s.e[i].name[len] == '/';
	store_folder_set_free(&s);
	return any ? 1 : 0;
}

/*
 * CREATE.
 */

static enum store_op
store_folder_syserr(const char *what, const char *path, const char **error_r)
{
	*error_r = store_error("cannot %s %s: %s", what, path,
	    strerror(errno));
	return STORE_OP_TEMPFAIL;
}

/* mindex_write, with *error_r always set when it fails. */
static int
store_folder_write(struct store *st,
    int (*fn)(struct mindex_txn *txn, void *ctx, const char **error_r),
    void *ctx, const char **error_r)
{
	*error_r = NULL;
	if (mindex_write(st->ix, fn, ctx, error_r) == 0)
		return 0;
	if (*error_r == NULL)
		*error_r = mindex_last_error();
	return -1;
}

/* Make the mbox directories above path (below the root), refusing to go
 * below a folder file. New directories are fsynced into their parents. */
static enum store_op
store_folder_mbox_parents(struct store *st, const char *path,
    const char **error_r)
{
	char dir[PATH_MAX];
	size_t rlen = strlen(st->ml.root);
	struct stat sb;
	char *p;

	if (strlcpy(dir, path, sizeof(dir)) >= sizeof(dir) ||
	    strncmp(dir, st->ml.root, rlen) != 0 || dir[rlen] != '/') {
		*error_r = "folder path is not below the mail root";
		return STORE_OP_BADNAME;
	}
	for (p = strchr(dir + rlen + 1, '/'); p != NULL; p = strchr(p + 1,
	    '/')) {
		*p = '\0';
		if (mkdir(dir, 0700) == 0) {
			if (st->fsync && fsutil_fsync_parent(dir) < 0)
				return store_folder_syserr("fsync", dir,
				    error_r);
		} else if (errno != EEXIST)
			return store_folder_syserr("create", dir, error_r);
		if (lstat(dir, &sb) < 0)
			return store_folder_syserr("stat", dir, error_r);
		if (S_ISREG(sb.st_mode)) {
			*error_r = store_error("%s is an mbox folder, which "
			    "cannot have folders below it", dir);
			return STORE_OP_CANNOT;
		}
		if (!S_ISDIR(sb.st_mode)) {
			*error_r = store_error("%s is not a directory", dir);
			return STORE_OP_CANNOT;
		}
		*p = '/';
	}
	return STORE_OP_OK;
}

static enum store_op
store_folder_create_mbox(struct store *st, const char *path,
    const char **error_r)
{
	enum store_op ret;
	int fd;

	if ((ret = store_folder_mbox_parents(st, path, error_r)) !=
	    STORE_OP_OK)
		return ret;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    0600);
	if (fd < 0 && errno == EEXIST) {
		*error_r = "folder exists";
		return STORE_OP_EXISTS;
	}
	if (fd < 0)
		return store_folder_syserr("create", path, error_r);
	if (st->fsync && fsync(fd) < 0) {
		close(fd);
		unlink(path);
		return store_folder_syserr("fsync", path, error_r);
	}
	close(fd);
	if (st->fsync && fsutil_fsync_parent(path) < 0)
		return store_folder_syserr("fsync the directory of", path,
		    error_r);
	return STORE_OP_OK;
}

static enum store_op
store_folder_create_maildir(struct store *st, const char *path,
    const char **error_r)
{
	char sub[PATH_MAX];

	/* A directory without new/ or cur/ (a create cut short, or a
	 * \Noselect parent) is made whole. */
	if (maildir_create(path, true, error_r) < 0)
		return STORE_OP_TEMPFAIL;
	if (!st->fsync)
		return STORE_OP_OK;
	if (fsutil_fsync_dir(path) < 0 || fsutil_fsync_parent(path) < 0)
		return store_folder_syserr("fsync", path, error_r);
	if ((size_t)snprintf(sub, sizeof(sub), "%s/new", path) <
	    sizeof(sub) && fsutil_fsync_dir(sub) < 0)
		return store_folder_syserr("fsync", sub, error_r);
	return STORE_OP_OK;
}

enum store_op
store_folder_create(struct store *st, const char *folder,
    const char **error_r)
{
	char canon[STORE_FOLDER_NAME_MAX + 1], path[PATH_MAX];
	enum store_op ret;
	struct stat sb;

	if ((ret = store_folder_resolve(st, folder, canon, sizeof(canon), path,
	    sizeof(path), error_r)) != STORE_OP_OK)
		return ret;
	if (strcmp(canon, "INBOX") == 0) {
		*error_r = "INBOX always exists";
		return STORE_OP_EXISTS;
	}
	if (store_folder_here(st, path) || (st->ml.format == MAILLOC_MBOX &&
	    lstat(path, &sb) == 0)) {
		*error_r = st->ml.format == MAILLOC_MBOX &&
		    S_ISDIR(sb.st_mode) ? "a folder of folders of that name "
		    "exists" : "folder exists";
		return STORE_OP_EXISTS;
	}
	/* A record left from a folder removed behind our back must not lend
	 * the new one its UIDVALIDITY. */
	if (store_folder_forget(st, canon, error_r) < 0)
		return STORE_OP_TEMPFAIL;
	ret = st->ml.format == MAILLOC_MAILDIR ?
	    store_folder_create_maildir(st, path, error_r) :
	    store_folder_create_mbox(st, path, error_r);
	if (ret != STORE_OP_OK)
		return ret;
	if (store_sync(st, canon, true, NULL, error_r) < 0)
		return STORE_OP_TEMPFAIL;
	return STORE_OP_OK;
}

/*
 * DELETE.
 */

/* Remove what deletes that were cut short left in the trash. */
static void
store_folder_trash_clean(struct store *st)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	if ((d = opendir(st->ml.root)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, STORE_FOLDER_TRASH,
		    sizeof(STORE_FOLDER_TRASH) - 1) != 0 ||
		    (size_t)snprintf(path, sizeof(path), "%s/%s",
		    st->ml.root, de->d_name) >= sizeof(path))
			continue;
		if (fsutil_remove_tree(path) < 0)
			log_warning("cannot remove %s: %s", path,
			    strerror(errno));
	}
	closedir(d);
}

struct store_folder_del {
	struct store *st;
	const char *folder;
	const char *path;
	char trash[PATH_MAX];
	bool moved;
};

/* Under the index writer lock, so that no delivery is between linking a
 * file into the folder and indexing it. */
static int
store_folder_delete_fn(struct mindex_txn *txn, void *ctx,
    const char **error_r)
{
	struct store_folder_del *c = ctx;
	int ret;

	if (!c->moved) {
		if (rename(c->path, c->trash) < 0) {
			*error_r = store_error("cannot move %s away: %s",
			    c->path, strerror(errno));
			return -1;
		}
		c->moved = true;
		if (c->st->fsync && fsutil_fsync_dir(c->st->ml.root) < 0)
			log_warning("fsync %s: %s", c->st->ml.root,
			    strerror(errno));
	}
	ret = mindex_folder_delete(txn, c->folder);
	return ret < 0 ? ret : 0;
}

static enum store_op
store_folder_delete_maildir(struct store *st, const char *folder,
    const char *path, const char **error_r)
{
	static unsigned counter;
	struct store_folder_del c;
	struct stat sb;
	int ret;

	if (lstat(path, &sb) < 0) {
		if (errno != ENOENT)
			return store_folder_syserr("stat", path, error_r);
		if ((ret = store_folder_has_children(st, folder,
		    error_r)) < 0)
			return STORE_OP_TEMPFAIL;
		*error_r = ret > 0 ? "the folder holds only other folders "
		    "(\\Noselect); delete those first" : "no such folder";
		return ret > 0 ? STORE_OP_CANNOT : STORE_OP_NONEXISTENT;
	}
	store_folder_trash_clean(st);
	memset(&c, 0, sizeof(c));
	c.st = st;
	c.folder = folder;
	c.path = path;
	if ((size_t)snprintf(c.trash, sizeof(c.trash), "%s/%s%ld.%u",
	    st->ml.root, STORE_FOLDER_TRASH, (long)getpid(), ++counter) >=
	    sizeof(c.trash)) {
		*error_r = "path too long";
		return STORE_OP_TEMPFAIL;
	}
	if (store_folder_write(st, store_folder_delete_fn, &c, error_r) < 0) {
		if (!c.moved)
			return STORE_OP_TEMPFAIL;
		/* Gone from storage: the next sync drops the record. */
		log_warning("%s: folder deleted, index not updated: %s",
		    st->user, *error_r);
	}
	if (fsutil_remove_tree(c.trash) < 0)
		log_warning("cannot remove %s: %s", c.trash, strerror(errno));
	return STORE_OP_OK;
}

static enum store_op
store_folder_delete_mbox_file(struct store *st, const char *path,
    const char **error_r)
{
	struct lock_mbox *lk;
	int fd, ret;

	/* Under the lock, so a delivery that is appending finishes first
	 * and one that waits finds the path gone (ESTALE) and retries. */
	for (int attempt = 0; attempt < 3; attempt++) {
		if ((fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC)) < 0)
			return errno == ENOENT ? STORE_OP_NONEXISTENT :
			    store_folder_syserr("open", path, error_r);
		ret = store_read_lock_mbox(&st->lock, fd, path, &lk, error_r);
		if (ret == 0) {
			ret = unlink(path);
			if (ret < 0)
				store_folder_syserr("delete", path, error_r);
			else if (st->fsync && fsutil_fsync_parent(path) < 0)
				log_warning("fsync the directory of %s: %s",
				    path, strerror(errno));
			lock_mbox_release(&lk);
			close(fd);
			return ret < 0 ? STORE_OP_TEMPFAIL : STORE_OP_OK;
		}
		close(fd);
		if (ret == LOCK_TIMEOUT)
			return STORE_OP_INUSE;
		if (errno != ESTALE)
			return STORE_OP_TEMPFAIL;
	}
	*error_r = "folder kept changing";
	return STORE_OP_TEMPFAIL;
}

static enum store_op
store_folder_delete_mbox(struct store *st, const char *folder,
    const char *path, const char **error_r)
{
	enum store_op ret;
	struct stat sb;

	if (lstat(path, &sb) < 0) {
		if (errno == ENOENT) {
			*error_r = "no such folder";
			return STORE_OP_NONEXISTENT;
		}
		return store_folder_syserr("stat", path, error_r);
	}
	if (S_ISDIR(sb.st_mode)) {
		if (rmdir(path) < 0) {
			if (errno != ENOTEMPTY && errno != EEXIST)
				return store_folder_syserr("remove", path,
				    error_r);
			*error_r = "the folder holds other folders "
			    "(\\Noselect); delete those first";
			return STORE_OP_CANNOT;
		}
		if (st->fsync && fsutil_fsync_parent(path) < 0)
			log_warning("fsync the directory of %s: %s", path,
			    strerror(errno));
		return STORE_OP_OK;
	}
	if (!S_ISREG(sb.st_mode)) {
		*error_r = "not a folder";
		return STORE_OP_CANNOT;
	}
	if ((ret = store_folder_delete_mbox_file(st, path, error_r)) !=
	    STORE_OP_OK) {
		if (ret == STORE_OP_NONEXISTENT)
			*error_r = "no such folder";
		return ret;
	}
	if (store_folder_forget(st, folder, error_r) < 0)
		log_warning("%s: folder deleted, index not updated: %s",
		    st->user, *error_r);
	return STORE_OP_OK;
}

enum store_op
store_folder_delete(struct store *st, const char *folder,
    const char **error_r)
{
	char canon[STORE_FOLDER_NAME_MAX + 1], path[PATH_MAX];
	enum store_op ret;

	if ((ret = store_folder_resolve(st, folder, canon, sizeof(canon), path,
	    sizeof(path), error_r)) != STORE_OP_OK)
		return ret;
	if (strcmp(canon, "INBOX") == 0) {
		*error_r = "INBOX cannot be deleted";
		return STORE_OP_CANNOT;
	}
	if (st->ml.format == MAILLOC_MAILDIR)
		return store_folder_delete_maildir(st, canon, path, error_r);
	return store_folder_delete_mbox(st, canon, path, error_r);
}

/*
 * RENAME. The index moves a folder to its new name by copying its
 * records under a new folder id (mindex has no rename): UIDVALIDITY,
 * UIDs, flags, GUIDs and dates are kept; MODSEQs start above the old
 * HIGHESTMODSEQ, so they never go back for a client.
 */

struct store_folder_uids {
	uint32_t uid[STORE_FOLDER_MOVE_BATCH];
	size_t n;
};

static int
store_folder_uids_cb(const struct mindex_msg *m, void *ctx)
{
	struct store_folder_uids *u = ctx;

	u->uid[u->n++] = m->uid;
	return u->n == STORE_FOLDER_MOVE_BATCH ? 1 : 0;
}

/* The Maildir base name of a location ("cur/NAME:2,FS" -> NAME), copied
 * out of the map before the record it lives in is touched. */
static int
store_folder_loc_base(const struct mindex_msg *m, char *out, size_t outsize,
    size_t *len_r)
{
	const char *base = m->location_len > 4 ? m->location + 4 : "";
	size_t len = strcspn(base, ":");

	if (len == 0 || len >= outsize)
		return -1;
	memcpy(out, base, len);
	out[len] = '\0';
	*len_r = len;
	return 0;
}

/* Copy one message record of fo into fn (and, maildir, its loc). */
static int
store_folder_move_msg(struct mindex_txn *txn, struct mindex_folder *fo,
    struct mindex_folder *fn, uint32_t uid, bool maildir)
{
	char base[MINDEX_KEY_MAX + 1];
	struct mindex_msg m;
	size_t blen = 0;
	int ret;

	if ((ret = mindex_msg_get(txn, fo->id, uid, &m)) <= 0)
		return ret;
	if (maildir && store_folder_loc_base(&m, base, sizeof(base),
	    &blen) < 0)
		return -1;
	if ((ret = mindex_msg_add(txn, fn, &m)) < 0)
		return ret;
	if (maildir)
		return mindex_loc_put(txn, fn->id, base, blen, uid);
	return 0;
}

/* Expunge one message of fo (and, maildir, its loc): INBOX after its
 * messages moved to the new name. */
static int
store_folder_drop_msg(struct mindex_txn *txn, struct mindex_folder *fo,
    uint32_t uid, bool maildir)
{
	char base[MINDEX_KEY_MAX + 1];
	struct mindex_msg m;
	size_t blen = 0;
	int ret;

	if ((ret = mindex_msg_get(txn, fo->id, uid, &m)) <= 0)
		return ret;
	if (maildir && store_folder_loc_base(&m, base, sizeof(base),
	    &blen) < 0)
		return -1;
	if ((ret = mindex_msg_expunge(txn, fo, uid)) < 0)
		return ret;
	if (maildir)
		return mindex_loc_delete(txn, fo->id, base, blen);
	return 0;
}

/* Every message of fo, in batches: into fn, or (fn NULL) expunged. */
static int
store_folder_each_msg(struct mindex_txn *txn, struct mindex_folder *fo,
    struct mindex_folder *fn, bool maildir)
{
	struct store_folder_uids u;
	uint32_t next = 1;
	int ret;

	for (;;) {
		u.n = 0;
		if (mindex_msg_iter(txn, fo->id, next, store_folder_uids_cb,
		    &u) < 0)
			return -1;
		for (size_t i = 0; i < u.n; i++) {
			ret = fn != NULL ?
			    store_folder_move_msg(txn, fo, fn, u.uid[i],
			    maildir) :
			    store_folder_drop_msg(txn, fo, u.uid[i], maildir);
			if (ret < 0)
				return ret;
		}
		if (u.n < STORE_FOLDER_MOVE_BATCH ||
		    u.uid[u.n - 1] == UINT32_MAX)
			return 0;
		next = u.uid[u.n - 1] + 1;
	}
}

/*
 * Move the records of folder old to the name new. keep_old (INBOX): old
 * stays, empty, its messages recorded as expunged and its stamps cleared
 * so that the next sync looks at its storage afresh. new_stamp, if not
 * NULL, replaces the stamp of the storage object (an mbox copied to a new
 * file); otherwise the stamps move with the records (a rename keeps
 * inodes and mtimes).
 */
static int
store_folder_move(struct mindex_txn *txn, const char *old, const char *new,
    bool maildir, bool keep_old, const struct mindex_stamp *new_stamp)
{
	struct mindex_folder fo, fn;
	int ret;

	if ((ret = mindex_folder_get(txn, old, &fo)) <= 0)
		return ret;
	if ((ret = mindex_folder_delete(txn, new)) < 0 ||
	    (ret = mindex_folder_create(txn, new, fo.uidvalidity, &fn)) < 0)
		return ret;
	fn.highestmodseq = fo.highestmodseq;
	if ((ret = store_folder_each_msg(txn, &fo, &fn, maildir)) < 0)
		return ret;
	if (fo.uidnext > fn.uidnext)
		fn.uidnext = fo.uidnext;
	memcpy(fn.stamp, fo.stamp, sizeof(fn.stamp));
	if (new_stamp != NULL)
		fn.stamp[0] = *new_stamp;
	fn.sync_offset = fo.sync_offset;
	if ((ret = mindex_folder_put(txn, new, &fn)) < 0)
		return ret;
	if (!keep_old)
		return mindex_folder_delete(txn, old);
	if ((ret = store_folder_each_msg(txn, &fo, NULL, maildir)) < 0)
		return ret;
	memset(fo.stamp, 0, sizeof(fo.stamp));
	fo.sync_offset = 0;
	return mindex_folder_put(txn, old, &fo);
}

/* A folder (or parent) on disk that moves, with its new name. */
struct store_folder_pair {
	char *old, *new;	/* owned */
};

struct store_folder_ren {
	struct store *st;
	const char *from, *to;		/* canonical names */
	struct store_folder_pair *disk;	/* Maildir: directories to rename */
	size_t ndisk;
	bool disk_done;
	struct store_folder_set names;	/* index names to move */
};

static void
store_folder_ren_free(struct store_folder_ren *c)
{
	for (size_t i = 0; i < c->ndisk; i++) {
		free(c->disk[i].old);
		free(c->disk[i].new);
	}
	free(c->disk);
	store_folder_set_free(&c->names);
}

/* The new name of old (from, or below it). */
static char *
store_folder_renamed(const struct store_folder_ren *c, const char *old)
{
	return xasprintf("%s%s", c->to, old + strlen(c->from));
}

static bool
store_folder_below(const char *name, const char *top)
{
	size_t len = strlen(top);

	return strncmp(name, top, len) == 0 &&
	    (name[len] == '\0' || name[len] == '/');
}

static int
store_folder_index_names_cb(const char *name, const struct mindex_folder *f,
    void *ctx)
{
	struct store_folder_ren *c = ctx;

	(void)f;
	if (store_folder_below(name, c->from))
		store_folder_set_add(&c->names, name, strlen(name), 0);
	return 0;
}

/* Rename the Maildir++ directories; on failure put back what moved. */
static int
store_folder_ren_disk(struct store_folder_ren *c, const char **error_r)
{
	char op[PATH_MAX], np[PATH_MAX];
	size_t i;

	for (i = 0; i < c->ndisk; i++) {
		if (store_folder_resolve(c->st, c->disk[i].old, NULL, 0, op,
		    sizeof(op), error_r) != STORE_OP_OK ||
		    store_folder_resolve(c->st, c->disk[i].new, NULL, 0, np,
		    sizeof(np), error_r) != STORE_OP_OK)
			break;
		if (rename(op, np) < 0) {
			*error_r = store_error("cannot rename %s: %s", op,
			    strerror(errno));
			break;
		}
	}
	if (i == c->ndisk) {
		if (c->st->fsync && fsutil_fsync_dir(c->st->ml.root) < 0)
			log_warning("fsync %s: %s", c->st->ml.root,
			    strerror(errno));
		return 0;
	}
	while (i-- > 0) {
		const char *err;

		if (store_folder_resolve(c->st, c->disk[i].old, NULL, 0, op,
		    sizeof(op), &err) == STORE_OP_OK &&
		    store_folder_resolve(c->st, c->disk[i].new, NULL, 0, np,
		    sizeof(np), &err) == STORE_OP_OK && rename(np, op) < 0)
			log_error("cannot move %s back to %s: %s", np, op,
			    strerror(errno));
	}
	return -1;
}

static int
store_folder_rename_fn(struct mindex_txn *txn, void *ctx,
    const char **error_r)
{
	struct store_folder_ren *c = ctx;
	bool maildir = c->st->ml.format == MAILLOC_MAILDIR;
	char *new;
	int ret = 0;

	if (!c->disk_done) {
		if (store_folder_ren_disk(c, error_r) < 0)
			return -1;
		c->disk_done = true;
	}
	store_folder_set_free(&c->names);
	if (mindex_folder_iter(txn, store_folder_index_names_cb, c) < 0)
		return -1;
	for (size_t i = 0; i < c->names.count && ret == 0; i++) {
		new = store_folder_renamed(c, c->names.e[i].name);
		ret = store_folder_move(txn, c->names.e[i].name, new, maildir,
		    false, NULL);
		free(new);
	}
	return ret < 0 ? ret : 0;
}

/* Maildir: the directories to rename, from and its children, each to a
 * name that must be free. */
static enum store_op
store_folder_ren_plan(struct store_folder_ren *c, const char **error_r)
{
	struct store_folder_set s;
	char np[PATH_MAX];
	enum store_op ret = STORE_OP_OK;
	struct stat sb;

	if (store_folder_collect(c->st, &s, error_r) < 0)
		return STORE_OP_TEMPFAIL;
	c->disk = xreallocarray(NULL, s.count + 1, sizeof(*c->disk));
	for (size_t i = 0; i < s.count && ret == STORE_OP_OK; i++) {
		char *new;

		/* Parents without a directory of their own have nothing to
		 * rename; their children do. */
		if (!store_folder_below(s.e[i].name, c->from) ||
		    store_folder_resolve(c->st, s.e[i].name, NULL, 0, np,
		    sizeof(np), error_r) != STORE_OP_OK || lstat(np, &sb) < 0)
			continue;
		new = store_folder_renamed(c, s.e[i].name);
		if ((ret = store_folder_resolve(c->st, new, NULL, 0, np,
		    sizeof(np), error_r)) == STORE_OP_OK &&
		    lstat(np, &sb) == 0) {
			*error_r = store_error("folder \"%s\" exists", new);
			ret = STORE_OP_EXISTS;
		}
		c->disk[c->ndisk].old = xstrdup(s.e[i].name);
		c->disk[c->ndisk++].new = new;
	}
	store_folder_set_free(&s);
	if (ret == STORE_OP_OK && c->ndisk == 0) {
		*error_r = "no such folder";
		ret = STORE_OP_NONEXISTENT;
	}
	return ret;
}

static enum store_op
store_folder_rename_maildir(struct store_folder_ren *c, const char *pt,
    const char **error_r)
{
	struct stat sb;
	enum store_op ret;

	if (lstat(pt, &sb) == 0) {
		*error_r = "folder exists";
		return STORE_OP_EXISTS;
	}
	if ((ret = store_folder_ren_plan(c, error_r)) != STORE_OP_OK)
		return ret;
	/* Under the index writer lock: no delivery is between linking a
	 * file into a folder that moves and indexing it. */
	if (store_folder_write(c->st, store_folder_rename_fn, c, error_r) < 0) {
		if (!c->disk_done)
			return STORE_OP_TEMPFAIL;
		log_warning("%s: folder renamed, index not updated: %s",
		    c->st->user, *error_r);
	}
	return STORE_OP_OK;
}

/* mbox: one rename moves a file, or a directory with everything below
 * it; a file is renamed under its lock, so that a delivery appending to
 * it finishes first and one waiting finds it gone (ESTALE) and retries. */
static enum store_op
store_folder_rename_mbox(struct store_folder_ren *c, const char *pf,
    const char *pt, const char **error_r)
{
	struct store *st = c->st;
	struct lock_mbox *lk = NULL;
	enum store_op ret;
	struct stat sb;
	int fd = -1, lret;

	if (lstat(pf, &sb) < 0) {
		*error_r = "no such folder";
		return errno == ENOENT ? STORE_OP_NONEXISTENT :
		    store_folder_syserr("stat", pf, error_r);
	}
	if (lstat(pt, &sb) == 0) {
		*error_r = "folder exists";
		return STORE_OP_EXISTS;
	}
	if ((ret = store_folder_mbox_parents(st, pt, error_r)) != STORE_OP_OK)
		return ret;
	if (lstat(pf, &sb) == 0 && S_ISREG(sb.st_mode)) {
		if ((fd = open(pf, O_RDWR | O_NOFOLLOW | O_CLOEXEC)) < 0)
			return store_folder_syserr("open", pf, error_r);
		if ((lret = store_read_lock_mbox(&st->lock, fd, pf, &lk,
		    error_r)) != 0) {
			close(fd);
			return lret == LOCK_TIMEOUT ? STORE_OP_INUSE :
			    STORE_OP_TEMPFAIL;
		}
	}
	ret = rename(pf, pt) < 0 ?
	    store_folder_syserr("rename", pf, error_r) : STORE_OP_OK;
	if (ret == STORE_OP_OK && st->fsync && (fsutil_fsync_parent(pf) < 0 ||
	    fsutil_fsync_parent(pt) < 0))
		log_warning("fsync after renaming %s: %s", pf,
		    strerror(errno));
	lock_mbox_release(&lk);
	if (fd >= 0)
		close(fd);
	if (ret != STORE_OP_OK)
		return ret;
	c->disk_done = true;
	if (store_folder_write(st, store_folder_rename_fn, c, error_r) < 0)
		log_warning("%s: folder renamed, index not updated: %s",
		    st->user, *error_r);
	return STORE_OP_OK;
}

/*
 * RENAME INBOX: its messages move into a new folder, INBOX stays, empty
 * (RFC 3501), with its children where they are.
 */

struct store_folder_inbox {
	struct store *st;
	const char *to;
	const char *pt;
	bool disk_done;
	struct mindex_stamp stamp;	/* mbox: of the new file */
	bool have_stamp;
};

/* Swap two directories; where the file system cannot, move a to b's
 * place and make a new empty a. b exists and is empty. */
static int
store_folder_swap_dirs(const char *a, const char *b)
{
#ifdef RENAME_EXCHANGE
	if (renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
#endif
	if (rmdir(b) < 0 || rename(a, b) < 0)
		return -1;
	return mkdir(a, 0700);
}

/* Write all of data to fd; 0, or -1 with errno. */
static int
store_folder_write_all(int fd, const unsigned char *data, size_t len)
{
	size_t off = 0;
	ssize_t n;

	while (off < len) {
		if ((n = write(fd, data + off, len - off)) < 0 &&
		    errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		off += (size_t)n;
	}
	return 0;
}

/* Copy the file from (if there is one) to to, fsynced. */
static int
store_folder_copy_file(const char *from, const char *to, bool do_fsync)
{
	struct fsutil_map m;
	int fd, ok;

	if (fsutil_map_path(from, &m) < 0)
		return errno == ENOENT ? 0 : -1;
	fd = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
	    0600);
	if (fd < 0) {
		fsutil_unmap(&m);
		return -1;
	}
	ok = store_folder_write_all(fd, m.data, m.len) == 0;
	fsutil_unmap(&m);
	if (ok && do_fsync && fsync(fd) < 0)
		ok = 0;
	if (close(fd) < 0)
		ok = 0;
	return ok ? 0 : -1;
}

/* Maildir: INBOX's new/ and cur/ become the new folder's, which also
 * gets a copy of INBOX's loft-uidvalidity (it keeps INBOX's UIDVALIDITY
 * and UIDs, and a rebuild must find them). */
static int
store_folder_inbox_dirs(struct store_folder_inbox *c, const char **error_r)
{
	static const char *const subs[2] = { "new", "cur" };
	const char *root = c->st->ml.root;
	char a[PATH_MAX], b[PATH_MAX];
	int i;

	if (maildir_create(c->pt, true, error_r) < 0)
		return -1;
	for (i = 0; i < 2; i++) {
		if ((size_t)snprintf(a, sizeof(a), "%s/%s", root, subs[i]) >=
		    sizeof(a) || (size_t)snprintf(b, sizeof(b), "%s/%s",
		    c->pt, subs[i]) >= sizeof(b) ||
		    store_folder_swap_dirs(a, b) < 0)
			break;
	}
	if (i < 2) {
		*error_r = store_error("cannot move INBOX's %s: %s", subs[i],
		    strerror(errno));
		while (i-- > 0)
			if ((size_t)snprintf(a, sizeof(a), "%s/%s", root,
			    subs[i]) < sizeof(a) && (size_t)snprintf(b,
			    sizeof(b), "%s/%s", c->pt, subs[i]) < sizeof(b) &&
			    store_folder_swap_dirs(b, a) < 0)
				log_error("cannot move %s back: %s", b,
				    strerror(errno));
		fsutil_remove_tree(c->pt);
		return -1;
	}
	if ((size_t)snprintf(a, sizeof(a), "%s/loft-uidvalidity", root) <
	    sizeof(a) && (size_t)snprintf(b, sizeof(b), "%s/loft-uidvalidity",
	    c->pt) < sizeof(b) && store_folder_copy_file(a, b,
	    c->st->fsync) < 0)
		log_warning("cannot copy %s to %s: %s", a, b, strerror(errno));
	if (c->st->fsync && (fsutil_fsync_dir(c->pt) < 0 ||
	    fsutil_fsync_dir(root) < 0))
		log_warning("fsync after moving INBOX to %s: %s", c->pt,
		    strerror(errno));
	return 0;
}

static int
store_folder_inbox_fn(struct mindex_txn *txn, void *ctx, const char **error_r)
{
	struct store_folder_inbox *c = ctx;
	bool maildir = c->st->ml.format == MAILLOC_MAILDIR;
	int ret;

	if (maildir && !c->disk_done) {
		if (store_folder_inbox_dirs(c, error_r) < 0)
			return -1;
		c->disk_done = true;
	}
	ret = store_folder_move(txn, "INBOX", c->to, maildir, true,
	    c->have_stamp ? &c->stamp : NULL);
	return ret < 0 ? ret : 0;
}

/* mbox: write the copy of the INBOX (map) as the new folder's file: a
 * temporary file beside it, fsynced, linked into place (never replacing
 * anything), the directory fsynced. */
static enum store_op
store_folder_inbox_copy(struct store_folder_inbox *c,
    const struct fsutil_map *map, const char **error_r)
{
	char tmp[PATH_MAX];
	const char *slash = strrchr(c->pt, '/');
	struct stat sb;
	int fd;

	if (slash == NULL || (size_t)snprintf(tmp, sizeof(tmp), "%.*s/.%s%s%ld",
	    (int)(slash - c->pt), c->pt, slash + 1, STORE_FOLDER_RENAME_INFIX,
	    (long)getpid()) >= sizeof(tmp)) {
		*error_r = "path too long";
		return STORE_OP_TEMPFAIL;
	}
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    0600);
	if (fd < 0)
		return store_folder_syserr("create", tmp, error_r);
	if (store_folder_write_all(fd, map->data, map->len) < 0 ||
	    (c->st->fsync && fsync(fd) < 0) || fstat(fd, &sb) < 0) {
		store_folder_syserr("write", tmp, error_r);
		close(fd);
		unlink(tmp);
		return STORE_OP_TEMPFAIL;
	}
	close(fd);
	if (link(tmp, c->pt) < 0) {
		bool exists = errno == EEXIST;

		store_folder_syserr("link", c->pt, error_r);
		unlink(tmp);
		return exists ? STORE_OP_EXISTS : STORE_OP_TEMPFAIL;
	}
	unlink(tmp);
	if (c->st->fsync && fsutil_fsync_parent(c->pt) < 0) {
		unlink(c->pt);
		return store_folder_syserr("fsync the directory of", c->pt,
		    error_r);
	}
	store_stamp_of(&sb, store_now_ns(), &c->stamp);
	c->have_stamp = true;
	return STORE_OP_OK;
}

/* mbox, with the INBOX open as fd and locked: 1 if the index does not
 * describe the file as it is (sync and try again). */
static int
store_folder_inbox_locked(struct store_folder_inbox *c, int fd,
    enum store_op *ret_r, const char **error_r)
{
	struct fsutil_map map;
	struct mindex_txn *txn;
	struct mindex_folder f;
	struct stat sb;
	int have;

	if (fstat(fd, &sb) < 0 || fsutil_map_fd(fd, &map) < 0) {
		*ret_r = store_folder_syserr("read", c->st->ml.inbox, error_r);
		return 0;
	}
	*ret_r = STORE_OP_TEMPFAIL;
	if (mindex_begin(c->st->ix, false, &txn, error_r) < 0) {
		fsutil_unmap(&map);
		return 0;
	}
	have = mindex_folder_get(txn, "INBOX", &f);
	mindex_abort(&txn);
	if (have < 0 || (have == 1 && !store_expunge_stamp_ok(&f, &sb)) ||
	    (have == 0 && sb.st_size > 0)) {
		fsutil_unmap(&map);
		return have < 0 ? 0 : 1;
	}
	*ret_r = store_folder_inbox_copy(c, &map, error_r);
	fsutil_unmap(&map);
	if (*ret_r != STORE_OP_OK)
		return 0;
	/* The copy is safe: empty the INBOX. A crash before this leaves the
	 * messages in both, never in neither. */
	if (ftruncate(fd, 0) < 0 || (c->st->fsync && fsync(fd) < 0)) {
		*ret_r = store_folder_syserr("empty", c->st->ml.inbox,
		    error_r);
		return 0;
	}
	if (store_folder_write(c->st, store_folder_inbox_fn, c, error_r) < 0)
		log_warning("%s: INBOX renamed, index not updated: %s",
		    c->st->user, *error_r);
	return 0;
}

static enum store_op
store_folder_rename_inbox_mbox(struct store_folder_inbox *c,
    const char **error_r)
{
	struct store *st = c->st;
	struct lock_mbox *lk;
	enum store_op ret;
	int fd, again;

	if ((ret = store_folder_mbox_parents(st, c->pt, error_r)) !=
	    STORE_OP_OK)
		return ret;
	for (int attempt = 0; attempt < 3; attempt++) {
		if (store_sync(st, "INBOX", attempt > 0, NULL, error_r) < 0)
			return STORE_OP_TEMPFAIL;
		fd = open(st->ml.inbox, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT) {
			/* No INBOX file: nothing to move. */
			if ((ret = store_folder_create_mbox(st, c->pt,
			    error_r)) != STORE_OP_OK)
				return ret;
			return store_sync(st, c->to, true, NULL, error_r) < 0 ?
			    STORE_OP_TEMPFAIL : STORE_OP_OK;
		}
		if (fd < 0)
			return store_folder_syserr("open", st->ml.inbox,
			    error_r);
		if ((again = store_read_lock_mbox(&st->lock, fd, st->ml.inbox,
		    &lk, error_r)) != 0) {
			close(fd);
			if (again == LOCK_TIMEOUT)
				return STORE_OP_INUSE;
			if (errno != ESTALE)
				return STORE_OP_TEMPFAIL;
			continue;
		}
		again = store_folder_inbox_locked(c, fd, &ret, error_r);
		lock_mbox_release(&lk);
		close(fd);
		if (!again)
			return ret;
	}
	*error_r = "INBOX kept changing";
	return STORE_OP_TEMPFAIL;
}

static enum store_op
store_folder_rename_inbox(struct store *st, const char *to, const char *pt,
    const char **error_r)
{
	struct store_folder_inbox c;
	struct stat sb;

	if (lstat(pt, &sb) == 0) {
		*error_r = "folder exists";
		return STORE_OP_EXISTS;
	}
	memset(&c, 0, sizeof(c));
	c.st = st;
	c.to = to;
	c.pt = pt;
	if (st->ml.format == MAILLOC_MBOX)
		return store_folder_rename_inbox_mbox(&c, error_r);
	/* Bring the index in step first: the records move as they are. */
	if (store_sync(st, "INBOX", false, NULL, error_r) < 0)
		return STORE_OP_TEMPFAIL;
	if (store_folder_write(st, store_folder_inbox_fn, &c, error_r) < 0) {
		if (!c.disk_done)
			return STORE_OP_TEMPFAIL;
		log_warning("%s: INBOX renamed, index not updated: %s",
		    st->user, *error_r);
	}
	return STORE_OP_OK;
}

enum store_op
store_folder_rename(struct store *st, const char *from, const char *to,
    const char **error_r)
{
	char cf[STORE_FOLDER_NAME_MAX + 1], ct[STORE_FOLDER_NAME_MAX + 1];
	char pf[PATH_MAX], pt[PATH_MAX];
	struct store_folder_ren c;
	enum store_op ret;

	if ((ret = store_folder_resolve(st, from, cf, sizeof(cf), pf,
	    sizeof(pf), error_r)) != STORE_OP_OK ||
	    (ret = store_folder_resolve(st, to, ct, sizeof(ct), pt,
	    sizeof(pt), error_r)) != STORE_OP_OK)
		return ret;
	if (strcmp(ct, "INBOX") == 0 || strcmp(cf, ct) == 0) {
		*error_r = "folder exists";
		return STORE_OP_EXISTS;
	}
	if (store_folder_below(ct, cf)) {
		*error_r = "a folder cannot move below itself";
		return STORE_OP_CANNOT;
	}
	if (strcmp(cf, "INBOX") == 0)
		return store_folder_rename_inbox(st, ct, pt, error_r);
	memset(&c, 0, sizeof(c));
	c.st = st;
	c.from = cf;
	c.to = ct;
	ret = st->ml.format == MAILLOC_MAILDIR ?
	    store_folder_rename_maildir(&c, pt, error_r) :
	    store_folder_rename_mbox(&c, pf, pt, error_r);
	store_folder_ren_free(&c);
	return ret;
}
