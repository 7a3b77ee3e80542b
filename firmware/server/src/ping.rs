//! XMPP Ping (XEP-0199): the server answers pings to itself and, on an account's behalf,
//! pings to a bare JID; pings to a full JID are routed to that client.

use crate::iq::{self, IqFuture, IqHandler, IqRequest, IqType};
use sb_proto::ns;

pub const FEATURES: &[&str] = &[ns::PING];

pub const HANDLER: IqHandler = IqHandler {
    element: "ping",
    namespace: ns::PING,
    server_features: FEATURES,
    account_features: FEATURES,
    handle,
};

fn handle(request: IqRequest<'_>) -> IqFuture<'_> {
    let reply = match request.kind {
        IqType::Get => Ok(iq::result(request.iq, None)),
        _ => Err(iq::service_unavailable()),
    };
    Box::pin(std::future::ready(reply))
}
