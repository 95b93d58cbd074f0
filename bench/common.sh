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
LOFTD=${LOFTD:-$TOP/server/loftd/loftd}
# loftd runs its mail processes from loftd-mail beside its own program.
LOFTD_MAIL=${LOFTD_MAIL:-$(dirname "$LOFTD")/loftd-mail}
DOVECOT_LDA=${DOVECOT_LDA:-/usr/lib/dovecot/dovecot-lda}
DOVEADM=${DOVEADM:-doveadm}
DOVECOT=${DOVECOT:-dovecot}
DOVECOT_POP3=${DOVECOT_POP3:-/usr/lib/dovecot/pop3}
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

# ensure_installed FILE PACKAGE: FILE is executable, or apt-get installed
# the Debian PACKAGE that has it (only when running as root).
ensure_installed() {
	[ -x "$1" ] && return 0
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		say "${1##*/} missing: installing $2"
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y -q "$2" >&2 ||
		    { apt-get update -q >&2 &&
		      apt-get install -y -q "$2" >&2; }
	fi
	[ -x "$1" ]
}

# ensure_dovecot: dovecot-lda is there, or apt-get installed it.
ensure_dovecot() {
	ensure_installed "$DOVECOT_LDA" dovecot-core
}

# ensure_dovecot_pop3: Dovecot's POP3 server (dovecot-pop3d, which pulls
# in dovecot-core) is there, or apt-get installed it.
ensure_dovecot_pop3() {
	ensure_installed "$DOVECOT_POP3" dovecot-pop3d &&
	    command -v "$DOVECOT" >/dev/null 2>&1
}

# loft_built [FILE...]: the loft binaries exist (by default loft-deliver
# and loftctl); the reason on stdout if not.
loft_built() {
	local f
	[ $# -gt 0 ] || set -- "$LOFT_DELIVER" "$LOFTCTL"
	for f in "$@"; do
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
	# Those that exist; the benchmarks check loft_built before using them.
	# (loftd execs its children from /proc/self/exe, and loftd-mail from
	# the same directory: the copies are what runs.)
	[ ! -x "$LOFT_DELIVER" ] || cp "$LOFT_DELIVER" "$W/bin/loft-deliver"
	[ ! -x "$LOFTCTL" ] || cp "$LOFTCTL" "$W/bin/loftctl"
	[ ! -x "$LOFTD" ] || cp "$LOFTD" "$W/bin/loftd"
	[ ! -x "$LOFTD_MAIL" ] || cp "$LOFTD_MAIL" "$W/bin/loftd-mail"
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
	# Not recursive: mail already in DIR keeps its owners.
	chown "$RUN_UID:$RUN_GID" "$d" "$d/run" "$d/state" "$d/home" \
	    "$d/mail" "$d/dovecot.conf"
}

# dovecot_pop3_conf FORMAT DIR PORT [TLS_PORT CERT KEY]: dovecot_conf plus
# what Dovecot needs to serve POP3 itself, started as root in the
# foreground (bench/pop3.sh): listeners on 127.0.0.1 only, users from the
# passwd-file DIR/dovecot.passwd (written by the caller: same users, same
# password hashes as loft's user database), plaintext login allowed, and
# limits raised so that 200 + 200 idle connections from one address fit.
# Dovecot's login processes stay in their default mode (one process per
# connection, "high-security"); TLS only when TLS_PORT is given.
dovecot_pop3_conf() {
	local fmt=$1 d=$2 port=$3 tls_port=${4:-0} cert=${5:-} key=${6:-}
	dovecot_conf "$fmt" "$d" optimized
	# The master wants its base_dir to itself.
	chown root:root "$d/run"
	chmod 755 "$d/run"
	cat >>"$d/dovecot.conf" <<EOF

# POP3 server for bench/pop3.sh (these settings override the ones above).
protocols = pop3
listen = 127.0.0.1
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=CRYPT $d/dovecot.passwd
}
userdb {
  driver = passwd-file
  args = $d/dovecot.passwd
}
# loft's UIDL: UIDVALIDITY and UID, 8 hex digits each.
pop3_uidl_format = %08Xv%08Xu
# Defaults: 100 processes per service, 10 sessions per user and address;
# the idle-connection measurement opens 200 of each kind.
default_process_limit = 1000
default_client_limit = 5000
protocol pop3 {
  mail_max_userip_connections = 1000
}
service pop3-login {
  inet_listener pop3 {
    port = $port
  }
  inet_listener pop3s {
    port = $tls_port
  }
}
EOF
	if [ "$tls_port" != 0 ]; then
		cat >>"$d/dovecot.conf" <<EOF
ssl = yes
ssl_cert = <$cert
ssl_key = <$key
EOF
	fi
}

# loft_pop3_conf FORMAT DIR PORT [TLS_PORT CERT KEY]: loft.conf in DIR for
# loftd serving POP3 on 127.0.0.1:PORT (and POP3S on TLS_PORT), set up as
# Dovecot is: plaintext login allowed, limits raised for 400 connections
# from one address, the login chroot inside DIR.  LOFT_POP3_CONF (lines)
# is appended, to try other settings.  Users are added by the caller.
loft_pop3_conf() {
	local fmt=$1 d=$2 port=$3 tls_port=${4:-0} cert=${5:-} key=${6:-}
	mkdir -p "$d/home" "$d/mail"
	cat >"$d/loft.conf" <<EOF
# Written by bench/common.sh; used only by this benchmark run.
user_database = $d/users
mail_location = $(mail_location "$fmt" "$d")
maillog_file = $d/maillog
mailbox_size_limit = 0
virtual_uid = $RUN_UID
virtual_gid = $RUN_GID
pop3_listen = 127.0.0.1:$port
disable_plaintext_auth = no
login_chroot = $d/login-chroot
connection_limit = 2000
client_connection_limit = 1000
EOF
	if [ "$tls_port" != 0 ]; then
		cat >>"$d/loft.conf" <<EOF
pop3s_listen = 127.0.0.1:$tls_port
tls_cert_file = $cert
tls_key_file = $key
EOF
	fi
	if [ -n "${LOFT_POP3_CONF:-}" ]; then
		printf '%s\n' "$LOFT_POP3_CONF" >>"$d/loft.conf"
	fi
	# Nothing is chowned here: loftd refuses a login_chroot that is not
	# root's, and makes it itself on the first start.
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
