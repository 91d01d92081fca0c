//! The circuit breaker toward GitLab, as a sans-IO state machine: the
//! caller passes the time in ([`Breaker::admit`], [`Breaker::record`]), so
//! the tests drive it with a made-up clock.
//!
//! Closed: every post goes through; `threshold` temporary failures in a
//! row open it. Open: nothing is posted until the cool-down has passed
//! (5 s first, doubling up to `max_cooldown`, or what GitLab's
//! `Retry-After` said). Then one post goes through as a probe (half-open);
//! its success closes the breaker, its failure opens it again for twice as
//! long. It knows nothing of HTTP: [`Verdict`] says what a post meant.

use crate::outcome::Verdict;
use std::time::{Duration, Instant};

/// The first cool-down after the breaker opens.
pub const FIRST_COOLDOWN: Duration = Duration::from_secs(5);

/// What the breaker lets a post do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Post.
    Go,
    /// Post: this is the one probe after a cool-down.
    Probe,
    /// Do not post; the breaker stays open this much longer (zero while a
    /// probe is out).
    Refuse(Duration),
}

/// A change of state worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The breaker opened (or opened again) for this long.
    Opened(Duration),
    /// The breaker closed after being open.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Posting; this many temporary failures in a row so far.
    Closed(u32),
    /// Not posting until `until`; `cooldown` is how long this opening is.
    Open { until: Instant, cooldown: Duration },
    /// One probe is out since `since`.
    HalfOpen { since: Instant, cooldown: Duration },
}

/// The breaker for one GitLab URL.
#[derive(Debug)]
pub struct Breaker {
    state: State,
    threshold: u32,
    max_cooldown: Duration,
    /// A probe not back after this long (it cannot take longer than the
    /// HTTP timeout) is written off, so a lost probe cannot close the door
    /// for good.
    probe_limit: Duration,
}

impl Breaker {
    /// A closed breaker opening after `threshold` failures in a row (0:
    /// never, except on `Retry-After`); cool-downs up to `max_cooldown`.
    pub fn new(threshold: u32, max_cooldown: Duration, probe_limit: Duration) -> Breaker {
        Breaker {
            state: State::Closed(0),
            threshold,
            max_cooldown: max_cooldown.max(Duration::from_secs(1)),
            probe_limit,
        }
    }

    /// May a post go out at `now`?
    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.state {
            State::Closed(_) => Admit::Go,
            State::Open { until, cooldown } if now >= until => {
                self.state = State::HalfOpen {
                    since: now,
                    cooldown,
                };
                Admit::Probe
            }
            State::Open { until, .. } => Admit::Refuse(until - now),
            State::HalfOpen { since, cooldown } if now >= since + self.probe_limit => {
                self.state = State::HalfOpen {
                    since: now,
                    cooldown,
                };
                Admit::Probe
            }
            State::HalfOpen { .. } => Admit::Refuse(Duration::ZERO),
        }
    }

    /// How much longer the breaker refuses, without changing its state:
    /// while open before its time, or while a probe is out (zero).
    pub fn refusing(&self, now: Instant) -> Option<Duration> {
        match self.state {
            State::Open { until, .. } if now < until => Some(until - now),
            State::HalfOpen { since, .. } if now < since + self.probe_limit => Some(Duration::ZERO),
            _ => None,
        }
    }

    /// Takes the result of a post that started while admitted (`probe`:
    /// admitted as [`Admit::Probe`]). `retry_after` is GitLab's own
    /// `Retry-After`, which opens the breaker for that long at once.
    pub fn record(
        &mut self,
        verdict: Verdict,
        probe: bool,
        retry_after: Option<Duration>,
        now: Instant,
    ) -> Option<Change> {
        let was_open = !matches!(self.state, State::Closed(_));
        if let Some(wait) = retry_after {
            let wait = wait.clamp(Duration::from_secs(1), self.max_cooldown);
            return self.open(wait, now);
        }
        match (verdict, self.state) {
            // Also a post from before the opening: GitLab took it, it is back.
            (Verdict::Healthy, _) => {
                self.state = State::Closed(0);
                was_open.then_some(Change::Closed)
            }
            // The probe got an answer: GitLab is up, if unhappy with us.
            (Verdict::Neutral, State::HalfOpen { .. }) if probe => {
                self.state = State::Closed(0);
                Some(Change::Closed)
            }
            (Verdict::Failing, State::HalfOpen { cooldown, .. }) if probe => {
                self.open((cooldown * 2).min(self.max_cooldown), now)
            }
            (Verdict::Failing, State::Closed(n)) => {
                let n = n.saturating_add(1);
                if self.threshold > 0 && n >= self.threshold {
                    self.open(FIRST_COOLDOWN.min(self.max_cooldown), now)
                } else {
                    self.state = State::Closed(n);
                    None
                }
            }
            // Late answers to posts from before the opening change nothing.
            _ => None,
        }
    }

    fn open(&mut self, cooldown: Duration, now: Instant) -> Option<Change> {
        self.state = State::Open {
            until: now + cooldown,
            cooldown,
        };
        Some(Change::Opened(cooldown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn breaker() -> Breaker {
        Breaker::new(3, S(20), S(60))
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let t0 = Instant::now();
        let mut b = breaker();
        for _ in 0..2 {
            assert_eq!(b.admit(t0), Admit::Go);
            assert_eq!(b.record(Verdict::Failing, false, None, t0), None);
        }
        // A success in between starts the count again.
        assert_eq!(b.record(Verdict::Healthy, false, None, t0), None);
        b.record(Verdict::Failing, false, None, t0);
        b.record(Verdict::Failing, false, None, t0);
        // Neutral answers neither count nor reset.
        b.record(Verdict::Neutral, false, None, t0);
        assert_eq!(
            b.record(Verdict::Failing, false, None, t0),
            Some(Change::Opened(S(5)))
        );
        assert_eq!(b.admit(t0 + S(1)), Admit::Refuse(S(4)));
    }

    #[test]
    fn one_probe_per_cooldown_doubling_up_to_the_maximum() {
        let t0 = Instant::now();
        let mut b = breaker();
        for _ in 0..3 {
            b.record(Verdict::Failing, false, None, t0);
        }
        let mut now = t0;
        let mut cooldowns = Vec::new();
        for _ in 0..5 {
            let Admit::Refuse(left) = b.admit(now) else {
                panic!("open")
            };
            cooldowns.push(left);
            now += left;
            assert_eq!(b.admit(now), Admit::Probe);
            // Only one probe at a time.
            assert_eq!(b.admit(now), Admit::Refuse(Duration::ZERO));
            b.record(Verdict::Failing, true, None, now);
        }
        assert_eq!(cooldowns, [S(5), S(10), S(20), S(20), S(20)]);
        now += S(20);
        assert_eq!(b.admit(now), Admit::Probe);
        assert_eq!(
            b.record(Verdict::Healthy, true, None, now),
            Some(Change::Closed)
        );
        assert_eq!(b.admit(now), Admit::Go);
        // Closed again from scratch: the next opening is 5 s again.
        for _ in 0..3 {
            b.record(Verdict::Failing, false, None, now);
        }
        assert_eq!(b.admit(now), Admit::Refuse(S(5)));
    }

    #[test]
    fn retry_after_sets_the_cooldown_within_bounds() {
        let t0 = Instant::now();
        let mut b = breaker();
        assert_eq!(
            b.record(Verdict::Failing, false, Some(S(7)), t0),
            Some(Change::Opened(S(7)))
        );
        assert_eq!(b.admit(t0), Admit::Refuse(S(7)));
        assert_eq!(b.admit(t0 + S(7)), Admit::Probe);
        assert_eq!(
            b.record(Verdict::Failing, true, Some(S(3600)), t0 + S(7)),
            Some(Change::Opened(S(20)))
        );
    }

    #[test]
    fn a_lost_probe_is_written_off_and_late_answers_change_nothing() {
        let t0 = Instant::now();
        let mut b = breaker();
        for _ in 0..3 {
            b.record(Verdict::Failing, false, None, t0);
        }
        assert_eq!(b.admit(t0 + S(5)), Admit::Probe);
        assert_eq!(b.admit(t0 + S(30)), Admit::Refuse(Duration::ZERO));
        // A failure of a post admitted before the opening is no probe.
        assert_eq!(b.record(Verdict::Failing, false, None, t0 + S(30)), None);
        assert_eq!(b.admit(t0 + S(65)), Admit::Probe);
        assert_eq!(
            b.record(Verdict::Neutral, true, None, t0 + S(66)),
            Some(Change::Closed)
        );
    }

    #[test]
    fn threshold_zero_never_opens_on_failures() {
        let t0 = Instant::now();
        let mut b = Breaker::new(0, S(20), S(60));
        for _ in 0..100 {
            assert_eq!(b.record(Verdict::Failing, false, None, t0), None);
        }
        assert_eq!(b.admit(t0), Admit::Go);
    }
}
