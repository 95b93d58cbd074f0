#!/bin/bash
# reindex.sh: how long it takes to index a mailbox that another program
# filled, loft against Dovecot, on the same 100,000 small messages.
#
#   bench/reindex.sh
#   RN=20000 FORMATS=maildir bench/reindex.sh
#
# The messages are written straight to disk as a foreign MDA would leave
# them: a Maildir with files in cur/ (named with S=size and flags) and 5 %
# in new/, and an mbox.  Each side gets its own copy.  Then, cache warm:
#   loft     loftctl -c CONF reindex bench, twice (the second run finds the
#            index and should keep the UIDs and be faster)
#   Dovecot  doveadm -c CONF force-resync INBOX, twice, then doveadm index
#            INBOX; doveadm runs standalone as the bench uid with USER and
#            HOME set (no -u, which would need a running auth process)
# After each step every message must still be on disk and the MDA's index
# must count RN (loftctl's "N messages indexed" and index list; doveadm
# mailbox status); loft's second run must leave every UID as the first run
# set it (compared as UID-to-file pairs from loftctl index list, outside
# the timing).  Otherwise the row says FAIL.
#
# Settings (environment): RN=100000 messages, FORMATS="maildir mbox",
# STEP_TIMEOUT=300 seconds after which a step is stopped and reported as
# FAIL (so that one slow or stuck command cannot hold up bench/run),
# RESULTS=FILE (default bench/out/reindex-DATE.tsv), KEEP=1.  Trusted
# input: those settings.

set -eu
. "$(dirname "$0")/common.sh"

RN=${RN:-100000}
FORMATS=${FORMATS:-maildir mbox}
STEP_TIMEOUT=${STEP_TIMEOUT:-300}
mkdir -p "$OUT"
RESULTS=${RESULTS:-$OUT/reindex-$(date +%Y%m%d-%H%M%S).tsv}
case $RN in '' | *[!0-9]*) die "RN must be a number" ;; esac
case $STEP_TIMEOUT in '' | *[!0-9]*) die "STEP_TIMEOUT must be a number" ;; esac
[ "$RN" -ge 1 ] || die "RN must be at least 1"

have_dovecot=1
ensure_dovecot && command -v "$DOVEADM" >/dev/null 2>&1 || have_dovecot=0
loft_missing=
if ! loft_missing=$(loft_built); then
	say "loft: $loft_missing; running the Dovecot half only"
fi
[ "$have_dovecot" = 1 ] || [ -z "$loft_missing" ] ||
    die "neither Dovecot nor loft is available"

make_workdir
say "work directory $W"
[ -n "${BENCH_QUIET:-}" ] || machine_info >"$RESULTS.info"

src_args=()
for fmt in $FORMATS; do
	case $fmt in
	maildir) src_args+=(--maildir "$W/src/maildir") ;;
	mbox) src_args+=(--mbox "$W/src/mbox") ;;
	*) die "unknown format $fmt" ;;
	esac
done
say "writing $RN messages for: $FORMATS"
"$PYTHON" "$BENCH/corpus.py" -n "$RN" --profile small "${src_args[@]}" >&2

# place FORMAT DIR: copy the source mailbox to bench's INBOX under DIR and
# read it once, so that both sides start with it in the page cache.  A
# Maildir is copied as hard links (30 s less per copy for 100,000 files):
# Maildir files are never changed in place, only renamed, and a rename in
# one copy does not show in another.  An mbox is rewritten in place, so it
# is copied.
place() {
	local fmt=$1 d=$2
	mkdir -p "$d/mail/bench"
	case $fmt in
	maildir) cp -al "$W/src/maildir/." "$d/mail/bench/" ;;
	mbox) cp "$W/src/mbox" "$d/mail/bench/inbox" ;;
	esac
	chown -R "$RUN_UID:$RUN_GID" "$d"
	find "$d/mail" -type f -exec cat {} + >/dev/null
}

# timed DIR LOG CMD...: runs CMD as the bench uid, sets SECS and RC (124
# if it ran out of time).
timed() {
	local d=$1 log=$2 start end
	shift 2
	start=$(now)
	RC=0
	user_env "$d/home" timeout "$STEP_TIMEOUT" "$@" >>"$log" 2>&1 || RC=$?
	end=$(now)
	SECS=$(elapsed "$start" "$end")
}

# check FORMAT DIR: "" if all RN messages are still on disk, else why not.
check() {
	local got
	read -r got _ < <(count "$1" "$2")
	[ "$got" = "$RN" ] || echo "$got messages on disk, expected $RN"
}

# loft_uids DIR FILE: "UID MESSAGE" for every message in loft's index of
# bench's INBOX, from loftctl index list, into FILE.  MESSAGE names the
# message independently of the index: the Maildir file name up to its
# first "," or ":" (the part no rename changes), or "@OFFSET" in an mbox.
# The GUID is not used: a rebuilt index may hand out new ones (loft did).
loft_uids() {
	user_env "$1/home" "$W/bin/loftctl" -c "$1/loft.conf" \
	    index list bench 2>>"$1/reindex.log" |
	    awk '/^[0-9]+ / { m = $NF; sub(/^(new|cur)\//, "", m)
		    sub(/[,:].*/, "", m); print $1, m }' >"$2"
}

# verify MDA FORMAT STEP DIR LOG: "" if the step left everything right,
# else why not.  Every message must still be on disk; the MDA's index must
# count RN; and loft's second run must keep every UID of the first.
verify() {
	local mda=$1 fmt=$2 name=$3 d=$4 log=$5 n
	check "$fmt" "$d"
	if [ "$mda" = dovecot ]; then
		n=$(dovecot_messages "$d")
		[ "$n" = "$RN" ] ||
		    echo "Dovecot's index counts ${n:-nothing}, expected $RN"
		return 0
	fi
	n=$(sed -n 's/^bench: \([0-9]*\) messages indexed.*/\1/p' "$log" |
	    tail -1)
	[ "$n" = "$RN" ] ||
	    echo "loftctl reindex said ${n:-nothing} messages, expected $RN"
	# Outside the timing: list the index to compare UIDs between runs.
	if ! loft_uids "$d" "$d/uids.$name" ||
	    [ ! -s "$d/uids.$name" ]; then
		say "loft $fmt $name: loftctl index list gave nothing;" \
		    "UIDs not compared"
		return 0
	fi
	n=$(wc -l <"$d/uids.$name")
	[ "$n" = "$RN" ] ||
	    echo "loftctl index list shows $n messages, expected $RN"
	if [ "$name" = second ] && [ -s "$d/uids.first" ] &&
	    ! cmp -s "$d/uids.first" "$d/uids.second"; then
		echo "UIDs changed between the runs:" \
		    "$(comm -3 <(sort "$d/uids.first") <(sort "$d/uids.second") |
		    wc -l)" \
		    "lines differ"
	fi
}

# step MDA FORMAT STEP DIR LOG CMD...: one timed step, one row.
step() {
	local mda=$1 fmt=$2 name=$3 d=$4 log=$5 why
	shift 5
	: >"$log"
	timed "$d" "$log" "$@"
	if [ "$RC" = 124 ]; then
		why="stopped after STEP_TIMEOUT=$STEP_TIMEOUT s"
	elif [ "$RC" != 0 ]; then
		why="exit $RC: $(tail -2 "$log" | tr '\t\n' '  ' | head -c 200)"
	else
		why=$(verify "$mda" "$fmt" "$name" "$d" "$log" | tr '\n' ';')
		why=${why%;}
	fi
	if [ -n "$why" ]; then
		say "$mda $fmt $name: FAIL: $why"
		result reindex "$fmt" - "$mda" "$name" "$RN" - FAIL "$why"
		return 1
	fi
	say "$mda $fmt $name: $SECS s"
	result reindex "$fmt" - "$mda" "$name" "$RN" "$SECS" ok "${*: -2}"
}

run_loft() {
	local fmt=$1 d="$W/loft-$1" conf
	if [ -n "$loft_missing" ]; then
		for s in first second; do
			result reindex "$fmt" - loft "$s" "$RN" - n/a "$loft_missing"
		done
		return 0
	fi
	place "$fmt" "$d"
	if ! loft_conf "$fmt" "$d" yes; then
		result reindex "$fmt" - loft first "$RN" - FAIL \
		    "loftctl user add failed: $(head -c 200 "$d/loftctl.out" |
		    tr '\t\n' '  ')"
		return 0
	fi
	conf="$d/loft.conf"
	# A step that fails ends the side: the next would measure nonsense.
	if step loft "$fmt" first "$d" "$d/reindex-first.log" \
	    "$W/bin/loftctl" -c "$conf" reindex bench; then
		step loft "$fmt" second "$d" "$d/reindex-second.log" \
		    "$W/bin/loftctl" -c "$conf" reindex bench || :
	fi
	[ "${KEEP:-0}" = 1 ] || rm -rf "$d"
}

run_dovecot() {
	local fmt=$1 d="$W/dovecot-$1" conf
	if [ "$have_dovecot" = 0 ]; then
		for s in first second index; do
			result reindex "$fmt" - dovecot "$s" "$RN" - n/a \
			    "doveadm not available"
		done
		return 0
	fi
	place "$fmt" "$d"
	dovecot_conf "$fmt" "$d" optimized
	conf="$d/dovecot.conf"
	if step dovecot "$fmt" first "$d" "$d/doveadm.log" \
	    "$DOVEADM" -c "$conf" force-resync INBOX &&
	    step dovecot "$fmt" second "$d" "$d/doveadm.log" \
	    "$DOVEADM" -c "$conf" force-resync INBOX; then
		step dovecot "$fmt" index "$d" "$d/doveadm.log" \
		    "$DOVEADM" -c "$conf" index INBOX || :
	fi
	[ "${KEEP:-0}" = 1 ] || rm -rf "$d"
}

for fmt in $FORMATS; do
	# Alternate which side goes first, as deliver.sh does.
	if [ "$fmt" = maildir ]; then
		run_dovecot "$fmt"
		run_loft "$fmt"
	else
		run_loft "$fmt"
		run_dovecot "$fmt"
	fi
done

say "results in $RESULTS"
if [ -z "${BENCH_QUIET:-}" ]; then
	"$PYTHON" "$BENCH/report.py" --info "$RESULTS.info" "$RESULTS"
fi
