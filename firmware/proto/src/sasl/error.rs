//! SASL failure conditions (RFC 6120 §6.5).

use crate::element::Element;
use crate::ns;

/// Why a SASL exchange failed. The `&'static str` in some variants explains the failure for
/// the server's log; it is never sent to the peer (the `<failure/>` element carries only the
/// condition, so a client cannot tell an unknown user from a wrong password).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("aborted")]
    Aborted,
    #[error("account-disabled")]
    AccountDisabled,
    #[error("credentials-expired")]
    CredentialsExpired,
    #[error("encryption-required")]
    EncryptionRequired,
    #[error("incorrect-encoding: {0}")]
    IncorrectEncoding(&'static str),
    #[error("invalid-authzid")]
    InvalidAuthzid,
    #[error("invalid-mechanism")]
    InvalidMechanism,
    #[error("malformed-request: {0}")]
    MalformedRequest(&'static str),
    #[error("mechanism-too-weak")]
    MechanismTooWeak,
    #[error("not-authorized: {0}")]
    NotAuthorized(&'static str),
    #[error("temporary-auth-failure")]
    TemporaryAuthFailure,
}

impl SaslError {
    /// The condition's element name, as on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            SaslError::Aborted => "aborted",
            SaslError::AccountDisabled => "account-disabled",
            SaslError::CredentialsExpired => "credentials-expired",
            SaslError::EncryptionRequired => "encryption-required",
            SaslError::IncorrectEncoding(_) => "incorrect-encoding",
            SaslError::InvalidAuthzid => "invalid-authzid",
            SaslError::InvalidMechanism => "invalid-mechanism",
            SaslError::MalformedRequest(_) => "malformed-request",
            SaslError::MechanismTooWeak => "mechanism-too-weak",
            SaslError::NotAuthorized(_) => "not-authorized",
            SaslError::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }

    /// The condition a server reported in its `<failure/>`, for the client side.
    pub fn from_condition(name: &str) -> Option<SaslError> {
        const REPORTED: &str = "reported by the server";
        Some(match name {
            "aborted" => SaslError::Aborted,
            "account-disabled" => SaslError::AccountDisabled,
            "credentials-expired" => SaslError::CredentialsExpired,
            "encryption-required" => SaslError::EncryptionRequired,
            "incorrect-encoding" => SaslError::IncorrectEncoding(REPORTED),
            "invalid-authzid" => SaslError::InvalidAuthzid,
            "invalid-mechanism" => SaslError::InvalidMechanism,
            "malformed-request" => SaslError::MalformedRequest(REPORTED),
            "mechanism-too-weak" => SaslError::MechanismTooWeak,
            "not-authorized" => SaslError::NotAuthorized(REPORTED),
            "temporary-auth-failure" => SaslError::TemporaryAuthFailure,
            _ => return None,
        })
    }

    /// `<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><condition/></failure>`.
    pub fn to_failure_element(&self) -> Element {
        Element::new("failure", ns::SASL).with_child(Element::new(self.as_str(), ns::SASL))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_element_carries_only_the_condition() {
        let xml = SaslError::NotAuthorized("unknown user").to_failure_element().to_xml();
        assert_eq!(
            xml,
            "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"
        );
        let xml = SaslError::InvalidAuthzid.to_failure_element().to_xml();
        assert_eq!(
            xml,
            "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><invalid-authzid/></failure>"
        );
    }

    #[test]
    fn condition_names_round_trip() {
        let all = [
            SaslError::Aborted,
            SaslError::AccountDisabled,
            SaslError::CredentialsExpired,
            SaslError::EncryptionRequired,
            SaslError::IncorrectEncoding("x"),
            SaslError::InvalidAuthzid,
            SaslError::InvalidMechanism,
            SaslError::MalformedRequest("x"),
            SaslError::MechanismTooWeak,
            SaslError::NotAuthorized("x"),
            SaslError::TemporaryAuthFailure,
        ];
        for e in all {
            let back = SaslError::from_condition(e.as_str()).unwrap();
            assert_eq!(back.as_str(), e.as_str());
        }
        assert_eq!(SaslError::from_condition("bogus"), None);
    }
}
