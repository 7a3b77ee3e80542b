//! One s2s connection: the shared stream I/O of sb-server ([`StreamIo`], its [`Transport`]
//! with TLS on either side) and the framer that turns the bytes into events.
//!
//! s2s writes as it goes (each write waits for the peer, bounded) where client streams batch
//! into the write buffer; the bytes, TLS and buffers underneath are the same.

use sb_proto::{FramerConfig, StreamError, StreamEvent, StreamFramer};
use sb_server::stream_io::{FlushError, StreamIo};
use sb_server::transport::Transport;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// A write that does not complete in this time means the peer stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// A goodbye that takes longer than this is not waited for.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection with its framer.
pub struct Conn {
    pub io: StreamIo,
    pub framer: StreamFramer,
}

impl Conn {
    pub fn new(tcp: TcpStream, peer: SocketAddr, max_stanza_bytes: usize) -> Conn {
        let _ = tcp.set_nodelay(true);
        Conn {
            io: StreamIo::new(Transport::Plain(tcp), peer),
            framer: StreamFramer::new(FramerConfig::with_max_stanza_bytes(max_stanza_bytes)),
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_buf.extend_from_slice(bytes);
        self.io.flush(WRITE_TIMEOUT).await.map_err(|e| match e {
            FlushError::Io(e) => e,
            FlushError::Stalled => io::Error::new(io::ErrorKind::TimedOut, "write timed out"),
        })
    }

    /// Read what is available and hand it to the framer; 0 means the peer closed.
    /// Cancel-safe: bytes are either in the read buffer or not read at all.
    pub async fn read(&mut self) -> io::Result<usize> {
        let n = self.io.read().await?;
        if n > 0 {
            self.io.feed(&mut self.framer);
        }
        Ok(n)
    }

    /// The next complete event. One at a time: an event can change how the bytes after it
    /// must be read (STARTTLS, a stream restart after SASL).
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, StreamError> {
        self.framer.next_event()
    }

    /// Close the TCP connection (after a TLS close_notify), without waiting long.
    pub async fn shutdown(&mut self) {
        use tokio::io::AsyncWriteExt;
        let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, self.io.transport.shutdown()).await;
    }
}
