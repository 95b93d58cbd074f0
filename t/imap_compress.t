#!/usr/bin/env python3
"""IMAP COMPRESS=DEFLATE (RFC 4978) in loftd, with a real client: a socket
and Python's zlib (raw deflate, wbits -15, a sync flush per command, as
RFC 4978 clients do), over plain IMAP and over implicit TLS (imaps, where
the mail process compresses inside the login process's TLS relay).
Checked: COMPRESS=DEFLATE advertised after login only (CAPABILITY and the
login OK's code), BAD before login and for an unknown algorithm, "OK
DEFLATE active" as the last plaintext line, NO [COMPRESSIONACTIVE] the
second time, SELECT and a FETCH of a 600 KiB message compared byte for
byte with what was delivered (and fewer bytes on the wire than in it),
IDLE with a delivery in between (the EXISTS arrives compressed), LOGOUT;
compressed commands pipelined right behind COMPRESS, and behind LOGIN +
COMPRESS (through the login process's hand-over); garbage instead of
deflate data closes that session only, with the reason logged; the
logout line counts the compressed bytes; LOGIN, COMPRESS and compressed
commands in one write with the login process held by strace after each
sendmsg (its hand-over record), so that the order on the wire (login OK,
COMPRESS OK, then deflate) cannot depend on luck; IDLE on a session
quiet long enough for its deflater to be released, two deliveries, each
EXISTS arriving by itself. Then what an idle compressed
session costs the mail process (RSS, for the report), mbsync (isync 1.4,
which uses COMPRESS=DEFLATE whenever offered) and offlineimap3 (with
usecompression) syncing over it."""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Tap, message, need_loftd, tls_client_context  # noqa: E402

t = Tap()
need_loftd(t)
TIMEOUT = 15
# The mail process releases a session's deflater after this long without
# traffic (MAILPROC_RELEASE_MS); tests of what follows a release wait a
# little longer. Nothing asserts that time: a release that came late
# would only make those tests weaker, never fail them.
RELEASE_WAIT = 2.5


class Client:
    """An IMAP client on a socket that can switch to raw deflate."""

    def __init__(self, port, ctx=None):
        s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        if ctx is not None:
            s = ctx.wrap_socket(s, server_hostname="localhost")
        self.s = s
        self.buf = b""
        self.z_out = self.z_in = None
        self.wire_in = 0
        self.greeting = self.line()

    def compress(self):
        self.z_out = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.z_in = zlib.decompressobj(-15)
        # Bytes that came after the OK line are compressed already.
        rest, self.buf = self.buf, b""
        if rest:
            self.buf = self.z_in.decompress(rest)

    def encode(self, data):
        if isinstance(data, str):
            data = data.encode()
        if self.z_out is None:
            return data
        return self.z_out.compress(data) + self.z_out.flush(zlib.Z_SYNC_FLUSH)

    def send(self, data):
        self.s.sendall(self.encode(data))

    def fill(self):
        data = self.s.recv(65536)
        if not data:
            raise EOFError("closed by the server")
        self.wire_in += len(data)
        self.buf += self.z_in.decompress(data) if self.z_in else data

    def line(self):
        while b"\n" not in self.buf:
            self.fill()
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln.rstrip(b"\r").decode("utf-8", "replace")

    def take(self, n):
        while len(self.buf) < n:
            self.fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def until(self, tag):
        """Untagged lines (literals appended as bytes) and the tagged one."""
        lines = []
        while True:
            ln = self.line()
            if ln.startswith(tag + " "):
                return lines, ln
            lines.append(ln)
            m = re.search(r"\{(\d+)\}$", ln)
            if m:
                lines.append(self.take(int(m.group(1))))

    def cmd(self, tag, text):
        self.send("%s %s\r\n" % (tag, text))
        return self.until(tag)

    def closed_by_server(self):
        """True if the server closed the connection (EOF) within TIMEOUT."""
        try:
            while True:
                self.fill()
        except EOFError:
            return True
        except (OSError, zlib.error):
            return True

    def close(self):
        self.s.close()


def stored_crlf(env, subject):
    """The stored bytes of alice's message with this subject, CRLF."""
    for sub in ("new", "cur"):
        d = os.path.join(env.mail, "alice", sub)
        for f in os.listdir(d):
            data = open(os.path.join(d, f), "rb").read()
            if b"\nSubject: %s\n" % subject.encode() in data:
                return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return None


def big_body():
    """About 600 KiB of mail-like text: it compresses, but not to nothing."""
    words = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do "
             "eiusmod tempor incididunt ut labore et dolore magna aliqua "
             "quoted-printable base64 Received Subject From To Cc").split()
    out, n, x = [], 0, 12345
    while n < 600 * 1024:
        ln = []
        for _ in range(12):
            x = (x * 1103515245 + 12345) & 0x7fffffff
            ln.append(words[x % len(words)] + ("%d" % (x % 97) if x % 5 == 0
                                                  else ""))
        s = " ".join(ln) + "\n"
        out.append(s)
        n += len(s)
    return "".join(out)


def session(env, d, port, ctx, what, big):
    c = Client(port, ctx)
    t.ok(c.greeting.startswith("* OK [CAPABILITY ") and
         "COMPRESS" not in c.greeting,
         "%s: greeting without COMPRESS (before login)" % what)
    _, tagged = c.cmd("a0", "COMPRESS DEFLATE")
    t.ok(tagged.startswith("a0 BAD"), "%s: COMPRESS before login: BAD (%s)"
         % (what, tagged))
    _, tagged = c.cmd("a1", "LOGIN alice secret")
    t.ok(tagged.startswith("a1 OK [CAPABILITY ") and
         " COMPRESS=DEFLATE" in tagged,
         "%s: the login OK's capabilities offer COMPRESS=DEFLATE" % what)
    lines, tagged = c.cmd("a2", "CAPABILITY")
    t.ok(tagged.startswith("a2 OK") and any(
        ln.startswith("* CAPABILITY ") and " COMPRESS=DEFLATE" in ln
        for ln in lines), "%s: CAPABILITY after login has it" % what)
    _, tagged = c.cmd("a3", "COMPRESS FOO")
    t.ok(tagged.startswith("a3 BAD"), "%s: unknown algorithm: BAD" % what)
    _, tagged = c.cmd("a4", "COMPRESS")
    t.ok(tagged.startswith("a4 BAD"), "%s: no algorithm: BAD" % what)
    _, tagged = c.cmd("a5", "COMPRESS deflate")
    t.eq(tagged, "a5 OK DEFLATE active",
         "%s: COMPRESS (any case): the OK in plaintext" % what)
    c.compress()
    lines, tagged = c.cmd("a6", "NOOP")
    t.eq(tagged, "a6 OK NOOP completed",
         "%s: a compressed command, a compressed answer" % what)
    _, tagged = c.cmd("a7", "COMPRESS DEFLATE")
    t.ok(tagged.startswith("a7 NO [COMPRESSIONACTIVE]"),
         "%s: COMPRESS again: NO [COMPRESSIONACTIVE] (%s)" % (what, tagged))
    lines, tagged = c.cmd("a8", "SELECT INBOX")
    t.ok(tagged.startswith("a8 OK") and "* 3 EXISTS" in lines,
         "%s: SELECT INBOX: 3 messages" % what)
    want = stored_crlf(env, "big")
    before = c.wire_in
    lines, tagged = c.cmd("a9", "FETCH 3 (BODY.PEEK[])")
    wire = c.wire_in - before
    got = [x for x in lines if isinstance(x, bytes)]
    t.ok(tagged.startswith("a9 OK") and len(got) == 1 and want is not None,
         "%s: FETCH of the big message answered with one literal" % what)
    t.ok(got and got[0] == want,
         "%s: its %d bytes are the delivered message, byte for byte" %
         (what, len(want or b"")))
    t.ok(wire < len(want) // 2,
         "%s: %d bytes on the wire for %d (compressed)" %
         (what, wire, len(want)))
    c.send("b1 IDLE\r\n")
    t.ok(c.line().startswith("+"), "%s: IDLE continuation" % what)
    rc, err = env.deliver("alice", message("idle %s" % what, "four\n"))
    t.eq(rc, 0, "%s: delivered during IDLE (%s)" % (what, err.strip()))
    t.eq(c.line(), "* 4 EXISTS", "%s: the EXISTS arrives compressed" % what)
    c.send("DONE\r\n")
    _, tagged = c.until("b1")
    t.ok(tagged.startswith("b1 OK"), "%s: DONE ends IDLE" % what)
    lines, tagged = c.cmd("b2", "LOGOUT")
    t.ok(tagged.startswith("b2 OK") and
         any(ln.startswith("* BYE") for ln in lines if isinstance(ln, str)),
         "%s: LOGOUT, compressed" % what)
    t.ok(c.closed_by_server(), "%s: then the server closes" % what)
    c.close()
    # Put the folder back to 3 messages for the next round.
    for sub in ("new", "cur"):
        dd = os.path.join(env.mail, "alice", sub)
        for f in os.listdir(dd):
            if b"Subject: idle " in open(os.path.join(dd, f), "rb").read():
                os.unlink(os.path.join(dd, f))


def pipelined(env, d, port, ctx, what):
    # Compressed bytes right behind COMPRESS, in the same packet: the
    # server must inflate them, not read them as commands nor drop them.
    c = Client(port, ctx)
    _, tagged = c.cmd("p1", "LOGIN alice secret")
    t.ok(tagged.startswith("p1 OK"), "%s: LOGIN" % what)
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    comp = z.compress(b"p3 NOOP\r\np4 EXAMINE INBOX\r\n") + \
        z.flush(zlib.Z_SYNC_FLUSH)
    c.s.sendall(b"p2 COMPRESS DEFLATE\r\n" + comp)
    t.eq(c.line(), "p2 OK DEFLATE active", "%s: pipelined COMPRESS OK" % what)
    c.compress()
    c.z_out = z
    _, tagged = c.until("p3")
    t.eq(tagged, "p3 OK NOOP completed",
         "%s: a command pipelined behind COMPRESS, inflated" % what)
    lines, tagged = c.until("p4")
    t.ok(tagged.startswith("p4 OK") and "* 3 EXISTS" in lines,
         "%s: and the next one" % what)
    _, tagged = c.cmd("p5", "LOGOUT")
    t.ok(tagged.startswith("p5 OK"), "%s: LOGOUT" % what)
    c.close()

    # LOGIN, COMPRESS and compressed commands in one go: the bytes after
    # LOGIN reach the mail process through the login process's hand-over.
    c = Client(port, ctx)
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    comp = z.compress(b"q3 SELECT INBOX\r\n") + z.flush(zlib.Z_SYNC_FLUSH)
    c.s.sendall(b"q1 LOGIN alice secret\r\nq2 COMPRESS DEFLATE\r\n" + comp)
    _, tagged = c.until("q1")
    t.ok(tagged.startswith("q1 OK"), "%s: LOGIN (all pipelined)" % what)
    t.eq(c.line(), "q2 OK DEFLATE active",
         "%s: COMPRESS pipelined behind LOGIN" % what)
    c.compress()
    c.z_out = z
    lines, tagged = c.until("q3")
    t.ok(tagged.startswith("q3 OK") and "* 3 EXISTS" in lines,
         "%s: SELECT pipelined behind both, inflated (%s)" % (what, tagged))
    _, tagged = c.cmd("q4", "LOGOUT")
    t.ok(tagged.startswith("q4 OK"), "%s: LOGOUT" % what)
    c.close()

    # Garbage where deflate data should be.
    mark = d.mark()
    c = Client(port, ctx)
    c.cmd("g1", "LOGIN alice secret")
    _, tagged = c.cmd("g2", "COMPRESS DEFLATE")
    t.eq(tagged, "g2 OK DEFLATE active", "%s: COMPRESS before garbage" % what)
    c.s.sendall(b"\xff\xff\xff\xff not deflate\r\n")
    c.z_in = zlib.decompressobj(-15)
    t.ok(c.closed_by_server(), "%s: garbage: the server closes" % what)
    c.close()
    m = d.wait_log(r"imap\(alice\): logout: rip=127\.0\.0\.1, "
                   r"reason=read: COMPRESS: invalid deflate data from the "
                   r"peer \([^)]*\)", since=mark)
    t.ok(m, "%s: logged as invalid deflate data" % what)


class LoginDelay:
    """strace(1) holding each login process for a second after every
    sendmsg(2): its records to the auth process and to the master, the
    last of which hands a logged-in client's socket over. A login OK
    still queued then leaves only after the mail process has had all
    the time it needs to answer the commands pipelined behind the login
    (what a loaded machine does now and then): the order the client sees
    no longer depends on luck. ok is False when strace is missing or
    cannot attach (no ptrace)."""

    def __init__(self, d):
        self.procs = []
        self.ok = False
        if not shutil.which("strace"):
            return
        for pid in d.role_pids("login"):
            p = subprocess.Popen(
                ["strace", "-qq", "-o", "/dev/null", "-p", str(pid),
                 "-e", "trace=sendmsg",
                 "-e", "inject=sendmsg:delay_exit=1000000"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append((pid, p))
        # Attached once the kernel names a tracer (bounded wait: the
        # strace may fail, and then the test is skipped).
        for _ in range(100):
            if self.procs and all(self.traced(pid) for pid, _ in
                                  self.procs):
                self.ok = True
                return
            if any(p.poll() is not None for _, p in self.procs):
                return
            time.sleep(0.05)

    @staticmethod
    def traced(pid):
        try:
            for ln in open("/proc/%d/status" % pid):
                if ln.startswith("TracerPid:"):
                    return int(ln.split()[1]) != 0
        except OSError:
            pass
        return False

    def stop(self):
        for _, p in self.procs:
            p.terminate()
        for _, p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def read_to_eof(c):
    """Every byte until the server closes (raw: no inflating)."""
    raw, c.buf = c.buf, b""
    try:
        while True:
            data = c.s.recv(65536)
            if not data:
                break
            raw += data
    except OSError:
        pass
    return raw


def handover_order(env, d, port, ctx, what):
    """LOGIN, COMPRESS and compressed commands in one write, with the
    login process slowed down around the hand-over: the client must get
    the login OK, then the COMPRESS OK, both in plaintext, then one
    deflate stream with the rest, byte for byte in that order."""
    names = ["login OK first, in plaintext", "then the COMPRESS OK, "
             "in plaintext", "then one deflate stream that inflates",
             "with the compressed commands' answers, in order"]
    delay = LoginDelay(d)
    if not delay.ok:
        delay.stop()
        for n in names:
            t.ok(True, "%s: hand-over: %s # SKIP strace cannot attach" %
                 (what, n))
        return
    try:
        c = Client(port, ctx)
        z = zlib.compressobj(6, zlib.DEFLATED, -15)
        comp = z.compress(b"h3 NOOP\r\nh4 LOGOUT\r\n") + \
            z.flush(zlib.Z_SYNC_FLUSH)
        c.s.sendall(b"h1 LOGIN alice secret\r\nh2 COMPRESS DEFLATE\r\n" +
                    comp)
        raw = read_to_eof(c)
        c.close()
    finally:
        delay.stop()
    first, _, rest = raw.partition(b"\r\n")
    second, _, rest = rest.partition(b"\r\n")
    t.ok(first.startswith(b"h1 OK [CAPABILITY "), "%s: hand-over: %s (%r)"
         % (what, names[0], first[:40]))
    t.eq(second, b"h2 OK DEFLATE active", "%s: hand-over: %s" %
         (what, names[1]))
    try:
        text = zlib.decompressobj(-15).decompress(rest)
        err = None
    except zlib.error as e:
        text, err = b"", str(e)
    t.ok(err is None and text != b"", "%s: hand-over: %s (%s; %r)" %
         (what, names[2], err, rest[:24]))
    lines = text.split(b"\r\n")
    t.ok(len(lines) >= 3 and lines[0] == b"h3 OK NOOP completed" and
         lines[1].startswith(b"* BYE") and lines[2].startswith(b"h4 OK"),
         "%s: hand-over: %s (%r)" % (what, names[3], text[:80]))


def idle_after_release(env, d, port, ctx, what):
    """IDLE on a compressed session quiet long enough for the mail
    process to release its deflater: each delivery's EXISTS must arrive
    on its own (nothing else happens on the connection), and the stream
    must stay one valid deflate stream across new deflaters."""
    c = Client(port, ctx)
    c.cmd("r1", "LOGIN alice secret")
    _, tagged = c.cmd("r2", "COMPRESS DEFLATE")
    c.compress()
    lines, tagged = c.cmd("r3", "SELECT INBOX")
    n = [ln for ln in lines if isinstance(ln, str) and
         ln.endswith(" EXISTS")]
    count = int(n[0].split()[1]) if n else 0
    c.send("r4 IDLE\r\n")
    t.ok(c.line().startswith("+"), "%s: IDLE" % what)
    for i in (1, 2):
        time.sleep(RELEASE_WAIT)
        rc, err = env.deliver("alice", message("release %d" % i, "x\n"))
        try:
            got = c.line()
        except (OSError, zlib.error) as e:
            got = "nothing (%s)" % e
        t.eq(got, "* %d EXISTS" % (count + i), "%s: quiet %.1f s (deflater "
             "released), delivery %d: its EXISTS arrives by itself" %
             (what, RELEASE_WAIT, i))
    c.send("DONE\r\n")
    _, tagged = c.until("r4")
    t.ok(tagged.startswith("r4 OK"), "%s: DONE" % what)
    time.sleep(RELEASE_WAIT)
    _, tagged = c.cmd("r5", "NOOP")
    t.eq(tagged, "r5 OK NOOP completed", "%s: a command after another "
         "release, answered" % what)
    c.cmd("r6", "LOGOUT")
    c.close()
    for sub in ("new", "cur"):
        dd = os.path.join(env.mail, "alice", sub)
        for f in os.listdir(dd):
            if b"Subject: release " in open(os.path.join(dd, f),
                                            "rb").read():
                os.unlink(os.path.join(dd, f))


def mail_pid(d):
    """The pid of loftd's mail process."""
    for p in d.processes():
        if "-X mail" in p["cmdline"]:
            return p["pid"]
    return None


def rss_kib(pid):
    for ln in open("/proc/%d/status" % pid):
        if ln.startswith("VmRSS:"):
            return int(ln.split()[1])
    return 0


def idle_memory(env, d):
    """RSS of the mail process per idle session, without and with
    COMPRESS (the deflater released after a quiet second)."""
    n = 40
    keep = [Client(d.imap_port)]
    keep[0].cmd("m0", "LOGIN alice secret")
    pid = mail_pid(d)
    if pid is None:
        t.diag("mail process not found: memory part skipped")
        return
    # ASan keeps freed memory in quarantine: RSS says nothing then.
    asan = "libasan" in open("/proc/%d/maps" % pid).read()
    res = {}
    for mode in ("plain", "compressed"):
        time.sleep(1.5)
        base = rss_kib(pid)
        cs = []
        for i in range(n):
            c = Client(d.imap_port)
            c.cmd("m1", "LOGIN alice secret")
            if mode == "compressed":
                c.cmd("m2", "COMPRESS DEFLATE")
                c.compress()
            c.cmd("m3", "SELECT INBOX")
            c.cmd("m4", "FETCH 1:* (FLAGS ENVELOPE)")
            cs.append(c)
        res[mode + " active"] = (rss_kib(pid) - base) / n
        time.sleep(2.5)     # quiet: stores closed, deflaters released
        res[mode] = (rss_kib(pid) - base) / n
        for c in cs:
            c.cmd("m9", "LOGOUT")
            c.close()
    t.diag("mail process RSS per session, %d sessions each: plaintext "
           "%.1f KiB just after a FETCH, %.1f KiB quiet; COMPRESS %.1f KiB "
           "just after, %.1f KiB quiet" %
           (n, res["plain active"], res["plain"], res["compressed active"],
            res["compressed"]))
    # The inflater allocates 39.3 KiB (t/unit/conn_zlib.t). Measured
    # here: 30 to 41 KiB more than plaintext with the release, 61 KiB
    # with the deflater kept while quiet, so this fails without it.
    name = ("a quiet compressed session costs under 50 KiB more than a "
            "plain one: the deflater was released (%.1f KiB)" %
            (res["compressed"] - res["plain"]))
    if asan:
        t.ok(True, name + " # SKIP under ASan")
    else:
        t.ok(res["compressed"] - res["plain"] < 50, name)
    keep[0].cmd("m9", "LOGOUT")
    keep[0].close()


def mbsync_test(env, d, ctx):
    if not shutil.which("mbsync"):
        t.diag("mbsync not installed: mbsync part skipped")
        return
    near = os.path.join(env.dir, "near")
    os.makedirs(near)
    rc = os.path.join(env.dir, "mbsyncrc")
    with open(rc, "w") as f:
        f.write("""IMAPAccount loft
Host localhost
Port %d
User alice
Pass secret
SSLType IMAPS
CertificateFile %s
SystemCertificates no

IMAPStore remote
Account loft

MaildirStore local
Path %s/
Inbox %s/INBOX

Channel inbox
Far :remote:INBOX
Near :local:INBOX
Create Near
Sync Pull
SyncState *
""" % (d.imaps_port, d.cert, near, near))
    mark = d.mark()
    r = subprocess.run(["mbsync", "-Dn", "-c", rc, "-a"], capture_output=True,
                       timeout=120)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    t.eq(r.returncode, 0, "mbsync over IMAPS: exit 0")
    if r.returncode != 0:
        t.diag(out[-6000:])
    used = ">>> " in out and re.search(r">>> \d+ COMPRESS DEFLATE", out)
    t.ok(used, "mbsync sent COMPRESS DEFLATE")
    got = []
    for sub in ("new", "cur"):
        dd = os.path.join(near, "INBOX", sub)
        if os.path.isdir(dd):
            got += [open(os.path.join(dd, f), "rb").read()
                    for f in os.listdir(dd)]
    big = [g for g in got if b"Subject: big" in g]
    want = stored_crlf(env, "big")
    t.ok(len(got) == 3 and big and want is not None and
         re.sub(rb"X-TUID: [^\r\n]*\r?\n", b"", big[0]).replace(b"\r\n", b"\n")
         == want.replace(b"\r\n", b"\n"),
         "mbsync: 3 messages, the big one byte-exact (%d)" % len(got))
    m = d.wait_log(r"imap\(alice\): logout: .*deflate_in=(\d+), "
                   r"deflate_out=(\d+)", since=mark)
    t.ok(m, "mbsync's logout line counts compressed bytes (%s)" %
         (m.group(0) if m else None))


def offlineimap_test(env, d):
    """offlineimap3 (imaplib2's COMPRESS, with usecompression = yes)."""
    if not shutil.which("offlineimap"):
        t.diag("offlineimap not installed: offlineimap part skipped")
        return
    local = os.path.join(env.dir, "oi")
    rc = os.path.join(env.dir, "offlineimaprc")
    with open(rc, "w") as f:
        f.write("""[general]
accounts = test
metadata = %s/oimeta
ui = basic

[Account test]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = %s

[Repository remote]
type = IMAP
remotehost = localhost
remoteport = %d
ssl = yes
sslcacertfile = %s
remoteuser = alice
remotepass = secret
usecompression = yes
folderfilter = lambda f: f == "INBOX"
""" % (env.dir, local, d.imaps_port, d.cert))
    mark = d.mark()
    r = subprocess.run(["offlineimap", "-c", rc, "-o", "-u", "basic"],
                       capture_output=True, timeout=180)
    t.eq(r.returncode, 0, "offlineimap with usecompression: exit 0")
    if r.returncode != 0:
        t.diag((r.stdout + r.stderr).decode("utf-8", "replace")[-3000:])
    got = []
    for sub in ("new", "cur"):
        dd = os.path.join(local, "INBOX", sub)
        if os.path.isdir(dd):
            got += [open(os.path.join(dd, f), "rb").read()
                    for f in os.listdir(dd)]
    want = stored_crlf(env, "big")
    big = [g for g in got if b"Subject: big" in g]
    t.ok(len(got) == 3 and big and want is not None and
         big[0].replace(b"\r\n", b"\n") == want.replace(b"\r\n", b"\n"),
         "offlineimap: 3 messages, the big one byte-exact (%d)" % len(got))
    m = d.wait_log(r"imap\(alice\): logout: .*deflate_in=\d+, "
                   r"deflate_out=(\d+)", since=mark)
    t.ok(m and int(m.group(1)) > 0,
         "offlineimap's session was compressed (%s)" %
         (m.group(0) if m else None))


def main():
    env = Env()
    try:
        env.add_user("alice")
        for subj, body in (("first", "one\n"), ("second", "two\n"),
                           ("big", big_body())):
            rc, err = env.deliver("alice", message(subj, body))
            t.eq(rc, 0, "delivered %s (%s)" % (subj, err.strip()))
        d = env.start_loftd("disable_plaintext_auth = no\n"
                            "imap_compress = yes\n"
                            "client_connection_limit = 200\n", pop3=False,
                            pop3s=False, imap=True, imaps=True)
        ctx = tls_client_context(d.cert)
        big = stored_crlf(env, "big")
        session(env, d, d.imap_port, None, "plain", big)
        session(env, d, d.imaps_port, ctx, "imaps", big)
        pipelined(env, d, d.imap_port, None, "plain")
        pipelined(env, d, d.imaps_port, ctx, "imaps")
        handover_order(env, d, d.imap_port, None, "plain")
        handover_order(env, d, d.imaps_port, ctx, "imaps")
        idle_after_release(env, d, d.imap_port, None, "plain")
        idle_after_release(env, d, d.imaps_port, ctx, "imaps")
        idle_memory(env, d)
        mbsync_test(env, d, ctx)
        offlineimap_test(env, d)
        t.eq(env.stop_loftd(), 0, "SIGTERM: loftd exits with status 0")
        log = d.log()
        t.ok("deflate_in=" in log and "deflate_out=" in log,
             "logout lines of compressed sessions count the wire bytes")
        t.ok("panic" not in log, "no panic in the log")
    finally:
        env.cleanup()
    t.done()


main()
