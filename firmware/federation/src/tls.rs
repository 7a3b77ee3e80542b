//! TLS for server-to-server streams: our identity on both sides of a link, and the judgement
//! of the peer's certificate.
//!
//! rustls is told to accept any peer certificate during the handshake (signatures are still
//! checked), because the decision depends on things the handshake does not know: the domain
//! the peer claims (from the stream header or the dialback request), the `client-certs`
//! setting, and whether the certificate is only to be *named* right or also *trusted*. The
//! connection task asks [`TrustStore::evaluate`] once the handshake is done.

use crate::stream::PeerCertificate;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use sb_listener::tls::{TlsIdentity, read_certs};
use std::path::Path;
use std::sync::Arc;

/// Debian's (and most distributions') bundle of public roots.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// XEP-0368: the ALPN protocol id on direct-TLS server-to-server connections.
pub const ALPN_XMPP_SERVER: &[u8] = b"xmpp-server";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the key does not fit the certificate or is unusable: {0}")]
    Config(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Everything TLS on s2s needs, built once per settings snapshot.
#[derive(Clone)]
pub struct TlsSetup {
    /// Our side of incoming STARTTLS; asks for (but does not require) a client certificate.
    pub server: Option<Arc<ServerConfig>>,
    /// Our side of outgoing STARTTLS, presenting our certificate when we have one.
    pub client: Arc<ClientConfig>,
    /// The same with the XEP-0368 ALPN id, for `_xmpps-server` targets.
    pub client_direct: Arc<ClientConfig>,
    pub trust: Arc<TrustStore>,
}

impl TlsSetup {
    pub fn new(identity: Option<TlsIdentity>, trust: TrustStore) -> Result<TlsSetup, TlsError> {
        let provider = provider();
        let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
        let accept_any = Arc::new(AcceptAnyServerCert {
            algorithms: provider.signature_verification_algorithms,
        });
        let client_builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&versions)?
            .dangerous()
            .with_custom_certificate_verifier(accept_any);
        let (client, server) = match identity {
            Some(identity) => {
                let client = client_builder.with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())?;
                let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
                    .with_protocol_versions(&versions)?
                    .with_client_cert_verifier(Arc::new(AcceptAnyClientCert {
                        algorithms: provider.signature_verification_algorithms,
                    }))
                    .with_single_cert(identity.chain, identity.key)?;
                (client, Some(Arc::new(server)))
            }
            None => (client_builder.with_no_client_auth(), None),
        };
        let mut client_direct = client.clone();
        client_direct.alpn_protocols = vec![ALPN_XMPP_SERVER.to_vec()];
        Ok(TlsSetup {
            server,
            client: Arc::new(client),
            client_direct: Arc::new(client_direct),
            trust: Arc::new(trust),
        })
    }
}

/// The roots a peer's chain must lead to: the public roots (Mozilla's, compiled in, plus the
/// host's bundle file where there is one) and the admin's federation trust bundle.
pub struct TrustStore {
    verifier: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    pub roots: usize,
}

impl TrustStore {
    /// With `system`, the public roots: Mozilla's compiled in (the appliance has no bundle
    /// file) and the file `system` names when it exists; then the admin bundle. Unreadable
    /// files are logged and skipped, so a broken bundle weakens trust rather than stopping
    /// federation. Without `system` only the admin bundle counts (tests with a private CA).
    pub fn load(system: Option<&Path>, bundle: Option<&Path>) -> TrustStore {
        let mut roots = RootCertStore::empty();
        if system.is_some() {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for path in system.into_iter().chain(bundle) {
            if !path.exists() {
                if Some(path) == bundle {
                    log::warn!("federation trust bundle {} does not exist", path.display());
                }
                continue;
            }
            match read_certs(path) {
                Ok(certs) => {
                    let (added, ignored) = roots.add_parsable_certificates(certs);
                    log::debug!("trust: {added} root(s) from {} ({ignored} unusable)", path.display());
                }
                Err(e) => log::warn!("trust: {e}"),
            }
        }
        let count = roots.len();
        let verifier = if roots.is_empty() {
            None
        } else {
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| log::warn!("trust: cannot build a verifier: {e}"))
                .ok()
        };
        TrustStore { verifier, roots: count }
    }

    /// Judge a peer's chain (leaf first) for `domain`: the names it carries, and whether it
    /// leads to a trusted root and names the domain (PKIX, RFC 6125).
    pub fn evaluate(&self, chain: &[CertificateDer<'_>], domain: Option<&str>) -> PeerCertificate {
        let Some(leaf) = chain.first() else {
            return PeerCertificate::default();
        };
        let names = certificate_names(leaf);
        let chain_trusted = match (
            &self.verifier,
            domain.and_then(|d| ServerName::try_from(d.to_owned()).ok()),
        ) {
            (Some(verifier), Some(name)) => {
                match verifier.verify_server_cert(leaf, &chain[1..], &name, &[], UnixTime::now()) {
                    Ok(_) => true,
                    Err(e) => {
                        log::debug!("certificate for {:?} not trusted: {e}", domain);
                        false
                    }
                }
            }
            _ => false,
        };
        PeerCertificate { names, chain_trusted }
    }
}

/// DNS names from the subject alternative names, lower case.
pub fn certificate_names(der: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    names
}

/// Handshake-time server verifier: signatures checked, identity decided later.
#[derive(Debug)]
struct AcceptAnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Handshake-time client verifier: asks for a certificate, accepts any (or none).
#[derive(Debug)]
struct AcceptAnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AcceptAnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selfsigned(names: &[&str]) -> (CertificateDer<'static>, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.der().clone(), cert.pem())
    }

    #[test]
    fn names_come_from_the_san_and_trust_from_the_bundle() {
        let (der, pem) = selfsigned(&["B.example", "*.rooms.b.example"]);
        assert_eq!(certificate_names(&der), vec!["b.example", "*.rooms.b.example"]);
        let untrusted = TrustStore::load(None, None);
        let judged = untrusted.evaluate(std::slice::from_ref(&der), Some("b.example"));
        assert!(judged.names_domain("b.example") && !judged.chain_trusted);

        // The admin's bundle makes the self-signed certificate a trusted root.
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("peers.pem");
        std::fs::write(&bundle, pem).unwrap();
        let trusted = TrustStore::load(None, Some(&bundle));
        assert_eq!(trusted.roots, 1);
        assert!(
            trusted
                .evaluate(std::slice::from_ref(&der), Some("b.example"))
                .authenticates("b.example")
        );
        // Trusted chain, wrong name: not trusted for that domain.
        assert!(
            !trusted
                .evaluate(std::slice::from_ref(&der), Some("c.example"))
                .chain_trusted
        );
        assert_eq!(trusted.evaluate(&[], Some("b.example")), PeerCertificate::default());
    }

    #[test]
    fn configs_build_with_and_without_an_identity() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let identity = TlsIdentity {
            chain: vec![cert.der().clone()],
            key: rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        };
        let setup = TlsSetup::new(Some(identity), TrustStore::load(None, None)).unwrap();
        assert!(setup.server.is_some());
        assert_eq!(setup.client_direct.alpn_protocols, vec![ALPN_XMPP_SERVER.to_vec()]);
        let anonymous = TlsSetup::new(None, TrustStore::load(None, None)).unwrap();
        assert!(anonymous.server.is_none());
    }
}
