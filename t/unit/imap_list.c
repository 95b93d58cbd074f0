/*
 * Unit tests for server/imap/imap_list.c, driven by bytes against real
 * Maildir and mbox trees: the default folders (on disk), LIST with
 * RFC 5258 selection and return options, multiple patterns (limit at N
 * and N + 1), RECURSIVEMATCH and CHILDINFO, RFC 5819 STATUS after LIST,
 * RFC 6154 special-use attributes and the SPECIAL-USE selection, XLIST,
 * LSUB, the delimiter query, INBOX in any case, modified UTF-7 names,
 * a wildcard-heavy pattern, an extended LIST fed byte by byte, and
 * CREATE-SPECIAL-USE with its file on disk and the rename hook, and
 * subscriptions (SUBSCRIBE, UNSUBSCRIBE, their file, names that are no
 * folder, DELETE and RENAME).
 *
 * Needs the command table to send LIST, LSUB and XLIST to
 * imap_cmd_list_ext and CREATE to imap_cmd_create_ext
 * (server/imap/imap_session.c).
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

int imap_default_folders(struct imap_session *s);
int imap_special_use_rename(struct imap_session *s, const char *from,
    const char *to);

static bool maildir;

/* Lines of hay that start with prefix. */
static int
lines(const char *hay, const char *prefix)
{
	int n = 0;

	for (const char *p = hay; *p != '\0';) {
		if (strncmp(p, prefix, strlen(prefix)) == 0)
			n++;
		if ((p = strchr(p, '\n')) == NULL)
			break;
		p++;
	}
	return n;
}

/*
 * T: expected text with "@" for how a leaf folder is listed (Maildir:
 * \HasNoChildren; mbox, a file: \Noinferiors \HasNoChildren) and "#"
 * for Sent once it has a child (Maildir \HasChildren; mbox cannot have
 * one). Four buffers in turn, so one assertion may use two.
 */
static const char *
T(const char *fmt)
{
	static char bufs[4][1024];
	static unsigned next;
	char *b = bufs[next++ % 4];
	size_t n = 0;

	for (; *fmt != '\0' && n + 16 < sizeof(bufs[0]); fmt++) {
		const char *w = NULL;

		if (*fmt == '@')
			w = maildir ? "\\HasNoChildren" :
			    "\\Noinferiors \\HasNoChildren";
		else if (*fmt == '#')
			w = maildir ? "\\HasChildren" :
			    "\\Noinferiors \\HasNoChildren";
		if (w != NULL)
			n += strlcpy(b + n, w, sizeof(bufs[0]) - n);
		else
			b[n++] = *fmt;
	}
	b[n] = '\0';
	return b;
}

/* The folder exists on disk as the format stores it. */
static bool
t_on_disk(const char *folder)
{
	char path[PATH_MAX];
	struct stat sb;

	if (maildir)
		snprintf(path, sizeof(path), "%s/Maildir/.%s/cur", alice.home,
		    folder);
	else
		snprintf(path, sizeof(path), "%s/mail/%s", alice.home, folder);
	return stat(path, &sb) == 0;
}

static void
test_defaults(struct imap_session *s)
{
	static const char *const names[] = { "Sent", "Drafts", "Trash",
	    "Junk", "Archive" };
	const char *r;

	ok(!t_on_disk("Sent"), "no Sent before the defaults");
	is_int(imap_default_folders(s), 0, "imap_default_folders: 0");
	for (size_t i = 0; i < 5; i++)
		ok(t_on_disk(names[i]), "%s made on disk", names[i]);
	r = t_say(s, "d1 DELETE Trash\r\n");
	ok(has(r, "d1 OK"), "Trash deleted");
	is_int(imap_default_folders(s), 0, "defaults again: 0");
	ok(!t_on_disk("Trash"), "a user with folders gets none again");
	r = t_say(s, "d2 CREATE Trash\r\n");
	ok(has(r, "d2 OK"), "Trash made again");
}

static void
test_basic(struct imap_session *s)
{
	const char *r;

	r = t_say(s, "l1 LIST \"\" \"*\"\r\n");
	ok(has(r, "* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n"),
	    "INBOX listed");
	ok(has(r, T("* LIST (@ \\Sent) \"/\" \"Sent\"\r\n")),
	    "Sent is \\Sent");
	ok(has(r, T("* LIST (@ \\Drafts) \"/\" \"Drafts\"\r\n")),
	    "Drafts is \\Drafts");
	ok(has(r, T("* LIST (@ \\Trash) \"/\" \"Trash\"\r\n")),
	    "Trash is \\Trash");
	ok(has(r, T("* LIST (@ \\Junk) \"/\" \"Junk\"\r\n")),
	    "Junk is \\Junk");
	ok(has(r, T("* LIST (@ \\Archive) \"/\" \"Archive\"\r\n")),
	    "Archive is \\Archive");
	is_int(lines(r, "* LIST "), 6, "six folders");
	ok(has(r, "l1 OK LIST completed\r\n"), "LIST OK");

	r = t_say(s, "l2 LIST \"\" \"\"\r\n");
	is_string(r, "* LIST (\\Noselect) \"/\" \"\"\r\nl2 OK LIST completed"
	    "\r\n", "empty pattern: the delimiter");
	r = t_say(s, "l3 LIST \"\" iNbOx\r\n");
	is_string(r, "* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n"
	    "l3 OK LIST completed\r\n", "INBOX in any case");
	r = t_say(s, "l4 LIST \"\" sent\r\n");
	is_string(r, "l4 OK LIST completed\r\n", "other names keep case");
	r = t_say(s, "l5 LIST \"S\" \"%\"\r\n");
	is_string(r, T("* LIST (@ \\Sent) \"/\" \"Sent\"\r\n"
	    "l5 OK LIST completed\r\n"), "reference and pattern together");
	r = t_say(s, "l6 LIST \"\" \"*\" RETURN ()\r\n");
	is_int(lines(r, "* LIST "), 6, "empty RETURN list");
	ok(has(r, "l6 OK"), "RETURN () OK");
	r = t_say(s, "l7 LIST () \"\" \"*\" RETURN (CHILDREN)\r\n");
	is_int(lines(r, "* LIST "), 6, "empty selection, CHILDREN");
}

static void
test_hierarchy(struct imap_session *s)
{
	const char *r;

	r = t_say(s, "h1 CREATE Work/Projects\r\n");
	ok(has(r, "h1 OK"), "Work/Projects made");
	r = t_say(s, "h2 CREATE Sent/2024\r\n");
	ok(has(r, maildir ? "h2 OK" : "h2 NO [CANNOT]"),
	    "Sent/2024 made (mbox: not below a file)");
	r = t_say(s, "h3 LIST \"\" %\r\n");
	ok(has(r, "* LIST (\\Noselect \\HasChildren) \"/\" \"Work\"\r\n"),
	    "%% stops at the delimiter: Work \\Noselect");
	ok(!has(r, "Projects"), "%% does not cross /");
	ok(has(r, T("* LIST (# \\Sent) \"/\" \"Sent\"\r\n")),
	    "Sent has children and stays \\Sent");
	r = t_say(s, "h4 LIST \"\" Sent/%\r\n");
	is_string(r, maildir ?
	    "* LIST (\\HasNoChildren) \"/\" \"Sent/2024\"\r\n"
	    "h4 OK LIST completed\r\n" : "h4 OK LIST completed\r\n",
	    "only top-level names are special");
	r = t_say(s, "h5 LIST \"\" */Pro*\r\n");
	is_string(r, T("* LIST (@) \"/\" \"Work/Projects\"\r\n"
	    "h5 OK LIST completed\r\n"), "* crosses /");
	r = t_say(s, "h6 LIST \"\" %/%\r\n");
	is_int(lines(r, "* LIST "), maildir ? 2 : 1,
	    "%%/%% : the second-level folders");
}

static void
test_subscribed(struct imap_session *s)
{
	const char *r;

	r = t_say(s, "s1 LIST (SUBSCRIBED) \"\" *\r\n");
	ok(has(r, "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"INBOX\"\r\n"),
	    "SUBSCRIBED: INBOX \\Subscribed");
	ok(has(r, T("* LIST (# \\Subscribed \\Sent) \"/\" \"Sent\"")),
	    "Sent \\Subscribed and \\Sent");
	ok(!has(r, "\"Work\""), "a \\Noselect parent is not subscribed");
	ok(has(r, "\"Work/Projects\""), "its child is");
	r = t_say(s, "s2 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" %\r\n");
	ok(has(r, "* LIST (\\Noselect \\HasChildren) \"/\" \"Work\" "
	    "(\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"),
	    "RECURSIVEMATCH: Work with CHILDINFO");
	ok(has(r, "\"Sent\" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n") == maildir,
	    "Sent has a subscribed child too (Maildir)");
	ok(has(r, "\"INBOX\"\r\n"), "INBOX without CHILDINFO");
	r = t_say(s, "s3 LIST (RECURSIVEMATCH) \"\" %\r\n");
	ok(has(r, "s3 BAD"), "RECURSIVEMATCH alone is BAD");
	r = t_say(s, "s4 LIST (REMOTE RECURSIVEMATCH) \"\" %\r\n");
	ok(has(r, "s4 BAD"), "RECURSIVEMATCH with REMOTE only is BAD");
	r = t_say(s, "s5 LIST (REMOTE) \"\" INBOX RETURN (SUBSCRIBED)\r\n");
	is_string(r, "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"INBOX\""
	    "\r\ns5 OK LIST completed\r\n", "REMOTE, RETURN (SUBSCRIBED)");
	r = t_say(s, "s6 LSUB \"\" *\r\n");
	ok(has(r, "* LSUB (\\HasNoChildren) \"/\" \"INBOX\"\r\n"),
	    "LSUB answers LSUB");
	ok(has(r, T("* LSUB (#) \"/\" \"Sent\"\r\n")),
	    "LSUB: no special-use");
	ok(has(r, "s6 OK LSUB completed"), "LSUB OK");
	r = t_say(s, "s7 LSUB (SUBSCRIBED) \"\" *\r\n");
	ok(has(r, "s7 BAD"), "LSUB takes no options");
}

static void
test_special(struct imap_session *s)
{
	const char *r;

	r = t_say(s, "u1 LIST (SPECIAL-USE) \"\" *\r\n");
	is_int(lines(r, "* LIST "), 5, "SPECIAL-USE selection: five");
	ok(!has(r, "INBOX"), "not INBOX");
	r = t_say(s, "u2 LIST \"\" * RETURN (SPECIAL-USE)\r\n");
	ok(has(r, "\\Junk) \"/\" \"Junk\""), "RETURN (SPECIAL-USE)");
	r = t_say(s, "u3 XLIST \"\" *\r\n");
	ok(has(r, "* XLIST (\\HasNoChildren \\Inbox) \"/\" \"INBOX\"\r\n"),
	    "XLIST: \\Inbox");
	ok(has(r, T("* XLIST (@ \\Spam) \"/\" \"Junk\"\r\n")),
	    "XLIST: Junk is \\Spam");
	ok(has(r, T("* XLIST (@ \\Trash) \"/\" \"Trash\"\r\n")),
	    "XLIST: \\Trash");
	ok(has(r, "u3 OK XLIST completed"), "XLIST OK");
}

static void
test_status(struct imap_session *s)
{
	const char *r;

	r = t_say(s, "t1 LIST \"\" * RETURN (STATUS (MESSAGES UNSEEN "
	    "UIDNEXT))\r\n");
	ok(has(r, "* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n"
	    "* STATUS \"INBOX\" (MESSAGES 2 UNSEEN 2 UIDNEXT 3)\r\n"),
	    "STATUS right after INBOX's LIST");
	ok(has(r, "\"Drafts\"\r\n* STATUS \"Drafts\" (MESSAGES 0 UNSEEN 0 "
	    "UIDNEXT 1)\r\n"), "STATUS of an empty folder");
	ok(!has(r, "STATUS \"Work\""), "no STATUS for a \\Noselect parent");
	is_int(lines(r, "* STATUS "), lines(r, "* LIST ") - 1,
	    "one STATUS per selectable folder");
	r = t_say(s, "t2 LIST \"\" INBOX RETURN (STATUS (size deleted "
	    "RECENT UIDVALIDITY))\r\n");
	ok(has(r, "* STATUS \"INBOX\" (SIZE "), "items in any case");
	ok(has(r, " DELETED 0 RECENT 0 UIDVALIDITY "), "all four items");
	r = t_say(s, "t3 LIST \"\" * RETURN (STATUS (BOGUS))\r\n");
	ok(has(r, "t3 BAD") && !has(r, "* LIST"), "unknown STATUS item: BAD");
	r = t_say(s, "t4 LIST \"\" * RETURN (STATUS ())\r\n");
	ok(has(r, "t4 BAD"), "empty STATUS items: BAD");
	r = t_say(s, "t5 LIST \"\" * RETURN (STATUS)\r\n");
	ok(has(r, "t5 BAD"), "STATUS without items: BAD");
	r = t_say(s, "t6 LIST \"\" * RETURN (FOO)\r\n");
	ok(has(r, "t6 BAD"), "unknown return option: BAD");
	r = t_say(s, "t7 LIST (FOO) \"\" *\r\n");
	ok(has(r, "t7 BAD"), "unknown selection option: BAD");
	r = t_say(s, "t8 LIST \"\" * RETURNS (CHILDREN)\r\n");
	ok(has(r, "t8 BAD"), "not RETURN: BAD");
	r = t_say(s, "t9 LIST \"\" * RETURN (CHILDREN) x\r\n");
	ok(has(r, "t9 BAD"), "trailing argument: BAD");
	r = t_say(s, "t10 LIST \"\"\r\n");
	ok(has(r, "t10 BAD"), "no pattern: BAD");
}

/* "LIST "" (p1 ... pn)" with n patterns, the last one "Sent". */
static void
t_patterns(struct buf *b, unsigned n, const char *tag)
{
	buf_truncate(b, 0);
	buf_printf(b, "%s LIST \"\" (", tag);
	for (unsigned i = 1; i < n; i++)
		buf_printf(b, "nothing%u ", i);
	buf_append_str(b, "Sent)\r\n");
}

static void
test_patterns(struct imap_session *s)
{
	struct buf b;
	const char *r;

	r = t_say(s, "p1 LIST \"\" (INBOX Sent S* \"Dr%\")\r\n");
	is_int(lines(r, "* LIST "), maildir ? 4 : 3,
	    "several patterns: each folder once");
	ok(has(r, "\"INBOX\"") && has(r, "\"Sent\"") && has(r, "\"Drafts\"") &&
	    has(r, maildir ? "\"Sent/2024\"" : "p1 OK"),
	    "INBOX, Sent, Drafts (Sent/2024)");
	r = t_say(s, "p2 LIST \"\" ()\r\n");
	ok(has(r, "p2 BAD"), "an empty pattern list: BAD");
	buf_init(&b, 4096);
	t_patterns(&b, 32, "p3");
	r = t_say(s, buf_cstr(&b));
	ok(has(r, "\"Sent\"") && has(r, "p3 OK"), "32 patterns: OK");
	t_patterns(&b, 33, "p4");
	r = t_say(s, buf_cstr(&b));
	ok(has(r, "p4 BAD") && !has(r, "* LIST"), "33 patterns: BAD");
	/* Backtracking would take 2^40 steps here. */
	buf_truncate(&b, 0);
	buf_append_str(&b, "p5 LIST \"\" \"");
	for (int i = 0; i < 40; i++)
		buf_append_str(&b, "%*");
	buf_append_str(&b, "Q\"\r\n");
	r = t_say(s, buf_cstr(&b));
	is_string(r, "p5 OK LIST completed\r\n", "40 wildcards, no match");
	buf_free(&b);
	/* Reference + pattern: IMAP_LIST_NAME_MAX (1024) bytes and one
	 * more. */
	buf_init(&b, 4096);
	buf_append_str(&b, "p8 LIST \"ab\" \"");
	for (int i = 0; i < 1022; i++)
		buf_append_byte(&b, 'x');
	buf_append_str(&b, "\"\r\n");
	r = t_say(s, buf_cstr(&b));
	is_string(r, "p8 OK LIST completed\r\n", "1024 bytes: OK");
	buf_truncate(&b, 0);
	buf_append_str(&b, "p9 LIST \"ab\" \"");
	for (int i = 0; i < 1023; i++)
		buf_append_byte(&b, 'x');
	buf_append_str(&b, "\"\r\n");
	r = t_say(s, buf_cstr(&b));
	ok(has(r, "p9 BAD"), "1025 bytes: BAD");
	buf_free(&b);
	r = t_say(s, "p6 CREATE \"Entw&APw-rfe\"\r\n");
	ok(has(r, "p6 OK"), "a non-ASCII folder");
	r = t_say(s, "p7 LIST \"\" \"Entw&APw-*\"\r\n");
	is_string(r, T("* LIST (@) \"/\" \"Entw&APw-rfe\"\r\n"
	    "p7 OK LIST completed\r\n"), "modified UTF-7 both ways");
}

/* The special-use file as text ("" if none); caller frees. */
static char *
t_special_file(void)
{
	char path[PATH_MAX], text[4096];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", alice.home, maildir ?
	    "Maildir/loft-special-use" : "mail/.loft-special-use");
	if ((f = fopen(path, "r")) == NULL)
		return xstrdup("");
	n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	return xstrdup(text);
}

static void
test_create_special(struct imap_session *s)
{
	struct imap_session *s2;
	const char *r;
	char *file;

	r = t_say(s, "c1 CREATE \"Sent Items\" (USE (\\Sent))\r\n");
	is_string(r, "c1 OK CREATE completed\r\n", "CREATE with USE");
	file = t_special_file();
	is_string(file, "\\Sent\tSent Items\n", "the use on disk");
	free(file);
	r = t_send(s, "c2 CREATE Bulk (use (\\Junk \\archive))\r\n", true);
	is_string(r, "c2 OK CREATE completed\r\n", "two uses, byte by byte");
	r = t_say(s, "c3 LIST \"\" (\"Sent Items\" Bulk)\r\n");
	ok(has(r, T("* LIST (@ \\Junk \\Archive) \"/\" \"Bulk\"\r\n")),
	    "Bulk is \\Junk \\Archive");
	ok(has(r, T("* LIST (@ \\Sent) \"/\" \"Sent Items\"\r\n")),
	    "Sent Items is \\Sent");
	r = t_say(s, "c4 CREATE Other (USE (\\All))\r\n");
	is_string(r, "c4 NO [USEATTR] Special use not supported\r\n",
	    "an unkept use: USEATTR");
	ok(!t_on_disk("Other"), "and no folder");
	r = t_say(s, "c5 CREATE Other (USE (Sent))\r\n");
	ok(has(r, "c5 BAD"), "a use that is no flag: BAD");
	r = t_say(s, "c6 CREATE Other (FOO (\\Sent))\r\n");
	ok(has(r, "c6 BAD"), "an unknown parameter: BAD");
	r = t_say(s, "c7 CREATE Bulk (USE (\\Trash))\r\n");
	ok(has(r, "c7 NO [ALREADYEXISTS]"), "an existing name: ALREADYEXISTS");
	file = t_special_file();
	ok(!has(file, "\\Trash"), "and its uses unchanged");
	free(file);
	r = t_say(s, "c8 CREATE Plain\r\n");
	is_string(r, "c8 OK CREATE completed\r\n", "plain CREATE still works");
	r = t_say(s, "c9 LIST (SPECIAL-USE) \"\" *\r\n");
	is_int(lines(r, "* LIST "), 7, "SPECIAL-USE selection: seven now");

	s2 = t_session();
	r = t_say(s2, "c10 XLIST \"\" Bulk\r\n");
	ok(has(r, T("* XLIST (@ \\Spam \\Archive) \"/\" \"Bulk\"\r\n")),
	    "another session reads the file");
	imap_session_free(&s2);

	r = t_say(s, "c11 RENAME \"Sent Items\" \"Old Sent\"\r\n");
	ok(has(r, "c11 OK"), "renamed");
	is_int(imap_special_use_rename(s, "Sent Items", "Old Sent"), 0,
	    "imap_special_use_rename: 0");
	r = t_say(s, "c12 LIST \"\" \"Old Sent\"\r\n");
	ok(has(r, T("* LIST (@ \\Sent) \"/\" \"Old Sent\"\r\n")),
	    "the use follows the rename");
	r = t_say(s, "c13 DELETE Bulk\r\n");
	ok(has(r, "c13 OK"), "Bulk deleted");
	is_int(imap_special_use_rename(s, "Bulk", NULL), 0,
	    "imap_special_use_rename to NULL: 0");
	file = t_special_file();
	is_string(file, "\\Sent\tOld Sent\n", "only Old Sent is left");
	free(file);
	r = t_say(s, "c14 CREATE Bulk\r\n");
	r = t_say(s, "c15 LIST \"\" Bulk\r\n");
	ok(has(r, T("* LIST (@) \"/\" \"Bulk\"\r\n")),
	    "a new Bulk has no use");
}

static void
test_bytewise(struct imap_session *s)
{
	const char *cmd = "b1 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (% "
	    "Work/%) RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES))\r\n";
	char *whole;
	const char *r;

	whole = xstrdup(t_send(s, cmd, false));
	r = t_send(s, cmd, true);
	is_string(r, whole, "byte by byte: the same answer");
	ok(has(whole, "\"Work/Projects\"\r\n* STATUS \"Work/Projects\" "
	    "(MESSAGES 0)\r\n"), "second pattern with STATUS");
	ok(has(whole, "b1 OK LIST completed"), "OK");
	free(whole);
}

/* The subscriptions file, or "" if there is none. */
static const char *
t_subs_file(void)
{
	static char text[4096];
	char path[PATH_MAX];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", alice.home, maildir ?
	    "Maildir/loft-subscriptions" : "mail/.loft-subscriptions");
	if ((f = fopen(path, "r")) == NULL)
		return "";
	n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	return text;
}

/* SUBSCRIBE, UNSUBSCRIBE, LSUB and LIST (SUBSCRIBED) against the file:
 * no file means every folder; the first change writes them all down. */
static void
test_subscriptions(struct imap_session *s)
{
	const char *r;

	is_string(t_subs_file(), "", "no subscriptions file yet");
	r = t_say(s, "b1 UNSUBSCRIBE Trash\r\n");
	ok(has(r, "b1 OK UNSUBSCRIBE completed"), "UNSUBSCRIBE Trash");
	ok(has(t_subs_file(), "INBOX\n") && has(t_subs_file(), "Sent\n") &&
	    !has(t_subs_file(), "Trash\n"),
	    "the file: every folder but Trash");
	r = t_say(s, "b2 LSUB \"\" *\r\n");
	ok(has(r, "\"INBOX\"\r\n") && has(r, "\"Drafts\"\r\n") &&
	    !has(r, "\"Trash\""), "LSUB: Trash gone, the others there");
	r = t_say(s, "b3 LIST (SUBSCRIBED) \"\" Trash\r\n");
	is_string(r, "b3 OK LIST completed\r\n", "LIST (SUBSCRIBED): no Trash");
	r = t_say(s, "b4 LIST \"\" Trash RETURN (SUBSCRIBED)\r\n");
	ok(has(r, "\"Trash\"\r\n") && !has(r, "\\Subscribed"),
	    "LIST RETURN (SUBSCRIBED): Trash, not \\Subscribed");

	r = t_say(s, "b5 SUBSCRIBE Nowhere/Land\r\n");
	ok(has(r, "b5 OK SUBSCRIBE completed"), "SUBSCRIBE a name that "
	    "is no folder");
	r = t_say(s, "b6 LSUB \"\" Nowhere/*\r\n");
	is_string(r, "* LSUB (\\Noselect) \"/\" \"Nowhere/Land\"\r\n"
	    "b6 OK LSUB completed\r\n", "LSUB: \\Noselect");
	r = t_say(s, "b7 LIST (SUBSCRIBED) \"\" Nowhere/Land\r\n");
	is_string(r, "* LIST (\\NonExistent \\Subscribed) \"/\" "
	    "\"Nowhere/Land\"\r\nb7 OK LIST completed\r\n",
	    "LIST (SUBSCRIBED): \\NonExistent");
	r = t_say(s, "b8 LIST \"\" Nowhere*\r\n");
	is_string(r, "b8 OK LIST completed\r\n", "plain LIST: not there");

	r = t_say(s, "b9 CREATE Tmp\r\nb9a LSUB \"\" Tmp\r\n");
	ok(has(r, "b9 OK") && !has(r, "* LSUB"),
	    "CREATE does not subscribe (once there is a file)");
	r = t_say(s, "b10 SUBSCRIBE Tmp\r\nb10a DELETE Tmp\r\n");
	ok(has(r, "b10a OK"), "SUBSCRIBE, DELETE Tmp");
	r = t_say(s, "b11 LSUB \"\" Tmp\r\n");
	ok(has(r, "* LSUB (\\Noselect) \"/\" \"Tmp\"\r\n"),
	    "DELETE keeps the subscription");
	r = t_say(s, "b12 CREATE Tmp2\r\nb13 SUBSCRIBE Tmp2\r\n"
	    "b14 RENAME Tmp2 Tmp3\r\n");
	ok(has(r, "b14 OK RENAME completed"), "RENAME Tmp2 Tmp3");
	r = t_say(s, "b15 LSUB \"\" Tmp*\r\n");
	ok(has(r, "\"Tmp3\"\r\n") && !has(r, "\"Tmp2\""),
	    "RENAME moved the subscription");
	r = t_say(s, "b16 SUBSCRIBE Trash\r\nb17 UNSUBSCRIBE Nowhere/Land\r\n"
	    "b18 LSUB \"\" *\r\n");
	ok(has(r, "\"Trash\"\r\n") && !has(r, "Nowhere"),
	    "SUBSCRIBE Trash again, UNSUBSCRIBE Nowhere/Land");
	r = t_say(s, "b19 SUBSCRIBE a.b\r\n");
	ok(has(r, "b19 NO [CANNOT]"), "a name the store refuses: NO [CANNOT]");
}

static void
t_format(const char *location, bool md)
{
	struct imap_session *s;
	char home[PATH_MAX], cmd[PATH_MAX + 16];

	snprintf(home, sizeof(home), "/tmp/loft-imapl-XXXXXX");
	if (mkdtemp(home) == NULL)
		bail("mkdtemp");
	maildir = md;
	alice.home = home;
	alice.mail_location = (char *)location;
	diag("format %s", location);
	t_deliver("INBOX", "Subject: one\n\none\n");
	t_deliver("INBOX", "Subject: two\n\ntwo\n");
	s = t_session();
	/* Until the table routes LIST to imap_cmd_list_ext, skip rather
	 * than run the old matcher into the wildcard test (it backtracks). */
	if (strncmp(t_say(s, "x0 XLIST \"\" \"\"\r\n"), "* XLIST ", 8) != 0)
	{
		imap_session_free(&s);
		snprintf(cmd, sizeof(cmd), "rm -rf %s", home);
		if (system(cmd) != 0)
			diag("cleanup failed");
		skip_all("LIST, LSUB, XLIST, CREATE not routed to imap_list.c");
	}
	test_defaults(s);
	test_basic(s);
	test_hierarchy(s);
	test_subscribed(s);
	test_special(s);
	test_status(s);
	test_patterns(s);
	test_bytewise(s);
	test_create_special(s);
	test_subscriptions(s);
	imap_session_free(&s);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", home);
	if (system(cmd) != 0)
		diag("cleanup failed");
}

int
main(void)
{
	buf_init(&out, 1 << 22);
	alice.name = xstrdup("alice");
	alice.pwhash = xstrdup("");
	alice.uid = getuid();
	alice.gid = getgid();
	alice.fields = xstrdup("");

	t_format("maildir:~/Maildir", true);
	t_format("mbox:~/mail:INBOX=~/inbox", false);

	alice.home = NULL;
	alice.mail_location = NULL;
	free(alice.name);
	free(alice.pwhash);
	free(alice.fields);
	buf_free(&out);
	return done_testing();
}
