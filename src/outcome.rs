//! What happened to one recipient, and the one table that turns it into an
//! LMTP reply, a `pipe(8)` exit status and a log status.
//!
//! Principle: anything that is not a definitive answer from GitLab is
//! temporary, so Postfix keeps the message and retries. Only an unknown
//! recipient and a message too large bounce.

use crate::reply::*;

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
                Temporary::Unreachable(e) => Reply {
                    enhanced: E_NO_ANSWER,
                    ..temp.with_text(format!("cannot reach GitLab: {e}"))
                },
                Temporary::ConnectionLost(e) => Reply {
                    enhanced: E_BAD_CONNECTION,
                    ..temp.with_text(format!("connection to GitLab lost: {e}"))
                },
                Temporary::NotAuthorized(s) => Reply {
                    enhanced: E_SECURITY,
                    ..temp.with_text(format!(
                        "GitLab refused our token ({s}): check secret_file and that the mailbox is enabled in GitLab"
                    ))
                },
                Temporary::NotFound => Reply {
                    enhanced: E_MISCONFIGURED,
                    ..temp.with_text("GitLab answered 404: check [gitlab] url, or GitLab is too old for this API")
                },
                Temporary::Status(s) => temp.with_text(format!("GitLab answered {s}")),
                Temporary::Local(e) => Reply {
                    enhanced: E_MISCONFIGURED,
                    ..temp.with_text(format!("local error: {e}"))
                },
                Temporary::Deadline => Reply {
                    enhanced: E_EXPIRED,
                    ..temp.with_text("delivery deadline passed")
                },
            },
        }
    }

    /// The `pipe(8)` exit status: 0, 75 (defer), 67 (unknown user) or 69.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Delivered => EX_OK,
            Outcome::UnknownRecipient => EX_NOUSER,
            Outcome::Temporary(_) => EX_TEMPFAIL,
            Outcome::TooLarge | Outcome::RejectedAsTooLarge => EX_UNAVAILABLE,
        }
    }

    /// Postfix's word for it in log lines: `sent`, `deferred` or `bounced`.
    pub fn status_word(&self) -> &'static str {
        match self.exit_code() {
            EX_OK => "sent",
            EX_TEMPFAIL => "deferred",
            _ => "bounced",
        }
    }

    /// The one outcome that stands for several recipients in a single
    /// exit status: any temporary failure first (so nothing is lost), then
    /// any permanent one, else success.
    pub fn combine(outcomes: &[Outcome]) -> Outcome {
        let first = |f: fn(&Outcome) -> bool| outcomes.iter().find(|o| f(o)).cloned();
        first(|o| matches!(o, Outcome::Temporary(_)))
            .or_else(|| first(|o| *o != Outcome::Delivered))
            .unwrap_or(Outcome::Delivered)
    }
}

/// Maps a GitLab HTTP status to an outcome (the table's GitLab column).
pub fn from_gitlab_status(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        400 => Outcome::RejectedAsTooLarge,
        401 | 403 => Outcome::Temporary(Temporary::NotAuthorized(status)),
        404 => Outcome::Temporary(Temporary::NotFound),
        s => Outcome::Temporary(Temporary::Status(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(o: &Outcome) -> (u16, String, u8, &'static str) {
        let r = o.reply();
        (
            r.code,
            r.enhanced.to_string(),
            o.exit_code(),
            o.status_word(),
        )
    }

    #[test]
    fn the_outcome_table() {
        let t = |s| Outcome::Temporary(s);
        let cases = [
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
            assert_eq!(o.reply().is_temporary(), o.exit_code() == EX_TEMPFAIL);
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
    }
}
