//! The parts of the board file (/etc/switchboard/board.toml) that PID 1 needs.

use serde::Deserialize;

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
}

#[derive(Debug, Clone, Deserialize)]
pub struct KernelSpec {
    pub release: String,
    pub modules: Vec<String>,
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
    pub data_label: String,
}

impl Board {
    /// Used when the board file is missing or broken: console, DHCP on eth0, no modules.
    pub fn fallback() -> Board {
        Board {
            board: BoardInfo { name: "unknown".into() },
            kernel: KernelSpec {
                release: String::new(),
                modules: Vec::new(),
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
                data_label: "data".into(),
            },
        }
    }

    pub fn parse(text: &str) -> Result<Board, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn load(path: &str) -> Result<Board, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        Board::parse(&text).map_err(|e| format!("{path}: {e}"))
    }

    /// Kernel interface name for a board name (`a` → `eth0`); kernel names pass through.
    pub fn kernel_iface<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.network
            .interfaces
            .iter()
            .find(|i| i.name == name || i.kernel == name)
            .map(|i| i.kernel.as_str())
    }

    pub fn board_iface<'a>(&'a self, kernel: &'a str) -> &'a str {
        self.network
            .interfaces
            .iter()
            .find(|i| i.kernel == kernel)
            .map(|i| i.name.as_str())
            .unwrap_or(kernel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_boards_parse_and_map_interface_names() {
        for name in ["qemu-q35", "appliance-x86"] {
            let path = format!("{}/../../board/{name}.toml", env!("CARGO_MANIFEST_DIR"));
            let board = Board::load(&path).unwrap();
            assert_eq!(board.board.name, name);
            assert_eq!(board.kernel_iface("a"), Some("eth0"));
            assert_eq!(board.kernel_iface("eth0"), Some("eth0"));
            assert_eq!(board.kernel_iface("zz"), None);
            assert_eq!(board.board_iface("eth0"), "a");
        }
    }
}
