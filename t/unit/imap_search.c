/*
 * Unit tests for server/imap/imap_search.c: the key parser (every key of
 * RFC 3501 6.4.4, CHARSET, syntax errors, the nesting limit at N and
 * N + 1), the matcher against index records built by msg_parse and
 * messages read through a counting reader in chunks of every small size
 * (so matches across chunk boundaries, base64 and quoted-printable text
 * parts, encoded words, the partial header cache), a 100,000-message run
 * proving header keys never open a message, and SEARCH / UID SEARCH
 * driven by bytes through the engine against a real Maildir.
 */
#include "config.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "compat/compat.h"
#include "mindex.h"
#include "msg.h"
#include "store.h"
#include "user.h"
#include "xmalloc.h"
#include "server/imap/imap_parser.h"
#include "server/imap/imap_search.h"
#include "server/imap/imap_session.h"
#include "tap.h"
#include "imap_harness.h"

/*
 * Parsing through the real command parser.
 */

static int
t_cont(void *ctx, uint64_t size)
{
	(void)ctx;
	(void)size;
	return 0;
}

static const struct imap_parser_callbacks t_pcb = { .need_continuation =
    t_cont };
static struct imap_parser *parser;

/* Parse "t SEARCH keys": the imap_search_parse result; *s_r on success. */
static int
t_parse(const char *keys, uint32_t msgs, uint32_t uid_max,
    struct imap_search **s_r, const char **error_r)
{
	struct imap_cmd *cmd;
	struct buf line;
	size_t used = 0;
	int r;

	buf_init(&line, 1 << 20);
	buf_printf(&line, "t SEARCH %s\r\n", keys);
	r = 0;
	while (used < line.len && r == 0) {
		used += imap_parser_input(parser, line.data + used,
		    line.len - used);
		r = imap_parser_next(parser, &cmd);
	}
	buf_free(&line);
	if (r != 1) {
		*s_r = NULL;
		*error_r = "command parser refused it";
		return -99;
	}
	return imap_search_parse(cmd->args, cmd->argc, msgs, uid_max, s_r,
	    error_r);
}

/* The command "t SEARCH text" through the real parser, or NULL. */
static struct imap_cmd *
t_command(const char *text)
{
	struct imap_cmd *cmd = NULL;
	struct buf line;
	size_t used = 0;
	int r = 0;

	buf_init(&line, 1 << 20);
	buf_printf(&line, "t SEARCH %s\r\n", text);
	while (used < line.len && r == 0) {
		used += imap_parser_input(parser, line.data + used,
		    line.len - used);
		r = imap_parser_next(parser, &cmd);
	}
	buf_free(&line);
	return r == 1 ? cmd : NULL;
}

static void
test_return(void)
{
	static const struct {
		const char *text;
		int r;
		unsigned ret, used;
	} cases[] = {
		{ "ALL", 0, 0, 0 },
		{ "RETURN () ALL", 0, IMAP_SEARCH_RET_ESEARCH |
		    IMAP_SEARCH_RET_ALL, 2 },
		{ "return (min Max) ALL", 0, IMAP_SEARCH_RET_ESEARCH |
		    IMAP_SEARCH_RET_MIN | IMAP_SEARCH_RET_MAX, 2 },
		{ "RETURN (COUNT SAVE COUNT) CHARSET UTF-8 ALL", 0,
		    IMAP_SEARCH_RET_ESEARCH | IMAP_SEARCH_RET_COUNT |
		    IMAP_SEARCH_RET_SAVE, 2 },
		{ "RETURN (SAVE)", 0, IMAP_SEARCH_RET_ESEARCH |
		    IMAP_SEARCH_RET_SAVE, 2 },
		{ "RETURN (ALL MIN MAX COUNT SAVE) 1", 0, 0x11f, 2 },
		{ "RETURN ALL", -1, 0, 0 },
		{ "RETURN", -1, 0, 0 },
		{ "RETURN (PARTIAL 1:5) ALL", -1, 0, 0 },
		{ "RETURN (\"MIN\") ALL", -1, 0, 0 },
		{ "RETURN ((MIN)) ALL", -1, 0, 0 },
		{ "\"RETURN\" (MIN) ALL", 0, 0, 0 },
	};
	const char *error;
	unsigned ret, used;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct imap_cmd *cmd = t_command(cases[i].text);
		int r;

		if (cmd == NULL) {
			ok(0, "RETURN: %s: parses", cases[i].text);
			continue;
		}
		r = imap_search_parse_return(cmd->args, cmd->argc, &ret, &used,
		    &error);
		ok(r == cases[i].r && (r < 0 || (ret == cases[i].ret &&
		    used == cases[i].used)), "RETURN: %s", cases[i].text);
	}
}

static void
test_esearch_format(void)
{
	static const uint32_t nums[] = { 2, 3, 4, 9, 11, 12 };
	struct buf b;

	buf_init(&b, 4096);
	(void)imap_search_esearch("a1", false, IMAP_SEARCH_RET_ESEARCH |
	    IMAP_SEARCH_RET_ALL | IMAP_SEARCH_RET_MIN | IMAP_SEARCH_RET_MAX |
	    IMAP_SEARCH_RET_COUNT, nums, 6, &b);
	is_string(buf_cstr(&b), "* ESEARCH (TAG \"a1\") MIN 2 MAX 12 "
	    "COUNT 6 ALL 2:4,9,11:12\r\n", "ESEARCH: every option");
	buf_truncate(&b, 0);
	(void)imap_search_esearch("t", true, IMAP_SEARCH_RET_ESEARCH |
	    IMAP_SEARCH_RET_ALL | IMAP_SEARCH_RET_MIN | IMAP_SEARCH_RET_MAX |
	    IMAP_SEARCH_RET_COUNT, nums, 0, &b);
	is_string(buf_cstr(&b), "* ESEARCH (TAG \"t\") UID COUNT 0\r\n",
	    "ESEARCH: no match keeps COUNT 0 only");
	buf_truncate(&b, 0);
	(void)imap_search_esearch("q\"\\", false, IMAP_SEARCH_RET_ESEARCH |
	    IMAP_SEARCH_RET_MAX, nums, 1, &b);
	is_string(buf_cstr(&b), "* ESEARCH (TAG \"q\\\"\\\\\") MAX 2\r\n",
	    "ESEARCH: quote and backslash escaped in the tag");
	buf_free(&b);
	/* A maximum exactly the line's length fits; one byte less not. */
	buf_init(&b, strlen("* ESEARCH (TAG \"a\") ALL 2:4\r\n"));
	is_int(imap_search_esearch("a", false, IMAP_SEARCH_RET_ALL, nums, 3,
	    &b), 0, "ESEARCH: line of exactly the maximum fits");
	buf_free(&b);
	buf_init(&b, strlen("* ESEARCH (TAG \"a\") ALL 2:4\r\n") - 1);
	ok(imap_search_esearch("a", false, IMAP_SEARCH_RET_ALL, nums, 3,
	    &b) < 0 && b.len == 0, "ESEARCH: one byte over: -1, out as before");
	buf_free(&b);
}

/*
 * Messages: an index record from msg_parse, and a reader in chunks.
 */

struct t_msg {
	struct msg_info info;
	struct mindex_msg m;
	const char *data;
	size_t len;
	size_t chunk;		/* bytes per read */
	size_t off;
	int opens, closes;
	bool fail;
};

static void
t_msg_init(struct t_msg *t, const char *data, uint32_t uid, uint32_t flags)
{
	memset(t, 0, sizeof(*t));
	t->data = data;
	t->len = strlen(data);
	msg_parse((const unsigned char *)data, t->len, &t->info);
	t->m.uid = uid;
	t->m.flags = flags;
	t->m.vsize = t->info.vsize;
	t->m.internal_date = 1700000000;	/* 2023-11-14 22:13:20 UTC */
	t->m.cache_flags = t->info.headers_partial ?
	    MINDEX_C_HEADERS_PARTIAL : 0;
	t->m.headers = t->info.headers.data;
	t->m.headers_len = t->info.headers.len;
	t->m.mime = t->info.mime.data;
	t->m.mime_len = t->info.mime.len;
	t->m.keywords = "";
	t->chunk = IMAP_SEARCH_CHUNK;
}

static int
t_open(void *ctx, const char **error_r)
{
	struct t_msg *t = ctx;

	t->opens++;
	t->off = 0;
	if (t->fail) {
		*error_r = "cannot open";
		return -1;
	}
	return 0;
}

static int
t_read(void *ctx, unsigned char *buf, size_t size, size_t *len_r,
    const char **error_r)
{
	struct t_msg *t = ctx;
	size_t n = t->len - t->off;

	(void)error_r;
	if (n == 0)
		return 0;
	if (n > t->chunk)
		n = t->chunk;
	if (n > size)
		n = size;
	memcpy(buf, t->data + t->off, n);
	t->off += n;
	*len_r = n;
	return 1;
}

static void
t_close(void *ctx)
{
	struct t_msg *t = ctx;

	t->closes++;
}

static const struct imap_search_reader t_reader = { t_open, t_read,
    t_close };

/* keys against t: 1, 0, -1 read error, -2 parse error. */
static int
t_match(const char *keys, struct t_msg *t, uint32_t msn)
{
	struct imap_search *s;
	const char *error;
	int r;

	if (t_parse(keys, 10, 100, &s, &error) != IMAP_SEARCH_PARSE_OK) {
		diag("parse of %s: %s", keys, error);
		return -2;
	}
	r = imap_search_match_message(s, msn, &t->m, &t_reader, t, &error);
	imap_search_free(&s);
	return r;
}

static const char msg1[] =
    "Date: Tue, 14 Nov 2023 23:30:00 -0500\r\n"
    "From: Bob Example <bob@example.net>\r\n"
    "To: Carol <carol@example.org>\r\n"
    "Cc: dave@example.com\r\n"
    "Bcc: eve@example.com\r\n"
    "Subject: =?ISO-8859-1?Q?Caf=E9?= =?UTF-8?B?IG3DvHNsaQ==?= menu\r\n"
    "X-Custom: Zebra stripes\r\n"
    "\r\n"
    "Hello World, this is the body.\r\n";

static void
test_keys(void)
{
	struct t_msg t;
	int v;

	t_msg_init(&t, msg1, 7, MINDEX_F_SEEN | MINDEX_F_FLAGGED);
	t.m.keywords = "work\0$Junk\0";
	t.m.keywords_len = 11;
	v = (int)t.m.vsize;

	is_int(t_match("ALL", &t, 3), 1, "ALL");
	is_int(t_match("SEEN", &t, 3), 1, "SEEN");
	is_int(t_match("UNSEEN", &t, 3), 0, "UNSEEN");
	is_int(t_match("FLAGGED", &t, 3), 1, "FLAGGED");
	is_int(t_match("UNFLAGGED", &t, 3), 0, "UNFLAGGED");
	is_int(t_match("ANSWERED", &t, 3), 0, "ANSWERED");
	is_int(t_match("UNANSWERED", &t, 3), 1, "UNANSWERED");
	is_int(t_match("DELETED", &t, 3), 0, "DELETED");
	is_int(t_match("UNDELETED", &t, 3), 1, "UNDELETED");
	is_int(t_match("DRAFT", &t, 3), 0, "DRAFT");
	is_int(t_match("UNDRAFT", &t, 3), 1, "UNDRAFT");
	is_int(t_match("RECENT", &t, 3), 0, "RECENT: nothing is recent");
	is_int(t_match("NEW", &t, 3), 0, "NEW");
	is_int(t_match("OLD", &t, 3), 1, "OLD");
	is_int(t_match("KEYWORD work", &t, 3), 1, "KEYWORD present");
	is_int(t_match("KEYWORD $JUNK", &t, 3), 1, "KEYWORD any case");
	is_int(t_match("KEYWORD play", &t, 3), 0, "KEYWORD absent");
	is_int(t_match("UNKEYWORD play", &t, 3), 1, "UNKEYWORD absent");
	is_int(t_match("UNKEYWORD work", &t, 3), 0, "UNKEYWORD present");
	is_int(t_match("KEYWORD $Forwarded", &t, 3), 0,
	    "KEYWORD $Forwarded without the flag");
	t.m.flags |= MINDEX_F_FORWARDED;
	is_int(t_match("KEYWORD $Forwarded", &t, 3), 1,
	    "KEYWORD $Forwarded is the flag bit");
	t.m.flags &= ~MINDEX_F_FORWARDED;
	{
		char k[64];

		snprintf(k, sizeof(k), "LARGER %d", v - 1);
		is_int(t_match(k, &t, 3), 1, "LARGER size-1");
		snprintf(k, sizeof(k), "LARGER %d", v);
		is_int(t_match(k, &t, 3), 0, "LARGER size");
		snprintf(k, sizeof(k), "SMALLER %d", v + 1);
		is_int(t_match(k, &t, 3), 1, "SMALLER size+1");
		snprintf(k, sizeof(k), "SMALLER %d", v);
		is_int(t_match(k, &t, 3), 0, "SMALLER size");
	}
	is_int(t_match("ON 14-Nov-2023", &t, 3), 1, "ON the day (UTC)");
	is_int(t_match("ON 15-Nov-2023", &t, 3), 0, "ON the next day");
	is_int(t_match("BEFORE 15-Nov-2023", &t, 3), 1, "BEFORE next day");
	is_int(t_match("BEFORE 14-Nov-2023", &t, 3), 0, "BEFORE the day");
	is_int(t_match("SINCE 14-Nov-2023", &t, 3), 1, "SINCE the day");
	is_int(t_match("SINCE \"15-nov-2023\"", &t, 3), 0,
	    "SINCE the next day (quoted, any case)");
	/* 23:30 -0500 is 04:30 UTC on the 15th: the zone is disregarded. */
	is_int(t_match("SENTON 14-Nov-2023", &t, 3), 1, "SENTON local day");
	is_int(t_match("SENTON 15-Nov-2023", &t, 3), 0, "SENTON UTC day");
	is_int(t_match("SENTBEFORE 15-Nov-2023", &t, 3), 1, "SENTBEFORE");
	is_int(t_match("SENTBEFORE 14-Nov-2023", &t, 3), 0, "SENTBEFORE day");
	is_int(t_match("SENTSINCE 14-Nov-2023", &t, 3), 1, "SENTSINCE");
	is_int(t_match("SENTSINCE 15-Nov-2023", &t, 3), 0, "SENTSINCE next");

	/* WITHIN (RFC 5032): against the moment of the search. */
	{
		int64_t saved = t.m.internal_date;
		char k[64];

		t.m.internal_date = (int64_t)time(NULL) - 1000;
		is_int(t_match("YOUNGER 3600", &t, 3), 1, "YOUNGER 3600");
		is_int(t_match("OLDER 3600", &t, 3), 0, "not OLDER 3600");
		is_int(t_match("OLDER 100", &t, 3), 1, "OLDER 100");
		is_int(t_match("YOUNGER 100", &t, 3), 0, "not YOUNGER 100");
		is_int(t_match("NOT OLDER 100", &t, 3), 0, "NOT OLDER 100");
		is_int(t_match("OLDER 0", &t, 3), -2, "OLDER 0: BAD");
		is_int(t_match("YOUNGER x", &t, 3), -2, "YOUNGER x: BAD");
		is_int(t_match("OLDER", &t, 3), -2, "OLDER alone: BAD");
		t.m.internal_date = saved;

		/* SAVEDATE (RFC 8514): the save date's day, UTC. */
		is_int(t_match("SAVEDATESUPPORTED", &t, 3), 1,
		    "SAVEDATESUPPORTED");
		t.m.save_date = 0;
		is_int(t_match("SAVEDBEFORE 1-Jan-2100", &t, 3), 0,
		    "no save date: no SAVEDBEFORE");
		is_int(t_match("NOT SAVEDON 1-Jan-2100", &t, 3), 1,
		    "no save date: NOT SAVEDON");
		t.m.save_date = 1700000000;	/* 14-Nov-2023 22:13:20 */
		snprintf(k, sizeof(k), "SAVEDON 14-Nov-2023");
		is_int(t_match(k, &t, 3), 1, "SAVEDON the day");
		is_int(t_match("SAVEDON 15-Nov-2023", &t, 3), 0,
		    "SAVEDON the next day");
		is_int(t_match("SAVEDBEFORE 15-Nov-2023", &t, 3), 1,
		    "SAVEDBEFORE the next day");
		is_int(t_match("SAVEDBEFORE 14-Nov-2023", &t, 3), 0,
		    "SAVEDBEFORE the day");
		is_int(t_match("SAVEDSINCE 14-Nov-2023", &t, 3), 1,
		    "SAVEDSINCE the day");
		is_int(t_match("SAVEDSINCE 15-Nov-2023", &t, 3), 0,
		    "SAVEDSINCE the next day");
		t.m.save_date = 0;
	}
	is_int(t_match("FROM BOB@example", &t, 3), 1, "FROM any case");
	is_int(t_match("FROM carol", &t, 3), 0, "FROM other");
	is_int(t_match("TO carol", &t, 3), 1, "TO");
	is_int(t_match("TO bob", &t, 3), 0, "TO other");
	is_int(t_match("CC dave", &t, 3), 1, "CC");
	is_int(t_match("CC carol", &t, 3), 0, "CC other");
	is_int(t_match("BCC eve", &t, 3), 1, "BCC");
	is_int(t_match("BCC dave", &t, 3), 0, "BCC other");
	is_int(t_match("SUBJECT menu", &t, 3), 1, "SUBJECT");
	is_int(t_match("SUBJECT dinner", &t, 3), 0, "SUBJECT other");
	is_int(t_match("HEADER Subject MENU", &t, 3), 1, "HEADER cached");
	is_int(t.opens, 0, "no key so far opened the message");
	is_int(t_match("HEADER X-Custom stripe", &t, 3), 1,
	    "HEADER on a field the index does not cache");
	is_int(t.opens, 1, "which read the message");
	is_int(t.closes, 1, "and closed it");
	is_int(t_match("HEADER X-Custom tiger", &t, 3), 0, "HEADER no match");
	is_int(t_match("HEADER X-Custom \"\"", &t, 3), 1,
	    "HEADER with an empty string: the field exists");
	is_int(t_match("HEADER X-Missing \"\"", &t, 3), 0,
	    "HEADER with an empty string: no such field");
	is_int(t_match("BODY \"world, THIS\"", &t, 3), 1, "BODY");
	is_int(t_match("BODY carol", &t, 3), 0, "BODY does not see headers");
	is_int(t_match("TEXT carol", &t, 3), 1, "TEXT sees headers");
	is_int(t_match("TEXT \"the body\"", &t, 3), 1, "TEXT sees the body");
	is_int(t_match("TEXT giraffe", &t, 3), 0, "TEXT no match");
	is_int(t_match("3", &t, 3), 1, "sequence number");
	is_int(t_match("1:2,4:*", &t, 3), 0, "sequence set without it");
	is_int(t_match("2:*", &t, 3), 1, "sequence set with *");
	is_int(t_match("UID 7", &t, 3), 1, "UID");
	is_int(t_match("UID 1:6,8:*", &t, 3), 0, "UID set without it");
	is_int(t_match("NOT SEEN", &t, 3), 0, "NOT");
	is_int(t_match("NOT NOT SEEN", &t, 3), 1, "NOT NOT");
	is_int(t_match("OR ANSWERED DRAFT", &t, 3), 0, "OR neither");
	is_int(t_match("OR ANSWERED FLAGGED", &t, 3), 1, "OR second");
	is_int(t_match("(SEEN FLAGGED) (UID 7)", &t, 3), 1, "lists: AND");
	is_int(t_match("(SEEN DRAFT)", &t, 3), 0, "list with a miss");
	is_int(t_match("CHARSET UTF-8 SUBJECT {5+}\r\ncaf\xc3\xa9", &t, 3), 1,
	    "CHARSET UTF-8; ISO-8859-1 encoded word decoded");
	is_int(t_match("charset us-ascii FROM bob", &t, 3), 1,
	    "CHARSET US-ASCII, any case");
	is_int(t_match("SUBJECT {12+}\r\nCAF\xc3\x89 M\xc3\x9cSLI", &t, 3), 1,
	    "Latin-1 letters of UTF-8 match in any case; adjacent encoded "
	    "words joined");
	t.opens = 0;
	is_int(t_match("SEEN UNSEEN BODY hello", &t, 3), 0,
	    "cheap keys decide first");
	is_int(t_match("OR SEEN BODY hello", &t, 3), 1, "OR decided by SEEN");
	is_int(t.opens, 0, "without reading the message");
	is_int(t_match("NOT BODY hello", &t, 3), 0, "NOT BODY");
	is_int(t_match("UNSEEN OR BODY x TEXT y", &t, 3), 0,
	    "AND with a no before the body keys (any order)");
	is_int(t.opens, 1, "only NOT BODY read the message");
	t.fail = true;
	t.opens = t.closes = 0;
	is_int(t_match("BODY hello", &t, 3), -1, "a read error is -1");
	ok(t.opens == 1 && t.closes == 0, "a failed open is not closed");
	t.fail = false;
	msg_info_free(&t.info);
}

/* Quoted-printable decoded as lib/cte does it (as FETCH BINARY and
 * PREVIEW read it too): a soft line break with white space after its
 * "=", LF or CRLF, and white space at a line's end dropped. A record
 * adopted unread has no cached fields: header keys read the message. */
static void
test_cte_shared(void)
{
	static const char qp[] =
	    "Subject: qp\n"
	    "Content-Type: text/plain\n"
	    "Content-Transfer-Encoding: quoted-printable\n"
	    "\n"
	    "A soft break with blanks: mari= \t\n"
	    "mba; and with CRLF: glocken= \r\n"
	    "spiel; trailing blanks   \n"
	    "go.\n";
	struct t_msg t;
	bool good = true;

	t_msg_init(&t, qp, 1, 0);
	for (size_t c = 1; c <= 7; c++) {
		t.chunk = c;
		good = good && t_match("BODY marimba", &t, 1) == 1 &&
		    t_match("BODY glockenspiel", &t, 1) == 1 &&
		    t_match("BODY \"trailing blanks\"", &t, 1) == 1 &&
		    t_match("BODY \"blanks \"", &t, 1) == 0 &&
		    t_match("BODY mari=", &t, 1) == 0;
	}
	ok(good, "quoted-printable: soft breaks after white space joined, "
	    "blanks at line ends gone, every chunk size from 1 to 7");
	t.m.cache_flags |= MINDEX_C_UNPARSED;
	t.m.headers_len = 0;
	t.opens = 0;
	is_int(t_match("SUBJECT qp", &t, 1), 1,
	    "an unparsed record: SUBJECT matched from the message");
	is_int(t.opens, 1, "which was read for it");
	msg_info_free(&t.info);
}

/* A needle across every chunk boundary: chunk sizes 1 to 9. */
static void
test_chunks(void)
{
	static const char b64[] =
	    "Subject: parts\n"
	    "MIME-Version: 1.0\n"
	    "Content-Type: multipart/mixed; boundary=XX\n"
	    "\n"
	    "--XX\n"
	    "Content-Type: text/plain; charset=utf-8\n"
	    "Content-Transfer-Encoding: base64\n"
	    "\n"
	    "VGhlIHNlY3JldCB3b3JkIGlz\n"
	    "IHh5bG9waG9uZS4=\n"
	    "--XX\n"
	    "Content-Type: text/plain\n"
	    "Content-Transfer-Encoding: quoted-printable\n"
	    "\n"
	    "A soft break in the middle: marim=\n"
	    "ba, and an escape: =47lockenspiel=3D.\n"
	    "--XX\n"
	    "Content-Type: application/octet-stream\n"
	    "Content-Transfer-Encoding: base64\n"
	    "\n"
	    "dHJpYW5nbGU=\n"
	    "--XX--\n";
	static const char *const yes[] = { "xylophone", "\"secret word\"",
	    "marimba", "glockenspiel=", "dHJpYW5nbGU", "\"is xylo\"", NULL };
	static const char *const no[] = { "VGhl", "marim=", "=47lock",
	    "triangle", NULL };
	struct t_msg t;
	char keys[128];
	bool good = true;

	t_msg_init(&t, b64, 1, 0);
	for (size_t c = 1; c <= 9; c++) {
		t.chunk = c;
		for (size_t i = 0; yes[i] != NULL; i++) {
			snprintf(keys, sizeof(keys), "BODY %s", yes[i]);
			if (t_match(keys, &t, 1) != 1) {
				diag("chunk %zu: %s not found", c, keys);
				good = false;
			}
		}
		for (size_t i = 0; no[i] != NULL; i++) {
			snprintf(keys, sizeof(keys), "BODY %s", no[i]);
			if (t_match(keys, &t, 1) != 0) {
				diag("chunk %zu: %s found", c, keys);
				good = false;
			}
		}
	}
	ok(good, "base64 and quoted-printable text parts decoded, others "
	    "raw, with every chunk size from 1 to 9");
	msg_info_free(&t.info);

	t_msg_init(&t, "Subject: x\n\n0123456789abcdefghij\n", 1, 0);
	good = true;
	for (size_t c = 1; c <= 12; c++) {
		t.chunk = c;
		for (size_t start = 0; start < 15; start++) {
			snprintf(keys, sizeof(keys), "BODY %.6s",
			    "0123456789abcdefghij" + start);
			good = good && t_match(keys, &t, 1) == 1;
		}
		good = good && t_match("BODY 0123456789abcdefghik", &t, 1) == 0;
	}
	ok(good, "raw body: every 6-byte window found at every chunk size");
	t.chunk = 1;
	is_int(t_match("BODY aaab", &t, 1), 0, "no false match");
	msg_info_free(&t.info);

	t_msg_init(&t, "Subject: x\n\naaaab\n", 1, 0);
	t.chunk = 1;
	is_int(t_match("BODY aaab", &t, 1), 1,
	    "overlapping prefix (KMP fallback) found byte by byte");
	msg_info_free(&t.info);

	t_msg_init(&t, "Subject: no body, no blank line\nX-A: tail", 1, 0);
	t.chunk = 1;
	is_int(t_match("HEADER X-A tail", &t, 1), 1,
	    "a last field without a line end");
	msg_info_free(&t.info);

	t_msg_init(&t, "X-Folded: one\r\n two\r\n\tthree\r\n\r\nbody\r\n", 1,
	    0);
	t.chunk = 1;
	is_int(t_match("HEADER x-folded \"one two\tthree\"", &t, 1), 1,
	    "folded field unfolded");
	is_int(t_match("HEADER x-folded body", &t, 1), 0,
	    "the body is not part of the field");
	msg_info_free(&t.info);
}

static void
t_decode_is(const char *in, const char *want, const char *name)
{
	struct buf dec;

	buf_init(&dec, 1024);
	imap_search_decode_header((const unsigned char *)in, strlen(in),
	    &dec);
	is_string(buf_cstr(&dec), want, "%s", name);
	buf_free(&dec);
}

static void
test_encoded_words(void)
{
	t_decode_is("=?UTF-8?B?w6RiYw==?=", "\xc3\xa4" "bc", "B, UTF-8");
	t_decode_is("=?utf-8?q?a_b=3Dc?=", "a b=c", "Q, underscore, escape");
	t_decode_is("=?ISO-8859-1?Q?caf=E9?=", "caf\xc3\xa9",
	    "ISO-8859-1 to UTF-8");
	t_decode_is("=?us-ascii*en?Q?plain?=", "plain", "RFC 2231 language");
	t_decode_is("=?UTF-8?Q?a?= \t =?UTF-8?Q?b?=", "ab",
	    "white space between encoded words dropped");
	t_decode_is("=?UTF-8?Q?a?= x =?UTF-8?Q?b?=", "a x b",
	    "text between encoded words kept");
	t_decode_is("=?KOI8-R?B?8NLJ18XU?=", "=?KOI8-R?B?8NLJ18XU?=",
	    "another charset stays as sent");
	t_decode_is("=?UTF-8?X?abc?=", "=?UTF-8?X?abc?=", "unknown encoding");
	t_decode_is("=?UTF-8?Q?no end", "=?UTF-8?Q?no end", "unterminated");
	t_decode_is("=?UTF-8?Q?a b?=", "=?UTF-8?Q?a b?=", "space inside");
	t_decode_is("x =?UTF-8?Q?y?=", "x y", "text then a word");
	t_decode_is("a = b ?= c", "a = b ?= c", "not a word");
}

static void
test_syntax(void)
{
	static const struct {
		const char *keys;
		int want;
		const char *name;
	} cases[] = {
		{ "FOO", IMAP_SEARCH_PARSE_BAD, "unknown key" },
		{ "FROM", IMAP_SEARCH_PARSE_BAD, "FROM without a string" },
		{ "HEADER Subject", IMAP_SEARCH_PARSE_BAD, "HEADER w/o string" },
		{ "BEFORE 32-Jan-2020", IMAP_SEARCH_PARSE_BAD, "day 32" },
		{ "BEFORE 29-Feb-2023", IMAP_SEARCH_PARSE_BAD, "29 Feb 2023" },
		{ "BEFORE 29-Feb-2024", IMAP_SEARCH_PARSE_OK, "29 Feb 2024" },
		{ "ON 1-Foo-2020", IMAP_SEARCH_PARSE_BAD, "bad month" },
		{ "ON 1-Jan-20", IMAP_SEARCH_PARSE_BAD, "two-digit year" },
		{ "ON 01-Jan-2020", IMAP_SEARCH_PARSE_OK, "two-digit day" },
		{ "LARGER x", IMAP_SEARCH_PARSE_BAD, "LARGER not a number" },
		{ "SMALLER", IMAP_SEARCH_PARSE_BAD, "SMALLER w/o number" },
		{ "UID", IMAP_SEARCH_PARSE_BAD, "UID w/o set" },
		{ "UID 0", IMAP_SEARCH_PARSE_BAD, "UID 0" },
		{ "1:x", IMAP_SEARCH_PARSE_BAD, "bad sequence set" },
		{ "$", IMAP_SEARCH_PARSE_OK, "$ with nothing saved" },
		{ "UID $", IMAP_SEARCH_PARSE_OK, "UID $" },
		{ "$,1", IMAP_SEARCH_PARSE_BAD, "$ with more: BAD" },
		{ "UID 1,$", IMAP_SEARCH_PARSE_BAD, "UID 1,$: BAD" },
		{ "NOT", IMAP_SEARCH_PARSE_BAD, "NOT w/o key" },
		{ "OR SEEN", IMAP_SEARCH_PARSE_BAD, "OR with one key" },
		{ "()", IMAP_SEARCH_PARSE_BAD, "empty list" },
		{ "\"SEEN\"", IMAP_SEARCH_PARSE_BAD, "a string as a key" },
		{ "KEYWORD \"x y\"", IMAP_SEARCH_PARSE_BAD, "keyword string" },
		{ "CHARSET", IMAP_SEARCH_PARSE_BAD, "CHARSET w/o name" },
		{ "CHARSET UTF-8", IMAP_SEARCH_PARSE_BAD, "CHARSET w/o key" },
		{ "CHARSET ISO-8859-2 ALL", IMAP_SEARCH_PARSE_BADCHARSET,
		    "another charset: BADCHARSET" },
		{ "ALL CHARSET UTF-8", IMAP_SEARCH_PARSE_BAD,
		    "CHARSET not first" },
		{ "SEEN (UNSEEN (FLAGGED OR DRAFT 1:*))", IMAP_SEARCH_PARSE_OK,
		    "nested lists" },
	};
	struct imap_search *s;
	const char *error;
	int r;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		r = t_parse(cases[i].keys, 10, 100, &s, &error);
		is_int(r, cases[i].want, "%s", cases[i].name);
		ok(r == IMAP_SEARCH_PARSE_OK ? s != NULL : s == NULL &&
		    error != NULL && error[0] != '\0', "%s: result and error",
		    cases[i].name);
		imap_search_free(&s);
	}
	r = t_parse("", 10, 100, &s, &error);
	ok(r != IMAP_SEARCH_PARSE_OK && s == NULL, "no key at all");
}

/* NOT^n ALL and (^n ... ) deep, at the limit and one past it. */
static void
test_depth(void)
{
	struct imap_search *s;
	const char *error;
	struct buf k;
	int r;

	for (int extra = 0; extra <= 1; extra++) {
		buf_init(&k, 1 << 16);
		for (int i = 0; i < IMAP_SEARCH_DEPTH_MAX + extra; i++)
			buf_append_str(&k, i % 2 ? "NOT " : "OR ALL ");
		buf_append_str(&k, "SEEN");
		r = t_parse(buf_cstr(&k), 10, 100, &s, &error);
		is_int(r, extra ? IMAP_SEARCH_PARSE_BAD : IMAP_SEARCH_PARSE_OK,
		    "%d levels of NOT and OR: %s", IMAP_SEARCH_DEPTH_MAX +
		    extra, extra ? "BAD" : "parses");
		if (extra)
			is_string(error, "Search keys nested too deeply",
			    "the error says why");
		else {
			struct t_msg t;
			/* 64 levels, alternating OR ALL and NOT: the
			 * innermost NOT SEEN is under 32 NOTs (even). */
			t_msg_init(&t, msg1, 1, MINDEX_F_SEEN);
			is_int(imap_search_match_index(s, 1, &t.m), 1,
			    "and evaluates");
			msg_info_free(&t.info);
		}
		imap_search_free(&s);
		buf_free(&k);
	}
	buf_init(&k, 1 << 16);
	for (int i = 0; i < 2000; i++)
		buf_append_str(&k, "NOT ");
	buf_append_str(&k, "ALL");
	r = t_parse(buf_cstr(&k), 10, 100, &s, &error);
	is_int(r, IMAP_SEARCH_PARSE_BAD, "2000 NOTs: BAD, no deep recursion");
	buf_free(&k);
}

/* A field over MSG_CACHE_FIELD_MAX leaves the cache partial: a field
 * missing from it is looked for in the message. */
static void
test_partial(void)
{
	struct buf m;
	struct t_msg t;

	buf_init(&m, 1 << 20);
	buf_append_str(&m, "Subject: short\nTo: ");
	for (int i = 0; i < 1000; i++)
		buf_printf(&m, "user%d@example.org, ", i);
	buf_append_str(&m, "zed@example.org\nCc: cached@example.org\n\nbody\n");
	t_msg_init(&t, buf_cstr(&m), 1, 0);
	ok(t.m.cache_flags & MINDEX_C_HEADERS_PARTIAL,
	    "a long To: makes the cache partial");
	t.chunk = 7;
	is_int(t_match("CC cached", &t, 1), 1, "a cached field still matches");
	is_int(t.opens, 0, "from the cache");
	is_int(t_match("TO zed@", &t, 1), 1, "the uncached To: is found");
	is_int(t.opens, 1, "in the message");
	is_int(t_match("SUBJECT long", &t, 1), 0,
	    "a cached field without a match: no");
	is_int(t.opens, 1, "decided by the cache");
	is_int(t_match("FROM nobody", &t, 1), 0, "a field in neither");
	is_int(t.opens, 2, "needed the message (the cache is partial)");
	msg_info_free(&t.info);
	buf_free(&m);
}

/* 100,000 messages, header keys on cached fields: no message opened. */
static void
test_many(void)
{
	static const char *const keys[] = {
		"FROM bob SUBJECT menu UNSEEN",
		"OR TO carol CC nobody",
		"NOT HEADER Message-ID x SENTSINCE 1-Jan-2020 LARGER 10",
	};
	static const unsigned want[] = { 50000, 100000, 100000 };
	struct imap_search *s;
	struct t_msg t;
	const char *error;
	unsigned hits;
	int r;
	bool all = true;

	t_msg_init(&t, msg1, 1, 0);
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		clock_t c0 = clock();

		if (t_parse(keys[k], 100000, 100000, &s, &error) != 0)
			bail("parse: %s", error);
		ok(!imap_search_needs_message(s), "%s: index only", keys[k]);
		hits = 0;
		t.opens = 0;
		for (uint32_t i = 1; i <= 100000; i++) {
			t.m.uid = i;
			t.m.flags = i % 2 ? MINDEX_F_SEEN : 0;
			r = imap_search_match_message(s, i, &t.m, &t_reader,
			    &t, &error);
			all = all && r >= 0;
			hits += r == 1;
		}
		is_int(hits, want[k], "%s: %u of 100000 match", keys[k],
		    want[k]);
		is_int(t.opens, 0, "%s: no message opened", keys[k]);
		diag("%s: %.2f s of CPU", keys[k],
		    (double)(clock() - c0) / CLOCKS_PER_SEC);
		imap_search_free(&s);
	}
	ok(all, "no errors");
	if (t_parse("HEADER X-Custom zebra", 1, 1, &s, &error) != 0)
		bail("parse: %s", error);
	ok(imap_search_needs_message(s), "an uncached field needs the message");
	imap_search_free(&s);
	msg_info_free(&t.info);
}

/*
 * Through the engine, against a real Maildir.
 */

static char top[PATH_MAX];

/* Remove the Maildir file of the message with ",U=uid" in its name. */
static void
t_remove_uid(unsigned uid)
{
	static const char *const sub[] = { "new", "cur" };
	char dir[PATH_MAX + 32], path[PATH_MAX * 2], tag[32];
	struct dirent *e;
	DIR *d;

	snprintf(tag, sizeof(tag), ",U=%u", uid);
	for (int i = 0; i < 2; i++) {
		snprintf(dir, sizeof(dir), "%s/Maildir/%s", top, sub[i]);
		if ((d = opendir(dir)) == NULL)
			continue;
		while ((e = readdir(d)) != NULL) {
			const char *p = strstr(e->d_name, tag);

			if (p == NULL || (p[strlen(tag)] >= '0' &&
			    p[strlen(tag)] <= '9'))
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			if (unlink(path) < 0)
				bail("unlink %s", path);
		}
		closedir(d);
	}
}

static void
test_engine(bool bytewise)
{
	struct imap_settings set = { false, true, false, "", 0, false };
	struct imap_session *s;
	const char *o;
	uint64_t reads;

	s = imap_session_new_authenticated(&set, &t_cb, NULL, "alice");
	if (imap_session_login(s, &alice) < 0)
		bail("login");
	o = t_send(s, "a1 SELECT INBOX\r\n", bytewise);
	ok(has(o, "* 4 EXISTS") && has(o, "a1 OK"), "SELECT: 4 messages");
	reads = imap_search_files_read();
	o = t_send(s, "a2 SEARCH FROM bob\r\n", bytewise);
	is_string(o, "* SEARCH 1 3\r\na2 OK SEARCH completed\r\n",
	    "SEARCH FROM: exact answer");
	o = t_send(s, "a3 UID SEARCH SUBJECT caf\xc3\xa9\r\n", bytewise);
	ok(has(o, "a3 BAD"), "8-bit in an atom: BAD from the parser");
	o = t_send(s, "a4 UID SEARCH CHARSET UTF-8 SUBJECT {5+}\r\n"
	    "CAF\xc3\x89\r\n", bytewise);
	is_string(o, "* SEARCH 2\r\na4 OK UID SEARCH completed\r\n",
	    "UID SEARCH with a literal and an encoded word: UIDs");
	o = t_send(s, "a5 SEARCH NOT SUBJECT x UNSEEN SMALLER 100000\r\n",
	    bytewise);
	is_string(o, "* SEARCH 1 2 3 4\r\na5 OK SEARCH completed\r\n",
	    "SEARCH with NOT and flags");
	o = t_send(s, "a6 SEARCH 2:* TO carol\r\n", bytewise);
	is_string(o, "* SEARCH 3\r\na6 OK SEARCH completed\r\n",
	    "sequence set and TO");
	is_int(imap_search_files_read() - reads, 0,
	    "header and flag keys read no message file");
	o = t_send(s, "a7 SEARCH BODY needle\r\n", bytewise);
	is_string(o, "* SEARCH 2 4\r\na7 OK SEARCH completed\r\n",
	    "BODY (one of them base64)");
	is_int(imap_search_files_read() - reads, 4, "BODY read each message");
	o = t_send(s, "a8 SEARCH TEXT carol\r\n", bytewise);
	is_string(o, "* SEARCH 3\r\na8 OK SEARCH completed\r\n", "TEXT");
	o = t_send(s, "a9 SEARCH HEADER X-Tag blue\r\n", bytewise);
	is_string(o, "* SEARCH 4\r\na9 OK SEARCH completed\r\n",
	    "HEADER on an uncached field");
	o = t_send(s, "b1 SEARCH UID 3:4 OR SUBJECT nothing BODY needle\r\n",
	    bytewise);
	is_string(o, "* SEARCH 4\r\nb1 OK SEARCH completed\r\n", "UID, OR");
	o = t_send(s, "b2 SEARCH DELETED\r\n", bytewise);
	is_string(o, "* SEARCH\r\nb2 OK SEARCH completed\r\n",
	    "no match: an empty SEARCH response");
	o = t_send(s, "b3 SEARCH CHARSET KOI8-R ALL\r\n", bytewise);
	is_string(o, "b3 NO [BADCHARSET (US-ASCII UTF-8)] Unsupported "
	    "charset\r\n", "another charset: NO [BADCHARSET]");
	o = t_send(s, "b4 SEARCH FOO\r\n", bytewise);
	ok(has(o, "b4 BAD") && !has(o, "* SEARCH"), "unknown key: BAD");
	o = t_send(s, "b5 SEARCH 5\r\n", bytewise);
	is_string(o, "* SEARCH\r\nb5 OK SEARCH completed\r\n",
	    "a number past the last matches nothing");
	o = t_send(s, "b6 SEARCH ((((((((((((((((((((((((((((((((((ALL"
	    "))))))))))))))))))))))))))))))))))\r\n", bytewise);
	ok(has(o, "b6 BAD"), "lists nested past the parser's limit: BAD");
	o = t_send(s, "b7 SEARCH ON 14-Nov-2023 SINCE 1-Jan-2000\r\n",
	    bytewise);
	is_string(o, "* SEARCH 1 2 3 4\r\nb7 OK SEARCH completed\r\n",
	    "internal dates");
	/* Another program expunges message 2 and delivers one. */
	t_remove_uid(2);
	t_deliver("INBOX", "Subject: fifth\n\nneedle\n");
	o = t_send(s, "c1 SEARCH BODY needle\r\n", bytewise);
	ok(!has(o, "EXPUNGE") && has(o, "* 5 EXISTS") &&
	    has(o, "* SEARCH 4 5\r\n"), "SEARCH: no EXPUNGE, the new "
	    "message is reported and found, the gone one not matched");
	o = t_send(s, "c2 UID SEARCH ALL\r\n", bytewise);
	ok(has(o, "* 2 EXPUNGE") && has(o, "* SEARCH 1 3 4 5\r\n") &&
	    has(o, "c2 OK UID SEARCH"), "UID SEARCH reports the expunge");
	o = t_send(s, "c3 SEARCH ALL\r\n", bytewise);
	is_string(o, "* SEARCH 1 2 3 4\r\nc3 OK SEARCH completed\r\n",
	    "sequence numbers after the expunge");
	imap_session_free(&s);
}

static void
test_engine_esearch(bool bytewise)
{
	struct imap_settings set = { false, true, false, "", 0, false };
	struct imap_session *s;
	const char *o;

	s = imap_session_new_authenticated(&set, &t_cb, NULL, "alice");
	if (imap_session_login(s, &alice) < 0)
		bail("login");
	o = t_send(s, "e0 SELECT INBOX\r\n", bytewise);
	ok(has(o, "* 4 EXISTS") && has(o, "e0 OK"), "SELECT: 4 messages");
	o = t_send(s, "e1 SEARCH RETURN (MIN MAX COUNT ALL) FROM bob\r\n",
	    bytewise);
	is_string(o, "* ESEARCH (TAG \"e1\") MIN 1 MAX 3 COUNT 2 ALL 1,3\r\n"
	    "e1 OK SEARCH completed\r\n", "ESEARCH with every option");
	o = t_send(s, "e2 UID SEARCH RETURN () ALL\r\n", bytewise);
	is_string(o, "* ESEARCH (TAG \"e2\") UID ALL 1:4\r\n"
	    "e2 OK UID SEARCH completed\r\n", "RETURN () is ALL, UID form");
	o = t_send(s, "e3 SEARCH RETURN (COUNT MIN) DELETED\r\n", bytewise);
	is_string(o, "* ESEARCH (TAG \"e3\") COUNT 0\r\n"
	    "e3 OK SEARCH completed\r\n", "no match: COUNT 0, no MIN");
	o = t_send(s, "e4 SEARCH RETURN (FOO) ALL\r\n", bytewise);
	ok(has(o, "e4 BAD") && !has(o, "ESEARCH"), "unknown option: BAD");
	o = t_send(s, "e5 SEARCH RETURN ALL\r\n", bytewise);
	ok(has(o, "e5 BAD"), "RETURN without a list: BAD");
	o = t_send(s, "e6 FETCH $ (UID)\r\n", bytewise);
	is_string(o, "e6 OK FETCH completed\r\n", "FETCH $, nothing saved: "
	    "no message");
	o = t_send(s, "e7 SEARCH $\r\n", bytewise);
	is_string(o, "* SEARCH\r\ne7 OK SEARCH completed\r\n",
	    "SEARCH $, nothing saved: empty");
	o = t_send(s, "e8 SEARCH RETURN (SAVE) FROM bob\r\n", bytewise);
	is_string(o, "e8 OK SEARCH completed\r\n", "SAVE alone: no ESEARCH");
	o = t_send(s, "e9 FETCH $ (UID)\r\n", bytewise);
	is_string(o, "* 1 FETCH (UID 1)\r\n* 3 FETCH (UID 3)\r\n"
	    "e9 OK FETCH completed\r\n", "FETCH $: the saved messages");
	o = t_send(s, "f1 UID FETCH $ (UID)\r\n", bytewise);
	is_string(o, "* 1 FETCH (UID 1)\r\n* 3 FETCH (UID 3)\r\n"
	    "f1 OK UID FETCH completed\r\n", "UID FETCH $");
	o = t_send(s, "f2 SEARCH $ NOT 1\r\n", bytewise);
	is_string(o, "* SEARCH 3\r\nf2 OK SEARCH completed\r\n",
	    "SEARCH $ with another key");
	o = t_send(s, "f3 UID SEARCH OR UID $ 4\r\n", bytewise);
	is_string(o, "* SEARCH 1 3 4\r\nf3 OK UID SEARCH completed\r\n",
	    "UID SEARCH UID $");
	o = t_send(s, "f4 FETCH $,2 (UID)\r\n", bytewise);
	ok(has(o, "f4 BAD") && !has(o, "FETCH ("), "FETCH $,2: BAD");
	o = t_send(s, "f5 SEARCH RETURN (SAVE) FOO\r\n", bytewise);
	ok(has(o, "f5 BAD"), "SAVE with a bad key: BAD");
	o = t_send(s, "f6 SEARCH $\r\n", bytewise);
	is_string(o, "* SEARCH 1 3\r\nf6 OK SEARCH completed\r\n",
	    "after BAD the saved result stays");
	o = t_send(s, "f7 SEARCH RETURN (SAVE MIN) NOT FROM bob\r\n",
	    bytewise);
	is_string(o, "* ESEARCH (TAG \"f7\") MIN 2\r\n"
	    "f7 OK SEARCH completed\r\n", "SAVE MIN answers MIN");
	o = t_send(s, "f8 SEARCH $\r\n", bytewise);
	is_string(o, "* SEARCH 2\r\nf8 OK SEARCH completed\r\n",
	    "SAVE MIN saves only the minimum");
	o = t_send(s, "f9 SEARCH RETURN (SAVE MAX MIN) ALL\r\n", bytewise);
	o = t_send(s, "g1 SEARCH $\r\n", bytewise);
	is_string(o, "* SEARCH 1 4\r\ng1 OK SEARCH completed\r\n",
	    "SAVE MIN MAX saves both ends");
	o = t_send(s, "g2 SEARCH RETURN (SAVE MIN COUNT) NOT 2\r\n", bytewise);
	is_string(o, "* ESEARCH (TAG \"g2\") MIN 1 COUNT 3\r\n"
	    "g2 OK SEARCH completed\r\n", "SAVE MIN COUNT answers");
	o = t_send(s, "g3 SEARCH $\r\n", bytewise);
	is_string(o, "* SEARCH 1 3 4\r\ng3 OK SEARCH completed\r\n",
	    "SAVE with COUNT saves every match");
	o = t_send(s, "g4 SEARCH RETURN (SAVE ALL) $ FROM bob\r\n", bytewise);
	is_string(o, "* ESEARCH (TAG \"g4\") ALL 1,3\r\n"
	    "g4 OK SEARCH completed\r\n", "SAVE from a search of $");
	/* Another program expunges message 1: the saved UIDs do not
	 * shift, the gone one drops out. */
	t_remove_uid(1);
	o = t_send(s, "g5 UID SEARCH RETURN (COUNT) ALL\r\n", bytewise);
	ok(has(o, "* 1 EXPUNGE\r\n") && has(o, "* ESEARCH (TAG \"g5\") UID "
	    "COUNT 3\r\n"), "expunge reported before UID ESEARCH");
	o = t_send(s, "g6 FETCH $ (UID)\r\n", bytewise);
	is_string(o, "* 2 FETCH (UID 3)\r\ng6 OK FETCH completed\r\n",
	    "FETCH $ after the expunge: UID 3, now message 2");
	o = t_send(s, "g7 UID FETCH $ (UID)\r\n", bytewise);
	is_string(o, "* 2 FETCH (UID 3)\r\ng7 OK UID FETCH completed\r\n",
	    "UID FETCH $ after the expunge");
	o = t_send(s, "g8 SEARCH RETURN (SAVE) CHARSET KOI8-R ALL\r\n",
	    bytewise);
	ok(has(o, "g8 NO [BADCHARSET"), "SAVE with another charset: NO");
	o = t_send(s, "g9 UID SEARCH $\r\n", bytewise);
	is_string(o, "* SEARCH\r\ng9 OK UID SEARCH completed\r\n",
	    "after NO the saved result is empty");
	o = t_send(s, "h1 SEARCH RETURN (SAVE) ALL\r\n", bytewise);
	o = t_send(s, "h2 SEARCH RETURN (SAVE) DELETED\r\n", bytewise);
	o = t_send(s, "h3 FETCH $ (UID)\r\n", bytewise);
	is_string(o, "h3 OK FETCH completed\r\n",
	    "an empty result saved replaces a full one");
	imap_session_free(&s);
}

static void
test_engine_unselected(void)
{
	struct imap_settings set = { false, true, false, "", 0, false };
	struct imap_session *s;
	const char *o;

	s = imap_session_new_authenticated(&set, &t_cb, NULL, "alice");
	if (imap_session_login(s, &alice) < 0)
		bail("login");
	o = t_send(s, "z1 SEARCH ALL\r\n", false);
	ok(has(o, "z1 BAD"), "SEARCH without a selected folder: BAD");
	imap_session_free(&s);
}

static void
setup_maildir(void)
{
	snprintf(top, sizeof(top), "/tmp/loft-isearch-XXXXXX");
	if (mkdtemp(top) == NULL)
		bail("mkdtemp");
	alice.name = xstrdup("alice");
	alice.pwhash = xstrdup("");
	alice.uid = getuid();
	alice.gid = getgid();
	alice.home = xstrdup(top);
	alice.mail_location = xstrdup("maildir:~/Maildir");
	alice.fields = xstrdup("");
	t_deliver("INBOX", "From: Bob <bob@example.net>\nSubject: Hello\n\nhi\n");
	t_deliver("INBOX", "From: Alice <alice@example.org>\n"
	    "Subject: =?UTF-8?Q?caf=C3=A9?=\n\nthe needle is here\n");
	t_deliver("INBOX", "From: bob@example.net\nTo: Carol <carol@example.org>\n"
	    "Subject: third\n\nnothing\n");
	t_deliver("INBOX", "From: x@example.com\nSubject: fourth\nX-Tag: Blue\n"
	    "MIME-Version: 1.0\nContent-Type: text/plain\n"
	    "Content-Transfer-Encoding: base64\n\n"
	    "aGF5c3RhY2sgd2l0aCBhIG5lZWRsZQ==\n");
}

static void
teardown_maildir(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", top);
	if (system(cmd) != 0)
		diag("cleanup failed");
	free(alice.name);
	free(alice.pwhash);
	free(alice.home);
	free(alice.mail_location);
	free(alice.fields);
}

int
main(void)
{
	struct imap_parser_settings ps = { .literal_plus = true };

	parser = imap_parser_new(&ps, &t_pcb, NULL);
	buf_init(&out, 1 << 22);

	test_keys();
	test_chunks();
	test_cte_shared();
	test_encoded_words();
	test_syntax();
	test_depth();
	test_partial();
	test_many();
	test_return();
	test_esearch_format();

	setup_maildir();
	test_engine(false);
	teardown_maildir();
	setup_maildir();
	test_engine(true);
	teardown_maildir();
	setup_maildir();
	test_engine_esearch(false);
	teardown_maildir();
	setup_maildir();
	test_engine_esearch(true);
	teardown_maildir();
	setup_maildir();
	test_engine_unselected();
	teardown_maildir();

	imap_parser_free(&parser);
	buf_free(&out);
	return done_testing();
}
