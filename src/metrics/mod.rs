//! The Prometheus metrics of `serve`: one process-wide registry
//! (`prometheus-client`) and the hooks the delivery code calls, one line
//! each, so the counters follow the one outcome table and nothing else.
//!
//! Pipe mode calls the same hooks; its values die with the process (it
//! has log lines only). No label carries a recipient, key or sender: the
//! label values are mailbox names, status words, reply classes, HTTP
//! status codes and fixed reason names, so the series count stays small.
//! Encoding is the library's (OpenMetrics); [`text`] turns it into the
//! older Prometheus text format for scrapers that ask for that.

use crate::gitlab::Posted;
use crate::mailbox::MailboxKind;
use crate::outcome::Outcome;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

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
struct Metrics {
    registry: Registry,
    deliveries: Family<DeliveryLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
    guard: Family<DecisionLabels, Counter>,
    responses: Family<ResponseLabels, Counter>,
    transport_errors: Family<ErrorLabels, Counter>,
    duration: Family<MailboxLabels, Histogram>,
    size: Histogram,
    connections_open: Gauge,
    connections: Counter,
    in_flight: Gauge,
    last_success: Family<MailboxLabels, Gauge<f64, AtomicU64>>,
}

impl Metrics {
    fn new() -> Metrics {
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
            "Recipients refused at RCPT, by reason",
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

fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Creates the series every instance has at zero, so rates and alerts see
/// the first event (a series born at 1 has no increase to show).
pub fn init(mailboxes: &[MailboxKind]) {
    let m = get();
    for mailbox in mailboxes {
        for (status, class) in [("sent", "2"), ("bounced", "5"), ("deferred", "4")] {
            let labels = DeliveryLabels {
                mailbox: mailbox.name(),
                status,
                class,
            };
            let _ = m.deliveries.get_or_create(&labels);
        }
    }
    for reason in [Refusal::UnknownAddress, Refusal::InvalidKey, Refusal::Limit] {
        let _ = m.refused.get_or_create(&ReasonLabels {
            reason: reason.label(),
        });
    }
    for decision in crate::guard::Decision::ALL {
        let _ = m.guard.get_or_create(&DecisionLabels {
            decision: decision.name(),
        });
    }
}

/// Counts a decision of the guards (see `guard::decided`).
pub fn guarded(decision: &'static str) {
    get()
        .guard
        .get_or_create(&DecisionLabels { decision })
        .inc();
}

/// Counts a recipient refused at `RCPT`.
pub fn refused(why: Refusal) {
    get()
        .refused
        .get_or_create(&ReasonLabels {
            reason: why.label(),
        })
        .inc();
}

/// Counts the final outcome of one recipient of a message.
pub fn delivered(mailbox: MailboxKind, outcome: &Outcome) {
    let class = match outcome.reply().code / 100 {
        2 => "2",
        4 => "4",
        _ => "5",
    };
    let labels = DeliveryLabels {
        mailbox: mailbox.name(),
        status: outcome.status_word(),
        class,
    };
    get().deliveries.get_or_create(&labels).inc();
}

/// Records the size of a message handed to delivery (once per message).
pub fn message_size(bytes: usize) {
    get().size.observe(bytes as f64);
}

/// Runs `post` (one POST to GitLab for `mailbox`) counted as in flight,
/// timed, and its answer counted; tells readiness what GitLab said.
pub fn post(mailbox: MailboxKind, post: impl FnOnce() -> Posted) -> Posted {
    let m = get();
    let labels = MailboxLabels {
        mailbox: mailbox.name(),
    };
    m.in_flight.inc();
    // Decremented even if `post` panics, so the gauge cannot drift.
    let _in_flight = Dec(&m.in_flight);
    let start = Instant::now();
    let posted = post();
    m.duration
        .get_or_create(&labels)
        .observe(start.elapsed().as_secs_f64());
    let kind = match &posted {
        Posted::Status(code) | Posted::Throttled { status: code, .. } => {
            let labels = ResponseLabels {
                mailbox: labels.mailbox,
                code: code.to_string(),
            };
            m.responses.get_or_create(&labels).inc();
            None
        }
        Posted::Unreachable(_) => Some("unreachable"),
        Posted::Lost(_) => Some("lost"),
        Posted::Local(_) => Some("local"),
    };
    if let Some(kind) = kind {
        let labels = ErrorLabels {
            mailbox: labels.mailbox,
            kind,
        };
        m.transport_errors.get_or_create(&labels).inc();
    }
    if Outcome::from_post(posted.clone()) == Outcome::Delivered {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        m.last_success.get_or_create(&labels).set(now);
    }
    crate::health::gitlab_answered(&posted);
    posted
}

/// Counts an LMTP connection as open until the result is dropped (even
/// by a panic).
pub fn connection() -> Dec {
    let m = get();
    m.connections.inc();
    m.connections_open.inc();
    Dec(&m.connections_open)
}

/// Decrements a gauge when dropped.
pub struct Dec(&'static Gauge);

impl Drop for Dec {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The exposition: OpenMetrics text when `openmetrics`, else the
/// Prometheus text format 0.0.4.
pub fn encode(openmetrics: bool) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &get().registry);
    if openmetrics {
        out
    } else {
        text::to_prometheus(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_alert_rules() {
        init(&[MailboxKind::Incoming]);
        let text = encode(false);
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
        assert!(encode(true).ends_with("# EOF\n"));
    }
}
