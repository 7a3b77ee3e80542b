//! `user ...`: local accounts. Names are JID localparts, stored in their normalized form.

use crate::command::{Args, ParseError, Usage, unknown_subcommand};
use crate::{Admin, Family, Reply, Secret, SecretPrompt};
use sb_proto::Jid;
use sb_proto::sasl::UserCredentials;
use sb_store::{ConfigChange, StoreError, WriteError};
use serde::{Deserialize, Serialize};

const PASSWORD_PROMPT: SecretPrompt = SecretPrompt {
    prompt: "Enter password",
    confirm: Some("Confirm password"),
};

/// Stand-in domain for checking a localpart before the configured domain is known; the
/// localpart's normalization does not depend on the domain.
const ANY_DOMAIN: &str = "localhost";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserCommand {
    /// `user add <name>`; the password is asked by the front end.
    Add { name: String, password: Option<Secret> },
    /// `user del <name>`
    Del { name: String },
    /// `user list`
    List,
    /// `user passwd <name>`; the password is asked by the front end.
    Passwd { name: String, password: Option<Secret> },
}

impl Family for UserCommand {
    const PREFIX: &'static [&'static str] = &["user"];
    const USAGE: &'static [Usage] = &[
        Usage {
            syntax: "user add <name>",
            summary: "create an account (password asked twice)",
        },
        Usage {
            syntax: "user del <name>",
            summary: "delete an account and end its sessions",
        },
        Usage {
            syntax: "user list",
            summary: "list the accounts",
        },
        Usage {
            syntax: "user passwd <name>",
            summary: "change a password (asked twice) and end the account's sessions",
        },
    ];

    fn parse(words: &[String]) -> Result<Self, ParseError> {
        let rest = words.get(1..).unwrap_or_default();
        match words.first().map(String::as_str) {
            Some("add") => {
                let name = parse_name("user add", rest)?;
                Ok(UserCommand::Add { name, password: None })
            }
            Some("del") => Ok(UserCommand::Del {
                name: parse_name("user del", rest)?,
            }),
            Some("list") => {
                Args::new("user list", rest).end()?;
                Ok(UserCommand::List)
            }
            Some("passwd") => {
                let name = parse_name("user passwd", rest)?;
                Ok(UserCommand::Passwd { name, password: None })
            }
            _ => Err(unknown_subcommand(Self::PREFIX, words)),
        }
    }

    fn apply(self, admin: &Admin) -> Reply {
        match self {
            UserCommand::Add { name, password } => add(admin, &name, password),
            UserCommand::Del { name } => delete(admin, &name),
            UserCommand::List => list(admin),
            UserCommand::Passwd { name, password } => passwd(admin, &name, password),
        }
    }

    fn secret_prompt(&self) -> Option<SecretPrompt> {
        match self {
            UserCommand::Add { password: None, .. } | UserCommand::Passwd { password: None, .. } => {
                Some(PASSWORD_PROMPT)
            }
            _ => None,
        }
    }

    fn with_secret(self, secret: Secret) -> Self {
        match self {
            UserCommand::Add { name, .. } => UserCommand::Add {
                name,
                password: Some(secret),
            },
            UserCommand::Passwd { name, .. } => UserCommand::Passwd {
                name,
                password: Some(secret),
            },
            other => other,
        }
    }
}

fn parse_name(command: &'static str, words: &[String]) -> Result<String, ParseError> {
    let mut args = Args::new(command, words);
    let name = args.required("<name>")?;
    let normalized = normalize_localpart(name, ANY_DOMAIN).map_err(|reason| args.invalid(reason))?;
    args.end()?;
    Ok(normalized)
}

/// The stored form of an account name, or why it cannot be one.
fn normalize_localpart(name: &str, domain: &str) -> Result<String, String> {
    match Jid::from_parts(Some(name), domain, None) {
        Ok(jid) => jid
            .node()
            .map(str::to_owned)
            .ok_or_else(|| format!("invalid user name '{name}'")),
        Err(err) => Err(format!("invalid user name '{name}': {err}")),
    }
}

/// Re-validate against the configured domain: commands may arrive as JSON, not through parse.
fn account_name(admin: &Admin, command: &str, name: &str) -> Result<String, Reply> {
    let domain = match admin.store().xmpp_config() {
        Ok(config) if config.domain.is_empty() => ANY_DOMAIN.to_owned(),
        Ok(config) => config.domain,
        Err(err) => return Err(Reply::failure(format!("cannot read the configuration: {err}"))),
    };
    normalize_localpart(name, &domain).map_err(|reason| Reply::failure(format!("{command}: {reason}")))
}

/// Shorter passwords fall to a guessing run even with the per-address failure limit.
const MIN_PASSWORD_CHARS: usize = 8;

fn credentials(command: &str, password: Option<Secret>) -> Result<UserCredentials, Reply> {
    let Some(password) = password else {
        return Err(Reply::failure(format!("{command}: no password given")));
    };
    if password.expose().is_empty() {
        return Err(Reply::failure(format!("{command}: empty password")));
    }
    if password.expose().chars().count() < MIN_PASSWORD_CHARS {
        return Err(Reply::failure(format!(
            "{command}: the password must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    UserCredentials::new(password.expose()).map_err(|err| Reply::failure(format!("{command}: {err}")))
}

fn add(admin: &Admin, name: &str, password: Option<Secret>) -> Reply {
    let name = match account_name(admin, "user add", name) {
        Ok(name) => name,
        Err(reply) => return reply,
    };
    let credentials = match credentials("user add", password) {
        Ok(credentials) => credentials,
        Err(reply) => return reply,
    };
    let change = ConfigChange::AddUser {
        name: name.clone(),
        credentials,
    };
    match admin.write(change) {
        Ok(_) => Reply::success(),
        Err(WriteError::Store(StoreError::UserExists(_))) => Reply::failure(format!("user '{name}' already exists")),
        Err(err) => crate::write_failure("user add", err),
    }
}

fn delete(admin: &Admin, name: &str) -> Reply {
    let name = match account_name(admin, "user del", name) {
        Ok(name) => name,
        Err(reply) => return reply,
    };
    match admin.write(ConfigChange::DeleteUser { name: name.clone() }) {
        Ok(_) => Reply::success(),
        Err(WriteError::Store(StoreError::UserNotFound(_))) => Reply::failure(format!("no such user '{name}'")),
        Err(err) => crate::write_failure("user del", err),
    }
}

fn list(admin: &Admin) -> Reply {
    match admin.store().list_users() {
        Ok(mut names) => {
            names.sort();
            if names.is_empty() {
                Reply::output("(no users)")
            } else {
                Reply::output(names.join("\n"))
            }
        }
        Err(err) => Reply::failure(format!("user list: {err}")),
    }
}

fn passwd(admin: &Admin, name: &str, password: Option<Secret>) -> Reply {
    let name = match account_name(admin, "user passwd", name) {
        Ok(name) => name,
        Err(reply) => return reply,
    };
    let credentials = match credentials("user passwd", password) {
        Ok(credentials) => credentials,
        Err(reply) => return reply,
    };
    let change = ConfigChange::SetCredentials {
        name: name.clone(),
        credentials,
    };
    match admin.write(change) {
        Ok(_) => Reply::success(),
        Err(WriteError::Store(StoreError::UserNotFound(_))) => Reply::failure(format!("no such user '{name}'")),
        Err(err) => crate::write_failure("user passwd", err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{admin_with_node, run};
    use crate::{Command, parse};

    fn failure(line: &str) -> String {
        Reply::from(parse(line).expect_err(line)).text
    }

    fn with_password(line: &str, password: &str) -> Command {
        parse(line).unwrap().with_secret(Secret::new(password))
    }

    #[test]
    fn parses_every_user_command() {
        assert_eq!(
            parse("user add Alice"),
            Ok(Command::User(UserCommand::Add {
                name: "alice".to_owned(),
                password: None
            }))
        );
        assert_eq!(
            parse("user del bob"),
            Ok(Command::User(UserCommand::Del { name: "bob".to_owned() }))
        );
        assert_eq!(parse("user list"), Ok(Command::User(UserCommand::List)));
        assert_eq!(
            parse("user passwd bob"),
            Ok(Command::User(UserCommand::Passwd {
                name: "bob".to_owned(),
                password: None
            }))
        );
    }

    #[test]
    fn user_parse_errors_name_the_problem() {
        assert_eq!(failure("user"), "FAILURE: unknown command 'user'");
        assert_eq!(failure("user remove bob"), "FAILURE: unknown command 'user remove'");
        assert_eq!(failure("user add"), "FAILURE: user add: missing <name>");
        assert_eq!(failure("user del"), "FAILURE: user del: missing <name>");
        assert_eq!(failure("user passwd"), "FAILURE: user passwd: missing <name>");
        assert_eq!(failure("user add a b"), "FAILURE: user add: unexpected argument 'b'");
        assert_eq!(
            failure("user list all"),
            "FAILURE: user list: unexpected argument 'all'"
        );
        assert!(
            failure("user add a@b").starts_with("FAILURE: user add: invalid user name 'a@b'"),
            "{}",
            failure("user add a@b")
        );
        assert!(failure("user add \"a b\"").starts_with("FAILURE: user add: invalid user name 'a b'"));
        assert!(failure("user del a/b").starts_with("FAILURE: user del: invalid user name 'a/b'"));
    }

    #[test]
    fn accounts_are_added_listed_changed_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, node) = admin_with_node(dir.path());
        assert_eq!(run(&admin, "user list").text, "(no users)");
        assert_eq!(
            admin.execute(with_password("user add bob", "password-1")).text,
            "SUCCESS"
        );
        assert_eq!(
            admin.execute(with_password("user add Alice", "password-2")).text,
            "SUCCESS"
        );
        assert_eq!(
            admin.execute(with_password("user add alice", "password-3")).text,
            "FAILURE: user 'alice' already exists"
        );
        let listing = run(&admin, "user list");
        assert!(listing.ok);
        assert_eq!(listing.text, "alice\nbob");
        assert_eq!(node.users_changed(), Vec::<String>::new());

        assert_eq!(
            admin.execute(with_password("user passwd bob", "new-password")).text,
            "SUCCESS"
        );
        assert_eq!(
            admin.execute(with_password("user passwd carol", "new-password")).text,
            "FAILURE: no such user 'carol'"
        );
        assert_eq!(run(&admin, "user del ALICE").text, "SUCCESS");
        assert_eq!(run(&admin, "user del alice").text, "FAILURE: no such user 'alice'");
        assert_eq!(run(&admin, "user list").text, "bob");
        assert_eq!(node.users_changed(), vec!["bob".to_owned(), "alice".to_owned()]);
        assert_eq!(node.config_changes(), 0);
    }

    #[test]
    fn a_password_is_required_and_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, _node) = admin_with_node(dir.path());
        assert_eq!(run(&admin, "user add bob").text, "FAILURE: user add: no password given");
        assert_eq!(
            admin.execute(with_password("user add bob", "")).text,
            "FAILURE: user add: empty password"
        );
        assert_eq!(run(&admin, "user list").text, "(no users)");
        assert_eq!(
            admin.execute(with_password("user add bob", "1234567")).text,
            "FAILURE: user add: the password must be at least 8 characters"
        );
        assert_eq!(run(&admin, "user list").text, "(no users)");
        assert_eq!(admin.execute(with_password("user add bob", "12345678")).text, "SUCCESS");
        assert_eq!(
            admin.execute(with_password("user passwd bob", "short")).text,
            "FAILURE: user passwd: the password must be at least 8 characters"
        );
        assert_eq!(
            run(&admin, "user passwd bob").text,
            "FAILURE: user passwd: no password given"
        );
        // A name that bypassed parse (JSON over the socket) is still checked.
        let reply = admin.execute(Command::User(UserCommand::Add {
            name: "a@b".to_owned(),
            password: Some(Secret::new("long-enough")),
        }));
        assert!(
            reply.text.starts_with("FAILURE: user add: invalid user name 'a@b'"),
            "{}",
            reply.text
        );
    }
}
