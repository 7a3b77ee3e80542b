//! Stanzas from a bound client: address checks and stamping (RFC 6120 §8.1.2), then
//! dispatch to the server's own handlers or the router.

use super::{Connection, Flow};
use crate::delivery::may_bounce;
use crate::iq;
use crate::presence;
use crate::roster::Requester;
use sb_proto::{Element, Jid, StanzaError, StanzaErrorCondition, StreamError, StreamErrorCondition};

/// Where a client's stanza is addressed, relative to the client itself.
#[derive(Debug, PartialEq, Eq)]
pub enum Addressee {
    /// No `to`: the account (messages) or the server (iq).
    Implicit,
    /// The server's bare domain.
    Server,
    /// The account's own bare JID.
    OwnAccount,
    Other(Jid),
}

/// Check `from` and `to` of a client stanza. `from` must be absent or name this session (its
/// full or bare JID); anything else is `<invalid-from/>` (RFC 6120 §8.1.2.1). A `to` that
/// does not parse is answered with `jid-malformed`.
pub fn check_addresses(stanza: &Element, full: &Jid) -> Result<Result<Addressee, StanzaError>, StreamError> {
    if let Some(from) = stanza.attr("from") {
        let ok = Jid::parse(from).is_ok_and(|j| &j == full || j == full.to_bare());
        if !ok {
            return Err(StreamError::with_text(
                StreamErrorCondition::InvalidFrom,
                "'from' does not match this session",
            ));
        }
    }
    let Some(to) = stanza.attr("to") else {
        return Ok(Ok(Addressee::Implicit));
    };
    let Ok(to) = Jid::parse(to) else {
        return Ok(Err(StanzaError::new(StanzaErrorCondition::JidMalformed)));
    };
    Ok(Ok(
        if to.node().is_none() && to.resource().is_none() && to.domain() == full.domain() {
            Addressee::Server
        } else if to.is_bare() && to.node() == full.node() && to.domain() == full.domain() {
            Addressee::OwnAccount
        } else {
            Addressee::Other(to)
        },
    ))
}

impl Connection {
    pub(super) async fn on_stanza(&mut self, mut stanza: Element) -> Flow {
        let Some(session) = self.session.as_mut() else {
            return Flow::Close(Some(StreamError::new(StreamErrorCondition::NotAuthorized)));
        };
        // The answer to the ping after delivered offline messages: the client has them.
        if let Some(pending) = session
            .presence
            .offline_delivery
            .take_if(|p| crate::offline::answers(p, &stanza))
        {
            crate::offline::acknowledge(&self.core, &session.user, &pending).await;
            return Flow::Continue;
        }
        let full = session.jid.clone();
        let addressee = match check_addresses(&stanza, &full) {
            Err(error) => {
                log::info!("c2s: {}: {error}", self.describe());
                return Flow::Close(Some(error));
            }
            Ok(Err(error)) => {
                if may_bounce(&stanza) {
                    stanza.remove_attr("from");
                    self.write_element(&error.reply_to(&stanza));
                }
                return Flow::Continue;
            }
            Ok(Ok(addressee)) => addressee,
        };
        stanza.set_attr("from", full.to_string());
        match stanza.name.as_str() {
            "iq" => self.client_iq(stanza, addressee).await,
            "message" => {
                if addressee == Addressee::Implicit {
                    // RFC 6120 §10.3.1: a message without 'to' is for the account itself.
                    stanza.set_attr("to", full.to_bare().to_string());
                }
                self.core.route(stanza).await;
            }
            _ => self.client_presence(stanza, addressee).await,
        }
        Flow::Continue
    }

    async fn client_iq(&mut self, iq_stanza: Element, addressee: Addressee) {
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let full = session.jid.clone();
        let user = session.user.clone();
        let requester = Requester {
            user: &user,
            resource: full.resource().unwrap_or_default(),
            session: session.handle.id(),
        };
        let reply = match addressee {
            Addressee::Implicit | Addressee::Server => {
                iq::handle_for_server(&self.core, &full, Some(requester), &iq_stanza).await
            }
            Addressee::OwnAccount => iq::handle_for_account(&self.core, Some(requester), &iq_stanza).await,
            Addressee::Other(_) => {
                if let Err(error) = iq::validate(&iq_stanza) {
                    if may_bounce(&iq_stanza) {
                        self.write_element(&reply_to_client(&iq_stanza, error));
                    }
                    return;
                }
                self.core.route(iq_stanza).await;
                return;
            }
        };
        if let Some(reply) = reply {
            self.write_element(&reply);
        }
    }

    async fn client_presence(&mut self, presence: Element, addressee: Addressee) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let to = match addressee {
            Addressee::Implicit => None,
            Addressee::Server => presence.attr("to").and_then(|t| Jid::parse(t).ok()),
            Addressee::OwnAccount => Some(session.jid.to_bare()),
            Addressee::Other(jid) => Some(jid),
        };
        let original = presence.clone();
        let result = presence::from_client(
            &self.core,
            &mut session.presence,
            &session.user,
            &session.jid.clone(),
            session.handle.id(),
            presence,
            to,
        )
        .await;
        match result {
            Ok(for_session) => {
                for stanza in &for_session.stanzas {
                    self.write_element(stanza);
                }
                for raw in &for_session.raw {
                    self.io.write_buf.extend_from_slice(raw);
                }
            }
            Err(error) => {
                if may_bounce(&original) {
                    self.write_element(&reply_to_client(&original, error));
                }
            }
        }
    }
}

/// An error reply to the client's own stanza: addressed back to it, from whom it addressed.
fn reply_to_client(stanza: &Element, error: StanzaError) -> Element {
    error.reply_to(stanza)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sb_proto::ns;

    fn msg(from: Option<&str>, to: Option<&str>) -> Element {
        Element::new("message", ns::CLIENT)
            .with_opt_attr("from", from)
            .with_opt_attr("to", to)
    }

    #[test]
    fn addresses() {
        let full: Jid = "juliet@example.com/balcony".parse().unwrap();
        let check = |from, to| check_addresses(&msg(from, to), &full);
        assert_eq!(check(None, None).unwrap().unwrap(), Addressee::Implicit);
        assert_eq!(
            check(Some("juliet@example.com"), Some("example.com")).unwrap().unwrap(),
            Addressee::Server
        );
        assert_eq!(
            check(Some("juliet@example.com/balcony"), Some("juliet@example.com"))
                .unwrap()
                .unwrap(),
            Addressee::OwnAccount
        );
        assert!(matches!(
            check(None, Some("romeo@example.net/orchard")).unwrap().unwrap(),
            Addressee::Other(j) if j.to_string() == "romeo@example.net/orchard"
        ));
        assert_eq!(
            check(Some("romeo@example.net"), None).unwrap_err().condition,
            StreamErrorCondition::InvalidFrom
        );
        assert_eq!(
            check(Some("juliet@example.com/other"), None).unwrap_err().condition,
            StreamErrorCondition::InvalidFrom
        );
        assert_eq!(
            check(None, Some("@@bad")).unwrap().unwrap_err().condition,
            StanzaErrorCondition::JidMalformed
        );
    }
}
