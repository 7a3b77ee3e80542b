//! The initramfs: the appliance's whole root filesystem (it runs from RAM).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::board::Board;
use crate::cpio::{Archive, Entry};
use crate::kernel::{Kernel, path_str};
use crate::modules::{self, DepTable, parse_builtin};
use crate::{ImageError, host, io_err};

/// e2fsprogs tools PID 1 runs on /data (check before mount, create when blank). They are
/// Debian's dynamically linked builds, so their libraries and loader come along.
pub const HOST_TOOLS: &[&str] = &["mke2fs", "e2fsck"];

pub struct Binaries {
    pub init: PathBuf,
    pub xmppd: PathBuf,
    pub mmp: PathBuf,
}

pub struct Contents {
    pub archive: Archive,
    pub modules: Vec<String>,
}

pub fn assemble(
    board: &Board,
    board_text: &str,
    kernel: &Kernel,
    binaries: &Binaries,
    version: &str,
) -> Result<Contents, ImageError> {
    let mut archive = Archive::new();
    for dir in ["dev", "proc", "sys", "run", "tmp", "data", "root", "etc", "bin", "sbin"] {
        archive.add(dir, Entry::Dir { mode: 0o755 });
    }
    archive.add("tmp", Entry::Dir { mode: 0o1777 });
    // The kernel opens /dev/console before devtmpfs exists; without this node PID 1 starts deaf.
    archive.add(
        "dev/console",
        Entry::CharDev {
            mode: 0o600,
            major: 5,
            minor: 1,
        },
    );
    archive.add("init", file(&binaries.init, 0o755)?);
    archive.add("bin/xmppd", file(&binaries.xmppd, 0o755)?);
    archive.add("bin/mmp", file(&binaries.mmp, 0o755)?);
    archive.add(
        "etc/switchboard/board.toml",
        Entry::File {
            mode: 0o644,
            data: board_text.as_bytes().to_vec(),
        },
    );
    archive.add(
        "etc/switchboard/version",
        Entry::File {
            mode: 0o644,
            data: format!("{version}\n").into_bytes(),
        },
    );
    archive.add(
        "etc/os-release",
        Entry::File {
            mode: 0o644,
            data: os_release(version).into_bytes(),
        },
    );
    // xmppd runs as its own user (init drops to 100:100 before exec; issue 13). init uses the
    // numbers; these files give them names for `ps`-style tools and ls.
    archive.add(
        "etc/passwd",
        Entry::File {
            mode: 0o644,
            data: b"root:x:0:0:root:/root:/bin/false\nxmppd:x:100:100:Switchboard XMPP daemon:/data/xmpp:/bin/false\n"
                .to_vec(),
        },
    );
    archive.add(
        "etc/group",
        Entry::File {
            mode: 0o644,
            data: b"root:x:0:\nxmppd:x:100:\n".to_vec(),
        },
    );
    archive.add(
        "etc/hostname",
        Entry::File {
            mode: 0o644,
            data: b"switchboard\n".to_vec(),
        },
    );

    // Kernel modules: the board's list closed over modules.dep.
    let dep_text = read_text(&kernel.modules_dir.join("modules.dep"))?;
    let builtin_text = read_text(&kernel.modules_dir.join("modules.builtin"))?;
    let table = DepTable::parse(&dep_text);
    let wanted: Vec<String> = board
        .kernel
        .modules
        .iter()
        .chain(&board.kernel.uefi_modules)
        .cloned()
        .collect();
    let modules = modules::closure(&table, &wanted, &parse_builtin(&builtin_text))?;
    let module_root = format!("lib/modules/{}", board.kernel.release);
    for name in &modules {
        if let Some(rel) = table.path(name) {
            archive.add(
                &format!("{module_root}/{rel}"),
                file(&kernel.modules_dir.join(rel), 0o644)?,
            );
        }
    }
    archive.add(
        &format!("{module_root}/modules.dep"),
        Entry::File {
            mode: 0o644,
            data: table.filtered_text(&modules).into_bytes(),
        },
    );

    add_host_tools(&mut archive)?;
    Ok(Contents { archive, modules })
}

fn os_release(version: &str) -> String {
    format!(
        "NAME=\"Switchboard\"\nID=switchboard\nVERSION_ID=\"{version}\"\nPRETTY_NAME=\"Switchboard {version}\"\n\
         HOME_URL=\"https://example.invalid/switchboard\"\n"
    )
}

fn file(path: &Path, mode: u32) -> Result<Entry, ImageError> {
    let data = std::fs::read(path).map_err(|source| ImageError::Io {
        what: format!("reading {}", path.display()),
        source,
    })?;
    Ok(Entry::File { mode, data })
}

fn read_text(path: &Path) -> Result<String, ImageError> {
    std::fs::read_to_string(path).map_err(|source| ImageError::Io {
        what: format!("reading {}", path.display()),
        source,
    })
}

/// Copies the e2fsprogs tools with the shared objects `ldd` names for them.
fn add_host_tools(archive: &mut Archive) -> Result<(), ImageError> {
    let mut libraries = BTreeSet::new();
    for tool in HOST_TOOLS {
        let path = host::find(tool)?;
        archive.add(&format!("sbin/{tool}"), file(&path, 0o755)?);
        let output = host::run("ldd", &[path_str(&path)?], None, &[])?;
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            // "libx.so.1 => /lib/x86_64-linux-gnu/libx.so.1 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let target = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next().filter(|p| p.starts_with('/')),
            };
            if let Some(target) = target.filter(|t| t.starts_with('/')) {
                libraries.insert(target.to_string());
            }
        }
    }
    for library in libraries {
        // Read through symlinks; the initramfs gets a plain file at the path the loader asks for.
        archive.add(&library, file(Path::new(&library), 0o755)?);
    }
    if Path::new("/etc/mke2fs.conf").is_file() {
        archive.add("etc/mke2fs.conf", file(Path::new("/etc/mke2fs.conf"), 0o644)?);
    }
    Ok(())
}

/// Writes the archive uncompressed: the kernel then only copies it into its page cache. Under
/// emulation unpacking zstd cost the kernel 0.4-0.8 s of every boot, far more than reading
/// the extra megabytes from disk, and on hardware either way takes milliseconds. Returns its
/// size.
pub fn write(archive: &Archive, epoch: u32, out: &Path) -> Result<u64, ImageError> {
    let bytes = archive.to_newc(epoch);
    log::info!("initramfs: {} entries, {} KiB", archive.len(), bytes.len() / 1024);
    std::fs::write(out, &bytes).map_err(io_err("writing the cpio archive"))?;
    Ok(bytes.len() as u64)
}
