//! `cargo xtask bench --cluster`: the cluster's figures, each from its own script in
//! tools/interop against release builds on 127.0.8x.y:
//! - routing (`cluster_routing_bench.py`): logins/s and messages on one node of a 3-node
//!   cluster against a single node, and between two nodes of the cluster, with loadgen;
//! - one replicated write (`cluster_bench.py`): a roster set's p50/p99 on a single node, and on
//!   the leader and a follower of a cluster;
//! - failover (`cluster_failover.py`): kill -9 of the leader while traffic flows between the
//!   two followers, N times: time to the first message delivered again, messages lost, and
//!   the first replicated write answered after the kill.
//!
//! The three run one after the other, never concurrently: the cluster's daemons already
//! share the machine's cores.

use crate::test::python;
use crate::util::{TaskResult, banner, cargo_build, cargo_build_profile, run_status, workspace_root};
use std::process::Command;

#[derive(Clone, Debug)]
pub struct ClusterBench {
    /// Clients per loadgen in the routing benchmark.
    pub clients: usize,
    pub kills: usize,
    pub writes: usize,
    pub release: bool,
}

pub fn run(options: &ClusterBench) -> TaskResult {
    // The three benchmarks are Python scripts (standard library only).
    crate::deps::ensure_packages(&["python3"])?;
    let bin = cargo_build(&["xmppd", "mmp"], options.release)?;
    let loadgen = cargo_build_profile(&["loadgen"], if options.release { "tools" } else { "dev" })?.join("loadgen");
    let xmppd = bin.join("xmppd");
    let mmp = bin.join("mmp");
    let script = |name: &str| {
        let mut command = Command::new(python());
        command
            .arg(workspace_root().join("tools/interop").join(name))
            .arg("--xmppd")
            .arg(&xmppd)
            .arg("--mmp")
            .arg(&mmp);
        command
    };
    banner("cluster routing: logins and messages, single node against a 3-node cluster");
    run_status(
        script("cluster_routing_bench.py")
            .arg("--loadgen")
            .arg(&loadgen)
            .arg("--clients")
            .arg(options.clients.to_string()),
        "cluster_routing_bench.py",
    )?;
    banner("one replicated write (a roster set)");
    run_status(
        script("cluster_bench.py")
            .arg("--writes")
            .arg(options.writes.to_string()),
        "cluster_bench.py",
    )?;
    banner("failover: kill -9 of the leader");
    run_status(
        script("cluster_failover.py")
            .arg("--kills")
            .arg(options.kills.to_string()),
        "cluster_failover.py",
    )
}
