#!/usr/bin/env python3
"""IMAP4rev2 (RFC 9051) on loftd's IMAP server, over IMAPS with a client
that sees the bytes: IMAP4rev2 is offered beside IMAP4rev1; before ENABLE
IMAP4rev2 the session is IMAP4rev1 (RECENT in SELECT, SEARCH answered
with SEARCH); ENABLE IMAP4rev2 answers ENABLED once, only when
authenticated and nothing is selected; after it SELECT and EXAMINE send
no RECENT and a LIST of the mailbox, a second SELECT sends OK [CLOSED]
first, SEARCH and UID SEARCH are answered with ESEARCH (TAG, UID, ALL;
nothing but the tag when nothing matched), SEARCH CHARSET is still
allowed, STATUS gives DELETED and SIZE, mailbox names are UTF-8 and
quoted strings may carry it, and ENVELOPE gives a raw UTF-8 Subject as a
quoted string. For Maildir and mbox."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Tap, message, need_loftd, tls_client_context  # noqa: E402
from imapraw import Lit, Raw, names_of, ok, status  # noqa: E402,F401

t = Tap()
need_loftd(t)
SUBJECT = "Grüße"


def run(env, d, ctx, fmt):
    c = Raw(d.imaps_port, ctx)
    t.ok(re.search(rb"CAPABILITY IMAP4rev1 IMAP4rev2 ", c.greeting),
         "%s: the greeting offers IMAP4rev1 and IMAP4rev2" % fmt)
    tagged, lines = c.cmd("ENABLE IMAP4rev2")
    t.eq(status(tagged), b"BAD", "%s: ENABLE before login: BAD" % fmt)
    tagged = c.login()
    t.ok(ok(tagged) and b" IMAP4rev2 " in tagged,
         "%s: the login's OK offers IMAP4rev2" % fmt)
    # IMAP4rev1 until enabled.
    tagged, lines = c.cmd("SELECT INBOX")
    t.ok(ok(tagged) and b"* 0 RECENT" in lines and
         not any(ln.startswith(b"* LIST") for ln in lines),
         "%s: IMAP4rev1 SELECT: RECENT, no LIST" % fmt)
    tagged, lines = c.cmd("SEARCH ALL")
    t.ok(b"* SEARCH 1 2 3" in lines, "%s: IMAP4rev1 SEARCH (%r)"
         % (fmt, lines))
    tagged, lines = c.cmd("ENABLE IMAP4rev2")
    t.eq(status(tagged), b"BAD", "%s: ENABLE when selected: BAD" % fmt)
    tagged, lines = c.cmd("SELECT INBOX")
    t.ok(not any(b"[CLOSED]" in ln for ln in lines),
         "%s: IMAP4rev1 reselect without QRESYNC: no [CLOSED]" % fmt)
    c.cmd("UNSELECT")
    tagged, lines = c.cmd("ENABLE IMAP4rev2 CONDSTORE")
    t.ok(ok(tagged) and b"* ENABLED IMAP4rev2 CONDSTORE" in lines,
         "%s: ENABLE IMAP4rev2 (%r)" % (fmt, lines))
    tagged, lines = c.cmd("ENABLE IMAP4rev2")
    t.ok(ok(tagged) and b"* ENABLED" in lines,
         "%s: a second time, nothing new (%r)" % (fmt, lines))

    tagged, lines = c.cmd("SELECT inbox")
    t.ok(ok(tagged) and b"* 3 EXISTS" in lines, "%s: SELECT" % fmt)
    t.ok(not any(b"RECENT" in ln for ln in lines),
         "%s: no RECENT (%r)" % (fmt, lines))
    t.ok(b'* LIST () "/" "INBOX"' in lines,
         "%s: a LIST of the mailbox, as the store spells it" % fmt)
    tagged, lines = c.cmd("EXAMINE INBOX")
    t.eq(lines[0], b"* OK [CLOSED] Previous mailbox closed",
         "%s: a reselect starts with OK [CLOSED]" % fmt)
    t.ok(ok(tagged) and b"[READ-ONLY]" in tagged and
         not any(b"RECENT" in ln for ln in lines) and
         b'* LIST () "/" "INBOX"' in lines, "%s: EXAMINE alike" % fmt)
    tagged, lines = c.cmd("SELECT INBOX")
    tagged, lines = c.cmd("FETCH 1:* (FLAGS)")
    t.ok(ok(tagged) and not any(b"\\Recent" in ln for ln in lines),
         "%s: no \\Recent flag" % fmt)

    tagged, lines = c.cmd("SEARCH ALL")
    t.eq([ln for ln in lines if ln.startswith(b"* ")],
         [b'* ESEARCH (TAG "u%d") ALL 1:3' % c.n],
         "%s: SEARCH is answered with ESEARCH" % fmt)
    tagged, lines = c.cmd("UID SEARCH 2:3")
    t.eq([ln for ln in lines if ln.startswith(b"* ")],
         [b'* ESEARCH (TAG "u%d") UID ALL 2:3' % c.n],
         "%s: UID SEARCH with UID" % fmt)
    tagged, lines = c.cmd("SEARCH SUBJECT nothing-like-this")
    t.eq([ln for ln in lines if ln.startswith(b"* ")],
         [b'* ESEARCH (TAG "u%d")' % c.n],
         "%s: nothing matched: the tag alone" % fmt)
    tagged, lines = c.cmd("SEARCH RETURN (COUNT MIN) ALL")
    t.eq([ln for ln in lines if ln.startswith(b"* ")],
         [b'* ESEARCH (TAG "u%d") MIN 1 COUNT 3' % c.n],
         "%s: RETURN options as before" % fmt)
    tagged, lines = c.cmd(b'SEARCH CHARSET UTF-8 SUBJECT "Gr\xc3\xbc\xc3\x9fe"')
    t.eq([ln for ln in lines if ln.startswith(b"* ")],
         [b'* ESEARCH (TAG "u%d") ALL 3' % c.n],
         "%s: CHARSET and a UTF-8 quoted string under IMAP4rev2" % fmt)
    tagged, lines = c.cmd("SEARCH RETURN (SAVE) ALL")
    t.ok(ok(tagged) and not any(ln.startswith(b"* ") for ln in lines),
         "%s: RETURN (SAVE) alone answers no ESEARCH" % fmt)
    tagged, lines = c.cmd("SORT (SUBJECT) UTF-8 ALL")
    t.ok(ok(tagged) and any(ln.startswith(b"* SORT ") for ln in lines),
         "%s: SORT is still SORT" % fmt)

    tagged, lines = c.cmd("FETCH 3 (ENVELOPE)")
    t.ok(any(b'"' + SUBJECT.encode() + b'"' in ln for ln in lines),
         "%s: ENVELOPE: the UTF-8 Subject quoted (%r)" % (fmt, lines))

    tagged, lines = c.cmd("STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    if fmt == "maildir":
        size = sum(len(v.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
                   for v in env.maildir_files("alice").values())
    else:
        size = None
    tagged, lines = c.cmd("STATUS INBOX (MESSAGES DELETED SIZE)")
    m = [re.match(rb"^\* STATUS \"INBOX\" \(MESSAGES 3 DELETED 2 SIZE "
                  rb"(\d+)\)$", ln) for ln in lines]
    m = [x for x in m if x]
    t.ok(ok(tagged) and len(m) == 1 and
         (size is None or int(m[0].group(1)) == size),
         "%s: STATUS DELETED and SIZE (%r, %r on disk)" % (fmt, lines, size))

    tagged, lines = c.cmd(b'CREATE "\xc3\x9cbung/\xe6\x97\xa5\xe6\x9c\xac"')
    t.ok(ok(tagged), "%s: CREATE a UTF-8 name" % fmt)
    tagged, lines = c.cmd(b'LIST "" "*"')
    t.ok("Übung/日本".encode() in names_of(lines),
         "%s: LIST in UTF-8 (%r)" % (fmt, names_of(lines)))
    tagged, lines = c.cmd(b'SELECT "\xc3\x9cbung/\xe6\x97\xa5\xe6\x9c\xac"')
    t.ok(ok(tagged) and lines[0] == b"* OK [CLOSED] Previous mailbox closed"
         and '* LIST () "/" "Übung/日本"'.encode() in lines,
         "%s: SELECT it: [CLOSED], its LIST in UTF-8 (%r)" % (fmt, lines))
    tagged, lines = c.cmd(b'CREATE "A\xc0\xaf"')
    t.eq(status(tagged), b"BAD", "%s: an overlong form: BAD" % fmt)
    tagged, lines = c.cmd(b"CREATE ", Lit(b"A\xed\xa0\x80"))
    t.eq(status(tagged), b"NO", "%s: a surrogate in a literal: NO" % fmt)
    c.close()

    # The same mailbox for an IMAP4rev1 session at the same time.
    o = Raw(d.imaps_port, ctx)
    o.login()
    tagged, lines = o.cmd(b'LIST "" "&ANw-bung/*"')
    t.eq(names_of(lines), [b"&ANw-bung/&ZeVnLA-"],
         "%s: an IMAP4rev1 session lists it in modified UTF-7" % fmt)
    tagged, lines = o.cmd(b"SELECT INBOX")
    t.ok(b"* 0 RECENT" in lines, "%s: and gets RECENT" % fmt)
    o.close()


def main():
    for fmt in ("maildir", "mbox"):
        env = Env(fmt=fmt)
        try:
            env.add_user("alice")
            for s in ("first", "second"):
                rc, err = env.deliver("alice", message(s))
                t.eq(rc, 0, "%s: delivered (%s)" % (fmt, err.strip()))
            rc, err = env.deliver("alice", message(SUBJECT))
            t.eq(rc, 0, "%s: delivered a UTF-8 Subject" % fmt)
            d = env.start_loftd(pop3=False, pop3s=False, imap=False,
                                imaps=True)
            run(env, d, tls_client_context(d.cert), fmt)
            t.eq(env.stop_loftd(), 0, "%s: loftd exits with status 0" % fmt)
        finally:
            env.cleanup()
    t.done()


main()
