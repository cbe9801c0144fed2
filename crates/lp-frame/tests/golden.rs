//! Golden vectors: exact wire bytes for one frame of every message type and one non-stream frame.
//! The hex strings were written by hand from the layout in docs/PROTOCOL.md, not produced by the codec.

use bytes::{BufMut, Bytes, BytesMut};
use lp_frame::ext::{self, reset_code, Ack, Close, Reset, SackBlock};
use lp_frame::{
    FrameKind, MessageType, OwnedStreamFrame, RawFrame, StreamFrame, StreamHeader, StreamId,
};

/// Decodes a hex string, ignoring spaces.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert_eq!(digits.len() % 2, 0, "odd hex length in {s:?}");
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).expect("ascii");
            u8::from_str_radix(text, 16).expect("hex digit")
        })
        .collect()
}

/// Encodes `header` + `payload` every way the crate offers, checks each equals `expected`,
/// and checks that parsing `expected` gives the frame back.
fn check_stream(expected_hex: &str, header: StreamHeader, payload: &[u8]) {
    let expected = hex(expected_hex);
    let frame = StreamFrame { header, payload };

    let mut via_encode = Vec::new();
    frame.encode(&mut via_encode);
    assert_eq!(via_encode, expected, "StreamFrame::encode");
    assert_eq!(frame.encoded_len(), expected.len());
    assert_eq!(
        &frame.to_bytes()[..],
        &expected[..],
        "StreamFrame::to_bytes"
    );
    assert_eq!(
        &header.to_bytes()[..],
        &expected[..16],
        "StreamHeader::to_bytes"
    );

    let mut via_fn = BytesMut::new();
    lp_frame::encode_stream_frame(&header, payload, &mut via_fn);
    assert_eq!(&via_fn[..], &expected[..], "encode_stream_frame");

    let owned = OwnedStreamFrame::new(header, Bytes::copy_from_slice(payload));
    assert_eq!(
        &owned.to_bytes()[..],
        &expected[..],
        "OwnedStreamFrame::to_bytes"
    );

    assert_eq!(StreamFrame::parse(&expected), Ok(frame));
    assert_eq!(StreamHeader::parse(&expected), Ok(header));
    assert_eq!(
        OwnedStreamFrame::parse(Bytes::from(expected.clone())),
        Ok(owned)
    );
    let raw = RawFrame::parse(&expected).expect("stream frames are LP frames");
    assert_eq!(raw.kind, FrameKind::SphinxStream);
    assert_eq!(raw.payload, payload);
}

#[test]
fn open_with_capability() {
    let header = StreamHeader::new(StreamId(0xfedc_ba98_7654_3210), MessageType::Open, 0)
        .with_reserved(ext::CAP_EXTENDED);
    check_stream("0300 fedcba9876543210 00 00000000 01", header, &[]);
}

#[test]
fn data() {
    let header = StreamHeader::new(
        StreamId(0x0123_4567_89ab_cdef),
        MessageType::Data,
        0x0102_0304,
    );
    check_stream("0300 0123456789abcdef 01 01020304 00 6869", header, b"hi");
}

#[test]
fn open_ack_with_capability() {
    let header = StreamHeader::new(StreamId(0xfedc_ba98_7654_3210), MessageType::OpenAck, 0)
        .with_reserved(ext::CAP_EXTENDED);
    check_stream("0300 fedcba9876543210 02 00000000 01", header, &[]);
}

#[test]
fn ping_and_pong_carry_nonce() {
    let ping = StreamHeader::new(StreamId(1), MessageType::Ping, 0xdead_beef);
    check_stream("0300 0000000000000001 03 deadbeef 00", ping, &[]);
    let pong = StreamHeader::new(StreamId(1), MessageType::Pong, 0xdead_beef);
    check_stream("0300 0000000000000001 04 deadbeef 00", pong, &[]);
}

#[test]
fn close_fin_has_empty_payload() {
    let close = Close { error_code: None };
    let mut payload = Vec::new();
    close.encode(&mut payload);
    assert!(payload.is_empty());
    assert_eq!(close.encoded_len(), 0);
    let header = StreamHeader::new(StreamId(2), MessageType::Close, 9);
    check_stream("0300 0000000000000002 05 00000009 00", header, &payload);
    assert_eq!(Close::parse(&payload), Ok(close));
}

#[test]
fn close_with_error_code() {
    let close = Close {
        error_code: Some(reset_code::APPLICATION_MIN),
    };
    let mut payload = Vec::new();
    close.encode(&mut payload);
    assert_eq!(close.encoded_len(), 4);
    let header = StreamHeader::new(StreamId(2), MessageType::Close, 10);
    check_stream(
        "0300 0000000000000002 05 0000000a 00 00000100",
        header,
        &payload,
    );
    assert_eq!(Close::parse(&payload), Ok(close));
}

#[test]
fn reset_with_code() {
    let reset = Reset {
        code: reset_code::PROTOCOL_ERROR,
    };
    let mut payload = Vec::new();
    reset.encode(&mut payload);
    let header = StreamHeader::new(StreamId(2), MessageType::Reset, 0);
    check_stream(
        "0300 0000000000000002 06 00000000 00 00000003",
        header,
        &payload,
    );
    assert_eq!(Reset::parse(&payload), Ok(reset));
}

#[test]
fn ack_with_two_sack_blocks() {
    let mut ack = Ack::new(5, 65_536, 20);
    assert!(ack.push_sack(SackBlock { start: 7, end: 9 }));
    assert!(ack.push_sack(SackBlock { start: 12, end: 13 }));
    let mut payload = Vec::new();
    ack.encode(&mut payload);
    assert_eq!(ack.encoded_len(), 31);
    let header = StreamHeader::new(StreamId(2), MessageType::Ack, 0);
    check_stream(
        "0300 0000000000000002 07 00000000 00 \
         00000005 0000000000010000 0014 02 00000007 00000009 0000000c 0000000d",
        header,
        &payload,
    );
    assert_eq!(Ack::parse(&payload), Ok((ack, 31)));
}

#[test]
fn data_with_piggybacked_ack() {
    let ack = Ack::new(3, 4096, 0);
    let mut payload = Vec::new();
    ack.encode(&mut payload);
    payload.put_slice(b"ok");
    let header = StreamHeader::new(StreamId(2), MessageType::Data, 3).with_reserved(ext::FLAG_ACK);
    let wire_hex = "0300 0000000000000002 01 00000003 02 00000003 0000000000001000 0000 00 6f6b";
    check_stream(wire_hex, header, &payload);
    // What a receiver does: parse the frame, see the flag, split the ack off the data.
    let wire = hex(wire_hex);
    let frame = StreamFrame::parse(&wire).expect("valid frame");
    assert_ne!(frame.header.reserved & ext::FLAG_ACK, 0);
    let (parsed, used) = Ack::parse(frame.payload).expect("valid ack");
    assert_eq!(parsed, ack);
    assert_eq!(&frame.payload[used..], b"ok");
}

#[test]
fn forward_raw_frame() {
    let expected = hex("0200 000102030405060708090a0b0c0d ff");
    let raw = RawFrame {
        kind: FrameKind::Forward,
        attributes: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
        payload: &[0xff],
    };
    let mut out = Vec::new();
    raw.encode(&mut out);
    assert_eq!(out, expected);
    assert_eq!(raw.encoded_len(), 17);
    assert_eq!(RawFrame::parse(&expected), Ok(raw));
    assert_eq!(
        StreamFrame::parse(&expected),
        Err(lp_frame::FrameError::NotAStreamFrame(FrameKind::Forward))
    );
}

#[test]
fn stream_id_formatting() {
    let id = StreamId::new(0x0123_4567_89ab_cdef);
    assert_eq!(id.to_string(), "StreamId(0x0123456789abcdef)");
    assert_eq!(format!("{id:?}"), "StreamId(0x0123456789abcdef)");
    assert_eq!(format!("{:?}", StreamId(1)), "StreamId(0x0000000000000001)");
    assert_eq!(u64::from(id), 0x0123_4567_89ab_cdef);
    assert_eq!(StreamId::from(5u64).get(), 5);
}
