/*
 * net.h: listener addresses and TCP sockets for loftd. The master process
 * parses "listen" settings and binds; workers accept on the sockets they
 * inherit. Everything is non-blocking and close-on-exec.
 */
#ifndef LOFT_NET_H
#define LOFT_NET_H

#include <stddef.h>
#include <sys/socket.h>

/* NET_ADDRS_MAX: most addresses one listen spec may expand to (a host
 * name with more addresses is an error, not a silent truncation). */
#define NET_ADDRS_MAX		16
/* NET_ADDR_STR_MAX: room for any net_addr_str_port() result, NUL included
 * ("[" INET6_ADDRSTRLEN "]:65535"). */
#define NET_ADDR_STR_MAX	(46 + 8)

struct net_addr {
	struct sockaddr_storage ss;	/* AF_INET or AF_INET6 */
	socklen_t len;
};

/*
 * net_parse_listen: parse a listener spec "HOST:PORT":
 *	"127.0.0.1:1110"	IPv4 address
 *	"[::1]:1995"		IPv6 address, always in brackets
 *	"*:110"			every IPv4 address (0.0.0.0); use "[::]:110"
 *				for every IPv6 address (Dovecot's "*, ::")
 *	"localhost:143"		host name, resolved with getaddrinfo(3)
 * PORT is decimal digits only, 1..65535. Errors, each with its own message:
 * empty spec, no port, empty port, port 0 or > 65535, non-digits in the
 * port, an unbracketed IPv6 address, unbalanced or empty brackets, junk
 * after "]", a bracketed address that is not IPv6, characters not allowed
 * in a host name, a name that does not resolve, more than NET_ADDRS_MAX
 * addresses. On success returns 0, *addrs_r is a newly allocated array
 * (the caller frees it with free(3)) of *count_r >= 1 distinct addresses.
 * On failure -1, *error_r is set (static buffer, valid until the next call
 * into this module) and the out-parameters are untouched.
 */
int net_parse_listen(const char *spec, struct net_addr **addrs_r,
    size_t *count_r, const char **error_r);

/*
 * net_listen: a listening TCP socket on a: SO_REUSEADDR, IPV6_V6ONLY for
 * IPv6 (so "*" and "[::]" can both be bound), O_NONBLOCK, FD_CLOEXEC.
 * backlog <= 0 means SOMAXCONN. Returns the fd, or -1 with *error_r
 * ("bind [::1]:143: Address already in use") and errno preserved.
 */
int net_listen(const struct net_addr *a, int backlog, const char **error_r);

/*
 * net_accept: accept one connection on the non-blocking listener lfd; the
 * new fd is O_NONBLOCK and FD_CLOEXEC, and *peer_r (if not NULL) gets the
 * peer's address. Returns the fd, or -1 with errno: EAGAIN when none is
 * waiting, ECONNABORTED/EINTR/EPROTO and the like are transient (try again
 * on the next event); EMFILE/ENFILE/ENOBUFS/ENOMEM mean the process is out
 * of resources: stop watching the listener for a while, or the loop spins.
 */
int net_accept(int lfd, struct net_addr *peer_r);

/*
 * net_addr_str: the address without port ("192.0.2.7", "2001:db8::1");
 * net_addr_str_port: with port ("192.0.2.7:25", "[2001:db8::1]:25").
 * Both write into buf (size bytes, NUL-terminated, NET_ADDR_STR_MAX is
 * always enough) and return buf; an unknown family or a too small buffer
 * gives "?" (or "" if size < 2).
 */
const char *net_addr_str(const struct net_addr *a, char *buf, size_t size);
const char *net_addr_str_port(const struct net_addr *a, char *buf,
    size_t size);
/* net_addr_port: the port in host order, 0 for an unknown family. */
unsigned net_addr_port(const struct net_addr *a);

#endif
