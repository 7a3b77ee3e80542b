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

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as common  # noqa: E402
import namespace_attack as attack  # noqa: E402

from interop_common import FEATURES, S2S_HEADER, Raw, expect  # noqa: E402

FORGED = "2026-12-06 00:00:00.000Z WARN  sb_server::admin: FORGED"


def forged_lines(server):
    with open(server.log_path, "r", errors="replace") as log:
        # The s2s side lower-cases domains: the forged line arrives in lower case there.
        return [line for line in log if line.lower().startswith(FORGED.lower())]


def wait_for_log(server, needle):
    """Bounded: the log line is written as the stanza is handled."""
    return common.wait_for_log(server, "(?i)" + re.escape(needle), timeout=20)


def s2s_db_result_to(server):
    raw = Raw(server.address, server.s2s_port)
    claim = ("<db:result from='attacker.example' to='%s&#10;%s-S2S'>00</db:result>" % (common.DOMAIN, FORGED)).encode()
    try:
        raw.send(S2S_HEADER)
        expect(raw.read_until(FEATURES), "no s2s features")
        raw.send(claim)
        expect(wait_for_log(server, "FORGED-S2S"), "xmppd did not log the db:result")
        expect(not forged_lines(server), "forged log line: %r" % forged_lines(server))
    finally:
        raw.close()


def component_to(server):
    raw = common.tls_raw(server.address, server.component_port)
    header = common.component_header("nobody&#10;%s-COMPONENT" % FORGED)
    try:
        raw.send(header)
        raw.read_until(rb"</stream:stream>|<stream:error")
        expect(wait_for_log(server, "FORGED-COMPONENT"), "xmppd did not log the refused Call Bridge")
        expect(not forged_lines(server), "forged log line: %r" % forged_lines(server))
    finally:
        raw.close()


def main():
    args = common.arguments(__doc__, "127.0.0.8").parse_args()

    def run_checks(server):
        checks = common.Checks(server, width=40)
        for name, check in [
            ("s2s db:result 'to' with a newline", s2s_db_result_to),
            ("Call Bridge stream 'to' with a newline", component_to),
        ]:
            checks.check(name, lambda check=check: check(server))
        return checks

    server = attack.LimitedXmppd(args.xmppd, args.mmp, args.address, args.keep, 4 << 30)
    return common.serve(server, run_checks)


if __name__ == "__main__":
    sys.exit(main())
