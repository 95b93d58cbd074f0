/*
 * Unit tests for server/imap/imap_seqset.c: parsing with "*" resolved
 * (n:* past the end, an empty mailbox), "$", merging and sorting,
 * syntax errors, the range bound at N and N + 1, 1:4294967295 as one
 * range, membership, iteration to 4294967295 without wrapping,
 * truncation, insertion checked against a bitmap, and formatting (sets
 * and number lists) with bounded output at N and N + 1.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "server/imap/imap_seqset.h"
#include "tap.h"

/* fmt: the set as text, in a static buffer. */
static const char *
fmt(const struct imap_seqset *set)
{
	static char out[4096];
	struct buf b;

	buf_init(&b, sizeof(out) - 1);
	if (imap_seqset_format(set, &b) < 0)
		snprintf(out, sizeof(out), "(too long)");
	else
		snprintf(out, sizeof(out), "%s", buf_cstr(&b));
	buf_free(&b);
	return out;
}

/* parses: text with max gives want ("" for an empty set). */
static void
parses(const char *text, uint32_t max, const char *want)
{
	struct imap_seqset set;
	const char *err = NULL;
	int r;

	imap_seqset_init(&set);
	r = imap_seqset_parse(&set, text, max, &err);
	if (!ok(r == 0 && strcmp(fmt(&set), want) == 0,
	    "\"%s\" with max %u is \"%s\"", text, max, want))
		diag("returned %d (%s), set \"%s\"", r, err ? err : "",
		    fmt(&set));
	imap_seqset_deinit(&set);
}

static void
fails(const char *text, const char *want)
{
	struct imap_seqset set;
	const char *err = "";
	int r;

	imap_seqset_init(&set);
	imap_seqset_add(&set, 1, 5, &err);
	set.searchres = true;
	r = imap_seqset_parse(&set, text, 100, &err);
	if (!ok(r == -1 && strcmp(err, want) == 0 && set.count == 0 &&
	    !set.searchres, "\"%s\" fails: %s", text, want))
		diag("returned %d, \"%s\", %u ranges", r, err, set.count);
	imap_seqset_deinit(&set);
}

static void
test_parse(void)
{
	struct imap_seqset set;
	const char *err;

	parses("1:3,7,9:*", 20, "1:3,7,9:20");
	parses("3:1", 20, "1:3");
	parses("*:5", 10, "5:10");
	parses("5:*", 3, "3");
	parses("4294967295:*", 3, "3");
	parses("*", 10, "10");
	parses("*:*", 10, "10");
	parses("*", 0, "");
	parses("1:*", 0, "");
	parses("1,5:*", 0, "1");
	parses("50", 10, "50");		/* no "*": kept for the engine */
	parses("1:3,4,6,5,10:12,11", 100, "1:6,10:12");
	parses("9,8,7,1,3,2", 100, "1:3,7:9");
	parses("2:4,1:10,3", 100, "1:10");
	parses("1:4294967295", 5, "1:4294967295");
	parses("4294967295", 5, "4294967295");
	parses("4294967295,1:4294967294", 5, "1:4294967295");
	parses("1,$", 5, "1");

	imap_seqset_init(&set);
	ok(imap_seqset_parse(&set, "$", 5, &err) == 0 && set.searchres &&
	    set.count == 0, "\"$\" is the saved result");
	ok(imap_seqset_parse(&set, "1", 5, &err) == 0 && !set.searchres,
	    "parsing again clears it");
	ok(imap_seqset_parse(&set, "1:4294967295", 0, &err) == 0 &&
	    set.count == 1 && imap_seqset_count(&set) == 4294967295ULL,
	    "1:4294967295 is one range of 4294967295 numbers");
	ok(imap_seqset_contains(&set, 1) &&
	    imap_seqset_contains(&set, 4294967295U) &&
	    !imap_seqset_contains(&set, 0), "membership at both ends");
	imap_seqset_deinit(&set);

	fails("", "Invalid sequence set");
	fails("0", "Invalid sequence set");
	fails("01", "Invalid sequence set");
	fails("1:0", "Invalid sequence set");
	fails("1,", "Invalid sequence set");
	fails(",1", "Invalid sequence set");
	fails("1::2", "Invalid sequence set");
	fails("1:", "Invalid sequence set");
	fails("a", "Invalid sequence set");
	fails("-1", "Invalid sequence set");
	fails("1 2", "Invalid sequence set");
	fails("**", "Invalid sequence set");
	fails("1:*:3", "Invalid sequence set");
	fails("$$", "Invalid sequence set");
	fails("4294967296", "Invalid sequence set");
	fails("1:4294967296", "Invalid sequence set");
	fails("99999999999999999999", "Invalid sequence set");
}

/* spaced: "1,3,5,..." with n elements (none merge). */
static char *
spaced(unsigned n)
{
	struct buf b;
	unsigned i;

	buf_init(&b, 16 * (size_t)n + 16);
	for (i = 0; i < n; i++)
		buf_printf(&b, "%s%u", i > 0 ? "," : "", 2 * i + 1);
	return (char *)buf_steal(&b, &(size_t){ 0 });
}

static void
test_bounds(void)
{
	struct imap_seqset set;
	const char *err = NULL;
	char *text;
	unsigned i;

	imap_seqset_init(&set);
	text = spaced(IMAP_SEQSET_RANGES_MAX);
	ok(imap_seqset_parse(&set, text, 0, &err) == 0 &&
	    set.count == IMAP_SEQSET_RANGES_MAX,
	    "IMAP_SEQSET_RANGES_MAX ranges parse");
	ok(imap_seqset_contains(&set, 199999) &&
	    !imap_seqset_contains(&set, 199998) &&
	    imap_seqset_contains(&set, 1) && !imap_seqset_contains(&set, 2),
	    "membership among 100000 ranges");
	free(text);
	text = spaced(IMAP_SEQSET_RANGES_MAX + 1);
	ok(imap_seqset_parse(&set, text, 0, &err) == -1 && set.count == 0,
	    "IMAP_SEQSET_RANGES_MAX + 1 ranges fail");
	is_string(err, "Too many ranges in sequence set", "... message");
	free(text);

	/* Adding: at the bound, only merging additions succeed. */
	imap_seqset_clear(&set);
	for (i = 0; i < IMAP_SEQSET_RANGES_MAX; i++)
		if (imap_seqset_add(&set, 2 * i + 1, 2 * i + 1, &err) < 0)
			break;
	is_int(set.count, IMAP_SEQSET_RANGES_MAX, "added up to the bound");
	ok(imap_seqset_add(&set, 2 * i + 3, 2 * i + 3, &err) == -1 &&
	    set.count == IMAP_SEQSET_RANGES_MAX, "one more range fails");
	is_string(err, "Too many ranges in sequence set", "... message");
	ok(imap_seqset_add(&set, 2 * i, 2 * i, &err) == 0 &&
	    set.count == IMAP_SEQSET_RANGES_MAX &&
	    imap_seqset_last(&set) == 2 * i,
	    "an addition extending the last range works at the bound");
	ok(imap_seqset_add(&set, 2, 2, &err) == 0 &&
	    set.count == IMAP_SEQSET_RANGES_MAX - 1 &&
	    set.ranges[0].lo == 1 && set.ranges[0].hi == 3 &&
	    set.ranges[1].lo == 5,
	    "an addition joining two ranges works at the bound");
	ok(imap_seqset_add(&set, 0, 3, &err) == -1, "0 is refused");
	imap_seqset_deinit(&set);
}

static void
test_add_truncate_iter(void)
{
	struct imap_seqset set;
	struct imap_seqset_iter it;
	const char *err;
	uint32_t n, got[8];
	unsigned k;

	imap_seqset_init(&set);
	imap_seqset_add(&set, 5, 5, &err);
	imap_seqset_add(&set, 6, 6, &err);
	imap_seqset_add(&set, 10, 8, &err);
	is_string(fmt(&set), "5:6,8:10", "ascending adds, one reversed");
	imap_seqset_add(&set, 1, 2, &err);
	imap_seqset_add(&set, 20, 30, &err);
	imap_seqset_add(&set, 7, 7, &err);
	is_string(fmt(&set), "1:2,5:10,20:30", "adds that bridge ranges");
	imap_seqset_add(&set, 3, 25, &err);
	is_string(fmt(&set), "1:30", "one add swallowing several ranges");
	is_int(imap_seqset_last(&set), 30, "last");
	imap_seqset_add(&set, 40, 50, &err);
	imap_seqset_truncate(&set, 45);
	is_string(fmt(&set), "1:30,40:45", "truncate inside a range");
	imap_seqset_truncate(&set, 35);
	is_string(fmt(&set), "1:30", "truncate between ranges");
	imap_seqset_truncate(&set, 0);
	ok(set.count == 0 && imap_seqset_last(&set) == 0, "truncate to 0");

	imap_seqset_parse(&set, "4294967293:*,1,3", 4294967295U, &err);
	imap_seqset_iter_init(&it, &set);
	for (k = 0; k < 8 && imap_seqset_iter_next(&it, &n); k++)
		got[k] = n;
	ok(k == 5 && got[0] == 1 && got[1] == 3 && got[2] == 4294967293U &&
	    got[3] == 4294967294U && got[4] == 4294967295U,
	    "iteration in order, stopping at 4294967295");
	ok(!imap_seqset_iter_next(&it, &n), "and staying stopped");
	imap_seqset_clear(&set);
	imap_seqset_iter_init(&it, &set);
	ok(!imap_seqset_iter_next(&it, &n), "empty set: no numbers");
	imap_seqset_deinit(&set);
}

/* Random additions checked against a bitmap, then a round trip through
 * the text form. */
static void
test_random(void)
{
	enum { N = 2000 };
	static bool bits[N + 2];
	struct imap_seqset set, again;
	struct imap_seqset_iter it;
	const char *err, *text;
	uint32_t x = 88172645, lo, hi, n, prev;
	unsigned round, i, bad = 0, iter_bad = 0;
	bool sorted = true;
	struct buf b;

	imap_seqset_init(&set);
	imap_seqset_init(&again);
	for (round = 0; round < 300; round++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		lo = 1 + x % N;
		hi = lo + (x >> 16) % (round % 3 == 0 ? 40 : 3);
		if (hi > N)
			hi = N;
		imap_seqset_add(&set, round % 2 ? hi : lo, round % 2 ? lo : hi,
		    &err);
		for (i = lo; i <= hi; i++)
			bits[i] = true;
	}
	for (i = 0; i <= N + 1; i++)
		if (imap_seqset_contains(&set, i) != bits[i])
			bad++;
	is_int(bad, 0, "membership matches the bitmap");
	for (i = 1; i < set.count; i++)
		if ((uint64_t)set.ranges[i - 1].hi + 1 >= set.ranges[i].lo)
			sorted = false;
	ok(sorted, "ranges ascending, disjoint, not adjacent (%u)",
	    set.count);
	imap_seqset_iter_init(&it, &set);
	prev = 0;
	i = 0;
	while (imap_seqset_iter_next(&it, &n)) {
		if (n <= prev || !bits[n])
			iter_bad++;
		prev = n;
		i++;
	}
	ok(iter_bad == 0 && i == imap_seqset_count(&set),
	    "iteration gives each member once, in order");
	buf_init(&b, 1 << 16);
	imap_seqset_format(&set, &b);
	text = buf_cstr(&b);
	ok(imap_seqset_parse(&again, text, 0, &err) == 0 &&
	    again.count == set.count && memcmp(again.ranges, set.ranges,
	    set.count * sizeof(*set.ranges)) == 0,
	    "format then parse gives the same ranges");
	buf_free(&b);
	imap_seqset_deinit(&again);
	imap_seqset_deinit(&set);
}

static void
nums_are(const uint32_t *nums, size_t count, const char *want)
{
	struct buf b;

	buf_init(&b, 1024);
	if (!ok(imap_seqset_format_nums(nums, count, &b) == 0 &&
	    strcmp(buf_cstr(&b), want) == 0, "numbers as \"%s\"", want))
		diag("got \"%s\"", buf_cstr(&b));
	buf_free(&b);
}

static void
test_format(void)
{
	static const uint32_t a[] = { 1, 2, 3, 5, 7, 8 };
	static const uint32_t b3[] = { 3, 1, 2 };
	static const uint32_t dup[] = { 1, 1, 2 };
	static const uint32_t top[] = { 4294967294U, 4294967295U, 1 };
	static const uint32_t one[] = { 5 };
	struct imap_seqset set;
	const char *err;
	uint32_t *many;
	struct buf b;
	unsigned i;

	nums_are(a, 6, "1:3,5,7:8");
	nums_are(b3, 3, "3,1:2");
	nums_are(dup, 3, "1,1:2");
	nums_are(top, 3, "4294967294:4294967295,1");
	nums_are(one, 1, "5");
	nums_are(one, 0, "");
	many = calloc(100000, sizeof(*many));
	for (i = 0; i < 100000; i++)
		many[i] = i + 1;
	nums_are(many, 100000, "1:100000");
	free(many);

	/* Bounded output: "1:3,5,7:8" is 9 bytes. */
	buf_init(&b, 9);
	is_int(imap_seqset_format_nums(a, 6, &b), 0, "nums fit in exactly 9");
	buf_free(&b);
	buf_init(&b, 8);
	ok(imap_seqset_format_nums(a, 6, &b) == -1 && b.len == 0,
	    "nums in 8: fails, buffer as before");
	buf_free(&b);
	buf_init(&b, 10);
	buf_append_str(&b, "X");
	imap_seqset_init(&set);
	imap_seqset_parse(&set, "7:8,5,1:3", 10, &err);
	ok(imap_seqset_format(&set, &b) == 0 &&
	    strcmp(buf_cstr(&b), "X1:3,5,7:8") == 0,
	    "set appended, fits exactly");
	buf_free(&b);
	buf_init(&b, 9);
	buf_append_str(&b, "X");
	ok(imap_seqset_format(&set, &b) == -1 &&
	    strcmp(buf_cstr(&b), "X") == 0,
	    "set one byte over: fails, buffer as before");
	buf_free(&b);
	imap_seqset_clear(&set);
	buf_init(&b, 10);
	ok(imap_seqset_format(&set, &b) == 0 && b.len == 0,
	    "empty set: nothing");
	buf_free(&b);
	imap_seqset_deinit(&set);
}

int
main(void)
{
	test_parse();
	test_bounds();
	test_add_truncate_iter();
	test_random();
	test_format();
	return done_testing();
}
