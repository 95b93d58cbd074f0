#!/usr/bin/env python3
"""smtpd's commits on the queue's committer threads: several connections
each pipelining a burst of messages (MAIL, RCPT, BDAT LAST, all in one
write) get their replies in order, each 250 with its own queue ID, and
every message is delivered exactly once; a kill -9 of the smtpd process
in the middle of such a burst over several connections loses nothing
that got a 250 (each is delivered exactly once), and what got no 250 is
delivered at most once (the client did not send it again); the master
starts a new smtpd process, which takes mail again."""
import os
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Tap, need_loftd  # noqa: E402

t = Tap()
need_loftd(t)

CONNS = 4
PER_CONN = 25
QUEUED = re.compile(rb"^250 2\.0\.0 Ok: queued as ([0-9A-Z]{17})$")


def message(tag):
    body = b"".join(b"line %04d of the message %s\r\n" % (i, tag.encode())
                    for i in range(40))
    return (b"From: <sender@other.test>\r\nTo: <alice@example.test>\r\n"
            b"Subject: " + tag.encode() + b"\r\nMessage-ID: <" +
            tag.encode() + b"@other.test>\r\n\r\n" + body)


class Reader:
    """Replies from a socket, one (code, line) at a time; (0, b"") at
    the end of the connection."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                return b""
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        """The last line of a (multiline) reply, or b"" at the end."""
        while True:
            line = self.line()
            if len(line) < 4 or line[3:4] != b"-":
                return line


def burst(port, tags, out, started=None):
    """Pipeline one transaction per tag on one connection, all in one
    write; out[tag] = the queue ID of its 250, or None. Returns the error
    or None when every reply came and was right."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    r = Reader(s)
    try:
        if not r.reply().startswith(b"220 "):
            return "no greeting"
        s.sendall(b"EHLO client.test\r\n")
        if not r.reply().startswith(b"250 "):
            return "EHLO refused"
        data = b""
        for tag in tags:
            m = message(tag)
            data += (b"MAIL FROM:<sender@other.test>\r\n"
                     b"RCPT TO:<alice@example.test>\r\n"
                     b"BDAT %d LAST\r\n" % len(m)) + m
        data += b"QUIT\r\n"
        s.sendall(data)
        if started is not None:
            started.set()
        for tag in tags:
            out[tag] = None
            mail, rcpt, last = r.reply(), r.reply(), r.reply()
            if not mail.startswith(b"250 ") or not rcpt.startswith(b"250 "):
                return "%s: MAIL %r RCPT %r" % (tag, mail, rcpt)
            q = QUEUED.match(last)
            if q is None:
                return "%s: BDAT LAST %r" % (tag, last)
            out[tag] = q.group(1).decode()
        if not r.reply().startswith(b"221 "):
            return "QUIT not answered"
        return None
    finally:
        s.close()


def stored(env, user="alice"):
    """Subject -> how many times it is in user's Maildir."""
    counts = {}
    for data in env.maildir_files(user).values():
        m = re.search(rb"\nSubject: ([^\r\n]*)", data[:4096])
        if m:
            k = m.group(1).decode()
            counts[k] = counts.get(k, 0) + 1
    return counts


def wait_stored(env, want, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = stored(env)
        if all(got.get(k, 0) >= 1 for k in want):
            return got
        time.sleep(0.1)
    return stored(env)


def run_bursts(d, prefix, started=None):
    results = [{} for _ in range(CONNS)]
    errors = [None] * CONNS
    tags = [["%s-%d-%02d" % (prefix, c, i) for i in range(PER_CONN)]
            for c in range(CONNS)]

    def worker(c):
        try:
            errors[c] = burst(d.smtp_port, tags[c], results[c], started)
        except OSError as e:
            errors[c] = str(e)

    threads = [threading.Thread(target=worker, args=(c,))
               for c in range(CONNS)]
    for th in threads:
        th.start()
    return threads, tags, results, errors


def test_pipelined(d, env):
    threads, tags, results, errors = run_bursts(d, "pipe")
    for th in threads:
        th.join()
    t.eq(errors, [None] * CONNS, "%d connections pipelining %d messages "
         "each: every reply in order, a 250 for each" % (CONNS, PER_CONN))
    ids = [q for r in results for q in r.values()]
    t.eq(len(ids), CONNS * PER_CONN, "  a queue ID for each message")
    t.eq(len(set(ids)), len(ids), "  all of them different")
    want = [k for tg in tags for k in tg]
    got = wait_stored(env, want)
    t.eq(sorted(k for k in want if got.get(k) != 1), [],
         "  each one delivered exactly once")
    t.ok(d.wait_queue_empty(30), "  and the queue is empty again")


def test_kill(d, env):
    pids = d.role_pids("smtpd")
    t.eq(len(pids), 1, "one smtpd process before the kill")
    started = threading.Event()
    threads, tags, results, errors = run_bursts(d, "kill", started)
    started.wait(10)
    # Kill it once some messages have their 250 and others do not.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        acked = sum(1 for r in results for q in r.values() if q)
        if acked >= CONNS * 2:
            break
        time.sleep(0.002)
    if pids:
        os.kill(pids[0], signal.SIGKILL)
    for th in threads:
        th.join(30)
    acked = [k for r in results for k, q in r.items() if q]
    unacked = [k for tg in tags for k in tg if k not in acked]
    t.ok(len(acked) >= CONNS * 2, "kill -9 of smtpd during %d pipelined "
         "bursts: %d messages had a 250 before" % (CONNS, len(acked)))
    t.ok(len(unacked) > 0, "  and %d had none (the kill came in the "
         "middle)" % len(unacked))
    got = wait_stored(env, acked)
    t.eq(sorted(k for k in acked if got.get(k) != 1), [],
         "  every message that got a 250 is delivered exactly once")
    t.eq(sorted(k for k in unacked if got.get(k, 0) > 1), [],
         "  none without a 250 is delivered twice")
    deadline = time.monotonic() + 30
    new = []
    while time.monotonic() < deadline and not new:
        new = [p for p in d.role_pids("smtpd") if p not in pids]
        time.sleep(0.1)
    t.ok(bool(new), "  the master starts a new smtpd process")
    out = {}
    err = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            err = burst(d.smtp_port, ["after-kill"], out)
        except OSError as e:
            err = str(e)
        if err is None:
            break
        time.sleep(0.2)
    t.eq(err, None, "  which takes mail again")
    got = wait_stored(env, ["after-kill"])
    t.eq(got.get("after-kill"), 1, "  and it is delivered")


def main():
    env = Env("maildir", extra="mydestination = localhost, example.test\n")
    env.add_user("alice")
    try:
        d = env.start_loftd("", smtp=True, pop3s=False, qmgr=True)
    except RuntimeError as e:
        t.ok(False, "loftd starts: %s" % e)
        t.done()
    t.ok(True, "loftd started")
    for name, fn in (("pipelined", test_pipelined), ("kill", test_kill)):
        t.guard(name, fn, d, env)
    t.eq(env.stop_loftd(), 0, "loftd stops cleanly (status 0)")
    env.cleanup()
    t.done()


main()
