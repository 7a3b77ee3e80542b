//! Keys and certificates in the data dir's certificate folder, as plain functions: the `pki`
//! commands use them, and xmppd calls [`selfsigned`] on first start.

use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

/// The certificate folder's name inside the data dir.
pub const CERTS_DIR_NAME: &str = "certs";

/// How long a generated self-signed certificate is valid. `xmpp status` warns 30 days before.
pub const SELF_SIGNED_DAYS: i64 = 365;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("invalid file name '{0}': expected a plain name inside the certificate folder")]
    BadFileName(String),
    #[error("no such file: {0}")]
    NotFound(String),
    #[error("cannot read {file}: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("cannot write {file}: {source}")]
    Write { file: String, source: std::io::Error },
    #[error("{0}: no certificate found (PEM 'CERTIFICATE' block expected)")]
    NoCertificate(String),
    #[error("{file}: not a valid certificate: {reason}")]
    BadCertificate { file: String, reason: String },
    #[error("{file}: not a usable private key: {reason}")]
    BadKey { file: String, reason: String },
    #[error("key {key} does not match certificate {cert}")]
    KeyMismatch { key: String, cert: String },
    #[error("chain incomplete: no certificate for issuer '{issuer}' in {bundle}")]
    IssuerMissing { issuer: String, bundle: String },
    #[error(
        "chain out of order in {bundle}: '{expected}' must come next, found '{found}' (intermediates first, root last)"
    )]
    OutOfOrder {
        bundle: String,
        expected: String,
        found: String,
    },
    #[error("signature of '{subject}' does not verify with the key of '{issuer}'")]
    BadSignature { subject: String, issuer: String },
    #[error("'{0}' issues certificates but is not a CA certificate")]
    NotCa(String),
    #[error("chain incomplete: the last certificate of {bundle} ('{subject}') is not a self-signed root")]
    RootNotLast { bundle: String, subject: String },
    #[error("certificate '{subject}' expired on {date}")]
    Expired { subject: String, date: String },
    #[error("invalid {what} '{value}': {reason}")]
    BadName {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("cannot generate the certificate: {0}")]
    Generate(String),
    #[error("{0} already exists: choose another basename, or delete the file first")]
    Exists(String),
    #[error("{0}: no certificate, certificate request or private key found (PEM expected)")]
    NothingToInspect(String),
}

/// What `xmpp status` and `pki inspect` show of a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSummary {
    /// RFC 4514 form, e.g. `CN=example.com`.
    pub subject: String,
    pub issuer: String,
    /// DNS names and IP addresses of the subjectAltName extension.
    pub sans: Vec<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
}

/// The validity period of a generated certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From an hour ago (tolerates a little clock skew between peers) for `days` days.
    pub fn days_from_now(days: i64) -> Validity {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(days),
        }
    }
}

pub fn certs_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(CERTS_DIR_NAME)
}

/// The path of `name` inside `certs_dir`, refusing anything but a plain file name so a command
/// cannot reach outside the folder.
pub fn cert_file(certs_dir: &Path, name: &str) -> Result<PathBuf, PkiError> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !plain {
        return Err(PkiError::BadFileName(name.to_owned()));
    }
    Ok(certs_dir.join(name))
}

/// Generate an ECDSA P-256 key and a self-signed certificate for `cn` (and `sans`; the CN when
/// empty), valid for [`SELF_SIGNED_DAYS`]; write `<basename>.key` (mode 0600) and
/// `<basename>.crt` in `certs_dir` (created when missing). Returns (key path, certificate path).
pub fn selfsigned(certs_dir: &Path, basename: &str, cn: &str, sans: &[String]) -> Result<(PathBuf, PathBuf), PkiError> {
    selfsigned_with_validity(certs_dir, basename, cn, sans, Validity::days_from_now(SELF_SIGNED_DAYS))
}

/// [`selfsigned`] with a chosen validity period.
pub fn selfsigned_with_validity(
    certs_dir: &Path,
    basename: &str,
    cn: &str,
    sans: &[String],
    validity: Validity,
) -> Result<(PathBuf, PathBuf), PkiError> {
    let key_path = cert_file(certs_dir, &format!("{basename}.key"))?;
    let cert_path = cert_file(certs_dir, &format!("{basename}.crt"))?;
    let (key_pem, cert_pem) = generate_self_signed(cn, sans, validity)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(certs_dir)
        .map_err(|source| PkiError::Write {
            file: certs_dir.display().to_string(),
            source,
        })?;
    write_atomically(&key_path, key_pem.as_bytes(), 0o600)?;
    write_atomically(&cert_path, cert_pem.as_bytes(), 0o644)?;
    log::info!("generated self-signed certificate {} for CN={cn}", cert_path.display());
    Ok((key_path, cert_path))
}

fn generate_self_signed(cn: &str, sans: &[String], validity: Validity) -> Result<(String, String), PkiError> {
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    };
    if cn.is_empty() {
        return Err(PkiError::BadName {
            what: "CN",
            value: String::new(),
            reason: "empty".to_owned(),
        });
    }
    let names: Vec<String> = if sans.is_empty() {
        vec![cn.to_owned()]
    } else {
        sans.to_vec()
    };
    let mut params = CertificateParams::default();
    params.subject_alt_names = names.iter().map(|name| san_entry(name)).collect::<Result<_, _>>()?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, cn);
    params.distinguished_name = subject;
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // clientAuth too: the same identity serves node-to-node mutual TLS.
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.serial_number = Some(random_serial()?.into());
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| PkiError::Generate(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| PkiError::Generate(e.to_string()))?;
    Ok((key.serialize_pem(), cert.pem()))
}

/// One subjectAltName: an IP address, or a DNS name (a leading `*.` wildcard allowed).
pub(crate) fn san_entry(name: &str) -> Result<rcgen::SanType, PkiError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(rcgen::SanType::IpAddress(ip));
    }
    let bad = |reason: &str| PkiError::BadName {
        what: "subjectAltName",
        value: name.to_owned(),
        reason: reason.to_owned(),
    };
    let host = name.strip_prefix("*.").unwrap_or(name);
    if host.is_empty() || host.len() > 253 {
        return Err(bad("a DNS name or an IP address is expected"));
    }
    for label in host.split('.') {
        let label_ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !label_ok {
            return Err(bad("a DNS name or an IP address is expected"));
        }
    }
    let ia5 = rcgen::string::Ia5String::try_from(name.to_owned()).map_err(|e| bad(&e.to_string()))?;
    Ok(rcgen::SanType::DnsName(ia5))
}

/// 16 random bytes, high bit clear so the DER INTEGER stays positive.
fn random_serial() -> Result<Vec<u8>, PkiError> {
    let mut serial = vec![0u8; 16];
    SystemRandom::new()
        .fill(&mut serial)
        .map_err(|_| PkiError::Generate("no system randomness".to_owned()))?;
    serial[0] = (serial[0] & 0x7f) | 0x01;
    Ok(serial)
}

/// Write next to the target, fsync, then rename, so the daemon never reads half a file.
pub(super) fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    sb_appliance::files::write_atomic(path, contents, mode).map_err(|source| PkiError::Write {
        file: display_name(path),
        source,
    })
}

/// The first certificate of a PEM file.
pub fn inspect(path: &Path) -> Result<CertSummary, PkiError> {
    let ders = read_certificates(path)?;
    let Some(first) = ders.first() else {
        return Err(PkiError::NoCertificate(display_name(path)));
    };
    let cert = parse_certificate(path, first)?;
    Ok(summarize(&cert))
}

/// Every certificate of a PEM file, in file order.
pub fn inspect_all(path: &Path) -> Result<Vec<CertSummary>, PkiError> {
    read_certificates(path)?
        .iter()
        .map(|der| parse_certificate(path, der).map(|cert| summarize(&cert)))
        .collect()
}

pub(super) fn summarize(cert: &X509Certificate<'_>) -> CertSummary {
    let mut sans = Vec::new();
    if let Ok(Some(extension)) = cert.subject_alternative_name() {
        for name in &extension.value.general_names {
            match name {
                GeneralName::DNSName(dns) => sans.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        sans.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    CertSummary {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        sans,
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        is_ca: cert.is_ca(),
    }
}

pub(super) fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from)
}

/// Ok when the private key in `key` belongs to the (first) certificate in `crt`. The key is
/// loaded through rustls' ring provider, as xmppd will load it, so a key that passes here is
/// one the daemon can serve (PKCS#8, PKCS#1 RSA or SEC1 EC; RSA, ECDSA or Ed25519).
pub fn key_matches(key: &Path, crt: &Path) -> Result<(), PkiError> {
    let key_bytes = read_file(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| PkiError::BadKey {
        file: display_name(key),
        reason: e.to_string(),
    })?;
    let signing_key = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| PkiError::BadKey {
            file: display_name(key),
            reason: e.to_string(),
        })?;
    let Some(key_spki) = signing_key.public_key() else {
        return Err(PkiError::BadKey {
            file: display_name(key),
            reason: "cannot derive its public key".to_owned(),
        });
    };
    let ders = read_certificates(crt)?;
    let Some(first) = ders.first() else {
        return Err(PkiError::NoCertificate(display_name(crt)));
    };
    let cert = parse_certificate(crt, first)?;
    if cert.tbs_certificate.subject_pki.raw == key_spki.as_ref() {
        Ok(())
    } else {
        Err(PkiError::KeyMismatch {
            key: display_name(key),
            cert: display_name(crt),
        })
    }
}

/// Ok when `bundle` (intermediates first, root last) chains the (first) certificate in `crt`:
/// each certificate is issued and signed by the next, every issuer is a CA, the last one is a
/// self-signed root, and none has expired.
pub fn chain_ok(crt: &Path, bundle: &Path) -> Result<(), PkiError> {
    let leaf_ders = read_certificates(crt)?;
    let Some(leaf_der) = leaf_ders.first() else {
        return Err(PkiError::NoCertificate(display_name(crt)));
    };
    let leaf = parse_certificate(crt, leaf_der)?;
    let bundle_ders = read_certificates(bundle)?;
    let chain = bundle_ders
        .iter()
        .map(|der| parse_certificate(bundle, der))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(root) = chain.last() else {
        return Err(PkiError::NoCertificate(display_name(bundle)));
    };
    let now = OffsetDateTime::now_utc();
    check_not_expired(&leaf, now)?;
    let mut child = &leaf;
    for (position, issuer) in chain.iter().enumerate() {
        check_not_expired(issuer, now)?;
        if child.issuer().as_raw() != issuer.subject().as_raw() {
            let elsewhere = chain
                .iter()
                .skip(position + 1)
                .any(|later| later.subject().as_raw() == child.issuer().as_raw());
            return Err(if elsewhere {
                PkiError::OutOfOrder {
                    bundle: display_name(bundle),
                    expected: child.issuer().to_string(),
                    found: issuer.subject().to_string(),
                }
            } else {
                PkiError::IssuerMissing {
                    issuer: child.issuer().to_string(),
                    bundle: display_name(bundle),
                }
            });
        }
        if child.verify_signature(Some(issuer.public_key())).is_err() {
            return Err(PkiError::BadSignature {
                subject: child.subject().to_string(),
                issuer: issuer.subject().to_string(),
            });
        }
        if !issuer.is_ca() {
            return Err(PkiError::NotCa(issuer.subject().to_string()));
        }
        child = issuer;
    }
    let self_signed = root.subject().as_raw() == root.issuer().as_raw() && root.verify_signature(None).is_ok();
    if !self_signed {
        return Err(PkiError::RootNotLast {
            bundle: display_name(bundle),
            subject: root.subject().to_string(),
        });
    }
    Ok(())
}

fn check_not_expired(cert: &X509Certificate<'_>, now: OffsetDateTime) -> Result<(), PkiError> {
    let not_after = cert.validity().not_after.to_datetime();
    if not_after < now {
        return Err(PkiError::Expired {
            subject: cert.subject().to_string(),
            date: format_time(not_after),
        });
    }
    Ok(())
}

/// `2025-03-01 12:00:00 UTC`, the one date format of the command line.
pub fn format_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    at.format(&format).unwrap_or_else(|_| at.unix_timestamp().to_string())
}

pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, PkiError> {
    fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            PkiError::NotFound(display_name(path))
        } else {
            PkiError::Read {
                file: display_name(path),
                source,
            }
        }
    })
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let bytes = read_file(path)?;
    CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::BadCertificate {
            file: display_name(path),
            reason: e.to_string(),
        })
}

pub(super) fn parse_certificate<'a>(path: &Path, der: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, PkiError> {
    x509_parser::parse_x509_certificate(der.as_ref())
        .map(|(_, cert)| cert)
        .map_err(|e| PkiError::BadCertificate {
            file: display_name(path),
            reason: e.to_string(),
        })
}

/// Files are named by their name in messages: they all live in the certificate folder.
pub(super) fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
