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
 * and appends it again, with the flags and keywords of its record. The
 * message bytes are the client's, stored as they are; nothing here
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
#include <time.h>

#include "buf.h"
#include "compat/compat.h"
#include "log.h"
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
