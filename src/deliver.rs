//! The delivery core shared by both front doors: which recipients are
//! GitLab's, and handing one message to GitLab for each of them.
//!
//! LMTP calls [`Deliverer::route`] at `RCPT` time and [`Deliverer::deliver`]
//! after the message; pipe mode calls the same two for its argv recipients.
//! Each recipient gets exactly one log line and one [`Outcome`].

use crate::address::Match;
use crate::config::Config;
use crate::envelope::Route;
use crate::gitlab::{Client, Posted};
use crate::guard::Guard;
use crate::mail_key;
use crate::mailbox::{Mailbox, MailboxKind};
use crate::message::Headers;
use crate::metrics::Refusal;
use crate::observe::{Attempt, Observer, Size};
use crate::outcome::{Outcome, Posting, Temporary};
use crate::spool::Message;
use std::sync::Arc;
use std::time::Instant;

/// The shared delivery state: configuration, HTTP client, the guards in
/// front of it and the observer every attempt is reported to.
pub struct Deliverer {
    config: Arc<Config>,
    client: Client,
    guard: Guard,
    observer: Observer,
}

impl Deliverer {
    /// Builds the HTTP client for `config`; reports go to `observer`.
    pub fn new(config: Arc<Config>, observer: Observer) -> Result<Deliverer, String> {
        let client = Client::new(&config.gitlab)?;
        let guard = Guard::new(&config.guard, config.gitlab.timeout);
        Ok(Deliverer {
            config,
            client,
            guard,
            observer,
        })
    }

    /// Adds the loop breaker, which needs memory across messages: for
    /// `serve`, not for a pipe process that sees one message.
    pub fn with_loop_breaker(mut self) -> Deliverer {
        self.guard = self.guard.with_loop_breaker();
        self
    }

    /// Where this core reports; the front doors report what they decide
    /// themselves (a recipient limit, a message too large) there too.
    pub fn observer(&self) -> &Observer {
        &self.observer
    }

    /// Decides whether mail from `sender` (`None`: not known) to
    /// `recipient` is for GitLab: an unknown recipient is refused first,
    /// then the null sender (see `guard`). A refusal is reported here,
    /// led by Postfix's `queue_id` when the front door has it.
    pub fn route(
        &self,
        sender: Option<&str>,
        recipient: &str,
        queue_id: Option<&str>,
    ) -> Result<Route, Outcome> {
        let refused = |outcome: Outcome, why: Option<Refusal>| {
            self.observer.refused(queue_id, recipient, &outcome, why);
            Err(outcome)
        };
        let route = match route_or_why(&self.config.mailboxes, recipient) {
            Ok(route) => route,
            Err(why) => return refused(Outcome::UnknownRecipient, Some(why)),
        };
        match self.guard.screen_sender(sender) {
            Ok(()) => Ok(route),
            Err(outcome) => refused(outcome, None),
        }
    }

    /// The recipient lookup's question, asked by smtpd at `RCPT` before
    /// any message exists: the routing decision of [`route`](Self::route)
    /// (the sender is not known), reported as a lookup, since Postfix
    /// refuses a `NOTFOUND` address in its SMTP dialogue and bounces nothing.
    pub fn look_up(&self, recipient: &str) -> Option<Route> {
        route_or_why(&self.config.mailboxes, recipient)
            .map_err(|why| self.observer.not_found(recipient, why))
            .ok()
    }

    /// Hands `message` from `sender` to GitLab and returns one outcome per
    /// route, in order; the guards may decide without posting. `received`
    /// is when the message arrived. The front door has reported the
    /// message itself ([`Observer::message`]). The headers are read from
    /// the message's [`head`](Message::head) only, the same bytes wherever
    /// the message is kept. `queue_id` is Postfix's from the front door
    /// (XFORWARD); else the one in the `Received:` header is logged.
    ///
    /// One post per (mailbox, key GitLab will find in the posted bytes):
    /// GitLab looks in `To` before `Delivered-To`, so the copies of a
    /// reply-all naming two GitLab addresses would all act on the same key
    /// (two identical comments). A recipient that resolves to a key already
    /// posted gets that post's outcome (250 only after its 2xx) and says so
    /// in its line. The same recipient given twice is the same key.
    pub fn deliver(
        &self,
        sender: &str,
        queue_id: Option<&str>,
        message: &Message,
        routes: &[Route],
        received: Instant,
    ) -> Vec<Outcome> {
        if message.len() > self.config.max_message_size {
            return self.too_large(sender, queue_id, routes);
        }
        let headers = Headers::parse(message.head());
        let queue_id = queue_id.map(str::to_string).or_else(|| headers.queue_id());
        // (mailbox, key or address) → the route that was posted for it.
        let mut posted: Vec<((MailboxKind, String), usize)> = Vec::new();
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(routes.len());
        for (i, route) in routes.iter().enumerate() {
            let mailbox = &route.mailbox;
            // One address for the posted `Delivered-To:` line and for the
            // key lookup: the logged key is the one GitLab finds in the
            // posted bytes.
            let delivered_to = mailbox.template.delivered_to(&route.recipient);
            let key =
                headers.gitlab_key(&mailbox.template, &self.config.gitlab.host, &delivered_to);
            let target = (
                mailbox.kind,
                key.clone().unwrap_or_else(|| delivered_to.clone()),
            );
            let earlier = posted.iter().find(|(t, _)| *t == target).map(|(_, j)| *j);
            let (outcome, post) = match earlier {
                Some(j) => (outcomes[j].clone(), None),
                None => {
                    posted.push((target.clone(), i));
                    self.post(sender, &headers, &target.1, || {
                        self.client
                            .post(mailbox.kind, &mailbox.credential, &delivered_to, message)
                    })
                }
            };
            self.observer.attempt(&Attempt {
                recipient: &route.recipient,
                outcome: &outcome,
                queue_id: queue_id.as_deref(),
                mailbox: mailbox.kind,
                key: key.as_deref(),
                size: message.len(),
                delay: received.elapsed(),
                message_id: headers.message_id(),
                post: post.as_ref().map(|(p, took)| (p, *took)),
                same_post_as: earlier.map(|j| routes[j].recipient.as_str()),
            });
            outcomes.push(outcome);
        }
        outcomes
    }

    /// Refuses a message over `max_message_size` for every route (pipe
    /// mode reads no more of it than that).
    pub fn too_large(
        &self,
        sender: &str,
        queue_id: Option<&str>,
        routes: &[Route],
    ) -> Vec<Outcome> {
        let limit = self.config.max_message_size;
        for route in routes {
            let to = Some((route.recipient.as_str(), route.mailbox.kind));
            self.observer
                .too_large(queue_id, sender, to, Size::Over(limit));
        }
        vec![Outcome::TooLarge; routes.len()]
    }

    /// Defers every route of a message the front door could not keep
    /// (`why`: no room for its temporary file, say): the client keeps it
    /// and tries again.
    pub fn not_stored(&self, queue_id: Option<&str>, routes: &[Route], why: &str) -> Vec<Outcome> {
        self.observer.not_kept(queue_id, why);
        let outcome = Outcome::Temporary(Temporary::Local("cannot keep the message".into()));
        for route in routes {
            self.observer.deferred(queue_id, &route.recipient, &outcome);
        }
        vec![outcome; routes.len()]
    }

    /// Posts (by calling `post`) unless a guard decides otherwise; the
    /// loop breaker counts every post it allows, per `sender` and GitLab
    /// `key`. Returns the outcome and, when posted, the
    /// classified post and how long it took.
    fn post(
        &self,
        sender: &str,
        headers: &Headers,
        key: &str,
        post: impl FnOnce() -> Posted,
    ) -> (Outcome, Option<(Posting, std::time::Duration)>) {
        if let Err(outcome) = self.guard.screen_message(headers) {
            return (outcome, None);
        }
        let pass = match self.guard.admit(sender, key) {
            Ok(pass) => pass,
            Err(outcome) => return (outcome, None),
        };
        if pass.is_probe() {
            self.observer.breaker_probe();
        }
        let in_flight = self.observer.posting();
        let start = Instant::now();
        let posting = Posting::classify(post());
        let took = start.elapsed();
        drop(in_flight);
        if let Some(change) = self.guard.finish(pass, &posting) {
            self.observer.breaker(change, posting.retry_after.is_some());
        }
        (posting.outcome.clone(), Some((posting, took)))
    }
}

/// Matches `recipient` against the mailboxes: a key in the address first
/// (in any mailbox), then a base address, then a catch-all domain. A key
/// that fits no GitLab shape is refused when the mailbox has `strict_keys`.
pub fn route(mailboxes: &[Mailbox], recipient: &str) -> Option<Route> {
    route_or_why(mailboxes, recipient).ok()
}

/// [`route`], saying why a recipient is refused (for the metrics; the
/// reply is `5.1.1` either way).
fn route_or_why(mailboxes: &[Mailbox], recipient: &str) -> Result<Route, Refusal> {
    // It becomes a header line (`Delivered-To:`): nothing may break it.
    if recipient.chars().any(char::is_control) {
        return Err(Refusal::UnknownAddress);
    }
    let to_route = |i: usize| Route {
        recipient: recipient.to_string(),
        mailbox: mailboxes[i].clone(),
    };
    let matches: Vec<(usize, Match)> = mailboxes
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.template.match_recipient(recipient).map(|x| (i, x)))
        .collect();
    for (i, m) in &matches {
        if let Match::Key(k) = m {
            let mailbox = &mailboxes[*i];
            let ok = !mailbox.strict_keys || mail_key::is_valid(mailbox.kind, k);
            return ok.then(|| to_route(*i)).ok_or(Refusal::InvalidKey);
        }
    }
    if let Some((i, _)) = matches.first() {
        return Ok(to_route(*i));
    }
    mailboxes
        .iter()
        .position(|m| m.catch_all && m.template.in_domain(recipient))
        .map(to_route)
        .ok_or(Refusal::UnknownAddress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Template;
    use crate::mailbox::MailboxKind as Kind;
    use std::path::PathBuf;

    fn mailbox(kind: Kind, address: &str, catch_all: bool, strict_keys: bool) -> Mailbox {
        Mailbox {
            kind,
            template: Template::parse(address).unwrap(),
            credential: crate::jwt::Credential::Secret(PathBuf::new()),
            catch_all,
            strict_keys,
        }
    }

    fn boxes() -> Vec<Mailbox> {
        vec![
            mailbox(Kind::Incoming, "incoming+%{key}@in.example", true, true),
            mailbox(Kind::ServiceDesk, "contact+%{key}@in.example", false, true),
        ]
    }

    fn mailbox_of(rcpt: &str) -> Option<usize> {
        let boxes = boxes();
        route(&boxes, rcpt).and_then(|r| boxes.iter().position(|m| *m == r.mailbox))
    }

    #[test]
    fn routes_by_key_then_base_then_catch_all() {
        assert_eq!(
            mailbox_of("incoming+59d8df8370b7e95c5a49fbf86aeb2c93@in.example"),
            Some(0)
        );
        assert_eq!(mailbox_of("contact+grp-proj-7-issue-@in.example"), Some(1));
        assert_eq!(mailbox_of("contact@in.example"), Some(1));
        assert_eq!(mailbox_of("incoming@in.example"), Some(0));
        assert_eq!(mailbox_of("anything@IN.example"), Some(0));
        assert_eq!(mailbox_of("anything@elsewhere.example"), None);
    }

    #[test]
    fn invalid_keys_are_refused_only_when_strict() {
        assert_eq!(mailbox_of("incoming+nonsense@in.example"), None);
        assert_eq!(mailbox_of("contact+a%b@in.example"), None);
        let lax = vec![mailbox(
            Kind::Incoming,
            "incoming+%{key}@in.example",
            false,
            false,
        )];
        assert!(route(&lax, "incoming+nonsense@in.example").is_some());
    }

    #[test]
    fn refusals_say_why() {
        let why = |rcpt| route_or_why(&boxes(), rcpt).err();
        assert_eq!(
            why("incoming+nonsense@in.example"),
            Some(Refusal::InvalidKey)
        );
        assert_eq!(why("a@elsewhere.example"), Some(Refusal::UnknownAddress));
        assert_eq!(why("incoming@in.example\n"), Some(Refusal::UnknownAddress));
        assert_eq!(why("contact@in.example"), None);
    }

    #[test]
    fn rcpt_key_shapes_follow_gitlabs_handlers() {
        // No handler takes these on incoming_email.
        assert_eq!(mailbox_of("incoming+a/b+x+y@in.example"), None);
        assert_eq!(mailbox_of("incoming+a/b+tok+unsubscribe@in.example"), None);
        // The Service Desk handler takes this on service_desk_email.
        assert_eq!(mailbox_of("contact+grp/proj+tok-issue@in.example"), Some(1));
        // Taken by a handler that can only reject them: refused.
        assert_eq!(mailbox_of("incoming+grp/proj+@in.example"), None);
        assert_eq!(mailbox_of("incoming++tok@in.example"), None);
    }

    #[test]
    fn envelope_domains_route_in_any_case() {
        let rcpt = "incoming+59d8df8370b7e95c5a49fbf86aeb2c93@IN.EXAMPLE";
        assert_eq!(mailbox_of(rcpt), Some(0));
        let routed = route(&boxes(), rcpt).unwrap();
        // The route keeps the recipient as given (the log line shows it);
        // the template respells it for the posted Delivered-To.
        assert_eq!(routed.recipient, rcpt);
        assert_eq!(
            boxes()[0].template.delivered_to(&routed.recipient),
            "incoming+59d8df8370b7e95c5a49fbf86aeb2c93@in.example"
        );
    }

    #[test]
    fn control_characters_never_route() {
        assert_eq!(mailbox_of("incoming@in.example\n"), None);
        assert_eq!(mailbox_of("any\r\nX-Evil: 1@in.example"), None);
        assert_eq!(
            mailbox_of("incoming+59d8df8370b7e95c5a49fbf86aeb2c93@in.example\0"),
            None
        );
    }
}
