//! The kernel: fetched as a Debian package, unpacked, depmod'ed, vmlinux extracted.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::board::KernelSpec;
use crate::{ImageError, host, io_err};

pub struct Kernel {
    /// The unpacked package root (holds boot/ and lib/modules/).
    pub root: PathBuf,
    /// bzImage with the EFI stub (for the UKI).
    pub vmlinuz: PathBuf,
    /// Uncompressed ELF with the PVH note (fast QEMU boots with -kernel).
    pub vmlinux: PathBuf,
    pub modules_dir: PathBuf,
}

/// Fetches and prepares the kernel in `cache`; an existing complete tree is reused.
pub fn prepare(spec: &KernelSpec, cache: &Path) -> Result<Kernel, ImageError> {
    std::fs::create_dir_all(cache).map_err(io_err("creating the cache directory"))?;
    let deb = cache.join(format!(
        "{}_{}_amd64.deb",
        spec.package,
        spec.version.replace(':', "%3a")
    ));
    let root = cache.join(format!("{}_{}", spec.package, spec.version));
    let kernel = Kernel {
        vmlinuz: root.join(format!("boot/vmlinuz-{}", spec.release)),
        vmlinux: root.join("vmlinux"),
        modules_dir: root.join(format!("lib/modules/{}", spec.release)),
        root: root.clone(),
    };
    let complete = root.join(".complete");
    if complete.is_file() {
        return Ok(kernel);
    }
    if !deb.is_file() {
        let started = Instant::now();
        log::info!(
            "fetching {}={} with apt-get download (about 70 MB)...",
            spec.package,
            spec.version
        );
        let wanted = format!("{}={}", spec.package, spec.version);
        let mut fetched = host::run("apt-get", &["download", &wanted], Some(cache), &[]);
        if fetched.is_err() {
            // A fresh machine may have no package lists yet; refresh once (works as root).
            log::info!("apt-get download failed; running apt-get update once and retrying...");
            if host::run("apt-get", &["update", "-qq"], None, &[]).is_ok() {
                fetched = host::run("apt-get", &["download", &wanted], Some(cache), &[]);
            }
        }
        fetched.map_err(|e| match e {
            ImageError::ToolFailed { stderr, .. } => ImageError::KernelPackage {
                package: wanted.clone(),
                reason: format!(
                    "{stderr}\n(run `apt-get update`; `apt-cache madison linux-image-amd64` lists what the archive \
                     carries; pin one of those in the board file)"
                ),
            },
            other => other,
        })?;
        log::info!("fetched in {:.1} s", started.elapsed().as_secs_f64());
    }
    if root.exists() {
        std::fs::remove_dir_all(&root).map_err(io_err("clearing a half-unpacked kernel tree"))?;
    }
    log::info!("unpacking {}...", deb.display());
    host::run("dpkg-deb", &["-x", path_str(&deb)?, path_str(&root)?], None, &[])?;
    if !kernel.modules_dir.is_dir() {
        return Err(ImageError::KernelPackage {
            package: spec.package.clone(),
            reason: format!(
                "no {} in the package: is kernel.release right?",
                kernel.modules_dir.display()
            ),
        });
    }
    // The .deb ships no modules.dep (the postinst makes it); make it here.
    host::run("depmod", &["-b", path_str(&root)?, &spec.release], None, &[])?;
    log::info!("extracting vmlinux from the bzImage (for PVH boots)...");
    extract_vmlinux(&kernel.vmlinuz, &kernel.vmlinux)?;
    std::fs::write(&complete, b"").map_err(io_err("marking the kernel tree complete"))?;
    Ok(kernel)
}

pub fn path_str(path: &Path) -> Result<&str, ImageError> {
    path.to_str()
        .ok_or_else(|| ImageError::Other(format!("path is not UTF-8: {}", path.display())))
}

/// Where the compressed payload sits in a bzImage (boot protocol ≥ 2.08).
pub fn bzimage_payload(image: &[u8]) -> Result<(usize, usize), ImageError> {
    let bad = |why: &str| ImageError::Other(format!("not a bzImage: {why}"));
    if image.len() < 0x250 || &image[0x202..0x206] != b"HdrS" {
        return Err(bad("no HdrS signature"));
    }
    let version = u16::from_le_bytes([image[0x206], image[0x207]]);
    if version < 0x208 {
        return Err(bad("boot protocol older than 2.08 has no payload fields"));
    }
    let setup_sects = match image[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    let read_u32 = |at: usize| u32::from_le_bytes([image[at], image[at + 1], image[at + 2], image[at + 3]]) as usize;
    let start = (setup_sects + 1) * 512 + read_u32(0x248);
    let length = read_u32(0x24c);
    if start + length > image.len() {
        return Err(bad("payload runs past the end of the file"));
    }
    Ok((start, length))
}

fn extract_vmlinux(vmlinuz: &Path, out: &Path) -> Result<(), ImageError> {
    let image = std::fs::read(vmlinuz).map_err(io_err("reading the bzImage"))?;
    let (start, length) = bzimage_payload(&image)?;
    let payload = &image[start..start + length];
    if !payload.starts_with(b"\xfd7zXZ\0") {
        return Err(ImageError::Other(
            "the bzImage payload is not XZ (the Debian kernel's compression)".into(),
        ));
    }
    let packed = out.with_extension("xz");
    std::fs::write(&packed, payload).map_err(io_err("writing the kernel payload"))?;
    // --single-stream: the kernel appends the uncompressed size after the XZ stream.
    let output = host::run("xz", &["-dc", "--single-stream", path_str(&packed)?], None, &[])?;
    if !output.stdout.starts_with(b"\x7fELF") {
        return Err(ImageError::Other(
            "the decompressed kernel payload is not an ELF file".into(),
        ));
    }
    std::fs::write(out, &output.stdout).map_err(io_err("writing vmlinux"))?;
    std::fs::remove_file(&packed).map_err(io_err("removing the kernel payload"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_location_follows_the_setup_header() {
        let mut image = vec![0u8; 4096];
        image[0x1f1] = 3;
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        image[0x248..0x24c].copy_from_slice(&100u32.to_le_bytes());
        image[0x24c..0x250].copy_from_slice(&200u32.to_le_bytes());
        assert_eq!(bzimage_payload(&image).unwrap(), (4 * 512 + 100, 200));
        image[0x24c..0x250].copy_from_slice(&9000u32.to_le_bytes());
        assert!(bzimage_payload(&image).is_err());
        image[0x202] = b'x';
        assert!(bzimage_payload(&image).is_err());
    }
}
