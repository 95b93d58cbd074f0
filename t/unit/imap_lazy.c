/*
 * Unit tests for the IMAP engine on a Maildir another program filled
 * (server/imap: lazy sync, imap_view_complete), driven by bytes:
 *
 * Every answer that needs what only reading a file gives equals, byte for
 * byte, the answer of a session on a copy of the same files that was
 * fully synced (parsed) before: FETCH ENVELOPE, BODY, BODYSTRUCTURE,
 * RFC822.SIZE, INTERNALDATE (the files' times differ from the times in
 * their names), the macros, header fields from the cache, BODY[],
 * BINARY, PREVIEW; SEARCH on headers, bodies, sizes and dates; SORT and
 * THREAD; STATUS SIZE. Each is the first command after SELECT, on a fresh
 * copy, so that each one's own completion is what is tested. SELECT,
 * FETCH FLAGS, MODSEQ and SAVEDATE read no file (the records stay
 * unparsed); RFC822.SIZE alone only counts line ends.
 *
 * Completion changes no MODSEQ: a CONDSTORE session, and another one
 * that completes the folder, see no untagged FETCH, no HIGHESTMODSEQ
 * move, nothing for QRESYNC. A file renamed by another program after the
 * SELECT is still read; one that cannot be read (a dangling link) is
 * left out of FETCH with NO, never answered from its empty record, and
 * the others are answered. FETCH SAVEDATE and PREVIEW on known messages,
 * and the preview machine alone (limits at 256 and 257 characters, HTML,
 * charsets, random input cut anywhere). Run as root, the test becomes
 * nobody first: a file of mode 000 must be unreadable to it.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/time.h>

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "compat/compat.h"
#include "mindex.h"
#include "store.h"
#include "user.h"
#include "xmalloc.h"
#include "server/imap/imap_private.h"
#include "server/imap/imap_write.h"
#include "tap.h"
#include "imap_harness.h"

static char base[PATH_MAX];	/* the test's directory */
static unsigned ncopies;

/* The files' time: not the one their names start with. */
#define T_MTIME		1700000000
#define T_NAMETIME	1600000000

static const char *const msgs[] = {
	/* 1: plain, flags in the name */
	"Return-Path: <carol@example.net>\n"
	"From: Carol Example <carol@example.net>\n"
	"To: Alice <alice@example.org>, bob@example.org\n"
	"Cc: dave@example.com\n"
	"Subject: Lunch on Friday\n"
	"Date: Mon, 2 Mar 2020 10:00:00 +0100\n"
	"Message-ID: <lunch1@example.net>\n"
	"\n"
	"Shall we meet at noon?\n"
	"Carol\n",
	/* 2: alternative, an encoded-word subject, quoted-printable */
	"From: =?utf-8?q?Ren=C3=A9?= <rene@example.fr>\n"
	"To: alice@example.org\n"
	"Subject: =?utf-8?q?Caf=C3=A9_tomorrow?=\n"
	"Date: Tue, 3 Mar 2020 09:15:00 +0000\n"
	"Message-ID: <cafe2@example.fr>\n"
	"MIME-Version: 1.0\n"
	"Content-Type: multipart/alternative; boundary=\"alt\"\n"
	"\n"
	"--alt\n"
	"Content-Type: text/plain; charset=utf-8\n"
	"Content-Transfer-Encoding: quoted-printable\n"
	"\n"
	"Un caf=C3=A9 demain =\n"
	"matin ?  \n"
	"--alt\n"
	"Content-Type: text/html; charset=utf-8\n"
	"\n"
	"<p>Un caf&eacute; demain matin ?</p>\n"
	"--alt--\n",
	/* 3: mixed, a base64 text part, an attachment */
	"From: bob@example.org\n"
	"To: alice@example.org\n"
	"Subject: The report\n"
	"Date: Wed, 4 Mar 2020 17:30:00 -0500\n"
	"Message-ID: <report3@example.org>\n"
	"MIME-Version: 1.0\n"
	"Content-Type: multipart/mixed; boundary=mix\n"
	"\n"
	"--mix\n"
	"Content-Type: text/plain; charset=us-ascii\n"
	"Content-Transfer-Encoding: base64\n"
	"\n"
	"SGVyZSBpcyB0aGUgcXVva2thYmVycnkgcmVwb3J0Lgo=\n"
	"--mix\n"
	"Content-Type: application/octet-stream; name=\"r.bin\"\n"
	"Content-Disposition: attachment; filename=\"r.bin\"\n"
	"Content-Transfer-Encoding: base64\n"
	"\n"
	"AAECAwQFBgcICQ==\n"
	"--mix--\n",
	/* 4: HTML only, ISO-8859-1, quoted-printable */
	"From: news@example.com\n"
	"To: alice@example.org\n"
	"Subject: Newsletter\n"
	"Date: Thu, 5 Mar 2020 08:00:00 +0000\n"
	"Message-ID: <news4@example.com>\n"
	"MIME-Version: 1.0\n"
	"Content-Type: text/html; charset=iso-8859-1\n"
	"Content-Transfer-Encoding: quoted-printable\n"
	"\n"
	"<html><head><title>Hidden</title><style>p { x: y }</style></head>\n"
	"<body><!-- a comment --><p>Caf=E9 &amp; <b>cr=E8me</b>,</p>\n"
	"<p>two&nbsp;lines &lt;here&gt;</p></body></html>\n",
	/* 5: a reply to 1 (THREAD), CRLF line ends */
	"From: Alice <alice@example.org>\r\n"
	"To: Carol Example <carol@example.net>\r\n"
	"Subject: Re: Lunch on Friday\r\n"
	"Date: Mon, 2 Mar 2020 11:00:00 +0100\r\n"
	"Message-ID: <lunch5@example.org>\r\n"
	"In-Reply-To: <lunch1@example.net>\r\n"
	"References: <lunch1@example.net>\r\n"
	"\r\n"
	"Noon is fine.\r\n",
	/* 6: no final line end, an attached message */
	"From: dave@example.com\n"
	"To: alice@example.org\n"
	"Subject: Fwd: old mail\n"
	"Date: Fri, 6 Mar 2020 12:00:00 +0000\n"
	"Message-ID: <fwd6@example.com>\n"
	"MIME-Version: 1.0\n"
	"Content-Type: multipart/mixed; boundary=b6\n"
	"\n"
	"--b6\n"
	"Content-Type: message/rfc822\n"
	"\n"
	"From: eve@example.net\n"
	"Subject: inner\n"
	"\n"
	"inner body\n"
	"--b6--",
};
#define NMSGS	(sizeof(msgs) / sizeof(msgs[0]))

/* Where each goes: new/ or cur/ with flags; a ",S=" in the name or not
 * (then the size comes from a stat), and one ",S=" that is wrong. */
static const struct {
	const char *dir;
	const char *flags;	/* NULL: no ":2," */
	int size;		/* 1 right, 0 none, -1 wrong */
} places[NMSGS] = {
	{ "cur", "S", 1 }, { "new", NULL, 0 }, { "cur", "FS", 1 },
	{ "cur", "", -1 }, { "new", NULL, 1 }, { "cur", "RS", 0 },
};

/* The answer to text, as a copy (free it). */
static char *
t_ask(struct imap_session *s, const char *text)
{
	return xstrdup(t_say(s, text));
}

static void
t_file(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "w");
	struct timeval tv[2] = { { T_MTIME, 0 }, { T_MTIME, 0 } };

	if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0)
		bail("cannot write %s", path);
	if (utimes(path, tv) < 0)
		bail("utimes %s", path);
}

static void
t_mkdir(const char *path)
{
	if (mkdir(path, 0700) < 0)
		bail("mkdir %s", path);
}

/* The path of message i (0-based) in alice's Maildir. */
static void
t_msg_path(size_t i, char *path, size_t size)
{
	char sz[32] = "";
	size_t len = strlen(msgs[i]);

	if (places[i].size != 0)
		snprintf(sz, sizeof(sz), ",S=%zu", places[i].size > 0 ? len :
		    len + 1000);
	snprintf(path, size, "%s/Maildir/%s/%zu.M%zuP7Q%zu.otherhost%s%s%s",
	    alice.home, places[i].dir, (size_t)T_NAMETIME + i * 86400, i, i,
	    sz, places[i].flags != NULL ? ":2," : "",
	    places[i].flags != NULL ? places[i].flags : "");
}

/* A new home holding a Maildir of msgs as another program would leave
 * it; alice lives there from now on. */
static void
t_home(const char *what)
{
	static char home[sizeof(base) + 32];
	char path[sizeof(home) + 128];

	snprintf(home, sizeof(home), "%s/%s%u", base, what, ++ncopies);
	alice.home = home;
	t_mkdir(home);
	snprintf(path, sizeof(path), "%s/Maildir", home);
	t_mkdir(path);
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/Maildir/%s", home,
		    (const char *[]){ "cur", "new", "tmp" }[i]);
		t_mkdir(path);
	}
	for (size_t i = 0; i < NMSGS; i++) {
		t_msg_path(i, path, sizeof(path));
		t_file(path, msgs[i], strlen(msgs[i]));
	}
}

struct t_count {
	unsigned unparsed, sized;
	uint64_t modseq_sum;
};

static int
t_count_cb(const struct mindex_msg *m, void *ctx)
{
	struct t_count *c = ctx;

	if (m->cache_flags & MINDEX_C_UNPARSED)
		c->unparsed++;
	if (m->cache_flags & MINDEX_C_SIZED)
		c->sized++;
	c->modseq_sum += m->modseq;
	return 0;
}

static struct t_count
t_index_count(struct mindex_folder *f_r)
{
	struct mindex_folder f;
	struct t_count c = { 0, 0, 0 };
	struct mindex_txn *txn;
	struct store *st;
	const char *err;

	if (f_r == NULL)
		f_r = &f;
	if (store_open(&alice, &st, &err) < 0)
		bail("store_open: %s", err);
	if (mindex_begin(store_index(st), false, &txn, &err) < 0)
		bail("mindex_begin: %s", err);
	if (mindex_folder_get(txn, "INBOX", f_r) <= 0)
		bail("no INBOX in the index");
	if (mindex_msg_iter(txn, f_r->id, 1, t_count_cb, &c) < 0)
		bail("mindex_msg_iter");
	mindex_abort(&txn);
	store_close(&st);
	return c;
}

/* INBOX as the index has it now: the folder, and how many records are
 * unparsed and how many sized. */
static void
t_index(struct mindex_folder *f, unsigned *unparsed, unsigned *sized)
{
	struct t_count c = t_index_count(f);

	*unparsed = c.unparsed;
	*sized = c.sized;
}

/* The fully synced copy: parsed before any session. */
static char full_home[PATH_MAX];

static void
t_full(void)
{
	struct store *st;
	const char *err;

	t_home("full");
	strlcpy(full_home, alice.home, sizeof(full_home));
	if (store_open(&alice, &st, &err) < 0 ||
	    store_sync(st, "INBOX", false, NULL, &err) < 0)
		bail("full sync: %s", err);
	store_close(&st);
}

/* cmd (a tagged command line) as the first command after SELECT, on the
 * fully synced copy and on a fresh copy no one synced: the same bytes.
 * Returns the lazy answer (free it). */
static char *
t_same(const char *cmd, const char *name)
{
	struct imap_session *s;
	char *want, *got, *sel;

	alice.home = full_home;
	s = t_session();
	free(t_ask(s, "a SELECT INBOX\r\n"));
	want = t_ask(s, cmd);
	imap_session_free(&s);

	t_home("lazy");
	s = t_session();
	sel = t_ask(s, "a SELECT INBOX\r\n");
	got = t_ask(s, cmd);
	imap_session_free(&s);
	if (!has(sel, "* 6 EXISTS"))
		diag("select: %s", sel);
	is_string(got, want, "%s: as on a parsed copy", name);
	free(sel);
	free(want);
	return got;
}

static void
test_same_answers(void)
{
	static const struct {
		const char *cmd, *name, *expect;
	} cases[] = {
		{ "b FETCH 1:* (ENVELOPE)\r\n", "FETCH ENVELOPE",
		    "\"=?utf-8?q?Caf=C3=A9_tomorrow?=\"" },
		{ "b FETCH 1:* (BODYSTRUCTURE)\r\n", "FETCH BODYSTRUCTURE",
		    "\"alternative\"" },
		{ "b FETCH 1:* (BODY)\r\n", "FETCH BODY", "\"mixed\"" },
		{ "b FETCH 1:* (RFC822.SIZE)\r\n", "FETCH RFC822.SIZE",
		    "RFC822.SIZE" },
		{ "b FETCH 1:* (INTERNALDATE)\r\n", "FETCH INTERNALDATE "
		    "(the file's time, not the name's)",
		    "14-Nov-2023 22:13:20 +0000" },
		{ "b FETCH 1:* FAST\r\n", "FETCH FAST", "INTERNALDATE" },
		{ "b FETCH 1:* ALL\r\n", "FETCH ALL", "ENVELOPE" },
		{ "b FETCH 1:* FULL\r\n", "FETCH FULL", "BODY (" },
		{ "b FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n",
		    "FETCH BODY.PEEK[HEADER.FIELDS (SUBJECT)]",
		    "Subject: Newsletter" },
		{ "b UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER."
		    "FIELDS (From To Cc Subject Date Message-ID References "
		    "Content-Type)])\r\n", "Thunderbird's first sync",
		    "Message-ID: <fwd6@example.com>" },
		{ "b FETCH 1:* (BODY.PEEK[])\r\n", "FETCH BODY.PEEK[]",
		    "Noon is fine." },
		{ "b FETCH 2:3 (BODY.PEEK[1.MIME] BODY.PEEK[2])\r\n",
		    "FETCH of parts", "AAECAwQFBgcICQ==" },
		{ "b FETCH 3 (BINARY.PEEK[1] BINARY.SIZE[2])\r\n",
		    "FETCH BINARY", "quokkaberry report" },
		{ "b FETCH 1:* (PREVIEW)\r\n", "FETCH PREVIEW",
		    "Shall we meet at noon? Carol" },
		{ "b SEARCH SUBJECT lunch\r\n", "SEARCH SUBJECT",
		    "* SEARCH 1 5\r\n" },
		{ "b SEARCH CHARSET UTF-8 FROM {5+}\r\nRen\xc3\xa9\r\n",
		    "SEARCH FROM (an encoded word)", "* SEARCH 2\r\n" },
		{ "b SEARCH BODY quokkaberry\r\n", "SEARCH BODY (base64 part)",
		    "* SEARCH 3\r\n" },
		{ "b SEARCH TEXT matin\r\n", "SEARCH TEXT (quoted-printable)",
		    "* SEARCH 2\r\n" },
		{ "b SEARCH LARGER 416\r\n", "SEARCH LARGER",
		    "* SEARCH 2 3 4\r\n" },
		{ "b SEARCH LARGER 428\r\n", "SEARCH LARGER at the limit",
		    "* SEARCH 2 3\r\n" },
		{ "b SEARCH SINCE 1-Jan-2023\r\n", "SEARCH SINCE (the file's "
		    "time)", "* SEARCH 1 2 3 4 5 6\r\n" },
		{ "b SEARCH SENTBEFORE 3-Mar-2020\r\n", "SEARCH SENTBEFORE",
		    "* SEARCH 1 5\r\n" },
		{ "b SORT (SUBJECT) UTF-8 ALL\r\n", "SORT (SUBJECT)",
		    "* SORT 2 1 5 4 6 3\r\n" },
		{ "b SORT (ARRIVAL REVERSE SIZE) UTF-8 ALL\r\n",
		    "SORT (ARRIVAL REVERSE SIZE)", "* SORT " },
		{ "b SORT (FROM DATE) UTF-8 ALL\r\n", "SORT (FROM DATE)",
		    "* SORT " },
		{ "b THREAD REFERENCES UTF-8 ALL\r\n", "THREAD REFERENCES",
		    "* THREAD (1 5)(2)(3)(4)(6)\r\n" },
		{ "b THREAD ORDEREDSUBJECT UTF-8 ALL\r\n",
		    "THREAD ORDEREDSUBJECT", "* THREAD (1 5)(2)(3)(4)(6)\r\n" },
		{ "b STATUS INBOX (MESSAGES SIZE UNSEEN)\r\n", "STATUS SIZE",
		    "MESSAGES 6 SIZE " },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = t_same(cases[i].cmd, cases[i].name);

		if (!ok(has(got, cases[i].expect) && !has(got, "b NO") &&
		    !has(got, "b BAD"), "%s: the answer expected",
		    cases[i].name))
			diag("%s", got);
		free(got);
	}
}

/* SELECT and the cheap items read nothing; RFC822.SIZE alone counts. */
static void
test_cheap(void)
{
	struct imap_session *s;
	struct mindex_folder f;
	unsigned unparsed, sized;
	char *o;

	t_home("cheap");
	s = t_session();
	o = t_ask(s, "a SELECT INBOX\r\n");
	ok(has(o, "* 6 EXISTS") && has(o, "a OK [READ-WRITE]"), "SELECT");
	free(o);
	t_index(&f, &unparsed, &sized);
	ok(unparsed == NMSGS && f.unparsed == NMSGS && sized == 0,
	    "SELECT adopted the files unread (%u unparsed, %u sized)",
	    unparsed, sized);
	o = t_ask(s, "b FETCH 1:* (UID FLAGS MODSEQ SAVEDATE)\r\n"
	    "c UID FETCH 1:* (FLAGS)\r\nd NOOP\r\ne STATUS INBOX "
	    "(MESSAGES UNSEEN UIDNEXT HIGHESTMODSEQ)\r\n");
	ok(has(o, "* 3 FETCH (UID 3 FLAGS (\\Flagged \\Seen) MODSEQ (") &&
	    has(o, "b OK FETCH") && has(o, "c OK UID FETCH") &&
	    has(o, "e OK STATUS") && has(o, "MESSAGES 6 UNSEEN 3"),
	    "FLAGS, MODSEQ, SAVEDATE, NOOP and STATUS without SIZE answer");
	free(o);
	t_index(&f, &unparsed, &sized);
	ok(unparsed == NMSGS && sized == 0, "and read no file");
	o = t_ask(s, "f FETCH 1:* (RFC822.SIZE)\r\n");
	ok(has(o, "f OK FETCH") && has(o, "* 1 FETCH (RFC822.SIZE 276)") &&
	    has(o, "* 4 FETCH (RFC822.SIZE 428)") &&
	    has(o, "* 5 FETCH (RFC822.SIZE 260)"),
	    "RFC822.SIZE alone: the CRLF sizes, not the names' (or wrong) S=");
	free(o);
	t_index(&f, &unparsed, &sized);
	ok(unparsed == NMSGS && sized == NMSGS,
	    "counted line ends only (%u unparsed, %u sized)", unparsed,
	    sized);
	o = t_ask(s, "g SEARCH SMALLER 300\r\n");
	ok(has(o, "* SEARCH 1 5\r\n"), "SEARCH SMALLER on sizes alone");
	free(o);
	t_index(&f, &unparsed, &sized);
	ok(unparsed == NMSGS, "still nothing parsed");
	o = t_ask(s, "h FETCH 4 (ENVELOPE)\r\n");
	t_index(&f, &unparsed, &sized);
	ok(has(o, "\"Newsletter\"") && unparsed == 0 && f.unparsed == 0,
	    "ENVELOPE parses the folder");
	free(o);
	imap_session_free(&s);
}

/* Completion is nothing a CONDSTORE client hears of. */
static void
test_modseq(void)
{
	struct imap_session *a, *b;
	struct mindex_folder f0, f1;
	struct t_count c0, c1;
	char *o, *before, *after, cmd[128], want[128];

	t_home("modseq");
	a = t_session();
	b = t_session();
	free(t_ask(a, "a1 ENABLE QRESYNC\r\n"));
	o = t_ask(a, "a2 SELECT INBOX\r\n");
	free(o);
	c0 = t_index_count(&f0);
	before = t_ask(a, "a3 FETCH 1:* (UID MODSEQ)\r\n");
	free(t_ask(b, "b1 SELECT INBOX\r\n"));
	o = t_ask(b, "b2 FETCH 1:* (ENVELOPE BODYSTRUCTURE)\r\n");
	ok(has(o, "b2 OK FETCH"), "another session completes the folder");
	free(o);
	c1 = t_index_count(&f1);
	ok(c0.unparsed == NMSGS && c1.unparsed == 0,
	    "every record parsed (%u, then %u unparsed)", c0.unparsed,
	    c1.unparsed);
	ok(c1.modseq_sum == c0.modseq_sum && f1.highestmodseq ==
	    f0.highestmodseq, "no MODSEQ moved, HIGHESTMODSEQ stays %llu",
	    (unsigned long long)f0.highestmodseq);
	o = t_ask(a, "a4 NOOP\r\n");
	is_string(o, "a4 OK NOOP completed\r\n",
	    "the CONDSTORE session: no untagged FETCH after it");
	free(o);
	after = t_ask(a, "a3 FETCH 1:* (UID MODSEQ)\r\n");
	is_string(after, before, "FETCH MODSEQ as before");
	o = t_ask(a, "a5 FETCH 1:* (ENVELOPE)\r\na6 NOOP\r\n");
	ok(has(o, "a5 OK") && has(o, "a6 OK") && !has(o, "FLAGS"),
	    "its own completing FETCH: no FLAGS either");
	free(o);
	snprintf(cmd, sizeof(cmd), "a7 SELECT INBOX (QRESYNC (%u %llu))\r\n",
	    f0.uidvalidity, (unsigned long long)f0.highestmodseq);
	snprintf(want, sizeof(want), "[HIGHESTMODSEQ %llu]",
	    (unsigned long long)f0.highestmodseq);
	o = t_ask(a, cmd);
	ok(has(o, want) && !has(o, "FETCH") && !has(o, "VANISHED") &&
	    has(o, "a7 OK"), "QRESYNC from before: nothing to resync");
	free(o);
	free(before);
	free(after);
	imap_session_free(&a);
	imap_session_free(&b);
}

/* Files that move, vanish or cannot be read after the SELECT. */
static void
test_moved(void)
{
	struct imap_session *s;
	char from[PATH_MAX], to[PATH_MAX + 8], *o;

	t_home("moved");
	s = t_session();
	free(t_ask(s, "a SELECT INBOX\r\n"));
	/* mutt flags message 1 meanwhile: its file has a new name. */
	t_msg_path(0, from, sizeof(from));
	snprintf(to, sizeof(to), "%.*sFS", (int)strlen(from) - 1, from);
	if (rename(from, to) < 0)
		bail("rename %s", from);
	o = t_ask(s, "b FETCH 1 (ENVELOPE)\r\n");
	ok(has(o, "\"Lunch on Friday\"") && has(o, "b OK FETCH"),
	    "a file renamed after SELECT is read where it is now");
	free(o);
	o = t_ask(s, "c NOOP\r\n");
	ok(has(o, "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Seen))"),
	    "and its new flags are reported");
	free(o);
	imap_session_free(&s);

	t_home("vanished");
	s = t_session();
	free(t_ask(s, "a SELECT INBOX\r\n"));
	t_msg_path(2, from, sizeof(from));
	if (unlink(from) < 0)
		bail("unlink %s", from);
	o = t_ask(s, "b FETCH 1:* (ENVELOPE)\r\n");
	ok(has(o, "* 2 FETCH (ENVELOPE") && has(o, "* 4 FETCH (ENVELOPE") &&
	    !has(o, "* 3 FETCH") && has(o, "b OK FETCH"),
	    "a file gone after SELECT: the others answered, OK");
	free(o);
	o = t_ask(s, "c NOOP\r\n");
	is_string(o, "* 3 EXPUNGE\r\nc OK NOOP completed\r\n",
	    "and it is reported expunged after");
	free(o);
	imap_session_free(&s);
}

static void
test_unreadable(void)
{
	struct imap_session *s;
	struct mindex_folder f;
	unsigned unparsed, sized;
	char path[PATH_MAX], *o;
	int fd;

	t_home("unreadable");
	t_msg_path(2, path, sizeof(path));
	if (chmod(path, 0) < 0)
		bail("chmod %s", path);
	if ((fd = open(path, O_RDONLY)) >= 0) {
		close(fd);
		ok(1, "# SKIP a file of mode 000 is readable here (root)");
		return;
	}
	s = t_session();
	o = t_ask(s, "a SELECT INBOX\r\n");
	ok(has(o, "* 6 EXISTS"), "a file no one can read is adopted by name");
	free(o);
	o = t_ask(s, "b FETCH 1:* (ENVELOPE)\r\n");
	ok(has(o, "* 2 FETCH (ENVELOPE") && has(o, "* 4 FETCH (ENVELOPE") &&
	    !has(o, "* 3 FETCH") && has(o, "b NO [UNAVAILABLE]"),
	    "FETCH ENVELOPE: the others answered, it is left out, NO");
	free(o);
	t_index(&f, &unparsed, &sized);
	ok(unparsed == 1 && f.unparsed == 1, "it stays unparsed");
	o = t_ask(s, "c FETCH 3 (FLAGS)\r\n");
	is_string(o, "* 3 FETCH (FLAGS (\\Flagged \\Seen))\r\n"
	    "c OK FETCH completed\r\n", "its FLAGS are still answered");
	free(o);
	o = t_ask(s, "d FETCH 2:3 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n");
	ok(has(o, "* 2 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {") &&
	    !has(o, "* 3 FETCH") && has(o, "d NO [UNAVAILABLE]"),
	    "a body section: left out, NO");
	free(o);
	o = t_ask(s, "e FETCH 3 (RFC822.SIZE)\r\nf FETCH 3 (PREVIEW)\r\n");
	ok(!has(o, "* 3 FETCH") && has(o, "e NO [UNAVAILABLE]") &&
	    has(o, "f NO [UNAVAILABLE]"),
	    "RFC822.SIZE (never the size in its name), PREVIEW: NO");
	free(o);
	o = t_ask(s, "g SEARCH SUBJECT report\r\nh SEARCH SUBJECT lunch\r\n");
	ok(has(o, "* SEARCH\r\ng OK") && has(o, "* SEARCH 1 5\r\nh OK"),
	    "SEARCH: it matches nothing, the others are matched");
	free(o);
	o = t_ask(s, "i SORT (SUBJECT) UTF-8 ALL\r\n");
	ok(has(o, "* SORT ") && has(o, "i OK"), "SORT still answers");
	free(o);
	imap_session_free(&s);
}

/* SAVEDATE (RFC 8514) and PREVIEW (RFC 8970). */
static void
test_savedate_preview(void)
{
	struct imap_session *s;
	char *o;

	t_home("preview");
	s = t_session();
	free(t_ask(s, "a SELECT INBOX\r\n"));
	o = t_ask(s, "b FETCH 1 (SAVEDATE)\r\n");
	ok(has(o, "* 1 FETCH (SAVEDATE \"") && has(o, " +0000\")\r\n"),
	    "SAVEDATE: a date in the INTERNALDATE form");
	free(o);
	o = t_ask(s, "c FETCH 1:* (PREVIEW)\r\n");
	ok(has(o, "* 1 FETCH (PREVIEW \"Shall we meet at noon? Carol\")"),
	    "PREVIEW of plain text: white space made one space");
	ok(has(o, "* 2 FETCH (PREVIEW {23}\r\nUn caf\xc3\xa9 demain matin ?)"),
	    "quoted-printable decoded, soft break joined, UTF-8 literal");
	ok(has(o, "* 3 FETCH (PREVIEW \"Here is the quokkaberry report.\")"),
	    "base64 decoded, the attachment not looked at");
	ok(has(o, "* 4 FETCH (PREVIEW {32}\r\nCaf\xc3\xa9 & cr\xc3\xa8me, "
	    "two lines <here>)"), "HTML: head, comment and tags gone, "
	    "entities decoded, ISO-8859-1 to UTF-8");
	ok(has(o, "* 5 FETCH (PREVIEW \"Noon is fine.\")"), "CRLF text");
	ok(has(o, "* 6 FETCH (PREVIEW \"\")"),
	    "no text part (an attached message): the empty string");
	ok(has(o, "c OK FETCH"), "FETCH PREVIEW OK");
	free(o);
	o = t_ask(s, "d FETCH 1 (UID PREVIEW (LAZY) FLAGS)\r\n");
	is_string(o, "* 1 FETCH (UID 1 FLAGS (\\Seen) PREVIEW NIL)\r\n"
	    "d OK FETCH completed\r\n", "PREVIEW (LAZY): NIL, none is kept");
	free(o);
	o = t_ask(s, "e FETCH 1 (PREVIEW (LAZY) PREVIEW)\r\n");
	ok(has(o, "PREVIEW \"Shall") && !has(o, "NIL"),
	    "PREVIEW and PREVIEW (LAZY): the preview");
	free(o);
	o = t_ask(s, "f FETCH 1 (PREVIEW (EAGER))\r\ng FETCH 1 (PREVIEW ())"
	    "\r\nh FETCH 1 PREVIEW\r\n");
	ok(has(o, "f BAD") && has(o, "g BAD") && has(o, "h OK"),
	    "an unknown modifier, an empty list: BAD; PREVIEW alone: OK");
	free(o);
	o = t_ask(s, "i FETCH 4 (BODY[TEXT])\r\nj FETCH 2 (PREVIEW)\r\n"
	    "k FETCH 2 (FLAGS)\r\n");
	ok(has(o, "* 4 FETCH (FLAGS (\\Seen) BODY[TEXT]") &&
	    has(o, "* 2 FETCH (FLAGS ())\r\nk OK"),
	    "BODY[TEXT] sets \\Seen, PREVIEW does not");
	free(o);
	imap_session_free(&s);
}

/* The preview machine on its own: limits and HTML corners. */
static void
t_pv(const char *in, bool html, bool latin1, const char *want,
    const char *name)
{
	struct imap_preview p;
	struct buf got;

	/* Byte by byte: the same as whole. */
	imap_preview_init(&p, html, latin1);
	for (size_t i = 0; in[i] != '\0'; i++)
		(void)imap_preview_feed(&p, (const unsigned char *)in + i, 1);
	imap_preview_finish(&p);
	buf_init(&got, sizeof(p.out) + 1);
	buf_append(&got, p.out, p.len);
	is_string(buf_cstr(&got), want, "preview: %s", name);
	buf_free(&got);
}

static void
test_preview_text(void)
{
	char in[2048], want[2048];

	t_pv("  a \t\r\n b  ", false, false, "a b", "white space");
	t_pv("a\x01\x7f" "b", false, false, "ab", "control characters go");
	t_pv("\xc3\xa9\xc3\x28\xe2\x82\xac\xed\xa0\x80\xc0\xaf\xf4\x90\x80"
	    "\x80z", false, false, "\xc3\xa9(\xe2\x82\xacz",
	    "invalid UTF-8 dropped (cut, surrogate, overlong, past U+10FFFF)");
	t_pv("caf\xe9", false, true, "caf\xc3\xa9", "ISO-8859-1");
	t_pv("a < b && c > d", true, false, "a < b && c > d",
	    "HTML: no tags there");
	t_pv("x<br>y<b>z</b>w", true, false, "x yzw", "HTML: block and inline");
	t_pv("<a href=\"x>y\">t</a>", true, false, "t", "HTML: > in a quote");
	t_pv("<script>if (a<b) x(\"</b>\");</script>t<style/>u", true,
	    false, "t u", "HTML: script skipped (a < in it too), a closed "
	    "<style/> skips nothing");
	t_pv("&#233;&#xE9;&#x110000;&bogus;&amp", true, false,
	    "\xc3\xa9\xc3\xa9&#x110000;&bogus;&amp", "HTML entities");
	t_pv("<!-- x -- > y -->z<!DOCTYPE html>", true, false, "z",
	    "HTML comment and doctype");
	/* 256 characters fit, the 257th does not. */
	memset(in, 'x', 256);
	in[256] = '\0';
	t_pv(in, false, false, in, "256 characters");
	memcpy(want, in, 257);
	in[256] = 'y';
	in[257] = '\0';
	t_pv(in, false, false, want, "the 257th goes");
	/* 255 then a space and a character: no space at the end. */
	memset(in, 'x', 255);
	memcpy(in + 255, " y", 3);
	memcpy(want, in, 255);
	want[255] = '\0';
	t_pv(in, false, false, want, "no trailing space at the limit");
	for (int i = 0; i < 256; i++)
		memcpy(in + 2 * i, "\xc3\xa9", 2);
	memcpy(in + 512, "\xc3\xa9", 3);
	memcpy(want, in, 512);
	want[512] = '\0';
	t_pv(in, false, false, want, "256 two-byte characters, not 257");
}

/* Run as root, become nobody: a file of mode 000 must be unreadable. */
static void
t_unprivileged(void)
{
	struct passwd *pw;

	if (geteuid() != 0 || (pw = getpwnam("nobody")) == NULL)
		return;
	if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0)
		bail("cannot become nobody");
}

static uint32_t rng_state = 2463534242u;

static uint32_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

/* Random input, biased to what the machines look at: the same preview
 * whole and cut anywhere, at most IMAP_PREVIEW_CHARS characters of valid
 * UTF-8, no white space at either end. */
static void
test_preview_random(void)
{
	static const char alpha[] = "<>/&;#x!- \t\r\n\"'=abcsrtyleh09\xc3\xa9"
	    "\xe2\x82\xac\xf0\x9f\x98\x80\xa0\x80";
	struct imap_preview whole, cut;
	unsigned char in[4096];
	bool same = true, valid = true;

	for (int round = 0; round < 400; round++) {
		size_t len = 1 + rng() % sizeof(in), i = 0;
		bool html = round % 2 == 0, latin1 = round % 3 == 0;

		for (size_t k = 0; k < len; k++)
			in[k] = rng() % 4 == 0 ? (unsigned char)rng() :
			    (unsigned char)alpha[rng() % (sizeof(alpha) - 1)];
		imap_preview_init(&whole, html, latin1);
		(void)imap_preview_feed(&whole, in, len);
		imap_preview_finish(&whole);
		imap_preview_init(&cut, html, latin1);
		while (i < len) {
			size_t n = 1 + rng() % 37;

			if (n > len - i)
				n = len - i;
			(void)imap_preview_feed(&cut, in + i, n);
			i += n;
		}
		imap_preview_finish(&cut);
		same &= whole.len == cut.len && memcmp(whole.out, cut.out,
		    cut.len) == 0;
		valid &= whole.chars <= IMAP_PREVIEW_CHARS &&
		    whole.len <= sizeof(whole.out) &&
		    imap_write_utf8_valid(whole.out, whole.len) &&
		    (whole.len == 0 || (whole.out[0] != ' ' &&
		    whole.out[whole.len - 1] != ' '));
	}
	ok(same, "preview: random input cut at random as whole");
	ok(valid, "preview: within the bound, valid UTF-8, trimmed");
}

int
main(void)
{
	char cmd[PATH_MAX + 16];

	t_unprivileged();
	buf_init(&out, 1 << 22);
	alice.name = xstrdup("alice");
	alice.pwhash = xstrdup("");
	alice.uid = getuid();
	alice.gid = getgid();
	alice.fields = xstrdup("");
	alice.mail_location = (char *)"maildir:~/Maildir";
	snprintf(base, sizeof(base), "/tmp/loft-imaplazy-XXXXXX");
	if (mkdtemp(base) == NULL)
		bail("mkdtemp");

	t_full();
	test_same_answers();
	test_cheap();
	test_modseq();
	test_moved();
	test_unreadable();
	test_savedate_preview();
	test_preview_text();
	test_preview_random();

	snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
	if (system(cmd) != 0)
		diag("cleanup failed");
	alice.home = NULL;
	alice.mail_location = NULL;
	free(alice.name);
	free(alice.pwhash);
	free(alice.fields);
	buf_free(&out);
	return done_testing();
}
