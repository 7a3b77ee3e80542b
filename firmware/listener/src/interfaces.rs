//! The machine's interfaces and their IPv4 addresses, for listen entries that name an
//! interface (`xmpp listen a`).
//!
//! Addresses change under the daemon (a DHCP lease, `ipv4 a add`), and nothing tells it, so
//! the XMPP server re-reads the list every `ServerTuning::interface_poll_interval` (one
//! netlink dump, cheap) and rebinds what changed; the other owners' listeners (federation)
//! follow through [`InterfaceWatch::subscribe`]. Each owner re-resolves its [`crate::ListenSpec`]s
//! with [`crate::resolve`] and reconciles only when the result differs.

use sb_store::{BoardInterface, InterfaceAddresses};
use std::sync::Arc;
use tokio::sync::watch;

pub struct InterfaceWatch {
    board: Vec<BoardInterface>,
    current: watch::Sender<Arc<InterfaceAddresses>>,
}

impl InterfaceWatch {
    /// `board`: the board's names for its interfaces (empty off the appliance).
    pub fn new(board: Vec<BoardInterface>) -> InterfaceWatch {
        let initial = read_kernel(&board).unwrap_or_default();
        InterfaceWatch {
            board,
            current: watch::channel(Arc::new(initial)).0,
        }
    }

    /// The list as last read.
    pub fn current(&self) -> Arc<InterfaceAddresses> {
        Arc::clone(&self.current.borrow())
    }

    /// Read the kernel's list again; true when it differs from the last one (subscribers are
    /// then told). A failed read keeps the last list.
    pub fn refresh(&self) -> bool {
        let fresh = match read_kernel(&self.board) {
            Ok(fresh) => fresh,
            Err(e) => {
                log::warn!("cannot list the network interfaces: {e}");
                return false;
            }
        };
        self.current.send_if_modified(|current| {
            if **current == fresh {
                return false;
            }
            *current = Arc::new(fresh);
            true
        })
    }

    /// Woken after every [`InterfaceWatch::refresh`] that saw a change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<InterfaceAddresses>> {
        self.current.subscribe()
    }
}

fn read_kernel(board: &[BoardInterface]) -> nix::Result<InterfaceAddresses> {
    let pairs = nix::ifaddrs::getifaddrs()?.map(|entry| {
        let addr = entry
            .address
            .and_then(|a| a.as_sockaddr_in().map(|v4| std::net::IpAddr::V4(v4.ip())));
        (entry.interface_name, addr)
    });
    Ok(InterfaceAddresses::from_pairs(pairs).with_board_names(board))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_listed_with_its_address_and_under_a_board_name() {
        let watch = InterfaceWatch::new(vec![BoardInterface {
            name: "a".to_owned(),
            kernel: "lo".to_owned(),
        }]);
        let current = watch.current();
        let lo = current.ipv4("lo").expect("lo is listed");
        assert!(lo.contains(&std::net::Ipv4Addr::LOCALHOST), "{lo:?}");
        assert_eq!(current.ipv4("a"), Some(lo));
    }
}
