#!/usr/bin/env python3
"""loftd's submission side: submission_listen (587) requires STARTTLS
before AUTH and AUTH before MAIL (530 5.7.0); after STARTTLS and AUTH
PLAIN as alice, mail to another domain is relayed (queued, with ESMTPSA
and sasl_username in the log); a wrong password is 535 5.7.8, logged and
counted by the auth process (the next failure is answered later);
submissions_listen (465) speaks TLS from the first byte and works the
same way; plaintext pipelined behind STARTTLS is never run as a command;
port 25 offers AUTH after STARTTLS without requiring it; swaks submits
with --tls --auth."""
import base64
import os
import re
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Smtp, Tap, need_loftd, tls_client_context  # noqa: E402

t = Tap()
need_loftd(t)
CONF = "mydestination = localhost, example.test\nmynetworks = 192.0.2.0/24\n"


def queue_ids(d):
    try:
        return sorted(os.listdir(os.path.join(d.queue, "env")))
    except FileNotFoundError:
        return []


def read_queue(d, qid):
    with open(os.path.join(d.queue, "env", qid), "rb") as f:
        env = f.read().decode()
    with open(os.path.join(d.queue, "data", qid), "rb") as f:
        return env, f.read()


def plain(user, password):
    return base64.b64encode(b"\0" + user.encode() + b"\0" +
                            password.encode()).decode()


def test_before_tls(d):
    s = Smtp(d.submission_port)
    s.send("EHLO client.test\r\n")
    code, lines = s.reply()
    t.ok(code == 250 and "STARTTLS" in lines and
         not any(ln.startswith("AUTH") for ln in lines),
         "587 before TLS: STARTTLS offered, AUTH not")
    code, text = s.cmd("MAIL FROM:<alice@example.test>")
    t.eq(code, 530, "MAIL before STARTTLS and AUTH: 530 (%s)" % text)
    t.ok(text.startswith("5.7.0"), "  5.7.0")
    code, text = s.cmd("AUTH PLAIN " + plain("alice", "secret"))
    t.ok(code >= 500, "AUTH before STARTTLS refused: %d %s" % (code, text))
    s.cmd("QUIT")
    s.close()


def test_tls_auth(d):
    before = set(queue_ids(d))
    s = smtplib.SMTP("127.0.0.1", d.submission_port, timeout=10)
    s.ehlo("client.test")
    s.starttls(context=tls_client_context(d.cert))
    s.ehlo("client.test")
    t.ok("auth" in s.esmtp_features, "after STARTTLS: AUTH offered")
    code, text = s.docmd("MAIL FROM:<alice@example.test>")
    t.eq((code, text), (530, b"5.7.0 Authentication required"),
         "MAIL before AUTH: 530 5.7.0 Authentication required")
    code, text = s.login("alice", "secret")
    t.eq(code, 235, "AUTH PLAIN as alice: 235")
    s.mail("alice@example.test")
    code, _ = s.rcpt("carol@other.test")
    t.eq(code, 250, "authenticated: relay to other.test accepted")
    code, text = s.data(b"Subject: submitted\r\n\r\nhi\r\n")
    t.eq(code, 250, "  DATA: 250")
    s.quit()
    new = sorted(set(queue_ids(d)) - before)
    if not t.eq(len(new), 1, "  queued"):
        return
    env, data = read_queue(d, new[0])
    t.ok("sender <alice@example.test>" in env and
         "rcpt <carol@other.test>" in env, "  envelope")
    t.ok(re.match(rb"Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n"
                  rb"\tby test\.example\.org \(loft\) with ESMTPSA id ", data),
         "  Received: ... with ESMTPSA")
    t.ok(d.wait_log(r"smtpd: %s: client=unknown\[127\.0\.0\.1\], "
                    r"sasl_method=PLAIN, sasl_username=alice" % new[0]),
         "log: client=..., sasl_method=PLAIN, sasl_username=alice")


def test_wrong_password(d):
    s = smtplib.SMTP("127.0.0.1", d.submission_port, timeout=20)
    s.ehlo("client.test")
    s.starttls(context=tls_client_context(d.cert))
    s.ehlo("client.test")
    times = []
    for i in range(2):
        start = time.monotonic()
        code, text = s.docmd("AUTH", "PLAIN " + plain("alice", "wrong"))
        times.append(time.monotonic() - start)
        t.eq((code, text[:5]), (535, b"5.7.8"),
             "wrong password %d: 535 5.7.8 (%s)" % (i + 1, text.decode()))
    t.ok(times[1] >= 0.9, "  the second failure is answered later "
         "(%.2f s, then %.2f s): counted per IP and user" % tuple(times))
    s.quit()
    t.ok(len(re.findall(r"submission login failed: user=<alice>, "
                        r"rip=127\.0\.0\.1", d.log())) >= 2,
         "log: submission login failed: user=<alice>, rip=127.0.0.1")
    t.ok("wrong" not in d.log().replace("wrong password", ""),
         "log: no password")


def test_submissions(d):
    before = set(queue_ids(d))
    s = smtplib.SMTP_SSL("127.0.0.1", d.submissions_port, timeout=10,
                         context=tls_client_context(d.cert))
    s.ehlo("client.test")
    t.ok("auth" in s.esmtp_features and "starttls" not in s.esmtp_features,
         "465: TLS from the first byte; AUTH offered, no STARTTLS")
    code, text = s.docmd("MAIL FROM:<bob@example.test>")
    t.eq(code, 530, "465: MAIL before AUTH: 530")
    t.eq(s.login("bob", "secret")[0], 235, "465: AUTH as bob")
    s.mail("bob@example.test")
    t.eq(s.rcpt("dave@other.test")[0], 250, "465: relay accepted")
    t.eq(s.data(b"Subject: 465\r\n\r\nhi\r\n")[0], 250, "465: queued")
    s.quit()
    t.eq(len(set(queue_ids(d)) - before), 1, "  one message in the queue")


def test_pipelined_plaintext(d):
    s = Smtp(d.submission_port)
    s.cmd("EHLO client.test")
    # One write: STARTTLS and, behind it, plaintext an attacker in the
    # path could have added.
    s.send("STARTTLS\r\nAUTH PLAIN %s\r\nMAIL FROM:<evil@other.test>\r\n" %
           plain("alice", "secret"))
    code, _ = s.reply()
    t.eq(code, 220, "STARTTLS with pipelined plaintext: 220")
    t.eq(s.buf, b"", "  nothing after 220 in plaintext")
    s.sock = tls_client_context(d.cert).wrap_socket(
        s.sock, server_hostname="localhost")
    s.send("EHLO client.test\r\n")
    code, lines = s.reply()
    t.ok(code == 250 and lines[0] == "test.example.org",
         "  the first reply inside TLS is EHLO's (the pipelined commands "
         "were dropped)")
    t.eq(s.cmd("MAIL FROM:<alice@example.test>"),
         (530, "5.7.0 Authentication required"),
         "  not authenticated by the dropped AUTH")
    s.cmd("QUIT")
    s.close()


def test_port25_auth(d):
    s = smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10)
    s.ehlo("client.test")
    t.ok("auth" not in s.esmtp_features, "25: no AUTH before STARTTLS")
    code, _ = s.docmd("MAIL FROM:<x@other.test>")
    t.eq(code, 250, "25: MAIL without AUTH: 250")
    t.eq(s.rcpt("carol@other.test")[0], 554, "25: unauthenticated relay "
         "from outside mynetworks: 554")
    s.rset()
    s.starttls(context=tls_client_context(d.cert))
    s.ehlo("client.test")
    t.ok("auth" in s.esmtp_features, "25 after STARTTLS: AUTH offered")
    t.eq(s.login("alice", "secret")[0], 235, "25: AUTH as alice")
    s.mail("alice@example.test")
    t.eq(s.rcpt("carol@other.test")[0], 250, "25: authenticated relay: 250")
    s.quit()


def test_swaks(d):
    before = set(queue_ids(d))
    r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port",
                        str(d.submission_port), "--tls", "--auth", "PLAIN",
                        "--auth-user", "alice", "--auth-password", "secret",
                        "--from", "alice@example.test", "--to",
                        "erin@other.test"], capture_output=True, timeout=60)
    t.eq(r.returncode, 0, "swaks --tls --auth on 587")
    t.eq(len(set(queue_ids(d)) - before), 1, "  queued")
    r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port",
                        str(d.submission_port), "--tls", "--from",
                        "alice@example.test", "--to", "erin@other.test"],
                       capture_output=True, timeout=60)
    t.ok(r.returncode != 0 and b"530 5.7.0" in r.stdout,
         "swaks --tls without --auth on 587: 530 5.7.0")


def main():
    env = Env("maildir", extra=CONF)
    env.add_user("alice")
    env.add_user("bob")
    try:
        d = env.start_loftd("", pop3=False, pop3s=False, smtp=True,
                            submission=True, submissions=True)
    except RuntimeError as e:
        t.ok(False, "loftd starts: %s" % e)
        t.done()
    for name, fn in (("before_tls", test_before_tls),
                     ("tls_auth", test_tls_auth),
                     ("wrong_password", test_wrong_password),
                     ("submissions", test_submissions),
                     ("pipelined", test_pipelined_plaintext),
                     ("port25", test_port25_auth), ("swaks", test_swaks)):
        t.guard(name, fn, d)
    t.eq(env.stop_loftd(), 0, "loftd stops cleanly (status 0)")
    env.cleanup()
    t.done()


main()
