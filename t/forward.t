#!/usr/bin/env python3
"""A user's ~/.forward in loft-deliver: addresses go to sendmail_path in
one run (-oi -f SENDER -- ADDRESS...) with the message on its input;
"|command" runs as the user with the message on its input, and its exit
status decides; /file is an mbox, /dir/ a Maildir; :include: lists are
read in place; \\user (or the user's own name) also delivers to the
mailbox, through the rules. A .forward that is group- or world-writable,
not the user's, or a symbolic link out of the home is refused: logged,
and the mail goes to the mailbox. -m FOLDER skips the .forward."""
import os
import stat
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Tap, message, need_binaries  # noqa: E402

t = Tap()
need_binaries(t)
ROOT = os.geteuid() == 0

env = Env("maildir")
home = os.path.join(env.dir, "home")
os.makedirs(home)
fake = os.path.join(env.dir, "fake-sendmail")
record = os.path.join(home, "sent")
with open(fake, "w") as f:
    # Records its arguments and its input; exits as $FAKE_EXIT says
    # (a file, since loft-deliver does not pass our environment on).
    f.write('#!/bin/sh\nprintf "%%s\\n" "$@" > %s.args\ncat > %s.msg\n'
            'exit $(cat %s.exit 2>/dev/null || echo 0)\n' %
            (record, record, record))
os.chmod(fake, 0o755)
with open(env.conf, "a") as f:
    f.write("sendmail_path = %s\nmda_rules_file = ~/.procmailrc\n" % fake)
r = env.ctl("user", "add", "alice", "--home", home, "--no-password")
if r.returncode != 0:
    t.diag(r.stderr)
env.own(home)


def put(name, text, mode=0o600):
    path = os.path.join(home, name)
    if os.path.lexists(path):
        os.unlink(path)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    env.own(path)
    return path


def clean():
    for n in os.listdir(home):
        p = os.path.join(home, n)
        if os.path.isdir(p) and not os.path.islink(p):
            subprocess.run(["rm", "-rf", p])
        else:
            os.unlink(p)


def inbox():
    return env.maildir_files("alice")


def read(name):
    try:
        with open(os.path.join(home, name), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def deliver(subject, *args):
    msg = message(subject)
    rc, err = env.deliver("alice", msg, "-f", "sender@example.net", *args)
    return rc, err, msg


def stored_ok(data, msg):
    """data is msg as loft-deliver stores it: Return-Path and
    Delivered-To on top."""
    return data is not None and data.startswith(
        b"Return-Path: <sender@example.net>\nDelivered-To: alice@") and \
        data.endswith(msg)


# 1. Addresses: one sendmail run, the envelope sender kept.
before = len(inbox())
put(".forward", "# my addresses\nbob@example.org, Carol <carol@example.org>\n")
rc, err, msg = deliver("forward addresses")
t.eq(rc, 0, "addresses: exit 0 (%s)" % err.strip())
t.eq(read("sent.args"), b"-oi\n-f\nsender@example.net\n--\nbob@example.org\n"
     b"carol@example.org\n", "  sendmail -oi -f SENDER -- bob carol")
t.ok(stored_ok(read("sent.msg"), msg), "  the message on its input, with "
     "Return-Path and Delivered-To")
t.eq(len(inbox()), before, "  nothing in the mailbox")

# 2. \user and a file: both get it.
clean()
put(".forward", "\\alice, %s/copy.mbox\n" % home)
before = len(inbox())
rc, err, msg = deliver("self and file")
t.eq(rc, 0, "\\alice and /file: exit 0 (%s)" % err.strip())
t.eq(len(inbox()), before + 1, "  the mailbox has it")
data = read("copy.mbox")
t.ok(data is not None and data.startswith(b"From sender@example.net ") and
     msg.rstrip(b"\n") in data, "  the mbox file has it, after a From_ line")

# 3. A pipe, run as the user in the home.
clean()
put(".forward", '"|cat > piped; id -u > uid"\n')
rc, err, msg = deliver("piped")
t.eq(rc, 0, "|command: exit 0 (%s)" % err.strip())
t.ok(stored_ok(read("piped"), msg), "  it read the message")
if ROOT:
    t.eq(read("uid"), b"%d\n" % env.owner[0], "  as the user, not root")

# 4. A pipe that fails for now: the MTA must try again.
clean()
put(".forward", "|exit 75\n")
rc, err, msg = deliver("tempfail")
t.eq(rc, 75, "a pipe exiting 75: loft-deliver exits 75 (%s)" % err.strip())
clean()
put(".forward", "|exit 67\n")
rc, err, msg = deliver("permfail")
t.eq(rc, 69, "a pipe exiting 67 (EX_NOUSER): exit 69, a bounce (%s)" %
     err.strip())

# 5. A Maildir target and an :include: list.
clean()
lst = put("list", "dave@example.org\nerin@example.org\n", 0o644)
put(".forward", "%s/Box/\n:include:%s\n" % (home, lst))
rc, err, msg = deliver("maildir and include")
t.eq(rc, 0, "/dir/ and :include:: exit 0 (%s)" % err.strip())
new = os.path.join(home, "Box", "new")
files = os.listdir(new) if os.path.isdir(new) else []
t.eq(len(files), 1, "  one file in Box/new")
if files:
    with open(os.path.join(new, files[0]), "rb") as f:
        t.ok(stored_ok(f.read(), msg), "  the message, as stored")
t.eq(read("sent.args"), b"-oi\n-f\nsender@example.net\n--\ndave@example.org\n"
     b"erin@example.org\n", "  the list's addresses to sendmail")

# 6. Refused: the mail goes to the mailbox.
for name, setup in (
        ("group-writable", lambda: put(".forward", "bob@example.org\n",
                                       0o660)),
        ("world-writable", lambda: put(".forward", "bob@example.org\n",
                                       0o602)),
        ("a symbolic link out of the home",
         lambda: os.symlink("/etc/hostname", os.path.join(home,
                                                          ".forward")))):
    clean()
    setup()
    before = len(inbox())
    rc, err, msg = deliver("refused " + name)
    t.eq(rc, 0, "%s .forward: exit 0" % name)
    t.eq(len(inbox()), before + 1, "  delivered to the mailbox instead")
    t.ok(read("sent.args") is None, "  nothing sent")
    t.ok(".forward" in err and "delivering to the mailbox" in err,
         "  and said why (%s)" % err.strip())
if ROOT:
    clean()
    p = put(".forward", "bob@example.org\n", 0o644)
    os.chown(p, 0, 0)
    before = len(inbox())
    rc, err, msg = deliver("refused root-owned")
    t.ok(rc == 0 and len(inbox()) == before + 1 and
         "not owned by the user" in err,
         "a .forward owned by root, not the user: refused (%s)" % err.strip())

# 7. \user runs the rules; -m skips the .forward.
clean()
put(".forward", "\\alice\n")
put(".procmailrc", ":0\n* ^Subject: ruled\n.Ruled/\n")
rc, err, msg = deliver("ruled")
t.eq(rc, 0, "\\alice with a rule file: exit 0 (%s)" % err.strip())
ruled = os.path.join(home, ".Ruled", "new")
t.eq(len(os.listdir(ruled)) if os.path.isdir(ruled) else 0, 1,
     "  the rule filed it into ~/.Ruled/ (MAILDIR is the home)")
clean()
put(".forward", "bob@example.org\n")
before = len(inbox())
rc, err, msg = deliver("with -m", "-m", "INBOX")
t.ok(rc == 0 and len(inbox()) == before + 1 and read("sent.args") is None,
     "-m INBOX: the .forward is not read")
t.ok("forwarded" in env.log() and "refused" not in env.log().split(
    "forwarded")[0][-200:], "the maillog says forwarded")
st = os.stat(env.maillog)
t.ok(stat.S_ISREG(st.st_mode), "maillog written")
env.cleanup()
t.done()
