//! Back-pressure: at most `max` posts to GitLab at once. A delivery waits
//! a bounded time for a slot; the slot is given back when its [`Slot`] is
//! dropped (also by a panic), so none can leak.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// A counting semaphore with a timed wait.
#[derive(Debug)]
pub struct Slots {
    max: usize,
    busy: Mutex<usize>,
    freed: Condvar,
}

/// One slot taken; given back on drop.
#[derive(Debug)]
pub struct Slot<'a>(&'a Slots);

impl Slots {
    /// `max` slots (at least one).
    pub fn new(max: usize) -> Slots {
        Slots {
            max: max.max(1),
            busy: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Takes a slot, waiting at most `wait` for one.
    pub fn take(&self, wait: Duration) -> Option<Slot<'_>> {
        let deadline = Instant::now() + wait;
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        while *busy >= self.max {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            busy = self
                .freed
                .wait_timeout(busy, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *busy += 1;
        Some(Slot(self))
    }

    /// Slots taken now.
    #[cfg(test)]
    pub fn busy(&self) -> usize {
        *self.busy.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut busy = self.0.busy.lock().unwrap_or_else(|p| p.into_inner());
        *busy = busy.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn never_more_than_max_and_a_bounded_wait() {
        let slots = Slots::new(2);
        let a = slots.take(Duration::ZERO).unwrap();
        let _b = slots.take(Duration::ZERO).unwrap();
        let start = Instant::now();
        assert!(slots.take(Duration::from_millis(50)).is_none());
        assert!(start.elapsed() >= Duration::from_millis(50));
        drop(a);
        assert!(slots.take(Duration::ZERO).is_some());
        assert_eq!(slots.busy(), 1);
    }

    #[test]
    fn waiters_get_freed_slots_and_the_peak_stays_at_max() {
        let slots = Slots::new(3);
        let now = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..12 {
                s.spawn(|| {
                    let _slot = slots.take(Duration::from_secs(10)).expect("a slot");
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    now.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        assert_eq!(slots.busy(), 0);
    }
}
