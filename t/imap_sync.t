#!/usr/bin/env python3
"""Thunderbird's first sync and resync of a folder that another program
filled, against loftd with Python's imaplib: 3,000 messages in a Maildir
(files dropped into cur/ and new/, adopted by name), then `UID FETCH 1:*
(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (...)])`, whose answer
(about 2 MB) must come whole however large, byte for byte what the files
hold (fields in their order, CRLF), including a message whose References
is too long for the index's cache (read from the file instead); then the
resync loop's `UID FETCH 1:* (FLAGS)`."""
import imaplib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Tap, need_loftd  # noqa: E402

t = Tap()
need_loftd(t)
N = 3000
FIELDS = ("From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID",
          "Priority", "X-Priority", "References", "Newsgroups", "In-Reply-To",
          "Content-Type", "Reply-To")
LONG = 1777        # the message with 12 KB of References


def text(i):
    refs = " ".join("<ref%d.%d@example.net>" % (i, k)
                    for k in range(600 if i == LONG else 3))
    return ("Return-Path: <s%d@example.net>\n"
            "From: Sender %d <s%d@example.net>\n"
            "To: alice@example.org\n"
            "Subject: message number %d with a subject long enough\n"
            "Date: Sun, 29 Nov 2026 10:%02d:%02d +0000\n"
            "Message-ID: <m%d@example.net>\n"
            "References: %s\n"
            "X-Unrelated: not asked for\n"
            "Content-Type: text/plain; charset=utf-8\n"
            "\n"
            "body %d\n" % (i, i, i, i, (i // 60) % 60, i % 60, i, refs, i))


def wanted_header(raw):
    """The fields a HEADER.FIELDS (FIELDS) answer holds: those lines of
    the header in their order, CRLF, then the empty line."""
    out = []
    names = {f.lower() for f in FIELDS}
    for line in raw.split("\n\n", 1)[0].split("\n"):
        if line.split(":", 1)[0].lower() in names:
            out.append(line)
    return ("\r\n".join(out) + "\r\n\r\n").encode()


def main():
    env = Env()
    try:
        env.add_user("alice")
        root = env.user_dir("alice")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
        bodies = {}
        for i in range(1, N + 1):
            body = text(i)
            bodies[i] = body
            # 1700000000 + i keeps the names in delivery order.
            name = ("%d.M%dP1Q%d.otherhost" % (1700000000 + i, i, i) +
                    (":2,S" if i % 5 else ""))
            with open(os.path.join(root, "cur" if i % 5 else "new", name),
                      "w") as f:
                f.write(body)
        env.own(root)
        d = env.start_imap()
        M = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=120)
        M.login("alice", "secret")
        typ, data = M.select("INBOX")
        t.eq((typ, data), ("OK", [str(N).encode()]),
             "SELECT: %d messages adopted from another program's files" % N)
        typ, data = M.uid("FETCH", "1:*", "(UID RFC822.SIZE FLAGS "
                          "BODY.PEEK[HEADER.FIELDS (%s)])" % " ".join(FIELDS))
        t.eq(typ, "OK", "first sync: UID FETCH 1:* answered OK")
        got = {}
        for item in data:
            if isinstance(item, tuple):
                meta, lit = item
                uid = int(meta.split(b"UID ")[1].split()[0])
                size = int(meta.split(b"RFC822.SIZE ")[1].split()[0])
                got[uid] = (size, lit)
        t.eq(len(got), N, "first sync: a response for every message")
        bad = [u for u in range(1, N + 1)
               if u not in got or got[u][1] != wanted_header(bodies[u]) or
               got[u][0] != len(bodies[u].replace("\n", "\r\n"))]
        t.eq(bad[:5], [], "first sync: every header subset and size is what "
             "the file holds (the long References one too)")
        typ, data = M.uid("FETCH", "1:*", "(FLAGS)")
        t.eq((typ, len(data)), ("OK", N), "resync: UID FETCH 1:* (FLAGS)")
        seen = sum(1 for x in data if b"\\Seen" in x)
        t.eq(seen, N - N // 5, "resync: flags from the file names")
        t.eq(M.noop()[0], "OK", "the session is alive after 2 MB of answers")
        M.logout()
        t.eq(env.stop_loftd(), 0, "loftd stops cleanly")
        t.ok("output buffer full" not in d.log(),
             "no session was dropped for its output")
    finally:
        env.cleanup()
    t.done()


main()
