//! Codec benchmarks: parse (borrowed and owned-from-`Bytes`) and encode, across payload sizes.
//!
//! Run with `cargo bench -p lp-frame`; results are recorded in docs/BENCHMARKS.md.

use bytes::{Bytes, BytesMut};
use divan::black_box;
use lp_frame::{MessageType, OwnedStreamFrame, StreamFrame, StreamHeader, StreamId};

/// Payload sizes: empty, small, 1 KiB, about one Sphinx packet, and a large coalesced write.
const SIZES: [usize; 5] = [0, 64, 1024, 2048, 32 * 1024];

fn main() {
    divan::main();
}

fn wire(payload_len: usize) -> Bytes {
    let payload = vec![0xa5u8; payload_len];
    let header = StreamHeader::new(StreamId(0x0123_4567_89ab_cdef), MessageType::Data, 42);
    StreamFrame {
        header,
        payload: &payload,
    }
    .to_bytes()
}

/// `StreamFrame::parse` on a borrowed slice.
#[divan::bench(args = SIZES)]
fn parse_borrowed(bencher: divan::Bencher<'_, '_>, len: usize) {
    let buf = wire(len);
    bencher.bench_local(|| StreamFrame::parse(black_box(&buf[..])).map(|f| f.payload.len()));
}

/// `OwnedStreamFrame::parse` on a `Bytes` (the clone is a reference-count increment).
#[divan::bench(args = SIZES)]
fn parse_owned(bencher: divan::Bencher<'_, '_>, len: usize) {
    let buf = wire(len);
    bencher.bench_local(|| OwnedStreamFrame::parse(black_box(&buf).clone()));
}

/// `StreamFrame::encode` into a reused buffer (header write plus payload copy).
#[divan::bench(args = SIZES)]
fn encode_reused(bencher: divan::Bencher<'_, '_>, len: usize) {
    let payload = vec![0xa5u8; len];
    let header = StreamHeader::new(StreamId(7), MessageType::Data, 42);
    let mut dst = BytesMut::with_capacity(len + 16);
    bencher.bench_local(|| {
        dst.clear();
        StreamFrame {
            header: black_box(header),
            payload: black_box(&payload[..]),
        }
        .encode(&mut dst);
        dst.len()
    });
}

/// `StreamFrame::to_bytes`: allocation of an exact-size buffer plus encode.
#[divan::bench(args = SIZES)]
fn encode_to_bytes(bencher: divan::Bencher<'_, '_>, len: usize) {
    let payload = vec![0xa5u8; len];
    let header = StreamHeader::new(StreamId(7), MessageType::Data, 42);
    bencher.bench_local(|| {
        StreamFrame {
            header: black_box(header),
            payload: black_box(&payload[..]),
        }
        .to_bytes()
    });
}
