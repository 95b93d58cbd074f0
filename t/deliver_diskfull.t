#!/usr/bin/env python3
"""A full file system: loft-deliver exits 75 with 4.3.1, leaves no partial
message, and everything delivered before stays intact. Uses a small tmpfs
when it can mount one (root), and a file size limit (EFBIG) always."""
import mailbox
import os
import resource
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import DELIVER, Env, Tap, message, need_binaries  # noqa: E402

t = Tap()
need_binaries(t)


def fill(env, user, limit_bytes=None, count=200):
    """Deliver 40 KB messages until one fails; returns (ok tags, rc, err)."""
    ok = []
    for i in range(count):
        tag = "big%d" % i
        msg = message(tag, body=("%s\n" % tag) * 8000)

        def lim():
            if limit_bytes:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
        r = subprocess.run([DELIVER, "-c", env.conf, "-d", user], input=msg,
                           capture_output=True, preexec_fn=lim)
        if r.returncode != 0:
            return ok, r.returncode, r.stderr.decode()
        ok.append(tag)
    return ok, 0, ""


def check(env, fmt, ok, rc, err, what):
    t.ok(len(ok) > 0, "%s: some messages fit first (%d)" % (what, len(ok)))
    t.eq(rc, 75, "%s: the delivery that does not fit exits 75" % what)
    t.ok(err.startswith("4.3.1"), "%s: stderr carries 4.3.1 (%r)" % (what, err))
    if fmt == "maildir":
        box = mailbox.Maildir(env.user_dir("alice"), create=False)
        tmp = os.listdir(os.path.join(env.user_dir("alice"), "tmp"))
        t.eq(tmp, [], "%s: nothing left in tmp/" % what)
    else:
        box = mailbox.mbox(env.inbox("alice"), create=False)
        data = open(env.inbox("alice"), "rb").read()
        t.ok(data.endswith(b"\n\n"), "%s: mbox ends after a whole message" % what)
    subjects = [m["Subject"] for m in box]
    t.eq(subjects if fmt == "mbox" else sorted(subjects),
         ok if fmt == "mbox" else sorted(ok),
         "%s: exactly the acknowledged messages are there" % what)
    intact = all(m.get_payload() == ("%s\n" % m["Subject"]) * 8000 for m in box)
    t.ok(intact, "%s: and each is intact" % what)


# File size limit (EFBIG): a message bigger than the limit cannot be written.
for fmt in ("maildir", "mbox"):
    env = Env(fmt)
    env.add_user("alice")
    if fmt == "maildir":
        ok, rc, err = fill(env, "alice", count=3)
        # Every message fits the per-file limit, so grow one past it.
        big = message("huge", body="x" * 60000)
        r = subprocess.run([DELIVER, "-c", env.conf, "-d", "alice"], input=big,
                           capture_output=True,
                           preexec_fn=lambda: resource.setrlimit(
                               resource.RLIMIT_FSIZE, (45000, 45000)))
        ok, rc, err = ok, r.returncode, r.stderr.decode()
    else:
        ok, rc, err = fill(env, "alice", limit_bytes=300000)
    check(env, fmt, ok, rc, err, "%s, file size limit" % fmt)
    env.cleanup()

# A real full file system: a 600 KiB tmpfs holding the mail (index elsewhere).
env = Env("maildir")
small = os.path.join(env.dir, "small")
os.makedirs(small)
mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", small],
                         capture_output=True).returncode == 0
if mounted:
    env.own(small)
if not mounted:
    t.ok(True, "cannot mount a tmpfs here (not root?): tmpfs cases skipped")
else:
    try:
        for fmt in ("maildir", "mbox"):
            d = os.path.join(small, fmt)
            os.makedirs(d)
            os.makedirs(os.path.join(env.dir, "idx-" + fmt))
            env.own(os.path.join(env.dir, "idx-" + fmt))
            loc = ("maildir:%s/%%u:INDEX=%s/idx-%s/%%u" % (d, env.dir, fmt)
                   if fmt == "maildir" else
                   "mbox:%s/%%u:INBOX=%s/%%u/INBOX:INDEX=%s/idx-%s/%%u"
                   % (d, d, env.dir, fmt))
            env.write_conf("user_database = %s/users\nmail_location = %s\n"
                           "maillog_file = %s\n%s" % (env.dir, loc, env.maillog,
                                                     env.owner_conf))
            env.own(d)
            env.fmt = fmt
            env.mail = d
            if fmt == "maildir":
                env.add_user("alice")
            ok, rc, err = fill(env, "alice")
            check(env, fmt, ok, rc, err, "%s, tmpfs full" % fmt)
            subprocess.run(["rm", "-rf", d])
    finally:
        subprocess.run(["umount", small])
env.cleanup()
t.done()
