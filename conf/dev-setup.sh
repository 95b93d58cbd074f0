#!/bin/sh
# Sets up (on first run) and shows a development installation of loft under
# ./dev: configuration, a demo user, a self-signed certificate, and mail
# storage under dev/var. Run through `make dev`; safe to run again.
set -eu
top=$(pwd)
dev=$top/dev
conf=$dev/loft.conf
mkdir -p "$dev/var/mail" "$dev/tls"
chmod 700 "$dev/var"

# Run as root, loft never works on mail as root: mail belongs to an
# unprivileged "loft" user, who must be able to reach dev/var; loftd's
# login processes run as "loftnull", who owns nothing; its smtpd processes
# (SMTP) as "loftsmtp", who owns the queue in dev/queue and no mailbox.
owner_conf=
smtpd_conf=
if [ "$(id -u)" = 0 ]; then
	for u in loft loftnull loftsmtp; do
		getent passwd $u >/dev/null && continue
		useradd --system --no-create-home --home-dir /nonexistent \
		    --shell /usr/sbin/nologin $u
		echo "added system user $u"
	done
	owner_conf="virtual_uid = loft
virtual_gid = loft"
	smtpd_conf="mail_owner = loftsmtp"
	chown -R loft:loft "$dev/var"
	d=$dev
	while [ "$d" != / ]; do
		if [ -z "$(find "$d" -maxdepth 0 -perm -o=x)" ]; then
			chmod o+x "$d"
			echo "let others traverse $d (o+x) so that user loft reaches dev/var"
		fi
		d=$(dirname "$d")
	done
fi

if [ ! -f "$conf" ]; then
	cat > "$conf" <<CONF
# Development configuration written by conf/dev-setup.sh.
myhostname = localhost
mydomain = localdomain
user_database = $dev/users
mail_location = maildir:$dev/var/mail/%u
maillog_file = $dev/var/maillog
$owner_conf
CONF
	echo "wrote $conf"
fi

if [ ! -f "$dev/tls/cert.pem" ]; then
	openssl req -x509 -newkey rsa:2048 -nodes -days 825 \
	    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
	    -keyout "$dev/tls/key.pem" -out "$dev/tls/cert.pem" 2>/dev/null
	chmod 600 "$dev/tls/key.pem"
	echo "made a self-signed certificate in $dev/tls"
fi

# The daemon's part of the configuration (added to a dev/loft.conf made
# before loftd existed, too).
if ! grep -q '^imap_listen' "$conf" && grep -q '^pop3_listen' "$conf"; then
	printf '%s\n' "imap_listen = 127.0.0.1:1143" \
	    "imaps_listen = 127.0.0.1:1993" >> "$conf"
	echo "added the IMAP listeners to $conf"
fi
if ! grep -q '^pop3_listen' "$conf"; then
	cat >> "$conf" <<CONF
# loftd: POP3 with STLS on 1110, POP3 over TLS on 1995, IMAP with
# STARTTLS on 1143, IMAP over TLS on 1993.
pop3_listen = 127.0.0.1:1110
pop3s_listen = 127.0.0.1:1995
imap_listen = 127.0.0.1:1143
imaps_listen = 127.0.0.1:1993
tls_cert_file = $dev/tls/cert.pem
tls_key_file = $dev/tls/key.pem
login_chroot = $dev/login-root
CONF
	echo "added the loftd settings to $conf"
fi

# SMTP (added to a dev/loft.conf made before loftd received mail too):
# the port 25 role on 2525 and submission on 2587, unprivileged ports.
if ! grep -q '^smtp_listen' "$conf"; then
	cat >> "$conf" <<CONF
# loftd: SMTP on 2525 (the port 25 role, STARTTLS), submission on 2587
# (STARTTLS, then AUTH); accepted mail is queued in dev/queue.
smtp_listen = 127.0.0.1:2525
submission_listen = 127.0.0.1:2587
queue_directory = $dev/queue
alias_maps =
$smtpd_conf
CONF
	echo "added the SMTP listeners to $conf"
fi

if ! ctl/loftctl -c "$conf" user show demo >/dev/null 2>&1; then
	echo demo | ctl/loftctl -c "$conf" user add demo
	echo "added user demo (password: demo)"
	for n in 1 2 3; do
		case $n in
		1) subj="Welcome to loft"
		   body="This message was delivered by loft-deliver." ;;
		2) subj="Reading this mail over POP3"
		   body="Point Thunderbird or curl at 127.0.0.1 port 1110 (STARTTLS) or 1995 (SSL/TLS)." ;;
		3) subj="A line that starts with a dot"
		   body=".this line is dot-stuffed on the wire and restored by your client" ;;
		esac
		printf 'From: loft <postmaster@localhost>\nTo: demo@localhost\nSubject: %s\nDate: %s\nMessage-ID: <welcome.%s.%s@localhost>\n\n%s\n' \
		    "$subj" "$(date -R)" "$(date +%s)" "$n" "$body" |
		    mda/loft-deliver -c "$conf" -d demo -f postmaster@localhost
	done
fi

# (Re)start the daemon on this configuration.
if pkill -TERM -f "server/loftd/loftd -c $conf" 2>/dev/null; then
	echo "stopping the loftd already running"
	i=0
	while pgrep -f "server/loftd/loftd -c $conf" >/dev/null && [ $i -lt 50 ]; do
		sleep 0.2
		i=$((i + 1))
	done
fi
"$top/server/loftd/loftd" -c "$conf"
echo "started loftd (log: $dev/var/maillog)"

echo
ctl/loftctl -c "$conf" index stats demo
cat <<EOF

loftd serves POP3 and IMAP for user demo, password demo, and receives
mail by SMTP on 127.0.0.1 port 2525 (and submission, with STARTTLS and
AUTH as demo, on 2587); mail for demo@localhost is delivered to the
mailbox, other mail goes out by SMTP (queue: $dev/queue):
  Thunderbird:  server 127.0.0.1; IMAP port 1143 with STARTTLS or 1993
                with SSL/TLS (POP3: 1110 or 1995); normal password; accept
                the self-signed certificate.
  curl:         curl --ssl-reqd --cacert $dev/tls/cert.pem -u demo:demo pop3://localhost:1110/
                curl --cacert $dev/tls/cert.pem -u demo:demo 'imaps://localhost:1993/INBOX;UID=1'
Deliver more mail:   mda/loft-deliver -c $conf -d demo < message
Send mail by SMTP:   swaks --server 127.0.0.1:2525 --to demo@localhost
Settings in effect:  ctl/loftctl -c $conf config -n
Log:                 $dev/var/maillog
Stop the daemon:     pkill -f "server/loftd/loftd -c $conf"
EOF
