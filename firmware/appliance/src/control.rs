//! Requests to PID 1, as one-word datagrams on a unix socket in /run (mode 0600; only root
//! exists on the appliance anyway), and the files PID 1 keeps there for the others to read.

use std::os::unix::net::UnixDatagram;
use std::path::Path;

pub const SOCKET: &str = "/run/switchboard/control";
/// The one socket xmppd's user may write to (root:xmppd 0660): SSH and the web admin run their
/// commands inside xmppd, and `upgrade` must work there as on the console. PID 1 reads only
/// [`UpgradeRequest`]s from it and verifies the image again with the key in the initramfs, so
/// all a compromised xmppd can get from it is a boot into a correctly signed image.
pub const UPGRADE_SOCKET: &str = "/run/switchboard/upgrade-request";
/// `key=value` lines, see [`crate::health`].
pub const HEALTH: &str = "/run/switchboard/health";
/// The readiness line, written once XMPP answers.
pub const READY: &str = "/run/switchboard/ready";
/// Why /data could not be mounted, written by PID 1 at boot; absent when it is mounted.
pub const DATA_ERROR: &str = "/run/switchboard/data-error";
/// Why PID 1 holds xmppd stopped instead of restarting it (damaged store, missing binary);
/// absent otherwise. The console shows it and offers the recovery menu.
pub const XMPPD_HELD: &str = "/run/switchboard/xmppd-held";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Reboot,
    PowerOff,
    /// Stop xmppd and keep it stopped (recovery menu).
    RecoveryEnter,
    RecoveryLeave,
    /// Stored network settings changed: apply them.
    NetworkReload,
    /// Test hook: stop petting the watchdog.
    TestStopPetting,
    /// Test hook: SIGSTOP xmppd (its heartbeats stop).
    TestStopXmppd,
}

impl Request {
    const ALL: [Request; 7] = [
        Request::Reboot,
        Request::PowerOff,
        Request::RecoveryEnter,
        Request::RecoveryLeave,
        Request::NetworkReload,
        Request::TestStopPetting,
        Request::TestStopXmppd,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Request::Reboot => "reboot",
            Request::PowerOff => "poweroff",
            Request::RecoveryEnter => "recovery-enter",
            Request::RecoveryLeave => "recovery-leave",
            Request::NetworkReload => "network-reload",
            Request::TestStopPetting => "test-stop-petting",
            Request::TestStopXmppd => "test-stop-xmppd",
        }
    }

    pub fn parse(bytes: &[u8]) -> Option<Request> {
        let text = std::str::from_utf8(bytes).ok()?.trim();
        Request::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// Send `request` to PID 1's socket at [`SOCKET`].
pub fn send(request: Request) -> std::io::Result<()> {
    send_to(Path::new(SOCKET), request)
}

/// Send `request` to a control socket at `socket` (tests use their own).
pub fn send_to(socket: &Path, request: Request) -> std::io::Result<()> {
    let sender = UnixDatagram::unbound()?;
    sender.send_to(request.as_str().as_bytes(), socket).map(|_| ())
}

/// A/B upgrades (`upgrade <file>`, `upgrade rollback`): the one request that carries data (a
/// file name in the file area), so a type of its own beside [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeRequest {
    /// Verify this image, write the inactive slot, boot it once.
    Install(String),
    /// Boot the other slot once.
    Rollback,
}

impl UpgradeRequest {
    pub fn to_text(&self) -> String {
        match self {
            UpgradeRequest::Install(name) => format!("upgrade-install {name}"),
            UpgradeRequest::Rollback => "upgrade-rollback".into(),
        }
    }

    pub fn parse(bytes: &[u8]) -> Option<UpgradeRequest> {
        let text = std::str::from_utf8(bytes).ok()?.trim();
        if text == "upgrade-rollback" {
            return Some(UpgradeRequest::Rollback);
        }
        let name = text.strip_prefix("upgrade-install ")?;
        plain_file_name(name).then(|| UpgradeRequest::Install(name.to_string()))
    }
}

/// A file name inside the file area, nothing that leaves it; short enough for one datagram
/// of PID 1's 64-byte buffer.
pub fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 48
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

pub fn send_upgrade_to(socket: &Path, request: &UpgradeRequest) -> std::io::Result<()> {
    let sender = UnixDatagram::unbound()?;
    sender.send_to(request.to_text().as_bytes(), socket).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_requests_round_trip_and_names_cannot_leave_the_file_area() {
        for request in [
            UpgradeRequest::Install("switchboard-1.2.sbu".into()),
            UpgradeRequest::Rollback,
        ] {
            assert_eq!(UpgradeRequest::parse(request.to_text().as_bytes()), Some(request));
        }
        assert_eq!(
            UpgradeRequest::parse(b"upgrade-rollback\n"),
            Some(UpgradeRequest::Rollback)
        );
        for bad in [
            &b"upgrade-install ../x"[..],
            b"upgrade-install /etc/passwd",
            b"upgrade-install .hidden",
            b"upgrade-install ",
            b"upgrade-install a b",
            b"reboot",
            &[0xff, 0xfe],
        ] {
            assert_eq!(UpgradeRequest::parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(!plain_file_name(&"x".repeat(49)));
    }

    #[test]
    fn requests_round_trip_and_junk_is_refused() {
        for r in Request::ALL {
            assert_eq!(Request::parse(r.as_str().as_bytes()), Some(r));
        }
        assert_eq!(Request::parse(b"reboot\n"), Some(Request::Reboot));
        assert_eq!(Request::parse(b"rm -rf"), None);
        assert_eq!(Request::parse(&[0xff, 0xfe]), None);
    }

    #[test]
    fn a_request_arrives_as_its_word() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control");
        let init = UnixDatagram::bind(&path).unwrap();
        send_to(&path, Request::NetworkReload).unwrap();
        let mut buf = [0u8; 64];
        let n = init.recv(&mut buf).unwrap();
        assert_eq!(Request::parse(&buf[..n]), Some(Request::NetworkReload));
    }
}
