/*
 * pop3_mailbox.c: the INBOX of one POP3 session: snapshot numbering,
 * UIDLs, message reading in bounded chunks (Maildir files; mbox under the
 * lock, mboxrd un-escaped on the fly) and the UPDATE-state deletion.
 * Trusts the user record and the configuration; message indexes come from
 * the session, which has range-checked them (they are checked again here
 * and out of range is a bug).
 */
#include "config.h"

#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compat/compat.h"
#include "conf.h"
#include "fsutil.h"
#include "lock.h"
#include "log.h"
#include "mailloc.h"
#include "mbox.h"
#include "mbox_rewrite.h"
#include "mindex.h"
#include "store.h"
#include "user.h"
#include "xmalloc.h"
#include "pop3_mailbox.h"

#define POP3_MAILBOX_LOCK_FILE	"pop3.lock"
#define POP3_MAILBOX_FOLDER	"INBOX"

struct pop3_mailbox_ent {
	uint32_t uid;
	uint64_t vsize;
};

struct pop3_mailbox {
	struct store *st;		/* owned; NULL while released */
	struct user *user;		/* owned copy, to open st again */
	int lock_fd;			/* pop3.lock, flock held */
	enum mailloc_format format;
	char path[PATH_MAX];		/* Maildir dir or mbox file */
	uint32_t uidvalidity;
	struct pop3_mailbox_ent *ents;	/* owned: the snapshot */
	unsigned count;
	struct pop3_mailbox_msg *open_msg;	/* borrowed, at most one */
};

/* What a message's index record says about where it is. */
struct pop3_mailbox_loc {
	char location[MINDEX_KEY_MAX + 64];	/* maildir */
	uint64_t mbox_offset;			/* mbox: the From_ line */
	uint64_t data_offset;			/* mbox: first header byte */
	uint64_t psize;				/* mbox: escaped bytes */
};

/* mboxrd un-escaping as a byte state machine, so that a line split over
 * two chunks is handled exactly like one that is not. */
struct pop3_unescape {
	bool matching;		/* at a line start, inside ^>+From  */
	uint64_t gt;		/* '>' seen in the candidate prefix */
	unsigned k;		/* bytes of "From " matched after them */
	uint64_t fl_gt;		/* to emit: '>' ... */
	unsigned fl_pos, fl_k;	/* ... then "From "[fl_pos..fl_k) */
	bool have_held;		/* a byte to process after the flush */
	unsigned char held;
};

struct pop3_mailbox_msg {
	struct pop3_mailbox *mb;	/* borrowed */
	int fd;
	uint64_t pos, end;		/* mbox: file offsets still to read */
	struct pop3_unescape un;
	unsigned char raw[16384];	/* mbox: bytes read, not yet consumed */
	size_t raw_pos, raw_len;
	struct lock_opts lock;
};

static char pop3_mailbox_errbuf[512];

static const char *
pop3_mailbox_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static const char *
pop3_mailbox_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(pop3_mailbox_errbuf, sizeof(pop3_mailbox_errbuf), fmt, ap);
	va_end(ap);
	return pop3_mailbox_errbuf;
}

/* Returns 0 locked, 1 held by another session, -1 error. */
static int
pop3_mailbox_lock(struct pop3_mailbox *mb, const char **error_r)
{
	const struct mailloc *ml = store_location(mb->st);
	char path[PATH_MAX];

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", ml->index_dir,
	    POP3_MAILBOX_LOCK_FILE) >= sizeof(path)) {
		*error_r = "lock file path too long";
		return -1;
	}
	mb->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (mb->lock_fd < 0) {
		*error_r = pop3_mailbox_error("cannot open %s: %s", path,
		    strerror(errno));
		return -1;
	}
	if (flock(mb->lock_fd, LOCK_EX | LOCK_NB) == 0)
		return 0;
	if (errno == EWOULDBLOCK)
		return 1;
	*error_r = pop3_mailbox_error("cannot lock %s: %s", path,
	    strerror(errno));
	return -1;
}

struct pop3_mailbox_snap {
	struct pop3_mailbox_ent *ents;
	size_t count, alloc;
};

static int
pop3_mailbox_snap_cb(const struct mindex_msg *m, void *ctx)
{
	struct pop3_mailbox_snap *sn = ctx;

	if (sn->count == UINT_MAX - 1)
		return 1;	/* numbering is unsigned; the rest wait */
	if (sn->count == sn->alloc) {
		sn->alloc = sn->alloc == 0 ? 64 : sn->alloc * 2;
		sn->ents = xreallocarray(sn->ents, sn->alloc,
		    sizeof(*sn->ents));
	}
	sn->ents[sn->count].uid = m->uid;
	/* As RETR sends it: with the CRLF it adds to end the last line. */
	sn->ents[sn->count].vsize = m->vsize +
	    ((m->cache_flags & MINDEX_C_NO_FINAL_LF) != 0 ? 2 : 0);
	sn->count++;
	return 0;
}

static int
pop3_mailbox_snapshot(struct pop3_mailbox *mb, const char **error_r)
{
	struct pop3_mailbox_snap sn = { NULL, 0, 0 };
	struct mindex_txn *txn;
	struct mindex_folder f;
	int ret;

	if (mindex_begin(store_index(mb->st), false, &txn, error_r) < 0)
		return -1;
	ret = mindex_folder_get(txn, POP3_MAILBOX_FOLDER, &f);
	if (ret == 1) {
		mb->uidvalidity = f.uidvalidity;
		ret = mindex_msg_iter(txn, f.id, 1, pop3_mailbox_snap_cb, &sn);
	}
	mindex_abort(&txn);
	if (ret < 0) {
		free(sn.ents);
		*error_r = pop3_mailbox_error("cannot read the index: %s",
		    mindex_last_error());
		return -1;
	}
	mb->ents = sn.ents;
	mb->count = (unsigned)sn.count;
	return 0;
}

int
pop3_mailbox_open(const struct user *u, struct pop3_mailbox **mb_r,
    const char **error_r)
{
	struct pop3_mailbox *mb = xcalloc(1, sizeof(*mb));
	int ret;

	*mb_r = NULL;
	mb->lock_fd = -1;
	mb->user = user_dup(u);
	if (store_open(u, &mb->st, error_r) < 0) {
		pop3_mailbox_free(&mb);
		return -1;
	}
	mb->format = store_location(mb->st)->format;
	if ((ret = pop3_mailbox_lock(mb, error_r)) != 0 ||
	    store_folder_path(mb->st, POP3_MAILBOX_FOLDER, mb->path,
	    sizeof(mb->path), error_r) < 0 ||
	    store_sync(mb->st, POP3_MAILBOX_FOLDER, false, NULL,
	    error_r) < 0 || pop3_mailbox_snapshot(mb, error_r) < 0) {
		pop3_mailbox_free(&mb);
		return ret == 1 ? 1 : -1;
	}
	*mb_r = mb;
	return 0;
}

void
pop3_mailbox_free(struct pop3_mailbox **mbp)
{
	struct pop3_mailbox *mb = *mbp;

	if (mb == NULL)
		return;
	if (mb->open_msg != NULL)
		log_panic("pop3_mailbox_free: a message is still open");
	store_close(&mb->st);
	if (mb->lock_fd >= 0)
		close(mb->lock_fd);	/* releases the flock */
	user_free(&mb->user);
	free(mb->ents);
	free(mb);
	*mbp = NULL;
}

void
pop3_mailbox_release(struct pop3_mailbox *mb)
{
	if (mb->open_msg == NULL)
		store_close(&mb->st);
}

/* The store, opened again if it was released. */
static int
pop3_mailbox_store(struct pop3_mailbox *mb, const char **error_r)
{
	if (mb->st != NULL)
		return 0;
	return store_open(mb->user, &mb->st, error_r);
}

unsigned
pop3_mailbox_count(const struct pop3_mailbox *mb)
{
	return mb->count;
}

static const struct pop3_mailbox_ent *
pop3_mailbox_ent(const struct pop3_mailbox *mb, unsigned i)
{
	if (i >= mb->count)
		log_panic("pop3_mailbox: message %u of %u", i, mb->count);
	return &mb->ents[i];
}

uint64_t
pop3_mailbox_vsize(const struct pop3_mailbox *mb, unsigned i)
{
	return pop3_mailbox_ent(mb, i)->vsize;
}

uint32_t
pop3_mailbox_uid(const struct pop3_mailbox *mb, unsigned i)
{
	return pop3_mailbox_ent(mb, i)->uid;
}

void
pop3_mailbox_uidl(const struct pop3_mailbox *mb, unsigned i,
    char out[POP3_UIDL_LEN + 1])
{
	snprintf(out, POP3_UIDL_LEN + 1, "%08x%08x", mb->uidvalidity,
	    pop3_mailbox_ent(mb, i)->uid);
}

/* Where uid is now: 1 found, 0 gone from the index, -1 error. */
static int
pop3_mailbox_locate(struct pop3_mailbox *mb, uint32_t uid,
    struct pop3_mailbox_loc *loc_r, const char **error_r)
{
	struct mindex_txn *txn;
	struct mindex_folder f;
	struct mindex_msg m;
	int ret;

	if (mindex_begin(store_index(mb->st), false, &txn, error_r) < 0)
		return -1;
	ret = mindex_folder_get(txn, POP3_MAILBOX_FOLDER, &f);
	if (ret == 1)
		ret = mindex_msg_get(txn, f.id, uid, &m);
	if (ret == 1) {
		if (strlcpy(loc_r->location, m.location,
		    sizeof(loc_r->location)) >= sizeof(loc_r->location))
			ret = -1;
		loc_r->mbox_offset = m.mbox_offset;
		loc_r->data_offset = m.mbox_data_offset;
		loc_r->psize = m.psize;
	}
	mindex_abort(&txn);
	if (ret < 0)
		*error_r = pop3_mailbox_error("cannot read the index: %s",
		    mindex_last_error());
	return ret;
}

/* Open the Maildir file of uid; after ENOENT (another reader renamed it
 * to change flags, or moved it from new/ to cur/) sync and look again. */
static int
pop3_mailbox_open_maildir(struct pop3_mailbox *mb, uint32_t uid, int *fd_r,
    const char **error_r)
{
	struct pop3_mailbox_loc loc;
	char path[PATH_MAX];
	int ret;

	for (int attempt = 0; attempt < 2; attempt++) {
		if (attempt > 0 && store_sync(mb->st, POP3_MAILBOX_FOLDER,
		    true, NULL, error_r) < 0)
			return -1;
		if ((ret = pop3_mailbox_locate(mb, uid, &loc, error_r)) < 0)
			return -1;
		if (ret == 0)
			break;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", mb->path,
		    loc.location) >= sizeof(path)) {
			*error_r = "message path too long";
			return -1;
		}
		if ((*fd_r = open(path, O_RDONLY | O_CLOEXEC)) >= 0)
			return 0;
		if (errno != ENOENT) {
			*error_r = pop3_mailbox_error("cannot open %s: %s",
			    path, strerror(errno));
			return -1;
		}
	}
	*error_r = "message is no longer in the mailbox";
	return -1;
}

static int
pop3_mailbox_lock_opts(struct lock_opts *o, const char **error_r)
{
	char **items = conf_list("mailbox_delivery_lock", NULL);
	int ret = lock_methods_parse(items, &o->methods, error_r);

	conf_list_free(&items);
	o->attempts = (unsigned)conf_int("deliver_lock_attempts");
	o->delay_ms = (unsigned)(conf_time("deliver_lock_delay") * 1000);
	o->stale_secs = (unsigned)conf_time("stale_lock_time");
	return ret;
}

/* pread from the mbox under its lock (held for this read only). */
static int
pop3_mailbox_mbox_pread(struct pop3_mailbox_msg *m, unsigned char *buf,
    size_t size, uint64_t off, size_t *len_r, const char **error_r)
{
	struct lock_mbox *lk;
	ssize_t n;
	int ret;

	ret = lock_mbox_acquire(m->fd, m->mb->path, &m->lock, &lk, error_r);
	if (ret != 0) {
		if (ret == LOCK_TIMEOUT)
			*error_r = "mailbox is locked";
		return -1;
	}
	n = pread(m->fd, buf, size, (off_t)off);
	if (n < 0)
		*error_r = pop3_mailbox_error("cannot read %s: %s",
		    m->mb->path, strerror(errno));
	lock_mbox_release(&lk);
	if (n < 0)
		return -1;
	*len_r = (size_t)n;
	return 0;
}

static int
pop3_mailbox_open_mbox(struct pop3_mailbox_msg *m, uint32_t uid,
    const char **error_r)
{
	struct pop3_mailbox_loc loc;
	unsigned char from[5];
	size_t n;
	int ret;

	if (pop3_mailbox_lock_opts(&m->lock, error_r) < 0)
		return -1;
	if ((ret = pop3_mailbox_locate(m->mb, uid, &loc, error_r)) <= 0) {
		if (ret == 0)
			*error_r = "message is no longer in the mailbox";
		return -1;
	}
	/* fcntl's write lock needs a descriptor open for writing. */
	if ((m->fd = open(m->mb->path, O_RDWR | O_CLOEXEC)) < 0) {
		*error_r = pop3_mailbox_error("cannot open %s: %s",
		    m->mb->path, strerror(errno));
		return -1;
	}
	/* The offsets are from the index: check they still fit the file
	 * (mutt may have rewritten it since). */
	if (pop3_mailbox_mbox_pread(m, from, sizeof(from), loc.mbox_offset,
	    &n, error_r) < 0)
		return -1;
	if (n != sizeof(from) || memcmp(from, "From ", 5) != 0) {
		*error_r = "mailbox changed; message not found where indexed";
		return -1;
	}
	m->pos = loc.data_offset;
	m->end = loc.data_offset + loc.psize;
	m->un.matching = true;
	return 0;
}

int
pop3_mailbox_msg_open(struct pop3_mailbox *mb, unsigned i,
    struct pop3_mailbox_msg **m_r, const char **error_r)
{
	struct pop3_mailbox_msg *m;
	uint32_t uid = pop3_mailbox_ent(mb, i)->uid;
	int ret;

	if (mb->open_msg != NULL)
		log_panic("pop3_mailbox_msg_open: one is already open");
	if (pop3_mailbox_store(mb, error_r) < 0)
		return -1;
	m = xcalloc(1, sizeof(*m));
	m->mb = mb;
	m->fd = -1;
	if (mb->format == MAILLOC_MAILDIR)
		ret = pop3_mailbox_open_maildir(mb, uid, &m->fd, error_r);
	else
		ret = pop3_mailbox_open_mbox(m, uid, error_r);
	if (ret < 0) {
		if (m->fd >= 0)
			close(m->fd);
		free(m);
		return -1;
	}
	mb->open_msg = m;
	*m_r = m;
	return 0;
}

static void
pop3_unescape_flush(struct pop3_unescape *un)
{
	un->fl_gt = un->gt;
	un->fl_pos = 0;
	un->fl_k = un->k;
	un->gt = 0;
	un->k = 0;
	un->matching = false;
}

/* Feed one byte c; false: c was not taken (flush pending first). */
static void
pop3_unescape_byte(struct pop3_unescape *un, unsigned char c)
{
	static const char from[] = "From ";

	if (!un->matching) {
		un->held = c;
		un->have_held = true;
		return;
	}
	if (un->k == 0 && c == '>') {
		un->gt++;
		return;
	}
	if (un->gt > 0 && (unsigned char)from[un->k] == c) {
		if (++un->k == 5) {
			/* ^>+From : one '>' less. */
			un->gt--;
			pop3_unescape_flush(un);
		}
		return;
	}
	pop3_unescape_flush(un);
	un->held = c;
	un->have_held = true;
}

/* Emit what the state holds into out; returns bytes written. */
static size_t
pop3_unescape_drain(struct pop3_unescape *un, unsigned char *out,
    size_t size)
{
	size_t n = 0;

	while (n < size && un->fl_gt > 0) {
		out[n++] = '>';
		un->fl_gt--;
	}
	while (n < size && un->fl_pos < un->fl_k)
		out[n++] = (unsigned char)"From "[un->fl_pos++];
	if (n < size && un->fl_gt == 0 && un->fl_pos == un->fl_k &&
	    un->have_held) {
		out[n++] = un->held;
		un->have_held = false;
		if (un->held == '\n')
			un->matching = true;
	}
	return n;
}

static bool
pop3_unescape_pending(const struct pop3_unescape *un)
{
	return un->fl_gt > 0 || un->fl_pos < un->fl_k || un->have_held;
}

static int
pop3_mailbox_read_mbox(struct pop3_mailbox_msg *m, unsigned char *buf,
    size_t size, size_t *len_r, const char **error_r)
{
	size_t n = 0, got;

	while (n < size) {
		if (pop3_unescape_pending(&m->un)) {
			n += pop3_unescape_drain(&m->un, buf + n, size - n);
			continue;
		}
		if (m->raw_pos == m->raw_len) {
			if (m->pos == m->end)
				break;
			got = m->end - m->pos < sizeof(m->raw) ?
			    (size_t)(m->end - m->pos) : sizeof(m->raw);
			if (pop3_mailbox_mbox_pread(m, m->raw, got, m->pos,
			    &got, error_r) < 0)
				return -1;
			if (got == 0) {
				*error_r = "mailbox shrank while reading";
				return -1;
			}
			m->pos += got;
			m->raw_pos = 0;
			m->raw_len = got;
		}
		pop3_unescape_byte(&m->un, m->raw[m->raw_pos++]);
	}
	if (n == 0 && m->pos == m->end && m->raw_pos == m->raw_len) {
		/* A prefix like ">>Fro" at the very end is message text. */
		pop3_unescape_flush(&m->un);
		n = pop3_unescape_drain(&m->un, buf, size);
	}
	*len_r = n;
	return n > 0 ? 1 : 0;
}

int
pop3_mailbox_msg_read(struct pop3_mailbox_msg *m, unsigned char *buf,
    size_t size, size_t *len_r, const char **error_r)
{
	ssize_t n;

	if (m->mb->format == MAILLOC_MBOX)
		return pop3_mailbox_read_mbox(m, buf, size, len_r, error_r);
	do
		n = read(m->fd, buf, size);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		*error_r = pop3_mailbox_error("cannot read message: %s",
		    strerror(errno));
		return -1;
	}
	*len_r = (size_t)n;
	return n > 0 ? 1 : 0;
}

void
pop3_mailbox_msg_close(struct pop3_mailbox_msg **mp)
{
	struct pop3_mailbox_msg *m = *mp;

	if (m == NULL)
		return;
	if (m->fd >= 0)
		close(m->fd);
	m->mb->open_msg = NULL;
	free(m);
	*mp = NULL;
}

struct pop3_mailbox_expunge_ctx {
	struct pop3_mailbox *mb;
	const bool *deleted;
};

static int
pop3_mailbox_expunge_one(struct mindex_txn *txn, struct mindex_folder *f,
    uint32_t uid)
{
	struct mindex_msg m;
	char key[MINDEX_KEY_MAX + 1];
	const char *base, *colon;
	size_t len;
	int ret;

	if ((ret = mindex_msg_get(txn, f->id, uid, &m)) <= 0)
		return ret;
	/* The locs key is the base name: "new/NAME" or "cur/NAME:2,FS".
	 * Copied, because the record dies with the first change. */
	base = m.location_len > 4 ? m.location + 4 : "";
	colon = strchr(base, ':');
	len = colon != NULL ? (size_t)(colon - base) : strlen(base);
	if (len == 0 || len >= sizeof(key))
		return -1;
	memcpy(key, base, len);
	key[len] = '\0';
	if ((ret = mindex_loc_delete(txn, f->id, key, len)) < 0)
		return ret;
	return mindex_msg_expunge(txn, f, uid);
}

static int
pop3_mailbox_expunge_fn(struct mindex_txn *txn, void *ctx,
    const char **error_r)
{
	struct pop3_mailbox_expunge_ctx *c = ctx;
	struct mindex_folder f;
	int ret;

	if ((ret = mindex_folder_get(txn, POP3_MAILBOX_FOLDER, &f)) <= 0) {
		*error_r = "INBOX is gone from the index";
		return -1;
	}
	for (unsigned i = 0; i < c->mb->count; i++) {
		if (!c->deleted[i])
			continue;
		ret = pop3_mailbox_expunge_one(txn, &f, c->mb->ents[i].uid);
		if (ret < 0)
			return ret;
	}
	return mindex_folder_put(txn, POP3_MAILBOX_FOLDER, &f);
}

/* Unlink the file of uid wherever it is now; gone already is fine. */
static int
pop3_mailbox_unlink(struct pop3_mailbox *mb, uint32_t uid,
    const char **error_r)
{
	struct pop3_mailbox_loc loc;
	char path[PATH_MAX];
	int ret;

	for (int attempt = 0; attempt < 2; attempt++) {
		if (attempt > 0 && store_sync(mb->st, POP3_MAILBOX_FOLDER,
		    true, NULL, error_r) < 0)
			return -1;
		if ((ret = pop3_mailbox_locate(mb, uid, &loc, error_r)) <= 0)
			return ret;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", mb->path,
		    loc.location) >= sizeof(path)) {
			*error_r = "message path too long";
			return -1;
		}
		if (unlink(path) == 0)
			return 0;
		if (errno != ENOENT) {
			*error_r = pop3_mailbox_error("cannot delete %s: %s",
			    path, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/*
 * mbox deletion. Under the mailbox lock: check that the index describes
 * the file as it is now (its stamp, and each message to delete at its
 * indexed offsets), copy the file without those messages beside it and
 * rename the copy over it (mbox_rewrite.h), then expunge them from the
 * index and record the new offsets of the others in one transaction.
 */

/* A message of the index, as the expunge needs it. */
struct pop3_mailbox_rec {
	uint32_t uid;
	uint64_t from, data, psize;
};

/* A message found in the file. */
struct pop3_mailbox_fent {
	uint64_t from, data, len;
	uint64_t new_from;	/* its offset in the new file (if kept) */
	bool drop;
};

struct pop3_mailbox_rw {
	struct pop3_mailbox *mb;
	const bool *deleted;
	struct fsutil_map map;
	struct stat sb;
	struct mindex_folder f;
	struct pop3_mailbox_rec *recs;	/* owned, in uid order */
	size_t nrecs;
	struct pop3_mailbox_fent *fents;	/* owned, in file order */
	size_t nfents, afents;
	uint32_t *gone;			/* owned: uids to expunge */
	size_t ngone;
	uint64_t new_len;
};

static int
pop3_mailbox_rec_cb(const struct mindex_msg *m, void *ctx)
{
	struct pop3_mailbox_rw *rw = ctx;

	rw->recs = xreallocarray(rw->recs, rw->nrecs + 1, sizeof(*rw->recs));
	rw->recs[rw->nrecs].uid = m->uid;
	rw->recs[rw->nrecs].from = m->mbox_offset;
	rw->recs[rw->nrecs].data = m->mbox_data_offset;
	rw->recs[rw->nrecs].psize = m->psize;
	rw->nrecs++;
	return 0;
}

/* The folder record and every message record; 1 if there is no folder. */
static int
pop3_mailbox_rw_read_index(struct pop3_mailbox_rw *rw, const char **error_r)
{
	struct mindex_txn *txn;
	int ret;

	if (mindex_begin(store_index(rw->mb->st), false, &txn, error_r) < 0)
		return -1;
	ret = mindex_folder_get(txn, POP3_MAILBOX_FOLDER, &rw->f);
	if (ret == 1)
		ret = mindex_msg_iter(txn, rw->f.id, 1, pop3_mailbox_rec_cb,
		    rw) < 0 ? -1 : 0;
	else if (ret == 0)
		ret = 1;
	mindex_abort(&txn);
	if (ret < 0)
		*error_r = pop3_mailbox_error("cannot read the index: %s",
		    mindex_last_error());
	return ret;
}

static int
pop3_mailbox_fent_cb(const struct mbox_entry *e, void *ctx)
{
	struct pop3_mailbox_rw *rw = ctx;

	if (rw->nfents == rw->afents) {
		rw->afents = rw->afents == 0 ? 64 : rw->afents * 2;
		rw->fents = xreallocarray(rw->fents, rw->afents,
		    sizeof(*rw->fents));
	}
	memset(&rw->fents[rw->nfents], 0, sizeof(rw->fents[0]));
	rw->fents[rw->nfents].from = e->from_offset;
	rw->fents[rw->nfents].data = e->data_offset;
	rw->fents[rw->nfents].len = e->data_len;
	rw->nfents++;
	return 0;
}

static struct pop3_mailbox_rec *
pop3_mailbox_rec_find(struct pop3_mailbox_rw *rw, uint32_t uid)
{
	size_t lo = 0, hi = rw->nrecs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (rw->recs[mid].uid == uid)
			return &rw->recs[mid];
		if (rw->recs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The file entry whose From_ line is at off, or NULL. */
static struct pop3_mailbox_fent *
pop3_mailbox_fent_find(struct pop3_mailbox_rw *rw, uint64_t off)
{
	size_t lo = 0, hi = rw->nfents;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (rw->fents[mid].from == off)
			return &rw->fents[mid];
		if (rw->fents[mid].from < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Does the index describe this very file? (A sync records its stamp;
 * mutt's rewrite or an unindexed append changes it.) */
static bool
pop3_mailbox_rw_stamp_ok(const struct pop3_mailbox_rw *rw)
{
	const struct mindex_stamp *s = &rw->f.stamp[0];
	int64_t mtime_ns = (int64_t)rw->sb.st_mtim.tv_sec * 1000000000 +
	    rw->sb.st_mtim.tv_nsec;

	return s->dev == (uint64_t)rw->sb.st_dev &&
	    s->ino == (uint64_t)rw->sb.st_ino &&
	    s->size == (uint64_t)rw->sb.st_size && s->mtime_ns == mtime_ns;
}

/* Mark what to drop: 0 done, 1 the file does not match the index (sync
 * and try again). A uid gone from the index is deleted already. */
static int
pop3_mailbox_rw_mark(struct pop3_mailbox_rw *rw)
{
	struct pop3_mailbox *mb = rw->mb;
	struct pop3_mailbox_rec *r;
	struct pop3_mailbox_fent *fe;
	uint64_t dropped = 0;

	rw->gone = xreallocarray(NULL, mb->count + 1, sizeof(*rw->gone));
	for (unsigned i = 0; i < mb->count; i++) {
		if (!rw->deleted[i] ||
		    (r = pop3_mailbox_rec_find(rw, mb->ents[i].uid)) == NULL)
			continue;
		fe = pop3_mailbox_fent_find(rw, r->from);
		if (fe == NULL || fe->data != r->data || fe->len != r->psize)
			return 1;
		fe->drop = true;
		rw->gone[rw->ngone++] = r->uid;
	}
	for (size_t k = 0; k < rw->nfents; k++) {
		rw->fents[k].new_from = rw->fents[k].from - dropped;
		if (rw->fents[k].drop)
			dropped += (k + 1 < rw->nfents ? rw->fents[k + 1].from :
			    rw->map.len) - rw->fents[k].from;
	}
	rw->new_len = rw->map.len - dropped;
	return 0;
}

/* A message runs from its From_ line to the next one (or the end), so
 * the separator line goes with it. */
static struct mbox_rewrite_range *
pop3_mailbox_rw_ranges(struct pop3_mailbox_rw *rw, size_t *n_r)
{
	struct mbox_rewrite_range *r;
	size_t n = 0;

	r = xreallocarray(NULL, rw->nfents + 1, sizeof(*r));
	for (size_t k = 0; k < rw->nfents; k++) {
		if (!rw->fents[k].drop)
			continue;
		r[n].offset = rw->fents[k].from;
		r[n].len = (k + 1 < rw->nfents ? rw->fents[k + 1].from :
		    rw->map.len) - rw->fents[k].from;
		n++;
	}
	*n_r = n;
	return r;
}

/* Where old offset off is in the new file: a From_ line or the end. */
static uint64_t
pop3_mailbox_rw_shift(struct pop3_mailbox_rw *rw, uint64_t off)
{
	struct pop3_mailbox_fent *fe;

	if (off == rw->map.len)
		return rw->new_len;
	fe = pop3_mailbox_fent_find(rw, off);
	return fe != NULL ? fe->new_from : 0;
}

static int
pop3_mailbox_rw_move(struct mindex_txn *txn, struct pop3_mailbox_rw *rw,
    const struct pop3_mailbox_rec *r)
{
	struct pop3_mailbox_fent *fe = pop3_mailbox_fent_find(rw, r->from);
	struct mindex_msg m;
	int ret;

	if (fe == NULL || fe->drop || fe->new_from == fe->from)
		return 0;	/* unchanged, or left for the next sync */
	if ((ret = mindex_msg_get(txn, rw->f.id, r->uid, &m)) <= 0)
		return ret;
	m.mbox_offset = fe->new_from;
	m.mbox_data_offset = r->data - (fe->from - fe->new_from);
	return mindex_msg_update(txn, &rw->f, &m);
}

/* The index transaction; absolute values only, so mindex_write may run
 * it again after growing the map. */
static int
pop3_mailbox_rw_index_fn(struct mindex_txn *txn, void *ctx,
    const char **error_r)
{
	struct pop3_mailbox_rw *rw = ctx;
	int ret;

	if ((ret = mindex_folder_get(txn, POP3_MAILBOX_FOLDER, &rw->f)) <= 0) {
		*error_r = "INBOX is gone from the index";
		return -1;
	}
	for (size_t i = 0; i < rw->ngone; i++)
		if ((ret = mindex_msg_expunge(txn, &rw->f, rw->gone[i])) < 0)
			return ret;
	for (size_t i = 0; i < rw->nrecs; i++)
		if ((ret = pop3_mailbox_rw_move(txn, rw, &rw->recs[i])) < 0)
			return ret;
	/* The offsets are right, but the next sync is to look at the new
	 * file as a rewrite (a different inode): it finds every message
	 * again by fingerprint, keeping UIDs, and indexes anything that was
	 * in the file but not yet in the index. */
	rw->f.sync_offset = pop3_mailbox_rw_shift(rw, rw->f.sync_offset);
	memset(rw->f.stamp, 0, sizeof(rw->f.stamp));
	return mindex_folder_put(txn, POP3_MAILBOX_FOLDER, &rw->f);
}

/* Rewrite and reindex, with fd locked and mapped. */
static int
pop3_mailbox_rw_commit(struct pop3_mailbox_rw *rw, int fd,
    const struct lock_opts *lo, const char **error_r)
{
	struct mbox_rewrite_range *ranges;
	size_t n;
	int new_fd, ret;

	ranges = pop3_mailbox_rw_ranges(rw, &n);
	if (n == 0) {
		free(ranges);
		return 0;
	}
	ret = mbox_rewrite(fd, rw->mb->path, rw->map.data, rw->map.len,
	    ranges, n, lo->methods, conf_bool("mail_fsync"), &new_fd,
	    error_r);
	free(ranges);
	if (ret < 0)
		return -1;
	/* The rename was the commit: from here on, a failure only leaves
	 * the index behind, and the next sync (new inode) catches up. */
	*error_r = NULL;
	if (mindex_write(store_index(rw->mb->st), pop3_mailbox_rw_index_fn, rw,
	    error_r) < 0)
		log_warning("%s: messages deleted but the index not updated "
		    "(%s); the next sync will", rw->mb->path,
		    *error_r != NULL ? *error_r : mindex_last_error());
	close(new_fd);		/* drops the locks on the new file */
	return 0;
}

/* Check and act with fd locked: 0 done, 1 changed underneath, -1. */
static int
pop3_mailbox_rw_locked(struct pop3_mailbox_rw *rw, int fd,
    const struct lock_opts *lo, const char **error_r)
{
	int ret;

	if (fstat(fd, &rw->sb) < 0 || fsutil_map_fd(fd, &rw->map) < 0) {
		*error_r = pop3_mailbox_error("cannot read %s: %s",
		    rw->mb->path, strerror(errno));
		return -1;
	}
	if ((ret = pop3_mailbox_rw_read_index(rw, error_r)) != 0)
		return ret;
	if (!pop3_mailbox_rw_stamp_ok(rw))
		return 1;
	if (rw->map.len > 0 && mbox_scan(rw->map.data, rw->map.len, 0,
	    pop3_mailbox_fent_cb, rw) < 0) {
		*error_r = pop3_mailbox_error("%s is not in mbox format",
		    rw->mb->path);
		return -1;
	}
	if ((ret = pop3_mailbox_rw_mark(rw)) != 0)
		return ret;
	return pop3_mailbox_rw_commit(rw, fd, lo, error_r);
}

static void
pop3_mailbox_rw_free(struct pop3_mailbox_rw *rw)
{
	fsutil_unmap(&rw->map);
	free(rw->recs);
	free(rw->fents);
	free(rw->gone);
	memset(rw, 0, sizeof(*rw));
}

/* One attempt: 0 done, 1 try again after a sync, -1 error. */
static int
pop3_mailbox_rw_try(struct pop3_mailbox *mb, const bool *deleted,
    const char **error_r)
{
	struct pop3_mailbox_rw rw;
	struct lock_opts lo;
	struct lock_mbox *lk;
	int fd, ret;

	if (pop3_mailbox_lock_opts(&lo, error_r) < 0)
		return -1;
	/* Read-write only because fcntl's write lock needs it. */
	if ((fd = open(mb->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) < 0) {
		if (errno == ENOENT)
			return 0;	/* every message is gone */
		*error_r = pop3_mailbox_error("cannot open %s: %s", mb->path,
		    strerror(errno));
		return -1;
	}
	ret = lock_mbox_acquire(fd, mb->path, &lo, &lk, error_r);
	if (ret != 0) {
		close(fd);
		if (ret == LOCK_TIMEOUT)
			*error_r = "mailbox is locked";
		return ret == -1 && errno == ESTALE ? 1 : -1;
	}
	memset(&rw, 0, sizeof(rw));
	rw.mb = mb;
	rw.deleted = deleted;
	ret = pop3_mailbox_rw_locked(&rw, fd, &lo, error_r);
	lock_mbox_release(&lk);
	pop3_mailbox_rw_free(&rw);
	close(fd);
	return ret;
}

#define POP3_MAILBOX_RW_ATTEMPTS 3

static int
pop3_mailbox_expunge_mbox(struct pop3_mailbox *mb, const bool *deleted,
    const char **error_r)
{
	int ret;

	/* A sync may not run while we hold the lock: it opens and closes
	 * the mbox, which would drop our fcntl lock. So sync, then lock and
	 * check; if the file changed meanwhile, go round again. */
	for (int attempt = 0; attempt < POP3_MAILBOX_RW_ATTEMPTS; attempt++) {
		if (store_sync(mb->st, POP3_MAILBOX_FOLDER, attempt > 0, NULL,
		    error_r) < 0)
			return -1;
		if ((ret = pop3_mailbox_rw_try(mb, deleted, error_r)) <= 0)
			return ret;
	}
	*error_r = "mailbox kept changing while deleting";
	return -1;
}

int
pop3_mailbox_expunge(struct pop3_mailbox *mb, const bool *deleted,
    const char **error_r)
{
	struct pop3_mailbox_expunge_ctx c = { mb, deleted };
	bool any = false;

	for (unsigned i = 0; i < mb->count; i++)
		any |= deleted[i];
	if (!any)
		return 0;
	if (pop3_mailbox_store(mb, error_r) < 0)
		return -1;
	if (mb->format != MAILLOC_MAILDIR)
		return pop3_mailbox_expunge_mbox(mb, deleted, error_r);
	for (unsigned i = 0; i < mb->count; i++) {
		if (deleted[i] &&
		    pop3_mailbox_unlink(mb, mb->ents[i].uid, error_r) < 0)
			return -1;
	}
	*error_r = NULL;
	if (mindex_write(store_index(mb->st), pop3_mailbox_expunge_fn, &c,
	    error_r) < 0) {
		if (*error_r == NULL)
			*error_r = mindex_last_error();
		return -1;
	}
	return 0;
}
