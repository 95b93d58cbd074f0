/*
 * Unit tests for CONDSTORE and QRESYNC (RFC 7162) and ENABLE in the IMAP
 * engine, driven by bytes against real Maildir and mbox trees: ENABLE's
 * answers, HIGHESTMODSEQ in SELECT and STATUS, FETCH MODSEQ and
 * (CHANGEDSINCE n) at the boundary n = MODSEQ and n = MODSEQ - 1, STORE
 * (UNCHANGEDSINCE n) at the same boundary with [MODIFIED] and the files on
 * disk left alone, MODSEQ in another session's flag updates, VANISHED for
 * EXPUNGE once QRESYNC is on, SELECT (QRESYNC ...) with VANISHED (EARLIER)
 * and changed flags, UID FETCH (CHANGEDSINCE n VANISHED), [CLOSED], and
 * the BAD answers. Expected MODSEQs are read from the index, not guessed.
 */
#include "config.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "mindex.h"
#include "store.h"
#include "user.h"
#include "xmalloc.h"
#include "server/imap/imap_private.h"
#include "tap.h"
#include "imap_harness.h"

static bool maildir;

/* The index's view of INBOX: the folder, and the MODSEQ of uid (0 if
 * the message is not there). */
static uint64_t
t_index(struct mindex_folder *f, uint32_t uid)
{
	struct mindex_folder dummy;
	struct mindex_txn *txn;
	struct mindex_msg m;
	struct store *st;
	const char *err;
	uint64_t modseq = 0;

	if (f == NULL)
		f = &dummy;
	if (store_open(&alice, &st, &err) < 0)
		bail("store_open: %s", err);
	if (mindex_begin(store_index(st), false, &txn, &err) < 0)
		bail("mindex_begin: %s", err);
	if (mindex_folder_get(txn, "INBOX", f) <= 0)
		bail("no INBOX in the index");
	if (uid != 0 && mindex_msg_get(txn, f->id, uid, &m) > 0)
		modseq = m.modseq;
	mindex_abort(&txn);
	store_close(&st);
	return modseq;
}

static uint64_t
t_highest(void)
{
	struct mindex_folder f;

	(void)t_index(&f, 0);
	return f.highestmodseq;
}

static uint64_t
t_modseq(uint32_t uid)
{
	return t_index(NULL, uid);
}

/* Messages whose Maildir name has flags (":2,F"); mbox keeps flags in
 * the index only, so there it is skipped. */
static int
t_files(const char *want)
{
	char path[PATH_MAX];
	struct dirent *de;
	int n = 0;

	for (int i = 0; i < 2; i++) {
		DIR *d;

		snprintf(path, sizeof(path), "%s/Maildir/%s", alice.home,
		    i ? "new" : "cur");
		if ((d = opendir(path)) == NULL)
			continue;
		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] != '.' &&
			    strstr(de->d_name, want) != NULL)
				n++;
		closedir(d);
	}
	return n;
}

static void
test_enable(void)
{
	struct imap_session *s = t_session(), *q = t_session();
	const char *o;

	o = t_say(s, "e0 CAPABILITY\r\n");
	ok(has(o, " CONDSTORE") && has(o, " QRESYNC"),
	    "CAPABILITY offers CONDSTORE and QRESYNC");
	o = t_say(s, "e1 ENABLE CONDSTORE\r\n");
	is_string(o, "* ENABLED CONDSTORE\r\ne1 OK ENABLE completed\r\n",
	    "ENABLE CONDSTORE");
	o = t_say(s, "e2 ENABLE condstore X-UNKNOWN\r\n");
	is_string(o, "* ENABLED\r\ne2 OK ENABLE completed\r\n",
	    "enabled twice or unknown: not named again");
	o = t_say(s, "e3 ENABLE QRESYNC\r\n");
	is_string(o, "* ENABLED QRESYNC\r\ne3 OK ENABLE completed\r\n",
	    "QRESYNC after CONDSTORE: only QRESYNC is new");
	o = t_say(q, "f1 ENABLE QRESYNC\r\n");
	is_string(o, "* ENABLED QRESYNC CONDSTORE\r\nf1 OK ENABLE "
	    "completed\r\n", "QRESYNC brings CONDSTORE");
	o = t_say(q, "f2 ENABLE\r\n");
	ok(has(o, "f2 BAD"), "ENABLE without names: BAD");
	o = t_say(q, "f3 SELECT INBOX\r\nf4 ENABLE CONDSTORE\r\n");
	ok(has(o, "f4 BAD") || has(o, "f4 NO"),
	    "ENABLE in the selected state is refused");
	imap_session_free(&s);
	imap_session_free(&q);
}

static void
test_select_status(void)
{
	struct imap_session *s = t_session();
	char want[256];
	const char *o;
	uint64_t h = t_highest();

	ok(h > 0, "the index has a HIGHESTMODSEQ");
	snprintf(want, sizeof(want), "* OK [HIGHESTMODSEQ %llu] ",
	    (unsigned long long)h);
	o = t_say(s, "s1 SELECT INBOX\r\n");
	ok(has(o, want) && has(o, "s1 OK [READ-WRITE]"),
	    "SELECT reports HIGHESTMODSEQ from the index");
	ok(!has(o, "[CLOSED]"), "first SELECT: no [CLOSED]");
	o = t_say(s, "s2 EXAMINE INBOX\r\n");
	ok(!has(o, "[CLOSED]"), "no [CLOSED] without QRESYNC");
	snprintf(want, sizeof(want), "* STATUS \"INBOX\" (HIGHESTMODSEQ %llu "
	    "MESSAGES 3)\r\n", (unsigned long long)h);
	o = t_say(s, "s3 UNSELECT\r\ns4 STATUS INBOX (HIGHESTMODSEQ "
	    "MESSAGES)\r\n");
	ok(has(o, want), "STATUS HIGHESTMODSEQ");
	o = t_say(s, "s5 STATUS INBOX (HIGHESTMODSEQX)\r\n");
	ok(has(o, "s5 BAD"), "STATUS with an unknown item is still BAD");
	imap_session_free(&s);
}

static void
test_fetch(void)
{
	struct imap_session *s = t_session();
	char want[512];
	const char *o;
	uint64_t m1 = t_modseq(1), m2 = t_modseq(2), m3 = t_modseq(3);

	ok(m1 < m2 && m2 < m3, "deliveries get rising MODSEQs");
	o = t_say(s, "c1 SELECT INBOX\r\n");
	o = t_say(s, "c2 FETCH 1 (FLAGS)\r\n");
	is_string(o, "* 1 FETCH (FLAGS ())\r\nc2 OK FETCH completed\r\n",
	    "no MODSEQ before CONDSTORE");
	/* The first enabling command in the selected state says where
	 * MODSEQs stand. */
	snprintf(want, sizeof(want), "* OK [HIGHESTMODSEQ %llu] Highest\r\n"
	    "* 1 FETCH (UID 1 MODSEQ (%llu))\r\n"
	    "* 2 FETCH (UID 2 MODSEQ (%llu))\r\n"
	    "c3 OK FETCH completed\r\n", (unsigned long long)t_highest(),
	    (unsigned long long)m1, (unsigned long long)m2);
	o = t_say(s, "c3 FETCH 1:2 (UID MODSEQ)\r\n");
	is_string(o, want, "FETCH MODSEQ enables CONDSTORE");
	snprintf(want, sizeof(want), "* 3 FETCH (UID 3 MODSEQ (%llu))\r\n"
	    "c4 OK FETCH completed\r\n", (unsigned long long)m3);
	o = t_say(s, "c4 FETCH 3 (UID MODSEQ)\r\n");
	is_string(o, want, "and says it once");

	/* CHANGEDSINCE n: MODSEQ above n, so n = m2 leaves 2 out and
	 * n = m2 - 1 takes it. */
	snprintf(want, sizeof(want), "c5 FETCH 1:* (FLAGS) (CHANGEDSINCE "
	    "%llu)\r\n", (unsigned long long)m2);
	o = t_say(s, want);
	snprintf(want, sizeof(want), "* 3 FETCH (FLAGS () MODSEQ (%llu))\r\n"
	    "c5 OK FETCH completed\r\n", (unsigned long long)m3);
	is_string(o, want, "CHANGEDSINCE m2: only message 3, with MODSEQ");
	snprintf(want, sizeof(want), "c6 UID FETCH 2:3 (FLAGS) (CHANGEDSINCE "
	    "%llu)\r\n", (unsigned long long)(m2 - 1));
	o = t_say(s, want);
	snprintf(want, sizeof(want), "* 2 FETCH (UID 2 FLAGS () MODSEQ (%llu))"
	    "\r\n* 3 FETCH (UID 3 FLAGS () MODSEQ (%llu))\r\n"
	    "c6 OK UID FETCH completed\r\n", (unsigned long long)m2,
	    (unsigned long long)m3);
	is_string(o, want, "CHANGEDSINCE m2 - 1: message 2 too");
	snprintf(want, sizeof(want), "c7 FETCH 1:* (UID) (CHANGEDSINCE %llu)"
	    "\r\n", (unsigned long long)m3);
	o = t_say(s, want);
	is_string(o, "c7 OK FETCH completed\r\n",
	    "CHANGEDSINCE the highest: nothing");
	o = t_say(s, "c8 FETCH 1 (BODY.PEEK[HEADER]) (CHANGEDSINCE 0)\r\n");
	ok(has(o, "* 1 FETCH (MODSEQ (") && has(o, "BODY[HEADER]") &&
	    has(o, "c8 OK"), "CHANGEDSINCE with a body section");
	o = t_say(s, "c9 FETCH 1 (FLAGS) (CHANGEDSINCE)\r\n");
	ok(has(o, "c9 BAD"), "CHANGEDSINCE without a number: BAD");
	o = t_say(s, "c10 FETCH 1 (FLAGS) (FOO 1)\r\n");
	ok(has(o, "c10 BAD"), "unknown modifier: BAD");
	o = t_say(s, "c11 UID FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n");
	ok(has(o, "c11 BAD") && !has(o, "FETCH ("),
	    "VANISHED without QRESYNC enabled: BAD");
	o = t_say(s, "c12 FETCH 1 (FLAGS) (CHANGEDSINCE 18446744073709551616)"
	    "\r\n");
	ok(has(o, "c12 BAD"), "a MODSEQ past 2^63 - 1: BAD");
	imap_session_free(&s);
}

static void
test_store(void)
{
	struct imap_session *s = t_session(), *s2 = t_session();
	char cmd[256], want[512];
	const char *o;
	uint64_t m1, m2, m3, h;

	o = t_say(s, "t0 SELECT INBOX (CONDSTORE)\r\n");
	ok(has(o, "t0 OK [READ-WRITE]") && has(o, "[HIGHESTMODSEQ "),
	    "SELECT (CONDSTORE)");
	o = t_say(s2, "u0 ENABLE CONDSTORE\r\nu1 SELECT INBOX\r\n");
	o = t_say(s, "t1 STORE 1 +FLAGS (\\Seen)\r\n");
	m1 = t_modseq(1);
	snprintf(want, sizeof(want), "* 1 FETCH (FLAGS (\\Seen) MODSEQ (%llu))"
	    "\r\nt1 OK STORE completed\r\n", (unsigned long long)m1);
	is_string(o, want, "STORE after SELECT (CONDSTORE): MODSEQ");
	ok(m1 == t_highest(), "the new MODSEQ is the highest");
	snprintf(want, sizeof(want), "* 1 FETCH (UID 1 FLAGS (\\Seen) "
	    "MODSEQ (%llu))\r\nu2 OK", (unsigned long long)m1);
	o = t_say(s2, "u2 NOOP\r\n");
	ok(has(o, want), "another CONDSTORE session sees it with MODSEQ");

	/* UNCHANGEDSINCE n passes when MODSEQ <= n. */
	m2 = t_modseq(2);
	snprintf(cmd, sizeof(cmd), "t2 STORE 2 (UNCHANGEDSINCE %llu) +FLAGS "
	    "(\\Flagged)\r\n", (unsigned long long)(m2 - 1));
	o = t_say(s, cmd);
	is_string(o, "t2 OK [MODIFIED 2] Conditional STORE failed\r\n",
	    "UNCHANGEDSINCE MODSEQ - 1: refused with [MODIFIED]");
	ok(t_modseq(2) == m2, "and the index is unchanged");
	if (maildir)
		is_int(t_files(":2,F"), 0, "Maildir: no file got F");
	snprintf(cmd, sizeof(cmd), "t3 STORE 2 (UNCHANGEDSINCE %llu) +FLAGS "
	    "(\\Flagged)\r\n", (unsigned long long)m2);
	o = t_say(s, cmd);
	m2 = t_modseq(2);
	snprintf(want, sizeof(want), "* 2 FETCH (FLAGS (\\Flagged) MODSEQ "
	    "(%llu))\r\nt3 OK STORE completed\r\n", (unsigned long long)m2);
	is_string(o, want, "UNCHANGEDSINCE = MODSEQ: stored");
	if (maildir)
		is_int(t_files(":2,F"), 1, "Maildir: the file got F");

	/* UID STORE, silent, some refused: the MODIFIED set is of UIDs,
	 * the changed ones still say their MODSEQ. */
	m3 = t_modseq(3);
	snprintf(cmd, sizeof(cmd), "t4 UID STORE 1:3 (UNCHANGEDSINCE %llu) "
	    "+FLAGS.SILENT (\\Answered)\r\n", (unsigned long long)m3);
	o = t_say(s, cmd);
	snprintf(want, sizeof(want), "* 3 FETCH (UID 3 MODSEQ (%llu))\r\n"
	    "t4 OK [MODIFIED 1:2] Conditional UID STORE failed\r\n",
	    (unsigned long long)t_modseq(3));
	is_string(o, want, "UID STORE .SILENT: MODSEQ of the changed, "
	    "[MODIFIED] of UIDs");
	o = t_say(s, "t5 STORE 1 (UNCHANGEDSINCE 0) +FLAGS (\\Draft)\r\n");
	is_string(o, "t5 OK [MODIFIED 1] Conditional STORE failed\r\n",
	    "UNCHANGEDSINCE 0 always fails");
	o = t_say(s, "t6 STORE 1 (UNCHANGEDSINCE) +FLAGS (\\Draft)\r\n");
	ok(has(o, "t6 BAD"), "UNCHANGEDSINCE without a number: BAD");
	o = t_say(s, "t7 STORE 1 (CHANGEDSINCE 5) +FLAGS (\\Draft)\r\n");
	ok(has(o, "t7 BAD"), "another modifier: BAD");
	h = t_highest();
	o = t_say(s, "t8 STORE 1 +FLAGS.SILENT (\\Seen)\r\n");
	is_string(o, "t8 OK STORE completed\r\n",
	    ".SILENT that changes nothing: no FETCH");
	ok(t_highest() == h, "and no new MODSEQ");
	/* Without CONDSTORE the answers stay as RFC 3501 has them. */
	imap_session_free(&s2);
	s2 = t_session();
	o = t_say(s2, "v1 SELECT INBOX\r\nv2 STORE 3 -FLAGS (\\Answered)\r\n");
	ok(has(o, "* 3 FETCH (FLAGS ())\r\nv2 OK STORE completed"),
	    "no MODSEQ in STORE's FETCH without CONDSTORE");
	o = t_say(s, "t9 NOOP\r\n");
	snprintf(want, sizeof(want), "* 3 FETCH (UID 3 FLAGS () MODSEQ "
	    "(%llu))\r\nt9 OK", (unsigned long long)t_modseq(3));
	ok(has(o, want), "the CONDSTORE session hears of it with MODSEQ");
	imap_session_free(&s);
	imap_session_free(&s2);
}

static void
test_qresync(void)
{
	struct imap_session *s = t_session(), *q = t_session();
	struct mindex_folder f;
	char cmd[256], want[512];
	const char *o;
	uint64_t h0, m1, m3;
	char more[128];

	(void)t_index(&f, 0);
	h0 = f.highestmodseq;
	o = t_say(q, "q0 SELECT INBOX (QRESYNC (1 1))\r\n");
	ok(has(o, "q0 BAD"), "SELECT (QRESYNC) before ENABLE QRESYNC: BAD");
	o = t_say(q, "q1 ENABLE QRESYNC\r\nq2 SELECT INBOX\r\n");
	ok(has(o, "q2 OK") && !has(o, "[CLOSED]"), "first SELECT");
	o = t_say(q, "q3 EXAMINE INBOX\r\n");
	ok(has(o, "* OK [CLOSED]") && has(o, "q3 OK [READ-ONLY]") &&
	    strstr(o, "[CLOSED]") < strstr(o, "EXISTS"),
	    "[CLOSED] before the new mailbox's responses");
	o = t_say(q, "q4 SELECT INBOX\r\n");

	/* Another session expunges message 2 and changes message 1. */
	o = t_say(s, "r1 SELECT INBOX\r\nr2 STORE 2 +FLAGS.SILENT "
	    "(\\Deleted)\r\nr3 EXPUNGE\r\nr4 STORE 1 -FLAGS.SILENT "
	    "(\\Seen)\r\n");
	ok(has(o, "* 2 EXPUNGE") && has(o, "r4 OK"),
	    "plain session: EXPUNGE as RFC 3501");
	m1 = t_modseq(1);
	o = t_say(q, "q5 NOOP\r\n");
	ok(has(o, "* VANISHED 2\r\n") && !has(o, "EXPUNGE"),
	    "QRESYNC session: VANISHED, not EXPUNGE");
	snprintf(want, sizeof(want), "* 1 FETCH (UID 1 FLAGS () MODSEQ (%llu))"
	    "\r\n", (unsigned long long)m1);
	ok(has(o, want), "and the flag change with MODSEQ");
	/* mbox: the expunge rewrote the file and gave the messages after
	 * it new offsets, so new MODSEQs; a CONDSTORE client hears of it. */
	m3 = t_modseq(3);
	snprintf(want, sizeof(want), "* 2 FETCH (UID 3 FLAGS () MODSEQ (%llu))"
	    "\r\n", (unsigned long long)m3);
	ok(has(o, want) == (m3 > h0), "message 3 reported iff its MODSEQ "
	    "moved (%s)", m3 > h0 ? "it did" : "it did not");

	/* Resynchronise from h0: 2 vanished, 1 changed. */
	imap_session_free(&q);
	q = t_session();
	o = t_say(q, "q6 ENABLE QRESYNC\r\n");
	snprintf(cmd, sizeof(cmd), "q7 SELECT INBOX (QRESYNC (%u %llu))\r\n",
	    f.uidvalidity, (unsigned long long)h0);
	o = t_send(q, cmd, true);
	snprintf(want, sizeof(want), "* VANISHED (EARLIER) 2\r\n"
	    "* 1 FETCH (UID 1 FLAGS () MODSEQ (%llu))\r\n",
	    (unsigned long long)m1);
	ok(has(o, want), "SELECT (QRESYNC), byte by byte: VANISHED "
	    "(EARLIER) then FETCH");
	ok(has(o, "q7 OK [READ-WRITE]") && !has(o, "* 3 FETCH"),
	    "unchanged messages are not sent");
	ok(strstr(o, "VANISHED") > strstr(o, "[HIGHESTMODSEQ"),
	    "after the SELECT responses");
	snprintf(cmd, sizeof(cmd), "q8 SELECT INBOX (QRESYNC (%u %llu 1,3:5))"
	    "\r\n", f.uidvalidity, (unsigned long long)h0);
	o = t_say(q, cmd);
	ok(!has(o, "VANISHED") && has(o, "* 1 FETCH (UID 1") &&
	    has(o, "q8 OK"), "known-uids without 2: no VANISHED");
	snprintf(cmd, sizeof(cmd), "q9 SELECT INBOX (QRESYNC (%u %llu 1:3 "
	    "(1:3 1:3)))\r\n", f.uidvalidity, (unsigned long long)h0);
	o = t_say(q, cmd);
	ok(has(o, "* VANISHED (EARLIER) 2\r\n") && has(o, "q9 OK"),
	    "with a seq-match list");
	snprintf(cmd, sizeof(cmd), "q10 SELECT INBOX (QRESYNC (%u %llu))\r\n",
	    f.uidvalidity + 1, (unsigned long long)h0);
	o = t_say(q, cmd);
	ok(!has(o, "VANISHED") && !has(o, "FETCH") && has(o, "q10 OK"),
	    "another UIDVALIDITY: a plain SELECT");
	snprintf(cmd, sizeof(cmd), "q11 SELECT INBOX (QRESYNC (%u %llu))\r\n",
	    f.uidvalidity, (unsigned long long)t_highest());
	o = t_say(q, cmd);
	ok(!has(o, "VANISHED") && !has(o, "FETCH") && has(o, "q11 OK"),
	    "from the current HIGHESTMODSEQ: nothing to tell");
	o = t_say(q, "q12 SELECT INBOX (QRESYNC (0 1))\r\n");
	ok(has(o, "q12 BAD"), "UIDVALIDITY 0: BAD");
	o = t_say(q, "q13 SELECT INBOX (QRESYNC (1))\r\n");
	ok(has(o, "q13 BAD"), "QRESYNC without MODSEQ: BAD");
	o = t_say(q, "q14 SELECT INBOX (BOGUS)\r\n");
	ok(has(o, "q14 BAD"), "unknown SELECT parameter: BAD");

	/* UID FETCH (CHANGEDSINCE n VANISHED). */
	o = t_say(q, "q15 SELECT INBOX\r\n");
	snprintf(cmd, sizeof(cmd), "q16 UID FETCH 1:* (FLAGS) (CHANGEDSINCE "
	    "%llu VANISHED)\r\n", (unsigned long long)h0);
	o = t_say(q, cmd);
	more[0] = '\0';
	if (m3 > h0)
		snprintf(more, sizeof(more), "* 2 FETCH (UID 3 FLAGS () "
		    "MODSEQ (%llu))\r\n", (unsigned long long)m3);
	snprintf(want, sizeof(want), "* VANISHED (EARLIER) 2\r\n"
	    "* 1 FETCH (UID 1 FLAGS () MODSEQ (%llu))\r\n%s"
	    "q16 OK UID FETCH completed\r\n", (unsigned long long)m1, more);
	is_string(o, want, "UID FETCH (CHANGEDSINCE VANISHED)");
	snprintf(cmd, sizeof(cmd), "q17 UID FETCH 3 (FLAGS) (CHANGEDSINCE "
	    "%llu VANISHED)\r\n", (unsigned long long)h0);
	o = t_say(q, cmd);
	snprintf(want, sizeof(want), "%sq17 OK UID FETCH completed\r\n", more);
	is_string(o, want, "VANISHED only for UIDs in the set");
	o = t_say(q, "q18 FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n");
	ok(has(o, "q18 BAD"), "VANISHED in FETCH (not UID): BAD");
	o = t_say(q, "q19 UID FETCH 1:* (FLAGS) (VANISHED)\r\n");
	ok(has(o, "q19 BAD"), "VANISHED without CHANGEDSINCE: BAD");

	/* Our own EXPUNGE under QRESYNC. */
	o = t_say(q, "q20 STORE 2 +FLAGS.SILENT (\\Deleted)\r\nq21 "
	    "EXPUNGE\r\n");
	ok(has(o, "* VANISHED 3\r\n") && has(o, "q21 OK") &&
	    !has(o, "EXPUNGE\r\n"),
	    "EXPUNGE under QRESYNC answers VANISHED with the UID");
	ok(has(o, "* 2 FETCH (MODSEQ ("), ".SILENT under CONDSTORE: MODSEQ "
	    "without FLAGS");
	snprintf(cmd, sizeof(cmd), "q22 UID FETCH 1:* (UID) (CHANGEDSINCE "
	    "%llu VANISHED)\r\n", (unsigned long long)h0);
	o = t_say(q, cmd);
	snprintf(want, sizeof(want), "* VANISHED (EARLIER) 2:3\r\n"
	    "* 1 FETCH (UID 1 MODSEQ (%llu))\r\nq22 OK UID FETCH "
	    "completed\r\n", (unsigned long long)t_modseq(1));
	is_string(o, want, "1:* reaches an expunged last UID");
	o = t_say(s, "r5 NOOP\r\n");
	ok(has(o, "* 2 EXPUNGE\r\n"), "the plain session hears EXPUNGE");
	imap_session_free(&s);
	imap_session_free(&q);
}

static void
t_format(const char *location, bool md)
{
	char home[PATH_MAX], cmd[PATH_MAX + 16];

	snprintf(home, sizeof(home), "/tmp/loft-imapcs-XXXXXX");
	if (mkdtemp(home) == NULL)
		bail("mkdtemp");
	maildir = md;
	alice.home = home;
	alice.mail_location = (char *)location;
	diag("format %s", location);
	t_deliver("INBOX", "Subject: one\n\none\n");
	t_deliver("INBOX", "Subject: two\n\ntwo\n");
	t_deliver("INBOX", "Subject: three\n\nthree\n");
	test_enable();
	test_select_status();
	test_fetch();
	test_store();
	test_qresync();
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
