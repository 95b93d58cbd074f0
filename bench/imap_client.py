#!/usr/bin/env python3
"""imap_client.py: the client side of the IMAP benchmark (bench/imap.sh).

Drives one IMAP server on 127.0.0.1 (loftd or Dovecot, the same code for
both), times what it is asked to and checks every answer.  Results go to
stdout as rows, tab-separated, in the form report.py reads:

  imap FORMAT VARIANT SERVER STEP N VALUE STATUS NOTE

VALUE is seconds, except in the idle-* steps (KiB or processes per
session); VARIANT is the number of messages in the mailbox, or "-"; N is
what the step counted (messages, bytes for "bodies", sessions,
deliveries).  A step whose answers were wrong prints FAIL and why instead
of a number, and the program exits 1.

  port [-n K]                 K free loopback ports (bound, then closed)
  wait --port P [--pid PID]   until P accepts connections (PID must live)
  select ... --expect N --run first|second
                              one session: LOGIN, SELECT INBOX, each timed;
                              EXISTS must be N
  sync ... --expect N --corpus DIR
                              Thunderbird's first sync, UID FETCH 1:* of
                              UID, RFC822.SIZE, FLAGS and 14 header fields;
                              then, in a session of its own, its resync,
                              UID FETCH 1:* (FLAGS); every size, flag set
                              and header block checked against the Maildir
                              DIR the mail came from
  search ... --expect N --corpus DIR --plant-every K [--plant-word W]
             [--plant-from A]
                              SEARCH FROM and SEARCH BODY of what corpus.py
                              planted; the hits must be the messages the
                              generator planted, and those whose files hold
                              the word or sender
  bodies ... --expect N --corpus DIR [--limit S]
                              UID FETCH 1:* BODY.PEEK[]: every body byte
                              for byte a message of DIR, of the size
                              RFC822.SIZE gives; FAIL after S seconds
  modify ... --expect N       STORE 1:* +FLAGS (\\Flagged), then STORE
                              +FLAGS (\\Deleted) on every 10th message and
                              EXPUNGE; the flags and the UIDs left checked
  idle ... --count C --users U1,U2,... --pid PID
                              memory of the server's process tree (rss.py)
                              before and with C sessions in IDLE on INBOX
                              (users taken in turn), per session; every
                              session must still answer DONE
  latency ... --user U --messages DIR -n R -- MDA ARGS...
                              a session in IDLE on INBOX; R times: MDA <
                              a message of DIR, timed from its start to the
                              untagged EXISTS; median, 90th percentile
  report [--info FILE] RESULTS...
                              the tables of the imap rows, with the
                              loft/dovecot ratios

Trusted input: the command line and the corpus.  The servers' answers are
checked, not trusted: a tagged answer other than OK ends the step as FAIL.
"""

import argparse
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time

# Its neighbours, without leaving __pycache__ in the tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpus import mboxrd_escape, number_of, planted  # noqa: E402
from pop3_client import cmd_port, cmd_wait, percentile, settled  # noqa: E402

HOST = "127.0.0.1"

# What Thunderbird asks for when it first syncs a folder (its default
# list of header fields).
TB_FIELDS = ("From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID",
             "Priority", "X-Priority", "References", "Newsgroups",
             "In-Reply-To", "Content-Type", "Reply-To")
TB_FETCH = ("UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (%s)]" %
            " ".join(TB_FIELDS))

MAILDIR_FLAGS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered",
                 "S": "\\Seen", "T": "\\Deleted"}

LITERAL = re.compile(rb"\{(\d+)\+?\}$")
TOKEN = re.compile(rb'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|'
                   rb'([^\s()"\[]+(?:\[[^\]]*\])?(?:<[0-9.]+>)?))')


class ImapError(Exception):
	pass


class Literal(bytes):
	"""A literal's bytes, as a token."""


class Client:
	"""One IMAP connection: a receive buffer read by position (messages of
	a big FETCH are not copied around) and numbered tags."""

	def __init__(self, port, timeout=60.0):
		self.buf = bytearray()
		self.pos = 0
		self.scan = 0
		self.tagn = 0
		self.deadline = None
		self.progress = None
		self.received = 0
		self.timeout = timeout
		s = socket.create_connection((HOST, port), timeout)
		s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
		self.s = s

	def fill(self):
		"""More bytes; ImapError past the deadline, if one is set."""
		if self.pos > 1 << 20 and self.pos * 2 > len(self.buf):
			del self.buf[:self.pos]
			self.scan -= self.pos
			self.pos = 0
		if self.deadline is not None:
			left = self.deadline - time.perf_counter()
			if left <= 0:
				raise ImapError("over the time limit" + (
				    self.progress() if self.progress else ""))
			self.s.settimeout(left)
		try:
			data = self.s.recv(1 << 20)
		except socket.timeout:
			raise ImapError("over the time limit" + (
			    self.progress() if self.progress else ""))
		finally:
			if self.deadline is not None:
				self.s.settimeout(self.timeout)
		if not data:
			raise ImapError("connection closed by the server")
		self.received += len(data)
		self.buf += data

	def line(self):
		"""The next CRLF-terminated line, without the CRLF."""
		while True:
			i = self.buf.find(b"\r\n", max(self.pos, self.scan))
			if i >= 0:
				out = bytes(self.buf[self.pos:i])
				self.pos = self.scan = i + 2
				return out
			self.scan = max(self.pos, len(self.buf) - 1)
			self.fill()

	def take(self, n):
		while len(self.buf) - self.pos < n:
			self.fill()
		out = Literal(self.buf[self.pos:self.pos + n])
		self.pos += n
		self.scan = self.pos
		return out

	def response(self):
		"""One response: [text, literal, text, ..., text], the texts
		without CRLF; a literal's "{n}" is cut off the text before it."""
		parts = []
		while True:
			line = self.line()
			m = LITERAL.search(line)
			if not m:
				parts.append(line)
				return parts
			parts.append(line[:m.start()])
			parts.append(self.take(int(m.group(1))))

	def send(self, data):
		self.s.sendall(data)

	def tag(self):
		self.tagn += 1
		return b"a%d" % self.tagn

	def start(self, text):
		"""Send a command; its tag."""
		tag = self.tag()
		self.send(tag + b" " + text.encode() + b"\r\n")
		return tag

	def finish(self, tag, what):
		"""The untagged responses up to the tagged one, which must be
		OK."""
		out = []
		prefix = tag + b" "
		while True:
			try:
				r = self.response()
			except (ImapError, OSError) as e:
				raise ImapError("%s: %s (after %d responses)" % (
				    what, e, len(out)))
			if r[0].startswith(prefix):
				status = r[0][len(prefix):]
				if not status.startswith(b"OK"):
					raise ImapError("%s: %s" % (what, status[:200].decode(
					    "utf-8", "replace")))
				return out
			if r[0].startswith(b"* BYE") and what != "LOGOUT":
				raise ImapError("%s: %s" % (what, r[0][:200].decode(
				    "utf-8", "replace")))
			out.append(r)

	def cmd(self, text, what=None):
		return self.finish(self.start(text), what or text.split()[0])

	def greeting(self):
		r = self.response()
		if not r[0].startswith(b"* OK"):
			raise ImapError("greeting: %r" % r[0][:120])

	def login(self, user, password):
		self.greeting()
		self.cmd("LOGIN %s %s" % (user, password), "LOGIN as " + user)

	def select(self, expect=None):
		"""SELECT INBOX; its EXISTS (which must be expect if given)."""
		return select_exists(self.cmd("SELECT INBOX"), expect)

	def logout(self):
		"""LOGOUT, then wait for the server to close."""
		try:
			self.cmd("LOGOUT")
			self.wait_closed()
		finally:
			self.close()

	def wait_closed(self):
		try:
			while self.s.recv(65536):
				pass
		except OSError:
			pass

	def close(self):
		try:
			self.s.close()
		except OSError:
			pass


def select_exists(untagged, expect):
	exists = uidvalidity = None
	for r in untagged:
		m = re.match(rb"\* (\d+) EXISTS$", r[0])
		if m:
			exists = int(m.group(1))
		m = re.match(rb"\* OK \[UIDVALIDITY (\d+)\]", r[0])
		if m:
			uidvalidity = int(m.group(1))
	if exists is None or uidvalidity is None:
		raise ImapError("SELECT without EXISTS or UIDVALIDITY")
	if expect is not None and exists != expect:
		raise ImapError("SELECT: %d EXISTS, expected %d" % (exists, expect))
	return exists


def tokens(parts):
	"""The tokens of a response: "(" and ")", str for atoms, bytes for
	quoted strings, Literal for literals."""
	out = []
	for part in parts:
		if isinstance(part, Literal):
			out.append(part)
			continue
		pos = 0
		while pos < len(part):
			m = TOKEN.match(part, pos)
			if not m:
				if part[pos:].strip():
					raise ImapError("cannot parse %r" % part[pos:pos + 60])
				break
			pos = m.end()
			if m.group(1):
				out.append("(")
			elif m.group(2):
				out.append(")")
			elif m.group(3) is not None:
				out.append(re.sub(rb"\\(.)", rb"\1", m.group(3)))
			else:
				out.append(m.group(4).decode("latin-1"))
	return out


def nest(toks):
	"""Tokens as nested lists."""
	stack = [[]]
	for t in toks:
		if t == "(":
			stack.append([])
		elif t == ")":
			if len(stack) == 1:
				raise ImapError("unbalanced ) in a response")
			done = stack.pop()
			stack[-1].append(done)
		else:
			stack[-1].append(t)
	if len(stack) != 1:
		raise ImapError("unbalanced ( in a response")
	return stack[0]


def fetch_items(resp):
	"""(sequence number, {ITEM: value}) of an untagged FETCH, or None for
	another response."""
	head = resp[0]
	m = re.match(rb"\* (\d+) FETCH ", head)
	if not m:
		return None
	parts = [head[m.end():]] + resp[1:]
	tree = nest(tokens(parts))
	if len(tree) != 1 or not isinstance(tree[0], list) or \
	    len(tree[0]) % 2:
		raise ImapError("FETCH response %r" % head[:80])
	items = tree[0]
	d = {}
	for k in range(0, len(items), 2):
		key = items[k]
		if not isinstance(key, str):
			raise ImapError("FETCH item name %r" % (key,))
		key = key.upper()
		if key.startswith("BODY[HEADER.FIELDS"):
			key = "HEADER.FIELDS"
		d[key] = items[k + 1]
	return int(m.group(1)), d


def fetches(untagged):
	"""[(seq, items)] of the FETCH responses among untagged."""
	out = []
	for r in untagged:
		f = fetch_items(r)
		if f:
			out.append(f)
	return out


def as_int(v, what):
	if not isinstance(v, str) or not v.isdigit():
		raise ImapError("%s is %r" % (what, v))
	return int(v)


def show_flags(flags):
	return "(%s)" % " ".join(sorted(flags or ()))


def flag_set(v):
	if not isinstance(v, list):
		raise ImapError("FLAGS is %r" % (v,))
	return frozenset(f for f in v if f.lower() != "\\recent")


# The corpus: what each message should look like on the wire.

class Message:
	__slots__ = ("number", "data", "flags", "size", "fields")

	def __init__(self, number, data, flags):
		self.number = number
		self.data = data
		self.flags = flags
		self.size = len(data) + data.count(b"\n")
		self.fields = None

	def escaped_size(self):
		"""The size with body lines "From " escaped as in an mbox
		(Dovecot leaves them escaped, see pop3_client.py)."""
		esc = mboxrd_escape(self.data)
		return len(esc) + esc.count(b"\n")

	def header_fields(self):
		"""BODY[HEADER.FIELDS (TB_FIELDS)] of this message, as RFC 3501
		gives it: the matching fields in their order, CRLF, and the
		empty line."""
		if self.fields is None:
			head = self.data.split(b"\n\n", 1)[0]
			want = {f.lower().encode() for f in TB_FIELDS}
			out, keep = [], False
			for line in head.split(b"\n"):
				if line[:1] in (b" ", b"\t"):
					if keep:
						out.append(line)
					continue
				keep = line.split(b":", 1)[0].strip().lower() in want
				if keep:
					out.append(line)
			self.fields = b"".join(x + b"\r\n" for x in out) + b"\r\n"
		return self.fields

	def body_text(self):
		return self.data.split(b"\n\n", 1)[1] if b"\n\n" in self.data \
		    else b""

	def header(self, name):
		"""The unfolded value of the first header field name."""
		head = self.data.split(b"\n\n", 1)[0]
		m = re.search(rb"^%s:(.*(?:\n[ \t].*)*)" % re.escape(name), head,
		              re.I | re.M)
		return m.group(1).replace(b"\n", b"") if m else b""


def load_corpus(path, fmt):
	"""{number: Message} of the Maildir path (as corpus.py wrote it); the
	flags are the Maildir name's, or none for an mbox (corpus.py writes
	no Status: headers)."""
	out = {}
	for sub in ("cur", "new"):
		d = os.path.join(path, sub)
		for name in os.listdir(d):
			with open(os.path.join(d, name), "rb") as f:
				data = f.read()
			i = number_of(data)
			if i is None or i in out:
				raise ImapError("corpus file %s: no or a repeated "
				                "Message-ID number" % name)
			flags = frozenset()
			if fmt == "maildir" and ":2," in name:
				flags = frozenset(MAILDIR_FLAGS[c] for c in
				                  name.split(":2,", 1)[1]
				                  if c in MAILDIR_FLAGS)
			out[i] = Message(i, data, flags)
	return out


class Rows:
	"""The result rows of one run of this program."""

	def __init__(self, args, variant):
		self.fmt, self.server = args.format, args.server
		self.variant = variant
		self.failed = False
		self.shown = set()

	def add(self, step, n, value, note=""):
		self.shown.add(step)
		print("imap\t%s\t%s\t%s\t%s\t%d\t%s\tok\t%s" % (
		    self.fmt, self.variant, self.server, step, n, value,
		    " ".join(note.split())))

	def fail(self, steps, n, why):
		"""FAIL rows for those of steps that have no row yet."""
		self.failed = True
		why = " ".join(str(why).split())[:400]
		for step in steps:
			if step in self.shown:
				continue
			print("imap\t%s\t%s\t%s\t%s\t%d\t-\tFAIL\t%s" % (
			    self.fmt, self.variant, self.server, step, n, why))

	def done(self):
		sys.stdout.flush()
		return 1 if self.failed else 0


def session(args, user=None, expect=None):
	"""A connection logged in as user (args.user) with INBOX selected."""
	c = Client(args.port, args.timeout)
	c.login(user or args.user, args.password)
	c.select(expect)
	return c


def timed(c, text, what=None):
	"""(seconds, untagged responses) of one command, until its tagged OK;
	parsing is left until after."""
	t0 = time.perf_counter()
	out = c.cmd(text, what)
	return time.perf_counter() - t0, out


def cmd_select(args):
	rows = Rows(args, str(args.expect))
	steps = ["%s-%s" % (args.run, s) for s in ("login", "select", "total")]
	try:
		t0 = time.perf_counter()
		c = Client(args.port, args.timeout)
		c.login(args.user, args.password)
		t1 = time.perf_counter()
		untagged = c.cmd("SELECT INBOX")
		t2 = time.perf_counter()
		exists = select_exists(untagged, args.expect)
		c.logout()
	except (ImapError, OSError) as e:
		rows.fail(steps, args.expect, e)
		return rows.done()
	note = "%d EXISTS" % exists
	for step, secs in zip(steps, (t1 - t0, t2 - t1, t2 - t0)):
		rows.add(step, args.expect, "%.6f" % secs, note)
	return rows.done()


def check_listing(got, expect, what):
	"""got is [(seq, items)]: sequence numbers 1..expect in order, UIDs
	rising; [uid]."""
	if len(got) != expect:
		raise ImapError("%s: %d FETCH responses, expected %d" % (
		    what, len(got), expect))
	uids = []
	for k, (seq, items) in enumerate(got, 1):
		if seq != k:
			raise ImapError("%s: response %d is for message %d" % (
			    what, k, seq))
		uid = as_int(items.get("UID"), "UID of message %d" % k)
		if uids and uid <= uids[-1]:
			raise ImapError("%s: UID %d after UID %d" % (what, uid,
			                                             uids[-1]))
		uids.append(uid)
	return uids


def check_headers(got, want):
	"""Checks the answer to the first-sync FETCH against the corpus want;
	its octets."""
	seen, octets = set(), 0
	for seq, items in got:
		block = items.get("HEADER.FIELDS")
		if not isinstance(block, bytes):
			raise ImapError("message %d: no header fields" % seq)
		i = number_of(block)
		m = want.get(i)
		if m is None or i in seen:
			raise ImapError("message %d: header fields of no or a "
			                "repeated corpus message: %r" % (seq,
			                                                 block[:100]))
		seen.add(i)
		if block != m.header_fields():
			raise ImapError("message %d (corpus %d): header fields "
			                "differ: %r, expected %r" % (
			                    seq, i, block[:300],
			                    m.header_fields()[:300]))
		size = as_int(items.get("RFC822.SIZE"), "RFC822.SIZE")
		if size != m.size and size != m.escaped_size():
			raise ImapError("message %d (corpus %d): RFC822.SIZE %d, "
			                "expected %d" % (seq, i, size, m.size))
		if flag_set(items.get("FLAGS")) != m.flags:
			raise ImapError("message %d (corpus %d): FLAGS %s, expected "
			                "%s" % (seq, i, show_flags(items.get("FLAGS")),
			                        show_flags(m.flags)))
		octets += size
	if len(seen) != len(want):
		raise ImapError("%d corpus messages, %d listed" % (len(want),
		                                                   len(seen)))
	return octets


def cmd_sync(args):
	"""Two sessions: the first sync, then (as Thunderbird's resync loop
	would, later) the flags; the second is measured even when the first
	failed."""
	rows = Rows(args, str(args.expect))
	try:
		want = load_corpus(args.corpus, args.format)
	except (ImapError, OSError) as e:
		rows.fail(("sync-headers", "sync-flags"), args.expect, e)
		return rows.done()
	try:
		c = session(args, expect=args.expect)
		secs, r = timed(c, "UID FETCH 1:* (%s)" % TB_FETCH,
		                "UID FETCH headers")
		c.logout()
		got = fetches(r)
		check_listing(got, args.expect, "UID FETCH headers")
		octets = check_headers(got, want)
		rows.add("sync-headers", args.expect, "%.6f" % secs,
		         "%d messages, %d octets" % (args.expect, octets))
	except (ImapError, OSError) as e:
		rows.fail(["sync-headers"], args.expect, e)
	try:
		c = session(args, expect=args.expect)
		numbers, uids = numbers_by_seq(c, args.expect)
		secs, r = timed(c, "UID FETCH 1:* (FLAGS)", "UID FETCH FLAGS")
		c.logout()
		got = fetches(r)
		if check_listing(got, args.expect, "UID FETCH FLAGS") != uids:
			raise ImapError("UID FETCH FLAGS: other UIDs than FETCH UID")
		for seq, items in got:
			i = numbers[seq - 1]
			if i not in want:
				raise ImapError("message %d: not of the corpus" % seq)
			if flag_set(items.get("FLAGS")) != want[i].flags:
				raise ImapError("UID FETCH FLAGS: message %d (corpus %d) "
				                "has FLAGS %s, expected %s" % (
				                    seq, i, show_flags(items.get("FLAGS")),
				                    show_flags(want[i].flags)))
		rows.add("sync-flags", args.expect, "%.6f" % secs,
		         "%d messages" % args.expect)
	except (ImapError, OSError) as e:
		rows.fail(["sync-flags"], args.expect, e)
	return rows.done()


# What the harness asks outside the timing it asks in chunks, so that a
# server which cannot answer one big FETCH (the step measuring that one
# shows it) can still be measured on the others.
CHUNK = 500


def chunked(c, expect, text, what):
	"""[(seq, items)] of "FETCH a:b ITEMS" over 1..expect, CHUNK at a
	time, checked as a listing of every message."""
	got = []
	for a in range(1, expect + 1, CHUNK):
		b = min(expect, a + CHUNK - 1)
		got += fetches(c.cmd("FETCH %d:%d %s" % (a, b, text), what))
	check_listing(got, expect, what)
	return got


def numbers_by_seq(c, expect):
	"""([corpus number], [UID]) of messages 1..expect (untimed)."""
	out, uids = [], []
	for seq, items in chunked(c, expect, "(UID BODY.PEEK[HEADER.FIELDS "
	                          "(MESSAGE-ID)])", "FETCH MESSAGE-ID"):
		i = number_of(items.get("HEADER.FIELDS") or b"")
		if i is None:
			raise ImapError("message %d: no corpus Message-ID" % seq)
		out.append(i)
		uids.append(int(items["UID"]))
	return out, uids


def search_hits(untagged):
	hits = []
	for r in untagged:
		if r[0].startswith(b"* SEARCH"):
			hits += [int(x) for x in r[0][len(b"* SEARCH"):].split()]
	return hits


def cmd_search(args):
	rows = Rows(args, str(args.expect))
	every = args.plant_every
	try:
		want = load_corpus(args.corpus, args.format)
		# What the generator planted, and what the files hold: the two
		# must agree before a server's answer is judged by them.
		expect = {}
		for kind, test in (
		    ("from", lambda m: args.plant_from.encode() in
		     m.header(b"From").lower()),
		    ("word", lambda m: args.plant_word.encode() in
		     m.body_text().lower())):
			rule = {i for i in want if planted(i, every) == kind}
			files = {i for i, m in want.items() if test(m)}
			if rule != files or not rule:
				raise ImapError("the corpus is not planted: %d messages "
				                "by the rule, %d by their files (%s)" % (
				                    len(rule), len(files), kind))
			expect[kind] = rule
		c = session(args, expect=args.expect)
		by_seq = numbers_by_seq(c, args.expect)[0]
		for step, kind, text in (
		    ("search-from", "from", 'SEARCH FROM "%s"' % args.plant_from),
		    ("search-body", "word", 'SEARCH BODY "%s"' % args.plant_word)):
			secs, untagged = timed(c, text)
			hits = search_hits(untagged)
			if any(h < 1 or h > len(by_seq) for h in hits):
				raise ImapError("%s: message numbers out of range" % text)
			got = {by_seq[h - 1] for h in hits}
			if got != expect[kind] or len(hits) != len(got):
				raise ImapError("%s: %d hits, %d expected, %d of them "
				                "right" % (text, len(hits),
				                           len(expect[kind]),
				                           len(got & expect[kind])))
			rows.add(step, args.expect, "%.6f" % secs, "%d hits" % len(hits))
		c.logout()
	except (ImapError, OSError) as e:
		rows.fail(("search-from", "search-body"), args.expect, e)
	return rows.done()


def cmd_bodies(args):
	rows = Rows(args, str(args.expect))
	step = "bodies"
	count = [0]
	try:
		want = load_corpus(args.corpus, args.format)
		c = session(args, expect=args.expect)
		sizes = {}
		for seq, items in chunked(c, args.expect, "(UID RFC822.SIZE)",
		                          "FETCH RFC822.SIZE"):
			sizes[int(items["UID"])] = as_int(items.get("RFC822.SIZE"),
			                                  "RFC822.SIZE")
		at_start = c.received
		t0 = time.perf_counter()
		if args.limit:
			c.deadline = t0 + args.limit

			def progress():
				took = time.perf_counter() - t0
				got = c.received - at_start
				return (" (%d s): %d octets of the answer in %.1f s, "
				        "%.2f MB/s" % (args.limit, got, took,
				                        got / took / 1e6))
			c.progress = progress
		untagged = c.cmd("UID FETCH 1:* BODY.PEEK[]", "UID FETCH BODY[]")
		t1 = time.perf_counter()
		c.deadline = None
		c.logout()
		got = fetches(untagged)
		check_listing(got, args.expect, "UID FETCH BODY[]")
		seen, total, kept = set(), 0, 0
		for seq, items in got:
			body = items.get("BODY[]")
			if not isinstance(body, bytes):
				raise ImapError("message %d: no BODY[]" % seq)
			uid = int(items["UID"])
			if len(body) != sizes.get(uid):
				raise ImapError("message %d: %d octets, RFC822.SIZE %s" % (
				    seq, len(body), sizes.get(uid)))
			lf = body.replace(b"\r\n", b"\n")
			i = number_of(lf)
			m = want.get(i)
			if m is None or i in seen:
				raise ImapError("message %d: no or a repeated corpus "
				                "message" % seq)
			seen.add(i)
			if lf != m.data:
				if lf == mboxrd_escape(m.data):
					kept += 1
				else:
					raise ImapError("message %d (corpus %d) did not come "
					                "back byte for byte" % (seq, i))
			total += len(body)
			count[0] += 1
		if len(seen) != len(want):
			raise ImapError("%d corpus messages, %d fetched" % (
			    len(want), len(seen)))
	except (ImapError, OSError) as e:
		rows.fail([step], 0, e)
		return rows.done()
	note = "%d messages, %d octets, %.1f MB/s" % (
	    count[0], total, total / (t1 - t0) / 1e6)
	if kept:
		note += '; %d with body lines ">From " as escaped in the mbox' % kept
	rows.add(step, total, "%.6f" % (t1 - t0), note)
	return rows.done()


def uid_flags(c, expect, what):
	"""[(uid, flags)] of every message (untimed)."""
	return [(int(items["UID"]), flag_set(items.get("FLAGS")))
	        for seq, items in chunked(c, expect, "(UID FLAGS)", what)]


def cmd_modify(args):
	rows = Rows(args, str(args.expect))
	steps = ("store-flagged", "store-deleted", "expunge")
	try:
		c = session(args, expect=args.expect)
		before = uid_flags(c, args.expect, "FETCH FLAGS before")
		secs1, r1 = timed(c, "STORE 1:* +FLAGS (\\Flagged)")
		n1 = len(fetches(r1))
		after = uid_flags(c, args.expect, "FETCH FLAGS after STORE")
		wanted = [(u, f | {"\\Flagged"}) for u, f in before]
		if after != wanted:
			bad = [k for k, (a, b) in enumerate(zip(after, wanted), 1)
			       if a != b]
			raise ImapError("after STORE +FLAGS (\\Flagged): %d messages, "
			                "%d with other flags (first: %d)" % (
			                    len(after), len(bad),
			                    bad[0] if bad else 0))
		rows.add(steps[0], args.expect, "%.6f" % secs1,
		         "%d untagged FETCH" % n1)
		doomed = list(range(10, args.expect + 1, 10))
		secs2, r2 = timed(c, "STORE %s +FLAGS (\\Deleted)" % ",".join(
		    map(str, doomed)), "STORE \\Deleted")
		n2 = len(fetches(r2))
		secs3, r3 = timed(c, "EXPUNGE")
		# Apply the EXPUNGE responses in order, as a client must.
		view = [u for u, f in before]
		gone = 0
		for r in r3:
			m = re.match(rb"\* (\d+) EXPUNGE$", r[0])
			if m:
				k = int(m.group(1))
				if k < 1 or k > len(view):
					raise ImapError("* %d EXPUNGE of %d messages" % (
					    k, len(view)))
				del view[k - 1]
				gone += 1
		doomed_uids = {before[k - 1][0] for k in doomed}
		left = [u for u, f in before if u not in doomed_uids]
		if gone != len(doomed) or view != left:
			raise ImapError("EXPUNGE: %d responses for %d messages, the "
			                "view left differs from the expected one" % (
			                    gone, len(doomed)))
		if [u for u, f in uid_flags(c, len(left),
		                             "FETCH after EXPUNGE")] != left:
			raise ImapError("UID FETCH after EXPUNGE: other UIDs than %d "
			                "expected" % len(left))
		c.logout()
	except (ImapError, OSError) as e:
		rows.fail(steps, args.expect, e)
		return rows.done()
	rows.add(steps[1], len(doomed), "%.6f" % secs2,
	         "%d messages, %d untagged FETCH" % (len(doomed), n2))
	rows.add(steps[2], len(doomed), "%.6f" % secs3,
	         "%d messages expunged" % gone)
	return rows.done()


def open_idle(port, timeout, users, password, batch):
	"""Sessions in IDLE on INBOX, one per entry of users, opened batch at
	a time with their commands pipelined across the batch (so that the
	server can use every core)."""
	conns = []
	for b in range(0, len(users), batch):
		group = []
		try:
			for u in users[b:b + batch]:
				group.append((Client(port, timeout), u))
			for c, u in group:
				c.greeting()
			for what in ("LOGIN", "SELECT", "IDLE"):
				for c, u in group:
					text = {"LOGIN": "LOGIN %s %s" % (u, password),
					        "SELECT": "SELECT INBOX",
					        "IDLE": "IDLE"}[what]
					c.pending = c.start(text)
				for c, u in group:
					if what == "IDLE":
						r = c.response()
						if not r[0].startswith(b"+"):
							raise ImapError("IDLE as %s: %r" % (u,
							                                     r[0][:80]))
					else:
						c.finish(c.pending, "%s as %s" % (what, u))
		finally:
			conns += [c for c, u in group]
	return conns


def cmd_idle(args):
	rows = Rows(args, "-")
	steps = ["idle-%s" % s for s in ("pss", "anon", "rss", "procs", "kept")]
	users = [u for u in (args.users or "").split(",") if u]
	if not users:
		rows.fail(steps, args.count, "no users")
		return rows.done()
	soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
	if soft < args.count + 64:
		resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
	conns = []
	try:
		before = settled(args.pid)
		# Each user once, so that the index it builds is counted.
		for u in users:
			session(args, user=u).logout()
		names = [users[k % len(users)] for k in range(args.count)]
		try:
			conns = open_idle(args.port, args.timeout, names,
			                  args.password, args.batch)
		except (ImapError, OSError) as e:
			raise ImapError("session %d of %d: %s" % (
			    len(conns) + 1, args.count, e))
		after = settled(args.pid)
		# Every session must still be there and answer.
		for c in conns:
			c.send(b"DONE\r\n")
		for k, c in enumerate(conns, 1):
			c.finish(c.pending, "DONE of session %d" % k)
		for c in conns:
			c.pending = c.start("LOGOUT")
		for c in conns:
			c.finish(c.pending, "LOGOUT")
			c.wait_closed()
			c.close()
		closed = settled(args.pid)
	except (ImapError, OSError) as e:
		rows.fail(steps, args.count, e)
		for c in conns:
			c.close()
		return rows.done()
	n = args.count
	note = ("users: %d; before: %d processes, RSS %d KiB, PSS %d KiB (anon "
	        "%d, file %d); with %d sessions: %d processes, RSS %d KiB, PSS "
	        "%d KiB (anon %d, file %d); after they closed: %d processes, "
	        "PSS %d KiB" % ((len(users),) + before + (n,) + after +
	                        closed[0:1] + closed[2:3]))
	for step, k, fmt in zip(steps, (2, 3, 1, 0),
	                        ("%.1f", "%.1f", "%.1f", "%.3f")):
		rows.add(step, n, fmt % ((after[k] - before[k]) / n), note)
	rows.add(steps[4], n, "%.1f" % ((closed[2] - before[2]) / n), note)
	return rows.done()


def message_id(path):
	with open(path, "rb") as f:
		m = re.search(rb"^Message-ID:\s*(<[^>]*>)", f.read(), re.I | re.M)
	if not m:
		raise ImapError("%s has no Message-ID" % path)
	return m.group(1)


def deliver(c, mda, path, exists, limit):
	"""Run mda < path while c idles; (seconds to the EXISTS that counts
	exists messages, seconds the MDA ran)."""
	done = {}

	def wait(p, t0):
		p.wait()
		done["t"] = time.perf_counter() - t0
	env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
	       "LC_ALL": "C"}
	with open(path, "rb") as f:
		t0 = time.perf_counter()
		p = subprocess.Popen(mda, stdin=f, stdout=subprocess.DEVNULL,
		                     stderr=subprocess.PIPE, env=env)
	waiter = threading.Thread(target=wait, args=(p, t0))
	waiter.start()
	c.deadline = t0 + limit
	try:
		while True:
			r = c.response()
			m = re.match(rb"\* (\d+) EXISTS$", r[0])
			if m and int(m.group(1)) >= exists:
				latency = time.perf_counter() - t0
				if int(m.group(1)) != exists:
					raise ImapError("EXISTS %s, expected %d" % (
					    m.group(1).decode(), exists))
				break
	except ImapError as e:
		p.kill()
		raise ImapError("no EXISTS %d within %d s: %s" % (exists, limit, e))
	finally:
		c.deadline = None
		waiter.join()
	if p.returncode != 0:
		raise ImapError("%s exited %d: %s" % (
		    os.path.basename(mda[0]), p.returncode,
		    p.stderr.read()[:200].decode("utf-8", "replace")))
	p.stderr.close()
	return latency, done["t"]


def cmd_latency(args):
	rows = Rows(args, "-")
	steps = ("deliver-median", "deliver-p90", "deliver-mda")
	mda = args.mda[1:] if args.mda[:1] == ["--"] else args.mda
	files = sorted(os.path.join(args.messages, f)
	               for f in os.listdir(args.messages) if f.endswith(".eml"))
	if not mda or len(files) < args.n + 1:
		rows.fail(steps, args.n, "no MDA, or fewer than %d messages in %s"
		          % (args.n + 1, args.messages))
		return rows.done()
	files = files[:args.n + 1]
	times, runs = [], []
	try:
		c = Client(args.port, args.timeout)
		c.login(args.user, args.password)
		exists = c.select()
		first = exists + 1
		idle = c.start("IDLE")
		r = c.response()
		if not r[0].startswith(b"+"):
			raise ImapError("IDLE: %r" % r[0][:80])
		for k, path in enumerate(files):
			# Apart, so that each delivery is seen on its own.
			time.sleep(args.gap)
			exists += 1
			try:
				t, run = deliver(c, mda, path, exists, args.limit)
			except (ImapError, OSError) as e:
				raise ImapError("delivery %d of %d: %s" % (
				    k, args.n, e))
			if k:  # the first one only warms up
				times.append(t)
				runs.append(run)
		c.send(b"DONE\r\n")
		c.finish(idle, "IDLE")
		got = fetches(c.cmd("FETCH %d:* (BODY.PEEK[HEADER.FIELDS "
		                    "(MESSAGE-ID)])" % first, "FETCH MESSAGE-ID"))
		ids = [re.search(rb"<[^>]*>", items.get("HEADER.FIELDS") or b"")
		       for seq, items in got]
		ids = [m.group(0) if m else None for m in ids]
		if ids != [message_id(p) for p in files]:
			raise ImapError("the %d messages delivered are not the ones "
			                "in INBOX after them (%d there)" % (
			                    len(files), len(ids)))
		c.logout()
	except (ImapError, OSError) as e:
		rows.fail(steps, args.n, e)
		return rows.done()
	note = ("%d deliveries (and 1 before, untimed): EXISTS after min "
	        "%.4f, max %.4f s; the MDA ran median %.4f s" % (
	            len(times), min(times), max(times), statistics.median(runs)))
	rows.add(steps[0], len(times), "%.6f" % statistics.median(times), note)
	rows.add(steps[1], len(times), "%.6f" % percentile(times, 90), note)
	rows.add(steps[2], len(runs), "%.6f" % statistics.median(runs), note)
	return rows.done()


# The report.

def cmd_report(args):
	import report
	out = []
	if args.info:
		with open(args.info) as f:
			for line in f:
				key, _, value = line.rstrip("\n").partition("\t")
				out.append("%-8s %s" % (key, value))
		out.append("")
	cells = {k: v for k, v in report.load(args.results).items()
	         if k[0] == "imap"}
	report_imap(report, cells, out)
	notes(cells, out)
	sys.stdout.write("\n".join(out) + "\n")
	return 0


def notes(cells, out):
	"""Why a cell has no number, each reason once."""
	why = {}
	for k in sorted(cells):
		c = cells[k]
		if c.status == "ok":
			continue
		for x in c.notes or [""]:
			why.setdefault((c.status, x), []).append(
			    "%s%s %s %s" % (k[1], "" if k[2] == "-" else " " + k[2],
			                    k[3], k[4]))
	if not why:
		return
	out.append("Notes:")
	for (status, x), where in why.items():
		out.append("  %s: %s" % (status, x))
		out.append("    in: %s" % ", ".join(where))
	out.append("")


def report_imap(report, cells, out):
	keys = list(cells)

	def get(fmt, variant, server, step):
		return cells.get(("imap", fmt, variant, server, step))

	def row(fmt, variant, step, show, first, value=None, lower=True):
		"""[first..., dovecot, loft, loft/dovecot]."""
		d, lo = (get(fmt, variant, s, step) for s in ("dovecot", "loft"))
		value = value or (lambda c: c.seconds())
		dv = value(d) if d else None
		lv = value(lo) if lo else None
		r = "-" if step.endswith("-kept") else report.pop3_ratio(lv, dv)
		return first + [show(d) if d else "-", show(lo) if lo else "-", r]

	def secs(digits):
		def show(c):
			v = c.seconds()
			return "%.*f" % (digits, v) if v is not None else c.status
		return show

	def mbs(c):
		v = c.seconds()
		return "%.1f" % (c.n / v / 1e6) if v else c.status

	for fmt in report.ordered({k[1] for k in keys}, ["maildir", "mbox"]):
		fk = [k for k in keys if k[1] == fmt]
		has = {(k[2], k[4]) for k in fk}
		sizes = sorted({k[2] for k in fk if k[2].isdigit()}, key=int)
		out.append("IMAP, %s: loftd against Dovecot, same run; "
		           "loft/dovecot is loft's number divided by Dovecot's" %
		           fmt)
		out.append("")
		rows = [["messages", "run", "step", "dovecot", "loft",
		         "loft/dovecot"]]
		for variant in sizes:
			for run, name in (("first", "first, no index"),
			                  ("second", "second")):
				for step in ("login", "select", "total"):
					if (variant, run + "-" + step) not in has:
						continue
					rows.append(row(fmt, variant, run + "-" + step,
					                secs(3), [variant, name, step]))
					name = ""
		if len(rows) > 1:
			out.append("LOGIN and SELECT INBOX, one session each (the "
			           "first builds the index): seconds, lower is "
			           "better (below 1: loft is faster)")
			out.append(report.table(rows, 3))
			out.append("")
		rows = [["messages", "command", "dovecot", "loft",
		         "loft/dovecot"]]
		for variant in sizes:
			for step, name in (
			    ("sync-headers", "UID FETCH 1:* (UID RFC822.SIZE FLAGS "
			     "BODY.PEEK[HEADER.FIELDS (14 fields)])"),
			    ("sync-flags", "UID FETCH 1:* (FLAGS)"),
			    ("search-from", "SEARCH FROM (1 % match)"),
			    ("search-body", "SEARCH BODY (1 % match)"),
			    ("store-flagged", "STORE 1:* +FLAGS (\\Flagged)"),
			    ("store-deleted", "STORE (every 10th) +FLAGS "
			     "(\\Deleted)"),
			    ("expunge", "EXPUNGE (10 %)")):
				if (variant, step) in has:
					rows.append(row(fmt, variant, step, secs(3),
					                [variant, name]))
		if len(rows) > 1:
			out.append("Commands, one session per group after LOGIN and "
			           "SELECT (FETCH, SEARCH, STORE and EXPUNGE): "
			           "seconds, lower is better (below 1: loft is "
			           "faster)")
			out.append(report.table(rows, 2))
			out.append("")
		rows = [["messages", "command", "dovecot", "loft",
		         "loft/dovecot"]]
		for variant in sizes:
			if (variant, "bodies") in has:
				rows.append(row(fmt, variant, "bodies", mbs,
				                [variant, "UID FETCH 1:* BODY.PEEK[]"],
				                lambda c: c.rate()))
		if len(rows) > 1:
			out.append("Download of every message in one command: MB/s "
			           "of message data, higher is better (above 1: "
			           "loft is faster)")
			out.append(report.table(rows, 2))
			out.append("")
		rows = [["measure", "dovecot", "loft", "loft/dovecot"]]
		n, note = 0, ""
		for m, what, digits in (("pss", "PSS KiB", 1),
		                        ("anon", "of which anon", 1),
		                        ("rss", "RSS KiB", 1),
		                        ("procs", "processes", 3),
		                        ("kept", "PSS KiB kept after", 1)):
			step = "idle-" + m
			if ("-", step) not in has:
				continue
			rows.append(row(fmt, "-", step, secs(digits), [what]))
			n = max(n, max(cells[k].n for k in fk if k[4] == step))
			for k in fk:
				if k[4] == step and cells[k].notes and not note:
					note = cells[k].notes[0].split(";")[0]
		if len(rows) > 1:
			out.append("Memory per session in IDLE, %d sessions (%s): "
			           "growth of the whole process tree divided by %d, "
			           "lower is better (below 1: loft uses less); "
			           "target for loft: 0.1x Dovecot's PSS" % (
			               n, note or "?", n))
			out.append(report.table(rows, 1))
			out.append("")
		rows = [["measure", "dovecot", "loft", "loft/dovecot"]]
		n = 0
		for step, what in (("deliver-median", "median"),
		                   ("deliver-p90", "90th percentile"),
		                   ("deliver-mda", "MDA run time, median")):
			if ("-", step) not in has:
				continue
			rows.append(row(fmt, "-", step, secs(4), [what]))
			n = max(n, max(cells[k].n for k in fk if k[4] == step))
		if len(rows) > 1:
			out.append("Delivery to a session in IDLE, %d deliveries "
			           "(loft-deliver, dovecot-lda; from the MDA's start "
			           "to the untagged EXISTS): seconds, lower is better "
			           "(below 1: loft is faster); target for loft: "
			           "below 0.050" % n)
			out.append(report.table(rows, 1))
			out.append("")


def main():
	ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
	sub = ap.add_subparsers(dest="cmd", required=True)
	p = sub.add_parser("port")
	p.add_argument("-n", type=int, default=1)
	p = sub.add_parser("wait")
	p.add_argument("--port", type=int, required=True)
	p.add_argument("--pid", type=int, default=0)
	p.add_argument("--timeout", type=int, default=30)
	p = sub.add_parser("report")
	p.add_argument("--info")
	p.add_argument("results", nargs="+")
	for name in ("select", "sync", "search", "bodies", "modify", "idle",
	             "latency"):
		p = sub.add_parser(name)
		p.add_argument("--port", type=int, required=True)
		p.add_argument("--user", default="bench")
		p.add_argument("--users", help="comma-separated user names")
		p.add_argument("--password", required=True)
		p.add_argument("--format", default="-")
		p.add_argument("--server", default="-")
		p.add_argument("--timeout", type=float, default=600.0,
		               help="seconds any one read may wait")
		p.add_argument("--expect", type=int, default=0)
		p.add_argument("--run", default="first")
		p.add_argument("--corpus", help="the Maildir the mail came from")
		p.add_argument("--limit", type=int, default=0,
		               help="bodies: seconds before giving up (0: none); "
		               "latency: seconds to wait for each EXISTS")
		p.add_argument("--plant-every", type=int, default=100)
		p.add_argument("--plant-word", default="quokkaberry")
		p.add_argument("--plant-from", default="planted.sender@example.com")
		p.add_argument("--count", type=int, default=1000)
		p.add_argument("--batch", type=int, default=50,
		               help="idle: sessions opened at once")
		p.add_argument("--pid", type=int, default=0)
		p.add_argument("--messages", help="latency: directory of .eml "
		               "files to deliver")
		p.add_argument("-n", type=int, default=20)
		p.add_argument("--gap", type=float, default=0.2,
		               help="latency: seconds between deliveries")
		if name == "latency":
			p.add_argument("mda", nargs=argparse.REMAINDER)
	args = ap.parse_args()
	if args.cmd == "latency" and not args.limit:
		args.limit = 60
	fn = {"port": cmd_port, "wait": cmd_wait, "report": cmd_report,
	      "select": cmd_select, "sync": cmd_sync, "search": cmd_search,
	      "bodies": cmd_bodies, "modify": cmd_modify, "idle": cmd_idle,
	      "latency": cmd_latency}[args.cmd]
	return fn(args)


if __name__ == "__main__":
	sys.exit(main())
