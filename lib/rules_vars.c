/*
 * rules_vars.c: the variables of a rules evaluation and their expansion
 * as procmail does it (sh(1) rules: '...', "...", `...`, \, $NAME,
 * ${NAME}, ${NAME:-w} ${NAME-w} ${NAME:+w} ${NAME+w}, $$, $_, $-, $=, $?,
 * $#, $1..$9, $\NAME).
 *
 * SECURITY: the text comes from the user's rule file and the values may
 * come from the message (MATCH, backquoted commands): every result is
 * bounded (RULES_VALUE_MAX, RULES_VARS_MAX), nothing is evaluated twice,
 * and values never become syntax (expansion is one pass).
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "compat/compat.h"
#include "log.h"
#include "rules_state.h"
#include "xmalloc.h"

static char rules_vars_errbuf[256];

const char *
rules_var_get(const struct rules_state *s, const char *name)
{
	size_t i;

	for (i = 0; i < s->nvars; i++)
		if (strcmp(s->vars[i].name, name) == 0)
			return s->vars[i].value;
	return NULL;
}

int
rules_var_set(struct rules_state *s, const char *name, const char *value)
{
	size_t i;

	for (i = 0; i < s->nvars; i++) {
		if (strcmp(s->vars[i].name, name) == 0) {
			free(s->vars[i].value);
			s->vars[i].value = xstrdup(value);
			return 0;
		}
	}
	if (s->nvars >= RULES_VARS_MAX)
		return -1;
	s->vars = xreallocarray(s->vars, s->nvars + 1, sizeof(*s->vars));
	s->vars[s->nvars].name = xstrdup(name);
	s->vars[s->nvars].value = xstrdup(value);
	s->nvars++;
	return 0;
}

void
rules_var_unset(struct rules_state *s, const char *name)
{
	size_t i;

	for (i = 0; i < s->nvars; i++) {
		if (strcmp(s->vars[i].name, name) == 0) {
			free(s->vars[i].name);
			free(s->vars[i].value);
			s->vars[i] = s->vars[--s->nvars];
			return;
		}
	}
}

char **
rules_var_envp(const struct rules_state *s)
{
	char **envp = xcalloc(s->nvars + 1, sizeof(*envp));
	size_t i;

	for (i = 0; i < s->nvars; i++)
		envp[i] = xasprintf("%s=%s", s->vars[i].name,
		    s->vars[i].value);
	return envp;
}

void
rules_var_envp_free(char **envp)
{
	size_t i;

	if (envp == NULL)
		return;
	for (i = 0; envp[i] != NULL; i++)
		free(envp[i]);
	free(envp);
}

void
rules_log(struct rules_state *s, bool error, const char *fmt, ...)
{
	const struct rules_frame *f = s->nframes > 0 ?
	    &s->frames[s->nframes - 1] : NULL;
	char text[1024], line[1200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (error && f != NULL)
		snprintf(line, sizeof(line), "%s:%u: %s", f->file, s->line, text);
	else
		snprintf(line, sizeof(line), "%s", text);
	if (s->logfd >= 0)
		dprintf(s->logfd, "loft-deliver: %s\n", line);
	if (error && s->sh->res->error[0] == '\0')
		strlcpy(s->sh->res->error, line, sizeof(s->sh->res->error));
	if (!error && !s->verbose)
		return;
	if (s->sh->cb->log != NULL)
		s->sh->cb->log(s->sh->ctx, error, line);
	else if (error)
		log_warning("rules: %s", line);
	else
		log_info("rules: %s", line);
}

int
rules_run_shell(struct rules_state *s, const char *cmd,
    const unsigned char *in, size_t in_len, struct buf *out, int out_fd,
    struct rules_cmd_result *res, const char **error_r)
{
	struct rules_cmd c;
	char **envp = rules_var_envp(s);
	int ret;

	memset(&c, 0, sizeof(c));
	c.shell = rules_var_get(s, "SHELL");
	c.shell_cmd = cmd;
	c.envp = envp;
	c.cwd = s->cwd;
	c.in = in;
	c.in_len = in_len;
	c.out = out;
	c.output_fd = out_fd;
	c.stderr_fd = s->logfd;
	c.timeout = s->sh->env->command_timeout;
	c.umask = s->umask;
	ret = rules_cmd_run(&c, res, error_r);
	rules_var_envp_free(envp);
	if (ret == 0)
		s->last_exit = res->status;
	return ret;
}

/* --- expansion --------------------------------------------------- */

struct rules_exp_ctx {
	struct rules_state *s;
	enum rules_exp mode;
	struct buf *out;
	size_t nwords;
	bool in_word;		/* WORDS: a word has started */
	const char *error;
};

static int
rules_exp_put(struct rules_exp_ctx *x, const char *p, size_t len)
{
	if (len == 0)
		return 0;
	x->in_word = true;
	if (buf_append(x->out, p, len) < 0) {
		x->error = "expansion longer than its limit";
		return -1;
	}
	return 0;
}

static int
rules_exp_end_word(struct rules_exp_ctx *x)
{
	if (x->mode != RULES_EXP_WORDS || !x->in_word)
		return 0;
	x->in_word = false;
	x->nwords++;
	if (buf_append_byte(x->out, '\0') < 0) {
		x->error = "expansion longer than its limit";
		return -1;
	}
	return 0;
}

/* A value: split on blanks when unquoted in WORDS mode. */
static int
rules_exp_value(struct rules_exp_ctx *x, const char *v, bool quoted)
{
	if (x->mode != RULES_EXP_WORDS || quoted)
		return rules_exp_put(x, v, strlen(v));
	for (; *v != '\0'; v++) {
		if (*v == ' ' || *v == '\t' || *v == '\n') {
			if (rules_exp_end_word(x) < 0)
				return -1;
		} else if (rules_exp_put(x, v, 1) < 0)
			return -1;
	}
	return 0;
}

static size_t
rules_exp_name_len(const char *s)
{
	size_t n = 0;

	if (!(s[0] == '_' || (s[0] >= 'A' && s[0] <= 'Z') ||
	    (s[0] >= 'a' && s[0] <= 'z')))
		return 0;
	while (s[n] == '_' || (s[n] >= 'A' && s[n] <= 'Z') ||
	    (s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9'))
		n++;
	return n;
}

/* $@: the arguments left after SHIFT, separated by blanks (into tmp,
 * cut at its size). */
static const char *
rules_exp_args(struct rules_exp_ctx *x, char *tmp, size_t size)
{
	const struct rules_env *env = x->s->sh->env;
	size_t i;

	tmp[0] = '\0';
	for (i = x->s->shift; i < env->nargs; i++) {
		if (i > x->s->shift)
			strlcat(tmp, " ", size);
		strlcat(tmp, env->args[i], size);
	}
	return tmp;
}

/* The special one-character variables; NULL if c is none. */
static const char *
rules_exp_special(struct rules_exp_ctx *x, char c, char *tmp, size_t size)
{
	struct rules_state *s = x->s;
	const char *v;

	switch (c) {
	case '$':
		snprintf(tmp, size, "%ld", (long)getpid());
		return tmp;
	case '_':
		return s->nframes > 0 ? s->frames[s->nframes - 1].file : "";
	case '-':
		v = rules_var_get(s, "LASTFOLDER");
		return v != NULL ? v : "";
	case '=':
		snprintf(tmp, size, "%ld", (long)s->score);
		return tmp;
	case '?':
		snprintf(tmp, size, "%d", s->last_exit);
		return tmp;
	case '#':
		snprintf(tmp, size, "%zu", s->sh->env->nargs - s->shift);
		return tmp;
	case '@':
		return rules_exp_args(x, tmp, size);
	case '1': case '2': case '3': case '4': case '5':
	case '6': case '7': case '8': case '9':
		return s->shift + (size_t)(c - '1') < s->sh->env->nargs ?
		    s->sh->env->args[s->shift + (size_t)(c - '1')] : "";
	}
	return NULL;
}

static int rules_exp_run(struct rules_exp_ctx *x, const char *in,
    size_t len, bool dq);

/* ${NAME...}: p after "${"; *used_r: bytes used after "${". */
static int
rules_exp_braced(struct rules_exp_ctx *x, const char *p, bool dq,
    size_t *used_r)
{
	size_t n = rules_exp_name_len(p), depth = 1, i;
	const char *v, *op;
	bool colon = false, set;

	if (n == 0) {
		x->error = "bad ${...} expansion";
		return -1;
	}
	for (i = n; p[i] != '\0'; i++) {
		if (p[i] == '{')
			depth++;
		else if (p[i] == '}' && --depth == 0)
			break;
	}
	if (p[i] != '}') {
		x->error = "unterminated ${";
		return -1;
	}
	*used_r = i + 1;
	{
		char name[256];

		if (n >= sizeof(name)) {
			x->error = "variable name too long";
			return -1;
		}
		memcpy(name, p, n);
		name[n] = '\0';
		v = rules_var_get(x->s, name);
	}
	op = p + n;
	if (*op == ':') {
		colon = true;
		op++;
	}
	if (op == p + i)
		return v != NULL ? rules_exp_value(x, v, dq) : 0;
	set = v != NULL && (!colon || v[0] != '\0');
	if (*op == '-')
		return set ? rules_exp_value(x, v, dq) :
		    rules_exp_run(x, op + 1, (size_t)(p + i - op - 1), dq);
	if (*op == '+')
		return set ? rules_exp_run(x, op + 1,
		    (size_t)(p + i - op - 1), dq) : 0;
	x->error = "bad ${...} operator";
	return -1;
}

static int
rules_exp_regex_quoted(struct rules_exp_ctx *x, const char *v)
{
	for (; *v != '\0'; v++) {
		if (strchr("\\^$.[]|()*+?{}/", *v) != NULL &&
		    rules_exp_put(x, "\\", 1) < 0)
			return -1;
		if (rules_exp_put(x, v, 1) < 0)
			return -1;
	}
	return 0;
}

/* "$..." at p (p[0] == '$'); *used_r: bytes consumed. */
static int
rules_exp_dollar(struct rules_exp_ctx *x, const char *p, bool dq,
    size_t *used_r)
{
	char tmp[RULES_LINE_MAX], name[256];
	const char *v;
	size_t n = 0;

	if (p[1] == '{') {
		int ret = rules_exp_braced(x, p + 2, dq, &n);

		*used_r = n + 2;
		return ret;
	}
	if (p[1] == '\\' && (n = rules_exp_name_len(p + 2)) > 0 &&
	    n < sizeof(name)) {
		memcpy(name, p + 2, n);
		name[n] = '\0';
		*used_r = n + 2;
		v = rules_var_get(x->s, name);
		return v != NULL ? rules_exp_regex_quoted(x, v) : 0;
	}
	n = rules_exp_name_len(p + 1);
	if (n > 0 && n < sizeof(name)) {
		memcpy(name, p + 1, n);
		name[n] = '\0';
		*used_r = n + 1;
		v = rules_var_get(x->s, name);
		return v != NULL ? rules_exp_value(x, v, dq) : 0;
	}
	if (p[1] != '\0' && (v = rules_exp_special(x, p[1], tmp,
	    sizeof(tmp))) != NULL) {
		*used_r = 2;
		return rules_exp_value(x, v, dq);
	}
	*used_r = 1;
	return rules_exp_put(x, "$", 1);
}

/* `cmd`: at p (p[0] == '`'). */
static int
rules_exp_backquote(struct rules_exp_ctx *x, const char *p, size_t len,
    bool dq, size_t *used_r)
{
	struct rules_state *s = x->s;
	struct rules_cmd_result res;
	struct buf cmd, out;
	const char *err;
	size_t i;
	int ret = -1;

	buf_init(&cmd, RULES_LINE_MAX);
	for (i = 1; i < len && p[i] != '`'; i++) {
		if (p[i] == '\\' && i + 1 < len && (p[i + 1] == '`' ||
		    p[i + 1] == '\\' || p[i + 1] == '$'))
			i++;
		if (buf_append_byte(&cmd, (unsigned char)p[i]) < 0) {
			x->error = "backquoted command too long";
			buf_free(&cmd);
			return -1;
		}
	}
	if (i == len) {
		x->error = "unterminated backquote";
		buf_free(&cmd);
		return -1;
	}
	*used_r = i + 1;
	buf_init(&out, RULES_CAPTURE_MAX);
	if (rules_run_shell(s, buf_cstr(&cmd), s->msg.data, s->msg.len, &out,
	    -1, &res, &err) < 0) {
		x->error = err;
		goto done;
	}
	while (out.len > 0 && out.data[out.len - 1] == '\n')
		buf_truncate(&out, out.len - 1);
	ret = rules_exp_value(x, buf_cstr(&out), dq);
done:
	buf_free(&cmd);
	buf_free(&out);
	return ret;
}

static int
rules_exp_run(struct rules_exp_ctx *x, const char *in, size_t len, bool dq)
{
	size_t i = 0, n;

	while (i < len) {
		char c = in[i];

		if (c == '$') {
			if (rules_exp_dollar(x, in + i, dq, &n) < 0)
				return -1;
			i += n;
		} else if (c == '`') {
			if (rules_exp_backquote(x, in + i, len - i, dq, &n) < 0)
				return -1;
			i += n;
		} else if (c == '\\' && i + 1 < len) {
			/* Inside "...", only \$ \` \" \\ lose the backslash. */
			if (dq && strchr("$`\"\\", in[i + 1]) == NULL &&
			    rules_exp_put(x, "\\", 1) < 0)
				return -1;
			if (rules_exp_put(x, in + i + 1, 1) < 0)
				return -1;
			i += 2;
		} else if (x->mode == RULES_EXP_COND || (dq && c != '"')) {
			if (rules_exp_put(x, in + i++, 1) < 0)
				return -1;
		} else if (c == '"') {
			x->in_word = true;
			dq = !dq;
			i++;
		} else if (c == '\'') {
			const char *end = memchr(in + i + 1, '\'', len - i - 1);

			if (end == NULL) {
				x->error = "unterminated quote";
				return -1;
			}
			x->in_word = true;
			if (rules_exp_put(x, in + i + 1,
			    (size_t)(end - in - i - 1)) < 0)
				return -1;
			i = (size_t)(end - in) + 1;
		} else if (x->mode == RULES_EXP_WORDS &&
		    (c == ' ' || c == '\t' || c == '\n')) {
			if (rules_exp_end_word(x) < 0)
				return -1;
			i++;
		} else if (rules_exp_put(x, in + i++, 1) < 0)
			return -1;
	}
	return 0;
}

int
rules_expand(struct rules_state *s, const char *in, enum rules_exp mode,
    struct buf *out, size_t *nwords_r, const char **error_r)
{
	struct rules_exp_ctx x;

	memset(&x, 0, sizeof(x));
	x.s = s;
	x.mode = mode;
	x.out = out;
	if (rules_exp_run(&x, in, strlen(in), false) < 0 ||
	    rules_exp_end_word(&x) < 0) {
		snprintf(rules_vars_errbuf, sizeof(rules_vars_errbuf), "%s",
		    x.error != NULL ? x.error : "expansion failed");
		*error_r = rules_vars_errbuf;
		return -1;
	}
	if (nwords_r != NULL)
		*nwords_r = x.nwords;
	return 0;
}
