//! One s2s connection's bytes: plain TCP, then TLS (client side on links we open, server side
//! on links we accept), and the framer that turns them into events.

use bytes::BytesMut;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use sb_proto::{FramerConfig, StreamError, StreamEvent, StreamFramer};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// A write that does not complete in this time means the peer stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const READ_CHUNK: usize = 4096;

pub enum Transport {
    Plain(TcpStream),
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Between taking the TCP stream for a handshake and getting it back.
    Detached,
}

fn detached() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection is between transports")
}

impl Transport {
    pub async fn start_tls_client(&mut self, config: Arc<ClientConfig>, domain: &str) -> io::Result<()> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("'{domain}': {e}")))?;
        let Transport::Plain(tcp) = std::mem::replace(self, Transport::Detached) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "TLS is already active"));
        };
        let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
        *self = Transport::Client(Box::new(tls));
        Ok(())
    }

    pub async fn start_tls_server(&mut self, config: Arc<ServerConfig>) -> io::Result<()> {
        let Transport::Plain(tcp) = std::mem::replace(self, Transport::Detached) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "TLS is already active"));
        };
        let tls = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await?;
        *self = Transport::Server(Box::new(tls));
        Ok(())
    }

    /// The peer's certificate chain, leaf first.
    pub fn peer_certificates(&self) -> Vec<CertificateDer<'static>> {
        let certs = match self {
            Transport::Client(tls) => tls.get_ref().1.peer_certificates(),
            Transport::Server(tls) => tls.get_ref().1.peer_certificates(),
            _ => None,
        };
        certs
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default()
    }

    /// `TLSv1_3 TLS13_AES_256_GCM_SHA384`, for status and logs.
    pub fn tls_description(&self) -> Option<String> {
        let (version, suite) = match self {
            Transport::Client(tls) => {
                let c = tls.get_ref().1;
                (c.protocol_version()?, c.negotiated_cipher_suite()?)
            }
            Transport::Server(tls) => {
                let c = tls.get_ref().1;
                (c.protocol_version()?, c.negotiated_cipher_suite()?)
            }
            _ => return None,
        };
        Some(format!("{version:?} {:?}", suite.suite()))
    }
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Client(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::Server(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Client(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::Server(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Client(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::Server(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Client(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::Server(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::Detached => Poll::Ready(Ok(())),
        }
    }
}

/// A connection with its framer.
pub struct Conn {
    pub transport: Transport,
    pub framer: StreamFramer,
    pub peer: SocketAddr,
    read_buf: BytesMut,
}

impl Conn {
    pub fn new(tcp: TcpStream, peer: SocketAddr, max_stanza_bytes: usize) -> Conn {
        let _ = tcp.set_nodelay(true);
        Conn {
            transport: Transport::Plain(tcp),
            framer: StreamFramer::new(FramerConfig::with_max_stanza_bytes(max_stanza_bytes)),
            peer,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let transport = &mut self.transport;
        let write = async {
            transport.write_all(bytes).await?;
            transport.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
        }
    }

    /// Read what is available and hand it to the framer; 0 means the peer closed.
    /// Cancel-safe: bytes are either in `read_buf` or not read at all.
    pub async fn read(&mut self) -> io::Result<usize> {
        if self.read_buf.capacity() < READ_CHUNK / 2 {
            self.read_buf.reserve(READ_CHUNK);
        }
        let n = self.transport.read_buf(&mut self.read_buf).await?;
        if n > 0 {
            self.framer.feed(&self.read_buf);
            self.read_buf.clear();
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
        let _ = tokio::time::timeout(Duration::from_secs(2), self.transport.shutdown()).await;
    }
}
