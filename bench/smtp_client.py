#!/usr/bin/env python3
"""smtp_client.py: the load for bench/smtp.sh, the same for both servers.

  smtp_client.py port
      print a free TCP port on 127.0.0.1
  smtp_client.py wait --port P [--timeout S]
      wait until something listens on 127.0.0.1:P (status 1 if not)
  smtp_client.py run --port P --rcpt ADDR --maildir DIR [--n N]
          [--conns C] [--per-conn K] [--size BYTES] [--timeout S]
      send N messages to ADDR over C connections at once, each connection
      carrying K messages (MAIL, RCPT, DATA, K times, then QUIT and a new
      connection), and wait until all N are files in DIR's new/ or cur/.
      Prints one line: "ACCEPT_SECONDS DELIVER_SECONDS": from the first
      connect to the last 250 after DATA, and to the last message stored.
      Every message carries a unique Message-ID; each one must be stored
      exactly once (a missing or doubled one is an error, status 1).

Input trusted: the arguments, from bench/smtp.sh.
"""

import argparse
import os
import smtplib
import socket
import sys
import threading
import time


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def message(i, size, run):
    head = ("From: Bench <bench@client.test>\r\nTo: <rcpt@bench.test>\r\n"
            "Subject: bench message %d\r\nMessage-ID: <%s.%d@client.test>\r\n"
            "Date: Sun, 29 Nov 2026 10:00:00 +0000\r\n\r\n" % (i, run, i))
    line = "The quick brown fox jumps over the lazy dog, %06d.\r\n" % i
    body = line * max(1, (size - len(head)) // len(line))
    return (head + body).encode()


def stored_ids(maildir, run):
    """Message-IDs of this run found in the Maildir (its new/ and cur/)."""
    tag = ("<%s." % run).encode()
    ids = []
    for sub in ("new", "cur"):
        d = os.path.join(maildir, sub)
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            continue
        for name in names:
            try:
                with open(os.path.join(d, name), "rb") as f:
                    head = f.read(4096)
            except OSError:
                continue
            k = head.find(b"Message-ID: " + tag)
            if k >= 0:
                e = head.find(b">", k)
                ids.append(head[k + 12:e + 1])
    return ids


def count_files(maildir):
    n = 0
    for sub in ("new", "cur"):
        try:
            n += len(os.listdir(os.path.join(maildir, sub)))
        except FileNotFoundError:
            pass
    return n


def run(a):
    runid = "r%d%d" % (os.getpid(), int(time.time()))
    before = count_files(a.maildir)
    errors = []
    lock = threading.Lock()
    unsent = list(range(a.n))
    msgs = {i: message(i, a.size, runid) for i in unsent}

    def worker():
        while True:
            with lock:
                batch = unsent[:a.per_conn]
                del unsent[:a.per_conn]
            if not batch:
                return
            try:
                c = smtplib.SMTP("127.0.0.1", a.port, "client.test",
                                 timeout=a.timeout)
                for i in batch:
                    c.sendmail("bench@client.test", [a.rcpt], msgs[i])
                c.quit()
            except (OSError, smtplib.SMTPException) as e:
                with lock:
                    errors.append("message %d..: %s" % (batch[0], e))
                return

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(a.conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_accept = time.monotonic() - t0
    if errors:
        print("FAIL %s" % errors[0], file=sys.stderr)
        return 1
    deadline = time.monotonic() + a.timeout
    while count_files(a.maildir) < before + a.n:
        if time.monotonic() > deadline:
            print("FAIL %d of %d stored after %d s" %
                  (count_files(a.maildir) - before, a.n, a.timeout),
                  file=sys.stderr)
            return 1
        time.sleep(0.005)
    t_deliver = time.monotonic() - t0
    ids = stored_ids(a.maildir, runid)
    want = set(("<%s.%d@client.test>" % (runid, i)).encode()
               for i in range(a.n))
    if len(ids) != a.n or set(ids) != want:
        print("FAIL stored %d messages, %d distinct, %d expected" %
              (len(ids), len(set(ids)), a.n), file=sys.stderr)
        return 1
    print("%.4f %.4f" % (t_accept, t_deliver))
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=("port", "wait", "run"))
    p.add_argument("--port", type=int)
    p.add_argument("--rcpt")
    p.add_argument("--maildir")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--conns", type=int, default=4)
    p.add_argument("--per-conn", type=int, default=10)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--timeout", type=int, default=600)
    a = p.parse_args()
    if a.cmd == "port":
        print(free_port())
        return 0
    if a.cmd == "wait":
        return 0 if wait_port(a.port, a.timeout) else 1
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
