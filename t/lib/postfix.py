"""A private Postfix instance for loft's integration tests: its own
configuration directory, queue and data directories and log file under a
test directory, an SMTP listener on a loopback port, no chroot; started
and stopped with `postfix -c DIR`. The installed Postfix is only read
(its programs and /etc/postfix/master.cf): nothing of the machine's own
configuration changes, and no system service runs.

Needs root (Postfix's master runs as root) and the postfix package;
available() says why not when one is missing."""

import atexit
import os
import re
import shutil
import subprocess
import time

POSTFIX = "/usr/sbin/postfix"
# Postfix's sendmail (sendmail_path's default; loft installs its own
# under its prefix, not here).
SENDMAIL = "/usr/sbin/sendmail"
MASTER_CF = "/etc/postfix/master.cf"


def available():
    """None when a private instance can run here, else why not."""
    if os.geteuid() != 0:
        return "not root"
    if not os.access(POSTFIX, os.X_OK):
        return "postfix is not installed"
    if not os.path.isfile(MASTER_CF):
        return "%s is missing" % MASTER_CF
    return None


class Postfix:
    """A private instance in DIR/postfix (etc/ with main.cf and master.cf,
    spool/, data/, maillog) whose smtpd listens on 127.0.0.1:port. params:
    main.cf settings over the defaults below (a value of None leaves the
    parameter out); master_extra: text added to master.cf (services)."""

    def __init__(self, parent, port, params=None, master_extra=""):
        self.dir = os.path.join(parent, "postfix")
        self.conf = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "spool")
        self.data = os.path.join(self.dir, "data")
        self.maillog = os.path.join(self.dir, "maillog")
        self.port = port
        self.running = False
        for d in (self.conf, self.queue, self.data):
            os.makedirs(d)
        shutil.chown(self.data, "postfix")
        main = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "pf.example.test",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": "",
            "alias_database": "",
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.dir,
            "smtputf8_enable": "no",
        }
        main.update(params or {})
        self.write_main(main)
        with open(MASTER_CF) as f:
            master = f.read()
        master = re.sub(r"(?m)^smtp(\s+inet)", "127.0.0.1:%d\\1" % port,
                        master)
        # No chroot: sockets and mailboxes of the test lie outside the
        # private queue directory.
        master = re.sub(r"(?m)^(\S+\s+\S+\s+\S+\s+\S+\s+)y(\s)", r"\1n\2",
                        master)
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(master + master_extra)

    def write_main(self, params):
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            for k, v in params.items():
                if v is not None:
                    f.write("%s = %s\n" % (k, v))

    def cmd(self, *args):
        """postfix -c CONF args...: the CompletedProcess."""
        return subprocess.run([POSTFIX, "-c", self.conf] + list(args),
                              capture_output=True, timeout=60)

    def start(self):
        """postfix start; returns (ok, error text). ok once the SMTP
        port listens."""
        from loft import wait_port
        r = self.cmd("start")
        self.running = r.returncode == 0
        if self.running:
            # A test that dies half-way leaves no Postfix running.
            atexit.register(self.stop)
        if not self.running:
            return False, r.stderr.decode(errors="replace")
        if not wait_port(self.port):
            return False, "no listener on port %d" % self.port
        return True, ""

    def stop(self):
        if self.running:
            self.cmd("stop")
            self.running = False

    def sendmail(self, args, data):
        """Postfix's sendmail -C CONF args... with data on its standard
        input: (exit status, standard error text)."""
        r = subprocess.run([SENDMAIL, "-C", self.conf] + list(args),
                           input=data, capture_output=True, timeout=60)
        return r.returncode, r.stderr.decode(errors="replace")

    def flush(self):
        """postqueue -f: try deferred mail now."""
        subprocess.run(["postqueue", "-c", self.conf, "-f"],
                       capture_output=True, timeout=60)

    def log(self):
        try:
            with open(self.maillog, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_log(self, pattern, timeout=20.0):
        """Poll the instance's maillog until the regular expression
        pattern matches; the match or None."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.log())
            if m or time.monotonic() >= deadline:
                return m
            time.sleep(0.1)

    def queue_empty(self):
        """Whether no message waits in the instance's queue."""
        for sub in ("maildrop", "incoming", "active", "deferred", "hold"):
            for _, _, files in os.walk(os.path.join(self.queue, sub)):
                if files:
                    return False
        return True
