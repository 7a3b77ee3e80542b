//! The kernel command line: the `switchboard.*` options init acts on.

use heapless::String as FixedString;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmdline {
    /// `switchboard.recovery`: open the recovery menu, do not start xmppd.
    pub recovery: bool,
    /// `switchboard.recovery_window=<s>`: how long the console waits for a key at boot.
    pub recovery_window_s: u32,
    /// `switchboard.watchdog_timeout=<s>`: overrides the board's timeout (tests shorten it).
    pub watchdog_timeout_s: Option<u32>,
    /// `switchboard.debug`: copy every xmppd log line to the console, not only until ready.
    pub debug: bool,
    /// `switchboard.board=<path>`: board file (default /etc/switchboard/board.toml).
    pub board: Option<FixedString<128>>,
    /// `switchboard.console_idle=<s>`: a logged-in console session with no command for this
    /// long is logged out (tests shorten it).
    pub console_idle_s: u32,
}

/// An unattended serial console logged in as admin is an open door: 15 minutes, as the
/// usual network-device default.
pub const DEFAULT_CONSOLE_IDLE_S: u32 = 15 * 60;

impl Default for Cmdline {
    fn default() -> Self {
        Cmdline {
            recovery: false,
            recovery_window_s: 3,
            watchdog_timeout_s: None,
            debug: false,
            board: None,
            console_idle_s: DEFAULT_CONSOLE_IDLE_S,
        }
    }
}

/// Splits like the kernel does: whitespace separates, double quotes group.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    let mut chars = text.chars().peekable();
    std::iter::from_fn(move || {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        chars.peek()?;
        let mut word = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() && !quoted {
                break;
            }
            chars.next();
            if c == '"' {
                quoted = !quoted;
            } else {
                word.push(c);
            }
        }
        Some(word)
    })
}

pub fn parse(text: &str) -> Cmdline {
    let mut cmdline = Cmdline::default();
    for word in words(text) {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word.as_str(), None),
        };
        match (key, value) {
            ("switchboard.recovery", None | Some("1") | Some("yes")) => cmdline.recovery = true,
            ("switchboard.recovery_window", Some(v)) => {
                if let Ok(s) = v.parse::<u32>() {
                    cmdline.recovery_window_s = s.min(60);
                }
            }
            ("switchboard.watchdog_timeout", Some(v)) => {
                cmdline.watchdog_timeout_s = v.parse::<u32>().ok().filter(|s| (2..=600).contains(s))
            }
            ("switchboard.debug", None | Some("1")) => cmdline.debug = true,
            ("switchboard.board", Some(v)) => cmdline.board = FixedString::try_from(v).ok(),
            ("switchboard.console_idle", Some(v)) => {
                // Never off: at least a few seconds, at most a day.
                if let Ok(s) = v.parse::<u32>() {
                    cmdline.console_idle_s = s.clamp(5, 24 * 60 * 60);
                }
            }
            _ => {}
        }
    }
    cmdline
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_options_and_ignores_the_rest() {
        let c = parse(
            "console=ttyS0,115200 quiet switchboard.recovery switchboard.recovery_window=0 \
             switchboard.watchdog_timeout=10 switchboard.board=\"/etc/b x.toml\"\n",
        );
        assert!(c.recovery);
        assert_eq!(c.recovery_window_s, 0);
        assert_eq!(c.watchdog_timeout_s, Some(10));
        assert_eq!(c.board.as_deref(), Some("/etc/b x.toml"));
        assert!(!c.debug);
        assert_eq!(c.console_idle_s, DEFAULT_CONSOLE_IDLE_S);
        assert_eq!(parse("switchboard.console_idle=30").console_idle_s, 30);
        assert_eq!(parse("switchboard.console_idle=0").console_idle_s, 5);
    }

    #[test]
    fn bad_values_keep_safe_defaults() {
        let c = parse("switchboard.recovery_window=abc switchboard.watchdog_timeout=1 switchboard.recovery=0");
        assert_eq!(c, Cmdline::default());
        assert_eq!(parse("switchboard.recovery_window=999").recovery_window_s, 60);
    }

    #[test]
    fn words_split_on_whitespace_and_group_quotes() {
        let w: Vec<String> = words("  a  b=\"c d\" \"e\"f ").collect();
        assert_eq!(w, ["a", "b=c d", "ef"]);
        assert_eq!(words("").count(), 0);
    }
}
