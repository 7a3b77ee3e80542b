"""The appliance's web API through a forwarded port: the admin's password lists the users
(the given one among them), a wrong password gets 401 with WWW-Authenticate.

Usage: web_api.py PORT ADMIN_PASSWORD EXPECTED_USER. Prints WEB API OK on success."""

import base64
import json
import ssl
import sys
import urllib.error
import urllib.request

port, password, expected = sys.argv[1], sys.argv[2], sys.argv[3]
# The appliance serves its self-signed identity until an operator sets `webadmin certs`.
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE


def get(path, secret):
    request = urllib.request.Request("https://127.0.0.1:%s%s" % (port, path))
    token = base64.b64encode(("admin:%s" % secret).encode()).decode()
    request.add_header("Authorization", "Basic " + token)
    return urllib.request.urlopen(request, context=context, timeout=30)


with get("/api/v1/users", password) as answer:
    users = json.load(answer)["users"]
names = [u["name"] if isinstance(u, dict) else u for u in users]
if expected not in names:
    sys.exit("user %s not listed: %r" % (expected, users))
try:
    get("/api/v1/users", password + "-wrong")
    sys.exit("a wrong password was accepted")
except urllib.error.HTTPError as refused:
    if refused.code != 401 or "Basic" not in refused.headers.get("WWW-Authenticate", ""):
        sys.exit("a wrong password got %s %r" % (refused.code, refused.headers.get("WWW-Authenticate")))
print("WEB API OK")
