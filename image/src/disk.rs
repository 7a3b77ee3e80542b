//! The flashable GPT disk image, built without root: sgdisk for the table, mtools for the
//! FAT partitions, `mke2fs -d` for the data partition, then each partition copied in place.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::board::DiskSpec;
use crate::kernel::path_str;
use crate::{ImageError, host, io_err, stable_uuid};

pub const SECTOR: u64 = 512;
const MIB_SECTORS: u64 = 1024 * 1024 / SECTOR;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub number: u32,
    pub name: &'static str,
    /// sgdisk type code.
    pub type_code: &'static str,
    pub first_sector: u64,
    pub last_sector: u64,
}

impl Partition {
    pub fn bytes(&self) -> u64 {
        (self.last_sector - self.first_sector + 1) * SECTOR
    }
}

/// ESP, boot slot A, boot slot B, data (the rest), each 1 MiB aligned.
pub fn layout(spec: &DiskSpec) -> Vec<Partition> {
    let total_sectors = spec.size_mib * MIB_SECTORS;
    // The backup GPT takes the last 33 sectors; keep data's end MiB-aligned below it.
    let data_end = (total_sectors - 34) / MIB_SECTORS * MIB_SECTORS - 1;
    let mut next = MIB_SECTORS;
    let mut take = |mib: u64| {
        let first = next;
        next += mib * MIB_SECTORS;
        (first, next - 1)
    };
    let esp = take(spec.esp_mib);
    let slot_a = take(spec.boot_slot_mib);
    let slot_b = take(spec.boot_slot_mib);
    vec![
        Partition {
            number: 1,
            name: "ESP",
            type_code: "ef00",
            first_sector: esp.0,
            last_sector: esp.1,
        },
        Partition {
            number: 2,
            name: "boot_a",
            type_code: "8300",
            first_sector: slot_a.0,
            last_sector: slot_a.1,
        },
        Partition {
            number: 3,
            name: "boot_b",
            type_code: "8300",
            first_sector: slot_b.0,
            last_sector: slot_b.1,
        },
        Partition {
            number: 4,
            name: "data",
            type_code: "8300",
            first_sector: next,
            last_sector: data_end,
        },
    ]
}

pub struct DiskInputs<'a> {
    pub board_name: &'a str,
    pub uki: &'a Path,
    pub data_seed: &'a Path,
    pub work: &'a Path,
    pub epoch: u32,
}

pub fn build(spec: &DiskSpec, inputs: &DiskInputs, out: &Path) -> Result<(), ImageError> {
    let partitions = layout(spec);
    let epoch = inputs.epoch.to_string();
    let env = [
        ("SOURCE_DATE_EPOCH", epoch.as_str()),
        // e2fsprogs 1.47.0 ignores SOURCE_DATE_EPOCH; E2FSPROGS_FAKE_TIME pins mke2fs's clock.
        ("E2FSPROGS_FAKE_TIME", epoch.as_str()),
        ("TZ", "UTC"),
        ("MTOOLS_SKIP_CHECK", "1"),
    ];
    let disk = File::create(out).map_err(io_err("creating the disk image"))?;
    disk.set_len(spec.size_mib * 1024 * 1024)
        .map_err(io_err("sizing the disk image"))?;
    drop(disk);

    let disk_guid = stable_uuid(inputs.board_name, "disk");
    let mut args: Vec<String> = vec!["-o".into(), "-U".into(), disk_guid];
    for p in &partitions {
        let n = p.number;
        args.extend([
            "-n".into(),
            format!("{n}:{}:{}", p.first_sector, p.last_sector),
            "-t".into(),
            format!("{n}:{}", p.type_code),
            "-c".into(),
            format!("{n}:{}", p.name),
            "-u".into(),
            format!("{n}:{}", stable_uuid(inputs.board_name, p.name)),
        ]);
    }
    args.push(path_str(out)?.into());
    // Never -q: sgdisk -q exits 0 and writes no partitions.
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    host::run("sgdisk", &args_ref, None, &env)?;

    for p in &partitions {
        let part_file = inputs.work.join(format!("part-{}.img", p.name));
        match p.name {
            "ESP" => fat(&part_file, p, inputs, "ESP", Some(("EFI/BOOT", "BOOTX64.EFI")), &env)?,
            "boot_a" => fat(&part_file, p, inputs, "BOOT_A", Some(("", "switchboard.efi")), &env)?,
            "boot_b" => fat(&part_file, p, inputs, "BOOT_B", None, &env)?,
            _ => ext4(&part_file, p, inputs, &spec.data_label, &env)?,
        }
        copy_into(&part_file, out, p.first_sector * SECTOR)?;
        std::fs::remove_file(&part_file).map_err(io_err("removing a partition scratch file"))?;
    }
    Ok(())
}

fn fat(
    file: &Path,
    p: &Partition,
    inputs: &DiskInputs,
    label: &str,
    uki_at: Option<(&str, &str)>,
    env: &[(&str, &str)],
) -> Result<(), ImageError> {
    let image = File::create(file).map_err(io_err("creating a FAT scratch file"))?;
    image.set_len(p.bytes()).map_err(io_err("sizing a FAT scratch file"))?;
    drop(image);
    let image = path_str(file)?;
    let serial = format!(
        "{:08x}",
        u32::from_str_radix(&stable_uuid(inputs.board_name, p.name)[..8], 16).unwrap_or(0)
    );
    host::run("mformat", &["-i", image, "-N", &serial, "-v", label, "::"], None, env)?;
    if let Some((dir, name)) = uki_at {
        let mut target = String::from("::");
        for component in dir.split('/').filter(|c| !c.is_empty()) {
            target.push('/');
            target.push_str(component);
            host::run("mmd", &["-i", image, &target], None, env)?;
        }
        target.push('/');
        target.push_str(name);
        // -m keeps the source's mtime, which the builder pinned to SOURCE_DATE_EPOCH.
        host::run("mcopy", &["-m", "-i", image, path_str(inputs.uki)?, &target], None, env)?;
    }
    Ok(())
}

fn ext4(file: &Path, p: &Partition, inputs: &DiskInputs, label: &str, env: &[(&str, &str)]) -> Result<(), ImageError> {
    let uuid = stable_uuid(inputs.board_name, "data-fs");
    let hash_seed = stable_uuid(inputs.board_name, "data-hash");
    let extended = format!("hash_seed={hash_seed},root_owner=0:0");
    let blocks = format!("{}k", p.bytes() / 1024);
    let _ = std::fs::remove_file(file);
    host::run(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-L",
            label,
            "-U",
            &uuid,
            "-E",
            &extended,
            "-d",
            path_str(inputs.data_seed)?,
            path_str(file)?,
            &blocks,
        ],
        None,
        env,
    )?;
    Ok(())
}

/// Writes `src` into `dst` at `offset` like `dd conv=notrunc,sparse`: zero blocks are skipped,
/// so the image stays sparse and only data is written.
pub fn copy_into(src: &Path, dst: &Path, offset: u64) -> Result<(), ImageError> {
    let mut input = File::open(src).map_err(io_err("opening a partition image"))?;
    let mut output = std::fs::OpenOptions::new()
        .write(true)
        .open(dst)
        .map_err(io_err("opening the disk image"))?;
    let mut buffer = vec![0u8; 1 << 16];
    let mut position = offset;
    loop {
        let n = read_full(&mut input, &mut buffer)?;
        if n == 0 {
            return Ok(());
        }
        if buffer[..n].iter().any(|&b| b != 0) {
            output
                .seek(SeekFrom::Start(position))
                .map_err(io_err("seeking in the disk image"))?;
            output
                .write_all(&buffer[..n])
                .map_err(io_err("writing the disk image"))?;
        }
        position += n as u64;
    }
}

fn read_full(input: &mut File, buffer: &mut [u8]) -> Result<usize, ImageError> {
    let mut filled = 0;
    while filled < buffer.len() {
        let n = input
            .read(&mut buffer[filled..])
            .map_err(io_err("reading a partition image"))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DiskSpec {
        DiskSpec {
            size_mib: 512,
            esp_mib: 64,
            boot_slot_mib: 64,
            data_label: "data".into(),
            block_device: "vda".into(),
        }
    }

    #[test]
    fn layout_is_aligned_contiguous_and_inside_the_disk() {
        let parts = layout(&spec());
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0].first_sector, 2048);
        for pair in parts.windows(2) {
            assert_eq!(pair[0].last_sector + 1, pair[1].first_sector);
        }
        for p in &parts {
            assert_eq!(p.first_sector % 2048, 0);
            assert_eq!((p.last_sector + 1) % 2048, 0);
        }
        assert_eq!(parts[0].bytes(), 64 << 20);
        assert!(parts[3].last_sector < 512 * 2048 - 33);
        assert_eq!(parts[3].bytes(), (512 - 1 - 64 * 3 - 1) << 20);
    }

    #[test]
    fn sparse_copy_writes_data_at_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        let mut data = vec![0u8; 200_000];
        data[5] = 1;
        data[150_000] = 2;
        std::fs::write(&src, &data).unwrap();
        std::fs::write(&dst, vec![9u8; 300_000]).unwrap();
        copy_into(&src, &dst, 1000).unwrap();
        let out = std::fs::read(&dst).unwrap();
        assert_eq!(out.len(), 300_000);
        assert_eq!(out[999], 9);
        assert_eq!(out[1005], 1);
        assert_eq!(out[151_000], 2);
        // Zero blocks are skipped, so what was there stays (the real target is a fresh sparse file).
        assert_eq!(out[1000 + 70_000], 9);
    }
}
