#!/usr/bin/env python3
"""SORT, UID SORT, ESORT (SORT RETURN) and THREAD against loftd with
Python's imaplib: messages delivered by loft-deliver with known senders,
subjects, dates, sizes and References; answers checked number by number,
with a search program, REVERSE, ties by sequence number, both threading
algorithms, a message whose cached header lacks a field (a References
longer than the index caches), and the errors (unknown key, charset,
missing arguments)."""
import imaplib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Tap, need_loftd  # noqa: E402

t = Tap()
need_loftd(t)
TIMEOUT = 15


def mail(subject, frm, date, msgid, refs="", body="x\n", to="rcpt@example.org"):
    hdr = "From: %s\nTo: %s\nSubject: %s\nDate: %s\nMessage-ID: <%s>\n" % (
        frm, to, subject, date, msgid)
    if refs:
        hdr += "References: %s\n" % refs
    return (hdr + "\n" + body).encode()


# seq: subject, from, Date, size-making body
MSGS = [
    mail("Project plan", "Zoe <zoe@example.net>",
         "Mon, 02 Mar 2026 10:00:00 +0000", "p1@x", body="a\n" * 50),
    mail("Re: Project plan", "adam@example.net",
         "Mon, 02 Mar 2026 11:00:00 +0000", "p2@x", refs="<p1@x>"),
    mail("Lunch", "Bob <bob@example.net>",
         "Sun, 01 Mar 2026 09:00:00 +0000", "l1@x", body="b\n" * 10),
    mail("RE: Re: Project plan", "carol@example.net",
         "Mon, 02 Mar 2026 12:00:00 +0000", "p3@x", refs="<p1@x> <p2@x>"),
    mail("lunch", "Adam <adam@example.net>",
         "Sun, 01 Mar 2026 08:00:00 -0200", "l2@x", body="c\n" * 30),
]


def sort(M, prog, crit="ALL", uid=False):
    if uid:
        typ, data = M.uid("SORT", prog, "UTF-8", crit)
    else:
        typ, data = M.sort(prog, "UTF-8", crit)
    t.eq(typ, "OK", "%sSORT %s %s answered OK" % ("UID " if uid else "", prog, crit))
    return [int(x) for x in (data[0] or b"").split()]


def main():
    env = Env()
    try:
        env.add_user("alice")
        for m in MSGS:
            rc, err = env.deliver("alice", m)
            t.eq(rc, 0, "delivered (%s)" % err.strip())
        # A References longer than the index caches (64 KiB of IDs): the
        # header is read from the message for it.
        longrefs = " ".join("<r%d@x>" % i for i in range(6000)) + " <p3@x>"
        rc, err = env.deliver("alice", mail(
            "Re: Project plan", "dave@example.net",
            "Mon, 02 Mar 2026 13:00:00 +0000", "p4@x", refs=longrefs))
        t.eq(rc, 0, "delivered one with a 60 KB References")
        d = env.start_imap()
        M = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=TIMEOUT)
        M.login("alice", "secret")
        caps = M.capabilities
        for c in ("SORT", "SORT=DISPLAY", "ESORT", "THREAD=REFERENCES",
                  "THREAD=ORDEREDSUBJECT"):
            t.ok(c in caps, "capability %s" % c)
        t.eq(M.select("INBOX")[0], "OK", "SELECT INBOX")
        run(M)
        M.logout()
        t.eq(env.stop_loftd(), 0, "loftd stops cleanly")
    finally:
        env.cleanup()
    t.done()


def run(M):
    # Dates (UTC): 1 Mar 2 10:00, 2 Mar 2 11:00, 3 Mar 1 09:00,
    # 4 Mar 2 12:00, 5 Mar 1 10:00 (08:00 -0200), 6 Mar 2 13:00.
    t.eq(sort(M, "(DATE)"), [3, 5, 1, 2, 4, 6], "SORT (DATE), zones applied")
    t.eq(sort(M, "(REVERSE DATE)"), [6, 4, 2, 1, 5, 3], "SORT (REVERSE DATE)")
    t.eq(sort(M, "(ARRIVAL)"), [1, 2, 3, 4, 5, 6], "SORT (ARRIVAL)")
    t.eq(sort(M, "(SUBJECT)"), [3, 5, 1, 2, 4, 6],
         "SORT (SUBJECT): base subjects, case folded, ties by number")
    t.eq(sort(M, "(SUBJECT REVERSE DATE)"), [5, 3, 6, 4, 2, 1],
         "SORT (SUBJECT REVERSE DATE)")
    t.eq(sort(M, "(FROM)"), [2, 5, 3, 4, 6, 1], "SORT (FROM): addr-mailbox")
    t.eq(sort(M, "(DISPLAYFROM)"), [5, 2, 3, 4, 6, 1],
         "SORT (DISPLAYFROM): the name, else the address")
    t.eq(sort(M, "(SIZE)")[-2:], [1, 6],
         "SORT (SIZE): the long body, then the long References, last")
    t.eq(sort(M, "(REVERSE SIZE)")[:2], [6, 1], "SORT (REVERSE SIZE)")
    t.eq(sort(M, "(DATE)", "FROM adam"), [5, 2], "SORT with a search program")
    t.eq(sort(M, "(DATE)", "SUBJECT nothing-matches"), [], "SORT of nothing")
    typ, data = M.uid("FETCH", "1:*", "(UID)")
    uids = [int(x.split()[2].rstrip(b")")) for x in data]
    t.eq(sort(M, "(DATE)", uid=True), [uids[i - 1] for i in (3, 5, 1, 2, 4, 6)],
         "UID SORT answers UIDs")

    typ, data = M._simple_command("SORT", "RETURN", "(MIN MAX COUNT ALL)",
                                  "(DATE)", "UTF-8", "ALL")
    t.eq(typ, "OK", "ESORT: SORT RETURN (...) OK")
    es = M.untagged_responses.pop("ESEARCH", [b""])[0].decode()
    t.ok("MIN 3" in es and "MAX 6" in es and "COUNT 6" in es and
         "ALL 3,5,1:2,4,6" in es, "ESORT answer: MIN/MAX in sort order, "
         "ALL in sort order (%s)" % es)

    typ, data = M.thread("REFERENCES", "UTF-8", "ALL")
    t.eq((typ, data), ("OK", [b"((3)(5))(1 2 4 6)"]),
         "THREAD REFERENCES: References (also past the cache); equal "
         "subjects under a dummy")
    typ, data = M.thread("ORDEREDSUBJECT", "UTF-8", "ALL")
    t.eq((typ, data), ("OK", [b"(3 5)(1 (2)(4)(6))"]),
         "THREAD ORDEREDSUBJECT")
    typ, data = M.uid("THREAD", "REFERENCES", "UTF-8", "FROM", "adam")
    t.eq((typ, data), ("OK", [("(%d)(%d)" % (uids[4], uids[1])).encode()]),
         "UID THREAD with a search program")

    for args, what in ((("(NOSUCH)", "UTF-8", "ALL"), "an unknown key"),
                       (("(REVERSE)", "UTF-8", "ALL"), "REVERSE alone"),
                       (("DATE", "UTF-8", "ALL"), "criteria not a list"),
                       (("(DATE)",), "no charset")):
        try:
            M._simple_command("SORT", *args)
            t.ok(False, "SORT with %s must be BAD" % what)
        except imaplib.IMAP4.error as e:
            t.ok("BAD" in str(e) or "error" in str(e).lower(),
                 "SORT with %s: BAD (%s)" % (what, e))
    typ, data = M.sort("(DATE)", "KOI8-R", "ALL")
    t.ok(typ == "NO" and b"[BADCHARSET (US-ASCII UTF-8)]" in data[0],
         "unknown charset: NO [BADCHARSET (US-ASCII UTF-8)] (%s %r)" % (typ, data))
    try:
        M.thread("NOSUCH", "UTF-8", "ALL")
        t.ok(False, "THREAD NOSUCH must be BAD")
    except imaplib.IMAP4.error as e:
        t.ok(True, "THREAD with an unknown algorithm refused (%s)" % e)
    t.eq(M.noop()[0], "OK", "the session goes on after the errors")


main()
