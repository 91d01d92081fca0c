//! What happened to one recipient, and the one table that turns it into an
//! LMTP reply, a `pipe(8)` exit status, DSN text, a log status, metrics
//! labels and what it says about GitLab's health.
//!
//! Principle: anything that is not a definitive answer from GitLab is
//! temporary, so Postfix keeps the message and retries. Only an unknown
//! recipient and a message too large bounce. The GitLab client only reports
//! what happened on the wire ([`Posted`]); [`Posting::classify`] is the one
//! place that reads an HTTP status and decides what it means, for the
//! message and for the guards, readiness and metrics that read the record.
//! Nothing here does I/O.

use crate::gitlab::Posted;
use crate::reply::*;
use std::time::Duration;

mod probe;
pub mod table;

pub use probe::{Probe, TokenProbe};

/// sysexits.h: successful termination.
pub const EX_OK: u8 = 0;
/// sysexits.h: addressee unknown; Postfix bounces with 5.1.1.
pub const EX_NOUSER: u8 = 67;
/// sysexits.h: service unavailable; Postfix bounces.
pub const EX_UNAVAILABLE: u8 = 69;
/// sysexits.h: temporary failure; Postfix defers and retries.
pub const EX_TEMPFAIL: u8 = 75;

/// The result of delivering to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// GitLab answered 2xx: the message is queued in GitLab.
    Delivered,
    /// The recipient is no GitLab address, or its key fits no GitLab shape.
    UnknownRecipient,
    /// The message is larger than `max_message_size`: at `MAIL SIZE=`,
    /// after the message, or in pipe mode, one outcome and one log form.
    TooLarge,
    /// GitLab itself refused the message as too large for its job queue
    /// and mailed the sender why: taken, so Postfix sends no second notice.
    RejectedByGitlab,
    /// Try again later; the text says why (no secrets).
    Temporary(Temporary),
    /// Not posted, on purpose, without asking GitLab (see `guard`): no
    /// retry, no bounce to anyone.
    Discarded(Discard),
}

/// Why a message was not posted to GitLab, on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    /// From the null sender (a bounce, DSN, read receipt or auto-reply).
    /// LMTP refuses it at RCPT (550 5.7.1: Postfix drops the bounce of a
    /// null-sender message, so nobody is mailed); pipe mode exits 0, since
    /// a failure status would only make Postfix write a double bounce.
    NullSender,
    /// `Auto-Submitted`/`X-Autoreply: yes`: GitLab would drop it unread.
    AutoSubmitted,
}

impl Discard {
    /// Said in the log line: `status=discarded (auto-submitted)`.
    pub fn reason(self) -> &'static str {
        match self {
            Discard::NullSender => "null sender",
            Discard::AutoSubmitted => "auto-submitted",
        }
    }
}

/// Why a delivery must be retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Temporary {
    /// GitLab could not be reached: refused, no route, DNS, TLS handshake.
    Unreachable(String),
    /// The connection broke or timed out during the request.
    ConnectionLost(String),
    /// GitLab refused the token: 401 or 403 (wrong secret, mailbox disabled).
    NotAuthorized(u16),
    /// 404: the URL is wrong or GitLab is too old for this API.
    NotFound,
    /// Any other answer: 5xx, or a status GitLab does not send.
    Status(u16),
    /// A local problem: secret file unreadable, bad CA file, internal error.
    Local(String),
    /// The overall deadline of this delivery passed.
    Deadline,
    /// `pipe(8)` ran us with arguments we cannot parse: master.cf is wrong.
    /// Deferred, not bounced, so the mail waits for the fix.
    BadCommandLine,
    /// GitLab answered 429: it is rate limiting us.
    RateLimited,
    /// Not posted: too many messages from this sender to this key lately
    /// (the loop breaker), so a mail loop stalls in Postfix's queue.
    Loop,
    /// Not posted: no free slot toward GitLab in time (back-pressure).
    NoSlot,
    /// Not posted: the circuit breaker is open for this many more seconds.
    BreakerOpen(u64),
}

/// The `decision` label of `gitlab_mailgate_guard_decisions_total`: every
/// outcome a guard decides without asking GitLab, in this order.
pub const GUARD_DECISIONS: [&str; 5] = [
    "null_sender",
    "auto_submitted",
    "loop",
    "no_slot",
    "breaker_open",
];

impl Outcome {
    /// The LMTP reply for this recipient; everything else derives from it.
    pub fn reply(&self) -> Reply {
        let temp = Reply::new(LOCAL_ERROR, E_SYSTEM, "");
        match self {
            Outcome::Delivered => Reply::new(OK, E_OK, "delivered to GitLab"),
            Outcome::UnknownRecipient => Reply::new(
                MAILBOX_UNAVAILABLE,
                E_NO_MAILBOX,
                "no such GitLab address",
            ),
            Outcome::TooLarge => Reply::new(EXCEEDED_STORAGE, E_TOO_BIG, "message too large"),
            Outcome::RejectedByGitlab => Reply::new(
                OK,
                E_OK,
                "rejected by GitLab as too large; GitLab notified the sender",
            ),
            Outcome::Temporary(t) => match t {
                Temporary::Unreachable(e) => temp.with_text(format!("cannot reach GitLab: {e}")).with_enhanced(E_NO_ANSWER),
                Temporary::ConnectionLost(e) => temp.with_text(format!("connection to GitLab lost: {e}")).with_enhanced(E_BAD_CONNECTION),
                Temporary::NotAuthorized(s) => temp.with_text(format!(
                        "GitLab refused our token ({s}): check secret_file and that the mailbox is enabled in GitLab"
                    )).with_enhanced(E_SECURITY),
                Temporary::NotFound => temp.with_text("GitLab answered 404: check [gitlab] url, or GitLab is too old for this API").with_enhanced(E_MISCONFIGURED),
                Temporary::Status(s) => temp.with_text(format!("GitLab answered {s}")),
                Temporary::Local(e) => temp.with_text(format!("local error: {e}")).with_enhanced(E_MISCONFIGURED),
                Temporary::Deadline => temp.with_text("delivery deadline passed").with_enhanced(E_EXPIRED),
                Temporary::BadCommandLine => temp.with_text("gitlab-mailgate: bad command line (see master.cf)").with_enhanced(E_MISCONFIGURED),
                Temporary::RateLimited => temp.with_text("GitLab is rate limiting (429)").with_enhanced(E_CONGESTION),
                // The three below are decided without asking GitLab, and say so.
                Temporary::Loop => temp.with_text("too many messages from this sender to this address, not posted to GitLab").with_enhanced(E_POLICY),
                Temporary::NoSlot => temp.with_text("GitLab busy: no free slot, not posted to GitLab").with_enhanced(E_SHUTTING_DOWN),
                Temporary::BreakerOpen(s) => temp.with_text(format!("GitLab failing: circuit breaker open, not posted to GitLab, next try in {s} s")),
            },
            Outcome::Discarded(Discard::NullSender) => Reply::new(
                MAILBOX_UNAVAILABLE,
                E_POLICY,
                "no mail from the null sender: bounces and auto-replies are not posted to GitLab",
            ),
            Outcome::Discarded(Discard::AutoSubmitted) => Reply::new(
                OK,
                E_OK,
                "auto-submitted: discarded, not posted to GitLab",
            ),
        }
    }

    /// The `pipe(8)` exit status: 0, 75 (defer), 67 (unknown user) or 69.
    /// A discarded message is 0, even the null sender's 550 in LMTP: see
    /// [`Discard::NullSender`].
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Delivered | Outcome::RejectedByGitlab | Outcome::Discarded(_) => EX_OK,
            Outcome::UnknownRecipient => EX_NOUSER,
            Outcome::Temporary(_) => EX_TEMPFAIL,
            Outcome::TooLarge => EX_UNAVAILABLE,
        }
    }

    /// Postfix's word for it in log lines and the `status` label: `sent`,
    /// `deferred` or `bounced`; ours for a message not posted on purpose,
    /// `discarded`, and for one GitLab refused itself, `rejected`.
    pub fn status_word(&self) -> &'static str {
        match self {
            Outcome::Discarded(_) => return "discarded",
            Outcome::RejectedByGitlab => return "rejected",
            _ => {}
        }
        match self.exit_code() {
            EX_OK => "sent",
            EX_TEMPFAIL => "deferred",
            _ => "bounced",
        }
    }

    /// The `class` label: the class digit of the reply's enhanced code.
    pub fn class_label(&self) -> &'static str {
        match self.reply().code / 100 {
            2 => "2",
            4 => "4",
            _ => "5",
        }
    }

    /// The `decision` label when a guard decided this without GitLab.
    pub fn guard_decision(&self) -> Option<&'static str> {
        let index = match self {
            Outcome::Discarded(Discard::NullSender) => 0,
            Outcome::Discarded(Discard::AutoSubmitted) => 1,
            Outcome::Temporary(Temporary::Loop) => 2,
            Outcome::Temporary(Temporary::NoSlot) => 3,
            Outcome::Temporary(Temporary::BreakerOpen(_)) => 4,
            _ => return None,
        };
        Some(GUARD_DECISIONS[index])
    }

    /// The DSN line `pipe(8)` reads from our first output (`4.4.1 text`,
    /// no newline); `None` for exit status 0, which has nothing to explain.
    pub fn dsn(&self) -> Option<String> {
        (self.exit_code() != EX_OK).then(|| {
            let reply = self.reply();
            format!("{} {}", reply.status().unwrap_or_default(), reply.text)
        })
    }

    /// The one outcome that stands for several recipients in a single
    /// exit status: any temporary failure first (so nothing is lost), then
    /// any permanent one, else success (delivered before discarded).
    pub fn combine(outcomes: &[Outcome]) -> Outcome {
        let first = |f: fn(&Outcome) -> bool| outcomes.iter().find(|o| f(o)).cloned();
        first(|o| matches!(o, Outcome::Temporary(_)))
            .or_else(|| first(|o| o.exit_code() != EX_OK))
            .or_else(|| first(|o| *o == Outcome::Delivered))
            .or_else(|| outcomes.first().cloned())
            .unwrap_or(Outcome::Delivered)
    }
}

/// What one post says about GitLab's health, for the circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// GitLab took the message (or answered for good, e.g. 400).
    Healthy,
    /// A temporary failure that more posts would only make worse: 5xx,
    /// 429, unreachable, timeout.
    Failing,
    /// GitLab answered, but not about its health (401, 404, a local
    /// error): counts neither way, though a probe's answer closes.
    Neutral,
}

/// What one post or probe says for `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Nothing about GitLab (our own secret failed): readiness unchanged.
    Unchanged,
    /// GitLab answers.
    Answering,
    /// GitLab is failing; the reason, for `/readyz`'s body.
    Failing(String),
}

/// How a post ended on the wire, for the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wire {
    /// Answered: the `code` label of `gitlab_responses_total`.
    Answered(String),
    /// No answer: the `kind` label of `gitlab_transport_errors_total`.
    NoAnswer(&'static str),
}

/// One post to GitLab, classified once: every column its readers need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    /// What it means for the message.
    pub outcome: Outcome,
    /// What it means for the circuit breaker.
    pub verdict: Verdict,
    /// How long GitLab asked us to wait (`Retry-After` on 429 or 503).
    pub retry_after: Option<Duration>,
    /// What it means for readiness.
    pub readiness: Readiness,
    /// The metrics' view of the wire.
    pub wire: Wire,
}

impl Posting {
    /// The one reading of what a POST got (the table's GitLab column).
    /// Final are only a 2xx (GitLab queued the message) and GitLab's own
    /// 400 with its `{"success":false,…}` body (the message is over its
    /// job size limit, it will be next time too, and GitLab has already
    /// mailed the sender, so we take the message and Postfix sends no
    /// second notice). Everything else — a proxy's 400, any other 4xx or
    /// 5xx, no answer at all — says nothing final about the message and
    /// is retried.
    pub fn classify(posted: Posted) -> Posting {
        let temp = Outcome::Temporary;
        let (outcome, verdict, retry_after, wire) = match posted {
            Posted::Answer {
                status,
                retry_after,
                gitlab_refusal,
            } => {
                let (outcome, verdict) = match status {
                    200..=299 => (Outcome::Delivered, Verdict::Healthy),
                    400 if gitlab_refusal => (Outcome::RejectedByGitlab, Verdict::Healthy),
                    401 | 403 => (temp(Temporary::NotAuthorized(status)), Verdict::Neutral),
                    404 => (temp(Temporary::NotFound), Verdict::Neutral),
                    429 => (temp(Temporary::RateLimited), Verdict::Failing),
                    500..=599 => (temp(Temporary::Status(status)), Verdict::Failing),
                    _ => (temp(Temporary::Status(status)), Verdict::Neutral),
                };
                let retry_after = retry_after.filter(|_| matches!(status, 429 | 503));
                (
                    outcome,
                    verdict,
                    retry_after,
                    Wire::Answered(status.to_string()),
                )
            }
            Posted::Unreachable(e) => (
                temp(Temporary::Unreachable(e)),
                Verdict::Failing,
                None,
                Wire::NoAnswer("unreachable"),
            ),
            Posted::Lost(e) => (
                temp(Temporary::ConnectionLost(e)),
                Verdict::Failing,
                None,
                Wire::NoAnswer("lost"),
            ),
            Posted::Local(e) => (
                temp(Temporary::Local(e)),
                Verdict::Neutral,
                None,
                Wire::NoAnswer("local"),
            ),
        };
        let readiness = match (&wire, &outcome) {
            (Wire::NoAnswer("local"), _) => Readiness::Unchanged,
            (_, Outcome::Temporary(_)) => Readiness::Failing(failing(&outcome)),
            _ => Readiness::Answering,
        };
        Posting {
            outcome,
            verdict,
            retry_after,
            readiness,
            wire,
        }
    }
}

fn failing(outcome: &Outcome) -> String {
    format!("GitLab is failing: {}", outcome.reply().text)
}

#[cfg(test)]
mod tests;
