#!/usr/bin/env python3
"""loft-deliver into Maildir: bytes on disk, exit codes, the maillog line,
and that Python's mailbox module reads what loft writes."""
import mailbox
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Tap, message, need_binaries  # noqa: E402

t = Tap()
need_binaries(t)
env = Env("maildir")
env.add_user("alice")

msg = message("first")
rc, err = env.deliver("alice", msg, "-f", "sender@example.net",
                      "-a", "alice@example.org")
t.eq(rc, 0, "delivery exits 0")
files = env.maildir_files("alice")
t.eq(len(files), 1, "one file in the Maildir")
name, data = next(iter(files.items()))
t.ok(re.match(r"new/\d+\.M\d+P\d+Q\d+R[0-9a-f]+\..*,S=\d+,U=1$", name),
     "file in new/ carries size and UID 1 (%s)" % name)
want = (b"Return-Path: <sender@example.net>\nDelivered-To: alice@example.org\n"
        + msg)
t.eq(data, want, "stored bytes are the message with Return-Path and Delivered-To")
t.ok(",S=%d," % len(want) in name, "S= is the stored size")
t.ok(not os.listdir(os.path.join(env.user_dir("alice"), "tmp")), "tmp/ is empty")
log = env.log()
t.ok(re.search(r"loft/deliver\[\d+\]: to=<alice@test\.example\.org>, "
               r"orig_to=<alice@example\.org>, delay=\d+\.\d\d, dsn=2\.0\.0, "
               r"status=sent \(delivered to maildir INBOX\)", log),
     "maillog line in Postfix's form")

rc, _ = env.deliver("alice", message("second"))
t.eq(rc, 0, "second delivery exits 0")
names = sorted(env.maildir_files("alice"))
t.ok(any(n.endswith(",U=2") for n in names), "second message gets UID 2")

md = mailbox.Maildir(env.user_dir("alice"), create=False)
subjects = sorted(m["Subject"] for m in md)
t.eq(subjects, ["first", "second"], "Python's mailbox.Maildir reads both")
t.eq(md.get_message(sorted(md.keys())[0])["Return-Path"] is not None, True,
     "Return-Path header present")

# Folder given with -m: a Maildir++ subfolder.
rc, _ = env.deliver("alice", message("to work"), "-m", "Work")
t.eq(rc, 0, "-m Work exits 0")
work = os.path.join(env.user_dir("alice"), ".Work")
t.ok(os.path.isfile(os.path.join(work, "maildirfolder")), ".Work is a Maildir++ folder")
t.eq(len(env.maildir_files("alice", "Work")), 1, "message stored in .Work")
t.ok("delivered to maildir Work" in env.log(), "log names the folder")

# A folder name that is refused falls back to INBOX, never loses the mail.
before = len(env.maildir_files("alice"))
rc, _ = env.deliver("alice", message("hostile folder"), "-m", "../../etc")
t.eq(rc, 0, "refused -m folder still exits 0")
t.eq(len(env.maildir_files("alice")), before + 1, "and the mail went to INBOX")
t.ok(not os.path.exists(os.path.join(env.dir, "etc")), "nothing outside the mailbox")

# Unknown and hostile users.
rc, err = env.deliver("nobody", message("x"))
t.eq(rc, 67, "unknown user exits 67 (EX_NOUSER)")
t.ok(err.startswith("5.1.1 "), "stderr carries 5.1.1: %r" % err)
for bad in ("../alice", "a/b", ".alice", "al\nice"):
    rc, err = env.deliver(bad, message("x"))
    t.ok(rc == 67 and err.startswith("5.1.1"), "hostile user name %r refused" % bad)

# Empty message.
rc, err = env.deliver("alice", b"")
t.ok(rc == 65 and err.startswith("5.6.0"), "empty message refused with 65 5.6.0")

# Bad input stored byte-exact.
cases = {
    "CRLF": message("crlf", eol="\r\n"),
    "mixed line endings": b"Subject: mixed\r\nFrom: a@b\n\r\nbody\nmore\r\n",
    "NUL bytes": b"Subject: nul\n\nbody \x00 with \x00 NULs\n",
    "8-bit header": "Subject: caf\u00e9 \u00fcber\n\nbody\n".encode("utf-8"),
    "1 MB header line": b"Subject: big\nX-Long: " + b"a" * (1 << 20) + b"\n\nbody\n",
    "no separator": b"Subject: only headers\nFrom: a@b\n",
    "no final newline": b"Subject: nonl\n\nbody without newline",
}
for what, raw in cases.items():
    before = set(env.maildir_files("alice"))
    rc, err = env.deliver("alice", raw, "-f", "s@x")
    after = env.maildir_files("alice")
    new = [after[k] for k in after if k not in before]
    eol = b"\r\n" if raw.split(b"\n", 1)[0].endswith(b"\r") else b"\n"
    want = b"Return-Path: <s@x>" + eol + b"Delivered-To: alice@test.example.org" + eol + raw
    t.ok(rc == 0 and len(new) == 1 and new[0] == want,
         "%s: stored byte-exact" % what)

# A leading mbox From_ line is not part of the message; it names the sender.
rc, _ = env.deliver("alice", b"From bob@example.com Sun Nov 29 10:00:00 2026\n"
                    b"Subject: fromline\n\nx\n")
new = [v for v in env.maildir_files("alice").values() if b"Subject: fromline" in v]
t.ok(rc == 0 and new and new[0].startswith(b"Return-Path: <bob@example.com>\n")
     and b"From bob" not in new[0], "leading From_ line dropped, its sender used")

# What Postfix's local(8) hands a mailbox_command: a From_ line and its own
# Return-Path:, X-Original-To: and Delivered-To: on top.
pf = (b"From MAILER-DAEMON  Sun Nov 29 10:00:00 2026\n"
      b"Return-Path: <>\nX-Original-To: alice@example.org\n"
      b"Delivered-To: alice@example.org\nSubject: bounce\n\nbody\n")
rc, _ = env.deliver("alice", pf, "-f", "", "-a", "alice@example.org")
new = [v for v in env.maildir_files("alice").values() if b"Subject: bounce" in v]
t.ok(rc == 0 and new, "Postfix-style input delivered")
t.eq(new[0] if new else None,
     b"Return-Path: <>\nX-Original-To: alice@example.org\n"
     b"Delivered-To: alice@example.org\nSubject: bounce\n\nbody\n",
     "one Return-Path (<> for a bounce given -f \"\"), one Delivered-To")
rc, _ = env.deliver("alice", b"Delivered-To: bob@example.org\nSubject: fwd\n\nx\n",
                    "-a", "alice@example.org")
new = [v for v in env.maildir_files("alice").values() if b"Subject: fwd" in v]
t.ok(new and new[0].count(b"Delivered-To:") == 2,
     "a Delivered-To for another address is kept beside ours")

# Size limit: message_size_limit, checked at N and N+1.
env2 = Env("maildir", extra="message_size_limit = 1000\n")
env2.add_user("bob")
raw = b"Subject: s\n\n" + b"x" * (1000 - 12)
t.eq(len(raw), 1000, "test message is exactly the limit")
rc, _ = env2.deliver("bob", raw)
t.eq(rc, 0, "message of exactly message_size_limit accepted")
rc, err = env2.deliver("bob", raw + b"y")
t.ok(rc == 69 and err.startswith("5.3.4"), "one byte over: 69 and 5.3.4 (%d %r)" % (rc, err))
t.eq(len(env2.maildir_files("bob")), 1, "nothing stored for the refused message")
env2.cleanup()

# Quota from the user database overrides mailbox_size_limit.
env3 = Env("maildir", extra="mailbox_size_limit = 100000000\n")
env3.add_user("carol", "--quota", "2000")
rc1, _ = env3.deliver("carol", b"Subject: q1\n\n" + b"x" * 900)
rc2, _ = env3.deliver("carol", b"Subject: q2\n\n" + b"x" * 900)
rc3, err3 = env3.deliver("carol", b"Subject: q3\n\n" + b"x" * 900)
t.ok(rc1 == 0 and rc2 == 0, "deliveries under quota accepted")
t.ok(rc3 == 77 and err3.startswith("5.2.2"), "over quota: 77 and 5.2.2 (%d %r)" % (rc3, err3))
t.eq(len(env3.maildir_files("carol")), 2, "over-quota message not stored")
t.ok(not os.listdir(os.path.join(env3.user_dir("carol"), "tmp")), "no leftover in tmp/")
env3.write_conf(open(env3.conf).read() + "quota_full_tempfail = yes\n")
rc, err = env3.deliver("carol", b"Subject: q4\n\n" + b"x" * 900)
t.ok(rc == 75 and err.startswith("4.2.2"), "quota_full_tempfail: 75 and 4.2.2")
t.ok("status=deferred" in env3.log() and "status=bounced" in env3.log(),
     "maillog says bounced and deferred")
env3.cleanup()

# Bad configuration: refuse to run, temporary failure, file:line named.
env4 = Env("maildir", extra="message_size_limit = lots\n")
rc, err = env4.deliver("alice", message("x"))
t.ok(rc == 75 and "loft.conf:" in err and "message_size_limit" in err,
     "bad config value: exit 75 naming file, line and parameter (%r)" % err)
env4.cleanup()

env.cleanup()
t.done()
