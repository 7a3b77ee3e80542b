//! What PID 1 knows about the two boot slots, kept on /data so it survives a slot switch:
//! each slot's version, the slot under trial, and the last outcome. The firmware's boot
//! variables decide what boots; this file only explains it to the operator.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The GPT partition name the image tool gives it.
    pub fn partition_name(self) -> &'static str {
        match self {
            Slot::A => "boot_a",
            Slot::B => "boot_b",
        }
    }

    /// Its UEFI boot entry number (`Boot00A1`, `Boot00B1`).
    pub fn boot_entry(self) -> u16 {
        match self {
            Slot::A => 0x00a1,
            Slot::B => 0x00b1,
        }
    }

    pub fn from_boot_entry(number: u16) -> Option<Slot> {
        [Slot::A, Slot::B].into_iter().find(|s| s.boot_entry() == number)
    }

    pub fn letter(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.letter())
    }
}

/// A slot booted once through BootNext, not yet the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    pub slot: Slot,
    pub version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotState {
    /// Version in slot A / B; empty when unknown or never written.
    #[serde(default)]
    pub a_version: String,
    #[serde(default)]
    pub b_version: String,
    /// The slot running now and the one the firmware boots by default (written every boot).
    #[serde(default)]
    pub running: Option<Slot>,
    #[serde(default)]
    pub default: Option<Slot>,
    /// Set before BootNext points at a freshly written slot; cleared by its commit or by the
    /// next boot of the old slot (which then records the rollback).
    #[serde(default)]
    pub trial: Option<Trial>,
    /// A slot being written: if a boot finds this, the write was cut short.
    #[serde(default)]
    pub writing: Option<Trial>,
    #[serde(default)]
    pub last_outcome: String,
}

impl SlotState {
    pub fn version(&self, slot: Slot) -> &str {
        match slot {
            Slot::A => &self.a_version,
            Slot::B => &self.b_version,
        }
    }

    pub fn set_version(&mut self, slot: Slot, version: &str) {
        match slot {
            Slot::A => self.a_version = version.to_string(),
            Slot::B => self.b_version = version.to_string(),
        }
    }

    pub fn parse(text: &str) -> SlotState {
        toml::from_str(text).unwrap_or_default()
    }

    pub fn to_text(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// `upgrade status`'s text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for slot in [Slot::A, Slot::B] {
            let mut notes = Vec::new();
            if self.running == Some(slot) {
                notes.push("running");
            }
            if self.default == Some(slot) {
                notes.push("default");
            }
            if self.trial.as_ref().is_some_and(|t| t.slot == slot) {
                notes.push("on trial");
            }
            let version = match self.version(slot) {
                "" => "(empty)",
                v => v,
            };
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join(", "))
            };
            out.push_str(&format!("Slot {slot}: {version}{notes}\n"));
        }
        let outcome = if self.last_outcome.is_empty() {
            "none"
        } else {
            &self.last_outcome
        };
        out.push_str(&format!("Last outcome: {outcome}"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_renders_both_slots() {
        let state = SlotState {
            a_version: "1.0".into(),
            b_version: "1.1".into(),
            running: Some(Slot::B),
            default: Some(Slot::A),
            trial: Some(Trial {
                slot: Slot::B,
                version: "1.1".into(),
            }),
            writing: None,
            last_outcome: "slot B written, booting it once".into(),
        };
        assert_eq!(SlotState::parse(&state.to_text()), state);
        assert_eq!(
            state.render(),
            "Slot A: 1.0 (default)\nSlot B: 1.1 (running, on trial)\nLast outcome: slot B written, booting it once"
        );
        assert_eq!(SlotState::parse("garbage ="), SlotState::default());
        assert_eq!(Slot::from_boot_entry(0xb1), Some(Slot::B));
        assert_eq!(Slot::A.other(), Slot::B);
    }
}
