#!/usr/bin/env python3
"""report.py: turn the rows deliver.sh, reindex.sh and pop3.sh wrote into
tables.

  report.py [--info FILE] RESULTS.tsv...

Each row is tab-separated: BENCH FORMAT FSYNC MDA STEP N SECONDS STATUS
NOTE, where STATUS is ok, FAIL or n/a and SECONDS is "-" unless ok.  With
several rows for one cell (REPEAT > 1) the median is shown.  A cell with
any failed pass shows FAIL: a number from a broken run would mislead.
pop3.sh's rows (BENCH "pop3", see pop3_client.py) use the FSYNC column
for a variant (plain or tls, the mailbox size, "-") and MDA for the
server; SECONDS is KiB or processes per connection in its idle-* steps,
and N is bytes in its retr* steps.
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


def pop3_ratio(lo, d):
	"""loft / dovecot of one measured quantity; "-" unless both are
	above zero (memory growth can be noise around zero)."""
	if lo is None or d is None or lo < 0 or d <= 0:
		return "-"
	return ratio(lo, d)


def pop3_cells(cells, fmt, variant, step):
	d = cells.get(("pop3", fmt, variant, "dovecot", step))
	lo = cells.get(("pop3", fmt, variant, "loft", step))
	return d, lo


def pop3_row(cells, fmt, variant, step, show, first):
	"""[first..., dovecot, loft, loft/dovecot] for one measured step;
	show(cell) is the text of a number."""
	d, lo = pop3_cells(cells, fmt, variant, step)
	dv = d.seconds() if d else None
	lv = lo.seconds() if lo else None
	# What stays after the sessions is near zero on one side: no ratio.
	r = "-" if step.endswith("-kept") else pop3_ratio(lv, dv)
	return first + [show(d) if d else "-", show(lo) if lo else "-", r]


def pop3_show(digits):
	def show(c):
		v = c.seconds()
		return "%.*f" % (digits, v) if v is not None else c.status
	return show


def pop3_mb(c):
	v = c.seconds()
	return "%.1f" % (c.n / v / 1e6) if v else c.status


def pop3(cells, out):
	keys = [k for k in cells if k[0] == "pop3"]
	for fmt in ordered({k[1] for k in keys}, ["maildir", "mbox"]):
		fk = [k for k in keys if k[1] == fmt]
		has = {(k[2], k[4]) for k in fk}
		out.append("POP3, %s: loftd against Dovecot, same run; "
		           "loft/dovecot is loft's number divided by "
		           "Dovecot's" % fmt)
		out.append("")
		rows = [["login", "measure", "dovecot", "loft", "loft/dovecot"]]
		n = 0
		for variant in ("plain", "tls"):
			for step, name in (("login-median", "median"),
			                   ("login-p90", "90th percentile")):
				if (variant, step) in has:
					rows.append(pop3_row(cells, fmt, variant, step,
					                     pop3_show(4),
					                     [variant, name]))
					n = max(n, max(cells[k].n for k in fk
					               if k[4] == step))
		if len(rows) > 1:
			out.append("Login latency, %d sequential sessions "
			           "(connect, greeting, USER, PASS, QUIT): seconds, "
			           "lower is better (loft/dovecot below 1: loft is "
			           "faster)" % n)
			out.append(table(rows, 2))
			out.append("")
		rows = [["messages", "run", "step", "dovecot", "loft",
		         "loft/dovecot"]]
		sizes = sorted({k[2] for k in fk if k[2].isdigit()}, key=int)
		for variant in sizes:
			for run, name in (("first", "first, no index"),
			                  ("second", "second")):
				for step in ("login", "uidl", "list", "total"):
					if (variant, run + "-" + step) not in has:
						continue
					rows.append(pop3_row(
					    cells, fmt, variant, run + "-" + step,
					    pop3_show(3), [variant, name, step]))
					name = ""
		if len(rows) > 1:
			out.append("UIDL and LIST, one session each (login, UIDL, "
			           "LIST, QUIT; the first login builds the index): "
			           "seconds, lower is better (below 1: loft is "
			           "faster)")
			out.append(table(rows, 3))
			out.append("")
		rows = [["messages", "commands", "dovecot", "loft",
		         "loft/dovecot"]]
		for variant in sizes:
			steps = sorted({k[4] for k in fk if k[2] == variant
			                and k[4].startswith("retr")}, key=len)
			for step in steps:
				d, lo = pop3_cells(cells, fmt, variant, step)
				rate = [c.rate() if c else None for c in (d, lo)]
				how = ("one at a time" if step == "retr" else
				       step[len("retr-window"):] + " in flight")
				rows.append([variant, how,
				             pop3_mb(d) if d else "-",
				             pop3_mb(lo) if lo else "-",
				             pop3_ratio(rate[1], rate[0])])
		if len(rows) > 1:
			out.append("RETR of every message in one session: MB/s "
			           "of message data, higher is better (above 1: "
			           "loft is faster)")
			out.append(table(rows, 2))
			out.append("")
		rows = [["connections", "measure", "dovecot", "loft",
		         "loft/dovecot"]]
		n = 0
		for mode, name in (("noauth", "not logged in"),
		                   ("auth", "logged in"),
		                   ("owners", "logged in, own uids")):
			for m, what, digits in (("pss", "PSS KiB", 1),
			                        ("anon", "of which anon", 1),
			                        ("rss", "RSS KiB", 1),
			                        ("procs", "processes", 2),
			                        ("kept", "PSS KiB kept after", 1)):
				step = "idle-%s-%s" % (mode, m)
				if ("-", step) not in has:
					continue
				rows.append(pop3_row(cells, fmt, "-", step,
				                     pop3_show(digits), [name, what]))
				name = ""
				n = max(n, max(cells[k].n for k in fk
				               if k[4] == step))
		if len(rows) > 1:
			out.append("Memory per idle connection, %d connections: "
			           "growth of the whole process tree divided by "
			           "%d, lower is better (below 1: loft uses less); "
			           "target for loft: 64 KiB PSS per logged-in "
			           "session" % (n, n))
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
			                      "" if k[2] == "-" else
			                      (" " if k[0] == "pop3" else " fsync ")
			                      + k[2],
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
	pop3(cells, out)
	notes(cells, out)
	sys.stdout.write("\n".join(out))
	return 0


if __name__ == "__main__":
	sys.exit(main())
