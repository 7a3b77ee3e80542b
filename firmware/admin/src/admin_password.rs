//! Where the administrator's password hash lives, for every front end that checks it (console
//! login, web admin, API, later SSH): `/data/appliance/admin` on the appliance, where PID 1's
//! console login reads it, and `admin-password` in the data folder on a host run. Hashing,
//! the file format and the atomic owner-only write are sb-appliance's, the one implementation
//! PID 1 shares.
//!
//! Each node keeps its own, as on CMS: the password guards this machine's console, which must
//! work while the node is cut off from its cluster (no quorum to change or read a replicated
//! one), and a leaked hash from one node then opens no other.

use crate::ApplianceHost;
use std::path::{Path, PathBuf};

/// The file's name in the data folder on a host run.
pub const HOST_FILE_NAME: &str = "admin-password";

/// The file the admin password hash lives in, for a daemon or `mmp` working on `data_dir`.
pub fn password_file(host: &ApplianceHost, data_dir: &Path) -> PathBuf {
    if host.on_appliance() {
        host.settings_dir.join("admin")
    } else {
        data_dir.join(HOST_FILE_NAME)
    }
}

/// Whether `password` is the admin password (user name `admin`). No password set means no
/// login: there is no default password.
pub fn verify(host: &ApplianceHost, data_dir: &Path, user: &str, password: &str) -> bool {
    // The hash is computed even for a wrong user name, so the answer takes as long either way.
    let ok = sb_appliance::password::file::verify(&password_file(host, data_dir), password);
    ok && user == "admin"
}

/// Whether a password was ever set.
pub fn is_set(host: &ApplianceHost, data_dir: &Path) -> bool {
    sb_appliance::password::file::exists(&password_file(host, data_dir))
}

impl crate::Admin {
    /// Whether `user`/`password` is the administrator's login on this node.
    pub fn check_admin_login(&self, user: &str, password: &str) -> bool {
        verify(self.appliance(), self.dir(), user, password)
    }

    /// The admin password file this node uses; the web admin watches it to forget cached logins.
    pub fn admin_password_file(&self) -> PathBuf {
        password_file(self.appliance(), self.dir())
    }
}
