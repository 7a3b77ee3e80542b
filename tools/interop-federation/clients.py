#!/usr/bin/python3
"""XMPP clients for the federation interop tests (Debian's python3-slixmpp).

Each user logs in to its own server (ours or the peer's), so everything between the two
users crosses the server-to-server link under test.

  clients.py exchange JID1 PW1 HOST1 JID2 PW2 HOST2
      presence subscription both ways, presence both ways, a message each way
  clients.py message JID1 PW1 HOST1 JID2 PW2 HOST2
      one message from user 1 to user 2
  clients.py expect-error JID PW HOST TO
      a message to TO must come back as an error; prints its condition

Prints one line per check (PASS/FAIL) and exits 0 only when every check passed. Every wait
is bounded; certificates are self-signed, so they are not verified.
"""

import asyncio
import logging
import ssl
import sys

import slixmpp

TIMEOUT = 45


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.messages = asyncio.Queue()
        self.errors = asyncio.Queue()
        self.available = set()
        self.ready = asyncio.Event()
        self.presence_changed = asyncio.Event()
        self.auto_authorize = True
        self.auto_subscribe = True
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        # Bounces without a body do not reach the "message" handler.
        self.add_event_handler("message_error", self.on_message_error)
        self.add_event_handler("presence_available", self.on_available)
        self.add_event_handler("roster_update", lambda _: self.presence_changed.set())

    async def on_start(self, _event):
        self.send_presence()
        await self.get_roster()
        self.ready.set()

    def on_message(self, msg):
        if msg["type"] != "error":
            self.messages.put_nowait((str(msg["from"].bare), msg["body"]))

    def on_message_error(self, msg):
        self.errors.put_nowait(msg["error"]["condition"])

    def on_available(self, presence):
        self.available.add(str(presence["from"].bare))
        self.presence_changed.set()

    def subscription(self, other):
        return self.client_roster[other]["subscription"] if other in self.client_roster else "none"


failures = 0


def check(ok, what):
    global failures
    print(("PASS: " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures += 1


async def login(jid, password, host):
    client = Client(jid, password)
    client.connect(address=(host, 5222))
    await asyncio.wait_for(client.ready.wait(), TIMEOUT)
    return client


async def wait_until(predicate, clients):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not predicate():
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        for c in clients:
            c.presence_changed.clear()
        waits = [asyncio.ensure_future(c.presence_changed.wait()) for c in clients]
        await asyncio.wait(waits, timeout=min(remaining, 1.0), return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
    return True


async def expect_message(client, sender, body):
    try:
        while True:
            got_from, got_body = await asyncio.wait_for(client.messages.get(), TIMEOUT)
            if got_from == sender and got_body == body:
                return True
    except asyncio.TimeoutError:
        return False


async def exchange(jid1, pw1, host1, jid2, pw2, host2, subscribe):
    one = await login(jid1, pw1, host1)
    check(True, f"{jid1} logged in at {host1}")
    two = await login(jid2, pw2, host2)
    check(True, f"{jid2} logged in at {host2}")
    if subscribe:
        one.send_presence(pto=jid2, ptype="subscribe")
        ok = await wait_until(lambda: one.subscription(jid2) == "both" and two.subscription(jid1) == "both", [one, two])
        check(ok, f"mutual subscription ({one.subscription(jid2)} / {two.subscription(jid1)})")
        ok = await wait_until(lambda: jid2 in one.available and jid1 in two.available, [one, two])
        check(ok, f"presence both ways ({jid2} seen: {jid2 in one.available}, {jid1} seen: {jid1 in two.available})")
    one.send_message(mto=jid2, mbody="hello from " + jid1, mtype="chat")
    check(await expect_message(two, jid1, "hello from " + jid1), f"message {jid1} -> {jid2}")
    if subscribe:
        two.send_message(mto=jid1, mbody="hello from " + jid2, mtype="chat")
        check(await expect_message(one, jid2, "hello from " + jid2), f"message {jid2} -> {jid1}")
    one.disconnect()
    two.disconnect()


async def expect_error(jid, password, host, to):
    client = await login(jid, password, host)
    client.send_message(mto=to, mbody="should not arrive", mtype="chat")
    try:
        condition = await asyncio.wait_for(client.errors.get(), TIMEOUT)
        print(f"ERROR-CONDITION: {condition}", flush=True)
        check(True, f"message {jid} -> {to} bounced with <{condition}/>")
    except asyncio.TimeoutError:
        check(False, f"message {jid} -> {to} did not bounce")
    client.disconnect()


async def main(argv):
    mode = argv[1] if len(argv) > 1 else ""
    try:
        if mode in ("exchange", "message") and len(argv) == 8:
            await exchange(*argv[2:8], subscribe=(mode == "exchange"))
        elif mode == "expect-error" and len(argv) == 6:
            await expect_error(*argv[2:6])
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except asyncio.TimeoutError:
        check(False, "login timed out")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    sys.exit(asyncio.run(main(sys.argv)))
