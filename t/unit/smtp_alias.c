/*
 * Unit tests for smtp/smtp_alias.c: the aliases(5) parser (every form of
 * name and value, continuation lines, comments, quoting, each error with
 * its line number, limits at N and N+1, the same results fed a byte at a
 * time and in odd chunks), compilation into LMDB and lookups on a
 * temporary directory (refused sources, duplicates, atomic replacement
 * seen through a map that stays open), and expansion: address
 * extensions, recursion, loops, the depth and size limits, include files
 * (good, missing, too big, too many values, unsafe, including
 * themselves) and owner- aliases.
 */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "buf.h"
#include "conf.h"
#include "log.h"
#include "smtp/smtp_alias.h"
#include "tap.h"

static char dir[] = "/tmp/loft-alias-XXXXXX";

/* ---- Helpers ---- */

static char *
path_in(const char *name)
{
	static char paths[8][512];
	static int next;
	char *p = paths[next++ % 8];

	snprintf(p, 512, "%s/%s", dir, name);
	return p;
}

static void
write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd;

	unlink(path);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0 ||
	    write(fd, data, len) != (ssize_t)len || fchmod(fd, mode) < 0 ||
	    close(fd) < 0)
		bail("write %s: %s", path, strerror(errno));
}

static void
write_text(const char *path, const char *text, mode_t mode)
{
	write_file(path, text, strlen(text), mode);
}

/* Standard error captured into a file, for the warnings of compile. */
static int capture_fd = -1, saved_stderr = -1;

static void
capture_begin(void)
{
	fflush(stderr);
	capture_fd = open(path_in("stderr"), O_RDWR | O_CREAT | O_TRUNC, 0600);
	saved_stderr = dup(STDERR_FILENO);
	dup2(capture_fd, STDERR_FILENO);
}

/* capture_end: what was written (static buffer). */
static const char *
capture_end(void)
{
	static char text[65536];
	ssize_t n;

	fflush(stderr);
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	n = pread(capture_fd, text, sizeof(text) - 1, 0);
	text[n > 0 ? n : 0] = '\0';
	close(capture_fd);
	return text;
}

/* Parsing results as text: "name@line: kind:text, ..." per entry and
 * "W msg" per warning, one per line. */
static void
collect_entry(const struct smtp_alias_entry *e, void *ctx)
{
	struct buf *b = ctx;

	buf_printf(b, "%s@%u:", e->name, e->line);
	for (size_t i = 0; i < e->count; i++)
		buf_printf(b, " %s%s:%s", e->values[i].noexpand ? "\\" : "",
		    smtp_alias_kind_name(e->values[i].kind),
		    e->values[i].text);
	buf_append_str(b, "\n");
}

static void
collect_warning(unsigned int line, const char *msg, void *ctx)
{
	struct buf *b = ctx;

	(void)line;
	buf_printf(b, "W %s\n", msg);
}

/* parse: the results for data fed in pieces of step bytes (0: all at
 * once); a newly allocated string. */
static char *
parse_n(const void *data, size_t len, size_t step)
{
	struct smtp_alias_parser *p;
	struct buf b;

	buf_init(&b, 64 * 1024 * 1024);
	p = smtp_alias_parser_new("f", collect_entry, collect_warning, &b);
	if (step == 0)
		step = len;
	for (size_t off = 0; off < len; off += step)
		smtp_alias_parser_feed(p, (const unsigned char *)data + off,
		    len - off < step ? len - off : step);
	smtp_alias_parser_finish(p);
	smtp_alias_parser_free(&p);
	buf_append_byte(&b, 0);
	return (char *)buf_steal(&b, NULL);
}

/* Checks that whole, byte-at-a-time and 7-byte feeding agree, and
 * returns the result (static copy). */
static const char *
parse(const char *text)
{
	static char *last;
	char *one = parse_n(text, strlen(text), 1);
	char *seven = parse_n(text, strlen(text), 7);

	free(last);
	last = parse_n(text, strlen(text), 0);
	if (strcmp(one, last) != 0 || strcmp(seven, last) != 0)
		diag("feeding in pieces differs:\n%s---\n%s", one, last);
	ok(strcmp(one, last) == 0 && strcmp(seven, last) == 0,
	    "  same result fed byte by byte and in 7-byte pieces");
	free(one);
	free(seven);
	return last;
}

static int
compile(const char *src, const char *db, unsigned int *entries,
    unsigned int *warnings, const char **err)
{
	unsigned int e = 0, w = 0;
	int ret = smtp_alias_compile(path_in(src), path_in(db), &e, &w, err);

	if (entries != NULL)
		*entries = e;
	if (warnings != NULL)
		*warnings = w;
	return ret;
}

/* compile_text: write src and compile it to src.lmdb; must work. */
static void
compile_text(const char *src, const char *text)
{
	char db[256];
	const char *err;

	write_text(path_in(src), text, 0644);
	snprintf(db, sizeof(db), "%s.lmdb", src);
	capture_begin();
	if (compile(src, db, NULL, NULL, &err) < 0) {
		capture_end();
		bail("compile %s: %s", src, err);
	}
	capture_end();
}

static struct smtp_alias_map *
open_map(const char *db)
{
	struct smtp_alias_map *map;
	const char *err;

	if (smtp_alias_open(path_in(db), &map, &err) < 0)
		bail("open %s: %s", db, err);
	return map;
}

/* expand: "ret|kind value [owner=...] [(reason)]; ..." for local. */
static const char *
expand_d(struct smtp_alias_map *map, const char *local, const char *delim,
    const char *domain)
{
	static char out[1 << 20];
	struct smtp_alias_target *t;
	const char *err;
	size_t n, len;
	int ret;

	ret = smtp_alias_expand(map, local, delim, domain, &t, &n, &err);
	if (ret < 0) {
		snprintf(out, sizeof(out), "-1 %s", err);
		return out;
	}
	if (ret == 0)
		return "0";
	snprintf(out, sizeof(out), "1|");
	for (size_t i = 0; i < n; i++) {
		len = strlen(out);
		snprintf(out + len, sizeof(out) - len, "%s%s %s%s%s%s%s%s",
		    i > 0 ? "; " : "", smtp_alias_kind_name(t[i].kind),
		    t[i].value, t[i].owner != NULL ? " owner=" : "",
		    t[i].owner != NULL ? t[i].owner : "",
		    t[i].reason != NULL ? " (" : "",
		    t[i].reason != NULL ? t[i].reason : "",
		    t[i].reason != NULL ? (t[i].temporary ? ", temporary)" :
		    ")") : "");
	}
	smtp_alias_targets_free(t, n);
	return out;
}

static const char *
expand(struct smtp_alias_map *map, const char *local)
{
	return expand_d(map, local, "+", NULL);
}

/* count_targets: how many targets local expands to (-1 on error). */
static long
count_targets(struct smtp_alias_map *map, const char *local,
    const char **err)
{
	struct smtp_alias_target *t;
	size_t n;
	int ret = smtp_alias_expand(map, local, NULL, NULL, &t, &n, err);

	if (ret <= 0)
		return ret;
	smtp_alias_targets_free(t, n);
	return (long)n;
}

/* ---- The parser ---- */

static void
test_forms(void)
{
	is_string(parse(
	    "root: alice\n"
	    "Staff: bob, carol@Example.ORG, \"dave x\"@EXAMPLE.net\n"
	    "cmd: |/usr/bin/prog, \"|/usr/bin/prog --flag x\"\n"
	    "files: /var/log/mail.copy, \"/var/spool/with space\"\n"
	    "lists: :include:/etc/mail/list, :INCLUDE:/etc/mail/other\n"
	    "direct: \\bob, <eve@example.com>, <frank>\n"
	    "\"quoted name\": x\n"
	    "\"a\\\"b\": y\n"
	    "mixed:a,b , c  ,d\n"
	    "trail: a, b,\n"
	    "hash: a#b\n"
	    "unq: |/bin/sh -c \"echo a, b\"\n"
	    "spaced  : \"z\"\n"),
	    "root@1: address:alice\n"
	    "staff@2: address:bob address:carol@example.org "
	    "address:\"dave x\"@example.net\n"
	    "cmd@3: command:/usr/bin/prog command:/usr/bin/prog --flag x\n"
	    "files@4: file:/var/log/mail.copy file:/var/spool/with space\n"
	    "lists@5: include:/etc/mail/list include:/etc/mail/other\n"
	    "direct@6: \\address:bob address:eve@example.com address:frank\n"
	    "quoted name@7: address:x\n"
	    "a\"b@8: address:y\n"
	    "mixed@9: address:a address:b address:c address:d\n"
	    "trail@10: address:a address:b\n"
	    "hash@11: address:a#b\n"
	    "unq@12: command:/bin/sh -c \"echo a, b\"\n"
	    "spaced@13: address:z\n",
	    "every form of name and value");
}

static void
test_lines(void)
{
	is_string(parse(
	    "# a comment\n"
	    "\n"
	    "list: a,\n"
	    "\tb,\n"
	    "   # an indented comment inside the entry\n"
	    "\n"
	    "  c\n"
	    "   \n"
	    "next: d\n"
	    "last: e"),
	    "list@3: address:a address:b address:c\n"
	    "next@9: address:d\n"
	    "last@10: address:e\n",
	    "continuation lines; comments and blank lines between them; a "
	    "last line without newline");
	is_string(parse("a: x\r\n\r\nb: y,\r\n  z\r\n"),
	    "a@1: address:x\nb@3: address:y address:z\n",
	    "CRLF line ends");
	is_string(parse("  stray: x\n  more\nok: y\n"),
	    "W f:1: continuation line without an entry above: skipped\n"
	    "ok@3: address:y\n",
	    "an indented first line is reported once, with what continues "
	    "it");
	is_string(parse(""), "", "an empty file has nothing");
	is_string(parse("#only\n  #comments\n\n"), "",
	    "comments only: nothing");
}

static void
test_errors(void)
{
	is_string(parse(
	    "ok1: a\n"
	    "nocolon a\n"
	    ": a\n"
	    "\"open: a\n"
	    "bad@name: a\n"
	    "empty:\n"
	    "empty2: , ,\n"
	    "space: bob smith\n"
	    "file: /a b\n"
	    "inc: :include:relative\n"
	    "cmd: |\n"
	    "q: \"a\"b\n"
	    "uq: \"a, b\n"
	    "at: \"x@y\"\n"
	    "dom: a@b..c\n"
	    "dom2: a@\n"
	    "slash: \\a@b\n"
	    "ctl: a\001b\n"
	    "ok2: z\n"),
	    "ok1@1: address:a\n"
	    "W f:2: missing ':' after the name: \"nocolon a\": entry skipped\n"
	    "W f:3: empty name: \": a\": entry skipped\n"
	    "W f:4: unbalanced quote in the name: \"\\\"open: a\": entry "
	    "skipped\n"
	    "W f:5: a name has no domain ('@'): \"bad@name: a\": entry "
	    "skipped\n"
	    "W f:6: alias \"empty\": no value: entry skipped\n"
	    "W f:7: alias \"empty2\": no value: entry skipped\n"
	    "W f:8: alias \"space\": white space in an address (a missing "
	    "comma?): \"bob smith\": entry skipped\n"
	    "W f:9: alias \"file\": white space in a file name (quote it, "
	    "or a missing comma?): \"/a b\": entry skipped\n"
	    "W f:10: alias \"inc\": an include file needs an absolute path: "
	    "\":include:relative\": entry skipped\n"
	    "W f:11: alias \"cmd\": empty command: \"|\": entry skipped\n"
	    "W f:12: alias \"q\": text after a quoted string: \"\\\"a\\\"b\": "
	    "entry skipped\n"
	    "W f:13: alias \"uq\": unbalanced quote in \"\\\"a, b\": entry "
	    "skipped\n"
	    "W f:14: alias \"at\": '@' inside a quoted local name: "
	    "\"\\\"x@y\\\"\": entry skipped\n"
	    "W f:15: alias \"dom\": bad domain in an address: \"a@b..c\": "
	    "entry skipped\n"
	    "W f:16: alias \"dom2\": bad domain in an address: \"a@\": "
	    "entry skipped\n"
	    "W f:17: alias \"slash\": bad local name after '\\': \"\\\\a@b\": "
	    "entry skipped\n"
	    "W f:18: alias \"ctl\": control character: \"a\\001b\": entry "
	    "skipped\n"
	    "ok2@19: address:z\n",
	    "each error reported with its line, the entry skipped, the rest "
	    "kept");
	is_string(parse("a\001b: x\nok: y\n"),
	    "W f:1: control character in the name: \"a\\001b: x\": entry "
	    "skipped\nok@2: address:y\n",
	    "a control character in a name");
	{
		static const char nul[] = "ok: a\nbad: b\0c,\n  d\nok2: e\n";
		char *got = parse_n(nul, sizeof(nul) - 1, 0);
		char *one = parse_n(nul, sizeof(nul) - 1, 1);

		is_string(got, "ok@1: address:a\n"
		    "W f:2: NUL byte in the entry: entry skipped\n"
		    "ok2@4: address:e\n",
		    "a NUL byte skips its entry (continuation included)");
		is_string(one, got, "  the same byte by byte");
		free(got);
		free(one);
	}
	is_string(parse("multi: a,\n  \"b\n  c\"\nnext: d\n"),
	    "multi@1: address:a address:b  c\nnext@4: address:d\n",
	    "a quoted local name may span a continuation (joined with "
	    "spaces)");
}

/* A name of n bytes. */
static char *
repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static void
test_limits(void)
{
	char *name, *text, *got, want[512];

	/* A logical line of exactly SMTP_ALIAS_LINE_MAX bytes: "big: x,"
	 * then names of a's with a comma every 60 bytes; then one more. */
	text = repeat('a', SMTP_ALIAS_LINE_MAX);
	memcpy(text, "big: x,", 7);
	for (size_t i = 7; i < SMTP_ALIAS_LINE_MAX; i += 60)
		if (i + 1 < SMTP_ALIAS_LINE_MAX)
			text[i] = ',';
	text[SMTP_ALIAS_LINE_MAX - 1] = 'z';
	got = parse_n(text, SMTP_ALIAS_LINE_MAX, 0);
	ok(strncmp(got, "big@1: address:x address:a", 26) == 0 &&
	    strstr(got, "W ") == NULL,
	    "a logical line of %d bytes is read", SMTP_ALIAS_LINE_MAX);
	free(got);
	text = realloc(text, SMTP_ALIAS_LINE_MAX + 1);
	text[SMTP_ALIAS_LINE_MAX] = 'z';
	got = parse_n(text, SMTP_ALIAS_LINE_MAX + 1, 0);
	snprintf(want, sizeof(want), "W f:1: entry longer than %d bytes: "
	    "entry skipped\n", SMTP_ALIAS_LINE_MAX);
	is_string(got, want, "one byte more is skipped with a warning");
	free(got);
	/* The same limit reached through continuation lines: the leading
	 * white space counts. */
	memcpy(text + 968, "\n ", 2);	/* just after a comma */
	got = parse_n(text, SMTP_ALIAS_LINE_MAX, 0);
	ok(strstr(got, "W ") == NULL, "  at the limit over two lines (\\n "
	    "not counted, the blank counted)");
	free(got);
	text[SMTP_ALIAS_LINE_MAX - 1] = 'z';
	got = parse_n(text, SMTP_ALIAS_LINE_MAX + 1, 0);
	ok(strstr(got, "W ") == NULL, "  the newline does not count");
	free(got);
	free(text);

	/* Names of SMTP_ALIAS_NAME_MAX bytes, and one more. */
	name = repeat('n', SMTP_ALIAS_NAME_MAX);
	text = malloc(SMTP_ALIAS_NAME_MAX + 16);
	snprintf(text, SMTP_ALIAS_NAME_MAX + 16, "%s: x\n", name);
	got = parse_n(text, strlen(text), 0);
	snprintf(want, sizeof(want), "%s@1: address:x\n", name);
	is_string(got, want, "a name of %d bytes", SMTP_ALIAS_NAME_MAX);
	free(got);
	snprintf(text, SMTP_ALIAS_NAME_MAX + 16, "%sn: x\n", name);
	got = parse_n(text, strlen(text), 0);
	ok(strstr(got, "name too long") != NULL, "one more is refused");
	free(got);
	free(text);
	free(name);

	/* A local part of 64 bytes, then 65; an address of 254, then 255. */
	name = repeat('l', SMTP_ALIAS_LOCAL_MAX + 1);
	text = malloc(600);
	snprintf(text, 600, "a: %.*s@example.org, %.*s\n",
	    SMTP_ALIAS_LOCAL_MAX, name, SMTP_ALIAS_LOCAL_MAX, name);
	got = parse_n(text, strlen(text), 0);
	ok(strstr(got, "W ") == NULL, "local parts of %d bytes",
	    SMTP_ALIAS_LOCAL_MAX);
	free(got);
	snprintf(text, 600, "a: %s@example.org\n", name);
	got = parse_n(text, strlen(text), 0);
	ok(strstr(got, "address too long") != NULL, "65 bytes with a domain "
	    "are refused");
	free(got);
	snprintf(text, 600, "a: %s\n", name);
	got = parse_n(text, strlen(text), 0);
	ok(strstr(got, "address too long") != NULL, "65 bytes alone too");
	free(got);
	free(name);
	{
		/* 64 + '@' + 189 = 254: labels of 63, 63 and 61. */
		char dom[256];
		char *l = repeat('l', 64), *d63 = repeat('d', 63);

		snprintf(dom, sizeof(dom), "%s.%s.%.61s", d63, d63, d63);
		snprintf(text, 600, "a: %s@%s\n", l, dom);
		got = parse_n(text, strlen(text), 0);
		ok(strlen(l) + 1 + strlen(dom) == SMTP_ALIAS_ADDRESS_MAX &&
		    strstr(got, "W ") == NULL, "an address of %d bytes",
		    SMTP_ALIAS_ADDRESS_MAX);
		free(got);
		snprintf(text, 600, "a: %s@%s.d\n", l, dom);
		got = parse_n(text, strlen(text), 0);
		ok(strstr(got, "address too long") != NULL, "longer is "
		    "refused");
		free(got);
		free(l);
		free(d63);
	}
	free(text);
}

/* values_text: an entry with n values v0, v1, ... in hex. */
static char *
values_text(const char *name, size_t n, const char *prefix)
{
	struct buf b;

	buf_init(&b, 1 << 20);
	buf_printf(&b, "%s: ", name);
	for (size_t i = 0; i < n; i++)
		buf_printf(&b, "%s%s%zx", i > 0 ? "," : "", prefix, i);
	buf_append_str(&b, "\n");
	return (char *)buf_steal(&b, NULL);
}

static void
test_value_count(void)
{
	char *text = values_text("many", SMTP_ALIAS_VALUES_MAX, "v"), *got;
	char want[128];
	size_t count = 0;

	ok(strlen(text) <= SMTP_ALIAS_LINE_MAX, "(%zu bytes fit a line)",
	    strlen(text));
	got = parse_n(text, strlen(text), 0);
	for (char *p = got; (p = strstr(p, " address:")) != NULL; p++)
		count++;
	is_int(count, SMTP_ALIAS_VALUES_MAX, "an entry of %d values",
	    SMTP_ALIAS_VALUES_MAX);
	free(got);
	free(text);
	text = values_text("many", SMTP_ALIAS_VALUES_MAX + 1, "v");
	got = parse_n(text, strlen(text), 0);
	snprintf(want, sizeof(want), "W f:1: alias \"many\": more than %d "
	    "values: entry skipped\n", SMTP_ALIAS_VALUES_MAX);
	is_string(got, want, "one more is skipped");
	free(got);
	free(text);
}

static void
test_parse_values(void)
{
	struct smtp_alias_value *v;
	const char *err;
	size_t n;

	is_int(smtp_alias_parse_values(" , ,", 4, 10, &v, &n, &err), 0,
	    "parse_values: empty list");
	is_int(n, 0, "  0 values");
	smtp_alias_values_free(v, n);
	is_int(smtp_alias_parse_values("a,b,c", 5, 2, &v, &n, &err), -1,
	    "parse_values: max 2 of 3");
	is_string(err, "more than 2 values", "  error");
	is_int(smtp_alias_parse_values("a,b", 3, 2, &v, &n, &err), 0,
	    "parse_values: max 2 of 2");
	smtp_alias_values_free(v, n);
	is_int(smtp_alias_parse_values("a\0b", 3, 2, &v, &n, &err), -1,
	    "parse_values: a NUL byte in the text");
	is_string(err, "NUL byte: \"a\\000b\"", "  error");
}

/* ---- Compiling ---- */

static void
test_item_paths(void)
{
	char *src, *db;
	const char *err;
	static const char *const good[] = {
		"lmdb:/etc/aliases", "hash:/etc/aliases", "/etc/aliases"
	};

	for (size_t i = 0; i < 3; i++) {
		ok(smtp_alias_item_paths(good[i], &src, &db, &err) == 0 &&
		    strcmp(src, "/etc/aliases") == 0 &&
		    strcmp(db, "/etc/aliases.lmdb") == 0,
		    "item %s: /etc/aliases and /etc/aliases.lmdb", good[i]);
		free(src);
		free(db);
	}
	ok(smtp_alias_item_paths("nis:mail.aliases", &src, &db, &err) < 0 &&
	    strstr(err, "nis:mail.aliases") != NULL, "nis: refused");
	ok(smtp_alias_item_paths("lmdb:aliases", &src, &db, &err) < 0,
	    "a relative path refused");
	ok(smtp_alias_item_paths("/etc/", &src, &db, &err) < 0,
	    "a directory refused");
}

static void
test_compile(void)
{
	struct smtp_alias_value *v;
	struct smtp_alias_map *map;
	unsigned int entries, warnings;
	const char *err, *log, *src;
	struct stat st;
	size_t n;

	write_text(path_in("aliases"),
	    "postmaster: root\n"
	    "root: alice, |/usr/bin/logger, /var/log/root.mail\n"
	    "Root: ignored\n"
	    "broken line\n"
	    "list: :include:/etc/list\n", 0644);
	capture_begin();
	is_int(compile("aliases", "aliases.lmdb", &entries, &warnings, &err),
	    0, "compile works despite a bad entry and a duplicate");
	log = capture_end();
	is_int(entries, 3, "  3 entries stored");
	is_int(warnings, 2, "  2 warnings");
	ok(strstr(log, "warning: ") != NULL && strstr(log, "/aliases:3: "
	    "duplicate alias \"root\": ignored, the first one wins") != NULL,
	    "  the duplicate is reported with file and line");
	ok(strstr(log, "/aliases:4: missing ':' after the name") != NULL,
	    "  the bad entry too");
	ok(stat(path_in("aliases.lmdb"), &st) == 0 && S_ISREG(st.st_mode) &&
	    (st.st_mode & 0777) == 0644, "  the database is a file, mode "
	    "0644");
	ok(access(path_in("aliases.lmdb-lock"), F_OK) < 0,
	    "  and has no lock file");
	map = open_map("aliases.lmdb");
	ok(smtp_alias_lookup(map, "ROOT", &v, &n, &src, &err) == 1 &&
	    n == 3 && v[0].kind == SMTP_ALIAS_ADDRESS &&
	    strcmp(v[0].text, "alice") == 0 &&
	    v[1].kind == SMTP_ALIAS_COMMAND &&
	    strcmp(v[1].text, "/usr/bin/logger") == 0 &&
	    v[2].kind == SMTP_ALIAS_FILE &&
	    strcmp(v[2].text, "/var/log/root.mail") == 0 &&
	    strcmp(src, path_in("aliases.lmdb")) == 0,
	    "lookup: the first root, without case, its values in order");
	smtp_alias_values_free(v, n);
	is_int(smtp_alias_lookup(map, "nobody", &v, &n, NULL, &err), 0,
	    "lookup of no alias: 0");
	is_int(smtp_alias_lookup(map, "\001loft-alias-format", &v, &n, NULL,
	    &err), 0, "the format key is no alias");
	smtp_alias_close(&map);
	ok(map == NULL, "close clears the pointer");
}

static void
test_compile_refused(void)
{
	const char *err;
	unsigned int entries, warnings;
	struct stat before, after;

	compile_text("keep", "a: b\n");
	stat(path_in("keep.lmdb"), &before);
	write_text(path_in("keep"), "bad\nworse line\n", 0644);
	capture_begin();
	ok(compile("keep", "keep.lmdb", &entries, &warnings, &err) < 0 &&
	    strstr(err, "no valid entry (2 skipped)") != NULL,
	    "a file of only bad entries is refused");
	capture_end();
	stat(path_in("keep.lmdb"), &after);
	ok(before.st_ino == after.st_ino, "  the old database stays");

	write_text(path_in("keep"), "a: c\n", 0664);
	ok(compile("keep", "keep.lmdb", NULL, NULL, &err) < 0 &&
	    strstr(err, "writable by group or others (mode 664): refused")
	    != NULL, "a group-writable source is refused");
	write_text(path_in("keep"), "a: c\n", 0646);
	ok(compile("keep", "keep.lmdb", NULL, NULL, &err) < 0,
	    "a world-writable one too");
	stat(path_in("keep.lmdb"), &after);
	ok(before.st_ino == after.st_ino, "  the old database stays");
	if (geteuid() == 0) {
		struct passwd *pw = getpwnam("nobody");

		write_text(path_in("keep"), "a: c\n", 0644);
		if (pw == NULL || chown(path_in("keep"), pw->pw_uid,
		    pw->pw_gid) < 0)
			bail("chown nobody");
		ok(compile("keep", "keep.lmdb", NULL, NULL, &err) < 0 &&
		    strstr(err, "neither root nor uid 0") != NULL,
		    "a source owned by another user is refused");
	} else
		ok(1, "# skip: not root, cannot give a file away");
	ok(compile("missing", "missing.lmdb", NULL, NULL, &err) < 0 &&
	    strstr(err, "No such file") != NULL, "a missing source");
	mkdir(path_in("adir"), 0755);
	ok(compile("adir", "adir.lmdb", NULL, NULL, &err) < 0 &&
	    strstr(err, "not a regular file") != NULL, "a directory");
	ok(access(path_in("missing.lmdb"), F_OK) < 0 &&
	    access(path_in("adir.lmdb"), F_OK) < 0, "  no database made");

	write_text(path_in("empty"), "# nothing yet\n", 0644);
	ok(compile("empty", "empty.lmdb", &entries, &warnings, &err) == 0 &&
	    entries == 0 && warnings == 0, "a file of comments compiles to "
	    "an empty map");
	{
		struct smtp_alias_map *map = open_map("empty.lmdb");

		is_string(expand(map, "root"), "0", "  which has no alias");
		smtp_alias_close(&map);
	}
	{
		/* No temporary file is left behind by any of this. */
		FILE *ls;
		char cmd[600], line[512];
		bool tmp = false;

		snprintf(cmd, sizeof(cmd), "ls -a %s", dir);
		ls = popen(cmd, "r");
		while (ls != NULL && fgets(line, sizeof(line), ls) != NULL)
			if (strstr(line, ".tmp") != NULL)
				tmp = true;
		if (ls != NULL)
			pclose(ls);
		ok(!tmp, "no temporary file left in the directory");
	}
}

static void
test_open_refused(void)
{
	struct smtp_alias_map *map;
	const char *err;

	write_text(path_in("notdb.lmdb"), "this is not LMDB at all\n", 0644);
	ok(smtp_alias_open(path_in("notdb.lmdb"), &map, &err) < 0,
	    "a text file is no database");
	ok(smtp_alias_open(path_in("nonexistent.lmdb"), &map, &err) < 0 &&
	    strstr(err, "No such file") != NULL, "a missing database");
	compile_text("gw", "a: b\n");
	chmod(path_in("gw.lmdb"), 0664);
	ok(smtp_alias_open(path_in("gw.lmdb"), &map, &err) < 0 &&
	    strstr(err, "writable by group or others") != NULL,
	    "a group-writable database is refused");
}

static void
test_replace(void)
{
	struct smtp_alias_map *map, *fresh;
	const char *err;

	compile_text("swap", "list: old1, old2\n");
	map = open_map("swap.lmdb");
	is_string(expand(map, "list"), "1|address old1; address old2",
	    "before: the old list");
	is_int(smtp_alias_refresh(map, &err), 0, "refresh with no change: 0");
	compile_text("swap", "list: new1\nadded: x\n");
	is_string(expand(map, "list"), "1|address old1; address old2",
	    "after newaliases, an open map still reads the old database "
	    "whole");
	is_string(expand(map, "added"), "0", "  without the new alias");
	fresh = open_map("swap.lmdb");
	is_string(expand(fresh, "list"), "1|address new1",
	    "a map opened now reads the new one");
	smtp_alias_close(&fresh);
	is_int(smtp_alias_refresh(map, &err), 1, "refresh reopens: 1");
	is_string(expand(map, "list"), "1|address new1", "  new list");
	is_string(expand(map, "added"), "1|address x", "  new alias");
	unlink(path_in("swap.lmdb"));
	ok(smtp_alias_refresh(map, &err) < 0 && strstr(err, "No such file")
	    != NULL, "refresh with the database gone: -1");
	is_string(expand(map, "list"), "1|address new1",
	    "  the map keeps what it had");
	smtp_alias_close(&map);
}

/* ---- Expansion ---- */

static void
test_delimiter(void)
{
	struct smtp_alias_map *map;

	compile_text("delim",
	    "bob: robert\n"
	    "bob+special: special\n"
	    "owner-list: admin\n"
	    "list: a, b\n"
	    "list-request: req\n"
	    "owner: o\n"
	    "postmaster: pm\n"
	    "x: \\bob+z\n"
	    "mailer: m\n");
	map = open_map("delim.lmdb");
	is_string(expand(map, "bob"), "1|address robert", "bob");
	is_string(expand(map, "BOB"), "1|address robert",
	    "names compared without case");
	is_string(expand(map, "bob+tag"), "1|address robert",
	    "bob+tag: bob+tag is none, bob is");
	is_string(expand(map, "bob+special"), "1|address special",
	    "bob+special: the exact name first");
	is_string(expand_d(map, "bob+tag", "", NULL), "0",
	    "no delimiter: bob+tag is no alias");
	is_string(expand_d(map, "bob+tag", NULL, NULL), "0",
	    "  NULL is none too");
	is_string(expand_d(map, "bob-tag", "+-", NULL), "1|address robert",
	    "several delimiters: any of them cuts");
	is_string(expand_d(map, "bob+a-b", "-+", NULL), "1|address robert",
	    "  at the first one in the name");
	is_string(expand_d(map, "owner-x", "-", NULL), "0",
	    "with '-', owner-x is not cut to owner");
	is_string(expand_d(map, "foo-request", "-", NULL), "0",
	    "  nor foo-request to foo");
	is_string(expand_d(map, "list-x", "-", NULL), "1|address a "
	    "owner=owner-list; address b owner=owner-list",
	    "  other names are: list-x is list");
	is_string(expand_d(map, "postmaster+x", "+", NULL), "1|address pm",
	    "postmaster+x is postmaster");
	is_string(expand_d(map, "mailer-daemon", "-", NULL), "0",
	    "mailer-daemon is never cut to mailer");
	is_string(expand_d(map, "mailer-x", "-", NULL), "1|address m",
	    "  (mailer-x is)");
	is_string(expand_d(map, "+bob", "+", NULL), "0",
	    "a delimiter first cuts nothing");
	is_string(expand(map, "x"), "1|address bob+z",
	    "\\bob+z is delivered as it is");
	is_string(expand(map, "nobody+x"), "0", "no alias at all: 0");
	smtp_alias_close(&map);
}

static void
test_recursion(void)
{
	struct smtp_alias_map *map;
	struct buf b;
	const char *err;

	compile_text("rec",
	    "top: mid, c@Example.ORG, last\n"
	    "mid: leaf1, \\top, leaf2@x.example\n"
	    "root: root, ops@example.org\n"
	    "a: b\n"
	    "b: a, z\n"
	    "ext: bob+tag\n"
	    "bob: robert\n"
	    "dup: one, two, one, nest\n"
	    "nest: two, one@x, one@X, ONE@x\n"
	    "cmds: |/bin/cat, /tmp/file, \"/tmp/file\"\n"
	    "\"sp ace\": target\n"
	    "q: \"sp ace\"\n");
	map = open_map("rec.lmdb");
	is_string(expand(map, "top"),
	    "1|address leaf1; address top; address leaf2@x.example; "
	    "address c@example.org; address last",
	    "nested aliases depth first; \\top is the user top");
	is_string(expand(map, "root"),
	    "1|address root; address ops@example.org",
	    "root: root, x: root is delivered as a user (sendmail)");
	is_string(expand(map, "a"), "1|address a; address z",
	    "a: b, b: a: the loop stops at a, delivered as a user");
	is_string(expand(map, "b"), "1|address b; address z",
	    "  and from b, at b");
	is_string(expand(map, "ext"), "1|address robert",
	    "values go through the delimiter lookup too");
	is_string(expand(map, "dup"),
	    "1|address one; address two; address one@x; address ONE@x",
	    "duplicate targets are dropped, the first kept (domains "
	    "without case, remote local parts with it)");
	is_string(expand(map, "cmds"),
	    "1|command /bin/cat; file /tmp/file",
	    "commands and files");
	is_string(expand(map, "q"), "1|address target",
	    "a quoted local name finds a quoted alias name");
	is_string(expand(map, "sp ace"), "1|address target",
	    "  as SMTP gives it, unquoted");
	{
		struct smtp_alias_target *t;
		size_t n;

		ok(smtp_alias_expand(map, "cmds", NULL, NULL, &t, &n,
		    &err) == 1 && n == 2 &&
		    strcmp(t[0].source, path_in("rec.lmdb")) == 0 &&
		    t[0].source_uid == geteuid() && t[0].owner == NULL &&
		    t[0].reason == NULL,
		    "a command says which database it came from and its "
		    "owner");
		smtp_alias_targets_free(t, n);
	}
	smtp_alias_close(&map);

	/* Depth: d1 .. d10 nest ten aliases; e1 .. e11 eleven. */
	buf_init(&b, 1 << 16);
	for (int i = 1; i < SMTP_ALIAS_DEPTH_MAX; i++)
		buf_printf(&b, "d%d: d%d\n", i, i + 1);
	buf_printf(&b, "d%d: user\n", SMTP_ALIAS_DEPTH_MAX);
	for (int i = 1; i < SMTP_ALIAS_DEPTH_MAX + 1; i++)
		buf_printf(&b, "e%d: e%d\n", i, i + 1);
	buf_printf(&b, "e%d: user\n", SMTP_ALIAS_DEPTH_MAX + 1);
	compile_text("depth", buf_cstr(&b));
	buf_free(&b);
	map = open_map("depth.lmdb");
	is_string(expand(map, "d1"), "1|address user",
	    "%d nested aliases expand", SMTP_ALIAS_DEPTH_MAX);
	is_string(expand(map, "e1"), "-1 aliases nested deeper than 10 at "
	    "\"e11\"", "one more is an error");
	is_string(expand(map, "e2"), "1|address user",
	    "  from one level down it fits");
	smtp_alias_close(&map);
}

static void
test_expand_limit(void)
{
	struct smtp_alias_map *map;
	const char *err;
	char *half1 = values_text("half1", SMTP_ALIAS_EXPAND_MAX / 2, "p");
	char *half2 = values_text("half2", SMTP_ALIAS_EXPAND_MAX / 2, "q");
	char *more = values_text("more", SMTP_ALIAS_EXPAND_MAX / 2 + 1, "r");
	char *all = values_text("all", SMTP_ALIAS_VALUES_MAX, "s");
	struct buf b;

	buf_init(&b, 1 << 20);
	buf_printf(&b, "%s%s%s%sfull: half1, half2\nover: half1, more\n",
	    half1, half2, more, all);
	compile_text("limit", buf_cstr(&b));
	buf_free(&b);
	map = open_map("limit.lmdb");
	is_int(count_targets(map, "all", &err), SMTP_ALIAS_VALUES_MAX,
	    "an alias of %d values expands", SMTP_ALIAS_VALUES_MAX);
	is_int(count_targets(map, "full", &err), SMTP_ALIAS_EXPAND_MAX,
	    "two lists making %d targets", SMTP_ALIAS_EXPAND_MAX);
	is_int(count_targets(map, "over", &err), -1, "one more target");
	is_string(err, "more than 10000 targets", "  is an error");
	smtp_alias_close(&map);
	free(half1);
	free(half2);
	free(more);
	free(all);
}

static void
test_owner(void)
{
	struct smtp_alias_map *map;

	compile_text("own",
	    "list: a, sub, b@x.example\n"
	    "owner-list: listadmin\n"
	    "sub: c, |/bin/prog\n"
	    "owner-sub: subadmin\n"
	    "plain: list, d\n");
	map = open_map("own.lmdb");
	is_string(expand_d(map, "list", NULL, "example.org"),
	    "1|address a owner=owner-list@example.org; "
	    "address c owner=owner-sub@example.org; "
	    "command /bin/prog owner=owner-sub@example.org; "
	    "address b@x.example owner=owner-list@example.org",
	    "owner-list for list's targets, owner-sub inside sub");
	is_string(expand_d(map, "plain", NULL, NULL),
	    "1|address a owner=owner-list; address c owner=owner-sub; "
	    "command /bin/prog owner=owner-sub; "
	    "address b@x.example owner=owner-list; address d",
	    "no owner-plain: d keeps the sender; no domain given");
	is_string(expand_d(map, "list+x", "+", "example.org"),
	    "1|address a owner=owner-list@example.org; "
	    "address c owner=owner-sub@example.org; "
	    "command /bin/prog owner=owner-sub@example.org; "
	    "address b@x.example owner=owner-list@example.org",
	    "list+x: the owner of list");
	is_string(expand_d(map, "owner-list", NULL, NULL),
	    "1|address listadmin", "owner-list itself has no owner");
	smtp_alias_close(&map);
}

/* include_of: a file of exactly size bytes holding "a, b" then comment
 * padding. */
static void
include_of(const char *name, size_t size)
{
	char *text = malloc(size);
	size_t pos;

	memcpy(text, "inca, incb\n", 11);
	for (pos = 11; pos < size; pos += 100) {
		size_t n = size - pos < 100 ? size - pos : 100;

		memset(text + pos, 'x', n);
		text[pos] = '#';
		text[pos + n - 1] = '\n';
	}
	write_file(path_in(name), text, size, 0644);
	free(text);
}

static void
test_include(void)
{
	struct smtp_alias_map *map;
	struct smtp_alias_target *t;
	const char *err;
	char *many;
	size_t n;
	int ret;

	write_text(path_in("list1"),
	    "# members\n"
	    "alice, bob@example.org\n"
	    "\n"
	    "  carol   # not a comment: a bad line, skipped\n"
	    "dave\n"
	    "|/usr/bin/archive\n"
	    "sub\n"
	    ":include:" "/nonexistent/x\n", 0644);
	write_text(path_in("unsafe"),
	    "erin, |/bin/evil, /tmp/evil, :include:/nonexistent/y\n", 0666);
	include_of("atmax", SMTP_ALIAS_INCLUDE_SIZE_MAX);
	include_of("overmax", SMTP_ALIAS_INCLUDE_SIZE_MAX + 1);
	many = values_text("x", SMTP_ALIAS_VALUES_MAX, "m");
	write_text(path_in("many"), many + 3, 0644);
	free(many);
	many = values_text("x", SMTP_ALIAS_VALUES_MAX + 1, "m");
	many[3 + 30000] = '\n';	/* two lines: the limit is per file */
	write_text(path_in("toomany"), many + 3, 0644);
	free(many);
	{
		/* The include file that names itself. */
		char text[600];

		snprintf(text, sizeof(text), "self1, :include:%s\n",
		    path_in("self"));
		write_text(path_in("self"), text, 0644);
	}
	{
		char text[4096];

		snprintf(text, sizeof(text),
		    "list: :include:%s\n"
		    "sub: subuser, \"/var/mail/sub file\"\n"
		    "bad: :include:%s\n"
		    "atmax: :include:%s\n"
		    "overmax: :include:%s\n"
		    "many: :include:%s\n"
		    "toomany: :include:%s\n"
		    "missing: ok, :include:%s\n"
		    "self: :include:%s\n"
		    "dir: :include:%s\n",
		    path_in("list1"), path_in("unsafe"), path_in("atmax"),
		    path_in("overmax"), path_in("many"), path_in("toomany"),
		    path_in("nope"), path_in("self"), dir);
		compile_text("inc", text);
	}
	map = open_map("inc.lmdb");
	capture_begin();
	is_string(expand(map, "list"),
	    "1|address alice; address bob@example.org; address dave; "
	    "command /usr/bin/archive; address subuser; "
	    "file /var/mail/sub file; "
	    "error :include:/nonexistent/x (include file is missing)",
	    "an include file: values per line, comments and blank lines "
	    "skipped, a bad line skipped, an alias inside it expanded, an "
	    "include inside it");
	ok(strstr(capture_end(), "list1:4: white space in an address") !=
	    NULL, "  the bad line is logged with file and line");
	capture_begin();
	ret = smtp_alias_expand(map, "list", NULL, NULL, &t, &n, &err);
	capture_end();
	ok(ret == 1 &&
	    n == 7 && strcmp(t[0].source, path_in("list1")) == 0 &&
	    t[0].source_uid == geteuid() &&
	    strcmp(t[4].source, path_in("inc.lmdb")) == 0 &&
	    strcmp(t[3].source, path_in("list1")) == 0,
	    "  targets name the include file or database they came from");
	smtp_alias_targets_free(t, n);
	capture_begin();
	is_string(expand(map, "bad"),
	    "1|address erin; "
	    "error |/bin/evil (command from an unsafe include file); "
	    "error /tmp/evil (file from an unsafe include file); "
	    "error :include:/nonexistent/y (include file is missing)",
	    "an include file writable by others: its addresses, but no "
	    "command or file");
	ok(strstr(capture_end(), "is writable by group or others: command "
	    "refused") != NULL, "  logged");
	is_string(expand(map, "atmax"), "1|address inca; address incb",
	    "an include file of %d bytes is read",
	    SMTP_ALIAS_INCLUDE_SIZE_MAX);
	ok(strstr(expand(map, "overmax"), "(include file is too big)") !=
	    NULL && strstr(expand(map, "overmax"), "inca") == NULL,
	    "one byte more: an error, none of its values");
	is_int(count_targets(map, "many", &err), SMTP_ALIAS_VALUES_MAX,
	    "an include file of %d values", SMTP_ALIAS_VALUES_MAX);
	ok(strstr(expand(map, "toomany"), "(include file has too many "
	    "values)") != NULL && count_targets(map, "toomany", &err) == 1,
	    "one more: an error, none of its values");
	capture_begin();
	ok(strstr(expand(map, "missing"), "1|address ok; error :include:") ==
	    expand(map, "missing") && strstr(expand(map, "missing"),
	    "nope (include file is missing)") != NULL,
	    "a missing include file: an error target, permanent; the rest "
	    "is delivered");
	capture_end();
	capture_begin();
	is_string(expand(map, "self"), "1|address self1",
	    "an include file that includes itself: skipped once");
	ok(strstr(capture_end(), "includes itself") != NULL, "  logged");
	ok(strstr(expand(map, "dir"), "(include file is not a regular "
	    "file)") != NULL, "a directory as include file");
	smtp_alias_close(&map);
}

static void
test_conf(void)
{
	struct smtp_alias_map *map;
	const char *err;
	char text[2048];

	compile_text("first", "a: from-first\n");
	compile_text("second", "a: from-second\nb: only-second\n");
	snprintf(text, sizeof(text), "alias_maps = lmdb:%s, hash:%s\n",
	    path_in("first"), path_in("second"));
	if (conf_load_buffer("t.cf", text, strlen(text), &err) < 0)
		bail("conf: %s", err);
	ok(smtp_alias_open_conf(&map, &err) == 0, "open alias_maps");
	is_string(expand(map, "a"), "1|address from-first",
	    "the first map that has a name wins");
	is_string(expand(map, "b"), "1|address only-second",
	    "later maps are searched too");
	smtp_alias_close(&map);
	snprintf(text, sizeof(text), "alias_maps = %s, %s\n",
	    path_in("first"), path_in("absent"));
	conf_load_buffer("t.cf", text, strlen(text), &err);
	ok(smtp_alias_open_conf(&map, &err) < 0 && strstr(err, "absent.lmdb")
	    != NULL, "a missing map is an error naming it");
	conf_load_buffer("t.cf", "alias_maps =\n", 13, &err);
	ok(smtp_alias_open_conf(&map, &err) == 0, "empty alias_maps opens");
	is_string(expand(map, "a"), "0", "  and has no alias");
	smtp_alias_close(&map);
	ok(conf_load_buffer("t.cf", "alias_maps = nis:mail.aliases\n", 30,
	    &err) < 0 && strstr(err, "alias_maps") != NULL,
	    "alias_maps = nis:... stops the configuration");
	ok(conf_load_buffer("t.cf", "alias_database = aliases\n", 25,
	    &err) < 0, "a relative alias_database too");
	conf_reset();
	is_string(conf_str("alias_maps"), "lmdb:/etc/aliases",
	    "default alias_maps");
	is_string(conf_str("alias_database"), "lmdb:/etc/aliases",
	    "default alias_database: $alias_maps");
}

int
main(void)
{
	char cmd[600];

	log_open("loft/test", LOG_DEST_STDERR);
	if (mkdtemp(dir) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	test_forms();
	test_lines();
	test_errors();
	test_limits();
	test_value_count();
	test_parse_values();
	test_item_paths();
	test_compile();
	test_compile_refused();
	test_open_refused();
	test_replace();
	test_delimiter();
	test_recursion();
	test_expand_limit();
	test_owner();
	test_include();
	test_conf();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		diag("could not remove %s", dir);
	return done_testing();
}
