#!/usr/bin/env python3
"""Side by side: Debian's procmail and loft-deliver on the same rule files
and the same messages (t/data/procmail/NN-name/{rc,msgs/*}); the files each
leaves under its HOME must agree, case by case (one TAP line per case).

How the runs are made fair:
- Both run as the same unprivileged user (nobody when run as root) with
  their own HOME (a temporary directory holding the case's rc as
  .procmailrc and its other files), SHELL=/bin/sh and the same PATH.
  procmail reads exactly that file: `procmail -p -f SENDER HOME=...
  SHELL=/bin/sh DEFAULT=... ORGMAIL=... HOME/.procmailrc` (an rcfile on
  the command line: no /etc/procmailrc, no ~/.procmailrc lookup).
- loft-deliver runs with a loft.conf whose mail_location is
  mbox:HOME/Mail:INBOX=HOME/Mail/INBOX and mda_rules_file the same rc;
  procmail gets DEFAULT=ORGMAIL=HOME/Mail/INBOX, so both default to one
  path.
- loft-deliver puts Return-Path: and Delivered-To: on top of the
  message (as Postfix's local does before it runs procmail), so procmail
  is given the message with those two lines already on top: the rules see
  the same header on both sides.
Normalised before comparing, because it must differ: the From_ line of
each mbox message (procmail writes "From SENDER  DATE" with the date of
the run; loft the same form with one space and MAILER-DAEMON for <>);
mboxo against mboxrd quoting (procmail quotes "From " body lines with one
">" and leaves ">From " alone, loft adds a ">" to both, so every
"^>+From " becomes ">From "); the names of Maildir and $MSGPREFIX files
(unique names; their contents are compared as a sorted list per
directory); and loft's own metadata (the index, loft-uidvalidity,
maildirfolder, dovecot-*) and the case's own files (rc, includes,
LOGFILE). Exit codes must agree on success or failure; exactly, when the
case has a file "exact-exit" (EXITCODE, TRAP). A case's file "args"
holds arguments, one a line: procmail gets each as -a ARG, loft-deliver
after its options ($1 ...). What each side writes on its standard output
(a bare "|") is kept in HOME/stdout and compared like a folder.
"""
import concurrent.futures
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import DELIVER, LOFTCTL, TOP, Tap  # noqa: E402

t = Tap()
PROCMAIL = shutil.which("procmail") or "/usr/bin/procmail"
if not os.access(PROCMAIL, os.X_OK):
    t.skip_all("procmail not installed")
for p in (DELIVER, LOFTCTL):
    if not os.access(p, os.X_OK):
        t.skip_all("%s not built" % p)

DATA = os.path.join(TOP, "t", "data", "procmail")
PATH = "/usr/local/bin:/usr/bin:/bin"
ROOT = os.geteuid() == 0
if ROOT:
    pw = pwd.getpwnam("nobody")
    OWNER = (pw.pw_uid, pw.pw_gid)
else:
    OWNER = (os.getuid(), os.getgid())
SKIP_NAMES = {"rc", ".procmailrc", "log", "maildirfolder", "loft-uidvalidity",
              "loft-uidlist", ".loft-index", "loft-index", "fake-sendmail",
              "args", "exact-exit"}


def as_owner():
    if ROOT:
        os.setgroups([])
        os.setgid(OWNER[1])
        os.setuid(OWNER[0])


def chown_tree(path):
    if not ROOT:
        return
    for d, dirs, files in os.walk(path):
        os.chown(d, *OWNER)
        for f in files:
            os.lchown(os.path.join(d, f), *OWNER)


def make_home(base, case_dir, extra_files):
    home = os.path.join(base, "home")
    os.makedirs(os.path.join(home, "Mail"))
    shutil.copy(os.path.join(case_dir, "rc"), os.path.join(home, ".procmailrc"))
    # Its mode is the test's, not the checkout's (a umask of 002 makes
    # it group-writable, which both procmail and loft refuse).
    os.chmod(os.path.join(home, ".procmailrc"), 0o644)
    for f in extra_files:
        shutil.copy(os.path.join(case_dir, f), os.path.join(home, f))
    return home


# One shell per case runs every delivery of one side, in order, so that
# a case costs two process starts from here, not two per message.
LOOP = """
for m in "$@"; do
    s=sender@example.net
    case "$m" in */bounce*) s= ;; esac
    "$RUN" "$s" "$m" >> "$STDOUT"
    echo "$(basename "$m") $?" >> "$CODES"
done
"""


def run_loop(run, msgs, codes, owner, stdout):
    subprocess.run(["sh", "-c", LOOP, "sh"] + msgs,
                   env={"PATH": PATH, "RUN": run, "CODES": codes,
                        "STDOUT": stdout},
                   preexec_fn=as_owner if owner else None,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    out = {}
    with open(codes) as f:
        for line in f:
            name, rc = line.split()
            out[name] = int(rc)
    return out


def procmail_script(path, home, args):
    """A script running procmail on message $2 with sender $1, the message
    given Return-Path: and Delivered-To: first, as loft-deliver adds them."""
    inbox = os.path.join(home, "Mail", "INBOX")
    dash_a = "".join(" -a %s" % shlex.quote(a) for a in args)
    with open(path, "w") as f:
        f.write('#!/bin/sh\n{ printf "Return-Path: <%%s>\\nDelivered-To: '
                'alice@test.example.org\\n" "$1"; cat "$2"; } | '
                '%s -p -f "${1:-<>}"%s HOME=%s SHELL=/bin/sh DEFAULT=%s '
                'ORGMAIL=%s %s/.procmailrc\n' % (PROCMAIL, dash_a, home, inbox,
                                                 inbox, home))
    os.chmod(path, 0o755)


class Loft:
    def __init__(self, base):
        self.base = base
        self.conf = os.path.join(base, "loft.conf")
        self.home = None

    def setup(self, home):
        self.home = home
        owner = ""
        if ROOT:
            owner = "virtual_uid = %d\nvirtual_gid = %d\n" % OWNER
        with open(self.conf, "w") as f:
            f.write("user_database = %s/users\n"
                    "mail_location = mbox:%s/Mail:INBOX=%s/Mail/INBOX\n"
                    "maillog_file = %s/maillog\n"
                    "myhostname = test.example.org\n"
                    "mda_rules_file = ~/.procmailrc\n"
                    "mail_fsync = no\n%s" %
                    (self.base, home, home, self.base, owner))
        r = subprocess.run([LOFTCTL, "-c", self.conf, "user", "add", "alice",
                            "--home", home, "--no-password"],
                           capture_output=True)
        if r.returncode != 0:
            raise RuntimeError("user add: %r" % r.stderr)

    def script(self, path, args):
        with open(path, "w") as f:
            f.write('#!/bin/sh\nexec %s -c %s -d alice -f "$1" -- %s < "$2"\n' %
                    (DELIVER, self.conf, " ".join(shlex.quote(a) for a in args)))
        os.chmod(path, 0o755)

    def deliver(self, msg, sender):
        r = subprocess.run([DELIVER, "-c", self.conf, "-d", "alice", "-f",
                            sender], input=msg, capture_output=True,
                           env={"PATH": PATH})
        return r.returncode, r.stderr.decode("utf-8", "replace")


def norm_mbox(data):
    out = []
    prev_empty = True
    for line in data.split(b"\n"):
        if prev_empty and line.startswith(b"From "):
            line = b"From SENDER DATE"
        else:
            line = re.sub(rb"^>+From ", b">From ", line)
        out.append(line)
        prev_empty = line in (b"", b"\r")
    return b"\n".join(out)


def snapshot(home):
    """{key: content}: mbox files normalised, unique-name directories as
    sorted lists of contents."""
    snap = {}
    for d, dirs, files in os.walk(home):
        dirs[:] = [x for x in dirs if x not in SKIP_NAMES and
                   not x.startswith(".loft")]
        rel = os.path.relpath(d, home)
        for f in files:
            if f in SKIP_NAMES or f.startswith("dovecot") or \
                    f.startswith(".loft") or f.endswith(".rc"):
                continue
            with open(os.path.join(d, f), "rb") as fh:
                data = fh.read()
            base = os.path.basename(d)
            if data.startswith(b"From "):
                # Its date is the run's (a Maildir file has one when it
                # shares the bytes of an MH folder's, 86-multi-dir).
                data = norm_mbox(data)
            if base in ("new", "cur", "tmp") or f.startswith("msg."):
                key = os.path.join(rel, "*" if base in ("new", "cur", "tmp")
                                   else "msg.*")
                snap.setdefault(key, []).append(data)
                continue
            snap[os.path.join(rel, f)] = data
    for k, v in snap.items():
        if isinstance(v, list):
            v.sort()
    return snap


def describe(a, b):
    lines = []
    for k in sorted(set(a) | set(b)):
        if k not in a:
            lines.append("only loft: %s" % k)
        elif k not in b:
            lines.append("only procmail: %s" % k)
        elif a[k] != b[k]:
            va, vb = a[k], b[k]
            lines.append("differs: %s (procmail %d bytes, loft %d bytes)" %
                         (k, len(va) if not isinstance(va, list) else -len(va),
                          len(vb) if not isinstance(vb, list) else -len(vb)))
            if not isinstance(va, list):
                for i, (x, y) in enumerate(zip(va.split(b"\n"), vb.split(b"\n"))):
                    if x != y:
                        lines.append("  line %d: %r / %r" % (i + 1, x, y))
                        break
    return lines


def run_case(case_dir):
    extra = sorted(f for f in os.listdir(case_dir) if f not in ("rc", "msgs"))
    msgs = sorted(os.listdir(os.path.join(case_dir, "msgs")))
    tmp = tempfile.mkdtemp(prefix="loft-side-")
    os.chmod(tmp, 0o711)
    try:
        pm_home = make_home(os.path.join(tmp, "p"), case_dir, extra)
        loft_base = os.path.join(tmp, "l")
        lo_home = make_home(loft_base, case_dir, extra)
        chown_tree(tmp)
        os.chown(tmp, 0, 0) if ROOT else None
        loft = Loft(loft_base)
        loft.setup(lo_home)
        chown_tree(lo_home)
        problems = []
        paths = [os.path.join(case_dir, "msgs", m) for m in msgs]
        pscript = os.path.join(tmp, "run-procmail")
        lscript = os.path.join(tmp, "run-loft")
        args = []
        if os.path.exists(os.path.join(case_dir, "args")):
            with open(os.path.join(case_dir, "args")) as f:
                args = f.read().splitlines()
        exact = os.path.exists(os.path.join(case_dir, "exact-exit"))
        procmail_script(pscript, pm_home, args)
        loft.script(lscript, args)
        for c in ("p.codes", "l.codes", "p.stdout", "l.stdout"):
            open(os.path.join(tmp, c), "w").close()
            if ROOT:
                os.chown(os.path.join(tmp, c), *OWNER)
        pcodes = run_loop(pscript, paths, os.path.join(tmp, "p.codes"), True,
                          os.path.join(tmp, "p.stdout"))
        lcodes = run_loop(lscript, paths, os.path.join(tmp, "l.codes"), False,
                          os.path.join(tmp, "l.stdout"))
        for side, home in (("p", pm_home), ("l", lo_home)):
            if os.path.getsize(os.path.join(tmp, side + ".stdout")) > 0:
                shutil.copy(os.path.join(tmp, side + ".stdout"),
                            os.path.join(home, "stdout"))
        for m in msgs:
            prc, lrc = pcodes.get(m, -1), lcodes.get(m, -1)
            if (prc == 0) != (lrc == 0) or (exact and prc != lrc):
                problems.append("%s: procmail exit %d, loft-deliver exit %d"
                                % (m, prc, lrc))
        a, b = snapshot(pm_home), snapshot(lo_home)
        if a != b:
            problems += describe(a, b)
        if not a:
            problems.append("procmail delivered nothing at all")
        return problems
    finally:
        if not os.environ.get("LOFT_KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)


only = sys.argv[1:]
cases = sorted(d for d in os.listdir(DATA) if re.match(r"\d\d-", d) and
               (not only or any(o in d for o in only)))
# Cases run in parallel: procmail sleeps a second after creating a mailbox
# (so that its atime stays before its mtime), which makes each case take
# seconds of waiting, not of work.
with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
    results = list(pool.map(lambda c: run_case(os.path.join(DATA, c)), cases))
for c, problems in zip(cases, results):
    if not t.ok(not problems, c):
        for p in problems[:12]:
            t.diag(p)

# loft-deliver alone: a rule file with an error is reported with its file
# and line, and the message still lands in the inbox.
tmp = tempfile.mkdtemp(prefix="loft-side-")
os.chmod(tmp, 0o711)
try:
    home = os.path.join(tmp, "home")
    os.makedirs(os.path.join(home, "Mail"))
    with open(os.path.join(home, ".procmailrc"), "w") as f:
        f.write("MAILDIR=$HOME/Mail\n:0\n* ^Subject:.*hello\nhello\n:0 Q\nbad\n")
    chown_tree(tmp)
    os.chown(tmp, 0, 0) if ROOT else None
    loft = Loft(tmp)
    loft.setup(home)
    with open(os.path.join(DATA, "_msgs", "plain"), "rb") as f:
        rc, err = loft.deliver(f.read(), "s@example.net")
    t.eq(rc, 0, "a broken rule file: delivery still exits 0")
    t.ok(".procmailrc:5: unknown flag 'Q'" in err,
         "the error names file and line on stderr (%r)" % err.strip())
    inbox = os.path.join(home, "Mail", "INBOX")
    t.ok(os.path.exists(inbox) and b"Subject: hello there" in open(inbox, "rb").read()
         and not os.path.exists(os.path.join(home, "Mail", "hello")),
         "the message went to the inbox, no recipe ran")
    with open(os.path.join(tmp, "maillog")) as f:
        t.ok(".procmailrc:5: unknown flag" in f.read(), "and the maillog says so")
    # A rule file others may write is not run (procmail: "suspicious").
    with open(os.path.join(home, ".procmailrc"), "w") as f:
        f.write("MAILDIR=$HOME/Mail\n:0\nwould-be\n")
    os.chmod(os.path.join(home, ".procmailrc"), 0o666)
    with open(os.path.join(DATA, "_msgs", "list"), "rb") as f:
        rc, err = loft.deliver(f.read(), "s@example.net")
    t.ok(rc == 0 and "writable by group or others: ignored" in err and
         not os.path.exists(os.path.join(home, "Mail", "would-be")) and
         open(inbox, "rb").read().count(b"\nSubject: ") == 2,
         "a world-writable rule file is ignored, mail to the inbox (%r)" %
         err.strip())
finally:
    shutil.rmtree(tmp, ignore_errors=True)

# loft-deliver alone, Maildir++ store: a "dir/" folder that is a folder of
# the store goes through the store (indexed, ",U=" names); one outside
# it is a plain Maildir.
tmp = tempfile.mkdtemp(prefix="loft-side-")
os.chmod(tmp, 0o711)
try:
    home = os.path.join(tmp, "home")
    os.makedirs(home)
    with open(os.path.join(home, ".procmailrc"), "w") as f:
        f.write(":0\n* ^Subject:.*hello\nMaildir/.lists/\n"
                ":0\n* ^Subject:.*report\nelsewhere/\n")
    chown_tree(tmp)
    os.chown(tmp, 0, 0) if ROOT else None
    loft = Loft(tmp)
    loft.setup(home)
    with open(loft.conf) as f:
        conf = f.read().replace("mbox:%s/Mail:INBOX=%s/Mail/INBOX" % (home, home),
                                "maildir:%s/Maildir" % home)
    with open(loft.conf, "w") as f:
        f.write(conf)
    for m in ("plain", "list", "urgent"):
        with open(os.path.join(DATA, "_msgs", m), "rb") as f:
            rc, err = loft.deliver(f.read(), "s@example.net")
        t.eq(rc, 0, "maildir store: %s delivered" % m)
    lists = os.listdir(os.path.join(home, "Maildir", ".lists", "new"))
    t.ok(len(lists) == 1 and ",U=1" in lists[0],
         "into the store's folder lists, with its UID (%r)" % lists)
    t.ok(os.path.exists(os.path.join(home, "Maildir", ".lists", "maildirfolder")),
         "made as a Maildir++ folder")
    other = os.listdir(os.path.join(home, "elsewhere", "new"))
    t.ok(len(other) == 1 and ",U=" not in other[0], "a Maildir outside the store")
    inbox = os.listdir(os.path.join(home, "Maildir", "new"))
    t.ok(len(inbox) == 1 and ",U=1" in inbox[0], "DEFAULT: the store's INBOX")
    r = subprocess.run([LOFTCTL, "-c", loft.conf, "index", "stats", "alice"],
                       capture_output=True)
    t.ok(re.search(rb"lists: uidvalidity=\d+ uidnext=2 messages=1", r.stdout) is not None,
         "the index counts it (%r)" % r.stdout)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
t.done()
