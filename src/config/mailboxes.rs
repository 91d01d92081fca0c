//! The `[incoming_email]` and `[service_desk_email]` sections' checker
//! (the settings are `mailbox::Mailbox`). Secret and signing key files are
//! read and checked here so a bad one is reported at once; the delivery
//! path reads them again (at most every ten seconds), so a rotated key
//! takes effect without a restart.

use super::error::Invalid;
use crate::address::Template;
use crate::jwt::Credential;
use crate::mailbox::{Mailbox, MailboxKind};
use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

/// One mailbox section as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMailbox {
    pub(super) enabled: Option<bool>,
    pub(super) address: Option<Spanned<String>>,
    pub(super) secret_file: Option<Spanned<PathBuf>>,
    pub(super) signing_key_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub(super) catch_all: bool,
    #[serde(default = "yes")]
    pub(super) strict_keys: bool,
}

fn yes() -> bool {
    true
}

/// Checks the enabled mailbox sections, `incoming_email` first.
pub(super) fn check(
    sections: [(MailboxKind, Option<RawMailbox>); 2],
) -> Result<Vec<Mailbox>, Invalid> {
    let mut mailboxes = Vec::new();
    for (kind, section) in sections {
        if let Some(m) = section.filter(|m| m.enabled != Some(false)) {
            mailboxes.push(check_one(kind, m)?);
        }
    }
    if mailboxes.is_empty() {
        return Err(Invalid::new(
            "no mailbox configured: add an [incoming_email] or [service_desk_email] section",
        ));
    }
    Ok(mailboxes)
}

fn check_one(kind: MailboxKind, m: RawMailbox) -> Result<Mailbox, Invalid> {
    let Some(address) = m.address else {
        return Err(Invalid::new(format!(
            "[{}] needs address = GitLab's {0}.address, e.g. \
             \"incoming+%{{key}}@incoming.example.com\"",
            kind.name()
        )));
    };
    let template = Template::parse(address.get_ref())
        .map_err(|e| Invalid::at(address.span(), format!("address: {e}")))?;
    // Both files are checked when both are given: the secret may be what
    // GitLab falls back to while keys change.
    let secret = m
        .secret_file
        .as_ref()
        .map(|f| (f, Credential::Secret(f.get_ref().clone())));
    let key = m.signing_key_file.as_ref().map(|f| {
        let key_file = f.get_ref().clone();
        let credential = Credential::SigningKey {
            key_file,
            secret_file: None,
        };
        (f, credential)
    });
    for (file, credential) in [secret, key].into_iter().flatten() {
        credential.load().map_err(|e| Invalid::at(file.span(), e))?;
    }
    let credential = match (m.secret_file, m.signing_key_file) {
        (secret, Some(key)) => Credential::SigningKey {
            key_file: key.into_inner(),
            secret_file: secret.map(Spanned::into_inner),
        },
        (Some(secret), None) => Credential::Secret(secret.into_inner()),
        (None, None) => {
            return Err(Invalid::at(
                address.span(),
                format!(
                    "[{}] needs secret_file (HS256, GitLab's secret) or \
                     signing_key_file (ES256, see `gitlab-mailgate keygen`)",
                    kind.name()
                ),
            ))
        }
    };
    Ok(Mailbox {
        kind,
        template,
        credential,
        catch_all: m.catch_all,
        strict_keys: m.strict_keys,
    })
}
