//! What the running daemon does about each change-feed event. One table, whoever made the
//! change (an admin command here, the server's own writes, or later the cluster's leader):
//! xmppd subscribes to the store's feed and performs these reactions, and tests can check the
//! mapping without a daemon.

use sb_store::{ConfigChange, FeedEvent};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reaction {
    /// Re-read the XMPP configuration: rebind listeners, reload the TLS identity, start or
    /// stop the service.
    ReloadServer,
    /// Re-read federation and DNS settings (and the domain, listeners, certificate they use).
    ReloadFederation,
    /// Open, close or reopen this node's cluster port to match its settings.
    ReloadCluster,
    /// An account was deleted or its password changed: end that user's sessions.
    EndSessionsOf(String),
    /// The shared state was replaced whole (a replica snapshot, a restore) or events were
    /// missed: end the sessions of accounts that no longer exist.
    EndSessionsWithoutAccount,
    /// A Call Bridge was added, deleted or re-keyed: a deleted or re-keyed bridge's
    /// connection must end (secrets are read from the store at each handshake).
    CallBridgeChanged(String),
}

/// The reactions one event needs, in order.
pub fn reactions(event: &FeedEvent) -> Vec<Reaction> {
    use ConfigChange as C;
    match event {
        // The cluster port follows this node's listen address, certificate and cluster settings.
        FeedEvent::NodeConfigChanged => vec![
            Reaction::ReloadServer,
            Reaction::ReloadFederation,
            Reaction::ReloadCluster,
        ],
        FeedEvent::OfflineQueued { .. } => Vec::new(),
        FeedEvent::Replaced => full_resync(),
        FeedEvent::Change(change) => match &**change {
            // Listen addresses, domain and certificate matter to federation too.
            C::SetService(_) => vec![Reaction::ReloadServer, Reaction::ReloadFederation],
            C::SetCredentials { name, .. } | C::DeleteUser { name } => vec![Reaction::EndSessionsOf(name.clone())],
            C::AddCallBridge(bridge) | C::ReplaceCallBridge(bridge) => {
                vec![Reaction::CallBridgeChanged(bridge.name.clone())]
            }
            C::DeleteCallBridge { name } => vec![Reaction::CallBridgeChanged(name.clone())],
            C::SetFederation(_)
            | C::EnableFederation { .. }
            | C::DisableFederation
            | C::SetDialbackSecret(_)
            | C::SetFederationSecurity(_)
            | C::SetFederationClientCerts(_)
            | C::SetFederationPrivacy(_)
            | C::SetFederationTrust(_)
            | C::SetFederationVerify(_)
            | C::EditUnverifiedDomain { .. }
            | C::SetFederationAllowInternal(_)
            | C::EditPrivacyList { .. }
            | C::EditRoute { .. }
            | C::SetDns(_) => vec![Reaction::ReloadFederation],
            // Read from the store when used: nothing running holds a copy.
            C::AddUser { .. }
            | C::PutRosterItem { .. }
            | C::RemoveRosterItem { .. }
            | C::SwapRosterItem { .. }
            | C::PushOffline { .. }
            | C::TakeOffline { .. }
            | C::AckOffline { .. }
            | C::PutSetting { .. }
            | C::DeleteSetting { .. } => Vec::new(),
        },
    }
}

/// After the shared state was replaced whole, or a subscriber lagged (it missed events, so it
/// cannot know which): reload everything that can be reloaded, and end the sessions of
/// accounts that are gone (a cluster node cut off while a user was deleted catches up by
/// snapshot). Sessions of users whose password changed in the gap are not found this way.
pub fn full_resync() -> Vec<Reaction> {
    vec![
        Reaction::ReloadServer,
        Reaction::ReloadFederation,
        Reaction::EndSessionsWithoutAccount,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn of(change: ConfigChange) -> Vec<Reaction> {
        reactions(&FeedEvent::Change(Arc::new(change)))
    }

    #[test]
    fn each_kind_of_change_gets_its_reaction() {
        assert_eq!(
            reactions(&FeedEvent::NodeConfigChanged),
            vec![
                Reaction::ReloadServer,
                Reaction::ReloadFederation,
                Reaction::ReloadCluster
            ]
        );
        assert_eq!(
            of(ConfigChange::DeleteUser { name: "bob".into() }),
            vec![Reaction::EndSessionsOf("bob".into())]
        );
        assert_eq!(
            of(ConfigChange::DeleteCallBridge { name: "cb1".into() }),
            vec![Reaction::CallBridgeChanged("cb1".into())]
        );
        assert_eq!(of(ConfigChange::DisableFederation), vec![Reaction::ReloadFederation]);
        assert_eq!(of(ConfigChange::TakeOffline { user: "bob".into() }), vec![]);
    }
}
