//! The DHCPv4 client process (`/init dhcp <iface>`), supervised by PID 1: obtain a lease,
//! configure the interface, renew at T1, start over when the lease runs out.
//! A UDP socket bound to the device with the broadcast flag set in requests: no raw sockets.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::dhcp::{self, ClientMessage, MessageType, ServerReply};
use crate::net;

pub fn lease_file(iface: &str) -> String {
    format!("/run/switchboard/lease-{iface}")
}

/// A transaction id only has to differ from other clients' (RFC 2131 4.1), so it never waits
/// for the kernel's pool to be seeded: GRND_INSECURE answers at once even at early boot.
fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    // SAFETY: getrandom fills at most the 4-byte buffer it is given.
    let filled = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), 4, libc::GRND_INSECURE) };
    if filled == 4 {
        u32::from_ne_bytes(bytes)
    } else {
        // A kernel before 5.6 refuses the flag: the clock's nanoseconds still tell boxes apart.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
            ^ std::process::id()
    }
}

fn open_socket(iface: &str) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, dhcp::CLIENT_PORT))?;
    socket.set_broadcast(true)?;
    let name = iface.as_bytes();
    // SAFETY: SO_BINDTODEVICE reads `name.len()` bytes from the pointer.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(socket)
}

/// Sends `msg` and waits up to `timeout` for a reply of one of `kinds` with our xid.
fn exchange(socket: &UdpSocket, msg: &ClientMessage, kinds: &[MessageType], timeout: Duration) -> Option<ServerReply> {
    let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, dhcp::SERVER_PORT);
    if let Err(e) = socket.send_to(&dhcp::encode(msg), to) {
        log::warn!("dhcp: send: {e}");
        return None;
    }
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let _ = socket.set_read_timeout(Some(left.max(Duration::from_millis(10))));
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(_) => return None,
        };
        match dhcp::decode(&buf[..n]) {
            Ok(reply) if reply.xid == msg.xid && kinds.contains(&reply.kind) => return Some(reply),
            Ok(_) => {}
            Err(e) => log::debug!("dhcp: ignoring a bad packet: {e}"),
        }
    }
}

fn apply(iface: &str, lease: &ServerReply) {
    let prefix = lease.subnet_mask.and_then(dhcp::mask_to_prefix).unwrap_or(24);
    if let Err(e) = net::set_ipv4(iface, lease.yiaddr, prefix) {
        log::error!("dhcp: setting {}/{prefix} on {iface}: {e}", lease.yiaddr);
        return;
    }
    if let Some(router) = lease.router
        && let Err(e) = net::add_default_route(iface, router)
    {
        log::warn!("dhcp: default route via {router}: {e}");
    }
    if !lease.dns.is_empty() {
        let _ = net::write_resolv_conf(&lease.dns);
    }
    let mut text = format!("addr={}/{prefix}\n", lease.yiaddr);
    if let Some(r) = lease.router {
        text.push_str(&format!("router={r}\n"));
    }
    for d in &lease.dns {
        text.push_str(&format!("dns={d}\n"));
    }
    text.push_str(&format!("lease_s={}\n", lease.lease_s.unwrap_or(0)));
    let _ = std::fs::write(lease_file(iface), text);
    log::info!(
        "dhcp: {iface} is {}/{prefix}, router {:?}, lease {:?} s",
        lease.yiaddr,
        lease.router,
        lease.lease_s
    );
}

/// The first retransmit interval (RFC 2131 4.1); each timeout doubles it, up to 64 s.
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// The first retransmit when the DISCOVER left before the link read operational.
const FIRST_RETRY_EARLY: Duration = Duration::from_millis(500);

fn sysfs(iface: &str, file: &str) -> Option<String> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/{file}"))
        .ok()
        .map(|text| text.trim().to_owned())
}

/// Waits (up to `limit`) for carrier; returns whether the link also reads operational.
///
/// The kernel opens an interface's transmit queue when it goes up with carrier already
/// present, or within milliseconds of carrier arriving later. Its operational state follows
/// through linkwatch, which batches events up to a second apart: waiting for "up" cost the
/// first DISCOVER over half a second on every boot. So carrier is the signal to send, and a
/// DISCOVER sent before the state reads "up" (it may have met a queue not yet open) gets a
/// short first retransmit.
fn wait_for_carrier(iface: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && sysfs(iface, "carrier").as_deref() != Some("1") {
        std::thread::sleep(Duration::from_millis(5));
    }
    sysfs(iface, "operstate").as_deref() == Some("up")
}

/// Never returns; PID 1 kills this process when the configuration changes.
pub fn run(iface: &str, hostname: &str) -> ! {
    if let Err(e) = net::link_up(iface) {
        log::error!("dhcp: bringing {iface} up: {e}");
    }
    let mac = net::mac(iface).unwrap_or([0; 6]);
    let operational = wait_for_carrier(iface, Duration::from_secs(2));
    let mut retry = if operational { FIRST_RETRY } else { FIRST_RETRY_EARLY };
    loop {
        let socket = match open_socket(iface) {
            Ok(s) => s,
            Err(e) => {
                log::error!("dhcp: socket on {iface}: {e}");
                std::thread::sleep(Duration::from_secs(5));
                continue;
            }
        };
        let started = Instant::now();
        let xid = random_u32();
        let base = ClientMessage {
            kind: MessageType::Discover,
            xid,
            mac,
            secs: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            requested_ip: None,
            server_id: None,
            hostname: Some(hostname),
        };
        let Some(offer) = exchange(&socket, &base, &[MessageType::Offer], retry) else {
            // RFC 2131 4.1: retransmit with a randomised exponential backoff, capped at 64 s.
            retry = (retry * 2).min(Duration::from_secs(64));
            continue;
        };
        let request = ClientMessage {
            kind: MessageType::Request,
            secs: started.elapsed().as_secs().min(u16::MAX as u64) as u16,
            requested_ip: Some(offer.yiaddr),
            server_id: offer.server_id,
            ..base
        };
        let Some(ack) = exchange(
            &socket,
            &request,
            &[MessageType::Ack, MessageType::Nak],
            Duration::from_secs(4),
        ) else {
            continue;
        };
        if ack.kind == MessageType::Nak {
            log::warn!("dhcp: server refused {}; starting over", offer.yiaddr);
            continue;
        }
        retry = FIRST_RETRY;
        apply(iface, &ack);
        hold_lease(iface, &socket, mac, hostname, ack);
        // The lease ran out without a renewal: drop the address and start from DISCOVER.
        let _ = net::clear_ipv4(iface);
        let _ = std::fs::remove_file(lease_file(iface));
    }
}

/// Renews at T1 (default half the lease) until a renewal fails through to expiry.
fn hold_lease(iface: &str, socket: &UdpSocket, mac: [u8; 6], hostname: &str, mut lease: ServerReply) {
    loop {
        let lease_s = lease.lease_s.unwrap_or(u32::MAX);
        if lease_s == u32::MAX {
            // Infinite lease: nothing to renew; just keep the process alive.
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        let obtained = Instant::now();
        let expires = obtained + Duration::from_secs(lease_s as u64);
        let t1 = Duration::from_secs(lease.renew_s.unwrap_or(lease_s / 2) as u64);
        std::thread::sleep(t1);
        let mut renewed = None;
        while Instant::now() < expires {
            let msg = ClientMessage {
                kind: MessageType::Request,
                xid: random_u32(),
                mac,
                secs: 0,
                ciaddr: lease.yiaddr,
                requested_ip: None,
                server_id: None,
                hostname: Some(hostname),
            };
            match exchange(
                socket,
                &msg,
                &[MessageType::Ack, MessageType::Nak],
                Duration::from_secs(10),
            ) {
                Some(reply) if reply.kind == MessageType::Ack => {
                    renewed = Some(reply);
                    break;
                }
                Some(_) => break,
                None => std::thread::sleep(Duration::from_secs(30)),
            }
        }
        match renewed {
            Some(reply) => {
                apply(iface, &reply);
                lease = reply;
            }
            None => return,
        }
    }
}
