//! The store as a replica of the cluster log: entries applied with their index on two stores
//! leave identical shared state; a snapshot carries it to a third; this node's own record never
//! travels; refusals come back as the same errors; a replayed index changes nothing.

use sb_store::{
    Answer, Applied, ConfigChange as C, LogEntry, NodeConfig, ServiceConfig, Store, StoreError, UserCredentials,
};

fn entries() -> Vec<Vec<u8>> {
    let alice = UserCredentials::new("alice-pw-1").unwrap();
    [
        C::SetService(ServiceConfig {
            domain: "example.com".into(),
            ..ServiceConfig::default()
        }),
        C::AddUser {
            name: "alice".into(),
            credentials: alice.clone(),
        },
        // Refused on every replica alike.
        C::AddUser {
            name: "alice".into(),
            credentials: alice,
        },
        C::PushOffline {
            user: "alice".into(),
            stanza: b"<message/>".to_vec(),
            limit: 10,
        },
    ]
    .into_iter()
    .map(|change| LogEntry::Change(change).encode().unwrap())
    .collect()
}

fn own_node(store: &Store, port: u16) -> NodeConfig {
    let node = NodeConfig {
        listen: vec![format!("127.0.0.1:{port}")],
        enabled: true,
        ..NodeConfig::default()
    };
    store.set_node_config(&node).unwrap();
    node
}

#[test]
fn replicas_agree_and_a_snapshot_carries_the_shared_state_only() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let stores: Vec<Store> = dirs.iter().map(|d| Store::open(d.path()).unwrap()).collect();
    let nodes: Vec<NodeConfig> = stores.iter().zip(15222..).map(|(s, port)| own_node(s, port)).collect();

    let mut answers = Vec::new();
    for (index, entry) in (1..).zip(entries()) {
        let first = Answer::decode(&stores[0].apply_entry(index, &entry).unwrap()).unwrap();
        let second = Answer::decode(&stores[1].apply_entry(index, &entry).unwrap()).unwrap();
        assert_eq!(first.index, index);
        assert_eq!(format!("{:?}", first.outcome), format!("{:?}", second.outcome));
        answers.push(first.outcome);
    }
    assert_eq!(answers[1], Ok(Applied::Done));
    match answers[2].clone().map_err(|r| r.into_error()) {
        Err(StoreError::UserExists(name)) => assert_eq!(name, "alice"),
        other => panic!("expected UserExists, got {other:?}"),
    }
    assert_eq!(stores[0].applied_index().unwrap(), Some(4));
    assert_eq!(stores[0].shared_state().unwrap(), stores[1].shared_state().unwrap());

    // A replayed entry (a crash between the store and consensus' bookkeeping) is skipped.
    stores[0].apply_entry(4, &entries()[3]).unwrap();
    assert_eq!(stores[0].offline_queue("alice").unwrap().len(), 1);

    // The third store catches up by snapshot and keeps its own listen addresses.
    let snapshot = stores[0].replica_snapshot().unwrap();
    stores[2].install_replica_snapshot(&snapshot).unwrap();
    assert_eq!(stores[2].shared_state().unwrap(), stores[0].shared_state().unwrap());
    assert_eq!(stores[2].applied_index().unwrap(), Some(4));
    assert_eq!(stores[2].node_config().unwrap(), nodes[2]);
    assert_eq!(stores[2].service_config().unwrap().domain, "example.com");
    assert!(stores[2].user_credentials("alice").unwrap().is_some());
}

#[test]
fn the_founding_entry_replaces_the_state_and_clearing_keeps_this_node() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let founder = Store::open(dirs[0].path()).unwrap();
    let joiner = Store::open(dirs[1].path()).unwrap();
    let joiner_node = own_node(&joiner, 16222);
    for (index, entry) in (1..).zip(entries()) {
        founder.apply_entry(index, &entry).unwrap();
    }
    let founding = LogEntry::Replace(founder.shared_state().unwrap()).encode().unwrap();

    let before = joiner.shared_state().unwrap();
    joiner.clear_shared().unwrap();
    assert_eq!(joiner.applied_index().unwrap(), None);
    assert_eq!(joiner.node_config().unwrap(), joiner_node);
    let answer = Answer::decode(&joiner.apply_entry(1, &founding).unwrap()).unwrap();
    assert_eq!(answer.outcome, Ok(Applied::Done));
    assert_eq!(joiner.shared_state().unwrap(), founder.shared_state().unwrap());
    assert_eq!(joiner.node_config().unwrap(), joiner_node);

    // A failed join puts the old state back.
    joiner.restore_shared(&before).unwrap();
    assert_eq!(joiner.shared_state().unwrap(), before);

    // Bytes that are no entry are refused the same way everywhere, not a fault.
    let answer = Answer::decode(&joiner.apply_entry(9, b"not json").unwrap()).unwrap();
    assert!(answer.outcome.is_err());
    assert_eq!(joiner.applied_index().unwrap(), Some(9));
}
