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
//! Every decision taken without asking GitLab ends as an [`Outcome`]
//! whose log line says so and whose metrics label (`guard_decision`) counts
//! it; the guards read what GitLab said only as `outcome` classified it
//! ([`Posting`]). Breaker changes are returned, for the caller to log.
//! Pipe mode runs one process per message: it has the same
//! checks but no memory across messages, so no loop breaker.

pub mod breaker;
mod loops;
mod settings;
mod slots;

use crate::message::Headers;
use crate::outcome::{Discard, Outcome, Posting, Temporary};
pub use breaker::Change;
use breaker::{Admit, Breaker};
use loops::LoopTable;
pub use settings::{NullSender, RawSettings, Settings};
use slots::{Slot, Slots};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

impl Pass<'_> {
    /// This post is the breaker's one probe after a cool-down.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
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
            return Err(Outcome::Discarded(Discard::NullSender));
        }
        Ok(())
    }

    /// Discards what GitLab would drop unread (see [`auto_submitted`]).
    pub fn screen_message(&self, headers: &Headers) -> Result<(), Outcome> {
        if auto_submitted(headers) {
            return Err(Outcome::Discarded(Discard::AutoSubmitted));
        }
        Ok(())
    }

    /// Leave to post a message from `sender` for GitLab key `key` (the
    /// recipient when there is none), or the deferral that stands for it:
    /// loop, open breaker (at once), no slot (after `slot_wait`). Every
    /// post allowed counts for the loop breaker: the core posts a message
    /// once per key, so fanning out to more recipients gains nothing.
    pub fn admit(&self, sender: &str, key: &str) -> Result<Pass<'_>, Outcome> {
        // Counted at once, under the lock of the check, so concurrent
        // copies of a loop cannot all pass it; taken back below when the
        // post does not happen, and in `finish` when it fails.
        let mut counted = None;
        if let Some(loops) = &self.loops {
            let mut table = lock(loops);
            let (pair, now) = (table.pair(sender, key), Instant::now());
            if !table.allows(pair, now) {
                return Err(Outcome::Temporary(Temporary::Loop));
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
            return Err(Outcome::Temporary(Temporary::BreakerOpen(secs(left))));
        }
        let Some(slot) = self.slots.take(self.settings.slot_wait) else {
            return Err(Outcome::Temporary(Temporary::NoSlot));
        };
        let admit = lock(&self.breaker).admit(Instant::now());
        if let Admit::Refuse(left) = admit {
            return Err(Outcome::Temporary(Temporary::BreakerOpen(secs(left))));
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

    /// Takes what GitLab did with a post made under `pass`; returns a
    /// change of the breaker's state worth a log line.
    pub fn finish(&self, pass: Pass<'_>, posting: &Posting) -> Option<Change> {
        if posting.outcome != Outcome::Delivered {
            self.uncount(pass.counted);
        }
        lock(&self.breaker).record(
            posting.verdict,
            pass.probe,
            posting.retry_after,
            Instant::now(),
        )
    }
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

#[cfg(test)]
mod tests;
