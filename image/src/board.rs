//! The board file (board/*.toml): sb-appliance's schema, the one PID 1 reads, loaded with
//! its base layer merged in.

use std::path::Path;

use crate::ImageError;

pub use sb_appliance::board::{Board, DiskSpec, KernelSpec};

/// The board file at `path` with its layers merged, validated, and the merged text that goes
/// into the initramfs.
pub fn load(path: &Path) -> Result<(Board, String), ImageError> {
    let loaded = Board::load_layered(path).map_err(|e| ImageError::Board {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok((loaded.board, loaded.text))
}
