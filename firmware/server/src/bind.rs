//! Resource binding (RFC 6120 §7): the client's resource when it asks for a valid one, a
//! server-made one otherwise; a resource already in use passes to the newer session.

use sb_proto::{Element, Jid, StanzaError, StanzaErrorCondition, ns};

/// The full JID to bind for `user` given the request, before conflict handling.
/// `make_resource` supplies a fresh resource when the client asks for none.
pub fn requested_jid(
    request: &Element,
    user: &str,
    domain: &str,
    make_resource: impl FnOnce() -> String,
) -> Result<Jid, StanzaError> {
    let bind = request
        .get_child("bind", ns::BIND)
        .ok_or_else(|| StanzaError::new(StanzaErrorCondition::BadRequest))?;
    let asked = bind
        .get_child("resource", ns::BIND)
        .map(|r| r.text().trim().to_owned())
        .filter(|r| !r.is_empty());
    let resource = asked.unwrap_or_else(make_resource);
    // RFC 6120 §7.7.2.1: a resource that violates the resourcepart rules is bad-request.
    Jid::from_parts(Some(user), domain, Some(&resource))
        .map_err(|_| StanzaError::with_text(StanzaErrorCondition::BadRequest, "invalid resource"))
}

pub fn answer(request: &Element, jid: &Jid) -> Element {
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "result")
        .with_opt_attr("id", request.attr("id"))
        .with_child(Element::new("bind", ns::BIND).with_child(Element::new("jid", ns::BIND).with_text(jid.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(resource: Option<&str>) -> Element {
        let mut bind = Element::new("bind", ns::BIND);
        if let Some(r) = resource {
            bind.push_child(Element::new("resource", ns::BIND).with_text(r));
        }
        Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", "b1")
            .with_child(bind)
    }

    #[test]
    fn asked_generated_and_invalid_resources() {
        let jid = requested_jid(&request(Some("balcony")), "juliet", "example.com", || "x".into()).unwrap();
        assert_eq!(jid.to_string(), "juliet@example.com/balcony");
        let jid = requested_jid(&request(None), "juliet", "example.com", || "gen42".into()).unwrap();
        assert_eq!(jid.resource(), Some("gen42"));
        let jid = requested_jid(&request(Some("  ")), "juliet", "example.com", || "gen43".into()).unwrap();
        assert_eq!(jid.resource(), Some("gen43"));
        let long = "r".repeat(1100);
        let err = requested_jid(&request(Some(&long)), "juliet", "example.com", || "x".into()).unwrap_err();
        assert_eq!(err.condition, StanzaErrorCondition::BadRequest);
        let xml = answer(&request(None), &jid).to_xml();
        assert!(xml.contains("<jid>juliet@example.com/gen43</jid>"), "{xml}");
    }
}
