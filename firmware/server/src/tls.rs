//! The TLS identity served on STARTTLS: key, certificate and bundle from the data dir's
//! certificate folder, as a rustls configuration (TLS 1.2 and 1.3, ring provider).

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("the key does not fit the certificate or is unusable: {0}")]
    Config(#[from] rustls::Error),
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsSetupError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })
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

/// Load `key`, `cert` and the optional `bundle` (file names inside `certs_dir`).
///
/// The chain sent to clients is the certificate followed by the bundle's certificates in
/// file order (intermediates, then the root, as `xmpp certs` requires).
pub fn load_server_config(
    certs_dir: &Path,
    key: &str,
    cert: &str,
    bundle: Option<&str>,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let key_path = certs_dir.join(key);
    let cert_path = certs_dir.join(cert);
    let mut chain = read_certs(&cert_path)?;
    if chain.is_empty() {
        return Err(TlsSetupError::NoCertificate { path: cert_path });
    }
    if let Some(bundle) = bundle {
        chain.extend(read_certs(&certs_dir.join(bundle))?);
    }
    let private_key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| TlsSetupError::Read {
        path: key_path.clone(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(server_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)?;
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}
