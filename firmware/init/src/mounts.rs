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

fn read_superblock(device: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = vec![0u8; 2048];
    std::fs::File::open(device)?.read_exact(&mut buf)?;
    Ok(buf)
}

fn run(program: &str, args: &[&str]) -> Option<i32> {
    let mut command = std::process::Command::new(program);
    command.args(args);
    match crate::pid1::unblock_signals_in_child(&mut command).status() {
        Ok(status) => status.code(),
        Err(e) => {
            log::error!("{program}: {e}");
            None
        }
    }
}

pub fn mkfs(device: &str, label: &str) -> bool {
    log::warn!("{device} holds no ext4 filesystem: creating one (label {label})");
    run("/sbin/mke2fs", &["-q", "-F", "-t", "ext4", "-L", label, device]) == Some(0)
}

fn fsck(device: &str, force: bool) -> bool {
    let args: &[&str] = if force { &["-y", "-f", device] } else { &["-p", device] };
    match run("/sbin/e2fsck", args) {
        Some(0) => true,
        Some(code) if code & 4 == 0 => {
            log::warn!("e2fsck repaired {device} (exit {code})");
            true
        }
        other => {
            log::error!("e2fsck could not repair {device} (exit {other:?})");
            false
        }
    }
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

/// Mounts the data partition, creating the filesystem only when there is none (never over
/// a damaged one: that is the recovery menu's factory reset, after a human confirmed it).
pub fn mount_data(label: &str) -> Result<String, String> {
    let device = find_partition(label, Duration::from_secs(10))
        .ok_or_else(|| format!("no partition named {label:?} appeared"))?;
    let _ = std::fs::create_dir_all(DATA);
    match read_superblock(&device).map(|b| classify_superblock(&b)) {
        Err(e) => return Err(format!("{device}: {e}")),
        Ok(Superblock::NotExt) => {
            if !mkfs(&device, label) {
                return Err(format!("mke2fs on {device} failed"));
            }
        }
        Ok(Superblock::HasErrors) => {
            log::warn!("{device} has recorded errors: checking it");
            fsck(&device, false);
        }
        Ok(Superblock::Clean) => {}
    }
    if let Err(first) = mount_ext4(&device) {
        log::warn!("mount {device}: {first}; checking the filesystem");
        if !fsck(&device, true) {
            return Err(format!(
                "{device} cannot be repaired; use the recovery menu's factory reset"
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
}
