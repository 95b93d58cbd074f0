#!/usr/bin/env python3
"""Real POP3 clients against loftd: curl (plain, STLS with --ssl-reqd,
pop3s with --cacert), fetchmail (STLS and implicit TLS with certificate
checks, keep and delete modes, delivering through an MDA script) and
getmail6 (SimplePOP3SSLRetriever into a Maildir, SimplePOP3Retriever into
an mboxrd file, delete false and true). What they fetch must be what
loft-deliver stored; keep must leave the mail, delete must empty the
mailbox (on disk too)."""
import mailbox
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Pop3, Tap, message, need_loftd, tls_client_context  # noqa: E402

t = Tap()
need_loftd(t)
TIMEOUT = 15
RUN_TIMEOUT = 120


def crlf(data):
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def same(got, want, name):
    """t.eq for lists of messages, with a short diagnosis."""
    if t.ok(got == want, name):
        return True
    t.diag("got %d messages, want %d" % (len(got), len(want)))
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            k = next((j for j in range(min(len(g), len(w))) if g[j] != w[j]),
                     min(len(g), len(w)))
            t.diag("message %d differs at byte %d: got %r, want %r"
                   % (i + 1, k, g[max(0, k - 20):k + 40], w[max(0, k - 20):k + 40]))
    return False


def run(cmd, env=None, timeout=RUN_TIMEOUT, input=None):
    try:
        return subprocess.run(cmd, env=env, capture_output=True, timeout=timeout,
                              input=input)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(cmd, -999, e.stdout or b"", e.stderr or b"")


PREFIX = b"Return-Path: <sender@example.net>\nDelivered-To: demo@test.example.org\n"
BODIES = [
    message("client one"),
    b"From: a@example.net\nSubject: client two\nMessage-ID: <two@example.net>\n\n"
    b".leading dot\n..two dots\n.\nFrom here\n>From there\nend\n",
    message("client three", body="x" * 70 + "\n" + "y" * 2000 + "\n"),
]
STORED = [PREFIX + b for b in BODIES]


def setup(fmt="maildir", extra=""):
    env = Env(fmt)
    env.add_user("demo")
    for b in BODIES:
        rc, err = env.deliver("demo", b, "-f", "sender@example.net")
        if rc != 0:
            raise RuntimeError("delivery: %d %s" % (rc, err))
    env.start_loftd(extra)
    return env


def server_count(env):
    """Messages on the server, asked over POP3S (retried while the
    mailbox is still [IN-USE] by a client that just quit)."""
    d = env.loftd
    for _ in range(50):
        p = Pop3(d.pop3s_port, ctx=tls_client_context(d.cert), timeout=TIMEOUT)
        r = p.login()
        if r.startswith("+OK"):
            n = int(p.cmd("STAT").split()[1])
            p.cmd("QUIT")
            p.close()
            return n
        p.close()
        time.sleep(0.2)
    return None


def on_disk(env):
    if env.fmt == "maildir":
        return len(env.maildir_files("demo"))
    with open(env.inbox("demo"), "rb") as f:
        return sum(1 for ln in f if ln.startswith(b"From "))


def strip_added(raw, names):
    """Drop the header fields a client adds on top (e.g. fetchmail's
    Received:), with their continuation lines, from the top of raw."""
    lines = raw.split(b"\n")
    out, i = [], 0
    while i < len(lines) and lines[i] != b"":
        name = lines[i].split(b":", 1)[0].lower()
        j = i + 1
        while j < len(lines) and lines[j][:1] in (b" ", b"\t"):
            j += 1
        if name.decode("latin-1") not in names:
            out.extend(lines[i:j])
        i = j
    return b"\n".join(out + lines[i:])


# curl.

def part_curl():
    env = setup()
    d = env.loftd
    url = "pop3://127.0.0.1:%d/" % d.pop3_port
    surl = "pop3s://127.0.0.1:%d/" % d.pop3s_port
    base = ["curl", "-sS", "--max-time", "60", "-u", "demo:secret"]

    r = run(base + [url])
    t.ok(r.returncode != 0,
         "curl pop3:// without TLS cannot log in: no plaintext mechanism offered "
         "(exit %d)" % r.returncode)
    r = run(base + ["--ssl-reqd", "--cacert", d.cert, url])
    want = b"".join(b"%d %d\r\n" % (i + 1, len(crlf(s))) for i, s in enumerate(STORED))
    t.eq((r.returncode, r.stdout), (0, want),
         "curl --ssl-reqd (STLS) lists the messages with their CRLF sizes")
    for i in range(3):
        r = run(base + ["--ssl-reqd", "--cacert", d.cert, url + str(i + 1)])
        t.eq((r.returncode, r.stdout), (0, crlf(STORED[i])),
             "curl --ssl-reqd retrieves message %d byte for byte" % (i + 1))
    r = run(base + ["--cacert", d.cert, surl + "2"])
    t.eq((r.returncode, r.stdout), (0, crlf(STORED[1])),
         "curl pop3s:// --cacert retrieves message 2 byte for byte")
    r = run(base + ["--cacert", d.cert, "-X", "UIDL", surl])
    t.ok(r.returncode == 0 and re.fullmatch(rb"(\d+ [0-9a-f]{16}\r\n){3}", r.stdout),
         "curl -X UIDL: three 16-hex-digit UIDLs (%r)" % r.stdout[:200])
    r = run(["curl", "-sS", "--max-time", "60", "-u", "demo:secret",
             "--capath", "/nonexistent", "--cacert", "/etc/ssl/certs/ca-certificates.crt",
             surl])
    t.ok(r.returncode != 0, "curl with only the public CAs refuses the self-signed "
         "certificate (exit %d)" % r.returncode)
    r = run(["curl", "-sS", "--max-time", "60", "-u", "demo:wrong",
             "--cacert", d.cert, surl])
    t.ok(r.returncode != 0, "curl with a wrong password fails (exit %d)" % r.returncode)

    # DELE through curl: -X DELE on a message, no transfer.
    r = run(base + ["--cacert", d.cert, "-X", "DELE", "-I", surl + "1"])
    t.eq(r.returncode, 0, "curl -X DELE -I pop3s://.../1 exits 0 (%r)" % r.stderr)
    t.eq(server_count(env), 2, "the mailbox now holds 2 messages")
    t.eq(on_disk(env), 2, "and 2 files are left on disk")
    env.stop_loftd()
    env.cleanup()

    env = setup("mbox", "disable_plaintext_auth = no\n")
    d = env.loftd
    url = "pop3://127.0.0.1:%d/" % d.pop3_port
    r = run(base + [url])
    t.eq((r.returncode, r.stdout), (0, want),
         "mbox, plaintext allowed: curl pop3:// lists the messages")
    for i in range(3):
        r = run(base + [url + str(i + 1)])
        t.eq((r.returncode, r.stdout), (0, crlf(STORED[i])),
             "mbox: curl pop3:// retrieves message %d byte for byte" % (i + 1))
    env.stop_loftd()
    env.cleanup()


# fetchmail.

STORE_SH = """#!/bin/sh
# MDA for the test: store each message fetchmail hands over in DIR.
dir=%s
n=$(ls "$dir" | wc -l)
cat > "$dir/.tmp" || exit 75
mv "$dir/.tmp" "$dir/$(printf %%04d "$n").eml"
"""


def fetchmail(env, name, implicit, keep, extra=""):
    """Run fetchmail once with an rc file; returns (result, messages
    fetched as bytes in order)."""
    d = env.loftd
    home = os.path.join(env.dir, "fm-" + name)
    out = os.path.join(home, "out")
    os.makedirs(out)
    store = os.path.join(home, "store.sh")
    with open(store, "w") as f:
        f.write(STORE_SH % out)
    os.chmod(store, 0o755)
    rc = os.path.join(home, ".fetchmailrc")
    port = d.pop3s_port if implicit else d.pop3_port
    with open(rc, "w") as f:
        f.write('set no syslog\n'
                'poll 127.0.0.1 with protocol POP3 port %d timeout 60\n'
                '  user "demo" there with password "secret" is "root" here\n'
                '  options %s sslproto "TLS1.2+" sslcertck sslcertfile "%s"\n'
                '  sslcommonname "localhost"\n'
                '  %s fetchall no rewrite mda "%s"\n%s'
                % (port, "ssl" if implicit else "", d.cert,
                   "keep" if keep else "no keep", store, extra))
    os.chmod(rc, 0o600)
    envv = dict(os.environ, HOME=home, FETCHMAILHOME=home, FETCHMAILUSER="root",
                LC_ALL="C")
    r = run(["fetchmail", "-v", "-f", rc, "--nodetach"], env=envv)
    got = []
    for fn in sorted(os.listdir(out)):
        if fn.endswith(".eml"):
            with open(os.path.join(out, fn), "rb") as f:
                got.append(f.read())
    return r, got


def part_fetchmail():
    if not shutil.which("fetchmail"):
        t.ok(False, "fetchmail is installed (conf/install-deps)")
        return
    for fmt in ("maildir", "mbox"):
        env = setup(fmt)
        for implicit in (False, True):
            how = "%s, %s" % (fmt, "POP3S" if implicit else "STLS")
            r, got = fetchmail(env, ("s" if implicit else "p") + "keep", implicit, keep=True)
            if not t.ok(r.returncode == 0, "fetchmail (%s, keep) exits 0 (%d)" % (how, r.returncode)):
                t.diag(r.stderr.decode("utf-8", "replace")[-3000:])
            same([strip_added(m, {"received"}) for m in got], STORED,
                 "fetchmail (%s, keep): the messages as delivered" % how)
            t.ok(not any(b"\r" in m for m in got),
                 "fetchmail (%s) hands the MDA LF line ends" % how)
            t.eq(server_count(env), 3, "fetchmail (%s, keep): all left on the server" % how)
        t.eq(on_disk(env), 3, "%s: keep mode left the storage alone" % fmt)
        r, got = fetchmail(env, "delete", True, keep=False)
        if not t.ok(r.returncode == 0, "fetchmail (%s, delete mode) exits 0 (%d)"
                    % (fmt, r.returncode)):
            t.diag(r.stderr.decode("utf-8", "replace")[-3000:])
        same([strip_added(m, {"received"}) for m in got], STORED,
             "fetchmail (%s, delete mode): the messages as delivered" % fmt)
        t.eq(server_count(env), 0, "fetchmail (%s, delete mode) empties the mailbox" % fmt)
        t.eq(on_disk(env), 0, "%s: nothing left in storage" % fmt)
        # Nothing to fetch: fetchmail's exit 1 means "no mail".
        r, got = fetchmail(env, "empty", True, keep=False)
        t.ok(r.returncode == 1 and got == [],
             "fetchmail on the empty mailbox: exit 1, nothing fetched (%d)" % r.returncode)
        log = env.loftd.log()
        t.ok("pop3 login: user=<demo>, rip=127.0.0.1" in log, "%s: logins logged" % fmt)
        env.stop_loftd()
        env.cleanup()

    # A certificate that does not check out: fetchmail must refuse.
    env = setup()
    other = os.path.join(env.dir, "other")
    os.makedirs(other)
    from loft import make_cert
    wrong_ca, _ = make_cert(other)
    d = env.loftd
    saved = d.cert
    d.cert = wrong_ca
    try:
        r, got = fetchmail(env, "badcert", True, keep=True)
    finally:
        d.cert = saved
    t.ok(r.returncode not in (0, 1) and got == [],
         "fetchmail with sslcertck refuses a certificate it cannot verify (exit %d)"
         % r.returncode)
    env.stop_loftd()
    env.cleanup()


# getmail6.

def getmail(env, name, ssl, dest, delete, extra_opts=""):
    d = env.loftd
    gdir = os.path.join(env.dir, "gm-" + name)
    os.makedirs(gdir)
    rc = os.path.join(gdir, "getmailrc")
    ca = os.path.join(gdir, "ca.pem")
    shutil.copy(d.cert, ca)
    if dest == "maildir":
        target = os.path.join(gdir, "Maildir") + "/"
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(target, sub))
        dconf = "type = Maildir\npath = %s\n" % target
    else:
        target = os.path.join(gdir, "mbox")
        open(target, "wb").close()
        dconf = "type = Mboxrd\npath = %s\n" % target
    if ssl:
        rconf = ("type = SimplePOP3SSLRetriever\nport = %d\nca_certs = %s\n"
                 % (d.pop3s_port, ca))
    else:
        rconf = "type = SimplePOP3Retriever\nport = %d\n" % d.pop3_port
    with open(rc, "w") as f:
        f.write("[retriever]\n%sserver = 127.0.0.1\nusername = demo\n"
                "password = secret\ntimeout = 60\n\n[destination]\n%s\n"
                "[options]\nverbose = 1\nread_all = true\ndelete = %s\n"
                "delivered_to = false\nreceived = false\n%s"
                % (rconf, dconf, "true" if delete else "false", extra_opts))
    cmd = ["getmail", "--getmaildir", gdir, "--rcfile", rc]
    if env.owner:
        # getmail refuses to deliver as root: run it as the unprivileged
        # mailbox owner the Env uses, in a directory of its own.
        env.own(gdir)
        cmd = ["setpriv", "--reuid=%d" % env.owner[0], "--regid=%d" % env.owner[1],
               "--clear-groups"] + cmd
    r = run(cmd, env=dict(os.environ, HOME=gdir))
    if dest == "maildir":
        md = mailbox.Maildir(target, factory=None, create=False)
        msgs = sorted((md.get_bytes(k) for k in md.keys()),
                      key=lambda m: STORED.index(m) if m in STORED else 99)
    else:
        with open(target, "rb") as f:
            msgs = mboxrd_messages(f.read())
    return r, msgs, target


def mboxrd_messages(raw):
    """The messages of an mboxrd file, From_ lines and the separating
    blank line removed, ^>+From lines unquoted once."""
    msgs, cur = [], None
    for ln in raw.split(b"\n")[:-1]:
        if ln.startswith(b"From "):
            if cur is not None:
                msgs.append(cur)
            cur = []
            continue
        if re.match(rb">+From ", ln):
            ln = ln[1:]
        cur.append(ln)
    if cur is not None:
        msgs.append(cur)
    # Each message ends with the blank line mbox puts between messages.
    return [b"\n".join(m[:-1]) + b"\n" if m and m[-1] == b"" else b"\n".join(m)
            for m in msgs]


def part_getmail():
    if not shutil.which("getmail"):
        t.ok(False, "getmail (getmail6) is installed (conf/install-deps)")
        return
    env = setup()
    r, msgs, _ = getmail(env, "keep", True, "maildir", delete=False)
    if not t.ok(r.returncode == 0, "getmail SimplePOP3SSLRetriever -> Maildir exits 0 (%d)"
                % r.returncode):
        t.diag((r.stdout + r.stderr).decode("utf-8", "replace")[-3000:])
    t.eq(len(msgs), 3, "getmail stored 3 messages in its Maildir")
    same(msgs, STORED, "getmail -> Maildir: the messages byte for byte as delivered")
    t.eq(server_count(env), 3, "getmail delete = false leaves them on the server")
    t.eq(on_disk(env), 3, "and in storage")
    env.stop_loftd()
    env.cleanup()

    env = setup("mbox", "disable_plaintext_auth = no\n")
    r, msgs, target = getmail(env, "delete", False, "mbox", delete=True)
    if not t.ok(r.returncode == 0, "getmail SimplePOP3Retriever -> Mboxrd exits 0 (%d)"
                % r.returncode):
        t.diag((r.stdout + r.stderr).decode("utf-8", "replace")[-3000:])
    t.eq(len(msgs), 3, "getmail wrote 3 messages to its mboxrd")
    same(msgs, STORED, "getmail -> mboxrd: the messages byte for byte as delivered")
    raw = open(target, "rb").read()
    t.ok(b"\n>From here\n>>From there\n" in raw,
         "getmail's mboxrd quotes From lines of the message it got unquoted")
    t.ok(b"\n.leading dot\n..two dots\n.\n" in raw,
         "dot-stuffing undone: the dotted lines arrive as delivered")
    t.eq(server_count(env), 0, "getmail delete = true empties the mailbox")
    t.eq(on_disk(env), 0, "and the mbox holds no message")
    env.stop_loftd()
    env.cleanup()


t.guard("curl", part_curl)
t.guard("fetchmail", part_fetchmail)
t.guard("getmail", part_getmail)
t.done()
