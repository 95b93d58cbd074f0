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
 *
 * MULTIAPPEND (RFC 3502): several messages with their own flags, dates
 * and keywords, a literal8 with a NUL among them, whole and byte by byte;
 * APPENDUID with a range; IMAP_MULTIAPPEND_MAX messages (N) stored and
 * N + 1 refused, as {n+} literals whose data is dropped; a second literal
 * over APPENDLIMIT refused before its continuation; the total at N and
 * N + 1 (Maildir); the quota and the Maildir keyword letters checked for
 * all before anything is stored; a disk that fills up half-way (a file
 * size limit) in store_append_multi itself: after every refusal, no file
 * on disk (nor in tmp/), the mbox as long as before, UIDNEXT unchanged.
 *
 * Keywords: STORE +FLAGS/-FLAGS/FLAGS of keywords seen by FETCH, SEARCH,
 * a second session (FLAGS before FETCH) and a new login; CONDSTORE with
 * them; APPEND and COPY/MOVE carrying them; the name limit (100 bytes,
 * 101), the list limit (64, 65), the Maildir folder limit (26, 27) and
 * the mbox message limit (64, 65) with nothing changed when refused;
 * atoms that are no keyword; Maildir letters and dovecot-keywords on
 * disk; a STORE fed byte by byte.
 */
#include "config.h"

#include <sys/resource.h>

#include <dirent.h>
#include <limits.h>
#include <signal.h>
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

static bool maildir;

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

/* Maildir: the text of folder's dovecot-keywords into b ("" if none). */
static void
t_kwfile(const char *folder, struct buf *b)
{
	char path[PATH_MAX], chunk[4096];
	FILE *f;
	size_t n;

	buf_truncate(b, 0);
	snprintf(path, sizeof(path), "%s/Maildir/.%s/dovecot-keywords",
	    alice.home, folder);
	if ((f = fopen(path, "r")) == NULL)
		return;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(b, chunk, n);
	fclose(f);
}

/* Maildir: the letter dovecot-keywords of folder gives name, or '?'. */
static char
t_kwletter(const char *folder, const char *name)
{
	struct buf b;
	const char *p;
	char want[160];
	unsigned n;
	char c = '?';

	buf_init(&b, 1 << 20);
	t_kwfile(folder, &b);
	snprintf(want, sizeof(want), " %s\n", name);
	for (p = buf_cstr(&b); p != NULL && *p != '\0';
	    p = strchr(p, '\n') != NULL ? strchr(p, '\n') + 1 : NULL) {
		if (sscanf(p, "%u", &n) == 1 && n < 26 &&
		    strncmp(strchr(p, ' '), want, strlen(want)) == 0)
			c = (char)('a' + n);
	}
	buf_free(&b);
	return c;
}

/* Lines in folder's dovecot-keywords. */
static int
t_kwcount(const char *folder)
{
	struct buf b;
	int n = 0;

	buf_init(&b, 1 << 20);
	t_kwfile(folder, &b);
	for (size_t i = 0; i < b.len; i++)
		n += b.data[i] == '\n';
	buf_free(&b);
	return n;
}

/* "tag UID STORE uid +FLAGS (prefixNN ...)" with count names from
 * first on. */
static void
t_kwcmd(char *cmd, size_t size, const char *tag, unsigned uid,
    const char *prefix, int first, int count)
{
	size_t o = (size_t)snprintf(cmd, size, "%s UID STORE %u +FLAGS (",
	    tag, uid);

	for (int i = 0; i < count && o < size; i++)
		o += (size_t)snprintf(cmd + o, size - o, "%s%s%02d",
		    i > 0 ? " " : "", prefix, first + i);
	if (o < size)
		snprintf(cmd + o, size - o, ")\r\n");
}

static void
test_store(struct imap_session *s, struct imap_session *s2)
{
	const char *o;

	o = t_say(s, "a1 SELECT INBOX\r\n");
	ok(has(o, "* 3 EXISTS") && has(o, "a1 OK [READ-WRITE]") &&
	    has(o, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft "
	    "$Forwarded)\r\n") &&
	    has(o, "[PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen "
	    "\\Draft $Forwarded \\*)]"), "SELECT is read-write, keywords too");
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
	is_string(o, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft "
	    "$Forwarded Junk)\r\n* OK [PERMANENTFLAGS (\\Answered \\Flagged "
	    "\\Deleted \\Seen \\Draft $Forwarded Junk \\*)] Flags permitted\r\n"
	    "* 1 FETCH (FLAGS (\\Seen Junk))\r\na6 OK STORE completed\r\n",
	    "a keyword is stored (FLAGS first), \\Recent ignored");
	if (maildir)
		is_int(t_files("", ":2,Sa"), 1, "Maildir: its letter a");
	o = t_say(s, "a7 STORE 4 +FLAGS (\\Seen)\r\n");
	ok(has(o, "a7 BAD"), "STORE past the last message: BAD");
	o = t_say(s, "a8 STORE 1 FLAGS\r\n");
	ok(has(o, "a8 BAD"), "STORE without flags: BAD");
	o = t_say(s, "a9 UID STORE 99 +FLAGS (\\Seen)\r\n");
	is_string(o, "a9 OK UID STORE completed\r\n",
	    "UID STORE of no message: OK, nothing");
	o = t_say(s2, "b4 NOOP\r\n");
	ok(has(o, "* 1 FETCH (UID 1 FLAGS (\\Seen Junk))") &&
	    has(o, "* 2 FETCH (UID 2 FLAGS (\\Answered \\Flagged))") &&
	    has(o, "* 3 FETCH (UID 3 FLAGS (\\Flagged))") &&
	    has(o, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft "
	    "$Forwarded Junk)\r\n") && !has(o, "PERMANENTFLAGS"),
	    "a second session sees the new flags (EXAMINE: no "
	    "PERMANENTFLAGS)");
	o = t_say(s2, "b5 NOOP\r\n");
	is_string(o, "b5 OK NOOP completed\r\n", "and only once");
	o = t_say(s2, "b6 FETCH 1:3 FLAGS\r\n");
	ok(has(o, "* 2 FETCH (FLAGS (\\Answered \\Flagged))"),
	    "the index has them (FETCH)");
	/* Another session's change is reported with our STORE. */
	t_say(s2, "b7 SELECT INBOX\r\nb8 STORE 3 +FLAGS (\\Draft)\r\n");
	o = t_say(s, "a10 STORE 1 -FLAGS (\\Seen)\r\n");
	ok(has(o, "* 3 FETCH (UID 3 FLAGS (\\Flagged \\Draft))") &&
	    has(o, "* 1 FETCH (FLAGS (Junk))"),
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
	o = t_input(s, cmd, strlen(cmd), bytewise);
	is_string(o, "+ OK\r\n", "APPEND: a continuation for the literal");
	buf_truncate(&out, 0);
	o = t_input(s, msg, sizeof(msg) - 1, bytewise);
	o = t_input(s, "\r\n", 2, bytewise);
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
	o = t_say(s, "f11 APPEND Nowhere {3+}\r\nabc {3+}\r\nabc\r\n");
	ok(has(o, "f11 NO [TRYCREATE]") && !has(o, "f11 OK"),
	    "MULTIAPPEND to a missing folder: TRYCREATE");
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
	(void)t_input(s, head, sizeof(head) - 1, false);
	for (size_t sent = sizeof(head) - 1; sent < n;) {
		size_t k = n - sent < chunk ? n - sent : chunk;

		(void)t_input(s, line, k, false);
		sent += k;
	}
	o = t_input(s, "\r\n", 2, false);
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

#define T_SYS "\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded"

/* STORE, FETCH, SEARCH and another session with keywords. */
static void
test_kw_store(struct imap_session *s, struct imap_session *s2)
{
	const char *o, *a, *b;
	struct buf kf;

	t_say(s, "k1 CREATE Tags\r\nk1b CREATE Tags2\r\n");
	t_deliver("Tags", "Subject: k1\n\none\n");
	t_deliver("Tags", "Subject: k2\n\ntwo\n");
	t_deliver("Tags", "Subject: k3\n\nthree\n");
	o = t_say(s, "k2 SELECT Tags\r\n");
	ok(has(o, "* FLAGS (" T_SYS ")\r\n") &&
	    has(o, "* OK [PERMANENTFLAGS (" T_SYS " \\*)]"),
	    "SELECT: no keywords yet, \\* permitted");
	t_say(s2, "l1 SELECT Tags\r\n");
	o = t_say(s, "k3 STORE 1 +FLAGS ($Junk $label1)\r\n");
	is_string(o, "* FLAGS (" T_SYS " $Junk $label1)\r\n"
	    "* OK [PERMANENTFLAGS (" T_SYS " $Junk $label1 \\*)] "
	    "Flags permitted\r\n* 1 FETCH (FLAGS ($Junk $label1))\r\n"
	    "k3 OK STORE completed\r\n",
	    "STORE +FLAGS of keywords: FLAGS, PERMANENTFLAGS, then FETCH");
	if (maildir) {
		buf_init(&kf, 1 << 20);
		t_kwfile("Tags", &kf);
		is_string(buf_cstr(&kf), "0 $Junk\n1 $label1\n",
		    "Maildir: dovecot-keywords names the letters a and b");
		buf_free(&kf);
		is_int(t_files("Tags", ",U=1:2,ab"), 1,
		    "Maildir: the file name carries ab");
	}
	o = t_say(s2, "l2 NOOP\r\n");
	a = strstr(o, "* FLAGS (" T_SYS " $Junk $label1)\r\n");
	b = strstr(o, "* 1 FETCH (UID 1 FLAGS ($Junk $label1))\r\n");
	ok(a != NULL && b != NULL && a < b &&
	    has(o, "$Junk $label1 \\*)]"),
	    "the other session: FLAGS and PERMANENTFLAGS before the FETCH");
	o = t_say(s2, "l3 NOOP\r\n");
	is_string(o, "l3 OK NOOP completed\r\n", "and only once");
	o = t_say(s, "k4 FETCH 1:3 FLAGS\r\nk5 SEARCH KEYWORD $junk\r\n"
	    "k6 UID SEARCH UNKEYWORD $Junk\r\n");
	ok(has(o, "* 1 FETCH (FLAGS ($Junk $label1))\r\n"
	    "* 2 FETCH (FLAGS ())\r\n") && has(o, "* SEARCH 1\r\n") &&
	    has(o, "* SEARCH 2 3\r\n"),
	    "FETCH FLAGS, SEARCH KEYWORD and UNKEYWORD see them");
	o = t_say(s, "k7 STORE 1 -FLAGS ($JUNK)\r\n");
	is_string(o, "* 1 FETCH (FLAGS ($label1))\r\nk7 OK STORE completed\r\n",
	    "-FLAGS, the name in any case");
	if (maildir)
		ok(t_files("Tags", ",U=1:2,b") == 1 &&
		    t_files("Tags", ",U=1:2,ab") == 0,
		    "Maildir: its letter a is gone");
	o = t_say(s, "k8 STORE 2 FLAGS (\\Seen NonJunk)\r\n");
	ok(has(o, "* FLAGS (" T_SYS " $Junk $label1 NonJunk)\r\n") &&
	    has(o, "* 2 FETCH (FLAGS (\\Seen NonJunk))\r\nk8 OK"),
	    "FLAGS replaces; the new keyword is announced");
	o = t_say(s, "k9 STORE 2 FLAGS (\\Seen)\r\n");
	is_string(o, "* 2 FETCH (FLAGS (\\Seen))\r\nk9 OK STORE completed\r\n",
	    "FLAGS without keywords clears them");
	if (maildir)
		ok(t_files("Tags", ",U=2:2,S") == 1 &&
		    t_files("Tags", ",U=2:2,Sc") == 0,
		    "Maildir: the file is :2,S again");
	o = t_say(s, "k10 STORE 2 +FLAGS ($junk)\r\n");
	is_string(o, maildir ?
	    "* 2 FETCH (FLAGS (\\Seen $Junk))\r\nk10 OK STORE completed\r\n" :
	    "* 2 FETCH (FLAGS (\\Seen $junk))\r\nk10 OK STORE completed\r\n",
	    maildir ? "Maildir: another case is the folder's keyword" :
	    "mbox: another case is the same keyword (no new FLAGS)");
	t_say(s, "k11 STORE 2 -FLAGS ($Junk)\r\n");
	t_say(s, "k12 STORE 3 +FLAGS (Seen-By-2)\r\n");
	o = t_say(s2, "l4 FETCH 3 FLAGS\r\n");
	a = strstr(o, "* FLAGS (");
	b = strstr(o, "* 3 FETCH (FLAGS (Seen-By-2))\r\n");
	ok(a != NULL && b != NULL && a < b,
	    "FETCH of a keyword the session was not told of: FLAGS first");
	t_say(s, "k13 STORE 3 -FLAGS (Seen-By-2)\r\n");
	t_say(s2, "l5 NOOP\r\n");
}

/* APPEND, COPY and MOVE carry keywords; EXPUNGE keeps the others'. */
static void
test_kw_copy(struct imap_session *s, struct imap_session *s2)
{
	static const char msg[] = "Subject: ap\r\n\r\nx\r\n";
	char cmd[256], exp[64];
	const char *o, *a, *b;
	struct buf kf;

	snprintf(cmd, sizeof(cmd), "k20 APPEND Tags (\\Seen $MDNSent) "
	    "{%zu+}\r\n%s\r\n", sizeof(msg) - 1, msg);
	o = t_say(s, cmd);
	a = strstr(o, "* FLAGS (");
	b = strstr(o, "* 4 EXISTS");
	ok(a != NULL && b != NULL && a < b && has(o, " $MDNSent)\r\n") &&
	    has(o, "k20 OK [APPENDUID "),
	    "APPEND with a keyword: FLAGS, EXISTS, APPENDUID");
	o = t_say(s, "k21 FETCH 4 FLAGS\r\n");
	ok(has(o, "* 4 FETCH (FLAGS (\\Seen $MDNSent))"),
	    "the appended message has it");
	if (maildir) {
		snprintf(exp, sizeof(exp), ",U=4:2,S%c",
		    t_kwletter("Tags", "$MDNSent"));
		is_int(t_files("Tags", exp), 1, "Maildir: its letter in the "
		    "name of the appended file");
	}
	o = t_say(s, "k22 COPY 1 Tags2\r\nk23 UID MOVE 4 Tags2\r\n");
	ok(has(o, "k22 OK") && has(o, "* 4 EXPUNGE\r\n") && has(o, "k23 OK"),
	    "COPY and MOVE");
	o = t_say(s2, "l6 SELECT Tags2\r\nl7 FETCH 1:* FLAGS\r\n");
	ok(has(o, "* FLAGS (" T_SYS " $label1 $MDNSent)\r\n") &&
	    has(o, "* 1 FETCH (FLAGS ($label1))") &&
	    has(o, "* 2 FETCH (FLAGS (\\Seen $MDNSent))"),
	    "COPY and MOVE carry the keywords");
	if (maildir) {
		buf_init(&kf, 1 << 20);
		t_kwfile("Tags2", &kf);
		is_string(buf_cstr(&kf), "0 $label1\n1 $MDNSent\n",
		    "Maildir: the destination names its own letters");
		buf_free(&kf);
		ok(t_files("Tags2", ",U=1:2,a") == 1 &&
		    t_files("Tags2", ",U=2:2,Sb") == 1,
		    "Maildir: and the copies carry them");
	}
	o = t_say(s, "k24 FETCH 1:* FLAGS\r\n");
	ok(has(o, "* 1 FETCH (FLAGS ($label1))\r\n") &&
	    has(o, "* 3 FETCH (FLAGS ())\r\n") && !has(o, "* 4 FETCH"),
	    "the message moved away took nothing from the others");
}

/* Byte by byte; a new login; EXAMINE. */
static void
test_kw_login(struct imap_session *s)
{
	static const char cmd[] = "k30 STORE 2 +FLAGS ($Forwarded Later)\r\n";
	struct imap_session *s3;
	const char *o;

	buf_truncate(&out, 0);
	o = t_input(s, cmd, sizeof(cmd) - 1, true);
	ok(has(o, "* 2 FETCH (FLAGS (\\Seen $Forwarded Later))\r\n") &&
	    has(o, "Later)\r\n* OK [PERMANENTFLAGS") && has(o, "k30 OK"),
	    "a STORE fed byte by byte");
	if (maildir) {
		char exp[64];

		snprintf(exp, sizeof(exp), ",U=2:2,PS%c",
		    t_kwletter("Tags", "Later"));
		is_int(t_files("Tags", exp), 1, "Maildir: P and its letter");
	}
	s3 = t_session();
	o = t_say(s3, "m1 EXAMINE Tags\r\nm2 FETCH 1:* FLAGS\r\n");
	ok(has(o, "* FLAGS (" T_SYS " $label1 Later)\r\n") &&
	    has(o, "* OK [PERMANENTFLAGS ()]") &&
	    has(o, "* 1 FETCH (FLAGS ($label1))\r\n") &&
	    has(o, "* 2 FETCH (FLAGS (\\Seen $Forwarded Later))\r\n"),
	    "a new login sees them; EXAMINE: FLAGS has them, "
	    "PERMANENTFLAGS ()");
	imap_session_free(&s3);
}

/* Names and lists at their limits, and atoms that are no keyword. */
static void
test_kw_limits(struct imap_session *s, struct imap_session *s2)
{
	char name[STORE_KEYWORD_MAX + 2], cmd[8192];
	const char *o;
	int have, files;

	memset(name, 'n', sizeof(name) - 1);
	name[STORE_KEYWORD_MAX] = '\0';
	snprintf(cmd, sizeof(cmd), "k40 STORE 3 +FLAGS (%s)\r\n", name);
	o = t_say(s, cmd);
	ok(has(o, "k40 OK") && has(o, name), "a keyword of 100 bytes");
	snprintf(cmd, sizeof(cmd), "k41 STORE 3 -FLAGS (%s)\r\n", name);
	t_say(s, cmd);
	name[STORE_KEYWORD_MAX] = 'n';
	name[STORE_KEYWORD_MAX + 1] = '\0';
	snprintf(cmd, sizeof(cmd), "k42 STORE 3 +FLAGS (%s)\r\n", name);
	o = t_say(s, cmd);
	ok(has(o, "k42 NO [LIMIT]") && !has(o, "FETCH"),
	    "a keyword of 101 bytes: NO [LIMIT]");
	o = t_say(s, "k43 STORE 3 +FLAGS (a]b)\r\nk44 STORE 3 +FLAGS (\\*)\r\n"
	    "k45 STORE 3 +FLAGS (a%b)\r\nk46 STORE 3 +FLAGS (x\\y)\r\n"
	    "k47 STORE 3 +FLAGS (a*)\r\n");
	ok(has(o, "k43 BAD") && has(o, "k44 BAD") && has(o, "k45 BAD") &&
	    has(o, "k46 BAD") && has(o, "k47 BAD") && !has(o, "FETCH"),
	    "atoms with ], %%, *, \\ and \\* itself are no keyword: BAD");
	t_kwcmd(cmd, sizeof(cmd), "k48", 3, "q", 1, STORE_KEYWORDS_MAX + 1);
	o = t_say(s, cmd);
	ok(has(o, "k48 NO [LIMIT]") && !has(o, "FETCH"),
	    "65 keywords in one STORE: NO [LIMIT]");
	if (!maildir) {
		t_kwcmd(cmd, sizeof(cmd), "k49", 3, "q", 1,
		    STORE_KEYWORDS_MAX);
		o = t_say(s, cmd);
		ok(has(o, "k49 OK") && has(o, " q01 ") && has(o, " q64)"),
		    "mbox: 64 keywords on one message");
		t_kwcmd(cmd, sizeof(cmd), "k50", 3, "r", 1, 1);
		o = t_say(s, cmd);
		ok(has(o, "k50 NO [LIMIT]") && !has(o, "FETCH"),
		    "mbox: a 65th: NO [LIMIT]");
		o = t_say(s, "k51 FETCH 3 FLAGS\r\n");
		ok(has(o, " q64))") && !has(o, "r01"), "nothing changed");
		return;
	}
	have = t_kwcount("Tags");
	t_kwcmd(cmd, sizeof(cmd), "k49", 3, "q", 1, 26 - have);
	o = t_say(s, cmd);
	ok(has(o, "k49 OK"), "Maildir: keywords up to 26 in the folder");
	is_int(t_kwcount("Tags"), 26, "Maildir: dovecot-keywords has 26");
	files = t_files("Tags", NULL);
	t_kwcmd(cmd, sizeof(cmd), "k50", 2, "r", 1, 1);
	o = t_say(s, cmd);
	ok(has(o, "k50 NO [LIMIT]") && !has(o, "FETCH"),
	    "Maildir: a 27th: NO [LIMIT]");
	ok(t_kwcount("Tags") == 26 && t_kwletter("Tags", "r01") == '?',
	    "Maildir: dovecot-keywords unchanged");
	o = t_say(s, "k51 APPEND Tags (r02) {3+}\r\nabc\r\n");
	ok(has(o, "k51 NO [LIMIT]") && t_files("Tags", NULL) == files,
	    "Maildir: APPEND needing a 27th: NO [LIMIT], nothing stored");
	t_say(s2, "l8 STORE 1 +FLAGS (OnlyThere)\r\n");
	o = t_say(s2, "l9 COPY 1 Tags\r\n");
	ok(has(o, "l9 NO [LIMIT]") && t_files("Tags", NULL) == files,
	    "Maildir: COPY needing a 27th: NO [LIMIT], nothing stored");
}

/* CONDSTORE: a keyword change is a change. Last: it turns CONDSTORE on. */
static void
test_kw_condstore(struct imap_session *s)
{
	unsigned long long ms1 = 0, ms2 = 0;
	char cmd[128];
	const char *o, *p;

	o = t_say(s, "k60 FETCH 1 (MODSEQ)\r\n");
	p = strstr(o, "MODSEQ (");
	ok(p != NULL && sscanf(p, "MODSEQ (%llu)", &ms1) == 1,
	    "the MODSEQ of message 1");
	snprintf(cmd, sizeof(cmd), "k61 STORE 1 (UNCHANGEDSINCE %llu) "
	    "+FLAGS ($Junk)\r\n", ms1);
	o = t_say(s, cmd);
	p = strstr(o, "* 1 FETCH (FLAGS ($Junk $label1) MODSEQ (");
	ok(p != NULL && sscanf(p, "* 1 FETCH (FLAGS ($Junk $label1) MODSEQ "
	    "(%llu))", &ms2) == 1 && ms2 > ms1 && has(o, "k61 OK STORE"),
	    "CONDSTORE: a keyword change gives a new MODSEQ");
	snprintf(cmd, sizeof(cmd), "k62 STORE 1 (UNCHANGEDSINCE %llu) "
	    "+FLAGS (Other)\r\n", ms1);
	o = t_say(s, cmd);
	ok(has(o, "k62 OK [MODIFIED 1]") && !has(o, "Other"),
	    "UNCHANGEDSINCE refuses a keyword change too");
	snprintf(cmd, sizeof(cmd), "k63 STORE 1 (UNCHANGEDSINCE %llu) "
	    "-FLAGS ($Junk)\r\n", ms2);
	o = t_say(s, cmd);
	ok(has(o, "* 1 FETCH (FLAGS ($label1) MODSEQ (") && has(o, "k63 OK"),
	    "and takes it when the MODSEQ is unchanged");
}

/*
 * MULTIAPPEND.
 */

/* The bytes of a message of folder on disk into b: Maildir, the file
 * whose name has want; mbox, the whole file. False if there is none. */
static bool
t_disk_bytes(const char *folder, const char *want, struct buf *b)
{
	char path[PATH_MAX], chunk[4096];
	struct dirent *de;
	FILE *f = NULL;
	size_t n;

	buf_truncate(b, 0);
	if (!maildir) {
		snprintf(path, sizeof(path), "%s/mail/%s", alice.home, folder);
		f = fopen(path, "r");
	}
	for (int i = 0; maildir && i < 2 && f == NULL; i++) {
		char dir[PATH_MAX];
		DIR *d;

		snprintf(dir, sizeof(dir), "%s/Maildir/.%s/%s", alice.home,
		    folder, i ? "new" : "cur");
		if ((d = opendir(dir)) == NULL)
			continue;
		while (f == NULL && (de = readdir(d)) != NULL)
			if (strstr(de->d_name, want) != NULL &&
			    (size_t)snprintf(path, sizeof(path), "%s/%s", dir,
			    de->d_name) < sizeof(path))
				f = fopen(path, "r");
		closedir(d);
	}
	if (f == NULL)
		return false;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(b, chunk, n);
	fclose(f);
	return true;
}

/* Messages of folder on disk (t_disk, but an mbox is read as bytes: a
 * NUL does not end it). */
static int
t_count(const char *folder)
{
	struct buf b;
	int n = 0;

	if (maildir)
		return t_files(folder, NULL);
	buf_init(&b, 1 << 28);
	(void)t_disk_bytes(folder, NULL, &b);
	for (size_t i = 0; i + 5 <= b.len; i++)
		if ((i == 0 || b.data[i - 1] == '\n') &&
		    memcmp(b.data + i, "From ", 5) == 0)
			n++;
	buf_free(&b);
	return n;
}

/* Files left in the Maildir folder's tmp/ (0 for mbox). */
static int
t_tmp_files(const char *folder)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "%s/Maildir/.%s/tmp", alice.home, folder);
	if (!maildir || (d = opendir(path)) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

/* mbox: the size of folder's file (-1 if none); Maildir: -1. */
static long long
t_mbox_size(const char *folder)
{
	char path[PATH_MAX];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/mail/%s", alice.home, folder);
	return !maildir && stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

/* "UIDNEXT n MESSAGES m" of folder, as STATUS gives it. */
static void
t_status(struct imap_session *s, const char *folder, char *st, size_t size)
{
	char cmd[128];
	const char *o, *p;

	snprintf(cmd, sizeof(cmd), "st STATUS %s (UIDNEXT MESSAGES)\r\n",
	    folder);
	o = t_say(s, cmd);
	st[0] = '\0';
	if ((p = strstr(o, "(UIDNEXT ")) != NULL)
		strlcpy(st, p, size);
	st[strcspn(st, ")")] = '\0';
}

/* Nothing of a refused command on disk: the same STATUS, the same files
 * (or mbox size), nothing in tmp/. */
static void
t_unchanged(struct imap_session *s, const char *status, int files,
    long long size, const char *what)
{
	char now[128];

	t_status(s, "Multi", now, sizeof(now));
	ok(strcmp(now, status) == 0 && t_count("Multi") == files &&
	    t_mbox_size("Multi") == size && t_tmp_files("Multi") == 0,
	    "%s: nothing stored, UIDNEXT as it was: %s", what, now + 1);
}

/* Three messages: flags, flags + keyword + date with a literal8 holding
 * a NUL, LITERAL+ without either. */
static void
test_multi_three(struct imap_session *s, bool bytewise)
{
	static const char a[] = "Subject: m1\r\n\r\nA\r\n";
	static const char b[] = "Subject: m2\r\n\r\nB\0B\r\n";
	/* A Status: header (mutt's) gives no flag the client did not ask
	 * for, though an mbox sync reads it. */
	static const char c[] = "Subject: m3\r\nStatus: RO\r\n\r\nC\r\n";
	const char *o, *p;
	char cmd[256];
	unsigned uv = 0, first = 0, last = 0;
	int files = t_count("Multi"), conts = 0;
	struct buf in, bytes;

	buf_init(&in, 4096);
	buf_init(&bytes, 1 << 20);
	buf_printf(&in, "m1 APPEND Multi (\\Seen) {%zu}\r\n", sizeof(a) - 1);
	buf_append(&in, a, sizeof(a) - 1);
	buf_printf(&in, " (\\Flagged $Junk) \" 7-Feb-2024 10:00:00 +0100\" "
	    "~{%zu}\r\n", sizeof(b) - 1);
	buf_append(&in, b, sizeof(b) - 1);
	buf_printf(&in, " {%zu+}\r\n", sizeof(c) - 1);
	buf_append(&in, c, sizeof(c) - 1);
	buf_append_str(&in, "\r\n");
	buf_truncate(&out, 0);
	o = t_input(s, in.data, in.len, bytewise);
	for (p = o; (p = strstr(p, "+ OK\r\n")) != NULL; p++)
		conts++;
	is_int(conts, 2, "MULTIAPPEND: a continuation per synchronizing "
	    "literal");
	p = strstr(o, "m1 OK [APPENDUID ");
	ok(p != NULL && sscanf(p, "m1 OK [APPENDUID %u %u:%u]", &uv, &first,
	    &last) == 3 && last == first + 2 && has(o, "] APPEND completed"),
	    "APPENDUID with the three UIDs as a range");
	is_int(t_count("Multi"), files + 3, "three messages on disk");
	ok(t_disk_bytes("Multi", ":2,Fa", &bytes) &&
	    memmem(bytes.data, bytes.len, "B\0B\r\n", 5) != NULL,
	    "the literal8 is stored with its NUL");
	if (maildir)
		ok(t_files("Multi", ":2,S") == (bytewise ? 2 : 1) &&
		    t_files("Multi", ":2,Fa") == (bytewise ? 2 : 1),
		    "Maildir: each file with its own flags and keyword");
	snprintf(cmd, sizeof(cmd), "m2 EXAMINE Multi\r\nm3 UID FETCH %u:%u "
	    "(FLAGS INTERNALDATE)\r\n", first, last);
	o = t_say(s, cmd);
	snprintf(cmd, sizeof(cmd), "(UID %u FLAGS (\\Flagged $Junk) "
	    "INTERNALDATE \"07-Feb-2024 09:00:00 +0000\")", first + 1);
	ok(has(o, cmd), "the second has its flags, keyword and date");
	snprintf(cmd, sizeof(cmd), "(UID %u FLAGS (\\Seen) ", first);
	ok(has(o, cmd), "the first has its flag");
	snprintf(cmd, sizeof(cmd), "(UID %u FLAGS () ", last);
	ok(has(o, cmd), "the third has none, whatever its Status: says");
	t_say(s, "m4 UNSELECT\r\n");
	buf_free(&in);
	buf_free(&bytes);
}

/* A command of n messages "x", as {1+} literals; then a NOOP. */
static void
t_multi_n(struct buf *in, const char *tag, unsigned n)
{
	buf_truncate(in, 0);
	buf_printf(in, "%s APPEND Multi", tag);
	for (unsigned i = 0; i < n; i++)
		buf_append_str(in, " {1+}\r\nx");
	buf_append_str(in, "\r\nn1 NOOP\r\n");
}

/* IMAP_MULTIAPPEND_MAX messages, then one more. */
static void
test_multi_count(struct imap_session *s)
{
	char status[128], exp[64];
	const char *o, *p;
	unsigned uv, first = 0, last = 0;
	int files = t_count("Multi");
	long long size = t_mbox_size("Multi");
	struct buf in;

	buf_init(&in, 1 << 20);
	t_status(s, "Multi", status, sizeof(status));
	t_multi_n(&in, "m5", IMAP_MULTIAPPEND_MAX + 1);
	buf_truncate(&out, 0);
	o = t_input(s, in.data, in.len, false);
	snprintf(exp, sizeof(exp), "m5 NO [LIMIT] At most %u messages",
	    IMAP_MULTIAPPEND_MAX);
	ok(has(o, exp) && has(o, "n1 OK"), "MULTIAPPEND_MAX + 1: NO [LIMIT], "
	    "the data of the {n+} literal dropped, the next command read");
	t_unchanged(s, status, files, size, "MULTIAPPEND_MAX + 1");
	t_multi_n(&in, "m6", IMAP_MULTIAPPEND_MAX);
	buf_truncate(&out, 0);
	o = t_input(s, in.data, in.len, false);
	p = strstr(o, "m6 OK [APPENDUID ");
	ok(p != NULL && sscanf(p, "m6 OK [APPENDUID %u %u:%u]", &uv, &first,
	    &last) == 3 && last - first + 1 == IMAP_MULTIAPPEND_MAX,
	    "MULTIAPPEND_MAX messages: stored, one UID range");
	is_int(t_count("Multi"), files + IMAP_MULTIAPPEND_MAX,
	    "all of them on disk");
	buf_free(&in);
}

/* A second literal over APPENDLIMIT: refused before its continuation. */
static void
test_multi_toobig(struct imap_session *s)
{
	char status[128];
	const char *o;
	int files = t_count("Multi");
	long long size = t_mbox_size("Multi");

	t_status(s, "Multi", status, sizeof(status));
	o = t_say(s, "m7 APPEND Multi {1}\r\n");
	is_string(o, "+ OK\r\n", "the first literal is taken");
	o = t_say(s, "x (\\Seen) {52428801}\r\n");
	ok(has(o, "m7 NO [TOOBIG]") && !has(o, "+ OK"),
	    "a second literal of APPENDLIMIT + 1: NO [TOOBIG], no "
	    "continuation");
	o = t_say(s, "m8 NOOP\r\n");
	ok(has(o, "m8 OK"), "the session goes on");
	t_unchanged(s, status, files, size, "a second literal too big");
}

/* The total of one command at N and N + 1 (two messages of APPENDLIMIT
 * bytes make it). Maildir only: it stores 100 MB. */
static void
test_multi_total(struct imap_session *s)
{
	static const char head[] = "Subject: half\r\n\r\n";
	size_t n = IMAP_APPEND_LIMIT;
	unsigned char *msg;
	char status[128], cmd[64];
	const char *o;
	int files = t_count("Multi");

	msg = xmalloc(n);
	memset(msg, 'y', n);
	memcpy(msg, head, sizeof(head) - 1);
	for (size_t i = 77; i < n; i += 78) {
		msg[i - 1] = '\r';
		msg[i] = '\n';
	}
	t_status(s, "Multi", status, sizeof(status));
	for (int over = 1; over >= 0; over--) {
		snprintf(cmd, sizeof(cmd), "m%d APPEND Multi {%zu+}\r\n",
		    10 + over, n);
		buf_truncate(&out, 0);
		t_input(s, cmd, strlen(cmd), false);
		t_input(s, msg, n, false);
		snprintf(cmd, sizeof(cmd), " {%zu+}\r\n", n);
		t_input(s, cmd, strlen(cmd), false);
		t_input(s, msg, n, false);
		o = t_input(s, over ? " {1+}\r\nz\r\n" : "\r\n",
		    over ? 10 : 2, false);
		if (over) {
			ok(has(o, "m11 NO [TOOBIG]"), "the total + 1: NO "
			    "[TOOBIG]");
			t_unchanged(s, status, files, -1, "the total + 1");
		} else
			ok(has(o, "m10 OK [APPENDUID ") &&
			    t_count("Multi") == files + 2,
			    "the total (two messages of APPENDLIMIT): stored");
	}
	free(msg);
}

/* The store checks all of them before it writes: quota, keywords. */
static void
test_multi_checks(struct imap_session *s)
{
	char status[128], cmd[1024];
	struct imap_session *q;
	uint64_t quota = alice.quota;
	const char *o;
	int files = t_count("Multi");
	long long size = t_mbox_size("Multi");
	uint64_t used, msgs, limit;
	struct store *st;
	const char *err;

	t_status(s, "Multi", status, sizeof(status));
	if (store_open(&alice, &st, &err) < 0 ||
	    store_quota(st, &used, &msgs, &limit, &err) < 0)
		bail("store: %s", err);
	store_close(&st);
	/* Room for one of the two messages, not for both. */
	alice.quota = used + 15;
	q = t_session();
	o = t_say(q, "m20 APPEND Multi {10+}\r\n0123456789 {10+}\r\n"
	    "0123456789\r\n");
	ok(has(o, "m20 NO [OVERQUOTA]"), "over quota with both: "
	    "NO [OVERQUOTA]");
	t_unchanged(q, status, files, size, "over quota");
	imap_session_free(&q);
	alice.quota = quota;
	if (!maildir)
		return;
	/* 26 keywords besides $Junk: a Maildir folder has no 27th letter,
	 * though each message alone would fit. */
	snprintf(cmd, sizeof(cmd), "m21 APPEND Multi ($Junk) {1+}\r\nx (");
	for (int i = 0; i < 26; i++)
		snprintf(cmd + strlen(cmd), sizeof(cmd) - strlen(cmd),
		    "%sk%02d", i > 0 ? " " : "", i);
	strlcat(cmd, ") {1+}\r\ny\r\n", sizeof(cmd));
	o = t_say(s, cmd);
	ok(has(o, "m21 NO [LIMIT]"), "Maildir: 27 keywords in all: NO "
	    "[LIMIT]");
	t_unchanged(s, status, files, size, "keyword letters");
}

/* store_append_multi itself, with a disk that fills up at the second
 * message (a file size limit: EFBIG): nothing kept. */
static void
test_multi_diskfull(struct imap_session *s)
{
	struct store_append a[3];
	struct store_appended res[3];
	static const char small[] = "Subject: small\n\nsmall\n";
	size_t big_len = 3 << 20;
	unsigned char *big = xmalloc(big_len);
	struct rlimit old, lim;
	char status[128];
	int files = t_count("Multi");
	long long size = t_mbox_size("Multi");
	struct store *st;
	const char *err = NULL;
	enum store_op op;

	memset(big, 'b', big_len);
	memset(a, 0, sizeof(a));
	for (int i = 0; i < 3; i++) {
		a[i].msg = (const unsigned char *)small;
		a[i].len = sizeof(small) - 1;
	}
	a[1].msg = big;
	a[1].len = big_len;
	t_status(s, "Multi", status, sizeof(status));
	if (store_open(&alice, &st, &err) < 0)
		bail("store_open: %s", err);
	if (getrlimit(RLIMIT_FSIZE, &old) < 0)
		bail("getrlimit");
	lim = old;
	/* Above anything the index or the mbox holds now, below what the
	 * big message needs. */
	lim.rlim_cur = (rlim_t)(size > 0 ? size : 0) + (2 << 20);
	signal(SIGXFSZ, SIG_IGN);
	if (setrlimit(RLIMIT_FSIZE, &lim) < 0)
		bail("setrlimit");
	op = store_append_multi(st, "Multi", a, 3, res, &err);
	if (setrlimit(RLIMIT_FSIZE, &old) < 0)
		bail("setrlimit back");
	signal(SIGXFSZ, SIG_DFL);
	ok(op == STORE_OP_TEMPFAIL && res[0].uid == 0,
	    "store_append_multi: the disk fills up at the second: TEMPFAIL "
	    "(%s)", err != NULL ? err : "");
	store_close(&st);
	t_unchanged(s, status, files, size, "disk full half-way");
	free(big);
}

static void
test_multiappend(struct imap_session *s)
{
	const char *o;

	o = t_say(s, "m0 CREATE Multi\r\n");
	ok(has(o, "m0 OK"), "CREATE Multi");
	test_multi_three(s, false);
	test_multi_three(s, true);
	o = t_say(s, "m30 SELECT Multi\r\nm31 APPEND Multi {1+}\r\na "
	    "{1+}\r\nb\r\n");
	ok(has(o, "* 8 EXISTS\r\nm31 OK [APPENDUID "),
	    "MULTIAPPEND to the selected folder: EXISTS before the OK");
	t_say(s, "m32 UNSELECT\r\n");
	test_multi_toobig(s);
	test_multi_checks(s);
	test_multi_diskfull(s);
	test_multi_count(s);
	if (maildir)
		test_multi_total(s);
}

static void
test_keywords(struct imap_session *s, struct imap_session *s2)
{
	test_kw_store(s, s2);
	test_kw_copy(s, s2);
	test_kw_login(s);
	test_kw_limits(s, s2);
	test_kw_condstore(s);
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
	test_keywords(s, s2);
	test_multiappend(s);
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
