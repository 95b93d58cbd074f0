#!/usr/bin/env python3
"""loftd's IMAP, first part, with real clients: Python's imaplib over
STARTTLS and IMAPS (LOGIN, AUTHENTICATE PLAIN), CAPABILITY in the greeting
and the login reply, SELECT (read-only in this version), FETCH of index
items checked against what loft-deliver stored, LIST, STATUS, NAMESPACE,
ID, IDLE woken by a delivery, curl imap:// listing, commands not served
yet answered NO, hostile input (a 4 GB literal announced, deep lists,
1:4294967295, unknown commands) without harm to the daemon."""
import email
import imaplib
import os
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from imapraw import Lines  # noqa: E402
from loft import Env, Tap, message, need_loftd, tls_client_context  # noqa: E402

t = Tap()
need_loftd(t)
TIMEOUT = 15


def main():
    env = Env()
    try:
        env.add_user("alice")
        msgs = [message("first", "one\n"),
                message("second", "two\n.dotted\n")]
        for m in msgs:
            rc, err = env.deliver("alice", m)
            t.eq(rc, 0, "delivered (%s)" % err.strip())
        d = env.start_loftd(pop3=False, pop3s=False, imap=True, imaps=True)
        ctx = tls_client_context(d.cert)
        run(env, d, ctx, msgs)
        t.eq(env.stop_loftd(), 0, "SIGTERM: loftd exits with status 0")
        log = d.log()
        t.ok("secret" not in log, "the password never reaches the log")
        t.ok("imap login: user=<alice>, rip=127.0.0.1" in log,
             "the login is logged with user and address")
        t.ok("imap(alice): logout: rip=127.0.0.1, reason=LOGOUT" in log,
             "the logout is logged with its reason")
    finally:
        env.cleanup()
    t.done()


def run(env, d, ctx, msgs):
    M = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=TIMEOUT)
    caps = M.capabilities
    t.ok("STARTTLS" in caps and "LOGINDISABLED" in caps and
         "AUTH=PLAIN" not in caps,
         "before TLS: STARTTLS and LOGINDISABLED, no PLAIN (%r)" % (caps,))
    try:
        M.login("alice", "secret")
        t.ok(False, "LOGIN before TLS must fail")
    except imaplib.IMAP4.error as e:
        t.ok("PRIVACYREQUIRED" in str(e) or "disallowed" in str(e),
             "LOGIN before TLS refused (%s)" % e)
    M.starttls(ctx)
    typ, data = M.login("alice", "secret")
    t.ok(typ == "OK" and b"[CAPABILITY IMAP4rev1" in data[0],
         "LOGIN after STARTTLS, capabilities in the reply (%r)" % data)
    typ, data = M.select("INBOX", readonly=True)
    t.eq((typ, data), ("OK", [b"2"]), "SELECT INBOX (read-only): 2 messages")
    t.ok(M.untagged_responses.get("UIDVALIDITY") is not None,
         "UIDVALIDITY given")
    typ, data = M.fetch("1:*", "(UID FLAGS RFC822.SIZE ENVELOPE)")
    t.eq(typ, "OK", "FETCH 1:*")
    text = b" ".join(x if isinstance(x, bytes) else b"".join(x) for x in data)
    t.ok(b"UID 1" in text and b"UID 2" in text and b'"first"' in text and
         b'(("Sender" NIL "sender" "example.net"))' in text and
         b'"<first@example.net>"' in text,
         "FETCH gives UIDs, subjects and addresses from the index")
    sizes = [int(x.split(b"RFC822.SIZE ")[1].split()[0].rstrip(b")"))
             for x in data if isinstance(x, bytes) and b"RFC822.SIZE" in x]
    want = [len(m.replace(b"\n", b"\r\n")) for m in env_messages(env)]
    t.eq(sizes, want, "RFC822.SIZE equals the stored messages' CRLF size")
    typ, data = M.uid("FETCH", "2", "(BODYSTRUCTURE)")
    t.ok(typ == "OK" and b'BODYSTRUCTURE ("text" "plain"' in data[0],
         "UID FETCH BODYSTRUCTURE (%r)" % data)
    typ, data = M.list()
    t.ok(typ == "OK" and any(b'"INBOX"' in x for x in data), "LIST has INBOX")
    for name, use in (("Sent", b"\\Sent"), ("Drafts", b"\\Drafts"),
                      ("Trash", b"\\Trash"), ("Junk", b"\\Junk"),
                      ("Archive", b"\\Archive")):
        t.ok(any(b'"%s"' % name.encode() in x and use in x for x in data),
             "the first login made %s, listed with %s" % (name, use.decode()))
        t.ok(os.path.isdir(os.path.join(env.mail, "alice", "." + name)),
             "%s is a Maildir++ folder on disk" % name)
    typ, data = M.status("INBOX", "(MESSAGES UNSEEN UIDNEXT)")
    t.ok(typ == "OK" and b"MESSAGES 2 UNSEEN 2 UIDNEXT 3" in data[0],
         "STATUS (%r)" % data)
    typ, data = M.namespace()
    t.eq(typ, "OK", "NAMESPACE")
    typ, data = M.xatom("ID", '("name" "imaplib")')
    t.eq(typ, "OK", "ID")
    stored = env_messages(env)
    for i in (1, 2):
        typ, data = M.fetch(str(i), "(BODY.PEEK[])")
        t.ok(typ == "OK" and data[0][1] == stored[i - 1].replace(b"\n", b"\r\n"),
             "BODY.PEEK[] of message %d: the stored bytes with CRLF" % i)
    typ, data = M.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT])")
    t.ok(typ == "OK" and data[0][1] == b"Subject: second\r\n\r\n" and
         data[1][1] == b"two\r\n.dotted\r\n",
         "HEADER.FIELDS and TEXT (%r)" % (data,))
    typ, data = M.fetch("1", "(BINARY.PEEK[])")
    t.ok(typ == "OK" and b"Subject: first" in data[0][1],
         "BINARY.PEEK[] of a message without transfer encoding")
    M.close()
    M.logout()

    # IMAPS with AUTHENTICATE PLAIN.
    M = imaplib.IMAP4_SSL("127.0.0.1", d.imaps_port, ssl_context=ctx,
                          timeout=TIMEOUT)
    t.ok("AUTH=PLAIN" in M.capabilities, "IMAPS offers AUTH=PLAIN")
    typ, _ = M.authenticate("PLAIN", lambda _: b"\0alice\0secret")
    t.eq(typ, "OK", "AUTHENTICATE PLAIN over IMAPS")
    try:
        M2 = imaplib.IMAP4_SSL("127.0.0.1", d.imaps_port, ssl_context=ctx,
                               timeout=TIMEOUT)
        M2.authenticate("PLAIN", lambda _: b"\0alice\0wrong")
        t.ok(False, "a wrong password must fail")
    except imaplib.IMAP4.error as e:
        t.ok("AUTHENTICATIONFAILED" in str(e), "wrong password: [AUTHENTICATIONFAILED]")
    M.logout()

    # IDLE woken by a delivery.
    r = Lines(d.imaps_port, ctx)
    t.ok(r.greeting.startswith("* OK [CAPABILITY "), "greeting with capabilities")
    *_, tagged = r.cmd("a1", "LOGIN alice secret")
    t.ok(tagged.startswith("a1 OK"), "raw LOGIN")
    *lines, tagged = r.cmd("a2", "EXAMINE INBOX")
    t.ok("* 2 EXISTS" in lines and tagged.startswith("a2 OK"), "EXAMINE")
    r.send("a3 IDLE")
    t.ok(r.line().startswith("+"), "IDLE continuation")
    start = time.monotonic()
    rc, _ = env.deliver("alice", message("third", "three\n"))
    got = r.line()
    waited = time.monotonic() - start
    t.eq(got, "* 3 EXISTS", "a delivery during IDLE is reported")
    t.ok(waited < 5, "within 5 s, without polling (%.3f s)" % waited)
    r.send("DONE")
    *_, tagged = r.until("^a3 ")
    t.ok(tagged.startswith("a3 OK"), "DONE ends IDLE")

    # Hostile input: the session and the daemon survive.
    r.send("b1 APPEND INBOX {4294967295}")
    ln = r.line()
    t.ok(ln.startswith("b1 NO") or ln.startswith("b1 BAD"),
         "a 4 GB literal is refused, no continuation (%s)" % ln)
    *_, tagged = r.cmd("b2", "FETCH 1:4294967295 (UID)")
    t.ok(tagged.startswith("b2 BAD") or tagged.startswith("b2 OK"),
         "1:4294967295 answered (%s)" % tagged)
    *_, tagged = r.cmd("b3", "UID FETCH 1:4294967295 (UID)")
    t.ok(tagged.startswith("b3 OK"), "UID FETCH 1:4294967295: OK (%s)" % tagged)
    *_, tagged = r.cmd("b4", "FETCH 1 " + "(" * 100 + ")" * 100)
    t.ok(tagged.startswith("b4 BAD"), "100 nested lists: BAD (%s)" % tagged)
    *_, tagged = r.cmd("b5", "FROBNICATE")
    t.ok(tagged.startswith("b5 BAD"), "unknown command: BAD")
    *_, tagged = r.cmd("b6", "STORE 1 +FLAGS (\\Seen)")
    t.ok(tagged.startswith("b6 NO"), "STORE not served yet: NO")
    *_, tagged = r.cmd("b7", "SELECT \"../../etc\"")
    t.ok(tagged.startswith("b7 NO"), "a mailbox name leaving the storage: NO")
    r.send("b8 NOOP\x00")
    *_, tagged = r.until("^b8 ")
    t.ok(tagged.startswith("b8 BAD"), "NUL in a command: BAD")
    *lines, tagged = r.cmd("b9", "LOGOUT")
    t.ok(tagged.startswith("b9 OK") and any(x.startswith("* BYE") for x in lines),
         "LOGOUT")
    r.close()

    # curl lists the mailbox.
    out = subprocess.run(["curl", "-s", "--ssl-reqd", "--cacert", d.cert,
                          "imap://localhost:%d/INBOX" % d.imap_port,
                          "-u", "alice:secret", "-X", "STATUS INBOX (MESSAGES)"],
                         capture_output=True, timeout=60)
    t.ok(out.returncode == 0 and b"MESSAGES 3" in out.stdout,
         "curl imap:// with STARTTLS: STATUS (%r)" % out.stdout[:200])


def env_messages(env):
    """The stored messages of alice's INBOX in UID order (Maildir)."""
    base = os.path.join(env.mail, "alice")
    files = []
    for sub in ("cur", "new"):
        dd = os.path.join(base, sub)
        for f in os.listdir(dd):
            uid = int(f.split(",U=")[1].split(":")[0].split(",")[0]) \
                if ",U=" in f else 0
            files.append((uid, os.path.join(dd, f)))
    return [open(p, "rb").read() for _, p in sorted(files)]


main()
