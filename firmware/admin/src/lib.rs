//! The MMP command language: text to [`Command`], apply, result text; shared by every front end.
//!
//! Every front end (the `mmp` one-shot, batch and interactive modes, the serial console, the web
//! admin) turns what the operator typed into one [`Command`] value and hands it to
//! [`Admin::execute`], locally or through the admin socket ([`socket`]). The [`Reply`] text is
//! exactly what the console prints, so every front end shows the same words.
//!
//! Each command family lives in its own module with its parse and apply side by side; the
//! `command_families!` table below is the only place that lists them. Adding a command to a
//! family touches that family's file only; adding a family is a new file plus one table line.

mod admin;
pub mod admin_password;
pub mod appliance;
pub mod command;
mod dns;
pub mod federation;
mod help;
mod hostname;
mod logs;
pub mod pki;
pub mod reconcile;
pub mod socket;
pub mod ssh;
pub mod upgrade;
mod user;
mod webadmin;
pub mod xmpp;

pub(crate) use admin::write_failure;
pub use admin::{
    Admin, CallBridgeConnection, ComponentAuthFailure, ComponentAuthFailureReason, ListenerStatus, LiveNode,
    LiveStatus, SessionInfo,
};
pub use appliance::{
    AdminPasswdCommand, ApplianceHost, HealthCommand, IfaceCommand, Ipv4Command, RebootCommand, ShutdownCommand,
    UptimeCommand, VersionCommand,
};
pub use command::{ParseError, Usage};
pub use dns::DnsCommand;
pub use federation::{
    DnsCheckReport, DnsRecordCheck, DnsServiceCheck, FederationCommand, FederationLink, FederationLive,
    FederationLiveStatus,
};
pub use help::HelpCommand;
pub use hostname::HostnameCommand;
pub use logs::{LogCommand, LogLevel, SyslogCommand};
pub use pki::PkiCommand;
/// A secret typed by the operator (password, component secret); it never prints.
pub use sb_store::Secret;
pub use ssh::SshCommand;
pub use upgrade::UpgradeCommand;
pub use user::UserCommand;
pub use webadmin::WebadminCommand;
pub use xmpp::{CallbridgeCommand, ClusterCommand, ClusterLive, ClusterView, PeerHealth, PeerView, XmppCommand};

use serde::{Deserialize, Serialize};

/// What a command prints: `SUCCESS` / `FAILURE: <reason>` for state changes, the listing for
/// queries. `ok` is false exactly when the text is a `FAILURE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    pub text: String,
}

impl Reply {
    pub fn success() -> Reply {
        Reply {
            ok: true,
            text: "SUCCESS".to_owned(),
        }
    }

    pub fn failure(reason: impl std::fmt::Display) -> Reply {
        Reply {
            ok: false,
            text: format!("FAILURE: {reason}"),
        }
    }

    /// The answer to a query: a listing, printed as is.
    pub fn output(text: impl Into<String>) -> Reply {
        Reply {
            ok: true,
            text: text.into(),
        }
    }
}

impl From<ParseError> for Reply {
    fn from(err: ParseError) -> Reply {
        Reply::failure(err)
    }
}

/// How a front end asks for a secret a command needs (see [`Command::secret_prompt`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretPrompt {
    /// Shown first, e.g. `Enter password`.
    pub prompt: &'static str,
    /// When set, the secret is asked a second time with this prompt and the two must match.
    pub confirm: Option<&'static str>,
}

/// The contract between a command family module and the dispatch below.
pub(crate) trait Family: Sized {
    /// The words that select this family, e.g. `["xmpp"]`; the longest matching prefix wins,
    /// so `["xmpp", "callbridge"]` can live in its own file beside `["xmpp"]`.
    const PREFIX: &'static [&'static str];
    /// One line per command, for `help`.
    const USAGE: &'static [Usage];
    /// `args` are the words after the prefix.
    fn parse(args: &[String]) -> Result<Self, ParseError>;
    fn apply(self, admin: &Admin) -> Reply;
    fn secret_prompt(&self) -> Option<SecretPrompt> {
        None
    }
    fn with_secret(self, _secret: Secret) -> Self {
        self
    }
}

struct FamilyEntry {
    prefix: &'static [&'static str],
    usage: &'static [Usage],
    parse: fn(&[String]) -> Result<Command, ParseError>,
}

macro_rules! command_families {
    ($( $(#[$meta:meta])* $variant:ident($family:ty) ),+ $(,)?) => {
        /// The single action type every front end produces. It travels over the admin socket as
        /// one JSON line; its `Debug` form never shows a secret.
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Command {
            $( $(#[$meta])* $variant($family), )+
        }

        const FAMILIES: &[FamilyEntry] = &[
            $( FamilyEntry {
                prefix: <$family as Family>::PREFIX,
                usage: <$family as Family>::USAGE,
                parse: |args| <$family as Family>::parse(args).map(Command::$variant),
            }, )+
        ];

        impl Command {
            /// When `Some`, the front end must ask the operator for a secret (without echo on a
            /// terminal) and pass it to [`Command::with_secret`] before executing.
            pub fn secret_request(&self) -> Option<SecretPrompt> {
                match self { $( Command::$variant(c) => c.secret_prompt(), )+ }
            }

            /// The command with its secret filled in.
            pub fn with_secret(self, secret: Secret) -> Command {
                match self { $( Command::$variant(c) => Command::$variant(c.with_secret(secret)), )+ }
            }

            pub(crate) fn apply(self, admin: &Admin) -> Reply {
                match self { $( Command::$variant(c) => c.apply(admin), )+ }
            }
        }
    };
}

command_families! {
    /// `xmpp ...`: the XMPP service of this node.
    Xmpp(XmppCommand),
    /// `xmpp callbridge ...`: the Call Bridges (external components) allowed to connect.
    Callbridge(CallbridgeCommand),
    /// `xmpp cluster ...`: this node's part in a cluster.
    Cluster(ClusterCommand),
    /// `user ...`: local accounts.
    User(UserCommand),
    /// `pki ...`: keys and certificates in the data dir's certificate folder.
    Pki(PkiCommand),
    /// `syslog ...`: the daemon's recent log lines.
    Syslog(SyslogCommand),
    /// `log level ...`: log levels at run time.
    Log(LogCommand),
    /// `federation ...`: server-to-server federation settings and links.
    Federation(FederationCommand),
    /// `dns ...`: the resolver federation uses.
    Dns(DnsCommand),
    /// `hostname`: the name shown in the prompt.
    Hostname(HostnameCommand),
    /// `ipv4 ...`: the appliance's static IPv4 settings.
    Ipv4(Ipv4Command),
    /// `iface`: the appliance's network interfaces.
    Iface(IfaceCommand),
    /// `uptime`: time since boot.
    Uptime(UptimeCommand),
    /// `version`: firmware and kernel versions.
    Version(VersionCommand),
    /// `health`: watchdog, reset cause, xmppd supervision, data partition.
    Health(HealthCommand),
    /// `reboot`: restart the appliance.
    Reboot(RebootCommand),
    /// `shutdown`: power the appliance off.
    Shutdown(ShutdownCommand),
    /// `upgrade ...`: A/B firmware upgrades from a signed image.
    Upgrade(UpgradeCommand),
    /// `admin passwd`: the console admin password.
    AdminPasswd(AdminPasswdCommand),
    /// `webadmin ...`: the HTTPS web admin and API of this node.
    Webadmin(WebadminCommand),
    /// `ssh ...`: the SSH server (MMP prompt, one-shot commands, SFTP) of this node.
    Ssh(SshCommand),
    /// `help`: one line per command.
    Help(HelpCommand),
}

impl Command {
    /// The prompt for the secret this command still needs, e.g. `Enter password`.
    pub fn secret_prompt(&self) -> Option<&'static str> {
        self.secret_request().map(|request| request.prompt)
    }

    /// The confirmation prompt when the secret must be typed twice, e.g. `Confirm password`.
    pub fn secret_confirm_prompt(&self) -> Option<&'static str> {
        self.secret_request().and_then(|request| request.confirm)
    }

    /// A command whose answer is a stream of lines until the client hangs up (`syslog follow`)
    /// rather than one [`Reply`]: front ends run it with [`Admin::follow`] or
    /// [`socket::follow`], not [`Admin::execute`].
    pub fn is_streaming(&self) -> bool {
        matches!(self, Command::Syslog(SyslogCommand::Follow))
    }
}

/// Parse one command line, e.g. `xmpp domain example.com`. Words are separated by white space;
/// double quotes group words (`pki selfsigned web "CN:My Server"`).
pub fn parse(line: &str) -> Result<Command, ParseError> {
    parse_words(&command::split_words(line)?)
}

/// Parse a command already split into words, as a shell hands them to `mmp` one-shot.
pub fn parse_words(words: &[String]) -> Result<Command, ParseError> {
    let Some(first) = words.first() else {
        return Err(ParseError::Empty);
    };
    let best = FAMILIES
        .iter()
        .filter(|family| {
            family.prefix.len() <= words.len() && family.prefix.iter().zip(words).all(|(want, got)| want == got)
        })
        .max_by_key(|family| family.prefix.len());
    match best {
        Some(family) => (family.parse)(&words[family.prefix.len()..]),
        None => Err(ParseError::UnknownCommand(first.clone())),
    }
}

/// Every command's usage line, in the order `help` prints them.
pub fn usage() -> impl Iterator<Item = &'static Usage> {
    FAMILIES.iter().flat_map(|family| family.usage.iter())
}

#[cfg(test)]
pub(crate) mod testing {
    //! A real store on disk in a temporary dir, and a stand-in for the daemon's side of
    //! [`LiveNode`] (the unit boundary of this crate) that records what it was told.

    use super::*;
    use std::sync::{Arc, Mutex};

    /// Follows the store's change feed as xmppd does, recording the reactions instead of
    /// performing them.
    pub struct RecordingNode {
        pub status: Mutex<LiveStatus>,
        pub feed: Mutex<tokio::sync::broadcast::Receiver<sb_store::Published>>,
        pub config_changes: Mutex<usize>,
        pub users_changed: Mutex<Vec<String>>,
        pub callbridges_changed: Mutex<Vec<String>>,
        pub log: Mutex<Option<sb_logging::LogHandle>>,
    }

    impl LiveNode for RecordingNode {
        fn status(&self) -> LiveStatus {
            self.status.lock().map(|s| s.clone()).unwrap_or_default()
        }
        fn wait_reconciled(&self, seq: u64) {
            let mut feed = self.feed.lock().unwrap();
            while let Ok(published) = feed.try_recv() {
                for reaction in crate::reconcile::reactions(&published.event) {
                    match reaction {
                        crate::reconcile::Reaction::ReloadServer => *self.config_changes.lock().unwrap() += 1,
                        crate::reconcile::Reaction::ReloadFederation
                        | crate::reconcile::Reaction::ReloadCluster
                        | crate::reconcile::Reaction::EndSessionsWithoutAccount => {}
                        crate::reconcile::Reaction::EndSessionsOf(user) => {
                            self.users_changed.lock().unwrap().push(user)
                        }
                        crate::reconcile::Reaction::CallBridgeChanged(name) => {
                            self.callbridges_changed.lock().unwrap().push(name)
                        }
                    }
                }
                if published.seq >= seq {
                    break;
                }
            }
        }
        fn log_handle(&self) -> Option<sb_logging::LogHandle> {
            self.log.lock().ok().and_then(|log| log.clone())
        }
    }

    impl RecordingNode {
        pub fn config_changes(&self) -> usize {
            *self.config_changes.lock().unwrap()
        }
        pub fn users_changed(&self) -> Vec<String> {
            self.users_changed.lock().unwrap().clone()
        }
        pub fn callbridges_changed(&self) -> Vec<String> {
            self.callbridges_changed.lock().unwrap().clone()
        }
    }

    pub fn admin_with_node(dir: &std::path::Path) -> (Admin, Arc<RecordingNode>) {
        let store = sb_store::Store::open(dir).expect("open store");
        let node = Arc::new(RecordingNode {
            status: Mutex::default(),
            feed: Mutex::new(store.subscribe()),
            config_changes: Mutex::default(),
            users_changed: Mutex::default(),
            callbridges_changed: Mutex::default(),
            log: Mutex::default(),
        });
        let live: Arc<dyn LiveNode> = node.clone();
        (Admin::new(store, dir.to_path_buf(), Some(live)), node)
    }

    pub fn admin(dir: &std::path::Path) -> Admin {
        let store = sb_store::Store::open(dir).expect("open store");
        Admin::new(store, dir.to_path_buf(), None)
    }

    /// Execute a command line, as a front end does.
    pub fn run(admin: &Admin, line: &str) -> Reply {
        match parse(line) {
            Ok(command) => admin.execute(command),
            Err(err) => Reply::from(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(line: &str) -> String {
        Reply::from(parse(line).expect_err(line)).text
    }

    #[test]
    fn unknown_and_empty_commands_are_refused() {
        assert_eq!(failure("xmp"), "FAILURE: unknown command 'xmp'");
        assert_eq!(failure("xmp domain x"), "FAILURE: unknown command 'xmp'");
        assert_eq!(failure(""), "FAILURE: no command given");
        assert_eq!(failure("   "), "FAILURE: no command given");
        assert_eq!(failure("XMPP"), "FAILURE: unknown command 'XMPP'");
        assert_eq!(failure("xmpp \"domain"), "FAILURE: unterminated quote");
    }

    #[test]
    fn help_and_hostname_take_no_arguments() {
        assert_eq!(parse("help"), Ok(Command::Help(HelpCommand::All)));
        assert_eq!(failure("help me"), "FAILURE: help: unexpected argument 'me'");
        assert_eq!(parse("hostname"), Ok(Command::Hostname(HostnameCommand::Show)));
        assert_eq!(failure("hostname a b"), "FAILURE: hostname: unexpected argument 'b'");
    }

    #[test]
    fn help_lists_every_command_once() {
        let text = help::help_text();
        for usage in usage() {
            let lines = text.lines().filter(|line| line.starts_with(usage.syntax)).count();
            assert!(lines >= 1, "{} missing from help", usage.syntax);
            assert!(text.contains(usage.summary));
        }
        for syntax in [
            "xmpp domain <domain>",
            "xmpp listen <iface or address>...",
            "xmpp certs <key> <crt> [<bundle>]",
            "xmpp enable",
            "xmpp disable",
            "xmpp status",
            "xmpp callbridge port <port>|off",
            "xmpp callbridge plain on|off",
            "pki selfsigned <basename> [CN:<v>] [subAltName:<a,b,c>]",
            "pki csr <basename> CN:<v>",
            "ssh listen <iface or address> [<port>]",
            "ssh authorized-key add <type> <base64> [<comment>]",
            "user add <name>",
            "user del <name>",
            "user list",
            "user passwd <name>",
            "help",
        ] {
            assert!(text.lines().any(|line| line.starts_with(syntax)), "{syntax} missing");
        }
    }

    #[test]
    fn commands_travel_as_one_json_line() {
        let commands = [
            Command::Xmpp(XmppCommand::Listen {
                addresses: vec!["127.0.0.1".to_owned(), "[::1]:5222".to_owned()],
            }),
            Command::User(UserCommand::Add {
                name: "alice".to_owned(),
                password: Some(Secret::new("pa\"ss\nword")),
            }),
            Command::Pki(PkiCommand::Selfsigned {
                basename: "server".to_owned(),
                cn: None,
                sans: vec![],
            }),
            Command::Help(HelpCommand::All),
        ];
        for command in commands {
            let json = serde_json::to_string(&command).unwrap();
            assert!(!json.contains('\n'), "{json}");
            let back: Command = serde_json::from_str(&json).unwrap();
            assert_eq!(back, command);
        }
        let reply = Reply::failure("x");
        let json = serde_json::to_string(&reply).unwrap();
        assert_eq!(json, r#"{"ok":false,"text":"FAILURE: x"}"#);
    }

    #[test]
    fn a_command_needing_a_secret_says_so_and_hides_it() {
        let command = parse("user add alice").unwrap();
        assert_eq!(command.secret_prompt(), Some("Enter password"));
        assert_eq!(command.secret_confirm_prompt(), Some("Confirm password"));
        let filled = command.with_secret(Secret::new("hunter2"));
        assert_eq!(filled.secret_prompt(), None);
        assert!(!format!("{filled:?}").contains("hunter2"));
        assert_eq!(parse("user list").unwrap().secret_prompt(), None);
        assert_eq!(parse("xmpp status").unwrap().secret_prompt(), None);
        let filled = parse("user list").unwrap().with_secret(Secret::new("x"));
        assert_eq!(filled, Command::User(UserCommand::List));
    }

    #[test]
    fn words_from_a_shell_keep_their_grouping() {
        let words: Vec<String> = ["pki", "selfsigned", "web", "CN:My Server"]
            .iter()
            .map(|w| w.to_string())
            .collect();
        assert_eq!(
            parse_words(&words),
            Ok(Command::Pki(PkiCommand::Selfsigned {
                basename: "web".to_owned(),
                cn: Some("My Server".to_owned()),
                sans: vec![],
            }))
        );
    }
}
