//! `sb-image --board FILE --init BIN --xmppd BIN --mmp BIN [--out DIR] [--cache DIR] [--version V]`
//!
//! Builds the initramfs, UKI and disk image for one board and prints where they are.
//! SOURCE_DATE_EPOCH (environment) pins every timestamp; the default is 1980-01-01.

use std::path::PathBuf;
use std::process::ExitCode;

use sb_image::{Binaries, BuildRequest};

fn main() -> ExitCode {
    let _ = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Info)
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sb-image: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut board, mut init, mut xmppd, mut mmp) = (None, None, None, None);
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
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let need = |v: Option<PathBuf>, name: &str| v.ok_or_else(|| format!("--{name} is required"));
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse::<u32>()
            .map_err(|_| format!("SOURCE_DATE_EPOCH {v:?} is not a number"))?,
        Err(_) => 315_532_800,
    };
    let request = BuildRequest {
        board_file: need(board, "board")?,
        binaries: Binaries {
            init: need(init, "init")?,
            xmppd: need(xmppd, "xmppd")?,
            mmp: need(mmp, "mmp")?,
        },
        out_dir: out,
        cache_dir: cache,
        epoch,
        version,
    };
    let artifacts = sb_image::build(&request).map_err(|e| e.to_string())?;
    print!("{}", artifacts.manifest());
    Ok(())
}
