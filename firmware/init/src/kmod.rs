//! Kernel modules: the board's list ordered over modules.dep (sb-appliance) and loaded with
//! finit_module.

use nix::errno::Errno;
use nix::kmod::{ModuleInitFlags, finit_module};

use sb_appliance::modules::DepTable;

/// Loads one module file. EEXIST (already loaded or built in) counts as success.
pub fn load(path: &str) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    match finit_module(&file, c"", ModuleInitFlags::empty()) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(format!("{path}: {e}")),
    }
}

/// Loads the board's modules from /lib/modules/<release>, dependencies first, calling
/// `after_each` after every one; returns how many loaded.
pub fn load_board_modules(release: &str, wanted: &[String], mut after_each: impl FnMut()) -> usize {
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
            after_each();
        }
    }
    loaded
}
