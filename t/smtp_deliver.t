#!/usr/bin/env python3
"""Local delivery out of loftd's SMTP queue (the qmgr process): mail sent
with smtplib to alice, to an alias of alice and bob, to alice+tag and to
carol (an mbox user) is read back over POP3 and IMAP byte for byte
(Return-Path:, Delivered-To:, loftd's Received: line, the message) and
found on disk with LF line ends; always_bcc gets a copy of each; a user
over quota (quota_full_tempfail) is deferred, then delivered after the
quota is raised and the queue flushed (SIGUSR1 to loftd); a user deleted
meanwhile fails with 5.1.1 at delivery; an alias to a user unknown fails;
a remote recipient stays deferred (its relayhost refuses connections)
beside a failed one, which is bounced to the sender at once, and the
message stays queued until both are final; quota at RCPT (SIZE over the
limit, or over what the mailbox has left);
loops: a Delivered-To: of the recipient, and Received: lines at
hopcount_limit (delivered) and one more (failed); the Postfix-style log
lines; qmgr runs as mail_owner, never root; a kill -9 of the qmgr process
while it delivers loses nothing, and a new one takes over."""
import os
import re
import signal
import smtplib
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import (Env, Tap, free_port, imap_all, need_loftd,  # noqa: E402
                  pop3_all, smtp_send, wait_gone)

t = Tap()
need_loftd(t)
ROOT = os.geteuid() == 0
HOPS = 5

# Remote mail goes to a relayhost where nothing listens: every attempt
# is deferred ("connect ... refused"), whatever DNS the machine has.
DEAD_PORT = free_port()
CONF = """mydestination = localhost, example.test
recipient_delimiter = +
always_bcc = archive@example.test
quota_full_tempfail = yes
hopcount_limit = %d
disable_plaintext_auth = no
relayhost = [127.0.0.1]:%d
""" % (HOPS, DEAD_PORT)

RECEIVED = re.compile(
    rb"^Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n"
    rb"\tby test\.example\.org \(loft\) with E?SMTPS?A? id ([0-9A-Z]{17})"
    rb"(?:\r\n\tfor <[^>]*>;|;\r\n\t)"
    rb" ?[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d "
    rb"[+-]\d{4}\r\n")


def send(d, rcpts, msg, sender="sender@other.test"):
    """One message over SMTP; returns its queue ID."""
    return smtp_send(d, rcpts, msg, sender)

def setup():
    env = Env("maildir", extra=CONF)
    for u in ("alice", "bob", "archive", "carol", "dave", "erin", "frank"):
        env.add_user(u)
    # carol keeps her mail in an mbox: a mail= field on her line.
    users = os.path.join(env.dir, "users")
    mbox = os.path.join(env.dir, "mbox")
    os.makedirs(mbox)
    env.own(mbox)
    with open(users) as f:
        lines = f.read().splitlines()
    with open(users, "w") as f:
        for ln in lines:
            if ln.startswith("carol:"):
                ln += " mail=mbox:%s/%%u:INBOX=%s/%%u/INBOX" % (mbox, mbox)
            f.write(ln + "\n")
    for u, q in (("dave", "10"), ("erin", "10")):
        r = env.ctl("user", "quota", u, q)
        if r.returncode != 0:
            raise RuntimeError("user quota: %s" % r.stderr)
    env.add_aliases("team: alice, bob\nghost: nosuchuser\n"
                    "far: alice, someone@other.test\n")
    env.mbox = mbox
    return env


def message(subject, extra=b""):
    return (extra + b"From: Sender <sender@other.test>\r\n"
            b"To: someone@example.test\r\nSubject: " + subject.encode() +
            b"\r\nMessage-ID: <" + subject.replace(" ", ".").encode() +
            b"@other.test>\r\n\r\nHello,\r\n.a line with a dot\r\n\r\n"
            b"bye\r\n")


def by_subject(msgs, subject):
    key = b"\r\nSubject: " + subject.encode() + b"\r\n"
    return [m for m in msgs if key in m]


def check_stored(got, subject, rcpt, msg, name):
    """got: the messages of one mailbox; exactly one with subject,
    holding Return-Path, Delivered-To, the Received: line, msg."""
    found = by_subject(got, subject)
    if not t.eq(len(found), 1, "%s: one message" % name):
        return None
    m = found[0]
    head = b"Return-Path: <sender@other.test>\r\nDelivered-To: " + \
        rcpt.encode() + b"\r\n"
    t.ok(m.startswith(head), "%s: Return-Path:, Delivered-To: %s" %
         (name, rcpt))
    rest = m[len(head):]
    r = RECEIVED.match(rest)
    if t.ok(r is not None, "%s: then loftd's Received: line" % name):
        t.eq(rest[r.end():], msg, "%s: then the message, byte for byte" %
             name)
    return m


def maildir_by_subject(env, user, subject):
    return [v for v in env.maildir_files(user).values()
            if b"\nSubject: " + subject.encode() + b"\n" in v]


def test_local(d, env):
    msg = message("to alice")
    qid = send(d, ["alice@example.test"], msg)
    t.ok(wait_gone(d, qid), "alice: the message leaves the queue")
    m = check_stored(pop3_all(d, "alice"), "to alice", "alice@example.test",
                     msg, "alice over POP3")
    disk = maildir_by_subject(env, "alice", "to alice")
    t.ok(len(disk) == 1 and m is not None and
         disk[0] == m.replace(b"\r\n", b"\n"),
         "alice's Maildir file: the same bytes with LF line ends")
    if ROOT:
        owners = set()
        for sub in ("new", "cur"):
            p = os.path.join(env.user_dir("alice"), sub)
            for name in os.listdir(p):
                owners.add(os.stat(os.path.join(p, name)).st_uid)
        t.eq(owners, {env.owner[0]}, "  written by the mailbox owner's "
             "uid (the mail process), not mail_owner or root")
    t.ok(d.wait_log(r"%s: to=<alice@example\.test>, relay=local, "
                    r"delay=\d+\.\d\d, dsn=2\.0\.0, status=sent "
                    r"\(delivered to maildir\)" % qid),
         "log: to=<alice@example.test>, relay=local, ... status=sent")
    t.ok(d.wait_log(r"%s: removed" % qid), "log: ID: removed")
    check_stored(pop3_all(d, "archive"), "to alice",
                 "archive@example.test", msg, "always_bcc archive")
    t.ok(d.wait_log(r"%s: to=<archive@example\.test>, relay=local, .*"
                    r"status=sent" % qid), "log: the always_bcc copy sent")


def test_alias(d, env):
    msg = message("to the team")
    qid = send(d, ["team@example.test"], msg)
    t.ok(wait_gone(d, qid), "alias team: delivered and removed")
    for u in ("alice", "bob"):
        check_stored(pop3_all(d, u), "to the team", "team@example.test", msg,
                     "alias team -> %s" % u)
        t.ok(d.wait_log(r"%s: to=<%s@test\.example\.org>, "
                        r"orig_to=<team@example\.test>, relay=local, .*"
                        r"status=sent" % (qid, u)),
             "log: to=<%s@...>, orig_to=<team@example.test>" % u)


def test_extension(d, env):
    msg = message("plus tag")
    qid = send(d, ["alice+lists@example.test"], msg)
    t.ok(wait_gone(d, qid), "alice+lists: delivered and removed")
    check_stored(pop3_all(d, "alice"), "plus tag",
                 "alice+lists@example.test", msg, "alice+lists in INBOX")


def test_mbox(d, env):
    msg = message("to carol")
    qid = send(d, ["carol@example.test"], msg)
    t.ok(wait_gone(d, qid), "carol (mbox): delivered and removed")
    m = check_stored(imap_all(d, "carol"), "to carol", "carol@example.test",
                     msg, "carol over IMAP")
    with open(os.path.join(env.mbox, "carol", "INBOX"), "rb") as f:
        mbox = f.read()
    t.ok(mbox.startswith(b"From sender@other.test ") and m is not None and
         m.replace(b"\r\n", b"\n").replace(b"\n.a line", b"\n.a line") in
         mbox, "carol's mbox file: From_ line, then the message with LF")
    t.ok(d.wait_log(r"%s: to=<carol@example\.test>, relay=local, .*"
                    r"status=sent \(delivered to mbox\)" % qid),
         "log: status=sent (delivered to mbox)")


def test_quota(d, env):
    msg = message("over quota")
    qid = send(d, ["erin@example.test"], msg)
    t.ok(d.wait_log(r"%s: to=<erin@example\.test>, relay=local, .*"
                    r"dsn=4\.2\.2, status=deferred" % qid),
         "erin over quota: deferred, 4.2.2")
    deadline = time.monotonic() + 10
    text = ""
    while time.monotonic() < deadline:
        text = d.queue_envelope(qid) or ""
        if re.search(r"rcpt <erin@example\.test>\n(?:.*\n)*?state deferred",
                     text):
            break
        time.sleep(0.05)
    t.ok(re.search(r"rcpt <erin@example\.test>\n(?:.*\n)*?state deferred\n"
                   r"attempts 1\n(?:.*\n)*?diag 4\.2\.2 ", text),
         "  the envelope: erin deferred, one attempt, diag 4.2.2")
    t.eq(env.maildir_files("erin"), {}, "  nothing in erin's Maildir")
    r = env.ctl("user", "quota", "erin", "none")
    t.eq(r.returncode, 0, "loftctl user quota erin none")
    mark = d.mark()
    d.flush()
    t.ok(d.wait_log(r"flush", since=mark), "SIGUSR1: loftd logs the flush")
    t.ok(wait_gone(d, qid), "  flushed: delivered and removed")
    check_stored(pop3_all(d, "erin"), "over quota", "erin@example.test", msg,
                 "erin after the quota was raised")
    # Quota at RCPT: dave (quota 10) and MAIL's SIZE over it; then frank
    # with a quota of 3000 and 2,700 bytes stored: SIZE=500 is under his
    # quota but over what is left (his mail process counts the usage).
    env.ctl("user", "quota", "frank", "3000")
    before = len(pop3_all(d, "frank"))
    pad = b"".join(b"X-Pad-%02d: %s\r\n" % (i, b"p" * 70) for i in range(30))
    rc, err = env.deliver("frank", message("fills frank", pad))
    s = smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10)
    s.ehlo("client.test")
    s.mail("sender@other.test", ["SIZE=100"])
    code, text = s.rcpt("dave@example.test")
    t.ok(code == 452 and text.startswith(b"4.2.2 "),
         "RCPT with SIZE over the user's quota: 452 4.2.2 (%d %r)" %
         (code, text))
    s.rset()
    s.mail("sender@other.test", ["SIZE=500"])
    code, text = s.rcpt("frank@example.test")
    t.ok(rc == 0 and code == 452 and b"Mailbox full" in text,
         "RCPT with SIZE under the quota but over what is left: 452 "
         "4.2.2 Mailbox full (%d %r)" % (code, text))
    code, text = s.rcpt("alice@example.test")
    t.eq(code, 250, "  another recipient of the same message: 250")
    s.rset()
    s.mail("sender@other.test", ["SIZE=50"])
    code, text = s.rcpt("frank@example.test")
    t.eq(code, 250, "  SIZE=50 still fits: 250")
    s.quit()
    env.ctl("user", "quota", "frank", "none")
    t.eq(len(pop3_all(d, "frank")), before + 1, "  (frank's own message)")


def test_unknown(d, env):
    # dave exists at RCPT, is over quota, then is deleted: the retry
    # finds no user.
    qid = send(d, ["dave@example.test"], message("for dave"))
    t.ok(d.wait_log(r"%s: to=<dave@example\.test>, .*status=deferred" % qid),
         "dave over quota: deferred")
    r = env.ctl("user", "del", "dave")
    t.eq(r.returncode, 0, "loftctl user del dave")
    # This flush goes through loftctl, which signals the queue manager.
    r = env.ctl("queue", "flush")
    out = r.stdout.decode() if isinstance(r.stdout, bytes) else r.stdout
    t.ok(r.returncode == 0 and "the queue manager was told" in out,
         "loftctl queue flush tells the running queue manager (%r)" % out)
    t.ok(d.wait_log(r"%s: to=<dave@example\.test>, relay=local, .*"
                    r"dsn=5\.1\.1, status=bounced \(unknown user\)" % qid),
         "dave deleted meanwhile: failed at delivery, 5.1.1 unknown user")
    t.ok(wait_gone(d, qid), "  every recipient final: removed")
    # An alias to no user: accepted at RCPT, failed at delivery.
    qid = send(d, ["ghost@example.test"], message("for ghost"))
    t.ok(d.wait_log(r"%s: to=<nosuchuser@test\.example\.org>, "
                    r"orig_to=<ghost@example\.test>, relay=local, .*"
                    r"dsn=5\.1\.1, status=bounced" % qid),
         "alias to an unknown user: 5.1.1 at delivery")


def test_remote(d, env):
    # A trusted client relays: other.test is remote, and its relayhost
    # refuses connections.
    qid = send(d, ["ghost@example.test", "carl@other.test"],
               message("half remote"))
    t.ok(d.wait_log(r"%s: to=<carl@other\.test>, relay=none, .*"
                    r"dsn=4\.4\.1, status=deferred \(connect to "
                    r"127\.0\.0\.1\[127\.0\.0\.1\]:%d: Connection "
                    r"refused\)" % (qid, DEAD_PORT)),
         "remote recipient, relayhost down: deferred, 4.4.1")
    t.ok(d.wait_log(r"%s: to=<nosuchuser@test\.example\.org>, .*"
                    r"status=bounced" % qid), "  the local one failed")
    time.sleep(0.3)
    text = d.queue_envelope(qid) or ""
    t.ok(re.search(r"rcpt <ghost@example\.test>\n(?:.*\n)*?state bounced\n"
                   r"(?:.*\n)*?diag 5\.1\.1 unknown user\n", text),
         "  queued still: ghost failed with its diagnostic, and reported "
         "to the sender at once (bounced)")
    t.ok(re.search(r"rcpt <carl@other\.test>\n(?:.*\n)*?state deferred\n"
                   r"(?:.*\n)*?diag 4\.4\.1 connect to .*refused\n", text),
         "  and carl deferred with its diagnostic")
    t.ok(not d.wait_log(r"%s: removed" % qid, timeout=0.2),
         "  not removed while a recipient is not final")
    # An alias with a remote member: alice gets it, the rest waits.
    qid = send(d, ["far@example.test"], message("far alias"))
    t.ok(d.wait_log(r"%s: to=<someone@other\.test>, orig_to=<far@example"
                    r"\.test>, relay=none, .*status=deferred" % qid),
         "alias with a remote member: that member deferred")
    t.ok(d.wait_log(r"%s: to=<alice@test\.example\.org>, .*status=sent" %
                    qid), "  the local member delivered")
    mark = d.mark()
    d.flush()
    t.ok(d.wait_log(r"%s: to=<someone@other\.test>, .*status=deferred" % qid,
                    since=mark), "  flushed: the remote member tried again")
    time.sleep(0.3)
    t.eq(len(by_subject(pop3_all(d, "alice"), "far alias")), 1,
         "  and alice not given a second copy")


def test_loops(d, env):
    before = len(pop3_all(d, "alice"))
    qid = send(d, ["alice@example.test"],
               message("looping", b"Delivered-To: Alice@Example.test\r\n"))
    t.ok(d.wait_log(r"%s: to=<alice@example\.test>, relay=local, .*"
                    r"dsn=5\.4\.6, status=bounced \(mail forwarding loop" %
                    qid), "Delivered-To: of the recipient: mail forwarding "
         "loop, 5.4.6")
    t.ok(wait_gone(d, qid), "  removed (final)")
    hops = b"".join(b"Received: from hop%d.test by x; "
                    b"Sun, 1 Jan 2026 00:00:00 +0000\r\n" % i
                    for i in range(HOPS - 1))
    qid = send(d, ["alice@example.test"], message("hops at limit", hops))
    t.ok(d.wait_log(r"%s: to=<alice@example\.test>, .*status=sent" % qid),
         "%d Received: lines (hopcount_limit %d): delivered" % (HOPS, HOPS))
    hops += b"Received: from one.more by x; Sun, 1 Jan 2026 00:00:00 +0000\r\n"
    qid = send(d, ["alice@example.test"], message("hops over", hops))
    t.ok(d.wait_log(r"%s: to=<alice@example\.test>, .*dsn=5\.4\.6, "
                    r"status=bounced \(mail forwarding loop: %d Received: "
                    r"headers, hopcount_limit is %d\)" % (qid, HOPS + 1, HOPS)),
         "%d Received: lines: mail forwarding loop" % (HOPS + 1))
    t.ok(wait_gone(d, qid), "  removed")
    got = pop3_all(d, "alice")
    t.eq(len(got), before + 1, "alice got the one within the limit only")


def test_privileges(d, env):
    q = [p for p in d.processes() if "-X qmgr" in p["cmdline"]]
    t.eq(len(q), 1, "one qmgr process")
    if ROOT and q:
        import pwd
        uid = pwd.getpwnam(d.login_user("mail_owner")).pw_uid
        t.eq(q[0]["uid"][:3], (uid, uid, uid), "qmgr runs as mail_owner")
        t.ok(q[0]["uid"][0] != 0, "  not root")


def test_reload(d, env):
    old = d.role_pids("qmgr")
    d.hup()
    deadline = time.monotonic() + 20
    new = []
    while time.monotonic() < deadline and not new:
        new = [p for p in d.role_pids("qmgr") if p not in old]
        time.sleep(0.1)
    t.ok(bool(old) and bool(new), "SIGHUP: a new qmgr process replaces the "
         "old one")
    t.eq(len(d.role_pids("qmgr")), 1, "  and only one runs")
    qid = send(d, ["bob@example.test"], message("after reload"))
    t.ok(wait_gone(d, qid), "  mail is delivered after the reload")


def test_kill(d, env):
    n = 30
    pid = d.role_pids("qmgr")
    s = smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10)
    s.ehlo("client.test")
    qids = []
    for i in range(n):
        s.mail("sender@other.test")
        s.rcpt("bob@example.test")
        code, text = s.data(message("burst %d" % i))
        m = re.search(rb"queued as ([0-9A-Z]{17})", text)
        if m:
            qids.append(m.group(1).decode())
        if i == n // 3 and pid:
            os.kill(pid[0], signal.SIGKILL)
    s.quit()
    t.ok(bool(pid), "kill -9 of the qmgr process during a burst of %d" % n)
    deadline = time.monotonic() + 30
    new = []
    while time.monotonic() < deadline and not new:
        new = [p for p in d.role_pids("qmgr") if p not in pid]
        time.sleep(0.1)
    t.ok(bool(new), "  the master starts a new qmgr process")
    t.eq(len(qids), n, "  every message queued")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and set(qids) & set(d.queue_ids()):
        time.sleep(0.1)
    t.eq(sorted(set(qids) & set(d.queue_ids())), [],
         "  the new one delivers and removes them all")
    got = pop3_all(d, "bob")
    missing = [i for i in range(n)
               if not by_subject(got, "burst %d" % i)]
    t.eq(missing, [], "  nothing lost: bob has every message")
    t.ok(len(got) >= n, "  (%d stored: a duplicate is allowed, a loss is "
         "not)" % len(got))


def main():
    env = setup()
    try:
        d, up = env.start_qmgr("", imap=True, pop3s=False)
    except RuntimeError as e:
        t.ok(False, "loftd starts: %s" % e)
        t.done()
    t.ok(up, "loftd started with a qmgr process")
    for name, fn in (("local", test_local), ("alias", test_alias),
                     ("extension", test_extension), ("mbox", test_mbox),
                     ("quota", test_quota), ("unknown", test_unknown),
                     ("remote", test_remote), ("loops", test_loops),
                     ("privileges", test_privileges),
                     ("reload", test_reload), ("kill", test_kill)):
        t.guard(name, fn, d, env)
    t.eq(env.stop_loftd(), 0, "loftd stops cleanly (status 0)")
    env.cleanup()
    t.done()


main()
