/*
 * imap_fetch.c: FETCH and UID FETCH of what the index answers without
 * reading a message: UID, FLAGS, RFC822.SIZE, INTERNALDATE, ENVELOPE (from
 * the cached header fields), BODY and BODYSTRUCTURE (from the serialized
 * MIME tree), MODSEQ (RFC 7162), the macros ALL, FAST, FULL, and the
 * modifiers (CHANGEDSINCE n) and, for UID FETCH under QRESYNC,
 * (CHANGEDSINCE n VANISHED), SAVEDATE (RFC 8514). Body sections
 * (BODY[...], RFC822, and RFC 3516's BINARY[...], BINARY.PEEK[...] and
 * BINARY.SIZE[...]) and PREVIEW (RFC 8970) go to imap_fetch_body.c, which
 * streams them; the text of a PREVIEW is made here (imap_preview_*), and
 * PREVIEW (LAZY) is NIL (no preview is kept).
 *
 * The view is synced lazily, so a file another program left may be in it
 * unread (MINDEX_C_UNPARSED): items that need its content have the folder
 * completed first (imap_view_complete), and a message whose file could
 * still not be read is left out (the FETCH ends NO), never answered from
 * its empty record. FLAGS, UID, MODSEQ and SAVEDATE need nothing.
 *
 * FLAGS carries the message's keywords; one the session has not told
 * the client of yet is announced first ("* FLAGS", "* OK
 * [PERMANENTFLAGS]"), put in front of the FETCH being built.
 *
 * Trusts nothing from the client (items through the parser's accessors,
 * sequence sets through imap_seqset with their bounds); trusts the index,
 * whose variable fields the writers re-check anyway; trusts nothing in
 * the decoded message bytes a preview is made of.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "compat/compat.h"
#include "cte.h"
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
		{ "SAVEDATE", IMAP_FETCH_SAVEDATE },
		{ "PREVIEW", IMAP_FETCH_PREVIEW },
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

/* PREVIEW's modifiers (RFC 8970): "(LAZY)". -1 after BAD. */
static int
imap_fetch_preview_mods(struct imap_session *s, const struct imap_arg *arg,
    unsigned *want_r)
{
	const struct imap_arg *l;
	const char *mod, *error;
	unsigned n;

	if (imap_arg_list(arg, &l, &n, &error) < 0 || n == 0) {
		imap_bad(s, "PREVIEW (LAZY)");
		return -1;
	}
	for (unsigned i = 0; i < n; i++)
		if (imap_arg_atom(&l[i], &mod, &error) < 0 ||
		    strcasecmp(mod, "LAZY") != 0) {
			imap_bad(s, "Unknown PREVIEW modifier");
			return -1;
		}
	*want_r |= IMAP_FETCH_PREVIEW_LAZY;
	return 0;
}

/* The items argument: one atom or a list of atoms (macros only alone),
 * where PREVIEW may be followed by its modifier list. */
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
			free(*sections_r);
			imap_bad(s, error);
			return -1;
		}
		if (strcasecmp(item, "PREVIEW") == 0 && i + 1 < count &&
		    list[i + 1].type == IMAP_ARG_LIST) {
			if (imap_fetch_preview_mods(s, &list[++i],
			    want_r) < 0) {
				free(*sections_r);
				return -1;
			}
			continue;
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

	buf_append_str(&s->out, "* ");
	buf_append_uint(&s->out, msn);
	buf_append_str(&s->out, " FETCH (");
#define SEP() do { if (sp) buf_append_byte(&s->out, ' '); sp = true; \
	n++; } while (0)
	if (want & IMAP_FETCH_UID) {
		SEP();
		buf_append_str(&s->out, "UID ");
		buf_append_uint(&s->out, m->uid);
	}
	if (want & IMAP_FETCH_FLAGS) {
		SEP();
		buf_append_str(&s->out, "FLAGS ");
		imap_flags_write(m->flags, m->keywords, m->keywords_len,
		    &s->out);
	}
	if (want & IMAP_FETCH_SIZE) {
		SEP();
		buf_append_str(&s->out, "RFC822.SIZE ");
		buf_append_uint(&s->out, m->vsize);
	}
	if (want & IMAP_FETCH_DATE) {
		SEP();
		buf_append_str(&s->out, "INTERNALDATE ");
		imap_fetch_date(m->internal_date, &s->out);
	}
	if (want & IMAP_FETCH_ENVELOPE) {
		SEP();
		buf_append_str(&s->out, "ENVELOPE ");
		imap_write_init(&w, &s->out, imap_write_flags(s));
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
			imap_write_init(&w, &s->out, imap_write_flags(s));
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
		buf_append_str(&s->out, "MODSEQ (");
		buf_append_uint(&s->out, imap_modseq_out(m->modseq));
		buf_append_byte(&s->out, ')');
	}
	if (want & IMAP_FETCH_SAVEDATE) {
		/* RFC 8514: NIL for a message saved before the index kept
		 * save dates. */
		SEP();
		buf_append_str(&s->out, "SAVEDATE ");
		if (m->save_date == 0)
			buf_append_str(&s->out, "NIL");
		else
			imap_fetch_date(m->save_date, &s->out);
	}
	if ((want & (IMAP_FETCH_PREVIEW | IMAP_FETCH_PREVIEW_LAZY)) ==
	    IMAP_FETCH_PREVIEW_LAZY) {
		/* The index keeps no preview, and LAZY asks for none that
		 * is not at hand (RFC 8970 section 3.2). */
		SEP();
		buf_append_str(&s->out, "PREVIEW NIL");
	}
#undef SEP
	if (want & IMAP_FETCH_FLAGS)
		imap_fetch_announce(s, m, start);
	return n;
}

/*
 * PREVIEW text (the contract is in imap_private.h). Input: decoded bytes
 * of a message, trusted in nothing; every state takes any character,
 * and the output is bounded by IMAP_PREVIEW_CHARS.
 */

enum imap_pv_state {
	IMAP_PV_TEXT,
	IMAP_PV_LT,		/* "<" */
	IMAP_PV_TAGNAME,	/* "<name" or "</name" */
	IMAP_PV_TAG,		/* in a tag, past its name */
	IMAP_PV_QUOTE,		/* an attribute value in quotes */
	IMAP_PV_BANG,		/* "<!" */
	IMAP_PV_BANG_DASH,	/* "<!-" */
	IMAP_PV_COMMENT,	/* "<!--" up to "-->" */
	IMAP_PV_ENTITY		/* "&" up to ";" */
};

void
imap_preview_init(struct imap_preview *p, bool html, bool latin1)
{
	memset(p, 0, sizeof(*p));
	p->html = html;
	p->latin1 = latin1;
	p->hstate = IMAP_PV_TEXT;
}

/* cp (a valid code point) as UTF-8 at the end of the text. */
static void
imap_pv_utf8(struct imap_preview *p, uint32_t cp)
{
	unsigned char *o = p->out + p->len;

	if (cp < 0x80) {
		o[0] = (unsigned char)cp;
		p->len += 1;
	} else if (cp < 0x800) {
		o[0] = (unsigned char)(0xc0 | cp >> 6);
		o[1] = (unsigned char)(0x80 | (cp & 0x3f));
		p->len += 2;
	} else if (cp < 0x10000) {
		o[0] = (unsigned char)(0xe0 | cp >> 12);
		o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		o[2] = (unsigned char)(0x80 | (cp & 0x3f));
		p->len += 3;
	} else {
		o[0] = (unsigned char)(0xf0 | cp >> 18);
		o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
		o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		o[3] = (unsigned char)(0x80 | (cp & 0x3f));
		p->len += 4;
	}
}

static bool
imap_pv_white(uint32_t cp)
{
	return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' ||
	    cp == '\f' || cp == '\v' || cp == 0xa0;
}

/* A character of the text: white space becomes one space before the
 * next character, control characters go, and at IMAP_PREVIEW_CHARS
 * (the space counted) the preview is full. */
static void
imap_pv_char(struct imap_preview *p, uint32_t cp)
{
	if (p->full || p->skip[0] != '\0' || p->raw[0] != '\0')
		return;
	if (imap_pv_white(cp)) {
		p->space = true;
		return;
	}
	if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0))
		return;
	if (p->space && p->chars > 0) {
		/* No space as the last character. */
		if (p->chars + 1 >= IMAP_PREVIEW_CHARS) {
			p->full = true;
			return;
		}
		p->out[p->len++] = ' ';
		p->chars++;
	}
	p->space = false;
	imap_pv_utf8(p, cp);
	if (++p->chars == IMAP_PREVIEW_CHARS)
		p->full = true;
}

static bool
imap_pv_alnum(uint32_t cp)
{
	return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
	    (cp >= '0' && cp <= '9');
}

/* Tags that stand inside a run of text: no word break. */
static bool
imap_pv_inline(const char *tag)
{
	static const char *const names[] = { "a", "abbr", "b", "big",
	    "code", "em", "font", "i", "s", "small", "span", "strike",
	    "strong", "sub", "sup", "tt", "u", NULL };

	for (size_t i = 0; names[i] != NULL; i++)
		if (strcmp(tag, names[i]) == 0)
			return true;
	return false;
}

/* ">" of a tag: the content of head and title goes up to their end
 * tag; script and style hold raw text up to theirs (a "<" in it starts
 * no tag); any tag but an inline one breaks words. */
static void
imap_pv_tag_end(struct imap_preview *p)
{
	bool raw = strcmp(p->tag, "script") == 0 ||
	    strcmp(p->tag, "style") == 0;

	if (p->end_tag) {
		if (strcmp(p->raw, p->tag) == 0)
			p->raw[0] = '\0';
		if (strcmp(p->skip, p->tag) == 0)
			p->skip[0] = '\0';
	} else if (!p->selfclose && p->raw[0] == '\0') {
		if (raw)
			strlcpy(p->raw, p->tag, sizeof(p->raw));
		else if (p->skip[0] == '\0' && (strcmp(p->tag, "head") == 0 ||
		    strcmp(p->tag, "title") == 0))
			strlcpy(p->skip, p->tag, sizeof(p->skip));
	}
	if (!imap_pv_inline(p->tag))
		p->space = true;
	p->hstate = IMAP_PV_TEXT;
}

/* "&" and the name read were no entity: the text as it was. */
static void
imap_pv_entity_text(struct imap_preview *p, bool semicolon)
{
	imap_pv_char(p, '&');
	for (unsigned i = 0; i < p->ent_len; i++)
		imap_pv_char(p, (unsigned char)p->ent[i]);
	if (semicolon)
		imap_pv_char(p, ';');
}

/* The code point of "&#N;" or "&#xN;" (name without "&" and ";"), 0 if
 * it is none. */
static uint32_t
imap_pv_entity_number(const char *name)
{
	bool hex = name[1] == 'x' || name[1] == 'X';
	const char *d = name + (hex ? 2 : 1);
	uint32_t cp = 0;

	if (*d == '\0')
		return 0;
	for (; *d != '\0'; d++) {
		int v = hex ? cte_hex_value((unsigned char)*d) :
		    (*d >= '0' && *d <= '9' ? *d - '0' : -1);

		if (v < 0)
			return 0;
		cp = cp * (hex ? 16 : 10) + (uint32_t)v;
		if (cp > 0x10ffff)
			return 0;
	}
	return cp >= 0xd800 && cp <= 0xdfff ? 0 : cp;
}

/* ";" after "&name": the character it names, or the text as it was. */
static void
imap_pv_entity(struct imap_preview *p)
{
	static const struct {
		const char *name;
		uint32_t cp;
	} ents[] = {
		{ "amp", '&' }, { "lt", '<' }, { "gt", '>' }, { "quot", '"' },
		{ "apos", '\'' }, { "nbsp", 0xa0 },
	};
	uint32_t cp = 0;

	p->ent[p->ent_len] = '\0';
	if (p->ent[0] == '#')
		cp = imap_pv_entity_number(p->ent);
	for (size_t i = 0; cp == 0 && i < sizeof(ents) / sizeof(ents[0]); i++)
		if (strcmp(p->ent, ents[i].name) == 0)
			cp = ents[i].cp;
	if (cp != 0)
		imap_pv_char(p, cp);
	else
		imap_pv_entity_text(p, true);
}

/* One step of the HTML machine: true when cp is used up, false when the
 * new state is to look at it again. */
static bool
imap_pv_html_step(struct imap_preview *p, uint32_t cp)
{
	switch (p->hstate) {
	case IMAP_PV_TEXT:
		if (cp == '<')
			p->hstate = IMAP_PV_LT;
		else if (cp == '&' && p->raw[0] == '\0') {
			p->hstate = IMAP_PV_ENTITY;
			p->ent_len = 0;
		} else
			imap_pv_char(p, cp);
		return true;
	case IMAP_PV_LT:
		p->tag_len = 0;
		p->tag[0] = '\0';
		p->end_tag = cp == '/';
		p->selfclose = false;
		if (p->raw[0] != '\0' && cp != '/') {
			/* Raw text: "<" is text (which goes). */
			p->hstate = IMAP_PV_TEXT;
			return false;
		}
		if (cp == '!') {
			p->hstate = IMAP_PV_BANG;
			return true;
		}
		if (cp == '/' || (cp < 0x80 && imap_pv_alnum(cp) &&
		    !(cp >= '0' && cp <= '9'))) {
			p->hstate = IMAP_PV_TAGNAME;
			return cp == '/';
		}
		/* "a < b": no tag. */
		p->hstate = IMAP_PV_TEXT;
		imap_pv_char(p, '<');
		return false;
	case IMAP_PV_TAGNAME:
		if (imap_pv_alnum(cp)) {
			if (p->tag_len < sizeof(p->tag) - 1)
				p->tag[p->tag_len++] = (char)(cp >= 'A' &&
				    cp <= 'Z' ? cp + ('a' - 'A') : cp);
			p->tag[p->tag_len] = '\0';
			return true;
		}
		p->hstate = IMAP_PV_TAG;
		return false;
	case IMAP_PV_TAG:
		if (cp == '>')
			imap_pv_tag_end(p);
		else if (cp == '"' || cp == '\'') {
			p->quote = (unsigned char)cp;
			p->hstate = IMAP_PV_QUOTE;
			p->selfclose = false;
		} else if (!imap_pv_white(cp))
			p->selfclose = cp == '/';
		return true;
	case IMAP_PV_QUOTE:
		if (cp == p->quote)
			p->hstate = IMAP_PV_TAG;
		return true;
	case IMAP_PV_BANG:
	case IMAP_PV_BANG_DASH:
		if (cp == '-') {
			p->hstate = p->hstate == IMAP_PV_BANG ?
			    IMAP_PV_BANG_DASH : IMAP_PV_COMMENT;
			p->dashes = 0;
			return true;
		}
		/* "<!DOCTYPE ...>" and the like: a tag without a name. */
		p->hstate = IMAP_PV_TAG;
		return false;
	case IMAP_PV_COMMENT:
		if (cp == '>' && p->dashes >= 2)
			p->hstate = IMAP_PV_TEXT;
		else
			p->dashes = cp == '-' ? p->dashes + 1 : 0;
		return true;
	default:	/* IMAP_PV_ENTITY */
		if (cp == ';' && p->ent_len > 0) {
			imap_pv_entity(p);
			p->hstate = IMAP_PV_TEXT;
			return true;
		}
		if ((imap_pv_alnum(cp) || (cp == '#' && p->ent_len == 0)) &&
		    p->ent_len < sizeof(p->ent) - 1) {
			p->ent[p->ent_len++] = (char)cp;
			return true;
		}
		imap_pv_entity_text(p, false);
		p->hstate = IMAP_PV_TEXT;
		return false;
	}
}

static void
imap_pv_cp(struct imap_preview *p, uint32_t cp)
{
	if (!p->html) {
		imap_pv_char(p, cp);
		return;
	}
	while (!imap_pv_html_step(p, cp))
		;
}

/* One decoded byte: ISO-8859-1 is its code point; UTF-8 is gathered,
 * and a sequence that is not valid UTF-8 (overlong, a surrogate, past
 * U+10FFFF, cut short) is dropped. */
static void
imap_pv_byte(struct imap_preview *p, unsigned char c)
{
	static const uint32_t min[] = { 0, 0, 0x80, 0x800, 0x10000 };

	if (p->latin1) {
		imap_pv_cp(p, c);
		return;
	}
	if (p->more > 0) {
		if ((c & 0xc0) == 0x80) {
			p->cp = p->cp << 6 | (c & 0x3f);
			if (--p->more == 0 && p->cp >= min[p->seq_len] &&
			    p->cp <= 0x10ffff &&
			    (p->cp < 0xd800 || p->cp > 0xdfff))
				imap_pv_cp(p, p->cp);
			return;
		}
		p->more = 0;	/* cut short: c starts anew */
	}
	if (c < 0x80)
		imap_pv_cp(p, c);
	else if (c >= 0xc2 && c <= 0xdf) {
		p->cp = c & 0x1f;
		p->more = 1;
		p->seq_len = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		p->cp = c & 0x0f;
		p->more = 2;
		p->seq_len = 3;
	} else if (c >= 0xf0 && c <= 0xf4) {
		p->cp = c & 0x07;
		p->more = 3;
		p->seq_len = 4;
	}
}

bool
imap_preview_feed(struct imap_preview *p, const unsigned char *d, size_t len)
{
	for (size_t i = 0; i < len && !p->full; i++)
		imap_pv_byte(p, d[i]);
	return !p->full;
}

void
imap_preview_finish(struct imap_preview *p)
{
	/* What the HTML machine held was text after all. */
	if (p->html && p->hstate == IMAP_PV_ENTITY)
		imap_pv_entity_text(p, false);
	else if (p->html && p->hstate == IMAP_PV_LT)
		imap_pv_char(p, '<');
	p->hstate = IMAP_PV_TEXT;
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

/* What the items need beyond a lazy sync (IMAP_NEED_*). INTERNALDATE is
 * the file's time, which completion reads: the name's is a guess, and an
 * answer must not change once given. */
static unsigned
imap_fetch_need(unsigned want, unsigned nsections)
{
	if (nsections > 0 || (want & (IMAP_FETCH_ENVELOPE | IMAP_FETCH_BODY |
	    IMAP_FETCH_BODYSTRUCT | IMAP_FETCH_DATE | IMAP_FETCH_PREVIEW)))
		return IMAP_NEED_PARSE;
	if (want & IMAP_FETCH_SIZE)
		return IMAP_NEED_SIZES;
	return 0;
}

/* One message of imap_fetch_index: its response, or why not. */
struct imap_fetch_walk {
	struct imap_session *s;
	const struct imap_cmd *cmd;
	const struct imap_seqset *set;
	unsigned want, check;
	unsigned i, end;	/* view positions still to answer: [i, end) */
	bool missing;
};

static void
imap_fetch_walk_one(struct imap_fetch_walk *w, const struct mindex_msg *m)
{
	/* Never the empty fields of a file adopted unread. */
	if (w->check != 0 && !imap_msg_ready(m, w->check)) {
		w->missing = true;
		return;
	}
	imap_fetch_one(w->s, w->i + 1, m, w->want);
	w->s->stats.fetched++;
	/* Keep memory bounded on large folders. */
	if (w->s->out.len >= 64 * 1024)
		imap_send(w->s);
}

static bool
imap_fetch_walk_wanted(const struct imap_fetch_walk *w, unsigned i)
{
	return imap_seqset_contains(w->set, w->cmd->uid ?
	    w->s->view.msgs[i].uid : i + 1);
}

/* The index walked in UID order beside the view (both ascending): a
 * message of the view without a record was expunged by another session
 * and not reported yet (RFC 3501 allows answering without it); a record
 * the view lacks is not announced yet. */
static int
imap_fetch_walk_cb(const struct mindex_msg *m, void *ctx)
{
	struct imap_fetch_walk *w = ctx;
	const struct imap_msgref *v = w->s->view.msgs;

	while (w->i < w->end && v[w->i].uid < m->uid)
		w->i++;
	if (w->i >= w->end)
		return 1;
	if (v[w->i].uid != m->uid)
		return 0;
	if (imap_fetch_walk_wanted(w, w->i))
		imap_fetch_walk_one(w, m);
	w->i++;
	return w->i >= w->end ? 1 : 0;
}

/* The answers from the index, in one read transaction: a walk of the
 * records from the first message asked for when most of that range is
 * asked for (UID FETCH 1:* FLAGS, Thunderbird's resync), a lookup each
 * when the set is sparse. */
static void
imap_fetch_index(struct imap_session *s, const struct imap_cmd *cmd,
    const struct imap_seqset *set, unsigned want, unsigned check)
{
	struct imap_fetch_walk w = { s, cmd, set, want, check, 0, 0, false };
	struct mindex_txn *txn;
	struct mindex_msg m;
	struct store *st;
	const char *error;
	unsigned first = s->view.count, nsel = 0;
	int rc = 0;

	for (unsigned i = 0; i < s->view.count; i++)
		if (imap_fetch_walk_wanted(&w, i)) {
			if (first == s->view.count)
				first = i;
			w.end = i + 1;
			nsel++;
		}
	if ((st = imap_store(s)) == NULL)
		return;
	if (mindex_begin(store_index(st), false, &txn, &error) < 0) {
		imap_tagged(s, "NO", "[UNAVAILABLE] Index unavailable");
		return;
	}
	s->stats.fetches++;
	if (nsel > 0 && (w.end - first) / 4 < nsel) {
		w.i = first;
		rc = mindex_msg_iter(txn, s->view.folder_id,
		    s->view.msgs[first].uid, imap_fetch_walk_cb, &w);
	} else {
		for (w.i = first; w.i < w.end && rc == 0; w.i++) {
			if (!imap_fetch_walk_wanted(&w, w.i))
				continue;
			if ((rc = mindex_msg_get(txn, s->view.folder_id,
			    s->view.msgs[w.i].uid, &m)) > 0)
				imap_fetch_walk_one(&w, &m);
			rc = rc < 0 ? -1 : 0;
		}
	}
	mindex_abort(&txn);
	imap_send(s);
	if (rc < 0) {
		log_warning("imap: user=<%s>, fetch: %s", s->user,
		    mindex_last_error());
		imap_tagged(s, "NO", "[UNAVAILABLE] Index unavailable");
	} else if (w.missing)
		imap_tagged(s, "NO", "[UNAVAILABLE] Some messages could not "
		    "be read");
	else
		imap_tagged(s, "OK", "%sFETCH completed", cmd->uid ? "UID " :
		    "");
}

void
imap_cmd_fetch(struct imap_session *s, const struct imap_cmd *cmd)
{
	struct imap_fetch_mods mods;
	struct imap_seqset set;
	const char *text, *error, **sections;
	unsigned want, nsections, need, check;
	uint32_t max;
	int ready;

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
	/* The files adopted unread that the items need read first; the
	 * records are checked one by one only if some could not be. */
	need = imap_fetch_need(want, nsections);
	if ((ready = imap_view_complete(s, need)) < 0) {
		imap_seqset_deinit(&set);
		free(sections);
		return;
	}
	check = ready > 0 ? need : 0;
	if (nsections > 0 || (want & IMAP_FETCH_PREVIEW)) {
		/* Bodies and previews: a job that streams, across loop
		 * iterations. */
		int r = imap_fetch_job_new(s, &set, cmd->uid, want, sections,
		    nsections, check);

		free(sections);
		imap_seqset_deinit(&set);
		if (r == 0) {
			s->stats.fetches++;
			(void)imap_fetch_job_run(s);
		}
		return;
	}
	/* The records are in hand: each is checked whatever completion
	 * said. */
	imap_fetch_index(s, cmd, &set, want, need);
	imap_seqset_deinit(&set);
}
