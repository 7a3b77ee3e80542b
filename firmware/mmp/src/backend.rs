//! Where commands run: the daemon behind DIR/mmp.sock, or the store itself when no daemon runs.

use sb_admin::socket::{self, Client};
use sb_admin::{Admin, Command, Reply};
use sb_store::{Store, StoreError};
use std::path::Path;

pub enum Backend {
    Daemon(Client),
    Local(Admin),
}

impl Backend {
    /// The daemon when one answers, else the store opened directly. `Err` is the FAILURE reply.
    pub fn connect(dir: &Path) -> Result<Backend, Reply> {
        let socket_path = socket::socket_path(dir);
        match Client::connect(&socket_path) {
            Ok(client) => Ok(Backend::Daemon(client)),
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
            Backend::Daemon(client) => client
                .request(&command)
                .unwrap_or_else(|err| Reply::failure(format!("admin socket: {err}"))),
            Backend::Local(admin) => admin.execute(command),
        }
    }
}
