#!/usr/bin/env python3
"""The web admin under the benchmark's load (issue 12): response times of the HTML status page
(logged in with the form) and of /metrics (HTTP Basic, as Prometheus scrapes), idle and while loadgen logs clients in and drives messages against the same
xmppd. Each request is a new TLS connection, as a browser's first visit or a Prometheus
scrape without keep-alive.

A benchmark, not a test: it prints figures and asserts nothing about them. Bounded: a fixed
number of requests per phase, one loadgen run.

Usage: web_bench.py --xmppd PATH --mmp PATH --loadgen PATH [--clients N] [--secs S] [--requests N]
"""

import argparse
import base64
import http.cookiejar
import os
import re
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_common import Node  # noqa: E402
from cluster_routing_bench import add_users, loadgen_command, result_of  # noqa: E402

ADDRESS = "127.0.76.1"
ADMIN_PASSWORD = "web-bench-admin-pw"


def context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Browser:
    """A logged-in session of the web admin (login form, session cookie)."""

    def __init__(self, base):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=context()), urllib.request.HTTPCookieProcessor(self.jar)
        )
        form = self.opener.open(base + "/login", timeout=30).read().decode()
        token = re.search(r'name="csrf" value="([^"]+)"', form)
        if not token:
            raise SystemExit("no CSRF token in the login form")
        fields = {"username": "admin", "password": ADMIN_PASSWORD, "csrf": token.group(1)}
        answer = self.opener.open(base + "/login", urllib.parse.urlencode(fields).encode(), timeout=30)
        if "/login" in answer.geturl():
            raise SystemExit("login to the web admin failed: %s" % answer.read()[:300])

    def timed(self, path):
        request = urllib.request.Request(self.base + path)
        if path == "/metrics":
            # Scraped as Prometheus does: HTTP Basic with the admin account.
            token = base64.b64encode(("admin:%s" % ADMIN_PASSWORD).encode()).decode()
            request.add_header("Authorization", "Basic " + token)
        started = time.monotonic()
        with self.opener.open(request, timeout=30) as answer:
            answer.read()
            status = answer.status
        if status != 200:
            raise SystemExit("%s answered %s" % (path, status))
        return (time.monotonic() - started) * 1000.0


def timings(browser, path, count):
    values = sorted(browser.timed(path) for _ in range(count))
    return values


def show(label, path, values):
    def pick(fraction):
        return values[min(len(values) - 1, int(round(fraction * (len(values) - 1))))]

    print("%-30s %-10s n %3d  min %6.1f  p50 %6.1f  p99 %6.1f  max %6.1f ms" % (
        label, path, len(values), values[0], pick(0.5), pick(0.99), values[-1]), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--xmppd", required=True)
    parser.add_argument("--mmp", required=True)
    parser.add_argument("--loadgen", required=True)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--secs", type=float, default=10)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()

    node = Node(args.xmppd, args.mmp, ADDRESS, False)
    try:
        node.configure()
        web_port = 8443
        node.mmp_run("webadmin", "listen", ADDRESS, str(web_port))
        node.mmp_run("webadmin", "enable")
        node.mmp_run("admin", "passwd", stdin="%s\n%s\n" % (ADMIN_PASSWORD, ADMIN_PASSWORD))
        add_users(node, args.clients)
        node.start()
        node.wait_serving()
        base = "https://%s:%d" % (ADDRESS, web_port)
        deadline = time.monotonic() + 30
        while True:
            try:
                browser = Browser(base)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        for path in ("/status", "/metrics"):
            show("idle", path, timings(browser, path, args.requests))
        # Under load: loadgen logs the clients in, then drives messages; the page and the
        # metrics are fetched the whole time, one request after the other.
        run = subprocess.Popen(loadgen_command(args, node, "web-load"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        loaded = {"/status": [], "/metrics": []}
        stop = threading.Event()

        def poll():
            while not stop.is_set() and len(loaded["/metrics"]) < 10 * args.requests:
                for path in loaded:
                    loaded[path].append(browser.timed(path))

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        stdout, stderr = run.communicate(timeout=900)
        stop.set()
        poller.join(timeout=60)
        result = result_of("web-load", stdout, stderr)
        print("load: %d clients, logins/s %.0f, %.0f msgs/s unthrottled for %.0f s, then %.0f msg/s" % (
            args.clients, result.get("logins_per_s") or 0, result.get("throughput_delivered_per_s") or 0,
            args.secs, args.rate), flush=True)
        for path, values in loaded.items():
            if values:
                show("under the benchmark's load", path, sorted(values))
    finally:
        node.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
