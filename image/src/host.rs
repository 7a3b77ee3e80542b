//! Host tools: finding them, naming the Debian package when one is missing, running them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::ImageError;

/// (tool, Debian package that provides it)
pub const TOOLS: &[(&str, &str)] = &[
    ("apt-get", "apt"),
    ("dpkg-deb", "dpkg"),
    ("depmod", "kmod"),
    ("objcopy", "binutils"),
    ("objdump", "binutils"),
    ("xz", "xz-utils"),
    ("sgdisk", "gdisk"),
    ("mformat", "mtools"),
    ("mmd", "mtools"),
    ("mcopy", "mtools"),
    ("mke2fs", "e2fsprogs"),
    ("e2fsck", "e2fsprogs"),
    ("ldd", "libc-bin"),
];

pub const EFI_STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

/// Finds `tool` on PATH or in the sbin directories (not always on a user's PATH).
pub fn find(tool: &str) -> Result<PathBuf, ImageError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(tool);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(missing(tool))
}

fn missing(tool: &str) -> ImageError {
    let package = TOOLS
        .iter()
        .find(|(t, _)| *t == tool)
        .map(|(_, p)| *p)
        .unwrap_or("(unknown)");
    ImageError::MissingTool {
        tool: tool.to_string(),
        package: package.to_string(),
    }
}

/// Checks every host tool and file up front, so a build fails in one second, not after minutes.
pub fn check_all() -> Result<(), ImageError> {
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(tool, _)| find(tool).is_err())
        .map(|(tool, package)| format!("{tool} (package {package})"))
        .collect();
    if !Path::new(EFI_STUB).is_file() {
        return Err(ImageError::MissingTool {
            tool: EFI_STUB.into(),
            package: "systemd-boot-efi".into(),
        });
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ImageError::MissingTools(missing.join(", ")))
    }
}

/// Runs a host tool to completion; a non-zero exit is an error carrying its stderr.
pub fn run(tool: &str, args: &[&str], cwd: Option<&Path>, env: &[(&str, &str)]) -> Result<Output, ImageError> {
    let program = find(tool)?;
    let mut command = Command::new(&program);
    command.args(args);
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    log::debug!("running {} {}", program.display(), args.join(" "));
    let output = command.output().map_err(|source| ImageError::Io {
        what: format!("starting {tool}"),
        source,
    })?;
    if !output.status.success() {
        return Err(ImageError::ToolFailed {
            tool: format!("{tool} {}", args.join(" ")),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output)
}
