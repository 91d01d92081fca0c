//! What the delivery core reports, and the one place that turns each
//! report into its log line, its metrics and what readiness learns.
//!
//! The core owns an [`Observer`] and tells it about every recipient once
//! (refused at `RCPT`, too large, or an [`Attempt`] at delivery), about
//! every message and connection. Both front doors go through it, so a
//! recipient's log line is written by one function ([`recipient_line`]),
//! in Postfix's `name=value` style. Pipe mode has a log only; `serve` adds
//! the metrics registry and the health it shares with the `[http]`
//! listener.

use crate::guard::Change;
use crate::health::Health;
use crate::log::{printable, Log};
use crate::mailbox::MailboxKind;
use crate::metrics::{Dec, Metrics, Refusal};
use crate::outcome::{Outcome, Posting};
use std::sync::Arc;
use std::time::Duration;

/// Where reports go.
#[derive(Clone, Default)]
pub struct Observer {
    log: Log,
    metrics: Option<Arc<Metrics>>,
    health: Option<Arc<Health>>,
}

/// One recipient of a message handed to delivery, and what became of it.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The envelope recipient, as given.
    pub recipient: &'a str,
    /// What became of it.
    pub outcome: &'a Outcome,
    /// Postfix's queue id from the message's `Received:` header, if any.
    pub queue_id: Option<&'a str>,
    /// The mailbox it was for.
    pub mailbox: MailboxKind,
    /// The key GitLab will find in the posted message, if any.
    pub key: Option<&'a str>,
    /// The message size in bytes, as received.
    pub size: usize,
    /// Time from receiving the message to the outcome.
    pub delay: Duration,
    /// The `Message-ID:`, if any.
    pub message_id: Option<&'a str>,
    /// The post that decided it and how long it took; `None`: decided
    /// without asking GitLab, or by another recipient's post.
    pub post: Option<(&'a Posting, Duration)>,
    /// The earlier recipient of the same message whose post carried the
    /// same key to GitLab, when this one was not posted again.
    pub same_post_as: Option<&'a str>,
}

/// How big a refused message was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// As announced by `MAIL FROM … SIZE=`.
    Announced(usize),
    /// More than this limit (the message was read only that far).
    Over(usize),
}

/// What a recipient's line says besides the recipient and its outcome.
enum Detail<'a> {
    /// Nothing: refused at `RCPT`, or deferred before delivery.
    None,
    /// The message was too large: its sender and size.
    TooLarge(&'a str, Size),
    /// Handed to delivery.
    Attempt(&'a Attempt<'a>),
}

impl Observer {
    /// Reports to `log` only (pipe mode).
    pub fn new(log: Log) -> Observer {
        Observer {
            log,
            ..Observer::default()
        }
    }

    /// Also counts in `metrics` and tells `health` what GitLab says.
    pub fn with(self, metrics: Arc<Metrics>, health: Arc<Health>) -> Observer {
        Observer {
            metrics: Some(metrics),
            health: Some(health),
            ..self
        }
    }

    /// A message taken for delivery: `QUEUEID: from=<sender>, size=…,
    /// nrcpt=…` (`queue_id`: Postfix's, when it sent one).
    pub fn message(&self, queue_id: Option<&str>, sender: &str, size: usize, recipients: usize) {
        self.log.info(&tagged(
            queue_id,
            format!(
                "from=<{}>, size={size}, nrcpt={recipients}",
                printable(sender)
            ),
        ));
        if let Some(m) = &self.metrics {
            m.message_size(size);
        }
    }

    /// A recipient refused at `RCPT` (`reason`: why, for the metrics; a
    /// guard's refusal has none).
    pub fn refused(
        &self,
        queue_id: Option<&str>,
        recipient: &str,
        outcome: &Outcome,
        reason: Option<Refusal>,
    ) {
        let line = recipient_line(recipient, outcome, Detail::None);
        self.log.info(&tagged(queue_id, line));
        if let Some(m) = &self.metrics {
            reason.into_iter().for_each(|r| m.refused(r));
            m.outcome(None, outcome);
        }
    }

    /// An address the recipient lookup answered `NOTFOUND`: smtpd refuses
    /// it during SMTP, so the line says that, not `status=bounced`.
    pub fn not_found(&self, recipient: &str, why: Refusal) {
        self.log.info(&format!(
            "lookup: to=<{}>, NOTFOUND ({}): Postfix refuses it during SMTP",
            printable(recipient),
            Outcome::UnknownRecipient.reply()
        ));
        if let Some(m) = &self.metrics {
            m.refused(why);
        }
    }

    /// A recipient over `max_recipients` (`452 4.5.3`): counted only.
    pub fn recipient_limit(&self) {
        if let Some(m) = &self.metrics {
            m.refused(Refusal::Limit);
        }
    }

    /// A message too large: at `MAIL FROM … SIZE=` (no recipient yet),
    /// after the message, or in pipe mode; one form for all three.
    pub fn too_large(
        &self,
        queue_id: Option<&str>,
        sender: &str,
        recipient: Option<(&str, MailboxKind)>,
        size: Size,
    ) {
        let outcome = Outcome::TooLarge;
        let detail = Detail::TooLarge(sender, size);
        let line = match recipient {
            Some((to, _)) => recipient_line(to, &outcome, detail),
            None => sender_line(&outcome, detail),
        };
        self.log.info(&tagged(queue_id, line));
        if let (Some(m), Some((_, mailbox))) = (&self.metrics, recipient) {
            m.outcome(Some(mailbox), &outcome);
        }
    }

    /// A message the front door could not keep (`why`); each of its
    /// recipients is then [`deferred`](Self::deferred).
    pub fn not_kept(&self, queue_id: Option<&str>, why: &str) {
        let line = format!("cannot keep the message: {why}");
        self.log.error(&tagged(queue_id, line));
    }

    /// A recipient deferred before its message was handed over (pipe
    /// mode's deadline, a message that could not be kept).
    pub fn deferred(&self, queue_id: Option<&str>, recipient: &str, outcome: &Outcome) {
        let line = recipient_line(recipient, outcome, Detail::None);
        self.log.warn(&tagged(queue_id, line));
    }

    /// A post to GitLab is starting: counted in flight until dropped.
    pub fn posting(&self) -> Option<Dec> {
        self.metrics.as_ref().map(|m| m.in_flight())
    }

    /// One recipient of a message handed to delivery: its line, its
    /// counters, and what its post said about GitLab.
    pub fn attempt(&self, attempt: &Attempt) {
        self.log.info(&recipient_line(
            attempt.recipient,
            attempt.outcome,
            Detail::Attempt(attempt),
        ));
        if let Some(m) = &self.metrics {
            if let Some((posting, took)) = attempt.post {
                m.posted(attempt.mailbox, posting, took);
            }
            m.outcome(Some(attempt.mailbox), attempt.outcome);
            if attempt.same_post_as.is_some() {
                m.same_post(attempt.mailbox);
            }
        }
        if let (Some(h), Some((posting, _))) = (&self.health, attempt.post) {
            h.gitlab_said(&posting.readiness);
        }
    }

    /// The circuit breaker lets one probe through after its cool-down.
    pub fn breaker_probe(&self) {
        self.log
            .info("GitLab circuit breaker half-open: one probe goes through");
    }

    /// The circuit breaker changed state (`retry_after`: GitLab asked).
    pub fn breaker(&self, change: Change, retry_after: bool) {
        match change {
            Change::Opened(d) => self.log.warn(&format!(
                "GitLab circuit breaker open: not posting for {} s ({}), answering 451 4.3.0 without asking GitLab",
                d.as_secs() + u64::from(d.subsec_nanos() > 0),
                if retry_after { "GitLab's Retry-After" } else { "temporary failures in a row" }
            )),
            Change::Closed => self.log.info("GitLab circuit breaker closed: GitLab answers again"),
        }
    }

    /// Counts an LMTP connection as open until dropped.
    pub fn connection(&self) -> Option<Dec> {
        self.metrics.as_ref().map(|m| m.connection())
    }
}

/// `line` led by Postfix's queue id, as Postfix's own lines are, so that
/// `grep QUEUEID` finds every line of a message in both logs; as it is
/// without one.
fn tagged(queue_id: Option<&str>, line: String) -> String {
    match queue_id {
        Some(id) => format!("{}: {line}", printable(id)),
        None => line,
    }
}

/// The status part of a line: `status=sent (250 2.0.0 …)`, or for a
/// message not posted on purpose `status=discarded (why)`.
fn status(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Discarded(why) => format!("status=discarded ({})", why.reason()),
        Outcome::RejectedByGitlab => {
            "status=rejected by GitLab (too large; GitLab notified the sender)".into()
        }
        _ => format!("status={} ({})", outcome.status_word(), outcome.reply()),
    }
}

fn size(size: Size) -> String {
    match size {
        Size::Announced(n) => format!("size={n}"),
        Size::Over(limit) => format!("size>{limit}"),
    }
}

/// The one log line per recipient. Short: `to=<…>, status=deferred (451
/// 4.4.7 …)`; too large: `from=<…>, to=<…>, status=bounced (552 5.3.4 …),
/// size>N`; delivered: `{queue_id}: to=<…>, mailbox=…, key=…, status=… (…),
/// size=…, delay=…ms, message-id=<…>`. Text from the network is made
/// [`printable`] here.
fn recipient_line(recipient: &str, outcome: &Outcome, detail: Detail) -> String {
    let to = printable(recipient);
    let status = status(outcome);
    match detail {
        Detail::None => format!("to=<{to}>, {status}"),
        Detail::TooLarge(sender, n) => format!(
            "from=<{}>, to=<{to}>, {status}, {}",
            printable(sender),
            size(n)
        ),
        Detail::Attempt(a) => {
            let mut line = format!(
                "{}: to=<{to}>, mailbox={}, key={}, {status}, size={}, delay={}ms, message-id=<{}>",
                a.queue_id.unwrap_or("-"),
                a.mailbox.name(),
                a.key.map_or_else(|| "-".to_string(), printable),
                a.size,
                a.delay.as_millis(),
                a.message_id.map(printable).unwrap_or_default(),
            );
            if let Some(first) = a.same_post_as {
                line.push_str(&format!(
                    ", posted once for this key, with to=<{}>",
                    printable(first)
                ));
            }
            line
        }
    }
}

/// A message refused before it had recipients (at `MAIL`): the too-large
/// form without `to=`.
fn sender_line(outcome: &Outcome, detail: Detail) -> String {
    match detail {
        Detail::TooLarge(sender, n) => format!(
            "from=<{}>, {}, {}",
            printable(sender),
            status(outcome),
            size(n)
        ),
        _ => status(outcome),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Discard, Temporary};

    #[test]
    fn recipient_lines_short_too_large_and_full() {
        let o = Outcome::Temporary(Temporary::Deadline);
        assert_eq!(
            recipient_line("a\nb@x", &o, Detail::None),
            "to=<a\\nb@x>, status=deferred (451 4.4.7 delivery deadline passed)"
        );
        assert_eq!(
            recipient_line(
                "r@x",
                &Outcome::TooLarge,
                Detail::TooLarge("s@x", Size::Over(10))
            ),
            "from=<s@x>, to=<r@x>, status=bounced (552 5.3.4 message too large), size>10"
        );
        assert_eq!(
            sender_line(
                &Outcome::TooLarge,
                Detail::TooLarge("s@x", Size::Announced(99))
            ),
            "from=<s@x>, status=bounced (552 5.3.4 message too large), size=99"
        );
        let a = Attempt {
            recipient: "r@x",
            outcome: &Outcome::Delivered,
            queue_id: None,
            mailbox: MailboxKind::ServiceDesk,
            key: Some("k\r"),
            size: 12,
            delay: Duration::from_millis(7),
            message_id: Some("id@x"),
            post: None,
            same_post_as: None,
        };
        assert_eq!(
            recipient_line("r@x", &Outcome::Delivered, Detail::Attempt(&a)),
            "-: to=<r@x>, mailbox=service_desk_email, key=k\\r, status=sent (250 2.0.0 delivered to GitLab), \
             size=12, delay=7ms, message-id=<id@x>"
        );
        let copy = Attempt {
            same_post_as: Some("first@x"),
            ..a
        };
        assert!(
            recipient_line("r@x", &Outcome::Delivered, Detail::Attempt(&copy))
                .ends_with("message-id=<id@x>, posted once for this key, with to=<first@x>")
        );
    }

    #[test]
    fn lines_of_a_transaction_start_with_its_queue_id() {
        let o = Outcome::UnknownRecipient;
        let line = recipient_line("r@x", &o, Detail::None);
        assert_eq!(
            tagged(Some("4Fq1Lz2nYHz9sVh"), line.clone()),
            format!("4Fq1Lz2nYHz9sVh: {line}")
        );
        assert_eq!(tagged(None, line.clone()), line);
        assert_eq!(tagged(Some("a\nb"), "x".into()), "a\\nb: x");
    }

    #[test]
    fn discarded_lines_say_why() {
        let auto = Outcome::Discarded(Discard::AutoSubmitted);
        assert_eq!(
            recipient_line("r@x", &auto, Detail::None),
            "to=<r@x>, status=discarded (auto-submitted)"
        );
    }
}
