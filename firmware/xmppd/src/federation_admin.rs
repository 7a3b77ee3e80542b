//! The admin layer's view of the federation (`federation status`, `dns check`, applying
//! settings): synchronous calls from the admin's blocking thread, run on the daemon's runtime.
//!
//! It lives in the composition root so that federation does not depend on admin. The
//! federation crate's interop test includes this file too (`#[path]`), to drive a node with
//! `mmp` commands as the daemon does.

use sb_admin::{DnsCheckReport, DnsRecordCheck, DnsServiceCheck, FederationLink, FederationLive, FederationLiveStatus};
use sb_federation::Federation;
use sb_federation::srv::order_srv;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Upper bound for one admin call; `dns check` against a dead nameserver is the slow case.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What xmppd hands the admin layer (`LiveNode::federation`).
pub struct FederationAdmin(pub Arc<Federation>);

/// Why an admin call into the federation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no answer within {} s", CALL_TIMEOUT.as_secs())]
    Timeout,
    #[error(transparent)]
    Federation(#[from] sb_federation::FederationError),
}

/// The handle `LiveNode::federation` returns.
pub fn admin_handle(federation: &Arc<Federation>) -> Arc<dyn FederationLive> {
    Arc::new(FederationAdmin(Arc::clone(federation)))
}

impl FederationAdmin {
    /// Run `future` on the daemon's runtime and wait for it from this (non-runtime) thread.
    fn block_on<T: Send + 'static>(&self, future: impl Future<Output = T> + Send + 'static) -> Result<T, CallError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.0.runtime().spawn(async move {
            let _ = tx.send(future.await);
        });
        rx.recv_timeout(CALL_TIMEOUT).map_err(|_| CallError::Timeout)
    }
}

impl FederationLive for FederationAdmin {
    fn status(&self) -> FederationLiveStatus {
        let status = self.0.status();
        FederationLiveStatus {
            running: status.enabled,
            listeners: status
                .listeners
                .iter()
                .map(|l| match (&l.error, &l.waiting) {
                    (Some(e), _) => format!("{} ({e})", l.label()),
                    (None, Some(reason)) => format!("{} (waiting: {reason})", l.label()),
                    (None, None) => l.label(),
                })
                .collect(),
            links: status
                .links
                .into_iter()
                .map(|(link, idle)| FederationLink {
                    peer_domain: if link.peer_domain.is_empty() {
                        "(unknown)".to_owned()
                    } else {
                        link.peer_domain
                    },
                    local_domains: link.local_domains,
                    address: link.address.map(|a| a.to_string()).unwrap_or_default(),
                    direction: link.direction.as_str().to_owned(),
                    state: link.state.as_str().to_owned(),
                    tls: link.tls,
                    auth: link.auth.map(|a| a.as_str().to_owned()).unwrap_or_default(),
                    since_unix: link.since_unix,
                    idle_secs: idle.as_secs(),
                })
                .collect(),
            resolver: status.resolver,
            problems: status.problems,
        }
    }

    fn dns_check(&self, domain: &str) -> DnsCheckReport {
        let federation = Arc::clone(&self.0);
        let domain = domain.to_owned();
        self.block_on(async move { dns_check(&federation, &domain).await })
            .unwrap_or_else(|e| DnsCheckReport {
                resolver: e.to_string(),
                services: Vec::new(),
            })
    }
}

async fn dns_check(federation: &Federation, domain: &str) -> DnsCheckReport {
    let snapshot = federation.snapshot();
    let resolver = match &snapshot.resolver {
        Some(r) => Arc::clone(r),
        None => {
            return DnsCheckReport {
                resolver: format!(
                    "unavailable: {}",
                    snapshot.resolver_error.as_deref().unwrap_or("federation is disabled")
                ),
                services: Vec::new(),
            };
        }
    };
    let mut services = Vec::new();
    for service in [
        "_xmpp-client._tcp",
        "_xmpp-component._tcp",
        "_xmpp-server._tcp",
        "_xmpps-server._tcp",
    ] {
        let name = format!("{service}.{domain}");
        let mut check = DnsServiceCheck {
            name: name.clone(),
            ..DnsServiceCheck::default()
        };
        match resolver.srv(&name, false).await {
            Err(e) => check.error = Some(e.to_string()),
            Ok(records) => {
                for record in order_srv(records, &mut sb_federation::dns::random_up_to) {
                    let mut line = DnsRecordCheck {
                        priority: record.priority,
                        weight: record.weight,
                        port: record.port,
                        target: record.target.clone(),
                        ..DnsRecordCheck::default()
                    };
                    match resolver.addresses(&record.target).await {
                        Err(e) => line.error = Some(e.to_string()),
                        Ok(addresses) => {
                            for ip in addresses {
                                let addr = SocketAddr::new(ip, record.port);
                                let answer =
                                    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr))
                                        .await
                                    {
                                        Ok(Ok(_)) => Ok(()),
                                        Ok(Err(e)) => Err(e.to_string()),
                                        Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
                                    };
                                line.addresses.push((ip.to_string(), answer));
                            }
                        }
                    }
                    check.records.push(line);
                }
            }
        }
        services.push(check);
    }
    DnsCheckReport {
        resolver: resolver.description.clone(),
        services,
    }
}
