/*
 * imap_parser.c: the IMAP command parser, one byte-driven state machine
 * (enum imap_parser_state, resumable at any byte) plus bulk paths for
 * literal data, which is buffered, streamed to the engine or discarded
 * without looking at it.
 *
 * Arguments are built shift-reduce: finished arguments go on a stack; a
 * ')' moves the top elements of the stack, down to where its '(' was,
 * into an array in the command's arena and leaves one list argument in
 * their place. The arena and the stack live as long as one command.
 *
 * A "tail tracker" watches every line byte, whatever the state, for the
 * literal announcement "{digits[+-]}" CRLF that the client may put at
 * the end of any line. While a failed command is skipped it alone
 * decides where the command ends: at a line end, or after the data of a
 * non-synchronizing literal the client sends regardless (a synchronizing
 * one ends the command: the client waits for a "+" that never comes).
 *
 * Trusts nothing from the client: every byte is classified, every size
 * is checked against the limits before anything is stored, and literal
 * sizes are read digit by digit against IMAP_LITERAL_SIZE_MAX. Trusts
 * its settings and callbacks.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "log.h"
#include "xmalloc.h"
#include "imap_parser.h"

/* Arena chunks; larger requests get a chunk of their own. */
#define IMAP_PARSER_CHUNK	8192
#define IMAP_PARSER_ALIGN	16
/* A token buffer grown past this is released between commands. */
#define IMAP_PARSER_TOK_KEEP	8192

enum imap_parser_state {
	IMAP_PARSER_S_TAG,		/* in the tag */
	IMAP_PARSER_S_NAME_SP,		/* before the command name */
	IMAP_PARSER_S_NAME,		/* in the command name */
	IMAP_PARSER_S_ARGS,		/* where an argument may start */
	IMAP_PARSER_S_AFTER,		/* after an argument: SP, ) or EOL */
	IMAP_PARSER_S_ATOM,
	IMAP_PARSER_S_SECTION,		/* in the [...] of BODY[...] */
	IMAP_PARSER_S_SECTION_QUOTED,	/* in a quoted string there */
	IMAP_PARSER_S_SECTION_ESC,
	IMAP_PARSER_S_QUOTED,
	IMAP_PARSER_S_QUOTED_ESC,
	IMAP_PARSER_S_LIT_SIZE,		/* after { or ~{ */
	IMAP_PARSER_S_LIT_CLOSE,	/* after + or -, before } */
	IMAP_PARSER_S_LIT_EOL,		/* after }, before CRLF */
	IMAP_PARSER_S_LIT_DATA,		/* buffering a literal */
	IMAP_PARSER_S_LIT_STREAM,	/* giving a literal to the engine */
	IMAP_PARSER_S_LIT_DISCARD,	/* dropping a refused {n+} literal */
	IMAP_PARSER_S_SKIP,		/* failed: skipping to the end */
	IMAP_PARSER_S_DONE,		/* a command (or failure) is ready */
	IMAP_PARSER_S_FATAL
};

enum imap_parser_trk_state {
	IMAP_PARSER_T_NONE,
	IMAP_PARSER_T_DIGITS,		/* after {, digits so far */
	IMAP_PARSER_T_SIGN,		/* after + or - */
	IMAP_PARSER_T_CLOSE,		/* after } */
	IMAP_PARSER_T_CLOSE_CR		/* after } CR */
};

/* The tail tracker: what the client announced at the end of a line. */
struct imap_parser_trk {
	enum imap_parser_trk_state st;
	unsigned digits;
	bool minus, plus;
	bool overflow;			/* size past IMAP_LITERAL_SIZE_MAX */
	bool announced;			/* this LF ended "{n}" CRLF */
	uint64_t size;
};

struct imap_parser_chunk {
	struct imap_parser_chunk *next;
	size_t size, used;
	max_align_t data[];
};

struct imap_parser {
	struct imap_parser_settings set;	/* in force */
	struct imap_parser_settings next_set;	/* from the next command */
	bool set_changed;
	const struct imap_parser_callbacks *cb;
	void *ctx;

	enum imap_parser_state state;
	bool cr;			/* a CR was seen: LF must follow */
	bool fresh_fail;		/* this byte failed the command */
	bool taken;			/* imap_parser_next handed it out */
	struct imap_cmd cmd;
	char name[IMAP_PARSER_NAME_MAX + 1];
	size_t line_len;		/* bytes of the current line */
	size_t cmd_len;			/* lines + buffered literals */
	unsigned nargs;			/* arguments and lists made */

	struct buf tok;			/* the token being read */
	unsigned utf8_need;		/* continuation bytes still due */
	unsigned char utf8_lo, utf8_hi;	/* range of the next one */
	struct imap_parser_trk trk;
	bool lit8;			/* the literal being read is ~{n} */
	uint64_t lit_left;

	struct imap_arg *stack;		/* owned; finished arguments */
	unsigned stack_len, stack_cap;
	unsigned *list_start;		/* owned; depth_max stack indexes */
	unsigned depth;
	struct imap_parser_chunk *chunks;	/* owned; the arena */
};

/* Character classes (RFC 9051 section 9). */

static bool
imap_parser_is_atom_char(unsigned char c)
{
	/* Wider than ATOM-CHAR: %, *, \ and ] are let in so that list
	 * patterns, sequence sets and flags read as atoms; the accessors
	 * narrow it down. */
	return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' &&
	    c != '"';
}

static bool
imap_parser_is_tag_char(unsigned char c)
{
	return imap_parser_is_atom_char(c) && c != '%' && c != '*' &&
	    c != '\\' && c != '+';
}

static bool
imap_parser_is_name_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

/* The arena. */

static void *
imap_parser_alloc(struct imap_parser *p, size_t n)
{
	struct imap_parser_chunk *c = p->chunks;
	size_t need, size;
	void *ptr;

	/* n is bounded by command_max or args_max * sizeof(struct
	 * imap_arg), both far from SIZE_MAX. */
	need = (n + IMAP_PARSER_ALIGN - 1) & ~(size_t)(IMAP_PARSER_ALIGN - 1);
	if (c == NULL || c->size - c->used < need) {
		size = need > IMAP_PARSER_CHUNK ? need : IMAP_PARSER_CHUNK;
		c = xmalloc(sizeof(*c) + size);
		c->size = size;
		c->used = 0;
		c->next = p->chunks;
		p->chunks = c;
	}
	ptr = (unsigned char *)c->data + c->used;
	c->used += need;
	return ptr;
}

/* imap_parser_arena_reset: keep one standard chunk for the next command. */
static void
imap_parser_arena_reset(struct imap_parser *p, bool keep)
{
	struct imap_parser_chunk *c, *next, *kept = NULL;

	for (c = p->chunks; c != NULL; c = next) {
		next = c->next;
		if (keep && kept == NULL && c->size == IMAP_PARSER_CHUNK) {
			kept = c;
			kept->used = 0;
			kept->next = NULL;
		} else
			free(c);
	}
	p->chunks = kept;
}

static const unsigned char *
imap_parser_dup(struct imap_parser *p, const unsigned char *data, size_t len)
{
	unsigned char *d;

	d = imap_parser_alloc(p, len + 1);
	if (len > 0)
		memcpy(d, data, len);
	d[len] = '\0';
	return d;
}

/* Settings and life cycle. */

static void
imap_parser_check_settings(const struct imap_parser_settings *in,
    struct imap_parser_settings *out)
{
	*out = *in;
	if (out->line_max == 0)
		out->line_max = IMAP_PARSER_LINE_MAX;
	if (out->literal_max == 0)
		out->literal_max = IMAP_PARSER_LITERAL_MAX;
	if (out->command_max == 0)
		out->command_max = out->line_max > IMAP_PARSER_COMMAND_MAX ?
		    out->line_max : IMAP_PARSER_COMMAND_MAX;
	if (out->depth_max == 0)
		out->depth_max = IMAP_PARSER_DEPTH_MAX;
	if (out->args_max == 0)
		out->args_max = IMAP_PARSER_ARGS_MAX;
	if (out->line_max < IMAP_PARSER_LINE_MIN ||
	    out->command_max < out->line_max ||
	    out->command_max > SIZE_MAX / 4 ||
	    out->literal_max > SIZE_MAX / 4 ||
	    out->args_max > UINT32_MAX / 2 || out->depth_max > 1024 * 1024)
		log_panic("imap_parser: settings out of range");
}

static void
imap_parser_apply_settings(struct imap_parser *p)
{
	size_t tok_max;

	p->set = p->next_set;
	p->set_changed = false;
	p->list_start = xreallocarray(p->list_start, p->set.depth_max,
	    sizeof(*p->list_start));
	tok_max = p->set.line_max > p->set.literal_max ?
	    p->set.line_max : p->set.literal_max;
	buf_free(&p->tok);
	buf_init(&p->tok, tok_max);
}

/* imap_parser_begin: forget the last command, start reading the next. */
static void
imap_parser_begin(struct imap_parser *p)
{
	imap_parser_arena_reset(p, true);
	if (p->set_changed)
		imap_parser_apply_settings(p);
	else if (p->tok.cap > IMAP_PARSER_TOK_KEEP)
		buf_free(&p->tok);
	buf_truncate(&p->tok, 0);
	memset(&p->cmd, 0, sizeof(p->cmd));
	memset(&p->trk, 0, sizeof(p->trk));
	p->name[0] = '\0';
	p->state = IMAP_PARSER_S_TAG;
	p->cr = p->fresh_fail = p->taken = false;
	p->line_len = p->cmd_len = 0;
	p->nargs = p->stack_len = p->depth = 0;
	p->utf8_need = 0;
	p->lit8 = false;
	p->lit_left = 0;
}

struct imap_parser *
imap_parser_new(const struct imap_parser_settings *set,
    const struct imap_parser_callbacks *cb, void *ctx)
{
	struct imap_parser *p;

	if (cb == NULL || cb->need_continuation == NULL)
		log_panic("imap_parser_new: need_continuation is required");
	p = xcalloc(1, sizeof(*p));
	p->cb = cb;
	p->ctx = ctx;
	buf_init(&p->tok, 0);
	imap_parser_check_settings(set, &p->next_set);
	p->set_changed = true;
	imap_parser_begin(p);
	return p;
}

void
imap_parser_free(struct imap_parser **pp)
{
	struct imap_parser *p = *pp;

	if (p == NULL)
		return;
	*pp = NULL;
	imap_parser_arena_reset(p, false);
	buf_free(&p->tok);
	free(p->stack);
	free(p->list_start);
	free(p);
}

void
imap_parser_set_settings(struct imap_parser *p,
    const struct imap_parser_settings *set)
{
	imap_parser_check_settings(set, &p->next_set);
	p->set_changed = true;
	if (p->state == IMAP_PARSER_S_TAG && p->cmd.bytes == 0)
		imap_parser_apply_settings(p);
}

bool
imap_parser_pending(const struct imap_parser *p)
{
	return p->cmd.bytes > 0 && p->state != IMAP_PARSER_S_DONE &&
	    p->state != IMAP_PARSER_S_FATAL;
}

/* Failure and the end of a command. */

static void
imap_parser_set_error(struct imap_parser *p, enum imap_parse_error e,
    const char *msg)
{
	if (p->cmd.error == IMAP_PARSE_ERR_NONE) {
		p->cmd.error = e;
		p->cmd.error_msg = msg;
	}
}

/* imap_parser_fail: the command is bad; skip to its end, starting with
 * the byte being handled (imap_parser_byte passes it on). */
static void
imap_parser_fail(struct imap_parser *p, enum imap_parse_error e,
    const char *msg)
{
	imap_parser_set_error(p, e, msg);
	p->state = IMAP_PARSER_S_SKIP;
	p->cr = false;
	p->fresh_fail = true;
}

static void
imap_parser_end(struct imap_parser *p)
{
	p->state = IMAP_PARSER_S_DONE;
	p->taken = false;
}

static void
imap_parser_fatal(struct imap_parser *p, const char *msg)
{
	p->cmd.error = IMAP_PARSE_ERR_NONE;
	imap_parser_set_error(p, IMAP_PARSE_ERR_FATAL, msg);
	p->state = IMAP_PARSER_S_FATAL;
	p->taken = false;
}

/* The tail tracker. */

static void
imap_parser_track(struct imap_parser *p, unsigned char c)
{
	struct imap_parser_trk *t = &p->trk;
	unsigned d;

	t->announced = false;
	if (c == '{') {
		memset(t, 0, sizeof(*t));
		t->st = IMAP_PARSER_T_DIGITS;
	} else if (t->st == IMAP_PARSER_T_DIGITS && c >= '0' && c <= '9') {
		d = c - '0';
		if (t->overflow || t->size > (IMAP_LITERAL_SIZE_MAX - d) / 10)
			t->overflow = true;
		else
			t->size = t->size * 10 + d;
		t->digits++;
	} else if (t->st == IMAP_PARSER_T_DIGITS && t->digits > 0 &&
	    (c == '+' || c == '-')) {
		t->st = IMAP_PARSER_T_SIGN;
		t->plus = c == '+';
		t->minus = c == '-';
	} else if ((t->st == IMAP_PARSER_T_DIGITS && t->digits > 0 &&
	    c == '}') || (t->st == IMAP_PARSER_T_SIGN && c == '}'))
		t->st = IMAP_PARSER_T_CLOSE;
	else if (t->st == IMAP_PARSER_T_CLOSE && c == '\r')
		t->st = IMAP_PARSER_T_CLOSE_CR;
	else if ((t->st == IMAP_PARSER_T_CLOSE ||
	    t->st == IMAP_PARSER_T_CLOSE_CR) && c == '\n') {
		t->announced = true;
		t->st = IMAP_PARSER_T_NONE;
	} else
		t->st = IMAP_PARSER_T_NONE;
}

/* imap_parser_skip_byte: c of a failed command: only a line end matters. */
static void
imap_parser_skip_byte(struct imap_parser *p, unsigned char c)
{
	if (c != '\n')
		return;
	if (!p->trk.announced || (!p->trk.plus && !p->trk.minus)) {
		imap_parser_end(p);
		return;
	}
	if (p->trk.overflow) {
		imap_parser_fatal(p, "Literal size too big");
		return;
	}
	p->lit_left = p->trk.size;
	p->state = IMAP_PARSER_S_LIT_DISCARD;
	if (p->lit_left == 0)
		p->state = IMAP_PARSER_S_SKIP;
}

/* The argument stack. */

static void
imap_parser_push(struct imap_parser *p, const struct imap_arg *arg)
{
	struct imap_arg *a;

	if (p->stack_len == p->stack_cap) {
		p->stack_cap = p->stack_cap == 0 ? 16 : p->stack_cap * 2;
		p->stack = xreallocarray(p->stack, p->stack_cap,
		    sizeof(*p->stack));
	}
	a = &p->stack[p->stack_len++];
	*a = *arg;
	a->depth = p->depth;
	a->pos = p->stack_len - (p->depth > 0 ?
	    p->list_start[p->depth - 1] : 0);
}

/* imap_parser_count_arg: room for one more argument? */
static int
imap_parser_count_arg(struct imap_parser *p)
{
	if (p->nargs >= p->set.args_max) {
		imap_parser_fail(p, IMAP_PARSE_ERR_TOOBIG,
		    "Too many arguments");
		return -1;
	}
	p->nargs++;
	return 0;
}

/* imap_parser_push_data: a finished token of type t from p->tok. */
static void
imap_parser_push_data(struct imap_parser *p, enum imap_arg_type t)
{
	struct imap_arg a;

	if (imap_parser_count_arg(p) < 0)
		return;
	memset(&a, 0, sizeof(a));
	a.type = t;
	a.data = imap_parser_dup(p, p->tok.data, p->tok.len);
	a.len = p->tok.len;
	buf_truncate(&p->tok, 0);
	imap_parser_push(p, &a);
}

static void
imap_parser_atom_done(struct imap_parser *p)
{
	bool nil;

	nil = p->tok.len == 3 &&
	    strncasecmp((const char *)p->tok.data, "NIL", 3) == 0;
	imap_parser_push_data(p, nil ? IMAP_ARG_NIL : IMAP_ARG_ATOM);
}

static void
imap_parser_list_open(struct imap_parser *p)
{
	if (p->depth >= p->set.depth_max) {
		imap_parser_fail(p, IMAP_PARSE_ERR_TOOBIG,
		    "Lists nested too deeply");
		return;
	}
	if (imap_parser_count_arg(p) < 0)
		return;
	p->list_start[p->depth++] = p->stack_len;
}

static void
imap_parser_list_close(struct imap_parser *p)
{
	struct imap_arg a, *items;
	unsigned start, n;

	if (p->depth == 0) {
		imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "Unexpected )");
		return;
	}
	start = p->list_start[--p->depth];
	n = p->stack_len - start;
	items = imap_parser_alloc(p, (size_t)n * sizeof(*items) + 1);
	if (n > 0)
		memcpy(items, p->stack + start, (size_t)n * sizeof(*items));
	p->stack_len = start;
	memset(&a, 0, sizeof(a));
	a.type = IMAP_ARG_LIST;
	a.list = items;
	a.count = n;
	imap_parser_push(p, &a);
	p->state = IMAP_PARSER_S_AFTER;
}

/* imap_parser_line_end: an LF outside any token: the command is whole. */
static void
imap_parser_line_end(struct imap_parser *p)
{
	struct imap_arg *args;
	size_t n = p->stack_len;

	if (p->depth > 0) {
		imap_parser_set_error(p, IMAP_PARSE_ERR_SYNTAX, "Missing )");
		imap_parser_end(p);
		return;
	}
	args = imap_parser_alloc(p, n * sizeof(*args) + 1);
	if (n > 0)
		memcpy(args, p->stack, n * sizeof(*args));
	p->cmd.args = args;
	p->cmd.argc = p->stack_len;
	imap_parser_end(p);
}

/* Literals. */

static bool
imap_parser_streams(const struct imap_parser *p)
{
	/* The first argument of APPEND is the mailbox: buffer it. */
	return (p->cmd.flags & IMAP_PARSER_CMD_STREAM) != 0 &&
	    !(p->depth == 0 && p->stack_len == 0);
}

/* imap_parser_literal_refuse: what the client sends for a literal we do
 * not take: nothing for {n} (the command ends), the data for {n+}. */
static void
imap_parser_literal_refuse(struct imap_parser *p, enum imap_parse_error e,
    const char *msg)
{
	imap_parser_set_error(p, e, msg);
	if (!p->trk.plus && !p->trk.minus) {
		imap_parser_end(p);
		return;
	}
	p->lit_left = p->trk.size;
	p->state = p->lit_left > 0 ? IMAP_PARSER_S_LIT_DISCARD :
	    IMAP_PARSER_S_SKIP;
	p->trk.st = IMAP_PARSER_T_NONE;
}

/* imap_parser_literal_check: can the literal just announced be taken? */
static int
imap_parser_literal_check(struct imap_parser *p, bool stream)
{
	const struct imap_parser_trk *t = &p->trk;
	bool nonsync = t->plus || t->minus;

	if (t->overflow) {
		if (nonsync)
			imap_parser_fatal(p, "Literal size too big");
		else
			imap_parser_literal_refuse(p, IMAP_PARSE_ERR_TOOBIG,
			    "Literal too big");
		return -1;
	}
	if ((t->minus || (t->plus && !p->set.literal_plus)) &&
	    t->size > IMAP_LITERAL_MINUS_MAX) {
		imap_parser_literal_refuse(p, IMAP_PARSE_ERR_TOOBIG,
		    "Non-synchronizing literal too big");
		return -1;
	}
	if (!stream && (t->size > p->set.literal_max ||
	    t->size > p->set.command_max - p->cmd_len)) {
		imap_parser_literal_refuse(p, IMAP_PARSE_ERR_TOOBIG,
		    "Literal too big");
		return -1;
	}
	return 0;
}

static void
imap_parser_literal_done(struct imap_parser *p, bool stream)
{
	struct imap_arg a;

	memset(&a, 0, sizeof(a));
	a.type = stream ? IMAP_ARG_STREAMED : IMAP_ARG_LITERAL;
	a.literal8 = p->lit8;
	a.nonsync = p->trk.plus || p->trk.minus;
	if (stream)
		a.size = p->trk.size;
	p->lit8 = false;
	memset(&p->trk, 0, sizeof(p->trk));
	p->line_len = 0;
	p->state = IMAP_PARSER_S_AFTER;
	if (stream && p->cb->literal_end != NULL)
		p->cb->literal_end(p->ctx);
	if (imap_parser_count_arg(p) == 0) {
		if (!stream) {
			a.data = imap_parser_dup(p, p->tok.data, p->tok.len);
			a.len = p->tok.len;
			buf_truncate(&p->tok, 0);
		}
		imap_parser_push(p, &a);
	}
	/* The line goes on after the literal: a failure here must not
	 * take the LF that announced it (or no byte at all) as its end. */
	p->fresh_fail = false;
}

/* imap_parser_literal_begin: "{n}" CRLF was read (the tracker has it). */
static void
imap_parser_literal_begin(struct imap_parser *p)
{
	bool stream = imap_parser_streams(p);
	bool sync = !p->trk.plus && !p->trk.minus;

	if (!p->trk.announced)
		log_panic("imap_parser: literal state without announcement");
	if (imap_parser_literal_check(p, stream) < 0)
		return;
	if (stream) {
		if (p->cb->literal_start == NULL || p->cb->literal_data == NULL)
			log_panic("imap_parser: streaming without callbacks");
		if (p->cb->literal_start(p->ctx, p->trk.size, p->lit8) < 0) {
			imap_parser_literal_refuse(p, IMAP_PARSE_ERR_REFUSED,
			    "Literal refused");
			return;
		}
	}
	if (sync && p->cb->need_continuation(p->ctx, p->trk.size) < 0) {
		imap_parser_literal_refuse(p, IMAP_PARSE_ERR_REFUSED,
		    "Literal refused");
		return;
	}
	if (!stream)
		p->cmd_len += p->trk.size;
	buf_truncate(&p->tok, 0);
	p->lit_left = p->trk.size;
	p->state = stream ? IMAP_PARSER_S_LIT_STREAM : IMAP_PARSER_S_LIT_DATA;
	if (p->lit_left == 0)
		imap_parser_literal_done(p, stream);
}

/* imap_parser_bulk: literal bytes in one of the three literal states. */
static size_t
imap_parser_bulk(struct imap_parser *p, const unsigned char *data, size_t len)
{
	size_t n;

	n = p->lit_left < len ? (size_t)p->lit_left : len;
	p->lit_left -= n;
	switch (p->state) {
	case IMAP_PARSER_S_LIT_DATA:
		/* Checked against literal_max <= the buffer's maximum. */
		if (buf_append(&p->tok, data, n) < 0)
			log_panic("imap_parser: literal buffer overflow");
		break;
	case IMAP_PARSER_S_LIT_STREAM:
		if (n > 0)
			p->cb->literal_data(p->ctx, data, n);
		break;
	default:
		break;
	}
	if (p->lit_left > 0)
		return n;
	if (p->state == IMAP_PARSER_S_LIT_DISCARD) {
		p->state = IMAP_PARSER_S_SKIP;
		memset(&p->trk, 0, sizeof(p->trk));
	} else
		imap_parser_literal_done(p,
		    p->state == IMAP_PARSER_S_LIT_STREAM);
	return n;
}

/* Quoted strings. */

/* imap_parser_utf8: one byte >= 0x80 of a quoted string in UTF-8 mode:
 * shortest forms only, no surrogates, nothing past U+10FFFF. */
static int
imap_parser_utf8(struct imap_parser *p, unsigned char c)
{
	if (p->utf8_need > 0) {
		if (c < p->utf8_lo || c > p->utf8_hi)
			return -1;
		p->utf8_need--;
		p->utf8_lo = 0x80;
		p->utf8_hi = 0xbf;
		return 0;
	}
	p->utf8_lo = 0x80;
	p->utf8_hi = 0xbf;
	if (c >= 0xc2 && c <= 0xdf)
		p->utf8_need = 1;
	else if (c >= 0xe0 && c <= 0xef) {
		p->utf8_need = 2;
		if (c == 0xe0)
			p->utf8_lo = 0xa0;
		else if (c == 0xed)
			p->utf8_hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		p->utf8_need = 3;
		if (c == 0xf0)
			p->utf8_lo = 0x90;
		else if (c == 0xf4)
			p->utf8_hi = 0x8f;
	} else
		return -1;
	return 0;
}

/* imap_parser_quoted_char: may c stand in a quoted string? Fails the
 * command if not. '"' and '\' are handled by the caller. */
static int
imap_parser_quoted_char(struct imap_parser *p, unsigned char c)
{
	if (c == '\r' || c == '\n') {
		imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
		    "Unterminated quoted string");
		return -1;
	}
	if (c < 0x80 && p->utf8_need > 0) {
		imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
		    "Invalid UTF-8 in quoted string");
		return -1;
	}
	if (c >= 0x80 && !p->set.utf8) {
		imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
		    "8-bit data in quoted string");
		return -1;
	}
	if (c >= 0x80 && imap_parser_utf8(p, c) < 0) {
		imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
		    "Invalid UTF-8 in quoted string");
		return -1;
	}
	return 0;
}

static void
imap_parser_append(struct imap_parser *p, unsigned char c)
{
	/* The line limit keeps tokens below the buffer's maximum. */
	if (buf_append_byte(&p->tok, c) < 0)
		log_panic("imap_parser: token buffer overflow");
}

static void
imap_parser_quoted(struct imap_parser *p, unsigned char c)
{
	bool esc = p->state == IMAP_PARSER_S_QUOTED_ESC;

	if (imap_parser_quoted_char(p, c) < 0)
		return;
	if (esc) {
		if (c != '"' && c != '\\') {
			imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
			    "Invalid escape in quoted string");
			return;
		}
		imap_parser_append(p, c);
		p->state = IMAP_PARSER_S_QUOTED;
	} else if (c == '\\')
		p->state = IMAP_PARSER_S_QUOTED_ESC;
	else if (c == '"') {
		imap_parser_push_data(p, IMAP_ARG_STRING);
		if (p->state == IMAP_PARSER_S_QUOTED)
			p->state = IMAP_PARSER_S_AFTER;
	} else
		imap_parser_append(p, c);
}

/* Atoms and FETCH sections. */

/* imap_parser_section_atom: does the atom so far take a [section] that
 * may hold spaces, parentheses and quoted strings? */
static bool
imap_parser_section_atom(const struct imap_parser *p)
{
	static const char *const names[] = {
		"BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE"
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (p->tok.len == strlen(names[i]) &&
		    strncasecmp((const char *)p->tok.data, names[i],
		    p->tok.len) == 0)
			return true;
	}
	return false;
}

static void
imap_parser_atom(struct imap_parser *p, unsigned char c)
{
	if (c == '{' && p->tok.len == 1 && p->tok.data[0] == '~') {
		buf_truncate(&p->tok, 0);
		p->lit8 = true;
		p->state = IMAP_PARSER_S_LIT_SIZE;
	} else if (c == '[' && imap_parser_section_atom(p)) {
		imap_parser_append(p, c);
		p->state = IMAP_PARSER_S_SECTION;
	} else if (imap_parser_is_atom_char(c))
		imap_parser_append(p, c);
	else if (c == ' ') {
		imap_parser_atom_done(p);
		if (p->state == IMAP_PARSER_S_ATOM)
			p->state = IMAP_PARSER_S_ARGS;
	} else if (c == ')') {
		imap_parser_atom_done(p);
		if (p->state == IMAP_PARSER_S_ATOM)
			imap_parser_list_close(p);
	} else if (c == '\r')
		p->cr = true;
	else if (c == '\n') {
		imap_parser_atom_done(p);
		if (p->state == IMAP_PARSER_S_ATOM)
			imap_parser_line_end(p);
	} else
		imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
		    "Invalid character in atom");
}

static void
imap_parser_section(struct imap_parser *p, unsigned char c)
{
	switch (p->state) {
	case IMAP_PARSER_S_SECTION:
		if (c == ']')
			p->state = IMAP_PARSER_S_ATOM;
		else if (c == '"') {
			p->utf8_need = 0;
			p->state = IMAP_PARSER_S_SECTION_QUOTED;
		} else if (c < 0x20 || c >= 0x7f || c == '[' || c == '{') {
			imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
			    "Invalid character in section");
			return;
		}
		break;
	case IMAP_PARSER_S_SECTION_QUOTED:
		if (imap_parser_quoted_char(p, c) < 0)
			return;
		if (c == '"')
			p->state = IMAP_PARSER_S_SECTION;
		else if (c == '\\')
			p->state = IMAP_PARSER_S_SECTION_ESC;
		break;
	default:
		if (c != '"' && c != '\\') {
			imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
			    "Invalid escape in quoted string");
			return;
		}
		p->state = IMAP_PARSER_S_SECTION_QUOTED;
		break;
	}
	/* Kept as sent, escapes and all: the FETCH code reads it again. */
	imap_parser_append(p, c);
}

/* Literal announcements. */

static void
imap_parser_lit_syntax(struct imap_parser *p, unsigned char c)
{
	switch (p->state) {
	case IMAP_PARSER_S_LIT_SIZE:
		/* The tracker reads the digits' value. */
		if (c >= '0' && c <= '9')
			;
		else if ((c == '+' || c == '-') && p->trk.digits > 0)
			p->state = IMAP_PARSER_S_LIT_CLOSE;
		else if (c == '}' && p->trk.digits > 0)
			p->state = IMAP_PARSER_S_LIT_EOL;
		else
			imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
			    "Invalid literal size");
		break;
	case IMAP_PARSER_S_LIT_CLOSE:
		if (c == '}')
			p->state = IMAP_PARSER_S_LIT_EOL;
		else
			imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
			    "Invalid literal size");
		break;
	default:
		if (c == '\r')
			p->cr = true;
		else if (c == '\n')
			imap_parser_literal_begin(p);
		else
			imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
			    "Literal not at the end of the line");
		break;
	}
}

/* Between arguments. */

static void
imap_parser_args(struct imap_parser *p, unsigned char c)
{
	bool after = p->state == IMAP_PARSER_S_AFTER;

	if (c == ' ')
		p->state = IMAP_PARSER_S_ARGS;
	else if (c == ')')
		imap_parser_list_close(p);
	else if (c == '\r')
		p->cr = true;
	else if (c == '\n')
		imap_parser_line_end(p);
	else if (after)
		imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
		    "Missing space between arguments");
	else if (c == '(')
		imap_parser_list_open(p);
	else if (c == '"') {
		buf_truncate(&p->tok, 0);
		p->utf8_need = 0;
		p->state = IMAP_PARSER_S_QUOTED;
	} else if (c == '{') {
		buf_truncate(&p->tok, 0);
		p->lit8 = false;
		p->state = IMAP_PARSER_S_LIT_SIZE;
	} else if (imap_parser_is_atom_char(c)) {
		buf_truncate(&p->tok, 0);
		imap_parser_append(p, c);
		p->state = IMAP_PARSER_S_ATOM;
	} else
		imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
		    "Invalid character in command");
}

/* The tag and the command name. */

static void
imap_parser_tag(struct imap_parser *p, unsigned char c)
{
	if (imap_parser_is_tag_char(c)) {
		if (p->tok.len >= IMAP_PARSER_TAG_MAX)
			imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
			    "Tag too long");
		else
			imap_parser_append(p, c);
		return;
	}
	if (c == '\r') {
		p->cr = true;
		return;
	}
	if ((c != ' ' && c != '\n') || p->tok.len == 0) {
		imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, p->tok.len == 0 &&
		    c == '\n' ? "Empty command line" : "Invalid tag");
		return;
	}
	p->cmd.tag = (const char *)imap_parser_dup(p, p->tok.data, p->tok.len);
	buf_truncate(&p->tok, 0);
	p->state = IMAP_PARSER_S_NAME_SP;
	if (c == '\n')
		imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
		    "Missing command name");
}

/* imap_parser_name_done: 1 if it was the UID prefix, 0 if the arguments
 * may follow, -1 if the command failed. */
static int
imap_parser_name_done(struct imap_parser *p)
{
	size_t i;

	for (i = 0; i < p->tok.len; i++) {
		p->name[i] = (char)p->tok.data[i];
		if (p->name[i] >= 'a' && p->name[i] <= 'z')
			p->name[i] -= 'a' - 'A';
	}
	p->name[i] = '\0';
	buf_truncate(&p->tok, 0);
	if (strcmp(p->name, "UID") == 0) {
		if (p->cmd.uid) {
			imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
			    "UID after UID");
			return -1;
		}
		p->cmd.uid = true;
		p->state = IMAP_PARSER_S_NAME_SP;
		return 1;
	}
	p->cmd.name = p->name;
	if (p->cb->command != NULL)
		p->cmd.flags = p->cb->command(p->ctx, &p->cmd);
	if ((p->cmd.flags & IMAP_PARSER_CMD_UNKNOWN) != 0) {
		imap_parser_fail(p, IMAP_PARSE_ERR_UNKNOWN, "Unknown command");
		return -1;
	}
	return 0;
}

static void
imap_parser_name(struct imap_parser *p, unsigned char c)
{
	int r;

	if (imap_parser_is_name_char(c)) {
		if (p->tok.len >= IMAP_PARSER_NAME_MAX)
			imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
			    "Command name too long");
		else {
			imap_parser_append(p, c);
			p->state = IMAP_PARSER_S_NAME;
		}
	} else if (c == ' ' && p->state == IMAP_PARSER_S_NAME_SP)
		;
	else if (c == '\r')
		p->cr = true;
	else if ((c == ' ' || c == '\n') && p->state == IMAP_PARSER_S_NAME) {
		r = imap_parser_name_done(p);
		if (r == 0 && c == ' ')
			p->state = IMAP_PARSER_S_ARGS;
		else if (r == 0)
			imap_parser_line_end(p);
		else if (r == 1 && c == '\n')
			imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX,
			    "Missing command after UID");
	} else
		imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, c != '\n' ?
		    "Invalid command name" : p->cmd.uid ?
		    "Missing command after UID" : "Missing command name");
}

/* One byte of a line (not literal data). */

static int
imap_parser_line_checks(struct imap_parser *p, unsigned char c)
{
	if (p->cr) {
		p->cr = false;
		if (c != '\n') {
			imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "Bare CR");
			return -1;
		}
	}
	p->line_len++;
	p->cmd_len++;
	if (p->line_len > p->set.line_max) {
		imap_parser_fail(p, IMAP_PARSE_ERR_TOOBIG, "Line too long");
		return -1;
	}
	if (p->cmd_len > p->set.command_max) {
		imap_parser_fail(p, IMAP_PARSE_ERR_TOOBIG, "Command too long");
		return -1;
	}
	if (c == '\0') {
		imap_parser_fail(p, IMAP_PARSE_ERR_SYNTAX, "NUL in command");
		return -1;
	}
	return 0;
}

static void
imap_parser_dispatch(struct imap_parser *p, unsigned char c)
{
	switch (p->state) {
	case IMAP_PARSER_S_TAG:
		imap_parser_tag(p, c);
		break;
	case IMAP_PARSER_S_NAME_SP:
	case IMAP_PARSER_S_NAME:
		imap_parser_name(p, c);
		break;
	case IMAP_PARSER_S_ARGS:
	case IMAP_PARSER_S_AFTER:
		imap_parser_args(p, c);
		break;
	case IMAP_PARSER_S_ATOM:
		imap_parser_atom(p, c);
		break;
	case IMAP_PARSER_S_SECTION:
	case IMAP_PARSER_S_SECTION_QUOTED:
	case IMAP_PARSER_S_SECTION_ESC:
		imap_parser_section(p, c);
		break;
	case IMAP_PARSER_S_QUOTED:
	case IMAP_PARSER_S_QUOTED_ESC:
		imap_parser_quoted(p, c);
		break;
	case IMAP_PARSER_S_LIT_SIZE:
	case IMAP_PARSER_S_LIT_CLOSE:
	case IMAP_PARSER_S_LIT_EOL:
		imap_parser_lit_syntax(p, c);
		break;
	default:
		log_panic("imap_parser: byte in state %d", (int)p->state);
	}
}

static void
imap_parser_byte(struct imap_parser *p, unsigned char c)
{
	imap_parser_track(p, c);
	if (p->state == IMAP_PARSER_S_SKIP) {
		imap_parser_skip_byte(p, c);
		return;
	}
	if (imap_parser_line_checks(p, c) == 0)
		imap_parser_dispatch(p, c);
	if (p->fresh_fail) {
		/* The byte that failed the command is the first skipped. */
		p->fresh_fail = false;
		imap_parser_skip_byte(p, c);
	}
}

size_t
imap_parser_input(struct imap_parser *p, const unsigned char *data,
    size_t len)
{
	size_t i = 0;

	if (p->state == IMAP_PARSER_S_DONE && p->taken)
		imap_parser_begin(p);
	while (i < len && p->state != IMAP_PARSER_S_DONE &&
	    p->state != IMAP_PARSER_S_FATAL) {
		if (p->state == IMAP_PARSER_S_LIT_DATA ||
		    p->state == IMAP_PARSER_S_LIT_STREAM ||
		    p->state == IMAP_PARSER_S_LIT_DISCARD)
			i += imap_parser_bulk(p, data + i, len - i);
		else
			imap_parser_byte(p, data[i++]);
	}
	p->cmd.bytes += i;
	return i;
}

int
imap_parser_next(struct imap_parser *p, struct imap_cmd **cmd_r)
{
	if (p->state == IMAP_PARSER_S_FATAL) {
		*cmd_r = &p->cmd;
		return -1;
	}
	if (p->state != IMAP_PARSER_S_DONE || p->taken)
		return 0;
	p->taken = true;
	*cmd_r = &p->cmd;
	return p->cmd.error == IMAP_PARSE_ERR_NONE ? 1 : -1;
}

/* Argument accessors. */

static char imap_arg_errbuf[96];

static const char *
imap_arg_error(const struct imap_arg *arg, const char *what)
{
	if (arg == NULL)
		return "Missing argument";
	snprintf(imap_arg_errbuf, sizeof(imap_arg_errbuf), "%s %u: %s",
	    arg->depth == 0 ? "Argument" : "List item", arg->pos, what);
	return imap_arg_errbuf;
}

const struct imap_arg *
imap_cmd_arg(const struct imap_cmd *cmd, unsigned i)
{
	return cmd->args != NULL && i < cmd->argc ? &cmd->args[i] : NULL;
}

int
imap_arg_atom(const struct imap_arg *arg, const char **atom_r,
    const char **error_r)
{
	if (arg == NULL ||
	    (arg->type != IMAP_ARG_ATOM && arg->type != IMAP_ARG_NIL)) {
		*error_r = imap_arg_error(arg, "atom expected");
		return -1;
	}
	*atom_r = (const char *)arg->data;
	return 0;
}

/* imap_arg_text: a string or a literal as text (no NUL, no literal8). */
static int
imap_arg_text(const struct imap_arg *arg, const char **str_r,
    const char **error_r)
{
	if (arg->type == IMAP_ARG_LITERAL && arg->literal8) {
		*error_r = imap_arg_error(arg, "binary literal not allowed");
		return -1;
	}
	if (memchr(arg->data, '\0', arg->len) != NULL) {
		*error_r = imap_arg_error(arg, "NUL in string");
		return -1;
	}
	*str_r = (const char *)arg->data;
	return 0;
}

static bool
imap_arg_is_string(const struct imap_arg *arg)
{
	return arg != NULL && (arg->type == IMAP_ARG_STRING ||
	    arg->type == IMAP_ARG_LITERAL);
}

static int
imap_arg_astring_chars(const struct imap_arg *arg, const char **str_r,
    const char **error_r, bool wildcards)
{
	size_t i;
	unsigned char c;

	if (imap_arg_is_string(arg))
		return imap_arg_text(arg, str_r, error_r);
	if (arg == NULL ||
	    (arg->type != IMAP_ARG_ATOM && arg->type != IMAP_ARG_NIL)) {
		*error_r = imap_arg_error(arg, "string expected");
		return -1;
	}
	for (i = 0; i < arg->len; i++) {
		c = arg->data[i];
		if (!imap_parser_is_atom_char(c) || c == '\\' ||
		    (!wildcards && (c == '%' || c == '*'))) {
			*error_r = imap_arg_error(arg,
			    "invalid character in atom");
			return -1;
		}
	}
	*str_r = (const char *)arg->data;
	return 0;
}

int
imap_arg_astring(const struct imap_arg *arg, const char **str_r,
    const char **error_r)
{
	return imap_arg_astring_chars(arg, str_r, error_r, false);
}

int
imap_arg_list_mailbox(const struct imap_arg *arg, const char **str_r,
    const char **error_r)
{
	return imap_arg_astring_chars(arg, str_r, error_r, true);
}

int
imap_arg_string(const struct imap_arg *arg, const char **str_r,
    const char **error_r)
{
	if (!imap_arg_is_string(arg)) {
		*error_r = imap_arg_error(arg, "string expected");
		return -1;
	}
	return imap_arg_text(arg, str_r, error_r);
}

int
imap_arg_nstring(const struct imap_arg *arg, const char **str_r,
    const char **error_r)
{
	if (arg != NULL && arg->type == IMAP_ARG_NIL) {
		*str_r = NULL;
		return 0;
	}
	if (!imap_arg_is_string(arg)) {
		*error_r = imap_arg_error(arg, "string or NIL expected");
		return -1;
	}
	return imap_arg_text(arg, str_r, error_r);
}

int
imap_arg_data(const struct imap_arg *arg, const unsigned char **data_r,
    size_t *len_r, const char **error_r)
{
	if (!imap_arg_is_string(arg)) {
		*error_r = imap_arg_error(arg, "string expected");
		return -1;
	}
	*data_r = arg->data;
	*len_r = arg->len;
	return 0;
}

static int
imap_arg_digits(const struct imap_arg *arg, uint64_t max, uint64_t *num_r,
    const char **error_r)
{
	uint64_t n = 0;
	unsigned d;
	size_t i;

	if (arg == NULL || arg->type != IMAP_ARG_ATOM || arg->len == 0) {
		*error_r = imap_arg_error(arg, "number expected");
		return -1;
	}
	for (i = 0; i < arg->len; i++) {
		if (arg->data[i] < '0' || arg->data[i] > '9') {
			*error_r = imap_arg_error(arg, "number expected");
			return -1;
		}
		d = arg->data[i] - '0';
		if (n > (max - d) / 10) {
			*error_r = imap_arg_error(arg, "number too big");
			return -1;
		}
		n = n * 10 + d;
	}
	*num_r = n;
	return 0;
}

int
imap_arg_number(const struct imap_arg *arg, uint32_t *num_r,
    const char **error_r)
{
	uint64_t n;

	if (imap_arg_digits(arg, UINT32_MAX, &n, error_r) < 0)
		return -1;
	*num_r = (uint32_t)n;
	return 0;
}

int
imap_arg_number64(const struct imap_arg *arg, uint64_t *num_r,
    const char **error_r)
{
	return imap_arg_digits(arg, (uint64_t)INT64_MAX, num_r, error_r);
}

int
imap_arg_list(const struct imap_arg *arg, const struct imap_arg **list_r,
    unsigned *count_r, const char **error_r)
{
	if (arg == NULL || arg->type != IMAP_ARG_LIST) {
		*error_r = imap_arg_error(arg, "list expected");
		return -1;
	}
	*list_r = arg->list;
	*count_r = arg->count;
	return 0;
}
