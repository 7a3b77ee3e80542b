#!/usr/bin/env python3
"""Issue 13, critical: the framer's memory amplification, attacked on a real xmppd.

Standalone:

    /usr/bin/python3 tools/interop/namespace_attack.py --xmppd target/debug/xmppd --mmp target/debug/mmp

One unauthenticated stanza, a 220 KiB namespace URI on an open `<x>` followed by 8000 `<a/>`
(257 KB, inside the 256 KiB stanza limit as the review sent it), made xmppd copy the URI into
every element: gigabytes of heap, and the daemon died. This starts xmppd under an address
space limit (RLIMIT_AS, 1 GiB) so the old code dies instead of eating the machine, with
clients, Call Bridges (TLS on the socket) and server-to-server listening, then sends that
stanza:
  * on the client port right after the stream header, before STARTTLS;
  * on the Call Bridge port, over its TLS, before the component handshake;
  * on the s2s port, before any authentication;
and after each one asserts that the peer got <policy-violation/> and the stream was closed,
that xmppd is alive, and that its peak resident memory (VmHWM in /proc/PID/status) stayed
under a bound. Finally a legitimate login (STARTTLS, SCRAM-SHA-256, resource binding) still
works. No timing thresholds: every wait is bounded only so a hang fails instead of blocking.

Every check asserts; the last line is `N passed, N failed` and the exit code is 1 on failure.
"""

import os
import re
import resource
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as common  # noqa: E402

from interop_common import (  # noqa: E402
    BRIDGE,
    DOMAIN,
    FEATURES,
    S2S_HEADER,
    STREAM_HEADER,
    CheckFailed,
    Raw,
    expect,
)

# Big enough for a debug xmppd with its threads and TLS (it idles near 15 MiB resident),
# small enough that the old code's gigabytes fail fast.
ADDRESS_SPACE_LIMIT = 1024 * 1024 * 1024
# Peak resident memory allowed across the whole run (the fixed xmppd peaks near 17 MiB, the
# framer holding about 1 MiB per attacking connection); the old code reached 1.78 GB for
# one stanza.
PEAK_RSS_LIMIT_KIB = 64 * 1024


def attack_stanza():
    """The review's stanza: a 220 KiB namespace on an open <x>, then 8000 <a/>."""
    uri = b"urn:" + b"n" * (220 * 1024)
    return b"<x xmlns='" + uri + b"'>" + b"<a/>" * 8000 + b"</x>"


def copies_stanza():
    """Under the namespace length cap: a 1 KiB URI bound to a prefix once, then 8000 elements
    whose prefixed attribute makes the element carry the declaration (a copy each, 8 MiB)."""
    uri = b"urn:" + b"u" * 1020
    return b"<x xmlns:p='" + uri + b"'>" + b"<a p:b=''/>" * 8000 + b"</x>"


class LimitedXmppd(common.Xmppd):
    """xmppd under RLIMIT_AS with a Call Bridge port and federation on their own ports."""

    def __init__(self, xmppd, mmp, address, keep, address_space_limit):
        super().__init__(xmppd, mmp, address, keep)
        self.address_space_limit = address_space_limit
        self.component_port = common.free_port(address)
        self.s2s_port = common.free_port(address)
        ports = {self.port, self.component_port, self.s2s_port}
        expect(len(ports) == 3, "free ports collide: %s" % sorted(ports))

    def start(self):
        common.configure(self, component_port=self.component_port, bridge_secret=True, federation=True)
        limit = self.address_space_limit

        def limit_address_space():
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        common.spawn(
            self,
            extra_args=["--s2s-port", str(self.s2s_port)],
            preexec_fn=limit_address_space,
            ports=[self.port, self.component_port, self.s2s_port],
        )

    def memory_kib(self):
        """(VmRSS, VmHWM) in KiB from /proc/PID/status."""
        return common.memory_kib(self.process.pid)

    def expect_alive(self, after):
        common.expect_alive(self, after)


def stream_error_condition(data):
    match = re.search(rb"<stream:error>\s*<([a-z-]+)[^>]*xmlns=['\"]urn:ietf:params:xml:ns:xmpp-streams['\"]", data)
    return match.group(1).decode() if match else None


def send_attack(raw, header, features, stanza=None):
    """Header, (features if the server sends them before anything else), then the stanza."""
    raw.send(header)
    if features:
        expect(raw.read_until(FEATURES), "no stream features: %r" % raw.received[-300:])
    try:
        raw.send(stanza or attack_stanza())
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may close while the stanza is still going out; what it said counts


def expect_policy_violation(raw, where):
    raw.read_until(rb"</stream:stream>")
    got = stream_error_condition(raw.received)
    expect(
        got == "policy-violation",
        "%s: expected <policy-violation/>, got %s; received: %r"
        % (where, got and "<%s/>" % got, raw.received[-400:]),
    )
    expect(raw.closed_by_peer(), "%s: the stream was not closed after <policy-violation/>" % where)


def attack_client_port(server):
    raw = Raw(server.address, server.port)
    try:
        send_attack(raw, STREAM_HEADER, features=True)
        expect(b"starttls" in raw.received, "the attack is meant to go before STARTTLS")
        expect_policy_violation(raw, "client port")
    finally:
        raw.close()


def attack_client_port_with_copies(server):
    raw = Raw(server.address, server.port)
    try:
        send_attack(raw, STREAM_HEADER, features=True, stanza=copies_stanza())
        expect_policy_violation(raw, "client port (copies)")
    finally:
        raw.close()


def attack_client_port_in_parallel(server, connections=8):
    """Several attackers at once: each connection costs about its stanza, not gigabytes."""
    failures = []

    def one():
        try:
            attack_client_port(server)
        except Exception as err:  # noqa: BLE001 - collected and reported below
            failures.append(err)

    threads = [threading.Thread(target=one) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(common.STEP_TIMEOUT * 4)
    expect(not any(thread.is_alive() for thread in threads), "an attacking connection hung")
    expect(not failures, "%d of %d connections: %s" % (len(failures), connections, failures[:1]))


def attack_component_port(server):
    raw = common.tls_raw(server.address, server.component_port)
    header = common.component_header("%s.%s" % (BRIDGE, DOMAIN))
    try:
        raw.send(header)
        expect(raw.read_until(rb"<stream:stream[^>]*>"), "no stream header from the Call Bridge port")
        send_attack(raw, b"", features=False)
        expect(b"<handshake" not in raw.received, "handshake completed?")
        expect_policy_violation(raw, "Call Bridge port")
    finally:
        raw.close()


def attack_s2s_port(server):
    raw = Raw(server.address, server.s2s_port)
    header = S2S_HEADER
    try:
        send_attack(raw, header, features=True)
        expect_policy_violation(raw, "s2s port")
    finally:
        raw.close()


def legitimate_login(server):
    """STARTTLS, SCRAM-SHA-256 with alice's password, a new stream, resource binding."""
    common.login(server.address, server.port, "alice", "after-attack").close()


class Suite(common.Checks):
    def __init__(self, server):
        super().__init__(server, width=52)

    def attack(self, where, function):
        def run_attack():
            failure = None
            try:
                function(self.server)
            except (CheckFailed, OSError) as err:
                failure = err
            # Whatever the peer saw, the daemon must have survived it; the figures are
            # printed either way.
            self.server.expect_alive("the attack on the %s" % where)
            rss, peak = self.server.memory_kib()
            self.figures.append("%s: VmRSS %d KiB, VmHWM %d KiB" % (where, rss, peak))
            print("     xmppd after the attack on the %s: VmRSS %d KiB, peak VmHWM %d KiB" % (where, rss, peak))
            if failure is not None:
                raise failure
            expect(
                peak <= PEAK_RSS_LIMIT_KIB,
                "xmppd's peak resident memory reached %d KiB (limit %d KiB)" % (peak, PEAK_RSS_LIMIT_KIB),
            )

        return self.check("namespace attack on the %s -> policy-violation" % where, run_attack)


def main():
    parser = common.arguments(__doc__, "127.0.0.7")
    parser.add_argument(
        "--address-space-mib",
        type=int,
        default=ADDRESS_SPACE_LIMIT >> 20,
        help="xmppd's RLIMIT_AS (default %(default)s); raise it to measure what an unfixed xmppd grows to",
    )
    args = parser.parse_args()

    def run_checks(server):
        rss, peak = server.memory_kib()
        print(
            "xmppd (RLIMIT_AS %d MiB) on %s: clients %d, Call Bridges %d (TLS), s2s %d; VmRSS %d KiB, VmHWM %d KiB"
            % (args.address_space_mib, server.address, server.port, server.component_port, server.s2s_port, rss, peak)
        )
        suite = Suite(server)
        suite.check("login before the attacks", lambda: legitimate_login(server))
        alive = True
        for where, function in [
            ("client port, before STARTTLS", attack_client_port),
            ("Call Bridge port, before the handshake", attack_component_port),
            ("s2s port, before authentication", attack_s2s_port),
            ("client port, 1 KiB prefix copied by 8000 attributes", attack_client_port_with_copies),
            ("client port, 8 connections at once", attack_client_port_in_parallel),
        ]:
            if not alive:
                suite.failed += 1
                print("FAIL namespace attack on the %-35s xmppd is gone" % where)
                continue
            suite.attack(where, function)
            alive = server.process.poll() is None
        if alive:
            suite.check("login after the attacks", lambda: legitimate_login(server))
        else:
            suite.failed += 1
            print("FAIL login after the attacks: xmppd is gone")
        return suite

    server = LimitedXmppd(args.xmppd, args.mmp, args.address, args.keep, args.address_space_mib << 20)
    return common.serve(server, run_checks)


if __name__ == "__main__":
    sys.exit(main())
