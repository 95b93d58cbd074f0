#!/usr/bin/env python3
"""NOTIFY (RFC 5465) against loftd, Maildir and mbox: session A sets
NOTIFY SET STATUS (selected (MessageNew MessageExpunge FlagChange))
(personal (MessageNew MessageExpunge MailboxName SubscriptionChange)),
then idles or waits between commands while session B (imaplib) and
loft-deliver change INBOX and another folder; the test asserts the exact
untagged EXISTS, FETCH, STATUS and LIST lines A receives (renames with
OLDNAME), that A is not told of its own changes, that SELECTED NONE
keeps EXISTS back, the RFC 5465 section 5 rules (BAD), BADEVENT,
NOTIFICATIONOVERFLOW for too many mailboxes (1000 watched, 1001 not), and
that NOTIFY NONE stops it all."""
import imaplib
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from imapraw import TIMEOUT, Lines, mail  # noqa: E402
from loft import Env, Tap, need_loftd  # noqa: E402

t = Tap()
need_loftd(t)
WATCH_MAX = 1000


SET = ("NOTIFY SET (selected (MessageNew MessageExpunge FlagChange)) "
       "(personal (MessageNew MessageExpunge MailboxName "
       "SubscriptionChange))")


def rules(A):
    bads = (
        ("NOTIFY SET (personal (MessageNew))", "MessageNew alone"),
        ("NOTIFY SET (personal (MessageExpunge))", "MessageExpunge alone"),
        ("NOTIFY SET (personal (FlagChange))", "FlagChange alone"),
        ("NOTIFY SET (inboxes (FlagChange MessageNew))",
         "FlagChange without MessageExpunge"),
        ("NOTIFY SET (selected (MessageNew MessageExpunge MailboxName))",
         "MailboxName with SELECTED"),
        ("NOTIFY SET (selected NONE) (selected-delayed NONE)",
         "two selected groups"),
        ("NOTIFY SET (personal (MessageNew (UID) MessageExpunge))",
         "fetch-att outside SELECTED"),
        ("NOTIFY SET (selected (MessageNew (ENVELOPE) MessageExpunge))",
         "a fetch-att not served"),
        ("NOTIFY SET", "no group"),
        ("NOTIFY SET STATUS", "STATUS and no group"),
        ("NOTIFY NONE STATUS", "NONE with arguments"),
        ("NOTIFY SET (personal ())", "an empty event list"),
        ("NOTIFY SET (mailboxes () (MessageNew MessageExpunge))",
         "an empty mailbox list"),
        ("NOTIFY SET (subtree (MessageNew MessageExpunge))",
         "SUBTREE without mailboxes"),
        ("NOTIFY SET (everything (MessageNew MessageExpunge))",
         "an unknown filter"),
        ("NOTIFY SET (personal (MessageNew MessageExpunge MessageNew))",
         "an event twice"),
        ("NOTIFY FOO", "neither SET nor NONE"),
    )
    for i, (cmd, what) in enumerate(bads):
        r = A.cmd("r%d" % i, cmd)
        t.ok(r[-1].startswith("r%d BAD" % i) and len(r) == 1,
             "BAD: %s (%s)" % (what, r[-1]))
    ev = "(MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)"
    for i, e in enumerate(("MessageNew MessageExpunge AnnotationChange",
                           "MailboxMetadataChange",
                           "ServerMetadataChange", "XFutureEvent")):
        r = A.cmd("e%d" % i, "NOTIFY SET (inboxes (%s))" % e)
        t.ok(r[-1].startswith("e%d NO [BADEVENT %s]" % (i, ev)),
             "NO [BADEVENT] for %s (%s)" % (e.split()[-1], r[-1]))


def run(env, d, fmt):
    leaf = "\\HasNoChildren" if fmt == "maildir" else \
        "\\Noinferiors \\HasNoChildren"
    A = Lines(d.imap_port)
    t.ok(A.cmd("a1", "LOGIN alice secret")[-1].startswith("a1 OK"),
         "%s: A logs in" % fmt)
    r = A.cmd("a2", "CAPABILITY")
    t.ok(" NOTIFY" in r[0], "%s: CAPABILITY after login names NOTIFY" % fmt)
    rules(A)
    t.ok(A.cmd("a3", "SELECT INBOX")[-1].startswith("a3 OK"), "A selects INBOX")
    r = A.cmd("a4", "NOTIFY SET STATUS" + SET[len("NOTIFY SET"):])
    sts = [ln for ln in r if ln.startswith("* STATUS")]
    t.ok('* STATUS "Work" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY %d UNSEEN 0)'
         % d.uidv_work in sts, "%s: SET STATUS: Work's STATUS" % fmt)
    t.eq(sorted(ln.split()[2].strip('"') for ln in sts), sorted(d.others),
         "%s: SET STATUS: one for each mailbox but the selected" % fmt)
    t.ok(r[-1] == "a4 OK NOTIFY completed", "NOTIFY SET STATUS OK")
    t.eq(A.quiet(), ["q OK NOOP completed"], "nothing more yet")

    B = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=TIMEOUT)
    B.login("alice", "secret")

    # Between commands: a delivery to INBOX (selected) and to Work.
    rc, err = env.deliver("alice", mail("one"))
    t.eq(rc, 0, "delivered to INBOX (%s)" % err.strip())
    t.eq(A.lines(1), ["* 1 EXISTS"], "%s: EXISTS with no command running" % fmt)
    rc, err = env.deliver("alice", mail("two"), "-m", "Work")
    t.eq(rc, 0, "delivered to Work (%s)" % err.strip())
    t.eq(A.lines(1), ['* STATUS "Work" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY %d '
                      'UNSEEN 1)' % d.uidv_work],
         "%s: STATUS for Work with no command running" % fmt)

    # In IDLE: B's flag change on Work (no FlagChange asked for it:
    # nothing), B's create, rename, delete, unsubscribe, and INBOX's
    # flag change.
    A.send("i1 IDLE")
    t.eq(A.line(), "+ idling", "A idles")
    B.select("Work")
    B.store("1", "+FLAGS", "(\\Seen)")
    B.close()
    B.create("Receipts")
    t.eq(A.lines(1), ['* LIST (%s \\Subscribed) "/" "Receipts"' % leaf],
         "%s: no STATUS for a flag change, then MailboxName: LIST for a "
         "new mailbox" % fmt)
    B.rename("Receipts", "Bills")
    t.eq(A.lines(1), ['* LIST (%s \\Subscribed) "/" "Bills" '
                      '("OLDNAME" ("Receipts"))' % leaf],
         "%s: a rename: LIST with OLDNAME" % fmt)
    B.unsubscribe("Bills")
    t.eq(A.lines(1), ['* LIST (%s) "/" "Bills"' % leaf],
         "%s: SubscriptionChange: LIST without \\Subscribed" % fmt)
    B.delete("Bills")
    t.eq(A.lines(1), ['* LIST (\\NonExistent) "/" "Bills"'],
         "%s: a deletion: LIST (\\NonExistent)" % fmt)
    B.select("INBOX")
    B.store("1", "+FLAGS", "(\\Flagged)")
    t.eq(A.lines(1), ["* 1 FETCH (UID 1 FLAGS (\\Flagged))"],
         "%s: the selected mailbox: FETCH for B's flag change" % fmt)
    B.store("1", "+FLAGS", "(\\Deleted)")
    A.line()
    B.expunge()
    t.eq(A.lines(1), ["* 1 EXPUNGE"], "%s: EXPUNGE in IDLE" % fmt)
    B.close()
    A.send("DONE")
    t.eq(A.line(), "i1 OK IDLE terminated", "DONE")

    # A's own changes are not told.
    r = A.cmd("o1", "CREATE Mine")
    r += A.cmd("o2", "APPEND Work {3+}\r\nx\r\n")
    r += A.quiet()
    t.eq([ln for ln in r if ln.startswith("* ")], [],
         "%s: A's own CREATE and APPEND: nothing told" % fmt)

    # SELECTED NONE: B's delivery to INBOX gives no EXISTS, Work's STATUS
    # still comes; FlagChange for the others: B's flag change on Work.
    r = A.cmd("n1", "NOTIFY SET (personal (MessageNew MessageExpunge "
              "FlagChange))")
    t.ok(r[-1].startswith("n1 OK"), "NOTIFY SET without SELECTED")
    env.deliver("alice", mail("three"))
    env.deliver("alice", mail("four"), "-m", "Work")
    t.eq(A.lines(1), ['* STATUS "Work" (MESSAGES 3 UIDNEXT 4 UIDVALIDITY %d '
                      'UNSEEN 2)' % d.uidv_work],
         "%s: SELECTED NONE: Work's STATUS" % fmt)
    B.select("Work")
    B.store("3", "+FLAGS", "(\\Seen)")
    B.close()
    t.eq(A.lines(1), ['* STATUS "Work" (MESSAGES 3 UIDNEXT 4 UIDVALIDITY %d '
                      'UNSEEN 1)' % d.uidv_work],
         "%s: FlagChange: Work's STATUS with UNSEEN 1" % fmt)
    r = A.cmd("n2", "NOOP")
    t.eq(r, ["n2 OK NOOP completed"], "%s: ... and no EXISTS for INBOX" % fmt)

    # NOTIFY NONE: back to RFC 3501: the EXISTS at the next command,
    # nothing of Work.
    r = A.cmd("n3", "NOTIFY NONE")
    t.eq(r, ["n3 OK NOTIFY completed"], "NOTIFY NONE")
    env.deliver("alice", mail("five"), "-m", "Work")
    B.create("Later")
    r = A.cmd("n4", "NOOP")
    t.eq(r, ["* 1 EXISTS", "n4 OK NOOP completed"],
         "%s: after NONE: INBOX's EXISTS at NOOP, no STATUS nor LIST" % fmt)

    # MessageNew with fetch-att on SELECTED.
    r = A.cmd("f1", "NOTIFY SET (selected (MessageNew (UID FLAGS) "
              "MessageExpunge))")
    t.ok(r[-1].startswith("f1 OK"), "SELECTED MessageNew (UID FLAGS)")
    env.deliver("alice", mail("six"))
    t.eq(A.lines(2), ["* 2 EXISTS", "* 2 FETCH (UID 3 FLAGS ())"],
         "%s: EXISTS then FETCH (UID FLAGS) of the new message" % fmt)
    A.cmd("f2", "NOTIFY NONE")

    # The watch limit: 1000 mailboxes watched, 1001 refused.
    have = len(B.list()[1])
    for i in range(WATCH_MAX - have):
        B.create("L%04d" % i)
    r = A.cmd("w1", "NOTIFY SET (personal (MessageNew MessageExpunge))")
    t.ok(r[-1].startswith("w1 OK"), "%s: %d mailboxes: NOTIFY SET OK"
         % (fmt, WATCH_MAX))
    A.cmd("w2", "NOTIFY NONE")
    B.create("L9999")
    r = A.cmd("w3", "NOTIFY SET (personal (MessageNew MessageExpunge))")
    t.ok(r[-1].startswith("w3 NO [NOTIFICATIONOVERFLOW]"),
         "%s: %d mailboxes: NO [NOTIFICATIONOVERFLOW] (%s)"
         % (fmt, WATCH_MAX + 1, r[-1]))
    r = A.cmd("w4", "NOTIFY SET (personal (MailboxName))")
    t.ok(r[-1].startswith("w4 OK"),
         "%s: MailboxName alone watches no mailbox: OK" % fmt)
    B.delete("L9999")
    t.eq(A.lines(1), ['* LIST (\\NonExistent) "/" "L9999"'],
         "%s: ... and tells of a deletion" % fmt)
    A.cmd("w5", "NOTIFY NONE")
    B.logout()
    A.close()


def main():
    for fmt in ("maildir", "mbox"):
        env = Env(fmt=fmt)
        try:
            env.add_user("alice")
            if fmt == "mbox":
                # An INBOX to select before the first delivery.
                os.makedirs(os.path.dirname(env.inbox("alice")),
                            exist_ok=True)
                open(env.inbox("alice"), "a").close()
                env.own(env.user_dir("alice"))
            d = env.start_imap()
            c = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=TIMEOUT)
            c.login("alice", "secret")
            c.create("Work")
            d.others = [x.decode().rsplit(" ", 1)[-1].strip('"') for x in c.list()[1]]
            d.others.remove("INBOX")
            typ, data = c.status("Work", "(UIDVALIDITY)")
            d.uidv_work = int(re.search(rb"UIDVALIDITY (\d+)",
                                        data[0]).group(1))
            c.logout()
            try:
                run(env, d, fmt)
            except (OSError, EOFError) as e:
                t.ok(False, "%s: session failed: %r" % (fmt, e))
                for ln in d.log().splitlines()[-30:]:
                    t.diag(ln)
            t.eq(env.stop_loftd(), 0, "%s: loftd stops cleanly" % fmt)
        finally:
            env.cleanup()
    t.done()


main()
