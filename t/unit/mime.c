/*
 * Unit tests for lib/mime.c: the corpus in t/data/mime (each NAME.eml with
 * its expected NAME.dump), generated messages for the limits (1 MB header
 * line, 200-deep nesting, depth and part limits at N and N+1), structural
 * invariants on every tree and on every prefix of every small message,
 * round trips through the binary form, and corrupt blobs.
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
#include "tap.h"

static const char *const corpus[] = {
	"simple", "alternative", "attachment", "nested", "rfc822", "digest",
	"rfc2231", "encoded_words", "missing_close", "missing_boundary",
	"preamble_epilogue", "crlf", "mixed_eol", "no_body", "no_separator",
	"empty", "nul", "eightbit", "boundary_prefix", "boundary_prefix_outer",
	"comments", "bare_cr", "header_at_boundary", "content_fields",
	"invalid_type", "same_boundary", "close_vs_longer", "no_parts",
	"from_line", "garbage", "empty_line_before_boundary",
};

static char datadir[4096];

/* read_file: the whole file in a buffer of exactly its size, so that ASan
 * catches any read past the end. NULL if it cannot be read. */
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

static unsigned char *
read_data(const char *name, const char *ext, size_t *len_r)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/%s.%s", datadir, name, ext);
	return read_file(path, len_r);
}

static char *
dump_of(const struct mime_part *part)
{
	struct buf out;
	char *s;

	buf_init(&out, SIZE_MAX);
	mime_dump(part, &out);
	s = xstrdup(buf_cstr(&out));
	buf_free(&out);
	return s;
}

/* is_dump: compare dumps, showing the first differing line on failure. */
static void
is_dump(const char *got, const char *want, const char *name)
{
	const char *g = got, *w = want;
	size_t line = 1;

	if (ok(strcmp(got, want) == 0, "%s: dump matches", name))
		return;
	while (*g != '\0' && *g == *w) {
		if (*g == '\n')
			line++;
		g++;
		w++;
	}
	diag("first difference on line %zu", line);
	diag("got:  %.300s", g);
	diag("want: %.300s", w);
}

static uint32_t
count_lines(const unsigned char *p, size_t n)
{
	uint32_t lines = 0;
	size_t i;

	for (i = 0; i < n; i++)
		lines += p[i] == '\n';
	return lines + (n > 0 && p[n - 1] != '\n');
}

static bool
is_lower_token(const char *s)
{
	for (; *s != '\0'; s++)
		if (*s >= 'A' && *s <= 'Z')
			return false;
	return true;
}

struct inv {
	const unsigned char *data;
	size_t len;
	size_t nparts;
	const char *why;	/* first broken invariant */
};

/* check_part: every invariant a tree from mime_parse must keep; in_message
 * says whether p is an encapsulated message. */
static void
check_part(struct inv *v, const struct mime_part *p, uint64_t lo, uint64_t hi,
    int level, bool in_message)
{
	uint64_t end = p->body_offset + p->body_psize, prev;
	bool multi, message;
	size_t i;

	v->nparts++;
#define INV(cond, msg) do { if (!(cond) && v->why == NULL) v->why = (msg); \
	} while (0)
	INV(level <= MIME_MAX_DEPTH, "depth over the limit");
	INV(p->type != NULL && p->subtype != NULL && p->encoding != NULL,
	    "NULL type, subtype or encoding");
	if (p->type == NULL || p->subtype == NULL || v->why != NULL)
		return;
	INV(is_lower_token(p->type) && is_lower_token(p->subtype),
	    "type not lowercased");
	INV(p->hdr_offset >= lo && p->hdr_offset + p->hdr_psize ==
	    p->body_offset && end <= hi && hi <= v->len, "ranges");
	if (v->why != NULL)
		return;
	INV(p->hdr_vsize == msg_vsize(v->data + p->hdr_offset, p->hdr_psize),
	    "header vsize");
	INV(p->body_vsize == msg_vsize(v->data + p->body_offset,
	    p->body_psize), "body vsize");
	INV(p->body_lines == count_lines(v->data + p->body_offset,
	    p->body_psize), "body lines");
	multi = strcmp(p->type, "multipart") == 0;
	message = strcmp(p->type, "message") == 0 &&
	    (strcmp(p->subtype, "rfc822") == 0 ||
	    strcmp(p->subtype, "global") == 0);
	INV(!multi || p->nchildren >= 1, "multipart without parts");
	INV(!message || p->nchildren == 1, "message without one child");
	INV(multi || message || p->nchildren == 0, "leaf with children");
	INV(p->envelope == NULL || (in_message && p->envelope_len > 0 &&
	    p->envelope_len <= p->hdr_psize), "envelope where none belongs");
	if (message && p->nchildren == 1)
		INV(p->children[0].hdr_offset == p->body_offset &&
		    p->children[0].body_offset + p->children[0].body_psize ==
		    end, "encapsulated message range");
	prev = p->body_offset;
	for (i = 0; i < p->nchildren; i++) {
		INV(p->children[i].hdr_offset >= prev, "children overlap");
		check_part(v, &p->children[i], p->body_offset, end, level + 1,
		    message);
		prev = p->children[i].body_offset + p->children[i].body_psize;
	}
#undef INV
}

static const char *
invariants(const unsigned char *data, size_t len, const struct mime_part *p)
{
	struct inv v = { data, len, 0, NULL };

	if (p->hdr_offset != 0 || p->body_offset + p->body_psize != len)
		return "root does not cover the message";
	check_part(&v, p, 0, len, 1, false);
	if (v.why == NULL && v.nparts > MIME_MAX_PARTS)
		return "too many parts";
	return v.why;
}

/* round_trip: serialize, deserialize, compare dumps and bytes; then every
 * truncation of the blob must be refused. Returns the blob length. */
static size_t
round_trip(const struct mime_part *tree, const char *name, bool truncations)
{
	struct buf blob, again;
	struct mime_part *copy = NULL;
	char *d1, *d2;
	size_t n, refused = 0;

	buf_init(&blob, SIZE_MAX);
	buf_init(&again, SIZE_MAX);
	is_int(mime_serialize(tree, &blob), 0, "%s: serialize", name);
	is_int(mime_deserialize(blob.data, blob.len, &copy), 0,
	    "%s: deserialize", name);
	if (copy != NULL) {
		d1 = dump_of(tree);
		d2 = dump_of(copy);
		is_string(d2, d1, "%s: round trip keeps the tree", name);
		mime_serialize(copy, &again);
		is_mem(again.data, again.len, blob.data, blob.len,
		    "%s: round trip keeps the bytes", name);
		free(d1);
		free(d2);
		mime_part_free(&copy);
	}
	if (truncations) {
		for (n = 0; n < blob.len; n++) {
			unsigned char *t = xmalloc(n == 0 ? 1 : n);

			memcpy(t, blob.data, n);
			if (mime_deserialize(t, n, &copy) < 0 && copy == NULL)
				refused++;
			mime_part_free(&copy);
			free(t);
		}
		is_int(refused, blob.len, "%s: all %zu truncations refused",
		    name, blob.len);
	}
	n = blob.len;
	buf_free(&blob);
	buf_free(&again);
	return n;
}

/* prefixes: parse every prefix of data, each in a buffer of its exact
 * size, and check the invariants. */
static void
prefixes(const unsigned char *data, size_t len, const char *name)
{
	struct mime_part *tree;
	const char *why = NULL;
	size_t n, bad = (size_t)-1;

	for (n = 0; n <= len && why == NULL; n++) {
		unsigned char *p = xmalloc(n == 0 ? 1 : n);

		memcpy(p, data, n);
		tree = mime_parse(p, n);
		if ((why = invariants(p, n, tree)) != NULL)
			bad = n;
		mime_part_free(&tree);
		free(p);
	}
	if (!ok(why == NULL, "%s: every prefix (%zu) parses sanely", name,
	    len + 1))
		diag("prefix of %zu bytes: %s", bad, why);
}

static void
test_corpus(void)
{
	size_t i, len, dlen;
	unsigned char *data, *want;
	struct mime_part *tree;
	const char *why;
	char *got;

	for (i = 0; i < sizeof(corpus) / sizeof(corpus[0]); i++) {
		data = read_data(corpus[i], "eml", &len);
		want = read_data(corpus[i], "dump", &dlen);
		if (data == NULL || want == NULL)
			bail("cannot read %s/%s.eml or .dump", datadir,
			    corpus[i]);
		want = xrealloc(want, dlen + 1);
		want[dlen] = '\0';
		tree = mime_parse(data, len);
		got = dump_of(tree);
		is_dump(got, (const char *)want, corpus[i]);
		why = invariants(data, len, tree);
		if (!ok(why == NULL, "%s: invariants", corpus[i]))
			diag("%s", why);
		round_trip(tree, corpus[i], true);
		prefixes(data, len, corpus[i]);
		free(got);
		mime_part_free(&tree);
		free(want);
		free(data);
	}
}

/*
 * Generated messages
 */

/* nested_multiparts: n multiparts each inside the previous one, then a
 * text part, then the closing boundaries. */
static unsigned char *
nested_multiparts(int n, size_t *len_r)
{
	struct buf b;
	int i;

	buf_init(&b, SIZE_MAX);
	buf_append_str(&b, "Subject: deep\n");
	for (i = 1; i <= n; i++)
		buf_printf(&b, "Content-Type: multipart/mixed; boundary=\"d%d\""
		    "\n\n--d%d\n", i, i);
	buf_append_str(&b, "Content-Type: text/plain\n\ndeep\n");
	for (i = n; i >= 1; i--)
		buf_printf(&b, "--d%d--\n", i);
	return buf_steal(&b, len_r);
}

static int
tree_depth(const struct mime_part *p)
{
	int d = 0, c;
	size_t i;

	for (i = 0; i < p->nchildren; i++)
		if ((c = tree_depth(&p->children[i])) > d)
			d = c;
	return d + 1;
}

static const struct mime_part *
deepest(const struct mime_part *p)
{
	while (p->nchildren > 0)
		p = &p->children[p->nchildren - 1];
	return p;
}

static void
test_golden_generated(const char *name, unsigned char *data, size_t len)
{
	struct mime_part *tree = mime_parse(data, len);
	unsigned char *want;
	size_t dlen;
	const char *why;
	char *got;

	if ((want = read_data(name, "dump", &dlen)) == NULL)
		bail("cannot read %s/%s.dump", datadir, name);
	want = xrealloc(want, dlen + 1);
	want[dlen] = '\0';
	got = dump_of(tree);
	is_dump(got, (const char *)want, name);
	why = invariants(data, len, tree);
	if (!ok(why == NULL, "%s: invariants", name))
		diag("%s", why);
	round_trip(tree, name, false);
	free(got);
	free(want);
	mime_part_free(&tree);
}

static void
test_deep(void)
{
	struct mime_part *tree;
	unsigned char *data;
	size_t len;

	data = nested_multiparts(200, &len);
	test_golden_generated("deep200", data, len);
	free(data);

	/* 99 multiparts and a text part: 100 levels, all parsed. */
	data = nested_multiparts(MIME_MAX_DEPTH - 1, &len);
	tree = mime_parse(data, len);
	is_int(tree_depth(tree), MIME_MAX_DEPTH, "depth N: %d levels",
	    MIME_MAX_DEPTH);
	is_string(deepest(tree)->type, "text", "depth N: leaf is the text");
	is_int(deepest(tree)->body_psize, 4, "depth N: leaf body is \"deep\"");
	mime_part_free(&tree);
	free(data);

	/* 100 multiparts: the last one would need level 101. */
	data = nested_multiparts(MIME_MAX_DEPTH, &len);
	tree = mime_parse(data, len);
	is_int(tree_depth(tree), MIME_MAX_DEPTH, "depth N+1: still %d levels",
	    MIME_MAX_DEPTH);
	is_string(deepest(tree)->type, "text", "depth N+1: opaque text");
	ok(deepest(tree)->nparams == 1 &&
	    strcmp(deepest(tree)->params[0].value, "us-ascii") == 0,
	    "depth N+1: with the default parameters");
	ok(deepest(tree)->body_psize > 4 && memcmp(data +
	    deepest(tree)->body_offset, "--d100\n", 7) == 0,
	    "depth N+1: its body holds the unparsed part");
	mime_part_free(&tree);
	free(data);
}

/* A chain of message/rfc822 parts, deeper than the limit. */
static void
test_deep_messages(void)
{
	struct buf b;
	struct mime_part *tree;
	unsigned char *data;
	size_t len;
	int i;

	buf_init(&b, SIZE_MAX);
	for (i = 0; i < 300; i++)
		buf_append_str(&b, "Content-Type: message/rfc822\n\n");
	buf_append_str(&b, "Subject: bottom\n\nbody\n");
	data = buf_steal(&b, &len);
	tree = mime_parse(data, len);
	is_int(tree_depth(tree), MIME_MAX_DEPTH, "message/rfc822 chain: %d "
	    "levels", MIME_MAX_DEPTH);
	is_string(deepest(tree)->type, "text", "message/rfc822 chain: "
	    "opaque at the bottom");
	ok(invariants(data, len, tree) == NULL, "message/rfc822 chain: "
	    "invariants");
	is_int(deepest(tree)->body_offset + deepest(tree)->body_psize, len,
	    "message/rfc822 chain: all end at the end");
	mime_part_free(&tree);
	free(data);
}

static unsigned char *
long_line_message(size_t *len_r)
{
	struct buf b;
	size_t i;

	buf_init(&b, SIZE_MAX);
	buf_append_str(&b, "From: a@example.org\nX-Long: ");
	for (i = 0; i < 1024 * 1024; i++)
		buf_append_byte(&b, "abcdefg "[i % 8]);
	buf_append_str(&b, "\nContent-Type: multipart/mixed; boundary=\"L\""
	    "\n\n--L\nContent-Type: text/plain; charset=utf-8");
	/* A 1 MB Content-Type: the same parameter 180,000 times. */
	for (i = 0; i < 180000; i++)
		buf_printf(&b, ";\n a=%zu", i % 10);
	buf_append_str(&b, "\n\nshort\n--L\n\n");
	/* A 1 MB body line with no line ending at all. */
	for (i = 0; i < 1024 * 1024; i++)
		buf_append_byte(&b, 'z');
	return buf_steal(&b, len_r);
}

static void
test_long_line(void)
{
	unsigned char *data;
	size_t len;

	data = long_line_message(&len);
	test_golden_generated("longline", data, len);
	free(data);
}

/* n parts in one multipart: with the root, n + 1 parts. */
static unsigned char *
many_parts(size_t n, size_t *len_r)
{
	struct buf b;
	size_t i;

	buf_init(&b, SIZE_MAX);
	buf_append_str(&b, "Content-Type: multipart/mixed; boundary=p\n\n");
	for (i = 0; i < n; i++)
		buf_printf(&b, "--p\n\n%zu\n", i);
	buf_append_str(&b, "--p--\nepilogue\n");
	return buf_steal(&b, len_r);
}

static void
test_part_limit(void)
{
	struct mime_part *tree;
	unsigned char *data;
	size_t len;

	data = many_parts(MIME_MAX_PARTS - 1, &len);
	tree = mime_parse(data, len);
	is_int(tree->nchildren, MIME_MAX_PARTS - 1, "parts N: all parsed");
	ok(invariants(data, len, tree) == NULL, "parts N: invariants");
	round_trip(tree, "parts N", false);
	mime_part_free(&tree);
	free(data);

	data = many_parts(MIME_MAX_PARTS, &len);
	tree = mime_parse(data, len);
	is_int(tree->nchildren, MIME_MAX_PARTS - 1, "parts N+1: one left out");
	is_int(tree->body_offset + tree->body_psize, len,
	    "parts N+1: the rest stays in the body");
	ok(invariants(data, len, tree) == NULL, "parts N+1: invariants");
	mime_part_free(&tree);
	free(data);
}

/*
 * Specific rules, asserted on the tree rather than on a dump
 */

static struct mime_part *
parse_str(const char *s)
{
	return mime_parse((const unsigned char *)s, strlen(s));
}

static const char *
param(const struct mime_param *params, size_t n, const char *name,
    const char **charset_r)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (strcmp(params[i].name, name) == 0) {
			if (charset_r != NULL)
				*charset_r = params[i].charset;
			return params[i].value;
		}
	}
	return NULL;
}

/* The envelope of an encapsulated message: its ENVELOPE fields, raw and
 * in order, NUL bytes included, kept through the binary form. */
static void
test_envelope(void)
{
	static const char m[] = "Subject: outer\nContent-Type: message/rfc822"
	    "\n\nReceived: x\nSUBJECT: a\0b\n folded\r\nContent-Type: text/"
	    "plain\nto: t@example.org\r\nX-Other: y\n\nbody\n";
	static const char env[] = "SUBJECT: a\0b\n folded\r\n"
	    "to: t@example.org\r\n";
	struct mime_part *t, *copy = NULL;
	struct buf blob;

	t = mime_parse((const unsigned char *)m, sizeof(m) - 1);
	ok(t->envelope == NULL, "the root has no envelope (msg_info has it)");
	is_mem(t->children[0].envelope, t->children[0].envelope_len, env,
	    sizeof(env) - 1, "envelope fields of the encapsulated message");
	buf_init(&blob, SIZE_MAX);
	mime_serialize(t, &blob);
	mime_deserialize(blob.data, blob.len, &copy);
	ok(copy != NULL && copy->children[0].envelope_len == sizeof(env) - 1 &&
	    memcmp(copy->children[0].envelope, env, sizeof(env) - 1) == 0,
	    "envelope with a NUL survives the binary form");
	buf_free(&blob);
	mime_part_free(&copy);
	mime_part_free(&t);
}

static void
test_rules(void)
{
	struct mime_part *t;
	const char *cs = "unset";

	t = parse_str("Content-Type: multipart/mixed; boundary=b\n\n"
	    "--b\n\none\n--b \t \n\ntwo\n--b--");
	is_int(t->nchildren, 2, "trailing white space after a boundary");
	is_int(t->children[1].body_psize, 3, "closing boundary at the end "
	    "without a line ending");
	mime_part_free(&t);

	t = parse_str("Content-Type: multipart/mixed; boundary=b\n\n"
	    "--b\n\none\n--bx\n--b-\n--b --\n--b--x\n");
	is_int(t->nchildren, 1, "junk after a boundary: not a boundary");
	is_int(t->children[0].body_psize, 4 + 5 + 5 + 7 + 7, "so the part "
	    "runs on to the end");
	mime_part_free(&t);

	t = parse_str("Content-Type: multipart/mixed; boundary=b\n\n"
	    "--B\n --b\nx--b\n--b\n\nin\n--b--\n");
	is_int(t->nchildren, 1, "boundaries are case-sensitive and at line "
	    "start");
	is_int(t->children[0].body_psize, 2, "the one real part");
	mime_part_free(&t);

	t = parse_str("Content-Type: text/plain; name=\"a\\\\b\\\"c\"; "
	    "x=\"unterminated\n\n");
	is_string(param(t->params, t->nparams, "name", NULL), "a\\b\"c",
	    "quoted-string backslash escapes");
	is_string(param(t->params, t->nparams, "x", NULL), "unterminated",
	    "an unterminated quoted string runs to the end");
	mime_part_free(&t);

	t = parse_str("Content-Type: application/x; f*=UTF-8'de'%41%42;"
	    " g*0*=%43; g*1*=%44\n\n");
	is_string(param(t->params, t->nparams, "f", &cs), "AB",
	    "RFC 2231 name*=");
	is_string(cs, "UTF-8", "RFC 2231 charset kept as written");
	cs = "unset";
	is_string(param(t->params, t->nparams, "g", &cs), "CD",
	    "RFC 2231 sections without a charset prefix");
	ok(cs == NULL, "... have no charset");
	mime_part_free(&t);

	t = parse_str("Content-Type: multipart/digest; boundary=d\n\n"
	    "--d\nContent-Type: multipart/mixed; boundary=e\n\n--e\n\n"
	    "inner\n--e--\n--d--\n");
	is_string(t->children[0].children[0].type, "text",
	    "the digest default does not reach grandchildren");
	mime_part_free(&t);

	t = parse_str("Content-Type: multipart/mixed; boundary=\"\"\n\n--\n"
	    "\nx\n----\n");
	is_string(t->type, "text", "an empty boundary is no boundary");
	mime_part_free(&t);

	test_envelope();

	t = mime_parse(NULL, 0);
	is_int(t->body_psize + t->hdr_psize, 0, "NULL data, length 0");
	mime_part_free(&t);
	mime_part_free(&t);
	ok(t == NULL, "mime_part_free clears the pointer and takes NULL");
}

/*
 * Blobs
 */

static void
test_blobs(void)
{
	struct mime_part *t, *copy = NULL;
	struct buf blob, small;
	unsigned char bad[64], *mut;
	size_t i;
	int bit, accepted = 0;

	t = parse_str("Content-Type: multipart/mixed; boundary=b\n\n--b\n"
	    "Content-Disposition: attachment; filename*=utf-8''x\n\nhi\n"
	    "--b--\n");
	buf_init(&blob, SIZE_MAX);
	mime_serialize(t, &blob);
	is_int(blob.data[0], MIME_SERIAL_VERSION, "blob starts with the "
	    "version");

	buf_init(&small, blob.len - 1);
	buf_append(&small, "x", 1);
	is_int(mime_serialize(t, &small), -1, "serialize past max fails");
	is_int(small.len, 1, "... and leaves out as it was");
	buf_free(&small);
	buf_init(&small, blob.len);
	is_int(mime_serialize(t, &small), 0, "serialize at max exactly");
	buf_free(&small);

	mut = xmalloc(blob.len + 1);
	memcpy(mut, blob.data, blob.len);
	mut[0] = MIME_SERIAL_VERSION + 1;
	is_int(mime_deserialize(mut, blob.len, &copy), -1, "unknown version "
	    "refused");
	ok(copy == NULL, "... and *part_r is NULL");
	mut[0] = MIME_SERIAL_VERSION;
	mut[blob.len] = 0;
	is_int(mime_deserialize(mut, blob.len + 1, &copy), -1, "trailing "
	    "byte refused");

	/* Every single-bit flip: refused or a tree, never a crash. */
	for (i = 1; i < blob.len; i++) {
		for (bit = 0; bit < 8; bit++) {
			mut[i] = blob.data[i] ^ (unsigned char)(1 << bit);
			if (mime_deserialize(mut, blob.len, &copy) == 0)
				accepted++;
			mime_part_free(&copy);
			mut[i] = blob.data[i];
		}
	}
	ok(1, "%zu bit flips survived (%d decoded)", blob.len * 8, accepted);
	free(mut);

	/* Hand-made: a string holding NUL; a huge count; an overlong
	 * varint; a depth over the limit. */
	memcpy(bad, "\x01\x01\x00", 3);
	is_int(mime_deserialize(bad, 3, &copy), -1, "NUL in a string refused");
	memcpy(bad, "\x01\x01" "a\x01" "b\xff\xff\xff\xff\x0f", 10);
	is_int(mime_deserialize(bad, 10, &copy), -1, "huge parameter count "
	    "refused before allocating");
	memset(bad, 0xff, sizeof(bad));
	bad[0] = MIME_SERIAL_VERSION;
	is_int(mime_deserialize(bad, sizeof(bad), &copy), -1, "endless varint "
	    "refused");

	buf_free(&blob);
	mime_part_free(&t);
}

/* A chain of n message/rfc822 parts built by hand (no parser limit). */
static struct mime_part *
chain(int n)
{
	struct mime_part *root = xcalloc(1, sizeof(*root)), *p = root;
	int i;

	for (i = 0; i < n; i++) {
		p->type = xstrdup("message");
		p->subtype = xstrdup("rfc822");
		if (i + 1 < n) {
			p->children = xcalloc(1, sizeof(*p));
			p->nchildren = 1;
			p = p->children;
		}
	}
	return root;
}

static void
test_blob_depth(void)
{
	struct mime_part *t, *copy = NULL;
	struct buf blob;

	buf_init(&blob, SIZE_MAX);
	t = chain(MIME_MAX_DEPTH);
	is_int(mime_serialize(t, &blob), 0, "serialize at depth N");
	is_int(mime_deserialize(blob.data, blob.len, &copy), 0,
	    "deserialize at depth N");
	mime_part_free(&copy);
	mime_part_free(&t);
	buf_truncate(&blob, 0);
	t = chain(MIME_MAX_DEPTH + 1);
	is_int(mime_serialize(t, &blob), -1, "serialize refuses depth N+1");
	is_int(blob.len, 0, "... writing nothing");
	mime_part_free(&t);
	buf_free(&blob);
}

static uint64_t
xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* mutate: insert four MIME-ish tokens at random places in m[0..*n),
 * sometimes cutting the end; m has room for them. */
static void
mutate(unsigned char *m, size_t *n, uint64_t *x)
{
	static const char *const tokens[] = { "\n", "\r\n", "--", "--b\n",
	    "\n\n", "Content-Type: multipart/mixed; boundary=b\n",
	    "Content-Type: message/rfc822\n\n", "\"", "(", ";", "*0*=",
	    "%", "\r", "--b--", "\0" };
	size_t k, at, tl, ntok = sizeof(tokens) / sizeof(tokens[0]);
	uint64_t r;

	for (k = 0; k < 4; k++) {
		r = xorshift(x);
		/* The last token is a NUL byte, which strlen cannot see. */
		tl = r % ntok == ntok - 1 ? 1 : strlen(tokens[r % ntok]);
		at = *n == 0 ? 0 : (size_t)(r >> 20) % *n;
		memmove(m + at + tl, m + at, *n - at);
		memcpy(m + at, tokens[r % ntok], tl);
		*n += tl;
		if ((r >> 8) % 3 == 0 && *n > 0)
			*n -= (size_t)(r >> 32) % (*n < 16 ? *n : 16);
	}
}

/* A deterministic mutation fuzzer over the corpus: no crash (ASan), every
 * tree keeps the invariants and round-trips. */
static void
test_mutations(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	const char *why = NULL;
	size_t i, len, n, bad = 0, ncorpus = sizeof(corpus) / sizeof(corpus[0]);
	unsigned char *data, *m;
	struct mime_part *t, *copy;
	struct buf blob;

	for (i = 0; i < 3000 && why == NULL; i++) {
		data = read_data(corpus[i % ncorpus], "eml", &len);
		m = xmalloc(len + 64 * 8);
		memcpy(m, data, len);
		n = len;
		mutate(m, &n, &x);
		t = mime_parse(m, n);
		if ((why = invariants(m, n, t)) != NULL)
			bad = i;
		buf_init(&blob, SIZE_MAX);
		copy = NULL;
		if (why == NULL && (mime_serialize(t, &blob) < 0 ||
		    mime_deserialize(blob.data, blob.len, &copy) < 0))
			why = "round trip";
		buf_free(&blob);
		mime_part_free(&copy);
		mime_part_free(&t);
		free(m);
		free(data);
	}
	if (!ok(why == NULL, "3000 mutated messages keep the invariants"))
		diag("mutation %zu: %s", bad, why);
}

int
main(void)
{
	const char *top = getenv("LOFT_TOP");

	snprintf(datadir, sizeof(datadir), "%s/t/data/mime",
	    top != NULL ? top : ".");
	test_corpus();
	test_deep();
	test_deep_messages();
	test_long_line();
	test_part_limit();
	test_rules();
	test_blobs();
	test_blob_depth();
	test_mutations();
	return done_testing();
}
