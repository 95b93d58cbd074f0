#!/usr/bin/env python3
"""loftd's mail processes run loftd-mail, the mail role alone, found beside
loftd: it maps neither OpenSSL nor libsasl2 (the login process keeps TLS
and relays, the auth process checks passwords), so that one mail process
per mailbox owner costs a fraction of the whole program. A loftd without
loftd-mail beside it says so in the log once and runs the mail role
itself, and logins still work."""
import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import loft  # noqa: E402
from loft import Env, Pop3, Tap, message, need_loftd, tls_client_context  # noqa: E402

t = Tap()
need_loftd(t)
TIMEOUT = 15
HEAVY = ("libcrypto", "libssl", "libsasl2", "libpcre2")


def maps_of(pid):
    """The file names mapped by pid ("" for anonymous mappings)."""
    with open("/proc/%d/maps" % pid) as f:
        return [ln.split(None, 5)[5].strip() if len(ln.split(None, 5)) > 5
                else "" for ln in f]


def mail_procs(d):
    return [p for p in d.processes() if re.search(r"-X\s*mail\b", p["cmdline"])]


def session(d, tls):
    """A logged-in session (POP3S if tls) and its STAT answer."""
    p = Pop3(d.pop3s_port if tls else d.pop3_port,
             ctx=tls_client_context(d.cert) if tls else None, timeout=TIMEOUT)
    if not tls:
        p.starttls(tls_client_context(d.cert))
    p.login()
    return p, p.cmd("STAT")


def part_mail_program():
    env = Env("maildir")
    env.add_user("demo")
    env.deliver("demo", message("mail role"), "-f", "sender@example.net")
    env.start_loftd()
    d = env.loftd
    p, stat = session(d, True)
    t.ok(stat.startswith("+OK 1 "), "POP3S: logged in, STAT +OK 1 (%r)" % stat)
    time.sleep(0.3)
    mails = mail_procs(d)
    t.eq(len(mails), 1, "one mail process")
    exe = [os.readlink("/proc/%d/exe" % q["pid"]) for q in mails]
    want = os.path.join(os.path.dirname(os.path.realpath(loft.LOFTD)),
                        "loftd-mail")
    t.ok(exe and all(e == want for e in exe),
         "it runs %s (%r)" % (want, exe))
    t.ok(mails and mails[0]["cmdline"].startswith("loftd-mail "),
         "ps shows it as loftd-mail (%r)" % [q["cmdline"] for q in mails])
    heavy = sorted({m for q in mails for m in maps_of(q["pid"])
                    if any(h in m for h in HEAVY)})
    t.ok(mails and not heavy, "it maps none of %s (%r)" % (", ".join(HEAVY), heavy))
    others = [q for q in d.processes() if q not in mails and
              re.search(r"-X\s*(login|auth)\b", q["cmdline"])]
    t.ok(others and all(any("libssl" in m for m in maps_of(q["pid"]))
                        for q in others),
         "the login and auth processes still have OpenSSL (the test sees maps)")
    p.cmd("QUIT")
    p.close()
    t.ok("loftd-mail" not in d.log(), "nothing about loftd-mail in the log")
    t.eq(env.stop_loftd(), 0, "SIGTERM: exit status 0")
    env.cleanup()


def part_fallback():
    """loftd copied alone: the mail role from loftd itself."""
    solo = tempfile.mkdtemp(prefix="loft-solo-")
    os.chmod(solo, 0o755)
    exe = os.path.join(solo, "loftd")
    shutil.copy2(loft.LOFTD, exe)
    saved = loft.LOFTD
    loft.LOFTD = exe
    env = None
    try:
        env = Env("maildir")
        env.add_user("demo")
        env.deliver("demo", message("fallback"), "-f", "sender@example.net")
        env.start_loftd()
        d = env.loftd
        p, stat = session(d, False)
        t.ok(stat.startswith("+OK 1 "),
             "without loftd-mail: STLS login works, STAT +OK 1 (%r)" % stat)
        time.sleep(0.3)
        mails = mail_procs(d)
        t.ok(mails and all(os.readlink("/proc/%d/exe" % q["pid"]) == exe
                           for q in mails),
             "the mail process runs loftd itself")
        p.cmd("QUIT")
        p.close()
        t.ok(re.search(r"warning: \S*loftd-mail: No such file or directory; "
                       r"mail processes run the whole of", d.log()) is not None,
             "the log says why, once: %r" %
             [ln for ln in d.log().splitlines() if "loftd-mail" in ln][:2])
        t.eq(d.log().count("loftd-mail"), 1, "only once")
        t.eq(env.stop_loftd(), 0, "SIGTERM: exit status 0")
    finally:
        loft.LOFTD = saved
        if env is not None:
            env.cleanup()
        shutil.rmtree(solo, ignore_errors=True)


part_mail_program()
part_fallback()
t.done()
