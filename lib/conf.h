/*
 * conf.h: the configuration, one file in Postfix main.cf syntax
 * (loft.conf(5)). It is a process-wide singleton, like Postfix's var_*:
 * load it once at start-up, then look parameters up by name.
 *
 *	name = value		white space around "=" is ignored
 *	# comment		only where a line starts (after white space)
 *	    more value		a line starting with white space continues
 *				the previous one, joined with one space
 *
 * Values are expanded at lookup: $name, ${name}, $(name); ${name?text}
 * (text if name is non-empty), ${name:text} (text if name is empty);
 * "$$" is a literal "$". An undefined name expands to nothing. Expansion
 * is recursive, bounded by CONF_DEPTH_MAX and CONF_VALUE_MAX, and a loop
 * is an error. Every table parameter is expanded and validated when the
 * configuration is loaded or changed, so lookups cannot fail.
 *
 * Not thread-safe. Strings returned by the lookups (conf_str, conf_file,
 * conf_param_info, the values given to a conf_foreach callback) stay valid
 * until the next conf_load, conf_load_buffer, conf_set or conf_reset.
 */
#ifndef LOFT_CONF_H
#define LOFT_CONF_H

#include <stdbool.h>
#include <stddef.h>

#define CONF_LINE_MAX	(64 * 1024)	/* a physical line, without "\n" */
#define CONF_FILE_MAX	(1024 * 1024)	/* the whole file */
#define CONF_VALUE_MAX	(1024 * 1024)	/* an expanded value */
#define CONF_DEPTH_MAX	100		/* $name inside $name inside ... */

/*
 * The parameter table, conf_params[] in conf_params.c. Only conf.c and
 * conf_params.c use it directly; others use the lookups below.
 */
enum conf_type {
	CONF_TYPE_STRING,
	CONF_TYPE_INT,		/* decimal, optional "-", in [min, max] */
	CONF_TYPE_SIZE,		/* bytes: plain decimal digits, in [min, max] */
	CONF_TYPE_BOOL,		/* yes/no, true/false, any case */
	CONF_TYPE_TIME,		/* digits and one of s m h d w; seconds */
	CONF_TYPE_LIST,		/* items separated by commas and white space */
	CONF_TYPE_PATH		/* empty, or an absolute path */
};

#define CONF_F_DYNAMIC	0x01u	/* default computed at load, not expanded */
#define CONF_F_READONLY	0x02u	/* setting it in the file is ignored */

struct conf_param {
	const char *name;
	enum conf_type type;
	const char *def;		/* raw default; NULL when DYNAMIC */
	long long min, max;		/* INT, SIZE; TIME in seconds */
	char unit;			/* TIME: unit of a bare number */
	const char *const *choices;	/* STRING: the value, LIST: each
					   item, must be one of these;
					   NULL: anything */
	/* check: an extra test of the expanded value; 0 good, -1 bad, the
	 * expected form then being expect. NULL: none. */
	int (*check)(const char *value);
	const char *expect;		/* with check: "expected ..." text */
	unsigned int flags;		/* CONF_F_* */
	const char *description;	/* one line, for loftctl and docs */
};

extern const struct conf_param conf_params[];
extern const size_t conf_params_count;

/* conf_default_path: LOFT_SYSCONFDIR "/loft/loft.conf" (LOFT_SYSCONFDIR is
 * set by the Makefile; "/etc" when undefined). */
const char *conf_default_path(void);

/*
 * conf_load: read path (at most CONF_FILE_MAX bytes, lines at most
 * CONF_LINE_MAX), log a warning naming file and line for each unknown
 * parameter name (it is kept, for $name expansion) and for a setting of
 * config_directory (ignored), then expand and validate every table
 * parameter. Returns 0, or -1 with *error_r, e.g.
 *   "/etc/loft/loft.conf:12: message_size_limit: bad value "10M":
 *    expected a number of bytes"
 * (one line); when several values are bad, the one set earliest in the
 * file is reported. A missing file is an error. On error the configuration
 * in use does not change; on success it replaces it entirely, including
 * earlier conf_set overrides. config_directory becomes the absolute
 * directory of path.
 */
int conf_load(const char *path, const char **error_r);
/* conf_load_buffer: the same from text (len bytes, no NUL needed); name is
 * used in messages and returned by conf_file(); config_directory is its
 * directory when name is an absolute path, else the default one. */
int conf_load_buffer(const char *name, const char *text, size_t len,
    const char **error_r);
/* conf_set: set one parameter, like postconf -o, and validate the whole
 * configuration again; name must be [A-Za-z0-9_]+, value one line of at
 * most CONF_LINE_MAX bytes. Unknown names are kept as user-defined. On -1
 * (with *error_r) nothing changed. config_directory cannot be set. */
int conf_set(const char *name, const char *value, const char **error_r);
/* conf_reset: back to the built-in defaults, nothing loaded; frees all
 * memory the module holds. */
void conf_reset(void);

/*
 * Typed lookups of the expanded value of a table parameter. A name that is
 * not in the table, or a type that does not match (conf_int on a BOOL), is
 * a programming error: log_panic. Before any load, the defaults apply.
 */
const char *conf_str(const char *name);		/* any type; never NULL */
long long conf_int(const char *name);		/* INT and SIZE */
bool conf_bool(const char *name);		/* BOOL */
long long conf_time(const char *name);		/* TIME, in seconds */
/* conf_list: a LIST split into its items, non-empty, without separators;
 * a NULL-terminated array the caller frees with conf_list_free(), which
 * also sets *list to NULL. count_r may be NULL. */
char **conf_list(const char *name, size_t *count_r);
void conf_list_free(char ***list);

/* conf_file: the file (or buffer name) loaded, or NULL. */
const char *conf_file(void);

/*
 * conf_foreach: call cb for every table parameter and every user-defined
 * one, sorted by name (strcmp), with its raw (unexpanded) value, or if
 * expand, its expanded value. A dynamic default is given as computed. A
 * user-defined value that does not expand (a loop) is given raw, with a
 * warning. nondefault_only skips the parameters not set in the file or by
 * conf_set. cb must not change the configuration.
 */
void conf_foreach(bool nondefault_only, bool expand,
    void (*cb)(const char *name, const char *value, void *ctx), void *ctx);

/* conf_param_info: for a table parameter, its raw default (a dynamic one
 * as computed for the configuration in use, with myhostname not set) and
 * its one-line description; either pointer may be NULL. Returns 0, or -1
 * if name is not in the table (not an error: user-defined or unknown). */
int conf_param_info(const char *name, const char **default_r,
    const char **description_r);

#endif
