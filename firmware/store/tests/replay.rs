//! The replicated-log property: one sequence of changes applied to two empty stores leaves
//! them identical, entry by entry, including a change that fails on both.

use sb_store::{
    Applied, CallBridge, ConfigChange as C, DnsConfig, PrivacyList, PrivacyMode, RosterItem, Secret, SecurityMode,
    ServiceConfig, Store, StoreError, Subscription, UserCredentials,
};

fn changes() -> Vec<C> {
    // Generated once, outside the stores: salts are random, so each replica must get the
    // same bytes, exactly as a log entry carries them.
    let alice = UserCredentials::new("alice-pw").unwrap();
    let bob = UserCredentials::new("bob-pw").unwrap();
    let mut romeo = RosterItem::new("romeo@example.net");
    romeo.subscription = Subscription::Both;
    romeo.groups = vec!["Friends".into()];
    let mut pending = RosterItem::new("nurse@example.com");
    pending.listed = false;
    pending.pending_in = true;
    vec![
        C::SetService(ServiceConfig {
            domain: "example.com".into(),
            ..ServiceConfig::default()
        }),
        C::AddUser {
            name: "alice".into(),
            credentials: alice.clone(),
        },
        C::AddUser {
            name: "bob".into(),
            credentials: bob.clone(),
        },
        C::SetCredentials {
            name: "bob".into(),
            credentials: alice,
        },
        C::PutRosterItem {
            user: "alice".into(),
            item: romeo,
        },
        C::PutRosterItem {
            user: "alice".into(),
            item: pending,
        },
        C::RemoveRosterItem {
            user: "alice".into(),
            contact: "nurse@example.com".into(),
        },
        C::PushOffline {
            user: "alice".into(),
            stanza: b"<message id='1'/>".to_vec(),
            limit: 10,
        },
        C::PushOffline {
            user: "alice".into(),
            stanza: b"<message id='2'/>".to_vec(),
            limit: 10,
        },
        C::TakeOffline { user: "alice".into() },
        C::PushOffline {
            user: "alice".into(),
            stanza: b"<message id='3'/>".to_vec(),
            limit: 10,
        },
        C::PushOffline {
            user: "bob".into(),
            stanza: b"<message id='b'/>".to_vec(),
            limit: 10,
        },
        C::AddCallBridge(CallBridge {
            name: "cb1".into(),
            secret: Secret::new("one"),
            created_unix: 1_739_000_000,
        }),
        C::AddCallBridge(CallBridge {
            name: "cb2".into(),
            secret: Secret::new("two"),
            created_unix: 1_739_000_001,
        }),
        C::ReplaceCallBridge(CallBridge {
            name: "cb1".into(),
            secret: Secret::new("one-again"),
            created_unix: 1_739_000_002,
        }),
        C::DeleteCallBridge { name: "cb2".into() },
        C::EnableFederation {
            dialback_secret_if_unset: Some(Secret::new("generated-by-the-caller")),
        },
        C::SetDialbackSecret(Secret::new("shared-dialback")),
        C::SetFederationSecurity(SecurityMode::TlsOptional),
        C::SetFederationClientCerts(true),
        C::SetFederationPrivacy(PrivacyMode::Deny),
        C::SetFederationTrust(Some("peers.pem".into())),
        C::EditPrivacyList {
            list: PrivacyList::Deny,
            domain: "bad.example".into(),
            add: true,
        },
        C::EditPrivacyList {
            list: PrivacyList::Allow,
            domain: "good.example".into(),
            add: true,
        },
        C::EditRoute {
            domain: "b.example".into(),
            target: "127.0.0.2:5269".into(),
            add: true,
        },
        C::SetDns(DnsConfig {
            nameservers: vec!["127.0.0.53:5353".into()],
        }),
        C::PutSetting {
            key: "custom.key".into(),
            value: serde_json::json!({"n": 7}),
        },
        C::PutSetting {
            key: "custom.gone".into(),
            value: true.into(),
        },
        C::DeleteSetting {
            key: "custom.gone".into(),
        },
        // Fails: bob's namesake never existed.
        C::DeleteUser { name: "carol".into() },
        C::DeleteUser { name: "bob".into() },
        C::AddUser {
            name: "bob".into(),
            credentials: bob,
        },
        C::DisableFederation,
    ]
}

fn outcome(result: Result<Applied, StoreError>) -> String {
    match result {
        Ok(applied) => format!("ok {applied:?}"),
        Err(err) => format!("err {err}"),
    }
}

#[test]
fn one_sequence_replayed_into_two_stores_gives_identical_stores() {
    let first_dir = tempfile::tempdir().unwrap();
    let second_dir = tempfile::tempdir().unwrap();
    let first = Store::open(first_dir.path()).unwrap();
    let second = Store::open(second_dir.path()).unwrap();
    let mut failures = 0;
    for change in changes() {
        // What a log entry is: serialized, then read back on each replica.
        let entry = serde_json::to_vec(&change).unwrap();
        let on_first: C = serde_json::from_slice(&entry).unwrap();
        let on_second: C = serde_json::from_slice(&entry).unwrap();
        let before = first.export().unwrap();
        let a = outcome(first.apply(&on_first));
        let b = outcome(second.apply(&on_second));
        assert_eq!(a, b, "{change:?}");
        if a.starts_with("err") {
            failures += 1;
            assert_eq!(a, "err no such user 'carol'");
            assert_eq!(first.export().unwrap(), before, "a failed change must change nothing");
        }
        assert_eq!(first.export().unwrap(), second.export().unwrap(), "after {change:?}");
    }
    assert_eq!(failures, 1);
    let exported = first.export().unwrap();
    let entries: usize = exported.iter().map(|(_, entries)| entries.len()).sum();
    assert!(entries > 10, "the sequence must leave something to compare: {entries}");
    for (name, entries) in &exported {
        if ["users", "roster", "offline", "settings", "config"].contains(&name.as_str()) {
            assert!(!entries.is_empty(), "tree {name} is empty");
        }
    }
    // And the same after a reopen: the state is on disk, not in a cache.
    drop(first);
    let first = Store::open(first_dir.path()).unwrap();
    assert_eq!(first.export().unwrap(), second.export().unwrap());
}

#[test]
fn the_feed_carries_every_applied_change_in_order_and_reports_lag() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut feed = store.subscribe();
    let change = C::SetDns(DnsConfig::default());
    store.apply(&change).unwrap();
    assert!(store.apply(&C::DeleteUser { name: "nobody".into() }).is_err());
    let node_seq = store.set_node_config(&sb_store::NodeConfig::default()).unwrap();
    let first = feed.try_recv().unwrap();
    assert_eq!(first.seq, 1);
    assert!(matches!(&first.event, sb_store::FeedEvent::Change(c) if **c == change));
    let second = feed.try_recv().unwrap();
    assert_eq!(second.seq, 2, "a failed change is not published");
    assert_eq!(node_seq, 2);
    assert!(matches!(second.event, sb_store::FeedEvent::NodeConfigChanged));
    assert!(feed.try_recv().is_err());
    assert_eq!(store.last_seq(), 2);

    // A queued message is announced without its body (bounded feed memory).
    store
        .apply(&C::AddUser {
            name: "alice".into(),
            credentials: UserCredentials::new("pw").unwrap(),
        })
        .unwrap();
    store
        .apply(&C::PushOffline {
            user: "alice".into(),
            stanza: b"<message/>".to_vec(),
            limit: 10,
        })
        .unwrap();
    assert!(matches!(feed.try_recv().unwrap().event, sb_store::FeedEvent::Change(_)));
    assert!(matches!(
        feed.try_recv().unwrap().event,
        sb_store::FeedEvent::OfflineQueued { user } if user == "alice"
    ));

    // A subscriber that falls far behind is told so (and reloads everything).
    let mut slow = store.subscribe();
    for n in 0..1100u32 {
        store
            .apply(&C::PutSetting {
                key: format!("k{n}"),
                value: n.into(),
            })
            .unwrap();
    }
    assert!(matches!(
        slow.try_recv(),
        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_))
    ));
}
