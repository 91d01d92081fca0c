//! The loop breaker's memory: how many messages each (envelope sender,
//! GitLab key) pair got through in a sliding window. Sans-IO: the caller
//! passes the time.
//!
//! Bounded: at most [`CAPACITY`] pairs, each with at most `limit` times;
//! when full, the pair seen least recently is forgotten (a loop is busy by
//! nature, so it is never the one evicted). Pairs are kept as a keyed hash,
//! not as text, so a long address costs nothing. Nothing is written to
//! disk: a restart forgets, which only lets a loop through `limit` more.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

/// Pairs remembered at most.
pub const CAPACITY: usize = 4096;

/// Recent posts per (sender, key) pair.
#[derive(Debug)]
pub struct LoopTable {
    limit: usize,
    window: Duration,
    capacity: usize,
    hasher: RandomState,
    /// Hash of the pair → times of its recent posts, oldest first.
    seen: HashMap<u64, VecDeque<Instant>>,
}

impl LoopTable {
    /// At most `limit` messages per pair in any `window`.
    pub fn new(limit: usize, window: Duration) -> LoopTable {
        LoopTable::with_capacity(limit, window, CAPACITY)
    }

    fn with_capacity(limit: usize, window: Duration, capacity: usize) -> LoopTable {
        LoopTable {
            limit,
            window,
            capacity: capacity.max(1),
            hasher: RandomState::new(),
            seen: HashMap::new(),
        }
    }

    /// The table's name for a pair: the sender without regard to case (an
    /// auto-responder may change it), the key as GitLab reads it.
    pub fn pair(&self, sender: &str, key: &str) -> u64 {
        self.hasher
            .hash_one((sender.to_ascii_lowercase().as_str(), key))
    }

    /// Whether `pair` is still under the limit at `now` (nothing recorded).
    pub fn allows(&mut self, pair: u64, now: Instant) -> bool {
        let window = self.window;
        match self.seen.get_mut(&pair) {
            None => true,
            Some(times) => {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= window)
                {
                    times.pop_front();
                }
                times.len() < self.limit
            }
        }
    }

    /// Records a message of `pair` that reached GitLab at `now`.
    pub fn record(&mut self, pair: u64, now: Instant) {
        if !self.seen.contains_key(&pair) && self.seen.len() >= self.capacity {
            self.evict(now);
        }
        let times = self.seen.entry(pair).or_default();
        times.push_back(now);
        while times.len() > self.limit.max(1) {
            times.pop_front();
        }
    }

    /// Takes back a message recorded at `at` that did not reach GitLab
    /// after all: posts are recorded when they start, so that concurrent
    /// deliveries of one loop cannot all pass the check at once.
    pub fn forget(&mut self, pair: u64, at: Instant) {
        if let Some(times) = self.seen.get_mut(&pair) {
            if let Some(i) = times.iter().rposition(|t| *t == at) {
                times.remove(i);
            }
        }
    }

    /// Pairs remembered now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Forgets every pair whose window is over, and if that frees nothing,
    /// the pair seen least recently.
    fn evict(&mut self, now: Instant) {
        let window = self.window;
        self.seen.retain(|_, times| {
            times
                .back()
                .is_some_and(|t| now.duration_since(*t) < window)
        });
        if self.seen.len() >= self.capacity {
            let oldest = self
                .seen
                .iter()
                .min_by_key(|(_, times)| times.back().copied())
                .map(|(pair, _)| *pair);
            if let Some(pair) = oldest {
                self.seen.remove(&pair);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn limit_per_pair_in_a_sliding_window() {
        let t0 = Instant::now();
        let mut t = LoopTable::new(3, S(600));
        let loop_pair = t.pair("Bot@Example.org", "KEY");
        assert_eq!(loop_pair, t.pair("bot@example.org", "KEY"));
        assert_ne!(loop_pair, t.pair("bot@example.org", "key"));
        for i in 0..3 {
            assert!(t.allows(loop_pair, t0 + S(i)));
            t.record(loop_pair, t0 + S(i));
        }
        assert!(!t.allows(loop_pair, t0 + S(10)));
        // Another pair is not affected.
        let other = t.pair("alice@example.org", "KEY");
        assert!(t.allows(other, t0 + S(10)));
        // The window slides: the first post leaves it at 600 s.
        assert!(!t.allows(loop_pair, t0 + S(599)));
        assert!(t.allows(loop_pair, t0 + S(600)));
        t.record(loop_pair, t0 + S(600));
        assert!(!t.allows(loop_pair, t0 + S(600)));
        // A post that failed is taken back.
        t.forget(loop_pair, t0 + S(600));
        assert!(t.allows(loop_pair, t0 + S(600)));
    }

    #[test]
    fn memory_is_bounded_and_the_least_recent_pair_goes() {
        let t0 = Instant::now();
        let mut t = LoopTable::with_capacity(2, S(600), 100);
        let busy = t.pair("loop@example.org", "k");
        t.record(busy, t0);
        t.record(busy, t0);
        for i in 0..1000u64 {
            let p = t.pair(&format!("s{i}@example.org"), "k");
            t.record(p, t0 + S(1) + Duration::from_millis(i));
            // The loop keeps going all along.
            if i % 50 == 0 {
                assert!(
                    !t.allows(busy, t0 + S(2)),
                    "the busy pair was evicted at {i}"
                );
                t.record(busy, t0 + S(2) + Duration::from_millis(i));
            }
            assert!(t.len() <= 100);
        }
        assert!(!t.allows(busy, t0 + S(3)));
    }

    #[test]
    fn expired_pairs_are_dropped_first() {
        let t0 = Instant::now();
        let mut t = LoopTable::with_capacity(1, S(10), 3);
        for i in 0..3 {
            let p = t.pair(&format!("{i}"), "k");
            t.record(p, t0);
        }
        let new = t.pair("new", "k");
        t.record(new, t0 + S(20));
        assert_eq!(t.len(), 1);
    }
}
