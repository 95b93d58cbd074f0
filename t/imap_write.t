#!/usr/bin/env python3
"""loftd's IMAP commands that change mail, with Python's imaplib over IMAPS,
for Maildir and mbox: STORE (the flags in Maildir file names, and seen by a
second session), CREATE, COPY with COPYUID, UID MOVE, EXPUNGE, APPEND with
APPENDUID and its message on disk, the APPENDLIMIT refused with [TOOBIG],
RENAME and DELETE, all checked on disk and from a second session."""
import imaplib
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Tap, message, need_loftd, tls_client_context  # noqa: E402

t = Tap()
need_loftd(t)
TIMEOUT = 15


def disk(env, folder=None):
    """The messages of folder on disk: a list of bytes, with Maildir file
    names (or b"" for mbox) as (name, data) pairs."""
    if env.fmt == "maildir":
        return sorted(env.maildir_files("alice", folder).items())
    path = os.path.join(env.user_dir("alice"), folder or "INBOX")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    parts = re.split(rb"(?m)^From ", data)
    return [("", b"From " + p) for p in parts if p]


def connect(d, ctx):
    M = imaplib.IMAP4_SSL("127.0.0.1", d.imaps_port, ssl_context=ctx,
                          timeout=TIMEOUT)
    M.login("alice", "secret")
    return M


def run(env, d, ctx, fmt):
    M = connect(d, ctx)
    M2 = connect(d, ctx)
    caps = M.capabilities
    t.ok("UIDPLUS" in caps and "MOVE" in caps, "%s: UIDPLUS and MOVE" % fmt)
    typ, _ = M.select("INBOX")
    t.ok(typ == "OK" and "READ-WRITE" in M.untagged_responses,
         "%s: SELECT is READ-WRITE" % fmt)
    typ, data = M.store("1", "+FLAGS", "(\\Seen)")
    t.ok(typ == "OK" and b"FLAGS (\\Seen)" in data[0],
         "%s: STORE +FLAGS answers the new flags (%r)" % (fmt, data))
    if fmt == "maildir":
        names = [n for n, _ in disk(env)]
        t.ok(len([n for n in names if n.endswith(":2,S")]) == 1,
             "maildir: the file name carries S (%r)" % names)
    M2.select("INBOX", readonly=True)
    typ, data = M2.fetch("1", "(FLAGS)")
    t.ok(b"\\Seen" in data[0], "%s: a second session sees \\Seen" % fmt)
    typ, data = M2.store("1", "+FLAGS", "(\\Flagged)")
    t.eq(typ, "NO", "%s: STORE after EXAMINE: NO" % fmt)

    typ, _ = M.create("Saved")
    t.eq(typ, "OK", "%s: CREATE Saved" % fmt)
    typ, data = M.copy("1:2", "Saved")
    code = M.untagged_responses.get("COPYUID") or []
    t.ok(typ == "OK", "%s: COPY (%r %r)" % (fmt, data, code))
    t.eq(len(disk(env, "Saved")), 2, "%s: two copies on disk" % fmt)
    typ, data = M.copy("1", "Nowhere")
    t.ok(typ == "NO" and b"TRYCREATE" in data[0],
         "%s: COPY to a missing folder: TRYCREATE" % fmt)
    typ, data = M.uid("MOVE", "3", "Saved")
    t.eq(typ, "OK", "%s: UID MOVE" % fmt)
    t.eq(M.untagged_responses.pop("EXPUNGE", None), [b"3"],
         "%s: MOVE reports * 3 EXPUNGE" % fmt)
    t.eq(len(disk(env)), 2, "%s: INBOX has two left on disk" % fmt)
    t.eq(len(disk(env, "Saved")), 3, "%s: Saved has three" % fmt)

    M.store("1", "+FLAGS", "(\\Deleted)")
    typ, data = M.expunge()
    t.ok(typ == "OK" and data == [b"1"], "%s: EXPUNGE reports 1 (%r)" %
         (fmt, data))
    left = disk(env)
    t.ok(len(left) == 1 and b"Subject: second" in left[0][1],
         "%s: only the second message is left on disk" % fmt)
    M2.noop()
    typ, data = M2.fetch("1:*", "(UID)")
    t.ok(typ == "OK" and len([x for x in data if x]) == 1,
         "%s: the second session is down to one message (%r)" %
         (fmt, data))

    msg = message("appended", "via APPEND\n", eol="\r\n")
    typ, data = M.append("Saved", "(\\Flagged)", None, msg)
    t.ok(typ == "OK" and b"APPENDUID" in data[0],
         "%s: APPEND with APPENDUID (%r)" % (fmt, data))
    t.ok(any(b"via APPEND" in m for _, m in disk(env, "Saved")),
         "%s: the appended message is on disk" % fmt)
    if fmt == "maildir":
        t.ok(any(n.endswith(":2,F") for n, _ in disk(env, "Saved")),
             "maildir: with its flag")
    typ, data = M2.status("Saved", "(MESSAGES)")
    t.ok(typ == "OK" and b"MESSAGES 4" in data[0],
         "%s: a second session counts 4 in Saved (%r)" % (fmt, data))
    typ, data = M._simple_command("APPEND", "INBOX", "{52428801}")
    t.eq(typ, "NO", "%s: over APPENDLIMIT: NO" % fmt)
    t.ok(b"TOOBIG" in data[0] if data and data[0] else False,
         "%s: with [TOOBIG] (%r)" % (fmt, data))
    typ, _ = M.noop()
    t.eq(typ, "OK", "%s: the session goes on" % fmt)

    typ, _ = M.rename("Saved", "Old")
    t.eq(typ, "OK", "%s: RENAME" % fmt)
    t.eq(len(disk(env, "Old")), 4, "%s: the messages went along" % fmt)
    typ, _ = M.delete("Old")
    t.eq(typ, "OK", "%s: DELETE" % fmt)
    t.eq(len(disk(env, "Old")), 0, "%s: nothing left on disk" % fmt)
    typ, data = M.list()
    t.ok(typ == "OK" and not any(b"Old" in x for x in data),
         "%s: LIST no longer shows it" % fmt)
    M.logout()
    M2.logout()


def main():
    for fmt in ("maildir", "mbox"):
        env = Env(fmt=fmt)
        try:
            env.add_user("alice")
            for i, s in enumerate(("first", "second", "third")):
                rc, err = env.deliver("alice", message(s, "body %d\n" % i))
                t.eq(rc, 0, "%s: delivered (%s)" % (fmt, err.strip()))
            d = env.start_loftd(pop3=False, pop3s=False, imap=True,
                                imaps=True)
            run(env, d, tls_client_context(d.cert), fmt)
            t.eq(env.stop_loftd(), 0, "%s: loftd exits with status 0" % fmt)
        finally:
            env.cleanup()
    t.done()


main()
