//! The guards at the edge, where mail can still be deferred or refused
//! without a bounce to a stranger (issue 13): GitLab itself only drops
//! `Auto-Submitted`/`X-Autoreply` mail, and its Service Desk rate limit
//! fires after it has answered 200, when Postfix can no longer retry.
//!
//! - Automated mail: the null sender is refused ([`Guard::screen_sender`]),
//!   auto-submitted messages are discarded ([`auto_submitted`]).
//! - Loops (`serve` only, see [`Guard::with_loop_breaker`]): at most
//!   `loop_limit` messages per (envelope sender, GitLab key) reach GitLab
//!   in a sliding window; more are deferred with 451 4.7.1.
//! - Back-pressure: at most `max_in_flight` posts at once; a delivery
//!   waits `slot_wait` for a slot, then 451 4.3.2.
//! - Circuit breaker: after `breaker_failures` temporary failures in a row
//!   nothing is posted (451 4.3.0 at once) until a cool-down has passed and
//!   one probe got through ([`breaker`]).
//!
//! Every decision taken without asking GitLab goes through [`decided`]
//! (the one place to count them) and ends as an [`Outcome`] whose log line
//! says so. Pipe mode runs one process per message: it has the same
//! checks but no memory across messages, so no loop breaker.

pub mod breaker;
mod loops;
mod settings;
mod slots;

use crate::gitlab::Posted;
use crate::log;
use crate::message::Headers;
use crate::outcome::{Discard, Outcome, Temporary};
use breaker::{Admit, Breaker, Change, Verdict};
use loops::LoopTable;
pub use settings::{NullSender, RawSettings, Settings};
use slots::{Slot, Slots};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// A decision a guard took without asking GitLab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Mail from the null sender refused (LMTP) or discarded (pipe).
    NullSender,
    /// An `Auto-Submitted`/`X-Autoreply: yes` message discarded.
    AutoSubmitted,
    /// Deferred: too many messages from this sender to this key.
    Loop,
    /// Deferred: no free slot toward GitLab in time.
    NoSlot,
    /// Deferred: the circuit breaker is open.
    BreakerOpen,
}

impl Decision {
    /// Every decision, in the order of [`Decision::name`]'s table.
    pub const ALL: [Decision; 5] = [
        Decision::NullSender,
        Decision::AutoSubmitted,
        Decision::Loop,
        Decision::NoSlot,
        Decision::BreakerOpen,
    ];

    /// A name for logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Decision::NullSender => "null_sender",
            Decision::AutoSubmitted => "auto_submitted",
            Decision::Loop => "loop",
            Decision::NoSlot => "no_slot",
            Decision::BreakerOpen => "breaker_open",
        }
    }
}

/// How often each [`Decision`] was taken in this process.
static COUNTS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// The one place every guard decision passes through: counts it, here
/// and in `gitlab_mailgate_guard_decisions_total`.
pub fn decided(decision: Decision) {
    COUNTS[decision as usize].fetch_add(1, Ordering::Relaxed);
    crate::metrics::guarded(decision.name());
}

/// How often `decision` was taken in this process so far.
pub fn count(decision: Decision) -> u64 {
    COUNTS[decision as usize].load(Ordering::Relaxed)
}

/// The guards of one delivery core, shared by all connection threads.
pub struct Guard {
    settings: Settings,
    /// Only in `serve`: a pipe process sees one message.
    loops: Option<Mutex<LoopTable>>,
    slots: Slots,
    breaker: Mutex<Breaker>,
}

/// Leave to post one message: holds a slot until dropped.
pub struct Pass<'a> {
    _slot: Slot<'a>,
    probe: bool,
    /// The loop breaker's pair and when this post was counted for it.
    counted: Option<(u64, Instant)>,
}

impl Guard {
    /// The guards for one GitLab URL; `http_timeout` bounds a probe.
    pub fn new(settings: &Settings, http_timeout: Duration) -> Guard {
        Guard {
            settings: settings.clone(),
            loops: None,
            slots: Slots::new(settings.max_in_flight),
            breaker: Mutex::new(Breaker::new(
                settings.breaker_failures,
                settings.breaker_max_cooldown,
                http_timeout + Duration::from_secs(5),
            )),
        }
    }

    /// Adds the loop breaker's table (for `serve`).
    pub fn with_loop_breaker(mut self) -> Guard {
        if self.settings.loop_limit > 0 {
            let table = LoopTable::new(self.settings.loop_limit, self.settings.loop_window);
            self.loops = Some(Mutex::new(table));
        }
        self
    }

    /// Refuses the null sender (`""`, or Postfix's `MAILER-DAEMON` for it in
    /// pipe mode) unless `null_sender = "accept"`. `None`: unknown (an old
    /// master.cf without `--sender`), let through.
    pub fn screen_sender(&self, sender: Option<&str>) -> Result<(), Outcome> {
        let null = sender.is_some_and(|s| s.is_empty() || s.eq_ignore_ascii_case("MAILER-DAEMON"));
        if null && self.settings.null_sender == NullSender::Refuse {
            decided(Decision::NullSender);
            return Err(Outcome::Discarded(Discard::NullSender));
        }
        Ok(())
    }

    /// Discards what GitLab would drop unread (see [`auto_submitted`]).
    pub fn screen_message(&self, headers: &Headers) -> Result<(), Outcome> {
        if auto_submitted(headers) {
            decided(Decision::AutoSubmitted);
            return Err(Outcome::Discarded(Discard::AutoSubmitted));
        }
        Ok(())
    }

    /// Leave to post a message from `sender` for GitLab key `key` (the
    /// recipient when there is none; `None`: another copy of a message
    /// already counted), or the deferral that stands for it: loop, open
    /// breaker (at once), no slot (after `slot_wait`).
    pub fn admit(&self, sender: &str, key: Option<&str>) -> Result<Pass<'_>, Outcome> {
        // Counted at once, under the lock of the check, so concurrent
        // copies of a loop cannot all pass it; taken back below when the
        // post does not happen, and in `finish` when it fails.
        let mut counted = None;
        if let (Some(loops), Some(key)) = (&self.loops, key) {
            let mut table = lock(loops);
            let (pair, now) = (table.pair(sender, key), Instant::now());
            if !table.allows(pair, now) {
                return deny(Decision::Loop, Temporary::Loop);
            }
            table.record(pair, now);
            counted = Some((pair, now));
        }
        let admitted = self.admit_post(counted);
        if admitted.is_err() {
            self.uncount(counted);
        }
        admitted
    }

    /// The breaker's and the slots' part of [`admit`](Self::admit).
    fn admit_post(&self, counted: Option<(u64, Instant)>) -> Result<Pass<'_>, Outcome> {
        // An open breaker answers at once, without queueing for a slot
        // that slow posts from before the outage may still hold.
        if let Some(left) = lock(&self.breaker).refusing(Instant::now()) {
            return deny(Decision::BreakerOpen, Temporary::BreakerOpen(secs(left)));
        }
        let Some(slot) = self.slots.take(self.settings.slot_wait) else {
            return deny(Decision::NoSlot, Temporary::NoSlot);
        };
        let admit = lock(&self.breaker).admit(Instant::now());
        match admit {
            Admit::Go => {}
            Admit::Probe => log::info("GitLab circuit breaker half-open: one probe goes through"),
            Admit::Refuse(left) => {
                return deny(Decision::BreakerOpen, Temporary::BreakerOpen(secs(left)))
            }
        }
        Ok(Pass {
            _slot: slot,
            probe: admit == Admit::Probe,
            counted,
        })
    }

    /// Takes back a loop count for a message that did not reach GitLab.
    fn uncount(&self, counted: Option<(u64, Instant)>) {
        if let (Some((pair, at)), Some(loops)) = (counted, &self.loops) {
            lock(loops).forget(pair, at);
        }
    }

    /// Takes what GitLab did with a post made under `pass`.
    pub fn finish(&self, pass: Pass<'_>, posted: &Posted) {
        if !matches!(posted, Posted::Status(200..=299)) {
            self.uncount(pass.counted);
        }
        let (verdict, retry_after) = verdict(posted);
        let change = lock(&self.breaker).record(verdict, pass.probe, retry_after, Instant::now());
        match change {
            Some(Change::Opened(d)) => log::warn(&format!(
                "GitLab circuit breaker open: not posting for {} s ({}), answering 451 4.3.0 without asking GitLab",
                secs(d),
                if retry_after.is_some() { "GitLab's Retry-After" } else { "temporary failures in a row" }
            )),
            Some(Change::Closed) => log::info("GitLab circuit breaker closed: GitLab answers again"),
            None => {}
        }
    }
}

/// Counts a decision taken without GitLab and returns its deferral.
fn deny<T>(decision: Decision, why: Temporary) -> Result<T, Outcome> {
    decided(decision);
    Err(Outcome::Temporary(why))
}

/// Locks `m`, also after a panic elsewhere (the data stays consistent:
/// every update is a single step).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whole seconds, rounded up, at least 1 (for a reply: "0 s" would read
/// as "retry at once").
fn secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// What a post says about GitLab's health, and its `Retry-After`.
fn verdict(posted: &Posted) -> (Verdict, Option<Duration>) {
    match posted {
        Posted::Status(200..=299 | 400) => (Verdict::Healthy, None),
        Posted::Status(429 | 500..=599) | Posted::Unreachable(_) | Posted::Lost(_) => {
            (Verdict::Failing, None)
        }
        Posted::Throttled { retry_after, .. } => (Verdict::Failing, *retry_after),
        Posted::Status(_) | Posted::Local(_) => (Verdict::Neutral, None),
    }
}

/// What GitLab drops unread (`Gitlab::Email::Receiver`): `Auto-Submitted`
/// present and not exactly `no`, or `X-Autoreply: yes`. Compared as
/// GitLab does, case-sensitively after trimming.
pub fn auto_submitted(headers: &Headers) -> bool {
    headers
        .values("Auto-Submitted")
        .iter()
        .any(|v| v.trim() != "no")
        || headers
            .values("X-Autoreply")
            .iter()
            .any(|v| v.trim() == "yes")
}

/// An HTTP `Retry-After` value (RFC 9110 §10.2.3): delay-seconds or an
/// IMF-fixdate, as a wait from `now`. `None` when unreadable.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (IMF-fixdate, the only form senders
/// may generate) as a time.
fn http_date(value: &str) -> Option<SystemTime> {
    let mut words = value.split_ascii_whitespace();
    let (_weekday, day, month, year, time, zone) = (
        words.next()?,
        words.next()?.parse::<u64>().ok()?,
        words.next()?,
        words.next()?.parse::<i64>().ok()?,
        words.next()?,
        words.next()?,
    );
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if zone != "GMT"
        || hms.len() != 3
        || !(1..=31).contains(&day)
        || hms[0] > 23
        || hms[1] > 59
        || hms[2] > 60
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days).ok()? * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2];
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests;
