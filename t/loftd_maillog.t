#!/usr/bin/env python3
"""loftd in the background with maillog_file: every process's lines reach
the file, and after logrotate's rename and a SIGHUP they all go to the new
file, those of a mail process that was already serving a session too."""
import os
import poplib
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import (LOFTD, Env, Loftd, Tap, ensure_login_user,  # noqa: E402
                  free_port, message, need_loftd, wait_port)

t = Tap()
need_loftd(t)


def wait_file(path, pattern, timeout=10.0):
    """Poll path until the regular expression matches; the match or None."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, errors="replace") as f:
                m = re.search(pattern, f.read())
        except FileNotFoundError:
            m = None
        if m or time.monotonic() >= deadline:
            return m
        time.sleep(0.05)


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def master_pids(conf):
    """loftd processes on conf without a role (-X): the master."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if conf.encode() in argv and b"-X" not in argv and \
                os.path.basename(argv[0]).startswith(b"loftd"):
            out.append(int(d))
    return out


env = Env("maildir")
env.add_user("alice")
env.deliver("alice", message("one"))
d = Loftd(env, "disable_plaintext_auth = no\n", pop3s=False, tls=False)
d.pop3_port = free_port()
d.write_conf()
ensure_login_user(d.login_user())
# Without -f: loftd goes into the background and logs to maillog_file.
r = subprocess.run([LOFTD, "-c", env.conf], capture_output=True, timeout=30)
t.eq(r.returncode, 0, "loftd started in the background")
ok = wait_port(d.pop3_port)
t.ok(ok, "POP3 listens")
pids = master_pids(env.conf)
t.eq(len(pids), 1, "one master process")
if not ok or len(pids) != 1:
    t.diag(read(env.maillog))
    for p in pids:
        os.kill(p, signal.SIGKILL)
    t.done()
master = pids[0]

try:
    first = poplib.POP3("127.0.0.1", d.pop3_port, timeout=10)
    first.user("alice")
    first.pass_("secret")
    t.eq(first.stat()[0], 1, "a session is open before the rotation")
    t.ok(wait_file(env.maillog, r"auth\[\d+\]: pop3 login: user=<alice>"),
         "the auth process's line is in the file (through the master)")

    # logrotate: rename, then SIGHUP.
    os.rename(env.maillog, env.maillog + ".1")
    os.kill(master, signal.SIGHUP)
    t.ok(wait_file(env.maillog, r"reopened"),
         "after SIGHUP the master writes to a new file")

    # The session opened before the rotation ends now: its mail process
    # logs the logout into the new file, not the renamed one.
    first.quit()
    t.ok(wait_file(env.maillog, r"mail\[\d+\]: pop3\(alice\): logout"),
         "the mail process that was running logs into the new file")
    t.ok(not re.search(r"logout", read(env.maillog + ".1")),
         "the renamed file does not get it")

    second = poplib.POP3("127.0.0.1", d.pop3_port, timeout=10)
    second.user("alice")
    second.pass_("secret")
    second.quit()
    time.sleep(0.2)
    new = read(env.maillog)
    t.ok(len(re.findall(r"mail\[\d+\]: pop3\(alice\): login", new)) == 1,
         "a login after the rotation is in the new file")
    t.ok(len(re.findall(r"mail\[\d+\]: pop3\(alice\): login",
                        read(env.maillog + ".1"))) == 1, "the renamed file holds only the first login")
    for line in new.splitlines():
        if not re.match(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ \S+\[\d+\]: ",
                        line):
            t.ok(False, "every line of the file is whole: %r" % line)
            break
    else:
        t.ok(True, "every line of the file is whole")
finally:
    os.kill(master, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while master_pids(env.conf) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = master_pids(env.conf)
    t.eq(left, [], "SIGTERM stops the master")
    for p in left:
        os.kill(p, signal.SIGKILL)
t.ok(re.search(r"master\[\d+\]: stopped", read(env.maillog)),
     "the master's last line is in the file")
env.cleanup()
t.done()
