//! Routing across the nodes of a cluster (issue 11), on the cluster's relay channel rather
//! than its log: session registration stays as cheap as on a single node.
//!
//! [`Directory`] follows this node's router (sessions bound, unbound, their presence, the
//! Call Bridge components connected) and tells every other node; it installs theirs as
//! remote entries (`SessionHandle::Remote`, remote component links) in this node's router.
//! A stanza for a session or component of another node travels to that node and is
//! delivered there; one that cannot reach it is routed again (offline storage, another
//! resource, a bounce), never dropped. The messages are in [`protocol`].

mod directory;
pub mod protocol;

pub use directory::{Directory, MAX_HOPS, router_node};
