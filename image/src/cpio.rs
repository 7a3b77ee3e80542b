//! Deterministic newc cpio writer (the initramfs format the kernel unpacks).
//!
//! Entries are written sorted by path with fixed owner, mtime and inode numbers, so the
//! same inputs give the same bytes whatever the host's file metadata.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
    CharDev { mode: u32, major: u32, minor: u32 },
}

/// An archive being assembled: path (without leading '/') → entry.
#[derive(Debug, Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

impl Archive {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry, creating missing parent directories (mode 0755).
    pub fn add(&mut self, path: &str, entry: Entry) {
        let path = path.trim_start_matches('/').to_string();
        let mut parent = String::new();
        for component in path.split('/').collect::<Vec<_>>().iter().rev().skip(1).rev() {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(component);
            self.entries.entry(parent.clone()).or_insert(Entry::Dir { mode: 0o755 });
        }
        self.entries.insert(path, entry);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Serialises to newc bytes. `mtime` is stamped on every entry.
    pub fn to_newc(&self, mtime: u32) -> Vec<u8> {
        let mut out = Vec::new();
        // BTreeMap order puts "a" before "a/b", so parents always precede children.
        for (index, (path, entry)) in self.entries.iter().enumerate() {
            let ino = index as u32 + 1;
            let (mode, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match entry {
                Entry::Dir { mode } => (S_IFDIR | mode, 2, &[], (0, 0)),
                Entry::File { mode, data } => (S_IFREG | mode, 1, data, (0, 0)),
                Entry::Symlink { target } => (S_IFLNK | 0o777, 1, target.as_bytes(), (0, 0)),
                Entry::CharDev { mode, major, minor } => (S_IFCHR | mode, 1, &[], (*major, *minor)),
            };
            write_header(&mut out, ino, mode, nlink, mtime, data.len() as u32, rdev, path);
            out.extend_from_slice(data);
            pad4(&mut out);
        }
        write_header(&mut out, 0, 0, 1, 0, 0, (0, 0), "TRAILER!!!");
        out
    }
}

#[allow(clippy::too_many_arguments)]
fn write_header(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    size: u32,
    rdev: (u32, u32),
    name: &str,
) {
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        mtime,
        size,
        0,
        0,
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for field in fields {
        out.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimal newc reader used to check the writer; returns (name, mode, data).
    fn parse(bytes: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            assert_eq!(&bytes[pos..pos + 6], b"070701", "magic at {pos}");
            let field = |i: usize| {
                let s = std::str::from_utf8(&bytes[pos + 6 + i * 8..pos + 14 + i * 8]).unwrap();
                u32::from_str_radix(s, 16).unwrap() as usize
            };
            let (mode, size, namesize) = (field(1) as u32, field(6), field(11));
            let name_start = pos + 110;
            let name = std::str::from_utf8(&bytes[name_start..name_start + namesize - 1])
                .unwrap()
                .to_string();
            assert_eq!(bytes[name_start + namesize - 1], 0);
            let data_start = (name_start + namesize).div_ceil(4) * 4;
            let data = bytes[data_start..data_start + size].to_vec();
            pos = (data_start + size).div_ceil(4) * 4;
            if name == "TRAILER!!!" {
                assert_eq!(pos, bytes.len());
                return out;
            }
            out.push((name, mode, data));
        }
    }

    #[test]
    fn round_trips_and_creates_parents_first() {
        let mut archive = Archive::new();
        archive.add(
            "/bin/xmppd",
            Entry::File {
                mode: 0o755,
                data: b"abc".to_vec(),
            },
        );
        archive.add(
            "/init",
            Entry::File {
                mode: 0o755,
                data: b"12345".to_vec(),
            },
        );
        archive.add(
            "/dev/console",
            Entry::CharDev {
                mode: 0o600,
                major: 5,
                minor: 1,
            },
        );
        archive.add("/lib/x", Entry::Symlink { target: "y".into() });
        let entries = parse(&archive.to_newc(1_700_000_000));
        let names: Vec<_> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["bin", "bin/xmppd", "dev", "dev/console", "init", "lib", "lib/x"]
        );
        assert_eq!(entries[1].2, b"abc");
        assert_eq!(entries[1].1, S_IFREG | 0o755);
        assert_eq!(entries[0].1, S_IFDIR | 0o755);
        assert_eq!(entries[3].1, S_IFCHR | 0o600);
        assert_eq!(entries[6].2, b"y");
    }

    #[test]
    fn same_entries_in_any_order_give_same_bytes() {
        let mut a = Archive::new();
        let mut b = Archive::new();
        a.add(
            "x/1",
            Entry::File {
                mode: 0o644,
                data: vec![1],
            },
        );
        a.add(
            "x/2",
            Entry::File {
                mode: 0o644,
                data: vec![2, 2],
            },
        );
        b.add(
            "x/2",
            Entry::File {
                mode: 0o644,
                data: vec![2, 2],
            },
        );
        b.add(
            "x/1",
            Entry::File {
                mode: 0o644,
                data: vec![1],
            },
        );
        assert_eq!(a.to_newc(7), b.to_newc(7));
        assert_ne!(a.to_newc(7), a.to_newc(8));
    }
}
