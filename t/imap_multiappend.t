#!/usr/bin/env python3
"""MULTIAPPEND (RFC 3502) against loftd, for Maildir and mbox, with
Python's imaplib for the session and the command written by hand over its
socket (imaplib sends one literal per APPEND): three messages with their
own flags, keyword and date, waiting for the "+" before each synchronizing
literal, then the same with LITERAL+ {n+} in one send, and a literal8
holding a NUL (RFC 3516). Checked: [APPENDUID uidvalidity first:last],
the bytes of each message on disk (the Maildir file, the mbox) and its
flags (Maildir file names, FETCH).

All or nothing: a second literal over APPENDLIMIT is refused with NO
[TOOBIG] before its "+" (the client sends no data); two messages that
only together pass the user's quota give NO [OVERQUOTA]; on Maildir, 27
keywords across two messages give NO [LIMIT]; 1001 messages give NO
[LIMIT] (their {n+} data read and dropped) while 1000 are stored with one
UID range. After each refusal: UIDNEXT and MESSAGES unchanged, no file
(nor any in tmp/), the mbox as long as before, and the session goes on."""
import imaplib
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Tap, need_loftd  # noqa: E402

t = Tap()
need_loftd(t)
TIMEOUT = 60


def read_tagged(M, tag):
    """Lines (with CRLF) up to and including the one tagged tag."""
    lines = []
    while True:
        line = M.readline()
        lines.append(line)
        if not line or line.startswith(tag + b" "):
            return lines


def multiappend(M, tag, mbox, msgs, plus=False):
    """APPEND mbox with msgs, a list of (flags, date, data, literal8):
    flags and date bytes or None. Synchronizing literals wait for "+"; a
    tagged answer instead of it ends the command. Returns (continuations
    seen, lines read up to the tagged one)."""
    conts = 0
    out = b"%s APPEND %s" % (tag, mbox)
    for flags, date, data, lit8 in msgs:
        if flags is not None:
            out += b" (" + flags + b")"
        if date is not None:
            out += b' "' + date + b'"'
        out += b" %s{%d%s}\r\n" % (b"~" if lit8 else b"", len(data),
                                   b"+" if plus else b"")
        M.send(out)
        if not plus:
            line = M.readline()
            if not line.startswith(b"+"):
                return conts, [line] + (read_tagged(M, tag)
                                        if not line.startswith(tag + b" ")
                                        else [])
            conts += 1
        out = data
    M.send(out + b"\r\n")
    return conts, read_tagged(M, tag)


def status(M, folder):
    typ, data = M.status(folder, "(UIDNEXT MESSAGES)")
    return data[0] if typ == "OK" else None


class Disk:
    """What the folder holds on disk."""

    def __init__(self, env, folder):
        self.env = env
        self.folder = folder
        self.dir = os.path.join(env.user_dir("alice"), "." + folder)
        self.mbox = os.path.join(env.user_dir("alice"), folder)

    def files(self):
        """Maildir: {path: bytes}; mbox: {}."""
        if self.env.fmt != "maildir":
            return {}
        return self.env.maildir_files("alice", self.folder)

    def tmp(self):
        if self.env.fmt != "maildir":
            return []
        return os.listdir(os.path.join(self.dir, "tmp"))

    def mbox_bytes(self):
        try:
            with open(self.mbox, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def snapshot(self):
        return (sorted(self.files()), len(self.mbox_bytes()))

    def count(self):
        if self.env.fmt == "maildir":
            return len(self.files())
        return len(re.findall(rb"(?m)^From ", self.mbox_bytes()))


def appenduid(lines, tag):
    m = re.search(rb"^" + re.escape(tag) +
                  rb" OK \[APPENDUID (\d+) (\d+)(?::(\d+))?\]", lines[-1])
    if not m:
        return None
    first = int(m.group(2))
    return int(m.group(1)), first, int(m.group(3) or first)


def unchanged(M, disk, before_status, before_disk, what):
    t.ok(status(M, disk.folder) == before_status,
         "%s: UIDNEXT and MESSAGES unchanged (%r)" % (what,
                                                      status(M, disk.folder)))
    t.ok(disk.snapshot() == before_disk and disk.tmp() == [],
         "%s: nothing on disk, nothing in tmp/" % what)
    typ, _ = M.noop()
    t.eq(typ, "OK", "%s: the session goes on" % what)


MSGS = [
    (b"\\Seen", None, b"Subject: one\r\n\r\nfirst body\r\n", False),
    (b"\\Flagged $Junk", b" 7-Feb-2024 10:00:00 +0100",
     b"Subject: two\r\n\r\nsecond\x00body\r\n", True),
    (None, None, b"Subject: three\r\n\r\nthird body\r\n", False),
]


def run_three(env, M, fmt, plus):
    what = "%s, %s" % (fmt, "LITERAL+" if plus else "synchronizing")
    disk = Disk(env, "Multi")
    n0 = disk.count()
    tag = b"P1" if plus else b"S1"
    conts, lines = multiappend(M, tag, b"Multi", MSGS, plus=plus)
    t.eq(conts, 0 if plus else 3, "%s: a + per synchronizing literal" % what)
    uid = appenduid(lines, tag)
    t.ok(uid is not None and uid[2] == uid[1] + 2,
         "%s: [APPENDUID v first:last] for three (%r)" % (what, lines[-1]))
    t.eq(disk.count(), n0 + 3, "%s: three more messages on disk" % what)
    if fmt == "maildir":
        files = disk.files()
        for i, (_, _, data, _) in enumerate(MSGS):
            names = [n for n in files if ",U=%d" % (uid[1] + i) in n]
            t.ok(len(names) == 1 and files[names[0]] == data,
                 "%s: message %d is its file, byte for byte (%r)" %
                 (what, i + 1, names))
            if i == 0:
                t.ok(names and names[0].endswith(":2,S"),
                     "%s: with \\Seen in its name" % what)
            if i == 1:
                t.ok(names and re.search(r":2,F[a-z]$", names[0]),
                     "%s: with \\Flagged and a keyword letter" % what)
    else:
        box = disk.mbox_bytes()
        pos = [box.find(data) for _, _, data, _ in MSGS]
        t.ok(all(p > 0 for p in pos) and pos == sorted(pos),
             "%s: the three in the mbox, in order, byte for byte" % what)
    M.select("Multi", readonly=True)
    typ, data = M.uid("FETCH", "%d:%d" % (uid[1], uid[2]),
                      "(FLAGS INTERNALDATE)")
    text = b" ".join(x if isinstance(x, bytes) else x[0] for x in data)
    t.ok(b"(\\Seen)" in text and b"(\\Flagged $Junk)" in text and
         b"FLAGS ()" in text and b'"07-Feb-2024 09:00:00 +0000"' in text,
         "%s: flags, keyword and date as given (%r)" % (what, text))
    M.close()
    return uid


def run_refusals(env, M, fmt):
    disk = Disk(env, "Multi")
    st, snap = status(M, "Multi"), disk.snapshot()
    conts, lines = multiappend(M, b"R1", b"Multi", [
        (None, None, b"Subject: ok\r\n\r\nok\r\n", False),
        (b"\\Seen", None, b"x" * (50 * 1024 * 1024 + 1), False)])
    t.ok(conts == 1 and lines[-1].startswith(b"R1 NO [TOOBIG]"),
         "%s: a second literal of APPENDLIMIT + 1: NO [TOOBIG], no + for "
         "it (%r)" % (fmt, lines[-1]))
    unchanged(M, disk, st, snap, "%s: TOOBIG" % fmt)

    if fmt == "maildir":
        kws = b" ".join(b"k%02d" % i for i in range(26))
        conts, lines = multiappend(M, b"R2", b"Multi", [
            (b"$Junk", None, b"Subject: a\r\n\r\na\r\n", False),
            (kws, None, b"Subject: b\r\n\r\nb\r\n", False)], plus=True)
        t.ok(lines[-1].startswith(b"R2 NO [LIMIT]"),
             "maildir: 27 keywords in all: NO [LIMIT] (%r)" % lines[-1])
        unchanged(M, disk, st, snap, "maildir: keyword letters")

    many = [(None, None, b"x", False)] * 1001
    conts, lines = multiappend(M, b"R3", b"Multi", many, plus=True)
    t.ok(lines[-1].startswith(b"R3 NO [LIMIT]"),
         "%s: 1001 messages: NO [LIMIT] (%r)" % (fmt, lines[-1]))
    unchanged(M, disk, st, snap, "%s: 1001 messages" % fmt)
    n0 = disk.count()
    conts, lines = multiappend(M, b"R4", b"Multi", many[:1000], plus=True)
    uid = appenduid(lines, b"R4")
    t.ok(uid is not None and uid[2] - uid[1] + 1 == 1000,
         "%s: 1000 messages: one UID range (%r)" % (fmt, lines[-1]))
    t.eq(disk.count(), n0 + 1000, "%s: all 1000 on disk" % fmt)


def run_quota(env, d, fmt):
    """bob's quota holds either message, not both."""
    M = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=TIMEOUT)
    M.login("bob", "secret")
    body = b"Subject: q\r\n\r\n" + b"q" * 1500 + b"\r\n"
    before = status(M, "INBOX")
    size = os.path.getsize(env.inbox("bob")) if fmt == "mbox" and \
        os.path.exists(env.inbox("bob")) else -1
    conts, lines = multiappend(M, b"Q1", b"INBOX", [
        (None, None, body, False), (None, None, body, False)])
    t.ok(lines[-1].startswith(b"Q1 NO [OVERQUOTA]"),
         "%s: two messages over the quota together: NO [OVERQUOTA] (%r)" %
         (fmt, lines[-1]))
    t.eq(status(M, "INBOX"), before, "%s: bob's INBOX unchanged" % fmt)
    if fmt == "mbox":
        now = os.path.getsize(env.inbox("bob")) if \
            os.path.exists(env.inbox("bob")) else -1
        t.eq(now, size, "mbox: bob's INBOX as long as before")
    else:
        bob = os.path.join(env.user_dir("bob"))
        left = [f for s in ("new", "cur", "tmp")
                for f in os.listdir(os.path.join(bob, s))]
        t.eq(left, [], "maildir: no file in bob's new/, cur/, tmp/")
    typ, data = M.append("INBOX", None, None, body)
    t.eq(typ, "OK", "%s: one of them alone fits" % fmt)
    M.logout()


def main():
    for fmt in ("maildir", "mbox"):
        env = Env(fmt=fmt)
        try:
            env.add_user("alice")
            env.add_user("bob", "--quota", "2500")
            d = env.start_imap()
            M = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=TIMEOUT)
            M.login("alice", "secret")
            typ, _ = M.create("Multi")
            t.eq(typ, "OK", "%s: CREATE Multi" % fmt)
            run_three(env, M, fmt, False)
            run_three(env, M, fmt, True)
            run_refusals(env, M, fmt)
            M.logout()
            run_quota(env, d, fmt)
            t.eq(env.stop_loftd(), 0, "%s: loftd exits with status 0" % fmt)
        finally:
            env.cleanup()
    t.done()


main()
