//! XMPP sessions and routing: c2s, roster, presence, messages, disco, ping, version.
//!
//! One file per feature, Prosody style. [`Server`] is the entry point for the daemon;
//! [`core::Core`] (reached through [`Server::core`]) is what other stream types
//! (components, federation) use to register links on the [`router::Router`] and to hand
//! stanzas in with [`core::Core::route`].
//!
//! [`router`] is the table of where sessions and links are; [`delivery`] decides what
//! happens to a stanza (RFC 6120 §10, RFC 6121 §8.5) using it.

pub mod bind;
pub mod budget;
pub mod c2s;
pub mod component;
pub mod core;
pub mod counters;
pub mod delivery;
pub mod disco;
pub mod iq;
pub mod legacy_session;
pub mod limits;
pub mod message;
pub mod no_local_session;
pub mod offline;
pub mod ping;
pub mod presence;
pub mod roster;
pub mod router;
pub mod sasl;
pub mod service;
pub mod storage;
pub mod stream_io;
pub mod transport;
pub mod tuning;
pub mod version;

pub use router::{DeliveryError, Router, StanzaLink};
// The interfaces' addresses belong to the listener module; the core keeps the watch.
pub use sb_listener::interfaces;
pub use sb_listener::{ListenerStatus, Service, TlsMode};
pub use service::{Server, ServerError, ServerStatus};
pub use tuning::ServerTuning;
