#!/usr/bin/env python3
"""Issue 13, high: a flood of idle pre-auth sockets must not exhaust xmppd's descriptors.

Standalone:

    /usr/bin/python3 tools/interop/connection_flood.py --xmppd target/debug/xmppd --mmp target/debug/mmp

xmppd starts with RLIMIT_NOFILE lowered to 512 (so the flood is a few hundred sockets, not
tens of thousands). Then:
  * four attacking addresses (127.0.0.21-24) each open FLOOD_PER_ADDRESS idle sockets that
    never send a byte; the old code accepted up to 1024 per address and ran out of
    descriptors (`accept failed`), so the next login failed. Each attacker must keep at most
    the per-address pre-auth cap (32) open;
  * a legitimate login (STARTTLS, SCRAM-SHA-256, bind) from another address works while the
    flood is held open;
  * LOGGED_IN sessions (more than the per-address pre-auth cap) log in from one address and
    all stay usable: logged-in sessions are bounded only by the global cap.
The figures (sockets held per attacker, logins during the flood) are printed. No timing
thresholds: every wait is bounded only so a hang fails instead of blocking.

Every check asserts; the last line is `N passed, N failed` and the exit code is 1 on failure.
"""

import os
import resource
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as common  # noqa: E402

from interop_common import DOMAIN, CheckFailed, expect  # noqa: E402

DESCRIPTOR_LIMIT = 512
ATTACKERS = ["127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24"]
FLOOD_PER_ADDRESS = 150
PRE_AUTH_CAP_PER_ADDRESS = 32
LEGITIMATE_ADDRESS = "127.0.0.30"
NAT_ADDRESS = "127.0.0.31"
LOGGED_IN = 40


class LimitedXmppd(common.Xmppd):
    """xmppd with a low descriptor limit."""

    def start(self):
        common.configure(self)

        def limit_descriptors():
            resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTOR_LIMIT, DESCRIPTOR_LIMIT))

        common.spawn(self, preexec_fn=limit_descriptors)

    def open_descriptors(self):
        return common.open_descriptors(self.process.pid)


def connect_from(source, server):
    return common.bound_socket(source, server.address, server.port)


def still_open(sock, wait=0.5):
    """Whether the server kept the socket: no EOF or reset within `wait` (it says nothing to
    an idle pre-auth socket, and closes a refused one at once)."""
    sock.settimeout(wait)
    try:
        chunk = sock.recv(4096)
    except socket.timeout:
        return True
    except OSError:
        return False
    if not chunk:
        return False
    # A refusal writes a stream error before closing.
    return b"stream:error" not in chunk


def flood(server):
    """Idle sockets from every attacker; returns {address: sockets the server kept}."""
    sockets = {address: [] for address in ATTACKERS}
    for address in ATTACKERS:
        for _ in range(FLOOD_PER_ADDRESS):
            try:
                sockets[address].append(connect_from(address, server))
            except OSError:
                break
    # The accept loop runs asynchronously: let it catch up before counting (bounded).
    time.sleep(1.0)
    kept = {}
    for address, socks in sockets.items():
        alive = []
        for sock in socks:
            if still_open(sock, wait=0.02):
                alive.append(sock)
            else:
                sock.close()
        kept[address] = alive
    return kept


def login(address, port, source, resource_name):
    """STARTTLS, SCRAM-SHA-256 as alice, bind; returns the Raw, still open."""
    return common.login(address, port, "alice", resource_name, source=source, exact_jid=False)


def ping(raw, ident):
    raw.received = b""
    raw.send(("<iq type='get' id='%s' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>" % (ident, DOMAIN)).encode())
    expect(raw.read_until(rb"id=['\"]%s['\"]" % ident.encode()), "no answer to ping %s: %r" % (ident, raw.received[-300:]))


def main():
    args = common.arguments(__doc__, "127.0.0.11").parse_args()

    # This process holds the whole flood plus the logged-in sessions.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = len(ATTACKERS) * FLOOD_PER_ADDRESS + LOGGED_IN + 64
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))

    server = LimitedXmppd(args.xmppd, args.mmp, args.address, args.keep)
    checks = common.Checks(server, width=60)
    figures = checks.figures
    held = {}
    sessions = []

    try:
        server.start()

        def run_flood():
            held.update(flood(server))
            counts = {address: len(socks) for address, socks in held.items()}
            figure = "idle pre-auth sockets kept per attacking address (of %d tried): %s; xmppd descriptors %d of %d" % (
                FLOOD_PER_ADDRESS,
                counts,
                server.open_descriptors(),
                DESCRIPTOR_LIMIT,
            )
            checks.figure(figure)
            expect(server.process.poll() is None, "xmppd died during the flood:\n%s" % server.log_tail())
            over = {a: c for a, c in counts.items() if c > PRE_AUTH_CAP_PER_ADDRESS}
            expect(not over, "attackers kept more than %d idle sockets each: %s" % (PRE_AUTH_CAP_PER_ADDRESS, over))

        checks.check("idle pre-auth flood is capped per address", run_flood)

        def login_during_flood():
            raw = login(server.address, server.port, LEGITIMATE_ADDRESS, "during-flood")
            try:
                ping(raw, "flood-ping")
            finally:
                raw.close()
            figures.append("legitimate logins during the flood: 1 of 1")

        checks.check("a legitimate login works during the flood", login_during_flood)

        for socks in held.values():
            for sock in socks:
                sock.close()
        held.clear()

        def many_sessions_from_one_address():
            for n in range(LOGGED_IN):
                sessions.append(login(server.address, server.port, NAT_ADDRESS, "nat-%d" % n))
            for n, raw in enumerate(sessions):
                ping(raw, "nat-ping-%d" % n)
            figures.append("logged-in sessions from one address: %d (pre-auth cap %d)" % (len(sessions), PRE_AUTH_CAP_PER_ADDRESS))

        checks.check("%d logged-in sessions from one address all work" % LOGGED_IN, many_sessions_from_one_address)
    except CheckFailed as err:
        checks.failed += 1
        print("FAIL setup: %s" % err, flush=True)
    finally:
        for socks in held.values():
            for sock in socks:
                sock.close()
        for raw in sessions:
            raw.close()
        common.finish(server, checks)
    return common.summary(checks)


if __name__ == "__main__":
    sys.exit(main())
