#!/usr/bin/env python3
"""A delivery killed (SIGKILL) while it writes leaves nothing half-written
that a reader would see: Maildir writes go through tmp/, and an mbox append
cut short is removed by the next process that takes the lock."""
import mailbox
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import DELIVER, Env, Tap, message, need_binaries  # noqa: E402

t = Tap()
need_binaries(t)
BIG = message("big", body="0123456789abcdef" * (6 << 20 >> 4) + "\n")  # ~6 MB


def kill_when(env, path, fmt):
    """Start a big delivery and SIGKILL it as soon as it is writing:
    the dotlock (mbox) or a file in tmp/ (Maildir) appears."""
    p = subprocess.Popen([DELIVER, "-c", env.conf, "-d", "alice"],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    p.stdin.write(BIG)
    p.stdin.close()
    tmp = os.path.join(env.inbox("alice"), "tmp")
    size0 = os.path.getsize(path) if fmt == "mbox" else 0
    for _ in range(200000):
        if p.poll() is not None:
            break
        if fmt == "mbox" and os.path.getsize(path) > size0:
            break
        if fmt == "maildir" and os.path.isdir(tmp) and os.listdir(tmp):
            break
    p.send_signal(signal.SIGKILL)
    p.wait()
    return p.returncode


for fmt in ("mbox", "maildir"):
    killed_any = False
    recovered = 0
    for attempt in range(5):
        env = Env(fmt, extra="mailbox_size_limit = 0\n")
        env.add_user("alice")
        env.deliver("alice", message("before"))
        box = env.inbox("alice")
        rc = kill_when(env, box, fmt)
        killed_any |= rc == -signal.SIGKILL
        # The next delivery takes the lock after the dead one.
        rc2, err = env.deliver("alice", message("after"))
        if fmt == "mbox":
            msgs = list(mailbox.mbox(box, create=False))
        else:
            msgs = list(mailbox.Maildir(box, create=False))
        subjects = [m["Subject"] for m in msgs]
        big_ok = all(m.get_payload() == "0123456789abcdef" * (6 << 20 >> 4) + "\n"
                     for m in msgs if m["Subject"] == "big")
        ok = (rc2 == 0 and "before" in subjects and "after" in subjects and
              big_ok and len(subjects) in (2, 3))
        if not ok:
            t.diag("attempt %d: rc=%s rc2=%s subjects=%r %s" %
                   (attempt, rc, rc2, subjects, err))
        t.ok(ok, "%s, kill %d: readers see only whole messages (%s)" %
             (fmt, attempt, ", ".join(sorted(subjects))))
        recovered += "killed while writing" in env.log()
        if fmt == "mbox":
            t.ok(open(box, "rb").read().endswith(b"\n\n") and
                 not os.path.exists(box + ".lock"),
                 "mbox, kill %d: the file ends after a whole message, no lock left" % attempt)
        env.cleanup()
    t.ok(killed_any, "%s: at least one delivery was really killed mid-way" % fmt)
    if fmt == "maildir":
        # What a killed delivery left in tmp/ goes once it is 36 hours old.
        env = Env(fmt)
        env.add_user("alice")
        env.deliver("alice", message("x"))
        tmp = os.path.join(env.inbox("alice"), "tmp")
        for name, age in (("old.1.host", 37 * 3600), ("young.1.host", 35 * 3600)):
            p = os.path.join(tmp, name)
            with open(p, "wb") as f:
                f.write(b"partial")
            os.utime(p, (time.time() - age, time.time() - age))
            env.own(p)
        env.ctl("reindex", "alice")
        t.eq(sorted(os.listdir(tmp)), ["young.1.host"],
             "maildir: a sync removes tmp/ files older than 36 hours only")
        env.cleanup()
    if fmt == "mbox":
        t.ok(recovered > 0, "mbox: the next delivery cut off a half-written "
             "message (%d of 5 times)" % recovered)
t.done()
