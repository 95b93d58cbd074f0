#!/usr/bin/env python3
"""mutt reads what loft-deliver writes: a Maildir and an mbox opened in mutt
(driven headless in tmux) show every delivered message, and mutt's own
changes (flag, delete, sync) are then picked up by loft's index."""
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Tap, message, need_binaries  # noqa: E402

t = Tap()
need_binaries(t)
if not shutil.which("mutt") or not shutil.which("tmux"):
    t.skip_all("mutt or tmux not installed")

SESSION = "loftmutt%d" % os.getpid()


def tmux(*args):
    return subprocess.run(["tmux"] + list(args), capture_output=True, text=True)


def screen():
    return tmux("capture-pane", "-p", "-t", SESSION).stdout


def wait_for(text, tries=100):
    """Poll the screen until text shows; no assertion on time."""
    for _ in range(tries):
        s = screen()
        if text in s:
            return s
        time.sleep(0.1)
    return screen()


def run_mutt(env, folder):
    muttrc = os.path.join(env.dir, "muttrc")
    with open(muttrc, "w") as f:
        f.write("set mbox_type=%s\nset folder=%s\nset spoolfile=%s\n"
                "set sort=subject\nset mark_old=no\nset move=no\n"
                "set delete=yes\nset resolve=no\nset confirmappend=no\nset quit=yes\n"
                "set status_format=\"STATUS %%f msgs=%%m new=%%n del=%%d\"\n"
                "set index_format=\"IDX %%4C %%Z %%s\"\n"
                % ("Maildir" if env.fmt == "maildir" else "mbox",
                   env.dir, folder))
    cmd = ["mutt", "-n", "-F", muttrc, "-f", folder]
    if env.owner:
        cmd = ["setpriv", "--reuid=%d" % env.owner[0], "--regid=%d" % env.owner[1],
               "--clear-groups", "env", "HOME=" + env.dir] + cmd
    tmux("new-session", "-d", "-s", SESSION, "-x", "120", "-y", "40",
         " ".join("'%s'" % c for c in cmd))


for fmt in ("maildir", "mbox"):
    env = Env(fmt)
    env.add_user("alice")
    for i in range(3):
        env.deliver("alice", message("mutt test %d" % i), "-f", "s@example.net")
    folder = env.inbox("alice")
    run_mutt(env, folder)
    s = wait_for("msgs=3")
    t.ok("msgs=3" in s, "%s: mutt opens the folder and counts 3 messages" % fmt)
    t.ok(all(("mutt test %d" % i) in s for i in range(3)),
         "%s: mutt lists every subject" % fmt)
    # Flag the first message, delete the second, and sync ($ then q).
    # Sorted by subject ("mutt test 0" first, delivered first: UID 1): a
    # Maildir's own order is its directory's, which is no order at all.
    tmux("send-keys", "-t", SESSION, "F")
    time.sleep(0.2)
    tmux("send-keys", "-t", SESSION, "j", "d")
    time.sleep(0.2)
    tmux("send-keys", "-t", SESSION, "$")
    s = wait_for("msgs=2")
    t.ok("msgs=2" in s, "%s: mutt synced the deletion" % fmt)
    tmux("send-keys", "-t", SESSION, "q")
    for _ in range(50):
        if tmux("has-session", "-t", SESSION).returncode != 0:
            break
        time.sleep(0.1)
    tmux("kill-session", "-t", SESSION)
    r = env.ctl("index", "list", "alice")
    lines = [ln for ln in r.stdout.decode().splitlines() if not ln.startswith("#")]
    uids = sorted(int(ln.split()[0]) for ln in lines)
    t.eq(uids, [1, 3], "%s: loft's index drops the deleted message, keeps UIDs" % fmt)
    flagged = [ln for ln in lines if "\\Flagged" in ln]
    t.ok(len(flagged) == 1 and flagged[0].startswith("1 "),
         "%s: and sees the flag mutt set on UID 1" % fmt)
    env.cleanup()
t.done()
