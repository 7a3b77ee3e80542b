//! JIDs per RFC 7622. CONTRACT (implementation pending, owned by the proto helper).

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid {
    node: Option<String>,
    domain: String,
    resource: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    #[error("empty JID")]
    Empty,
    #[error("{0}")]
    Malformed(&'static str),
}

impl Jid {
    /// Parse and normalize (PRECIS UsernameCaseMapped for the localpart, lowercase +
    /// IDNA-less ASCII/Unicode check for the domain, OpaqueString for the resource).
    pub fn parse(_s: &str) -> Result<Jid, JidError> {
        todo!("proto helper")
    }
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }
    pub fn domain(&self) -> &str {
        &self.domain
    }
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }
    pub fn is_bare(&self) -> bool {
        self.resource.is_none()
    }
    pub fn to_bare(&self) -> Jid {
        Jid {
            node: self.node.clone(),
            domain: self.domain.clone(),
            resource: None,
        }
    }
    /// A copy with another resource; the resource is validated.
    pub fn with_resource(&self, _resource: &str) -> Result<Jid, JidError> {
        todo!("proto helper")
    }
    /// A JID for a domain or account, validated.
    pub fn from_parts(_node: Option<&str>, _domain: &str, _resource: Option<&str>) -> Result<Jid, JidError> {
        todo!("proto helper")
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = &self.node {
            write!(f, "{n}@")?;
        }
        f.write_str(&self.domain)?;
        if let Some(r) = &self.resource {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Jid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Jid::parse(s)
    }
}
