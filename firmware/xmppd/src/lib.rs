//! The daemon's library half: the pieces of the composition root that tests drive
//! in-process (the binary, `main.rs`, wires them).

pub mod cluster;
pub mod reconciler;
