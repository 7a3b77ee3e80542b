//! Unified kernel image: systemd-boot's EFI stub with the kernel, initramfs, command line and
//! os-release added as PE sections placed after the stub's own (Debian 12 has no ukify).

use std::path::Path;

use crate::kernel::path_str;
use crate::{ImageError, host, io_err};

const SECTION_ALIGN: u64 = 0x1000;

/// End of the highest section (VMA + size) in `objdump -h` output.
pub fn sections_end(objdump_h: &str) -> Result<u64, ImageError> {
    let mut end = 0u64;
    for line in objdump_h.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "Idx Name Size VMA LMA FileOff Algn" rows: first field is the index.
        if fields.len() == 7 && fields[0].parse::<u32>().is_ok() {
            let size = u64::from_str_radix(fields[2], 16).map_err(|_| bad_objdump(line))?;
            let vma = u64::from_str_radix(fields[3], 16).map_err(|_| bad_objdump(line))?;
            end = end.max(vma + size);
        }
    }
    if end == 0 {
        return Err(ImageError::Other("objdump listed no sections in the EFI stub".into()));
    }
    Ok(end)
}

fn bad_objdump(line: &str) -> ImageError {
    ImageError::Other(format!("unexpected objdump line: {line}"))
}

pub fn align_up(value: u64, align: u64) -> u64 {
    value.div_ceil(align) * align
}

pub struct UkiParts<'a> {
    pub osrel: &'a Path,
    pub cmdline: &'a Path,
    pub linux: &'a Path,
    pub initrd: &'a Path,
}

pub fn build(parts: &UkiParts, out: &Path, epoch: u32) -> Result<(), ImageError> {
    let stub = Path::new(host::EFI_STUB);
    let listing = host::run("objdump", &["-h", host::EFI_STUB], None, &[])?;
    let mut offset = align_up(sections_end(&String::from_utf8_lossy(&listing.stdout))?, SECTION_ALIGN);
    let mut args: Vec<String> = Vec::new();
    for (name, file) in [
        (".osrel", parts.osrel),
        (".cmdline", parts.cmdline),
        (".linux", parts.linux),
        (".initrd", parts.initrd),
    ] {
        let size = std::fs::metadata(file).map_err(io_err("sizing a UKI section"))?.len();
        args.push("--add-section".into());
        args.push(format!("{name}={}", path_str(file)?));
        args.push("--change-section-vma".into());
        args.push(format!("{name}=0x{offset:x}"));
        offset = align_up(offset + size, SECTION_ALIGN);
    }
    args.push(path_str(stub)?.into());
    args.push(path_str(out)?.into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    host::run("objcopy", &args, None, &[("SOURCE_DATE_EPOCH", &epoch.to_string())])?;
    stamp_pe_time(out, epoch)
}

/// objcopy may stamp the build time into the COFF header; pin it so builds are repeatable.
fn stamp_pe_time(path: &Path, epoch: u32) -> Result<(), ImageError> {
    let mut bytes = std::fs::read(path).map_err(io_err("reading the UKI"))?;
    if bytes.len() < 0x40 {
        return Err(ImageError::Other("UKI too short to be a PE file".into()));
    }
    let pe = u32::from_le_bytes([bytes[0x3c], bytes[0x3d], bytes[0x3e], bytes[0x3f]]) as usize;
    if bytes.len() < pe + 12 || &bytes[pe..pe + 4] != b"PE\0\0" {
        return Err(ImageError::Other("UKI has no PE signature".into()));
    }
    bytes[pe + 8..pe + 12].copy_from_slice(&epoch.to_le_bytes());
    // The optional header's CheckSum (objcopy filled it in over its own timestamp).
    let checksum_at = pe + 24 + 64;
    if bytes.len() >= checksum_at + 4 {
        bytes[checksum_at..checksum_at + 4].copy_from_slice(&[0; 4]);
        let sum = pe_checksum(&bytes, checksum_at);
        bytes[checksum_at..checksum_at + 4].copy_from_slice(&sum.to_le_bytes());
    }
    std::fs::write(path, bytes).map_err(io_err("writing the UKI"))
}

/// The PE image checksum: 16-bit one's-complement-style sum of the file (with the checksum
/// field itself skipped), folded, plus the file length.
pub fn pe_checksum(bytes: &[u8], checksum_at: usize) -> u32 {
    let mut sum: u64 = 0;
    for (index, chunk) in bytes.chunks(2).enumerate() {
        let offset = index * 2;
        if offset >= checksum_at && offset < checksum_at + 4 {
            continue;
        }
        let word = chunk[0] as u64 | (chunk.get(1).copied().unwrap_or(0) as u64) << 8;
        sum += word;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    (sum as u32).wrapping_add(bytes.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_of_the_last_section() {
        let listing = "\nlinuxx64.efi.stub:     file format pei-x86-64\n\nSections:\n\
Idx Name          Size      VMA               LMA               File off  Algn\n\
  0 .text         0000c8c8  0000000000001000  0000000000001000  00000400  2**4\n\
                  CONTENTS, ALLOC, LOAD, READONLY, CODE\n\
  1 .reloc        0000000c  0000000000016000  0000000000016000  0000e400  2**2\n\
  2 .data         00002d90  0000000000010000  0000000000010000  0000cc00  2**4\n";
        assert_eq!(sections_end(listing).unwrap(), 0x1600c);
        assert_eq!(align_up(0x1600c, 0x1000), 0x17000);
        assert!(sections_end("nothing here").is_err());
    }

    #[test]
    fn pe_checksum_skips_its_own_field_and_adds_the_length() {
        let mut bytes = vec![0u8; 16];
        bytes[0] = 1;
        bytes[2] = 0xff;
        bytes[3] = 0xff;
        bytes[8] = 9; // inside the checksum field at 8..12: ignored
        assert_eq!(pe_checksum(&bytes, 8), (1 + 0xffff - 0xffff) + 16);
        bytes[8] = 0;
        assert_eq!(pe_checksum(&bytes, 8), 1 + 16);
    }
}
