//! What occupies one sequence number of a stream direction: a chunk of data or the
//! final frame (FIN), which may carry an abort code.

use bytes::Bytes;
use reorder::ByteLen;

/// One element of a stream direction's sequence space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Stream bytes, sent as a `Data` frame.
    Data(Bytes),
    /// The end of the direction, sent as a `Close` frame. `Some(code)` is an ordered
    /// abort: the reader gets an error instead of EOF after the last byte.
    Fin(Option<u32>),
}

impl ByteLen for Segment {
    fn byte_len(&self) -> usize {
        match self {
            Segment::Data(b) => b.len(),
            Segment::Fin(_) => 0,
        }
    }
}
