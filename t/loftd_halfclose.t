#!/usr/bin/env python3
"""Clients that send all their commands at once and close their side of
the connection (a script, "printf ... | nc"): loftd answers every command
it received, in order, before and after the login's hand-over to the mail
process, then closes; what a dropped session did not QUIT deletes
nothing."""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Tap, message, need_loftd  # noqa: E402

t = Tap()
need_loftd(t)


def half_close(port, data):
    """Connect, read the greeting, send data, shut down writing, and
    return everything the server says until it closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    try:
        greeting = s.recv(4096)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                return greeting, out
            out += b
    finally:
        s.close()


env = Env("maildir")
env.add_user("demo")
env.deliver("demo", message("one"))
env.deliver("demo", message("two"))
d = env.start_loftd("disable_plaintext_auth = no\n", imap=True)
try:
    g, out = half_close(d.pop3_port, b"USER demo\r\nPASS secret\r\nSTAT\r\n"
                        b"RETR 1\r\n")
    lines = out.split(b"\r\n")
    t.ok(g.startswith(b"+OK"), "POP3 greeting")
    t.eq(lines[:3], [b"+OK", b"+OK Logged in", lines[2]],
         "POP3: USER, PASS answered after the client's EOF")
    t.ok(lines[2].startswith(b"+OK 2 "), "POP3: STAT answered (%r)" % lines[2])
    t.ok(lines[3].startswith(b"+OK ") and out.endswith(b"\r\n.\r\n") and
         b"Subject: one" in out, "POP3: RETR 1 sent whole")

    g, out = half_close(d.pop3_port, b"USER demo\r\nPASS secret\r\nDELE 1\r\n"
                        b"QUIT\r\n")
    t.eq(out, b"+OK\r\n+OK Logged in\r\n+OK message 1 deleted\r\n"
         b"+OK Logging out, 1 messages deleted\r\n",
         "POP3: DELE and QUIT after EOF: answered, and the RETR-only "
         "session before deleted nothing")
    g, out = half_close(d.pop3_port, b"USER demo\r\nPASS secret\r\nSTAT\r\n"
                        b"QUIT\r\n")
    t.ok(out.startswith(b"+OK\r\n+OK Logged in\r\n+OK 1 "),
         "POP3: one message left (%r)" % out[:60])

    g, out = half_close(d.pop3_port, b"USER demo\r\nPASS wrong\r\nQUIT\r\n")
    t.eq(out, b"+OK\r\n-ERR [AUTH] Authentication failed\r\n"
         b"+OK Logging out\r\n",
         "POP3: a failed login after EOF is answered, then QUIT")

    g, out = half_close(d.pop3_port, b"USER demo\r\nPASS sec")
    t.eq(out, b"+OK\r\n", "POP3: a partial last line is dropped")

    g, out = half_close(d.imap_port, b"a LOGIN demo secret\r\n"
                        b"b SELECT INBOX\r\nc LOGOUT\r\n")
    t.ok(out.startswith(b"a OK [CAPABILITY ") and b"\r\n* 1 EXISTS\r\n" in out
         and b"\r\nb OK [READ-WRITE] SELECT completed\r\n" in out and
         out.endswith(b"* BYE Logging out\r\nc OK LOGOUT completed\r\n"),
         "IMAP: LOGIN, SELECT, LOGOUT answered after the client's EOF")
    g, out = half_close(d.imap_port, b"a LOGIN demo wrong\r\nb LOGOUT\r\n")
    t.eq(out, b"a NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
         b"* BYE Logging out\r\nb OK LOGOUT completed\r\n",
         "IMAP: a failed login after EOF, then LOGOUT")
finally:
    env.stop_loftd()
t.done()
