//! Supervision of PID 1's children: xmppd (heartbeats, output, restarts with backoff, held
//! stops), the first-boot setup, the console and the DHCP client; reaping them all.

use super::*;

impl Pid1 {
    pub(super) fn spawn_console(&mut self) {
        let mut command = Command::new(self_exe());
        command.arg0("console").arg("console").stdin(Stdio::null());
        unblock_signals_in_child(&mut command);
        match command.spawn() {
            Ok(child) => self.console.pid = Some(Pid::from_raw(child.id() as i32)),
            Err(e) => {
                log::error!("starting the console: {e}");
                self.console.restart_at = Some(Instant::now() + Duration::from_secs(5));
            }
        }
        self.console.restart_at = None;
    }

    /// On the first boot, give xmppd's store the appliance defaults (listen on every
    /// interface, not just loopback) through mmp, then start xmppd.
    pub(super) fn start_xmppd_or_setup(&mut self) {
        if self.xmppd_kept_stopped() || self.xmppd.pid.is_some() || self.setup_pid.is_some() {
            return;
        }
        let _ = std::fs::create_dir_all(XMPP_DIR);
        if !std::path::Path::new(SETUP_DONE).exists() {
            log::info!("first boot: mmp xmpp listen 0.0.0.0");
            let mut setup = Command::new(MMP);
            setup
                .args(["-d", XMPP_DIR, "xmpp", "listen", "0.0.0.0"])
                .stdin(Stdio::null());
            match unblock_signals_in_child(&mut setup).spawn() {
                Ok(child) => {
                    self.setup_pid = Some(Pid::from_raw(child.id() as i32));
                    return;
                }
                Err(e) => log::error!("running mmp for first-boot setup: {e}"),
            }
        }
        self.spawn_xmppd();
    }

    pub(super) fn xmppd_kept_stopped(&self) -> bool {
        self.xmppd.held || self.xmppd.held_for.is_some()
    }

    /// Stops restarting xmppd (issue 13): the reason goes to the log, `health` and the console.
    pub(super) fn hold_xmppd(&mut self, held: Held) {
        log::error!("xmppd held stopped, not restarted: {held}. The recovery menu can check, export or restore it");
        let _ = std::fs::write(control::XMPPD_HELD, held.to_string());
        self.xmppd.held_for = Some(held);
        self.xmppd.restart_at = None;
        self.write_health();
    }

    pub(super) fn spawn_xmppd(&mut self) {
        // Root-run tools (mmp on a stopped daemon, first-boot setup, a recovery restore) may
        // have left files xmppd's user could not open.
        let _ = std::fs::create_dir_all(XMPP_DIR);
        let failures = privileges::hand_over_data_dir(std::path::Path::new(XMPP_DIR));
        if failures > 0 {
            log::warn!("{failures} entries of {XMPP_DIR} could not be given to the xmppd user");
        }
        let Some((hb_read, hb_write)) = pipe() else {
            return self.schedule_xmppd_restart("no pipe");
        };
        let Some((out_read, out_write)) = pipe() else {
            return self.schedule_xmppd_restart("no pipe");
        };
        let out_write2 = match out_write.try_clone() {
            Ok(fd) => fd,
            Err(_) => return self.schedule_xmppd_restart("no fd"),
        };
        let hb_raw = hb_write.as_raw_fd();
        let mut command = Command::new(XMPPD);
        command
            .args(["-d", XMPP_DIR])
            .env("SB_HEARTBEAT_FD", HEARTBEAT_FD.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out_write))
            .stderr(Stdio::from(out_write2));
        unblock_signals_in_child(&mut command);
        // SAFETY: only async-signal-safe calls (setsid, setrlimit, dup2, fcntl, and the
        // credential calls of become_xmppd) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                libc::setsid();
                // PID 1 starts with the kernel's 1024 descriptors; xmppd needs one per session
                // plus headroom for the admin socket and certificate reloads (it raises its soft
                // limit to this hard one). A failure leaves the inherited limit, which works,
                // only smaller, so it is not a reason to refuse to start.
                let files = libc::rlimit {
                    rlim_cur: XMPPD_OPEN_FILES,
                    rlim_max: XMPPD_OPEN_FILES,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &files);
                if hb_raw == HEARTBEAT_FD {
                    libc::fcntl(HEARTBEAT_FD, libc::F_SETFD, 0);
                } else if libc::dup2(hb_raw, HEARTBEAT_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Last: the limit above needs root; from here on only the bind capability.
                privileges::become_xmppd()
            });
        }
        match command.spawn() {
            Ok(child) => {
                let now = Instant::now();
                self.xmppd.pid = Some(Pid::from_raw(child.id() as i32));
                self.xmppd.started = now;
                self.xmppd.last_heartbeat = now;
                self.xmppd.heard = false;
                self.xmppd.heartbeat = Some(hb_read);
                self.xmppd.output = Some(out_read);
                self.xmppd.kill_reason = None;
                log::info!("xmppd started (pid {})", child.id());
            }
            Err(e) => {
                log::error!("starting xmppd: {e}");
                self.xmppd.last_exit.clear();
                let _ = std::fmt::write(&mut self.xmppd.last_exit, format_args!("could not start: {e}"));
                match start_failure::classify_spawn_error(&e) {
                    Some(held) => self.hold_xmppd(held),
                    None => self.on_xmppd_failure(Duration::ZERO),
                }
            }
        }
        drop(hb_write);
        self.write_health();
    }

    pub(super) fn schedule_xmppd_restart(&mut self, why: &str) {
        log::error!("xmppd not started: {why}");
        self.xmppd.restart_at = Some(Instant::now() + Duration::from_secs(5));
    }

    pub(super) fn on_xmppd_exit(&mut self, status: WaitStatus) {
        let ran = self.xmppd.started.elapsed();
        self.xmppd.pid = None;
        self.xmppd.kill_at = None;
        self.xmppd.heartbeat = None;
        self.drain_output();
        self.xmppd.output = None;
        let mut text: heapless::String<160> = heapless::String::new();
        let _ = match (status, self.xmppd.kill_reason.take()) {
            (_, Some(reason)) => std::fmt::write(&mut text, format_args!("{reason}")),
            (WaitStatus::Exited(_, code), None) => {
                std::fmt::write(&mut text, format_args!("exited with status {code}"))
            }
            (WaitStatus::Signaled(_, signal, core), None) => std::fmt::write(
                &mut text,
                format_args!("killed by {signal:?}{}", if core { " (core)" } else { "" }),
            ),
            (other, None) => std::fmt::write(&mut text, format_args!("{other:?}")),
        };
        let _ = std::fmt::write(&mut text, format_args!(" after {} s", ran.as_secs()));
        self.xmppd.last_exit = text;
        if self.shutdown.is_some() || self.xmppd.held {
            log::info!("xmppd stopped: {}", self.xmppd.last_exit);
            self.write_health();
            return;
        }
        log::warn!("xmppd {}", self.xmppd.last_exit);
        let code = match status {
            WaitStatus::Exited(_, code) => Some(code),
            _ => None,
        };
        match start_failure::classify_exit(code, &self.xmppd.last_line) {
            Some(held) => self.hold_xmppd(held),
            None => self.on_xmppd_failure(ran),
        }
    }

    pub(super) fn on_xmppd_failure(&mut self, ran: Duration) {
        let since_boot = self.boot.elapsed();
        match self.xmppd.backoff.on_exit(since_boot, ran) {
            Verdict::RestartAfter(delay) => {
                log::info!("restarting xmppd in {} ms", delay.as_millis());
                self.xmppd.restart_at = Some(Instant::now() + delay);
            }
            Verdict::GiveUp => {
                let why = format!(
                    "xmppd failed {} times within {} s (last: {})",
                    self.xmppd.backoff.recent_failures(),
                    self.xmppd.backoff.window.as_secs(),
                    self.xmppd.last_exit
                );
                self.xmppd.gave_up = true;
                self.stop_petting(&why);
            }
        }
        self.write_health();
    }

    pub(super) fn drain_output(&mut self) {
        let Some(fd) = self.xmppd.output.take() else { return };
        let mut buf = [0u8; 512];
        let mut open = true;
        loop {
            match nix::unistd::read(&fd, &mut buf) {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(n) => {
                    for &b in &buf[..n] {
                        if b == b'\n' || self.xmppd.line.is_full() {
                            self.emit_xmppd_line();
                        }
                        if b != b'\n' {
                            let _ = self.xmppd.line.push(b);
                        }
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        if open {
            self.xmppd.output = Some(fd);
        } else if !self.xmppd.line.is_empty() {
            self.emit_xmppd_line();
        }
    }

    pub(super) fn emit_xmppd_line(&mut self) {
        let mut out: heapless::Vec<u8, 1100> = heapless::Vec::new();
        let _ = out.extend_from_slice(b"xmppd: ");
        let _ = out.extend_from_slice(&self.xmppd.line);
        let _ = out.push(b'\n');
        self.xmppd.last_line.clear();
        for c in String::from_utf8_lossy(&self.xmppd.line).chars() {
            if self.xmppd.last_line.push(c).is_err() {
                break;
            }
        }
        self.xmppd.line.clear();
        logger::append_to_file(&out);
        if !self.ready || self.cmdline.debug {
            let _ = std::io::stderr().write_all(&out);
        }
    }

    pub(super) fn drain_heartbeat(&mut self) {
        let Some(fd) = self.xmppd.heartbeat.as_ref() else {
            return;
        };
        let mut buf = [0u8; 64];
        loop {
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => {
                    self.xmppd.heartbeat = None;
                    break;
                }
                Ok(_) => {
                    self.xmppd.last_heartbeat = Instant::now();
                    self.xmppd.heard = true;
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
    }

    pub(super) fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::warn!("waitpid: {e}");
                    break;
                }
                Ok(status) => {
                    let Some(pid) = status.pid() else { continue };
                    if Some(pid) == self.xmppd.pid {
                        self.on_xmppd_exit(status);
                    } else if Some(pid) == self.setup_pid {
                        self.setup_pid = None;
                        match status {
                            WaitStatus::Exited(_, 0) => {
                                let _ = config::write_atomic(SETUP_DONE, b"listen 0.0.0.0\n");
                            }
                            other => log::warn!("first-boot mmp setup ended with {other:?}; starting xmppd anyway"),
                        }
                        if self.shutdown.is_none() && !self.xmppd_kept_stopped() {
                            self.spawn_xmppd();
                        }
                    } else if Some(pid) == self.console.pid {
                        self.console.pid = None;
                        if self.shutdown.is_none() {
                            self.console.restart_at = Some(Instant::now() + Duration::from_secs(1));
                        }
                    } else if Some(pid) == self.dhcp.pid {
                        self.dhcp.pid = None;
                        if self.shutdown.is_none() && self.dhcp_iface.is_some() {
                            log::warn!("DHCP client ended ({status:?}); restarting in 5 s");
                            self.dhcp.restart_at = Some(Instant::now() + Duration::from_secs(5));
                        }
                    }
                    // Anything else is an orphan the kernel handed us: reaped, nothing more.
                }
            }
        }
    }

    pub(super) fn stop_xmppd(&mut self) {
        if let Some(pid) = self.xmppd.pid {
            let _ = kill(pid, Signal::SIGCONT);
            let _ = kill(pid, Signal::SIGTERM);
            self.xmppd.kill_at = Some(Instant::now() + STOP_TIMEOUT);
        }
    }
}
