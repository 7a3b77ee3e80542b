//! The daemon's life: clean shutdown on SIGTERM, timeouts, keepalives, connection limits,
//! and live reconfiguration through the admin socket.

mod common;

use common::{Client, DOMAIN, Daemon};
use rustls_pki_types::pem::PemObject;
use sb_proto::{StreamHeader, ns};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_stream_properly() {
    let mut daemon = Daemon::start(&["alice", "bob"], &[], |_| {});
    let mut alice = daemon.online("alice", "phone").await;
    let mut bob = daemon.online("bob", "desk").await;
    // A connection that has not authenticated yet is closed too.
    let mut stranger = Client::connect(daemon.addr).await;
    stranger.open_stream(DOMAIN).await;

    let status = tokio::task::block_in_place(|| daemon.terminate());
    assert!(status.success(), "exit status {status}:\n{}", daemon.log());
    for client in [&mut alice, &mut bob, &mut stranger] {
        client.expect_stream_error("system-shutdown").await;
    }
    // TLS streams end with close_notify, not a cut connection.
    assert_eq!(alice.closed_cleanly, Some(true));
    assert_eq!(bob.closed_cleanly, Some(true));
}

#[tokio::test]
async fn idle_sessions_get_keepalives_then_time_out() {
    let daemon = Daemon::start(&["alice"], &["--idle-timeout", "2", "--keepalive", "0.3"], |_| {});
    let mut alice = daemon.online("alice", "phone").await;
    alice.record_raw = true;
    alice.expect_stream_error("connection-timeout").await;
    // Keepalives are spaces between elements; recording started after the last element
    // the session received, so they are what comes before the stream error.
    assert!(
        alice.raw.iter().take_while(|b| **b != b'<').any(|b| *b == b' '),
        "no whitespace keepalive in {:?}",
        String::from_utf8_lossy(&alice.raw)
    );
}

#[tokio::test]
async fn unauthenticated_connections_time_out() {
    let daemon = Daemon::start(&[], &["--pre-auth-timeout", "1"], |_| {});
    let mut client = Client::connect(daemon.addr).await;
    client.open_stream(DOMAIN).await;
    client.expect_stream_error("connection-timeout").await;
}

#[tokio::test]
async fn connections_per_address_are_limited() {
    let daemon = Daemon::start(&[], &["--max-connections-per-ip", "2"], |_| {});
    let mut first = Client::connect(daemon.addr).await;
    first.open_stream(DOMAIN).await;
    let mut second = Client::connect(daemon.addr).await;
    second.open_stream(DOMAIN).await;
    let mut third = Client::connect(daemon.addr).await;
    third.expect_header().await;
    third.expect_stream_error("policy-violation").await;
    // A slot frees when a connection ends.
    first.send_raw(b"</stream:stream>").await;
    first.expect_closed().await;
    let mut again = None;
    for _ in 0..100 {
        let mut client = Client::connect(daemon.addr).await;
        let mut header = StreamHeader::new(ns::CLIENT);
        header.to = Some(DOMAIN.to_owned());
        client.send_raw(&header.to_bytes()).await;
        client.expect_header().await;
        match client.next().await {
            common::Event::Element(e) if e.is("features", ns::STREAM) => {
                again = Some(client);
                break;
            }
            // The old connection's slot may not be released yet: try again.
            _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    assert!(again.is_some(), "the freed slot was never reused");
}

/// Log in at `addr` with the daemon's current certificate (the last one configured).
async fn daemon_login_at(daemon: &Daemon, addr: std::net::SocketAddr, user: &str) -> Client {
    let certificate =
        rustls_pki_types::CertificateDer::from_pem_file(daemon.dir.path().join("certs/renewed.crt")).expect("cert");
    let mut client = Client::connect(addr).await;
    client.open_stream(DOMAIN).await;
    client.starttls(certificate).await;
    client.open_stream(DOMAIN).await;
    client.authenticate(user, common::PASSWORD).await.expect("login");
    client.open_stream(DOMAIN).await;
    client.bind(Some("again")).await;
    client
}

fn admin(daemon: &Daemon, line: &str) -> sb_admin::Reply {
    let command = sb_admin::parse(line).expect("command parses");
    let socket = sb_admin::socket::socket_path(daemon.dir.path());
    sb_admin::socket::request(&socket, &command).expect("admin socket answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_socket_changes_apply_live() {
    let daemon = Daemon::start(&["alice", "bob"], &[], |_| {});
    let mut bob = daemon.online("bob", "desk").await;

    // Status lists the session.
    let status = tokio::task::block_in_place(|| admin(&daemon, "xmpp status"));
    assert!(status.ok, "{}", status.text);
    assert!(status.text.contains("bob@switchboard.test/desk"), "{}", status.text);

    // A new listen address: the old listener closes, the new one serves, sessions stay.
    let new_addr = std::net::SocketAddr::new(daemon.addr.ip(), {
        let l = std::net::TcpListener::bind((daemon.addr.ip(), 0)).expect("free port");
        l.local_addr().expect("addr").port()
    });
    let reply = tokio::task::block_in_place(|| admin(&daemon, &format!("xmpp listen {new_addr}")));
    assert!(reply.ok, "{}", reply.text);
    let mut alice = Client::connect(new_addr).await;
    let features = alice.open_stream(DOMAIN).await;
    assert!(features.has_child("starttls", ns::TLS));
    assert!(
        tokio::net::TcpStream::connect(daemon.addr).await.is_err(),
        "old listener still open"
    );
    bob.ping_server().await;

    // A new certificate serves new connections; established sessions keep theirs.
    let reply = tokio::task::block_in_place(|| {
        admin(
            &daemon,
            &format!("pki selfsigned renewed CN:{DOMAIN} subjectAltName:{DOMAIN}"),
        )
    });
    assert!(reply.ok, "{}", reply.text);
    let reply = tokio::task::block_in_place(|| admin(&daemon, "xmpp certs renewed.key renewed.crt"));
    assert!(reply.ok, "{}", reply.text);
    let renewed = rustls_pki_types::CertificateDer::from_pem_file(daemon.dir.path().join("certs/renewed.crt"))
        .expect("renewed certificate");
    assert_ne!(renewed.as_ref(), daemon.certificate().as_ref());
    let mut fresh = Client::connect(new_addr).await;
    fresh.open_stream(DOMAIN).await;
    fresh.starttls(renewed).await;
    fresh.open_stream(DOMAIN).await;
    fresh
        .authenticate("alice", common::PASSWORD)
        .await
        .expect("login over the new certificate");
    bob.ping_server().await;

    // Disabling the service ends every stream; enabling it listens again.
    let mut carol_like = Client::connect(new_addr).await;
    carol_like.open_stream(DOMAIN).await;
    let reply = tokio::task::block_in_place(|| admin(&daemon, "xmpp disable"));
    assert!(reply.ok, "{}", reply.text);
    carol_like.expect_stream_error("system-shutdown").await;
    bob.expect_stream_error("system-shutdown").await;
    assert!(
        tokio::net::TcpStream::connect(new_addr).await.is_err(),
        "disabled but listening"
    );
    let reply = tokio::task::block_in_place(|| admin(&daemon, "xmpp enable"));
    assert!(reply.ok, "{}", reply.text);
    let mut bob = daemon_login_at(&daemon, new_addr, "bob").await;

    // Deleting an account ends its sessions.
    let reply = tokio::task::block_in_place(|| admin(&daemon, "user del bob"));
    assert!(reply.ok, "{}", reply.text);
    bob.expect_stream_error("not-authorized").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_reach_the_inherited_pipe() {
    use std::io::Read;
    use std::os::fd::{AsFd, AsRawFd};
    // A pipe without close-on-exec, as init hands it over.
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
    let fd = write_end.as_raw_fd().to_string();
    let _daemon = Daemon::start_with_env(&[], &[], &[("SB_HEARTBEAT_FD", &fd)], |_| {});
    drop(write_end);
    // Bounded wait: other tests' daemons inherit the write end too, so EOF cannot be relied on.
    let ready = tokio::task::block_in_place(|| {
        let mut fds = [nix::poll::PollFd::new(read_end.as_fd(), nix::poll::PollFlags::POLLIN)];
        let patience_ms = u16::try_from(common::PATIENCE.as_millis()).unwrap_or(u16::MAX);
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(patience_ms)).expect("poll")
    });
    assert_eq!(ready, 1, "no heartbeat arrived");
    let mut reader = std::fs::File::from(read_end);
    let mut beat = [0u8; 1];
    let read = reader.read(&mut beat).expect("read heartbeat");
    assert_eq!(read, 1, "the pipe closed without a heartbeat");
}

/// After its client listener is bound, xmppd writes `R` on init's pipe (init's readiness
/// signal, instead of polling port 5222); heartbeats are other bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reaches_the_inherited_pipe_once_clients_can_connect() {
    use std::io::Read;
    use std::os::fd::{AsFd, AsRawFd};
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
    let fd = write_end.as_raw_fd().to_string();
    let daemon = Daemon::start_with_env(&[], &[], &[("SB_HEARTBEAT_FD", &fd)], |_| {});
    drop(write_end);
    let signalled = tokio::task::block_in_place(|| {
        let patience_ms = u16::try_from(common::PATIENCE.as_millis()).unwrap_or(u16::MAX);
        let mut reader = std::fs::File::from(read_end.try_clone().expect("dup"));
        // Bounded: a heartbeat or two come first at most, then the signal.
        for _ in 0..16 {
            let mut fds = [nix::poll::PollFd::new(read_end.as_fd(), nix::poll::PollFlags::POLLIN)];
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(patience_ms)).expect("poll") == 0 {
                return false;
            }
            let mut byte = [0u8; 1];
            if reader.read(&mut byte).expect("read the pipe") == 0 {
                return false;
            }
            if byte[0] == b'R' {
                return true;
            }
        }
        false
    });
    assert!(signalled, "no readiness byte on the pipe");
    std::net::TcpStream::connect(daemon.addr).expect("clients can connect once xmppd signalled ready");
}
