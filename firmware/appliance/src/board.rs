//! The board file: the data describing one hardware target. The image tool reads
//! board/<name>.toml (which extends board/base.toml), merges the layers and writes the
//! result into the initramfs as /etc/switchboard/board.toml, a single self-contained file
//! that PID 1 and the admin commands read.

use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

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
    /// Loaded only when the box booted through UEFI (efivarfs for the A/B boot slots): on a
    /// direct kernel boot their init fails anyway, after the whole cost of loading them.
    #[serde(default)]
    pub uefi_modules: Vec<String>,
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

/// A board file with its layers merged: the typed board and the merged TOML text (what the
/// image tool writes into the initramfs).
#[derive(Debug, Clone)]
pub struct LoadedBoard {
    pub board: Board,
    pub text: String,
}

/// Layers a board file may stack (base → board); more means a loop.
const MAX_LAYERS: usize = 4;

impl Board {
    /// A board file with every layer it `extends` merged under it (tables merge key by key,
    /// the board's own values win), validated.
    pub fn load_layered(path: &Path) -> Result<LoadedBoard, BoardError> {
        let shown = path.display().to_string();
        let invalid = |reason: String| BoardError::Invalid {
            path: shown.clone(),
            reason,
        };
        let mut merged = read_table(path)?;
        let mut from: PathBuf = path.to_path_buf();
        for _ in 0..MAX_LAYERS {
            let Some(parent) = merged.remove("extends") else {
                let text = toml::to_string(&merged).map_err(|e| invalid(e.to_string()))?;
                let board = Board::parse(&text).map_err(&invalid)?;
                board.validate().map_err(&invalid)?;
                return Ok(LoadedBoard { board, text });
            };
            let Some(name) = parent.as_str() else {
                return Err(invalid("`extends` names a file, e.g. \"base.toml\"".into()));
            };
            let dir = from.parent().unwrap_or(Path::new("."));
            from = dir.join(name);
            let mut base = read_table(&from)?;
            merge(&mut base, merged);
            merged = base;
        }
        Err(invalid(format!("more than {MAX_LAYERS} layers of `extends`")))
    }

    /// One resolved board file (no layers), as PID 1 and the admin commands read it.
    pub fn load(path: &Path) -> Result<Board, BoardError> {
        let text = std::fs::read_to_string(path).map_err(|source| BoardError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Board::parse(&text).map_err(|reason| BoardError::Invalid {
            path: path.display().to_string(),
            reason,
        })
    }

    pub fn parse(text: &str) -> Result<Board, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Used by PID 1 when the board file is missing or broken: console, DHCP on eth0, no
    /// modules.
    pub fn fallback() -> Board {
        Board {
            board: BoardInfo {
                name: "unknown".into(),
                description: String::new(),
            },
            kernel: KernelSpec {
                package: String::new(),
                version: String::new(),
                release: String::new(),
                modules: Vec::new(),
                uefi_modules: Vec::new(),
                cmdline: String::new(),
            },
            console: ConsoleSpec {
                device: "ttyS0".into(),
                baud: 115200,
            },
            watchdog: WatchdogSpec {
                device: "/dev/watchdog".into(),
                timeout_s: 30,
            },
            network: NetworkSpec {
                interfaces: vec![InterfaceName {
                    name: "a".into(),
                    kernel: "eth0".into(),
                }],
                default: "dhcp4".into(),
                default_interface: "a".into(),
            },
            disk: DiskSpec {
                size_mib: 0,
                esp_mib: 0,
                boot_slot_mib: 0,
                data_label: "data".into(),
                block_device: String::new(),
            },
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.board.name.is_empty() || !self.board.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err("board.name must be non-empty, letters, digits and '-'".into());
        }
        if self
            .kernel
            .modules
            .iter()
            .chain(&self.kernel.uefi_modules)
            .any(|m| m.contains('/') || m.is_empty())
        {
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

    /// Kernel interface name for a board name (`a` → `eth0`); kernel names pass through.
    pub fn kernel_iface<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.network
            .interfaces
            .iter()
            .find(|i| i.name == name || i.kernel == name)
            .map(|i| i.kernel.as_str())
    }

    /// Board interface name for a kernel name (`eth0` → `a`); unknown names pass through.
    pub fn board_iface<'a>(&'a self, kernel: &'a str) -> &'a str {
        self.network
            .interfaces
            .iter()
            .find(|i| i.kernel == kernel)
            .map(|i| i.name.as_str())
            .unwrap_or(kernel)
    }
}

fn read_table(path: &Path) -> Result<toml::Table, BoardError> {
    let text = std::fs::read_to_string(path).map_err(|source| BoardError::Io {
        path: path.display().to_string(),
        source,
    })?;
    text.parse::<toml::Table>().map_err(|e| BoardError::Invalid {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// `over` on top of `base`: tables merge key by key, anything else (arrays too) replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(below)), toml::Value::Table(above)) => merge(below, above),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boards_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../board")
    }

    #[test]
    fn the_shipped_boards_load_over_the_base_layer_and_map_interface_names() {
        let base = read_table(&boards_dir().join("base.toml")).unwrap();
        let pinned = base["kernel"]["release"].as_str().unwrap().to_owned();
        for name in ["qemu-q35", "appliance-x86"] {
            let loaded = Board::load_layered(&boards_dir().join(format!("{name}.toml"))).unwrap();
            let board = &loaded.board;
            assert_eq!(board.board.name, name);
            assert_eq!(
                board.kernel.release, pinned,
                "{name} takes the kernel pin from base.toml"
            );
            assert!(board.kernel.modules.iter().any(|m| m == "ext4"));
            // efivarfs fails to initialise without UEFI, after costing a whole module load.
            assert_eq!(board.kernel.uefi_modules, ["efivarfs"], "{name}");
            assert!(!board.kernel.modules.iter().any(|m| m == "efivarfs"), "{name}");
            assert_eq!(board.kernel_iface("a"), Some("eth0"));
            assert_eq!(board.kernel_iface("eth0"), Some("eth0"));
            assert_eq!(board.kernel_iface("zz"), None);
            assert_eq!(board.board_iface("eth0"), "a");
            // The merged text stands alone: what init reads in the initramfs.
            assert!(!loaded.text.contains("extends"));
            assert_eq!(Board::parse(&loaded.text).unwrap().kernel.release, pinned);
        }
    }

    #[test]
    fn a_board_value_wins_over_the_base_and_tables_merge() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::read_to_string(boards_dir().join("base.toml")).unwrap();
        std::fs::write(dir.path().join("base.toml"), base).unwrap();
        let own =
            std::fs::read_to_string(boards_dir().join("qemu-q35.toml")).unwrap() + "\n[watchdog]\ntimeout_s = 12\n";
        std::fs::write(dir.path().join("b.toml"), own).unwrap();
        let board = Board::load_layered(&dir.path().join("b.toml")).unwrap().board;
        assert_eq!(board.watchdog.timeout_s, 12);
        assert_eq!(
            board.watchdog.device, "/dev/watchdog",
            "the base fills what the board leaves out"
        );
    }

    #[test]
    fn layer_loops_and_bad_boards_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), "extends = \"b.toml\"\n").unwrap();
        std::fs::write(dir.path().join("b.toml"), "extends = \"a.toml\"\n").unwrap();
        assert!(Board::load_layered(&dir.path().join("a.toml")).is_err());
        assert!(Board::load_layered(&dir.path().join("missing.toml")).is_err());

        let mut board = Board::load_layered(&boards_dir().join("qemu-q35.toml")).unwrap().board;
        board.network.default_interface = "z".into();
        assert!(board.validate().is_err());
    }
}
