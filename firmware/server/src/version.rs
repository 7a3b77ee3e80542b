//! Software Version (XEP-0092) of the server: name and version only; the operating system
//! is left out because it helps attackers more than users.

use sb_proto::{Element, ns};

pub const FEATURES: &[&str] = &[ns::VERSION];

pub const NAME: &str = "Switchboard";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn is_version_query(iq: &Element) -> bool {
    iq.attr("type") == Some("get") && iq.has_child("query", ns::VERSION)
}

pub fn answer() -> Element {
    Element::new("query", ns::VERSION)
        .with_child(Element::new("name", ns::VERSION).with_text(NAME))
        .with_child(Element::new("version", ns::VERSION).with_text(VERSION))
}
