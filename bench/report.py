#!/usr/bin/env python3
"""report.py: turn the rows deliver.sh and reindex.sh wrote into tables.

  report.py [--info FILE] RESULTS.tsv...

Each row is tab-separated: BENCH FORMAT FSYNC MDA STEP N SECONDS STATUS
NOTE, where STATUS is ok, FAIL or n/a and SECONDS is "-" unless ok.  With
several rows for one cell (REPEAT > 1) the median is shown.  A cell with
any failed pass shows FAIL: a number from a broken run would mislead.
The --info file holds "key<TAB>value" lines printed above the tables.
Input trusted: files the harness wrote.
"""

import argparse
import statistics
import sys


class Cell:
	def __init__(self):
		self.secs = []
		self.n = 0
		self.status = "ok"
		self.notes = []

	def add(self, n, secs, status, note):
		self.n = n
		if status == "ok":
			self.secs.append(float(secs))
		elif self.status != "FAIL":
			self.status = status
		if note and note not in self.notes:
			self.notes.append(note)

	def seconds(self):
		if self.status != "ok" or not self.secs:
			return None
		return statistics.median(self.secs)

	def rate(self):
		s = self.seconds()
		return None if s is None or s <= 0 else self.n / s

	def show_rate(self):
		r = self.rate()
		return "%.1f" % r if r is not None else self.status

	def show_secs(self):
		s = self.seconds()
		return "%.2f" % s if s is not None else self.status


def load(paths):
	cells = {}
	for p in paths:
		with open(p) as f:
			for line in f:
				line = line.rstrip("\n")
				if not line:
					continue
				parts = line.split("\t")
				parts += [""] * (9 - len(parts))
				bench, fmt, fsync, mda, step, n, secs, status, note = \
				    parts[:9]
				try:
					n = int(n)
					if status == "ok":
						float(secs)
				except ValueError:
					sys.stderr.write("report.py: %s: not a result "
					                 "row: %s\n" % (p, line[:80]))
					continue
				key = (bench, fmt, fsync, mda, step)
				cells.setdefault(key, Cell()).add(n, secs, status, note)
	return cells


def ratio(a, b):
	"""a / b as "1.23x", or "-" when either side has no number."""
	if a is None or b is None or b == 0:
		return "-"
	r = a / b
	# Two significant digits at least, however lopsided the ratio.
	return "%.*fx" % (2 if r >= 0.1 else 3 if r >= 0.01 else 4, r)


def table(rows, left=1):
	"""rows as text; the first left columns flush left, others right."""
	widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
	return "\n".join("  " + "  ".join(
	    ("%-*s" if k < left else "%*s") % (widths[k], c)
	    for k, c in enumerate(r)).rstrip() for r in rows)


def ordered(values, first):
	return [v for v in first if v in values] + \
	    sorted(v for v in values if v not in first)


def delivery(cells, fsync, out):
	keys = [k for k in cells if k[0] == "deliver" and k[2] == fsync]
	if not keys:
		return
	fmts = ordered({k[1] for k in keys}, ["maildir", "mbox"])
	mdas = ordered({k[3] for k in keys}, ["dovecot", "loft"])
	n = max(cells[k].n for k in keys)
	modes = {}
	for k in keys:
		for note in cells[k].notes:
			if note.startswith("mail_fsync="):
				modes.setdefault(k[3], note.split(";")[0])
	how = ", ".join("%s %s" % (m, modes[m]) for m in mdas if m in modes)
	out.append("Delivery, fsync %s (%s): messages/s, higher is better, "
	           "%d per pass" % (fsync, how, n))
	names = {"dovecot": "dovecot-lda", "loft": "loft-deliver",
	         "dovecot-always": "dovecot-lda always"}
	head = ["format"] + [names.get(m, m) for m in mdas] + ["loft/dovecot"]
	rows = [head]
	for fmt in fmts:
		row = [fmt]
		for m in mdas:
			c = cells.get(("deliver", fmt, fsync, m, "deliver"))
			row.append(c.show_rate() if c else "-")
		d = cells.get(("deliver", fmt, fsync, "dovecot", "deliver"))
		lo = cells.get(("deliver", fmt, fsync, "loft", "deliver"))
		row.append(ratio(lo.rate() if lo else None,
		                 d.rate() if d else None))
		rows.append(row)
	out.append(table(rows))
	out.append("")


STEPS = {
    "first": "first run, no index",
    "second": "second run, index exists",
    "index": "doveadm index (reads every message)",
}


def reindex(cells, out):
	keys = [k for k in cells if k[0] == "reindex"]
	if not keys:
		return
	n = max(cells[k].n for k in keys)
	out.append("Reindex of %d small messages: seconds, lower is better; "
	           "loft/dovecot is the speed ratio" % n)
	head = ["format", "step", "dovecot", "loft", "loft/dovecot"]
	rows = [head]
	fmts = ordered({k[1] for k in keys}, ["maildir", "mbox"])
	for fmt in fmts:
		steps = ordered({k[4] for k in keys if k[1] == fmt},
		                ["first", "second", "index"])
		for step in steps:
			d = cells.get(("reindex", fmt, "-", "dovecot", step))
			lo = cells.get(("reindex", fmt, "-", "loft", step))
			rows.append([fmt, STEPS.get(step, step),
			             d.show_secs() if d else "-",
			             lo.show_secs() if lo else "-",
			             ratio(d.seconds() if d else None,
			                   lo.seconds() if lo else None)])
	out.append(table(rows, 2))
	out.append("")


def notes(cells, out):
	"""Why a cell has no number, each reason once."""
	why = {}
	for k in sorted(cells):
		c = cells[k]
		if c.status == "ok":
			continue
		# "mail_fsync=..." alone says how the pass ran, not why it
		# failed; keep only the reasons after it.
		reasons = [x.split("; ", 1)[1] if x.startswith("mail_fsync=")
		           and "; " in x else x for x in c.notes
		           if not x.startswith("mail_fsync=") or "; " in x]
		for x in reasons or c.notes or [""]:
			why.setdefault((c.status, x), []).append(
			    "%s %s%s %s%s" % (k[0], k[1],
			                      "" if k[2] == "-" else " fsync " + k[2],
			                      k[3], "" if k[4] == k[0] else
			                      " " + k[4]))
	if not why:
		return
	out.append("Notes:")
	for (status, x), where in why.items():
		out.append("  %s: %s" % (status, x))
		out.append("    in: %s" % ", ".join(where))
	out.append("")


def main():
	ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
	ap.add_argument("--info")
	ap.add_argument("results", nargs="+")
	args = ap.parse_args()
	out = []
	if args.info:
		with open(args.info) as f:
			for line in f:
				key, _, value = line.rstrip("\n").partition("\t")
				out.append("%-8s %s" % (key, value))
		out.append("")
	cells = load(args.results)
	delivery(cells, "on", out)
	delivery(cells, "off", out)
	reindex(cells, out)
	notes(cells, out)
	sys.stdout.write("\n".join(out))
	return 0


if __name__ == "__main__":
	sys.exit(main())
