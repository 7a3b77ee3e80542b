//! Software Version (XEP-0092) of the server: name and version only; the operating system
//! is left out because it helps attackers more than users.

use crate::iq::{self, IqFuture, IqHandler, IqRequest, IqTarget, IqType};
use sb_proto::{Element, ns};

pub const FEATURES: &[&str] = &[ns::VERSION];

pub const NAME: &str = "Switchboard";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The server's version only: an account's is its clients' to tell.
pub const HANDLER: IqHandler = IqHandler {
    element: "query",
    namespace: ns::VERSION,
    server_features: FEATURES,
    account_features: &[],
    handle,
};

fn handle(request: IqRequest<'_>) -> IqFuture<'_> {
    let reply = match (request.kind, request.target) {
        (IqType::Get, IqTarget::Server) => Ok(iq::result(request.iq, Some(answer()))),
        _ => Err(iq::service_unavailable()),
    };
    Box::pin(std::future::ready(reply))
}

pub fn answer() -> Element {
    Element::new("query", ns::VERSION)
        .with_child(Element::new("name", ns::VERSION).with_text(NAME))
        .with_child(Element::new("version", ns::VERSION).with_text(VERSION))
}
