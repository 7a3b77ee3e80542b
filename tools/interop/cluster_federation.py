"""Federation from a cluster: a key one node issues is verified by another.

Three nodes of the domain `localhost` (127.0.85.1-3) and a standalone xmppd for `b.test`
(127.0.85.9). The cluster's federation settings (enable, a static route to b.test) are set
once, on node 1, and replicate. b.test reaches `localhost` only through node 2 (its static
route), so when alice on node 1 pings b.test, node 1 opens the link and issues the dialback
key, and b.test asks node 2 to verify it: that works only because every node holds the same
dialback secret. b.test's answer comes back on its own link into node 2, which hands it to
alice's session on node 1 across the cluster.

Usage: cluster_federation.py --xmppd PATH --mmp PATH [--keep]
"""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_common import USERS, CheckFailed, Node, form, make_nodes, wait_until  # noqa: E402
from interop_common import Checks, login, summary  # noqa: E402

REMOTE = "b.test"
S2S_PORT = 5269


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--xmppd", required=True)
    parser.add_argument("--mmp", required=True)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    checks = Checks(width=60)
    nodes = make_nodes(args.xmppd, args.mmp, 85, 3, args.keep)
    remote = Node(args.xmppd, args.mmp, "127.0.85.9", args.keep)
    n1, n2 = nodes[0], nodes[1]

    def cluster_with_federation_settings_set_once():
        n1.configure()
        n1.mmp_run("user", "add", "alice", stdin="%s\n%s\n" % (USERS["alice"], USERS["alice"]))
        form(nodes)
        # Dialback, not certificates, is what this checks: without verification the
        # self-signed certificates lead to dialback (trusted ones would give SASL EXTERNAL).
        n1.mmp_run("federation", "enable")
        n1.mmp_run("federation", "verify", "off")
        n1.mmp_run("federation", "route", "add", REMOTE, "127.0.85.9:%d" % S2S_PORT)
        for node in nodes:
            status = wait_until(
                "%s has the replicated federation settings" % node.address,
                lambda node=node: (lambda s: s if REMOTE in s and "127.0.85.9" in s else None)(
                    node.mmp_run("federation")
                ),
            )
            expect("127.0.85.9" in status, status)

    def remote_domain_reaches_the_cluster_through_node_2_only():
        remote.mmp_run("xmpp", "domain", REMOTE)
        remote.mmp_run("xmpp", "listen", "%s:%d" % (remote.address, remote.port))
        remote.mmp_run("xmpp", "enable")
        remote.mmp_run("federation", "enable")
        remote.mmp_run("federation", "verify", "off")
        remote.mmp_run("federation", "route", "add", "localhost", "%s:%d" % (n2.address, S2S_PORT))
        remote.start()
        remote.wait_serving()

    def a_key_from_node_1_is_verified_by_node_2():
        n1.wait_serving()
        alice = login(n1.address, n1.port, "alice", "federation")
        try:
            alice.send(("<iq type='get' id='fed1' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>" % REMOTE).encode())
            answered = alice.read_until(rb"<iq[^>]*id='fed1'[^>]*>", timeout=45)
            expect(answered, "no answer from %s: %r" % (REMOTE, alice.received[-400:]))
            tag = re.search(rb"<iq[^>]*id='fed1'[^>]*>", alice.received).group(0)
            expect(b"type='result'" in tag or b'type="result"' in tag, "ping answered with an error: %r" % alice.received[-400:])
        finally:
            alice.close()
        outbound = n1.mmp_run("federation", "status")
        expect(REMOTE in outbound, "node 1 shows no link to %s:\n%s" % (REMOTE, outbound))
        inbound = n2.mmp_run("federation", "status")
        expect(REMOTE in inbound, "node 2 shows no link from %s:\n%s" % (REMOTE, inbound))

    try:
        for name, step in [
            ("cluster: federation settings set once, on every node", cluster_with_federation_settings_set_once),
            ("b.test reaches the cluster through node 2 only", remote_domain_reaches_the_cluster_through_node_2_only),
            ("a dialback key from node 1 verified by node 2", a_key_from_node_1_is_verified_by_node_2),
        ]:
            if not checks.check(name, step):
                break
    finally:
        for node in nodes + [remote]:
            if checks.failed:
                print("--- %s log ---\n%s" % (node.address, node.log_tail(30)), flush=True)
            node.cleanup()
    return summary(checks)


if __name__ == "__main__":
    sys.exit(main())
