//! The hardware watchdog: open, read back the timeout, pet at a third of it, magic close
//! only on an orderly shutdown.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::Duration;

// linux/watchdog.h: WATCHDOG_IOCTL_BASE 'W', every argument one int.
nix::ioctl_read!(wdioc_getbootstatus, b'W', 2, libc::c_int);
nix::ioctl_read!(wdioc_keepalive, b'W', 5, libc::c_int);
nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, libc::c_int);
nix::ioctl_read!(wdioc_gettimeout, b'W', 7, libc::c_int);
pub const WDIOF_CARDRESET: u32 = 0x0020;

pub struct Watchdog {
    file: File,
    pub timeout: Duration,
    pub boot_status: u32,
    pub device: String,
}

impl Watchdog {
    /// Opens the device (which arms it) and asks for `timeout_s`.
    pub fn open(device: &str, timeout_s: u32) -> Result<Watchdog, String> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(device)
            .map_err(|e| format!("{device}: {e}"))?;
        let fd = file.as_raw_fd();
        let mut boot_status: libc::c_int = 0;
        // SAFETY (all three): the driver reads or writes one int through the pointer, which
        // outlives the call; fd is the open watchdog device.
        if unsafe { wdioc_getbootstatus(fd, &mut boot_status) }.is_err() {
            boot_status = 0;
        }
        let mut wanted = timeout_s as libc::c_int;
        if unsafe { wdioc_settimeout(fd, &mut wanted) }.is_err() {
            log::warn!("watchdog: the driver refused a {timeout_s} s timeout; keeping its own");
        }
        let mut got: libc::c_int = 0;
        let timeout_s = match unsafe { wdioc_gettimeout(fd, &mut got) } {
            Ok(_) if got > 0 => got as u64,
            _ => timeout_s as u64,
        };
        let watchdog = Watchdog {
            file,
            timeout: Duration::from_secs(timeout_s),
            boot_status: boot_status as u32,
            device: device.to_string(),
        };
        watchdog.pet();
        Ok(watchdog)
    }

    pub fn pet_interval(&self) -> Duration {
        (self.timeout / 3).max(Duration::from_millis(500))
    }

    pub fn pet(&self) {
        let mut dummy: libc::c_int = 0;
        // SAFETY: WDIOC_KEEPALIVE ignores its argument; the pointer is valid anyway.
        let _ = unsafe { wdioc_keepalive(self.file.as_raw_fd(), &mut dummy) };
    }

    /// Orderly shutdown only: 'V' tells a nowayout-less driver to disarm on close.
    pub fn magic_close(mut self) {
        let _ = self.file.write_all(b"V");
        drop(self);
    }
}

#[cfg(test)]
mod tests {
    /// The request numbers nix builds are linux/watchdog.h's.
    #[test]
    fn request_codes_match_the_kernel_header() {
        let int = std::mem::size_of::<libc::c_int>();
        assert_eq!(nix::request_code_read!(b'W', 2, int) as u32, 0x8004_5702);
        assert_eq!(nix::request_code_read!(b'W', 5, int) as u32, 0x8004_5705);
        assert_eq!(nix::request_code_readwrite!(b'W', 6, int) as u32, 0xc004_5706);
        assert_eq!(nix::request_code_read!(b'W', 7, int) as u32, 0x8004_5707);
    }
}
