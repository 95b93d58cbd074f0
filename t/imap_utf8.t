#!/usr/bin/env python3
"""UTF8=ACCEPT (RFC 6855) on loftd's IMAP server, over IMAPS with a client
that sees the bytes: the capability is offered (greeting, CAPABILITY, the
login's OK), ENABLE UTF8=ACCEPT answers ENABLED once; then mailbox names
go both ways as UTF-8 (CREATE, LIST, SELECT, STATUS, RENAME, DELETE),
kept on disk in modified UTF-7 as before, and a session that did not
enable it sees the same folders in modified UTF-7; "&" is an ampersand;
names that are no valid UTF-8 (overlong forms, surrogates, past U+10FFFF,
cut short, control characters, NUL) are refused, quoted or literal, in
every command that takes a name and in LIST patterns; APPEND takes the
UTF8 (~{n}) form only after the ENABLE; a raw UTF-8 Subject comes back in
ENVELOPE as a quoted string (a literal for the other session); SEARCH
CHARSET is BAD after the ENABLE; SEARCH matches UTF-8 text. For Maildir
and mbox."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Tap, message, need_loftd, tls_client_context  # noqa: E402
from imapraw import Lit, Raw, names_of, ok, status  # noqa: E402,F401

t = Tap()
need_loftd(t)
def on_disk(env, fmt, wire7):
    """Whether the folder whose modified UTF-7 name is wire7 exists."""
    base = env.user_dir("alice")
    if fmt == "maildir":
        return os.path.isdir(os.path.join(base, "." + wire7.replace("/", ".")))
    return os.path.exists(os.path.join(base, wire7))


UMLAUT = "Entwürfe/Ünter".encode()
UMLAUT7 = b"Entw&APw-rfe/&ANw-nter"
RENAMED = "Ärger&Co".encode()
RENAMED7 = b"&AMQ-rger&-Co"

HOSTILE = [
    (b"A\xc0\xafB", "overlong '/'"),
    (b"A\xe0\x80\xaf", "3-byte overlong"),
    (b"A\xf0\x80\x80\xaf", "4-byte overlong"),
    (b"A\xed\xa0\x80", "high surrogate U+D800"),
    (b"A\xed\xbf\xbf", "low surrogate U+DFFF"),
    (b"A\xf4\x90\x80\x80", "U+110000"),
    (b"A\xe2\x82", "cut short"),
    (b"A\xff", "0xFF"),
    (b"A\x80", "lone continuation byte"),
]


def run_names(env, d, ctx, fmt):
    u = Raw(d.imaps_port, ctx)
    for what, text in (("greeting", u.greeting),):
        t.ok(b"UTF8=ACCEPT" in text and b"IMAP4rev2" in text,
             "%s: %s offers UTF8=ACCEPT and IMAP4rev2" % (fmt, what))
    tagged = u.login()
    t.ok(ok(tagged) and b"UTF8=ACCEPT" in tagged,
         "%s: the login's OK carries UTF8=ACCEPT (%r)" % (fmt, tagged))
    tagged, lines = u.cmd("CAPABILITY")
    t.ok(any(ln.startswith(b"* CAPABILITY ") and b" UTF8=ACCEPT" in ln and
             b" IMAP4rev2" in ln for ln in lines), "%s: CAPABILITY" % fmt)
    # Before the ENABLE: 8-bit in a quoted string is BAD.
    tagged, lines = u.cmd(b'CREATE "' + UMLAUT + b'"')
    t.eq(status(tagged), b"BAD", "%s: UTF-8 quoted before ENABLE: BAD" % fmt)
    tagged, lines = u.cmd("ENABLE UTF8=ACCEPT")
    t.ok(ok(tagged) and b"* ENABLED UTF8=ACCEPT" in lines,
         "%s: ENABLE UTF8=ACCEPT (%r)" % (fmt, lines))
    tagged, lines = u.cmd("ENABLE UTF8=ACCEPT")
    t.ok(ok(tagged) and b"* ENABLED" in lines,
         "%s: a second ENABLE enables nothing new (%r)" % (fmt, lines))

    o = Raw(d.imaps_port, ctx)
    o.login()

    tagged, lines = u.cmd(b'CREATE "' + UMLAUT + b'"')
    t.ok(ok(tagged), "%s: CREATE a UTF-8 name (%r)" % (fmt, tagged))
    t.ok(on_disk(env, fmt, UMLAUT7.decode()),
         "%s: kept on disk in modified UTF-7" % fmt)
    tagged, lines = u.cmd('LIST "" "*"')
    t.ok(UMLAUT in names_of(lines) and b"Entw\xc3\xbcrfe" in names_of(lines),
         "%s: LIST gives UTF-8 (%r)" % (fmt, names_of(lines)))
    t.ok(all(b"&" not in n for n in names_of(lines)),
         "%s: no modified UTF-7 in the UTF-8 session's LIST" % fmt)
    tagged, lines = o.cmd('LIST "" "*"')
    t.ok(UMLAUT7 in names_of(lines) and UMLAUT not in names_of(lines),
         "%s: the other session sees modified UTF-7 (%r)"
         % (fmt, names_of(lines)))
    tagged, lines = u.cmd(b'LIST "" "Entw\xc3\xbcrfe/%"')
    t.eq(names_of(lines), [UMLAUT], "%s: a UTF-8 LIST pattern" % fmt)
    tagged, lines = u.cmd(b'LIST "Entw\xc3\xbcrfe/" "%"')
    t.eq(names_of(lines), [UMLAUT], "%s: a UTF-8 reference" % fmt)
    tagged, lines = u.cmd(b'SELECT "' + UMLAUT + b'"')
    t.ok(ok(tagged) and b"* 0 EXISTS" in lines,
         "%s: SELECT by its UTF-8 name (%r)" % (fmt, tagged))
    tagged, lines = u.cmd(b"UNSELECT")
    tagged, lines = o.cmd(b'SELECT "' + UMLAUT7 + b'"')
    t.ok(ok(tagged), "%s: the other session selects it in UTF-7" % fmt)
    tagged, lines = u.cmd(b'STATUS "' + UMLAUT + b'" (MESSAGES)')
    t.ok(ok(tagged) and b'* STATUS "' + UMLAUT + b'" (MESSAGES 0)' in lines,
         "%s: STATUS names it in UTF-8 (%r)" % (fmt, lines))
    tagged, lines = u.cmd(b"STATUS ", Lit(UMLAUT), b" (MESSAGES)")
    t.ok(ok(tagged), "%s: a UTF-8 name as a literal" % fmt)
    tagged, lines = u.cmd(b'LIST (SUBSCRIBED) "" "*" RETURN (STATUS '
                          b'(MESSAGES))')
    t.ok(ok(tagged) and any(ln.startswith(b'* STATUS "' + UMLAUT + b'"')
                            for ln in lines),
         "%s: LIST-STATUS in UTF-8" % fmt)

    tagged, lines = u.cmd(b'RENAME "' + UMLAUT + b'" "' + RENAMED + b'"')
    t.ok(ok(tagged), "%s: RENAME to a UTF-8 name with '&'" % fmt)
    t.ok(on_disk(env, fmt, RENAMED7.decode()) and
         not on_disk(env, fmt, UMLAUT7.decode()),
         "%s: renamed on disk, '&' as '&-'" % fmt)
    o.cmd("UNSELECT")
    tagged, lines = o.cmd('LIST "" "*"')
    t.ok(RENAMED7 in names_of(lines), "%s: the other session sees %r (%r)"
         % (fmt, RENAMED7, names_of(lines)))
    tagged, lines = u.cmd(b'CREATE "&AOQ-"')
    t.ok(ok(tagged), "%s: '&AOQ-' in UTF-8 mode is a name, not UTF-7" % fmt)
    tagged, lines = o.cmd('LIST "" "&-AOQ-"')
    t.eq(names_of(lines), [b"&-AOQ-"],
         "%s: the other session sees '&-AOQ-'" % fmt)
    tagged, lines = o.cmd(b'CREATE "Zw&APY-lf"')
    tagged, lines = u.cmd(b'LIST "" "Zw*"')
    t.eq(names_of(lines), ["Zwölf".encode()],
         "%s: made in UTF-7, listed in UTF-8" % fmt)

    # Hostile names, quoted (the parser) and literal (the name check).
    for raw, what in HOSTILE:
        tagged, lines = u.cmd(b'CREATE "' + raw + b'"')
        t.eq(status(tagged), b"BAD", "%s: quoted %s: BAD" % (fmt, what))
        tagged, lines = u.cmd(b"CREATE ", Lit(raw))
        t.eq(status(tagged), b"NO", "%s: literal %s: NO" % (fmt, what))
        tagged, lines = u.cmd(b'LIST "" "' + raw + b'*"')
        t.eq(status(tagged), b"BAD", "%s: LIST pattern %s: BAD"
             % (fmt, what))
        tagged, lines = u.cmd(b'LIST "" ', Lit(raw + b"*"))
        t.eq(status(tagged), b"BAD", "%s: LIST literal pattern %s: BAD"
             % (fmt, what))
    for raw, what in ((b"A\x01B", "U+0001"), (b"A\x7fB", "DEL"),
                      (b"A\xc2\x80B", "U+0080"), (b"A\xc2\x9fB", "U+009F"),
                      (b"A\x0aB", "LF"), (b"A\x0dB", "CR")):
        tagged, lines = u.cmd(b"CREATE ", Lit(raw))
        t.eq(status(tagged), b"NO", "%s: control %s in a name: NO"
             % (fmt, what))
    tagged, lines = u.cmd(b"CREATE ", Lit(b"A\x00B"))
    t.eq(status(tagged), b"BAD", "%s: NUL in a literal name: BAD" % fmt)
    tagged, lines = u.cmd(b"CREATE ", Lit("A\u00a0B".encode()))
    t.ok(ok(tagged), "%s: U+00A0, the first after the C1 controls, is fine"
         % fmt)
    tagged, lines = u.cmd(b"CREATE ", Lit("A\U0010ffffB".encode()))
    t.ok(ok(tagged), "%s: U+10FFFF is fine" % fmt)
    for raw, what in HOSTILE[:3]:
        for verb in (b"SELECT", b"DELETE", b"SUBSCRIBE"):
            tagged, lines = u.cmd(verb + b" ", Lit(raw))
            t.eq(status(tagged), b"NO", "%s: %s of %s: NO"
                 % (fmt, verb.decode(), what))
        tagged, lines = u.cmd(b"STATUS ", Lit(raw), b" (MESSAGES)")
        t.eq(status(tagged), b"NO", "%s: STATUS of %s: NO" % (fmt, what))
        tagged, lines = u.cmd(b"RENAME INBOX ", Lit(raw))
        t.eq(status(tagged), b"NO", "%s: RENAME to %s: NO" % (fmt, what))
        tagged, lines = u.cmd(b"APPEND ", Lit(raw), b" ",
                              Lit(b"Subject: x\r\n\r\nx\r\n"))
        t.eq(status(tagged), b"NO", "%s: APPEND to %s: NO" % (fmt, what))
    tagged, lines = u.cmd('LIST "" "*"')
    t.ok(all(imap_utf8_ok(n) for n in names_of(lines)),
         "%s: nothing hostile was made (%r)" % (fmt, names_of(lines)))

    tagged, lines = u.cmd(b'DELETE "' + RENAMED + b'"')
    t.ok(ok(tagged) and not on_disk(env, fmt, RENAMED7.decode()),
         "%s: DELETE by UTF-8 name" % fmt)
    tagged, lines = u.cmd(b'DELETE "Entw\xc3\xbcrfe"')
    u.close()
    o.close()


def imap_utf8_ok(name):
    try:
        s = name.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ord(c) >= 0x20 and not 0x7f <= ord(c) <= 0x9f for c in s)


SUBJECT = "Grüße aus Köln"
MSG = ("From: Jürgen <j@example.net>\r\nTo: alice@example.org\r\n"
       "Subject: %s\r\nMIME-Version: 1.0\r\n"
       "Content-Type: text/plain; charset=utf-8\r\n\r\n"
       "Straße\r\n" % SUBJECT).encode()


def run_append(env, d, ctx, fmt):
    o = Raw(d.imaps_port, ctx)
    o.login()
    tagged, lines = o.cmd(b"APPEND INBOX UTF8 (", Lit(MSG, True), b")")
    t.eq(status(tagged), b"BAD", "%s: APPEND UTF8 before ENABLE: BAD" % fmt)
    tagged, lines = o.cmd("ENABLE IMAP4rev2")
    tagged, lines = o.cmd(b"APPEND INBOX UTF8 (", Lit(MSG, True), b")")
    t.eq(status(tagged), b"BAD",
         "%s: IMAP4rev2 alone does not take APPEND UTF8 (RFC 6855 4)" % fmt)
    o.close()

    u = Raw(d.imaps_port, ctx)
    u.login()
    u.cmd("ENABLE UTF8=ACCEPT")
    tagged, lines = u.cmd(b"APPEND INBOX UTF8 (", Lit(MSG, True), b")")
    t.ok(ok(tagged) and b"APPENDUID" in tagged,
         "%s: APPEND INBOX UTF8 (~{n}) (%r)" % (fmt, tagged))
    tagged, lines = u.cmd(b"APPEND INBOX (\\Seen) UTF8 (", Lit(MSG, True),
                          b") UTF8 (", Lit(MSG, True), b")")
    t.ok(ok(tagged), "%s: MULTIAPPEND of two UTF8 messages (%r)"
         % (fmt, tagged))
    tagged, lines = u.cmd(b"APPEND INBOX UTF8 (", Lit(MSG), b")")
    t.eq(status(tagged), b"BAD", "%s: UTF8 takes a literal8 only" % fmt)
    tagged, lines = u.cmd(b"APPEND INBOX UTF8 ", Lit(MSG, True))
    t.eq(status(tagged), b"BAD", "%s: UTF8 without parentheses: BAD" % fmt)
    if fmt == "maildir":
        files = env.maildir_files("alice")
        t.eq(sorted(files.values()), [MSG] * 3,
             "maildir: the messages on disk, byte for byte")
    else:
        with open(env.inbox("alice"), "rb") as f:
            data = f.read()
        t.eq(data.count(SUBJECT.encode()), 3, "mbox: the messages on disk")
    tagged, lines = u.cmd("SELECT INBOX")
    tagged, lines = u.cmd("FETCH 1 (ENVELOPE)")
    want = b'"' + SUBJECT.encode() + b'"'
    t.ok(ok(tagged) and any(want in ln for ln in lines),
         "%s: ENVELOPE Subject quoted as UTF-8 (%r)" % (fmt, lines))
    t.ok(any(b'"J\xc3\xbcrgen"' in ln for ln in lines),
         "%s: the From name too" % fmt)
    tagged, lines = u.cmd(b'SEARCH SUBJECT "K\xc3\xb6ln"')
    t.ok(ok(tagged) and b"* SEARCH 1 2 3" in lines,
         "%s: SEARCH with a UTF-8 string (%r)" % (fmt, lines))
    tagged, lines = u.cmd(b'SEARCH CHARSET UTF-8 SUBJECT "K\xc3\xb6ln"')
    t.eq(status(tagged), b"BAD",
         "%s: SEARCH CHARSET after ENABLE UTF8=ACCEPT: BAD" % fmt)
    tagged, lines = u.cmd(b'UID SEARCH RETURN (COUNT) CHARSET UTF-8 ALL')
    t.eq(status(tagged), b"BAD", "%s: after RETURN too" % fmt)
    tagged, lines = u.cmd(b"SEARCH CHARSET")
    t.eq(status(tagged), b"BAD", "%s: CHARSET alone" % fmt)
    u.close()

    o = Raw(d.imaps_port, ctx)
    o.login()
    o.cmd("SELECT INBOX")
    tagged, lines = o.cmd("FETCH 1 (ENVELOPE)")
    lit = b"{%d}\r\n%s" % (len(SUBJECT.encode()), SUBJECT.encode())
    t.ok(ok(tagged) and any(lit in ln for ln in lines),
         "%s: without UTF-8, the Subject is a literal (%r)" % (fmt, lines))
    tagged, lines = o.cmd(b'SEARCH CHARSET UTF-8 SUBJECT ',
                          Lit("Köln".encode()))
    t.ok(ok(tagged) and b"* SEARCH 1 2 3" in lines,
         "%s: without UTF8=ACCEPT, SEARCH CHARSET UTF-8 works (%r)"
         % (fmt, lines))
    o.close()


def main():
    for fmt in ("maildir", "mbox"):
        env = Env(fmt=fmt)
        try:
            env.add_user("alice")
            d = env.start_loftd(pop3=False, pop3s=False, imap=False,
                                imaps=True)
            ctx = tls_client_context(d.cert)
            run_names(env, d, ctx, fmt)
            run_append(env, d, ctx, fmt)
            t.eq(env.stop_loftd(), 0, "%s: loftd exits with status 0" % fmt)
        finally:
            env.cleanup()
    t.done()


main()
