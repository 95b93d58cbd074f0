/*
 * ctl_alias.c: loftctl newaliases (also installed as newaliases) and
 * loftctl alias lookup, Postfix's newaliases and postalias -q.
 *
 *   loftctl newaliases [TABLE ...]
 *	compile each alias_database item (or each TABLE: lmdb:/path,
 *	hash:/path or /path) from /path into /path.lmdb
 *   loftctl alias lookup [-r] NAME ...
 *	show what mail for NAME goes to, through alias_maps (-r: the
 *	entry as stored, not expanded)
 *
 * Runs with the rights of whoever starts it: the source files are the
 * administrator's (smtp_alias_compile refuses one that another user
 * could have written); lookups read include files with the same rights
 * and run nothing.
 */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>
#include "conf.h"
#include "ctl.h"
#include "smtp/smtp_alias.h"

/* ctl_alias_compile_item: one table; 0 or 1 (failed, said why). */
static int
ctl_alias_compile_item(const char *item)
{
	unsigned int entries, warnings;
	char *src, *db;
	const char *err;
	int status = 0;

	if (smtp_alias_item_paths(item, &src, &db, &err) < 0) {
		fprintf(stderr, "loftctl: newaliases: %s\n", err);
		return 1;
	}
	if (smtp_alias_compile(src, db, &entries, &warnings, &err) < 0) {
		fprintf(stderr, "loftctl: newaliases: %s\n", err);
		status = 1;
	} else
		printf("%s: %u alias%s, %u warning%s\n", src, entries,
		    entries == 1 ? "" : "es", warnings,
		    warnings == 1 ? "" : "s");
	free(src);
	free(db);
	return status;
}

int
ctl_newaliases_main(int argc, char **argv)
{
	char **items;
	size_t count;
	int status = 0;

	if (argc > 1 && argv[1][0] == '-') {
		fprintf(stderr, "usage: loftctl newaliases [table ...]\n");
		return EX_USAGE;
	}
	if (argc > 1) {
		for (int i = 1; i < argc; i++)
			status |= ctl_alias_compile_item(argv[i]);
		return status;
	}
	items = conf_list("alias_database", &count);
	if (count == 0)
		fprintf(stderr, "loftctl: newaliases: alias_database is "
		    "empty: nothing to do\n");
	for (size_t i = 0; i < count; i++)
		status |= ctl_alias_compile_item(items[i]);
	conf_list_free(&items);
	return status;
}

/* ctl_alias_print_text: s in aliases(5) syntax, in double quotes when
 * it would not read back as one value otherwise. */
static void
ctl_alias_print_text(const char *prefix, const char *s)
{
	if (strpbrk(s, " \t,\"\\#") == NULL && s[0] != '\0') {
		printf("%s%s", prefix, s);
		return;
	}
	putchar('"');
	fputs(prefix, stdout);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			putchar('\\');
		putchar(*s);
	}
	putchar('"');
}

/* ctl_alias_print_raw: "name: value, value" as the source would have
 * it. */
static void
ctl_alias_print_raw(const char *name, const struct smtp_alias_value *v,
    size_t count)
{
	static const char *const prefix[] = {
		[SMTP_ALIAS_ADDRESS] = "", [SMTP_ALIAS_COMMAND] = "|",
		[SMTP_ALIAS_FILE] = "", [SMTP_ALIAS_INCLUDE] = ":include:",
		[SMTP_ALIAS_ERROR] = ""
	};

	printf("%s: ", name);
	for (size_t i = 0; i < count; i++) {
		if (i > 0)
			fputs(", ", stdout);
		if (v[i].kind == SMTP_ALIAS_ADDRESS && strchr(v[i].text, '@')
		    != NULL)
			fputs(v[i].text, stdout);	/* quoted already */
		else
			ctl_alias_print_text(v[i].noexpand ? "\\" :
			    prefix[v[i].kind], v[i].text);
	}
	putchar('\n');
}

/* ctl_alias_print_target: "name: kind value [owner=...] [source=...
 * uid=N] [(reason)]"; the source matters for commands and files, which
 * run with its owner's rights. */
static void
ctl_alias_print_target(const char *name, const struct smtp_alias_target *t)
{
	printf("%s: %s %s", name, smtp_alias_kind_name(t->kind), t->value);
	if (t->owner != NULL)
		printf(" owner=%s", t->owner);
	if (t->kind == SMTP_ALIAS_COMMAND || t->kind == SMTP_ALIAS_FILE)
		printf(" source=%s uid=%lu", t->source,
		    (unsigned long)t->source_uid);
	if (t->reason != NULL)
		printf(" (%s%s)", t->reason, t->temporary ? ", temporary" :
		    "");
	putchar('\n');
}

/* ctl_alias_lookup_one: 0 found, 1 not found or failed. */
static int
ctl_alias_lookup_one(struct smtp_alias_map *map, const char *name, bool raw)
{
	struct smtp_alias_target *t;
	struct smtp_alias_value *v;
	const char *err;
	size_t count;
	int ret;

	if (raw) {
		ret = smtp_alias_lookup(map, name, &v, &count, NULL, &err);
		if (ret > 0) {
			ctl_alias_print_raw(name, v, count);
			smtp_alias_values_free(v, count);
		}
	} else {
		ret = smtp_alias_expand(map, name, conf_str(
		    "recipient_delimiter"), conf_str("myorigin"), &t, &count,
		    &err);
		for (size_t i = 0; ret > 0 && i < count; i++)
			ctl_alias_print_target(name, &t[i]);
		if (ret > 0)
			smtp_alias_targets_free(t, count);
	}
	if (ret < 0)
		fprintf(stderr, "loftctl: alias lookup %s: %s\n", name, err);
	return ret > 0 ? 0 : 1;
}

static int
ctl_alias_lookup(int argc, char **argv)
{
	struct smtp_alias_map *map;
	const char *err;
	bool raw = false;
	int ch, status = 0;

	while ((ch = getopt(argc, argv, "r")) != -1) {
		if (ch != 'r')
			return EX_USAGE;
		raw = true;
	}
	if (optind == argc)
		return EX_USAGE;
	if (smtp_alias_open_conf(&map, &err) < 0) {
		fprintf(stderr, "loftctl: alias lookup: %s\n", err);
		return 1;
	}
	for (int i = optind; i < argc; i++)
		status |= ctl_alias_lookup_one(map, argv[i], raw);
	smtp_alias_close(&map);
	return status;
}

int
ctl_alias_main(int argc, char **argv)
{
	int status = EX_USAGE;

	if (argc >= 2 && strcmp(argv[1], "lookup") == 0)
		status = ctl_alias_lookup(argc - 1, argv + 1);
	if (status == EX_USAGE)
		fprintf(stderr, "usage: loftctl alias lookup [-r] name ...\n");
	return status;
}
