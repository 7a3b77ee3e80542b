//! `xmpp callbridge ...`: the Call Bridges (XEP-0114 external components) allowed to connect,
//! each with its shared secret, as CMS administrators know the commands; and where they
//! connect (listener.rs).

mod listener;

pub use listener::{listener_summary, port_conflict};

use crate::command::{Args, ParseError, Usage, unknown_subcommand};
use crate::{Admin, Family, Reply, Secret, SecretPrompt};
use ring::rand::{SecureRandom, SystemRandom};
use sb_store::{CallBridge, ConfigChange, StoreError, WriteError};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

const SECRET_PROMPT: SecretPrompt = SecretPrompt {
    prompt: "Enter callbridge secret",
    confirm: None,
};

/// Characters of a generated secret: letters and digits, as CMS generates them, so the secret
/// can be typed on a Call Bridge's console and needs no XML escaping.
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// 24 characters of 62: log2(62) × 24 ≈ 142.9 bits, above the 128 required.
pub const GENERATED_SECRET_CHARS: usize = 24;

/// A shorter typed secret can be guessed over the component port; the dialback secret has
/// the same minimum.
const MIN_SECRET_CHARS: usize = 16;

/// A typed secret longer than this is a paste accident, not a secret.
const MAX_SECRET_BYTES: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbridgeCommand {
    /// `xmpp callbridge add <name>`: the secret is generated.
    Add { name: String },
    /// `xmpp callbridge add-secret <name>`: the secret is asked by the front end.
    AddSecret { name: String, secret: Option<Secret> },
    /// `xmpp callbridge del <name>`
    Del { name: String },
    /// `xmpp callbridge list`
    List,
    /// `xmpp callbridge port <port>|off`: 0 is off.
    Port { port: u16 },
    /// `xmpp callbridge plain on|off`
    Plain { on: bool },
}

impl Family for CallbridgeCommand {
    const PREFIX: &'static [&'static str] = &["xmpp", "callbridge"];
    const USAGE: &'static [Usage] = &[
        Usage {
            syntax: "xmpp callbridge add <name>",
            summary: "authorise a Call Bridge component <name>.<domain>; generates and prints its secret",
        },
        Usage {
            syntax: "xmpp callbridge add-secret <name>",
            summary: "the same with a secret typed at the prompt (not echoed)",
        },
        Usage {
            syntax: "xmpp callbridge del <name>",
            summary: "remove a Call Bridge (its connection ends)",
        },
        Usage {
            syntax: "xmpp callbridge list",
            summary: "list the Call Bridges with their domain and secret",
        },
        Usage {
            syntax: "xmpp callbridge port <port>|off",
            summary: "port Call Bridges connect to on every listen address (default 5223; not a client port); \
                      off closes it",
        },
        Usage {
            syntax: "xmpp callbridge plain on|off",
            summary: "plain TCP instead of TLS for Call Bridges, on loopback listen addresses only (a bridge on \
                      the same host); other addresses keep TLS",
        },
    ];

    fn parse(words: &[String]) -> Result<Self, ParseError> {
        let rest = words.get(1..).unwrap_or_default();
        match words.first().map(String::as_str) {
            Some("add") => Ok(CallbridgeCommand::Add {
                name: parse_name("xmpp callbridge add", rest)?,
            }),
            Some("add-secret") => Ok(CallbridgeCommand::AddSecret {
                name: parse_name("xmpp callbridge add-secret", rest)?,
                secret: None,
            }),
            Some("del") => Ok(CallbridgeCommand::Del {
                name: parse_name("xmpp callbridge del", rest)?,
            }),
            Some("list") => {
                Args::new("xmpp callbridge list", rest).end()?;
                Ok(CallbridgeCommand::List)
            }
            Some("port") => Ok(CallbridgeCommand::Port {
                port: listener::parse_port(rest)?,
            }),
            Some("plain") => Ok(CallbridgeCommand::Plain {
                on: listener::parse_plain(rest)?,
            }),
            _ => Err(unknown_subcommand(Self::PREFIX, words)),
        }
    }

    fn apply(self, admin: &Admin) -> Reply {
        match self {
            CallbridgeCommand::Add { name } => add(admin, &name),
            CallbridgeCommand::AddSecret { name, secret } => add_secret(admin, &name, secret),
            CallbridgeCommand::Del { name } => delete(admin, &name),
            CallbridgeCommand::List => list(admin),
            CallbridgeCommand::Port { port } => listener::set_port(admin, port),
            CallbridgeCommand::Plain { on } => listener::set_plain(admin, on),
        }
    }

    fn secret_prompt(&self) -> Option<SecretPrompt> {
        match self {
            CallbridgeCommand::AddSecret { secret: None, .. } => Some(SECRET_PROMPT),
            _ => None,
        }
    }

    fn with_secret(self, secret: Secret) -> Self {
        match self {
            CallbridgeCommand::AddSecret { name, .. } => CallbridgeCommand::AddSecret {
                name,
                secret: Some(secret),
            },
            other => other,
        }
    }
}

fn parse_name(command: &'static str, words: &[String]) -> Result<String, ParseError> {
    let mut args = Args::new(command, words);
    let name = normalize_name(args.required("<name>")?).map_err(|reason| args.invalid(reason))?;
    args.end()?;
    Ok(name)
}

/// The stored form of a bridge name: a DNS label in lower case, because the component's
/// address is `<name>.<domain>` and domains compare case-insensitively.
pub fn normalize_name(name: &str) -> Result<String, String> {
    let label_ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if label_ok {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(format!(
            "invalid callbridge name '{name}': expected a DNS label (letters, digits and inner '-', at most 63 \
             characters), the component's address being <name>.<domain>"
        ))
    }
}

/// A fresh secret from the system's CSPRNG, uniform over [`SECRET_ALPHABET`].
pub fn generate_secret() -> Result<Secret, String> {
    let rng = SystemRandom::new();
    // The largest multiple of the alphabet's size that fits a byte: bytes above it are
    // rejected so that every character is equally likely.
    let limit = 256 - 256 % SECRET_ALPHABET.len();
    let mut secret = String::with_capacity(GENERATED_SECRET_CHARS);
    let mut buffer = [0u8; 64];
    while secret.len() < GENERATED_SECRET_CHARS {
        rng.fill(&mut buffer)
            .map_err(|_| "no system randomness available".to_owned())?;
        for byte in buffer.iter().map(|b| usize::from(*b)).filter(|b| *b < limit) {
            if secret.len() == GENERATED_SECRET_CHARS {
                break;
            }
            secret.push(char::from(SECRET_ALPHABET[byte % SECRET_ALPHABET.len()]));
        }
    }
    Ok(Secret::new(secret))
}

/// A typed secret the component listener can use, or why not.
fn check_typed_secret(secret: &Secret) -> Result<(), &'static str> {
    let text = secret.expose();
    if text.is_empty() {
        Err("empty secret")
    } else if text.chars().count() < MIN_SECRET_CHARS {
        Err("the secret must be at least 16 characters")
    } else if text.len() > MAX_SECRET_BYTES {
        Err("secret longer than 1024 bytes")
    } else if text.chars().any(char::is_control) {
        Err("the secret contains control characters")
    } else {
        Ok(())
    }
}

/// Re-validate: commands may arrive as JSON, not through parse.
fn checked_name(command: &str, name: &str) -> Result<String, Reply> {
    normalize_name(name).map_err(|reason| Reply::failure(format!("{command}: {reason}")))
}

fn domain(admin: &Admin) -> Result<String, Reply> {
    match admin.store().xmpp_config() {
        Ok(config) => Ok(config.domain),
        Err(err) => Err(Reply::failure(format!("cannot read the configuration: {err}"))),
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

fn add(admin: &Admin, name: &str) -> Reply {
    let result = checked_name("xmpp callbridge add", name).and_then(|name| {
        let secret = generate_secret().map_err(|e| Reply::failure(format!("xmpp callbridge add: {e}")))?;
        Ok((name, secret))
    });
    let (name, secret) = match result {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let domain = match domain(admin) {
        Ok(domain) => domain,
        Err(reply) => return reply,
    };
    let bridge = CallBridge {
        name,
        secret,
        created_unix: now_unix(),
    };
    match admin.write(ConfigChange::AddCallBridge(bridge.clone())) {
        Ok(_) => {
            log::info!("callbridge {} added with a generated secret", bridge.name);
            Reply::output(format!("{}\nSUCCESS", render_bridge(&bridge, &domain)))
        }
        Err(err) => store_failure("xmpp callbridge add", err),
    }
}

fn add_secret(admin: &Admin, name: &str, secret: Option<Secret>) -> Reply {
    let name = match checked_name("xmpp callbridge add-secret", name) {
        Ok(name) => name,
        Err(reply) => return reply,
    };
    let Some(secret) = secret else {
        return Reply::failure("xmpp callbridge add-secret: no secret given");
    };
    if let Err(reason) = check_typed_secret(&secret) {
        return Reply::failure(format!("xmpp callbridge add-secret: {reason}"));
    }
    let bridge = CallBridge {
        name,
        secret,
        created_unix: now_unix(),
    };
    match admin.write(ConfigChange::AddCallBridge(bridge.clone())) {
        Ok(_) => {
            log::info!("callbridge {} added with a typed secret", bridge.name);
            Reply::success()
        }
        Err(WriteError::Store(StoreError::CallBridgeExists(name))) => {
            // On CMS the secret is typed again on every node; here configuration is meant to
            // be shared across a cluster (not replicated yet), so an operator following that
            // procedure will find the bridge there already. Typing the
            // same secret confirms it; a different one must not silently re-key a bridge.
            match admin.store().callbridge_secret(&name) {
                Ok(Some(stored))
                    if sb_proto::sasl::constant_time_eq(
                        stored.expose().as_bytes(),
                        bridge.secret.expose().as_bytes(),
                    ) =>
                {
                    Reply::success()
                }
                Ok(_) => Reply::failure(format!(
                    "callbridge '{name}' already exists with a different secret (xmpp callbridge del {name} first)"
                )),
                Err(err) => store_failure("xmpp callbridge add-secret", err),
            }
        }
        Err(err) => store_failure("xmpp callbridge add-secret", err),
    }
}

fn delete(admin: &Admin, name: &str) -> Reply {
    let name = match checked_name("xmpp callbridge del", name) {
        Ok(name) => name,
        Err(reply) => return reply,
    };
    match admin.write(ConfigChange::DeleteCallBridge { name: name.clone() }) {
        Ok(_) => {
            log::info!("callbridge {name} deleted");
            Reply::success()
        }
        Err(err) => store_failure("xmpp callbridge del", err),
    }
}

fn list(admin: &Admin) -> Reply {
    let domain = match domain(admin) {
        Ok(domain) => domain,
        Err(reply) => return reply,
    };
    match admin.store().list_callbridges() {
        Ok(bridges) => Reply::output(render_list(&bridges, &domain)),
        Err(err) => store_failure("xmpp callbridge list", err),
    }
}

fn store_failure(command: &str, err: impl Into<WriteError>) -> Reply {
    match err.into() {
        WriteError::Store(err @ (StoreError::CallBridgeExists(_) | StoreError::CallBridgeNotFound(_))) => {
            Reply::failure(err)
        }
        other => Reply::failure(format!("{command}: {other}")),
    }
}

/// One bridge in CMS's `xmpp callbridge list` format.
fn render_bridge(bridge: &CallBridge, domain: &str) -> String {
    let domain = if domain.is_empty() { "(none)" } else { domain };
    format!(
        "***\nCallbridge : {}\nDomain     : {domain}\nSecret     : {}",
        bridge.name,
        bridge.secret.expose()
    )
}

/// `xmpp callbridge list`: every bridge, sorted by name.
pub fn render_list(bridges: &[CallBridge], domain: &str) -> String {
    if bridges.is_empty() {
        return "(no callbridges)".to_owned();
    }
    let mut sorted: Vec<&CallBridge> = bridges.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    sorted
        .iter()
        .map(|bridge| render_bridge(bridge, domain))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{admin, admin_with_node, run};
    use crate::{Command, parse};

    fn failure(line: &str) -> String {
        Reply::from(parse(line).expect_err(line)).text
    }

    fn with_secret(line: &str, secret: &str) -> Command {
        parse(line).unwrap().with_secret(Secret::new(secret))
    }

    fn bridge(name: &str, secret: &str) -> CallBridge {
        CallBridge {
            name: name.to_owned(),
            secret: Secret::new(secret),
            created_unix: 0,
        }
    }

    #[test]
    fn parses_every_callbridge_command() {
        assert_eq!(
            parse("xmpp callbridge add CB1"),
            Ok(Command::Callbridge(CallbridgeCommand::Add { name: "cb1".to_owned() }))
        );
        let add_secret = parse("xmpp callbridge add-secret cb-2").unwrap();
        assert_eq!(
            add_secret,
            Command::Callbridge(CallbridgeCommand::AddSecret {
                name: "cb-2".to_owned(),
                secret: None
            })
        );
        assert_eq!(add_secret.secret_prompt(), Some("Enter callbridge secret"));
        assert_eq!(add_secret.secret_confirm_prompt(), None);
        let filled = add_secret.with_secret(Secret::new("s3cr3t"));
        assert_eq!(filled.secret_prompt(), None);
        assert!(!format!("{filled:?}").contains("s3cr3t"));
        assert_eq!(
            parse("xmpp callbridge del cb1"),
            Ok(Command::Callbridge(CallbridgeCommand::Del { name: "cb1".to_owned() }))
        );
        assert_eq!(
            parse("xmpp callbridge list"),
            Ok(Command::Callbridge(CallbridgeCommand::List))
        );
        assert_eq!(parse("xmpp callbridge add cb1").unwrap().secret_prompt(), None);
        // The longer prefix wins, and plain `xmpp` commands are untouched.
        assert_eq!(parse("xmpp status"), Ok(Command::Xmpp(crate::XmppCommand::Status)));
    }

    #[test]
    fn callbridge_parse_errors_name_the_problem() {
        assert_eq!(failure("xmpp callbridge"), "FAILURE: unknown command 'xmpp callbridge'");
        assert_eq!(
            failure("xmpp callbridge remove cb1"),
            "FAILURE: unknown command 'xmpp callbridge remove'"
        );
        assert_eq!(
            failure("xmpp callbridge add"),
            "FAILURE: xmpp callbridge add: missing <name>"
        );
        assert_eq!(
            failure("xmpp callbridge add-secret"),
            "FAILURE: xmpp callbridge add-secret: missing <name>"
        );
        assert_eq!(
            failure("xmpp callbridge del"),
            "FAILURE: xmpp callbridge del: missing <name>"
        );
        assert_eq!(
            failure("xmpp callbridge add cb1 cb2"),
            "FAILURE: xmpp callbridge add: unexpected argument 'cb2'"
        );
        assert_eq!(
            failure("xmpp callbridge list all"),
            "FAILURE: xmpp callbridge list: unexpected argument 'all'"
        );
        for bad in ["cb.1", "-cb", "cb-", "cb_1", "\"c b\"", "é", &"a".repeat(64)] {
            let text = failure(&format!("xmpp callbridge add {bad}"));
            assert!(
                text.starts_with("FAILURE: xmpp callbridge add: invalid callbridge name '"),
                "{bad}: {text}"
            );
            assert!(text.contains("expected a DNS label"), "{text}");
        }
        assert!(parse(&format!("xmpp callbridge add {}", "a".repeat(63))).is_ok());
    }

    #[test]
    fn listener_settings_parse_and_refuse_bad_values() {
        let port = |line: &str| {
            parse(line).map(|command| match command {
                Command::Callbridge(CallbridgeCommand::Port { port }) => port,
                other => panic!("{line}: {other:?}"),
            })
        };
        assert_eq!(port("xmpp callbridge port 15223"), Ok(15223));
        assert_eq!(port("xmpp callbridge port 1"), Ok(1));
        assert_eq!(port("xmpp callbridge port 65535"), Ok(65535));
        assert_eq!(port("xmpp callbridge port off"), Ok(0));
        assert_eq!(
            parse("xmpp callbridge plain on"),
            Ok(Command::Callbridge(CallbridgeCommand::Plain { on: true }))
        );
        assert_eq!(
            parse("xmpp callbridge plain off"),
            Ok(Command::Callbridge(CallbridgeCommand::Plain { on: false }))
        );
        for bad in ["0", "65536", "-1", "5223x", "OFF", "\"\""] {
            assert_eq!(
                failure(&format!("xmpp callbridge port {bad}")),
                format!(
                    "FAILURE: xmpp callbridge port: invalid port '{}': expected 1-65535 or off",
                    bad.trim_matches('"')
                )
            );
        }
        assert_eq!(
            failure("xmpp callbridge port"),
            "FAILURE: xmpp callbridge port: missing <port>|off"
        );
        assert_eq!(
            failure("xmpp callbridge port 5223 5224"),
            "FAILURE: xmpp callbridge port: unexpected argument '5224'"
        );
        assert_eq!(
            failure("xmpp callbridge plain yes"),
            "FAILURE: xmpp callbridge plain: expected on or off, not 'yes'"
        );
        assert_eq!(
            failure("xmpp callbridge plain"),
            "FAILURE: xmpp callbridge plain: missing on|off"
        );
        assert_eq!(
            failure("xmpp callbridge plain on off"),
            "FAILURE: xmpp callbridge plain: unexpected argument 'off'"
        );
    }

    #[test]
    fn generated_secrets_are_long_alphanumeric_and_distinct() {
        let secrets: Vec<String> = (0..50)
            .map(|_| generate_secret().unwrap().expose().to_owned())
            .collect();
        for secret in &secrets {
            assert_eq!(secret.len(), GENERATED_SECRET_CHARS);
            assert!(secret.bytes().all(|b| SECRET_ALPHABET.contains(&b)), "{secret}");
        }
        let mut unique = secrets.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), secrets.len());
        // At least 128 bits.
        assert!((GENERATED_SECRET_CHARS as f64) * (SECRET_ALPHABET.len() as f64).log2() >= 128.0);
        // Every character of the alphabet turns up: the sampling is not stuck on a subset.
        let all: String = secrets.concat();
        assert!(SECRET_ALPHABET.iter().all(|c| all.as_bytes().contains(c)));
    }

    #[test]
    fn list_prints_the_cms_format() {
        assert_eq!(render_list(&[], "tptac9.com"), "(no callbridges)");
        assert_eq!(
            render_list(
                &[
                    bridge("cb2", "Zt0r9aQmXe4LhW2vN8kPbC1d"),
                    bridge("cb1", "kvgP1SRzWVabhiPVAb1")
                ],
                "tptac9.com"
            ),
            "\
***
Callbridge : cb1
Domain     : tptac9.com
Secret     : kvgP1SRzWVabhiPVAb1
***
Callbridge : cb2
Domain     : tptac9.com
Secret     : Zt0r9aQmXe4LhW2vN8kPbC1d"
        );
        assert_eq!(
            render_list(&[bridge("cb1", "x")], ""),
            "***\nCallbridge : cb1\nDomain     : (none)\nSecret     : x"
        );
    }

    #[test]
    fn bridges_are_added_listed_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, node) = admin_with_node(dir.path());
        assert_eq!(run(&admin, "xmpp domain tptac9.com").text, "SUCCESS");
        assert_eq!(run(&admin, "xmpp callbridge list").text, "(no callbridges)");

        let reply = run(&admin, "xmpp callbridge add cb1");
        assert!(reply.ok, "{}", reply.text);
        let lines: Vec<&str> = reply.text.lines().collect();
        assert_eq!(lines.len(), 5, "{}", reply.text);
        assert_eq!(lines[..3], ["***", "Callbridge : cb1", "Domain     : tptac9.com"]);
        let secret = lines[3].strip_prefix("Secret     : ").unwrap().to_owned();
        assert_eq!(secret.len(), GENERATED_SECRET_CHARS);
        assert_eq!(lines[4], "SUCCESS");
        assert_eq!(
            admin
                .store()
                .callbridge_secret("cb1")
                .unwrap()
                .map(|s| s.expose().to_owned()),
            Some(secret.clone())
        );

        assert_eq!(
            run(&admin, "xmpp callbridge add CB1").text,
            "FAILURE: callbridge 'cb1' already exists"
        );
        assert_eq!(
            admin
                .execute(with_secret("xmpp callbridge add-secret cb0", "kvgP1SRzWVabhiPVAb1"))
                .text,
            "SUCCESS"
        );
        assert_eq!(
            run(&admin, "xmpp callbridge list").text,
            format!(
                "***\nCallbridge : cb0\nDomain     : tptac9.com\nSecret     : kvgP1SRzWVabhiPVAb1\n\
                 ***\nCallbridge : cb1\nDomain     : tptac9.com\nSecret     : {secret}"
            )
        );
        assert_eq!(node.callbridges_changed(), ["cb1", "cb0"]);

        assert_eq!(run(&admin, "xmpp callbridge del cb0").text, "SUCCESS");
        assert_eq!(
            run(&admin, "xmpp callbridge del cb0").text,
            "FAILURE: no such callbridge 'cb0'"
        );
        assert_eq!(node.callbridges_changed(), ["cb1", "cb0", "cb0"]);
        assert!(
            run(&admin, "xmpp callbridge list")
                .text
                .starts_with("***\nCallbridge : cb1\n")
        );
    }

    #[test]
    fn add_secret_checks_the_secret_and_confirms_an_identical_one() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, node) = admin_with_node(dir.path());
        assert_eq!(
            run(&admin, "xmpp callbridge add-secret cb1").text,
            "FAILURE: xmpp callbridge add-secret: no secret given"
        );
        assert_eq!(
            admin.execute(with_secret("xmpp callbridge add-secret cb1", "")).text,
            "FAILURE: xmpp callbridge add-secret: empty secret"
        );
        assert_eq!(
            admin
                .execute(with_secret("xmpp callbridge add-secret cb1", "fifteen-chars-x"))
                .text,
            "FAILURE: xmpp callbridge add-secret: the secret must be at least 16 characters"
        );
        assert_eq!(
            admin
                .execute(with_secret("xmpp callbridge add-secret cb1", "a\u{1b}bcdefghijklmnopq"))
                .text,
            "FAILURE: xmpp callbridge add-secret: the secret contains control characters"
        );
        assert_eq!(
            admin
                .execute(with_secret("xmpp callbridge add-secret cb1", &"x".repeat(1025)))
                .text,
            "FAILURE: xmpp callbridge add-secret: secret longer than 1024 bytes"
        );
        assert_eq!(admin.store().list_callbridges().unwrap(), vec![]);
        // XML-special characters are fine: the handshake escapes them before hashing.
        assert_eq!(
            admin
                .execute(with_secret(
                    "xmpp callbridge add-secret cb1",
                    "s3cr3t&<x-and-more-of-it"
                ))
                .text,
            "SUCCESS"
        );
        assert_eq!(
            admin
                .execute(with_secret(
                    "xmpp callbridge add-secret cb1",
                    "s3cr3t&<x-and-more-of-it"
                ))
                .text,
            "SUCCESS"
        );
        assert_eq!(
            admin
                .execute(with_secret("xmpp callbridge add-secret cb1", "other-secret-of-16+"))
                .text,
            "FAILURE: callbridge 'cb1' already exists with a different secret (xmpp callbridge del cb1 first)"
        );
        assert_eq!(
            admin.store().callbridge_secret("cb1").unwrap(),
            Some(Secret::new("s3cr3t&<x-and-more-of-it"))
        );
        // Only the real change reached the daemon.
        assert_eq!(node.callbridges_changed(), ["cb1"]);
        // Names that bypassed parse (JSON over the socket) are still checked.
        let reply = admin.execute(Command::Callbridge(CallbridgeCommand::Del { name: "a.b".to_owned() }));
        assert!(
            reply
                .text
                .starts_with("FAILURE: xmpp callbridge del: invalid callbridge name 'a.b'"),
            "{}",
            reply.text
        );
    }

    #[test]
    fn without_a_daemon_the_store_is_changed_directly() {
        let dir = tempfile::tempdir().unwrap();
        let admin = admin(dir.path());
        let reply = run(&admin, "xmpp callbridge add cb1");
        assert!(reply.text.contains("Domain     : (none)\n"), "{}", reply.text);
        assert!(reply.text.ends_with("\nSUCCESS"));
        assert_eq!(admin.store().list_callbridges().unwrap().len(), 1);
    }
}
