//! A fast hash map for keys we choose ourselves (local handles, our own random stream
//! ids). SipHash guards against peers that pick keys to collide; these keys are not
//! chosen by peers, so rustc's Fx hash is enough and much cheaper on the hot path.

/// A `HashMap` keyed by ids we generate.
pub(crate) type IdMap<K, V> = rustc_hash::FxHashMap<K, V>;

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    /// hashbrown picks the bucket from the low bits and a 7-bit tag from the top bits:
    /// both must spread for sequential ids (our local handles count up).
    #[test]
    fn sequential_ids_spread_over_buckets_and_tags() {
        let build = rustc_hash::FxBuildHasher;
        let mut buckets = std::collections::HashSet::new();
        let mut tags = std::collections::HashSet::new();
        for i in 0..1024u64 {
            let h = build.hash_one(i);
            buckets.insert(h & 1023);
            tags.insert(h >> 57);
        }
        assert!(buckets.len() > 600, "{} of 1024 buckets", buckets.len());
        assert!(tags.len() > 64, "{} of 128 tags", tags.len());
    }
}
