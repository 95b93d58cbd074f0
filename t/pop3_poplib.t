#!/usr/bin/env python3
"""loftd's POP3 driven by Python's poplib and a raw socket client: plain,
STLS and POP3S; USER/PASS and AUTH PLAIN; CAPA before and after TLS and
after login; STAT/LIST/UIDL/TOP/RETR on Maildir and mbox compared byte for
byte with what loft-deliver stored (CRLF line ends, dot-stuffing, no final
newline, 5 MB); UIDL stable across sessions and a reindex; DELE with QUIT
deletes on disk, DELE with a dropped connection deletes nothing; RSET;
one session per mailbox ([IN-USE])."""
import base64
import os
import poplib
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Pop3, Tap, message, need_loftd, tls_client_context  # noqa: E402

t = Tap()
need_loftd(t)
TIMEOUT = 15


def crlf(data):
    """LF line ends to CRLF (a CRLF stays), as POP3 sends a message."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def content(stored):
    """The message as RETR carries it, before dot-stuffing: CRLF line ends
    and a final CRLF."""
    c = crlf(stored)
    return c if c.endswith(b"\r\n") else c + b"\r\n"


def wire(stored):
    """Everything after RETR's +OK line: dot-stuffed, with the ".\r\n"."""
    return re.sub(rb"(?m)^\.", b"..", content(stored)) + b".\r\n"


def top_lines(stored, n):
    """What TOP msg n returns, as dot-unstuffed lines."""
    lines = content(stored)[:-2].split(b"\r\n")
    h = lines.index(b"") if b"" in lines else len(lines) - 1
    return lines[:h + 1 + n]


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


PREFIX = b"Return-Path: <sender@example.net>\nDelivered-To: demo@test.example.org\n"


def big_message():
    lines = [b"From: Big <big@example.net>", b"To: demo@example.org",
             b"Subject: five megabytes", b"Message-ID: <big@example.net>", b""]
    i, size = 0, sum(len(x) + 1 for x in lines)
    while size < 5 * 1024 * 1024:
        if i % 997 == 0:
            lines.append(b".dotted line %d" % i)
        elif i % 1009 == 0:
            lines.append(b".")
        else:
            lines.append(b"line %07d " % i + b"abcdefghij" * 7)
        size += len(lines[-1]) + 1
        i += 1
    return b"\n".join(lines) + b"\n"


MESSAGES = [
    ("plain", message("first")),
    ("dots and From lines", b"From: a@example.net\nSubject: dots\n\n.\n..\n"
     b".starts with a dot\nFrom the start of a line\n>From quoted\n"
     b"line\r\nwith a CRLF line\nlast\n"),
    ("no final newline", b"Subject: nonl\nFrom: a@example.net\n\nfirst\n"
     b"last line without newline"),
    ("CRLF message", message("crlf", eol="\r\n")),
    ("5 MB", big_message()),
]


def stored_bytes(raw):
    pre = PREFIX.replace(b"\n", b"\r\n") if raw.split(b"\n", 1)[0].endswith(b"\r") \
        else PREFIX
    return pre + raw


def setup(fmt, extra=""):
    env = Env(fmt)
    env.add_user("demo")
    env.add_user("other")
    for _, raw in MESSAGES:
        rc, err = env.deliver("demo", raw, "-f", "sender@example.net")
        if rc != 0:
            raise RuntimeError("delivery failed: %d %s" % (rc, err))
    env.start_loftd(extra)
    return env


def index_uids(env):
    """(uidvalidity, [uids]) of demo's INBOX from loftctl index list."""
    r = env.ctl("index", "list", "demo")
    out = r.stdout.decode()
    m = re.search(r"uidvalidity=(\d+)", out)
    uids = [int(ln.split()[0]) for ln in out.splitlines()
            if ln and not ln.startswith("#")]
    return (int(m.group(1)) if m else None), uids


def uidl_map(p):
    resp, lines, _ = p.uidl()
    return dict(ln.decode().split(" ", 1) for ln in lines)


def wait_free(env, d, ctx, tries=50):
    """Log in over POP3S until the mailbox is not [IN-USE] (a dropped
    session's process may take a moment to notice); returns the session
    or None."""
    for _ in range(tries):
        p = Pop3(d.pop3s_port, ctx=ctx, timeout=TIMEOUT)
        r = p.login()
        if r.startswith("+OK"):
            return p
        p.close()
        if "[IN-USE]" not in r:
            t.diag("login answered %r" % r)
            return None
        time.sleep(0.2)
    return None


# 1. Plaintext with the default disable_plaintext_auth = yes: no USER, no
# PLAIN/LOGIN before TLS; STLS and POP3S with a context that trusts only
# the test certificate.

def part_default():
    env = Env("maildir")
    env.add_user("demo")
    env.deliver("demo", message("one"), "-f", "sender@example.net")
    d = env.start_loftd()
    ctx = tls_client_context(d.cert)

    p = poplib.POP3("127.0.0.1", d.pop3_port, timeout=TIMEOUT)
    t.ok(p.getwelcome().startswith(b"+OK"), "greeting starts with +OK")
    caps = p.capa()
    t.ok("STLS" in caps, "CAPA before TLS offers STLS")
    t.ok("USER" not in caps, "CAPA before TLS has no USER (plaintext auth disabled)")
    sasl = caps.get("SASL", [])
    t.ok("PLAIN" not in sasl and "LOGIN" not in sasl,
         "CAPA before TLS offers no PLAIN or LOGIN (SASL %r)" % sasl)
    t.ok("SCRAM-SHA-256" in sasl and "SCRAM-SHA-1" in sasl,
         "CAPA before TLS offers SCRAM-SHA-256 and SCRAM-SHA-1")
    for c in ("TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"):
        t.ok(c in caps, "CAPA lists %s" % c)
    t.eq(caps.get("EXPIRE"), ["NEVER"], "CAPA EXPIRE NEVER")
    t.eq(caps.get("LOGIN-DELAY"), ["0"], "CAPA LOGIN-DELAY 0")
    try:
        r = p.user("demo")
    except poplib.error_proto as e:
        r = e.args[0]
    t.ok(r.startswith(b"-ERR"), "USER refused before TLS (%r)" % r)
    try:
        r = p._shortcmd("AUTH PLAIN " + b64("\0demo\0secret"))
    except poplib.error_proto as e:
        r = e.args[0]
    t.ok(r.startswith(b"-ERR"), "AUTH PLAIN refused before TLS (%r)" % r)

    r = p.stls(ctx)
    t.ok(r.startswith(b"+OK"), "STLS: +OK and a verified handshake")
    t.ok(p.sock.version() in ("TLSv1.2", "TLSv1.3"),
         "TLS 1.2 or newer (%s)" % p.sock.version())
    caps = p.capa()
    t.ok("STLS" not in caps, "CAPA after STLS no longer offers STLS")
    t.ok("USER" in caps, "CAPA after STLS lists USER")
    sasl = caps.get("SASL", [])
    t.ok("PLAIN" in sasl and "LOGIN" in sasl and "SCRAM-SHA-256" in sasl,
         "CAPA after STLS offers PLAIN LOGIN SCRAM-SHA-256 (%r)" % sasl)
    t.ok(p.user("demo").startswith(b"+OK"), "USER over STLS")
    t.ok(p.pass_("secret").startswith(b"+OK"), "PASS over STLS logs in")
    t.eq(p.stat()[0], 1, "STAT over STLS sees the message")
    caps = p.capa()
    t.ok("USER" not in caps and "SASL" not in caps and "STLS" not in caps,
         "CAPA after login: no USER, SASL or STLS (%r)" % sorted(caps))
    t.ok("TOP" in caps and "UIDL" in caps, "CAPA after login: TOP and UIDL")
    t.ok(p.quit().startswith(b"+OK"), "QUIT")

    p = poplib.POP3_SSL("127.0.0.1", d.pop3s_port, context=ctx, timeout=TIMEOUT)
    t.ok(p.getwelcome().startswith(b"+OK"), "POP3S greeting after a verified handshake")
    caps = p.capa()
    t.ok("STLS" not in caps and "USER" in caps and "PLAIN" in caps.get("SASL", []),
         "POP3S CAPA: USER and PLAIN, no STLS")
    try:
        r = p._shortcmd("AUTH PLAIN " + b64("\0demo\0wrong"))
    except poplib.error_proto as e:
        r = e.args[0]
    t.eq(r, b"-ERR [AUTH] Authentication failed", "AUTH PLAIN with a wrong password")
    r = p._shortcmd("AUTH PLAIN " + b64("\0demo\0secret"))
    t.ok(r.startswith(b"+OK"), "AUTH PLAIN (initial response) over POP3S")
    t.eq(p.stat()[0], 1, "STAT after AUTH PLAIN")
    p.quit()

    # AUTH PLAIN without initial response: "+ " then the response.
    p = Pop3(d.pop3s_port, ctx=ctx, timeout=TIMEOUT)
    r = p.cmd("AUTH PLAIN")
    t.ok(r.rstrip() == "+", "AUTH PLAIN without initial response gets \"+ \" (%r)" % r)
    r = p.cmd(b64("\0demo\0secret"))
    t.ok(r.startswith("+OK"), "and the response logs in (%r)" % r)
    p.cmd("QUIT")
    p.close()

    # A wrong password over TLS through poplib.
    p = poplib.POP3_SSL("127.0.0.1", d.pop3s_port, context=ctx, timeout=TIMEOUT)
    p.user("demo")
    try:
        r = p.pass_("not the password")
    except poplib.error_proto as e:
        r = e.args[0]
    t.eq(r, b"-ERR [AUTH] Authentication failed", "PASS with a wrong password")
    p.quit()
    env.stop_loftd()
    env.cleanup()


# 2. disable_plaintext_auth = no: USER/PASS and AUTH PLAIN in plaintext.

def part_plaintext():
    env = Env("maildir")
    env.add_user("demo")
    env.deliver("demo", message("one"), "-f", "sender@example.net")
    d = env.start_loftd("disable_plaintext_auth = no\n")
    p = poplib.POP3("127.0.0.1", d.pop3_port, timeout=TIMEOUT)
    caps = p.capa()
    t.ok("USER" in caps and "PLAIN" in caps.get("SASL", []) and "STLS" in caps,
         "plaintext allowed: CAPA lists USER, SASL PLAIN and STLS")
    t.ok(p.user("demo").startswith(b"+OK"), "plaintext USER")
    t.ok(p.pass_("secret").startswith(b"+OK"), "plaintext PASS")
    t.eq(p.stat()[0], 1, "STAT")
    p.quit()
    p = poplib.POP3("127.0.0.1", d.pop3_port, timeout=TIMEOUT)
    r = p._shortcmd("AUTH PLAIN " + b64("\0demo\0secret"))
    t.ok(r.startswith(b"+OK"), "plaintext AUTH PLAIN")
    p.quit()
    p = Pop3(d.pop3_port, timeout=TIMEOUT)
    r = p.cmd("AUTH LOGIN")
    t.ok(r.startswith("+ "), "AUTH LOGIN asks for the user name (%r)" % r)
    r = p.cmd(b64("demo"))
    t.ok(r.startswith("+ "), "then for the password (%r)" % r)
    r = p.cmd(b64("secret"))
    t.ok(r.startswith("+OK"), "AUTH LOGIN logs in (%r)" % r)
    p.cmd("QUIT")
    p.close()
    env.stop_loftd()
    env.cleanup()


# 3. The mailbox, on Maildir and on mbox.

def part_mailbox(fmt):
    env = setup(fmt)
    d = env.loftd
    ctx = tls_client_context(d.cert)
    stored = [stored_bytes(raw) for _, raw in MESSAGES]
    if fmt == "maildir":
        on_disk = [v for _, v in sorted(env.maildir_files("demo").items(),
                                        key=lambda kv: int(kv[0].rsplit("U=", 1)[1]))]
        t.ok(on_disk == stored, "%s: the test knows the stored bytes" % fmt)
    n = len(MESSAGES)

    def open_poplib():
        if fmt == "maildir":
            p = poplib.POP3_SSL("127.0.0.1", d.pop3s_port, context=ctx,
                                timeout=TIMEOUT)
        else:
            p = poplib.POP3("127.0.0.1", d.pop3_port, timeout=TIMEOUT)
            p.stls(ctx)
        p.user("demo")
        p.pass_("secret")
        return p

    p = open_poplib()
    count, size = p.stat()
    t.eq(count, n, "%s: STAT counts %d messages" % (fmt, n))
    resp, lines, _ = p.list()
    sizes = [int(ln.split()[1]) for ln in lines]
    t.eq([int(ln.split()[0]) for ln in lines], list(range(1, n + 1)),
         "%s: LIST numbers 1..%d" % (fmt, n))
    t.eq(size, sum(sizes), "%s: STAT size is the sum of LIST sizes" % fmt)
    for i, (what, _) in enumerate(MESSAGES):
        # RFC 1939: the size is the exact size of the message as RETR
        # sends it (CRLF line ends, before dot-stuffing).
        # Also for a message without a final newline, whose last line
        # RETR ends with a CRLF of its own.
        t.eq(sizes[i], len(content(stored[i])),
             "%s: LIST size of the %s message is its CRLF size" % (fmt, what))
        t.eq(p.list(i + 1), b"+OK %d %d" % (i + 1, sizes[i]),
             "%s: LIST %d" % (fmt, i + 1))
        resp, lines, octets = p.retr(i + 1)
        t.ok(resp.startswith(b"+OK"), "%s: RETR %d +OK" % (fmt, i + 1))
        t.ok(b"\r\n".join(lines) + b"\r\n" == content(stored[i]),
             "%s: poplib RETR of the %s message: lines are the stored ones" % (fmt, what))
    p.quit()

    # Byte for byte on the wire, including dot-stuffing and CRLF.
    raw = Pop3(d.pop3s_port, ctx=ctx, timeout=TIMEOUT)
    t.ok(raw.login().startswith("+OK"), "%s: raw client logs in" % fmt)
    for i, (what, _) in enumerate(MESSAGES):
        r = raw.cmd("RETR %d" % (i + 1))
        body = raw.multi_raw()
        t.ok(r.startswith("+OK"), "%s: RETR %d: %s" % (fmt, i + 1, r))
        if not t.ok(body == wire(stored[i]),
                    "%s: RETR of the %s message is byte-exact on the wire" % (fmt, what)):
            t.diag("got %s bytes, want %d" % (None if body is None else len(body),
                                               len(wire(stored[i]))))
            if body is not None:
                w = wire(stored[i])
                k = next((j for j in range(min(len(w), len(body)))
                          if w[j] != body[j]), min(len(w), len(body)))
                t.diag("first difference at %d: got %r want %r"
                       % (k, body[k:k + 40], w[k:k + 40]))
    for i, k in ((0, 0), (0, 2), (1, 3), (2, 100), (3, 1)):
        r = raw.cmd("TOP %d %d" % (i + 1, k))
        lines = raw.multi()
        t.ok(r.startswith("+OK") and lines == top_lines(stored[i], k),
             "%s: TOP %d %d gives the header, blank line and %d body lines"
             % (fmt, i + 1, k, k))
    r = raw.cmd("RETR %d" % (n + 1))
    t.ok(r.startswith("-ERR"), "%s: RETR of a message that is not there: %s" % (fmt, r))
    r = raw.cmd("RETR 0")
    t.ok(r.startswith("-ERR"), "%s: RETR 0: %s" % (fmt, r))
    # Pipelined commands (CAPA says PIPELINING) answered in order.
    raw.send("STAT\r\nLIST 1\r\nUIDL 1\r\nNOOP\r\n")
    got = [raw.text() for _ in range(4)]
    t.ok(got[0] == "+OK %d %d" % (n, sum(sizes)) and got[1] == "+OK 1 %d" % sizes[0]
         and got[2].startswith("+OK 1 ") and got[3].startswith("+OK"),
         "%s: four pipelined commands answered in order (%r)" % (fmt, got))

    # UIDL: %08x%08x of UIDVALIDITY and UID.
    r = raw.cmd("UIDL")
    uidl = dict(ln.decode().split(" ", 1) for ln in raw.multi())
    raw.cmd("QUIT")
    raw.close()
    uidv, uids = index_uids(env)
    t.eq(uidl, {str(i + 1): "%08x%08x" % (uidv, uid) for i, uid in enumerate(uids)},
         "%s: UIDL is %%08x%%08x of UIDVALIDITY and UID" % fmt)
    p = open_poplib()
    t.eq(uidl_map(p), uidl, "%s: UIDL the same in a second session" % fmt)
    t.eq(p.uidl(2), b"+OK 2 " + uidl["2"].encode(), "%s: UIDL 2" % fmt)
    p.quit()
    r = None
    for _ in range(50):
        r = env.ctl("reindex", "demo")
        if r.returncode == 0:
            break
        time.sleep(0.2)
    t.ok(r.returncode == 0, "%s: loftctl reindex while loftd runs (%r)" % (fmt, r.stderr))
    p = open_poplib()
    t.eq(uidl_map(p), uidl, "%s: UIDL the same after loftctl reindex" % fmt)

    # RSET undoes DELE.
    t.ok(p.dele(1).startswith(b"+OK"), "%s: DELE 1" % fmt)
    t.eq(p.stat()[0], n - 1, "%s: STAT no longer counts it" % fmt)
    try:
        r = p.retr(1)[0]
    except poplib.error_proto as e:
        r = e.args[0]
    t.ok(r.startswith(b"-ERR"), "%s: RETR of a deleted message: %r" % (fmt, r))
    t.ok(p.rset().startswith(b"+OK"), "%s: RSET" % fmt)
    t.eq(p.stat()[0], n, "%s: after RSET STAT counts all again" % fmt)

    # Second session while the first is open: [IN-USE].
    q = Pop3(d.pop3s_port, ctx=ctx, timeout=TIMEOUT)
    r = q.login()
    t.ok(r.startswith("-ERR [IN-USE]"), "%s: a second session gets [IN-USE] (%r)" % (fmt, r))
    q.close()
    p.quit()
    q = wait_free(env, d, ctx)
    t.ok(q is not None, "%s: after the first QUIT a new session logs in" % fmt)
    if q:
        q.cmd("QUIT")
        q.close()

    # DELE, then the connection drops without QUIT: nothing deleted.
    before = env.maildir_files("demo") if fmt == "maildir" else \
        open(env.inbox("demo"), "rb").read()
    p = Pop3(d.pop3s_port, ctx=ctx, timeout=TIMEOUT)
    p.login()
    t.ok(p.cmd("DELE 1").startswith("+OK") and p.cmd("DELE 2").startswith("+OK"),
         "%s: DELE 1 and 2, then drop the connection" % fmt)
    p.close()
    m = d.wait_log(r"pop3\(demo\): logout: rip=127\.0\.0\.1, reason=disconnected")
    t.ok(m is not None, "%s: the drop is logged: reason=disconnected" % fmt)
    q = wait_free(env, d, ctx)
    t.ok(q is not None, "%s: the mailbox is free again" % fmt)
    if q:
        t.ok(q.cmd("STAT").startswith("+OK %d " % n), "%s: all %d messages still there" % (fmt, n))
        q.cmd("QUIT")
        q.close()
    after = env.maildir_files("demo") if fmt == "maildir" else \
        open(env.inbox("demo"), "rb").read()
    t.ok(before == after, "%s: storage unchanged on disk" % fmt)

    # DELE and QUIT: gone from the session, the disk and the index.
    p = open_poplib()
    p.dele(1)
    p.dele(3)
    r = p.quit()
    t.ok(r.startswith(b"+OK"), "%s: QUIT after DELE 1, DELE 3: %r" % (fmt, r))
    m = d.wait_log(r"pop3\(demo\): logout: rip=127\.0\.0\.1, reason=QUIT.*dele=2/\d+")
    t.ok(m is not None, "%s: logout logged with reason=QUIT and dele=2/BYTES" % fmt)
    if fmt == "maildir":
        left = sorted(env.maildir_files("demo").values())
        t.eq(left, sorted(stored[i] for i in (1, 3, 4)), "%s: two files removed" % fmt)
    else:
        box = open(env.inbox("demo"), "rb").read()
        t.ok(b"Subject: first" not in box and b"Subject: nonl" not in box
             and b"Subject: dots" in box and b"Subject: crlf" in box
             and b"Subject: five megabytes" in box,
             "%s: the two messages are gone from the mbox, the others kept" % fmt)
    q = wait_free(env, d, ctx)
    if q:
        t.ok(q.cmd("STAT").startswith("+OK %d " % (n - 2)), "%s: a new session sees %d"
             % (fmt, n - 2))
        q.cmd("UIDL")
        left = dict(ln.decode().split(" ", 1) for ln in q.multi())
        t.eq(sorted(left.values()), sorted(uidl[k] for k in ("2", "4", "5")),
             "%s: the others keep their UIDLs" % fmt)
        q.cmd("RETR 1")
        t.ok(q.multi_raw() == wire(stored[1]), "%s: message 1 is now the old 2" % fmt)
        q.cmd("QUIT")
        q.close()
    else:
        t.ok(False, "%s: a new session after DELE/QUIT" % fmt)
    uidv2, uids2 = index_uids(env)
    t.eq(uids2, [2, 4, 5], "%s: the index drops UIDs 1 and 3" % fmt)
    env.stop_loftd()
    env.cleanup()


t.guard("default configuration", part_default)
t.guard("plaintext allowed", part_plaintext)
t.guard("maildir", part_mailbox, "maildir")
t.guard("mbox", part_mailbox, "mbox")
t.done()
