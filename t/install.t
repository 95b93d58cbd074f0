#!/usr/bin/env python3
"""make install honours DESTDIR and prefix, and what it installs runs:
the example configuration loads and `loftctl config -n` is silent on it."""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import TOP, Tap, need_binaries  # noqa: E402

t = Tap()
need_binaries(t)
dest = tempfile.mkdtemp(prefix="loft-install-")
r = subprocess.run(["make", "-s", "-C", TOP, "install", "DESTDIR=" + dest,
                    "prefix=/opt/loft"], capture_output=True)
t.eq(r.returncode, 0, "make install DESTDIR=... prefix=/opt/loft exits 0")
root = dest + "/opt/loft"
for f in ("sbin/loft-deliver", "sbin/loftctl"):
    p = os.path.join(root, f)
    t.ok(os.path.isfile(p) and os.access(p, os.X_OK), "%s installed, executable" % f)
for f in ("share/man/man5/loft.conf.5", "share/man/man8/loft-deliver.8",
          "share/man/man8/loftctl.8", "etc/loft/loft.conf",
          "share/doc/loft/loft.conf.example"):
    t.ok(os.path.isfile(os.path.join(root, f)), "%s installed" % f)
t.eq([p for p in os.listdir(dest) if p != "opt"], [], "nothing installed outside DESTDIR/prefix")
conf = os.path.join(root, "etc/loft/loft.conf")
r = subprocess.run([os.path.join(root, "sbin/loftctl"), "-c", conf, "config", "-n"],
                   capture_output=True)
t.eq((r.returncode, r.stdout, r.stderr), (0, b"", b""),
     "the installed example configuration loads with nothing changed")
# A second install keeps an edited configuration.
with open(conf, "a") as f:
    f.write("message_size_limit = 1234\n")
subprocess.run(["make", "-s", "-C", TOP, "install", "DESTDIR=" + dest,
                "prefix=/opt/loft"], capture_output=True)
t.ok("message_size_limit = 1234" in open(conf).read(), "reinstall keeps the edited loft.conf")
shutil.rmtree(dest)
t.done()
