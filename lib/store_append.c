/*
 * store_append.c: putting a message into a folder (IMAP APPEND) and
 * copying or moving messages between folders of one user (COPY, MOVE,
 * with the UID mapping UIDPLUS reports).
 *
 * A message goes in through store_deliver, the path every delivery
 * takes, so it is fsynced and indexed exactly as mail from outside is
 * (and counted against the same quota); flags, keywords and the internal
 * date are set after that. Keywords are checked before anything is
 * stored (store_keywords_norm), and for Maildir whether the folder has
 * letters left for them, so that an APPEND refused for a keyword limit
 * leaves nothing behind. A copy reads the message as stored (store_read)
 * and appends it again, with the flags and keywords of its record.
 *
 * Several messages at once (IMAP MULTIAPPEND) are all or none, which one
 * store_deliver per message cannot give: after the same checks, for all
 * of them, Maildir writes them all into tmp/ and only then renames them
 * into new/ under the UIDs they should get, mbox appends them all under
 * one lock and cuts the file back on failure; then a sync indexes them
 * (as it would files another program dropped) and they are found again
 * by name or offset for their UIDs and flags.
 *
 * The message bytes are the client's, stored as they are; nothing here
 * parses them.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "compat/compat.h"
#include "fsutil.h"
#include "log.h"
#include "maildir.h"
#include "mbox.h"
#include "msg.h"
#include "store_ops_private.h"
#include "xmalloc.h"

/* Slack over a message's recorded size when it is read back for a copy:
 * the stored bytes never exceed psize, this only bounds a surprise. */
#define STORE_APPEND_READ_SLACK (64 * 1024)
/* A message's keywords as the index keeps them, at most. */
#define STORE_APPEND_KW_BYTES	(STORE_KEYWORDS_MAX * (STORE_KEYWORD_MAX + 1))

static enum store_op
store_append_result(enum store_result r)
{
	switch (r) {
	case STORE_OK:
		return STORE_OP_OK;
	case STORE_OVERQUOTA:
		return STORE_OP_OVERQUOTA;
	case STORE_LOCKED:
		return STORE_OP_INUSE;
	case STORE_PERMFAIL:
		return STORE_OP_BADNAME;
	case STORE_TEMPFAIL:
	case STORE_DISKFULL:
		break;
	}
	return STORE_OP_TEMPFAIL;
}

/* Maildir: the file's mtime is its internal date (as Dovecot keeps it),
 * so that a rebuild of the index finds the same date. */
static void
store_append_mtime(struct store *st, const char *folder, uint32_t uid,
    time_t when)
{
	char dir[PATH_MAX], path[PATH_MAX];
	struct timespec ts[2];
	struct mindex_txn *txn;
	struct mindex_folder f;
	struct mindex_msg m;
	const char *err;
	int ret;

	if (store_folder_path(st, folder, dir, sizeof(dir), &err) < 0 ||
	    mindex_begin(st->ix, false, &txn, &err) < 0)
		return;
	ret = mindex_folder_get(txn, folder, &f);
	if (ret == 1)
		ret = mindex_msg_get(txn, f.id, uid, &m);
	if (ret == 1 && (size_t)snprintf(path, sizeof(path), "%s/%s", dir,
	    m.location) >= sizeof(path))
		ret = 0;
	mindex_abort(&txn);
	if (ret != 1)
		return;
	ts[0].tv_sec = 0;
	ts[0].tv_nsec = UTIME_OMIT;
	ts[1].tv_sec = when;
	ts[1].tv_nsec = 0;
	if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) < 0)
		log_warning("cannot set the date of %s: %s", path,
		    strerror(errno));
}

/* The checks before anything is stored: flags, keywords (normalised into
 * kw, "$Forwarded" into *flags), the folder, and for Maildir letters for
 * the keywords. */
static enum store_op
store_append_check(struct store *st, const struct store_append *a,
    char *canon, size_t canonsize, struct buf *kw, uint32_t *flags,
    const char **error_r)
{
	char path[PATH_MAX];
	enum store_op op;
	int ret;

	if ((op = store_folder_resolve(st, a->folder, canon, canonsize, path,
	    sizeof(path), error_r)) != STORE_OP_OK)
		return op;
	if ((a->flags & ~STORE_FLAGS_SYSTEM) != 0 || a->len == 0) {
		*error_r = a->len == 0 ? "empty message" :
		    "only system flags can be stored";
		return STORE_OP_CANNOT;
	}
	*flags = a->flags;
	if ((op = store_keywords_norm(a->keywords, a->keywords_len, kw, flags,
	    error_r)) != STORE_OP_OK)
		return op;
	if ((ret = store_folder_exists(st, canon, error_r)) <= 0) {
		if (ret == 0)
			*error_r = "no such folder";
		return ret == 0 ? STORE_OP_NONEXISTENT : STORE_OP_TEMPFAIL;
	}
	if (st->ml.format == MAILLOC_MAILDIR && kw->len > 0)
		return store_keywords_fit(path, (const char *)kw->data,
		    kw->len, error_r);
	return STORE_OP_OK;
}

enum store_op
store_append(struct store *st, const struct store_append *a,
    struct store_appended *out, const char **error_r)
{
	char canon[STORE_FOLDER_NAME_MAX + 1];
	struct store_delivery d;
	struct store_delivered del;
	struct store_uid_range one;
	struct store_uidset set = { &one, 1 };
	struct store_flags_change fc;
	struct store_flag_result *res;
	enum store_op op;
	struct buf kw;
	uint32_t flags = 0;
	size_t n;

	memset(out, 0, sizeof(*out));
	buf_init(&kw, STORE_APPEND_KW_BYTES);
	if ((op = store_append_check(st, a, canon, sizeof(canon), &kw, &flags,
	    error_r)) != STORE_OP_OK)
		goto out;
	d.folder = canon;
	d.sender = "";
	d.received = a->internal_date != 0 ? a->internal_date : time(NULL);
	d.msg = a->msg;
	d.len = a->len;
	if ((op = store_append_result(store_deliver(st, &d, &del,
	    error_r))) != STORE_OP_OK)
		goto out;
	out->uidvalidity = del.uidvalidity;
	out->uid = del.uid;
	if (del.uid == 0)
		goto out;	/* stored; the next sync indexes it */
	if (st->ml.format == MAILLOC_MAILDIR)
		store_append_mtime(st, canon, del.uid, d.received);
	if (flags == 0 && kw.len == 0)
		goto out;
	one.first = one.last = del.uid;
	memset(&fc, 0, sizeof(fc));
	fc.uids = &set;
	fc.how = STORE_FLAGS_ADD;
	fc.flags = flags;
	fc.unchangedsince = STORE_MODSEQ_NONE;
	if (store_flags_change_kw(st, canon, &fc, (const char *)kw.data,
	    kw.len, &res, &n, error_r) != STORE_OP_OK)
		log_warning("%s: message appended to %s as UID %u, but its "
		    "flags were not set: %s", st->user, canon, del.uid,
		    *error_r);
	else
		free(res);
out:
	buf_free(&kw);
	return op;
}

/*
 * Several messages at once, all or none (MULTIAPPEND).
 */

/* What store_append_multi keeps while it works. */
struct store_multi {
	struct store *st;
	char canon[STORE_FOLDER_NAME_MAX + 1];
	char path[PATH_MAX];		/* Maildir directory or mbox file */
	const struct store_append *a;
	size_t n;
	struct buf *kw;			/* owned: n normalised keyword lists */
	uint32_t *flags;		/* owned: n, with "$Forwarded" in */
	char **tmp;			/* owned: Maildir names in tmp/ */
	char **fin;			/* owned: Maildir "new/NAME,U=n" */
	uint64_t *from;			/* owned: mbox From_ line offsets */
	uint64_t *dlen;			/* owned: mbox stored sizes */
	uint32_t uidnext;		/* of the folder before the append */
	uint32_t *cur_flags;		/* owned: as the sync indexed them */
	bool *cur_kw;			/* owned: indexed with keywords */
};

static void
store_multi_init(struct store_multi *m, struct store *st,
    const struct store_append *a, size_t n)
{
	memset(m, 0, sizeof(*m));
	m->st = st;
	m->a = a;
	m->n = n;
	m->kw = xreallocarray(NULL, n, sizeof(*m->kw));
	for (size_t i = 0; i < n; i++)
		buf_init(&m->kw[i], STORE_APPEND_KW_BYTES);
	m->flags = xcalloc(n, sizeof(*m->flags));
	m->tmp = xcalloc(n, sizeof(*m->tmp));
	m->fin = xcalloc(n, sizeof(*m->fin));
	m->from = xcalloc(n, sizeof(*m->from));
	m->dlen = xcalloc(n, sizeof(*m->dlen));
	m->cur_flags = xcalloc(n, sizeof(*m->cur_flags));
	m->cur_kw = xcalloc(n, sizeof(*m->cur_kw));
}

static void
store_multi_free(struct store_multi *m)
{
	for (size_t i = 0; i < m->n; i++) {
		buf_free(&m->kw[i]);
		free(m->tmp[i]);
		free(m->fin[i]);
	}
	free(m->kw);
	free(m->flags);
	free(m->tmp);
	free(m->fin);
	free(m->from);
	free(m->dlen);
	free(m->cur_flags);
	free(m->cur_kw);
}

/* Maildir: the distinct keywords of all the messages (at most
 * MAILDIR_KEYWORDS_MAX of them, or no folder could take them) into u,
 * as store_keywords_fit takes them. */
static enum store_op
store_multi_kw_union(const struct store_multi *m, struct buf *u,
    const char **error_r)
{
	const char *seen[MAILDIR_KEYWORDS_MAX];
	size_t nseen = 0;

	for (size_t i = 0; i < m->n; i++) {
		const char *p = (const char *)m->kw[i].data;
		const char *end = p + m->kw[i].len;

		for (; p < end; p += strlen(p) + 1) {
			size_t k;

			for (k = 0; k < nseen && strcasecmp(seen[k], p) != 0;
			    k++)
				;
			if (k < nseen)
				continue;
			if (nseen == MAILDIR_KEYWORDS_MAX) {
				*error_r = store_error("a Maildir folder holds "
				    "at most %d keywords",
				    MAILDIR_KEYWORDS_MAX);
				return STORE_OP_LIMIT;
			}
			seen[nseen++] = p;
			(void)buf_append(u, p, strlen(p) + 1);
		}
	}
	return STORE_OP_OK;
}

/* Everything store_append would refuse, for every message, before
 * anything is written; the quota for their total. */
static enum store_op
store_multi_check(struct store_multi *m, const char *folder,
    const char **error_r)
{
	uint64_t total = 0, bytes, msgs, limit;
	enum store_op op;
	struct buf u;
	int ret;

	if ((op = store_folder_resolve(m->st, folder, m->canon,
	    sizeof(m->canon), m->path, sizeof(m->path), error_r)) !=
	    STORE_OP_OK)
		return op;
	for (size_t i = 0; i < m->n; i++) {
		const struct store_append *a = &m->a[i];

		if ((a->flags & ~STORE_FLAGS_SYSTEM) != 0 || a->len == 0) {
			*error_r = a->len == 0 ? "empty message" :
			    "only system flags can be stored";
			return STORE_OP_CANNOT;
		}
		m->flags[i] = a->flags;
		if ((op = store_keywords_norm(a->keywords, a->keywords_len,
		    &m->kw[i], &m->flags[i], error_r)) != STORE_OP_OK)
			return op;
		total += a->len;
	}
	if ((ret = store_folder_exists(m->st, m->canon, error_r)) <= 0) {
		if (ret == 0)
			*error_r = "no such folder";
		return ret == 0 ? STORE_OP_NONEXISTENT : STORE_OP_TEMPFAIL;
	}
	if (store_quota(m->st, &bytes, &msgs, &limit, error_r) < 0)
		return STORE_OP_TEMPFAIL;
	if (limit > 0 && bytes + total > limit) {
		*error_r = store_error("mailbox is full: %llu of %llu bytes "
		    "used", (unsigned long long)bytes,
		    (unsigned long long)limit);
		return STORE_OP_OVERQUOTA;
	}
	if (m->st->ml.format != MAILLOC_MAILDIR)
		return STORE_OP_OK;
	buf_init(&u, MAILDIR_KEYWORDS_MAX * (STORE_KEYWORD_MAX + 1));
	op = store_multi_kw_union(m, &u, error_r);
	if (op == STORE_OP_OK && u.len > 0)
		op = store_keywords_fit(m->path, (const char *)u.data, u.len,
		    error_r);
	buf_free(&u);
	return op;
}

/* The folder's UIDNEXT as the index has it now (after a sync). */
static int
store_multi_uidnext(struct store_multi *m, const char **error_r)
{
	struct mindex_txn *txn;
	struct mindex_folder f;
	int ret;

	if (mindex_begin(m->st->ix, false, &txn, error_r) < 0)
		return -1;
	ret = mindex_folder_get(txn, m->canon, &f);
	mindex_abort(&txn);
	if (ret < 0) {
		*error_r = store_error("cannot read the index: %s",
		    mindex_last_error());
		return -1;
	}
	m->uidnext = ret == 1 ? f.uidnext : 1;
	return 0;
}

/* Maildir: remove what was written: files renamed into new/ (the first
 * nfin) and those still in tmp/. */
static void
store_multi_md_undo(struct store_multi *m, size_t nfin)
{
	char path[PATH_MAX];
	int len;

	for (size_t i = 0; i < m->n; i++) {
		if (i < nfin && m->fin[i] != NULL)
			len = snprintf(path, sizeof(path), "%s/%s", m->path,
			    m->fin[i]);
		else if (m->tmp[i] != NULL)
			len = snprintf(path, sizeof(path), "%s/tmp/%s",
			    m->path, m->tmp[i]);
		else
			continue;
		/* The names were made from this path: they fit. */
		if (len < 0 || (size_t)len >= sizeof(path))
			continue;
		if (unlink(path) < 0 && errno != ENOENT)
			log_error("%s: cannot remove %s after a failed "
			    "append: %s", m->st->user, path, strerror(errno));
	}
}

/* Maildir: the file's mtime is its internal date (store_append_mtime);
 * the sync that indexes it reads it from there. Set once it is in new/:
 * a sync cleans tmp/ of files that look 36 hours old. */
static void
store_multi_md_mtime(struct store_multi *m, size_t i)
{
	char path[PATH_MAX];
	struct timespec ts[2];

	if (m->a[i].internal_date == 0 || (size_t)snprintf(path, sizeof(path),
	    "%s/%s", m->path, m->fin[i]) >= sizeof(path))
		return;
	ts[0].tv_sec = 0;
	ts[0].tv_nsec = UTIME_OMIT;
	ts[1].tv_sec = m->a[i].internal_date;
	ts[1].tv_nsec = 0;
	if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) < 0)
		log_warning("cannot set the date of %s: %s", path,
		    strerror(errno));
}

/*
 * Maildir: every message into tmp/ (each fsynced), then all renamed into
 * new/ under the UIDs they should get (the sync keeps a name's ",U=" when
 * it is still free, else renames the file: its base name stays), then
 * new/ fsynced once. Any failure removes them all.
 */
static enum store_op
store_multi_maildir(struct store_multi *m, const char **error_r)
{
	char dir[PATH_MAX];
	struct stat sb;
	size_t i;

	if ((size_t)snprintf(dir, sizeof(dir), "%s/tmp", m->path) >=
	    sizeof(dir))
		return STORE_OP_TEMPFAIL;
	if (stat(dir, &sb) < 0 && maildir_create(m->path,
	    strcmp(m->canon, "INBOX") != 0, error_r) < 0)
		return STORE_OP_TEMPFAIL;
	if (m->uidnext > UINT32_MAX - m->n) {
		*error_r = "no UIDs left in the folder";
		return STORE_OP_TEMPFAIL;
	}
	for (i = 0; i < m->n; i++)
		if (maildir_tmp_write(m->path, m->a[i].msg, m->a[i].len,
		    m->st->fsync, &m->tmp[i], error_r) < 0) {
			store_multi_md_undo(m, 0);
			return STORE_OP_TEMPFAIL;
		}
	for (i = 0; i < m->n; i++)
		if (maildir_tmp_to_new(m->path, m->tmp[i],
		    m->uidnext + (uint32_t)i, false, &m->fin[i],
		    error_r) < 0) {
			store_multi_md_undo(m, i);
			return STORE_OP_TEMPFAIL;
		}
	if ((size_t)snprintf(dir, sizeof(dir), "%s/new", m->path) >=
	    sizeof(dir) || (m->st->fsync && fsutil_fsync_dir(dir) < 0)) {
		*error_r = store_error("fsync of %s failed: %s", dir,
		    strerror(errno));
		store_multi_md_undo(m, m->n);
		return STORE_OP_TEMPFAIL;
	}
	for (i = 0; i < m->n; i++)
		store_multi_md_mtime(m, i);
	return STORE_OP_OK;
}

/* mbox: open the folder's file (INBOX may not exist yet) and lock it as
 * deliveries do; a file replaced while we waited is opened again. */
static enum store_op
store_multi_mbox_lock(struct store *st, const char *path, int *fd_r,
    struct lock_mbox **lk_r, const char **error_r)
{
	char dir[PATH_MAX], *slash;
	int fd, ret = -1, err;

	if (strlcpy(dir, path, sizeof(dir)) < sizeof(dir) &&
	    (slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		(void)fsutil_mkdir_p(dir, 0700);
	}
	for (int tries = 0; tries < 3; tries++) {
		fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC |
		    O_NOFOLLOW, 0600);
		if (fd < 0) {
			*error_r = store_error("cannot open %s: %s", path,
			    strerror(errno));
			return STORE_OP_TEMPFAIL;
		}
		if ((ret = store_read_lock_mbox(&st->lock, fd, path,
		    lk_r, error_r)) == 0) {
			*fd_r = fd;
			return STORE_OP_OK;
		}
		err = errno;
		close(fd);
		if (ret != -1 || err != ESTALE)
			break;
	}
	return ret == LOCK_TIMEOUT ? STORE_OP_INUSE : STORE_OP_TEMPFAIL;
}

/* mbox, locked: append them all and fsync, or cut the file back to where
 * it ended. */
static enum store_op
store_multi_mbox_write(struct store_multi *m, int fd, const char **error_r)
{
	uint64_t data_off;
	struct stat sb;
	size_t i;

	if (fstat(fd, &sb) < 0) {
		*error_r = store_error("cannot stat %s: %s", m->path,
		    strerror(errno));
		return STORE_OP_TEMPFAIL;
	}
	for (i = 0; i < m->n; i++) {
		const struct store_append *a = &m->a[i];

		if (mbox_append(fd, "", a->internal_date != 0 ?
		    a->internal_date : time(NULL), a->msg, a->len, false,
		    &m->from[i], &data_off, &m->dlen[i], error_r) < 0)
			break;
	}
	if (i == m->n && (!m->st->fsync || fsync(fd) == 0)) {
		if (sb.st_size == 0 && m->st->fsync &&
		    fsutil_fsync_parent(m->path) < 0)
			log_warning("%s: fsync of the directory of %s: %s",
			    m->st->user, m->path, strerror(errno));
		return STORE_OP_OK;
	}
	if (i == m->n)
		*error_r = store_error("fsync of %s failed: %s", m->path,
		    strerror(errno));
	if (ftruncate(fd, sb.st_size) < 0 || (m->st->fsync && fsync(fd) < 0))
		log_error("%s: cannot cut %s back to %llu bytes after a "
		    "failed append: %s", m->st->user, m->path,
		    (unsigned long long)sb.st_size, strerror(errno));
	return STORE_OP_TEMPFAIL;
}

static enum store_op
store_multi_mbox(struct store_multi *m, const char **error_r)
{
	struct lock_mbox *lk = NULL;
	enum store_op op;
	int fd = -1;

	if ((op = store_multi_mbox_lock(m->st, m->path, &fd, &lk,
	    error_r)) != STORE_OP_OK)
		return op;
	op = store_multi_mbox_write(m, fd, error_r);
	lock_mbox_release(&lk);
	if (close(fd) < 0 && op == STORE_OP_OK && m->st->fsync)
		log_warning("%s: close %s: %s", m->st->user, m->path,
		    strerror(errno));
	return op;
}

/* Finding the messages in the index after the sync indexed them. */
struct store_multi_find {
	struct store_multi *m;
	struct store_appended *out;
	size_t found;
};

/* Is record r message i? Maildir: by the name it was written under
 * (tmp/NAME became new/NAME,U=n and may have moved on to cur/ with
 * flags or been renamed for another UID: NAME stays); mbox: by the
 * offset of its From_ line and its stored size. */
static bool
store_multi_is(const struct store_multi *m, size_t i,
    const struct mindex_msg *r)
{
	size_t len;

	if (m->st->ml.format != MAILLOC_MAILDIR)
		return r->mbox_offset == m->from[i] && r->psize == m->dlen[i];
	len = strlen(m->tmp[i]);
	return r->location_len > 4 + len &&
	    memcmp(r->location + 4, m->tmp[i], len) == 0 &&
	    r->location[4 + len] == ',';
}

static int
store_multi_find_cb(const struct mindex_msg *r, void *ctx)
{
	struct store_multi_find *c = ctx;

	for (size_t i = 0; i < c->m->n; i++) {
		if (c->out[i].uid != 0 || !store_multi_is(c->m, i, r))
			continue;
		c->out[i].uid = r->uid;
		c->m->cur_flags[i] = r->flags;
		c->m->cur_kw[i] = r->keywords_len > 0;
		return ++c->found == c->m->n ? 1 : 0;
	}
	return 0;
}

/* The UIDs the sync gave them (new UIDs are above the old UIDNEXT). */
static void
store_multi_find(struct store_multi *m, struct store_appended *out)
{
	struct store_multi_find c = { m, out, 0 };
	struct mindex_txn *txn;
	struct mindex_folder f;
	const char *err;

	if (mindex_begin(m->st->ix, false, &txn, &err) < 0) {
		log_warning("%s: %s", m->st->user, err);
		return;
	}
	if (mindex_folder_get(txn, m->canon, &f) == 1) {
		for (size_t i = 0; i < m->n; i++)
			out[i].uidvalidity = f.uidvalidity;
		(void)mindex_msg_iter(txn, f.id, m->uidnext,
		    store_multi_find_cb, &c);
	}
	mindex_abort(&txn);
	if (c.found < m->n)
		log_warning("%s: %zu of %zu messages appended to %s are not "
		    "indexed yet", m->st->user, m->n - c.found, m->n,
		    m->canon);
}

/* Do messages i and j want the same flags and keywords? */
static bool
store_multi_same(const struct store_multi *m, size_t i, size_t j)
{
	return m->flags[i] == m->flags[j] && m->kw[i].len == m->kw[j].len &&
	    (m->kw[i].len == 0 ||
	    memcmp(m->kw[i].data, m->kw[j].data, m->kw[i].len) == 0);
}

/* Does message i need its flags set: indexed, and not as the client
 * asked (an mbox sync may have read a Status: header)? */
static bool
store_multi_needs_flags(const struct store_multi *m, size_t i,
    const struct store_appended *out)
{
	return out[i].uid != 0 && (m->cur_flags[i] != m->flags[i] ||
	    m->cur_kw[i] || m->kw[i].len > 0);
}

/* Give each message its flags and keywords, one store_flags_change_kw
 * (REPLACE) per distinct set of them: usually one, whatever the count.
 * Failures are logged (store_append's rule). */
static void
store_multi_flags(struct store_multi *m, const struct store_appended *out)
{
	struct store_uid_range *r = xreallocarray(NULL, m->n, sizeof(*r));
	bool *done = xcalloc(m->n, sizeof(*done));
	struct store_flag_result *res;
	struct store_flags_change fc;
	struct store_uidset set = { r, 0 };
	const char *err;
	size_t got;

	for (size_t i = 0; i < m->n; i++) {
		if (done[i])
			continue;
		set.count = 0;
		for (size_t j = i; j < m->n; j++) {
			if (done[j] || !store_multi_same(m, i, j))
				continue;
			done[j] = true;
			if (store_multi_needs_flags(m, j, out)) {
				r[set.count].first = r[set.count].last =
				    out[j].uid;
				set.count++;
			}
		}
		if (set.count == 0)
			continue;
		memset(&fc, 0, sizeof(fc));
		fc.uids = &set;
		fc.how = STORE_FLAGS_REPLACE;
		fc.flags = m->flags[i];
		fc.unchangedsince = STORE_MODSEQ_NONE;
		if (store_flags_change_kw(m->st, m->canon, &fc,
		    (const char *)m->kw[i].data, m->kw[i].len, &res, &got,
		    &err) != STORE_OP_OK)
			log_warning("%s: %zu messages appended to %s, but "
			    "their flags were not set: %s", m->st->user,
			    set.count, m->canon, err);
		else
			free(res);
	}
	free(done);
	free(r);
}

enum store_op
store_append_multi(struct store *st, const char *folder,
    const struct store_append *a, size_t n, struct store_appended *out,
    const char **error_r)
{
	struct store_multi m;
	enum store_op op;
	const char *err;

	if (n == 0) {
		*error_r = "no message";
		return STORE_OP_CANNOT;
	}
	memset(out, 0, n * sizeof(*out));
	store_multi_init(&m, st, a, n);
	if ((op = store_multi_check(&m, folder, error_r)) != STORE_OP_OK)
		goto out;
	/* In step first, so the index's UIDNEXT is the folder's. */
	if (store_sync(st, m.canon, false, NULL, error_r) < 0 ||
	    store_multi_uidnext(&m, error_r) < 0) {
		op = STORE_OP_TEMPFAIL;
		goto out;
	}
	op = st->ml.format == MAILLOC_MAILDIR ?
	    store_multi_maildir(&m, error_r) : store_multi_mbox(&m, error_r);
	if (op != STORE_OP_OK)
		goto out;
	/* Stored and on disk: from here on a failure only delays their
	 * indexing (the next sync does it) or their flags. */
	if (store_sync(st, m.canon, false, NULL, &err) < 0)
		log_warning("%s: %zu messages appended to %s but not indexed "
		    "(%s); the next sync will index them", st->user, n,
		    m.canon, err);
	else {
		store_multi_find(&m, out);
		store_multi_flags(&m, out);
	}
out:
	store_multi_free(&m);
	return op;
}

/* What a copy needs of a source message. */
struct store_append_src {
	uint32_t uid;
	uint32_t flags;
	int64_t internal_date;
	uint64_t psize;
	char *keywords;		/* owned copy of the record's, or NULL */
	size_t keywords_len;
	bool found;
};

static int
store_append_sources(struct store *st, const char *folder,
    struct store_append_src *s, size_t n, const char **error_r)
{
	struct mindex_txn *txn;
	struct mindex_folder f;
	struct mindex_msg m;
	int ret;

	if (mindex_begin(st->ix, false, &txn, error_r) < 0)
		return -1;
	ret = mindex_folder_get(txn, folder, &f);
	for (size_t i = 0; i < n && ret == 1; i++) {
		if ((ret = mindex_msg_get(txn, f.id, s[i].uid, &m)) == 1) {
			s[i].found = true;
			s[i].flags = m.flags;
			s[i].internal_date = m.internal_date;
			s[i].psize = m.psize;
			if (m.keywords_len > 0) {
				s[i].keywords = xmalloc(m.keywords_len);
				memcpy(s[i].keywords, m.keywords,
				    m.keywords_len);
				s[i].keywords_len = m.keywords_len;
			}
		} else if (ret == 0)
			ret = 1;
	}
	mindex_abort(&txn);
	if (ret < 0) {
		*error_r = store_error("cannot read the index: %s",
		    mindex_last_error());
		return -1;
	}
	return 0;
}

/* The bytes of a source message: 1 read, 0 gone meanwhile, -1 error. */
static int
store_append_slurp(struct store *st, const char *folder,
    const struct store_append_src *s, struct buf *b, const char **error_r)
{
	struct store_read *r;
	unsigned char chunk[16384];
	enum store_op op;
	size_t len;
	int ret;

	buf_free(b);
	buf_init(b, s->psize > SIZE_MAX - STORE_APPEND_READ_SLACK ? SIZE_MAX :
	    (size_t)s->psize + STORE_APPEND_READ_SLACK);
	if ((op = store_read_open(st, folder, s->uid, &r, error_r)) !=
	    STORE_OP_OK)
		return op == STORE_OP_NONEXISTENT ? 0 : -1;
	while ((ret = store_read_next(r, chunk, sizeof(chunk), &len,
	    error_r)) == 1) {
		if (buf_append(b, chunk, len) < 0) {
			*error_r = "message larger than recorded";
			ret = -1;
			break;
		}
	}
	store_read_close(&r);
	return ret < 0 ? -1 : 1;
}

/* Each UID of uids as a range of its own. */
static struct store_uid_range *
store_append_ranges(const uint32_t *uids, size_t n)
{
	struct store_uid_range *r = xreallocarray(NULL, n + 1, sizeof(*r));

	for (size_t i = 0; i < n; i++)
		r[i].first = r[i].last = uids[i];
	return r;
}

/* Expunge uids from folder whatever their flags; false on failure. */
static bool
store_append_remove(struct store *st, const char *folder,
    const uint32_t *uids, size_t n, const char **error_r)
{
	struct store_uid_range *r;
	struct store_uidset set;
	uint32_t *gone;
	size_t ngone, k = 0;
	enum store_op op;

	r = store_append_ranges(uids, n);
	/* A copy stored but not indexed has no UID (0) to remove by. */
	for (size_t i = 0; i < n; i++)
		if (uids[i] != 0)
			r[k++] = r[i];
	set.ranges = r;
	set.count = k;
	op = k == 0 ? STORE_OP_OK :
	    store_expunge(st, folder, &set, true, &gone, &ngone, error_r);
	free(r);
	if (op == STORE_OP_OK && k > 0)
		free(gone);
	return op == STORE_OP_OK;
}

/* Copy the sources to folder to; on failure undo the copies made. */
static enum store_op
store_append_copy_all(struct store *st, const char *from, const char *to,
    struct store_append_src *s, size_t n, struct store_copied *out,
    const char **error_r)
{
	struct store_append a;
	struct store_appended got;
	enum store_op op = STORE_OP_OK;
	struct buf b;
	const char *err;
	int ret;

	buf_init(&b, 1);
	for (size_t i = 0; i < n && op == STORE_OP_OK; i++) {
		if (!s[i].found || (ret = store_append_slurp(st, from, &s[i],
		    &b, error_r)) == 0)
			continue;
		if (ret < 0) {
			op = STORE_OP_TEMPFAIL;
			break;
		}
		a.folder = to;
		a.msg = b.data;
		a.len = b.len;
		a.flags = s[i].flags & STORE_FLAGS_SYSTEM;
		a.internal_date = (time_t)s[i].internal_date;
		a.keywords = s[i].keywords;
		a.keywords_len = s[i].keywords_len;
		if ((op = store_append(st, &a, &got, error_r)) != STORE_OP_OK)
			break;
		out->uidvalidity = got.uidvalidity;
		out->src_uids[out->count] = s[i].uid;
		out->dst_uids[out->count++] = got.uid;
	}
	buf_free(&b);
	if (op != STORE_OP_OK && out->count > 0) {
		char why[512];

		/* The undo reuses the error buffer; keep the reason. */
		strlcpy(why, *error_r, sizeof(why));
		if (!store_append_remove(st, to, out->dst_uids, out->count,
		    &err))
			log_error("%s: a failed copy to %s left %zu messages "
			    "there: %s", st->user, to, out->count, err);
		*error_r = store_error("%s", why);
	}
	return op;
}

enum store_op
store_append_copy(struct store *st, const char *from,
    const struct store_uidset *set, const char *to, bool move,
    struct store_copied *out, const char **error_r)
{
	char cf[STORE_FOLDER_NAME_MAX + 1], ct[STORE_FOLDER_NAME_MAX + 1];
	struct store_append_src *s;
	enum store_op op;
	uint32_t *uids;
	size_t n;
	int ret;

	memset(out, 0, sizeof(*out));
	if ((op = store_folder_resolve(st, from, cf, sizeof(cf), NULL, 0,
	    error_r)) != STORE_OP_OK || (op = store_folder_resolve(st, to, ct,
	    sizeof(ct), NULL, 0, error_r)) != STORE_OP_OK)
		return op;
	if ((ret = store_folder_exists(st, ct, error_r)) <= 0) {
		if (ret == 0)
			*error_r = "no such destination folder";
		return ret == 0 ? STORE_OP_NONEXISTENT : STORE_OP_TEMPFAIL;
	}
	if ((op = store_flags_uids(st, cf, set, 0, &uids, &n, error_r)) !=
	    STORE_OP_OK || n == 0)
		return op;
	s = xcalloc(n, sizeof(*s));
	for (size_t i = 0; i < n; i++)
		s[i].uid = uids[i];
	free(uids);
	out->src_uids = xreallocarray(NULL, n, sizeof(uint32_t));
	out->dst_uids = xreallocarray(NULL, n, sizeof(uint32_t));
	op = store_append_sources(st, cf, s, n, error_r) < 0 ?
	    STORE_OP_TEMPFAIL :
	    store_append_copy_all(st, cf, ct, s, n, out, error_r);
	for (size_t i = 0; i < n; i++)
		free(s[i].keywords);
	free(s);
	/* MOVE: the originals go once every copy is in place; if they
	 * cannot, the copies go again, so nothing is there twice. */
	if (op == STORE_OP_OK && move && out->count > 0 &&
	    !store_append_remove(st, cf, out->src_uids, out->count, error_r)) {
		char why[512];
		const char *err;

		strlcpy(why, *error_r, sizeof(why));
		if (!store_append_remove(st, ct, out->dst_uids, out->count,
		    &err))
			log_error("%s: a failed move left %zu messages in both "
			    "%s and %s: %s", st->user, out->count, cf, ct,
			    err);
		*error_r = store_error("%s", why);
		op = STORE_OP_TEMPFAIL;
	}
	if (op != STORE_OP_OK)
		store_copied_free(out);
	return op;
}

void
store_copied_free(struct store_copied *c)
{
	free(c->src_uids);
	free(c->dst_uids);
	memset(c, 0, sizeof(*c));
}

/*
 * Deliveries in a batch (store_deliver_batch): what n store_deliver calls
 * would do, with the fsyncs of the directory and the index commit shared.
 */

/* One run of a batch: consecutive messages for the same folder. */
struct store_batch {
	struct store *st;
	struct store_batch_item *it;	/* borrowed: the run's items */
	size_t n;
	char canon[STORE_FOLDER_NAME_MAX + 1];
	char path[PATH_MAX];		/* Maildir directory or mbox file */
	bool *open;			/* owned: no outcome decided yet */
	char **tmp;			/* owned: Maildir names in tmp/ */
	bool *tmp_live;			/* owned: the tmp/ name still exists */
	char **fin;			/* owned: "new/NAME,U=n" once linked */
	uint32_t *uid;			/* owned: the UID fin carries */
	bool *other;			/* owned: indexed by another process */
	struct msg_info *info;		/* owned: Maildir, parsed */
	uint32_t uidvalidity;
};

static void
store_batch_init(struct store_batch *b, struct store *st,
    struct store_batch_item *it, size_t n)
{
	memset(b, 0, sizeof(*b));
	b->st = st;
	b->it = it;
	b->n = n;
	b->open = xcalloc(n, sizeof(*b->open));
	b->tmp = xcalloc(n, sizeof(*b->tmp));
	b->tmp_live = xcalloc(n, sizeof(*b->tmp_live));
	b->fin = xcalloc(n, sizeof(*b->fin));
	b->uid = xcalloc(n, sizeof(*b->uid));
	b->other = xcalloc(n, sizeof(*b->other));
	b->info = xcalloc(n, sizeof(*b->info));
	for (size_t i = 0; i < n; i++)
		b->open[i] = true;
}

static void
store_batch_free(struct store_batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		free(b->tmp[i]);
		free(b->fin[i]);
		msg_info_free(&b->info[i]);
	}
	free(b->open);
	free(b->tmp);
	free(b->tmp_live);
	free(b->fin);
	free(b->uid);
	free(b->other);
	free(b->info);
}

/* Item i's outcome is a failure, for the reason error. */
static void
store_batch_fail(struct store_batch *b, size_t i, enum store_result r,
    const char *error)
{
	b->open[i] = false;
	b->it[i].result = r;
	strlcpy(b->it[i].error, error != NULL ? error : "delivery failed",
	    sizeof(b->it[i].error));
}

/* Every item still open fails for the same reason. */
static void
store_batch_fail_open(struct store_batch *b, enum store_result r,
    const char *error)
{
	for (size_t i = 0; i < b->n; i++)
		if (b->open[i])
			store_batch_fail(b, i, r, error);
}

static void
store_batch_ok(struct store_batch *b, size_t i, uint32_t uid,
    uint32_t uidvalidity, const char *format)
{
	b->open[i] = false;
	b->it[i].result = STORE_OK;
	b->it[i].done.uid = uid;
	b->it[i].done.uidvalidity = uidvalidity;
	b->it[i].done.format = format;
	b->it[i].error[0] = '\0';
}

/* A path below the run's Maildir ("tmp/NAME", "new/NAME,U=n"). The
 * names were made below this directory: a path that does not fit is
 * refused, never cut. */
static bool
store_batch_md_path(const struct store_batch *b, char *out, size_t size,
    const char *sub, const char *name)
{
	return (size_t)snprintf(out, size, "%s/%s%s", b->path, sub, name) <
	    size;
}

/* Maildir: every message into tmp/, without fsync (see below). */
static void
store_batch_md_write(struct store_batch *b)
{
	const char *err;
	int e;

	for (size_t i = 0; i < b->n; i++) {
		if (maildir_tmp_write(b->path, b->it[i].d.msg, b->it[i].d.len,
		    false, &b->tmp[i], &err) < 0) {
			e = errno;
			store_batch_fail(b, i, fsutil_is_disk_full(e) ?
			    STORE_DISKFULL : STORE_TEMPFAIL, err);
			continue;
		}
		b->tmp_live[i] = true;
	}
}

/* Maildir: fsync the files in tmp/, writeback of all of them started
 * before waiting for any (sync_file_range), so that their data and the
 * journal commits of their inodes overlap instead of following one
 * another. A file whose fsync fails fails its message (nothing of it is
 * visible: it is only in tmp/). */
static void
store_batch_md_fsync(struct store_batch *b)
{
	char path[PATH_MAX];
	int *fd = xreallocarray(NULL, b->n, sizeof(*fd));
	int e;

	for (size_t i = 0; i < b->n; i++) {
		fd[i] = -1;
		if (!b->open[i])
			continue;
		if (!store_batch_md_path(b, path, sizeof(path), "tmp/",
		    b->tmp[i]) || (fd[i] = open(path, O_RDONLY | O_CLOEXEC |
		    O_NOFOLLOW)) < 0) {
			store_batch_fail(b, i, STORE_TEMPFAIL, store_error(
			    "cannot open %s: %s", path, strerror(errno)));
			continue;
		}
		(void)sync_file_range(fd[i], 0, 0, SYNC_FILE_RANGE_WRITE);
	}
	for (size_t i = 0; i < b->n; i++) {
		if (fd[i] < 0)
			continue;
		if (fsync(fd[i]) < 0) {
			e = errno;
			store_batch_fail(b, i, fsutil_is_disk_full(e) ?
			    STORE_DISKFULL : STORE_TEMPFAIL, store_error(
			    "fsync of %s/tmp/%s failed: %s", b->path,
			    b->tmp[i], strerror(e)));
		}
		close(fd[i]);
	}
	free(fd);
}

/* Maildir: link tmp/NAME to new/NAME,U=uid (never replacing a file; the
 * tmp/ name goes only once new/ is fsynced). A file system without hard
 * links gets maildir_tmp_to_new's rename. 0, or -1 with *error_r. */
static int
store_batch_md_link(struct store_batch *b, size_t i, uint32_t uid,
    const char **error_r)
{
	char src[PATH_MAX], dst[PATH_MAX];
	char *fin = xasprintf("new/%s,U=%u", b->tmp[i], uid);

	if (!store_batch_md_path(b, src, sizeof(src), "tmp/", b->tmp[i]) ||
	    !store_batch_md_path(b, dst, sizeof(dst), "", fin)) {
		free(fin);
		*error_r = "Maildir path too long";
		return -1;
	}
	if (link(src, dst) == 0) {
		b->fin[i] = fin;
		b->uid[i] = uid;
		return 0;
	}
	free(fin);
	if (errno != EPERM && errno != ENOSYS && errno != EOPNOTSUPP) {
		*error_r = store_error("link to %s: %s", dst, strerror(errno));
		return -1;
	}
	if (maildir_tmp_to_new(b->path, b->tmp[i], uid, false, &b->fin[i],
	    error_r) < 0)
		return -1;
	b->tmp_live[i] = false;
	b->uid[i] = uid;
	return 0;
}

/* Maildir, in the transaction: new/ fsynced once for every link of this
 * run of the transaction, then the tmp/ names go. If the fsync fails,
 * the files linked (and not indexed by another process) are unlinked
 * from new/ again and their messages fail: nothing half-done stays
 * visible. */
static int
store_batch_md_dirsync(struct store_batch *b, const char **error_r)
{
	char path[PATH_MAX];
	int e;

	if (b->st->fsync && (!store_batch_md_path(b, path, sizeof(path),
	    "new", "") || fsutil_fsync_dir(path) < 0)) {
		e = errno;
		*error_r = store_error("fsync of %s/new failed: %s", b->path,
		    strerror(e));
		for (size_t i = 0; i < b->n; i++) {
			if (b->fin[i] == NULL || b->other[i])
				continue;
			if (store_batch_md_path(b, path, sizeof(path), "",
			    b->fin[i]))
				(void)unlink(path);
			free(b->fin[i]);
			b->fin[i] = NULL;
			store_batch_fail(b, i, fsutil_is_disk_full(e) ?
			    STORE_DISKFULL : STORE_TEMPFAIL, *error_r);
		}
		return -1;
	}
	for (size_t i = 0; i < b->n; i++) {
		if (b->fin[i] == NULL || !b->tmp_live[i])
			continue;
		if (store_batch_md_path(b, path, sizeof(path), "tmp/",
		    b->tmp[i]))
			(void)unlink(path);
		b->tmp_live[i] = false;
	}
	return 0;
}

/* Maildir, a run of the transaction after MINDEX_EFULL: item i is linked
 * already. Another process's sync may have indexed it meanwhile (then
 * that record stands), or its UID may have been taken (then the file is
 * renamed to the next free one). 1 renamed, 0, -1. */
static int
store_batch_md_again(struct store_batch *b, struct mindex_txn *txn,
    const struct mindex_folder *f, size_t i, uint32_t *next,
    const char **error_r)
{
	struct maildir_name mn;
	uint32_t have;
	char *moved;
	int ret = 0;

	if (maildir_name_parse(b->fin[i] + 4, &mn) == 0 &&
	    mindex_loc_get(txn, f->id, b->fin[i] + 4, mn.base_len,
	    &have) == 1) {
		b->uid[i] = have;
		b->other[i] = true;
		if (have >= *next)
			*next = have + 1;
		return 0;
	}
	if (b->uid[i] < *next) {
		if (maildir_rename_uid(b->path, b->fin[i], *next, false,
		    &moved, error_r) < 0)
			return -1;
		free(b->fin[i]);
		b->fin[i] = moved;
		b->uid[i] = *next;
		ret = 1;
	}
	*next = b->uid[i] + 1;
	return ret;
}

/* Maildir, in the transaction: item i's record. */
static int
store_batch_md_record(struct store_batch *b, struct mindex_txn *txn,
    struct mindex_folder *f, size_t i, const char **error_r)
{
	struct maildir_name mn;
	struct mindex_msg m;
	int ret;

	store_fill_msg(&m, &b->info[i], b->it[i].d.len, b->it[i].d.received);
	m.uid = b->uid[i];
	m.location = b->fin[i];
	m.location_len = strlen(b->fin[i]);
	store_maildir_guid(b->fin[i], m.guid);
	if (maildir_name_parse(b->fin[i] + 4, &mn) < 0) {
		*error_r = "delivered file name does not parse";
		return -1;
	}
	if ((ret = mindex_msg_add(txn, f, &m)) < 0 ||
	    (ret = mindex_loc_put(txn, f->id, b->fin[i] + 4, mn.base_len,
	    b->uid[i])) < 0)
		return ret == MINDEX_EFULL ? ret : -1;
	return 0;
}

/* Maildir, in the transaction: the quota for item i (not linked yet),
 * as a single delivery checks it, with the items before it counted. */
static bool
store_batch_md_fits(struct store_batch *b, size_t i, uint64_t *qbytes)
{
	uint64_t limit = b->st->quota_limit;

	if (limit > 0 && *qbytes + b->it[i].d.len > limit) {
		store_batch_fail(b, i, STORE_OVERQUOTA, store_error("mailbox "
		    "is full: %llu of %llu bytes used",
		    (unsigned long long)*qbytes, (unsigned long long)limit));
		return false;
	}
	*qbytes += b->it[i].d.len;
	return true;
}

/* Maildir: the one write transaction of the run (run again by
 * mindex_write after MINDEX_EFULL). */
static int
store_batch_md_fn(struct mindex_txn *txn, void *ctx, const char **error_r)
{
	struct store_batch *b = ctx;
	struct mindex_folder f;
	uint64_t qbytes, qmsgs;
	uint32_t next;
	bool linked = false;
	int ret;

	if ((ret = store_folder_ensure(b->st, txn, b->canon, 0, &f,
	    error_r)) < 0)
		return ret;
	if (ret == 1 && store_maildir_uidfile_write(b->path, f.uidvalidity,
	    f.uidnext, b->st->fsync) < 0)
		log_warning("cannot write %s/loft-uidvalidity: %s", b->path,
		    strerror(errno));
	b->uidvalidity = f.uidvalidity;
	if (mindex_quota_get(txn, &qbytes, &qmsgs) < 0) {
		*error_r = "cannot read quota usage from the index";
		return -1;
	}
	next = f.uidnext;
	for (size_t i = 0; i < b->n; i++) {
		if (b->fin[i] != NULL) {
			if ((ret = store_batch_md_again(b, txn, &f, i, &next,
			    error_r)) < 0)
				return -1;
			linked = linked || ret > 0;
			if (!b->other[i])
				qbytes += b->it[i].d.len;
			continue;
		}
		if (!b->open[i] || !store_batch_md_fits(b, i, &qbytes))
			continue;
		if (next == UINT32_MAX || store_batch_md_link(b, i, next,
		    error_r) < 0) {
			if (next == UINT32_MAX)
				*error_r = "no UIDs left in the folder";
			store_batch_fail(b, i, fsutil_is_disk_full(errno) ?
			    STORE_DISKFULL : STORE_TEMPFAIL, *error_r);
			qbytes -= b->it[i].d.len;
			continue;
		}
		next++;
		linked = true;
	}
	if (linked && store_batch_md_dirsync(b, error_r) < 0)
		return -1;
	for (size_t i = 0; i < b->n; i++)
		if (b->fin[i] != NULL && !b->other[i] &&
		    (ret = store_batch_md_record(b, txn, &f, i, error_r)) < 0)
			return ret;
	return mindex_folder_put(txn, b->canon, &f);
}

static void
store_batch_maildir(struct store_batch *b)
{
	char path[PATH_MAX];
	struct stat sb;
	const char *err = NULL;
	int ret;

	if ((!store_batch_md_path(b, path, sizeof(path), "tmp", "") ||
	    stat(path, &sb) < 0) && maildir_create(b->path,
	    strcmp(b->canon, "INBOX") != 0, &err) < 0) {
		store_batch_fail_open(b, STORE_TEMPFAIL, err);
		return;
	}
	store_batch_md_write(b);
	if (b->st->fsync)
		store_batch_md_fsync(b);
	for (size_t i = 0; i < b->n; i++)
		if (b->open[i])
			msg_parse(b->it[i].d.msg, b->it[i].d.len, &b->info[i]);
	ret = mindex_write(b->st->ix, store_batch_md_fn, b, &err);
	if (err == NULL)
		err = mindex_last_error();
	for (size_t i = 0; i < b->n; i++) {
		if (b->fin[i] != NULL) {
			if (ret < 0 && !b->other[i])
				log_warning("%s: message stored as %s/%s but "
				    "not indexed (%s); the next sync will "
				    "index it", b->st->user, b->path,
				    b->fin[i], err);
			store_batch_ok(b, i, b->uid[i], b->uidvalidity,
			    "maildir");
		} else if (b->open[i])
			store_batch_fail(b, i, STORE_TEMPFAIL, err);
		if (b->tmp_live[i] && store_batch_md_path(b, path,
		    sizeof(path), "tmp/", b->tmp[i]))
			(void)unlink(path);
	}
}

/* mbox, locked: append the accepted messages (acc[0..k)) and fsync, or
 * cut the file back to its size before the first. 0 or -1 (*err_r,
 * *res_r). */
static int
store_batch_mbox_write(struct store_batch *b, int fd, const size_t *acc,
    size_t k, struct store_multi *m, enum store_result *res_r,
    const char **err_r)
{
	uint64_t data_off;
	struct stat sb;
	size_t j;
	int e = 0;

	if (fstat(fd, &sb) < 0) {
		*err_r = store_error("cannot stat %s: %s", b->path,
		    strerror(errno));
		return -1;
	}
	for (j = 0; j < k; j++) {
		const struct store_delivery *d = &b->it[acc[j]].d;

		if (mbox_append(fd, d->sender, d->received, d->msg, d->len,
		    false, &m->from[j], &data_off, &m->dlen[j], err_r) < 0) {
			e = errno;
			break;
		}
	}
	if (j == k && (!b->st->fsync || fsync(fd) == 0)) {
		if (sb.st_size == 0 && b->st->fsync &&
		    fsutil_fsync_parent(b->path) < 0)
			log_warning("%s: fsync of the directory of %s: %s",
			    b->st->user, b->path, strerror(errno));
		return 0;
	}
	if (j == k) {
		e = errno;
		*err_r = store_error("fsync of %s failed: %s", b->path,
		    strerror(e));
	}
	*res_r = fsutil_is_disk_full(e) ? STORE_DISKFULL : STORE_TEMPFAIL;
	if (ftruncate(fd, sb.st_size) < 0 || (b->st->fsync && fsync(fd) < 0))
		log_error("%s: cannot cut %s back to %llu bytes after a "
		    "failed delivery: %s", b->st->user, b->path,
		    (unsigned long long)sb.st_size, strerror(errno));
	return -1;
}

/* mbox: the quota for each in order, one lock, the appends, one fsync;
 * then one sync indexes them and their UIDs are found by offset. */
static void
store_batch_mbox(struct store_batch *b)
{
	struct store_append *a = xcalloc(b->n, sizeof(*a));
	struct store_appended *got;
	size_t *acc = xcalloc(b->n, sizeof(*acc)), k = 0;
	uint64_t bytes, msgs, limit;
	struct store_multi m;
	struct lock_mbox *lk = NULL;
	enum store_result res = STORE_TEMPFAIL;
	enum store_op op;
	const char *err;
	int fd = -1;

	/* In step first, as a delivery is: the quota counts what others
	 * appended, and the UIDs given next are above the index's. */
	if (store_sync(b->st, b->canon, false, NULL, &err) < 0 ||
	    store_quota(b->st, &bytes, &msgs, &limit, &err) < 0) {
		store_batch_fail_open(b, STORE_TEMPFAIL, err);
		free(a);
		free(acc);
		return;
	}
	for (size_t i = 0; i < b->n; i++) {
		if (limit > 0 && bytes + b->it[i].d.len > limit) {
			store_batch_fail(b, i, STORE_OVERQUOTA, store_error(
			    "mailbox is full: %llu of %llu bytes used",
			    (unsigned long long)bytes,
			    (unsigned long long)limit));
			continue;
		}
		bytes += b->it[i].d.len;
		a[k].msg = b->it[i].d.msg;
		a[k].len = b->it[i].d.len;
		acc[k++] = i;
	}
	if (k == 0)
		goto out;
	store_multi_init(&m, b->st, a, k);
	strlcpy(m.canon, b->canon, sizeof(m.canon));
	strlcpy(m.path, b->path, sizeof(m.path));
	if (store_multi_uidnext(&m, &err) < 0)
		store_batch_fail_open(b, STORE_TEMPFAIL, err);
	else if ((op = store_multi_mbox_lock(b->st, b->path, &fd, &lk,
	    &err)) != STORE_OP_OK)
		store_batch_fail_open(b, op == STORE_OP_INUSE ? STORE_LOCKED :
		    STORE_TEMPFAIL, err);
	else {
		if (store_batch_mbox_write(b, fd, acc, k, &m, &res, &err) < 0)
			store_batch_fail_open(b, res, err);
		lock_mbox_release(&lk);
		if (close(fd) < 0 && b->st->fsync)
			log_warning("%s: close %s: %s", b->st->user, b->path,
			    strerror(errno));
	}
	if (b->open[acc[0]]) {
		/* On disk: from here on a failure only delays indexing. */
		got = xcalloc(k, sizeof(*got));
		if (store_sync(b->st, b->canon, false, NULL, &err) < 0)
			log_warning("%s: %zu messages delivered to %s but not "
			    "indexed (%s); the next sync will index them",
			    b->st->user, k, b->path, err);
		else
			store_multi_find(&m, got);
		for (size_t j = 0; j < k; j++)
			store_batch_ok(b, acc[j], got[j].uid,
			    got[j].uidvalidity, "mbox");
		free(got);
	}
	store_multi_free(&m);
out:
	free(a);
	free(acc);
}

/* One run: messages for the same folder. */
static void
store_batch_run(struct store *st, struct store_batch_item *it, size_t n)
{
	struct store_batch b;
	const char *err;

	store_batch_init(&b, st, it, n);
	if (store_folder_resolve(st, it[0].d.folder, b.canon, sizeof(b.canon),
	    b.path, sizeof(b.path), &err) != STORE_OP_OK)
		store_batch_fail_open(&b, STORE_PERMFAIL, err);
	else if (st->ml.format == MAILLOC_MAILDIR)
		store_batch_maildir(&b);
	else
		store_batch_mbox(&b);
	store_batch_free(&b);
}

void
store_deliver_batch(struct store *st, struct store_batch_item *items,
    size_t n)
{
	size_t i = 0, j;

	for (i = 0; i < n; i++) {
		items[i].result = STORE_TEMPFAIL;
		memset(&items[i].done, 0, sizeof(items[i].done));
		items[i].error[0] = '\0';
	}
	/* As store_deliver: every message is fsynced in storage before
	 * the index hears of it. */
	mindex_set_lazy_meta(st->ix, true);
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n && strcmp(items[j].d.folder,
		    items[i].d.folder) == 0; j++)
			;
		store_batch_run(st, items + i, j - i);
	}
	mindex_set_lazy_meta(st->ix, false);
}
