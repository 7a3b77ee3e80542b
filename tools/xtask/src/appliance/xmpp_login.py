# Logs in to the appliance through the forwarded port with slixmpp (a client nobody here
# wrote): STARTTLS (self-signed certificate accepted), SASL, bind. Prints LOGGED IN or why not.
import asyncio
import ssl
import sys

import slixmpp

jid, password, port = sys.argv[1], sys.argv[2], int(sys.argv[3])


class Client(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(jid, password, sasl_mech="SCRAM-SHA-256")
        # slixmpp 1.8.3 knows only the tls-unique channel binding (undefined on TLS 1.3): left
        # alone it tries SCRAM-*-PLUS with it, then says `y` (refused where -PLUS is offered)
        # and ends on PLAIN. SCRAM-SHA-256 without a binding value says `n`, as a client
        # supporting none of the announced binding types (XEP-0440) does.
        mechanisms = self["feature_mechanisms"]
        credentials = mechanisms.sasl_callback

        def without_channel_binding(required, optional):
            found = credentials(required, optional)
            found.pop("channel_binding", None)
            return found

        mechanisms.sasl_callback = without_channel_binding
        self.outcome = "NO SESSION"
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("failed_auth", self.on_failed)
        self.add_event_handler("disconnected", lambda _: None)

    async def on_start(self, _event):
        self.outcome = "LOGGED IN"
        self.disconnect()

    def on_failed(self, _event):
        self.outcome = "AUTH FAILED"
        self.disconnect()


client = Client()
client.ssl_context.check_hostname = False
client.ssl_context.verify_mode = ssl.CERT_NONE
done = client.disconnected
client.connect(address=("127.0.0.1", port))
try:
    # Not client.process(timeout=...): broken on Python 3.11 in slixmpp 1.8.
    client.loop.run_until_complete(asyncio.wait_for(done, 90))
except asyncio.TimeoutError:
    client.outcome = "TIMEOUT (" + client.outcome + ")"
print(client.outcome)
sys.exit(0 if client.outcome == "LOGGED IN" else 1)
