#!/usr/bin/env python3
"""CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267) against loftd: SEARCH and
SORT with RETURN (PARTIAL m:n) and RFC 9394's -m:-n, RETURN (UPDATE) seen
from a raw socket session A while session B (imaplib) and loft-deliver
change the folder: the exact "* ESEARCH (TAG ...) ADDTO/REMOVEFROM" lines,
their order against EXISTS and EXPUNGE, A's own STORE, a sequence-number
context, a SORT context with positions, updates during IDLE,
CANCELUPDATE, tag reuse, the context limit (8 kept, the 9th NOUPDATE),
and contexts ending with the selection."""
import imaplib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from imapraw import TIMEOUT, Lines, mail  # noqa: E402
from loft import Env, Tap, need_loftd  # noqa: E402

t = Tap()
need_loftd(t)
CONTEXT_MAX = 8


def es(lines):
    return [ln for ln in lines if ln.startswith("* ESEARCH")]


def pos(lines, prefix):
    for i, ln in enumerate(lines):
        if ln.startswith(prefix):
            return i
    return -1


def run(env, d):
    A = Lines(d.imap_port)
    t.ok("CONTEXT=SEARCH" in A.greeting and "CONTEXT=SORT" in A.greeting,
         "greeting capabilities name CONTEXT=SEARCH and CONTEXT=SORT")
    t.ok(A.cmd("a1", "LOGIN alice secret")[-1].startswith("a1 OK"), "A logs in")
    t.ok(A.cmd("a2", "SELECT INBOX")[-1].startswith("a2 OK"), "A selects INBOX")
    B = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=TIMEOUT)
    B.login("alice", "secret")
    B.select("INBOX")
    typ, data = B.uid("SEARCH", None, "ALL")
    u = [int(x) for x in data[0].split()]
    t.eq(len(u), 4, "four messages, UIDs %s" % u)

    # PARTIAL (RFC 5267 4.4, RFC 9394).
    r = A.cmd("p1", "UID SEARCH RETURN (PARTIAL 1:2) ALL")
    t.eq(es(r), ['* ESEARCH (TAG "p1") UID PARTIAL (1:2 %d:%d)' % (u[0], u[1])],
         "PARTIAL 1:2: the first two UIDs")
    r = A.cmd("p2", "SEARCH RETURN (PARTIAL 4:3 COUNT) ALL")
    t.eq(es(r), ['* ESEARCH (TAG "p2") COUNT 4 PARTIAL (3:4 3:4)'],
         "PARTIAL 4:3 is 3:4, with COUNT")
    r = A.cmd("p3", "UID SEARCH RETURN (PARTIAL -1:-1) ALL")
    t.eq(es(r), ['* ESEARCH (TAG "p3") UID PARTIAL (-1:-1 %d)' % u[3]],
         "PARTIAL -1:-1: the last (RFC 9394)")
    r = A.cmd("p4", "UID SEARCH RETURN (PARTIAL -3:-100) ALL")
    t.eq(es(r), ['* ESEARCH (TAG "p4") UID PARTIAL (-3:-100 %d:%d)'
                 % (u[0], u[1])], "PARTIAL -3:-100: from the end, clipped")
    r = A.cmd("p5", "SEARCH RETURN (PARTIAL 5:9) ALL")
    t.eq(es(r), ['* ESEARCH (TAG "p5") PARTIAL (5:9 NIL)'],
         "PARTIAL past the results: NIL")
    r = A.cmd("p6", "SEARCH RETURN (PARTIAL 4294967295:4294967295) ALL")
    t.eq(es(r), ['* ESEARCH (TAG "p6") PARTIAL (4294967295:4294967295 NIL)'],
         "PARTIAL at the largest nz-number")
    for tag, opt, what in (("b1", "PARTIAL 1:2 ALL", "PARTIAL with ALL"),
                           ("b2", "PARTIAL 1:2 PARTIAL 3:4", "two PARTIAL"),
                           ("b3", "PARTIAL 0:2", "a zero"),
                           ("b4", "PARTIAL 1:4294967296", "past 2^32-1"),
                           ("b5", "PARTIAL -1:2", "mixed signs"),
                           ("b6", "PARTIAL 1:*", "a star"),
                           ("b7", "PARTIAL", "no range")):
        r = A.cmd(tag, "SEARCH RETURN (%s) ALL" % opt)
        t.ok(r[-1].startswith(tag + " BAD") and not es(r),
             "%s: BAD (%s)" % (what, r[-1]))
    r = A.cmd("p7", "SORT RETURN (PARTIAL 1:2) (REVERSE SUBJECT) UTF-8 ALL")
    t.eq(es(r), ['* ESEARCH (TAG "p7") PARTIAL (1:2 2:3)'],
         "ESORT PARTIAL in sort order (zulu 2, gamma 3)")
    r = A.cmd("p8", "SORT RETURN (PARTIAL -1:-2 MIN) (REVERSE SUBJECT) "
              "UTF-8 ALL")
    t.eq(es(r), ['* ESEARCH (TAG "p8") MIN 2 PARTIAL (-1:-2 4,1)'],
         "ESORT PARTIAL -1:-2: the last two in sort order, MIN the first")

    # A UID context on UNSEEN; B's flag change.
    r = A.cmd("U1", "UID SEARCH RETURN (UPDATE COUNT ALL) UNSEEN")
    t.eq(es(r), ['* ESEARCH (TAG "U1") UID COUNT 4 ALL %d:%d' % (u[0], u[3])],
         "U1: the first result")
    t.ok(r[-1].startswith("U1 OK"), "U1 OK")
    B.store("1", "+FLAGS", "(\\Seen)")
    r = A.cmd("n1", "NOOP")
    t.eq(es(r), ['* ESEARCH (TAG "U1") UID REMOVEFROM (0 %d)' % u[0]],
         "B sets \\Seen on 1: REMOVEFROM")
    t.ok(0 <= pos(r, "* 1 FETCH") < pos(r, "* ESEARCH"),
         "after the FETCH that shows it")
    # A delivery.
    rc, err = env.deliver("alice", mail("beta five"))
    t.eq(rc, 0, "delivered a fifth (%s)" % err.strip())
    r = A.cmd("n2", "NOOP")
    typ, data = B.uid("SEARCH", None, "ALL")
    u = [int(x) for x in data[0].split()]
    t.eq(es(r), ['* ESEARCH (TAG "U1") UID ADDTO (0 %d)' % u[4]],
         "the new message: ADDTO")
    t.ok(0 <= pos(r, "* 5 EXISTS") < pos(r, "* ESEARCH"),
         "ADDTO after EXISTS (RFC 5267 4.3.3)")
    # An expunge by B.
    B.store("2", "+FLAGS", "(\\Deleted)")
    B.expunge()
    r = A.cmd("n3", "NOOP")
    t.eq(es(r), ['* ESEARCH (TAG "U1") UID REMOVEFROM (0 %d)' % u[1]],
         "B expunges 2: REMOVEFROM")
    t.ok(0 <= pos(r, "* ESEARCH") < pos(r, "* 2 EXPUNGE"),
         "REMOVEFROM before EXPUNGE (RFC 5267 4.3.4)")
    # A's own STORE (messages now u0 u2 u3 u4 as 1..4).
    r = A.cmd("s1", "STORE 2 +FLAGS (\\Seen)")
    t.eq(es(r), ['* ESEARCH (TAG "U1") UID REMOVEFROM (0 %d)' % u[2]],
         "A's own STORE: REMOVEFROM")
    t.ok(r[-1].startswith("s1 OK"), "STORE OK")
    r = A.cmd("s2", "STORE 2 -FLAGS (\\Seen)")
    t.eq(es(r), ['* ESEARCH (TAG "U1") UID ADDTO (0 %d)' % u[2]],
         "clearing it again: ADDTO")
    r = A.cmd("s3", "STORE 2 +FLAGS (\\Flagged)")
    t.eq(es(r), [], "a change that keeps it matching: no update")

    # A sequence-number context.
    r = A.cmd("N1", "SEARCH RETURN (UPDATE) DELETED")
    t.eq(es(r), ['* ESEARCH (TAG "N1")'], "N1: RETURN (UPDATE) alone: "
         "an ESEARCH with the correlator only")
    B.store("3", "+FLAGS", "(\\Deleted)")
    B.store("4", "+FLAGS", "(\\Deleted)")
    r = A.cmd("n4", "NOOP")
    t.eq(es(r), ['* ESEARCH (TAG "N1") ADDTO (0 3:4)'],
         "N1: sequence numbers, one compact set")
    r = A.cmd("N1", "SEARCH RETURN (UPDATE) ALL")
    t.ok(r[-1].startswith("N1 BAD") and not es(r),
         "UPDATE with a tag in use: BAD (%s)" % r[-1])
    B.store("3:4", "-FLAGS", "(\\Deleted)")
    r = A.cmd("n5", "NOOP")
    t.eq(es(r), ['* ESEARCH (TAG "N1") REMOVEFROM (0 3:4)'],
         "N1: both leave")

    # A SORT context: subjects alpha one (u0), gamma three (u2),
    # delta four (u3), beta five (u4); UNSEEN: u2 u3 u4 (u0 is seen).
    r = A.cmd("S1", "UID SORT RETURN (UPDATE ALL) (SUBJECT) UTF-8 UNSEEN")
    t.eq(es(r), ['* ESEARCH (TAG "S1") UID ALL %d,%d,%d' % (u[4], u[3], u[2])],
         "S1: beta, delta, gamma")
    rc, err = env.deliver("alice", mail("charlie six"))
    t.eq(rc, 0, "delivered a sixth")
    r = A.cmd("n6", "NOOP")
    typ, data = B.uid("SEARCH", None, "ALL")
    u6 = int(data[0].split()[-1])
    t.eq(es(r), ['* ESEARCH (TAG "U1") UID ADDTO (0 %d)' % u6,
                 '* ESEARCH (TAG "S1") UID ADDTO (2 %d)' % u6],
         "charlie: ADDTO at position 2 of S1 (after beta), 0 for U1")
    B.store("1:*", "+FLAGS", "(\\Seen)")
    B.store("4", "-FLAGS", "(\\Seen)")   # beta stays unseen
    r = A.cmd("n7", "NOOP")
    got = es(r)
    t.eq(got[0], '* ESEARCH (TAG "U1") UID REMOVEFROM (0 %d:%d,%d)'
         % (u[2], u[3], u6), "U1: three leave, one set")
    t.eq(got[1:], ['* ESEARCH (TAG "S1") UID REMOVEFROM (4 %d)' % u[2],
                   '* ESEARCH (TAG "S1") UID REMOVEFROM (3 %d)' % u[3],
                   '* ESEARCH (TAG "S1") UID REMOVEFROM (2 %d)' % u6],
         "S1: each at its position, in turn (gamma 4, delta 3, charlie 2)")

    # Updates during IDLE, with no command of A.
    A.send("i1 IDLE")
    t.ok(A.line().startswith("+"), "IDLE")
    rc, err = env.deliver("alice", mail("aaa seven"))
    got = A.until(r'TAG "S1"')
    typ, data = B.uid("SEARCH", None, "ALL")
    u7 = int(data[0].split()[-1])
    t.ok(any(ln == "* 6 EXISTS" for ln in got), "IDLE: EXISTS")
    t.eq(es(got), ['* ESEARCH (TAG "U1") UID ADDTO (0 %d)' % u7,
                   '* ESEARCH (TAG "S1") UID ADDTO (1 %d)' % u7],
         "IDLE: ADDTO unsolicited, aaa first in S1")
    A.send("DONE")
    t.ok(A.until(r"^i1 ")[-1].startswith("i1 OK"), "IDLE ends")

    # CANCELUPDATE.
    r = A.cmd("c1", 'CANCELUPDATE "nosuch"')
    t.ok(r[-1].startswith("c1 BAD"), "CANCELUPDATE of an unknown tag: BAD")
    r = A.cmd("c2", 'CANCELUPDATE "U1" "S1"')
    t.ok(r[-1].startswith("c2 OK"), "CANCELUPDATE U1 S1: OK")
    B.store("1:*", "-FLAGS", "(\\Seen)")
    r = A.cmd("n8", "NOOP")
    t.eq(es(r), [], "no more updates after CANCELUPDATE")
    r = A.cmd("U1", "SEARCH RETURN (UPDATE COUNT) ALL")
    t.eq(es(r), ['* ESEARCH (TAG "U1") COUNT 6'],
         "a cancelled tag may name a new context")

    # The limit: N1 and U1 are kept; six more fill it, the ninth is refused.
    for i in range(2, CONTEXT_MAX):
        r = A.cmd("L%d" % i, "UID SEARCH RETURN (UPDATE COUNT) ALL")
        t.ok(r[-1].startswith("L%d OK" % i) and
             not any("NOUPDATE" in ln for ln in r),
             "context %d of %d kept" % (i + 1, CONTEXT_MAX))
    r = A.cmd("L9", "UID SEARCH RETURN (UPDATE COUNT) ALL")
    t.ok('* ESEARCH (TAG "L9") UID COUNT 6' in r, "the 9th: the result still")
    t.ok(any(ln.startswith('* NO [NOUPDATE "L9"]') for ln in r),
         "the 9th: * NO [NOUPDATE \"L9\"]")
    t.ok(r[-1].startswith("L9 OK"), "the 9th: the command itself OK")
    rc, err = env.deliver("alice", mail("eight"))
    r = A.cmd("n9", "NOOP")
    t.eq(len(es(r)), CONTEXT_MAX - 1, "the seven ALL contexts update, "
         "the DELETED one not, L9 not")
    t.ok(not any('"L9"' in ln for ln in es(r)), "no update for L9")

    # Contexts end with the selection.
    A.cmd("x1", "UNSELECT")
    A.cmd("x2", "SELECT INBOX")
    r = A.cmd("x3", 'CANCELUPDATE "U1"')
    t.ok(r[-1].startswith("x3 BAD"), "after UNSELECT no context is left")
    B.logout()
    A.close()


def main():
    env = Env()
    try:
        env.add_user("alice")
        for s in ("alpha one", "zulu two", "gamma three", "delta four"):
            rc, err = env.deliver("alice", mail(s))
            t.eq(rc, 0, "delivered %s (%s)" % (s, err.strip()))
        d = env.start_imap()
        run(env, d)
        t.eq(env.stop_loftd(), 0, "loftd stops cleanly")
    finally:
        env.cleanup()
    t.done()


main()
