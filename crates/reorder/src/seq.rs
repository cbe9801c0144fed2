//! Wrap-aware `u32` sequence numbers (RFC 1982 serial-number arithmetic).

use std::cmp::Ordering;
use std::fmt;

/// Half the sequence space: two sequence numbers exactly this far apart have no defined order.
pub(crate) const HALF: u32 = 1 << 31;

/// A `u32` sequence number compared with RFC 1982 serial-number arithmetic.
///
/// Sequence numbers wrap from `u32::MAX` to `0`. Of two numbers less than 2^31 apart, the one
/// reached by counting forward from the other is "after" it, across the wrap:
/// `Seq(0)` is after `Seq(u32::MAX)`. Numbers exactly 2^31 apart are unordered
/// (`partial_cmp` returns `None`, `is_before`/`is_after` both return `false`).
///
/// The whole project compares sequence numbers only through this type; never compare the raw
/// `u32` values with `<`.
///
/// ```
/// use reorder::Seq;
/// let last = Seq::new(u32::MAX);
/// assert_eq!(last.next(), Seq::new(0));
/// assert!(last.is_before(last.next()));
/// assert_eq!(Seq::new(2).distance_from(last), 3);
/// assert_eq!(last.diff(Seq::new(2)), -3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Seq(pub u32);

impl Seq {
    /// Wraps a raw `u32` value.
    pub const fn new(v: u32) -> Self {
        Seq(v)
    }

    /// The raw `u32` value (as carried on the wire).
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The following sequence number (`u32::MAX` is followed by `0`).
    #[allow(clippy::should_implement_trait)]
    pub fn next(self) -> Seq {
        Seq(self.0.wrapping_add(1))
    }

    /// The sequence number `n` steps forward, wrapping.
    #[allow(clippy::should_implement_trait)]
    pub fn add(self, n: u32) -> Seq {
        Seq(self.0.wrapping_add(n))
    }

    /// How many steps forward from `earlier` reach `self` (`self - earlier`, wrapping).
    ///
    /// Always in `0..=u32::MAX`; if `earlier` is actually after `self` the result is large
    /// (above 2^31), so check order first when it matters.
    pub fn distance_from(self, earlier: Seq) -> u32 {
        self.0.wrapping_sub(earlier.0)
    }

    /// Signed serial difference `self - other`: positive when `self` is after `other`,
    /// negative when before, zero when equal.
    ///
    /// When the two are exactly 2^31 apart (unordered) the result is `i32::MIN`.
    pub fn diff(self, other: Seq) -> i32 {
        // Reinterpreting the wrapped difference as two's complement is exactly the serial
        // difference; `i32::MIN` marks the unordered half-way point.
        self.0.wrapping_sub(other.0) as i32
    }

    /// Serial "less than": `self` comes strictly before `other` (false when unordered).
    pub fn is_before(self, other: Seq) -> bool {
        self.partial_cmp(&other) == Some(Ordering::Less)
    }

    /// Serial "greater than": `self` comes strictly after `other` (false when unordered).
    pub fn is_after(self, other: Seq) -> bool {
        self.partial_cmp(&other) == Some(Ordering::Greater)
    }
}

/// Serial-number order (RFC 1982). Returns `None` for numbers exactly 2^31 apart.
///
/// This order is only meaningful between numbers less than 2^31 apart: it is not transitive
/// over the whole space (`0 < 2^30 < 2^31 + 1 < 0`), so never sort a collection of `Seq`s that
/// may span half the space.
impl PartialOrd for Seq {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.0.wrapping_sub(other.0) {
            0 => Some(Ordering::Equal),
            HALF => None,
            d if d < HALF => Some(Ordering::Greater),
            _ => Some(Ordering::Less),
        }
    }
}

impl From<u32> for Seq {
    fn from(v: u32) -> Self {
        Seq(v)
    }
}

impl From<Seq> for u32 {
    fn from(s: Seq) -> Self {
        s.0
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A half-open range `[start, end)` of sequence numbers, wrap-aware (`end` is exclusive and may
/// be numerically smaller than `start` when the range crosses `u32::MAX`).
///
/// Used for selective-acknowledgement (SACK) blocks: seqs held by the receiver above its
/// cumulative acknowledgement point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqRange {
    /// First sequence number in the range.
    pub start: Seq,
    /// First sequence number after the range (exclusive bound).
    pub end: Seq,
}

impl SeqRange {
    /// The range `[start, end)`.
    pub const fn new(start: Seq, end: Seq) -> Self {
        SeqRange { start, end }
    }

    /// Number of sequence numbers in the range (`end - start`, wrapping).
    pub fn len(&self) -> u32 {
        self.end.distance_from(self.start)
    }

    /// Whether the range holds no sequence number (`start == end`).
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Whether `seq` lies in `[start, end)`, counting forward from `start`.
    pub fn contains(&self, seq: Seq) -> bool {
        seq.distance_from(self.start) < self.len()
    }
}

impl fmt::Display for SeqRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_and_add_wrap() {
        assert_eq!(Seq::new(u32::MAX).next(), Seq::new(0));
        assert_eq!(Seq::new(u32::MAX - 1).add(5), Seq::new(3));
        assert_eq!(Seq::new(7).add(0), Seq::new(7));
        assert_eq!(Seq::new(1).add(u32::MAX), Seq::new(0));
    }

    #[test]
    fn distance_and_diff_across_wrap() {
        let a = Seq::new(u32::MAX - 2);
        let b = Seq::new(4);
        assert_eq!(b.distance_from(a), 7);
        assert_eq!(a.distance_from(b), u32::MAX - 6);
        assert_eq!(b.diff(a), 7);
        assert_eq!(a.diff(b), -7);
        assert_eq!(a.diff(a), 0);
    }

    #[test]
    fn order_across_wrap() {
        let max = Seq::new(u32::MAX);
        let zero = Seq::new(0);
        assert!(max.is_before(zero));
        assert!(zero.is_after(max));
        assert!(!zero.is_before(max));
        assert!(max < zero);
        assert!(zero > max);
        assert!(max <= max);
        assert_eq!(zero.partial_cmp(&zero), Some(Ordering::Equal));
        assert!(!zero.is_before(zero) && !zero.is_after(zero));
    }

    #[test]
    fn limits_of_the_ordered_half() {
        let a = Seq::new(10);
        let just_inside = a.add(HALF - 1);
        assert!(a.is_before(just_inside));
        assert_eq!(just_inside.diff(a), i32::MAX);
        let just_outside = a.add(HALF + 1);
        assert!(a.is_after(just_outside));
        assert_eq!(just_outside.diff(a), -i32::MAX);
    }

    #[test]
    // The point of this test is that every comparison operator answers false.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    fn exactly_half_apart_is_unordered() {
        for base in [0u32, 1, HALF - 1, HALF, u32::MAX] {
            let a = Seq::new(base);
            let b = a.add(HALF);
            assert_eq!(a.partial_cmp(&b), None, "{a} vs {b}");
            assert_eq!(b.partial_cmp(&a), None, "{b} vs {a}");
            assert!(!a.is_before(b) && !a.is_after(b));
            assert!(!(a < b) && !(a > b) && !(a <= b) && a != b);
            assert_eq!(a.diff(b), i32::MIN);
            assert_eq!(b.diff(a), i32::MIN);
            assert_eq!(b.distance_from(a), HALF);
        }
    }

    #[test]
    fn conversions_and_display() {
        let s: Seq = 42u32.into();
        assert_eq!(s.get(), 42);
        assert_eq!(u32::from(s), 42);
        assert_eq!(s.to_string(), "42");
        assert_eq!(Seq::default(), Seq::new(0));
        let r = SeqRange::new(Seq::new(u32::MAX - 1), Seq::new(2));
        assert_eq!(r.to_string(), "[4294967294, 2)");
        assert_eq!(r.len(), 4);
        assert!(r.contains(Seq::new(u32::MAX)) && r.contains(Seq::new(1)));
        assert!(!r.contains(Seq::new(2)) && !r.contains(Seq::new(u32::MAX - 2)));
        assert!(SeqRange::new(Seq::new(5), Seq::new(5)).is_empty());
    }
}
