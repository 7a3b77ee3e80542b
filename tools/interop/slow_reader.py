#!/usr/bin/env python3
"""Issue 13, medium: queues bounded by count, not bytes; attacked on a real xmppd.

Standalone:

    /usr/bin/python3 tools/interop/slow_reader.py --xmppd target/debug/xmppd --mmp target/debug/mmp

Starts xmppd with users alice and bob and Call Bridge cb1, then over raw sockets:
  * slow readers: bob binds SLOW_SESSIONS resources (STARTTLS, SCRAM, bind) that never read;
    cb1 floods each of them with FLOOD_ROUNDS messages of MESSAGE_BYTES. xmppd's VmRSS must
    stay within RSS_BOUND_KIB of its baseline, every slow session must be closed for not
    reading (log: policy-violation), every message must be accounted for (read by the slow
    socket before it closed, stored offline for bob, or bounced to cb1 with an error) except
    at most what a closing stream had in its write buffer, and cb1 must keep working (the
    bounces of a closed session's queue come back to it in a burst: a Call Bridge's queue
    budget takes them, a client's would not);
  * pipelining: alice sends PIPELINED roster and disco#info requests without reading; RSS
    stays bounded, xmppd stays up, and a fresh login still works.
Each batch ends with an XEP-0199 ping whose answer closes it, so no count depends on timing.
On main (count-only queues) the flood grows xmppd by hundreds of MiB and no session is
closed for its queue: both of those checks fail there.

Every check asserts; the last line is `N passed, N failed` and the exit code is 1 on failure.
"""

import os
import re
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as common  # noqa: E402
import namespace_attack as attack  # noqa: E402
from storage_quota import Component  # noqa: E402

from interop_common import BRIDGE_JID, DOMAIN, expect  # noqa: E402

SLOW_SESSIONS = 6
FLOOD_ROUNDS = 160
MESSAGE_BYTES = 240 * 1024
# Generous: the byte budgets keep the growth to a few MiB per slow session (48 MiB for the
# whole daemon; +14 MiB measured); count-only queues hold 256 stanzas per session, 60 MiB
# each here (+200 MiB and more measured on main).
RSS_BOUND_KIB = 128 * 1024
# A closing stream may lose what it had already serialized for the socket: the write
# buffer (128 KiB, so one message of this size) and the message being written.
MAY_LOSE_PER_SESSION = 2
PIPELINED = 5000


def login(server, user, resource):
    return common.login(server.address, server.port, user, resource)


def ping(raw, ping_id, timeout=common.STEP_TIMEOUT * 4):
    """Send a ping to the server; return everything received up to its answer."""
    raw.send(("<iq type='get' id='%s' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>" % (ping_id, DOMAIN)).encode())
    pattern = ("<iq[^>]*id=['\"]%s['\"]" % ping_id).encode()
    expect(raw.read_until(pattern, timeout=timeout), "no answer to ping %s: %r" % (ping_id, raw.received[-300:]))
    received, raw.received = raw.received, b""
    return received


def drain_until_closed(raw, timeout):
    """Read everything the server sent until it closes; (closed, bytes read)."""
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        raw.sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = raw.sock.recv(1 << 20)
        except socket.timeout:
            return False, data
        except (OSError, ssl.SSLError):
            return True, data
        if not chunk:
            return True, data
        data += chunk
    return False, data


def errors_in(received):
    """(message errors, of them resource-constraint)."""
    stanzas = re.findall(rb"<message[^>]*type=['\"]error['\"].*?</message>", received, re.S)
    return len(stanzas), len([s for s in stanzas if b"<resource-constraint" in s])


class Suite(common.Checks):
    def __init__(self, server):
        super().__init__(server, width=66)
        self.baseline_kib = None

    def rss_kib(self):
        return common.memory_kib(self.server.process.pid)[0]

    def slow_readers(self):
        server = self.server
        self.baseline_kib = self.rss_kib()
        slow = [login(server, "bob", "slow%d" % n) for n in range(SLOW_SESSIONS)]
        sender = Component(server)
        try:
            body = "s" * MESSAGE_BYTES
            sent = bounced = constrained = 0
            peak = self.baseline_kib
            for round_number in range(FLOOD_ROUNDS):
                for n in range(SLOW_SESSIONS):
                    # One message per ping: the sender reads its bounces as they come.
                    received = sender.batch([
                        ("<message from='caller@%s' to='bob@%s/slow%d' type='chat' id='f%d-%d'><body>%s</body></message>"
                         % (BRIDGE_JID, DOMAIN, n, round_number, n, body)).encode()
                    ])
                    sent += 1
                    e, c = errors_in(received)
                    bounced += e
                    constrained += c
                peak = max(peak, self.rss_kib())
                common.expect_alive(server, "round %d of the flood" % round_number)
            growth = peak - self.baseline_kib
            self.figure("slow readers: %d sessions x %d messages of %d KiB: xmppd VmRSS %d MiB -> peak %d MiB (+%d MiB)"
                        % (SLOW_SESSIONS, FLOOD_ROUNDS, MESSAGE_BYTES // 1024, self.baseline_kib // 1024,
                           peak // 1024, growth // 1024))
            expect(growth < RSS_BOUND_KIB, "xmppd grew by %d MiB under the flood (bound %d MiB)"
                   % (growth // 1024, RSS_BOUND_KIB // 1024))
            # Every slow session is ended for its queue, not merely by the write timeout.
            for n in range(SLOW_SESSIONS):
                pattern = r"bob@%s/slow%d.*(policy-violation|not reading)" % (re.escape(DOMAIN), n)
                expect(common.wait_for_log(server, pattern, timeout=60),
                       "slow%d was not closed for its queue:\n%s" % (n, server.log_tail()))
            delivered = 0
            for n, raw in enumerate(slow):
                closed, data = drain_until_closed(raw, timeout=60)
                expect(closed, "slow%d is still connected after the flood" % n)
                delivered += len(re.findall(rb"</message>", data))
            # The sender still works: its last bounces, then a message to alice arrives.
            alice = login(server, "alice", "reader")
            try:
                tail = sender.batch([
                    ("<message from='caller@%s' to='alice@%s/reader' type='chat'><body>still here</body></message>"
                     % (BRIDGE_JID, DOMAIN)).encode()
                ])
                e, c = errors_in(tail)
                bounced += e
                constrained += c
                expect(alice.read_until(rb"<body>still here</body>"), "cb1's message to alice did not arrive")
            finally:
                alice.close()
        finally:
            sender.close()
            for raw in slow:
                raw.close()
        stored = self.offline_for_bob()
        lost = sent - delivered - stored - bounced
        self.figure("slow readers: %d sent: %d read by bob before the close, %d stored offline, %d bounced "
                    "(%d resource-constraint), %d unaccounted" % (sent, delivered, stored, bounced, constrained, lost))
        expect(bounced > 0 and stored > 0, "the queued messages were neither stored nor bounced")
        expect(lost <= MAY_LOSE_PER_SESSION * SLOW_SESSIONS,
               "%d messages unaccounted for (at most %d may be in closing write buffers)"
               % (lost, MAY_LOSE_PER_SESSION * SLOW_SESSIONS))

    def offline_for_bob(self):
        raw = login(self.server, "bob", "reads")
        try:
            raw.send(b"<presence/>")
            received = ping(raw, "after-presence")
            return len(re.findall(rb"<body>s+</body>", received))
        finally:
            raw.close()

    def pipelining(self):
        server = self.server
        baseline = self.rss_kib()
        raw = login(server, "alice", "pipeline")
        try:
            requests = []
            for n in range(PIPELINED):
                if n % 2:
                    requests.append(("<iq type='get' id='r%d'><query xmlns='jabber:iq:roster'/></iq>" % n).encode())
                else:
                    requests.append(("<iq type='get' id='d%d' to='%s'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
                                     % (n, DOMAIN)).encode())
            payload = b"".join(requests)
            # Send without reading; the server may stop reading us (that is the point), so
            # the send is bounded and may end early.
            raw.sock.settimeout(20)
            sent = 0
            try:
                while sent < len(payload):
                    sent += raw.sock.send(payload[sent:sent + 65536])
            except (socket.timeout, OSError, ssl.SSLError):
                pass
            time.sleep(2)
            peak = self.rss_kib()
            self.figure("pipelining: %d of %d KiB of requests sent unread: VmRSS %d MiB -> %d MiB"
                        % (sent // 1024, len(payload) // 1024, baseline // 1024, peak // 1024))
            expect(peak - baseline < RSS_BOUND_KIB, "xmppd grew by %d MiB" % ((peak - baseline) // 1024))
            common.expect_alive(server, "the pipelined requests")
        finally:
            raw.close()
        fresh = login(server, "bob", "after-pipeline")
        try:
            ping(fresh, "fresh")
        finally:
            fresh.close()


def main():
    args = common.arguments(__doc__, "127.0.0.12").parse_args()

    def run_checks(server):
        suite = Suite(server)
        suite.check("slow readers flooded: bounded RSS, closed, nothing lost", suite.slow_readers)
        suite.check("pipelined requests without reading: bounded RSS", suite.pipelining)
        return suite

    server = attack.LimitedXmppd(args.xmppd, args.mmp, args.address, args.keep, 8 << 30)
    code = common.serve(server, run_checks)
    return code


if __name__ == "__main__":
    sys.exit(main())
