//! SFTP for `admin`, rooted at the node's file area: the certificate folder that `pki` and
//! `xmpp certs` name files in, where upgrade images go too. The area is flat, as CMS's is: the
//! client sees `/` and plain file names under it, nothing else.
//!
//! No way out: every path must come down to one plain name in the area (`..`, a second path
//! component, an absolute path elsewhere are refused), symbolic links are neither followed
//! (`O_NOFOLLOW`, `lstat`) nor listed nor made, and a file may not grow past the size limit.
//! Each refusal is an SFTP status with a message the client prints.

use russh_sftp::protocol::{Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version};
use russh_sftp::server::StatusReply;
use std::collections::HashMap;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Open handles per session: enough for any client, bounded against one that never closes.
const MAX_HANDLES: usize = 16;
/// Largest read answered at once (OpenSSH asks for 32 KiB).
const MAX_READ_BYTES: u32 = 256 * 1024;

enum Open {
    File { file: Arc<std::fs::File>, name: String },
    Dir { listed: bool },
}

pub struct FileArea {
    root: PathBuf,
    max_file_bytes: u64,
    handles: HashMap<String, Open>,
    next_handle: u64,
}

/// A refusal for the client; OpenSSH's sftp shows only the status code's own text, so the
/// reason goes to the log too, where `syslog` shows it.
fn refuse(code: StatusCode, message: impl Into<String>) -> StatusReply {
    let message = message.into();
    match code {
        StatusCode::NoSuchFile | StatusCode::OpUnsupported => log::info!("ssh: sftp: {message}"),
        _ => log::warn!("ssh: sftp refused: {message}"),
    }
    code.with_message(message)
}

fn io_error(name: &str, err: &std::io::Error) -> StatusReply {
    use std::io::ErrorKind;
    match err.kind() {
        ErrorKind::NotFound => refuse(StatusCode::NoSuchFile, format!("{name}: no such file")),
        ErrorKind::PermissionDenied => refuse(StatusCode::PermissionDenied, format!("{name}: permission denied")),
        // ELOOP from O_NOFOLLOW: the name is a symbolic link.
        _ if err.raw_os_error() == Some(libc::ELOOP) => symlink_refused(name),
        _ => refuse(StatusCode::Failure, format!("{name}: {err}")),
    }
}

/// File I/O on a blocking thread: a slow disk (the fsync that ends a large upload) must not
/// stall a runtime worker, which serves XMPP sessions too.
async fn blocking<T: Send + 'static>(
    name: &str,
    operation: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, StatusReply> {
    match tokio::task::spawn_blocking(operation).await {
        Ok(result) => result.map_err(|e| io_error(name, &e)),
        Err(e) => Err(refuse(StatusCode::Failure, format!("{name}: {e}"))),
    }
}

fn symlink_refused(name: &str) -> StatusReply {
    refuse(
        StatusCode::PermissionDenied,
        format!("{name}: symbolic links are not served (the file area holds plain files only)"),
    )
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".to_owned(),
        language_tag: "en-US".to_owned(),
    }
}

/// The plain file name a client path names in the area, `None` for the area itself.
pub fn area_name(path: &str) -> Result<Option<String>, StatusReply> {
    let outside = || {
        refuse(
            StatusCode::PermissionDenied,
            format!("{path}: outside the file area (plain names only, e.g. server.crt or /server.crt)"),
        )
    };
    let mut names = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(outside()),
            name => names.push(name),
        }
    }
    match names.as_slice() {
        [] => Ok(None),
        [name] if name.starts_with('.') => Err(refuse(
            StatusCode::PermissionDenied,
            format!("{path}: hidden names are not used in the file area"),
        )),
        [name] if name.chars().any(char::is_control) => Err(outside()),
        [name] => Ok(Some((*name).to_owned())),
        _ => Err(outside()),
    }
}

impl FileArea {
    pub fn new(root: PathBuf, max_file_bytes: u64) -> FileArea {
        FileArea {
            root,
            max_file_bytes,
            handles: HashMap::new(),
            next_handle: 0,
        }
    }

    fn file_path(&self, path: &str) -> Result<(String, PathBuf), StatusReply> {
        match area_name(path)? {
            Some(name) => {
                let full = self.root.join(&name);
                Ok((name, full))
            }
            None => Err(refuse(
                StatusCode::Failure,
                format!("{path}: is the file area, not a file"),
            )),
        }
    }

    fn new_handle(&mut self, open: Open) -> Result<String, StatusReply> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(refuse(
                StatusCode::Failure,
                format!("too many open files (at most {MAX_HANDLES})"),
            ));
        }
        self.next_handle += 1;
        let handle = self.next_handle.to_string();
        self.handles.insert(handle.clone(), open);
        Ok(handle)
    }

    /// Attributes of a plain file; a symbolic link or anything else is refused.
    fn attributes(&self, name: &str, path: &Path) -> Result<FileAttributes, StatusReply> {
        let meta = std::fs::symlink_metadata(path).map_err(|e| io_error(name, &e))?;
        if meta.file_type().is_symlink() {
            return Err(symlink_refused(name));
        }
        if !meta.is_file() {
            return Err(refuse(
                StatusCode::PermissionDenied,
                format!("{name}: not a plain file"),
            ));
        }
        Ok(FileAttributes::from(&meta))
    }

    fn area_attributes(&self) -> FileAttributes {
        let mut attrs = FileAttributes::default();
        attrs.set_dir(true);
        attrs.permissions = Some(0o040700);
        attrs
    }
}

impl russh_sftp::server::Handler for FileArea {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        refuse(StatusCode::OpUnsupported, "not supported in the file area")
    }

    async fn init(&mut self, _version: u32, _extensions: HashMap<String, String>) -> Result<Version, Self::Error> {
        Ok(Version::new())
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let shown = match area_name(&path)? {
            None => "/".to_owned(),
            Some(name) => format!("/{name}"),
        };
        Ok(Name {
            id,
            files: vec![File::dummy(shown)],
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.lstat(id, path).await
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let attrs = match area_name(&path)? {
            None => self.area_attributes(),
            Some(name) => {
                let full = self.root.join(&name);
                self.attributes(&name, &full)?
            }
        };
        Ok(Attrs { id, attrs })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let attrs = match self.handles.get(&handle) {
            Some(Open::File { file, name }) => FileAttributes::from(&file.metadata().map_err(|e| io_error(name, &e))?),
            Some(Open::Dir { .. }) => self.area_attributes(),
            None => return Err(refuse(StatusCode::Failure, "no such handle")),
        };
        Ok(Attrs { id, attrs })
    }

    async fn setstat(&mut self, id: u32, path: String, _attrs: FileAttributes) -> Result<Status, Self::Error> {
        // Permissions and times are the area's own (owner-only); a client's `put -p` still works.
        let (name, full) = self.file_path(&path)?;
        self.attributes(&name, &full)?;
        Ok(ok(id))
    }

    async fn fsetstat(&mut self, id: u32, _handle: String, _attrs: FileAttributes) -> Result<Status, Self::Error> {
        Ok(ok(id))
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let (name, full) = self.file_path(&filename)?;
        let writing = pflags.intersects(OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE | OpenFlags::TRUNCATE);
        if writing {
            std::fs::create_dir_all(&self.root).map_err(|e| io_error("the file area", &e))?;
        }
        let file = std::fs::OpenOptions::new()
            .read(pflags.contains(OpenFlags::READ) || !writing)
            .write(writing)
            .append(pflags.contains(OpenFlags::APPEND))
            .create(pflags.contains(OpenFlags::CREATE))
            .create_new(pflags.contains(OpenFlags::CREATE) && pflags.contains(OpenFlags::EXCLUDE))
            .truncate(pflags.contains(OpenFlags::TRUNCATE))
            .mode(0o600)
            // Never through a symbolic link, not even one planted after a check.
            .custom_flags(libc::O_NOFOLLOW)
            .open(&full)
            .map_err(|e| io_error(&name, &e))?;
        let meta = file.metadata().map_err(|e| io_error(&name, &e))?;
        if !meta.is_file() {
            return Err(refuse(
                StatusCode::PermissionDenied,
                format!("{name}: not a plain file"),
            ));
        }
        let handle = self.new_handle(Open::File {
            file: Arc::new(file),
            name,
        })?;
        Ok(Handle { id, handle })
    }

    async fn read(&mut self, id: u32, handle: String, offset: u64, len: u32) -> Result<Data, Self::Error> {
        let Some(Open::File { file, name }) = self.handles.get(&handle) else {
            return Err(refuse(StatusCode::Failure, "no such file handle"));
        };
        let file = Arc::clone(file);
        let mut buffer = vec![0u8; len.min(MAX_READ_BYTES) as usize];
        let (count, mut buffer) = blocking(name, move || {
            let count = file.read_at(&mut buffer, offset)?;
            Ok((count, buffer))
        })
        .await?;
        if count == 0 {
            return Err(StatusCode::Eof.into());
        }
        buffer.truncate(count);
        Ok(Data { id, data: buffer })
    }

    async fn write(&mut self, id: u32, handle: String, offset: u64, data: Vec<u8>) -> Result<Status, Self::Error> {
        let Some(Open::File { file, name }) = self.handles.get(&handle) else {
            return Err(refuse(StatusCode::Failure, "no such file handle"));
        };
        let end = offset.saturating_add(data.len() as u64);
        if end > self.max_file_bytes {
            log::warn!(
                "ssh: upload of {name} refused: larger than {} bytes",
                self.max_file_bytes
            );
            return Err(refuse(
                StatusCode::Failure,
                format!(
                    "{name}: file too large: the file area takes files up to {} bytes",
                    self.max_file_bytes
                ),
            ));
        }
        let file = Arc::clone(file);
        blocking(name, move || file.write_all_at(&data, offset)).await?;
        Ok(ok(id))
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.handles.remove(&handle) {
            Some(Open::File { file, name }) => {
                blocking(&name, move || file.sync_all()).await?;
                Ok(ok(id))
            }
            Some(Open::Dir { .. }) => Ok(ok(id)),
            None => Err(refuse(StatusCode::Failure, "no such handle")),
        }
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        if area_name(&path)?.is_some() {
            return Err(refuse(
                StatusCode::NoSuchFile,
                format!("{path}: not a folder (the file area has no subfolders)"),
            ));
        }
        let handle = self.new_handle(Open::Dir { listed: false })?;
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        let Some(Open::Dir { listed }) = self.handles.get_mut(&handle) else {
            return Err(refuse(StatusCode::Failure, "no such folder handle"));
        };
        if *listed {
            return Err(StatusCode::Eof.into());
        }
        *listed = true;
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Name { id, files: vec![] }),
            Err(err) => return Err(io_error("the file area", &err)),
        };
        let mut files = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // What `pki list` shows: plain files, no hidden or temporary ones, no links.
            let plain = entry.file_type().is_ok_and(|kind| kind.is_file());
            if name.starts_with('.') || !plain {
                continue;
            }
            if let Ok(meta) = entry.metadata() {
                files.push(File::new(name, FileAttributes::from(&meta)));
            }
        }
        files.sort_by(|a, b| a.filename.cmp(&b.filename));
        Ok(Name { id, files })
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        let (name, full) = self.file_path(&filename)?;
        // A link is refused rather than removed: the area never had one from us.
        self.attributes(&name, &full)?;
        std::fs::remove_file(&full).map_err(|e| io_error(&name, &e))?;
        log::info!("ssh: sftp removed {name}");
        Ok(ok(id))
    }

    async fn rename(&mut self, id: u32, oldpath: String, newpath: String) -> Result<Status, Self::Error> {
        let (old_name, old_full) = self.file_path(&oldpath)?;
        let (new_name, new_full) = self.file_path(&newpath)?;
        self.attributes(&old_name, &old_full)?;
        if std::fs::symlink_metadata(&new_full).is_ok() {
            return Err(refuse(StatusCode::Failure, format!("{new_name}: exists already")));
        }
        std::fs::rename(&old_full, &new_full).map_err(|e| io_error(&old_name, &e))?;
        Ok(ok(id))
    }

    async fn mkdir(&mut self, _id: u32, path: String, _attrs: FileAttributes) -> Result<Status, Self::Error> {
        Err(refuse(
            StatusCode::PermissionDenied,
            format!("{path}: the file area has no subfolders"),
        ))
    }

    async fn rmdir(&mut self, _id: u32, path: String) -> Result<Status, Self::Error> {
        Err(refuse(
            StatusCode::PermissionDenied,
            format!("{path}: the file area has no subfolders"),
        ))
    }

    async fn readlink(&mut self, _id: u32, path: String) -> Result<Name, Self::Error> {
        Err(symlink_refused(&path))
    }

    async fn symlink(&mut self, _id: u32, linkpath: String, _targetpath: String) -> Result<Status, Self::Error> {
        Err(symlink_refused(&linkpath))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_in_the_area_resolve() {
        assert_eq!(area_name("/").unwrap(), None);
        assert_eq!(area_name(".").unwrap(), None);
        assert_eq!(area_name("").unwrap(), None);
        assert_eq!(area_name("abhiall.csr").unwrap(), Some("abhiall.csr".to_owned()));
        assert_eq!(area_name("/abhiall.csr").unwrap(), Some("abhiall.csr".to_owned()));
        assert_eq!(area_name("./a.crt").unwrap(), Some("a.crt".to_owned()));
        for escape in [
            "..",
            "../store",
            "/../etc/passwd",
            "/etc/passwd",
            "a/b",
            "x/../y",
            ".hidden",
        ] {
            let err = area_name(escape).unwrap_err();
            assert_eq!(err.status_code, StatusCode::PermissionDenied, "{escape}");
        }
        assert!(
            area_name("/etc/passwd")
                .unwrap_err()
                .error_message
                .unwrap()
                .contains("outside the file area")
        );
    }
}
