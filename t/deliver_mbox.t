#!/usr/bin/env python3
"""loft-deliver into mbox: From_ lines, mboxrd escaping, what Python's
mailbox module and procmail's formail read back, folders, and limits."""
import mailbox
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Tap, message, need_binaries  # noqa: E402

t = Tap()
need_binaries(t)
env = Env("mbox")
env.add_user("alice")
inbox = env.inbox("alice")

body = ("Line one\nFrom the start of a line\n>From already quoted\n"
        ">>From twice\nFromage is not a From_ line\n")
msg = message("escape", body=body)
rc, err = env.deliver("alice", msg, "-f", "sender@example.net")
t.eq(rc, 0, "delivery exits 0")
data = open(inbox, "rb").read()
t.ok(re.match(rb"From sender@example\.net (Mon|Tue|Wed|Thu|Fri|Sat|Sun) "
              rb"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\n", data),
     "starts with a From_ line naming the envelope sender")
t.ok(b"\n>From the start of a line\n" in data, "From  body line escaped once")
t.ok(b"\n>>From already quoted\n" in data, ">From line escaped again (mboxrd)")
t.ok(b"\n>>>From twice\n" in data, ">>From line escaped again (mboxrd)")
t.ok(b"\nFromage is not" in data, "Fromage line untouched")
t.ok(data.endswith(b"\n\n"), "message followed by an empty line")
t.ok("status=sent (delivered to mbox INBOX)" in env.log(), "maillog line")

rc, _ = env.deliver("alice", message("second"), "-f", "")
t.eq(rc, 0, "second delivery with null sender exits 0")
data = open(inbox, "rb").read()
t.ok(b"\nFrom MAILER-DAEMON " in data, "null sender written as MAILER-DAEMON")

mb = mailbox.mbox(inbox, create=False)
msgs = list(mb)
t.eq([m["Subject"] for m in msgs], ["escape", "second"], "Python's mailbox.mbox reads both")
# mboxrd readers unescape one level: the body must come back as it was sent.
payload = msgs[0].get_payload()
unescaped = re.sub(r"(?m)^>(>*From )", r"\1", payload)
t.eq(unescaped, body, "mboxrd unescaping gives back the original body")

if shutil.which("formail"):
    r = subprocess.run(["formail", "-s", "sh", "-c", "cat >/dev/null; echo x"],
                       stdin=open(inbox, "rb"), capture_output=True)
    t.eq(r.stdout.count(b"x"), 2, "formail splits the mbox into 2 messages")
else:
    t.ok(True, "formail not installed: split check skipped")

# A folder with -m is a file beside the inbox.
rc, _ = env.deliver("alice", message("work"), "-m", "Lists/Work")
t.eq(rc, 0, "-m Lists/Work exits 0")
work = os.path.join(env.user_dir("alice"), "Lists", "Work")
t.ok(os.path.isfile(work) and open(work, "rb").read().startswith(b"From "),
     "folder Lists/Work is an mbox file")

# Bytes that are not text stay as they were.
raw = b"Subject: nul\r\n\r\nbinary \x00\xff\r\nFrom x\r\n"
rc, _ = env.deliver("alice", raw, "-f", "s@x")
data = open(inbox, "rb").read()
t.ok(rc == 0 and (b"Return-Path: <s@x>\r\nDelivered-To: alice@test.example.org\r\n"
                  b"Subject: nul\r\n\r\nbinary \x00\xff\r\n>From x\r\n") in data,
     "CRLF and NUL bytes stored as sent, From  line escaped")

# No lock left behind.
t.ok(not os.path.exists(inbox + ".lock"), "no dotlock left behind")

# loftctl reindex finds the same messages and keeps their UIDs.
r = env.ctl("index", "stats", "alice")
t.ok(r.returncode == 0 and b"INBOX: uidvalidity=" in r.stdout, "index stats lists INBOX")
before = re.search(rb"INBOX: uidvalidity=(\d+) uidnext=(\d+) messages=(\d+)", r.stdout)
r = env.ctl("reindex", "alice")
t.ok(r.returncode == 0 and b"4 messages indexed" in r.stdout,
     "reindex finds 4 messages (%r)" % r.stdout)
r = env.ctl("index", "stats", "alice")
after = re.search(rb"INBOX: uidvalidity=(\d+) uidnext=(\d+) messages=(\d+)", r.stdout)
t.ok(before and after and before.groups() == after.groups(),
     "reindex keeps UIDVALIDITY, UIDNEXT and count")

env.cleanup()
t.done()
