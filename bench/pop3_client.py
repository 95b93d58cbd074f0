#!/usr/bin/env python3
"""pop3_client.py: the client side of the POP3 benchmark (bench/pop3.sh).

Drives one POP3 server on 127.0.0.1 (loftd or Dovecot, the same code for
both), times what it is asked to and checks the answers.  Results go to
stdout as rows for report.py, tab-separated:

  pop3 FORMAT VARIANT SERVER STEP N VALUE STATUS NOTE

where VALUE is seconds, except for the idle-* steps (KiB per connection,
or processes per connection) and N is what the step counted (sessions,
messages, bytes).  A step whose answers were wrong prints FAIL and why
instead of a number, and the program exits 1.

  port [-n K]                 K free loopback ports (bound, then closed)
  wait --port P [--pid PID]   until P accepts connections (PID must live)
  login ...  -n 200           N sequential sessions: connect, greeting,
                              USER, PASS, QUIT; median and 90th percentile
  mailbox ... --expect N      one session: login, UIDL, LIST, QUIT, timed
                              step by step; counts and UIDLs checked
  retr ... --expect N --corpus DIR [--window W] [--limit S]
                              RETR of every message in one session (one at
                              a time, or W in flight); every message must
                              come back as LIST sized it, with the bytes
                              of a file in the Maildir DIR, within S
                              seconds if given
  idle ... --count C --mode noauth|auth|owners --pid PID [--warm]
                              the memory of the server's process tree
                              (rss.py) before and with C idle connections,
                              not logged in or each logged in as its own
                              user (--warm: each user logged in and out
                              once after the first measurement); checks
                              that every one still answers, closes them
                              and measures what the server kept

Trusted input: the command line.  The servers' answers are checked, not
trusted: an answer that is not "+OK" ends the step as FAIL.
"""

import argparse
import hashlib
import os
import socket
import ssl
import statistics
import sys
import time

# Its neighbours, without leaving __pycache__ in the tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rss  # noqa: E402
from corpus import mboxrd_escape  # noqa: E402

HOST = "127.0.0.1"


class Pop3Error(Exception):
	pass


class Client:
	"""One POP3 connection with a receive buffer of its own."""

	def __init__(self, port, tls=None, timeout=60.0):
		s = socket.create_connection((HOST, port), timeout)
		s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
		if tls is not None:
			s = tls.wrap_socket(s, server_hostname="localhost")
		self.s = s
		self.buf = bytearray()

	def fill(self):
		data = self.s.recv(262144)
		if not data:
			raise Pop3Error("connection closed by the server")
		self.buf += data

	def line(self):
		"""One CRLF-terminated line, without the CRLF."""
		pos = 0
		while True:
			i = self.buf.find(b"\r\n", pos)
			if i >= 0:
				out = bytes(self.buf[:i])
				del self.buf[:i + 2]
				return out
			pos = max(0, len(self.buf) - 1)
			self.fill()

	def ok(self, what):
		"""The next status line, which must be +OK."""
		line = self.line()
		if not line.startswith(b"+OK"):
			raise Pop3Error("%s: %s" % (
			    what, line[:120].decode("ascii", "replace")))
		return line

	def block(self):
		"""The body of a multi-line answer up to the "." line: CRLF
		lines, dot-stuffing undone."""
		while len(self.buf) < 3:
			self.fill()
		if self.buf[:3] == b".\r\n":
			del self.buf[:3]
			return b""
		pos = 0
		while True:
			i = self.buf.find(b"\r\n.\r\n", pos)
			if i >= 0:
				data = bytes(self.buf[:i + 2])
				del self.buf[:i + 5]
				break
			pos = max(0, len(self.buf) - 4)
			self.fill()
		if data.startswith(b".."):
			data = data[1:]
		return data.replace(b"\r\n..", b"\r\n.")

	def send(self, data):
		self.s.sendall(data)

	def cmd(self, text, what=None):
		self.send(text.encode() + b"\r\n")
		return self.ok(what or text.split()[0])

	def login(self, user, password):
		self.ok("greeting")
		self.cmd("USER " + user)
		self.cmd("PASS " + password, "PASS for " + user)

	def quit(self):
		"""QUIT, then wait for the server to close, so that the next
		session cannot overlap this one."""
		self.cmd("QUIT")
		self.wait_closed()

	def wait_closed(self):
		try:
			while self.s.recv(65536):
				pass
		except OSError:
			pass
		self.close()

	def close(self):
		try:
			self.s.close()
		except OSError:
			pass


def tls_context(cafile):
	if not cafile:
		return None
	ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
	ctx.load_verify_locations(cafile)
	return ctx


class Rows:
	"""The result rows of one run of this program."""

	def __init__(self, args):
		self.fmt, self.server = args.format, args.server
		self.failed = False

	def add(self, variant, step, n, value, note=""):
		print("pop3\t%s\t%s\t%s\t%s\t%d\t%s\tok\t%s" % (
		    self.fmt, variant, self.server, step, n, value, note))

	def fail(self, variant, steps, n, why):
		self.failed = True
		why = " ".join(str(why).split())[:300]
		for step in steps:
			print("pop3\t%s\t%s\t%s\t%s\t%d\t-\tFAIL\t%s" % (
			    self.fmt, variant, self.server, step, n, why))

	def done(self):
		sys.stdout.flush()
		return 1 if self.failed else 0


def percentile(values, p):
	"""The p-th percentile, nearest rank."""
	v = sorted(values)
	k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
	return v[k]


def cmd_port(args):
	socks = []
	for _ in range(args.n):
		s = socket.socket()
		s.bind((HOST, 0))
		socks.append(s)
	print(" ".join(str(s.getsockname()[1]) for s in socks))
	for s in socks:
		s.close()
	return 0


def cmd_wait(args):
	end = time.monotonic() + args.timeout
	while time.monotonic() < end:
		if args.pid and not os.path.exists("/proc/%d" % args.pid):
			sys.stderr.write("pop3_client: the server (pid %d) "
			                 "exited\n" % args.pid)
			return 1
		try:
			socket.create_connection((HOST, args.port), 1).close()
			return 0
		except OSError:
			time.sleep(0.05)
	sys.stderr.write("pop3_client: nothing accepts on port %d after "
	                 "%d s\n" % (args.port, args.timeout))
	return 1


def cmd_login(args):
	rows = Rows(args)
	variant = "tls" if args.tls else "plain"
	steps = ("login-median", "login-p90")
	tls = tls_context(args.tls)
	times = []
	try:
		for _ in range(args.n):
			t0 = time.perf_counter()
			c = Client(args.port, tls)
			c.login(args.user, args.password)
			c.cmd("QUIT")
			times.append(time.perf_counter() - t0)
			c.wait_closed()
	except (Pop3Error, OSError) as e:
		done = ("; the %d before: median %.4f s" % (
		    len(times), statistics.median(times)) if times else "")
		rows.fail(variant, steps, args.n, "session %d of %d: %s%s" % (
		    len(times) + 1, args.n, e, done))
		return rows.done()
	note = "max %.4f s" % max(times)
	rows.add(variant, steps[0], args.n, "%.6f" % statistics.median(times),
	         note)
	rows.add(variant, steps[1], args.n, "%.6f" % percentile(times, 90),
	         note)
	return rows.done()


def scan_listing(data, expect, what):
	"""[(number, value)] of a UIDL or LIST answer; numbered 1..expect."""
	out = []
	for k, line in enumerate(data.split(b"\r\n")[:-1], 1):
		parts = line.split()
		if len(parts) != 2 or parts[0] != b"%d" % k:
			raise Pop3Error("%s line %d is %r" % (what, k, line[:80]))
		out.append(parts[1])
	if len(out) != expect:
		raise Pop3Error("%s lists %d messages, expected %d" % (
		    what, len(out), expect))
	return out


def stat_count(c):
	parts = c.cmd("STAT").split()
	return int(parts[1]), int(parts[2])


def cmd_mailbox(args):
	rows = Rows(args)
	run = args.run
	steps = ["%s-%s" % (run, s) for s in ("login", "uidl", "list",
	                                        "total")]
	variant = str(args.expect)
	try:
		t0 = time.perf_counter()
		c = Client(args.port, tls_context(args.tls), args.timeout)
		c.login(args.user, args.password)
		t1 = time.perf_counter()
		c.cmd("UIDL")
		uidl = c.block()
		t2 = time.perf_counter()
		c.cmd("LIST")
		sizes = c.block()
		t3 = time.perf_counter()
		c.quit()
		uids = scan_listing(uidl, args.expect, "UIDL")
		if len(set(uids)) != len(uids):
			raise Pop3Error("UIDL gives %d distinct UIDLs for %d "
			                "messages" % (len(set(uids)), len(uids)))
		sizes = [int(s) for s in scan_listing(sizes, args.expect,
		                                         "LIST")]
	except (Pop3Error, OSError, ValueError) as e:
		rows.fail(variant, steps, args.expect, e)
		return rows.done()
	note = "%d octets" % sum(sizes)
	for step, secs in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
		rows.add(variant, step, args.expect, "%.6f" % secs, note)
	return rows.done()


def corpus_digests(path):
	"""({sha1: count}, {sha1 of the escaped form: sha1}) of the messages
	of the Maildir path (LF lines).  The second maps the digest of a
	message with its body lines "From " escaped as in an mbox (mboxrd,
	as corpus.py writes it) to the digest of the message: Dovecot does not
	undo that escaping when it reads an mbox, and loft does."""
	out, escaped = {}, {}
	for sub in ("cur", "new"):
		d = os.path.join(path, sub)
		for name in os.listdir(d):
			with open(os.path.join(d, name), "rb") as f:
				data = f.read()
			h = hashlib.sha1(data).digest()
			out[h] = out.get(h, 0) + 1
			esc = mboxrd_escape(data)
			if esc != data:
				escaped[hashlib.sha1(esc).digest()] = h
	return out, escaped


def compare(msgs, want, escaped):
	"""Why the messages are not the corpus want, or ""; and how many came
	back with "From " lines still escaped."""
	got, kept = {}, 0
	for m in msgs:
		h = hashlib.sha1(m.replace(b"\r\n", b"\n")).digest()
		if h not in want and h in escaped:
			h = escaped[h]
			kept += 1
		got[h] = got.get(h, 0) + 1
	if got == want:
		return "", kept
	lost = sum(max(0, n - got.get(h, 0)) for h, n in want.items())
	return ("%d messages of the corpus did not come back byte for "
	        "byte" % lost), kept


def retr_all(c, count, window, limit):
	"""[message bytes] of RETR 1..count, window commands in flight; a
	Pop3Error once limit seconds have passed (0: no limit)."""
	out = []
	sent = 0
	t0 = time.perf_counter()
	while len(out) < count:
		took = time.perf_counter() - t0
		if limit and took > limit:
			raise Pop3Error("stopped after %d s (RETR_LIMIT) at message "
			                "%d of %d, %.2f MB/s until then" % (
			                    limit, len(out), count,
			                    sum(map(len, out)) / took / 1e6))
		if sent - len(out) <= window // 2 and sent < count:
			k = min(count, len(out) + window)
			c.send(b"".join(b"RETR %d\r\n" % i
			                for i in range(sent + 1, k + 1)))
			sent = k
		c.ok("RETR %d" % (len(out) + 1))
		out.append(c.block())
	return out


def cmd_retr(args):
	rows = Rows(args)
	step = "retr" if args.window <= 1 else "retr-window%d" % args.window
	variant = str(args.expect)
	want = corpus_digests(args.corpus) if args.corpus else None
	try:
		c = Client(args.port, tls_context(args.tls), args.timeout)
		c.login(args.user, args.password)
		c.cmd("LIST")
		sizes = [int(s) for s in scan_listing(c.block(), args.expect,
		                                        "LIST")]
		t0 = time.perf_counter()
		msgs = retr_all(c, args.expect, max(1, args.window), args.limit)
		t1 = time.perf_counter()
		c.quit()
	except (Pop3Error, OSError, ValueError) as e:
		rows.fail(variant, [step], 0, e)
		return rows.done()
	total = sum(len(m) for m in msgs)
	bad = [k for k, m in enumerate(msgs, 1) if len(m) != sizes[k - 1]]
	why = []
	if bad:
		why.append("%d messages differ in size from LIST (first: %d, "
		           "%d octets, LIST says %d)" % (
		               len(bad), bad[0], len(msgs[bad[0] - 1]),
		               sizes[bad[0] - 1]))
	kept = 0
	if want is not None:
		bad, kept = compare(msgs, *want)
		if bad:
			why.append(bad)
	if why:
		rows.fail(variant, [step], total, "; ".join(why))
		return rows.done()
	note = "%d messages, %.1f MB/s" % (len(msgs), total / (t1 - t0) / 1e6)
	if kept:
		note += ('; %d with body lines ">From " as escaped in the '
		         'mbox' % kept)
	rows.add(variant, step, total, "%.6f" % (t1 - t0), note)
	return rows.done()


def user_list(args):
	return [u for u in args.users.split(",") if u] if args.users else []


def warm(port, tls, timeout, users, password):
	"""One login and QUIT per user."""
	for u in users:
		try:
			c = Client(port, tls, timeout)
			c.login(u, password)
			c.quit()
		except (Pop3Error, OSError) as e:
			raise Pop3Error("warm-up login of %s: %s" % (u, e))


def settled(pid, quiet=1.0, limit=15.0):
	"""usage(pid) once the process count has stayed the same for quiet
	seconds (processes of earlier sessions have exited)."""
	end = time.monotonic() + limit
	last = rss.usage(pid)
	since = time.monotonic()
	while time.monotonic() < end:
		time.sleep(0.2)
		now = rss.usage(pid)
		if now[0] != last[0]:
			since = time.monotonic()
		last = now
		if time.monotonic() - since >= quiet:
			break
	return last


def cmd_idle(args):
	rows = Rows(args)
	mode = args.mode
	steps = ["idle-%s-%s" % (mode, s) for s in ("pss", "anon", "rss",
	                                               "procs", "kept")]
	variant = "-"
	users = user_list(args)
	if mode != "noauth" and len(users) < args.count:
		rows.fail(variant, steps, args.count, "%d users for %d "
		          "connections" % (len(users), args.count))
		return rows.done()
	conns = []
	tls = tls_context(args.tls)
	try:
		before = settled(args.pid)
		if args.warm:
			warm(args.port, tls, args.timeout, users[:args.count],
			     args.password)
		for k in range(args.count):
			c = Client(args.port, tls, args.timeout)
			conns.append(c)
			if mode != "noauth":
				c.login(users[k], args.password)
			else:
				c.ok("greeting")
		after = settled(args.pid)
		# Every connection must still be there and answer.
		for c in conns:
			c.cmd("CAPA")
			c.block()
		for c in conns:
			c.send(b"QUIT\r\n")
		for c in conns:
			c.ok("QUIT")
			c.wait_closed()
		closed = settled(args.pid)
	except (Pop3Error, OSError) as e:
		rows.fail(variant, steps, args.count, "connection %d of %d: %s" %
		          (len(conns), args.count, e))
		for c in conns:
			c.close()
		return rows.done()
	n = args.count
	note = ("before: %d processes, RSS %d KiB, PSS %d KiB (anon %d, file "
	        "%d); with %d connections: %d processes, RSS %d KiB, PSS %d KiB "
	        "(anon %d, file %d); after they closed: %d processes, PSS %d "
	        "KiB" % (before + (n,) + after + closed[0:1] + closed[2:3]))
	for step, k, fmt in zip(steps, (2, 3, 1, 0),
	                        ("%.1f", "%.1f", "%.1f", "%.3f")):
		rows.add(variant, step, n, fmt % ((after[k] - before[k]) / n),
		         note)
	rows.add(variant, steps[4], n, "%.1f" % ((closed[2] - before[2]) / n),
	         note)
	return rows.done()


def main():
	ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
	sub = ap.add_subparsers(dest="cmd", required=True)
	p = sub.add_parser("port")
	p.add_argument("-n", type=int, default=1)
	p = sub.add_parser("wait")
	p.add_argument("--port", type=int, required=True)
	p.add_argument("--pid", type=int, default=0)
	p.add_argument("--timeout", type=int, default=30)
	for name in ("login", "mailbox", "retr", "idle"):
		p = sub.add_parser(name)
		p.add_argument("--port", type=int, required=True)
		p.add_argument("--tls", metavar="CAFILE",
		               help="POP3S, trusting the certificate in CAFILE")
		p.add_argument("--user", default="bench")
		p.add_argument("--users", help="comma-separated user names")
		p.add_argument("--password", required=True)
		p.add_argument("--format", default="-")
		p.add_argument("--server", default="-")
		p.add_argument("--timeout", type=float, default=600.0,
		               help="seconds any one read may wait")
		p.add_argument("-n", type=int, default=200)
		p.add_argument("--expect", type=int, default=0)
		p.add_argument("--run", default="first")
		p.add_argument("--corpus")
		p.add_argument("--window", type=int, default=1)
		p.add_argument("--limit", type=int, default=0,
		               help="retr: seconds before giving up (0: none)")
		p.add_argument("--count", type=int, default=200)
		p.add_argument("--mode", choices=("auth", "noauth", "owners"),
		               default="auth")
		p.add_argument("--pid", type=int, default=0)
		p.add_argument("--warm", action="store_true",
		               help="idle: log every user in and out once "
		               "after measuring the server without them")
	args = ap.parse_args()
	fn = {"port": cmd_port, "wait": cmd_wait, "login": cmd_login,
	      "mailbox": cmd_mailbox, "retr": cmd_retr,
	      "idle": cmd_idle}[args.cmd]
	return fn(args)


if __name__ == "__main__":
	sys.exit(main())
