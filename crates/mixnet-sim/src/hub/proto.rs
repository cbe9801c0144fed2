//! The hub's wire protocol: length-delimited frames (a 4-byte big-endian length, then
//! the frame), each a one-byte type and its fields, integers big-endian.
//!
//! It carries simulator traffic between one process's clients and a hub on the same
//! machine. It is not a network protocol for real use: no encryption, no authentication
//! beyond the identity a client claims.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::types::{Address, ClientStats, SenderTag};

/// Protocol version spoken by this build.
pub const VERSION: u16 = 1;

/// First bytes of a client's hello.
pub(crate) const MAGIC: &[u8; 4] = b"NSHB";

/// Largest frame either side accepts (a message payload plus its header). Larger
/// messages are refused at the client with `MessageTooLarge` and, from a peer that
/// ignores that, end its connection.
pub const MAX_FRAME: usize = 4 << 20;

const HELLO: u8 = 0x01;
const SEND_REGULAR: u8 = 0x02;
const SEND_ANONYMOUS: u8 = 0x03;
const SEND_REPLY: u8 = 0x04;

const WELCOME: u8 = 0x81;
const REFUSED: u8 = 0x82;
const RECEIVED: u8 = 0x83;
const STOCK: u8 = 0x84;
const STATS: u8 = 0x85;
const SEND_FAILED: u8 = 0x86;

/// What a client sends the hub.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ToHub {
    /// First frame: protocol version and the identity's secret-derived address.
    Hello {
        version: u16,
        address: Address,
    },
    SendRegular {
        to: Address,
        payload: Bytes,
    },
    SendAnonymous {
        to: Address,
        surbs: u32,
        payload: Bytes,
    },
    SendReply {
        tag: SenderTag,
        payload: Bytes,
    },
}

/// What the hub sends a client.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FromHub {
    /// The hello was accepted; the network's limits.
    Welcome { version: u16, max_message_len: u64 },
    /// The hello was refused (why, for the user).
    Refused { reason: String },
    /// A message arrived; with a sender tag, the stock of SURBs now held for it.
    Received {
        sender_tag: Option<(SenderTag, u32)>,
        payload: Bytes,
    },
    /// The stock of SURBs held for a tag changed.
    Stock { tag: SenderTag, surbs: u32 },
    /// The client's statistics changed.
    Stats(ClientStats),
    /// A send the network refused (a reply to an unknown tag, a message too large).
    SendFailed { reason: String },
}

/// A frame that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed hub frame: {0}")]
pub(crate) struct Malformed(pub(crate) &'static str);

fn take<const N: usize>(b: &mut Bytes) -> Result<[u8; N], Malformed> {
    if b.len() < N {
        return Err(Malformed("frame too short"));
    }
    let mut out = [0u8; N];
    b.copy_to_slice(&mut out);
    Ok(out)
}

fn text(b: Bytes) -> Result<String, Malformed> {
    String::from_utf8(b.to_vec()).map_err(|_| Malformed("reason is not UTF-8"))
}

impl ToHub {
    pub(crate) fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            ToHub::Hello { version, address } => {
                out.put_u8(HELLO);
                out.put_slice(MAGIC);
                out.put_u16(*version);
                out.put_slice(address.as_bytes());
            }
            ToHub::SendRegular { to, payload } => {
                out.reserve(33 + payload.len());
                out.put_u8(SEND_REGULAR);
                out.put_slice(to.as_bytes());
                out.put_slice(payload);
            }
            ToHub::SendAnonymous { to, surbs, payload } => {
                out.reserve(37 + payload.len());
                out.put_u8(SEND_ANONYMOUS);
                out.put_slice(to.as_bytes());
                out.put_u32(*surbs);
                out.put_slice(payload);
            }
            ToHub::SendReply { tag, payload } => {
                out.reserve(17 + payload.len());
                out.put_u8(SEND_REPLY);
                out.put_slice(&tag.0);
                out.put_slice(payload);
            }
        }
        out.freeze()
    }

    pub(crate) fn decode(mut b: Bytes) -> Result<Self, Malformed> {
        let [kind] = take::<1>(&mut b)?;
        Ok(match kind {
            HELLO => {
                if &take::<4>(&mut b)? != MAGIC {
                    return Err(Malformed("not a nym-stream hub hello"));
                }
                let version = u16::from_be_bytes(take(&mut b)?);
                let address = Address::from_bytes(take(&mut b)?);
                ToHub::Hello { version, address }
            }
            SEND_REGULAR => ToHub::SendRegular {
                to: Address::from_bytes(take(&mut b)?),
                payload: b,
            },
            SEND_ANONYMOUS => ToHub::SendAnonymous {
                to: Address::from_bytes(take(&mut b)?),
                surbs: u32::from_be_bytes(take(&mut b)?),
                payload: b,
            },
            SEND_REPLY => ToHub::SendReply {
                tag: SenderTag(take(&mut b)?),
                payload: b,
            },
            _ => return Err(Malformed("unknown frame type")),
        })
    }
}

const STATS_FIELDS: usize = 14;

fn stats_fields(s: &ClientStats) -> [u64; STATS_FIELDS] {
    [
        s.packets_sent,
        s.packets_retransmitted,
        s.messages_sent,
        s.messages_received,
        s.payload_bytes_sent,
        s.payload_bytes_received,
        s.surbs_attached,
        s.surbs_used,
        s.surbs_requested,
        s.surbs_received,
        s.replies_dropped,
        s.messages_dropped,
        s.packets_lost,
        s.dropped_receiver_full,
    ]
}

fn stats_from(f: [u64; STATS_FIELDS]) -> ClientStats {
    ClientStats {
        packets_sent: f[0],
        packets_retransmitted: f[1],
        messages_sent: f[2],
        messages_received: f[3],
        payload_bytes_sent: f[4],
        payload_bytes_received: f[5],
        surbs_attached: f[6],
        surbs_used: f[7],
        surbs_requested: f[8],
        surbs_received: f[9],
        replies_dropped: f[10],
        messages_dropped: f[11],
        packets_lost: f[12],
        dropped_receiver_full: f[13],
    }
}

impl FromHub {
    pub(crate) fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            FromHub::Welcome {
                version,
                max_message_len,
            } => {
                out.put_u8(WELCOME);
                out.put_u16(*version);
                out.put_u64(*max_message_len);
            }
            FromHub::Refused { reason } => {
                out.put_u8(REFUSED);
                out.put_slice(reason.as_bytes());
            }
            FromHub::Received {
                sender_tag,
                payload,
            } => {
                out.reserve(22 + payload.len());
                out.put_u8(RECEIVED);
                match sender_tag {
                    Some((tag, surbs)) => {
                        out.put_u8(1);
                        out.put_slice(&tag.0);
                        out.put_u32(*surbs);
                    }
                    None => out.put_u8(0),
                }
                out.put_slice(payload);
            }
            FromHub::Stock { tag, surbs } => {
                out.put_u8(STOCK);
                out.put_slice(&tag.0);
                out.put_u32(*surbs);
            }
            FromHub::Stats(s) => {
                out.put_u8(STATS);
                for v in stats_fields(s) {
                    out.put_u64(v);
                }
            }
            FromHub::SendFailed { reason } => {
                out.put_u8(SEND_FAILED);
                out.put_slice(reason.as_bytes());
            }
        }
        out.freeze()
    }

    pub(crate) fn decode(mut b: Bytes) -> Result<Self, Malformed> {
        let [kind] = take::<1>(&mut b)?;
        Ok(match kind {
            WELCOME => FromHub::Welcome {
                version: u16::from_be_bytes(take(&mut b)?),
                max_message_len: u64::from_be_bytes(take(&mut b)?),
            },
            REFUSED => FromHub::Refused { reason: text(b)? },
            RECEIVED => {
                let [flag] = take::<1>(&mut b)?;
                let sender_tag = match flag {
                    0 => None,
                    1 => {
                        let tag = SenderTag(take(&mut b)?);
                        Some((tag, u32::from_be_bytes(take(&mut b)?)))
                    }
                    _ => return Err(Malformed("bad sender-tag flag")),
                };
                FromHub::Received {
                    sender_tag,
                    payload: b,
                }
            }
            STOCK => FromHub::Stock {
                tag: SenderTag(take(&mut b)?),
                surbs: u32::from_be_bytes(take(&mut b)?),
            },
            STATS => {
                let mut f = [0u64; STATS_FIELDS];
                for v in &mut f {
                    *v = u64::from_be_bytes(take(&mut b)?);
                }
                FromHub::Stats(stats_from(f))
            }
            SEND_FAILED => FromHub::SendFailed { reason: text(b)? },
            _ => return Err(Malformed("unknown frame type")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_round_trips() {
        let a = Address::from_bytes([3; 32]);
        let tag = SenderTag([9; 16]);
        let p = Bytes::from_static(b"payload");
        for m in [
            ToHub::Hello {
                version: VERSION,
                address: a,
            },
            ToHub::SendRegular {
                to: a,
                payload: p.clone(),
            },
            ToHub::SendAnonymous {
                to: a,
                surbs: 7,
                payload: p.clone(),
            },
            ToHub::SendReply {
                tag,
                payload: p.clone(),
            },
        ] {
            assert_eq!(ToHub::decode(m.encode()).unwrap(), m);
        }
        let stats = ClientStats {
            packets_sent: 1,
            dropped_receiver_full: 14,
            ..ClientStats::default()
        };
        for m in [
            FromHub::Welcome {
                version: VERSION,
                max_message_len: 5,
            },
            FromHub::Refused {
                reason: "no".into(),
            },
            FromHub::Received {
                sender_tag: Some((tag, 3)),
                payload: p.clone(),
            },
            FromHub::Received {
                sender_tag: None,
                payload: p.clone(),
            },
            FromHub::Stock { tag, surbs: 4 },
            FromHub::Stats(stats),
            FromHub::SendFailed {
                reason: "why".into(),
            },
        ] {
            assert_eq!(FromHub::decode(m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for junk in [
            &b""[..],
            b"\x01NSH",
            b"\x01XXXX\x00\x01",
            b"\x7f",
            b"\x03abc",
        ] {
            assert!(ToHub::decode(Bytes::copy_from_slice(junk)).is_err());
        }
        for junk in [&b""[..], b"\x83\x02", b"\x85\x00", b"\x00"] {
            assert!(FromHub::decode(Bytes::copy_from_slice(junk)).is_err());
        }
    }
}
