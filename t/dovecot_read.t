#!/usr/bin/env python3
"""Dovecot reads what loft-deliver writes: doveadm (standalone, no
daemon) opens loft's Maildir and mbox and finds every message with its
subject, body and flags."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Tap, message, need_binaries  # noqa: E402

t = Tap()
need_binaries(t)
DOVEADM = shutil.which("doveadm")
if not DOVEADM:
    t.skip_all("doveadm (dovecot-core) not installed")


def doveadm(env, *args):
    conf = os.path.join(env.dir, "dovecot.conf")
    run = os.path.join(env.dir, "dovecot-run")
    idx = os.path.join(env.dir, "dovecot-index")
    for d in (run, idx):
        os.makedirs(d, exist_ok=True)
        env.own(d)
    loc = ("maildir:%s:INDEX=%s:CONTROL=%s" % (env.inbox("alice"), idx, idx)
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


def fetch(env):
    r = doveadm(env, "-f", "pager", "fetch", "hdr.subject flags body",
                "mailbox", "INBOX", "all")
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
    env.cleanup()
t.done()
