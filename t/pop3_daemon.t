#!/usr/bin/env python3
"""loftd as a daemon: SIGHUP with a broken configuration keeps it serving
on the old one and logs why; SIGHUP with a good one applies it; SIGHUP
after the certificate files were replaced gives new connections the new
certificate while a logged-in session goes on; SIGTERM ends it with status
0 within shutdown_timeout, sessions and children included; the processes
that read client bytes run unprivileged (login processes as user loft,
chrooted; mail processes as the mailbox owner), never as root; the idle
timeout after login."""
import os
import pwd
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import (Env, Pop3, Tap, cert_der, make_cert, message, need_loftd,  # noqa: E402
                  port_listening, tls_client_context)

t = Tap()
need_loftd(t)
TIMEOUT = 15
ROOT = os.geteuid() == 0


def setup(extra=""):
    env = Env("maildir")
    env.add_user("demo")
    env.add_user("other")
    env.deliver("demo", message("daemon"), "-f", "sender@example.net")
    env.start_loftd(extra)
    return env


def login_works(d, source=None):
    """A full POP3S login and STAT; True if it all answered +OK."""
    p = Pop3(d.pop3s_port, ctx=tls_client_context(d.cert), source=source,
             timeout=TIMEOUT)
    ok = p.login().startswith("+OK") and p.cmd("STAT").startswith("+OK 1 ")
    p.cmd("QUIT")
    p.close()
    return ok


def capa(d):
    p = Pop3(d.pop3_port, timeout=TIMEOUT)
    p.cmd("CAPA")
    lines = [ln.decode() for ln in (p.multi() or [])]
    p.cmd("QUIT")
    p.close()
    return lines


def wait_capa(d, what, tries=100):
    """Poll new connections until CAPA lists what (a reload applied)."""
    for _ in range(tries):
        if what in capa(d):
            return True
        time.sleep(0.1)
    return False


def part_reload_config():
    env = setup()
    d = env.loftd
    t.ok("USER" not in capa(d), "default: no USER before TLS")
    # A broken configuration: a bad value is fatal at load.
    d.write_conf("disable_plaintext_auth = no\npop3_line_limit = lots\n")
    mark = d.mark()
    d.hup()
    m = d.wait_log(r"pop3_line_limit", since=mark)
    t.ok(m is not None, "SIGHUP with a bad value: the error is logged naming the "
         "parameter")
    tail = d.log(mark)
    t.ok("loft.conf" in tail, "and the file (%r)" % tail[-300:])
    time.sleep(0.5)
    t.ok(d.alive(), "loftd keeps running")
    t.ok(login_works(d), "and serves logins")
    t.ok("USER" not in capa(d), "on the old configuration (no part of the broken "
         "one applied)")
    # Processes started after the refused reload use the old one too: a
    # new login process is needed for the connections above; make more.
    for i in range(3):
        t.ok(login_works(d), "login %d after the refused reload" % (i + 1))
    # A good configuration is applied by the next SIGHUP.
    d.write_conf("disable_plaintext_auth = no\n")
    d.hup()
    t.ok(wait_capa(d, "USER"), "SIGHUP with a good configuration: new connections see it (USER "
         "before TLS)")
    p = Pop3(d.pop3_port, timeout=TIMEOUT)
    t.ok(p.login().startswith("+OK"), "plaintext login now allowed")
    p.cmd("QUIT")
    p.close()
    # A configuration file that vanished is refused the same way.
    os.rename(env.conf, env.conf + ".away")
    mark = d.mark()
    d.hup()
    t.ok(d.wait_log(r"(?i)(error|refused|cannot).*loft\.conf", since=mark) is not None,
         "SIGHUP with the file missing: logged")
    t.ok(d.alive() and login_works(d), "and loftd still serves")
    os.rename(env.conf + ".away", env.conf)
    t.eq(env.stop_loftd(), 0, "SIGTERM: exit status 0")
    env.cleanup()


def part_reload_cert():
    env = setup()
    d = env.loftd
    old_der = cert_der(d.cert)
    ctx = tls_client_context(d.cert)
    held = Pop3(d.pop3s_port, ctx=ctx, timeout=TIMEOUT)
    t.eq(held.sock.getpeercert(binary_form=True), old_der,
         "POP3S serves the first certificate")
    t.ok(held.login().startswith("+OK"), "a session logs in before the reload")
    held_stls = Pop3(d.pop3_port, timeout=TIMEOUT)
    held_stls.starttls(ctx)
    t.ok(held_stls.login("other", "secret").startswith("+OK"),
         "a second session logs in over STLS before the reload")

    # Replace both files (as certbot does: new files renamed into place).
    newdir = os.path.join(env.dir, "new")
    os.makedirs(newdir)
    new_cert, new_key = make_cert(newdir, cn="localhost")
    new_der = cert_der(new_cert)
    t.ok(new_der != old_der, "the new certificate differs")
    os.rename(new_key, d.key)
    os.rename(new_cert, d.cert)
    d.hup()
    seen = None
    ctx2 = tls_client_context(d.cert)
    for _ in range(100):
        p = Pop3(d.pop3s_port, ctx=ctx2, timeout=TIMEOUT, greet=False)
        seen = p.sock.getpeercert(binary_form=True)
        p.close()
        if seen == new_der:
            break
        time.sleep(0.1)
    t.eq(seen, new_der, "after SIGHUP a new POP3S connection gets the new certificate")
    p = Pop3(d.pop3_port, timeout=TIMEOUT)
    p.starttls(ctx2)
    t.eq(p.sock.getpeercert(binary_form=True), new_der, "and STLS too")
    p.close()
    t.ok(held.cmd("STAT").startswith("+OK 1 "), "the session from before goes on")
    r = held.cmd("RETR 1")
    t.ok(r.startswith("+OK") and held.multi_raw() is not None, "and can RETR")
    t.ok(held.cmd("QUIT").startswith("+OK"), "and QUIT")
    held.close()
    t.ok(held_stls.cmd("STAT").startswith("+OK 0 "), "the STLS session from before "
         "goes on too")
    held_stls.cmd("QUIT")
    held_stls.close()
    # A key that does not match the certificate: the reload is refused,
    # the current certificate stays.
    mark = d.mark()
    _, other_key = make_cert(newdir, prefix="other-")
    os.rename(other_key, d.key)
    d.hup()
    m = d.wait_log(r".*(tls_key_file|tls_cert_file).*", since=mark)
    t.ok(m is not None, "SIGHUP with a key that does not match: logged, naming the "
         "file (%r)" % (m and m.group(0)))
    time.sleep(0.5)
    p = Pop3(d.pop3s_port, ctx=ctx2, timeout=TIMEOUT, greet=True)
    t.ok(p.sock.getpeercert(binary_form=True) == new_der and
         p.greeting.startswith(b"+OK"), "and POP3S goes on with the loaded certificate")
    p.close()
    t.ok(d.alive(), "loftd still running")
    t.eq(env.stop_loftd(), 0, "SIGTERM: exit status 0")
    env.cleanup()


def ps_users(pids):
    """{pid: user name} as ps shows them."""
    if not pids:
        return {}
    r = subprocess.run(["ps", "-o", "pid=,user:32=", "-p", ",".join(map(str, pids))],
                       capture_output=True, text=True)
    out = {}
    for ln in r.stdout.splitlines():
        f = ln.split()
        if len(f) == 2:
            out[int(f[0])] = f[1]
    return out


def dropped(d, n):
    """Wait (at most 10 s) until n login processes run and none of them
    is still root (they start as root, then chroot and drop); returns
    them."""
    logins = []
    for _ in range(100):
        logins = [p for p in d.processes()
                  if re.search(r"(^|\s)-X\s*login\b", p["cmdline"])]
        if len(logins) == n and all(p["uid"][0] != 0 for p in logins):
            break
        time.sleep(0.1)
    return logins


def part_processes():
    env = setup("login_processes = 2\n")
    d = env.loftd
    ctx = tls_client_context(d.cert)
    login_user = d.login_user()
    logins = dropped(d, 2)
    t.diag("processes: " + "; ".join("%d uid=%d %s" % (p["pid"], p["uid"][0], p["cmdline"])
                                     for p in d.processes()))
    t.eq(len(logins), 2, "login_processes = 2: two login processes (loftd -X login)")
    users = ps_users([p["pid"] for p in logins])
    if ROOT:
        login_uid = pwd.getpwnam(login_user).pw_uid
        t.ok(login_uid != 0 and login_uid != env.owner[0],
             "login_user %s is neither root nor the mailbox owner" % login_user)
        t.ok(logins and all(users.get(p["pid"]) == login_user for p in logins),
             "ps shows the login processes as user %s (%r)" % (login_user, users))
        t.ok(logins and all(set(p["uid"]) == {login_uid} and 0 not in p["gid"]
                            for p in logins),
             "real, effective, saved uid all %s, no gid 0" % login_user)
        # An AddressSanitizer build leaves out the chroot and
        # RLIMIT_NPROC (LeakSanitizer needs /proc and a thread at exit).
        with open("/proc/%d/maps" % logins[0]["pid"]) as f:
            sanitized = "libasan" in f.read()
        why = "AddressSanitizer build" if sanitized else None
        t.ok(logins and all(p["root"] == d.chroot for p in logins),
             "login processes are chrooted to login_chroot (%r)"
             % [p["root"] for p in logins], todo=why)
        t.ok(logins and all(p["status"].get("NoNewPrivs", "").strip() == "1"
                            for p in logins),
             "login processes run with no_new_privs")

        def nproc(pid):
            with open("/proc/%d/limits" % pid) as f:
                for ln in f:
                    if ln.startswith("Max processes"):
                        return ln.split()[2]
            return None
        t.ok(logins and all(nproc(p["pid"]) == "0" for p in logins),
             "login processes cannot fork (RLIMIT_NPROC 0)", todo=why)
        t.ok(os.path.isdir(d.chroot) and os.stat(d.chroot).st_uid == 0
             and not os.listdir(d.chroot),
             "login_chroot was made by loftd: root's, empty")
    else:
        me = pwd.getpwuid(os.getuid()).pw_name
        t.ok(all(users.get(p["pid"]) == me for p in logins),
             "not root: login processes run as the invoking user")
    # Who holds a client's connection: before login a login process;
    # after a plaintext login the mail process, as the mailbox owner.
    env.loftd.write_conf("login_processes = 2\ndisable_plaintext_auth = no\n")
    d.hup()
    t.ok(wait_capa(d, "USER"), "reloaded: plaintext logins allowed")
    p = Pop3(d.pop3_port, timeout=TIMEOUT)
    owners = d.socket_owners(p.sock)
    t.ok(owners and all(o["uid"][0] != 0 for o in owners),
         "before login no root process holds the client socket (%r)"
         % [(o["pid"], o["uid"][0], o["cmdline"]) for o in owners])
    if ROOT:
        t.ok(owners and all(o["uid"][0] == login_uid for o in owners),
             "before login the client is held by a process running as %s" % login_user)
    t.ok(p.login().startswith("+OK"), "plaintext login")
    time.sleep(0.3)
    owners = d.socket_owners(p.sock)
    want_uid = env.owner[0] if ROOT else os.getuid()
    t.ok(owners and all(o["uid"][0] == want_uid for o in owners),
         "after login the client socket is held only by the mail process, as the "
         "mailbox owner uid %d (%r)" % (want_uid, [(o["pid"], o["uid"], o["cmdline"])
                                                  for o in owners]))
    if owners:
        users = ps_users([o["pid"] for o in owners])
        t.ok(all(u != "root" for u in users.values()), "ps: not root (%r)" % users)
    p.cmd("QUIT")
    p.close()
    # TLS: the login process keeps TLS and relays; the mail process runs
    # as the owner; neither is root.
    p = Pop3(d.pop3s_port, ctx=ctx, timeout=TIMEOUT)
    p.login()
    time.sleep(0.3)
    owners = d.socket_owners(p.sock)
    t.ok(owners and all(o["uid"][0] != 0 for o in owners),
         "a TLS session's socket is held by no root process (%r)"
         % [(o["pid"], o["uid"][0]) for o in owners])
    mails = [q for q in d.processes() if re.search(r"-X\s*mail\b", q["cmdline"])]
    t.ok(mails and all(q["uid"][0] == want_uid for q in mails),
         "mail processes run as the mailbox owner (%r)"
         % [(q["pid"], q["uid"]) for q in mails])
    p.cmd("QUIT")
    p.close()
    t.eq(env.stop_loftd(), 0, "SIGTERM: exit status 0")
    env.cleanup()


def part_sigterm():
    env = setup("shutdown_timeout = 3s\n")
    d = env.loftd
    ctx = tls_client_context(d.cert)
    idle = Pop3(d.pop3s_port, ctx=ctx, timeout=TIMEOUT)
    t.ok(idle.login().startswith("+OK"), "a session is logged in (POP3S)")
    plain = Pop3(d.pop3_port, timeout=TIMEOUT)
    plain.starttls(ctx)
    t.ok(plain.login("other", "secret").startswith("+OK"),
         "a second session is logged in (STLS)")
    pre = Pop3(d.pop3_port, timeout=TIMEOUT)
    time.sleep(0.3)
    pids = [p["pid"] for p in d.processes()]
    t.ok(len(pids) >= 4, "master and children running (%d processes)" % len(pids))
    start = time.monotonic()
    d.signal(signal.SIGTERM)
    try:
        rc = d.proc.wait(timeout=3 + 12)
    except subprocess.TimeoutExpired:
        rc = None
    took = time.monotonic() - start
    t.eq(rc, 0, "SIGTERM: loftd exits with status 0 (shutdown_timeout = 3s, in %.1f s)"
         % took)
    t.ok(idle.wait_closed(5), "the logged-in session was closed")
    t.ok(pre.wait_closed(5), "the connection not logged in was closed")
    plain.close()
    alive = []
    for _ in range(50):
        alive = [p for p in pids if os.path.exists("/proc/%d" % p) and
                 not open("/proc/%d/stat" % p).read().split(") ")[1].startswith("Z")]
        if not alive:
            break
        time.sleep(0.1)
    t.eq(alive, [], "no process of the daemon is left")
    t.ok(not any(port_listening(p) for p in d.ports()), "its ports are closed")
    d.kill()
    env.loftd = None
    # Without sessions it ends at once, well within the default 30 s.
    env.start_loftd()
    t.eq(env.stop_loftd(timeout=10), 0, "idle loftd: SIGTERM, status 0 within 10 s")
    env.cleanup()


def part_idle_timeout():
    env = setup("idle_timeout = 10s\nlogin_timeout = 60s\n")
    d = env.loftd
    p = Pop3(d.pop3s_port, ctx=tls_client_context(d.cert), timeout=TIMEOUT)
    t.ok(p.login().startswith("+OK"), "idle_timeout = 10s: logged in")
    t.ok(p.wait_closed(40), "a silent logged-in session is closed (within 40 s)")
    p.close()
    t.ok(d.wait_log(r"pop3\(demo\): logout: rip=127\.0\.0\.1, reason=idle timeout")
         is not None, "logged: reason=idle timeout")
    q = None
    for _ in range(50):
        q = Pop3(d.pop3s_port, ctx=tls_client_context(d.cert), timeout=TIMEOUT)
        if q.login().startswith("+OK"):
            break
        q.close()
        q = None
        time.sleep(0.2)
    t.ok(q is not None, "the mailbox is free again afterwards")
    if q:
        q.cmd("QUIT")
        q.close()
    t.eq(env.stop_loftd(), 0, "SIGTERM: exit status 0")
    env.cleanup()


def part_mail_idle():
    """A mail process without sessions for mail_process_idle_time exits;
    the next login starts another."""
    env = setup("mail_process_idle_time = 2s\n")
    d = env.loftd

    def mail_procs():
        return [p for p in d.processes() if "-X mail" in p["cmdline"]]
    t.ok(login_works(d), "mail_process_idle_time = 2s: a session")
    t.ok(len(mail_procs()) == 1, "one mail process after it")
    gone = False
    for _ in range(100):
        if not mail_procs():
            gone = True
            break
        time.sleep(0.1)
    t.ok(gone, "without sessions, the mail process exits (within 10 s)")
    t.ok(login_works(d), "the next login starts another and works")
    t.eq(env.stop_loftd(), 0, "SIGTERM: exit status 0")
    env.cleanup()


def part_bad_start():
    """Refusing to start is loud and quick: a bad configuration or a
    port in use ends loftd with a non-zero status and a reason."""
    from loft import LOFTD
    env = Env("maildir", extra="pop3_listen = 127.0.0.1:notaport\n")
    r = subprocess.run([LOFTD, "-c", env.conf, "-f"], capture_output=True, timeout=30)
    t.ok(r.returncode != 0 and b"pop3_listen" in r.stderr,
         "a bad pop3_listen: non-zero exit naming the parameter (%d %r)"
         % (r.returncode, r.stderr[-200:]))
    env.cleanup()
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    env = Env("maildir", extra="pop3_listen = 127.0.0.1:%d\n" % port)
    r = subprocess.run([LOFTD, "-c", env.conf, "-f"], capture_output=True, timeout=30)
    t.ok(r.returncode != 0 and str(port).encode() in r.stderr,
         "a port in use: non-zero exit naming it (%d %r)" % (r.returncode, r.stderr[-200:]))
    s.close()
    env.cleanup()


t.guard("reload config", part_reload_config)
t.guard("reload certificate", part_reload_cert)
t.guard("processes", part_processes)
t.guard("sigterm", part_sigterm)
t.guard("idle timeout", part_idle_timeout)
t.guard("mail process idle", part_mail_idle)
t.guard("bad start", part_bad_start)
t.done()
