//! The admin socket: `DIR/mmp.sock`, mode 0600. One JSON [`Command`] per line in, one JSON
//! [`Reply`] per line out, as many as the client likes on one connection.
//!
//! Who may talk to it: the socket is created owner-only (umask at bind, so there is no moment
//! when it is wider), and every connection's `SO_PEERCRED` must be root or the daemon's own
//! user, so a loosened file mode or directory still lets no one else in. A connection that
//! sends no complete request for [`IDLE_TIMEOUT`] is closed, so forgotten or stalled clients
//! cannot hold the [`MAX_CONNECTIONS`] slots.
//!
//! A streaming command ([`Command::is_streaming`], i.e. `syslog follow`) is answered instead by
//! JSON [`StreamFrame`] lines: `{"line":"..."}` for each new log line, until the client closes
//! the connection (or sends anything at all), or the daemon ends the stream with one
//! `{"end":<Reply>}` (the stream could not start, or the log closed). Either way the connection
//! ends with the stream; [`follow`] is the client side.

use crate::{Admin, Command, Reply};
use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

pub const SOCKET_NAME: &str = "mmp.sock";

/// The longest request line; a command is a few hundred bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The longest reply line a client accepts; `xmpp status` lists every session, so it can be big.
pub const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// How long a client waits for a reply; generous, a command does disk writes and key generation.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Connections served at once; more wait in the accept queue.
pub const MAX_CONNECTIONS: usize = 16;

/// How long a connection may take to send its next request line. mmp's front ends send a
/// command the moment they connect; an operator thinking at an interactive prompt is not
/// connected (mmp connects per command).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Streams (`syslog follow`) served at once, so followers cannot take every connection slot.
pub const MAX_STREAMS: usize = 4;

/// Lines of a stream waiting for a slow client before the logger starts dropping them for it.
const STREAM_QUEUE_LINES: usize = 256;

/// How often a stream's reader thread checks that its client is still there when the log is
/// quiet. Only bounds how long a finished stream's thread lingers.
const STREAM_POLL: Duration = Duration::from_millis(250);

/// One line of a streamed answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamFrame {
    Line(String),
    /// The daemon ends the stream; nothing follows.
    End(Reply),
}

pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join(SOCKET_NAME)
}

/// Limits of one served socket; [`SocketLimits::default`] in the daemon, shorter in tests.
#[derive(Clone, Copy, Debug)]
pub struct SocketLimits {
    pub idle_timeout: Duration,
}

impl Default for SocketLimits {
    fn default() -> Self {
        SocketLimits {
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// Bind `DIR/mmp.sock` with mode 0600, replacing a stale socket file left by a dead daemon.
/// Refuses (`AddrInUse`) when another process still answers on it. Call inside the runtime.
pub fn bind(dir: &Path) -> io::Result<UnixListener> {
    let path = socket_path(dir);
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another process answers on {}", path.display()),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    // bind(2) creates the file with 0777 minus the umask; a chmod afterwards would leave a
    // window in which anyone may connect. The umask is process-wide, so other threads creating
    // files meanwhile get modes at most this strict, never wider.
    let previous = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(&path);
    nix::sys::stat::umask(previous);
    let listener = bound?;
    debug_assert_eq!(
        std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777).ok(),
        Some(0o600)
    );
    Ok(listener)
}

/// Root, or the user the daemon runs as (the appliance's `xmppd` user; the operator's own
/// account off the appliance).
pub fn peer_allowed(peer_uid: u32, daemon_uid: u32) -> bool {
    peer_uid == 0 || peer_uid == daemon_uid
}

/// Serve admin requests until the task is dropped or aborted.
pub async fn serve(listener: UnixListener, admin: Arc<Admin>) {
    serve_with(listener, admin, SocketLimits::default()).await
}

/// [`serve`] with the given limits.
pub async fn serve_with(listener: UnixListener, admin: Arc<Admin>, limits: SocketLimits) {
    let daemon_uid = nix::unistd::geteuid().as_raw();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let streams = Arc::new(Semaphore::new(MAX_STREAMS));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let peer = stream.peer_cred();
                let peer_uid = peer.as_ref().map(|c| c.uid()).ok();
                if !peer_uid.is_some_and(|uid| peer_allowed(uid, daemon_uid)) {
                    let pid = peer.ok().and_then(|c| c.pid());
                    log::warn!("admin socket: refused a connection from uid {peer_uid:?} (pid {pid:?})");
                    tokio::spawn(refuse(stream, slot));
                    continue;
                }
                let admin = Arc::clone(&admin);
                let streams = Arc::clone(&streams);
                tokio::spawn(async move {
                    if let Err(err) = serve_connection(stream, admin, streams, limits).await {
                        log::debug!("admin connection ended: {err}");
                    }
                    drop(slot);
                });
            }
            Err(err) => {
                // Typically EMFILE: back off instead of spinning on the error.
                log::warn!("admin socket accept: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One failure line for a peer that may not use the socket, then the connection closes.
async fn refuse(mut stream: UnixStream, slot: tokio::sync::OwnedSemaphorePermit) {
    let reply = Reply::failure("this user may not use the admin socket (root or the daemon's user only)");
    if let Ok(mut out) = serde_json::to_vec(&reply) {
        out.push(b'\n');
        // Bounded: a peer that does not read must not keep the slot.
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&out)).await;
    }
    drop(slot);
}

async fn serve_connection(
    stream: UnixStream,
    admin: Arc<Admin>,
    streams: Arc<Semaphore>,
    limits: SocketLimits,
) -> io::Result<()> {
    let (read_half, mut write_half) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read_half);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = u64::try_from(MAX_REQUEST_BYTES).unwrap_or(u64::MAX) + 1;
        let mut limited = (&mut reader).take(limit);
        let reading = limited.read_until(b'\n', &mut line);
        let Ok(read) = tokio::time::timeout(limits.idle_timeout, reading).await else {
            log::debug!("admin connection idle for {} s: closed", limits.idle_timeout.as_secs());
            return Ok(());
        };
        if read? == 0 {
            return Ok(());
        }
        let too_long = !line.ends_with(b"\n") && line.len() > MAX_REQUEST_BYTES;
        let reply = if too_long {
            Reply::failure(format!("request longer than {MAX_REQUEST_BYTES} bytes"))
        } else {
            match serde_json::from_slice::<Command>(line.trim_ascii()) {
                Ok(command) if command.is_streaming() => {
                    let Ok(_permit) = streams.try_acquire_owned() else {
                        let reply = Reply::failure(format!(
                            "{MAX_STREAMS} log followers are connected already: stop one first"
                        ));
                        return write_frame(&mut write_half, &StreamFrame::End(reply)).await;
                    };
                    return serve_stream(&admin, command, &mut reader, &mut write_half).await;
                }
                Ok(command) => execute(&admin, command).await,
                // The parser's message may quote the request, which may hold a secret: it goes
                // back to the client only, never to the log.
                Err(err) => Reply::failure(format!("bad request: {err}")),
            }
        };
        let mut out = serde_json::to_vec(&reply).map_err(io::Error::other)?;
        out.push(b'\n');
        write_half.write_all(&out).await?;
        if too_long {
            // The rest of the oversized line cannot be told from the next request.
            return Ok(());
        }
    }
}

/// Serve a streaming command until the client goes away or the stream ends.
async fn serve_stream(
    admin: &Arc<Admin>,
    command: Command,
    reader: &mut (impl AsyncRead + Unpin),
    writer: &mut (impl AsyncWrite + Unpin),
) -> io::Result<()> {
    let opened = {
        let admin = Arc::clone(admin);
        tokio::task::spawn_blocking(move || admin.follow(&command)).await
    };
    let follower = match opened {
        Ok(Ok(follower)) => follower,
        Ok(Err(reply)) => return write_frame(writer, &StreamFrame::End(reply)).await,
        Err(err) => {
            log::error!("admin stream failed to start: {err}");
            let reply = Reply::failure("internal error (see the daemon's log)");
            return write_frame(writer, &StreamFrame::End(reply)).await;
        }
    };
    // The follower blocks (std channel, so the logger needs no runtime): a blocking thread
    // feeds a bounded channel. When this task ends the channel closes and the thread stops.
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::channel::<String>(STREAM_QUEUE_LINES);
    tokio::task::spawn_blocking(move || pump(follower, lines_tx));
    let mut probe = [0u8; 64];
    loop {
        tokio::select! {
            line = lines_rx.recv() => match line {
                Some(line) => write_frame(writer, &StreamFrame::Line(line)).await?,
                None => {
                    let reply = Reply::output("the log closed");
                    return write_frame(writer, &StreamFrame::End(reply)).await;
                }
            },
            // Clients send nothing during a stream: end of file, an error or any byte ends it.
            _ = reader.read(&mut probe) => return Ok(()),
        }
    }
}

fn pump(mut follower: sb_logging::Follower, lines: tokio::sync::mpsc::Sender<String>) {
    loop {
        match follower.recv_timeout(STREAM_POLL) {
            sb_logging::FollowEvent::Line(line) => {
                if lines.blocking_send(line).is_err() {
                    return;
                }
            }
            sb_logging::FollowEvent::Timeout => {
                if lines.is_closed() {
                    return;
                }
            }
            sb_logging::FollowEvent::Closed => return,
        }
    }
}

async fn write_frame(writer: &mut (impl AsyncWrite + Unpin), frame: &StreamFrame) -> io::Result<()> {
    let mut out = serde_json::to_vec(frame).map_err(io::Error::other)?;
    out.push(b'\n');
    writer.write_all(&out).await
}

async fn execute(admin: &Arc<Admin>, command: Command) -> Reply {
    let admin = Arc::clone(admin);
    match tokio::task::spawn_blocking(move || admin.execute(command)).await {
        Ok(reply) => reply,
        Err(err) => {
            log::error!("admin command failed: {err}");
            Reply::failure("internal error (see the daemon's log)")
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no daemon answers on {path}: {source}")]
    NotRunning { path: String, source: io::Error },
    #[error("admin socket {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("the daemon did not answer within {} s", CLIENT_TIMEOUT.as_secs())]
    Timeout,
    #[error("the daemon closed the connection")]
    Closed,
    #[error("reply longer than {MAX_REPLY_BYTES} bytes")]
    ReplyTooLong,
    #[error("unreadable reply from the daemon: {0}")]
    BadReply(serde_json::Error),
}

impl ClientError {
    /// Nothing listens on the socket: work on the store directly.
    pub fn is_not_running(&self) -> bool {
        matches!(self, ClientError::NotRunning { .. })
    }
}

/// A blocking connection to the admin socket, for many requests.
pub struct Client {
    path: String,
    reader: BufReader<std::os::unix::net::UnixStream>,
    writer: std::os::unix::net::UnixStream,
}

impl Client {
    pub fn connect(socket_path: &Path) -> Result<Client, ClientError> {
        let path = socket_path.display().to_string();
        let stream = std::os::unix::net::UnixStream::connect(socket_path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ClientError::NotRunning {
                path: path.clone(),
                source,
            },
            _ => ClientError::Io {
                path: path.clone(),
                source,
            },
        })?;
        let io_error = |source| ClientError::Io {
            path: path.clone(),
            source,
        };
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).map_err(io_error)?;
        stream.set_write_timeout(Some(CLIENT_TIMEOUT)).map_err(io_error)?;
        let writer = stream.try_clone().map_err(io_error)?;
        Ok(Client {
            path,
            reader: BufReader::new(stream),
            writer,
        })
    }

    pub fn request(&mut self, command: &Command) -> Result<Reply, ClientError> {
        let mut line = serde_json::to_vec(command).map_err(|e| self.io_error(io::Error::other(e)))?;
        line.push(b'\n');
        self.writer.write_all(&line).map_err(|e| self.io_error(e))?;
        let mut answer = Vec::new();
        let limit = u64::try_from(MAX_REPLY_BYTES).unwrap_or(u64::MAX) + 1;
        let read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut answer)
            .map_err(|e| self.io_error(e))?;
        if read == 0 {
            return Err(ClientError::Closed);
        }
        if !answer.ends_with(b"\n") && answer.len() > MAX_REPLY_BYTES {
            return Err(ClientError::ReplyTooLong);
        }
        serde_json::from_slice(answer.trim_ascii()).map_err(ClientError::BadReply)
    }

    /// Run a streaming command on this connection, which it uses up: `on_line` gets each line
    /// and returns `false` to stop (the connection is then closed, which ends the stream on the
    /// daemon's side). Waits for lines without a time limit. Returns the daemon's closing reply,
    /// or `None` when `on_line` stopped.
    pub fn follow(
        mut self,
        command: &Command,
        mut on_line: impl FnMut(&str) -> bool,
    ) -> Result<Option<Reply>, ClientError> {
        let mut line = serde_json::to_vec(command).map_err(|e| self.io_error(io::Error::other(e)))?;
        line.push(b'\n');
        self.writer.write_all(&line).map_err(|e| self.io_error(e))?;
        self.reader
            .get_ref()
            .set_read_timeout(None)
            .map_err(|e| self.io_error(e))?;
        let limit = u64::try_from(MAX_REPLY_BYTES).unwrap_or(u64::MAX) + 1;
        let mut frame = Vec::new();
        loop {
            frame.clear();
            let read = (&mut self.reader)
                .take(limit)
                .read_until(b'\n', &mut frame)
                .map_err(|e| self.io_error(e))?;
            if read == 0 {
                return Err(ClientError::Closed);
            }
            if !frame.ends_with(b"\n") && frame.len() > MAX_REPLY_BYTES {
                return Err(ClientError::ReplyTooLong);
            }
            match serde_json::from_slice(frame.trim_ascii()).map_err(ClientError::BadReply)? {
                StreamFrame::Line(text) => {
                    if !on_line(&text) {
                        let _ = self.writer.shutdown(std::net::Shutdown::Both);
                        return Ok(None);
                    }
                }
                StreamFrame::End(reply) => return Ok(Some(reply)),
            }
        }
    }

    fn io_error(&self, source: io::Error) -> ClientError {
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
            _ => ClientError::Io {
                path: self.path.clone(),
                source,
            },
        }
    }
}

/// One request on a fresh connection.
pub fn request(socket_path: &Path, command: &Command) -> Result<Reply, ClientError> {
    Client::connect(socket_path)?.request(command)
}

/// A streaming command on a fresh connection ([`Client::follow`]).
pub fn follow(
    socket_path: &Path,
    command: &Command,
    on_line: impl FnMut(&str) -> bool,
) -> Result<Option<Reply>, ClientError> {
    Client::connect(socket_path)?.follow(command, on_line)
}
