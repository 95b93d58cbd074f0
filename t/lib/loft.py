"""Shared helpers for loft's integration tests: TAP output, a temporary
configuration with users, and running the built programs.

Each test script is a TAP producer run by prove; LOFT_TOP (set by
`make check`) points at the build tree, else the tree this file is in."""

import os
import pwd
import shutil
import subprocess
import sys
import tempfile

TOP = os.environ.get("LOFT_TOP") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
# `make check` installs into a DESTDIR and points LOFT_SBINDIR there, so
# the tests run the installed programs; run by hand, the built ones.
SBINDIR = os.environ.get("LOFT_SBINDIR")
DELIVER = os.path.join(SBINDIR, "loft-deliver") if SBINDIR else \
    os.path.join(TOP, "mda", "loft-deliver")
LOFTCTL = os.path.join(SBINDIR, "loftctl") if SBINDIR else \
    os.path.join(TOP, "ctl", "loftctl")


class Tap:
    """Minimal TAP producer; exit status says whether all passed."""

    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, name):
        self.n += 1
        if not cond:
            self.failed += 1
        print("%sok %d - %s" % ("" if cond else "not ", self.n, name))
        sys.stdout.flush()
        return cond

    def eq(self, got, want, name):
        if not self.ok(got == want, name):
            self.diag("got:  %r" % (got,))
            self.diag("want: %r" % (want,))

    def diag(self, msg):
        for line in str(msg).splitlines() or [""]:
            print("# " + line)

    def skip_all(self, why):
        print("1..0 # SKIP " + why)
        sys.exit(0)

    def done(self):
        print("1..%d" % self.n)
        sys.exit(1 if self.failed else 0)


class Env:
    """A temporary loft setup: config file, user database, mail storage."""

    def __init__(self, fmt="maildir", extra="", keep=False):
        # Under /tmp (or TMPDIR), not in the build tree: run as root, the
        # programs switch to an unprivileged mailbox owner, who must be able
        # to reach the mail even if the build tree sits in /root.
        self.dir = tempfile.mkdtemp(prefix="loft-test-")
        os.chmod(self.dir, 0o711)
        self.root = os.geteuid() == 0
        owner = ""
        self.owner = None
        if self.root:
            pw = pwd.getpwnam("nobody")
            self.owner = (pw.pw_uid, pw.pw_gid)
            owner = "virtual_uid = %d\nvirtual_gid = %d\n" % self.owner
        self.keep = keep or os.environ.get("LOFT_KEEP_TMP")
        self.conf = os.path.join(self.dir, "loft.conf")
        self.maillog = os.path.join(self.dir, "maillog")
        self.mail = os.path.join(self.dir, "mail")
        if fmt == "maildir":
            loc = "maildir:%s/%%u" % self.mail
        else:
            loc = "mbox:%s/%%u:INBOX=%s/%%u/INBOX" % (self.mail, self.mail)
        self.fmt = fmt
        self.owner_conf = owner
        os.makedirs(self.mail)
        self.own(self.mail)
        self.write_conf("""
user_database = %s/users
mail_location = %s
maillog_file = %s
myhostname = test.example.org
%s%s
""" % (self.dir, loc, self.maillog, owner, extra))

    def own(self, path):
        """Give path (recursively) to the mailbox owner when running as root,
        as files a user's own mail programs made would be."""
        if not self.root:
            return
        for d, dirs, files in os.walk(path):
            os.chown(d, *self.owner)
            for f in files:
                os.chown(os.path.join(d, f), *self.owner)
        if os.path.isfile(path):
            os.chown(path, *self.owner)

    def write_conf(self, text):
        with open(self.conf, "w") as f:
            f.write(text)

    def ctl(self, *args, input=None):
        return subprocess.run([LOFTCTL, "-c", self.conf] + list(args),
                              input=input, capture_output=True)

    def add_user(self, name, *opts):
        r = self.ctl("user", "add", name, *opts, input=b"secret\n")
        if r.returncode != 0:
            raise RuntimeError("user add %s: %s" % (name, r.stderr))

    def deliver(self, user, msg, *args):
        """Run loft-deliver; returns (exit status, stderr text)."""
        r = subprocess.run([DELIVER, "-c", self.conf, "-d", user] +
                           list(args), input=msg, capture_output=True)
        return r.returncode, r.stderr.decode("utf-8", "replace")

    def user_dir(self, user):
        return os.path.join(self.mail, user)

    def inbox(self, user):
        if self.fmt == "maildir":
            return self.user_dir(user)
        return os.path.join(self.user_dir(user), "INBOX")

    def maildir_files(self, user, folder=None):
        """All message files of a Maildir folder: {relative path: bytes}."""
        d = self.user_dir(user)
        if folder:
            d = os.path.join(d, "." + folder.replace("/", "."))
        out = {}
        for sub in ("new", "cur"):
            p = os.path.join(d, sub)
            if not os.path.isdir(p):
                continue
            for name in sorted(os.listdir(p)):
                with open(os.path.join(p, name), "rb") as f:
                    out[sub + "/" + name] = f.read()
        return out

    def log(self):
        try:
            with open(self.maillog) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def cleanup(self):
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def need_binaries(tap):
    for p in (DELIVER, LOFTCTL):
        if not os.access(p, os.X_OK):
            tap.skip_all("%s not built" % p)


def message(subject="hello", body="Hello, world.\n", extra="", eol="\n"):
    text = ("From: Sender <sender@example.net>\nTo: alice@example.org\n"
            "Subject: %s\nMessage-ID: <%s@example.net>\n"
            "Date: Sun, 29 Nov 2026 10:00:00 +0000\n%s\n%s" %
            (subject, subject.replace(" ", "."), extra, body))
    return text.replace("\n", eol).encode()
