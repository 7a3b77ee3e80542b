//! Host-side image builder: from a board file to the initramfs, the UKI and the flashable
//! GPT disk image, without root, byte-for-byte repeatable for the same inputs.

pub mod board;
pub mod cpio;
pub mod disk;
pub mod host;
pub mod initramfs;
pub mod kernel;
pub mod modules;
pub mod uki;
pub mod upgrade;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

pub use board::Board;
pub use initramfs::Binaries;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("board file {path}: {reason}")]
    Board { path: String, reason: String },
    #[error("host tool `{tool}` not found: install the Debian package `{package}` (apt-get install {package})")]
    MissingTool { tool: String, package: String },
    #[error("host tools missing: {0}; install those Debian packages")]
    MissingTools(String),
    #[error("`{tool}` failed ({status}): {stderr}")]
    ToolFailed {
        tool: String,
        status: String,
        stderr: String,
    },
    #[error("kernel package {package}: {reason}")]
    KernelPackage { package: String, reason: String },
    #[error("kernel modules: {0}")]
    Modules(String),
    #[error("{0}")]
    Other(String),
}

pub(crate) fn io_err(what: &'static str) -> impl FnOnce(std::io::Error) -> ImageError {
    move |source| ImageError::Io {
        what: what.to_string(),
        source,
    }
}

/// A UUID that depends only on the board name and a role, so rebuilding gives the same
/// partition table and filesystem ids. Not secret; FNV-1a is enough to spread the bits.
pub fn stable_uuid(board: &str, role: &str) -> String {
    let hash = |seed: u64| {
        let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
        for b in board.bytes().chain([0]).chain(role.bytes()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hash(1).to_be_bytes());
    bytes[8..].copy_from_slice(&hash(2).to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4 layout (random-looking), RFC 4122 variant
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

pub struct BuildRequest {
    pub board_file: PathBuf,
    pub binaries: Binaries,
    pub out_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// SOURCE_DATE_EPOCH: every timestamp in every output.
    pub epoch: u32,
    pub version: String,
    /// Signs `upgrade.sbu`; its public half goes into the initramfs.
    pub signing_key: upgrade::SigningKey,
}

#[derive(Debug)]
pub struct Artifacts {
    pub vmlinuz: PathBuf,
    pub vmlinux: PathBuf,
    pub initramfs: PathBuf,
    pub uki: PathBuf,
    pub disk: PathBuf,
    /// The signed upgrade image (`upgrade <file>` on a running box).
    pub upgrade: PathBuf,
    /// `development` or `production`.
    pub upgrade_key: &'static str,
    pub cmdline: String,
    pub modules: Vec<String>,
}

impl Artifacts {
    /// `key=value` lines, read by `cargo xtask qemu` and the QEMU tests.
    pub fn manifest(&self) -> String {
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        format!(
            "vmlinuz={}\nvmlinux={}\ninitramfs={}\nuki={}\ndisk={}\nupgrade={}\nupgrade_key={}\ncmdline={}\nmodules={}\n\
             size_vmlinuz={}\nsize_initramfs={}\nsize_uki={}\nsize_disk={}\n",
            self.vmlinuz.display(),
            self.vmlinux.display(),
            self.initramfs.display(),
            self.uki.display(),
            self.disk.display(),
            self.upgrade.display(),
            self.upgrade_key,
            self.cmdline,
            self.modules.join(","),
            size(&self.vmlinuz),
            size(&self.initramfs),
            size(&self.uki),
            size(&self.disk),
        )
    }
}

fn step<T>(what: &str, f: impl FnOnce() -> Result<T, ImageError>) -> Result<T, ImageError> {
    let started = Instant::now();
    log::info!("{what}...");
    let value = f()?;
    log::info!("{what}: done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(value)
}

pub fn build(request: &BuildRequest) -> Result<Artifacts, ImageError> {
    host::check_all()?;
    let (board, board_text) = board::load(&request.board_file)?;
    let out = request.out_dir.join(&board.board.name);
    let work = out.join("work");
    std::fs::create_dir_all(&work).map_err(io_err("creating the output directory"))?;
    let kernel = step("kernel", || kernel::prepare(&board.kernel, &request.cache_dir))?;

    let mut contents = step("initramfs contents", || {
        initramfs::assemble(&board, &board_text, &kernel, &request.binaries, &request.version)
    })?;
    // The key that checks the next upgrade travels inside this (signed) image.
    contents.archive.add(
        sb_upgrade::PUBLIC_KEY_FILE,
        cpio::Entry::File {
            mode: 0o644,
            data: format!("{}\n", request.signing_key.public_key_hex()?).into_bytes(),
        },
    );
    let initramfs = out.join("initramfs.cpio");
    step("initramfs", || {
        initramfs::write(&contents.archive, request.epoch, &initramfs)
    })?;

    let vmlinuz = out.join("vmlinuz");
    let vmlinux = out.join("vmlinux");
    copy_file(&kernel.vmlinuz, &vmlinuz)?;
    copy_file(&kernel.vmlinux, &vmlinux)?;

    let uki = out.join("switchboard.efi");
    step("UKI", || {
        build_uki(
            &work,
            &request.version,
            &board.kernel.cmdline,
            &kernel.vmlinuz,
            &initramfs,
            &uki,
            request.epoch,
        )
    })?;
    set_mtime(&uki, request.epoch)?;

    // The data partition starts empty (init makes its directories on first boot): a seeded
    // file would carry the host's ctime, which no tool can pin, into the image.
    let seed = work.join("data-seed");
    if seed.exists() {
        std::fs::remove_dir_all(&seed).map_err(io_err("clearing the data seed"))?;
    }
    std::fs::create_dir_all(&seed).map_err(io_err("creating the data seed"))?;
    set_mtime(&seed, request.epoch)?;
    let disk = out.join("disk.img");
    step("disk image", || {
        disk::build(
            &board.disk,
            &disk::DiskInputs {
                board_name: &board.board.name,
                uki: &uki,
                data_seed: &seed,
                work: &work,
                epoch: request.epoch,
            },
            &disk,
        )
    })?;
    let upgrade = out.join("upgrade.sbu");
    step("upgrade image", || {
        upgrade::build(
            &upgrade::BundleInputs {
                board_name: &board.board.name,
                version: &request.version,
                uki: &uki,
                slot_mib: board.disk.boot_slot_mib,
                work: &work,
                epoch: request.epoch,
            },
            &request.signing_key,
            &upgrade,
        )
    })?;
    let artifacts = Artifacts {
        vmlinuz,
        vmlinux,
        initramfs,
        uki,
        disk,
        upgrade,
        upgrade_key: request.signing_key.label(),
        cmdline: board.kernel.cmdline.clone(),
        modules: contents.modules,
    };
    std::fs::write(out.join("manifest"), artifacts.manifest()).map_err(io_err("writing the manifest"))?;
    Ok(artifacts)
}

/// An upgrade image from an already built kernel and initramfs, with words appended to the
/// board's command line: the QEMU tests' images that panic or never get ready.
pub struct BundleRequest {
    pub board_file: PathBuf,
    pub vmlinuz: PathBuf,
    pub initramfs: PathBuf,
    pub version: String,
    pub cmdline_append: String,
    pub out: PathBuf,
    pub epoch: u32,
    pub signing_key: upgrade::SigningKey,
}

pub fn build_bundle(request: &BundleRequest) -> Result<sb_upgrade::bundle::Manifest, ImageError> {
    let (board, _) = board::load(&request.board_file)?;
    let work = tempfile_dir(&request.out)?;
    let cmdline = format!("{} {}", board.kernel.cmdline, request.cmdline_append);
    let uki = work.join("switchboard.efi");
    build_uki(
        &work,
        &request.version,
        cmdline.trim(),
        &request.vmlinuz,
        &request.initramfs,
        &uki,
        request.epoch,
    )?;
    let manifest = upgrade::build(
        &upgrade::BundleInputs {
            board_name: &board.board.name,
            version: &request.version,
            uki: &uki,
            slot_mib: board.disk.boot_slot_mib,
            work: &work,
            epoch: request.epoch,
        },
        &request.signing_key,
        &request.out,
    )?;
    std::fs::remove_dir_all(&work).map_err(io_err("removing the bundle's work folder"))?;
    Ok(manifest)
}

/// The UKI of `version` booting `linux` (a bzImage) and `initrd` with `cmdline`: its
/// os-release and command line are written into `work` first, as the sections objcopy adds.
fn build_uki(
    work: &Path,
    version: &str,
    cmdline: &str,
    linux: &Path,
    initrd: &Path,
    out: &Path,
    epoch: u32,
) -> Result<(), ImageError> {
    let osrel = work.join("os-release");
    std::fs::write(
        &osrel,
        format!("NAME=\"Switchboard\"\nID=switchboard\nVERSION_ID=\"{version}\"\n"),
    )
    .map_err(io_err("writing os-release"))?;
    let cmdline_file = work.join("cmdline");
    std::fs::write(&cmdline_file, cmdline).map_err(io_err("writing the command line"))?;
    uki::build(
        &uki::UkiParts {
            osrel: &osrel,
            cmdline: &cmdline_file,
            linux,
            initrd,
        },
        out,
        epoch,
    )
}

/// A scratch folder next to `out`.
fn tempfile_dir(out: &Path) -> Result<PathBuf, ImageError> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = out.with_file_name(format!(".{name}.work"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io_err("creating the bundle's work folder"))?;
    Ok(dir)
}

fn copy_file(from: &Path, to: &Path) -> Result<(), ImageError> {
    std::fs::copy(from, to).map(|_| ()).map_err(|source| ImageError::Io {
        what: format!("copying {} to {}", from.display(), to.display()),
        source,
    })
}

fn set_mtime(path: &Path, epoch: u32) -> Result<(), ImageError> {
    let time = UNIX_EPOCH + Duration::from_secs(epoch as u64);
    let file = std::fs::File::open(path).map_err(io_err("opening a file to pin its mtime"))?;
    file.set_times(std::fs::FileTimes::new().set_modified(time).set_accessed(time))
        .map_err(io_err("pinning an mtime"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_uuids_are_stable_distinct_and_well_formed() {
        let a = stable_uuid("qemu-q35", "data");
        assert_eq!(a, stable_uuid("qemu-q35", "data"));
        assert_ne!(a, stable_uuid("qemu-q35", "ESP"));
        assert_ne!(a, stable_uuid("appliance-x86", "data"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}
