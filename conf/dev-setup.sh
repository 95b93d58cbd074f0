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
# unprivileged "loft" user, who must be able to reach dev/var.
owner_conf=
if [ "$(id -u)" = 0 ]; then
	if ! getent passwd loft >/dev/null; then
		useradd --system --no-create-home --home-dir /nonexistent \
		    --shell /usr/sbin/nologin loft
		echo "added system user loft (owner of the development mail)"
	fi
	owner_conf="virtual_uid = loft
virtual_gid = loft"
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

if ! ctl/loftctl -c "$conf" user show demo >/dev/null 2>&1; then
	echo demo | ctl/loftctl -c "$conf" user add demo
	echo "added user demo (password: demo)"
	printf 'From: loft <postmaster@localhost>\nTo: demo@localhost\nSubject: Welcome to loft\nDate: %s\nMessage-ID: <welcome.%s@localhost>\n\nThis message was delivered by loft-deliver.\n' \
	    "$(date -R)" "$(date +%s)" |
	    mda/loft-deliver -c "$conf" -d demo -f postmaster@localhost
fi

echo
ctl/loftctl -c "$conf" index stats demo
echo
echo "Deliver more mail:   mda/loft-deliver -c $conf -d demo < message"
echo "Read it with mutt:   mutt -f $dev/var/mail/demo"
echo "Settings in effect:  ctl/loftctl -c $conf config -n"
echo "Log:                 $dev/var/maillog"
echo "The network daemon (POP3, IMAP, SMTP) is not part of this version yet."
