//! Property tests: every message type survives encode -> parse over full value ranges.

use bytes::{Bytes, BytesMut};
use lp_frame::ext::{Ack, Close, Reset, SackBlock, FLAG_ACK, MAX_SACK_BLOCKS};
use lp_frame::{
    FrameKind, MessageType, OwnedStreamFrame, RawFrame, StreamFrame, StreamHeader, StreamId,
    ATTRIBUTES_LEN, HEADER_LEN,
};
use proptest::prelude::*;

/// Payloads of 0..=64 KiB. Short ones are fully random; long ones are a random length filled
/// from a random seed, which keeps generation fast while still covering every length.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..=256),
        (0usize..=65_536, any::<u64>()).prop_map(|(len, seed)| {
            let mut state = seed | 1;
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect()
        }),
    ]
}

fn ack() -> impl Strategy<Value = Ack> {
    (
        any::<u32>(),
        any::<u64>(),
        any::<u16>(),
        proptest::collection::vec((any::<u32>(), any::<u32>()), 0..=MAX_SACK_BLOCKS),
    )
        .prop_map(|(cumulative, max_data, surbs, blocks)| {
            let mut ack = Ack::new(cumulative, max_data, surbs);
            for (start, end) in blocks {
                assert!(ack.push_sack(SackBlock { start, end }));
            }
            ack
        })
}

/// Encodes the frame every way and parses it back every way.
fn round_trip(header: StreamHeader, payload: &[u8]) -> Result<(), TestCaseError> {
    let frame = StreamFrame { header, payload };
    let wire = frame.to_bytes();
    prop_assert_eq!(wire.len(), HEADER_LEN + payload.len());
    prop_assert_eq!(frame.encoded_len(), wire.len());

    let mut encoded = BytesMut::new();
    frame.encode(&mut encoded);
    prop_assert_eq!(&encoded[..], &wire[..]);

    prop_assert_eq!(StreamFrame::parse(&wire)?, frame);
    prop_assert_eq!(StreamHeader::parse(&wire)?, header);
    let owned = OwnedStreamFrame::parse(wire.clone())?;
    prop_assert_eq!(owned.as_frame(), frame);
    prop_assert_eq!(owned.to_bytes(), wire.clone());
    prop_assert_eq!(frame.to_owned_frame(), owned);

    let raw = RawFrame::parse(&wire)?;
    prop_assert_eq!(raw.kind, FrameKind::SphinxStream);
    prop_assert_eq!(raw.payload, payload);
    let mut raw_encoded = Vec::new();
    raw.encode(&mut raw_encoded);
    prop_assert_eq!(&raw_encoded[..], &wire[..]);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Each case runs all eight message types with the same id, seq/nonce, flags and payload.
    #[test]
    fn every_message_type_round_trips(
        id in any::<u64>(),
        seq in any::<u32>(),
        reserved in any::<u8>(),
        payload in payload(),
    ) {
        for msg_type in MessageType::ALL {
            let header = StreamHeader::new(StreamId(id), msg_type, seq).with_reserved(reserved);
            round_trip(header, &payload)?;
            prop_assert_eq!(MessageType::from_u8(msg_type.as_u8())?, msg_type);
        }
    }

    #[test]
    fn raw_frames_of_every_kind_round_trip(
        kind in 0u16..=3,
        attributes in any::<[u8; ATTRIBUTES_LEN]>(),
        payload in proptest::collection::vec(any::<u8>(), 0..=512),
    ) {
        let raw = RawFrame { kind: FrameKind::from_u16(kind)?, attributes, payload: &payload };
        let mut wire = Vec::new();
        raw.encode(&mut wire);
        prop_assert_eq!(wire.len(), raw.encoded_len());
        prop_assert_eq!(RawFrame::parse(&wire)?, raw);
    }

    #[test]
    fn ack_frames_round_trip(id in any::<u64>(), ack in ack()) {
        let mut payload = Vec::new();
        ack.encode(&mut payload);
        prop_assert_eq!(payload.len(), ack.encoded_len());
        prop_assert_eq!(payload.len(), 15 + 8 * ack.sack().len());
        round_trip(StreamHeader::new(StreamId(id), MessageType::Ack, 0), &payload)?;
        prop_assert_eq!(Ack::parse(&payload)?, (ack, payload.len()));
    }

    #[test]
    fn piggybacked_ack_splits_from_data(
        id in any::<u64>(),
        seq in any::<u32>(),
        ack in ack(),
        data in payload(),
    ) {
        let mut payload = Vec::new();
        ack.encode(&mut payload);
        payload.extend_from_slice(&data);
        let header = StreamHeader::new(StreamId(id), MessageType::Data, seq).with_reserved(FLAG_ACK);
        let wire = Bytes::from(StreamFrame { header, payload: &payload }.to_bytes().to_vec());
        let frame = OwnedStreamFrame::parse(wire)?;
        prop_assert_eq!(frame.header, header);
        let (parsed, used) = Ack::parse(&frame.payload)?;
        prop_assert_eq!(parsed, ack);
        prop_assert_eq!(&frame.payload[used..], &data[..]);
    }

    #[test]
    fn close_and_reset_round_trip(id in any::<u64>(), seq in any::<u32>(),
                                  code in proptest::option::of(any::<u32>()), reset in any::<u32>()) {
        let close = Close { error_code: code };
        let mut payload = Vec::new();
        close.encode(&mut payload);
        prop_assert_eq!(payload.len(), close.encoded_len());
        round_trip(StreamHeader::new(StreamId(id), MessageType::Close, seq), &payload)?;
        prop_assert_eq!(Close::parse(&payload)?, close);

        let reset = Reset { code: reset };
        let mut payload = Vec::new();
        reset.encode(&mut payload);
        prop_assert_eq!(payload.len(), reset.encoded_len());
        round_trip(StreamHeader::new(StreamId(id), MessageType::Reset, 0), &payload)?;
        prop_assert_eq!(Reset::parse(&payload)?, reset);
    }
}

#[test]
fn ack_holds_at_most_sixteen_blocks() {
    let mut ack = Ack::new(0, 0, 0);
    for i in 0..MAX_SACK_BLOCKS as u32 {
        assert!(ack.push_sack(SackBlock {
            start: i,
            end: i + 1
        }));
    }
    assert!(!ack.push_sack(SackBlock {
        start: 99,
        end: 100
    }));
    assert_eq!(ack.sack().len(), MAX_SACK_BLOCKS);
    assert_eq!(ack.sack().last(), Some(&SackBlock { start: 15, end: 16 }));
}

#[test]
fn ack_debug_shows_only_blocks_in_use() {
    let mut ack = Ack::new(1, 2, 3);
    ack.push_sack(SackBlock { start: 4, end: 5 });
    assert_eq!(
        format!("{ack:?}"),
        "Ack { cumulative: 1, max_data: 2, surbs_wanted: 3, sack: [SackBlock { start: 4, end: 5 }] }"
    );
}
