/*
 * tls_nocheck.c: accept-anything stand-ins for lib/tls.c's
 * tls_check_protocols, tls_check_ciphers and tls_check_suites, for the
 * programs that make no TLS context: loft-deliver and loftd-mail.
 *
 * The table of parameters (conf_params.c) checks the TLS settings with
 * OpenSSL. A program that links this object before lib/libloft.a has the
 * three symbols defined already, so the linker never pulls tls.o out of
 * the archive, and with it OpenSSL: mapping and binding libssl and
 * libcrypto cost loft-deliver about half of its instructions a delivery
 * (bench/rules.sh), and every mail process some 500 KiB of relocated data.
 * It is not part of lib/libloft.a (Makefile.in leaves it out), where it
 * would race tls.o for the same symbols.
 *
 * Accepting any value is right for both: loftd-mail loads the text the
 * master loaded and checked with the real checks (LOFTD_FD_CONF), and a
 * wrong TLS setting is loftd's and loftctl's to report; it must not defer
 * a local delivery.
 *
 * Trusts: nothing; it looks at no input.
 */
#include "config.h"
#include "tls.h"

int
tls_check_protocols(const char *value)
{
	(void)value;
	return 0;
}

int
tls_check_ciphers(const char *value)
{
	(void)value;
	return 0;
}

int
tls_check_suites(const char *value)
{
	(void)value;
	return 0;
}
