#!/bin/sh
# mkcert.sh DIR [CN]: make a throw-away self-signed certificate for tests:
# DIR/cert.pem and DIR/key.pem (mode 0600), RSA 2048, valid two days,
# subject CN (default localhost). Prints nothing; exits non-zero if the
# openssl command is missing or fails, so a test can skip.
set -eu
dir=${1:?usage: mkcert.sh DIR [CN]}
cn=${2:-localhost}
command -v openssl >/dev/null 2>&1 || exit 2
umask 077
openssl req -x509 -newkey rsa:2048 -nodes -subj "/CN=$cn" -days 2 \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1
