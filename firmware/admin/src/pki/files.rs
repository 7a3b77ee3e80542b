//! `pki csr`, `pki list` and `pki inspect`: making certificate requests and telling what the
//! files in the certificate folder are.

use super::certs::{
    CertSummary, PkiError, cert_file, display_name, parse_certificate, read_file, san_entry, write_atomically,
};
use super::format_time;
use rustls_pki_types::pem::SectionKind;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

/// The upper bound X.520 sets on name attributes (ub-common-name and friends).
const MAX_ATTRIBUTE_CHARS: usize = 64;

/// The subject of a certificate request, as `pki csr` takes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CsrSubject {
    pub cn: String,
    pub o: Option<String>,
    pub ou: Option<String>,
    /// Two letters, upper case.
    pub c: Option<String>,
    pub st: Option<String>,
    pub l: Option<String>,
}

impl CsrSubject {
    /// Every attribute is non-empty, short and printable; C is a two-letter code.
    pub fn check(&self) -> Result<(), PkiError> {
        let attributes = [
            ("CN", Some(&self.cn)),
            ("O", self.o.as_ref()),
            ("OU", self.ou.as_ref()),
            ("C", self.c.as_ref()),
            ("ST", self.st.as_ref()),
            ("L", self.l.as_ref()),
        ];
        for (what, value) in attributes {
            let Some(value) = value else { continue };
            let bad = |reason: &str| PkiError::BadName {
                what,
                value: value.clone(),
                reason: reason.to_owned(),
            };
            if value.is_empty() {
                return Err(bad("empty"));
            }
            if value.chars().count() > MAX_ATTRIBUTE_CHARS {
                return Err(bad("longer than 64 characters"));
            }
            if value.chars().any(char::is_control) {
                return Err(bad("control characters"));
            }
        }
        if let Some(country) = &self.c
            && !(country.len() == 2 && country.chars().all(|c| c.is_ascii_uppercase()))
        {
            return Err(PkiError::BadName {
                what: "C",
                value: country.clone(),
                reason: "a two-letter country code is expected, e.g. C:GB".to_owned(),
            });
        }
        Ok(())
    }

    fn distinguished_name(&self) -> Result<rcgen::DistinguishedName, PkiError> {
        use rcgen::{DnType, DnValue};
        let mut name = rcgen::DistinguishedName::new();
        if let Some(country) = &self.c {
            let printable = rcgen::string::PrintableString::try_from(country.as_str())
                .map_err(|e| PkiError::Generate(e.to_string()))?;
            name.push(DnType::CountryName, DnValue::PrintableString(printable));
        }
        for (kind, value) in [
            (DnType::StateOrProvinceName, &self.st),
            (DnType::LocalityName, &self.l),
            (DnType::OrganizationName, &self.o),
            (DnType::OrganizationalUnitName, &self.ou),
        ] {
            if let Some(value) = value {
                name.push(kind, value.as_str());
            }
        }
        name.push(DnType::CommonName, self.cn.as_str());
        Ok(name)
    }
}

/// The private key `pki csr` makes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyType {
    /// Small and fast; every current CA signs it.
    #[default]
    EcdsaP256,
    /// CMS's own key type: what a CA set up for Cisco equipment expects.
    Rsa2048,
}

impl KeyType {
    /// The word after `key:` on the command line.
    pub fn parse(word: &str) -> Option<KeyType> {
        match word.to_ascii_lowercase().as_str() {
            "ecdsa-p256" | "ecdsa" | "p256" => Some(KeyType::EcdsaP256),
            "rsa2048" | "rsa" | "rsa-2048" => Some(KeyType::Rsa2048),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ECDSA P-256",
            KeyType::Rsa2048 => "RSA 2048",
        }
    }

    /// A new key of this type, ready for rcgen to sign with (through ring).
    fn generate(self) -> Result<rcgen::KeyPair, PkiError> {
        let failed = |e: &dyn std::fmt::Display| PkiError::Generate(e.to_string());
        match self {
            KeyType::EcdsaP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| failed(&e)),
            KeyType::Rsa2048 => {
                // ring signs with RSA keys but cannot make them: the RustCrypto `rsa` crate
                // generates the key, ring does everything after (signing, and xmppd serving it).
                use rsa::pkcs8::EncodePrivateKey;
                let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).map_err(|e| failed(&e))?;
                let pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).map_err(|e| failed(&e))?;
                rcgen::KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).map_err(|e| failed(&e))
            }
        }
    }
}

/// Generate a key (ECDSA P-256 or RSA 2048) and a certificate request for it; write
/// `<basename>.key` (mode 0600) and `<basename>.csr`. The SANs default to the CN when it is a DNS name or an address
/// (CAs ignore the CN). Refuses to overwrite either file: a key may be the one in use.
pub fn csr(
    certs_dir: &Path,
    basename: &str,
    subject: &CsrSubject,
    sans: &[String],
    key_type: KeyType,
) -> Result<(PathBuf, PathBuf), PkiError> {
    let key_path = cert_file(certs_dir, &format!("{basename}.key"))?;
    let csr_path = cert_file(certs_dir, &format!("{basename}.csr"))?;
    subject.check()?;
    for path in [&key_path, &csr_path] {
        if path.exists() {
            return Err(PkiError::Exists(display_name(path)));
        }
    }
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = subject.distinguished_name()?;
    params.subject_alt_names = if sans.is_empty() {
        san_entry(&subject.cn).into_iter().collect()
    } else {
        sans.iter().map(|name| san_entry(name)).collect::<Result<_, _>>()?
    };
    let key = key_type.generate()?;
    let request = params
        .serialize_request(&key)
        .and_then(|request| request.pem())
        .map_err(|e| PkiError::Generate(e.to_string()))?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(certs_dir)
        .map_err(|source| PkiError::Write {
            file: certs_dir.display().to_string(),
            source,
        })?;
    write_atomically(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomically(&csr_path, request.as_bytes(), 0o644)?;
    log::info!(
        "generated key {} and request {}",
        key_path.display(),
        csr_path.display()
    );
    Ok((key_path, csr_path))
}

/// What a file in the certificate folder holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Key,
    Cert,
    Csr,
    /// More than one certificate: a chain.
    Bundle,
    /// No PEM section we use.
    Unknown,
}

impl FileKind {
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Key => "key",
            FileKind::Cert => "cert",
            FileKind::Csr => "csr",
            FileKind::Bundle => "bundle",
            FileKind::Unknown => "unknown",
        }
    }
}

/// One line of `pki list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub kind: FileKind,
    /// Key type, subject and expiry, or why the file is unknown.
    pub detail: String,
}

/// The PEM sections of a file, in order. Anything else in the file (text before the first
/// `-----BEGIN`, comments) is skipped, as every PEM reader does.
fn sections(bytes: &[u8]) -> Result<Vec<(SectionKind, Vec<u8>)>, String> {
    let mut reader = bytes;
    let mut found = Vec::new();
    while let Some(section) = rustls_pki_types::pem::from_buf(&mut reader).map_err(|e| e.to_string())? {
        found.push(section);
    }
    Ok(found)
}

fn is_private_key(kind: SectionKind) -> bool {
    matches!(
        kind,
        SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
    )
}

/// Every regular file of the certificate folder (hidden and temporary files aside), sorted by
/// name. A missing folder is an empty one.
pub fn list(certs_dir: &Path, now: OffsetDateTime) -> Result<Vec<FileEntry>, PkiError> {
    let entries = match fs::read_dir(certs_dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PkiError::Read {
                file: display_name(certs_dir),
                source,
            });
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| PkiError::Read {
            file: display_name(certs_dir),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.file_type().is_ok_and(|kind| kind.is_file()) {
            continue;
        }
        files.push(describe(&entry.path(), name, now));
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

fn describe(path: &Path, name: String, now: OffsetDateTime) -> FileEntry {
    let unknown = |detail: String| FileEntry {
        name: name.clone(),
        kind: FileKind::Unknown,
        detail,
    };
    let bytes = match read_file(path) {
        Ok(bytes) => bytes,
        Err(err) => return unknown(err.to_string()),
    };
    let sections = match sections(&bytes) {
        Ok(sections) => sections,
        Err(reason) => return unknown(format!("not PEM: {reason}")),
    };
    let certificates: Vec<&[u8]> = sections
        .iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| der.as_slice())
        .collect();
    if sections.iter().any(|(kind, _)| is_private_key(*kind)) {
        let detail = private_key_type(&bytes).unwrap_or_else(|reason| format!("unusable: {reason}"));
        return FileEntry {
            name,
            kind: FileKind::Key,
            detail,
        };
    }
    if let Some((_, der)) = sections.iter().find(|(kind, _)| *kind == SectionKind::Csr) {
        let detail = match X509CertificationRequest::from_der(der) {
            Ok((_, request)) => request.certification_request_info.subject.to_string(),
            Err(err) => format!("unreadable: {err}"),
        };
        return FileEntry {
            name,
            kind: FileKind::Csr,
            detail,
        };
    }
    let summaries: Result<Vec<CertSummary>, PkiError> = certificates
        .iter()
        .map(|der| {
            let der = CertificateDer::from(*der);
            parse_certificate(path, &der).map(|cert| super::certs::summarize(&cert))
        })
        .collect();
    match (certificates.len(), summaries) {
        (0, _) => unknown("no certificate, request or private key".to_owned()),
        (_, Err(err)) => unknown(err.to_string()),
        (1, Ok(summaries)) => FileEntry {
            name,
            kind: FileKind::Cert,
            detail: summaries
                .first()
                .map(|summary| format!("{}, {}", summary.subject, expiry(summary.not_after, now)))
                .unwrap_or_default(),
        },
        (count, Ok(summaries)) => FileEntry {
            name,
            kind: FileKind::Bundle,
            detail: format!(
                "{count} certificates: {}",
                summaries
                    .iter()
                    .map(|summary| summary.subject.as_str())
                    .collect::<Vec<_>>()
                    .join(" < ")
            ),
        },
    }
}

fn expiry(not_after: OffsetDateTime, now: OffsetDateTime) -> String {
    if not_after <= now {
        format!("EXPIRED on {}", format_time(not_after))
    } else {
        format!("expires {}", format_time(not_after))
    }
}

/// The header CMS's `pki list` starts with; scripts written for CMS look for it.
pub const LIST_HEADER: &str = "User supplied certificates and keys:";

/// `pki list`: CMS's header and the file names, one per line, then one aligned detail line per
/// file (kind, then key type, subject and expiry).
pub fn render_list(files: &[FileEntry]) -> String {
    if files.is_empty() {
        return format!("{LIST_HEADER}\n(no files in the certificate folder)");
    }
    let width = files.iter().map(|file| file.name.len()).max().unwrap_or(0);
    let names = files.iter().map(|file| file.name.clone());
    let details = files
        .iter()
        .map(|file| format!("{:<width$}  {:<7} {}", file.name, file.kind.name(), file.detail))
        .map(|line| line.trim_end().to_owned());
    std::iter::once(LIST_HEADER.to_owned())
        .chain(names)
        .chain(std::iter::once(String::new()))
        .chain(std::iter::once("Detail:".to_owned()))
        .chain(details)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The key type of a PEM private key, loaded the way xmppd loads it.
fn private_key_type(pem: &[u8]) -> Result<String, String> {
    use rustls_pki_types::pem::PemObject;
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| e.to_string())?;
    let signing_key = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| e.to_string())?;
    let Some(spki) = signing_key.public_key() else {
        return Ok(format!("{:?} private key", signing_key.algorithm()));
    };
    match SubjectPublicKeyInfo::from_der(spki.as_ref()) {
        Ok((_, spki)) => Ok(format!("{} private key", key_type(&spki))),
        Err(_) => Ok(format!("{:?} private key", signing_key.algorithm())),
    }
}

/// `ECDSA P-256`, `RSA 2048`, `Ed25519`, or the algorithm's OID.
fn key_type(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
        match curve {
            Some(oid) if oid == OID_EC_P256 => "ECDSA P-256".to_owned(),
            Some(oid) if oid == OID_NIST_EC_P384 => "ECDSA P-384".to_owned(),
            Some(oid) if oid == OID_NIST_EC_P521 => "ECDSA P-521".to_owned(),
            Some(oid) => format!("ECDSA (curve {oid})"),
            None => "ECDSA".to_owned(),
        }
    } else if *algorithm == OID_PKCS1_RSAENCRYPTION {
        match spki.parsed() {
            Ok(key) => format!("RSA {}", key.key_size()),
            Err(_) => "RSA".to_owned(),
        }
    } else if *algorithm == OID_SIG_ED25519 {
        "Ed25519".to_owned()
    } else {
        format!("unknown ({algorithm})")
    }
}

/// `AB:CD:...`, as browsers and `openssl x509 -fingerprint -sha256` show it.
fn sha256_fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn row(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "{label:<12}: {value}");
}

/// `pki inspect <file>`: every certificate of a certificate or bundle file, a request's subject
/// and names, or a private key's type (never the key).
pub fn inspect_text(path: &Path, now: OffsetDateTime) -> Result<String, PkiError> {
    let bytes = read_file(path)?;
    let sections = sections(&bytes).map_err(|reason| PkiError::BadCertificate {
        file: display_name(path),
        reason,
    })?;
    let mut out = String::new();
    if sections.iter().any(|(kind, _)| is_private_key(*kind)) {
        let key_type = private_key_type(&bytes).map_err(|reason| PkiError::BadKey {
            file: display_name(path),
            reason,
        })?;
        row(&mut out, "Private key", &key_type);
    }
    for (_, der) in sections.iter().filter(|(kind, _)| *kind == SectionKind::Csr) {
        let (_, request) = X509CertificationRequest::from_der(der).map_err(|e| PkiError::BadCertificate {
            file: display_name(path),
            reason: e.to_string(),
        })?;
        let info = &request.certification_request_info;
        row(&mut out, "Request for", &info.subject.to_string());
        let mut sans = Vec::new();
        for extension in request.requested_extensions().into_iter().flatten() {
            if let ParsedExtension::SubjectAlternativeName(names) = extension {
                sans.extend(names.general_names.iter().filter_map(general_name));
            }
        }
        row(&mut out, "SANs", &list_or_none(&sans));
        row(&mut out, "Key type", &key_type(&info.subject_pki));
        let signature = if request.verify_signature().is_ok() {
            "valid"
        } else {
            "INVALID"
        };
        row(&mut out, "Signature", signature);
    }
    let certificates: Vec<&Vec<u8>> = sections
        .iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| der)
        .collect();
    for (index, der) in certificates.iter().enumerate() {
        let der = CertificateDer::from(der.as_slice());
        let cert = parse_certificate(path, &der)?;
        let summary = super::certs::summarize(&cert);
        if certificates.len() > 1 {
            let _ = writeln!(out, "Certificate {} of {}", index + 1, certificates.len());
        }
        row(&mut out, "Subject", &summary.subject);
        row(&mut out, "Issuer", &summary.issuer);
        row(&mut out, "SANs", &list_or_none(&summary.sans));
        row(&mut out, "Valid from", &format_time(summary.not_before));
        let until = format_time(summary.not_after);
        if summary.not_after <= now {
            row(&mut out, "Valid until", &format!("{until} (EXPIRED)"));
        } else {
            let days = (summary.not_after - now).whole_days();
            row(&mut out, "Valid until", &format!("{until} (in {days} days)"));
        }
        row(&mut out, "CA", if summary.is_ca { "yes" } else { "no" });
        row(&mut out, "Key type", &key_type(cert.public_key()));
        row(&mut out, "SHA-256", &sha256_fingerprint(der.as_ref()));
    }
    if out.is_empty() {
        return Err(PkiError::NothingToInspect(display_name(path)));
    }
    out.truncate(out.trim_end().len());
    Ok(out)
}

fn general_name(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::DNSName(dns) => Some((*dns).to_owned()),
        GeneralName::IPAddress(bytes) => super::certs::ip_from_bytes(bytes).map(|ip| ip.to_string()),
        _ => None,
    }
}

fn list_or_none(values: &[String]) -> String {
    if values.is_empty() {
        "(none)".to_owned()
    } else {
        values.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::test_chain::Chain;
    use crate::pki::{Validity, selfsigned_with_validity};
    use std::os::unix::fs::PermissionsExt;
    use time::macros::datetime;

    fn subject(cn: &str) -> CsrSubject {
        CsrSubject {
            cn: cn.to_owned(),
            ..CsrSubject::default()
        }
    }

    #[test]
    fn csr_writes_a_key_and_a_request_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let full = CsrSubject {
            cn: "web.example.com".to_owned(),
            o: Some("Acme Ltd".to_owned()),
            ou: Some("IT".to_owned()),
            c: Some("GB".to_owned()),
            st: Some("England".to_owned()),
            l: Some("London".to_owned()),
        };
        let (key, request) = csr(&certs, "web", &full, &[], KeyType::EcdsaP256).unwrap();
        assert_eq!(key, certs.join("web.key"));
        assert_eq!(request, certs.join("web.csr"));
        assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        let now = datetime!(2025-02-15 12:00 UTC);
        assert_eq!(
            inspect_text(&request, now).unwrap(),
            "\
Request for : C=GB, ST=England, L=London, O=Acme Ltd, OU=IT, CN=web.example.com
SANs        : web.example.com
Key type    : ECDSA P-256
Signature   : valid"
        );
        assert_eq!(
            inspect_text(&key, now).unwrap(),
            "Private key : ECDSA P-256 private key"
        );
        // The request carries the key's public half.
        let key_pem = fs::read_to_string(&key).unwrap();
        let key_pair = rcgen::KeyPair::from_pem(&key_pem).unwrap();
        let request_pem = fs::read_to_string(&request).unwrap();
        let params = rcgen::CertificateSigningRequestParams::from_pem(&request_pem).unwrap();
        use rcgen::PublicKeyData;
        assert_eq!(params.public_key.der_bytes(), key_pair.der_bytes());

        let err = csr(&certs, "web", &full, &[], KeyType::EcdsaP256).unwrap_err();
        assert_eq!(
            err.to_string(),
            "web.key already exists: choose another basename, or delete the file first"
        );
        assert_eq!(fs::read_to_string(&key).unwrap(), key_pem, "the key was overwritten");
        fs::remove_file(&key).unwrap();
        assert_eq!(
            csr(&certs, "web", &full, &[], KeyType::EcdsaP256)
                .unwrap_err()
                .to_string(),
            "web.csr already exists: choose another basename, or delete the file first"
        );

        // A CN that is no host name gets no SAN by default; explicit SANs replace the default.
        let (_, request) = csr(&certs, "named", &subject("My Server"), &[], KeyType::EcdsaP256).unwrap();
        assert!(
            inspect_text(&request, now)
                .unwrap()
                .contains("\nSANs        : (none)\n")
        );
        let sans = ["a.example".to_owned(), "127.0.0.1".to_owned()];
        let (_, request) = csr(&certs, "multi", &subject("a.example"), &sans, KeyType::EcdsaP256).unwrap();
        assert!(
            inspect_text(&request, now)
                .unwrap()
                .contains("\nSANs        : a.example, 127.0.0.1\n")
        );
    }

    #[test]
    fn csr_subjects_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let bad = |subject: CsrSubject| {
            csr(dir.path(), "x", &subject, &[], KeyType::EcdsaP256)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(bad(subject("")), "invalid CN '': empty");
        assert_eq!(
            bad(CsrSubject {
                c: Some("GBR".to_owned()),
                ..subject("a")
            }),
            "invalid C 'GBR': a two-letter country code is expected, e.g. C:GB"
        );
        assert_eq!(
            bad(CsrSubject {
                o: Some("x".repeat(65)),
                ..subject("a")
            }),
            format!("invalid O '{}': longer than 64 characters", "x".repeat(65))
        );
        assert_eq!(
            bad(CsrSubject {
                l: Some("a\nb".to_owned()),
                ..subject("a")
            }),
            "invalid L 'a\nb': control characters"
        );
        assert_eq!(
            csr(
                dir.path(),
                "x",
                &subject("a"),
                &["bad name".to_owned()],
                KeyType::EcdsaP256
            )
            .unwrap_err()
            .to_string(),
            "invalid subjectAltName 'bad name': a DNS name or an IP address is expected"
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "nothing written");
    }

    #[test]
    fn list_tells_keys_certificates_requests_and_bundles_apart() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path();
        Chain::write(certs);
        let validity = Validity {
            not_before: datetime!(2025-01-01 0:00 UTC),
            not_after: datetime!(2025-03-01 0:00 UTC),
        };
        selfsigned_with_validity(certs, "server", "example.com", &[], validity).unwrap();
        let old = Validity {
            not_before: datetime!(2020-01-01 0:00 UTC),
            not_after: datetime!(2021-01-01 0:00 UTC),
        };
        selfsigned_with_validity(certs, "old", "old.example", &[], old).unwrap();
        fs::remove_file(certs.join("old.key")).unwrap();
        csr(certs, "web", &subject("web.example.com"), &[], KeyType::EcdsaP256).unwrap();
        fs::write(certs.join("notes.txt"), "remember the milk\n").unwrap();
        fs::write(certs.join(".hidden.tmp"), "x").unwrap();
        fs::create_dir(certs.join("subdir")).unwrap();
        let garbled = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
        fs::write(certs.join("garbled.pem"), garbled).unwrap();

        let files = list(certs, datetime!(2025-02-15 12:00 UTC)).unwrap();
        let listing = render_list(&files);
        let (names, text) = listing.split_once("\n\nDetail:\n").expect(&listing);
        assert_eq!(
            names.lines().collect::<Vec<_>>(),
            [
                LIST_HEADER,
                "bundle.pem",
                "garbled.pem",
                "intermediate.pem",
                "leaf.crt",
                "leaf.key",
                "notes.txt",
                "old.crt",
                "reversed.pem",
                "root.pem",
                "server.crt",
                "server.key",
                "web.csr",
                "web.key",
            ]
        );
        let expected = "\
bundle.pem        bundle  2 certificates: CN=Test Intermediate CA < CN=Test Root CA
garbled.pem       unknown garbled.pem: not a valid certificate: ";
        assert!(text.starts_with(expected), "{text}");
        let rest: Vec<&str> = text.lines().skip(2).collect();
        assert_eq!(
            rest,
            [
                "intermediate.pem  cert    CN=Test Intermediate CA, expires 4096-01-01 00:00:00 UTC",
                "leaf.crt          cert    CN=example.com, expires 4096-01-01 00:00:00 UTC",
                "leaf.key          key     ECDSA P-256 private key",
                "notes.txt         unknown no certificate, request or private key",
                "old.crt           cert    CN=old.example, EXPIRED on 2021-01-01 00:00:00 UTC",
                "reversed.pem      bundle  2 certificates: CN=Test Root CA < CN=Test Intermediate CA",
                "root.pem          cert    CN=Test Root CA, expires 4096-01-01 00:00:00 UTC",
                "server.crt        cert    CN=example.com, expires 2025-03-01 00:00:00 UTC",
                "server.key        key     ECDSA P-256 private key",
                "web.csr           csr     CN=web.example.com",
                "web.key           key     ECDSA P-256 private key",
            ],
            "{text}"
        );
        assert_eq!(files[1].kind, FileKind::Unknown);

        assert_eq!(
            render_list(&list(&certs.join("missing"), datetime!(2025-02-15 12:00 UTC)).unwrap()),
            "User supplied certificates and keys:\n(no files in the certificate folder)"
        );
        // The folder is a file: a clear failure.
        let err = list(&certs.join("notes.txt"), datetime!(2025-02-15 12:00 UTC)).unwrap_err();
        assert!(err.to_string().starts_with("cannot read notes.txt: "), "{err}");
    }

    #[test]
    fn csr_makes_an_rsa_2048_key_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let sans = ["cb1.tptac9.com".to_owned(), "cb3".to_owned()];
        let (key, request) = csr(dir.path(), "abhiall", &subject("tptac9.com"), &sans, KeyType::Rsa2048).unwrap();
        assert_eq!(
            private_key_type(&fs::read(&key).unwrap()).unwrap(),
            "RSA 2048 private key"
        );
        let pem = fs::read(&request).unwrap();
        let (_, der) = sections(&pem).unwrap().into_iter().next().unwrap();
        let (_, parsed) = X509CertificationRequest::from_der(&der).unwrap();
        parsed.verify_signature().unwrap();
        assert_eq!(
            parsed.certification_request_info.subject_pki.algorithm.algorithm,
            OID_PKCS1_RSAENCRYPTION
        );
        let listing = render_list(&list(dir.path(), OffsetDateTime::now_utc()).unwrap());
        assert!(
            listing.contains("\nabhiall.key  key     RSA 2048 private key"),
            "{listing}"
        );
    }

    #[test]
    fn inspect_shows_every_certificate_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let validity = Validity {
            not_before: datetime!(2025-01-01 0:00 UTC),
            not_after: datetime!(2025-03-01 0:00 UTC),
        };
        let sans = ["example.com".to_owned(), "127.0.0.1".to_owned()];
        let (_, crt) = selfsigned_with_validity(dir.path(), "server", "example.com", &sans, validity).unwrap();
        let pem = fs::read(&crt).unwrap();
        let (_, der) = rustls_pki_types::pem::from_buf(&mut pem.as_slice()).unwrap().unwrap();
        let fingerprint: Vec<String> = ring::digest::digest(&ring::digest::SHA256, &der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        assert_eq!(fingerprint.len(), 32);
        assert_eq!(
            inspect_text(&crt, datetime!(2025-02-15 12:00 UTC)).unwrap(),
            format!(
                "\
Subject     : CN=example.com
Issuer      : CN=example.com
SANs        : example.com, 127.0.0.1
Valid from  : 2025-01-01 00:00:00 UTC
Valid until : 2025-03-01 00:00:00 UTC (in 13 days)
CA          : no
Key type    : ECDSA P-256
SHA-256     : {}",
                fingerprint.join(":")
            )
        );
        assert!(
            inspect_text(&crt, datetime!(2025-03-02 0:00 UTC))
                .unwrap()
                .contains("Valid until : 2025-03-01 00:00:00 UTC (EXPIRED)\n")
        );

        let chain = Chain::write(dir.path());
        let text = inspect_text(&dir.path().join(&chain.bundle), datetime!(2025-02-15 12:00 UTC)).unwrap();
        assert!(
            text.starts_with("Certificate 1 of 2\nSubject     : CN=Test Intermediate CA\n"),
            "{text}"
        );
        assert!(
            text.contains("\nCertificate 2 of 2\nSubject     : CN=Test Root CA\n"),
            "{text}"
        );
        assert_eq!(text.matches("CA          : yes").count(), 2);
    }

    #[test]
    fn inspect_failures_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let now = datetime!(2025-02-15 12:00 UTC);
        assert_eq!(
            inspect_text(&dir.path().join("none.crt"), now).unwrap_err().to_string(),
            "no such file: none.crt"
        );
        fs::write(dir.path().join("notes.txt"), "hello").unwrap();
        assert_eq!(
            inspect_text(&dir.path().join("notes.txt"), now)
                .unwrap_err()
                .to_string(),
            "notes.txt: no certificate, certificate request or private key found (PEM expected)"
        );
        fs::write(dir.path().join("empty.pem"), "").unwrap();
        assert!(matches!(
            inspect_text(&dir.path().join("empty.pem"), now),
            Err(PkiError::NothingToInspect(_))
        ));
        let garbled = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
        fs::write(dir.path().join("garbled.pem"), garbled).unwrap();
        assert!(
            inspect_text(&dir.path().join("garbled.pem"), now)
                .unwrap_err()
                .to_string()
                .starts_with("garbled.pem: not a valid certificate: ")
        );
        let bad_key = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n";
        fs::write(dir.path().join("bad.key"), bad_key).unwrap();
        assert!(
            inspect_text(&dir.path().join("bad.key"), now)
                .unwrap_err()
                .to_string()
                .starts_with("bad.key: not a usable private key: ")
        );
    }
}
