//! Item 1 of the benchmark plan: LP stream-frame parse and encode cost, ours (`lp-frame`)
//! against `nym-lp-data` 2.0.0 doing the same work, for payloads of 0 B to 32 KiB.
//!
//! "The same work": parse = validate the 16-byte LP header, decode the SphinxStream
//! attributes (stream id, message type, sequence number) and yield the payload; encode =
//! write header and payload into a reused buffer. `nym-lp-data` has only a slice-based
//! decoder (it copies the payload into a fresh `Bytes`); we measure both our borrowed parse
//! and our owned parse from `Bytes` (the form the mux uses on inbound messages).
//!
//! Run: `cargo bench -p nym-stream-bench --bench codec` (or `cargo xtask bench`).

use bytes::{Bytes, BytesMut};
use divan::{black_box, Bencher};
use lp_frame::{MessageType, OwnedStreamFrame, StreamFrame, StreamHeader, StreamId};
use nym_lp_data::packet::frame::{
    LpFrame, LpFrameKind, SphinxStreamFrameAttributes, SphinxStreamMsgType,
};

/// Payload sizes: empty, small, 1 KiB, about one Sphinx packet, a large coalesced write.
const SIZES: [usize; 5] = [0, 64, 1024, 2048, 32 * 1024];

const ID: u64 = 0x0123_4567_89ab_cdef;

fn main() {
    divan::main();
}

/// One encoded Data frame with a `len`-byte payload (our encoder; the bytes are the same
/// for both codecs, which the `same_wire_bytes` check below asserts once).
fn wire(len: usize) -> Bytes {
    let payload = vec![0xa5u8; len];
    StreamFrame {
        header: StreamHeader::new(StreamId(ID), MessageType::Data, 42),
        payload: &payload,
    }
    .to_bytes()
}

fn their_attrs() -> SphinxStreamFrameAttributes {
    SphinxStreamFrameAttributes {
        stream_id: ID,
        msg_type: SphinxStreamMsgType::Data,
        sequence_num: 42,
    }
}

/// Both encoders must produce identical bytes, otherwise the comparison is meaningless.
fn same_wire_bytes(len: usize) {
    let mut theirs = BytesMut::new();
    LpFrame::new_stream(their_attrs(), vec![0xa5u8; len]).encode(&mut theirs);
    assert_eq!(
        &theirs[..],
        &wire(len)[..],
        "nym-lp-data and lp-frame encode a {len}-byte Data frame differently"
    );
}

mod parse {
    use super::*;

    /// Ours: `StreamFrame::parse` on a borrowed slice (zero-copy).
    #[divan::bench(args = SIZES)]
    fn ours_borrowed(bencher: Bencher<'_, '_>, len: usize) {
        same_wire_bytes(len);
        let buf = wire(len);
        bencher.bench_local(|| {
            let f = StreamFrame::parse(black_box(&buf[..])).expect("valid frame");
            (f.header.stream_id, f.header.seq, f.payload.len())
        });
    }

    /// Ours: `OwnedStreamFrame::parse` from `Bytes` (payload is a reference-counted slice).
    #[divan::bench(args = SIZES)]
    fn ours_owned(bencher: Bencher<'_, '_>, len: usize) {
        let buf = wire(len);
        bencher.bench_local(|| {
            let f = OwnedStreamFrame::parse(black_box(&buf).clone()).expect("valid frame");
            (f.header.stream_id, f.header.seq, f.payload.len())
        });
    }

    /// Theirs: `LpFrame::decode` plus `SphinxStreamFrameAttributes::parse`.
    #[divan::bench(args = SIZES)]
    fn nym_lp_data(bencher: Bencher<'_, '_>, len: usize) {
        let buf = wire(len);
        bencher.bench_local(|| {
            let f = LpFrame::decode(black_box(&buf[..])).expect("valid frame");
            assert_eq!(f.kind(), LpFrameKind::SphinxStream);
            let a = SphinxStreamFrameAttributes::parse(&f.header.frame_attributes)
                .expect("valid attributes");
            (a.stream_id, a.sequence_num, f.content.len())
        });
    }
}

mod encode {
    use super::*;

    /// Ours: `StreamFrame::encode` into a reused `BytesMut`.
    #[divan::bench(args = SIZES)]
    fn ours(bencher: Bencher<'_, '_>, len: usize) {
        let payload = Bytes::from(vec![0xa5u8; len]);
        let mut dst = BytesMut::with_capacity(len + 16);
        bencher.bench_local(|| {
            dst.clear();
            StreamFrame {
                header: StreamHeader::new(StreamId(black_box(ID)), MessageType::Data, 42),
                payload: black_box(&payload[..]),
            }
            .encode(&mut dst);
            dst.len()
        });
    }

    /// Theirs: build an `LpFrame` around the payload (`Bytes` clone) and encode it into a
    /// reused `BytesMut`.
    #[divan::bench(args = SIZES)]
    fn nym_lp_data(bencher: Bencher<'_, '_>, len: usize) {
        let payload = Bytes::from(vec![0xa5u8; len]);
        let mut dst = BytesMut::with_capacity(len + 16);
        bencher.bench_local(|| {
            dst.clear();
            let mut attrs = their_attrs();
            attrs.stream_id = black_box(ID);
            LpFrame::new_stream(attrs, black_box(&payload).clone()).encode(&mut dst);
            dst.len()
        });
    }
}
