//! Timeouts and limits of the running server that are not part of the stored configuration.
//!
//! They have production defaults; `xmppd` flags override them so that tests can use short
//! timeouts instead of waiting minutes.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ServerTuning {
    /// A connection must finish SASL within this time after it was accepted.
    pub pre_auth_timeout: Duration,
    /// An authenticated connection that sends nothing for this long is closed with
    /// `<connection-timeout/>`.
    pub idle_timeout: Duration,
    /// After this long without sending anything we send a single space, so NATs and the
    /// client's own idle detection see a live stream.
    pub keepalive_interval: Duration,
    /// A peer that does not take our bytes for this long is dropped: its outbound queue would
    /// otherwise stall every sender routing to it.
    pub write_timeout: Duration,
    /// Unauthenticated client and Call Bridge connections from one IP address (IPv6: one
    /// /64). Logged-in sessions do not count: many users behind one NAT are fine.
    pub max_connections_per_ip: u32,
    /// Connections of every kind (clients, Call Bridges, servers); by default all of the
    /// descriptor limit but a reserve for the store, the admin socket and reloads.
    pub max_connections: u32,
    /// Connections that have not authenticated yet, from everywhere; by default half of
    /// `max_connections`, so a flood of idle sockets leaves room for logged-in users.
    pub max_pre_auth_connections: u32,
    /// SASL failures allowed on one connection before it is closed (RFC 6120 §6.4.5).
    pub max_auth_attempts: u8,
    /// Failed logins allowed from one IP address per `auth_failure_window`; beyond it every
    /// attempt from that address fails with `<temporary-auth-failure/>` until the window ends.
    pub max_auth_failures_per_ip: u32,
    pub auth_failure_window: Duration,
    /// Stanzas waiting for one session; beyond it senders get `resource-constraint`.
    pub outbound_queue_len: usize,
    /// Stanzas waiting for one Call Bridge; it carries many users' traffic, so its queue is
    /// longer than a client's. Beyond it senders get `resource-constraint`.
    pub component_queue_len: usize,
    /// Bytes waiting for one client session (queued, or written but not yet taken by the
    /// socket). A client that lets more pile up is disconnected with `<policy-violation/>`
    /// and what was queued for it is routed again (offline storage or a bounce). 2 MiB is
    /// eight stanzas of the largest allowed size, or thousands of presence updates.
    pub outbound_queue_bytes: usize,
    /// The same for one Call Bridge, which carries many users' traffic: 16 MiB.
    pub component_queue_bytes: usize,
    /// Replies a stream produces for what it read (a client pipelining requests) are
    /// flushed before more input is processed once this many bytes are buffered: 128 KiB.
    pub write_buffer_bytes: usize,
    /// Bytes queued for every stream of the daemon together (clients, Call Bridges, s2s
    /// links). The appliance has 256 MiB of RAM; 48 MiB of queued stanzas leaves the rest
    /// to the kernel, the store's cache and the sessions themselves. When it is used up,
    /// stanzas bounce with `resource-constraint` and sessions holding queued bytes end.
    pub queued_bytes_total: usize,
    /// How long a closing stream waits for the peer's `</stream:stream>` after sending its own,
    /// so the peer reads our error before the socket goes away.
    pub close_grace: Duration,
    /// Upper bound for `Server::shutdown` to wait for every stream to close.
    pub shutdown_timeout: Duration,
    /// How often the interfaces' addresses are read again, so listeners on an interface
    /// (`xmpp listen a`) follow DHCP and `ipv4` changes.
    pub interface_poll_interval: Duration,
    /// The board's names for its interfaces (`a` is `eth0`), from the board file; empty off
    /// the appliance, where interfaces go by their kernel names.
    pub board_interfaces: Vec<sb_store::BoardInterface>,
}

impl ServerTuning {
    /// The daemon-wide budget of queued stanza bytes, for `Core`.
    pub fn memory_budget(&self) -> crate::budget::MemoryBudget {
        crate::budget::MemoryBudget::new(self.queued_bytes_total)
    }

    pub fn connection_caps(&self) -> crate::limits::ConnectionCaps {
        crate::limits::ConnectionCaps {
            max_total: self.max_connections,
            max_pre_auth_total: self.max_pre_auth_connections,
            max_pre_auth_per_address: self.max_connections_per_ip,
        }
    }
}

impl Default for ServerTuning {
    /// Reads the process's descriptor limit (RLIMIT_NOFILE) for the global connection caps.
    fn default() -> Self {
        let caps = crate::limits::ConnectionCaps::for_descriptor_limit(crate::limits::descriptor_limit(), 32);
        ServerTuning {
            pre_auth_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(900),
            keepalive_interval: Duration::from_secs(120),
            write_timeout: Duration::from_secs(60),
            max_connections_per_ip: caps.max_pre_auth_per_address,
            max_connections: caps.max_total,
            max_pre_auth_connections: caps.max_pre_auth_total,
            max_auth_attempts: 3,
            max_auth_failures_per_ip: 20,
            auth_failure_window: Duration::from_secs(60),
            outbound_queue_len: 256,
            component_queue_len: 4096,
            outbound_queue_bytes: 2 * 1024 * 1024,
            component_queue_bytes: 16 * 1024 * 1024,
            write_buffer_bytes: 128 * 1024,
            queued_bytes_total: 48 * 1024 * 1024,
            close_grace: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(5),
            interface_poll_interval: Duration::from_secs(3),
            board_interfaces: Vec::new(),
        }
    }
}
