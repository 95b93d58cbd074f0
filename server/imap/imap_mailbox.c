/*
 * imap_mailbox.c: mailbox names on the wire, the selected folder's view
 * and its updates (EXISTS, EXPUNGE, FETCH FLAGS; with RFC 7162 on,
 * MODSEQ in FETCH and VANISHED for EXPUNGE; FLAGS and PERMANENTFLAGS
 * again when keywords new to the view appear, before the FETCH that
 * shows them), and the commands SELECT,
 * EXAMINE (with CONDSTORE and QRESYNC parameters: HIGHESTMODSEQ,
 * VANISHED (EARLIER) from the index's expunge records, [CLOSED]), CLOSE,
 * UNSELECT, LIST, LSUB, STATUS (HIGHESTMODSEQ too) and NAMESPACE.
 * SELECT, EXAMINE, STATUS and the view's updates sync lazily (a file
 * another program left is adopted from its name, unread); what needs the
 * files' content has them read first (imap_view_complete).
 *
 * Mailbox names are modified UTF-7 on the wire, or UTF-8 once the session
 * enabled UTF8=ACCEPT or IMAP4rev2 (then SELECT and EXAMINE also send no
 * RECENT, a LIST of the mailbox and always [CLOSED] on a reselect, RFC
 * 9051 6.3.2); the store's names are UTF-8 either way.
 *
 * Trusts nothing the client sends: names come through the parser's
 * accessors and lib/utf7 or the UTF-8 check (imap_mailbox_utf8_valid:
 * strict UTF-8, no control characters), and the store refuses names that
 * would leave the user's storage. Trusts the index, but writes no keyword
 * name from it that is not a valid atom (store_keyword_valid).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "compat/compat.h"
#include "log.h"
#include "mindex.h"
#include "store.h"
#include "utf7.h"
#include "xmalloc.h"
#include "server/imap/imap_notify.h"
#include "server/imap/imap_private.h"
#include "server/imap/imap_seqset.h"
#include "server/imap/imap_write.h"

#define IMAP_NAME_MAX		1024	/* a mailbox name, decoded */
#define IMAP_LIST_MAX		10000	/* folders one LIST reports */

/*
 * Names.
 */

bool
imap_mailbox_utf8_valid(const char *name, size_t len)
{
	const unsigned char *p = (const unsigned char *)name;

	if (!imap_write_utf8_valid(p, len))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < 0x20 || p[i] == 0x7f)
			return false;
		/* U+0080-U+009F: C2 80 .. C2 9F */
		if (p[i] == 0xc2 && i + 1 < len && p[i + 1] <= 0x9f)
			return false;
	}
	return true;
}

int
imap_mailbox_from_wire(struct imap_session *s, const char *wire,
    struct buf *out)
{
	size_t len = strlen(wire);
	int ret;

	buf_truncate(out, 0);
	if (strcasecmp(wire, "INBOX") == 0) {
		buf_append_str(out, "INBOX");
		return 0;
	}
	/* With UTF-8 on, "&" is an ampersand: no modified UTF-7 is read
	 * (RFC 6855 section 3). */
	if (s->utf8)
		ret = imap_mailbox_utf8_valid(wire, len) &&
		    len <= IMAP_NAME_MAX ? buf_append(out, wire, len) : -1;
	else
		ret = utf7_decode(wire, out);
	if (wire[0] == '\0' || ret < 0 || out->len > IMAP_NAME_MAX) {
		buf_truncate(out, 0);
		imap_tagged(s, "NO", "[CANNOT] Invalid mailbox name");
		return -1;
	}
	(void)buf_cstr(out);
	return 0;
}

int
imap_mailbox_to_wire(const char *name, bool utf8, struct buf *out)
{
	buf_truncate(out, 0);
	if (utf8) {
		if (!imap_write_utf8_valid((const unsigned char *)name,
		    strlen(name)) || buf_append_str(out, name) < 0)
			return -1;
	} else if (utf7_encode(name, out) < 0)
		return -1;
	(void)buf_cstr(out);
	return 0;
}

void
imap_mailbox_put(const struct imap_session *s, const char *name,
    struct buf *b)
{
	struct imap_write w;
	struct buf wire;

	buf_init(&wire, IMAP_NAME_MAX * 4 + 16);
	imap_write_init(&w, b, imap_write_flags(s) & IMAP_WRITE_UTF8);
	if (imap_mailbox_to_wire(name, s->utf8, &wire) < 0 ||
	    imap_write_string_mem(&w, wire.data, wire.len) < 0 ||
	    imap_write_finish(&w) < 0) {
		(void)imap_write_finish(&w);
		buf_append_str(b, "\"\"");
	}
	buf_free(&wire);
}

/*
 * The view.
 */

/*
 * Interned keyword lists and names (struct imap_kwtab).
 */

static void
imap_kwtab_free(struct imap_kwtab *t)
{
	buf_free(&t->data);
	free(t->ent);
	free(t->slot);
	memset(t, 0, sizeof(*t));
}

static uint32_t
imap_kwtab_hash(const char *p, size_t len, bool fold)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (fold && c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		h = (h ^ c) * 16777619u;
	}
	return h;
}

static bool
imap_kwtab_eq(const struct imap_kwtab *t, unsigned e, const char *p,
    size_t len, bool fold)
{
	const struct imap_kwent *ent = &t->ent[e];
	const char *d = (const char *)t->data.data + ent->off;

	if (ent->len != len)
		return false;
	return fold ? strncasecmp(d, p, len) == 0 : memcmp(d, p, len) == 0;
}

static void
imap_kwtab_grow(struct imap_kwtab *t)
{
	unsigned n = t->nslots == 0 ? 64 : t->nslots * 2;
	uint32_t *slot;

	if (n <= t->nslots)
		log_panic("imap: keyword table of %u entries", t->count);
	slot = xcalloc(n, sizeof(*slot));
	for (unsigned e = 0; e < t->count; e++) {
		unsigned i = t->ent[e].hash & (n - 1);

		while (slot[i] != 0)
			i = (i + 1) & (n - 1);
		slot[i] = e + 1;
	}
	free(t->slot);
	t->slot = slot;
	t->nslots = n;
}

/* The entry of p (len bytes; fold: names, compared ignoring ASCII case),
 * added if it is new (*added_r). */
static unsigned
imap_kwtab_intern(struct imap_kwtab *t, const char *p, size_t len, bool fold,
    bool *added_r)
{
	uint32_t h = imap_kwtab_hash(p, len, fold);
	unsigned i;

	*added_r = false;
	if (t->nslots == 0)
		buf_init(&t->data, SIZE_MAX);
	if (t->count >= t->nslots / 2)
		imap_kwtab_grow(t);
	for (i = h & (t->nslots - 1); t->slot[i] != 0;
	    i = (i + 1) & (t->nslots - 1))
		if (imap_kwtab_eq(t, t->slot[i] - 1, p, len, fold))
			return t->slot[i] - 1;
	if (t->count == t->cap) {
		t->cap = t->cap == 0 ? 16 : t->cap * 2;
		t->ent = xreallocarray(t->ent, t->cap, sizeof(*t->ent));
	}
	t->ent[t->count].off = t->data.len;
	t->ent[t->count].len = len;
	t->ent[t->count].hash = h;
	if (buf_append(&t->data, p, len) < 0)
		log_panic("imap: keyword table full");
	t->slot[i] = t->count + 1;
	*added_r = true;
	return t->count++;
}

static const char *
imap_kwtab_get(const struct imap_kwtab *t, unsigned e, size_t *len_r)
{
	*len_r = t->ent[e].len;
	return (const char *)t->data.data + t->ent[e].off;
}

bool
imap_view_kw_names(struct imap_view *v, const char *kw, size_t kw_len)
{
	const char *p = kw, *end = kw + kw_len;
	bool added, any = false;
	size_t len;

	for (; p != NULL && p < end; p += len + 1) {
		len = strnlen(p, (size_t)(end - p));
		/* Only names that can go on the wire as they are. */
		if (len == 0 || p + len == end || !store_keyword_valid(p))
			continue;
		(void)imap_kwtab_intern(&v->kwnames, p, len, true, &added);
		any |= added;
	}
	return any;
}

uint32_t
imap_view_kw_set(struct imap_view *v, const char *kw, size_t kw_len)
{
	unsigned e;
	bool added;

	if (kw_len == 0)
		return 0;
	e = imap_kwtab_intern(&v->kwsets, kw, kw_len, false, &added);
	if (added)
		(void)imap_view_kw_names(v, kw, kw_len);
	return e + 1;
}

/* The folder's flags: system flags, $Forwarded, and its keywords. */
static void
imap_view_flag_names(const struct imap_view *v, struct buf *b)
{
	const char *name;
	size_t len;

	buf_append_str(b, IMAP_SYSTEM_FLAGS " $Forwarded");
	for (unsigned i = 0; i < v->kwnames.count; i++) {
		name = imap_kwtab_get(&v->kwnames, i, &len);
		buf_append_byte(b, ' ');
		buf_append(b, name, len);
	}
}

/* FLAGS and PERMANENTFLAGS of the view into s->out; select: as SELECT
 * and EXAMINE say them (EXAMINE: "PERMANENTFLAGS ()"), else as an
 * update, which a read-only view gets without PERMANENTFLAGS. */
static void
imap_view_kw_flags(struct imap_session *s, bool select)
{
	struct imap_view *v = &s->view;

	buf_append_str(&s->out, "* FLAGS (");
	imap_view_flag_names(v, &s->out);
	buf_append_str(&s->out, ")\r\n");
	if (v->readonly && select)
		buf_append_str(&s->out, "* OK [PERMANENTFLAGS ()] Read-only "
		    "mailbox\r\n");
	else if (!v->readonly) {
		buf_append_str(&s->out, "* OK [PERMANENTFLAGS (");
		imap_view_flag_names(v, &s->out);
		buf_append_str(&s->out, " \\*)] Flags permitted\r\n");
	}
	v->kw_announced = v->kwnames.count;
}

bool
imap_view_kw_announce(struct imap_session *s)
{
	if (s->view.kw_announced >= s->view.kwnames.count)
		return false;
	imap_view_kw_flags(s, false);
	return true;
}

void
imap_view_free(struct imap_view *v)
{
	imap_context_free_all(v);
	free(v->name);
	free(v->msgs);
	imap_kwtab_free(&v->kwsets);
	imap_kwtab_free(&v->kwnames);
	memset(v, 0, sizeof(*v));
}

struct imap_load {
	struct imap_view *v;	/* whose tables the keywords go into */
	struct imap_msgref *msgs;
	unsigned count, cap;
};

static int
imap_load_cb(const struct mindex_msg *m, void *ctx)
{
	struct imap_load *l = ctx;

	if (l->count == l->cap) {
		l->cap = l->cap == 0 ? 64 : l->cap * 2;
		l->msgs = xreallocarray(l->msgs, l->cap, sizeof(*l->msgs));
	}
	l->msgs[l->count].uid = m->uid;
	l->msgs[l->count].flags = m->flags;
	l->msgs[l->count].modseq = m->modseq;
	l->msgs[l->count].kw = imap_view_kw_set(l->v, m->keywords,
	    m->keywords_len);
	l->count++;
	return 0;
}

/* The folder's messages as the index has them now, their keywords
 * interned in v. 1 loaded, 0 no such folder, -1 error (logged). */
static int
imap_load(struct store *st, const char *name, struct imap_view *v,
    struct mindex_folder *f_r, struct imap_load *l)
{
	struct mindex_txn *txn;
	const char *error;
	int ret;

	memset(l, 0, sizeof(*l));
	l->v = v;
	if (mindex_begin(store_index(st), false, &txn, &error) < 0) {
		log_error("imap: index: %s", error);
		return -1;
	}
	ret = mindex_folder_get(txn, name, f_r);
	if (ret > 0 && mindex_msg_iter(txn, f_r->id, 1, imap_load_cb, l) < 0)
		ret = -1;
	mindex_abort(&txn);
	if (ret < 0) {
		log_error("imap: index: %s", mindex_last_error());
		free(l->msgs);
		l->msgs = NULL;
	}
	return ret;
}

void
imap_flags_write(uint32_t flags, const char *kw, size_t kw_len,
    struct buf *b)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} map[] = {
		{ MINDEX_F_ANSWERED, "\\Answered" },
		{ MINDEX_F_FLAGGED, "\\Flagged" },
		{ MINDEX_F_DELETED, "\\Deleted" },
		{ MINDEX_F_SEEN, "\\Seen" },
		{ MINDEX_F_DRAFT, "\\Draft" },
		{ MINDEX_F_FORWARDED, "$Forwarded" },
	};
	const char *p = kw, *end = kw + kw_len;
	bool sp = false;
	size_t len;

	buf_append_byte(b, '(');
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if ((flags & map[i].bit) == 0)
			continue;
		if (sp)
			buf_append_byte(b, ' ');
		buf_append_str(b, map[i].name);
		sp = true;
	}
	for (; p != NULL && p < end; p += len + 1) {
		len = strnlen(p, (size_t)(end - p));
		if (len == 0 || p + len == end || !store_keyword_valid(p))
			continue;
		if (sp)
			buf_append_byte(b, ' ');
		buf_append(b, p, len);
		sp = true;
	}
	buf_append_byte(b, ')');
}

void
imap_fetch_flags_text(uint32_t flags, struct buf *b)
{
	imap_flags_write(flags, NULL, 0, b);
}

/* A message of the view: its flags and keywords as a flag list. */
static void
imap_msgref_flags(const struct imap_view *v, const struct imap_msgref *m,
    struct buf *b)
{
	const char *kw = NULL;
	size_t len = 0;

	if (m->kw != 0)
		kw = imap_kwtab_get(&v->kwsets, m->kw - 1, &len);
	imap_flags_write(m->flags, kw, len, b);
}

void
imap_condstore_on(struct imap_session *s)
{
	/* Enabled in a selected folder by a command other than SELECT:
	 * the client learns where MODSEQs stand (RFC 7162 section 3.1). */
	if (!s->condstore && s->state == IMAP_STATE_SELECTED)
		imap_untagged(s, "OK [HIGHESTMODSEQ %llu] Highest",
		    (unsigned long long)imap_modseq_out(
		    s->view.highestmodseq));
	s->condstore = true;
}

uint64_t
imap_modseq_out(uint64_t modseq)
{
	return modseq == 0 ? 1 : modseq;
}

/* Under QRESYNC the expunged UIDs of the view are said at once, as one
 * "* VANISHED" (RFC 7162 section 3.2.10), in ascending order. */
static void
imap_vanished_send(struct imap_session *s, uint32_t *uids, size_t count)
{
	size_t a = 0, z = count;

	if (count == 0)
		return;
	/* Collected from the highest down: reverse to ascending. */
	while (z > a + 1) {
		uint32_t t = uids[a];

		uids[a++] = uids[--z];
		uids[z] = t;
	}
	buf_append_str(&s->out, "* VANISHED ");
	(void)imap_seqset_format_nums(uids, count, &s->out);
	buf_append_str(&s->out, "\r\n");
	imap_send(s);
}

/* Flag change of message msn for the client, with MODSEQ once CONDSTORE
 * is on; built in s->out (64 keywords pass a reply line's bound) and
 * sent. */
static void
imap_view_flags_changed(struct imap_session *s, unsigned msn,
    const struct imap_msgref *m)
{
	buf_printf(&s->out, "* %u FETCH (UID %u FLAGS ", msn, m->uid);
	imap_msgref_flags(&s->view, m, &s->out);
	if (s->condstore)
		buf_printf(&s->out, " MODSEQ (%llu)",
		    (unsigned long long)imap_modseq_out(m->modseq));
	buf_append_str(&s->out, ")\r\n");
	imap_send(s);
}

/* RFC 5465 MessageNew with fetch-att: the view's messages from index
 * first on, with what fetch (IMAP_NOTIFY_FETCH_*) asks, after their
 * EXISTS. */
static void
imap_view_new_fetch(struct imap_session *s, unsigned first, unsigned fetch)
{
	const char *sp;

	for (unsigned i = first; i < s->view.count; i++) {
		const struct imap_msgref *m = &s->view.msgs[i];

		sp = "";
		buf_printf(&s->out, "* %u FETCH (", i + 1);
		if (fetch & IMAP_NOTIFY_FETCH_UID) {
			buf_printf(&s->out, "UID %u", m->uid);
			sp = " ";
		}
		if (fetch & IMAP_NOTIFY_FETCH_FLAGS) {
			buf_printf(&s->out, "%sFLAGS ", sp);
			imap_msgref_flags(&s->view, m, &s->out);
			sp = " ";
		}
		if (fetch & IMAP_NOTIFY_FETCH_MODSEQ)
			buf_printf(&s->out, "%sMODSEQ (%llu)", sp,
			    (unsigned long long)imap_modseq_out(m->modseq));
		buf_append_str(&s->out, ")\r\n");
		imap_send(s);
	}
}

/* Whether uid is in l (ascending). */
static bool
imap_load_has(const struct imap_load *l, uint32_t uid)
{
	for (unsigned a = 0, z = l->count; a < z;) {
		unsigned mid = a + (z - a) / 2;

		if (l->msgs[mid].uid == uid)
			return true;
		if (l->msgs[mid].uid < uid)
			a = mid + 1;
		else
			z = mid;
	}
	return false;
}

/* The view's messages l no longer has, told to the search contexts
 * before their EXPUNGE. */
static void
imap_view_expunging(struct imap_session *s, const struct imap_load *l)
{
	unsigned *idx = NULL;
	size_t n = 0;

	for (unsigned i = 0; i < s->view.count; i++) {
		if (imap_load_has(l, s->view.msgs[i].uid))
			continue;
		idx = xreallocarray(idx, n + 1, sizeof(*idx));
		idx[n++] = i;
	}
	imap_context_expunging(s, idx, n);
	free(idx);
}

/* Report what changed between the view and l, and make l the view. */
static void
imap_view_apply(struct imap_session *s, struct imap_load *l, bool expunges)
{
	struct imap_view *v = &s->view;
	struct imap_msgref *merged;
	unsigned i = 0, j = 0, n = 0, fetch = 0, old_count;
	uint32_t *gone = NULL;
	size_t ngone = 0;
	int sel;

	/* Keywords new to the folder first: the client learns them from
	 * FLAGS before any FETCH shows them (RFC 3501 7.2.6). */
	if (imap_view_kw_announce(s))
		imap_send(s);
	/* Expunges, highest sequence number first, so each number is
	 * right when the client reads it; a search context hears of them
	 * first (RFC 5267 4.3.4). */
	if (expunges && v->nctx > 0)
		imap_view_expunging(s, l);
	if (expunges) {
		for (i = v->count; i-- > 0;) {
			uint32_t uid = v->msgs[i].uid;
			bool found = false;

			for (unsigned a = 0, z = l->count; a < z;) {
				unsigned mid = a + (z - a) / 2;

				if (l->msgs[mid].uid == uid) {
					found = true;
					break;
				}
				if (l->msgs[mid].uid < uid)
					a = mid + 1;
				else
					z = mid;
			}
			if (found)
				continue;
			if (s->qresync) {
				gone = xreallocarray(gone, ngone + 1,
				    sizeof(*gone));
				gone[ngone++] = uid;
			} else
				imap_untagged(s, "%u EXPUNGE", i + 1);
			memmove(&v->msgs[i], &v->msgs[i + 1],
			    (v->count - i - 1) * sizeof(*v->msgs));
			v->count--;
		}
		imap_vanished_send(s, gone, ngone);
		free(gone);
	}
	/* Under NOTIFY (RFC 5465) the selected mailbox's events are the
	 * client's choice: without MessageNew no EXISTS, without
	 * FlagChange no FETCH (the view takes the flags silently). */
	sel = imap_notify_selected(s, &fetch);
	merged = xreallocarray(NULL, v->count + l->count + 1,
	    sizeof(*merged));
	for (i = 0, j = 0; i < v->count; i++) {
		while (j < l->count && l->msgs[j].uid < v->msgs[i].uid)
			j++;
		merged[n] = v->msgs[i];
		if (j < l->count && l->msgs[j].uid == v->msgs[i].uid) {
			/* A new MODSEQ with the same flags is news too
			 * for a CONDSTORE client (another session's STORE
			 * that changed nothing visible still moved it). */
			if ((sel < 0 || (sel & IMAP_NOTIFY_EV_FLAG)) &&
			    (l->msgs[j].flags != v->msgs[i].flags ||
			    l->msgs[j].kw != v->msgs[i].kw ||
			    (s->condstore &&
			    l->msgs[j].modseq != v->msgs[i].modseq)))
				imap_view_flags_changed(s, n + 1,
				    &l->msgs[j]);
			merged[n] = l->msgs[j];
		}
		n++;
	}
	/* New messages: above the view's highest UID. */
	for (j = 0; j < l->count && (sel < 0 || (sel & IMAP_NOTIFY_EV_NEW));
	    j++)
		if (v->count == 0 || l->msgs[j].uid > v->msgs[v->count - 1].uid)
			merged[n++] = l->msgs[j];
	old_count = v->count;
	if (n != v->count)
		imap_untagged(s, "%u EXISTS", n);
	free(v->msgs);
	v->msgs = merged;
	v->count = v->cap = n;
	if (sel > 0 && fetch != 0)
		imap_view_new_fetch(s, old_count, fetch);
}

int
imap_view_sync(struct imap_session *s, bool expunges)
{
	struct store *st = imap_store(s);
	struct mindex_folder f;
	struct imap_load l;
	const char *error;
	int ret;

	if (st == NULL)
		return -1;
	/* Lazy: a file another program left is adopted from its name; the
	 * commands that answer from its content complete it first
	 * (imap_view_complete). */
	if (store_sync_lazy(st, s->view.name, NULL, &error) < 0) {
		log_error("imap: user=<%s>, sync %s: %s", s->user,
		    s->view.name, error);
		imap_tagged(s, "NO", "[UNAVAILABLE] Cannot read the mailbox");
		return -1;
	}
	ret = imap_load(st, s->view.name, &s->view, &f, &l);
	if (ret <= 0 || f.uidvalidity != s->view.uidvalidity) {
		/* Gone, or rebuilt under a new UIDVALIDITY: nothing this
		 * session knows is valid any more. */
		free(l.msgs);
		imap_untagged(s, "BYE Mailbox was deleted or rebuilt");
		imap_view_free(&s->view);
		imap_seqset_deinit(&s->searchres);
		s->state = IMAP_STATE_LOGOUT;
		if (s->cb->closed != NULL)
			s->cb->closed(s->ctx);
		s->closed = true;
		return -1;
	}
	imap_view_apply(s, &l, expunges);
	free(l.msgs);
	s->view.uidnext = f.uidnext;
	s->view.highestmodseq = f.highestmodseq;
	s->view.dirty = false;
	/* After EXISTS, so the numbers of an ADDTO hold (RFC 5267 4.3.3). */
	imap_context_refresh(s);
	return 0;
}

/*
 * Completion: what only reading a file gives.
 */

/* The folder's count of records adopted unread (MINDEX_C_UNPARSED): one
 * lookup. 0, or -1 (logged). */
static int
imap_folder_unparsed(struct imap_session *s, struct store *st,
    const char *name, uint32_t *n_r)
{
	struct mindex_folder f;
	struct mindex_txn *txn;
	const char *error;
	int ret;

	*n_r = 0;
	if (mindex_begin(store_index(st), false, &txn, &error) < 0) {
		log_error("imap: user=<%s>, index: %s", s->user, error);
		return -1;
	}
	ret = mindex_folder_get(txn, name, &f);
	mindex_abort(&txn);
	if (ret < 0) {
		log_error("imap: user=<%s>, index: %s", s->user,
		    mindex_last_error());
		return -1;
	}
	if (ret > 0)
		*n_r = f.unparsed;
	return 0;
}

/* Complete folder name for need (IMAP_NEED_*): 0 every record has what
 * need asks, 1 some may not (a file that could not be read: check each
 * record with imap_msg_ready), -1 an error (logged). */
static int
imap_folder_complete(struct imap_session *s, struct store *st,
    const char *name, unsigned need)
{
	const char *error = "?";
	uint32_t n;
	int ret;

	if (need == 0)
		return 0;
	for (int attempt = 0; attempt < 2; attempt++) {
		if (imap_folder_unparsed(s, st, name, &n) < 0)
			return -1;
		if (n == 0)
			return 0;
		/* A file renamed (flags) or moved (new/ to cur/) by another
		 * program since the last sync stays unparsed: a sync finds
		 * it, and the second try reads it. */
		if (attempt > 0 && store_sync_lazy(st, name, NULL,
		    &error) < 0)
			goto fail;
		ret = (need & IMAP_NEED_PARSE) != 0 ?
		    store_complete(st, name, &error) :
		    store_complete_sizes(st, name, &error);
		if (ret < 0)
			goto fail;
		/* Sized records stay unparsed: nothing left to count. */
		if ((need & IMAP_NEED_PARSE) == 0)
			return 1;
	}
	if (imap_folder_unparsed(s, st, name, &n) < 0)
		return -1;
	return n > 0 ? 1 : 0;
fail:
	log_error("imap: user=<%s>, reading the messages of %s: %s", s->user,
	    name, error);
	return -1;
}

int
imap_view_complete(struct imap_session *s, unsigned need)
{
	struct store *st;
	int ret;

	if (need == 0)
		return 0;
	if ((st = imap_store(s)) == NULL)
		return -1;
	if ((ret = imap_folder_complete(s, st, s->view.name, need)) < 0)
		imap_tagged(s, "NO", "[UNAVAILABLE] Cannot read the mailbox");
	return ret;
}

bool
imap_msg_ready(const struct mindex_msg *m, unsigned need)
{
	uint32_t cf = m->cache_flags;

	if ((cf & MINDEX_C_UNPARSED) == 0)
		return true;
	if ((need & IMAP_NEED_PARSE) != 0)
		return false;
	return (need & IMAP_NEED_SIZES) == 0 || (cf & MINDEX_C_SIZED) != 0;
}

/*
 * QRESYNC's look back: expunges since a MODSEQ.
 */

static bool
imap_view_has(const struct imap_view *v, uint32_t uid)
{
	unsigned a = 0, z = v->count;

	while (a < z) {
		unsigned mid = a + (z - a) / 2;

		if (v->msgs[mid].uid == uid)
			return true;
		if (v->msgs[mid].uid < uid)
			a = mid + 1;
		else
			z = mid;
	}
	return false;
}

struct imap_vanished {
	struct imap_session *s;
	uint64_t since;
	const struct imap_seqset *known;
	struct imap_seqset set;
};

static void
imap_vanished_flush(struct imap_vanished *vc)
{
	struct imap_session *s = vc->s;

	if (vc->set.count == 0)
		return;
	buf_append_str(&s->out, "* VANISHED (EARLIER) ");
	(void)imap_seqset_format(&vc->set, &s->out);
	buf_append_str(&s->out, "\r\n");
	imap_send(s);
	imap_seqset_clear(&vc->set);
}

static int
imap_vanished_cb(uint32_t uid, uint64_t modseq, void *ctx)
{
	struct imap_vanished *vc = ctx;
	const char *error;

	/* A UID still in the view has not been reported expunged yet:
	 * saying it vanished would put the client's count out of step. */
	if (modseq <= vc->since || (vc->known != NULL &&
	    !imap_seqset_contains(vc->known, uid)) ||
	    imap_view_has(&vc->s->view, uid))
		return 0;
	/* A set too large for one line goes out as several. */
	if (imap_seqset_add(&vc->set, uid, uid, &error) < 0) {
		imap_vanished_flush(vc);
		(void)imap_seqset_add(&vc->set, uid, uid, &error);
	}
	return 0;
}

int
imap_vanished_earlier(struct imap_session *s, uint64_t since,
    const struct imap_seqset *known)
{
	struct imap_vanished vc = { s, since, known, { NULL, 0, 0, false } };
	struct mindex_txn *txn;
	struct store *st;
	const char *error;
	int ret;

	if ((st = s->st) == NULL)
		return -1;
	if (mindex_begin(store_index(st), false, &txn, &error) < 0) {
		log_error("imap: index: %s", error);
		return -1;
	}
	imap_seqset_init(&vc.set);
	ret = mindex_expunged_iter(txn, s->view.folder_id, 1,
	    imap_vanished_cb, &vc);
	mindex_abort(&txn);
	if (ret < 0)
		log_error("imap: index: %s", mindex_last_error());
	else
		imap_vanished_flush(&vc);
	imap_seqset_deinit(&vc.set);
	return ret < 0 ? -1 : 0;
}

/*
 * SELECT, EXAMINE, CLOSE, UNSELECT.
 */

static void
imap_unselect(struct imap_session *s)
{
	imap_view_free(&s->view);
	imap_seqset_deinit(&s->searchres);
	s->state = IMAP_STATE_AUTH;
	if (s->cb->selected != NULL)
		s->cb->selected(s->ctx);
}

/* SELECT's parameters (RFC 7162): CONDSTORE, or QRESYNC (uidvalidity
 * modseq [known-uids [(seqs uids)]]). */
struct imap_select_params {
	bool qresync;
	uint32_t uidvalidity;
	uint64_t modseq;
	bool have_known;
	struct imap_seqset known;	/* owned */
};

/* The optional (seqs uids) of QRESYNC: checked, then not used, since
 * the index keeps every expunge and needs no hint. */
static int
imap_select_seqmatch(const struct imap_arg *arg, const char **error_r)
{
	const struct imap_arg *l;
	struct imap_seqset tmp;
	const char *text;
	unsigned n;
	int ret = 0;

	if (imap_arg_list(arg, &l, &n, error_r) < 0)
		return -1;
	if (n != 2) {
		*error_r = "QRESYNC: (known-sequence-set known-uid-set)";
		return -1;
	}
	imap_seqset_init(&tmp);
	for (unsigned i = 0; i < 2 && ret == 0; i++)
		if (imap_arg_atom(&l[i], &text, error_r) < 0 ||
		    imap_seqset_parse(&tmp, text, UINT32_MAX, error_r) < 0 ||
		    tmp.searchres)
			ret = -1;
	imap_seqset_deinit(&tmp);
	if (ret < 0 && *error_r == NULL)
		*error_r = "QRESYNC: bad sequence set";
	return ret;
}

static int
imap_select_qresync(struct imap_session *s, const struct imap_arg *arg,
    struct imap_select_params *p, const char **error_r)
{
	const struct imap_arg *l;
	const char *text;
	unsigned n;

	if (!s->qresync) {
		*error_r = "QRESYNC is not enabled";
		return -1;
	}
	if (imap_arg_list(arg, &l, &n, error_r) < 0)
		return -1;
	if (n < 2 || n > 4) {
		*error_r = "QRESYNC (uidvalidity modseq [known-uids "
		    "[seq-match]])";
		return -1;
	}
	if (imap_arg_number(&l[0], &p->uidvalidity, error_r) < 0 ||
	    imap_arg_number64(&l[1], &p->modseq, error_r) < 0)
		return -1;
	if (p->uidvalidity == 0 || p->modseq == 0) {
		*error_r = "QRESYNC: zero UIDVALIDITY or MODSEQ";
		return -1;
	}
	*error_r = NULL;
	if (n >= 3) {
		if (imap_arg_atom(&l[2], &text, error_r) < 0 ||
		    imap_seqset_parse(&p->known, text, UINT32_MAX,
		    error_r) < 0 || p->known.searchres) {
			if (*error_r == NULL)
				*error_r = "QRESYNC: bad known-uids";
			return -1;
		}
		p->have_known = true;
	}
	if (n == 4 && imap_select_seqmatch(&l[3], error_r) < 0)
		return -1;
	p->qresync = true;
	return 0;
}

/* 0, or -1 with *error_r for a BAD. */
static int
imap_select_params(struct imap_session *s, const struct imap_cmd *cmd,
    struct imap_select_params *p, const char **error_r)
{
	const struct imap_arg *l;
	const char *name;
	unsigned n;

	memset(p, 0, sizeof(*p));
	imap_seqset_init(&p->known);
	if (cmd->argc == 1)
		return 0;
	if (imap_arg_list(&cmd->args[1], &l, &n, error_r) < 0)
		return -1;
	for (unsigned i = 0; i < n; i++) {
		if (imap_arg_atom(&l[i], &name, error_r) < 0)
			return -1;
		if (strcasecmp(name, "CONDSTORE") == 0)
			s->condstore = true;
		else if (strcasecmp(name, "QRESYNC") == 0 && !p->qresync &&
		    i + 1 < n) {
			if (imap_select_qresync(s, &l[++i], p, error_r) < 0)
				return -1;
		} else {
			*error_r = "Unknown SELECT parameter";
			return -1;
		}
	}
	return 0;
}

/* QRESYNC's answer after SELECT (RFC 7162 section 3.2.5.1): what was
 * expunged and whose flags changed since the client's MODSEQ, if its
 * UIDVALIDITY is still ours. */
static void
imap_select_resync(struct imap_session *s,
    const struct imap_select_params *p)
{
	if (!p->qresync || p->uidvalidity != s->view.uidvalidity)
		return;
	(void)imap_vanished_earlier(s, p->modseq, p->have_known ?
	    &p->known : NULL);
	for (unsigned i = 0; i < s->view.count; i++)
		if (s->view.msgs[i].modseq > p->modseq)
			imap_view_flags_changed(s, i + 1, &s->view.msgs[i]);
}

/* RFC 9051 6.3.2: under IMAP4rev2, SELECT and EXAMINE name the mailbox
 * in a LIST response (its name as the store spells it, so a client
 * learns the canonical form, INBOX for "inbox"). */
static void
imap_select_list(struct imap_session *s)
{
	struct buf line;

	if (!s->rev2)
		return;
	buf_init(&line, SIZE_MAX);
	buf_append_str(&line, "LIST () \"/\" ");
	imap_mailbox_put(s, s->view.name, &line);
	imap_untagged_buf(s, &line);
	buf_free(&line);
}

void
imap_cmd_select(struct imap_session *s, const struct imap_cmd *cmd)
{
	struct imap_select_params p;
	struct mindex_folder f;
	struct imap_load l;
	struct store *st;
	struct buf name;
	const char *wire, *error;
	bool exists = false;
	unsigned unseen = 0;
	int ret;

	if (cmd->argc < 1 || cmd->argc > 2 ||
	    imap_arg_astring(&cmd->args[0], &wire, &error) < 0) {
		imap_bad(s, "SELECT mailbox [(parameters)]");
		return;
	}
	if (imap_select_params(s, cmd, &p, &error) < 0) {
		imap_seqset_deinit(&p.known);
		imap_bad(s, error);
		return;
	}
	if (s->state == IMAP_STATE_SELECTED) {
		imap_unselect(s);
		/* RFC 7162 3.2.11; RFC 9051 makes it part of the base. */
		if (s->qresync || s->rev2)
			imap_untagged(s, "OK [CLOSED] Previous mailbox closed");
	}
	buf_init(&name, IMAP_NAME_MAX * 4);
	if (imap_mailbox_from_wire(s, wire, &name) < 0 ||
	    (st = imap_store(s)) == NULL) {
		buf_free(&name);
		imap_seqset_deinit(&p.known);
		return;
	}
	if (store_sync_lazy(st, buf_cstr(&name), &exists, &error) < 0) {
		imap_tagged(s, "NO", "[NONEXISTENT] %s",
		    strstr(error, "refused") != NULL ? "Invalid mailbox name" :
		    "No such mailbox");
		buf_free(&name);
		imap_seqset_deinit(&p.known);
		return;
	}
	ret = exists ? imap_load(st, buf_cstr(&name), &s->view, &f, &l) : 0;
	if (ret <= 0) {
		imap_view_free(&s->view);
		imap_tagged(s, ret < 0 ? "NO" : "NO", "%s", ret < 0 ?
		    "[UNAVAILABLE] Cannot read the mailbox" :
		    "[NONEXISTENT] No such mailbox");
		buf_free(&name);
		imap_seqset_deinit(&p.known);
		return;
	}
	s->view.name = xstrdup(buf_cstr(&name));
	buf_free(&name);
	s->view.readonly = strcmp(cmd->name, "EXAMINE") == 0;
	s->view.folder_id = f.id;
	s->view.uidvalidity = f.uidvalidity;
	s->view.uidnext = f.uidnext;
	s->view.highestmodseq = f.highestmodseq;
	s->view.msgs = l.msgs;
	s->view.count = s->view.cap = l.count;
	for (unsigned i = 0; i < l.count; i++)
		if ((l.msgs[i].flags & MINDEX_F_SEEN) == 0) {
			unseen = i + 1;
			break;
		}
	s->state = IMAP_STATE_SELECTED;
	imap_untagged(s, "%u EXISTS", l.count);
	/* IMAP4rev2 has no \Recent (RFC 9051 appendix E); no message
	 * is ever recent here. */
	if (!s->rev2)
		imap_untagged(s, "0 RECENT");
	/* The keywords its messages have; \* says new ones may be made
	 * (a Maildir folder's 27th is then refused with [LIMIT]). */
	imap_view_kw_flags(s, true);
	imap_send(s);
	if (unseen > 0)
		imap_untagged(s, "OK [UNSEEN %u] First unseen", unseen);
	imap_untagged(s, "OK [UIDVALIDITY %u] UIDs valid", f.uidvalidity);
	imap_untagged(s, "OK [UIDNEXT %u] Predicted next UID", f.uidnext);
	imap_untagged(s, "OK [HIGHESTMODSEQ %llu] Highest",
	    (unsigned long long)imap_modseq_out(f.highestmodseq));
	imap_select_list(s);
	imap_select_resync(s, &p);
	imap_seqset_deinit(&p.known);
	if (s->cb->selected != NULL)
		s->cb->selected(s->ctx);
	imap_tagged(s, "OK", "[%s] %s completed", s->view.readonly ?
	    "READ-ONLY" : "READ-WRITE", cmd->name);
}

void
imap_cmd_close(struct imap_session *s, const struct imap_cmd *cmd)
{
	/* CLOSE of a read-write folder expunges \Deleted messages
	 * without a word (RFC 3501 6.4.2); UNSELECT and EXAMINE do not. */
	if (strcmp(cmd->name, "CLOSE") == 0)
		(void)imap_expunge_silent(s);
	imap_unselect(s);
	imap_tagged(s, "OK", "%s completed", cmd->name);
}

/*
 * STATUS, NAMESPACE.
 */

/* Whether STATUS asks for item (any case). */
static bool
imap_status_wants(const struct imap_arg *items, unsigned count,
    const char *item)
{
	const char *text, *error;

	for (unsigned i = 0; i < count; i++)
		if (imap_arg_atom(&items[i], &text, &error) == 0 &&
		    strcasecmp(text, item) == 0)
			return true;
	return false;
}

void
imap_cmd_status(struct imap_session *s, const struct imap_cmd *cmd)
{
	const struct imap_arg *items;
	struct mindex_folder f;
	struct mindex_txn *txn;
	struct store *st;
	struct buf name, line;
	const char *wire, *item, *error;
	unsigned count;
	bool exists = false;
	int ret;

	if (cmd->argc != 2 ||
	    imap_arg_astring(&cmd->args[0], &wire, &error) < 0 ||
	    imap_arg_list(&cmd->args[1], &items, &count, &error) < 0 ||
	    count == 0) {
		imap_bad(s, "STATUS mailbox (items)");
		return;
	}
	buf_init(&name, IMAP_NAME_MAX * 4);
	if (imap_mailbox_from_wire(s, wire, &name) < 0 ||
	    (st = imap_store(s)) == NULL) {
		buf_free(&name);
		return;
	}
	/* Lazy, as SELECT: the counts need no file read. SIZE (RFC 8438)
	 * is the sum of exact sizes: the files adopted from their names
	 * have their line ends counted first. */
	ret = store_sync_lazy(st, buf_cstr(&name), &exists, &error);
	if (ret == 0 && exists && imap_status_wants(items, count, "SIZE") &&
	    imap_folder_complete(s, st, buf_cstr(&name),
	    IMAP_NEED_SIZES) < 0) {
		imap_tagged(s, "NO", "[UNAVAILABLE] Cannot read the mailbox");
		buf_free(&name);
		return;
	}
	if (ret == 0 && exists) {
		if (mindex_begin(store_index(st), false, &txn, &error) < 0)
			ret = -1;
		else {
			ret = mindex_folder_get(txn, buf_cstr(&name), &f);
			mindex_abort(&txn);
		}
	} else if (ret == 0)
		ret = 0;
	if (ret <= 0) {
		imap_tagged(s, "NO", "[NONEXISTENT] No such mailbox");
		buf_free(&name);
		return;
	}
	buf_init(&line, 1024);
	buf_append_str(&line, "STATUS ");
	imap_mailbox_put(s, buf_cstr(&name), &line);
	buf_append_str(&line, " (");
	for (unsigned i = 0; i < count; i++) {
		const struct {
			const char *name;
			unsigned long long v;
		} st_items[] = {
			{ "MESSAGES", f.count }, { "UIDNEXT", f.uidnext },
			{ "UIDVALIDITY", f.uidvalidity },
			{ "UNSEEN", f.unseen }, { "RECENT", 0 },
			{ "DELETED", f.deleted }, { "SIZE", f.vsize },
			{ "HIGHESTMODSEQ",
			    imap_modseq_out(f.highestmodseq) },
		};
		size_t k;

		if (imap_arg_atom(&items[i], &item, &error) < 0)
			goto bad;
		for (k = 0; k < sizeof(st_items) / sizeof(st_items[0]); k++)
			if (strcasecmp(item, st_items[k].name) == 0)
				break;
		if (k == sizeof(st_items) / sizeof(st_items[0]))
			goto bad;
		if (strcasecmp(item, "HIGHESTMODSEQ") == 0)
			imap_condstore_on(s);
		buf_printf(&line, "%s%s %llu", i > 0 ? " " : "",
		    st_items[k].name, st_items[k].v);
	}
	buf_append_byte(&line, ')');
	imap_untagged_buf(s, &line);
	imap_tagged(s, "OK", "STATUS completed");
	buf_free(&line);
	buf_free(&name);
	return;
bad:
	buf_free(&line);
	buf_free(&name);
	imap_bad(s, "Unknown STATUS item");
}

void
imap_cmd_namespace(struct imap_session *s, const struct imap_cmd *cmd)
{
	(void)cmd;
	imap_untagged(s, "NAMESPACE ((\"\" \"/\")) NIL NIL");
	imap_tagged(s, "OK", "NAMESPACE completed");
}
