//! Kernel module selection for the initramfs: the board's list closed over modules.dep
//! (sb-appliance's closure, the one PID 1 loads by), built-in modules left out.

use std::collections::BTreeSet;

use crate::ImageError;

pub use sb_appliance::modules::{DepTable, parse_builtin};

/// Every module the wanted ones need, dependencies first; names built into the kernel are
/// skipped, names this kernel does not have at all are an error.
pub fn closure(table: &DepTable, wanted: &[String], builtin: &BTreeSet<String>) -> Result<Vec<String>, ImageError> {
    let mut loadable = Vec::new();
    for name in wanted {
        let name = name.replace('-', "_");
        if builtin.contains(&name) {
            log::info!("module {name} is built into the kernel; nothing to load");
        } else {
            loadable.push(name);
        }
    }
    let closure = table.closure(&loadable);
    if !closure.unknown.is_empty() {
        return Err(ImageError::Modules(format!(
            "not in this kernel's modules.dep: {}",
            closure.unknown.join(", ")
        )));
    }
    Ok(closure.order)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n\
kernel/drivers/virtio/virtio_ring.ko:\n";

    #[test]
    fn builtins_are_skipped_and_unknowns_fail() {
        let table = DepTable::parse(DEP);
        let none = BTreeSet::new();
        assert_eq!(
            closure(&table, &["virtio".into()], &none).unwrap(),
            ["virtio_ring", "virtio"]
        );
        let builtin = parse_builtin("kernel/drivers/virtio/virtio.ko\n");
        assert!(closure(&table, &["virtio".into()], &builtin).unwrap().is_empty());
        assert!(closure(&table, &["nope".into()], &none).is_err());
    }
}
