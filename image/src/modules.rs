//! Kernel module selection: the board's list closed over modules.dep.

use std::collections::{BTreeMap, BTreeSet};

use crate::ImageError;

/// Module name as the kernel knows it: file stem with '-' folded to '_'.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// modules.dep parsed: module name → (relative path, dependency names).
#[derive(Debug, Default)]
pub struct DepTable {
    pub modules: BTreeMap<String, (String, Vec<String>)>,
}

impl DepTable {
    pub fn parse(text: &str) -> DepTable {
        let mut modules = BTreeMap::new();
        for line in text.lines() {
            let Some((path, deps)) = line.split_once(':') else {
                continue;
            };
            let path = path.trim();
            if path.is_empty() {
                continue;
            }
            let deps = deps.split_whitespace().map(module_name).collect();
            modules.insert(module_name(path), (path.to_string(), deps));
        }
        DepTable { modules }
    }

    /// Every module the wanted ones need, dependencies before dependents.
    /// Names in `builtin` are skipped (they are part of the kernel image).
    pub fn closure(&self, wanted: &[String], builtin: &BTreeSet<String>) -> Result<Vec<String>, ImageError> {
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        for name in wanted {
            let name = name.replace('-', "_");
            if builtin.contains(&name) {
                log::info!("module {name} is built into the kernel; nothing to load");
                continue;
            }
            self.visit(&name, &mut done, &mut BTreeSet::new(), &mut order)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        done: &mut BTreeSet<String>,
        in_progress: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) -> Result<(), ImageError> {
        if done.contains(name) {
            return Ok(());
        }
        if !in_progress.insert(name.to_string()) {
            return Err(ImageError::Modules(format!("dependency cycle through {name}")));
        }
        let (_, deps) = self
            .modules
            .get(name)
            .ok_or_else(|| ImageError::Modules(format!("module {name} is not in this kernel's modules.dep")))?;
        for dep in deps {
            self.visit(dep, done, in_progress, order)?;
        }
        in_progress.remove(name);
        done.insert(name.to_string());
        order.push(name.to_string());
        Ok(())
    }

    /// modules.dep text restricted to `names` (what goes into the initramfs).
    pub fn filtered_text(&self, names: &[String]) -> String {
        let mut lines: Vec<String> = names
            .iter()
            .filter_map(|n| self.modules.get(n))
            .map(|(path, deps)| {
                let dep_paths: Vec<&str> = deps
                    .iter()
                    .filter_map(|d| self.modules.get(d).map(|(p, _)| p.as_str()))
                    .collect();
                format!("{path}: {}", dep_paths.join(" ")).trim_end().to_string()
            })
            .collect();
        lines.sort();
        lines.join("\n") + "\n"
    }
}

pub fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines().filter(|l| !l.trim().is_empty()).map(module_name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/drivers/watchdog/i6300esb.ko: kernel/drivers/watchdog/watchdog.ko\n\
kernel/drivers/watchdog/watchdog.ko:\n\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n\
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
kernel/net/core/failover.ko:\n\
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n\
kernel/drivers/virtio/virtio_ring.ko:\n\
kernel/arch/x86/crypto/crc32c-intel.ko:\n";

    fn position(order: &[String], name: &str) -> usize {
        order.iter().position(|n| n == name).unwrap()
    }

    #[test]
    fn dependencies_come_first() {
        let table = DepTable::parse(DEP);
        let order = table
            .closure(&["i6300esb".into(), "virtio_net".into()], &BTreeSet::new())
            .unwrap();
        assert_eq!(order.len(), 7);
        assert!(position(&order, "watchdog") < position(&order, "i6300esb"));
        assert!(position(&order, "virtio_ring") < position(&order, "virtio"));
        assert!(position(&order, "virtio") < position(&order, "virtio_net"));
        assert!(position(&order, "failover") < position(&order, "net_failover"));
    }

    #[test]
    fn dashes_fold_and_builtins_are_skipped_and_unknowns_fail() {
        let table = DepTable::parse(DEP);
        let order = table.closure(&["crc32c-intel".into()], &BTreeSet::new()).unwrap();
        assert_eq!(order, ["crc32c_intel"]);
        let builtin = parse_builtin("kernel/drivers/virtio/virtio.ko\n");
        assert!(table.closure(&["virtio".into()], &builtin).unwrap().is_empty());
        assert!(table.closure(&["nope".into()], &BTreeSet::new()).is_err());
    }

    #[test]
    fn filtered_dep_keeps_only_chosen_modules() {
        let table = DepTable::parse(DEP);
        let text = table.filtered_text(&["watchdog".into(), "i6300esb".into()]);
        assert_eq!(
            text,
            "kernel/drivers/watchdog/i6300esb.ko: kernel/drivers/watchdog/watchdog.ko\nkernel/drivers/watchdog/watchdog.ko:\n"
        );
    }
}
