//! `pki ...`: certificate housekeeping in the data dir's certificate folder.

mod certs;
mod files;

pub use files::{CsrSubject, FileEntry, FileKind, KeyType, csr, inspect_text, list, render_list};

pub use certs::{
    CERTS_DIR_NAME, CertSummary, PkiError, SELF_SIGNED_DAYS, Validity, cert_file, certs_dir, chain_ok, format_time,
    inspect, inspect_all, key_matches, selfsigned, selfsigned_with_validity,
};

use crate::command::{Args, ParseError, Usage, unknown_subcommand};
use crate::{Admin, Family, Reply};
use serde::{Deserialize, Serialize};
use std::path::Path;
use time::OffsetDateTime;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PkiCommand {
    /// `pki selfsigned <basename> [CN:<v>] [subAltName:<a,b,c>]`; the CN defaults to the
    /// configured domain, the SANs to the CN.
    Selfsigned {
        basename: String,
        cn: Option<String>,
        sans: Vec<String>,
    },
    /// `pki csr <basename> CN:<v> [O:<v>] [OU:<v>] [C:<v>] [ST:<v>] [L:<v>] [subAltName:<a,b,c>]
    /// [key:rsa2048|ecdsa-p256]`; `subAltName:` is CMS's spelling, `subjectAltName:` the X.509 one.
    Csr {
        basename: String,
        subject: CsrSubject,
        sans: Vec<String>,
        #[serde(default)]
        key: KeyType,
    },
    /// `pki list`
    List,
    /// `pki inspect <file>`
    Inspect { file: String },
    /// `pki match <key> <crt>`
    Match { key: String, cert: String },
    /// `pki verify <crt> <bundle>`
    Verify { cert: String, bundle: String },
}

impl Family for PkiCommand {
    const PREFIX: &'static [&'static str] = &["pki"];
    const USAGE: &'static [Usage] = &[
        Usage {
            syntax: "pki selfsigned <basename> [CN:<v>] [subAltName:<a,b,c>]",
            summary: "make <basename>.key and a self-signed <basename>.crt (CN defaults to the domain)",
        },
        Usage {
            syntax: "pki csr <basename> CN:<v> [O:<v>] [OU:<v>] [C:<v>] [ST:<v>] [L:<v>] [subAltName:<a,b,c>] \
                     [key:rsa2048|ecdsa-p256]",
            summary: "make <basename>.key (ECDSA P-256 unless key:rsa2048) and a certificate request \
                      <basename>.csr; subjectAltName: is accepted for subAltName:",
        },
        Usage {
            syntax: "pki list",
            summary: "the user supplied certificates and keys (the SFTP file area), then each file's detail",
        },
        Usage {
            syntax: "pki inspect <file>",
            summary: "subject, issuer, SANs, validity, CA flag, key type and SHA-256 fingerprint",
        },
        Usage {
            syntax: "pki match <key> <crt>",
            summary: "check that the private key belongs to the certificate",
        },
        Usage {
            syntax: "pki verify <crt> <bundle>",
            summary: "check that the bundle (intermediates then root) chains the certificate",
        },
    ];

    fn parse(args: &[String]) -> Result<Self, ParseError> {
        let rest = args.get(1..).unwrap_or_default();
        match args.first().map(String::as_str) {
            Some("selfsigned") => parse_selfsigned(rest),
            Some("csr") => parse_csr(rest),
            Some("list") => {
                Args::new("pki list", rest).end()?;
                Ok(PkiCommand::List)
            }
            Some("inspect") => {
                let mut args = Args::new("pki inspect", rest);
                let file = file_name(&mut args, "<file>")?;
                args.end()?;
                Ok(PkiCommand::Inspect { file })
            }
            Some("match") => {
                let mut args = Args::new("pki match", rest);
                let key = file_name(&mut args, "<key>")?;
                let cert = file_name(&mut args, "<crt>")?;
                args.end()?;
                Ok(PkiCommand::Match { key, cert })
            }
            Some("verify") => {
                let mut args = Args::new("pki verify", rest);
                let cert = file_name(&mut args, "<crt>")?;
                let bundle = file_name(&mut args, "<bundle>")?;
                args.end()?;
                Ok(PkiCommand::Verify { cert, bundle })
            }
            _ => Err(unknown_subcommand(Self::PREFIX, args)),
        }
    }

    fn apply(self, admin: &Admin) -> Reply {
        let dir = admin.certs_dir();
        let now = OffsetDateTime::now_utc();
        match self {
            PkiCommand::Selfsigned { basename, cn, sans } => apply_selfsigned(admin, &basename, cn, &sans),
            PkiCommand::Csr {
                basename,
                subject,
                sans,
                key,
            } => match csr(&dir, &basename, &subject, &sans, key) {
                Ok(_) => Reply::success(),
                Err(err) => Reply::failure(err),
            },
            PkiCommand::List => match list(&dir, now) {
                Ok(files) => Reply::output(render_list(&files)),
                Err(err) => Reply::failure(err),
            },
            PkiCommand::Inspect { file } => match cert_file(&dir, &file).and_then(|path| inspect_text(&path, now)) {
                Ok(text) => Reply::output(text),
                Err(err) => Reply::failure(err),
            },
            PkiCommand::Match { key, cert } => match in_folder(&dir, &[&key, &cert]) {
                Ok(paths) => result_reply(key_matches(&paths[0], &paths[1])),
                Err(err) => Reply::failure(err),
            },
            PkiCommand::Verify { cert, bundle } => match in_folder(&dir, &[&cert, &bundle]) {
                Ok(paths) => result_reply(chain_ok(&paths[0], &paths[1])),
                Err(err) => Reply::failure(err),
            },
        }
    }
}

/// A file argument: a plain name inside the certificate folder.
fn file_name(args: &mut Args<'_>, what: &'static str) -> Result<String, ParseError> {
    let name = args.required(what)?;
    cert_file(Path::new(""), name).map_err(|e| args.invalid(e))?;
    Ok(name.to_owned())
}

/// Re-checked at apply time: commands may arrive as JSON, not through parse.
fn in_folder(dir: &Path, names: &[&str]) -> Result<Vec<std::path::PathBuf>, PkiError> {
    names.iter().map(|name| cert_file(dir, name)).collect()
}

fn result_reply(result: Result<(), PkiError>) -> Reply {
    match result {
        Ok(()) => Reply::success(),
        Err(err) => Reply::failure(err),
    }
}

fn parse_csr(words: &[String]) -> Result<PkiCommand, ParseError> {
    let mut args = Args::new("pki csr", words);
    let basename = args.required("<basename>")?.to_owned();
    cert_file(Path::new(""), &format!("{basename}.key")).map_err(|e| args.invalid(e))?;
    let mut subject = CsrSubject::default();
    let mut cn = None;
    let mut sans = None;
    let mut key = None;
    for attribute in args.rest() {
        let (name, value) = attribute.split_once(':').unwrap_or((attribute, ""));
        let slot = match name.to_ascii_uppercase().as_str() {
            "KEY" => {
                if key.is_some() {
                    return Err(args.invalid("key given twice"));
                }
                let parsed = KeyType::parse(value).ok_or_else(|| {
                    args.invalid(format!("unknown key type '{value}' (key:rsa2048 or key:ecdsa-p256)"))
                })?;
                key = Some(parsed);
                continue;
            }
            "CN" => &mut cn,
            "O" => &mut subject.o,
            "OU" => &mut subject.ou,
            "C" => &mut subject.c,
            "ST" => &mut subject.st,
            "L" => &mut subject.l,
            "SUBJECTALTNAME" | "SUBALTNAME" => {
                if sans.is_some() {
                    return Err(args.invalid("subAltName given twice"));
                }
                let names: Vec<String> = value.split(',').map(|name| name.trim().to_owned()).collect();
                for name in &names {
                    certs::san_entry(name).map_err(|e| args.invalid(e))?;
                }
                sans = Some(names);
                continue;
            }
            _ => {
                return Err(args.invalid(format!(
                    "unknown attribute '{attribute}' (expected CN, O, OU, C, ST, L or subAltName, each as \
                     NAME:<value>, or key:rsa2048)"
                )));
            }
        };
        if slot.is_some() {
            return Err(args.invalid(format!("{} given twice", name.to_ascii_uppercase())));
        }
        *slot = Some(value.to_owned());
    }
    let Some(cn) = cn else {
        return Err(args.invalid("CN:<name> is required"));
    };
    subject.cn = cn;
    // Country codes are upper case in certificates; accept `C:gb` as typed.
    subject.c = subject.c.map(|country| country.to_ascii_uppercase());
    subject.check().map_err(|e| args.invalid(e))?;
    Ok(PkiCommand::Csr {
        basename,
        subject,
        sans: sans.unwrap_or_default(),
        key: key.unwrap_or_default(),
    })
}

fn parse_selfsigned(words: &[String]) -> Result<PkiCommand, ParseError> {
    let mut args = Args::new("pki selfsigned", words);
    let basename = args.required("<basename>")?.to_owned();
    cert_file(std::path::Path::new(""), &format!("{basename}.key")).map_err(|e| args.invalid(e))?;
    let mut cn = None;
    let mut sans = None;
    for attribute in args.rest() {
        let (name, value) = attribute.split_once(':').unwrap_or((attribute, ""));
        if name.eq_ignore_ascii_case("CN") {
            if cn.is_some() {
                return Err(args.invalid("CN given twice"));
            }
            if value.is_empty() {
                return Err(args.invalid("empty CN"));
            }
            cn = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("subjectAltName") || name.eq_ignore_ascii_case("subAltName") {
            if sans.is_some() {
                return Err(args.invalid("subAltName given twice"));
            }
            let names: Vec<String> = value.split(',').map(|name| name.trim().to_owned()).collect();
            for name in &names {
                certs::san_entry(name).map_err(|e| args.invalid(e))?;
            }
            sans = Some(names);
        } else {
            return Err(args.invalid(format!(
                "unknown attribute '{attribute}' (expected CN:<v> or subAltName:<a,b,c>)"
            )));
        }
    }
    Ok(PkiCommand::Selfsigned {
        basename,
        cn,
        sans: sans.unwrap_or_default(),
    })
}

fn apply_selfsigned(admin: &Admin, basename: &str, cn: Option<String>, sans: &[String]) -> Reply {
    let config = match admin.store().xmpp_config() {
        Ok(config) => config,
        Err(err) => return Reply::failure(format!("cannot read the configuration: {err}")),
    };
    let cn = match cn {
        Some(cn) => cn,
        None if config.domain.is_empty() => {
            return Reply::failure("pki selfsigned: no domain configured: give CN:<name> or set xmpp domain first");
        }
        None => config.domain.clone(),
    };
    if let Err(err) = selfsigned(&admin.certs_dir(), basename, &cn, sans) {
        return Reply::failure(err);
    }
    // Regenerating the configured identity in place must reach the daemon's TLS config.
    let in_use = config
        .tls
        .as_ref()
        .is_some_and(|tls| tls.key == format!("{basename}.key") || tls.cert == format!("{basename}.crt"));
    if in_use {
        let touched = admin.store().node_config().map_err(sb_store::WriteError::from);
        if let Err(err) = touched.and_then(|node| admin.set_node_config(&node)) {
            return Reply::failure(format!("pki selfsigned: {err}"));
        }
    }
    Reply::success()
}

#[cfg(test)]
pub(crate) mod test_chain {
    //! A root CA, an intermediate and a leaf for `example.com`, written as PEM files.

    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use std::path::Path;

    pub struct Chain {
        pub leaf_key: String,
        pub leaf_crt: String,
        /// Intermediate then root: the right order.
        pub bundle: String,
        /// Root then intermediate.
        pub reversed_bundle: String,
        /// The root alone: the intermediate is missing.
        pub root_only: String,
        /// The intermediate alone: no root at the end.
        pub intermediate_only: String,
    }

    fn params(cn: &str, ca: bool) -> CertificateParams {
        let mut params = CertificateParams::new(if ca { vec![] } else { vec![cn.to_owned()] }).unwrap();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, cn);
        params.distinguished_name = name;
        if ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        }
        params
    }

    impl Chain {
        pub fn write(certs_dir: &Path) -> Chain {
            std::fs::create_dir_all(certs_dir).unwrap();
            let root_key = KeyPair::generate().unwrap();
            let root_params = params("Test Root CA", true);
            let root = root_params.self_signed(&root_key).unwrap();
            let root_issuer = Issuer::new(root_params, root_key);
            let inter_key = KeyPair::generate().unwrap();
            let inter_params = params("Test Intermediate CA", true);
            let inter = inter_params.signed_by(&inter_key, &root_issuer).unwrap();
            let inter_issuer = Issuer::new(inter_params, inter_key);
            let leaf_key = KeyPair::generate().unwrap();
            let leaf = params("example.com", false)
                .signed_by(&leaf_key, &inter_issuer)
                .unwrap();
            let write = |name: &str, contents: String| std::fs::write(certs_dir.join(name), contents).unwrap();
            write("leaf.key", leaf_key.serialize_pem());
            write("leaf.crt", leaf.pem());
            write("bundle.pem", format!("{}{}", inter.pem(), root.pem()));
            write("reversed.pem", format!("{}{}", root.pem(), inter.pem()));
            write("root.pem", root.pem());
            write("intermediate.pem", inter.pem());
            Chain {
                leaf_key: "leaf.key".to_owned(),
                leaf_crt: "leaf.crt".to_owned(),
                bundle: "bundle.pem".to_owned(),
                reversed_bundle: "reversed.pem".to_owned(),
                root_only: "root.pem".to_owned(),
                intermediate_only: "intermediate.pem".to_owned(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_chain::Chain;
    use super::*;
    use crate::testing::{admin, admin_with_node, run};
    use crate::{Command, parse};
    use std::os::unix::fs::PermissionsExt;
    use time::macros::datetime;

    fn failure(line: &str) -> String {
        Reply::from(parse(line).expect_err(line)).text
    }

    #[test]
    fn parses_pki_selfsigned() {
        assert_eq!(
            parse("pki selfsigned server"),
            Ok(Command::Pki(PkiCommand::Selfsigned {
                basename: "server".to_owned(),
                cn: None,
                sans: vec![]
            }))
        );
        assert_eq!(
            parse("pki selfsigned server CN:xmpp.example.com subjectAltName:example.com,*.example.com,127.0.0.1"),
            Ok(Command::Pki(PkiCommand::Selfsigned {
                basename: "server".to_owned(),
                cn: Some("xmpp.example.com".to_owned()),
                sans: vec![
                    "example.com".to_owned(),
                    "*.example.com".to_owned(),
                    "127.0.0.1".to_owned()
                ]
            }))
        );
    }

    #[test]
    fn pki_parse_errors_name_the_problem() {
        assert_eq!(failure("pki"), "FAILURE: unknown command 'pki'");
        assert_eq!(failure("pki selfsign x"), "FAILURE: unknown command 'pki selfsign'");
        assert_eq!(failure("pki selfsigned"), "FAILURE: pki selfsigned: missing <basename>");
        assert_eq!(
            failure("pki selfsigned a/b"),
            "FAILURE: pki selfsigned: invalid file name 'a/b.key': expected a plain name inside the certificate folder"
        );
        assert_eq!(
            failure("pki selfsigned x O:Acme"),
            "FAILURE: pki selfsigned: unknown attribute 'O:Acme' (expected CN:<v> or subAltName:<a,b,c>)"
        );
        assert_eq!(failure("pki selfsigned x CN:"), "FAILURE: pki selfsigned: empty CN");
        assert_eq!(
            failure("pki selfsigned x CN:a CN:b"),
            "FAILURE: pki selfsigned: CN given twice"
        );
        assert_eq!(
            failure("pki selfsigned x subjectAltName:a subjectAltName:b"),
            "FAILURE: pki selfsigned: subAltName given twice"
        );
        assert_eq!(
            failure("pki selfsigned x subjectAltName:a,,b"),
            "FAILURE: pki selfsigned: invalid subjectAltName '': a DNS name or an IP address is expected"
        );
        assert_eq!(
            failure("pki selfsigned x subjectAltName:bad_name.example"),
            "FAILURE: pki selfsigned: invalid subjectAltName 'bad_name.example': a DNS name or an IP address is expected"
        );
    }

    #[test]
    fn selfsigned_writes_a_private_key_and_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let (key, crt) = selfsigned(
            &certs,
            "node",
            "node.example",
            &["node.example".to_owned(), "127.0.0.9".to_owned()],
        )
        .unwrap();
        assert_eq!(key, certs.join("node.key"));
        assert_eq!(crt, certs.join("node.crt"));
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(std::fs::read_to_string(&key).unwrap().contains("BEGIN PRIVATE KEY"));
        let summary = inspect(&crt).unwrap();
        assert_eq!(summary.subject, "CN=node.example");
        assert_eq!(summary.issuer, "CN=node.example");
        assert_eq!(summary.sans, vec!["node.example".to_owned(), "127.0.0.9".to_owned()]);
        assert!(!summary.is_ca);
        let days = (summary.not_after - summary.not_before).whole_days();
        assert_eq!(days, SELF_SIGNED_DAYS);
        key_matches(&key, &crt).unwrap();
        // No temporary files left behind.
        let names: Vec<_> = std::fs::read_dir(&certs)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn selfsigned_command_defaults_the_cn_to_the_domain() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, node) = admin_with_node(dir.path());
        assert_eq!(
            run(&admin, "pki selfsigned server").text,
            "FAILURE: pki selfsigned: no domain configured: give CN:<name> or set xmpp domain first"
        );
        assert_eq!(run(&admin, "xmpp domain chat.example").text, "SUCCESS");
        assert_eq!(run(&admin, "pki selfsigned server").text, "SUCCESS");
        let summary = inspect(&admin.certs_dir().join("server.crt")).unwrap();
        assert_eq!(summary.subject, "CN=chat.example");
        assert_eq!(summary.sans, vec!["chat.example".to_owned()]);
        assert_eq!(node.config_changes(), 1);
        assert!(!admin.certs_dir().join("server.key.tmp").exists());
        // Regenerating the identity in use reaches the daemon.
        assert_eq!(run(&admin, "xmpp certs server.key server.crt").text, "SUCCESS");
        assert_eq!(run(&admin, "pki selfsigned server CN:other.example").text, "SUCCESS");
        assert_eq!(node.config_changes(), 3);
        assert_eq!(
            inspect(&admin.certs_dir().join("server.crt")).unwrap().subject,
            "CN=other.example"
        );
    }

    #[test]
    fn key_matches_tells_pairs_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (a_key, a_crt) = selfsigned(dir.path(), "a", "a.example", &[]).unwrap();
        let (b_key, b_crt) = selfsigned(dir.path(), "b", "b.example", &[]).unwrap();
        key_matches(&a_key, &a_crt).unwrap();
        key_matches(&b_key, &b_crt).unwrap();
        assert_eq!(
            key_matches(&a_key, &b_crt).unwrap_err().to_string(),
            "key a.key does not match certificate b.crt"
        );
        assert_eq!(
            key_matches(&dir.path().join("none.key"), &a_crt)
                .unwrap_err()
                .to_string(),
            "no such file: none.key"
        );
        assert!(matches!(key_matches(&a_crt, &a_crt), Err(PkiError::BadKey { .. })));
        assert!(matches!(key_matches(&a_key, &a_key), Err(PkiError::NoCertificate(_))));
    }

    #[test]
    fn chain_ok_follows_the_bundle_to_its_root() {
        let dir = tempfile::tempdir().unwrap();
        let chain = Chain::write(dir.path());
        let path = |name: &str| dir.path().join(name);
        chain_ok(&path(&chain.leaf_crt), &path(&chain.bundle)).unwrap();
        key_matches(&path(&chain.leaf_key), &path(&chain.leaf_crt)).unwrap();
        assert_eq!(
            chain_ok(&path(&chain.leaf_crt), &path(&chain.reversed_bundle))
                .unwrap_err()
                .to_string(),
            "chain out of order in reversed.pem: 'CN=Test Intermediate CA' must come next, found 'CN=Test Root CA' \
             (intermediates first, root last)"
        );
        assert_eq!(
            chain_ok(&path(&chain.leaf_crt), &path(&chain.root_only))
                .unwrap_err()
                .to_string(),
            "chain incomplete: no certificate for issuer 'CN=Test Intermediate CA' in root.pem"
        );
        assert_eq!(
            chain_ok(&path(&chain.leaf_crt), &path(&chain.intermediate_only))
                .unwrap_err()
                .to_string(),
            "chain incomplete: the last certificate of intermediate.pem ('CN=Test Intermediate CA') is not a \
             self-signed root"
        );
        assert!(matches!(
            chain_ok(&path(&chain.leaf_crt), &path(&chain.leaf_key)),
            Err(PkiError::NoCertificate(_))
        ));
        let summaries = inspect_all(&path(&chain.bundle)).unwrap();
        assert_eq!(summaries.len(), 2);
        assert!(summaries.iter().all(|s| s.is_ca));
    }

    #[test]
    fn chain_ok_refuses_a_forged_signature_and_an_expired_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let chain = Chain::write(dir.path());
        // A second, unrelated hierarchy with the same names: names match, signatures do not.
        let other = tempfile::tempdir().unwrap();
        Chain::write(other.path());
        assert_eq!(
            chain_ok(&dir.path().join(&chain.leaf_crt), &other.path().join("bundle.pem"))
                .unwrap_err()
                .to_string(),
            "signature of 'CN=example.com' does not verify with the key of 'CN=Test Intermediate CA'"
        );
        let old = Validity {
            not_before: datetime!(2020-01-01 0:00 UTC),
            not_after: datetime!(2021-01-01 0:00 UTC),
        };
        let (_, crt) = selfsigned_with_validity(dir.path(), "old", "old.example", &[], old).unwrap();
        assert_eq!(
            chain_ok(&crt, &crt).unwrap_err().to_string(),
            "certificate 'CN=old.example' expired on 2021-01-01 00:00:00 UTC"
        );
        let admin = admin(dir.path());
        std::fs::create_dir_all(admin.certs_dir()).unwrap();
        for name in ["old.key", "old.crt"] {
            std::fs::copy(dir.path().join(name), admin.certs_dir().join(name)).unwrap();
        }
        assert_eq!(
            run(&admin, "xmpp certs old.key old.crt").text,
            "FAILURE: certificate 'CN=old.example' expired on 2021-01-01 00:00:00 UTC"
        );
    }

    #[test]
    fn parses_the_housekeeping_commands() {
        assert_eq!(
            parse(
                "pki csr web CN:web.example.com o:Acme OU:IT C:gb ST:England L:London subjectAltName:a.example,b.example"
            ),
            Ok(Command::Pki(PkiCommand::Csr {
                basename: "web".to_owned(),
                subject: CsrSubject {
                    cn: "web.example.com".to_owned(),
                    o: Some("Acme".to_owned()),
                    ou: Some("IT".to_owned()),
                    c: Some("GB".to_owned()),
                    st: Some("England".to_owned()),
                    l: Some("London".to_owned()),
                },
                sans: vec!["a.example".to_owned(), "b.example".to_owned()],
                key: KeyType::EcdsaP256,
            }))
        );
        assert_eq!(parse("pki list"), Ok(Command::Pki(PkiCommand::List)));
        assert_eq!(
            parse("pki inspect a.crt"),
            Ok(Command::Pki(PkiCommand::Inspect {
                file: "a.crt".to_owned()
            }))
        );
        assert_eq!(
            parse("pki match a.key a.crt"),
            Ok(Command::Pki(PkiCommand::Match {
                key: "a.key".to_owned(),
                cert: "a.crt".to_owned()
            }))
        );
        assert_eq!(
            parse("pki verify a.crt ca.pem"),
            Ok(Command::Pki(PkiCommand::Verify {
                cert: "a.crt".to_owned(),
                bundle: "ca.pem".to_owned()
            }))
        );
    }

    #[test]
    fn parses_the_seeds_csr_line_with_cms_spelling_and_key_types() {
        let seed = parse("pki csr abhiall CN:tptac9.com subAltName:cb1.tptac9.com,cb2.tptac9.com,cb3").unwrap();
        assert_eq!(
            seed,
            Command::Pki(PkiCommand::Csr {
                basename: "abhiall".to_owned(),
                subject: CsrSubject {
                    cn: "tptac9.com".to_owned(),
                    ..CsrSubject::default()
                },
                sans: vec![
                    "cb1.tptac9.com".to_owned(),
                    "cb2.tptac9.com".to_owned(),
                    "cb3".to_owned()
                ],
                key: KeyType::EcdsaP256,
            })
        );
        let Command::Pki(PkiCommand::Csr { key, .. }) = parse("pki csr a CN:a key:rsa2048").unwrap() else {
            panic!("not a csr");
        };
        assert_eq!(key, KeyType::Rsa2048);
        assert_eq!(
            failure("pki csr a CN:a key:dsa"),
            "FAILURE: pki csr: unknown key type 'dsa' (key:rsa2048 or key:ecdsa-p256)"
        );
        assert_eq!(
            failure("pki csr a CN:a key:rsa key:rsa"),
            "FAILURE: pki csr: key given twice"
        );
        assert_eq!(
            failure("pki csr a CN:a subAltName:a subjectAltName:b"),
            "FAILURE: pki csr: subAltName given twice"
        );
        assert!(parse("pki selfsigned a subAltName:a.example").is_ok());
        // The seed's own line works end to end.
        let dir = tempfile::tempdir().unwrap();
        let admin = admin(dir.path());
        assert_eq!(
            run(
                &admin,
                "pki csr abhiall CN:tptac9.com subAltName:cb1.tptac9.com,cb2.tptac9.com,cb3"
            )
            .text,
            "SUCCESS"
        );
        let listing = run(&admin, "pki list").text;
        assert!(
            listing.starts_with("User supplied certificates and keys:\nabhiall.csr\nabhiall.key\n"),
            "{listing}"
        );
    }

    #[test]
    fn housekeeping_parse_errors_name_the_problem() {
        assert_eq!(failure("pki csr"), "FAILURE: pki csr: missing <basename>");
        assert_eq!(failure("pki csr web"), "FAILURE: pki csr: CN:<name> is required");
        assert_eq!(failure("pki csr web O:Acme"), "FAILURE: pki csr: CN:<name> is required");
        assert_eq!(
            failure("pki csr ../web CN:a"),
            "FAILURE: pki csr: invalid file name '../web.key': expected a plain name inside the certificate folder"
        );
        assert_eq!(
            failure("pki csr web CN:a X:b"),
            "FAILURE: pki csr: unknown attribute 'X:b' (expected CN, O, OU, C, ST, L or subAltName, each as \
             NAME:<value>, or key:rsa2048)"
        );
        assert_eq!(failure("pki csr web CN:a cn:b"), "FAILURE: pki csr: CN given twice");
        assert_eq!(failure("pki csr web CN:a O:x o:y"), "FAILURE: pki csr: O given twice");
        assert_eq!(
            failure("pki csr web CN:a C:GBR"),
            "FAILURE: pki csr: invalid C 'GBR': a two-letter country code is expected, e.g. C:GB"
        );
        assert_eq!(failure("pki csr web CN:a O:"), "FAILURE: pki csr: invalid O '': empty");
        assert_eq!(failure("pki csr web CN:"), "FAILURE: pki csr: invalid CN '': empty");
        assert_eq!(
            failure("pki csr web CN:a subjectAltName:a subjectAltName:b"),
            "FAILURE: pki csr: subAltName given twice"
        );
        assert_eq!(
            failure("pki csr web CN:a subjectAltName:x_y"),
            "FAILURE: pki csr: invalid subjectAltName 'x_y': a DNS name or an IP address is expected"
        );
        assert_eq!(failure("pki list x"), "FAILURE: pki list: unexpected argument 'x'");
        assert_eq!(failure("pki inspect"), "FAILURE: pki inspect: missing <file>");
        assert_eq!(
            failure("pki inspect /etc/passwd"),
            "FAILURE: pki inspect: invalid file name '/etc/passwd': expected a plain name inside the certificate folder"
        );
        assert_eq!(
            failure("pki inspect a b"),
            "FAILURE: pki inspect: unexpected argument 'b'"
        );
        assert_eq!(failure("pki match a.key"), "FAILURE: pki match: missing <crt>");
        assert_eq!(failure("pki match"), "FAILURE: pki match: missing <key>");
        assert_eq!(
            failure("pki match a b c"),
            "FAILURE: pki match: unexpected argument 'c'"
        );
        assert_eq!(failure("pki verify a.crt"), "FAILURE: pki verify: missing <bundle>");
        assert_eq!(
            failure("pki verify a.crt ../ca.pem"),
            "FAILURE: pki verify: invalid file name '../ca.pem': expected a plain name inside the certificate folder"
        );
    }

    #[test]
    fn every_housekeeping_failure_is_clear() {
        let dir = tempfile::tempdir().unwrap();
        let admin = admin(dir.path());
        let certs = admin.certs_dir();
        let chain = Chain::write(&certs);
        assert_eq!(run(&admin, "pki selfsigned other CN:other.example").text, "SUCCESS");

        // pki match
        assert_eq!(run(&admin, "pki match leaf.key leaf.crt").text, "SUCCESS");
        assert_eq!(
            run(&admin, "pki match none.key leaf.crt").text,
            "FAILURE: no such file: none.key"
        );
        assert_eq!(
            run(&admin, "pki match leaf.key none.crt").text,
            "FAILURE: no such file: none.crt"
        );
        assert_eq!(
            run(&admin, "pki match other.key leaf.crt").text,
            "FAILURE: key other.key does not match certificate leaf.crt"
        );
        assert!(
            run(&admin, "pki match leaf.crt leaf.crt")
                .text
                .starts_with("FAILURE: leaf.crt: not a usable private key: ")
        );
        assert_eq!(
            run(&admin, "pki match leaf.key leaf.key").text,
            "FAILURE: leaf.key: no certificate found (PEM 'CERTIFICATE' block expected)"
        );

        // pki verify
        assert_eq!(
            run(&admin, &format!("pki verify leaf.crt {}", chain.bundle)).text,
            "SUCCESS"
        );
        assert_eq!(
            run(&admin, "pki verify leaf.crt none.pem").text,
            "FAILURE: no such file: none.pem"
        );
        assert_eq!(
            run(&admin, &format!("pki verify leaf.crt {}", chain.root_only)).text,
            "FAILURE: chain incomplete: no certificate for issuer 'CN=Test Intermediate CA' in root.pem"
        );
        assert_eq!(
            run(&admin, &format!("pki verify leaf.crt {}", chain.intermediate_only)).text,
            "FAILURE: chain incomplete: the last certificate of intermediate.pem ('CN=Test Intermediate CA') is \
             not a self-signed root"
        );
        assert_eq!(
            run(&admin, &format!("pki verify leaf.crt {}", chain.reversed_bundle)).text,
            "FAILURE: chain out of order in reversed.pem: 'CN=Test Intermediate CA' must come next, found \
             'CN=Test Root CA' (intermediates first, root last)"
        );
        assert_eq!(
            run(&admin, "pki verify other.crt bundle.pem").text,
            "FAILURE: chain incomplete: no certificate for issuer 'CN=other.example' in bundle.pem"
        );
        let old = Validity {
            not_before: datetime!(2020-01-01 0:00 UTC),
            not_after: datetime!(2021-01-01 0:00 UTC),
        };
        selfsigned_with_validity(&certs, "old", "old.example", &[], old).unwrap();
        assert_eq!(
            run(&admin, "pki verify old.crt old.crt").text,
            "FAILURE: certificate 'CN=old.example' expired on 2021-01-01 00:00:00 UTC"
        );
        // A second hierarchy with the same names: the signature gives it away.
        let other = tempfile::tempdir().unwrap();
        Chain::write(other.path());
        std::fs::copy(other.path().join("bundle.pem"), certs.join("forged.pem")).unwrap();
        assert_eq!(
            run(&admin, "pki verify leaf.crt forged.pem").text,
            "FAILURE: signature of 'CN=example.com' does not verify with the key of 'CN=Test Intermediate CA'"
        );

        // pki inspect
        assert_eq!(
            run(&admin, "pki inspect none.crt").text,
            "FAILURE: no such file: none.crt"
        );
        std::fs::write(certs.join("notes.txt"), "hello").unwrap();
        assert_eq!(
            run(&admin, "pki inspect notes.txt").text,
            "FAILURE: notes.txt: no certificate, certificate request or private key found (PEM expected)"
        );
        let reply = run(&admin, "pki inspect leaf.crt");
        assert!(reply.ok);
        assert!(
            reply
                .text
                .starts_with("Subject     : CN=example.com\nIssuer      : CN=Test Intermediate CA\n")
        );

        // pki csr
        assert_eq!(run(&admin, "pki csr web CN:web.example.com C:gb").text, "SUCCESS");
        assert_eq!(
            run(&admin, "pki csr web CN:web.example.com").text,
            "FAILURE: web.key already exists: choose another basename, or delete the file first"
        );
        assert_eq!(
            run(&admin, "pki csr leaf CN:x").text,
            "FAILURE: leaf.key already exists: choose another basename, or delete the file first"
        );
        // A subject that bypassed parse (JSON over the socket) is still checked.
        let reply = admin.execute(Command::Pki(PkiCommand::Csr {
            basename: "json".to_owned(),
            subject: CsrSubject::default(),
            sans: vec![],
            key: KeyType::EcdsaP256,
        }));
        assert_eq!(reply.text, "FAILURE: invalid CN '': empty");
        let reply = admin.execute(Command::Pki(PkiCommand::Inspect {
            file: "../store".to_owned(),
        }));
        assert_eq!(
            reply.text,
            "FAILURE: invalid file name '../store': expected a plain name inside the certificate folder"
        );

        // pki list
        let listing = run(&admin, "pki list");
        assert!(listing.ok);
        assert!(
            listing
                .text
                .contains("\nweb.csr           csr     C=GB, CN=web.example.com\n"),
            "{}",
            listing.text
        );
        assert!(
            listing
                .text
                .contains("\nold.crt           cert    CN=old.example, EXPIRED on 2021-01-01")
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            run(&super::super::testing::admin(empty.path()), "pki list").text,
            "User supplied certificates and keys:\n(no files in the certificate folder)"
        );
        std::fs::remove_dir_all(&certs).unwrap();
        std::fs::write(&certs, "not a folder").unwrap();
        assert!(run(&admin, "pki list").text.starts_with("FAILURE: cannot read certs: "));
    }
}
