//! init's logger: console (stderr) for what an operator must see, plus a bounded log file
//! in /run that the recovery menu shows. No allocation per line beyond the formatter's.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

pub const LOG_FILE: &str = "/run/switchboard/log";
const LOG_FILE_OLD: &str = "/run/switchboard/log.1";
const LOG_FILE_MAX: u64 = 512 * 1024;

static QUIET_CONSOLE: AtomicBool = AtomicBool::new(false);

struct Logger {
    tag: &'static str,
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line: heapless::String<512> = heapless::String::new();
        let uptime = uptime_s();
        let _ = std::fmt::write(
            &mut line,
            format_args!("[{uptime:9.3}] {}: {} {}\n", self.tag, record.level(), record.args()),
        );
        if record.level() <= log::Level::Warn || !QUIET_CONSOLE.load(Ordering::Relaxed) {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        append_to_file(line.as_bytes());
    }

    fn flush(&self) {}
}

/// After boot, routine lines stay out of the interactive console.
pub fn set_quiet_console(quiet: bool) {
    QUIET_CONSOLE.store(quiet, Ordering::Relaxed);
}

pub fn init(tag: &'static str) {
    let logger: &'static Logger = Box::leak(Box::new(Logger { tag }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

pub fn append_to_file(bytes: &[u8]) {
    if std::fs::metadata(LOG_FILE)
        .map(|m| m.len() > LOG_FILE_MAX)
        .unwrap_or(false)
    {
        let _ = std::fs::rename(LOG_FILE, LOG_FILE_OLD);
    }
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(LOG_FILE) {
        let _ = file.write_all(bytes);
    }
}

/// Seconds since boot (kernel start), as /proc/uptime counts them.
pub fn uptime_s() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// The last `count` lines of the log (both files), for the recovery menu.
pub fn tail(count: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for file in [LOG_FILE_OLD, LOG_FILE] {
        if let Ok(text) = std::fs::read_to_string(file) {
            lines.extend(text.lines().map(String::from));
        }
    }
    let skip = lines.len().saturating_sub(count);
    lines.split_off(skip)
}
