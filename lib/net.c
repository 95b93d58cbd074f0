/*
 * net.c: listener specs, listening sockets, accept, address formatting.
 *
 * Trusts nothing in a listen spec (it comes from the configuration, which
 * a typo can ruin): every form is checked before getaddrinfo(3) sees it,
 * and host names may hold only letters, digits, '.', '-' and '_'. Peer
 * addresses come from the kernel.
 */
#include "config.h"
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "compat/compat.h"
#include "log.h"
#include "net.h"
#include "xmalloc.h"

#define NET_SPEC_MAX	300	/* longest listen spec we look at */
#define NET_HOST_MAX	256	/* host part, NUL included */

static char net_error[NET_SPEC_MAX * 4 + 256];

static const char *
net_err(const char *spec, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* "invalid listen address "SPEC": REASON", the spec escaped. */
static const char *
net_err(const char *spec, const char *fmt, ...)
{
	char esc[NET_SPEC_MAX * 4 + 1];
	size_t off;
	va_list ap;
	int n;

	log_escape(spec, esc, sizeof(esc));
	n = snprintf(net_error, sizeof(net_error),
	    "invalid listen address \"%s\": ", esc);
	off = n < 0 ? 0 : (size_t)n;
	if (off >= sizeof(net_error))
		return net_error;
	va_start(ap, fmt);
	vsnprintf(net_error + off, sizeof(net_error) - off, fmt, ap);
	va_end(ap);
	return net_error;
}

/* Decimal 1..65535, digits only; the value is checked digit by digit. */
static int
net_parse_port(const char *s, unsigned *port_r, const char **why_r)
{
	unsigned v = 0;

	if (*s == '\0') {
		*why_r = "missing port";
		return -1;
	}
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9') {
			*why_r = "port must be decimal digits";
			return -1;
		}
		v = v * 10 + (unsigned)(*s - '0');
		if (v > 65535) {
			*why_r = "port greater than 65535";
			return -1;
		}
	}
	if (v == 0) {
		*why_r = "port 0";
		return -1;
	}
	*port_r = v;
	return 0;
}

/* Split SPEC into host (into host, size NET_HOST_MAX) and port text. */
static int
net_split(const char *spec, char *host, bool *bracketed_r,
    const char **port_r, const char **why_r)
{
	const char *end, *colon;
	size_t hlen;

	*bracketed_r = spec[0] == '[';
	if (*bracketed_r) {
		if ((end = strchr(spec, ']')) == NULL) {
			*why_r = "'[' without ']'";
			return -1;
		}
		if (end[1] != ':') {
			*why_r = end[1] == '\0' ? "missing port" :
			    "junk after ']'";
			return -1;
		}
		spec++;
		colon = end + 1;
	} else {
		if (strchr(spec, '[') != NULL || strchr(spec, ']') != NULL) {
			*why_r = "unbalanced brackets";
			return -1;
		}
		if ((colon = strrchr(spec, ':')) == NULL) {
			*why_r = "missing port (HOST:PORT)";
			return -1;
		}
		end = colon;
		if (memchr(spec, ':', (size_t)(end - spec)) != NULL) {
			*why_r = "IPv6 address must be in brackets";
			return -1;
		}
	}
	hlen = (size_t)(end - spec);
	if (hlen == 0) {
		*why_r = *bracketed_r ? "empty brackets" : "missing host";
		return -1;
	}
	if (hlen >= NET_HOST_MAX) {
		*why_r = "host too long";
		return -1;
	}
	memcpy(host, spec, hlen);
	host[hlen] = '\0';
	*port_r = colon + 1;
	return 0;
}

static bool
net_host_chars_ok(const char *host)
{
	for (; *host != '\0'; host++) {
		if (!((*host >= 'a' && *host <= 'z') ||
		    (*host >= 'A' && *host <= 'Z') ||
		    (*host >= '0' && *host <= '9') ||
		    *host == '.' || *host == '-' || *host == '_'))
			return false;
	}
	return true;
}

static void
net_addr_set_port(struct net_addr *a, unsigned port)
{
	if (a->ss.ss_family == AF_INET)
		((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
}

/* One literal address: "*" or a bracketed IPv6 address. */
static int
net_literal(const char *host, bool bracketed, unsigned port,
    struct net_addr *a, const char **why_r)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;

	memset(a, 0, sizeof(*a));
	if (!bracketed) {
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
		a->len = sizeof(*sin);
	} else {
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
			*why_r = "not an IPv6 address inside brackets";
			return -1;
		}
		sin6->sin6_family = AF_INET6;
		a->len = sizeof(*sin6);
	}
	net_addr_set_port(a, port);
	return 0;
}

static bool
net_addr_in(const struct net_addr *list, size_t n, const struct net_addr *a)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (list[i].len == a->len &&
		    memcmp(&list[i].ss, &a->ss, a->len) == 0)
			return true;
	return false;
}

static int
net_resolve(const char *spec, const char *host, unsigned port,
    struct net_addr **addrs_r, size_t *count_r, const char **error_r)
{
	struct addrinfo hints, *res, *ai;
	struct net_addr *addrs, a;
	size_t n = 0;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	if ((rc = getaddrinfo(host, NULL, &hints, &res)) != 0) {
		*error_r = net_err(spec, "cannot resolve host (%s)",
		    gai_strerror(rc));
		return -1;
	}
	addrs = xcalloc(NET_ADDRS_MAX, sizeof(*addrs));
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof(a.ss))
			continue;
		memset(&a, 0, sizeof(a));
		memcpy(&a.ss, ai->ai_addr, ai->ai_addrlen);
		a.len = ai->ai_addrlen;
		net_addr_set_port(&a, port);
		if (net_addr_in(addrs, n, &a))
			continue;
		if (n == NET_ADDRS_MAX) {
			freeaddrinfo(res);
			free(addrs);
			*error_r = net_err(spec, "host has more than %d "
			    "addresses", NET_ADDRS_MAX);
			return -1;
		}
		addrs[n++] = a;
	}
	freeaddrinfo(res);
	if (n == 0) {
		free(addrs);
		*error_r = net_err(spec, "host has no IPv4 or IPv6 address");
		return -1;
	}
	*addrs_r = addrs;
	*count_r = n;
	return 0;
}

int
net_parse_listen(const char *spec, struct net_addr **addrs_r,
    size_t *count_r, const char **error_r)
{
	char host[NET_HOST_MAX];
	const char *port_s, *why;
	struct net_addr a;
	unsigned port;
	bool bracketed;

	if (strnlen(spec, NET_SPEC_MAX + 1) > NET_SPEC_MAX) {
		*error_r = net_err("(too long)", "longer than %d bytes",
		    NET_SPEC_MAX);
		return -1;
	}
	if (spec[0] == '\0') {
		*error_r = net_err(spec, "empty");
		return -1;
	}
	if (net_split(spec, host, &bracketed, &port_s, &why) < 0 ||
	    net_parse_port(port_s, &port, &why) < 0) {
		*error_r = net_err(spec, "%s", why);
		return -1;
	}
	if (bracketed || strcmp(host, "*") == 0) {
		if (net_literal(host, bracketed, port, &a, &why) < 0) {
			*error_r = net_err(spec, "%s", why);
			return -1;
		}
		*addrs_r = xmalloc(sizeof(a));
		**addrs_r = a;
		*count_r = 1;
		return 0;
	}
	if (!net_host_chars_ok(host)) {
		*error_r = net_err(spec, "invalid character in host");
		return -1;
	}
	return net_resolve(spec, host, port, addrs_r, count_r, error_r);
}

static int
net_listen_fail(const struct net_addr *a, const char *what,
    const char **error_r, int fd)
{
	char as[NET_ADDR_STR_MAX];
	int saved = errno;

	if (fd >= 0)
		close(fd);
	snprintf(net_error, sizeof(net_error), "%s %s: %s", what,
	    net_addr_str_port(a, as, sizeof(as)), strerror(saved));
	*error_r = net_error;
	errno = saved;
	return -1;
}

int
net_listen(const struct net_addr *a, int backlog, const char **error_r)
{
	int fd, on = 1;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd < 0)
		return net_listen_fail(a, "socket", error_r, -1);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0)
		return net_listen_fail(a, "SO_REUSEADDR", error_r, fd);
	if (a->ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) < 0)
		return net_listen_fail(a, "IPV6_V6ONLY", error_r, fd);
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
		return net_listen_fail(a, "bind", error_r, fd);
	if (listen(fd, backlog <= 0 ? SOMAXCONN : backlog) < 0)
		return net_listen_fail(a, "listen", error_r, fd);
	return fd;
}

int
net_accept(int lfd, struct net_addr *peer_r)
{
	struct net_addr peer;
	int fd;

	memset(&peer, 0, sizeof(peer));
	peer.len = sizeof(peer.ss);
	fd = accept4(lfd, (struct sockaddr *)&peer.ss, &peer.len,
	    SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd >= 0 && peer_r != NULL)
		*peer_r = peer;
	return fd;
}

static const char *
net_addr_unknown(char *buf, size_t size)
{
	if (size > 0)
		strlcpy(buf, size >= 2 ? "?" : "", size);
	return buf;
}

const char *
net_addr_str(const struct net_addr *a, char *buf, size_t size)
{
	const void *src;

	if (a->ss.ss_family == AF_INET)
		src = &((const struct sockaddr_in *)&a->ss)->sin_addr;
	else if (a->ss.ss_family == AF_INET6)
		src = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
	else
		return net_addr_unknown(buf, size);
	if (size > (socklen_t)-1 / 2 ||
	    inet_ntop(a->ss.ss_family, src, buf, (socklen_t)size) == NULL)
		return net_addr_unknown(buf, size);
	return buf;
}

const char *
net_addr_str_port(const struct net_addr *a, char *buf, size_t size)
{
	char host[NET_ADDR_STR_MAX];
	int n;

	if (a->ss.ss_family != AF_INET && a->ss.ss_family != AF_INET6)
		return net_addr_unknown(buf, size);
	net_addr_str(a, host, sizeof(host));
	n = snprintf(buf, size, a->ss.ss_family == AF_INET6 ? "[%s]:%u" :
	    "%s:%u", host, net_addr_port(a));
	if (n < 0 || (size_t)n >= size)
		return net_addr_unknown(buf, size);
	return buf;
}

unsigned
net_addr_port(const struct net_addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
	if (a->ss.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
	return 0;
}
