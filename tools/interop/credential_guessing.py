#!/usr/bin/env python3
"""Issue 13: guessing credentials on a real xmppd (component secrets, short secrets/passwords).

Standalone:

    /usr/bin/python3 tools/interop/credential_guessing.py --xmppd target/debug/xmppd --mmp target/debug/mmp

The review found a 1-character Call Bridge secret with 324 handshakes in 0.12 s. This starts
xmppd with the Call Bridge port on plain TCP (loopback) and:
  * `xmpp callbridge add-secret` refuses a 15-character secret (FAILURE, at least 16);
    `user add` and `user passwd` refuse a 7-character password (FAILURE, at least 8);
  * one real failure: cb1 with a wrong secret from 127.0.0.41;
  * a flood of FLOOD_ATTEMPTS handshakes with wrong secrets from 127.0.0.42, one after the
    other: the server may check at most the per-address failure allowance (20 per window);
    the rest are refused with <policy-violation/> before any secret is looked at. The
    attempts checked and the rate allowed are printed (a figure, not an assertion on time);
  * cb1 with the right secret from 127.0.0.43 still joins;
  * `xmpp status` still shows the real failure from 127.0.0.41 next to the flood's.

Every check asserts; the last line is `N passed, N failed` and the exit code is 1 on failure.
Every wait is bounded.
"""

import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as common  # noqa: E402

from interop_common import BRIDGE, BRIDGE_JID, BRIDGE_SECRET, CheckFailed, expect  # noqa: E402

REAL_FAILURE_ADDRESS = "127.0.0.41"
FLOOD_ADDRESS = "127.0.0.42"
GOOD_ADDRESS = "127.0.0.43"
FLOOD_ATTEMPTS = 300
FAILURE_ALLOWANCE = 20  # xmppd's --max-auth-failures-per-ip default


class BridgeXmppd(common.Xmppd):
    """xmppd with cb1 configured and the Call Bridge port on plain TCP (loopback)."""

    def __init__(self, xmppd, mmp, address, keep):
        super().__init__(xmppd, mmp, address, keep)
        self.component_port = common.other_free_port(address, self.port)

    def mmp_reply(self, *words, stdin=None):
        result = subprocess.run(
            [self.mmp, "-d", self.dir, *words], input=stdin, capture_output=True, text=True, timeout=60
        )
        return result.stdout + result.stderr

    def start(self):
        self.mmp_run("xmpp", "callbridge", "port", str(self.component_port))
        self.mmp_run("xmpp", "callbridge", "plain", "on")
        self.mmp_run("xmpp", "callbridge", "add-secret", BRIDGE, stdin=BRIDGE_SECRET + "\n")
        super().start()
        common.wait_listening(self, [self.component_port], what="the Call Bridge port")


def handshake(server, source, secret):
    """One XEP-0114 handshake from `source`; returns 'ok' or the stream error condition."""
    sock = common.bound_socket(source, server.address, server.component_port)
    try:
        sock.sendall(common.component_header(BRIDGE_JID))
        received = b""
        deadline = time.monotonic() + common.STEP_TIMEOUT
        stream_id = None
        sent = False
        while time.monotonic() < deadline:
            if stream_id is None:
                stream_id = common.stream_id(received)
            if stream_id is not None and not sent and b"<stream:error" not in received:
                digest = common.handshake_digest(stream_id, secret)
                sock.sendall(("<handshake>%s</handshake>" % digest).encode())
                sent = True
            if re.search(rb"<handshake\s*/>|<handshake>\s*</handshake>", received):
                return "ok"
            match = re.search(rb"<stream:error>\s*<([a-z-]+)", received)
            if match:
                return match.group(1).decode()
            try:
                chunk = sock.recv(65536)
            except (socket.timeout, OSError):
                break
            if not chunk:
                break
            received += chunk
        match = re.search(rb"<stream:error>\s*<([a-z-]+)", received)
        return match.group(1).decode() if match else "no answer: %r" % received[-200:]
    finally:
        sock.close()


def main():
    args = common.arguments(__doc__, "127.0.0.12").parse_args()

    server = BridgeXmppd(args.xmppd, args.mmp, args.address, args.keep)
    checks = common.Checks(server, width=60)
    figures = checks.figures

    try:
        server.start()

        def short_secret_refused():
            reply = server.mmp_reply("xmpp", "callbridge", "add-secret", "cb2", stdin="fifteen-chars-x\n")
            expect("FAILURE" in reply and "at least 16" in reply, "a 15-character secret was not refused: %r" % reply)

        checks.check("add-secret refuses a secret under 16 characters", short_secret_refused)

        def short_password_refused():
            reply = server.mmp_reply("user", "add", "carol", stdin="1234567\n1234567\n")
            expect("FAILURE" in reply and "at least 8" in reply, "user add took a 7-character password: %r" % reply)
            reply = server.mmp_reply("user", "passwd", "alice", stdin="1234567\n1234567\n")
            expect("FAILURE" in reply and "at least 8" in reply, "user passwd took a 7-character password: %r" % reply)

        checks.check("user add / passwd refuse a password under 8 characters", short_password_refused)

        def real_failure():
            got = handshake(server, REAL_FAILURE_ADDRESS, "not-the-secret-of-cb1")
            expect(got == "not-authorized", "a wrong secret got %s" % got)

        checks.check("a wrong secret is refused with not-authorized", real_failure)

        def flood():
            outcomes = {}
            started = time.monotonic()
            for n in range(FLOOD_ATTEMPTS):
                got = handshake(server, FLOOD_ADDRESS, "guess-%d" % n)
                outcomes[got] = outcomes.get(got, 0) + 1
                expect(got != "ok", "guess %d was accepted" % n)
            elapsed = time.monotonic() - started
            checked = outcomes.get("not-authorized", 0)
            figure = (
                "%d handshakes from one address in %.2f s: %d secrets checked (%.1f checked/s), outcomes %s"
                % (FLOOD_ATTEMPTS, elapsed, checked, checked / elapsed if elapsed > 0 else 0.0, outcomes)
            )
            checks.figure(figure)
            expect(
                checked <= FAILURE_ALLOWANCE,
                "%d of %d guesses had their secret checked (allowance %d)" % (checked, FLOOD_ATTEMPTS, FAILURE_ALLOWANCE),
            )
            expect(server.process.poll() is None, "xmppd died during the flood:\n%s" % server.log_tail())

        checks.check("a handshake flood from one address is throttled", flood)

        def right_secret_elsewhere():
            got = handshake(server, GOOD_ADDRESS, BRIDGE_SECRET)
            expect(got == "ok", "the right secret from another address got %s" % got)

        checks.check("the right secret from another address still joins", right_secret_elsewhere)

        def status_keeps_the_real_failure():
            status = server.mmp_run("xmpp", "status")
            expect(
                "from %s refused: wrong secret" % REAL_FAILURE_ADDRESS in status,
                "xmpp status lost the real failure:\n%s" % status,
            )
            expect(FLOOD_ADDRESS in status, "xmpp status does not show the flood:\n%s" % status)
            for line in status.splitlines():
                if FLOOD_ADDRESS in line:
                    figures.append("xmpp status: " + line.strip())

        checks.check("xmpp status keeps the real failure next to the flood", status_keeps_the_real_failure)
    except CheckFailed as err:
        checks.failed += 1
        print("FAIL setup: %s" % err, flush=True)
    finally:
        common.finish(server, checks)
    return common.summary(checks)


if __name__ == "__main__":
    sys.exit(main())
