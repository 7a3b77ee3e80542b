#!/usr/bin/env python3
"""Issue 13, high: unbounded per-user storage, attacked on a real xmppd from a Call Bridge.

Standalone:

    /usr/bin/python3 tools/interop/storage_quota.py --xmppd target/debug/xmppd --mmp target/debug/mmp

Starts xmppd with users alice and bob and Call Bridge cb1 (TLS on the Call Bridge port), then
over raw sockets:
  * cb1 sends 3000 subscription requests to alice, each from another address of its own;
    at most MAX_PENDING of them may become pending requests, and every other one must be
    answered with an error (<resource-constraint/>), none silently dropped;
  * alice logs in: she receives at most MAX_PENDING subscription requests, and she can still
    chat (a message to herself comes back; one from cb1 arrives);
  * cb1 sends FLOOD_MESSAGES messages of 100 KiB to bob, who is offline: the queue stops at
    the per-account byte quota (1 MiB) and every refused message is answered with
    <resource-constraint/>; bob's login then receives only what was queued.
Each batch of stanzas ends with an XEP-0199 ping to the server; its answer arrives after
the answers to the batch (one stream, handled in order), so no count depends on timing.

Every check asserts; the last line is `N passed, N failed` and the exit code is 1 on failure.
"""

import argparse
import base64
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import namespace_attack as attack  # noqa: E402
import run as interop  # noqa: E402

from run import DOMAIN, STREAM_HEADER, USERS, CheckFailed, Raw, expect  # noqa: E402

MAX_PENDING = 100
SUBSCRIPTIONS = 3000
BATCH = 100
FLOOD_MESSAGES = 40
MESSAGE_BYTES = 100 * 1024
OFFLINE_BYTES_QUOTA = 1024 * 1024
BRIDGE = attack.BRIDGE
BRIDGE_JID = "%s.%s" % (BRIDGE, DOMAIN)


class Component:
    """cb1 over TLS, handshake done; every batch ends with a ping whose answer is awaited."""

    def __init__(self, server):
        self.raw = attack.tls_raw(server.address, server.component_port)
        self.pings = 0
        header = (
            "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
            "xmlns:stream='http://etherx.jabber.org/streams' to='%s'>" % BRIDGE_JID
        ).encode()
        self.raw.send(header)
        expect(self.raw.read_until(rb"<stream:stream[^>]*>"), "no stream header from the Call Bridge port")
        stream_id = re.search(rb"<stream:stream[^>]*\sid=['\"]([^'\"]+)['\"]", self.raw.received).group(1)
        digest = hashlib.sha1(stream_id + attack.BRIDGE_SECRET.encode()).hexdigest()
        self.raw.received = b""
        self.raw.send(("<handshake>%s</handshake>" % digest).encode())
        expect(self.raw.read_until(rb"<handshake\s*/>|</handshake>|</stream:stream>"), "no handshake answer")
        expect(b"<handshake" in self.raw.received, "handshake refused: %r" % self.raw.received[-300:])
        self.raw.received = b""

    def batch(self, stanzas):
        """Send `stanzas` and a ping; return everything received up to the ping's answer."""
        self.pings += 1
        ping_id = "batch-%d" % self.pings
        self.raw.send(b"".join(stanzas))
        self.raw.send(
            (
                "<iq type='get' id='%s' from='%s' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>"
                % (ping_id, BRIDGE_JID, DOMAIN)
            ).encode()
        )
        pattern = ("<iq[^>]*id=['\"]%s['\"]" % ping_id).encode()
        expect(self.raw.read_until(pattern, timeout=interop.STEP_TIMEOUT * 4), "no answer to ping %s" % ping_id)
        received, self.raw.received = self.raw.received, b""
        return received

    def close(self):
        self.raw.close()


def errors_in(received, kind):
    """(stanzas of `kind` with type='error', those of them with <resource-constraint/>)."""
    stanzas = re.findall(rb"<%s[^>]*type=['\"]error['\"].*?</%s>" % (kind, kind), received, re.S)
    constrained = [s for s in stanzas if b"<resource-constraint" in s]
    return len(stanzas), len(constrained)


def login(server, user, resource):
    """STARTTLS, SCRAM-SHA-256, resource binding: a Raw with a bound session."""
    raw = Raw(server.address, server.port)
    raw.starttls()
    nonce = base64.b64encode(os.urandom(18))
    client_first_bare = b"n=" + user.encode() + b",r=" + nonce
    raw.received = b""
    raw.send(
        b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>"
        + base64.b64encode(b"n,," + client_first_bare)
        + b"</auth>"
    )
    expect(raw.read_until(rb"</challenge>"), "no SCRAM challenge: %r" % raw.received[-300:])
    challenge = re.search(rb"<challenge[^>]*>([^<]*)</challenge>", raw.received).group(1)
    final = interop.scram_client_final(USERS[user], client_first_bare, base64.b64decode(challenge))
    raw.received = b""
    raw.send(b"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.b64encode(final) + b"</response>")
    expect(raw.read_until(rb"</success>|<success[^>]*/>|</failure>"), "no SASL outcome: %r" % raw.received[-300:])
    expect(b"<success" in raw.received, "login of %s refused: %r" % (user, raw.received[-300:]))
    raw.received = b""
    raw.send(STREAM_HEADER)
    expect(raw.read_until(rb"</stream:features>"), "no features after SASL")
    raw.received = b""
    raw.send(
        (
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            "<resource>%s</resource></bind></iq>" % resource
        ).encode()
    )
    expect(raw.read_until(rb"</iq>"), "no answer to the bind")
    expect(b"<jid>%s@%s/%s</jid>" % (user.encode(), DOMAIN.encode(), resource.encode()) in raw.received, "bind failed")
    raw.received = b""
    return raw


def initial_presence(raw):
    """Send initial presence and a ping; return what arrived before the ping's answer."""
    raw.send(b"<presence/><iq type='get' id='after-presence' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    expect(raw.read_until(rb"<iq[^>]*id=['\"]after-presence['\"]", timeout=interop.STEP_TIMEOUT * 4),
           "no answer to the ping after initial presence")
    received, raw.received = raw.received, b""
    return received


class Suite:
    def __init__(self, server):
        self.server = server
        self.passed = 0
        self.failed = 0
        self.figures = []

    def check(self, name, function):
        started = time.monotonic()
        try:
            function()
        except Exception as err:  # noqa: BLE001 - every failure is reported and counted
            self.failed += 1
            detail = str(err) if isinstance(err, CheckFailed) else "".join(traceback.format_exception_only(err)).strip()
            print("FAIL %-60s %s" % (name, detail), flush=True)
            return False
        self.passed += 1
        print("ok   %-60s (%.2fs)" % (name, time.monotonic() - started), flush=True)
        return True

    def subscribe_flood(self):
        component = Component(self.server)
        try:
            errors = constrained = 0
            for start in range(0, SUBSCRIPTIONS, BATCH):
                stanzas = [
                    (
                        "<presence type='subscribe' from='caller%d@%s' to='alice@%s'/>" % (n, BRIDGE_JID, DOMAIN)
                    ).encode()
                    for n in range(start, min(start + BATCH, SUBSCRIPTIONS))
                ]
                received = component.batch(stanzas)
                e, c = errors_in(received, b"presence")
                errors += e
                constrained += c
            accepted = SUBSCRIPTIONS - errors
            figure = "%d subscription requests from %s: %d answered with an error (%d resource-constraint), %d accepted" % (
                SUBSCRIPTIONS, BRIDGE_JID, errors, constrained, accepted)
            self.figures.append(figure)
            print("     " + figure)
            expect(accepted <= MAX_PENDING, "%d requests accepted (quota %d)" % (accepted, MAX_PENDING))
            expect(constrained == errors, "errors other than resource-constraint: %d of %d" % (errors - constrained, errors))
            self.server_alive("the subscription flood")
        finally:
            component.close()

    def alice_login_at_quota(self):
        raw = login(self.server, "alice", "flooded")
        try:
            received = initial_presence(raw)
            requests = len(re.findall(rb"<presence[^>]*type=['\"]subscribe['\"]", received))
            figure = "alice's login received %d subscription requests" % requests
            self.figures.append(figure)
            print("     " + figure)
            expect(0 < requests <= MAX_PENDING, "alice received %d subscription requests (quota %d)" % (requests, MAX_PENDING))
            # At quota she still chats: a message to her own bare JID comes back.
            raw.send(b"<message to='alice@localhost' type='chat' id='self1'><body>still here</body></message>")
            expect(raw.read_until(rb"<body>still here</body>"), "alice's message to herself did not arrive")
            # And a Call Bridge can still reach her.
            component = Component(self.server)
            try:
                component.batch([
                    ("<message from='caller0@%s' to='alice@%s/flooded' type='chat'><body>hello alice</body></message>"
                     % (BRIDGE_JID, DOMAIN)).encode()
                ])
            finally:
                component.close()
            expect(raw.read_until(rb"<body>hello alice</body>"), "the Call Bridge's message to alice did not arrive")
        finally:
            raw.close()

    def offline_flood(self):
        component = Component(self.server)
        body = "m" * MESSAGE_BYTES
        errors = constrained = 0
        try:
            for n in range(FLOOD_MESSAGES):
                received = component.batch([
                    ("<message from='caller%d@%s' to='bob@%s' type='chat' id='flood%d'><body>%s</body></message>"
                     % (n, BRIDGE_JID, DOMAIN, n, body)).encode()
                ])
                e, c = errors_in(received, b"message")
                errors += e
                constrained += c
        finally:
            component.close()
        stored = FLOOD_MESSAGES - errors
        figure = "%d offline messages of %d KiB to bob: %d stored, %d refused (%d resource-constraint)" % (
            FLOOD_MESSAGES, MESSAGE_BYTES // 1024, stored, errors, constrained)
        self.figures.append(figure)
        print("     " + figure)
        expect(stored * MESSAGE_BYTES <= OFFLINE_BYTES_QUOTA, "%d messages stored: over the 1 MiB quota" % stored)
        expect(stored > 0, "nothing stored for bob at all")
        expect(constrained == errors, "errors other than resource-constraint: %d of %d" % (errors - constrained, errors))
        raw = login(self.server, "bob", "after-flood")
        try:
            received = initial_presence(raw)
            delivered = len(re.findall(rb"<body>m+</body>", received))
            expect(delivered == stored, "bob received %d offline messages, %d were stored" % (delivered, stored))
        finally:
            raw.close()
        self.server_alive("the offline flood")

    def server_alive(self, after):
        self.server.expect_alive(after)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--xmppd", required=True)
    parser.add_argument("--mmp", required=True)
    parser.add_argument("--address", default="127.0.0.8", help="loopback address for xmppd (127.0.0.8)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and log")
    args = parser.parse_args()

    server = attack.LimitedXmppd(args.xmppd, args.mmp, args.address, args.keep, 8 << 30)
    try:
        try:
            server.start()
        except CheckFailed as err:
            print("FAIL start xmppd: %s" % err)
            print("0 passed, 1 failed")
            return 1
        suite = Suite(server)
        suite.check("3000 subscription requests from a Call Bridge -> quota, errors", suite.subscribe_flood)
        suite.check("alice at quota: bounded requests at login, still chats", suite.alice_login_at_quota)
        suite.check("offline flood stops at 1 MiB with resource-constraint", suite.offline_flood)
        if suite.failed:
            print("--- xmppd log (last lines) ---\n%s" % server.log_tail())
        print("%d passed, %d failed" % (suite.passed, suite.failed))
        return 1 if suite.failed else 0
    finally:
        if server.process is not None and server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
            try:
                server.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        server.cleanup()


if __name__ == "__main__":
    sys.exit(main())
