//! The streams with something to send, in the order they get to send it: higher
//! priority first, and round-robin among streams of equal priority (a stream that sent
//! a frame goes to the back of its level). Nearly every client uses one level, so the
//! levels are a short sorted list rather than a map.

use std::collections::VecDeque;

use super::LocalId;

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct ReadyQueue {
    /// (priority, streams in turn order), highest priority first.
    levels: Vec<(i32, VecDeque<LocalId>)>,
}

impl ReadyQueue {
    /// Puts `local` at the back of its priority's turn.
    pub(super) fn push_back(&mut self, local: LocalId, priority: i32) {
        let at = self.levels.partition_point(|(p, _)| *p > priority);
        match self.levels.get_mut(at) {
            Some((p, q)) if *p == priority => q.push_back(local),
            _ => self.levels.insert(at, (priority, VecDeque::from([local]))),
        }
    }

    /// The next stream to send: the front of the highest non-empty priority.
    pub(super) fn pop_front(&mut self) -> Option<LocalId> {
        loop {
            let (_, q) = self.levels.first_mut()?;
            if let Some(l) = q.pop_front() {
                if q.is_empty() && self.levels.len() > 1 {
                    self.levels.remove(0);
                }
                return Some(l);
            }
            self.levels.remove(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_priority_first_then_round_robin_within_a_level() {
        let mut q = ReadyQueue::default();
        q.push_back(LocalId(1), 0);
        q.push_back(LocalId(2), 0);
        q.push_back(LocalId(3), 5);
        q.push_back(LocalId(4), -1);
        assert_eq!(q.pop_front(), Some(LocalId(3)));
        assert_eq!(q.pop_front(), Some(LocalId(1)));
        // Stream 1 sent a frame and has more: it goes behind stream 2.
        q.push_back(LocalId(1), 0);
        assert_eq!(q.pop_front(), Some(LocalId(2)));
        assert_eq!(q.pop_front(), Some(LocalId(1)));
        assert_eq!(q.pop_front(), Some(LocalId(4)));
        assert_eq!(q.pop_front(), None);
        q.push_back(LocalId(9), 3);
        assert_eq!(q.pop_front(), Some(LocalId(9)));
        assert_eq!(q.pop_front(), None);
    }
}
