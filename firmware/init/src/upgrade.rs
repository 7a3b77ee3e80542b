//! A/B upgrades, PID 1's side. `upgrade-install <file>` (from admin's `upgrade <file>`):
//! verify the signed image again (PID 1 is the one that trusts it), take the inactive slot out
//! of BootOrder, write the payload to its partition and fsync, only then point `BootNext` at
//! it and reboot. The new slot boots once; it becomes the default (first in BootOrder) only
//! when xmppd is ready and healthy. Anything else resets into the committed slot by itself:
//! a panic (kernel `panic=5`), a hang (the hardware watchdog), a power cut, or this module
//! when the trial slot is not healthy within its time. The next boot of the old slot records
//! the outcome. `upgrade-rollback` tries the other slot the same way.
//!
//! The write runs in a thread so PID 1's loop keeps petting the watchdog and reaping.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::time::{Duration, Instant};

use sb_upgrade::bundle::{self, Verified};
use sb_upgrade::state::{Slot, SlotState, Trial};

use crate::boot_slot::BootSlots;

/// PID 1's persistent record (root only, like the other settings).
pub const STATE: &str = "/data/appliance/upgrade.toml";
/// A copy for `upgrade status` (xmppd runs as its own user and cannot read /data/appliance).
pub const STATUS: &str = "/run/switchboard/upgrade";
/// Where uploads land (SFTP, `pki` files): xmppd's certificate folder.
pub const FILE_AREA: &str = "/data/xmpp/certs";
const VERSION_FILE: &str = "/etc/switchboard/version";
/// How long a slot on trial has to become ready and healthy; `switchboard.upgrade_trial_s`.
const DEFAULT_TRIAL: Duration = Duration::from_secs(300);

pub use sb_appliance::control::UpgradeRequest;

/// What PID 1 should do after an upgrade step.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Reboot,
}

pub struct Upgrades {
    slots: Result<BootSlots, String>,
    state: SlotState,
    running: Slot,
    /// This boot is a slot on trial: commit when healthy, give up at the deadline.
    trial_deadline: Option<Instant>,
    trial_time: Duration,
    writer: Option<Receiver<Result<(Slot, Verified), WriteError>>>,
    data_ok: bool,
}

impl Upgrades {
    /// At boot, after /data: find the slots, make their boot entries, record what happened
    /// to the last upgrade and whether this boot is a trial.
    pub fn at_boot(data_ok: bool, cmdline: &str, last_reset: &str) -> Upgrades {
        let trial_time = trial_time(cmdline);
        let mut state = if data_ok {
            SlotState::parse(&std::fs::read_to_string(STATE).unwrap_or_default())
        } else {
            SlotState::default()
        };
        let slots = BootSlots::open();
        let mut upgrades = Upgrades {
            running: Slot::A,
            slots,
            state: SlotState::default(),
            trial_deadline: None,
            trial_time,
            writer: None,
            data_ok,
        };
        let slots = match &upgrades.slots {
            Ok(slots) => slots,
            Err(why) => {
                // No status file: `upgrade status` then says upgrades are unavailable.
                log::info!("upgrades unavailable on this boot: {why}");
                upgrades.state = state;
                return upgrades;
            }
        };
        for slot in [Slot::A, Slot::B] {
            if let Err(e) = slots.ensure_entry(slot) {
                log::error!("boot entry for slot {slot}: {e}");
            }
        }
        // Booted from the ESP's removable-media path (a fresh variable store): that copy is
        // slot A's image as flashed.
        let running = slots.boot_current().and_then(Slot::from_boot_entry).unwrap_or(Slot::A);
        upgrades.running = running;
        let default = match slots.default_slot() {
            Some(slot) => slot,
            None => {
                let order = sb_upgrade::efi::reorder(&slots.boot_order(), running.boot_entry(), &[]);
                if let Err(e) = slots.set_boot_order(&order) {
                    log::error!("BootOrder: {e}");
                }
                running
            }
        };
        let image_version = std::fs::read_to_string(VERSION_FILE).unwrap_or_default();
        let on_trial = settle_at_boot(&mut state, running, default, image_version.trim(), last_reset);
        if on_trial {
            log::warn!(
                "slot {running} ({}) on trial: it becomes the default once XMPP is ready and healthy, within {} s",
                state.version(running),
                trial_time.as_secs()
            );
            upgrades.trial_deadline = Some(Instant::now() + trial_time);
        }
        upgrades.state = state;
        upgrades.save();
        upgrades
    }

    fn publish(&self) {
        let text = self.state.to_text();
        let tmp = format!("{STATUS}.tmp");
        if std::fs::write(&tmp, &text).is_ok() {
            let _ = std::fs::rename(&tmp, STATUS);
        }
    }

    /// Durable before anything depends on it: the file, then its directory.
    fn save(&self) {
        self.publish();
        if !self.data_ok {
            return;
        }
        let write = || -> std::io::Result<()> {
            let tmp = format!("{STATE}.tmp");
            let mut file = File::create(&tmp)?;
            file.write_all(self.state.to_text().as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, STATE)?;
            File::open(Path::new(STATE).parent().unwrap_or(Path::new("/")))?.sync_all()
        };
        if let Err(e) = write() {
            log::error!("saving {STATE}: {e}");
        }
    }

    fn outcome(&mut self, text: String) {
        log::warn!("upgrade: {text}");
        self.state.last_outcome = text;
        self.save();
    }

    pub fn request(&mut self, request: UpgradeRequest) -> Option<Action> {
        let slots = match &self.slots {
            Ok(slots) => slots,
            Err(why) => {
                self.outcome(format!("refused: upgrades unavailable on this boot ({why})"));
                return None;
            }
        };
        if self.writer.is_some() {
            self.outcome("refused: an upgrade is already being written".into());
            return None;
        }
        if self.trial_deadline.is_some() {
            self.outcome(format!("refused: slot {} is still on trial", self.running));
            return None;
        }
        if !self.data_ok {
            self.outcome("refused: /data is not mounted (the outcome could not be recorded)".into());
            return None;
        }
        let target = self.running.other();
        match request {
            UpgradeRequest::Rollback => {
                let version = self.state.version(target).to_string();
                if version.is_empty() {
                    self.outcome(format!("refused: slot {target} holds no image to roll back to"));
                    return None;
                }
                self.start_trial(target, &version)
            }
            UpgradeRequest::Install(name) => {
                // The slot being written must not be bootable by any path until it is whole.
                let order = slots.boot_order();
                let without: Vec<u16> = order.iter().copied().filter(|n| *n != target.boot_entry()).collect();
                if without != order
                    && let Err(e) = slots.set_boot_order(&without)
                {
                    self.outcome(format!("refused: BootOrder: {e}"));
                    return None;
                }
                let device = slots.partition(target).device.clone();
                let limit = slots.partition(target).gpt.bytes();
                let path = PathBuf::from(FILE_AREA).join(&name);
                self.state.writing = Some(Trial {
                    slot: target,
                    version: name.clone(),
                });
                self.state.last_outcome = format!("writing {name} to slot {target}");
                self.save();
                let (send, receive) = channel();
                self.writer = Some(receive);
                std::thread::spawn(move || {
                    let result = write_slot(&path, &device, limit).map(|v| (target, v));
                    let _ = send.send(result);
                });
                None
            }
        }
    }

    fn start_trial(&mut self, slot: Slot, version: &str) -> Option<Action> {
        let Ok(slots) = &self.slots else { return None };
        if let Err(e) = slots.ensure_entry(slot).and_then(|()| slots.set_boot_next(slot)) {
            self.outcome(format!("refused: BootNext: {e}"));
            return None;
        }
        self.state.trial = Some(Trial {
            slot,
            version: version.to_string(),
        });
        self.outcome(format!(
            "booting slot {slot} ({version}) once; it becomes the default when healthy"
        ));
        Some(Action::Reboot)
    }

    /// Called on every turn of PID 1's loop; `healthy`: XMPP ready, xmppd running and heard.
    pub fn tick(&mut self, healthy: bool) -> Option<Action> {
        if let Some(receive) = &self.writer {
            match receive.try_recv() {
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => {
                    self.writer = None;
                    self.state.writing = None;
                    self.outcome("the slot writer died".into());
                }
                Ok(result) => {
                    self.writer = None;
                    self.state.writing = None;
                    match result {
                        Ok((slot, verified)) => {
                            let version = verified.manifest.version.clone();
                            self.state.set_version(slot, &version);
                            log::warn!(
                                "upgrade: slot {slot} written and synced ({} bytes, version {version}, {} key)",
                                verified.manifest.payload_size,
                                verified.manifest.key
                            );
                            return self.start_trial(slot, &version);
                        }
                        Err(error) => {
                            if error.slot_touched {
                                self.state.set_version(self.running.other(), "");
                            }
                            self.outcome(format!("refused: {}", error.reason));
                        }
                    }
                }
            }
        }
        let deadline = self.trial_deadline?;
        if healthy {
            self.trial_deadline = None;
            let Ok(slots) = &self.slots else { return None };
            let order = sb_upgrade::efi::reorder(&slots.boot_order(), self.running.boot_entry(), &[]);
            // The old slot stays second: a fallback if this one ever fails to load.
            let old = self.running.other().boot_entry();
            let mut order: Vec<u16> = order.into_iter().filter(|n| *n != old).collect();
            order.insert(1, old);
            match slots.set_boot_order(&order) {
                Ok(()) => {
                    let version = self.state.version(self.running).to_string();
                    self.state.trial = None;
                    self.state.default = Some(self.running);
                    self.outcome(format!("slot {} ({version}) healthy: now the default", self.running));
                }
                Err(e) => self.outcome(format!("slot {} healthy but BootOrder failed: {e}", self.running)),
            }
            return None;
        }
        if Instant::now() >= deadline {
            self.trial_deadline = None;
            let version = self.state.version(self.running).to_string();
            self.state.trial = None;
            self.outcome(format!(
                "slot {} ({version}) not ready and healthy within {} s: rolled back to slot {}",
                self.running,
                self.trial_time.as_secs(),
                self.running.other()
            ));
            return Some(Action::Reboot);
        }
        None
    }

    /// The next time [`Upgrades::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.writer.is_some() {
            return Some(Instant::now() + Duration::from_millis(200));
        }
        self.trial_deadline
    }
}

/// What a boot learns from the slot state it finds (pure, so every case is tested): the
/// versions, an interrupted write, a trial that failed (any reset that brought the old slot
/// back) or this boot being the trial. Returns true when this boot is a slot on trial.
fn settle_at_boot(state: &mut SlotState, running: Slot, default: Slot, image_version: &str, last_reset: &str) -> bool {
    // A slot PID 1 wrote carries its image's manifest version; a slot flashed with the disk
    // (or a state file lost with /data) gets the version this image says it is.
    if state.version(running).is_empty() {
        state.set_version(running, image_version);
    }
    let own_version = state.version(running).to_string();
    state.running = Some(running);
    state.default = Some(default);
    if let Some(cut) = state.writing.take() {
        state.set_version(cut.slot, "");
        state.last_outcome = format!(
            "writing {} to slot {} was cut short (power cut or reset): slot {} left unused, slot {running} kept",
            cut.version, cut.slot, cut.slot
        );
        log::error!("upgrade: {}", state.last_outcome);
    }
    let Some(trial) = state.trial.clone() else {
        return false;
    };
    if running == trial.slot && default != running {
        return true;
    }
    state.trial = None;
    if running != trial.slot {
        state.last_outcome = format!(
            "slot {} ({}) did not become healthy (panic, hang or reset; last reset: {last_reset}): \
             rolled back to slot {running} ({own_version})",
            trial.slot, trial.version
        );
        log::error!("upgrade: {}", state.last_outcome);
    }
    false
}

fn trial_time(cmdline: &str) -> Duration {
    crate::cmdline::words(cmdline)
        .find_map(|w| {
            w.strip_prefix("switchboard.upgrade_trial_s=")
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|s| Duration::from_secs(s.clamp(10, 3600)))
        .unwrap_or(DEFAULT_TRIAL)
}

#[derive(Debug)]
struct WriteError {
    reason: String,
    /// The partition was (partly) written: its old contents are gone.
    slot_touched: bool,
}

impl From<String> for WriteError {
    fn from(reason: String) -> WriteError {
        WriteError {
            reason,
            slot_touched: false,
        }
    }
}

/// Verifies the image at `path` and writes its payload to `device`, then fsyncs it.
fn write_slot(path: &Path, device: &Path, limit: u64) -> Result<Verified, WriteError> {
    let key_text = std::fs::read_to_string(sb_upgrade::PUBLIC_KEY_FILE)
        .map_err(|e| format!("{}: {e}", sb_upgrade::PUBLIC_KEY_FILE))?;
    let key = sb_upgrade::parse_public_key(&key_text)
        .ok_or_else(|| format!("{} is not a key", sb_upgrade::PUBLIC_KEY_FILE))?;
    let board = board_name();
    let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let verified = bundle::verify(&mut file, len, &key, &board, limit).map_err(|e| e.to_string())?;
    log::warn!(
        "upgrade: {} verified (version {}); writing {} bytes to {}",
        path.display(),
        verified.manifest.version,
        verified.manifest.payload_size,
        device.display()
    );
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .open(device)
        .map_err(|e| format!("{}: {e}", device.display()))?;
    let touched = |reason: String| WriteError {
        reason,
        slot_touched: true,
    };
    // Digest checked again while writing: a file changed after the check is not used.
    bundle::copy_payload(&mut file, &verified, &mut out).map_err(|e| touched(e.to_string()))?;
    out.sync_all()
        .map_err(|e| touched(format!("fsync {}: {e}", device.display())))?;
    Ok(verified)
}

fn board_name() -> String {
    sb_appliance::Board::load(std::path::Path::new(sb_appliance::paths::BOARD_FILE))
        .map(|board| board.board.name)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed_b() -> SlotState {
        SlotState {
            a_version: "1.0".into(),
            b_version: "1.1".into(),
            ..SlotState::default()
        }
    }

    #[test]
    fn a_plain_boot_records_slots_and_fills_an_unknown_version() {
        let mut state = SlotState::default();
        assert!(!settle_at_boot(&mut state, Slot::A, Slot::A, "1.0", "power on"));
        assert_eq!(
            state.render(),
            "Slot A: 1.0 (running, default)\nSlot B: (empty)\nLast outcome: none"
        );
        // A slot written by an upgrade keeps its manifest version over the image's file.
        let mut state = committed_b();
        settle_at_boot(&mut state, Slot::B, Slot::B, "0.1.0+gabc", "power on");
        assert_eq!(state.b_version, "1.1");
    }

    #[test]
    fn the_trial_boot_is_recognised_and_a_failed_trial_is_recorded_as_rolled_back() {
        let trial = Trial {
            slot: Slot::B,
            version: "1.1".into(),
        };
        // Booted through BootNext: B runs, A is still the default.
        let mut state = SlotState {
            trial: Some(trial.clone()),
            ..committed_b()
        };
        assert!(settle_at_boot(&mut state, Slot::B, Slot::A, "x", "power on"));
        assert_eq!(state.trial, Some(trial.clone()));
        // A panic, the watchdog or a power cut brought A back: the trial failed.
        let mut state = SlotState {
            trial: Some(trial),
            ..committed_b()
        };
        assert!(!settle_at_boot(&mut state, Slot::A, Slot::A, "x", "watchdog"));
        assert_eq!(state.trial, None);
        assert_eq!(
            state.last_outcome,
            "slot B (1.1) did not become healthy (panic, hang or reset; last reset: watchdog): rolled back to slot A (1.0)"
        );
    }

    #[test]
    fn an_interrupted_write_leaves_the_slot_empty_and_says_so() {
        let mut state = SlotState {
            writing: Some(Trial {
                slot: Slot::A,
                version: "new.sbu".into(),
            }),
            ..committed_b()
        };
        assert!(!settle_at_boot(&mut state, Slot::B, Slot::B, "x", "unclean"));
        assert_eq!(state.writing, None);
        assert_eq!(state.a_version, "");
        assert_eq!(
            state.last_outcome,
            "writing new.sbu to slot A was cut short (power cut or reset): slot A left unused, slot B kept"
        );
    }

    #[test]
    fn trial_time_comes_from_the_command_line_within_bounds() {
        assert_eq!(trial_time("console=ttyS0 quiet"), DEFAULT_TRIAL);
        assert_eq!(
            trial_time("switchboard.upgrade_trial_s=40 quiet"),
            Duration::from_secs(40)
        );
        assert_eq!(trial_time("switchboard.upgrade_trial_s=1"), Duration::from_secs(10));
        assert_eq!(trial_time("switchboard.upgrade_trial_s=x"), DEFAULT_TRIAL);
    }
}
