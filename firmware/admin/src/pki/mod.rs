//! `pki ...`: certificate housekeeping in the data dir's certificate folder.

mod certs;

pub use certs::{
    CERTS_DIR_NAME, CertSummary, PkiError, SELF_SIGNED_DAYS, Validity, cert_file, certs_dir, chain_ok, format_time,
    inspect, inspect_all, key_matches, selfsigned, selfsigned_with_validity,
};

use crate::command::{Args, ParseError, Usage, unknown_subcommand};
use crate::{Admin, Family, Reply};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PkiCommand {
    /// `pki selfsigned <basename> [CN:<v>] [subjectAltName:<a,b,c>]`; the CN defaults to the
    /// configured domain, the SANs to the CN.
    Selfsigned {
        basename: String,
        cn: Option<String>,
        sans: Vec<String>,
    },
}

impl Family for PkiCommand {
    const PREFIX: &'static [&'static str] = &["pki"];
    const USAGE: &'static [Usage] = &[Usage {
        syntax: "pki selfsigned <basename> [CN:<v>] [subjectAltName:<a,b,c>]",
        summary: "make <basename>.key and a self-signed <basename>.crt (CN defaults to the domain)",
    }];

    fn parse(args: &[String]) -> Result<Self, ParseError> {
        match args.first().map(String::as_str) {
            Some("selfsigned") => parse_selfsigned(&args[1..]),
            _ => Err(unknown_subcommand(Self::PREFIX, args)),
        }
    }

    fn apply(self, admin: &Admin) -> Reply {
        match self {
            PkiCommand::Selfsigned { basename, cn, sans } => apply_selfsigned(admin, &basename, cn, &sans),
        }
    }
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
        } else if name.eq_ignore_ascii_case("subjectAltName") {
            if sans.is_some() {
                return Err(args.invalid("subjectAltName given twice"));
            }
            let names: Vec<String> = value.split(',').map(|name| name.trim().to_owned()).collect();
            for name in &names {
                certs::san_entry(name).map_err(|e| args.invalid(e))?;
            }
            sans = Some(names);
        } else {
            return Err(args.invalid(format!(
                "unknown attribute '{attribute}' (expected CN:<v> or subjectAltName:<a,b,c>)"
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
        admin.notify_config_changed();
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
            "FAILURE: pki selfsigned: unknown attribute 'O:Acme' (expected CN:<v> or subjectAltName:<a,b,c>)"
        );
        assert_eq!(failure("pki selfsigned x CN:"), "FAILURE: pki selfsigned: empty CN");
        assert_eq!(
            failure("pki selfsigned x CN:a CN:b"),
            "FAILURE: pki selfsigned: CN given twice"
        );
        assert_eq!(
            failure("pki selfsigned x subjectAltName:a subjectAltName:b"),
            "FAILURE: pki selfsigned: subjectAltName given twice"
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
}
