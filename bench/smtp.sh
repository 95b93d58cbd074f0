#!/bin/bash
# smtp.sh: mail received over SMTP and delivered to a local Maildir, loftd
# against Postfix, side by side: same machine, same run, same messages,
# same client (smtp_client.py), plaintext SMTP on loopback.
#
#   bench/smtp.sh                      2-4 minutes
#   SMTP_N=5000 SMTP_CONNS=8 bench/smtp.sh
#
# Postfix runs as a private instance started by this script (its own
# config_directory, queue_directory and data_directory under the work
# directory, smtpd on a free loopback port, nothing chrooted, the system
# instance untouched) and delivers through its local(8) to the Maildir of
# a system user made for the run (home_mailbox = Maildir/). loftd runs
# with smtp_listen on a free port, its queue manager, and a virtual user
# whose mail is a Maildir. Both acknowledge a message only once it is
# fsynced in their queue and fsync the Maildir file before it counts as
# delivered: the same durability, their defaults otherwise.
#
# Measured, for each server in turn: SMTP_N messages of SMTP_SIZE bytes
# to one local user, over SMTP_CONNS connections at once, SMTP_PER_CONN
# messages per connection; "accepted" is from the first connect to the
# last 250 after DATA, "delivered" to the last message stored. Every
# message is checked to be stored exactly once. Reported in messages per
# second and as loft/postfix (above 1: loft is faster).
#
# Settings (environment): SMTP_N=2000, SMTP_CONNS=4, SMTP_PER_CONN=10,
# SMTP_SIZE=4096, SMTP_REPEAT=1 (the median is reported),
# SMTP_SERVERS="postfix loft", RESULTS=FILE (default
# bench/out/smtp-DATE.tsv), KEEP=1, LOFTD, LOFTCTL. Needs root (Postfix's
# master starts as root; loftd too). Trusted input: those settings.

set -eu
. "$(dirname "$0")/common.sh"

SMTP_N=${SMTP_N:-2000}
SMTP_CONNS=${SMTP_CONNS:-4}
SMTP_PER_CONN=${SMTP_PER_CONN:-10}
SMTP_SIZE=${SMTP_SIZE:-4096}
SMTP_REPEAT=${SMTP_REPEAT:-1}
SMTP_SERVERS=${SMTP_SERVERS:-postfix loft}
CLIENT=$BENCH/smtp_client.py
PF_USER=loftbenchpf
POSTFIX=${POSTFIX:-/usr/sbin/postfix}
mkdir -p "$OUT"
RESULTS=${RESULTS:-$OUT/smtp-$(date +%Y%m%d-%H%M%S).tsv}

for v in SMTP_N SMTP_CONNS SMTP_PER_CONN SMTP_SIZE SMTP_REPEAT; do
	case ${!v} in '' | *[!0-9]* | 0) die "$v must be a number above 0" ;; esac
done
[ "$(id -u)" = 0 ] || die "needs root (Postfix's master and loftd start as root)"
why=$(loft_built "$LOFTD" "$LOFTCTL") || die "$why"
if [ ! -x "$POSTFIX" ]; then
	# No questions, no system instance configured.
	echo "postfix postfix/main_mailer_type select No configuration" |
	    debconf-set-selections 2>/dev/null || true
	ensure_installed "$POSTFIX" postfix || die "Postfix is not installed"
fi
make_workdir
for u in loft loftnull; do
	id "$u" >/dev/null 2>&1 ||
	    useradd --system --no-create-home --shell /usr/sbin/nologin "$u"
done
if ! id "$PF_USER" >/dev/null 2>&1; then
	useradd --system --no-create-home --shell /usr/sbin/nologin "$PF_USER"
fi

# Postfix: a private instance under $W/pf.
pf_setup() {
	local d=$W/pf port=$1
	rm -rf "$d"
	mkdir -p "$d/etc" "$d/spool" "$d/data" "$d/home"
	chown postfix "$d/data"
	chown "$PF_USER" "$d/home"
	usermod -d "$d/home" "$PF_USER"
	cat >"$d/etc/main.cf" <<EOF
# Written by bench/smtp.sh; used only by this benchmark run.
compatibility_level = 3.6
queue_directory = $d/spool
data_directory = $d/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.localdomain
mydestination = bench.localdomain, localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
home_mailbox = Maildir/
mailbox_command =
biff = no
maillog_file = $d/maillog
maillog_file_prefixes = $W
EOF
	# The stock master.cf with smtpd on our port and nothing chrooted.
	sed -e "s/^smtp      inet  n       -       y/127.0.0.1:$port inet n - n/" \
	    -e '/^[a-z]/s/^\([a-z0-9.:-]*\) *\([a-z-]*\) *\([n-]\) *\([n-]\) *y /\1 \2 \3 \4 n /' \
	    /etc/postfix/master.cf >"$d/etc/master.cf"
	"$POSTFIX" -c "$d/etc" check >>"$d/server.log" 2>&1
}

loft_setup() {
	local d=$W/loft port=$1
	rm -rf "$d"
	mkdir -p "$d/mail"
	chown "$RUN_UID:$RUN_GID" "$d/mail"
	cat >"$d/loft.conf" <<EOF
# Written by bench/smtp.sh; used only by this benchmark run.
user_database = $d/users
mail_location = maildir:$d/mail/%u
maillog_file = $d/maillog
mailbox_size_limit = 0
virtual_uid = $RUN_UID
virtual_gid = $RUN_GID
myhostname = bench.localdomain
mydestination = bench.localdomain, localhost
smtp_listen = 127.0.0.1:$port
queue_directory = $d/queue
queue_manager = yes
login_chroot = $d/login-chroot
EOF
	echo bench-password | "$W/bin/loftctl" -c "$d/loft.conf" user add \
	    bench >/dev/null
}

SERVER_PID=
stop_server() {
	case ${SERVER:-} in
	postfix) "$POSTFIX" -c "$W/pf/etc" stop >/dev/null 2>&1 || true ;;
	loft)
		if [ -n "$SERVER_PID" ]; then
			kill "$SERVER_PID" 2>/dev/null || true
			wait "$SERVER_PID" 2>/dev/null || true
		fi
		;;
	esac
	SERVER_PID=
}
trap 'stop_server; cleanup_workdir' EXIT

# start SERVER: set up, start, wait for the port; MAILDIR and RCPT set.
start() {
	SERVER=$1
	read -r PORT < <("$PYTHON" "$CLIENT" port)
	if [ "$SERVER" = postfix ]; then
		pf_setup "$PORT" || return 1
		"$POSTFIX" -c "$W/pf/etc" start >>"$W/pf/server.log" 2>&1 ||
		    return 1
		MAILDIR=$W/pf/home/Maildir
		RCPT=$PF_USER@bench.localdomain
		LOG=$W/pf/server.log
	else
		loft_setup "$PORT"
		"$W/bin/loftd" -c "$W/loft/loft.conf" -f >>"$W/loft/server.log" \
		    2>&1 &
		SERVER_PID=$!
		MAILDIR=$W/loft/mail/bench
		RCPT=bench@bench.localdomain
		LOG=$W/loft/server.log
	fi
	"$PYTHON" "$CLIENT" wait --port "$PORT" --timeout 30
}

printf 'bench\tserver\tstep\tn\tseconds\tstatus\n' >"$RESULTS"
for server in $SMTP_SERVERS; do
	for pass in $(seq "$SMTP_REPEAT"); do
		say "$server: pass $pass, $SMTP_N messages"
		if ! start "$server"; then
			say "$server does not start: $(tail -3 "$LOG" 2>/dev/null)"
			printf 'smtp\t%s\taccepted\t%s\t-\tFAIL\n' "$server" \
			    "$SMTP_N" >>"$RESULTS"
			stop_server
			continue
		fi
		if out=$("$PYTHON" "$CLIENT" run --port "$PORT" --rcpt "$RCPT" \
		    --maildir "$MAILDIR" --n "$SMTP_N" --conns "$SMTP_CONNS" \
		    --per-conn "$SMTP_PER_CONN" --size "$SMTP_SIZE"); then
			read -r acc del <<<"$out"
			printf 'smtp\t%s\taccepted\t%s\t%s\tok\n' "$server" \
			    "$SMTP_N" "$acc" >>"$RESULTS"
			printf 'smtp\t%s\tdelivered\t%s\t%s\tok\n' "$server" \
			    "$SMTP_N" "$del" >>"$RESULTS"
		else
			printf 'smtp\t%s\taccepted\t%s\t-\tFAIL\n' "$server" \
			    "$SMTP_N" >>"$RESULTS"
		fi
		stop_server
	done
done

# The table: messages per second, median of the passes, and the ratio.
"$PYTHON" - "$RESULTS" "$SMTP_N" "$SMTP_CONNS" "$SMTP_PER_CONN" \
    "$SMTP_SIZE" <<'EOF'
import statistics
import sys

path, n, conns, per, size = sys.argv[1:6]
cells = {}
for line in open(path).read().splitlines()[1:]:
    _, server, step, count, secs, status = line.split("\t")
    c = cells.setdefault((server, step), [])
    c.append(float(secs) if status == "ok" else None)


def rate(server, step):
    v = cells.get((server, step))
    if not v or None in v:
        return None
    return int(n) / statistics.median(v)


print("SMTP to a local Maildir: loftd against Postfix (local(8)), same "
      "run; %s messages of %s bytes, %s connections at once, %s messages "
      "per connection; messages per second, higher is better (above 1: "
      "loft is faster)" % (n, size, conns, per))
print("  %-10s %10s %10s %14s" % ("step", "postfix", "loft",
                                  "loft/postfix"))
for step in ("accepted", "delivered"):
    p, q = rate("postfix", step), rate("loft", step)
    fmt = lambda x: "FAIL" if x is None else "%.0f" % x  # noqa: E731
    ratio = "-" if p is None or q is None else "%.2fx" % (q / p)
    print("  %-10s %10s %10s %14s" % (step, fmt(p), fmt(q), ratio))
EOF
