//! `help`: one line per command.

use crate::command::{Args, ParseError, Usage};
use crate::{Admin, Family, Reply};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HelpCommand {
    All,
}

impl Family for HelpCommand {
    const PREFIX: &'static [&'static str] = &["help"];
    const USAGE: &'static [Usage] = &[Usage {
        syntax: "help",
        summary: "list the commands",
    }];

    fn parse(words: &[String]) -> Result<Self, ParseError> {
        Args::new("help", words).end()?;
        Ok(HelpCommand::All)
    }

    fn apply(self, _admin: &Admin) -> Reply {
        Reply::output(help_text())
    }
}

/// Syntaxes longer than this get their summary on the next line, so one long command (`pki
/// csr ...`) does not push every summary off an 80-column serial console.
const MAX_SYNTAX_COLUMN: usize = 36;

/// Usage lines aligned in two columns.
pub(crate) fn help_text() -> String {
    let width = crate::usage()
        .map(|usage| usage.syntax.len())
        .filter(|len| *len <= MAX_SYNTAX_COLUMN)
        .max()
        .unwrap_or(0);
    crate::usage()
        .map(|usage| {
            if usage.syntax.len() <= width {
                format!("{:<width$}  {}", usage.syntax, usage.summary)
            } else {
                format!("{}\n{:<width$}  {}", usage.syntax, "", usage.summary)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_syntaxes_put_their_summary_on_the_next_line() {
        let text = help_text();
        let lines: Vec<&str> = text.lines().collect();
        let csr = lines
            .iter()
            .position(|line| line.starts_with("pki csr <basename>"))
            .unwrap();
        assert!(!lines[csr].contains("make <basename>.key (ECDSA"), "{}", lines[csr]);
        assert!(
            lines[csr + 1]
                .trim_start()
                .starts_with("make <basename>.key (ECDSA P-256 unless key:rsa2048)")
        );
        let status = lines.iter().find(|line| line.starts_with("xmpp status")).unwrap();
        assert!(status.contains("  service state"), "{status}");
    }
}
