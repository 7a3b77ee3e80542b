#!/usr/bin/python3
"""Call Bridge interop: slixmpp's ComponentXMPP (a real XEP-0114 component nobody here wrote)
against xmppd, over TLS on the component socket as Cisco Meeting Server connects.

Standalone:

    /usr/bin/python3 tools/interop/component_interop.py --xmppd target/debug/xmppd --mmp target/debug/mmp

Starts xmppd on a loopback address (clients on a free port, Call Bridges on another free port
of the same address, set with `mmp xmpp callbridge port`) with a temporary data directory,
users alice and bob, and Call Bridge cb1 added with `mmp xmpp callbridge add-secret` (secret
piped on stdin). Then:
  * cb1 connects as a slixmpp ComponentXMPP with TLS on the socket (xmppd's self-signed
    certificate trusted explicitly and verified) and completes the handshake;
  * alice logs in with slixmpp's ClientXMPP (SCRAM-SHA-256 over STARTTLS);
  * component -> user and user -> component messages;
  * iq round trips: alice asks cb1 for disco#info, cb1 pings alice; the server lists cb1 in
    its disco#items;
  * an iq to a user who left comes back to the component as an error;
  * a component with a wrong secret is refused (<not-authorized/>) while cb1 keeps working;
  * an unknown name is refused (<host-unknown/>);
  * cb1 reconnecting replaces its old connection, which gets <conflict/>; traffic follows the
    new one;
  * `xmpp status` (through mmp and the admin socket) lists cb1, the refusals and the port;
  * while running: `xmpp callbridge port <new>` moves the listener (the old port refuses,
    cb1 joins on the new one over TLS), `xmpp callbridge plain on` lets cb1 join over plain
    TCP on this loopback address, and `xmpp callbridge port off` closes the listener while
    the connected cb1 keeps working.

Every check asserts; the last line is `N passed, N failed` and the exit code is 1 on failure.
Every wait is bounded.
"""

import argparse
import asyncio
import logging
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback

try:
    import slixmpp
    from slixmpp.componentxmpp import ComponentXMPP
    from slixmpp.exceptions import IqError
except ImportError:  # pragma: no cover - reported as a failure below
    slixmpp = None

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import scram_without_channel_binding  # noqa: E402

DOMAIN = "localhost"
STEP_TIMEOUT = 15.0
USERS = {"alice": "alice-secret-1", "bob": "bob-secret-2"}
BRIDGE = "cb1"
# Letters and digits only: slixmpp hashes the secret without XML-escaping it, which is the
# same digest for such a secret.
BRIDGE_SECRET = "kvgP1SRzWVabhiPVAb1"
BRIDGE_JID = "%s.%s" % (BRIDGE, DOMAIN)


class CheckFailed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def free_port(address):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


class Xmppd:
    """xmppd in a temporary directory on `address`, with USERS and Call Bridge cb1."""

    def __init__(self, xmppd, mmp, address, keep):
        self.xmppd = xmppd
        self.mmp = mmp
        self.address = address
        self.port = free_port(address)
        # Not the default 5223: set with `xmpp callbridge port`, as an administrator would.
        self.component_port = free_port(address)
        while self.component_port == self.port:
            self.component_port = free_port(address)
        self.keep = keep
        self.dir = tempfile.mkdtemp(prefix="switchboard-components-")
        self.process = None
        self.log_path = os.path.join(self.dir, "xmppd.log")

    def mmp_run(self, *words, stdin=None, allow_failure=False):
        result = subprocess.run(
            [self.mmp, "-d", self.dir, *words],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if not allow_failure and (result.returncode != 0 or "FAILURE" in result.stdout):
            raise CheckFailed(
                "mmp %s failed (%s): %s %s"
                % (" ".join(words), result.returncode, result.stdout.strip(), result.stderr.strip())
            )
        return result.stdout

    def start(self):
        self.mmp_run("xmpp", "domain", DOMAIN)
        self.mmp_run("xmpp", "listen", "%s:%d" % (self.address, self.port))
        reply = self.mmp_run("xmpp", "callbridge", "port", str(self.component_port))
        expect("Call Bridge port: %d, TLS" % self.component_port in reply,
               "xmpp callbridge port answered: %s" % reply.strip())
        self.mmp_run("xmpp", "enable")
        for user, password in USERS.items():
            self.mmp_run("user", "add", user, stdin="%s\n%s\n" % (password, password))
        self.mmp_run("xmpp", "callbridge", "add-secret", BRIDGE, stdin=BRIDGE_SECRET + "\n")
        listed = self.mmp_run("xmpp", "callbridge", "list")
        expect("Callbridge : %s" % BRIDGE in listed, "callbridge list does not show %s:\n%s" % (BRIDGE, listed))
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [self.xmppd, "-d", self.dir, "--log-level", "info"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 30
        for port in (self.port, self.component_port):
            while True:
                if self.process.poll() is not None:
                    raise CheckFailed("xmppd exited (%s) early:\n%s" % (self.process.returncode, self.log_tail()))
                try:
                    socket.create_connection((self.address, port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise CheckFailed("xmppd did not listen on port %d within 30s:\n%s" % (port, self.log_tail()))
                    time.sleep(0.1)

    def certificate(self):
        return os.path.join(self.dir, "certs", "selfsigned.crt")

    def log_text(self):
        try:
            with open(self.log_path, "r", errors="replace") as log:
                return log.read()
        except OSError:
            return ""

    def log_tail(self, lines=40):
        return "".join(self.log_text().splitlines(keepends=True)[-lines:]) or "(no log)"

    def terminate(self, timeout=15):
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
            return None

    def cleanup(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        if self.keep:
            print("kept %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


class Inbox:
    """Everything received, in order; waiters look at items after a mark."""

    def __init__(self):
        self.items = []
        self.changed = asyncio.Event()

    def put(self, item):
        self.items.append(item)
        self.changed.set()

    def mark(self):
        return len(self.items)

    async def wait(self, predicate, what, since=0, timeout=STEP_TIMEOUT):
        deadline = asyncio.get_running_loop().time() + timeout
        position = since
        while True:
            while position < len(self.items):
                item = self.items[position]
                position += 1
                if predicate(item):
                    return item
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise CheckFailed("timed out waiting for %s" % what)
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass


def trust(stream, cafile):
    """Verify the server against its own self-signed certificate (it names `localhost`)."""
    stream.ca_certs = cafile


def make_classes():
    class Bridge(ComponentXMPP):
        """A Call Bridge stand-in: slixmpp's component, TLS on the socket."""

        def __init__(self, name, secret, address, port, cafile, use_ssl=True):
            super().__init__("%s.%s" % (name, DOMAIN), secret)
            self.target = (address, port)
            self.use_ssl = use_ssl
            self.messages = Inbox()
            self.presences = Inbox()
            self.errors = Inbox()
            self.started = asyncio.get_event_loop().create_future()
            self.gone = asyncio.get_event_loop().create_future()
            self.register_plugin("xep_0030")
            self.register_plugin("xep_0199")
            trust(self, cafile)
            self.add_event_handler("session_start", self.on_session_start)
            self.add_event_handler("message", self.messages.put)
            self.add_event_handler("presence", self.presences.put)
            self.add_event_handler("stream_error", self.on_stream_error)
            self.add_event_handler("connection_failed", lambda e: self.fail("connection failed: %s" % e))
            self.add_event_handler("ssl_invalid_chain", lambda e: self.fail("certificate rejected: %s" % e))
            self.add_event_handler("disconnected", self.on_disconnected)

        async def get_dns_records(self, domain, port=None):
            # TLS names the domain (`localhost`, the certificate's name); the server sits on
            # a 127.0.0.x address of its own.
            return [(DOMAIN, self.target[0], self.target[1])]

        def fail(self, reason):
            if not self.started.done():
                self.started.set_exception(CheckFailed(reason))

        def on_session_start(self, _event):
            self["xep_0030"].add_identity(category="conference", itype="text", name="Call Bridge stand-in",
                                          jid=self.boundjid)
            if not self.started.done():
                self.started.set_result(True)

        def on_stream_error(self, error):
            self.errors.put(error["condition"])
            self.fail("stream error <%s/>" % error["condition"])

        def on_disconnected(self, _event):
            if not self.gone.done():
                self.gone.set_result(True)
            self.fail("disconnected before the handshake completed")

        async def join(self):
            self.connect(host=DOMAIN, port=self.target[1], use_ssl=self.use_ssl)
            await asyncio.wait_for(self.started, STEP_TIMEOUT)

        async def refused(self):
            """Connect, expecting a stream error; returns its condition."""
            self.connect(host=DOMAIN, port=self.target[1], use_ssl=self.use_ssl)
            try:
                await asyncio.wait_for(self.started, STEP_TIMEOUT)
            except CheckFailed:
                pass
            else:
                raise CheckFailed("%s was accepted" % self.boundjid)
            condition = await self.errors.wait(lambda _c: True, "a stream error for %s" % self.boundjid)
            await asyncio.wait_for(self.gone, STEP_TIMEOUT)
            return condition

        def tls_active(self):
            transport = self.transport
            return transport is not None and transport.get_extra_info("ssl_object") is not None

    class Client(slixmpp.ClientXMPP):
        """A user: SCRAM-SHA-256 over STARTTLS."""

        def __init__(self, user, address, port, cafile, resource):
            super().__init__("%s@%s/%s" % (user, DOMAIN, resource), USERS[user], sasl_mech="SCRAM-SHA-256")
            scram_without_channel_binding(self)
            self.target = (address, port)
            self.messages = Inbox()
            self.started = asyncio.get_event_loop().create_future()
            self.gone = asyncio.get_event_loop().create_future()
            self.register_plugin("xep_0030")
            self.register_plugin("xep_0199")
            trust(self, cafile)
            self.add_event_handler("session_start", self.on_session_start)
            self.add_event_handler("message", self.messages.put)
            self.add_event_handler("failed_auth", lambda _: self.fail("authentication failed"))
            self.add_event_handler("connection_failed", lambda e: self.fail("connection failed: %s" % e))
            self.add_event_handler("ssl_invalid_chain", lambda e: self.fail("certificate rejected: %s" % e))
            self.add_event_handler("stream_error", lambda e: self.fail("stream error: %s" % e))
            self.add_event_handler("disconnected", self.on_disconnected)

        async def get_dns_records(self, domain, port=None):
            return [(DOMAIN, self.target[0], self.target[1])]

        def fail(self, reason):
            if not self.started.done():
                self.started.set_exception(CheckFailed(reason))

        async def on_session_start(self, _event):
            try:
                await self.get_roster(timeout=STEP_TIMEOUT)
                self.send_presence()
                if not self.started.done():
                    self.started.set_result(True)
            except Exception as err:  # noqa: BLE001 - reported through the future
                self.fail("roster/presence after login: %r" % err)

        def on_disconnected(self, _event):
            if not self.gone.done():
                self.gone.set_result(True)
            self.fail("disconnected before the session started")

        async def login(self):
            self.connect(address=(DOMAIN, self.target[1]))
            await asyncio.wait_for(self.started, STEP_TIMEOUT)

        async def leave(self):
            self.disconnect()
            await asyncio.wait_for(self.gone, STEP_TIMEOUT)

        def mechanism(self):
            mech = getattr(self["feature_mechanisms"], "mech", None)
            return getattr(mech, "name", None)

        def tls_active(self):
            transport = self.transport
            return transport is not None and transport.get_extra_info("ssl_object") is not None

    return Bridge, Client


STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def stanza_error_condition(stanza):
    """The condition of an error stanza, read from its XML.

    slixmpp's `stanza["error"]` only finds an `<error/>` in jabber:client; on a component
    stream it is in jabber:component:accept (the stream's namespace, as XEP-0114 has it), and
    slixmpp then reports its default, feature-not-implemented.
    """
    for error in stanza.xml:
        if error.tag.endswith("}error"):
            for child in error:
                if child.tag.startswith("{%s}" % STANZAS_NS) and not child.tag.endswith("}text"):
                    return child.tag.split("}", 1)[1]
    return None


class Suite:
    def __init__(self, server, cafile):
        self.server = server
        self.cafile = cafile
        self.passed = 0
        self.failed = 0
        self.Bridge, self.Client = make_classes()
        self.bridge = None
        self.alice = None
        self.counter = 0

    async def check(self, name, coroutine_function, *args):
        started = time.monotonic()
        try:
            await asyncio.wait_for(coroutine_function(*args), STEP_TIMEOUT * 4)
        except Exception as err:  # noqa: BLE001 - every failure is reported and counted
            self.failed += 1
            detail = str(err) if isinstance(err, CheckFailed) else "".join(traceback.format_exception_only(err)).strip()
            print("FAIL %-52s %s" % (name, detail), flush=True)
            return False
        self.passed += 1
        print("ok   %-52s (%.2fs)" % (name, time.monotonic() - started), flush=True)
        return True

    def new_bridge(self, name=BRIDGE, secret=BRIDGE_SECRET, use_ssl=True):
        return self.Bridge(name, secret, self.server.address, self.server.component_port, self.cafile, use_ssl)

    def new_client(self, user, resource):
        return self.Client(user, self.server.address, self.server.port, self.cafile, resource)

    async def handshake(self):
        self.bridge = self.new_bridge()
        await self.bridge.join()
        expect(self.bridge.tls_active(), "the component stream is not TLS")

    async def user_login(self):
        self.alice = self.new_client("alice", "phone")
        await self.alice.login()
        expect(self.alice.tls_active(), "alice's stream is not TLS")
        expect(self.alice.mechanism() == "SCRAM-SHA-256", "alice used %s" % self.alice.mechanism())

    async def component_to_user(self):
        body = "welcome from the bridge"
        mark = self.alice.messages.mark()
        self.bridge.send_message(mto=self.alice.boundjid.full, mbody=body, mtype="chat",
                                 mfrom="conference@%s/bot" % BRIDGE_JID)
        message = await self.alice.messages.wait(lambda m: m["body"] == body, "alice to get %r" % body, mark)
        expect(str(message["from"]) == "conference@%s/bot" % BRIDGE_JID, "message from %s" % message["from"])
        expect(message["type"] != "error", "an error message: %s" % message)

    async def deliver_to_bridge(self, bridge, body):
        mark = bridge.messages.mark()
        self.alice.send_message(mto="room1@%s" % BRIDGE_JID, mbody=body, mtype="chat")
        message = await bridge.messages.wait(lambda m: m["body"] == body, "the bridge to get %r" % body, mark)
        expect(message["from"] == self.alice.boundjid, "message from %s" % message["from"])
        expect(str(message["to"]) == "room1@%s" % BRIDGE_JID, "message to %s" % message["to"])

    async def user_to_component(self):
        await self.deliver_to_bridge(self.bridge, "hello bridge")

    async def iq_user_to_component(self):
        info = await self.alice["xep_0030"].get_info(jid=BRIDGE_JID, timeout=STEP_TIMEOUT)
        identities = [(i[0], i[1]) for i in info["disco_info"]["identities"]]
        expect(("conference", "text") in identities, "cb1's disco#info identities: %r" % identities)

    async def iq_component_to_user(self):
        await self.bridge["xep_0199"].ping(jid=self.alice.boundjid.full, ifrom=BRIDGE_JID, timeout=STEP_TIMEOUT)

    async def server_lists_component(self):
        items = await self.alice["xep_0030"].get_items(jid=DOMAIN, timeout=STEP_TIMEOUT)
        jids = [str(item[0]) for item in items["disco_items"]["items"]]
        expect(BRIDGE_JID in jids, "the server's disco#items: %r" % jids)

    async def iq_to_departed_user(self):
        bob = self.new_client("bob", "desk")
        await bob.login()
        departed = bob.boundjid.full
        await bob.leave()
        try:
            await self.bridge["xep_0199"].ping(jid=departed, ifrom=BRIDGE_JID, timeout=STEP_TIMEOUT)
        except IqError as err:
            condition = stanza_error_condition(err.iq)
            expect(condition == "service-unavailable", "error <%s/> for a departed user" % condition)
            return
        raise CheckFailed("a ping to %s (gone) was answered with a result" % departed)

    async def still_working(self, label):
        self.counter += 1
        await self.deliver_to_bridge(self.bridge, "still here %d after %s" % (self.counter, label))
        await self.iq_component_to_user()

    async def wrong_secret_refused(self):
        intruder = self.new_bridge(secret="not-" + BRIDGE_SECRET)
        condition = await intruder.refused()
        expect(condition == "not-authorized", "wrong secret refused with <%s/>" % condition)
        await self.still_working("a wrong secret")

    async def unknown_name_refused(self):
        stranger = self.new_bridge(name="cb9")
        condition = await stranger.refused()
        expect(condition == "host-unknown", "unknown name refused with <%s/>" % condition)
        await self.still_working("an unknown name")

    async def replacement(self):
        old = self.bridge
        new = self.new_bridge()
        await new.join()
        condition = await old.errors.wait(lambda _c: True, "the old connection's stream error")
        expect(condition == "conflict", "the old connection got <%s/>" % condition)
        await asyncio.wait_for(old.gone, STEP_TIMEOUT)
        self.bridge = new
        await self.still_working("the replacement")

    async def status_reports(self):
        status = await asyncio.to_thread(self.server.mmp_run, "xmpp", "status")
        expect("%s from " % BRIDGE_JID in status, "status does not list cb1 connected:\n%s" % status)
        for fault in ("Call Bridge 'cb1' from", "refused: wrong secret", "Call Bridge 'cb9' from",
                      "refused: unknown name", "Call Bridge port  : %d, TLS\n" % self.server.component_port):
            expect(fault in status, "status lacks %r:\n%s" % (fault, status))
        log = self.server.log_text()
        expect(BRIDGE_SECRET not in log, "the Call Bridge secret reached xmppd's log")
        expect("conflict" in log, "the replacement is not logged")

    async def wait_listening(self, port, listening):
        """Poll (bounded) until the port accepts, or refuses, connections."""
        for _ in range(100):
            try:
                socket.create_connection((self.server.address, port), timeout=1).close()
                accepts = True
            except OSError:
                accepts = False
            if accepts == listening:
                return
            await asyncio.sleep(0.05)
        raise CheckFailed("port %d %s" % (port, "never accepted" if listening else "still accepts"))

    async def port_moves_at_run_time(self):
        old_port = self.server.component_port
        new_port = free_port(self.server.address)
        reply = await asyncio.to_thread(self.server.mmp_run, "xmpp", "callbridge", "port", str(new_port))
        expect("Call Bridge port: %d, TLS" % new_port in reply, "xmpp callbridge port answered: %s" % reply.strip())
        await self.wait_listening(new_port, True)
        await self.wait_listening(old_port, False)
        self.server.component_port = new_port
        moved = self.new_bridge()
        await moved.join()
        expect(moved.tls_active(), "the component stream on the new port is not TLS")
        self.bridge = moved
        await self.still_working("the port change")

    async def plain_on_loopback(self):
        reply = await asyncio.to_thread(self.server.mmp_run, "xmpp", "callbridge", "plain", "on")
        expect("plain TCP (loopback addresses only)" in reply, "xmpp callbridge plain on answered: %s" % reply.strip())
        plain = self.new_bridge(use_ssl=False)
        await plain.join()
        expect(not plain.tls_active(), "plain on, yet the stream is TLS")
        self.bridge = plain
        await self.still_working("plain TCP")
        status = await asyncio.to_thread(self.server.mmp_run, "xmpp", "status")
        expect("%s from " % BRIDGE_JID in status and "no TLS" in status,
               "status does not show cb1 without TLS:\n%s" % status)

    async def port_off(self):
        reply = await asyncio.to_thread(self.server.mmp_run, "xmpp", "callbridge", "port", "off")
        expect("Call Bridge port: off" in reply, "xmpp callbridge port off answered: %s" % reply.strip())
        await self.wait_listening(self.server.component_port, False)
        # The connected bridge is not cut off by closing the listener.
        await self.still_working("port off")


async def run_suite(server, cafile):
    suite = Suite(server, cafile)
    if not await suite.check("component: handshake over TLS on the socket", suite.handshake):
        return suite
    if not await suite.check("user: SCRAM-SHA-256 over STARTTLS", suite.user_login):
        return suite
    await suite.check("message: component -> user", suite.component_to_user)
    await suite.check("message: user -> component", suite.user_to_component)
    await suite.check("iq: user -> component disco#info round trip", suite.iq_user_to_component)
    await suite.check("iq: component -> user ping round trip", suite.iq_component_to_user)
    await suite.check("disco: the server lists the component", suite.server_lists_component)
    await suite.check("iq: to a departed user -> error", suite.iq_to_departed_user)
    await suite.check("refused: wrong secret, cb1 keeps working", suite.wrong_secret_refused)
    await suite.check("refused: unknown name, cb1 keeps working", suite.unknown_name_refused)
    await suite.check("reconnect: replaces the old connection", suite.replacement)
    await suite.check("status: bridge and refusals reported", suite.status_reports)
    await suite.check("listener: callbridge port moves it at run time", suite.port_moves_at_run_time)
    await suite.check("listener: callbridge plain on, loopback plain TCP", suite.plain_on_loopback)
    await suite.check("listener: callbridge port off closes it", suite.port_off)
    for stream in (suite.bridge, suite.alice):
        if stream is not None:
            stream.disconnect()
    return suite


def pick_address():
    """A loopback address of our own (ports on it are chosen free)."""
    return "127.0.%d.%d" % (random.randint(2, 254), random.randint(2, 254))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--xmppd", required=True)
    parser.add_argument("--mmp", required=True)
    parser.add_argument("--address", help="loopback address for xmppd (default: a random 127.0.x.y)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and log")
    parser.add_argument("--verbose", action="store_true", help="slixmpp debug logging")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.CRITICAL, format="%(levelname)s %(message)s")

    if slixmpp is None:
        print("FAIL slixmpp is not installed for %s (Debian: python3-slixmpp)" % sys.executable)
        print("0 passed, 1 failed")
        return 1

    try:
        address = args.address or pick_address()
    except CheckFailed as err:
        print("FAIL %s" % err)
        print("0 passed, 1 failed")
        return 1
    server = Xmppd(args.xmppd, args.mmp, address, args.keep)
    try:
        try:
            server.start()
        except CheckFailed as err:
            print("FAIL start xmppd: %s" % err)
            print("0 passed, 1 failed")
            return 1
        cafile = server.certificate()
        print("xmppd on %s (clients :%d, Call Bridges :%d), data in %s"
              % (server.address, server.port, server.component_port, server.dir))
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            suite = loop.run_until_complete(asyncio.wait_for(run_suite(server, cafile), 600))
        finally:
            # Let slixmpp finish its disconnects, then cancel what is left so nothing
            # complains after the summary line.
            loop.run_until_complete(asyncio.sleep(0.2))
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()
        if suite.failed:
            print("--- xmppd log (last lines) ---\n%s" % server.log_tail())
        print("%d passed, %d failed" % (suite.passed, suite.failed))
        return 1 if suite.failed else 0
    finally:
        server.terminate()
        server.cleanup()


if __name__ == "__main__":
    sys.exit(main())
