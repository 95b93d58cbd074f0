/*
 * imap_sort.c: SORT and UID SORT (RFC 5256), their ESORT answer (RFC
 * 5267) and the DISPLAYFROM/DISPLAYTO keys (RFC 5957); the base subject
 * and the per-message keys that THREAD (imap_thread.c) shares.
 *
 * Trusts nothing in the arguments or in the header fields: every key is
 * built in a bounded buffer, and a field that does not parse gives an
 * empty key, never an error.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "log.h"
#include "mindex.h"
#include "msg.h"
#include "store.h"
#include "xmalloc.h"
#include "server/imap/imap_envelope.h"
#include "server/imap/imap_private.h"
#include "server/imap/imap_search.h"
#include "server/imap/imap_sort.h"

/* Longest key kept from one header field; the rest does not count. */
#define IMAP_SORT_FIELD_MAX	4096
/* Longest References value kept; a longer one loses its end. */
#define IMAP_SORT_REFS_MAX	(256 * 1024)
/* Most of a message's header read when the index's cache lacks a field. */
#define IMAP_SORT_HEADER_MAX	(256 * 1024)
/* Reads of a message header. */
#define IMAP_SORT_CHUNK		8192
/* The answer is sent in pieces of about this size. */
#define IMAP_SORT_OUT_FLUSH	(64 * 1024)

static const struct {
	const char *name;
	enum imap_sort_key key;
} imap_sort_names[] = {
	{ "ARRIVAL", IMAP_SORT_ARRIVAL }, { "CC", IMAP_SORT_CC },
	{ "DATE", IMAP_SORT_DATE }, { "FROM", IMAP_SORT_FROM },
	{ "SIZE", IMAP_SORT_SIZE }, { "SUBJECT", IMAP_SORT_SUBJECT },
	{ "TO", IMAP_SORT_TO }, { "DISPLAYFROM", IMAP_SORT_DISPLAYFROM },
	{ "DISPLAYTO", IMAP_SORT_DISPLAYTO },
};

int
imap_sort_parse(const struct imap_arg *arg, struct imap_sort_prog *prog,
    const char **error_r)
{
	const struct imap_arg *list;
	unsigned count;
	bool reverse = false;

	memset(prog, 0, sizeof(*prog));
	if (imap_arg_list(arg, &list, &count, error_r) < 0)
		return -1;
	for (unsigned i = 0; i < count; i++) {
		const char *atom;
		size_t k, n = sizeof(imap_sort_names) /
		    sizeof(imap_sort_names[0]);

		if (imap_arg_atom(&list[i], &atom, error_r) < 0)
			return -1;
		if (strcasecmp(atom, "REVERSE") == 0 && !reverse) {
			reverse = true;
			continue;
		}
		for (k = 0; k < n; k++)
			if (strcasecmp(atom, imap_sort_names[k].name) == 0)
				break;
		if (k == n) {
			*error_r = "Unknown sort criterion";
			return -1;
		}
		if (prog->count == IMAP_SORT_KEYS_MAX) {
			*error_r = "Too many sort criteria";
			return -1;
		}
		prog->key[prog->count] = imap_sort_names[k].key;
		prog->reverse[prog->count++] = reverse;
		reverse = false;
	}
	if (prog->count == 0 || reverse) {
		*error_r = reverse ? "REVERSE without a sort criterion" :
		    "Empty sort criteria";
		return -1;
	}
	return 0;
}

/*
 * The base subject (RFC 5256 section 2.1), worked on in place in a
 * NUL-terminated copy: [p, end) is what is left of it.
 */
struct imap_subj {
	char *p, *end;
	bool reply;
};

static bool
imap_subj_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static void
imap_subj_trim_left(struct imap_subj *j)
{
	while (j->p < j->end && imap_subj_wsp(*j->p))
		j->p++;
}

/* Step 2: subj-trailer = "(fwd)" / WSP, removed from the end. */
static void
imap_subj_trailers(struct imap_subj *j)
{
	for (;;) {
		while (j->end > j->p && imap_subj_wsp(j->end[-1]))
			j->end--;
		if (j->end - j->p >= 5 &&
		    strncasecmp(j->end - 5, "(fwd)", 5) == 0) {
			j->end -= 5;
			j->reply = true;
			continue;
		}
		return;
	}
}

/* subj-blob = "[" *BLOBCHAR "]" *WSP at q: the end of it, or NULL. */
static char *
imap_subj_blob(const struct imap_subj *j, char *q)
{
	if (q >= j->end || *q != '[')
		return NULL;
	for (q++; q < j->end && *q != ']'; q++)
		if (*q == '[')
			return NULL;
	if (q == j->end)
		return NULL;
	for (q++; q < j->end && imap_subj_wsp(*q); q++)
		;
	return q;
}

/* subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":" at q: the end of
 * it, or NULL. */
static char *
imap_subj_refwd(const struct imap_subj *j, char *q)
{
	char *b;

	if (j->end - q >= 2 && strncasecmp(q, "re", 2) == 0)
		q += 2;
	else if (j->end - q >= 2 && strncasecmp(q, "fw", 2) == 0) {
		q += 2;
		if (q < j->end && (*q == 'd' || *q == 'D'))
			q++;
	} else
		return NULL;
	while (q < j->end && imap_subj_wsp(*q))
		q++;
	if ((b = imap_subj_blob(j, q)) != NULL)
		q = b;
	return q < j->end && *q == ':' ? q + 1 : NULL;
}

/* Step 3: subj-leader = (*subj-blob subj-refwd) / WSP, as often as it
 * matches. true if anything was removed. */
static bool
imap_subj_leaders(struct imap_subj *j)
{
	bool any = false;

	for (;;) {
		char *q = j->p, *b, *r;

		if (q < j->end && imap_subj_wsp(*q)) {
			imap_subj_trim_left(j);
			any = true;
			continue;
		}
		while ((b = imap_subj_blob(j, q)) != NULL)
			q = b;
		if ((r = imap_subj_refwd(j, q)) == NULL)
			return any;
		j->p = r;
		j->reply = true;
		any = true;
	}
}

/* Step 4: a leading subj-blob goes if something is left after it. */
static bool
imap_subj_leading_blob(struct imap_subj *j)
{
	char *b = imap_subj_blob(j, j->p), *q;

	if (b == NULL)
		return false;
	for (q = b; q < j->end && imap_subj_wsp(*q); q++)
		;
	if (q == j->end)
		return false;
	j->p = b;
	return true;
}

/* Step 6: "[fwd:" ... "]" around everything. */
static bool
imap_subj_fwd_wrapper(struct imap_subj *j)
{
	if (j->end - j->p < 6 || strncasecmp(j->p, "[fwd:", 5) != 0 ||
	    j->end[-1] != ']')
		return false;
	j->p += 5;
	j->end--;
	j->reply = true;
	return true;
}

void
imap_sort_base_subject(const unsigned char *value, size_t len,
    struct buf *out, bool *reply_r)
{
	struct buf dec, norm;
	struct imap_subj j;
	bool space = false;

	/* Step 1: decode, then every run of white space (and line ends
	 * left in the value) is one space. */
	buf_init(&dec, IMAP_SORT_FIELD_MAX);
	buf_init(&norm, IMAP_SORT_FIELD_MAX + 1);
	imap_search_decode_header(value, len, &dec);
	for (size_t i = 0; i < dec.len; i++) {
		unsigned char c = dec.data[i];

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			space = true;
			continue;
		}
		if (c == '\0')
			continue;
		if (space && norm.len > 0)
			(void)buf_append_byte(&norm, ' ');
		space = false;
		(void)buf_append_byte(&norm, c);
	}
	j.p = (char *)buf_cstr(&norm);
	j.end = j.p + norm.len;
	j.reply = false;
	do {
		imap_subj_trailers(&j);
		while (imap_subj_leaders(&j) || imap_subj_leading_blob(&j))
			;
	} while (imap_subj_fwd_wrapper(&j));
	(void)buf_append(out, j.p, (size_t)(j.end - j.p));
	if (reply_r != NULL)
		*reply_r = j.reply;
	buf_free(&dec);
	buf_free(&norm);
}

/*
 * Per-message keys.
 */
enum {
	IMAP_SF_SUBJECT, IMAP_SF_FROM, IMAP_SF_TO, IMAP_SF_CC, IMAP_SF_DATE,
	IMAP_SF_MSGID, IMAP_SF_REFS, IMAP_SF_IRT, IMAP_SF_N
};

static const char *const imap_sort_fields[IMAP_SF_N] = {
	"subject", "from", "to", "cc", "date", "message-id", "references",
	"in-reply-to",
};

struct imap_sort_hdr {
	struct buf v[IMAP_SF_N];
	bool seen[IMAP_SF_N];
};

static int
imap_sort_field_cb(const unsigned char *name, size_t name_len,
    const unsigned char *raw, size_t raw_len, void *ctx)
{
	struct imap_sort_hdr *h = ctx;

	for (unsigned f = 0; f < IMAP_SF_N; f++)
		if (!h->seen[f] && strlen(imap_sort_fields[f]) == name_len &&
		    strncasecmp((const char *)name, imap_sort_fields[f],
		    name_len) == 0) {
			h->seen[f] = true;
			(void)msg_header_value(raw, raw_len, &h->v[f]);
			break;
		}
	return 0;
}

/* The first address of an address field: its addr-mailbox into
 * *mailbox_r and its display name (decoded), or else its addr-spec, into
 * *display_r. */
static void
imap_sort_address(struct buf *value, char **mailbox_r, char **display_r)
{
	struct buf name, mailbox, host, disp;

	buf_init(&name, IMAP_SORT_FIELD_MAX);
	buf_init(&mailbox, IMAP_SORT_FIELD_MAX);
	buf_init(&host, IMAP_SORT_FIELD_MAX);
	buf_init(&disp, IMAP_SORT_FIELD_MAX);
	if (imap_envelope_first_address(value->data, value->len, &name,
	    &mailbox, &host) == 1) {
		imap_search_decode_header(name.data, name.len, &disp);
		if (disp.len == 0) {
			(void)buf_append(&disp, mailbox.data, mailbox.len);
			(void)buf_append_byte(&disp, '@');
			(void)buf_append(&disp, host.data, host.len);
		}
	}
	*mailbox_r = xstrdup(buf_cstr(&mailbox));
	*display_r = xstrdup(buf_cstr(&disp));
	buf_free(&name);
	buf_free(&mailbox);
	buf_free(&host);
	buf_free(&disp);
}

/* The first "<...>" of a Message-ID value, or "". */
static char *
imap_sort_msgid(const struct buf *v)
{
	const unsigned char *lt, *gt;

	if (v->len == 0 || (lt = memchr(v->data, '<', v->len)) == NULL ||
	    (gt = memchr(lt, '>', v->len - (size_t)(lt - v->data))) == NULL ||
	    gt - lt < 2)
		return xstrdup("");
	return xstrndup((const char *)lt, (size_t)(gt - lt + 1));
}

void
imap_sort_msg_fields(struct imap_sort_msg *m, const unsigned char *hdr,
    size_t len)
{
	struct imap_sort_hdr h;
	struct buf subj;
	char *dummy;
	time_t t;

	memset(&h, 0, sizeof(h));
	for (unsigned f = 0; f < IMAP_SF_N; f++)
		buf_init(&h.v[f], f == IMAP_SF_REFS ? IMAP_SORT_REFS_MAX :
		    IMAP_SORT_FIELD_MAX);
	if (hdr != NULL)
		(void)msg_header_iter(hdr, len, imap_sort_field_cb, &h, NULL);
	buf_init(&subj, IMAP_SORT_FIELD_MAX);
	imap_sort_base_subject(h.v[IMAP_SF_SUBJECT].data,
	    h.v[IMAP_SF_SUBJECT].len, &subj, &m->reply);
	m->subject = xstrdup(buf_cstr(&subj));
	buf_free(&subj);
	imap_sort_address(&h.v[IMAP_SF_FROM], &m->from, &m->dfrom);
	imap_sort_address(&h.v[IMAP_SF_TO], &m->to, &m->dto);
	imap_sort_address(&h.v[IMAP_SF_CC], &m->cc, &dummy);
	free(dummy);
	t = h.seen[IMAP_SF_DATE] ?
	    msg_date_parse(buf_cstr(&h.v[IMAP_SF_DATE])) : (time_t)-1;
	m->date = t != (time_t)-1 ? (int64_t)t : m->arrival;
	m->msgid = imap_sort_msgid(&h.v[IMAP_SF_MSGID]);
	/* In-Reply-To counts only without References (RFC 5256 4.1). */
	m->refs = xstrdup(buf_cstr(h.v[IMAP_SF_REFS].len > 0 &&
	    memchr(h.v[IMAP_SF_REFS].data, '<', h.v[IMAP_SF_REFS].len) !=
	    NULL ? &h.v[IMAP_SF_REFS] : &h.v[IMAP_SF_IRT]));
	for (unsigned f = 0; f < IMAP_SF_N; f++)
		buf_free(&h.v[f]);
}

void
imap_sort_msgs_free(struct imap_sort_msg *msgs, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		free(msgs[i].subject);
		free(msgs[i].from);
		free(msgs[i].to);
		free(msgs[i].cc);
		free(msgs[i].dfrom);
		free(msgs[i].dto);
		free(msgs[i].msgid);
		free(msgs[i].refs);
	}
}

/*
 * Ordering.
 */
static int
imap_sort_cmp_num(int64_t a, int64_t b)
{
	return a < b ? -1 : a > b;
}

static int
imap_sort_cmp_key(const struct imap_sort_msg *a, const struct imap_sort_msg *b,
    enum imap_sort_key key)
{
	switch (key) {
	case IMAP_SORT_ARRIVAL:
		return imap_sort_cmp_num(a->arrival, b->arrival);
	case IMAP_SORT_CC:
		return strcasecmp(a->cc, b->cc);
	case IMAP_SORT_DATE:
		return imap_sort_cmp_num(a->date, b->date);
	case IMAP_SORT_FROM:
		return strcasecmp(a->from, b->from);
	case IMAP_SORT_SIZE:
		return a->size < b->size ? -1 : a->size > b->size;
	case IMAP_SORT_SUBJECT:
		return strcasecmp(a->subject, b->subject);
	case IMAP_SORT_TO:
		return strcasecmp(a->to, b->to);
	case IMAP_SORT_DISPLAYFROM:
		return strcasecmp(a->dfrom, b->dfrom);
	case IMAP_SORT_DISPLAYTO:
		return strcasecmp(a->dto, b->dto);
	}
	return 0;
}

static int
imap_sort_cmp(const void *x, const void *y, void *ctx)
{
	const struct imap_sort_msg *a = x, *b = y;
	const struct imap_sort_prog *prog = ctx;

	for (unsigned i = 0; i < prog->count; i++) {
		int c = imap_sort_cmp_key(a, b, prog->key[i]);

		if (c != 0)
			return prog->reverse[i] ? -c : c;
	}
	return imap_sort_cmp_num(a->seq, b->seq);
}

void
imap_sort_order(struct imap_sort_msg *msgs, size_t count,
    const struct imap_sort_prog *prog)
{
	if (count > 1)
		qsort_r(msgs, count, sizeof(*msgs), imap_sort_cmp,
		    (void *)prog);
}

/*
 * Loading the matches.
 */

static int
imap_sort_field_none(const unsigned char *name, size_t name_len,
    const unsigned char *raw, size_t raw_len, void *ctx)
{
	(void)name;
	(void)name_len;
	(void)raw;
	(void)raw_len;
	(void)ctx;
	return 0;
}

/* The header of message uid, read from storage (at most
 * IMAP_SORT_HEADER_MAX bytes) into hdr. 0, or -1. */
static int
imap_sort_read_header(struct imap_session *s, struct store *st, uint32_t uid,
    struct buf *hdr)
{
	unsigned char chunk[IMAP_SORT_CHUNK];
	struct store_read *r;
	const char *error;
	size_t len, hdr_size;
	int ret = 0;

	buf_truncate(hdr, 0);
	if (store_read_open(st, s->view.name, uid, &r, &error) !=
	    STORE_OP_OK)
		return -1;
	while (hdr->len < IMAP_SORT_HEADER_MAX &&
	    (ret = store_read_next(r, chunk, sizeof(chunk), &len,
	    &error)) > 0) {
		(void)buf_append(hdr, chunk, len);
		/* Stop once the empty line that ends the header is in. */
		if (msg_header_iter(hdr->data, hdr->len, imap_sort_field_none,
		    NULL, &hdr_size) == 0 && hdr_size < hdr->len)
			break;
	}
	store_read_close(&r);
	return ret < 0 ? -1 : 0;
}

/* Messages whose cached header may lack a field: their own header. */
static void
imap_sort_reread(struct imap_session *s, struct store *st,
    struct imap_sort_msg *msgs, const bool *partial, size_t count)
{
	struct buf hdr;

	buf_init(&hdr, IMAP_SORT_HEADER_MAX + IMAP_SORT_CHUNK);
	for (size_t i = 0; i < count; i++) {
		struct imap_sort_msg *m = &msgs[i];

		if (!partial[i] ||
		    imap_sort_read_header(s, st, s->view.msgs[m->seq - 1].uid,
		    &hdr) < 0)
			continue;
		imap_sort_msgs_free(m, 1);
		imap_sort_msg_fields(m, hdr.data, hdr.len);
	}
	buf_free(&hdr);
}

static int
imap_sort_from_index(struct imap_session *s, struct store *st, bool uid,
    bool answer, const unsigned char *state, struct imap_sort_msg *msgs,
    bool *partial, size_t *count_r)
{
	struct mindex_txn *txn;
	struct mindex_msg m;
	const char *error;
	size_t n = 0;

	if (mindex_begin(store_index(st), false, &txn, &error) < 0) {
		log_error("imap: user=<%s>, index: %s", s->user, error);
		if (answer)
			imap_tagged(s, "NO", "[UNAVAILABLE] Index unavailable");
		return -1;
	}
	for (unsigned i = 0; i < s->view.count; i++) {
		struct imap_sort_msg *sm = &msgs[n];

		if (state[i] != 1 || mindex_msg_get(txn, s->view.folder_id,
		    s->view.msgs[i].uid, &m) <= 0)
			continue;
		memset(sm, 0, sizeof(*sm));
		sm->seq = i + 1;
		sm->num = uid ? s->view.msgs[i].uid : i + 1;
		sm->size = m.vsize;
		sm->arrival = m.internal_date;
		imap_sort_msg_fields(sm, m.headers, m.headers_len);
		/* A record still unparsed (its file could not be read for
		 * completion) has no fields cached: its file's, as for a
		 * cache that lost a field. */
		partial[n++] = (m.cache_flags & (MINDEX_C_HEADERS_PARTIAL |
		    MINDEX_C_UNPARSED)) != 0;
	}
	mindex_abort(&txn);
	*count_r = n;
	return 0;
}

/* The charset argument: UTF-8 or US-ASCII. 0, or -1 after answering. */
static int
imap_sort_charset(struct imap_session *s, const struct imap_arg *arg)
{
	const char *cs, *error;

	if (imap_arg_astring(arg, &cs, &error) < 0) {
		imap_bad(s, error);
		return -1;
	}
	if (strcasecmp(cs, "UTF-8") != 0 && strcasecmp(cs, "US-ASCII") != 0) {
		imap_tagged(s, "NO", "[BADCHARSET (US-ASCII UTF-8)] "
		    "Unsupported charset");
		return -1;
	}
	return 0;
}

static int imap_sort_load_prog(struct imap_session *s,
    const struct imap_cmd *cmd, unsigned first_arg,
    struct imap_sort_msg **msgs_r, size_t *count_r,
    struct imap_search **search_r);

int
imap_sort_load(struct imap_session *s, const struct imap_cmd *cmd,
    unsigned first_arg, struct imap_sort_msg **msgs_r, size_t *count_r)
{
	return imap_sort_load_prog(s, cmd, first_arg, msgs_r, count_r, NULL);
}

/* As imap_sort_load; with search_r, the search program is given to the
 * caller (a context keeps it) instead of freed. */
static int
imap_sort_load_prog(struct imap_session *s, const struct imap_cmd *cmd,
    unsigned first_arg, struct imap_sort_msg **msgs_r, size_t *count_r,
    struct imap_search **search_r)
{
	struct imap_search *search;
	struct imap_sort_msg *msgs;
	unsigned char *state;
	struct store *st;
	const char *error;
	bool *partial;
	int r;

	if (first_arg + 1 >= cmd->argc) {
		imap_bad(s, "Missing charset or search criteria");
		return -1;
	}
	if (imap_sort_charset(s, &cmd->args[first_arg]) < 0 ||
	    imap_view_sync(s, cmd->uid) < 0)
		return -1;
	r = imap_search_parse_saved(cmd->args + first_arg + 1,
	    cmd->argc - first_arg - 1, s->view.count, s->view.count > 0 ?
	    s->view.msgs[s->view.count - 1].uid : 0, &s->searchres, &search,
	    &error);
	if (r < 0) {
		if (r == IMAP_SEARCH_PARSE_BADCHARSET)
			imap_tagged(s, "NO", "[BADCHARSET (US-ASCII UTF-8)] %s",
			    error);
		else
			imap_bad(s, error);
		return -1;
	}
	/* Every sort key and THREAD's fields come from what a parse gives
	 * (dates, sizes, header fields). */
	if ((st = imap_store(s)) == NULL ||
	    imap_view_complete(s, IMAP_NEED_PARSE) < 0) {
		imap_search_free(&search);
		return -1;
	}
	state = xcalloc((size_t)s->view.count + 1, 1);
	msgs = xcalloc((size_t)s->view.count + 1, sizeof(*msgs));
	partial = xcalloc((size_t)s->view.count + 1, sizeof(*partial));
	r = imap_search_run(s, st, search, state);
	if (r == 0)
		r = imap_sort_from_index(s, st, cmd->uid, true, state, msgs,
		    partial, count_r);
	if (r == 0)
		imap_sort_reread(s, st, msgs, partial, *count_r);
	if (r == 0 && search_r != NULL) {
		*search_r = search;
		search = NULL;
	}
	imap_search_free(&search);
	free(state);
	free(partial);
	if (r < 0) {
		free(msgs);
		return -1;
	}
	*msgs_r = msgs;
	return 0;
}

int
imap_sort_collect(struct imap_session *s, struct store *st, bool uid,
    const unsigned char *state, struct imap_sort_msg **msgs_r,
    size_t *count_r)
{
	struct imap_sort_msg *msgs;
	bool *partial;

	msgs = xcalloc((size_t)s->view.count + 1, sizeof(*msgs));
	partial = xcalloc((size_t)s->view.count + 1, sizeof(*partial));
	if (imap_sort_from_index(s, st, uid, false, state, msgs, partial,
	    count_r) < 0) {
		free(msgs);
		free(partial);
		return -1;
	}
	imap_sort_reread(s, st, msgs, partial, *count_r);
	free(partial);
	*msgs_r = msgs;
	return 0;
}

/*
 * The answers.
 */

/* RFC 5182 with RFC 5267: SAVE keeps the matches (as UIDs); with MIN or
 * MAX and neither ALL nor COUNT, only those. */
static void
imap_sort_save(struct imap_session *s, unsigned ret,
    const struct imap_sort_msg *msgs, size_t n)
{
	const char *error;
	bool ends = (ret & (IMAP_SEARCH_RET_ALL | IMAP_SEARCH_RET_COUNT)) ==
	    0 && (ret & (IMAP_SEARCH_RET_MIN | IMAP_SEARCH_RET_MAX)) != 0;

	imap_seqset_deinit(&s->searchres);
	for (size_t i = 0; i < n; i++) {
		uint32_t uid = s->view.msgs[msgs[i].seq - 1].uid;

		if (ends && !((i == 0 && (ret & IMAP_SEARCH_RET_MIN)) ||
		    (i == n - 1 && (ret & IMAP_SEARCH_RET_MAX))))
			continue;
		if (imap_seqset_add(&s->searchres, uid, uid, &error) < 0)
			break;
	}
}

/* ESORT (RFC 5267 section 3): MIN and MAX the first and last in the
 * order, ALL and PARTIAL in the order. */
static void
imap_sort_esort(struct imap_session *s, const struct imap_cmd *cmd,
    unsigned ret, const struct imap_search_partial *partial,
    const uint32_t *nums, size_t n)
{
	if (imap_search_esearch_partial(s->tag, cmd->uid, ret, partial, nums,
	    n, &s->out) < 0)
		log_warning("imap: user=<%s>, ESEARCH answer too large",
		    s->user);
}

/* SORT RETURN (UPDATE): the context, or NOUPDATE (RFC 5267 4.3.1). */
static void
imap_sort_context(struct imap_session *s, const struct imap_cmd *cmd,
    const struct imap_sort_prog *prog, struct imap_search **search,
    const struct imap_sort_msg *msgs, size_t n)
{
	uint32_t *uids;

	uids = xreallocarray(NULL, n + 1, sizeof(*uids));
	for (size_t i = 0; i < n; i++)
		uids[i] = s->view.msgs[msgs[i].seq - 1].uid;
	if (imap_context_add(s, cmd->uid, prog, search, uids, n) < 0)
		imap_untagged(s, "NO [NOUPDATE \"%s\"] At most %u search "
		    "contexts at once", s->tag, (unsigned)IMAP_CONTEXT_MAX);
	free(uids);
}

void
imap_cmd_sort(struct imap_session *s, const struct imap_cmd *cmd)
{
	struct imap_sort_prog prog;
	struct imap_search_partial partial;
	struct imap_search *search = NULL;
	struct imap_sort_msg *msgs;
	const char *error;
	unsigned ret, used;
	uint32_t *nums;
	size_t n;

	if (imap_search_parse_return_ctx(cmd->args, cmd->argc, &ret, &used,
	    &partial, &error) < 0) {
		imap_bad(s, error);
		return;
	}
	if (used >= cmd->argc) {
		imap_bad(s, "Missing sort criteria");
		return;
	}
	if (imap_sort_parse(&cmd->args[used], &prog, &error) < 0) {
		imap_bad(s, error);
		return;
	}
	if ((ret & IMAP_SEARCH_RET_UPDATE) &&
	    imap_context_find(s, s->tag) != NULL) {
		imap_bad(s, "Tag reuse: a search context has this tag");
		return;
	}
	if (imap_sort_load_prog(s, cmd, used + 1, &msgs, &n,
	    (ret & IMAP_SEARCH_RET_UPDATE) ? &search : NULL) < 0) {
		if (ret & IMAP_SEARCH_RET_SAVE)
			imap_seqset_deinit(&s->searchres);
		return;
	}
	imap_sort_order(msgs, n, &prog);
	if (ret & IMAP_SEARCH_RET_SAVE)
		imap_sort_save(s, ret, msgs, n);
	if (ret == 0) {
		buf_append_str(&s->out, "* SORT");
		for (size_t i = 0; i < n; i++) {
			buf_printf(&s->out, " %u", msgs[i].num);
			if (s->out.len >= IMAP_SORT_OUT_FLUSH)
				imap_send(s);
		}
		buf_append_str(&s->out, "\r\n");
	} else if ((ret & ~(IMAP_SEARCH_RET_ESEARCH | IMAP_SEARCH_RET_SAVE))
	    != 0) {
		nums = xreallocarray(NULL, n + 1, sizeof(*nums));
		for (size_t i = 0; i < n; i++)
			nums[i] = msgs[i].num;
		imap_sort_esort(s, cmd, ret, &partial, nums, n);
		free(nums);
	}
	imap_send(s);
	if (ret & IMAP_SEARCH_RET_UPDATE)
		imap_sort_context(s, cmd, &prog, &search, msgs, n);
	imap_search_free(&search);
	imap_sort_msgs_free(msgs, n);
	free(msgs);
	imap_tagged(s, "OK", "%sSORT completed", cmd->uid ? "UID " : "");
}
