/*
 * conf.c: the configuration: reading a main.cf-style file into name =
 * value pairs, lazy $name expansion with loop detection, validation of
 * every table parameter, and typed lookups.
 *
 * Trusts the parameter table (conf_params.c) and its callers' names. Does
 * not trust the file: its size and line lengths are bounded, expansion is
 * bounded in depth and in size (and memoised, so that "a = $b$b", "b =
 * $c$c" ... costs time linear in the text), and every table parameter is
 * validated before the new configuration replaces the old one. Values are
 * escaped when quoted in messages so that they cannot forge log lines.
 */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include "compat/compat.h"
#include "buf.h"
#include "conf.h"
#include "log.h"
#include "xmalloc.h"

#ifndef LOFT_SYSCONFDIR
#define LOFT_SYSCONFDIR "/etc"
#endif

#define CONF_ERROR_MAX	1024	/* a message in conf_error */
#define CONF_REASON_MAX	512	/* why an expansion failed */
#define CONF_SHOW_MAX	200	/* bytes of a value quoted in a message */
#define CONF_TIME_MAX	INT_MAX	/* seconds: fits an int and a time_t */

enum conf_cache {
	CONF_CACHE_NONE,	/* not expanded since the last change */
	CONF_CACHE_BUSY,	/* being expanded: meeting it again is a loop */
	CONF_CACHE_DONE		/* value holds the expansion */
};

struct conf_entry {
	char *name;			/* owned */
	const struct conf_param *param;	/* NULL: user-defined */
	char *raw;			/* owned; NULL: not set (the default,
					   or for user-defined: undefined) */
	unsigned int line;		/* where raw was set; 0: by conf_set */
	enum conf_cache cache;
	char *value;			/* owned; the expansion when DONE */
	bool checked;			/* validated; num and flag are set */
	long long num;			/* INT, SIZE; TIME in seconds */
	bool flag;			/* BOOL */
};

struct conf_store {
	struct conf_entry *entries;	/* owned; the table first, in order */
	size_t count, alloc;
	size_t *slots;			/* owned; entry index + 1, 0: free */
	size_t nslots;			/* a power of two, > 2 * count */
	char *file;			/* owned; NULL when nothing loaded */
	char *config_dir;		/* owned; dynamic defaults, literal */
	char *hostname;			/* owned */
	char *domain;			/* owned; derived from hostname */
};

/* The configuration in use; owned here, NULL until first needed. */
static struct conf_store *conf_cur;
static char conf_error[CONF_ERROR_MAX];
static char conf_reason[CONF_REASON_MAX];

/* ---- The store: entries found by name through a small hash index ---- */

static bool
conf_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '_';
}

static size_t
conf_name_span(const char *s)
{
	size_t n = 0;

	while (conf_name_char(s[n]))
		n++;
	return n;
}

static size_t
conf_hash(const char *name, size_t len)
{
	size_t h = 2166136261u;		/* FNV-1a */

	while (len-- > 0)
		h = (h ^ (unsigned char)*name++) * 16777619u;
	return h;
}

static size_t *
conf_slot(struct conf_store *st, const char *name, size_t len)
{
	size_t i = conf_hash(name, len) & (st->nslots - 1);
	struct conf_entry *e;

	for (;; i = (i + 1) & (st->nslots - 1)) {
		if (st->slots[i] == 0)
			return &st->slots[i];
		e = &st->entries[st->slots[i] - 1];
		if (strncmp(e->name, name, len) == 0 && e->name[len] == '\0')
			return &st->slots[i];
	}
}

static void
conf_rehash(struct conf_store *st, size_t nslots)
{
	size_t i;

	free(st->slots);
	st->nslots = nslots;
	st->slots = xcalloc(nslots, sizeof(*st->slots));
	for (i = 0; i < st->count; i++)
		*conf_slot(st, st->entries[i].name,
		    strlen(st->entries[i].name)) = i + 1;
}

/* conf_find: the entry named name[0..len), or NULL. */
static struct conf_entry *
conf_find(struct conf_store *st, const char *name, size_t len)
{
	size_t slot = *conf_slot(st, name, len);

	return slot == 0 ? NULL : &st->entries[slot - 1];
}

/* conf_add: a new entry; pointers to entries are invalid afterwards. */
static struct conf_entry *
conf_add(struct conf_store *st, const char *name, size_t len,
    const struct conf_param *param)
{
	struct conf_entry *e;

	if (st->count == st->alloc) {
		st->alloc = st->alloc == 0 ? 64 : st->alloc * 2;
		st->entries = xreallocarray(st->entries, st->alloc,
		    sizeof(*st->entries));
	}
	e = &st->entries[st->count++];
	memset(e, 0, sizeof(*e));
	e->name = xstrndup(name, len);
	e->param = param;
	if (st->count * 2 >= st->nslots)
		conf_rehash(st, st->nslots == 0 ? 128 : st->nslots * 2);
	else
		*conf_slot(st, name, len) = st->count;
	return e;
}

static char *
conf_hostname(void)
{
	char host[256];

	if (gethostname(host, sizeof(host)) < 0)
		host[0] = '\0';
	host[sizeof(host) - 1] = '\0';
	return xstrdup(host[0] != '\0' ? host : "localhost");
}

/* conf_domain_of: host without its first label, or "localdomain". */
static const char *
conf_domain_of(const char *host)
{
	const char *dot = strchr(host, '.');

	return dot != NULL && dot[1] != '\0' ? dot + 1 : "localdomain";
}

static struct conf_store *
conf_store_new(const char *file, char *config_dir)
{
	struct conf_store *st = xcalloc(1, sizeof(*st));
	size_t i;

	for (i = 0; i < conf_params_count; i++)
		conf_add(st, conf_params[i].name, strlen(conf_params[i].name),
		    &conf_params[i]);
	st->file = file != NULL ? xstrdup(file) : NULL;
	st->config_dir = config_dir;
	st->hostname = conf_hostname();
	st->domain = xstrdup(conf_domain_of(st->hostname));
	return st;
}

static void
conf_invalidate(struct conf_store *st)
{
	size_t i;

	for (i = 0; i < st->count; i++) {
		free(st->entries[i].value);
		st->entries[i].value = NULL;
		st->entries[i].cache = CONF_CACHE_NONE;
		st->entries[i].checked = false;
	}
}

static void
conf_store_free(struct conf_store **stp)
{
	struct conf_store *st = *stp;
	size_t i;

	if (st == NULL)
		return;
	conf_invalidate(st);
	for (i = 0; i < st->count; i++) {
		free(st->entries[i].name);
		free(st->entries[i].raw);
	}
	free(st->entries);
	free(st->slots);
	free(st->file);
	free(st->config_dir);
	free(st->hostname);
	free(st->domain);
	free(st);
	*stp = NULL;
}

/* ---- Messages ---- */

/* conf_show: value escaped and cut for quoting in a message. */
static const char *
conf_show(const char *value, char *out, size_t outsize)
{
	char cut[CONF_SHOW_MAX + 4];
	size_t len = strlen(value);

	if (len <= CONF_SHOW_MAX)
		return log_escape(value, out, outsize);
	memcpy(cut, value, CONF_SHOW_MAX);
	memcpy(cut + CONF_SHOW_MAX, "...", 4);
	return log_escape(cut, out, outsize);
}

static int __attribute__((format(printf, 2, 3)))
conf_fail(const char **error_r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(conf_error, sizeof(conf_error), fmt, ap);
	va_end(ap);
	*error_r = conf_error;
	return -1;
}

/* conf_why: record why an expansion failed, in conf_reason. */
static int __attribute__((format(printf, 1, 2)))
conf_why(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(conf_reason, sizeof(conf_reason), fmt, ap);
	va_end(ap);
	return -1;
}

/* conf_where: "file:line: " for a value from the file, "file: " for a
 * default, "" for a value from conf_set. */
static const char *
conf_where(const struct conf_store *st, const struct conf_entry *e,
    char *out, size_t outsize)
{
	if (e->raw != NULL && e->line > 0)
		snprintf(out, outsize, "%s:%u: ", st->file, e->line);
	else if (e->raw == NULL && st->file != NULL)
		snprintf(out, outsize, "%s: ", st->file);
	else
		out[0] = '\0';
	return out;
}

/* ---- Expansion ---- */

static int conf_expand_entry(struct conf_store *, struct conf_entry *,
    unsigned int, const char **);
static int conf_expand_text(struct conf_store *, const char *, struct buf *,
    unsigned int);

static int
conf_append(struct buf *out, const char *s, size_t len)
{
	if (buf_append(out, s, len) < 0)
		return conf_why("expanded value longer than %d bytes",
		    CONF_VALUE_MAX);
	return 0;
}

/* conf_defined: the entry a $name refers to, or NULL if undefined. */
static struct conf_entry *
conf_defined(struct conf_store *st, const char *name, size_t len)
{
	struct conf_entry *e = conf_find(st, name, len);

	if (e == NULL || (e->param == NULL && e->raw == NULL))
		return NULL;
	return e;
}

/* conf_ref_value: the expanded value of $name ("" if undefined). */
static int
conf_ref_value(struct conf_store *st, const char *name, size_t len,
    unsigned int depth, const char **value_r)
{
	struct conf_entry *e = conf_defined(st, name, len);

	if (e == NULL) {
		*value_r = "";
		return 0;
	}
	return conf_expand_entry(st, e, depth, value_r);
}

/* conf_dynamic: the default of a DYNAMIC parameter. These are literal
 * text (a directory name may hold a "$"), except that mydomain follows
 * the expanded myhostname, which the file may set. */
static int
conf_dynamic(struct conf_store *st, const struct conf_entry *e,
    struct buf *out, unsigned int depth)
{
	const char *host, *v;

	if (strcmp(e->name, "config_directory") == 0)
		v = st->config_dir;
	else if (strcmp(e->name, "myhostname") == 0)
		v = st->hostname;
	else if (strcmp(e->name, "mydomain") == 0) {
		if (conf_ref_value(st, "myhostname", 10, depth, &host) < 0)
			return -1;
		v = conf_domain_of(host);
	} else
		log_panic("conf: no dynamic default for %s", e->name);
	return conf_append(out, v, strlen(v));
}

/* conf_closing: the bracket that closes the one at open (Postfix counts
 * only brackets of the same kind), or NULL. */
static const char *
conf_closing(const char *open)
{
	char o = *open, c = o == '{' ? '}' : ')';
	const char *p;
	int level = 1;

	for (p = open + 1; *p != '\0'; p++) {
		if (*p == o)
			level++;
		else if (*p == c && --level == 0)
			return p;
	}
	return NULL;
}

/* conf_expand_cond: ${name?text} or ${name:text}, name[0..len), the
 * operator at op, the text ending at end. */
static int
conf_expand_cond(struct conf_store *st, const char *name, size_t len,
    const char *op, const char *end, struct buf *out, unsigned int depth)
{
	const char *v;
	char *text;
	int ret;

	if (conf_ref_value(st, name, len, depth, &v) < 0)
		return -1;
	if ((*op == '?') != (*v != '\0'))
		return 0;
	/* Conditionals nest inside one value without passing through
	 * conf_expand_entry; they count towards the same depth. */
	if (depth + 1 >= CONF_DEPTH_MAX)
		return conf_why("expansion nested deeper than %d levels "
		    "(in ${%.*s%c...})", CONF_DEPTH_MAX, (int)len, name, *op);
	text = xstrndup(op + 1, (size_t)(end - op - 1));
	ret = conf_expand_text(st, text, out, depth + 1);
	free(text);
	return ret;
}

/* conf_bad_expr: the reason for a ${...} that is not an expression,
 * kept out of conf_expand_braced so that the recursion's frames stay
 * small. */
static int __attribute__((noinline))
conf_bad_expr(const char *dollar, const char *close)
{
	char show[CONF_SHOW_MAX * 4 + 8], *expr;

	expr = xstrndup(dollar, (size_t)(close - dollar + 1));
	conf_show(expr, show, sizeof(show));
	free(expr);
	return conf_why("bad expression \"%s\": expected ${name}, "
	    "${name?text} or ${name:text}", show);
}

/* conf_expand_braced: ${...} or $(...) starting at open; *next_r is set
 * past the closing bracket. */
static int
conf_expand_braced(struct conf_store *st, const char *open,
    const char **next_r, struct buf *out, unsigned int depth)
{
	const char *close = conf_closing(open), *name = open + 1, *v;
	size_t len;

	if (close == NULL)
		return conf_why("unterminated \"$%c\"", *open);
	*next_r = close + 1;
	len = conf_name_span(name);
	if (len > 0 && name + len == close) {
		if (conf_ref_value(st, name, len, depth, &v) < 0)
			return -1;
		return conf_append(out, v, strlen(v));
	}
	if (len > 0 && (name[len] == '?' || name[len] == ':'))
		return conf_expand_cond(st, name, len, name + len, close, out,
		    depth);
	return conf_bad_expr(open - 1, close);
}

/* conf_expand_text: append text, expanded, to out. On -1 the reason is in
 * conf_reason. */
static int
conf_expand_text(struct conf_store *st, const char *text, struct buf *out,
    unsigned int depth)
{
	const char *p = text, *dollar, *v;
	size_t len;

	while ((dollar = strchr(p, '$')) != NULL) {
		if (conf_append(out, p, (size_t)(dollar - p)) < 0)
			return -1;
		if (dollar[1] == '$') {
			if (conf_append(out, "$", 1) < 0)
				return -1;
			p = dollar + 2;
		} else if (dollar[1] == '{' || dollar[1] == '(') {
			if (conf_expand_braced(st, dollar + 1, &p, out,
			    depth) < 0)
				return -1;
		} else if ((len = conf_name_span(dollar + 1)) > 0) {
			if (conf_ref_value(st, dollar + 1, len, depth,
			    &v) < 0 || conf_append(out, v, strlen(v)) < 0)
				return -1;
			p = dollar + 1 + len;
		} else
			return conf_why("\"$\" not followed by a parameter "
			    "name (write \"$$\" for a \"$\")");
	}
	return conf_append(out, p, strlen(p));
}

/* conf_expand_entry: e's expanded value, computed once and cached until
 * the configuration changes. depth counts the entries being expanded. */
static int
conf_expand_entry(struct conf_store *st, struct conf_entry *e,
    unsigned int depth, const char **value_r)
{
	struct buf b;
	int ret;

	if (e->cache == CONF_CACHE_DONE) {
		*value_r = e->value;
		return 0;
	}
	if (e->cache == CONF_CACHE_BUSY)
		return conf_why("expansion loop: $%s refers to itself",
		    e->name);
	if (depth >= CONF_DEPTH_MAX)
		return conf_why("expansion nested deeper than %d levels "
		    "(at $%s)", CONF_DEPTH_MAX, e->name);
	e->cache = CONF_CACHE_BUSY;
	buf_init(&b, CONF_VALUE_MAX);
	if (e->raw != NULL)
		ret = conf_expand_text(st, e->raw, &b, depth + 1);
	else if (e->param->flags & CONF_F_DYNAMIC)
		ret = conf_dynamic(st, e, &b, depth + 1);
	else
		ret = conf_expand_text(st, e->param->def, &b, depth + 1);
	if (ret == 0)
		e->value = xstrdup(buf_cstr(&b));
	buf_free(&b);
	e->cache = ret == 0 ? CONF_CACHE_DONE : CONF_CACHE_NONE;
	*value_r = e->value;
	return ret;
}

/* ---- Typed values ---- */

/* conf_parse_digits: decimal digits at *sp into *n_r, overflow checked;
 * *sp is moved past them. -1 if there are none or too many. */
static int
conf_parse_digits(const char **sp, long long *n_r)
{
	const char *s = *sp;
	long long n = 0;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (n > (LLONG_MAX - (*s - '0')) / 10)
			return -1;
		n = n * 10 + (*s - '0');
	}
	*sp = s;
	*n_r = n;
	return 0;
}

static int
conf_parse_int(const char *s, long long *n_r)
{
	bool neg = *s == '-';

	if (neg)
		s++;
	if (conf_parse_digits(&s, n_r) < 0 || *s != '\0')
		return -1;
	if (neg)
		*n_r = -*n_r;
	return 0;
}

static int
conf_parse_size(const char *s, long long *n_r)
{
	return conf_parse_digits(&s, n_r) < 0 || *s != '\0' ? -1 : 0;
}

static long long
conf_time_unit(char unit)
{
	switch (unit) {
	case 's':
		return 1;
	case 'm':
		return 60;
	case 'h':
		return 3600;
	case 'd':
		return 86400;
	case 'w':
		return 604800;
	default:
		return 0;
	}
}

static int
conf_parse_time(const char *s, char unit, long long *n_r)
{
	long long n, mult;

	if (conf_parse_digits(&s, &n) < 0)
		return -1;
	if (*s != '\0')
		unit = *s++;
	if (*s != '\0' || (mult = conf_time_unit(unit)) == 0 ||
	    n > CONF_TIME_MAX / mult)
		return -1;
	*n_r = n * mult;
	return 0;
}

static int
conf_parse_bool(const char *s, bool *b_r)
{
	if (strcasecmp(s, "yes") == 0 || strcasecmp(s, "true") == 0)
		*b_r = true;
	else if (strcasecmp(s, "no") == 0 || strcasecmp(s, "false") == 0)
		*b_r = false;
	else
		return -1;
	return 0;
}

static bool
conf_is_choice(const char *const *choices, const char *s, size_t len)
{
	for (; *choices != NULL; choices++)
		if (strlen(*choices) == len && strncmp(*choices, s, len) == 0)
			return true;
	return false;
}

#define CONF_LIST_SEP	", \t\r\n"

/* conf_check_list: every item is one of choices, and there is one. */
static int
conf_check_list(const char *const *choices, const char *s)
{
	size_t len, items = 0;

	for (s += strspn(s, CONF_LIST_SEP); *s != '\0';
	    s += strspn(s, CONF_LIST_SEP)) {
		len = strcspn(s, CONF_LIST_SEP);
		if (!conf_is_choice(choices, s, len))
			return -1;
		items++;
		s += len;
	}
	return items > 0 ? 0 : -1;
}

/* conf_typed: parse v as e's type into e->num / e->flag; -1 if bad. */
static int
conf_typed(struct conf_entry *e, const char *v)
{
	const struct conf_param *p = e->param;

	switch (p->type) {
	case CONF_TYPE_STRING:
		if (p->choices != NULL &&
		    !conf_is_choice(p->choices, v, strlen(v)))
			return -1;
		break;
	case CONF_TYPE_INT:
		if (conf_parse_int(v, &e->num) < 0)
			return -1;
		break;
	case CONF_TYPE_SIZE:
		if (conf_parse_size(v, &e->num) < 0)
			return -1;
		break;
	case CONF_TYPE_TIME:
		if (conf_parse_time(v, p->unit, &e->num) < 0)
			return -1;
		break;
	case CONF_TYPE_BOOL:
		return conf_parse_bool(v, &e->flag);
	case CONF_TYPE_LIST:
		if (p->choices != NULL && conf_check_list(p->choices, v) < 0)
			return -1;
		break;
	case CONF_TYPE_PATH:
		if (v[0] != '\0' && v[0] != '/')
			return -1;
		break;
	}
	if ((p->type == CONF_TYPE_INT || p->type == CONF_TYPE_SIZE ||
	    p->type == CONF_TYPE_TIME) && (e->num < p->min || e->num > p->max))
		return -1;
	return p->check != NULL ? p->check(v) : 0;
}

/* conf_range: " from MIN to MAX" and the like, for "expected ..." text;
 * floor and ceiling are the bounds not worth mentioning. */
static void
conf_range(const struct conf_param *p, long long floor, long long ceiling,
    const char *unit, char *out, size_t outsize)
{
	if (p->min > floor && p->max < ceiling)
		snprintf(out, outsize, " from %lld%s to %lld%s", p->min, unit,
		    p->max, unit);
	else if (p->min > floor)
		snprintf(out, outsize, " of at least %lld%s", p->min, unit);
	else if (p->max < ceiling)
		snprintf(out, outsize, " of at most %lld%s", p->max, unit);
	else
		out[0] = '\0';
}

static void
conf_join_choices(const char *const *choices, char *out, size_t outsize)
{
	out[0] = '\0';
	for (; *choices != NULL; choices++) {
		strlcat(out, *choices, outsize);
		if (choices[1] != NULL)
			strlcat(out, choices[2] != NULL ? ", " : " or ",
			    outsize);
	}
}

/* conf_expected: what a good value of p looks like, after "expected ". */
static void
conf_expected(const struct conf_param *p, char *out, size_t outsize)
{
	char range[128], choices[256];

	if (p->check != NULL && p->expect != NULL) {
		strlcpy(out, p->expect, outsize);
		return;
	}
	if (p->choices != NULL)
		conf_join_choices(p->choices, choices, sizeof(choices));
	switch (p->type) {
	case CONF_TYPE_INT:
		conf_range(p, LLONG_MIN, LLONG_MAX, "", range, sizeof(range));
		snprintf(out, outsize, "an integer%s", range);
		break;
	case CONF_TYPE_SIZE:
		conf_range(p, 0, LLONG_MAX, "", range, sizeof(range));
		snprintf(out, outsize, "a number of bytes%s", range);
		break;
	case CONF_TYPE_TIME:
		conf_range(p, 0, LLONG_MAX, "s", range, sizeof(range));
		snprintf(out, outsize, "a time%s: a number with an optional "
		    "unit s, m, h, d or w (default %c), at most %d seconds",
		    range, p->unit, CONF_TIME_MAX);
		break;
	case CONF_TYPE_BOOL:
		strlcpy(out, "yes or no", outsize);
		break;
	case CONF_TYPE_LIST:
		snprintf(out, outsize, "a list of %s",
		    p->choices != NULL ? choices : "items");
		break;
	case CONF_TYPE_PATH:
		strlcpy(out, "an absolute path", outsize);
		break;
	case CONF_TYPE_STRING:
		snprintf(out, outsize, "%s",
		    p->choices != NULL ? choices : "a string");
		break;
	}
}

/* conf_check_entry: expand and validate a table parameter; on -1 the
 * whole message is in msg. */
static int
conf_check_entry(struct conf_store *st, struct conf_entry *e, char *msg,
    size_t msgsize)
{
	char where[CONF_ERROR_MAX], show[CONF_SHOW_MAX * 4 + 8];
	char expected[512];
	const char *v;

	if (conf_expand_entry(st, e, 0, &v) < 0) {
		snprintf(msg, msgsize, "%s%s: cannot expand \"%s\": %s",
		    conf_where(st, e, where, sizeof(where)), e->name,
		    conf_show(e->raw != NULL ? e->raw : e->param->def != NULL ?
		    e->param->def : "", show, sizeof(show)), conf_reason);
		return -1;
	}
	if (conf_typed(e, v) < 0) {
		conf_expected(e->param, expected, sizeof(expected));
		snprintf(msg, msgsize, "%s%s: bad value \"%s\": expected %s",
		    conf_where(st, e, where, sizeof(where)), e->name,
		    conf_show(v, show, sizeof(show)), expected);
		return -1;
	}
	e->checked = true;
	return 0;
}

/* conf_check_all: validate every table parameter; on -1, *error_r is the
 * message of the bad value set earliest in the file (defaults and
 * conf_set values come last). */
static int
conf_check_all(struct conf_store *st, const char **error_r)
{
	char msg[CONF_ERROR_MAX];
	unsigned int best = 0, line;
	bool failed = false;
	size_t i;

	for (i = 0; i < conf_params_count; i++) {
		struct conf_entry *e = &st->entries[i];

		if (conf_check_entry(st, e, msg, sizeof(msg)) == 0)
			continue;
		line = e->raw != NULL && e->line > 0 ? e->line : UINT_MAX;
		if (!failed || line < best) {
			strlcpy(conf_error, msg, sizeof(conf_error));
			best = line;
		}
		failed = true;
	}
	if (failed)
		*error_r = conf_error;
	return failed ? -1 : 0;
}

/* ---- Reading the file ---- */

struct conf_reader {
	struct conf_store *st;
	struct buf logical;		/* the logical line being joined */
	unsigned int logical_line;	/* where it began; 0: none */
};

static bool
conf_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* conf_trim: s[0..*len_r) without white space at either end. */
static const char *
conf_trim(const char *s, size_t *len_r)
{
	size_t len = *len_r;

	while (len > 0 && conf_space(*s)) {
		s++;
		len--;
	}
	while (len > 0 && conf_space(s[len - 1]))
		len--;
	*len_r = len;
	return s;
}

/* conf_assign: name = value from line lineno of the file. */
static void
conf_assign(struct conf_store *st, const char *name, size_t namelen,
    const char *value, size_t valuelen, unsigned int lineno)
{
	struct conf_entry *e = conf_find(st, name, namelen);

	if (e != NULL && e->param != NULL &&
	    (e->param->flags & CONF_F_READONLY)) {
		log_warning("%s:%u: %s is read-only (it is the directory of "
		    "this file); ignored", st->file, lineno, e->name);
		return;
	}
	if (e == NULL || e->param == NULL) {
		log_warning("%s:%u: unknown parameter \"%.*s\"", st->file,
		    lineno, (int)namelen, name);
		if (e == NULL)
			e = conf_add(st, name, namelen, NULL);
	}
	free(e->raw);
	e->raw = xstrndup(value, valuelen);
	e->line = lineno;
}

/* conf_logical: handle the completed logical line "name = value". */
static int
conf_logical(struct conf_reader *rd, const char **error_r)
{
	const char *text = buf_cstr(&rd->logical), *eq, *name, *value;
	char show[CONF_SHOW_MAX * 4 + 8];
	size_t namelen, valuelen;

	if ((eq = strchr(text, '=')) == NULL)
		return conf_fail(error_r, "%s:%u: bad line \"%s\": expected "
		    "name = value", rd->st->file, rd->logical_line,
		    conf_show(text, show, sizeof(show)));
	namelen = (size_t)(eq - text);
	name = conf_trim(text, &namelen);
	if (namelen == 0 || conf_name_span(name) != namelen) {
		char *bad = xstrndup(name, namelen);

		conf_show(bad, show, sizeof(show));
		free(bad);
		return conf_fail(error_r, "%s:%u: bad parameter name \"%s\": "
		    "expected letters, digits and \"_\"", rd->st->file,
		    rd->logical_line, show);
	}
	valuelen = strlen(eq + 1);
	value = conf_trim(eq + 1, &valuelen);
	conf_assign(rd->st, name, namelen, value, valuelen, rd->logical_line);
	return 0;
}

static int
conf_flush(struct conf_reader *rd, const char **error_r)
{
	int ret = 0;

	if (rd->logical_line > 0)
		ret = conf_logical(rd, error_r);
	buf_truncate(&rd->logical, 0);
	rd->logical_line = 0;
	return ret;
}

/* conf_physical: one line of the file, len bytes without its "\n". */
static int
conf_physical(struct conf_reader *rd, const char *line, size_t len,
    unsigned int lineno, const char **error_r)
{
	const char *text;
	size_t textlen = len;

	if (len > CONF_LINE_MAX)
		return conf_fail(error_r, "%s:%u: line longer than %d bytes",
		    rd->st->file, lineno, CONF_LINE_MAX);
	if (memchr(line, '\0', len) != NULL)
		return conf_fail(error_r, "%s:%u: NUL byte in line",
		    rd->st->file, lineno);
	text = conf_trim(line, &textlen);
	if (textlen == 0 || text[0] == '#')
		return 0;	/* comments do not end a logical line */
	if (line[0] == ' ' || line[0] == '\t') {
		if (rd->logical_line == 0)
			return conf_fail(error_r, "%s:%u: line starts with "
			    "white space but continues no parameter",
			    rd->st->file, lineno);
		/* Cannot fail: the whole file fits in the buffer. */
		buf_append_byte(&rd->logical, ' ');
		buf_append(&rd->logical, text, textlen);
		return 0;
	}
	if (conf_flush(rd, error_r) < 0)
		return -1;
	rd->logical_line = lineno;
	buf_append(&rd->logical, text, textlen);
	return 0;
}

static int
conf_parse(struct conf_store *st, const char *text, size_t len,
    const char **error_r)
{
	struct conf_reader rd = { .st = st };
	const char *p = text, *end = text + len, *nl;
	unsigned int lineno = 0;
	int ret = 0;

	buf_init(&rd.logical, CONF_FILE_MAX + 1);
	while (ret == 0 && p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		ret = conf_physical(&rd, p, (size_t)((nl ? nl : end) - p),
		    ++lineno, error_r);
		p = nl != NULL ? nl + 1 : end;
	}
	if (ret == 0)
		ret = conf_flush(&rd, error_r);
	buf_free(&rd.logical);
	return ret;
}

static int
conf_read_file(const char *path, struct buf *b, const char **error_r)
{
	char chunk[16384];
	struct stat sb;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0)
		return conf_fail(error_r, "cannot open %s: %s", path,
		    strerror(errno));
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return conf_fail(error_r, "%s: not a regular file", path);
	}
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || buf_append(b, chunk, (size_t)n) < 0) {
			close(fd);
			return n < 0 ? conf_fail(error_r, "cannot read %s: %s",
			    path, strerror(errno)) : conf_fail(error_r,
			    "%s: file larger than %d bytes", path,
			    CONF_FILE_MAX);
		}
	}
	close(fd);
	return 0;
}

/* conf_dir_of: the absolute directory of a file name; NULL if there is
 * none to be had (a buffer name that is not an absolute path). */
static char *
conf_dir_of(const char *name, bool is_file)
{
	const char *slash = strrchr(name, '/');
	char *dir, *abs;

	if (slash == name)
		return xstrdup("/");
	dir = slash != NULL ? xstrndup(name, (size_t)(slash - name)) :
	    xstrdup(".");
	if (dir[0] == '/')
		return dir;
	/* A file was just opened, so its directory resolves; a buffer
	 * name is only a label. */
	abs = is_file ? realpath(dir, NULL) : NULL;
	free(dir);
	return abs;
}

static char *
conf_default_dir(void)
{
	const char *path = conf_default_path();

	return xstrndup(path, (size_t)(strrchr(path, '/') - path));
}

/* conf_load_text: parse and validate into a new store, then replace the
 * one in use. */
static int
conf_load_text(const char *name, bool is_file, const char *text,
    size_t len, const char **error_r)
{
	struct conf_store *st;
	char *dir;

	if (len > CONF_FILE_MAX)
		return conf_fail(error_r, "%s: file larger than %d bytes",
		    name, CONF_FILE_MAX);
	if ((dir = conf_dir_of(name, is_file)) == NULL)
		dir = conf_default_dir();
	st = conf_store_new(name, dir);
	if (conf_parse(st, text, len, error_r) < 0 ||
	    conf_check_all(st, error_r) < 0) {
		conf_store_free(&st);
		return -1;
	}
	conf_store_free(&conf_cur);
	conf_cur = st;
	return 0;
}

/* ---- The interface ---- */

const char *
conf_default_path(void)
{
	return LOFT_SYSCONFDIR "/loft/loft.conf";
}

/* conf_store_get: the configuration in use, the defaults if none. */
static struct conf_store *
conf_store_get(void)
{
	const char *error;

	if (conf_cur == NULL) {
		conf_cur = conf_store_new(NULL, conf_default_dir());
		if (conf_check_all(conf_cur, &error) < 0)
			log_panic("conf: bad built-in default: %s", error);
	}
	return conf_cur;
}

int
conf_load(const char *path, const char **error_r)
{
	struct buf b;
	int ret;

	buf_init(&b, CONF_FILE_MAX);
	ret = conf_read_file(path, &b, error_r);
	if (ret == 0)
		ret = conf_load_text(path, true, (const char *)b.data, b.len,
		    error_r);
	buf_free(&b);
	return ret;
}

int
conf_load_buffer(const char *name, const char *text, size_t len,
    const char **error_r)
{
	return conf_load_text(name, false, text, len, error_r);
}

static int
conf_set_check(const char *name, const char *value, const char **error_r)
{
	size_t len = strlen(name);
	struct conf_entry *e;

	if (len == 0 || conf_name_span(name) != len)
		return conf_fail(error_r, "bad parameter name \"%.64s\": "
		    "expected letters, digits and \"_\"", name);
	if (strlen(value) > CONF_LINE_MAX)
		return conf_fail(error_r, "%s: value longer than %d bytes",
		    name, CONF_LINE_MAX);
	if (strpbrk(value, "\r\n") != NULL)
		return conf_fail(error_r, "%s: value is more than one line",
		    name);
	e = conf_find(conf_store_get(), name, len);
	if (e != NULL && e->param != NULL &&
	    (e->param->flags & CONF_F_READONLY))
		return conf_fail(error_r, "%s is read-only", name);
	return 0;
}

int
conf_set(const char *name, const char *value, const char **error_r)
{
	struct conf_store *st = conf_store_get();
	struct conf_entry *e;
	unsigned int old_line;
	const char *error;
	char *old_raw;

	if (conf_set_check(name, value, error_r) < 0)
		return -1;
	if ((e = conf_find(st, name, strlen(name))) == NULL)
		e = conf_add(st, name, strlen(name), NULL);
	old_raw = e->raw;
	old_line = e->line;
	e->raw = xstrdup(value);
	e->line = 0;
	conf_invalidate(st);
	if (conf_check_all(st, error_r) == 0) {
		free(old_raw);
		return 0;
	}
	free(e->raw);
	e->raw = old_raw;
	e->line = old_line;
	conf_invalidate(st);
	/* It was valid before the change, and is as it was. */
	if (conf_check_all(st, &error) < 0)
		log_panic("conf_set: configuration broken by rollback");
	*error_r = conf_error;
	return -1;
}

void
conf_reset(void)
{
	conf_store_free(&conf_cur);
}

/* conf_param_entry: the checked entry of a table parameter, or panic. */
static struct conf_entry *
conf_param_entry(const char *fn, const char *name)
{
	struct conf_store *st = conf_store_get();
	struct conf_entry *e = conf_find(st, name, strlen(name));
	char msg[CONF_ERROR_MAX];

	if (e == NULL || e->param == NULL)
		log_panic("%s: %s is not a configuration parameter", fn, name);
	if (!e->checked && conf_check_entry(st, e, msg, sizeof(msg)) < 0)
		log_panic("%s: %s", fn, msg);
	return e;
}

static struct conf_entry *
conf_typed_entry(const char *fn, const char *name, enum conf_type t1,
    enum conf_type t2)
{
	struct conf_entry *e = conf_param_entry(fn, name);

	if (e->param->type != t1 && e->param->type != t2)
		log_panic("%s: %s is a parameter of another type", fn, name);
	return e;
}

const char *
conf_str(const char *name)
{
	return conf_param_entry("conf_str", name)->value;
}

long long
conf_int(const char *name)
{
	return conf_typed_entry("conf_int", name, CONF_TYPE_INT,
	    CONF_TYPE_SIZE)->num;
}

bool
conf_bool(const char *name)
{
	return conf_typed_entry("conf_bool", name, CONF_TYPE_BOOL,
	    CONF_TYPE_BOOL)->flag;
}

long long
conf_time(const char *name)
{
	return conf_typed_entry("conf_time", name, CONF_TYPE_TIME,
	    CONF_TYPE_TIME)->num;
}

char **
conf_list(const char *name, size_t *count_r)
{
	const char *s = conf_typed_entry("conf_list", name, CONF_TYPE_LIST,
	    CONF_TYPE_LIST)->value;
	size_t n = 0, len;
	char **list;

	/* At most one item per two bytes, plus the NULL. */
	list = xcalloc(strlen(s) / 2 + 2, sizeof(*list));
	for (s += strspn(s, CONF_LIST_SEP); *s != '\0';
	    s += strspn(s, CONF_LIST_SEP)) {
		len = strcspn(s, CONF_LIST_SEP);
		list[n++] = xstrndup(s, len);
		s += len;
	}
	if (count_r != NULL)
		*count_r = n;
	return list;
}

void
conf_list_free(char ***listp)
{
	char **list = *listp;
	size_t i;

	if (list == NULL)
		return;
	for (i = 0; list[i] != NULL; i++)
		free(list[i]);
	free(list);
	*listp = NULL;
}

const char *
conf_file(void)
{
	return conf_cur != NULL ? conf_cur->file : NULL;
}

static int
conf_entry_cmp(const void *a, const void *b)
{
	const struct conf_entry *const *ea = a, *const *eb = b;

	return strcmp((*ea)->name, (*eb)->name);
}

/* conf_shown_value: what conf_foreach gives for e. */
static const char *
conf_shown_value(struct conf_store *st, struct conf_entry *e, bool expand)
{
	char show[CONF_SHOW_MAX * 4 + 8];
	const char *v;

	if (!expand && e->raw != NULL)
		return e->raw;
	if (!expand && !(e->param->flags & CONF_F_DYNAMIC))
		return e->param->def;
	if (conf_expand_entry(st, e, 0, &v) == 0)
		return v;
	/* Only a user-defined value can fail: the table was checked. */
	log_warning("%s: cannot expand \"%s\": %s", e->name,
	    conf_show(e->raw != NULL ? e->raw : "", show, sizeof(show)),
	    conf_reason);
	return e->raw != NULL ? e->raw : "";
}

void
conf_foreach(bool nondefault_only, bool expand,
    void (*cb)(const char *name, const char *value, void *ctx), void *ctx)
{
	struct conf_store *st = conf_store_get();
	struct conf_entry **sorted;
	size_t i, n = 0;

	sorted = xreallocarray(NULL, st->count, sizeof(*sorted));
	for (i = 0; i < st->count; i++) {
		struct conf_entry *e = &st->entries[i];

		if (e->raw != NULL || (e->param != NULL && !nondefault_only))
			sorted[n++] = e;
	}
	qsort(sorted, n, sizeof(*sorted), conf_entry_cmp);
	for (i = 0; i < n; i++)
		cb(sorted[i]->name, conf_shown_value(st, sorted[i], expand),
		    ctx);
	free(sorted);
}

int
conf_param_info(const char *name, const char **default_r,
    const char **description_r)
{
	struct conf_store *st = conf_store_get();
	struct conf_entry *e = conf_find(st, name, strlen(name));
	const char *def;

	if (e == NULL || e->param == NULL)
		return -1;
	def = e->param->def;
	if (strcmp(name, "config_directory") == 0)
		def = st->config_dir;
	else if (strcmp(name, "myhostname") == 0)
		def = st->hostname;
	else if (strcmp(name, "mydomain") == 0)
		def = st->domain;
	if (default_r != NULL)
		*default_r = def;
	if (description_r != NULL)
		*description_r = e->param->description;
	return 0;
}
