//! `xmpp listen <iface>`: listeners on an interface's IPv4 addresses, following them as they
//! change, without touching established sessions.

mod common;

use common::{Client, DOMAIN, Daemon, PATIENCE};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

/// The daemon opens its admin socket just after its listeners, so the first request may
/// find none yet: it is retried (bounded) until the socket answers.
fn admin(daemon: &Daemon, line: &str) -> sb_admin::Reply {
    let command = sb_admin::parse(line).expect("command parses");
    let socket = sb_admin::socket::socket_path(daemon.dir.path());
    let deadline = Instant::now() + PATIENCE;
    loop {
        match sb_admin::socket::request(&socket, &command) {
            Ok(reply) => return reply,
            Err(e) if e.is_not_running() && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("admin socket: {e}\n{}", daemon.log()),
        }
    }
}

/// `xmpp status` until `done` holds for its text (bounded by [`PATIENCE`]; the daemon re-reads
/// the interfaces every few seconds).
fn wait_for_status(daemon: &Daemon, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = admin(daemon, "xmpp status");
        assert!(status.ok, "{}", status.text);
        if done(&status.text) {
            return status.text;
        }
        assert!(
            Instant::now() < deadline,
            "xmpp status never showed {what}:\n{}\n{}",
            status.text,
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn login_at(daemon: &Daemon, addr: SocketAddr, user: &str, resource: &str) -> Client {
    let mut client = Client::connect(addr).await;
    client.open_stream(DOMAIN).await;
    client.starttls(daemon.certificate()).await;
    client.open_stream(DOMAIN).await;
    client.authenticate(user, common::PASSWORD).await.expect("login");
    client.open_stream(DOMAIN).await;
    client.bind(Some(resource)).await;
    client
}

fn free_port_on_loopback() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    listener.local_addr().expect("local addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interface_name_listens_on_its_address() {
    let daemon = Daemon::start(&["alice"], &[], |c| c.component_port = 0);
    let port = free_port_on_loopback();
    let line = format!("xmpp listen {} lo:{port}", daemon.addr);
    let reply = tokio::task::block_in_place(|| admin(&daemon, &line));
    assert_eq!(reply.text, "SUCCESS");
    let shown = tokio::task::block_in_place(|| admin(&daemon, "xmpp"));
    assert!(
        shown
            .text
            .contains(&format!("Listen            : {} lo:{port}", daemon.addr)),
        "{}",
        shown.text
    );
    let status = tokio::task::block_in_place(|| admin(&daemon, "xmpp status"));
    assert!(
        status.text.contains(&format!("127.0.0.1:{port} on lo (listening)")),
        "{}",
        status.text
    );
    let mut alice = login_at(&daemon, SocketAddr::from(([127, 0, 0, 1], port)), "alice", "lo").await;
    alice.ping_server().await;

    let reply = tokio::task::block_in_place(|| admin(&daemon, "xmpp listen nosuch9"));
    assert!(
        reply
            .text
            .starts_with("FAILURE: no interface 'nosuch9' on this host (interfaces: "),
        "{}",
        reply.text
    );
}

/// `ip` with `args`, in the calling thread's network namespace; forked under the harness's
/// lock, so it never inherits a store lock another test holds.
fn run_ip(args: &[&str]) -> std::io::Result<std::process::Output> {
    let _no_fork = common::FORK_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    Command::new("ip").args(args).output()
}

fn ip(args: &str) {
    let words: Vec<&str> = args.split_whitespace().collect();
    let output = run_ip(&words).expect("run ip (package iproute2)");
    assert!(
        output.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An interface with no address: a dummy one, or an empty bridge where the kernel has no
/// dummy driver (containers); both deliver to their local addresses.
fn add_empty_interface(name: &str) {
    for kind in ["dummy", "bridge"] {
        let added = run_ip(&["link", "add", name, "type", kind]).is_ok_and(|out| out.status.success());
        if added {
            ip(&format!("link set {name} up"));
            return;
        }
    }
    panic!("cannot create a dummy or bridge interface {name}");
}

/// In a network namespace of its own (root only): addresses come and go on an interface and
/// the listeners follow; a session on an address that stays is never interrupted.
#[test]
fn listeners_follow_the_interface_addresses() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED listeners_follow_the_interface_addresses: creating a network namespace needs root");
        return;
    }
    // A namespace belongs to the thread that unshares it, and to the processes it starts
    // (ip, xmppd); the other tests in this binary stay in the host's.
    let outcome = std::thread::spawn(|| {
        if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
            eprintln!("SKIPPED listeners_follow_the_interface_addresses: unshare(CLONE_NEWNET): {e}");
            return;
        }
        ip("link set lo up");
        add_empty_interface("d0");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(follow_addresses());
    })
    .join();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn follow_addresses() {
    let daemon = Daemon::start(&["alice", "bob"], &[], |c| c.component_port = 0);
    let first: SocketAddr = "10.1.2.3:15222".parse().unwrap();
    // Another subnet: deleting an interface's primary address also deletes the secondary
    // ones of its subnet.
    let second: SocketAddr = "10.1.3.4:15222".parse().unwrap();
    let listening = |addr: SocketAddr| format!("{addr} on d0 (listening)");

    let reply = admin(&daemon, &format!("xmpp listen {} d0:15222", daemon.addr));
    assert_eq!(reply.text, "SUCCESS");
    let status = wait_for_status(&daemon, "d0 waiting", |s| {
        s.contains("d0:15222 (waiting: no IPv4 address on d0 yet)")
    });
    let faults = status.split("Faults").nth(1).unwrap_or_default();
    assert!(!faults.contains("d0"), "waiting is no fault:\n{status}");

    ip("addr add 10.1.2.3/24 dev d0");
    wait_for_status(&daemon, "d0's first address", |s| s.contains(&listening(first)));
    let mut alice = login_at(&daemon, first, "alice", "first").await;
    alice.ping_server().await;

    // A second address: a listener more, the first one and its session stay.
    ip("addr add 10.1.3.4/24 dev d0");
    wait_for_status(&daemon, "both addresses", |s| {
        s.contains(&listening(first)) && s.contains(&listening(second))
    });
    alice.ping_server().await;
    let mut bob = login_at(&daemon, second, "bob", "second").await;
    bob.ping_server().await;

    // The first address goes: its listener closes, the other serves on.
    ip("addr del 10.1.2.3/24 dev d0");
    wait_for_status(&daemon, "only the second address", |s| {
        !s.contains(&first.to_string()) && s.contains(&listening(second))
    });
    assert!(
        std::net::TcpStream::connect_timeout(&first, Duration::from_secs(2)).is_err(),
        "{first} still accepts"
    );
    bob.ping_server().await;

    // No address left: waiting again.
    ip("addr flush dev d0");
    wait_for_status(&daemon, "d0 waiting again", |s| {
        s.contains("d0:15222 (waiting: no IPv4 address on d0 yet)") && !s.contains(&second.to_string())
    });
    let status = admin(&daemon, "xmpp status");
    assert!(
        status.text.contains(&format!("{} (listening)", daemon.addr)),
        "{}",
        status.text
    );

    // From every address to one interface on the same port: the wildcard socket must be
    // closed before the interface's address can bind (the appliance's first-boot 0.0.0.0).
    ip("addr add 10.1.2.3/24 dev d0");
    let reply = admin(&daemon, &format!("xmpp listen {} 0.0.0.0:15222", daemon.addr));
    assert_eq!(reply.text, "SUCCESS");
    let status = admin(&daemon, "xmpp status");
    assert!(status.text.contains("0.0.0.0:15222 (listening)"), "{}", status.text);
    let reply = admin(&daemon, &format!("xmpp listen {} d0:15222", daemon.addr));
    assert_eq!(reply.text, "SUCCESS");
    let status = admin(&daemon, "xmpp status");
    assert!(status.text.contains(&listening(first)), "{}", status.text);
    login_at(&daemon, first, "alice", "again").await.ping_server().await;
}
