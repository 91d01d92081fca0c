//! The key table: every key against both mailboxes, each row with the
//! GitLab file whose rule decides it (`GEM/` is
//! `gems/gitlab-email_handler/lib/gitlab/email_handler/`, `SDH` is
//! `lib/gitlab/email/handler/service_desk_handler.rb`).

use super::MailboxKind::{Incoming, ServiceDesk};
use super::*;

/// `(key, incoming_email takes it, service_desk_email takes it, why)`.
const TABLE: &[(&str, bool, bool, &str)] = &[
    // Reply keys: GEM/reply_key.rb, GEM/matchers/create_note.rb.
    (
        "59d8df8370b7e95c5a49fbf86aeb2c93",
        true,
        false,
        "legacy reply key; no `-` for SDH's project key",
    ),
    (
        "59D8DF8370B7E95C5A49FBF86AEB2C93",
        false,
        false,
        "legacy key is lowercase hex",
    ),
    (
        "59d8df8370b7e95c5a49fbf86aeb2c9",
        false,
        false,
        "31 hex digits",
    ),
    (
        "59d8df8370b7e95c5a49fbf86aeb2c93a",
        false,
        false,
        "33 hex digits",
    ),
    (
        "b7-0123456789abcdefghijklmno",
        true,
        true,
        "partitioned; SDH project key `b7-…`",
    ),
    (
        "b7-0123456789abcdefghijklmno-x1",
        true,
        true,
        "partitioned with namespace id",
    ),
    (
        "b7-0123456789abcdefghijklmn",
        false,
        true,
        "24-char body; SDH project key",
    ),
    (
        "b7-0123456789abcdefghijklmno-x1234567890123",
        false,
        true,
        "14-char namespace id",
    ),
    (
        "abcde-0123456789abcdefghijklmno",
        false,
        true,
        "5-char partition",
    ),
    // Unsubscribe: GEM/matchers/unsubscribe.rb.
    (
        "59d8df8370b7e95c5a49fbf86aeb2c93-unsubscribe",
        true,
        true,
        "unsubscribe; SDH key `unsubscribe`",
    ),
    (
        "59d8df8370b7e95c5a49fbf86aeb2c93+unsubscribe",
        true,
        false,
        "legacy unsubscribe",
    ),
    (
        "b7-0123456789abcdefghijklmno-unsubscribe",
        true,
        true,
        "partitioned unsubscribe",
    ),
    (
        "hello-unsubscribe",
        false,
        true,
        "no reply key before the suffix",
    ),
    (
        "a/b+tok+unsubscribe",
        false,
        false,
        "create_issue: `+` in token, `+unsubscribe`",
    ),
    // New issue: GEM/matchers/create_issue.rb.
    (
        "gitlab-org-gitlab-20-Author_Token12345678-issue",
        true,
        true,
        "new issue; SDH key `issue`",
    ),
    (
        "gitlab-org-gitlab-x-token-issue",
        false,
        true,
        "no numeric project id",
    ),
    ("grp-20--issue", false, true, "empty token"),
    (
        "gitlabhq/gitlabhq+auth_token",
        true,
        false,
        "legacy new issue",
    ),
    ("grp/proj+tok", true, false, "legacy new issue"),
    ("a/b+x+y", false, false, "create_issue: `+` in token"),
    (
        "grp/proj+",
        false,
        false,
        "empty token: GitLab can only reject",
    ),
    ("+tok", false, false, "empty path: GitLab can only reject"),
    (
        "grp/proj+tok-issue",
        true,
        true,
        "legacy issue; SDH slug `grp/proj+tok`",
    ),
    (
        "grp/proj-20-tok-issue",
        true,
        true,
        "`/`: not a new issue, but a legacy SD path",
    ),
    // Note on an issue: GEM/matchers/create_note_on_issuable.rb.
    (
        "gitlab-org-gitlab-20-Author_Token12345678-issue-42",
        true,
        true,
        "note; SDH key `42`",
    ),
    (
        "grp/p+q-20-tok-issue-42",
        true,
        true,
        "note (no `/` rule) or legacy issue; SDH key `42`",
    ),
    ("grp-20-tok-issue-4x", false, true, "iid not numeric"),
    (
        "grp-20-tok-issue-",
        false,
        false,
        "no iid; `tok` is no project id",
    ),
    // New merge request: GEM/matchers/create_merge_request.rb.
    (
        "gitlab-org-gitlab-20-Author_Token12345678-merge-request",
        true,
        true,
        "new MR; SDH key `request`",
    ),
    (
        "gitlabhq/gitlabhq+merge-request+auth_token",
        true,
        false,
        "legacy new MR",
    ),
    (
        "a/b+merge-request+x+y",
        true,
        false,
        "legacy MR regex is not anchored at the end",
    ),
    (
        "a/b+merge-request+",
        false,
        false,
        "empty token: GitLab can only reject",
    ),
    (
        "+merge-request+tok",
        false,
        false,
        "empty path: GitLab can only reject",
    ),
    ("grp-20-merge-request", false, true, "no token"),
    // Service Desk: GEM/matchers/service_desk.rb, SDH.
    ("gitlab-org-gitlab-20-issue-", true, true, "Service Desk"),
    ("grp-proj-20-issue-", true, true, "Service Desk"),
    (
        "gitlab-org-gitlab-20-issue",
        false,
        true,
        "no trailing `-`; SDH key `issue`",
    ),
    (
        "gitlab-org/gitlab-ce",
        true,
        true,
        "legacy Service Desk path",
    ),
    ("grp/proj", true, true, "legacy Service Desk path"),
    (
        "gitlab-org-20-token-issue-",
        false,
        false,
        "`token` is no project id",
    ),
    ("-issue-", false, false, "leading `-`"),
    (
        "project_slug-project_key",
        false,
        true,
        "SDH project key: service_desk_email only",
    ),
    ("slug-key_1", false, true, "SDH project key"),
    ("slug-UPPER", false, false, "SDH key is `[a-z0-9_]+`"),
    ("slug-", false, false, "empty SDH key"),
    ("nodash", false, false, "no handler finds a project"),
    ("hello", false, false, "no handler finds a project"),
    // Never keys: our safety rule (no handler shape needs these).
    ("", false, false, "empty"),
    ("a/../b+token", false, false, "`..`"),
    ("gitlab%2forg+token", false, false, "`%`"),
    ("grp/\"proj\"", false, false, "quotes"),
    ("grp/proj\nX-Evil: 1", false, false, "control character"),
    ("grp/pro j", false, false, "space"),
    ("/etc/passwd", false, false, "leading `/`"),
    (".hidden/proj", false, false, "leading `.`"),
    ("-x-20-tok-issue", false, false, "leading `-`"),
    ("grp/proj\0", false, false, "NUL"),
];

#[test]
fn key_table_follows_gitlabs_handlers() {
    assert!(TABLE.len() >= 40, "{} keys", TABLE.len());
    let mut wrong = Vec::new();
    for &(key, incoming, service_desk, why) in TABLE {
        for (mailbox, want) in [(Incoming, incoming), (ServiceDesk, service_desk)] {
            if is_valid(mailbox, key) != want {
                wrong.push(format!(
                    "{key:?} in {}: want {want} ({why})",
                    mailbox.name()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_three_changes_of_issue_10() {
    // No handler takes these on incoming_email...
    assert!(!is_valid(Incoming, "a/b+x+y"));
    assert!(!is_valid(Incoming, "a/b+tok+unsubscribe"));
    // ...and the Service Desk handler takes this one.
    assert!(is_valid(ServiceDesk, "grp/proj+tok-issue"));
}

#[test]
fn keys_a_handler_can_only_reject_stay_refused() {
    for key in [
        "grp/proj+",
        "+tok",
        "a/b+merge-request+",
        "+merge-request+tok",
    ] {
        assert!(!is_valid(Incoming, key), "{key}");
        assert!(!is_valid(ServiceDesk, key), "{key}");
    }
}
