#!/usr/bin/env python3
"""Alias targets that are commands and files (localcmd.c), delivered out
of loftd's SMTP queue as Postfix's local(8) delivers them: a "|command"
alias gets the message on standard input (From_ line, Return-Path:,
Delivered-To:, LF line ends) with Postfix's minimal environment, as
default_privs (the alias database is root's), and the log says
"delivered to command: ..."; exit 75 defers (mailq shows the message),
exit 1 bounces with the command's first output line quoted, a command
over command_time_limit is killed (its process group too) and bounced;
a "/file" alias is appended to as an mbox (From_ line, >From quoting,
two deliveries append), a symbolic link or a file others may write is
refused with the reason; /dev/null and a "/dir/" Maildir take mail too;
an :include: list with a command runs it as the include file's owner.

The master's side (localcmd.c), counted, never timed: a delivery process
that hangs (here: its command stops it, and ignores SIGTERM) is killed
with its whole session when command_time_limit plus the grace
(LOFT_LOCALCMD_GRACE, shortened for the test) is over, and deferred; then
loftd restarts with a long command_time_limit, and 17 commands at once
(an alias of 17 commands that block on FIFOs this test holds) run 16 at
a time: the 17th is logged as waiting and starts once one has ended; and
on SIGTERM the waiting one is deferred at once ("mail system is shutting
down") and never runs, while the 16 running finish, qmgr records them
and loftd exits 0."""
import errno
import os
import pwd
import re
import signal
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import (SBINDIR, Env, Tap, need_loftd, pop3_all,  # noqa: E402
                  smtp_send, wait_for, wait_gone)

t = Tap()
need_loftd(t)
ROOT = os.geteuid() == 0
LIMIT = 2
GRACE = 2           # LOFT_LOCALCMD_GRACE for the first loftd
PROCS_MAX = 16      # LOCALCMD_PROCS_MAX
LONG_LIMIT = 300    # command_time_limit of the second loftd

CONF = """mydestination = localhost, example.test
recipient_delimiter = +
disable_plaintext_auth = no
command_time_limit = %ds
""" % LIMIT


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def setup():
    env = Env("maildir", extra=CONF)
    for u in ("alice", "sender"):
        env.add_user(u)
    env.bin = os.path.join(env.dir, "bin")
    env.out = os.path.join(env.dir, "out")
    os.makedirs(env.bin)
    os.makedirs(env.out)
    os.chmod(env.out, 0o777)
    os.chmod(env.bin, 0o755)
    write(os.path.join(env.bin, "capture"),
          "#!/bin/sh\n"
          "cat > %s/$1.msg\n"
          "env > %s/$1.env\n"
          "id -u > %s/$1.id\n" % (env.out, env.out, env.out), 0o755)
    write(os.path.join(env.bin, "exit75"),
          "#!/bin/sh\ncat >/dev/null\necho try later\nexit 75\n", 0o755)
    write(os.path.join(env.bin, "fail1"),
          "#!/bin/sh\necho 'no such list here' >&2\necho second line\n"
          "exit 1\n", 0o755)
    write(os.path.join(env.bin, "slow"),
          "#!/bin/sh\nsleep 37\n", 0o755)
    # block DIR N: note the start with how many of its runs had ended,
    # wait for DIR/fifo.N, note the end.
    write(os.path.join(env.bin, "block"),
          "#!/bin/sh\ncat >/dev/null\n"
          "echo \"$2 $(wc -l < \"$1/done\")\" >> \"$1/started\"\n"
          "read x < \"$1/fifo.$2\"\n"
          "echo \"$2\" >> \"$1/done\"\n", 0o755)
    # stuck: ignores SIGTERM, starts a child, then stops the delivery
    # process (the leader of its session) as a hung lock would, and waits.
    write(os.path.join(env.bin, "stuck"),
          "#!/bin/sh\ncat >/dev/null\ntrap '' TERM HUP\nsleep 1000 &\n"
          "sid=$(cut -d' ' -f6 /proc/$$/stat)\n"
          "echo \"$$ $! $sid\" > %s/stuck.tmp\n"
          "mv %s/stuck.tmp %s/stuck.pids\n"
          "kill -STOP \"$sid\"\nwait\n" % ((env.out,) * 3), 0o755)
    env.runs = {}
    for name in ("many1", "many2"):
        rd = os.path.join(env.out, name)
        os.makedirs(rd)
        os.chmod(rd, 0o777)
        for f in ("started", "done"):
            write(os.path.join(rd, f), "", 0o666)
        for n in range(1, PROCS_MAX + 2):
            fifo = os.path.join(rd, "fifo.%d" % n)
            os.mkfifo(fifo)
            os.chmod(fifo, 0o666)
        env.runs[name] = rd
    env.include = os.path.join(env.dir, "list.inc")
    write(env.include, 'alice, "|%s/capture list"\n' % env.bin)
    env.include_uid = 0
    if ROOT:
        env.include_uid = pwd.getpwnam("daemon").pw_uid
        os.chown(env.include, env.include_uid, -1)
    env.add_aliases("\n".join([
        'pipe: "|%s/capture pipe"' % env.bin,
        'tempfail: |%s/exit75' % env.bin,
        'fail: |%s/fail1' % env.bin,
        'slow: |%s/slow' % env.bin,
        'log: %s/file.mbox' % env.out,
        'link: %s/link.mbox' % env.out,
        'open: %s/open.mbox' % env.out,
        'md: %s/md/' % env.out,
        'devnull: /dev/null',
        'stuck: |%s/stuck' % env.bin,
        'list: :include:%s' % env.include] +
        ['%s: %s' % (name, ", ".join('"|%s/block %s %d"' % (env.bin, rd, n)
                                      for n in range(1, PROCS_MAX + 2)))
         for name, rd in sorted(env.runs.items())] + [""]))
    return env


def message(subject, body=b"Hello,\r\nFrom the start of a line\r\nbye\r\n"):
    return (b"From: Sender <sender@example.test>\r\n"
            b"To: someone@example.test\r\nSubject: " + subject.encode() +
            b"\r\n\r\n" + body)


def send(d, rcpt, subject, **kw):
    return smtp_send(d, [rcpt], message(subject, **kw), "sender@example.test")


def wait_file(path, timeout=15.0):
    return wait_for(lambda: os.path.exists(path), timeout)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def env_of(path):
    return dict(line.split("=", 1) for line in
                read(path).decode().splitlines() if "=" in line)


def stored_head(rcpt):
    """What every local delivery puts on top (as bytes, LF)."""
    return (b"Return-Path: <sender@example.test>\nDelivered-To: " +
            rcpt.encode() + b"\n")


def check_body(got, rcpt, subject, name):
    """got: From_ line (or not), our header lines, Received:, message."""
    want = message(subject).replace(b"\r\n", b"\n")
    head = stored_head(rcpt)
    t.ok(got.startswith(head), "%s: Return-Path:, Delivered-To: %s on top" %
         (name, rcpt))
    rest = got[len(head):]
    r = re.match(rb"Received: from client\.test \(\[127\.0\.0\.1\]\)\n\t"
                 rb"by test\.example\.org \(loft\) with E?SMTP id "
                 rb"[0-9A-Z]{17}[^\n]*\n(?:\t[^\n]*\n)*", rest)
    if t.ok(r is not None, "%s: then loftd's Received: line" % name):
        t.eq(rest[r.end():], want, "%s: then the message with LF line ends"
             % name)


def nobody_uid():
    return pwd.getpwnam("nobody").pw_uid


def test_command(d, env):
    qid = send(d, "pipe@example.test", "to a pipe")
    t.ok(wait_gone(d, qid), "|command: delivered, the message leaves the "
         "queue")
    msg = os.path.join(env.out, "pipe.msg")
    t.ok(wait_file(os.path.join(env.out, "pipe.id")), "  the command ran")
    got = read(msg)
    m = re.match(rb"From sender@example\.test [A-Z][a-z]{2} [A-Z][a-z]{2} "
                 rb"[ \d]\d \d\d:\d\d:\d\d \d{4}\n", got)
    if t.ok(m is not None, "  standard input starts with a From_ line, as "
            "Postfix's local(8) writes one (%r)" % got[:60]):
        check_body(got[m.end():], "pipe@example.test", "to a pipe", "  stdin")
    e = env_of(os.path.join(env.out, "pipe.env"))
    want = {"SENDER": "sender@example.test",
            "RECIPIENT": "pipe@example.test",
            "ORIGINAL_RECIPIENT": "pipe@example.test",
            "LOCAL": "pipe", "DOMAIN": "example.test",
            "PATH": "/usr/bin:/bin"}
    t.eq({k: e.get(k) for k in want}, want, "  environment: SENDER, "
         "RECIPIENT, ORIGINAL_RECIPIENT, LOCAL, DOMAIN, PATH")
    t.ok("EXTENSION" not in e, "  no EXTENSION without one")
    extra = set(e) - set(want) - {"HOME", "USER", "LOGNAME", "PWD",
                                  "SHLVL", "_", "OLDPWD"}
    t.eq(sorted(extra), [], "  nothing else from loftd's environment")
    if ROOT:
        t.eq(read(os.path.join(env.out, "pipe.id")).strip(),
             str(nobody_uid()).encode(), "  ran as default_privs (nobody): "
             "the alias database is root's")
        t.eq((e.get("USER"), e.get("HOME")),
             ("nobody", pwd.getpwnam("nobody").pw_dir), "  USER and HOME "
             "of default_privs")
        t.eq(os.stat(msg).st_uid, nobody_uid(), "  its file is nobody's")
    t.ok(d.wait_log(r"%s: to=<pipe@example\.test>, relay=local, "
                    r"delay=\d+\.\d\d, dsn=2\.0\.0, status=sent \(delivered "
                    r"to command: %s/capture pipe\)" %
                    (qid, re.escape(env.bin))),
         "  log: to=<pipe@...>, relay=local, status=sent (delivered to "
         "command: ...)")
    for name in ("pipe.id", "pipe.env", "pipe.msg"):
        os.unlink(os.path.join(env.out, name))
    qid = send(d, "Pipe+Tag@example.test", "with extension")
    t.ok(wait_gone(d, qid) and wait_file(os.path.join(env.out, "pipe.id")),
         "pipe+tag: the alias without its extension")
    e = env_of(os.path.join(env.out, "pipe.env"))
    t.eq((e.get("RECIPIENT"), e.get("LOCAL"), e.get("EXTENSION")),
         ("Pipe+Tag@example.test", "pipe+tag", "tag"),
         "  RECIPIENT as given, LOCAL folded, EXTENSION=tag")


def test_tempfail(d, env):
    qid = send(d, "tempfail@example.test", "exit 75")
    t.ok(d.wait_log(r"%s: to=<tempfail@example\.test>, relay=local, .*"
                    r"dsn=4\.3\.0, status=deferred \(temporary failure\. "
                    r"Command output: try later\)" % qid),
         "exit 75 (EX_TEMPFAIL): deferred, 4.3.0, with the output")
    time.sleep(0.3)
    t.ok(qid in d.queue_ids(), "  still queued")
    r = subprocess.run([os.path.join(SBINDIR, "mailq") if SBINDIR else
                        "mailq", "-c", env.conf], capture_output=True)
    out = r.stdout.decode()
    t.ok(r.returncode == 0 and qid in out and "temporary failure" in out,
         "  mailq shows it with the reason")


def bounces(d, subject, timeout=15.0):
    return wait_for(lambda: [m for m in pop3_all(d, "sender")
                             if b"Subject: " + subject.encode() in m and
                             b"MAILER-DAEMON" in m.upper()], timeout, 0.1)


def test_fail(d, env):
    qid = send(d, "fail@example.test", "exit 1")
    t.ok(d.wait_log(r'%s: to=<fail@example\.test>, relay=local, .*'
                    r'dsn=5\.3\.0, status=bounced \(Command died with status '
                    r'1: "%s/fail1"\. Command output: no such list here\)' %
                    (qid, re.escape(env.bin))),
         "exit 1: bounced, 5.3.0, the first output line (standard error) "
         "quoted")
    got = bounces(d, "exit 1")
    t.ok(len(got) == 1 and b"Command died with status 1" in got[0] and
         b"no such list here" in got[0] and b"second line" not in got[0],
         "  a DSN to the sender quotes it")
    t.ok(wait_gone(d, qid), "  the message leaves the queue")


def test_timeout(d, env):
    qid = send(d, "slow@example.test", "too slow")
    slow = os.path.join(env.bin, "slow")
    procs = wait_for(lambda: [p for p in d.processes()
                              if slow in p["cmdline"]], 10.0)
    if t.ok(procs, "the slow command runs, a descendant of loftd"):
        st = procs[0]["status"]
        t.eq(st.get("NoNewPrivs"), "1", "  with no_new_privs")
        if ROOT:
            t.eq(procs[0]["uid"][:3], (nobody_uid(),) * 3,
                 "  as default_privs, for good")
    t.ok(d.wait_log(r'%s: to=<slow@example\.test>, relay=local, .*'
                    r'dsn=5\.3\.0, status=bounced \(Command time limit '
                    r'exceeded: "%s"\)' % (qid, re.escape(slow)),
                    timeout=LIMIT + 15),
         "command_time_limit %ds: killed and bounced, as Postfix" % LIMIT)
    time.sleep(0.3)
    left = [p for p in d.processes() if slow in p["cmdline"] or
            p["cmdline"] == "sleep 37"]
    t.eq(left, [], "  the command and what it started are gone")


def mbox_messages(data):
    return [m for m in re.split(rb"(?:^|\n\n)(?=From )", data) if m]


def test_file(d, env):
    path = os.path.join(env.out, "file.mbox")
    q1 = send(d, "log@example.test", "file one")
    t.ok(wait_gone(d, q1), "/file: delivered")
    q2 = send(d, "log@example.test", "file two")
    t.ok(wait_gone(d, q2), "  a second message too")
    data = read(path)
    msgs = mbox_messages(data)
    t.eq(len(msgs), 2, "  two messages in the mbox, the second appended")
    for m, subject in zip(msgs, ("file one", "file two")):
        fl = re.match(rb"From sender@example\.test [^\n]+\n", m)
        if t.ok(fl is not None, "  %s: a From_ line" % subject):
            body = m[fl.end():]
            t.ok(body.startswith(stored_head("log@example.test")),
                 "  %s: Return-Path:, Delivered-To:" % subject)
            t.ok(b"\n>From the start of a line\n" in body and
                 b"\r" not in body,
                 "  %s: From quoted as >From, LF line ends" % subject)
    t.ok(data.endswith(b"bye\n\n"), "  each ends with the empty separator")
    st = os.stat(path)
    t.eq(stat.S_IMODE(st.st_mode), 0o600, "  created mode 0600")
    if ROOT:
        t.eq(st.st_uid, nobody_uid(), "  by default_privs")
    t.ok(d.wait_log(r"%s: to=<log@example\.test>, relay=local, .*"
                    r"dsn=2\.0\.0, status=sent \(delivered to file: %s\)" %
                    (q2, re.escape(path))),
         "  log: status=sent (delivered to file: ...)")


def test_file_refused(d, env):
    target = os.path.join(env.out, "target")
    write(target, "", 0o666)
    os.symlink(target, os.path.join(env.out, "link.mbox"))
    qid = send(d, "link@example.test", "via a link")
    t.ok(d.wait_log(r"%s: to=<link@example\.test>, relay=local, .*"
                    r"dsn=5\.2\.0, status=bounced \(cannot append message "
                    r"to file %s/link\.mbox: is a symbolic link\)" %
                    (qid, re.escape(env.out))),
         "/file that is a symbolic link: bounced, 5.2.0, said why")
    t.eq(read(target), b"", "  the file it points to is untouched")
    t.ok(len(bounces(d, "via a link")) == 1, "  the sender gets a DSN")
    open_mbox = os.path.join(env.out, "open.mbox")
    write(open_mbox, "", 0o666)
    os.chmod(open_mbox, 0o666)
    qid = send(d, "open@example.test", "world writable")
    t.ok(d.wait_log(r"%s: to=<open@example\.test>, .*dsn=5\.2\.0, "
                    r"status=bounced \(cannot append message to file "
                    r"%s: writable by others\)" % (qid, re.escape(open_mbox))),
         "/file writable by others: bounced, said why")
    t.eq(read(open_mbox), b"", "  and left as it was")


def test_devnull_maildir(d, env):
    qid = send(d, "devnull@example.test", "into the void")
    t.ok(d.wait_log(r"%s: to=<devnull@example\.test>, .*status=sent "
                    r"\(delivered to file: /dev/null\)" % qid),
         "/dev/null: delivered to file: /dev/null")
    qid = send(d, "md@example.test", "to a maildir")
    t.ok(wait_gone(d, qid), "/dir/: delivered")
    new = os.path.join(env.out, "md", "new")
    names = os.listdir(new) if os.path.isdir(new) else []
    t.eq(len(names), 1, "  one file in dir/new/")
    if names:
        check_body(read(os.path.join(new, names[0])), "md@example.test",
                   "to a maildir", "  the Maildir file")


def test_include(d, env):
    qid = send(d, "list@example.test", "to the list")
    t.ok(wait_gone(d, qid), ":include: list with alice and a command: "
         "delivered")
    t.ok(any(b"Subject: to the list" in m for m in pop3_all(d, "alice")),
         "  alice has it")
    t.ok(wait_file(os.path.join(env.out, "list.id")), "  the command ran")
    got = read(os.path.join(env.out, "list.msg"))
    t.ok(stored_head("list@example.test") in got.split(b"\n", 1)[1][:200],
         "  with Delivered-To: list@example.test")
    e = env_of(os.path.join(env.out, "list.env"))
    t.eq(e.get("RECIPIENT"), "list@example.test", "  RECIPIENT is the list")
    if ROOT:
        t.eq(read(os.path.join(env.out, "list.id")).strip(),
             str(env.include_uid).encode(),
             "  ran as the include file's owner (daemon), not "
             "default_privs")
    t.ok(d.wait_log(r"%s: to=<list@example\.test>, relay=local, .*"
                    r"status=sent \(delivered to command: %s/capture list\)"
                    % (qid, re.escape(env.bin))),
         "  log: delivered to command")


def gone(pid):
    """pid has ended (no such process, or a zombie)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def test_stuck(d, env):
    pids = os.path.join(env.out, "stuck.pids")
    qid = send(d, "stuck@example.test", "stuck")
    t.ok(wait_file(pids), "a command that stops its delivery process "
         "runs")
    sh, child, sid = [int(x) for x in read(pids).split()]
    t.ok(sid not in (sh, d.proc.pid), "  the delivery process leads a "
         "session of its own (%d)" % sid)
    t.ok(d.wait_log(r"%s: to=<stuck@example\.test>, relay=local, .*"
                    r"dsn=4\.3\.0, status=deferred \(local delivery process "
                    r"killed: it did not end in time\)" % qid,
                    timeout=LIMIT + GRACE + 15),
         "command_time_limit %ds + grace %ds: the master's timer kills it, "
         "deferred 4.3.0" % (LIMIT, GRACE))
    t.ok(re.search(r"local delivery process %d for %s/stuck did not end "
                   r"in time: killed, with every process of its session" %
                   (sid, re.escape(env.bin)), d.log()),
         "  logged as a warning")
    t.ok(wait_for(lambda: all(gone(p) for p in (sid, sh, child))),
         "  the delivery process, the command (SIGTERM ignored, a process "
         "group of its own) and its child are all gone")
    t.ok(qid in d.queue_ids(), "  the message stays queued")


def lines(path):
    return [line.split() for line in read(path).decode().splitlines()]


def release(rd, n, timeout=15.0):
    """Let block N (reading DIR/fifo.N) go on: open the FIFO once it has
    its reader."""
    path = os.path.join(rd, "fifo.%d" % n)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as e:
            if e.errno != errno.ENXIO or time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
    os.write(fd, b"go\n")
    os.close(fd)
    return True


def start_many(d, env, name):
    """Send to alias name (17 blocks); wait until the 17th is logged
    waiting and 16 have started. Returns (qid, started lines, the waiting
    N, the processes running then)."""
    rd = env.runs[name]
    mark = d.mark()
    qid = send(d, "%s@example.test" % name, name)
    m = d.wait_log(r"%s: command %s/block %s (\d+) waits \((\d+) local "
                   r"delivery processes running" %
                   (qid, re.escape(env.bin), re.escape(rd)), since=mark,
                   timeout=20)
    started = os.path.join(rd, "started")
    got = wait_for(lambda: len(lines(started)) >= PROCS_MAX and
                   lines(started))
    return (qid, got or [], int(m.group(1)) if m else None,
            int(m.group(2)) if m else None)


def test_limit(d, env):
    rd = env.runs["many1"]
    mark = d.mark()
    qid, started, waiting, running = start_many(d, env, "many1")
    t.ok(waiting is not None, "%d commands at once: one is logged as "
         "waiting" % (PROCS_MAX + 1))
    t.eq(running, PROCS_MAX, "  while %d run" % PROCS_MAX)
    t.eq(len(started), PROCS_MAX, "  %d have started" % PROCS_MAX)
    t.ok(str(waiting) not in [s[0] for s in started],
         "  not the waiting one")
    first = int(started[0][0]) if started else 1
    t.ok(release(rd, first), "one of them is let go")
    path = os.path.join(rd, "started")
    again = wait_for(lambda: len(lines(path)) > PROCS_MAX and lines(path))
    t.eq(again[PROCS_MAX] if again else None, [str(waiting), "1"],
         "  then the waiting one starts, after it had ended (1 done)")
    t.ok(all(release(rd, n) for n in range(1, PROCS_MAX + 2)
             if n != first), "the other %d are let go" % PROCS_MAX)
    t.ok(wait_gone(d, qid), "  all delivered, the message leaves the queue")
    sent = re.findall(r"%s: to=<many1@example\.test>, relay=local, [^\n]*"
                      r"status=sent \(delivered to command: %s/block %s "
                      r"\d+\)" % (qid, re.escape(env.bin), re.escape(rd)),
                      d.log(since=mark))
    t.eq(len(sent), PROCS_MAX + 1, "  %d status=sent lines" %
         (PROCS_MAX + 1))


def block_procs(rd):
    out = []
    for p in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if "/block " + rd + " " in cmd:
            out.append(int(p))
    return out


def test_shutdown(d, env):
    rd = env.runs["many2"]
    qid, started, waiting, running = start_many(d, env, "many2")
    t.ok(waiting is not None and running == PROCS_MAX and
         len(started) == PROCS_MAX, "again %d run, one waits" % PROCS_MAX)
    mark = d.mark()
    d.signal(signal.SIGTERM)
    t.ok(d.wait_log(r"%s: to=<many2@example\.test>, relay=local, [^\n]*"
                    r"dsn=4\.3\.0, status=deferred \(mail system is shutting "
                    r"down\)" % qid, since=mark),
         "SIGTERM: the waiting one is answered at once: deferred, 4.3.0, "
         "mail system is shutting down")
    t.ok(all(release(rd, int(s[0])) for s in started),
         "the %d running are let go" % PROCS_MAX)
    t.eq(env.stop_loftd(), 0, "loftd stops cleanly (status 0) once they "
         "have ended")
    sent = re.findall(r"%s: to=<many2@example\.test>, relay=local, [^\n]*"
                      r"status=sent \(delivered to command: " % qid,
                      d.log(since=mark))
    t.eq(len(sent), PROCS_MAX, "  the %d running finished, and qmgr got "
         "each answer (status=sent)" % PROCS_MAX)
    t.ok(wait_for(lambda: not block_procs(rd)), "  none of them runs on")
    t.eq(len(lines(os.path.join(rd, "started"))), PROCS_MAX,
         "  the waiting one never started")
    t.ok(qid in d.queue_ids(), "  the message stays queued, deferred")


def main():
    env = setup()
    with open(env.conf) as f:
        base = f.read()
    # Read once by the master at its start (localcmd_init).
    os.environ["LOFT_LOCALCMD_GRACE"] = str(GRACE)
    try:
        d, up = env.start_qmgr("", pop3s=False)
    except RuntimeError as e:
        t.ok(False, "loftd starts: %s" % e)
        t.done()
    finally:
        del os.environ["LOFT_LOCALCMD_GRACE"]
    t.ok(up, "loftd started with a qmgr process")
    t.ok(re.search(r"LOFT_LOCALCMD_GRACE: local delivery processes get %d "
                   r"seconds past command_time_limit" % GRACE, d.log()),
         "  it took the grace from the environment (logged)")
    for name, fn in (("command", test_command), ("tempfail", test_tempfail),
                     ("fail", test_fail), ("timeout", test_timeout),
                     ("file", test_file), ("refused", test_file_refused),
                     ("devnull", test_devnull_maildir),
                     ("include", test_include), ("stuck", test_stuck)):
        t.guard(name, fn, d, env)
    t.eq(env.stop_loftd(), 0, "loftd stops cleanly (status 0)")
    # Again with a long limit, for commands that wait for this script.
    env.write_conf(base.replace("command_time_limit = %ds" % LIMIT,
                                "command_time_limit = %ds" % LONG_LIMIT))
    try:
        d, up = env.start_qmgr("", pop3s=False)
    except RuntimeError as e:
        t.ok(False, "loftd starts again: %s" % e)
        t.done()
    t.ok(up, "loftd started again, command_time_limit = %ds" % LONG_LIMIT)
    t.guard("limit", test_limit, d, env)
    t.guard("shutdown", test_shutdown, d, env)
    if getattr(env, "loftd", None) is not None:
        t.eq(env.stop_loftd(), 0, "loftd stops cleanly (status 0)")
    env.cleanup()
    t.done()


main()
