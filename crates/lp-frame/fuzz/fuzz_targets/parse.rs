//! Feeds arbitrary bytes to every lp-frame parser and checks that whatever parses re-encodes
//! to exactly the bytes it was parsed from.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use lp_frame::ext::{Ack, Close, Reset};
use lp_frame::{FrameKind, MessageType, OwnedStreamFrame, RawFrame, StreamFrame, StreamHeader};

fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = RawFrame::parse(data) {
        let mut out = Vec::with_capacity(raw.encoded_len());
        raw.encode(&mut out);
        assert_eq!(out, data, "RawFrame round trip");
    }

    let borrowed = StreamFrame::parse(data);
    if let Ok(frame) = &borrowed {
        assert_eq!(&frame.to_bytes()[..], data, "StreamFrame round trip");
        let mut out = Vec::new();
        frame.encode(&mut out);
        assert_eq!(out, data, "StreamFrame::encode round trip");
        assert_eq!(frame.to_owned_frame().as_frame(), *frame);
    }

    let owned = OwnedStreamFrame::parse(Bytes::copy_from_slice(data));
    assert_eq!(owned.as_ref().map(|f| f.as_frame()), borrowed.as_ref().copied());
    if let Ok(frame) = &owned {
        assert_eq!(&frame.to_bytes()[..], data, "OwnedStreamFrame round trip");
    }

    let header = StreamHeader::parse(data);
    assert_eq!(header, borrowed.map(|f| f.header));
    if let Ok(h) = header {
        assert_eq!(&h.to_bytes()[..], &data[..lp_frame::HEADER_LEN]);
    }

    if let Ok((ack, used)) = Ack::parse(data) {
        let mut out = Vec::new();
        ack.encode(&mut out);
        assert_eq!(used, ack.encoded_len());
        assert_eq!(out, &data[..used], "Ack round trip");
    }
    if let Ok(close) = Close::parse(data) {
        let mut out = Vec::new();
        close.encode(&mut out);
        assert_eq!(out, data, "Close round trip");
    }
    if let Ok(reset) = Reset::parse(data) {
        let mut out = Vec::new();
        reset.encode(&mut out);
        assert_eq!(out, data, "Reset round trip");
    }

    if let [a, b, ..] = data {
        let v = u16::from_le_bytes([*a, *b]);
        if let Ok(kind) = FrameKind::from_u16(v) {
            assert_eq!(kind.as_u16(), v);
        }
        if let Ok(t) = MessageType::from_u8(*a) {
            assert_eq!(t.as_u8(), *a);
        }
    }
});
