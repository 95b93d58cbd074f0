#!/bin/bash
# selftest.sh: checks that the benchmark tools measure what they claim and
# that their checks can fail.  Prints TAP; takes about four minutes.
#
#   bench/selftest.sh
#
# - corpus.py is deterministic (same seed, same bytes; a smaller corpus is
#   a prefix of a larger one; another seed differs), writes well-formed
#   MIME, and hits the size classes it promises; planting a word and a
#   sender changes only the messages planted() names;
# - mailcount.py counts what corpus.py wrote, as a Maildir and as an mbox
#   whose bodies hold "From " lines;
# - deliver.sh and reindex.sh, run against stand-ins for loft
#   (bench/selftest/loft-deliver and loftctl), report ok for a stand-in that
#   delivers everything and FAIL for one that loses every fifth message or
#   refuses it with 75.  The delivery part needs dovecot-lda, like
#   deliver.sh; without it those tests are skipped.
# - rss.py sums the memory of a process tree;
# - pop3.sh, run as root against a stand-in loftd (bench/selftest/loftd),
#   reports ok for a good server and FAIL for one that loses a message,
#   changes bytes or is too slow, sees memory held per session, and runs
#   Dovecot's POP3 server standalone (skipped without dovecot-pop3d).
# - imap.sh, run as root, reports ok for Dovecot's IMAP server standalone
#   (both formats) and, against a stand-in loftd that relays to Dovecot's
#   IMAP server (written below), FAIL for wrong flags, a lost message, a
#   wrong SEARCH, a FETCH slower than FETCH_LIMIT and a delivery that never
#   shows in IDLE (skipped without dovecot-imapd).
# Trusted input: none beyond this tree.

set -u
BENCH=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python3}
T=$(mktemp -d "${TMPDIR:-/tmp}/loft-selftest.XXXXXX")
trap 'rm -rf "$T"' EXIT
chmod 755 "$T"

n=0
failed=0
ok() {
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		failed=$((failed + 1))
	fi
}
skip() {
	n=$((n + 1))
	echo "ok $n # skip $1"
}

corpus() {
	"$PYTHON" "$BENCH/corpus.py" "$@" >/dev/null
}

# corpus.py
corpus -n 60 --dir "$T/a"
corpus -n 60 --dir "$T/b"
diff -r "$T/a" "$T/b" >/dev/null
ok $? "same seed, same corpus"
corpus -n 25 --dir "$T/c"
same=0
for i in $(seq -f %06g 1 25); do
	cmp -s "$T/a/msg-$i.eml" "$T/c/msg-$i.eml" || same=1
done
ok $same "N=25 is the first 25 of N=60"
[ ! -e "$T/c/msg-000026.eml" ] && [ -e "$T/c/msg-000025.eml" ]
ok $? "N=25 writes 25 files, not 26"
corpus -n 60 -s 2 --dir "$T/d"
! cmp -s "$T/a/msg-000001.eml" "$T/d/msg-000001.eml"
ok $? "another seed, other bytes"
grep -q 'count=60 bytes=' "$T/a/MANIFEST"
ok $? "MANIFEST records the count"
# Planting (for imap.sh's SEARCH) changes the planted messages only, and
# puts the word and the sender where planted() says.
corpus -n 60 --plant-every 10 --dir "$T/p"
"$PYTHON" -B - "$BENCH" "$T/a" "$T/p" <<'EOF'
import os, sys
sys.path.insert(0, sys.argv[1])
from corpus import number_of, planted
bad = 0
for i in range(1, 61):
	name = "msg-%06d.eml" % i
	a = open(os.path.join(sys.argv[2], name), "rb").read()
	p = open(os.path.join(sys.argv[3], name), "rb").read()
	kind = planted(i, 10)
	word = b"quokkaberry" in p
	sender = b"\nFrom: Planted Sender <planted.sender@example.com>\n" in p
	bad += (a != p) != (kind is not None)
	bad += word != (kind == "word") or sender != (kind == "from")
	bad += number_of(p) != i or b"quokkaberry" in a
print("# planted: %d of 60 messages wrong" % bad)
sys.exit(1 if bad else 0)
EOF
ok $? "plant: only messages 5, 10, 15... change, word and sender as planted() says"

corpus -n 400 --dir "$T/mixed"
"$PYTHON" - "$T/mixed" <<'EOF'
import email, glob, os, sys
from email import policy
files = sorted(glob.glob(os.path.join(sys.argv[1], "msg-*.eml")))
sizes = [os.path.getsize(f) for f in files]
bad = 0
kinds = {"multipart/alternative": 0, "multipart/mixed": 0, "list": 0,
         "from-line": 0}
for f in files:
	data = open(f, "rb").read()
	m = email.message_from_bytes(data, policy=policy.default)
	for part in m.walk():
		if part.defects:
			bad += 1
		if not part.is_multipart():
			part.get_content()
	if any(len(l) > 998 for l in data.split(b"\n")) or b"\r" in data:
		bad += 1
	ct = m.get_content_type()
	if ct in kinds:
		kinds[ct] += 1
	kinds["list"] += "List-Id" in m
	kinds["from-line"] += b"\nFrom " in data
big = sum(1 for s in sizes if s >= 100_000)
mid = sum(1 for s in sizes if 2000 <= s <= 20_000)
print("# sizes: %d messages, %d in 2-20 KB, %d of 100 KB or more, "
      "largest %d; %s" % (len(sizes), mid, big, max(sizes), kinds))
ok = (bad == 0 and len(files) == 400 and mid >= 200 and 5 <= big <= 40
      and max(sizes) <= 1_100_000 and all(v > 0 for v in kinds.values()))
sys.exit(0 if ok else 1)
EOF
ok $? "mixed corpus: well-formed MIME, LF only, lines <= 998, size classes"

# mailcount.py, against what corpus.py wrote both ways
corpus -n 300 --maildir "$T/md" --mbox "$T/mb/inbox"
read -r c _ < <("$PYTHON" "$BENCH/mailcount.py" maildir "$T/md")
[ "$c" = 300 ]
ok $? "mailcount maildir: 300 ($c)"
read -r c _ < <("$PYTHON" "$BENCH/mailcount.py" mbox "$T/mb/inbox")
[ "$c" = 300 ]
ok $? "mailcount mbox: 300 ($c), escaped From lines not counted"
grep -q '^>From ' "$T/mb/inbox"
ok $? "the mbox has escaped From lines to get wrong"
new=$(find "$T/md/new" -type f | wc -l)
[ "$new" -gt 0 ] && [ "$new" -lt 60 ] &&
    ! find "$T/md/new" -name '*:2,*' | grep -q .
ok $? "maildir: a few ($new) in new/, without flags"
bad=0
for f in "$T"/md/cur/*; do
	s=${f##*,S=}
	s=${s%%:*}
	[ "$s" = "$(stat -c %s "$f")" ] || bad=1
done
ok $bad "maildir: every S= is the file size"
printf 'From a@b Mon Jan  1 00:00:00 2024\nx\n\nFrom a@b Mon Jan  1 00:00:01 2024\ny\n' \
    >"$T/two"
read -r c _ < <("$PYTHON" "$BENCH/mailcount.py" mbox "$T/two")
[ "$c" = 2 ]
ok $? "mailcount mbox: separator at offset 0 and after an empty line"

# deliver.sh and reindex.sh against stand-ins
mkdir -p "$T/standin"
cp "$BENCH/selftest/loft-deliver" "$BENCH/selftest/loftctl" "$T/standin/"
chmod 755 "$T/standin" "$T/standin/loft-deliver" "$T/standin/loftctl"
harness() {
	sed "s/^mode=good\$/mode=$1/" "$BENCH/selftest/loft-deliver" \
	    >"$T/standin/loft-deliver"
	shift
	env BENCH_QUIET=1 N=30 WARM=2 FSYNCS=on OUT="$T/out" \
	    LOFT_DELIVER="$T/standin/loft-deliver" LOFTCTL="$T/standin/loftctl" \
	    "$@" >/dev/null 2>>"$T/harness.log"
}
row() {
	awk -F'\t' -v m="$2" -v f="$3" '$4 == m && $2 == f { print $8 }' "$1"
}

if [ -x "${DOVECOT_LDA:-/usr/lib/dovecot/dovecot-lda}" ]; then
	harness good RESULTS="$T/good.tsv" "$BENCH/deliver.sh"
	[ "$(row "$T/good.tsv" loft maildir)" = ok ] &&
	    [ "$(row "$T/good.tsv" loft mbox)" = ok ]
	ok $? "deliver.sh: a stand-in that delivers everything is ok"
	[ "$(row "$T/good.tsv" dovecot maildir)" = ok ] &&
	    [ "$(row "$T/good.tsv" dovecot mbox)" = ok ]
	ok $? "deliver.sh: dovecot-lda delivers everything, standalone"
	harness drop RESULTS="$T/drop.tsv" FORMATS=maildir "$BENCH/deliver.sh"
	[ "$(row "$T/drop.tsv" loft maildir)" = FAIL ] &&
	    grep -q 'messages on disk, expected 32' "$T/drop.tsv"
	ok $? "deliver.sh: lost mail (exit 0) is FAIL"
	harness fail RESULTS="$T/fail.tsv" FORMATS=mbox "$BENCH/deliver.sh"
	[ "$(row "$T/fail.tsv" loft mbox)" = FAIL ] &&
	    grep -q 'deliveries failed (last status 75)' "$T/fail.tsv"
	ok $? "deliver.sh: exit 75 is FAIL"
	"$PYTHON" "$BENCH/report.py" "$T/good.tsv" "$T/drop.tsv" \
	    >"$T/report.txt"
	grep -q 'maildir .* FAIL ' "$T/report.txt" &&
	    grep -q 'lost\|messages on disk' "$T/report.txt"
	ok $? "report.py: a failed pass shows FAIL and why, not a number"
else
	for i in 1 2 3 4 5; do
		skip "dovecot-lda not installed"
	done
fi

harness good RESULTS="$T/rgood.tsv" RN=200 "$BENCH/reindex.sh"
[ "$(awk -F'\t' '$4 == "loft" && $8 == "ok"' "$T/rgood.tsv" | wc -l)" = 4 ]
ok $? "reindex.sh: first and second run ok in both formats"
# Lose a message between the two runs: the second run must be FAIL.
cat >"$T/standin/loftctl-lose" <<EOF
#!/bin/bash
# The loftctl stand-in, but the second reindex deletes one message.
d=\$(sed -n 's/^mail_location = maildir://p' "\$2")
d=\${d//%u/bench}
"$T/standin/loftctl" "\$@"
if [ "\$3" = reindex ]; then
	[ -e "\$d/.once" ] && rm -f "\$(ls -d "\$d"/cur/* | head -1)"
	touch "\$d/.once"
fi
exit 0
EOF
chmod 755 "$T/standin/loftctl-lose"
harness good RESULTS="$T/rlose.tsv" RN=200 FORMATS=maildir \
    LOFTCTL="$T/standin/loftctl-lose" "$BENCH/reindex.sh"
[ "$(awk -F'\t' '$4 == "loft" && $5 == "second" { print $8 }' \
    "$T/rlose.tsv")" = FAIL ] &&
    grep -q '199 messages on disk, expected 200' "$T/rlose.tsv"
ok $? "reindex.sh: a reindex that loses a message is FAIL"

# rss.py: a tree of a parent and three children, each child holding 8 MiB
# of its own.
"$PYTHON" -B - "$BENCH" <<'EOF'
import os, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import rss
parent = subprocess.Popen([sys.executable, "-c", """
import os, time
for _ in range(3):
	if os.fork() == 0:
		hold = b"\\x01" * (8 << 20)
		time.sleep(30)
		os._exit(0)
time.sleep(30)
"""])
time.sleep(1.5)
procs, rss_kib, pss_kib, anon_kib, _ = rss.usage(parent.pid)
parent.kill()
print("# rss.py: %d processes, RSS %d KiB, PSS %d KiB" % (procs, rss_kib,
                                                        pss_kib))
sys.exit(0 if procs == 4 and anon_kib >= 3 * 8192 and
         pss_kib >= anon_kib and rss_kib >= pss_kib else 1)
EOF
ok $? "rss.py sums a process tree (4 processes, 3 x 8 MiB)"

# pop3.sh and pop3_client.py, against a stand-in loftd (and Dovecot's own
# POP3 server, if installed): they need root, as pop3.sh does.
pop3() {
	sed "s/^mode = \"good\"\$/mode = \"$1\"/" "$BENCH/selftest/loftd" \
	    >"$T/standin/loftd"
	chmod 755 "$T/standin/loftd"
	shift
	env BENCH_QUIET=1 POP3_N=300 LOGIN_N=3 IDLE_N=4 POP3_TLS=0 \
	    POP3_SERVERS=loft OUT="$T/out" LOFTD="$T/standin/loftd" "$@" \
	    "$BENCH/pop3.sh" >/dev/null 2>>"$T/harness.log"
}
# cell FILE SERVER FORMAT STEP: "STATUS NOTE" of one row.
cell() {
	awk -F'\t' -v s="$2" -v f="$3" -v t="$4" \
	    '$4 == s && $2 == f && $5 == t { print $8, $9 }' "$1"
}
if [ "$(id -u)" != 0 ]; then
	for i in 1 2 3 4 5 6 7; do
		skip "pop3.sh needs root"
	done
else
	pop3 good RESULTS="$T/p-good.tsv" POP3_FORMATS="maildir mbox"
	[ "$(cut -f8 "$T/p-good.tsv" | sort -u)" = ok ] &&
	    [ "$(wc -l <"$T/p-good.tsv")" = 49 ]
	ok $? "pop3.sh: every step ok against a good server, both formats"
	pop3 lose RESULTS="$T/p-lose.tsv" POP3_FORMATS=maildir
	cell "$T/p-lose.tsv" loft maildir first-total |
	    grep -q '^FAIL .*UIDL lists 299 messages, expected 300'
	ok $? "pop3.sh: a server that loses a message is FAIL"
	pop3 corrupt,bloat RESULTS="$T/p-bad.tsv" POP3_FORMATS=mbox
	cell "$T/p-bad.tsv" loft mbox retr |
	    grep -q '^FAIL 42 messages of the corpus did not come back'
	ok $? "pop3.sh: RETR of changed bytes is FAIL"
	kib=$(awk -F'\t' '$5 == "idle-auth-pss" && $8 == "ok" {
	    print int($7) }' "$T/p-bad.tsv")
	[ "${kib:-0}" -ge 900 ] && [ "$kib" -le 1400 ]
	ok $? "pop3.sh: 1 MiB held per session shows as 1 MiB ($kib KiB)"
	pop3 slow RESULTS="$T/p-slow.tsv" POP3_FORMATS=maildir IDLE_OWNERS=0 \
	    RETR_LIMIT=1
	cell "$T/p-slow.tsv" loft maildir retr |
	    grep -q '^FAIL stopped after 1 s (RETR_LIMIT) at message [1-9]'
	ok $? "pop3.sh: RETR slower than RETR_LIMIT is FAIL, with the rate"
	"$PYTHON" "$BENCH/report.py" "$T/p-good.tsv" "$T/p-bad.tsv" \
	    >"$T/p-report.txt"
	grep -q '^  300  *one at a time  *-  *FAIL ' "$T/p-report.txt" &&
	    grep -q 'did not come back' "$T/p-report.txt" &&
	    grep -q '^  plain  median ' "$T/p-report.txt"
	ok $? "report.py: POP3 tables, FAIL and why instead of a number"
	if [ -x "${DOVECOT_POP3:-/usr/lib/dovecot/pop3}" ]; then
		pop3 good RESULTS="$T/p-dovecot.tsv" POP3_SERVERS=dovecot \
		    POP3_TLS=1 POP3_FORMATS="mbox maildir"
		[ "$(cut -f8 "$T/p-dovecot.tsv" | sort -u)" = ok ] &&
		    [ "$(wc -l <"$T/p-dovecot.tsv")" = 51 ] &&
		    grep -q 'with body lines ">From " as escaped' \
		    "$T/p-dovecot.tsv"
		ok $? "pop3.sh: Dovecot's POP3 server, standalone, TLS too"
	else
		skip "dovecot-pop3d not installed"
	fi
fi

# imap.sh and imap_client.py, as root: against Dovecot's IMAP server alone
# (both formats, with a big mailbox), and against a stand-in loftd that
# runs Dovecot's IMAP server behind a relay and spoils what its mode says,
# so that every check can be seen to fail.
cat >"$T/imapd.in" <<'EOF'
#!/usr/bin/env python3
# A stand-in for loftd, for bench/selftest.sh's IMAP tests only:
# "loftd -c FILE -f" runs Dovecot's IMAP server (dovecot -F) on a port of
# its own, with FILE's users (their hashes as {CRYPT}), mail_location and
# virtual uid, and relays the connections to imap_listen to it.  It
# misbehaves as the line "mode = " says, a comma-separated list:
#   good     nothing changed
#   lose     one message of user bench removed before Dovecot starts
#   flags    the flags of one message of bench taken off (a rename)
#   unplant  the planted word of one message of bench changed
#   slow     the server's answers relayed 2 KiB at a time, 20 ms apart
# SIGTERM stops Dovecot and the stand-in.  Trusts its configuration.
import os
import signal
import socket
import subprocess
import sys
import threading
import time

mode = "good"


def conf_read(path):
	conf = {}
	with open(path) as f:
		for line in f:
			name, sep, value = line.partition("=")
			if sep and not line.startswith("#"):
				conf[name.strip()] = value.strip()
	return conf


def spoil(conf):
	loc = conf["mail_location"].replace("%u", "bench")
	if not loc.startswith("maildir:"):
		return
	cur = os.path.join(loc[len("maildir:"):], "cur")
	names = sorted(os.listdir(cur))
	if "lose" in mode:
		os.unlink(os.path.join(cur, names[0]))
	if "flags" in mode:
		name = [n for n in names if not n.endswith(":2,")][-1]
		os.rename(os.path.join(cur, name),
		          os.path.join(cur, name.split(":2,")[0] + ":2,"))
	if "unplant" in mode:
		for name in names:
			path = os.path.join(cur, name)
			with open(path, "rb") as f:
				data = f.read()
			if b"quokkaberry" in data:
				st = os.stat(path)
				os.unlink(path)  # the file is a link to the corpus
				with open(path, "wb") as f:
					f.write(data.replace(b"quokkaberry", b"quokkabarry"))
				os.chown(path, st.st_uid, st.st_gid)
				break


def relay(src, dst, slow):
	try:
		while True:
			data = src.recv(2048 if slow else 65536)
			if not data:
				break
			if slow:
				time.sleep(0.02)
			dst.sendall(data)
	except OSError:
		pass
	for s in (dst, src):
		try:
			s.shutdown(socket.SHUT_RDWR)
		except OSError:
			pass


def serve(client, port):
	try:
		server = socket.create_connection(("127.0.0.1", port))
	except OSError:
		client.close()
		return
	threading.Thread(target=relay, args=(client, server, False),
	                 daemon=True).start()
	threading.Thread(target=relay, args=(server, client, "slow" in mode),
	                 daemon=True).start()


def main():
	path = os.path.abspath(sys.argv[sys.argv.index("-c") + 1])
	conf = conf_read(path)
	d = os.path.dirname(path)
	sd = os.path.join(d, "standin")
	os.makedirs(os.path.join(sd, "run"), exist_ok=True)
	os.makedirs(os.path.join(sd, "state"), exist_ok=True)
	uid, gid = conf["virtual_uid"], conf["virtual_gid"]
	os.chown(os.path.join(sd, "state"), int(uid), int(gid))
	with open(conf["user_database"]) as f, \
	    open(os.path.join(sd, "passwd"), "w") as out:
		for line in f:
			p = line.rstrip("\n").split(":")
			out.write("%s:{CRYPT}%s:%s:%s::%s/home/%s::\n" % (
			    p[0], p[1], uid, gid, d, p[0]))
	s = socket.socket()
	s.bind(("127.0.0.1", 0))
	port = s.getsockname()[1]
	s.close()
	with open(os.path.join(sd, "dovecot.conf"), "w") as f:
		f.write("""protocols = imap
listen = 127.0.0.1
ssl = no
base_dir = {sd}/run
state_dir = {sd}/state
log_path = {sd}/dovecot.log
mail_location = {loc}
postmaster_address = postmaster@example.org
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=CRYPT {sd}/passwd
}}
userdb {{
  driver = passwd-file
  args = {sd}/passwd
}}
default_process_limit = 200
default_client_limit = 1000
protocol imap {{
  mail_max_userip_connections = 200
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""".format(sd=sd, loc=conf["mail_location"], port=port))
	spoil(conf)
	dovecot = subprocess.Popen(["dovecot", "-F", "-c",
	                            os.path.join(sd, "dovecot.conf")])

	def stop(signum, frame):
		dovecot.terminate()
		dovecot.wait()
		os._exit(0)
	signal.signal(signal.SIGTERM, stop)
	for _ in range(300):
		try:
			socket.create_connection(("127.0.0.1", port), 1).close()
			break
		except OSError:
			time.sleep(0.05)
	host, _, lport = conf["imap_listen"].rpartition(":")
	ls = socket.socket()
	ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
	ls.bind((host, int(lport)))
	ls.listen(128)
	while True:
		c, _ = ls.accept()
		serve(c, port)


main()
EOF
cat >"$T/imap-deliver.in" <<'EOF'
#!/bin/bash
# A stand-in for loft-deliver, for bench/selftest.sh's IMAP tests only:
# "loft-deliver -c FILE -d USER -f SENDER" runs dovecot-lda for the
# stand-in loftd's Dovecot; mode=drop reads the message and loses it.
mode=good
if [ "$mode" = drop ]; then
	cat >/dev/null
	exit 0
fi
exec "${DOVECOT_LDA:-/usr/lib/dovecot/dovecot-lda}" \
    -c "$(dirname "$2")/standin/dovecot.conf" "${@:3}"
EOF
imap() {
	sed "s/^mode = \"good\"\$/mode = \"$1\"/" "$T/imapd.in" \
	    >"$T/standin/imapd"
	sed "s/^mode=good\$/mode=$2/" "$T/imap-deliver.in" \
	    >"$T/standin/imap-deliver"
	chmod 755 "$T/standin/imapd" "$T/standin/imap-deliver"
	shift 2
	env BENCH_QUIET=1 IMAP_N=100 PLANT_EVERY=10 IMAP_IDLE_N=4 \
	    IMAP_IDLE_USERS=2 IMAP_IDLE_MSGS=5 LAT_N=2 IMAP_SERVERS=loft \
	    OUT="$T/out" LOFTD="$T/standin/imapd" \
	    LOFT_DELIVER="$T/standin/imap-deliver" "$@" \
	    "$BENCH/imap.sh" >/dev/null 2>>"$T/harness.log"
}
if [ "$(id -u)" != 0 ]; then
	for i in 1 2 3 4 5 6; do
		skip "imap.sh needs root"
	done
elif [ ! -x "${DOVECOT_IMAP:-/usr/lib/dovecot/imap}" ]; then
	for i in 1 2 3 4 5 6; do
		skip "dovecot-imapd not installed"
	done
else
	imap good good RESULTS="$T/i-dovecot.tsv" IMAP_SERVERS=dovecot \
	    IMAP_FORMATS="mbox maildir" BENCH_IMAP_BIG=150
	[ "$(cut -f8 "$T/i-dovecot.tsv" | sort -u)" = ok ] &&
	    [ "$(wc -l <"$T/i-dovecot.tsv")" = 56 ] &&
	    [ "$(awk -F'\t' '$5 == "search-body" { print $9 }' \
	    "$T/i-dovecot.tsv" | sort -u)" = "10 hits" ]
	ok $? "imap.sh: Dovecot's IMAP server, standalone, both formats"
	imap flags good RESULTS="$T/i-flags.tsv"
	cell "$T/i-flags.tsv" loft maildir sync-headers |
	    grep -q '^FAIL .*FLAGS (), expected (' &&
	    [ "$(awk -F'\t' '$8 == "ok"' "$T/i-flags.tsv" | wc -l)" = 20 ]
	ok $? "imap.sh: wrong flags are FAIL; the other steps are ok"
	imap lose good RESULTS="$T/i-lose.tsv" IMAP_FORMATS=maildir
	cell "$T/i-lose.tsv" loft maildir first-total |
	    grep -q '^FAIL .*99 EXISTS, expected 100' &&
	    cell "$T/i-lose.tsv" loft maildir bodies |
	    grep -q '^FAIL .*99 EXISTS, expected 100'
	ok $? "imap.sh: a server that loses a message is FAIL"
	imap unplant,slow drop RESULTS="$T/i-bad.tsv" FETCH_LIMIT=1 \
	    LAT_LIMIT=2
	cell "$T/i-bad.tsv" loft maildir search-body |
	    grep -q '^FAIL SEARCH BODY "quokkaberry": 9 hits, 10 expected' &&
	    cell "$T/i-bad.tsv" loft maildir search-from | grep -q '^ok ' &&
	    cell "$T/i-bad.tsv" loft maildir bodies |
	    grep -q '^FAIL .*over the time limit (1 s): [0-9]* octets'
	ok $? "imap.sh: a wrong SEARCH and a slow FETCH are FAIL"
	cell "$T/i-bad.tsv" loft maildir deliver-median |
	    grep -q '^FAIL .*no EXISTS 6 within 2 s'
	ok $? "imap.sh: a delivery that does not show in IDLE is FAIL"
	"$PYTHON" "$BENCH/imap_client.py" report "$T/i-flags.tsv" \
	    "$T/i-bad.tsv" >"$T/i-report.txt"
	grep -q '^  100  *UID FETCH 1:\* (UID RFC822.SIZE.*  -  *FAIL ' \
	    "$T/i-report.txt" && grep -q 'FAIL: .*FLAGS ()' \
	    "$T/i-report.txt" && grep -q '^  PSS KiB  ' "$T/i-report.txt"
	ok $? "imap_client.py report: tables, FAIL and why instead of a number"
fi

echo "1..$n"
if [ "$failed" != 0 ]; then
	echo "# $failed of $n failed; harness log: see below" >&2
	tail -20 "$T/harness.log" >&2
	exit 1
fi
exit 0
