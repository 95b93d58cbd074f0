/* Unit tests for lib/rules_parse.c and lib/rules_regex.c: the tree of a
 * good file (whole and byte by byte), errors with their line numbers,
 * every bound at N and N + 1, and procmail regexes as PCRE2 patterns. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "rules.h"
#include "rules_private.h"
#include "tap.h"
#include "xmalloc.h"

static const char good[] =
    "# a comment\n"
    "MAILDIR=$HOME/Mail   # trailing comment\n"
    "LOGFILE = \"$MAILDIR/log\"\n"
    "MULTI=\"two\n"
    "lines\"\n"
    "UNSETME\n"
    "\n"
    ":0:\n"
    "* ^Subject:.*report\n"
    "reports\n"
    ":0 Bc:mylock\n"
    "  *   ! viagra\n"
    "* 2^1 free\n"
    "* < 1000\n"
    "* > 10\n"
    "* ? grep -q x\n"
    "* $ ^From:.*$ME\n"
    "* MATCH ?? ^abc\n"
    "* \\!literal\n"
    "backup/\n"
    ":0 fhw\n"
    "| formail -A \"X-Tag: #1\"\n"
    ":0 A\n"
    "! someone@example.org   other@example.org\n"
    ":0\n"
    "FROM=| formail -xFrom:\n"
    ":0\n"
    "* ^Subject:.*(one|\\\n"
    "      two)\n"
    "{\n"
    "  X=1\n"
    "  :0 E\n"
    "  {\n"
    "    :0\n"
    "    mh/.\n"
    "  }\n"
    "}\n"
    ":0\n"
    "{ }\n";

static const char good_dump[] =
    "2: assign MAILDIR=$HOME/Mail\n"
    "3: assign LOGFILE=\"$MAILDIR/log\"\n"
    "4: assign MULTI=\"two\nlines\"\n"
    "6: assign UNSETME (unset)\n"
    "8: recipe flags= lock=(auto)\n"
    "9:  cond re ^Subject:.*report\n"
    "8:  action folder reports\n"
    "11: recipe flags=Bc lock=mylock\n"
    "12:  cond !re viagra\n"
    "13:  cond re w=2^1 free\n"
    "14:  cond lt 1000\n"
    "15:  cond gt 10\n"
    "16:  cond prog grep -q x\n"
    "17:  cond expand ^From:.*$ME\n"
    "18:  cond var var=MATCH ^abc\n"
    "19:  cond re !literal\n"
    "11:  action folder backup/\n"
    "21: recipe flags=hfw lock=-\n"
    "21:  action pipe formail -A \"X-Tag: #1\"\n"
    "23: recipe flags=A lock=-\n"
    "23:  action forward someone@example.org   other@example.org\n"
    "25: recipe flags= lock=-\n"
    "25:  action pipe capture=FROM formail -xFrom:\n"
    "27: recipe flags= lock=-\n"
    "28:  cond re ^Subject:.*(one|two)\n"
    "27:  action block {\n"
    "31:   assign X=1\n"
    "32:   recipe flags=E lock=-\n"
    "32:    action block {\n"
    "34:     recipe flags= lock=-\n"
    "34:      action folder mh/.\n"
    "   }\n"
    " }\n"
    "38: recipe flags= lock=-\n"
    "38:  action block {\n"
    " }\n";

static char *
dump(const struct rules *r)
{
	struct buf b;

	buf_init(&b, (size_t)-1);
	rules_dump(r, &b);
	buf_append_byte(&b, '\0');
	return (char *)buf_steal(&b, NULL);
}

static void
test_good(void)
{
	struct rules_parser *p;
	struct rules *r = NULL;
	const char *err = NULL;
	char *d;
	size_t i;
	int bad = 0;

	is_int(rules_parse_buffer("rc", good, strlen(good), NULL, &r, &err), 0,
	    "a good file parses");
	if (r == NULL) {
		diag("%s", err);
		return;
	}
	d = dump(r);
	is_string(d, good_dump, "its tree");
	free(d);
	rules_free(&r);
	ok(r == NULL, "rules_free clears the pointer");

	p = rules_parser_new("rc", NULL);
	for (i = 0; i < strlen(good); i++)
		bad |= rules_parser_feed(p, good + i, 1, &err);
	is_int(bad, 0, "fed byte by byte, every feed says go on");
	is_int(rules_parser_finish(p, &r, &err), 0, "and finish succeeds");
	d = dump(r);
	is_string(d, good_dump, "to the same tree");
	free(d);
	rules_free(&r);
	rules_parser_free(&p);

	is_int(rules_parse_buffer("rc", ":0\nx", 4, NULL, &r, &err), 0,
	    "a last line without its newline");
	d = dump(r);
	is_string(d, "1: recipe flags= lock=-\n1:  action folder x\n",
	    "is read");
	free(d);
	rules_free(&r);
	is_int(rules_parse_buffer("rc", "", 0, NULL, &r, &err), 0,
	    "an empty file parses");
	rules_free(&r);
}

struct bad_case {
	const char *text;
	const char *error;
};

static void
test_errors(void)
{
	static const struct bad_case cases[] = {
		{ "A=1\n:0 Q\nx\n", "rc:2: unknown flag 'Q'" },
		{ "A=1\n}\n", "rc:2: \"}\" without a block" },
		{ ":0\n{\n:0\nx\n", "rc:2: block without its \"}\"" },
		{ "A=1\n\n:0\n* x\n", "rc:3: recipe without an action line" },
		{ ":0\n* 2^ x\ny\n", "rc:2: condition: bad weight "
		    "(expected w^x)" },
		{ ":0\n* < many\ny\n", "rc:2: condition: a size condition "
		    "needs a number of bytes" },
		{ ":0\n* > 10 x\ny\n", "rc:2: condition: junk after the "
		    "size" },
		{ ":0\n* ?\ny\n", "rc:2: condition: \"?\" without a command" },
		{ "A=\"open\n", "rc:1: unterminated quote" },
		{ ":0\nX=|\n", "rc:2: VAR=| without a command" },
		{ ":0\n!\n", "rc:2: \"!\" without an address" },
		{ "\n\nwhat is this\n", "rc:3: syntax error (not an "
		    "assignment, a recipe or \"}\")" },
		{ "A=1\nB=\0\n", "rc:2: NUL byte" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rules *r = NULL;
		const char *err = NULL;
		size_t len = strlen(cases[i].text);
		int ret;

		if (strcmp(cases[i].error, "rc:2: NUL byte") == 0)
			len = 8;
		ret = rules_parse_buffer("rc", cases[i].text, len, NULL, &r,
		    &err);
		ok(ret == -1 && r == NULL, "refused: %s", cases[i].error);
		is_string(err, cases[i].error, "with file and line");
	}
}

/* A file of exactly len bytes: "A=xxx...\n". */
static char *
file_of(size_t len)
{
	char *s = xmalloc(len + 1);

	memset(s, 'x', len);
	s[0] = 'A';
	s[1] = '=';
	s[len - 1] = '\n';
	s[len] = '\0';
	return s;
}

static int
parse_with(const char *text, size_t len, const struct rules_limits *l,
    const char **err)
{
	struct rules *r = NULL;
	int ret = rules_parse_buffer("rc", text, len, l, &r, err);

	rules_free(&r);
	return ret;
}

static void
test_limits(void)
{
	struct rules_limits l;
	const char *err;
	struct buf b;
	char *s;
	unsigned i;

	rules_limits_default(&l);
	is_int(l.file_max, RULES_FILE_MAX, "default file bound");
	l.file_max = 100;
	l.line_max = 1000;
	s = file_of(100);
	is_int(parse_with(s, 100, &l, &err), 0, "a file of file_max bytes");
	free(s);
	s = file_of(101);
	is_int(parse_with(s, 101, &l, &err), -1, "file_max + 1 refused");
	is_string(err, "rc:1: file larger than 100 bytes", "saying why");
	free(s);

	rules_limits_default(&l);
	l.line_max = 50;
	s = file_of(51);		/* 50 bytes and the newline */
	is_int(parse_with(s, 51, &l, &err), 0, "a line of line_max bytes");
	free(s);
	s = file_of(52);
	is_int(parse_with(s, 52, &l, &err), -1, "line_max + 1 refused");
	is_string(err, "rc:1: line longer than 50 bytes", "saying why");
	free(s);
	/* "A=" + 20 x, "\", newline, 28 or 29 x: 50 or 51 bytes joined. */
	s = xasprintf("A=%020d\\\n%028d\n", 0, 0);
	is_int(parse_with(s, strlen(s), &l, &err), 0,
	    "a joined line of line_max bytes");
	free(s);
	s = xasprintf("A=%020d\\\n%029d\n", 0, 0);
	is_int(parse_with(s, strlen(s), &l, &err), -1,
	    "a joined line of line_max + 1 refused");
	free(s);
	is_string(err, "rc:1: line longer than 50 bytes", "at its first line");

	rules_limits_default(&l);
	l.depth_max = 3;
	buf_init(&b, (size_t)-1);
	for (i = 0; i < 3; i++)
		buf_append_str(&b, ":0\n{\n");
	for (i = 0; i < 3; i++)
		buf_append_str(&b, "}\n");
	is_int(parse_with(buf_cstr(&b), b.len, &l, &err), 0,
	    "blocks nested depth_max deep");
	buf_truncate(&b, 0);
	for (i = 0; i < 4; i++)
		buf_append_str(&b, ":0\n{\n");
	for (i = 0; i < 4; i++)
		buf_append_str(&b, "}\n");
	is_int(parse_with(buf_cstr(&b), b.len, &l, &err), -1,
	    "depth_max + 1 refused");
	is_string(err, "rc:8: blocks nested more than 3 deep", "saying where");

	rules_limits_default(&l);
	l.recipes_max = 5;
	buf_truncate(&b, 0);
	for (i = 0; i < 5; i++)
		buf_append_str(&b, ":0\nx\n");
	is_int(parse_with(buf_cstr(&b), b.len, &l, &err), 0,
	    "recipes_max recipes");
	buf_append_str(&b, ":0\nx\n");
	is_int(parse_with(buf_cstr(&b), b.len, &l, &err), -1,
	    "recipes_max + 1 refused");
	is_string(err, "rc:11: more than 5 recipes", "saying where");
	buf_free(&b);
}

static void
test_regex(void)
{
	static const struct {
		const char *in, *out;
		bool match;
	} cases[] = {
		{ "^Subject:.*x", "^Subject:.*x", false },
		{ "a{2}", "a\\{2\\}", false },
		{ "[^a-z]", "[^a-z\\n]", false },
		{ "[^-a]", "[^-a\\n]", false },
		{ "[]x]", "[\\]x]", false },
		{ "\\<cat\\>", "[^a-zA-Z0-9_]cat[^a-zA-Z0-9_]", false },
		{ "\\d\\.", "d\\.", false },
		{ "^^Hi", "\\AHi", false },
		{ "end^^", "end\\z", false },
		{ "^Subject:.*\\/[0-9]+", "^Subject:.*?([0-9]+)", true },
		{ "[unclosed", "\\[unclosed", false },
		{ "^TOuser", "(^((Original-)?(Resent-)?(To|Cc|Bcc)|"
		    "(X-Envelope|Apparently(-Resent)?)-To):(.*[^a-zA-Z\\n])?)"
		    "user", false },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf b;
		bool m = !cases[i].match;

		buf_init(&b, 4096);
		is_int(rules_regex_translate(cases[i].in, &b, &m), 0,
		    "translate %s", cases[i].in);
		is_string(buf_cstr(&b), cases[i].out, "as PCRE2");
		ok(m == cases[i].match, "\\/ seen: %d", (int)m);
		buf_free(&b);
	}
}

/* A bare "|" (standard output) is a pipe without a command. */
static void
test_bare_pipe(void)
{
	struct rules *r = NULL;
	const char *err = NULL;
	char *d;

	is_int(rules_parse_buffer("rc", ":0 c\n|\n:0\n|   \n", 13, NULL,
	    &r, &err), 0, "a bare | parses");
	d = dump(r);
	is_string(d, "1: recipe flags=c lock=-\n1:  action pipe \n"
	    "3: recipe flags= lock=-\n3:  action pipe \n", "as an empty pipe");
	free(d);
	rules_free(&r);
}

/* The literal every match must contain (the prefilter of rules_eval.c):
 * a wrong one would make a matching regex miss, so each kind of item is
 * checked, and the cases where nothing can be told. */
static void
test_literal(void)
{
	static const struct {
		const char *in;
		int ret;
		const char *lit;
	} cases[] = {
		{ "^Subject:.*never-matches-1", 0, "never-matches-1" },
		{ "^Subject: hello", 0, "Subject: hello" },
		{ "abc*def", 0, "def" },
		{ "abcd?ef", 0, "abc" },
		{ "abc+def", 0, "abc" },
		{ "ab(cdefgh)+ij", 0, "ab" },
		{ "x(abc|defgh)yz", 0, "yz" },
		{ "[abc]def[g]", 0, "def" },
		{ "[]xyz]+ab", 0, "ab" },
		{ "\\.de\\$", 0, ".de$" },
		{ "\\<word\\>", 0, "word" },
		{ "^X-Spam: \\/.*", 0, "X-Spam: " },
		{ "a{2}", 0, "a{2}" },
		{ "[unclosed", 0, "[unclosed" },
		{ "^TO_bob@example\\.org", 0, "bob@example.org" },
		{ "^FROM_DAEMON", 0, "" },
		{ ".*", 0, "" },
		{ "abc|defgh", -1, "" },
		{ "(abc", -1, "" },
		{ "abc)", -1, "" },
		{ "*abc", -1, "" },
		{ "ab**c", -1, "" },
		{ "ab.*?cd", -1, "" },
		{ "^*abc", -1, "" },
		{ "abc\\", -1, "" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf b;

		buf_init(&b, 4096);
		buf_append_str(&b, "junk");
		is_int(rules_regex_literal(cases[i].in, &b), cases[i].ret,
		    "literal of %s", cases[i].in);
		is_string(buf_cstr(&b), cases[i].lit, "is \"%s\"",
		    cases[i].lit);
		buf_free(&b);
	}
}

int
main(void)
{
	test_good();
	test_errors();
	test_limits();
	test_regex();
	test_bare_pipe();
	test_literal();
	return done_testing();
}
