"""Routing across cluster nodes (issue 11): three xmppd processes on 127.0.71.1, .2 and .3, formed
through mmp with the CMS command sequence (cluster_common.py), then:
  * users added on node 1 log in on node 3;
  * messages between a session on node 1 and one on node 3, both ways;
  * a subscription made across nodes, and presence seen across them;
  * one roster item changed on two nodes at once (alice renames bob on node 1 while bob's
    `unsubscribed` changes her subscription on node 3), eight times: both changes stay;
  * a Call Bridge (raw XEP-0114 component) on node 1 and a user on node 3, both ways;
  * kill -9 of the node holding bob's session: alice (node 1) sees him go unavailable, and a
    message sent to him right after the kill and one sent once he is gone are each either
    bounced to alice or delivered when bob logs in again on node 2: none is lost.
Standalone:
    /usr/bin/python3 tools/interop/cluster_routing.py --xmppd target/debug/xmppd --mmp target/debug/mmp
Every wait is bounded; the last line is `N passed, N failed`, exit code 1 on failure.
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_common as cluster  # noqa: E402
import interop_common as common  # noqa: E402
from interop_common import BRIDGE, BRIDGE_JID, BRIDGE_SECRET, DOMAIN, USERS, CheckFailed, expect  # noqa: E402

NET = 71


def form(nodes):
    """The CMS sequence on every node (a Call Bridge port on node 1); users and the Call
    Bridge's secret added on node 1, through the log."""
    cluster.share_certificate(nodes)
    for node in nodes:
        node.configure()
    nodes[0].component_port = common.other_free_port(nodes[0].address, nodes[0].port)
    nodes[0].mmp_run("xmpp", "callbridge", "port", str(nodes[0].component_port))
    for node in nodes:
        node.start()
    cluster.cms_first_node(nodes[0])
    for node in nodes[1:]:
        cluster.cms_other_node(node, nodes[0])
    for user, password in USERS.items():
        nodes[0].mmp_run("user", "add", user, stdin="%s\n%s\n" % (password, password))
    nodes[0].mmp_run("xmpp", "callbridge", "add-secret", BRIDGE, stdin=BRIDGE_SECRET + "\n")
    for node in nodes:
        node.wait_serving()
    cluster.leader_of(nodes)


def component(node):
    raw = common.tls_raw(node.address, node.component_port)
    raw.send(common.component_header(BRIDGE_JID))
    expect(raw.read_until(rb"<stream:stream[^>]*>"), "no stream header from the Call Bridge port")
    digest = common.handshake_digest(common.stream_id(raw.received), BRIDGE_SECRET)
    raw.received = b""
    raw.send(("<handshake>%s</handshake>" % digest).encode())
    expect(raw.read_until(rb"<handshake\s*/>|</handshake>|</stream:stream>"), "no handshake answer")
    expect(b"<handshake" in raw.received, "handshake refused: %r" % raw.received[-300:])
    raw.received = b""
    return raw


def wait_for(raw, pattern, what, timeout=common.STEP_TIMEOUT):
    expect(raw.read_until(pattern, timeout=timeout), "%s: got %r" % (what, raw.received[-400:]))


def chat(to, body):
    return ("<message to='%s' type='chat'><body>%s</body></message>" % (to, body)).encode()


def main():
    args = common.arguments(__doc__, "127.0.%d.1" % NET).parse_args()
    nodes = cluster.make_nodes(args.xmppd, args.mmp, NET, 3, args.keep)
    checks = common.Checks(nodes[0])
    sessions = {}
    try:
        if not checks.check("three nodes formed with the CMS sequence", lambda: form(nodes)):
            raise CheckFailed("no cluster")

        def logins():
            sessions["alice"] = common.login(nodes[0].address, nodes[0].port, "alice", "a1")
            sessions["bob"] = common.login(nodes[2].address, nodes[2].port, "bob", "b3")

        checks.check("users added on node 1 log in on nodes 1 and 3", logins)

        def messages():
            alice, bob = sessions["alice"], sessions["bob"]
            time.sleep(0.5)  # the directory update travels beside the login answer
            alice.send(chat("bob@%s/b3" % DOMAIN, "over there"))
            wait_for(bob, rb"over there", "bob (node 3) did not get alice's message")
            bob.send(chat("alice@%s/a1" % DOMAIN, "and back"))
            wait_for(alice, rb"and back", "alice (node 1) did not get bob's message")
            # An IQ to a full JID on another node, and its answer.
            alice.send(("<iq type='get' id='x1' to='bob@%s/b3'><ping xmlns='urn:xmpp:ping'/></iq>" % DOMAIN).encode())
            wait_for(bob, rb"<iq[^>]*id=['\"]x1['\"]", "bob (node 3) did not get alice's iq")
            bob.send(("<iq type='result' id='x1' to='alice@%s/a1'/>" % DOMAIN).encode())
            wait_for(alice, rb"<iq[^>]*id=['\"]x1['\"][^>]*type=['\"]result|<iq[^>]*type=['\"]result['\"][^>]*id=['\"]x1", "alice did not get bob's iq result")

        checks.check("messages and an iq between nodes 1 and 3, both ways", messages)

        def presence():
            alice, bob = sessions["alice"], sessions["bob"]
            # Subscription requests go to available resources (RFC 6121 §3.1.3).
            alice.send(b"<presence/>")
            bob.send(b"<presence/>")
            time.sleep(0.5)
            # Each step waits for the previous one to arrive: the roster writes behind them
            # are replicated, and a step overtaking the last would race it.
            subscribe = rb"type=['\"]subscribe['\"]"
            subscribed = rb"type=['\"]subscribed['\"]"
            alice.received = bob.received = b""
            alice.send(("<presence type='subscribe' to='bob@%s'/>" % DOMAIN).encode())
            wait_for(bob, subscribe, "bob did not get alice's subscription request")
            bob.send(("<presence type='subscribed' to='alice@%s'/>" % DOMAIN).encode())
            wait_for(alice, subscribed, "alice did not hear bob approve")
            alice.received = bob.received = b""
            bob.send(("<presence type='subscribe' to='alice@%s'/>" % DOMAIN).encode())
            wait_for(alice, subscribe, "alice did not get bob's subscription request")
            alice.send(("<presence type='subscribed' to='bob@%s'/>" % DOMAIN).encode())
            wait_for(bob, subscribed, "bob did not hear alice approve")
            alice.received = bob.received = b""
            # A presence update each: both now have a subscription to the other.
            alice.send(b"<presence><status>here</status></presence>")
            bob.send(b"<presence><status>there</status></presence>")
            from_bob = ("<presence[^>]*from=['\"]bob@%s/b3['\"](?![^>]*type=)" % DOMAIN).encode()
            from_alice = ("<presence[^>]*from=['\"]alice@%s/a1['\"](?![^>]*type=)" % DOMAIN).encode()
            wait_for(alice, from_bob, "alice did not see bob available")
            wait_for(bob, from_alice, "bob did not see alice available")

        checks.check("subscription and presence across nodes", presence)

        def bob_in_roster(alice, tag):
            """(name, subscription) of bob in alice's roster, as node 1 answers it."""
            alice.received = b""
            alice.send(("<iq type='get' id='%s'><query xmlns='jabber:iq:roster'/></iq>" % tag).encode())
            result = ("<iq[^>]*id=['\"]%s['\"].*?</iq>" % tag).encode()
            wait_for(alice, result, "alice's roster get was not answered")
            answer = re.search(result, alice.received, re.S).group(0)
            item = re.search(("<item[^>]*jid=['\"]bob@%s['\"][^>]*>" % DOMAIN).encode(), answer)
            expect(item, "bob is not in alice's roster: %r" % answer)
            name = re.search(rb"name=['\"]([^'\"]*)['\"]", item.group(0))
            subscription = re.search(rb"subscription=['\"]([^'\"]*)['\"]", item.group(0))
            return (name.group(1).decode() if name else None, subscription.group(1).decode() if subscription else "none")

        def roster_says(alice, tag, expected):
            got = bob_in_roster(alice, tag)
            if got != expected:
                raise CheckFailed("alice's roster says %r" % (got,))
            return True

        def concurrent_roster_changes():
            alice, bob = sessions["alice"], sessions["bob"]
            for n in range(8):
                name = "bob-%d" % n
                alice.received = bob.received = b""
                # Both at once: each node reads alice's item for bob, changes its part and
                # writes it back through the log; the later write must not undo the earlier.
                alice.send(("<iq type='set' id='ren%d'><query xmlns='jabber:iq:roster'><item jid='bob@%s' name='%s'/></query></iq>" % (n, DOMAIN, name)).encode())
                bob.send(("<presence type='unsubscribed' to='alice@%s'/>" % DOMAIN).encode())
                wait_for(alice, ("<iq[^>]*id=['\"]ren%d['\"]" % n).encode(), "alice's roster set was not answered")
                expected = (name, "from")

                cluster.wait_until(
                    "round %d: alice's item for bob is %r" % (n, (expected,)),
                    lambda: roster_says(alice, "get%d" % n, expected),
                    timeout=10,
                    pause=0.2,
                )
                # Subscribe again for the next round (one step at a time, as above).
                alice.received = bob.received = b""
                alice.send(("<presence type='subscribe' to='bob@%s'/>" % DOMAIN).encode())
                wait_for(bob, rb"type=['\"]subscribe['\"]", "bob did not get alice's subscription request")
                bob.send(("<presence type='subscribed' to='alice@%s'/>" % DOMAIN).encode())
                cluster.wait_until(
                    "round %d: alice subscribed to bob again" % n,
                    lambda: roster_says(alice, "again%d" % n, (name, "both")),
                    timeout=10,
                    pause=0.2,
                )

        checks.check("one roster item changed on two nodes at once: both changes stay", concurrent_roster_changes)

        def bridge():
            bob = sessions["bob"]
            cb = component(nodes[0])
            sessions["cb1"] = cb
            time.sleep(0.5)
            bob.send(chat(BRIDGE_JID, "to the bridge"))
            wait_for(cb, rb"to the bridge", "the Call Bridge on node 1 did not get bob's message")
            cb.send(
                (
                    "<message from='%s' to='bob@%s/b3' type='chat'><body>from the bridge</body></message>"
                    % (BRIDGE_JID, DOMAIN)
                ).encode()
            )
            wait_for(bob, rb"from the bridge", "bob (node 3) did not get the Call Bridge's message")

        checks.check("a Call Bridge on node 1 and a user on node 3, both ways", bridge)

        def node_dies():
            alice = sessions["alice"]
            alice.received = b""
            killed = time.monotonic()
            nodes[2].kill9()
            alice.send(chat("bob@%s/b3" % DOMAIN, "sent at the kill"))
            gone = ("<presence[^>]*from=['\"]bob@%s/b3['\"][^>]*type=['\"]unavailable" % DOMAIN).encode()
            gone_either = gone + b"|" + ("<presence[^>]*type=['\"]unavailable['\"][^>]*from=['\"]bob@%s/b3" % DOMAIN).encode()
            wait_for(alice, gone_either, "alice did not see bob go unavailable", timeout=30)
            checks.figure("kill -9 to unavailable at a contact on another node: %.2f s" % (time.monotonic() - killed))
            alice.send(chat("bob@%s/b3" % DOMAIN, "sent once gone"))
            time.sleep(1.0)
            bounced = alice.received
            bob = common.login(nodes[1].address, nodes[1].port, "bob", "b2")
            sessions["bob2"] = bob
            bob.send(b"<presence/>")
            for body in (b"sent at the kill", b"sent once gone"):
                bounce = re.search(rb"<message[^>]*type=['\"]error['\"][^>]*>(?:(?!</message>).)*" + body, bounced + alice.received, re.S)
                if bounce:
                    checks.figure("%s: bounced to alice" % body.decode())
                    continue
                wait_for(bob, body, "%r was neither bounced to alice nor delivered to bob on node 2" % body)
                checks.figure("%s: delivered to bob on node 2" % body.decode())

        checks.check("kill -9 of bob's node: unavailable seen, nothing lost", node_dies)
    except CheckFailed:
        pass
    finally:
        if checks.failed:
            for node in nodes:
                print("--- %s log (last lines) ---\n%s" % (node.address, node.log_tail()), flush=True)
        for raw in sessions.values():
            try:
                raw.close()
            except Exception:
                pass
        for node in nodes:
            node.cleanup()
    return common.summary(checks)


if __name__ == "__main__":
    sys.exit(main())
