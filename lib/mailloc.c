/*
 * mailloc.c: parse a mail_location and expand it for one user.
 *
 * The spec comes from the configuration or the user file (trusted to be
 * written by an administrator, but still parsed strictly); the user name
 * is trusted only as far as user_name_valid() goes, and the expansion
 * re-checks what matters for paths: user-derived text may not hold '/',
 * and no result may contain a "." or ".." component, so no user name can
 * make a path point outside the tree the administrator chose.
 */
#include "config.h"
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "buf.h"
#include "mailloc.h"
#include "xmalloc.h"

/* Room for expansion before the "//" and trailing '/' are squeezed out;
 * the final length is checked against MAILLOC_PATH_MAX. */
#define MAILLOC_EXPAND_MAX (2 * MAILLOC_PATH_MAX)

struct mailloc_vars {
	const char *user;	/* %u */
	size_t local_len;	/* %n is the first local_len bytes of user */
	const char *domain;	/* %d; "" if none */
	const char *home;	/* %h and ~; "" if none */
};

static char mailloc_error_buf[256];

static const char * __attribute__((format(printf, 1, 2)))
mailloc_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(mailloc_error_buf, sizeof(mailloc_error_buf), fmt, ap);
	va_end(ap);
	return mailloc_error_buf;
}

static void
mailloc_vars_init(struct mailloc_vars *v, const char *user, const char *home)
{
	const char *at = strrchr(user, '@');

	v->user = user;
	v->local_len = at != NULL ? (size_t)(at - user) : strlen(user);
	v->domain = at != NULL ? at + 1 : "";
	v->home = home != NULL ? home : "";
}

static int
mailloc_append_user(struct buf *b, const char *s, size_t len,
    const char **error_r)
{
	if (memchr(s, '/', len) != NULL) {
		*error_r = "user name holds '/'";
		return -1;
	}
	if (buf_append(b, s, len) < 0) {
		*error_r = "path too long";
		return -1;
	}
	return 0;
}

static int
mailloc_append_home(struct buf *b, const struct mailloc_vars *v,
    const char **error_r)
{
	if (v->home[0] == '\0') {
		*error_r = "the user has no home directory";
		return -1;
	}
	if (buf_append_str(b, v->home) < 0) {
		*error_r = "path too long";
		return -1;
	}
	return 0;
}

/* One %x escape (c is the x) appended to b. */
static int
mailloc_append_var(struct buf *b, char c, const struct mailloc_vars *v,
    const char **error_r)
{
	switch (c) {
	case 'u':
		return mailloc_append_user(b, v->user, strlen(v->user),
		    error_r);
	case 'n':
		return mailloc_append_user(b, v->user, v->local_len, error_r);
	case 'd':
		return mailloc_append_user(b, v->domain, strlen(v->domain),
		    error_r);
	case 'h':
		return mailloc_append_home(b, v, error_r);
	case '%':
		if (buf_append_byte(b, '%') < 0) {
			*error_r = "path too long";
			return -1;
		}
		return 0;
	case '\0':
		*error_r = "'%' at the end of a path";
		return -1;
	default:
		*error_r = mailloc_err("unknown variable %%%c", c);
		return -1;
	}
}

/* Squeeze "//" and a trailing '/', refuse a relative path and any "." or
 * ".." component. Works in place: the result is never longer. */
static int
mailloc_canon(char *path, const char **error_r)
{
	size_t r = 0, w = 0, start, len;

	if (path[0] != '/') {
		*error_r = mailloc_err("path is not absolute: %.200s", path);
		return -1;
	}
	while (path[r] != '\0') {
		while (path[r] == '/')
			r++;
		if (path[r] == '\0')
			break;
		start = r;
		while (path[r] != '\0' && path[r] != '/')
			r++;
		len = r - start;
		if (path[start] == '.' && (len == 1 ||
		    (len == 2 && path[start + 1] == '.'))) {
			*error_r = "path has a '.' or '..' component";
			return -1;
		}
		path[w++] = '/';
		memmove(path + w, path + start, len);
		w += len;
	}
	if (w == 0)
		path[w++] = '/';
	path[w] = '\0';
	if (w > MAILLOC_PATH_MAX) {
		*error_r = "path longer than 4095 bytes";
		return -1;
	}
	return 0;
}

static int
mailloc_expand_tmpl(struct buf *b, const char *tmpl,
    const struct mailloc_vars *v, const char **error_r)
{
	const char *p = tmpl;

	if (p[0] == '~') {
		if (p[1] != '\0' && p[1] != '/') {
			*error_r = "\"~user\" is not supported";
			return -1;
		}
		if (mailloc_append_home(b, v, error_r) < 0)
			return -1;
		p++;
	}
	for (; *p != '\0'; p++) {
		if (*p == '%') {
			p++;
			if (mailloc_append_var(b, *p, v, error_r) < 0)
				return -1;
		} else if (buf_append_byte(b, (unsigned char)*p) < 0) {
			*error_r = "path too long";
			return -1;
		}
	}
	return 0;
}

/* Expand one path template into a new canonical *path_r. */
static int
mailloc_expand(const char *tmpl, const struct mailloc_vars *v,
    char **path_r, const char **error_r)
{
	struct buf b;
	char *path;
	size_t len;

	*path_r = NULL;
	if (tmpl[0] == '\0') {
		*error_r = "empty path";
		return -1;
	}
	buf_init(&b, MAILLOC_EXPAND_MAX);
	if (mailloc_expand_tmpl(&b, tmpl, v, error_r) < 0) {
		buf_free(&b);
		return -1;
	}
	if (buf_append_byte(&b, '\0') < 0) {
		buf_free(&b);
		*error_r = "path too long";
		return -1;
	}
	path = (char *)buf_steal(&b, &len);
	if (mailloc_canon(path, error_r) < 0) {
		free(path);
		return -1;
	}
	*path_r = path;
	return 0;
}

/* A default below root: root + "/" + name, checked like any result. */
static int
mailloc_below(const char *root, const char *name, char **path_r,
    const char **error_r)
{
	char *path = xasprintf("%s/%s", root, name);

	if (mailloc_canon(path, error_r) < 0) {
		free(path);
		*path_r = NULL;
		return -1;
	}
	*path_r = path;
	return 0;
}

static int
mailloc_format(const char *name, enum mailloc_format *format_r,
    const char **error_r)
{
	if (strcmp(name, "maildir") == 0)
		*format_r = MAILLOC_MAILDIR;
	else if (strcmp(name, "mbox") == 0)
		*format_r = MAILLOC_MBOX;
	else {
		*error_r = mailloc_err("unknown mail format \"%.100s\"", name);
		return -1;
	}
	return 0;
}

/* One KEY=VALUE option, stored expanded in ml. */
static int
mailloc_option(char *opt, const struct mailloc_vars *v, struct mailloc *ml,
    const char **error_r)
{
	char *value = strchr(opt, '='), **slot;

	if (value == NULL) {
		*error_r = mailloc_err("option \"%.100s\" is not KEY=VALUE",
		    opt);
		return -1;
	}
	*value++ = '\0';
	if (strcmp(opt, "INDEX") == 0)
		slot = &ml->index_dir;
	else if (strcmp(opt, "INBOX") == 0 && ml->format == MAILLOC_MBOX)
		slot = &ml->inbox;
	else if (strcmp(opt, "INBOX") == 0) {
		*error_r = "INBOX= is only for mbox";
		return -1;
	} else {
		*error_r = mailloc_err("unknown option %.100s", opt);
		return -1;
	}
	if (*slot != NULL) {
		*error_r = mailloc_err("%s given twice", opt);
		return -1;
	}
	return mailloc_expand(value, v, slot, error_r);
}

static int
mailloc_defaults(struct mailloc *ml, const char **error_r)
{
	bool mbox = ml->format == MAILLOC_MBOX;

	if (ml->index_dir == NULL && mailloc_below(ml->root,
	    mbox ? ".loft-index" : "loft-index", &ml->index_dir, error_r) < 0)
		return -1;
	if (mbox && ml->inbox == NULL &&
	    mailloc_below(ml->root, "inbox", &ml->inbox, error_r) < 0)
		return -1;
	return 0;
}

static int
mailloc_parse_copy(char *copy, const struct mailloc_vars *v,
    struct mailloc *ml, const char **error_r)
{
	char *rest = copy, *format, *path, *opt;

	format = strsep(&rest, ":");
	if (mailloc_format(format, &ml->format, error_r) < 0)
		return -1;
	path = strsep(&rest, ":");
	if (path == NULL) {
		*error_r = "no path after the format";
		return -1;
	}
	if (mailloc_expand(path, v, &ml->root, error_r) < 0)
		return -1;
	while ((opt = strsep(&rest, ":")) != NULL) {
		if (mailloc_option(opt, v, ml, error_r) < 0)
			return -1;
	}
	return mailloc_defaults(ml, error_r);
}

int
mailloc_parse(const char *spec, const char *user, const char *home,
    struct mailloc *ml_r, const char **error_r)
{
	struct mailloc_vars v;
	char *copy;
	int ret;

	memset(ml_r, 0, sizeof(*ml_r));
	mailloc_vars_init(&v, user, home);
	copy = xstrdup(spec);
	ret = mailloc_parse_copy(copy, &v, ml_r, error_r);
	free(copy);
	if (ret < 0)
		mailloc_free(ml_r);
	return ret;
}

void
mailloc_free(struct mailloc *ml)
{
	free(ml->root);
	free(ml->inbox);
	free(ml->index_dir);
	memset(ml, 0, sizeof(*ml));
}
