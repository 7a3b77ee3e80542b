//! Damaged data partitions in the appliance tier: the disk image is edited between boots the
//! way a torn write or a foreign disk would leave it, and the box must never format it on its
//! own.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use crate::util::TaskResult;

/// Byte offset and length of the GPT partition named `data` in a raw disk image, from
/// `sfdisk -d` (lines like `disk4 : start= 2048, size= 1000, type=..., name="data"`).
pub fn data_partition(disk: &Path) -> TaskResult<(u64, u64)> {
    let output = Command::new("sfdisk")
        .arg("-d")
        .arg(disk)
        .output()
        .map_err(|e| format!("sfdisk (package fdisk): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "sfdisk -d {}: {}",
            disk.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let dump = String::from_utf8_lossy(&output.stdout);
    parse_data_partition(&dump).ok_or_else(|| format!("no partition named \"data\" in {dump:?}"))
}

fn parse_data_partition(dump: &str) -> Option<(u64, u64)> {
    let line = dump.lines().find(|l| l.contains("name=\"data\""))?;
    let field = |name: &str| -> Option<u64> {
        let (_, rest) = line.split_once(&format!("{name}="))?;
        rest.split(',').next()?.trim().parse().ok()
    };
    Some((field("start")? * 512, field("size")? * 512))
}

/// Where e2fsck finds backup superblocks (first group past the primary), by block size.
pub const BACKUP_SUPERBLOCKS: [(u64, u64); 3] = [(4096, 32768), (1024, 8193), (2048, 16384)];

const MARK: u8 = 0xA5;

fn overwrite(disk: &Path, offset: u64, len: u64) -> TaskResult {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(disk)
        .map_err(|e| format!("{}: {e}", disk.display()))?;
    file.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
    let len = usize::try_from(len).map_err(|e| e.to_string())?;
    file.write_all(&vec![MARK; len]).map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())
}

/// A torn primary superblock: garbage over the 1 KiB at byte 1024 of the filesystem.
pub fn tear_primary_superblock(disk: &Path) -> TaskResult {
    let (start, _) = data_partition(disk)?;
    overwrite(disk, start + 1024, 1024)
}

/// Nothing ext4 left anywhere e2fsck would look: the first MiB and every backup superblock
/// position overwritten, as a disk holding something else would be.
pub fn scramble_filesystem(disk: &Path) -> TaskResult {
    let (start, size) = data_partition(disk)?;
    overwrite(disk, start, 1 << 20)?;
    for (block_size, block) in BACKUP_SUPERBLOCKS {
        if block_size * (block + 1) <= size {
            overwrite(disk, start + block_size * block, block_size)?;
        }
    }
    Ok(())
}

/// True when the first MiB of the data partition still holds exactly what
/// [`scramble_filesystem`] wrote, i.e. nobody formatted it.
pub fn still_scrambled(disk: &Path) -> TaskResult<bool> {
    let (start, _) = data_partition(disk)?;
    let mut file = std::fs::File::open(disk).map_err(|e| e.to_string())?;
    file.seek(SeekFrom::Start(start)).map_err(|e| e.to_string())?;
    let mut head = vec![0u8; 1 << 20];
    file.read_exact(&mut head).map_err(|e| e.to_string())?;
    Ok(head.iter().all(|&b| b == MARK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_partition_is_found_in_an_sfdisk_dump() {
        let dump = "label: gpt\nunit: sectors\n\n\
                    d.img1 : start=        2048, size=      102400, type=C12A7328, name=\"ESP\"\n\
                    d.img4 : start=      514048, size=      524288, type=0FC63DAF, name=\"data\"\n";
        assert_eq!(parse_data_partition(dump), Some((514048 * 512, 524288 * 512)));
        assert_eq!(parse_data_partition("label: gpt\n"), None);
    }
}
