//! Netlink and generic netlink framing, sans-IO: requests are written into
//! byte buffers (several may share one buffer, for one `sendmsg`), and
//! receive buffers are split into messages and classified.
//!
//! Layouts from include/uapi/linux/netlink.h (`struct nlmsghdr`,
//! `struct nlmsgerr`, `struct nlattr`) and include/uapi/linux/genetlink.h
//! (`struct genlmsghdr`, the `nlctrl` family).

use netlink_packet_core::{NLA_F_NESTED, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLMSG_DONE, NLMSG_ERROR};

use crate::codec::CodecError;

/// `struct nlmsghdr` + `struct genlmsghdr`.
pub const HEADER_LEN: usize = 16 + 4;
/// The fixed id of the controller family that resolves family names.
pub const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
/// `NLMSGERR_ATTR_MSG`: the extended ACK's text.
const NLMSGERR_ATTR_MSG: u16 = 1;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Writes netlink attributes (`struct nlattr` + value, padded to 4).
#[derive(Default)]
pub struct Attrs {
    buf: Vec<u8>,
}

impl Attrs {
    pub fn new() -> Attrs {
        Attrs::default()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn bytes(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let len = 4 + value.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    pub fn u8(&mut self, kind: u16, v: u8) -> &mut Self {
        self.bytes(kind, &[v])
    }

    pub fn u16(&mut self, kind: u16, v: u16) -> &mut Self {
        self.bytes(kind, &v.to_ne_bytes())
    }

    /// A port or other `__be16`.
    pub fn be16(&mut self, kind: u16, v: u16) -> &mut Self {
        self.bytes(kind, &v.to_be_bytes())
    }

    pub fn u32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.bytes(kind, &v.to_ne_bytes())
    }

    /// A NUL-terminated string (`NLA_NUL_STRING`).
    pub fn string(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.bytes(kind, &v)
    }

    /// A nested attribute, flagged `NLA_F_NESTED` as the kernel's strict
    /// validation expects of new users.
    pub fn nested(&mut self, kind: u16, fill: impl FnOnce(&mut Attrs)) -> &mut Self {
        let mut inner = Attrs::new();
        fill(&mut inner);
        self.bytes(kind | NLA_F_NESTED, &inner.buf)
    }
}

/// Appends one generic netlink request to `out`.
pub fn put_request(
    out: &mut Vec<u8>,
    family: u16,
    flags: u16,
    seq: u32,
    cmd: u8,
    version: u8,
    attrs: &[u8],
) {
    let len = HEADER_LEN + attrs.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&family.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    out.extend_from_slice(&[cmd, version, 0, 0]);
    out.extend_from_slice(attrs);
    out.resize(align4(out.len()), 0);
}

/// The request that resolves a generic netlink family by name.
pub fn get_family_request(out: &mut Vec<u8>, seq: u32, name: &str, flags: u16) {
    let mut a = Attrs::new();
    a.string(CTRL_ATTR_FAMILY_NAME, name);
    put_request(
        out,
        GENL_ID_CTRL,
        flags,
        seq,
        CTRL_CMD_GETFAMILY,
        1,
        &a.into_bytes(),
    );
}

/// The family id in nlctrl's answer (its attributes).
pub fn family_id(attrs: &[u8]) -> Result<u16, CodecError> {
    for (kind, value) in iter_attrs(attrs)? {
        if kind == CTRL_ATTR_FAMILY_ID {
            return read_u16(value);
        }
    }
    Err(CodecError::new("nlctrl's answer has no family id"))
}

/// One message of a receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// Splits a receive buffer into its messages.
pub fn messages(buf: &[u8]) -> Result<Vec<Message<'_>>, CodecError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
        if len < 16 || at + len > buf.len() {
            return Err(CodecError::new(format!(
                "netlink message of length {len} at offset {at} overruns a {}-byte datagram",
                buf.len()
            )));
        }
        out.push(Message {
            kind: u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap()),
            flags: u16::from_ne_bytes(buf[at + 6..at + 8].try_into().unwrap()),
            seq: u32::from_ne_bytes(buf[at + 8..at + 12].try_into().unwrap()),
            payload: &buf[at + 16..at + len],
        });
        at += align4(len);
    }
    Ok(out)
}

/// What a message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    /// A generic netlink message: its command and attributes.
    Data { cmd: u8, attrs: &'a [u8] },
    /// The end of a dump.
    Done,
    /// A positive acknowledgement.
    Ack,
    /// The request failed with this errno; `message` is the kernel's
    /// extended ACK text, when it gave one.
    Error { errno: i32, message: Option<String> },
}

pub fn classify<'a>(msg: &Message<'a>) -> Result<Reply<'a>, CodecError> {
    match msg.kind {
        k if k == NLMSG_ERROR => {
            let code = read_i32(msg.payload.get(..4).unwrap_or(&[]))?;
            if code == 0 {
                return Ok(Reply::Ack);
            }
            // With NLM_F_CAPPED only the request's header follows the
            // error code, else the whole request; then the TLVs.
            let mut message = None;
            if msg.flags & NLM_F_ACK_TLVS != 0 && msg.payload.len() >= 20 {
                let orig_len = u32::from_ne_bytes(msg.payload[4..8].try_into().unwrap()) as usize;
                let skip = if msg.flags & NLM_F_CAPPED != 0 {
                    16
                } else {
                    align4(orig_len)
                };
                if let Some(tlvs) = msg.payload.get(4 + skip..) {
                    for (kind, value) in iter_attrs(tlvs).unwrap_or_default() {
                        if kind == NLMSGERR_ATTR_MSG {
                            message = Some(read_string(value));
                        }
                    }
                }
            }
            Ok(Reply::Error {
                errno: code.saturating_neg(),
                message,
            })
        }
        k if k == NLMSG_DONE => {
            // A dump that failed part way ends with a negative errno here.
            let code = match msg.payload.get(..4) {
                Some(b) => read_i32(b)?,
                None => 0,
            };
            if code < 0 {
                Ok(Reply::Error {
                    errno: code.saturating_neg(),
                    message: None,
                })
            } else {
                Ok(Reply::Done)
            }
        }
        _ => {
            if msg.payload.len() < 4 {
                return Err(CodecError::new(
                    "generic netlink message without its header",
                ));
            }
            Ok(Reply::Data {
                cmd: msg.payload[0],
                attrs: &msg.payload[4..],
            })
        }
    }
}

/// The attributes of a buffer as `(type, value)`, the nested flag masked,
/// without allocating: dumps of thousands of entries are decoded through
/// this.
pub fn attrs(buf: &[u8]) -> AttrIter<'_> {
    AttrIter { rest: buf }
}

/// See [`attrs`].
pub struct AttrIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = Result<(u16, &'a [u8]), CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        if rest.is_empty() {
            return None;
        }
        // struct nlattr { __u16 nla_len; __u16 nla_type; }
        let len = match rest.get(..4) {
            Some(h) => u16::from_ne_bytes([h[0], h[1]]) as usize,
            None => 0,
        };
        if len < 4 || len > rest.len() {
            self.rest = &[];
            return Some(Err(CodecError::new(format!(
                "attribute of length {len} in {} bytes",
                rest.len()
            ))));
        }
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & netlink_packet_core::NLA_TYPE_MASK;
        self.rest = &rest[align4(len).min(rest.len())..];
        Some(Ok((kind, &rest[4..len])))
    }
}

/// All attributes of a buffer at once.
pub fn iter_attrs(buf: &[u8]) -> Result<Vec<(u16, &[u8])>, CodecError> {
    attrs(buf).collect()
}

pub fn read_u8(v: &[u8]) -> Result<u8, CodecError> {
    netlink_packet_core::parse_u8(v).map_err(CodecError::from)
}

pub fn read_u16(v: &[u8]) -> Result<u16, CodecError> {
    netlink_packet_core::parse_u16(v).map_err(CodecError::from)
}

pub fn read_be16(v: &[u8]) -> Result<u16, CodecError> {
    netlink_packet_core::parse_u16_be(v).map_err(CodecError::from)
}

pub fn read_u32(v: &[u8]) -> Result<u32, CodecError> {
    netlink_packet_core::parse_u32(v).map_err(CodecError::from)
}

pub fn read_i32(v: &[u8]) -> Result<i32, CodecError> {
    netlink_packet_core::parse_i32(v).map_err(CodecError::from)
}

/// A counter the kernel sent as u32 (old `*_STATS`) or u64 (`*_STATS64`).
pub fn read_counter(v: &[u8]) -> Result<u64, CodecError> {
    match v.len() {
        4 => Ok(u64::from(read_u32(v)?)),
        8 => netlink_packet_core::parse_u64(v).map_err(CodecError::from),
        n => Err(CodecError::new(format!("a counter of {n} bytes"))),
    }
}

/// A string up to its first NUL.
pub fn read_string(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST};

    #[test]
    fn requests_share_a_buffer_each_aligned() {
        let mut out = Vec::new();
        put_request(&mut out, 32, NLM_F_REQUEST, 7, 1, 1, &[1, 2, 3, 4]);
        put_request(&mut out, 32, NLM_F_REQUEST | NLM_F_ACK, 8, 2, 1, &[]);
        let msgs = messages(&out).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!((msgs[0].kind, msgs[0].seq), (32, 7));
        assert_eq!(msgs[0].payload, &[1, 1, 0, 0, 1, 2, 3, 4]);
        assert_eq!(msgs[1].flags, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(
            classify(&msgs[1]).unwrap(),
            Reply::Data { cmd: 2, attrs: &[] }
        );
    }

    #[test]
    fn nested_attributes_carry_the_nested_flag_and_padding() {
        let mut a = Attrs::new();
        a.nested(1, |n| {
            n.u8(2, 9);
        });
        let b = a.into_bytes();
        assert_eq!(b.len(), 12);
        assert_eq!(u16::from_ne_bytes([b[2], b[3]]), 1 | NLA_F_NESTED);
        let outer = iter_attrs(&b).unwrap();
        assert_eq!(outer[0].0, 1);
        let inner = iter_attrs(outer[0].1).unwrap();
        assert_eq!(inner, vec![(2, &[9u8][..])]);
    }

    fn error_message(code: i32, flags: u16, tail: &[u8]) -> Vec<u8> {
        let mut payload = code.to_ne_bytes().to_vec();
        // The request's header (capped ACK).
        payload.extend_from_slice(&36u32.to_ne_bytes());
        payload.extend_from_slice(&[0; 12]);
        payload.extend_from_slice(tail);
        let mut out = Vec::new();
        let len = 16 + payload.len();
        out.extend_from_slice(&(len as u32).to_ne_bytes());
        out.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&5u32.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(&payload);
        out
    }

    #[test]
    fn an_error_gives_its_errno_and_extended_ack_text() {
        let mut tlv = Attrs::new();
        tlv.string(NLMSGERR_ATTR_MSG, "Attribute failed policy validation");
        let buf = error_message(-22, NLM_F_CAPPED | NLM_F_ACK_TLVS, &tlv.into_bytes());
        let msgs = messages(&buf).unwrap();
        assert_eq!(
            classify(&msgs[0]).unwrap(),
            Reply::Error {
                errno: 22,
                message: Some("Attribute failed policy validation".into())
            }
        );
        let ack = error_message(0, NLM_F_CAPPED, &[]);
        assert_eq!(classify(&messages(&ack).unwrap()[0]).unwrap(), Reply::Ack);
    }

    #[test]
    fn a_truncated_datagram_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        put_request(&mut out, 32, 1, 1, 1, 1, &[0; 8]);
        assert!(messages(&out[..out.len() - 4]).is_err());
    }

    #[test]
    fn an_errno_that_cannot_be_negated_is_an_error_not_a_panic() {
        // Found by fuzzing: -i32::MIN overflows. The kernel never sends it;
        // a corrupt buffer may.
        let mut done = vec![0x14, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        done.extend_from_slice(&i32::MIN.to_ne_bytes());
        assert!(matches!(
            classify(&messages(&done).unwrap()[0]),
            Ok(Reply::Error { .. })
        ));
        let err = error_message(i32::MIN, NLM_F_CAPPED, &[]);
        assert!(matches!(
            classify(&messages(&err).unwrap()[0]),
            Ok(Reply::Error { .. })
        ));
    }
}
