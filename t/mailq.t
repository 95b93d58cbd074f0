#!/usr/bin/env python3
"""loftctl mailq (and the `mailq` link) and loftctl queue
delete|hold|release|flush|show, run as an administrator would on the
queue loftd filled: messages sent with smtplib to remote recipients
(relayed for the loopback client, so they stay in the queue), then loftd
stopped so that nothing else touches the queue. mailq's text is compared
byte for byte with what the queue files say (IDs from env/, sizes of
data/, senders, recipients, arrival times, the last reply of a deferred
recipient, '!' for held and '*' for locked messages); hold, release,
flush and delete are checked on the files; bad and unknown IDs, IDs of
16 and 18 characters, ALL, an empty queue, a missing queue directory,
and runs as mail_owner and as nobody."""
import fcntl
import os
import re
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import LOFTCTL, SBINDIR, Env, Tap, need_loftd  # noqa: E402

t = Tap()
need_loftd(t)
ROOT = os.geteuid() == 0
# What flush says after its count while loftd is stopped.
NOTRUN = ("loftd's queue manager is not running: they are tried when it "
          "starts\n")
HEADINGS = ("----Queue ID------ --Size-- ---Arrival Time---- "
            "--Sender/Recipient------\n")
ID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{17}$")


def run(*args, user=None, exe=None):
    """loftctl -c CONF args (exe: another name for it, e.g. the mailq
    link); user: run through su as that user. (status, out, err)."""
    argv = [exe or LOFTCTL, "-c", env.conf] + list(args)
    if user is not None:
        argv = ["su", "-s", "/bin/sh", user, "-c",
                " ".join("'%s'" % a for a in argv)]
    r = subprocess.run(argv, capture_output=True)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def queue_ids():
    return sorted(os.listdir(os.path.join(d.queue, "env")))


def env_text(qid):
    with open(os.path.join(d.queue, "env", qid)) as f:
        return f.read()


def write_env(qid, text):
    """Replace an envelope as the queue manager would (the owner and
    mode stay: written in place)."""
    with open(os.path.join(d.queue, "env", qid), "w") as f:
        f.write(text)


def set_rcpt(text, addr, block):
    """The envelope text with addr's state, attempts, times and reply
    replaced by block (whatever they were: a queue manager may have
    tried the message before loftd stopped)."""
    return re.sub(r"(\nrcpt <%s>\n(?:orcpt .*\n)?(?:notify .*\n)?)"
                  r"state .*\nattempts .*\nlast .*\nnext .*\n(?:diag .*\n)?"
                  % re.escape(addr), lambda m: m.group(1) + block, text)


def unescape(s):
    return re.sub(r"\\x([0-9A-F]{2})|\\\\",
                  lambda m: chr(int(m.group(1), 16)) if m.group(1) else "\\",
                  s)


def parse_env(qid):
    """The fields mailq shows, read from the envelope file."""
    m = {"id": qid, "rcpts": []}
    for line in env_text(qid).splitlines():
        key, _, val = line.partition(" ")
        if key == "arrival":
            m["arrival"] = int(val.split(".")[0])
        elif key == "sender":
            m["sender"] = unescape(val[1:-1])
        elif key == "hold":
            m["hold"] = val == "1"
        elif key == "rcpt":
            m["rcpts"].append({"addr": unescape(val[1:-1]), "diag": None})
        elif key == "state" and m["rcpts"]:
            m["rcpts"][-1]["state"] = val
        elif key == "diag":
            m["rcpts"][-1]["diag"] = val
    m["size"] = os.path.getsize(os.path.join(d.queue, "data", qid))
    return m


def expected_mailq(locked=()):
    """mailq's output, built from the queue files alone."""
    ids = queue_ids()
    if not ids:
        return "Mail queue is empty\n"
    out, total = [HEADINGS], 0
    for i, qid in enumerate(ids):
        m = parse_env(qid)
        total += m["size"]
        if i:
            out.append("\n")
        status = "!" if m["hold"] else "*" if qid in locked else " "
        when = time.strftime("%a %b %e %H:%M:%S", time.localtime(m["arrival"]))
        out.append("%s%s %8d %s %s\n" % (qid, status, m["size"], when,
                                          m["sender"] or "MAILER-DAEMON"))
        prev = ""
        for r in m["rcpts"]:
            if r["state"] not in ("pending", "deferred"):
                continue
            why = (r["diag"] or "") if r["state"] == "deferred" else ""
            if why != prev:
                shown = why or "reason unavailable"
                out.append("%s(%s)\n" % (" " * max(0, 76 - len(shown)), shown))
                prev = why
            out.append(" " * 48 + r["addr"] + "\n")
    out.append("\n-- %d Kbytes in %d Request%s.\n" % (
        total // 1024, len(ids), "" if len(ids) == 1 else "s"))
    return "".join(out)


def snapshot():
    """Every file of the test directory, the queue included: {path:
    bytes}."""
    out = {}
    for base, dirs, files in os.walk(env.dir):
        for f in files:
            p = os.path.join(base, f)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as fh:
                    out[p] = fh.read()
    return out


env = Env("maildir", extra="mydestination = localhost, example.test\n")
try:
    d = env.start_loftd(smtp=True, pop3=False, pop3s=False)
except RuntimeError as e:
    t.skip_all("loftd: %s" % e)

# Three messages to remote recipients: relayed for the loopback client
# (mynetworks), and with no outbound delivery they stay in the queue.
BODY = "Subject: %s\r\nFrom: alice@example.test\r\n\r\n%s\r\n"
sent = [
    ("alice@example.test", ["bob@remote.example"], BODY % ("one", "x" * 10)),
    ("", ["carol@remote.example", "dave@remote.example"],
     BODY % ("two", "bounce\r\n" * 300)),
    ("erin@example.test", ["frank@remote.example", "gina@remote.example"],
     BODY % ("three", "y" * 3000)),
]
s = smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=20)
for sender, rcpts, msg in sent:
    s.sendmail(sender, rcpts, msg)
s.quit()
t.eq(env.stop_loftd(), 0, "loftd stopped, so that the queue stays as it is")

ids = queue_ids()
t.eq(len(ids), 3, "three messages in env/")
t.ok(all(ID_RE.match(i) for i in ids), "  named by queue IDs")
by_subject = {}
for qid in ids:
    with open(os.path.join(d.queue, "data", qid), "rb") as f:
        subj = re.search(rb"\r\nSubject: (\w+)", f.read()).group(1).decode()
    by_subject[subj] = qid
t.eq(sorted(by_subject), ["one", "three", "two"], "  one file per message")
ONE, TWO, THREE = by_subject["one"], by_subject["two"], by_subject["three"]

# mailq as root.
rc, out, err = run("mailq")
t.eq((rc, err), (0, ""), "mailq as root: exit 0, nothing on stderr")
t.eq(out, expected_mailq(), "  the queue as Postfix shows it")
lines = out.splitlines()
t.eq(lines[0] + "\n", HEADINGS, "  the header line")
for subj, (sender, rcpts, _) in zip(("one", "two", "three"), sent):
    qid = by_subject[subj]
    size = os.path.getsize(os.path.join(d.queue, "data", qid))
    m = re.search(r"^%s  +(\d+) (\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d) (\S+)\n"
                  r"((?: {48}\S+\n)+)" % qid, out, re.M)
    t.ok(m is not None, "  %s (%s) listed" % (qid, subj))
    if m:
        t.eq(int(m.group(1)), size, "    size %d: the content's" % size)
        t.eq(m.group(3), sender or "MAILER-DAEMON", "    sender %s" %
             (sender or "MAILER-DAEMON (null sender)"))
        t.eq(m.group(4).split(), rcpts, "    recipients, one a line")
total = sum(os.path.getsize(os.path.join(d.queue, "data", i)) for i in ids)
t.eq(lines[-1], "-- %d Kbytes in 3 Requests." % (total // 1024),
     "  the summary: %d Kbytes" % (total // 1024))
t.ok(total // 1024 >= 5, "  (sizes over 1 KiB add up: %d bytes)" % total)

# The `mailq` name: the installed link, or one made here.
link = os.path.join(SBINDIR, "mailq") if SBINDIR else None
if link is None or not os.path.islink(link):
    link = os.path.join(env.dir, "mailq")
    os.symlink(LOFTCTL, link)
t.eq(run(exe=link), (0, out, ""), "mailq (%s) prints the same" % link)
t.eq(run("extra", exe=link)[0], 64, "  mailq with an argument: usage, 64")
t.eq(run("mailq", "-x")[0], 64, "loftctl mailq -x: usage, 64")

# Hold and release.
rc, out, err = run("queue", "hold", TWO)
t.eq((rc, out, err), (0, "%s: held\n" % TWO, ""), "queue hold ID")
t.ok("\nhold 1\n" in env_text(TWO), "  the envelope says hold 1")
rc, out, err = run("mailq")
t.eq(out, expected_mailq(), "  mailq marks it")
t.ok(("\n%s! " % TWO) in out, "  with '!'")
rc, out, err = run("queue", "release", TWO)
t.eq((rc, out, err), (0, "%s: released\n" % TWO, ""), "queue release ID")
t.ok("\nhold 0\n" in env_text(TWO), "  the envelope says hold 0")
rc, out, err = run("queue", "hold", "ALL")
t.eq((rc, sorted(out.splitlines())), (0, sorted("%s: held" % i for i in ids)),
     "queue hold ALL")
t.ok(all("\nhold 1\n" in env_text(i) for i in ids), "  every envelope held")
rc, out, err = run("queue", "release", ONE, THREE, TWO)
t.eq((rc, out), (0, "%s: released\n%s: released\n%s: released\n" %
                 (ONE, THREE, TWO)), "queue release ID ID ID, in order")

# A deferred recipient: the reason of its last attempt, right-aligned,
# and "(reason unavailable)" for the pending one after it, as Postfix.
now = int(time.time())
later = now + 3600
text = env_text(THREE)
DIAG = "451 4.3.0 <frank@remote.example>: try again later \\x1B[31m"
deferred = set_rcpt(text, "frank@remote.example",
                    "state deferred\nattempts 1\nlast %d\nnext %d\n"
                    "diag %s\n" % (now, later, DIAG))
t.ok(deferred != text, "(an envelope edited: frank deferred until later)")
write_env(THREE, deferred)
rc, out, err = run("mailq")
t.eq((rc, out), (0, expected_mailq()), "mailq shows the deferral's reason")
t.ok(("(%s)\n" % DIAG) in out, "  in parentheses, escape bytes escaped")
t.ok("\x1b" not in out, "  no raw ESC reaches the terminal")
t.ok(re.search(r"^ +\(reason unavailable\)\n {48}gina@remote\.example$", out,
               re.M) is not None, "  then (reason unavailable) for gina")
reason_line = [x for x in out.splitlines() if x.endswith("m)")][0]
t.eq(len(reason_line), 78, "  reasons end in column 78")

# queue flush: deferred recipients due now; held messages left alone.
def not_due(qid, at):
    """Whether a message not on hold has a deferred recipient not due
    at time at (THREE now; others too if loftd's queue manager deferred
    them before it stopped)."""
    text = env_text(qid)
    return "\nhold 0\n" in text and any(
        int(n) > at for n in re.findall(
            r"\nstate deferred\nattempts \d+\nlast \d+\nnext (\d+)\n",
            text))


before = int(time.time())
n = sum(not_due(i, before) for i in ids)
rc, out, err = run("queue", "flush")
after = int(time.time())
t.ok(n >= 1, "(%d message%s with deferred recipients)" % (n, "s"[:n != 1]))
t.eq((rc, out, err), (0, "%d message%s due now\n" % (n, "s"[:n != 1]) +
                      NOTRUN, ""),
     "queue flush")
t.ok(not any(not_due(i, after) for i in ids), "  none is left for later")
m = re.search(r"rcpt <frank@remote\.example>\nstate deferred\nattempts 1\n"
              r"last %d\nnext (\d+)\n" % now, env_text(THREE))
t.ok(m is not None and before <= int(m.group(1)) <= after,
     "  frank's next attempt is now (%s)" % (m and m.group(1)))
t.ok("diag %s\n" % DIAG in env_text(THREE), "  the reason is kept")
t.eq(run("queue", "flush")[:2], (0, "0 messages due now\n" + NOTRUN),
     "  again: nothing left to make due")
write_env(THREE, deferred.replace("\nhold 0\n", "\nhold 1\n"))
t.eq(run("queue", "flush")[:2], (0, "0 messages due now\n" + NOTRUN),
     "  a held message is not flushed")
t.ok("next %d\n" % later in env_text(THREE), "    its next attempt stays")
write_env(THREE, deferred)

# A message locked by a running delivery: '*', and it cannot be deleted.
one_text = env_text(ONE)
write_env(ONE, set_rcpt(one_text, "bob@remote.example",
                        "state deferred\nattempts 1\nlast %d\nnext %d\n" %
                        (now, later)))
with open(os.path.join(d.queue, "data", ONE), "rb") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    rc, out, err = run("mailq")
    t.eq(out, expected_mailq(locked=(ONE,)), "mailq with a message locked")
    t.ok(("%s* " % ONE) in out, "  it is marked '*'")
    t.ok("(" not in out.split(ONE)[1].split("\n\n")[0],
         "  a deferral without a reply and nothing before: no reason line")
    rc, out, err = run("queue", "delete", ONE)
    t.eq(rc, 1, "queue delete of a locked message: exit 1")
    t.ok("being delivered" in err and ONE in err, "  said why: " + err.strip())
    t.ok(ONE in queue_ids(), "  the message is still there")
    t.eq(run("queue", "hold", ONE)[0], 1, "  hold too: exit 1")
    locked_env = env_text(ONE)
    rc, out, err = run("queue", "flush")
    t.eq((rc, out), (0, "1 message due now, 1 being delivered\n" + NOTRUN),
         "  flush makes the other one due and says which it skipped")
    t.eq(env_text(ONE), locked_env, "  the locked one is left alone")
    fcntl.flock(lock, fcntl.LOCK_UN)
write_env(ONE, one_text)
t.eq(run("mailq")[1], expected_mailq(), "unlocked: no '*' any more")

# queue show: the envelope as stored, then the header lines.
rc, out, err = run("queue", "show", TWO)
with open(os.path.join(d.queue, "data", TWO), "rb") as f:
    head = f.read().split(b"\r\n\r\n")[0].decode().replace("\r\n", "\n")
t.eq((rc, err), (0, ""), "queue show ID: exit 0")
t.eq(out, "*** ENVELOPE %s ***\n%s*** HEADER %s ***\n%s\n*** END %s ***\n" % (
    TWO, env_text(TWO), TWO, head, TWO), "  envelope file, then the header")
t.ok(head.startswith("Received: ") and "Subject: two" in head,
     "  (the header holds loftd's Received: line and the Subject)")
t.eq(run("queue", "show", "ALL")[0], 64, "queue show ALL: usage, 64")

# Bad IDs: nothing is done, whatever else is asked.
UNKNOWN = "0" * 17
outside = os.path.join(env.dir, UNKNOWN)
with open(outside, "w") as f:
    f.write("a file named like a queue ID, outside the queue\n")
files = snapshot()
for bad, why in ((ONE[:16], "16 characters"), (ONE + "0", "18 characters"),
                 (ONE.lower(), "lower case"), (ONE[:16] + "I", "an I"),
                 ("../../" + ONE[6:], "a path"), ("", "empty"),
                 ("ALL" + ONE[3:], "ALL... of 17 characters")):
    rc, out, err = run("queue", "delete", bad)
    t.ok(rc == 1 and out == "" and "not a queue ID" in err,
         "queue delete %r (%s): refused, exit 1" % (bad, why))
rc, out, err = run("queue", "delete", ONE, "nonsense")
t.ok(rc == 1 and "\"nonsense\" is not a queue ID" in err and
     "nothing done" in err, "queue delete GOOD BAD: refused as a whole")
t.ok(ONE in queue_ids(), "  the good one is still queued")
rc, out, err = run("queue", "delete", ONE, "ALL")
t.ok(rc == 1 and "or ALL alone" in err, "queue delete ID ALL: refused")
rc, out, err = run("queue", "hold", "\x1b[2J")
t.ok(rc == 1 and "\x1b" not in err, "  a bad ID is shown escaped")
r = subprocess.run([LOFTCTL, "-c", env.conf, "queue", "delete", UNKNOWN],
                   capture_output=True, cwd=env.dir)
t.ok(r.returncode == 1 and b"no such message" in r.stderr,
     "queue delete of an ID not in the queue, from where a file has that "
     "name: exit 1, said so")
for sub in ("delete", "hold", "release", "show"):
    rc, out, err = run("queue", sub, UNKNOWN)
    t.ok(rc == 1 and "no such message" in err,
         "queue %s %s: exit 1 (%s)" % (sub, UNKNOWN, err.strip()))
t.eq(snapshot(), files, "  no file changed, inside the queue or out")
os.unlink(outside)

# Usage.
for args in (("queue",), ("queue", "bogus"), ("queue", "delete"),
             ("queue", "flush", ONE), ("queue", "show")):
    t.eq(run(*args)[0], 64, "loftctl %s: usage, 64" % " ".join(args))

# mail_owner may run it; nobody may not.
if ROOT:
    owner = d.login_user("mail_owner")
    rc, out, err = run("mailq", user=owner)
    t.eq((rc, out), (0, expected_mailq()), "mailq as mail_owner %s" % owner)
    files = snapshot()
    rc, out, err = run("mailq", user="nobody")
    t.eq((rc, out), (1, ""), "mailq as nobody: exit 1, nothing listed")
    t.ok("permission denied" in err and owner in err,
         "  a clear error: " + err.strip())
    for args in (("queue", "delete", "ALL"), ("queue", "flush"),
                 ("queue", "hold", ONE), ("queue", "show", ONE)):
        rc, out, err = run(*args, user="nobody")
        t.ok(rc == 1 and "permission denied" in err,
             "  %s as nobody: refused" % " ".join(args))
    t.eq(snapshot(), files, "  nothing changed")
else:
    t.diag("not root: the mail_owner and nobody runs are skipped")

# Delete: one, then ALL; an empty queue.
rc, out, err = run("queue", "delete", TWO)
t.eq((rc, out, err), (0, "%s: deleted\n" % TWO, ""), "queue delete ID")
t.ok(not os.path.exists(os.path.join(d.queue, "env", TWO)) and
     not os.path.exists(os.path.join(d.queue, "data", TWO)),
     "  its envelope and content are gone")
t.eq(queue_ids(), sorted([ONE, THREE]), "  the others stay")
rc, out, err = run("queue", "delete", TWO)
t.ok(rc == 1 and "no such message" in err, "  deleting it again: exit 1")
rc, out, err = run("mailq")
t.eq((rc, out), (0, expected_mailq()), "mailq after it: two requests")
t.ok(out.endswith(" in 2 Requests.\n"), "  (2 Requests)")
rc, out, err = run("queue", "delete", "ALL")
t.eq((rc, out), (0, "%s: deleted\n%s: deleted\n" % (ONE, THREE)),
     "queue delete ALL")
t.eq((os.listdir(os.path.join(d.queue, "env")),
      os.listdir(os.path.join(d.queue, "data"))), ([], []),
     "  env/ and data/ are empty")
t.eq(run("mailq"), (0, "Mail queue is empty\n", ""), "mailq: empty queue")
t.eq(run("queue", "delete", "ALL"), (0, "", ""), "delete ALL on nothing: 0")
t.eq(run("queue", "flush"), (0, "0 messages due now\n" + NOTRUN, ""),
     "flush on nothing: 0")

# A queue directory that does not exist is not made.
missing = os.path.join(env.dir, "no-queue")
with open(env.conf, "a") as f:
    f.write("queue_directory = %s\n" % missing)
rc, out, err = run("mailq")
t.ok(rc == 1 and "No such file" in err, "mailq without a queue: exit 1, "
     "said so")
t.ok(not os.path.exists(missing), "  the directory is not created")

env.cleanup()
t.done()
