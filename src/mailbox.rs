//! A GitLab mailbox as delivery sees it: which of GitLab's two mailboxes
//! (`incoming_email`, `service_desk_email`), its address template and how
//! posts to it are signed. The configuration builds these; the delivery
//! core and the GitLab client read them.

use crate::address::Template;
use crate::jwt::Credential;

/// Which GitLab mailbox a key is for: they accept different shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MailboxKind {
    /// `incoming_email`: replies, new issues/MRs, notes, unsubscribe, Service Desk.
    Incoming,
    /// `service_desk_email`: every key is a Service Desk key.
    ServiceDesk,
}

impl MailboxKind {
    /// The mailbox name in GitLab's API path and configuration.
    pub fn name(self) -> &'static str {
        match self {
            MailboxKind::Incoming => "incoming_email",
            MailboxKind::ServiceDesk => "service_desk_email",
        }
    }
}

/// One `[incoming_email]` or `[service_desk_email]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// Which GitLab mailbox this is.
    pub kind: MailboxKind,
    /// The address template, e.g. `incoming+%{key}@example.com`.
    pub template: Template,
    /// How tokens for this mailbox are signed (HS256 or ES256).
    pub credential: Credential,
    /// Accept every recipient in the template's domain.
    pub catch_all: bool,
    /// Refuse keys that fit none of GitLab's shapes.
    pub strict_keys: bool,
}
