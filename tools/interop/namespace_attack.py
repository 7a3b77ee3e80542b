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

import argparse
import base64
import os
import re
import resource
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback

# The raw-socket helpers and the server wrapper of the client interop tests.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as interop  # noqa: E402

from run import DOMAIN, STREAM_HEADER, USERS, CheckFailed, Raw, expect, free_port  # noqa: E402

# Big enough for a debug xmppd with its threads and TLS (it idles near 15 MiB resident),
# small enough that the old code's gigabytes fail fast.
ADDRESS_SPACE_LIMIT = 1024 * 1024 * 1024
# Peak resident memory allowed across the whole run (the fixed xmppd peaks near 17 MiB, the
# framer holding about 1 MiB per attacking connection); the old code reached 1.78 GB for
# one stanza.
PEAK_RSS_LIMIT_KIB = 64 * 1024
BRIDGE = "cb1"
BRIDGE_SECRET = "kvgP1SRzWVabhiPVAb1"


def attack_stanza():
    """The review's stanza: a 220 KiB namespace on an open <x>, then 8000 <a/>."""
    uri = b"urn:" + b"n" * (220 * 1024)
    return b"<x xmlns='" + uri + b"'>" + b"<a/>" * 8000 + b"</x>"


def copies_stanza():
    """Under the namespace length cap: a 1 KiB URI bound to a prefix once, then 8000 elements
    whose prefixed attribute makes the element carry the declaration (a copy each, 8 MiB)."""
    uri = b"urn:" + b"u" * 1020
    return b"<x xmlns:p='" + uri + b"'>" + b"<a p:b=''/>" * 8000 + b"</x>"


class LimitedXmppd(interop.Xmppd):
    """xmppd under RLIMIT_AS with a Call Bridge port and federation on their own ports."""

    def __init__(self, xmppd, mmp, address, keep, address_space_limit):
        super().__init__(xmppd, mmp, address, keep)
        self.address_space_limit = address_space_limit
        self.component_port = free_port(address)
        self.s2s_port = free_port(address)
        ports = {self.port, self.component_port, self.s2s_port}
        expect(len(ports) == 3, "free ports collide: %s" % sorted(ports))

    def start(self):
        self.mmp_run("xmpp", "domain", DOMAIN)
        self.mmp_run("xmpp", "listen", "%s:%d" % (self.address, self.port))
        self.mmp_run("xmpp", "callbridge", "port", str(self.component_port))
        self.mmp_run("xmpp", "enable")
        for user, password in USERS.items():
            self.mmp_run("user", "add", user, stdin="%s\n%s\n" % (password, password))
        self.mmp_run("xmpp", "callbridge", "add-secret", BRIDGE, stdin=BRIDGE_SECRET + "\n")
        self.mmp_run("federation", "enable")

        limit = self.address_space_limit

        def limit_address_space():
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [self.xmppd, "-d", self.dir, "--log-level", "info", "--s2s-port", str(self.s2s_port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=limit_address_space,
        )
        log.close()
        deadline = time.monotonic() + 30
        for port in (self.port, self.component_port, self.s2s_port):
            while True:
                if self.process.poll() is not None:
                    raise CheckFailed("xmppd exited (%s) early:\n%s" % (self.process.returncode, self.log_tail()))
                try:
                    socket.create_connection((self.address, port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise CheckFailed("xmppd did not listen on port %d within 30s:\n%s" % (port, self.log_tail()))
                    time.sleep(0.1)

    def memory_kib(self):
        """(VmRSS, VmHWM) in KiB from /proc/PID/status."""
        values = {}
        with open("/proc/%d/status" % self.process.pid) as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0])
        return values["VmRSS"], values["VmHWM"]

    def expect_alive(self, after):
        code = self.process.poll()
        if code is not None:
            how = "killed by signal %d" % -code if code < 0 else "exit status %d" % code
            raise CheckFailed("xmppd died (%s) after %s:\n%s" % (how, after, self.log_tail()))


def stream_error_condition(data):
    match = re.search(rb"<stream:error>\s*<([a-z-]+)[^>]*xmlns=['\"]urn:ietf:params:xml:ns:xmpp-streams['\"]", data)
    return match.group(1).decode() if match else None


def send_attack(raw, header, features, stanza=None):
    """Header, (features if the server sends them before anything else), then the stanza."""
    raw.send(header)
    if features:
        expect(raw.read_until(rb"</stream:features>|<stream:features[^>]*/>"), "no stream features: %r" % raw.received[-300:])
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


def tls_raw(address, port):
    """A Raw whose socket speaks TLS from the first byte (the Call Bridge port's default)."""
    raw = Raw(address, port)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw.sock = context.wrap_socket(raw.sock, server_hostname=DOMAIN)
    return raw


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
        thread.join(interop.STEP_TIMEOUT * 4)
    expect(not any(thread.is_alive() for thread in threads), "an attacking connection hung")
    expect(not failures, "%d of %d connections: %s" % (len(failures), connections, failures[:1]))


def attack_component_port(server):
    raw = tls_raw(server.address, server.component_port)
    header = (
        "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
        "xmlns:stream='http://etherx.jabber.org/streams' to='%s.%s'>" % (BRIDGE, DOMAIN)
    ).encode()
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
    header = (
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
        "xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
        "from='attacker.example' to='%s' version='1.0'>" % DOMAIN
    ).encode()
    try:
        send_attack(raw, header, features=True)
        expect_policy_violation(raw, "s2s port")
    finally:
        raw.close()


def legitimate_login(server):
    """STARTTLS, SCRAM-SHA-256 with alice's password, a new stream, resource binding."""
    raw = Raw(server.address, server.port)
    try:
        raw.starttls()
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
        final = interop.scram_client_final(USERS["alice"], client_first_bare, server_first)
        raw.received = b""
        raw.send(b"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.b64encode(final) + b"</response>")
        expect(raw.read_until(rb"</success>|<success[^>]*/>|</failure>"), "no SASL outcome: %r" % raw.received[-300:])
        expect(b"<success" in raw.received, "login refused: %r" % raw.received[-300:])
        raw.received = b""
        raw.send(STREAM_HEADER)
        expect(raw.read_until(rb"</stream:features>"), "no features after SASL: %r" % raw.received[-300:])
        raw.received = b""
        raw.send(
            b"<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            b"<resource>after-attack</resource></bind></iq>"
        )
        expect(raw.read_until(rb"</iq>"), "no answer to the bind: %r" % raw.received[-300:])
        expect(
            re.search(rb"<jid>alice@localhost/after-attack</jid>", raw.received) is not None,
            "bind failed: %r" % raw.received[-300:],
        )
    finally:
        raw.close()


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
            print("FAIL %-52s %s" % (name, detail), flush=True)
            return False
        self.passed += 1
        print("ok   %-52s (%.2fs)" % (name, time.monotonic() - started), flush=True)
        return True

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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--xmppd", required=True)
    parser.add_argument("--mmp", required=True)
    parser.add_argument("--address", default="127.0.0.7", help="loopback address for xmppd (127.0.0.7)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and log")
    parser.add_argument(
        "--address-space-mib",
        type=int,
        default=ADDRESS_SPACE_LIMIT >> 20,
        help="xmppd's RLIMIT_AS (default %(default)s); raise it to measure what an unfixed xmppd grows to",
    )
    args = parser.parse_args()

    server = LimitedXmppd(args.xmppd, args.mmp, args.address, args.keep, args.address_space_mib << 20)
    try:
        try:
            server.start()
        except CheckFailed as err:
            print("FAIL start xmppd: %s" % err)
            print("0 passed, 1 failed")
            return 1
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
