//! A wave-1 data folder (schema 1, made by main's code: see fixtures/README.md) opens with
//! this build and keeps everything.

use sb_store::{ConfigChange, PrivacyMode, SCHEMA_VERSION, SecurityMode, Store, Subscription, TlsIdentity};
use std::path::Path;

fn copy_fixture(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1");
    let store = to.join("store");
    std::fs::create_dir_all(&store).unwrap();
    for name in ["conf", "db"] {
        std::fs::copy(from.join(name), store.join(name)).unwrap();
    }
}

fn check(store: &Store) {
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.list_users().unwrap(), vec!["alice".to_owned(), "bob".to_owned()]);
    assert!(store.user_credentials("alice").unwrap().is_some());

    let service = store.service_config().unwrap();
    assert_eq!(service.domain, "example.com");
    assert!(!service.starttls_required);
    assert_eq!(service.offline_limit, 42);
    assert_eq!(service.max_stanza_bytes, 65536);
    let node = store.node_config().unwrap();
    assert!(node.enabled, "enabled moved to this node's record (schema 3)");
    assert_eq!(node.listen, vec!["127.0.0.1:15222".to_owned(), "eth0".to_owned()]);
    assert_eq!(
        node.tls,
        Some(TlsIdentity {
            key: "server.key".into(),
            cert: "server.crt".into(),
            bundle: Some("bundle.pem".into()),
        })
    );
    assert_eq!(node.hostname.as_deref(), Some("sb1"));
    assert_eq!(node.component_port, 15223);
    assert!(node.component_plain);

    let bridges = store.list_callbridges().unwrap();
    assert_eq!(bridges.len(), 1);
    assert_eq!(bridges[0].name, "cb1");
    assert_eq!(bridges[0].secret.expose(), "cb1-secret");
    assert_eq!(bridges[0].created_unix, 1_739_000_000);

    let federation = store.federation_config().unwrap();
    assert!(federation.enabled);
    assert_eq!(
        federation.dialback_secret.as_ref().map(|s| s.expose()),
        Some("dialback-secret")
    );
    assert_eq!(federation.security, SecurityMode::TlsOptional);
    assert_eq!(federation.privacy, PrivacyMode::Deny);
    assert_eq!(federation.deny, vec!["bad.example".to_owned()]);
    assert_eq!(federation.allow, vec!["good.example".to_owned()]);
    assert_eq!(federation.routes["b.example"], vec!["127.0.0.2:5269".to_owned()]);
    assert_eq!(federation.trust_bundle.as_deref(), Some("peers.pem"));
    assert!(federation.client_certs);
    assert_eq!(
        store.dns_config().unwrap().nameservers,
        vec!["127.0.0.53:5353".to_owned()]
    );
    assert_eq!(store.get_setting::<u32>("custom.key").unwrap(), Some(7));

    let roster = store.roster("alice").unwrap();
    assert_eq!(roster.len(), 2);
    let romeo = store.roster_item("alice", "romeo@example.net").unwrap().unwrap();
    assert_eq!(romeo.name.as_deref(), Some("Romeo"));
    assert_eq!(romeo.subscription, Subscription::Both);
    let nurse = store.roster_item("alice", "nurse@example.com").unwrap().unwrap();
    assert!(nurse.pending_in && !nurse.listed);
    assert_eq!(store.roster_version("alice").unwrap(), 2);
}

#[test]
fn a_wave_one_store_opens_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    let store = Store::open(dir.path()).unwrap();
    check(&store);
    assert_eq!(store.offline_count("alice").unwrap(), 2);
    assert_eq!(
        store.offline_messages("alice").unwrap(),
        vec![b"<message id='1'/>".to_vec(), b"<message id='2'/>".to_vec()]
    );

    // New messages queue after the migrated ones (the per-user counter starts past them).
    store
        .apply(&ConfigChange::PushOffline {
            user: "alice".into(),
            stanza: b"<message id='3'/>".to_vec(),
            limit: 100,
        })
        .unwrap();
    let taken = store
        .apply(&ConfigChange::TakeOffline { user: "alice".into() })
        .unwrap();
    assert_eq!(
        taken,
        sb_store::Applied::OfflineTaken(vec![
            b"<message id='1'/>".to_vec(),
            b"<message id='2'/>".to_vec(),
            b"<message id='3'/>".to_vec(),
        ])
    );
    assert_eq!(
        store.offline_messages("bob").unwrap(),
        vec![b"<message id='b'/>".to_vec()]
    );

    // Reopening runs no migration again and changes nothing.
    let before = store.export().unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    check(&store);
    assert_eq!(store.export().unwrap(), before);
}
