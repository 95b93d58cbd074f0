#!/bin/bash
# pop3.sh: loftd's POP3 server against Dovecot's, side by side: same
# machine, same run, same messages in the same mailbox format, same users
# and password hashes, plaintext POP3 on loopback on both (TLS only for one
# login-latency run), the same client (pop3_client.py) for both.
#
#   bench/pop3.sh                       5-10 minutes
#   BENCH_POP3_BIG=100000 bench/pop3.sh adds UIDL/LIST on 100,000 messages
#   POP3_FORMATS=maildir bench/pop3.sh
#
# Each server, in turn, is started by this script as root in the
# foreground (Dovecot: dovecot -F -c DIR/dovecot.conf with its own
# base_dir; loft: loftd -c DIR/loft.conf -f) on free loopback ports, over
# its own copy of the mailboxes, and stopped after.  Measured:
#   login      LOGIN_N sequential sessions of user u001 (10 messages):
#              connect, greeting, USER, PASS, QUIT; median and 90th
#              percentile (right password: no failure delay)
#   mailbox    user bench (POP3_N messages): one session of login, UIDL,
#              LIST, QUIT, each step timed; first run with no index (the
#              login builds it), then a second run; the same for user big
#              (BENCH_POP3_BIG messages) if set
#   retr       user bench: RETR of every message in one session, one at a
#              time and RETR_WINDOW in flight; MB/s (FAIL if it takes more
#              than RETR_LIMIT seconds: a server that slow would hold up
#              the whole run)
#   idle       memory of the server's whole process tree (rss.py: PSS and
#              RSS) before and with IDLE_N idle connections not logged in,
#              then IDLE_N logged in (users u001.., mail owned by one
#              uid as virtual users' is), per connection; and (first
#              format only) IDLE_N logged in as users o001.. whose mail
#              each belongs to a uid of its own, as system users' does
#   login tls  LOGIN_N sessions over POP3S (first format only; POP3_TLS=0
#              to skip), same self-signed P-256 certificate on both
# Every answer is checked (counts, UIDLs distinct, every RETR byte for
# byte a message of the corpus and of the size LIST gave); a step that
# fails prints FAIL and why instead of a number.
#
# Settings (environment): POP3_N=10000, BENCH_POP3_BIG=0 (or the message
# count of the big mailbox), LOGIN_N=200, IDLE_N=200, IDLE_OWNERS=1 (0: no
# idle run with one uid per user), OWNER_UID0=70000, RETR_WINDOW=16,
# RETR_LIMIT=120 seconds per RETR pass (0: none),
# POP3_FORMATS="maildir mbox", POP3_TLS=1, STEP_TIMEOUT=600 seconds per
# client step, RESULTS=FILE (default bench/out/pop3-DATE.tsv), KEEP=1,
# POP3_SERVERS="dovecot loft" (one alone, for bench/selftest.sh),
# LOFT_POP3_CONF (lines appended to loft.conf), LOFTD, LOFTCTL, DOVECOT.
# Needs root (Dovecot's master must start as root; loftd too, to switch to
# the mailbox owner); loftd's login user (login_user, "loft") is created as
# a system user if missing.  Trusted input: those settings.

set -eu
. "$(dirname "$0")/common.sh"

POP3_N=${POP3_N:-10000}
BENCH_POP3_BIG=${BENCH_POP3_BIG:-0}
LOGIN_N=${LOGIN_N:-200}
IDLE_N=${IDLE_N:-200}
RETR_WINDOW=${RETR_WINDOW:-16}
RETR_LIMIT=${RETR_LIMIT:-120}
POP3_FORMATS=${POP3_FORMATS:-maildir mbox}
POP3_TLS=${POP3_TLS:-1}
POP3_SERVERS=${POP3_SERVERS:-dovecot loft}
IDLE_OWNERS=${IDLE_OWNERS:-1}
OWNER_UID0=${OWNER_UID0:-70000}
STEP_TIMEOUT=${STEP_TIMEOUT:-600}
PASSWORD=bench-pop3-password
SMALL_N=10
mkdir -p "$OUT"
RESULTS=${RESULTS:-$OUT/pop3-$(date +%Y%m%d-%H%M%S).tsv}

for v in POP3_N BENCH_POP3_BIG LOGIN_N IDLE_N RETR_WINDOW RETR_LIMIT \
    STEP_TIMEOUT OWNER_UID0; do
	case ${!v} in '' | *[!0-9]*) die "$v must be a number" ;; esac
done
if [ "$POP3_N" -lt 1 ] || [ "$LOGIN_N" -lt 1 ] || [ "$IDLE_N" -lt 1 ] ||
    [ "$IDLE_N" -gt 999 ]; then
	die "POP3_N and LOGIN_N must be at least 1, IDLE_N 1 to 999"
fi
for fmt in $POP3_FORMATS; do
	mail_location "$fmt" /x >/dev/null
done
[ "$(id -u)" = 0 ] || die "run as root: both servers start as root"

case " $POP3_SERVERS " in
*" dovecot "*)
	ensure_dovecot_pop3 ||
	    die "Dovecot's POP3 server (dovecot-pop3d) is not installed" \
		"and could not be installed: nothing to compare with"
	;;
esac
loft_missing=
if ! loft_missing=$(loft_built "$LOFTD" "$LOFTCTL"); then
	say "loft: $loft_missing; running the Dovecot half only"
elif ! id loft >/dev/null 2>&1; then
	useradd --system --no-create-home --shell /usr/sbin/nologin loft ||
	    die "cannot create loftd's login user loft"
fi

make_workdir
if [ -z "$loft_missing" ] &&
    ldd "$W/bin/loftd" 2>/dev/null | grep -q 'libasan\|libubsan'; then
	say "warning: loftd is built with sanitizers (configure" \
	    "--enable-sanitizers): its times and memory mean little"
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

USERS=()
for ((i = 1; i <= IDLE_N; i++)); do
	printf -v u 'u%03d' "$i"
	USERS+=("$u")
done
USER_LIST=$(IFS=,; echo "${USERS[*]}")
# Users o001... own their mail, each with a uid of its own (from
# OWNER_UID0 + 1), as system users would: loftd runs one mail process per
# owner, Dovecot one per session either way.
OWNERS=()
if [ "$IDLE_OWNERS" = 1 ]; then
	for ((i = 1; i <= IDLE_N; i++)); do
		printf -v u 'o%03d' "$i"
		OWNERS+=("$u")
		! getent passwd $((OWNER_UID0 + i)) >/dev/null ||
		    die "uid $((OWNER_UID0 + i)) is taken: set OWNER_UID0"
	done
fi
OWNER_LIST=$(IFS=,; echo "${OWNERS[*]}")

# The corpus: small plain messages (corpus.py --profile small, 1-4 KB),
# written straight into a Maildir (95 % in cur/ with flags, 5 % in new/)
# and into an mbox, as another MDA would have left them.  Each server gets
# its own copy (place).
corpus() {
	local n=$1 dir=$2 args=(--maildir "$2/maildir")
	case " $POP3_FORMATS " in *" mbox "*) args+=(--mbox "$dir/mbox") ;; esac
	"$PYTHON" "$BENCH/corpus.py" -n "$n" --profile small "${args[@]}" >&2
}
say "writing the corpus: $POP3_N messages, $SMALL_N for each idle user," \
    "$BENCH_POP3_BIG for the big mailbox"
corpus "$POP3_N" "$W/src/main"
corpus "$SMALL_N" "$W/src/small"
[ "$BENCH_POP3_BIG" = 0 ] || corpus "$BENCH_POP3_BIG" "$W/src/big"
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
fi

# place FORMAT DIR USER SRC [OWNER]: USER's INBOX under DIR from the
# corpus SRC.  A Maildir is copied as hard links: its files are never
# changed in place, only renamed, and a rename in one copy does not show in
# another.  An mbox is copied (Dovecot rewrites it in place), and so is
# the Maildir of a user given an OWNER uid of its own (a link would share
# the owner).
place() {
	local fmt=$1 d=$2 u=$3 src=$4 owner=${5:-}
	mkdir -p "$d/mail/$u" "$d/home/$u"
	case $fmt in
	maildir)
		if [ -n "$owner" ]; then
			cp -a "$src/maildir/." "$d/mail/$u/"
		else
			cp -al "$src/maildir/." "$d/mail/$u/"
		fi
		;;
	mbox) cp "$src/mbox" "$d/mail/$u/inbox" ;;
	esac
	[ -z "$owner" ] || chown -R "$owner:$owner" "$d/mail/$u" "$d/home/$u"
}

# user_line SERVER DIR NAME UID GID: NAME's line in the SERVER's list of
# users (Dovecot's passwd-file, loft's user_database), with the one HASH.
user_line() {
	if [ "$1" = dovecot ]; then
		echo "$3:{CRYPT}$HASH:$4:$5::$2/home/$3::"
	else
		echo "$3:$HASH:$4:$5::$(cut -d: -f6- <<<"$USER_LINE")"
	fi
}

# setup SERVER FORMAT DIR: the mailboxes and users of one server.
setup() {
	local server=$1 fmt=$2 d=$3 u i uid=$RUN_UID gid=$RUN_GID
	rm -rf "$d"
	mkdir -p "$d/mail" "$d/home"
	place "$fmt" "$d" bench "$W/src/main"
	[ "$BENCH_POP3_BIG" = 0 ] || place "$fmt" "$d" big "$W/src/big"
	for u in "${USERS[@]}"; do
		place "$fmt" "$d" "$u" "$W/src/small"
	done
	chown -R "$RUN_UID:$RUN_GID" "$d"
	for ((i = 1; i <= ${#OWNERS[@]}; i++)); do
		place "$fmt" "$d" "${OWNERS[i - 1]}" "$W/src/small" \
		    $((OWNER_UID0 + i))
	done
	# Both start with every message in the page cache.
	find "$d/mail" -type f -exec cat {} + >/dev/null
	# loft's virtual users have no uid of their own: virtual_uid applies.
	[ "$server" = dovecot ] || uid='' gid=''
	{
		for u in bench big "${USERS[@]}"; do
			user_line "$server" "$d" "$u" "$uid" "$gid"
		done
		for ((i = 1; i <= ${#OWNERS[@]}; i++)); do
			user_line "$server" "$d" "${OWNERS[i - 1]}" \
			    $((OWNER_UID0 + i)) $((OWNER_UID0 + i))
		done
	} >"$d/users"
	if [ "$server" = dovecot ]; then
		mv "$d/users" "$d/dovecot.passwd"
		chmod 644 "$d/dovecot.passwd"
	else
		chown "$RUN_UID:$RUN_GID" "$d/users"
		chmod 600 "$d/users"
	fi
}

# configure SERVER FORMAT DIR [TLS]: a new configuration on fresh ports,
# PORT (and TLS_PORT) set; POP3S too if TLS is not empty.
configure() {
	local server=$1 fmt=$2 d=$3 tls=${4:-}
	read -r PORT TLS_PORT < <("$PYTHON" "$BENCH/pop3_client.py" port -n 2)
	[ -n "$tls" ] || TLS_PORT=0
	if [ "$server" = dovecot ]; then
		dovecot_pop3_conf "$fmt" "$d" "$PORT" "$TLS_PORT" \
		    "$W/tls/cert.pem" "$W/tls/key.pem"
	else
		loft_pop3_conf "$fmt" "$d" "$PORT" "$TLS_PORT" \
		    "$W/tls/cert.pem" "$W/tls/key.pem"
	fi
}

# start SERVER DIR: the server in the foreground, in the background of
# this shell; waits until it accepts on PORT.
start() {
	local server=$1 d=$2
	if [ "$server" = dovecot ]; then
		"$DOVECOT" -F -c "$d/dovecot.conf" >>"$d/server.log" 2>&1 &
	else
		"$W/bin/loftd" -c "$d/loft.conf" -f >>"$d/server.log" 2>&1 &
	fi
	SERVER_PID=$!
	"$PYTHON" "$BENCH/pop3_client.py" wait --port "$PORT" \
	    --pid "$SERVER_PID" --timeout 30 2>>"$d/server.log"
}

# client SERVER FORMAT DIR SUBCOMMAND ARGS...: one pop3_client.py step,
# its rows into RESULTS; a step that runs out of time is one FAIL row.
client() {
	local server=$1 fmt=$2 d=$3 sub=$4 rc=0
	shift 4
	timeout "$STEP_TIMEOUT" "$PYTHON" "$BENCH/pop3_client.py" "$sub" \
	    --port "$PORT" --password "$PASSWORD" --format "$fmt" \
	    --server "$server" "$@" >>"$RESULTS" 2>>"$d/client.log" || rc=$?
	if [ "$rc" = 124 ]; then
		result pop3 "$fmt" - "$server" "$sub" 0 - FAIL \
		    "stopped after STEP_TIMEOUT=$STEP_TIMEOUT s"
	fi
	cat "$d/client.log" >&2
	: >"$d/client.log"
	return "$rc"
}

# fail_steps FORMAT SERVER STATUS WHY STEP...: rows for steps that could not
# run (STATUS FAIL, or n/a when the server is not there at all).
fail_steps() {
	local fmt=$1 server=$2 status=$3 why=$4 step
	shift 4
	for step in "$@"; do
		result pop3 "$fmt" - "$server" "$step" 0 - "$status" "$why"
	done
}

# serve SERVER FORMAT DIR [tls]: the server (re)started on a new
# configuration and fresh ports; else status 1 and the reason in WHY.
serve() {
	local server=$1 fmt=$2 d=$3 tls=${4:-}
	stop_server
	configure "$server" "$fmt" "$d" "$tls"
	[ -z "$tls" ] || PORT=$TLS_PORT
	start "$server" "$d" && return 0
	WHY="does not start${tls:+ with TLS}: $(tail -3 "$d/server.log" |
	    tr '\t\n' '  ' | head -c 300)"
	say "$server $fmt: $WHY"
	stop_server
	return 1
}

# run SERVER FORMAT: every measurement on one server.
run() {
	local server=$1 fmt=$2 d="$W/$1-$2" first=
	case " $POP3_SERVERS " in *" $server "*) ;; *) return 0 ;; esac
	[ "$fmt" != "${POP3_FORMATS%% *}" ] || first=1
	if [ "$server" = loft ] && [ -n "$loft_missing" ]; then
		fail_steps "$fmt" loft n/a "$loft_missing" login-median \
		    first-total retr idle-auth-pss
		return 0
	fi
	say "$server $fmt: setting up"
	setup "$server" "$fmt" "$d"
	if serve "$server" "$fmt" "$d"; then
		say "$server $fmt: login latency, $LOGIN_N sessions"
		client "$server" "$fmt" "$d" login --user u001 \
		    -n "$LOGIN_N" || :
		say "$server $fmt: UIDL and LIST, $POP3_N messages"
		client "$server" "$fmt" "$d" mailbox --expect "$POP3_N" \
		    --run first || :
		client "$server" "$fmt" "$d" mailbox --expect "$POP3_N" \
		    --run second || :
		if [ "$BENCH_POP3_BIG" != 0 ]; then
			say "$server $fmt: UIDL and LIST," \
			    "$BENCH_POP3_BIG messages"
			client "$server" "$fmt" "$d" mailbox --user big \
			    --expect "$BENCH_POP3_BIG" --run first || :
			client "$server" "$fmt" "$d" mailbox --user big \
			    --expect "$BENCH_POP3_BIG" --run second || :
		fi
		say "$server $fmt: RETR of $POP3_N messages"
		client "$server" "$fmt" "$d" retr --expect "$POP3_N" \
		    --corpus "$W/src/main/maildir" --limit "$RETR_LIMIT" || :
		client "$server" "$fmt" "$d" retr --expect "$POP3_N" \
		    --corpus "$W/src/main/maildir" --window "$RETR_WINDOW" \
		    --limit "$RETR_LIMIT" || :
	else
		fail_steps "$fmt" "$server" FAIL "$WHY" login-median \
		    first-total retr
	fi
	# Memory from a server started afresh: what the steps above left in
	# a process's heap would be reused by the idle sessions and hide
	# their cost.  Each user logs in once after the first measurement
	# (--warm), so that the index it builds is counted.
	say "$server $fmt: memory of $IDLE_N idle connections"
	if serve "$server" "$fmt" "$d"; then
		client "$server" "$fmt" "$d" idle --mode noauth \
		    --count "$IDLE_N" --pid "$SERVER_PID" || :
		client "$server" "$fmt" "$d" idle --mode auth --warm \
		    --users "$USER_LIST" --count "$IDLE_N" \
		    --pid "$SERVER_PID" || :
		if [ -n "$OWNER_LIST" ] && [ -n "$first" ]; then
			say "$server $fmt: memory of $IDLE_N idle" \
			    "connections, one owner each"
			client "$server" "$fmt" "$d" idle --mode owners \
			    --warm --users "$OWNER_LIST" --count "$IDLE_N" \
			    --pid "$SERVER_PID" || :
		fi
	else
		fail_steps "$fmt" "$server" FAIL "$WHY" idle-auth-pss
	fi
	if [ "$POP3_TLS" = 1 ] && [ -n "$first" ]; then
		say "$server $fmt: login latency over TLS, $LOGIN_N sessions"
		if serve "$server" "$fmt" "$d" tls; then
			client "$server" "$fmt" "$d" login --user u001 \
			    -n "$LOGIN_N" --tls "$W/tls/cert.pem" || :
		else
			result pop3 "$fmt" tls "$server" login-median 0 - FAIL \
			    "$WHY"
		fi
	fi
	stop_server
	cp "$d/server.log" "$W/$server-$fmt.log" 2>/dev/null || :
	[ "${KEEP:-0}" = 1 ] || rm -rf "$d"
}

if [ "$POP3_TLS" = 1 ]; then
	mkdir -p "$W/tls"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	    -keyout "$W/tls/key.pem" -out "$W/tls/cert.pem" -days 2 \
	    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
	    2>"$W/tls/openssl.log" ||
	    die "openssl: $(cat "$W/tls/openssl.log")"
	chmod 600 "$W/tls/key.pem"
fi

for fmt in $POP3_FORMATS; do
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
	"$PYTHON" "$BENCH/report.py" --info "$RESULTS.info" "$RESULTS"
fi
