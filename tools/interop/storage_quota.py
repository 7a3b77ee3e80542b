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

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as common  # noqa: E402
import namespace_attack as attack  # noqa: E402

from interop_common import BRIDGE_JID, DOMAIN, expect  # noqa: E402

MAX_PENDING = 100
SUBSCRIPTIONS = 3000
BATCH = 100
FLOOD_MESSAGES = 40
MESSAGE_BYTES = 100 * 1024
OFFLINE_BYTES_QUOTA = 1024 * 1024


class Component:
    """cb1 over TLS, handshake done; every batch ends with a ping whose answer is awaited."""

    def __init__(self, server):
        self.raw = common.tls_raw(server.address, server.component_port)
        self.pings = 0
        self.raw.send(common.component_header(BRIDGE_JID))
        expect(self.raw.read_until(rb"<stream:stream[^>]*>"), "no stream header from the Call Bridge port")
        digest = common.handshake_digest(common.stream_id(self.raw.received), common.BRIDGE_SECRET)
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
        expect(self.raw.read_until(pattern, timeout=common.STEP_TIMEOUT * 4), "no answer to ping %s" % ping_id)
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
    return common.login(server.address, server.port, user, resource)


def initial_presence(raw):
    """Send initial presence and a ping; return what arrived before the ping's answer."""
    raw.send(b"<presence/><iq type='get' id='after-presence' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    expect(raw.read_until(rb"<iq[^>]*id=['\"]after-presence['\"]", timeout=common.STEP_TIMEOUT * 4),
           "no answer to the ping after initial presence")
    received, raw.received = raw.received, b""
    return received


class Suite(common.Checks):
    def __init__(self, server):
        super().__init__(server, width=60)

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
            self.figure(figure)
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
            self.figure(figure)
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
        self.figure(figure)
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
    args = common.arguments(__doc__, "127.0.0.8").parse_args()

    def run_checks(server):
        suite = Suite(server)
        suite.check("3000 subscription requests from a Call Bridge -> quota, errors", suite.subscribe_flood)
        suite.check("alice at quota: bounded requests at login, still chats", suite.alice_login_at_quota)
        suite.check("offline flood stops at 1 MiB with resource-constraint", suite.offline_flood)
        return suite

    server = attack.LimitedXmppd(args.xmppd, args.mmp, args.address, args.keep, 8 << 30)
    return common.serve(server, run_checks)


if __name__ == "__main__":
    sys.exit(main())
