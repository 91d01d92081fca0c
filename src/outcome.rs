//! What happened to one recipient, and the one table that turns it into an
//! LMTP reply, a `pipe(8)` exit status, DSN text and a log line.
//!
//! Principle: anything that is not a definitive answer from GitLab is
//! temporary, so Postfix keeps the message and retries. Only an unknown
//! recipient and a message too large bounce. The GitLab client only reports
//! what happened on the wire ([`Posted`]); [`Outcome::from_post`] decides
//! what that means. Nothing here does I/O: callers write the results.

use crate::gitlab::Posted;
use crate::mailbox::MailboxKind;
use crate::log::printable;
use crate::reply::*;
use std::time::Duration;

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
    /// GitLab answered 200: the message is queued in GitLab.
    Delivered,
    /// The recipient is no GitLab address, or its key fits no GitLab shape.
    UnknownRecipient,
    /// The message is larger than `max_message_size`.
    TooLarge,
    /// GitLab answered 400: the message is too large for its job queue.
    RejectedAsTooLarge,
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
            Outcome::RejectedAsTooLarge => Reply::new(
                EXCEEDED_STORAGE,
                E_TOO_BIG,
                "message too large for GitLab",
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
            Outcome::Delivered | Outcome::Discarded(_) => EX_OK,
            Outcome::UnknownRecipient => EX_NOUSER,
            Outcome::Temporary(_) => EX_TEMPFAIL,
            Outcome::TooLarge | Outcome::RejectedAsTooLarge => EX_UNAVAILABLE,
        }
    }

    /// Postfix's word for it in log lines: `sent`, `deferred` or `bounced`;
    /// ours for a message not posted on purpose: `discarded`.
    pub fn status_word(&self) -> &'static str {
        if let Outcome::Discarded(_) = self {
            return "discarded";
        }
        match self.exit_code() {
            EX_OK => "sent",
            EX_TEMPFAIL => "deferred",
            _ => "bounced",
        }
    }

    /// The DSN line `pipe(8)` reads from our first output (`4.4.1 text`,
    /// no newline); `None` for exit status 0, which has nothing to explain.
    pub fn dsn(&self) -> Option<String> {
        (self.exit_code() != EX_OK).then(|| {
            let reply = self.reply();
            format!("{} {}", reply.status().unwrap_or_default(), reply.text)
        })
    }

    /// Maps what happened to a POST to GitLab (the table's GitLab column):
    /// only a 2xx delivers and only a 400 bounces; everything else is
    /// retried, since it says nothing final about the message.
    pub fn from_post(posted: Posted) -> Outcome {
        let temp = Outcome::Temporary;
        match posted {
            Posted::Status(200..=299) => Outcome::Delivered,
            Posted::Status(400) => Outcome::RejectedAsTooLarge,
            Posted::Status(s @ (401 | 403)) => temp(Temporary::NotAuthorized(s)),
            Posted::Status(404) => temp(Temporary::NotFound),
            Posted::Status(429) | Posted::Throttled { status: 429, .. } => {
                temp(Temporary::RateLimited)
            }
            Posted::Throttled { status, .. } => temp(Temporary::Status(status)),
            Posted::Status(s) => temp(Temporary::Status(s)),
            Posted::Unreachable(e) => temp(Temporary::Unreachable(e)),
            Posted::Lost(e) => temp(Temporary::ConnectionLost(e)),
            Posted::Local(e) => temp(Temporary::Local(e)),
        }
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

/// What the log line of a message handed to GitLab says besides the
/// recipient and the outcome.
#[derive(Debug, Clone, Copy)]
pub struct Handed<'a> {
    /// Postfix's queue id from the message's `Received:` header, if any.
    pub queue_id: Option<&'a str>,
    /// The mailbox it was posted to.
    pub mailbox: MailboxKind,
    /// The key GitLab will find in the posted message, if any.
    pub key: Option<&'a str>,
    /// The message size in bytes, as received.
    pub size: usize,
    /// Time from receiving the message to GitLab's answer.
    pub delay: Duration,
    /// The `Message-ID:`, if any.
    pub message_id: Option<&'a str>,
}

/// The one log line per recipient, in Postfix's `name=value` style. Without
/// `handed` (refused at `RCPT`, oversize, deadline) it is the short
/// `to=<…>, status=deferred (451 4.4.7 …)`; with it, the delivery line
/// `{queue_id}: to=<…>, mailbox=…, key=…, status=… (…), size=…, delay=…ms,
/// message-id=<…>`. Text from the network is made [`printable`] here.
pub fn log_line(recipient: &str, outcome: &Outcome, handed: Option<&Handed>) -> String {
    let to = printable(recipient);
    let status = match outcome {
        Outcome::Discarded(why) => format!("status=discarded ({})", why.reason()),
        _ => format!("status={} ({})", outcome.status_word(), outcome.reply()),
    };
    let Some(h) = handed else {
        return format!("to=<{to}>, {status}");
    };
    format!(
        "{}: to=<{to}>, mailbox={}, key={}, {status}, size={}, delay={}ms, message-id=<{}>",
        h.queue_id.unwrap_or("-"),
        h.mailbox.name(),
        h.key.map_or_else(|| "-".to_string(), printable),
        h.size,
        h.delay.as_millis(),
        h.message_id.map(printable).unwrap_or_default(),
    )
}

/// The one line per message, before its recipients' lines, as Postfix
/// writes for a queue file: `from=<sender>, size=…, nrcpt=…`.
pub fn message_line(sender: &str, size: usize, recipients: usize) -> String {
    format!(
        "from=<{}>, size={size}, nrcpt={recipients}",
        printable(sender)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(o: &Outcome) -> (u16, String, u8, &'static str) {
        let r = o.reply();
        (
            r.code,
            r.status().unwrap_or_default(),
            o.exit_code(),
            o.status_word(),
        )
    }

    fn from_gitlab_status(status: u16) -> Outcome {
        Outcome::from_post(Posted::Status(status))
    }

    #[test]
    fn the_outcome_table() {
        let t = |s| Outcome::Temporary(s);
        let cases = [
            (
                Outcome::from_post(Posted::Unreachable("refused".into())),
                (451, "4.4.1", 75, "deferred"),
            ),
            (
                Outcome::from_post(Posted::Lost("timeout".into())),
                (451, "4.4.2", 75, "deferred"),
            ),
            (
                Outcome::from_post(Posted::Local("unreadable".into())),
                (451, "4.3.5", 75, "deferred"),
            ),
            (t(Temporary::BadCommandLine), (451, "4.3.5", 75, "deferred")),
            (from_gitlab_status(200), (250, "2.0.0", 0, "sent")),
            (from_gitlab_status(400), (552, "5.3.4", 69, "bounced")),
            (from_gitlab_status(401), (451, "4.7.0", 75, "deferred")),
            (from_gitlab_status(403), (451, "4.7.0", 75, "deferred")),
            (from_gitlab_status(404), (451, "4.3.5", 75, "deferred")),
            (from_gitlab_status(500), (451, "4.3.0", 75, "deferred")),
            (from_gitlab_status(502), (451, "4.3.0", 75, "deferred")),
            (from_gitlab_status(302), (451, "4.3.0", 75, "deferred")),
            (
                t(Temporary::Unreachable("refused".into())),
                (451, "4.4.1", 75, "deferred"),
            ),
            (
                t(Temporary::ConnectionLost("timeout".into())),
                (451, "4.4.2", 75, "deferred"),
            ),
            (
                t(Temporary::Local("x".into())),
                (451, "4.3.5", 75, "deferred"),
            ),
            (t(Temporary::Deadline), (451, "4.4.7", 75, "deferred")),
            (Outcome::UnknownRecipient, (550, "5.1.1", 67, "bounced")),
            (Outcome::TooLarge, (552, "5.3.4", 69, "bounced")),
            // Issue 13's rows: the guards and GitLab's rate limit.
            (from_gitlab_status(429), (451, "4.4.5", 75, "deferred")),
            (
                Outcome::from_post(Posted::Throttled {
                    status: 429,
                    retry_after: Some(Duration::from_secs(9)),
                }),
                (451, "4.4.5", 75, "deferred"),
            ),
            (
                Outcome::from_post(Posted::Throttled {
                    status: 503,
                    retry_after: None,
                }),
                (451, "4.3.0", 75, "deferred"),
            ),
            (t(Temporary::Loop), (451, "4.7.1", 75, "deferred")),
            (t(Temporary::NoSlot), (451, "4.3.2", 75, "deferred")),
            (t(Temporary::BreakerOpen(5)), (451, "4.3.0", 75, "deferred")),
            (
                Outcome::Discarded(Discard::NullSender),
                (550, "5.7.1", 0, "discarded"),
            ),
            (
                Outcome::Discarded(Discard::AutoSubmitted),
                (250, "2.0.0", 0, "discarded"),
            ),
        ];
        for (outcome, (code, enhanced, exit, word)) in cases {
            assert_eq!(
                row(&outcome),
                (code, enhanced.to_string(), exit, word),
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn reply_class_agrees_with_exit_class() {
        for o in [
            Outcome::Delivered,
            Outcome::UnknownRecipient,
            Outcome::TooLarge,
            Outcome::Temporary(Temporary::NotFound),
        ] {
            assert_eq!(o.reply().code / 100 == 4, o.exit_code() == EX_TEMPFAIL);
        }
    }

    #[test]
    fn dsn_is_enhanced_code_and_text() {
        assert_eq!(Outcome::Delivered.dsn(), None);
        assert_eq!(
            Outcome::Temporary(Temporary::BadCommandLine).dsn().unwrap(),
            "4.3.5 gitlab-mailgate: bad command line (see master.cf)"
        );
        assert_eq!(
            Outcome::UnknownRecipient.dsn().unwrap(),
            "5.1.1 no such GitLab address"
        );
    }

    #[test]
    fn log_lines_short_and_full() {
        let o = Outcome::Temporary(Temporary::Deadline);
        assert_eq!(
            log_line("a\nb@x", &o, None),
            "to=<a\\nb@x>, status=deferred (451 4.4.7 delivery deadline passed)"
        );
        let h = Handed {
            queue_id: None,
            mailbox: MailboxKind::ServiceDesk,
            key: Some("k\r"),
            size: 12,
            delay: Duration::from_millis(7),
            message_id: Some("id@x"),
        };
        assert_eq!(
            log_line("r@x", &Outcome::Delivered, Some(&h)),
            "-: to=<r@x>, mailbox=service_desk_email, key=k\\r, status=sent (250 2.0.0 delivered to GitLab), \
             size=12, delay=7ms, message-id=<id@x>"
        );
    }

    #[test]
    fn discarded_messages_have_no_dsn_and_say_why_in_the_log() {
        let auto = Outcome::Discarded(Discard::AutoSubmitted);
        assert_eq!(auto.dsn(), None);
        assert_eq!(Outcome::Discarded(Discard::NullSender).dsn(), None);
        assert_eq!(
            log_line("r@x", &auto, None),
            "to=<r@x>, status=discarded (auto-submitted)"
        );
        let t = |s| Outcome::Temporary(s).reply().text.into_owned();
        for text in [
            t(Temporary::Loop),
            t(Temporary::NoSlot),
            t(Temporary::BreakerOpen(3)),
        ] {
            assert!(text.contains("not posted to GitLab"), "{text}");
        }
    }

    #[test]
    fn combine_prefers_temporary_then_permanent() {
        let temp = Outcome::Temporary(super::Temporary::Status(500));
        use Outcome::*;
        assert_eq!(
            Outcome::combine(&[Delivered, UnknownRecipient, temp.clone()]),
            temp
        );
        assert_eq!(Outcome::combine(&[Delivered, TooLarge]), TooLarge);
        assert_eq!(Outcome::combine(&[Delivered, Delivered]), Delivered);
        let discarded = Discarded(Discard::NullSender);
        assert_eq!(Outcome::combine(&[discarded.clone(), Delivered]), Delivered);
        assert_eq!(
            Outcome::combine(std::slice::from_ref(&discarded)),
            discarded
        );
        assert_eq!(
            Outcome::combine(&[discarded, UnknownRecipient]),
            UnknownRecipient
        );
    }
}
