//! What a front door hands to delivery for each accepted recipient: the
//! address as given and the mailbox it belongs to. The LMTP session keeps
//! these in RCPT order without knowing anything about delivery.

use crate::mailbox::Mailbox;

/// A recipient that belongs to a configured GitLab mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The envelope recipient, as given.
    pub recipient: String,
    /// The mailbox it goes to, with everything delivery needs (template,
    /// credential); a copy, so a route stands on its own.
    pub mailbox: Mailbox,
}

impl Route {
    /// A route to an `incoming_email` mailbox for `incoming+%{key}@in.example`
    /// with an empty secret path: for session tests and fuzzing, where
    /// nothing is delivered.
    #[doc(hidden)]
    pub fn sample(recipient: &str) -> Route {
        Route {
            recipient: recipient.to_string(),
            mailbox: Mailbox {
                kind: crate::mailbox::MailboxKind::Incoming,
                template: crate::address::Template::parse("incoming+%{key}@in.example")
                    .expect("a valid template"),
                credential: crate::jwt::Credential::Secret(Default::default()),
                catch_all: false,
                strict_keys: true,
            },
        }
    }
}
