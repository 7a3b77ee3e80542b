//! Health: the last reset cause, the watchdog, XMPP readiness and the health file the
//! console's `health` command reads.

use super::*;
use sb_appliance::health as key;

impl Pid1 {
    pub(super) fn record_boot_reason(&mut self) {
        let hardware = self
            .watchdog
            .as_ref()
            .map(|w| w.boot_status & WDIOF_CARDRESET != 0)
            .unwrap_or(false);
        let reason = if !self.data_ok {
            "unknown (/data unavailable)".to_string()
        } else if std::path::Path::new(config::RUNNING).exists() {
            match std::fs::read_to_string(config::WATCHDOG_EXPECTED) {
                Ok(why) => format!("watchdog reset (init stopped petting: {})", why.trim()),
                Err(_) if hardware => "watchdog reset (reported by the hardware)".to_string(),
                Err(_) => "unclean (power loss, crash or hard reset)".to_string(),
            }
        } else if hardware {
            "watchdog reset (reported by the hardware)".to_string()
        } else if std::path::Path::new(config::ADMIN).exists() || std::path::Path::new(SETUP_DONE).exists() {
            "orderly reboot or power on".to_string()
        } else {
            "first boot".to_string()
        };
        log::info!("last reset: {reason}");
        self.last_reset = reason;
        let _ = std::fs::write(config::LAST_RESET, &self.last_reset);
        if self.data_ok {
            config::remove_durably(config::WATCHDOG_EXPECTED);
            if let Err(e) = config::write_atomic(config::RUNNING, b"") {
                log::warn!("writing the running marker: {e}");
            }
        }
    }

    /// The hardware resets the box when nothing else can bring the service back.
    pub(super) fn stop_petting(&mut self, why: &str) {
        log::error!("{why}: no longer petting the watchdog; the hardware will reset the box");
        if self.data_ok {
            let _ = config::write_atomic(config::WATCHDOG_EXPECTED, why.as_bytes());
        }
        nix::unistd::sync();
        self.petting = false;
        if self.watchdog.is_none() {
            log::error!("no hardware watchdog: rebooting instead");
            self.begin_shutdown(Shutdown::Reboot);
        }
        self.write_health();
    }

    pub(super) fn probe_ready(&mut self) {
        if self.ready || self.xmppd.pid.is_none() || Instant::now() < self.next_ready_probe {
            return;
        }
        self.next_ready_probe = Instant::now() + Duration::from_millis(500);
        let iface = self.default_kernel_iface();
        let address = iface.as_deref().and_then(net::ipv4);
        let Some((address, _)) = address else { return };
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, XMPP_PORT));
        let external = SocketAddr::from((address, XMPP_PORT));
        let accepts = |a: &SocketAddr| TcpStream::connect_timeout(a, Duration::from_millis(300)).is_ok();
        if !accepts(&local) && !accepts(&external) {
            return;
        }
        self.ready = true;
        let now = logger::uptime_s();
        let line = format!(
            "switchboard: XMPP ready on {address}:{XMPP_PORT} (kernel {:.2} s, userspace {:.2} s, total {now:.2} s)\n",
            self.init_uptime,
            now - self.init_uptime
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
        logger::append_to_file(line.as_bytes());
        let _ = std::fs::write(control::READY, &line);
        logger::set_quiet_console(!self.cmdline.debug);
        self.write_health();
    }

    pub(super) fn write_health(&self) {
        let watchdog = match (&self.watchdog, self.petting) {
            (Some(_), true) => "petting",
            (Some(_), false) => "NOT petting (reset pending)",
            (None, _) => "absent",
        };
        let xmppd = match (self.xmppd.pid, self.xmppd.held, self.xmppd.gave_up) {
            (None, _, _) if self.setup_pid.is_some() => "starting (first-boot setup)".into(),
            (None, _, _) if let Some(held) = &self.xmppd.held_for => format!("stopped (held: {held})"),
            (Some(pid), _, _) if self.ready => format!("running (pid {pid})"),
            (Some(pid), _, _) => format!("starting (pid {pid})"),
            (None, true, _) => "stopped (held)".into(),
            (None, _, true) => "failed (gave up)".into(),
            (None, _, _) => "restarting".into(),
        };
        let watchdog_value = |f: fn(&Watchdog) -> String| self.watchdog.as_ref().map(f);
        let text = Health::render(&[
            (key::WATCHDOG, watchdog.to_string()),
            (
                key::WATCHDOG_DEVICE,
                watchdog_value(|w| w.device.clone()).unwrap_or_else(|| "-".into()),
            ),
            (
                key::WATCHDOG_TIMEOUT_S,
                watchdog_value(|w| w.timeout.as_secs().to_string()).unwrap_or_else(|| "0".into()),
            ),
            (
                key::WATCHDOG_BOOT_STATUS,
                format!("0x{:x}", self.watchdog.as_ref().map(|w| w.boot_status).unwrap_or(0)),
            ),
            (key::LAST_RESET, self.last_reset.clone()),
            (key::XMPPD, xmppd),
            (key::XMPPD_RESTARTS, self.xmppd.restarts.to_string()),
            (
                key::XMPPD_LAST_EXIT,
                if self.xmppd.last_exit.is_empty() {
                    "-".into()
                } else {
                    self.xmppd.last_exit.to_string()
                },
            ),
            (key::READY, self.ready.to_string()),
            (key::BOOT_KERNEL_S, format!("{:.2}", self.init_uptime)),
            (
                key::DATA_ERROR,
                std::fs::read_to_string(control::DATA_ERROR).unwrap_or_else(|_| "-".into()),
            ),
        ]);
        let _ = std::fs::write("/run/switchboard/health.tmp", text);
        let _ = std::fs::rename("/run/switchboard/health.tmp", control::HEALTH);
    }
}
