/*
 * rules_store.c: where the rules engine's folder deliveries land for
 * loft: inside the user's store through store_deliver (index, quota),
 * anywhere else as procmail would write it (mbox, Maildir, MH, a plain
 * directory), locked as lib/lock does and fsynced.
 *
 * SECURITY: runs as the user, on paths the user's rules named; the
 * message is only written. mbox files are opened with O_NOFOLLOW (a
 * symbolic link as an mbox is refused, as the store refuses it).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compat/compat.h"
#include "fsutil.h"
#include "lock.h"
#include "maildir.h"
#include "mailloc.h"
#include "mbox.h"
#include "rules.h"
#include "store.h"
#include "xmalloc.h"

static char rules_store_errbuf[512];

static const char *
rules_store_err(const char *what, const char *path)
{
	snprintf(rules_store_errbuf, sizeof(rules_store_errbuf), "%s %s: %s",
	    what, path, strerror(errno));
	return rules_store_errbuf;
}

char *
rules_store_inbox(struct store *st)
{
	const struct mailloc *ml = store_location(st);

	if (ml->format == MAILLOC_MAILDIR)
		return xasprintf("%s/", ml->root);
	return xstrdup(ml->inbox);
}

/* The store folder path names, if any: 1 and name, or 0. */
static int
rules_store_map(struct store *st, enum rules_folder_kind kind,
    const char *path, char *name, size_t size)
{
	const struct mailloc *ml = store_location(st);
	size_t rl = strlen(ml->root);
	char check[PATH_MAX];
	const char *err;

	if (ml->format == MAILLOC_MAILDIR) {
		if (kind != RULES_FOLDER_MAILDIR)
			return 0;
		if (strcmp(path, ml->root) == 0) {
			strlcpy(name, "INBOX", size);
			return 1;
		}
		if (strncmp(path, ml->root, rl) != 0 || path[rl] != '/' ||
		    path[rl + 1] != '.' || strchr(path + rl + 1, '/') != NULL ||
		    maildir_folder_name(path + rl + 1, name, size) < 0)
			return 0;
	} else {
		if (kind != RULES_FOLDER_MBOX)
			return 0;
		if (strcmp(path, ml->inbox) == 0) {
			strlcpy(name, "INBOX", size);
			return 1;
		}
		if (strncmp(path, ml->root, rl) != 0 || path[rl] != '/' ||
		    strlcpy(name, path + rl + 1, size) >= size)
			return 0;
	}
	/* Only a name the store spells back into this very path. */
	if (store_folder_path(st, name, check, sizeof(check), &err) < 0 ||
	    strcmp(check, path) != 0)
		return 0;
	return 1;
}

static enum rules_status
rules_store_result(struct rules_store *rs, enum store_result r,
    const char *err, const char **error_r)
{
	if (r == STORE_OK)
		return RULES_OK;
	rs->store_failure = (int)r;
	strlcpy(rs->failure, err, sizeof(rs->failure));
	*error_r = rs->failure;
	return r == STORE_OVERQUOTA || r == STORE_PERMFAIL ? RULES_PERMFAIL :
	    RULES_TEMPFAIL;
}

static int
rules_store_write_all(int fd, const unsigned char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static enum rules_status
rules_store_fail(struct rules_store *rs, const char *what, const char *path,
    const char **error_r)
{
	bool full = fsutil_is_disk_full(errno);

	*error_r = rules_store_err(what, path);
	rs->store_failure = full ? STORE_DISKFULL : STORE_TEMPFAIL;
	strlcpy(rs->failure, *error_r, sizeof(rs->failure));
	return RULES_TEMPFAIL;
}

static enum rules_status
rules_store_mbox(struct rules_store *rs, const char *path,
    const unsigned char *msg, size_t len, const char **error_r)
{
	struct lock_opts lo = { rs->lock_methods, rs->lock_attempts,
	    rs->lock_delay_ms, rs->lock_stale_secs };
	struct lock_mbox *lk = NULL;
	uint64_t from_off, data_off, data_len;
	struct stat sb;
	bool created;
	int fd, ret;

	created = lstat(path, &sb) < 0;
	fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0)
		return rules_store_fail(rs, "cannot open", path, error_r);
	ret = lock_mbox_acquire(fd, path, &lo, &lk, error_r);
	if (ret < 0) {
		close(fd);
		rs->store_failure = ret == LOCK_TIMEOUT ? STORE_LOCKED :
		    STORE_TEMPFAIL;
		return RULES_TEMPFAIL;
	}
	ret = mbox_append(fd, rs->sender, rs->received, msg, len,
	    rs->do_fsync, &from_off, &data_off, &data_len, error_r);
	if (ret < 0)
		rs->store_failure = fsutil_is_disk_full(errno) ?
		    STORE_DISKFULL : STORE_TEMPFAIL;
	lock_mbox_release(&lk);
	close(fd);
	if (ret == 0 && created && rs->do_fsync && fsutil_fsync_parent(path) < 0)
		return rules_store_fail(rs, "cannot fsync the directory of",
		    path, error_r);
	return ret < 0 ? RULES_TEMPFAIL : RULES_OK;
}

static enum rules_status
rules_store_maildir(struct rules_store *rs, const char *dir,
    const unsigned char *msg, size_t len, char **stored_r,
    const char **error_r)
{
	char *name = NULL, from[PATH_MAX], to[PATH_MAX], nd[PATH_MAX];

	if (maildir_create(dir, false, error_r) < 0 ||
	    maildir_tmp_write(dir, msg, len, rs->do_fsync, &name,
	    error_r) < 0) {
		rs->store_failure = fsutil_is_disk_full(errno) ?
		    STORE_DISKFULL : STORE_TEMPFAIL;
		return RULES_TEMPFAIL;
	}
	snprintf(from, sizeof(from), "%s/tmp/%s", dir, name);
	snprintf(to, sizeof(to), "%s/new/%s", dir, name);
	snprintf(nd, sizeof(nd), "%s/new", dir);
	free(name);
	/* link(), not rename(): it never replaces a file of that name. */
	if (link(from, to) < 0) {
		unlink(from);
		return rules_store_fail(rs, "cannot link into", nd, error_r);
	}
	unlink(from);
	if (rs->do_fsync && fsutil_fsync_dir(nd) < 0)
		return rules_store_fail(rs, "cannot fsync", nd, error_r);
	*stored_r = xstrdup(to);
	return RULES_OK;
}

/* The highest all-digit name in dir (MH messages), 0 if none. */
static unsigned long
rules_store_mh_last(const char *dir)
{
	unsigned long last = 0, v;
	struct dirent *de;
	DIR *d = opendir(dir);
	char *end;

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		v = strtoul(de->d_name, &end, 10);
		if (*end == '\0' && v > last && v < ULONG_MAX / 2)
			last = v;
	}
	closedir(d);
	return last;
}

/* A new file in dir: MH numbers (prefix NULL) or prefix + a unique tail. */
static enum rules_status
rules_store_file(struct rules_store *rs, const char *dir, const char *prefix,
    const unsigned char *msg, size_t len, char **stored_r,
    const char **error_r)
{
	unsigned long n = prefix == NULL ? rules_store_mh_last(dir) : 0;
	char path[PATH_MAX];
	int fd = -1, tries;

	if (fsutil_mkdir_p(dir, 0700) < 0)
		return rules_store_fail(rs, "cannot create", dir, error_r);
	for (tries = 0; tries < 1000 && fd < 0; tries++) {
		if (prefix == NULL)
			snprintf(path, sizeof(path), "%s/%lu", dir, ++n);
		else
			snprintf(path, sizeof(path), "%s/%s%ld.%d%04x", dir,
			    prefix, (long)rs->received, (int)getpid(),
			    (unsigned)(random() & 0xffff));
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
		    O_NOFOLLOW, 0600);
		if (fd < 0 && errno != EEXIST)
			return rules_store_fail(rs, "cannot create", path,
			    error_r);
	}
	if (fd < 0)
		return rules_store_fail(rs, "cannot create a file in", dir,
		    error_r);
	if (rules_store_write_all(fd, msg, len) < 0 ||
	    (rs->do_fsync && fsync(fd) < 0)) {
		enum rules_status st = rules_store_fail(rs, "cannot write",
		    path, error_r);

		close(fd);
		unlink(path);
		return st;
	}
	close(fd);
	if (rs->do_fsync && fsutil_fsync_dir(dir) < 0)
		return rules_store_fail(rs, "cannot fsync", dir, error_r);
	*stored_r = xstrdup(path);
	return RULES_OK;
}

enum rules_status
rules_store_folder(void *ctx, enum rules_folder_kind kind, const char *path,
    const unsigned char *msg, size_t len, char **stored_r,
    const char **error_r)
{
	struct rules_store *rs = ctx;
	struct store_delivered done;
	struct store_delivery d;
	enum rules_status st;
	enum store_result r;
	char name[STORE_FOLDER_NAME_MAX + 1];
	const char *err = "";

	rs->last_kind = kind;
	snprintf(rs->last_folder, sizeof(rs->last_folder), "%s", path);
	if (rules_store_map(rs->st, kind, path, name, sizeof(name)) == 1) {
		memset(&d, 0, sizeof(d));
		d.folder = name;
		d.sender = rs->sender;
		d.received = rs->received;
		d.msg = msg;
		d.len = len;
		r = store_deliver(rs->st, &d, &done, &err);
		st = rules_store_result(rs, r, err, error_r);
		if (st == RULES_OK) {
			snprintf(rs->last_folder, sizeof(rs->last_folder),
			    "%s %s", done.format, name);
			rs->stored++;
		}
		return st;
	}
	switch (kind) {
	case RULES_FOLDER_MBOX:
		st = rules_store_mbox(rs, path, msg, len, error_r);
		break;
	case RULES_FOLDER_MAILDIR:
		st = rules_store_maildir(rs, path, msg, len, stored_r,
		    error_r);
		break;
	case RULES_FOLDER_MH:
		st = rules_store_file(rs, path, NULL, msg, len, stored_r,
		    error_r);
		break;
	default:
		st = rules_store_file(rs, path, "msg.", msg, len, stored_r,
		    error_r);
		break;
	}
	if (st == RULES_OK)
		rs->stored++;
	return st;
}
