//! One SSH connection: who may log in (`admin`, by the admin password through the failure
//! limiter, or by an authorized key) and what its session channels become (the MMP prompt, one
//! command, or SFTP). Port forwarding, agent and X11 forwarding are refused by russh's defaults.

use crate::console::Console;
use crate::server::Shared;
use crate::sftp::FileArea;
use russh::keys::ssh_key::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The one account.
pub const ADMIN_USER: &str = "admin";

/// Session channels waiting for their shell, command or subsystem at once per connection.
const MAX_CHANNELS: usize = 4;

pub(crate) struct Connection {
    shared: Arc<Shared>,
    peer: SocketAddr,
    authenticated: Arc<AtomicBool>,
    /// Channels opened but not yet started (shell, exec or subsystem not asked for yet).
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// Channels that asked for a pty before their shell or command.
    with_pty: HashSet<ChannelId>,
}

impl Connection {
    pub(crate) fn new(shared: Arc<Shared>, peer: SocketAddr, authenticated: Arc<AtomicBool>) -> Connection {
        Connection {
            shared,
            peer,
            authenticated,
            channels: HashMap::new(),
            with_pty: HashSet::new(),
        }
    }

    fn accepted(&self, how: &str) -> Auth {
        self.authenticated.store(true, Ordering::Release);
        log::info!("ssh: admin logged in from {} ({how})", self.peer);
        Auth::Accept
    }

    /// Whether `key` is one of the authorized keys, read afresh so `ssh authorized-key del`
    /// applies to the next login.
    fn is_authorized(&self, key: &PublicKey) -> bool {
        let Ok(blob) = key.to_bytes() else {
            return false;
        };
        let keys = match self.shared.store.node_config() {
            Ok(node) => node.ssh.authorized_keys,
            Err(err) => {
                log::error!("ssh: cannot read the authorized keys: {err}");
                return false;
            }
        };
        keys.iter().any(|known| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(&known.base64)
                .is_ok_and(|known| known == blob)
        })
    }

    fn take_channel(&mut self, id: ChannelId) -> Option<(Channel<Msg>, bool)> {
        let channel = self.channels.remove(&id)?;
        Some((channel, self.with_pty.remove(&id)))
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let ip = self.peer.ip();
        let (max, window) = (self.shared.tuning.max_login_failures, self.shared.tuning.failure_window);
        if !self.shared.limiter.allowed(ip, max, window, Instant::now()) {
            log::warn!("ssh: login from {ip} refused unchecked: too many failed logins lately");
            return Ok(Auth::reject());
        }
        let (admin, user_owned, password) = (Arc::clone(&self.shared.admin), user.to_owned(), password.to_owned());
        let ok = tokio::task::spawn_blocking(move || admin.check_admin_login(&user_owned, &password))
            .await
            .unwrap_or(false);
        if ok {
            return Ok(self.accepted("password"));
        }
        self.shared.limiter.record_failure(ip, window, Instant::now());
        if user == ADMIN_USER {
            log::warn!("ssh: failed login for admin from {ip}");
        } else {
            log::warn!("ssh: failed login from {ip} (unknown user name)");
        }
        Ok(Auth::reject())
    }

    async fn auth_publickey_offered(&mut self, user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        // A client offers each of its keys in turn: an unknown one is no failed login.
        if user == ADMIN_USER && self.is_authorized(offer.public_key) {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        if user == ADMIN_USER && self.is_authorized(key.public_key) {
            let fingerprint = key.public_key.fingerprint(russh::keys::HashAlg::Sha256);
            return Ok(self.accepted(&format!("key {fingerprint}")));
        }
        Ok(Auth::reject())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.channels.len() >= MAX_CHANNELS {
            reply.reject(russh::ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.channels.contains_key(&channel) {
            self.with_pty.insert(channel);
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        let Some((channel_object, pty)) = self.take_channel(channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        let console = Console::new(Arc::clone(&self.shared.admin), channel_object, pty);
        tokio::spawn(console.shell(self.peer));
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some((channel_object, pty)) = self.take_channel(channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        let line = String::from_utf8_lossy(data).into_owned();
        let console = Console::new(Arc::clone(&self.shared.admin), channel_object, pty);
        tokio::spawn(console.exec(self.peer, line));
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name != "sftp" {
            session.channel_failure(channel)?;
            return Ok(());
        }
        let Some((channel_object, _)) = self.take_channel(channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        log::info!("ssh: admin from {}: sftp", self.peer);
        let area = FileArea::new(self.shared.admin.certs_dir(), self.shared.tuning.max_file_bytes);
        russh_sftp::server::run(channel_object.into_stream(), area).await;
        Ok(())
    }
}
