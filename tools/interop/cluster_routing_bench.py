#!/usr/bin/env python3
"""Routing across cluster nodes, measured (issue 11): logins/s and message throughput and latency
on a single node, on one node of a 3-node cluster (every login and presence change is told to
the other two nodes), and between two nodes of the cluster (loadgen's cross-server pairs: client
2k on node 1, client 2k+1 on node 3, so every message crosses the relay); and logins/s with three
loadgens at once, against the single node and one per cluster node. All processes share one
machine, so the cluster's three daemons share its cores.

A benchmark, not a test: it prints figures and asserts nothing about them. Bounded: fixed client
counts and phase lengths, every process stopped at the end.

Usage: cluster_routing_bench.py --xmppd PATH --mmp PATH --loadgen PATH [--clients N] [--secs S] [--rate R]
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_common as cluster  # noqa: E402
from cluster_common import CheckFailed, Node  # noqa: E402

USERS = "bench{n}"
PASSWORDS = "bench-pw-{n}"


def add_users(node, count):
    """One mmp session adding `count` users (through the log on a cluster member)."""
    batch = "".join(
        "user add %s\n%s\n%s\n" % (USERS.format(n=i), PASSWORDS.format(n=i), PASSWORDS.format(n=i)) for i in range(count)
    )
    result = subprocess.run(
        [node.mmp, "-d", node.dir], input=batch, capture_output=True, text=True, timeout=600
    )
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAILURE")]
    if result.returncode != 0 or failures:
        raise CheckFailed("adding users failed: %s %s" % (failures[:3], result.stderr[-300:]))


def loadgen_command(args, node, label, extra=(), first=0, messages=True):
    command = [
        args.loadgen, "--host", node.address, "--port", str(node.port), "--domain", cluster.DOMAIN,
        "--users", USERS, "--password", PASSWORDS, "--clients", str(args.clients), "--first", str(first),
        "--label", label, *extra,
    ]
    if messages:
        command += ["--throughput-secs", str(args.secs), "--rate", str(args.rate), "--duration", str(args.secs)]
    else:
        command += ["--throughput-secs", "0", "--rate", "0"]
    return command


def result_of(label, stdout, stderr):
    line = next((l for l in stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise CheckFailed("loadgen %s gave no RESULT:\n%s\n%s" % (label, stdout[-1500:], stderr[-800:]))
    return json.loads(line[len("RESULT "):])


def loadgen(args, node, label, extra=()):
    result = subprocess.run(loadgen_command(args, node, label, extra), capture_output=True, text=True, timeout=900)
    return result_of(label, result.stdout, result.stderr)


def logins_at_once(args, targets, label):
    """One loadgen per target at the same time, each with its own users: total logins/s."""
    runs = [
        subprocess.Popen(
            loadgen_command(args, node, "%s-%d" % (label, i), first=i * args.clients, messages=False),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, node in enumerate(targets)
    ]
    total = 0.0
    for i, run in enumerate(runs):
        stdout, stderr = run.communicate(timeout=900)
        total += result_of("%s-%d" % (label, i), stdout, stderr).get("logins_per_s") or 0.0
    print("%-44s logins/s %8.1f (3 loadgens at once)" % (label, total), flush=True)


def show(label, result):
    def get(key):
        value = result.get(key)
        return "-" if value is None else ("%.1f" % value if isinstance(value, float) else str(value))

    print("%-44s logins/s %8s" % (label, get("logins_per_s")), flush=True)
    for prefix in ("throughput", "rate", "to_peer_throughput", "from_peer_throughput", "to_peer_rate", "from_peer_rate"):
        if ("%s_delivered_per_s" % prefix) in result:
            print(
                "    %-22s delivered/s %9s  p50 %7s ms  p99 %7s ms  lost %s"
                % (
                    prefix,
                    get(prefix + "_delivered_per_s"),
                    get(prefix + "_p50_ms"),
                    get(prefix + "_p99_ms"),
                    get(prefix + "_lost"),
                ),
                flush=True,
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--xmppd", required=True)
    parser.add_argument("--mmp", required=True)
    parser.add_argument("--loadgen", required=True)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--secs", type=float, default=5)
    parser.add_argument("--rate", type=float, default=1000)
    args = parser.parse_args()

    single = Node(args.xmppd, args.mmp, "127.0.74.1", False)
    try:
        single.configure()
        add_users(single, 3 * args.clients)
        single.start()
        single.wait_serving()
        show("single node", loadgen(args, single, "single"))
        logins_at_once(args, [single] * 3, "single node")
    finally:
        single.cleanup()

    nodes = cluster.make_nodes(args.xmppd, args.mmp, 75, 3, False)
    try:
        cluster.form(nodes)
        cluster.leader_of(nodes)
        add_users(nodes[0], 3 * args.clients)
        for node in nodes:
            node.wait_serving()
        logins_at_once(args, nodes, "3-node cluster, one loadgen per node")
        show("3-node cluster, all clients on node 1", loadgen(args, nodes[0], "cluster-node1"))
        peer = [
            "--peer-host", nodes[2].address, "--peer-port", str(nodes[2].port), "--peer-domain", cluster.DOMAIN,
            "--peer-users", USERS, "--peer-password", PASSWORDS,
        ]
        show("3-node cluster, pairs across nodes 1 and 3", loadgen(args, nodes[0], "cluster-cross", peer))
    finally:
        for node in nodes:
            node.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
