//! `hostname`: the name in the `<hostname>> ` prompt (front ends ask the daemon with it).

use crate::command::{Args, ParseError, Usage};
use crate::{Admin, Family, Reply};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostnameCommand {
    Show,
}

impl Family for HostnameCommand {
    const PREFIX: &'static [&'static str] = &["hostname"];
    const USAGE: &'static [Usage] = &[Usage {
        syntax: "hostname",
        summary: "show this node's name",
    }];

    fn parse(words: &[String]) -> Result<Self, ParseError> {
        Args::new("hostname", words).end()?;
        Ok(HostnameCommand::Show)
    }

    fn apply(self, admin: &Admin) -> Reply {
        match self {
            HostnameCommand::Show => Reply::output(admin.hostname()),
        }
    }
}
