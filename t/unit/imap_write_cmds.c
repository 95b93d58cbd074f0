/*
 * Unit tests for the IMAP commands that change mail
 * (server/imap/imap_cmd_write.c, and SELECT / CLOSE / LIST as they changed
 * with them), driven by bytes against real Maildir and mbox trees: STORE
 * with every form, read-only EXAMINE, a second session seeing the
 * changes, EXPUNGE and UID EXPUNGE, COPY and MOVE with COPYUID and
 * TRYCREATE, APPEND streamed (also byte by byte) with APPENDUID, flags and
 * date, the APPENDLIMIT at N and N + 1, CREATE, DELETE, RENAME with
 * their response codes, SUBSCRIBE, LSUB, CLOSE's silent expunge. What is
 * on disk is checked: Maildir file names and mbox contents.
 */
#include "config.h"

#include <dirent.h>
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

static struct buf out;
static struct user alice;
static bool maildir;

static void
t_write(void *ctx, const unsigned char *d, size_t len)
{
	(void)ctx;
	if (buf_append(&out, d, len) < 0)
		bail("output too large");
}

static const struct imap_callbacks cb = { .write = t_write };

static const char *
t_feed(struct imap_session *s, const void *data, size_t len, bool bytewise)
{
	const unsigned char *p = data;
	size_t used = 0;

	if (bytewise) {
		for (size_t i = 0; i < len; i++)
			used += imap_session_input(s, p + i, 1);
	} else
		used = imap_session_input(s, p, len);
	if (used != len)
		diag("only %zu of %zu bytes taken", used, len);
	return buf_cstr(&out);
}

static const char *
t_say(struct imap_session *s, const char *text)
{
	buf_truncate(&out, 0);
	return t_feed(s, text, strlen(text), false);
}

static bool
has(const char *hay, const char *needle)
{
	return strstr(hay, needle) != NULL;
}

static void
t_deliver(const char *folder, const char *msg)
{
	struct store *st;
	struct store_delivery d = { folder, "bob@example.net", 1700000000,
	    (const unsigned char *)msg, strlen(msg) };
	struct store_delivered r;
	const char *err;

	if (store_open(&alice, &st, &err) < 0)
		bail("store_open: %s", err);
	if (store_deliver(st, &d, &r, &err) != STORE_OK)
		bail("store_deliver: %s", err);
	store_close(&st);
}

static struct imap_session *
t_session(void)
{
	struct imap_settings set = { false, true, false, "", 0, false };
	struct imap_session *s;

	s = imap_session_new_authenticated(&set, &cb, NULL, "alice");
	if (imap_session_login(s, &alice) < 0)
		bail("login");
	return s;
}

/* Maildir: the files of folder ("" INBOX) in cur/ and new/ whose name
 * contains want (NULL: all). */
static int
t_files(const char *folder, const char *want)
{
	char path[PATH_MAX];
	struct dirent *de;
	int n = 0;

	for (int i = 0; i < 2; i++) {
		DIR *d;

		snprintf(path, sizeof(path), "%s/Maildir/%s%s/%s", alice.home,
		    folder[0] != '\0' ? "." : "", folder, i ? "new" : "cur");
		if ((d = opendir(path)) == NULL)
			continue;
		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] != '.' && (want == NULL ||
			    strstr(de->d_name, want) != NULL))
				n++;
		closedir(d);
	}
	return n;
}

/* mbox: the file of folder as text ("" INBOX); caller frees. */
static char *
t_mbox(const char *folder)
{
	char path[PATH_MAX];
	struct buf b;
	FILE *f;
	char chunk[4096], *text;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", alice.home, folder[0] != '\0' ?
	    folder : "inbox");
	if (folder[0] != '\0')
		snprintf(path, sizeof(path), "%s/mail/%s", alice.home, folder);
	buf_init(&b, 1 << 26);
	if ((f = fopen(path, "r")) != NULL) {
		while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
			buf_append(&b, chunk, n);
		fclose(f);
	}
	text = xstrdup(buf_cstr(&b));
	buf_free(&b);
	return text;
}

/* Messages in folder on disk whose text (mbox) or name (Maildir) has
 * want; mbox counts "From " lines when want is NULL. */
static int
t_disk(const char *folder, const char *want)
{
	char *text, *p;
	int n = 0;

	if (maildir)
		return t_files(folder, want);
	text = t_mbox(folder);
	for (p = text; (p = strstr(p, want != NULL ? want : "From ")) != NULL;
	    p++)
		if (want != NULL || p == text || p[-1] == '\n')
			n++;
	free(text);
	return n;
}

static void
test_store(struct imap_session *s, struct imap_session *s2)
{
	const char *o;

	o = t_say(s, "a1 SELECT INBOX\r\n");
	ok(has(o, "* 3 EXISTS") && has(o, "a1 OK [READ-WRITE]") &&
	    has(o, "[PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen "
	    "\\Draft $Forwarded)]"), "SELECT is read-write");
	o = t_say(s2, "b1 EXAMINE INBOX\r\n");
	ok(has(o, "b1 OK [READ-ONLY]") && has(o, "[PERMANENTFLAGS ()]"),
	    "EXAMINE stays read-only");
	o = t_say(s2, "b2 STORE 1 +FLAGS (\\Seen)\r\n");
	ok(has(o, "b2 NO [CANNOT]") && !has(o, "FETCH"),
	    "STORE in a read-only mailbox: NO");
	o = t_say(s2, "b3 EXPUNGE\r\n");
	ok(has(o, "b3 NO [CANNOT]"), "EXPUNGE in a read-only mailbox: NO");

	o = t_say(s, "a2 STORE 1 +FLAGS (\\Seen)\r\n");
	is_string(o, "* 1 FETCH (FLAGS (\\Seen))\r\na2 OK STORE completed\r\n",
	    "+FLAGS: the new flags, then OK");
	if (maildir)
		is_int(t_files("", ":2,S"), 1, "Maildir: the file is :2,S");
	o = t_say(s, "a3 UID STORE 2:3 FLAGS.SILENT (\\Flagged \\Answered)\r\n");
	is_string(o, "a3 OK UID STORE completed\r\n", ".SILENT: no FETCH");
	if (maildir)
		is_int(t_files("", ":2,FR"), 2, "Maildir: two files :2,FR");
	o = t_say(s, "a4 UID STORE 3 -FLAGS \\Answered\r\n");
	is_string(o, "* 3 FETCH (UID 3 FLAGS (\\Flagged))\r\n"
	    "a4 OK UID STORE completed\r\n", "UID STORE -FLAGS: with UID");
	o = t_say(s, "a5 STORE 1 +FLAGS (\\Bogus)\r\n");
	ok(has(o, "a5 BAD"), "an unknown system flag: BAD");
	o = t_say(s, "a6 STORE 1 +FLAGS (Junk \\Recent)\r\n");
	is_string(o, "* 1 FETCH (FLAGS (\\Seen))\r\na6 OK STORE completed\r\n",
	    "keywords and \\Recent are ignored");
	o = t_say(s, "a7 STORE 4 +FLAGS (\\Seen)\r\n");
	ok(has(o, "a7 BAD"), "STORE past the last message: BAD");
	o = t_say(s, "a8 STORE 1 FLAGS\r\n");
	ok(has(o, "a8 BAD"), "STORE without flags: BAD");
	o = t_say(s, "a9 UID STORE 99 +FLAGS (\\Seen)\r\n");
	is_string(o, "a9 OK UID STORE completed\r\n",
	    "UID STORE of no message: OK, nothing");
	o = t_say(s2, "b4 NOOP\r\n");
	ok(has(o, "* 1 FETCH (UID 1 FLAGS (\\Seen))") &&
	    has(o, "* 2 FETCH (UID 2 FLAGS (\\Answered \\Flagged))") &&
	    has(o, "* 3 FETCH (UID 3 FLAGS (\\Flagged))"),
	    "a second session sees the new flags");
	o = t_say(s2, "b5 NOOP\r\n");
	is_string(o, "b5 OK NOOP completed\r\n", "and only once");
	o = t_say(s2, "b6 FETCH 1:3 FLAGS\r\n");
	ok(has(o, "* 2 FETCH (FLAGS (\\Answered \\Flagged))"),
	    "the index has them (FETCH)");
	/* Another session's change is reported with our STORE. */
	t_say(s2, "b7 SELECT INBOX\r\nb8 STORE 3 +FLAGS (\\Draft)\r\n");
	o = t_say(s, "a10 STORE 1 -FLAGS (\\Seen)\r\n");
	ok(has(o, "* 3 FETCH (UID 3 FLAGS (\\Flagged \\Draft))") &&
	    has(o, "* 1 FETCH (FLAGS ())"),
	    "STORE also reports what others changed");
}

static void
test_copy(struct imap_session *s, struct imap_session *s2)
{
	const char *o;
	char exp[128];
	uint32_t uv;

	o = t_say(s, "c1 CREATE Archive\r\n");
	is_string(o, "c1 OK CREATE completed\r\n", "CREATE");
	o = t_say(s, "c2 CREATE Archive\r\n");
	ok(has(o, "c2 NO [ALREADYEXISTS]"), "CREATE again: ALREADYEXISTS");
	o = t_say(s, "c3 CREATE inbox\r\n");
	ok(has(o, "c3 NO [ALREADYEXISTS]"), "CREATE INBOX: ALREADYEXISTS");
	o = t_say(s, "c4 CREATE a.b\r\n");
	ok(has(o, "c4 NO [CANNOT]"), "CREATE of a refused name: CANNOT");
	o = t_say(s, "c5 STATUS Archive (UIDVALIDITY)\r\n");
	if (sscanf(strstr(o, "UIDVALIDITY ") != NULL ?
	    strstr(o, "UIDVALIDITY ") : "", "UIDVALIDITY %u", &uv) != 1)
		uv = 0;
	ok(uv != 0, "Archive has a UIDVALIDITY");
	o = t_say(s, "c6 COPY 1:2 Archive\r\n");
	snprintf(exp, sizeof(exp), "c6 OK [COPYUID %u 1:2 1:2] COPY completed",
	    uv);
	ok(has(o, exp), "COPY: COPYUID");
	is_int(t_disk("Archive", NULL), 2, "the copies are on disk");
	if (maildir)
		is_int(t_files("Archive", ":2,FR"), 1,
		    "Maildir: the copy keeps its flags");
	o = t_say(s, "c7 COPY 1 Nowhere\r\n");
	ok(has(o, "c7 NO [TRYCREATE]"), "COPY to a missing folder: TRYCREATE");
	o = t_say(s, "c8 COPY 9 Archive\r\n");
	ok(has(o, "c8 BAD"), "COPY past the last message: BAD");
	o = t_say(s, "c9 UID MOVE 3 Archive\r\n");
	snprintf(exp, sizeof(exp), "* OK [COPYUID %u 3 3] Moved\r\n"
	    "* 3 EXPUNGE\r\nc9 OK UID MOVE completed\r\n", uv);
	is_string(o, exp, "UID MOVE: COPYUID, EXPUNGE, OK in that order");
	is_int(t_disk("", NULL), 2, "INBOX has two messages left on disk");
	is_int(t_disk("Archive", NULL), 3, "Archive has three");
	o = t_say(s, "c10 MOVE 1 Nowhere\r\n");
	ok(has(o, "c10 NO [TRYCREATE]") && !has(o, "EXPUNGE"),
	    "MOVE to a missing folder: TRYCREATE, nothing expunged");
	o = t_say(s2, "d1 NOOP\r\n");
	ok(has(o, "* 3 EXPUNGE"), "the second session hears of the MOVE");
	o = t_say(s2, "d2 MOVE 1 Archive\r\n");
	ok(has(o, "d2 OK") && has(o, "* 1 EXPUNGE"), "MOVE by number");
	o = t_say(s, "c11 NOOP\r\n");
	is_string(o, "* 1 EXPUNGE\r\nc11 OK NOOP completed\r\n",
	    "the first session hears of it");
	t_say(s2, "d3 UNSELECT\r\n");
}

static void
test_expunge(struct imap_session *s)
{
	const char *o;

	t_deliver("INBOX", "Subject: four\n\nfour\n");
	t_deliver("INBOX", "Subject: five\n\nfive\n");
	o = t_say(s, "e1 NOOP\r\n");
	ok(has(o, "* 3 EXISTS"), "two new messages: 3 in the view");
	o = t_say(s, "e2 STORE 1:3 +FLAGS.SILENT (\\Deleted)\r\n"
	    "e3 UID EXPUNGE 4\r\n");
	is_string(o, "e2 OK STORE completed\r\n* 2 EXPUNGE\r\n"
	    "e3 OK UID EXPUNGE completed\r\n", "UID EXPUNGE: only that UID");
	is_int(t_disk("", NULL), 2, "one message less on disk");
	o = t_say(s, "e4 EXPUNGE\r\n");
	is_string(o, "* 2 EXPUNGE\r\n* 1 EXPUNGE\r\ne4 OK EXPUNGE completed\r\n",
	    "EXPUNGE: the highest number first");
	is_int(t_disk("", NULL), 0, "INBOX is empty on disk");
	o = t_say(s, "e5 EXPUNGE extra\r\n");
	ok(has(o, "e5 BAD"), "EXPUNGE with an argument: BAD");
}

static void
test_append(struct imap_session *s, bool bytewise)
{
	static const char msg[] = "Subject: appended\r\n\r\nbody\r\n";
	char cmd[256], exp[128];
	const char *o, *p;
	unsigned uv = 0, uid = 0;
	int run = bytewise ? 2 : 1;

	buf_truncate(&out, 0);
	snprintf(cmd, sizeof(cmd), "f1 APPEND Archive (\\Seen \\Flagged) "
	    "\" 7-Feb-2024 10:00:00 +0100\" {%zu}\r\n", sizeof(msg) - 1);
	o = t_feed(s, cmd, strlen(cmd), bytewise);
	is_string(o, "+ OK\r\n", "APPEND: a continuation for the literal");
	buf_truncate(&out, 0);
	o = t_feed(s, msg, sizeof(msg) - 1, bytewise);
	o = t_feed(s, "\r\n", 2, bytewise);
	p = strstr(o, "f1 OK [APPENDUID ");
	ok(p != NULL && sscanf(p, "f1 OK [APPENDUID %u %u]", &uv, &uid) == 2 &&
	    uv != 0 && uid == (unsigned)run + 4 && has(o, "] APPEND completed"),
	    "APPENDUID with the next UID");
	is_int(t_disk("Archive", "Subject: appended"), maildir ? 0 : run,
	    "mbox: the message is in the file");
	if (maildir)
		is_int(t_files("Archive", ":2,FS"), run,
		    "Maildir: a file with the flags");
	snprintf(cmd, sizeof(cmd), "f2 EXAMINE Archive\r\nf3 UID FETCH %u "
	    "(FLAGS INTERNALDATE RFC822.SIZE)\r\n", uid);
	o = t_say(s, cmd);
	snprintf(exp, sizeof(exp), "RFC822.SIZE %zu", sizeof(msg) - 1);
	ok(has(o, "INTERNALDATE \"07-Feb-2024 09:00:00 +0000\"") &&
	    has(o, "FLAGS (\\Flagged \\Seen)") && has(o, exp),
	    "the date, flags and size are kept");
	t_say(s, "f4 SELECT INBOX\r\n");
	o = t_say(s, "f5 APPEND INBOX {5+}\r\nab\r\n\r\n");
	snprintf(exp, sizeof(exp), "* %d EXISTS", run);
	ok(has(o, exp) && has(o, "f5 OK [APPENDUID "),
	    "APPEND to the selected folder: EXISTS; LITERAL+");
	o = t_say(s, "f6 APPEND Nowhere {3}\r\n");
	is_string(o, "+ OK\r\n", "a missing folder is known only at the end");
	o = t_say(s, "abc\r\n");
	ok(has(o, "f6 NO [TRYCREATE]"), "APPEND to a missing folder: TRYCREATE");
	o = t_say(s, "f7 APPEND INBOX {52428801}\r\n");
	ok(has(o, "f7 NO [TOOBIG]") && !has(o, "+ OK"),
	    "APPENDLIMIT + 1: NO [TOOBIG] without a continuation");
	o = t_say(s, "f8 APPEND INBOX {0}\r\n");
	ok(has(o, "+ OK"), "{0}: continuation");
	o = t_say(s, "\r\n");
	ok(has(o, "f8 NO"), "an empty message: NO");
	o = t_say(s, "f9 APPEND INBOX (\\Bogus) {3+}\r\nabc\r\n");
	ok(has(o, "f9 BAD"), "APPEND with a bad flag: BAD");
	o = t_say(s, "f10 APPEND INBOX \"31-Foo-2024 10:00:00 +0000\" "
	    "{3+}\r\nabc\r\n");
	ok(has(o, "f10 BAD"), "APPEND with a bad date: BAD");
	o = t_say(s, "f11 APPEND INBOX {3+}\r\nabc {3+}\r\nabc\r\n");
	ok(has(o, "f11 BAD") && !has(o, "f11 OK"),
	    "a second message (MULTIAPPEND): refused");
	o = t_say(s, "f12 NOOP\r\n");
	ok(has(o, "f12 OK"), "the session goes on");
	o = t_say(s, "f13 CAPABILITY\r\n");
	ok(has(o, " UIDPLUS") && has(o, " MOVE") &&
	    has(o, " APPENDLIMIT=52428800"), "UIDPLUS, MOVE, APPENDLIMIT");
}

/* The limit itself (N): accepted and stored. */
static void
test_append_limit(struct imap_session *s)
{
	static const char head[] = "Subject: big\r\n\r\n";
	size_t n = IMAP_APPEND_LIMIT, chunk = 1 << 16;
	unsigned char *line;
	const char *o;

	line = xmalloc(chunk);
	memset(line, 'x', chunk);
	for (size_t i = 77; i < chunk; i += 78) {
		line[i - 1] = '\r';
		line[i] = '\n';
	}
	o = t_say(s, "g1 APPEND Archive {52428800}\r\n");
	ok(has(o, "+ OK"), "APPENDLIMIT: a continuation");
	buf_truncate(&out, 0);
	(void)t_feed(s, head, sizeof(head) - 1, false);
	for (size_t sent = sizeof(head) - 1; sent < n;) {
		size_t k = n - sent < chunk ? n - sent : chunk;

		(void)t_feed(s, line, k, false);
		sent += k;
	}
	o = t_feed(s, "\r\n", 2, false);
	ok(has(o, "g1 OK [APPENDUID "), "a message of APPENDLIMIT bytes is "
	    "stored");
	free(line);
}

static void
test_folders(struct imap_session *s)
{
	const char *o;

	o = t_say(s, "h1 CREATE Parent/Child/\r\n");
	is_string(o, "h1 OK CREATE completed\r\n",
	    "CREATE with a trailing separator");
	o = t_say(s, "h2 LIST \"\" *\r\n");
	ok(has(o, "* LIST (\\Noselect \\HasChildren) \"/\" \"Parent\"") &&
	    has(o, maildir ? "* LIST (\\HasNoChildren) \"/\" \"Parent/Child\"" :
	    "* LIST (\\Noinferiors \\HasNoChildren) \"/\" \"Parent/Child\""),
	    "LIST: a parent without storage is \\Noselect \\HasChildren");
	o = t_say(s, "h3 LSUB \"\" Parent/%\r\n");
	ok(has(o, "\"/\" \"Parent/Child\"\r\n") && has(o, "* LSUB (") &&
	    !has(o, "\"Archive\""), "LSUB: every folder, pattern applies");
	o = t_say(s, "h4 SUBSCRIBE Archive\r\nh5 UNSUBSCRIBE Archive\r\n");
	ok(has(o, "h4 OK") && has(o, "h5 OK"), "SUBSCRIBE, UNSUBSCRIBE");
	o = t_say(s, "h6 RENAME Archive Old\r\n");
	is_string(o, "h6 OK RENAME completed\r\n", "RENAME");
	o = t_say(s, "h7 STATUS Old (MESSAGES)\r\nh8 STATUS Archive "
	    "(MESSAGES)\r\n");
	ok(has(o, maildir ? "* STATUS \"Old\" (MESSAGES 7)" :
	    "* STATUS \"Old\" (MESSAGES 6)") && has(o, "h8 NO"),
	    "the messages went with the name");
	o = t_say(s, "h9 RENAME Nowhere Else\r\n");
	ok(has(o, "h9 NO [NONEXISTENT]"), "RENAME of a missing folder");
	o = t_say(s, "h10 RENAME Old Parent/Child\r\n");
	ok(has(o, "h10 NO [ALREADYEXISTS]"), "RENAME onto a name in use");
	o = t_say(s, "h11 SELECT Old\r\nh12 RENAME Old New\r\n"
	    "h13 FETCH 1 UID\r\n");
	ok(has(o, "h12 OK") && has(o, "* 1 FETCH (UID 1)") &&
	    has(o, "h13 OK"), "RENAME of the selected folder: it follows");
	o = t_say(s, "h14 DELETE New\r\n");
	ok(has(o, "* OK [CLOSED]") && has(o, "h14 OK DELETE completed"),
	    "DELETE of the selected folder closes it");
	is_int(imap_session_state(s), IMAP_STATE_AUTH, "nothing selected");
	o = t_say(s, "h15 DELETE INBOX\r\n");
	ok(has(o, "h15 NO [CANNOT]"), "DELETE INBOX: CANNOT");
	o = t_say(s, "h16 DELETE Nowhere\r\n");
	ok(has(o, "h16 NO [NONEXISTENT]"), "DELETE of a missing folder");
	o = t_say(s, "h17 STATUS New (MESSAGES)\r\n");
	ok(has(o, "h17 NO"), "the deleted folder is gone");
	if (maildir) {
		char path[PATH_MAX];
		struct stat sb;

		snprintf(path, sizeof(path), "%s/Maildir/.New", alice.home);
		ok(stat(path, &sb) < 0, "Maildir: its directory is gone");
	}
}

static void
test_close(struct imap_session *s)
{
	const char *o;

	o = t_say(s, "i1 SELECT INBOX\r\ni2 STORE 1:* +FLAGS.SILENT "
	    "(\\Deleted)\r\n");
	ok(has(o, "i2 OK"), "mark the INBOX messages \\Deleted");
	o = t_say(s, "i3 EXAMINE INBOX\r\ni4 CLOSE\r\n");
	is_int(t_disk("", NULL), 2, "CLOSE of EXAMINE expunges nothing");
	o = t_say(s, "i5 SELECT INBOX\r\ni6 UNSELECT\r\n");
	is_int(t_disk("", NULL), 2, "UNSELECT expunges nothing");
	o = t_say(s, "i7 SELECT INBOX\r\ni8 CLOSE\r\n");
	ok(has(o, "i8 OK CLOSE completed") && !has(o, "EXPUNGE"),
	    "CLOSE answers without EXPUNGE responses");
	is_int(t_disk("", NULL), 0, "and expunged \\Deleted on disk");
}

static void
t_format(const char *location, bool md)
{
	struct imap_session *s, *s2;
	char home[PATH_MAX], cmd[PATH_MAX + 16];

	snprintf(home, sizeof(home), "/tmp/loft-imapw-XXXXXX");
	if (mkdtemp(home) == NULL)
		bail("mkdtemp");
	maildir = md;
	alice.home = home;
	alice.mail_location = (char *)location;
	diag("format %s", location);
	t_deliver("INBOX", "Subject: one\n\none\n");
	t_deliver("INBOX", "Subject: two\n\ntwo\n");
	t_deliver("INBOX", "Subject: three\n\nthree\n");
	s = t_session();
	s2 = t_session();
	test_store(s, s2);
	test_copy(s, s2);
	test_expunge(s);
	test_append(s, false);
	test_append(s, true);
	if (md)
		test_append_limit(s);
	test_folders(s);
	test_close(s);
	imap_session_free(&s);
	imap_session_free(&s2);
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
	/* Room for the APPENDLIMIT message whatever mailbox_size_limit. */
	alice.has_quota = true;
	alice.quota = (uint64_t)1 << 30;

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
