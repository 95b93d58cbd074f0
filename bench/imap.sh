#!/bin/bash
# imap.sh: loftd's IMAP server against Dovecot's, side by side: same
# machine, same run, same messages in the same mailbox format, same users
# and password hashes, plaintext IMAP on loopback on both, the same client
# (imap_client.py) for both.
#
#   bench/imap.sh                        about 6 minutes
#   BENCH_IMAP_BIG=100000 bench/imap.sh  adds LOGIN + SELECT on 100,000
#   IMAP_FORMATS="maildir mbox" bench/imap.sh
#
# Each server, in turn, is started by this script as root in the
# foreground (Dovecot: dovecot -F -c DIR/dovecot.conf with its own
# base_dir; loft: loftd -c DIR/loft.conf -f) on a free loopback port, over
# its own copy of the mailboxes, and stopped after.  Measured, user bench
# (IMAP_N messages, one session per step):
#   select     LOGIN and SELECT INBOX, timed apart; first with no index,
#              then again; the same for user big (BENCH_IMAP_BIG) if set
#   sync       Thunderbird's first sync: UID FETCH 1:* (UID RFC822.SIZE
#              FLAGS BODY.PEEK[HEADER.FIELDS (14 fields)]), then its
#              resync UID FETCH 1:* (FLAGS)
#   search     SEARCH FROM and SEARCH BODY of a sender and a word that
#              corpus.py planted in 1 % of the messages each
#   bodies     UID FETCH 1:* BODY.PEEK[] (MB/s; FAIL after FETCH_LIMIT s)
#   modify     STORE 1:* +FLAGS (\Flagged); STORE +FLAGS (\Deleted) on
#              every 10th message, EXPUNGE
# and, on the server started afresh:
#   idle       memory of the whole process tree (rss.py: PSS and RSS)
#              before and with IMAP_IDLE_N sessions in IDLE on INBOX,
#              IMAP_IDLE_USERS virtual users taken in turn, per session
#   latency    a session of user lat in IDLE; LAT_N deliveries, each by
#              the server's own MDA run as root (loft-deliver -d lat,
#              dovecot-lda -d lat), timed from the MDA's start to the
#              untagged EXISTS: median and 90th percentile
# Every answer is checked (counts, UIDs, flags, sizes and header fields
# against the corpus, every body byte for byte, search hits against what
# corpus.py planted, the messages left after EXPUNGE, the delivered
# messages); a step that fails prints FAIL and why instead of a number.
#
# Settings (environment): IMAP_N=10000, BENCH_IMAP_BIG=0 (or the message
# count of the big mailbox), IMAP_IDLE_N=1000, IMAP_IDLE_USERS=10,
# IMAP_IDLE_MSGS=100 (messages of each idle user), LAT_N=20, LAT_LIMIT=60
# seconds a delivery may take to show in IDLE before it is FAIL,
# PLANT_EVERY=100, FETCH_LIMIT=120 seconds for the body download (0:
# none), STEP_TIMEOUT=600 seconds per client step, IMAP_FORMATS=maildir
# ("maildir mbox" for both), IMAP_SERVERS="dovecot loft" (one alone, for
# bench/selftest.sh), RESULTS=FILE (default bench/out/imap-DATE.tsv),
# KEEP=1, LOFT_IMAP_CONF (lines appended to loft.conf), LOFTD, LOFTCTL,
# LOFTD_MAIL, LOFT_DELIVER, DOVECOT, DOVECOT_LDA.
# Needs root (Dovecot's master must start as root; loftd too, to switch to
# the mailbox owner; both MDAs are started as root with -d); loftd's login
# user is created as a system user if missing, and dovecot-imapd installed
# with apt-get if missing.  Trusted input: those settings.

set -eu
. "$(dirname "$0")/common.sh"

IMAP_N=${IMAP_N:-10000}
BENCH_IMAP_BIG=${BENCH_IMAP_BIG:-0}
IMAP_IDLE_N=${IMAP_IDLE_N:-1000}
IMAP_IDLE_USERS=${IMAP_IDLE_USERS:-10}
IMAP_IDLE_MSGS=${IMAP_IDLE_MSGS:-100}
LAT_N=${LAT_N:-20}
LAT_LIMIT=${LAT_LIMIT:-60}
PLANT_EVERY=${PLANT_EVERY:-100}
FETCH_LIMIT=${FETCH_LIMIT:-120}
STEP_TIMEOUT=${STEP_TIMEOUT:-600}
IMAP_FORMATS=${IMAP_FORMATS:-maildir}
IMAP_SERVERS=${IMAP_SERVERS:-dovecot loft}
DOVECOT_IMAP=${DOVECOT_IMAP:-/usr/lib/dovecot/imap}
PASSWORD=bench-imap-password
CLIENT=$BENCH/imap_client.py
mkdir -p "$OUT"
RESULTS=${RESULTS:-$OUT/imap-$(date +%Y%m%d-%H%M%S).tsv}

for v in IMAP_N BENCH_IMAP_BIG IMAP_IDLE_N IMAP_IDLE_USERS IMAP_IDLE_MSGS \
    LAT_N LAT_LIMIT PLANT_EVERY FETCH_LIMIT STEP_TIMEOUT; do
	case ${!v} in '' | *[!0-9]*) die "$v must be a number" ;; esac
done
if [ "$IMAP_N" -lt 10 ] || [ "$IMAP_IDLE_N" -lt 1 ] ||
    [ "$IMAP_IDLE_USERS" -lt 1 ] || [ "$IMAP_IDLE_USERS" -gt 99 ] ||
    [ "$IMAP_IDLE_MSGS" -lt 1 ] || [ "$LAT_N" -lt 1 ] ||
    [ "$LAT_LIMIT" -lt 1 ] || [ "$PLANT_EVERY" -lt 2 ] ||
    [ "$PLANT_EVERY" -gt "$IMAP_N" ]; then
	die "IMAP_N must be at least 10, IMAP_IDLE_N, IMAP_IDLE_MSGS," \
	    "LAT_N and LAT_LIMIT at least 1, IMAP_IDLE_USERS 1 to 99," \
	    "PLANT_EVERY 2 to IMAP_N"
fi
for fmt in $IMAP_FORMATS; do
	mail_location "$fmt" /x >/dev/null
done
[ "$(id -u)" = 0 ] || die "run as root: both servers start as root"

case " $IMAP_SERVERS " in
*" dovecot "*)
	{ ensure_installed "$DOVECOT_IMAP" dovecot-imapd &&
	    ensure_dovecot && command -v "$DOVECOT" >/dev/null 2>&1; } ||
	    die "Dovecot's IMAP server (dovecot-imapd) is not installed" \
		"and could not be installed: nothing to compare with"
	;;
esac
loft_missing=
if ! loft_missing=$(loft_built "$LOFTD" "$LOFTCTL" "$LOFT_DELIVER"); then
	say "loft: $loft_missing; running the Dovecot half only"
fi

make_workdir
# loftd runs its mail processes from loftd-mail beside its own binary, if
# that is there (builds since 2026-11-29), else from itself.
LOFTD_MAIL=${LOFTD_MAIL:-$(dirname "$LOFTD")/loftd-mail}
[ ! -x "$LOFTD_MAIL" ] || cp "$LOFTD_MAIL" "$W/bin/loftd-mail"
if [ -z "$loft_missing" ]; then
	# loftd's login processes run as login_user; it must exist.
	printf 'user_database = %s/users\n' "$W" >"$W/probe.conf"
	login_user=$(cd / && "$W/bin/loftctl" -c "$W/probe.conf" config -d \
	    login_user 2>/dev/null | sed -n 's/^login_user = //p')
	rm -f "$W/probe.conf"
	login_user=${login_user:-loftnull}
	if ! id "$login_user" >/dev/null 2>&1; then
		useradd --system --no-create-home --shell /usr/sbin/nologin \
		    "$login_user" ||
		    die "cannot create loftd's login user $login_user"
	fi
	if ldd "$W/bin/loftd" 2>/dev/null | grep -q 'libasan\|libubsan'; then
		say "warning: loftd is built with sanitizers (configure" \
		    "--enable-sanitizers): its times and memory mean little"
	fi
fi
# stop_server: SIGTERM to the server started last; after 10 s SIGKILL to
# it and every process below it, which it would otherwise leave behind.
SERVER_PID=
stop_server() {
	local pid=$SERVER_PID i tree
	SERVER_PID=
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		say "pid $pid still there 10 s after SIGTERM: SIGKILL"
		tree=$("$PYTHON" -B -c 'import sys
sys.path.insert(0, sys.argv[1])
import rss
print(*rss.tree(int(sys.argv[2])))' "$BENCH" "$pid")
		# shellcheck disable=SC2086 # a list of numbers
		kill -KILL $tree 2>/dev/null || :
	fi
	wait "$pid" 2>/dev/null || :
}
trap 'stop_server; cleanup_workdir' EXIT
say "work directory $W"
[ -n "${BENCH_QUIET:-}" ] || machine_info >"$RESULTS.info"

IDLE_USERS=()
for ((i = 1; i <= IMAP_IDLE_USERS; i++)); do
	printf -v u 'i%02d' "$i"
	IDLE_USERS+=("$u")
done
IDLE_LIST=$(IFS=,; echo "${IDLE_USERS[*]}")

# The corpus: small plain messages (corpus.py --profile small, 1-4 KB),
# written straight into a Maildir (95 % in cur/ with flags, 5 % in new/)
# and into an mbox, as another MDA would have left them; bench's mailbox
# with a word and a sender planted for SEARCH.  Each server gets its own
# copy (place).  The messages delivered in the latency step are a corpus
# of their own (seed "lat"), one file each.
corpus() {
	local n=$1 dir=$2 args=(--maildir "$2/maildir")
	shift 2
	case " $IMAP_FORMATS " in *" mbox "*) args+=(--mbox "$dir/mbox") ;; esac
	"$PYTHON" "$BENCH/corpus.py" -n "$n" --profile small "${args[@]}" "$@" \
	    >&2
}
say "writing the corpus: $IMAP_N messages, $IMAP_IDLE_MSGS for each idle" \
    "user, $BENCH_IMAP_BIG for the big mailbox"
corpus "$IMAP_N" "$W/src/main" --plant-every "$PLANT_EVERY"
corpus "$IMAP_IDLE_MSGS" "$W/src/small"
[ "$BENCH_IMAP_BIG" = 0 ] || corpus "$BENCH_IMAP_BIG" "$W/src/big"
"$PYTHON" "$BENCH/corpus.py" -n $((LAT_N + 1)) -s lat --profile small \
    --dir "$W/src/deliver" >&2
chmod -R a+rX "$W/src"

# One password hash for every user of both servers, so that both verify
# the same yescrypt: loft's own (loftctl user add, with its SCRAM secrets),
# copied to the other users' lines (the format is name:hash:uid:gid:home:
# key=value, and no secret depends on the name).
mkdir -p "$W/hash"
if [ -z "$loft_missing" ]; then
	printf 'user_database = %s/users\nvirtual_uid = %s\n' "$W/hash" \
	    "$RUN_UID" >"$W/hash/loft.conf"
	printf '%s\n' "$PASSWORD" |
	    "$W/bin/loftctl" -c "$W/hash/loft.conf" user add bench \
	    >"$W/hash/out" 2>&1 ||
	    die "loftctl user add: $(cat "$W/hash/out")"
	USER_LINE=$(grep '^bench:' "$W/hash/users")
	HASH=$(cut -d: -f2 <<<"$USER_LINE")
else
	# shellcheck disable=SC2016 # "$y$" is Python's, not the shell's
	HASH=$("$PYTHON" -W ignore -c 'import crypt, ctypes, sys
lib = ctypes.CDLL("libcrypt.so.1")
lib.crypt_gensalt.restype = ctypes.c_char_p
print(crypt.crypt(sys.argv[1], lib.crypt_gensalt(b"$y$", 0, None, 0).decode()))' \
	    "$PASSWORD")
	USER_LINE="bench:$HASH::::"
fi

# place FORMAT DIR USER SRC: USER's INBOX under DIR from the corpus SRC.
# A Maildir is copied as hard links: its files are never changed in place,
# only renamed, and a rename in one copy does not show in another.  An
# mbox is copied (Dovecot rewrites it in place).
place() {
	local fmt=$1 d=$2 u=$3 src=$4
	mkdir -p "$d/mail/$u" "$d/home/$u"
	case $fmt in
	maildir) cp -al "$src/maildir/." "$d/mail/$u/" ;;
	mbox) cp "$src/mbox" "$d/mail/$u/inbox" ;;
	esac
}

# user_line SERVER DIR NAME: NAME's line in the SERVER's list of users
# (Dovecot's passwd-file, loft's user_database), with the one HASH; all
# are virtual users whose mail belongs to the bench uid.
user_line() {
	if [ "$1" = dovecot ]; then
		echo "$3:{CRYPT}$HASH:$RUN_UID:$RUN_GID::$2/home/$3::"
	else
		echo "$3:$HASH::::$(cut -d: -f6- <<<"$USER_LINE")"
	fi
}

# setup SERVER FORMAT DIR: the mailboxes and users of one server.
setup() {
	local server=$1 fmt=$2 d=$3 u
	rm -rf "$d"
	mkdir -p "$d/mail" "$d/home"
	place "$fmt" "$d" bench "$W/src/main"
	[ "$BENCH_IMAP_BIG" = 0 ] || place "$fmt" "$d" big "$W/src/big"
	for u in "${IDLE_USERS[@]}" lat; do
		place "$fmt" "$d" "$u" "$W/src/small"
	done
	chown -R "$RUN_UID:$RUN_GID" "$d"
	# Both start with every message in the page cache.
	find "$d/mail" -type f -exec cat {} + >/dev/null
	for u in bench big "${IDLE_USERS[@]}" lat; do
		user_line "$server" "$d" "$u"
	done >"$d/users"
	if [ "$server" = dovecot ]; then
		mv "$d/users" "$d/dovecot.passwd"
		chmod 644 "$d/dovecot.passwd"
	else
		chown "$RUN_UID:$RUN_GID" "$d/users"
		chmod 600 "$d/users"
	fi
}

# dovecot_imap_conf FORMAT DIR PORT: dovecot_conf (common.sh) plus what
# Dovecot needs to serve IMAP itself, started as root in the foreground:
# a listener on 127.0.0.1 only, users from the passwd-file
# DIR/dovecot.passwd (same users, same password hashes as loft's user
# database), plaintext login allowed, and limits raised so that
# IMAP_IDLE_N sessions from one address fit.  Everything else (login
# processes in high-security mode, one imap process per session, no
# hibernation) stays at Dovecot's defaults.
dovecot_imap_conf() {
	local fmt=$1 d=$2 port=$3 limit=$((IMAP_IDLE_N + 100))
	dovecot_conf "$fmt" "$d" optimized
	# The master wants its base_dir to itself.
	chown root:root "$d/run"
	chmod 755 "$d/run"
	cat >>"$d/dovecot.conf" <<EOF

# IMAP server for bench/imap.sh (these settings override the ones above).
protocols = imap
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
# Defaults: 100 processes per service, 10 sessions per user and address;
# the idle measurement opens $IMAP_IDLE_N.
default_process_limit = $limit
default_client_limit = $((limit * 2 + 1000))
protocol imap {
  mail_max_userip_connections = $limit
}
service imap-login {
  inet_listener imap {
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
}
EOF
}

# loft_imap_conf FORMAT DIR PORT: loft.conf in DIR for loftd serving IMAP
# on 127.0.0.1:PORT, set up as Dovecot is: plaintext login allowed, limits
# raised for IMAP_IDLE_N connections from one address, the login chroot
# inside DIR.  LOFT_IMAP_CONF (lines) is appended, to try other settings.
loft_imap_conf() {
	local fmt=$1 d=$2 port=$3
	mkdir -p "$d/home" "$d/mail"
	cat >"$d/loft.conf" <<EOF
# Written by bench/imap.sh; used only by this benchmark run.
user_database = $d/users
mail_location = $(mail_location "$fmt" "$d")
maillog_file = $d/maillog
mailbox_size_limit = 0
virtual_uid = $RUN_UID
virtual_gid = $RUN_GID
imap_listen = 127.0.0.1:$port
disable_plaintext_auth = no
login_chroot = $d/login-chroot
connection_limit = $((IMAP_IDLE_N + 1000))
client_connection_limit = $((IMAP_IDLE_N + 100))
EOF
	if [ -n "${LOFT_IMAP_CONF:-}" ]; then
		printf '%s\n' "$LOFT_IMAP_CONF" >>"$d/loft.conf"
	fi
	# Nothing is chowned here: loftd refuses a login_chroot that is not
	# root's, and makes it itself on the first start.
}

# start SERVER FORMAT DIR: a new configuration on a fresh PORT, and the
# server in the foreground, in the background of this shell; waits until
# it accepts.
start() {
	local server=$1 fmt=$2 d=$3
	read -r PORT < <("$PYTHON" "$CLIENT" port)
	if [ "$server" = dovecot ]; then
		dovecot_imap_conf "$fmt" "$d" "$PORT"
		"$DOVECOT" -F -c "$d/dovecot.conf" >>"$d/server.log" 2>&1 &
	else
		loft_imap_conf "$fmt" "$d" "$PORT"
		"$W/bin/loftd" -c "$d/loft.conf" -f >>"$d/server.log" 2>&1 &
	fi
	SERVER_PID=$!
	"$PYTHON" "$CLIENT" wait --port "$PORT" --pid "$SERVER_PID" \
	    --timeout 30 2>>"$d/server.log"
}

# serve SERVER FORMAT DIR: the server (re)started; else status 1 and the
# reason in WHY.
serve() {
	local server=$1 fmt=$2 d=$3
	stop_server
	start "$server" "$fmt" "$d" && return 0
	WHY="does not start: $(tail -3 "$d/server.log" | tr '\t\n' '  ' |
	    head -c 300)"
	say "$server $fmt: $WHY"
	stop_server
	return 1
}

# client SERVER FORMAT DIR VARIANT STEP SUBCOMMAND ARGS...: one
# imap_client.py step, its rows into RESULTS; a step that runs out of time
# is one FAIL row, under STEP (the step the report shows first) and
# VARIANT.
client() {
	local server=$1 fmt=$2 d=$3 variant=$4 step=$5 sub=$6 rc=0
	shift 6
	timeout "$STEP_TIMEOUT" "$PYTHON" "$CLIENT" "$sub" \
	    --port "$PORT" --password "$PASSWORD" --format "$fmt" \
	    --server "$server" "$@" >>"$RESULTS" 2>>"$d/client.log" || rc=$?
	if [ "$rc" = 124 ]; then
		result imap "$fmt" "$variant" "$server" "$step" 0 - FAIL \
		    "$sub stopped after STEP_TIMEOUT=$STEP_TIMEOUT s"
	fi
	cat "$d/client.log" >&2
	: >"$d/client.log"
	return "$rc"
}

# fail_steps FORMAT SERVER STATUS WHY VARIANT:STEP...: rows for steps that
# could not run (STATUS FAIL, or n/a when the server is not there at all).
fail_steps() {
	local fmt=$1 server=$2 status=$3 why=$4 s
	shift 4
	for s in "$@"; do
		result imap "$fmt" "${s%%:*}" "$server" "${s#*:}" 0 - "$status" \
		    "$why"
	done
}

MAILBOX_STEPS=("$IMAP_N:first-total" "$IMAP_N:sync-headers"
    "$IMAP_N:search-from" "$IMAP_N:bodies" "$IMAP_N:store-flagged")
[ "$BENCH_IMAP_BIG" = 0 ] || MAILBOX_STEPS+=("$BENCH_IMAP_BIG:first-total")
LATER_STEPS=("-:idle-pss" "-:deliver-median")

# run SERVER FORMAT: every measurement on one server.
run() {
	local server=$1 fmt=$2 d="$W/$1-$2" n run main=("$W/src/main/maildir")
	local mda_cmd
	case " $IMAP_SERVERS " in *" $server "*) ;; *) return 0 ;; esac
	if [ "$server" = loft ] && [ -n "$loft_missing" ]; then
		fail_steps "$fmt" loft n/a "$loft_missing" "${MAILBOX_STEPS[@]}" \
		    "${LATER_STEPS[@]}"
		return 0
	fi
	say "$server $fmt: setting up"
	setup "$server" "$fmt" "$d"
	if serve "$server" "$fmt" "$d"; then
		for n in "$IMAP_N" "$BENCH_IMAP_BIG"; do
			[ "$n" != 0 ] || continue
			say "$server $fmt: LOGIN and SELECT, $n messages"
			for run in first second; do
				client "$server" "$fmt" "$d" "$n" "$run-total" select \
				    --user "$([ "$n" = "$IMAP_N" ] && echo bench ||
				    echo big)" --expect "$n" --run "$run" || :
			done
		done
		say "$server $fmt: first sync, $IMAP_N messages"
		client "$server" "$fmt" "$d" "$IMAP_N" sync-headers sync \
		    --expect "$IMAP_N" --corpus "${main[@]}" || :
		say "$server $fmt: SEARCH"
		client "$server" "$fmt" "$d" "$IMAP_N" search-from search \
		    --expect "$IMAP_N" --corpus "${main[@]}" \
		    --plant-every "$PLANT_EVERY" || :
		say "$server $fmt: download of every message"
		client "$server" "$fmt" "$d" "$IMAP_N" bodies bodies \
		    --expect "$IMAP_N" --corpus "${main[@]}" \
		    --limit "$FETCH_LIMIT" || :
		say "$server $fmt: STORE and EXPUNGE"
		client "$server" "$fmt" "$d" "$IMAP_N" store-flagged modify \
		    --expect "$IMAP_N" || :
	else
		fail_steps "$fmt" "$server" FAIL "$WHY" "${MAILBOX_STEPS[@]}"
	fi
	# Memory from a server started afresh: what the steps above left in
	# a process's heap would be reused by the idle sessions and hide
	# their cost.
	say "$server $fmt: memory of $IMAP_IDLE_N sessions in IDLE"
	if serve "$server" "$fmt" "$d"; then
		client "$server" "$fmt" "$d" - idle-pss idle \
		    --count "$IMAP_IDLE_N" --users "$IDLE_LIST" \
		    --pid "$SERVER_PID" || :
		say "$server $fmt: delivery to IDLE, $LAT_N deliveries"
		# The server's own delivery agent, as an MTA runs it (as root,
		# -d USER).
		if [ "$server" = dovecot ]; then
			mda_cmd=("$DOVECOT_LDA" -c "$d/dovecot.conf")
		else
			mda_cmd=("$W/bin/loft-deliver" -c "$d/loft.conf")
		fi
		client "$server" "$fmt" "$d" - deliver-median latency \
		    --user lat --messages "$W/src/deliver" -n "$LAT_N" \
		    --limit "$LAT_LIMIT" \
		    -- "${mda_cmd[@]}" -d lat -f sender@example.com || :
	else
		fail_steps "$fmt" "$server" FAIL "$WHY" "${LATER_STEPS[@]}"
	fi
	stop_server
	cp "$d/server.log" "$W/$server-$fmt.log" 2>/dev/null || :
	[ "${KEEP:-0}" = 1 ] || rm -rf "$d"
}

for fmt in $IMAP_FORMATS; do
	# Alternate which server goes first, as deliver.sh does.
	if [ "$fmt" = maildir ]; then
		run dovecot "$fmt"
		run loft "$fmt"
	else
		run loft "$fmt"
		run dovecot "$fmt"
	fi
done

say "results in $RESULTS"
if [ -z "${BENCH_QUIET:-}" ]; then
	"$PYTHON" "$CLIENT" report --info "$RESULTS.info" "$RESULTS"
fi
