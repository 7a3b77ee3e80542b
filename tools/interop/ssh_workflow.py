#!/usr/bin/env python3
"""Issue 14: the seed's certificate workflow over SSH and SFTP, end to end, with OpenSSH.

Standalone:

    /usr/bin/python3 tools/interop/ssh_workflow.py --xmppd target/debug/xmppd --mmp target/debug/mmp

The CMS document's procedure, on a real xmppd with `ssh enable`, through OpenSSH's `ssh` and
`sftp` (sshpass types the admin password):
  * `pki csr abhiall CN:tptac9.com subAltName:cb1.tptac9.com,cb2.tptac9.com,cb3` over ssh
    (the seed's exact line), exit status 0;
  * `get abhiall.csr` over sftp; a test CA made with openssl (root and intermediate) signs it
    with `openssl x509 -req`, keeping the request's subjectAltName;
  * `put abhiall.cer` and `put certallbundle.cer` (intermediate then root) over sftp;
  * `pki list` over ssh shows CMS's header and both files; `pki verify` accepts the chain;
  * `xmpp domain tptac9.com` and `xmpp certs abhiall.key abhiall.cer certallbundle.cer` over ssh;
  * a TLS client (`openssl s_client -starttls xmpp`) trusting only the test root verifies the
    chain on the client port: the server sends the leaf and the intermediate.

The whole exchange is written to target/test-output/ssh/workflow.txt. Every check asserts;
the last line is `N passed, N failed` and the exit code is 1 on failure. Every wait is bounded.
"""

import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as common  # noqa: E402

from interop_common import CheckFailed, expect  # noqa: E402

ADMIN_PASSWORD = "seed workflow admin"
SEED_CSR = "pki csr abhiall CN:tptac9.com subAltName:cb1.tptac9.com,cb2.tptac9.com,cb3"
TIMEOUT = 60
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRANSCRIPT = os.path.join(ROOT, "target", "test-output", "ssh", "workflow.txt")


class SshXmppd(common.Xmppd):
    """xmppd with the admin password set and SSH enabled on its address and a free port."""

    def start(self):
        self.ssh_port = common.other_free_port(self.address, self.port)
        self.mmp_run("admin", "passwd", stdin="%s\n%s\n" % (ADMIN_PASSWORD, ADMIN_PASSWORD))
        self.mmp_run("ssh", "listen", self.address, str(self.ssh_port))
        self.mmp_run("ssh", "enable")
        super().start()
        common.wait_listening(self, [self.ssh_port], what="SSH")


class Session:
    """OpenSSH runs against the server, each one written to the transcript."""

    def __init__(self, server, work):
        self.server = server
        self.work = work
        self.lines = []

    def options(self):
        return [
            "-F", "/dev/null",
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR",
            "-o", "IdentityAgent=none",
            "-o", "PubkeyAuthentication=no",
            "-o", "PreferredAuthentications=password",
            "-o", "Port=%d" % self.server.ssh_port,
        ]

    def record(self, shown, result):
        self.lines.append("$ " + shown)
        # openssl's key generation progress (lines of dots and pluses) says nothing.
        output = "\n".join(line for line in (result.stdout + result.stderr).splitlines()
                           if line == "" or line.strip(".+*-") != "").rstrip("\n")
        if output:
            self.lines.append(output)
        self.lines.append("(exit status %d)" % result.returncode)
        self.lines.append("")

    def ssh(self, line, want=0):
        result = subprocess.run(
            ["sshpass", "-p", ADMIN_PASSWORD, "ssh", *self.options(), "admin@" + self.server.address, line],
            capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
        )
        self.record("ssh admin@node '%s'" % line, result)
        expect(result.returncode == want, "ssh '%s' exited %d (wanted %d): %s%s"
               % (line, result.returncode, want, result.stdout, result.stderr))
        return result.stdout

    def sftp(self, commands):
        batch = os.path.join(self.work, "batch")
        with open(batch, "w") as out:
            out.write("\n".join(commands) + "\n")
        result = subprocess.run(
            ["sshpass", "-p", ADMIN_PASSWORD, "sftp", *self.options(), "-o", "BatchMode=no",
             "-b", batch, "admin@" + self.server.address],
            capture_output=True, text=True, timeout=TIMEOUT, cwd=self.work, stdin=subprocess.DEVNULL,
        )
        self.record("sftp admin@node <<< '%s'" % "; ".join(commands), result)
        expect(result.returncode == 0, "sftp %s failed: %s%s" % (commands, result.stdout, result.stderr))

    def local(self, shown, argv, stdin=None):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, cwd=self.work, input=stdin)
        self.record(shown, result)
        expect(result.returncode == 0, "%s failed: %s%s" % (shown, result.stdout, result.stderr))
        return result.stdout

    def save(self):
        os.makedirs(os.path.dirname(TRANSCRIPT), exist_ok=True)
        with open(TRANSCRIPT, "w") as out:
            out.write("\n".join(self.lines) + "\n")


def make_ca(session):
    """A root CA and an intermediate signed by it, with openssl."""
    ca_ext = "ca.ext"
    with open(os.path.join(session.work, ca_ext), "w") as out:
        out.write("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                  "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    session.local("openssl req -x509 (test root CA)", [
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "root.key", "-out", "root.crt",
        "-subj", "/O=Seed Test/CN=Seed Test Root CA", "-days", "30"])
    session.local("openssl req (intermediate CA request)", [
        "openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "inter.key", "-out", "inter.csr",
        "-subj", "/O=Seed Test/CN=Seed Test Intermediate CA"])
    session.local("openssl x509 -req (root signs the intermediate)", [
        "openssl", "x509", "-req", "-in", "inter.csr", "-CA", "root.crt", "-CAkey", "root.key",
        "-CAcreateserial", "-out", "inter.crt", "-days", "30", "-extfile", ca_ext])


def main():
    parser = common.arguments(__doc__, "127.0.0.61")
    args = parser.parse_args()
    for tool in ("ssh", "sftp", "sshpass", "openssl"):
        if subprocess.run(["sh", "-c", "command -v " + tool], capture_output=True).returncode != 0:
            print("FAIL %s is missing (apt-get install openssh-client sshpass openssl)" % tool)
            print("0 passed, 1 failed")
            return 1
    server = SshXmppd(args.xmppd, args.mmp, args.address, args.keep)
    checks = common.Checks(server)
    work = tempfile.mkdtemp(prefix="switchboard-ssh-workflow-")
    session = Session(server, work)
    try:
        server.start()

        def seed_csr():
            out = session.ssh(SEED_CSR)
            expect(out.strip() == "SUCCESS", "pki csr answered %r" % out)

        checks.check("the seed's pki csr line over ssh", seed_csr)

        def fetch_csr():
            session.sftp(["get abhiall.csr"])
            text = session.local("openssl req -in abhiall.csr -noout -text", [
                "openssl", "req", "-in", "abhiall.csr", "-noout", "-text", "-verify"])
            for name in ("DNS:cb1.tptac9.com", "DNS:cb2.tptac9.com", "DNS:cb3", "CN = tptac9.com"):
                expect(name in text, "the request lacks %s:\n%s" % (name, text))

        checks.check("sftp get abhiall.csr: the seed's names are in it", fetch_csr)

        def sign():
            make_ca(session)
            session.local("openssl x509 -req (the intermediate signs abhiall.csr)", [
                "openssl", "x509", "-req", "-in", "abhiall.csr", "-CA", "inter.crt", "-CAkey", "inter.key",
                "-CAcreateserial", "-out", "abhiall.cer", "-days", "30", "-copy_extensions", "copy"])
            with open(os.path.join(work, "certallbundle.cer"), "w") as bundle:
                for name in ("inter.crt", "root.crt"):
                    with open(os.path.join(work, name)) as part:
                        bundle.write(part.read())
            session.local("openssl verify (locally, before upload)", [
                "openssl", "verify", "-CAfile", "root.crt", "-untrusted", "inter.crt", "abhiall.cer"])

        checks.check("a test CA signs the request with openssl x509 -req", sign)

        def upload():
            session.sftp(["put abhiall.cer", "put certallbundle.cer", "ls -l"])

        checks.check("sftp put the certificate and the bundle", upload)

        def listed():
            out = session.ssh("pki list")
            expect(out.startswith("User supplied certificates and keys:\n"), "pki list:\n%s" % out)
            names = out.split("\n\n")[0].splitlines()[1:]
            for name in ("abhiall.key", "abhiall.csr", "abhiall.cer", "certallbundle.cer"):
                expect(name in names, "pki list does not name %s:\n%s" % (name, out))
            expect(re.search(r"abhiall\.cer\s+cert\s+CN=tptac9\.com, expires", out), "no detail:\n%s" % out)
            out = session.ssh("pki verify abhiall.cer certallbundle.cer")
            expect(out.strip() == "SUCCESS", "pki verify: %s" % out)
            out = session.ssh("pki match abhiall.key abhiall.cer")
            expect(out.strip() == "SUCCESS", "pki match: %s" % out)

        checks.check("pki list over ssh shows them (CMS's header, then detail)", listed)

        def configure():
            session.ssh("xmpp domain tptac9.com")
            session.ssh("xmpp certs abhiall.key abhiall.cer certallbundle.cer")
            out = session.ssh("xmpp frobnicate", want=1)
            expect(out.startswith("FAILURE"), "a bad command answered %r" % out)

        checks.check("xmpp domain and xmpp certs over ssh", configure)

        def tls_client_sees_the_chain():
            deadline = time.monotonic() + 30
            while True:
                result = subprocess.run(
                    ["openssl", "s_client", "-connect", "%s:%d" % (server.address, server.port),
                     "-starttls", "xmpp", "-xmpphost", "tptac9.com", "-CAfile", os.path.join(work, "root.crt"),
                     "-verify_hostname", "cb1.tptac9.com", "-verify_return_error", "-showcerts"],
                    capture_output=True, text=True, timeout=TIMEOUT, input="",
                )
                ok = "Verify return code: 0 (ok)" in result.stdout
                if ok or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            chain = [line for line in result.stdout.splitlines() if re.match(r"^ ?\d+ s:", line)
                     or line.strip().startswith(("s:", "i:"))]
            chain += sorted({line.strip() for line in result.stdout.splitlines() if "Verify return code" in line})
            session.record("openssl s_client -starttls xmpp -xmpphost tptac9.com -CAfile root.crt "
                           "(chain and verdict shown)", subprocess.CompletedProcess(
                               [], result.returncode, "\n".join(chain) + "\n", ""))
            expect(ok, "the TLS client did not verify the chain:\n%s\n%s" % (result.stdout[-3000:], result.stderr))
            expect("Seed Test Intermediate CA" in result.stdout, "the server did not send the intermediate")

        checks.check("a TLS client on the client port verifies the new chain (STARTTLS)", tls_client_sees_the_chain)
    except CheckFailed as err:
        checks.failed += 1
        print("FAIL setup: %s" % err, flush=True)
    finally:
        session.save()
        print("transcript: %s" % TRANSCRIPT)
        common.finish(server, checks)
    return common.summary(checks)


if __name__ == "__main__":
    sys.exit(main())
