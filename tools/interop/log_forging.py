#!/usr/bin/env python3
"""Issue 13, low: log forging by peers, attacked on a real xmppd.

Standalone:

    /usr/bin/python3 tools/interop/log_forging.py --xmppd target/debug/xmppd --mmp target/debug/mmp

A peer that puts a newline (as the character reference &#10;) in a name it sends made xmppd
write a second, forged line into its log. This starts xmppd with clients, Call Bridges and
server-to-server listening, then:
  * on the s2s port, sends a db:result whose `to` carries a newline and a fake log line;
  * on the Call Bridge port, opens a stream whose `to` carries a newline and a fake log line;
and asserts that xmppd logged both (escaped, as `\\n`) and that no line of its log starts with
the forged text. No timing thresholds: every wait is bounded only so a hang fails.

The last line is `N passed, N failed` and the exit code is 1 on failure.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import namespace_attack as attack  # noqa: E402

from run import DOMAIN, CheckFailed, Raw, expect  # noqa: E402

FORGED = "2026-12-06 00:00:00.000Z WARN  sb_server::admin: FORGED"


def forged_lines(server):
    with open(server.log_path, "r", errors="replace") as log:
        # The s2s side lower-cases domains: the forged line arrives in lower case there.
        return [line for line in log if line.lower().startswith(FORGED.lower())]


def wait_for_log(server, needle):
    """Bounded: the log line is written as the stanza is handled."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with open(server.log_path, "r", errors="replace") as log:
            if needle.lower() in log.read().lower():
                return True
        time.sleep(0.1)
    return False


def s2s_db_result_to(server):
    raw = Raw(server.address, server.s2s_port)
    header = (
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
        "xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
        "from='attacker.example' to='%s' version='1.0'>" % DOMAIN
    ).encode()
    claim = ("<db:result from='attacker.example' to='%s&#10;%s-S2S'>00</db:result>" % (DOMAIN, FORGED)).encode()
    try:
        raw.send(header)
        expect(raw.read_until(rb"</stream:features>|<stream:features[^>]*/>"), "no s2s features")
        raw.send(claim)
        expect(wait_for_log(server, "FORGED-S2S"), "xmppd did not log the db:result")
        expect(not forged_lines(server), "forged log line: %r" % forged_lines(server))
    finally:
        raw.close()


def component_to(server):
    raw = attack.tls_raw(server.address, server.component_port)
    header = (
        "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
        "xmlns:stream='http://etherx.jabber.org/streams' to='nobody&#10;%s-COMPONENT'>" % FORGED
    ).encode()
    try:
        raw.send(header)
        raw.read_until(rb"</stream:stream>|<stream:error")
        expect(wait_for_log(server, "FORGED-COMPONENT"), "xmppd did not log the refused Call Bridge")
        expect(not forged_lines(server), "forged log line: %r" % forged_lines(server))
    finally:
        raw.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--xmppd", required=True)
    parser.add_argument("--mmp", required=True)
    parser.add_argument("--address", default="127.0.0.8", help="loopback address for xmppd (127.0.0.8)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and log")
    args = parser.parse_args()

    server = attack.LimitedXmppd(args.xmppd, args.mmp, args.address, args.keep, 4 << 30)
    passed = failed = 0
    try:
        try:
            server.start()
        except CheckFailed as err:
            print("FAIL start xmppd: %s" % err)
            print("0 passed, 1 failed")
            return 1
        for name, check in [
            ("s2s db:result 'to' with a newline", s2s_db_result_to),
            ("Call Bridge stream 'to' with a newline", component_to),
        ]:
            try:
                check(server)
                passed += 1
                print("ok   %s" % name)
            except CheckFailed as err:
                failed += 1
                print("FAIL %s: %s" % (name, err))
            except Exception:  # noqa: BLE001 - reported as a failure
                failed += 1
                print("FAIL %s:\n%s" % (name, traceback.format_exc()))
        if failed:
            print("--- xmppd log (last lines) ---\n%s" % server.log_tail())
        print("%d passed, %d failed" % (passed, failed))
        return 1 if failed else 0
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
