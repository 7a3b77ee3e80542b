"""A cluster of real xmppd processes for the cluster scripts: N nodes on 127.0.<net>.1..N, each
with its own data directory, formed through `mmp` with the command sequence of Cisco's CMS
resiliency guide, exactly as an administrator types it.

Not a test: imported by cluster_formation.py (and the routing scripts). Every wait is bounded
polling; nothing asserts on timing.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_common import wait_listening  # noqa: E402
from run import DOMAIN, USERS, CheckFailed, Xmppd  # noqa: E402,F401 - re-exported

CLUSTER_PORT = 5270
# One certificate for the service on every node, and the same file as the cluster trust
# bundle: the CMS guide's own example does this (abhiall.cer as both).
CERT_BASENAME = "cluster"


class Node(Xmppd):
    """One xmppd with its data directory (run.py's Xmppd); `mmp` reaches it through its admin
    socket once it runs."""

    @property
    def cluster_address(self):
        return "%s:%d" % (self.address, CLUSTER_PORT)

    def mmp_reply(self, *words, stdin=None):
        """(exit code, stdout): for commands that are expected to fail."""
        result = subprocess.run(
            [self.mmp, "-d", self.dir, *words], input=stdin, capture_output=True, text=True, timeout=90
        )
        return result.returncode, result.stdout.strip()

    def mmp_run(self, *words, stdin=None):
        code, out = self.mmp_reply(*words, stdin=stdin)
        if code != 0 or "FAILURE" in out:
            raise CheckFailed("node %s: mmp %s failed (%s): %s" % (self.address, " ".join(words), code, out))
        return out

    def configure(self):
        """Offline, before the first start: domain, listener, service on."""
        self.mmp_run("xmpp", "domain", DOMAIN)
        self.mmp_run("xmpp", "listen", "%s:%d" % (self.address, self.port))
        self.mmp_run("xmpp", "enable")

    def start(self):
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [self.xmppd, "-d", self.dir, "--log-level", os.environ.get("SB_LOG_LEVEL", "info")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        # A member starts with the service as it left it, so wait for the admin socket rather
        # than a client port a disabled node does not open. Not `mmp xmpp status`: without a
        # daemon mmp opens the store itself, and would hold its lock while xmppd starts.
        socket_path = os.path.join(self.dir, "mmp.sock")
        deadline = time.monotonic() + 30
        while not os.path.exists(socket_path):
            if self.process.poll() is not None:
                raise CheckFailed("xmppd %s exited (%s):\n%s" % (self.address, self.process.returncode, self.log_tail()))
            if time.monotonic() > deadline:
                raise CheckFailed("xmppd %s never opened its admin socket:\n%s" % (self.address, self.log_tail()))
            time.sleep(0.05)

    def wait_serving(self):
        wait_listening(self, [self.port], what="xmppd %s" % self.address)

    def kill9(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        # A killed daemon leaves its socket file; the next start must not mistake it for its own.
        try:
            os.unlink(os.path.join(self.dir, "mmp.sock"))
        except FileNotFoundError:
            pass

    def alive(self):
        return self.process is not None and self.process.poll() is None

    # -------------------------------------------------------------- cluster status, parsed

    def status(self):
        """`xmpp cluster status` as {state, peers: [(address, leader, me, rest)], text}."""
        out = self.mmp_run("xmpp", "cluster", "status")
        state = re.search(r"^State: (\S+)", out, re.M)
        peers = []
        in_peers = False
        for line in out.splitlines():
            if line == "List of peers":
                in_peers = True
                continue
            if in_peers:
                match = re.match(r"^(\S+:\d+)( \(Leader\))?( \(me\))?(.*)$", line)
                if not match:
                    break
                peers.append((match.group(1), bool(match.group(2)), bool(match.group(3)), match.group(4)))
        return {"state": state.group(1) if state else None, "peers": peers, "text": out}


def make_nodes(xmppd, mmp, net, count, keep):
    return [Node(xmppd, mmp, "127.0.%d.%d" % (net, i + 1), keep) for i in range(count)]


def share_certificate(nodes):
    """A self-signed certificate for the domain made on the first node, copied to the others."""
    first = nodes[0]
    first.mmp_run("pki", "selfsigned", CERT_BASENAME, "CN:" + DOMAIN, "subjectAltName:" + DOMAIN)
    for node in nodes[1:]:
        os.makedirs(os.path.join(node.dir, "certs"), exist_ok=True)
        for suffix in (".key", ".crt"):
            shutil.copy(os.path.join(first.dir, "certs", CERT_BASENAME + suffix), os.path.join(node.dir, "certs"))


def cms_first_node(node):
    """Node 1 in the CMS guide: certificates, trust, disable, cluster enable, initialize, enable."""
    node.mmp_run("xmpp", "certs", CERT_BASENAME + ".key", CERT_BASENAME + ".crt")
    node.mmp_run("xmpp", "cluster", "trust", CERT_BASENAME + ".crt")
    node.mmp_run("xmpp", "disable")
    node.mmp_run("xmpp", "cluster", "enable")
    node.mmp_run("xmpp", "cluster", "initialize")
    node.mmp_run("xmpp", "enable")


def cms_other_node(node, first):
    """Nodes 2..n in the CMS guide: certificates, trust, disable, cluster enable, enable, join."""
    node.mmp_run("xmpp", "certs", CERT_BASENAME + ".key", CERT_BASENAME + ".crt")
    node.mmp_run("xmpp", "cluster", "trust", CERT_BASENAME + ".crt")
    node.mmp_run("xmpp", "disable")
    node.mmp_run("xmpp", "cluster", "enable")
    node.mmp_run("xmpp", "enable")
    return node.mmp_run("xmpp", "cluster", "join", first.address)


def form(nodes):
    """Configure, start and form a cluster of `nodes` with the CMS sequence."""
    share_certificate(nodes)
    for node in nodes:
        node.configure()
    for node in nodes:
        node.start()
    cms_first_node(nodes[0])
    for node in nodes[1:]:
        cms_other_node(node, nodes[0])


def wait_until(what, predicate, timeout=30, pause=0.1):
    """Poll `predicate` (bounded); its last value when truthy, else CheckFailed naming `what`."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except CheckFailed as err:
            last_error = err
        time.sleep(pause)
    raise CheckFailed("%s: not within %ds%s" % (what, timeout, " (%s)" % last_error if last_error else ""))


def leader_of(nodes):
    """The node every live node names as leader, once they agree (bounded wait)."""

    def agreed():
        named = set()
        for node in nodes:
            if not node.alive():
                continue
            leaders = [peer[0] for peer in node.status()["peers"] if peer[1]]
            if len(leaders) != 1:
                return None
            named.add(leaders[0])
        if len(named) != 1:
            return None
        address = named.pop()
        return next((n for n in nodes if n.cluster_address == address and n.alive()), None)

    return wait_until("the live nodes agree on one leader", agreed)
