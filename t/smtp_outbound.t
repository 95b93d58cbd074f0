#!/usr/bin/env python3
"""Remote delivery out of loftd's queue (qmgr_smtp): a small SMTP sink in
a thread of this test on a loopback port is loft's relayhost
([127.0.0.1]:PORT). Mail submitted with smtplib reaches the sink byte for
byte (loft's Received: line, then the message as sent, dot-unstuffing
right); three messages in a row share one connection; with the sink
slow, five messages use default_destination_concurrency_limit (2)
connections, never 3; a 450 to RCPT defers (loftctl mailq shows it) and
loftctl queue flush sends it; a 550 bounces, and the bounce reaches the
local sender (read over POP3), quoting the remote reply; a message with
a local and a remote recipient goes both ways; Postfix's log lines
(relay=, delays=, status=sent/deferred/bounced with "host X said: ...
(in reply to RCPT TO command)"); STARTTLS at smtp_tls_security_level =
encrypt, and SASL (AUTH PLAIN) with the password from a root-only
smtp_sasl_password_maps; encrypt to a server without STARTTLS defers;
a relayhost that is loft's own SMTP listener fails with "mail for DOMAIN
loops back to myself". Needs no Postfix."""
import base64
import os
import re
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import (Env, Tap, make_cert, need_loftd, pop3_all,  # noqa: E402
                  smtp_send, wait_for)

t = Tap()
need_loftd(t)

RECEIVED = re.compile(
    rb"\AReceived: from client\.test \(\[127\.0\.0\.1\]\)\r\n"
    rb"\tby test\.example\.org \(loft\) with E?SMTPS?A? id [0-9A-Z]{17}"
    rb"(?:\r\n\tfor <[^>]*>;|;\r\n\t)"
    rb" ?[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d "
    rb"[+-]\d{4}\r\n\Z")


class Sink:
    """An SMTP server in a thread: records each message (sender,
    recipients, unstuffed data, connection number, TLS, AUTH). rcpt_codes
    maps a recipient to the reply RCPT gets; delay is slept before the
    reply to the end of data; tls: a (cert, key) pair to offer STARTTLS
    with; auth: (user, password) required (AUTH PLAIN or LOGIN, offered
    after TLS when tls is set)."""

    def __init__(self, tls=None, auth=None):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.tls = tls
        self.auth = auth
        self.rcpt_codes = {}
        self.delay = 0.0
        self.msgs = []
        self.conns = 0
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
                n = self.conns
                self.active += 1
                self.max_active = max(self.max_active, self.active)
            threading.Thread(target=self.session, args=(c, n),
                             daemon=True).start()

    def session(self, sock, n):
        try:
            _SinkSession(self, sock, n).run()
        except (OSError, ssl.SSLError):
            pass
        finally:
            with self.lock:
                self.active -= 1
            try:
                sock.close()
            except OSError:
                pass


class _SinkSession:
    def __init__(self, sink, sock, n):
        self.sink, self.sock, self.n = sink, sock, n
        self.buf = b""
        self.tls = False
        self.authed = None
        self.reset()

    def reset(self):
        self.sender, self.rcpts = None, []

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                return None
            self.buf += d
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def say(self, text):
        self.sock.sendall(text.encode() + b"\r\n")

    def ehlo(self):
        ext = ["sink.test", "PIPELINING", "8BITMIME", "SIZE 10000000"]
        if self.sink.tls and not self.tls:
            ext.append("STARTTLS")
        if self.sink.auth and (self.tls or not self.sink.tls):
            ext.append("AUTH PLAIN LOGIN")
        for i, e in enumerate(ext):
            self.say("250%s%s" % (" " if i == len(ext) - 1 else "-", e))

    def starttls(self):
        self.say("220 2.0.0 go ahead")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*self.sink.tls)
        self.sock = ctx.wrap_socket(self.sock, server_side=True)
        self.tls, self.buf = True, b""
        self.reset()

    def do_auth(self, args):
        parts = args.split()
        if parts[0].upper() == "PLAIN":
            if len(parts) > 1:
                resp = parts[1]
            else:
                self.say("334 ")
                resp = self.line().decode()
            f = base64.b64decode(resp).split(b"\0")
            got = (f[1].decode(), f[2].decode())
        else:
            self.say("334 VXNlcm5hbWU6")
            u = base64.b64decode(self.line()).decode()
            self.say("334 UGFzc3dvcmQ6")
            got = (u, base64.b64decode(self.line()).decode())
        if got == self.sink.auth:
            self.authed = got
            self.say("235 2.7.0 Authentication successful")
        else:
            self.say("535 5.7.8 bad credentials %r" % (got,))

    def data(self):
        self.say("354 go on")
        lines = []
        while True:
            ln = self.line()
            if ln is None:
                return
            if ln == b".":
                break
            lines.append(ln[1:] if ln.startswith(b".") else ln)
        data = b"".join(x + b"\r\n" for x in lines)
        with self.sink.lock:
            self.sink.msgs.append({
                "sender": self.sender, "rcpts": list(self.rcpts),
                "data": data, "conn": self.n, "tls": self.tls,
                "auth": self.authed})
            qid = "SINK%d" % len(self.sink.msgs)
        time.sleep(self.sink.delay)
        self.say("250 2.0.0 Ok: queued as %s" % qid)
        self.reset()

    def run(self):
        self.say("220 sink.test ESMTP")
        while True:
            ln = self.line()
            if ln is None:
                return
            cmd = ln.decode("latin-1")
            verb = cmd.split(" ", 1)[0].upper()
            arg = cmd[len(verb) + 1:]
            if verb in ("EHLO", "HELO"):
                self.ehlo()
            elif verb == "STARTTLS" and self.sink.tls and not self.tls:
                self.starttls()
            elif verb == "AUTH" and self.sink.auth:
                self.do_auth(arg)
            elif verb == "MAIL":
                if self.sink.auth and not self.authed:
                    self.say("530 5.7.0 Authentication required")
                    continue
                self.sender = re.search(r"<([^>]*)>", arg).group(1)
                self.say("250 2.1.0 Ok")
            elif verb == "RCPT":
                addr = re.search(r"<([^>]*)>", arg).group(1)
                code = self.sink.rcpt_codes.get(addr, "250 2.1.5 Ok")
                if code.startswith("250"):
                    self.rcpts.append(addr)
                self.say(code)
            elif verb == "DATA":
                if not self.rcpts:
                    self.say("554 5.5.1 no valid recipients")
                else:
                    self.data()
            elif verb == "RSET":
                self.reset()
                self.say("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.say("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.say("221 2.0.0 Bye")
                return
            else:
                self.say("502 5.5.2 unknown command")


def send(d, rcpts, msg, sender="alice@example.test"):
    """One message over SMTP; returns its queue ID."""
    return smtp_send(d, rcpts, msg, sender)

def message(subject, body=b"Hello.\r\n"):
    return (b"From: Alice <alice@example.test>\r\nTo: x@remote.test\r\n"
            b"Subject: " + subject.encode() + b"\r\nMessage-ID: <" +
            subject.replace(" ", ".").encode() + b"@example.test>\r\n\r\n" +
            body)


def sink_msg(sink, subject, timeout=15.0):
    key = b"\r\nSubject: " + subject.encode() + b"\r\n"

    def find():
        with sink.lock:
            return [m for m in sink.msgs if key in m["data"]]
    got = wait_for(find, timeout)
    return got[0] if got else None


def new_qmgr(d, old):
    return wait_for(lambda: [p for p in d.role_pids("qmgr") if p not in old],
                    20.0)


def reconfigure(d, extra):
    old = d.role_pids("qmgr")
    d.write_conf(extra)
    d.hup()
    ok = new_qmgr(d, old)
    # The old one leaves once its idle sessions said QUIT.
    wait_for(lambda: len(d.role_pids("qmgr")) == 1, 10.0)
    return bool(ok)


SENT = (r"%s: to=<%s>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, "
        r"delay=[\d.]+, delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=2\.0\.0, "
        r"status=sent \(250 2\.0\.0 Ok: queued as SINK\d+\)")


def test_bytes(d, sink):
    body = (b"Line one.\r\n.starts with a dot\r\n..two dots\r\n.\r\n"
            b"\r\nlast line without dot\r\n" + b"x" * 900 + b"\r\n")
    msg = message("exact bytes", body)
    qid = send(d, ["exact@remote.test"], msg)
    got = sink_msg(sink, "exact bytes")
    t.ok(got is not None, "the sink received the message")
    if got is None:
        return
    t.eq(got["rcpts"], ["exact@remote.test"], "  envelope recipient")
    t.eq(got["sender"], "alice@example.test", "  envelope sender")
    data = got["data"]
    t.ok(data.endswith(msg), "  the message byte for byte after loft's "
         "header (dot-stuffing undone right)")
    t.ok(RECEIVED.match(data[:len(data) - len(msg)]) is not None,
         "  preceded by exactly loft's Received: line")
    t.ok(d.wait_log(SENT % (qid, r"exact@remote\.test", sink.port)),
         "  logged as Postfix does: relay=, delays=, status=sent (250 ...)")
    t.ok(wait_for(lambda: qid not in d.queue_ids()), "  and removed from "
         "the queue")


def test_reuse(d, sink):
    with sink.lock:
        sink.msgs.clear()
    for i in range(3):
        send(d, ["reuse%d@remote.test" % i], message("reuse %d" % i))
        sink_msg(sink, "reuse %d" % i)
    got = [sink_msg(sink, "reuse %d" % i) for i in range(3)]
    t.ok(all(got), "three messages in a row reach the sink")
    if all(got):
        t.eq(len({m["conn"] for m in got}), 1,
             "  over one connection (kept between messages)")


def test_concurrency(d, sink):
    with sink.lock:
        sink.max_active = sink.active
    sink.delay = 1.0
    before = sink.conns
    qids = []
    s = smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10)
    s.ehlo("client.test")
    for i in range(5):
        s.mail("alice@example.test")
        s.rcpt("conc%d@remote.test" % i)
        code, text = s.data(message("conc %d" % i))
        qids.append(text)
    s.quit()
    got = [sink_msg(sink, "conc %d" % i, 30.0) for i in range(5)]
    sink.delay = 0.0
    t.ok(all(got), "five messages while the sink is slow: all delivered")
    t.eq(sink.max_active, 2, "  at most default_destination_concurrency_"
         "limit (2) sessions at once, and that many used")
    if all(got):
        t.eq(len({m["conn"] for m in got}), 2, "  over two connections")
    t.ok(sink.conns - before <= 2, "  no third one made (%d new)" %
         (sink.conns - before))


def mailq(env):
    r = env.ctl("mailq")
    return r.stdout.decode("utf-8", "replace")


def test_defer_flush(d, env, sink):
    sink.rcpt_codes["later@remote.test"] = "450 4.2.0 try later"
    qid = send(d, ["later@remote.test"], message("later"))
    t.ok(d.wait_log(r"%s: to=<later@remote\.test>, relay=127\.0\.0\.1"
                    r"\[127\.0\.0\.1\]:%d, delay=[\d.]+, delays=[\d./]+, "
                    r"dsn=4\.2\.0, status=deferred \(host 127\.0\.0\.1"
                    r"\[127\.0\.0\.1\] said: 450 4\.2\.0 try later \(in reply"
                    r" to RCPT TO command\)\)" % (qid, sink.port)),
         "450 to RCPT: deferred, logged with the remote reply")
    q = mailq(env)
    t.ok(qid in q and "later@remote.test" in q and "try later" in q,
         "  loftctl mailq lists it with the reason")
    env_text = wait_for(lambda: d.queue_envelope(qid))
    t.ok(env_text and "state deferred" in env_text, "  envelope: deferred")
    del sink.rcpt_codes["later@remote.test"]
    mark = d.mark()
    r = env.ctl("queue", "flush")
    t.eq(r.returncode, 0, "loftctl queue flush")
    t.ok(d.wait_log(SENT % (qid, r"later@remote\.test", sink.port),
                    since=mark), "  then sent")
    t.ok(wait_for(lambda: qid not in d.queue_ids()), "  and removed")
    t.ok(sink_msg(sink, "later") is not None, "  the sink has it")


def test_bounce(d, env, sink):
    sink.rcpt_codes["nobody@remote.test"] = "550 5.1.1 no such user"
    before = len(pop3_all(d, "alice"))
    qid = send(d, ["nobody@remote.test"], message("refused"))
    t.ok(d.wait_log(r"%s: to=<nobody@remote\.test>, relay=127\.0\.0\.1"
                    r"\[127\.0\.0\.1\]:%d, .*dsn=5\.1\.1, status=bounced "
                    r"\(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.1\.1 "
                    r"no such user \(in reply to RCPT TO command\)\)" %
                    (qid, sink.port)),
         "550 to RCPT: bounced, logged with the remote reply")
    t.ok(d.wait_log(r"%s: sender non-delivery notification: [0-9A-Z]{17}" %
                    qid), "  a bounce is queued")
    t.ok(d.wait_log(r"%s: removed" % qid), "  the message is removed")
    got = wait_for(lambda: len(pop3_all(d, "alice")) > before and
                   pop3_all(d, "alice"))
    t.ok(got and any(b"550 5.1.1 no such user" in m for m in got[before:]),
         "  alice reads the bounce over POP3, quoting the remote reply")


def test_early_bounce(d, env, sink):
    """One recipient refused, one deferred: the sender hears of the
    refused one at once, and only once, while the other waits."""
    sink.rcpt_codes["gone@remote.test"] = "550 5.1.1 gone for good"
    sink.rcpt_codes["slow@remote.test"] = "450 4.2.0 come back later"
    before = len(pop3_all(d, "alice"))
    qid = send(d, ["gone@remote.test", "slow@remote.test"],
               message("half refused"))
    t.ok(d.wait_log(r"%s: sender non-delivery notification: [0-9A-Z]{17}" %
                    qid), "a refused and a deferred recipient: the bounce "
         "goes out at once")
    got = wait_for(lambda: len(pop3_all(d, "alice")) > before and
                   pop3_all(d, "alice"))
    new = got[before:] if got else []
    t.ok(len(new) == 1 and b"gone@remote.test" in new[0] and
         b"slow@remote.test" not in new[0],
         "  alice reads it: about the refused recipient only")
    env_text = d.queue_envelope(qid) or ""
    t.ok(re.search(r"rcpt <gone@remote\.test>\n(?:.*\n)*?state bounced\n",
                   env_text) and
         re.search(r"rcpt <slow@remote\.test>\n(?:.*\n)*?state deferred\n",
                   env_text), "  the message stays queued: one bounced, "
         "one deferred")
    del sink.rcpt_codes["slow@remote.test"]
    mark = d.mark()
    env.ctl("queue", "flush")
    t.ok(d.wait_log(SENT % (qid, r"slow@remote\.test", sink.port),
                    since=mark), "  flushed: the deferred one is sent")
    t.ok(wait_for(lambda: qid not in d.queue_ids()), "  and the message "
         "removed")
    time.sleep(0.5)
    t.eq(len(pop3_all(d, "alice")), before + 1,
         "  no second bounce for the refused one")
    t.ok(not re.search(r"%s: sender non-delivery notification" % qid,
                       d.log(since=mark)), "  (none logged)")


def test_mixed(d, env, sink):
    qid = send(d, ["bob@example.test", "far@remote.test"], message("mixed"))
    got = sink_msg(sink, "mixed")
    t.ok(got is not None and got["rcpts"] == ["far@remote.test"],
         "local + remote: the sink gets the remote recipient only")
    t.ok(d.wait_log(r"%s: to=<bob@example\.test>, relay=local, .*"
                    r"status=sent" % qid), "  bob's copy delivered locally")
    t.ok(wait_for(lambda: qid not in d.queue_ids()), "  removed once both "
         "are done")
    mine = [m for m in pop3_all(d, "bob") if b"Subject: mixed\r\n" in m]
    t.eq(len(mine), 1, "  bob reads it over POP3")


def test_tls_sasl(d, env):
    cert = make_cert(env.dir, prefix="sink-")
    sink2 = Sink(tls=cert, auth=("relayuser", "pa:ss word"))
    pw = os.path.join(env.dir, "sasl_passwd")
    with open(pw, "w") as f:
        f.write("# relay credentials\n\n[127.0.0.1]:%d relayuser:pa:ss "
                "word\n" % sink2.port)
    os.chmod(pw, 0o600)
    extra = ("relayhost = [127.0.0.1]:%d\nsmtp_tls_security_level = "
             "encrypt\nsmtp_sasl_auth_enable = yes\n"
             "smtp_sasl_password_maps = %s\n" % (sink2.port, pw))
    t.ok(reconfigure(d, BASE + extra), "reload with encrypt and SASL")
    qid = send(d, ["secure@remote.test"], message("secure"))
    got = sink_msg(sink2, "secure")
    t.ok(got is not None, "the message went through STARTTLS + AUTH")
    if got:
        t.ok(got["tls"], "  inside TLS")
        t.eq(got["auth"], ("relayuser", "pa:ss word"), "  authenticated "
             "with the smtp_sasl_password_maps entry of [host]:port")
    t.ok(d.wait_log(SENT % (qid, r"secure@remote\.test", sink2.port)),
         "  logged as sent")
    if os.geteuid() == 0:
        st = os.stat(pw)
        t.ok(st.st_uid == 0 and st.st_mode & 0o077 == 0, "  (the password "
             "file is root's, mode 0600: read before the privilege drop)")
    # encrypt against a server without STARTTLS: deferred.
    plain = Sink()
    extra = ("relayhost = [127.0.0.1]:%d\nsmtp_tls_security_level = "
             "encrypt\n" % plain.port)
    t.ok(reconfigure(d, BASE + extra), "reload: encrypt, server without "
         "STARTTLS")
    qid = send(d, ["notls@remote.test"], message("no tls"))
    t.ok(d.wait_log(r"%s: to=<notls@remote\.test>, relay=none, .*"
                    r"status=deferred" % qid), "  deferred")
    t.eq(plain.msgs, [], "  and nothing was sent in plaintext")


def test_loop(d, env):
    extra = "relayhost = [127.0.0.1]:%d\n" % d.smtp_port
    t.ok(reconfigure(d, BASE + extra), "reload: relayhost is loft itself")
    qid = send(d, ["x@loop.test"], message("looping"))
    t.ok(d.wait_log(r"%s: to=<x@loop\.test>, relay=none, .*dsn=5\.4\.6, "
                    r"status=bounced \(mail for loop\.test loops back to "
                    r"myself\)" % qid),
         "mail for loop.test loops back to myself (5.4.6)")


BASE = """smtp_tls_security_level = may
default_destination_concurrency_limit = 2
smtp_connection_cache_time_limit = 5s
"""


def main():
    env = Env("maildir", extra="mydestination = localhost, example.test\n"
              "disable_plaintext_auth = no\n")
    for u in ("alice", "bob"):
        env.add_user(u)
    sink = Sink()
    try:
        d = env.start_loftd(BASE + "relayhost = [127.0.0.1]:%d\n" %
                            sink.port, smtp=True, pop3s=False, qmgr=True)
    except RuntimeError as e:
        t.ok(False, "loftd starts: %s" % e)
        t.done()
    t.ok(wait_for(lambda: d.role_pids("qmgr")), "loftd runs a qmgr process")
    for name, fn, args in (("bytes", test_bytes, (d, sink)),
                           ("reuse", test_reuse, (d, sink)),
                           ("concurrency", test_concurrency, (d, sink)),
                           ("defer", test_defer_flush, (d, env, sink)),
                           ("bounce", test_bounce, (d, env, sink)),
                           ("early bounce", test_early_bounce,
                            (d, env, sink)),
                           ("mixed", test_mixed, (d, env, sink)),
                           ("tls", test_tls_sasl, (d, env)),
                           ("loop", test_loop, (d, env))):
        t.guard(name, fn, *args)
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "postfix"],
                       capture_output=True)
    t.diag("no Postfix used (postfix package: %s)" %
           (r.stdout.decode().strip() or "not installed"))
    t.eq(env.stop_loftd(), 0, "loftd stops cleanly (status 0)")
    env.cleanup()
    t.done()


main()
