"""The cluster formed, used, broken and healed through `mmp`, with real xmppd processes.

Three nodes on 127.0.77.1-3 formed with the CMS sequence: users and Call Bridges added on one
node exist on every node and log in everywhere; kill -9 of the leader: a new leader, writes go
on; a second node killed: writes refused with the quorum reason naming the dead nodes, logins on
the survivor still work; both restarted: the cluster re-forms and catches up; `xmpp reset` and
the CMS sequence again: exactly three peers on every node (no ghost, CSCvi67717); every node
restarted: all state kept. Then five nodes on 127.0.78.1-5 survive two failures.

Usage: cluster_formation.py --xmppd PATH --mmp PATH [--keep]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_common import (  # noqa: E402
    DOMAIN,
    CheckFailed,
    Node,
    USERS,
    cms_other_node,
    form,
    leader_of,
    make_nodes,
    wait_until,
)
from interop_common import Checks, login, summary  # noqa: E402

# Users created along the way, with their passwords (USERS holds alice and bob).
EXTRA = {"carol": "carol-secret-3", "dave": "dave-secret-4", "erin": "erin-secret-5"}


def add_user(node, user):
    password = USERS.get(user) or EXTRA[user]
    return node.mmp_reply("user", "add", user, stdin="%s\n%s\n" % (password, password))


def users_of(node):
    listed = node.mmp_run("user", "list")
    return [] if listed == "(no users)" else sorted(listed.split())


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def can_log_in(node, user):
    node.wait_serving()
    USERS.setdefault(user, EXTRA.get(user))
    raw = login(node.address, node.port, user, "cluster-check")
    raw.close()


def three_nodes(checks, args):
    nodes = make_nodes(args.xmppd, args.mmp, 77, 3, args.keep)
    try:
        return run_three(checks, nodes)
    finally:
        for node in nodes:
            if checks.failed:
                print("--- %s log ---\n%s" % (node.address, node.log_tail(25)), flush=True)
            node.cleanup()


def run_three(checks, nodes):
    n1, n2, n3 = nodes
    state = {}

    def formed_with_the_cms_sequence():
        # alice exists on node 1 before the cluster: initialize carries her to the others.
        n1.configure()
        code, out = add_user(n1, "alice")
        expect(code == 0, "user add alice: %s" % out)
        form(nodes)
        for node in nodes:
            status = node.status()
            peers = status["peers"]
            expect(len(peers) == 3, "%s lists %d peers:\n%s" % (node.address, len(peers), status["text"]))
            expect(sum(1 for p in peers if p[1]) == 1, "not exactly one (Leader):\n%s" % status["text"])
            expect([p[0] for p in peers if p[2]] == [node.cluster_address], "(me) wrong:\n%s" % status["text"])
            expect(status["state"] in ("LEADER", "FOLLOWER"), status["text"])

    def a_join_to_an_unreachable_node_says_so():
        code, out = n3.mmp_reply("xmpp", "cluster", "join", "127.0.77.99")
        # Already a member: it says so. A fresh node would name the unreachable address.
        expect(code == 0 and "already a member" in out, out)

    def users_and_bridges_replicate_to_every_node():
        code, out = add_user(n2, "bob")
        expect(code == 0, "user add bob on node 2: %s" % out)
        out = n3.mmp_run("xmpp", "callbridge", "add", "cb1")
        secret = [line for line in out.splitlines() if line.startswith("Secret")]
        expect(secret, out)
        for node in nodes:
            expect(users_of(node) == ["alice", "bob"], "%s users: %s" % (node.address, users_of(node)))
            listed = node.mmp_run("xmpp", "callbridge", "list")
            expect(secret[0] in listed, "%s bridges: %s" % (node.address, listed))

    def users_log_in_on_every_node():
        for node in nodes:
            can_log_in(node, "alice")
            can_log_in(node, "bob")

    def kill_the_leader_and_writes_go_on():
        leader = leader_of(nodes)
        state["first_leader"] = leader
        leader.kill9()
        survivors = [n for n in nodes if n is not leader]
        new_leader = leader_of(survivors)
        expect(new_leader is not leader, "the dead leader is still named")
        wait_until("user add carol after the failover", lambda: add_user(survivors[0], "carol")[0] == 0)
        for node in survivors:
            expect("carol" in users_of(node), "%s lacks carol" % node.address)

    def without_a_majority_writes_are_refused_and_logins_work():
        survivors = [n for n in nodes if n.alive()]
        victim, last = survivors[0], survivors[1]
        victim.kill9()
        code, out = add_user(last, "dave")
        expect(code != 0 and out.startswith("FAILURE: no quorum"), "expected a quorum failure, got: %s" % out)
        # Refused before the log, or in the log unconfirmed (then it may apply on recovery).
        state["dave_pending"] = "not confirmed" in out
        for dead in (state["first_leader"], victim):
            expect(dead.cluster_address in out, "the failure does not name %s: %s" % (dead.cluster_address, out))
        expect("dave" not in users_of(last), "a refused write left dave behind")
        can_log_in(last, "alice")
        status = last.mmp_run("xmpp", "status")
        expect("cluster: no quorum" in status, status)

    def restarted_nodes_rejoin_and_catch_up():
        for node in nodes:
            if not node.alive():
                node.start()
        leader_of(nodes)
        replies = []

        def dave_added():
            replies.append(add_user(n1, "dave"))
            code, out = replies[-1]
            return code == 0 or (state["dave_pending"] and "already exists" in out)

        try:
            wait_until("user add dave once the quorum is back", dave_added)
        except CheckFailed as err:
            raise CheckFailed("%s; last reply %s" % (err, replies[-1:]))
        for node in nodes:
            wait_until(
                "%s catches up" % node.address,
                lambda node=node: users_of(node) == ["alice", "bob", "carol", "dave"],
            )

    def reset_and_rejoin_leaves_exactly_three_peers():
        out = n3.mmp_run("xmpp", "reset")
        expect("left the cluster" in out, out)
        expect(n3.status()["state"] == "DISABLED", n3.status()["text"])
        expect(users_of(n3) == [], "reset kept users: %s" % users_of(n3))
        cms_other_node(n3, n1)
        for node in nodes:
            wait_until(
                "%s lists exactly three peers" % node.address,
                lambda node=node: len(node.status()["peers"]) == 3
                and len({p[0] for p in node.status()["peers"]}) == 3,
            )
        expect(users_of(n3) == ["alice", "bob", "carol", "dave"], "rejoined node: %s" % users_of(n3))

    def a_node_with_users_of_its_own_must_be_forced_to_join():
        n3.mmp_run("xmpp", "reset")
        n3.mmp_run("xmpp", "domain", "other.example")
        code, out = add_user(n3, "erin")
        expect(code == 0, out)
        n3.mmp_run("xmpp", "cluster", "enable")
        code, out = n3.mmp_reply("xmpp", "cluster", "join", n1.address)
        expect(code != 0 and "erin" in out and "force" in out, "join did not refuse: %s" % out)
        expect(users_of(n3) == ["erin"], "a refused join changed the users: %s" % users_of(n3))
        out = n3.mmp_run("xmpp", "cluster", "join", n1.address, "force")
        expect("erin" in out and "other.example" in out, "force did not report what changed: %s" % out)
        expect(users_of(n3) == ["alice", "bob", "carol", "dave"], users_of(n3))

    def joins_to_an_untrusted_or_unreachable_node_say_which():
        stranger = Node(n1.xmppd, n1.mmp, "127.0.77.4", n1.keep)
        state["stranger"] = stranger
        stranger.mmp_run("pki", "selfsigned", "own", "CN:" + DOMAIN, "subjectAltName:" + DOMAIN)
        stranger.configure()
        stranger.start()
        stranger.mmp_run("xmpp", "certs", "own.key", "own.crt")
        stranger.mmp_run("xmpp", "cluster", "trust", "own.crt")
        stranger.mmp_run("xmpp", "cluster", "enable")
        code, out = stranger.mmp_reply("xmpp", "cluster", "join", n1.address)
        expect(code != 0 and "not trusted" in out and n1.cluster_address in out, "untrusted join: %s" % out)
        code, out = stranger.mmp_reply("xmpp", "cluster", "join", "127.0.77.99")
        expect(code != 0 and "unreachable" in out and "127.0.77.99:5270" in out, "unreachable join: %s" % out)
        status = n1.mmp_run("xmpp", "status")
        expect("certificate not trusted" in status, "node 1 does not show the refused peer:\n%s" % status)

    def every_node_restarted_keeps_everything():
        for node in nodes:
            node.terminate()
        for node in nodes:
            node.start()
        leader_of(nodes)
        for node in nodes:
            expect(users_of(node) == ["alice", "bob", "carol", "dave"], "%s: %s" % (node.address, users_of(node)))
            expect(len(node.status()["peers"]) == 3, node.status()["text"])
        can_log_in(n2, "carol")

    steps = [
        ("3 nodes: formed with the CMS command sequence", formed_with_the_cms_sequence),
        ("3 nodes: join while a member says so", a_join_to_an_unreachable_node_says_so),
        ("3 nodes: users and Call Bridges replicate", users_and_bridges_replicate_to_every_node),
        ("3 nodes: users log in on every node", users_log_in_on_every_node),
        ("3 nodes: kill -9 the leader, writes go on", kill_the_leader_and_writes_go_on),
        ("3 nodes: no majority: writes refused, logins work", without_a_majority_writes_are_refused_and_logins_work),
        ("3 nodes: restarted nodes rejoin and catch up", restarted_nodes_rejoin_and_catch_up),
        ("3 nodes: reset and re-join: exactly 3 peers", reset_and_rejoin_leaves_exactly_three_peers),
        ("3 nodes: own users: join refused unless force", a_node_with_users_of_its_own_must_be_forced_to_join),
        ("3 nodes: joins to untrusted/unreachable nodes say which", joins_to_an_untrusted_or_unreachable_node_say_which),
        ("3 nodes: all restarted: state kept", every_node_restarted_keeps_everything),
    ]
    try:
        run_steps(checks, steps)
    finally:
        if "stranger" in state:
            state["stranger"].cleanup()


def run_steps(checks, steps):
    for name, step in steps:
        if not checks.check(name, step):
            break


def five_nodes(checks, args):
    nodes = make_nodes(args.xmppd, args.mmp, 78, 5, args.keep)
    try:

        def formed():
            form(nodes)
            for node in nodes:
                expect(len(node.status()["peers"]) == 5, node.status()["text"])

        def two_failures_survived():
            leader = leader_of(nodes)
            other = next(n for n in nodes if n is not leader)
            leader.kill9()
            other.kill9()
            survivors = [n for n in nodes if n.alive()]
            leader_of(survivors)
            wait_until("a write with two of five down", lambda: add_user(survivors[0], "erin")[0] == 0)
            for node in survivors:
                expect("erin" in users_of(node), "%s lacks erin" % node.address)

        for name, step in [("5 nodes: formed", formed), ("5 nodes: two failures survived", two_failures_survived)]:
            if not checks.check(name, step):
                break
    finally:
        for node in nodes:
            if checks.failed:
                print("--- %s log ---\n%s" % (node.address, node.log_tail(25)), flush=True)
            node.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--xmppd", required=True)
    parser.add_argument("--mmp", required=True)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    checks = Checks(width=56)
    three_nodes(checks, args)
    five_nodes(checks, args)
    return summary(checks)


if __name__ == "__main__":
    sys.exit(main())
