#!/usr/bin/env python3
"""Routing across cluster nodes (issue 11): three xmppd processes on 127.0.0.1, .2 and .3, formed
through mmp with the CMS command sequence, then:
  * users added on node 1 log in on node 3;
  * messages between a session on node 1 and one on node 3, both ways;
  * a subscription made across nodes, and presence seen across them;
  * a Call Bridge (raw XEP-0114 component) on node 1 and a user on node 3, both ways;
  * kill -9 of the node holding bob's session: alice (node 1) sees him go unavailable, and a
    message sent to him right after the kill and one sent once he is gone are each either
    bounced to alice or delivered when bob logs in again on node 2: none is lost.
Certificates: a test CA made with openssl signs each node's certificate; the CA is the trust
bundle. The cluster port is the default 5270 on each node's own address.
Standalone:
    /usr/bin/python3 tools/interop/cluster_routing.py --xmppd target/debug/xmppd --mmp target/debug/mmp
Every wait is bounded; the last line is `N passed, N failed`, exit code 1 on failure.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as common  # noqa: E402
from interop_common import BRIDGE, BRIDGE_JID, BRIDGE_SECRET, DOMAIN, USERS, CheckFailed, expect  # noqa: E402

ADDRESSES = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
CLUSTER_PORT = 5270


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_certificates(base, count):
    """A CA, and per node a key and a certificate for the domain signed by it."""
    ca_key, ca_crt = os.path.join(base, "ca.key"), os.path.join(base, "ca.crt")
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", ca_key, "-out", ca_crt, "-days", "30", "-subj", "/CN=Switchboard Test Cluster CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )
    ext = os.path.join(base, "node.ext")
    with open(ext, "w") as f:
        f.write(
            "subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
            "extendedKeyUsage=serverAuth,clientAuth\n" % DOMAIN
        )
    out = []
    for i in range(count):
        key, csr, crt = (os.path.join(base, "node%d.%s" % (i, s)) for s in ("key", "csr", "crt"))
        openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=%s" % DOMAIN,
        )
        openssl(
            "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
            "-out", crt, "-days", "30", "-extfile", ext,
        )
        out.append((key, crt))
    return ca_crt, out


class Node(common.Xmppd):
    def __init__(self, xmppd, mmp, address, keep):
        super().__init__(xmppd, mmp, address, keep)
        self.component_port = None

    def cleanup(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def form(nodes, ca_crt, certs):
    """The CMS sequence, verbatim, on every node; users and the Call Bridge on node 1."""
    for node, (key, crt) in zip(nodes, certs):
        certs_dir = os.path.join(node.dir, "certs")
        os.makedirs(certs_dir, exist_ok=True)
        shutil.copy(key, os.path.join(certs_dir, "node.key"))
        shutil.copy(crt, os.path.join(certs_dir, "node.crt"))
        shutil.copy(ca_crt, os.path.join(certs_dir, "cluster-bundle.crt"))
        node.mmp_run("xmpp", "domain", DOMAIN)
        node.mmp_run("xmpp", "listen", "%s:%d" % (node.address, node.port))
        node.mmp_run("xmpp", "certs", "node.key", "node.crt")
        node.mmp_run("xmpp", "enable")
    nodes[0].component_port = common.other_free_port(nodes[0].address, nodes[0].port)
    nodes[0].mmp_run("xmpp", "callbridge", "port", str(nodes[0].component_port))
    for node in nodes:
        common.spawn(node)
    first = nodes[0]
    first.mmp_run("xmpp", "cluster", "trust", "cluster-bundle.crt")
    first.mmp_run("xmpp", "disable")
    first.mmp_run("xmpp", "cluster", "enable")
    first.mmp_run("xmpp", "cluster", "initialize")
    first.mmp_run("xmpp", "enable")
    for node in nodes[1:]:
        node.mmp_run("xmpp", "cluster", "trust", "cluster-bundle.crt")
        node.mmp_run("xmpp", "disable")
        node.mmp_run("xmpp", "cluster", "enable")
        node.mmp_run("xmpp", "enable")
        node.mmp_run("xmpp", "cluster", "join", "%s:%d" % (first.address, CLUSTER_PORT))
    for user, password in USERS.items():
        first.mmp_run("user", "add", user, stdin="%s\n%s\n" % (password, password))
    first.mmp_run("xmpp", "callbridge", "add-secret", BRIDGE, stdin=BRIDGE_SECRET + "\n")
    for node in nodes:
        common.wait_listening(node, [node.port])
    wait_peers(nodes)


def wait_peers(nodes, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        statuses = [n.mmp_run("xmpp", "cluster", "status") for n in nodes]
        if all(s.count("reachable") == len(nodes) - 1 and "(Leader)" in s for s in statuses):
            return
        if time.monotonic() > deadline:
            raise CheckFailed("the cluster did not form:\n%s" % "\n".join(statuses))
        time.sleep(0.5)


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
    args = common.arguments(__doc__, ADDRESSES[0]).parse_args()
    base = tempfile.mkdtemp(prefix="switchboard-cluster-routing-")
    nodes = [Node(args.xmppd, args.mmp, address, args.keep) for address in ADDRESSES]
    checks = common.Checks(nodes[0])
    sessions = {}
    try:
        ca_crt, certs = make_certificates(base, len(nodes))
        if not checks.check("three nodes formed with the CMS sequence", lambda: form(nodes, ca_crt, certs)):
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

        checks.check("messages between nodes 1 and 3, both ways", messages)

        def presence():
            alice, bob = sessions["alice"], sessions["bob"]
            # Subscription requests go to available resources (RFC 6121 §3.1.3).
            alice.send(b"<presence/>")
            bob.send(b"<presence/>")
            time.sleep(0.5)
            alice.send(("<presence type='subscribe' to='bob@%s'/>" % DOMAIN).encode())
            wait_for(bob, rb"type=['\"]subscribe['\"]", "bob did not get alice's subscription request")
            bob.send(("<presence type='subscribed' to='alice@%s'/>" % DOMAIN).encode())
            bob.send(("<presence type='subscribe' to='alice@%s'/>" % DOMAIN).encode())
            wait_for(alice, rb"type=['\"]subscribe['\"]", "alice did not get bob's subscription request")
            alice.send(("<presence type='subscribed' to='bob@%s'/>" % DOMAIN).encode())
            time.sleep(0.5)
            alice.received = bob.received = b""
            # A presence update each: both now have a subscription to the other.
            alice.send(b"<presence><status>here</status></presence>")
            bob.send(b"<presence><status>there</status></presence>")
            from_bob = ("<presence[^>]*from=['\"]bob@%s/b3['\"](?![^>]*type=)" % DOMAIN).encode()
            from_alice = ("<presence[^>]*from=['\"]alice@%s/a1['\"](?![^>]*type=)" % DOMAIN).encode()
            wait_for(alice, from_bob, "alice did not see bob available")
            wait_for(bob, from_alice, "bob did not see alice available")

        checks.check("subscription and presence across nodes", presence)

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
            nodes[2].process.send_signal(signal.SIGKILL)
            nodes[2].process.wait(timeout=10)
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
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return common.summary(checks)


if __name__ == "__main__":
    sys.exit(main())
