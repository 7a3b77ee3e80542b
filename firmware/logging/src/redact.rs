//! Keeping secrets out of log lines.

use std::fmt;

/// What a redacted value prints as.
pub const REDACTED: &str = "<redacted>";

/// A value that prints as [`REDACTED`] in both `{}` and `{:?}`: wrap a secret that must appear in
/// a log statement's arguments (or in a struct that is logged whole) in it.
///
/// ```
/// use sb_logging::Redacted;
/// let secret = "kvgP1SRzWVabhiPVAb1";
/// assert_eq!(format!("secret {} / {:?}", Redacted(secret), Redacted(secret)), "secret <redacted> / <redacted>");
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Redacted<T>(pub T);

impl<T> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> Redacted<T> {
    /// The value itself, for where it is consumed (never a log line).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    #[allow(dead_code)]
    struct Component {
        name: &'static str,
        secret: Redacted<String>,
    }

    #[test]
    fn redacted_values_never_print() {
        let component = Component {
            name: "cb1",
            secret: Redacted("s3cr3t".to_owned()),
        };
        let text = format!("{component:?} {component:#?} {}", component.secret);
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("name: \"cb1\""));
        assert_eq!(component.secret.expose(), "s3cr3t");
        assert_eq!(format!("{:>20}", Redacted(1)), REDACTED);
    }
}
