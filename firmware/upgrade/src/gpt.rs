//! The GPT partition table, read from the disk itself: a boot slot's UEFI boot entry needs its
//! partition number, first sector, size and unique GUID, and the disk is the authority on them.

use std::io::{Read, Seek, SeekFrom};

const SECTOR: u64 = 512;
const MAX_ENTRIES: u32 = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition {
    /// 1-based, as the kernel names it (`vda2`) and as UEFI's HD() node counts.
    pub number: u32,
    pub name: String,
    pub first_lba: u64,
    pub last_lba: u64,
    /// The unique partition GUID in its on-disk (mixed-endian) byte order, as UEFI wants it.
    pub guid: [u8; 16],
}

impl GptPartition {
    pub fn sectors(&self) -> u64 {
        self.last_lba + 1 - self.first_lba
    }

    pub fn bytes(&self) -> u64 {
        self.sectors() * SECTOR
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("no GPT header (\"EFI PART\") in sector 1")]
    NoHeader,
    #[error("GPT header: {0}")]
    BadHeader(&'static str),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Every used entry of the primary table.
pub fn read(disk: &mut (impl Read + Seek)) -> Result<Vec<GptPartition>, GptError> {
    let mut header = [0u8; 92];
    disk.seek(SeekFrom::Start(SECTOR))?;
    disk.read_exact(&mut header)?;
    if &header[..8] != b"EFI PART" {
        return Err(GptError::NoHeader);
    }
    let u32_at = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().unwrap_or([0; 4]));
    let entries_lba = u64::from_le_bytes(header[72..80].try_into().unwrap_or([0; 8]));
    let count = u32_at(80);
    let entry_size = u32_at(84) as usize;
    if count > MAX_ENTRIES {
        return Err(GptError::BadHeader("more than 256 entries"));
    }
    if !(128..=1024).contains(&entry_size) {
        return Err(GptError::BadHeader("entry size outside 128..=1024"));
    }
    disk.seek(SeekFrom::Start(entries_lba.saturating_mul(SECTOR)))?;
    let mut table = vec![0u8; count as usize * entry_size];
    disk.read_exact(&mut table)?;
    let mut partitions = Vec::new();
    for (index, entry) in table.chunks(entry_size).enumerate() {
        if entry[..16].iter().all(|&b| b == 0) {
            continue; // unused entry: zero type GUID
        }
        let name_units: Vec<u16> = entry[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&entry[16..32]);
        partitions.push(GptPartition {
            number: index as u32 + 1,
            name: String::from_utf16_lossy(&name_units),
            first_lba: u64::from_le_bytes(entry[32..40].try_into().unwrap_or([0; 8])),
            last_lba: u64::from_le_bytes(entry[40..48].try_into().unwrap_or([0; 8])),
            guid,
        });
    }
    Ok(partitions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A disk with a GPT as sgdisk lays it out: header in LBA 1, 128 entries from LBA 2.
    pub fn disk_with(parts: &[(&str, u64, u64, u8)]) -> Vec<u8> {
        let mut disk = vec![0u8; 34 * 512];
        disk[512..520].copy_from_slice(b"EFI PART");
        disk[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        disk[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        disk[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        for (i, (name, first, last, tag)) in parts.iter().enumerate() {
            let e = 1024 + i * 128;
            disk[e..e + 16].fill(0xaf);
            disk[e + 16..e + 32].fill(*tag);
            disk[e + 32..e + 40].copy_from_slice(&first.to_le_bytes());
            disk[e + 40..e + 48].copy_from_slice(&last.to_le_bytes());
            for (j, unit) in name.encode_utf16().enumerate() {
                disk[e + 56 + j * 2..e + 58 + j * 2].copy_from_slice(&unit.to_le_bytes());
            }
        }
        disk
    }

    #[test]
    fn reads_names_positions_and_guids() {
        let disk = disk_with(&[
            ("ESP", 2048, 133_119, 1),
            ("boot_a", 133_120, 264_191, 2),
            ("boot_b", 264_192, 395_263, 3),
        ]);
        let parts = read(&mut Cursor::new(disk)).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1].name, "boot_a");
        assert_eq!(parts[1].number, 2);
        assert_eq!(parts[2].first_lba, 264_192);
        assert_eq!(parts[2].bytes(), 64 << 20);
        assert_eq!(parts[2].guid, [3; 16]);
    }

    #[test]
    fn a_disk_without_gpt_or_with_a_silly_header_is_refused() {
        assert!(matches!(
            read(&mut Cursor::new(vec![0u8; 34 * 512])),
            Err(GptError::NoHeader)
        ));
        let mut disk = disk_with(&[]);
        disk[512 + 80..512 + 84].copy_from_slice(&100_000u32.to_le_bytes());
        assert!(matches!(read(&mut Cursor::new(disk)), Err(GptError::BadHeader(_))));
        assert!(read(&mut Cursor::new(vec![0u8; 100])).is_err());
    }
}
