"""What the issue 13 attack scripts share: xmppd started in a temporary directory (mmp setup,
free ports, optional resource limits), raw-socket streams (TLS Call Bridge port, component and
s2s stream headers, SCRAM-SHA-256 login and binding), /proc readers, log waits, and the
check/report bookkeeping (`ok`/`FAIL` lines, figures, `N passed, N failed`).

Not a test: imported by namespace_attack.py, connection_flood.py, credential_guessing.py,
storage_quota.py, offline_delivery.py, log_forging.py and slow_reader.py (each puts its own folder on
sys.path). The client pieces (Raw, Xmppd, SCRAM) come from run.py and are re-exported here.
"""

import argparse
import base64
import hashlib
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import (  # noqa: E402,F401 - re-exported for the scripts
    DOMAIN,
    STEP_TIMEOUT,
    STREAM_HEADER,
    USERS,
    CheckFailed,
    Raw,
    Xmppd,
    expect,
    free_port,
    scram_client_final,
)

BRIDGE = "cb1"
BRIDGE_SECRET = "kvgP1SRzWVabhiPVAb1"
BRIDGE_JID = "%s.%s" % (BRIDGE, DOMAIN)
FEATURES = rb"</stream:features>|<stream:features[^>]*/>"


# --------------------------------------------------------------------------- the server


def configure(server, component_port=None, bridge_secret=False, federation=False):
    """mmp setup: domain, client listener, (Call Bridge port), users, (cb1's secret), (s2s)."""
    server.mmp_run("xmpp", "domain", DOMAIN)
    server.mmp_run("xmpp", "listen", "%s:%d" % (server.address, server.port))
    if component_port is not None:
        server.mmp_run("xmpp", "callbridge", "port", str(component_port))
    server.mmp_run("xmpp", "enable")
    for user, password in USERS.items():
        server.mmp_run("user", "add", user, stdin="%s\n%s\n" % (password, password))
    if bridge_secret:
        server.mmp_run("xmpp", "callbridge", "add-secret", BRIDGE, stdin=BRIDGE_SECRET + "\n")
    if federation:
        server.mmp_run("federation", "enable")


def spawn(server, extra_args=(), preexec_fn=None, ports=None):
    """Start xmppd (log in its directory) and wait until every port in `ports` listens."""
    log = open(server.log_path, "ab")
    server.process = subprocess.Popen(
        [server.xmppd, "-d", server.dir, "--log-level", "info", *extra_args],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=preexec_fn,
    )
    log.close()
    wait_listening(server, ports or [server.port])


def wait_listening(server, ports, what="xmppd", timeout=30):
    """Bounded: every port accepts a connection within `timeout`, or CheckFailed."""
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            if server.process.poll() is not None:
                raise CheckFailed("xmppd exited (%s) early:\n%s" % (server.process.returncode, server.log_tail()))
            try:
                socket.create_connection((server.address, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise CheckFailed("%s did not listen on port %d within %ds:\n%s" % (what, port, timeout, server.log_tail()))
                time.sleep(0.1)


def other_free_port(address, *taken):
    port = free_port(address)
    while port in taken:
        port = free_port(address)
    return port


def stop(server):
    """SIGTERM (bounded wait), then Xmppd.cleanup (kill if need be, remove or keep the dir)."""
    if server.process is not None and server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    server.cleanup()


def expect_alive(server, after):
    code = server.process.poll()
    if code is not None:
        how = "killed by signal %d" % -code if code < 0 else "exit status %d" % code
        raise CheckFailed("xmppd died (%s) after %s:\n%s" % (how, after, server.log_tail()))


def memory_kib(pid):
    """(VmRSS, VmHWM) in KiB from /proc/PID/status."""
    values = {}
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def open_descriptors(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def wait_for_log(server, pattern, timeout=30):
    """Bounded: whether xmppd's log matches `pattern` (a regex string) within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(server.log_path, errors="replace") as log:
            if re.search(pattern, log.read()):
                return True
        time.sleep(0.1)
    return False


# --------------------------------------------------------------------------- raw streams


def component_header(to):
    return (
        "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
        "xmlns:stream='http://etherx.jabber.org/streams' to='%s'>" % to
    ).encode()


S2S_HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
    "xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
    "from='attacker.example' to='%s' version='1.0'>" % DOMAIN
).encode()


def stream_id(received):
    match = re.search(rb"<stream:stream[^>]*\sid=['\"]([^'\"]+)['\"]", received)
    return match.group(1) if match else None


def handshake_digest(sid, secret):
    """XEP-0114: hex SHA-1 of the stream id and the secret."""
    return hashlib.sha1(sid + secret.encode()).hexdigest()


def tls_raw(address, port):
    """A Raw whose socket speaks TLS from the first byte (the Call Bridge port's default)."""
    raw = Raw(address, port)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw.sock = context.wrap_socket(raw.sock, server_hostname=DOMAIN)
    return raw


def bound_socket(source, address, port):
    """A TCP socket from the loopback address `source` (so per-address limits apply to it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(STEP_TIMEOUT)
    sock.bind((source, 0))
    sock.connect((address, port))
    return sock


def login(address, port, user, resource_name, source=None, exact_jid=True):
    """STARTTLS, SCRAM-SHA-256 with `user`'s password, a new stream, resource binding: returns
    the Raw with a bound session (received emptied). With `exact_jid` the bind must answer
    user@domain/resource_name, else only user@domain/ something. Closed on failure."""
    if source is None:
        raw = Raw(address, port)
    else:
        raw = Raw.__new__(Raw)
        raw.sock = bound_socket(source, address, port)
        raw.received = b""
    try:
        raw.starttls()
        nonce = base64.b64encode(os.urandom(18))
        client_first_bare = b"n=" + user.encode() + b",r=" + nonce
        raw.received = b""
        raw.send(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>"
            + base64.b64encode(b"n,," + client_first_bare)
            + b"</auth>"
        )
        expect(raw.read_until(rb"</challenge>"), "no SCRAM challenge: %r" % raw.received[-300:])
        challenge = re.search(rb"<challenge[^>]*>([^<]*)</challenge>", raw.received).group(1)
        final = scram_client_final(USERS[user], client_first_bare, base64.b64decode(challenge))
        raw.received = b""
        raw.send(b"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.b64encode(final) + b"</response>")
        expect(raw.read_until(rb"</success>|<success[^>]*/>|</failure>"), "no SASL outcome: %r" % raw.received[-300:])
        expect(b"<success" in raw.received, "login of %s refused: %r" % (user, raw.received[-300:]))
        raw.received = b""
        raw.send(STREAM_HEADER)
        expect(raw.read_until(rb"</stream:features>"), "no features after SASL: %r" % raw.received[-300:])
        raw.received = b""
        raw.send(
            (
                "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                "<resource>%s</resource></bind></iq>" % resource_name
            ).encode()
        )
        expect(raw.read_until(rb"</iq>"), "no answer to the bind: %r" % raw.received[-300:])
        jid = "<jid>%s@%s/%s" % (user, DOMAIN, resource_name + "</jid>" if exact_jid else "")
        expect(jid.encode() in raw.received, "bind failed: %r" % raw.received[-300:])
        raw.received = b""
        return raw
    except BaseException:
        raw.close()
        raise


# --------------------------------------------------------------------------- bookkeeping


def arguments(doc, address):
    """The scripts' common options: --xmppd, --mmp, --address (default `address`), --keep."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--xmppd", required=True)
    parser.add_argument("--mmp", required=True)
    parser.add_argument("--address", default=address, help="loopback address for xmppd (%s)" % address)
    parser.add_argument("--keep", action="store_true", help="keep the data directory and log")
    return parser


class Checks:
    """Counts checks: each prints `ok   NAME (secs)` or `FAIL NAME detail`; figures are kept."""

    def __init__(self, server=None, width=60):
        self.server = server
        self.width = width
        self.passed = 0
        self.failed = 0
        self.figures = []

    def check(self, name, function):
        started = time.monotonic()
        try:
            function()
        except Exception as err:  # noqa: BLE001 - every failure is reported and counted
            self.failed += 1
            detail = str(err) if isinstance(err, CheckFailed) else "".join(traceback.format_exception_only(err)).strip()
            print("FAIL %-*s %s" % (self.width, name, detail), flush=True)
            return False
        self.passed += 1
        print("ok   %-*s (%.2fs)" % (self.width, name, time.monotonic() - started), flush=True)
        return True

    def figure(self, text):
        self.figures.append(text)
        print("     " + text)


def serve(server, run_checks):
    """Start `server`, then `run_checks(server)` -> Checks; print the log tail on failure and
    the summary line; always stop the server. Returns the exit code."""
    try:
        try:
            server.start()
        except CheckFailed as err:
            print("FAIL start xmppd: %s" % err)
            print("0 passed, 1 failed")
            return 1
        checks = run_checks(server)
        if checks.failed:
            print("--- xmppd log (last lines) ---\n%s" % server.log_tail())
        print("%d passed, %d failed" % (checks.passed, checks.failed))
        return 1 if checks.failed else 0
    finally:
        stop(server)


def finish(server, checks):
    """For scripts that start the server themselves: SIGTERM it, print the log tail when a
    check failed, remove (or keep) the data directory."""
    server.terminate()
    if checks.failed:
        print(server.log_tail(), flush=True)
    server.cleanup()


def summary(checks):
    """The figures, then `N passed, N failed`; returns the exit code."""
    for figure in checks.figures:
        print("figure: " + figure)
    print("%d passed, %d failed" % (checks.passed, checks.failed), flush=True)
    return 1 if checks.failed else 0
