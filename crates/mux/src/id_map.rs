//! A fast hash map for keys we choose ourselves (local handles, our own random stream
//! ids). SipHash guards against peers that pick keys to collide; these keys are not
//! chosen by peers, so a multiply-rotate hash is enough and much cheaper on the hot path.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Multiply-rotate hasher for integer keys.
#[derive(Clone, Copy, Default)]
pub(crate) struct IdHasher(u64);

const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(K);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` keyed by ids we generate.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_spread_over_buckets() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..1024u64 {
            let mut h = IdHasher::default();
            h.write_u64(i);
            seen.insert(h.finish() >> 54); // top 10 bits
        }
        // 1024 sequential keys land in many of the 1024 top-bit buckets.
        assert!(seen.len() > 500, "{}", seen.len());
    }
}
