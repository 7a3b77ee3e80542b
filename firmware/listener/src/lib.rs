//! Where the daemon listens: one module for every service's sockets.
//!
//! Each owner (the XMPP server for clients and Call Bridges, federation for servers; later
//! cluster, ssh; the web admin) describes what it wants as [`ListenSpec`]s — a service, a listen entry
//! parsed once ([`ListenEntry`]), a port and a [`TlsMode`] — and hands them with the current
//! interface addresses to [`resolve`]; a [`ListenerSet`] then makes its sockets match
//! ([`ListenerSet::reconcile`]): listeners no longer wanted close first, the ones still wanted
//! keep their socket, new ones bind. [`ListenerStatus`] is what every status page reads.
//! [`InterfaceWatch`] keeps the interfaces' addresses, so that entries naming an interface
//! follow them.
//!
//! Front ends that follow the configuration by themselves (web admin, SSH) hand a [`Follow`]
//! to a [`FollowHandle`], which re-applies it on every change.
//!
//! [`tls::TlsIdentity`] is the one loader of the certificate, key and bundle the services serve.

mod follow;
pub mod interfaces;
mod reconcile;
mod spec;
pub mod tls;

pub use follow::{Follow, FollowHandle};
pub use interfaces::InterfaceWatch;
pub use reconcile::{Acceptor, ListenError, ListenerSet, ListenerStatus};
pub use spec::{ListenEntry, ListenSpec, Refusal, Service, Target, TlsMode, Wanted, resolve};
