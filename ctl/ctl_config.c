/*
 * ctl_config.c: "loftctl config", which prints the configuration the way
 * postconf(1) does: "name = value" lines sorted by name.
 *
 *	loftctl config [-dhnvx] [name ...]
 *	-d	built-in defaults instead of the effective values
 *	-h	values only, without "name = "
 *	-n	only parameters set in the file (or by an override)
 *	-v	each parameter's one-line description as a "# " line above it
 *	-x	values with $name expanded
 *
 * Exit status: 0; 1 if a named parameter does not exist or output failed;
 * EX_USAGE (64) for bad options.
 *
 * Trusts the configuration, which the dispatcher loaded and conf_load
 * validated; argv comes from the administrator. Values are printed as
 * they are: they cannot hold a newline.
 */
#include "config.h"
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>
#include "conf.h"
#include "ctl.h"
#include "xmalloc.h"

struct ctl_config_opts {
	bool defaults;		/* -d */
	bool value_only;	/* -h */
	bool nondefault;	/* -n */
	bool describe;		/* -v */
	bool expand;		/* -x */
};

/* Names and values point into the configuration, which does not change
 * while loftctl config runs. */
struct ctl_config_item {
	const char *name;
	const char *value;
};

struct ctl_config_items {
	struct ctl_config_item *item;	/* owned; sorted by name */
	size_t count, alloc;
};

static int
ctl_config_usage(void)
{
	fprintf(stderr, "usage: loftctl config [-dhnvx] [name ...]\n");
	return EX_USAGE;
}

static int
ctl_config_options(int argc, char **argv, struct ctl_config_opts *o)
{
	int c;

	memset(o, 0, sizeof(*o));
	/* The dispatcher may have run getopt on its own arguments; glibc
	 * re-initialises fully only for 0. */
#ifdef __GLIBC__
	optind = 0;
#else
	optind = 1;
#endif
	opterr = 0;
	while ((c = getopt(argc, argv, "dhnvx")) != -1) {
		switch (c) {
		case 'd':
			o->defaults = true;
			break;
		case 'h':
			o->value_only = true;
			break;
		case 'n':
			o->nondefault = true;
			break;
		case 'v':
			o->describe = true;
			break;
		case 'x':
			o->expand = true;
			break;
		default:
			fprintf(stderr, "loftctl config: unknown option "
			    "-%c\n", optopt);
			return -1;
		}
	}
	if (o->defaults && (o->nondefault || o->expand)) {
		fprintf(stderr, "loftctl config: -d cannot be combined "
		    "with -n or -x\n");
		return -1;
	}
	return 0;
}

static void
ctl_config_collect(const char *name, const char *value, void *ctx)
{
	struct ctl_config_items *items = ctx;

	if (items->count == items->alloc) {
		items->alloc = items->alloc == 0 ? 64 : items->alloc * 2;
		items->item = xreallocarray(items->item, items->alloc,
		    sizeof(*items->item));
	}
	items->item[items->count].name = name;
	items->item[items->count].value = value;
	items->count++;
}

/* ctl_config_defaults: replace each value by the built-in default, and
 * drop user-defined parameters, which have none. */
static void
ctl_config_defaults(struct ctl_config_items *items)
{
	size_t i, n = 0;
	const char *def;

	for (i = 0; i < items->count; i++) {
		if (conf_param_info(items->item[i].name, &def, NULL) < 0)
			continue;
		items->item[n].name = items->item[i].name;
		items->item[n++].value = def;
	}
	items->count = n;
}

static const struct ctl_config_item *
ctl_config_find(const struct ctl_config_items *items, const char *name)
{
	size_t i;

	for (i = 0; i < items->count; i++)
		if (strcmp(items->item[i].name, name) == 0)
			return &items->item[i];
	return NULL;
}

static void
ctl_config_print(const struct ctl_config_opts *o,
    const struct ctl_config_item *it)
{
	const char *desc;

	if (o->describe && conf_param_info(it->name, NULL, &desc) == 0)
		printf("# %s\n", desc);
	if (o->value_only)
		printf("%s\n", it->value);
	else if (it->value[0] == '\0')
		printf("%s =\n", it->name);
	else
		printf("%s = %s\n", it->name, it->value);
}

/* ctl_config_named: print the parameters named in argv; 0, or 1 if one
 * of them does not exist. A table parameter left out by -n is not an
 * error. */
static int
ctl_config_named(const struct ctl_config_opts *o,
    const struct ctl_config_items *items, int argc, char **argv)
{
	const struct ctl_config_item *it;
	int i, status = 0;

	for (i = 0; i < argc; i++) {
		if ((it = ctl_config_find(items, argv[i])) != NULL)
			ctl_config_print(o, it);
		else if (o->defaults || conf_param_info(argv[i], NULL,
		    NULL) < 0) {
			fprintf(stderr, "loftctl config: %s: unknown "
			    "parameter\n", argv[i]);
			status = 1;
		}
	}
	return status;
}

int
ctl_config_main(int argc, char **argv)
{
	struct ctl_config_items items = { NULL, 0, 0 };
	struct ctl_config_opts o;
	size_t i;
	int status = 0;

	if (ctl_config_options(argc, argv, &o) < 0)
		return ctl_config_usage();
	conf_foreach(o.nondefault, o.expand, ctl_config_collect, &items);
	if (o.defaults)
		ctl_config_defaults(&items);
	if (optind < argc)
		status = ctl_config_named(&o, &items, argc - optind,
		    argv + optind);
	else
		for (i = 0; i < items.count; i++)
			ctl_config_print(&o, &items.item[i]);
	free(items.item);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "loftctl config: cannot write output\n");
		return 1;
	}
	return status;
}
