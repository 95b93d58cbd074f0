/*
 * Unit tests for lib/net.c: the listen spec table (good and bad forms,
 * port limits at N and N+1), formatting, listen + accept + connect on
 * 127.0.0.1 and ::1 (skipped when the host has no IPv6).
 */
#include "config.h"
#include <sys/socket.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <unistd.h>
#include "net.h"
#include "tap.h"

struct good {
	const char *spec;
	const char *addr;	/* net_addr_str_port of the first address */
};

static const struct good goods[] = {
	{ "127.0.0.1:1110", "127.0.0.1:1110" },
	{ "[::1]:1995", "[::1]:1995" },
	{ "*:110", "0.0.0.0:110" },
	{ "[::]:110", "[::]:110" },
	{ "192.0.2.7:1", "192.0.2.7:1" },
	{ "192.0.2.7:65535", "192.0.2.7:65535" },
	{ "[2001:db8::1]:25", "[2001:db8::1]:25" },
	{ "127.0.0.1:00143", "127.0.0.1:143" },
};

struct bad {
	const char *spec;
	const char *why;	/* must appear in the error */
};

static const struct bad bads[] = {
	{ "", "empty" },
	{ "127.0.0.1", "missing port" },
	{ "127.0.0.1:", "missing port" },
	{ "127.0.0.1:0", "port 0" },
	{ "127.0.0.1:65536", "greater than 65535" },
	{ "127.0.0.1:99999999999999999999999", "greater than 65535" },
	{ "127.0.0.1:11a", "decimal digits" },
	{ "127.0.0.1:-1", "decimal digits" },
	{ "127.0.0.1:+1", "decimal digits" },
	{ "127.0.0.1: 1", "decimal digits" },
	{ ":110", "missing host" },
	{ "::1:110", "must be in brackets" },
	{ "[::1:110", "'[' without ']'" },
	{ "::1]:110", "unbalanced" },
	{ "[::1]]:110", "junk after" },
	{ "[::1]110", "junk after" },
	{ "[::1]", "missing port" },
	{ "[::1]:", "missing port" },
	{ "[]:110", "empty brackets" },
	{ "[127.0.0.1]:110", "not an IPv6 address" },
	{ "[::1%eth0]:110", "not an IPv6 address" },
	{ "host name:110", "invalid character" },
	{ "mail/x:110", "invalid character" },
	{ "a\nb:110", "invalid character" },
	{ "no-such-host.invalid:110", "cannot resolve" },
};

static void
test_table(void)
{
	struct net_addr *addrs;
	char s[NET_ADDR_STR_MAX];
	const char *error;
	size_t i, n;

	for (i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
		addrs = NULL;
		n = 0;
		error = NULL;
		if (!ok(net_parse_listen(goods[i].spec, &addrs, &n,
		    &error) == 0 && n == 1, "good: %s", goods[i].spec)) {
			diag("error: %s", error ? error : "(none)");
			continue;
		}
		is_string(net_addr_str_port(&addrs[0], s, sizeof(s)),
		    goods[i].addr, "  formats as %s", goods[i].addr);
		free(addrs);
	}
	for (i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		addrs = NULL;
		n = 77;
		error = NULL;
		ok(net_parse_listen(bads[i].spec, &addrs, &n, &error) == -1 &&
		    addrs == NULL && n == 77 && error != NULL &&
		    strstr(error, bads[i].why) != NULL, "bad: \"%s\" (%s)",
		    strchr(bads[i].spec, '\n') != NULL ? "a\\nb" :
		    bads[i].spec, bads[i].why);
		if (error != NULL && strchr(error, '\n') != NULL)
			ok(0, "error message holds a raw newline");
	}
}

static void
test_localhost(void)
{
	struct net_addr *addrs = NULL;
	const char *error;
	size_t n = 0, i;
	bool v4 = false;
	char s[NET_ADDR_STR_MAX];

	if (!ok(net_parse_listen("localhost:143", &addrs, &n, &error) == 0,
	    "localhost resolves")) {
		diag("%s", error);
		return;
	}
	for (i = 0; i < n; i++) {
		if (strcmp(net_addr_str_port(&addrs[i], s, sizeof(s)),
		    "127.0.0.1:143") == 0)
			v4 = true;
	}
	ok(v4 && n <= NET_ADDRS_MAX, "localhost includes 127.0.0.1:143");
	free(addrs);
}

static void
test_format(void)
{
	struct net_addr a;
	char s[NET_ADDR_STR_MAX], tiny[4];
	struct net_addr *p;
	size_t n;
	const char *error;

	if (net_parse_listen("[2001:db8::1]:25", &p, &n, &error) < 0)
		bail("%s", error);
	is_string(net_addr_str(p, s, sizeof(s)), "2001:db8::1",
	    "IPv6 without port");
	is_int(net_addr_port(p), 25, "port");
	is_string(net_addr_str_port(p, tiny, sizeof(tiny)), "?",
	    "too small buffer gives ?");
	free(p);
	memset(&a, 0, sizeof(a));
	a.ss.ss_family = AF_UNIX;
	is_string(net_addr_str(&a, s, sizeof(s)), "?", "unknown family");
	is_int(net_addr_port(&a), 0, "unknown family has port 0");
}

/* Listen on spec (port 0 is refused by the parser, so use a fixed one
 * and let bind fail loudly), connect, accept, exchange a byte. */
static void
test_listen_accept(const char *host, int family)
{
	struct net_addr a, peer, *addrs;
	struct sockaddr_storage bound;
	socklen_t blen = sizeof(bound);
	char spec[80], s[NET_ADDR_STR_MAX], c = 0;
	const char *error;
	size_t n;
	int lfd, cfd, afd, flags, lfd2;
	struct pollfd pfd;

	/* Pick a free port: bind port 1 would need root, so take what the
	 * kernel gives a throwaway socket. */
	cfd = socket(family, SOCK_STREAM, 0);
	memset(&bound, 0, sizeof(bound));
	bound.ss_family = family;
	if (cfd < 0 || bind(cfd, (struct sockaddr *)&bound,
	    family == AF_INET ? sizeof(struct sockaddr_in) :
	    sizeof(struct sockaddr_in6)) < 0 ||
	    getsockname(cfd, (struct sockaddr *)&bound, &blen) < 0)
		bail("free port: %s", strerror(errno));
	close(cfd);
	snprintf(spec, sizeof(spec), family == AF_INET ? "%s:%u" : "[%s]:%u",
	    host, (unsigned)ntohs(family == AF_INET ?
	    ((struct sockaddr_in *)&bound)->sin_port :
	    ((struct sockaddr_in6 *)&bound)->sin6_port));
	if (net_parse_listen(spec, &addrs, &n, &error) < 0)
		bail("%s", error);
	a = addrs[0];
	free(addrs);
	lfd = net_listen(&a, 0, &error);
	if (!ok(lfd >= 0, "listen on %s", spec)) {
		diag("%s", error);
		return;
	}
	flags = fcntl(lfd, F_GETFL);
	ok((flags & O_NONBLOCK) && (fcntl(lfd, F_GETFD) & FD_CLOEXEC),
	    "  listener is non-blocking and close-on-exec");
	errno = 0;
	ok(net_accept(lfd, &peer) == -1 && errno == EAGAIN,
	    "  accept with nobody waiting: -1 EAGAIN");
	lfd2 = net_listen(&a, 0, &error);
	ok(lfd2 == -1 && strstr(error, "bind ") != NULL &&
	    strstr(error, spec) != NULL, "  second bind fails: %s",
	    lfd2 == -1 ? error : "(bound)");
	if (lfd2 >= 0)
		close(lfd2);
	cfd = socket(family, SOCK_STREAM, 0);
	if (cfd < 0 || connect(cfd, (struct sockaddr *)&a.ss, a.len) < 0)
		bail("connect %s: %s", spec, strerror(errno));
	pfd.fd = lfd;
	pfd.events = POLLIN;
	(void)poll(&pfd, 1, 5000);
	afd = net_accept(lfd, &peer);
	ok(afd >= 0, "  accepted");
	ok((fcntl(afd, F_GETFL) & O_NONBLOCK) &&
	    (fcntl(afd, F_GETFD) & FD_CLOEXEC),
	    "  accepted fd is non-blocking and close-on-exec");
	is_string(net_addr_str(&peer, s, sizeof(s)), host,
	    "  peer address is %s", host);
	ok(net_addr_port(&peer) != 0, "  peer port known");
	if (write(cfd, "z", 1) != 1)
		bail("write");
	pfd.fd = afd;
	(void)poll(&pfd, 1, 5000);
	ok(read(afd, &c, 1) == 1 && c == 'z', "  byte crosses the connection");
	close(afd);
	close(cfd);
	close(lfd);
}

static bool
have_ipv6(void)
{
	struct sockaddr_in6 sin6;
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	bool ok6;

	if (fd < 0)
		return false;
	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	sin6.sin6_addr = in6addr_loopback;
	ok6 = bind(fd, (struct sockaddr *)&sin6, sizeof(sin6)) == 0;
	close(fd);
	return ok6;
}

int
main(void)
{
	test_table();
	test_localhost();
	test_format();
	test_listen_accept("127.0.0.1", AF_INET);
	if (have_ipv6())
		test_listen_accept("::1", AF_INET6);
	else
		ok(1, "# SKIP no IPv6 on this host");
	return done_testing();
}
