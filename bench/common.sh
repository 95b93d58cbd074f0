# shellcheck shell=bash
# common.sh: helpers shared by deliver.sh and reindex.sh; sourced, not run.
#
# Both MDAs run as the same unprivileged uid with the same clean
# environment: dovecot-lda refuses to run as root without -d, and with -d it
# asks a running Dovecot auth process for the user.  Run as a plain uid with
# USER and HOME set it needs neither, so no Dovecot daemon is started.  When
# the harness itself runs as root that uid is nobody (BENCH_UID to change).
# Everything the MDAs write lives in one temporary directory, removed at exit
# unless KEEP=1.  Input trusted: the environment variables below, set by
# whoever runs the benchmark.

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(dirname "$BENCH")
LOFT_DELIVER=${LOFT_DELIVER:-$TOP/mda/loft-deliver}
LOFTCTL=${LOFTCTL:-$TOP/ctl/loftctl}
DOVECOT_LDA=${DOVECOT_LDA:-/usr/lib/dovecot/dovecot-lda}
DOVEADM=${DOVEADM:-doveadm}
PYTHON=${PYTHON:-python3}
BENCH_TMP=${BENCH_TMP:-${TMPDIR:-/tmp}}
OUT=${OUT:-$BENCH/out}

die() {
	echo "${0##*/}: $*" >&2
	exit 1
}

# Progress goes to stderr so that stdout carries only the table.
say() {
	echo "# $*" >&2
}

now() {
	date +%s.%N
}

if [ "$(id -u)" = 0 ]; then
	RUN_UID=${BENCH_UID:-65534}
	RUN_GID=${BENCH_GID:-$(id -g "$RUN_UID" 2>/dev/null || echo 65534)}
	as_user() {
		setpriv --reuid="$RUN_UID" --regid="$RUN_GID" --clear-groups -- "$@"
	}
else
	RUN_UID=$(id -u)
	RUN_GID=$(id -g)
	as_user() {
		"$@"
	}
fi

# user_env HOME CMD...: CMD as the bench uid, with nothing in the
# environment but what both MDAs need.
user_env() {
	local home=$1
	shift
	as_user env -i PATH=/usr/local/bin:/usr/bin:/bin LC_ALL=C \
	    USER=bench HOME="$home" "$@"
}

# ensure_dovecot: dovecot-lda is there, or apt-get installed it.
ensure_dovecot() {
	[ -x "$DOVECOT_LDA" ] && return 0
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		say "dovecot-lda missing: installing dovecot-core"
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y -q dovecot-core >&2 ||
		    { apt-get update -q >&2 &&
		      apt-get install -y -q dovecot-core >&2; }
	fi
	[ -x "$DOVECOT_LDA" ]
}

# loft_built: both loft binaries exist; the reason on stdout if not.
loft_built() {
	local f
	for f in "$LOFT_DELIVER" "$LOFTCTL"; do
		if [ ! -x "$f" ]; then
			echo "${f#"$TOP"/} not built"
			return 1
		fi
	done
	return 0
}

# make_workdir: a fresh directory owned by the bench uid, in $W.  The loft
# binaries are copied into $W/bin so that a rebuild during the run cannot
# change what is measured.
make_workdir() {
	W=$(mktemp -d "$BENCH_TMP/loft-bench.XXXXXX") ||
	    die "cannot create a directory in $BENCH_TMP"
	chmod 755 "$W"
	mkdir -p "$W/bin"
	cp "$BENCH/deliver-loop.sh" "$W/bin/"
	if loft_built >/dev/null; then
		cp "$LOFT_DELIVER" "$W/bin/loft-deliver"
		cp "$LOFTCTL" "$W/bin/loftctl"
	fi
	chown -R "$RUN_UID:$RUN_GID" "$W"
	trap cleanup_workdir EXIT
	trap 'exit 130' INT TERM
}

cleanup_workdir() {
	if [ "${KEEP:-0}" = 1 ]; then
		say "kept $W"
	elif [ -n "${W:-}" ] && [ -d "$W" ]; then
		rm -rf "$W"
	fi
}

# mail_location FORMAT DIR: the location string both MDAs are given.
# Both put user bench's INBOX at DIR/mail/bench (Maildir) or
# DIR/mail/bench/inbox (mbox).
mail_location() {
	case $1 in
	maildir) echo "maildir:$2/mail/%u" ;;
	mbox) echo "mbox:$2/mail/%u:INBOX=$2/mail/%u/inbox" ;;
	*) die "unknown format $1" ;;
	esac
}

# inbox_path FORMAT DIR: where the messages end up.
inbox_path() {
	case $1 in
	maildir) echo "$2/mail/bench" ;;
	mbox) echo "$2/mail/bench/inbox" ;;
	esac
}

# dovecot_conf FORMAT DIR MAIL_FSYNC: a standalone dovecot.conf in DIR.
# No listeners, no SSL, no auth: dovecot-lda and doveadm read it directly.
dovecot_conf() {
	local fmt=$1 d=$2 fsync=$3
	mkdir -p "$d/run" "$d/state" "$d/home" "$d/mail"
	cat >"$d/dovecot.conf" <<EOF
# Written by bench/common.sh; used only by this benchmark run.
protocols =
ssl = no
base_dir = $d/run
state_dir = $d/state
log_path = $d/dovecot.log
info_log_path = $d/dovecot.log
mail_location = $(mail_location "$fmt" "$d")
mail_fsync = $fsync
postmaster_address = postmaster@example.org
EOF
	chown -R "$RUN_UID:$RUN_GID" "$d"
}

# loft_conf FORMAT DIR MAIL_FSYNC: loft.conf in DIR and user bench in it.
# mailbox_size_limit = 0: loft's default quota (Postfix's 51200000 bytes)
# is smaller than the corpus, and Dovecot runs with no quota.
loft_conf() {
	local fmt=$1 d=$2 fsync=$3
	mkdir -p "$d/home" "$d/mail"
	cat >"$d/loft.conf" <<EOF
# Written by bench/common.sh; used only by this benchmark run.
user_database = $d/users
mail_location = $(mail_location "$fmt" "$d")
maillog_file = $d/maillog
mail_fsync = $fsync
mailbox_size_limit = 0
EOF
	chown -R "$RUN_UID:$RUN_GID" "$d"
	user_env "$d/home" "$W/bin/loftctl" -c "$d/loft.conf" \
	    user add bench --no-password >"$d/loftctl.out" 2>&1
}

# count FORMAT DIR: "COUNT BYTES" of what is in bench's INBOX under DIR.
count() {
	"$PYTHON" "$BENCH/mailcount.py" "$1" "$(inbox_path "$1" "$2")"
}

# dovecot_messages DIR: the message count Dovecot's own index reports.
dovecot_messages() {
	user_env "$1/home" "$DOVEADM" -c "$1/dovecot.conf" \
	    mailbox status messages INBOX 2>>"$1/dovecot.log" |
	    sed -n 's/.*messages=\([0-9]*\).*/\1/p'
}

# elapsed START END: END - START in seconds, three decimals.
elapsed() {
	awk -v s="$1" -v e="$2" 'BEGIN { printf "%.3f", e - s }'
}

# result BENCH FORMAT FSYNC MDA STEP N SECONDS STATUS NOTE: one row of the
# results file, tab-separated, in the order report.py reads.
result() {
	local IFS=$'\t'
	echo "$*" >>"$RESULTS"
}

# machine_info: what report.py prints above the tables.
machine_info() {
	local cpu mem fs
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
	mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' \
	    /proc/meminfo)
	fs=$(df -PT "$BENCH_TMP" | awk 'NR == 2 { print $2 " (" $1 ")" }')
	echo "date	$(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "host	$(uname -srm), ${cpu:-unknown cpu} x $(nproc), $mem"
	echo "disk	$BENCH_TMP on $fs"
	echo "dovecot	$(dovecot --version 2>/dev/null || echo none)"
	echo "loft	$(git -C "$TOP" --no-optional-locks describe --always --dirty \
	    2>/dev/null ||
	    echo unknown)"
	echo "load	$(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, at start)"
}
