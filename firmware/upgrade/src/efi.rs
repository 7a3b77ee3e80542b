//! UEFI boot entries as efivarfs sees them. The slot mechanism is the firmware's own:
//! each boot slot has a load option (`Boot00A1`, `Boot00B1`) pointing at `\switchboard.efi` on
//! its partition; `BootOrder` starts with the committed slot; a new slot is tried once through
//! `BootNext`, which the firmware deletes before it boots it, so any reset during the trial
//! (panic, watchdog, power cut, PID 1 giving up) lands in the committed slot again.

/// EFI_GLOBAL_VARIABLE: BootOrder, BootNext, BootCurrent, Boot####.
pub const GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
pub const EFIVARS_DIR: &str = "/sys/firmware/efi/efivars";
/// NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS.
pub const ATTRIBUTES: u32 = 0x7;
const LOAD_OPTION_ACTIVE: u32 = 0x1;

/// The path of the UKI inside a boot slot's FAT filesystem.
pub const SLOT_LOADER_PATH: &str = "\\switchboard.efi";

/// efivarfs file name of a global variable.
pub fn var_file(name: &str) -> String {
    format!("{name}-{GLOBAL_GUID}")
}

pub fn boot_entry_name(number: u16) -> String {
    format!("Boot{number:04X}")
}

/// A hard-drive media device path node (HD(n,GPT,guid,start,size)): a "short form" path the
/// firmware expands by finding the partition with this GUID on any disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HardDrive {
    pub partition_number: u32,
    pub start_lba: u64,
    pub size_lba: u64,
    pub guid: [u8; 16],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOption {
    pub active: bool,
    pub description: String,
    pub hard_drive: Option<HardDrive>,
    pub file: Option<String>,
}

fn utf16z(text: &str) -> Vec<u8> {
    text.encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect()
}

/// EFI_LOAD_OPTION bytes (without the efivarfs attribute prefix).
pub fn encode_load_option(description: &str, drive: &HardDrive, file: &str) -> Vec<u8> {
    let mut path = Vec::new();
    // Media (4) / Hard Drive (1), 42 bytes.
    path.extend_from_slice(&[4, 1, 42, 0]);
    path.extend_from_slice(&drive.partition_number.to_le_bytes());
    path.extend_from_slice(&drive.start_lba.to_le_bytes());
    path.extend_from_slice(&drive.size_lba.to_le_bytes());
    path.extend_from_slice(&drive.guid);
    path.extend_from_slice(&[2, 2]); // GPT partition format, GUID signature
    // Media (4) / File Path (4).
    let name = utf16z(file);
    path.extend_from_slice(&[4, 4]);
    path.extend_from_slice(&(4 + name.len() as u16).to_le_bytes());
    path.extend_from_slice(&name);
    path.extend_from_slice(&[0x7f, 0xff, 4, 0]); // end of the whole path
    let mut option = Vec::new();
    option.extend_from_slice(&LOAD_OPTION_ACTIVE.to_le_bytes());
    option.extend_from_slice(&(path.len() as u16).to_le_bytes());
    option.extend_from_slice(&utf16z(description));
    option.extend_from_slice(&path);
    option
}

pub fn decode_load_option(bytes: &[u8]) -> Option<LoadOption> {
    let attributes = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?);
    let path_len = u16::from_le_bytes(bytes.get(4..6)?.try_into().ok()?) as usize;
    let mut at = 6;
    let mut units = Vec::new();
    loop {
        let unit = u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?);
        at += 2;
        if unit == 0 {
            break;
        }
        units.push(unit);
    }
    let mut path = bytes.get(at..at + path_len)?;
    let mut option = LoadOption {
        active: attributes & LOAD_OPTION_ACTIVE != 0,
        description: String::from_utf16_lossy(&units),
        hard_drive: None,
        file: None,
    };
    while path.len() >= 4 {
        let (kind, sub, len) = (path[0], path[1], u16::from_le_bytes([path[2], path[3]]) as usize);
        if len < 4 || len > path.len() || kind == 0x7f {
            break;
        }
        let node = &path[4..len];
        match (kind, sub) {
            (4, 1) if node.len() >= 38 => {
                let mut guid = [0u8; 16];
                guid.copy_from_slice(&node[20..36]);
                option.hard_drive = Some(HardDrive {
                    partition_number: u32::from_le_bytes(node[0..4].try_into().ok()?),
                    start_lba: u64::from_le_bytes(node[4..12].try_into().ok()?),
                    size_lba: u64::from_le_bytes(node[12..20].try_into().ok()?),
                    guid,
                });
            }
            (4, 4) => {
                let units: Vec<u16> = node
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .take_while(|&u| u != 0)
                    .collect();
                option.file = Some(String::from_utf16_lossy(&units));
            }
            _ => {}
        }
        path = &path[len..];
    }
    Some(option)
}

/// BootOrder: a list of u16.
pub fn encode_order(order: &[u16]) -> Vec<u8> {
    order.iter().flat_map(|n| n.to_le_bytes()).collect()
}

pub fn decode_order(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// efivarfs file contents: the attributes, then the data.
pub fn with_attributes(data: &[u8]) -> Vec<u8> {
    let mut bytes = ATTRIBUTES.to_le_bytes().to_vec();
    bytes.extend_from_slice(data);
    bytes
}

/// A variable's data from its efivarfs file (the 4 attribute bytes dropped); None if absent.
pub fn read_var(dir: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    let bytes = std::fs::read(dir.join(var_file(name))).ok()?;
    bytes.get(4..).map(<[u8]>::to_vec)
}

/// `order` with `first` at its head and `drop` nowhere.
pub fn reorder(order: &[u16], first: u16, drop: &[u16]) -> Vec<u16> {
    std::iter::once(first)
        .chain(order.iter().copied().filter(|n| *n != first && !drop.contains(n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive() -> HardDrive {
        HardDrive {
            partition_number: 3,
            start_lba: 264_192,
            size_lba: 131_072,
            guid: std::array::from_fn(|i| i as u8),
        }
    }

    #[test]
    fn load_options_round_trip() {
        let bytes = encode_load_option("Switchboard slot B", &drive(), SLOT_LOADER_PATH);
        let option = decode_load_option(&bytes).unwrap();
        assert!(option.active);
        assert_eq!(option.description, "Switchboard slot B");
        assert_eq!(option.hard_drive, Some(drive()));
        assert_eq!(option.file.as_deref(), Some("\\switchboard.efi"));
    }

    #[test]
    fn load_option_layout_matches_the_uefi_spec() {
        let bytes = encode_load_option("A", &drive(), "\\x");
        // attributes, FilePathListLength, "A\0" in UTF-16, then the HD node header.
        assert_eq!(&bytes[0..4], &[1, 0, 0, 0]);
        let path_len = u16::from_le_bytes([bytes[4], bytes[5]]) as usize;
        assert_eq!(&bytes[6..10], &[b'A', 0, 0, 0]);
        assert_eq!(&bytes[10..14], &[4, 1, 42, 0]);
        assert_eq!(bytes.len(), 10 + path_len);
        // HD(42) + File(4 + "\x\0" = 10) + End(4).
        assert_eq!(path_len, 42 + 10 + 4);
        assert_eq!(&bytes[bytes.len() - 4..], &[0x7f, 0xff, 4, 0]);
    }

    #[test]
    fn junk_is_no_load_option() {
        assert_eq!(decode_load_option(&[1, 0, 0]), None);
        assert_eq!(decode_load_option(&[1, 0, 0, 0, 200, 0, b'A', 0, 0, 0]), None);
    }

    #[test]
    fn boot_order_encoding_and_reordering() {
        let order = decode_order(&encode_order(&[1, 0xa1, 2, 0xb1]));
        assert_eq!(order, vec![1, 0xa1, 2, 0xb1]);
        assert_eq!(reorder(&order, 0xb1, &[0xa1]), vec![0xb1, 1, 2]);
        assert_eq!(reorder(&[], 0xa1, &[]), vec![0xa1]);
        assert_eq!(boot_entry_name(0xa1), "Boot00A1");
        assert_eq!(with_attributes(&[9]), vec![7, 0, 0, 0, 9]);
    }
}
