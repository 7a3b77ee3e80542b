//! XMPP without I/O.
//!
//! Everything here is pure: bytes in, typed values out, and typed values back to bytes.
//! No socket, no clock, no tokio. The daemon's connection tasks own the I/O and feed
//! this crate; that keeps every parser testable byte by byte and fuzzable.

pub mod component;
pub mod dialback;
pub mod domain;
pub mod element;
pub mod error;
pub mod framer;
pub mod jid;
pub mod log_safe;
pub mod ns;
pub mod presence;
pub mod sasl;

pub use domain::Domain;
pub use element::{Element, Node, retarget_namespace};
pub use error::{StanzaError, StanzaErrorCondition, StanzaErrorType, StreamError, StreamErrorCondition};
pub use framer::{FramerConfig, STREAM_CLOSE, StreamEvent, StreamFramer, StreamHeader};
pub use jid::{Jid, JidError};
pub use log_safe::{LogSafe, log_safe};
pub use presence::{PresenceType, SubscriptionType};
