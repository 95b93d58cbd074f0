/*
 * imap_bodystruct.c: BODY and BODYSTRUCTURE from a MIME tree (rules in
 * imap_bodystruct.h).
 *
 * SECURITY: the tree comes from a message (through mime_parse) or from
 * the index (mime_deserialize, which checks every length, count and the
 * depth and part limits), so its shape is bounded but its strings are
 * untrusted: every one goes through imap_write, which quotes or
 * literalizes it. Counts are trusted as the tree states them (nchildren
 * matches the children array). Recursion is bounded by MIME_MAX_DEPTH
 * here as well, whatever tree is passed.
 */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "mime.h"
#include "server/imap/imap_bodystruct.h"
#include "server/imap/imap_envelope.h"
#include "server/imap/imap_write.h"

static void imap_bs_part(struct imap_write *w, const struct mime_part *part,
    bool ext, unsigned depth);

/*
 * Parameters
 */

static bool
imap_bs_printable(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	for (; *p != '\0'; p++)
		if (*p < 0x20 || *p > 0x7e)
			return false;
	return true;
}

static bool
imap_bs_utf8_charset(const char *cs)
{
	return strcasecmp(cs, "utf-8") == 0 || strcasecmp(cs, "utf8") == 0 ||
	    strcasecmp(cs, "us-ascii") == 0;
}

/* imap_bs_attribute_char: RFC 2231 attribute-char: a CHAR other than
 * SPACE, CTLs, '*', '\'', '%' and the tspecials of RFC 2045. */
static bool
imap_bs_attribute_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return strchr("*'%()<>@,;:\\\"/[]?=", c) == NULL;
}

/* imap_bs_param_2231: name* and charset''%XX... for a value that cannot
 * go as it is. The scratch buffer has no maximum of its own: its size is
 * three times the value at most, and the writer's limit applies after. */
static void
imap_bs_param_2231(struct imap_write *w, const struct mime_param *prm)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *v = (const unsigned char *)prm->value;
	struct buf b;
	char pct[3] = { '%', 0, 0 };

	buf_init(&b, SIZE_MAX);
	buf_append_str(&b, prm->name);
	buf_append_byte(&b, '*');
	imap_write_string_mem(w, b.data, b.len);
	buf_truncate(&b, 0);
	buf_append_str(&b, prm->charset);
	buf_append_str(&b, "''");
	for (; *v != '\0'; v++) {
		if (imap_bs_attribute_char(*v)) {
			buf_append_byte(&b, *v);
			continue;
		}
		pct[1] = hex[*v >> 4];
		pct[2] = hex[*v & 0x0f];
		buf_append(&b, pct, 3);
	}
	imap_write_string_mem(w, b.data, b.len);
	buf_free(&b);
}

static bool
imap_bs_latin1_charset(const char *cs)
{
	return strcasecmp(cs, "iso-8859-1") == 0 ||
	    strcasecmp(cs, "iso8859-1") == 0 || strcasecmp(cs, "latin1") == 0;
}

/* imap_bs_param_latin1: name and the ISO-8859-1 value as UTF-8 (every
 * byte is the code point of the same number). */
static void
imap_bs_param_latin1(struct imap_write *w, const struct mime_param *prm)
{
	const unsigned char *v = (const unsigned char *)prm->value;
	unsigned char u[2];
	struct buf b;

	buf_init(&b, SIZE_MAX);
	for (; *v != '\0'; v++) {
		if (*v < 0x80) {
			buf_append_byte(&b, *v);
			continue;
		}
		u[0] = 0xc0 | (*v >> 6);
		u[1] = 0x80 | (*v & 0x3f);
		buf_append(&b, u, 2);
	}
	imap_write_string(w, prm->name);
	imap_write_string_mem(w, b.data, b.len);
	buf_free(&b);
}

static void
imap_bs_param(struct imap_write *w, const struct mime_param *prm)
{
	bool utf8 = (w->flags & IMAP_WRITE_UTF8) != 0;

	if (prm->charset == NULL || imap_bs_printable(prm->value) ||
	    (utf8 && imap_bs_utf8_charset(prm->charset) &&
	    imap_write_utf8_valid((const unsigned char *)prm->value,
	    strlen(prm->value)))) {
		imap_write_string(w, prm->name);
		imap_write_string(w, prm->value);
	} else if (utf8 && imap_bs_latin1_charset(prm->charset)) {
		imap_bs_param_latin1(w, prm);
	} else {
		imap_bs_param_2231(w, prm);
	}
}

static bool
imap_bs_has_param(const struct mime_param *params, size_t n,
    const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(params[i].name, name) == 0)
			return true;
	return false;
}

/* imap_bs_params: body-fld-param; default_charset adds the text default
 * when there is no charset parameter. */
static void
imap_bs_params(struct imap_write *w, const struct mime_param *params,
    size_t n, bool default_charset)
{
	size_t i;

	if (default_charset && imap_bs_has_param(params, n, "charset"))
		default_charset = false;
	if (n == 0 && !default_charset) {
		imap_write_nil(w);
		return;
	}
	imap_write_list_open(w);
	for (i = 0; i < n; i++)
		imap_bs_param(w, &params[i]);
	if (default_charset) {
		imap_write_string(w, "charset");
		imap_write_string(w, "us-ascii");
	}
	imap_write_list_close(w);
}

/*
 * Extension data
 */

static void
imap_bs_disposition(struct imap_write *w, const struct mime_part *part)
{
	if (part->disposition == NULL) {
		imap_write_nil(w);
		return;
	}
	imap_write_list_open(w);
	imap_write_string(w, part->disposition);
	imap_bs_params(w, part->disp_params, part->ndisp_params, false);
	imap_write_list_close(w);
}

/* imap_bs_lang_next: the next language tag in s from *i: its start and
 * length, false when there is none left. Commas and white space separate;
 * comments are skipped. */
static bool
imap_bs_lang_next(const char *s, size_t *i, size_t *start_r, size_t *len_r)
{
	size_t depth = 0;

	while (s[*i] != '\0') {
		if (s[*i] == '(')
			depth++;
		else if (s[*i] == ')' && depth > 0)
			depth--;
		else if (depth == 0 && strchr(", \t\r\n)", s[*i]) == NULL)
			break;
		(*i)++;
	}
	if (s[*i] == '\0')
		return false;
	*start_r = *i;
	while (s[*i] != '\0' && strchr(", \t\r\n()", s[*i]) == NULL)
		(*i)++;
	*len_r = *i - *start_r;
	return true;
}

static void
imap_bs_language(struct imap_write *w, const char *lang)
{
	size_t i = 0, start, len, n = 0;

	if (lang != NULL)
		while (imap_bs_lang_next(lang, &i, &start, &len))
			n++;
	if (n == 0) {
		imap_write_nil(w);
		return;
	}
	if (n > 1)
		imap_write_list_open(w);
	i = 0;
	while (imap_bs_lang_next(lang, &i, &start, &len))
		imap_write_string_mem(w, (const unsigned char *)lang + start,
		    len);
	if (n > 1)
		imap_write_list_close(w);
}

/* imap_bs_ext_tail: body-fld-dsp SP body-fld-lang SP body-fld-loc, the
 * end of the extension data of every kind of part. */
static void
imap_bs_ext_tail(struct imap_write *w, const struct mime_part *part)
{
	imap_bs_disposition(w, part);
	imap_bs_language(w, part->language);
	imap_write_nstring(w, part->location);
}

/*
 * Parts
 */

/* What a container holds in the output when its content cannot be
 * written (a multipart without parts, a message without its message, or
 * any container on level MIME_MAX_DEPTH): one empty text/plain part, as
 * Dovecot does, so that the syntax still matches the part's type. */
static const struct mime_part imap_bs_empty = {
	.type = (char *)"text",
	.subtype = (char *)"plain",
	.encoding = (char *)"7bit",
};

static bool
imap_bs_is_message(const struct imap_write *w, const struct mime_part *part)
{
	if (strcmp(part->type, "message") != 0)
		return false;
	if (strcmp(part->subtype, "rfc822") == 0)
		return true;
	return strcmp(part->subtype, "global") == 0 &&
	    (w->flags & IMAP_WRITE_REV2) != 0;
}

/* imap_bs_fields: body-fields, preceded by the media type. */
static void
imap_bs_fields(struct imap_write *w, const struct mime_part *part,
    bool text)
{
	imap_write_string(w, part->type);
	imap_write_string(w, part->subtype);
	imap_bs_params(w, part->params, part->nparams, text);
	imap_write_nstring(w, part->id);
	imap_write_nstring(w, part->description);
	/* Never NULL from mime_parse; a damaged blob may lack it. */
	imap_write_string(w, part->encoding != NULL ? part->encoding : "7bit");
	imap_write_number(w, part->body_vsize);
}

static void
imap_bs_multipart(struct imap_write *w, const struct mime_part *part,
    bool ext, unsigned depth)
{
	size_t i;

	if (depth >= MIME_MAX_DEPTH || part->nchildren == 0) {
		imap_bs_part(w, &imap_bs_empty, ext, depth + 1);
	} else {
		for (i = 0; i < part->nchildren; i++) {
			imap_write_adjacent(w);
			imap_bs_part(w, &part->children[i], ext, depth + 1);
		}
	}
	imap_write_string(w, part->subtype);
	if (!ext)
		return;
	imap_bs_params(w, part->params, part->nparams, false);
	imap_bs_ext_tail(w, part);
}

static void
imap_bs_message(struct imap_write *w, const struct mime_part *part,
    bool ext, unsigned depth)
{
	const struct mime_part *msg = &imap_bs_empty;

	if (depth < MIME_MAX_DEPTH && part->nchildren == 1)
		msg = &part->children[0];
	imap_bs_fields(w, part, false);
	imap_envelope_write(w, msg->envelope, msg->envelope_len);
	imap_bs_part(w, msg, ext, depth + 1);
	imap_write_number(w, part->body_lines);
	if (!ext)
		return;
	imap_write_nstring(w, part->md5);
	imap_bs_ext_tail(w, part);
}

static void
imap_bs_basic(struct imap_write *w, const struct mime_part *part, bool ext)
{
	bool text = strcmp(part->type, "text") == 0;

	imap_bs_fields(w, part, text);
	if (text)
		imap_write_number(w, part->body_lines);
	if (!ext)
		return;
	imap_write_nstring(w, part->md5);
	imap_bs_ext_tail(w, part);
}

static void
imap_bs_part(struct imap_write *w, const struct mime_part *part, bool ext,
    unsigned depth)
{
	imap_write_list_open(w);
	if (strcmp(part->type, "multipart") == 0)
		imap_bs_multipart(w, part, ext, depth);
	else if (imap_bs_is_message(w, part))
		imap_bs_message(w, part, ext, depth);
	else
		imap_bs_basic(w, part, ext);
	imap_write_list_close(w);
}

int
imap_bodystruct_write(struct imap_write *w, const struct mime_part *part,
    bool ext)
{
	imap_bs_part(w, part, ext, 1);
	return w->failed ? -1 : 0;
}

int
imap_bodystruct_write_blob(struct imap_write *w, const unsigned char *blob,
    size_t len, bool ext, const char **error_r)
{
	struct mime_part *root;
	int ret;

	if (mime_deserialize(blob, len, &root) < 0) {
		*error_r = "MIME structure in the index is corrupt";
		return -1;
	}
	ret = imap_bodystruct_write(w, root, ext);
	mime_part_free(&root);
	if (ret < 0)
		*error_r = "response too large";
	return ret;
}
