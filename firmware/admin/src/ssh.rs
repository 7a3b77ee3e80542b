//! `ssh ...`: this node's SSH server (the MMP prompt, one-shot commands and SFTP for `admin`).
//! The settings and the authorized keys are node-local ([`sb_store::SshConfig`]); the daemon's
//! SSH module follows the change feed and rebinds through the listener module, as the web admin
//! does. The host key is a file in the data folder that the SSH module makes on first start;
//! `ssh status` shows its fingerprint from the public half.

use crate::command::{Args, ParseError, Usage, unknown_subcommand};
use crate::xmpp::update_node;
use crate::{Admin, Family, Reply};
use base64::Engine;
use sb_store::{AuthorizedKey, SshConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The host's private key in the data folder (owner-only), outside the SFTP file area.
pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";
/// Its public half in OpenSSH's one-line form, which `ssh status` reads.
pub const HOST_PUBLIC_KEY_FILE: &str = "ssh_host_ed25519_key.pub";

/// The public key types a client may log in with.
pub const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];

/// At most this many authorized keys: the list is scanned on every public-key login.
pub const MAX_AUTHORIZED_KEYS: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SshCommand {
    /// `ssh listen <iface or address> [<port>]`
    Listen { address: String, port: Option<u16> },
    /// `ssh enable`
    Enable,
    /// `ssh disable`
    Disable,
    /// `ssh status`
    Status,
    /// `ssh authorized-key add <type> <base64> [<comment>]`
    AddKey(AuthorizedKey),
    /// `ssh authorized-key del <n>` (1-based, as `list` numbers them)
    DelKey { index: usize },
    /// `ssh authorized-key list`
    ListKeys,
}

impl Family for SshCommand {
    const PREFIX: &'static [&'static str] = &["ssh"];
    const USAGE: &'static [Usage] = &[
        Usage {
            syntax: "ssh listen <iface or address> [<port>]",
            summary: "serve SSH and SFTP for admin on this interface or address (port 22 unless given; 0: any free)",
        },
        Usage {
            syntax: "ssh enable",
            summary: "start the SSH server",
        },
        Usage {
            syntax: "ssh disable",
            summary: "stop the SSH server",
        },
        Usage {
            syntax: "ssh status",
            summary: "the SSH server's settings, where it listens and the host key fingerprint",
        },
        Usage {
            syntax: "ssh authorized-key add <type> <base64> [<comment>]",
            summary: "let this public key log in as admin (ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa ...)",
        },
        Usage {
            syntax: "ssh authorized-key del <n>",
            summary: "remove the n-th authorized key (as numbered by list)",
        },
        Usage {
            syntax: "ssh authorized-key list",
            summary: "the public keys that may log in as admin",
        },
    ];

    fn parse(words: &[String]) -> Result<Self, ParseError> {
        let rest = words.get(1..).unwrap_or_default();
        match words.first().map(String::as_str) {
            Some("listen") => {
                let mut args = Args::new("ssh listen", rest);
                let address = args.required("<iface or address>")?;
                let port = args.optional();
                let target = args.listen_address(address)?;
                let port = port.map(|port| args.port(port)).transpose()?;
                args.end()?;
                Ok(SshCommand::Listen {
                    address: target.to_string(),
                    port,
                })
            }
            Some("enable") => no_arguments("ssh enable", rest, SshCommand::Enable),
            Some("disable") => no_arguments("ssh disable", rest, SshCommand::Disable),
            Some("status") => no_arguments("ssh status", rest, SshCommand::Status),
            Some("authorized-key") => parse_authorized_key(rest),
            _ => Err(unknown_subcommand(Self::PREFIX, words)),
        }
    }

    fn apply(self, admin: &Admin) -> Reply {
        match self {
            SshCommand::Listen { address, port } => {
                let address = match admin.appliance().stored_listen_address(&address) {
                    Ok(address) => address,
                    Err(reason) => return Reply::failure(format!("ssh listen: {reason}")),
                };
                update_node(admin, "ssh listen", |node| {
                    node.ssh.listen = address;
                    node.ssh.port = port.unwrap_or(sb_store::DEFAULT_SSH_PORT);
                })
            }
            SshCommand::Enable => update_node(admin, "ssh enable", |node| node.ssh.enabled = true),
            SshCommand::Disable => update_node(admin, "ssh disable", |node| node.ssh.enabled = false),
            SshCommand::Status => status(admin),
            SshCommand::AddKey(key) => {
                if let Err(reason) = check_public_key(&key.key_type, &key.base64) {
                    return Reply::failure(format!("ssh authorized-key add: {reason}"));
                }
                let config = match admin.store().node_config() {
                    Ok(node) => node.ssh,
                    Err(err) => return Reply::failure(format!("ssh authorized-key add: {err}")),
                };
                if config.authorized_keys.iter().any(|known| known.base64 == key.base64) {
                    return Reply::failure("ssh authorized-key add: this key is authorized already");
                }
                if config.authorized_keys.len() >= MAX_AUTHORIZED_KEYS {
                    return Reply::failure(format!(
                        "ssh authorized-key add: at most {MAX_AUTHORIZED_KEYS} keys; delete one first"
                    ));
                }
                update_node(admin, "ssh authorized-key add", |node| {
                    node.ssh.authorized_keys.push(key)
                })
            }
            SshCommand::DelKey { index } => {
                let count = match admin.store().node_config() {
                    Ok(node) => node.ssh.authorized_keys.len(),
                    Err(err) => return Reply::failure(format!("ssh authorized-key del: {err}")),
                };
                if index == 0 || index > count {
                    return Reply::failure(format!(
                        "ssh authorized-key del: no key number {index} (there are {count}; see ssh authorized-key list)"
                    ));
                }
                update_node(admin, "ssh authorized-key del", |node| {
                    node.ssh.authorized_keys.remove(index - 1);
                })
            }
            SshCommand::ListKeys => match admin.store().node_config() {
                Ok(node) => Reply::output(render_keys(&node.ssh.authorized_keys)),
                Err(err) => Reply::failure(format!("ssh authorized-key list: {err}")),
            },
        }
    }
}

fn no_arguments(command: &'static str, rest: &[String], value: SshCommand) -> Result<SshCommand, ParseError> {
    Args::new(command, rest).end()?;
    Ok(value)
}

fn parse_authorized_key(words: &[String]) -> Result<SshCommand, ParseError> {
    let rest = words.get(1..).unwrap_or_default();
    match words.first().map(String::as_str) {
        Some("add") => {
            let mut args = Args::new("ssh authorized-key add", rest);
            let key_type = args.required("<type>")?.to_owned();
            let base64 = args.required("<base64>")?.to_owned();
            let comment = args.rest().join(" ");
            check_public_key(&key_type, &base64).map_err(|e| args.invalid(e))?;
            Ok(SshCommand::AddKey(AuthorizedKey {
                key_type,
                base64,
                comment,
            }))
        }
        Some("del") => {
            let mut args = Args::new("ssh authorized-key del", rest);
            let number = args.required("<n>")?;
            let index =
                number.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    args.invalid(format!("'{number}' is not a key number (see ssh authorized-key list)"))
                })?;
            args.end()?;
            Ok(SshCommand::DelKey { index })
        }
        Some("list") => no_arguments("ssh authorized-key list", rest, SshCommand::ListKeys),
        _ => Err(unknown_subcommand(&["ssh", "authorized-key"], words)),
    }
}

/// A public key as OpenSSH prints it: a known type and a base64 blob whose own type name (the
/// first field of the SSH wire encoding) is that type.
pub fn check_public_key(key_type: &str, base64: &str) -> Result<(), String> {
    if !KEY_TYPES.contains(&key_type) {
        return Err(format!(
            "unknown key type '{key_type}' (expected one of {})",
            KEY_TYPES.join(", ")
        ));
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(base64)
        .map_err(|_| "the key is not base64 (paste the second word of the .pub file)".to_owned())?;
    let named = blob
        .get(..4)
        .map(|len| u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize)
        .and_then(|len| blob.get(4..4 + len));
    if named != Some(key_type.as_bytes()) {
        return Err(format!("the key's contents are not a {key_type} key"));
    }
    Ok(())
}

/// `SHA256:<base64>`, as `ssh-keygen -l` prints a key's fingerprint.
pub fn fingerprint(base64_blob: &str) -> Option<String> {
    let blob = base64::engine::general_purpose::STANDARD.decode(base64_blob).ok()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &blob);
    Some(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest.as_ref())
    ))
}

/// The host key's public half, where the SSH module writes it.
pub fn host_public_key_file(data_dir: &Path) -> PathBuf {
    data_dir.join(HOST_PUBLIC_KEY_FILE)
}

/// The host key's fingerprint, or why there is none.
fn host_key_fingerprint(data_dir: &Path) -> String {
    let path = host_public_key_file(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut words = text.split_whitespace();
            match (words.next(), words.next().and_then(fingerprint)) {
                (Some(kind), Some(fingerprint)) => format!("{fingerprint} ({kind})"),
                _ => format!("(unreadable {})", path.display()),
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            "(none yet: made when the SSH server first starts)".to_owned()
        }
        Err(err) => format!("(cannot read {}: {err})", path.display()),
    }
}

fn render_keys(keys: &[AuthorizedKey]) -> String {
    if keys.is_empty() {
        return "(no authorized keys: admin logs in with the password)".to_owned();
    }
    keys.iter()
        .enumerate()
        .map(|(index, key)| {
            let fingerprint = fingerprint(&key.base64).unwrap_or_default();
            format!("{:>2}  {} {fingerprint} {}", index + 1, key.key_type, key.comment)
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn status(admin: &Admin) -> Reply {
    let ssh = match admin.store().node_config() {
        Ok(node) => node.ssh,
        Err(err) => return Reply::failure(format!("ssh status: {err}")),
    };
    let listening = match admin.live() {
        None => vec!["(xmppd is not running)".to_owned()],
        Some(live) => {
            let listeners = live.status().ssh;
            if listeners.is_empty() {
                vec!["(none)".to_owned()]
            } else {
                listeners
                    .into_iter()
                    .map(|l| match (l.error, l.waiting) {
                        (Some(error), _) => format!("NOT listening on {}: {error}", l.address),
                        (None, Some(waiting)) => format!("{} waits: {waiting}", l.address),
                        (None, None) => l.address,
                    })
                    .collect()
            }
        }
    };
    let password = if crate::admin_password::is_set(admin.appliance(), admin.dir()) {
        "set"
    } else {
        "NOT SET (admin passwd): only authorized keys log in"
    };
    Reply::output(render(&ssh, &host_key_fingerprint(admin.dir()), &listening, password))
}

fn render(ssh: &SshConfig, fingerprint: &str, listening: &[String], password: &str) -> String {
    let rows: [(&str, String); 7] = [
        ("Enabled", ssh.enabled.to_string()),
        ("Interface", ssh.listen.clone()),
        ("Port", ssh.port.to_string()),
        ("Host key", fingerprint.to_owned()),
        ("Admin password", password.to_owned()),
        ("Authorized keys", ssh.authorized_keys.len().to_string()),
        ("Listening", listening.join("\n                   ")),
    ];
    rows.iter()
        .map(|(name, value)| format!("{name:<19}: {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{admin, run};
    use crate::{Command, parse};

    // A real key: `ssh-keygen -t ed25519`, public half.
    const ED25519: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIBXY9e0vhzoLOxh69VunsJya047WKIQvygy0ryusj8EB";

    fn fail(line: &str) -> String {
        Reply::from(parse(line).expect_err(line)).text
    }

    #[test]
    fn ssh_commands_parse_and_refuse_bad_input() {
        assert_eq!(
            parse("ssh listen a"),
            Ok(Command::Ssh(SshCommand::Listen {
                address: "a".into(),
                port: None
            }))
        );
        assert_eq!(
            parse("ssh listen 127.0.0.1 2222"),
            Ok(Command::Ssh(SshCommand::Listen {
                address: "127.0.0.1".into(),
                port: Some(2222)
            }))
        );
        assert_eq!(fail("ssh listen"), "FAILURE: ssh listen: missing <iface or address>");
        assert_eq!(
            fail("ssh listen a ssh"),
            "FAILURE: ssh listen: 'ssh' is not a port (0-65535)"
        );
        assert!(fail("ssh listen 127.0.0.1:22 22").contains("own word"));
        assert_eq!(fail("ssh enable now"), "FAILURE: ssh enable: unexpected argument 'now'");
        assert_eq!(fail("ssh frob"), "FAILURE: unknown command 'ssh frob'");
        assert_eq!(
            fail("ssh authorized-key frob"),
            "FAILURE: unknown command 'ssh authorized-key frob'"
        );
        assert_eq!(
            parse(&format!("ssh authorized-key add ssh-ed25519 {ED25519} ops at laptop")),
            Ok(Command::Ssh(SshCommand::AddKey(AuthorizedKey {
                key_type: "ssh-ed25519".into(),
                base64: ED25519.into(),
                comment: "ops at laptop".into(),
            })))
        );
        assert!(fail("ssh authorized-key add ssh-dss AAAA").contains("unknown key type 'ssh-dss'"));
        assert!(fail("ssh authorized-key add ssh-ed25519 !!!").contains("not base64"));
        assert!(
            fail(&format!("ssh authorized-key add ssh-rsa {ED25519}")).contains("not a ssh-rsa key"),
            "a key pasted with the wrong type is refused"
        );
        assert_eq!(
            fail("ssh authorized-key del x"),
            "FAILURE: ssh authorized-key del: 'x' is not a key number (see ssh authorized-key list)"
        );
    }

    #[test]
    fn settings_and_keys_are_stored_on_this_node_and_shown() {
        let dir = tempfile::tempdir().unwrap();
        let admin = admin(dir.path());
        assert!(run(&admin, "ssh listen 127.0.0.2 2222").ok);
        assert!(run(&admin, "ssh enable").ok);
        let ssh = admin.store().node_config().unwrap().ssh;
        assert_eq!((ssh.enabled, ssh.listen.as_str(), ssh.port), (true, "127.0.0.2", 2222));
        assert!(run(&admin, "ssh listen 127.0.0.3").ok);
        assert_eq!(admin.store().node_config().unwrap().ssh.port, 22);

        let text = run(&admin, "ssh status").text;
        assert!(text.contains("Enabled            : true"), "{text}");
        assert!(text.contains("Host key           : (none yet"), "{text}");
        std::fs::write(
            host_public_key_file(admin.dir()),
            format!("ssh-ed25519 {ED25519} switchboard\n"),
        )
        .unwrap();
        let text = run(&admin, "ssh status").text;
        let expected = fingerprint(ED25519).unwrap();
        assert!(expected.starts_with("SHA256:") && expected.len() == 50, "{expected}");
        assert!(
            text.contains(&format!("Host key           : {expected} (ssh-ed25519)")),
            "{text}"
        );

        assert_eq!(
            run(&admin, "ssh authorized-key list").text,
            "(no authorized keys: admin logs in with the password)"
        );
        let add = format!("ssh authorized-key add ssh-ed25519 {ED25519} ops@laptop");
        assert_eq!(run(&admin, &add).text, "SUCCESS");
        assert_eq!(
            run(&admin, &add).text,
            "FAILURE: ssh authorized-key add: this key is authorized already"
        );
        assert_eq!(
            run(&admin, "ssh authorized-key list").text,
            format!(" 1  ssh-ed25519 {expected} ops@laptop")
        );
        assert_eq!(
            run(&admin, "ssh authorized-key del 2").text,
            "FAILURE: ssh authorized-key del: no key number 2 (there are 1; see ssh authorized-key list)"
        );
        assert_eq!(run(&admin, "ssh authorized-key del 1").text, "SUCCESS");
        assert!(admin.store().node_config().unwrap().ssh.authorized_keys.is_empty());
        assert!(run(&admin, "ssh disable").ok);
        assert!(!admin.store().node_config().unwrap().ssh.enabled);
    }
}
