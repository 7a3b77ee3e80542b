//! SASL PLAIN (RFC 4616) message parsing. The server offers PLAIN only inside TLS.

use super::SaslError;

/// RFC 4616 §2 limits each field to 255 octets.
const MAX_FIELD_LEN: usize = 255;

/// Split `[authzid] NUL authcid NUL passwd` into `(authzid, authcid, password)`.
/// The password is returned as received; [`super::UserCredentials::verify_plain`] prepares it.
pub fn parse_plain(data: &[u8]) -> Result<(Option<String>, String, String), SaslError> {
    let mut fields = data.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(SaslError::MalformedRequest(
            "PLAIN message must have exactly three NUL-separated fields",
        ));
    };
    if authcid.is_empty() || password.is_empty() {
        return Err(SaslError::MalformedRequest(
            "PLAIN message has an empty username or password",
        ));
    }
    if authzid.len() > MAX_FIELD_LEN || authcid.len() > MAX_FIELD_LEN || password.len() > MAX_FIELD_LEN {
        return Err(SaslError::MalformedRequest("PLAIN field longer than 255 octets"));
    }
    let text = |field: &[u8]| {
        String::from_utf8(field.to_vec()).map_err(|_| SaslError::MalformedRequest("PLAIN field is not UTF-8"))
    };
    let authzid = if authzid.is_empty() { None } else { Some(text(authzid)?) };
    Ok((authzid, text(authcid)?, text(password)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_authzid() {
        assert_eq!(
            parse_plain(b"\0tim\0tanstaaftanstaaf").unwrap(),
            (None, "tim".to_owned(), "tanstaaftanstaaf".to_owned())
        );
        assert_eq!(
            parse_plain(b"Ursel\0Kurt\0xipj3plmq").unwrap(),
            (Some("Ursel".to_owned()), "Kurt".to_owned(), "xipj3plmq".to_owned())
        );
    }

    #[test]
    fn rejects_malformed_messages() {
        for bad in [
            &b"tim\0secret"[..],
            b"\0tim\0secret\0extra",
            b"\0\0secret",
            b"\0tim\0",
            b"",
            b"\0ti\xffm\0secret",
        ] {
            assert!(
                matches!(parse_plain(bad), Err(SaslError::MalformedRequest(_))),
                "{bad:?}"
            );
        }
        let long = [b"\0".as_slice(), &[b'a'; 256], b"\0pw"].concat();
        assert!(parse_plain(&long).is_err());
    }
}
