#!/usr/bin/env python3
"""The first SELECT of a Maildir another program filled reads no file; the
commands that need what is inside read it first, and answer byte for byte
what they answer on the same files fully synced before (loftctl index
list parses every file): FETCH ENVELOPE, BODYSTRUCTURE, RFC822.SIZE,
INTERNALDATE (the files' times are not those of their names),
BODY.PEEK[HEADER.FIELDS (SUBJECT)], Thunderbird's first sync, SEARCH
SUBJECT and BODY, SORT (SUBJECT), THREAD REFERENCES, each the first
command after SELECT of a fresh copy (one user each), against loftd with
Python's imaplib (answers read raw, so compared as bytes).

That SELECT read nothing is shown by a file rewritten after it: the
first FETCH of it shows the new header. Completion changes no MODSEQ:
a CONDSTORE session sees no untagged FETCH after another session read
the folder, and HIGHESTMODSEQ stays. FETCH SAVEDATE and PREVIEW answer."""
import imaplib
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
from loft import Env, Tap, need_loftd  # noqa: E402

t = Tap()
need_loftd(t)
N = 120
NAMETIME = 1600000000       # the times in the names
MTIME = 1700000000          # the files' times


def text(i):
    """Message i: a thread every 10, a multipart every 7, an encoded
    subject every 5, the word quokkaberry in every 11th body."""
    subj = ("=?utf-8?q?Caf=C3=A9_number_%d?=" % i if i % 5 == 0 else
            "message %d about %s" % (i, ["lunch", "tea", "work"][i % 3]))
    if i % 10 != 1 and i > 10:
        first = i - i % 10 + 1
        refs = ("In-Reply-To: <m%d@example.net>\n"
                "References: <m%d@example.net>\n" % (first, first))
        subj = "Re: " + subj
    else:
        refs = ""
    word = "quokkaberry " if i % 11 == 0 else ""
    head = ("From: Sender %d <s%d@example.net>\nTo: alice@example.org\n"
            "Subject: %s\nDate: Sun, 1 Mar 2020 10:%02d:%02d +0000\n"
            "Message-ID: <m%d@example.net>\n%s" %
            (i, i, subj, (i // 60) % 60, i % 60, i, refs))
    if i % 7:
        return head + "\nbody %d %sof the message\n" % (i, word)
    return (head + "MIME-Version: 1.0\nContent-Type: multipart/mixed; "
            "boundary=b%d\n\n--b%d\nContent-Type: text/plain\n"
            "Content-Transfer-Encoding: quoted-printable\n\nsee the =\n"
            "attachment %s=3D\n--b%d\nContent-Type: application/pdf\n"
            "Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--b%d--\n"
            % (i, i, word, i, i))


def fill(env, user):
    """user's INBOX as procmail and mutt would leave it."""
    root = env.user_dir(user)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for i in range(1, N + 1):
        body = text(i)
        size = ",S=%d" % len(body) if i % 3 else ""
        name = "%d.M%dP1Q%d.otherhost%s" % (NAMETIME + i * 3600, i, i, size)
        sub = "new" if i % 4 == 0 else "cur"
        if sub == "cur":
            name += ":2," + ("S" if i % 2 else "")
        path = os.path.join(root, sub, name)
        with open(path, "w") as f:
            f.write(body)
        os.utime(path, (MTIME + i, MTIME + i))
    env.own(root)


def raw(M, tag, cmd):
    """Send tag cmd and read the answer up to the tagged line, literals
    included, as bytes."""
    M.send(("%s %s\r\n" % (tag, cmd)).encode())
    out = b""
    while True:
        line = M.readline()
        if not line:
            raise RuntimeError("connection closed")
        out += line
        m = re.search(rb"\{(\d+)\}\r\n$", line)
        if m:
            out += M.read(int(m.group(1)))
            continue
        if line.startswith(tag.encode() + b" "):
            return out


def session(d, user):
    M = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=60)
    M.login(user, "secret")
    return M


CASES = [
    ("FETCH 1:* (ENVELOPE)", "FETCH ENVELOPE", b"=?utf-8?q?Caf=C3=A9"),
    ("FETCH 1:* (BODYSTRUCTURE)", "FETCH BODYSTRUCTURE", b'"mixed"'),
    ("FETCH 1:* (RFC822.SIZE)", "FETCH RFC822.SIZE", b"RFC822.SIZE"),
    ("FETCH 1:* (INTERNALDATE)", "FETCH INTERNALDATE",
     b"14-Nov-2023 22:13:21 +0000"),
    ("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
     "FETCH BODY.PEEK[HEADER.FIELDS (SUBJECT)]", b"Subject: message 1 "),
    ("UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From "
     "To Cc Subject Date Message-ID References In-Reply-To Content-Type)])",
     "Thunderbird's first sync", b"In-Reply-To: <m11@example.net>"),
    ("SEARCH SUBJECT lunch", "SEARCH SUBJECT", b"* SEARCH 3 6 9"),
    ("SEARCH BODY quokkaberry", "SEARCH BODY", b"* SEARCH 11 22 33"),
    ("SORT (SUBJECT) UTF-8 ALL", "SORT (SUBJECT)", b"* SORT "),
    ("THREAD REFERENCES UTF-8 ALL", "THREAD REFERENCES", b"(11 (12)(13)"),
]


def main():
    env = Env()
    try:
        users = ["full"] + ["u%d" % k for k in range(len(CASES))] + \
            ["probe", "cs"]
        for u in users:
            env.add_user(u)
            fill(env, u)
        r = env.ctl("index", "list", "full")
        t.eq(r.returncode, 0, "loftctl index list: the copy fully synced")
        d = env.start_imap()
        F = session(d, "full")
        t.eq(F.select("INBOX"), ("OK", [str(N).encode()]),
             "SELECT of the synced copy")
        for k, (cmd, name, expect) in enumerate(CASES):
            M = session(d, "u%d" % k)
            typ, data = M.select("INBOX")
            got = raw(M, "Z%d" % k, cmd)
            want = raw(F, "Z%d" % k, cmd)
            t.ok(typ == "OK" and data == [str(N).encode()] and
                 got.endswith(b"OK " + cmd.split()[0].encode() +
                              (b" FETCH" if cmd.startswith("UID") else b"") +
                              b" completed\r\n"),
                 "%s right after SELECT: OK" % name)
            t.ok(got == want, "%s: byte for byte as on the synced copy (%d "
                 "bytes)" % (name, len(got)))
            if got != want:
                for a, b in zip(got.split(b"\r\n"), want.split(b"\r\n")):
                    if a != b:
                        t.diag("got  %r\nwant %r" % (a[:300], b[:300]))
                        break
            t.ok(expect in got, "%s: holds %r" % (name, expect))
            M.logout()

        # SELECT read nothing: a file rewritten after it shows its new
        # header at the first FETCH.
        P = session(d, "probe")
        P.select("INBOX")
        root = env.user_dir("probe")
        name = [f for f in os.listdir(os.path.join(root, "cur"))
                if f.startswith("%d." % (NAMETIME + 3600))][0]
        path = os.path.join(root, "cur", name)
        with open(path, "w") as f:
            f.write(text(1).replace("message 1 about", "rewritten 1 about"))
        os.utime(path, (MTIME + 1, MTIME + 1))
        got = raw(P, "P1", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        t.ok(b"Subject: rewritten 1 about" in got,
             "SELECT read no file: the first FETCH finds what is there now")
        P.logout()

        # CONDSTORE: completion in another session moves no MODSEQ.
        A = session(d, "cs")
        raw(A, "C0", "ENABLE CONDSTORE")
        sel = raw(A, "C1", "SELECT INBOX")
        before = raw(A, "C2", "FETCH 1:* (UID MODSEQ)")
        B = session(d, "cs")
        B.select("INBOX")
        got = raw(B, "D1", "FETCH 1:* (ENVELOPE)")
        t.ok(got.endswith(b"D1 OK FETCH completed\r\n"),
             "another session reads the folder")
        t.eq(raw(A, "C3", "NOOP"), b"C3 OK NOOP completed\r\n",
             "the CONDSTORE session is sent no FETCH for it")
        t.eq(raw(A, "C2", "FETCH 1:* (UID MODSEQ)"), before,
             "its MODSEQs are as before")
        hms = re.search(rb"\[HIGHESTMODSEQ (\d+)\]", sel).group(1)
        st = raw(A, "C4", "STATUS INBOX (HIGHESTMODSEQ)")
        t.ok(b"HIGHESTMODSEQ " + hms + b")" in st,
             "HIGHESTMODSEQ stays %s" % hms.decode())
        got = raw(A, "C5", "FETCH 7 (SAVEDATE PREVIEW)")
        t.ok(re.search(rb'^\* 7 FETCH \(SAVEDATE "\d\d?-\w{3}-\d{4} '
                       rb'\d\d:\d\d:\d\d \+0000" PREVIEW "see the '
                       rb'attachment ="\)\r\n', got, re.M) is not None,
             "FETCH SAVEDATE PREVIEW")
        t.ok(b"C5 OK" in got, "FETCH SAVEDATE PREVIEW: OK")
        A.logout()
        B.logout()
        F.logout()
        t.eq(env.stop_loftd(), 0, "loftd stops cleanly")
    finally:
        env.cleanup()
    t.done()


main()
