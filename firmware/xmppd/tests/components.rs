//! Call Bridges (XEP-0114 components) against the real daemon over real TLS sockets:
//! the handshake, refusals and their status report, replacement, addressing rules, routing
//! both ways between users and components, and `xmpp callbridge del` ending a connection.

mod common;
mod component_client;

use common::{DOMAIN, error_condition, message};
use component_client::{Bridges, SECRET, component_body, component_error_condition, component_message, stanza};
use sb_proto::component::handshake_digest;
use sb_proto::{Element, ns};

fn cb(name: &str) -> String {
    Bridges::address(name)
}

/// Admin commands are synchronous socket calls; keep them off the async workers' feet.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn ping_iq(from: &str, to: &str, id: &str) -> Element {
    stanza("iq", from, to)
        .with_attr("type", "get")
        .with_attr("id", id)
        .with_child(Element::new("ping", ns::PING))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_proves_the_configured_secret_and_status_lists_the_bridge() {
    let bridges = Bridges::start(&[], &[], false, |_| {});
    blocking(|| {
        bridges.add_bridge("cb1", SECRET);
        // Hashed as "s3cr3t&amp;&lt;x-and-more-of-it" (SPEC.md's escaping vector).
        bridges.add_bridge("cb2", "s3cr3t&<x-and-more-of-it");
    });

    let (mut first, header) = bridges.open("cb1").await;
    assert_eq!(header.default_ns, ns::COMPONENT);
    assert_eq!(header.from.as_deref(), Some(cb("cb1").as_str()));
    let id = header.id.clone().expect("the server's header carries a stream id");
    assert!(id.len() >= 32, "stream id '{id}' is too short to be unpredictable");
    let (mut second, other_header) = bridges.open("cb2").await;
    let other_id = other_header.id.clone().expect("stream id");
    assert_ne!(id, other_id, "every stream gets a fresh id");

    first.send_handshake(&handshake_digest(&id, SECRET)).await;
    let answer = first.expect("handshake", |e| e.is("handshake", ns::COMPONENT)).await;
    assert!(answer.children.is_empty(), "{}", answer.to_xml());
    second
        .send_handshake(&handshake_digest(&other_id, "s3cr3t&<x-and-more-of-it"))
        .await;
    let answer = second.expect("handshake", |e| e.is("handshake", ns::COMPONENT)).await;
    assert!(answer.children.is_empty(), "{}", answer.to_xml());

    // The component can use its stream: the server answers its ping.
    let reply = first.iq(ping_iq(&cb("cb1"), DOMAIN, "p1")).await;
    assert_eq!(reply.attr("type"), Some("result"), "{}", reply.to_xml());
    assert_eq!(reply.attr("to"), Some(cb("cb1").as_str()));

    let status = blocking(|| bridges.status());
    assert!(status.contains("2 configured, 2 connected"), "{status}");
    let line = format!("{} from {} since", cb("cb1"), first.local_addr);
    assert!(status.contains(&line), "missing '{line}' in:\n{status}");
    assert!(
        status.contains(&format!(":{}", bridges.component_addr.port())),
        "{status}"
    );
    assert!(!status.contains("refused"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_reported_with_their_reason_and_never_leak_the_secret() {
    let bridges = Bridges::start(&[], &[], false, |_| {});
    blocking(|| bridges.add_bridge("cb1", SECRET));
    let mut good = bridges.connect("cb1", SECRET).await;

    let (mut wrong, header) = bridges.open("cb1").await;
    let wrong_digest = handshake_digest(header.id.as_deref().expect("id"), "not the secret");
    wrong.send_handshake(&wrong_digest).await;
    wrong.expect_stream_error("not-authorized").await;

    let (mut unknown, _) = bridges.open("cb9").await;
    unknown.expect_stream_error("host-unknown").await;

    let (mut outsider, _) = bridges.open_to("cb1.example.org").await;
    outsider.expect_stream_error("host-unknown").await;

    let (mut impatient, _) = bridges.open("cb1").await;
    impatient.send(&component_message(&cb("cb1"), DOMAIN, "hello")).await;
    impatient.expect_stream_error("not-authorized").await;

    // The authenticated bridge was not disturbed by any of that.
    let reply = good.iq(ping_iq(&cb("cb1"), DOMAIN, "still-there")).await;
    assert_eq!(reply.attr("type"), Some("result"), "{}", reply.to_xml());

    let status = blocking(|| bridges.status());
    let host = good.local_addr.ip();
    for fault in [
        format!("Call Bridge 'cb1' from {host} refused: wrong secret"),
        format!("Call Bridge 'cb9' from {host} refused: unknown name"),
        format!("Call Bridge 'cb1.example.org' from {host} refused: unknown name"),
        format!("Call Bridge 'cb1' from {host} refused: bad handshake"),
    ] {
        assert!(status.contains(&fault), "missing '{fault}' in:\n{status}");
    }
    assert!(status.contains("1 configured, 1 connected"), "{status}");

    let log = bridges.daemon.log();
    assert!(log.contains("wrong secret"), "the refusal is not logged:\n{log}");
    assert!(log.contains("unknown name"), "the refusal is not logged:\n{log}");
    assert!(!log.contains(SECRET), "the secret reached the log");
    assert!(!log.contains(&wrong_digest), "a handshake digest reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_replaces_the_old_one_with_conflict() {
    let bridges = Bridges::start(&["alice"], &[], false, |_| {});
    blocking(|| bridges.add_bridge("cb1", SECRET));
    let mut old = bridges.connect("cb1", SECRET).await;
    let mut new = bridges.connect("cb1", SECRET).await;
    old.expect_stream_error("conflict").await;

    // Traffic for the bridge goes to the new connection.
    let mut alice = bridges.daemon.online("alice", "phone").await;
    alice
        .message(&format!("room@{}", cb("cb1")), "chat", "to the new one")
        .await;
    let received = new.expect("message", |e| e.name == "message").await;
    assert_eq!(component_body(&received), "to the new one");

    let log = bridges.daemon.log();
    let replaced_line = log
        .lines()
        .find(|l| l.contains("conflict"))
        .unwrap_or_else(|| panic!("the replacement is not logged:\n{log}"));
    assert!(replaced_line.contains(&old.local_addr.to_string()), "{replaced_line}");
    assert!(replaced_line.contains(&new.local_addr.to_string()), "{replaced_line}");

    let status = blocking(|| bridges.status());
    assert!(status.contains(&new.local_addr.to_string()), "{status}");
    assert!(!status.contains(&old.local_addr.to_string()), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stanzas_must_be_addressed_from_the_components_domain() {
    let bridges = Bridges::start(&["alice"], &[], false, |_| {});
    blocking(|| bridges.add_bridge("cb1", SECRET));
    let alice = bridges.daemon.jid("alice");

    // No 'to': answered with bad-request, the stream stays.
    let mut component = bridges.connect("cb1", SECRET).await;
    let no_to = Element::new("message", ns::COMPONENT)
        .with_attr("from", cb("cb1"))
        .with_attr("id", "m1")
        .with_child(Element::new("body", ns::COMPONENT).with_text("to nobody"));
    component.send(&no_to).await;
    let reply = component.expect("error reply", |e| e.attr("id") == Some("m1")).await;
    assert_eq!(component_error_condition(&reply).as_deref(), Some("bad-request"));
    // Any localpart at its domain is fine.
    let reply = component
        .iq(ping_iq(&format!("anyone@{}/x", cb("cb1")), DOMAIN, "p2"))
        .await;
    assert_eq!(reply.attr("type"), Some("result"), "{}", reply.to_xml());

    // A 'from' of another domain ends the stream.
    component.send(&component_message(&alice, &alice, "spoofed")).await;
    component.expect_stream_error("invalid-from").await;

    // No 'from' at all ends it too.
    let mut component = bridges.connect("cb1", SECRET).await;
    let no_from = Element::new("message", ns::COMPONENT)
        .with_attr("to", alice.clone())
        .with_child(Element::new("body", ns::COMPONENT).with_text("anonymous"));
    component.send(&no_from).await;
    component.expect_stream_error("improper-addressing").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_components_talk_both_ways() {
    let bridges = Bridges::start(&["alice"], &[], false, |_| {});
    blocking(|| bridges.add_bridge("cb1", SECRET));
    let mut component = bridges.connect("cb1", SECRET).await;
    let mut alice = bridges.daemon.online("alice", "phone").await;
    let alice_full = alice.jid.clone().expect("bound");
    let room = format!("room1@{}", cb("cb1"));

    // The server lists the bridge among its items.
    let items = alice
        .iq(Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("to", DOMAIN)
            .with_child(Element::new("query", ns::DISCO_ITEMS)))
        .await;
    let jids: Vec<String> = items
        .get_child("query", ns::DISCO_ITEMS)
        .map(|q| q.elements().filter_map(|i| i.attr("jid").map(str::to_owned)).collect())
        .unwrap_or_default();
    assert!(jids.contains(&cb("cb1")), "{}", items.to_xml());

    // Component to user.
    component
        .send(&component_message(&format!("{room}/bot"), &alice_full, "welcome"))
        .await;
    let received = alice.expect_body("welcome").await;
    assert_eq!(received.attr("from"), Some(format!("{room}/bot").as_str()));

    // User to component.
    alice.send(&message(&room, "chat", "hello room")).await;
    let received = component.expect("message", |e| e.name == "message").await;
    assert_eq!(received.ns, ns::COMPONENT);
    assert_eq!(received.attr("from"), Some(alice_full.as_str()));
    assert_eq!(received.attr("to"), Some(room.as_str()));
    assert_eq!(component_body(&received), "hello room");

    // Presence to the component.
    alice
        .send(&Element::new("presence", ns::CLIENT).with_attr("to", format!("{room}/alice")))
        .await;
    let presence = component.expect("presence", |e| e.name == "presence").await;
    assert_eq!(presence.attr("from"), Some(alice_full.as_str()));

    // An iq round trip, user to component.
    let query = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("id", "info1")
        .with_attr("to", cb("cb1"))
        .with_child(Element::new("query", ns::DISCO_INFO));
    alice.send(&query).await;
    let request = component.expect("iq", |e| e.name == "iq").await;
    assert_eq!(request.attr("from"), Some(alice_full.as_str()));
    assert!(request.has_child("query", ns::DISCO_INFO), "{}", request.to_xml());
    let answer = stanza("iq", &cb("cb1"), &alice_full)
        .with_attr("type", "result")
        .with_attr("id", "info1")
        .with_child(
            Element::new("query", ns::DISCO_INFO).with_child(
                Element::new("identity", ns::DISCO_INFO)
                    .with_attr("category", "conference")
                    .with_attr("type", "text"),
            ),
        );
    component.send(&answer).await;
    let result = alice
        .expect("iq result", |e| e.name == "iq" && e.attr("id") == Some("info1"))
        .await;
    assert_eq!(result.attr("type"), Some("result"), "{}", result.to_xml());
    assert!(
        result
            .get_child("query", ns::DISCO_INFO)
            .is_some_and(|q| q.has_child("identity", ns::DISCO_INFO)),
        "{}",
        result.to_xml()
    );

    // And component to user.
    component.send(&ping_iq(&room, &alice_full, "ping-alice")).await;
    let ping = alice
        .expect("ping", |e| e.name == "iq" && e.attr("id") == Some("ping-alice"))
        .await;
    assert_eq!(ping.attr("from"), Some(room.as_str()));
    alice
        .send(
            &Element::new("iq", ns::CLIENT)
                .with_attr("type", "result")
                .with_attr("id", "ping-alice")
                .with_attr("to", room.clone()),
        )
        .await;
    let pong = component
        .expect("ping result", |e| e.name == "iq" && e.attr("id") == Some("ping-alice"))
        .await;
    assert_eq!(pong.attr("type"), Some("result"), "{}", pong.to_xml());
    assert_eq!(pong.attr("from"), Some(alice_full.as_str()));

    // The user leaves: the component's iq to her comes back as an error.
    alice.close().await;
    let reply = component.iq(ping_iq(&room, &alice_full, "ping-gone")).await;
    assert_eq!(
        component_error_condition(&reply).as_deref(),
        Some("service-unavailable")
    );
    assert_eq!(reply.attr("from"), Some(alice_full.as_str()));

    // The component leaves: once it is gone, the user's iq to it comes back as an error.
    let mut alice = bridges.daemon.online("alice", "laptop").await;
    component.send_raw(b"</stream:stream>").await;
    let gone = format!("{} not connected", cb("cb1"));
    let mut status = String::new();
    for _ in 0..200 {
        status = blocking(|| bridges.status());
        if status.contains(&gone) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(status.contains(&gone), "{status}");
    let reply = alice
        .iq(Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("to", cb("cb1"))
            .with_child(Element::new("query", ns::DISCO_INFO)))
        .await;
    assert_eq!(error_condition(&reply).as_deref(), Some("service-unavailable"));
    assert_eq!(reply.attr("from"), Some(cb("cb1").as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_bridge_ends_its_connection() {
    let bridges = Bridges::start(&[], &[], false, |_| {});
    blocking(|| {
        bridges.add_bridge("cb1", SECRET);
        bridges.add_bridge("cb2", "another secret of cb2");
    });
    let mut cb1 = bridges.connect("cb1", SECRET).await;
    let mut cb2 = bridges.connect("cb2", "another secret of cb2").await;

    let reply = blocking(|| bridges.admin_line("xmpp callbridge del cb1"));
    assert!(reply.ok, "{}", reply.text);
    cb1.expect_stream_error("host-gone").await;
    let (mut again, _) = bridges.open("cb1").await;
    again.expect_stream_error("host-unknown").await;

    // The other bridge is untouched.
    let reply = cb2.iq(ping_iq(&cb("cb2"), DOMAIN, "p")).await;
    assert_eq!(reply.attr("type"), Some("result"), "{}", reply.to_xml());

    // A bridge added while the daemon runs can connect at once.
    blocking(|| bridges.add_bridge("cb3", "third secret of cb3"));
    let mut cb3 = bridges.connect("cb3", "third secret of cb3").await;
    let reply = cb3.iq(ping_iq(&cb("cb3"), DOMAIN, "p3")).await;
    assert_eq!(reply.attr("type"), Some("result"), "{}", reply.to_xml());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_the_plain_loopback_listener() {
    let bridges = Bridges::start(&["alice"], &[], true, |c| {
        c.max_stanza_bytes = 4096;
    });
    blocking(|| bridges.add_bridge("cb1", SECRET));

    // Plain TCP on loopback when configured so; status says it is not TLS.
    let mut component = bridges.connect("cb1", SECRET).await;
    assert!(!component.tls);
    let status = blocking(|| bridges.status());
    assert!(
        status.contains(&format!("{} from {}", cb("cb1"), component.local_addr)),
        "{status}"
    );
    assert!(status.contains("no TLS"), "{status}");

    // A stanza over the size limit ends the stream.
    let big = "x".repeat(8192);
    component
        .send(&component_message(&cb("cb1"), &bridges.daemon.jid("alice"), &big))
        .await;
    component.expect_stream_error("policy-violation").await;

    // Not well-formed XML ends the stream.
    let mut component = bridges.connect("cb1", SECRET).await;
    component.send_raw(b"<message from='cb1'><body></message>").await;
    component.expect_stream_error("not-well-formed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_never_completes_the_handshake_is_closed() {
    let bridges = Bridges::start(&[], &["--pre-auth-timeout", "1"], false, |_| {});
    blocking(|| bridges.add_bridge("cb1", SECRET));
    let (mut silent, _) = bridges.open("cb1").await;
    silent.expect_stream_error("connection-timeout").await;
}

/// Whether `addr` comes to accept TCP connections (`listening`) or to refuse them, within a
/// bounded wait: a dropped listener's accept task ends asynchronously after the reload.
async fn reaches_listening(addr: std::net::SocketAddr, listening: bool) -> bool {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() == listening {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbridge_port_and_plain_commands_change_the_listener_at_run_time() {
    let mut bridges = Bridges::start(&[], &[], false, |_| {});
    blocking(|| bridges.add_bridge("cb1", SECRET));
    let first_addr = bridges.component_addr;
    let kept = bridges.connect("cb1", SECRET).await;
    assert!(kept.tls);

    // A client port is refused, and nothing moves.
    let clients_port = bridges.daemon.addr.port();
    let reply = blocking(|| bridges.admin_line(&format!("xmpp callbridge port {clients_port}")));
    assert!(!reply.ok, "{}", reply.text);
    assert!(reply.text.contains("is the clients' port"), "{}", reply.text);
    assert!(reaches_listening(first_addr, true).await);

    // A new port: the daemon listens there (TLS) and no longer on the old one.
    let free = std::net::TcpListener::bind((bridges.daemon.addr.ip(), 0)).expect("free port");
    let new_port = free.local_addr().expect("address").port();
    drop(free);
    let reply = blocking(|| bridges.admin_line(&format!("xmpp callbridge port {new_port}")));
    assert_eq!(reply.text, format!("Call Bridge port: {new_port}, TLS\nSUCCESS"));
    bridges.component_addr = std::net::SocketAddr::new(bridges.daemon.addr.ip(), new_port);
    assert!(reaches_listening(first_addr, false).await, "the old port still accepts");
    let moved = bridges.connect("cb1", SECRET).await;
    assert!(moved.tls);
    let status = blocking(|| bridges.status());
    assert!(
        status.contains(&format!("Call Bridge port  : {new_port}, TLS\n")),
        "{status}"
    );
    assert!(
        status.contains(&format!("{} (listening)", bridges.component_addr)),
        "{status}"
    );

    // Plain TCP on this loopback listener, same socket.
    let reply = blocking(|| bridges.admin_line("xmpp callbridge plain on"));
    assert_eq!(
        reply.text,
        format!("Call Bridge port: {new_port}, plain TCP (loopback addresses only)\nSUCCESS")
    );
    bridges.plain = true;
    let plain = bridges.connect("cb1", SECRET).await;
    assert!(!plain.tls);

    // Off: nothing listens for Call Bridges any more.
    let reply = blocking(|| bridges.admin_line("xmpp callbridge port off"));
    assert_eq!(reply.text, "Call Bridge port: off\nSUCCESS");
    assert!(
        reaches_listening(bridges.component_addr, false).await,
        "the Call Bridge port still accepts after 'port off'"
    );
    let status = blocking(|| bridges.status());
    assert!(status.contains("Call Bridge port  : off\n"), "{status}");
    drop((kept, moved, plain));
}
