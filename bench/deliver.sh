#!/bin/bash
# deliver.sh: deliveries per second, one process per message, loft-deliver
# against Dovecot's dovecot-lda: same corpus, same mailbox format, same
# machine, same uid, page cache warm for both.
#
#   bench/deliver.sh            N=2000 messages per pass, Maildir and mbox,
#                               fsync on and off
#   N=500 REPEAT=3 FORMATS=maildir bench/deliver.sh
#
# Settings (environment):
#   N=2000            messages timed per pass
#   WARM=20           deliveries before the clock starts (not timed; they
#                     create the mailbox and load the binaries)
#   REPEAT=1          passes per configuration; the report takes the median
#   FORMATS="maildir mbox"
#   FSYNCS="on off"
#   DOVECOT_FSYNC_ON=optimized   Dovecot's mail_fsync for "fsync on"; see
#                     README.md for why optimized matches loft's guarantee
#   DOVECOT_ALWAYS=0  1: one more Dovecot pass per format with
#                     mail_fsync = always (fsyncs its index files too)
#   RESULTS=FILE      where the rows go (default bench/out/deliver-DATE.tsv)
#   KEEP=1            keep the temporary directory
#
# Each pass delivers into a new, empty mailbox.  After it the number of
# messages on disk must be WARM + N, the bytes at least those of the corpus,
# and every exit status 0; Dovecot's index must agree.  A pass that fails
# any check is reported as FAIL, not as a number.  Trusted input: the
# settings above, from whoever runs the benchmark.

set -eu
. "$(dirname "$0")/common.sh"

N=${N:-2000}
WARM=${WARM:-20}
REPEAT=${REPEAT:-1}
FORMATS=${FORMATS:-maildir mbox}
FSYNCS=${FSYNCS:-on off}
DOVECOT_FSYNC_ON=${DOVECOT_FSYNC_ON:-optimized}
DOVECOT_ALWAYS=${DOVECOT_ALWAYS:-0}
mkdir -p "$OUT"
RESULTS=${RESULTS:-$OUT/deliver-$(date +%Y%m%d-%H%M%S).tsv}

case $N in '' | *[!0-9]*) die "N must be a number" ;; esac
case $WARM in '' | *[!0-9]*) die "WARM must be a number" ;; esac
[ "$N" -ge 1 ] || die "N must be at least 1"
[ "$N" -ge "$WARM" ] || WARM=$N

ensure_dovecot ||
    die "dovecot-lda is not installed and could not be installed;" \
	"without it there is nothing to compare with, so nothing runs"
loft_missing=
if ! loft_missing=$(loft_built); then
	say "loft: $loft_missing; running the Dovecot half only"
fi

make_workdir
say "work directory $W"
[ -n "${BENCH_QUIET:-}" ] || machine_info >"$RESULTS.info"
"$PYTHON" "$BENCH/corpus.py" -n "$N" --dir "$W/corpus" >&2
chown -R "$RUN_UID:$RUN_GID" "$W/corpus"
chmod -R a+rX "$W/corpus"
corpus_bytes=$(awk '{ print $2 }' <<<"$("$PYTHON" "$BENCH/mailcount.py" \
    dir "$W/corpus")")
warm_bytes=0
for ((i = 1; i <= WARM; i++)); do
	printf -v f '%s/msg-%06d.eml' "$W/corpus" "$i"
	warm_bytes=$((warm_bytes + $(stat -c %s "$f")))
done

# mda_cmd MDA DIR: sets CMD to the command that delivers one message from
# stdin.
mda_cmd() {
	case $1 in
	dovecot) CMD=("$DOVECOT_LDA" -c "$2/dovecot.conf"
	    -f sender@example.com) ;;
	loft) CMD=("$W/bin/loft-deliver" -c "$2/loft.conf" -d bench
	    -f sender@example.com) ;;
	esac
}

# timed_loop DIR FIRST LAST: sets START END FAIL STATUS from one run of
# deliver-loop.sh with CMD.  What the MDA says on stderr goes to
# DIR/mda.stderr.
timed_loop() {
	local line
	line=$(user_env "$1/home" "$W/bin/deliver-loop.sh" "$W/corpus" \
	    "$2" "$3" "${CMD[@]}" 2>>"$1/mda.stderr") || true
	read -r START END FAIL STATUS <<<"$line"
	if [ -z "${FAIL:-}" ]; then
		# The loop itself died: count every message as failed.
		START=0 END=0 FAIL=$(($3 - $2 + 1)) STATUS=loop
	fi
}

# run_pass MDA FORMAT FSYNC REP [DOVECOT_MAIL_FSYNC]: one timed pass, one
# row in $RESULTS.
run_pass() {
	local mda=$1 fmt=$2 fsync=$3 rep=$4 dmode=${5:-}
	local d="$W/$mda-$fmt-$fsync-$rep" label=$1 mode
	local secs got bytes idx ok=ok note
	local expect=$((WARM + N)) expect_bytes=$((corpus_bytes + warm_bytes))

	if [ "$mda" = loft ] && [ -n "$loft_missing" ]; then
		result deliver "$fmt" "$fsync" loft deliver "$N" - n/a \
		    "$loft_missing"
		return 0
	fi
	mkdir -p "$d"
	if [ "$mda" = dovecot ]; then
		mode=$dmode
		if [ -z "$mode" ]; then
			mode=$DOVECOT_FSYNC_ON
			[ "$fsync" = on ] || mode=never
		else
			label=dovecot-$mode
		fi
		dovecot_conf "$fmt" "$d" "$mode"
	else
		mode=yes
		[ "$fsync" = on ] || mode=no
		if ! loft_conf "$fmt" "$d" "$mode"; then
			result deliver "$fmt" "$fsync" loft deliver "$N" - FAIL \
			    "loftctl user add failed: $(head -c 200 \
			    "$d/loftctl.out" | tr '\t\n' '  ')"
			return 0
		fi
	fi
	note="mail_fsync=$mode"
	mda_cmd "$mda" "$d"
	say "$label $fmt fsync=$fsync pass $rep: $WARM + $N deliveries"

	# The page cache holds the corpus and the binaries before the clock
	# starts; the warm-up deliveries also create the mailbox.
	cat "$W"/corpus/msg-*.eml >/dev/null
	timed_loop "$d" 1 "$WARM"
	if [ "$FAIL" = 0 ]; then
		timed_loop "$d" 1 "$N"
	else
		note="$note; warm-up failed"
	fi
	secs=$(elapsed "$START" "$END")

	read -r got bytes < <(count "$fmt" "$d")
	if [ "$FAIL" != 0 ]; then
		ok=FAIL
		note="$note; $FAIL deliveries failed (last status $STATUS)"
	fi
	if [ "$got" != "$expect" ]; then
		ok=FAIL
		note="$note; $got messages on disk, expected $expect"
	elif [ "$bytes" -lt "$expect_bytes" ]; then
		ok=FAIL
		note="$note; $bytes bytes on disk, $expect_bytes delivered"
	fi
	if [ "$mda" = dovecot ]; then
		idx=$(dovecot_messages "$d")
		if [ "$idx" != "$expect" ]; then
			ok=FAIL
			note="$note; Dovecot's index counts ${idx:-nothing}"
		fi
	fi
	if [ "$ok" = ok ]; then
		say "$label $fmt fsync=$fsync: $secs s"
	else
		say "$label $fmt fsync=$fsync: FAIL: $note"
		for f in "$d/mda.stderr" "$d/dovecot.log" "$d/maillog"; do
			[ -f "$f" ] && tail -3 "$f" >&2
		done
	fi
	result deliver "$fmt" "$fsync" "$label" deliver "$N" "$secs" "$ok" \
	    "$note"
	[ "${KEEP:-0}" = 1 ] || rm -rf "$d"
}

flip=0
for ((rep = 1; rep <= REPEAT; rep++)); do
	for fsync in $FSYNCS; do
		for fmt in $FORMATS; do
			# Alternate which MDA goes first, so that neither
			# always runs on the cooler (or hotter) machine.
			if [ $((flip % 2)) = 0 ]; then
				run_pass dovecot "$fmt" "$fsync" "$rep"
				run_pass loft "$fmt" "$fsync" "$rep"
			else
				run_pass loft "$fmt" "$fsync" "$rep"
				run_pass dovecot "$fmt" "$fsync" "$rep"
			fi
			flip=$((flip + 1))
			if [ "$fsync" = on ] && [ "$DOVECOT_ALWAYS" = 1 ] &&
			    [ "$DOVECOT_FSYNC_ON" != always ]; then
				run_pass dovecot "$fmt" on "$rep" always
			fi
		done
	done
done

say "results in $RESULTS"
if [ -z "${BENCH_QUIET:-}" ]; then
	"$PYTHON" "$BENCH/report.py" --info "$RESULTS.info" "$RESULTS"
fi
