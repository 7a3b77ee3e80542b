//! Where commands run: the daemon behind DIR/mmp.sock, or the store itself when no daemon runs.

use sb_admin::socket::{self, Client};
use sb_admin::{Admin, Command, Reply};
use sb_store::{Store, StoreError};
use std::path::{Path, PathBuf};

pub enum Backend {
    Daemon { client: Client, socket_path: PathBuf },
    Local(Admin),
}

impl Backend {
    /// The daemon when one answers, else the store opened directly. `Err` is the FAILURE reply.
    pub fn connect(dir: &Path) -> Result<Backend, Reply> {
        let socket_path = socket::socket_path(dir);
        match Client::connect(&socket_path) {
            Ok(client) => Ok(Backend::Daemon { client, socket_path }),
            Err(err) if err.is_not_running() => match Store::open(dir) {
                Ok(store) => Ok(Backend::Local(Admin::new(store, dir.to_path_buf(), None))),
                Err(StoreError::Locked { .. }) => Err(Reply::failure(format!(
                    "the store in {} is locked by another process (an xmppd starting or hung?), \
                     and no daemon answers on {}",
                    dir.display(),
                    socket_path.display()
                ))),
                Err(store_err) => Err(Reply::failure(format!(
                    "cannot open the store in {}: {store_err}",
                    dir.display()
                ))),
            },
            Err(err) => Err(Reply::failure(err)),
        }
    }

    pub fn execute(&mut self, command: Command) -> Reply {
        match self {
            Backend::Daemon { client, .. } => client
                .request(&command)
                .unwrap_or_else(|err| Reply::failure(format!("admin socket: {err}"))),
            Backend::Local(admin) => admin.execute(command),
        }
    }

    /// A streaming command (`syslog follow`): `on_line` gets each line until it returns false
    /// or the daemon ends the stream. The reply is what to print after the lines: the daemon's
    /// closing reply, or nothing when `on_line` stopped. Without a daemon there is nothing to
    /// follow, and `execute` says so.
    pub fn stream(&mut self, command: Command, on_line: impl FnMut(&str) -> bool) -> Reply {
        match self {
            // Its own connection: a stream uses its connection up.
            Backend::Daemon { socket_path, .. } => match socket::follow(socket_path, &command, on_line) {
                Ok(Some(reply)) => reply,
                Ok(None) => Reply::output(""),
                Err(err) => Reply::failure(format!("admin socket: {err}")),
            },
            Backend::Local(admin) => admin.execute(command),
        }
    }
}
