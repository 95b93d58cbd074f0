#!/usr/bin/env python3
"""The index follows storage changed by other programs (procmail dropping
files into new/, a mail reader moving them to cur/ with flags or deleting
them, mbox appends and rewrites) and keeps UIDs; reindex rebuilds it."""
import mailbox
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Tap, message, need_binaries  # noqa: E402

t = Tap()
need_binaries(t)


def guids(env, user, folder="INBOX"):
    r = env.ctl("index", "list", user, folder)
    return {int(ln.split()[0]): [w for w in ln.split() if w.startswith("guid=")][0]
            for ln in r.stdout.decode().splitlines() if not ln.startswith("#")}


def listing(env, user, folder="INBOX"):
    """{uid: (flags, location)} and the folder line, from loftctl."""
    r = env.ctl("index", "list", user, folder)
    if r.returncode != 0:
        t.diag(r.stderr.decode())
        return {}, None
    out = {}
    head = None
    for line in r.stdout.decode().splitlines():
        if line.startswith("#"):
            head = dict(kv.split("=") for kv in line.split()[2:])
            continue
        parts = line.split()
        out[int(parts[0])] = (parts[1], parts[-1])
    return out, head


# --- Maildir -------------------------------------------------------------
env = Env("maildir")
env.add_user("alice")
for i in range(3):
    env.deliver("alice", message("m%d" % i))
root = env.user_dir("alice")
msgs, head = listing(env, "alice")
t.eq(sorted(msgs), [1, 2, 3], "three deliveries have UIDs 1..3")
uv = head["uidvalidity"]

# A foreign program drops a file into new/ the way procmail names them.
foreign = os.path.join(root, "new", "1764410000.12345_0.otherhost")
with open(foreign, "wb") as f:
    f.write(message("foreign"))
env.own(foreign)
msgs, head = listing(env, "alice")
t.eq(sorted(msgs), [1, 2, 3, 4], "foreign file indexed with UID 4")
t.eq(msgs[4][1], "new/1764410000.12345_0.otherhost",
     "and left under its own name (no rename per adopted file)")
t.ok(os.path.exists(foreign), "the file is where the other program put it")
with open(os.path.join(root, "loft-uidlist"), "rb") as f:
    t.eq(f.read(), b"4 1764410000.12345_0.otherhost\n",
         "its UID is in loft-uidlist, for a rebuild from storage alone")

# A copied file whose ",U=" another message already has is renamed, so
# that a rebuild cannot trust the stale UID.
with open(os.path.join(root, msgs[1][1]), "rb") as f:
    dup = f.read()
dupname = os.path.join(root, "new", "1764410000.999_0.copy,U=1")
with open(dupname, "wb") as f:
    f.write(dup)
env.own(dupname)
msgs, _ = listing(env, "alice")
t.eq(msgs.get(5, ("", ""))[1], "new/1764410000.999_0.copy,U=5",
     "a file named with a UID that is taken gets a new one in its name")
os.unlink(os.path.join(root, msgs[5][1]))
msgs, _ = listing(env, "alice")

# A mail reader marks message 2 seen and flagged, moving it to cur/.
loc2 = msgs[2][1]
name2 = loc2.split("/", 1)[1]
os.rename(os.path.join(root, loc2), os.path.join(root, "cur", name2 + ":2,FS"))
msgs, _ = listing(env, "alice")
t.eq(msgs[2][0], "\\Seen,\\Flagged", "flags read from the cur/ name")
t.ok(msgs[2][1].startswith("cur/") and msgs[2][1].endswith(":2,FS"),
     "record follows the file to cur/")

# It deletes message 1.
os.unlink(os.path.join(root, msgs[1][1]))
msgs, head = listing(env, "alice")
t.eq(sorted(msgs), [2, 3, 4], "deleted file expunged, other UIDs kept")
t.eq(head["uidnext"], "6", "UIDNEXT stays past the expunged UIDs")

# New delivery after all that.
env.deliver("alice", message("m5"))
msgs, _ = listing(env, "alice")
t.eq(sorted(msgs), [2, 3, 4, 6], "next delivery gets UID 6")

# Python's mailbox library (as a mail reader) agrees on the set.
md = mailbox.Maildir(root, create=False)
t.eq(sorted(m["Subject"] for m in md), ["foreign", "m1", "m2", "m5"],
     "storage holds exactly the indexed messages")

# reindex keeps every UID and the UIDVALIDITY.
g_before = guids(env, "alice")
r = env.ctl("reindex", "alice")
t.ok(r.returncode == 0, "reindex exits 0")
after, head2 = listing(env, "alice")
t.eq({u: v[1] for u, v in after.items()}, {u: v[1] for u, v in msgs.items()},
     "reindex keeps UIDs and locations")
t.eq(head2["uidvalidity"], uv, "reindex keeps UIDVALIDITY")
t.eq(guids(env, "alice"), g_before, "and every message GUID")
t.eq(len(set(g_before.values())), len(g_before), "GUIDs are distinct")

# Rebuild from nothing: the index directory is lost.
shutil.rmtree(os.path.join(root, "loft-index"))
after, head3 = listing(env, "alice")
t.eq({u: v[1] for u, v in after.items()}, {u: v[1] for u, v in msgs.items()},
     "index rebuilt from storage alone keeps UIDs (names and loft-uidlist)")
t.eq(head3["uidvalidity"], uv, "and UIDVALIDITY (from loft-uidvalidity)")
t.eq(head3["uidnext"], "7", "and never reuses a UID")
env.deliver("alice", message("m6"))
after, _ = listing(env, "alice")
t.ok(7 in after, "delivery after rebuild gets UID 7")

# Folders made by other programs appear; folders removed disappear.
os.makedirs(os.path.join(root, ".Archive", "cur"))
os.makedirs(os.path.join(root, ".Archive", "new"))
os.makedirs(os.path.join(root, ".Archive", "tmp"))
with open(os.path.join(root, ".Archive", "cur", "1764410001.1_0.h:2,S"), "wb") as f:
    f.write(message("archived"))
env.own(os.path.join(root, ".Archive"))
r = env.ctl("index", "stats", "alice")
t.ok(b"Archive: uidvalidity=" in r.stdout and b"messages=1 unseen=0" in r.stdout,
     "foreign folder indexed with its seen message")
shutil.rmtree(os.path.join(root, ".Archive"))
r = env.ctl("index", "stats", "alice")
t.ok(b"Archive:" not in r.stdout, "removed folder dropped from the index")
env.cleanup()

# --- mbox ----------------------------------------------------------------
env = Env("mbox")
env.add_user("bob")
for i in range(4):
    env.deliver("bob", message("b%d" % i), "-f", "s@example.net")
inbox = env.inbox("bob")
msgs, head = listing(env, "bob")
t.eq(sorted(msgs), [1, 2, 3, 4], "mbox deliveries have UIDs 1..4")
uv = head["uidvalidity"]

# Another program appends (as procmail would, From_ line and all).
with open(inbox, "ab") as f:
    f.write(b"From other@example.net Sun Nov 29 10:00:00 2026\n" +
            message("appended") + b"\n")
msgs, _ = listing(env, "bob")
t.eq(sorted(msgs), [1, 2, 3, 4, 5], "appended message indexed as UID 5")

# A message without a final newline (mbox adds one) keeps its UID too.
env.deliver("bob", b"Subject: nonl\nMessage-ID: <nonl@x>\n\nno newline at the end")
msgs, _ = listing(env, "bob")
t.eq(sorted(msgs), [1, 2, 3, 4, 5, 6], "message without final newline is UID 6")

# A mail reader rewrites the file: deletes b1, marks b2 read (Status: RO).
mb = mailbox.mbox(inbox)
mb.lock()
for key, m in list(mb.items()):
    if m["Subject"] == "b1":
        mb.remove(key)
    elif m["Subject"] == "b2":
        m.set_flags("RO")
        mb[key] = m
mb.flush()
mb.unlock()
mb.close()
env.own(inbox)
msgs, head = listing(env, "bob")
t.eq(sorted(msgs), [1, 3, 4, 5, 6], "rewrite: deleted message expunged, UIDs kept")
t.eq(msgs[3][0], "\\Seen", "Status: RO read as \\Seen")
t.eq(head["uidvalidity"], uv, "UIDVALIDITY unchanged by the rewrite")
env.deliver("bob", message("b7"))
msgs, _ = listing(env, "bob")
t.ok(7 in msgs, "next delivery gets UID 7")

g_before = guids(env, "bob")
r = env.ctl("reindex", "bob")
t.eq(guids(env, "bob"), g_before, "mbox reindex keeps message GUIDs")
after, head2 = listing(env, "bob")
t.ok(r.returncode == 0 and sorted(after) == sorted(msgs) and
     head2["uidvalidity"] == uv, "mbox reindex keeps UIDs through the old index")

shutil.rmtree(os.path.join(env.user_dir("bob"), ".loft-index"))
after, head3 = listing(env, "bob")
t.ok(head3 is not None and head3["uidvalidity"] != uv,
     "mbox rebuilt without its index gets a new UIDVALIDITY")
t.eq(len(after), 6, "and finds all 6 messages")
env.cleanup()

t.done()
