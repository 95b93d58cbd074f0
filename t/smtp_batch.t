#!/usr/bin/env python3
"""Batched local delivery (issue 5): 50 messages to 3 users (two Maildir,
one mbox), sent pipelined (RFC 2920: MAIL, RCPT, DATA in one write) over
4 SMTP connections at once, are each stored exactly once with the right
bytes (Return-Path:, Delivered-To:, loftd's Received: line, then the
message with LF line ends), and the queue empties; then a kill -9 of
the mail process while a burst of 60 messages to one user is delivered
in batches loses nothing: after flushes every message is there, at least
once, and duplicates stay within what one batch can hold
(LOFTD_BATCH_MAX), the window doc/design.md documents."""
import os
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
from loft import Env, Tap, need_loftd  # noqa: E402

t = Tap()
need_loftd(t)
BATCH_MAX = 32
CONF = "mydestination = localhost, example.test\n"


def body(tag):
    """A message (CRLF) whose Subject: is tag, with a dot-line."""
    return ("From: Sender <sender@other.test>\r\nTo: x@example.test\r\n"
            "Subject: %s\r\nMessage-ID: <%s@other.test>\r\n\r\n"
            "Hello %s,\r\n.dotted line\r\n%s\r\n" %
            (tag, tag, tag, "z" * (len(tag) * 37 % 900))).encode()


def stuffed(msg):
    out = []
    for ln in msg.split(b"\r\n")[:-1]:
        out.append(b"." + ln if ln.startswith(b".") else ln)
    return b"\r\n".join(out) + b"\r\n.\r\n"


class Client:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.f = self.s.makefile("rb")
        self.reply()
        self.s.sendall(b"EHLO client.test\r\n")
        self.reply()

    def reply(self):
        lines = []
        while True:
            ln = self.f.readline()
            if not ln:
                raise RuntimeError("connection closed")
            lines.append(ln)
            if ln[3:4] != b"-":
                return int(ln[:3]), b"".join(lines)

    def send(self, rcpt, msg):
        """MAIL, RCPT and DATA in one write (pipelined); the queue ID."""
        self.s.sendall(b"MAIL FROM:<sender@other.test>\r\nRCPT TO:<" +
                       rcpt.encode() + b">\r\nDATA\r\n")
        codes = [self.reply()[0] for _ in range(3)]
        if codes != [250, 250, 354]:
            raise RuntimeError("pipelined replies %s" % codes)
        self.s.sendall(stuffed(msg))
        code, text = self.reply()
        m = re.search(rb"queued as ([0-9A-Z]{17})", text)
        if code != 250 or m is None:
            raise RuntimeError("DATA: %d %r" % (code, text))
        return m.group(1).decode()

    def close(self):
        self.s.sendall(b"QUIT\r\n")
        self.s.close()


def send_all(port, jobs, conns):
    """jobs: (rcpt, msg); over conns connections at once. Queue IDs."""
    qids, errors = [], []
    lock = threading.Lock()

    def run(part):
        try:
            c = Client(port)
            for rcpt, msg in part:
                q = c.send(rcpt, msg)
                with lock:
                    qids.append(q)
            c.close()
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(str(e))

    th = [threading.Thread(target=run, args=(jobs[i::conns],))
          for i in range(conns)]
    for x in th:
        x.start()
    for x in th:
        x.join()
    return qids, errors


def stored_messages(env, user):
    """Every stored message of user (bytes as on disk)."""
    if user == "carol":
        with open(os.path.join(env.mbox, "carol")) as _:
            pass
        data = open(os.path.join(env.mbox, "carol"), "rb").read()
        parts = re.split(rb"(?m)^From [^\n]*\n", data)
        return [p.rstrip(b"\n") + b"\n" for p in parts if p.strip()]
    return list(env.maildir_files(user).values())


def wait_empty(d, timeout=60.0, flush=False):
    deadline = time.monotonic() + timeout
    while d.queue_ids() and time.monotonic() < deadline:
        if flush:
            d.flush()
        time.sleep(0.3)
    return not d.queue_ids()


def test_pipelined(d, env):
    users = ["alice", "bob", "carol"]
    jobs = [("%s@example.test" % users[i % 3], body("pipe-%02d" % i))
            for i in range(50)]
    qids, errors = send_all(d.smtp_port, jobs, 4)
    t.eq(errors, [], "4 pipelining connections: no error")
    t.eq(len(set(qids)), 50, "50 messages queued, 50 queue IDs")
    t.ok(wait_empty(d), "the queue empties")
    for u in users:
        got = stored_messages(env, u)
        want = [(r, m) for r, m in jobs if r.startswith(u + "@")]
        t.eq(len(got), len(want), "%s: %d messages stored" %
             (u, len(want)))
        bad = []
        for rcpt, msg in want:
            tag = re.search(rb"Subject: (\S+)", msg).group(1)
            found = [g for g in got if b"\nSubject: " + tag + b"\n" in g]
            lf = msg.replace(b"\r\n", b"\n")
            head = (b"Return-Path: <sender@other.test>\nDelivered-To: " +
                    rcpt.encode() + b"\nReceived: ")
            if len(found) != 1 or not found[0].startswith(head) or \
                    not found[0].endswith(b"\n" + lf):
                bad.append(tag.decode())
        t.eq(bad, [], "%s: each exactly once, with its bytes" % u)


def test_kill(d, env):
    n = 60
    jobs = [("dave@example.test", body("kill-%02d" % i)) for i in range(n)]
    result = {}

    def sender():
        result["qids"], result["errors"] = send_all(d.smtp_port, jobs, 4)

    th = threading.Thread(target=sender)
    th.start()
    killed = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not killed:
        try:
            have = len(os.listdir(os.path.join(env.user_dir("dave"),
                                               "new")))
        except OSError:
            have = 0
        if have >= 3:
            for pid in d.role_pids("mail"):
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
        time.sleep(0.002)
    th.join()
    t.ok(bool(killed), "kill -9 of the mail process while deliveries run "
         "(%d stored then)" % have)
    t.eq(result.get("errors"), [], "every message accepted")
    t.ok(wait_empty(d, 90, flush=True), "after flushes the queue empties")
    got = list(env.maildir_files("dave").values())
    missing = [i for i in range(n)
               if not [g for g in got
                       if b"\nSubject: kill-%02d\n" % i in g]]
    t.eq(missing, [], "nothing lost: dave has every message")
    t.ok(n <= len(got) <= n + BATCH_MAX,
         "%d stored: duplicates only within one batch (at most %d)" %
         (len(got), BATCH_MAX))


def main():
    env = Env("maildir", extra=CONF)
    for u in ("alice", "bob", "carol", "dave"):
        env.add_user(u)
    mbox = os.path.join(env.dir, "mbox")
    os.makedirs(mbox)
    env.own(mbox)
    users = os.path.join(env.dir, "users")
    with open(users) as f:
        lines = f.read().splitlines()
    with open(users, "w") as f:
        for ln in lines:
            if ln.startswith("carol:"):
                ln += " mail=mbox:%s/%%u.d:INBOX=%s/%%u" % (mbox, mbox)
            f.write(ln + "\n")
    env.mbox = mbox
    try:
        d = env.start_loftd("", imap=False, smtp=True, pop3s=False,
                            qmgr=True)
    except RuntimeError as e:
        t.ok(False, "loftd starts: %s" % e)
        t.done()
    deadline = time.monotonic() + 10
    while not d.role_pids("qmgr") and time.monotonic() < deadline:
        time.sleep(0.05)
    t.ok(d.role_pids("qmgr"), "loftd started with a qmgr process")
    t.guard("pipelined", test_pipelined, d, env)
    t.guard("kill", test_kill, d, env)
    t.eq(env.stop_loftd(), 0, "loftd stops cleanly (status 0)")
    env.cleanup()
    t.done()


main()
