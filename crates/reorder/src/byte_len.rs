//! The [`ByteLen`] trait: how many bytes an item accounts for in a buffer.

/// Anything with a byte length. The buffers in this crate account memory by summing
/// `byte_len()` of the items they hold, exactly.
pub trait ByteLen {
    /// Number of payload bytes this item holds.
    fn byte_len(&self) -> usize;
}

impl ByteLen for bytes::Bytes {
    fn byte_len(&self) -> usize {
        self.len()
    }
}

impl ByteLen for bytes::BytesMut {
    fn byte_len(&self) -> usize {
        self.len()
    }
}

impl ByteLen for Vec<u8> {
    fn byte_len(&self) -> usize {
        self.len()
    }
}

impl ByteLen for Box<[u8]> {
    fn byte_len(&self) -> usize {
        self.len()
    }
}
