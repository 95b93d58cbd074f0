#!/usr/bin/env python3
"""loft beside a private Postfix instance (t/lib/postfix.py: its own
configuration, queue and log under the test directory, SMTP on a free
loopback port), both ways.

Postfix relaying into loft (Postfix's relayhost = [127.0.0.1]:LOFT_PORT,
mynetworks the loopback; mail injected with Postfix's own sendmail -C
DIR): a message for a local user of loft lands in that user's Maildir,
the message byte for byte behind loft's and Postfix's Received: lines,
logged as sent by both; a recipient loft does not know gets loft's 550
5.1.1 at RCPT and Postfix bounces it to the sender (a mailbox of
Postfix's), quoting that reply; a message over loft's message_size_limit
is refused: Postfix honours the SIZE loft advertises (bounced 5.3.4 with
loft's limit in the reason), and through a transport that ignores SIZE
Postfix gets loft's 552 5.3.4 after the data and bounces quoting it.

loft relaying into Postfix (loft's relayhost = [127.0.0.1]:POSTFIX_PORT),
Postfix delivering to a virtual(8) Maildir: the message arrives once,
byte for byte behind the two Received: lines, logged by both, both
queues empty; an address Postfix refuses (550 5.1.1) is bounced by loft
to its local sender, who reads Postfix's reply in the bounce.

Skipped (with the reason) unless run as root with Postfix installed."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import (Env, Tap, free_port, maildir_messages,  # noqa: E402
                  need_loftd, smtp_send)
from loft import wait_for as loft_wait_for  # noqa: E402
import postfix  # noqa: E402

t = Tap()
need_loftd(t)
why = postfix.available()
if why is not None:
    t.skip_all("no private Postfix: %s" % why)

SIZE_LIMIT = 20000
NOBODY = 65534


def wait_for(fn):
    """loft.wait_for, longer: mail through Postfix waits on its queue
    manager too."""
    return loft_wait_for(fn, 20.0, 0.1)


def message(subject, sender, to, body=b"Hello,\n.a line with a dot\n\nbye\n"):
    """A complete message (so that Postfix adds no header but its
    Received:), with LF line ends as sendmail takes it."""
    return (b"From: <" + sender.encode() + b">\nTo: <" + to.encode() +
            b">\nSubject: " + subject.encode() + b"\nMessage-ID: <" +
            subject.replace(" ", ".").encode() + b"@pf.test>\n"
            b"Date: Sun, 29 Nov 2026 10:00:00 +0000\n\n" + body)


def by_subject(msgs, subject):
    key = b"\nSubject: " + subject.encode() + b"\n"
    return [m for m in msgs.values() if key in m]


# The headers in front of the message as sent, in a loft Maildir file
# (LF line ends on disk): Return-Path, Delivered-To, loft's Received:
# (from Postfix), Postfix's Received: (from sendmail, userid 0).
LOFT_HEAD = re.compile(
    rb"\AReturn-Path: <carol@pf\.test>\n"
    rb"Delivered-To: alice@example\.test\n"
    rb"Received: from pf\.example\.test \(\[127\.0\.0\.1\]\)\n"
    rb"\tby test\.example\.org \(loft\) with ESMTP id [0-9A-Z]{17}"
    rb"(?:\n\tfor <[^>]*>)?;(?:\n\t| )[A-Z][a-z]{2}, [^\n]*\n"
    rb"Received: by pf\.example\.test \(Postfix, from userid 0\)\n"
    rb"\tid [0-9A-Za-z]+; [^\n]*\n\Z")

# In Postfix's virtual Maildir: Return-Path, X-Original-To,
# Delivered-To, Postfix's Received: (from loft), loft's Received: (from
# smtplib).
PF_HEAD = re.compile(
    rb"\AReturn-Path: <alice@example\.test>\n"
    rb"X-Original-To: carol@pf\.test\n"
    rb"Delivered-To: carol@pf\.test\n"
    rb"Received: from test\.example\.org \(localhost \[127\.0\.0\.1\]\)\n"
    rb"\tby pf\.example\.test \(Postfix\) with E?SMTPS? id [0-9A-Za-z]+\n"
    rb"\tfor <carol@pf\.test>; [^\n]*\n"
    rb"Received: from client\.test \([^)]*\)\n"
    rb"\tby test\.example\.org \(loft\) with ESMTP id [0-9A-Z]{17}"
    rb"(?:\n\tfor <[^>]*>)?;(?:\n\t| )[A-Z][a-z]{2}, [^\n]*\n\Z")


class Setup:
    def __init__(self):
        self.env = Env("maildir", extra="mydestination = localhost, "
                       "example.test\nmessage_size_limit = %d\n" %
                       SIZE_LIMIT)
        for u in ("alice", "bob"):
            self.env.add_user(u)
        # An alias map, so that a name that is neither user nor alias
        # is unknown (550), not a failed lookup (451).
        self.env.add_aliases("postmaster: alice\n")
        self.pf_port = free_port()
        self.d = self.env.start_loftd(
            "relayhost = [127.0.0.1]:%d\nsmtp_tls_security_level = none\n"
            % self.pf_port, smtp=True, qmgr=True, pop3s=False)
        pdir = os.path.join(self.env.dir, "postfix")
        os.makedirs(pdir)
        self.vmail = os.path.join(pdir, "vmail")
        os.makedirs(self.vmail)
        os.chown(self.vmail, NOBODY, NOBODY)
        vmaps = os.path.join(pdir, "vmailbox")
        with open(vmaps, "w") as f:
            f.write("carol@pf.test carol/\n")
        transport = os.path.join(pdir, "transport")
        with open(transport, "w") as f:
            f.write("bob@example.test nosize:[127.0.0.1]:%d\n" %
                    self.d.smtp_port)
        self.pf = postfix.Postfix(self.env.dir, self.pf_port, {
            "myhostname": "pf.example.test",
            "mydestination": "",
            "relayhost": "[127.0.0.1]:%d" % self.d.smtp_port,
            "transport_maps": "texthash:" + transport,
            "virtual_mailbox_domains": "pf.test",
            "virtual_mailbox_base": self.vmail,
            "virtual_mailbox_maps": "texthash:" + vmaps,
            "virtual_uid_maps": "static:%d" % NOBODY,
            "virtual_gid_maps": "static:%d" % NOBODY,
            "smtp_tls_security_level": "none",
            "notify_classes": "",
        }, master_extra="nosize unix - - n - - smtp\n"
           "  -o smtp_discard_ehlo_keywords=size\n")
        self.carol = os.path.join(self.vmail, "carol")


# Postfix -> loft

def pf_send(s, subject, to, body=None):
    msg = message(subject, "carol@pf.test", to) if body is None else \
        message(subject, "carol@pf.test", to, body)
    rc, err = s.pf.sendmail(["-f", "carol@pf.test", "-i", to], msg)
    if not t.eq(rc, 0, "Postfix's sendmail -C takes the message for %s" %
                to):
        t.diag(err)
    return msg


def test_into_loft(s):
    msg = pf_send(s, "into loft", "alice@example.test")
    got = wait_for(lambda: by_subject(s.env.maildir_files("alice"),
                                      "into loft"))
    if not t.ok(got and len(got) == 1, "Postfix -> loft: one message in "
                "alice's Maildir"):
        t.diag(s.pf.log()[-2000:])
        return
    m = got[0]
    t.ok(m.endswith(msg), "  the message byte for byte")
    head = m[:len(m) - len(msg)]
    if not t.ok(LOFT_HEAD.match(head) is not None,
            "  behind Return-Path, Delivered-To, loft's Received: (from "
            "pf.example.test) and Postfix's"):
        t.diag(repr(head))
    r = s.pf.wait_log(r"to=<alice@example\.test>, relay=127\.0\.0\.1"
                      r"\[127\.0\.0\.1\]:%d, .*status=sent \(250 2\.0\.0 "
                      r"Ok: queued as ([0-9A-Z]{17})\)" % s.d.smtp_port)
    t.ok(r, "  Postfix logs status=sent with loft's queue ID")
    if r:
        qid = r.group(1)
        t.ok(s.d.wait_log(r"%s: client=[^\[]*\[127\.0\.0\.1\]" % qid),
             "  loft logs the client= of that ID")
        t.ok(s.d.wait_log(r"%s: to=<alice@example\.test>, relay=local, "
                          r".*status=sent" % qid),
             "  and its local delivery")


def bounce_in(s, what):
    """The bounces in carol's (Postfix) Maildir that mention what, their
    folded lines (Postfix wraps the reasons it quotes) unfolded."""
    unfolded = [re.sub(rb"\r?\n[ \t]+", b" ", m)
                for m in maildir_messages(s.carol).values()]
    return [m for m in unfolded
            if b"Undelivered Mail Returned to Sender" in m and
            what.encode() in m]


def test_unknown(s):
    pf_send(s, "unknown user", "nosuch@example.test")
    want = ("550 5.1.1 <nosuch@example.test>: Recipient address rejected: "
            "User unknown in local recipient table")
    t.ok(s.pf.wait_log(r"to=<nosuch@example\.test>, relay=127\.0\.0\.1"
                       r"\[127\.0\.0\.1\]:%d, .*dsn=5\.1\.1, status=bounced "
                       r"\(host 127\.0\.0\.1\[127\.0\.0\.1\] said: %s \(in "
                       r"reply to RCPT TO command\)\)" %
                       (s.d.smtp_port, re.escape(want))),
         "unknown at loft: Postfix logs status=bounced quoting loft's 550 "
         "5.1.1 at RCPT")
    got = wait_for(lambda: bounce_in(s, "nosuch@example.test"))
    t.ok(got and len(got) == 1 and want.encode() in got[0],
         "  and bounces it to carol@pf.test, quoting loft's reply")
    t.ok(not [m for m in s.env.maildir_files("alice").values()
              if b"unknown user" in m], "  loft stored nothing")


def big_body():
    return b"".join(b"%05d " % i + b"x" * 72 + b"\n"
                    for i in range(SIZE_LIMIT // 78 + 10))


def test_size(s):
    msg = pf_send(s, "too big for alice", "alice@example.test", big_body())
    t.ok(len(msg) > SIZE_LIMIT, "  (%d bytes, loft's limit %d)" %
         (len(msg), SIZE_LIMIT))
    t.ok(s.pf.wait_log(r"to=<alice@example\.test>, relay=127\.0\.0\.1"
                       r"\[127\.0\.0\.1\]:%d, .*dsn=5\.3\.4, status=bounced "
                       r"\(message size \d+ exceeds size limit %d of server "
                       r"127\.0\.0\.1\[127\.0\.0\.1\]\)" %
                       (s.d.smtp_port, SIZE_LIMIT)),
         "over loft's message_size_limit: Postfix reads SIZE %d from "
         "loft's EHLO and bounces 5.3.4" % SIZE_LIMIT)
    got = wait_for(lambda: bounce_in(s, "exceeds size limit %d" %
                                     SIZE_LIMIT))
    t.ok(got, "  the bounce reaches carol@pf.test")
    # bob@example.test goes through the "nosize" transport, which does
    # not read SIZE: the data reaches loft, which says 552 at its end.
    pf_send(s, "too big for bob", "bob@example.test", big_body())
    want = "552 5.3.4 Message size exceeds fixed limit"
    t.ok(s.pf.wait_log(r"to=<bob@example\.test>, relay=127\.0\.0\.1"
                       r"\[127\.0\.0\.1\]:%d, .*dsn=5\.3\.4, status=bounced "
                       r"\(host 127\.0\.0\.1\[127\.0\.0\.1\] said: %s "
                       r"\(in reply to end of DATA command\)\)" %
                       (s.d.smtp_port, re.escape(want))),
         "the same without SIZE: Postfix gets loft's %s after the data "
         "and bounces" % want)
    got = wait_for(lambda: bounce_in(s, "bob@example.test"))
    t.ok(got and want.encode() in got[0], "  the bounce to carol quotes it")
    t.eq([m for m in s.env.maildir_files("bob").values()
          if b"too big" in m], [], "  loft stored nothing for bob")


# loft -> Postfix

def test_into_postfix(s):
    msg = (b"From: Alice <alice@example.test>\r\nTo: carol@pf.test\r\n"
           b"Subject: into postfix\r\nMessage-ID: <into.postfix@example."
           b"test>\r\nDate: Sun, 29 Nov 2026 10:00:00 +0000\r\n\r\n"
           b"Hello,\r\n.a line with a dot\r\n\r\nbye\r\n")
    qid = smtp_send(s.d, ["carol@pf.test"], msg, "alice@example.test")
    r = s.d.wait_log(r"%s: to=<carol@pf\.test>, relay=127\.0\.0\.1"
                     r"\[127\.0\.0\.1\]:%d, .*dsn=2\.0\.0, status=sent "
                     r"\(250 2\.0\.0 Ok: queued as ([0-9A-Za-z]+)\)" %
                     (qid, s.pf_port), timeout=20)
    t.ok(r, "loft -> Postfix: loft logs status=sent with Postfix's queue ID")
    if r:
        t.ok(s.pf.wait_log(r"%s: to=<carol@pf\.test>, relay=virtual, .*"
                           r"status=sent \(delivered to maildir\)" %
                           r.group(1)),
             "  Postfix delivers it to carol's Maildir (virtual)")
    wait_for(lambda: by_subject(maildir_messages(s.carol), "into postfix"))
    # Both queues empty: no copy is on its way any more.
    t.ok(wait_for(lambda: qid not in s.d.queue_ids()) and
         wait_for(s.pf.queue_empty), "  both queues are empty")
    got = by_subject(maildir_messages(s.carol), "into postfix")
    if not t.eq(len(got), 1, "  the message arrived once"):
        return
    lf = msg.replace(b"\r\n", b"\n")
    t.ok(got[0].endswith(lf), "  byte for byte (LF line ends on disk)")
    head = got[0][:len(got[0]) - len(lf)]
    if not t.ok(PF_HEAD.match(head), "  behind Return-Path, Delivered-To, "
                "Postfix's Received: (from test.example.org) and loft's"):
        t.diag(repr(head))
    t.eq(len(re.findall(r"%s: client=" % qid, s.d.log())), 1,
         "  loft received it once (no loop back from Postfix)")


def test_refused_by_postfix(s):
    before = len(s.env.maildir_files("alice"))
    qid = smtp_send(s.d, ["nobody@pf.test"], message(
        "refused by postfix", "alice@example.test", "nobody@pf.test")
        .replace(b"\n", b"\r\n"), "alice@example.test")
    t.ok(s.d.wait_log(r"%s: to=<nobody@pf\.test>, relay=127\.0\.0\.1"
                      r"\[127\.0\.0\.1\]:%d, .*dsn=5\.1\.1, status=bounced "
                      r"\(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.1\.1 "
                      r"<nobody@pf\.test>: Recipient address rejected: "
                      r"User unknown in virtual mailbox table \(in reply to "
                      r"RCPT TO command\)\)" % (qid, s.pf_port), timeout=20),
         "an address Postfix does not know: loft logs status=bounced "
         "quoting Postfix's 550 5.1.1")
    got = wait_for(lambda: [m for m in s.env.maildir_files("alice").values()
                            if b"nobody@pf.test" in m and
                            b"User unknown in virtual mailbox table" in m])
    t.ok(got and len(s.env.maildir_files("alice")) == before + 1,
         "  alice gets loft's bounce, quoting Postfix's reply")


def main():
    s = t.guard("setup", Setup)
    if s is None:
        t.done()
    ok, err = s.pf.start()
    if not t.ok(ok, "a private Postfix starts (SMTP on 127.0.0.1:%d), "
                "relayhost = loft (127.0.0.1:%d)" % (s.pf_port,
                                                     s.d.smtp_port)):
        t.diag(err)
        s.pf.stop()
        t.done()
    try:
        for fn in (test_into_loft, test_unknown, test_size,
                   test_into_postfix, test_refused_by_postfix):
            t.guard(fn.__name__, fn, s)
    finally:
        s.pf.stop()
    t.eq(s.env.stop_loftd(), 0, "loftd stops cleanly (status 0)")
    s.env.cleanup()
    t.done()


main()
