//! Issue 13: per-account quotas and the global budget are decided inside `Store::apply`, from
//! the store's contents, so every replica refuses the same change.

mod common;

use common::Changes;
use sb_store::{
    MAX_OFFLINE_BYTES_PER_ACCOUNT, MAX_PENDING_SUBSCRIPTIONS, MAX_ROSTER_ITEM_BYTES, MAX_ROSTER_ITEMS, Quota,
    RosterItem, Store, StoreError, UserCredentials,
};

fn store_with_alice() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .add_user("alice", &UserCredentials::new("alice-pw").unwrap())
        .unwrap();
    (dir, store)
}

fn pending(jid: &str) -> RosterItem {
    let mut item = RosterItem::new(jid);
    item.listed = false;
    item.pending_in = true;
    item
}

fn quota(result: sb_store::Result<impl std::fmt::Debug>) -> Option<Quota> {
    match result {
        Err(StoreError::QuotaExceeded(q)) => Some(q),
        other => panic!("expected a quota error, got {other:?}"),
    }
}

#[test]
fn pending_subscriptions_stop_at_their_quota_and_answering_one_still_works() {
    let (_dir, store) = store_with_alice();
    for n in 0..MAX_PENDING_SUBSCRIPTIONS {
        store
            .put_roster_item("alice", &pending(&format!("c{n}@cb.example")))
            .unwrap();
    }
    assert_eq!(
        quota(store.put_roster_item("alice", &pending("one-more@cb.example"))),
        Some(Quota::PendingSubscriptions)
    );
    let pending_now = store.roster("alice").unwrap().iter().filter(|i| i.pending_in).count();
    assert_eq!(pending_now, MAX_PENDING_SUBSCRIPTIONS);
    // Accepting a request (pending_in off) and plain contacts still work.
    let mut accepted = pending("c0@cb.example");
    accepted.pending_in = false;
    accepted.listed = true;
    store.put_roster_item("alice", &accepted).unwrap();
    store
        .put_roster_item("alice", &RosterItem::new("romeo@example.net"))
        .unwrap();
}

#[test]
fn roster_items_stop_at_their_quota_and_oversized_items_are_refused() {
    let (_dir, store) = store_with_alice();
    for n in 0..MAX_ROSTER_ITEMS {
        store
            .put_roster_item("alice", &RosterItem::new(format!("c{n}@example.net")))
            .unwrap();
    }
    assert_eq!(
        quota(store.put_roster_item("alice", &RosterItem::new("extra@example.net"))),
        Some(Quota::RosterItems)
    );
    // Rewriting an existing item is not an addition.
    let mut renamed = RosterItem::new("c1@example.net");
    renamed.name = Some("C one".into());
    store.put_roster_item("alice", &renamed).unwrap();
    store.remove_roster_item("alice", "c2@example.net").unwrap();
    store
        .put_roster_item("alice", &RosterItem::new("extra@example.net"))
        .unwrap();

    let mut huge = RosterItem::new("c3@example.net");
    huge.name = Some("n".repeat(MAX_ROSTER_ITEM_BYTES));
    assert_eq!(
        quota(store.put_roster_item("alice", &huge)),
        Some(Quota::RosterItemSize)
    );
}

#[test]
fn offline_bytes_stop_at_the_account_quota_and_the_global_counter_follows() {
    let (_dir, store) = store_with_alice();
    let stanza = vec![b'x'; 200 * 1024];
    let fits = (MAX_OFFLINE_BYTES_PER_ACCOUNT / stanza.len() as u64) as usize;
    for _ in 0..fits {
        store.push_offline("alice", &stanza, 100).unwrap();
    }
    assert_eq!(
        quota(store.push_offline("alice", &stanza, 100)),
        Some(Quota::OfflineBytes)
    );
    assert_eq!(store.offline_bytes_total().unwrap(), (fits * stanza.len()) as u64);
    assert_eq!(store.take_offline("alice").unwrap().len(), fits);
    assert_eq!(store.offline_bytes_total().unwrap(), 0);
    store.push_offline("alice", b"<message/>", 100).unwrap();
    store.delete_user("alice").unwrap();
    assert_eq!(store.offline_bytes_total().unwrap(), 0);
}
