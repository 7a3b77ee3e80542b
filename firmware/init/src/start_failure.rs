//! Telling xmppd failures that will pass from ones that will not (issue 13): restarting a
//! daemon whose store is damaged, whose configuration is invalid or whose binary is missing
//! only runs the backoff into "give up", and giving up stops petting the watchdog, which
//! reboots the box into the same state for ever. Those are held instead: xmppd stays stopped,
//! the watchdog is petted, and the console and `health` say why and send the operator to the
//! recovery menu.

use std::fmt;

/// xmppd's exit codes for deterministic start failures (sysexits values), as
/// firmware/xmppd/src/startup.rs defines them.
pub const EXIT_USAGE: i32 = 64;
pub const EXIT_STORE_DAMAGED: i32 = 65;
pub const EXIT_CONFIG_INVALID: i32 = 78;

/// Why xmppd is held stopped rather than restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    StoreDamaged(String),
    ConfigInvalid(String),
    BadArguments(String),
    BinaryUnusable(String),
}

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // An older slot meeting a store a newer slot migrated: not damage, and the way
            // out is the newer firmware, not a restore.
            Held::StoreDamaged(why) if why.contains("newer Switchboard") => {
                write!(f, "store written by newer firmware (intact, not opened): {why}")
            }
            Held::StoreDamaged(why) => write!(f, "store damaged: {why}"),
            Held::ConfigInvalid(why) => write!(f, "configuration invalid: {why}"),
            Held::BadArguments(why) => write!(f, "xmppd refused its arguments: {why}"),
            Held::BinaryUnusable(why) => write!(f, "xmppd binary unusable: {why}"),
        }
    }
}

/// xmppd's last stderr line is `xmppd: <reason>`; the prefix is noise on the console.
fn reason(last_line: &str) -> String {
    let line = last_line.trim();
    let line = line.strip_prefix("xmppd: ").unwrap_or(line);
    if line.is_empty() {
        "no reason given".into()
    } else {
        line.chars().filter(|c| !c.is_control()).take(200).collect()
    }
}

/// What to do after xmppd exited with `code` (None when a signal ended it) and last wrote
/// `last_line`: `Some` holds it, `None` leaves it to the restart backoff.
pub fn classify_exit(code: Option<i32>, last_line: &str) -> Option<Held> {
    match code? {
        EXIT_STORE_DAMAGED => Some(Held::StoreDamaged(reason(last_line))),
        EXIT_CONFIG_INVALID => Some(Held::ConfigInvalid(reason(last_line))),
        EXIT_USAGE => Some(Held::BadArguments(reason(last_line))),
        _ => None,
    }
}

/// A failed spawn: a missing or non-executable binary stays so until someone installs one
/// (a new image), anything else (no memory, too many processes) may pass.
pub fn classify_spawn_error(error: &std::io::Error) -> Option<Held> {
    match error.raw_os_error() {
        Some(libc::ENOENT | libc::EACCES | libc::ENOEXEC | libc::ENOTDIR | libc::ELOOP) => {
            Some(Held::BinaryUnusable(error.to_string()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_exit_codes_hold_with_the_reason_and_the_rest_restart() {
        assert_eq!(
            classify_exit(Some(65), "xmppd: store: record config/service is corrupt: EOF\n"),
            Some(Held::StoreDamaged(
                "store: record config/service is corrupt: EOF".into()
            ))
        );
        assert_eq!(
            classify_exit(Some(78), "xmppd: invalid domain 'a..b'").map(|h| h.to_string()),
            Some("configuration invalid: invalid domain 'a..b'".into())
        );
        assert!(matches!(classify_exit(Some(64), ""), Some(Held::BadArguments(r)) if r == "no reason given"));
        // A crash, a panic (101), a plain failure, a kill: the backoff decides.
        for code in [Some(1), Some(101), Some(0), None] {
            assert_eq!(classify_exit(code, "xmppd: store: x"), None, "{code:?}");
        }
    }

    #[test]
    fn a_missing_binary_holds_but_a_full_process_table_does_not() {
        let missing = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert!(matches!(classify_spawn_error(&missing), Some(Held::BinaryUnusable(_))));
        let busy = std::io::Error::from_raw_os_error(libc::EAGAIN);
        assert_eq!(classify_spawn_error(&busy), None);
    }

    #[test]
    fn reasons_are_one_clean_line() {
        let held = classify_exit(Some(65), "xmppd: bad\u{1b}[2J record\r").unwrap();
        assert_eq!(held.to_string(), "store damaged: bad[2J record");
    }

    #[test]
    fn a_store_from_newer_firmware_is_not_called_damaged() {
        let held = classify_exit(
            Some(EXIT_STORE_DAMAGED),
            "xmppd: store: schema version 4 was written by a newer Switchboard (this one supports up to 3)",
        )
        .unwrap();
        let text = held.to_string();
        assert!(
            text.starts_with("store written by newer firmware (intact, not opened): store: schema version 4"),
            "{text}"
        );
        let damaged = classify_exit(Some(EXIT_STORE_DAMAGED), "xmppd: store: record x is corrupt").unwrap();
        assert!(damaged.to_string().starts_with("store damaged: "));
    }
}
