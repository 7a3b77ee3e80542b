#!/usr/bin/env python3
"""The web admin in a real browser: headless Chromium driven by Selenium (Debian's chromium,
chromium-driver and python3-selenium).

Starts its own xmppd on a loopback address with a fresh data folder, then: logs in, checks the
status page, adds a Call Bridge through the form and sees its secret, adds a user, changes a
federation setting, uploads a certificate, watches a log line arrive, logs out, and checks that
a wrong password is refused. A screenshot of each page goes to --out.

usage: webadmin.py --xmppd PATH --mmp PATH --out DIR
"""

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

ADDRESS = "127.0.0.73"
PASSWORD = "correct horse battery"
WAIT = 30


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def mmp(args, command, stdin=None):
    result = subprocess.run(
        [args.mmp, "-d", args.dir] + command,
        input=stdin,
        text=True,
        capture_output=True,
        timeout=60,
    )
    if result.returncode != 0:
        sys.exit(f"mmp {' '.join(command)} failed: {result.stdout}{result.stderr}")
    return result.stdout


def start_xmppd(args):
    web_port = free_port(ADDRESS)
    mmp(args, ["xmpp", "domain", "example.com"])
    mmp(args, ["xmpp", "enable"])
    mmp(args, ["xmpp", "listen", f"{ADDRESS}:{free_port(ADDRESS)}"])
    mmp(args, ["xmpp", "callbridge", "port", str(free_port(ADDRESS))])
    mmp(args, ["webadmin", "listen", ADDRESS, str(web_port)])
    mmp(args, ["webadmin", "enable"])
    mmp(args, ["admin", "passwd"], stdin=f"{PASSWORD}\n{PASSWORD}\n")
    log = open(os.path.join(args.out, "xmppd.log"), "w")
    daemon = subprocess.Popen(
        [args.xmppd, "-d", args.dir, "--s2s-port", str(free_port(ADDRESS))],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    deadline = time.monotonic() + 60
    url = None
    while time.monotonic() < deadline:
        line = daemon.stdout.readline()
        if not line:
            break
        log.write(line)
        found = re.search(r"Web admin and API: (https://\S+/)", line)
        if found:
            url = found.group(1)
            break
    if url is None:
        daemon.kill()
        sys.exit("xmppd did not print the web admin's address")
    return daemon, url.rstrip("/")


def browser():
    options = webdriver.ChromeOptions()
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--ignore-certificate-errors",
        "--window-size=1280,1000",
        "--disable-gpu",
    ):
        options.add_argument(flag)
    binary = shutil.which("chromium")
    if binary:
        options.binary_location = binary
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)


class Check:
    def __init__(self, driver, out):
        self.driver = driver
        self.out = out
        self.failures = 0

    def shot(self, name):
        # The whole page, not just the window: make the viewport as tall as the document.
        height = int(self.driver.execute_script("return document.documentElement.scrollHeight"))
        metrics = {"width": 1280, "height": max(800, min(height, 6000)), "deviceScaleFactor": 1, "mobile": False}
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        path = os.path.join(self.out, f"{name}.png")
        self.driver.save_screenshot(path)
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        print(f"  screenshot {path}")

    def that(self, ok, what):
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            self.failures += 1

    def text(self, element_id):
        return self.driver.find_element(By.ID, element_id).text

    def wait_for(self, condition, what):
        try:
            WebDriverWait(self.driver, WAIT).until(lambda d: condition())
            self.that(True, what)
            return True
        except Exception:
            self.that(False, f"{what} (waited {WAIT} s)")
            return False


def fill(driver, element_id, value):
    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(value)


def log_in(driver, url, password):
    driver.get(url + "/login")
    fill(driver, "username", "admin")
    fill(driver, "password", password)
    driver.find_element(By.ID, "login-submit").click()


def scenario(args, driver, url):
    check = Check(driver, args.out)

    driver.get(url + "/status")
    check.that(driver.current_url.endswith("/login"), "not logged in: the status page sends to the login form")
    check.shot("01-login")

    log_in(driver, url, PASSWORD)
    check.wait_for(lambda: driver.current_url.endswith("/status"), "after login the status page shows")
    check.that(driver.find_element(By.TAG_NAME, "h1").text == "Status", "status page title")
    check.that("running" in check.text("xmpp-state"), "the XMPP service shows as running")
    check.that(check.text("node-name") != "", "the node name shows")
    check.shot("02-status")

    driver.get(url + "/callbridges")
    fill(driver, "cb-name", "cb1")
    driver.find_element(By.ID, "cb-add").click()
    check.wait_for(lambda: driver.find_elements(By.ID, "result"), "a result after adding a Call Bridge")
    result = check.text("result")
    secret = re.search(r"Secret\s+:\s+(\S+)", result)
    check.that(secret is not None and result.endswith("SUCCESS"), f"the Call Bridge's secret shows: {result!r}")
    check.that("cb1.example.com" in check.text("callbridges"), "the Call Bridge is listed")
    check.shot("03-callbridges")

    driver.get(url + "/users")
    fill(driver, "user-name", "alice")
    fill(driver, "user-password", "alices password")
    fill(driver, "user-confirm", "alices password")
    driver.find_element(By.ID, "user-add").click()
    check.wait_for(lambda: driver.find_elements(By.ID, "result"), "a result after adding a user")
    check.that(check.text("result") == "SUCCESS", f"user added: {check.text('result')!r}")
    check.that("alice@example.com" in check.text("users"), "the user is listed")
    check.shot("04-users")

    driver.get(url + "/federation")
    Select(driver.find_element(By.ID, "security-value")).select_by_value("tls-optional")
    driver.find_element(By.ID, "set-security").click()
    check.wait_for(lambda: driver.find_elements(By.ID, "result"), "a result after a federation change")
    check.that(check.text("result") == "SUCCESS", f"federation setting changed: {check.text('result')!r}")
    status = check.text("federation-status")
    check.that("optional" in status.lower(), f"the federation settings show the new TLS mode: {status!r}")
    check.shot("05-federation")

    driver.get(url + "/certificates")
    with open(os.path.join(args.dir, "certs", "selfsigned.crt")) as f:
        pem = f.read()
    fill(driver, "upload-name", "uploaded.crt")
    driver.find_element(By.ID, "upload-pem").send_keys(pem)
    driver.find_element(By.ID, "upload").click()
    check.wait_for(lambda: driver.find_elements(By.ID, "result"), "a result after the upload")
    check.that(check.text("result") == "SUCCESS", f"certificate uploaded: {check.text('result')!r}")
    check.that("uploaded.crt" in check.text("pki-list"), "the uploaded certificate is listed")
    check.shot("06-certificates")

    driver.get(url + "/logs")
    check.wait_for(lambda: check.text("log-lines") != "", "the log shows lines")
    mmp(args, ["user", "add", "browserwatch"], stdin="watch password\nwatch password\n")
    check.wait_for(lambda: "browserwatch" in check.text("log-lines"), "a new log line arrives in the live log")
    check.shot("07-logs")

    driver.find_element(By.CSS_SELECTOR, "form.logout button").click()
    check.wait_for(lambda: "/login" in driver.current_url, "logout leads to the login form")
    driver.get(url + "/status")
    check.that("/login" in driver.current_url, "after logout the status page needs a login again")
    check.shot("08-logged-out")

    log_in(driver, url, "not the password")
    check.wait_for(lambda: driver.find_elements(By.ID, "notice"), "a notice after a wrong password")
    check.that("Login incorrect" in check.text("notice"), "a wrong password is refused")
    driver.get(url + "/status")
    check.that("/login" in driver.current_url, "a wrong password gives no session")
    log_in(driver, url, "not the password")
    check.wait_for(lambda: driver.find_elements(By.ID, "notice"), "a notice after a wrong password")
    check.shot("09-login-refused")
    return check.failures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--xmppd", required=True)
    parser.add_argument("--mmp", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for old in os.listdir(args.out):
        if old.endswith(".png"):
            os.remove(os.path.join(args.out, old))
    with tempfile.TemporaryDirectory(prefix="sb-browser-") as data:
        args.dir = data
        daemon, url = start_xmppd(args)
        driver = None
        try:
            driver = browser()
            driver.set_page_load_timeout(WAIT)
            failures = scenario(args, driver, url)
        finally:
            if driver is not None:
                driver.quit()
            daemon.terminate()
            try:
                daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                daemon.kill()
    print(f"browser: {'all checks passed' if failures == 0 else f'{failures} checks failed'}; screenshots in {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
