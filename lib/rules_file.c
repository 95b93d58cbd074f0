/*
 * rules_file.c: where a user's rule file is (mda_rules_file), for
 * loft-deliver, which runs it, and for loftd's mail process, which must
 * know whether there is one without linking the rule engine (PCRE2); and
 * whether a file of instructions (the rule file, .forward, :include:) may
 * be trusted as its user's.
 * Trusts: the configuration and the user database.
 */
#include "config.h"
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "rules.h"

bool
rules_file_path(const char *setting, const char *home, char *out,
    size_t size)
{
	int n;

	if (setting[0] == '\0' || strcmp(setting, "none") == 0)
		return false;
	if (setting[0] == '/')
		n = snprintf(out, size, "%s", setting);
	else if (home == NULL || home[0] == '\0')
		return false;
	else if (setting[0] == '~' && (setting[1] == '/' ||
	    setting[1] == '\0'))
		n = snprintf(out, size, "%s%s", home, setting + 1);
	else
		n = snprintf(out, size, "%s/%s", home, setting);
	return n > 0 && (size_t)n < size;
}

const char *
rules_file_suspicious(const struct stat *st, uid_t uid, bool root_ok)
{
	if (!S_ISREG(st->st_mode))
		return "not a regular file";
	if (st->st_uid != uid && !(root_ok && st->st_uid == 0))
		return root_ok ? "owned by neither the user nor root" :
		    "not owned by the user";
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0)
		return "writable by group or others";
	return NULL;
}
