//! The byte stream under every XMPP connection: plain TCP until STARTTLS (or from the first
//! byte for Call Bridges), TLS afterwards; the server side on connections we accept, the
//! client side on s2s links we open.

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

pub enum Transport {
    Plain(TcpStream),
    /// Boxed: the TLS state is large and only some connections have it.
    Tls(Box<TlsStream<TcpStream>>),
    /// Our side of TLS on a connection we opened (s2s links).
    TlsClient(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Between taking the TCP stream for the TLS handshake and getting it back.
    Detached,
}

fn detached() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection is between transports")
}

impl Transport {
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_) | Transport::TlsClient(_))
    }

    /// Run the server side of the TLS handshake over the plain stream (RFC 6120 §5.4.3.3:
    /// after `<proceed/>`).
    pub async fn start_tls(&mut self, config: Arc<ServerConfig>) -> io::Result<()> {
        let Transport::Plain(tcp) = std::mem::replace(self, Transport::Detached) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "TLS is already active"));
        };
        let tls = TlsAcceptor::from(config).accept(tcp).await?;
        *self = Transport::Tls(Box::new(tls));
        Ok(())
    }

    /// Run the client side of the TLS handshake for `domain` over the plain stream.
    pub async fn start_tls_client(&mut self, config: Arc<ClientConfig>, domain: &str) -> io::Result<()> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("'{domain}': {e}")))?;
        let Transport::Plain(tcp) = std::mem::replace(self, Transport::Detached) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "TLS is already active"));
        };
        let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
        *self = Transport::TlsClient(Box::new(tls));
        Ok(())
    }

    /// The peer's certificate chain, leaf first (empty without TLS or without a certificate).
    pub fn peer_certificates(&self) -> Vec<CertificateDer<'static>> {
        let certs = match self {
            Transport::Tls(tls) => tls.get_ref().1.peer_certificates(),
            Transport::TlsClient(tls) => tls.get_ref().1.peer_certificates(),
            _ => None,
        };
        certs
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default()
    }

    /// The `tls-exporter` channel binding value of our server-side TLS session (RFC 9266),
    /// or `None` when there is none to bind to: no TLS, or TLS below 1.3 (RFC 9266 §3 allows
    /// 1.2 only with Extended Master Secret, which we do not check for).
    pub fn tls_exporter(&self) -> Option<Vec<u8>> {
        let Transport::Tls(tls) = self else {
            return None;
        };
        let conn = tls.get_ref().1;
        if conn.protocol_version()? != rustls::ProtocolVersion::TLSv1_3 {
            return None;
        }
        conn.export_keying_material(
            vec![0u8; sb_proto::sasl::EXPORTER_LEN],
            sb_proto::sasl::EXPORTER_LABEL,
            Some(&[]),
        )
        .ok()
    }

    /// The negotiated TLS version and cipher suite, for status and the log.
    pub fn tls_description(&self) -> Option<String> {
        let (version, suite) = match self {
            Transport::Tls(tls) => {
                let conn = tls.get_ref().1;
                (conn.protocol_version()?, conn.negotiated_cipher_suite()?)
            }
            Transport::TlsClient(tls) => {
                let conn = tls.get_ref().1;
                (conn.protocol_version()?, conn.negotiated_cipher_suite()?)
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
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::TlsClient(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::TlsClient(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::TlsClient(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::Detached => Poll::Ready(Err(detached())),
        }
    }

    /// For TLS this sends close_notify before shutting the TCP write side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::TlsClient(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::Detached => Poll::Ready(Ok(())),
        }
    }
}
