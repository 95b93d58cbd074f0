/*
 * imap_search.c: SEARCH and UID SEARCH (RFC 3501 section 6.4.4). The keys
 * are parsed into a tree (imap_search_parse); each message of the view is
 * matched against the index record first, and its file is read only when
 * the index cannot decide (imap_search.h says which keys need it). The
 * answer is one "* SEARCH" line, numbers ascending, flushed in pieces,
 * or with RETURN (RFC 4731) one "* ESEARCH" line, as every SEARCH is
 * answered once IMAP4rev2 is enabled (RFC 9051 6.4.4: RETURN (ALL) when
 * none is given). After ENABLE UTF8=ACCEPT a CHARSET is BAD (RFC 6855
 * section 3); its strings are UTF-8 anyway. RETURN (SAVE) keeps
 * the matches' UIDs in the session for "$" (RFC 5182), so expunges do not
 * shift it. RETURN (PARTIAL m:n) and (UPDATE) are RFC 5267's (PARTIAL
 * with RFC 9394's -m:-n); an UPDATE leaves the program and result with
 * imap_context.c. Beyond RFC 3501's keys: OLDER and YOUNGER (RFC 5032 WITHIN),
 * measured from the moment the command is parsed; SAVEDBEFORE, SAVEDON,
 * SAVEDSINCE and SAVEDATESUPPORTED (RFC 8514), on the index's save date
 * (a message without one matches none of them).
 *
 * Trusts nothing from the client: keys come through the parser's
 * accessors, nesting is bounded by IMAP_SEARCH_DEPTH_MAX, strings by the
 * parser's literal limit. Trusts nothing in message bytes: a header field
 * is held to IMAP_SEARCH_FIELD_MAX, the decoders keep a few bytes of state
 * and matching goes byte by byte, so a chunk boundary anywhere changes
 * nothing and memory does not grow with the message. Trusts the index.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <strings.h>

#include "buf.h"
#include "cte.h"
#include "log.h"
#include "mime.h"
#include "mindex.h"
#include "msg.h"
#include "store.h"
#include "xmalloc.h"
#include "server/imap/imap_private.h"
#include "server/imap/imap_search.h"
#include "server/imap/imap_seqset.h"

/* Flush the "* SEARCH" line to the client past this many bytes. */
#define ISK_OUT_FLUSH	(64 * 1024)

enum isk_op {
	ISK_AND, ISK_OR, ISK_NOT,
	ISK_ALL, ISK_NONE,
	ISK_FLAG,		/* flag set (neg: clear) */
	ISK_KEYWORD,		/* keyword set (neg: not set) */
	ISK_SEQ, ISK_UID,
	ISK_LARGER, ISK_SMALLER,
	ISK_BEFORE, ISK_ON, ISK_SINCE,
	ISK_SENTBEFORE, ISK_SENTON, ISK_SENTSINCE,
	ISK_OLDER, ISK_YOUNGER,	/* RFC 5032 WITHIN: num is a time */
	ISK_SAVEDBEFORE, ISK_SAVEDON, ISK_SAVEDSINCE,	/* RFC 8514 */
	ISK_SAVEDATE,		/* SAVEDATESUPPORTED */
	ISK_HEADER, ISK_BODY, ISK_TEXT
};

/* A key's answer for one message. */
#define ISK_NO		0
#define ISK_YES		1
#define ISK_NEED	IMAP_SEARCH_NEED

/* A string to find: folded, with its Knuth-Morris-Pratt table, and how
 * much of it the current stream has matched. */
struct isk_needle {
	unsigned char *pat;	/* owned */
	size_t len;
	size_t *fail;		/* owned; len entries */
	size_t pos;
};

struct isk_node {
	enum isk_op op;
	bool neg;
	uint32_t flag;
	uint64_t num;
	int64_t day;
	char *name;		/* HEADER field, KEYWORD name; owned */
	struct isk_needle needle;
	struct imap_seqset set;	/* ISK_SEQ, ISK_UID */
	struct isk_node *kids;	/* owned; AND, OR, NOT */
	unsigned nkids;
	int cost;		/* 0 flags and numbers, 1 cached header
				   fields, 2 message bytes */
	int state;		/* ISK_* for the message being matched */
	bool active;		/* message step: decided by the bytes */
	bool hit;		/* message step: found */
};

struct imap_search {
	struct isk_node root;	/* AND of the keys */
	struct isk_node **leaves;	/* owned array: keys that may need
					   the message (HEADER, SENT*, BODY,
					   TEXT) */
	unsigned nleaves;
	bool body;		/* an active key needs the body */
	struct buf field, val, dec;	/* scratch, bounded */
};

static char isk_error[256];
static uint64_t isk_files_read;

/*
 * Strings.
 */

/* Fold c, whose predecessor in its stream was prev: ASCII letters, and
 * the second byte of UTF-8 U+00C0..U+00DE (not U+00D7) to lower case. */
static unsigned char
isk_fold(unsigned char prev, unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c + ('a' - 'A');
	if (prev == 0xc3 && c >= 0x80 && c <= 0x9e && c != 0x97)
		return c + 0x20;
	return c;
}

static void
isk_needle_init(struct isk_needle *n, const unsigned char *s, size_t len)
{
	unsigned char prev = 0;
	size_t k = 0;

	n->pat = xmalloc(len + 1);
	for (size_t i = 0; i < len; i++) {
		n->pat[i] = isk_fold(prev, s[i]);
		prev = s[i];
	}
	n->len = len;
	n->fail = xcalloc(len + 1, sizeof(*n->fail));
	for (size_t i = 1; i < len; i++) {
		while (k > 0 && n->pat[i] != n->pat[k])
			k = n->fail[k - 1];
		if (n->pat[i] == n->pat[k])
			k++;
		n->fail[i] = k;
	}
	n->pos = 0;
}

static void
isk_needle_free(struct isk_needle *n)
{
	free(n->pat);
	free(n->fail);
	memset(n, 0, sizeof(*n));
}

/* One folded byte of the stream; true when the needle ends with it. */
static bool
isk_needle_feed(struct isk_needle *n, unsigned char c)
{
	if (n->len == 0)
		return true;
	while (n->pos > 0 && n->pat[n->pos] != c)
		n->pos = n->fail[n->pos - 1];
	if (n->pat[n->pos] == c)
		n->pos++;
	if (n->pos < n->len)
		return false;
	n->pos = n->fail[n->len - 1];
	return true;
}

/* Whether the needle is in p[0..len), leaving the stream's state alone. */
static bool
isk_needle_in(struct isk_needle *n, const unsigned char *p, size_t len)
{
	size_t saved = n->pos;
	unsigned char prev = 0;
	bool found = n->len == 0;

	n->pos = 0;
	for (size_t i = 0; i < len && !found; i++) {
		found = isk_needle_feed(n, isk_fold(prev, p[i]));
		prev = p[i];
	}
	n->pos = saved;
	return found;
}

/*
 * RFC 2047 encoded words. They keep their own small decoders rather than
 * lib/cte's streaming ones: a word is whole in memory, "Q" writes a space
 * as '_' and knows no lines (so no soft line breaks, and no white space
 * to drop at a line end), and a bad "=X" in a word is kept as text. The
 * alphabets are lib/cte's.
 */

/* Append c to out, as UTF-8 if it is an ISO-8859-1 byte. Past out's
 * maximum bytes are dropped: a truncated value is still matched. */
static void
isk_emit(struct buf *out, unsigned char c, bool latin1)
{
	if (latin1 && c >= 0x80) {
		(void)buf_append_byte(out, 0xc0 | (c >> 6));
		(void)buf_append_byte(out, 0x80 | (c & 0x3f));
	} else
		(void)buf_append_byte(out, c);
}

/* Charsets (imap_private.h): an encoded word in one this does not know
 * is left encoded. */
int
imap_charset_class(const char *name, size_t len)
{
	static const char *const same[] = { "utf-8", "utf8", "us-ascii",
	    "ascii", NULL };
	static const char *const latin1[] = { "iso-8859-1", "iso8859-1",
	    "iso_8859-1", "latin1", NULL };
	const char *star = memchr(name, '*', len);

	if (star != NULL)
		len = (size_t)(star - name);
	for (size_t i = 0; same[i] != NULL; i++)
		if (strlen(same[i]) == len &&
		    strncasecmp(name, same[i], len) == 0)
			return 0;
	for (size_t i = 0; latin1[i] != NULL; i++)
		if (strlen(latin1[i]) == len &&
		    strncasecmp(name, latin1[i], len) == 0)
			return 1;
	return -1;
}

static void
isk_word_b(const unsigned char *t, size_t len, bool latin1, struct buf *out)
{
	unsigned acc = 0, bits = 0;
	int v;

	for (size_t i = 0; i < len && t[i] != '='; i++) {
		if ((v = cte_b64_value(t[i])) < 0)
			continue;
		acc = (acc << 6 | (unsigned)v) & 0xffffff;
		if ((bits += 6) >= 8) {
			bits -= 8;
			isk_emit(out, (acc >> bits) & 0xff, latin1);
		}
	}
}

static void
isk_word_q(const unsigned char *t, size_t len, bool latin1, struct buf *out)
{
	int hi, lo;

	for (size_t i = 0; i < len; i++) {
		if (t[i] == '_')
			isk_emit(out, ' ', false);
		else if (t[i] == '=' && i + 2 < len &&
		    (hi = cte_hex_value(t[i + 1])) >= 0 &&
		    (lo = cte_hex_value(t[i + 2])) >= 0) {
			isk_emit(out, (unsigned char)(hi << 4 | lo), latin1);
			i += 2;
		} else
			isk_emit(out, t[i], latin1);
	}
}

/* An encoded word "=?cs?e?text?=" at v[0..len): true with *used_r and the
 * decoded text appended to out; false (out unchanged) if there is none or
 * its charset is not one we decode. */
static bool
isk_word(const unsigned char *v, size_t len, struct buf *out,
    size_t *used_r)
{
	size_t cs, enc, text, end;
	int charset;

	if (len < 8 || v[0] != '=' || v[1] != '?')
		return false;
	for (cs = 2; cs < len && v[cs] != '?'; cs++)
		if (v[cs] <= ' ' || v[cs] >= 0x7f)
			return false;
	enc = cs + 1;
	if (cs == 2 || enc + 2 >= len || v[enc + 1] != '?' ||
	    strchr("BbQq", v[enc]) == NULL || v[enc] == '\0')
		return false;
	text = enc + 2;
	for (end = text; end < len && v[end] != '?'; end++)
		if (v[end] <= ' ' || v[end] >= 0x7f)
			return false;
	if (end + 1 >= len || v[end + 1] != '=')
		return false;
	if ((charset = imap_charset_class((const char *)v + 2,
	    cs - 2)) < 0)
		return false;
	if (v[enc] == 'B' || v[enc] == 'b')
		isk_word_b(v + text, end - text, charset == 1, out);
	else
		isk_word_q(v + text, end - text, charset == 1, out);
	*used_r = end + 2;
	return true;
}

void
imap_search_decode_header(const unsigned char *v, size_t len,
    struct buf *out)
{
	bool after_word = false;
	size_t i = 0, k, used;

	while (i < len) {
		if (after_word && (v[i] == ' ' || v[i] == '\t')) {
			for (k = i; k < len && (v[k] == ' ' || v[k] == '\t');)
				k++;
			/* RFC 2047 section 6.2: white space between two
			 * encoded words is not displayed. */
			if (k < len && isk_word(v + k, len - k, out, &used)) {
				i = k + used;
				continue;
			}
			(void)buf_append(out, v + i, k - i);
			i = k;
			after_word = false;
			continue;
		}
		if (v[i] == '=' && isk_word(v + i, len - i, out, &used)) {
			i += used;
			after_word = true;
			continue;
		}
		(void)buf_append_byte(out, v[i++]);
		after_word = false;
	}
}

/*
 * Dates.
 */

/* Days since 1970-01-01 of a proleptic Gregorian date (the usual
 * era-of-400-years reckoning, March-based so leap days come last). */
static int64_t
isk_days(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe, mp;

	if (m <= 2)
		y--;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	mp = m > 2 ? m - 3 : m + 9;
	doy = (153 * mp + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int64_t
isk_day_of(int64_t t)
{
	return t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
}

/* date-text "d-Mon-yyyy" (RFC 3501 date, quotes already gone). */
static int
isk_date_text(const char *s, int64_t *day_r)
{
	static const char mon[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	static const unsigned char mdays[] = { 31, 29, 31, 30, 31, 30, 31,
	    31, 30, 31, 30, 31 };
	unsigned d = 0, m, y = 0;
	size_t i = 0, k;

	for (; i < 2 && s[i] >= '0' && s[i] <= '9'; i++)
		d = d * 10 + (unsigned)(s[i] - '0');
	if (i == 0 || s[i] != '-' || strlen(s + i + 1) != 8 ||
	    s[i + 4] != '-')
		return -1;
	for (m = 0; m < 12; m++)
		if (strncasecmp(s + i + 1, mon + 3 * m, 3) == 0)
			break;
	for (k = i + 5; k < i + 9; k++) {
		if (s[k] < '0' || s[k] > '9')
			return -1;
		y = y * 10 + (unsigned)(s[k] - '0');
	}
	if (m == 12 || d == 0 || d > mdays[m] || (m == 1 && d == 29 &&
	    (y % 4 != 0 || (y % 100 == 0 && y % 400 != 0))))
		return -1;
	*day_r = isk_days(y, m + 1, d);
	return 0;
}

/* The day of a Date: value in its own zone (the last numeric zone in the
 * value; none or a zone name counts as +0000). -1 if it does not parse. */
static int
isk_sent_day(const char *v, int64_t *day_r)
{
	time_t t = msg_date_parse(v);
	int64_t off = 0;
	size_t len = strlen(v);

	if (t == (time_t)-1)
		return -1;
	for (size_t i = 1; i + 5 <= len; i++) {
		const char *z = v + i;

		if ((*z != '+' && *z != '-') || (v[i - 1] != ' ' &&
		    v[i - 1] != '\t') || strspn(z + 1, "0123456789") != 4)
			continue;
		off = ((z[1] - '0') * 10 + (z[2] - '0')) * 3600 +
		    ((z[3] - '0') * 10 + (z[4] - '0')) * 60;
		if (*z == '-')
			off = -off;
	}
	*day_r = isk_day_of((int64_t)t + off);
	return 0;
}

/*
 * Parsing the keys.
 */

struct isk_parser {
	const struct imap_arg *args;
	unsigned argc, i;
	uint32_t msgs, uid_max;
	bool failed;
	const struct imap_seqset *saved;	/* "$": UIDs, or NULL */
};

static int
isk_fail(struct isk_parser *p, const char *why)
{
	if (!p->failed)
		snprintf(isk_error, sizeof(isk_error), "%s", why);
	p->failed = true;
	return -1;
}

static const struct imap_arg *
isk_next(struct isk_parser *p)
{
	return p->i < p->argc ? &p->args[p->i++] : NULL;
}

static int
isk_arg_string(struct isk_parser *p, struct isk_needle *n)
{
	const char *s, *error;

	if (imap_arg_astring(isk_next(p), &s, &error) < 0)
		return isk_fail(p, error);
	isk_needle_init(n, (const unsigned char *)s, strlen(s));
	return 0;
}

static int
isk_arg_date(struct isk_parser *p, int64_t *day_r)
{
	const char *s, *error;

	if (imap_arg_astring(isk_next(p), &s, &error) < 0)
		return isk_fail(p, error);
	if (isk_date_text(s, day_r) < 0)
		return isk_fail(p, "Invalid date (d-Mon-yyyy)");
	return 0;
}

/* "$" (RFC 5182) as a key or after UID: the saved result, which holds
 * UIDs, whichever way it was written; no saved result is an empty set. */
static int
isk_parse_saved(struct isk_parser *p, struct isk_node *n)
{
	const struct imap_seq_range *r;
	const char *error;

	if (n->set.count > 0)
		return isk_fail(p, "$ must stand alone");
	n->op = ISK_UID;
	n->set.searchres = false;
	if (p->saved == NULL)
		return 0;
	for (unsigned i = 0; i < p->saved->count; i++) {
		r = &p->saved->ranges[i];
		if (imap_seqset_add(&n->set, r->lo, r->hi, &error) < 0)
			return isk_fail(p, error);
	}
	return 0;
}

static int
isk_parse_set(struct isk_parser *p, struct isk_node *n, enum isk_op op,
    const char *text)
{
	const char *error;

	n->op = op;
	imap_seqset_init(&n->set);
	if (imap_seqset_parse(&n->set, text, op == ISK_UID ? p->uid_max :
	    p->msgs, &error) < 0)
		return isk_fail(p, error);
	if (n->set.searchres)
		return isk_parse_saved(p, n);
	return 0;
}

static int isk_parse_key(struct isk_parser *p, struct isk_node *n,
    unsigned depth);

/* Keys up to the end of the current argument list, as an AND. */
static int
isk_parse_keys(struct isk_parser *p, struct isk_node *n, unsigned depth)
{
	unsigned cap = 0;

	n->op = ISK_AND;
	while (p->i < p->argc) {
		if (n->nkids == cap) {
			cap = cap == 0 ? 4 : cap * 2;
			n->kids = xreallocarray(n->kids, cap, sizeof(*n->kids));
		}
		memset(&n->kids[n->nkids], 0, sizeof(*n->kids));
		n->nkids++;
		if (isk_parse_key(p, &n->kids[n->nkids - 1], depth) < 0)
			return -1;
	}
	if (n->nkids == 0)
		return isk_fail(p, "Missing search key");
	return 0;
}

static int
isk_parse_list(struct isk_parser *p, const struct imap_arg *a,
    struct isk_node *n, unsigned depth)
{
	struct isk_parser sub = *p;
	const char *error;
	int r;

	if (imap_arg_list(a, &sub.args, &sub.argc, &error) < 0)
		return isk_fail(p, error);
	sub.i = 0;
	r = isk_parse_keys(&sub, n, depth + 1);
	p->failed = sub.failed;
	return r;
}

/* Keys that take no argument. */
static bool
isk_simple(const char *key, struct isk_node *n)
{
	static const struct {
		const char *name;
		enum isk_op op;
		uint32_t flag;
		bool neg;
	} keys[] = {
		{ "ALL", ISK_ALL, 0, false },
		/* \Recent is not kept: nothing is recent. */
		{ "RECENT", ISK_NONE, 0, false },
		{ "NEW", ISK_NONE, 0, false },
		{ "OLD", ISK_ALL, 0, false },
		{ "ANSWERED", ISK_FLAG, MINDEX_F_ANSWERED, false },
		{ "DELETED", ISK_FLAG, MINDEX_F_DELETED, false },
		{ "DRAFT", ISK_FLAG, MINDEX_F_DRAFT, false },
		{ "FLAGGED", ISK_FLAG, MINDEX_F_FLAGGED, false },
		{ "SEEN", ISK_FLAG, MINDEX_F_SEEN, false },
		{ "UNANSWERED", ISK_FLAG, MINDEX_F_ANSWERED, true },
		{ "UNDELETED", ISK_FLAG, MINDEX_F_DELETED, true },
		{ "UNDRAFT", ISK_FLAG, MINDEX_F_DRAFT, true },
		{ "UNFLAGGED", ISK_FLAG, MINDEX_F_FLAGGED, true },
		{ "UNSEEN", ISK_FLAG, MINDEX_F_SEEN, true },
	};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcasecmp(key, keys[i].name) == 0) {
			n->op = keys[i].op;
			n->flag = keys[i].flag;
			n->neg = keys[i].neg;
			return true;
		}
	return false;
}

/* Keys on a header field: FROM x is HEADER From x. */
static const char *
isk_header_key(const char *key)
{
	static const char *const names[] = { "From", "To", "Cc", "Bcc",
	    "Subject", NULL };

	for (size_t i = 0; names[i] != NULL; i++)
		if (strcasecmp(key, names[i]) == 0)
			return names[i];
	return NULL;
}

static int
isk_parse_date_key(struct isk_parser *p, const char *key, struct isk_node *n)
{
	static const struct {
		const char *name;
		enum isk_op op;
	} keys[] = {
		{ "BEFORE", ISK_BEFORE }, { "ON", ISK_ON }, { "SINCE", ISK_SINCE },
		{ "SENTBEFORE", ISK_SENTBEFORE }, { "SENTON", ISK_SENTON },
		{ "SENTSINCE", ISK_SENTSINCE },
		{ "SAVEDBEFORE", ISK_SAVEDBEFORE }, { "SAVEDON", ISK_SAVEDON },
		{ "SAVEDSINCE", ISK_SAVEDSINCE },
	};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcasecmp(key, keys[i].name) == 0) {
			n->op = keys[i].op;
			return isk_arg_date(p, &n->day);
		}
	return 1;
}

static int
isk_parse_keyword(struct isk_parser *p, struct isk_node *n, bool neg)
{
	const char *kw, *error;

	if (imap_arg_atom(isk_next(p), &kw, &error) < 0)
		return isk_fail(p, error);
	n->neg = neg;
	/* $Forwarded is kept as a flag bit (Maildir "P"). */
	if (strcasecmp(kw, "$Forwarded") == 0) {
		n->op = ISK_FLAG;
		n->flag = MINDEX_F_FORWARDED;
		return 0;
	}
	n->op = ISK_KEYWORD;
	n->name = xstrdup(kw);
	return 0;
}

static int
isk_parse_number(struct isk_parser *p, struct isk_node *n, enum isk_op op)
{
	const char *error;

	n->op = op;
	if (imap_arg_number64(isk_next(p), &n->num, &error) < 0)
		return isk_fail(p, error);
	return 0;
}

/* OLDER n, YOUNGER n: n seconds (nz-number) back from now, which is
 * taken once, when the command is parsed, so that every message of one
 * search is measured against the same moment. */
static int
isk_parse_within(struct isk_parser *p, struct isk_node *n, enum isk_op op)
{
	const char *error;
	uint32_t secs;

	n->op = op;
	if (imap_arg_number(isk_next(p), &secs, &error) < 0)
		return isk_fail(p, error);
	if (secs == 0)
		return isk_fail(p, "Interval must be at least 1 second");
	n->num = (uint64_t)secs;
	n->day = (int64_t)time(NULL) - (int64_t)secs;
	return 0;
}

static int
isk_parse_header(struct isk_parser *p, struct isk_node *n, const char *name)
{
	const char *error;

	n->op = ISK_HEADER;
	if (name == NULL) {
		if (imap_arg_astring(isk_next(p), &name, &error) < 0)
			return isk_fail(p, error);
	}
	n->name = xstrdup(name);
	return isk_arg_string(p, &n->needle);
}

/* NOT key, OR key key. */
static int
isk_parse_logic(struct isk_parser *p, struct isk_node *n, enum isk_op op,
    unsigned depth)
{
	n->op = op;
	n->nkids = op == ISK_OR ? 2 : 1;
	n->kids = xcalloc(n->nkids, sizeof(*n->kids));
	for (unsigned k = 0; k < n->nkids; k++)
		if (isk_parse_key(p, &n->kids[k], depth + 1) < 0)
			return -1;
	return 0;
}

/* Keys that take arguments; 1 if key is none of them. */
static int
isk_parse_arg_key(struct isk_parser *p, const char *key, struct isk_node *n,
    unsigned depth)
{
	const char *hdr;
	int r;

	if ((hdr = isk_header_key(key)) != NULL ||
	    strcasecmp(key, "HEADER") == 0)
		return isk_parse_header(p, n, hdr);
	if (strcasecmp(key, "BODY") == 0 || strcasecmp(key, "TEXT") == 0) {
		n->op = strcasecmp(key, "BODY") == 0 ? ISK_BODY : ISK_TEXT;
		return isk_arg_string(p, &n->needle);
	}
	if (strcasecmp(key, "KEYWORD") == 0 ||
	    strcasecmp(key, "UNKEYWORD") == 0)
		return isk_parse_keyword(p, n, key[0] == 'U' || key[0] == 'u');
	if (strcasecmp(key, "OLDER") == 0 || strcasecmp(key, "YOUNGER") == 0)
		return isk_parse_within(p, n, key[0] == 'O' || key[0] == 'o' ?
		    ISK_OLDER : ISK_YOUNGER);
	if (strcasecmp(key, "SAVEDATESUPPORTED") == 0) {
		n->op = ISK_SAVEDATE;
		return 0;
	}
	if (strcasecmp(key, "LARGER") == 0)
		return isk_parse_number(p, n, ISK_LARGER);
	if (strcasecmp(key, "SMALLER") == 0)
		return isk_parse_number(p, n, ISK_SMALLER);
	if (strcasecmp(key, "NOT") == 0)
		return isk_parse_logic(p, n, ISK_NOT, depth);
	if (strcasecmp(key, "OR") == 0)
		return isk_parse_logic(p, n, ISK_OR, depth);
	if (strcasecmp(key, "UID") == 0) {
		const char *set, *error;

		if (imap_arg_atom(isk_next(p), &set, &error) < 0)
			return isk_fail(p, error);
		return isk_parse_set(p, n, ISK_UID, set);
	}
	if ((r = isk_parse_date_key(p, key, n)) <= 0)
		return r;
	return 1;
}

static int
isk_parse_key(struct isk_parser *p, struct isk_node *n, unsigned depth)
{
	const struct imap_arg *a;
	const char *key, *error;
	int r;

	if (depth > IMAP_SEARCH_DEPTH_MAX)
		return isk_fail(p, "Search keys nested too deeply");
	if ((a = isk_next(p)) == NULL)
		return isk_fail(p, "Missing search key");
	if (a->type == IMAP_ARG_LIST)
		return isk_parse_list(p, a, n, depth);
	if (imap_arg_atom(a, &key, &error) < 0)
		return isk_fail(p, "Search key expected");
	if ((key[0] >= '0' && key[0] <= '9') || key[0] == '*' ||
	    key[0] == '$')
		return isk_parse_set(p, n, ISK_SEQ, key);
	if (isk_simple(key, n))
		return 0;
	if ((r = isk_parse_arg_key(p, key, n, depth)) <= 0)
		return r;
	return isk_fail(p, "Unknown search key");
}

static void
isk_node_free(struct isk_node *n)
{
	for (unsigned k = 0; k < n->nkids; k++)
		isk_node_free(&n->kids[k]);
	free(n->kids);
	free(n->name);
	isk_needle_free(&n->needle);
	if (n->op == ISK_SEQ || n->op == ISK_UID)
		imap_seqset_deinit(&n->set);
	memset(n, 0, sizeof(*n));
}

static bool
isk_header_cached(const struct isk_node *n)
{
	return msg_cache_field((const unsigned char *)n->name,
	    strlen(n->name));
}

static int
isk_cost_cmp(const void *a, const void *b)
{
	const struct isk_node *x = a, *y = b;

	return x->cost - y->cost;
}

/* Costs bottom-up, and an AND's cheap keys first, so that the expensive
 * ones are not even looked at once a cheap one says no. */
static void
isk_plan(struct isk_node *n)
{
	n->cost = 0;
	for (unsigned k = 0; k < n->nkids; k++) {
		isk_plan(&n->kids[k]);
		if (n->kids[k].cost > n->cost)
			n->cost = n->kids[k].cost;
	}
	if (n->op == ISK_BODY || n->op == ISK_TEXT ||
	    (n->op == ISK_HEADER && !isk_header_cached(n)))
		n->cost = 2;
	else if (n->op == ISK_HEADER || n->op == ISK_SENTBEFORE ||
	    n->op == ISK_SENTON || n->op == ISK_SENTSINCE)
		n->cost = 1;
	if (n->op == ISK_AND && n->nkids > 1)
		qsort(n->kids, n->nkids, sizeof(*n->kids), isk_cost_cmp);
}

static bool
isk_is_leaf_of_message(const struct isk_node *n)
{
	return n->op == ISK_HEADER || n->op == ISK_BODY ||
	    n->op == ISK_TEXT || n->op == ISK_SENTBEFORE ||
	    n->op == ISK_SENTON || n->op == ISK_SENTSINCE;
}

static void
isk_collect(struct imap_search *search, struct isk_node *n, unsigned *cap)
{
	for (unsigned k = 0; k < n->nkids; k++)
		isk_collect(search, &n->kids[k], cap);
	if (!isk_is_leaf_of_message(n))
		return;
	if (search->nleaves == *cap) {
		*cap = *cap == 0 ? 8 : *cap * 2;
		search->leaves = xreallocarray(search->leaves, *cap,
		    sizeof(*search->leaves));
	}
	search->leaves[search->nleaves++] = n;
}

static int
isk_parse_charset(struct isk_parser *p)
{
	const char *key, *cs, *error;

	if (p->argc == 0 || p->args[0].type != IMAP_ARG_ATOM ||
	    imap_arg_atom(&p->args[0], &key, &error) < 0 ||
	    strcasecmp(key, "CHARSET") != 0)
		return 0;
	p->i = 1;
	if (imap_arg_astring(isk_next(p), &cs, &error) < 0)
		return isk_fail(p, error);
	if (strcasecmp(cs, "US-ASCII") != 0 && strcasecmp(cs, "UTF-8") != 0) {
		snprintf(isk_error, sizeof(isk_error), "Unsupported charset");
		return IMAP_SEARCH_PARSE_BADCHARSET;
	}
	return 0;
}

int
imap_search_parse(const struct imap_arg *args, unsigned argc,
    uint32_t msgs, uint32_t uid_max, struct imap_search **search_r,
    const char **error_r)
{
	return imap_search_parse_saved(args, argc, msgs, uid_max, NULL,
	    search_r, error_r);
}

int
imap_search_parse_saved(const struct imap_arg *args, unsigned argc,
    uint32_t msgs, uint32_t uid_max, const struct imap_seqset *saved,
    struct imap_search **search_r, const char **error_r)
{
	struct isk_parser p = { args, argc, 0, msgs, uid_max, false, saved };
	struct imap_search *search;
	unsigned cap = 0;
	int r;

	*search_r = NULL;
	*error_r = isk_error;
	if ((r = isk_parse_charset(&p)) < 0)
		return r == IMAP_SEARCH_PARSE_BADCHARSET ? r :
		    IMAP_SEARCH_PARSE_BAD;
	search = xcalloc(1, sizeof(*search));
	if (isk_parse_keys(&p, &search->root, 0) < 0) {
		imap_search_free(&search);
		return IMAP_SEARCH_PARSE_BAD;
	}
	isk_plan(&search->root);
	isk_collect(search, &search->root, &cap);
	buf_init(&search->field, IMAP_SEARCH_FIELD_MAX);
	buf_init(&search->val, IMAP_SEARCH_FIELD_MAX);
	/* Latin-1 to UTF-8 at most doubles. */
	buf_init(&search->dec, 2 * IMAP_SEARCH_FIELD_MAX);
	*search_r = search;
	return IMAP_SEARCH_PARSE_OK;
}

void
imap_search_free(struct imap_search **sp)
{
	struct imap_search *search = *sp;

	if (search == NULL)
		return;
	*sp = NULL;
	isk_node_free(&search->root);
	free(search->leaves);
	buf_free(&search->field);
	buf_free(&search->val);
	buf_free(&search->dec);
	free(search);
}

static unsigned
isk_needs(const struct isk_node *n)
{
	unsigned need = 0;

	for (unsigned k = 0; k < n->nkids; k++)
		need |= isk_needs(&n->kids[k]);
	switch (n->op) {
	case ISK_LARGER:
	case ISK_SMALLER:
		return need | IMAP_NEED_SIZES;
	/* The internal date is the file's time, which only completion
	 * reads (the name's is a guess). */
	case ISK_BEFORE: case ISK_ON: case ISK_SINCE:
	case ISK_OLDER: case ISK_YOUNGER:
	case ISK_HEADER: case ISK_BODY: case ISK_TEXT:
	case ISK_SENTBEFORE: case ISK_SENTON: case ISK_SENTSINCE:
		return need | IMAP_NEED_PARSE;
	default:
		return need;
	}
}

unsigned
imap_search_needs(const struct imap_search *search)
{
	return isk_needs(&search->root);
}

bool
imap_search_needs_message(const struct imap_search *search)
{
	for (unsigned i = 0; i < search->nleaves; i++)
		if (search->leaves[i]->cost == 2)
			return true;
	return false;
}

/*
 * Matching from the index.
 */

static bool
isk_name_is(const char *name, const unsigned char *p, size_t len)
{
	return strlen(name) == len && strncasecmp(name, (const char *)p,
	    len) == 0;
}

/* value of the raw field into search->dec, decoded. */
static void
isk_field_value(struct imap_search *search, const unsigned char *raw,
    size_t len)
{
	buf_truncate(&search->val, 0);
	buf_truncate(&search->dec, 0);
	(void)msg_header_value(raw, len, &search->val);
	imap_search_decode_header(search->val.data, search->val.len,
	    &search->dec);
}

static bool
isk_sent_matches(const struct isk_node *n, struct imap_search *search)
{
	int64_t day;

	if (isk_sent_day(buf_cstr(&search->val), &day) < 0)
		return false;
	if (n->op == ISK_SENTBEFORE)
		return day < n->day;
	if (n->op == ISK_SENTON)
		return day == n->day;
	return day >= n->day;
}

struct isk_cache_ctx {
	struct imap_search *search;
	struct isk_node *n;
	bool found, hit;
};

static int
isk_cache_cb(const unsigned char *name, size_t name_len,
    const unsigned char *raw, size_t raw_len, void *ctx)
{
	struct isk_cache_ctx *c = ctx;
	bool sent = c->n->op != ISK_HEADER;

	if (!isk_name_is(sent ? "Date" : c->n->name, name, name_len))
		return 0;
	c->found = true;
	isk_field_value(c->search, raw, raw_len);
	if (sent)
		c->hit = isk_sent_matches(c->n, c->search);
	else
		c->hit = isk_needle_in(&c->n->needle, c->search->dec.data,
		    c->search->dec.len);
	/* SENT*: only the first Date: counts. */
	return sent || c->hit ? 1 : 0;
}

static int
isk_eval_cached(struct imap_search *search, struct isk_node *n,
    const struct mindex_msg *m)
{
	struct isk_cache_ctx c = { search, n, false, false };

	/* A record adopted unread has no cached fields: the message's own
	 * (its file could not be read for completion; it may be now). */
	if ((n->op == ISK_HEADER && !isk_header_cached(n)) ||
	    (m->cache_flags & MINDEX_C_UNPARSED) != 0)
		return ISK_NEED;
	if (m->headers_len > 0)
		(void)msg_header_iter(m->headers, m->headers_len,
		    isk_cache_cb, &c, NULL);
	if (c.hit)
		return ISK_YES;
	if (c.found || (m->cache_flags & MINDEX_C_HEADERS_PARTIAL) == 0)
		return ISK_NO;
	return ISK_NEED;
}

static bool
isk_has_keyword(const struct isk_node *n, const struct mindex_msg *m)
{
	const char *p = m->keywords, *end = m->keywords + m->keywords_len;
	size_t len;

	while (p != NULL && p < end) {
		len = strnlen(p, (size_t)(end - p));
		if (strlen(n->name) == len && strncasecmp(p, n->name, len) == 0)
			return true;
		p += len + 1;
	}
	return false;
}

static int isk_eval(struct imap_search *search, struct isk_node *n,
    uint32_t msn, const struct mindex_msg *m);

static int
isk_eval_logic(struct imap_search *search, struct isk_node *n,
    uint32_t msn, const struct mindex_msg *m)
{
	int r, k;

	if (n->op == ISK_NOT) {
		k = isk_eval(search, &n->kids[0], msn, m);
		return k == ISK_NEED ? ISK_NEED : !k;
	}
	/* AND stops at the first no, OR at the first yes. */
	r = n->op == ISK_AND ? ISK_YES : ISK_NO;
	for (unsigned i = 0; i < n->nkids; i++) {
		k = isk_eval(search, &n->kids[i], msn, m);
		if (k == ISK_NEED)
			r = ISK_NEED;
		else if (k == (n->op == ISK_AND ? ISK_NO : ISK_YES))
			return k;
	}
	return r;
}

static int
isk_eval_leaf(struct imap_search *search, struct isk_node *n, uint32_t msn,
    const struct mindex_msg *m)
{
	switch (n->op) {
	case ISK_ALL:
		return ISK_YES;
	case ISK_FLAG:
		return ((m->flags & n->flag) != 0) != n->neg;
	case ISK_KEYWORD:
		return isk_has_keyword(n, m) != n->neg;
	case ISK_SEQ:
		return imap_seqset_contains(&n->set, msn);
	case ISK_UID:
		return imap_seqset_contains(&n->set, m->uid);
	case ISK_LARGER:
		return m->vsize > n->num;
	case ISK_SMALLER:
		return m->vsize < n->num;
	case ISK_BEFORE:
		return isk_day_of(m->internal_date) < n->day;
	case ISK_ON:
		return isk_day_of(m->internal_date) == n->day;
	case ISK_SINCE:
		return isk_day_of(m->internal_date) >= n->day;
	/* n->day holds the moment n->num seconds before the search. */
	case ISK_OLDER:
		return m->internal_date <= n->day;
	case ISK_YOUNGER:
		return m->internal_date > n->day;
	/* A message saved before the index kept save dates has none: it
	 * matches no SAVED* key (RFC 8514 lets FETCH SAVEDATE say NIL). */
	case ISK_SAVEDBEFORE:
		return m->save_date != 0 && isk_day_of(m->save_date) < n->day;
	case ISK_SAVEDON:
		return m->save_date != 0 && isk_day_of(m->save_date) == n->day;
	case ISK_SAVEDSINCE:
		return m->save_date != 0 && isk_day_of(m->save_date) >= n->day;
	case ISK_SAVEDATE:
		return ISK_YES;
	case ISK_HEADER:
	case ISK_SENTBEFORE:
	case ISK_SENTON:
	case ISK_SENTSINCE:
		return isk_eval_cached(search, n, m);
	case ISK_BODY:
	case ISK_TEXT:
		return ISK_NEED;
	default:
		return ISK_NO;
	}
}

static int
isk_eval(struct imap_search *search, struct isk_node *n, uint32_t msn,
    const struct mindex_msg *m)
{
	if (n->op == ISK_AND || n->op == ISK_OR || n->op == ISK_NOT)
		n->state = isk_eval_logic(search, n, msn, m);
	else
		n->state = isk_eval_leaf(search, n, msn, m);
	return n->state;
}

int
imap_search_match_index(struct imap_search *search, uint32_t msn,
    const struct mindex_msg *m)
{
	/* Keys an AND or OR did not reach keep no answer of an earlier
	 * message. */
	for (unsigned i = 0; i < search->nleaves; i++)
		search->leaves[i]->state = ISK_NO;
	return isk_eval(search, &search->root, msn, m);
}

/*
 * Matching the message bytes.
 */

/* A text part whose body is to be decoded: [start, end) of the message. */
struct isk_seg {
	uint64_t start, end;
	bool base64;		/* else quoted-printable */
};

enum isk_hstate { ISK_H_START, ISK_H_LINE, ISK_H_CR };

struct isk_scan {
	struct imap_search *search;
	uint64_t pos;			/* offset of the current byte */
	bool in_body, done, date_seen;
	enum isk_hstate hstate;
	unsigned char prev_hdr, prev_body;	/* for isk_fold */
	struct isk_seg *segs;		/* owned */
	size_t nsegs, nalloc, seg;
	/* The decoder of the segment being read (lib/cte, line ends as
	 * stored: a needle is matched against text, not IMAP's CRLF). */
	bool decoding;
	struct cte_dec dec;
	unsigned char decbuf[2 * IMAP_SEARCH_CHUNK + CTE_SLACK];
};

static void
isk_segs_add(struct isk_scan *sc, const struct mime_part *p)
{
	bool b64 = strcmp(p->encoding, "base64") == 0;
	uint64_t end = p->body_offset + p->body_psize;

	if (p->nchildren > 0) {
		for (size_t i = 0; i < p->nchildren; i++)
			isk_segs_add(sc, &p->children[i]);
		return;
	}
	if (strcmp(p->type, "text") != 0 || p->body_psize == 0 || (!b64 &&
	    strcmp(p->encoding, "quoted-printable") != 0) || end < p->body_offset)
		return;
	/* Only ascending, disjoint parts: the stream goes forward. */
	if (sc->nsegs > 0 && p->body_offset < sc->segs[sc->nsegs - 1].end)
		return;
	if (sc->nsegs == sc->nalloc) {
		sc->nalloc = sc->nalloc == 0 ? 4 : sc->nalloc * 2;
		sc->segs = xreallocarray(sc->segs, sc->nalloc,
		    sizeof(*sc->segs));
	}
	sc->segs[sc->nsegs].start = p->body_offset;
	sc->segs[sc->nsegs].end = end;
	sc->segs[sc->nsegs].base64 = b64;
	sc->nsegs++;
}

static void
isk_scan_init(struct isk_scan *sc, struct imap_search *search,
    const struct mindex_msg *m)
{
	struct mime_part *tree = NULL;

	memset(sc, 0, sizeof(*sc));
	sc->search = search;
	buf_truncate(&search->field, 0);
	if (search->body && m->mime_len > 0 &&
	    mime_deserialize(m->mime, m->mime_len, &tree) == 0) {
		isk_segs_add(sc, tree);
		mime_part_free(&tree);
	}
}

/* A body byte as matched (decoded if in a decoded part). */
static void
isk_body_out(struct isk_scan *sc, unsigned char c)
{
	unsigned char f = isk_fold(sc->prev_body, c);
	struct isk_node *n;

	sc->prev_body = c;
	for (unsigned i = 0; i < sc->search->nleaves; i++) {
		n = sc->search->leaves[i];
		if (n->active && !n->hit && (n->op == ISK_BODY ||
		    n->op == ISK_TEXT) && isk_needle_feed(&n->needle, f))
			n->hit = true;
	}
}

static void
isk_body_out_n(struct isk_scan *sc, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		isk_body_out(sc, p[i]);
}

/* The end of a decoded segment (or of the message): what the decoder
 * held back goes out. */
static void
isk_decode_end(struct isk_scan *sc)
{
	if (!sc->decoding)
		return;
	isk_body_out_n(sc, sc->decbuf, cte_finish(&sc->dec, sc->decbuf));
	sc->decoding = false;
}

/* Body bytes p[0..len) (len at most IMAP_SEARCH_CHUNK), the first at
 * sc->pos: matched as they are, or decoded inside a text part whose
 * encoding the tree names. Cut at the segment edges, each run in one
 * call. */
static void
isk_body_bytes(struct isk_scan *sc, const unsigned char *p, size_t len)
{
	while (len > 0) {
		const struct isk_seg *g;
		size_t n = len;
		uint64_t stop;

		while (sc->seg < sc->nsegs &&
		    sc->pos >= sc->segs[sc->seg].end) {
			isk_decode_end(sc);
			sc->seg++;
		}
		g = sc->seg < sc->nsegs ? &sc->segs[sc->seg] : NULL;
		if (g != NULL) {
			stop = sc->pos < g->start ? g->start : g->end;
			if (stop - sc->pos < n)
				n = (size_t)(stop - sc->pos);
		}
		if (g != NULL && sc->pos >= g->start) {
			if (!sc->decoding) {
				cte_init(&sc->dec, g->base64 ? CTE_BASE64 :
				    CTE_QP, 0);
				sc->decoding = true;
			}
			isk_body_out_n(sc, sc->decbuf, cte_decode(&sc->dec, p,
			    n, sc->decbuf));
		} else
			isk_body_out_n(sc, p, n);
		p += n;
		len -= n;
		sc->pos += n;
	}
}

/* The length of the name of raw field f, or 0 if it is not a field. */
static size_t
isk_field_name(const unsigned char *f, size_t len)
{
	const unsigned char *colon = memchr(f, ':', len);
	size_t n;

	if (colon == NULL)
		return 0;
	for (n = (size_t)(colon - f); n > 0 && (f[n - 1] == ' ' ||
	    f[n - 1] == '\t');)
		n--;
	for (size_t i = 0; i < n; i++)
		if (f[i] <= ' ' || f[i] >= 0x7f)
			return 0;
	return n;
}

/* A complete header field of the message: match the active keys. */
static void
isk_field_done(struct isk_scan *sc)
{
	struct imap_search *search = sc->search;
	const unsigned char *f = search->field.data;
	size_t len = search->field.len, nlen;
	bool date;
	struct isk_node *n;

	if (len == 0 || (nlen = isk_field_name(f, len)) == 0) {
		buf_truncate(&search->field, 0);
		return;
	}
	isk_field_value(search, f, len);
	date = isk_name_is("Date", f, nlen);
	for (unsigned i = 0; i < search->nleaves; i++) {
		n = search->leaves[i];
		if (!n->active || n->hit)
			continue;
		if (n->op == ISK_TEXT || (n->op == ISK_HEADER &&
		    isk_name_is(n->name, f, nlen)))
			n->hit = isk_needle_in(&n->needle, search->dec.data,
			    search->dec.len);
		else if (date && !sc->date_seen && n->op != ISK_BODY &&
		    n->op != ISK_HEADER)
			n->hit = isk_sent_matches(n, search);
	}
	if (date)
		sc->date_seen = true;
	buf_truncate(&search->field, 0);
}

/* A header byte; true when it ends the header. */
static bool
isk_header_byte(struct isk_scan *sc, unsigned char c)
{
	struct buf *field = &sc->search->field;
	unsigned char f = isk_fold(sc->prev_hdr, c);
	struct isk_node *n;

	sc->prev_hdr = c;
	for (unsigned i = 0; i < sc->search->nleaves; i++) {
		n = sc->search->leaves[i];
		if (n->active && !n->hit && n->op == ISK_TEXT &&
		    isk_needle_feed(&n->needle, f))
			n->hit = true;
	}
	switch (sc->hstate) {
	case ISK_H_START:
		if (c == '\n') {
			isk_field_done(sc);
			return true;
		}
		if (c == '\r') {
			sc->hstate = ISK_H_CR;
			return false;
		}
		/* A line not starting with white space starts a field. */
		if (c != ' ' && c != '\t')
			isk_field_done(sc);
		break;
	case ISK_H_CR:
		if (c == '\n') {
			isk_field_done(sc);
			return true;
		}
		/* A CR alone at a line start: a line of its own. */
		isk_field_done(sc);
		(void)buf_append_byte(field, '\r');
		break;
	case ISK_H_LINE:
		break;
	}
	(void)buf_append_byte(field, c);
	sc->hstate = c == '\n' ? ISK_H_START : ISK_H_LINE;
	return false;
}

static void
isk_scan_bytes(struct isk_scan *sc, const unsigned char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len && !sc->done && !sc->in_body; i++, sc->pos++)
		if (isk_header_byte(sc, p[i])) {
			sc->in_body = true;
			/* Header keys only: the body is not read. */
			sc->done = !sc->search->body;
		}
	if (i < len && sc->in_body && !sc->done)
		isk_body_bytes(sc, p + i, len - i);
}

static int
isk_scan_message(struct imap_search *search, const struct mindex_msg *m,
    const struct imap_search_reader *rd, void *ctx, const char **error_r)
{
	unsigned char chunk[IMAP_SEARCH_CHUNK];
	struct isk_scan sc;
	size_t len;
	int r = 0;

	isk_scan_init(&sc, search, m);
	if (rd->open(ctx, error_r) < 0) {
		free(sc.segs);
		return -1;
	}
	while (!sc.done && (r = rd->read(ctx, chunk, sizeof(chunk), &len,
	    error_r)) > 0)
		isk_scan_bytes(&sc, chunk, len > sizeof(chunk) ? sizeof(chunk) :
		    len);
	rd->close(ctx);
	free(sc.segs);
	if (!sc.done && r < 0)
		return -1;
	if (!sc.in_body)
		isk_field_done(&sc);	/* a message that is all header */
	else
		isk_decode_end(&sc);
	return 0;
}

/* The answer after the message step: keys the index decided keep their
 * answer, the others have theirs from the bytes. */
static bool
isk_final(const struct isk_node *n)
{
	if (n->state != ISK_NEED)
		return n->state == ISK_YES;
	switch (n->op) {
	case ISK_AND:
		for (unsigned k = 0; k < n->nkids; k++)
			if (!isk_final(&n->kids[k]))
				return false;
		return true;
	case ISK_OR:
		for (unsigned k = 0; k < n->nkids; k++)
			if (isk_final(&n->kids[k]))
				return true;
		return false;
	case ISK_NOT:
		return !isk_final(&n->kids[0]);
	default:
		return n->hit;
	}
}

int
imap_search_match_message(struct imap_search *search, uint32_t msn,
    const struct mindex_msg *m, const struct imap_search_reader *rd,
    void *rd_ctx, const char **error_r)
{
	struct isk_node *n;
	int r;

	if ((r = imap_search_match_index(search, msn, m)) != ISK_NEED)
		return r;
	search->body = false;
	for (unsigned i = 0; i < search->nleaves; i++) {
		n = search->leaves[i];
		n->active = n->state == ISK_NEED;
		n->hit = false;
		n->needle.pos = 0;
		if (n->active && (n->op == ISK_BODY || n->op == ISK_TEXT))
			search->body = true;
	}
	if (isk_scan_message(search, m, rd, rd_ctx, error_r) < 0)
		return -1;
	return isk_final(&search->root) ? 1 : 0;
}

/*
 * The command.
 */

uint64_t
imap_search_files_read(void)
{
	return isk_files_read;
}

struct isk_store_reader {
	struct store *st;
	const char *folder;
	uint32_t uid;
	struct store_read *r;
};

static int
isk_store_open(void *ctx, const char **error_r)
{
	struct isk_store_reader *sr = ctx;

	isk_files_read++;
	sr->r = NULL;
	if (store_read_open(sr->st, sr->folder, sr->uid, &sr->r, error_r) !=
	    STORE_OP_OK) {
		sr->r = NULL;
		return -1;
	}
	return 0;
}

static int
isk_store_read(void *ctx, unsigned char *buf, size_t size, size_t *len_r,
    const char **error_r)
{
	struct isk_store_reader *sr = ctx;

	return store_read_next(sr->r, buf, size, len_r, error_r);
}

static void
isk_store_close(void *ctx)
{
	struct isk_store_reader *sr = ctx;

	store_read_close(&sr->r);
}

static const struct imap_search_reader isk_store_reader = {
	isk_store_open, isk_store_read, isk_store_close
};

/* Step 1: every message of the view against the index, in one read
 * transaction (no network wait inside). state[i] gets ISK_*. */
static int
isk_pass_index(struct imap_session *s, struct store *st,
    struct imap_search *search, unsigned char *state, bool answer)
{
	struct mindex_txn *txn;
	struct mindex_msg m;
	const char *error;

	if (mindex_begin(store_index(st), false, &txn, &error) < 0) {
		log_error("imap: user=<%s>, index: %s", s->user, error);
		if (answer)
			imap_tagged(s, "NO", "[UNAVAILABLE] Index unavailable");
		return -1;
	}
	for (unsigned i = 0; i < s->view.count; i++) {
		if (state[i] == IMAP_SEARCH_SKIP)
			continue;
		/* Expunged by another session and not reported yet: not
		 * found, not matched (RFC 3501 section 7.4.1). */
		if (mindex_msg_get(txn, s->view.folder_id, s->view.msgs[i].uid,
		    &m) <= 0) {
			state[i] = ISK_NO;
			continue;
		}
		state[i] = (unsigned char)imap_search_match_index(search,
		    i + 1, &m);
	}
	mindex_abort(&txn);
	return 0;
}

/* The record of uid copied out of the index, so the message can be read
 * without a transaction open (store_read_open begins its own). */
static int
isk_msg_copy(struct store *st, uint32_t folder_id, uint32_t uid,
    struct mindex_msg *m, struct buf *copy)
{
	struct mindex_txn *txn;
	const char *error;
	int r;

	if (mindex_begin(store_index(st), false, &txn, &error) < 0)
		return -1;
	if ((r = mindex_msg_get(txn, folder_id, uid, m)) > 0) {
		buf_truncate(copy, 0);
		if (buf_append(copy, m->headers, m->headers_len) < 0 ||
		    buf_append(copy, m->mime, m->mime_len) < 0 ||
		    buf_append(copy, m->keywords, m->keywords_len) < 0)
			r = -1;
	}
	mindex_abort(&txn);
	if (r <= 0)
		return -1;
	m->headers = copy->data;
	m->mime = copy->data + m->headers_len;
	m->keywords = (const char *)copy->data + m->headers_len + m->mime_len;
	m->location = NULL;
	m->location_len = 0;
	return 0;
}

/* Step 2: the messages the index left open, read one at a time. */
static void
isk_pass_messages(struct imap_session *s, struct store *st,
    struct imap_search *search, unsigned char *state)
{
	struct isk_store_reader sr = { st, s->view.name, 0, NULL };
	struct mindex_msg m;
	struct buf copy;
	const char *error;
	int r;

	buf_init(&copy, 3 * (size_t)MINDEX_FIELD_MAX);
	for (unsigned i = 0; i < s->view.count; i++) {
		if (state[i] != ISK_NEED)
			continue;
		state[i] = ISK_NO;
		sr.uid = s->view.msgs[i].uid;
		if (isk_msg_copy(st, s->view.folder_id, sr.uid, &m, &copy) < 0)
			continue;
		r = imap_search_match_message(search, i + 1, &m,
		    &isk_store_reader, &sr, &error);
		if (r < 0)
			log_warning("imap: user=<%s>, search: uid %u of %s "
			    "cannot be read (%s)", s->user, sr.uid,
			    s->view.name, error);
		else
			state[i] = (unsigned char)r;
	}
	buf_free(&copy);
}

int
imap_search_run(struct imap_session *s, struct store *st,
    struct imap_search *search, unsigned char *state)
{
	if (isk_pass_index(s, st, search, state, true) < 0)
		return -1;
	isk_pass_messages(s, st, search, state);
	return 0;
}

int
imap_search_run_some(struct imap_session *s, struct store *st,
    struct imap_search *search, unsigned char *state)
{
	if (isk_pass_index(s, st, search, state, false) < 0)
		return -1;
	isk_pass_messages(s, st, search, state);
	return 0;
}

/*
 * ESEARCH (RFC 4731) and SEARCHRES (RFC 5182).
 */

static int
isk_partial_num(const char **pp, bool neg, uint32_t *n_r)
{
	const char *p = *pp;
	uint64_t n = 0;

	if (neg && *p++ != '-')
		return -1;
	/* nz-number: no leading zero, at most 4294967295. */
	if (*p < '1' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		n = n * 10 + (uint64_t)(*p - '0');
		if (n > UINT32_MAX)
			return -1;
	}
	*n_r = (uint32_t)n;
	*pp = p;
	return 0;
}

int
imap_search_partial_parse(const char *text, struct imap_search_partial *p)
{
	const char *q = text;
	uint32_t a, b;
	bool neg = *q == '-';

	if (isk_partial_num(&q, neg, &a) < 0 || *q++ != ':' ||
	    isk_partial_num(&q, neg, &b) < 0 || *q != '\0')
		return -1;
	p->lo = a < b ? a : b;
	p->hi = a < b ? b : a;
	p->last = neg;
	return 0;
}

void
imap_search_partial_slice(const struct imap_search_partial *p, size_t count,
    size_t *first_r, size_t *end_r)
{
	size_t lo = p->lo, hi = p->hi;

	*first_r = *end_r = 0;
	if (lo > count)
		return;
	if (hi > count)
		hi = count;
	if (p->last) {
		/* -1 is the last result: -hi:-lo from the start. */
		*first_r = count - hi;
		*end_r = count - lo + 1;
	} else {
		*first_r = lo - 1;
		*end_r = hi;
	}
}

static const struct isk_ret_opt {
	const char *name;
	unsigned bit;
	bool ctx;		/* CONTEXT=SEARCH's */
} isk_ret_opts[] = {
	{ "MIN", IMAP_SEARCH_RET_MIN, false },
	{ "MAX", IMAP_SEARCH_RET_MAX, false },
	{ "ALL", IMAP_SEARCH_RET_ALL, false },
	{ "COUNT", IMAP_SEARCH_RET_COUNT, false },
	{ "SAVE", IMAP_SEARCH_RET_SAVE, false },
	{ "UPDATE", IMAP_SEARCH_RET_UPDATE, true },
	{ "CONTEXT", IMAP_SEARCH_RET_CONTEXT, true },
	{ "PARTIAL", IMAP_SEARCH_RET_PARTIAL, true },
};

static const struct isk_ret_opt *
isk_ret_opt(const struct imap_arg *a, bool ctx)
{
	const char *word, *error;

	if (a->type != IMAP_ARG_ATOM || imap_arg_atom(a, &word, &error) < 0)
		return NULL;
	for (size_t k = 0; k < sizeof(isk_ret_opts) / sizeof(isk_ret_opts[0]);
	    k++)
		if (strcasecmp(word, isk_ret_opts[k].name) == 0)
			return isk_ret_opts[k].ctx && !ctx ? NULL :
			    &isk_ret_opts[k];
	return NULL;
}

/* The options of the list; PARTIAL takes the element after it. */
static int
isk_ret_list(const struct imap_arg *list, unsigned count, bool ctx,
    unsigned *ret_r, struct imap_search_partial *partial_r)
{
	const struct isk_ret_opt *o;
	const char *range, *error;

	for (unsigned i = 0; i < count; i++) {
		if ((o = isk_ret_opt(&list[i], ctx)) == NULL) {
			snprintf(isk_error, sizeof(isk_error),
			    "Unknown RETURN option %u", i + 1);
			return -1;
		}
		if (o->bit == IMAP_SEARCH_RET_PARTIAL) {
			if ((*ret_r & IMAP_SEARCH_RET_PARTIAL) ||
			    i + 1 >= count || imap_arg_atom(&list[i + 1],
			    &range, &error) < 0 ||
			    imap_search_partial_parse(range, partial_r) < 0) {
				snprintf(isk_error, sizeof(isk_error),
				    "PARTIAL needs one range (m:n or -m:-n)");
				return -1;
			}
			i++;
		}
		*ret_r |= o->bit;
	}
	if ((*ret_r & IMAP_SEARCH_RET_PARTIAL) &&
	    (*ret_r & IMAP_SEARCH_RET_ALL)) {
		snprintf(isk_error, sizeof(isk_error),
		    "PARTIAL and ALL cannot both be asked");
		return -1;
	}
	return 0;
}

static int
isk_parse_return(const struct imap_arg *args, unsigned argc, bool ctx,
    unsigned *ret_r, unsigned *used_r, struct imap_search_partial *partial_r,
    const char **error_r)
{
	const struct imap_arg *list;
	const char *word, *error;
	unsigned count;

	*ret_r = 0;
	*used_r = 0;
	*error_r = isk_error;
	if (argc == 0 || args[0].type != IMAP_ARG_ATOM ||
	    imap_arg_atom(&args[0], &word, &error) < 0 ||
	    strcasecmp(word, "RETURN") != 0)
		return 0;
	if (argc < 2 || imap_arg_list(&args[1], &list, &count, &error) < 0) {
		snprintf(isk_error, sizeof(isk_error),
		    "RETURN needs a list of options");
		return -1;
	}
	if (isk_ret_list(list, count, ctx, ret_r, partial_r) < 0)
		return -1;
	/* "RETURN ()" is "RETURN (ALL)" (RFC 4731 section 3.1). */
	if (count == 0)
		*ret_r = IMAP_SEARCH_RET_ALL;
	*ret_r |= IMAP_SEARCH_RET_ESEARCH;
	*used_r = 2;
	return 0;
}

int
imap_search_parse_return_ctx(const struct imap_arg *args, unsigned argc,
    unsigned *ret_r, unsigned *used_r, struct imap_search_partial *partial_r,
    const char **error_r)
{
	memset(partial_r, 0, sizeof(*partial_r));
	return isk_parse_return(args, argc, true, ret_r, used_r, partial_r,
	    error_r);
}

int
imap_search_parse_return(const struct imap_arg *args, unsigned argc,
    unsigned *ret_r, unsigned *used_r, const char **error_r)
{
	struct imap_search_partial unused;

	return isk_parse_return(args, argc, false, ret_r, used_r, &unused,
	    error_r);
}

int
imap_search_esearch(const char *tag, bool uid, unsigned ret,
    const uint32_t *nums, size_t count, struct buf *out)
{
	return imap_search_esearch_partial(tag, uid,
	    ret & ~(unsigned)IMAP_SEARCH_RET_PARTIAL, NULL, nums, count, out);
}

/* " PARTIAL (range set)": the range as asked (normalized), NIL when it
 * names no result. */
static int
isk_esearch_partial(const struct imap_search_partial *p,
    const uint32_t *nums, size_t count, struct buf *out)
{
	const char *minus = p->last ? "-" : "";
	size_t first, end;
	int r = 0;

	imap_search_partial_slice(p, count, &first, &end);
	r |= buf_printf(out, " PARTIAL (%s%u:%s%u ", minus, p->lo, minus,
	    p->hi);
	if (first == end)
		r |= buf_append_str(out, "NIL");
	else
		r |= imap_seqset_format_nums(nums + first, end - first, out);
	r |= buf_append_byte(out, ')');
	return r;
}

int
imap_search_esearch_partial(const char *tag, bool uid, unsigned ret,
    const struct imap_search_partial *partial, const uint32_t *nums,
    size_t count, struct buf *out)
{
	size_t start = out->len;
	int r = 0;

	r |= buf_append_str(out, "* ESEARCH (TAG \"");
	/* A tag is atom characters, which exclude '"' and '\'; escaped
	 * anyway so the reply stays well formed whatever it holds. */
	for (const char *t = tag; *t != '\0'; t++) {
		if (*t == '"' || *t == '\\')
			r |= buf_append_byte(out, '\\');
		r |= buf_append_byte(out, (unsigned char)*t);
	}
	r |= buf_append_str(out, "\")");
	if (uid)
		r |= buf_append_str(out, " UID");
	/* MIN, MAX and ALL are left out when nothing matched (4731 3.1). */
	if ((ret & IMAP_SEARCH_RET_MIN) && count > 0)
		r |= buf_printf(out, " MIN %u", nums[0]);
	if ((ret & IMAP_SEARCH_RET_MAX) && count > 0)
		r |= buf_printf(out, " MAX %u", nums[count - 1]);
	if (ret & IMAP_SEARCH_RET_COUNT)
		r |= buf_printf(out, " COUNT %zu", count);
	if ((ret & IMAP_SEARCH_RET_ALL) && count > 0) {
		r |= buf_append_str(out, " ALL ");
		r |= imap_seqset_format_nums(nums, count, out);
	}
	if ((ret & IMAP_SEARCH_RET_PARTIAL) && partial != NULL)
		r |= isk_esearch_partial(partial, nums, count, out);
	r |= buf_append_str(out, "\r\n");
	if (r != 0) {
		buf_truncate(out, start);
		return -1;
	}
	return 0;
}

void
imap_search_saved_set(struct imap_session *s, bool uid,
    struct imap_seqset *set)
{
	const struct imap_seqset *saved = &s->searchres;
	const char *error;

	imap_seqset_clear(set);
	for (unsigned i = 0; i < s->view.count; i++) {
		uint32_t u = s->view.msgs[i].uid;

		if (!imap_seqset_contains(saved, u))
			continue;
		/* Ascending either way, so each add is O(1); a set past
		 * the range limit keeps what fitted. */
		if (imap_seqset_add(set, uid ? u : i + 1, uid ? u : i + 1,
		    &error) < 0)
			break;
	}
}

/* RFC 5182 section 2.4: with MIN or MAX but neither ALL nor COUNT, only
 * those are saved; otherwise every match. nums are UIDs. */
static void
isk_save(struct imap_session *s, unsigned ret, const uint32_t *uids,
    size_t count)
{
	const char *error;

	/* Freed, not only emptied: an empty result holds no memory. */
	imap_seqset_deinit(&s->searchres);
	if (count == 0)
		return;
	if ((ret & (IMAP_SEARCH_RET_ALL | IMAP_SEARCH_RET_COUNT)) == 0 &&
	    (ret & (IMAP_SEARCH_RET_MIN | IMAP_SEARCH_RET_MAX)) != 0) {
		if (ret & IMAP_SEARCH_RET_MIN)
			(void)imap_seqset_add(&s->searchres, uids[0], uids[0],
			    &error);
		if (ret & IMAP_SEARCH_RET_MAX)
			(void)imap_seqset_add(&s->searchres, uids[count - 1],
			    uids[count - 1], &error);
		return;
	}
	for (size_t i = 0; i < count; i++)
		if (imap_seqset_add(&s->searchres, uids[i], uids[i],
		    &error) < 0)
			break;
}

/* What a SEARCH asked for besides its keys. */
struct isk_ask {
	unsigned ret;			/* IMAP_SEARCH_RET_* */
	struct imap_search_partial partial;
};

static void
isk_reply(struct imap_session *s, const struct imap_cmd *cmd,
    const unsigned char *state, const struct isk_ask *ask,
    struct imap_search **search)
{
	unsigned ret = ask->ret;
	uint32_t *nums, *uids;
	size_t n = 0;

	nums = xreallocarray(NULL, (size_t)s->view.count + 1, sizeof(*nums));
	uids = xreallocarray(NULL, (size_t)s->view.count + 1, sizeof(*uids));
	for (unsigned i = 0; i < s->view.count; i++) {
		if (state[i] != ISK_YES)
			continue;
		uids[n] = s->view.msgs[i].uid;
		nums[n++] = cmd->uid ? s->view.msgs[i].uid : i + 1;
	}
	if (ret & IMAP_SEARCH_RET_SAVE)
		isk_save(s, ret, uids, n);
	if (ret == 0) {
		buf_append_str(&s->out, "* SEARCH");
		for (size_t i = 0; i < n; i++) {
			buf_printf(&s->out, " %u", nums[i]);
			if (s->out.len >= ISK_OUT_FLUSH)
				imap_send(s);
		}
		buf_append_str(&s->out, "\r\n");
	} else if ((ret & ~(IMAP_SEARCH_RET_ESEARCH | IMAP_SEARCH_RET_SAVE))
	    != 0) {
		/* SAVE alone answers no ESEARCH (RFC 5182 section 2.4). */
		if (imap_search_esearch_partial(s->tag, cmd->uid, ret,
		    &ask->partial, nums, n, &s->out) < 0)
			log_warning("imap: user=<%s>, ESEARCH answer too large",
			    s->user);
	}
	imap_send(s);
	/* The context starts from the result just sent (RFC 5267 4.3);
	 * refused, the rest of the command stands (4.3.1). */
	if ((ret & IMAP_SEARCH_RET_UPDATE) &&
	    imap_context_add(s, cmd->uid, NULL, search, uids, n) < 0)
		imap_untagged(s, "NO [NOUPDATE \"%s\"] At most %u search "
		    "contexts at once", s->tag, (unsigned)IMAP_CONTEXT_MAX);
	free(nums);
	free(uids);
	imap_tagged(s, "OK", "%sSEARCH completed", cmd->uid ? "UID " : "");
}

/* A SEARCH with SAVE answered NO empties the saved result (RFC 5182
 * section 2.1); one answered BAD leaves it as it was. */
static void
isk_failed(struct imap_session *s, unsigned ret)
{
	if (ret & IMAP_SEARCH_RET_SAVE)
		imap_seqset_deinit(&s->searchres);
}

/* Whether the search program args[0..argc) starts with CHARSET. */
static bool
isk_has_charset(const struct imap_arg *args, unsigned argc)
{
	const char *key, *error;

	return argc > 0 && args[0].type == IMAP_ARG_ATOM &&
	    imap_arg_atom(&args[0], &key, &error) == 0 &&
	    strcasecmp(key, "CHARSET") == 0;
}

void
imap_cmd_search(struct imap_session *s, const struct imap_cmd *cmd)
{
	struct imap_search *search;
	unsigned char *state;
	struct store *st;
	struct isk_ask ask;
	const char *error;
	unsigned ret, used;
	int r;

	if (imap_search_parse_return_ctx(cmd->args, cmd->argc, &ret, &used,
	    &ask.partial, &error) < 0) {
		imap_bad(s, error);
		return;
	}
	/* The tag names the context (RFC 5267 section 4.3). */
	if ((ret & IMAP_SEARCH_RET_UPDATE) &&
	    imap_context_find(s, s->tag) != NULL) {
		imap_bad(s, "Tag reuse: a search context has this tag");
		return;
	}
	if (s->utf8_accept && isk_has_charset(cmd->args + used,
	    cmd->argc - used)) {
		/* RFC 6855 section 3: the client said it speaks UTF-8. */
		imap_bad(s, "No CHARSET after ENABLE UTF8=ACCEPT");
		return;
	}
	/* IMAP4rev2 answers every SEARCH with ESEARCH, RETURN () being
	 * RETURN (ALL) (RFC 9051 6.4.4). */
	if (s->rev2 && ret == 0)
		ret = IMAP_SEARCH_RET_ALL | IMAP_SEARCH_RET_ESEARCH;
	/* Expunges only for UID SEARCH: sequence numbers in the answer
	 * must mean what the client thinks they mean (RFC 3501 7.4.1). */
	if (imap_view_sync(s, cmd->uid) < 0) {
		isk_failed(s, ret);
		return;
	}
	r = imap_search_parse_saved(cmd->args + used, cmd->argc - used,
	    s->view.count, s->view.count > 0 ?
	    s->view.msgs[s->view.count - 1].uid : 0, &s->searchres, &search,
	    &error);
	if (r == IMAP_SEARCH_PARSE_BADCHARSET) {
		isk_failed(s, ret);
		imap_tagged(s, "NO", "[BADCHARSET (US-ASCII UTF-8)] %s", error);
		return;
	}
	if (r < 0) {
		imap_bad(s, error);
		return;
	}
	if ((st = imap_store(s)) == NULL ||
	    imap_view_complete(s, imap_search_needs(search)) < 0) {
		isk_failed(s, ret);
		imap_search_free(&search);
		return;
	}
	state = xcalloc((size_t)s->view.count + 1, 1);
	ask.ret = ret;
	if (imap_search_run(s, st, search, state) == 0)
		isk_reply(s, cmd, state, &ask, &search);
	else
		isk_failed(s, ret);
	free(state);
	imap_search_free(&search);
}
