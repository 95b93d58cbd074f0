/*
 * ctl.h: the subcommands of loftctl. Each gets argv from its own name on
 * (argv[0] is "config", "user", ...), runs with the configuration already
 * loaded, and returns the process exit status (0 success, 1 failure,
 * 64 usage).
 */
#ifndef LOFT_CTL_H
#define LOFT_CTL_H

int ctl_config_main(int argc, char **argv);
int ctl_user_main(int argc, char **argv);
int ctl_reindex_main(int argc, char **argv);
int ctl_index_main(int argc, char **argv);
int ctl_newaliases_main(int argc, char **argv);
int ctl_alias_main(int argc, char **argv);
/* ctl_queue.c: mailq (also installed as mailq) and queue
 * delete|hold|release|flush|show, on queue_directory; started as root
 * they become mail_owner for good first. */
int ctl_mailq_main(int argc, char **argv);
int ctl_queue_main(int argc, char **argv);
/* ctl_sendmail.c: sendmail (installed as sendmail too); loads the
 * configuration itself when none is (the link), or again with -C. */
int ctl_sendmail_main(int argc, char **argv);

#endif
