//! Every API through a close and reopen of a real sled store on disk.

mod common;
use common::Changes;
use sb_store::{ConfigChange, RosterItem, Store, StoreError, Subscription, TlsIdentity, UserCredentials, XmppConfig};
use std::path::Path;
use std::sync::OnceLock;

/// PBKDF2 at 4096 rounds is slow in debug builds; make each distinct credential once.
fn creds(password: &str) -> UserCredentials {
    static ALICE: OnceLock<UserCredentials> = OnceLock::new();
    static BOB: OnceLock<UserCredentials> = OnceLock::new();
    match password {
        "alice-pw" => ALICE.get_or_init(|| UserCredentials::new("alice-pw").unwrap()).clone(),
        "bob-pw" => BOB.get_or_init(|| UserCredentials::new("bob-pw").unwrap()).clone(),
        other => UserCredentials::new(other).unwrap(),
    }
}

fn reopen(dir: &Path, store: Store) -> Store {
    drop(store);
    Store::open(dir).unwrap()
}

#[test]
fn fresh_store_has_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let config = store.xmpp_config().unwrap();
    assert_eq!(config, XmppConfig::default());
    assert!(!config.is_configured());
    assert!(config.starttls_required);
    assert_eq!(config.offline_limit, 100);
    assert_eq!(config.max_stanza_bytes, 262_144);
    assert_eq!(store.list_users().unwrap(), Vec::<String>::new());
    assert_eq!(store.schema_version().unwrap(), sb_store::SCHEMA_VERSION);
    assert!(dir.path().join("store").is_dir());
}

#[test]
fn xmpp_config_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let config = XmppConfig {
        domain: "example.com".into(),
        listen: vec!["127.0.0.1".into(), "127.0.0.2:15222".into(), "[::1]:5222".into()],
        enabled: true,
        tls: Some(TlsIdentity {
            key: "node.key".into(),
            cert: "node.crt".into(),
            bundle: Some("bundle.pem".into()),
        }),
        starttls_required: false,
        offline_limit: 7,
        max_stanza_bytes: 65_536,
        hostname: Some("node1".into()),
        component_port: 15223,
        component_plain: true,
        cluster: sb_store::ClusterNodeConfig {
            enabled: true,
            trust: Some("cluster-trust.pem".into()),
            port: 15270,
        },
        web: sb_store::WebAdminConfig {
            enabled: true,
            listen: "a".into(),
            port: 18443,
            tls: None,
        },
        ssh: sb_store::SshConfig {
            enabled: true,
            listen: "a".into(),
            port: 2222,
            authorized_keys: vec![sb_store::AuthorizedKey {
                key_type: "ssh-ed25519".into(),
                base64: "AAAAC3NzaC1lZDI1NTE5AAAAIEv5".into(),
                comment: "ops@laptop".into(),
            }],
        },
    };
    store.set_xmpp_config(&config).unwrap();
    let store = reopen(dir.path(), store);
    assert_eq!(store.xmpp_config().unwrap(), config);

    let updated = store
        .update_xmpp_config(|c| {
            c.enabled = false;
            c.tls = None;
        })
        .unwrap();
    assert!(!updated.enabled);
    let store = reopen(dir.path(), store);
    let stored = store.xmpp_config().unwrap();
    assert_eq!(stored, updated);
    assert_eq!(stored.domain, "example.com");
}

#[test]
fn users_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.add_user("bob", &creds("bob-pw")).unwrap();
    store.add_user("alice", &creds("alice-pw")).unwrap();
    assert!(matches!(store.add_user("alice", &creds("bob-pw")), Err(StoreError::UserExists(n)) if n == "alice"));
    let store = reopen(dir.path(), store);

    assert_eq!(store.list_users().unwrap(), vec!["alice", "bob"]);
    assert!(store.user_exists("alice").unwrap());
    assert!(!store.user_exists("carol").unwrap());
    assert_eq!(store.user_credentials("carol").unwrap(), None);
    let alice = store.user_credentials("alice").unwrap().unwrap();
    assert_eq!(alice, creds("alice-pw"));
    assert!(alice.verify_plain("alice-pw"));

    store.set_user_credentials("alice", &creds("bob-pw")).unwrap();
    assert!(matches!(
        store.set_user_credentials("carol", &creds("bob-pw")),
        Err(StoreError::UserNotFound(n)) if n == "carol"
    ));
    let store = reopen(dir.path(), store);
    assert!(store.user_credentials("alice").unwrap().unwrap().verify_plain("bob-pw"));

    store.delete_user("bob").unwrap();
    assert!(matches!(store.delete_user("bob"), Err(StoreError::UserNotFound(_))));
    let store = reopen(dir.path(), store);
    assert_eq!(store.list_users().unwrap(), vec!["alice"]);
}

#[test]
fn roster_round_trip_with_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.add_user("alice", &creds("alice-pw")).unwrap();
    // "al" is a prefix of "alice": their rosters must not mix.
    store.add_user("al", &creds("bob-pw")).unwrap();
    assert_eq!(store.roster_version("alice").unwrap(), 0);

    let romeo = RosterItem {
        jid: "romeo@example.net".into(),
        name: Some("Romeo".into()),
        groups: vec!["Friends".into(), "Verona".into()],
        subscription: Subscription::Both,
        ask_out: false,
        pending_in: false,
        approved: false,
        listed: true,
    };
    let nurse = RosterItem {
        jid: "nurse@example.com".into(),
        subscription: Subscription::None,
        pending_in: true,
        listed: false,
        ..RosterItem::new("")
    };
    assert_eq!(store.put_roster_item("alice", &romeo).unwrap(), 1);
    assert_eq!(store.put_roster_item("alice", &nurse).unwrap(), 2);
    // Writing the identical item is no change.
    assert_eq!(store.put_roster_item("alice", &romeo).unwrap(), 2);
    store.put_roster_item("al", &RosterItem::new("x@example.org")).unwrap();
    assert!(matches!(
        store.put_roster_item("ghost", &romeo),
        Err(StoreError::UserNotFound(_))
    ));
    let store = reopen(dir.path(), store);

    assert_eq!(store.roster("alice").unwrap(), vec![nurse.clone(), romeo.clone()]);
    assert_eq!(store.roster("al").unwrap(), vec![RosterItem::new("x@example.org")]);
    assert_eq!(
        store.roster_item("alice", "romeo@example.net").unwrap(),
        Some(romeo.clone())
    );
    assert_eq!(store.roster_item("alice", "x@example.org").unwrap(), None);
    assert_eq!(store.roster_version("alice").unwrap(), 2);

    let mut changed = romeo.clone();
    changed.subscription = Subscription::To;
    changed.ask_out = true;
    assert_eq!(store.put_roster_item("alice", &changed).unwrap(), 3);
    assert_eq!(
        store.remove_roster_item("alice", "nurse@example.com").unwrap(),
        Some(nurse)
    );
    assert_eq!(store.remove_roster_item("alice", "nurse@example.com").unwrap(), None);
    let store = reopen(dir.path(), store);
    assert_eq!(store.roster_version("alice").unwrap(), 4);
    assert_eq!(store.roster("alice").unwrap(), vec![changed]);
}

/// The compare-and-set two cluster nodes rely on when they change one roster item at once.
#[test]
fn a_roster_swap_applies_only_over_the_item_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.add_user("alice", &creds("alice-pw")).unwrap();
    let swap = |before: Option<&RosterItem>, after: Option<&RosterItem>| {
        store.apply(&ConfigChange::SwapRosterItem {
            user: "alice".into(),
            contact: "romeo@example.net".into(),
            before: before.cloned(),
            after: after.cloned(),
        })
    };
    let read = RosterItem {
        subscription: Subscription::To,
        listed: true,
        ..RosterItem::new("romeo@example.net")
    };
    swap(None, Some(&read)).unwrap();

    // Another node changed it after this one read it: refused, nothing written.
    let theirs = RosterItem {
        subscription: Subscription::Both,
        ..read.clone()
    };
    swap(Some(&read), Some(&theirs)).unwrap();
    let ours = RosterItem {
        name: Some("Romeo".into()),
        ..read.clone()
    };
    let version = store.roster_version("alice").unwrap();
    assert!(matches!(
        swap(Some(&read), Some(&ours)),
        Err(StoreError::RosterItemChanged { user, contact }) if user == "alice" && contact == "romeo@example.net"
    ));
    assert!(matches!(
        swap(None, Some(&ours)),
        Err(StoreError::RosterItemChanged { .. })
    ));
    assert_eq!(
        store.roster_item("alice", "romeo@example.net").unwrap(),
        Some(theirs.clone())
    );
    assert_eq!(store.roster_version("alice").unwrap(), version);

    // Redone over what is stored: both changes stay.
    let both = RosterItem {
        name: Some("Romeo".into()),
        ..theirs.clone()
    };
    swap(Some(&theirs), Some(&both)).unwrap();
    let store_after = reopen(dir.path(), store);
    assert_eq!(
        store_after.roster_item("alice", "romeo@example.net").unwrap(),
        Some(both.clone())
    );

    // A removal is a swap to nothing; an item filed under another contact is refused.
    let swap = |before: Option<&RosterItem>, after: Option<&RosterItem>| {
        store_after.apply(&ConfigChange::SwapRosterItem {
            user: "alice".into(),
            contact: "romeo@example.net".into(),
            before: before.cloned(),
            after: after.cloned(),
        })
    };
    assert!(matches!(
        swap(Some(&both), Some(&RosterItem::new("juliet@example.net"))),
        Err(StoreError::Rejected(_))
    ));
    swap(Some(&both), None).unwrap();
    assert_eq!(store_after.roster_item("alice", "romeo@example.net").unwrap(), None);
    assert!(matches!(
        swap(Some(&both), None),
        Err(StoreError::RosterItemChanged { .. })
    ));
}

#[test]
fn offline_queue_round_trip_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.add_user("alice", &creds("alice-pw")).unwrap();
    store.add_user("al", &creds("bob-pw")).unwrap();
    for i in 0..3 {
        store
            .push_offline("alice", format!("<message id='{i}'/>").as_bytes(), 3)
            .unwrap();
    }
    match store.push_offline("alice", b"<message id='over'/>", 3) {
        Err(StoreError::OfflineQueueFull { user, limit }) => assert_eq!((user.as_str(), limit), ("alice", 3)),
        other => panic!("expected OfflineQueueFull, got {other:?}"),
    }
    store.push_offline("al", b"<message id='al'/>", 3).unwrap();
    assert!(matches!(
        store.push_offline("ghost", b"<m/>", 3),
        Err(StoreError::UserNotFound(_))
    ));
    let store = reopen(dir.path(), store);

    assert_eq!(store.offline_count("alice").unwrap(), 3);
    let taken = store.take_offline("alice").unwrap();
    let expected: Vec<Vec<u8>> = (0..3).map(|i| format!("<message id='{i}'/>").into_bytes()).collect();
    assert_eq!(taken, expected);
    assert_eq!(store.offline_count("alice").unwrap(), 0);
    assert_eq!(store.take_offline("alice").unwrap(), Vec::<Vec<u8>>::new());
    let store = reopen(dir.path(), store);
    assert_eq!(store.take_offline("alice").unwrap(), Vec::<Vec<u8>>::new());
    assert_eq!(store.take_offline("al").unwrap(), vec![b"<message id='al'/>".to_vec()]);

    // Order survives restarts between pushes too.
    store.push_offline("alice", b"first", 10).unwrap();
    let store = reopen(dir.path(), store);
    store.push_offline("alice", b"second", 10).unwrap();
    assert_eq!(
        store.take_offline("alice").unwrap(),
        vec![b"first".to_vec(), b"second".to_vec()]
    );
}

#[test]
fn deleting_a_user_deletes_roster_and_offline_and_a_namesake_starts_clean() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.add_user("alice", &creds("alice-pw")).unwrap();
    store.add_user("al", &creds("bob-pw")).unwrap();
    store
        .put_roster_item("alice", &RosterItem::new("romeo@example.net"))
        .unwrap();
    store.put_roster_item("al", &RosterItem::new("x@example.org")).unwrap();
    store.push_offline("alice", b"<message/>", 10).unwrap();
    store.push_offline("al", b"<al/>", 10).unwrap();
    store.delete_user("alice").unwrap();
    let store = reopen(dir.path(), store);

    assert!(!store.user_exists("alice").unwrap());
    assert_eq!(store.roster("alice").unwrap(), vec![]);
    assert_eq!(store.roster_version("alice").unwrap(), 0);
    assert_eq!(store.offline_count("alice").unwrap(), 0);
    store.add_user("alice", &creds("alice-pw")).unwrap();
    assert_eq!(store.roster("alice").unwrap(), vec![]);
    assert_eq!(store.take_offline("alice").unwrap(), Vec::<Vec<u8>>::new());
    // The neighbour with a prefix name is untouched.
    assert_eq!(store.roster("al").unwrap(), vec![RosterItem::new("x@example.org")]);
    assert_eq!(store.take_offline("al").unwrap(), vec![b"<al/>".to_vec()]);
}

#[test]
fn settings_round_trip() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Bridge {
        name: String,
        secret: String,
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let cb1 = Bridge {
        name: "cb1".into(),
        secret: "kvgP1SRzWVabhiPVAb1".into(),
    };
    store.put_setting("callbridge.cb1", &cb1).unwrap();
    store
        .put_setting(
            "callbridge.cb2",
            &Bridge {
                name: "cb2".into(),
                secret: "x".into(),
            },
        )
        .unwrap();
    store.put_setting("federation.enabled", &true).unwrap();
    let store = reopen(dir.path(), store);

    assert_eq!(store.get_setting::<Bridge>("callbridge.cb1").unwrap(), Some(cb1));
    assert_eq!(store.get_setting::<bool>("federation.enabled").unwrap(), Some(true));
    assert_eq!(store.get_setting::<bool>("federation.missing").unwrap(), None);
    assert_eq!(
        store.setting_keys("callbridge.").unwrap(),
        vec!["callbridge.cb1", "callbridge.cb2"]
    );
    // A value of the wrong type is reported as corrupt, naming the key.
    match store.get_setting::<u32>("callbridge.cb1") {
        Err(err @ StoreError::Corrupt { .. }) => {
            let text = err.to_string();
            assert!(text.contains("settings/callbridge.cb1"), "{text}");
            assert!(
                !text.contains("kvgP1SRzWVabhiPVAb1"),
                "a stored secret leaked into an error: {text}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // serde_json would quote a mistyped string value in its own message; ours must not.
    store
        .put_setting("callbridge.secret-only", &"kvgP1SRzWVabhiPVAb1")
        .unwrap();
    let text = store
        .get_setting::<u32>("callbridge.secret-only")
        .unwrap_err()
        .to_string();
    assert!(
        !text.contains("kvgP1SRzWVabhiPVAb1"),
        "a stored secret leaked into an error: {text}"
    );
    assert!(store.del_setting("callbridge.cb1").unwrap());
    assert!(!store.del_setting("callbridge.cb1").unwrap());
    let store = reopen(dir.path(), store);
    assert_eq!(
        store.setting_keys("callbridge.").unwrap(),
        vec!["callbridge.cb2", "callbridge.secret-only"]
    );
}

#[test]
fn clones_share_one_store_across_threads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.add_user("alice", &creds("alice-pw")).unwrap();
    let limit = 40;
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut accepted = 0;
                for i in 0..20 {
                    match store.push_offline("alice", format!("{t}-{i}").as_bytes(), limit) {
                        Ok(()) => accepted += 1,
                        Err(StoreError::OfflineQueueFull { .. }) => {}
                        Err(other) => panic!("{other}"),
                    }
                }
                accepted
            })
        })
        .collect();
    let accepted: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    // 80 attempts against a limit of 40: exactly the limit gets in, never more.
    assert_eq!(accepted, limit);
    assert_eq!(store.offline_count("alice").unwrap(), limit);
    assert_eq!(store.take_offline("alice").unwrap().len(), limit as usize);
}
