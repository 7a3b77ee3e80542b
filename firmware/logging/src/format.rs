//! One log line: `2025-02-08 07:33:20.123Z INFO  sb_server::c2s: message`.

use log::Record;
use std::fmt::Write;
use time::OffsetDateTime;

/// Appended to a line cut at the length limit.
pub(crate) const TRUNCATED: &str = " [...]";

pub(crate) fn line(now: OffsetDateTime, record: &Record<'_>) -> String {
    let mut line = String::with_capacity(96);
    let _ = write!(
        line,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}Z {:<5} {}: ",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond(),
        record.level(),
        record.target()
    );
    let start = line.len();
    let _ = write!(line, "{}", record.args());
    neutralise_controls(&mut line, start);
    line
}

/// Messages quote what peers sent (JIDs, stream ids, error texts): a control character there
/// must not move the cursor, clear the operator's screen or fake a second line in `syslog`.
/// Newlines and tabs from our own multi-line messages are kept.
fn neutralise_controls(line: &mut String, from: usize) {
    let needs_work = line[from..].chars().any(|c| c.is_control() && c != '\n' && c != '\t');
    if !needs_work {
        return;
    }
    let message: String = line[from..]
        .chars()
        .flat_map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_unicode().collect::<Vec<char>>()
            } else {
                vec![c]
            }
        })
        .collect();
    line.truncate(from);
    line.push_str(&message);
}

/// At most `max` bytes, cut at a character boundary and marked.
pub(crate) fn truncate(line: &str, max: usize) -> &str {
    if line.len() <= max {
        return line;
    }
    let mut end = max.saturating_sub(TRUNCATED.len());
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

/// [`truncate`] with the mark, owned.
pub(crate) fn truncated(line: &str, max: usize) -> String {
    let cut = truncate(line, max);
    if cut.len() == line.len() {
        line.to_owned()
    } else {
        format!("{cut}{TRUNCATED}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Level;
    use time::macros::datetime;

    fn format(message: &str) -> String {
        line(
            datetime!(2025-02-08 07:33:20.123 UTC),
            &Record::builder()
                .level(Level::Warn)
                .target("sb_server::c2s")
                .args(format_args!("{message}"))
                .build(),
        )
    }

    #[test]
    fn a_line_has_timestamp_level_module_and_message() {
        assert_eq!(format("a b"), "2025-02-08 07:33:20.123Z WARN  sb_server::c2s: a b");
    }

    #[test]
    fn control_characters_from_peers_are_escaped() {
        assert_eq!(
            format("evil\u{1b}[2J\rjid\u{0}x\nsecond\tline"),
            "2025-02-08 07:33:20.123Z WARN  sb_server::c2s: evil\\u{1b}[2J\\u{d}jid\\u{0}x\nsecond\tline"
        );
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncated("short", 10), "short");
        let cut = truncated("ééééééééééé", 12);
        assert!(cut.len() <= 12, "{cut}");
        assert_eq!(cut, format!("ééé{TRUNCATED}"));
        assert_eq!(truncated("abcdefghijklmnop", 8), format!("ab{TRUNCATED}"));
    }
}
