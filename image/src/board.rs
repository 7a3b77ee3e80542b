//! The board file (board/*.toml): the data describing one hardware target.

use serde::Deserialize;
use std::path::Path;

use crate::ImageError;

#[derive(Debug, Clone, Deserialize)]
pub struct Board {
    pub board: BoardInfo,
    pub kernel: KernelSpec,
    pub console: ConsoleSpec,
    pub watchdog: WatchdogSpec,
    pub network: NetworkSpec,
    pub disk: DiskSpec,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BoardInfo {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KernelSpec {
    /// Debian binary package, e.g. `linux-image-6.1.0-50-amd64`.
    pub package: String,
    /// Exact Debian version of that package.
    pub version: String,
    /// Kernel release string (`uname -r`), the directory name under /lib/modules.
    pub release: String,
    pub modules: Vec<String>,
    pub cmdline: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConsoleSpec {
    pub device: String,
    pub baud: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WatchdogSpec {
    pub device: String,
    pub timeout_s: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InterfaceName {
    pub name: String,
    pub kernel: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NetworkSpec {
    pub interfaces: Vec<InterfaceName>,
    pub default: String,
    pub default_interface: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DiskSpec {
    pub size_mib: u64,
    pub esp_mib: u64,
    pub boot_slot_mib: u64,
    pub data_label: String,
    pub block_device: String,
}

impl Board {
    pub fn load(path: &Path) -> Result<(Board, String), ImageError> {
        let text = std::fs::read_to_string(path).map_err(|source| ImageError::Io {
            what: format!("reading board file {}", path.display()),
            source,
        })?;
        let board: Board = toml::from_str(&text).map_err(|e| ImageError::Board {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        board.validate().map_err(|reason| ImageError::Board {
            path: path.display().to_string(),
            reason,
        })?;
        Ok((board, text))
    }

    fn validate(&self) -> Result<(), String> {
        if self.board.name.is_empty() || !self.board.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err("board.name must be non-empty, letters, digits and '-'".into());
        }
        if self.kernel.modules.iter().any(|m| m.contains('/') || m.is_empty()) {
            return Err("kernel.modules entries are module names, not paths".into());
        }
        if !self
            .network
            .interfaces
            .iter()
            .any(|i| i.name == self.network.default_interface)
        {
            return Err(format!(
                "network.default_interface {:?} is not one of network.interfaces",
                self.network.default_interface
            ));
        }
        let fixed = 1 + self.disk.esp_mib + 2 * self.disk.boot_slot_mib + 1;
        if self.disk.size_mib < fixed + 16 {
            return Err(format!(
                "disk.size_mib {} leaves under 16 MiB for data",
                self.disk.size_mib
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shipped_boards_parse_and_validate() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../board");
        for name in ["qemu-q35", "appliance-x86"] {
            let (board, _) = Board::load(&dir.join(format!("{name}.toml"))).unwrap();
            assert_eq!(board.board.name, name);
            assert!(board.kernel.modules.iter().any(|m| m == "ext4"));
        }
    }

    #[test]
    fn default_interface_must_exist() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../board");
        let text = std::fs::read_to_string(dir.join("qemu-q35.toml")).unwrap();
        let mut board: Board = toml::from_str(&text).unwrap();
        board.network.default_interface = "z".into();
        assert!(board.validate().is_err());
    }
}
