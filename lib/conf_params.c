/*
 * conf_params.c: the table of configuration parameters: name, type,
 * default, limits and a one-line description (shown by loftctl config -v,
 * and repeated in conf/loft.conf and loft.conf(5), which a unit test keeps
 * in step with this table). Postfix declares each limit once in
 * mail_params.h; here it is one row.
 *
 * Trusts nothing it is given: the check functions take expanded values
 * from the configuration file.
 */
#include "config.h"
#include <arpa/inet.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "conf.h"
#include "tls.h"

static const char *const conf_lock_methods[] = {
	"fcntl", "dotlock", "flock", NULL
};

static const char *const conf_smtp_tls_levels[] = {
	"none", "may", "encrypt", "verify", NULL
};

static const char *const conf_sasl_security_options[] = {
	"noplaintext", "noanonymous", NULL
};

static const char *const conf_facilities[] = {
	"auth", "authpriv", "daemon", "mail", "user",
	"local0", "local1", "local2", "local3",
	"local4", "local5", "local6", "local7", NULL
};

/* conf_location_option: whether "KEY=VALUE" (len bytes) is an option the
 * storage type allows and that was not given before (bits in *seen), with
 * a non-empty VALUE. */
static bool
conf_location_option(const char *opt, size_t len, bool mbox,
    unsigned int *seen)
{
	const char *eq = memchr(opt, '=', len);
	unsigned int bit;

	if (eq == NULL || eq + 1 == opt + len || eq - opt != 5)
		return false;
	if (strncmp(opt, "INDEX", 5) == 0)
		bit = 1;
	else if (mbox && strncmp(opt, "INBOX", 5) == 0)
		bit = 2;
	else
		return false;
	if (*seen & bit)
		return false;
	*seen |= bit;
	return true;
}

/* conf_check_location: maildir:PATH[:INDEX=DIR] or
 * mbox:PATH[:INBOX=FILE][:INDEX=DIR]. Only the shape is checked here, so
 * that a typing error stops loft at start-up; mailloc.c expands %u, %n,
 * %d, %h and ~ for each user and checks the resulting paths. */
static int
conf_check_location(const char *value)
{
	const char *p, *end;
	unsigned int seen = 0;
	bool mbox;

	if (strncmp(value, "maildir:", 8) == 0) {
		mbox = false;
		p = value + 8;
	} else if (strncmp(value, "mbox:", 5) == 0) {
		mbox = true;
		p = value + 5;
	} else
		return -1;
	end = strchr(p, ':');
	if (end == p || *p == '\0')
		return -1;	/* empty PATH */
	while (end != NULL) {
		p = end + 1;
		end = strchr(p, ':');
		if (!conf_location_option(p,
		    end != NULL ? (size_t)(end - p) : strlen(p), mbox, &seen))
			return -1;
	}
	return 0;
}

/* conf_check_network: one mynetworks item, "a.b.c.d[/n]" or
 * "[ipv6][/n]" (len bytes). Only the shape: smtp_relay_new() also refuses
 * host bits past the prefix, with a message that names the item. */
static bool
conf_check_network(const char *item, size_t len)
{
	char buf[128], *addr = buf, *slash, *end;
	unsigned char bin[16];
	int family = AF_INET;
	size_t digits;

	if (len >= sizeof(buf))
		return false;
	memcpy(buf, item, len);
	buf[len] = '\0';
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = '\0';
	if (buf[0] == '[') {
		family = AF_INET6;
		if ((end = strchr(buf, ']')) == NULL || end[1] != '\0')
			return false;
		*end = '\0';
		addr = buf + 1;
	}
	if (inet_pton(family, addr, bin) != 1)
		return false;
	if (slash == NULL)
		return true;
	digits = strspn(slash, "0123456789");
	return digits > 0 && digits <= 3 && slash[digits] == '\0' &&
	    atoi(slash) <= (family == AF_INET ? 32 : 128);
}

/* conf_check_mynetworks: every item a network (an empty list is fine:
 * no client is trusted by address). */
static int
conf_check_mynetworks(const char *value)
{
	const char *sep = ", \t\r\n";
	size_t len;

	for (value += strspn(value, sep); *value != '\0';
	    value += strspn(value, sep)) {
		len = strcspn(value, sep);
		if (!conf_check_network(value, len))
			return -1;
		value += len;
	}
	return 0;
}

static const char *const conf_relay_restrictions[] = {
	"permit_mynetworks", "permit_sasl_authenticated",
	"reject_unauth_destination", "defer_unauth_destination",
	"permit", "reject", NULL
};

/* pop3_expire: a number of days would need the time each message was
 * first retrieved, which the index does not keep yet. */
static const char *const conf_pop3_expire[] = { "never", "0", NULL };

/* conf_check_relay_restrictions: one of the restrictions that refuse
 * unknown destinations must be there, or the server is an open relay
 * (Postfix refuses to run without one too). The names themselves are
 * checked against conf_relay_restrictions[]. */
static int
conf_check_relay_restrictions(const char *value)
{
	const char *sep = ", \t\r\n";
	size_t len;

	for (value += strspn(value, sep); *value != '\0';
	    value += strspn(value, sep)) {
		len = strcspn(value, sep);
		if ((len == 25 && strncmp(value, "reject_unauth_destination",
		    len) == 0) || (len == 24 && strncmp(value,
		    "defer_unauth_destination", len) == 0) ||
		    (len == 6 && strncmp(value, "reject", len) == 0))
			return 0;
		value += len;
	}
	return -1;
}

/* conf_check_alias_maps: alias_maps and alias_database items are
 * lmdb:/path, hash:/path (Postfix's spelling, compiled by loft into
 * /path.lmdb too) or /path; smtp_alias_item_paths() reads them. */
static int
conf_check_alias_maps(const char *value)
{
	const char *sep = ", \t\r\n";
	size_t len;

	for (value += strspn(value, sep); *value != '\0';
	    value += strspn(value, sep)) {
		len = strcspn(value, sep);
		if (len > 5 && (strncmp(value, "lmdb:", 5) == 0 ||
		    strncmp(value, "hash:", 5) == 0)) {
			value += 5;
			len -= 5;
		}
		if (value[0] != '/' || len < 2 || value[len - 1] == '/')
			return -1;
		value += len;
	}
	return 0;
}

/* conf_check_mode: a file mode in octal, 0 to 0777 (lmtp_socket_mode). */
static int
conf_check_mode(const char *value)
{
	size_t len = strspn(value, "01234567");

	if (len == 0 || len > 4 || value[len] != '\0' ||
	    strtoul(value, NULL, 8) > 0777)
		return -1;
	return 0;
}

#define CONF_ALIAS_FORM \
	"a list of lmdb:/path, hash:/path or /path (an absolute path)"

#define CONF_LOCATION_FORM \
	"maildir:PATH[:INDEX=DIR] or mbox:PATH[:INBOX=FILE][:INDEX=DIR]"

/* Rows are kept in alphabetical order within each group; order does not
 * matter to the code. TIME maxima are checked in conf.c (INT_MAX). */
const struct conf_param conf_params[] = {
	/* Identity. */
	{ "config_directory", CONF_TYPE_PATH, NULL, 0, 0, 0, NULL, NULL, NULL,
	    CONF_F_DYNAMIC | CONF_F_READONLY,
	    "Directory of the configuration file (set from where it was "
	    "read; read-only)" },
	{ "mydestination", CONF_TYPE_LIST,
	    "$myhostname, localhost.$mydomain, localhost",
	    0, 0, 0, NULL, NULL, NULL, 0,
	    "Domains whose mail is delivered on this machine" },
	{ "mydomain", CONF_TYPE_STRING, NULL, 0, 0, 0, NULL, NULL, NULL,
	    CONF_F_DYNAMIC,
	    "Internet domain of this machine (default: myhostname without "
	    "its first label)" },
	{ "myhostname", CONF_TYPE_STRING, NULL, 0, 0, 0, NULL, NULL, NULL,
	    CONF_F_DYNAMIC,
	    "Fully qualified name of this machine (default: gethostname())" },
	{ "myorigin", CONF_TYPE_STRING, "$myhostname",
	    0, 0, 0, NULL, NULL, NULL, 0,
	    "Domain appended to addresses that have none" },

	/* Sizes and addresses. */
	{ "mailbox_size_limit", CONF_TYPE_SIZE, "51200000",
	    0, LLONG_MAX, 0, NULL, NULL, NULL, 0,
	    "Largest size of a mailbox in bytes (0: no limit)" },
	{ "message_size_limit", CONF_TYPE_SIZE, "10240000",
	    0, LLONG_MAX, 0, NULL, NULL, NULL, 0,
	    "Largest message accepted, in bytes (0: no limit)" },
	{ "recipient_delimiter", CONF_TYPE_STRING, "",
	    0, 0, 0, NULL, NULL, NULL, 0,
	    "Characters that separate a user name from an address "
	    "extension (empty: none)" },
	/* Issue 6: procmail-compatible rules in loft-deliver (lib/rules.h). */
	{ "mda_rules_file", CONF_TYPE_STRING, "~/.procmailrc",
	    0, 0, 0, NULL, NULL, NULL, 0,
	    "The user's rule file in procmailrc(5) language, ~ being the "
	    "user's home (none: no rules)" },
	{ "mda_command_timeout", CONF_TYPE_TIME, "60s",
	    0, 86400, 's', NULL, NULL, NULL, 0,
	    "Time a command run by the rules may take before it is killed "
	    "(0: no limit)" },
	{ "sendmail_path", CONF_TYPE_STRING, "",
	    0, 0, 0, NULL, NULL, NULL, 0,
	    "The sendmail command a .forward or a rule forwards mail with "
	    "(empty: loft's own, else /usr/sbin/sendmail)" },

	/* Aliases (smtp/smtp_alias.c), with Postfix's names: alias_maps
	 * are searched, alias_database is what newaliases builds. */
	{ "alias_database", CONF_TYPE_LIST, "$alias_maps",
	    0, 0, 0, NULL, conf_check_alias_maps, CONF_ALIAS_FORM, 0,
	    "Alias files that loftctl newaliases compiles, each into "
	    "FILE.lmdb" },
	{ "alias_maps", CONF_TYPE_LIST, "lmdb:/etc/aliases",
	    0, 0, 0, NULL, conf_check_alias_maps, CONF_ALIAS_FORM, 0,
	    "Alias databases searched for local recipients, in order "
	    "(aliases(5) files compiled by loftctl newaliases)" },

	/* Users. */
	{ "system_users", CONF_TYPE_BOOL, "no", 0, 0, 0, NULL, NULL, NULL, 0,
	    "Whether accounts in the system password database receive mail" },
	{ "user_database", CONF_TYPE_PATH, "$config_directory/users",
	    0, 0, 0, NULL, NULL, NULL, 0,
	    "File of virtual users (format in loftctl(8))" },
	{ "virtual_gid", CONF_TYPE_STRING, "", 0, 0, 0, NULL, NULL, NULL, 0,
	    "Group name or number owning virtual users' mail (empty: the "
	    "primary group of virtual_uid)" },
	{ "virtual_uid", CONF_TYPE_STRING, "", 0, 0, 0, NULL, NULL, NULL, 0,
	    "User name or number owning virtual users' mail (empty: the "
	    "user running loft)" },

	/* Mail storage. */
	{ "mail_fsync", CONF_TYPE_BOOL, "yes", 0, 0, 0, NULL, NULL, NULL, 0,
	    "Whether mail and indexes are synced to disk before delivery "
	    "is acknowledged" },
	{ "mail_location", CONF_TYPE_STRING, "maildir:~/Maildir",
	    0, 0, 0, NULL, conf_check_location, CONF_LOCATION_FORM, 0,
	    "Where virtual users' mail is stored" },
	{ "quota_full_tempfail", CONF_TYPE_BOOL, "no",
	    0, 0, 0, NULL, NULL, NULL, 0,
	    "Whether a full mailbox defers delivery (4.2.2) instead of "
	    "bouncing it (5.2.2)" },
	{ "system_mail_location", CONF_TYPE_STRING,
	    "mbox:~/mail:INBOX=/var/mail/%u",
	    0, 0, 0, NULL, conf_check_location, CONF_LOCATION_FORM, 0,
	    "Where system users' mail is stored" },

	/* Locking. */
	{ "deliver_lock_attempts", CONF_TYPE_INT, "20",
	    1, 1000, 0, NULL, NULL, NULL, 0,
	    "Attempts to lock a mailbox before delivery is deferred" },
	/* An hour at most: a longer wait is a mistake, and callers may count
	 * it in milliseconds. */
	{ "deliver_lock_delay", CONF_TYPE_TIME, "1s",
	    0, 3600, 's', NULL, NULL, NULL, 0,
	    "Time between attempts to lock a mailbox" },
	{ "mailbox_delivery_lock", CONF_TYPE_LIST, "fcntl, dotlock",
	    0, 0, 0, conf_lock_methods, NULL, NULL, 0,
	    "Locks taken on an mbox file during delivery, in this order" },
	{ "stale_lock_time", CONF_TYPE_TIME, "500s",
	    1, LLONG_MAX, 's', NULL, NULL, NULL, 0,
	    "Age after which a dot-lock file is stale and removed" },

	/* Index. */
	{ "index_map_size", CONF_TYPE_SIZE, "1048576",
	    65536, LLONG_MAX, 0, NULL, NULL, NULL, 0,
	    "Initial size in bytes of each user's index map" },
	{ "index_max_size", CONF_TYPE_SIZE, "8589934592",
	    65536, LLONG_MAX, 0, NULL, NULL, NULL, 0,
	    "Size in bytes up to which an index map may grow" },

	/* TLS. The keys are read by the daemon at start-up, as root; the
	 * cipher settings are tried on an OpenSSL context when the
	 * configuration is loaded, so that a typing error stops loft. */
	{ "disable_plaintext_auth", CONF_TYPE_BOOL, "yes",
	    0, 0, 0, NULL, NULL, NULL, 0,
	    "Whether POP3, IMAP and SMTP refuse passwords before TLS is on" },
	{ "tls_cert_file", CONF_TYPE_PATH, "", 0, 0, 0, NULL, NULL, NULL, 0,
	    "PEM file of the server certificate, then any intermediate "
	    "certificates (empty: no TLS)" },
	{ "tls_ciphers", CONF_TYPE_STRING, "", 0, 0, 0, NULL,
	    tls_check_ciphers, "an OpenSSL cipher list", 0,
	    "OpenSSL cipher list for TLS 1.2 (empty: OpenSSL's default)" },
	{ "tls_ciphersuites", CONF_TYPE_STRING, "", 0, 0, 0, NULL,
	    tls_check_suites, "TLS 1.3 cipher suite names separated by \":\"",
	    0,
	    "TLS 1.3 cipher suites (empty: OpenSSL's default)" },
	{ "tls_key_file", CONF_TYPE_PATH, "", 0, 0, 0, NULL, NULL, NULL, 0,
	    "PEM file of the private key (empty: in tls_cert_file)" },
	{ "tls_protocols", CONF_TYPE_LIST, "TLSv1.2, TLSv1.3", 0, 0, 0, NULL,
	    tls_check_protocols,
	    "a list of TLSv1.2 and TLSv1.3 (older versions are not secure)",
	    0,
	    "TLS versions offered" },

	/* The daemon (loftd): listeners, processes, limits. */
	{ "client_connection_limit", CONF_TYPE_INT, "20",
	    1, 100000, 0, NULL, NULL, NULL, 0,
	    "Connections loftd accepts at once from one client IP address" },
	{ "command_rate_limit", CONF_TYPE_INT, "50000",
	    0, 1000000, 0, NULL, NULL, NULL, 0,
	    "Commands one connection may send per second before its input "
	    "is paused (0: no limit)" },
	{ "connection_limit", CONF_TYPE_INT, "1000",
	    1, 1000000, 0, NULL, NULL, NULL, 0,
	    "Client connections loftd serves at once, all protocols" },
	{ "idle_timeout", CONF_TYPE_TIME, "10m",
	    10, 86400, 's', NULL, NULL, NULL, 0,
	    "Time a logged-in client may stay silent before it is "
	    "disconnected (RFC 1939: at least 10 minutes for POP3)" },
	{ "imap_compress", CONF_TYPE_BOOL, "yes", 0, 0, 0, NULL, NULL, NULL,
	    0, "Whether IMAP offers COMPRESS=DEFLATE after login (RFC 4978)" },
	{ "imap_listen", CONF_TYPE_LIST, "", 0, 0, 0, NULL, NULL, NULL, 0,
	    "Addresses (host:port) where loftd serves IMAP, with STARTTLS "
	    "(empty: none)" },
	{ "imaps_listen", CONF_TYPE_LIST, "", 0, 0, 0, NULL, NULL, NULL, 0,
	    "Addresses (host:port) where loftd serves IMAP over TLS "
	    "(RFC 8314; empty: none)" },
	{ "lmtp_listen", CONF_TYPE_LIST, "", 0, 0, 0, NULL, NULL, NULL, 0,
	    "Addresses (host:port, clients in mynetworks only) or UNIX "
	    "socket paths (absolute) where loftd takes mail by LMTP for "
	    "local users (empty: none)" },
	{ "lmtp_socket_mode", CONF_TYPE_STRING, "0666",
	    0, 0, 0, NULL, conf_check_mode, "an octal file mode, 0 to 0777",
	    0,
	    "Permissions of the UNIX sockets of lmtp_listen (owned by root)" },
	{ "login_chroot", CONF_TYPE_PATH, "/run/loft/login",
	    0, 0, 0, NULL, NULL, NULL, 0,
	    "Empty directory the login processes are locked into when loftd "
	    "starts as root (empty: no chroot)" },
	{ "login_processes", CONF_TYPE_INT, "1",
	    1, 64, 0, NULL, NULL, NULL, 0,
	    "Processes that talk to clients before they log in" },
	{ "login_timeout", CONF_TYPE_TIME, "60s",
	    1, 3600, 's', NULL, NULL, NULL, 0,
	    "Time a client may take between commands before it has logged "
	    "in" },
	{ "login_user", CONF_TYPE_STRING, "loftnull",
	    0, 0, 0, NULL, NULL, NULL, 0,
	    "Unprivileged account of the login processes when loftd starts "
	    "as root; it must own no mail and run nothing else" },
	{ "mail_owner", CONF_TYPE_STRING, "loft",
	    0, 0, 0, NULL, NULL, NULL, 0,
	    "Unprivileged account of the smtpd processes and owner of "
	    "queue_directory when loftd starts as root; it must own no "
	    "mailbox" },
	{ "mail_process_idle_time", CONF_TYPE_TIME, "60s",
	    1, 86400, 's', NULL, NULL, NULL, 0,
	    "Time a mail process of loftd stays without sessions before it "
	    "exits" },
	{ "pop3_expire", CONF_TYPE_STRING, "never",
	    0, 0, 0, conf_pop3_expire, NULL, NULL, 0,
	    "What POP3 announces as EXPIRE (RFC 2449): never (mail stays "
	    "until the client deletes it) or 0 (mail RETR sent is deleted "
	    "at QUIT)" },
	{ "pop3_line_limit", CONF_TYPE_INT, "255",
	    255, 65536, 0, NULL, NULL, NULL, 0,
	    "Longest POP3 command line in bytes, CRLF included (RFC 2449: "
	    "255)" },
	{ "pop3_listen", CONF_TYPE_LIST, "", 0, 0, 0, NULL, NULL, NULL, 0,
	    "Addresses (host:port) where loftd serves POP3, with STLS "
	    "(empty: none)" },
	{ "pop3_login_delay", CONF_TYPE_TIME, "0s",
	    0, 86400, 's', NULL, NULL, NULL, 0,
	    "Least time between two POP3 logins of a user, announced as "
	    "LOGIN-DELAY (RFC 2449); a login sooner gets [LOGIN-DELAY] "
	    "(0: no limit)" },
	{ "pop3s_listen", CONF_TYPE_LIST, "", 0, 0, 0, NULL, NULL, NULL, 0,
	    "Addresses (host:port) where loftd serves POP3 over TLS "
	    "(RFC 8314; empty: none)" },
	{ "queue_directory", CONF_TYPE_PATH, "/var/spool/loft",
	    0, 0, 0, NULL, NULL, NULL, 0,
	    "Directory of the SMTP queue, owned by mail_owner (loftd makes "
	    "it, mode 0700, if missing)" },
	{ "shutdown_timeout", CONF_TYPE_TIME, "30s",
	    0, 3600, 's', NULL, NULL, NULL, 0,
	    "Time sessions get to finish after SIGTERM before they are cut" },
	{ "smtp_listen", CONF_TYPE_LIST, "", 0, 0, 0, NULL, NULL, NULL, 0,
	    "Addresses (host:port) where loftd receives mail by SMTP, the "
	    "port 25 role, with STARTTLS (empty: none)" },
	{ "submission_listen", CONF_TYPE_LIST, "", 0, 0, 0, NULL, NULL, NULL,
	    0, "Addresses (host:port) of message submission with STARTTLS "
	    "and AUTH, the port 587 role (empty: none)" },
	{ "submissions_listen", CONF_TYPE_LIST, "", 0, 0, 0, NULL, NULL, NULL,
	    0, "Addresses (host:port) of message submission over TLS, the "
	    "port 465 role (RFC 8314; empty: none)" },

	/* SMTP: relay control (smtp/smtp_relay.c), with Postfix's names,
	 * defaults and meaning; smtp_relay_new_conf() checks each item again
	 * and names the bad one. mydestination is with the identity above. */
	{ "mynetworks", CONF_TYPE_LIST, "127.0.0.0/8 [::1]/128",
	    0, 0, 0, NULL, conf_check_mynetworks,
	    "a list of networks: a.b.c.d/n or [ipv6]/n", 0,
	    "Networks of trusted clients, which may relay through this "
	    "machine (permit_mynetworks)" },
	{ "relay_domains", CONF_TYPE_LIST, "", 0, 0, 0, NULL, NULL, NULL, 0,
	    "Domains (and their subdomains) for which mail from anyone is "
	    "accepted and relayed onward" },
	{ "smtpd_hard_error_limit", CONF_TYPE_INT, "20",
	    1, 1000, 0, NULL, NULL, NULL, 0,
	    "Errors one SMTP session may make before it is disconnected "
	    "(421)" },
	{ "smtpd_processes", CONF_TYPE_INT, "1",
	    1, 63, 0, NULL, NULL, NULL, 0,
	    "Processes that receive mail by SMTP (with login_processes, at "
	    "most 64)" },
	{ "smtpd_recipient_limit", CONF_TYPE_INT, "1000",
	    1, 1000000, 0, NULL, NULL, NULL, 0,
	    "Recipients one SMTP message may have" },
	{ "smtpd_relay_restrictions", CONF_TYPE_LIST,
	    "permit_mynetworks, permit_sasl_authenticated, "
	    "reject_unauth_destination",
	    0, 0, 0, conf_relay_restrictions, conf_check_relay_restrictions,
	    "a list of permit_mynetworks, permit_sasl_authenticated, "
	    "reject_unauth_destination, defer_unauth_destination, permit or "
	    "reject, with reject_unauth_destination, defer_unauth_destination "
	    "or reject among them", 0,
	    "Restrictions on the recipients of SMTP clients, in order: who "
	    "may relay" },
	{ "smtpd_timeout", CONF_TYPE_TIME, "300s",
	    1, 86400, 's', NULL, NULL, NULL, 0,
	    "Time an SMTP client may stay silent, or a reply unsent, before "
	    "it is disconnected" },

	/* The queue manager (server/loftd/qmgr.c): local delivery out of
	 * queue_directory, with Postfix's names, defaults and meaning. */
	{ "always_bcc", CONF_TYPE_STRING, "", 0, 0, 0, NULL, NULL, NULL, 0,
	    "Address that gets a copy of every message received by SMTP "
	    "(empty: none)" },
	{ "bounce_queue_lifetime", CONF_TYPE_TIME, "5d",
	    0, 365 * 86400, 'd', NULL, NULL, NULL, 0,
	    "Time a bounce (null sender) is retried before it is given up" },
	{ "bounce_size_limit", CONF_TYPE_SIZE, "50000",
	    1, 104857600, 0, NULL, NULL, NULL, 0,
	    "Largest original, in bytes, a bounce returns in full; of a "
	    "larger one only the header is returned" },
	{ "command_time_limit", CONF_TYPE_TIME, "1000s",
	    1, 86400, 's', NULL, NULL, NULL, 0,
	    "Longest time a command of alias_maps may run for one "
	    "delivery; then it is killed and the delivery bounced" },
	{ "default_privs", CONF_TYPE_STRING, "nobody", 0, 0, 0, NULL, NULL,
	    NULL, 0,
	    "User the commands and files of alias_maps run as when the "
	    "alias database or include file naming them is root's" },
	{ "hopcount_limit", CONF_TYPE_INT, "50",
	    1, 10000, 0, NULL, NULL, NULL, 0,
	    "Most Received: header lines a message may have; more is a "
	    "mail forwarding loop" },
	{ "maximal_backoff_time", CONF_TYPE_TIME, "4000s",
	    1, 365 * 86400, 's', NULL, NULL, NULL, 0,
	    "Longest time between two attempts to deliver deferred mail" },
	{ "maximal_queue_lifetime", CONF_TYPE_TIME, "5d",
	    0, 365 * 86400, 'd', NULL, NULL, NULL, 0,
	    "Time deferred mail is retried before it is given up" },
	{ "minimal_backoff_time", CONF_TYPE_TIME, "300s",
	    1, 365 * 86400, 's', NULL, NULL, NULL, 0,
	    "Shortest time between two attempts to deliver deferred mail "
	    "(the delay doubles from it)" },
	{ "queue_manager", CONF_TYPE_BOOL, "yes", 0, 0, 0, NULL, NULL, NULL,
	    0, "Whether loftd delivers mail out of queue_directory (no: "
	    "mail received stays queued)" },

	/* Outbound SMTP from the queue manager (smtp/smtp_client.c,
	 * smtp/smtp_mx.c), with Postfix's names, defaults and meaning. */
	{ "default_destination_concurrency_limit", CONF_TYPE_INT, "20",
	    1, 1000, 0, NULL, NULL, NULL, 0,
	    "Outbound SMTP sessions to one destination at once" },
	{ "default_process_limit", CONF_TYPE_INT, "100",
	    1, 10000, 0, NULL, NULL, NULL, 0,
	    "Outbound SMTP sessions at once, all destinations together" },
	{ "relayhost", CONF_TYPE_STRING, "", 0, 0, 0, NULL, NULL, NULL, 0,
	    "Host all remote mail is sent through: [host]:port (no MX "
	    "lookup) or host[:port] (its MX); empty: the recipient "
	    "domain's MX" },
	{ "smtp_connect_timeout", CONF_TYPE_TIME, "30s",
	    1, 3600, 's', NULL, NULL, NULL, 0,
	    "Time a TCP connection to a remote SMTP server may take" },
	{ "smtp_connection_cache_time_limit", CONF_TYPE_TIME, "2s",
	    0, 300, 's', NULL, NULL, NULL, 0,
	    "Time an idle outbound SMTP session is kept open for the next "
	    "message to the same destination" },
	{ "smtp_data_done_timeout", CONF_TYPE_TIME, "600s",
	    1, 86400, 's', NULL, NULL, NULL, 0,
	    "Time a remote SMTP server may take to answer the end of "
	    "data" },
	{ "smtp_data_init_timeout", CONF_TYPE_TIME, "120s",
	    1, 86400, 's', NULL, NULL, NULL, 0,
	    "Time a remote SMTP server may take to answer DATA" },
	{ "smtp_data_xfer_timeout", CONF_TYPE_TIME, "180s",
	    1, 86400, 's', NULL, NULL, NULL, 0,
	    "Time a remote SMTP server may stop taking message content" },
	{ "smtp_helo_name", CONF_TYPE_STRING, "$myhostname",
	    0, 0, 0, NULL, NULL, NULL, 0,
	    "Name sent in EHLO or HELO to remote SMTP servers" },
	{ "smtp_helo_timeout", CONF_TYPE_TIME, "300s",
	    1, 86400, 's', NULL, NULL, NULL, 0,
	    "Time a remote SMTP server may take to greet or answer EHLO, "
	    "HELO or AUTH" },
	{ "smtp_mail_timeout", CONF_TYPE_TIME, "300s",
	    1, 86400, 's', NULL, NULL, NULL, 0,
	    "Time a remote SMTP server may take to answer MAIL FROM" },
	{ "smtp_quit_timeout", CONF_TYPE_TIME, "300s",
	    1, 86400, 's', NULL, NULL, NULL, 0,
	    "Time a remote SMTP server may take to answer QUIT" },
	{ "smtp_rcpt_timeout", CONF_TYPE_TIME, "300s",
	    1, 86400, 's', NULL, NULL, NULL, 0,
	    "Time a remote SMTP server may take to answer RCPT TO" },
	{ "smtp_rset_timeout", CONF_TYPE_TIME, "20s",
	    1, 86400, 's', NULL, NULL, NULL, 0,
	    "Time a remote SMTP server may take to answer RSET" },
	{ "smtp_sasl_auth_enable", CONF_TYPE_BOOL, "no",
	    0, 0, 0, NULL, NULL, NULL, 0,
	    "Whether loft authenticates to remote SMTP servers with the "
	    "password of smtp_sasl_password_maps" },
	{ "smtp_sasl_password_maps", CONF_TYPE_PATH, "",
	    0, 0, 0, NULL, NULL, NULL, 0,
	    "File of \"host user:password\" or \"[host]:port "
	    "user:password\" lines, read as root when loftd starts" },
	{ "smtp_sasl_security_options", CONF_TYPE_LIST,
	    "noplaintext, noanonymous", 0, 0, 0, conf_sasl_security_options,
	    NULL, NULL, 0,
	    "noplaintext: no AUTH to a remote server outside TLS" },
	{ "smtp_starttls_timeout", CONF_TYPE_TIME, "300s",
	    1, 86400, 's', NULL, NULL, NULL, 0,
	    "Time a remote SMTP server may take for STARTTLS and the TLS "
	    "handshake" },
	{ "smtp_tls_CAfile", CONF_TYPE_PATH, "", 0, 0, 0, NULL, NULL, NULL, 0,
	    "PEM file of the certificate authorities that verify remote "
	    "SMTP servers (empty: the system's)" },
	{ "smtp_tls_security_level", CONF_TYPE_STRING, "may",
	    0, 0, 0, conf_smtp_tls_levels, NULL, NULL, 0,
	    "TLS to remote SMTP servers: none, may (STARTTLS when offered), "
	    "encrypt (required) or verify (required, certificate checked)" },

	/* Logging. */
	{ "maillog_file", CONF_TYPE_PATH, "", 0, 0, 0, NULL, NULL, NULL, 0,
	    "File the log is appended to (empty: syslog)" },
	{ "syslog_facility", CONF_TYPE_STRING, "mail",
	    0, 0, 0, conf_facilities, NULL, NULL, 0,
	    "Syslog facility of the log" },
	{ "syslog_name", CONF_TYPE_STRING, "loft",
	    0, 0, 0, NULL, NULL, NULL, 0,
	    "Name that starts each program's name in the log" },
};

const size_t conf_params_count = sizeof(conf_params) / sizeof(conf_params[0]);
