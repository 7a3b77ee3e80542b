//! The contract between PID 1 (firmware/init) and the rest of the appliance: the image tool
//! (image/) that writes what init reads, and the admin commands (sb-admin) that ask init for
//! things and read what it reports. Each piece was written twice before; now both sides
//! read and write it through this crate.
//!
//! - [`board`]: the board file (board/*.toml, layered over board/base.toml).
//! - [`modules`]: modules.dep and the closure of a board's module list.
//! - [`network`]: the stored network settings (`/data/appliance/network`).
//! - [`password`]: the admin password hash and its file.
//! - [`control`]: requests to PID 1 over its datagram socket.
//! - [`health`]: the keys of the health file PID 1 writes.
//! - [`files`]: the atomic, owner-only file write every one of them uses.
//!
//! std, serde, toml and ring only: init is a small static binary that links this.

pub mod board;
pub mod control;
pub mod files;
pub mod health;
pub mod modules;
pub mod network;
pub mod password;
pub mod paths;

pub use board::Board;
pub use control::Request;
