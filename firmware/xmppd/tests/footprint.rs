//! Memory per idle authenticated TLS session, as a figure to watch (not a pass/fail
//! threshold): `cargo test -p xmppd --test footprint -- --ignored --nocapture`.

mod common;

use common::Daemon;

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn memory_per_idle_tls_session() {
    const SESSIONS: usize = 1000;
    let users: Vec<String> = (0..SESSIONS).map(|i| format!("user{i}")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let daemon = Daemon::start(&names, &[], |_| {});
    // Warm up allocator arenas and lazily built state with a first batch.
    let mut clients = Vec::new();
    for name in names.iter().take(50) {
        clients.push(daemon.online(name, "r").await);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let before = rss_kib(daemon.pid());
    for name in names.iter().skip(50) {
        clients.push(daemon.online(name, "r").await);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let after = rss_kib(daemon.pid());
    let per_session = (after.saturating_sub(before)) as f64 / (SESSIONS - 50) as f64;
    println!(
        "RSS {before} KiB -> {after} KiB for {} more sessions: {per_session:.1} KiB per idle TLS session",
        SESSIONS - 50
    );
    assert_eq!(clients.len(), SESSIONS);
}
