#!/usr/bin/env python3
"""sendmail (a link to loftctl) and the maildrop pickup of loftd's queue
manager: `sendmail -t -i < msg`, as root and as an unprivileged user
(nobody, through setpriv), is delivered to a local user and read back
over POP3 byte for byte (the pickup's Received: line with the uid, the
From:, Date: and Message-ID: fields added, Bcc: gone, CRLF); -f sets the
envelope sender (Return-Path:); without -i a lone dot ends the message,
with -oi it is content; with loftd stopped the message waits in the
maildrop (exit 0, file owned by the user) and is delivered when loftd
starts again; -bs speaks SMTP on a pipe into the maildrop; bad arguments
exit 64; a message over message_size_limit exits 65; modes of the
maildrop, public/ and the FIFO."""
import os
import re
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, LOFTCTL, SBINDIR, Tap, need_loftd, pop3_all  # noqa: E402

t = Tap()
need_loftd(t)
ROOT = os.geteuid() == 0

CONF = """mydestination = localhost, example.test
myorigin = example.test
recipient_delimiter = +
disable_plaintext_auth = no
message_size_limit = 20000
"""


def sendmail_cmd(env, *args):
    if SBINDIR:
        return [os.path.join(SBINDIR, "sendmail"), "-C", env.conf] + \
            list(args)
    return [LOFTCTL, "-c", env.conf, "sendmail"] + list(args)


def sendmail(env, msg, *args, user=None):
    """Run sendmail (as user: through setpriv); (status, stderr)."""
    cmd = sendmail_cmd(env, *args)
    if user is not None:
        cmd = ["setpriv", "--reuid=" + user, "--regid=" + user_group(user),
               "--clear-groups", "--"] + cmd
    r = subprocess.run(cmd, input=msg, capture_output=True, timeout=30)
    return r.returncode, r.stderr.decode("utf-8", "replace")


def user_group(user):
    import pwd
    return str(pwd.getpwnam(user).pw_gid)


def wait_count(d, user, n, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        got = pop3_all(d, user)
        if len(got) >= n or time.monotonic() >= deadline:
            return got
        time.sleep(0.1)


def start(env):
    """loftd with SMTP and its queue manager, once the queue manager has
    made the maildrop (it does so after the listeners are up)."""
    d = env.start_loftd("", smtp=True, qmgr=True)
    fifo = os.path.join(env.dir, "queue", "public", "pickup")
    deadline = time.monotonic() + 15
    while not os.path.exists(fifo) and time.monotonic() < deadline:
        time.sleep(0.05)
    return d


def maildrop(env):
    try:
        return sorted(os.listdir(os.path.join(env.dir, "queue",
                                              "maildrop")))
    except FileNotFoundError:
        return []


PICKUP = re.compile(
    rb"^Return-Path: <([^>]*)>\r\nDelivered-To: ([^\r]*)\r\n"
    rb"Received: by test\.example\.org \(loft pickup, uid (\d+)\)\r\n"
    rb"\tid ([0-9A-Z]{17}); [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} "
    rb"\d\d:\d\d:\d\d [+-]\d{4}\r\n")
DATE = rb"Date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\n"


def check_pickup(m, name, sender, rcpt, uid, rest_re):
    """m: one message as POP3 gave it. rest_re: what follows the
    Received: line, a regular expression (bytes) with the queue ID as
    {ID}."""
    g = PICKUP.match(m or b"")
    if not t.ok(g is not None, "%s: Return-Path, Delivered-To, pickup's "
                "Received: line" % name):
        t.diag(repr((m or b"")[:400]))
        return
    t.eq(g.group(1), sender, "%s: envelope sender" % name)
    t.eq(g.group(2), rcpt, "%s: Delivered-To" % name)
    t.eq(int(g.group(3)), uid, "%s: the submitting uid" % name)
    rest = m[g.end():]
    want = rest_re.replace(b"{ID}", g.group(4))
    if not t.ok(re.fullmatch(want, rest, re.S) is not None,
                "%s: the message byte for byte" % name):
        t.diag("got:  %r" % rest)
        t.diag("want: %r" % want)


MSG_T = (b"To: Alice Example <alice@example.test>\n"
         b"Cc: \"Bob, B.\" <bob@example.test>\n"
         b"Bcc: alice+hidden@example.test\n"
         b"Subject: from cron\n\nline one\n.\nline three\n")


def test_bad_args(env):
    code, err = sendmail(env, b"", "-Z")
    t.eq(code, 64, "unknown option: exit 64")
    code, err = sendmail(env, b"x\n")
    t.eq(code, 64, "no recipient: exit 64")
    t.ok("no recipients" in err, "...and said so")
    code, err = sendmail(env, b"", "-bd")
    t.eq(code, 64, "-bd: exit 64")
    code, err = sendmail(env, b"Subject: x\n\n" + b"y" * 30000 + b"\n",
                         "alice")
    t.eq(code, 65, "over message_size_limit: exit 65")
    code, err = sendmail(env, b"x\n", "a..b@example.test")
    t.eq(code, 65, "a bad recipient address: exit 65")


def test_root(env, d):
    code, err = sendmail(env, MSG_T, "-t", "-i")
    t.eq(code, 0, "root: sendmail -t -i exits 0")
    if err:
        t.diag(err)
    got = wait_count(d, "alice", 2)
    t.eq(len(got), 2, "alice got the To: and the Bcc: copies")
    rest = (rb"To: Alice Example <alice@example\.test>\r\n"
            rb"Cc: \"Bob, B\.\" <bob@example\.test>\r\n"
            rb"Subject: from cron\r\n"
            rb"From: Super-User <root@example\.test>\r\n" + DATE +
            rb"Message-ID: <{ID}@test\.example\.org>\r\n\r\n"
            rb"line one\r\n\.\r\nline three\r\n")
    rest = rest.replace(rb"Super-User", rb"[^<\r\n]*")
    check_pickup(got[0] if got else None, "root -t", b"root@example.test",
                 b"alice@example.test", 0, rest)
    bob = wait_count(d, "bob", 1)
    t.eq(len(bob), 1, "bob (Cc:) got it")
    t.ok(bob and b"\r\nBcc:" not in bob[0] and b"hidden" not in bob[0],
         "no Bcc: in the copy")


def test_user(env, d):
    import pwd
    uid = pwd.getpwnam("nobody").pw_uid
    msg = b"Subject: as nobody\n\nhello\n"
    code, err = sendmail(env, msg, "-f", "robot@other.test", "-F", "Cron",
                         "bob", user="nobody")
    t.eq(code, 0, "nobody: sendmail -f exits 0")
    if err:
        t.diag(err)
    got = wait_count(d, "bob", 2)
    check_pickup(got[1] if len(got) > 1 else None, "nobody -f",
                 b"robot@other.test", b"bob@example.test", uid,
                 rb"Subject: as nobody\r\nFrom: Cron <robot@other\.test>"
                 rb"\r\n" + DATE + rb"Message-ID: <{ID}@test\.example\.org>"
                 rb"\r\n\r\nhello\r\n")
    return uid


def test_dots(env, d):
    code, _ = sendmail(env, b"Subject: dot\n\nbefore\n.\nafter\n", "bob")
    t.eq(code, 0, "without -i: exit 0")
    code, _ = sendmail(env, b"Subject: oi\n\nbefore\n.\nafter\n", "-oi",
                       "bob")
    t.eq(code, 0, "with -oi: exit 0")
    got = wait_count(d, "bob", 4)
    bodies = [m.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in m else b""
              for m in got[2:4]]
    t.eq(bodies, [b"before\r\n", b"before\r\n.\r\nafter\r\n"],
         "a lone dot ends the message without -i, not with -oi")


def test_stopped(env, d, uid):
    env.stop_loftd()
    code, err = sendmail(env, b"Subject: later\n\nqueued while down\n",
                         "alice", user="nobody" if ROOT else None)
    t.eq(code, 0, "loftd stopped: sendmail still exits 0")
    if err:
        t.diag(err)
    files = maildrop(env)
    t.eq(len(files), 1, "the message waits in the maildrop")
    if files:
        st = os.lstat(os.path.join(env.dir, "queue", "maildrop", files[0]))
        t.eq((st.st_uid, stat.S_IMODE(st.st_mode)),
             (uid if ROOT else os.geteuid(), 0o644),
             "owned by the submitting user, mode 0644")
    d = start(env)
    got = wait_count(d, "alice", 3)
    t.ok(len(got) == 3 and got[2].endswith(b"\r\n\r\nqueued while down\r\n"),
         "delivered once loftd started")
    t.eq(maildrop(env), [], "the maildrop is empty again")
    return d


def test_smtp(env, d):
    p = subprocess.Popen(sendmail_cmd(env, "-bs"), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(
        b"EHLO client\r\nMAIL FROM:<sender@example.test>\r\n"
        b"RCPT TO:<bob@example.test>\r\nDATA\r\n"
        b"Subject: bs\r\n\r\n..stuffed\r\nend\r\n.\r\nQUIT\r\n", timeout=30)
    t.eq(p.returncode, 0, "-bs: exit 0")
    codes = re.findall(rb"^(\d{3})[ ]", out, re.M)
    t.eq(codes, [b"220", b"250", b"250", b"250", b"354", b"250", b"221"],
         "-bs: the SMTP dialogue")
    t.ok(re.search(rb"250 2\.0\.0 Ok: queued as d\d{11}\.", out) is not None,
         "-bs: 250 once in the maildrop")
    got = wait_count(d, "bob", 5)
    t.ok(len(got) == 5 and got[4].startswith(
        b"Return-Path: <sender@example.test>\r\n") and
         got[4].endswith(b"\r\n\r\n.stuffed\r\nend\r\n"),
         "-bs: delivered, dot-unstuffed")


def test_layout(env):
    q = os.path.join(env.dir, "queue")
    modes = [stat.S_IMODE(os.lstat(os.path.join(q, p)).st_mode)
             for p in ("", "maildrop", "public", "public/pickup")]
    t.eq(modes, [0o711, 0o1733, 0o711, 0o622],
         "queue 0711, maildrop 1733, public 0711, FIFO 0622")
    t.ok(stat.S_ISFIFO(os.lstat(os.path.join(q, "public/pickup")).st_mode),
         "public/pickup is a FIFO")


def main():
    env = Env("maildir", extra=CONF)
    for u in ("alice", "bob"):
        env.add_user(u)
    test_bad_args(env)
    code, err = sendmail(env, b"x\n", "alice")
    t.eq(code, 75, "no maildrop yet (loftd never ran): exit 75")
    d = start(env)
    t.guard("layout", test_layout, env)
    t.guard("root", test_root, env, d)
    uid = os.geteuid()
    if ROOT:
        uid = t.guard("nobody", test_user, env, d)
    else:
        sendmail(env, b"Subject: filler\n\nx\n", "bob")
    t.guard("dots", test_dots, env, d)
    d = t.guard("stopped", test_stopped, env, d, uid) or d
    t.guard("-bs", test_smtp, env, d)
    log = d.log()
    t.ok(re.search(r"[0-9A-Z]{17}: uid=0 from=<root@example\.test>", log),
         "the pickup logs ID: uid=N from=<...>")
    t.ok(re.search(r"[0-9A-Z]{17}: to=<alice@example\.test>.*status=sent",
                   log), "and the qmgr's delivery line")
    t.eq(env.stop_loftd(), 0, "loftd stops cleanly")
    t.done()


main()
