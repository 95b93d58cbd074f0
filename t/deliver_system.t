#!/usr/bin/env python3
"""System users (system_users = yes): found in the password database,
delivered as their own uid into an mbox spool that, like Debian's
/var/mail, only group mail may create dotlocks in. Needs root."""
import grp
import os
import pwd
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Tap, message, need_binaries  # noqa: E402

t = Tap()
need_binaries(t)
if os.geteuid() != 0:
    t.skip_all("needs root to create a system user")
try:
    grp.getgrnam("mail")
except KeyError:
    t.skip_all("no group mail on this system")
NAME = "lofttest%d" % (os.getpid() % 10000)
if subprocess.run(["useradd", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin",
                   NAME], capture_output=True).returncode != 0:
    t.skip_all("useradd failed")
try:
    pw = pwd.getpwnam(NAME)
    env = Env("mbox")
    spool = os.path.join(env.dir, "spool")
    os.makedirs(spool)
    os.chown(spool, 0, grp.getgrnam("mail").gr_gid)
    os.chmod(spool, 0o2775)
    folders = os.path.join(env.dir, "home")
    os.makedirs(os.path.join(folders, NAME))
    os.chown(os.path.join(folders, NAME), pw.pw_uid, pw.pw_gid)
    env.write_conf(open(env.conf).read() + "system_users = yes\n"
                   "system_mail_location = mbox:%s/%%u:INBOX=%s/%%u\n" % (folders, spool))
    rc, err = env.deliver(NAME, message("system"), "-f", "s@example.net")
    t.eq((rc, err), (0, ""), "delivery to a system user exits 0")
    box = os.path.join(spool, NAME)
    st = os.stat(box)
    t.eq((st.st_uid, st.st_mode & 0o777), (pw.pw_uid, 0o600),
         "spool file belongs to the user, mode 0600")
    t.ok(open(box, "rb").read().startswith(b"From s@example.net "), "mbox written")
    t.ok(not os.path.exists(box + ".lock"), "dotlock made and removed")
    rc, err = env.deliver("root", message("root"))
    t.ok(rc != 0 and not os.path.exists(os.path.join(spool, "root")),
         "never delivers as root (%d %r)" % (rc, err.strip()))
    r = env.ctl("index", "stats", NAME)
    t.ok(r.returncode == 0 and b"INBOX: uidvalidity=" in r.stdout or t.diag(r.stderr),
         "loftctl indexes the system user's mail")
    env.cleanup()
finally:
    subprocess.run(["userdel", NAME], capture_output=True)
t.done()
