/*
 * Unit tests for UTF8=ACCEPT (RFC 6855) and IMAP4rev2 (RFC 9051) in the
 * IMAP engine: imap_mailbox_utf8_valid at each boundary of RFC 3629 and
 * of the control ranges; then a session driven by bytes (whole and one
 * byte at a time) against a real Maildir and index: ENABLE, the parser
 * taking UTF-8 in quoted strings only after it, names in UTF-8 both ways
 * and in modified UTF-7 on disk, the 1024-byte name limit at N and N+1,
 * hostile names quoted (BAD) and literal (NO), APPEND UTF8 (~{n}), SEARCH
 * CHARSET refused after UTF8=ACCEPT, and after IMAP4rev2: SELECT without
 * RECENT with a LIST and [CLOSED], SEARCH answered as ESEARCH.
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "compat/compat.h"
#include "store.h"
#include "user.h"
#include "xmalloc.h"
#include "server/imap/imap_private.h"
#include "tap.h"
#include "imap_harness.h"

static char top[PATH_MAX];

static bool
t_isdir(const char *name)
{
	char path[sizeof(top) + 512];
	struct stat sb;
	int n;

	n = snprintf(path, sizeof(path), "%s/Maildir/%s", top, name);
	if (n < 0 || (size_t)n >= sizeof(path))
		bail("path too long");
	return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/*
 * imap_mailbox_utf8_valid.
 */

static void
test_valid(void)
{
	static const struct {
		const char *s;
		bool ok;
		const char *what;
	} cases[] = {
		{ "INBOX", true, "ASCII" },
		{ "A B", true, "U+0020, the first after C0" },
		{ "A\x1f" "B", false, "U+001F" },
		{ "A~B", true, "U+007E" },
		{ "A\x7f" "B", false, "U+007F (DEL)" },
		{ "A\xc2\x80" "B", false, "U+0080, C1" },
		{ "A\xc2\x9f" "B", false, "U+009F, the last of C1" },
		{ "A\xc2\xa0" "B", true, "U+00A0, the first after C1" },
		{ "A\xc1\xbf" "B", false, "overlong U+007F (C1 BF)" },
		{ "A\xc0\xaf" "B", false, "overlong '/' (C0 AF)" },
		{ "A\xdf\xbf" "B", true, "U+07FF" },
		{ "A\xe0\x9f\xbf" "B", false, "overlong U+07FF (E0 9F BF)" },
		{ "A\xe0\xa0\x80" "B", true, "U+0800" },
		{ "A\xed\x9f\xbf" "B", true, "U+D7FF" },
		{ "A\xed\xa0\x80" "B", false, "U+D800, a surrogate" },
		{ "A\xed\xbf\xbf" "B", false, "U+DFFF, a surrogate" },
		{ "A\xee\x80\x80" "B", true, "U+E000" },
		{ "A\xf0\x8f\xbf\xbf" "B", false, "overlong U+FFFF" },
		{ "A\xf0\x90\x80\x80" "B", true, "U+10000" },
		{ "A\xf4\x8f\xbf\xbf" "B", true, "U+10FFFF" },
		{ "A\xf4\x90\x80\x80" "B", false, "U+110000" },
		{ "A\xf5\x80\x80\x80" "B", false, "F5" },
		{ "A\xe2\x82", false, "cut short at the end" },
		{ "A\xe2\x82" "B", false, "cut short before ASCII" },
		{ "A\x80", false, "a lone continuation byte" },
		{ "A\xff", false, "FF" },
		{ "Entw\xc3\xbcrfe/\xc3\x9cnter", true, "Entwurfe/Unter" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		is_int(imap_mailbox_utf8_valid(cases[i].s,
		    strlen(cases[i].s)), cases[i].ok, "valid: %s",
		    cases[i].what);
	ok(!imap_mailbox_utf8_valid("A\0B", 3), "valid: NUL");
}

/*
 * UTF8=ACCEPT.
 */

/* A name of n bytes: 2-byte characters, then an 'a' if n is odd. */
static char *
t_long_name(size_t n)
{
	char *p = xmalloc(n + 1);

	for (size_t i = 0; i + 1 < n; i += 2)
		memcpy(p + i, "\xc3\xbc", 2);
	if (n % 2)
		p[n - 1] = 'a';
	p[n] = '\0';
	return p;
}

static void
test_names(bool bytewise)
{
	struct imap_session *s = t_session();
	const char *o;
	char cmd[2200], *name;

	o = t_send(s, "a1 CREATE \"Entw\xc3\xbcrfe\"\r\n", bytewise);
	ok(has(o, "a1 BAD"), "before ENABLE: UTF-8 in a quoted string: BAD");
	o = t_send(s, "a2 ENABLE CONDSTORE UTF8=ACCEPT\r\n", bytewise);
	ok(has(o, "* ENABLED CONDSTORE UTF8=ACCEPT\r\na2 OK"),
	    "ENABLE UTF8=ACCEPT");
	o = t_send(s, "a3 ENABLE utf8=accept\r\n", bytewise);
	ok(has(o, "* ENABLED\r\na3 OK"), "ENABLE again: nothing new");
	o = t_send(s, "a4 CREATE \"Entw\xc3\xbcrfe/\xc3\x9cnter\"\r\n",
	    bytewise);
	ok(has(o, "a4 OK"), "CREATE a quoted UTF-8 name");
	ok(t_isdir(".Entw&APw-rfe.&ANw-nter"),
	    "on disk in modified UTF-7");
	o = t_send(s, "a5 LIST \"\" \"Entw*\"\r\n", bytewise);
	ok(has(o, "\"/\" \"Entw\xc3\xbcrfe/\xc3\x9cnter\"\r\n") &&
	    !has(o, "&"), "LIST in UTF-8");
	o = t_send(s, "a6 CREATE {4+}\r\nA&B!\r\n", bytewise);
	ok(has(o, "a6 OK") && t_isdir(".A&-B!"),
	    "'&' is an ampersand, '&-' on disk");
	o = t_send(s, "a7 STATUS \"Entw\xc3\xbcrfe/\xc3\x9cnter\" (MESSAGES)"
	    "\r\n", bytewise);
	ok(has(o, "* STATUS \"Entw\xc3\xbcrfe/\xc3\x9cnter\" (MESSAGES 0)"),
	    "STATUS names it in UTF-8");
	o = t_send(s, "a8 RENAME \"A&B!\" \"\xc3\x84rger\"\r\n", bytewise);
	ok(has(o, "a8 OK") && t_isdir(".&AMQ-rger") && !t_isdir(".A&-B!"),
	    "RENAME to a UTF-8 name");
	o = t_send(s, "a9 DELETE \"\xc3\x84rger\"\r\n", bytewise);
	ok(has(o, "a9 OK") && !t_isdir(".&AMQ-rger"), "DELETE");

	/* Hostile names. */
	o = t_send(s, "b1 CREATE \"A\xc0\xaf\"\r\n", bytewise);
	ok(has(o, "b1 BAD"), "quoted overlong: BAD");
	o = t_send(s, "b2 CREATE \"A\xed\xa0\x80\"\r\n", bytewise);
	ok(has(o, "b2 BAD"), "quoted surrogate: BAD");
	o = t_send(s, "b3 CREATE {3+}\r\nA\xc0\xaf\r\n", bytewise);
	ok(has(o, "b3 NO [CANNOT]"), "literal overlong: NO");
	o = t_send(s, "b4 CREATE {4+}\r\nA\xed\xa0\x80\r\n", bytewise);
	ok(has(o, "b4 NO [CANNOT]"), "literal surrogate: NO");
	o = t_feed(s, "b5 CREATE {3+}\r\nA\0B\r\n",
	    sizeof("b5 CREATE {3+}\r\nA\0B\r\n") - 1, bytewise);
	ok(has(o, "b5 BAD"), "literal with NUL: BAD");
	o = t_send(s, "b6 CREATE {3+}\r\nA\nB\r\n", bytewise);
	ok(has(o, "b6 NO [CANNOT]"), "literal with LF: NO");
	o = t_send(s, "b7 LIST \"\" {3+}\r\n\xc0\xaf*\r\n", bytewise);
	ok(has(o, "b7 BAD"), "LIST pattern overlong: BAD");
	o = t_send(s, "b8 LIST {3+}\r\n\xed\xa0\x80 *\r\n", bytewise);
	ok(has(o, "b8 BAD"), "LIST reference surrogate: BAD");
	o = t_send(s, "b9 CREATE {4+}\r\nA\xc2\x80" "B\r\n", bytewise);
	ok(has(o, "b9 NO [CANNOT]"), "literal with U+0080 (C1): NO");
	o = t_send(s, "b10 CREATE {3+}\r\nA\x7f" "B\r\n", bytewise);
	ok(has(o, "b10 NO [CANNOT]"), "literal with DEL: NO");
	o = t_send(s, "b12 STATUS {3+}\r\nA\x7f" "B (MESSAGES)\r\n", bytewise);
	ok(has(o, "b12 NO [CANNOT]"), "STATUS of a name with DEL: NO [CANNOT]");
	o = t_send(s, "b13 LIST \"\" {3+}\r\nA\x01*\r\n", bytewise);
	ok(has(o, "b13 BAD"), "LIST pattern with U+0001: BAD");
	o = t_send(s, "b11 LIST \"\" *\r\n", bytewise);
	ok(!has(o, "\xc0") && !has(o, "\xed\xa0") && !has(o, "\xc2\x80") &&
	    !has(o, "\x7f") && !has(o, "A\nB"), "none of them was made");

	/* The name limit: 1024 bytes decoded, at N and N + 1. */
	name = t_long_name(1024);
	snprintf(cmd, sizeof(cmd), "c1 STATUS \"%s\" (MESSAGES)\r\n", name);
	o = t_send(s, cmd, false);
	ok(has(o, "c1 NO [NONEXISTENT]"), "a 1024-byte name is a name");
	free(name);
	name = t_long_name(1025);
	snprintf(cmd, sizeof(cmd), "c2 STATUS \"%s\" (MESSAGES)\r\n", name);
	o = t_send(s, cmd, false);
	ok(has(o, "c2 NO [CANNOT]"), "1025 bytes: too long");
	free(name);

	/* SEARCH CHARSET (RFC 6855 section 3). */
	o = t_send(s, "d1 SELECT INBOX\r\n", bytewise);
	ok(has(o, "* 0 RECENT") && !has(o, "* LIST") && !has(o, "[CLOSED]"),
	    "UTF8=ACCEPT alone: SELECT as IMAP4rev1");
	o = t_send(s, "d2 SEARCH CHARSET UTF-8 ALL\r\n", bytewise);
	ok(has(o, "d2 BAD"), "SEARCH CHARSET: BAD");
	o = t_send(s, "d3 SEARCH RETURN () CHARSET US-ASCII ALL\r\n", bytewise);
	ok(has(o, "d3 BAD"), "after RETURN: BAD");
	o = t_send(s, "d4 SEARCH SUBJECT \"sch\xc3\xb6n\"\r\n", bytewise);
	ok(has(o, "* SEARCH 2\r\nd4 OK"), "SEARCH with a UTF-8 string");
	o = t_send(s, "d5 SEARCH CHARSETX\r\n", bytewise);
	ok(has(o, "d5 BAD") && !has(o, "CHARSET after"),
	    "an unknown key is not taken for CHARSET");
	o = t_send(s, "d6 FETCH 2 (ENVELOPE)\r\n", bytewise);
	ok(has(o, "\"sch\xc3\xb6n\""), "ENVELOPE: the Subject quoted in UTF-8");
	o = t_send(s, "d7 DELETE \"Entw\xc3\xbcrfe/\xc3\x9cnter\"\r\n"
	    "d8 DELETE \"Entw\xc3\xbcrfe\"\r\n", bytewise);
	ok(has(o, "d7 OK") && !t_isdir(".Entw&APw-rfe.&ANw-nter"),
	    "DELETE the UTF-8 folder");
	imap_session_free(&s);
}

/* exists: the messages INBOX has after the APPEND. */
static void
test_append(bool bytewise, unsigned exists)
{
	static const char msg[] =
	    "Subject: Gr\xc3\xbc\xc3\x9f" "e\r\n\r\nx\r\n";
	struct imap_session *s = t_session();
	const char *o;
	char cmd[256], want[32];

	snprintf(cmd, sizeof(cmd), "e1 APPEND INBOX UTF8 (~{%zu+}\r\n%s)\r\n",
	    strlen(msg), msg);
	o = t_send(s, cmd, bytewise);
	ok(has(o, "e1 BAD"), "APPEND UTF8 before ENABLE: BAD");
	o = t_send(s, "e2 ENABLE UTF8=ACCEPT\r\n", bytewise);
	snprintf(cmd, sizeof(cmd), "e3 APPEND INBOX UTF8 (~{%zu}\r\n%s)\r\n",
	    strlen(msg), msg);
	o = t_send(s, cmd, bytewise);
	ok(has(o, "+ ") && has(o, "e3 OK [APPENDUID "), "APPEND UTF8 (~{n})");
	snprintf(cmd, sizeof(cmd), "e4 APPEND INBOX UTF8 ({%zu+}\r\n%s)\r\n",
	    strlen(msg), msg);
	o = t_send(s, cmd, bytewise);
	ok(has(o, "e4 BAD"), "UTF8 with a plain literal: BAD");
	snprintf(cmd, sizeof(cmd), "e5 APPEND INBOX UTF8 (~{%zu+}\r\n%s "
	    "~{1+}\r\nx)\r\n", strlen(msg), msg);
	o = t_send(s, cmd, bytewise);
	ok(has(o, "e5 BAD"), "UTF8 with two literals: BAD");
	o = t_send(s, "e6 SELECT INBOX\r\ne7 FETCH 3:* (ENVELOPE)\r\n",
	    bytewise);
	snprintf(want, sizeof(want), "* %u EXISTS", exists);
	ok(has(o, want) && has(o, "\"Gr\xc3\xbc\xc3\x9f" "e\""),
	    "the appended message, its Subject in UTF-8");
	imap_session_free(&s);
}

/*
 * IMAP4rev2.
 */

static void
test_rev2(bool bytewise)
{
	struct imap_session *s = t_session();
	const char *o;

	o = t_send(s, "f1 ENABLE IMAP4rev2\r\n", bytewise);
	ok(has(o, "* ENABLED IMAP4rev2\r\nf1 OK"), "ENABLE IMAP4rev2");
	o = t_send(s, "f2 SELECT INBOX\r\n", bytewise);
	ok(has(o, "f2 OK") && !has(o, "RECENT") &&
	    has(o, "* LIST () \"/\" \"INBOX\"\r\n") && !has(o, "[CLOSED]"),
	    "SELECT: no RECENT, a LIST");
	o = t_send(s, "f3 EXAMINE INBOX\r\n", bytewise);
	ok(strncmp(o, "* OK [CLOSED]", 13) == 0 && has(o, "f3 OK [READ-ONLY]"),
	    "a reselect: [CLOSED] first");
	o = t_send(s, "f4 SEARCH ALL\r\n", bytewise);
	is_string(o, "* ESEARCH (TAG \"f4\") ALL 1:4\r\nf4 OK SEARCH completed"
	    "\r\n", "SEARCH: ESEARCH");
	o = t_send(s, "f5 UID SEARCH 2\r\n", bytewise);
	is_string(o, "* ESEARCH (TAG \"f5\") UID ALL 2\r\nf5 OK UID SEARCH "
	    "completed\r\n", "UID SEARCH: ESEARCH with UID");
	o = t_send(s, "f6 SEARCH DELETED\r\n", bytewise);
	is_string(o, "* ESEARCH (TAG \"f6\")\r\nf6 OK SEARCH completed\r\n",
	    "nothing matched: the tag alone");
	o = t_send(s, "f7 SEARCH CHARSET UTF-8 SUBJECT \"sch\xc3\xb6n\"\r\n",
	    bytewise);
	ok(has(o, "* ESEARCH (TAG \"f7\") ALL 2\r\nf7 OK"),
	    "CHARSET is fine under IMAP4rev2 alone");
	o = t_send(s, "f8 CREATE \"\xc3\x9c\"\r\nf9 LIST \"\" \"\xc3\x9c\"\r\n",
	    bytewise);
	ok(has(o, "f8 OK") && has(o, "\"/\" \"\xc3\x9c\"\r\nf9 OK"),
	    "names in UTF-8");
	o = t_send(s, "f10 DELETE \"\xc3\x9c\"\r\n", bytewise);
	ok(has(o, "f10 OK") && !t_isdir(".&ANw-"), "and DELETE");
	imap_session_free(&s);
}

static void
test_caps(void)
{
	struct imap_settings set = { false, true, true, "PLAIN", 0, false };
	struct imap_session *s = imap_session_new(&set, &t_cb, NULL);
	const char *o;

	buf_truncate(&out, 0);
	imap_session_greet(s);
	ok(has(buf_cstr(&out), "IMAP4rev1 IMAP4rev2 ") &&
	    has(buf_cstr(&out), " UTF8=ACCEPT"), "the greeting offers both");
	o = t_send(s, "g1 ENABLE UTF8=ACCEPT\r\n", false);
	ok(has(o, "g1 BAD"), "ENABLE before login: BAD");
	imap_session_free(&s);
}

int
main(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(top, sizeof(top), "/tmp/loft-imaputf8-XXXXXX");
	if (mkdtemp(top) == NULL)
		bail("mkdtemp");
	buf_init(&out, 1 << 22);
	alice.name = xstrdup("alice");
	alice.pwhash = xstrdup("");
	alice.uid = getuid();
	alice.gid = getgid();
	alice.home = xstrdup(top);
	alice.mail_location = xstrdup("maildir:~/Maildir");
	alice.fields = xstrdup("");

	test_valid();
	test_caps();
	t_deliver("INBOX", "Subject: first\n\nhi\n");
	t_deliver("INBOX", "Subject: sch\xc3\xb6n\n\nbody\n");
	test_names(false);
	test_names(true);
	test_append(false, 3);
	test_append(true, 4);
	test_rev2(false);
	test_rev2(true);

	snprintf(cmd, sizeof(cmd), "rm -rf %s", top);
	if (system(cmd) != 0)
		diag("cleanup failed");
	free(alice.name);
	free(alice.pwhash);
	free(alice.home);
	free(alice.mail_location);
	free(alice.fields);
	buf_free(&out);
	return done_testing();
}
