/*
 * imap_fetch.c: FETCH and UID FETCH of what the index answers without
 * reading a message: UID, FLAGS, RFC822.SIZE, INTERNALDATE, ENVELOPE (from
 * the cached header fields), BODY and BODYSTRUCTURE (from the serialized
 * MIME tree), MODSEQ (RFC 7162), the macros ALL, FAST, FULL, and the
 * modifiers (CHANGEDSINCE n) and, for UID FETCH under QRESYNC,
 * (CHANGEDSINCE n VANISHED). Body sections (BODY[...], RFC822, and
 * RFC 3516's BINARY[...], BINARY.PEEK[...] and BINARY.SIZE[...]) go to
 * imap_fetch_body.c, which streams them.
 *
 * FLAGS carries the message's keywords; one the session has not told
 * the client of yet is announced first ("* FLAGS", "* OK
 * [PERMANENTFLAGS]"), put in front of the FETCH being built.
 *
 * Trusts nothing from the client (items through the parser's accessors,
 * sequence sets through imap_seqset with their bounds); trusts the index,
 * whose variable fields the writers re-check anyway.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "xmalloc.h"
#include "mindex.h"
#include "store.h"
#include "server/imap/imap_bodystruct.h"
#include "server/imap/imap_envelope.h"
#include "server/imap/imap_private.h"
#include "server/imap/imap_search.h"
#include "server/imap/imap_seqset.h"
#include "server/imap/imap_write.h"


/* FETCH's modifiers (RFC 7162): (CHANGEDSINCE n [VANISHED]). */
struct imap_fetch_mods {
	bool changedsince;
	uint64_t since;
	bool vanished;
};

/* One item name into bits; 1 a body section (imap_fetch_body.c), -1
 * unknown. */
static int
imap_fetch_item(const char *item, unsigned *want)
{
	static const struct {
		const char *name;
		unsigned bits;
	} items[] = {
		{ "UID", IMAP_FETCH_UID },
		{ "FLAGS", IMAP_FETCH_FLAGS },
		{ "RFC822.SIZE", IMAP_FETCH_SIZE },
		{ "INTERNALDATE", IMAP_FETCH_DATE },
		{ "ENVELOPE", IMAP_FETCH_ENVELOPE },
		{ "BODY", IMAP_FETCH_BODY },
		{ "BODYSTRUCTURE", IMAP_FETCH_BODYSTRUCT },
		{ "MODSEQ", IMAP_FETCH_MODSEQ },
		{ "FAST", IMAP_FETCH_FLAGS | IMAP_FETCH_DATE | IMAP_FETCH_SIZE },
		{ "ALL", IMAP_FETCH_FLAGS | IMAP_FETCH_DATE | IMAP_FETCH_SIZE |
		    IMAP_FETCH_ENVELOPE },
		{ "FULL", IMAP_FETCH_FLAGS | IMAP_FETCH_DATE | IMAP_FETCH_SIZE |
		    IMAP_FETCH_ENVELOPE | IMAP_FETCH_BODY },
	};

	for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++)
		if (strcasecmp(item, items[i].name) == 0) {
			*want |= items[i].bits;
			return 0;
		}
	if (strncasecmp(item, "BODY[", 5) == 0 ||
	    strncasecmp(item, "BODY.PEEK[", 10) == 0 ||
	    strcasecmp(item, "RFC822") == 0 ||
	    strcasecmp(item, "RFC822.HEADER") == 0 ||
	    strcasecmp(item, "RFC822.TEXT") == 0 ||
	    strncasecmp(item, "BINARY[", 7) == 0 ||
	    strncasecmp(item, "BINARY.PEEK[", 12) == 0 ||
	    strncasecmp(item, "BINARY.SIZE[", 12) == 0)
		return 1;
	return -1;
}

/* The items argument: one atom or a list of atoms (macros only alone). */
static int
imap_fetch_items(struct imap_session *s, const struct imap_arg *arg,
    unsigned *want_r, const char ***sections_r, unsigned *nsections_r)
{
	const struct imap_arg *list = arg;
	const char *item, *error;
	unsigned count = 1;
	int r;

	*want_r = 0;
	*sections_r = NULL;
	*nsections_r = 0;
	if (arg->type == IMAP_ARG_LIST &&
	    imap_arg_list(arg, &list, &count, &error) < 0) {
		imap_bad(s, error);
		return -1;
	}
	if (count == 0) {
		imap_bad(s, "Empty FETCH item list");
		return -1;
	}
	for (unsigned i = 0; i < count; i++) {
		if (imap_arg_atom(&list[i], &item, &error) < 0) {
			imap_bad(s, error);
			return -1;
		}
		if ((r = imap_fetch_item(item, want_r)) < 0) {
			free(*sections_r);
			imap_bad(s, "Unknown FETCH item");
			return -1;
		}
		if (r == 1) {
			*sections_r = xreallocarray(*sections_r,
			    *nsections_r + 1, sizeof(char *));
			(*sections_r)[(*nsections_r)++] = item;
		}
	}
	return 0;
}

static void
imap_fetch_date(int64_t t, struct buf *b)
{
	static const char mon[][4] = { "Jan", "Feb", "Mar", "Apr", "May",
	    "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	buf_printf(b, "\"%02d-%s-%04d %02d:%02d:%02d +0000\"", tm.tm_mday,
	    mon[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
	    tm.tm_sec);
}

/* Keywords of m the client has not been told of: FLAGS goes in front of
 * the response begun at start in s->out (everything before it is whole
 * responses). */
static void
imap_fetch_announce(struct imap_session *s, const struct mindex_msg *m,
    size_t start)
{
	struct buf tail;

	if (m->keywords_len == 0 ||
	    !imap_view_kw_names(&s->view, m->keywords, m->keywords_len))
		return;
	buf_init(&tail, SIZE_MAX);
	buf_append(&tail, s->out.data + start, s->out.len - start);
	buf_truncate(&s->out, start);
	(void)imap_view_kw_announce(s);
	buf_append(&s->out, tail.data, tail.len);
	buf_free(&tail);
}

/* The index items of one message's response into s->out, after
 * "* n FETCH (", without the closing parenthesis; returns how many items
 * were written. */
int imap_fetch_index_items(struct imap_session *s, unsigned msn,
    const struct mindex_msg *m, unsigned want);

int
imap_fetch_index_items(struct imap_session *s, unsigned msn,
    const struct mindex_msg *m, unsigned want)
{
	struct imap_write w;
	const char *error;
	size_t start = s->out.len;
	bool sp = false;
	int n = 0;

	buf_printf(&s->out, "* %u FETCH (", msn);
#define SEP() do { if (sp) buf_append_byte(&s->out, ' '); sp = true; \
	n++; } while (0)
	if (want & IMAP_FETCH_UID) {
		SEP();
		buf_printf(&s->out, "UID %u", m->uid);
	}
	if (want & IMAP_FETCH_FLAGS) {
		SEP();
		buf_append_str(&s->out, "FLAGS ");
		imap_flags_write(m->flags, m->keywords, m->keywords_len,
		    &s->out);
	}
	if (want & IMAP_FETCH_SIZE) {
		SEP();
		buf_printf(&s->out, "RFC822.SIZE %llu",
		    (unsigned long long)m->vsize);
	}
	if (want & IMAP_FETCH_DATE) {
		SEP();
		buf_append_str(&s->out, "INTERNALDATE ");
		imap_fetch_date(m->internal_date, &s->out);
	}
	if (want & IMAP_FETCH_ENVELOPE) {
		SEP();
		buf_append_str(&s->out, "ENVELOPE ");
		imap_write_init(&w, &s->out, 0);
		(void)imap_envelope_write(&w, m->headers, m->headers_len);
		(void)imap_write_finish(&w);
	}
	if (want & (IMAP_FETCH_BODY | IMAP_FETCH_BODYSTRUCT)) {
		for (int ext = 0; ext < 2; ext++) {
			if (!(want & (ext ? IMAP_FETCH_BODYSTRUCT :
			    IMAP_FETCH_BODY)))
				continue;
			SEP();
			buf_append_str(&s->out, ext ? "BODYSTRUCTURE " :
			    "BODY ");
			imap_write_init(&w, &s->out, 0);
			if (imap_bodystruct_write_blob(&w, m->mime, m->mime_len,
			    ext != 0, &error) < 0 ||
			    imap_write_finish(&w) < 0) {
				log_warning("imap: user=<%s>, uid %u: %s",
				    s->user, m->uid, error);
				/* A structure, however poor, rather than
				 * a malformed response. */
				buf_append_str(&s->out, "(\"text\" \"plain\" "
				    "NIL NIL NIL \"7bit\" 0 0)");
			}
		}
	}
	if (want & IMAP_FETCH_MODSEQ) {
		SEP();
		buf_printf(&s->out, "MODSEQ (%llu)",
		    (unsigned long long)imap_modseq_out(m->modseq));
	}
#undef SEP
	if (want & IMAP_FETCH_FLAGS)
		imap_fetch_announce(s, m, start);
	return n;
}

static void
imap_fetch_one(struct imap_session *s, unsigned msn,
    const struct mindex_msg *m, unsigned want)
{
	(void)imap_fetch_index_items(s, msn, m, want);
	buf_append_str(&s->out, ")\r\n");
}

/* The modifier list, argument 3. -1 after BAD. */
static int
imap_fetch_mods(struct imap_session *s, const struct imap_cmd *cmd,
    struct imap_fetch_mods *mods)
{
	const struct imap_arg *l;
	const char *name, *error;
	unsigned n;

	memset(mods, 0, sizeof(*mods));
	if (cmd->argc == 2)
		return 0;
	if (imap_arg_list(&cmd->args[2], &l, &n, &error) < 0) {
		imap_bad(s, error);
		return -1;
	}
	for (unsigned i = 0; i < n; i++) {
		if (imap_arg_atom(&l[i], &name, &error) < 0) {
			imap_bad(s, error);
			return -1;
		}
		if (strcasecmp(name, "CHANGEDSINCE") == 0 &&
		    !mods->changedsince && i + 1 < n) {
			if (imap_arg_number64(&l[++i], &mods->since,
			    &error) < 0) {
				imap_bad(s, error);
				return -1;
			}
			mods->changedsince = true;
		} else if (strcasecmp(name, "VANISHED") == 0 &&
		    !mods->vanished)
			mods->vanished = true;
		else {
			imap_bad(s, "Unknown FETCH modifier");
			return -1;
		}
	}
	/* RFC 7162 section 3.2.6: VANISHED only in UID FETCH, with
	 * CHANGEDSINCE, once QRESYNC is enabled. */
	if (mods->vanished && (!cmd->uid || !mods->changedsince ||
	    !s->qresync)) {
		imap_bad(s, "VANISHED needs UID FETCH, CHANGEDSINCE and "
		    "QRESYNC enabled");
		return -1;
	}
	return 0;
}

/* CHANGEDSINCE: keep in set only the messages whose MODSEQ is above
 * since. -1 after NO. */
static int
imap_fetch_changed(struct imap_session *s, struct imap_seqset *set,
    bool uid, uint64_t since)
{
	struct imap_seqset keep;
	struct mindex_txn *txn;
	struct mindex_msg m;
	struct store *st;
	const char *error;

	if ((st = imap_store(s)) == NULL)
		return -1;
	if (mindex_begin(store_index(st), false, &txn, &error) < 0) {
		imap_tagged(s, "NO", "[UNAVAILABLE] Index unavailable");
		return -1;
	}
	imap_seqset_init(&keep);
	for (unsigned i = 0; i < s->view.count; i++) {
		uint32_t num = uid ? s->view.msgs[i].uid : i + 1;

		/* Added in ascending order: never more ranges than set
		 * had numbers, so the add cannot fail on the limit. */
		if (imap_seqset_contains(set, num) &&
		    mindex_msg_get(txn, s->view.folder_id,
		    s->view.msgs[i].uid, &m) > 0 && m.modseq > since)
			(void)imap_seqset_add(&keep, num, num, &error);
	}
	mindex_abort(&txn);
	imap_seqset_deinit(set);
	*set = keep;
	return 0;
}

/* VANISHED: the UIDs of text that were expunged after since. "*" here
 * reaches past the highest UID left, so "1:*" still names an expunged
 * last message. -1 after NO. */
static int
imap_fetch_vanished(struct imap_session *s, const char *text,
    uint64_t since)
{
	struct imap_seqset known;
	const char *error;
	int ret;

	if (imap_store(s) == NULL)
		return -1;
	imap_seqset_init(&known);
	/* text parsed once already with the same syntax: cannot fail. */
	(void)imap_seqset_parse(&known, text, UINT32_MAX, &error);
	/* "$": the saved UIDs, expunged ones included (RFC 5182). */
	for (unsigned i = 0; known.searchres && i < s->searchres.count; i++)
		(void)imap_seqset_add(&known, s->searchres.ranges[i].lo,
		    s->searchres.ranges[i].hi, &error);
	ret = imap_vanished_earlier(s, since, &known);
	imap_seqset_deinit(&known);
	if (ret < 0)
		imap_tagged(s, "NO", "[UNAVAILABLE] Index unavailable");
	return ret;
}

void
imap_cmd_fetch(struct imap_session *s, const struct imap_cmd *cmd)
{
	struct imap_fetch_mods mods;
	struct imap_seqset set;
	struct mindex_txn *txn;
	struct mindex_msg m;
	struct store *st;
	const char *text, *error, **sections;
	unsigned want, nsections;
	uint32_t max;

	if (cmd->argc < 2 || cmd->argc > 3 ||
	    imap_arg_atom(&cmd->args[0], &text, &error) < 0) {
		imap_bad(s, "FETCH sequence-set items [(modifiers)]");
		return;
	}
	if (imap_fetch_mods(s, cmd, &mods) < 0 ||
	    imap_fetch_items(s, &cmd->args[1], &want, &sections,
	    &nsections) < 0)
		return;
	if (cmd->uid)
		want |= IMAP_FETCH_UID;
	if (mods.changedsince)
		want |= IMAP_FETCH_MODSEQ;
	if (want & IMAP_FETCH_MODSEQ)
		imap_condstore_on(s);
	max = cmd->uid ? (s->view.count > 0 ?
	    s->view.msgs[s->view.count - 1].uid : 0) : s->view.count;
	imap_seqset_init(&set);
	if (imap_seqset_parse(&set, text, max, &error) < 0 ||
	    (set.searchres && set.count > 0)) {
		/* Parsed: "$" with more; deinit would forget which. */
		if (set.searchres)
			error = "$ must stand alone";
		imap_seqset_deinit(&set);
		free(sections);
		imap_bad(s, error);
		return;
	}
	/* "$": the result SEARCH saved (RFC 5182), empty if none. */
	if (set.searchres)
		imap_search_saved_set(s, cmd->uid, &set);
	if (!cmd->uid && imap_seqset_last(&set) > s->view.count) {
		imap_seqset_deinit(&set);
		free(sections);
		imap_bad(s, "Message sequence number out of range");
		return;
	}
	/* VANISHED (EARLIER) comes before the FETCH responses. */
	if (mods.vanished && imap_fetch_vanished(s, text, mods.since) < 0) {
		imap_seqset_deinit(&set);
		free(sections);
		return;
	}
	if (mods.changedsince &&
	    imap_fetch_changed(s, &set, cmd->uid, mods.since) < 0) {
		imap_seqset_deinit(&set);
		free(sections);
		return;
	}
	if (nsections > 0) {
		/* Bodies: a job that streams, across loop iterations. */
		int r = imap_fetch_job_new(s, &set, cmd->uid, want, sections,
		    nsections);

		free(sections);
		imap_seqset_deinit(&set);
		if (r == 0) {
			s->stats.fetches++;
			(void)imap_fetch_job_run(s);
		}
		return;
	}
	if ((st = imap_store(s)) == NULL ||
	    mindex_begin(store_index(st), false, &txn, &error) < 0) {
		imap_seqset_deinit(&set);
		if (st != NULL)
			imap_tagged(s, "NO", "[UNAVAILABLE] Index unavailable");
		return;
	}
	s->stats.fetches++;
	for (unsigned i = 0; i < s->view.count; i++) {
		const struct imap_msgref *r = &s->view.msgs[i];

		if (!imap_seqset_contains(&set, cmd->uid ? r->uid : i + 1))
			continue;
		/* A message expunged by another session and not reported
		 * yet has no record: RFC 3501 allows answering without it. */
		if (mindex_msg_get(txn, s->view.folder_id, r->uid, &m) <= 0)
			continue;
		imap_fetch_one(s, i + 1, &m, want);
		s->stats.fetched++;
		/* Keep memory bounded on large folders. */
		if (s->out.len >= 64 * 1024)
			imap_send(s);
	}
	mindex_abort(&txn);
	imap_seqset_deinit(&set);
	imap_send(s);
	imap_tagged(s, "OK", "%sFETCH completed", cmd->uid ? "UID " : "");
}
