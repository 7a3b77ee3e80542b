# One message between two appliance VMs through their forwarded ports, with slixmpp (a client
# nobody here wrote): the receiver logs in on one node, the sender on another, the sender's
# message must arrive. Prints DELIVERED or why not.
import asyncio
import ssl
import sys

import slixmpp

sender_jid, sender_password, sender_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
receiver_jid, receiver_password, receiver_port = sys.argv[4], sys.argv[5], int(sys.argv[6])
BODY = "across the cluster"


def client(jid, password):
    c = slixmpp.ClientXMPP(jid, password)
    c.ssl_context.check_hostname = False
    c.ssl_context.verify_mode = ssl.CERT_NONE
    return c


async def main():
    loop = asyncio.get_event_loop()
    got = loop.create_future()
    receiver = client(receiver_jid, receiver_password)
    receiver_ready = loop.create_future()
    receiver.add_event_handler("session_start", lambda _: receiver_ready.done() or receiver_ready.set_result(True))
    receiver.add_event_handler(
        "message", lambda msg: got.done() or msg["body"] != BODY or got.set_result(str(msg["from"]))
    )
    receiver.connect(address=("127.0.0.1", receiver_port))
    await asyncio.wait_for(receiver_ready, 90)
    receiver.send_presence()
    sender = client(sender_jid, sender_password)
    sender_ready = loop.create_future()
    sender.add_event_handler("session_start", lambda _: sender_ready.done() or sender_ready.set_result(True))
    sender.connect(address=("127.0.0.1", sender_port))
    await asyncio.wait_for(sender_ready, 90)
    sender.send_message(mto=receiver_jid, mbody=BODY, mtype="chat")
    sender_from = await asyncio.wait_for(got, 60)
    print("DELIVERED from " + sender_from)
    sender.disconnect()
    receiver.disconnect()


try:
    asyncio.get_event_loop().run_until_complete(main())
except asyncio.TimeoutError:
    print("TIMEOUT")
    sys.exit(1)
