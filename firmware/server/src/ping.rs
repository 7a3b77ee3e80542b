//! XMPP Ping (XEP-0199): the server answers pings to itself and, on an account's behalf,
//! pings to a bare JID; pings to a full JID are routed to that client.

use sb_proto::{Element, ns};

pub const FEATURES: &[&str] = &[ns::PING];

pub fn is_ping(iq: &Element) -> bool {
    iq.attr("type") == Some("get") && iq.has_child("ping", ns::PING)
}
