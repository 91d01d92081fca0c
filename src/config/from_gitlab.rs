//! `[gitlab] config_file`: fills in what our file leaves out from GitLab's
//! own `gitlab.yml` before the configuration is checked, so an admin does
//! not copy addresses, secret paths and URLs by hand.
//!
//! Our file wins setting by setting: `url`, `host`, and per mailbox
//! `enabled`, `address`, `secret_file` (a mailbox with `signing_key_file`
//! of its own takes no secret from GitLab). A mailbox GitLab enables comes
//! in even without a section of ours. What cannot work (sidekiq delivery,
//! an address without `%{key}`, mail_room still reading a mailbox, a file
//! this user cannot read) is refused with the fix in the message.

use super::error::ConfigError;
use super::mailboxes::RawMailbox;
use super::raw::RawConfig;
use crate::config::gitlab_yml::GitlabYml;
use crate::mailbox::MailboxKind as Kind;
use std::ops::Range;
use std::path::PathBuf;
use toml::Spanned;

/// Where a problem is: in our file (at a span) or in GitLab's.
pub(super) enum Error {
    Here(Range<usize>, String),
    There(ConfigError),
}

/// A value that came from GitLab's file: it has no place in ours.
fn from_gitlab<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

/// Merges GitLab's settings into `raw`; returns GitLab's file when one is
/// configured.
pub(super) fn merge(raw: &mut RawConfig) -> Result<Option<PathBuf>, Error> {
    let Some(file) = raw.gitlab.config_file.take() else {
        return Ok(None);
    };
    let path = file.get_ref().clone();
    let there = |message: String| {
        Error::There(ConfigError {
            file: path.clone(),
            at: None,
            message,
        })
    };
    if let Some(why) = crate::access::unreadable_here(&path) {
        return Err(Error::Here(file.span(), why));
    }
    let yml = GitlabYml::load(&path)
        .map_err(|e| Error::Here(file.span(), format!("{}: {e}", path.display())))?;

    let mut used_url = None;
    for (kind, section) in [
        (Kind::Incoming, &mut raw.incoming_email),
        (Kind::ServiceDesk, &mut raw.service_desk_email),
    ] {
        let Some(theirs) = yml.mailbox(kind) else {
            continue;
        };
        let mine = match section {
            Some(m) if m.enabled == Some(false) => continue,
            Some(m) => m,
            None if theirs.active() => section.insert(RawMailbox {
                enabled: None,
                address: None,
                secret_file: None,
                signing_key_file: None,
                catch_all: false,
                strict_keys: true,
            }),
            None => continue,
        };
        let takes_address = mine.address.is_none();
        let takes_secret = mine.secret_file.is_none() && mine.signing_key_file.is_none();
        if !(takes_address || takes_secret) {
            continue;
        }
        if let Some(why) = theirs.refusal() {
            return Err(there(format!("production.{why}")));
        }
        if takes_address {
            let address = theirs.address.clone().ok_or_else(|| {
                there(format!(
                    "production.{}.address is empty: set it in GitLab, or address in our [{}]",
                    kind.name(),
                    kind.name()
                ))
            })?;
            mine.address = Some(from_gitlab(address));
        }
        if takes_secret {
            if let Some(why) = crate::access::unreadable_here(&theirs.secret_file) {
                return Err(there(format!(
                    "production.{}.secret_file: {why}",
                    kind.name()
                )));
            }
            mine.secret_file = Some(from_gitlab(theirs.secret_file.clone()));
        }
        used_url = used_url.or(theirs.gitlab_url.clone());
    }
    if raw.gitlab.url.is_none() {
        // mail_room posts to the mailbox's gitlab_url (config/mail_room.yml);
        // Omnibus renders it from MailroomHelper#internal_api_url, which
        // falls back to the external URL when Workhorse listens on a socket.
        let url = used_url.unwrap_or_else(|| yml.external_url.clone());
        raw.gitlab.url = Some(from_gitlab(url));
    }
    if raw.gitlab.host.is_none() {
        raw.gitlab.host = Some(yml.host.clone());
    }
    Ok(Some(path))
}

#[cfg(test)]
mod tests;
