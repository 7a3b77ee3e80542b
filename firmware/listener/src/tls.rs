//! The TLS identity every service serves: key, certificate and bundle from the data dir's
//! certificate folder (`xmpp certs`), loaded by one function for clients, Call Bridges and
//! servers.

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsIdentityError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("the key does not fit the certificate or is unusable: {0}")]
    Config(#[from] rustls::Error),
}

/// Every certificate of a PEM file, in file order.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsIdentityError> {
    CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsIdentityError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

/// Our certificate chain and key, as `xmpp certs` configured them.
pub struct TlsIdentity {
    /// The certificate followed by the bundle's certificates in file order (intermediates,
    /// then the root, as `xmpp certs` requires).
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        TlsIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsIdentity {
    /// Load `configured`'s key, certificate and optional bundle (file names inside `certs_dir`).
    pub fn load(certs_dir: &Path, configured: &sb_store::TlsIdentity) -> Result<TlsIdentity, TlsIdentityError> {
        let cert_path = certs_dir.join(&configured.cert);
        let mut chain = read_certs(&cert_path)?;
        if chain.is_empty() {
            return Err(TlsIdentityError::NoCertificate { path: cert_path });
        }
        if let Some(bundle) = &configured.bundle {
            chain.extend(read_certs(&certs_dir.join(bundle))?);
        }
        let key_path = certs_dir.join(&configured.key);
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| TlsIdentityError::Read {
            path: key_path,
            reason: e.to_string(),
        })?;
        Ok(TlsIdentity { chain, key })
    }

    /// The rustls configuration clients and Call Bridges handshake with (TLS 1.2 and 1.3,
    /// ring, no client certificates).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsIdentityError> {
        let mut config = ServerConfig::builder_with_provider(Arc::new(server_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.ignore_client_order = true;
        Ok(Arc::new(config))
    }
}

/// ring's suites with the SHA-256 ones first: most clients list AES-256-GCM-SHA384 first, but
/// the SHA-256 suites are as safe and cost less per handshake (the key schedule hashes with
/// SHA-256, which current x86 CPUs run in hardware), which matters for login bursts.
fn server_provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|suite| {
        let common = match suite {
            rustls::SupportedCipherSuite::Tls12(suite) => &suite.common,
            rustls::SupportedCipherSuite::Tls13(suite) => &suite.common,
        };
        common.hash_provider.algorithm() != rustls::crypto::hash::HashAlgorithm::SHA256
    });
    provider
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured(bundle: Option<&str>) -> sb_store::TlsIdentity {
        sb_store::TlsIdentity {
            key: "a.key".to_owned(),
            cert: "a.crt".to_owned(),
            bundle: bundle.map(str::to_owned),
        }
    }

    #[test]
    fn the_chain_is_the_certificate_then_the_bundle_and_the_key_must_fit() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let other_key = rcgen::KeyPair::generate().unwrap();
        let root = rcgen::CertificateParams::new(vec!["root.example".to_owned()])
            .unwrap()
            .self_signed(&other_key)
            .unwrap();
        std::fs::write(dir.path().join("a.key"), key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("a.crt"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("bundle.pem"), root.pem()).unwrap();

        let identity = TlsIdentity::load(dir.path(), &configured(Some("bundle.pem"))).unwrap();
        assert_eq!(identity.chain, vec![cert.der().clone(), root.der().clone()]);
        assert!(identity.server_config().unwrap().ignore_client_order);

        std::fs::write(dir.path().join("a.key"), other_key.serialize_pem()).unwrap();
        let mismatched = TlsIdentity::load(dir.path(), &configured(None)).unwrap();
        assert!(matches!(mismatched.server_config(), Err(TlsIdentityError::Config(_))));

        std::fs::write(dir.path().join("a.crt"), "").unwrap();
        assert!(matches!(
            TlsIdentity::load(dir.path(), &configured(None)),
            Err(TlsIdentityError::NoCertificate { .. })
        ));
        assert!(matches!(
            TlsIdentity::load(dir.path(), &configured(Some("missing.pem"))),
            Err(TlsIdentityError::NoCertificate { .. })
        ));
    }
}
