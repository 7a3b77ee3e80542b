"""Failover, measured: kill -9 of the leader while messages flow between users on the two
followers; how long until a message sent after the kill is delivered, and how many messages
were lost, over N kills (the killed node is restarted and rejoins between rounds).

A benchmark, not a test: it prints min / median / p99 / max and the loss count, and asserts
nothing about time. Bounded: N rounds, each with bounded waits.

Usage: cluster_failover.py --xmppd PATH --mmp PATH [--kills N] [--interval-ms MS]
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_common import USERS, form, leader_of, make_nodes, wait_until  # noqa: E402
from interop_common import CheckFailed, login  # noqa: E402
from run import DOMAIN  # noqa: E402

def body_pattern(tag):
    """Bodies of this round only: messages stored offline in an earlier round reach bob at his
    next login and must not count as delivered now."""
    return re.compile(rb"<body>" + tag.encode() + rb"m(\d+)</body>")


def bounce_pattern(tag):
    """A bounce carries the message's id (the body may or may not come back with it)."""
    return re.compile(rb"<message(?=[^>]*type=['\"]error['\"])[^>]*id=['\"]" + tag.encode() + rb"m(\d+)['\"]")
WRITTEN = re.compile(rb"<iq[^>]*id=['\"]w(\d+)['\"][^>]*type=['\"]result['\"]|<iq[^>]*type=['\"]result['\"][^>]*id=['\"]w(\d+)['\"]")


class Receiver(threading.Thread):
    """Reads bob's stream and records when each numbered message arrived."""

    def __init__(self, raw, pattern, second=None):
        super().__init__(daemon=True)
        self.raw = raw
        self.pattern = pattern
        self.second = second
        self.arrived = {}
        self.second_arrived = {}
        self.stop = False

    def finish(self):
        """Stop reading and wait for the thread, before the socket is closed: a reader still in
        recv() on a closed SSL socket would read from (and send alerts on) whatever connection
        reuses the descriptor next, such as the next round's login."""
        self.stop = True
        if self.is_alive():
            self.join(timeout=5)

    def run(self):
        buffer = b""
        self.raw.sock.settimeout(0.2)
        while not self.stop:
            try:
                chunk = self.raw.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            now = time.monotonic()
            for match in self.pattern.finditer(buffer):
                self.arrived.setdefault(int(match.group(1)), now)
            if self.second is not None:
                for match in self.second.finditer(buffer):
                    self.second_arrived.setdefault(int(match.group(1) or match.group(2)), now)
            buffer = buffer[-2000:]


def one_round(nodes, interval, tag):
    leader = leader_of(nodes)
    followers = [n for n in nodes if n is not leader]
    for node in followers:
        node.wait_serving()
    alice = login(followers[0].address, followers[0].port, "alice", "failover")
    bob = login(followers[1].address, followers[1].port, "bob", "failover")
    receiver = Receiver(bob, body_pattern(tag))
    # Bounces come back to alice: answered with an error is not lost.
    bounces = Receiver(alice, bounce_pattern(tag), WRITTEN)
    sent = {}
    seq = 0
    killed_at = first_after = None
    try:
        bob.send(b"<presence/>")
        receiver.start()
        bounces.start()

        def send_one():
            nonlocal seq
            seq += 1
            sent[seq] = time.monotonic()
            alice.send(("<message to='bob@%s' id='%sm%d' type='chat'><body>%sm%d</body></message>" % (DOMAIN, tag, seq, tag, seq)).encode())

        # Wait until alice's node knows bob's session (the directory update crosses nodes; a
        # message before that would be stored offline): warm-up messages, not counted.
        warmup = iter(range(10**6, 10**6 + 1000))

        def warm():
            alice.send(("<message to='bob@%s' type='chat'><body>%sm%d</body></message>" % (DOMAIN, tag, next(warmup))).encode())
            return any(key >= 10**6 for key in receiver.arrived)

        wait_until("a first message arrives", warm, timeout=20, pause=0.1)
        for _ in range(20):
            send_one()
            time.sleep(interval)
        killed_at = time.monotonic()
        leader.kill9()
        deadline = killed_at + 30
        writes = 0
        while time.monotonic() < deadline and (first_after is None or not bounces.second_arrived):
            send_one()
            # A replicated write (a roster set) at the kill and every few messages after it
            # until one is answered, to time the new leader.
            if seq % 4 == 1 and not bounces.second_arrived and writes < 100:
                writes += 1
                alice.send(("<iq type='set' id='w%d'><query xmlns='jabber:iq:roster'><item jid='c%d@example.org'/></query></iq>" % (seq, writes % 20)).encode())
            time.sleep(interval)
            if first_after is None:
                after = [s for s, t in sent.items() if t >= killed_at and s in receiver.arrived]
                if after:
                    first_after = min(receiver.arrived[s] for s in after)
        # Keep going a little, then let everything in flight land.
        for _ in range(20):
            send_one()
            time.sleep(interval)
        settle = time.monotonic() + 5
        def answered():
            # Warm-up messages are in `arrived` too: count the numbered ones only.
            return sum(1 for s in sent if s in receiver.arrived or s in bounces.arrived)

        while (answered() < len(sent) or not bounces.second_arrived) and time.monotonic() < settle:
            time.sleep(0.05)
    finally:
        receiver.finish()
        bounces.finish()
        alice.close()
        bob.close()
    missing = [s for s in sent if s not in receiver.arrived and s not in bounces.arrived]
    if missing:
        # Stored offline is not lost either: bob logs in again and collects them.
        again = login(followers[1].address, followers[1].port, "bob", "collect")
        collector = Receiver(again, body_pattern(tag))
        collector.start()
        again.send(b"<presence/>")
        time.sleep(3)
        collector.finish()
        again.close()
        stored = [s for s in missing if s in collector.arrived]
        print("     %d not delivered live: %d bounced, %d stored offline, %d missing" % (
            len(missing) + len(bounces.arrived), len(bounces.arrived), len(stored), len(missing) - len(stored)))
        missing = [s for s in missing if s not in collector.arrived]
    lost = len(missing)
    # Warm-up messages sent before the route was known were stored offline for bob: delivered
    # at his next login, and not part of the measurement.
    gap = None if first_after is None else first_after - killed_at
    written = min(bounces.second_arrived.values()) - killed_at if bounces.second_arrived else None
    return leader, gap, lost, len(sent), written


def dump_stacks(nodes):
    """Every thread's stack of every running node (SB_STACKS=1): what a node that stopped
    answering is stuck on."""
    for node in nodes:
        if node.process is None or node.process.poll() is not None:
            continue
        result = subprocess.run(
            ["gdb", "-p", str(node.process.pid), "-batch", "-ex", "thread apply all bt 30"],
            capture_output=True, text=True, timeout=120,
        )
        path = os.path.join(node.dir, "stacks.txt")
        with open(path, "w") as out:
            out.write(result.stdout + result.stderr)
        print("stacks of %s in %s" % (node.address, path), flush=True)


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--xmppd", required=True)
    parser.add_argument("--mmp", required=True)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--interval-ms", type=float, default=5.0)
    args = parser.parse_args()
    nodes = make_nodes(args.xmppd, args.mmp, 83, 3, bool(os.environ.get("SB_KEEP")))
    gaps, write_gaps, lost_total, sent_total, failed = [], [], 0, 0, 0
    try:
        nodes[0].configure()
        for user in ("alice", "bob"):
            nodes[0].mmp_run("user", "add", user, stdin="%s\n%s\n" % (USERS[user], USERS[user]))
        form(nodes)
        for kill in range(args.kills):
            try:
                leader, gap, lost, sent, written = one_round(nodes, args.interval_ms / 1000.0, "r%d" % kill)
            except CheckFailed:
                if os.environ.get("SB_STACKS"):
                    dump_stacks(nodes)
                raise
            if written is not None:
                write_gaps.append(written * 1000.0)
            lost_total += lost
            sent_total += sent
            if gap is None:
                failed += 1
                print("kill %2d: %s: no message delivered after the kill within 30 s" % (kill + 1, leader.address))
            else:
                gaps.append(gap * 1000.0)
                print("kill %2d: %s: first message after the kill delivered %.1f ms later, %d of %d lost" % (kill + 1, leader.address, gap * 1000.0, lost, sent), flush=True)
            leader.start()
            wait_until("the killed node is back in the cluster", lambda: all(len(n.status()["peers"]) == 3 for n in nodes), timeout=60)
            leader_of(nodes)
    finally:
        for node in nodes:
            node.cleanup()
    if gaps:
        print(
            "failover over %d kills: min %.1f ms, median %.1f ms, p99 %.1f ms, max %.1f ms; %d of %d messages lost; %d rounds without delivery"
            % (len(gaps), min(gaps), percentile(gaps, 0.5), percentile(gaps, 0.99), max(gaps), lost_total, sent_total, failed)
        )
    if write_gaps:
        print(
            "replicated writes after the kill: first one answered after min %.0f ms, median %.0f ms, p99 %.0f ms, max %.0f ms (%d kills)"
            % (min(write_gaps), percentile(write_gaps, 0.5), percentile(write_gaps, 0.99), max(write_gaps), len(write_gaps))
        )
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
