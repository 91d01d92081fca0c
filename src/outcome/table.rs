//! The outcome table as users read it (README.md, gitlab-mailgate(8)),
//! made from the [`Outcome`] rows themselves so the documents cannot
//! drift: a test holds README.md's copy to [`markdown_table`], and the man
//! page generator prints [`rows`].

use super::{Outcome, Posting, Temporary, EX_OK};
use crate::gitlab::Posted;
use crate::outcome::Discard;

/// One row: a situation and the outcome it ends in.
pub struct Row {
    /// What GitLab answered, or what happened here.
    pub situation: &'static str,
    /// The outcome, as the code decides it.
    pub outcome: Outcome,
    /// When the LMTP reply is given, if not after the message.
    pub when: &'static str,
    /// Only pipe mode has this outcome.
    pub pipe_only: bool,
}

impl Row {
    /// The LMTP reply column: `451 4.4.1`, with when it is given.
    pub fn lmtp(&self) -> String {
        if self.pipe_only {
            return "—".into();
        }
        let reply = self.outcome.reply();
        let code = format!("{} {}", reply.code, reply.status().unwrap_or_default());
        match self.when {
            "" => code,
            when => format!("{code} ({when})"),
        }
    }

    /// The pipe column: the exit status, and the DSN line's status code.
    pub fn pipe(&self) -> String {
        let exit = self.outcome.exit_code();
        if let word @ ("discarded" | "rejected") = self.outcome.status_word() {
            return format!("{exit}, `status={word}`");
        }
        match self.outcome.reply().status() {
            Some(status) if exit != EX_OK => format!("{exit} + `{status} …`"),
            _ => exit.to_string(),
        }
    }

    /// What Postfix does with it.
    pub fn postfix(&self) -> &'static str {
        match (&self.outcome, self.outcome.status_word()) {
            (Outcome::Discarded(Discard::NullSender), _) => "drops the bounce of a bounce",
            (Outcome::RejectedByGitlab, _) => "sent (GitLab has notified the sender)",
            (_, "discarded") => "sent (discarded)",
            (_, "sent") => "sent",
            (_, "deferred") => "defer, retry",
            _ => "bounce",
        }
    }
}

fn answer(status: u16) -> Outcome {
    Posting::classify(Posted::Answer {
        status,
        retry_after: None,
        gitlab_refusal: false,
    })
    .outcome
}

fn row(situation: &'static str, outcome: Outcome, when: &'static str) -> Row {
    Row {
        situation,
        outcome,
        when,
        pipe_only: false,
    }
}

/// Every row, in the order the documents show them.
pub fn rows() -> Vec<Row> {
    let t = Outcome::Temporary;
    let wire = |p: Posted| Posting::classify(p).outcome;
    vec![
        row("200", answer(200), ""),
        row(
            "GitLab's own 400 `{\"success\":false,…}` (too large for its job queue; GitLab mails the sender)",
            wire(Posted::Answer {
                status: 400,
                retry_after: None,
                gitlab_refusal: true,
            }),
            "",
        ),
        row(
            "message over `max_message_size`",
            Outcome::TooLarge,
            "at `MAIL FROM … SIZE=` when announced",
        ),
        row(
            "unknown recipient / invalid key",
            Outcome::UnknownRecipient,
            "at `RCPT`",
        ),
        row("401 / 403", answer(401), ""),
        row("404", answer(404), ""),
        row("5xx, any other status (a proxy's 400 too)", answer(500), ""),
        row(
            "connection refused, DNS, TLS",
            wire(Posted::Unreachable(String::new())),
            "",
        ),
        row("timeout, reset", wire(Posted::Lost(String::new())), ""),
        row(
            "secret or signing key unreadable, bad config, internal error",
            wire(Posted::Local(String::new())),
            "",
        ),
        Row {
            pipe_only: true,
            ..row("pipe-mode deadline passed", t(Temporary::Deadline), "")
        },
        row("429 (GitLab rate limiting)", answer(429), ""),
        row(
            "null sender (`MAIL FROM:<>`), not posted",
            Outcome::Discarded(Discard::NullSender),
            "at `RCPT`",
        ),
        row(
            "`Auto-Submitted` not `no` / `X-Autoreply: yes`, not posted",
            Outcome::Discarded(Discard::AutoSubmitted),
            "",
        ),
        row(
            "loop breaker: too many from this sender to this key, not posted",
            t(Temporary::Loop),
            "",
        ),
        row(
            "no free slot toward GitLab in time, not posted",
            t(Temporary::NoSlot),
            "",
        ),
        row(
            "circuit breaker open, not posted",
            t(Temporary::BreakerOpen(1)),
            "",
        ),
    ]
}

/// The table in Markdown, as README.md shows it.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| GitLab / local result | LMTP reply | pipe exit | Postfix does |\n|---|---|---|---|\n",
    );
    for r in rows() {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.situation,
            r.lmtp(),
            r.pipe(),
            r.postfix()
        ));
    }
    out
}
