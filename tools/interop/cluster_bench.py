"""What one replicated write costs: roster pushes (each a ConfigChange through the writer) timed
from a client, on a single node and on a 3-node cluster (client on the leader, then on a
follower, whose writes go to the leader and come back through the log).

A benchmark, not a test: it prints figures and asserts nothing about them. Bounded: a fixed
number of writes per case.

Usage: cluster_bench.py --xmppd PATH --mmp PATH [--writes N]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_common import USERS, Node, form, leader_of, make_nodes  # noqa: E402
from interop_common import login  # noqa: E402


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def roster_writes(node, count):
    """Sequential roster sets (each waits for its result): milliseconds per write."""
    raw = login(node.address, node.port, "alice", "bench")
    times = []
    try:
        for n in range(count):
            started = time.perf_counter()
            raw.send(
                (
                    "<iq type='set' id='r%d'><query xmlns='jabber:iq:roster'>"
                    "<item jid='contact%d@example.org' name='c%d'/></query></iq>" % (n, n % 50, n)
                ).encode()
            )
            if not raw.read_until(rb"<iq[^>]*id='r%d'[^>]*type='result'|<iq[^>]*type='result'[^>]*id='r%d'" % (n, n)):
                raise RuntimeError("no result for roster set %d: %r" % (n, raw.received[-300:]))
            times.append((time.perf_counter() - started) * 1000.0)
            raw.received = b""
    finally:
        raw.close()
    return times


def report(label, times):
    print(
        "%-34s writes %4d  p50 %7.2f ms  p99 %7.2f ms  max %7.2f ms"
        % (label, len(times), percentile(times, 0.5), percentile(times, 0.99), max(times)),
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--xmppd", required=True)
    parser.add_argument("--mmp", required=True)
    parser.add_argument("--writes", type=int, default=300)
    args = parser.parse_args()

    single = Node(args.xmppd, args.mmp, "127.0.81.1", False)
    try:
        single.configure()
        single.mmp_run("user", "add", "alice", stdin="%s\n%s\n" % (USERS["alice"], USERS["alice"]))
        single.start()
        single.wait_serving()
        report("single node", roster_writes(single, args.writes))
    finally:
        single.cleanup()

    nodes = make_nodes(args.xmppd, args.mmp, 82, 3, False)
    try:
        form(nodes)
        nodes[0].mmp_run("user", "add", "alice", stdin="%s\n%s\n" % (USERS["alice"], USERS["alice"]))
        leader = leader_of(nodes)
        follower = next(n for n in nodes if n is not leader)
        leader.wait_serving()
        follower.wait_serving()
        report("3-node cluster, client on leader", roster_writes(leader, args.writes))
        report("3-node cluster, client on follower", roster_writes(follower, args.writes))
    finally:
        for node in nodes:
            node.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
