//! Call Bridges: external components (XEP-0114, "jabber:component:accept") on port 5223,
//! with TLS on the socket as Cisco Meeting Server does it.
//!
//! - [`accept`]: the handshake and the per-stanza rules, pure;
//! - [`connection`]: the connection task (TLS, framing, routing both ways);
//! - [`registry`]: connected bridges (the router's links to them) and refused handshakes,
//!   for status.
//!
//! A bridge named `cb1` of domain `example.com` is `cb1.example.com`; its secret comes from
//! the store at every handshake, so `xmpp callbridge add` takes effect without a restart.

pub mod accept;
pub mod connection;
pub mod registry;

pub use accept::AuthFailureReason;
pub use connection::serve;
pub use registry::{AuthFailure, ComponentLink, ComponentRegistry, ComponentStatus};

/// Port of the component listener unless the configuration says otherwise.
pub const DEFAULT_COMPONENT_PORT: u16 = 5223;
