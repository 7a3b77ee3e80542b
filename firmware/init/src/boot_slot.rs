//! The boot slots as the firmware sees them: the two GPT partitions `boot_a`/`boot_b`, their
//! UEFI load options (`Boot00A1`, `Boot00B1`), `BootOrder` (the committed slot first) and
//! `BootNext` (a slot tried once). Everything here is efivarfs files and the disk's GPT.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use sb_upgrade::efi::{self, HardDrive};
use sb_upgrade::gpt::GptPartition;
use sb_upgrade::state::Slot;

const FS_IMMUTABLE_FL: libc::c_long = 0x10;
nix::ioctl_read!(fs_get_flags, b'f', 1, libc::c_long);
nix::ioctl_write_ptr!(fs_set_flags, b'f', 2, libc::c_long);

/// A slot's partition: the kernel device to write and the GPT entry the load option names.
#[derive(Debug, Clone)]
pub struct SlotPartition {
    pub device: PathBuf,
    pub gpt: GptPartition,
}

#[derive(Debug)]
pub struct BootSlots {
    efivars: PathBuf,
    pub a: SlotPartition,
    pub b: SlotPartition,
}

impl BootSlots {
    /// Mounts efivarfs and finds both slot partitions; `Err` says why upgrades cannot work
    /// on this boot (no UEFI: the fast `-kernel` boot; no slot partitions).
    pub fn open() -> Result<BootSlots, String> {
        if !Path::new("/sys/firmware/efi").exists() {
            return Err("not booted through UEFI (no /sys/firmware/efi)".into());
        }
        let efivars = PathBuf::from(efi::EFIVARS_DIR);
        if !efivars.join(efi::var_file("BootCurrent")).exists() {
            match mount(
                Some("efivarfs"),
                &efivars,
                Some("efivarfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None::<&str>,
            ) {
                Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
                Err(e) => {
                    return Err(format!(
                        "mounting efivarfs: {e} (module efivarfs missing from the board?)"
                    ));
                }
            }
        }
        let (a, b) = (find(Slot::A)?, find(Slot::B)?);
        Ok(BootSlots { efivars, a, b })
    }

    pub fn partition(&self, slot: Slot) -> &SlotPartition {
        match slot {
            Slot::A => &self.a,
            Slot::B => &self.b,
        }
    }

    fn read(&self, name: &str) -> Option<Vec<u8>> {
        efi::read_var(&self.efivars, name)
    }

    /// Writes one variable whole (efivarfs takes a variable in one write). Existing variables
    /// are immutable files until the flag is cleared.
    fn write(&self, name: &str, data: &[u8]) -> Result<(), String> {
        let path = self.efivars.join(efi::var_file(name));
        if path.exists() {
            clear_immutable(&path);
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            // efivarfs replaces a variable with each whole write; it has no truncate.
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("{name}: {e}"))?;
        file.write_all(&efi::with_attributes(data))
            .map_err(|e| format!("writing {name}: {e}"))
    }

    pub fn boot_current(&self) -> Option<u16> {
        self.read("BootCurrent")
            .and_then(|b| efi::decode_order(&b).first().copied())
    }

    pub fn boot_order(&self) -> Vec<u16> {
        self.read("BootOrder")
            .map(|b| efi::decode_order(&b))
            .unwrap_or_default()
    }

    pub fn set_boot_order(&self, order: &[u16]) -> Result<(), String> {
        self.write("BootOrder", &efi::encode_order(order))
    }

    /// The slot the firmware boots by default: the first slot entry in BootOrder.
    pub fn default_slot(&self) -> Option<Slot> {
        self.boot_order().into_iter().find_map(Slot::from_boot_entry)
    }

    /// Boots `slot` once, on the next reset only; the firmware deletes BootNext before it
    /// starts the entry.
    pub fn set_boot_next(&self, slot: Slot) -> Result<(), String> {
        self.write("BootNext", &efi::encode_order(&[slot.boot_entry()]))
    }

    /// Makes the slot's load option what it should be (a fresh variable store has none).
    pub fn ensure_entry(&self, slot: Slot) -> Result<(), String> {
        let gpt = &self.partition(slot).gpt;
        let wanted = efi::encode_load_option(
            &format!("Switchboard slot {slot}"),
            &HardDrive {
                partition_number: gpt.number,
                start_lba: gpt.first_lba,
                size_lba: gpt.sectors(),
                guid: gpt.guid,
            },
            efi::SLOT_LOADER_PATH,
        );
        let name = efi::boot_entry_name(slot.boot_entry());
        if self.read(&name).as_deref() == Some(wanted.as_slice()) {
            return Ok(());
        }
        self.write(&name, &wanted)
    }
}

/// The slot's partition, by its GPT name in the kernel's uevent, and its GPT entry read from
/// the disk that holds it.
fn find(slot: Slot) -> Result<SlotPartition, String> {
    let name = slot.partition_name();
    let device = crate::mounts::find_partition(name, std::time::Duration::from_secs(5))
        .ok_or_else(|| format!("no partition named {name}"))?;
    let device = PathBuf::from(device);
    let kernel_name = device
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // /sys/class/block/vda2 -> ../../devices/.../vda/vda2: the parent is the disk.
    let link = std::fs::canonicalize(format!("/sys/class/block/{kernel_name}")).map_err(|e| format!("{name}: {e}"))?;
    let disk = link
        .parent()
        .and_then(Path::file_name)
        .map(|n| format!("/dev/{}", n.to_string_lossy()))
        .ok_or_else(|| format!("{name}: no parent disk"))?;
    let mut file = std::fs::File::open(&disk).map_err(|e| format!("{disk}: {e}"))?;
    let gpt = sb_upgrade::gpt::read(&mut file)
        .map_err(|e| format!("{disk}: {e}"))?
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| format!("{disk}: no GPT entry {name}"))?;
    Ok(SlotPartition { device, gpt })
}

fn clear_immutable(path: &Path) {
    let Ok(file) = std::fs::File::open(path) else { return };
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS/SETFLAGS read and write one int through a pointer that outlives
    // the call (a long is at least as large).
    unsafe {
        if fs_get_flags(file.as_raw_fd(), &mut flags).is_ok() && flags & FS_IMMUTABLE_FL != 0 {
            flags &= !FS_IMMUTABLE_FL;
            let _ = fs_set_flags(file.as_raw_fd(), &flags);
        }
    }
}
