/*
 * store_mbox.c: mbox folders and their index: delivery and sync.
 *
 * An mbox is read and written only under the mailbox lock (fcntl, then
 * dotlock, as procmail and mutt take them), so a sync never sees a file
 * half-rewritten by mutt and a delivery's offsets stay valid until its
 * record is written. The quick check (stamps unchanged) needs no lock.
 *
 * A sync knows two cases. Appended: the file is the same inode, grew, and
 * the last message it indexed is still where it was, byte for byte in its
 * first 64 KiB; then only the new tail is parsed. Anything else is a
 * rewrite: every message is found again by a fingerprint of its body and
 * Message-ID (a mail reader rewrites Status: headers, never bodies), keeps
 * its UID, and gets its new offsets; records not found are expunged and
 * messages not matched get new UIDs. File content is the user's: the
 * parsers it goes through are bounded and never trust an offset they did
 * not find themselves.
 */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "buf.h"
#include "compat/compat.h"
#include "fsutil.h"
#include "log.h"
#include "mbox.h"
#include "msg.h"
#include "store_private.h"
#include "xmalloc.h"

#define MB_TAIL_HASH_MAX 65536
/* stamp[1] of an mbox folder remembers the last indexed message. */
#define MB_TAIL_MARK 0x6d626f78u

/* Seed of the content hashes (XXH64, msg_hash64). */
#define MB_HASH_SEED 0x6c6f6674ULL

struct mb_fp_ctx {
	const unsigned char *msgid;
	size_t msgid_len;
};

static int
mb_fp_header_cb(const unsigned char *name, size_t name_len,
    const unsigned char *raw, size_t raw_len, void *ctx)
{
	struct mb_fp_ctx *c = ctx;

	if (name_len == 10 && strncasecmp((const char *)name, "Message-ID",
	    10) == 0 && c->msgid == NULL) {
		c->msgid = raw;
		c->msgid_len = raw_len;
	}
	return 0;
}

/* The fingerprint of an (unescaped) message: its body and Message-ID. */
static uint64_t
mb_fingerprint(const unsigned char *data, size_t len)
{
	struct mb_fp_ctx c = { NULL, 0 };
	size_t hdr_size = 0;
	uint64_t h;

	msg_header_iter(data, len, mb_fp_header_cb, &c, &hdr_size);
	if (hdr_size > len)
		hdr_size = len;
	h = msg_hash64(data + hdr_size, len - hdr_size, MB_HASH_SEED);
	if (c.msgid != NULL)
		h = msg_hash64(c.msgid, c.msgid_len, h);
	return h;
}

struct mb_flags_ctx {
	uint32_t flags;
	bool found;
};

static int
mb_flags_cb(const unsigned char *name, size_t name_len,
    const unsigned char *raw, size_t raw_len, void *ctx)
{
	struct mb_flags_ctx *c = ctx;
	bool xstatus;
	size_t i;

	if (name_len == 6 && strncasecmp((const char *)name, "Status", 6) == 0)
		xstatus = false;
	else if (name_len == 8 &&
	    strncasecmp((const char *)name, "X-Status", 8) == 0)
		xstatus = true;
	else
		return 0;
	c->found = true;
	for (i = name_len + 1; i < raw_len && raw[i] != '\n'; i++) {
		switch (raw[i]) {
		case 'R':
			if (!xstatus)
				c->flags |= MINDEX_F_SEEN;
			break;
		case 'A':
			if (xstatus)
				c->flags |= MINDEX_F_ANSWERED;
			break;
		case 'F':
			if (xstatus)
				c->flags |= MINDEX_F_FLAGGED;
			break;
		case 'T':
			if (xstatus)
				c->flags |= MINDEX_F_DRAFT;
			break;
		case 'D':
			if (xstatus)
				c->flags |= MINDEX_F_DELETED;
			break;
		}
	}
	return 0;
}

/* Flags from the Status: and X-Status: headers mutt and Dovecot write;
 * returns false if the message has neither. */
static bool
mb_flags(const unsigned char *data, size_t len, uint32_t *flags_r)
{
	struct mb_flags_ctx c = { 0, false };
	size_t hdr_size;

	msg_header_iter(data, len, mb_flags_cb, &c, &hdr_size);
	*flags_r = c.flags;
	return c.found;
}

/* A message found in the file, and what the sync decided for it. */
struct mb_ent {
	struct mbox_entry e;
	uint64_t fingerprint;
	uint32_t uid;		/* kept or new */
	size_t prev;		/* its entry in prev, or SIZE_MAX */
};

struct mb_sync {
	struct store *st;
	const char *folder;
	const char *path;
	struct fsutil_map map;
	struct stat sb;
	int64_t checked_ns;
	struct mindex_folder f;
	struct mb_ent *ents;
	size_t nents, alloc;
	struct store_prev *prev;
	size_t nprev;
	uint32_t prev_uidvalidity, prev_uidnext;
	bool full;
	bool delivering;	/* a delivery's look before it appends */
	size_t batch_start, batch_end;
	uint64_t end_offset;	/* sync_offset when done */
};

static int
mb_scan_cb(const struct mbox_entry *e, void *ctx)
{
	struct mb_sync *s = ctx;

	if (s->nents == s->alloc) {
		s->alloc = s->alloc == 0 ? 256 : s->alloc * 2;
		s->ents = xreallocarray(s->ents, s->alloc, sizeof(*s->ents));
	}
	memset(&s->ents[s->nents], 0, sizeof(s->ents[0]));
	s->ents[s->nents].e = *e;
	s->ents[s->nents].prev = SIZE_MAX;
	s->nents++;
	return 0;
}

/* The unescaped bytes of entry i: *data_r points into the map, or into
 * tmp when unescaping changed something. */
static void
mb_ent_data(struct mb_sync *s, size_t i, struct buf *tmp,
    const unsigned char **data_r, size_t *len_r)
{
	const struct mbox_entry *e = &s->ents[i].e;
	const unsigned char *p = s->map.data + e->data_offset;

	buf_truncate(tmp, 0);
	if (mbox_unescape(p, e->data_len, tmp) == 1) {
		*data_r = tmp->data;
		*len_r = tmp->len;
	} else {
		*data_r = p;
		*len_r = e->data_len;
	}
}

static uint64_t
mb_tail_hash(const unsigned char *data, uint64_t from, uint64_t end)
{
	uint64_t n = end - from;

	if (n > MB_TAIL_HASH_MAX)
		n = MB_TAIL_HASH_MAX;
	return msg_hash64(data + from, n, MB_HASH_SEED);
}

/* Was the file only appended to since the last sync? */
static bool
mb_only_appended(struct mb_sync *s)
{
	const struct mindex_folder *f = &s->f;
	uint64_t off = f->sync_offset, size = (uint64_t)s->sb.st_size;
	const unsigned char *d = s->map.data;

	if (f->stamp[0].ino != (uint64_t)s->sb.st_ino ||
	    f->stamp[0].dev != (uint64_t)s->sb.st_dev || size < off)
		return false;
	if (off == 0)
		return f->count == 0;
	if (f->stamp[1].dev != MB_TAIL_MARK || f->stamp[1].size >= off)
		return false;
	if (off < size && (size - off < 5 || memcmp(d + off, "From ", 5) != 0))
		return false;
	return mb_tail_hash(d, f->stamp[1].size, off) == f->stamp[1].ino;
}

static int
mb_fp_cmp(const void *a, const void *b)
{
	const struct store_prev *x = a, *y = b;

	if (x->fingerprint != y->fingerprint)
		return x->fingerprint < y->fingerprint ? -1 : 1;
	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

static int
mb_ent_uid_cmp(const void *a, const void *b)
{
	const struct mb_ent *x = a, *y = b;

	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

/* Give every entry its UID: the smallest unused previous UID with the same
 * fingerprint, or a new one after everything ever given. */
static void
mb_match(struct mb_sync *s, uint32_t uidnext)
{
	struct buf tmp;

	buf_init(&tmp, (size_t)-1);
	if (s->nprev > 1)
		qsort(s->prev, s->nprev, sizeof(*s->prev), mb_fp_cmp);
	for (size_t i = 0; i < s->nents; i++) {
		struct mb_ent *me = &s->ents[i];
		const unsigned char *data;
		size_t len, lo = 0, hi = s->nprev;

		mb_ent_data(s, i, &tmp, &data, &len);
		me->fingerprint = mb_fingerprint(data, len);
		me->prev = SIZE_MAX;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;

			if (s->prev[mid].fingerprint < me->fingerprint)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (; lo < s->nprev && s->prev[lo].fingerprint ==
		    me->fingerprint; lo++) {
			if (!s->prev[lo].used) {
				s->prev[lo].used = true;
				me->uid = s->prev[lo].uid;
				me->prev = lo;
				break;
			}
		}
	}
	for (size_t i = 0; i < s->nents; i++)
		if (s->ents[i].uid == 0)
			s->ents[i].uid = uidnext++;
	buf_free(&tmp);
	if (s->nents > 1)
		qsort(s->ents, s->nents, sizeof(*s->ents), mb_ent_uid_cmp);
}

static int
mb_folder_begin(struct mb_sync *s, struct mindex_txn *txn,
    const char **error_r)
{
	int ret = store_folder_ensure(s->st, txn, s->folder, s->prev_uidvalidity,
	    &s->f, error_r);

	/* Kept UIDs are added in increasing order from 1, so a rebuilt
	 * folder's uidnext is raised to the old one only at the end. */
	return ret < 0 ? ret : 0;
}

/* Expunge the records no message in the file matched. */
static int
mb_expunge_fn(struct mindex_txn *txn, void *ctx, const char **error_r)
{
	struct mb_sync *s = ctx;
	int ret;

	if ((ret = mb_folder_begin(s, txn, error_r)) < 0)
		return ret;
	for (size_t i = 0; i < s->nprev; i++) {
		/* A reindex reads prev from the old index: nothing of it is
		 * in the new one to expunge. */
		if (s->prev[i].used || s->st->old_ix != NULL)
			continue;
		if ((ret = mindex_msg_expunge(txn, &s->f, s->prev[i].uid)) < 0)
			return ret;
	}
	return mindex_folder_put(txn, s->folder, &s->f);
}

static int
mb_batch_fn(struct mindex_txn *txn, void *ctx, const char **error_r)
{
	struct mb_sync *s = ctx;
	struct buf tmp;
	int ret = 0;

	if ((ret = mb_folder_begin(s, txn, error_r)) < 0)
		return ret;
	buf_init(&tmp, (size_t)-1);
	for (size_t i = s->batch_start; i < s->batch_end && ret >= 0; i++) {
		struct mb_ent *me = &s->ents[i];
		struct mindex_msg m, old;
		struct msg_info info;
		const unsigned char *data;
		size_t len;
		uint32_t flags;
		bool have_flags, exists;

		mb_ent_data(s, i, &tmp, &data, &len);
		exists = mindex_msg_get(txn, s->f.id, me->uid, &old) == 1;
		msg_parse(data, len, &info);
		store_fill_msg(&m, &info, me->e.data_len,
		    me->e.from_time >= 0 ? me->e.from_time : time(NULL));
		m.uid = me->uid;
		m.fingerprint = mb_fingerprint(data, len);
		m.mbox_offset = me->e.from_offset;
		m.mbox_data_offset = me->e.data_offset;
		have_flags = mb_flags(data, len, &flags);
		if (exists) {
			/* Keep the index's flags and keywords unless the
			 * file says otherwise (mutt rewrote Status:). */
			m.flags = have_flags ? flags : old.flags;
			m.keywords = old.keywords;
			m.keywords_len = old.keywords_len;
			m.modseq = old.modseq;
			memcpy(m.guid, old.guid, sizeof(m.guid));
			if (old.keywords_len > 0) {
				struct buf kw;

				buf_init(&kw, (size_t)-1);
				buf_append(&kw, old.keywords, old.keywords_len);
				m.keywords = (const char *)kw.data;
				ret = mindex_msg_update(txn, &s->f, &m);
				buf_free(&kw);
			} else
				ret = mindex_msg_update(txn, &s->f, &m);
		} else {
			if (me->prev != SIZE_MAX)
				memcpy(m.guid, s->prev[me->prev].guid,
				    sizeof(m.guid));
			m.flags = have_flags ? flags : 0;
			ret = mindex_msg_add(txn, &s->f, &m);
		}
		msg_info_free(&info);
	}
	buf_free(&tmp);
	if (ret < 0)
		return ret == MINDEX_EFULL ? ret : -1;
	return mindex_folder_put(txn, s->folder, &s->f);
}

/* The last indexed message (by offset), for the appended check. */
static void
mb_set_tail(struct mb_sync *s, struct mindex_folder *f)
{
	uint64_t last = 0;
	bool any = false;

	for (size_t i = 0; i < s->nents; i++) {
		if (!any || s->ents[i].e.from_offset > last)
			last = s->ents[i].e.from_offset;
		any = true;
	}
	if (!any) {
		if (s->full)
			memset(&f->stamp[1], 0, sizeof(f->stamp[1]));
		return;
	}
	f->stamp[1].dev = MB_TAIL_MARK;
	f->stamp[1].size = last;
	f->stamp[1].ino = mb_tail_hash(s->map.data, last, s->end_offset);
}

static int
mb_finish_fn(struct mindex_txn *txn, void *ctx, const char **error_r)
{
	struct mb_sync *s = ctx;
	int ret;

	if ((ret = mb_folder_begin(s, txn, error_r)) < 0)
		return ret;
	store_stamp_of(&s->sb, s->checked_ns, &s->f.stamp[0]);
	s->f.sync_offset = s->end_offset;
	if (s->prev_uidnext > s->f.uidnext)
		s->f.uidnext = s->prev_uidnext;
	mb_set_tail(s, &s->f);
	return mindex_folder_put(txn, s->folder, &s->f);
}

static int
mb_read_folder(struct mb_sync *s, bool *have_r, const char **error_r)
{
	struct mindex_txn *txn;
	int ret;

	if (mindex_begin(s->st->ix, false, &txn, error_r) < 0)
		return -1;
	ret = mindex_folder_get(txn, s->folder, &s->f);
	mindex_abort(&txn);
	if (ret < 0) {
		*error_r = "cannot read the index";
		return -1;
	}
	*have_r = ret == 1;
	return 0;
}

/* The sync proper, with fd open and locked. */
static int
mb_sync_locked(struct mb_sync *s, int fd, bool force, const char **error_r)
{
	bool have;
	uint64_t start;
	int ret = 0;

	s->checked_ns = store_now_ns();
	if (fstat(fd, &s->sb) < 0 || fsutil_map_fd(fd, &s->map) < 0) {
		*error_r = store_error("cannot read %s: %s", s->path,
		    strerror(errno));
		return -1;
	}
	if (mb_read_folder(s, &have, error_r) < 0)
		return -1;
	s->full = force || !have || !mb_only_appended(s);
	start = s->full ? 0 : s->f.sync_offset;
	s->end_offset = (uint64_t)s->sb.st_size;
	if (s->map.len > 0 && mbox_scan(s->map.data, s->map.len, start,
	    mb_scan_cb, s) < 0) {
		/* Not an mbox (or not any more where we left it): index
		 * nothing rather than guess at message boundaries. */
		log_warning("%s is not in mbox format; its messages are not "
		    "indexed", s->path);
		s->nents = 0;
		s->full = true;
	}
	if (!s->full && s->nents == 0) {
		struct mindex_stamp now;

		/* Only the time stamp moved (our own last append, most
		 * likely). While the file is too fresh for its stamp to be
		 * trusted, recording it would not spare the next look, so
		 * spare this one the commit; once it has settled, record
		 * it so that later looks take the quick path. Before a
		 * delivery, never: its own commit records the stamp after
		 * its append (a commit, and its sync, a message fewer). */
		store_stamp_of(&s->sb, s->checked_ns, &now);
		if (s->delivering || !store_stamp_settled(&now))
			return 0;
	}
	if (s->full) {
		struct mindex *src = s->st->old_ix != NULL ? s->st->old_ix :
		    s->st->ix;

		if (store_prev_collect(src, s->folder, &s->prev, &s->nprev,
		    &s->prev_uidvalidity, &s->prev_uidnext, error_r) < 0)
			return -1;
		if (s->st->old_ix == NULL)
			s->prev_uidvalidity = 0;
		mb_match(s, have ? s->f.uidnext : s->prev_uidnext);
		ret = mindex_write(s->st->ix, mb_expunge_fn, s, error_r);
	} else {
		for (size_t i = 0; i < s->nents; i++)
			s->ents[i].uid = s->f.uidnext + (uint32_t)i;
	}
	for (s->batch_start = 0; ret == 0 && s->batch_start < s->nents;
	    s->batch_start = s->batch_end) {
		s->batch_end = s->batch_start + STORE_BATCH;
		if (s->batch_end > s->nents)
			s->batch_end = s->nents;
		ret = mindex_write(s->st->ix, mb_batch_fn, s, error_r);
	}
	if (ret == 0)
		ret = mindex_write(s->st->ix, mb_finish_fn, s, error_r);
	return ret;
}

static void
mb_sync_free(struct mb_sync *s)
{
	fsutil_unmap(&s->map);
	free(s->ents);
	free(s->prev);
	s->ents = NULL;
	s->prev = NULL;
	s->nents = s->alloc = s->nprev = 0;
}

static int
mb_lock(struct store *st, int fd, const char *path, struct lock_mbox **lk,
    const char **error_r)
{
	int ret = lock_mbox_acquire(fd, path, &st->lock, lk, error_r);
	struct stat sb;
	uint64_t size;

	if (ret == LOCK_TIMEOUT)
		*error_r = store_error("cannot lock %s: timed out", path);
	if (ret != 0 || !lock_mbox_recovered(*lk, &size))
		return ret;
	/* A loft process died holding the lock, maybe half-way through an
	 * append that was never acknowledged: cut the file back to the
	 * size it noted before writing, so no reader sees half a message
	 * (and the MTA's retry does not leave a second copy). */
	if (fstat(fd, &sb) == 0 && (uint64_t)sb.st_size > size) {
		if (ftruncate(fd, (off_t)size) < 0 || fsync(fd) < 0) {
			*error_r = store_error("cannot cut back %s: %s", path,
			    strerror(errno));
			lock_mbox_release(lk);
			return -1;
		}
		log_warning("%s: removed %llu bytes left by a delivery that "
		    "was killed while writing", path,
		    (unsigned long long)((uint64_t)sb.st_size - size));
	}
	return 0;
}

int
store_mbox_sync(struct store *st, const char *folder, const char *path,
    bool force, bool *exists_r, const char **error_r)
{
	struct mb_sync s;
	struct lock_mbox *lk = NULL;
	struct stat sb;
	bool have;
	int fd, ret;

	memset(&s, 0, sizeof(s));
	s.st = st;
	s.folder = folder;
	s.path = path;
	*exists_r = stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
	if (!*exists_r)
		return store_folder_forget(st, folder, error_r);
	if (mb_read_folder(&s, &have, error_r) < 0)
		return -1;
	if (!force && have && s.f.sync_offset == (uint64_t)sb.st_size) {
		struct mindex_stamp now;

		store_stamp_of(&sb, store_now_ns(), &now);
		if (store_stamp_same(&s.f.stamp[0], &now))
			return 0;
	}
	/* Read-write only because fcntl write locks need it. */
	fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		*error_r = store_error("cannot open %s: %s", path,
		    strerror(errno));
		return -1;
	}
	if ((ret = mb_lock(st, fd, path, &lk, error_r)) == 0) {
		ret = mb_sync_locked(&s, fd, force, error_r);
		lock_mbox_release(&lk);
	}
	mb_sync_free(&s);
	close(fd);
	return ret < 0 ? -1 : 0;
}

/*
 * Delivery.
 */
struct mb_deliver {
	struct store *st;
	const struct store_delivery *d;
	struct msg_info info;
	uint64_t from_off, data_off, data_len, end;
	struct stat sb;
	uint32_t uid, uidvalidity;
	const unsigned char *file;	/* the mapped file, after the append */
	/* The message as a reader gets it back: mbox_append ends a message
	 * that lacks a final newline with one, so sizes and the fingerprint
	 * a later rescan computes must count it too. */
	const unsigned char *stored;
	size_t stored_len;
};

static int
mb_deliver_quota(struct store *st, size_t len, const char **error_r)
{
	struct mindex_txn *txn;
	uint64_t bytes, msgs;
	int ret;

	if (st->quota_limit == 0)
		return 0;
	if (mindex_begin(st->ix, false, &txn, error_r) < 0)
		return -1;
	ret = mindex_quota_get(txn, &bytes, &msgs);
	mindex_abort(&txn);
	if (ret < 0) {
		*error_r = "cannot read quota usage from the index";
		return -1;
	}
	if (bytes + len > st->quota_limit) {
		*error_r = store_error("mailbox is full: %llu of %llu bytes used",
		    (unsigned long long)bytes,
		    (unsigned long long)st->quota_limit);
		return 1;
	}
	return 0;
}

static int
mb_deliver_fn(struct mindex_txn *txn, void *ctx, const char **error_r)
{
	struct mb_deliver *c = ctx;
	struct mindex_folder f;
	struct mindex_msg m;
	int ret;

	if ((ret = store_folder_ensure(c->st, txn, c->d->folder, 0, &f,
	    error_r)) < 0)
		return ret;
	c->uid = f.uidnext;
	c->uidvalidity = f.uidvalidity;
	store_fill_msg(&m, &c->info, c->data_len, c->d->received);
	m.uid = c->uid;
	m.fingerprint = mb_fingerprint(c->stored, c->stored_len);
	m.mbox_offset = c->from_off;
	m.mbox_data_offset = c->data_off;
	if ((ret = mindex_msg_add(txn, &f, &m)) < 0)
		return ret;
	if (f.sync_offset == c->from_off) {
		/* Nothing unindexed lies before our message. */
		store_stamp_of(&c->sb, store_now_ns(), &f.stamp[0]);
		f.sync_offset = c->end;
		f.stamp[1].dev = MB_TAIL_MARK;
		f.stamp[1].size = c->from_off;
		f.stamp[1].ino = mb_tail_hash(c->file, c->from_off, c->end);
	}
	return mindex_folder_put(txn, c->d->folder, &f);
}

static enum store_result
mb_deliver_locked(struct store *st, int fd, const char *path,
    const struct store_delivery *d, struct store_delivered *out,
    const char **error_r)
{
	struct mb_sync s;
	struct mb_deliver c;
	struct fsutil_map map;
	struct buf nl;
	int ret;

	memset(&s, 0, sizeof(s));
	s.st = st;
	s.folder = d->folder;
	s.path = path;
	s.delivering = true;
	ret = mb_sync_locked(&s, fd, false, error_r);
	mb_sync_free(&s);
	if (ret < 0)
		return STORE_TEMPFAIL;
	if ((ret = mb_deliver_quota(st, d->len, error_r)) != 0)
		return ret > 0 ? STORE_OVERQUOTA : STORE_TEMPFAIL;
	memset(&c, 0, sizeof(c));
	c.st = st;
	c.d = d;
	if (mbox_append(fd, d->sender, d->received, d->msg, d->len, st->fsync,
	    &c.from_off, &c.data_off, &c.data_len, error_r) < 0)
		return fsutil_is_disk_full(errno) ? STORE_DISKFULL :
		    STORE_TEMPFAIL;
	/* The message is on disk: from here on, failing to index it only
	 * delays its indexing until the next sync. */
	if (fstat(fd, &c.sb) < 0 || fsutil_map_fd(fd, &map) < 0) {
		log_warning("%s: %s: cannot index delivered message: %s",
		    st->user, path, strerror(errno));
		return STORE_OK;
	}
	c.end = (uint64_t)c.sb.st_size;
	c.file = map.data;
	buf_init(&nl, (size_t)-1);
	c.stored = d->msg;
	c.stored_len = d->len;
	if (d->len > 0 && d->msg[d->len - 1] != '\n') {
		buf_append(&nl, d->msg, d->len);
		buf_append_byte(&nl, '\n');
		c.stored = nl.data;
		c.stored_len = nl.len;
	}
	msg_parse(c.stored, c.stored_len, &c.info);
	if (mindex_write(st->ix, mb_deliver_fn, &c, error_r) < 0)
		log_warning("%s: message appended to %s but not indexed (%s);"
		    " the next sync will index it", st->user, path, *error_r);
	msg_info_free(&c.info);
	buf_free(&nl);
	fsutil_unmap(&map);
	out->uid = c.uid;
	out->uidvalidity = c.uidvalidity;
	return STORE_OK;
}

enum store_result
store_mbox_deliver(struct store *st, const char *path,
    const struct store_delivery *d, struct store_delivered *out,
    const char **error_r)
{
	struct lock_mbox *lk = NULL;
	enum store_result res;
	char dir[PATH_MAX];
	char *slash;
	int fd, ret;

	if (strlcpy(dir, path, sizeof(dir)) < sizeof(dir) &&
	    (slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if (fsutil_mkdir_p(dir, 0700) < 0) {
			*error_r = store_error("cannot create %s: %s", dir,
			    strerror(errno));
			return STORE_TEMPFAIL;
		}
	}
	fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0) {
		*error_r = store_error("cannot open %s: %s", path,
		    strerror(errno));
		return fsutil_is_disk_full(errno) ? STORE_DISKFULL :
		    STORE_TEMPFAIL;
	}
	ret = mb_lock(st, fd, path, &lk, error_r);
	if (ret < 0) {
		close(fd);
		return ret == LOCK_TIMEOUT ? STORE_LOCKED : STORE_TEMPFAIL;
	}
	res = mb_deliver_locked(st, fd, path, d, out, error_r);
	lock_mbox_release(&lk);
	if (close(fd) < 0 && res == STORE_OK && st->fsync) {
		*error_r = store_error("close %s: %s", path, strerror(errno));
		log_warning("%s", *error_r);
	}
	return res;
}
