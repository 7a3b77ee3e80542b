//! Filesystems: the early API mounts, and the persistent /data partition.

use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

pub const DATA: &str = "/data";

pub fn early() {
    let table: [(&str, &str, &str, MsFlags, Option<&str>); 5] = [
        (
            "proc",
            "/proc",
            "proc",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None,
        ),
        (
            "sysfs",
            "/sys",
            "sysfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None,
        ),
        ("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID, Some("mode=0755")),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755,size=32m"),
        ),
        (
            "tmpfs",
            "/tmp",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777,size=32m"),
        ),
    ];
    for (source, target, fstype, flags, data) in table {
        let _ = std::fs::create_dir_all(target);
        match mount(Some(source), target, Some(fstype), flags, data) {
            Ok(()) => {}
            Err(nix::errno::Errno::EBUSY) => {}
            Err(e) => log::error!("mount {fstype} on {target}: {e}"),
        }
    }
    let _ = std::fs::create_dir_all("/run/switchboard");
}

/// The block device whose GPT partition name is `label` (the kernel reports it in uevent),
/// waiting up to `wait` for the disk driver to probe.
pub fn find_partition(label: &str, wait: Duration) -> Option<String> {
    let deadline = Instant::now() + wait;
    loop {
        if let Ok(dir) = std::fs::read_dir("/sys/class/block") {
            for entry in dir.flatten() {
                let uevent = std::fs::read_to_string(entry.path().join("uevent")).unwrap_or_default();
                if uevent_partname(&uevent) == Some(label) {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    return Some(format!("/dev/{name}"));
                }
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn uevent_partname(uevent: &str) -> Option<&str> {
    uevent.lines().find_map(|l| l.strip_prefix("PARTNAME="))
}

#[derive(Debug, PartialEq, Eq)]
pub enum Superblock {
    NotExt,
    Clean,
    HasErrors,
}

/// Reads the ext2/3/4 superblock at byte 1024: magic 0xEF53 at +56, state at +58.
pub fn classify_superblock(bytes: &[u8]) -> Superblock {
    if bytes.len() < 1024 + 60 || u16::from_le_bytes([bytes[1024 + 56], bytes[1024 + 57]]) != 0xEF53 {
        return Superblock::NotExt;
    }
    let state = u16::from_le_bytes([bytes[1024 + 58], bytes[1024 + 59]]);
    if state & 0x0002 != 0 {
        Superblock::HasErrors
    } else {
        Superblock::Clean
    }
}

/// Where mke2fs puts the first backup superblock, by block size: block 8193 with 1 KiB
/// blocks, 16384 with 2 KiB, 32768 with 4 KiB (one block group in).
pub const BACKUP_SUPERBLOCKS: [(u64, u64); 3] = [(4096, 32768), (1024, 8193), (2048, 16384)];

/// How much of a partition must read as zeros before init calls it blank and formats it:
/// the first MiB (partition tables, the primary superblock and group descriptors of any
/// filesystem we know) and the block at every backup superblock position that fits.
const BLANK_HEAD_BYTES: u64 = 1 << 20;

/// What is on the data partition, decided before anything is written to it.
#[derive(Debug, PartialEq, Eq)]
pub enum DataPartition {
    /// Nothing but zeros where any filesystem keeps its metadata: a new disk, safe to format.
    Blank,
    Ext4(Superblock),
    /// Not ext4 and not blank: a torn superblock, or a disk that is not ours. Never formatted
    /// here: only the recovery menu's factory reset, confirmed by a human, erases it.
    Unrecognised,
}

/// The byte ranges [`DataPartition::Blank`] requires to be zero on a partition of `size` bytes.
pub fn blank_check_ranges(size: u64) -> Vec<(u64, u64)> {
    let mut ranges = vec![(0, BLANK_HEAD_BYTES.min(size))];
    for (block_size, block) in BACKUP_SUPERBLOCKS {
        let offset = block_size * block;
        if offset + block_size <= size {
            ranges.push((offset, block_size));
        }
    }
    ranges
}

/// Classify from the superblock area and whether every blank-check range read as zeros.
pub fn classify_partition(head: &[u8], all_zero: bool) -> DataPartition {
    match classify_superblock(head) {
        Superblock::NotExt if all_zero => DataPartition::Blank,
        Superblock::NotExt => DataPartition::Unrecognised,
        ext => DataPartition::Ext4(ext),
    }
}

fn inspect(device: &str) -> std::io::Result<DataPartition> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(device)?;
    let size = file.seek(SeekFrom::End(0))?;
    let mut head = vec![0u8; 2048];
    file.seek(SeekFrom::Start(0))?;
    file.read_exact(&mut head)?;
    let mut all_zero = true;
    let mut buf = vec![0u8; 64 * 1024];
    'ranges: for (offset, len) in blank_check_ranges(size) {
        file.seek(SeekFrom::Start(offset))?;
        let mut left = len;
        while left > 0 {
            let chunk = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            file.read_exact(&mut buf[..chunk])?;
            if buf[..chunk].iter().any(|&b| b != 0) {
                all_zero = false;
                break 'ranges;
            }
            left -= chunk as u64;
        }
    }
    Ok(classify_partition(&head, all_zero))
}

/// Runs a filesystem tool to completion while petting the watchdog: a long e2fsck on a big
/// disk must not look like a hung box and reset it part-way through the repair.
fn run(program: &str, args: &[&str], pet: &dyn Fn()) -> Option<i32> {
    let mut command = std::process::Command::new(program);
    command.args(args);
    let mut child = match crate::pid1::unblock_signals_in_child(&mut command).spawn() {
        Ok(child) => child,
        Err(e) => {
            log::error!("{program}: {e}");
            return None;
        }
    };
    loop {
        pet();
        match child.try_wait() {
            Ok(Some(status)) => return status.code(),
            Ok(None) => std::thread::sleep(Duration::from_millis(500)),
            Err(e) => {
                log::error!("{program}: waiting: {e}");
                return None;
            }
        }
    }
}

pub fn mkfs(device: &str, label: &str, pet: &dyn Fn()) -> bool {
    log::warn!("creating an ext4 filesystem on {device} (label {label})");
    run("/sbin/mke2fs", &["-q", "-F", "-t", "ext4", "-L", label, device], pet) == Some(0)
}

/// e2fsck's exit status: bit 2 (4) means errors were left uncorrected, 8 and up means it
/// could not run; 1 and 2 mean it repaired something.
fn fsck_succeeded(program: &str, device: &str, code: Option<i32>) -> bool {
    match code {
        Some(0) => true,
        Some(code) if code & 4 == 0 && code < 8 => {
            log::warn!("{program} repaired {device} (exit {code})");
            true
        }
        other => {
            log::error!("{program} could not repair {device} (exit {other:?})");
            false
        }
    }
}

fn fsck(device: &str, force: bool, pet: &dyn Fn()) -> bool {
    let args: &[&str] = if force { &["-y", "-f", device] } else { &["-p", device] };
    fsck_succeeded("e2fsck", device, run("/sbin/e2fsck", args, pet))
}

/// The primary superblock is unreadable: let e2fsck rebuild it from each backup position in
/// turn. Returns the one that worked.
fn fsck_from_backup(device: &str, pet: &dyn Fn()) -> Option<(u64, u64)> {
    BACKUP_SUPERBLOCKS.into_iter().find(|&(block_size, block)| {
        log::warn!("{device}: trying the backup superblock at block {block} ({block_size}-byte blocks)");
        let block_arg = block.to_string();
        let size_arg = block_size.to_string();
        let code = run(
            "/sbin/e2fsck",
            &["-y", "-f", "-b", &block_arg, "-B", &size_arg, device],
            pet,
        );
        fsck_succeeded("e2fsck -b", device, code)
    })
}

fn mount_ext4(device: &str) -> nix::Result<()> {
    mount(
        Some(device),
        DATA,
        Some("ext4"),
        MsFlags::MS_NOATIME | MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
        None::<&str>,
    )
}

/// Mounts the data partition. A filesystem is created only on a blank (all-zero) partition;
/// a damaged one is repaired (from a backup superblock when the primary is gone) or left
/// exactly as it is, with the reason, for the operator and the recovery menu. `pet` keeps the
/// watchdog quiet during long checks.
pub fn mount_data(label: &str, pet: &dyn Fn()) -> Result<String, String> {
    let device = find_partition(label, Duration::from_secs(10))
        .ok_or_else(|| format!("no partition named {label:?} appeared"))?;
    let _ = std::fs::create_dir_all(DATA);
    match inspect(&device).map_err(|e| format!("{device}: {e}"))? {
        DataPartition::Blank => {
            log::warn!("{device} is blank (all zeros): first use");
            if !mkfs(&device, label, pet) {
                return Err(format!("mke2fs on {device} failed"));
            }
        }
        DataPartition::Unrecognised => {
            log::error!("{device} holds no ext4 superblock and is not blank: trying the backups");
            if fsck_from_backup(&device, pet).is_none() {
                return Err(format!(
                    "{device} holds no recognisable ext4 filesystem (primary and backup superblocks \
                     unusable); nothing was erased. Recovery menu: factory reset formats it"
                ));
            }
        }
        DataPartition::Ext4(Superblock::HasErrors) => {
            log::warn!("{device} has recorded errors: checking it");
            fsck(&device, false, pet);
        }
        DataPartition::Ext4(_) => {}
    }
    if let Err(first) = mount_ext4(&device) {
        log::warn!("mount {device}: {first}; checking the filesystem");
        if !fsck(&device, true, pet) {
            return Err(format!(
                "{device} cannot be repaired; nothing was erased. Recovery menu: factory reset formats it"
            ));
        }
        mount_ext4(&device).map_err(|e| format!("mount {device} after e2fsck: {e}"))?;
    }
    Ok(device)
}

pub fn unmount_data() {
    nix::unistd::sync();
    if let Err(e) = umount2(DATA, MntFlags::empty()) {
        log::warn!("unmount {DATA}: {e}; remounting read-only");
        let _ = mount(
            None::<&str>,
            DATA,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        );
        let _ = umount2(DATA, MntFlags::MNT_DETACH);
    }
}

pub fn is_mounted(path: &str) -> bool {
    std::fs::read_to_string("/proc/mounts")
        .map(|m| m.lines().any(|l| l.split_whitespace().nth(1) == Some(path)))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_classification() {
        let mut sb = vec![0u8; 2048];
        assert_eq!(classify_superblock(&sb), Superblock::NotExt);
        sb[1024 + 56..1024 + 58].copy_from_slice(&0xEF53u16.to_le_bytes());
        sb[1024 + 58] = 1;
        assert_eq!(classify_superblock(&sb), Superblock::Clean);
        sb[1024 + 58] = 3;
        assert_eq!(classify_superblock(&sb), Superblock::HasErrors);
        assert_eq!(classify_superblock(&sb[..1000]), Superblock::NotExt);
    }

    #[test]
    fn partname_from_uevent() {
        let uevent = "MAJOR=254\nMINOR=4\nDEVNAME=vda4\nDEVTYPE=partition\nPARTN=4\nPARTNAME=data\n";
        assert_eq!(uevent_partname(uevent), Some("data"));
        assert_eq!(uevent_partname("DEVNAME=vda\n"), None);
    }

    #[test]
    fn only_an_all_zero_partition_is_blank() {
        let zeros = vec![0u8; 2048];
        assert_eq!(classify_partition(&zeros, true), DataPartition::Blank);
        // Zeros in the superblock but something elsewhere (another filesystem's header, a
        // partly overwritten ext4): never blank.
        assert_eq!(classify_partition(&zeros, false), DataPartition::Unrecognised);
        let mut torn = vec![0u8; 2048];
        torn[1024 + 56] = 0x12;
        assert_eq!(classify_partition(&torn, false), DataPartition::Unrecognised);
        let mut ext = vec![0u8; 2048];
        ext[1024 + 56..1024 + 58].copy_from_slice(&0xEF53u16.to_le_bytes());
        ext[1024 + 58] = 1;
        assert_eq!(classify_partition(&ext, false), DataPartition::Ext4(Superblock::Clean));
    }

    #[test]
    fn blank_check_covers_the_head_and_every_backup_superblock_that_fits() {
        assert_eq!(blank_check_ranges(4096), vec![(0, 4096)]);
        let ranges = blank_check_ranges(1 << 30);
        assert_eq!(ranges[0], (0, 1 << 20));
        for (block_size, block) in BACKUP_SUPERBLOCKS {
            assert!(
                ranges.contains(&(block_size * block, block_size)),
                "{block_size} {block}"
            );
        }
        // 16 MiB: only the 1 KiB-block backup (at 8 MiB) fits.
        assert_eq!(blank_check_ranges(16 << 20), vec![(0, 1 << 20), (1024 * 8193, 1024)]);
    }
}
