#!/usr/bin/env python3
# mbox_lock_procmail.t: loft's mbox locks (lib/lock.c) interoperate with
# procmail's. t/helpers/lock_hold takes loft's lock exactly as delivery
# does and keeps it until told to go on; procmail must wait for it, and
# loft must wait for procmail. Only the order of events is asserted, never
# how long anything took: waits poll for an event, with a generous
# deadline that only guards against a hang.
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

TOP = os.environ.get("LOFT_TOP") or os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))
DEADLINE = 60.0

n_tests = 0
n_failed = 0


def ok(cond, name):
    global n_tests, n_failed
    n_tests += 1
    if not cond:
        n_failed += 1
    print("%sok %d - %s" % ("" if cond else "not ", n_tests, name))
    sys.stdout.flush()
    return cond


def diag(text):
    for line in str(text).splitlines():
        print("# " + line)


def wait_for(cond, what):
    """Poll cond until true; False if the deadline passes (a hang)."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    diag("gave up waiting for " + what)
    return False


def helper_path(tmp):
    """The built helper, or one compiled here from the sources."""
    built = os.path.join(TOP, "t", "helpers", "lock_hold")
    if os.access(built, os.X_OK):
        return built
    out = os.path.join(tmp, "lock_hold")
    srcs = ["t/helpers/lock_hold.c", "lib/lock.c", "lib/mbox.c",
            "lib/log.c", "lib/xmalloc.c", "lib/buf.c",
            "lib/compat/strlcpy.c"]
    cmd = [os.environ.get("CC", "cc"), "-std=gnu11", "-I" + TOP,
           "-I" + os.path.join(TOP, "lib"), "-o", out] + \
        [os.path.join(TOP, s) for s in srcs]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print("Bail out! cannot build lock_hold: " + r.stderr)
        sys.exit(255)
    return out


def parse_mboxrd(data):
    """[(from_line, message)] of an mboxrd file, un-escaped."""
    starts = [m.start() + (0 if m.group(0).startswith("From") else 2)
              for m in re.finditer(r"(?:\AFrom |\n\nFrom )", data)]
    msgs = []
    for i, s in enumerate(starts):
        end = starts[i + 1] - 1 if i + 1 < len(starts) else len(data)
        if i + 1 == len(starts) and data.endswith("\n\n"):
            end -= 1
        nl = data.index("\n", s)
        body = re.sub(r"(?m)^>(>*From )", r"\1", data[nl + 1:end])
        msgs.append((data[s:nl], body))
    return msgs


def leftovers(d):
    return sorted(f for f in os.listdir(d) if f.startswith("the.mbox."))


class Env:
    def __init__(self, tmp, helper):
        self.tmp = tmp
        self.helper = helper
        self.mbox = os.path.join(tmp, "the.mbox")
        self.lock = self.mbox + ".lock"
        self.log = os.path.join(tmp, "procmail.log")
        self.rc = os.path.join(tmp, "rc")
        self.pmsg = os.path.join(tmp, "pmsg")
        self.hmsg = os.path.join(tmp, "hmsg")
        with open(self.pmsg, "w") as f:
            # No ">From" line: procmail quotes mboxo-style (only "From "),
            # so such a line would read back with one '>' less; see
            # test_procmail_quoting.
            f.write("From: p@example.org\nSubject: from procmail\n\n"
                    "From the procmail side\nbye\n")
        with open(self.hmsg, "w") as f:
            f.write("From: h@example.org\nSubject: from loft\n\n"
                    "From the loft side\nend\n")

    def reset(self, recipe=None):
        for f in (self.mbox, self.log):
            if os.path.exists(f):
                os.unlink(f)
        # LOCKSLEEP=1: procmail retries a busy dotlock every second.
        with open(self.rc, "w") as f:
            f.write("SHELL=/bin/sh\nLOCKSLEEP=1\nVERBOSE=on\n"
                    "LOGFILE=%s\nDEFAULT=%s\n" % (self.log, self.mbox))
            f.write(recipe if recipe is not None else
                    ":0:\n%s\n" % self.mbox)
        os.chmod(self.rc, 0o644)

    def procmail(self):
        stdin = open(self.pmsg, "rb")
        p = subprocess.Popen(["procmail", "-f", "p@example.org", "-m",
                              self.rc], stdin=stdin,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        stdin.close()
        return p

    def hold(self, methods, attempts="5", delay="10", msg=True):
        args = [self.helper, self.mbox, methods, attempts, delay]
        if msg:
            args.append(self.hmsg)
        return subprocess.Popen(args, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)

    def try_lock(self, attempts="3"):
        return subprocess.run([self.helper, self.mbox, "fcntl,dotlock",
                               attempts, "10"], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True)

    def log_text(self):
        try:
            with open(self.log) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def mbox_text(self):
        try:
            with open(self.mbox, newline="") as f:
                return f.read()
        except FileNotFoundError:
            return ""


def blocked_on_fcntl(pid):
    """Whether pid waits for a POSIX lock (a "->" line in /proc/locks)."""
    with open("/proc/locks") as f:
        return any("->" in l and l.split()[5] == str(pid) for l in f)


def check_both_delivered(env, what):
    msgs = parse_mboxrd(env.mbox_text())
    ok(len(msgs) == 2, "%s: two messages in the mbox" % what)
    if len(msgs) != 2:
        diag(env.mbox_text())
        return
    ok(msgs[0][0].startswith("From h") and
       msgs[1][0].startswith("From p@example.org "),
       "%s: loft's message first, procmail's after it" % what)
    with open(env.hmsg) as f:
        ok(msgs[0][1] == f.read(), "%s: loft's message intact" % what)
    with open(env.pmsg) as f:
        ok(msgs[1][1] == f.read(), "%s: procmail's message intact" % what)
    ok(leftovers(env.tmp) == [], "%s: no lock or temp file left: %s"
       % (what, leftovers(env.tmp)))


def finish_holder(h):
    out, _ = h.communicate("go\n", timeout=DEADLINE)
    return h.returncode == 0 and "released" in out


def test_procmail_waits_for_dotlock(env):
    """loft holds fcntl + dotlock; procmail (dotlock first) must wait."""
    env.reset()
    h = env.hold("fcntl,dotlock")
    ok(h.stdout.readline().strip() == "locked", "loft holds the lock")
    r = subprocess.run(["lockfile", "-r0", env.lock], capture_output=True)
    ok(r.returncode != 0, "procmail's lockfile(1) sees loft's dotlock")
    p = env.procmail()
    # procmail logs "Locking" for every try; a second one means that the
    # first was refused.
    ok(wait_for(lambda: env.log_text().count("Locking") >= 2 or
                p.poll() is not None, "procmail to retry the dotlock"),
       "procmail tried the dotlock")
    ok(p.poll() is None and "from procmail" not in env.mbox_text(),
       "procmail is waiting and has written nothing")
    ok(finish_holder(h), "loft appended and released")
    p.wait(timeout=DEADLINE)
    ok(p.returncode == 0, "procmail delivered after the release")
    check_both_delivered(env, "dotlock")


def test_procmail_waits_for_fcntl(env):
    """loft holds only fcntl; procmail gets the dotlock, then must wait in
    F_SETLKW for the kernel lock."""
    env.reset()
    h = env.hold("fcntl")
    ok(h.stdout.readline().strip() == "locked", "loft holds fcntl")
    p = env.procmail()
    ok(wait_for(lambda: blocked_on_fcntl(p.pid) or p.poll() is not None,
                "procmail to block on fcntl"),
       "procmail blocks on loft's fcntl lock (/proc/locks)")
    ok(p.poll() is None and "from procmail" not in env.mbox_text(),
       "procmail has written nothing")
    ok(finish_holder(h), "loft appended and released fcntl")
    p.wait(timeout=DEADLINE)
    ok(p.returncode == 0, "procmail delivered after the release")
    check_both_delivered(env, "fcntl")


def test_loft_waits_for_lockfile(env):
    """procmail's lockfile(1) holds the.mbox.lock: loft times out."""
    env.reset()
    r = subprocess.run(["lockfile", "-r0", env.lock], capture_output=True)
    ok(r.returncode == 0, "lockfile(1) took the.mbox.lock")
    r = env.try_lock()
    ok(r.returncode == 2 and r.stdout.startswith("timeout: dotlock"),
       "loft's acquire returns LOCK_TIMEOUT: " + r.stdout.strip())
    ok(os.path.exists(env.lock), "lockfile's dotlock left alone")
    os.unlink(env.lock)
    r = env.try_lock()
    ok(r.returncode == 0 and "released" in r.stdout,
       "loft locks once lockfile's dotlock is gone")


def test_loft_waits_for_procmail(env):
    """procmail holds the.mbox.lock while a recipe runs: loft times out,
    then gets the lock after procmail is done."""
    go = os.path.join(env.tmp, "go")
    inside = os.path.join(env.tmp, "inside")
    env.reset(":0 w: %s\n| touch %s; while [ ! -e %s ]; do sleep 0.02; "
              "done; cat >/dev/null\n" % (env.lock, inside, go))
    p = env.procmail()
    ok(wait_for(lambda: os.path.exists(inside) or p.poll() is not None,
                "procmail to run its recipe"),
       "procmail runs a recipe holding the.mbox.lock")
    ok(os.path.exists(env.lock), "the.mbox.lock is there")
    r = env.try_lock()
    ok(r.returncode == 2 and r.stdout.startswith("timeout: dotlock"),
       "loft's acquire times out while procmail holds it: "
       + r.stdout.strip())
    open(go, "w").close()
    p.wait(timeout=DEADLINE)
    ok(p.returncode == 0 and not os.path.exists(env.lock),
       "procmail finished and removed its lock")
    r = env.try_lock()
    ok(r.returncode == 0, "loft locks after procmail")
    for f in (go, inside):
        os.unlink(f)


def test_procmail_quoting(env):
    """Record how procmail quotes, since loft reads its files as mboxrd:
    "From " gets a '>', ">From " does not (mboxo), so that line is the one
    a procmail-written mbox cannot give back exactly."""
    env.reset()
    p = subprocess.run(["procmail", "-f", "p@example.org", "-m", env.rc],
                       input=b"S: q\n\nFrom a\n>From b\n",
                       capture_output=True)
    text = env.mbox_text()
    ok(p.returncode == 0 and text.endswith("\nS: q\n\n>From a\n>From b\n\n"),
       "procmail quotes mboxo-style")
    msgs = parse_mboxrd(text)
    ok(len(msgs) == 1 and msgs[0][1] == "S: q\n\nFrom a\nFrom b\n",
       "read as mboxrd, procmail's '>From b' loses its '>'")


def main():
    if shutil.which("procmail") is None or shutil.which("lockfile") is None:
        print("1..0 # SKIP procmail is not installed")
        return 0
    tmp = tempfile.mkdtemp(prefix="loft-pm-")
    try:
        env = Env(tmp, helper_path(tmp))
        test_procmail_waits_for_dotlock(env)
        test_procmail_waits_for_fcntl(env)
        test_loft_waits_for_lockfile(env)
        test_loft_waits_for_procmail(env)
        test_procmail_quoting(env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("1..%d" % n_tests)
    return 1 if n_failed else 0


if __name__ == "__main__":
    sys.exit(main())
