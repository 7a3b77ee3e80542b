//! One client connection: TCP, STARTTLS, SASL SCRAM, resource binding, initial presence.

use sb_proto::sasl::{self, CredentialsError, SaltedPassword, SaslError, ScramClient, ScramHash};
use sb_proto::{Element, StreamError, StreamEvent, StreamFramer, StreamHeader, ns};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub type TlsTcp = TlsStream<TcpStream>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect: {0}")]
    Connect(io::Error),
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("timed out during {0}")]
    Timeout(&'static str),
    #[error("server closed the connection during {0}")]
    Closed(&'static str),
    #[error("unparsable data from the server: {0}")]
    Parse(#[from] StreamError),
    #[error("server sent stream error <{0}/>")]
    ServerStreamError(String),
    #[error("server offers no STARTTLS")]
    NoStarttls,
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    #[error("no SCRAM mechanism offered (offered: {0})")]
    NoScram(String),
    #[error("authentication failed: <{0}/>")]
    AuthFailed(String),
    #[error("SASL: {0}")]
    Sasl(#[from] SaslError),
    #[error("credentials: {0}")]
    Credentials(#[from] CredentialsError),
    #[error("invalid domain for TLS: {0}")]
    ServerName(String),
    #[error("unexpected <{0}/> during {1}")]
    Unexpected(String, &'static str),
    #[error("resource binding failed: {0}")]
    Bind(String),
}

/// What every login of one run shares.
pub struct LoginTarget {
    pub addr: SocketAddr,
    pub domain: String,
    pub tls: TlsConnector,
    pub timeout: Duration,
    pub resource: String,
}

/// An XML stream over any byte stream: the framer plus a read buffer.
pub struct XmlConn<S> {
    pub io: S,
    pub framer: StreamFramer,
}

const READ_CHUNK: usize = 4096;

impl<S: AsyncRead + AsyncWrite + Unpin> XmlConn<S> {
    pub fn new(io: S) -> Self {
        XmlConn {
            io,
            framer: StreamFramer::new(sb_proto::FramerConfig::default()),
        }
    }

    pub async fn send(&mut self, data: &[u8]) -> Result<(), ClientError> {
        self.io.write_all(data).await?;
        self.io.flush().await?;
        Ok(())
    }

    pub async fn send_element(&mut self, element: &Element) -> Result<(), ClientError> {
        self.send(&element.to_bytes(ns::CLIENT)).await
    }

    /// The next stream event, reading as much as needed.
    pub async fn next_event(&mut self, during: &'static str) -> Result<StreamEvent, ClientError> {
        loop {
            if let Some(event) = self.framer.next_event()? {
                return Ok(event);
            }
            let mut chunk = [0u8; READ_CHUNK];
            let read = self.io.read(&mut chunk).await?;
            if read == 0 {
                return Err(ClientError::Closed(during));
            }
            self.framer.feed(&chunk[..read]);
        }
    }

    /// The next top-level element; a stream error or the stream's end is an error here.
    pub async fn next_element(&mut self, during: &'static str) -> Result<Element, ClientError> {
        loop {
            match self.next_event(during).await? {
                StreamEvent::Element(element) if element.is("error", ns::STREAM) => {
                    return Err(ClientError::ServerStreamError(first_child_name(&element)));
                }
                StreamEvent::Element(element) => return Ok(element),
                StreamEvent::End => return Err(ClientError::Closed(during)),
                // A second header on one stream cannot happen after a reset; skip it.
                StreamEvent::Header(_) => continue,
            }
        }
    }

    /// Send our stream header and read the server's header and `<stream:features/>`.
    async fn open_stream(&mut self, domain: &str) -> Result<Element, ClientError> {
        self.framer.reset();
        let header = StreamHeader {
            to: Some(domain.to_owned()),
            ..StreamHeader::new(ns::CLIENT)
        };
        self.send(&header.to_bytes()).await?;
        loop {
            match self.next_event("stream opening").await? {
                StreamEvent::Header(_) => continue,
                StreamEvent::Element(element) if element.is("features", ns::STREAM) => return Ok(element),
                StreamEvent::Element(element) if element.is("error", ns::STREAM) => {
                    return Err(ClientError::ServerStreamError(first_child_name(&element)));
                }
                StreamEvent::Element(element) => {
                    return Err(ClientError::Unexpected(element.name, "stream opening"));
                }
                StreamEvent::End => return Err(ClientError::Closed("stream opening")),
            }
        }
    }
}

pub fn first_child_name(element: &Element) -> String {
    element
        .elements()
        .find(|child| child.name != "text")
        .map(|child| child.name.clone())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A logged-in, bound, available session.
pub struct Session {
    pub conn: XmlConn<TlsTcp>,
    pub jid: String,
    pub mechanism: ScramHash,
    pub salted: Option<SaltedPassword>,
}

pub struct Credentials<'a> {
    pub username: &'a str,
    pub password: &'a str,
    /// SaltedPassword from an earlier login of this user, if any.
    pub cached: Option<SaltedPassword>,
}

pub async fn login(
    target: &LoginTarget,
    source: Option<IpAddr>,
    credentials: Credentials<'_>,
) -> Result<Session, ClientError> {
    match tokio::time::timeout(target.timeout, login_steps(target, source, credentials)).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::Timeout("login")),
    }
}

pub async fn connect_tcp(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, ClientError> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(ClientError::Connect)?;
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0)).map_err(ClientError::Connect)?;
    }
    let stream = socket.connect(addr).await.map_err(ClientError::Connect)?;
    // Latency is measured per message: no Nagle delay on our side.
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn login_steps(
    target: &LoginTarget,
    source: Option<IpAddr>,
    credentials: Credentials<'_>,
) -> Result<Session, ClientError> {
    let tcp = connect_tcp(target.addr, source).await?;
    let mut plain = XmlConn::new(tcp);
    let features = plain.open_stream(&target.domain).await?;
    if !features.has_child("starttls", ns::TLS) {
        return Err(ClientError::NoStarttls);
    }
    plain.send_element(&Element::new("starttls", ns::TLS)).await?;
    let reply = plain.next_element("STARTTLS").await?;
    if !reply.is("proceed", ns::TLS) {
        return Err(ClientError::Unexpected(reply.name, "STARTTLS"));
    }
    let server_name = rustls_pki_types::ServerName::try_from(target.domain.clone())
        .map_err(|_| ClientError::ServerName(target.domain.clone()))?;
    let tls = target
        .tls
        .connect(server_name, plain.io)
        .await
        .map_err(ClientError::Tls)?;
    let mut conn = XmlConn::new(tls);

    let features = conn.open_stream(&target.domain).await?;
    let offered: Vec<String> = features
        .get_child("mechanisms", ns::SASL)
        .map(|mechanisms| {
            mechanisms
                .elements()
                .filter(|m| m.is("mechanism", ns::SASL))
                .map(|m| m.text().trim().to_owned())
                .collect()
        })
        .unwrap_or_default();
    let hash = choose_mechanism(&offered).ok_or_else(|| ClientError::NoScram(offered.join(" ")))?;
    let salted = authenticate(&mut conn, hash, &credentials).await?;

    let features = conn.open_stream(&target.domain).await?;
    if !features.has_child("bind", ns::BIND) {
        return Err(ClientError::Bind("server offers no resource binding".to_owned()));
    }
    let bind = Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", "bind1")
        .with_child(
            Element::new("bind", ns::BIND).with_child(Element::new("resource", ns::BIND).with_text(&target.resource)),
        );
    conn.send_element(&bind).await?;
    let result = await_iq(&mut conn, "bind1", "resource binding").await?;
    let jid = result
        .get_child("bind", ns::BIND)
        .and_then(|bind| bind.get_child("jid", ns::BIND))
        .map(|jid| jid.text().trim().to_owned())
        .filter(|jid| !jid.is_empty())
        .ok_or_else(|| ClientError::Bind("bind result without a JID".to_owned()))?;

    // RFC 3921 session establishment, only where the server still requires it.
    if let Some(session) = features.get_child("session", ns::SESSION)
        && !session.has_child("optional", ns::SESSION)
    {
        let request = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", "sess1")
            .with_child(Element::new("session", ns::SESSION));
        conn.send_element(&request).await?;
        await_iq(&mut conn, "sess1", "session establishment").await?;
    }
    conn.send_element(&Element::new("presence", ns::CLIENT)).await?;
    Ok(Session {
        conn,
        jid,
        mechanism: hash,
        salted,
    })
}

/// SCRAM-SHA-256 when offered, else SCRAM-SHA-1.
pub fn choose_mechanism(offered: &[String]) -> Option<ScramHash> {
    [ScramHash::Sha256, ScramHash::Sha1]
        .into_iter()
        .find(|hash| offered.iter().any(|m| m == hash.mechanism()))
}

async fn authenticate(
    conn: &mut XmlConn<TlsTcp>,
    hash: ScramHash,
    credentials: &Credentials<'_>,
) -> Result<Option<SaltedPassword>, ClientError> {
    let mut scram = ScramClient::new(hash, credentials.username, credentials.password, sasl::random_nonce()?)?;
    if let Some(cached) = credentials.cached.clone() {
        scram.use_salted_password(cached);
    }
    let auth = Element::new("auth", ns::SASL)
        .with_attr("mechanism", hash.mechanism())
        .with_text(sasl::encode_payload(&scram.client_first()));
    conn.send_element(&auth).await?;
    let mut server_verified = false;
    let mut answered_first = false;
    loop {
        let element = conn.next_element("SASL").await?;
        if element.is("challenge", ns::SASL) {
            let data = sasl::decode_payload(&element.text())?;
            let response = if !answered_first {
                answered_first = true;
                scram.handle_server_first(&data)?
            } else {
                // Some servers send the server-final-message as a challenge and wait for an
                // empty response before <success/> (RFC 6120 §6.3.10 allows both).
                scram.verify_server_final(&data)?;
                server_verified = true;
                Vec::new()
            };
            let reply = Element::new("response", ns::SASL).with_text(sasl::encode_payload(&response));
            conn.send_element(&reply).await?;
        } else if element.is("success", ns::SASL) {
            let data = sasl::decode_payload(&element.text())?;
            if !server_verified {
                scram.verify_server_final(&data)?;
            }
            return Ok(scram.salted_password().cloned());
        } else if element.is("failure", ns::SASL) {
            return Err(ClientError::AuthFailed(first_child_name(&element)));
        } else {
            return Err(ClientError::Unexpected(element.name, "SASL"));
        }
    }
}

/// Wait for the iq result with this id; other stanzas arriving meanwhile are skipped.
async fn await_iq(conn: &mut XmlConn<TlsTcp>, id: &str, during: &'static str) -> Result<Element, ClientError> {
    loop {
        let element = conn.next_element(during).await?;
        if !element.is("iq", ns::CLIENT) || element.attr("id") != Some(id) {
            continue;
        }
        return match element.attr("type") {
            Some("result") => Ok(element),
            _ => Err(ClientError::Bind(
                element
                    .get_child("error", ns::CLIENT)
                    .map(first_child_name)
                    .unwrap_or_else(|| "error".to_owned()),
            )),
        };
    }
}

/// A reply to an iq the server asked us (XEP-0199 ping gets a result; anything else an
/// error), so servers that probe idle clients keep them.
pub fn answer_iq(request: &Element) -> Option<Vec<u8>> {
    let kind = request.attr("type")?;
    if kind != "get" && kind != "set" {
        return None;
    }
    let mut reply = Element::new("iq", ns::CLIENT)
        .with_opt_attr("to", request.attr("from"))
        .with_opt_attr("id", request.attr("id"));
    if request.has_child("ping", ns::PING) {
        reply.set_attr("type", "result");
    } else {
        reply.set_attr("type", "error");
        reply.push_child(
            Element::new("error", ns::CLIENT)
                .with_attr("type", "cancel")
                .with_child(Element::new("service-unavailable", ns::STANZAS_ERROR)),
        );
    }
    Some(reply.to_bytes(ns::CLIENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_scram_sha_256() {
        let offered = vec!["PLAIN".to_owned(), "SCRAM-SHA-1".to_owned(), "SCRAM-SHA-256".to_owned()];
        assert_eq!(choose_mechanism(&offered), Some(ScramHash::Sha256));
        let offered = vec!["SCRAM-SHA-1".to_owned(), "PLAIN".to_owned()];
        assert_eq!(choose_mechanism(&offered), Some(ScramHash::Sha1));
        assert_eq!(choose_mechanism(&["PLAIN".to_owned()]), None);
    }

    #[test]
    fn pings_get_a_result_and_other_requests_an_error() {
        let ping = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", "p1")
            .with_attr("from", "localhost")
            .with_child(Element::new("ping", ns::PING));
        let reply = String::from_utf8(answer_iq(&ping).unwrap()).unwrap();
        assert!(reply.contains("type='result'") && reply.contains("id='p1'") && reply.contains("to='localhost'"));
        let other = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", "v1")
            .with_child(Element::new("query", ns::VERSION));
        let reply = String::from_utf8(answer_iq(&other).unwrap()).unwrap();
        assert!(reply.contains("service-unavailable"));
        let result = Element::new("iq", ns::CLIENT).with_attr("type", "result");
        assert!(answer_iq(&result).is_none());
    }
}
