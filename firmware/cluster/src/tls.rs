//! Mutual TLS for node-to-node links: each node presents its certificate and accepts a peer
//! only if the peer's chain leads to the cluster trust bundle.
//!
//! Names are not checked: nodes are reached by address and present the service certificate
//! (`xmpp certs`), which names the XMPP domain, not the node. Membership of the trust bundle
//! is what admits a peer, as the SPEC says.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what}: {reason}")]
    Read { what: String, reason: String },
    #[error("{0} holds no certificate")]
    Empty(String),
    #[error("the trust bundle holds no usable certificate")]
    NoTrust,
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// This node's certificate chain (leaf first) and key, and the trusted roots.
pub struct TlsIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub trust: Vec<CertificateDer<'static>>,
}

fn certs_from_pem(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Read {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty(what.to_owned()));
    }
    Ok(certs)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        what: path.display().to_string(),
        reason: e.to_string(),
    })
}

impl TlsIdentity {
    /// From PEM text: the certificate (optionally followed by intermediates), the key and the
    /// trust bundle.
    pub fn from_pem(cert: &[u8], key: &[u8], trust: &[u8]) -> Result<TlsIdentity, TlsError> {
        let chain = certs_from_pem("the certificate", cert)?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Read {
            what: "the key".to_owned(),
            reason: e.to_string(),
        })?;
        let trust = certs_from_pem("the trust bundle", trust)?;
        Ok(TlsIdentity { chain, key, trust })
    }

    /// From the files `xmpp certs` and `xmpp cluster trust` name.
    pub fn from_files(cert: &Path, key: &Path, trust: &Path) -> Result<TlsIdentity, TlsError> {
        Self::from_pem(&read(cert)?, &read(key)?, &read(trust)?)
    }
}

pub(crate) struct TlsConfigs {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

/// The name sent in SNI; never checked (see the module comment).
pub(crate) fn peer_server_name() -> ServerName<'static> {
    ServerName::try_from("switchboard-cluster").expect("a valid DNS name")
}

impl TlsConfigs {
    pub fn new(identity: &TlsIdentity) -> Result<TlsConfigs, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(identity.trust.iter().cloned());
        if added == 0 {
            return Err(TlsError::NoTrust);
        }
        let roots = Arc::new(roots);
        let setup = |e: &dyn std::fmt::Display| TlsError::Setup(e.to_string());
        let client_verifier = WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
            .build()
            .map_err(|e| setup(&e))?;
        let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| setup(&e))?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|e| setup(&e))?;
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
            .build()
            .map_err(|e| setup(&e))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| setup(&e))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnlyVerifier { inner }))
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|e| setup(&e))?;
        Ok(TlsConfigs {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// WebPKI chain verification against the trust bundle, without the name check.
#[derive(Debug)]
struct ChainOnlyVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name: a name error means the chain is trusted.
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Ok(verified) => Ok(verified),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
