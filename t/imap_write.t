#!/usr/bin/env python3
"""loftd's IMAP commands that change mail, with Python's imaplib over IMAPS,
for Maildir and mbox: STORE (the flags in Maildir file names, and seen by a
second session), CREATE, COPY with COPYUID, UID MOVE, EXPUNGE, APPEND with
APPENDUID and its message on disk, the APPENDLIMIT refused with [TOOBIG],
RENAME and DELETE, all checked on disk and from a second session.

Keywords ($Junk, Thunderbird's $label1, $MDNSent): STORE +FLAGS, -FLAGS
and FLAGS with the bytes each session reads (FLAGS and PERMANENTFLAGS
with \\* before the FETCH that shows a new one), SEARCH KEYWORD and
UNKEYWORD, a new login, APPEND and COPY carrying them, CONDSTORE's MODSEQ
and UNCHANGEDSINCE, NO [LIMIT] for a name of 101 bytes; on disk the
Maildir letters and dovecot-keywords."""
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


class Wire(imaplib.IMAP4_SSL):
    """imaplib, keeping every line the server sent (without CRLF) in
    self.wire, so that the order of untagged responses can be checked."""

    def __init__(self, *args, **kw):
        self.wire = []
        super().__init__(*args, **kw)

    def _get_line(self):
        line = super()._get_line()
        self.wire.append(line)
        return line


def connect(d, ctx):
    M = Wire("127.0.0.1", d.imaps_port, ssl_context=ctx, timeout=TIMEOUT)
    M.login("alice", "secret")
    return M


SYS = b"\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded"


def index_of(lines, want):
    """Index of the first line that starts with want, or -1."""
    for i, ln in enumerate(lines):
        if ln.startswith(want):
            return i
    return -1


def kwfile(env, folder=None):
    d = env.user_dir("alice")
    if folder:
        d = os.path.join(d, "." + folder)
    try:
        with open(os.path.join(d, "dovecot-keywords")) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def names_of(env, folder=None):
    return [n for n, _ in disk(env, folder)]


def run_keywords(env, d, ctx, fmt):
    A = connect(d, ctx)
    B = connect(d, ctx)
    A.create("Tags")
    A.create("Tags2")
    for i in range(2):
        A.append("Tags", None, None, message("tag %d" % i, eol="\r\n"))
    typ, _ = A.select("Tags")
    t.ok(typ == "OK" and A.untagged_responses.get("FLAGS") == [b"(" + SYS + b")"]
         and any(b"\\*)]" in ln for ln in A.wire if b"PERMANENTFLAGS" in ln),
         "%s: SELECT: FLAGS, and \\* in PERMANENTFLAGS" % fmt)
    B.select("Tags")

    A.wire.clear()
    typ, data = A.store("1", "+FLAGS", "($Junk $label1)")
    flags = b"* FLAGS (" + SYS + b" $Junk $label1)"
    fi = index_of(A.wire, flags)
    pi = index_of(A.wire, b"* OK [PERMANENTFLAGS (" + SYS + b" $Junk $label1 \\*)]")
    xi = index_of(A.wire, b"* 1 FETCH (FLAGS ($Junk $label1))")
    t.ok(typ == "OK" and 0 <= fi < pi < xi,
         "%s: STORE +FLAGS keywords: FLAGS, PERMANENTFLAGS, FETCH (%r)" %
         (fmt, A.wire))
    if fmt == "maildir":
        t.ok(any(n.endswith(":2,ab") for n in names_of(env, "Tags")),
             "maildir: the file name carries ab (%r)" % names_of(env, "Tags"))
        t.eq(kwfile(env, "Tags"), "0 $Junk\n1 $label1\n",
             "maildir: dovecot-keywords names a and b")

    B.wire.clear()
    B.noop()
    fi = index_of(B.wire, flags)
    xi = index_of(B.wire, b"* 1 FETCH (UID 1 FLAGS ($Junk $label1))")
    t.ok(0 <= fi < xi,
         "%s: the second session: FLAGS before its FETCH (%r)" % (fmt, B.wire))
    typ, kw = B.search(None, "KEYWORD", "$junk")
    typ2, unkw = B.search(None, "UNKEYWORD", "$Junk")
    t.ok(kw == [b"1"] and unkw == [b"2"],
         "%s: SEARCH KEYWORD, UNKEYWORD (%r %r)" % (fmt, kw, unkw))

    C = connect(d, ctx)
    typ, _ = C.select("Tags", readonly=True)
    typ, data = C.fetch("1:2", "(FLAGS)")
    t.ok(C.untagged_responses.get("FLAGS") == [b"(" + SYS + b" $Junk $label1)"]
         and any(b"PERMANENTFLAGS ()" in ln for ln in C.wire) and
         data[0] == b"1 (FLAGS ($Junk $label1))" and data[1] == b"2 (FLAGS ())",
         "%s: a new login sees them; EXAMINE: PERMANENTFLAGS () (%r)" %
         (fmt, data))
    C.logout()

    typ, data = A.store("1", "-FLAGS", "($JUNK)")
    t.ok(typ == "OK" and data == [b"1 (FLAGS ($label1))"],
         "%s: -FLAGS in another case (%r)" % (fmt, data))
    typ, data = A.store("2", "FLAGS", "(\\Seen NonJunk)")
    t.ok(typ == "OK" and data == [b"2 (FLAGS (\\Seen NonJunk))"],
         "%s: FLAGS replaces (%r)" % (fmt, data))
    if fmt == "maildir":
        t.ok(any(n.endswith(":2,b") for n in names_of(env, "Tags")) and
             any(n.endswith(":2,Sc") for n in names_of(env, "Tags")),
             "maildir: letters follow (%r)" % names_of(env, "Tags"))

    typ, data = A.append("Tags", "(\\Seen $MDNSent)", None,
                         message("tag mdn", eol="\r\n"))
    typ2, got = A.fetch("3", "(FLAGS)")
    t.ok(typ == "OK" and got == [b"3 (FLAGS (\\Seen $MDNSent))"],
         "%s: APPEND with a keyword (%r)" % (fmt, got))
    typ, data = A.copy("1:3", "Tags2")
    B.select("Tags2")
    typ, got = B.fetch("1:3", "(FLAGS)")
    t.ok(typ == "OK" and got == [b"1 (FLAGS ($label1))",
                                 b"2 (FLAGS (\\Seen NonJunk))",
                                 b"3 (FLAGS (\\Seen $MDNSent))"],
         "%s: COPY carries them (%r)" % (fmt, got))
    if fmt == "maildir":
        t.eq(kwfile(env, "Tags2"), "0 $label1\n1 NonJunk\n2 $MDNSent\n",
             "maildir: the copies' folder names its own letters")

    typ, data = A.fetch("1", "(MODSEQ)")
    m1 = int(re.search(rb"MODSEQ \((\d+)\)", data[0]).group(1))
    typ, data = A.store("1", "+FLAGS", "(Work)")
    m2 = int(re.search(rb"MODSEQ \((\d+)\)", data[0]).group(1))
    t.ok(typ == "OK" and b"($label1 Work)" in data[0] and m2 > m1,
         "%s: CONDSTORE: a new MODSEQ for a keyword (%r)" % (fmt, data))
    typ, data = A._simple_command("STORE", "1", "(UNCHANGEDSINCE %d)" % m1,
                                  "+FLAGS", "(Other)")
    t.ok(typ == "OK" and b"MODIFIED 1" in data[0],
         "%s: UNCHANGEDSINCE refuses it (%r)" % (fmt, data))
    typ, data = A.store("1", "+FLAGS", "(" + "k" * 101 + ")")
    t.ok(typ == "NO" and b"[LIMIT]" in data[0],
         "%s: a keyword of 101 bytes: NO [LIMIT] (%r)" % (fmt, data))
    typ, data = A.store("2", "+FLAGS", "(" + "k" * 100 + ")")
    t.ok(typ == "OK" and (b"k" * 100) in data[0],
         "%s: a keyword of 100 bytes is fine" % fmt)
    A.logout()
    B.logout()


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

    # Subscriptions: kept across sessions, in the user's file.
    typ, data = M.lsub()
    t.ok(typ == "OK" and any(x.endswith(b'"Trash"') for x in data),
         "%s: LSUB: every folder before any SUBSCRIBE" % fmt)
    typ, _ = M.unsubscribe("Trash")
    t.eq(typ, "OK", "%s: UNSUBSCRIBE Trash" % fmt)
    typ, _ = M.subscribe("Later/Maybe")
    t.eq(typ, "OK", "%s: SUBSCRIBE a name that is no folder" % fmt)
    typ, data = M2.lsub()
    names = [x.rsplit(b" ", 1)[-1] for x in data if x]
    t.ok(typ == "OK" and b'"Trash"' not in names and
         b'"Later/Maybe"' in names and b'"INBOX"' in names,
         "%s: another session's LSUB sees both changes (%r)" % (fmt, names))
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
            run_keywords(env, d, tls_client_context(d.cert), fmt)
            t.eq(env.stop_loftd(), 0, "%s: loftd exits with status 0" % fmt)
        finally:
            env.cleanup()
    t.done()


main()
