/*
 * imap_fetch_body.c: the body sections of FETCH (RFC 3501 6.4.5, 7.4.2):
 * BODY[section]<partial>, BODY.PEEK[...], RFC822, RFC822.HEADER and
 * RFC822.TEXT, and RFC 3516's BINARY[part]<partial>, BINARY.PEEK[...] and
 * BINARY.SIZE[part]. Sections are located with the message's MIME tree
 * from the index; their bytes come from storage through store_read,
 * converted to CRLF on the fly, and are streamed: a FETCH with bodies is
 * a job that writes a bounded amount, waits for the output to drain
 * (imap_session_output_ready), and goes on, so a 50 MB message or
 * "FETCH 1:* BODY[]" never sits in memory. Header field subsets are read
 * into memory, bounded by IMAP_FETCH_HEADER_MAX.
 *
 * BINARY gives a part's content with its Content-Transfer-Encoding
 * undone (lib/cte, with CTE_CRLF; BINARY[] is the whole message, as BODY[]
 * but with NUL bytes kept). The decoded size must be announced before
 * the data, and whether it holds a NUL (then it goes as a literal8,
 * "~{n}", else as a literal), so the part is decoded twice, in chunks
 * both times: once to measure (at once, up to the end of a partial's
 * range), once to stream. A part in an encoding we cannot undo fails the
 * FETCH with NO [UNKNOWN-CTE], the other messages answered.
 *
 * PREVIEW (RFC 8970) reads the first text part of each message, at most
 * IMAP_PREVIEW_READ_MAX decoded bytes of it, when asked (nothing is kept
 * in the index), and imap_fetch.c's imap_preview_* make the text.
 *
 * Trusts nothing from the client (section texts are parsed here with
 * bounds on every number and name); trusts the index's tree, which
 * mime_deserialize checks, and clips every range to the message. Stored
 * bytes are decoded by state machines that take any byte.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "compat/compat.h"
#include "cte.h"
#include "log.h"
#include "mime.h"
#include "mindex.h"
#include "msg.h"
#include "store.h"
#include "xmalloc.h"
#include "server/imap/imap_private.h"
#include "server/imap/imap_seqset.h"
#include "server/imap/imap_write.h"

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

/* What a section item asks for. */
enum imap_sec_what {
	IMAP_WHAT_BODY,		/* BODY[...], RFC822...: the stored bytes */
	IMAP_WHAT_BINARY,	/* BINARY[...]: decoded */
	IMAP_WHAT_SIZE		/* BINARY.SIZE[...]: the decoded size */
};

struct imap_section {
	char *name;		/* as the response names it: "BODY[1.TEXT]" */
	enum imap_sec_what what;
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
	/* BINARY. */
	bool has_binary;	/* a section is BINARY or BINARY.SIZE */
	bool unknown_cte;	/* a message was left out: NO [UNKNOWN-CTE] */
	bool decoding;		/* the stream is decoded through dec */
	struct cte_dec dec;
	unsigned char *decbuf;	/* owned; IMAP_FETCH_DECBUF bytes */
	struct imap_bin_memo *memo;	/* owned; one per section, for the
					   message being answered */
	/* Completion (imap_view_complete) could not read every file. */
	unsigned check;		/* IMAP_NEED_* a message must have */
	bool unready;		/* one was left out: NO */
};

/* The decoded size of a section of the current message, once measured
 * whole: a second section of the same part (BINARY.SIZE[1] BINARY[1])
 * is not measured again. */
struct imap_bin_memo {
	bool valid;
	uint64_t size;
	bool nul;
};

/* Room for one chunk decoded (cte_decode's bound). */
#define IMAP_FETCH_DECBUF	(2 * IMAP_FETCH_CHUNK + CTE_SLACK)

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
	free(j->decbuf);
	free(j->memo);
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

/* The items with a [section], as sent and as the response names them. */
static const struct imap_sec_prefix {
	const char *item;
	const char *reply;
	enum imap_sec_what what;
	bool peek;
} imap_sec_prefixes[] = {
	{ "BODY.PEEK[", "BODY[", IMAP_WHAT_BODY, true },
	{ "BODY[", "BODY[", IMAP_WHAT_BODY, false },
	{ "BINARY.PEEK[", "BINARY[", IMAP_WHAT_BINARY, true },
	{ "BINARY.SIZE[", "BINARY.SIZE[", IMAP_WHAT_SIZE, true },
	{ "BINARY[", "BINARY[", IMAP_WHAT_BINARY, false },
};

/* The section after the item's '[' (p, up to close) into sec. BINARY
 * takes part numbers only (RFC 3516 section-binary), and BINARY.SIZE no
 * partial. */
static int
imap_section_spec(const char *p, const char *close, struct imap_section *sec)
{
	if (imap_section_parts(&p, sec) < 0)
		return -1;
	if (sec->what == IMAP_WHAT_BODY) {
		if (imap_section_kind(&p, sec) < 0)
			return -1;
	} else
		sec->kind = IMAP_SEC_ALL;
	if (p != close || imap_section_partial(close + 1, sec) < 0)
		return -1;
	return sec->what == IMAP_WHAT_SIZE && sec->partial ? -1 : 0;
}

/*
 * imap_fetch_section_parse: item (an atom as sent) into sec. 1 parsed, 0
 * not a body item, -1 malformed.
 */
static int
imap_fetch_section_parse(const char *item, struct imap_section *sec)
{
	const struct imap_sec_prefix *pre = NULL;
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
	for (size_t i = 0; i < sizeof(imap_sec_prefixes) /
	    sizeof(imap_sec_prefixes[0]) && pre == NULL; i++)
		if (strncasecmp(item, imap_sec_prefixes[i].item,
		    strlen(imap_sec_prefixes[i].item)) == 0)
			pre = &imap_sec_prefixes[i];
	if (pre == NULL)
		return 0;
	sec->what = pre->what;
	sec->peek = pre->peek;
	p = item + strlen(pre->item);
	close = strchr(p, ']');
	if (close == NULL || imap_section_spec(p, close, sec) < 0) {
		imap_section_free(sec);
		memset(sec, 0, sizeof(*sec));
		return -1;
	}
	/* The response names the section without .PEEK, and only the
	 * origin of a partial. */
	buf_init(&name, 4096);
	buf_append_str(&name, pre->reply);
	buf_append(&name, p, (size_t)(close - p));
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

/* The bytes of the message a BINARY section decodes, and how: the whole
 * message as BODY[] has it (TEXT: CRLF lines, NUL kept), or a part's
 * body with its own encoding. 1 found, 0 no such part, -1 an encoding we
 * cannot undo. */
static int
imap_binary_range(const struct mime_part *root, const struct imap_section *sec,
    uint64_t *off, uint64_t *psize, enum cte_encoding *cte)
{
	const struct mime_part *p = imap_section_part(root, sec);

	if (p == NULL)
		return 0;
	if (sec->nparts == 0) {
		*off = p->hdr_offset;
		*psize = p->hdr_psize + p->body_psize;
		*cte = CTE_TEXT;
		return 1;
	}
	*off = p->body_offset;
	*psize = p->body_psize;
	return cte_from_name(p->encoding, cte) < 0 ? -1 : 1;
}

/* Count n decoded bytes p, which start *size bytes into the section;
 * note a NUL among those in [from, upto). */
static void
imap_binary_count(const unsigned char *p, size_t n, uint64_t from,
    uint64_t upto, uint64_t *size, bool *nul)
{
	uint64_t a = from > *size ? from : *size;
	uint64_t b = upto - *size < n ? upto : *size + n;

	if (!*nul && a < b && memchr(p + (a - *size), '\0', b - a) != NULL)
		*nul = true;
	*size += n;
}

/* Decode [off, off + psize) of the current message without writing it:
 * its decoded size (counting stops once it reaches upto) and whether
 * bytes [from, upto) of it hold a NUL. Bounded memory, but all at once:
 * the size must be known before the data goes out. -1 (logged) if the
 * message cannot be read. */
static int
imap_binary_measure(struct imap_session *s, struct imap_fetch_job *j,
    uint64_t off, uint64_t psize, enum cte_encoding cte, uint64_t from,
    uint64_t upto, uint64_t *size_r, bool *nul_r)
{
	unsigned char chunk[IMAP_FETCH_CHUNK];
	struct cte_dec d;
	struct store_read *rd;
	const char *error;
	size_t len, n;
	int r = 1;

	*size_r = 0;
	*nul_r = false;
	if (store_read_open(imap_store(s), s->view.name, j->msg_uid, &rd,
	    &error) != STORE_OP_OK) {
		log_warning("imap: user=<%s>, uid %u: %s", s->user, j->msg_uid,
		    error);
		return -1;
	}
	cte_init(&d, cte, CTE_CRLF);
	if (store_read_seek(rd, off, &error) < 0)
		r = -1;
	while (r > 0 && psize > 0 && *size_r < upto) {
		if ((r = store_read_next(rd, chunk, sizeof(chunk), &len,
		    &error)) <= 0)
			break;
		if (len > psize)
			len = (size_t)psize;
		psize -= len;
		n = cte_decode(&d, chunk, len, j->decbuf);
		imap_binary_count(j->decbuf, n, from, upto, size_r, nul_r);
	}
	store_read_close(&rd);
	if (r < 0) {
		log_warning("imap: user=<%s>, uid %u: %s", s->user, j->msg_uid,
		    error);
		return -1;
	}
	if (*size_r < upto) {
		n = cte_finish(&d, j->decbuf);
		imap_binary_count(j->decbuf, n, from, upto, size_r, nul_r);
	}
	return 0;
}

/* Is section i the same part as section k (both BINARY or BINARY.SIZE)? */
static bool
imap_binary_same(const struct imap_fetch_job *j, unsigned i, unsigned k)
{
	const struct imap_section *a = &j->secs[i], *b = &j->secs[k];

	return a->what != IMAP_WHAT_BODY && b->what != IMAP_WHAT_BODY &&
	    a->nparts == b->nparts &&
	    memcmp(a->parts, b->parts, a->nparts * sizeof(a->parts[0])) == 0;
}

/* The size and NUL of the current section (j->sec_i), from an earlier
 * section of the same part or measured; partial ones measure only up to
 * the end of their range. -1 if the message cannot be read. */
static int
imap_binary_size(struct imap_session *s, struct imap_fetch_job *j,
    const struct imap_section *sec, uint64_t off, uint64_t psize,
    enum cte_encoding cte, uint64_t *size_r, bool *nul_r)
{
	uint64_t from = 0, upto = UINT64_MAX;
	struct imap_bin_memo *m = &j->memo[j->sec_i];

	for (unsigned k = 0; k < j->sec_i; k++)
		if (j->memo[k].valid && imap_binary_same(j, k, j->sec_i)) {
			*m = j->memo[k];
			*size_r = m->size;
			*nul_r = m->nul;
			return 0;
		}
	if (sec->partial) {
		from = sec->origin;
		upto = sec->origin + sec->length;
	}
	if (imap_binary_measure(s, j, off, psize, cte, from, upto, size_r,
	    nul_r) < 0)
		return -1;
	if (!sec->partial) {
		m->valid = true;
		m->size = *size_r;
		m->nul = *nul_r;
	}
	return 0;
}

/* A BINARY or BINARY.SIZE section: answered at once, or a decoding
 * stream begun (imap_binary_step). */
static void
imap_emit_binary(struct imap_session *s, struct imap_fetch_job *j,
    const struct imap_section *sec)
{
	uint64_t off = 0, psize = 0, size = 0, n;
	enum cte_encoding cte = CTE_TEXT;
	const char *error;
	bool nul = false;
	int r;

	/* A part that does not exist is empty (RFC 3501 6.4.5); one that
	 * cannot be read or decoded has no value (NIL): nothing was
	 * announced yet. */
	r = j->tree == NULL ? 0 : imap_binary_range(j->tree, sec, &off,
	    &psize, &cte);
	if (r < 0 || (r > 0 && imap_binary_size(s, j, sec, off, psize, cte,
	    &size, &nul) < 0)) {
		buf_printf(&s->out, "%s %s", sec->name,
		    sec->what == IMAP_WHAT_SIZE ? "0" : "NIL");
		return;
	}
	if (r == 0 && sec->what == IMAP_WHAT_BINARY) {
		buf_printf(&s->out, "%s \"\"", sec->name);
		return;
	}
	if (sec->what == IMAP_WHAT_SIZE) {
		buf_printf(&s->out, "%s %llu", sec->name,
		    (unsigned long long)size);
		return;
	}
	n = size;
	if (sec->partial)
		n = sec->origin >= size ? 0 : (size - sec->origin <
		    sec->length ? size - sec->origin : sec->length);
	buf_printf(&s->out, "%s %s{%llu}\r\n", sec->name, nul ? "~" : "",
	    (unsigned long long)n);
	if (n == 0)
		return;
	if (store_read_open(imap_store(s), s->view.name, j->msg_uid, &j->rd,
	    &error) != STORE_OP_OK || store_read_seek(j->rd, off,
	    &error) < 0) {
		/* Announced: keep the promise (see imap_emit_section). */
		log_warning("imap: user=<%s>, uid %u: %s", s->user, j->msg_uid,
		    error);
		store_read_close(&j->rd);
		for (uint64_t i = 0; i < n; i++)
			buf_append_byte(&s->out, ' ');
		return;
	}
	cte_init(&j->dec, cte, CTE_CRLF);
	j->decoding = true;
	j->raw_left = psize;
	j->skip = sec->partial ? sec->origin : 0;
	j->left = n;
}

/* Decoded bytes p[0..n) of the stream: past the partial's origin, up to
 * what was announced. */
static void
imap_binary_out(struct imap_session *s, struct imap_fetch_job *j,
    const unsigned char *p, size_t n)
{
	if (j->skip >= n) {
		j->skip -= n;
		return;
	}
	p += j->skip;
	n -= (size_t)j->skip;
	j->skip = 0;
	if (n > j->left)
		n = (size_t)j->left;
	buf_append(&s->out, p, n);
	j->left -= n;
	j->burst += n;
}

/* Stream some of a BINARY section: false when it is done. */
static bool
imap_binary_step(struct imap_session *s, struct imap_fetch_job *j)
{
	unsigned char chunk[IMAP_FETCH_CHUNK];
	const char *error;
	size_t len;
	int r = 1;

	while (j->left > 0 && j->burst < IMAP_FETCH_BURST) {
		if (j->raw_left == 0 || (r = store_read_next(j->rd, chunk,
		    sizeof(chunk), &len, &error)) <= 0) {
			if (r < 0)
				log_warning("imap: user=<%s>, uid %u: %s",
				    s->user, j->msg_uid, error);
			imap_binary_out(s, j, j->decbuf,
			    cte_finish(&j->dec, j->decbuf));
			/* Shorter than measured (changed meanwhile): pad. */
			for (; j->left > 0; j->left--)
				buf_append_byte(&s->out, ' ');
			break;
		}
		if (len > j->raw_left)
			len = (size_t)j->raw_left;
		j->raw_left -= len;
		imap_binary_out(s, j, j->decbuf,
		    cte_decode(&j->dec, chunk, len, j->decbuf));
		imap_send(s);
	}
	imap_send(s);
	if (j->left > 0)
		return true;
	store_read_close(&j->rd);
	j->decoding = false;
	return false;
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
	if (sec->what != IMAP_WHAT_BODY) {
		imap_emit_binary(s, j, sec);
		return;
	}
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
	size_t len, before;
	int r;

	if (j->decoding)
		return imap_binary_step(s, j);
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
		before = s->out.len;
		imap_crlf_append(&s->out, chunk, len, &j->prev_cr, &j->skip,
		    &j->left);
		/* Only what was written counts: a yield with nothing sent
		 * would wait for a drain that never comes (a partial's
		 * skipped bytes). */
		j->burst += s->out.len - before;
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

/* Can every BINARY section of the job be decoded in message uid? Asked
 * before anything of the message is answered (or \Seen set), since RFC
 * 3516 fails the request for it. A message that cannot be looked at
 * passes: it is answered as best it can be. */
static bool
imap_job_cte_ok(struct imap_session *s, struct imap_fetch_job *j,
    uint32_t uid)
{
	struct mime_part *tree = NULL;
	struct mindex_txn *txn;
	struct mindex_msg m;
	const char *error;
	enum cte_encoding cte;
	uint64_t off, psize;
	bool ok = true;

	if (imap_store(s) == NULL ||
	    mindex_begin(store_index(s->st), false, &txn, &error) < 0)
		return true;
	if (mindex_msg_get(txn, s->view.folder_id, uid, &m) > 0 &&
	    m.mime_len > 0 && mime_deserialize(m.mime, m.mime_len,
	    &tree) == 0) {
		for (unsigned i = 0; i < j->nsecs && ok; i++)
			ok = j->secs[i].what == IMAP_WHAT_BODY ||
			    imap_binary_range(tree, &j->secs[i], &off, &psize,
			    &cte) >= 0;
	}
	mindex_abort(&txn);
	mime_part_free(&tree);
	return ok;
}

/* Has message uid what the job needs (j->check)? A message no longer in
 * the index passes: it is left out later anyway. */
static bool
imap_job_ready(struct imap_session *s, struct imap_fetch_job *j,
    uint32_t uid)
{
	struct mindex_txn *txn;
	struct mindex_msg m;
	const char *error;
	bool ready = true;

	if (j->check == 0 || imap_store(s) == NULL ||
	    mindex_begin(store_index(s->st), false, &txn, &error) < 0)
		return true;
	if (mindex_msg_get(txn, s->view.folder_id, uid, &m) > 0)
		ready = imap_msg_ready(&m, j->check);
	mindex_abort(&txn);
	return ready;
}

/*
 * PREVIEW (RFC 8970): made when asked, from the first text part, not
 * kept (the index record would need a new field: a new record format for
 * 256 bytes a message that most clients never ask for). LAZY is answered
 * NIL in imap_fetch.c, as nothing is at hand without reading.
 */

/* The part a preview is made of: the first text/plain or text/html leaf
 * that is not an attachment, not looking into an attached message; NULL
 * if there is none. */
static const struct mime_part *
imap_preview_part(const struct mime_part *p)
{
	const struct mime_part *q;

	if (p->nchildren > 0) {
		if (strcmp(p->type, "multipart") != 0)
			return NULL;
		for (size_t i = 0; i < p->nchildren; i++)
			if ((q = imap_preview_part(&p->children[i])) != NULL)
				return q;
		return NULL;
	}
	if (strcmp(p->type, "text") != 0 || (strcmp(p->subtype, "plain") != 0 &&
	    strcmp(p->subtype, "html") != 0) || (p->disposition != NULL &&
	    strcmp(p->disposition, "attachment") == 0))
		return NULL;
	return p;
}

/* Whether part's charset is ISO-8859-1 (else it is read as UTF-8). */
static bool
imap_preview_latin1(const struct mime_part *part)
{
	for (size_t i = 0; i < part->nparams; i++)
		if (strcmp(part->params[i].name, "charset") == 0)
			return imap_charset_class(part->params[i].value,
			    strlen(part->params[i].value)) == 1;
	return false;
}

/* Read and decode part of the current message into p, up to
 * IMAP_PREVIEW_READ_MAX decoded bytes or until p is full. 0, or -1 with
 * *error_r if the message could not be read. */
static int
imap_preview_read(struct imap_session *s, struct imap_fetch_job *j,
    const struct mime_part *part, struct imap_preview *p,
    const char **error_r)
{
	unsigned char chunk[IMAP_FETCH_CHUNK];
	enum cte_encoding cte = CTE_TEXT;
	uint64_t left = part->body_psize, got = 0;
	struct store_read *rd;
	struct cte_dec d;
	size_t len, n;
	int r = 1;

	/* An encoding not known (x-uuencode): the bytes as they are. */
	(void)cte_from_name(part->encoding, &cte);
	cte_init(&d, cte, 0);
	if (store_read_open(imap_store(s), s->view.name, j->msg_uid, &rd,
	    error_r) != STORE_OP_OK)
		return -1;
	if (store_read_seek(rd, part->body_offset, error_r) < 0)
		r = -1;
	while (r > 0 && left > 0 && got < IMAP_PREVIEW_READ_MAX) {
		if ((r = store_read_next(rd, chunk, sizeof(chunk), &len,
		    error_r)) <= 0)
			break;
		if (len > left)
			len = (size_t)left;
		left -= len;
		n = cte_decode(&d, chunk, len, j->decbuf);
		got += n;
		if (!imap_preview_feed(p, j->decbuf, n))
			break;
	}
	store_read_close(&rd);
	if (r < 0)
		return -1;
	n = cte_finish(&d, j->decbuf);
	(void)imap_preview_feed(p, j->decbuf, n);
	imap_preview_finish(p);
	return 0;
}

/* " PREVIEW text" of the current message: "" if it has no text part to
 * make one of, or its file could not be read (RFC 8970: no preview). */
static void
imap_job_preview(struct imap_session *s, struct imap_fetch_job *j)
{
	const struct mime_part *part;
	struct imap_preview *p = xmalloc(sizeof(*p));
	struct imap_write w;
	const char *error;

	part = j->tree != NULL ? imap_preview_part(j->tree) : NULL;
	imap_preview_init(p, part != NULL && strcmp(part->subtype, "html") == 0,
	    part != NULL && imap_preview_latin1(part));
	if (part != NULL && imap_preview_read(s, j, part, p, &error) < 0) {
		log_warning("imap: user=<%s>, uid %u: preview: %s", s->user,
		    j->msg_uid, error);
		p->len = 0;
	}
	if (j->need_sp)
		buf_append_byte(&s->out, ' ');
	j->need_sp = true;
	buf_append_str(&s->out, "PREVIEW ");
	imap_write_init(&w, &s->out, imap_write_flags(s));
	(void)imap_write_string_mem(&w, p->out, p->len);
	if (imap_write_finish(&w) < 0)
		buf_append_str(&s->out, "\"\"");
	free(p);
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
		/* Never a file adopted unread, answered from its empty
		 * record (nor \Seen set on it). */
		if (!imap_job_ready(s, j, r->uid)) {
			j->unready = true;
			continue;
		}
		if (j->has_binary && !imap_job_cte_ok(s, j, r->uid)) {
			j->unknown_cte = true;
			continue;
		}
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
		if (want & IMAP_FETCH_PREVIEW)
			imap_job_preview(s, j);
		j->in_msg = true;
		j->sec_i = 0;
		if (j->memo != NULL)
			memset(j->memo, 0, j->nsecs * sizeof(*j->memo));
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
	if (j->unknown_cte)
		imap_tagged(s, "NO", "[UNKNOWN-CTE] A part is in a "
		    "Content-Transfer-Encoding this server cannot decode");
	else if (j->unready)
		imap_tagged(s, "NO", "[UNAVAILABLE] Some messages could not "
		    "be read");
	else
		imap_tagged(s, "OK", "%sFETCH completed", j->uid ? "UID " :
		    "");
	imap_fetch_job_free(&s->fetch);
	return true;
}

/*
 * imap_fetch_job_new: a job for the sections in items (count of them;
 * non-body items are skipped here). Takes set. -1 after BAD.
 */
int
imap_fetch_job_new(struct imap_session *s, struct imap_seqset *set, bool uid,
    unsigned want, const char *const *items, unsigned count, unsigned check)
{
	struct imap_fetch_job *j = xcalloc(1, sizeof(*j));

	j->set = *set;
	memset(set, 0, sizeof(*set));
	j->uid = uid;
	j->want = want;
	j->check = check;
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
			if (j->secs[j->nsecs].what != IMAP_WHAT_BODY)
				j->has_binary = true;
			j->nsecs++;
		}
	}
	if (j->has_binary)
		j->memo = xcalloc(j->nsecs, sizeof(*j->memo));
	if (j->has_binary || (want & IMAP_FETCH_PREVIEW))
		j->decbuf = xmalloc(IMAP_FETCH_DECBUF);
	s->fetch = j;
	return 0;
}

/*
 * CATENATE's URL parts (RFC 4469): a section's bytes as FETCH gives them,
 * into a file.
 */

static int
imap_section_write(int fd, const unsigned char *d, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, d, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		d += n;
		len -= (size_t)n;
	}
	return 0;
}

/* HEADER.FIELDS [.NOT]: the header read, filtered, CRLF. */
static int
imap_section_copy_fields(struct store *st, const char *folder, uint32_t uid,
    const struct imap_section *sec, uint64_t off, uint64_t psize,
    uint64_t max, int fd, uint64_t *len_r)
{
	struct imap_fields_ctx c;
	struct buf hdr, sel, conv;
	const char *error;
	bool prev_cr = false;
	uint64_t skip = sec->partial ? sec->origin : 0;
	uint64_t left = sec->partial && sec->length > 0 ? sec->length :
	    UINT64_MAX;
	int r = IMAP_SECTION_COPY_IO;

	buf_init(&hdr, IMAP_FETCH_HEADER_MAX);
	buf_init(&sel, IMAP_FETCH_HEADER_MAX);
	buf_init(&conv, IMAP_FETCH_HEADER_MAX * 2);
	if (imap_read_range(st, folder, uid, off, psize, &hdr, &error) == 0) {
		c.sec = sec;
		c.out = &sel;
		if (hdr.len > 0)
			(void)msg_header_iter(hdr.data, hdr.len,
			    imap_fields_cb, &c, NULL);
		buf_append_str(&sel, "\n");
		imap_crlf_append(&conv, sel.data, sel.len, &prev_cr, &skip,
		    &left);
		*len_r = conv.len;
		r = conv.len > max ? IMAP_SECTION_COPY_TOOBIG :
		    imap_section_write(fd, conv.data, conv.len) < 0 ?
		    IMAP_SECTION_COPY_IO : 0;
	}
	buf_free(&hdr);
	buf_free(&sel);
	buf_free(&conv);
	return r;
}

/* psize stored bytes from off, CRLF, skip and left as FETCH's partial. */
static int
imap_section_copy_range(struct store *st, const char *folder, uint32_t uid,
    uint64_t off, uint64_t psize, uint64_t skip, uint64_t left, int fd)
{
	struct store_read *rd;
	unsigned char chunk[16384];
	const char *error;
	struct buf conv;
	bool prev_cr = false;
	size_t len;
	int r = 0;

	if (store_read_open(st, folder, uid, &rd, &error) != STORE_OP_OK)
		return IMAP_SECTION_COPY_IO;
	if (store_read_seek(rd, off, &error) < 0) {
		store_read_close(&rd);
		return IMAP_SECTION_COPY_IO;
	}
	buf_init(&conv, 2 * sizeof(chunk));
	while (psize > 0 && left > 0 && r == 0 &&
	    (r = store_read_next(rd, chunk, sizeof(chunk), &len,
	    &error)) > 0) {
		if (len > psize)
			len = (size_t)psize;
		psize -= len;
		buf_truncate(&conv, 0);
		imap_crlf_append(&conv, chunk, len, &prev_cr, &skip, &left);
		r = imap_section_write(fd, conv.data, conv.len) < 0 ? -1 : 0;
	}
	buf_free(&conv);
	store_read_close(&rd);
	return r < 0 ? IMAP_SECTION_COPY_IO : 0;
}

int
imap_section_copy(struct store *st, const char *folder, uint32_t folder_id,
    uint32_t uid, const char *section, bool partial, uint64_t origin,
    uint64_t length, uint64_t max, int fd, uint64_t *len_r)
{
	struct imap_section sec;
	struct mindex_txn *txn;
	struct mindex_msg m;
	struct mime_part *tree = NULL;
	uint64_t off, psize, vsize, n;
	const char *error;
	char *item;
	int r;

	*len_r = 0;
	item = xasprintf("BODY.PEEK[%s]", section);
	r = imap_fetch_section_parse(item, &sec);
	free(item);
	if (r <= 0)
		return IMAP_SECTION_COPY_BAD;
	sec.partial = partial;
	sec.origin = origin;
	sec.length = length;
	if (mindex_begin(store_index(st), false, &txn, &error) < 0) {
		imap_section_free(&sec);
		return IMAP_SECTION_COPY_IO;
	}
	r = mindex_msg_get(txn, folder_id, uid, &m);
	if (r > 0 && (m.mime_len == 0 ||
	    mime_deserialize(m.mime, m.mime_len, &tree) < 0))
		tree = NULL;
	mindex_abort(&txn);
	/* A message not found, or one whose structure is not known (its
	 * file was never read), names no section. */
	if (r <= 0 || tree == NULL ||
	    imap_section_range(tree, &sec, &off, &psize, &vsize) < 0) {
		mime_part_free(&tree);
		imap_section_free(&sec);
		return IMAP_SECTION_COPY_BAD;
	}
	mime_part_free(&tree);
	if (sec.kind == IMAP_SEC_FIELDS || sec.kind == IMAP_SEC_FIELDS_NOT) {
		r = imap_section_copy_fields(st, folder, uid, &sec, off, psize,
		    max, fd, len_r);
		imap_section_free(&sec);
		return r;
	}
	imap_section_free(&sec);
	n = vsize;
	if (partial)
		n = origin >= vsize ? 0 : (length > 0 &&
		    vsize - origin > length ? length : vsize - origin);
	*len_r = n;
	if (n > max)
		return IMAP_SECTION_COPY_TOOBIG;
	if (n == 0)
		return 0;
	return imap_section_copy_range(st, folder, uid, off, psize,
	    partial ? origin : 0, n, fd);
}
