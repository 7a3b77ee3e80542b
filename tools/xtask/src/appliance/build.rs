//! Building the appliance: static musl binaries, then the image tool (image/, crate sb-image).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{TaskResult, cargo, run_output, run_status, target_dir, workspace_root};

pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// What ships: no test hooks.
    Release,
    /// init built with the `test-hooks` feature, for the QEMU test tier only.
    TestHooks,
}

/// The image tool's `manifest` file: where the outputs are, and their sizes.
#[derive(Debug, Clone)]
pub struct Manifest {
    values: BTreeMap<String, String>,
}

impl Manifest {
    pub fn parse(text: &str) -> Manifest {
        let values = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Manifest { values }
    }

    pub fn get(&self, key: &str) -> TaskResult<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("the image manifest has no {key}"))
    }

    pub fn path(&self, key: &str) -> TaskResult<PathBuf> {
        self.get(key).map(PathBuf::from)
    }

    pub fn size(&self, key: &str) -> u64 {
        self.get(key).ok().and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

pub fn board_file(board: &str) -> TaskResult<PathBuf> {
    let path = workspace_root().join("board").join(format!("{board}.toml"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "no board file {} (boards: qemu-q35, appliance-x86)",
            path.display()
        ))
    }
}

fn musl_build(packages: &[&str], features: Option<&str>) -> TaskResult {
    let mut command = cargo();
    command
        .args(["build", "--release", "--target", MUSL_TARGET])
        // ring compiles C and assembly; musl-gcc (Debian musl-tools) builds it statically.
        .env("CC_x86_64_unknown_linux_musl", "musl-gcc");
    for package in packages {
        command.args(["-p", package]);
    }
    if let Some(features) = features {
        command.args(["--features", features]);
    }
    run_status(
        &mut command,
        &format!("cargo build --target {MUSL_TARGET} -p {}", packages.join(" -p ")),
    )
}

fn copy(from: &Path, to: &Path) -> TaskResult {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))
}

/// Last commit time: the image's SOURCE_DATE_EPOCH, so a rebuild of the same tree gives the
/// same bytes. 1980-01-01 (the FAT epoch) outside a git checkout.
fn source_date_epoch() -> String {
    if let Ok(value) = std::env::var("SOURCE_DATE_EPOCH") {
        return value;
    }
    Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "315532800".into())
}

fn version() -> String {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=10", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match commit {
        Some(c) if !c.is_empty() => format!("{}+g{c}", env!("CARGO_PKG_VERSION")),
        _ => env!("CARGO_PKG_VERSION").to_string(),
    }
}

pub fn output_root(variant: Variant) -> PathBuf {
    target_dir().join(match variant {
        Variant::Release => "appliance",
        Variant::TestHooks => "appliance-test",
    })
}

/// Builds everything the image holds, then the image; returns its manifest.
pub fn build_image(board: &str, variant: Variant) -> TaskResult<Manifest> {
    let board_path = board_file(board)?;
    let out_root = output_root(variant);
    let bin_dir = out_root.join("bin");
    std::fs::create_dir_all(&bin_dir).map_err(|e| format!("creating {}: {e}", bin_dir.display()))?;

    // Developer override: pack other daemon binaries (e.g. while xmppd does not build).
    let overrides = (std::env::var_os("SB_IMAGE_XMPPD"), std::env::var_os("SB_IMAGE_MMP"));
    if overrides.0.is_none() || overrides.1.is_none() {
        musl_build(&["xmppd", "mmp"], None)?;
    }
    let features = match variant {
        Variant::Release => None,
        Variant::TestHooks => Some("init/test-hooks"),
    };
    musl_build(&["init"], features)?;
    let built = target_dir().join(MUSL_TARGET).join("release");
    // Copied right away: the next build of init (other variant) overwrites the same path.
    copy(&built.join("init"), &bin_dir.join("init"))?;
    for (name, custom) in [("xmppd", overrides.0), ("mmp", overrides.1)] {
        match custom {
            Some(path) => {
                println!(
                    "image: using {} as {name} (SB_IMAGE_{})",
                    Path::new(&path).display(),
                    name.to_uppercase()
                );
                copy(Path::new(&path), &bin_dir.join(name))?
            }
            None => copy(&built.join(name), &bin_dir.join(name))?,
        }
    }

    run_image_tool(&board_path, &bin_dir, &out_root)
}

/// Runs the image tool over binaries already in `bin_dir`, writing under `out_root`.
pub fn run_image_tool(board_path: &Path, bin_dir: &Path, out_root: &Path) -> TaskResult<Manifest> {
    let mut command = cargo();
    command
        .args(["run", "--quiet", "-p", "sb-image", "--"])
        .arg("--board")
        .arg(board_path)
        .arg("--init")
        .arg(bin_dir.join("init"))
        .arg("--xmppd")
        .arg(bin_dir.join("xmppd"))
        .arg("--mmp")
        .arg(bin_dir.join("mmp"))
        .arg("--out")
        .arg(out_root)
        .arg("--cache")
        .arg(target_dir().join("appliance-cache"))
        .arg("--version")
        .arg(version())
        .env("SOURCE_DATE_EPOCH", source_date_epoch());
    let text = run_output(&mut command, "sb-image")?;
    Ok(Manifest::parse(&text))
}

/// True when two files hold the same bytes (read in chunks: disk images are large).
pub fn same_bytes(a: &Path, b: &Path) -> TaskResult<bool> {
    let open = |p: &Path| std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()));
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(|e| format!("{}: {e}", a.display()))?;
        let nb = read_full(&mut fb, &mut bb).map_err(|e| format!("{}: {e}", b.display()))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_lines_become_values() {
        let m = Manifest::parse("disk=/x/disk.img\nsize_disk=42\ncmdline=console=ttyS0 quiet\n");
        assert_eq!(m.get("disk").unwrap(), "/x/disk.img");
        assert_eq!(m.size("size_disk"), 42);
        assert_eq!(m.get("cmdline").unwrap(), "console=ttyS0 quiet");
        assert!(m.get("nope").is_err());
        assert_eq!(m.size("nope"), 0);
    }
}
