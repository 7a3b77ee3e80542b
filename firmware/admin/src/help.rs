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

/// Usage lines aligned in two columns.
pub(crate) fn help_text() -> String {
    let width = crate::usage().map(|usage| usage.syntax.len()).max().unwrap_or(0);
    crate::usage()
        .map(|usage| format!("{:<width$}  {}", usage.syntax, usage.summary))
        .collect::<Vec<_>>()
        .join("\n")
}
