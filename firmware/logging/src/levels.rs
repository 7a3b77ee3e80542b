//! Which records get logged: a default level, per-module levels (longest module prefix wins)
//! and ceilings no level may exceed.

use log::LevelFilter;

/// A module that never logs above `level`, whatever is asked for, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ceiling {
    pub module: &'static str,
    pub level: LevelFilter,
    pub reason: &'static str,
}

/// sled 0.34 prints the pages it links and replaces at trace (`{:?}` of keys *and values*, as
/// lists of bytes) and unexpected pages at debug; stored values include Call Bridge secrets and
/// SCRAM keys. sb-admin's `tests/redaction.rs` fails without this ceiling.
pub const DEFAULT_CEILINGS: &[Ceiling] = &[
    Ceiling {
        module: "sled",
        level: LevelFilter::Info,
        reason: "sled writes stored values, secrets among them, into its debug and trace lines",
    },
    Ceiling {
        module: "russh",
        level: LevelFilter::Info,
        reason: "russh logs every packet at debug: `syslog follow` over SSH would log its own output without end",
    },
];

/// One entry of a level listing; `module: None` is the default level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleLevel {
    pub module: Option<String>,
    pub level: LevelFilter,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LevelError {
    #[error("unknown level '{0}' (expected trace, debug, info, warn, error or off)")]
    UnknownLevel(String),
    #[error("invalid module '{0}' (expected a Rust module path such as sb_server or sb_server::c2s)")]
    BadModule(String),
    #[error("{module} cannot log above {ceiling}: {reason}")]
    AboveCeiling {
        module: String,
        ceiling: String,
        reason: &'static str,
    },
}

/// `trace`, `debug`, `info`, `warn`, `error` or `off`, any case.
pub fn parse_level(text: &str) -> Result<LevelFilter, LevelError> {
    let text = text.trim();
    text.parse::<LevelFilter>()
        .map_err(|_| LevelError::UnknownLevel(text.to_owned()))
}

/// A `RUST_LOG`-style spec: comma-separated `level` (the default) or `module=level` parts.
pub fn parse_spec(spec: &str) -> Result<Vec<ModuleLevel>, LevelError> {
    spec.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('=') {
            None => Ok(ModuleLevel {
                module: None,
                level: parse_level(part)?,
            }),
            Some((module, level)) => Ok(ModuleLevel {
                module: Some(check_module(module.trim())?.to_owned()),
                level: parse_level(level)?,
            }),
        })
        .collect()
}

/// A module path as levels take it: `sb_server` or `sb_server::c2s`.
pub fn parse_module(text: &str) -> Result<String, LevelError> {
    check_module(text.trim()).map(str::to_owned)
}

fn check_module(module: &str) -> Result<&str, LevelError> {
    let valid = !module.is_empty()
        && module
            .split("::")
            .all(|segment| !segment.is_empty() && segment.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if valid {
        Ok(module)
    } else {
        Err(LevelError::BadModule(module.to_owned()))
    }
}

/// `prefix` is `target` or one of its parent modules.
fn covers(prefix: &str, target: &str) -> bool {
    target
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

pub(crate) struct Levels {
    default: LevelFilter,
    /// Longest module first, so the first match is the most specific.
    modules: Vec<(String, LevelFilter)>,
    ceilings: Vec<Ceiling>,
}

impl Levels {
    pub(crate) fn new(default: LevelFilter, ceilings: Vec<Ceiling>) -> Levels {
        Levels {
            default,
            modules: Vec::new(),
            ceilings,
        }
    }

    pub(crate) fn effective(&self, target: &str) -> LevelFilter {
        let wanted = self
            .modules
            .iter()
            .find(|(module, _)| covers(module, target))
            .map_or(self.default, |(_, level)| *level);
        match self.ceiling(target) {
            Some(ceiling) => wanted.min(ceiling.level),
            None => wanted,
        }
    }

    fn ceiling(&self, target: &str) -> Option<&Ceiling> {
        self.ceilings
            .iter()
            .filter(|ceiling| covers(ceiling.module, target))
            .min_by_key(|ceiling| ceiling.level)
    }

    pub(crate) fn set(&mut self, module: Option<&str>, level: LevelFilter) -> Result<(), LevelError> {
        let Some(module) = module else {
            self.default = level;
            return Ok(());
        };
        let module = check_module(module.trim())?;
        if let Some(ceiling) = self.ceiling(module)
            && level > ceiling.level
        {
            return Err(LevelError::AboveCeiling {
                module: module.to_owned(),
                ceiling: ceiling.level.as_str().to_ascii_lowercase(),
                reason: ceiling.reason,
            });
        }
        self.insert(module, level);
        Ok(())
    }

    /// For start-up configuration: an invalid module is skipped, a level above a ceiling capped.
    pub(crate) fn set_capped(&mut self, module: &str, level: LevelFilter) {
        let Ok(module) = check_module(module.trim()) else {
            return;
        };
        let level = match self.ceiling(module) {
            Some(ceiling) => level.min(ceiling.level),
            None => level,
        };
        self.insert(module, level);
    }

    fn insert(&mut self, module: &str, level: LevelFilter) {
        match self.modules.iter_mut().find(|(known, _)| known == module) {
            Some(entry) => entry.1 = level,
            None => {
                self.modules.push((module.to_owned(), level));
                self.modules
                    .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
            }
        }
    }

    pub(crate) fn list(&self) -> Vec<ModuleLevel> {
        let mut modules: Vec<ModuleLevel> = self
            .modules
            .iter()
            .map(|(module, level)| ModuleLevel {
                module: Some(module.clone()),
                level: *level,
            })
            .collect();
        modules.sort_by(|a, b| a.module.cmp(&b.module));
        let mut list = vec![ModuleLevel {
            module: None,
            level: self.default,
        }];
        list.extend(modules);
        list
    }

    pub(crate) fn ceilings(&self) -> &[Ceiling] {
        &self.ceilings
    }

    /// The most verbose level anything may log at.
    pub(crate) fn max(&self) -> LevelFilter {
        self.modules
            .iter()
            .map(|(_, level)| *level)
            .fold(self.default, Ord::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_into_default_and_module_levels() {
        assert_eq!(
            parse_spec(" warn , sb_server=DEBUG,sb_server::c2s=trace,").unwrap(),
            vec![
                ModuleLevel {
                    module: None,
                    level: LevelFilter::Warn
                },
                ModuleLevel {
                    module: Some("sb_server".to_owned()),
                    level: LevelFilter::Debug
                },
                ModuleLevel {
                    module: Some("sb_server::c2s".to_owned()),
                    level: LevelFilter::Trace
                },
            ]
        );
        assert_eq!(parse_spec("").unwrap(), vec![]);
        assert_eq!(
            parse_spec("loud").unwrap_err().to_string(),
            "unknown level 'loud' (expected trace, debug, info, warn, error or off)"
        );
        assert_eq!(
            parse_spec("sb-server=info").unwrap_err(),
            LevelError::BadModule("sb-server".to_owned())
        );
        assert_eq!(
            parse_spec("a::=info").unwrap_err(),
            LevelError::BadModule("a::".to_owned())
        );
        assert_eq!(parse_level("OFF"), Ok(LevelFilter::Off));
    }

    #[test]
    fn the_longest_module_prefix_wins_on_module_boundaries() {
        let mut levels = Levels::new(LevelFilter::Info, vec![]);
        levels.set(Some("a"), LevelFilter::Error).unwrap();
        levels.set(Some("a::b"), LevelFilter::Trace).unwrap();
        assert_eq!(levels.effective("a"), LevelFilter::Error);
        assert_eq!(levels.effective("a::c"), LevelFilter::Error);
        assert_eq!(levels.effective("a::b"), LevelFilter::Trace);
        assert_eq!(levels.effective("a::b::d"), LevelFilter::Trace);
        assert_eq!(levels.effective("a::bc"), LevelFilter::Error);
        assert_eq!(levels.effective("ab"), LevelFilter::Info);
        assert_eq!(levels.max(), LevelFilter::Trace);
        levels.set(Some("a::b"), LevelFilter::Warn).unwrap();
        assert_eq!(levels.effective("a::b"), LevelFilter::Warn);
        assert_eq!(levels.list().len(), 3);
        // The default is the most verbose now.
        assert_eq!(levels.max(), LevelFilter::Info);
    }

    #[test]
    fn ceilings_cap_start_up_levels_and_refuse_run_time_ones() {
        let mut levels = Levels::new(LevelFilter::Trace, DEFAULT_CEILINGS.to_vec());
        assert_eq!(levels.effective("sled"), LevelFilter::Info);
        assert_eq!(levels.effective("sled::pagecache::segment"), LevelFilter::Info);
        assert_eq!(levels.effective("sledge"), LevelFilter::Trace);
        levels.set_capped("sled", LevelFilter::Trace);
        assert_eq!(levels.effective("sled"), LevelFilter::Info);
        assert!(matches!(
            levels.set(Some("sled"), LevelFilter::Debug),
            Err(LevelError::AboveCeiling { .. })
        ));
        levels.set(Some("sled"), LevelFilter::Off).unwrap();
        assert_eq!(levels.effective("sled::tree"), LevelFilter::Off);
    }
}
