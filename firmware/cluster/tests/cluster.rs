//! The cluster core end to end: real TCP on 127.0.x.y, mutual TLS, sled on disk.
//! Each test has its own 127.0.<net>.0/24 so tests run side by side.

mod support;

use std::collections::BTreeSet;
use std::time::Instant;

use sb_cluster::{Health, MembershipError, NodeState, ProposeError, Timing};
use support::{Ca, Harness};

fn entry(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_apply_the_same_entries_in_the_same_order() {
    let mut h = Harness::new(31, 3);
    h.form().await;
    let leader = h.wait_leader().await;
    let follower = (leader + 1) % 3;
    let mut expected = Vec::new();
    for n in 0..5 {
        let on_leader = entry(&format!("leader-{n}"));
        assert_eq!(
            h.propose_ok(leader, &on_leader).await,
            [b"ok:".as_slice(), &on_leader].concat()
        );
        expected.push(on_leader);
        // A follower forwards to the leader.
        let forwarded = entry(&format!("follower-{n}"));
        assert_eq!(
            h.propose_ok(follower, &forwarded).await,
            [b"ok:".as_slice(), &forwarded].concat()
        );
        expected.push(forwarded);
    }
    // A deterministic refusal is the proposer's answer, and the cluster carries on.
    assert_eq!(
        h.cluster(follower).propose(entry("reject:alice")).await,
        Err(ProposeError::Rejected("alice exists".to_owned()))
    );
    let last = entry("after-rejection");
    h.propose_ok(leader, &last).await;
    expected.push(last);
    h.wait_until("every node applied exactly the proposals, in order", |h| {
        (0..3).all(|i| h.node(i).state.entries() == expected)
    })
    .await;
    // Status: one leader line, (me) once, every peer healthy.
    h.wait_until("every peer reachable from every node", |h| {
        (0..3).all(|i| {
            let status = h.cluster(i).status();
            status.quorum
                && status
                    .members
                    .iter()
                    .all(|m| matches!(m.health, Health::Me | Health::Reachable) && m.last_contact.is_some())
        })
    })
    .await;
    h.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_leader_is_replaced_and_catches_up_from_its_disk() {
    let mut h = Harness::new(32, 3);
    h.form().await;
    let mut expected = Vec::new();
    for run in 0..3 {
        let leader = h.wait_leader().await;
        let old_id = h.cluster(leader).node_id();
        let killed = Instant::now();
        h.stop(leader).await;
        let stopped_after = killed.elapsed();
        h.wait_until("a new leader among the survivors", |h| {
            h.agreed_leader().is_some_and(|l| l != leader)
        })
        .await;
        eprintln!(
            "failover run {run}: new leader seen {} ms after the leader was killed (its shutdown took {} ms)",
            killed.elapsed().as_millis(),
            stopped_after.as_millis()
        );
        let survivor = h.running()[0];
        let written = entry(&format!("while-{run}-down"));
        h.propose_ok(survivor, &written).await;
        expected.push(written);
        h.start(leader).await;
        assert_eq!(h.cluster(leader).node_id(), old_id, "identity survives restart");
        h.wait_converged(&expected).await;
    }
    let all = h.wait_converged(&expected).await;
    assert_eq!(all.len(), expected.len(), "no entry applied twice");
    h.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_majority_writes_fail_naming_the_unreachable_nodes() {
    let mut h = Harness::new(33, 3);
    h.form().await;
    let leader = h.wait_leader().await;
    // Stop the leader and one follower.
    let survivor = (leader + 1) % 3;
    let stopped: Vec<usize> = (0..3).filter(|i| *i != survivor).collect();
    for i in &stopped {
        h.stop(*i).await;
    }
    let stopped_addrs: BTreeSet<String> = stopped.iter().map(|i| h.addr(*i)).collect();
    h.wait_until("the survivor sees both peers unreachable", |h| {
        h.cluster(survivor)
            .status()
            .members
            .iter()
            .filter(|m| matches!(m.health, Health::Unreachable { .. }))
            .count()
            == 2
    })
    .await;
    h.wait_until("the survivor knows it has no quorum", |h| {
        !h.cluster(survivor).status().quorum
    })
    .await;
    match h.cluster(survivor).propose(entry("lost")).await {
        Err(ProposeError::NoQuorum { unreachable }) => {
            let named: BTreeSet<String> = unreachable.into_iter().collect();
            assert_eq!(named, stopped_addrs);
        }
        other => panic!("expected no quorum, got {other:?}"),
    }
    let error = h.cluster(survivor).propose(entry("lost")).await.unwrap_err();
    assert!(error.to_string().starts_with("no quorum (unreachable: "), "{error}");
    for i in &stopped {
        h.start(*i).await;
    }
    h.wait_leader().await;
    let back = entry("back");
    h.propose_ok(survivor, &back).await;
    h.wait_converged(&[back]).await;
    h.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_from_another_ca_cannot_join_or_talk() {
    let mut h = Harness::new(34, 3);
    h.start(0).await;
    h.cluster(0).initialize().await.unwrap();
    h.wait_leader().await;
    let rogue_ca = Ca::new("Rogue CA");

    // Node 1 trusts the cluster's CA, but its own certificate comes from another CA.
    let identity = rogue_ca.identity(&h.ca.pem);
    h.start_with(1, identity).await;
    let refused = h.cluster(1).join(&h.addr(0)).await.unwrap_err();
    assert!(matches!(refused, MembershipError::Untrusted { .. }), "{refused:?}");
    let rogue_ip = h.ip(1).to_string();
    h.wait_until("the member records the refused peer", |h| {
        h.cluster(0).peer_faults().iter().any(|fault| fault.peer == rogue_ip)
    })
    .await;

    // Node 2 only trusts its own CA: it refuses the member's certificate.
    let identity = rogue_ca.identity(&rogue_ca.pem);
    h.start_with(2, identity).await;
    let refused = h.cluster(2).join(&h.addr(0)).await.unwrap_err();
    assert!(matches!(refused, MembershipError::Untrusted { .. }), "{refused:?}");
    let member_addr = h.addr(0);
    assert!(
        h.cluster(2)
            .peer_faults()
            .iter()
            .any(|fault| fault.peer == member_addr && fault.reason.contains("not trusted")),
        "{:?}",
        h.cluster(2).peer_faults()
    );
    assert_eq!(h.cluster(0).status().members.len(), 1);
    h.propose_ok(0, b"still alone").await;
    h.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reset_node_that_joins_again_replaces_its_old_entry() {
    let mut h = Harness::new(35, 3);
    h.form().await;
    let before = entry("before-reset");
    h.propose_ok(0, &before).await;
    let old_id = h.cluster(2).node_id();
    h.reset(2).await;
    h.start(2).await;
    let new_id = h.cluster(2).node_id();
    assert_ne!(old_id, new_id, "a reset node has a new identity");
    h.cluster(2).join(&h.addr(1)).await.unwrap();
    h.wait_members(3).await;
    // Joining again changes nothing.
    h.cluster(2).join(&h.addr(0)).await.unwrap();
    h.wait_members(3).await;
    for i in 0..3 {
        let ids: BTreeSet<u64> = h.cluster(i).status().members.iter().map(|m| m.id).collect();
        assert!(ids.contains(&new_id) && !ids.contains(&old_id), "node {i}: {ids:x?}");
    }
    let after = entry("after-rejoin");
    h.propose_ok(2, &after).await;
    h.wait_converged(&[before, after]).await;
    h.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_down_while_the_log_was_purged_catches_up_by_snapshot() {
    let timing = Timing {
        snapshot_every: 10,
        logs_kept_after_snapshot: 0,
        ..Timing::default()
    };
    let mut h = Harness::with_timing(36, 3, timing);
    h.form().await;
    let mut expected = vec![entry("seen-by-all")];
    h.propose_ok(0, &expected[0]).await;
    h.wait_converged(&expected).await;
    h.stop(2).await;
    let leader = h.wait_leader().await;
    for n in 0..40 {
        let e = entry(&format!("while-away-{n}"));
        h.propose_ok(leader, &e).await;
        expected.push(e);
    }
    h.wait_until("the leader purged the log the absent node needs", |h| {
        h.cluster(leader)
            .status()
            .purged_index
            .is_some_and(|purged| purged > 20)
    })
    .await;
    h.start(2).await;
    h.wait_converged(&expected).await;
    assert!(
        h.node(2)
            .state
            .snapshots_installed
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0,
        "node 2 caught up through a snapshot"
    );
    // And it keeps following the log after the snapshot.
    let later = entry("after-catch-up");
    h.propose_ok(2, &later).await;
    h.wait_converged(&[later]).await;
    h.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_nodes_survive_two_failures() {
    let mut h = Harness::new(37, 5);
    h.form().await;
    let leader = h.wait_leader().await;
    let other = (leader + 2) % 5;
    h.stop(leader).await;
    h.stop(other).await;
    let new_leader = h.wait_leader().await;
    assert_ne!(new_leader, leader);
    let written = entry("with-three-of-five");
    let on = h.running()[0];
    h.propose_ok(on, &written).await;
    h.wait_converged(std::slice::from_ref(&written)).await;
    assert_eq!(h.cluster(new_leader).status().state, NodeState::Leader);
    h.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_member_is_removed_from_another_node() {
    let mut h = Harness::new(38, 3);
    h.form().await;
    let leader = h.wait_leader().await;
    let dead = (leader + 1) % 3;
    let asker = (leader + 2) % 3;
    let dead_addr = h.addr(dead);
    h.stop(dead).await;
    // From a follower: the request goes to the leader.
    h.cluster(asker).remove(&dead_addr).await.unwrap();
    h.wait_members(2).await;
    assert_eq!(
        h.cluster(asker).remove("127.0.38.99:1").await,
        Err(MembershipError::UnknownMember("127.0.38.99:1".to_owned()))
    );
    h.propose_ok(asker, b"two left").await;
    h.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_entries_reach_a_returning_node_in_batches_that_fit_a_frame() {
    let timing = Timing {
        max_frame: 1024 * 1024,
        ..Timing::default()
    };
    let mut h = Harness::with_timing(40, 3, timing);
    h.form().await;
    let too_big = vec![b'x'; 1024 * 1024];
    assert!(matches!(
        h.cluster(0).propose(too_big).await,
        Err(ProposeError::TooLarge { .. })
    ));
    h.stop(2).await;
    let leader = h.wait_leader().await;
    // Ten entries of 200 KiB: together far more than one frame.
    let mut expected = Vec::new();
    for n in 0..10u8 {
        let big = vec![b'a' + n; 200 * 1024];
        h.propose_ok(leader, &big).await;
        expected.push(big);
    }
    h.start(2).await;
    let all = h.wait_converged(&expected).await;
    assert_eq!(all, expected);
    h.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_cluster_restarted_from_disk_keeps_its_state() {
    let mut h = Harness::new(41, 3);
    h.form().await;
    let ids: Vec<u64> = (0..3).map(|i| h.cluster(i).node_id()).collect();
    let mut expected = Vec::new();
    for n in 0..5 {
        let e = entry(&format!("kept-{n}"));
        h.propose_ok(n % 3, &e).await;
        expected.push(e);
    }
    h.wait_converged(&expected).await;
    h.shutdown_all().await;
    for i in 0..3 {
        h.start(i).await;
    }
    assert_eq!((0..3).map(|i| h.cluster(i).node_id()).collect::<Vec<_>>(), ids);
    h.wait_leader().await;
    h.wait_members(3).await;
    let after = entry("after-restart");
    h.propose_ok(1, &after).await;
    expected.push(after);
    let all = h.wait_converged(&expected).await;
    assert_eq!(all, expected, "nothing lost, nothing applied twice");
    h.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_leaves_writes_to_the_majority_and_heals() {
    let mut h = Harness::new(42, 5);
    h.form().await;
    let old_leader = h.wait_leader().await;
    let old_term = h.cluster(old_leader).status().term;
    // The old leader and one follower on the minority side.
    let minority = [old_leader, (old_leader + 1) % 5];
    let majority: Vec<usize> = (0..5).filter(|i| !minority.contains(i)).collect();
    let minority_addrs: Vec<String> = minority.iter().map(|i| h.addr(*i)).collect();
    let majority_addrs: Vec<String> = majority.iter().map(|i| h.addr(*i)).collect();
    for i in minority {
        h.cluster(i).set_blocked_peers(&majority_addrs);
    }
    for i in &majority {
        h.cluster(*i).set_blocked_peers(&minority_addrs);
    }
    let side = majority.clone();
    h.wait_until("the majority elects a leader of its own", move |h| {
        side.iter().any(|i| {
            let status = h.cluster(*i).status();
            status.state == NodeState::Leader
                && status.term > old_term
                && side
                    .iter()
                    .all(|j| h.cluster(*j).status().leader == Some(status.node_id))
        })
    })
    .await;
    let written = entry("majority-side");
    h.propose_ok(majority[0], &written).await;

    let lonely = minority[1];
    h.wait_until("the minority sees the majority unreachable", |h| {
        h.cluster(lonely)
            .status()
            .members
            .iter()
            .filter(|m| matches!(m.health, Health::Unreachable { .. }))
            .count()
            == 3
    })
    .await;
    for i in minority {
        match h.cluster(i).propose(entry("minority-side")).await {
            Err(ProposeError::NoQuorum { unreachable }) => {
                let named: BTreeSet<String> = unreachable.into_iter().collect();
                assert_eq!(named, majority_addrs.iter().cloned().collect::<BTreeSet<_>>());
            }
            other => panic!("node {i} on the minority side: expected no quorum, got {other:?}"),
        }
    }

    for i in 0..5 {
        h.cluster(i).set_blocked_peers(&[]);
    }
    h.wait_leader().await;
    let healed = entry("healed");
    h.propose_ok(minority[1], &healed).await;
    let all = h.wait_converged(&[written.clone(), healed.clone()]).await;
    // The minority's writes were refused and never applied anywhere.
    assert!(!all.contains(&entry("minority-side")), "{all:?}");
    h.shutdown_all().await;
}

/// A member that starts while no leader answers it stays quiet for `startup_quiet`: it does
/// not raise the term (which would depose a healthy leader whose heartbeats had not reached
/// it yet). Nodes that heard from a leader elect as usual: the failover tests above.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_starting_member_calls_no_election_before_it_could_hear_a_leader() {
    let timing = Timing {
        startup_quiet: std::time::Duration::from_secs(60),
        ..Timing::default()
    };
    let mut h = Harness::with_timing(41, 3, timing.clone());
    h.form().await;
    let leader = h.wait_leader().await;
    let term_before = h.cluster(leader).status().term;
    for i in 0..3 {
        h.stop(i).await;
    }
    // A former follower (a former leader resumes its own term from disk, calling no election).
    let follower = (leader + 1) % 3;
    h.start(follower).await;
    // Many election timeouts (150-300 ms) pass; a slower machine only makes the wait longer.
    tokio::time::sleep(timing.election_max * 8).await;
    let status = h.cluster(follower).status();
    assert_eq!(status.state, NodeState::Follower, "a quiet start stays a follower");
    assert!(
        status.term <= term_before,
        "no election was called: term {} after {}",
        status.term,
        term_before
    );
    h.shutdown_all().await;
}
