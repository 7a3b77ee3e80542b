//! The health file PID 1 writes (`/run/switchboard/health`): `key=value` lines, read by the
//! `health` command and the console. The keys are the contract.

use std::path::Path;

pub const WATCHDOG: &str = "watchdog";
pub const WATCHDOG_DEVICE: &str = "watchdog_device";
pub const WATCHDOG_TIMEOUT_S: &str = "watchdog_timeout_s";
pub const WATCHDOG_BOOT_STATUS: &str = "watchdog_boot_status";
pub const LAST_RESET: &str = "last_reset";
pub const XMPPD: &str = "xmppd";
pub const XMPPD_RESTARTS: &str = "xmppd_restarts";
pub const XMPPD_LAST_EXIT: &str = "xmppd_last_exit";
pub const READY: &str = "ready";
pub const BOOT_KERNEL_S: &str = "boot_kernel_s";
pub const DATA_ERROR: &str = "data_error";

/// The values of one health file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    values: Vec<(String, String)>,
}

impl Health {
    pub fn parse(text: &str) -> Health {
        let values = text
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        Health { values }
    }

    /// The file at `path`; empty when it is missing.
    pub fn read(path: &Path) -> Health {
        Health::parse(&std::fs::read_to_string(path).unwrap_or_default())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `key=value` lines; a newline inside a value would start a new key, so it becomes a space.
    pub fn render(pairs: &[(&str, String)]) -> String {
        pairs
            .iter()
            .map(|(key, value)| format!("{key}={}\n", value.replace('\n', " ")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_values_read_back_and_newlines_cannot_forge_keys() {
        let text = Health::render(&[
            (WATCHDOG, "petting".into()),
            (XMPPD_LAST_EXIT, "exit 1\nready=true".into()),
        ]);
        let health = Health::parse(&text);
        assert_eq!(health.get(WATCHDOG), Some("petting"));
        assert_eq!(health.get(XMPPD_LAST_EXIT), Some("exit 1 ready=true"));
        assert_eq!(health.get(READY), None);
    }
}
