//! `sb-image --board FILE --init BIN --xmppd BIN --mmp BIN [--out DIR] [--cache DIR] [--version V]
//!           [--upgrade-key FILE]`
//!
//! Builds the initramfs, UKI, disk image and signed upgrade image for one board and prints
//! where they are. SOURCE_DATE_EPOCH (environment) pins every timestamp; the default is
//! 1980-01-01. The upgrade image is signed with `--upgrade-key`, else $SB_UPGRADE_KEY, else the
//! repository's DEVELOPMENT key (said on the output).
//!
//! `sb-image bundle --board FILE --vmlinuz K --initramfs I --version V --out FILE
//!           [--cmdline-append WORDS] [--upgrade-key FILE]`
//!
//! One more upgrade image from a built kernel and initramfs (the QEMU tests' bad images).

use std::path::PathBuf;
use std::process::ExitCode;

use sb_image::upgrade::SigningKey;
use sb_image::{Binaries, BuildRequest, BundleRequest};

fn main() -> ExitCode {
    let _ = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Info)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bundle") => run_bundle(args[1..].to_vec()),
        _ => run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sb-image: {message}");
            ExitCode::FAILURE
        }
    }
}

fn epoch() -> Result<u32, String> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse::<u32>()
            .map_err(|_| format!("SOURCE_DATE_EPOCH {v:?} is not a number")),
        Err(_) => Ok(315_532_800),
    }
}

fn signing_key(path: Option<PathBuf>) -> Result<SigningKey, String> {
    let key = SigningKey::choose(path.as_deref()).map_err(|e| e.to_string())?;
    if key.development {
        eprintln!(
            "sb-image: NOTE: the upgrade image is signed with the DEVELOPMENT key (image/keys/upgrade-development.pk8);\n\
             sb-image: a box built from this image accepts upgrades signed by anyone with this repository.\n\
             sb-image: Set SB_UPGRADE_KEY=<PKCS#8 ed25519 file> (or --upgrade-key) for a production build."
        );
    }
    Ok(key)
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut args = args.into_iter();
    let (mut board, mut init, mut xmppd, mut mmp, mut key) = (None, None, None, None, None);
    let mut out = PathBuf::from("target/appliance");
    let mut cache = PathBuf::from("target/appliance-cache");
    let mut version = env!("CARGO_PKG_VERSION").to_string();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--board" => board = Some(PathBuf::from(value()?)),
            "--init" => init = Some(PathBuf::from(value()?)),
            "--xmppd" => xmppd = Some(PathBuf::from(value()?)),
            "--mmp" => mmp = Some(PathBuf::from(value()?)),
            "--out" => out = PathBuf::from(value()?),
            "--cache" => cache = PathBuf::from(value()?),
            "--version" => version = value()?,
            "--upgrade-key" => key = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let need = |v: Option<PathBuf>, name: &str| v.ok_or_else(|| format!("--{name} is required"));
    let request = BuildRequest {
        board_file: need(board, "board")?,
        binaries: Binaries {
            init: need(init, "init")?,
            xmppd: need(xmppd, "xmppd")?,
            mmp: need(mmp, "mmp")?,
        },
        out_dir: out,
        cache_dir: cache,
        epoch: epoch()?,
        version,
        signing_key: signing_key(key)?,
    };
    let artifacts = sb_image::build(&request).map_err(|e| e.to_string())?;
    print!("{}", artifacts.manifest());
    Ok(())
}

fn run_bundle(args: Vec<String>) -> Result<(), String> {
    let mut args = args.into_iter();
    let (mut board, mut vmlinuz, mut initramfs, mut version, mut out, mut key) = (None, None, None, None, None, None);
    let mut append = String::new();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--board" => board = Some(PathBuf::from(value()?)),
            "--vmlinuz" => vmlinuz = Some(PathBuf::from(value()?)),
            "--initramfs" => initramfs = Some(PathBuf::from(value()?)),
            "--version" => version = Some(value()?),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--cmdline-append" => append = value()?,
            "--upgrade-key" => key = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let need = |v: Option<PathBuf>, name: &str| v.ok_or_else(|| format!("--{name} is required"));
    let request = BundleRequest {
        board_file: need(board, "board")?,
        vmlinuz: need(vmlinuz, "vmlinuz")?,
        initramfs: need(initramfs, "initramfs")?,
        version: version.ok_or("--version is required")?,
        cmdline_append: append,
        out: need(out, "out")?,
        epoch: epoch()?,
        signing_key: signing_key(key)?,
    };
    let manifest = sb_image::build_bundle(&request).map_err(|e| e.to_string())?;
    println!("upgrade={}\nversion={}", request.out.display(), manifest.version);
    Ok(())
}
