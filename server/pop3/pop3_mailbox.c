/*
 * pop3_mailbox.c: the INBOX of one POP3 session: snapshot numbering,
 * UIDLs, and the store's reader (store_read) and expunge (store_expunge)
 * behind RETR and the UPDATE state.
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
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mailloc.h"
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
	uint32_t uidvalidity;
	struct pop3_mailbox_ent *ents;	/* owned: the snapshot */
	unsigned count;
	bool estimates;			/* some vsize is from a file name */
	bool scanned;			/* the snapshot is taken */
	struct pop3_mailbox_msg *open_msg;	/* borrowed, at most one */
};

struct pop3_mailbox_msg {
	struct pop3_mailbox *mb;	/* borrowed */
	struct store_read *r;		/* owned */
};

static char pop3_mailbox_errbuf[512];

static int pop3_mailbox_store(struct pop3_mailbox *mb, const char **error_r);

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

/*
 * The lock file holds the time of the last login, as decimal seconds (an
 * empty file: none yet). Under the lock: 2 if it is less than delay
 * seconds ago (RFC 2449 LOGIN-DELAY), else the time becomes now and 0.
 * The time is written without fsync: after a crash a client may log in
 * early once.
 */
static int
pop3_mailbox_login_time(struct pop3_mailbox *mb, unsigned delay)
{
	char text[32];
	time_t now = time(NULL);
	long long last = 0;
	ssize_t n;
	int len;

	n = pread(mb->lock_fd, text, sizeof(text) - 1, 0);
	if (n > 0) {
		text[n] = '\0';
		last = strtoll(text, NULL, 10);
	}
	if (delay > 0 && last > 0 && last <= (long long)now &&
	    (long long)now - last < (long long)delay)
		return 2;
	len = snprintf(text, sizeof(text), "%lld\n", (long long)now);
	if (pwrite(mb->lock_fd, text, (size_t)len, 0) != len ||
	    ftruncate(mb->lock_fd, len) < 0)
		log_warning("pop3: cannot record the login time: %s",
		    strerror(errno));
	return 0;
}

struct pop3_mailbox_snap {
	struct pop3_mailbox_ent *ents;
	size_t count, alloc;
	bool estimates;
};

/* As RETR sends it: with the CRLF it adds to end the last line. */
static uint64_t
pop3_mailbox_retr_size(const struct mindex_brief *m)
{
	return m->vsize + ((m->cache_flags & MINDEX_C_NO_FINAL_LF) != 0 ?
	    2 : 0);
}

/* Whether m's size is a guess from its file name (MINDEX_C_UNPARSED
 * without MINDEX_C_SIZED). */
static bool
pop3_mailbox_estimate(const struct mindex_brief *m)
{
	return (m->cache_flags & (MINDEX_C_UNPARSED | MINDEX_C_SIZED)) ==
	    MINDEX_C_UNPARSED;
}

static int
pop3_mailbox_snap_cb(const struct mindex_brief *m, void *ctx)
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
	sn->ents[sn->count].vsize = pop3_mailbox_retr_size(m);
	if (pop3_mailbox_estimate(m))
		sn->estimates = true;
	sn->count++;
	return 0;
}

static int
pop3_mailbox_snapshot(struct pop3_mailbox *mb, const char **error_r)
{
	struct pop3_mailbox_snap sn = { NULL, 0, 0, false };
	struct mindex_txn *txn;
	struct mindex_folder f;
	int ret;

	if (mindex_begin(store_index(mb->st), false, &txn, error_r) < 0)
		return -1;
	ret = mindex_folder_get(txn, POP3_MAILBOX_FOLDER, &f);
	if (ret == 1) {
		mb->uidvalidity = f.uidvalidity;
		ret = mindex_brief_iter(txn, f.id, 1, pop3_mailbox_snap_cb,
		    &sn);
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
	mb->estimates = sn.estimates;
	return 0;
}

int
pop3_mailbox_open(const struct user *u, unsigned login_delay,
    struct pop3_mailbox **mb_r, const char **error_r)
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
	if ((ret = pop3_mailbox_lock(mb, error_r)) != 0 ||
	    (ret = pop3_mailbox_login_time(mb, login_delay)) != 0) {
		pop3_mailbox_free(&mb);
		return ret > 0 ? ret : -1;
	}
	*mb_r = mb;
	return 0;
}

int
pop3_mailbox_scan(struct pop3_mailbox *mb, const char **error_r)
{
	if (mb->scanned)
		return 0;
	if (pop3_mailbox_store(mb, error_r) < 0 ||
	    store_sync_lazy(mb->st, POP3_MAILBOX_FOLDER, NULL, error_r) < 0 ||
	    pop3_mailbox_snapshot(mb, error_r) < 0)
		return -1;
	mb->scanned = true;
	return 0;
}

bool
pop3_mailbox_scanned(const struct pop3_mailbox *mb)
{
	return mb->scanned;
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

/* The exact sizes of the snapshot's messages, merged by UID (both lists
 * are in UID order). */
struct pop3_mailbox_resize {
	struct pop3_mailbox *mb;
	unsigned next;
	bool estimates;
};

static int
pop3_mailbox_resize_cb(const struct mindex_brief *m, void *ctx)
{
	struct pop3_mailbox_resize *rz = ctx;
	struct pop3_mailbox *mb = rz->mb;

	while (rz->next < mb->count && mb->ents[rz->next].uid < m->uid)
		rz->next++;
	if (rz->next == mb->count)
		return 1;
	if (mb->ents[rz->next].uid == m->uid) {
		mb->ents[rz->next].vsize = pop3_mailbox_retr_size(m);
		if (pop3_mailbox_estimate(m))
			rz->estimates = true;
	}
	return 0;
}

int
pop3_mailbox_sizes(struct pop3_mailbox *mb, const char **error_r)
{
	struct pop3_mailbox_resize rz = { mb, 0, false };
	struct mindex_txn *txn;
	struct mindex_folder f;
	int ret;

	if (!mb->estimates)
		return 0;
	if (pop3_mailbox_store(mb, error_r) < 0 ||
	    store_complete_sizes(mb->st, POP3_MAILBOX_FOLDER, error_r) < 0 ||
	    mindex_begin(store_index(mb->st), false, &txn, error_r) < 0)
		return -1;
	ret = mindex_folder_get(txn, POP3_MAILBOX_FOLDER, &f);
	if (ret == 1 && mb->count > 0)
		ret = mindex_brief_iter(txn, f.id, mb->ents[0].uid,
		    pop3_mailbox_resize_cb, &rz);
	mindex_abort(&txn);
	if (ret < 0) {
		*error_r = pop3_mailbox_error("cannot read the index: %s",
		    mindex_last_error());
		return -1;
	}
	/* A file moved while it was being read stays an estimate: its
	 * size is looked for again on the next call. */
	mb->estimates = rz.estimates;
	return 0;
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

int
pop3_mailbox_msg_open(struct pop3_mailbox *mb, unsigned i,
    struct pop3_mailbox_msg **m_r, const char **error_r)
{
	struct pop3_mailbox_msg *m;
	struct store_read *r;
	uint32_t uid = pop3_mailbox_ent(mb, i)->uid;
	enum store_op op;

	if (mb->open_msg != NULL)
		log_panic("pop3_mailbox_msg_open: one is already open");
	if (pop3_mailbox_store(mb, error_r) < 0)
		return -1;
	op = store_read_open(mb->st, POP3_MAILBOX_FOLDER, uid, &r, error_r);
	if (op != STORE_OP_OK) {
		if (op == STORE_OP_NONEXISTENT)
			*error_r = "message is no longer in the mailbox";
		return -1;
	}
	m = xcalloc(1, sizeof(*m));
	m->mb = mb;
	m->r = r;
	mb->open_msg = m;
	*m_r = m;
	return 0;
}

int
pop3_mailbox_msg_read(struct pop3_mailbox_msg *m, unsigned char *buf,
    size_t size, size_t *len_r, const char **error_r)
{
	return store_read_next(m->r, buf, size, len_r, error_r);
}

void
pop3_mailbox_msg_close(struct pop3_mailbox_msg **mp)
{
	struct pop3_mailbox_msg *m = *mp;

	if (m == NULL)
		return;
	store_read_close(&m->r);
	m->mb->open_msg = NULL;
	free(m);
	*mp = NULL;
}

int
pop3_mailbox_expunge(struct pop3_mailbox *mb, const bool *deleted,
    const char **error_r)
{
	struct store_uid_range *r;
	struct store_uidset set;
	uint32_t *gone;
	size_t n = 0, ngone;
	enum store_op op;

	r = xreallocarray(NULL, mb->count + 1, sizeof(*r));
	for (unsigned i = 0; i < mb->count; i++)
		if (deleted[i]) {
			r[n].first = r[n].last = mb->ents[i].uid;
			n++;
		}
	if (n == 0) {
		free(r);
		return 0;
	}
	if (pop3_mailbox_store(mb, error_r) < 0) {
		free(r);
		return -1;
	}
	set.ranges = r;
	set.count = n;
	/* DELE marks by number, not with \Deleted: any flags. Messages
	 * the session did not see are not in the set and stay. */
	op = store_expunge(mb->st, POP3_MAILBOX_FOLDER, &set, true, &gone,
	    &ngone, error_r);
	free(r);
	if (op != STORE_OP_OK)
		return -1;
	free(gone);
	return 0;
}
