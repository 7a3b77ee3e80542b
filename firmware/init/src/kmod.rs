//! Kernel modules: the board's list ordered over modules.dep and loaded with finit_module.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;

fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

/// modules.dep: name → (relative path, dependency names).
pub fn parse_dep(text: &str) -> BTreeMap<String, (String, Vec<String>)> {
    let mut table = BTreeMap::new();
    for line in text.lines() {
        if let Some((path, deps)) = line.split_once(':') {
            let path = path.trim();
            if !path.is_empty() {
                table.insert(
                    module_name(path),
                    (path.to_string(), deps.split_whitespace().map(module_name).collect()),
                );
            }
        }
    }
    table
}

/// Load order for `wanted`: every dependency before its dependents, each module once.
/// Names modules.dep does not know are returned in the second list (built in, or missing).
pub fn load_order(table: &BTreeMap<String, (String, Vec<String>)>, wanted: &[String]) -> (Vec<String>, Vec<String>) {
    let mut order: Vec<String> = Vec::new();
    let mut unknown = Vec::new();
    // Iterative DFS with an explicit stack so a corrupt table cannot overflow PID 1's stack.
    for root in wanted {
        let root = root.replace('-', "_");
        if !table.contains_key(&root) {
            unknown.push(root);
            continue;
        }
        let mut stack: Vec<(String, usize)> = vec![(root, 0)];
        let mut on_path: Vec<String> = Vec::new();
        while let Some((name, next_dep)) = stack.pop() {
            if order.contains(&name) {
                continue;
            }
            let deps = table.get(&name).map(|(_, d)| d.as_slice()).unwrap_or(&[]);
            if next_dep == 0 {
                if on_path.contains(&name) {
                    continue; // a cycle: break it rather than loop
                }
                on_path.push(name.clone());
            }
            if let Some(dep) = deps.get(next_dep) {
                stack.push((name, next_dep + 1));
                if !order.contains(dep) && table.contains_key(dep) && !on_path.contains(dep) {
                    stack.push((dep.clone(), 0));
                }
            } else {
                on_path.retain(|n| n != &name);
                order.push(name);
            }
        }
    }
    (order, unknown)
}

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
    let table = parse_dep(&dep);
    let (order, unknown) = load_order(&table, wanted);
    for name in unknown {
        log::info!("module {name}: not in modules.dep (built in?)");
    }
    let mut loaded = 0;
    for name in &order {
        if let Some((path, _)) = table.get(name) {
            match load(&format!("{root}/{path}")) {
                Ok(()) => loaded += 1,
                Err(e) => log::warn!("module {name}: {e}"),
            }
        }
    }
    loaded
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
kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko kernel/lib/crc16.ko\n\
kernel/fs/jbd2/jbd2.ko:\nkernel/fs/mbcache.ko:\nkernel/lib/crc16.ko:\n\
kernel/x/a.ko: kernel/x/b.ko\nkernel/x/b.ko: kernel/x/a.ko\n";

    fn before(order: &[String], a: &str, b: &str) -> bool {
        order.iter().position(|n| n == a).unwrap() < order.iter().position(|n| n == b).unwrap()
    }

    #[test]
    fn dependencies_load_first_and_once() {
        let table = parse_dep(DEP);
        let wanted: Vec<String> = ["virtio_net", "i6300esb", "ext4", "virtio"].map(String::from).to_vec();
        let (order, unknown) = load_order(&table, &wanted);
        assert!(unknown.is_empty());
        assert_eq!(order.len(), 11);
        assert!(before(&order, "watchdog", "i6300esb"));
        assert!(before(&order, "virtio_ring", "virtio"));
        assert!(before(&order, "virtio", "virtio_net"));
        assert!(before(&order, "failover", "net_failover"));
        assert!(before(&order, "jbd2", "ext4"));
        let mut deduped = order.clone();
        deduped.sort();
        deduped.dedup();
        assert_eq!(deduped.len(), order.len());
    }

    #[test]
    fn unknown_names_are_reported_and_cycles_terminate() {
        let table = parse_dep(DEP);
        let (order, unknown) = load_order(&table, &["nope".into(), "a".into()]);
        assert_eq!(unknown, ["nope"]);
        assert_eq!(order.len(), 2);
    }
}
