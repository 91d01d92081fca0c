//! The Prometheus metrics of `serve`: one registry (`prometheus-client`),
//! made by `serve` and handed to the observer and the `[http]` listener —
//! no process-wide state. Its labels come from the outcome record
//! (`outcome`), so the counters follow the one outcome table and nothing
//! else. Pipe mode has none: it has log lines only. No label carries a recipient, key or sender: the
//! label values are mailbox names, status words, reply classes, HTTP
//! status codes and fixed reason names, so the series count stays small.
//! Encoding is the library's (OpenMetrics); [`text`] turns it into the
//! older Prometheus text format for scrapers that ask for that.

use crate::mailbox::MailboxKind;
use crate::outcome::{Outcome, Posting, Wire, GUARD_DECISIONS};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub mod text;

/// Why a recipient was refused at `RCPT` (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No mailbox takes the address.
    UnknownAddress,
    /// A mailbox's address, but with a key no GitLab handler takes.
    InvalidKey,
    /// Over `max_recipients` in one transaction (`452 4.5.3`).
    Limit,
}

impl Refusal {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::UnknownAddress => "unknown_address",
            Refusal::InvalidKey => "invalid_key",
            Refusal::Limit => "limit",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    mailbox: &'static str,
    status: &'static str,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    mailbox: &'static str,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    mailbox: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MailboxLabels {
    mailbox: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// Request durations: GitLab usually answers in tens of milliseconds; the
/// top buckets show requests running into `timeout_secs`.
fn duration_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

/// The metric families; the registry holds clones (they share values).
pub struct Metrics {
    registry: Registry,
    deliveries: Family<DeliveryLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
    guard: Family<DecisionLabels, Counter>,
    responses: Family<ResponseLabels, Counter>,
    transport_errors: Family<ErrorLabels, Counter>,
    duration: Family<MailboxLabels, Histogram>,
    size: Histogram,
    same_post: Family<MailboxLabels, Counter>,
    connections_open: Gauge,
    connections: Counter,
    in_flight: Gauge,
    last_success: Family<MailboxLabels, Gauge<f64, AtomicU64>>,
}

impl Metrics {
    /// The registry, with the series every instance has at zero for
    /// `mailboxes`, so rates and alerts see the first event (a series born
    /// at 1 has no increase to show).
    pub fn new(mailboxes: &[MailboxKind]) -> Metrics {
        let m = Metrics::families();
        m.zero_series(mailboxes);
        m
    }

    fn families() -> Metrics {
        let mut registry = Registry::with_prefix("gitlab_mailgate");
        let m = Metrics {
            deliveries: Family::default(),
            refused: Family::default(),
            guard: Family::default(),
            responses: Family::default(),
            transport_errors: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            // 1 KiB to 64 MiB, by fours.
            size: Histogram::new(exponential_buckets(1024.0, 4.0, 9)),
            same_post: Family::default(),
            connections_open: Gauge::default(),
            connections: Counter::default(),
            in_flight: Gauge::default(),
            last_success: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "deliveries",
            "Recipients delivered, by mailbox, final status (sent, bounced, deferred) and class of the enhanced status code",
            m.deliveries.clone(),
        );
        r.register(
            "rcpt_refused",
            "Recipients refused at LMTP RCPT or by the recipient lookup, by reason",
            m.refused.clone(),
        );
        r.register(
            "guard_decisions",
            "Messages or recipients the guards decided on without asking GitLab, by decision (null_sender, auto_submitted, loop, no_slot, breaker_open)",
            m.guard.clone(),
        );
        r.register(
            "gitlab_responses",
            "Answers from GitLab's mail_room API, by mailbox and HTTP status",
            m.responses.clone(),
        );
        r.register(
            "gitlab_transport_errors",
            "Posts to GitLab without an answer, by mailbox and kind (unreachable: nothing sent; lost: broke during the request; local: secret or key unusable)",
            m.transport_errors.clone(),
        );
        r.register(
            "gitlab_request_duration_seconds",
            "Time of one post to GitLab, answered or not",
            m.duration.clone(),
        );
        r.register(
            "message_size_bytes",
            "Size of the messages handed to delivery",
            m.size.clone(),
        );
        r.register(
            "same_post",
            "Recipients not posted again because an earlier recipient's post of the same message carried the same GitLab key, by mailbox",
            m.same_post.clone(),
        );
        r.register(
            "lmtp_connections_open",
            "LMTP connections being served",
            m.connections_open.clone(),
        );
        r.register(
            "lmtp_connections",
            "LMTP connections served since start",
            m.connections.clone(),
        );
        r.register(
            "posts_in_flight",
            "Posts to GitLab waiting for an answer",
            m.in_flight.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "Unix time of the last post GitLab accepted, by mailbox",
            m.last_success.clone(),
        );
        r.register(
            "build",
            "The running version",
            Info::new(VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    fn zero_series(&self, mailboxes: &[MailboxKind]) {
        for mailbox in mailboxes {
            for (status, class) in [("sent", "2"), ("bounced", "5"), ("deferred", "4")] {
                let labels = DeliveryLabels {
                    mailbox: mailbox.name(),
                    status,
                    class,
                };
                let _ = self.deliveries.get_or_create(&labels);
            }
        }
        for reason in [Refusal::UnknownAddress, Refusal::InvalidKey, Refusal::Limit] {
            let _ = self.refused.get_or_create(&ReasonLabels {
                reason: reason.label(),
            });
        }
        for mailbox in mailboxes {
            let _ = self.same_post.get_or_create(&MailboxLabels {
                mailbox: mailbox.name(),
            });
        }
        for decision in GUARD_DECISIONS {
            let _ = self.guard.get_or_create(&DecisionLabels { decision });
        }
    }

    /// Counts a recipient refused at `RCPT`.
    pub fn refused(&self, why: Refusal) {
        let labels = ReasonLabels {
            reason: why.label(),
        };
        self.refused.get_or_create(&labels).inc();
    }

    /// Counts the final outcome of one recipient of a message, and the
    /// guard's decision when a guard took it.
    pub fn outcome(&self, mailbox: Option<MailboxKind>, outcome: &Outcome) {
        if let Some(decision) = outcome.guard_decision() {
            self.guard.get_or_create(&DecisionLabels { decision }).inc();
        }
        let Some(mailbox) = mailbox else {
            return;
        };
        let labels = DeliveryLabels {
            mailbox: mailbox.name(),
            status: outcome.status_word(),
            class: outcome.class_label(),
        };
        self.deliveries.get_or_create(&labels).inc();
    }

    /// Counts a recipient answered from an earlier recipient's post.
    pub fn same_post(&self, mailbox: MailboxKind) {
        let labels = MailboxLabels {
            mailbox: mailbox.name(),
        };
        self.same_post.get_or_create(&labels).inc();
    }

    /// Records the size of a message handed to delivery (once per message).
    pub fn message_size(&self, bytes: usize) {
        self.size.observe(bytes as f64);
    }

    /// Counts a post to GitLab as in flight until the result is dropped
    /// (even by a panic, so the gauge cannot drift).
    pub fn in_flight(&self) -> Dec {
        self.in_flight.inc();
        Dec(self.in_flight.clone())
    }

    /// Counts one post's answer (or its absence) and time.
    pub fn posted(&self, mailbox: MailboxKind, posting: &Posting, took: Duration) {
        let mailbox = mailbox.name();
        let labels = MailboxLabels { mailbox };
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        match &posting.wire {
            Wire::Answered(code) => {
                let code = code.clone();
                self.responses
                    .get_or_create(&ResponseLabels { mailbox, code })
                    .inc();
            }
            Wire::NoAnswer(kind) => {
                let kind = *kind;
                self.transport_errors
                    .get_or_create(&ErrorLabels { mailbox, kind })
                    .inc();
            }
        }
        if posting.outcome == Outcome::Delivered {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.last_success.get_or_create(&labels).set(now);
        }
    }

    /// Counts an LMTP connection as open until the result is dropped.
    pub fn connection(&self) -> Dec {
        self.connections.inc();
        self.connections_open.inc();
        Dec(self.connections_open.clone())
    }

    /// The exposition: OpenMetrics text when `openmetrics`, else the
    /// Prometheus text format 0.0.4.
    pub fn encode(&self, openmetrics: bool) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        if openmetrics {
            out
        } else {
            text::to_prometheus(&out)
        }
    }
}

/// Decrements a gauge when dropped.
pub struct Dec(Gauge);

impl Drop for Dec {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_alert_rules() {
        let m = Metrics::new(&[MailboxKind::Incoming]);
        let text = m.encode(false);
        for line in [
            "# TYPE gitlab_mailgate_deliveries_total counter",
            "gitlab_mailgate_deliveries_total{mailbox=\"incoming_email\",status=\"deferred\",class=\"4\"}",
            "gitlab_mailgate_rcpt_refused_total{reason=\"limit\"}",
            "# TYPE gitlab_mailgate_build_info gauge",
            "gitlab_mailgate_build_info{version=\"",
            "# TYPE gitlab_mailgate_message_size_bytes histogram",
            "# TYPE gitlab_mailgate_posts_in_flight gauge",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
        assert!(m.encode(true).ends_with("# EOF\n"));
    }
}
