/*
 * store_reindex.c: rebuild a user's index from storage.
 *
 * The new index is built beside the old one (INDEX.new) while the old one
 * stays in service, then swapped in under an exclusive lock on the old
 * one's loft.lock, which every process holding the index open shares:
 * LMDB readers that kept the old map open would otherwise go on writing to
 * a file that is no longer the index.
 */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
#include "conf.h"
#include "fsutil.h"
#include "log.h"
#include "store_private.h"
#include "user.h"

static int
reindex_swap(const char *dir, const char *newdir, const char **error_r)
{
	char lockpath[PATH_MAX], olddir[PATH_MAX];
	int fd, ret = -1;

	if ((size_t)snprintf(lockpath, sizeof(lockpath), "%s/loft.lock",
	    dir) >= sizeof(lockpath) || (size_t)snprintf(olddir,
	    sizeof(olddir), "%s.old", dir) >= sizeof(olddir)) {
		*error_r = "index path too long";
		return -1;
	}
	fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 && errno != ENOENT) {
		*error_r = store_error("cannot open %s: %s", lockpath,
		    strerror(errno));
		return -1;
	}
	if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0) {
		*error_r = "the index is in use by another process; "
		    "try again when it is idle";
		close(fd);
		return -1;
	}
	fsutil_remove_tree(olddir);
	if (rename(dir, olddir) < 0 && errno != ENOENT)
		*error_r = store_error("cannot move %s aside: %s", dir,
		    strerror(errno));
	else if (rename(newdir, dir) < 0)
		*error_r = store_error("cannot rename %s to %s: %s", newdir,
		    dir, strerror(errno));
	else {
		fsutil_fsync_parent(dir);
		fsutil_remove_tree(olddir);
		ret = 0;
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

int
store_reindex(const struct user *u, uint64_t *messages_r,
    const char **error_r)
{
	struct mindex_options opts;
	struct mindex *old_ix = NULL;
	struct mindex_stats stats;
	struct store *st;
	struct mailloc ml;
	char newdir[PATH_MAX];
	const char *err;
	int ret;

	if (mailloc_parse(u->mail_location, u->name, u->home, &ml,
	    error_r) < 0)
		return -1;
	if ((size_t)snprintf(newdir, sizeof(newdir), "%s.new",
	    ml.index_dir) >= sizeof(newdir)) {
		mailloc_free(&ml);
		*error_r = "index path too long";
		return -1;
	}
	fsutil_remove_tree(newdir);
	opts.map_size = (uint64_t)conf_int("index_map_size");
	opts.max_map_size = (uint64_t)conf_int("index_max_size");
	opts.nosync = !conf_bool("mail_fsync");
	/* The old index, if it still opens, lends its UIDs to mbox folders;
	 * Maildir files carry theirs in their names. */
	if (access(ml.index_dir, F_OK) == 0 &&
	    mindex_open(ml.index_dir, &opts, &old_ix, &err) < 0) {
		log_warning("%s: old index unreadable (%s); mbox folders get "
		    "a new UIDVALIDITY", u->name, err);
		old_ix = NULL;
	}
	if (store_open_index(u, newdir, &st, error_r) < 0) {
		if (old_ix != NULL)
			mindex_close(&old_ix);
		mailloc_free(&ml);
		return -1;
	}
	st->old_ix = old_ix;
	ret = store_sync_all(st, true, error_r);
	if (ret == 0 && mindex_stats(st->ix, &stats, error_r) == 0)
		*messages_r = stats.entries;
	store_close(&st);
	if (old_ix != NULL)
		mindex_close(&old_ix);
	if (ret == 0)
		ret = reindex_swap(ml.index_dir, newdir, error_r);
	else
		fsutil_remove_tree(newdir);
	mailloc_free(&ml);
	return ret;
}
