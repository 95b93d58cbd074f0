#!/usr/bin/env python3
"""LMTP (RFC 2033) on loftd's lmtp_listen, over TCP and over a UNIX
socket, driven by smtplib.LMTP and a raw client: LHLO and its extensions
(EHLO and HELO refused); two local users and one unknown in one
transaction get 250/250 after the data and 550 5.1.1 at RCPT, a remote
domain 550 5.1.2; the messages read back over POP3 and IMAP byte for byte
behind Return-Path:, Delivered-To: and loftd's Received: line, and on
disk with LF line ends; user+tag; a SIZE over a user's quota is 552 5.2.2
at RCPT, a message that would take a mailbox over its quota is 552 5.2.2
after the data for that recipient alone, between the others' 250s; a
pipelined transaction answered in order; bare LF in DATA refused once per
recipient, nothing stored; DATA with no recipient 503; message_size_limit
at N and N+1 (SIZE at MAIL, and the data); smtpd_recipient_limit at N
and N+1; VRFY 252, NOOP, RSET; the log lines; the lmtp process's user and
its spool; BDAT (CHUNKING) with a reply per recipient; a reload with a
mynetworks that leaves the loopback out: TCP refused 421 4.7.1, the UNIX
socket still served. With Postfix installed (and run as root), a private
Postfix instance hands mail over with mailbox_transport =
lmtp:unix:...; without it that part is skipped."""
import imaplib
import os
import poplib
import re
import smtplib
import socket
import stat
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import (Env, Smtp, Tap, ensure_login_user, free_port,  # noqa: E402
                  need_loftd, wait_port)
import postfix  # noqa: E402

t = Tap()
need_loftd(t)
ROOT = os.geteuid() == 0
SIZE_LIMIT = 20000
RCPT_LIMIT = 3
QUOTA = 3000

CONF = """mydestination = localhost, example.test
recipient_delimiter = +
message_size_limit = %d
smtpd_recipient_limit = %d
disable_plaintext_auth = no
""" % (SIZE_LIMIT, RCPT_LIMIT)

RECEIVED = (rb"Received: from client\.test \(%s\)\r\n"
            rb"\tby test\.example\.org \(loft\) with LMTP id ([0-9A-Z]{17})"
            rb"(?:\r\n\tfor <%s>;|;\r\n\t)"
            rb" ?[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d "
            rb"[+-]\d{4}\r\n")


class Raw(Smtp):
    """The raw client of loft.py on TCP or on a UNIX socket path."""

    def __init__(self, where, timeout=10.0):
        if isinstance(where, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(where)
        else:
            self.sock = socket.create_connection(("127.0.0.1", where),
                                                 timeout=timeout)
        self.buf = b""
        self.greeting = self.reply()


def message(subject, body=b"Hello,\r\n.a line with a dot\r\n\r\nbye\r\n"):
    return (b"From: Sender <sender@other.test>\r\n"
            b"To: someone@example.test\r\nSubject: " + subject.encode() +
            b"\r\nMessage-ID: <" + subject.replace(" ", ".").encode() +
            b"@other.test>\r\n\r\n" + body)


def lmtp(where):
    s = smtplib.LMTP(where if isinstance(where, str) else "127.0.0.1",
                     0 if isinstance(where, str) else where, timeout=10)
    s.ehlo("client.test")	# LMTP's ehlo sends LHLO
    return s


def data_replies(s, msg, n):
    """DATA, then one reply per accepted recipient: [(code, text)]."""
    first = s.data(msg)
    return [first] + [s.getreply() for _ in range(n - 1)]


def pop3_all(d, user):
    p = poplib.POP3("127.0.0.1", d.pop3_port, timeout=10)
    p.user(user)
    p.pass_("secret")
    out = []
    for i in range(1, len(p.list()[1]) + 1):
        out.append(b"\r\n".join(p.retr(i)[1]) + b"\r\n")
    p.quit()
    return out


def imap_all(d, user):
    m = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=10)
    m.login(user, "secret")
    m.select("INBOX", readonly=True)
    typ, data = m.fetch("1:*", "(BODY.PEEK[])")
    m.logout()
    if typ != "OK" or data == [None]:
        return []
    return [part[1] for part in data if isinstance(part, tuple)]


def by_subject(msgs, subject):
    key = b"\r\nSubject: " + subject.encode() + b"\r\n"
    return [m for m in msgs if key in m]


def check_stored(got, subject, rcpt, msg, name, via=rb"\[127\.0\.0\.1\]",
                 single=False):
    """Exactly one message with subject in got: Return-Path:,
    Delivered-To: rcpt, the Received: line (with "for" when single), msg.
    Returns the queue-style ID of the Received: line."""
    found = by_subject(got, subject)
    if not t.eq(len(found), 1, "%s: one message" % name):
        return None
    m = found[0]
    head = b"Return-Path: <sender@other.test>\r\nDelivered-To: " + \
        rcpt.encode() + b"\r\n"
    t.ok(m.startswith(head), "%s: Return-Path:, Delivered-To: %s" %
         (name, rcpt))
    rest = m[len(head):]
    r = re.match(RECEIVED % (via, re.escape(rcpt).encode()), rest)
    if not t.ok(r is not None and (b"\tfor <" in r.group(0)) == single,
                "%s: then loftd's Received: line (with LMTP%s)" %
                (name, ", for <rcpt>" if single else "")):
        t.diag(repr(rest[:300]))
        return None
    t.eq(rest[r.end():], msg, "%s: then the message, byte for byte" % name)
    return r.group(1).decode()


def maildir_by_subject(env, user, subject):
    return [v for v in env.maildir_files(user).values()
            if b"\nSubject: " + subject.encode() + b"\n" in v]


def setup():
    env = Env("maildir", extra=CONF)
    for u in ("alice", "bob", "carol", "dave"):
        env.add_user(u)
    r = env.ctl("user", "quota", "dave", str(QUOTA))
    if r.returncode != 0:
        raise RuntimeError("user quota: %s" % r.stderr)
    return env


def start(env):
    port = free_port()
    sock = os.path.join(env.dir, "lmtp.sock")
    extra = "lmtp_listen = 127.0.0.1:%d, %s\n" % (port, sock)
    ensure_login_user("loft")
    d = env.start_loftd(extra, imap=True)
    d.lmtp_port = port
    d.lmtp_sock = sock
    d.extra_lmtp = extra
    if not wait_port(port, proc=d.proc):
        raise RuntimeError("no LMTP listener: %s" % d.log()[-2000:])
    return d


def test_lhlo(d):
    s = Raw(d.lmtp_port)
    t.eq(s.greeting, (220, ["test.example.org LMTP loft"]),
         "TCP: greeting 220 ... LMTP")
    t.eq(s.cmd("EHLO client.test"), (500, "Command unrecognized: use LHLO"),
         "EHLO refused (RFC 2033 4.1: LHLO only)")
    t.eq(s.cmd("HELO client.test")[0], 500, "HELO refused")
    t.eq(s.cmd("MAIL FROM:<a@other.test>"),
         (503, "Send LHLO first"), "MAIL before LHLO: 503 Send LHLO first")
    s.send("LHLO client.test\r\n")
    code, lines = s.reply()
    t.eq((code, lines), (250, ["test.example.org", "PIPELINING",
                               "SIZE %d" % SIZE_LIMIT, "ENHANCEDSTATUSCODES",
                               "8BITMIME", "CHUNKING"]),
         "LHLO: PIPELINING, SIZE, ENHANCEDSTATUSCODES, 8BITMIME, CHUNKING; "
         "no STARTTLS, AUTH, DSN")
    t.eq(s.cmd("VRFY alice"), (252, "2.5.0 Cannot VRFY user, but will "
                               "accept message and attempt delivery"),
         "VRFY: 252")
    t.eq(s.cmd("NOOP"), (250, "2.0.0 Ok"), "NOOP: 250")
    t.eq(s.cmd("RSET"), (250, "2.0.0 Ok"), "RSET: 250")
    t.eq(s.cmd("DATA"), (503, "5.5.1 Need MAIL command"),
         "DATA without MAIL: 503")
    t.eq(s.cmd("MAIL FROM:<sender@other.test>")[0], 250, "MAIL: 250")
    t.eq(s.cmd("DATA"), (503, "5.5.1 Need RCPT command"),
         "DATA without RCPT: 503")
    t.eq(s.cmd("RCPT TO:<nosuch@example.test>")[0], 550, "unknown: 550")
    t.eq(s.cmd("DATA"), (503, "5.5.1 No valid recipients"),
         "DATA with no accepted recipient: 503 (RFC 2033 4.2), not 554")
    t.eq(s.cmd("QUIT")[0], 221, "QUIT: 221")
    s.close()


def test_two_users(d, env):
    msg = message("two users")
    s = lmtp(d.lmtp_port)
    t.eq(s.mail("sender@other.test"), (250, b"2.1.0 Ok"), "MAIL: 250 2.1.0")
    t.eq(s.rcpt("alice@example.test"), (250, b"2.1.5 Ok"),
         "RCPT alice: 250 2.1.5")
    code, text = s.rcpt("nosuch@example.test")
    t.eq((code, text), (550, b"5.1.1 <nosuch@example.test>: Recipient "
                        b"address rejected: User unknown in local "
                        b"recipient table"),
         "RCPT nosuch: 550 5.1.1 at RCPT")
    t.eq(s.rcpt("bob@example.test"), (250, b"2.1.5 Ok"),
         "RCPT bob: 250 2.1.5")
    code, text = s.rcpt("someone@remote.test")
    t.eq((code, text[:9]), (550, b"5.1.2 <so"),
         "RCPT in a domain not in mydestination: 550 5.1.2 (no relaying)")
    t.eq(s.rcpt("alice%remote.test@example.test")[0], 553,
         "RCPT with a routing form in a local domain: 553")
    reps = data_replies(s, msg, 2)
    ok = [(c, re.match(rb"2\.0\.0 <([^>]*)> Ok, id=[0-9A-Z]{17} "
                       rb"\(delivered to maildir\)$", x)) for c, x in reps]
    t.ok(len(ok) == 2 and all(c == 250 and m for c, m in ok) and
         [m.group(1) for _, m in ok] == [b"alice@example.test",
                                         b"bob@example.test"],
         "DATA: 250 for alice, then 250 for bob, in RCPT order")
    if not ok or not all(m for _, m in ok):
        t.diag(repr(reps))
    t.eq(s.noop()[0], 250, "the session goes on: NOOP 250")
    s.quit()
    qid = check_stored(pop3_all(d, "alice"), "two users",
                       "alice@example.test", msg, "alice over POP3")
    got = imap_all(d, "bob")
    qid2 = check_stored(got, "two users", "bob@example.test", msg,
                        "bob over IMAP")
    t.ok(qid is not None and qid == qid2, "one ID in both copies")
    pop = by_subject(pop3_all(d, "alice"), "two users")
    disk = maildir_by_subject(env, "alice", "two users")
    t.ok(len(disk) == 1 and len(pop) == 1 and
         disk[0] == pop[0].replace(b"\r\n", b"\n"),
         "alice's Maildir file: the same bytes with LF line ends")
    if ROOT:
        owners = {os.stat(os.path.join(env.user_dir("bob"), f)).st_uid
                  for f in env.maildir_files("bob")}
        t.eq(owners, {env.owner[0]}, "bob's file written by the mailbox "
             "owner's uid (the mail process)")
    if qid:
        t.ok(d.wait_log(r"lmtp(?:\[\d+\])?: %s: to=<alice@example\.test>, "
                        r"relay=local, delay=\d+\.\d\d, dsn=2\.0\.0, "
                        r"status=sent \(delivered to maildir\)" % qid),
             "log: lmtp: ID: to=<alice@example.test>, relay=local, ... "
             "status=sent (delivered to maildir)")
        t.ok(d.wait_log(r"lmtp(?:\[\d+\])?: %s: from=<sender@other\.test>, "
                        r"size=\d+, nrcpt=2" % qid),
             "log: ID: from=<sender@other.test>, size=, nrcpt=2")
    t.ok(d.wait_log(r"lmtp(?:\[\d+\])?: NOQUEUE: reject: RCPT from "
                    r"unknown\[127\.0\.0\.1\]: 550 5\.1\.1 "
                    r"<nosuch@example\.test>"),
         "log: NOQUEUE: reject: RCPT ... 550 5.1.1 <nosuch@example.test>")


def test_unix(d, env):
    msg = message("over the socket")
    st = os.stat(d.lmtp_sock)
    t.ok(stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o666,
         "the UNIX socket exists, mode 0666 (lmtp_socket_mode's default)")
    if ROOT:
        t.eq(st.st_uid, 0, "  owned by root")
    s = lmtp(d.lmtp_sock)
    s.mail("sender@other.test")
    t.eq(s.rcpt("Carol+box@example.test"), (250, b"2.1.5 Ok"),
         "UNIX socket: RCPT Carol+box: 250 (extension and case)")
    reps = data_replies(s, msg, 1)
    t.eq(reps[0][0], 250, "UNIX socket: DATA 250")
    s.quit()
    check_stored(pop3_all(d, "carol"), "over the socket",
                 "Carol+box@example.test", msg, "carol over POP3",
                 via=rb"local", single=True)
    t.ok(d.wait_log(r"lmtp(?:\[\d+\])?: connect from local"),
         "log: connect from local")


def test_quota(d, env):
    big = message("too big for dave", (b"x" * 78 + b"\r\n") *
                  (QUOTA // 80 + 5))
    s = lmtp(d.lmtp_port)
    t.eq(s.mail("sender@other.test", ["SIZE=%d" % len(big)])[0], 250,
         "MAIL with SIZE over dave's quota: 250")
    t.eq(s.rcpt("dave@example.test"),
         (552, b"5.2.2 <dave@example.test>: Recipient address rejected: "
          b"Mailbox full (the message is larger than the quota)"),
         "RCPT dave: 552 5.2.2 at RCPT (SIZE over his quota)")
    t.eq(s.rcpt("alice@example.test")[0], 250, "RCPT alice: 250")
    t.eq(s.rset()[0], 250, "RSET")
    # Without SIZE, the mail process finds it at delivery.
    t.eq(s.mail("sender@other.test")[0], 250, "MAIL without SIZE")
    t.eq(s.rcpt("alice@example.test")[0], 250, "RCPT alice: 250")
    t.eq(s.rcpt("dave@example.test")[0], 250, "RCPT dave: 250 (no SIZE)")
    t.eq(s.rcpt("bob@example.test")[0], 250, "RCPT bob: 250")
    reps = data_replies(s, big, 3)
    t.eq([c for c, _ in reps], [250, 552, 250],
         "DATA: 250 alice, 552 dave, 250 bob, in RCPT order")
    t.ok(len(reps) == 3 and reps[1][1].startswith(
        b"5.2.2 <dave@example.test> "), "  dave's: 5.2.2 <dave@...>")
    s.quit()
    t.eq(len(by_subject(pop3_all(d, "dave"), "too big for dave")), 0,
         "nothing stored for dave")
    t.eq(len(by_subject(pop3_all(d, "bob"), "too big for dave")), 1,
         "bob has it")
    t.ok(d.wait_log(r"lmtp(?:\[\d+\])?: [0-9A-Z]{17}: "
                    r"to=<dave@example\.test>, "
                    r"relay=local, delay=\d+\.\d\d, dsn=5\.2\.2, "
                    r"status=bounced"),
         "log: to=<dave@example.test>, ... dsn=5.2.2, status=bounced")
    # Fill most of dave's mailbox: a RCPT whose SIZE is under his quota
    # but over what is left is refused at once, by what the mailbox
    # holds (the mail process counts it).
    s = lmtp(d.lmtp_port)
    fill = message("fills dave", b"y" * (QUOTA - 400) + b"\r\n")
    t.eq(s.mail("sender@other.test")[0], 250, "MAIL (no SIZE)")
    t.eq(s.rcpt("dave@example.test")[0], 250, "RCPT dave: 250, room left")
    reps = data_replies(s, fill, 1)
    t.eq([c for c, _ in reps], [250], "DATA: a message that nearly fills "
         "dave's quota is stored")
    t.eq(s.mail("sender@other.test", ["SIZE=500"])[0], 250,
         "MAIL again, SIZE=500 (under the quota of %d)" % QUOTA)
    t.eq(s.rcpt("dave@example.test"),
         (552, b"5.2.2 <dave@example.test>: Recipient address rejected: "
          b"Mailbox full (no room left for the message)"),
         "RCPT dave: 552 5.2.2 at RCPT, by what his mailbox holds")
    t.eq(s.rcpt("alice@example.test")[0], 250, "  RCPT alice still 250")
    s.rset()
    s.quit()


def read_replies(s, n):
    out = []
    for _ in range(n):
        code, lines = s.reply()
        out.append((code, lines[-1] if lines else ""))
    return out


def test_pipelined(d, env):
    msg = message("pipelined")
    s = Raw(d.lmtp_port)
    s.send("LHLO client.test\r\nMAIL FROM:<sender@other.test>\r\n"
           "RCPT TO:<alice@example.test>\r\nRCPT TO:<nosuch@example.test>\r\n"
           "RCPT TO:<bob@example.test>\r\nDATA\r\n")
    got = read_replies(s, 6)
    t.eq([c for c, _ in got], [250, 250, 250, 550, 250, 354],
         "pipelined LHLO MAIL RCPT RCPT RCPT DATA: answered in order")
    s.send(msg + b".\r\nRSET\r\nNOOP\r\nQUIT\r\n")
    got = read_replies(s, 6)
    t.eq([c for c, _ in got], [250, 250, 250, 250, 221, 0],
         "message, RSET, NOOP, QUIT pipelined: 250 250 (one per "
         "recipient), 250, 250, 221, then the close")
    t.ok(got[0][1].startswith("2.0.0 <alice@example.test>") and
         got[1][1].startswith("2.0.0 <bob@example.test>"),
         "  alice's reply first, then bob's")
    s.close()
    t.eq(len(by_subject(pop3_all(d, "bob"), "pipelined")), 1,
         "bob has the pipelined message")


def test_bdat(d, env):
    msg = message("chunked")
    half = len(msg) // 2
    s = Raw(d.lmtp_port)
    s.cmd("LHLO client.test")
    s.cmd("MAIL FROM:<sender@other.test>")
    s.cmd("RCPT TO:<alice@example.test>")
    s.cmd("RCPT TO:<bob@example.test>")
    s.send(b"BDAT %d\r\n" % half + msg[:half])
    t.eq(s.reply(), (250, ["2.0.0 %d octets received" % half]),
         "BDAT: the first chunk, 250 octets received")
    s.send(b"BDAT %d LAST\r\n" % (len(msg) - half) + msg[half:])
    got = read_replies(s, 2)
    t.ok([c for c, _ in got] == [250, 250] and
         got[0][1].startswith("2.0.0 <alice@example.test>") and
         got[1][1].startswith("2.0.0 <bob@example.test>"),
         "BDAT LAST: 250 for alice, then for bob")
    s.cmd("QUIT")
    s.close()
    check_stored(pop3_all(d, "bob"), "chunked", "bob@example.test", msg,
                 "BDAT message for bob")


def count(d, user):
    return len(pop3_all(d, user))


def test_bare_lf(d, env):
    before = (count(d, "alice"), count(d, "bob"))
    s = Raw(d.lmtp_port)
    s.cmd("LHLO client.test")
    s.cmd("MAIL FROM:<sender@other.test>")
    s.cmd("RCPT TO:<alice@example.test>")
    s.cmd("RCPT TO:<bob@example.test>")
    t.eq(s.cmd("DATA")[0], 354, "DATA: 354")
    s.send(b"Subject: bare\r\n\r\nline one\nMAIL FROM:<x@y>\r\n"
           b"RCPT TO:<bob@example.test>\r\n.\r\n")
    got = read_replies(s, 2)
    t.eq(got, [(550, "5.6.0 Message contains bare CR or LF characters, "
                "refused")] * 2,
         "bare LF in DATA: 550 5.6.0 once per recipient (2)")
    t.eq(s.cmd("NOOP"), (250, "2.0.0 Ok"),
         "then the session is in step: NOOP 250")
    s.cmd("QUIT")
    s.close()
    t.eq((count(d, "alice"), count(d, "bob")), before,
         "nothing stored for alice or bob")


def test_size(d, env):
    s = Raw(d.lmtp_port)
    s.cmd("LHLO client.test")
    t.eq(s.cmd("MAIL FROM:<sender@other.test> SIZE=%d" % (SIZE_LIMIT + 1)),
         (552, "5.3.4 Message size exceeds fixed limit"),
         "MAIL SIZE=limit+1: 552 5.3.4")
    t.eq(s.cmd("MAIL FROM:<sender@other.test> SIZE=%d" % SIZE_LIMIT)[0],
         250, "MAIL SIZE=limit: 250")
    s.cmd("RSET")
    head = b"Subject: size %d\r\n\r\n"
    for n, want in ((SIZE_LIMIT, [250, 250]), (SIZE_LIMIT + 1, [552, 552])):
        h = head % n
        fill = n - len(h)
        body = h + (b"y" * 78 + b"\r\n") * (fill // 80)
        body += b"z" * (fill % 80 - 2) + b"\r\n" if fill % 80 >= 2 else \
            b"\r\n" * (fill % 80 // 2)
        s.cmd("MAIL FROM:<sender@other.test>")
        s.cmd("RCPT TO:<alice@example.test>")
        s.cmd("RCPT TO:<bob@example.test>")
        s.cmd("DATA")
        s.send(body + b".\r\n")
        got = read_replies(s, 2)
        t.eq([c for c, _ in got], want, "a message of %d bytes (limit %d): "
             "%s" % (len(body), SIZE_LIMIT, want))
    s.cmd("QUIT")
    s.close()
    t.eq(len(by_subject(pop3_all(d, "bob"), "size %d" % SIZE_LIMIT)), 1,
         "the one at the limit is stored")


def test_rcpt_limit(d, env):
    s = Raw(d.lmtp_port)
    s.cmd("LHLO client.test")
    s.cmd("MAIL FROM:<sender@other.test>")
    codes = [s.cmd("RCPT TO:<%s@example.test>" % u)[0]
             for u in ("alice", "bob", "alice+two")]
    t.eq(codes, [250] * RCPT_LIMIT, "%d recipients (the limit): 250 each" %
         RCPT_LIMIT)
    t.eq(s.cmd("RCPT TO:<carol@example.test>"),
         (452, "4.5.3 Too many recipients"), "one more: 452 4.5.3")
    s.cmd("DATA")
    s.send(message("three") + b".\r\n")
    got = read_replies(s, RCPT_LIMIT)
    t.eq([c for c, _ in got], [250] * RCPT_LIMIT,
         "DATA: one 250 per accepted recipient (%d)" % RCPT_LIMIT)
    s.cmd("QUIT")
    s.close()
    t.eq(len(by_subject(pop3_all(d, "alice"), "three")), 2,
         "alice has two copies (alice, alice+two)")


def test_process(d, env):
    procs = [p for p in d.processes() if "-X lmtp" in p["cmdline"]]
    t.eq(len(procs), 1, "one lmtp process")
    if ROOT and procs:
        import pwd
        t.eq(procs[0]["uid"][0], pwd.getpwnam("loft").pw_uid,
             "  running as mail_owner (loft)")
    spool = os.path.join(d.queue, "lmtp")
    st = os.stat(spool)
    t.ok(stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700,
         "its spool queue_directory/lmtp: a directory, mode 0700")
    t.eq(os.listdir(spool), [], "  empty: spool files are unlinked at once")
    t.eq(d.queue_ids(), [], "nothing went through the SMTP queue")


def test_reload_mynetworks(d, env):
    old = d.role_pids("lmtp")
    mark = d.mark()
    d.write_conf(d.extra_lmtp + "mynetworks = 192.0.2.0/24\n")
    d.hup()
    t.ok(d.wait_log(r"reloaded", since=mark), "SIGHUP: reloaded")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and \
            (set(d.role_pids("lmtp")) & set(old) or not d.role_pids("lmtp")):
        time.sleep(0.05)
    new = d.role_pids("lmtp")
    t.ok(new and not set(new) & set(old),
         "a new lmtp process replaced the old one")
    s = Raw(d.lmtp_port)
    t.eq(s.greeting, (421, ["4.7.1 test.example.org Error: LMTP is for "
                            "clients in mynetworks only"]),
         "TCP from outside mynetworks: 421 4.7.1 at connect")
    t.eq(s.reply()[0], 0, "  and closed")
    s.close()
    s = Raw(d.lmtp_sock)
    t.eq(s.greeting[0], 220, "the UNIX socket is still served: 220")
    s.cmd("QUIT")
    s.close()
    d.write_conf(d.extra_lmtp)
    mark = d.mark()
    d.hup()
    d.wait_log(r"reloaded", since=mark)


# Postfix in front: a private instance (its own config and queue
# directories, an SMTP port on the loopback) with mailbox_transport =
# lmtp:unix:SOCKET. Skipped when Postfix is not installed.

def test_postfix(d, env):
    why = postfix.available()
    if why is not None:
        t.ok(True, "# SKIP Postfix part: %s" % why)
        return
    port = free_port()
    pf = postfix.Postfix(env.dir, port, {
        "mydestination": "example.test",
        "local_recipient_maps": "",
        "mailbox_transport": "lmtp:unix:%s" % d.lmtp_sock})
    ok, err = pf.start()
    if not t.ok(ok, "a private Postfix starts (SMTP on 127.0.0.1:%d)" % port):
        t.diag(err)
        pf.stop()
        return
    try:
        msg = message("through postfix")
        s = smtplib.SMTP("127.0.0.1", port, timeout=10)
        s.ehlo("client.test")
        s.sendmail("sender@other.test", ["alice@example.test",
                                          "bob@example.test"], msg)
        s.quit()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
                by_subject(pop3_all(d, "alice"), "through postfix") and
                by_subject(pop3_all(d, "bob"), "through postfix")):
            time.sleep(0.2)
        for user in ("alice", "bob"):
            got = by_subject(pop3_all(d, user), "through postfix")
            t.ok(len(got) == 1 and got[0].startswith(
                b"Return-Path: <sender@other.test>\r\nDelivered-To: "
                b"%s@example.test\r\nReceived: from pf.example.test (local)"
                b"\r\n\tby test.example.org (loft) with LMTP id " %
                user.encode()) and got[0].endswith(b"\r\n\r\n" +
                                                    msg.split(b"\r\n\r\n",
                                                              1)[1]),
                 "Postfix -> LMTP -> %s's INBOX, behind loft's "
                 "Received: line" % user)
        plog = pf.log()
        t.ok(re.search(r"to=<alice@example\.test>, relay=[^,\[]*\[%s\], "
                       r".*status=sent \(250 2\.0\.0 <alice@example\.test> "
                       r"Ok, id=[0-9A-Z]{17} \(delivered to maildir\)\)"
                       % re.escape(d.lmtp_sock), plog),
             "Postfix logs status=sent with loft's per-recipient reply")
    finally:
        pf.stop()


def main():
    env = t.guard("setup", setup)
    if env is None:
        t.done()
    d = t.guard("start", start, env)
    if d is None:
        t.diag(env.log()[-3000:])
        t.done()
    for fn in (test_lhlo, test_two_users, test_unix, test_quota,
               test_pipelined, test_bdat, test_bare_lf, test_size,
               test_rcpt_limit,
               test_process, test_reload_mynetworks, test_postfix):
        if fn is test_lhlo:
            t.guard(fn.__name__, fn, d)
        else:
            t.guard(fn.__name__, fn, d, env)
    rc = env.stop_loftd()
    t.eq(rc, 0, "loftd stops cleanly (SIGTERM)")
    t.ok(not os.path.exists(d.lmtp_sock), "the UNIX socket is removed")
    t.done()


main()
