//! modules.dep and the closure of a board's module list over it: the image tool uses it to
//! choose what goes into the initramfs, PID 1 to load those modules dependencies first.

use std::collections::{BTreeMap, BTreeSet};

/// Module name as the kernel knows it: file stem with '-' folded to '_'.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// Names in modules.builtin (part of the kernel image, nothing to load).
pub fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines().filter(|l| !l.trim().is_empty()).map(module_name).collect()
}

/// One module in modules.dep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Path relative to /lib/modules/<release>.
    pub path: String,
    /// Names of the modules it needs.
    pub deps: Vec<String>,
}

/// modules.dep parsed: module name → its path and dependencies.
#[derive(Debug, Default)]
pub struct DepTable {
    pub modules: BTreeMap<String, Module>,
}

/// What [`DepTable::closure`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Closure {
    /// Every module needed, each once, dependencies before dependents.
    pub order: Vec<String>,
    /// Wanted names modules.dep does not know (built in, or missing from this kernel).
    pub unknown: Vec<String>,
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
            modules.insert(
                module_name(path),
                Module {
                    path: path.to_string(),
                    deps,
                },
            );
        }
        DepTable { modules }
    }

    pub fn path(&self, name: &str) -> Option<&str> {
        self.modules.get(name).map(|m| m.path.as_str())
    }

    /// Every module `wanted` needs, dependencies first. Iterative with an explicit stack, so
    /// a corrupt table cannot overflow PID 1's stack; a dependency cycle (depmod never writes
    /// one) is broken rather than followed.
    pub fn closure(&self, wanted: &[String]) -> Closure {
        let mut closure = Closure::default();
        let mut done: BTreeSet<String> = BTreeSet::new();
        for root in wanted {
            let root = root.replace('-', "_");
            if !self.modules.contains_key(&root) {
                closure.unknown.push(root);
                continue;
            }
            let mut stack: Vec<(String, usize)> = vec![(root, 0)];
            let mut on_path: BTreeSet<String> = BTreeSet::new();
            while let Some((name, next_dep)) = stack.pop() {
                if done.contains(&name) {
                    continue;
                }
                if next_dep == 0 && !on_path.insert(name.clone()) {
                    continue;
                }
                let deps = self.modules.get(&name).map(|m| m.deps.as_slice()).unwrap_or(&[]);
                if let Some(dep) = deps.get(next_dep) {
                    let dep = dep.clone();
                    stack.push((name, next_dep + 1));
                    if !done.contains(&dep) && self.modules.contains_key(&dep) && !on_path.contains(&dep) {
                        stack.push((dep, 0));
                    }
                } else {
                    on_path.remove(&name);
                    done.insert(name.clone());
                    closure.order.push(name);
                }
            }
        }
        closure
    }

    /// modules.dep text restricted to `names` (what goes into the initramfs).
    pub fn filtered_text(&self, names: &[String]) -> String {
        let mut lines: Vec<String> = names
            .iter()
            .filter_map(|n| self.modules.get(n))
            .map(|module| {
                let dep_paths: Vec<&str> = module.deps.iter().filter_map(|d| self.path(d)).collect();
                format!("{}: {}", module.path, dep_paths.join(" "))
                    .trim_end()
                    .to_string()
            })
            .collect();
        lines.sort();
        lines.join("\n") + "\n"
    }
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
kernel/arch/x86/crypto/crc32c-intel.ko:\n\
kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko kernel/lib/crc16.ko\n\
kernel/fs/jbd2/jbd2.ko:\nkernel/fs/mbcache.ko:\nkernel/lib/crc16.ko:\n\
kernel/x/a.ko: kernel/x/b.ko\nkernel/x/b.ko: kernel/x/a.ko\n";

    fn before(order: &[String], a: &str, b: &str) -> bool {
        order.iter().position(|n| n == a).unwrap() < order.iter().position(|n| n == b).unwrap()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dependencies_come_first_and_once() {
        let table = DepTable::parse(DEP);
        let closure = table.closure(&names(&["virtio_net", "i6300esb", "ext4", "virtio"]));
        assert!(closure.unknown.is_empty());
        let order = &closure.order;
        assert_eq!(order.len(), 11);
        assert!(before(order, "watchdog", "i6300esb"));
        assert!(before(order, "virtio_ring", "virtio"));
        assert!(before(order, "virtio", "virtio_net"));
        assert!(before(order, "failover", "net_failover"));
        assert!(before(order, "jbd2", "ext4"));
        let unique: BTreeSet<&String> = order.iter().collect();
        assert_eq!(unique.len(), order.len());
    }

    #[test]
    fn dashes_fold_unknowns_are_reported_and_cycles_terminate() {
        let table = DepTable::parse(DEP);
        assert_eq!(table.closure(&names(&["crc32c-intel"])).order, ["crc32c_intel"]);
        let closure = table.closure(&names(&["nope", "a"]));
        assert_eq!(closure.unknown, ["nope"]);
        assert_eq!(closure.order.len(), 2);
        let builtin = parse_builtin("kernel/drivers/virtio/virtio.ko\n");
        assert!(builtin.contains("virtio"));
    }

    #[test]
    fn filtered_dep_keeps_only_chosen_modules() {
        let table = DepTable::parse(DEP);
        let text = table.filtered_text(&names(&["watchdog", "i6300esb"]));
        assert_eq!(
            text,
            "kernel/drivers/watchdog/i6300esb.ko: kernel/drivers/watchdog/watchdog.ko\nkernel/drivers/watchdog/watchdog.ko:\n"
        );
    }
}
