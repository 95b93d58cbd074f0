#!/usr/bin/env python3
"""loftctl user: add/passwd/quota/del/list/show against a temporary
user_database; the file's bytes and mode after each change, hostile names
refused with the file unchanged, password reading limits, and concurrent
writers losing nothing."""
import glob
import os
import re
import stat
import subprocess
import sys
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import LOFTCTL, Env, Tap  # noqa: E402

try:  # only to check a hash really is of the password; gone in 3.13
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import crypt
except ImportError:
    crypt = None

t = Tap()
if not os.access(LOFTCTL, os.X_OK):
    t.skip_all("%s not built" % LOFTCTL)
env = Env()
users = os.path.join(env.dir, "users")
HASH_RE = r"\$(y|6)\$[./0-9A-Za-z$]+"


def ctl(*args, input=b""):
    r = env.ctl("user", *args, input=input)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def content():
    with open(users, "rb") as f:
        return f.read()


def mode():
    return stat.S_IMODE(os.stat(users).st_mode)


def hash_of(name):
    for line in content().decode().splitlines():
        if line.startswith(name + ":"):
            return line.split(":")[1]
    return None


def verifies(password, h):
    if crypt is None:
        return True
    return crypt.crypt(password, h) == h


# add, with the password on standard input
rc, out, err = ctl("add", "alice", input=b"s3cret\n")
t.eq(rc, 0, "add alice exits 0")
t.eq(err, "", "  nothing on stderr")
SCRAM_RE = (r"scram-sha-256=4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+"
            r" scram-sha-1=4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+")
t.ok(re.fullmatch(r"alice:" + HASH_RE + r"::::" + SCRAM_RE + r"\n", content().decode()),
     "  one line name:hash::::scram secrets, hash $y$ or $6$")
t.eq(mode(), 0o600, "  file mode 0600")
h1 = hash_of("alice")
t.ok(h1.startswith("$y$"), "  yescrypt here")
t.ok(verifies("s3cret", h1) and not verifies("s3cret\n", h1),
     "  hash is of the password without its newline")

# passwd changes the hash and nothing else
before = content()
rc, out, err = ctl("passwd", "alice", input=b"n3w\r\n")
t.eq(rc, 0, "passwd alice exits 0")
h2 = hash_of("alice")
t.ok(h2 != h1 and re.fullmatch(HASH_RE, h2), "  hash changed, still a hash")
t.ok(verifies("n3w", h2), "  new hash is of the password without \\r\\n")
scram_of = lambda text: re.findall(rb"scram-sha-[0-9]+=\S+", text)
t.eq(re.sub(rb"scram-sha-[0-9]+=\S+", b"S", content()),
     re.sub(rb"scram-sha-[0-9]+=\S+", b"S", before.replace(h1.encode(), h2.encode())),
     "  only the hash and the SCRAM secrets changed")
t.ok(len(scram_of(content())) == 2 and
     not set(scram_of(content())) & set(scram_of(before)),
     "  both SCRAM secrets replaced, none of the old left")
rc, out, err = ctl("passwd", "nobody", input=b"x\n")
t.eq(rc, 1, "passwd of unknown user exits 1")
t.ok("no such user: nobody" in err, "  and says why")

# duplicate add
before = content()
rc, out, err = ctl("add", "alice", input=b"other\n")
t.eq(rc, 1, "duplicate add exits 1")
t.ok("already exists" in err, "  and says why")
t.eq(content(), before, "  file unchanged")

# hostile and invalid names: exit 1, file unchanged, nothing left behind
hostile = ["../x", "a/b", ".x", "a:b", "a\nb", "", "-x", "#x", "a b",
           "x@", "@x", "a\x7fb", "a..b", "n" * 256, "a\u202eb", "a\u00a0b"]
for name in hostile:
    for cmd in (["add", name], ["add", name, "--no-password"],
                ["passwd", name], ["del", name], ["show", name]):
        rc, out, err = ctl(*cmd, input=b"pw\n")
        if rc != 1 or content() != before:
            break
    t.ok(rc == 1 and content() == before and err.startswith("loftctl: user"),
         "hostile name %r refused by add, passwd, del, show" % name)
rc, out, err = ctl("add", "n" * 255, "--no-password")
t.eq(rc, 0, "name of 255 bytes accepted")
rc, out, err = ctl("del", "n" * 255)
t.eq(rc, 0, "  and deleted")
t.eq(content(), before, "  leaving the file as it was")

# password rules
before = content()
rc, out, err = ctl("add", "bob", input=b"\n")
t.eq(rc, 1, "empty password refused")
t.ok("--no-password" in err, "  message points to --no-password")
rc, out, err = ctl("add", "bob", input=b"")
t.eq(rc, 1, "no password at all refused")
rc, out, err = ctl("add", "bob", input=b"a\0b\n")
t.eq(rc, 1, "password with NUL refused")
rc, out, err = ctl("add", "bob", input=b"p" * 512 + b"\n")
t.eq(rc, 1, "password of 512 bytes refused")
t.eq(content(), before, "  file unchanged by all of these")
rc, out, err = ctl("add", "bob", input=b"p" * 511 + b"\n")
t.eq(rc, 0, "password of 511 bytes accepted")
t.ok(verifies("p" * 511, hash_of("bob")), "  and hashed whole")
rc, out, err = ctl("add", "carol@example.org", "--no-password",
                   "--quota", "5000", "--home", "/home/carol")
t.eq(rc, 0, "add with --no-password --quota --home")
t.ok(content().endswith(b"\ncarol@example.org::::/home/carol:quota=5000\n"),
     "  line has no hash, the home and the quota")

# bad options
for args, why in ((["add", "dave", "--quota", "0", "--no-password"], "quota 0"),
                  (["add", "dave", "--quota", "5k", "--no-password"],
                   "quota 5k"),
                  (["add", "dave", "--bogus"], "unknown option"),
                  (["add"], "no name"),
                  (["add", "a", "b"], "two names"),
                  (["del", "alice", "--no-password"],
                   "option del does not take"),
                  (["frob"], "unknown subcommand"),
                  ([], "no subcommand")):
    rc, out, err = ctl(*args)
    t.eq(rc, 64, "usage error (%s) exits 64" % why)
rc, out, err = ctl("add", "dave", "--home", "relative", "--no-password")
t.eq(rc, 1, "relative --home refused")

# quota
rc, out, err = ctl("quota", "bob", "1234")
t.eq(rc, 0, "quota bob 1234")
rc, out, err = ctl("quota", "carol@example.org", "none")
t.eq(rc, 0, "quota carol none")
rc, out, err = ctl("quota", "bob", "0")
t.eq(rc, 1, "quota 0 refused")

# list and show
rc, out, err = ctl("list")
t.eq((rc, out), (0, "alice\nbob quota=1234\ncarol@example.org\n"), "list")
rc, out, err = ctl("show", "bob")
t.eq(rc, 0, "show bob exits 0")
t.ok("name: bob\n" in out and "password: set\n" in out and
     "quota: 1234\n" in out and "mail_location: " in out and
     "uid: %d\n" % (env.owner[0] if env.owner else os.geteuid()) in out,
     "  shows the fields and resolved uid")
t.ok("$" not in out and "scram-sha-256=(secret)" in out,
     "  but never the hash or the SCRAM secrets")
rc, out, err = ctl("show", "nobody")
t.eq(rc, 1, "show of unknown user exits 1")

# del
rc, out, err = ctl("del", "bob")
t.eq(rc, 0, "del bob")
rc, out, err = ctl("del", "bob")
t.eq(rc, 1, "del bob again exits 1")
rc, out, err = ctl("list")
t.eq(out, "alice\ncarol@example.org\n", "  bob gone from the list")

# hand edits survive; malformed lines are reported with file:line
with open(users, "ab") as f:
    f.write(b"# a comment\n\nbroken line\n")
before = content()
rc, out, err = ctl("list")
t.eq(rc, 0, "list with a malformed line exits 0")
t.ok("%s:5: " % users in err and "line skipped" in err,
     "  the malformed line is reported with file:line")
rc, out, err = ctl("add", "erin", "--no-password")
t.eq(rc, 0, "add after hand edits")
t.eq(content(), before + b"erin:::::\n",
     "  comment, blank and malformed lines kept")

# modes: group read kept only if it was there; never world-readable
for old, new in ((0o640, 0o640), (0o644, 0o640), (0o604, 0o600),
                 (0o660, 0o640)):
    os.chmod(users, old)
    ctl("quota", "erin", "1")
    t.eq(mode(), new, "file mode %o becomes %o after a change" % (old, new))
t.eq(glob.glob(users + ".tmp.*"), [], "no temporary files left")

# concurrent adds: ten processes at once, no change lost
os.chmod(users, 0o600)
procs = [subprocess.Popen([LOFTCTL, "-c", env.conf, "user", "add", "u%d" % i],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) for i in range(10)]
for p in procs:
    p.stdin.write(b"pw\n")
    p.stdin.close()
codes = [p.wait() for p in procs]
for p in procs:
    p.stdout.close()
    p.stderr.close()
t.eq(codes, [0] * 10, "10 concurrent adds all exit 0")
rc, out, err = ctl("list")
names = out.split("\n")
t.eq(sorted(n for n in names if re.fullmatch(r"u\d", n)),
     ["u%d" % i for i in range(10)], "  all 10 users present")
t.eq(len([l for l in content().splitlines() if re.match(rb"u\d:", l)]), 10,
     "  each exactly once")

env.cleanup()
t.done()
