#!/usr/bin/env python3
"""Dovecot reads what loft-deliver writes: doveadm (standalone, no
daemon) opens loft's Maildir and mbox and finds every message with its
subject, body and flags.

Keywords both ways on Maildir (Dovecot's control files, dovecot-keywords
among them, in the Maildir itself, as Dovecot keeps them by default): a
keyword stored through loftd's IMAP is seen by doveadm, and one doveadm
sets (a new letter, a new line in dovecot-keywords) is seen by loftd's
IMAP, announced with FLAGS before the FETCH that shows it."""
import imaplib
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import (Env, Tap, LOFTD, message, need_binaries,  # noqa: E402
                  tls_client_context)

t = Tap()
need_binaries(t)
DOVEADM = shutil.which("doveadm")
if not DOVEADM:
    t.skip_all("doveadm (dovecot-core) not installed")


def doveadm(env, *args, control=True):
    """doveadm on alice's mail; control=False keeps Dovecot's control
    files (dovecot-keywords) in the Maildir, its default."""
    conf = os.path.join(env.dir, "dovecot.conf")
    run = os.path.join(env.dir, "dovecot-run")
    idx = os.path.join(env.dir, "dovecot-index")
    for d in (run, idx):
        os.makedirs(d, exist_ok=True)
        env.own(d)
    ctl = ":CONTROL=%s" % idx if control else ""
    loc = ("maildir:%s:INDEX=%s%s" % (env.inbox("alice"), idx, ctl)
           if env.fmt == "maildir" else
           "mbox:%s:INBOX=%s:INDEX=%s:CONTROL=%s" %
           (env.user_dir("alice"), env.inbox("alice"), idx, idx))
    with open(conf, "w") as f:
        f.write("protocols =\nssl = no\nbase_dir = %s\nstate_dir = %s\n"
                "log_path = %s/dovecot.log\nmail_location = %s\n"
                "mbox_read_locks = fcntl\n" % (run, run, env.dir, loc))
    kw = {"user": env.owner[0], "group": env.owner[1]} if env.owner else {}
    return subprocess.run([DOVEADM, "-c", conf] + list(args), capture_output=True,
                          env={"USER": "alice", "HOME": env.dir,
                               "PATH": "/usr/bin:/bin"}, **kw)


def fetch(env, control=True):
    r = doveadm(env, "-f", "pager", "fetch", "hdr.subject flags body",
                "mailbox", "INBOX", "all", control=control)
    if r.returncode != 0:
        t.diag(r.stderr.decode("utf-8", "replace"))
    out = r.stdout.decode("utf-8", "replace")
    msgs = []
    for rec in out.split("\f"):
        if "hdr.subject:" not in rec:
            continue
        subj = rec.split("hdr.subject:", 1)[1].split("\n", 1)[0].strip()
        flags = rec.split("flags:", 1)[1].split("\n", 1)[0].strip() if "flags:" in rec else ""
        body = rec.split("body:", 1)[1].lstrip("\n") if "body:" in rec else ""
        msgs.append((subj, flags, body))
    return msgs


class Wire(imaplib.IMAP4_SSL):
    """imaplib keeping the lines the server sent, in order."""

    def __init__(self, *args, **kw):
        self.wire = []
        super().__init__(*args, **kw)

    def _get_line(self):
        line = super()._get_line()
        self.wire.append(line)
        return line


def keywords_both_ways(env):
    """Maildir: loft's keywords to Dovecot and Dovecot's to loft."""
    d = env.start_loftd(pop3=False, pop3s=False, imap=True, imaps=True)
    M = Wire("127.0.0.1", d.imaps_port,
             ssl_context=tls_client_context(d.cert), timeout=15)
    M.login("alice", "secret")
    M.select("INBOX")
    typ, data = M.uid("STORE", "1", "+FLAGS", "($Junk $label1)")
    t.ok(typ == "OK", "maildir: loft stores $Junk $label1 on UID 1 (%r)" %
         data)
    msgs = dict((m[0], m[1]) for m in fetch(env, control=False))
    t.ok("$Junk" in msgs.get("dovecot 0", "").split() and
         "$label1" in msgs.get("dovecot 0", "").split(),
         "maildir: Dovecot sees loft's keywords (%r)" % msgs)
    t.ok("$Junk" not in msgs.get("dovecot 1", ""),
         "maildir: and only on that message")
    r = doveadm(env, "flags", "add", "FromDovecot $Junk", "mailbox", "INBOX",
                "header", "Subject", "dovecot 2", control=False)
    if r.returncode != 0:
        t.diag(r.stderr.decode("utf-8", "replace"))
    t.eq(r.returncode, 0, "maildir: doveadm flags add FromDovecot $Junk")
    with open(os.path.join(env.inbox("alice"), "dovecot-keywords")) as f:
        kw = f.read()
    t.ok(re.search(r"(?m)^\d+ FromDovecot$", kw) is not None and
         kw.startswith("0 $Junk\n1 $label1\n"),
         "maildir: Dovecot added its keyword to loft's dovecot-keywords "
         "(%r)" % kw)
    M.wire.clear()
    M.noop()
    fi = next((i for i, ln in enumerate(M.wire)
               if ln.startswith(b"* FLAGS (") and b"FromDovecot" in ln), -1)
    xi = next((i for i, ln in enumerate(M.wire)
               if re.match(rb"\* 3 FETCH \(UID 3 FLAGS \(\$Junk FromDovecot\)\)",
                           ln)), -1)
    t.ok(0 <= fi < xi, "maildir: loft sees Dovecot's keyword, FLAGS first "
         "(%r)" % M.wire)
    typ, kwd = M.search(None, "KEYWORD", "FromDovecot")
    t.ok(kwd == [b"3"], "maildir: and searches it (%r)" % kwd)
    typ, data = M.uid("STORE", "3", "-FLAGS", "(FromDovecot)")
    msgs = dict((m[0], m[1]) for m in fetch(env, control=False))
    t.ok("FromDovecot" not in msgs.get("dovecot 2", "") and
         "$Junk" in msgs.get("dovecot 2", ""),
         "maildir: loft removes it, Dovecot sees that (%r)" % msgs)
    M.logout()
    t.eq(env.stop_loftd(), 0, "maildir: loftd exits with status 0")


for fmt in ("maildir", "mbox"):
    env = Env(fmt)
    env.add_user("alice")
    body = "first line\nFrom the start of a line\nlast line\n"
    for i in range(3):
        env.deliver("alice", message("dovecot %d" % i, body=body), "-f", "s@example.net")
    if fmt == "maildir":
        # A mail reader marks the first message seen.
        new = os.path.join(env.inbox("alice"), "new")
        first = sorted(os.listdir(new))[0]
        os.rename(os.path.join(new, first),
                  os.path.join(env.inbox("alice"), "cur", first + ":2,S"))
    msgs = fetch(env)
    t.eq(sorted(m[0] for m in msgs), ["dovecot 0", "dovecot 1", "dovecot 2"],
         "%s: doveadm finds all three messages" % fmt)
    t.ok(all("first line" in m[2] and "last line" in m[2] for m in msgs),
         "%s: and their bodies" % fmt)
    if fmt == "maildir":
        t.ok(any("\\Seen" in m[1] for m in msgs if m[0] == "dovecot 0"),
             "maildir: and the \\Seen flag from the file name")
        if os.access(LOFTD, os.X_OK):
            keywords_both_ways(env)
        else:
            t.diag("loftd not built: keywords both ways not checked")
    env.cleanup()
t.done()
