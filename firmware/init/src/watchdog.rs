//! The hardware watchdog: open, read back the timeout, pet at a third of it, magic close
//! only on an orderly shutdown.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::Duration;

// linux/watchdog.h
const WDIOC_GETBOOTSTATUS: libc::Ioctl = 0x8004_5702u32 as libc::Ioctl;
const WDIOC_KEEPALIVE: libc::Ioctl = 0x8004_5705u32 as libc::Ioctl;
const WDIOC_SETTIMEOUT: libc::Ioctl = 0xc004_5706u32 as libc::Ioctl;
const WDIOC_GETTIMEOUT: libc::Ioctl = 0x8004_5707u32 as libc::Ioctl;
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
        // SAFETY: each ioctl takes a pointer to one int, which outlives the call.
        unsafe {
            if libc::ioctl(fd, WDIOC_GETBOOTSTATUS, &mut boot_status) != 0 {
                boot_status = 0;
            }
            let mut wanted = timeout_s as libc::c_int;
            if libc::ioctl(fd, WDIOC_SETTIMEOUT, &mut wanted) != 0 {
                log::warn!("watchdog: the driver refused a {timeout_s} s timeout; keeping its own");
            }
        }
        let mut got: libc::c_int = 0;
        // SAFETY: as above.
        let rc = unsafe { libc::ioctl(fd, WDIOC_GETTIMEOUT, &mut got) };
        let timeout_s = if rc == 0 && got > 0 {
            got as u64
        } else {
            timeout_s as u64
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
        unsafe { libc::ioctl(self.file.as_raw_fd(), WDIOC_KEEPALIVE, &mut dummy) };
    }

    /// Orderly shutdown only: 'V' tells a nowayout-less driver to disarm on close.
    pub fn magic_close(mut self) {
        let _ = self.file.write_all(b"V");
        drop(self);
    }
}
