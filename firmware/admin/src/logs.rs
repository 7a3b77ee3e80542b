//! `syslog ...` and `log level ...`: the daemon's log, read and tuned at run time. Both need the
//! running daemon: the log lives in its memory ([`LiveNode::log_handle`](crate::LiveNode)).

use crate::command::{Args, ParseError, Usage, unknown_subcommand};
use crate::{Admin, Family, Reply};
use log::LevelFilter;
use sb_logging::{LevelError, LogHandle};
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// `syslog` without a count.
pub const DEFAULT_SYSLOG_LINES: usize = 100;

/// Lines `syslog follow` shows before the new ones, for context.
pub(crate) const FOLLOW_HISTORY_LINES: usize = 10;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyslogCommand {
    /// `syslog [<n>]`: the last n lines.
    Recent { lines: usize },
    /// `syslog follow`: new lines as they come, until the operator interrupts.
    Follow,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogCommand {
    /// `log level`: the levels in force.
    Levels,
    /// `log level [<module>] <level>`; without a module, the default level.
    Level { module: Option<String>, level: LogLevel },
}

/// A level as the command line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Off,
}

impl LogLevel {
    pub fn parse(text: &str) -> Result<LogLevel, LevelError> {
        Ok(LogLevel::from(sb_logging::parse_level(text)?))
    }

    pub fn filter(self) -> LevelFilter {
        match self {
            LogLevel::Trace => LevelFilter::Trace,
            LogLevel::Debug => LevelFilter::Debug,
            LogLevel::Info => LevelFilter::Info,
            LogLevel::Warn => LevelFilter::Warn,
            LogLevel::Error => LevelFilter::Error,
            LogLevel::Off => LevelFilter::Off,
        }
    }
}

impl From<LevelFilter> for LogLevel {
    fn from(level: LevelFilter) -> LogLevel {
        match level {
            LevelFilter::Trace => LogLevel::Trace,
            LevelFilter::Debug => LogLevel::Debug,
            LevelFilter::Info => LogLevel::Info,
            LevelFilter::Warn => LogLevel::Warn,
            LevelFilter::Error => LogLevel::Error,
            LevelFilter::Off => LogLevel::Off,
        }
    }
}

impl Family for SyslogCommand {
    const PREFIX: &'static [&'static str] = &["syslog"];
    const USAGE: &'static [Usage] = &[
        Usage {
            syntax: "syslog [<n>]",
            summary: "the daemon's last n log lines (default 100)",
        },
        Usage {
            syntax: "syslog follow",
            summary: "show new log lines as they are written, until interrupted (Ctrl-C)",
        },
    ];

    fn parse(words: &[String]) -> Result<Self, ParseError> {
        let mut args = Args::new("syslog", words);
        match args.optional() {
            None => Ok(SyslogCommand::Recent {
                lines: DEFAULT_SYSLOG_LINES,
            }),
            Some("follow") => {
                let args = Args::new("syslog follow", words.get(1..).unwrap_or_default());
                args.end()?;
                Ok(SyslogCommand::Follow)
            }
            Some(count) => {
                let lines = parse_count(count).map_err(|reason| args.invalid(reason))?;
                args.end()?;
                Ok(SyslogCommand::Recent { lines })
            }
        }
    }

    fn apply(self, admin: &Admin) -> Reply {
        let log = match log_handle(admin) {
            Ok(log) => log,
            Err(reply) => return reply,
        };
        match self {
            SyslogCommand::Recent { lines } => {
                let lines = log.recent(lines);
                if lines.is_empty() {
                    Reply::output("(no log lines)")
                } else {
                    Reply::output(lines.join("\n"))
                }
            }
            SyslogCommand::Follow => Reply::failure("syslog follow streams: run it with mmp"),
        }
    }
}

fn parse_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) | Err(_) => Err(format!(
            "expected a number of lines (1 or more) or 'follow', found '{text}'"
        )),
        Ok(count) => Ok(count),
    }
}

impl Family for LogCommand {
    const PREFIX: &'static [&'static str] = &["log"];
    const USAGE: &'static [Usage] = &[
        Usage {
            syntax: "log level",
            summary: "show the log levels in force",
        },
        Usage {
            syntax: "log level [<module>] <level>",
            summary: "set the default or a module's log level now (trace, debug, info, warn, error, off)",
        },
    ];

    fn parse(words: &[String]) -> Result<Self, ParseError> {
        if words.first().map(String::as_str) != Some("level") {
            return Err(unknown_subcommand(Self::PREFIX, words));
        }
        let mut args = Args::new("log level", &words[1..]);
        let Some(first) = args.optional() else {
            return Ok(LogCommand::Levels);
        };
        let command = match args.optional() {
            None => LogCommand::Level {
                module: None,
                level: LogLevel::parse(first).map_err(|e| args.invalid(e))?,
            },
            Some(level) => LogCommand::Level {
                module: Some(module_path(first).map_err(|e| args.invalid(e))?),
                level: LogLevel::parse(level).map_err(|e| args.invalid(e))?,
            },
        };
        args.end()?;
        Ok(command)
    }

    fn apply(self, admin: &Admin) -> Reply {
        let log = match log_handle(admin) {
            Ok(log) => log,
            Err(reply) => return reply,
        };
        match self {
            LogCommand::Levels => Reply::output(render_levels(&log)),
            LogCommand::Level { module, level } => {
                let module = match module.as_deref().map(module_path).transpose() {
                    Ok(module) => module,
                    Err(err) => return Reply::failure(format!("log level: {err}")),
                };
                match log.set_level(module.as_deref(), level.filter()) {
                    Ok(()) => {
                        match &module {
                            Some(module) => log::info!("log level of {module} set to {}", level.name()),
                            None => log::info!("default log level set to {}", level.name()),
                        }
                        Reply::success()
                    }
                    Err(err) => Reply::failure(format!("log level: {err}")),
                }
            }
        }
    }
}

/// Module paths use `_` where crate names use `-` (`sb-server` is `sb_server`): accept both.
fn module_path(text: &str) -> Result<String, LevelError> {
    sb_logging::parse_module(&text.replace('-', "_"))
}

/// The daemon's logger, or the FAILURE to reply.
pub(crate) fn log_handle(admin: &Admin) -> Result<LogHandle, Reply> {
    match admin.live() {
        None => Err(Reply::failure("the daemon is not running")),
        Some(live) => live
            .log_handle()
            .ok_or_else(|| Reply::failure("the daemon keeps no log buffer")),
    }
}

fn render_levels(log: &LogHandle) -> String {
    let mut out = String::new();
    for entry in log.levels() {
        let module = entry.module.as_deref().unwrap_or("(default)");
        let _ = writeln!(out, "{module:<24}: {}", LogLevel::from(entry.level).name());
    }
    for ceiling in log.ceilings() {
        let _ = writeln!(
            out,
            "{:<24}: at most {} ({})",
            ceiling.module,
            LogLevel::from(ceiling.level).name(),
            ceiling.reason
        );
    }
    out.truncate(out.trim_end().len());
    out
}

impl LogLevel {
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Off => "off",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{admin, admin_with_node, run};
    use crate::{Command, parse};
    use log::{Level, Log, Record};

    fn failure(line: &str) -> String {
        Reply::from(parse(line).expect_err(line)).text
    }

    fn emit(logger: &sb_logging::Logger, level: Level, target: &str, message: &str) {
        logger.log(
            &Record::builder()
                .level(level)
                .target(target)
                .args(format_args!("{message}"))
                .build(),
        );
    }

    #[test]
    fn parses_syslog_and_log_level() {
        assert_eq!(
            parse("syslog"),
            Ok(Command::Syslog(SyslogCommand::Recent { lines: 100 }))
        );
        assert_eq!(
            parse("syslog 20"),
            Ok(Command::Syslog(SyslogCommand::Recent { lines: 20 }))
        );
        assert_eq!(parse("syslog follow"), Ok(Command::Syslog(SyslogCommand::Follow)));
        assert!(parse("syslog follow").unwrap().is_streaming());
        assert!(!parse("syslog").unwrap().is_streaming());
        assert_eq!(parse("log level"), Ok(Command::Log(LogCommand::Levels)));
        assert_eq!(
            parse("log level DEBUG"),
            Ok(Command::Log(LogCommand::Level {
                module: None,
                level: LogLevel::Debug
            }))
        );
        assert_eq!(
            parse("log level sb-server::c2s trace"),
            Ok(Command::Log(LogCommand::Level {
                module: Some("sb_server::c2s".to_owned()),
                level: LogLevel::Trace
            }))
        );
        assert_eq!(
            parse("log level sled off"),
            Ok(Command::Log(LogCommand::Level {
                module: Some("sled".to_owned()),
                level: LogLevel::Off
            }))
        );
    }

    #[test]
    fn syslog_and_log_parse_errors_name_the_problem() {
        assert_eq!(
            failure("syslog 0"),
            "FAILURE: syslog: expected a number of lines (1 or more) or 'follow', found '0'"
        );
        assert_eq!(
            failure("syslog lots"),
            "FAILURE: syslog: expected a number of lines (1 or more) or 'follow', found 'lots'"
        );
        assert_eq!(failure("syslog 5 6"), "FAILURE: syslog: unexpected argument '6'");
        assert_eq!(
            failure("syslog follow now"),
            "FAILURE: syslog follow: unexpected argument 'now'"
        );
        assert_eq!(failure("log"), "FAILURE: unknown command 'log'");
        assert_eq!(failure("log lvl debug"), "FAILURE: unknown command 'log lvl'");
        assert_eq!(
            failure("log level loud"),
            "FAILURE: log level: unknown level 'loud' (expected trace, debug, info, warn, error or off)"
        );
        assert_eq!(
            failure("log level a.b debug"),
            "FAILURE: log level: invalid module 'a.b' (expected a Rust module path such as sb_server or \
             sb_server::c2s)"
        );
        assert_eq!(
            failure("log level sb_server debug x"),
            "FAILURE: log level: unexpected argument 'x'"
        );
    }

    #[test]
    fn without_a_daemon_log_commands_fail_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let admin = admin(dir.path());
        for line in ["syslog", "syslog 5", "syslog follow", "log level", "log level debug"] {
            assert_eq!(run(&admin, line).text, "FAILURE: the daemon is not running", "{line}");
        }
        let follow = admin.follow(&parse("syslog follow").unwrap()).err();
        assert_eq!(follow, Some(Reply::failure("the daemon is not running")));
        // A daemon that keeps no log.
        let (admin, _node) = admin_with_node(dir.path().join("other").as_path());
        assert_eq!(run(&admin, "syslog").text, "FAILURE: the daemon keeps no log buffer");
    }

    #[test]
    fn syslog_shows_recent_lines_and_log_level_changes_levels() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, node) = admin_with_node(dir.path());
        let (logger, handle) =
            sb_logging::Logger::new(sb_logging::LogConfig::default().with_console(sb_logging::Console::Off));
        *node.log.lock().unwrap() = Some(handle.clone());
        assert_eq!(run(&admin, "syslog").text, "(no log lines)");
        for i in 0..5 {
            emit(&logger, Level::Info, "sb_server::c2s", &format!("line {i}"));
        }
        emit(&logger, Level::Debug, "sb_server::c2s", "debug line");
        let reply = run(&admin, "syslog 2");
        assert!(reply.ok);
        let lines: Vec<&str> = reply.text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("INFO  sb_server::c2s: line 3"), "{}", reply.text);
        assert!(lines[1].ends_with("INFO  sb_server::c2s: line 4"), "{}", reply.text);
        assert_eq!(run(&admin, "syslog").text.lines().count(), 5);

        assert_eq!(run(&admin, "log level sb-server debug").text, "SUCCESS");
        emit(&logger, Level::Debug, "sb_server::c2s", "debug line");
        assert!(
            run(&admin, "syslog 1")
                .text
                .ends_with("DEBUG sb_server::c2s: debug line")
        );
        assert_eq!(run(&admin, "log level warn").text, "SUCCESS");
        assert_eq!(
            run(&admin, "log level sled::tree trace").text,
            "FAILURE: log level: sled::tree cannot log above info: sled writes stored values, secrets among \
             them, into its debug and trace lines"
        );
        assert_eq!(
            run(&admin, "log level").text,
            "\
(default)               : warn
openraft                : off
rustls                  : warn
sb_server               : debug
sled                    : warn
tokio_rustls            : warn
sled                    : at most info (sled writes stored values, secrets among them, into its debug and trace \
             lines)
russh                   : at most info (russh logs every packet at debug: `syslog follow` over SSH would log its \
             own output without end)"
        );
        // A module that bypassed parse (JSON over the socket) is still checked.
        let reply = admin.execute(Command::Log(LogCommand::Level {
            module: Some("a b".to_owned()),
            level: LogLevel::Info,
        }));
        assert!(
            reply.text.starts_with("FAILURE: log level: invalid module 'a b'"),
            "{}",
            reply.text
        );
    }
}
