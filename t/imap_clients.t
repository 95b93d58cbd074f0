#!/usr/bin/env python3
"""loftd's IMAP against real clients, for Maildir and mbox storage, checked
on the server's disk (Maildir file names; for mbox, what a separate IMAP
session reads): mbsync (isync) syncing INBOX and folders both ways into a
local Maildir over IMAPS (SCRAM) and STARTTLS (LOGIN): new mail byte-exact
(also 100 small ones, 1.2 MB, 8-bit, From_ lines, lone dots), flags both
ways, a local deletion expunged, a local message APPENDed, a new nested
local folder CREATEd; offlineimap's sync (and a flag back); curl (imap://
LIST, INBOX;UID=n over imap:// and imaps://, a nested folder); mutt in tmux
over IMAPS (read, flag, delete, new mail and another session's EXPUNGE
while it idles); two sessions on one folder where the one in IDLE sees
the other's STORE and EXPUNGE. No client command may be answered NO or BAD
(mbsync's and offlineimap's protocol traces are checked). A client that is
not installed is skipped with a diag line. Failures print the command
sent and the answer received."""
import imaplib
import os
import re
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from imapraw import Lines  # noqa: E402
from loft import (Env, Tap, maildir_messages, message,  # noqa: E402
                  need_loftd, tls_client_context)


class PTap(Tap):
    """Tap whose test names start with the storage format under test."""
    prefix = ""

    def ok(self, cond, name, todo=None):
        return Tap.ok(self, cond, self.prefix + name, todo)


t = PTap()
need_loftd(t)
SERVER = {}     # "d" and "ctx" of the daemon under test
TIMEOUT = 15
ARCH = message("arch one", "archived\n", eol="\r\n")   # in Archive
BULK = 100      # small messages delivered besides, for pipelined fetches
# Messages that are hard to store and serve: mbox From_ lines, 8-bit,
# no final newline, a long line, lone dots, 1.2 MB.
ODD = {
    "odd from": b"From here on\n>From quoted\nFrom \n>>From two\nend\n",
    "odd 8bit": "Gr\u00fc\u00dfe, \u65e5\u672c\n\u00e9t\u00e9\n".encode(),
    "odd nonl": b"no newline at the end",
    "odd long": b"x" * 3000 + b"\nshort\n",
    "odd dots": b".\n..\n.x\n\n.\n",
    "odd big": b"".join(b"line %07d of a big message, padded to length\n" % i
                        for i in range(25000)),
}


def lf(data):
    """Message bytes with CRLF turned into LF (clients store either)."""
    return data.replace(b"\r\n", b"\n")


def untuid(data):
    """lf(data) without the X-TUID header line mbsync puts into every
    message it copies (its own bookkeeping, isync's documented habit)."""
    return re.sub(rb"(?m)^X-TUID: [^\n]*\n", b"", lf(data), count=1)


def server_files(env, folder=None):
    """[(file name, bytes)] of alice's folder on the server: for Maildir
    its files on disk; for mbox (no file names to read flags from) what
    IMAP gives, as names "mbox,U=UID:2,FLAGS" with Maildir flag letters
    and BODY.PEEK[] as the bytes."""
    if env.fmt == "maildir":
        return sorted(env.maildir_files("alice", folder).items())
    M = connect(SERVER["d"], SERVER["ctx"])
    try:
        typ, data = M.select(folder or "INBOX", readonly=True)
        if typ != "OK":
            return []
        typ, data = M.fetch("1:*", "(UID FLAGS BODY.PEEK[])")
        out = []
        letters = {"\\Seen": "S", "\\Flagged": "F", "\\Answered": "R",
                   "\\Deleted": "T", "\\Draft": "D"}
        for item in data:
            if not isinstance(item, tuple):
                continue
            head = item[0].decode()
            uid = re.search(r"UID (\d+)", head).group(1)
            fl = re.search(r"FLAGS \(([^)]*)\)", head).group(1).split()
            name = "mbox,U=%s:2,%s" % (uid, "".join(
                sorted(letters[f] for f in fl if f in letters)))
            out.append((name, item[1]))
        return out
    finally:
        M.logout()


def by_subject(files, subject):
    """The (name, data) whose Subject is subject, else (None, None)."""
    pat = b"\nSubject: " + subject.encode() + b"\n"
    for name, data in files:
        if pat in b"\n" + lf(data):
            return name, data
    return None, None


def flags_of(name):
    """Maildir flags of a file name ("" without an info part)."""
    return name.split(":2,", 1)[1] if name and ":2," in name else ""


def run_tool(argv, what, timeout=120, **kw):
    """Run a client; on failure its output is shown as a diag."""
    try:
        r = subprocess.run(argv, capture_output=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as e:
        t.diag("%s: timed out after %d s: %r" % (what, timeout, e.stderr))
        return None
    return r


def show(r, what):
    if r is None:
        return
    t.diag("%s: exit %d" % (what, r.returncode))
    t.diag("stdout: " + r.stdout.decode("utf-8", "replace")[-3000:])
    t.diag("stderr: " + r.stderr.decode("utf-8", "replace")[-3000:])


def connect(d, ctx):
    M = imaplib.IMAP4_SSL("127.0.0.1", d.imaps_port, ssl_context=ctx,
                          timeout=TIMEOUT)
    M.login("alice", "secret")
    return M


# mbsync ---------------------------------------------------------------

def mbsync_rc(env, d, near, starttls=False):
    rc = os.path.join(env.dir, "mbsyncrc" + ("2" if starttls else ""))
    with open(rc, "w") as f:
        f.write("""IMAPAccount far
Host localhost
Port %d
User alice
Pass secret
SSLType %s
CertificateFile %s
SystemCertificates no
%s
IMAPStore far
Account far

MaildirStore near
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel both
Far :far:
Near :near:
Patterns *
Create Both
Expunge Both
Sync All
SyncState *
""" % (d.imap_port if starttls else d.imaps_port,
       "STARTTLS" if starttls else "IMAPS", d.cert,
       "AuthMechs LOGIN\n" if starttls else "", near, near))
    return rc


def mbsync(rc, what):
    r = run_tool(["mbsync", "-Dn", "-c", rc, "-a"], what)
    ok = r is not None and r.returncode == 0
    if not t.ok(ok, "mbsync %s: exit 0" % what):
        show(r, "mbsync " + what)
    if r is not None:
        bad = protocol_errors(r.stdout + r.stderr)
        t.ok(not bad, "mbsync %s: no command answered NO or BAD (%r)" %
             (what, bad))
    return ok


def protocol_errors(out):
    """Tagged NO/BAD answers and the commands they answer, from a
    client's protocol trace (mbsync -Dn: ">>> TAG CMD" / "TAG NO ...")."""
    sent = {}
    bad = []
    for ln in out.decode("utf-8", "replace").splitlines():
        m = re.search(r">>> (\d+) (.*)", ln)
        if m:
            sent[m.group(1)] = m.group(2)
            continue
        m = re.match(r"^(?:\S+ )?(\d+) (NO|BAD)\b(.*)", ln)
        if m and m.group(1) in sent:
            bad.append((sent[m.group(1)], m.group(2) + m.group(3)))
    return bad


def test_mbsync(env, d, ctx):
    if not shutil.which("mbsync"):
        t.diag("mbsync not installed: mbsync part skipped")
        return
    arch = ARCH
    near = os.path.join(env.dir, "near")
    os.makedirs(near)
    rc = mbsync_rc(env, d, near)
    mark = d.mark()
    if not mbsync(rc, "first sync"):
        t.diag("loftd log: " + d.log(mark)[-3000:])
        return
    inbox = maildir_messages(os.path.join(near, "INBOX"))
    srv = server_files(env)
    t.eq(len(inbox), len(srv), "mbsync: INBOX has as many messages "
         "locally as on the server")
    wrong = []
    for name, data in srv:
        subj = re.search(rb"\nSubject: ([^\r\n]*)", data).group(1).decode()
        lname, ldata = by_subject(list(inbox.items()), subj)
        same = ldata is not None and untuid(ldata) == lf(data)
        if not same:
            wrong.append(subj)
            t.diag("%s: local:  %r" % (subj, (ldata or b"")[:300]))
            t.diag("%s: server: %r" % (subj, data[:300]))
        if not subj.startswith("bulk"):
            t.ok(same, "mbsync: %r arrived byte-exact (CRLF aside)" % subj)
    t.ok(not wrong, "mbsync: all %d INBOX messages arrived byte-exact, "
         "%d bulk ones among them (wrong: %r)" % (len(srv), BULK, wrong))
    for subj, body in ODD.items():
        _, ldata = by_subject(list(inbox.items()), subj)
        got = untuid(ldata).split(b"\n\n", 1)[1] if ldata else None
        todo = None
        if env.fmt == "mbox" and subj == "odd nonl":
            todo = ("mbox cannot record a missing final newline: "
                    "loft-deliver ends the message with one before the "
                    "separator, and IMAP serves it")
        if not t.ok(got == lf(body), "mbsync: the body of %r is what was "
                    "delivered" % subj, todo=todo):
            t.diag("got:  %r" % (got[:300] if got else got,))
            t.diag("want: %r" % body[:300])
    larch = maildir_messages(os.path.join(near, "Archive"))
    t.ok(len(larch) == 1 and untuid(list(larch.values())[0]) == lf(arch),
         "mbsync: the folder Archive arrived byte-exact (%r)" %
         [v[:80] for v in larch.values()])

    # Local changes: mark "first" seen, flag "second", delete "third",
    # add a message to Archive.
    base = os.path.join(near, "INBOX")
    items = list(inbox.items())
    changed = True
    for subj, fl in (("first", "S"), ("second", "F")):
        name, _ = by_subject(items, subj)
        if name is None:
            changed = False
            continue
        fn = os.path.basename(name)
        head = fn.split(":2,")[0]
        cur_fl = "".join(sorted(set(flags_of(fn) + fl)))
        os.rename(os.path.join(base, name),
                  os.path.join(base, "cur", head + ":2," + cur_fl))
    name, _ = by_subject(items, "third")
    if name is not None:
        os.unlink(os.path.join(base, name))
    else:
        changed = False
    t.ok(changed, "mbsync: the local changes could be made")
    added = message("local add", "written by mbsync's near side\n")
    newname = "%d.loftlocal.%d,U=0:2,S" % (int(time.time()), os.getpid())
    with open(os.path.join(near, "Archive", "cur", newname), "wb") as f:
        f.write(added)
    # And a new local folder, nested: mbsync CREATEs it and APPENDs.
    nested = os.path.join(near, "Projects", "loft")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(nested, sub))
    proj = message("project note", "in a nested folder\n")
    with open(os.path.join(nested, "new", newname.split(":")[0]), "wb") as f:
        f.write(proj)
    mark = d.mark()
    ok = mbsync(rc, "second sync (local changes)")
    srv = server_files(env)
    n1, _ = by_subject(srv, "first")
    n2, _ = by_subject(srv, "second")
    n3, _ = by_subject(srv, "third")
    t.ok(n1 is not None and "S" in flags_of(n1),
         "mbsync: \\Seen set locally reaches the server (%s)" % n1)
    t.ok(n2 is not None and "F" in flags_of(n2),
         "mbsync: \\Flagged set locally reaches the server (%s)" % n2)
    t.ok(n3 is None, "mbsync: the message deleted locally is expunged on "
         "the server (still there: %s)" % n3)
    sarch = server_files(env, "Archive")
    an, ad = by_subject(sarch, "local add")
    t.ok(ad is not None and untuid(ad) == lf(added),
         "mbsync: the message added locally is APPENDed byte-exact (%r)" %
         [n for n, _ in sarch])
    t.ok(an is not None and "S" in flags_of(an),
         "mbsync: the appended message keeps \\Seen (%s)" % an)
    sproj = server_files(env, "Projects/loft")
    _, pd = by_subject(sproj, "project note")
    t.ok(pd is not None and untuid(pd) == lf(proj),
         "mbsync: a new local folder Projects/loft is created on the server "
         "with its message (%r)" % [n for n, _ in sproj])
    if not ok or n3 is not None or ad is None or pd is None:
        t.diag("loftd log: " + d.log(mark)[-3000:])

    # A server delivery after that reaches the local side.
    env.deliver("alice", message("late", "after the second sync\n"))
    mbsync(rc, "third sync (new mail on the server)")
    inbox = maildir_messages(os.path.join(near, "INBOX"))
    _, sl = by_subject(server_files(env), "late")
    _, ll = by_subject(list(inbox.items()), "late")
    t.ok(sl is not None and ll is not None and lf(sl) == untuid(ll),
         "mbsync: a later delivery is fetched byte-exact")
    # Nothing changed: a fourth run must change nothing either side.
    before = (server_files(env), server_files(env, "Archive"),
              maildir_messages(os.path.join(near, "INBOX")))
    mbsync(rc, "fourth sync (nothing to do)")
    after = (server_files(env), server_files(env, "Archive"),
             maildir_messages(os.path.join(near, "INBOX")))
    t.ok(before == after, "mbsync: a sync with nothing to do changes nothing")
    # The same over imap:// with STARTTLS and LOGIN (above: IMAPS and
    # mbsync's first choice, SCRAM-SHA-256 through libsasl2).
    near2 = os.path.join(env.dir, "near2")
    os.makedirs(near2)
    rc2 = mbsync_rc(env, d, near2, starttls=True)
    mbsync(rc2, "STARTTLS + LOGIN, fresh sync")
    srv = sorted(lf(x) for _, x in server_files(env))
    loc = sorted(untuid(x) for x in
                 maildir_messages(os.path.join(near2, "INBOX")).values())
    t.ok(len(srv) > 0 and srv == loc,
         "mbsync STARTTLS: INBOX equals the server (%d vs %d)" %
         (len(loc), len(srv)))
    # A flag set on the server reaches the local file name.
    M = connect(d, ctx)
    M.select("INBOX")
    typ, data = M.uid("STORE", str(uid_of(env, 1)[0]), "+FLAGS", "(\\Answered)")
    t.ok(typ == "OK", "setup: UID STORE +FLAGS (\\Answered) (%r)" % (data,))
    M.logout()
    mbsync(rc, "fifth sync (a flag set on the server)")
    name, _ = by_subject(list(maildir_messages(os.path.join(near, "INBOX")).items()),
                         "first")
    t.ok(name is not None and "R" in flags_of(name) and "S" in flags_of(name),
         "mbsync: \\Answered set on the server reaches the local file (%s)" %
         name)


# offlineimap ----------------------------------------------------------

def test_offlineimap(env, d, ctx):
    if not shutil.which("offlineimap"):
        t.diag("offlineimap not installed: offlineimap part skipped")
        return
    local = os.path.join(env.dir, "oi")
    rc = os.path.join(env.dir, "offlineimaprc")
    with open(rc, "w") as f:
        f.write("""[general]
accounts = test
metadata = %s/oimeta
ui = basic

[Account test]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = %s

[Repository remote]
type = IMAP
remotehost = localhost
remoteport = %d
ssl = yes
sslcacertfile = %s
remoteuser = alice
remotepass = secret
""" % (env.dir, local, d.imaps_port, d.cert))
    ok = offlineimap(env, d, rc, "first sync")
    for folder, sub in (("INBOX", None), ("Archive", "Archive")):
        srv = [lf(x) for _, x in server_files(env, sub)]
        loc = [lf(x) for x in maildir_messages(os.path.join(local, folder)).values()]
        # offlineimap may add an X-OfflineIMAP header only to what it
        # uploads; downloads must be the server's bytes.
        t.ok(len(srv) > 0 and sorted(srv) == sorted(loc),
             "offlineimap: %s locally equals the server (%d vs %d)" %
             (folder, len(loc), len(srv)))
    if not ok:
        return
    # Back the other way: flag a message locally, sync, see it on the server.
    inbox = os.path.join(local, "INBOX")
    items = list(maildir_messages(inbox).items())
    name, _ = by_subject(items, "second")
    if not t.ok(name is not None, "offlineimap: 'second' is local"):
        return
    head = os.path.basename(name).split(":2,")[0]
    fl = "".join(sorted(set(flags_of(os.path.basename(name)) + "D")))
    os.rename(os.path.join(inbox, name),
              os.path.join(inbox, "cur", head + ":2," + fl))
    offlineimap(env, d, rc, "second sync (\\Draft set locally)")
    sn, _ = by_subject(server_files(env), "second")
    t.ok(sn is not None and "D" in flags_of(sn),
         "offlineimap: \\Draft set locally reaches the server (%s)" % sn)


def offlineimap(env, d, rc, what):
    """One offlineimap run with its IMAP trace; asserts exit 0, no ERROR,
    and no command answered NO or BAD."""
    mark = d.mark()
    r = run_tool(["offlineimap", "-c", rc, "-o", "-u", "basic", "-d", "imap"],
                 "offlineimap", env=dict(os.environ, HOME=env.dir))
    out = (r.stdout + r.stderr) if r is not None else b""
    ok = r is not None and r.returncode == 0 and b"ERROR" not in out
    if not t.ok(ok, "offlineimap %s: exit 0, no ERROR" % what):
        show(r, "offlineimap")
        t.diag("loftd log: " + d.log(mark)[-3000:])
    # imaplib2's trace: "writer > b'TAG CMD\r\n'", "reader < b'TAG NO ...'"
    sent, bad = {}, []
    for ln in out.decode("utf-8", "replace").splitlines():
        m = re.search(r"writer > b'([A-Z]+\d+) (.*?)(\\r\\n)?'$", ln)
        if m:
            sent[m.group(1)] = m.group(2)
            continue
        m = re.search(r"reader < b'([A-Z]+\d+) (NO|BAD)\b(.*?)(\\r\\n)?'$", ln)
        if m:
            bad.append((sent.get(m.group(1)), m.group(2) + m.group(3)))
    t.ok(not bad and len(sent) > 3,
         "offlineimap %s: no command answered NO or BAD (%d commands; %r)" %
         (what, len(sent), bad))
    return ok


# curl ------------------------------------------------------------------

def test_curl(env, d, ctx):
    if not shutil.which("curl"):
        t.diag("curl not installed: curl part skipped")
        return
    base = ["curl", "-sS", "--cacert", d.cert, "-u", "alice:secret"]
    url = "imap://localhost:%d/" % d.imap_port
    r = run_tool(base + ["--ssl-reqd", url], "curl LIST", timeout=60)
    out = r.stdout if r else b""
    ok = r is not None and r.returncode == 0 and b"INBOX" in out and \
        b"Archive" in out and b"LIST" in out
    if not t.ok(ok, "curl imap:// (STARTTLS): LIST shows INBOX and Archive"):
        show(r, "curl " + url)
    _, want = server_files(env)[0] if server_files(env) else (None, b"")
    uid1 = uid_of(env, 1)
    for scheme, port, extra in (("imap", d.imap_port, ["--ssl-reqd"]),
                                ("imaps", d.imaps_port, [])):
        url = "%s://localhost:%d/INBOX;UID=%d" % (scheme, port, uid1[0])
        r = run_tool(base + extra + [url], "curl " + url, timeout=60)
        ok = r is not None and r.returncode == 0 and \
            lf(r.stdout) == lf(uid1[1])
        if not t.ok(ok, "curl %s: INBOX;UID=%d is the stored message" %
                    (scheme + "://", uid1[0])):
            show(r, "curl " + url)
    # A nested folder in the URL, its separator escaped (mbsync made it).
    pf = server_files(env, "Projects/loft")
    if not pf:
        t.diag("no folder Projects/loft (mbsync skipped?): curl check skipped")
        return
    url = "imaps://localhost:%d/Projects%%2Floft;UID=1" % d.imaps_port
    r = run_tool(base + [url], "curl " + url, timeout=60)
    ok = r is not None and r.returncode == 0 and len(pf) == 1 and \
        lf(r.stdout) == lf(pf[0][1])
    if not t.ok(ok, "curl: Projects/loft;UID=1 is the stored message"):
        show(r, "curl " + url)
    # An unknown UID is an error, not a hang nor an empty success.
    url = "imaps://localhost:%d/INBOX;UID=999999" % d.imaps_port
    r = run_tool(base + [url], "curl " + url, timeout=60)
    t.ok(r is not None and r.returncode != 0 and r.stdout == b"",
         "curl: a UID that does not exist fails cleanly (exit %s)" %
         (r.returncode if r else None))


def uid_of(env, n):
    """(uid, bytes) of the n-th message of INBOX by UID on disk."""
    files = []
    for name, data in server_files(env):
        m = re.search(r",U=(\d+)", name)
        files.append((int(m.group(1)) if m else 0, data))
    files.sort()
    return files[n - 1] if len(files) >= n else (n, b"")


# mutt in tmux ---------------------------------------------------------

SESSION = "loftimapmutt%d" % os.getpid()


def tmux(*args):
    return subprocess.run(["tmux"] + list(args), capture_output=True, text=True)


def screen():
    return tmux("capture-pane", "-p", "-t", SESSION).stdout


def wait_for(text, tries=150):
    for _ in range(tries):
        s = screen()
        if text in s:
            return s
        time.sleep(0.1)
    return screen()


def test_mutt(env, d, ctx):
    if not shutil.which("mutt") or not shutil.which("tmux"):
        t.diag("mutt or tmux not installed: mutt part skipped")
        return
    # Clear \Flagged and \Seen first (mbsync set them) so that what
    # the server shows afterwards is what mutt did.
    M = connect(d, ctx)
    M.select("INBOX")
    M.store("1:*", "-FLAGS", "(\\Flagged \\Seen)")
    M.logout()
    uid1, first = uid_of(env, 1)
    subj = re.search(rb"\nSubject: ([^\r\n]*)", first).group(1).decode()
    subj2 = re.search(rb"\nSubject: ([^\r\n]*)",
                      uid_of(env, 2)[1]).group(1).decode()
    count = len(server_files(env))
    muttrc = os.path.join(env.dir, "muttrc")
    with open(muttrc, "w") as f:
        f.write('set ssl_ca_certificates_file="%s"\n'
                'set certificate_file="%s/mutt_certs"\n'
                'set imap_user=alice\nset imap_pass=secret\n'
                'set ssl_force_tls=yes\nset ssl_starttls=yes\n'
                'set folder="imaps://localhost:%d/"\n'
                'set spoolfile="imaps://localhost:%d/INBOX"\n'
                'set sort=mailbox-order\nset mark_old=no\nset move=no\n'
                'set quit=yes\nset delete=yes\nset resolve=no\n'
                'set pager_stop=yes\nset imap_check_subscribed=no\n'
                'set imap_idle=yes\nset timeout=1\nset mail_check=1\n'
                'set header_cache=""\nset message_cachedir=""\n'
                'set status_format="STATUS %%f msgs=%%m"\n'
                'set index_format="IDX %%4C %%Z %%s"\n'
                % (d.cert, env.dir, d.imaps_port, d.imaps_port))
    cmd = ["env", "HOME=" + env.dir, "TERM=screen", "mutt", "-n", "-F",
           muttrc, "-f", "imaps://localhost:%d/INBOX" % d.imaps_port]
    mark = d.mark()
    tmux("new-session", "-d", "-s", SESSION, "-x", "120", "-y", "40",
         " ".join("'%s'" % c for c in cmd))
    try:
        s = wait_for("IDX    1")
        if not t.ok("IDX    1" in s and subj in s,
                    "mutt: opens imaps://.../INBOX and lists %r" % subj):
            t.diag("screen:\n" + s)
            t.diag("loftd log: " + d.log(mark)[-3000:])
            return
        # mutt puts the cursor on the first unread message: jump to 1.
        tmux("send-keys", "-t", SESSION, "1", "Enter")
        time.sleep(0.3)
        tmux("send-keys", "-t", SESSION, "Enter")
        s = wait_for("Subject: " + subj)
        if not t.ok("Subject: " + subj in s and "body of " + subj in s,
                    "mutt: message 1 opens in the pager with its subject "
                    "and body"):
            t.diag("screen:\n" + s)
        tmux("send-keys", "-t", SESSION, "i")   # back to the index
        time.sleep(0.3)
        tmux("send-keys", "-t", SESSION, "F")   # flag message 1
        time.sleep(0.3)
        tmux("send-keys", "-t", SESSION, "j", "d")   # delete message 2
        time.sleep(0.3)
        tmux("send-keys", "-t", SESSION, "$")   # sync to the server
        want = "msgs=%d" % (count - 1)
        s = wait_for(want)
        if not t.ok(want in s, "mutt: $ syncs the deletion of %r (%s)" %
                    (subj2, want)):
            t.diag("screen:\n" + s)
        # New mail while mutt sits in the index (IMAP IDLE / NOOP polling).
        env.deliver("alice", message("for mutt", "while open\n"))
        want = "msgs=%d" % count
        s = wait_for(want, tries=200)
        if not t.ok(want in s,
                    "mutt: a delivery shows up while it is open (%s)" % want):
            t.diag("screen:\n" + s)
        # Another client expunges while mutt idles: mutt's count drops.
        M = connect(d, ctx)
        M.select("INBOX")
        typ, data = M.search(None, "SUBJECT", '"for mutt"')
        num = data[0].split()[-1].decode() if typ == "OK" and data[0] else "0"
        M.store(num, "+FLAGS", "(\\Deleted)")
        typ, data = M.expunge()
        M.logout()
        want = "msgs=%d" % (count - 1)
        s = wait_for(want, tries=200)
        if not t.ok(want in s, "mutt: sees another session's EXPUNGE of "
                    "message %s while open (%s; EXPUNGE said %r)" %
                    (num, want, data)):
            t.diag("screen:\n" + s)
        tmux("send-keys", "-t", SESSION, "q")
        for _ in range(100):
            if tmux("has-session", "-t", SESSION).returncode != 0:
                break
            time.sleep(0.1)
    finally:
        tmux("kill-session", "-t", SESSION)
    srv = server_files(env)
    name = None
    for n, data in srv:
        if re.search(r",U=%d(\D|$)" % uid1, n):
            name = n
    if not t.ok(name is not None and "F" in flags_of(name) and
                "S" in flags_of(name),
                "mutt: the server's flags for UID %d include F and S (%s)" %
                (uid1, name)):
        t.diag("last screen:\n" + s)
        t.diag("loftd log: " + d.log(mark)[-3000:])
    gone = by_subject(srv, subj2)[0]
    t.ok(gone is None, "mutt: the message it deleted is gone from the "
         "server (still there: %s)" % gone)


# IDLE beside STORE/EXPUNGE ---------------------------------------------

def test_idle(env, d, ctx):
    for i in range(2):
        env.deliver("alice", message("idle %d" % i, "x\n"))
    r = Lines(d.imaps_port, ctx)
    *_, tagged = r.cmd("a1", "LOGIN alice secret")
    t.ok(tagged.startswith("a1 OK"), "idle: LOGIN (%s)" % tagged)
    *lines, tagged = r.cmd("a2", "SELECT INBOX")
    exists = [int(x.split()[1]) for x in lines
              if x.startswith("* ") and x.endswith(" EXISTS")]
    t.ok(tagged.startswith("a2 OK") and exists, "idle: SELECT INBOX (%s)" %
         tagged)
    n = exists[-1] if exists else 0
    # Bring every flag to a known state first.
    *_, tagged = r.cmd("a3", "STORE 1:* FLAGS.SILENT ()")
    t.ok(tagged.startswith("a3 OK"), "idle: STORE 1:* FLAGS.SILENT () (%s)" %
         tagged)
    r.send("a4 IDLE")
    ln = r.line()
    t.ok(ln.startswith("+"), "idle: IDLE continuation (%s)" % ln)

    M = connect(d, ctx)
    M.select("INBOX")
    typ, data = M.store("1", "+FLAGS", "(\\Flagged)")
    t.ok(typ == "OK", "idle: other session: STORE 1 +FLAGS (\\Flagged) (%r)" %
         (data,))
    got = []
    want = "* 1 FETCH (FLAGS (\\Flagged))"
    try:
        while not any(want in x or ("* 1 FETCH" in x and "\\Flagged" in x)
                      for x in got):
            got.append(r.line(timeout=8))
    except (socket.timeout, EOFError) as e:
        got.append("<%s>" % type(e).__name__)
    t.ok(any(x.startswith("* 1 FETCH") and "\\Flagged" in x for x in got),
         "idle: the idler sees * 1 FETCH (FLAGS (\\Flagged)) "
         "after the other's STORE 1 +FLAGS (\\Flagged) (got %r)" % got)

    typ, data = M.store(str(n), "+FLAGS", "(\\Deleted)")
    typ2, data2 = M.expunge()
    t.ok(typ == "OK" and typ2 == "OK" and data2 == [str(n).encode()],
         "idle: other session: STORE %d +FLAGS (\\Deleted), EXPUNGE (%r %r)" %
         (n, data, data2))
    got = []
    try:
        while not any(x == "* %d EXPUNGE" % n for x in got):
            got.append(r.line(timeout=8))
    except (socket.timeout, EOFError) as e:
        got.append("<%s>" % type(e).__name__)
    t.ok("* %d EXPUNGE" % n in got,
         "idle: the idler sees * %d EXPUNGE after the other's EXPUNGE "
         "(got %r)" % (n, got))
    t.ok(not any(x.startswith("* %d FETCH" % n) and "\\Deleted" not in x
                 for x in got),
         "idle: no FETCH for the expunged message without \\Deleted (%r)" % got)
    r.send("DONE")
    *lines, tagged = r.until("^a4 ")
    t.ok(tagged.startswith("a4 OK"), "idle: DONE ends IDLE (%s)" % tagged)
    *lines, tagged = r.cmd("a5", "FETCH 1:* (FLAGS)")
    fetched = len([x for x in lines if " FETCH " in x])
    t.ok(tagged.startswith("a5 OK") and fetched == n - 1,
         "idle: after DONE the idler's view has %d messages (FETCH 1:* "
         "gave %d; %s)" % (n - 1, fetched, tagged))
    r.cmd("a6", "LOGOUT")
    r.close()
    M.logout()


def main():
    for fmt in ("maildir", "mbox"):
        t.prefix = fmt + ": "
        run_format(fmt)
    t.done()


def run_format(fmt):
    env = Env(fmt=fmt)
    try:
        env.add_user("alice")
        for s in ("first", "second", "third"):
            rc, err = env.deliver("alice", message(s, "body of %s\n" % s))
            t.eq(rc, 0, "delivered %s (%s)" % (s, err.strip()))
        for subj, body in ODD.items():
            hdr = message(subj, "", extra="Content-Type: text/plain; "
                          "charset=utf-8\nContent-Transfer-Encoding: 8bit\n")
            rc, err = env.deliver("alice", hdr + body)
            t.eq(rc, 0, "delivered %r (%s)" % (subj, err.strip()))
        bad = [i for i in range(BULK) if env.deliver(
            "alice", message("bulk %d" % i, "bulk body %d\n" % i))[0] != 0]
        t.eq(bad, [], "delivered %d bulk messages" % BULK)
        d = env.start_loftd(pop3=False, pop3s=False, imap=True, imaps=True)
        ctx = tls_client_context(d.cert)
        SERVER.update(d=d, ctx=ctx)
        M = connect(d, ctx)
        # Archive is one of the folders loftd makes at a user's first
        # login; CREATE finds it there.
        typ, data = M.create("Archive")
        t.ok(typ == "NO" and b"ALREADYEXISTS" in data[0],
             "setup: Archive exists already, made at first login (%r)" % (data,))
        typ, data = M.append("Archive", None, None, ARCH)
        t.ok(typ == "OK", "setup: APPEND to Archive (%r)" % (data,))
        M.logout()
        for part in (test_mbsync, test_offlineimap, test_curl, test_mutt,
                     test_idle):
            try:
                part(env, d, ctx)
            except Exception as e:  # one client's crash must not hide the rest
                t.ok(False, "%s raised %s: %s" % (part.__name__,
                                                 type(e).__name__, e))
            if not d.alive():
                t.ok(False, "loftd died during %s" % part.__name__)
                break
        t.eq(env.stop_loftd(), 0, "loftd exits with status 0")
        bad = [ln for ln in d.log().splitlines()
               if re.search(r"(?i)panic|fatal|error|warning|signal (?!15)|"
                            r"core|abort", ln)]
        t.ok(not bad, "nothing went wrong in loftd's log (%r)" % bad[:5])
    finally:
        env.cleanup()


main()
