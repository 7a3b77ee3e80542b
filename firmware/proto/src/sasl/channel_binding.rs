//! SCRAM channel binding (RFC 5802 §6) with the `tls-exporter` type (RFC 9266).
//!
//! A SCRAM-*-PLUS exchange carries a value only the two ends of *this* TLS connection
//! know inside the client's proof (`c=`), so a man in the middle that terminates TLS
//! towards each side (an accepted MITM certificate) cannot relay the login: the two TLS
//! connections have different exporter values. The caller (which owns the TLS session)
//! computes the value with [`EXPORTER_LABEL`], an empty context and [`EXPORTER_LEN`] bytes,
//! and only on TLS 1.3 (RFC 9266 §3: with TLS 1.2 only when Extended Master Secret is in
//! use, which we do not want to depend on).
//!
//! The gs2 channel-binding flag also protects the choice of mechanism: a client that can
//! bind but was shown no -PLUS mechanism says `y`; if the server did offer -PLUS, someone
//! removed it from the feature list on the way, and the server refuses (downgrade).

use super::SaslError;

/// The only channel binding type supported.
pub const TLS_EXPORTER: &str = "tls-exporter";

/// RFC 9266 §2: the exporter label.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

/// RFC 9266 §2: the exporter output length.
pub const EXPORTER_LEN: usize = 32;

/// The XEP-0440 namespace announcing which channel binding types the server supports.
pub const NS_SASL_CHANNEL_BINDING: &str = "urn:xmpp:sasl-cb:0";

/// The server's side of channel binding for one SCRAM exchange.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum ServerChannelBinding {
    /// No -PLUS mechanism is offered on this connection (no TLS 1.3): a client saying `y`
    /// is right to think we cannot bind.
    #[default]
    NotOffered,
    /// -PLUS is offered, but the client chose a plain SCRAM mechanism: it must say `n`
    /// (it cannot bind); `y` means it saw no -PLUS offer, so the offer was stripped.
    OfferedNotUsed,
    /// A SCRAM-*-PLUS exchange bound to this connection's `tls-exporter` value.
    TlsExporter(Vec<u8>),
}

impl std::fmt::Debug for ServerChannelBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The exporter value is key material of the TLS session.
        f.write_str(match self {
            ServerChannelBinding::NotOffered => "NotOffered",
            ServerChannelBinding::OfferedNotUsed => "OfferedNotUsed",
            ServerChannelBinding::TlsExporter(_) => "TlsExporter",
        })
    }
}

impl ServerChannelBinding {
    /// Check the gs2 channel-binding flag of a client-first-message (`n`, `y` or
    /// `p=<type>`) against what this exchange is.
    pub(crate) fn check_flag(&self, flag: &str) -> Result<(), SaslError> {
        match (flag, self) {
            ("n", ServerChannelBinding::TlsExporter(_)) | ("y", ServerChannelBinding::TlsExporter(_)) => Err(
                SaslError::MalformedRequest("a SCRAM-*-PLUS mechanism without channel binding (gs2 flag n or y)"),
            ),
            ("n", _) | ("y", ServerChannelBinding::NotOffered) => Ok(()),
            ("y", ServerChannelBinding::OfferedNotUsed) => Err(SaslError::NotAuthorized(
                "client supports channel binding but saw no -PLUS offer: the offer was stripped (downgrade)",
            )),
            (flag, binding) => match flag.strip_prefix("p=") {
                Some(TLS_EXPORTER) if matches!(binding, ServerChannelBinding::TlsExporter(_)) => Ok(()),
                Some(_) if matches!(binding, ServerChannelBinding::TlsExporter(_)) => Err(SaslError::MalformedRequest(
                    "unsupported channel binding type (only tls-exporter)",
                )),
                Some(_) => Err(SaslError::MalformedRequest(
                    "channel binding requested with a mechanism that is not SCRAM-*-PLUS",
                )),
                None => Err(SaslError::MalformedRequest("bad gs2 channel-binding flag")),
            },
        }
    }

    /// The channel binding data `c=` must carry after the gs2 header.
    pub(crate) fn data(&self) -> &[u8] {
        match self {
            ServerChannelBinding::TlsExporter(data) => data,
            ServerChannelBinding::NotOffered | ServerChannelBinding::OfferedNotUsed => &[],
        }
    }
}

/// The client's side of channel binding, which decides its gs2 flag.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum ClientChannelBinding {
    /// `n`: this client does not bind (or has no TLS).
    #[default]
    None,
    /// `y`: this client could bind but the server offered no -PLUS mechanism.
    SupportedNotOffered,
    /// `p=tls-exporter` with this connection's exporter value (a SCRAM-*-PLUS mechanism).
    TlsExporter(Vec<u8>),
}

impl std::fmt::Debug for ClientChannelBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientChannelBinding::None => "None",
            ClientChannelBinding::SupportedNotOffered => "SupportedNotOffered",
            ClientChannelBinding::TlsExporter(_) => "TlsExporter",
        })
    }
}

impl ClientChannelBinding {
    /// The gs2 header without authzid: `n,,`, `y,,` or `p=tls-exporter,,`.
    pub(crate) fn gs2_header(&self) -> String {
        match self {
            ClientChannelBinding::None => "n,,".to_owned(),
            ClientChannelBinding::SupportedNotOffered => "y,,".to_owned(),
            ClientChannelBinding::TlsExporter(_) => format!("p={TLS_EXPORTER},,"),
        }
    }

    pub(crate) fn data(&self) -> &[u8] {
        match self {
            ClientChannelBinding::TlsExporter(data) => data,
            ClientChannelBinding::None | ClientChannelBinding::SupportedNotOffered => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_against_what_the_server_offers() {
        let plus = ServerChannelBinding::TlsExporter(vec![7; EXPORTER_LEN]);
        let offered = ServerChannelBinding::OfferedNotUsed;
        let none = ServerChannelBinding::NotOffered;

        assert_eq!(plus.check_flag("p=tls-exporter"), Ok(()));
        assert!(matches!(plus.check_flag("n"), Err(SaslError::MalformedRequest(_))));
        assert!(matches!(plus.check_flag("y"), Err(SaslError::MalformedRequest(_))));
        assert!(matches!(
            plus.check_flag("p=tls-unique"),
            Err(SaslError::MalformedRequest(_))
        ));
        assert!(matches!(
            plus.check_flag("p=tls-server-end-point"),
            Err(SaslError::MalformedRequest(_))
        ));

        assert_eq!(offered.check_flag("n"), Ok(()));
        assert!(matches!(offered.check_flag("y"), Err(SaslError::NotAuthorized(_))));
        assert!(matches!(
            offered.check_flag("p=tls-exporter"),
            Err(SaslError::MalformedRequest(_))
        ));

        assert_eq!(none.check_flag("n"), Ok(()));
        assert_eq!(none.check_flag("y"), Ok(()));
        assert!(matches!(
            none.check_flag("p=tls-exporter"),
            Err(SaslError::MalformedRequest(_))
        ));

        for bad in ["", "x", "N", "p", "p=", "yy"] {
            for binding in [&plus, &offered, &none] {
                assert!(binding.check_flag(bad).is_err(), "{bad:?} with {binding:?}");
            }
        }
    }

    #[test]
    fn debug_hides_the_exporter_value() {
        let text = format!("{:?}", ServerChannelBinding::TlsExporter(b"secret-bytes".to_vec()));
        assert_eq!(text, "TlsExporter");
        let text = format!("{:?}", ClientChannelBinding::TlsExporter(b"secret-bytes".to_vec()));
        assert_eq!(text, "TlsExporter");
    }

    #[test]
    fn client_headers() {
        assert_eq!(ClientChannelBinding::None.gs2_header(), "n,,");
        assert_eq!(ClientChannelBinding::SupportedNotOffered.gs2_header(), "y,,");
        assert_eq!(
            ClientChannelBinding::TlsExporter(vec![1]).gs2_header(),
            "p=tls-exporter,,"
        );
    }
}
