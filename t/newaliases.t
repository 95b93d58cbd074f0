#!/usr/bin/env python3
"""loftctl newaliases and loftctl alias lookup, run as an administrator
would: an aliases file in a temporary configuration, compiled (warnings
with file and line, exit status, the database's bytes left alone when a
source is refused), then queried (expansion, -r, address extensions,
include files, owner- addresses, unknown names); the same through the
`newaliases` name installed as a link to loftctl."""
import os
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import LOFTCTL, SBINDIR, Env, Tap  # noqa: E402

t = Tap()
if not os.access(LOFTCTL, os.X_OK):
    t.skip_all("%s not built" % LOFTCTL)
env = Env()
aliases = os.path.join(env.dir, "aliases")
db = aliases + ".lmdb"
staff = os.path.join(env.dir, "staff.list")
env.write_conf(open(env.conf).read() + """
alias_maps = lmdb:%s
recipient_delimiter = +
myorigin = example.org
""" % aliases)


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def run(*args):
    r = env.ctl(*args)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def db_bytes():
    with open(db, "rb") as f:
        return f.read()


write(staff, "# the staff\nalice, bob@example.net\n|/usr/bin/archive staff\n")
write(aliases, """# test aliases
postmaster: root
root: root, ops@example.net
Alice: \\alice, "/var/mail/alice copy"
bob: robert
staff: :include:%s
owner-staff: alice
broken line without colon
root: ignored
""" % staff)

rc, out, err = run("newaliases")
t.eq(rc, 0, "newaliases exits 0 despite a bad entry and a duplicate")
t.eq(out, "%s: 6 aliases, 2 warnings\n" % aliases, "  summary on stdout")
t.eq(err.splitlines(), [
    "loft/ctl: warning: %s:8: missing ':' after the name: \"broken line "
    "without colon\": entry skipped" % aliases,
    "loft/ctl: warning: %s:9: duplicate alias \"root\": ignored, the first "
    "one wins" % aliases], "  each warning names file and line")
st = os.stat(db)
t.ok(stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644,
     "  %s written, mode 0644" % os.path.basename(db))
t.eq(sorted(os.listdir(env.dir)),
     sorted(["aliases", "aliases.lmdb", "loft.conf", "mail", "staff.list"]),
     "  no lock file, no temporary file left")

rc, out, err = run("alias", "lookup", "root")
t.eq((rc, out, err), (0, "root: address root\nroot: address ops@example.net\n", ""),
     "lookup root: root: root, x keeps root as a user")
rc, out, err = run("alias", "lookup", "POSTMASTER")
t.eq((rc, out), (0, "POSTMASTER: address root\nPOSTMASTER: address ops@example.net\n"),
     "lookup is case-insensitive and recursive")
rc, out, err = run("alias", "lookup", "bob+lists")
t.eq((rc, out), (0, "bob+lists: address robert\n"),
     "bob+lists finds bob (recipient_delimiter)")
rc, out, err = run("alias", "lookup", "alice")
t.eq((rc, out), (0, "alice: address alice\nalice: file /var/mail/alice copy "
                    "source=%s uid=%d\n" % (db, os.geteuid())),
     "a file target shows where it came from and its owner")
rc, out, err = run("alias", "lookup", "staff")
t.eq((rc, out), (0,
     "staff: address alice owner=owner-staff@example.org\n"
     "staff: file /var/mail/alice copy owner=owner-staff@example.org "
     "source=%s uid=%d\n"
     "staff: address bob@example.net owner=owner-staff@example.org\n"
     "staff: command /usr/bin/archive staff owner=owner-staff@example.org "
     "source=%s uid=%d\n" % (db, os.geteuid(), staff, os.geteuid())),
     "an include file (alice in it is an alias), with owner-staff@myorigin "
     "as sender")
rc, out, err = run("alias", "lookup", "-r", "alice", "staff")
t.eq((rc, out), (0, "alice: \\alice, \"/var/mail/alice copy\"\n"
                    "staff: :include:%s\n" % staff),
     "lookup -r: the entries as stored")
rc, out, err = run("alias", "lookup", "nobody", "root")
t.eq((rc, out, err), (1, "root: address root\nroot: address ops@example.net\n", ""),
     "an unknown name prints nothing and makes the status 1")

os.chmod(staff, 0o666)
rc, out, err = run("alias", "lookup", "staff")
t.ok(rc == 0 and "staff: error |/usr/bin/archive staff owner=owner-staff@example.org "
     "(command from an unsafe include file)\n" in out and
     "staff: address alice" in out,
     "a world-writable include file: its command refused, its addresses kept")
t.ok("is writable by group or others: command refused" in err, "  and a warning")
os.chmod(staff, 0o644)

# Refused sources leave the database as it was.
before = db_bytes()
write(aliases, "root: other\n", 0o664)
rc, out, err = run("newaliases")
t.eq((rc, out), (1, ""), "a group-writable source: exit 1")
t.eq(err, "loftctl: newaliases: %s: writable by group or others (mode 664): "
     "refused\n" % aliases, "  said why")
t.ok(db_bytes() == before, "  the database is untouched")
write(aliases, "nothing good here\n\x01bad: x\n")
rc, out, err = run("newaliases")
t.eq(rc, 1, "a source of bad entries only: exit 1")
t.ok("no valid entry (2 skipped)" in err and db_bytes() == before,
     "  said why, database untouched")
if os.geteuid() == 0:
    write(aliases, "root: other\n")
    os.chown(aliases, 65534, 65534)
    rc, out, err = run("newaliases")
    t.ok(rc == 1 and "owned by uid 65534, neither root nor uid 0: refused" in err,
         "a source owned by another user: refused")
    os.chown(aliases, 0, 0)
else:
    t.ok(True, "# skip: not root")
os.unlink(aliases)
rc, out, err = run("newaliases")
t.ok(rc == 1 and "No such file" in err, "a missing source: exit 1")

# The newaliases name, and explicit tables.
write(aliases, "root: newroot\n")
link_dir = tempfile.mkdtemp(prefix="loft-newaliases-")
link = os.path.join(SBINDIR, "newaliases") if SBINDIR else \
    os.path.join(link_dir, "newaliases")
if not SBINDIR:
    os.symlink(LOFTCTL, link)
t.ok(os.path.islink(link) and os.path.realpath(link) == os.path.realpath(LOFTCTL),
     "newaliases is a link to loftctl")
r = subprocess.run([link, "-c", env.conf], capture_output=True)
t.eq((r.returncode, r.stdout.decode(), r.stderr.decode()),
     (0, "%s: 1 alias, 0 warnings\n" % aliases, ""), "newaliases -c FILE compiles")
rc, out, err = run("alias", "lookup", "root")
t.eq(out, "root: address newroot\n", "  the new database is used")
r = subprocess.run([link, "-c", env.conf, "-x"], capture_output=True)
t.eq(r.returncode, 64, "newaliases with an unknown option: usage, 64")
other = os.path.join(env.dir, "other")
write(other, "x: y\n")
rc, out, err = run("newaliases", "hash:" + other)
t.eq((rc, out), (0, "%s: 1 alias, 0 warnings\n" % other),
     "loftctl newaliases hash:FILE compiles FILE into FILE.lmdb")
t.ok(os.path.isfile(other + ".lmdb"), "  which exists")
rc, out, err = run("newaliases", "nis:mail.aliases")
t.eq(rc, 1, "an unknown table type: exit 1")
t.ok("expected lmdb:/path, hash:/path or /path" in err, "  said why")

# Configuration and database errors.
os.unlink(db)
rc, out, err = run("alias", "lookup", "root")
t.ok(rc == 1 and db in err and "No such file" in err,
     "lookup with the database missing: exit 1, naming it")
conf = open(env.conf).read()
env.write_conf(conf + "alias_maps = nis:mail.aliases\n")
rc, out, err = run("alias", "lookup", "root")
t.ok(rc == 1 and "alias_maps" in err, "alias_maps = nis:... stops loftctl")
env.write_conf(conf + "alias_database =\n")
rc, out, err = run("newaliases")
t.eq((rc, err), (0, "loftctl: newaliases: alias_database is empty: nothing to do\n"),
     "an empty alias_database: nothing to do")
env.write_conf(conf)

os.unlink(link) if not SBINDIR else None
os.rmdir(link_dir)
env.cleanup()
t.done()
