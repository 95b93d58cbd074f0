#!/usr/bin/env python3
"""FETCH BINARY (RFC 3516) against loftd with Python's imaplib, for
Maildir and mbox, on messages delivered by loft-deliver: BINARY[2] of a
base64 attachment (random bytes, NULs among them) equals the original
bytes and comes as a literal8 ("~{n}"); BINARY.SIZE[2] says its length;
a quoted-printable part comes decoded with CRLF lines as a plain literal;
partial fetches count decoded bytes; a part in x-uuencode fails the FETCH
with NO [UNKNOWN-CTE]; BINARY sets \\Seen, BINARY.PEEK does not. APPEND of
a literal8 holding a NUL (written by hand: imaplib sends no literal8) is
stored byte for byte (checked on disk) and given back by BINARY[].

Streaming: a 50 MB base64 part (37 MB decoded) is fetched whole and
compared, and the mail process serving the session must not have grown
by anything like the part meanwhile (its peak RSS, /proc VmHWM, against
its RSS before); partials 30 MB into it (BINARY and BODY) are answered
without waiting for an output drain that would never come."""
import hashlib
import imaplib
import os
import random
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Tap, need_loftd  # noqa: E402

t = Tap()
need_loftd(t)
TIMEOUT = 120


def wrap(b64):
    return b"\n".join(b64[i:i + 76] for i in range(0, len(b64), 76)) + b"\n"


def b64(data):
    import base64
    return wrap(base64.b64encode(data))


def message1(attach):
    return (b"From: a@example.org\nTo: alice@example.org\n"
            b"Subject: binary\nMIME-Version: 1.0\n"
            b"Content-Type: multipart/mixed; boundary=\"XYZ\"\n\n"
            b"--XYZ\nContent-Type: text/plain; charset=utf-8\n"
            b"Content-Transfer-Encoding: quoted-printable\n\n"
            b"Caf=C3=A9 =3d ok=20\nsoft=\n break  \n--XYZ\n"
            b"Content-Type: application/octet-stream\n"
            b"Content-Transfer-Encoding: base64\n\n" + b64(attach) +
            b"--XYZ\nContent-Type: text/plain\n"
            b"Content-Transfer-Encoding: x-uuencode\n\nbegin 644 x\n"
            b"--XYZ--\n")


QP_TEXT = b"Caf\xc3\xa9 = ok \r\nsoft break"


def literal(data, item):
    """The literal of item in an imaplib FETCH answer, and its header."""
    for x in data:
        if isinstance(x, tuple) and item.encode() in x[0]:
            return x[0], x[1]
    return None, None


def read_tagged(M, tag):
    lines = []
    while True:
        line = M.readline()
        lines.append(line)
        if not line or line.startswith(tag + b" "):
            return lines


def vm(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def run(env, d, fmt, attach):
    M = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=TIMEOUT)
    M.login("alice", "secret")
    M.select("INBOX")

    typ, data = M.fetch("1", "(BINARY.PEEK[2] BINARY.SIZE[2])")
    head, body = literal(data, "BINARY[2]")
    t.ok(typ == "OK" and body == attach,
         "%s: BINARY[2] of a base64 attachment is its bytes" % fmt)
    t.ok(head is not None and b"BINARY[2] ~{%d}" % len(attach) in head,
         "%s: as a literal8, it holds NULs (%r)" % (fmt, head))
    text = b" ".join(x[0] if isinstance(x, tuple) else x for x in data)
    t.ok(b"BINARY.SIZE[2] %d" % len(attach) in text,
         "%s: BINARY.SIZE[2] agrees (%r)" % (fmt, text[-60:]))

    typ, data = M.fetch("1", "(BINARY.PEEK[1])")
    head, body = literal(data, "BINARY[1]")
    t.ok(typ == "OK" and body == QP_TEXT and b"~{" not in head,
         "%s: quoted-printable decoded, CRLF lines, a plain literal (%r)" %
         (fmt, body))

    typ, data = M.fetch("1", "(BINARY.PEEK[2]<1000.2000>)")
    head, body = literal(data, "BINARY[2]<1000>")
    t.ok(typ == "OK" and body == attach[1000:3000],
         "%s: a partial counts decoded bytes" % fmt)

    typ, data = M.fetch("1", "(BINARY.PEEK[3])")
    t.ok(typ == "NO" and b"UNKNOWN-CTE" in data[0],
         "%s: x-uuencode: NO [UNKNOWN-CTE] (%r)" % (fmt, data))

    typ, data = M.fetch("1", "(FLAGS)")
    t.ok(b"\\Seen" not in data[0], "%s: PEEK did not set \\Seen" % fmt)
    typ, data = M.fetch("1", "(BINARY[1])")
    text = b" ".join(x[0] if isinstance(x, tuple) else x for x in data)
    t.ok(typ == "OK" and b"\\Seen" in text,
         "%s: BINARY set \\Seen (%r)" % (fmt, text))

    # APPEND ~{n} with a NUL, by hand.
    msg = b"Subject: nul\r\n\r\nbefore\x00after\r\n"
    M.send(b"A1 APPEND INBOX ~{%d}\r\n" % len(msg))
    cont = M.readline()
    M.send(msg + b"\r\n")
    lines = read_tagged(M, b"A1")
    m = re.search(rb"A1 OK \[APPENDUID \d+ (\d+)\]", lines[-1])
    t.ok(cont.startswith(b"+") and m is not None,
         "%s: APPEND of a literal8 with a NUL (%r)" % (fmt, lines[-1]))
    if fmt == "maildir":
        files = env.maildir_files("alice")
        stored = [v for k, v in files.items() if ",U=%s" % m.group(1).decode()
                  in k]
    else:
        with open(env.inbox("alice"), "rb") as f:
            box = f.read()
        stored = [msg] if msg in box else []
    t.ok(stored == [msg], "%s: stored byte for byte, NUL and all" % fmt)
    typ, data = M.uid("FETCH", m.group(1).decode(), "(BINARY.PEEK[])")
    head, body = literal(data, "BINARY[]")
    t.ok(body == msg and b"~{" in head,
         "%s: BINARY[] gives it back, a literal8" % fmt)
    M.logout()


def run_large(env, d, fmt):
    rnd = random.Random(7)
    data = bytes(rnd.getrandbits(8) for _ in range(1 << 20)) * 37
    msg = (b"Subject: large\nMIME-Version: 1.0\n"
           b"Content-Type: multipart/mixed; boundary=\"B\"\n\n--B\n"
           b"Content-Type: application/octet-stream\n"
           b"Content-Transfer-Encoding: base64\n\n" + b64(data) + b"--B--\n")
    rc, err = env.deliver("alice", msg)
    t.eq(rc, 0, "%s: a message with a %d MB base64 part delivered (%s)" %
         (fmt, len(msg) >> 20, err.strip()))
    M = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=TIMEOUT)
    M.login("alice", "secret")
    typ, sel = M.select("INBOX")
    n = int(sel[0])
    owners = d.socket_owners(M.sock)
    pid = owners[0]["pid"] if owners else None
    rss = vm(pid, "VmRSS") if pid else 0
    typ, fetched = M.fetch(str(n), "(BINARY.PEEK[1])")
    head, body = literal(fetched, "BINARY[1]")
    t.ok(typ == "OK" and body is not None and
         hashlib.sha256(body).digest() == hashlib.sha256(data).digest(),
         "%s: BINARY[1] of the %d MB part is the original" %
         (fmt, len(data) >> 20))
    # A partial far into it: the skipped bytes send nothing, and the
    # stream must not wait for a drain that never comes.
    M.sock.settimeout(30)
    try:
        typ, fetched = M.fetch(str(n), "(BINARY.PEEK[1]<30000000.10> "
                               "BODY.PEEK[]<40000000.10>)")
    except (OSError, imaplib.IMAP4.abort) as e:
        typ, fetched = "timeout", [repr(e)]
    _, b1 = literal(fetched, "BINARY[1]<30000000>")
    _, b2 = literal(fetched, "BODY[]<40000000>")
    t.ok(typ == "OK" and b1 == data[30000000:30000010] and b2 is not None
         and len(b2) == 10, "%s: partials 30 and 40 MB in answer at once "
         "(%s)" % (fmt, typ))
    if pid:
        grew = vm(pid, "VmHWM") - rss
        t.ok(grew < 16 * 1024 * 1024,
             "%s: the mail process peaked %d KiB above its RSS before: "
             "streamed, not held" % (fmt, grew // 1024))
    else:
        t.ok(False, "%s: the mail process of the session found" % fmt)
    if typ != "timeout":
        M.logout()


def main():
    rnd = random.Random(3)
    attach = bytes(rnd.getrandbits(8) for _ in range(200000)) + b"\0\0"
    for fmt in ("maildir", "mbox"):
        env = Env(fmt=fmt, extra="message_size_limit = 0\n"
                  "mailbox_size_limit = 0\n")
        try:
            env.add_user("alice")
            rc, err = env.deliver("alice", message1(attach))
            t.eq(rc, 0, "%s: delivered (%s)" % (fmt, err.strip()))
            d = env.start_imap()
            run(env, d, fmt, attach)
            run_large(env, d, fmt)
            t.eq(env.stop_loftd(), 0, "%s: loftd exits with status 0" % fmt)
        finally:
            env.cleanup()
    t.done()


main()
