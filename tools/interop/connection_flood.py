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

import argparse
import base64
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as interop  # noqa: E402

from run import DOMAIN, STREAM_HEADER, USERS, CheckFailed, Raw, expect  # noqa: E402

DESCRIPTOR_LIMIT = 512
ATTACKERS = ["127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24"]
FLOOD_PER_ADDRESS = 150
PRE_AUTH_CAP_PER_ADDRESS = 32
LEGITIMATE_ADDRESS = "127.0.0.30"
NAT_ADDRESS = "127.0.0.31"
LOGGED_IN = 40


class LimitedXmppd(interop.Xmppd):
    """xmppd with a low descriptor limit."""

    def start(self):
        self.mmp_run("xmpp", "domain", DOMAIN)
        self.mmp_run("xmpp", "listen", "%s:%d" % (self.address, self.port))
        self.mmp_run("xmpp", "enable")
        for user, password in USERS.items():
            self.mmp_run("user", "add", user, stdin="%s\n%s\n" % (password, password))

        def limit_descriptors():
            resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTOR_LIMIT, DESCRIPTOR_LIMIT))

        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [self.xmppd, "-d", self.dir, "--log-level", "info"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=limit_descriptors,
        )
        log.close()
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise CheckFailed("xmppd exited (%s) early:\n%s" % (self.process.returncode, self.log_tail()))
            try:
                socket.create_connection((self.address, self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise CheckFailed("xmppd did not listen within 30s:\n%s" % self.log_tail())
                time.sleep(0.1)

    def open_descriptors(self):
        return len(os.listdir("/proc/%d/fd" % self.process.pid))


def connect_from(source, server):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(interop.STEP_TIMEOUT)
    sock.bind((source, 0))
    sock.connect((server.address, server.port))
    return sock


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
    raw = Raw.__new__(Raw)
    raw.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.sock.settimeout(interop.STEP_TIMEOUT)
    raw.sock.bind((source, 0))
    raw.sock.connect((address, port))
    raw.received = b""
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
        final = interop.scram_client_final(USERS["alice"], client_first_bare, base64.b64decode(challenge))
        raw.received = b""
        raw.send(b"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.b64encode(final) + b"</response>")
        expect(raw.read_until(rb"</success>|<success[^>]*/>|</failure>"), "no SASL outcome: %r" % raw.received[-300:])
        expect(b"<success" in raw.received, "login refused: %r" % raw.received[-300:])
        raw.received = b""
        raw.send(STREAM_HEADER)
        expect(raw.read_until(rb"</stream:features>"), "no features after SASL: %r" % raw.received[-300:])
        raw.received = b""
        raw.send(
            b"<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>"
            + resource_name.encode()
            + b"</resource></bind></iq>"
        )
        expect(raw.read_until(rb"</iq>"), "no answer to the bind: %r" % raw.received[-300:])
        expect(b"<jid>alice@localhost/" in raw.received, "bind failed: %r" % raw.received[-300:])
        return raw
    except BaseException:
        raw.close()
        raise


def ping(raw, ident):
    raw.received = b""
    raw.send(("<iq type='get' id='%s' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>" % (ident, DOMAIN)).encode())
    expect(raw.read_until(rb"id=['\"]%s['\"]" % ident.encode()), "no answer to ping %s: %r" % (ident, raw.received[-300:]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--xmppd", required=True)
    parser.add_argument("--mmp", required=True)
    parser.add_argument("--address", default="127.0.0.11", help="loopback address for xmppd (127.0.0.11)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and log")
    args = parser.parse_args()

    # This process holds the whole flood plus the logged-in sessions.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = len(ATTACKERS) * FLOOD_PER_ADDRESS + LOGGED_IN + 64
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))

    server = LimitedXmppd(args.xmppd, args.mmp, args.address, args.keep)
    passed = failed = 0
    figures = []
    held = {}
    sessions = []

    def check(name, function):
        nonlocal passed, failed
        started = time.monotonic()
        try:
            function()
        except Exception as err:  # noqa: BLE001 - every failure is reported and counted
            failed += 1
            detail = str(err) if isinstance(err, CheckFailed) else "".join(traceback.format_exception_only(err)).strip()
            print("FAIL %-60s %s" % (name, detail), flush=True)
            return
        passed += 1
        print("ok   %-60s (%.2fs)" % (name, time.monotonic() - started), flush=True)

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
            figures.append(figure)
            print("     " + figure)
            expect(server.process.poll() is None, "xmppd died during the flood:\n%s" % server.log_tail())
            over = {a: c for a, c in counts.items() if c > PRE_AUTH_CAP_PER_ADDRESS}
            expect(not over, "attackers kept more than %d idle sockets each: %s" % (PRE_AUTH_CAP_PER_ADDRESS, over))

        check("idle pre-auth flood is capped per address", run_flood)

        def login_during_flood():
            raw = login(server.address, server.port, LEGITIMATE_ADDRESS, "during-flood")
            try:
                ping(raw, "flood-ping")
            finally:
                raw.close()
            figures.append("legitimate logins during the flood: 1 of 1")

        check("a legitimate login works during the flood", login_during_flood)

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

        check("%d logged-in sessions from one address all work" % LOGGED_IN, many_sessions_from_one_address)
    except CheckFailed as err:
        failed += 1
        print("FAIL setup: %s" % err, flush=True)
    finally:
        for socks in held.values():
            for sock in socks:
                sock.close()
        for raw in sessions:
            raw.close()
        if server.process is not None and server.process.poll() is None:
            server.terminate()
        if failed:
            print(server.log_tail(), flush=True)
        if not args.keep:
            shutil.rmtree(server.dir, ignore_errors=True)
        else:
            print("kept %s" % server.dir)
    for figure in figures:
        print("figure: " + figure)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
