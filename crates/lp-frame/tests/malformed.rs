//! Bad input: arbitrary bytes never panic, boundaries at 15/16/17 bytes, and each error variant.

use bytes::Bytes;
use lp_frame::ext::{Ack, Close, Reset};
use lp_frame::{
    FrameError, FrameKind, MessageType, OwnedStreamFrame, RawFrame, StreamFrame, StreamHeader,
    StreamId, HEADER_LEN,
};
use proptest::prelude::*;

/// Runs every parser on `buf`; re-encodes whatever parses and checks it reproduces the input.
fn parse_everything(buf: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(raw) = RawFrame::parse(buf) {
        let mut out = Vec::new();
        raw.encode(&mut out);
        prop_assert_eq!(&out[..], buf);
    }
    let borrowed = StreamFrame::parse(buf);
    if let Ok(frame) = borrowed {
        prop_assert_eq!(&frame.to_bytes()[..], buf);
    }
    let owned = OwnedStreamFrame::parse(Bytes::copy_from_slice(buf));
    prop_assert_eq!(
        owned.as_ref().map(|f| f.as_frame()),
        borrowed.as_ref().copied()
    );
    let header = StreamHeader::parse(buf);
    prop_assert_eq!(header, borrowed.map(|f| f.header));
    if let Ok((ack, used)) = Ack::parse(buf) {
        let mut out = Vec::new();
        ack.encode(&mut out);
        prop_assert_eq!(&out[..], &buf[..used]);
    }
    if let Ok(close) = Close::parse(buf) {
        let mut out = Vec::new();
        close.encode(&mut out);
        prop_assert_eq!(&out[..], buf);
    }
    if let Ok(reset) = Reset::parse(buf) {
        let mut out = Vec::new();
        reset.encode(&mut out);
        prop_assert_eq!(&out[..], buf);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
        parse_everything(&buf)?;
    }

    /// Bytes that start like a stream frame reach the deeper checks (message type, payloads).
    #[test]
    fn near_valid_bytes_never_panic(
        kind in 0u16..=5,
        msg_type in 0u8..=9,
        sack_count in 0u8..=20,
        rest in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut buf = kind.to_le_bytes().to_vec();
        buf.extend_from_slice(&[0; 8]);
        buf.push(msg_type);
        buf.extend_from_slice(&[0; 5]);
        buf.extend_from_slice(&rest);
        parse_everything(&buf)?;
        // An ack-shaped prefix with a chosen block count.
        let mut ack = vec![0u8; 14];
        ack.push(sack_count);
        ack.extend_from_slice(&rest);
        parse_everything(&ack)?;
    }

    #[test]
    fn unknown_kinds_and_types_are_rejected(kind in 4u16.., msg_type in 8u8..) {
        prop_assert_eq!(FrameKind::from_u16(kind), Err(FrameError::UnknownFrameKind(kind)));
        prop_assert_eq!(MessageType::from_u8(msg_type), Err(FrameError::UnknownMessageType(msg_type)));
        let mut buf = StreamHeader::new(StreamId(1), MessageType::Data, 1).to_bytes();
        buf[10] = msg_type;
        prop_assert_eq!(StreamFrame::parse(&buf), Err(FrameError::UnknownMessageType(msg_type)));
        buf[..2].copy_from_slice(&kind.to_le_bytes());
        prop_assert_eq!(RawFrame::parse(&buf), Err(FrameError::UnknownFrameKind(kind)));
        prop_assert_eq!(StreamFrame::parse(&buf), Err(FrameError::UnknownFrameKind(kind)));
    }
}

fn valid_frame(len: usize) -> Vec<u8> {
    let mut buf = StreamHeader::new(StreamId(0xab), MessageType::Data, 3)
        .to_bytes()
        .to_vec();
    buf.resize(len.max(HEADER_LEN), 0x5a);
    buf.truncate(len);
    buf
}

#[test]
fn fifteen_bytes_is_too_short_for_every_frame_parser() {
    let buf = valid_frame(15);
    let err = FrameError::TooShort {
        len: 15,
        needed: 16,
    };
    assert_eq!(RawFrame::parse(&buf), Err(err.clone()));
    assert_eq!(StreamFrame::parse(&buf), Err(err.clone()));
    assert_eq!(StreamHeader::parse(&buf), Err(err.clone()));
    assert_eq!(OwnedStreamFrame::parse(Bytes::from(buf)), Err(err));
    assert_eq!(
        StreamFrame::parse(&[]),
        Err(FrameError::TooShort { len: 0, needed: 16 })
    );
}

#[test]
fn sixteen_bytes_is_a_frame_with_empty_payload() {
    let buf = valid_frame(16);
    let frame = StreamFrame::parse(&buf).expect("a bare header is a whole frame");
    assert!(frame.payload.is_empty());
    assert_eq!(frame.header.stream_id, StreamId(0xab));
    assert!(RawFrame::parse(&buf).expect("valid").payload.is_empty());
    let owned = OwnedStreamFrame::parse(Bytes::from(buf)).expect("valid");
    assert!(owned.payload.is_empty());
}

#[test]
fn seventeen_bytes_is_a_frame_with_one_payload_byte() {
    let buf = valid_frame(17);
    assert_eq!(StreamFrame::parse(&buf).expect("valid").payload, &[0x5a]);
    assert_eq!(RawFrame::parse(&buf).expect("valid").payload, &[0x5a]);
    let owned = OwnedStreamFrame::parse(Bytes::from(buf)).expect("valid");
    assert_eq!(&owned.payload[..], &[0x5a]);
    // The header parser ignores trailing bytes.
    assert_eq!(
        StreamHeader::parse(&valid_frame(17)),
        StreamHeader::parse(&valid_frame(16))
    );
}

#[test]
fn owned_parse_shares_the_input_buffer() {
    let wire = Bytes::from(valid_frame(64));
    let owned = OwnedStreamFrame::parse(wire.clone()).expect("valid");
    assert_eq!(owned.payload.as_ptr(), wire[HEADER_LEN..].as_ptr());
}

#[test]
fn to_bytes_allocates_exactly() {
    let frame = StreamFrame {
        header: StreamHeader::new(StreamId(1), MessageType::Data, 0),
        payload: &[7; 100],
    };
    let bytes = frame.to_bytes();
    assert_eq!(bytes.len(), 116);
    // Converting back to a BytesMut keeps the original allocation, whose capacity we can read.
    let mut reclaimed = bytes::BytesMut::from(bytes);
    assert_eq!(reclaimed.capacity(), 116);
    reclaimed.clear();
}

#[test]
fn non_stream_kinds_are_routable_but_not_stream_frames() {
    for kind in [
        FrameKind::Opaque,
        FrameKind::Registration,
        FrameKind::Forward,
    ] {
        let mut buf = valid_frame(20);
        buf[..2].copy_from_slice(&kind.as_u16().to_le_bytes());
        assert_eq!(RawFrame::parse(&buf).expect("valid LP frame").kind, kind);
        assert_eq!(
            StreamFrame::parse(&buf),
            Err(FrameError::NotAStreamFrame(kind))
        );
        assert_eq!(
            StreamHeader::parse(&buf),
            Err(FrameError::NotAStreamFrame(kind))
        );
    }
}

#[test]
fn extension_payloads_reject_wrong_lengths() {
    for len in [1, 2, 3, 5, 8] {
        let buf = vec![0u8; len];
        assert!(matches!(
            Close::parse(&buf),
            Err(FrameError::BadPayload { msg_type: MessageType::Close, len: l, .. }) if l == len
        ));
    }
    for len in [0, 3, 5] {
        let buf = vec![0u8; len];
        assert!(matches!(
            Reset::parse(&buf),
            Err(FrameError::BadPayload { msg_type: MessageType::Reset, len: l, .. }) if l == len
        ));
    }
    // Ack: 14 bytes is short of the fixed part.
    assert!(matches!(
        Ack::parse(&[0; 14]),
        Err(FrameError::BadPayload {
            msg_type: MessageType::Ack,
            len: 14,
            ..
        })
    ));
    // 17 blocks announced: over the limit even with enough bytes behind it.
    let mut too_many = vec![0u8; 14];
    too_many.push(17);
    too_many.resize(15 + 8 * 17, 0);
    assert!(matches!(
        Ack::parse(&too_many),
        Err(FrameError::BadPayload { reason, .. }) if reason.contains("more than 16")
    ));
    // 2 blocks announced, only one present.
    let mut truncated = vec![0u8; 14];
    truncated.push(2);
    truncated.resize(15 + 8 + 7, 0);
    assert!(matches!(
        Ack::parse(&truncated),
        Err(FrameError::BadPayload { reason, .. }) if reason.contains("ends before")
    ));
    // 16 blocks exactly is fine, and trailing bytes are left to the caller.
    let mut sixteen = vec![0u8; 14];
    sixteen.push(16);
    sixteen.resize(15 + 8 * 16 + 3, 0);
    let (ack, used) = Ack::parse(&sixteen).expect("16 blocks is the limit, not over it");
    assert_eq!((ack.sack().len(), used), (16, 143));
}

#[test]
fn error_messages_say_what_was_expected() {
    let too_short = FrameError::TooShort { len: 3, needed: 16 }.to_string();
    assert!(
        too_short.contains("3 bytes") && too_short.contains("16"),
        "{too_short}"
    );
    assert!(FrameError::UnknownFrameKind(9)
        .to_string()
        .contains("expected 0..=3"));
    assert!(FrameError::UnknownMessageType(8)
        .to_string()
        .contains("expected 0..=7"));
    assert!(FrameError::NotAStreamFrame(FrameKind::Forward)
        .to_string()
        .contains("Forward"));
    let bad = Reset::parse(&[1])
        .expect_err("one byte is not a reason code")
        .to_string();
    assert!(bad.contains("Reset") && bad.contains("4-byte"), "{bad}");
}
