"""Shared helpers for loft's integration tests: TAP output, a temporary
configuration with users, and running the built programs.

Each test script is a TAP producer run by prove; LOFT_TOP (set by
`make check`) points at the build tree, else the tree this file is in."""

import atexit
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

TOP = os.environ.get("LOFT_TOP") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
# `make check` installs into a DESTDIR and points LOFT_SBINDIR there, so
# the tests run the installed programs; run by hand, the built ones.
SBINDIR = os.environ.get("LOFT_SBINDIR")
DELIVER = os.path.join(SBINDIR, "loft-deliver") if SBINDIR else \
    os.path.join(TOP, "mda", "loft-deliver")
LOFTCTL = os.path.join(SBINDIR, "loftctl") if SBINDIR else \
    os.path.join(TOP, "ctl", "loftctl")
LOFTD = os.path.join(SBINDIR, "loftd") if SBINDIR else \
    os.path.join(TOP, "server", "loftd", "loftd")


class Tap:
    """Minimal TAP producer; exit status says whether all passed."""

    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, name, todo=None):
        """todo: a known gap, said why; its failure is reported as TAP
        TODO (not counted), and prove shows it passing unexpectedly once
        the gap is closed."""
        self.n += 1
        if not cond and todo is None:
            self.failed += 1
        print("%sok %d - %s%s" % ("" if cond else "not ", self.n, name,
                                  " # TODO " + todo if todo else ""))
        sys.stdout.flush()
        return cond

    def eq(self, got, want, name, todo=None):
        """ok(got == want); says both when they differ; returns whether
        they were equal."""
        if not self.ok(got == want, name, todo):
            self.diag("got:  %r" % (got,))
            self.diag("want: %r" % (want,))
            return False
        return True

    def guard(self, name, fn, *args):
        """fn(*args); an exception it raises is one failed test named
        after name (the rest of the script goes on). Returns fn's value,
        or None."""
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001
            self.ok(False, "%s: raised %s: %s" % (name, type(e).__name__, e))
            return None

    def diag(self, msg):
        for line in str(msg).splitlines() or [""]:
            print("# " + line)

    def skip_all(self, why):
        print("1..0 # SKIP " + why)
        sys.exit(0)

    def done(self):
        print("1..%d" % self.n)
        sys.exit(1 if self.failed else 0)


class Env:
    """A temporary loft setup: config file, user database, mail storage."""

    def __init__(self, fmt="maildir", extra="", keep=False):
        # Under /tmp (or TMPDIR), not in the build tree: run as root, the
        # programs switch to an unprivileged mailbox owner, who must be able
        # to reach the mail even if the build tree sits in /root.
        self.dir = tempfile.mkdtemp(prefix="loft-test-")
        os.chmod(self.dir, 0o711)
        self.root = os.geteuid() == 0
        owner = ""
        self.owner = None
        if self.root:
            pw = pwd.getpwnam("nobody")
            self.owner = (pw.pw_uid, pw.pw_gid)
            owner = "virtual_uid = %d\nvirtual_gid = %d\n" % self.owner
        self.keep = keep or os.environ.get("LOFT_KEEP_TMP")
        self.conf = os.path.join(self.dir, "loft.conf")
        self.maillog = os.path.join(self.dir, "maillog")
        self.mail = os.path.join(self.dir, "mail")
        if fmt == "maildir":
            loc = "maildir:%s/%%u" % self.mail
        else:
            loc = "mbox:%s/%%u:INBOX=%s/%%u/INBOX" % (self.mail, self.mail)
        self.fmt = fmt
        self.owner_conf = owner
        os.makedirs(self.mail)
        self.own(self.mail)
        self.write_conf("""
user_database = %s/users
mail_location = %s
maillog_file = %s
myhostname = test.example.org
%s%s
""" % (self.dir, loc, self.maillog, owner, extra))

    def own(self, path):
        """Give path (recursively) to the mailbox owner when running as root,
        as files a user's own mail programs made would be."""
        if not self.root:
            return
        for d, dirs, files in os.walk(path):
            os.chown(d, *self.owner)
            for f in files:
                os.chown(os.path.join(d, f), *self.owner)
        if os.path.isfile(path):
            os.chown(path, *self.owner)

    def write_conf(self, text):
        with open(self.conf, "w") as f:
            f.write(text)

    def ctl(self, *args, input=None):
        return subprocess.run([LOFTCTL, "-c", self.conf] + list(args),
                              input=input, capture_output=True)

    def add_user(self, name, *opts):
        r = self.ctl("user", "add", name, *opts, input=b"secret\n")
        if r.returncode != 0:
            raise RuntimeError("user add %s: %s" % (name, r.stderr))

    def deliver(self, user, msg, *args):
        """Run loft-deliver; returns (exit status, stderr text)."""
        r = subprocess.run([DELIVER, "-c", self.conf, "-d", user] +
                           list(args), input=msg, capture_output=True)
        return r.returncode, r.stderr.decode("utf-8", "replace")

    def user_dir(self, user):
        return os.path.join(self.mail, user)

    def inbox(self, user):
        if self.fmt == "maildir":
            return self.user_dir(user)
        return os.path.join(self.user_dir(user), "INBOX")

    def maildir_files(self, user, folder=None):
        """All message files of a Maildir folder: {relative path: bytes}."""
        d = self.user_dir(user)
        if folder:
            d = os.path.join(d, "." + folder.replace("/", "."))
        return maildir_messages(d)

    def add_aliases(self, text):
        """Write text as the alias file, name it in alias_maps and run
        newaliases; RuntimeError if that fails."""
        aliases = os.path.join(self.dir, "aliases")
        with open(aliases, "w") as f:
            f.write(text)
        with open(self.conf, "a") as f:
            f.write("alias_maps = lmdb:%s\n" % aliases)
        r = self.ctl("newaliases")
        if r.returncode != 0:
            raise RuntimeError("newaliases: %s" % r.stderr)

    def log(self):
        try:
            with open(self.maillog) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def cleanup(self):
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def start_loftd(self, extra_conf="", **kw):
        """Start loftd on this Env's configuration (see Loftd); the
        daemon is self.loftd. Raises RuntimeError if it does not come up."""
        if self not in _envs:
            _envs.append(self)
        self.loftd = Loftd(self, extra_conf, **kw)
        self.loftd.start()
        return self.loftd

    def start_imap(self, extra_conf=""):
        """start_loftd with plain IMAP alone, plaintext LOGIN allowed."""
        return self.start_loftd("disable_plaintext_auth = no\n" + extra_conf,
                                pop3=False, pop3s=False, imap=True,
                                imaps=False)

    def start_qmgr(self, extra_conf="", **kw):
        """start_loftd with SMTP and the queue manager (kw as for Loftd),
        once the qmgr process runs (ok is False if it did not come up in
        10 s): (daemon, ok)."""
        d = self.start_loftd(extra_conf, smtp=True, qmgr=True, **kw)
        return d, bool(wait_for(lambda: d.role_pids("qmgr"), 10.0))

    def stop_loftd(self, timeout=40):
        """SIGTERM loftd and wait; returns its exit status (None: it had
        to be killed)."""
        d = getattr(self, "loftd", None)
        if d is None:
            return None
        self.loftd = None
        return d.stop(timeout=timeout)


def maildir_messages(path):
    """{"new/NAME" or "cur/NAME": bytes} of the messages in the Maildir
    folder path."""
    out = {}
    for sub in ("new", "cur"):
        p = os.path.join(path, sub)
        if not os.path.isdir(p):
            continue
        for name in sorted(os.listdir(p)):
            with open(os.path.join(p, name), "rb") as f:
                out[sub + "/" + name] = f.read()
    return out


def wait_for(fn, timeout=15.0, step=0.05):
    """fn() every step seconds until it is true or timeout seconds have
    passed; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


def wait_gone(d, qid, timeout=15.0):
    """Whether message qid left loftd d's queue within timeout s."""
    return wait_for(lambda: qid not in d.queue_ids(), timeout)


def need_binaries(tap):
    for p in (DELIVER, LOFTCTL):
        if not os.access(p, os.X_OK):
            tap.skip_all("%s not built" % p)


def message(subject="hello", body="Hello, world.\n", extra="", eol="\n"):
    text = ("From: Sender <sender@example.net>\nTo: alice@example.org\n"
            "Subject: %s\nMessage-ID: <%s@example.net>\n"
            "Date: Sun, 29 Nov 2026 10:00:00 +0000\n%s\n%s" %
            (subject, subject.replace(" ", "."), extra, body))
    return text.replace("\n", eol).encode()


# loftd: the daemon, run in the foreground on free loopback ports.

def free_port(host="127.0.0.1"):
    """A TCP port nobody listens on now (the kernel's pick; another
    program may take it before loftd binds, so Loftd.start retries)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def port_listening(port, host="127.0.0.1"):
    """Whether something listens on host:port, read from /proc/net/tcp so
    that asking makes no connection the daemon would have to count; falls
    back to connect() where /proc is missing."""
    want = "%s:%04X" % ("".join("%02X" % int(b) for b in reversed(host.split("."))),
                        port)
    try:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[1] == want and fields[3] == "0A":
                    return True
        return False
    except OSError:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            return False


def wait_port(port, host="127.0.0.1", timeout=15.0, proc=None):
    """Poll until host:port listens (True), the process proc exited, or
    timeout seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_listening(port, host):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def ensure_login_user(name="loft"):
    """Run as root, loftd's login processes need their system user
    (login_user: see Loftd.login_user)."""
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", name], check=True)


def make_cert(directory, cn="localhost", prefix=""):
    """A throw-away self-signed certificate valid for localhost and
    127.0.0.1 (so clients can check the name): DIR/PREFIXcert.pem and
    DIR/PREFIXkey.pem (0600). Returns (cert, key) paths."""
    cert = os.path.join(directory, prefix + "cert.pem")
    key = os.path.join(directory, prefix + "key.pem")
    old = os.umask(0o077)
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                        "-nodes", "-days", "2", "-subj", "/CN=" + cn,
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
    finally:
        os.umask(old)
    return cert, key


def cert_der(cert):
    """The DER bytes of the PEM certificate file cert."""
    with open(cert) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def tls_client_context(cafile):
    """A client context that trusts only cafile and checks the name."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


_daemons = []
_envs = []


@atexit.register
def _kill_daemons():
    """A test that dies half-way must leave no loftd running and no test
    directory behind (Env.cleanup keeps it under LOFT_KEEP_TMP)."""
    for d in list(_daemons):
        d.kill()
    for e in _envs:
        e.cleanup()


class Loftd:
    """loftd -f on env's configuration plus the daemon's part: POP3 and
    POP3S on free 127.0.0.1 ports, a fresh self-signed certificate in the
    test directory, the login chroot inside the test directory, and
    extra_conf. smtp, submission, submissions: also serve SMTP (port 25
    role), submission (587) and submission over TLS (465) on free ports
    (smtp_port, submission_port, submissions_port); the queue is DIR/queue
    (self.queue), owned by mail_owner ("loft", made if missing) when run
    as root. qmgr: deliver what is queued (queue_manager = yes); without
    it mail stays in the queue for the test to read (queue_manager =
    no). Standard error (the log under -f) goes to DIR/loftd.log.
    The daemon runs in a process group of its own, so that whatever it
    forked can be killed if a test dies."""

    def __init__(self, env, extra_conf="", pop3=True, pop3s=True, tls=True,
                 imap=False, imaps=False, smtp=False, submission=False,
                 submissions=False, qmgr=False):
        self.env = env
        self.qmgr = qmgr
        self.smtp = smtp
        self.submission = submission
        self.submissions = submissions and tls
        self.smtp_port = None
        self.submission_port = None
        self.submissions_port = None
        self.queue = os.path.join(env.dir, "queue")
        self.extra = extra_conf
        self.pop3 = pop3
        self.pop3s = pop3s and tls
        self.imap = imap
        self.imaps = imaps and tls
        self.tls = tls
        self.proc = None
        self.pop3_port = None
        self.pop3s_port = None
        self.imap_port = None
        self.imaps_port = None
        self.logfile = os.path.join(env.dir, "loftd.log")
        self.chroot = os.path.join(env.dir, "login-chroot")
        if tls:
            self.cert, self.key = make_cert(env.dir)
        else:
            self.cert = self.key = None
        with open(env.conf) as f:
            self.base_conf = f.read()

    def conf_text(self, extra=None):
        """The configuration text loftd runs with (extra replaces the
        extra_conf given at creation if not None)."""
        lines = ["", "# loftd (t/lib/loft.py)"]
        lines.append("pop3_listen = %s" % ("127.0.0.1:%d" % self.pop3_port
                                           if self.pop3 else ""))
        lines.append("pop3s_listen = %s" % ("127.0.0.1:%d" % self.pop3s_port
                                            if self.pop3s else ""))
        lines.append("imap_listen = %s" % ("127.0.0.1:%d" % self.imap_port
                                           if self.imap else ""))
        lines.append("imaps_listen = %s" % ("127.0.0.1:%d" % self.imaps_port
                                            if self.imaps else ""))
        for name in ("smtp", "submission", "submissions"):
            port = getattr(self, name + "_port")
            lines.append("%s_listen = %s" % (
                name, "127.0.0.1:%d" % port if getattr(self, name) else ""))
        lines.append("queue_directory = " + self.queue)
        lines.append("queue_manager = " + ("yes" if self.qmgr else "no"))
        if self.tls:
            lines.append("tls_cert_file = " + self.cert)
            lines.append("tls_key_file = " + self.key)
        lines.append("login_chroot = " + self.chroot)
        lines.append("shutdown_timeout = 5s")
        return (self.base_conf + "\n".join(lines) + "\n" +
                (self.extra if extra is None else extra) + "\n")

    def write_conf(self, extra=None, text=None):
        """Rewrite the configuration file (for SIGHUP tests): the daemon's
        part with extra, or the given text as it is."""
        tmp = self.env.conf + ".new"
        with open(tmp, "w") as f:
            f.write(text if text is not None else self.conf_text(extra))
        os.rename(tmp, self.env.conf)

    def login_user(self, param="login_user"):
        """login_user (or another account parameter, e.g. mail_owner) as
        the configuration resolves it (loftctl config)."""
        r = self.env.ctl("config", param)
        out = r.stdout.decode().strip()
        return out.split("=", 1)[1].strip() if "=" in out else "loft"

    def ports(self):
        return [p for p in (self.pop3_port, self.pop3s_port, self.imap_port,
                            self.imaps_port, self.smtp_port,
                            self.submission_port, self.submissions_port)
                if p]

    def start(self, tries=3):
        if not os.access(LOFTD, os.X_OK):
            raise RuntimeError("%s not built" % LOFTD)
        for _ in range(tries):
            self.pop3_port = free_port() if self.pop3 else None
            self.pop3s_port = free_port() if self.pop3s else None
            self.imap_port = free_port() if self.imap else None
            self.imaps_port = free_port() if self.imaps else None
            self.smtp_port = free_port() if self.smtp else None
            self.submission_port = free_port() if self.submission else None
            self.submissions_port = free_port() if self.submissions \
                else None
            taken = self.ports()
            if len(set(taken)) != len(taken):
                continue
            self.write_conf()
            ensure_login_user(self.login_user())
            if self.smtp or self.submission or self.submissions:
                ensure_login_user(self.login_user("mail_owner"))
            log = open(self.logfile, "ab")
            self.proc = subprocess.Popen([LOFTD, "-c", self.env.conf, "-f"],
                                         stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log,
                                         start_new_session=True)
            log.close()
            _daemons.append(self)
            if all(wait_port(p, proc=self.proc) for p in self.ports()):
                return
            self.kill()
            if "in use" not in self.log():
                break
        raise RuntimeError("loftd did not start: %s" % self.log()[-2000:])

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def hup(self):
        self.signal(signal.SIGHUP)

    def flush(self):
        """SIGUSR1: the queue manager tries deferred mail now."""
        self.signal(signal.SIGUSR1)

    def queue_ids(self):
        """IDs of the messages in the queue (names in env/)."""
        try:
            return sorted(n for n in os.listdir(os.path.join(self.queue,
                                                             "env"))
                          if len(n) == 17)
        except FileNotFoundError:
            return []

    def queue_envelope(self, qid):
        """The envelope file of qid as text, None if it is gone."""
        try:
            with open(os.path.join(self.queue, "env", qid), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return None

    def wait_queue_empty(self, timeout=15.0):
        """Poll until the queue holds no message; returns whether it
        emptied within timeout seconds."""
        deadline = time.monotonic() + timeout
        while self.queue_ids():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def role_pids(self, role):
        """Pids of the daemon's processes running -X role. A child of
        one of them with the same command line (a fork that has not
        exec'd, such as LeakSanitizer's tracer at exit) is not counted."""
        procs = [p for p in self.processes()
                 if ("-X " + role) in p["cmdline"]]
        pids = set(p["pid"] for p in procs)
        return [p["pid"] for p in procs if p["ppid"] not in pids]

    def stop(self, timeout=40):
        """SIGTERM, wait up to timeout s; returns the exit status, or None
        if it had to be killed."""
        if self.proc is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        self.kill()
        # A sanitizer report from any of loftd's processes (a sanitizer
        # build logs them to the same standard error) fails the stop.
        for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                    "runtime error:"):
            if bad in self.log():
                sys.stdout.write("# loftd log holds %r\n" % bad)
                return -1
        return rc

    def kill(self):
        """SIGKILL the daemon's process group (only ours: its id is the
        pid of the loftd we started) and reap the master."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self in _daemons:
            _daemons.remove(self)

    def _logs(self):
        try:
            with open(self.logfile, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            text = ""
        return text, self.env.log()

    def mark(self):
        """A place in the logs: log(since=mark()) is what came after."""
        return tuple(len(x) for x in self._logs())

    def log(self, since=(0, 0)):
        """What the daemon logged (its standard error), and the maillog
        file in case the daemon writes there too; since: a mark()."""
        err, maillog = self._logs()
        return err[since[0]:] + maillog[since[1]:]

    def wait_log(self, pattern, timeout=10.0, since=(0, 0)):
        """Poll the log (after the mark since) until the regular
        expression pattern matches; returns the match or None."""
        import re
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.log(since))
            if m or time.monotonic() >= deadline:
                return m
            time.sleep(0.05)

    def processes(self):
        """Every live process of the daemon (the master and what it
        forked, found by parent links in /proc): list of dicts with pid,
        ppid, uid and gid (real, effective, saved, fs), name, cmdline,
        root (the process's root directory, readable when we are root),
        state, status (all of /proc/PID/status)."""
        procs = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/status" % d) as f:
                    st = dict(line.rstrip("\n").split(":\t", 1)
                              for line in f if ":\t" in line)
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            try:
                root = os.readlink("/proc/%s/root" % d)
            except OSError:
                root = None
            procs[int(d)] = {
                "pid": int(d), "ppid": int(st.get("PPid", "0")),
                "uid": tuple(int(x) for x in st.get("Uid", "-1 -1 -1 -1").split()),
                "gid": tuple(int(x) for x in st.get("Gid", "-1 -1 -1 -1").split()),
                "name": st.get("Name", ""), "cmdline": cmd.strip(), "root": root,
                "state": st.get("State", ""), "status": st}
        if self.proc is None or self.proc.pid not in procs:
            return []
        out, stack = [], [self.proc.pid]
        while stack:
            pid = stack.pop()
            if procs[pid]["state"].startswith("Z"):
                continue
            out.append(procs[pid])
            stack.extend(p for p in procs if procs[p]["ppid"] == pid)
        return out

    def socket_owners(self, client_sock):
        """Pids of the daemon's processes holding the server end of the
        TCP connection client_sock (matched through /proc/net/tcp)."""
        lip, lport = client_sock.getsockname()[:2]
        rip, rport = client_sock.getpeername()[:2]

        def hexaddr(ip, port):
            return "%s:%04X" % ("".join("%02X" % int(b) for b in
                                        reversed(ip.split("."))), port)
        inodes = set()
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fl = line.split()
                if fl[1] == hexaddr(rip, rport) and fl[2] == hexaddr(lip, lport):
                    inodes.add("socket:[%s]" % fl[9])
        owners = []
        for p in self.processes():
            fd_dir = "/proc/%d/fd" % p["pid"]
            try:
                fds = os.listdir(fd_dir)
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(os.path.join(fd_dir, fd)) in inodes:
                        owners.append(p)
                        break
                except OSError:
                    pass
        return owners


def need_loftd(tap):
    """Skip the whole test unless loftd, loft-deliver and loftctl exist."""
    need_binaries(tap)
    if not os.access(LOFTD, os.X_OK):
        tap.skip_all("%s not built" % LOFTD)


class Pop3:
    """A raw POP3 client on a socket, for byte-exact checks and for
    what poplib refuses to send. Every read has a timeout (socket.timeout
    is raised), so a server bug cannot hang the test. Lines are bytes
    without their CRLF; line() returns None at end of file."""

    def __init__(self, port, host="127.0.0.1", ctx=None, source=None,
                 timeout=10.0, greet=True, rcvbuf=None):
        if rcvbuf is None:
            self.sock = socket.create_connection(
                (host, port), timeout=timeout,
                source_address=(source, 0) if source else None)
        else:
            # A small receive window, set before connect so that it holds:
            # a client that reads slowly, for flow-control tests.
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            if source:
                self.sock.bind((source, 0))
            self.sock.connect((host, port))
        self.raw_sock = self.sock
        if ctx is not None:
            self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""
        self.eof = False
        self.greeting = self.line() if greet else None

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
        self.buf += data
        return bool(data)

    def line(self):
        while b"\r\n" not in self.buf:
            if self.eof or not self._fill():
                if self.buf:
                    rest, self.buf = self.buf, b""
                    return rest
                return None
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def text(self):
        """line() as text (latin-1), "" at end of file."""
        ln = self.line()
        return "" if ln is None else ln.decode("latin-1")

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def cmd(self, command):
        """Send one command line; return the first line of the answer."""
        self.send(command + "\r\n" if isinstance(command, str)
                  else command + b"\r\n")
        return self.text()

    def multi_raw(self):
        """The rest of a multi-line answer, as sent, up to and including
        the terminating ".\\r\\n"; None if the connection ended first."""
        start = 0
        while True:
            if self.buf.startswith(b".\r\n"):
                i = 0
            else:
                i = self.buf.find(b"\r\n.\r\n", max(0, start - 4))
                if i >= 0:
                    i += 2
            if i >= 0:
                out, self.buf = self.buf[:i + 3], self.buf[i + 3:]
                return out
            start = len(self.buf)
            if self.eof or not self._fill():
                return None

    def multi(self):
        """The rest of a multi-line answer as lines, dot-unstuffed."""
        raw = self.multi_raw()
        if raw is None:
            return None
        return [ln[1:] if ln.startswith(b".") else ln
                for ln in raw[:-3].split(b"\r\n")[:-1]]

    def login(self, user="demo", password="secret"):
        """USER/PASS; returns the answer to PASS (or USER's -ERR)."""
        r = self.cmd("USER " + user)
        if not r.startswith("+OK"):
            return r
        return self.cmd("PASS " + password)

    def starttls(self, ctx):
        """STLS; returns its answer; on +OK the handshake is done. Any
        byte the server sent in plaintext after the +OK line stays in
        self.leftover (it must be empty)."""
        r = self.cmd("STLS")
        self.leftover = self.buf
        if r.startswith("+OK") and not self.buf:
            self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        return r

    def wait_closed(self, timeout=10.0):
        """Read (and drop) until end of file; True if the server closed
        within timeout seconds."""
        deadline = time.monotonic() + timeout
        self.buf = b""
        try:
            while not self.eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                if not self._fill():
                    return True
                self.buf = b""
        except socket.timeout:
            return False
        except (ConnectionResetError, ssl.SSLError, OSError):
            return True
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Smtp:
    """A raw SMTP client on a socket, for byte-exact checks and for what
    smtplib refuses to send (bare LF, pipelined plaintext after
    STARTTLS). reply() returns (code, [text lines]); code 0 at end of
    file. Every read has a timeout."""

    def __init__(self, port, host="127.0.0.1", ctx=None, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if ctx is not None:
            self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""
        self.greeting = self.reply()

    def line(self):
        while b"\r\n" not in self.buf:
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                data = b""
            if not data:
                return None
            self.buf += data
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def reply(self):
        lines = []
        while True:
            ln = self.line()
            if ln is None:
                return 0, lines
            lines.append(ln[4:].decode("latin-1"))
            if ln[3:4] != b"-":
                return int(ln[:3]), lines

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def cmd(self, line):
        """Send one command line; (code, first line of text)."""
        self.send(line + "\r\n")
        code, lines = self.reply()
        return code, lines[0] if lines else ""

    def starttls(self, ctx):
        code, text = self.cmd("STARTTLS")
        self.leftover = self.buf
        if code == 220 and not self.buf:
            self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        return code, text

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# Clients for the daemon's tests: what a user sends and reads back.

def smtp_send(d, rcpts, msg, sender, port=None):
    """One message over SMTP to d (its smtp_port unless port); every RCPT
    must get 250; returns the queue ID of the 250 after DATA."""
    import re
    import smtplib
    s = smtplib.SMTP("127.0.0.1", port or d.smtp_port, timeout=10)
    s.ehlo("client.test")
    s.mail(sender)
    for r in rcpts:
        code, text = s.rcpt(r)
        if code != 250:
            raise RuntimeError("RCPT %s: %d %s" % (r, code, text))
    code, text = s.data(msg)
    s.quit()
    m = re.search(rb"queued as ([0-9A-Z]{17})", text)
    if code != 250 or m is None:
        raise RuntimeError("DATA: %d %s" % (code, text))
    return m.group(1).decode()


def pop3_all(d, user, password="secret"):
    """Every message of user's INBOX over POP3, as sent (CRLF lines)."""
    import poplib
    p = poplib.POP3("127.0.0.1", d.pop3_port, timeout=10)
    p.user(user)
    p.pass_(password)
    out = [b"\r\n".join(p.retr(i)[1]) + b"\r\n"
           for i in range(1, len(p.list()[1]) + 1)]
    p.quit()
    return out


def imap_all(d, user, password="secret"):
    """Every message of user's INBOX over IMAP (BODY.PEEK[]), read-only."""
    import imaplib
    m = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=10)
    m.login(user, password)
    m.select("INBOX", readonly=True)
    typ, data = m.fetch("1:*", "(BODY.PEEK[])")
    m.logout()
    if typ != "OK" or data == [None]:
        return []
    return [part[1] for part in data if isinstance(part, tuple)]
