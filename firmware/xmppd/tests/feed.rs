//! The change-feed path: a change applied to the store through the writer (no admin layer,
//! no notification call) reaches the running server, in-process.

mod common;

use common::{Client, DOMAIN, PASSWORD};
use sb_server::{Server, ServerTuning};
use sb_store::{ConfigChange, ConfigWriter, LocalWriter, NodeConfig, ServiceConfig, Store, UserCredentials, Written};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn free_addr() -> SocketAddr {
    let probe = TcpListener::bind("127.0.0.1:0").expect("probe port");
    probe.local_addr().expect("probe address")
}

async fn write(writer: &Arc<LocalWriter>, change: ConfigChange) -> Written {
    let writer = Arc::clone(writer);
    tokio::task::spawn_blocking(move || writer.write(change))
        .await
        .expect("writer task")
        .expect("write")
}

/// This node's settings: the service on or off, clients on `listen`, no Call Bridge port.
fn serving(listen: SocketAddr, enabled: bool) -> NodeConfig {
    NodeConfig {
        enabled,
        listen: vec![listen.to_string()],
        component_port: 0,
        ..NodeConfig::default()
    }
}

fn listening_on(server: &Server) -> Vec<SocketAddr> {
    server.status().listeners.iter().filter_map(|l| l.bound).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_written_to_the_store_reach_the_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");
    let writer = Arc::new(LocalWriter::new(store.clone()));
    let first = free_addr();
    write(
        &writer,
        ConfigChange::SetService(ServiceConfig {
            domain: DOMAIN.to_owned(),
            starttls_required: false,
            ..ServiceConfig::default()
        }),
    )
    .await;
    store.set_node_config(&serving(first, true)).expect("node config");
    write(
        &writer,
        ConfigChange::AddUser {
            name: "alice".into(),
            credentials: UserCredentials::new(PASSWORD).expect("credentials"),
        },
    )
    .await;

    let server = Server::new(store.clone(), dir.path(), ServerTuning::default());
    server.start().await.expect("start");
    let (reconciled, reconciler) = xmppd::reconciler::spawn(&store, Arc::clone(&server), None, None);
    assert_eq!(listening_on(&server), vec![first]);

    // A user deleted through the writer loses its session.
    let mut alice = Client::connect(first).await;
    alice.open_stream(DOMAIN).await;
    alice.authenticate("alice", PASSWORD).await.expect("login");
    alice.restart_stream();
    alice.open_stream(DOMAIN).await;
    alice.bind(Some("phone")).await;
    assert_eq!(server.status().sessions.len(), 1);
    let deleted = write(&writer, ConfigChange::DeleteUser { name: "alice".into() }).await;
    assert!(
        reconciled.wait_for(deleted.seq, WAIT).await,
        "reconciler never reached {}",
        deleted.seq
    );
    tokio::time::timeout(WAIT, alice.expect_stream_error("not-authorized"))
        .await
        .expect("the deleted user's session must close");

    // A node-local change (not a ConfigChange) moves the listener.
    let second = free_addr();
    let seq = store.set_node_config(&serving(second, true)).expect("move listener");
    assert!(reconciled.wait_for(seq, WAIT).await);
    assert_eq!(listening_on(&server), vec![second]);
    Client::connect(second).await.open_stream(DOMAIN).await;

    // A shared change through the writer: the domain served changes.
    let renamed = write(
        &writer,
        ConfigChange::SetService(ServiceConfig {
            domain: "renamed.example".to_owned(),
            starttls_required: false,
            ..ServiceConfig::default()
        }),
    )
    .await;
    assert!(reconciled.wait_for(renamed.seq, WAIT).await);
    assert_eq!(server.status().domain, "renamed.example");

    // A node-local change: the service is disabled on this node.
    let seq = store.set_node_config(&serving(second, false)).expect("disable");
    assert!(reconciled.wait_for(seq, WAIT).await);
    assert!(!server.status().enabled);
    assert_eq!(listening_on(&server), Vec::<SocketAddr>::new());

    reconciler.abort();
    server.shutdown().await;
}

/// A node cut off while an account was deleted catches up by installing a replica snapshot:
/// no DeleteUser event reaches it, yet the deleted user's session must end (the others stay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_snapshot_without_an_account_ends_its_sessions() {
    let service = ServiceConfig {
        domain: DOMAIN.to_owned(),
        starttls_required: false,
        ..ServiceConfig::default()
    };
    let add = |name: &str| ConfigChange::AddUser {
        name: name.into(),
        credentials: UserCredentials::new(PASSWORD).expect("credentials"),
    };
    // The cluster's state after the deletion: bob only.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let other = Store::open(elsewhere.path()).expect("open other store");
    other
        .apply(&ConfigChange::SetService(service.clone()))
        .expect("service");
    other.apply(&add("bob")).expect("bob");
    let snapshot = other.replica_snapshot().expect("snapshot");

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");
    let writer = Arc::new(LocalWriter::new(store.clone()));
    let addr = free_addr();
    write(&writer, ConfigChange::SetService(service)).await;
    write(&writer, add("alice")).await;
    write(&writer, add("bob")).await;
    store.set_node_config(&serving(addr, true)).expect("node config");
    let server = Server::new(store.clone(), dir.path(), ServerTuning::default());
    server.start().await.expect("start");
    let (reconciled, reconciler) = xmppd::reconciler::spawn(&store, Arc::clone(&server), None, None);
    let mut sessions = Vec::new();
    for user in ["alice", "bob"] {
        let mut client = Client::connect(addr).await;
        client.open_stream(DOMAIN).await;
        client.authenticate(user, PASSWORD).await.expect("login");
        client.restart_stream();
        client.open_stream(DOMAIN).await;
        client.bind(Some("phone")).await;
        sessions.push(client);
    }
    assert_eq!(server.status().sessions.len(), 2);

    store.install_replica_snapshot(&snapshot).expect("install");
    assert!(reconciled.wait_for(store.last_seq(), WAIT).await);
    let mut alice = sessions.remove(0);
    tokio::time::timeout(WAIT, alice.expect_stream_error("not-authorized"))
        .await
        .expect("the session of the account the snapshot no longer has must close");
    let users: Vec<String> = server.status().sessions.iter().map(|s| s.jid.clone()).collect();
    assert_eq!(users.len(), 1, "bob's session stays: {users:?}");
    assert!(users[0].starts_with("bob@"), "{users:?}");
    reconciler.abort();
    server.shutdown().await;
}
