/*
 * rules_private.h: the tree rules_parse.c builds and rules_eval.c walks.
 * Not for use outside lib/rules_*.c.
 */
#ifndef LOFT_RULES_PRIVATE_H
#define LOFT_RULES_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>

#include "rules.h"

enum rules_cond_kind {
	RULES_C_REGEX,		/* * regex */
	RULES_C_SIZE_LT,	/* * < N */
	RULES_C_SIZE_GT,	/* * > N */
	RULES_C_PROGRAM,	/* * ? command */
	RULES_C_VAR,		/* * NAME ?? regex (also H ??, B ??, HB ??) */
	RULES_C_EXPAND		/* * $ text: expanded, then parsed again */
};

struct rules_cond {
	enum rules_cond_kind kind;
	bool negate;
	bool weighted;
	double weight, exponent;
	char *text;		/* regex, command, number, or text to expand */
	char *var;		/* RULES_C_VAR: the variable, or "H" "B" "HB" */
	unsigned long size;	/* SIZE_*: the number */
	unsigned line;
	void *code;		/* pcre2_code *, compiled at first use */
	bool has_match;		/* the regex has \/ */
	bool bad;		/* compiling failed: logged once */
	bool lit_known;		/* lit is computed */
	char *lit;		/* what every match contains (NULL: none
				   known): absent, no need to compile */
	size_t lit_len;
};

enum rules_action {
	RULES_A_FOLDER,
	RULES_A_FORWARD,
	RULES_A_PIPE,
	RULES_A_BLOCK
};

struct rules_block;

struct rules_node {
	bool is_recipe;
	unsigned line;
	/* assignment */
	char *name;		/* NAME */
	char *value;		/* raw text after "=", NULL: "NAME" alone */
	/* recipe */
	unsigned flags;		/* RULES_F_* */
	bool has_lock;
	char *lockfile;		/* NULL: ":0:" without a name */
	struct rules_cond *conds;
	size_t nconds;
	enum rules_action action;
	char *arg;		/* folder, addresses, command */
	char *capture;		/* VAR=| cmd: VAR */
	struct rules_block *block;
};

struct rules_block {
	struct rules_node *nodes;
	size_t count, cap;
	unsigned line;		/* of its "{" */
};

struct rules {
	char *name;
	struct rules_block top;
};

/* rules_cond_parse: the modifiers of a condition's text (after "*" and
 * blanks): weight, "!", "$", "?", "<", ">", "NAME ??", "\". Used by the
 * parser and again for "$" conditions after expansion. 0, or -1 with a
 * static message (no file or line). */
int rules_cond_parse(const char *text, bool allow_weight,
    struct rules_cond *c, const char **error_r);
void rules_cond_clear(struct rules_cond *c);

/* rules_regex_translate: a procmail regex (macros ^TO_ ^TO ^FROM_DAEMON
 * ^FROM_MAILER, \< \>, ^^, \/, no {n,m}) as a PCRE2 pattern into out;
 * *has_match_r: there was a \/ (then group 1 is MATCH). 0, or -1 when
 * out's maximum is reached. */
int rules_regex_translate(const char *re, struct buf *out, bool *has_match_r);

/* rules_regex_literal: the longest run of bytes that every match of re
 * (a procmail regex) contains, found outside groups and optional items,
 * into out (truncated first): if the area searched lacks it, re cannot
 * match there, and need not be compiled. Empty when there is none. -1
 * (out empty) when re is not plain enough to tell (an alternative at the
 * top, unbalanced parentheses, a quantifier after nothing), so that
 * compiling reports what is wrong with it. */
int rules_regex_literal(const char *re, struct buf *out);

#endif
