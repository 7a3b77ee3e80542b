//! Network settings applied at boot and on `network-reload`: static addresses from
//! /data/appliance/network, else the DHCP client on the board's default interface.

use super::*;

impl Pid1 {
    pub(super) fn default_kernel_iface(&self) -> Option<String> {
        self.board
            .kernel_iface(&self.board.network.default_interface)
            .map(String::from)
    }

    /// Static addresses from /data/appliance/network; DHCPv4 on the default interface otherwise.
    pub(super) fn apply_network(&mut self) {
        let stored = if self.data_ok {
            config::load_network()
        } else {
            NetworkConfig::default()
        };
        let mut dhcp_iface = None;
        for iface in self.board.network.interfaces.clone() {
            if let Err(e) = net::link_up(&iface.kernel) {
                log::debug!("link up {}: {e}", iface.kernel);
                continue;
            }
            match stored.for_iface(&iface.name) {
                Some(s) => {
                    let _ = net::clear_ipv4(&iface.kernel);
                    match net::set_ipv4(&iface.kernel, s.addr, s.prefix) {
                        Ok(()) => log::info!("{} ({}): {}/{}", iface.name, iface.kernel, s.addr, s.prefix),
                        Err(e) => log::error!(
                            "{} ({}): setting {}/{}: {e}",
                            iface.name,
                            iface.kernel,
                            s.addr,
                            s.prefix
                        ),
                    }
                    if let Some(gw) = s.gateway
                        && let Err(e) = net::add_default_route(&iface.kernel, gw)
                    {
                        log::warn!("default route via {gw}: {e}");
                    }
                }
                None if iface.name == self.board.network.default_interface && self.board.network.default == "dhcp4" => {
                    dhcp_iface = Some(iface.kernel.clone());
                }
                None => {
                    let _ = net::clear_ipv4(&iface.kernel);
                }
            }
        }
        if !stored.dns.is_empty() {
            let _ = net::write_resolv_conf(&stored.dns);
        }
        if dhcp_iface != self.dhcp_iface {
            if let Some(pid) = self.dhcp.pid.take() {
                let _ = kill(pid, Signal::SIGTERM);
            }
            if let Some(old) = &self.dhcp_iface
                && stored.for_iface(self.board.board_iface(old)).is_none()
            {
                let _ = net::clear_ipv4(old);
            }
            self.dhcp_iface = dhcp_iface;
            self.dhcp.restart_at = self.dhcp_iface.as_ref().map(|_| Instant::now());
        }
    }

    pub(super) fn spawn_dhcp(&mut self) {
        let Some(iface) = self.dhcp_iface.clone() else { return };
        let mut command = Command::new(self_exe());
        command
            .arg0("dhcp")
            .args(["dhcp", &iface, &hostname()])
            .stdin(Stdio::null());
        unblock_signals_in_child(&mut command);
        match command.spawn() {
            Ok(child) => self.dhcp.pid = Some(Pid::from_raw(child.id() as i32)),
            Err(e) => {
                log::error!("starting the DHCP client: {e}");
                self.dhcp.restart_at = Some(Instant::now() + Duration::from_secs(10));
            }
        }
    }
}
