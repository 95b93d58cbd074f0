/*
 * priv.h: becoming the owner of a user's mail.
 *
 * Programs started as root switch to the mailbox owner before they read
 * untrusted input or open a mailbox (STYLE.md section 2). loft-deliver
 * switches for good; loftctl, which may handle several users in turn,
 * switches only its effective ids and switches back between them.
 */
#ifndef LOFT_PRIV_H
#define LOFT_PRIV_H

#include <stdbool.h>

struct user;

/* priv_become: when running as root, take u's uid and gid (and, for
 * system users, the supplementary group "mail", which Debian requires for
 * dotlocks in /var/mail). permanent: real, effective and saved ids, and
 * verify that root cannot be had back; else only the effective ids
 * (undo with priv_restore). Not root: succeeds only if we already are u.
 * Refuses uid 0. 0, or -1 with *error_r. */
int priv_become(const struct user *u, bool permanent, const char **error_r);
/* priv_restore: back to root after a non-permanent priv_become. */
int priv_restore(const char **error_r);

#endif
