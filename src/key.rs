//! The shapes of key GitLab can act on, so that mail GitLab could only
//! reject (and answer with a rejection e-mail to a possibly forged sender)
//! is refused at `RCPT` time instead.
//!
//! The shapes follow GitLab's handlers (`gitlab-email_handler` and
//! `lib/gitlab/email/handler/*`). Their regexes use `.+` for slugs and
//! tokens; here those parts are also limited to the characters GitLab's
//! slugs, paths and tokens are made of, so keys with `%`, quotes, spaces,
//! control characters or `..` never reach GitLab.

/// Which GitLab mailbox a key is for: they accept different shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mailbox {
    /// `incoming_email`: replies, new issues/MRs, notes, unsubscribe, Service Desk.
    Incoming,
    /// `service_desk_email`: every key is a Service Desk key.
    ServiceDesk,
}

impl Mailbox {
    /// The mailbox name in GitLab's API path and configuration.
    pub fn name(self) -> &'static str {
        match self {
            Mailbox::Incoming => "incoming_email",
            Mailbox::ServiceDesk => "service_desk_email",
        }
    }
}

/// True when GitLab has a handler for `key` in `mailbox`.
pub fn is_valid(mailbox: Mailbox, key: &str) -> bool {
    if !safe_chars(key) {
        return false;
    }
    match mailbox {
        Mailbox::Incoming => {
            is_reply_key(key)
                || is_unsubscribe(key)
                || (!key.contains('/') && (is_new_issuable(key) || is_note(key)))
                || is_service_desk(key)
                || is_legacy_new_issuable(key)
        }
        Mailbox::ServiceDesk => is_service_desk(key) || is_custom_service_desk(key),
    }
}

/// Letters, digits and `._+/-`; no `..`, and no leading `.`, `/` or `-`.
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

/// Legacy: 32 lowercase hex digits. Partitioned: `p-25chars[-suffix]`.
fn is_reply_key(key: &str) -> bool {
    if key.len() == 32
        && key
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
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

fn is_unsubscribe(key: &str) -> bool {
    key.strip_suffix("-unsubscribe")
        .or_else(|| key.strip_suffix("+unsubscribe"))
        .is_some_and(is_reply_key)
}

/// `<slug>-<project id>-<rest>` with non-empty slug and rest: GitLab's
/// `HANDLER_ACTION_BASE_REGEX` followed by `-(.+)`.
fn base_then_more(s: &str) -> bool {
    s.match_indices('-').any(|(i, _)| {
        i > 0 && {
            let after = &s[i + 1..];
            after
                .split_once('-')
                .is_some_and(|(id, rest)| digits(id) && !rest.is_empty())
        }
    })
}

/// `<slug>-<id>-<token>-issue` and `<slug>-<id>-<token>-merge-request`.
fn is_new_issuable(key: &str) -> bool {
    key.strip_suffix("-issue")
        .or_else(|| key.strip_suffix("-merge-request"))
        .is_some_and(base_then_more)
}

/// `<slug>-<id>-<token>-issue-<iid>`.
fn is_note(key: &str) -> bool {
    key.rsplit_once("-issue-")
        .is_some_and(|(head, iid)| digits(iid) && base_then_more(head))
}

/// `<slug>-<id>-issue-`, or the legacy project path (has `/`, no `+`).
fn is_service_desk(key: &str) -> bool {
    let new_form = !key.contains('/')
        && key
            .strip_suffix("-issue-")
            .and_then(|s| s.rsplit_once('-'))
            .is_some_and(|(slug, id)| !slug.is_empty() && digits(id));
    new_form || (key.contains('/') && !key.contains('+'))
}

/// Legacy new issue `<path>+<token>` and new MR `<path>+merge-request+<token>`.
fn is_legacy_new_issuable(key: &str) -> bool {
    key.split_once('+')
        .is_some_and(|(path, token)| !path.is_empty() && !token.is_empty())
}

/// Custom Service Desk address: `<slug>-<key of [a-z0-9_]+>`.
fn is_custom_service_desk(key: &str) -> bool {
    !key.contains('/')
        && key.rsplit_once('-').is_some_and(|(slug, k)| {
            !slug.is_empty()
                && !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::Mailbox::{Incoming, ServiceDesk};
    use super::*;

    #[test]
    fn incoming_shapes_gitlab_handles() {
        for key in [
            "59d8df8370b7e95c5a49fbf86aeb2c93",
            "b7-0123456789abcdefghijklmno",
            "b7-0123456789abcdefghijklmno-x1",
            "59d8df8370b7e95c5a49fbf86aeb2c93-unsubscribe",
            "59d8df8370b7e95c5a49fbf86aeb2c93+unsubscribe",
            "gitlab-org-gitlab-20-Author_Token12345678-issue",
            "gitlab-org-gitlab-20-Author_Token12345678-issue-42",
            "gitlab-org-gitlab-20-Author_Token12345678-merge-request",
            "gitlab-org-gitlab-20-issue-",
            "gitlabhq/gitlabhq+auth_token",
            "gitlabhq/gitlabhq+merge-request+auth_token",
            "gitlab-org/gitlab-ce",
        ] {
            assert!(is_valid(Incoming, key), "{key}");
        }
    }

    #[test]
    fn incoming_rejects_what_no_handler_takes() {
        for key in [
            "hello",
            "59D8DF8370B7E95C5A49FBF86AEB2C93",
            "59d8df8370b7e95c5a49fbf86aeb2c9",
            "gitlab-org-gitlab-x-token-issue",
            "gitlab-org-gitlab-20-issue",
            "-20-token-issue",
            "gitlab-org-20-token-issue-",
        ] {
            assert!(!is_valid(Incoming, key), "{key}");
        }
    }

    #[test]
    fn unsafe_characters_are_never_keys() {
        for key in [
            "a/../b+token",
            "gitlab%2forg+token",
            "grp/\"proj\"",
            "grp/proj\nX-Evil: 1",
            "grp/pro j",
            "/etc/passwd",
            "grp/proj\0",
        ] {
            assert!(!is_valid(Incoming, key), "{key:?}");
            assert!(!is_valid(ServiceDesk, key), "{key:?}");
        }
    }

    #[test]
    fn service_desk_shapes() {
        assert!(is_valid(ServiceDesk, "project_slug-project_key"));
        assert!(is_valid(ServiceDesk, "grp-proj-20-issue-"));
        assert!(is_valid(ServiceDesk, "grp/proj"));
        assert!(!is_valid(ServiceDesk, "nodash"));
        assert!(!is_valid(ServiceDesk, "slug-UPPER"));
        assert!(!is_valid(
            ServiceDesk,
            "59d8df8370b7e95c5a49fbf86aeb2c93+unsubscribe"
        ));
    }
}
