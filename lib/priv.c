/*
 * priv.c: switching to the mailbox owner. Trusts the user record (from
 * the user database or the system password database).
 */
#include "config.h"
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "priv.h"
#include "user.h"

static char priv_errbuf[256];

static int
priv_groups(const struct user *u, gid_t *groups, size_t *n_r)
{
	struct group *gr;

	groups[0] = u->gid;
	*n_r = 1;
	if (u->system && (gr = getgrnam("mail")) != NULL &&
	    gr->gr_gid != u->gid)
		groups[(*n_r)++] = gr->gr_gid;
	return 0;
}

int
priv_become(const struct user *u, bool permanent, const char **error_r)
{
	gid_t groups[2];
	size_t n;

	if (u->uid == 0) {
		*error_r = "refusing to work as root on a mailbox owned by root";
		return -1;
	}
	if (getuid() != 0 && geteuid() != 0) {
		if (u->uid != geteuid()) {
			snprintf(priv_errbuf, sizeof(priv_errbuf), "mailbox owner"
			    " uid %lu is not the running uid %lu, and switching "
			    "needs root", (unsigned long)u->uid,
			    (unsigned long)geteuid());
			*error_r = priv_errbuf;
			return -1;
		}
		return 0;
	}
	priv_groups(u, groups, &n);
	if (permanent) {
		if (setgroups(n, groups) < 0 ||
		    setresgid(u->gid, u->gid, u->gid) < 0 ||
		    setresuid(u->uid, u->uid, u->uid) < 0 ||
		    getuid() != u->uid || geteuid() != u->uid ||
		    setuid(0) == 0) {
			*error_r = "cannot switch to the mailbox owner";
			return -1;
		}
		return 0;
	}
	if (seteuid(0) < 0 || setgroups(n, groups) < 0 ||
	    setegid(u->gid) < 0 || seteuid(u->uid) < 0) {
		snprintf(priv_errbuf, sizeof(priv_errbuf), "cannot switch to "
		    "the mailbox owner: %s", strerror(errno));
		*error_r = priv_errbuf;
		return -1;
	}
	return 0;
}

int
priv_restore(const char **error_r)
{
	gid_t g = 0;

	if (getuid() != 0)
		return 0;
	if (seteuid(0) < 0 || setegid(0) < 0 || setgroups(1, &g) < 0) {
		*error_r = "cannot switch back to root";
		return -1;
	}
	return 0;
}
