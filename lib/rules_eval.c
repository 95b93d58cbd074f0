/*
 * rules_eval.c: evaluate a rule tree against one message, as procmail
 * would: the message gets procmail's From_ line on top (what conditions,
 * filters and pipes see), the header is searched with continuation lines
 * joined, case-insensitively unless D, ^ and $ per line; recipes chain
 * with A a E e, weigh their conditions (procmailsc(5)), filter (f),
 * copy (c), clone for a "c {" block; falling off the end delivers to
 * $DEFAULT. Deliveries go to the caller's callbacks (rules.h).
 *
 * An explicit stack of frames (one per block, one more per included
 * file) is walked, so that a `c` block can clone the whole evaluation:
 * the clone runs the block and everything after it, the parent skips the
 * block (procmailrc(5), flag c).
 *
 * SECURITY: the rules are the user's and run as the user; the message is
 * untrusted: it is only matched (PCRE2, compiled from the user's text),
 * fed to the user's own commands, and handed to the callbacks.
 */
#include "config.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <fcntl.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "rules_state.h"
#include "xmalloc.h"

/* A regex searching at least this many bytes is JIT-compiled: below it,
 * compiling (some 60,000 instructions a regex) costs more than matching
 * saves; header searches never come near it (bench/rules.sh). */
#define RULES_JIT_MIN		(256 * 1024)

static const char *const rules_default_path =
    "/usr/local/bin:/usr/bin:/bin";

/* --- compiled regexes, owned by the tree ---------------------------- */

void rules_eval_free_codes(struct rules_block *b);

void
rules_eval_free_codes(struct rules_block *b)
{
	size_t i, j;

	for (i = 0; i < b->count; i++) {
		struct rules_node *n = &b->nodes[i];

		for (j = 0; j < n->nconds; j++) {
			pcre2_code_free(n->conds[j].code);
			n->conds[j].code = NULL;
		}
		if (n->block != NULL)
			rules_eval_free_codes(n->block);
	}
}

/* --- the message ---------------------------------------------------- */

void
rules_msg_layout(struct rules_state *s)
{
	const unsigned char *d = s->msg.data;
	size_t len = s->msg.len, i;

	s->from_len = 0;
	if (len >= 5 && memcmp(d, "From ", 5) == 0) {
		const unsigned char *nl = memchr(d, '\n', len);

		s->from_len = nl != NULL ? (size_t)(nl - d) + 1 : len;
	}
	s->header_end = len;
	s->body_off = len;
	/* The header ends at the first empty line ("\n" or "\r\n"). */
	for (i = s->from_len; i < len;) {
		const unsigned char *nl = memchr(d + i, '\n', len - i);
		size_t end = nl != NULL ? (size_t)(nl - d) + 1 : len;

		if (d[i] == '\n' || (d[i] == '\r' && end == i + 2)) {
			s->header_end = i;
			s->body_off = end;
			break;
		}
		i = end;
	}
	s->harea_valid = false;
}

/* procmail makes the message end in an empty line (unless r), and so
 * does what it searches, feeds and counts; a Maildir file gets the
 * message without those added newlines. */
void
rules_msg_end(struct rules_state *s)
{
	s->added_nl = 0;
	while (s->msg.len < 2 || s->msg.data[s->msg.len - 1] != '\n' ||
	    s->msg.data[s->msg.len - 2] != '\n') {
		if (buf_append_byte(&s->msg, '\n') < 0)
			break;
		s->added_nl++;
	}
}

/* procmail's From_ line: "From SENDER  Sun Nov 29 21:33:14 2026". */
static void
rules_msg_init(struct rules_state *s, const unsigned char *msg, size_t len)
{
	char date[64];
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm);
	buf_init(&s->msg, RULES_FILTER_MAX);
	buf_printf(&s->msg, "From %s  %s\n", s->sh->env->sender, date);
	buf_append(&s->msg, msg, len);
	buf_init(&s->harea, RULES_FILTER_MAX);
	rules_msg_end(s);
	rules_msg_layout(s);
}

/* The header searched: continuation lines joined (newline -> space). */
static void
rules_msg_harea(struct rules_state *s)
{
	size_t i;

	if (s->harea_valid)
		return;
	buf_truncate(&s->harea, 0);
	buf_append(&s->harea, s->msg.data, s->header_end);
	for (i = 0; i + 1 < s->harea.len; i++) {
		unsigned char *nl = memchr(s->harea.data + i, '\n',
		    s->harea.len - i - 1);

		if (nl == NULL)
			break;
		i = (size_t)(nl - s->harea.data);
		if (nl[1] == ' ' || nl[1] == '\t')
			*nl = ' ';
	}
	s->harea_valid = true;
}

/* The search area for H/B; *tmp holds it when it has to be built. */
static void
rules_msg_area(struct rules_state *s, bool h, bool b, struct buf *tmp,
    const unsigned char **p_r, size_t *len_r)
{
	if (!h && !b)
		h = true;
	if (h)
		rules_msg_harea(s);
	if (h && !b) {
		*p_r = s->harea.data != NULL ? s->harea.data :
		    (const unsigned char *)"";
		*len_r = s->harea.len;
	} else if (!h) {
		*p_r = s->msg.data + s->body_off;
		*len_r = s->msg.len - s->body_off;
	} else {
		buf_init(tmp, RULES_FILTER_MAX * 2);
		buf_append(tmp, s->harea.data, s->harea.len);
		buf_append(tmp, s->msg.data + s->header_end,
		    s->msg.len - s->header_end);
		*p_r = tmp->data;
		*len_r = tmp->len;
	}
}

/*
 * What h and b feed, shaped as procmail writes it for each kind of
 * destination: pipes, filters, MH and plain directories get its From_
 * line and the message as held (ending in an empty line); a forward the
 * same without the From_ line; a Maildir file the message as it came
 * (without the newlines added); an mbox the message less one final
 * newline (the callback writes the From_ line and the separating empty
 * line).
 */
void
rules_msg_feed(const struct rules_state *s, unsigned flags,
    enum rules_feed how, const unsigned char **p_r, size_t *len_r)
{
	bool h = (flags & RULES_F_HEADER_FEED) != 0;
	bool b = (flags & RULES_F_BODY_FEED) != 0;
	size_t start = how == RULES_FEED_RAW ? 0 : s->from_len;
	size_t end = s->msg.len;

	if (!h && !b)
		h = b = true;
	if (how == RULES_FEED_MAILDIR && b)
		end -= s->added_nl;
	if (!b)
		end = s->body_off > start ? s->body_off : start;
	if (!h)
		start = s->body_off < end ? s->body_off : end;
	if (how == RULES_FEED_MBOX && end - start >= 2 &&
	    s->msg.data[end - 1] == '\n' && s->msg.data[end - 2] == '\n')
		end--;
	*p_r = s->msg.data + start;
	*len_r = end - start;
}

/* The length procmail compares "< N" with: all it holds. */
static size_t
rules_msg_size(const struct rules_state *s)
{
	return s->msg.len;
}

/* --- conditions ----------------------------------------------------- */

static pcre2_code *
rules_compile(struct rules_state *s, const char *re, unsigned flags,
    size_t area_len, bool *has_match_r)
{
	struct buf pat;
	pcre2_code *code;
	PCRE2_SIZE off;
	int err;
	uint32_t opts = PCRE2_MULTILINE;

	if (!(flags & RULES_F_CASE))
		opts |= PCRE2_CASELESS;
	buf_init(&pat, RULES_VALUE_MAX);
	if (rules_regex_translate(re, &pat, has_match_r) < 0) {
		rules_log(s, true, "regex too long");
		buf_free(&pat);
		return NULL;
	}
	code = pcre2_compile((PCRE2_SPTR)buf_cstr(&pat), pat.len, opts, &err,
	    &off, NULL);
	if (code == NULL) {
		PCRE2_UCHAR msg[256];

		pcre2_get_error_message(err, msg, sizeof(msg));
		rules_log(s, true, "bad regular expression \"%s\": %s", re,
		    (const char *)msg);
	} else if (area_len >= RULES_JIT_MIN)
		(void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
	buf_free(&pat);
	return code;
}

/* Count matches of code in area (at most one unless count). */
static unsigned long
rules_match(struct rules_state *s, pcre2_code *code, bool has_match,
    const unsigned char *area, size_t len, bool count)
{
	pcre2_match_data *md = s->sh->match_data;
	PCRE2_SIZE start = 0, *ov;
	unsigned long n = 0;
	int rc;

	while (start <= len) {
		rc = pcre2_match(code, area, len, start, 0, md, NULL);
		if (rc < 0)
			break;
		ov = pcre2_get_ovector_pointer(md);
		if (n++ == 0 && has_match && rc >= 2 &&
		    ov[2] != PCRE2_UNSET) {
			char *m = xstrndup((const char *)area + ov[2],
			    ov[3] - ov[2]);

			rules_var_set(s, "MATCH", m);
			if (s->verbose)
				rules_log(s, false, "Matched \"%s\"", m);
			free(m);
		}
		if (!count)
			break;
		start = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
	}
	return n;
}

static double
rules_score_matches(const struct rules_cond *c, unsigned long n)
{
	double sum = 0, term = c->weight;
	unsigned long k;

	for (k = 0; k < n && k < 100000; k++) {
		sum += term;
		term *= c->exponent;
		if (term == 0)
			break;
	}
	return sum;
}

struct rules_verdict {
	bool ok;		/* unweighted: it holds */
	double add;		/* weighted: what it adds */
};

static unsigned char
rules_ascii_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c | 0x20) : c;
}

/* Does area hold lit (ASCII case folded unless exact, as PCRE2_CASELESS
 * folds with its default tables)? */
static bool
rules_area_has(const unsigned char *area, size_t len, const char *lit,
    size_t lit_len, bool exact)
{
	const unsigned char *l = (const unsigned char *)lit, *end, *lo, *up;
	unsigned char first = rules_ascii_lower(l[0]);
	size_t i, k;

	if (exact)
		return memmem(area, len, lit, lit_len) != NULL;
	if (lit_len > len)
		return false;
	/* Candidates are found with memchr, for each case of the first
	 * byte; each search is redone only when its hit was used. */
	end = area + len - lit_len + 1;
	lo = memchr(area, first, (size_t)(end - area));
	up = first >= 'a' && first <= 'z' ?
	    memchr(area, first & ~0x20, (size_t)(end - area)) : NULL;
	while (lo != NULL || up != NULL) {
		const unsigned char *p = lo == NULL ? up : up == NULL ? lo :
		    lo < up ? lo : up;

		i = (size_t)(p - area);
		for (k = 1; k < lit_len; k++)
			if (rules_ascii_lower(area[i + k]) !=
			    rules_ascii_lower(l[k]))
				break;
		if (k == lit_len)
			return true;
		if (p == lo)
			lo = memchr(p + 1, first, (size_t)(end - p - 1));
		else
			up = memchr(p + 1, first & ~0x20,
			    (size_t)(end - p - 1));
	}
	return false;
}

/* Can c match area at all? A regex whose required literal (rules_regex.c)
 * is not there cannot: it is then neither compiled nor run, which for a
 * rule file of header tests that miss saves most of the engine's work. */
static bool
rules_cond_possible(struct rules_cond *c, unsigned flags,
    const unsigned char *area, size_t len)
{
	if (!c->lit_known) {
		struct buf lit;

		buf_init(&lit, RULES_VALUE_MAX);
		if (rules_regex_literal(c->text, &lit) == 0 && lit.len > 0) {
			c->lit_len = lit.len;
			c->lit = xmalloc(lit.len);
			memcpy(c->lit, lit.data, lit.len);
		}
		buf_free(&lit);
		c->lit_known = true;
	}
	return c->lit == NULL || rules_area_has(area, len, c->lit, c->lit_len,
	    (flags & RULES_F_CASE) != 0);
}

static void
rules_cond_regex(struct rules_state *s, struct rules_cond *c,
    const struct rules_cond *w, unsigned flags, bool cache,
    const unsigned char *area, size_t len, struct rules_verdict *v)
{
	pcre2_code *code = c->code;
	unsigned long n;

	if (!c->bad && !rules_cond_possible(c, flags, area, len)) {
		n = c->negate ? 1 : 0;
		v->ok = n > 0;
		v->add = rules_score_matches(w, n);
		return;
	}
	if (code == NULL && !c->bad) {
		code = rules_compile(s, c->text, flags, len, &c->has_match);
		c->bad = code == NULL;
		if (cache)
			c->code = code;
	}
	if (code == NULL) {
		v->ok = false;
		return;
	}
	n = rules_match(s, code, c->has_match, area, len,
	    w->weighted && !c->negate);
	if (!cache)
		pcre2_code_free(code);
	if (c->negate)
		n = n == 0 ? 1 : 0;
	v->ok = n > 0;
	v->add = rules_score_matches(w, n);
}

/* b^e for b > 0 without libm (loft links no libm): exact for whole e,
 * series for the fraction (procmailsc(5) length weights). */
static double
rules_pow(double b, double e)
{
	double r = 1, y, y2, ln = 0, term, ex = 1;
	long whole = (long)e, k;
	bool neg = whole < 0;

	if (b <= 0 || e > 1e6 || e < -1e6)
		return 0;
	for (k = neg ? -whole : whole; k > 0; k--)
		r *= b;
	if (neg)
		r = 1 / r;
	e -= (double)whole;
	if (e == 0)
		return r;
	/* ln b = 2 atanh((b - 1) / (b + 1)) */
	y = (b - 1) / (b + 1);
	y2 = y * y;
	term = y;
	for (k = 1; k < 200; k += 2) {
		ln += term / (double)k;
		term *= y2;
	}
	ln *= 2 * e;
	term = 1;
	for (k = 1; k < 60; k++) {
		term *= ln / (double)k;
		ex += term;
	}
	return r * ex;
}

static void
rules_cond_size(const struct rules_state *s, const struct rules_cond *c,
    const struct rules_cond *w, struct rules_verdict *v)
{
	double m = (double)rules_msg_size(s), l = (double)c->size;
	bool holds = c->kind == RULES_C_SIZE_LT ? m < l : m > l;

	v->ok = holds != c->negate;
	if (w->weighted) {
		double ratio = c->kind == RULES_C_SIZE_LT ?
		    (m > 0 ? l / m : 0) : (l > 0 ? m / l : 0);

		v->add = w->weight * rules_pow(ratio, w->exponent);
	}
}

/* "* ? cmd" gets what the recipe searches (H, B), From_ line included. */
static void
rules_cond_program(struct rules_state *s, const struct rules_cond *c,
    const struct rules_cond *w, unsigned flags, struct rules_verdict *v)
{
	struct rules_cmd_result res;
	const unsigned char *p;
	const char *err;
	unsigned feed = 0;
	size_t len;

	if (flags & RULES_F_HEADER_GREP)
		feed |= RULES_F_HEADER_FEED;
	if (flags & RULES_F_BODY_GREP)
		feed |= RULES_F_BODY_FEED;
	if (feed == 0)
		feed = RULES_F_HEADER_FEED;
	rules_msg_feed(s, feed, RULES_FEED_RAW, &p, &len);
	if (rules_run_shell(s, c->text, p, len, NULL, -1, &res, &err) < 0) {
		rules_log(s, true, "cannot run \"%s\": %s", c->text, err);
		v->ok = false;
		return;
	}
	v->ok = (res.status == 0) != c->negate;
	if (!w->weighted)
		return;
	if (c->negate)
		v->add = rules_score_matches(w, (unsigned long)res.status);
	else
		v->add = res.status == 0 ? w->weight : w->exponent;
}

static void rules_cond_eval(struct rules_state *s, struct rules_cond *c,
    const struct rules_cond *w, unsigned flags, bool cache,
    struct rules_verdict *v);

/* "* $ text": expanded in double-quote rules, then parsed again. */
static void
rules_cond_expand(struct rules_state *s, const struct rules_cond *c,
    unsigned flags, struct rules_verdict *v)
{
	struct rules_cond sub;
	struct buf out;
	const char *err;

	memset(&sub, 0, sizeof(sub));
	buf_init(&out, RULES_VALUE_MAX);
	v->ok = false;
	if (rules_expand(s, c->text, RULES_EXP_COND, &out, NULL, &err) < 0)
		rules_log(s, true, "condition: %s", err);
	else if (rules_cond_parse(buf_cstr(&out), false, &sub, &err) < 0)
		rules_log(s, true, "condition: %s", err);
	else {
		sub.negate = sub.negate != c->negate;
		sub.line = c->line;
		rules_cond_eval(s, &sub, c, flags, false, v);
	}
	rules_cond_clear(&sub);
	buf_free(&out);
}

static void
rules_cond_eval(struct rules_state *s, struct rules_cond *c,
    const struct rules_cond *w, unsigned flags, bool cache,
    struct rules_verdict *v)
{
	const unsigned char *area = (const unsigned char *)"";
	struct buf tmp;
	size_t len = 0;
	const char *val;

	memset(&tmp, 0, sizeof(tmp));
	v->ok = false;
	v->add = 0;
	switch (c->kind) {
	case RULES_C_EXPAND:
		rules_cond_expand(s, c, flags, v);
		return;
	case RULES_C_SIZE_LT:
	case RULES_C_SIZE_GT:
		rules_cond_size(s, c, w, v);
		return;
	case RULES_C_PROGRAM:
		rules_cond_program(s, c, w, flags, v);
		return;
	case RULES_C_VAR:
		if (strcmp(c->var, "H") == 0 || strcmp(c->var, "B") == 0 ||
		    strcmp(c->var, "HB") == 0 || strcmp(c->var, "BH") == 0) {
			rules_msg_area(s, strchr(c->var, 'H') != NULL,
			    strchr(c->var, 'B') != NULL, &tmp, &area, &len);
			break;
		}
		val = rules_var_get(s, c->var);
		area = (const unsigned char *)(val != NULL ? val : "");
		len = strlen((const char *)area);
		break;
	case RULES_C_REGEX:
		rules_msg_area(s, (flags & RULES_F_HEADER_GREP) != 0,
		    (flags & RULES_F_BODY_GREP) != 0, &tmp, &area, &len);
		break;
	}
	rules_cond_regex(s, c, w, flags, cache, area, len, v);
	if (v->ok && s->verbose)
		rules_log(s, false, "Match on %s\"%s\"", c->negate ? "! " : "",
		    c->text);
	buf_free(&tmp);
}

/* All conditions: and-ed, weighted ones summed (procmailsc(5)). */
static bool
rules_conds(struct rules_state *s, const struct rules_node *n)
{
	struct rules_verdict v;
	bool weighted = false, ok = true;
	size_t i;

	s->score = 0;
	for (i = 0; i < n->nconds; i++) {
		struct rules_cond *c = &n->conds[i];

		s->line = c->line;
		rules_cond_eval(s, c, c, n->flags, true, &v);
		if (c->weighted) {
			weighted = true;
			s->score += v.add;
		} else if (!v.ok) {
			ok = false;
			break;
		}
	}
	return ok && (!weighted || s->score > 0);
}

/* --- assignments and their special meanings ------------------------ */

char *
rules_path(const struct rules_state *s, const char *p)
{
	if (p[0] == '/' || s->cwd == NULL)
		return xstrdup(p);
	return xasprintf("%s/%s", s->cwd, p);
}

static int rules_push_file(struct rules_state *s, const char *path,
    bool replace);

static void
rules_set_logfile(struct rules_state *s, const char *value)
{
	char *path;

	if (s->logfd >= 0)
		close(s->logfd);
	s->logfd = -1;
	if (value[0] == '\0')
		return;
	path = rules_path(s, value);
	s->logfd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
	    O_NOCTTY, 0600);
	if (s->logfd < 0)
		rules_log(s, true, "cannot open LOGFILE %s: %s", path,
		    strerror(errno));
	free(path);
}

static void
rules_set_maildir(struct rules_state *s, const char *value)
{
	char *path = rules_path(s, value);
	struct stat st;

	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		rules_log(s, true, "couldn't chdir to \"%s\"", path);
		free(path);
		return;
	}
	free(s->cwd);
	s->cwd = path;
}

/* LOCKFILE=name: the old one is removed, then the new one taken (and
 * waited for); LOCKFILE= only removes. */
static void
rules_set_lockfile(struct rules_state *s, const char *value)
{
	if (s->lockfile != NULL) {
		unlink(s->lockfile);
		free(s->lockfile);
		s->lockfile = NULL;
	}
	if (value[0] != '\0')
		s->lockfile = rules_dotlock(s, value);
}

/* HOST=name: the rules stop unless name is this host: the name loft
 * was given (myhostname) or the kernel's, which procmail uses. */
static void
rules_set_host(struct rules_state *s, const char *value)
{
	const char *mine = s->sh->env->hostname;
	char host[256];

	if (mine != NULL && strcmp(value, mine) == 0)
		return;
	if (gethostname(host, sizeof(host)) == 0 &&
	    (host[sizeof(host) - 1] = '\0', strcmp(value, host) == 0))
		return;
	if (s->verbose)
		rules_log(s, false, "HOST=%s: not this host, stopping", value);
	s->host_stop = true;
}

/* SHIFT=n: as sh's shift n, over rules_env.args. */
static void
rules_set_shift(struct rules_state *s, const char *value)
{
	size_t left = s->sh->env->nargs - s->shift;
	unsigned long n = strtoul(value, NULL, 10);

	if (value[0] < '0' || value[0] > '9')
		return;
	s->shift += n < left ? (size_t)n : left;
}

static bool
rules_bool(const char *v)
{
	return (v[0] >= '1' && v[0] <= '9') || strchr("yYtTeE", v[0]) ||
	    strncasecmp(v, "on", 2) == 0;
}

int
rules_assign(struct rules_state *s, const char *name, const char *value)
{
	if (strcmp(name, "INCLUDERC") == 0)
		return rules_push_file(s, value, false);
	if (strcmp(name, "SWITCHRC") == 0)
		return rules_push_file(s, value, true);
	if (strcmp(name, "LOG") == 0) {
		if (s->logfd >= 0)
			dprintf(s->logfd, "%s", value);
		return 0;
	}
	if (rules_var_set(s, name, value) < 0) {
		rules_log(s, true, "more than %d variables", RULES_VARS_MAX);
		return -1;
	}
	if (s->verbose)
		rules_log(s, false, "Assigning \"%s=%s\"", name, value);
	if (strcmp(name, "MAILDIR") == 0)
		rules_set_maildir(s, value);
	else if (strcmp(name, "LOGFILE") == 0)
		rules_set_logfile(s, value);
	else if (strcmp(name, "VERBOSE") == 0)
		s->verbose = rules_bool(value);
	else if (strcmp(name, "UMASK") == 0)
		s->umask = (mode_t)(strtoul(value, NULL, 8) & 0777);
	else if (strcmp(name, "LOCKFILE") == 0)
		rules_set_lockfile(s, value);
	else if (strcmp(name, "HOST") == 0)
		rules_set_host(s, value);
	else if (strcmp(name, "SHIFT") == 0) {
		rules_set_shift(s, value);
		rules_var_unset(s, "SHIFT");
	}
	return 0;
}

static int
rules_assign_node(struct rules_state *s, const struct rules_node *n)
{
	struct buf v;
	const char *err;
	int ret;

	if (n->value == NULL) {
		rules_var_unset(s, n->name);
		return 0;
	}
	buf_init(&v, RULES_VALUE_MAX);
	if (rules_expand(s, n->value, RULES_EXP_ASSIGN, &v, NULL, &err) < 0) {
		rules_log(s, true, "%s: %s", n->name, err);
		buf_free(&v);
		return -1;
	}
	ret = rules_assign(s, n->name, buf_cstr(&v));
	buf_free(&v);
	return ret;
}

/* --- frames --------------------------------------------------------- */

static void
rules_push(struct rules_state *s, const struct rules_block *b,
    const char *file, bool base, unsigned depth)
{
	struct rules_frame *f;

	if (s->nframes == s->capframes) {
		s->capframes = s->capframes == 0 ? 8 : s->capframes * 2;
		s->frames = xreallocarray(s->frames, s->capframes,
		    sizeof(*s->frames));
	}
	f = &s->frames[s->nframes++];
	memset(f, 0, sizeof(*f));
	f->block = b;
	f->file = file;
	f->file_base = base;
	f->include_depth = depth;
}

/* Pop the frames of the rule file being run (SWITCHRC). */
static unsigned
rules_pop_file(struct rules_state *s)
{
	unsigned depth = 0;

	while (s->nframes > 0) {
		struct rules_frame *f = &s->frames[--s->nframes];

		if (f->file_base) {
			depth = f->include_depth;
			break;
		}
	}
	return depth;
}

static int
rules_push_file(struct rules_state *s, const char *value, bool replace)
{
	const struct rules_env *env = s->sh->env;
	unsigned depth = s->nframes > 0 ?
	    s->frames[s->nframes - 1].include_depth : 0;
	struct rules *r = NULL;
	const char *err;
	char *path;
	int ret;

	if (value[0] == '\0') {
		if (replace)
			(void)rules_pop_file(s);
		return 0;
	}
	if (s->sh->nincludes >= RULES_FILES_MAX) {
		rules_log(s, true, "more than %d rule files loaded",
		    RULES_FILES_MAX);
		return -1;
	}
	if (!replace && depth + 1 > env->limits.include_max) {
		rules_log(s, true, "INCLUDERC nested more than %u deep",
		    env->limits.include_max);
		return -1;
	}
	path = rules_path(s, value);
	ret = rules_parse_file(path, &env->limits, &r, &err);
	if (ret <= 0) {
		if (ret == 0)
			rules_log(s, true, "couldn't read \"%s\"", path);
		else
			rules_log(s, true, "%s", err);
		free(path);
		/* A missing file is skipped, as procmail does; a broken
		 * one ends the rules (its recipes cannot be trusted). */
		return ret == 0 ? 0 : -1;
	}
	free(path);
	s->sh->includes = xreallocarray(s->sh->includes,
	    s->sh->nincludes + 1, sizeof(*s->sh->includes));
	s->sh->includes[s->sh->nincludes++] = r;
	if (replace)
		depth = rules_pop_file(s);
	else
		depth++;
	rules_push(s, &r->top, rules_name(r), true, depth);
	return 0;
}

/* --- state copies (c on a block) ------------------------------------ */

static void
rules_state_free(struct rules_state *s)
{
	size_t i;

	for (i = 0; i < s->nvars; i++) {
		free(s->vars[i].name);
		free(s->vars[i].value);
	}
	free(s->vars);
	buf_free(&s->msg);
	buf_free(&s->harea);
	free(s->frames);
	free(s->cwd);
	if (s->logfd >= 0)
		close(s->logfd);
	if (s->lockfile != NULL) {
		unlink(s->lockfile);
		free(s->lockfile);
	}
}

static void
rules_state_clone(const struct rules_state *s, struct rules_state *c)
{
	size_t i;

	*c = *s;
	c->vars = xcalloc(s->nvars + 1, sizeof(*c->vars));
	for (i = 0; i < s->nvars; i++) {
		c->vars[i].name = xstrdup(s->vars[i].name);
		c->vars[i].value = xstrdup(s->vars[i].value);
	}
	buf_init(&c->msg, RULES_FILTER_MAX);
	buf_append(&c->msg, s->msg.data, s->msg.len);
	buf_init(&c->harea, RULES_FILTER_MAX);
	c->harea_valid = false;
	c->frames = xreallocarray(NULL, s->capframes, sizeof(*c->frames));
	memcpy(c->frames, s->frames, s->nframes * sizeof(*c->frames));
	c->cwd = s->cwd != NULL ? xstrdup(s->cwd) : NULL;
	c->logfd = s->logfd >= 0 ? fcntl(s->logfd, F_DUPFD_CLOEXEC, 0) : -1;
	/* The parent holds LOCKFILE, and removes it at its own end. */
	c->lockfile = NULL;
}

/* --- actions -------------------------------------------------------- */

static void rules_loop(struct rules_state *s);
static void rules_finish(struct rules_state *s);

/* c on a block: the clone runs the block and all after it. */
static void
rules_clone_block(struct rules_state *s, const struct rules_node *n)
{
	struct rules_state c;
	unsigned depth = s->frames[s->nframes - 1].include_depth;
	const char *file = s->frames[s->nframes - 1].file;

	if (s->sh->clones >= RULES_CLONES_MAX) {
		rules_log(s, true, "more than %d clones (c on a block)",
		    RULES_CLONES_MAX);
		return;
	}
	s->sh->clones++;
	rules_state_clone(s, &c);
	rules_push(&c, n->block, file, false, depth);
	rules_loop(&c);
	rules_finish(&c);
	rules_state_free(&c);
}

/* The action of a recipe whose conditions held: RULES_OK or a failure. */
static enum rules_status
rules_action(struct rules_state *s, const struct rules_node *n)
{
	bool delivering = false;
	enum rules_status st;

	s->line = n->line;
	switch (n->action) {
	case RULES_A_BLOCK:
		if (n->flags & RULES_F_COPY)
			rules_clone_block(s, n);
		else
			rules_push(s, n->block,
			    s->frames[s->nframes - 1].file, false,
			    s->frames[s->nframes - 1].include_depth);
		return RULES_OK;
	case RULES_A_FOLDER:
		st = rules_do_folder(s, n);
		delivering = true;
		break;
	case RULES_A_FORWARD:
		st = rules_do_forward(s, n);
		delivering = true;
		break;
	case RULES_A_PIPE:
		if (n->capture != NULL)
			return rules_do_capture(s, n);
		if (n->flags & RULES_F_FILTER)
			return rules_do_filter(s, n);
		st = rules_do_pipe(s, n);
		delivering = true;
		break;
	default:
		return RULES_TEMPFAIL;
	}
	if (delivering && st == RULES_OK && !(n->flags & RULES_F_COPY))
		s->delivered = true;
	return st;
}

/* Which chaining flags let the recipe run (procmailrc(5) A a E e). */
static bool
rules_eligible(const struct rules_frame *f, unsigned flags)
{
	if ((flags & (RULES_F_AND | RULES_F_AND_OK)) && !f->head_matched)
		return false;
	if ((flags & RULES_F_AND_OK) && (!f->prev_executed || f->prev_failed))
		return false;
	if ((flags & RULES_F_ELSE) && f->chain_executed)
		return false;
	if ((flags & RULES_F_ELSE_ERR) &&
	    (!f->prev_executed || !f->prev_failed))
		return false;
	return true;
}

static void
rules_recipe(struct rules_state *s, const struct rules_node *n)
{
	size_t fi = s->nframes - 1;
	bool eligible = rules_eligible(&s->frames[fi], n->flags);
	bool matched = false, failed = false;
	char score[32];

	if (eligible) {
		matched = rules_conds(s, n);
		snprintf(score, sizeof(score), "%ld", (long)s->score);
		rules_var_set(s, "=", score);
	}
	if (matched)
		failed = rules_action(s, n) != RULES_OK;
	/* rules_action may have pushed a frame: fi is still ours. */
	if (!(n->flags & (RULES_F_AND | RULES_F_AND_OK)))
		s->frames[fi].head_matched = matched;
	if (n->flags & RULES_F_ELSE)
		s->frames[fi].chain_executed = s->frames[fi].chain_executed ||
		    matched;
	else
		s->frames[fi].chain_executed = matched;
	s->frames[fi].prev_executed = matched;
	s->frames[fi].prev_failed = matched && failed;
}

static void
rules_loop(struct rules_state *s)
{
	while (s->nframes > 0 && !s->delivered && !s->failed &&
	    !s->host_stop) {
		struct rules_frame *f = &s->frames[s->nframes - 1];
		const struct rules_node *n;

		if (f->pos == f->block->count) {
			s->nframes--;
			continue;
		}
		n = &f->block->nodes[f->pos++];
		s->line = n->line;
		if (!n->is_recipe) {
			if (rules_assign_node(s, n) < 0)
				s->failed = true;
		} else
			rules_recipe(s, n);
	}
}

/* Deliver to $DEFAULT (a rules error: to $ORGMAIL as the caller gave
 * it), then, that failing, to ORGMAIL. */
static void
rules_finish(struct rules_state *s)
{
	const char *orgmail = s->sh->env->orgmail;
	const char *def = rules_var_get(s, "DEFAULT");
	struct rules_node n;

	if (s->delivered || s->host_stop)
		return;
	memset(&n, 0, sizeof(n));
	n.action = RULES_A_FOLDER;
	n.line = s->line;
	if (!s->failed && def != NULL && def[0] != '\0') {
		enum rules_status st;

		/* DEFAULT is a name already: one word, not expanded again. */
		n.arg = strchr(def, '\'') == NULL ? xasprintf("'%s'", def) :
		    xstrdup(def);
		st = rules_do_folder(s, &n);
		free(n.arg);
		if (st == RULES_OK) {
			s->delivered = true;
			return;
		}
	}
	if (orgmail == NULL || (!s->failed && def != NULL &&
	    strcmp(def, orgmail) == 0))
		return;
	/* ORGMAIL is a path, not text to expand: quote it. */
	n.arg = xasprintf("'%s'", orgmail);
	if (strchr(orgmail, '\'') == NULL && rules_do_folder(s, &n) ==
	    RULES_OK)
		s->delivered = true;
	free(n.arg);
}

/* --- the end: LOCKFILE, TRAP, EXITCODE ------------------------------ */

static int
rules_exitcode_value(const char *v)
{
	char *end;
	long n;

	if (v == NULL || v[0] < '0' || v[0] > '9')
		return 0;
	n = strtol(v, &end, 10);
	return *end == '\0' && n > 0 && n <= 255 ? (int)n : 0;
}

/*
 * procmail's end: LOCKFILE is removed; if EXITCODE is unset it is set to
 * the status procmail would exit with (0 delivered, else 75); TRAP runs
 * with the message on its standard input and its output appended to
 * LOGFILE; then a positive EXITCODE, or with EXITCODE set but empty the
 * TRAP's exit status, is what the caller exits with. A zero from either
 * leaves the caller's own status: it never turns a failed write into a
 * success.
 */
static void
rules_trap(struct rules_state *s)
{
	struct rules_result *res = s->sh->res;
	struct rules_cmd_result cr;
	const char *trap, *code, *err;
	bool was_empty;

	rules_set_lockfile(s, "");
	code = rules_var_get(s, "EXITCODE");
	was_empty = code != NULL && code[0] == '\0';
	if (code == NULL)
		rules_var_set(s, "EXITCODE", res->delivered || res->host_stop ?
		    "0" : "75");
	trap = rules_var_get(s, "TRAP");
	if (trap != NULL && trap[0] != '\0') {
		if (rules_run_shell(s, trap, s->msg.data, s->msg.len, NULL,
		    s->logfd, &cr, &err) < 0)
			rules_log(s, true, "TRAP: %s", err);
		else if (was_empty)
			res->exitcode = cr.status > 0 && cr.status <= 255 ?
			    cr.status : 0;
	}
	if (!was_empty)
		res->exitcode = rules_exitcode_value(rules_var_get(s,
		    "EXITCODE"));
}

/* --- the entry point ------------------------------------------------ */

static void
rules_state_init(struct rules_state *s, struct rules_shared *sh)
{
	const struct rules_env *env = sh->env;

	memset(s, 0, sizeof(*s));
	s->sh = sh;
	s->logfd = -1;
	s->umask = 077;
	rules_var_set(s, "HOME", env->home != NULL ? env->home : "/");
	rules_var_set(s, "LOGNAME", env->user);
	rules_var_set(s, "USER", env->user);
	rules_var_set(s, "SHELL", env->shell != NULL ? env->shell : "/bin/sh");
	rules_var_set(s, "PATH", env->path != NULL ? env->path :
	    rules_default_path);
	rules_var_set(s, "SENDMAIL", env->sendmail != NULL ? env->sendmail :
	    "/usr/sbin/sendmail");
	rules_var_set(s, "SENDMAILFLAGS", "-oi");
	rules_var_set(s, "LOCKEXT", ".lock");
	rules_var_set(s, "MSGPREFIX", "msg.");
	rules_var_set(s, "SHELLFLAGS", "-c");
	if (env->orgmail != NULL) {
		rules_var_set(s, "ORGMAIL", env->orgmail);
		rules_var_set(s, "DEFAULT", env->orgmail);
	}
	if (env->hostname != NULL)
		rules_var_set(s, "HOST", env->hostname);
	rules_var_set(s, "MAILDIR", env->home != NULL ? env->home : "/");
	s->cwd = xstrdup(env->home != NULL && env->home[0] == '/' ?
	    env->home : "/");
}

int
rules_run(const struct rules *r, const struct rules_env *env,
    const struct rules_callbacks *cb, void *ctx, const unsigned char *msg,
    size_t len, struct rules_result *res)
{
	struct rules_shared sh;
	struct rules_state s;
	size_t i;

	memset(res, 0, sizeof(*res));
	memset(&sh, 0, sizeof(sh));
	sh.env = env;
	sh.cb = cb;
	sh.ctx = ctx;
	sh.res = res;
	sh.match_data = pcre2_match_data_create(16, NULL);
	rules_state_init(&s, &sh);
	rules_msg_init(&s, msg, len);
	if (r != NULL) {
		rules_push(&s, &r->top, rules_name(r), true, 0);
		rules_loop(&s);
	}
	res->rules_error = s.failed;
	rules_finish(&s);
	res->delivered = s.delivered;
	res->host_stop = s.host_stop;
	rules_trap(&s);
	rules_state_free(&s);
	for (i = 0; i < sh.nincludes; i++)
		rules_free(&sh.includes[i]);
	free(sh.includes);
	pcre2_match_data_free(sh.match_data);
	return res->delivered || res->host_stop ? 0 : -1;
}
