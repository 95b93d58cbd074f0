#!/usr/bin/env python3
"""AUTH SCRAM-SHA-256 and SCRAM-SHA-1 (RFC 5802, 7677, POP3 profile RFC
5034) against loftd with a client written here from the RFCs: the server's
nonce extends ours, the iteration count is sane, the server signature
proves the server knows the stored secrets, a wrong password, a wrong
nonce, a channel-binding mismatch and a foreign authzid fail, "*"
cancels; over plaintext (SCRAM is not a plaintext mechanism) and TLS."""
import base64
import hashlib
import hmac
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from loft import Env, Pop3, Tap, message, need_loftd, tls_client_context  # noqa: E402

t = Tap()
need_loftd(t)
TIMEOUT = 15
HASH = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-1": "sha1"}


def b64(data):
    return base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()


def unb64(text):
    return base64.b64decode(text, validate=True)


def hm(h, key, msg):
    return hmac.new(key, msg.encode() if isinstance(msg, str) else msg, h).digest()


def attrs(text):
    """SCRAM attribute list "a=x,b=y" to a dict (values may hold '=')."""
    out = {}
    for part in text.split(","):
        k, _, v = part.partition("=")
        out[k] = v
    return out


class Scram:
    """One SCRAM exchange over an open POP3 session p. Each step returns
    the server's line; the results are kept on the object."""

    def __init__(self, p, mech, user, password, authzid=None, initial=True,
                 bad_nonce=False, bad_binding=False):
        self.p, self.mech, self.h = p, mech, HASH[mech]
        self.user, self.password = user, password
        self.gs2 = "n,%s," % ("a=" + authzid if authzid else "")
        self.cnonce = b64(os.urandom(18))
        self.bare = "n=%s,r=%s" % (user, self.cnonce)
        self.initial = initial
        self.bad_nonce, self.bad_binding = bad_nonce, bad_binding
        self.server_first = self.server_final = None
        self.server_sig_ok = False

    def first(self):
        msg = self.gs2 + self.bare
        if self.initial:
            return self.p.cmd("AUTH %s %s" % (self.mech, b64(msg)))
        r = self.p.cmd("AUTH " + self.mech)
        if r.rstrip() != "+":
            return r
        return self.p.cmd(b64(msg))

    def final(self, challenge):
        self.server_first = unb64(challenge[2:].strip()).decode()
        a = attrs(self.server_first)
        self.nonce, self.salt, self.iters = a["r"], unb64(a["s"]), int(a["i"])
        salted = hashlib.pbkdf2_hmac(self.h, self.password.encode(), self.salt,
                                     self.iters)
        client_key = hm(self.h, salted, "Client Key")
        stored_key = hashlib.new(self.h, client_key).digest()
        nonce = self.nonce + ("x" if self.bad_nonce else "")
        binding = b64("y,," if self.bad_binding else self.gs2)
        without_proof = "c=%s,r=%s" % (binding, nonce)
        auth_msg = "%s,%s,%s" % (self.bare, self.server_first, without_proof)
        sig = hm(self.h, stored_key, auth_msg)
        proof = bytes(x ^ y for x, y in zip(client_key, sig))
        self.want_server_sig = hm(self.h, hm(self.h, salted, "Server Key"), auth_msg)
        return self.p.cmd(b64(without_proof + ",p=" + b64(proof)))

    def run(self):
        """The whole exchange: returns the final answer line; afterwards
        server_sig_ok says whether the server proved itself."""
        r = self.first()
        if not r.startswith("+ "):
            return r
        r = self.final(r)
        if r.startswith("+ "):
            self.server_final = unb64(r[2:].strip()).decode()
            v = attrs(self.server_final).get("v")
            self.server_sig_ok = v is not None and unb64(v) == self.want_server_sig
            # RFC 5034 section 4: the client answers additional data on
            # success with an empty response.
            r = self.p.cmd("")
        return r


def session(d, tls):
    if tls:
        return Pop3(d.pop3s_port, ctx=tls_client_context(d.cert), timeout=TIMEOUT)
    return Pop3(d.pop3_port, timeout=TIMEOUT)


def main():
    env = Env("maildir")
    env.add_user("demo")
    env.add_user("other")
    env.deliver("demo", message("scram"), "-f", "sender@example.net")
    d = env.start_loftd()

    for mech in ("SCRAM-SHA-256", "SCRAM-SHA-1"):
        for tls in (False, True):
            where = "%s over %s" % (mech, "TLS" if tls else "plaintext")
            p = session(d, tls)
            s = Scram(p, mech, "demo", "secret", initial=not tls)
            r = s.run()
            t.ok(r.startswith("+OK"), "%s: logs in (%r)" % (where, r))
            t.ok(s.server_sig_ok, "%s: the server signature verifies (%r)"
                 % (where, s.server_final))
            if s.server_first:
                t.ok(s.nonce.startswith(s.cnonce) and len(s.nonce) > len(s.cnonce) + 8,
                     "%s: the server nonce extends ours" % where)
                t.ok(s.iters >= 4096, "%s: iteration count %d >= 4096" % (where, s.iters))
                t.ok(len(s.salt) >= 8, "%s: salt of %d bytes" % (where, len(s.salt)))
            t.ok(p.cmd("STAT").startswith("+OK 1 "), "%s: STAT after SCRAM" % where)
            p.cmd("QUIT")
            p.close()

    # The stored secrets never change between two exchanges (same salt and
    # count), while nonces do.
    p1, p2 = session(d, False), session(d, False)
    s1 = Scram(p1, "SCRAM-SHA-256", "demo", "secret")
    s2 = Scram(p2, "SCRAM-SHA-256", "demo", "secret")
    r1, r2 = s1.first(), s2.first()
    if r1.startswith("+ ") and r2.startswith("+ "):
        a1 = attrs(unb64(r1[2:]).decode())
        a2 = attrs(unb64(r2[2:]).decode())
        t.ok(a1["s"] == a2["s"] and a1["i"] == a2["i"] and a1["r"] != a2["r"],
             "same salt and count for a user, fresh server nonces")
    else:
        t.ok(False, "two first steps answered (%r %r)" % (r1, r2))
    for p in (p1, p2):
        t.ok(p.cmd("*").startswith("-ERR"), "\"*\" cancels the exchange")
        t.ok(p.cmd("CAPA").startswith("+OK"), "and the session goes on")
        p.multi()
        p.close()

    failures = [
        ("a wrong password", dict(password="Secret")),
        ("a nonce not the server's", dict(bad_nonce=True)),
        ("channel binding data not the GS2 header", dict(bad_binding=True)),
        ("an authzid naming another user", dict(authzid="other")),
        ("an unknown user", dict(user="nosuchuser")),
    ]
    for what, kw in failures:
        args = dict(user="demo", password="secret")
        args.update(kw)
        user, password = args.pop("user"), args.pop("password")
        p = session(d, False)
        s = Scram(p, "SCRAM-SHA-256", user, password, **args)
        r = s.run()
        t.ok(r.startswith("-ERR"), "SCRAM-SHA-256 with %s fails (%r)" % (what, r))
        t.ok(not r.startswith("+OK") and p.cmd("STAT").startswith("-ERR"),
             "and the session is not logged in after %s" % what)
        p.close()
    # RFC 5802 section 9: a server should not tell whether a user exists;
    # an unknown user gets a server-first message (made-up salt) and
    # fails only at the proof, like a wrong password does.
    p = session(d, False)
    s = Scram(p, "SCRAM-SHA-256", "nosuchuser", "secret")
    r = s.first()
    t.ok(r.startswith("+ "), "an unknown user gets a server-first message like a "
         "known one, no user-existence oracle (%r)" % r)
    if r.startswith("+ "):
        t.ok(s.final(r).startswith("-ERR"), "and fails at the proof")
    p.close()
    p = session(d, False)
    r = Scram(p, "SCRAM-SHA-1", "demo", "wrong").run()
    t.eq(r, "-ERR [AUTH] Authentication failed", "SCRAM-SHA-1 with a wrong password")
    p.close()

    # A client-first message that is not SCRAM at all.
    p = session(d, False)
    r = p.cmd("AUTH SCRAM-SHA-256 " + b64("garbage without structure"))
    t.ok(r.startswith("-ERR"), "a malformed client-first message fails (%r)" % r)
    t.ok(p.cmd("CAPA").startswith("+OK"), "and the session goes on")
    p.multi()
    p.close()

    log = d.log()
    t.ok("pop3 login: user=<demo>, rip=127.0.0.1" in log, "SCRAM logins are logged")
    t.ok("pop3 login failed: user=<demo>, rip=127.0.0.1" in log,
         "SCRAM failures are logged with user and IP")
    t.eq(env.stop_loftd(), 0, "loftd exits 0 on SIGTERM")
    env.cleanup()


try:
    main()
except Exception as e:  # noqa: BLE001
    t.ok(False, "raised %s: %s" % (type(e).__name__, e))
t.done()
