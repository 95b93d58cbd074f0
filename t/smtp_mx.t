#!/usr/bin/env python3
"""Outbound routing by MX (smtp/smtp_mx.c, server/loftd/qmgr_smtp.c)
through a resolver configured for the test, with no relayhost.

loft asks the system resolver (glibc, /etc/resolv.conf), and the machine's
configuration must not change: so the test re-runs itself inside private
network, mount and PID namespaces (unshare as root), where the loopback
is brought up, a resolv.conf of the test is bind-mounted over
/etc/resolv.conf (seen by this namespace alone), and dnsmasq serves the
test zone on 127.0.0.1:53. The namespace has its own port 25 on every
127.0.0.0/8 address: small SMTP sinks of this script listen on
127.0.0.2:25, .3, .5, .6, loft's smtpd on 127.0.0.1:25. When the script
ends, the kernel ends every process of the namespace.

Checked, each by the bytes a sink received and by loft's maillog line
(relay=host[ip]:25, dsn=, status=): MX preference (the lower one wins
whatever the answer order; the lower one refusing connections -> the
next one); a domain without MX -> its own A record (implicit MX); a
domain that does not exist -> bounced, 5.1.2 "Host or domain name not
found. Name service error for name=nx.test type=MX: Host not found" (as
Postfix words it: the name and the record type); an MX host without
address -> bounced 5.4.4; SERVFAIL -> deferred 4.4.3 (mailq shows it);
the null MX (RFC 7505) -> bounced 5.1.10; an MX that is loft itself
(not in mydestination) -> bounced 5.4.6 "mail for X loops back to
myself", also when a sink shares its preference, while loft as a worse
MX than a working sink is no loop, and loft as a worse MX than a dead
host is cut (deferred, never sent to itself).

Skipped (with the reason) unless run as root with unshare, mount, ip
and dnsmasq (conf/install-deps installs dnsmasq-base)."""
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import (Env, Tap, ensure_login_user, need_loftd,  # noqa: E402
                  smtp_send, wait_for, wait_port)

t = Tap()
need_loftd(t)

NS_ENV = "LOFT_MX_NETNS"	# inode of the machine's net namespace
DNSMASQ = shutil.which("dnsmasq", path="/usr/sbin:/usr/bin:/sbin:/bin")
SERVFAIL_PORT = 5300

# The test zone. Where an order could hide a bug, the worse MX comes
# first in the answer (dnsmasq answers the last one given first; the
# test checks the order it got).
ZONE = [
    # Preference: 20 first in the answer, 10 must win.
    "--mx-host=pref.test,mx10.pref.test,10",
    "--mx-host=pref.test,mx20.pref.test,20",
    "--host-record=mx10.pref.test,127.0.0.2",
    "--host-record=mx20.pref.test,127.0.0.3",
    # The best one refuses connections (nothing listens on .4).
    "--mx-host=backup.test,mx10.backup.test,10",
    "--mx-host=backup.test,mx20.backup.test,20",
    "--host-record=mx10.backup.test,127.0.0.4",
    "--host-record=mx20.backup.test,127.0.0.5",
    # No MX: the domain's own address.
    "--host-record=nomx.test,127.0.0.6",
    # An MX host that has no address.
    "--mx-host=ghost.test,nowhere.ghost.test,10",
    # RFC 7505 null MX.
    "--mx-host=nullmx.test,.,0",
    # loft itself (its smtpd listens on 127.0.0.1:25).
    "--host-record=me.loop.test,127.0.0.1",
    "--mx-host=loop.test,me.loop.test,10",
    # loft as a worse MX than a working sink: no loop.
    "--mx-host=secondary.test,mx10.pref.test,10",
    "--mx-host=secondary.test,me.loop.test,20",
    # loft with the same preference as a sink: cut with it (Postfix).
    "--mx-host=equal.test,me.loop.test,10",
    "--mx-host=equal.test,mx10.pref.test,10",
    # loft as a worse MX than a dead host: cut, the dead one defers.
    "--mx-host=deadfirst.test,mx10.backup.test,10",
    "--mx-host=deadfirst.test,me.loop.test,20",
    # Everything else under .test does not exist (NXDOMAIN), but
    # fail.test goes to an upstream that answers SERVFAIL.
    "--local=/test/",
    "--server=/fail.test/127.0.0.1#%d" % SERVFAIL_PORT,
]


def netns_inode():
    return os.stat("/proc/self/ns/net").st_ino


def missing_tools():
    for tool in ("unshare", "mount", "ip"):
        if shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            return "%s not found" % tool
    if DNSMASQ is None:
        return "dnsmasq not found (conf/install-deps installs dnsmasq-base)"
    return None


def enter_namespace():
    """Outside: re-run this script in new namespaces and exit with its
    status. Inside: return (after checking that it is another net
    namespace than the machine's)."""
    outer = os.environ.get(NS_ENV)
    if outer is not None:
        if str(netns_inode()) == outer:
            t.skip_all("unshare did not give a new network namespace")
        return
    if os.geteuid() != 0:
        t.skip_all("not root (needs unshare -n -m for a private resolver)")
    why = missing_tools()
    if why:
        t.skip_all(why)
    probe = subprocess.run(["unshare", "-n", "-m", "true"],
                           capture_output=True)
    if probe.returncode != 0:
        t.skip_all("unshare -n -m fails: %s" %
                   probe.stderr.decode(errors="replace").strip())
    env = dict(os.environ)
    env[NS_ENV] = str(netns_inode())
    sys.stdout.flush()
    os.execvpe("unshare", ["unshare", "--net", "--mount", "--pid", "--fork",
                           "--mount-proc", "--propagation", "private",
                           sys.executable, os.path.abspath(__file__)], env)


def setup_namespace(tmpdir):
    """Loopback up, our resolv.conf over /etc/resolv.conf (this mount
    namespace only). None, or why it failed."""
    r = subprocess.run(["ip", "link", "set", "lo", "up"],
                       capture_output=True)
    if r.returncode != 0:
        return "ip link set lo up: %s" % r.stderr.decode(errors="replace")
    conf = os.path.join(tmpdir, "resolv.conf")
    with open(conf, "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
    os.chmod(conf, 0o644)
    r = subprocess.run(["mount", "--bind", conf, "/etc/resolv.conf"],
                       capture_output=True)
    if r.returncode != 0:
        return "mount --bind over /etc/resolv.conf: %s" % \
            r.stderr.decode(errors="replace")
    return None


# DNS: a question for the readiness check, and the SERVFAIL upstream.

def dns_query(name, qtype=15, timeout=1.0):
    """(rcode, [preference of each MX record, in answer order]) of a
    query to 127.0.0.1:53, or None without an answer."""
    qname = b"".join(bytes([len(x)]) + x.encode() for x in name.split("."))
    pkt = b"\x4c\x46\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + qname + \
        b"\x00" + qtype.to_bytes(2, "big") + b"\x00\x01"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(pkt, ("127.0.0.1", 53))
        d = s.recv(4096)
    except OSError:
        return None
    finally:
        s.close()
    if len(d) < 12 or d[:2] != pkt[:2]:
        return None
    prefs, i = [], len(pkt)		# the question is echoed as sent
    for _ in range(int.from_bytes(d[6:8], "big")):
        while d[i] != 0 and d[i] < 0xc0:	# the owner name
            i += d[i] + 1
        i += 2 if d[i] >= 0xc0 else 1
        rtype = int.from_bytes(d[i:i + 2], "big")
        rdlen = int.from_bytes(d[i + 8:i + 10], "big")
        if rtype == 15:
            prefs.append(int.from_bytes(d[i + 10:i + 12], "big"))
        i += 10 + rdlen
    return d[3] & 0x0f, prefs


def servfail_server():
    """A UDP responder on 127.0.0.1:SERVFAIL_PORT that answers every
    query with SERVFAIL (dnsmasq's upstream for fail.test)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", SERVFAIL_PORT))

    def serve():
        while True:
            d, peer = s.recvfrom(4096)
            if len(d) < 12:
                continue
            r = bytearray(d)
            r[2] = 0x80 | (d[2] & 0x79)	# QR, opcode, RD kept
            r[3] = 0x80 | 2			# RA, SERVFAIL
            s.sendto(bytes(r), peer)
    threading.Thread(target=serve, daemon=True).start()


def start_dnsmasq(tmpdir):
    log = os.path.join(tmpdir, "dnsmasq.log")
    proc = subprocess.Popen(
        [DNSMASQ, "--keep-in-foreground", "--no-resolv", "--no-hosts",
         "--conf-file=/dev/null", "--port", "53",
         "--listen-address", "127.0.0.1", "--bind-interfaces",
         "--user=root", "--pid-file=" + os.path.join(tmpdir, "dnsmasq.pid"),
         "--log-queries",
         "--log-facility=" + log] + ZONE,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        if dns_query("pref.test", timeout=0.2) is not None:
            return proc, None
        time.sleep(0.05)
    err = proc.stderr.read().decode(errors="replace") \
        if proc.poll() is not None else "no answer on 127.0.0.1:53"
    return None, err


# SMTP sinks on port 25 of loopback addresses.

class Sink:
    """An SMTP server in a thread on ip:25; records each message as
    (sender, recipients, data as received with dot-unstuffing)."""

    def __init__(self, ip):
        self.ip = ip
        self.msgs = []
        self.conns = 0
        self.lock = threading.Lock()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((ip, 25))
        self.lsock.listen(8)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            c, _ = self.lsock.accept()
            with self.lock:
                self.conns += 1
            threading.Thread(target=self.session, args=(c,),
                             daemon=True).start()

    def session(self, sock):
        f = sock.makefile("rb")
        sock.settimeout(30)

        def say(text):
            sock.sendall(text.encode() + b"\r\n")
        try:
            say("220 sink-%s ESMTP" % self.ip)
            sender, rcpts = None, []
            for ln in f:
                cmd = ln.rstrip(b"\r\n").decode("latin-1")
                verb = cmd.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    say("250-sink-%s\r\n250 8BITMIME" % self.ip)
                elif verb == "MAIL":
                    sender, rcpts = re.search(r"<([^>]*)>", cmd).group(1), []
                    say("250 2.1.0 Ok")
                elif verb == "RCPT":
                    rcpts.append(re.search(r"<([^>]*)>", cmd).group(1))
                    say("250 2.1.5 Ok")
                elif verb == "DATA":
                    say("354 go ahead")
                    data = b""
                    for dl in f:
                        if dl == b".\r\n":
                            break
                        data += dl[1:] if dl.startswith(b".") else dl
                    with self.lock:
                        self.msgs.append((sender, rcpts, data))
                        n = len(self.msgs)
                    say("250 2.0.0 Ok: queued at %s as %d" % (self.ip, n))
                elif verb == "QUIT":
                    say("221 2.0.0 Bye")
                    break
                else:
                    say("250 2.0.0 Ok")
        except OSError:
            pass
        finally:
            sock.close()

    def for_rcpt(self, rcpt):
        with self.lock:
            return [m for m in self.msgs if rcpt in m[1]]


def message(subject):
    return (b"From: Alice <alice@example.test>\r\nTo: someone\r\n"
            b"Subject: " + subject.encode() + b"\r\nMessage-ID: <" +
            subject.replace(" ", ".").encode() + b"@example.test>\r\n\r\n"
            b"Hello,\r\n.a line with a dot\r\n\r\nbye\r\n")


def logline(qid, rcpt, relay, dsn, status, text):
    """Postfix's delivery line as a regular expression; relay, dsn and
    text are regular expressions."""
    return (r"%s: to=<%s>, relay=%s, delay=[\d.]+, delays=[\d./]+, "
            r"dsn=%s, status=%s \(%s\)" % (qid, re.escape(rcpt), relay, dsn,
                                            status, text))


class Ctx:
    def __init__(self, env, d, sinks):
        self.env, self.d, self.sinks = env, d, sinks

    def send(self, rcpt, subject):
        return smtp_send(self.d, [rcpt], message(subject),
                         "alice@example.test", port=25)

    def others_got(self, rcpt, but=None):
        return [ip for ip, s in self.sinks.items()
                if ip != but and s.for_rcpt(rcpt)]


def check_sent(c, rcpt, subject, ip, host, name):
    """The message for rcpt reached the sink at ip (and no other),
    byte for byte behind loft's Received: line, logged as sent there."""
    msg = message(subject)
    qid = c.send(rcpt, subject)
    got = wait_for(lambda: c.sinks[ip].for_rcpt(rcpt))
    if not t.ok(len(got) == 1, "%s: the sink on %s:25 received it" %
                (name, ip)):
        t.diag(c.d.log()[-1500:])
        return qid
    sender, rcpts, data = got[0]
    t.eq((sender, rcpts), ("alice@example.test", [rcpt]),
         "  envelope: from alice, to %s" % rcpt)
    head = data[:len(data) - len(msg)]
    t.ok(data.endswith(msg) and head.startswith(b"Received: from ") and
         head.count(b"\r\nReceived: ") == 0,
         "  the message byte for byte behind loft's one Received: line")
    t.ok(c.d.wait_log(logline(qid, rcpt, r"%s\[%s\]:25" % (
        re.escape(host), re.escape(ip)), r"2\.0\.0", "sent",
        r"250 2\.0\.0 Ok: queued at %s as \d+" % re.escape(ip))),
         "  maillog: relay=%s[%s]:25, status=sent (250 ...)" % (host, ip))
    t.eq(c.others_got(rcpt, but=ip), [], "  no other sink got it")
    return qid


def test_preference(c):
    check_sent(c, "user@pref.test", "preference", "127.0.0.2",
               "mx10.pref.test", "MX 10 and 20 (20 answered first)")
    t.eq(c.sinks["127.0.0.3"].conns, 0, "  the MX 20 host was not "
         "even connected to")


def test_backup(c):
    mark = c.d.mark()
    check_sent(c, "user@backup.test", "backup", "127.0.0.5",
               "mx20.backup.test", "MX 10 refuses connections, MX 20")
    t.ok(re.search(r"mx10\.backup\.test\[127\.0\.0\.4\]:25.*[Cc]onnection "
                   r"refused", c.d.log(since=mark)),
         "  the refused connection to mx10[127.0.0.4]:25 is logged")


def test_no_mx(c):
    check_sent(c, "user@nomx.test", "implicit mx", "127.0.0.6",
               "nomx.test", "no MX record: the domain's A record")


def check_failed(c, rcpt, subject, status, dsn, text, name):
    qid = c.send(rcpt, subject)
    t.ok(c.d.wait_log(logline(qid, rcpt, "none", dsn, status, text)),
         "%s: status=%s, dsn=%s, relay=none" % (name, status,
                                                 dsn.replace("\\", "")))
    t.eq(c.others_got(rcpt), [], "  no sink got it")
    return qid


NX_TEXT = ("Host or domain name not found. Name service error for "
           "name=nx.test type=MX: Host not found")


def test_nxdomain(c):
    qid = check_failed(c, "user@nx.test", "nxdomain", "bounced", r"5\.1\.2",
                       re.escape(NX_TEXT),
                       "a domain that does not exist: Postfix's text, "
                       "naming the domain and the record type")
    t.ok(c.d.wait_log(r"%s: sender non-delivery notification: "
                      r"[0-9A-Z]{17}" % qid), "  a bounce to the sender")
    # The bounce folds its lines: compared with blanks made one space.
    bounce = wait_for(lambda: [m for m in c.env.maildir_files("alice")
                               .values() if b"user@nx.test" in m and
                               NX_TEXT.encode() in b" ".join(m.split())])
    t.ok(bounce, "  alice has it in her Maildir, with the reason")


def test_ghost(c):
    check_failed(c, "user@ghost.test", "ghost", "bounced", r"5\.4\.4",
                 r"[^)]*nowhere\.ghost\.test[^)]*",
                 "the only MX host has no address")


def test_servfail(c):
    qid = check_failed(c, "user@fail.test", "servfail", "deferred",
                       r"4\.4\.3", r"DNS lookup of MX for fail\.test failed: "
                       r"the name server answered SERVFAIL",
                       "SERVFAIL from the resolver")
    q = c.env.ctl("mailq").stdout.decode(errors="replace")
    t.ok(qid in q and "user@fail.test" in q, "  loftctl mailq lists it")
    env_text = wait_for(lambda: c.d.queue_envelope(qid))
    t.ok(env_text and "state deferred" in env_text,
         "  its envelope says deferred")


def test_null_mx(c):
    check_failed(c, "user@nullmx.test", "null mx", "bounced", r"5\.1\.10",
                 r"[^)]*null MX[^)]*\)?", "null MX (RFC 7505)")


def test_loops(c):
    check_failed(c, "user@loop.test", "loop", "bounced", r"5\.4\.6",
                 r"mail for loop\.test loops back to myself",
                 "the only MX is loft itself")
    check_failed(c, "user@equal.test", "equal", "bounced", r"5\.4\.6",
                 r"mail for equal\.test loops back to myself",
                 "loft and a sink at the same preference")
    check_sent(c, "user@secondary.test", "secondary", "127.0.0.2",
               "mx10.pref.test", "loft as a worse MX than a working sink")
    mark = c.d.mark()
    check_failed(c, "user@deadfirst.test", "dead first", "deferred",
                 r"4\.4\.1", r"connect to mx10\.backup\.test\[127\.0\.0\.4\]"
                 r":25: Connection refused", "loft as a worse MX than a host "
                 "that refuses connections (the dead host's error)")
    log = c.d.log(since=mark)
    t.eq(re.findall(r"client=", log), ["client="],
         "  and loft never sent the message to itself (one client=: ours)")


def main():
    enter_namespace()
    env = Env("maildir", extra="mydestination = localhost, example.test\n")
    env.add_user("alice")
    why = setup_namespace(env.dir)
    if why:
        t.skip_all(why)
    servfail_server()
    dns, why = start_dnsmasq(env.dir)
    if dns is None:
        t.skip_all("dnsmasq does not start: %s" % why)
    try:
        t.eq(dns_query("pref.test"), (0, [20, 10]), "the test resolver "
             "answers: MX 20 and 10 for pref.test, the worse first")
        for dom in ("backup.test", "secondary.test", "deadfirst.test"):
            t.eq(dns_query(dom), (0, [20, 10]), "  and for %s" % dom)
        t.eq(dns_query("nomx.test"), (0, []), "  no MX for nomx.test")
        t.eq(dns_query("nx.test"), (3, []), "  NXDOMAIN for nx.test")
        t.eq(dns_query("fail.test"), (2, []), "  SERVFAIL for fail.test")
        with open("/etc/resolv.conf") as f:
            t.ok(f.read().startswith("nameserver 127.0.0.1\n"),
                 "  and /etc/resolv.conf names it (in this namespace only)")
        sinks = {ip: Sink(ip) for ip in ("127.0.0.2", "127.0.0.3",
                                        "127.0.0.5", "127.0.0.6")}
        ensure_login_user("loft")
        d = env.start_loftd("smtp_listen = 127.0.0.1:25\n",
                            qmgr=True, pop3s=False, tls=False)
        d.smtp_port = 25
        if not t.ok(wait_port(25, proc=d.proc), "loftd's smtpd listens on "
                    "127.0.0.1:25 in the namespace"):
            t.diag(d.log()[-2000:])
            t.done()
        c = Ctx(env, d, sinks)
        for fn in (test_preference, test_backup, test_no_mx, test_nxdomain,
                   test_ghost, test_servfail, test_null_mx, test_loops):
            t.guard(fn.__name__, fn, c)
        t.eq(env.stop_loftd(), 0, "loftd stops cleanly (status 0)")
    finally:
        dns.terminate()
        dns.wait(timeout=10)
    env.cleanup()
    t.done()


main()
