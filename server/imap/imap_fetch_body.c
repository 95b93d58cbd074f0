/*
 * imap_fetch_body.c: the body sections of FETCH (RFC 3501 6.4.5, 7.4.2):
 * BODY[section]<partial>, BODY.PEEK[...], RFC822, RFC822.HEADER and
 * RFC822.TEXT. Sections are located with the message's MIME tree from the
 * index; their bytes come from storage through store_read, converted to
 * CRLF on the fly, and are streamed: a FETCH with bodies is a job that
 * writes a bounded amount, waits for the output to drain
 * (imap_session_output_ready), and goes on, so a 50 MB message or
 * "FETCH 1:* BODY[]" never sits in memory. Header field subsets are read
 * into memory, bounded by IMAP_FETCH_HEADER_MAX.
 *
 * Trusts nothing from the client (section texts are parsed here with
 * bounds on every number and name); trusts the index's tree, which
 * mime_deserialize checks, and clips every range to the message.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "compat/compat.h"
#include "log.h"
#include "mime.h"
#include "mindex.h"
#include "msg.h"
#include "store.h"
#include "xmalloc.h"
#include "server/imap/imap_private.h"
#include "server/imap/imap_seqset.h"

#define IMAP_FETCH_HEADER_MAX	(1024 * 1024)	/* header read for FIELDS */
#define IMAP_FETCH_CHUNK	(64 * 1024)	/* read per step */
#define IMAP_FETCH_BURST	(256 * 1024)	/* written before yielding */
#define IMAP_SECTION_PARTS_MAX	32		/* 1.2.3... depth */
#define IMAP_SECTION_FIELDS_MAX	64

enum imap_sec_kind {
	IMAP_SEC_ALL,		/* the part (or whole message) */
	IMAP_SEC_HEADER,
	IMAP_SEC_FIELDS,
	IMAP_SEC_FIELDS_NOT,
	IMAP_SEC_TEXT,
	IMAP_SEC_MIME
};

struct imap_section {
	char *name;		/* as the response names it: "BODY[1.TEXT]" */
	bool peek;
	unsigned parts[IMAP_SECTION_PARTS_MAX];
	unsigned nparts;
	enum imap_sec_kind kind;
	char *fields[IMAP_SECTION_FIELDS_MAX];	/* owned, upper case */
	unsigned nfields;
	bool partial;
	uint64_t origin, length;
};

struct imap_fetch_job {
	struct imap_seqset set;
	bool uid;
	unsigned want;			/* index items (imap_fetch.c) */
	struct imap_section *secs;	/* owned */
	unsigned nsecs;
	unsigned next;			/* view index to look at next */
	/* The message being answered. */
	bool in_msg;
	uint32_t msg_uid;
	struct mime_part *tree;		/* owned */
	unsigned sec_i;
	bool need_sp;			/* an item was written before */
	/* The section being streamed. */
	struct store_read *rd;		/* owned */
	uint64_t raw_left;		/* stored bytes still to read */
	uint64_t skip;			/* CRLF bytes to drop (partial) */
	uint64_t left;			/* CRLF bytes still to send */
	bool prev_cr;
	size_t burst;			/* bytes written since the last
					   yield */
	/* The message's cached header fields (mindex_msg.headers), when
	 * complete: HEADER.FIELDS of cached names is answered from them
	 * without opening the message (Thunderbird's sync asks it of every
	 * message). */
	struct buf cached;
	bool cached_ok;
	bool wants_fields;	/* a section is HEADER.FIELDS: keep them */
};

/* From imap_fetch.c. */
int imap_fetch_index_items(struct imap_session *s, unsigned msn,
    const struct mindex_msg *m, unsigned want);

static void
imap_section_free(struct imap_section *sec)
{
	free(sec->name);
	for (unsigned i = 0; i < sec->nfields; i++)
		free(sec->fields[i]);
}

void
imap_fetch_job_free(struct imap_fetch_job **jp)
{
	struct imap_fetch_job *j = *jp;

	if (j == NULL)
		return;
	*jp = NULL;
	for (unsigned i = 0; i < j->nsecs; i++)
		imap_section_free(&j->secs[i]);
	free(j->secs);
	imap_seqset_deinit(&j->set);
	store_read_close(&j->rd);
	mime_part_free(&j->tree);
	buf_free(&j->cached);
	free(j);
}

/*
 * Parsing a section item.
 */

/* Part numbers "1.2.3" followed by '.' or the end; advances *p. */
static int
imap_section_parts(const char **p, struct imap_section *sec)
{
	while (isdigit((unsigned char)**p)) {
		unsigned long n = 0;

		while (isdigit((unsigned char)**p)) {
			n = n * 10 + (unsigned long)(**p - '0');
			if (n > 100000)
				return -1;
			(*p)++;
		}
		if (n == 0 || sec->nparts == IMAP_SECTION_PARTS_MAX)
			return -1;
		sec->parts[sec->nparts++] = (unsigned)n;
		if (**p == '.')
			(*p)++;
		else if (**p != ']')
			return -1;
		if (**p == ']')
			break;
	}
	return 0;
}

/* "(FROM TO)" after HEADER.FIELDS[.NOT] up to ']'. */
static int
imap_section_fields(const char **p, struct imap_section *sec)
{
	const char *q = *p;

	while (*q == ' ')
		q++;
	if (*q++ != '(')
		return -1;
	for (;;) {
		const char *start;
		size_t len;

		while (*q == ' ')
			q++;
		if (*q == ')')
			break;
		start = q;
		while (*q > ' ' && *q < 127 && *q != ':' && *q != ')' &&
		    *q != '(')
			q++;
		len = (size_t)(q - start);
		if (len == 0 || len > 128 ||
		    sec->nfields == IMAP_SECTION_FIELDS_MAX)
			return -1;
		if (start[0] == '"' || start[len - 1] == '"')
			return -1;
		sec->fields[sec->nfields] = xstrndup(start, len);
		for (char *c = sec->fields[sec->nfields]; *c != '\0'; c++)
			*c = (char)toupper((unsigned char)*c);
		sec->nfields++;
	}
	if (sec->nfields == 0)
		return -1;
	*p = q + 1;
	return 0;
}

static int
imap_section_kind(const char **p, struct imap_section *sec)
{
	static const struct {
		const char *word;
		enum imap_sec_kind kind;
	} kinds[] = {
		{ "HEADER.FIELDS.NOT", IMAP_SEC_FIELDS_NOT },
		{ "HEADER.FIELDS", IMAP_SEC_FIELDS },
		{ "HEADER", IMAP_SEC_HEADER },
		{ "TEXT", IMAP_SEC_TEXT },
		{ "MIME", IMAP_SEC_MIME },
	};

	sec->kind = IMAP_SEC_ALL;
	if (**p == ']')
		return 0;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		size_t n = strlen(kinds[i].word);

		if (strncasecmp(*p, kinds[i].word, n) != 0)
			continue;
		*p += n;
		sec->kind = kinds[i].kind;
		if (sec->kind == IMAP_SEC_MIME && sec->nparts == 0)
			return -1;
		if (sec->kind == IMAP_SEC_FIELDS ||
		    sec->kind == IMAP_SEC_FIELDS_NOT)
			return imap_section_fields(p, sec);
		return 0;
	}
	return -1;
}

/* "<origin.length>" */
static int
imap_section_partial(const char *p, struct imap_section *sec)
{
	char *end;
	unsigned long long o, l;

	if (*p == '\0')
		return 0;
	if (*p != '<' || !isdigit((unsigned char)p[1]))
		return -1;
	o = strtoull(p + 1, &end, 10);
	if (*end != '.' || !isdigit((unsigned char)end[1]))
		return -1;
	l = strtoull(end + 1, &end, 10);
	if (strcmp(end, ">") != 0 || o > UINT32_MAX || l > UINT32_MAX ||
	    l == 0)
		return -1;
	sec->partial = true;
	sec->origin = o;
	sec->length = l;
	return 0;
}

/*
 * imap_fetch_section_parse: item (an atom as sent) into sec. 1 parsed, 0
 * not a body item, -1 malformed.
 */
static int
imap_fetch_section_parse(const char *item, struct imap_section *sec)
{
	const char *p, *close;
	struct buf name;

	memset(sec, 0, sizeof(*sec));
	if (strcasecmp(item, "RFC822") == 0) {
		sec->name = xstrdup("RFC822");
		return 1;
	}
	if (strcasecmp(item, "RFC822.HEADER") == 0) {
		sec->name = xstrdup("RFC822.HEADER");
		sec->kind = IMAP_SEC_HEADER;
		sec->peek = true;
		return 1;
	}
	if (strcasecmp(item, "RFC822.TEXT") == 0) {
		sec->name = xstrdup("RFC822.TEXT");
		sec->kind = IMAP_SEC_TEXT;
		return 1;
	}
	if (strncasecmp(item, "BODY.PEEK[", 10) == 0) {
		sec->peek = true;
		p = item + 10;
	} else if (strncasecmp(item, "BODY[", 5) == 0)
		p = item + 5;
	else
		return 0;
	close = strchr(p, ']');
	if (close == NULL || imap_section_parts(&p, sec) < 0 ||
	    imap_section_kind(&p, sec) < 0 || p != close ||
	    imap_section_partial(close + 1, sec) < 0) {
		imap_section_free(sec);
		memset(sec, 0, sizeof(*sec));
		return -1;
	}
	/* The response names BODY[section] without .PEEK, and only the
	 * origin of a partial. */
	buf_init(&name, 4096);
	buf_append_str(&name, "BODY[");
	buf_append(&name, sec->peek ? item + 10 : item + 5,
	    (size_t)(close - (sec->peek ? item + 10 : item + 5)));
	buf_append_byte(&name, ']');
	if (sec->partial)
		buf_printf(&name, "<%llu>", (unsigned long long)sec->origin);
	for (size_t i = 0; i < name.len; i++)
		name.data[i] = (unsigned char)toupper(name.data[i]);
	sec->name = xstrdup(buf_cstr(&name));
	buf_free(&name);
	return 1;
}

/*
 * Locating a section in the tree.
 */

/* The part a section names, or NULL: part numbers walk multiparts, and
 * through message/rfc822 into the encapsulated message's body. */
static const struct mime_part *
imap_section_part(const struct mime_part *root, const struct imap_section *sec)
{
	const struct mime_part *p = root;

	for (unsigned i = 0; i < sec->nparts; i++) {
		unsigned n = sec->parts[i];

		/* The body of a message: a multipart's parts, or itself as
		 * part 1. */
		if (p->nchildren > 0 && strcmp(p->type, "multipart") == 0) {
			if (n > p->nchildren)
				return NULL;
			p = &p->children[n - 1];
		} else if (n != 1)
			return NULL;
		/* Going further into a message/rfc822: into its message. */
		if (i + 1 < sec->nparts && p->nchildren == 1 &&
		    strcmp(p->type, "message") == 0)
			p = &p->children[0];
	}
	return p;
}

/* The stored byte range [*off, *off + *psize) and its CRLF size. */
static int
imap_section_range(const struct mime_part *root,
    const struct imap_section *sec, uint64_t *off, uint64_t *psize,
    uint64_t *vsize)
{
	const struct mime_part *p = imap_section_part(root, sec);
	const struct mime_part *msg;

	if (p == NULL)
		return -1;
	/* HEADER and TEXT name the message: the root, or the one a
	 * message/rfc822 part holds. */
	msg = sec->nparts == 0 ? p : (p->nchildren == 1 &&
	    strcmp(p->type, "message") == 0 ? &p->children[0] : NULL);
	switch (sec->kind) {
	case IMAP_SEC_ALL:
		if (sec->nparts == 0) {
			*off = p->hdr_offset;
			*psize = p->hdr_psize + p->body_psize;
			*vsize = p->hdr_vsize + p->body_vsize;
		} else {
			*off = p->body_offset;
			*psize = p->body_psize;
			*vsize = p->body_vsize;
		}
		return 0;
	case IMAP_SEC_MIME:
		*off = p->hdr_offset;
		*psize = p->hdr_psize;
		*vsize = p->hdr_vsize;
		return 0;
	case IMAP_SEC_TEXT:
		if (msg == NULL)
			return -1;
		*off = msg->body_offset;
		*psize = msg->body_psize;
		*vsize = msg->body_vsize;
		return 0;
	default:
		if (msg == NULL)
			return -1;
		*off = msg->hdr_offset;
		*psize = msg->hdr_psize;
		*vsize = msg->hdr_vsize;
		return 0;
	}
}

/*
 * Writing.
 */

/* Append len bytes converted to CRLF (and NUL to 0x80, as literals cannot
 * hold NUL) to out, after skipping *skip converted bytes and at most
 * *left of them; *prev_cr carries across chunks. */
static void
imap_crlf_append(struct buf *out, const unsigned char *d, size_t len,
    bool *prev_cr, uint64_t *skip, uint64_t *left)
{
	for (size_t i = 0; i < len && *left > 0; i++) {
		unsigned char c = d[i], two[2];
		unsigned n = 0;

		if (c == '\n' && !*prev_cr)
			two[n++] = '\r';
		two[n++] = c == '\0' ? 0x80 : c;
		*prev_cr = c == '\r';
		for (unsigned k = 0; k < n && *left > 0; k++) {
			if (*skip > 0) {
				(*skip)--;
				continue;
			}
			buf_append_byte(out, two[k]);
			(*left)--;
		}
	}
}

struct imap_fields_ctx {
	const struct imap_section *sec;
	struct buf *out;
};

static int
imap_fields_cb(const unsigned char *name, size_t name_len,
    const unsigned char *raw, size_t raw_len, void *ctx)
{
	struct imap_fields_ctx *c = ctx;
	bool listed = false;

	for (unsigned i = 0; i < c->sec->nfields && !listed; i++)
		listed = strlen(c->sec->fields[i]) == name_len &&
		    strncasecmp(c->sec->fields[i], (const char *)name,
		    name_len) == 0;
	if (listed == (c->sec->kind == IMAP_SEC_FIELDS))
		buf_append(c->out, raw, raw_len);
	return 0;
}

/* Read [off, off + psize) of the message whole (bounded). */
static int
imap_read_range(struct store *st, const char *folder, uint32_t uid,
    uint64_t off, uint64_t psize, struct buf *out, const char **error_r)
{
	struct store_read *rd;
	unsigned char chunk[16384];
	size_t len;
	int r;

	if (psize > IMAP_FETCH_HEADER_MAX) {
		*error_r = "header too large";
		return -1;
	}
	if (store_read_open(st, folder, uid, &rd, error_r) != STORE_OP_OK)
		return -1;
	if (store_read_seek(rd, off, error_r) < 0) {
		store_read_close(&rd);
		return -1;
	}
	while (out->len < psize &&
	    (r = store_read_next(rd, chunk, sizeof(chunk), &len,
	    error_r)) > 0) {
		if (len > psize - out->len)
			len = (size_t)(psize - out->len);
		buf_append(out, chunk, len);
	}
	store_read_close(&rd);
	return 0;
}

/* Whether the cache holds every field sec asks for: HEADER.FIELDS (not
 * .NOT, which needs the others too) of the message itself (not of a part
 * or an attached message), names the index caches, and a cache that
 * lost no field to its size limit. The cache keeps the fields in the
 * message's order, so the answer is byte for byte the same. */
static bool
imap_fields_cached(const struct imap_fetch_job *j,
    const struct imap_section *sec)
{
	if (!j->cached_ok || sec->kind != IMAP_SEC_FIELDS || sec->nparts > 0)
		return false;
	for (unsigned i = 0; i < sec->nfields; i++)
		if (!msg_cache_field((const unsigned char *)sec->fields[i],
		    strlen(sec->fields[i])))
			return false;
	return true;
}

/* A header field subset, written whole as a literal. */
static int
imap_emit_fields(struct imap_session *s, struct imap_fetch_job *j,
    const struct imap_section *sec, uint64_t off, uint64_t psize)
{
	struct imap_fields_ctx c;
	struct buf hdr, sel, conv;
	const char *error;
	bool prev_cr = false;
	uint64_t skip, left;

	buf_init(&hdr, IMAP_FETCH_HEADER_MAX);
	buf_init(&sel, IMAP_FETCH_HEADER_MAX);
	buf_init(&conv, IMAP_FETCH_HEADER_MAX * 2);
	if (imap_fields_cached(j, sec))
		buf_append(&hdr, j->cached.data, j->cached.len);
	else if (imap_read_range(imap_store(s), s->view.name, j->msg_uid, off,
	    psize, &hdr, &error) < 0) {
		log_warning("imap: user=<%s>, uid %u: %s", s->user, j->msg_uid,
		    error);
		buf_truncate(&hdr, 0);
	}
	c.sec = sec;
	c.out = &sel;
	if (hdr.len > 0)
		(void)msg_header_iter(hdr.data, hdr.len, imap_fields_cb, &c,
		    NULL);
	buf_append_str(&sel, "\n");	/* the empty line ends a header */
	skip = sec->partial ? sec->origin : 0;
	left = sec->partial ? sec->length : UINT64_MAX;
	imap_crlf_append(&conv, sel.data, sel.len, &prev_cr, &skip, &left);
	buf_printf(&s->out, "%s {%zu}\r\n", sec->name, conv.len);
	buf_append(&s->out, conv.data, conv.len);
	buf_free(&hdr);
	buf_free(&sel);
	buf_free(&conv);
	return 0;
}

/* Start the next section of the current message: written at once, or a
 * stream begun. */
static void
imap_emit_section(struct imap_session *s, struct imap_fetch_job *j,
    const struct imap_section *sec)
{
	uint64_t off = 0, psize = 0, vsize = 0, n;
	const char *error;

	if (j->need_sp)
		buf_append_byte(&s->out, ' ');
	j->need_sp = true;
	if (j->tree == NULL ||
	    imap_section_range(j->tree, sec, &off, &psize, &vsize) < 0) {
		/* A part that does not exist is empty (RFC 3501 6.4.5). */
		buf_printf(&s->out, "%s \"\"", sec->name);
		return;
	}
	if (sec->kind == IMAP_SEC_FIELDS || sec->kind == IMAP_SEC_FIELDS_NOT) {
		(void)imap_emit_fields(s, j, sec, off, psize);
		return;
	}
	n = vsize;
	if (sec->partial)
		n = sec->origin >= vsize ? 0 : (vsize - sec->origin <
		    sec->length ? vsize - sec->origin : sec->length);
	buf_printf(&s->out, "%s {%llu}\r\n", sec->name, (unsigned long long)n);
	if (n == 0)
		return;
	if (store_read_open(imap_store(s), s->view.name, j->msg_uid, &j->rd,
	    &error) != STORE_OP_OK || store_read_seek(j->rd, off,
	    &error) < 0) {
		/* The literal is announced: keep the promise with spaces
		 * rather than break the protocol. */
		log_warning("imap: user=<%s>, uid %u: %s", s->user, j->msg_uid,
		    error);
		store_read_close(&j->rd);
		for (uint64_t i = 0; i < n; i++)
			buf_append_byte(&s->out, ' ');
		return;
	}
	j->raw_left = psize;
	j->skip = sec->partial ? sec->origin : 0;
	j->left = n;
	j->prev_cr = false;
}

/* Stream some of the current section: false when it is done. */
static bool
imap_stream_step(struct imap_session *s, struct imap_fetch_job *j)
{
	unsigned char chunk[IMAP_FETCH_CHUNK];
	const char *error;
	size_t len;
	int r;

	while (j->left > 0 && j->burst < IMAP_FETCH_BURST) {
		r = store_read_next(j->rd, chunk, sizeof(chunk), &len, &error);
		if (r < 0)
			log_warning("imap: user=<%s>, uid %u: %s", s->user,
			    j->msg_uid, error);
		if (r <= 0 || j->raw_left == 0) {
			/* Shorter than the index said: pad, as above. */
			while (j->left > 0) {
				buf_append_byte(&s->out, ' ');
				j->left--;
			}
			break;
		}
		if (len > j->raw_left)
			len = (size_t)j->raw_left;
		j->raw_left -= len;
		imap_crlf_append(&s->out, chunk, len, &j->prev_cr, &j->skip,
		    &j->left);
		j->burst += len;
		imap_send(s);
	}
	if (j->left > 0)
		return true;
	store_read_close(&j->rd);
	return false;
}

/* A body fetched without PEEK sets \Seen (RFC 3501 6.4.5) in a folder
 * opened read-write; the response then carries the new FLAGS. Returns
 * whether it did. */
static bool
imap_job_set_seen(struct imap_session *s, struct imap_fetch_job *j,
    struct imap_msgref *r)
{
	struct store_uid_range range = { r->uid, r->uid };
	struct store_uidset set = { &range, 1 };
	struct store_flags_change c = { &set, STORE_FLAGS_ADD, MINDEX_F_SEEN,
	    STORE_MODSEQ_NONE };
	struct store_flag_result *res = NULL;
	const char *error;
	size_t n = 0;
	bool any_body = false;

	for (unsigned i = 0; i < j->nsecs; i++)
		any_body |= !j->secs[i].peek;
	if (!any_body || s->view.readonly ||
	    (r->flags & MINDEX_F_SEEN) != 0 || imap_store(s) == NULL)
		return false;
	if (store_flags_change(s->st, s->view.name, &c, &res, &n,
	    &error) != STORE_OP_OK) {
		log_warning("imap: user=<%s>, uid %u: setting \\Seen: %s",
		    s->user, r->uid, error);
		free(res);
		return false;
	}
	if (n == 1) {
		r->flags = res[0].flags;
		r->modseq = res[0].modseq;
	}
	free(res);
	return n == 1;
}

/* Open the next message of the job; false when there is none. */
static bool
imap_job_next_msg(struct imap_session *s, struct imap_fetch_job *j)
{
	struct mindex_txn *txn;
	struct mindex_msg m;
	const char *error;

	for (; j->next < s->view.count; j->next++) {
		struct imap_msgref *r = &s->view.msgs[j->next];
		unsigned msn = j->next + 1;
		unsigned want = j->want;

		if (!imap_seqset_contains(&j->set, j->uid ? r->uid : msn))
			continue;
		/* \Seen set here is a flag change the client did not ask
		 * to see: with CONDSTORE it carries MODSEQ (RFC 7162). */
		if (imap_job_set_seen(s, j, r))
			want |= IMAP_FETCH_FLAGS | (s->condstore ?
			    IMAP_FETCH_MODSEQ : 0);
		if (imap_store(s) == NULL ||
		    mindex_begin(store_index(s->st), false, &txn,
		    &error) < 0)
			return false;
		if (mindex_msg_get(txn, s->view.folder_id, r->uid, &m) <= 0) {
			mindex_abort(&txn);
			continue;
		}
		j->next++;
		j->msg_uid = r->uid;
		if (m.mime_len == 0 ||
		    mime_deserialize(m.mime, m.mime_len, &j->tree) < 0)
			j->tree = NULL;
		if ((want & IMAP_FETCH_FLAGS) != 0)
			m.flags = r->flags;
		buf_truncate(&j->cached, 0);
		j->cached_ok = j->wants_fields &&
		    (m.cache_flags & (MINDEX_C_HEADERS_PARTIAL |
		    MINDEX_C_UNPARSED)) == 0 &&
		    buf_append(&j->cached, m.headers, m.headers_len) == 0;
		j->need_sp = imap_fetch_index_items(s, msn, &m, want) > 0;
		mindex_abort(&txn);
		j->in_msg = true;
		j->sec_i = 0;
		s->stats.fetched++;
		return true;
	}
	return false;
}

/*
 * imap_fetch_job_run: go on with s's FETCH job until it is done (then the
 * tagged OK is written and the job freed: returns true) or the output
 * should drain first (false).
 */
bool
imap_fetch_job_run(struct imap_session *s)
{
	struct imap_fetch_job *j = s->fetch;

	j->burst = 0;
	for (;;) {
		if (j->rd != NULL) {
			if (imap_stream_step(s, j))
				return false;
			j->sec_i++;
		}
		if (j->in_msg) {
			while (j->rd == NULL && j->sec_i < j->nsecs) {
				imap_emit_section(s, j, &j->secs[j->sec_i]);
				if (j->rd == NULL)
					j->sec_i++;
			}
			if (j->rd != NULL)
				continue;
			buf_append_str(&s->out, ")\r\n");
			/* Answers from the index and header fields count
			 * too, or a FETCH 1:* of them would never yield. */
			j->burst += s->out.len;
			imap_send(s);
			j->in_msg = false;
			mime_part_free(&j->tree);
			if (j->burst >= IMAP_FETCH_BURST)
				return false;
		}
		if (!imap_job_next_msg(s, j))
			break;
	}
	imap_send(s);
	imap_tagged(s, "OK", "%sFETCH completed", j->uid ? "UID " : "");
	imap_fetch_job_free(&s->fetch);
	return true;
}

/*
 * imap_fetch_job_new: a job for the sections in items (count of them;
 * non-body items are skipped here). Takes set. -1 after BAD.
 */
int
imap_fetch_job_new(struct imap_session *s, struct imap_seqset *set, bool uid,
    unsigned want, const char *const *items, unsigned count)
{
	struct imap_fetch_job *j = xcalloc(1, sizeof(*j));

	j->set = *set;
	memset(set, 0, sizeof(*set));
	j->uid = uid;
	j->want = want;
	buf_init(&j->cached, MINDEX_FIELD_MAX);
	j->secs = xcalloc(count + 1, sizeof(*j->secs));
	for (unsigned i = 0; i < count; i++) {
		int r = imap_fetch_section_parse(items[i], &j->secs[j->nsecs]);

		if (r < 0) {
			imap_fetch_job_free(&j);
			imap_bad(s, "Invalid body section");
			return -1;
		}
		if (r > 0) {
			if (j->secs[j->nsecs].kind == IMAP_SEC_FIELDS)
				j->wants_fields = true;
			j->nsecs++;
		}
	}
	s->fetch = j;
	return 0;
}
