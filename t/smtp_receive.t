#!/usr/bin/env python3
"""loftd's SMTP receiving side on smtp_listen (the port 25 role), driven
by smtplib, swaks and a raw client: the EHLO extensions (AUTH only after
STARTTLS); a message queued byte for byte behind the Received: line loftd
prepends, with its envelope; unknown local users refused with Postfix's
550 5.1.1, aliases and address extensions accepted; relay control (an
untrusted client is refused 554 5.7.1, a trusted one relays, the address
forms that sneak mail through relay checks never do); bare LF in DATA
refused without splitting the message (SMTP smuggling); SIZE at MAIL and
at the end of data, the recipient limit and the error limit at N and N+1;
the idle timeout; the Postfix-style log lines; the smtpd process's
privileges; and a kill -9 of the smtpd process during DATA, which leaves
no message and gets the process replaced."""
import os
import re
import signal
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import (Env, LOFTCTL, Smtp, Tap, need_loftd,  # noqa: E402
                  tls_client_context)

t = Tap()
need_loftd(t)
ROOT = os.geteuid() == 0
SIZE_LIMIT = 2000
RCPT_LIMIT = 3
ERROR_LIMIT = 5

CONF = """mydestination = localhost, example.test
recipient_delimiter = +
message_size_limit = %d
smtpd_recipient_limit = %d
smtpd_hard_error_limit = %d
""" % (SIZE_LIMIT, RCPT_LIMIT, ERROR_LIMIT)


def setup():
    env = Env("maildir", extra=CONF)
    env.add_user("alice")
    env.add_user("bob")
    env.add_aliases("info: alice\nteam: alice, bob\n")
    return env


def queue_ids(d):
    try:
        return sorted(os.listdir(os.path.join(d.queue, "env")))
    except FileNotFoundError:
        return []


def read_queue(d, qid):
    with open(os.path.join(d.queue, "env", qid), "rb") as f:
        env = f.read().decode()
    with open(os.path.join(d.queue, "data", qid), "rb") as f:
        data = f.read()
    return env, data


def envelope(text):
    """(sender, [recipients]) of an envelope file."""
    sender = re.search(r"^sender <(.*)>$", text, re.M).group(1)
    return sender, re.findall(r"^rcpt <(.*)>$", text, re.M)


RECEIVED = re.compile(
    rb"^Received: from (\S+) \(\[127\.0\.0\.1\]\)\r\n"
    rb"\tby test\.example\.org \(loft\) with (\S+) id ([0-9A-Z]{17})"
    rb"(?:\r\n\tfor (<[^>]*>);|;\r\n\t)"
    rb" ?([A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d "
    rb"[+-]\d{4})\r\n")


def split_received(data):
    """The Received: line's fields and the bytes after it, or None."""
    m = RECEIVED.match(data)
    if m is None:
        return None
    return m.groups(), data[m.end():]


def smtpd_pids(d):
    return [p["pid"] for p in d.processes() if "-X smtpd" in p["cmdline"]]


def ehlo_features(d):
    s = smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10)
    s.ehlo("client.test")
    before = dict(s.esmtp_features)
    s.starttls(context=tls_client_context(d.cert))
    s.ehlo("client.test")
    after = dict(s.esmtp_features)
    s.quit()
    return before, after


def test_ehlo(d):
    before, after = ehlo_features(d)
    t.eq(before.get("size"), str(SIZE_LIMIT), "EHLO: SIZE message_size_limit")
    for ext in ("8bitmime", "pipelining", "starttls", "enhancedstatuscodes",
                "smtputf8", "chunking"):
        t.ok(ext in before, "EHLO: %s" % ext.upper())
    t.ok("auth" not in before, "EHLO: no AUTH before STARTTLS")
    t.ok("auth" in after and "PLAIN" in after["auth"].split(),
         "after STARTTLS: AUTH %s" % after.get("auth"))
    t.ok("starttls" not in after, "after STARTTLS: no STARTTLS")


def test_queued(d):
    msg = (b"From: Sender <sender@other.test>\r\nTo: alice@example.test\r\n"
           b"Subject: queued\r\n\r\nline one\r\n.a line with a dot\r\n"
           b"..two dots\r\n\r\nlast line\r\n")
    s = smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10)
    s.ehlo("client.test")
    s.mail("sender@other.test")
    code, text = s.rcpt("alice@example.test")
    t.eq(code, 250, "RCPT alice@example.test: 250")
    code, text = s.data(msg)
    t.eq(code, 250, "DATA: 250 (%s)" % text.decode())
    s.quit()
    m = re.match(rb"2\.0\.0 Ok: queued as ([0-9A-Z]{17})$", text)
    if not t.ok(m is not None, "  queued as ID"):
        return
    qid = m.group(1).decode()
    t.ok(qid in queue_ids(d), "  env/ID exists")
    envtext, data = read_queue(d, qid)
    t.eq(envelope(envtext), ("sender@other.test", ["alice@example.test"]),
         "  envelope: sender and recipient")
    r = split_received(data)
    if not t.ok(r is not None, "  data starts with a Received: line"):
        t.diag(data[:300])
        return
    (helo, proto, rid, rfor, date), rest = r
    t.eq((helo, proto, rid.decode(), rfor), (b"client.test", b"ESMTP", qid,
                                            b"<alice@example.test>"),
         "  Received: from EHLO name, with ESMTP, id, for the recipient")
    want = (b"Received: from client.test ([127.0.0.1])\r\n"
            b"\tby test.example.org (loft) with ESMTP id " + qid.encode() +
            b"\r\n\tfor <alice@example.test>; " + date + b"\r\n" + msg)
    t.eq(data, want, "  data: Received line + the message, byte for byte")
    t.ok(re.search(r"smtpd: %s: client=unknown\[127\.0\.0\.1\]" % qid,
                   d.log()), "log: ID: client=unknown[127.0.0.1]")
    t.ok(re.search(r"smtpd: %s: from=<sender@other\.test>, size=%d, "
                   r"nrcpt=1 \(queue active\)" % (qid, len(data)),
                   d.log()), "log: ID: from=<...>, size=N, nrcpt=1")
    t.ok(d.wait_log(r"smtpd: disconnect from unknown\[127\.0\.0\.1\] "
                    r"mail=1 rcpt=1/1 data=1/1"), "log: disconnect line")


def test_recipients(d):
    s = Smtp(d.smtp_port)
    s.cmd("EHLO client.test")
    s.cmd("MAIL FROM:<sender@other.test>")
    t.eq(s.cmd("RCPT TO:<nobody@example.test>"),
         (550, "5.1.1 <nobody@example.test>: Recipient address rejected: "
               "User unknown in local recipient table"),
         "unknown local user: 550 5.1.1, Postfix's text")
    t.ok(d.wait_log(r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: "
                    r"550 5\.1\.1 <nobody@example\.test>: Recipient address "
                    r"rejected: User unknown in local recipient table; "
                    r"from=<sender@other\.test> to=<nobody@example\.test> "
                    r"proto=ESMTP helo=<client\.test>"),
         "log: NOQUEUE: reject ... from=<> to=<> proto=ESMTP helo=<>")
    t.eq(s.cmd("RCPT TO:<info@example.test>")[0], 250, "an alias: 250")
    t.eq(s.cmd("RCPT TO:<alice+tag@localhost>")[0], 250,
         "user+tag (recipient_delimiter): 250")
    t.eq(s.cmd("RCPT TO:<Bob@Example.TEST>")[0], 250,
         "a user in other case: 250")
    t.eq(s.cmd("RCPT TO:<postmaster>")[0], 452,
         "the 4th recipient (smtpd_recipient_limit %d): 452" % RCPT_LIMIT)
    t.eq(s.cmd("RSET")[0], 250, "RSET")
    s.cmd("MAIL FROM:<>")
    t.eq(s.cmd("RCPT TO:<postmaster>")[0], 250, "<postmaster>: 250")
    t.eq(s.cmd("RCPT TO:<team+x@example.test>")[0], 250,
         "alias with an extension: 250")
    n = len(queue_ids(d))
    t.eq(s.cmd("QUIT")[0], 221, "QUIT after RSET and an open transaction")
    s.close()
    time.sleep(0.3)
    t.eq(len(queue_ids(d)), n, "  nothing queued without DATA")


def send_raw(d, rcpts, data, mail="MAIL FROM:<sender@other.test>"):
    """One raw transaction; returns (RCPT replies, DATA reply, final
    reply or None)."""
    s = Smtp(d.smtp_port)
    s.cmd("EHLO client.test")
    s.cmd(mail)
    got = [s.cmd("RCPT TO:" + r) for r in rcpts]
    code, text = s.cmd("DATA")
    final = None
    if code == 354:
        s.send(data)
        final = s.reply()
    s.cmd("QUIT")
    s.close()
    return got, (code, text), final


def test_relay_trusted(d):
    before = set(queue_ids(d))
    got, _, final = send_raw(d, ["<carol@other.test>"],
                             b"Subject: relay\r\n\r\nrelayed\r\n.\r\n")
    t.eq(got[0][0], 250, "mynetworks client (127.0.0.1): relay to "
         "other.test accepted")
    t.eq(final and final[0], 250, "  and queued")
    new = sorted(set(queue_ids(d)) - before)
    if t.eq(len(new), 1, "  one new message"):
        t.eq(envelope(read_queue(d, new[0])[0])[1], ["carol@other.test"],
             "  envelope recipient carol@other.test")
    forms = [("<user%other@example.test>", 553), ("<user!other@example.test>",
                                                   553),
             ("<user%other@other.test>", 554), ("<@a.test:u@other.test>", 554),
             ("<\"quoted\"@other.test>", 554), ("<u@other.test.>", 554),
             ("<u@[192.0.2.1]>", 554), ("<u@[127.0.0.1]>", 554)]
    before = queue_ids(d)
    for addr, want in forms:
        s = Smtp(d.smtp_port)
        s.cmd("EHLO client.test")
        s.cmd("MAIL FROM:<sender@other.test>")
        code, text = s.cmd("RCPT TO:" + addr)
        t.eq(code, want, "never relayed, even for 127.0.0.1: %s (%s)" %
             (addr, text))
        s.cmd("QUIT")
        s.close()
    t.eq(queue_ids(d), before, "  nothing queued for them")


def test_smuggling(d):
    before = queue_ids(d)
    data = (b"Subject: smuggle\r\n\r\nhello\n.\nMAIL FROM:<evil@x.test>\r\n"
            b"RCPT TO:<bob@example.test>\r\nDATA\r\nsmuggled\r\n.\r\n")
    s = Smtp(d.smtp_port)
    s.cmd("EHLO client.test")
    s.cmd("MAIL FROM:<sender@other.test>")
    s.cmd("RCPT TO:<alice@example.test>")
    t.eq(s.cmd("DATA")[0], 354, "DATA: 354")
    s.send(data)
    t.eq(s.reply(), (550, ["5.6.0 Message contains bare CR or LF characters, "
                           "refused"]),
         "bare LF: '\\n.\\n' does not end the message; refused at CRLF.CRLF")
    t.eq(s.cmd("NOOP")[0], 250, "  the next reply is NOOP's: nothing was "
         "smuggled in")
    s.cmd("QUIT")
    s.close()
    t.eq(queue_ids(d), before, "  nothing queued (the engine refuses the "
         "whole message)")
    got, dr, final = send_raw(d, ["<alice@example.test>"],
                              b"Subject: cr\r\n\r\nbare\rcr\r\n.\r\n")
    t.eq(final and final[0], 550, "bare CR in DATA: 550")


def test_size(d):
    s = Smtp(d.smtp_port)
    s.cmd("EHLO client.test")
    t.eq(s.cmd("MAIL FROM:<a@other.test> SIZE=%d" % SIZE_LIMIT)[0], 250,
         "MAIL SIZE=N: 250")
    s.cmd("RSET")
    t.eq(s.cmd("MAIL FROM:<a@other.test> SIZE=%d" % (SIZE_LIMIT + 1)),
         (552, "5.3.4 Message size exceeds fixed limit"),
         "MAIL SIZE=N+1: 552 5.3.4")
    s.cmd("QUIT")
    s.close()

    def body(n):
        head = b"Subject: size\r\n\r\n"
        fill = n - len(head) - 2
        return head + b"x" * fill + b"\r\n"
    before = set(queue_ids(d))
    _, _, final = send_raw(d, ["<alice@example.test>"],
                           body(SIZE_LIMIT) + b".\r\n")
    t.eq(final and final[0], 250, "a message of N bytes: 250")
    new = sorted(set(queue_ids(d)) - before)
    if t.eq(len(new), 1, "  queued"):
        r = split_received(read_queue(d, new[0])[1])
        t.eq(r and r[1], body(SIZE_LIMIT), "  its bytes after Received:")
    before = set(queue_ids(d))
    _, _, final = send_raw(d, ["<alice@example.test>"],
                           body(SIZE_LIMIT + 1) + b".\r\n")
    t.eq(final, (552, ["5.3.4 Message size exceeds fixed limit"]),
         "N+1 bytes: read to the end, then 552 5.3.4")
    big = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 50
    _, _, final = send_raw(d, ["<alice@example.test>"], big + b".\r\n")
    t.eq(final and final[0], 552, "50 KB: 552")
    t.eq(set(queue_ids(d)), before, "  nothing queued")


def test_bdat(d):
    before = set(queue_ids(d))
    msg = b"Subject: bdat\r\n\r\nchunk one\r\n.dot as is\r\n"
    s = Smtp(d.smtp_port)
    s.cmd("EHLO client.test")
    s.cmd("MAIL FROM:<sender@other.test>")
    s.cmd("RCPT TO:<bob@example.test>")
    s.send(b"BDAT %d\r\n" % 20 + msg[:20])
    t.eq(s.reply()[0], 250, "BDAT first chunk: 250")
    s.send(b"BDAT %d LAST\r\n" % (len(msg) - 20) + msg[20:])
    code, lines = s.reply()
    t.eq(code, 250, "BDAT LAST: 250 (%s)" % lines)
    s.cmd("QUIT")
    s.close()
    new = sorted(set(queue_ids(d)) - before)
    if t.eq(len(new), 1, "  queued"):
        r = split_received(read_queue(d, new[0])[1])
        t.eq(r and (r[0][1], r[1]), (b"ESMTP", msg),
             "  content as sent (no dot-unstuffing for BDAT)")


def test_errors(d):
    s = Smtp(d.smtp_port)
    s.cmd("EHLO client.test")
    for i in range(ERROR_LIMIT - 1):
        s.cmd("BOGUS")
    t.eq(s.cmd("NOOP")[0], 250, "%d errors: still served" % (ERROR_LIMIT - 1))
    code, text = s.cmd("BOGUS")
    if code != 421:
        code, _ = s.reply()
    t.eq(code, 421, "error %d (smtpd_hard_error_limit): 421" % ERROR_LIMIT)
    t.eq(s.reply()[0], 0, "  and the connection is closed")
    s.close()


def test_swaks(d):
    before = set(queue_ids(d))
    r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port",
                        str(d.smtp_port), "--helo", "swaks.test", "--from",
                        "s@other.test", "--to", "alice@example.test",
                        "--header", "Subject: swaks plain"],
                       capture_output=True, timeout=60)
    t.eq(r.returncode, 0, "swaks: plain")
    r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port",
                        str(d.smtp_port), "--tls", "--helo", "swaks.test",
                        "--from", "s@other.test", "--to",
                        "bob@example.test", "--header", "Subject: swaks tls"],
                       capture_output=True, timeout=60)
    t.eq(r.returncode, 0, "swaks: --tls")
    new = sorted(set(queue_ids(d)) - before)
    if t.eq(len(new), 2, "  two messages queued"):
        protos = [split_received(read_queue(d, q)[1])[0][1] for q in new]
        t.eq(protos, [b"ESMTP", b"ESMTPS"], "  with ESMTP, then ESMTPS")
    r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port",
                        str(d.smtp_port), "--from", "s@other.test", "--to",
                        "nobody@example.test"], capture_output=True,
                       timeout=60)
    t.ok(r.returncode != 0 and b"550 5.1.1" in r.stdout,
         "swaks: unknown user refused with 550 5.1.1")


def test_privileges(d):
    procs = [p for p in d.processes() if "-X smtpd" in p["cmdline"]]
    if not t.eq(len(procs), 1, "one smtpd process (smtpd_processes = 1)"):
        return
    p = procs[0]
    if ROOT:
        import pwd
        uid = pwd.getpwnam("loft").pw_uid
        t.eq(p["uid"], (uid,) * 4, "smtpd runs as mail_owner loft")
        t.eq(p["status"].get("NoNewPrivs"), "1", "  with no_new_privs")
        st = os.stat(d.queue)
        t.ok(st.st_uid == uid and (st.st_mode & 0o777) == 0o700,
             "queue_directory: owned by loft, mode 0700")
    else:
        t.ok(True, "not root: no uid switch")


def test_kill(d):
    pids = smtpd_pids(d)
    before = queue_ids(d)
    s = Smtp(d.smtp_port)
    s.cmd("EHLO client.test")
    s.cmd("MAIL FROM:<sender@other.test>")
    s.cmd("RCPT TO:<alice@example.test>")
    t.eq(s.cmd("DATA")[0], 354, "kill test: DATA 354")
    s.send(b"Subject: killed\r\n\r\n" + b"z" * 500 + b"\r\n")
    time.sleep(0.3)
    tmp = os.listdir(os.path.join(d.queue, "tmp"))
    t.ok(len(tmp) >= 1, "  the transaction's file is in tmp/")
    os.kill(pids[0], signal.SIGKILL)
    t.eq(s.reply()[0], 0, "  kill -9 of smtpd: the client sees the "
         "connection end, no reply")
    s.close()
    t.eq(queue_ids(d), before, "  no message in the queue")
    deadline = time.monotonic() + 20
    new = []
    while time.monotonic() < deadline:
        new = [p for p in smtpd_pids(d) if p not in pids]
        if new:
            break
        time.sleep(0.1)
    t.ok(new, "  the master started a new smtpd process")
    got, _, final = None, None, None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            got, _, final = send_raw(d, ["<alice@example.test>"],
                                     b"Subject: after\r\n\r\nok\r\n.\r\n")
            if final and final[0] == 250:
                break
        except OSError:
            pass
        time.sleep(0.2)
    t.eq(final and final[0], 250, "  and mail is accepted again")


def test_untrusted(env):
    """A second daemon whose mynetworks excludes 127.0.0.1."""
    d = env.start_loftd("mynetworks = 192.0.2.0/24\nsmtpd_timeout = 1s\n",
                        pop3=False, pop3s=False, smtp=True)
    s = Smtp(d.smtp_port)
    s.cmd("EHLO client.test")
    s.cmd("MAIL FROM:<sender@other.test>")
    t.eq(s.cmd("RCPT TO:<carol@other.test>"),
         (554, "5.7.1 <carol@other.test>: Relay access denied"),
         "client outside mynetworks: 554 5.7.1 Relay access denied")
    t.ok(d.wait_log(r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: "
                    r"554 5\.7\.1 <carol@other\.test>: Relay access denied; "
                    r"from=<sender@other\.test> to=<carol@other\.test> "
                    r"proto=ESMTP helo=<client\.test>"),
         "log: NOQUEUE: reject: RCPT ... Relay access denied")
    t.eq(s.cmd("RCPT TO:<alice@example.test>")[0], 250,
         "  local recipient still accepted")
    t.eq(s.reply(), (421, ["4.4.2 test.example.org Error: timeout exceeded"]),
         "silent client: 421 4.4.2 after smtpd_timeout")
    s.close()
    t.ok(d.wait_log(r"timeout after RCPT from unknown\[127\.0\.0\.1\]"),
         "log: timeout after RCPT")
    t.eq(env.stop_loftd(), 0, "second loftd stops cleanly")


def main():
    env = setup()
    try:
        d = env.start_loftd("", pop3=False, pop3s=False, smtp=True)
    except RuntimeError as e:
        t.ok(False, "loftd starts: %s" % e)
        t.done()
    t.ok(d.wait_log(r"smtpd: connect from|starting"), "loftd started")
    for name, fn in (("ehlo", test_ehlo), ("queued", test_queued),
                     ("recipients", test_recipients),
                     ("relay", test_relay_trusted),
                     ("smuggling", test_smuggling), ("size", test_size),
                     ("bdat", test_bdat), ("errors", test_errors),
                     ("swaks", test_swaks), ("privileges", test_privileges),
                     ("kill", test_kill)):
        t.guard(name, fn, d)
    t.eq(env.stop_loftd(), 0, "loftd stops cleanly (status 0)")
    t.guard("untrusted", test_untrusted, env)
    env.cleanup()
    t.done()


main()
