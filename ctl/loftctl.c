/*
 * loftctl.c: the administration tool's entry point.
 *
 *   loftctl [-c FILE] COMMAND [ARGS]
 *
 * Loads the configuration (a bad one stops every command, with the file,
 * line and expected form of the first mistake) and dispatches to the
 * command table. Runs with the invoking user's rights; it reads and writes
 * only the files the configuration names.
 */
#include "config.h"
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>
#include "conf.h"
#include "ctl.h"
#include "log.h"

struct ctl_command {
	const char *name;
	int (*main)(int argc, char **argv);
	const char *usage;
};

static const struct ctl_command ctl_commands[] = {
	{ "config", ctl_config_main, "config [-dhnvx] [name ...]" },
	{ "user", ctl_user_main, "user add|passwd|del|list|show ..." },
	{ "reindex", ctl_reindex_main, "reindex USER ..." },
	{ "index", ctl_index_main, "index stats|compact USER | index list USER [FOLDER]" },
	{ "newaliases", ctl_newaliases_main, "newaliases [TABLE ...]" },
	{ "alias", ctl_alias_main, "alias lookup [-r] NAME ..." },
	{ "mailq", ctl_mailq_main, "mailq" },
	{ "queue", ctl_queue_main,
	    "queue delete|hold|release ID ...|ALL, queue flush, queue show ID" },
	{ "sendmail", ctl_sendmail_main,
	    "sendmail [-t] [-i] [-f sender] [-bs|-bp|-bi|-q] [recipient ...]" },
};

static int
ctl_usage(void)
{
	fprintf(stderr, "usage: loftctl [-c config] command [args]\n");
	for (size_t i = 0; i < sizeof(ctl_commands) / sizeof(ctl_commands[0]);
	    i++)
		fprintf(stderr, "       loftctl %s\n", ctl_commands[i].usage);
	return EX_USAGE;
}

int
main(int argc, char **argv)
{
	const char *config = conf_default_path(), *err;
	const char *prog = argc > 0 ? argv[0] : "";
	const char *base = strrchr(prog, '/') != NULL ? strrchr(prog, '/') + 1 :
	    prog;
	/* Installed as "newaliases" and "mailq" too (links): that command
	 * alone. */
	const char *linked = strcmp(base, "newaliases") == 0 ? "newaliases" :
	    strcmp(base, "mailq") == 0 ? "mailq" : NULL;
	int ch;

	log_open("loft/ctl", LOG_DEST_STDERR);
	/* Installed as "sendmail" (a link): sendmail's own options (-C for
	 * the configuration), none of loftctl's. */
	if (strcmp(base, "sendmail") == 0)
		return ctl_sendmail_main(argc, argv);
	while ((ch = getopt(argc, argv, "+c:")) != -1) {
		if (ch == 'c')
			config = optarg;
		else
			return ctl_usage();
	}
	argc -= optind;
	argv += optind;
	if (linked != NULL) {
		argv[-1] = (char *)linked;	/* optind >= 1 */
		argv--;
		argc++;
	}
	if (argc < 1)
		return ctl_usage();
	if (conf_load(config, &err) < 0) {
		fprintf(stderr, "loftctl: %s\n", err);
		return 1;
	}
	for (size_t i = 0; i < sizeof(ctl_commands) / sizeof(ctl_commands[0]);
	    i++) {
		if (strcmp(argv[0], ctl_commands[i].name) == 0) {
			optind = 1;
			return ctl_commands[i].main(argc, argv);
		}
	}
	fprintf(stderr, "loftctl: unknown command \"%s\"\n", argv[0]);
	return ctl_usage();
}
