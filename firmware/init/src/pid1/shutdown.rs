//! Orderly reboot and power-off: stop xmppd, give it time, unmount, then the reboot call.

use super::*;

impl Pid1 {
    pub(super) fn begin_shutdown(&mut self, mode: Shutdown) {
        if self.shutdown.is_some() {
            return;
        }
        log::warn!(
            "orderly {}: stopping services",
            if mode == Shutdown::Reboot {
                "reboot"
            } else {
                "power off"
            }
        );
        self.shutdown = Some((mode, Instant::now() + STOP_TIMEOUT));
        self.xmppd.held = true;
        self.stop_xmppd();
        for pid in [self.console.pid, self.dhcp.pid, self.setup_pid].into_iter().flatten() {
            let _ = kill(pid, Signal::SIGTERM);
        }
    }

    pub(super) fn finish_shutdown(&mut self, mode: Shutdown) -> ! {
        for pid in [self.xmppd.pid, self.console.pid, self.dhcp.pid, self.setup_pid]
            .into_iter()
            .flatten()
        {
            log::warn!("pid {pid} did not stop in time: SIGKILL");
            let _ = kill(pid, Signal::SIGKILL);
        }
        // Everything else still running (orphans) gets the same treatment.
        let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
        std::thread::sleep(Duration::from_millis(300));
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        self.reap();
        if self.data_ok {
            config::remove_durably(config::RUNNING);
        }
        mounts::unmount_data();
        nix::unistd::sync();
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.magic_close();
        }
        log::warn!(
            "{}",
            if mode == Shutdown::Reboot {
                "rebooting"
            } else {
                "powering off"
            }
        );
        let how = if mode == Shutdown::Reboot {
            RebootMode::RB_AUTOBOOT
        } else {
            RebootMode::RB_POWER_OFF
        };
        let err = reboot(how);
        log::error!("reboot(2) failed: {err:?}; halting here");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}
