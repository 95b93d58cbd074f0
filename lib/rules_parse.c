/*
 * rules_parse.c: procmail's recipe language (procmailrc(5)) into a tree.
 *
 * An incremental state machine: bytes become physical lines (bounded by
 * line_max), physical lines ending in a backslash are joined into one
 * logical line (a condition's continuation loses its leading blanks, as
 * in procmail), and each logical line moves the machine between two
 * states: TOP (assignments, ":0" recipe starts, "}") and CONDS (after a
 * ":0" line: "*" conditions until the one action line). "{" actions push
 * a block, "}" pops it.
 *
 * SECURITY: the input is the user's own rule file (or one it includes),
 * read as the user; it is trusted no further than that: every size is
 * bounded, and nothing is interpreted here (no expansion, no command).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "compat/compat.h"
#include "rules.h"
#include "rules_private.h"
#include "xmalloc.h"

enum rules_pstate {
	RULES_PS_TOP,		/* assignments, recipes, "}" */
	RULES_PS_CONDS,		/* after ":0": conditions, then the action */
	RULES_PS_FAILED		/* an error was reported */
};

struct rules_parser {
	char *name;
	struct rules_limits lim;
	enum rules_pstate state;
	struct rules *r;
	struct rules_block *stack[RULES_DEPTH_MAX + 2];
	unsigned depth;		/* stack[depth] is the current block */
	unsigned recipes;
	size_t total;		/* bytes fed */
	unsigned lineno;	/* physical lines seen */
	struct buf phys;	/* the physical line being read */
	struct buf logical;	/* the logical line being joined */
	unsigned logical_line;	/* where it started */
	bool joining;		/* the last physical line ended in "\" */
	bool logical_is_cond;
	struct rules_node *recipe;	/* in CONDS: the recipe being read */
};

static char rules_parse_errbuf[512];

static const char *
rules_parse_error(struct rules_parser *p, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static const char *
rules_parse_error(struct rules_parser *p, unsigned line, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(rules_parse_errbuf, sizeof(rules_parse_errbuf), "%s:%u: %s",
	    p->name, line, msg);
	p->state = RULES_PS_FAILED;
	return rules_parse_errbuf;
}

void
rules_limits_default(struct rules_limits *l)
{
	l->file_max = RULES_FILE_MAX;
	l->line_max = RULES_LINE_MAX;
	l->depth_max = RULES_DEPTH_MAX;
	l->recipes_max = RULES_RECIPES_MAX;
	l->include_max = RULES_INCLUDE_MAX;
}

struct rules_parser *
rules_parser_new(const char *name, const struct rules_limits *lim)
{
	struct rules_parser *p = xcalloc(1, sizeof(*p));

	p->name = xstrdup(name);
	if (lim != NULL)
		p->lim = *lim;
	else
		rules_limits_default(&p->lim);
	if (p->lim.depth_max > RULES_DEPTH_MAX)
		p->lim.depth_max = RULES_DEPTH_MAX;
	p->r = xcalloc(1, sizeof(*p->r));
	p->r->name = xstrdup(name);
	p->stack[0] = &p->r->top;
	buf_init(&p->phys, p->lim.line_max);
	buf_init(&p->logical, p->lim.line_max);
	return p;
}

void
rules_cond_clear(struct rules_cond *c)
{
	free(c->text);
	free(c->var);
	free(c->lit);
	/* c->code belongs to rules_eval.c, which frees it in rules_free. */
	memset(c, 0, sizeof(*c));
}

static void
rules_block_free(struct rules_block *b);

static void
rules_node_free(struct rules_node *n)
{
	size_t i;

	free(n->name);
	free(n->value);
	free(n->lockfile);
	free(n->arg);
	free(n->capture);
	for (i = 0; i < n->nconds; i++)
		rules_cond_clear(&n->conds[i]);
	free(n->conds);
	if (n->block != NULL) {
		rules_block_free(n->block);
		free(n->block);
	}
}

static void
rules_block_free(struct rules_block *b)
{
	size_t i;

	for (i = 0; i < b->count; i++)
		rules_node_free(&b->nodes[i]);
	free(b->nodes);
	memset(b, 0, sizeof(*b));
}

/* Frees what rules_eval.c compiled; defined there. */
void rules_eval_free_codes(struct rules_block *b);

void
rules_free(struct rules **rp)
{
	struct rules *r = *rp;

	if (r == NULL)
		return;
	rules_eval_free_codes(&r->top);
	rules_block_free(&r->top);
	free(r->name);
	free(r);
	*rp = NULL;
}

void
rules_parser_free(struct rules_parser **pp)
{
	struct rules_parser *p = *pp;

	if (p == NULL)
		return;
	rules_free(&p->r);
	buf_free(&p->phys);
	buf_free(&p->logical);
	free(p->name);
	free(p);
	*pp = NULL;
}

const char *
rules_name(const struct rules *r)
{
	return r->name;
}

static struct rules_node *
rules_block_add(struct rules_block *b)
{
	if (b->count == b->cap) {
		b->cap = b->cap == 0 ? 8 : b->cap * 2;
		b->nodes = xreallocarray(b->nodes, b->cap, sizeof(*b->nodes));
	}
	memset(&b->nodes[b->count], 0, sizeof(b->nodes[0]));
	return &b->nodes[b->count++];
}

static const char *
rules_skip_blanks(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

static char *
rules_strdup_trim(const char *s, size_t len)
{
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' ||
	    s[len - 1] == '\r'))
		len--;
	return xstrndup(s, len);
}

static size_t
rules_name_len(const char *s)
{
	size_t n = 0;

	if (!isalpha((unsigned char)s[0]) && s[0] != '_')
		return 0;
	while (isalnum((unsigned char)s[n]) || s[n] == '_')
		n++;
	return n;
}

/*
 * Strip a trailing comment: a word starting with "#" outside quotes
 * (procmailrc(5) "Comments"; conditions never come here).
 */
static size_t
rules_uncommented_len(const char *s)
{
	char quote = '\0';
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		if (quote != '\0') {
			if (s[i] == quote)
				quote = '\0';
			else if (s[i] == '\\' && quote == '"' && s[i + 1] != '\0')
				i++;
			continue;
		}
		if (s[i] == '\\' && s[i + 1] != '\0') {
			i++;
			continue;
		}
		if (s[i] == '\'' || s[i] == '"' || s[i] == '`')
			quote = s[i];
		else if (s[i] == '#' && (i == 0 || s[i - 1] == ' ' ||
		    s[i - 1] == '\t'))
			break;
	}
	return i;
}

/* Does s end inside a quote (an assignment continued on the next line,
 * as sh allows)? Comments end the scan. */
static bool
rules_open_quote(const char *s)
{
	char quote = '\0';
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		if (quote != '\0') {
			if (s[i] == quote)
				quote = '\0';
			else if (s[i] == '\\' && quote != '\'' && s[i + 1] != '\0')
				i++;
			continue;
		}
		if (s[i] == '\\' && s[i + 1] != '\0')
			i++;
		else if (s[i] == '\'' || s[i] == '"' || s[i] == '`')
			quote = s[i];
		else if (s[i] == '#' && (i == 0 || s[i - 1] == ' ' ||
		    s[i - 1] == '\t'))
			break;
	}
	return quote != '\0';
}

static bool
rules_is_assignment(const char *s)
{
	size_t n;

	s = rules_skip_blanks(s);
	n = rules_name_len(s);
	return n > 0 && rules_skip_blanks(s + n)[0] == '=';
}

/* --- conditions ---------------------------------------------------- */

static int
rules_parse_number(const char *s, double *v_r, const char **end_r)
{
	char *end;

	errno = 0;
	*v_r = strtod(s, &end);
	if (end == s || errno != 0 || *v_r < -2147483647.0 ||
	    *v_r > 2147483647.0)
		return -1;
	*end_r = end;
	return 0;
}

/* "w^x " at the start of a condition: procmailsc(5). */
static int
rules_cond_weight(const char *text, struct rules_cond *c, const char **rest_r)
{
	const char *p = text, *end;
	double w, x;

	*rest_r = text;
	if (!(isdigit((unsigned char)*p) || *p == '-' || *p == '+' ||
	    *p == '.'))
		return 0;
	if (rules_parse_number(p, &w, &end) < 0 || *end != '^')
		return 0;
	if (rules_parse_number(end + 1, &x, &end) < 0)
		return -1;
	if (*end != ' ' && *end != '\t' && *end != '\0')
		return -1;
	c->weighted = true;
	c->weight = w;
	c->exponent = x;
	*rest_r = rules_skip_blanks(end);
	return 0;
}

static int
rules_cond_size(const char *s, struct rules_cond *c, const char **error_r)
{
	char *end;
	unsigned long v;

	s = rules_skip_blanks(s);
	if (!isdigit((unsigned char)*s)) {
		*error_r = "a size condition needs a number of bytes";
		return -1;
	}
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0) {
		*error_r = "size out of range";
		return -1;
	}
	end = (char *)rules_skip_blanks(end);
	if (*end != '\0' && *end != '\r') {
		*error_r = "junk after the size";
		return -1;
	}
	c->size = v;
	c->text = xstrdup(s);
	return 0;
}

int
rules_cond_parse(const char *text, bool allow_weight, struct rules_cond *c,
    const char **error_r)
{
	const char *p = rules_skip_blanks(text), *q;
	size_t n;

	if (allow_weight && rules_cond_weight(p, c, &p) < 0) {
		*error_r = "bad weight (expected w^x)";
		return -1;
	}
	for (;;) {
		if (*p == '!') {
			c->negate = !c->negate;
			p = rules_skip_blanks(p + 1);
		} else if (*p == '$') {
			c->kind = RULES_C_EXPAND;
			c->text = xstrdup(rules_skip_blanks(p + 1));
			return 0;
		} else
			break;
	}
	switch (*p) {
	case '?':
		c->kind = RULES_C_PROGRAM;
		c->text = xstrdup(rules_skip_blanks(p + 1));
		if (c->text[0] == '\0') {
			*error_r = "\"?\" without a command";
			return -1;
		}
		return 0;
	case '<':
	case '>':
		c->kind = *p == '<' ? RULES_C_SIZE_LT : RULES_C_SIZE_GT;
		return rules_cond_size(p + 1, c, error_r);
	case '\\':
		/* "\" quotes a leading special character. */
		if (p[1] == '!' || p[1] == '$' || p[1] == '?' || p[1] == '<' ||
		    p[1] == '>' || p[1] == '\\')
			p++;
		break;
	default:
		n = rules_name_len(p);
		q = rules_skip_blanks(p + n);
		if (n > 0 && q[0] == '?' && q[1] == '?') {
			c->kind = RULES_C_VAR;
			c->var = xstrndup(p, n);
			c->text = xstrdup(rules_skip_blanks(q + 2));
			return 0;
		}
	}
	c->kind = RULES_C_REGEX;
	c->text = xstrdup(p);
	return 0;
}

static int
rules_add_cond(struct rules_parser *p, const char *text, const char **error_r)
{
	struct rules_node *n = p->recipe;
	struct rules_cond *c;
	const char *err;
	size_t len = strlen(text);

	/* A carriage return from a file edited elsewhere is no part of it. */
	if (len > 0 && text[len - 1] == '\r')
		len--;
	n->conds = xreallocarray(n->conds, n->nconds + 1, sizeof(*n->conds));
	c = &n->conds[n->nconds++];
	memset(c, 0, sizeof(*c));
	c->line = p->logical_line;
	{
		char *t = xstrndup(text, len);
		int ret = rules_cond_parse(t, true, c, &err);

		free(t);
		if (ret < 0) {
			*error_r = rules_parse_error(p, p->logical_line,
			    "condition: %s", err);
			return -1;
		}
	}
	return 0;
}

/* --- recipe start line --------------------------------------------- */

static int
rules_flag_bit(char f, unsigned *bit_r)
{
	static const char letters[] = "HBhbcfwWiDAaEer";
	static const unsigned bits[] = {
		RULES_F_HEADER_GREP, RULES_F_BODY_GREP, RULES_F_HEADER_FEED,
		RULES_F_BODY_FEED, RULES_F_COPY, RULES_F_FILTER,
		RULES_F_WAIT, RULES_F_WAIT_QUIET, RULES_F_IGNORE_WERR,
		RULES_F_CASE, RULES_F_AND, RULES_F_AND_OK, RULES_F_ELSE,
		RULES_F_ELSE_ERR, RULES_F_RAW
	};
	const char *at = f != '\0' ? strchr(letters, f) : NULL;

	if (at == NULL)
		return -1;
	*bit_r = bits[at - letters];
	return 0;
}

static int
rules_start_recipe(struct rules_parser *p, const char *line,
    const char **error_r)
{
	struct rules_node *n;
	const char *s = line + 1;
	unsigned bit, flags = 0;

	if (++p->recipes > p->lim.recipes_max) {
		*error_r = rules_parse_error(p, p->logical_line,
		    "more than %u recipes", p->lim.recipes_max);
		return -1;
	}
	while (isdigit((unsigned char)*s))
		s++;
	for (;; s++) {
		if (*s == ' ' || *s == '\t' || *s == '\r')
			continue;
		if (*s == '\0' || *s == ':' || *s == '#')
			break;
		if (rules_flag_bit(*s, &bit) < 0) {
			*error_r = rules_parse_error(p, p->logical_line,
			    "unknown flag '%c'", *s);
			return -1;
		}
		flags |= bit;
	}
	n = rules_block_add(p->stack[p->depth]);
	n->is_recipe = true;
	n->line = p->logical_line;
	n->flags = flags;
	if (*s == ':') {
		size_t len;

		s = rules_skip_blanks(s + 1);
		len = rules_uncommented_len(s);
		n->has_lock = true;
		n->lockfile = rules_strdup_trim(s, len);
		if (n->lockfile[0] == '\0') {
			free(n->lockfile);
			n->lockfile = NULL;
		}
	}
	p->recipe = n;
	p->state = RULES_PS_CONDS;
	return 0;
}

/* --- assignments ---------------------------------------------------- */

static int
rules_assignment(struct rules_parser *p, const char *line,
    const char **error_r)
{
	size_t n = rules_name_len(line), len;
	const char *s = rules_skip_blanks(line + n);
	struct rules_node *node;

	if (n == 0 || (*s != '=' && *s != '\0' && *s != '#' && *s != '\r')) {
		*error_r = rules_parse_error(p, p->logical_line,
		    "syntax error (not an assignment, a recipe or \"}\")");
		return -1;
	}
	node = rules_block_add(p->stack[p->depth]);
	node->line = p->logical_line;
	node->name = xstrndup(line, n);
	if (*s == '=' && rules_open_quote(s + 1)) {
		*error_r = rules_parse_error(p, p->logical_line,
		    "unterminated quote");
		return -1;
	}
	if (*s == '=') {
		s = rules_skip_blanks(s + 1);
		len = rules_uncommented_len(s);
		node->value = rules_strdup_trim(s, len);
	}
	return 0;
}

/* --- action line ---------------------------------------------------- */

static int rules_line(struct rules_parser *p, const char *line,
    const char **error_r);

static int
rules_open_block(struct rules_parser *p, struct rules_node *n,
    const char *rest, const char **error_r)
{
	if (p->depth + 1 > p->lim.depth_max) {
		*error_r = rules_parse_error(p, p->logical_line,
		    "blocks nested more than %u deep", p->lim.depth_max);
		return -1;
	}
	n->action = RULES_A_BLOCK;
	n->block = xcalloc(1, sizeof(*n->block));
	n->block->line = p->logical_line;
	p->stack[++p->depth] = n->block;
	p->state = RULES_PS_TOP;
	p->recipe = NULL;
	rest = rules_skip_blanks(rest);
	/* "{ }", or "{ VAR=x }": what follows on the line is in the block. */
	if (*rest != '\0' && *rest != '\r')
		return rules_line(p, rest, error_r);
	return 0;
}

static int
rules_action(struct rules_parser *p, const char *line, const char **error_r)
{
	struct rules_node *n = p->recipe;
	size_t len, nl = rules_name_len(line);
	const char *s;

	if (line[0] == '{' && (line[1] == '\0' || line[1] == ' ' ||
	    line[1] == '\t' || line[1] == '\r'))
		return rules_open_block(p, n, line + 1, error_r);
	p->state = RULES_PS_TOP;
	p->recipe = NULL;
	s = rules_skip_blanks(line + nl);
	if (nl > 0 && s[0] == '=' && rules_skip_blanks(s + 1)[0] == '|') {
		n->capture = xstrndup(line, nl);
		line = rules_skip_blanks(s + 1);
	}
	if (line[0] == '|') {
		n->action = RULES_A_PIPE;
		/* Comments are the shell's business on a command line. */
		n->arg = rules_strdup_trim(rules_skip_blanks(line + 1),
		    strlen(rules_skip_blanks(line + 1)));
		/* A bare "|" writes the message to standard output. */
		if (n->arg[0] == '\0' && n->capture != NULL) {
			*error_r = rules_parse_error(p, p->logical_line,
			    "VAR=| without a command");
			return -1;
		}
		return 0;
	}
	if (n->capture != NULL) {
		*error_r = rules_parse_error(p, p->logical_line,
		    "VAR= on an action needs \"|\"");
		return -1;
	}
	if (line[0] == '!') {
		n->action = RULES_A_FORWARD;
		s = rules_skip_blanks(line + 1);
	} else {
		n->action = RULES_A_FOLDER;
		s = line;
	}
	len = rules_uncommented_len(s);
	n->arg = rules_strdup_trim(s, len);
	if (n->arg[0] == '\0') {
		*error_r = rules_parse_error(p, p->logical_line,
		    n->action == RULES_A_FORWARD ? "\"!\" without an address" :
		    "recipe without an action");
		return -1;
	}
	return 0;
}

/* --- logical lines --------------------------------------------------- */

static int
rules_close_block(struct rules_parser *p, const char *line,
    const char **error_r)
{
	const char *rest = rules_skip_blanks(line + 1);

	if (p->depth == 0) {
		*error_r = rules_parse_error(p, p->logical_line,
		    "\"}\" without a block");
		return -1;
	}
	p->depth--;
	if (*rest != '\0' && *rest != '#' && *rest != '\r')
		return rules_line(p, rest, error_r);
	return 0;
}

static int
rules_line(struct rules_parser *p, const char *line, const char **error_r)
{
	line = rules_skip_blanks(line);
	if (line[0] == '\0' || line[0] == '\r' || line[0] == '#')
		return 0;
	if (p->state == RULES_PS_CONDS) {
		if (line[0] == '*')
			return rules_add_cond(p, line + 1, error_r);
		return rules_action(p, line, error_r);
	}
	if (line[0] == ':')
		return rules_start_recipe(p, line, error_r);
	if (line[0] == '}')
		return rules_close_block(p, line, error_r);
	return rules_assignment(p, line, error_r);
}

/* A physical line is complete (without its "\n"): join or process. */
static int
rules_phys_line(struct rules_parser *p, const char **error_r)
{
	const char *s;
	size_t len = p->phys.len;
	bool cont;

	if (memchr(p->phys.data != NULL ? (const void *)p->phys.data : "",
	    '\0', len) != NULL) {
		*error_r = rules_parse_error(p, p->lineno, "NUL byte");
		return -1;
	}
	s = buf_cstr(&p->phys);
	cont = len > 0 && s[len - 1] == '\\';
	if (cont)
		len--;
	if (!p->joining) {
		const char *t = rules_skip_blanks(s);

		p->logical_line = p->lineno;
		p->logical_is_cond = p->state == RULES_PS_CONDS && t[0] == '*';
		buf_truncate(&p->logical, 0);
	} else if (p->logical_is_cond) {
		const char *t = rules_skip_blanks(s);

		len -= (size_t)(t - s);
		s = t;
	}
	if (buf_append(&p->logical, s, len) < 0) {
		*error_r = rules_parse_error(p, p->logical_line,
		    "line longer than %zu bytes", p->lim.line_max);
		return -1;
	}
	buf_truncate(&p->phys, 0);
	p->joining = cont;
	if (cont)
		return 0;
	if (p->state == RULES_PS_TOP &&
	    rules_is_assignment(buf_cstr(&p->logical)) &&
	    rules_open_quote(buf_cstr(&p->logical))) {
		/* VAR="two
		 * lines": the newline is part of the value. */
		if (buf_append_byte(&p->logical, '\n') < 0) {
			*error_r = rules_parse_error(p, p->logical_line,
			    "line longer than %zu bytes", p->lim.line_max);
			return -1;
		}
		p->joining = true;
		return 0;
	}
	return rules_line(p, buf_cstr(&p->logical), error_r);
}

int
rules_parser_feed(struct rules_parser *p, const void *data, size_t len,
    const char **error_r)
{
	const unsigned char *d = data;
	size_t i;

	if (p->state == RULES_PS_FAILED) {
		*error_r = rules_parse_error(p, p->lineno, "parser failed");
		return -1;
	}
	if (len > p->lim.file_max - p->total) {
		*error_r = rules_parse_error(p, p->lineno + 1,
		    "file larger than %zu bytes", p->lim.file_max);
		return -1;
	}
	p->total += len;
	for (i = 0; i < len; i++) {
		const unsigned char *nl = memchr(d + i, '\n', len - i);
		size_t end = nl != NULL ? (size_t)(nl - d) : len;

		if (buf_append(&p->phys, d + i, end - i) < 0) {
			*error_r = rules_parse_error(p, p->lineno + 1,
			    "line longer than %zu bytes", p->lim.line_max);
			return -1;
		}
		i = end;
		if (nl == NULL)
			break;
		p->lineno++;
		if (rules_phys_line(p, error_r) < 0)
			return -1;
	}
	return 0;
}

int
rules_parser_finish(struct rules_parser *p, struct rules **r_r,
    const char **error_r)
{
	if (p->state == RULES_PS_FAILED) {
		*error_r = rules_parse_error(p, p->lineno, "parser failed");
		return -1;
	}
	if (p->phys.len > 0) {
		/* A last line without its "\n". */
		p->lineno++;
		if (rules_phys_line(p, error_r) < 0)
			return -1;
	}
	if (p->joining) {
		/* The file ended in a "\" or inside a quote. */
		p->joining = false;
		if (rules_line(p, buf_cstr(&p->logical), error_r) < 0)
			return -1;
	}
	if (p->state == RULES_PS_CONDS) {
		*error_r = rules_parse_error(p, p->recipe->line,
		    "recipe without an action line");
		return -1;
	}
	if (p->depth > 0) {
		*error_r = rules_parse_error(p, p->stack[p->depth]->line,
		    "block without its \"}\"");
		return -1;
	}
	*r_r = p->r;
	p->r = NULL;
	return 0;
}

int
rules_parse_buffer(const char *name, const void *text, size_t len,
    const struct rules_limits *lim, struct rules **r_r, const char **error_r)
{
	struct rules_parser *p = rules_parser_new(name, lim);
	int ret;

	ret = rules_parser_feed(p, text, len, error_r);
	if (ret == 0)
		ret = rules_parser_finish(p, r_r, error_r);
	rules_parser_free(&p);
	return ret;
}

int
rules_parse_file(const char *path, const struct rules_limits *lim,
    struct rules **r_r, const char **error_r)
{
	struct rules_parser *p;
	struct stat st;
	char chunk[8192];
	ssize_t n;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(rules_parse_errbuf, sizeof(rules_parse_errbuf),
		    "%s: %s", path, strerror(errno));
		*error_r = rules_parse_errbuf;
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(rules_parse_errbuf, sizeof(rules_parse_errbuf),
		    "%s: not a regular file", path);
		*error_r = rules_parse_errbuf;
		close(fd);
		return -1;
	}
	p = rules_parser_new(path, lim);
	while (ret == 0 && (n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			snprintf(rules_parse_errbuf, sizeof(rules_parse_errbuf),
			    "%s: %s", path, strerror(errno));
			*error_r = rules_parse_errbuf;
			ret = -1;
			break;
		}
		ret = rules_parser_feed(p, chunk, (size_t)n, error_r);
	}
	close(fd);
	if (ret == 0)
		ret = rules_parser_finish(p, r_r, error_r);
	rules_parser_free(&p);
	return ret < 0 ? -1 : 1;
}

/* --- dump, for tests ------------------------------------------------- */

static void
rules_dump_flags(unsigned flags, struct buf *out)
{
	static const char letters[] = "HBhbcfwWiDAaEer";
	unsigned bit;
	size_t i;

	for (i = 0; letters[i] != '\0'; i++)
		if (rules_flag_bit(letters[i], &bit) == 0 && (flags & bit))
			buf_append_byte(out, (unsigned char)letters[i]);
}

static void
rules_dump_cond(const struct rules_cond *c, unsigned indent, struct buf *out)
{
	static const char *const kinds[] = { "re", "lt", "gt", "prog", "var",
	    "expand" };

	buf_printf(out, "%u: %*scond %s%s", c->line, (int)indent, "",
	    c->negate ? "!" : "", kinds[c->kind]);
	if (c->weighted)
		buf_printf(out, " w=%g^%g", c->weight, c->exponent);
	if (c->var != NULL)
		buf_printf(out, " var=%s", c->var);
	buf_printf(out, " %s\n", c->text);
}

static void
rules_dump_block(const struct rules_block *b, unsigned indent,
    struct buf *out)
{
	static const char *const acts[] = { "folder", "forward", "pipe",
	    "block" };
	size_t i, j;

	for (i = 0; i < b->count; i++) {
		const struct rules_node *n = &b->nodes[i];

		if (!n->is_recipe) {
			buf_printf(out, "%u: %*sassign %s%s%s\n", n->line,
			    (int)indent, "", n->name, n->value != NULL ? "=" :
			    " (unset)", n->value != NULL ? n->value : "");
			continue;
		}
		buf_printf(out, "%u: %*srecipe flags=", n->line, (int)indent,
		    "");
		rules_dump_flags(n->flags, out);
		buf_printf(out, " lock=%s\n", !n->has_lock ? "-" :
		    n->lockfile != NULL ? n->lockfile : "(auto)");
		for (j = 0; j < n->nconds; j++)
			rules_dump_cond(&n->conds[j], indent + 1, out);
		buf_printf(out, "%u: %*saction %s%s%s", n->line, (int)indent + 1,
		    "", acts[n->action], n->capture != NULL ? " capture=" : "",
		    n->capture != NULL ? n->capture : "");
		if (n->action != RULES_A_BLOCK) {
			buf_printf(out, " %s\n", n->arg);
			continue;
		}
		buf_printf(out, " {\n");
		rules_dump_block(n->block, indent + 2, out);
		buf_printf(out, "%*s}\n", (int)indent + 1, "");
	}
}

void
rules_dump(const struct rules *r, struct buf *out)
{
	rules_dump_block(&r->top, 0, out);
}
