//! Where the appliance keeps what PID 1 and the admin commands share.

/// The resolved board file in the initramfs (base layer merged in by the image tool).
pub const BOARD_FILE: &str = "/etc/switchboard/board.toml";
/// The appliance's own settings on the data partition.
pub const SETTINGS_DIR: &str = "/data/appliance";
/// PID 1's runtime state: control socket, health file, readiness line.
pub const RUN_DIR: &str = "/run/switchboard";

/// Static addresses and DNS servers ([`crate::network`]).
pub const NETWORK: &str = "/data/appliance/network";
pub const HOSTNAME: &str = "/data/appliance/hostname";
/// The admin password hash ([`crate::password`]).
pub const ADMIN: &str = "/data/appliance/admin";
