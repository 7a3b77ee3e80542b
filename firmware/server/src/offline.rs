//! Offline messages (XEP-0160): chat and normal messages for an account with no available
//! resource are stored with a XEP-0203 delay stamp, delivered at the next initial presence
//! with a non-negative priority, and then deleted. Each account's queue is capped; beyond
//! the cap the sender gets `<resource-constraint/>` (type `wait`): the account exists and
//! the condition is temporary, which `service-unavailable` would not tell.

use crate::core::Core;
use crate::storage::StorageError;
use sb_proto::{Element, StanzaError, StanzaErrorCondition, ns};

pub const FEATURES: &[&str] = &["msgoffline"];

const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";

/// Whether a message carries anything worth keeping: chat state notifications alone are
/// not (XEP-0085 §5.6).
pub fn worth_storing(message: &Element) -> bool {
    message.elements().any(|child| child.ns != NS_CHATSTATES)
}

/// `2026-11-21T20:13:22Z` for a Unix time (XEP-0082 DateTime profile, UTC).
pub fn xep0082_stamp(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm): exact for the whole u64/86400 range we
    // can meet, without a date library.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Store `message` for `user`, or answer the sender when it cannot be stored.
pub async fn store(core: &Core, user: &str, mut message: Element) {
    if !worth_storing(&message) {
        return;
    }
    let settings = core.settings();
    message.push_child(
        Element::new("delay", ns::DELAY)
            .with_attr("from", settings.domain.clone())
            .with_attr("stamp", xep0082_stamp(crate::core::unix_now())),
    );
    let bytes = message.to_bytes(ns::CLIENT);
    match core.storage.push_offline(user, bytes, settings.offline_limit).await {
        Ok(()) => log::debug!("stored an offline message for {user}"),
        Err(StorageError::OfflineQueueFull) => {
            log::info!("offline queue of {user} is full; refusing a message");
            strip_delay(&mut message);
            core.bounce(
                &message,
                StanzaError::with_text(
                    StanzaErrorCondition::ResourceConstraint,
                    "the recipient is offline and its message store is full",
                ),
            )
            .await;
        }
        Err(StorageError::Quota(quota)) => {
            log::info!("offline messages of {user}: {quota}; refusing a message");
            strip_delay(&mut message);
            core.bounce(
                &message,
                StanzaError::with_text(StanzaErrorCondition::ResourceConstraint, quota.to_string()),
            )
            .await;
        }
        Err(e @ StorageError::NoQuorum { .. }) => {
            // Storing it would need a replicated write the cluster cannot make now: tell the
            // sender (a wait-type error, so a client may retry) rather than lose it.
            log::warn!("offline message for {user} refused: {e}");
            strip_delay(&mut message);
            core.bounce(
                &message,
                StanzaError::with_text(
                    StanzaErrorCondition::ResourceConstraint,
                    "the recipient is offline and the message cannot be stored now (no quorum)",
                ),
            )
            .await;
        }
        Err(e) => {
            log::error!("offline storage for {user}: {e}");
            strip_delay(&mut message);
            core.bounce(&message, StanzaError::new(StanzaErrorCondition::InternalServerError))
                .await;
        }
    }
}

fn strip_delay(message: &mut Element) {
    message
        .children
        .retain(|n| !matches!(n, sb_proto::Node::Element(e) if e.is("delay", ns::DELAY)));
}

/// Stored messages on their way to a session, deleted only when the client proves it read
/// them: they are followed by an XEP-0199 ping, and the client's answer to it (a result or
/// an error: RFC 6120 §8.2.3 obliges it to answer) arrives after the client read every
/// message before it, on the same ordered stream. A session that ends without answering
/// leaves them stored, and the next login gets them again: delivery is at least once, and
/// a client that read them but died before answering sees them twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingAck {
    /// The id of the ping that follows the messages.
    pub ping_id: String,
    /// The sequence number of the last message delivered.
    pub through: u64,
}

/// The stored messages of `user` for delivery, with the ping that follows them (both
/// serialized for the session's stream) and what its answer acknowledges. `None` when
/// nothing is stored.
pub fn deliver(core: &Core, user: &str, to: &str) -> Option<(Vec<Vec<u8>>, PendingAck)> {
    let queue = match core.storage.offline_queue(user) {
        Ok(queue) => queue,
        Err(e) => {
            log::error!("offline messages of {user}: {e}");
            return None;
        }
    };
    let through = queue.last()?.0;
    let ping_id = format!("offline-{}", core.unique_id());
    let mut raw: Vec<Vec<u8>> = queue.into_iter().map(|(_, stanza)| stanza).collect();
    let ping = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("id", ping_id.clone())
        .with_attr("from", core.domain())
        .with_attr("to", to)
        .with_child(Element::new("ping", ns::PING));
    raw.push(ping.to_bytes(ns::CLIENT));
    Some((raw, PendingAck { ping_id, through }))
}

/// Whether `stanza` (from the client, `from` already stamped) answers the ping of `pending`.
pub fn answers(pending: &PendingAck, stanza: &Element) -> bool {
    stanza.name == "iq"
        && matches!(stanza.attr("type"), Some("result" | "error"))
        && stanza.attr("id") == Some(pending.ping_id.as_str())
}

/// The client has the messages of `pending`: delete them.
pub async fn acknowledge(core: &Core, user: &str, pending: &PendingAck) {
    match core.storage.acknowledge_offline(user, pending.through).await {
        Ok(()) => log::debug!("offline messages of {user} delivered"),
        Err(e) => log::error!("offline messages of {user}: deleting the delivered ones: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Core, Settings};
    use crate::router::test_doubles::RecordingLink;
    use crate::router::{NodeId, SessionHandle, SessionMeta};
    use crate::storage::Storage;
    use crate::tuning::ServerTuning;
    use sb_store::{ConfigChange, ConfigWriter, WriteError, Written};
    use std::sync::Arc;

    /// A cluster cut off from its majority: every write is refused.
    struct NoQuorumWriter;

    impl ConfigWriter for NoQuorumWriter {
        fn write(&self, _change: ConfigChange) -> Result<Written, WriteError> {
            Err(WriteError::NoQuorum {
                unreachable: vec!["node2".into(), "node3".into()],
            })
        }
    }

    #[tokio::test]
    async fn a_message_that_cannot_be_stored_for_want_of_quorum_is_bounced() {
        let dir = tempfile::tempdir().unwrap();
        let store = sb_store::Store::open(dir.path()).unwrap();
        store
            .apply(&ConfigChange::AddUser {
                name: "juliet".into(),
                credentials: sb_store::UserCredentials::new("pencil").unwrap(),
            })
            .unwrap();
        let settings = Settings {
            domain: "example.com".into(),
            tls: None,
            starttls_required: true,
            max_stanza_bytes: 65_536,
            offline_limit: 10,
        };
        let storage = Storage::with_writer(store.clone(), Arc::new(NoQuorumWriter));
        let core = Core::new(storage, dir.path().to_owned(), ServerTuning::default(), settings);
        let romeo = Arc::new(RecordingLink::default());
        let meta = SessionMeta {
            peer: "127.0.0.1:1".parse().unwrap(),
            since_unix: 0,
            tls: true,
        };
        core.router.bind(
            "romeo",
            "orchard",
            SessionHandle::remote(7, NodeId::new("c"), romeo.clone()),
            meta,
        );
        let message = Element::new("message", ns::CLIENT)
            .with_attr("type", "chat")
            .with_attr("from", "romeo@example.com/orchard")
            .with_attr("to", "juliet@example.com")
            .with_child(Element::new("body", ns::CLIENT).with_text("wherefore"));
        core.route(message).await;
        let delivered = romeo.delivered.lock().unwrap().clone();
        assert_eq!(delivered.len(), 1, "{delivered:?}");
        let bounce = &delivered[0].2;
        assert!(bounce.contains("type='error'"), "{bounce}");
        assert!(bounce.contains("resource-constraint"), "{bounce}");
        assert!(bounce.contains("no quorum"), "{bounce}");
        assert_eq!(store.offline_count("juliet").unwrap(), 0);
    }

    #[test]
    fn stamps() {
        assert_eq!(xep0082_stamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(xep0082_stamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(xep0082_stamp(1_795_292_002), "2026-11-21T20:13:22Z");
    }

    #[test]
    fn chat_states_alone_are_not_stored() {
        let composing = Element::new("message", ns::CLIENT).with_child(Element::new("composing", NS_CHATSTATES));
        assert!(!worth_storing(&composing));
        let body = composing
            .clone()
            .with_child(Element::new("body", ns::CLIENT).with_text("hi"));
        assert!(worth_storing(&body));
    }
}
