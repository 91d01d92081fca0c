//! The shapes of key GitLab can act on, so that mail GitLab could only
//! reject (and answer with a rejection e-mail to a possibly forged sender)
//! is refused at `RCPT` time instead.
//!
//! A key is accepted exactly when some GitLab handler takes it for that
//! mailbox and could find something with it. Each rule below names the
//! GitLab file it follows (paths in `gitlabhq/gitlabhq`; the regexes now
//! live in the `gitlab-email_handler` gem, `gems/gitlab-email_handler/lib/
//! gitlab/email_handler/`, called `GEM/` below). Two limits of our own:
//! - keys a handler takes but can only reject are refused: an empty
//!   project path or token in the legacy forms (`grp/proj+`, `+tok`);
//! - the safety rule: only letters, digits and `._+/-`, no `..`, no leading
//!   `.`, `/` or `-`. No handler shape needs anything else: slugs are
//!   `[a-z0-9-]`, project paths `[A-Za-z0-9._/-]`, tokens and reply keys
//!   base36, Service Desk keys `[a-z0-9_]`. So keys with `%`, quotes,
//!   spaces, control characters or `..` never reach GitLab.

use crate::mailbox::MailboxKind;

/// True when a GitLab handler takes `key` in `mailbox` and can act on it.
pub fn is_valid(mailbox: MailboxKind, key: &str) -> bool {
    if !safe_chars(key) {
        return false;
    }
    match mailbox {
        // `lib/gitlab/email/receiver.rb` tries every handler of
        // `lib/gitlab/email/handler.rb` (EE adds Service Desk); the first
        // whose `can_handle?` is true gets the mail.
        MailboxKind::Incoming => {
            is_reply_key(key)
                || is_unsubscribe(key)
                || is_new_issue(key)
                || is_note_on_issuable(key)
                || is_new_merge_request(key)
                || is_service_desk(key)
        }
        // `lib/gitlab/email/service_desk_receiver.rb` always builds the
        // Service Desk handler with the key as `service_desk_key`, so its
        // `can_handle?` is always true; it finds a project by the forms of
        // `is_service_desk` or by `<slug>-<project key>`.
        MailboxKind::ServiceDesk => is_service_desk(key) || is_service_desk_project_key(key),
    }
}

/// Letters, digits and `._+/-`; no `..`, and no leading `.`, `/` or `-`.
/// Our rule, not GitLab's (its regexes use `.+`).
fn safe_chars(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+/-".contains(&b))
        && !key.contains("..")
        && !key.starts_with(['.', '/', '-'])
}

fn base36(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Reply to a notification (CreateNote): `GEM/reply_key.rb`
/// `FULL_REPLY_KEY_REGEX`, anchored by `GEM/matchers/create_note.rb`.
/// Legacy: 32 of `[a-f0-9]`. Partitioned: 1–4 base36, `-`, 25 base36,
/// optionally `-` and 1–13 base36 (the namespace id).
fn is_reply_key(key: &str) -> bool {
    if key.len() == 32
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return true;
    }
    let mut parts = key.split('-');
    let (Some(partition), Some(body)) = (parts.next(), parts.next()) else {
        return false;
    };
    let tail_ok = match (parts.next(), parts.next()) {
        (None, _) => true,
        (Some(t), None) => base36(t, 1, 13),
        _ => false,
    };
    base36(partition, 1, 4) && base36(body, 25, 25) && tail_ok
}

/// `GEM/matchers/unsubscribe.rb`: a reply key, then `-unsubscribe`
/// (legacy `+unsubscribe`; suffixes in `GEM/reply_key.rb`).
fn is_unsubscribe(key: &str) -> bool {
    key.strip_suffix("-unsubscribe")
        .or_else(|| key.strip_suffix("+unsubscribe"))
        .is_some_and(is_reply_key)
}

/// `<slug>-<project id>-<token>`, all three non-empty: `GEM/reply_key.rb`
/// `HANDLER_ACTION_BASE_REGEX` (`(.+)-(\d+)`) followed by `-(.+)`.
fn base_then_token(s: &str) -> bool {
    s.match_indices('-').any(|(i, _)| {
        i > 0
            && s[i + 1..]
                .split_once('-')
                .is_some_and(|(id, token)| digits(id) && !token.is_empty())
    })
}

/// Legacy `<project path>+<rest>`: the path is everything before the first
/// `+` (GitLab's `[^+]*`). Both parts must be non-empty (our rule: GitLab
/// takes an empty one and can only reject it).
fn legacy_parts(key: &str) -> Option<(&str, &str)> {
    key.split_once('+')
        .filter(|(path, rest)| !path.is_empty() && !rest.is_empty())
}

/// New issue, `GEM/matchers/create_issue.rb`: `<base>-<token>-issue` when
/// the key has no `/`; legacy `<path>+<token>` with no `+` in the token and
/// no `+unsubscribe` anywhere in the key.
fn is_new_issue(key: &str) -> bool {
    let new_form = !key.contains('/') && key.strip_suffix("-issue").is_some_and(base_then_token);
    new_form
        || (!key.contains("+unsubscribe")
            && legacy_parts(key).is_some_and(|(_, token)| !token.contains('+')))
}

/// Note on an issue, `GEM/matchers/create_note_on_issuable.rb`:
/// `<base>-<token>-issue-<iid>`. This handler does not exclude `/`.
fn is_note_on_issuable(key: &str) -> bool {
    key.rsplit_once("-issue-")
        .is_some_and(|(head, iid)| digits(iid) && base_then_token(head))
}

/// New merge request, `GEM/matchers/create_merge_request.rb`:
/// `<base>-<token>-merge-request` when the key has no `/`; legacy
/// `<path>+merge-request+<token>`, whose regex is not anchored at the end,
/// so the token may be anything (`+` included).
fn is_new_merge_request(key: &str) -> bool {
    let new_form = !key.contains('/')
        && key
            .strip_suffix("-merge-request")
            .is_some_and(base_then_token);
    new_form
        || legacy_parts(key).is_some_and(|(_, rest)| {
            rest.strip_prefix("merge-request+")
                .is_some_and(|token| !token.is_empty())
        })
}

/// Service Desk, `GEM/matchers/service_desk.rb` (and
/// `lib/gitlab/email/handler/service_desk_handler.rb`): `<base>-issue-`
/// when the key has no `/`; legacy: a project path with `/` and no `+`.
fn is_service_desk(key: &str) -> bool {
    let new_form = !key.contains('/')
        && key
            .strip_suffix("-issue-")
            .and_then(|s| s.rsplit_once('-'))
            .is_some_and(|(slug, id)| !slug.is_empty() && digits(id));
    new_form || (key.contains('/') && !key.contains('+'))
}

/// Service Desk project key, `service_desk_email` mailbox only:
/// `PROJECT_KEY_PATTERN` of `lib/gitlab/email/handler/service_desk_handler.rb`
/// (also in `GEM/matchers/service_desk.rb`), `(.+)-([a-z0-9_]+)`. The slug
/// is `.+`: `grp/proj+tok-issue` is taken too.
fn is_service_desk_project_key(key: &str) -> bool {
    key.rsplit_once('-').is_some_and(|(slug, k)| {
        !slug.is_empty()
            && !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    })
}

#[cfg(test)]
mod tests;
