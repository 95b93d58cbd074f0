#!/bin/bash
# selftest.sh: checks that the benchmark tools measure what they claim and
# that their checks can fail.  Prints TAP; takes about two minutes.
#
#   bench/selftest.sh
#
# - corpus.py is deterministic (same seed, same bytes; a smaller corpus is
#   a prefix of a larger one; another seed differs), writes well-formed
#   MIME, and hits the size classes it promises;
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

echo "1..$n"
if [ "$failed" != 0 ]; then
	echo "# $failed of $n failed; harness log: see below" >&2
	tail -20 "$T/harness.log" >&2
	exit 1
fi
exit 0
