#!/usr/bin/env python3
"""Issue 13, low: offline messages were deleted before they were written to the client.

Standalone:

    /usr/bin/python3 tools/interop/offline_delivery.py --xmppd target/debug/xmppd --mmp target/debug/mmp

Starts xmppd with users alice and bob and Call Bridge cb1, then over raw sockets:
  * cb1 queues MESSAGES messages for bob, who is offline;
  * bob logs in, sends initial presence and drops the TCP connection at once, reading
    nothing;
  * bob logs in again: every message is still delivered (at least once), followed by the
    server's XEP-0199 ping; bob answers it;
  * bob logs in a third time: nothing is delivered (the answer acknowledged them).

Every check asserts; the last line is `N passed, N failed` and the exit code is 1 on failure.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as common  # noqa: E402
import namespace_attack as attack  # noqa: E402
import storage_quota as quota  # noqa: E402

from interop_common import BRIDGE_JID, DOMAIN, expect, wait_for_log  # noqa: E402

MESSAGES = 3


def bodies(received):
    return re.findall(rb"<body>(queued [0-9]+)</body>", received)


def scenario(server):
    component = quota.Component(server)
    try:
        received = component.batch([
            ("<message from='caller@%s' to='bob@%s' type='chat' id='q%d'><body>queued %d</body></message>"
             % (BRIDGE_JID, DOMAIN, n, n)).encode()
            for n in range(MESSAGES)
        ])
        expect(b"type='error'" not in received, "queuing refused: %r" % received[-300:])
    finally:
        component.close()

    raw = quota.login(server, "bob", "drop")
    raw.send(b"<presence/>")
    raw.close()
    expect(wait_for_log(server, r"bob@localhost/drop ended"), "the dropped session did not end")

    raw = quota.login(server, "bob", "again")
    try:
        received = quota.initial_presence(raw)
        got = bodies(received)
        print("     after the dropped login, the next login received %d of %d messages" % (len(got), MESSAGES))
        expect(len(got) == MESSAGES, "messages lost by the dropped login: received %r" % got)
        ping = re.search(rb"<iq[^>]*type=['\"]get['\"][^>]*>\s*<ping", received)
        expect(ping is not None, "no ping after the offline messages: %r" % received[-300:])
        ping_id = re.search(rb"id=['\"]([^'\"]+)['\"]", ping.group(0)).group(1)
        raw.send(b"<iq type='result' id='" + ping_id + b"' to='localhost'/>")
        # Our own ping after it: its answer comes after the acknowledgement was handled.
        raw.send(b"<iq type='get' id='after-ack' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        expect(raw.read_until(rb"<iq[^>]*id=['\"]after-ack['\"]"), "no answer after the acknowledgement")
    finally:
        raw.close()
    expect(wait_for_log(server, r"bob@localhost/again ended"), "the second session did not end")

    raw = quota.login(server, "bob", "third")
    try:
        got = bodies(quota.initial_presence(raw))
        expect(not got, "acknowledged messages delivered again: %r" % got)
    finally:
        raw.close()


def main():
    args = common.arguments(__doc__, "127.0.0.9").parse_args()

    def run_checks(server):
        suite = common.Checks(server, width=60)
        suite.check("offline messages survive a login dropped before reading", lambda: scenario(server))
        return suite

    server = attack.LimitedXmppd(args.xmppd, args.mmp, args.address, args.keep, 8 << 30)
    return common.serve(server, run_checks)


if __name__ == "__main__":
    sys.exit(main())
