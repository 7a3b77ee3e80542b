//! Who may federate: the privacy mode with its allow/deny lists, and static routes.
//!
//! Pure decisions over a settings snapshot, used for both directions: a stanza our user
//! sends to a remote domain, and a remote domain asking to be accepted (dialback or SASL).

use sb_store::{FederationConfig, PrivacyMode};

/// The normalized form domains are compared in: lower case, no trailing dot. Domains are
/// exact matches (no wildcard, no subdomain rule), as on Expressway.
pub use sb_proto::domain::comparison_key as normalize_domain;

/// A snapshot of the federation policy, cheap to consult per stanza.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub mode: PrivacyMode,
    allow: Vec<String>,
    deny: Vec<String>,
    routed: Vec<String>,
}

/// Why a domain may or may not federate, for the log and the bounce text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    AllowedPrivacyOff,
    AllowedListed,
    AllowedNotDenied,
    /// Routed domains are allowed whatever the lists say.
    AllowedRouted,
    DeniedNotListed,
    DeniedListed,
}

impl Decision {
    pub fn allowed(self) -> bool {
        matches!(
            self,
            Decision::AllowedPrivacyOff
                | Decision::AllowedListed
                | Decision::AllowedNotDenied
                | Decision::AllowedRouted
        )
    }

    pub fn describe(self) -> &'static str {
        match self {
            Decision::AllowedPrivacyOff => "privacy mode is off",
            Decision::AllowedListed => "on the allow list",
            Decision::AllowedNotDenied => "not on the deny list",
            Decision::AllowedRouted => "has a static route",
            Decision::DeniedNotListed => "not on the allow list",
            Decision::DeniedListed => "on the deny list",
        }
    }
}

impl Policy {
    pub fn from_config(config: &FederationConfig) -> Policy {
        let norm = |list: &[String]| list.iter().map(|d| normalize_domain(d)).collect();
        Policy {
            mode: config.privacy,
            allow: norm(&config.allow),
            deny: norm(&config.deny),
            routed: config.routes.keys().map(|d| normalize_domain(d)).collect(),
        }
    }

    pub fn decide(&self, domain: &str) -> Decision {
        let domain = normalize_domain(domain);
        if self.routed.contains(&domain) {
            return Decision::AllowedRouted;
        }
        match self.mode {
            PrivacyMode::Off => Decision::AllowedPrivacyOff,
            PrivacyMode::Allow if self.allow.contains(&domain) => Decision::AllowedListed,
            PrivacyMode::Allow => Decision::DeniedNotListed,
            PrivacyMode::Deny if self.deny.contains(&domain) => Decision::DeniedListed,
            PrivacyMode::Deny => Decision::AllowedNotDenied,
        }
    }

    pub fn allows(&self, domain: &str) -> bool {
        self.decide(domain).allowed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(privacy: PrivacyMode) -> FederationConfig {
        let mut config = FederationConfig {
            privacy,
            allow: vec!["b.example".into()],
            deny: vec!["evil.example".into(), "routed.example".into()],
            ..FederationConfig::default()
        };
        config.routes.insert("Routed.Example".into(), vec!["127.0.0.9".into()]);
        config
    }

    #[test]
    fn default_policy_allows_nobody_but_routed_domains() {
        let policy = Policy::from_config(&FederationConfig::default());
        assert_eq!(policy.decide("b.example"), Decision::DeniedNotListed);
        let policy = Policy::from_config(&config(PrivacyMode::Allow));
        assert_eq!(policy.decide("B.EXAMPLE."), Decision::AllowedListed);
        assert_eq!(policy.decide("c.example"), Decision::DeniedNotListed);
        assert_eq!(policy.decide("routed.example"), Decision::AllowedRouted);
        // Exact matches only: a subdomain of an allowed domain is another domain.
        assert_eq!(policy.decide("conference.b.example"), Decision::DeniedNotListed);
    }

    #[test]
    fn deny_mode_blocks_listed_domains_except_routed_ones() {
        let policy = Policy::from_config(&config(PrivacyMode::Deny));
        assert!(policy.allows("c.example"));
        assert_eq!(policy.decide("evil.example"), Decision::DeniedListed);
        assert!(!policy.allows("Evil.Example"));
        assert_eq!(policy.decide("routed.example"), Decision::AllowedRouted);
    }

    #[test]
    fn privacy_off_allows_everyone() {
        let policy = Policy::from_config(&config(PrivacyMode::Off));
        assert!(policy.allows("evil.example"));
        assert!(policy.allows("anything.example"));
    }
}
