//! Legacy session establishment (RFC 3921 §3). RFC 6121 made it a no-op; it is advertised
//! as `<optional/>` and answered with an empty result for clients that still send it.

use sb_proto::{Element, ns};

pub fn answer(iq: &Element) -> Element {
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "result")
        .with_opt_attr("id", iq.attr("id"))
}
