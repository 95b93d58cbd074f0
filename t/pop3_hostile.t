#!/usr/bin/env python3
"""Hostile input and limits against loftd's POP3, with raw sockets: the
255-octet line limit at N and N+1, a 100 KB line, NUL bytes, the tenth
bad command closing the session, bogus base64 in AUTH PLAIN, an AUTH PLAIN
authzid naming another user, STLS with a pipelined command in the same
packet, 500 connections from one address (client_connection_limit at N and
N+1) and the total connection_limit, the pre-login timeout, log lines
that name user and address but never the password; pipelined input far
past the queues (also across the hand-over to the mail process),
command_rate_limit, a configured pop3_line_limit at N and N+1, and a
client that stops reading in a 5 MB RETR while another user is served."""
import base64
import os
import re
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Pop3, Tap, message, need_loftd, tls_client_context  # noqa: E402

t = Tap()
need_loftd(t)
TIMEOUT = 15
PASSWORD = "Pw-7f3Kq9-unique"   # grep-able: must never reach a log


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def capa_ok(p):
    """CAPA answered in full: the session is alive and in step."""
    r = p.cmd("CAPA")
    lines = p.multi() if r.startswith("+OK") else None
    return r.startswith("+OK") and lines is not None and b"UIDL" in lines


def setup(extra=""):
    env = Env("maildir")
    env.add_user("demo")
    env.add_user("other")
    r = env.ctl("user", "add", "pwuser", input=(PASSWORD + "\n").encode())
    if r.returncode != 0:
        raise RuntimeError("user add pwuser: %r" % r.stderr)
    env.deliver("demo", message("hostile"), "-f", "sender@example.net")
    env.start_loftd(extra)
    return env


def part_lines(env):
    d = env.loftd
    p = Pop3(d.pop3_port, timeout=TIMEOUT)
    # RFC 2449: 255 octets with the CRLF. CAPA ignores its argument.
    line = "CAPA " + "x" * 248
    t.eq(len(line) + 2, 255, "the test line is 255 octets with CRLF")
    p.send(line + "\r\n")
    r = p.text()
    t.ok(r.startswith("+OK"), "a 255-octet line is accepted (%r)" % r)
    p.multi()
    p.send(line + "y\r\n")
    r = p.text()
    t.ok(r.startswith("-ERR"), "a 256-octet line gets -ERR (%r)" % r)
    t.ok(capa_ok(p), "and the session goes on in step")
    # 100 KB, in pieces as a slow client would send it.
    big = b"USER " + b"A" * (100 * 1024) + b"\r\n"
    for i in range(0, len(big), 7000):
        p.send(big[i:i + 7000])
    r = p.text()
    t.ok(r.startswith("-ERR"), "a 100 KB line gets -ERR (%r)" % r[:80])
    t.ok(capa_ok(p), "and the session goes on: CAPA answered after it")
    # Byte by byte: the parser keeps its place across any split.
    for c in b"CAPA\r\n":
        p.send(bytes([c]))
        time.sleep(0.01)
    r = p.text()
    t.ok(r.startswith("+OK") and p.multi() is not None, "CAPA sent one byte at a time")
    # LF alone ends a line too.
    p.send(b"CAPA\n")
    r = p.text()
    t.ok(r.startswith("+OK") and p.multi() is not None, "a bare LF ends a command line")
    p.cmd("QUIT")
    p.close()

    # After login the same holds (the mail process parses now).
    p = Pop3(d.pop3s_port, ctx=tls_client_context(d.cert), timeout=TIMEOUT)
    t.ok(p.login().startswith("+OK"), "logged in over POP3S")
    p.send(b"NOOP " + b"z" * (100 * 1024) + b"\r\nSTAT\r\n")
    r1, r2 = p.text(), p.text()
    t.ok(r1.startswith("-ERR") and r2.startswith("+OK 1 "),
         "after login: a 100 KB line gets -ERR, the STAT behind it +OK (%r %r)"
         % (r1[:60], r2))
    r = p.cmd("NOOP " + "n" * 249)
    t.ok(r.startswith("-ERR"), "after login, 256 octets: -ERR (%r)" % r)
    t.ok(p.cmd("STAT").startswith("+OK"), "STAT after it")
    p.cmd("QUIT")
    p.close()


def part_nul(env):
    d = env.loftd
    p = Pop3(d.pop3_port, timeout=TIMEOUT)
    for what, raw in (("in the command name", b"CA\0PA\r\n"),
                      ("in an argument", b"USER de\0mo\r\n"),
                      ("alone", b"\0\r\n")):
        p.send(raw)
        r = p.text()
        t.ok(r.startswith("-ERR"), "NUL byte %s: -ERR (%r)" % (what, r))
    t.ok(capa_ok(p), "the session goes on after NUL bytes")
    p.cmd("QUIT")
    p.close()
    p = Pop3(d.pop3s_port, ctx=tls_client_context(d.cert), timeout=TIMEOUT)
    p.send(b"USER demo\r\n")
    p.text()
    r = p.cmd(b"PASS sec\0ret")
    t.ok(r.startswith("-ERR"), "PASS with a NUL byte inside is refused (%r)" % r)
    t.ok(p.cmd("STAT").startswith("-ERR"), "and it did not log in")
    p.close()


def part_bad_commands(env):
    d = env.loftd
    # Own source addresses, so that the log lines are this session's.
    mark = d.mark()
    p = Pop3(d.pop3_port, source="127.0.0.5", timeout=TIMEOUT)
    answers = [p.cmd("XYZZY%d" % i) for i in range(9)]
    t.ok(all(a.startswith("-ERR") for a in answers),
         "nine unknown commands: nine -ERR")
    t.ok(capa_ok(p), "after nine the session is still open")
    r = p.cmd("XYZZY9")
    t.ok(r.startswith("-ERR"), "the tenth bad command gets -ERR (%r)" % r)
    t.ok(p.wait_closed(10), "and the server closes the connection (within 10 s)")
    p.close()
    m = d.wait_log(r"pop3: disconnect: rip=127\.0\.0\.5, user=<>, reason=([^,]*)",
                   since=mark)
    t.ok(m is not None and m.group(1) != "QUIT",
         "the log gives the reason, not QUIT: the client never sent one (%r)"
         % (m and m.group(0)))
    # The same after login.
    mark = d.mark()
    p = Pop3(d.pop3s_port, ctx=tls_client_context(d.cert), source="127.0.0.6",
             timeout=TIMEOUT)
    p.login()
    for i in range(9):
        p.cmd("BOGUS")
    t.ok(p.cmd("STAT").startswith("+OK"), "logged in: nine bad commands, STAT still works")
    p.cmd("BOGUS")
    t.ok(p.wait_closed(10), "logged in: the tenth closes the session")
    p.close()
    m = d.wait_log(r"pop3\(demo\): logout: rip=127\.0\.0\.6, reason=([^,]*)",
                   since=mark)
    t.ok(m is not None and m.group(1) != "QUIT",
         "that session's end is logged with its reason, not QUIT (%r)"
         % (m and m.group(0)))


def part_auth(env):
    d = env.loftd
    p = Pop3(d.pop3_port, timeout=TIMEOUT)
    for bogus in ("!!!!", "AAA", "AA=A", "=AAA", "\u00e9t\u00e9", "A" * 300):
        r = p.cmd("AUTH PLAIN " + bogus)
        t.ok(r.startswith("-ERR") and not r.startswith("-ERR [AUTH] Authentication"),
             "AUTH PLAIN with bogus base64 %r: -ERR without an auth attempt (%r)"
             % (bogus[:10], r))
    t.ok(capa_ok(p), "the session goes on")
    r = p.cmd("AUTH PLAIN")
    t.ok(r.rstrip() == "+", "AUTH PLAIN, no initial response: \"+ \"")
    r = p.cmd("not base64 at all")
    t.ok(r.startswith("-ERR"), "a bogus base64 response ends the exchange (%r)" % r)
    t.ok(capa_ok(p), "and the session is back in step")
    # No user name, no password, too many fields.
    # "AUTH PLAIN =" is an empty initial response (RFC 5034), not none.
    for what, resp in (("an empty message", ""), ("no NUL at all", "demosecret"),
                       ("four fields", "\0demo\0secret\0x"),
                       ("an empty user", "\0\0secret")):
        r = p.cmd("AUTH PLAIN " + (b64(resp) if resp else "="))
        t.ok(r.startswith("-ERR"), "AUTH PLAIN with %s fails (%r)" % (what, r))
        if r.startswith("+"):
            p.cmd("*")      # back in step for what follows
    # authzid: another user's name is refused, one's own name is fine.
    r = p.cmd("AUTH PLAIN " + b64("other\0demo\0secret"))
    t.eq(r, "-ERR [AUTH] Authentication failed",
         "AUTH PLAIN as demo with authzid other is refused")
    t.ok(p.cmd("STAT").startswith("-ERR"), "and nobody is logged in")
    r = p.cmd("AUTH PLAIN " + b64("demo\0demo\0secret"))
    t.ok(r.startswith("+OK"), "AUTH PLAIN with authzid equal to the user logs in (%r)" % r)
    t.ok(p.cmd("STAT").startswith("+OK 1 "), "as demo")
    p.cmd("QUIT")
    p.close()


def part_stls_injection(env):
    """STLS with a command behind it in the same packet: the command must
    not be answered in plaintext, nor inside TLS."""
    d = env.loftd
    ctx = tls_client_context(d.cert)
    for what, behind in (("CAPA", b"CAPA\r\n"),
                         ("USER/PASS", b"USER demo\r\nPASS secret\r\n"),
                         ("50 x CAPA", b"CAPA\r\n" * 50)):
        p = Pop3(d.pop3_port, timeout=TIMEOUT)
        p.send(b"STLS\r\n" + behind)
        r = p.text()
        t.eq(r, "+OK Begin TLS negotiation", "STLS + %s in one packet: STLS answered" % what)
        # Nothing may follow in plaintext: wait a little for stray bytes.
        p.sock.settimeout(0.5)
        stray = b""
        try:
            stray = p.sock.recv(4096, socket.MSG_PEEK)
        except socket.timeout:
            pass
        p.sock.settimeout(TIMEOUT)
        t.eq(p.buf + stray, b"", "STLS + %s: no plaintext answer after +OK" % what)
        try:
            p.sock = ctx.wrap_socket(p.sock, server_hostname="localhost")
            p.buf = b""
            shook = True
        except (ssl.SSLError, OSError) as e:
            t.diag("handshake: %r" % e)
            shook = False
        t.ok(shook, "STLS + %s: the TLS handshake succeeds" % what)
        if not shook:
            p.close()
            continue
        # The first answer inside TLS must be to what we send inside TLS.
        r = p.cmd("AUTH")
        t.eq(r, "+OK", "STLS + %s: first line inside TLS answers our AUTH "
             "(not the pipelined command)" % what)
        mechs = p.multi()
        t.ok(mechs is not None and b"PLAIN" in mechs,
             "STLS + %s: and it is the mechanism list (%r)" % (what, mechs))
        r = p.cmd("STAT")
        t.ok(r.startswith("-ERR"), "STLS + %s: not logged in by the pipelined "
             "PASS (%r)" % (what, r))
        t.ok(p.login().startswith("+OK"), "STLS + %s: USER/PASS inside TLS work" % what)
        p.cmd("QUIT")
        p.close()
    # Data pipelined inside the handshake's first flight is not possible
    # to fake from Python; STLS twice is: the second is refused.
    p = Pop3(d.pop3_port, timeout=TIMEOUT)
    p.starttls(ctx)
    r = p.cmd("STLS")
    t.ok(r.startswith("-ERR"), "STLS inside TLS is refused (%r)" % r)
    p.close()


def first_line(s):
    """The first line the server sends on s, read byte by byte so that
    nothing after it is consumed; b"<timeout>" or what came before EOF."""
    line = b""
    try:
        while not line.endswith(b"\n") and len(line) < 1024:
            c = s.recv(1)
            if not c:
                break
            line += c
    except socket.timeout:
        return b"<timeout>"
    except OSError:
        pass
    return line


def part_limits():
    """500 connections from 127.0.0.1 with client_connection_limit 20."""
    env = setup()
    d = env.loftd
    socks, first = [], []
    for i in range(500):
        s = socket.create_connection(("127.0.0.1", d.pop3_port), timeout=TIMEOUT)
        socks.append(s)
    # One deadline for all 500 first lines, so a silent daemon costs 60 s,
    # not 500 timeouts.
    deadline = time.monotonic() + 60
    for s in socks:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        first.append(first_line(s))
    greeted = [i for i, ln in enumerate(first) if ln.startswith(b"+OK")]
    refused = [i for i, ln in enumerate(first) if ln.startswith(
        b"-ERR [SYS/TEMP] Too many connections from your address")]
    t.eq(len(greeted), 20, "500 connections: exactly 20 (client_connection_limit) greeted")
    t.eq(greeted, list(range(20)), "the first 20 are the greeted ones")
    t.eq(len(refused), 480, "the other 480 get the per-address SYS/TEMP text")
    others = [ln for ln in first if not ln.startswith((b"+OK", b"-ERR [SYS/TEMP]"))]
    t.eq(others[:3], [], "no other answers")
    closed = 0
    for i in refused[:50]:
        socks[i].settimeout(10)
        try:
            if socks[i].recv(100) == b"":
                closed += 1
        except OSError:
            closed += 1
    t.eq(closed, min(50, len(refused)), "refused connections are closed by the server")
    for i in refused:
        socks[i].close()
    m = d.wait_log(r"refused.*127\.0\.0\.1|127\.0\.0\.1.*refused")
    t.ok(m is not None, "a refused connection is logged with 'refused' and the address")
    # While 20 are held: another address still logs in, 127.0.0.1 does not.
    p = Pop3(d.pop3_port, source="127.0.0.2", timeout=TIMEOUT)
    t.ok(p.greeting and p.greeting.startswith(b"+OK"), "from 127.0.0.2: greeted")
    p.starttls(tls_client_context(d.cert))
    t.ok(p.login().startswith("+OK"), "from 127.0.0.2: a normal login works")
    p.cmd("QUIT")
    p.close()
    p = Pop3(d.pop3_port, timeout=TIMEOUT)
    t.ok(p.greeting is not None and p.greeting.startswith(b"-ERR [SYS/TEMP]"),
         "from 127.0.0.1 the 21st is still refused (%r)" % p.greeting)
    p.close()
    # The 20 still work.
    s = socks[greeted[0]] if greeted else None
    if s:
        s.sendall(b"CAPA\r\n")
        t.ok(s.recv(100).startswith(b"+OK"), "a held connection still answers")
    for i in greeted:
        socks[i].close()
    # After closing them all, new logins from 127.0.0.1 work (the master
    # hears of the closes asynchronously: retry, bounded).
    ok = False
    for _ in range(100):
        p = Pop3(d.pop3_port, timeout=TIMEOUT)
        if p.greeting and p.greeting.startswith(b"+OK"):
            p.starttls(tls_client_context(d.cert))
            ok = p.login().startswith("+OK")
            p.cmd("QUIT")
            p.close()
            break
        p.close()
        time.sleep(0.1)
    t.ok(ok, "after closing them all, 127.0.0.1 logs in again")
    # Every slot comes back (the master hears of closes asynchronously:
    # retry, bounded).
    for _ in range(50):
        held = [Pop3(d.pop3_port, timeout=TIMEOUT) for _ in range(20)]
        ok = all(p.greeting and p.greeting.startswith(b"+OK") for p in held)
        for p in held:
            p.close()
        if ok:
            break
        time.sleep(0.2)
    t.ok(ok, "and 20 at once are greeted again: every slot was freed")
    env.stop_loftd()
    env.cleanup()

    # connection_limit (all clients) with a small client_connection_limit.
    env = setup("connection_limit = 5\nclient_connection_limit = 3\n")
    d = env.loftd
    held = [Pop3(d.pop3_port, timeout=TIMEOUT) for _ in range(3)]
    t.ok(all(p.greeting.startswith(b"+OK") for p in held),
         "client_connection_limit = 3: three from 127.0.0.1 greeted")
    p = Pop3(d.pop3_port, timeout=TIMEOUT)
    t.eq(p.greeting, b"-ERR [SYS/TEMP] Too many connections from your address",
         "the fourth from 127.0.0.1 is refused with the per-address text")
    t.ok(p.wait_closed(10), "and closed")
    p.close()
    held += [Pop3(d.pop3_port, source="127.0.0.2", timeout=TIMEOUT) for _ in range(2)]
    t.ok(all(p.greeting.startswith(b"+OK") for p in held),
         "connection_limit = 5: two more from 127.0.0.2 greeted (5 in all)")
    p = Pop3(d.pop3_port, source="127.0.0.3", timeout=TIMEOUT)
    t.eq(p.greeting, b"-ERR [SYS/TEMP] Too many connections",
         "the sixth (from 127.0.0.3) gets the total-limit text")
    p.close()
    # On the POP3S port the refusal comes before any TLS: a plaintext
    # -ERR or a bare close, never a handshake.
    p = Pop3(d.pop3s_port, source="127.0.0.3", greet=False, timeout=TIMEOUT)
    closed = p.wait_closed(10)
    t.ok(closed, "the limit covers POP3S too: closed within 10 s")
    p.close()
    held.pop().close()
    ok = False
    for _ in range(100):
        p = Pop3(d.pop3_port, source="127.0.0.3", timeout=TIMEOUT)
        ok = p.greeting is not None and p.greeting.startswith(b"+OK")
        p.close()
        if ok:
            break
        time.sleep(0.1)
    t.ok(ok, "one closed: a new client is greeted")
    for p in held:
        p.close()
    env.stop_loftd()
    env.cleanup()


def part_login_timeout():
    env = setup("login_timeout = 2s\n")
    d = env.loftd
    p = Pop3(d.pop3_port, timeout=TIMEOUT)
    t.ok(p.greeting.startswith(b"+OK"), "login_timeout = 2s: greeted")
    t.ok(p.wait_closed(15), "a silent connection before login is closed (within 15 s)")
    p.close()
    p = Pop3(d.pop3s_port, ctx=tls_client_context(d.cert), timeout=TIMEOUT)
    t.ok(p.wait_closed(15), "the same over POP3S")
    p.close()
    # A client that never finishes the TLS handshake is cut too.
    s = socket.create_connection(("127.0.0.1", d.pop3s_port), timeout=TIMEOUT)
    s.sendall(b"\x16\x03\x01")
    s.settimeout(15)
    try:
        closed = s.recv(100) == b""
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        closed = False
    t.ok(closed, "a half-sent TLS handshake is cut (within 15 s)")
    s.close()
    env.stop_loftd()
    env.cleanup()


def part_log(env):
    d = env.loftd
    ctx = tls_client_context(d.cert)
    p = Pop3(d.pop3s_port, ctx=ctx, timeout=TIMEOUT)
    t.ok(p.login("pwuser", PASSWORD).startswith("+OK"), "pwuser logs in with USER/PASS")
    p.cmd("QUIT")
    p.close()
    p = Pop3(d.pop3s_port, ctx=ctx, timeout=TIMEOUT)
    t.ok(p.cmd("AUTH PLAIN " + b64("\0pwuser\0" + PASSWORD)).startswith("+OK"),
         "pwuser logs in with AUTH PLAIN")
    p.cmd("QUIT")
    p.close()
    p = Pop3(d.pop3s_port, ctx=ctx, timeout=TIMEOUT)
    wrong = PASSWORD + "-wrong"
    r = p.login("pwuser", wrong)
    t.eq(r, "-ERR [AUTH] Authentication failed", "a wrong password is refused")
    r = p.login("no-such-user", PASSWORD)
    t.eq(r, "-ERR [AUTH] Authentication failed", "an unknown user gets the same answer")
    p.close()
    log = d.log()
    t.ok("pop3 login: user=<pwuser>, rip=127.0.0.1" in log, "login logged with user and IP")
    t.ok("pop3 login failed: user=<pwuser>, rip=127.0.0.1, reason=" in log,
         "failure logged with user, IP and reason")
    t.ok("pop3 login failed: user=<no-such-user>, rip=127.0.0.1" in log,
         "unknown user logged")
    t.ok("pop3(pwuser): logout: rip=127.0.0.1, reason=QUIT" in log, "logout logged")
    for secret in (PASSWORD, b64("\0pwuser\0" + PASSWORD), PASSWORD[3:12]):
        t.ok(secret not in log, "the log never holds %r" % (secret[:12] + "..."))
    # Nor do the other files the daemon writes.
    leaked = []
    for dirpath, _, files in os.walk(env.dir):
        for fn in files:
            path = os.path.join(dirpath, fn)
            if fn.endswith(".pem") or not os.path.isfile(path):
                continue
            try:
                with open(path, "rb") as f:
                    if PASSWORD.encode() in f.read():
                        leaked.append(path)
            except OSError:
                pass
    t.eq(leaked, [], "no file in the test directory holds the password")
    # Hostile user names are escaped in log lines.
    p = Pop3(d.pop3s_port, ctx=ctx, timeout=TIMEOUT)
    p.login("evil\x1b[31mname", "x")
    p.close()
    log = d.log()
    t.ok("\x1b[31m" not in log, "control characters of a user name are not logged raw")


def read_answers(p, n, deadline=60.0):
    """n single-line answers, within one overall deadline."""
    end = time.monotonic() + deadline
    out = []
    try:
        while len(out) < n and time.monotonic() < end:
            p.sock.settimeout(max(0.1, end - time.monotonic()))
            ln = p.line()
            if ln is None:
                break
            out.append(ln)
    except socket.timeout:
        pass
    p.sock.settimeout(TIMEOUT)
    return out


def part_pipeline(env):
    """Pipelined input far beyond the queues: the server stops reading
    and resumes, and answers every command in order, across the hand-over
    from the login process to the mail process too."""
    d = env.loftd
    ctx = tls_client_context(d.cert)
    for how, n in (("plaintext", 700), ("plaintext", 2000), ("TLS", 700), ("TLS", 2000)):
        if how == "TLS":
            p = Pop3(d.pop3s_port, ctx=ctx, timeout=TIMEOUT)
        else:
            p = Pop3(d.pop3_port, timeout=TIMEOUT)
        p.send(b"USER demo\r\nPASS secret\r\n" + b"STAT\r\n" * n + b"QUIT\r\n")
        got = read_answers(p, n + 3, deadline=20)
        # Handing a plaintext client to the mail process must lose none
        # of the input the login process had read or left in the socket.
        t.ok(len(got) == n + 3 and got[0].startswith(b"+OK") and got[1].startswith(b"+OK")
             and all(x.startswith(b"+OK 1 ") for x in got[2:-1])
             and got[-1].startswith(b"+OK"),
             "%s: USER, PASS, %d STATs and QUIT in one write: %d answers, all +OK, "
             "in order (got %d)" % (how, n, n + 3, len(got)))
        t.ok(p.wait_closed(10), "%s, %d: and the session ends after the QUIT" % (how, n))
        p.close()
    # Before login: 1000 CAPA in one write.
    p = Pop3(d.pop3_port, timeout=TIMEOUT)
    p.send(b"CAPA\r\n" * 1000)
    ok = 0
    for _ in range(1000):
        r = p.text()
        if not r.startswith("+OK") or p.multi() is None:
            break
        ok += 1
    t.eq(ok, 1000, "1000 pipelined CAPA before login: 1000 full answers")
    p.close()


def part_rate_limit():
    env = setup("command_rate_limit = 100\n")
    d = env.loftd
    p = Pop3(d.pop3s_port, ctx=tls_client_context(d.cert), timeout=TIMEOUT)
    t.ok(p.login().startswith("+OK"), "command_rate_limit = 100: logged in")
    p.send(b"NOOP\r\n" * 500)
    got = read_answers(p, 500, deadline=60)
    t.ok(len(got) == 500 and all(x == b"+OK" for x in got),
         "500 pipelined NOOPs over the rate limit: paused, not dropped: 500 +OK "
         "within 60 s (%d)" % len(got))
    t.ok(p.cmd("STAT").startswith("+OK 1 "), "and the session goes on")
    p.cmd("QUIT")
    p.close()
    env.stop_loftd()
    env.cleanup()


def part_line_limit_conf():
    env = setup("pop3_line_limit = 1000\n")
    d = env.loftd
    p = Pop3(d.pop3_port, timeout=TIMEOUT)
    line = "CAPA " + "x" * (1000 - 7)
    t.eq(len(line) + 2, 1000, "pop3_line_limit = 1000: the test line is 1000 octets")
    r = p.cmd(line)
    t.ok(r.startswith("+OK") and p.multi() is not None, "a 1000-octet line is accepted (%r)" % r)
    r = p.cmd(line + "x")
    t.ok(r.startswith("-ERR"), "a 1001-octet line gets -ERR (%r)" % r)
    t.ok(capa_ok(p), "and the session goes on")
    p.close()
    p = Pop3(d.pop3s_port, ctx=tls_client_context(d.cert), timeout=TIMEOUT)
    p.login()
    r = p.cmd("NOOP " + "n" * (1000 - 7))
    t.ok(r.startswith("-ERR"), "after login the limit holds too: 1000 octets parsed "
         "(NOOP with an argument: syntax error, not line too long: %r)" % r)
    t.ok("too long" not in r.lower(), "the 1000-octet line was not refused as too long")
    r = p.cmd("NOOP " + "n" * (1000 - 6))
    t.ok(r.startswith("-ERR") and "too long" in r.lower(),
         "after login a 1001-octet line is too long (%r)" % r)
    p.cmd("QUIT")
    p.close()
    env.stop_loftd()
    env.cleanup()


def server_txq(sock):
    """Bytes the server end of the TCP connection sock has queued and
    not yet had acknowledged (tx_queue of /proc/net/tcp)."""
    def hexaddr(addr):
        ip, port = addr[:2]
        return "%s:%04X" % ("".join("%02X" % int(b) for b in reversed(ip.split("."))),
                            port)
    local, peer = hexaddr(sock.getpeername()), hexaddr(sock.getsockname())
    with open("/proc/net/tcp") as f:
        for ln in f.readlines()[1:]:
            fl = ln.split()
            if fl[1] == local and fl[2] == peer:
                return int(fl[4].split(":")[0], 16)
    return -1


def part_slow_reader():
    """A client that stops reading in the middle of a 5 MB RETR must not
    hold up another user served by the same mail process (virtual users
    share one), and gets its message whole when it reads again; over TLS
    (the login process relays) and in plaintext (the mail process writes
    to the client's socket itself)."""
    env = Env("maildir")
    env.add_user("demo")
    env.add_user("other")
    big = b"Subject: big\n\n" + b"".join(b"%07d %s\n" % (i, b"z" * 70)
                                         for i in range(70000))
    env.deliver("demo", big, "-f", "s@example.net")
    env.deliver("other", message("small"), "-f", "s@example.net")
    d = env.start_loftd("disable_plaintext_auth = no\n")
    ctx = tls_client_context(d.cert)
    want = re.sub(rb"(?<!\r)\n", b"\r\n", b"Return-Path: <s@example.net>\n"
                  b"Delivered-To: demo@test.example.org\n" + big) + b".\r\n"
    for how in ("TLS", "plaintext"):
        if how == "TLS":
            slow = Pop3(d.pop3s_port, ctx=ctx, timeout=TIMEOUT, rcvbuf=4096)
        else:
            slow = Pop3(d.pop3_port, timeout=TIMEOUT, rcvbuf=4096)
        t.ok(slow.login().startswith("+OK"), "%s: demo logs in" % how)
        slow.send("RETR 1\r\n")
        time.sleep(1)
        q = server_txq(slow.sock)
        t.ok(q > 0, "%s: the server has unsent bytes queued for demo: the RETR is "
             "stalled (%d)" % (how, q))
        start = time.monotonic()
        o = Pop3(d.pop3_port, timeout=TIMEOUT)
        ok = o.login("other", "secret").startswith("+OK") and \
            o.cmd("RETR 1").startswith("+OK") and o.multi_raw() is not None
        t.ok(ok and time.monotonic() - start < 10,
             "%s: while demo's RETR is stalled, other logs in and RETRs (within 10 s)"
             % how)
        o.cmd("QUIT")
        o.close()
        r = slow.text()
        body = slow.multi_raw()
        t.ok(r.startswith("+OK") and body == want,
             "%s: demo then reads the whole 5 MB message intact (%s bytes)"
             % (how, None if body is None else len(body)))
        slow.cmd("QUIT")
        slow.close()
    env.stop_loftd()
    env.cleanup()

def main():
    env = setup()
    t.guard("lines", part_lines, env)
    t.guard("NUL", part_nul, env)
    t.guard("bad commands", part_bad_commands, env)
    t.guard("stls injection", part_stls_injection, env)
    env.stop_loftd()
    env.cleanup()
    # Auth failures slow the answers down for the address; a fresh daemon
    # for each part that fails logins keeps the delays short.
    env = setup("disable_plaintext_auth = no\n")   # plaintext USER/PASS
    t.guard("auth", part_auth, env)
    t.guard("pipeline", part_pipeline, env)
    env.stop_loftd()
    env.cleanup()
    env = setup()
    t.guard("log", part_log, env)
    env.stop_loftd()
    env.cleanup()
    t.guard("limits", part_limits)
    t.guard("rate limit", part_rate_limit)
    t.guard("line limit", part_line_limit_conf)
    t.guard("slow reader", part_slow_reader)
    t.guard("login timeout", part_login_timeout)


main()
t.done()
