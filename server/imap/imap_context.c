/*
 * imap_context.c: the search contexts of RFC 5267 (CONTEXT=SEARCH and
 * CONTEXT=SORT): a SEARCH or SORT with RETURN (UPDATE) leaves its program
 * and result here, kept with the selected folder's view, and each change
 * the session reports of the view is followed by unsolicited "* ESEARCH
 * (TAG "t") [UID] ADDTO (...)" and "REMOVEFROM (...)" lines, so a webmail
 * client keeps a filtered or sorted list without searching again;
 * CANCELUPDATE drops a context. imap_private.h has the contract.
 *
 * Why the MODSEQ watermark: every change of a record (flags, keywords, a
 * new message) gives it a MODSEQ above the folder's last, and the view
 * holds each message's MODSEQ as last reported (also after this
 * session's own STORE), so the messages to look at again are those above
 * what the context saw, found by walking the view's array (16 bytes a
 * message), never by searching the whole folder again.
 *
 * Trusts the view and the index; the tags come from the parser (atom
 * characters, at most IMAP_PARSER_TAG_MAX bytes).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "compat/compat.h"
#include "log.h"
#include "xmalloc.h"
#include "server/imap/imap_private.h"
#include "server/imap/imap_search.h"
#include "server/imap/imap_seqset.h"
#include "server/imap/imap_sort.h"

struct imap_context {
	char tag[IMAP_PARSER_TAG_MAX + 1];
	bool uid;			/* numbers are UIDs, else sequence
					   numbers */
	bool sorted;			/* a SORT: positions count */
	struct imap_sort_prog prog;
	struct imap_search *search;	/* owned */
	uint32_t *uids;			/* owned: the result, in its order */
	size_t count, cap;
	uint64_t modseq;		/* highest MODSEQ looked at */
	uint32_t uid_last;		/* highest UID looked at */
};

static void
imap_context_free(struct imap_context **cp)
{
	struct imap_context *c = *cp;

	if (c == NULL)
		return;
	imap_search_free(&c->search);
	free(c->uids);
	free(c);
	*cp = NULL;
}

void
imap_context_free_all(struct imap_view *v)
{
	for (unsigned i = 0; i < v->nctx; i++)
		imap_context_free(&v->ctx[i]);
	v->nctx = 0;
}

/* The view's highest MODSEQ and UID: what a new context has seen. */
static void
imap_context_mark(const struct imap_view *v, struct imap_context *c)
{
	c->modseq = 0;
	for (unsigned i = 0; i < v->count; i++)
		if (v->msgs[i].modseq > c->modseq)
			c->modseq = v->msgs[i].modseq;
	c->uid_last = v->count > 0 ? v->msgs[v->count - 1].uid : 0;
}

int
imap_context_add(struct imap_session *s, bool uid,
    const struct imap_sort_prog *prog, struct imap_search **search,
    const uint32_t *uids, size_t count)
{
	struct imap_view *v = &s->view;
	struct imap_context *c;

	if (v->nctx >= IMAP_CONTEXT_MAX)
		return -1;
	c = xcalloc(1, sizeof(*c));
	strlcpy(c->tag, s->tag, sizeof(c->tag));
	c->uid = uid;
	if (prog != NULL) {
		c->sorted = true;
		c->prog = *prog;
	}
	c->search = *search;
	*search = NULL;
	c->cap = count + 1;
	c->uids = xreallocarray(NULL, c->cap, sizeof(*c->uids));
	memcpy(c->uids, uids, count * sizeof(*uids));
	c->count = count;
	imap_context_mark(v, c);
	v->ctx[v->nctx++] = c;
	return 0;
}

struct imap_context *
imap_context_find(const struct imap_session *s, const char *tag)
{
	for (unsigned i = 0; i < s->view.nctx; i++)
		if (strcmp(s->view.ctx[i]->tag, tag) == 0)
			return s->view.ctx[i];
	return NULL;
}

/* Where uid is in c's result, or -1. SEARCH results are ascending. */
static long
imap_context_pos(const struct imap_context *c, uint32_t uid)
{
	if (!c->sorted) {
		size_t a = 0, z = c->count;

		while (a < z) {
			size_t mid = a + (z - a) / 2;

			if (c->uids[mid] == uid)
				return (long)mid;
			if (c->uids[mid] < uid)
				a = mid + 1;
			else
				z = mid;
		}
		return -1;
	}
	for (size_t i = 0; i < c->count; i++)
		if (c->uids[i] == uid)
			return (long)i;
	return -1;
}

static void
imap_context_remove_at(struct imap_context *c, size_t pos)
{
	memmove(&c->uids[pos], &c->uids[pos + 1],
	    (c->count - pos - 1) * sizeof(*c->uids));
	c->count--;
}

/* The view index of uid, or -1 (binary search: the view is by UID). */
static long
imap_context_view_index(const struct imap_view *v, uint32_t uid)
{
	size_t a = 0, z = v->count;

	while (a < z) {
		size_t mid = a + (z - a) / 2;

		if (v->msgs[mid].uid == uid)
			return (long)mid;
		if (v->msgs[mid].uid < uid)
			a = mid + 1;
		else
			z = mid;
	}
	return -1;
}

/*
 * The lines.
 */

static void
imap_context_begin(struct imap_session *s, const struct imap_context *c)
{
	buf_printf(&s->out, "* ESEARCH (TAG \"%s\")%s", c->tag,
	    c->uid ? " UID" : "");
}

/* " WHAT (0 set)" for a SEARCH context's numbers (ascending). */
static void
imap_context_line0(struct imap_session *s, const struct imap_context *c,
    const char *what, const uint32_t *nums, size_t n)
{
	if (n == 0)
		return;
	imap_context_begin(s, c);
	buf_printf(&s->out, " %s (0 ", what);
	(void)imap_seqset_format_nums(nums, n, &s->out);
	buf_append_str(&s->out, ")\r\n");
	imap_send(s);
}

/* The number the client knows message view index i by. */
static uint32_t
imap_context_num(const struct imap_session *s, const struct imap_context *c,
    unsigned i)
{
	return c->uid ? s->view.msgs[i].uid : i + 1;
}

void
imap_context_expunging(struct imap_session *s, const unsigned *idx,
    size_t n)
{
	uint32_t *nums;

	if (s->view.nctx == 0 || n == 0)
		return;
	nums = xreallocarray(NULL, n, sizeof(*nums));
	for (unsigned k = 0; k < s->view.nctx; k++) {
		struct imap_context *c = s->view.ctx[k];
		size_t m = 0;
		long pos;

		for (size_t i = 0; i < n; i++) {
			if ((pos = imap_context_pos(c,
			    s->view.msgs[idx[i]].uid)) < 0)
				continue;
			imap_context_remove_at(c, (size_t)pos);
			if (!c->sorted) {
				nums[m++] = imap_context_num(s, c, idx[i]);
				continue;
			}
			/* Positions as the client counts them after the
			 * removals before: each pair in its turn. */
			imap_context_begin(s, c);
			buf_printf(&s->out, " REMOVEFROM (%ld %u)\r\n", pos + 1,
			    imap_context_num(s, c, idx[i]));
			imap_send(s);
		}
		imap_context_line0(s, c, "REMOVEFROM", nums, m);
	}
	free(nums);
}

/*
 * Refresh.
 */

/* state[i]: 0 for the messages c has not seen as they are now, the
 * others IMAP_SEARCH_SKIP; the count of the former. */
static size_t
imap_context_changed(const struct imap_view *v, const struct imap_context *c,
    unsigned char *state)
{
	size_t n = 0;

	for (unsigned i = 0; i < v->count; i++) {
		if (v->msgs[i].modseq > c->modseq ||
		    v->msgs[i].uid > c->uid_last) {
			state[i] = 0;
			n++;
		} else
			state[i] = IMAP_SEARCH_SKIP;
	}
	return n;
}

/* SEARCH: the changed messages that left the result, then those that
 * entered it, each as one line; the result follows in mailbox order. */
static void
imap_context_apply_search(struct imap_session *s, struct imap_context *c,
    const unsigned char *state)
{
	const struct imap_view *v = &s->view;
	uint32_t *gone, *came, *merged;
	size_t ngone = 0, ncame = 0, n = 0, j = 0;

	gone = xreallocarray(NULL, v->count + 1, sizeof(*gone));
	came = xreallocarray(NULL, v->count + 1, sizeof(*came));
	for (unsigned i = 0; i < v->count; i++) {
		bool in;

		if (state[i] == IMAP_SEARCH_SKIP)
			continue;
		in = imap_context_pos(c, v->msgs[i].uid) >= 0;
		if (in && state[i] != 1)
			gone[ngone++] = v->msgs[i].uid;
		else if (!in && state[i] == 1)
			came[ncame++] = v->msgs[i].uid;
	}
	/* The new result: the old less gone, plus came, both ascending. */
	merged = xreallocarray(NULL, c->count + ncame + 1, sizeof(*merged));
	for (size_t i = 0, g = 0; i < c->count; i++) {
		while (g < ngone && gone[g] < c->uids[i])
			g++;
		if (g < ngone && gone[g] == c->uids[i])
			continue;
		while (j < ncame && came[j] < c->uids[i])
			merged[n++] = came[j++];
		merged[n++] = c->uids[i];
	}
	while (j < ncame)
		merged[n++] = came[j++];
	free(c->uids);
	c->uids = merged;
	c->count = n;
	c->cap = c->count + ncame + 1;
	if (!c->uid) {
		/* Sequence numbers of the view as it is now. */
		for (size_t i = 0; i < ngone; i++)
			gone[i] = (uint32_t)imap_context_view_index(v,
			    gone[i]) + 1;
		for (size_t i = 0; i < ncame; i++)
			came[i] = (uint32_t)imap_context_view_index(v,
			    came[i]) + 1;
	}
	imap_context_line0(s, c, "REMOVEFROM", gone, ngone);
	imap_context_line0(s, c, "ADDTO", came, ncame);
	free(gone);
	free(came);
}

static int
imap_context_cmp_uid(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Members the sort found no record of (expunged, not reported yet):
 * they left the result, said while their numbers still hold. */
static void
imap_context_lost(struct imap_session *s, struct imap_context *c,
    const struct imap_sort_msg *msgs, size_t n)
{
	uint32_t *found;
	long vi;

	found = xreallocarray(NULL, n + 1, sizeof(*found));
	for (size_t i = 0; i < n; i++)
		found[i] = s->view.msgs[msgs[i].seq - 1].uid;
	qsort(found, n, sizeof(*found), imap_context_cmp_uid);
	for (size_t i = 0; i < c->count;) {
		if (bsearch(&c->uids[i], found, n, sizeof(*found),
		    imap_context_cmp_uid) != NULL ||
		    (vi = imap_context_view_index(&s->view, c->uids[i])) < 0) {
			i++;
			continue;
		}
		imap_context_begin(s, c);
		buf_printf(&s->out, " REMOVEFROM (%zu %u)\r\n", i + 1,
		    imap_context_num(s, c, (unsigned)vi));
		imap_send(s);
		imap_context_remove_at(c, i);
	}
	free(found);
}

/* SORT: the changed messages that left, at their positions; then the
 * members and those that entered sorted again, and an ADDTO at its
 * final position for each newcomer, in ascending positions (each insert
 * leaves the positions before it as they are). */
static void
imap_context_apply_sort(struct imap_session *s, struct store *st,
    struct imap_context *c, unsigned char *state)
{
	const struct imap_view *v = &s->view;
	struct imap_sort_msg *msgs;
	unsigned char *want;
	size_t n;
	long pos, vi;

	want = xcalloc((size_t)v->count + 1, 1);
	for (unsigned i = 0; i < v->count; i++) {
		uint32_t uid = v->msgs[i].uid;

		pos = imap_context_pos(c, uid);
		if (state[i] == IMAP_SEARCH_SKIP || state[i] == 1) {
			/* Unchanged: a member stays one. */
			want[i] = pos >= 0 || state[i] == 1;
			continue;
		}
		if (pos < 0)
			continue;
		imap_context_begin(s, c);
		buf_printf(&s->out, " REMOVEFROM (%ld %u)\r\n", pos + 1,
		    imap_context_num(s, c, i));
		imap_send(s);
		imap_context_remove_at(c, (size_t)pos);
	}
	/* A member expunged but not yet reported is not in want: it
	 * stays where it is until its EXPUNGE. */
	for (size_t i = 0; i < c->count; i++)
		if ((vi = imap_context_view_index(v, c->uids[i])) >= 0)
			want[vi] = 1;
	if (imap_sort_collect(s, st, c->uid, want, &msgs, &n) < 0) {
		free(want);
		return;
	}
	imap_sort_order(msgs, n, &c->prog);
	imap_context_lost(s, c, msgs, n);
	if (n + 1 > c->cap) {
		c->cap = n + 1;
		c->uids = xreallocarray(c->uids, c->cap, sizeof(*c->uids));
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t uid = v->msgs[msgs[i].seq - 1].uid;

		if (imap_context_pos(c, uid) < 0) {
			imap_context_begin(s, c);
			buf_printf(&s->out, " ADDTO (%zu %u)\r\n", i + 1,
			    msgs[i].num);
			imap_send(s);
		}
	}
	for (size_t i = 0; i < n; i++)
		c->uids[i] = v->msgs[msgs[i].seq - 1].uid;
	c->count = n;
	imap_sort_msgs_free(msgs, n);
	free(msgs);
	free(want);
}

static void
imap_context_refresh_one(struct imap_session *s, struct store *st,
    struct imap_context *c)
{
	unsigned char *state;

	state = xcalloc((size_t)s->view.count + 1, 1);
	if (imap_context_changed(&s->view, c, state) == 0) {
		free(state);
		return;
	}
	if (imap_search_run_some(s, st, c->search, state) < 0) {
		free(state);
		return;
	}
	if (c->sorted)
		imap_context_apply_sort(s, st, c, state);
	else
		imap_context_apply_search(s, c, state);
	imap_context_mark(&s->view, c);
	free(state);
}

void
imap_context_refresh(struct imap_session *s)
{
	struct store *st;

	if (s->view.nctx == 0 || s->state != IMAP_STATE_SELECTED ||
	    (st = s->st) == NULL)
		return;
	for (unsigned k = 0; k < s->view.nctx; k++)
		imap_context_refresh_one(s, st, s->view.ctx[k]);
}

/*
 * CANCELUPDATE.
 */

void
imap_cmd_cancelupdate(struct imap_session *s, const struct imap_cmd *cmd)
{
	struct imap_view *v = &s->view;
	const char *tag, *error;
	unsigned k;

	if (cmd->argc == 0) {
		imap_bad(s, "CANCELUPDATE \"tag\" ...");
		return;
	}
	/* All named ones must exist, or none is cancelled. */
	for (unsigned i = 0; i < cmd->argc; i++) {
		if (cmd->args[i].type != IMAP_ARG_STRING ||
		    imap_arg_string(&cmd->args[i], &tag, &error) < 0) {
			imap_bad(s, "CANCELUPDATE takes quoted tags");
			return;
		}
		if (imap_context_find(s, tag) == NULL) {
			imap_bad(s, "No search context has that tag");
			return;
		}
	}
	for (unsigned i = 0; i < cmd->argc; i++) {
		(void)imap_arg_string(&cmd->args[i], &tag, &error);
		for (k = 0; k < v->nctx; k++)
			if (strcmp(v->ctx[k]->tag, tag) == 0)
				break;
		if (k == v->nctx)
			continue;	/* named twice */
		imap_context_free(&v->ctx[k]);
		memmove(&v->ctx[k], &v->ctx[k + 1],
		    (v->nctx - k - 1) * sizeof(v->ctx[0]));
		v->nctx--;
	}
	imap_tagged(s, "OK", "CANCELUPDATE completed");
}
