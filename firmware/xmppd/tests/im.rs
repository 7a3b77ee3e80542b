//! RFC 6121 against the real daemon: roster, subscriptions, presence, messages, offline
//! storage, errors for unknown users, and the server's own iq services.

mod common;

use common::{Client, DOMAIN, Daemon, body_of, error_condition, message};
use sb_proto::{Element, ns};

fn roster_items(reply: &Element) -> Vec<Element> {
    reply
        .get_child("query", ns::ROSTER)
        .map(|q| q.elements().cloned().collect())
        .unwrap_or_default()
}

fn is_roster_push(e: &Element) -> bool {
    e.name == "iq" && e.attr("type") == Some("set") && e.has_child("query", ns::ROSTER)
}

fn push_item(push: &Element) -> Element {
    roster_items(push).into_iter().next().expect("push carries an item")
}

async fn answer_push(client: &mut Client, push: &Element) {
    let reply = Element::new("iq", ns::CLIENT)
        .with_attr("type", "result")
        .with_opt_attr("id", push.attr("id"));
    client.send(&reply).await;
}

fn presence(kind: Option<&str>, to: Option<&str>) -> Element {
    Element::new("presence", ns::CLIENT)
        .with_opt_attr("type", kind)
        .with_opt_attr("to", to)
}

fn presence_from(from: String, kind: Option<&'static str>) -> impl Fn(&Element) -> bool {
    move |e| e.name == "presence" && e.attr("from") == Some(from.as_str()) && e.attr("type") == kind
}

#[tokio::test]
async fn roster_set_get_remove_and_pushes() {
    let daemon = Daemon::start(&["alice"], &[], |_| {});
    let mut phone = daemon.online("alice", "phone").await;
    let mut laptop = daemon.online("alice", "laptop").await;
    let carol = format!("carol@{DOMAIN}");

    let set = Element::new("iq", ns::CLIENT).with_attr("type", "set").with_child(
        Element::new("query", ns::ROSTER).with_child(
            Element::new("item", ns::ROSTER)
                .with_attr("jid", carol.clone())
                .with_attr("name", "Carol")
                .with_child(Element::new("group", ns::ROSTER).with_text("Friends")),
        ),
    );
    let reply = phone.iq(set).await;
    assert_eq!(reply.attr("type"), Some("result"), "{}", reply.to_xml());
    for client in [&mut phone, &mut laptop] {
        let push = client.expect("roster push", is_roster_push).await;
        let item = push_item(&push);
        assert_eq!(item.attr("jid"), Some(carol.as_str()));
        assert_eq!(item.attr("name"), Some("Carol"));
        assert_eq!(item.attr("subscription"), Some("none"));
        answer_push(client, &push).await;
    }

    let roster = phone.roster_get().await;
    let ver = roster
        .get_child("query", ns::ROSTER)
        .and_then(|q| q.attr("ver"))
        .map(str::to_owned);
    let items = roster_items(&roster);
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0].get_child("group", ns::ROSTER).map(|g| g.text()).as_deref(),
        Some("Friends")
    );
    // Roster versioning: an unchanged roster is an empty result.
    let get = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_child(Element::new("query", ns::ROSTER).with_opt_attr("ver", ver));
    let reply = phone.iq(get).await;
    assert_eq!(reply.attr("type"), Some("result"));
    assert!(reply.elements().next().is_none(), "{}", reply.to_xml());

    let remove = Element::new("iq", ns::CLIENT).with_attr("type", "set").with_child(
        Element::new("query", ns::ROSTER).with_child(
            Element::new("item", ns::ROSTER)
                .with_attr("jid", carol.clone())
                .with_attr("subscription", "remove"),
        ),
    );
    let reply = laptop.iq(remove.clone()).await;
    assert_eq!(reply.attr("type"), Some("result"));
    for client in [&mut phone, &mut laptop] {
        let push = client.expect("removal push", is_roster_push).await;
        assert_eq!(push_item(&push).attr("subscription"), Some("remove"));
    }
    assert!(roster_items(&phone.roster_get().await).is_empty());
    let reply = laptop.iq(remove).await;
    assert_eq!(error_condition(&reply).as_deref(), Some("item-not-found"));
}

#[tokio::test]
async fn subscription_handshake_presence_and_unavailable_on_disconnect() {
    let daemon = Daemon::start(&["alice", "bob"], &[], |_| {});
    let (alice_jid, bob_jid) = (daemon.jid("alice"), daemon.jid("bob"));
    let mut alice = daemon.online("alice", "phone").await;
    let mut bob = daemon.online("bob", "desk").await;

    // Alice asks for Bob's presence.
    alice.send(&presence(Some("subscribe"), Some(&bob_jid))).await;
    let push = alice.expect("pending-out push", is_roster_push).await;
    let item = push_item(&push);
    assert_eq!(item.attr("ask"), Some("subscribe"));
    assert_eq!(item.attr("subscription"), Some("none"));
    let request = bob
        .expect("subscribe", presence_from(alice_jid.clone(), Some("subscribe")))
        .await;
    assert_eq!(request.attr("to"), Some(bob_jid.as_str()));

    // Bob approves: his roster gets Alice with 'from', hers gets Bob with 'to', and Bob's
    // current presence reaches Alice.
    bob.send(&presence(Some("subscribed"), Some(&alice_jid))).await;
    let push = bob.expect("approval push", is_roster_push).await;
    assert_eq!(push_item(&push).attr("subscription"), Some("from"));
    let push = alice.expect("subscribed push", is_roster_push).await;
    let item = push_item(&push);
    assert_eq!(item.attr("subscription"), Some("to"));
    assert_eq!(item.attr("ask"), None);
    alice
        .expect("subscribed", presence_from(bob_jid.clone(), Some("subscribed")))
        .await;
    alice
        .expect("bob's presence", presence_from(format!("{bob_jid}/desk"), None))
        .await;

    // And the other direction, so both see each other.
    bob.send(&presence(Some("subscribe"), Some(&alice_jid))).await;
    alice
        .expect("subscribe", presence_from(bob_jid.clone(), Some("subscribe")))
        .await;
    alice.send(&presence(Some("subscribed"), Some(&bob_jid))).await;
    let push = alice.expect("both push", is_roster_push).await;
    assert_eq!(push_item(&push).attr("subscription"), Some("both"));
    bob.expect("alice's presence", presence_from(format!("{alice_jid}/phone"), None))
        .await;

    // A presence change is broadcast.
    let away = presence(None, None).with_child(Element::new("show", ns::CLIENT).with_text("away"));
    bob.send(&away).await;
    let seen = alice
        .expect("bob away", presence_from(format!("{bob_jid}/desk"), None))
        .await;
    assert_eq!(
        seen.get_child("show", ns::CLIENT).map(|s| s.text()).as_deref(),
        Some("away")
    );

    // A new session of Alice probes her contacts and learns Bob's presence.
    let mut alice2 = daemon.login("alice", "tablet").await;
    alice2.send(&presence(None, None)).await;
    alice2
        .expect("probe answer", presence_from(format!("{bob_jid}/desk"), None))
        .await;
    alice
        .expect("own other resource", presence_from(format!("{alice_jid}/tablet"), None))
        .await;

    // Bob's connection drops without a goodbye: contacts learn he is gone.
    bob.abort();
    alice
        .expect(
            "bob unavailable",
            presence_from(format!("{bob_jid}/desk"), Some("unavailable")),
        )
        .await;

    // Roster state is durable: Alice's roster says 'both' after all this.
    let roster = alice.roster_get().await;
    let items = roster_items(&roster);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].attr("subscription"), Some("both"));
}

/// RFC 6121 §4.3.2: a probe for a contact with no available resource is answered with
/// `unavailable` from the contact's bare JID, so the prober knows rather than guesses.
#[tokio::test]
async fn a_probe_for_a_contact_with_no_available_resource_gets_unavailable() {
    let daemon = Daemon::start(&["alice", "bob"], &[], |_| {});
    let (alice_jid, bob_jid) = (daemon.jid("alice"), daemon.jid("bob"));
    let mut alice = daemon.online("alice", "phone").await;
    let mut bob = daemon.online("bob", "desk").await;
    alice.send(&presence(Some("subscribe"), Some(&bob_jid))).await;
    bob.expect("subscribe", presence_from(alice_jid.clone(), Some("subscribe")))
        .await;
    bob.send(&presence(Some("subscribed"), Some(&alice_jid))).await;
    alice
        .expect("bob's presence", presence_from(format!("{bob_jid}/desk"), None))
        .await;
    bob.close().await;
    alice
        .expect(
            "bob unavailable",
            presence_from(format!("{bob_jid}/desk"), Some("unavailable")),
        )
        .await;

    alice.send(&presence(Some("probe"), Some(&bob_jid))).await;
    alice
        .expect("probe answer", presence_from(bob_jid.clone(), Some("unavailable")))
        .await;
}

#[tokio::test]
async fn pending_subscription_request_is_redelivered_and_directed_presence() {
    let daemon = Daemon::start(&["alice", "bob"], &[], |_| {});
    let (alice_jid, bob_jid) = (daemon.jid("alice"), daemon.jid("bob"));
    let mut alice = daemon.online("alice", "phone").await;
    // Bob is offline: the request is stored and shown at his next initial presence.
    alice.send(&presence(Some("subscribe"), Some(&bob_jid))).await;
    alice.ping_server().await;
    let mut bob = daemon.login("bob", "desk").await;
    bob.send(&presence(None, None)).await;
    bob.expect("stored subscribe", presence_from(alice_jid.clone(), Some("subscribe")))
        .await;

    // Directed presence reaches a non-contact, and so does the unavailable at logout.
    bob.send(&presence(None, Some(&format!("{alice_jid}/phone")))).await;
    alice
        .expect("directed presence", presence_from(format!("{bob_jid}/desk"), None))
        .await;
    bob.close().await;
    alice
        .expect(
            "directed unavailable",
            presence_from(format!("{bob_jid}/desk"), Some("unavailable")),
        )
        .await;
}

#[tokio::test]
async fn messages_to_full_and_bare_jids() {
    let daemon = Daemon::start(&["alice", "bob"], &[], |_| {});
    let bob_jid = daemon.jid("bob");
    let mut alice = daemon.online("alice", "phone").await;
    let mut desk = daemon.login("bob", "desk").await;
    let mut phone = daemon.login("bob", "phone").await;
    let with_priority =
        |p: i32| presence(None, None).with_child(Element::new("priority", ns::CLIENT).with_text(p.to_string()));
    desk.send(&with_priority(5)).await;
    desk.ping_server().await;
    phone.send(&with_priority(1)).await;
    phone.ping_server().await;

    // Bare JID: the highest priority resource only.
    alice.message(&bob_jid, "chat", "to the best").await;
    let got = desk.expect_body("to the best").await;
    assert_eq!(
        got.attr("from"),
        Some(format!("{}/phone", daemon.jid("alice")).as_str())
    );
    // Full JID: exactly that resource.
    alice.message(&format!("{bob_jid}/phone"), "chat", "to the phone").await;
    phone.expect_body("to the phone").await;

    // Equal priorities: both get it. The marker message afterwards proves the phone did
    // not also get the first one.
    phone.send(&with_priority(5)).await;
    phone.ping_server().await;
    alice.message(&bob_jid, "normal", "to both").await;
    desk.expect_body("to both").await;
    let next = phone.expect_message().await;
    assert_eq!(body_of(&next), "to both");

    // Headlines go to every non-negative resource.
    alice.message(&bob_jid, "headline", "news").await;
    desk.expect_body("news").await;
    phone.expect_body("news").await;

    // A full JID whose resource is gone is treated as the bare JID.
    alice.message(&format!("{bob_jid}/gone"), "chat", "rerouted").await;
    desk.expect_body("rerouted").await;

    // Groupchat to a bare JID is refused.
    alice.message(&bob_jid, "groupchat", "nope").await;
    let error = alice
        .expect("groupchat error", |e| {
            e.name == "message" && e.attr("type") == Some("error")
        })
        .await;
    assert_eq!(error_condition(&error).as_deref(), Some("service-unavailable"));

    // A message without 'to' goes to the sender's own account; a bad 'to' is jid-malformed.
    alice
        .send(
            &Element::new("message", ns::CLIENT)
                .with_attr("to", "a@b@c")
                .with_attr("id", "m1"),
        )
        .await;
    let error = alice.expect("jid-malformed", |e| e.attr("id") == Some("m1")).await;
    assert_eq!(error_condition(&error).as_deref(), Some("jid-malformed"));
}

#[tokio::test]
async fn offline_messages_survive_a_restart_and_are_capped() {
    let mut daemon = Daemon::start(&["alice", "bob"], &[], |c| c.offline_limit = 2);
    let bob_jid = daemon.jid("bob");
    let mut alice = daemon.online("alice", "phone").await;
    alice.message(&bob_jid, "chat", "first").await;
    alice.message(&bob_jid, "normal", "second").await;
    alice.message(&bob_jid, "chat", "third").await;
    let error = alice
        .expect("over the cap", |e| {
            e.name == "message" && e.attr("type") == Some("error")
        })
        .await;
    assert_eq!(body_of(&error), "third");
    assert_eq!(error_condition(&error).as_deref(), Some("resource-constraint"));
    drop(alice);

    daemon.restart();

    let mut bob = daemon.login("bob", "desk").await;
    bob.send(&presence(None, None)).await;
    let first = bob.expect_message().await;
    assert_eq!(body_of(&first), "first");
    let delay = first.get_child("delay", ns::DELAY).expect("delay stamp");
    assert_eq!(delay.attr("from"), Some(DOMAIN));
    assert!(delay.attr("stamp").is_some_and(|s| s.ends_with('Z')));
    assert_eq!(body_of(&bob.expect_message().await), "second");
    bob.close().await;

    // Delivered but not acknowledged: the next login gets them again (at least once).
    let mut bob = daemon.login("bob", "desk").await;
    bob.send(&presence(None, None)).await;
    assert_eq!(body_of(&bob.expect_message().await), "first");
    assert_eq!(body_of(&bob.expect_message().await), "second");
    // The XEP-0199 ping after them; its answer acknowledges them.
    let ping = bob
        .expect("the ping after the offline messages", |e| {
            e.name == "iq" && e.attr("type") == Some("get") && e.get_child("ping", ns::PING).is_some()
        })
        .await;
    bob.send(
        &Element::new("iq", ns::CLIENT)
            .with_attr("type", "result")
            .with_opt_attr("id", ping.attr("id"))
            .with_attr("to", DOMAIN),
    )
    .await;
    bob.send(
        &Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", "after-ack")
            .with_child(Element::new("ping", ns::PING)),
    )
    .await;
    bob.expect("the answer after the acknowledgement", |e| {
        e.attr("id") == Some("after-ack")
    })
    .await;
    bob.close().await;

    // Delivered and acknowledged means deleted: a later login gets nothing stored, only new
    // messages.
    let mut bob = daemon.login("bob", "desk").await;
    bob.send(&presence(None, None)).await;
    let mut alice = daemon.online("alice", "phone").await;
    alice.message(&format!("{bob_jid}/desk"), "chat", "fresh").await;
    assert_eq!(body_of(&bob.expect_message().await), "fresh");
}

#[tokio::test]
async fn unknown_users_get_the_rfc_errors() {
    let daemon = Daemon::start(&["alice"], &[], |_| {});
    let nobody = daemon.jid("nobody");
    let mut alice = daemon.online("alice", "phone").await;

    alice
        .send(&message(&nobody, "chat", "hello?").with_attr("id", "m1"))
        .await;
    let error = alice.expect("message error", |e| e.attr("id") == Some("m1")).await;
    assert_eq!(error_condition(&error).as_deref(), Some("service-unavailable"));
    assert_eq!(error.attr("from"), Some(nobody.as_str()));

    let iq = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("to", format!("{nobody}/res"))
        .with_child(Element::new("ping", ns::PING));
    let reply = alice.iq(iq).await;
    assert_eq!(error_condition(&reply).as_deref(), Some("service-unavailable"));

    // Presence to nobody is dropped silently: the next thing back is the ping result.
    alice.send(&presence(Some("subscribe"), Some(&nobody))).await;
    let _push = alice.expect("roster push", is_roster_push).await;
    let ping = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("id", "after-presence")
        .with_child(Element::new("ping", ns::PING));
    alice.send(&ping).await;
    match alice.next().await {
        common::Event::Element(e) => assert_eq!(e.attr("id"), Some("after-presence"), "{}", e.to_xml()),
        other => panic!("{other:?}"),
    }

    // Another domain: no federation yet.
    alice
        .send(&message("someone@elsewhere.example", "chat", "hi").with_attr("id", "m2"))
        .await;
    let error = alice.expect("remote error", |e| e.attr("id") == Some("m2")).await;
    assert_eq!(error_condition(&error).as_deref(), Some("remote-server-not-found"));
}

#[tokio::test]
async fn disco_ping_and_version() {
    let daemon = Daemon::start(&["alice", "bob"], &[], |_| {});
    let mut alice = daemon.online("alice", "phone").await;
    let mut bob = daemon.online("bob", "desk").await;
    let get = |to: Option<&str>, payload: Element| {
        Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_opt_attr("to", to)
            .with_child(payload)
    };

    let info = alice.iq(get(Some(DOMAIN), Element::new("query", ns::DISCO_INFO))).await;
    let query = info.get_child("query", ns::DISCO_INFO).expect("disco#info");
    let identity = query.get_child("identity", ns::DISCO_INFO).expect("identity");
    assert_eq!(
        (identity.attr("category"), identity.attr("type")),
        (Some("server"), Some("im"))
    );
    let features: Vec<&str> = query
        .elements()
        .filter(|e| e.name == "feature")
        .filter_map(|e| e.attr("var"))
        .collect();
    for expected in [ns::DISCO_INFO, ns::DISCO_ITEMS, ns::PING, ns::VERSION, ns::ROSTER] {
        assert!(features.contains(&expected), "{expected} missing from {features:?}");
    }
    let items = alice
        .iq(get(Some(DOMAIN), Element::new("query", ns::DISCO_ITEMS)))
        .await;
    assert_eq!(items.attr("type"), Some("result"));

    let account = alice
        .iq(get(Some(&daemon.jid("bob")), Element::new("query", ns::DISCO_INFO)))
        .await;
    let identity = account
        .get_child("query", ns::DISCO_INFO)
        .and_then(|q| q.get_child("identity", ns::DISCO_INFO))
        .expect("account identity");
    assert_eq!(
        (identity.attr("category"), identity.attr("type")),
        (Some("account"), Some("registered"))
    );

    let version = alice.iq(get(Some(DOMAIN), Element::new("query", ns::VERSION))).await;
    let query = version.get_child("query", ns::VERSION).expect("version");
    assert_eq!(
        query.get_child("name", ns::VERSION).map(|n| n.text()).as_deref(),
        Some("Switchboard")
    );
    assert_eq!(
        query.get_child("version", ns::VERSION).map(|n| n.text()).as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );

    alice.ping_server().await;
    // A ping to a bare JID is answered by the server for the account.
    let pong = alice
        .iq(get(Some(&daemon.jid("bob")), Element::new("ping", ns::PING)))
        .await;
    assert_eq!(pong.attr("type"), Some("result"));
    // A ping to a full JID reaches the client, whose answer comes back.
    let bob_full = format!("{}/desk", daemon.jid("bob"));
    alice
        .send(&get(Some(&bob_full), Element::new("ping", ns::PING)).with_attr("id", "p2p"))
        .await;
    let ping = bob.expect("ping", |e| e.attr("id") == Some("p2p")).await;
    assert_eq!(
        ping.attr("from"),
        Some(format!("{}/phone", daemon.jid("alice")).as_str())
    );
    bob.send(
        &Element::new("iq", ns::CLIENT)
            .with_attr("type", "result")
            .with_attr("id", "p2p")
            .with_attr("to", ping.attr("from").unwrap_or_default()),
    )
    .await;
    let pong = alice.expect("pong", |e| e.attr("id") == Some("p2p")).await;
    assert_eq!(pong.attr("type"), Some("result"));
    assert_eq!(pong.attr("from"), Some(bob_full.as_str()));

    // Unknown payloads and malformed iqs.
    let unknown = alice.iq(get(None, Element::new("query", "urn:example:unknown"))).await;
    assert_eq!(error_condition(&unknown).as_deref(), Some("service-unavailable"));
    let unknown = alice
        .iq(get(Some(&daemon.jid("bob")), Element::new("query", ns::VERSION)))
        .await;
    assert_eq!(error_condition(&unknown).as_deref(), Some("service-unavailable"));
    let no_id = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_child(Element::new("ping", ns::PING));
    alice.send(&no_id).await;
    let error = alice.expect("bad-request", |e| e.name == "iq").await;
    assert_eq!(error_condition(&error).as_deref(), Some("bad-request"));
    let bad_type = alice
        .iq(Element::new("iq", ns::CLIENT).with_attr("type", "fetch"))
        .await;
    assert_eq!(error_condition(&bad_type).as_deref(), Some("bad-request"));
}
