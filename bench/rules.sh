#!/bin/bash
# rules.sh: deliveries per second through a 50-recipe procmailrc, one
# process per message, loft-deliver (its own rule engine, lib/rules.h)
# against Debian's procmail, same rule file, same messages, same uid, same
# mbox format, page cache warm for both.
#
#   bench/rules.sh              N=500 messages per pass, fsync on and off
#   N=200 REPEAT=3 bench/rules.sh
#
# Settings (environment):
#   N=500        messages timed per pass
#   WARM=10      deliveries before the clock starts (they create the
#                mailboxes: procmail sleeps a second after creating one)
#   REPEAT=1     passes per configuration; the median is reported
#   FSYNCS="on off"
#   KEEP=1       keep the temporary directory
#
# Durability: procmail has no fsync switch; it fsyncs the mbox it wrote
# (not its directory). "on" compares that with loft's mail_fsync = yes
# (file fsynced, a new file's directory too, index committed). "off"
# runs loft with mail_fsync = no and procmail with fsync(2) made a no-op
# by a preload library built here (a three-line C file), so neither
# waits for the disk. Each pass delivers into new, empty mailboxes; after
# it every exit status must be 0 and the mailboxes must hold WARM + N
# messages on both sides, else the pass is reported as FAIL.
# Trusted input: the settings above, from whoever runs the benchmark.

set -eu
. "$(dirname "$0")/common.sh"

N=${N:-500}
WARM=${WARM:-10}
REPEAT=${REPEAT:-1}
FSYNCS=${FSYNCS:-on off}
mkdir -p "$OUT"
RESULTS=${RESULTS:-$OUT/rules-$(date +%Y%m%d-%H%M%S).tsv}
PROCMAIL=$(command -v procmail || true)
[ -n "$PROCMAIL" ] || die "procmail is not installed: nothing to compare with"
loft_built "$LOFT_DELIVER" "$LOFTCTL" >/dev/null ||
    die "loft-deliver is not built"

make_workdir
say "work directory $W"
"$PYTHON" "$BENCH/corpus.py" -n "$((N + WARM))" --dir "$W/corpus" >&2
chown -R "$RUN_UID:$RUN_GID" "$W/corpus"

# The preload library for procmail's "off" pass.
printf 'int fsync(int fd) { (void)fd; return 0; }\n' >"$W/nofsync.c"
cc -shared -fPIC -o "$W/nofsync.so" "$W/nofsync.c"
chmod 755 "$W/nofsync.so"

# 50 recipes: 40 header tests that miss, ^TO_ and ^FROM_DAEMON macros, a
# body search, a \/ extraction, scoring, a nested block, then lists
# sorted into folders; what matches nothing falls to $DEFAULT.
rules_file() {
	local i
	echo 'MAILDIR=$HOME/Mail'
	for i in $(seq 1 40); do
		printf ':0\n* ^Subject:.*never-matches-%d\nmiss-%d\n' "$i" "$i"
	done
	printf ':0\n* ^TO_nobody@nowhere\\.example\nto-nobody\n'
	printf ':0\n* ^FROM_DAEMON\ndaemon\n'
	printf ':0 B\n* unlikely body phrase 12345\nbody-hit\n'
	printf ':0\n* 1^0 ^X-Spam-Flag: YES\n* 1^0 ^X-Spam-Level: \\*\\*\\*\\*\\*\nspam\n'
	printf ':0\n* ^X-Nothing: \\/.*\n{\n  :0\n  nothing-$MATCH\n}\n'
	printf ':0\n* ^List-Id:.*<\\/[^.>]+\nlist-$MATCH\n'
	printf ':0\n* ^Precedence: (bulk|junk)\nbulk\n'
	printf ':0\n* > 5000000\nhuge\n'
	printf ':0\n* ^Subject:.*\\[never\\]\nnever\n'
	printf ':0\n* ^From:.*nobody@nowhere\nnowhere\n'
}

count_mbox() {
	local n=0 f
	for f in "$1"/*; do
		[ -f "$f" ] || continue
		n=$((n + $(grep -c '^From ' "$f" || true)))
	done
	echo "$n"
}

# run_pass SIDE FSYNC: deliveries per second, or FAIL.
run_pass() {
	local side=$1 fs=$2 home=$W/$1-$2-$3 files t0 t1 bad=0 f i=0
	mkdir -p "$home/Mail"
	rules_file >"$home/.procmailrc"
	chown -R "$RUN_UID:$RUN_GID" "$home"
	if [ "$side" = loft ]; then
		cat >"$W/loft-$fs.conf" <<-EOF
		user_database = $W/users-$fs
		mail_location = mbox:$home/Mail:INBOX=$home/Mail/INBOX
		maillog_file = $W/maillog
		myhostname = bench.example.org
		mail_fsync = $([ "$fs" = on ] && echo yes || echo no)
		mda_rules_file = ~/.procmailrc
		mailbox_size_limit = 0
		EOF
		chown "$RUN_UID:$RUN_GID" "$W/loft-$fs.conf"
		user_env "$home" "$W/bin/loftctl" -c "$W/loft-$fs.conf" \
		    user add bench --home "$home" --no-password >/dev/null
	fi
	files=$(ls "$W/corpus"/msg-*.eml)
	for f in $files; do
		[ "$i" -eq "$WARM" ] && t0=$(now)
		i=$((i + 1))
		if [ "$side" = loft ]; then
			user_env "$home" "$W/bin/loft-deliver" \
			    -c "$W/loft-$fs.conf" -d bench \
			    -f sender@example.net <"$f" || bad=1
		elif [ "$fs" = on ]; then
			user_env "$home" "$PROCMAIL" -p -f sender@example.net \
			    HOME="$home" SHELL=/bin/sh \
			    DEFAULT="$home/Mail/INBOX" "$home/.procmailrc" \
			    <"$f" || bad=1
		else
			user_env "$home" env LD_PRELOAD="$W/nofsync.so" \
			    "$PROCMAIL" -p \
			    -f sender@example.net HOME="$home" SHELL=/bin/sh \
			    DEFAULT="$home/Mail/INBOX" "$home/.procmailrc" \
			    <"$f" || bad=1
		fi
	done
	t1=$(now)
	if [ "$bad" -ne 0 ] ||
	    [ "$(count_mbox "$home/Mail")" -ne "$((N + WARM))" ]; then
		echo FAIL
		return
	fi
	awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", n / (b - a) }'
}

median() {
	sort -n | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : "FAIL") }'
}

printf 'side\tfsync\tdeliveries_per_s\n' >"$RESULTS"
for fs in $FSYNCS; do
	for side in procmail loft; do
		r=$(for i in $(seq 1 "$REPEAT"); do run_pass "$side" "$fs" "$i"; done |
		    median)
		printf '%s\t%s\t%s\n' "$side" "$fs" "$r" >>"$RESULTS"
		eval "rate_${side}_${fs}=$r"
	done
	p=$(eval echo "\$rate_procmail_$fs")
	l=$(eval echo "\$rate_loft_$fs")
	say "fsync $fs: procmail $p/s, loft-deliver $l/s, ratio loft/procmail" \
	    "$(awk -v l="$l" -v p="$p" 'BEGIN { if (p + 0 > 0 && l + 0 > 0) printf "%.2f", l / p; else print "n/a" }')"
done
say "results in $RESULTS"
cleanup_workdir
