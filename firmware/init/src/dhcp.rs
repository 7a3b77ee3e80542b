//! DHCPv4 messages (RFC 2131 / RFC 2132), without I/O: encode the client's DISCOVER and
//! REQUEST, decode the server's OFFER / ACK / NAK. Fixed-size buffers; every length checked.

use std::net::Ipv4Addr;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
const FIXED_LEN: usize = 236;
/// Every DHCP client must accept 576-byte messages; our own never exceed it.
pub const MAX_MESSAGE: usize = 576;
const FLAG_BROADCAST: u16 = 0x8000;

const OPT_PAD: u8 = 0;
const OPT_SUBNET_MASK: u8 = 1;
const OPT_ROUTER: u8 = 3;
const OPT_DNS: u8 = 6;
const OPT_HOSTNAME: u8 = 12;
const OPT_REQUESTED_IP: u8 = 50;
const OPT_LEASE_TIME: u8 = 51;
const OPT_MESSAGE_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_PARAMETER_LIST: u8 = 55;
const OPT_RENEWAL_T1: u8 = 58;
const OPT_END: u8 = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
}

impl MessageType {
    fn from_u8(v: u8) -> Option<MessageType> {
        Some(match v {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            7 => MessageType::Release,
            _ => return None,
        })
    }
}

/// What a client asks for in one message.
#[derive(Debug, Clone)]
pub struct ClientMessage<'a> {
    pub kind: MessageType,
    pub xid: u32,
    pub mac: [u8; 6],
    pub secs: u16,
    /// Our current address when renewing/rebinding; 0.0.0.0 otherwise.
    pub ciaddr: Ipv4Addr,
    pub requested_ip: Option<Ipv4Addr>,
    pub server_id: Option<Ipv4Addr>,
    pub hostname: Option<&'a str>,
}

pub type Buffer = heapless::Vec<u8, MAX_MESSAGE>;

pub fn encode(msg: &ClientMessage) -> Buffer {
    let mut out = Buffer::new();
    let mut put = |bytes: &[u8]| {
        // Capacity is 576 and the largest message below is ~300 bytes; a failed extend
        // would only truncate an option, never overrun.
        let _ = out.extend_from_slice(bytes);
    };
    put(&[1, 1, 6, 0]); // BOOTREQUEST, Ethernet, 6-byte MAC, no hops
    put(&msg.xid.to_be_bytes());
    put(&msg.secs.to_be_bytes());
    // Ask for broadcast replies: until the address is configured, a unicast reply to it
    // would be dropped by our own IP stack.
    let flags = if msg.ciaddr.is_unspecified() { FLAG_BROADCAST } else { 0 };
    put(&flags.to_be_bytes());
    put(&msg.ciaddr.octets());
    put(&[0; 12]); // yiaddr, siaddr, giaddr
    let mut chaddr = [0u8; 16];
    chaddr[..6].copy_from_slice(&msg.mac);
    put(&chaddr);
    put(&[0; 64 + 128]); // sname, file
    put(&MAGIC);
    put(&[OPT_MESSAGE_TYPE, 1, msg.kind as u8]);
    if let Some(ip) = msg.requested_ip {
        put(&[OPT_REQUESTED_IP, 4]);
        put(&ip.octets());
    }
    if let Some(ip) = msg.server_id {
        put(&[OPT_SERVER_ID, 4]);
        put(&ip.octets());
    }
    if let Some(name) = msg.hostname.filter(|n| !n.is_empty() && n.len() <= 63) {
        put(&[OPT_HOSTNAME, name.len() as u8]);
        put(name.as_bytes());
    }
    put(&[
        OPT_PARAMETER_LIST,
        5,
        OPT_SUBNET_MASK,
        OPT_ROUTER,
        OPT_DNS,
        OPT_LEASE_TIME,
        OPT_RENEWAL_T1,
    ]);
    put(&[OPT_END]);
    out
}

/// A server's answer, reduced to what configuring an interface needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    pub kind: MessageType,
    pub xid: u32,
    pub yiaddr: Ipv4Addr,
    pub server_id: Option<Ipv4Addr>,
    pub subnet_mask: Option<Ipv4Addr>,
    pub router: Option<Ipv4Addr>,
    pub dns: heapless::Vec<Ipv4Addr, 3>,
    pub lease_s: Option<u32>,
    pub renew_s: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message shorter than the fixed DHCP header")]
    Short,
    #[error("not a BOOTREPLY for Ethernet")]
    NotAReply,
    #[error("magic cookie missing")]
    NoMagic,
    #[error("option {0} runs past the end of the message")]
    TruncatedOption(u8),
    #[error("no DHCP message type option")]
    NoMessageType,
}

pub fn decode(bytes: &[u8]) -> Result<ServerReply, DecodeError> {
    if bytes.len() < FIXED_LEN + 4 {
        return Err(DecodeError::Short);
    }
    if bytes[0] != 2 || bytes[1] != 1 || bytes[2] != 6 {
        return Err(DecodeError::NotAReply);
    }
    if bytes[FIXED_LEN..FIXED_LEN + 4] != MAGIC {
        return Err(DecodeError::NoMagic);
    }
    let ip = |at: usize| Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);
    let mut reply = ServerReply {
        kind: MessageType::Nak,
        xid: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        yiaddr: ip(16),
        server_id: None,
        subnet_mask: None,
        router: None,
        dns: heapless::Vec::new(),
        lease_s: None,
        renew_s: None,
    };
    let mut kind = None;
    let mut pos = FIXED_LEN + 4;
    while pos < bytes.len() {
        let code = bytes[pos];
        if code == OPT_END {
            break;
        }
        if code == OPT_PAD {
            pos += 1;
            continue;
        }
        let len = *bytes.get(pos + 1).ok_or(DecodeError::TruncatedOption(code))? as usize;
        let value = bytes
            .get(pos + 2..pos + 2 + len)
            .ok_or(DecodeError::TruncatedOption(code))?;
        let addr = |v: &[u8]| (v.len() >= 4).then(|| Ipv4Addr::new(v[0], v[1], v[2], v[3]));
        let secs = |v: &[u8]| (v.len() == 4).then(|| u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
        match code {
            OPT_MESSAGE_TYPE if len == 1 => kind = MessageType::from_u8(value[0]),
            OPT_SUBNET_MASK => reply.subnet_mask = addr(value),
            OPT_ROUTER => reply.router = addr(value),
            OPT_SERVER_ID => reply.server_id = addr(value),
            OPT_DNS => {
                for chunk in value.chunks_exact(4) {
                    let _ = reply.dns.push(Ipv4Addr::new(chunk[0], chunk[1], chunk[2], chunk[3]));
                }
            }
            OPT_LEASE_TIME => reply.lease_s = secs(value),
            OPT_RENEWAL_T1 => reply.renew_s = secs(value),
            _ => {}
        }
        pos += 2 + len;
    }
    reply.kind = kind.ok_or(DecodeError::NoMessageType)?;
    Ok(reply)
}

/// Prefix length of a contiguous netmask; None for a non-contiguous one.
pub fn mask_to_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let prefix = bits.leading_ones();
    (bits.checked_shl(prefix).unwrap_or(0) == 0).then_some(prefix as u8)
}

pub fn prefix_to_mask(prefix: u8) -> Ipv4Addr {
    let prefix = prefix.min(32) as u32;
    Ipv4Addr::from(if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_reply(kind: u8, extra: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; FIXED_LEN];
        b[0] = 2;
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        b[16..20].copy_from_slice(&[10, 0, 2, 15]);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&[53, 1, kind, 0, 1, 4, 255, 255, 255, 0, 3, 4, 10, 0, 2, 2]);
        b.extend_from_slice(&[6, 8, 10, 0, 2, 3, 1, 1, 1, 1, 51, 4, 0, 1, 81, 128, 54, 4, 10, 0, 2, 2]);
        b.extend_from_slice(extra);
        b.push(255);
        b
    }

    #[test]
    fn discover_has_the_header_fields_and_options_a_server_needs() {
        let msg = ClientMessage {
            kind: MessageType::Discover,
            xid: 0x0102_0304,
            mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            secs: 3,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            requested_ip: None,
            server_id: None,
            hostname: Some("sb"),
        };
        let bytes = encode(&msg);
        assert_eq!(&bytes[..4], &[1, 1, 6, 0]);
        assert_eq!(&bytes[4..8], &[1, 2, 3, 4]);
        assert_eq!(&bytes[8..10], &[0, 3]);
        assert_eq!(&bytes[10..12], &[0x80, 0]);
        assert_eq!(&bytes[28..34], &msg.mac);
        assert_eq!(&bytes[236..240], &MAGIC);
        assert_eq!(&bytes[240..243], &[53, 1, 1]);
        assert_eq!(&bytes[243..247], &[12, 2, b's', b'b']);
        assert_eq!(*bytes.last().unwrap(), 255);
    }

    #[test]
    fn request_carries_requested_ip_and_server_id() {
        let msg = ClientMessage {
            kind: MessageType::Request,
            xid: 7,
            mac: [0; 6],
            secs: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            requested_ip: Some(Ipv4Addr::new(10, 0, 2, 15)),
            server_id: Some(Ipv4Addr::new(10, 0, 2, 2)),
            hostname: None,
        };
        let bytes = encode(&msg);
        assert_eq!(&bytes[240..243], &[53, 1, 3]);
        assert_eq!(&bytes[243..249], &[50, 4, 10, 0, 2, 15]);
        assert_eq!(&bytes[249..255], &[54, 4, 10, 0, 2, 2]);
    }

    #[test]
    fn renewal_is_unicast_style() {
        let msg = ClientMessage {
            kind: MessageType::Request,
            xid: 7,
            mac: [0; 6],
            secs: 0,
            ciaddr: Ipv4Addr::new(10, 0, 2, 15),
            requested_ip: None,
            server_id: None,
            hostname: None,
        };
        let bytes = encode(&msg);
        assert_eq!(&bytes[10..16], &[0, 0, 10, 0, 2, 15]);
    }

    #[test]
    fn decodes_an_ack() {
        let reply = decode(&server_reply(5, &[])).unwrap();
        assert_eq!(reply.kind, MessageType::Ack);
        assert_eq!(reply.xid, 0xdead_beef);
        assert_eq!(reply.yiaddr, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(reply.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(reply.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(reply.server_id, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(
            reply.dns.as_slice(),
            &[Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)]
        );
        assert_eq!(reply.lease_s, Some(86400));
    }

    #[test]
    fn rejects_malformed_replies_at_every_truncation() {
        let full = server_reply(2, &[]);
        assert_eq!(decode(&full).unwrap().kind, MessageType::Offer);
        // Any truncation either decodes (cut after complete options) or fails cleanly.
        for cut in 0..full.len() {
            let _ = decode(&full[..cut]);
        }
        assert_eq!(decode(&full[..100]), Err(DecodeError::Short));
        assert_eq!(decode(&full[..242]), Err(DecodeError::TruncatedOption(53)));
        let mut wrong = full.clone();
        wrong[0] = 1;
        assert_eq!(decode(&wrong), Err(DecodeError::NotAReply));
        let mut nomagic = full.clone();
        nomagic[236] = 0;
        assert_eq!(decode(&nomagic), Err(DecodeError::NoMagic));
        let mut no_type = full;
        no_type[240] = 250; // unknown option code in place of message type
        assert_eq!(decode(&no_type), Err(DecodeError::NoMessageType));
    }

    #[test]
    fn masks_and_prefixes() {
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 0, 255, 0)), None);
        assert_eq!(prefix_to_mask(20), Ipv4Addr::new(255, 255, 240, 0));
        assert_eq!(prefix_to_mask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(prefix_to_mask(32), Ipv4Addr::new(255, 255, 255, 255));
    }
}
