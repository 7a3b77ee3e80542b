//! xmppd runs as its own user (`xmppd`, 100:100, created in the image's /etc/passwd) with one
//! capability, CAP_NET_BIND_SERVICE, to bind 5222/5223/5269 (issue 13: "on the appliance xmppd
//! runs as root"). Its data folder is owned by that user; init, still root, hands it over
//! before every start, since root-run tools (`mmp` on a stopped daemon, first-boot setup, a
//! recovery restore) may have created files in it meanwhile.
//!
//! The switch happens between fork and exec with raw `setgroups/setgid/setuid`, `prctl` and
//! `capset(2)`: nix has no capability API, and a capability crate would be a new dependency
//! for about twenty lines; raw syscalls are also what is async-signal-safe (no allocation)
//! in a `pre_exec` hook of a process that may have other threads.

use std::path::Path;

pub const XMPPD_UID: u32 = 100;
pub const XMPPD_GID: u32 = 100;

/// linux/capability.h
const CAP_NET_BIND_SERVICE: u32 = 10;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn check(result: libc::c_long) -> std::io::Result<()> {
    if result < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Becomes [`XMPPD_UID`]:[`XMPPD_GID`] with no supplementary groups, keeping exactly
/// CAP_NET_BIND_SERVICE in the ambient set, which survives the exec of an ordinary binary as
/// the new program's permitted and effective set. Everything else root had is gone, and
/// `no_new_privs` keeps it so across any later exec.
///
/// # Safety
/// Call only in a `pre_exec` hook (after fork, before exec): it changes the calling
/// process's credentials. Uses only async-signal-safe system calls.
pub unsafe fn become_xmppd() -> std::io::Result<()> {
    // SAFETY: plain system calls on this (forked) process with valid arguments; the structs
    // live on this stack frame for the duration of the call.
    unsafe {
        check(libc::setgroups(0, std::ptr::null()) as libc::c_long)?;
        check(libc::setgid(XMPPD_GID) as libc::c_long)?;
        // Keep the permitted set across the uid change, so there is a capability to keep.
        check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) as libc::c_long)?;
        check(libc::setuid(XMPPD_UID) as libc::c_long)?;
        let bit = 1u32 << CAP_NET_BIND_SERVICE;
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [
            CapData {
                effective: bit,
                permitted: bit,
                inheritable: bit,
            },
            CapData {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            },
        ];
        check(libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()))?;
        check(libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE,
            CAP_NET_BIND_SERVICE as libc::c_ulong,
            0,
            0,
        ) as libc::c_long)?;
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) as libc::c_long)?;
    }
    Ok(())
}

/// Gives `dir` and everything below it to the xmppd user and makes `dir` itself 0700
/// (xmppd makes the rest owner-only at its start). Symbolic links are changed, not followed;
/// the depth is bounded. Returns how many entries could not be changed.
pub fn hand_over_data_dir(dir: &Path) -> usize {
    use std::os::unix::fs::PermissionsExt;
    let failures = chown_tree(dir, 0);
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    failures
}

fn chown_tree(path: &Path, depth: usize) -> usize {
    use std::os::unix::fs::MetadataExt;
    let mut failures = 0;
    let meta = std::fs::symlink_metadata(path).ok();
    // Only what is not xmppd's already: an unconditional chown rewrites every inode, a journal
    // write per file at every boot.
    let owned = meta
        .as_ref()
        .is_some_and(|m| m.uid() == XMPPD_UID && m.gid() == XMPPD_GID);
    if !owned && let Err(e) = std::os::unix::fs::lchown(path, Some(XMPPD_UID), Some(XMPPD_GID)) {
        log::warn!("chown {}: {e}", path.display());
        failures += 1;
    }
    let is_dir = meta.is_some_and(|m| m.is_dir());
    if is_dir && depth < 16 {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            failures += chown_tree(&entry.path(), depth + 1);
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_data_dir_and_everything_in_it_go_to_the_xmppd_user() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: chown needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("store/blobs")).unwrap();
        std::fs::write(dir.path().join("store/db"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        assert_eq!(hand_over_data_dir(dir.path()), 0);
        for path in ["", "store", "store/blobs", "store/db"] {
            let meta = std::fs::metadata(dir.path().join(path)).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (XMPPD_UID, XMPPD_GID), "{path}");
        }
        // The link itself changed hands; what it points at did not.
        assert_eq!(std::fs::metadata("/etc/passwd").unwrap().uid(), 0);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn a_child_becomes_the_xmppd_user_with_only_the_bind_capability() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: changing users needs root");
            return;
        }
        use std::os::unix::process::CommandExt;
        let mut command = std::process::Command::new("/bin/cat");
        command.arg("/proc/self/status");
        // SAFETY: become_xmppd is made for pre_exec.
        unsafe { command.pre_exec(|| become_xmppd()) };
        let output = command.output().unwrap();
        assert!(output.status.success(), "{output:?}");
        let status = String::from_utf8_lossy(&output.stdout);
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .map(|l| l[name.len()..].split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        };
        assert_eq!(field("Uid:"), "100 100 100 100");
        assert_eq!(field("Gid:"), "100 100 100 100");
        // Bit 10, CAP_NET_BIND_SERVICE, and nothing else.
        assert_eq!(field("CapEff:"), "0000000000000400");
        assert_eq!(field("CapPrm:"), "0000000000000400");
        assert_eq!(field("CapAmb:"), "0000000000000400");
        assert_eq!(field("NoNewPrivs:"), "1");
    }
}
