//! `hostname [<name>]`: the name in the `<hostname>> ` prompt (front ends ask the daemon with
//! it); on the appliance, `hostname <name>` stores and sets it.

use crate::appliance::ApplianceHost;
use crate::command::{Args, ParseError, Usage};
use crate::{Admin, Family, Reply};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostnameCommand {
    Show,
    Set { name: String },
}

impl Family for HostnameCommand {
    const PREFIX: &'static [&'static str] = &["hostname"];
    const USAGE: &'static [Usage] = &[
        Usage {
            syntax: "hostname",
            summary: "show this node's name",
        },
        Usage {
            syntax: "hostname <name>",
            summary: "set the appliance's name (kept across reboots)",
        },
    ];

    fn parse(words: &[String]) -> Result<Self, ParseError> {
        let mut args = Args::new("hostname", words);
        let name = args.optional().map(str::to_owned);
        args.end()?;
        Ok(name.map_or(HostnameCommand::Show, |name| HostnameCommand::Set { name }))
    }

    fn apply(self, admin: &Admin) -> Reply {
        match self {
            HostnameCommand::Show => Reply::output(admin.hostname()),
            HostnameCommand::Set { name } => ApplianceHost::system().hostname_set(&name),
        }
    }
}
