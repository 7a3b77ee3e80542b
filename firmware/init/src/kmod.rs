//! Kernel modules: the board's list ordered over modules.dep (sb-appliance) and loaded with
//! finit_module.

use std::os::fd::AsRawFd;

use sb_appliance::modules::DepTable;

/// Loads one module file. EEXIST (already loaded or built in) counts as success.
pub fn load(path: &str) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let params = c"";
    // SAFETY: finit_module reads the open fd and a NUL-terminated parameter string.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EEXIST) {
        Ok(())
    } else {
        Err(format!("{path}: {err}"))
    }
}

/// Loads the board's modules from /lib/modules/<release>; returns how many loaded.
pub fn load_board_modules(release: &str, wanted: &[String]) -> usize {
    let root = format!("/lib/modules/{release}");
    let dep = match std::fs::read_to_string(format!("{root}/modules.dep")) {
        Ok(text) => text,
        Err(e) => {
            log::error!("no modules.dep in {root}: {e}");
            return 0;
        }
    };
    let table = DepTable::parse(&dep);
    let closure = table.closure(wanted);
    for name in closure.unknown {
        log::info!("module {name}: not in modules.dep (built in?)");
    }
    let mut loaded = 0;
    for name in &closure.order {
        if let Some(path) = table.path(name) {
            match load(&format!("{root}/{path}")) {
                Ok(()) => loaded += 1,
                Err(e) => log::warn!("module {name}: {e}"),
            }
        }
    }
    loaded
}
