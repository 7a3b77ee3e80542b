#!/usr/bin/env python3
"""Interop tests: slixmpp (a real XMPP client nobody here wrote) and raw sockets against xmppd.

Run by `cargo xtask test` (tier "interop"); standalone:

    /usr/bin/python3 tools/interop/run.py --xmppd target/debug/xmppd --mmp target/debug/mmp

Starts xmppd on a loopback address with a temporary data directory and two users, then:
  * alice and bob log in with SCRAM-SHA-256 over STARTTLS (mechanism forced, the server's
    self-signed certificate trusted explicitly, TLS verified against it); a wrong password
    is refused;
  * they subscribe to each other and both see the other's presence;
  * messages to full and to bare JIDs;
  * bob leaves, alice writes, bob returns and gets the messages with delay stamps;
  * hostile input over raw sockets (malformed XML, DOCTYPE, oversized stanza, wrong password
    via SASL, garbage bytes) gets the right error, and after each one alice still receives
    a message from bob over her untouched session;
  * SIGTERM closes the sessions and xmppd exits 0.

Every check asserts; the last line is `N passed, N failed` and the exit code is 1 on failure.
Every wait is bounded.
"""

import argparse
import asyncio
import base64
import glob
import hashlib
import hmac
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback

try:
    import slixmpp
except ImportError:  # pragma: no cover - reported as a failure below
    slixmpp = None

DOMAIN = "localhost"
STEP_TIMEOUT = 15.0
STREAM_NS = "http://etherx.jabber.org/streams"
STREAM_HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>" % DOMAIN
).encode()
USERS = {"alice": "alice-secret-1", "bob": "bob-secret-2"}


class CheckFailed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


# --------------------------------------------------------------------------- the server


def free_port(address):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


class Xmppd:
    """xmppd in a temporary directory, listening on `address`, with USERS created by mmp."""

    def __init__(self, xmppd, mmp, address, keep):
        self.xmppd = xmppd
        self.mmp = mmp
        self.address = address
        self.port = free_port(address)
        self.keep = keep
        self.dir = tempfile.mkdtemp(prefix="switchboard-interop-")
        self.process = None
        self.log_path = os.path.join(self.dir, "xmppd.log")

    def mmp_run(self, *words, stdin=None):
        result = subprocess.run(
            [self.mmp, "-d", self.dir, *words],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0 or "FAILURE" in result.stdout:
            raise CheckFailed(
                "mmp %s failed (%s): %s %s"
                % (" ".join(words), result.returncode, result.stdout.strip(), result.stderr.strip())
            )
        return result.stdout

    def start(self):
        self.mmp_run("xmpp", "domain", DOMAIN)
        self.mmp_run("xmpp", "listen", "%s:%d" % (self.address, self.port))
        self.mmp_run("xmpp", "enable")
        for user, password in USERS.items():
            self.mmp_run("user", "add", user, stdin="%s\n%s\n" % (password, password))
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [self.xmppd, "-d", self.dir, "--log-level", "info"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise CheckFailed("xmppd exited (%s) before listening:\n%s" % (self.process.returncode, self.log_tail()))
            try:
                socket.create_connection((self.address, self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise CheckFailed("xmppd did not listen within 30s:\n%s" % self.log_tail())
                time.sleep(0.1)

    def certificate(self):
        """The self-signed certificate xmppd made for the domain, to trust in the clients."""
        preferred = os.path.join(self.dir, "certs", "selfsigned.crt")
        if os.path.isfile(preferred):
            return preferred
        found = sorted(glob.glob(os.path.join(self.dir, "certs", "*.crt")))
        return found[0] if found else None

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, "r", errors="replace") as log:
                return "".join(log.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def terminate(self, timeout=15):
        """SIGTERM; returns the exit code, or None when it had to be killed."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
            return None

    def cleanup(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        if self.keep:
            print("kept %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------- slixmpp side


class Inbox:
    """Everything a client received, in order; waiters look at items after a mark."""

    def __init__(self):
        self.items = []
        self.changed = asyncio.Event()

    def put(self, item):
        self.items.append(item)
        self.changed.set()

    def mark(self):
        return len(self.items)

    async def wait(self, predicate, what, since=0, timeout=STEP_TIMEOUT):
        deadline = asyncio.get_running_loop().time() + timeout
        position = since
        while True:
            while position < len(self.items):
                item = self.items[position]
                position += 1
                if predicate(item):
                    return item
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise CheckFailed("timed out waiting for %s" % what)
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass


def scram_without_channel_binding(client):
    """Make a slixmpp client send SCRAM's gs2 flag `n` (does not bind) instead of `y`.

    slixmpp 1.8.3 knows only the tls-unique binding, which TLS 1.3 does not define, and says
    `y` ("I could bind, but you offer no -PLUS") even when it was offered -PLUS. xmppd offers
    SCRAM-*-PLUS with tls-exporter over TLS 1.3 and refuses `y` there as a stripped offer
    (RFC 5802 section 6). A client supporting none of the announced binding types (XEP-0440)
    says `n`, which is what this makes slixmpp do.
    """
    mechanisms = client["feature_mechanisms"]
    credentials = mechanisms.sasl_callback

    def without_channel_binding(required, optional):
        found = credentials(required, optional)
        found.pop("channel_binding", None)
        return found

    mechanisms.sasl_callback = without_channel_binding


def make_client_class():
    class Client(slixmpp.ClientXMPP):
        """A slixmpp client pinned to one address and the test's certificate."""

        def __init__(self, user, address, port, cafile, password=None):
            password = USERS.get(user, "") if password is None else password
            super().__init__("%s@%s/interop" % (user, DOMAIN), password, sasl_mech="SCRAM-SHA-256")
            scram_without_channel_binding(self)
            self.target = (address, port)
            self.messages = Inbox()
            self.presences = Inbox()
            self.started = asyncio.get_event_loop().create_future()
            self.gone = asyncio.get_event_loop().create_future()
            self.register_plugin("xep_0030")
            self.register_plugin("xep_0199")  # ping: a round trip that orders earlier stanzas
            self.register_plugin("xep_0203")  # delayed delivery stamps on stored messages
            self.roster.auto_authorize = None  # subscriptions are answered by the test itself
            self.roster.auto_subscribe = False
            if cafile:
                self.ca_certs = cafile
            else:
                self.ssl_context.check_hostname = False
                self.ssl_context.verify_mode = ssl.CERT_NONE
            self.add_event_handler("session_start", self.on_session_start)
            self.add_event_handler("message", self.messages.put)
            self.add_event_handler("presence", self.presences.put)
            self.add_event_handler("failed_auth", lambda _: self.fail("authentication failed"))
            self.add_event_handler("failed_all_auth", lambda _: self.fail("no SASL mechanism worked"))
            self.add_event_handler("connection_failed", lambda e: self.fail("connection failed: %s" % e))
            self.add_event_handler("ssl_invalid_chain", lambda e: self.fail("certificate rejected: %s" % e))
            self.add_event_handler("stream_error", lambda e: self.fail("stream error: %s" % e))
            self.add_event_handler("disconnected", self.on_disconnected)

        async def get_dns_records(self, domain, port=None):
            # The domain is `localhost` (certificate name, SNI), the server is on a 127.0.0.x
            # address of its own: answer the lookup with that address.
            return [(DOMAIN, self.target[0], self.target[1])]

        def fail(self, reason):
            if not self.started.done():
                self.started.set_exception(CheckFailed(reason))

        async def on_session_start(self, _event):
            try:
                await self.get_roster(timeout=STEP_TIMEOUT)
                self.send_presence()
                if not self.started.done():
                    self.started.set_result(True)
            except Exception as err:  # noqa: BLE001 - reported through the future
                self.fail("roster/presence after login: %r" % err)

        def on_disconnected(self, _event):
            if not self.gone.done():
                self.gone.set_result(True)
            self.fail("disconnected before the session started")

        async def login(self):
            self.connect(address=(DOMAIN, self.target[1]))
            await asyncio.wait_for(self.started, STEP_TIMEOUT)

        async def leave(self):
            self.disconnect()
            await asyncio.wait_for(self.gone, STEP_TIMEOUT)

        def mechanism(self):
            mech = getattr(self["feature_mechanisms"], "mech", None)
            return getattr(mech, "name", None)

        def tls_active(self):
            transport = self.transport
            return transport is not None and transport.get_extra_info("ssl_object") is not None

    return Client


def bare(jid):
    return str(jid).split("/", 1)[0]


# --------------------------------------------------------------------------- raw sockets


class Raw:
    """A blocking socket speaking just enough XMPP to attack; every read is bounded."""

    def __init__(self, address, port):
        self.sock = socket.create_connection((address, port), timeout=STEP_TIMEOUT)
        self.received = b""

    def send(self, data):
        self.sock.sendall(data)

    def read_until(self, pattern, timeout=STEP_TIMEOUT):
        """Read until `pattern` (regex bytes) matches what was received, or the peer closes."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.received, re.S):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except OSError:
                return False
            if not chunk:
                return bool(re.search(pattern, self.received, re.S))
            self.received += chunk
        return True

    def closed_by_peer(self, timeout=STEP_TIMEOUT):
        """Whether the server closes the connection (after its error) within the timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except OSError:
                return True
            if not chunk:
                return True
            self.received += chunk
        return False

    def starttls(self):
        self.send(STREAM_HEADER)
        expect(self.read_until(rb"</stream:features>|<stream:features[^>]*/>"), "no stream features before TLS")
        expect(b"starttls" in self.received, "STARTTLS not offered")
        self.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        expect(self.read_until(rb"<proceed"), "no <proceed/> to STARTTLS")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(self.sock, server_hostname=DOMAIN)
        self.received = b""
        self.send(STREAM_HEADER)
        expect(self.read_until(rb"</stream:features>"), "no stream features after TLS")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def stream_error_condition(data):
    """The condition element inside <stream:error>, or None."""
    match = re.search(rb"<stream:error>\s*<([a-z-]+)[^>]*xmlns=['\"]urn:ietf:params:xml:ns:xmpp-streams['\"]", data)
    return match.group(1).decode() if match else None


def attack_expecting_stream_error(address, port, steps, condition):
    """Run `steps(raw)` and assert the server answers with `condition` and closes."""
    raw = Raw(address, port)
    try:
        try:
            steps(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close while we are still sending; what it said counts
        raw.read_until(rb"</stream:stream>")
        got = stream_error_condition(raw.received)
        expect(
            got == condition,
            "expected <%s/>, got %s; received: %r" % (condition, got and "<%s/>" % got, raw.received[-400:]),
        )
        expect(raw.closed_by_peer(), "server did not close the stream after <%s/>" % condition)
    finally:
        raw.close()


def malformed_xml(raw):
    raw.send(STREAM_HEADER)
    raw.send(b"<message to='alice@localhost'><body>unbalanced</message>")


def doctype(raw):
    raw.send(b"<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY boom 'boom'>]>" + STREAM_HEADER[21:])


def oversized_stanza(raw):
    raw.send(STREAM_HEADER)
    raw.read_until(rb"</stream:features>")
    raw.send(b"<message to='alice@localhost'><body>")
    chunk = b"A" * 16384
    # 320 KiB of body, past the 256 KiB limit; stop early once the server has answered.
    for _ in range(20):
        raw.send(chunk)
        if raw.read_until(rb"</stream:stream>", timeout=0.05):
            return
    raw.send(b"</body></message>")


def garbage(raw):
    # What a client configured for direct TLS sends to a STARTTLS port, plus random bytes.
    raw.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64))


def scram_client_final(password, client_first_bare, server_first, gs2=b"n,,"):
    attributes = dict(part.split(b"=", 1) for part in server_first.split(b","))
    salt = base64.b64decode(attributes[b"s"])
    iterations = int(attributes[b"i"])
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    without_proof = b"c=" + base64.b64encode(gs2) + b",r=" + attributes[b"r"]
    auth_message = client_first_bare + b"," + server_first + b"," + without_proof
    signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    return without_proof + b",p=" + base64.b64encode(proof)


def wrong_password(address, port):
    """SCRAM-SHA-256 with a wrong password gets <failure><not-authorized/></failure>."""
    raw = Raw(address, port)
    try:
        raw.starttls()
        expect(b"SCRAM-SHA-256" in raw.received, "SCRAM-SHA-256 not offered after TLS")
        nonce = base64.b64encode(os.urandom(18))
        client_first_bare = b"n=alice,r=" + nonce
        raw.received = b""
        raw.send(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>"
            + base64.b64encode(b"n,," + client_first_bare)
            + b"</auth>"
        )
        expect(raw.read_until(rb"</challenge>"), "no SCRAM challenge: %r" % raw.received[-300:])
        challenge = re.search(rb"<challenge[^>]*>([^<]*)</challenge>", raw.received).group(1)
        server_first = base64.b64decode(challenge)
        expect(server_first.startswith(b"r=" + nonce), "server nonce does not extend ours")
        final = scram_client_final("not-" + USERS["alice"], client_first_bare, server_first)
        raw.received = b""
        raw.send(b"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.b64encode(final) + b"</response>")
        expect(raw.read_until(rb"</failure>|<failure[^>]*/>"), "no SASL <failure/>: %r" % raw.received[-300:])
        expect(
            re.search(rb"<failure[^>]*>\s*<not-authorized", raw.received) is not None,
            "expected <not-authorized/>, got %r" % raw.received[-300:],
        )
        expect(b"<success" not in raw.received, "wrong password accepted")
    finally:
        raw.close()


def channel_binding_downgrade(address, port):
    """Over TLS 1.3 the -PLUS mechanisms and their binding type (XEP-0440) are offered, and a
    SCRAM-SHA-256 client-first saying `y` (could bind, saw no -PLUS: the offer was stripped on
    the way) is refused before any challenge (RFC 5802 section 6)."""
    raw = Raw(address, port)
    try:
        raw.starttls()
        version = raw.sock.version()
        expect(version == "TLSv1.3", "TLS version %s" % version)
        features = raw.received
        for mechanism in (b"SCRAM-SHA-256-PLUS", b"SCRAM-SHA-1-PLUS"):
            expect(b"<mechanism>" + mechanism + b"</mechanism>" in features, "%s not offered" % mechanism)
        expect(
            re.search(
                rb"<sasl-channel-binding xmlns=['\"]urn:xmpp:sasl-cb:0['\"]>"
                rb"<channel-binding type=['\"]tls-exporter['\"]/></sasl-channel-binding>",
                features,
            )
            is not None,
            "no XEP-0440 tls-exporter announcement: %r" % features[-400:],
        )
        nonce = base64.b64encode(os.urandom(18))
        raw.received = b""
        raw.send(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>"
            + base64.b64encode(b"y,,n=alice,r=" + nonce)
            + b"</auth>"
        )
        expect(raw.read_until(rb"</failure>|<failure[^>]*/>"), "no SASL <failure/>: %r" % raw.received[-300:])
        expect(b"<challenge" not in raw.received, "a 'y' client-first got a challenge")
        expect(
            re.search(rb"<failure[^>]*>\s*<not-authorized", raw.received) is not None,
            "expected <not-authorized/>, got %r" % raw.received[-300:],
        )
    finally:
        raw.close()


# --------------------------------------------------------------------------- the checks


class Suite:
    def __init__(self, server, cafile):
        self.server = server
        self.cafile = cafile
        self.passed = 0
        self.failed = 0
        self.alice = None
        self.bob = None
        self.counter = 0

    async def check(self, name, coroutine_function, *args):
        started = time.monotonic()
        try:
            await asyncio.wait_for(coroutine_function(*args), STEP_TIMEOUT * 4)
        except Exception as err:  # noqa: BLE001 - every failure is reported and counted
            self.failed += 1
            detail = str(err) if isinstance(err, CheckFailed) else "".join(traceback.format_exception_only(err)).strip()
            print("FAIL %-44s %s" % (name, detail), flush=True)
            return False
        self.passed += 1
        print("ok   %-44s (%.2fs)" % (name, time.monotonic() - started), flush=True)
        return True

    def client(self, user, password=None):
        return make_client_class()(user, self.server.address, self.server.port, self.cafile, password)

    async def wrong_password_refused(self):
        intruder = self.client("alice", password="not-" + USERS["alice"])
        try:
            await intruder.login()
        except CheckFailed as err:
            expect("authentication failed" in str(err), "refused, but not by SASL: %s" % err)
            return
        finally:
            intruder.disconnect()
        raise CheckFailed("logged in with a wrong password")

    async def login_both(self):
        self.alice = self.client("alice")
        self.bob = self.client("bob")
        await asyncio.gather(self.alice.login(), self.bob.login())
        for client in (self.alice, self.bob):
            expect(client.tls_active(), "%s: stream is not TLS" % client.boundjid)
            expect(client.mechanism() == "SCRAM-SHA-256", "%s used %s" % (client.boundjid, client.mechanism()))
            expect(client.boundjid.resource, "%s: no resource bound" % client.boundjid)

    async def subscribe(self):
        alice, bob = self.alice, self.bob
        bob_mark, alice_mark = bob.presences.mark(), alice.presences.mark()
        alice.send_presence_subscription(pto=bare(bob.boundjid), ptype="subscribe")
        await bob.presences.wait(
            lambda p: p["type"] == "subscribe" and bare(p["from"]) == bare(alice.boundjid),
            "bob to get alice's subscribe",
            bob_mark,
        )
        bob.send_presence(pto=bare(alice.boundjid), ptype="subscribed")
        bob.send_presence_subscription(pto=bare(alice.boundjid), ptype="subscribe")
        await alice.presences.wait(
            lambda p: p["type"] == "subscribed" and bare(p["from"]) == bare(bob.boundjid),
            "alice to get bob's subscribed",
            alice_mark,
        )
        await alice.presences.wait(
            lambda p: p["type"] == "subscribe" and bare(p["from"]) == bare(bob.boundjid),
            "alice to get bob's subscribe",
            alice_mark,
        )
        alice.send_presence(pto=bare(bob.boundjid), ptype="subscribed")
        await bob.presences.wait(
            lambda p: p["type"] == "subscribed" and bare(p["from"]) == bare(alice.boundjid),
            "bob to get alice's subscribed",
            bob_mark,
        )

    async def both_see_presence(self):
        alice, bob = self.alice, self.bob
        alice_mark, bob_mark = alice.presences.mark(), bob.presences.mark()
        # A fresh broadcast now that both subscriptions exist (RFC 6121 §4.4.2).
        alice.send_presence(pstatus="alice here")
        bob.send_presence(pstatus="bob here")
        await alice.presences.wait(
            lambda p: p["from"] == bob.boundjid and p["type"] in ("available", ""),
            "alice to see bob's presence",
            alice_mark,
        )
        await bob.presences.wait(
            lambda p: p["from"] == alice.boundjid and p["type"] in ("available", ""),
            "bob to see alice's presence",
            bob_mark,
        )
        # The stored roster (a plain roster get, no versioning) and the pushes slixmpp kept.
        query = alice.Iq()
        query["type"] = "get"
        query.enable("roster")
        result = await query.send(timeout=STEP_TIMEOUT)
        items = {bare(jid): item for jid, item in result["roster"]["items"].items()}
        item = items.get(bare(bob.boundjid))
        expect(item is not None, "bob not in alice's roster: %r" % items)
        expect(item["subscription"] == "both", "alice's roster says %r for bob" % item["subscription"])
        pushed = alice.client_roster[bare(bob.boundjid)]["subscription"]
        expect(pushed == "both", "alice's roster pushes say %r for bob" % pushed)

    async def deliver(self, sender, recipient, to, body):
        mark = recipient.messages.mark()
        sender.send_message(mto=to, mbody=body, mtype="chat")
        message = await recipient.messages.wait(
            lambda m: m["body"] == body, "%s to receive %r" % (recipient.boundjid.bare, body), mark
        )
        expect(bare(message["from"]) == bare(sender.boundjid), "message from %s" % message["from"])
        expect(message["type"] != "error", "got an error message: %s" % message)
        return message

    async def message_full_jid(self):
        await self.deliver(self.alice, self.bob, self.bob.boundjid.full, "to bob's full JID")

    async def message_bare_jid(self):
        await self.deliver(self.bob, self.alice, self.alice.boundjid.bare, "to alice's bare JID")

    async def offline_messages(self):
        alice, bob = self.alice, self.bob
        mark = alice.presences.mark()
        await bob.leave()
        await alice.presences.wait(
            lambda p: bare(p["from"]) == bare(bob.boundjid) and p["type"] == "unavailable",
            "alice to see bob go unavailable",
            mark,
        )
        bodies = ["while you were away 1", "while you were away 2"]
        for body in bodies:
            alice.send_message(mto=bob.boundjid.bare, mbody=body, mtype="chat")
        # Both must be stored before bob returns: a round trip to the server orders them.
        await alice["xep_0199"].ping(jid=DOMAIN, timeout=STEP_TIMEOUT)
        self.bob = bob = self.client("bob")
        await bob.login()
        received = []
        for body in bodies:
            received.append(await bob.messages.wait(lambda m, b=body: m["body"] == b, "stored %r" % body))
        for message in received:
            expect(bare(message["from"]) == bare(alice.boundjid), "stored message from %s" % message["from"])
            stamp = message["delay"]["stamp"]
            expect(stamp is not None, "stored message without a delay stamp: %s" % message)
        order = [bob.messages.items.index(m) for m in received]
        expect(order == sorted(order), "stored messages out of order")

    async def still_working(self, label):
        self.counter += 1
        await self.deliver(self.bob, self.alice, self.alice.boundjid.full, "still here %d after %s" % (self.counter, label))

    async def hostile(self, label, attack):
        await asyncio.to_thread(attack)
        await self.still_working(label)

    async def shutdown(self):
        alice_gone = self.alice.gone
        code = await asyncio.to_thread(self.server.terminate)
        expect(code == 0, "xmppd exit status %s after SIGTERM:\n%s" % (code, self.server.log_tail()))
        await asyncio.wait_for(alice_gone, STEP_TIMEOUT)


async def run_suite(server, cafile):
    suite = Suite(server, cafile)
    address, port = server.address, server.port
    if not await suite.check("login: SCRAM-SHA-256 over STARTTLS", suite.login_both):
        return suite
    await suite.check("login: wrong password refused", suite.wrong_password_refused)
    await suite.check("roster: mutual subscription", suite.subscribe)
    await suite.check("presence: both see each other", suite.both_see_presence)
    await suite.check("message: to a full JID", suite.message_full_jid)
    await suite.check("message: to a bare JID", suite.message_bare_jid)
    await suite.check("offline: stored and delivered with delay", suite.offline_messages)
    attacks = [
        ("hostile: malformed XML -> not-well-formed",
         lambda: attack_expecting_stream_error(address, port, malformed_xml, "not-well-formed")),
        ("hostile: DOCTYPE -> restricted-xml",
         lambda: attack_expecting_stream_error(address, port, doctype, "restricted-xml")),
        ("hostile: oversized stanza -> policy-violation",
         lambda: attack_expecting_stream_error(address, port, oversized_stanza, "policy-violation")),
        ("hostile: wrong password -> not-authorized", lambda: wrong_password(address, port)),
        ("hostile: channel-binding downgrade (y) -> not-authorized",
         lambda: channel_binding_downgrade(address, port)),
        ("hostile: garbage bytes -> not-well-formed",
         lambda: attack_expecting_stream_error(address, port, garbage, "not-well-formed")),
    ]
    for name, attack in attacks:
        await suite.check(name, suite.hostile, name.split(":")[1].split("->")[0].strip(), attack)
    await suite.check("shutdown: SIGTERM closes sessions, exit 0", suite.shutdown)
    for client in (suite.alice, suite.bob):
        if client is not None:
            client.disconnect()
    return suite


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--xmppd", required=True)
    parser.add_argument("--mmp", required=True)
    parser.add_argument("--address", default="127.0.0.5", help="loopback address for xmppd (127.0.0.5)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and log")
    parser.add_argument("--verbose", action="store_true", help="slixmpp debug logging")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.CRITICAL, format="%(levelname)s %(message)s")

    if slixmpp is None:
        print("FAIL slixmpp is not installed for %s (Debian: python3-slixmpp)" % sys.executable)
        print("0 passed, 1 failed")
        return 1

    server = Xmppd(args.xmppd, args.mmp, args.address, args.keep)
    try:
        try:
            server.start()
        except CheckFailed as err:
            print("FAIL start xmppd: %s" % err)
            print("0 passed, 1 failed")
            return 1
        cafile = server.certificate()
        print("xmppd on %s:%d, data in %s, certificate %s" % (server.address, server.port, server.dir, cafile))
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            suite = loop.run_until_complete(asyncio.wait_for(run_suite(server, cafile), 600))
        finally:
            # Let slixmpp finish its disconnects, then cancel what is left so nothing
            # complains after the summary line.
            loop.run_until_complete(asyncio.sleep(0.2))
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()
        if suite.failed:
            print("--- xmppd log (last lines) ---\n%s" % server.log_tail())
        print("%d passed, %d failed" % (suite.passed, suite.failed))
        return 1 if suite.failed else 0
    finally:
        server.cleanup()


if __name__ == "__main__":
    sys.exit(main())
