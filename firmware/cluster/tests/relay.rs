//! The relay channel end to end: payloads reach the named node in the order they were
//! queued, peers are reported up and down, and nothing queued for a dead node is lost
//! without the sender hearing of it.

mod support;

use std::sync::{Arc, Mutex};

use sb_cluster::{NodeId, RelayError, RelayHandler};
use support::Harness;

#[derive(Default)]
struct Recorder {
    received: Mutex<Vec<(NodeId, Vec<u8>)>>,
    up: Mutex<Vec<NodeId>>,
    down: Mutex<Vec<NodeId>>,
    undeliverable: Mutex<Vec<(NodeId, Vec<u8>)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RelayHandler for Recorder {
    fn received(&self, from: NodeId, payload: Vec<u8>) {
        lock(&self.received).push((from, payload));
    }
    fn peer_up(&self, node: NodeId) {
        lock(&self.up).push(node);
    }
    fn peer_down(&self, node: NodeId) {
        lock(&self.down).push(node);
    }
    fn undeliverable(&self, to: NodeId, payload: Vec<u8>, _reason: RelayError) {
        lock(&self.undeliverable).push((to, payload));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payloads_arrive_in_order_and_a_dead_peer_is_reported() {
    let mut h = Harness::new(51, 3);
    h.form().await;
    let recorders: Vec<Arc<Recorder>> = (0..3).map(|_| Arc::new(Recorder::default())).collect();
    for (i, recorder) in recorders.iter().enumerate() {
        h.cluster(i)
            .set_relay_handler(Some(Arc::clone(recorder) as Arc<dyn RelayHandler>));
    }
    let ids: Vec<NodeId> = (0..3).map(|i| h.cluster(i).node_id()).collect();
    h.wait_until("every node sees both peers up", |h| {
        (0..3).all(|i| h.cluster(i).members().iter().all(|m| m.reachable))
            && recorders.iter().all(|r| lock(&r.up).len() >= 2)
    })
    .await;
    assert_eq!(h.cluster(0).members().iter().filter(|m| m.me).count(), 1);

    // Enough payloads that several batches are needed; all in order.
    let count = 3000usize;
    let mut refused = 0;
    for n in 0..count {
        if h.cluster(0).relay(ids[1], n.to_string().into_bytes()).is_err() {
            refused += 1;
        }
    }
    assert_eq!(refused, 0, "a healthy peer's queue took every payload");
    h.wait_until("node 1 received every payload", |_| {
        lock(&recorders[1].received).len() == count
    })
    .await;
    let got: Vec<usize> = lock(&recorders[1].received)
        .iter()
        .map(|(from, p)| {
            assert_eq!(*from, ids[0]);
            String::from_utf8(p.clone()).unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(got, (0..count).collect::<Vec<_>>());
    assert!(lock(&recorders[2].received).is_empty());

    // Node 2 stops: both others hear it, and a relay to it is refused or comes back.
    h.stop(2).await;
    h.wait_until("nodes 0 and 1 see node 2 down", |_| {
        lock(&recorders[0].down).contains(&ids[2]) && lock(&recorders[1].down).contains(&ids[2])
    })
    .await;
    // A member seen down is still tried (a node that just restarted may not have probed its
    // peers yet): the attempt fails and the payload comes back, never silently dropped.
    h.cluster(0).relay(ids[2], b"late".to_vec()).unwrap();
    h.wait_until("the payload for the stopped node came back", |_| {
        lock(&recorders[0].undeliverable).contains(&(ids[2], b"late".to_vec()))
    })
    .await;
    assert!(matches!(
        h.cluster(0).relay(12345, b"x".to_vec()),
        Err(RelayError::UnknownPeer(12345))
    ));
    h.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_the_peer_refuses_comes_back_to_the_sender() {
    let mut h = Harness::new(52, 2);
    h.form().await;
    let sender = Arc::new(Recorder::default());
    h.cluster(0)
        .set_relay_handler(Some(Arc::clone(&sender) as Arc<dyn RelayHandler>));
    // Node 1 has no handler: it refuses batches rather than dropping them.
    let to = h.cluster(1).node_id();
    h.wait_until("node 0 sees node 1 up", |_| lock(&sender.up).contains(&to))
        .await;
    h.cluster(0).relay(to, b"one".to_vec()).unwrap();
    h.cluster(0).relay(to, b"two".to_vec()).unwrap();
    h.wait_until("both payloads came back", |_| lock(&sender.undeliverable).len() == 2)
        .await;
    assert_eq!(
        *lock(&sender.undeliverable),
        vec![(to, b"one".to_vec()), (to, b"two".to_vec())]
    );
    h.shutdown_all().await;
}
