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
    /// Simultaneous connections accepted from one IP address.
    pub max_connections_per_ip: u32,
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

impl Default for ServerTuning {
    fn default() -> Self {
        ServerTuning {
            pre_auth_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(900),
            keepalive_interval: Duration::from_secs(120),
            write_timeout: Duration::from_secs(60),
            max_connections_per_ip: 1024,
            max_auth_attempts: 3,
            max_auth_failures_per_ip: 20,
            auth_failure_window: Duration::from_secs(60),
            outbound_queue_len: 256,
            component_queue_len: 4096,
            close_grace: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(5),
            interface_poll_interval: Duration::from_secs(3),
            board_interfaces: Vec::new(),
        }
    }
}
