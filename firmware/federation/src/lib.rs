//! Federation: server-to-server links in and out, Server Dialback, STARTTLS, DNS SRV,
//! privacy lists and static routes (SPEC.md part 2, Expressway-E style).
//!
//! Layers, bottom up:
//! - [`policy`], [`srv`] and [`stream`] are pure: who may federate, in which order to try a
//!   domain's servers, and the s2s stream state machines (dialback in its three roles).
//! - [`dns`] wraps hickory-resolver; [`tls`] builds the rustls configurations and judges
//!   peer certificates.
//! - [`Federation`] owns the I/O: the 5269 listener, one outgoing link per remote domain
//!   with its bounded queue, verify-only streams, idle timers; it is the router's link for
//!   every domain that is neither ours nor a component's.

pub mod dns;
mod inbound;
pub mod internal;
mod link;
pub mod policy;
mod service;
pub mod srv;
pub mod stream;
pub mod tls;
mod transport;

pub use service::{
    DEFAULT_S2S_PORT, Direction, Federation, FederationError, FederationStatus, FederationTuning, LinkInfo, LinkState,
    Snapshot,
};
pub use stream::AuthMethod;
