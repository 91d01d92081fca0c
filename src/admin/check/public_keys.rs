//! With `[gitlab] config_file`: is an ES256 mailbox's signing key among the
//! `public_key_files` GitLab verifies with? Compared as DER (the PEM body),
//! so line wrapping does not matter; a key GitLab holds in another encoding
//! shows up as not found, which says to compare the kid by hand.

use super::report::Report;
use crate::config::gitlab_yml::GitlabYml;
use crate::config::Config;
use crate::jwt::{Credential, Signer};
use base64::Engine;

pub(super) fn check(report: &mut Report, config: &Config) {
    let Some(file) = &config.gitlab.config_file else {
        return;
    };
    let Ok(yml) = GitlabYml::load(file) else {
        return; // Config::load read it a moment ago; nothing new to say.
    };
    for mailbox in &config.mailboxes {
        if !matches!(mailbox.credential, Credential::SigningKey { .. }) {
            continue;
        }
        let Ok(Signer::Es256(key)) = mailbox.credential.load() else {
            continue; // reported by the credential check
        };
        let name = mailbox.kind.name();
        let theirs = yml
            .mailbox(mailbox.kind)
            .map(|m| m.public_key_files.clone())
            .unwrap_or_default();
        if theirs.is_empty() {
            report.fail(format_args!(
                "GitLab's {name} has no public_key_files: it refuses our ES256 tokens (kid {}); \
                 install the public key (gitlab-mailgate keygen printed the settings)",
                key.kid()
            ));
            continue;
        }
        let ours = der(&key.public_key_pem());
        let found = theirs.iter().find(|f| {
            std::fs::read_to_string(f)
                .ok()
                .and_then(|t| der(&t))
                .is_some_and(|d| Some(d) == ours)
        });
        match found {
            Some(f) => report.ok(format_args!(
                "GitLab's {name} public_key_files include our signing key (kid {}): {}",
                key.kid(),
                f.display()
            )),
            None => report.fail(format_args!(
                "none of GitLab's {name} public_key_files ({}) is our signing key (kid {}): \
                 install it on GitLab before using it here",
                theirs
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                key.kid()
            )),
        }
    }
}

/// The DER inside the first PEM block of `text`.
fn der(text: &str) -> Option<Vec<u8>> {
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}
