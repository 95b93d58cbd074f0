/*
 * imap_thread.c: THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256
 * sections 2.1 and 4; the second is Jamie Zawinski's algorithm as the RFC
 * words it), over the keys imap_sort.c loaded.
 *
 * Containers live in one array and point at each other by index (0 is
 * "none"); Message-IDs are found through an open-addressing table. A
 * link that would make a loop, or hang a message deeper than
 * IMAP_THREAD_DEPTH_MAX, is not made, so hostile References (cycles,
 * thousands of IDs, a chain of a hundred thousand replies) cost bounded
 * work and bounded recursion.
 *
 * Trusts nothing in the header values.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "msg.h"
#include "xmalloc.h"
#include "server/imap/imap_private.h"
#include "server/imap/imap_sort.h"

/* A container (RFC 5256 section 4, step 1). */
struct thr_node {
	struct imap_sort_msg *msg;	/* NULL: a dummy */
	const char *id;			/* its Message-ID, or NULL */
	size_t id_len;
	size_t parent, child, next;	/* indexes; 0 = none */
	/* The message that dates and names it (itself, or for a dummy its
	 * first child's), set once children are sorted. */
	struct imap_sort_msg *first;
};

struct thr {
	struct thr_node *n;	/* n[0] is unused */
	size_t count, cap;
	size_t *table;		/* Message-ID hash table of node indexes */
	size_t table_size;	/* a power of two */
};

static uint64_t
thr_hash(const char *id, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)id[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* The same, ASCII case folded (base subjects compare without case). */
static uint64_t
thr_hash_ci(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		h ^= c >= 'a' && c <= 'z' ? c - 32 : c;
		h *= 0x100000001b3ULL;
	}
	return h;
}

static size_t
thr_new(struct thr *t, const char *id, size_t id_len)
{
	struct thr_node *n;

	if (t->count == t->cap) {
		t->cap = t->cap == 0 ? 64 : t->cap * 2;
		t->n = xreallocarray(t->n, t->cap, sizeof(*t->n));
	}
	n = &t->n[t->count];
	memset(n, 0, sizeof(*n));
	n->id = id;
	n->id_len = id_len;
	return t->count++;
}

/* Double the Message-ID table and put every named container back. */
static void
thr_grow(struct thr *t)
{
	size_t size = t->table_size * 2, mask = size - 1;

	free(t->table);
	t->table = xcalloc(size, sizeof(*t->table));
	t->table_size = size;
	for (size_t c = 1; c < t->count; c++) {
		size_t i;

		if (t->n[c].id == NULL)
			continue;
		i = (size_t)thr_hash(t->n[c].id, t->n[c].id_len) & mask;
		while (t->table[i] != 0)
			i = (i + 1) & mask;
		t->table[i] = c;
	}
}

/* The container of Message-ID id (made as a dummy if new). Message-IDs
 * are compared as they are written (RFC 5256 says byte for byte). */
static size_t
thr_lookup(struct thr *t, const char *id, size_t len)
{
	size_t mask, i;

	if ((t->count + 1) * 2 > t->table_size)
		thr_grow(t);
	mask = t->table_size - 1;
	for (i = (size_t)thr_hash(id, len) & mask; t->table[i] != 0;
	    i = (i + 1) & mask) {
		const struct thr_node *n = &t->n[t->table[i]];

		if (n->id_len == len && memcmp(n->id, id, len) == 0)
			return t->table[i];
	}
	t->table[i] = thr_new(t, id, len);
	return t->table[i];
}

/* Whether b is a itself or one of its ancestors, walking at most
 * IMAP_THREAD_DEPTH_MAX steps up from a (true past that: as good as a
 * loop, the link is not made). */
static bool
thr_ancestor_or_self(const struct thr *t, size_t a, size_t b)
{
	for (unsigned depth = 0; a != 0; a = t->n[a].parent, depth++) {
		if (a == b || depth >= IMAP_THREAD_DEPTH_MAX)
			return true;
	}
	return false;
}

static void
thr_unlink(struct thr *t, size_t c)
{
	size_t p = t->n[c].parent, *pp;

	if (p == 0)
		return;
	for (pp = &t->n[p].child; *pp != 0; pp = &t->n[*pp].next)
		if (*pp == c) {
			*pp = t->n[c].next;
			break;
		}
	t->n[c].parent = 0;
	t->n[c].next = 0;
}

/* Make c a child of p (at the end of its children), unless that loops. */
static void
thr_link(struct thr *t, size_t p, size_t c)
{
	size_t *pp;

	if (thr_ancestor_or_self(t, p, c))
		return;
	thr_unlink(t, c);
	t->n[c].next = 0;	/* a root leaves the root list's chain */
	for (pp = &t->n[p].child; *pp != 0; pp = &t->n[*pp].next)
		;
	*pp = c;
	t->n[c].parent = p;
}

/* The next Message-ID "<...>" at or after *p: its offset and length in
 * v; false when there is none. In "<a <b>" the inner one counts. */
static bool
thr_next_id(const char *v, const char **p, size_t *off_r, size_t *len_r)
{
	const char *lt, *gt, *lt2;

	while ((lt = strchr(*p, '<')) != NULL) {
		if ((gt = strchr(lt + 1, '>')) == NULL)
			return false;
		while ((lt2 = memchr(lt + 1, '<', (size_t)(gt - lt - 1))) !=
		    NULL)
			lt = lt2;
		*p = gt + 1;
		if (gt - lt >= 2) {
			*off_r = (size_t)(lt - v);
			*len_r = (size_t)(gt - lt + 1);
			return true;
		}
	}
	return false;
}

/* The Message-IDs of a References value, the last IMAP_THREAD_REFS_MAX
 * of them (the closest ancestors), as (offset, length) pairs. */
static size_t
thr_refs(const char *v, size_t (*ids)[2])
{
	const char *p = v;
	size_t total = 0, skip, n = 0, off, len;

	while (thr_next_id(v, &p, &off, &len))
		total++;
	skip = total > IMAP_THREAD_REFS_MAX ? total - IMAP_THREAD_REFS_MAX : 0;
	for (p = v; thr_next_id(v, &p, &off, &len);) {
		if (skip > 0) {
			skip--;
			continue;
		}
		ids[n][0] = off;
		ids[n++][1] = len;
	}
	return n;
}

/* Step 1: containers and links for message m. */
static void
thr_add_message(struct thr *t, struct imap_sort_msg *m)
{
	size_t ids[IMAP_THREAD_REFS_MAX][2], n, prev = 0, self;

	n = thr_refs(m->refs, ids);
	/* 1.A: link the references in order, not changing links that
	 * exist. */
	for (size_t i = 0; i < n; i++) {
		size_t c = thr_lookup(t, m->refs + ids[i][0], ids[i][1]);

		if (prev != 0 && t->n[c].parent == 0)
			thr_link(t, prev, c);
		prev = c;
	}
	/* 1.B: the message's own container; a missing or duplicate
	 * Message-ID gets one of its own. */
	self = m->msgid[0] != '\0' ?
	    thr_lookup(t, m->msgid, strlen(m->msgid)) : 0;
	if (self == 0 || t->n[self].msg != NULL)
		self = thr_new(t, NULL, 0);
	t->n[self].msg = m;
	/* A parent presumed from other References gives way to the one
	 * the message names itself; without references it stays. */
	if (prev != 0 && prev != self)
		thr_link(t, prev, self);
}

/* Step 3 for the children of parent (0: the root set, held in *list):
 * dummies without children go, dummies with children give way to them,
 * except at the root where that would make several roots of one. */
static size_t
thr_prune(struct thr *t, size_t list, size_t parent)
{
	size_t head = 0, *tail = &head;

	while (list != 0) {
		size_t c = list, next = t->n[c].next, kids, k, n = 0;

		list = next;
		t->n[c].next = 0;
		kids = thr_prune(t, t->n[c].child, c);
		t->n[c].child = kids;
		for (k = kids; k != 0; k = t->n[k].next)
			n++;
		if (t->n[c].msg == NULL && (n == 0 ||
		    parent != 0 || n == 1)) {
			/* Promote the children (none, or at the root one). */
			for (k = kids; k != 0; k = t->n[k].next) {
				t->n[k].parent = parent;
				*tail = k;
				tail = &t->n[k].next;
			}
			*tail = 0;
			continue;
		}
		t->n[c].parent = parent;
		*tail = c;
		tail = &t->n[c].next;
	}
	return head;
}

static int
thr_cmp_first(const struct thr *t, size_t a, size_t b)
{
	const struct imap_sort_msg *x = t->n[a].first, *y = t->n[b].first;

	if (x->date != y->date)
		return x->date < y->date ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sort a sibling list by sent date (insertion into an array, then
 * relinked), after sorting each one's children; sets .first. */
static size_t
thr_sort(struct thr *t, size_t list)
{
	size_t n = 0, *a, i, head;

	for (size_t k = list; k != 0; k = t->n[k].next)
		n++;
	if (n == 0)
		return 0;
	a = xreallocarray(NULL, n, sizeof(*a));
	for (i = 0; list != 0; list = t->n[list].next) {
		size_t c = list;

		t->n[c].child = thr_sort(t, t->n[c].child);
		t->n[c].first = t->n[c].msg != NULL ? t->n[c].msg :
		    t->n[t->n[c].child].first;
		a[i++] = c;
	}
	/* Stable insertion sort: lists are short, and mostly in order. */
	for (i = 1; i < n; i++) {
		size_t c = a[i], j = i;

		for (; j > 0 && thr_cmp_first(t, a[j - 1], c) > 0; j--)
			a[j] = a[j - 1];
		a[j] = c;
	}
	for (i = 0; i + 1 < n; i++)
		t->n[a[i]].next = a[i + 1];
	t->n[a[n - 1]].next = 0;
	head = a[0];
	free(a);
	return head;
}

/* Append the children list of c to d's. */
static void
thr_adopt_children(struct thr *t, size_t d, size_t c)
{
	size_t k = t->n[c].child;

	while (k != 0) {
		size_t next = t->n[k].next;

		t->n[k].next = 0;
		t->n[k].parent = 0;
		thr_link(t, d, k);
		k = next;
	}
	t->n[c].child = 0;
}

/* 5.B: root i goes into root j (the table's), which may become a new
 * dummy holding both. */
static void
thr_merge(struct thr *t, size_t *roots, size_t j, size_t i)
{
	size_t o = roots[j], r = roots[i];

	if (t->n[o].msg == NULL && t->n[r].msg == NULL)
		thr_adopt_children(t, o, r);
	else if (t->n[o].msg == NULL)
		thr_link(t, o, r);
	else if (t->n[r].msg == NULL) {
		thr_link(t, r, o);
		roots[j] = r;
	} else if (t->n[r].msg->reply && !t->n[o].msg->reply)
		thr_link(t, o, r);
	else {
		size_t d = thr_new(t, NULL, 0);

		t->n[d].first = t->n[o].first;
		thr_link(t, d, o);
		thr_link(t, d, r);
		roots[j] = d;
	}
	roots[i] = 0;
}

/* Step 5: roots whose base subjects are equal are gathered. roots is an
 * array of the root set in order; entries that go become 0. */
static void
thr_subjects(struct thr *t, size_t *roots, size_t n)
{
	size_t size = 16, *tab, mask;

	while (size < 2 * n)
		size *= 2;
	tab = xcalloc(size, sizeof(*tab));	/* indexes into roots, +1 */
	mask = size - 1;
	for (size_t pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < n; i++) {
			size_t r = roots[i], slot, h;
			const struct imap_sort_msg *m = t->n[r].first;

			if (r == 0 || m->subject[0] == '\0')
				continue;
			h = (size_t)thr_hash_ci(m->subject);
			for (slot = h & mask; tab[slot] != 0 &&
			    strcasecmp(t->n[roots[tab[slot] - 1]].first->subject,
			    m->subject) != 0; slot = (slot + 1) & mask)
				;
			if (pass == 0) {
				size_t o;

				/* 5.A: the table prefers a dummy, then a
				 * non-reply. */
				if (tab[slot] == 0) {
					tab[slot] = i + 1;
					continue;
				}
				o = roots[tab[slot] - 1];
				if ((t->n[r].msg == NULL &&
				    t->n[o].msg != NULL) ||
				    (t->n[o].msg != NULL && t->n[r].msg !=
				    NULL && t->n[o].msg->reply &&
				    !t->n[r].msg->reply))
					tab[slot] = i + 1;
				continue;
			}
			if (tab[slot] - 1 == i)
				continue;
			/* 5.B: merge this root into the table's. */
			thr_merge(t, roots, tab[slot] - 1, i);
		}
	free(tab);
}

/* Write one container and its descendants as thread members. */
static void
thr_write_node(const struct thr *t, size_t c, bool first, struct buf *out)
{
	size_t k = t->n[c].child;

	if (t->n[c].msg != NULL) {
		buf_printf(out, first ? "%u" : " %u", t->n[c].msg->num);
		first = false;
	}
	if (k != 0 && t->n[k].next == 0 && t->n[c].msg != NULL) {
		thr_write_node(t, k, false, out);
		return;
	}
	/* thread-nested = 2*thread-list: one space after the numbers,
	 * none between the lists. */
	for (; k != 0; k = t->n[k].next) {
		buf_append_str(out, first ? "(" : " (");
		thr_write_node(t, k, true, out);
		buf_append_str(out, ")");
		first = true;
	}
}

/* thread-data = "THREAD" [SP 1*thread-list]: the lists follow one
 * another without spaces. */
static int
thr_write_roots(struct thr *t, size_t list, struct buf *out)
{
	for (bool first = true; list != 0; list = t->n[list].next) {
		buf_append_str(out, first ? " (" : "(");
		first = false;
		thr_write_node(t, list, true, out);
		if (buf_append_str(out, ")") < 0)
			return -1;
	}
	return 0;
}

static int
thr_references(struct imap_sort_msg *msgs, size_t count, struct buf *out)
{
	struct thr t;
	size_t list = 0, *tail = &list, *roots, n = 0;
	int ret;

	memset(&t, 0, sizeof(t));
	t.table_size = 64;
	while (t.table_size < 4 * count)
		t.table_size *= 2;
	t.table = xcalloc(t.table_size, sizeof(*t.table));
	(void)thr_new(&t, NULL, 0);	/* index 0: none */
	for (size_t i = 0; i < count; i++)
		thr_add_message(&t, &msgs[i]);
	/* Step 2: the root set. */
	for (size_t c = 1; c < t.count; c++)
		if (t.n[c].parent == 0) {
			t.n[c].next = 0;
			*tail = c;
			tail = &t.n[c].next;
		}
	list = thr_prune(&t, list, 0);
	list = thr_sort(&t, list);
	for (size_t c = list; c != 0; c = t.n[c].next)
		n++;
	roots = xreallocarray(NULL, n + 1, sizeof(*roots));
	n = 0;
	for (size_t c = list; c != 0; c = t.n[c].next)
		roots[n++] = c;
	thr_subjects(&t, roots, n);
	/* Step 6: the kept roots in their order, children sorted again. */
	list = 0;
	tail = &list;
	for (size_t i = 0; i < n; i++)
		if (roots[i] != 0) {
			t.n[roots[i]].next = 0;
			t.n[roots[i]].parent = 0;
			*tail = roots[i];
			tail = &t.n[roots[i]].next;
		}
	free(roots);
	list = thr_sort(&t, list);
	ret = thr_write_roots(&t, list, out);
	free(t.table);
	free(t.n);
	return ret;
}

static int
thr_cmp_subject(const void *x, const void *y)
{
	const struct imap_sort_msg *a = x, *b = y;
	int c = strcasecmp(a->subject, b->subject);

	if (c != 0)
		return c;
	if (a->date != b->date)
		return a->date < b->date ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* ORDEREDSUBJECT: messages by base subject, then date; each subject a
 * thread whose first message is the parent of the others; threads by
 * the date of their first message. */
static int
thr_ordered_subject(struct imap_sort_msg *msgs, size_t count,
    struct buf *out)
{
	struct thr t;
	size_t list = 0, *tail = &list;
	int ret;

	qsort(msgs, count, sizeof(*msgs), thr_cmp_subject);
	memset(&t, 0, sizeof(t));
	(void)thr_new(&t, NULL, 0);
	for (size_t i = 0; i < count;) {
		size_t root = thr_new(&t, NULL, 0), j;

		t.n[root].msg = &msgs[i];
		for (j = i + 1; j < count && strcasecmp(msgs[j].subject,
		    msgs[i].subject) == 0; j++) {
			size_t c = thr_new(&t, NULL, 0);

			t.n[c].msg = &msgs[j];
			thr_link(&t, root, c);
		}
		*tail = root;
		tail = &t.n[root].next;
		i = j;
	}
	list = thr_sort(&t, list);
	ret = thr_write_roots(&t, list, out);
	free(t.n);
	return ret;
}

int
imap_thread_write(struct imap_sort_msg *msgs, size_t count,
    bool references, struct buf *out)
{
	if (count == 0)
		return 0;
	return references ? thr_references(msgs, count, out) :
	    thr_ordered_subject(msgs, count, out);
}

void
imap_cmd_thread(struct imap_session *s, const struct imap_cmd *cmd)
{
	struct imap_sort_msg *msgs;
	const char *algo, *error;
	bool references;
	size_t n;

	if (cmd->argc < 1 || imap_arg_atom(&cmd->args[0], &algo, &error) < 0) {
		imap_bad(s, cmd->argc < 1 ? "Missing threading algorithm" :
		    error);
		return;
	}
	if (strcasecmp(algo, "REFERENCES") == 0)
		references = true;
	else if (strcasecmp(algo, "ORDEREDSUBJECT") == 0)
		references = false;
	else {
		imap_bad(s, "Unknown threading algorithm");
		return;
	}
	if (imap_sort_load(s, cmd, 1, &msgs, &n) < 0)
		return;
	buf_append_str(&s->out, "* THREAD");
	(void)imap_thread_write(msgs, n, references, &s->out);
	buf_append_str(&s->out, "\r\n");
	imap_sort_msgs_free(msgs, n);
	free(msgs);
	imap_send(s);
	imap_tagged(s, "OK", "%sTHREAD completed", cmd->uid ? "UID " : "");
}
