//! Requests to PID 1 from its helpers (the console process), as one-word datagrams on a
//! unix socket in /run. Only root exists on the appliance; the socket is mode 0600 anyway.

use std::os::unix::net::UnixDatagram;

pub const SOCKET: &str = "/run/switchboard/control";
pub const HEALTH: &str = "/run/switchboard/health";
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
        [
            Request::Reboot,
            Request::PowerOff,
            Request::RecoveryEnter,
            Request::RecoveryLeave,
            Request::NetworkReload,
            Request::TestStopPetting,
            Request::TestStopXmppd,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }
}

pub fn send(request: Request) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    socket.send_to(request.as_str().as_bytes(), SOCKET).map(|_| ())
}

/// `key=value` lines of the health file.
pub fn read_health() -> Vec<(String, String)> {
    std::fs::read_to_string(HEALTH)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_junk_is_refused() {
        for r in [
            Request::Reboot,
            Request::PowerOff,
            Request::RecoveryEnter,
            Request::TestStopXmppd,
        ] {
            assert_eq!(Request::parse(r.as_str().as_bytes()), Some(r));
        }
        assert_eq!(Request::parse(b"reboot\n"), Some(Request::Reboot));
        assert_eq!(Request::parse(b"rm -rf"), None);
        assert_eq!(Request::parse(&[0xff, 0xfe]), None);
    }
}
