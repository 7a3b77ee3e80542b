//! Routing across nodes in one process: real clusters on 127.0.<net>.x with mutual TLS and
//! sled, one server core per node with its own store, sessions bound straight on the
//! routers (their queues stand in for client streams). Waits are bounded polls.

#[path = "../../cluster/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sb_proto::{Element, StreamErrorCondition, ns};
use sb_relay::{Directory, router_node};
use sb_server::Server;
use sb_server::core::{Core, Settings};
use sb_server::router::{DeliveryError, Outbound, SessionControl, SessionHandle, SessionMeta, StanzaLink};
use sb_server::storage::{Contact, SubscriptionState};
use sb_server::tuning::ServerTuning;
use sb_store::{ConfigChange, Store, UserCredentials};
use support::{Harness, WAIT_LIMIT};
use tokio::sync::mpsc;

const DOMAIN: &str = "example.com";

struct XmppNode {
    _server: Arc<Server>,
    core: Arc<Core>,
    directory: Arc<Directory>,
}

/// A node's XMPP side: its own store with `users`, each of whom has every other as a
/// contact with a mutual subscription (the cluster replicates that; here each store gets
/// the same).
async fn xmpp_node(h: &Harness, i: usize, users: &[&str]) -> XmppNode {
    let dir = h.dir(i).join("xmpp");
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open(&dir).unwrap();
    let server = Server::new(store.clone(), &dir, ServerTuning::default());
    let core = Arc::clone(server.core());
    core.set_settings(Settings {
        domain: DOMAIN.into(),
        tls: None,
        starttls_required: true,
        max_stanza_bytes: 65_536,
        offline_limit: 10,
    });
    for user in users {
        store
            .apply(&ConfigChange::AddUser {
                name: (*user).into(),
                credentials: UserCredentials::new("pencil-pencil").unwrap(),
            })
            .unwrap();
        for other in users.iter().filter(|o| *o != user) {
            let mut contact = Contact::new(&format!("{other}@{DOMAIN}"));
            contact.subscription = SubscriptionState::Both;
            contact.listed = true;
            core.storage
                .swap_contact(user, &contact.jid, None, Some(&contact))
                .await
                .unwrap();
        }
    }
    let directory = Directory::start(h.cluster(i).clone(), Arc::clone(&core));
    XmppNode {
        _server: server,
        core,
        directory,
    }
}

struct Client {
    handle: SessionHandle,
    control: Arc<SessionControl>,
    rx: mpsc::Receiver<Outbound>,
}

fn meta() -> SessionMeta {
    SessionMeta {
        peer: "127.0.0.1:1".parse().unwrap(),
        since_unix: 0,
        tls: true,
    }
}

/// Bind `user/resource` on `core` as a client session would.
fn bind(core: &Core, user: &str, resource: &str) -> Client {
    let (tx, rx) = mpsc::channel(64);
    let control = Arc::new(SessionControl::default());
    let handle = SessionHandle::new(core.router.next_session_id(), tx, Arc::clone(&control));
    core.router.bind(user, resource, handle.clone(), meta());
    Client { handle, control, rx }
}

fn available(core: &Core, user: &str, resource: &str, client: &Client) {
    let presence = Element::new("presence", ns::CLIENT).with_child(Element::new("priority", ns::CLIENT).with_text("1"));
    core.router
        .set_presence(user, resource, client.handle.id(), Some((Arc::new(presence), 1)));
}

fn chat(from: &str, to: &str, body: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("type", "chat")
        .with_attr("from", from)
        .with_attr("to", to)
        .with_child(Element::new("body", ns::CLIENT).with_text(body))
}

fn text(item: Outbound) -> String {
    match item {
        Outbound::Stanza(element) => element.to_xml(),
        Outbound::Raw(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// The next stanza queued for `client` whose text contains `needle` (others are skipped).
async fn expect(client: &mut Client, needle: &str) -> String {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, client.rx.recv()).await {
            Ok(Some(item)) => {
                let got = text(item);
                if got.contains(needle) {
                    return got;
                }
            }
            Ok(None) => panic!("session queue closed while waiting for {needle}"),
            Err(_) => panic!("gave up waiting for a stanza containing {needle}"),
        }
    }
}

async fn wait(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_LIMIT;
    while !check() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn formed(net: u8, count: usize, users: &[&str]) -> (Harness, Vec<XmppNode>) {
    let mut h = Harness::new(net, count);
    h.form().await;
    let mut nodes = Vec::new();
    for i in 0..count {
        nodes.push(xmpp_node(&h, i, users).await);
    }
    h.wait_until("every node sees every peer", |h| {
        (0..count).all(|i| h.cluster(i).members().iter().all(|m| m.reachable))
    })
    .await;
    (h, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_and_presence_cross_nodes_and_a_stopped_node_leaves_routing() {
    let (mut h, nodes) = formed(61, 3, &["romeo", "juliet"]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut romeo = bind(&a.core, "romeo", "orchard");
    available(&a.core, "romeo", "orchard", &romeo);
    let mut juliet = bind(&b.core, "juliet", "balcony");
    // Node a learns juliet's session, bound on b, and every node learns romeo's.
    wait("juliet's session known on a", || {
        a.core
            .router
            .resource("juliet", "balcony")
            .is_some_and(|r| r.handle.node() == Some(&router_node(h.cluster(1).node_id())))
    })
    .await;
    wait("romeo known everywhere, available", || {
        nodes
            .iter()
            .all(|n| n.core.router.available_resources("romeo").len() == 1)
    })
    .await;

    // Juliet asks for her roster on b: roster pushes made on a go to her too.
    b.core
        .router
        .set_roster_interested("juliet", "balcony", juliet.handle.id());
    wait("juliet roster-interested on a", || {
        a.core.router.roster_interested("juliet").len() == 1
    })
    .await;

    // A message from a's session to juliet's full JID reaches her on b.
    a.core
        .route(chat("romeo@example.com/orchard", "juliet@example.com/balcony", "full"))
        .await;
    expect(&mut juliet, "<body>full</body>").await;

    // Juliet's presence is broadcast by b; romeo, on a, gets it over the relay.
    available(&b.core, "juliet", "balcony", &juliet);
    b.core
        .route(
            Element::new("presence", ns::CLIENT)
                .with_attr("from", "juliet@example.com/balcony")
                .with_attr("to", "romeo@example.com"),
        )
        .await;
    expect(&mut romeo, "juliet@example.com/balcony").await;
    wait("juliet available on a", || {
        a.core.router.available_resources("juliet").len() == 1
    })
    .await;
    // Bare-JID chat follows presence to the node that holds the available resource.
    a.core
        .route(chat("romeo@example.com/orchard", "juliet@example.com", "bare"))
        .await;
    expect(&mut juliet, "<body>bare</body>").await;
    // And back.
    b.core
        .route(chat("juliet@example.com/balcony", "romeo@example.com/orchard", "back"))
        .await;
    expect(&mut romeo, "<body>back</body>").await;

    // Node b stops: its session leaves a's and c's routers, and romeo (a contact on a)
    // sees juliet go unavailable.
    let b_id = h.cluster(1).node_id();
    h.stop(1).await;
    let juliet_gone = |n: &XmppNode| n.core.router.resources("juliet").is_empty();
    wait("juliet's session gone from a and c", || {
        juliet_gone(&nodes[0]) && juliet_gone(&nodes[2])
    })
    .await;
    let unavailable = expect(&mut romeo, "type='unavailable'").await;
    assert!(
        unavailable.contains("from='juliet@example.com/balcony'"),
        "{unavailable}"
    );
    // Once: node c saw b go too, but tells only its own sessions.
    wait("c saw b go", || {
        h.cluster(2).members().iter().any(|m| m.id == b_id && !m.reachable)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(item) = romeo.rx.try_recv() {
        let again = text(item);
        assert!(!again.contains("type='unavailable'"), "a second unavailable: {again}");
    }
    // A chat to her now is stored offline on a (a replicated write in the real cluster).
    a.core
        .route(chat("romeo@example.com/orchard", "juliet@example.com/balcony", "later"))
        .await;
    let stored = a.core.storage.take_offline("juliet").await.unwrap();
    assert_eq!(stored.len(), 1);
    assert!(String::from_utf8_lossy(&stored[0]).contains("<body>later</body>"));
    for n in &nodes {
        n.directory.stop();
    }
    h.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_in_flight_to_a_dying_node_is_stored_or_bounced_never_lost() {
    let (mut h, nodes) = formed(62, 2, &["romeo", "juliet"]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut romeo = bind(&a.core, "romeo", "orchard");
    let juliet = bind(&b.core, "juliet", "balcony");
    wait("juliet's session known on a", || {
        a.core.router.resource("juliet", "balcony").is_some()
    })
    .await;
    drop(juliet);
    // b dies; a has not noticed yet when the message is routed.
    h.stop(1).await;
    a.core
        .route(chat(
            "romeo@example.com/orchard",
            "juliet@example.com/balcony",
            "in flight",
        ))
        .await;
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let stored = a.core.storage.offline_queue("juliet").unwrap();
        if stored
            .iter()
            .any(|(_, s)| String::from_utf8_lossy(s).contains("in flight"))
        {
            break;
        }
        if let Ok(item) = romeo.rx.try_recv() {
            let got = text(item);
            assert!(got.contains("type='error'") && got.contains("in flight"), "{got}");
            break;
        }
        assert!(Instant::now() < deadline, "the message was neither stored nor bounced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in &nodes {
        n.directory.stop();
    }
    h.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_jid_bound_on_two_nodes_keeps_the_newer_session() {
    let (mut h, nodes) = formed(63, 2, &["juliet"]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let older = bind(&a.core, "juliet", "balcony");
    wait("the older session known on b", || {
        b.core.router.resource("juliet", "balcony").is_some()
    })
    .await;
    // Bind times are in milliseconds: make sure the second is later.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let newer = bind(&b.core, "juliet", "balcony");
    wait("the older session is asked to close with <conflict/>", || {
        older
            .control
            .take_close()
            .map(|e| assert_eq!(e.condition, StreamErrorCondition::Conflict))
            .is_some()
    })
    .await;
    assert!(newer.control.take_close().is_none(), "the newer session stays");
    let b_node = router_node(h.cluster(1).node_id());
    wait("both nodes route juliet/balcony to the session on b", || {
        let on_a = a.core.router.resource("juliet", "balcony").map(|r| r.handle);
        let on_b = b.core.router.resource("juliet", "balcony").map(|r| r.handle);
        on_a.is_some_and(|h| h.is_session(Some(&b_node), newer.handle.id()))
            && on_b.is_some_and(|h| h.is_session(None, newer.handle.id()))
    })
    .await;
    // A client binding the same resource on a again: a's router hands back b's session, which
    // c2s closes with <conflict/> (over the relay).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (tx, _rx) = mpsc::channel(4);
    let third = SessionHandle::new(a.core.router.next_session_id(), tx, Arc::default());
    let replaced = a
        .core
        .router
        .bind("juliet", "balcony", third, meta())
        .expect("b's session was bound there");
    assert_eq!(replaced.handle.node(), Some(&b_node));
    replaced
        .handle
        .close(sb_proto::StreamError::new(StreamErrorCondition::Conflict));
    wait("b's session is asked to close with <conflict/>", || {
        newer
            .control
            .take_close()
            .map(|e| assert_eq!(e.condition, StreamErrorCondition::Conflict))
            .is_some()
    })
    .await;
    for n in &nodes {
        n.directory.stop();
    }
    h.shutdown_all().await;
}

/// A component link that records what it is given.
#[derive(Default)]
struct RecordingComponent {
    got: std::sync::Mutex<Vec<String>>,
}

impl StanzaLink for RecordingComponent {
    fn send(&self, stanza: Element) -> Result<(), DeliveryError> {
        self.got.lock().unwrap().push(stanza.to_xml());
        Ok(())
    }
    fn describe(&self) -> String {
        "test component".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_component_on_one_node_is_reached_from_another_and_answers_back() {
    let (mut h, nodes) = formed(64, 3, &["juliet"]).await;
    let (a, c) = (&nodes[0], &nodes[2]);
    let component = Arc::new(RecordingComponent::default());
    let link: Arc<dyn StanzaLink> = component.clone();
    a.core.router.register_link("cb1.example.com", Arc::clone(&link));
    wait("node c routes cb1 to node a", || {
        c.core
            .router
            .link("cb1.example.com")
            .is_some_and(|l| l.node() == Some(router_node(h.cluster(0).node_id())))
    })
    .await;
    let mut juliet = bind(&c.core, "juliet", "balcony");
    c.core
        .route(chat("juliet@example.com/balcony", "cb1.example.com", "to the bridge"))
        .await;
    wait("the component on a got juliet's message", || {
        component
            .got
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.contains("to the bridge"))
    })
    .await;
    wait("juliet's session known on a", || {
        a.core.router.resource("juliet", "balcony").is_some()
    })
    .await;
    // What the component sends is routed on its node, a, to juliet on c.
    a.core
        .route(chat("cb1.example.com", "juliet@example.com/balcony", "from the bridge"))
        .await;
    expect(&mut juliet, "from the bridge").await;
    // The component leaves: node c forgets it.
    assert!(a.core.router.unregister_link("cb1.example.com", &link));
    wait("node c no longer routes cb1", || {
        c.core.router.link("cb1.example.com").is_none()
    })
    .await;
    for n in &nodes {
        n.directory.stop();
    }
    h.shutdown_all().await;
}
