#!/usr/bin/env python3
"""CATENATE (RFC 4469) against loftd: APPEND of TEXT literals and IMAP URL
parts (relative and absolute, whole messages, sections, PARTIAL), the
stored bytes compared with what FETCH gives of the sources, MULTIAPPEND
with CATENATE (all or nothing), BADURL for another user's, unknown or
escaping mailboxes, a stale UIDVALIDITY, an unknown UID or section, and
TOOBIG at APPENDLIMIT exactly and one byte past it."""
import imaplib
import os
import re
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Tap, need_loftd  # noqa: E402

t = Tap()
need_loftd(t)
TIMEOUT = 60
APPENDLIMIT = 50 * 1024 * 1024

MULTI = ("From: s@example.net\nTo: alice@example.org\nSubject: parts\n"
         "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
         "--b\nContent-Type: text/plain\n\nfirst part\nline two\n"
         "--b\nContent-Type: text/plain\n\nsecond part\n--b--\n").encode()


class Raw:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.f = self.s.makefile("rb")
        self.greeting = self.f.readline().decode()

    def cmd(self, tag, *parts):
        """parts: str pieces and bytes literals (sent as {n+})."""
        out = b""
        for p in parts:
            if isinstance(p, bytes):
                out += b"{%d+}\r\n" % len(p) + p
            else:
                out += p.encode()
        self.s.sendall(tag.encode() + b" " + out + b"\r\n")
        lines = []
        while True:
            ln = self.f.readline()
            if not ln:
                raise EOFError
            lines.append(ln.decode("utf-8", "replace").rstrip("\r\n"))
            if lines[-1].startswith(tag + " "):
                return lines

    def close(self):
        self.s.close()


def body(M, folder, uid):
    M.select(folder, readonly=True)
    typ, data = M.uid("FETCH", str(uid), "(BODY.PEEK[])")
    return data[0][1]


def section(M, uid, sec):
    M.select("INBOX", readonly=True)
    typ, data = M.uid("FETCH", str(uid), "(BODY.PEEK[%s])" % sec)
    return data[0][1]


def count(M, folder):
    typ, data = M.status(folder, "(MESSAGES)")
    return int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))


def appenduid(line):
    m = re.search(r"\[APPENDUID (\d+) ([\d:,]+)\]", line)
    return m.group(2) if m else None


def run(env, d):
    A = Raw(d.imap_port)
    t.ok("CATENATE" in A.greeting, "CATENATE advertised")
    A.cmd("a1", "LOGIN alice secret")
    B = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=TIMEOUT)
    B.login("alice", "secret")
    typ, data = B.select("INBOX")
    typ, data = B.response("UIDVALIDITY")
    uv = int(data[0])
    whole = section(B, 1, "")
    part1 = section(B, 1, "1")
    hdr = section(B, 1, "HEADER")
    t.eq(part1, b"first part\r\nline two", "source part 1 as FETCH gives it")

    # TEXT + URL section + TEXT.
    head = b"From: me@example.org\r\nSubject: fwd\r\n\r\n"
    r = A.cmd("c1", "APPEND Drafts CATENATE (TEXT ", head,
              ' URL "/INBOX;UIDVALIDITY=%d/;UID=1/;SECTION=1" TEXT ' % uv,
              b"\r\n-- \r\nme\r\n", ")")
    t.ok(r[-1].startswith("c1 OK"), "TEXT URL TEXT: OK (%s)" % r[-1])
    u = appenduid(r[-1])
    t.eq(body(B, "Drafts", u), head + part1 + b"\r\n-- \r\nme\r\n",
         "stored bytes: the text, the section, the text")

    # A whole message by URL alone, absolute form, any case.
    r = A.cmd("c2", 'APPEND Drafts (\\Seen) CATENATE (URL '
              '"imap://alice@localhost/inbox/;uid=1")')
    t.ok(r[-1].startswith("c2 OK"), "URL alone (absolute): OK (%s)" % r[-1])
    t.eq(body(B, "Drafts", appenduid(r[-1])), whole,
         "stored bytes: the whole source message")
    r = A.cmd("c3", 'APPEND Drafts CATENATE (URL "/INBOX/;UID=1/;SECTION=HEADER"'
              ' URL "/INBOX/;UID=1/;SECTION=2" URL '
              '"/INBOX/;UID=1/;SECTION=1/;PARTIAL=6.4")')
    t.ok(r[-1].startswith("c3 OK"), "HEADER, part 2, a PARTIAL: OK")
    t.eq(body(B, "Drafts", appenduid(r[-1])),
         hdr + section(B, 1, "2") + b"part",
         "stored bytes: header, part 2, \"part\" (PARTIAL=6.4)")

    # MULTIAPPEND with CATENATE: three messages, one command.
    r = A.cmd("c4", 'APPEND Drafts CATENATE (URL "/INBOX/;UID=1") ',
              "CATENATE (TEXT ", b"Subject: t\r\n\r\nbody\r\n", ") ",
              b"Subject: plain\r\n\r\nplain\r\n")
    t.ok(r[-1].startswith("c4 OK") and appenduid(r[-1]) is not None and
         len(re.findall(r"\d+", appenduid(r[-1]))) == 2,
         "MULTIAPPEND: three messages, APPENDUID a range (%s)" % r[-1])
    n = count(B, "Drafts")
    t.eq(n, 6, "six in Drafts")

    # BADURL, each leaving Drafts as it was.
    for tag, url, what in (
            ("e1", "/INBOX;UIDVALIDITY=%d/;UID=1" % (uv + 1),
             "a stale UIDVALIDITY"),
            ("e2", "/NoSuch/;UID=1", "an unknown mailbox"),
            ("e3", "/INBOX/;UID=99", "an unknown UID"),
            ("e4", "/INBOX/;UID=1/;SECTION=9", "an unknown section"),
            ("e5", "/INBOX/;UID=1/;SECTION=BOGUS", "not a section"),
            ("e6", "imap://bob@localhost/INBOX/;UID=1", "another user's"),
            ("e7", "/../bob/INBOX/;UID=1", "a mailbox with .."),
            ("e8", "/%2E%2E/bob/;UID=1", "an escaped .."),
            ("e9", "/IN%00BOX/;UID=1", "a NUL"),
            ("e10", "/INBOX/;UID=01", "a number with a leading zero"),
            ("e11", "/INBOX/;UID=4294967296", "an overlong number"),
            ("e12", "INBOX/;UID=1", "a relative path")):
        r = A.cmd(tag, 'APPEND Drafts CATENATE (TEXT ', b"X: y\r\n\r\n",
                  ' URL "%s")' % url)
        t.ok(r[-1].startswith('%s NO [BADURL "%s"]' % (tag, url)),
             "%s: NO [BADURL] (%s)" % (what, r[-1]))
    # One bad message of a MULTIAPPEND: none stored.
    r = A.cmd("e20", 'APPEND Drafts CATENATE (URL "/INBOX/;UID=1") '
              'CATENATE (URL "/INBOX/;UID=77")')
    t.ok(r[-1].startswith('e20 NO [BADURL'), "MULTIAPPEND with a bad URL: NO")
    t.eq(count(B, "Drafts"), n, "nothing of it stored")
    for tag, args, what in (("e21", "CATENATE ()", "an empty list"),
                            ("e22", 'CATENATE (URL)', "a URL without text"),
                            ("e23", 'CATENATE (FOO "x")', "an unknown part"),
                            ("e24", "CATENATE", "no list")):
        r = A.cmd(tag, "APPEND Drafts " + args)
        t.ok(r[-1].startswith(tag + " BAD"), "%s: BAD (%s)" % (what, r[-1]))

    # APPENDLIMIT: N bytes taken, N + 1 refused (UID 2 is 1 MiB).
    mib = len(section(B, 2, ""))
    k = APPENDLIMIT // mib
    rest = APPENDLIMIT - k * mib
    urls = ' '.join(['URL "/INBOX/;UID=2"'] * k)
    r = A.cmd("L1", 'APPEND Drafts CATENATE (%s URL '
              '"/INBOX/;UID=2/;PARTIAL=0.%d")' % (urls, rest))
    t.ok(r[-1].startswith("L1 OK"), "exactly APPENDLIMIT bytes: OK (%s)" % r[-1])
    typ, data = B.select("Drafts", readonly=True)
    typ, data = B.uid("FETCH", appenduid(r[-1]), "(RFC822.SIZE)")
    t.ok(b"RFC822.SIZE %d" % APPENDLIMIT in data[0],
         "its size is APPENDLIMIT (%r)" % data[0][:60])
    r = A.cmd("L2", 'APPEND Drafts CATENATE (%s URL '
              '"/INBOX/;UID=2/;PARTIAL=0.%d")' % (urls, rest + 1))
    t.ok(r[-1].startswith("L2 NO [TOOBIG]"), "one byte more: NO [TOOBIG] (%s)"
         % r[-1])
    t.eq(count(B, "Drafts"), n + 1, "nothing stored of it")
    B.logout()
    A.close()


def main():
    # No mailbox size limit: a message of APPENDLIMIT bytes is stored.
    env = Env(extra="mailbox_size_limit = 0\n")
    try:
        env.add_user("alice")
        env.add_user("bob")
        rc, err = env.deliver("alice", MULTI)
        t.eq(rc, 0, "delivered a multipart (%s)" % err.strip())
        big = (b"Subject: big\n\n" +
               b"".join(b"%07d" % i + b"x" * 56 + b"\n" for i in range(16384)))
        rc, err = env.deliver("alice", big)
        t.eq(rc, 0, "delivered 1 MiB (%s)" % err.strip())
        rc, err = env.deliver("bob", MULTI)
        t.eq(rc, 0, "delivered to bob")
        d = env.start_imap()
        run(env, d)
        t.eq(env.stop_loftd(), 0, "loftd stops cleanly")
    finally:
        env.cleanup()
    t.done()


main()
