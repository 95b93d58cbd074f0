#!/usr/bin/env python3
"""Concurrent deliveries lose and duplicate nothing: 8 writers x 500
messages into one Maildir and into one mbox, and loft-deliver side by side
with procmail on the same mbox, which shows that the locks interoperate."""
import hashlib
import mailbox
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import DELIVER, Env, Tap, message, need_binaries  # noqa: E402

t = Tap()
need_binaries(t)
WRITERS = int(os.environ.get("LOFT_STRESS_WRITERS", "8"))
PER = int(os.environ.get("LOFT_STRESS_PER", "500"))


def body_for(tag):
    # Bodies with From_ lines to escape, and a checksum to find damage.
    # procmail (tags p...) escapes in its own mboxo way: give it none.
    if tag.startswith("p"):
        core = "message %s\nplain body\n" % tag
    else:
        core = "message %s\nFrom the middle of the body\n>From quoted\n" % tag
    return core + "sum %s\n" % hashlib.sha1(core.encode()).hexdigest()


def writer(env, w, n, user):
    bad = 0
    for i in range(n):
        tag = "w%d-%d" % (w, i)
        rc, err = env.deliver(user, message(tag, body=body_for(tag)), "-f", "s@x")
        if rc != 0:
            bad += 1
            sys.stderr.write("delivery %s: %d %s\n" % (tag, rc, err))
    return bad


def check_messages(msgs, expect_tags, what, mbox):
    seen = {}
    damaged = 0
    for m in msgs:
        tag = m["Subject"]
        seen[tag] = seen.get(tag, 0) + 1
        payload = m.get_payload()
        text = payload if isinstance(payload, str) else ""
        # mbox readers give the escaped body; undo one level of mboxrd.
        if mbox:
            text = re.sub(r"(?m)^>(>*From )", r"\1", text)
        if text != body_for(tag):
            damaged += 1
    t.eq(len(msgs), len(expect_tags), "%s: message count" % what)
    t.eq(sorted(seen), sorted(expect_tags), "%s: every message present" % what)
    t.eq([k for k, v in seen.items() if v > 1], [], "%s: no duplicates" % what)
    t.eq(damaged, 0, "%s: no message damaged" % what)


for fmt in ("maildir", "mbox"):
    env = Env(fmt)
    env.add_user("alice")
    with ThreadPoolExecutor(WRITERS) as ex:
        fails = sum(ex.map(lambda w: writer(env, w, PER, "alice"), range(WRITERS)))
    t.eq(fails, 0, "%s: %d x %d concurrent deliveries all exit 0" % (fmt, WRITERS, PER))
    tags = ["w%d-%d" % (w, i) for w in range(WRITERS) for i in range(PER)]
    if fmt == "maildir":
        box = mailbox.Maildir(env.user_dir("alice"), create=False)
    else:
        box = mailbox.mbox(env.inbox("alice"), create=False)
    check_messages(list(box), tags, fmt, fmt == "mbox")
    r = env.ctl("index", "list", "alice")
    lines = [ln for ln in r.stdout.decode().splitlines() if not ln.startswith("#")]
    uids = [int(ln.split()[0]) for ln in lines]
    t.eq(sorted(uids), list(range(1, WRITERS * PER + 1)),
         "%s: index holds UIDs 1..%d, each once" % (fmt, WRITERS * PER))
    env.cleanup()

# loft-deliver and procmail writing into the same mbox at the same time.
procmail = shutil.which("procmail")
if not procmail:
    t.ok(True, "procmail not installed: interoperation check skipped")
else:
    env = Env("mbox")
    env.add_user("bob")
    inbox = env.inbox("bob")
    os.makedirs(os.path.dirname(inbox), exist_ok=True)
    env.own(os.path.dirname(inbox))
    # procmail runs as the mailbox owner too, as it would from an MTA.
    as_owner = {"user": env.owner[0], "group": env.owner[1]} if env.owner else {}
    rc = os.path.join(env.dir, "procmailrc")
    with open(rc, "w") as f:
        # The trailing ':' makes procmail take its locks (fcntl + dotlock).
        f.write("LOCKTIMEOUT=60\n:0:\n%s\n" % inbox)
    os.chmod(rc, 0o644)
    n = PER // 2

    def pm_writer(w):
        bad = 0
        for i in range(n):
            tag = "p%d-%d" % (w, i)
            raw = b"From s@x Sun Nov 29 10:00:00 2026\n" + message(tag, body=body_for(tag))
            r = subprocess.run([procmail, "-m", rc], input=raw, capture_output=True,
                               **as_owner)
            bad += r.returncode != 0
        return bad

    with ThreadPoolExecutor(8) as ex:
        futs = [ex.submit(writer, env, w, n, "bob") for w in range(4)]
        futs += [ex.submit(pm_writer, w) for w in range(4)]
        fails = sum(f.result() for f in futs)
    t.eq(fails, 0, "procmail and loft-deliver side by side: all succeed")
    tags = ["w%d-%d" % (w, i) for w in range(4) for i in range(n)]
    tags += ["p%d-%d" % (w, i) for w in range(4) for i in range(n)]
    box = mailbox.mbox(inbox, create=False)
    check_messages(list(box), tags, "mbox shared with procmail", True)
    r = env.ctl("index", "stats", "bob")
    t.ok(("INBOX: uidvalidity=" in r.stdout.decode()) and
         (" messages=%d " % len(tags)) in r.stdout.decode(),
         "index finds every message of both writers")
    env.cleanup()

t.done()
