#!/usr/bin/env python3
"""Mail that arrives over SMTP goes through the recipient's ~/.forward and
procmail-style rules too: loftd's mail process hands it to loft-deliver
when the user has either (and stores it itself otherwise). A rule files
by Subject; the rest reaches the INBOX; a .forward pipe gets the message;
a pipe that fails for now leaves the recipient deferred in the queue."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import (Env, Tap, need_loftd, pop3_all, smtp_send,  # noqa: E402
                  wait_for)

t = Tap()
need_loftd(t)

env = Env("maildir", extra="mydestination = localhost, example.test\n"
          "disable_plaintext_auth = no\n")
homes = {}
for u in ("alice", "bob", "carol"):
    homes[u] = os.path.join(env.dir, "home-" + u)
    os.makedirs(homes[u])
    r = env.ctl("user", "add", u, "--home", homes[u], input=b"secret\n")
    if r.returncode != 0:
        t.diag(r.stderr)


def put(user, name, text):
    path = os.path.join(homes[user], name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    env.own(homes[user])
    return path


put("alice", ".procmailrc", ":0\n* ^Subject: ruled\nFiled/\n")
put("bob", ".forward", '"|cat > piped"\n')
put("carol", ".forward", "|exit 75\n")


def msg(subject):
    return ("From: Sender <sender@other.test>\r\nTo: x@example.test\r\n"
            "Subject: %s\r\nMessage-ID: <%s@other.test>\r\n\r\nHello.\r\n" %
            (subject, subject.replace(" ", "."))).encode()


def files(d):
    try:
        return sorted(os.listdir(d))
    except FileNotFoundError:
        return []


d = env.start_loftd("", smtp=True, qmgr=True, pop3s=False)
try:
    smtp_send(d, ["alice@example.test"], msg("ruled"), "sender@other.test")
    smtp_send(d, ["alice@example.test"], msg("plain"), "sender@other.test")
    filed = os.path.join(homes["alice"], "Filed", "new")
    t.ok(wait_for(lambda: len(files(filed)) == 1),
         "SMTP to alice: her rule filed 'ruled' into ~/Filed/")
    if files(filed):
        with open(os.path.join(filed, files(filed)[0]), "rb") as f:
            data = f.read()
        t.ok(data.startswith(b"Return-Path: <sender@other.test>\n"
                             b"Delivered-To: alice@") and
             b"Subject: ruled" in data and b"Received: from " in data,
             "  with Return-Path, Delivered-To and loft's Received: line")
    got = wait_for(lambda: [m for m in pop3_all(d, "alice")
                            if b"Subject: plain" in m])
    t.eq(len(got or []), 1, "  'plain' fell through to the INBOX")
    t.ok(not any(b"Subject: ruled" in m for m in pop3_all(d, "alice")),
         "  and 'ruled' is not in the INBOX")

    smtp_send(d, ["bob@example.test"], msg("to a pipe"), "sender@other.test")
    piped = os.path.join(homes["bob"], "piped")
    t.ok(wait_for(lambda: os.path.exists(piped) and
                  b"Subject: to a pipe" in open(piped, "rb").read()),
         "SMTP to bob: his .forward pipe got the message")
    t.ok(d.wait_log(r"to=<bob@example\.test>, relay=local, .*"
                    r"status=sent"), "  logged as sent")
    t.eq(pop3_all(d, "bob"), [], "  nothing in bob's INBOX")

    qid = smtp_send(d, ["carol@example.test"], msg("pipe says later"),
                    "sender@other.test")
    t.ok(d.wait_log(r"%s: to=<carol@example\.test>, relay=local, .*"
                    r"status=deferred" % qid),
         "SMTP to carol: her pipe exits 75, the recipient is deferred")
    t.ok(qid in d.queue_ids(), "  and the message stays queued")
finally:
    t.eq(env.stop_loftd(), 0, "loftd stops cleanly")
env.cleanup()
t.done()
