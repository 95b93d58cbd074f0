/*
 * ctl_index.c: loftctl reindex and loftctl index (stats, compact).
 * Runs as the invoking user, who must be able to read the user's mail:
 * root switches to the mailbox owner first, as loft-deliver does.
 */
#include "config.h"
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>
#include "ctl.h"
#include "mindex.h"
#include "priv.h"
#include "store.h"
#include "user.h"

/* Look a user up and become its mailbox owner (effective ids only, so
 * loftctl can handle several users in turn). */
static struct user *
ctl_index_user(const char *name)
{
	struct user *u = NULL;
	const char *err = NULL;
	int ret = user_lookup(name, &u, &err);

	if (ret <= 0) {
		fprintf(stderr, "loftctl: %s: %s\n", name, err != NULL ? err :
		    (ret == 0 ? "unknown user" : "user database unavailable"));
		return NULL;
	}
	if (priv_become(u, false, &err) < 0) {
		fprintf(stderr, "loftctl: %s: %s\n", name, err);
		user_free(&u);
		return NULL;
	}
	return u;
}

static void
ctl_index_restore(void)
{
	const char *err;

	if (priv_restore(&err) < 0)
		fprintf(stderr, "loftctl: %s\n", err);
}

int
ctl_reindex_main(int argc, char **argv)
{
	int status = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: loftctl reindex USER ...\n");
		return EX_USAGE;
	}
	for (int i = 1; i < argc; i++) {
		struct user *u = ctl_index_user(argv[i]);
		const char *err;
		uint64_t n = 0;

		if (u == NULL) {
			status = 1;
			continue;
		}
		if (store_reindex(u, &n, &err) < 0) {
			fprintf(stderr, "loftctl: reindex %s: %s\n", argv[i],
			    err);
			status = 1;
		} else
			printf("%s: %" PRIu64 " messages indexed\n", argv[i],
			    n);
		user_free(&u);
		ctl_index_restore();
	}
	return status;
}

static int
ctl_index_folder_cb(const char *name, const struct mindex_folder *f,
    void *ctx)
{
	(void)ctx;
	printf("  %s: uidvalidity=%u uidnext=%u messages=%u unseen=%u "
	    "size=%" PRIu64 " highestmodseq=%" PRIu64 "\n", name,
	    f->uidvalidity, f->uidnext, f->count, f->unseen, f->vsize,
	    f->highestmodseq);
	return 0;
}

static int
ctl_index_stats(struct user *u)
{
	struct mindex_stats stats;
	struct mindex_txn *txn;
	struct store *st = NULL;
	const char *err;
	uint64_t qb = 0, qm = 0;
	int ret;

	if (store_open(u, &st, &err) < 0 ||
	    store_sync_all(st, false, &err) < 0) {
		fprintf(stderr, "loftctl: %s: %s\n", u->name, err);
		return 1;
	}
	ret = mindex_stats(store_index(st), &stats, &err);
	if (ret == 0) {
		printf("%s: index %s\n", u->name,
		    store_location(st)->index_dir);
		printf("  map_size=%" PRIu64 " used=%" PRIu64 " readers=%u "
		    "messages=%" PRIu64 "\n", stats.map_size, stats.used,
		    stats.readers, stats.entries);
		if (mindex_begin(store_index(st), false, &txn, &err) == 0) {
			mindex_quota_get(txn, &qb, &qm);
			printf("  quota usage: %" PRIu64 " bytes, %" PRIu64
			    " messages\n", qb, qm);
			mindex_folder_iter(txn, ctl_index_folder_cb, NULL);
			mindex_abort(&txn);
		}
	} else
		fprintf(stderr, "loftctl: %s: %s\n", u->name, err);
	store_close(&st);
	return ret < 0 ? 1 : 0;
}

static int
ctl_index_compact(struct user *u)
{
	struct store *st = NULL;
	const char *err;
	char dir[4096];

	/* Open once so that the index exists and is in step, then close:
	 * compaction needs it closed by everyone, us included. */
	if (store_open(u, &st, &err) < 0) {
		fprintf(stderr, "loftctl: %s: %s\n", u->name, err);
		return 1;
	}
	snprintf(dir, sizeof(dir), "%s", store_location(st)->index_dir);
	store_close(&st);
	if (mindex_compact(dir, &err) < 0) {
		fprintf(stderr, "loftctl: compact %s: %s\n", u->name, err);
		return 1;
	}
	printf("%s: index compacted\n", u->name);
	return 0;
}

static void
ctl_index_flags(uint32_t flags, char *out, size_t size)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} names[] = {
		{ MINDEX_F_SEEN, "\\Seen" }, { MINDEX_F_ANSWERED, "\\Answered" },
		{ MINDEX_F_FLAGGED, "\\Flagged" },
		{ MINDEX_F_DELETED, "\\Deleted" }, { MINDEX_F_DRAFT, "\\Draft" },
		{ MINDEX_F_FORWARDED, "$Forwarded" },
	};
	size_t o = 0;

	out[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if ((flags & names[i].bit) == 0)
			continue;
		o += (size_t)snprintf(out + o, size - o, "%s%s",
		    o > 0 ? "," : "", names[i].name);
		if (o >= size)
			break;
	}
	if (o == 0)
		snprintf(out, size, "-");
}

static int
ctl_index_list_cb(const struct mindex_msg *m, void *ctx)
{
	char flags[128];

	(void)ctx;
	ctl_index_flags(m->flags, flags, sizeof(flags));
	printf("%u %s vsize=%" PRIu64 " psize=%" PRIu64 " modseq=%" PRIu64
	    " guid=", m->uid, flags, m->vsize, m->psize, m->modseq);
	for (size_t i = 0; i < sizeof(m->guid); i++)
		printf("%02x", m->guid[i]);
	if (m->location_len > 0)
		printf(" %.*s", (int)m->location_len, m->location);
	else
		printf(" @%" PRIu64, m->mbox_offset);
	printf("\n");
	return 0;
}

/* loftctl index list USER [FOLDER]: one line per message, after a sync. */
static int
ctl_index_list(struct user *u, const char *folder)
{
	struct mindex_folder f;
	struct mindex_txn *txn;
	struct store *st = NULL;
	const char *err;
	int ret;

	if (store_open(u, &st, &err) < 0 ||
	    store_sync(st, folder, false, NULL, &err) < 0) {
		fprintf(stderr, "loftctl: %s: %s\n", u->name, err);
		if (st != NULL)
			store_close(&st);
		return 1;
	}
	if (mindex_begin(store_index(st), false, &txn, &err) < 0) {
		fprintf(stderr, "loftctl: %s: %s\n", u->name, err);
		store_close(&st);
		return 1;
	}
	ret = mindex_folder_get(txn, strcasecmp(folder, "INBOX") == 0 ?
	    "INBOX" : folder, &f);
	if (ret == 1) {
		printf("# %s uidvalidity=%u uidnext=%u messages=%u\n", folder,
		    f.uidvalidity, f.uidnext, f.count);
		ret = mindex_msg_iter(txn, f.id, 1, ctl_index_list_cb, NULL) < 0 ?
		    -1 : 1;
	} else if (ret == 0)
		fprintf(stderr, "loftctl: %s: no folder %s\n", u->name,
		    folder);
	mindex_abort(&txn);
	store_close(&st);
	return ret == 1 ? 0 : 1;
}

int
ctl_index_main(int argc, char **argv)
{
	struct user *u;
	int status;

	if (argc >= 3 && strcmp(argv[1], "list") == 0 && argc <= 4) {
		if ((u = ctl_index_user(argv[2])) == NULL)
			return 1;
		status = ctl_index_list(u, argc == 4 ? argv[3] : "INBOX");
		user_free(&u);
		ctl_index_restore();
		return status;
	}
	if (argc != 3 || (strcmp(argv[1], "stats") != 0 &&
	    strcmp(argv[1], "compact") != 0)) {
		fprintf(stderr, "usage: loftctl index stats|compact USER\n"
		    "       loftctl index list USER [FOLDER]\n");
		return EX_USAGE;
	}
	if ((u = ctl_index_user(argv[2])) == NULL)
		return 1;
	status = strcmp(argv[1], "stats") == 0 ? ctl_index_stats(u) :
	    ctl_index_compact(u);
	user_free(&u);
	ctl_index_restore();
	return status;
}
