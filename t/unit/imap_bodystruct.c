/*
 * Unit tests for server/imap/imap_bodystruct.c, with imap_envelope.c and
 * imap_write.c under it:
 *  - golden outputs: for every message of the MIME corpus (t/data/mime,
 *    shared with t/unit/mime.c) and of t/data/imap, ENVELOPE, BODY and
 *    BODYSTRUCTURE as an IMAP4rev1 client gets them and as an IMAP4rev2 /
 *    UTF8=ACCEPT one does, compared with t/data/imap/NAME.imap. Each line
 *    there is one response item with bytes outside 0x20-0x7e written \xHH
 *    and '\' written "\\". Set IMAP_GOLDEN_UPDATE=1 to rewrite the files
 *    (then read the diff!);
 *  - every output parsed by imap_check.h and checked against the ENVELOPE
 *    and body grammars; the tree and its serialized blob give the same
 *    bytes;
 *  - hand-made trees for the rules: RFC 2231 parameters in both modes,
 *    percent-encoding, languages, dispositions, the text default charset,
 *    message/global in IMAP4rev1 and rev2, damaged trees;
 *  - limits: nesting past MIME_MAX_DEPTH, MIME_MAX_PARTS parts, the output
 *    limit at N and N-1, every prefix of a blob, flipped bytes.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "mime.h"
#include "msg.h"
#include "xmalloc.h"
#include "server/imap/imap_bodystruct.h"
#include "server/imap/imap_envelope.h"
#include "server/imap/imap_write.h"
#include "tap.h"
#include "imap_check.h"

#define UTF8_REV2	(IMAP_WRITE_UTF8 | IMAP_WRITE_REV2)
#define EMPTY_TEXT \
	"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0"

static const char *const mime_corpus[] = {
	"simple", "alternative", "attachment", "nested", "rfc822", "digest",
	"rfc2231", "encoded_words", "missing_close", "missing_boundary",
	"preamble_epilogue", "crlf", "mixed_eol", "no_body", "no_separator",
	"empty", "nul", "eightbit", "boundary_prefix", "boundary_prefix_outer",
	"comments", "bare_cr", "header_at_boundary", "content_fields",
	"invalid_type", "same_boundary", "close_vs_longer", "no_parts",
	"from_line", "garbage", "empty_line_before_boundary",
};

static const char *const imap_corpus[] = {
	"groups", "rfc822_nested", "bad_charset", "ext_fields",
	"long_subject", "malformed_addr", "message_global", "rfc2231_utf8",
};

static char top[4096];
static bool update;

/* read_file: the whole file in a buffer of exactly its size (ASan sees
 * any overread). NULL if it cannot be read. */
static unsigned char *
read_file(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	unsigned char chunk[65536], *p;
	size_t n;

	if (f == NULL)
		return NULL;
	buf_init(&b, SIZE_MAX);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(&b, chunk, n);
	fclose(f);
	*len_r = b.len;
	p = xmalloc(b.len == 0 ? 1 : b.len);
	if (b.len > 0)
		memcpy(p, b.data, b.len);
	buf_free(&b);
	return p;
}

static void
escape(const unsigned char *s, size_t len, struct buf *out)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] == '\\')
			buf_append_str(out, "\\\\");
		else if (s[i] >= 0x20 && s[i] <= 0x7e)
			buf_append_byte(out, s[i]);
		else
			buf_printf(out, "\\x%02x", s[i]);
	}
}

/*
 * Writing and checking one item
 */

enum item { ITEM_ENVELOPE, ITEM_BODY, ITEM_BODYSTRUCTURE };

/* item_write: one item into out (emptied first); -1 if it did not fit. */
static int
item_write(struct buf *out, enum item item, unsigned flags,
    const unsigned char *hdr, size_t hdr_len, const struct mime_part *tree)
{
	struct imap_write w;

	buf_truncate(out, 0);
	imap_write_init(&w, out, flags);
	if (item == ITEM_ENVELOPE)
		imap_envelope_write(&w, hdr, hdr_len);
	else
		imap_bodystruct_write(&w, tree, item == ITEM_BODYSTRUCTURE);
	return imap_write_finish(&w);
}

/* item_check: whether out is one valid item of its kind (why not, else). */
static const char *
item_check(const struct buf *out, enum item item, unsigned flags)
{
	bool utf8 = (flags & IMAP_WRITE_UTF8) != 0;
	bool rev2 = (flags & IMAP_WRITE_REV2) != 0;

	if (item == ITEM_ENVELOPE)
		return ick_check(out->data, out->len, utf8, ick_check_envelope,
		    false, rev2);
	return ick_check(out->data, out->len, utf8, ick_check_body,
	    item == ITEM_BODYSTRUCTURE, rev2);
}

/* bs: BODY or BODYSTRUCTURE of a tree as a C string, "INVALID: why" if
 * the checker refuses it. Static result, valid until the next call. */
static const char *
bs(const struct mime_part *tree, bool ext, unsigned flags)
{
	static struct buf out, msg;
	const char *err;

	if (out.max == 0)
		buf_init(&out, 64u << 20);
	if (item_write(&out, ext ? ITEM_BODYSTRUCTURE : ITEM_BODY, flags,
	    NULL, 0, tree) < 0)
		return "DID NOT FIT";
	err = item_check(&out, ext ? ITEM_BODYSTRUCTURE : ITEM_BODY, flags);
	if (err == NULL)
		return buf_cstr(&out);
	buf_free(&msg);
	buf_init(&msg, SIZE_MAX);
	buf_printf(&msg, "INVALID: %s: %s", err, buf_cstr(&out));
	return buf_cstr(&msg);
}

/*
 * The corpus
 */

struct corpus_result {
	int invalid;		/* outputs the checker refused */
	int blob_differs;	/* tree and blob gave different bytes */
};

/* render: the six golden lines of one message into golden. */
static void
render(const unsigned char *data, size_t len, struct buf *golden,
    struct corpus_result *res)
{
	static const char *const names[] = { "ENVELOPE", "BODY",
	    "BODYSTRUCTURE" };
	static const unsigned modes[] = { 0, UTF8_REV2 };
	struct msg_info info;
	struct mime_part *tree;
	struct imap_write w;
	struct buf out, blob_out;
	const char *err;
	size_t m;
	enum item it;

	msg_parse(data, len, &info);
	if (mime_deserialize(info.mime.data, info.mime.len, &tree) < 0)
		bail("msg_parse made a blob mime_deserialize refuses");
	buf_init(&out, 64u << 20);
	buf_init(&blob_out, 64u << 20);
	for (m = 0; m < 2; m++) {
		for (it = ITEM_ENVELOPE; it <= ITEM_BODYSTRUCTURE; it++) {
			item_write(&out, it, modes[m], info.headers.data,
			    info.headers.len, tree);
			if ((err = item_check(&out, it, modes[m])) != NULL) {
				diag("%s: %s", names[it], err);
				res->invalid++;
			}
			if (it != ITEM_ENVELOPE) {
				buf_truncate(&blob_out, 0);
				imap_write_init(&w, &blob_out, modes[m]);
				imap_bodystruct_write_blob(&w, info.mime.data,
				    info.mime.len, it == ITEM_BODYSTRUCTURE,
				    &err);
				imap_write_finish(&w);
				if (blob_out.len != out.len ||
				    memcmp(blob_out.data, out.data, out.len))
					res->blob_differs++;
			}
			buf_printf(golden, "%s%s ", m ? "UTF8 " : "",
			    names[it]);
			escape(out.data, out.len, golden);
			buf_append_byte(golden, '\n');
		}
	}
	buf_free(&out);
	buf_free(&blob_out);
	mime_part_free(&tree);
	msg_info_free(&info);
}

/* first_diff: the first line where a and b differ, for the diagnostics. */
static void
first_diff(const char *a, const char *b)
{
	size_t line = 1, i = 0, start = 0;

	while (a[i] != '\0' && a[i] == b[i]) {
		if (a[i] == '\n') {
			line++;
			start = i + 1;
		}
		i++;
	}
	diag("line %zu differs:", line);
	diag("got:  %.*s", (int)strcspn(a + start, "\n"), a + start);
	diag("want: %.*s", (int)strcspn(b + start, "\n"), b + start);
}

static void
test_golden(const char *dir, const char *name)
{
	char path[4600];
	unsigned char *data, *want;
	size_t len, want_len;
	struct buf golden;
	struct corpus_result res = { 0, 0 };
	FILE *f;

	snprintf(path, sizeof(path), "%s/t/data/%s/%s.eml", top, dir, name);
	if ((data = read_file(path, &len)) == NULL)
		bail("cannot read %s", path);
	buf_init(&golden, SIZE_MAX);
	render(data, len, &golden, &res);
	is_int(res.invalid, 0, "%s: every output is valid IMAP", name);
	is_int(res.blob_differs, 0, "%s: tree and blob agree", name);
	snprintf(path, sizeof(path), "%s/t/data/imap/%s.imap", top, name);
	if (update) {
		if ((f = fopen(path, "wb")) == NULL ||
		    fwrite(golden.data, 1, golden.len, f) != golden.len ||
		    fclose(f) != 0)
			bail("cannot write %s", path);
	}
	if ((want = read_file(path, &want_len)) == NULL)
		bail("cannot read %s", path);
	if (!ok(want_len == golden.len && memcmp(want, golden.data,
	    want_len) == 0, "%s: golden output", name)) {
		want = xrealloc(want, want_len + 1);
		want[want_len] = '\0';
		first_diff(buf_cstr(&golden), (char *)want);
	}
	free(want);
	free(data);
	buf_free(&golden);
}

static void
test_corpus(void)
{
	size_t i;

	for (i = 0; i < sizeof(mime_corpus) / sizeof(mime_corpus[0]); i++)
		test_golden("mime", mime_corpus[i]);
	for (i = 0; i < sizeof(imap_corpus) / sizeof(imap_corpus[0]); i++)
		test_golden("imap", imap_corpus[i]);
}

/*
 * Hand-made trees
 */

static struct mime_part *
part_new(const char *type, const char *subtype)
{
	struct mime_part *p = xcalloc(1, sizeof(*p));

	p->type = xstrdup(type);
	p->subtype = xstrdup(subtype);
	p->encoding = xstrdup("7bit");
	return p;
}

static void
part_set(struct mime_part *p, const char *type, const char *subtype)
{
	memset(p, 0, sizeof(*p));
	p->type = xstrdup(type);
	p->subtype = xstrdup(subtype);
	p->encoding = xstrdup("7bit");
}

static void
param_add(struct mime_param **params, size_t *n, const char *name,
    const char *value, const char *charset)
{
	*params = xreallocarray(*params, *n + 1, sizeof(**params));
	(*params)[*n].name = xstrdup(name);
	(*params)[*n].value = xstrdup(value);
	(*params)[*n].charset = charset ? xstrdup(charset) : NULL;
	(*n)++;
}

static struct mime_part *
children_new(struct mime_part *p, size_t n)
{
	p->children = xcalloc(n, sizeof(*p->children));
	p->nchildren = n;
	return p->children;
}

/* one_param: BODY of an application/x part with one parameter. */
static const char *
one_param(const char *value, const char *charset, unsigned flags)
{
	struct mime_part *p = part_new("application", "x");
	static char res[512];

	param_add(&p->params, &p->nparams, "name", value, charset);
	p->body_vsize = 1;
	snprintf(res, sizeof(res), "%s", bs(p, false, flags));
	mime_part_free(&p);
	return res;
}

#define BASIC_PRE	"(\"application\" \"x\" "
#define BASIC_POST	" NIL NIL \"7bit\" 1)"

static void
test_params(void)
{
	is_string(one_param("a b", NULL, 0),
	    BASIC_PRE "(\"name\" \"a b\")" BASIC_POST, "plain parameter");
	is_string(one_param("\xe2\x82\xac.txt", "utf-8", 0),
	    BASIC_PRE "(\"name*\" \"utf-8''%E2%82%AC.txt\")" BASIC_POST,
	    "RFC 2231 UTF-8, IMAP4rev1: name* and percent-encoded");
	is_string(one_param("\xe2\x82\xac.txt", "UTF-8", IMAP_WRITE_UTF8),
	    BASIC_PRE "(\"name\" \"\xe2\x82\xac.txt\")" BASIC_POST,
	    "RFC 2231 UTF-8, UTF-8 mode: decoded");
	is_string(one_param("\xe2\x82\xac.txt", "utf8", IMAP_WRITE_UTF8),
	    BASIC_PRE "(\"name\" \"\xe2\x82\xac.txt\")" BASIC_POST,
	    "charset utf8 too");
	is_string(one_param("plain.txt", "utf-8", 0),
	    BASIC_PRE "(\"name\" \"plain.txt\")" BASIC_POST,
	    "RFC 2231 printable ASCII: plain in either mode");
	is_string(one_param("\xc3(", "utf-8", IMAP_WRITE_UTF8),
	    BASIC_PRE "(\"name*\" \"utf-8''%C3%28\")" BASIC_POST,
	    "invalid UTF-8 stays encoded in UTF-8 mode");
	is_string(one_param("caf\xe9", "ISO-8859-1", 0),
	    BASIC_PRE "(\"name*\" \"ISO-8859-1''caf%E9\")" BASIC_POST,
	    "latin-1, IMAP4rev1: encoded, charset as written");
	is_string(one_param("caf\xe9", "ISO-8859-1", IMAP_WRITE_UTF8),
	    BASIC_PRE "(\"name\" \"caf\xc3\xa9\")" BASIC_POST,
	    "latin-1, UTF-8 mode: converted");
	is_string(one_param("\xff", "latin1", IMAP_WRITE_UTF8),
	    BASIC_PRE "(\"name\" \"\xc3\xbf\")" BASIC_POST,
	    "latin1 0xff: U+00FF");
	is_string(one_param("\x1b$B$\"\x1b(B", "ISO-2022-JP", IMAP_WRITE_UTF8),
	    BASIC_PRE "(\"name*\" \"ISO-2022-JP''%1B$B$%22%1B%28B\")"
	    BASIC_POST, "7-bit ISO-2022-JP with ESC: encoded in both modes");
	is_string(one_param("\xe9", "", IMAP_WRITE_UTF8),
	    BASIC_PRE "(\"name*\" \"''%E9\")" BASIC_POST,
	    "empty charset: encoded");
	is_string(one_param(" *'%()<>@,;:\\\"/[]?=\x7f\x01" "aZ09-_.~!",
	    "x-unknown", 0),
	    BASIC_PRE "(\"name*\" \"x-unknown''%20%2A%27%25%28%29%3C%3E%40%2C"
	    "%3B%3A%5C%22%2F%5B%5D%3F%3D%7F%01aZ09-_.~!\")" BASIC_POST,
	    "every non-attribute-char percent-encoded, the rest kept");
	is_string(one_param("a\"b\\c", NULL, 0),
	    BASIC_PRE "(\"name\" \"a\\\"b\\\\c\")" BASIC_POST,
	    "quotes and backslashes escaped");
	is_string(one_param("\xe9t\xe9", NULL, 0),
	    BASIC_PRE "(\"name\" {3}\r\n\xe9t\xe9)" BASIC_POST,
	    "raw 8-bit without RFC 2231: literal");
}

static const char *
with_language(const char *lang)
{
	struct mime_part *p = part_new("application", "x");
	static char res[512];
	const char *r, *tail;

	p->language = lang ? xstrdup(lang) : NULL;
	r = bs(p, true, 0);
	/* After: type subtype params id desc enc octets md5 dsp. */
	tail = strstr(r, "0 NIL NIL ");
	snprintf(res, sizeof(res), "%s", tail ? tail + 10 : r);
	mime_part_free(&p);
	return res;
}

static void
test_language(void)
{
	is_string(with_language(NULL), "NIL NIL)", "no language: NIL");
	is_string(with_language("en"), "\"en\" NIL)", "one: a string");
	is_string(with_language("en, de (German)"), "(\"en\" \"de\") NIL)",
	    "two, comment dropped: a list");
	is_string(with_language("en-US,fr\t,  it"),
	    "(\"en-US\" \"fr\" \"it\") NIL)", "three");
	is_string(with_language(" , ,(only (a) comment)"), "NIL NIL)",
	    "nothing but separators and comments: NIL");
	is_string(with_language("(c)en"), "\"en\" NIL)",
	    "comment before a tag");
	is_string(with_language("(unterminated"), "NIL NIL)",
	    "unterminated comment: NIL");
}

static void
test_fields(void)
{
	struct mime_part *p = part_new("text", "plain");
	struct mime_part *mp, *c;

	p->body_vsize = 10;
	p->body_lines = 2;
	is_string(bs(p, false, 0),
	    "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
	    "10 2)", "text without charset: us-ascii added");
	param_add(&p->params, &p->nparams, "format", "flowed", NULL);
	is_string(bs(p, false, 0),
	    "(\"text\" \"plain\" (\"format\" \"flowed\" \"charset\" "
	    "\"us-ascii\") NIL NIL \"7bit\" 10 2)",
	    "... after the other parameters");
	param_add(&p->params, &p->nparams, "charset", "utf-8", NULL);
	p->id = xstrdup("<id@x>");
	p->description = xstrdup("desc \"q\"");
	p->md5 = xstrdup("Q2hlY2sgSW50ZWdyaXR5IQ==");
	p->disposition = xstrdup("inline");
	p->location = xstrdup("http://x/");
	free(p->encoding);
	p->encoding = xstrdup("quoted-printable");
	is_string(bs(p, true, 0),
	    "(\"text\" \"plain\" (\"format\" \"flowed\" \"charset\" \"utf-8\") "
	    "\"<id@x>\" \"desc \\\"q\\\"\" \"quoted-printable\" 10 2 "
	    "\"Q2hlY2sgSW50ZWdyaXR5IQ==\" (\"inline\" NIL) NIL \"http://x/\")",
	    "every field of a text part");
	param_add(&p->disp_params, &p->ndisp_params, "filename",
	    "\xe2\x82\xac", "utf-8");
	param_add(&p->disp_params, &p->ndisp_params, "size", "12", NULL);
	ok(strstr(bs(p, true, 0), "(\"inline\" (\"filename*\" "
	    "\"utf-8''%E2%82%AC\" \"size\" \"12\"))") != NULL,
	    "disposition parameters, RFC 2231 included");
	free(p->encoding);
	p->encoding = NULL;
	ok(strstr(bs(p, false, 0), "NIL NIL \"7bit\"") == NULL &&
	    strstr(bs(p, false, 0), "\"7bit\" 10 2)") != NULL,
	    "a damaged tree without encoding: 7bit");
	mime_part_free(&p);

	mp = part_new("multipart", "mixed");
	is_string(bs(mp, true, 0),
	    "(" EMPTY_TEXT " NIL NIL NIL NIL) \"mixed\" NIL NIL NIL NIL)",
	    "multipart without parts: one empty text part");
	c = children_new(mp, 2);
	part_set(&c[0], "image", "png");
	part_set(&c[1], "message", "rfc822");
	param_add(&mp->params, &mp->nparams, "boundary", "b", NULL);
	is_string(bs(mp, true, 0),
	    "((\"image\" \"png\" NIL NIL NIL \"7bit\" 0 NIL NIL NIL NIL)"
	    "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 0 "
	    "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) "
	    EMPTY_TEXT " "
	    "NIL NIL NIL NIL) 0 NIL NIL NIL NIL) "
	    "\"mixed\" (\"boundary\" \"b\") NIL NIL NIL)",
	    "message/rfc822 without its child: empty envelope and text part");
	is_string(bs(mp, false, 0),
	    "((\"image\" \"png\" NIL NIL NIL \"7bit\" 0)"
	    "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 0 "
	    "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) "
	    EMPTY_TEXT ")"
	    " 0) \"mixed\")", "BODY: no extension data");
	c = children_new(&mp->children[1], 1);
	part_set(c, "text", "plain");
	c->envelope = (unsigned char *)xstrdup("Subject: inner\r\n");
	c->envelope_len = strlen((char *)c->envelope);
	mp->children[1].body_lines = 7;
	is_string(bs(mp, false, 0),
	    "((\"image\" \"png\" NIL NIL NIL \"7bit\" 0)"
	    "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 0 "
	    "(NIL \"inner\" NIL NIL NIL NIL NIL NIL NIL NIL) "
	    EMPTY_TEXT ")"
	    " 7) \"mixed\")", "message/rfc822: envelope from its child, body, "
	    "lines");
	free(mp->children[1].subtype);
	mp->children[1].subtype = xstrdup("global");
	is_string(bs(mp, false, 0),
	    "((\"image\" \"png\" NIL NIL NIL \"7bit\" 0)"
	    "(\"message\" \"global\" NIL NIL NIL \"7bit\" 0) \"mixed\")",
	    "message/global, IMAP4rev1: basic");
	is_string(bs(mp, false, UTF8_REV2),
	    "((\"image\" \"png\" NIL NIL NIL \"7bit\" 0)"
	    "(\"message\" \"global\" NIL NIL NIL \"7bit\" 0 "
	    "(NIL \"inner\" NIL NIL NIL NIL NIL NIL NIL NIL) "
	    EMPTY_TEXT ")"
	    " 7) \"mixed\")", "message/global, IMAP4rev2: like message/rfc822");
	is_string(bs(mp, false, IMAP_WRITE_UTF8),
	    "((\"image\" \"png\" NIL NIL NIL \"7bit\" 0)"
	    "(\"message\" \"global\" NIL NIL NIL \"7bit\" 0) \"mixed\")",
	    "message/global, UTF8=ACCEPT on IMAP4rev1: basic");
	mime_part_free(&mp);
}

/*
 * Limits
 */

/* leading_parens: how many '(' the output starts with. */
static size_t
leading_parens(const char *s)
{
	size_t n = 0;

	while (s[n] == '(')
		n++;
	return n;
}

static void
test_depth(void)
{
	struct mime_part *root, *p;
	const char *r;
	int i;

	/* A hand-made chain deeper than any parsed tree can be. */
	root = part_new("multipart", "mixed");
	for (p = root, i = 1; i < 150; i++) {
		p = children_new(p, 1);
		part_set(p, "multipart", "mixed");
	}
	r = bs(root, true, 0);
	is_int(strncmp(r, "INVALID", 7) != 0, 1, "150 levels: valid");
	is_int(leading_parens(r), MIME_MAX_DEPTH + 1, "written down to level "
	    "MIME_MAX_DEPTH only, plus the empty part in its place");
	ok(strncmp(r + MIME_MAX_DEPTH + 1, "\"text\" \"plain\" (\"charset\" "
	    "\"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"mixed\" NIL "
	    "NIL NIL NIL)", 80) == 0,
	    "which is an empty text part");
	mime_part_free(&root);

	/* Level MIME_MAX_DEPTH - 1 still recurses. */
	root = part_new("multipart", "mixed");
	for (p = root, i = 1; i < MIME_MAX_DEPTH - 1; i++) {
		p = children_new(p, 1);
		part_set(p, "multipart", "mixed");
	}
	p = children_new(p, 1);
	part_set(p, "text", "plain");
	r = bs(root, false, 0);
	is_int(leading_parens(r), MIME_MAX_DEPTH, "leaf at level N: all "
	    "levels written");
	ok(strncmp(r + MIME_MAX_DEPTH, "\"text\"", 6) == 0,
	    "and the leaf is the text");
	mime_part_free(&root);
}

/* parsed: the tree of a generated message. */
static struct mime_part *
parsed(struct buf *b)
{
	struct mime_part *tree = mime_parse(b->data, b->len);

	buf_free(b);
	return tree;
}

static void
test_generated(void)
{
	struct mime_part *tree;
	struct buf b;
	const char *r, *q;
	size_t n;
	int i;

	buf_init(&b, SIZE_MAX);
	buf_append_str(&b, "Subject: deep\n");
	for (i = 1; i <= 200; i++)
		buf_printf(&b, "Content-Type: multipart/mixed; boundary=\"d%d\""
		    "\n\n--d%d\n", i, i);
	buf_append_str(&b, "Content-Type: text/plain\n\ndeep\n");
	for (i = 200; i >= 1; i--)
		buf_printf(&b, "--d%d--\n", i);
	tree = parsed(&b);
	r = bs(tree, true, 0);
	ok(strncmp(r, "INVALID", 7) != 0 && leading_parens(r) ==
	    MIME_MAX_DEPTH, "200 nested multiparts: valid, %d levels",
	    MIME_MAX_DEPTH);
	mime_part_free(&tree);

	buf_init(&b, SIZE_MAX);
	for (i = 0; i < 300; i++)
		buf_printf(&b, "From: f%d@x\nContent-Type: message/rfc822\n\n",
		    i);
	buf_append_str(&b, "Subject: bottom\n\nbody\n");
	tree = parsed(&b);
	r = bs(tree, true, 0);
	/* The part on level N (header f(N-1)) is opaque, but it is still
	 * the message inside level N-1, whose envelope it gives. */
	ok(strncmp(r, "INVALID", 7) != 0 && strstr(r, "\"f99\" \"x\"") !=
	    NULL && strstr(r, "\"f100\"") == NULL,
	    "300 nested message/rfc822: valid, envelopes down to the limit");
	mime_part_free(&tree);

	buf_init(&b, SIZE_MAX);
	buf_append_str(&b, "Content-Type: multipart/mixed; boundary=p\n\n");
	for (i = 0; i < MIME_MAX_PARTS - 1; i++)
		buf_printf(&b, "--p\n\n%d\n", i);
	buf_append_str(&b, "--p--\n");
	tree = parsed(&b);
	r = bs(tree, true, 0);
	for (n = 0, q = r; (q = strstr(q, "(\"text\" ")) != NULL; q++)
		n++;
	ok(strncmp(r, "INVALID", 7) != 0 && n == MIME_MAX_PARTS - 1,
	    "MIME_MAX_PARTS - 1 parts: valid, all written (%zu)", n);
	mime_part_free(&tree);
}

/* test_limit: BODYSTRUCTURE into a buffer of exactly its size, and one
 * byte less. */
static void
test_limit(void)
{
	char path[4600];
	unsigned char *data;
	size_t len, n;
	struct mime_part *tree;
	struct buf b;
	struct imap_write w;
	const char *err = NULL;

	snprintf(path, sizeof(path), "%s/t/data/imap/rfc822_nested.eml", top);
	if ((data = read_file(path, &len)) == NULL)
		bail("cannot read %s", path);
	tree = mime_parse(data, len);
	buf_init(&b, SIZE_MAX);
	item_write(&b, ITEM_BODYSTRUCTURE, 0, NULL, 0, tree);
	n = b.len;
	buf_free(&b);

	buf_init(&b, n);
	is_int(item_write(&b, ITEM_BODYSTRUCTURE, 0, NULL, 0, tree), 0,
	    "limit N: fits");
	is_int(b.len, n, "limit N: all of it");
	buf_free(&b);
	buf_init(&b, n - 1);
	imap_write_init(&w, &b, 0);
	is_int(imap_bodystruct_write(&w, tree, true), -1, "limit N - 1: -1");
	is_int(imap_write_finish(&w), -1, "limit N - 1: finish -1");
	is_int(b.len, 0, "limit N - 1: nothing left");
	buf_free(&b);

	{
		struct msg_info info;

		msg_parse(data, len, &info);
		buf_init(&b, n - 1);
		imap_write_init(&w, &b, 0);
		is_int(imap_bodystruct_write_blob(&w, info.mime.data,
		    info.mime.len, true, &err), -1, "blob, limit N - 1: -1");
		is_string(err, "response too large", "... says why");
		imap_write_finish(&w);
		buf_free(&b);
		msg_info_free(&info);
	}
	mime_part_free(&tree);
	free(data);
}

/* test_blobs: every strict prefix of a blob is refused with nothing
 * written; flipped bytes give a valid answer or a refusal, never a
 * crash. */
static void
test_blobs(void)
{
	char path[4600];
	unsigned char *data, *blob;
	size_t len, n, i, bad = 0, refused = 0;
	struct msg_info info;
	struct buf b;
	struct imap_write w;
	const char *err;
	int ret;

	snprintf(path, sizeof(path), "%s/t/data/imap/ext_fields.eml", top);
	if ((data = read_file(path, &len)) == NULL)
		bail("cannot read %s", path);
	msg_parse(data, len, &info);
	buf_init(&b, 1u << 20);
	for (n = 0; n < info.mime.len; n++) {
		/* An exact-size copy, so ASan catches a read past it. */
		blob = xmalloc(n == 0 ? 1 : n);
		memcpy(blob, info.mime.data, n);
		buf_truncate(&b, 0);
		imap_write_init(&w, &b, 0);
		err = NULL;
		ret = imap_bodystruct_write_blob(&w, blob, n, true, &err);
		if (ret != -1 || b.len != 0 || err == NULL ||
		    strcmp(err, "MIME structure in the index is corrupt") != 0)
			bad++;
		imap_write_finish(&w);
		free(blob);
	}
	is_int(bad, 0, "every strict prefix of a blob (%zu) refused, "
	    "nothing written", info.mime.len);
	bad = 0;
	for (i = 1; i < info.mime.len; i++) {
		blob = xmalloc(info.mime.len);
		memcpy(blob, info.mime.data, info.mime.len);
		blob[i] ^= 0x5a;
		buf_truncate(&b, 0);
		imap_write_init(&w, &b, 0);
		ret = imap_bodystruct_write_blob(&w, blob, info.mime.len, true,
		    &err);
		imap_write_finish(&w);
		if (ret < 0)
			refused += b.len == 0;
		else if (item_check(&b, ITEM_BODYSTRUCTURE, 0) != NULL)
			bad++;
		free(blob);
	}
	is_int(bad, 0, "flipped bytes: every accepted blob gives valid IMAP "
	    "(%zu refused)", refused);
	buf_free(&b);
	msg_info_free(&info);
	free(data);
}

int
main(void)
{
	const char *t = getenv("LOFT_TOP");

	snprintf(top, sizeof(top), "%s", t != NULL ? t : ".");
	update = getenv("IMAP_GOLDEN_UPDATE") != NULL;
	test_corpus();
	test_params();
	test_language();
	test_fields();
	test_depth();
	test_generated();
	test_limit();
	test_blobs();
	return done_testing();
}
