//! The I/O half every XMPP stream task shares (clients on 5222, Call Bridges on 5223, servers
//! on 5269 and the links we open to them): the
//! transport, a read buffer handed to the framer, a write buffer flushed with a deadline,
//! the liveness timers (idle timeout, whitespace keepalive), and the polite close.
//!
//! What a stream *means* stays with its task; this only moves bytes and keeps time.

use crate::router::{Outbound, SessionControl};
use crate::transport::Transport;
use crate::tuning::ServerTuning;
use bytes::BytesMut;
use sb_proto::{StreamError, StreamErrorCondition, StreamFramer};
use std::net::SocketAddr;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, timeout};

/// Room for one TLS record's worth of plaintext per read; the framer keeps what it needs.
const READ_CHUNK: usize = 1024;
/// A read buffer that grew past this for a burst is given back once empty.
const KEEP_BUFFER_BYTES: usize = 8 * 1024;
/// Write buffers above this are given back after each flush: most streams are idle most of
/// the time, and a write allocation is cheap next to the TLS encryption.
const KEEP_WRITE_BUFFER_BYTES: usize = 512;

/// Why a flush failed: the stream cannot be written any more, so it ends without a goodbye.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the peer does not read")]
    Stalled,
}

/// What woke a connection task.
pub enum Wake {
    Shutdown,
    Control,
    Read(std::io::Result<usize>),
    Outbound(Option<Outbound>),
    Timer,
}

impl StreamIo {
    /// Wait for whatever comes first: server shutdown, a close request for the attached
    /// session, bytes from the peer, a stanza for the peer, or the next timer. Before a
    /// session is attached (`control`/`outbound` are `None`) only the other sources count.
    pub async fn wait(
        &mut self,
        stop: &mut watch::Receiver<u64>,
        control: Option<&SessionControl>,
        outbound: Option<&mut mpsc::Receiver<Outbound>>,
        wake_at: Instant,
    ) -> Wake {
        tokio::select! {
            biased;
            _ = stop.changed() => Wake::Shutdown,
            _ = close_requested(control) => Wake::Control,
            read = self.read() => Wake::Read(read),
            item = next_outbound(outbound) => Wake::Outbound(item),
            _ = sleep_until(wake_at.into()) => Wake::Timer,
        }
    }
}

async fn next_outbound(rx: Option<&mut mpsc::Receiver<Outbound>>) -> Option<Outbound> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn close_requested(control: Option<&SessionControl>) {
    match control {
        Some(control) => control.notified().await,
        None => std::future::pending().await,
    }
}

pub struct StreamIo {
    pub transport: Transport,
    pub peer: SocketAddr,
    read_buf: BytesMut,
    /// What goes out with the next [`StreamIo::flush`].
    pub write_buf: Vec<u8>,
    /// Bytes of queued items now in `write_buf`: they stay charged to the queue's byte
    /// budget until a flush has written them (see [`StreamIo::flush_session`]).
    pub charged: usize,
    pub last_read: Instant,
    pub last_write: Instant,
}

impl StreamIo {
    pub fn new(transport: Transport, peer: SocketAddr) -> StreamIo {
        let now = Instant::now();
        StreamIo {
            transport,
            peer,
            read_buf: BytesMut::new(),
            write_buf: Vec::new(),
            charged: 0,
            last_read: now,
            last_write: now,
        }
    }

    /// Read whatever the peer sent next into the read buffer; `Ok(0)` is end of stream.
    /// Cancel-safe (it is one arm of the stream task's `select!`): nothing is lost when
    /// another arm wins.
    pub async fn read(&mut self) -> std::io::Result<usize> {
        if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK / 2 {
            self.read_buf.reserve(READ_CHUNK);
        }
        self.transport.read_buf(&mut self.read_buf).await
    }

    /// Hand what was read to `framer` and release the buffer (the framer keeps its own copy
    /// of an incomplete element).
    pub fn feed(&mut self, framer: &mut StreamFramer) {
        self.last_read = Instant::now();
        framer.feed(&self.read_buf);
        self.read_buf.clear();
        if self.read_buf.capacity() > KEEP_BUFFER_BYTES {
            self.read_buf = BytesMut::new();
        }
    }

    /// Write out `write_buf`, giving up when the peer does not take it within
    /// `write_timeout` (its queue would otherwise stall every sender routing to it).
    pub async fn flush(&mut self, write_timeout: std::time::Duration) -> Result<(), FlushError> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        let transport = &mut self.transport;
        let data = &self.write_buf;
        let written = timeout(write_timeout, async {
            transport.write_all(data).await?;
            transport.flush().await
        })
        .await;
        self.write_buf.clear();
        if self.write_buf.capacity() > KEEP_WRITE_BUFFER_BYTES {
            self.write_buf = Vec::new();
        }
        self.last_write = Instant::now();
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(FlushError::Io(e)),
            Err(_) => Err(FlushError::Stalled),
        }
    }

    /// [`StreamIo::flush`] for a stream with a session queue: what was written is released
    /// from the queue's budget, and a close request (the queue went over budget while we
    /// waited for a peer that does not read) cuts the wait to `close_grace`. The request
    /// stays for the caller to take with [`SessionControl::take_close`].
    pub async fn flush_session(
        &mut self,
        tuning: &ServerTuning,
        control: Option<&SessionControl>,
    ) -> Result<(), FlushError> {
        let Some(control) = control else {
            return self.flush(tuning.write_timeout).await;
        };
        let written = {
            let flush = self.flush(tuning.write_timeout);
            tokio::pin!(flush);
            tokio::select! {
                biased;
                result = &mut flush => result,
                _ = control.notified() => match timeout(tuning.close_grace, &mut flush).await {
                    Ok(result) => result,
                    Err(_) => Err(FlushError::Stalled),
                },
            }
        };
        if written.is_ok() {
            control.budget().release(std::mem::take(&mut self.charged));
        }
        written
    }

    /// When the liveness timer of an authenticated stream must fire next.
    pub fn liveness_deadline(&self, tuning: &ServerTuning) -> Instant {
        let idle = self.last_read + tuning.idle_timeout;
        let keepalive = self.last_write + tuning.keepalive_interval;
        idle.min(keepalive)
    }

    /// On the liveness timer of an authenticated stream: `<connection-timeout/>` when the peer
    /// has been silent too long, else a whitespace keepalive when we have been.
    pub fn check_liveness(&mut self, tuning: &ServerTuning, now: Instant) -> Result<(), StreamError> {
        if now >= self.last_read + tuning.idle_timeout {
            return Err(StreamError::new(StreamErrorCondition::ConnectionTimeout));
        }
        if now >= self.last_write + tuning.keepalive_interval && self.write_buf.is_empty() {
            // RFC 6120 §4.6.1: whitespace between stanzas keeps the stream alive.
            self.write_buf.push(b' ');
        }
        Ok(())
    }

    /// Shut our side (TLS close_notify, then TCP FIN) and give the peer `grace` to read
    /// everything and close its side: closing with unread input would reset the connection
    /// and could destroy our last words in the peer's receive buffer.
    pub async fn close(&mut self, grace: std::time::Duration) {
        let transport = &mut self.transport;
        let _ = timeout(grace, async {
            let _ = transport.shutdown().await;
            let mut sink = [0u8; 512];
            while let Ok(n) = transport.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn pair() -> (StreamIo, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        (StreamIo::new(Transport::Plain(server), peer), client)
    }

    #[tokio::test]
    async fn reads_feed_the_framer_and_writes_reach_the_peer() {
        let (mut io, mut client) = pair().await;
        client
            .write_all(
                b"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'>",
            )
            .await
            .unwrap();
        let mut framer = StreamFramer::new(sb_proto::FramerConfig::with_max_stanza_bytes(1024));
        let mut header = None;
        for _ in 0..100 {
            assert!(io.read().await.unwrap() > 0);
            io.feed(&mut framer);
            if let Some(event) = framer.next_event().unwrap() {
                header = Some(event);
                break;
            }
        }
        assert!(matches!(header, Some(sb_proto::StreamEvent::Header(h)) if h.default_ns == sb_proto::ns::COMPONENT));
        io.write_buf.extend_from_slice(b"<handshake/>");
        io.flush(Duration::from_secs(20)).await.unwrap();
        assert!(io.write_buf.is_empty());
        let mut got = [0u8; 12];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"<handshake/>");
    }

    #[tokio::test]
    async fn liveness_sends_a_space_then_times_out() {
        let (mut io, _client) = pair().await;
        let tuning = ServerTuning {
            idle_timeout: Duration::from_secs(100),
            keepalive_interval: Duration::from_secs(10),
            ..ServerTuning::default()
        };
        let start = io.last_read.max(io.last_write);
        assert_eq!(io.liveness_deadline(&tuning), io.last_write + tuning.keepalive_interval);
        io.check_liveness(&tuning, start + Duration::from_secs(1)).unwrap();
        assert!(io.write_buf.is_empty());
        io.check_liveness(&tuning, start + Duration::from_secs(11)).unwrap();
        assert_eq!(io.write_buf, b" ");
        let error = io
            .check_liveness(&tuning, start + Duration::from_secs(101))
            .unwrap_err();
        assert_eq!(error.condition, StreamErrorCondition::ConnectionTimeout);
    }
}
