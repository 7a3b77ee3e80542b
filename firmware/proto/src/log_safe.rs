//! Peer-supplied text in a log line: a newline or another control character from a peer (an
//! s2s `from`/`to`, a component's `to`, a stream id) must not start a forged second line in
//! the console or `syslog`, nor move the operator's cursor.

use std::fmt;

/// Displays `text` with every control character escaped (`\n`, `\r`, `\t`, `\u{1b}`...).
/// Use it wherever a log line quotes something a peer chose.
pub fn log_safe(text: &str) -> LogSafe<'_> {
    LogSafe(text)
}

/// See [`log_safe`].
#[derive(Clone, Copy, Debug)]
pub struct LogSafe<'a>(&'a str);

impl fmt::Display for LogSafe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.chars().any(char::is_control) {
            return f.write_str(self.0);
        }
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(log_safe("a.example").to_string(), "a.example");
        assert_eq!(
            log_safe("b.example\n2026-12-06 INFO forged\r\u{1b}[2J\tx").to_string(),
            "b.example\\n2026-12-06 INFO forged\\r\\u{1b}[2J\\tx"
        );
        assert_eq!(log_safe("müller.example").to_string(), "müller.example");
    }
}
