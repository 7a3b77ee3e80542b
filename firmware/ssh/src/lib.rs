//! SSH for the administrator (SPEC, "Administrator access"): `ssh admin@node` gets the MMP
//! prompt, `ssh admin@node '<command>'` runs one command (exit status 0, or 1 on `FAILURE`),
//! and SFTP reads and writes the node's file area, where `pki` and `xmpp certs` find
//! certificates and keys. russh on the ring provider; russh-sftp for the subsystem.
//!
//! - [`server`]: the listener (through sb-listener, `Service::Ssh`), following `ssh ...` live,
//!   and the connection limits (connections at once, login time, idle time).
//! - [`connection`]: login for `admin` (the admin password through the shared failure limiter,
//!   or an authorized key) and what each session channel becomes.
//! - [`console`] and [`line_editor`]: the prompt and one-shot commands.
//! - [`sftp`]: the file area, and no way out of it.
//! - [`host_key`]: the ed25519 host key, made once and kept.

pub mod connection;
pub mod console;
pub mod host_key;
pub mod line_editor;
pub mod server;
pub mod sftp;

pub use server::{SshHandle, start};

use std::time::Duration;

/// The SSH server's limits.
#[derive(Clone, Debug)]
pub struct SshTuning {
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// A connection that has not logged in by then is closed.
    pub auth_timeout: Duration,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Authentication attempts per connection.
    pub max_auth_attempts: usize,
    /// Failed password logins per address within `failure_window` before it is refused
    /// unchecked (the web admin's numbers: one limiter, one policy).
    pub max_login_failures: u32,
    pub failure_window: Duration,
    /// The largest file SFTP writes into the file area (upgrade images are the largest).
    pub max_file_bytes: u64,
}

impl Default for SshTuning {
    fn default() -> Self {
        SshTuning {
            max_connections: 8,
            auth_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(15 * 60),
            max_auth_attempts: 6,
            max_login_failures: 5,
            failure_window: Duration::from_secs(5 * 60),
            max_file_bytes: 256 * 1024 * 1024,
        }
    }
}
