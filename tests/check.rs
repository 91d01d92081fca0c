//! `gitlab-mailgate check` against the GitLab stand-in: every check passes
//! on a good setup, and each broken piece gives a FAIL line and exit 1.

mod common;

use common::{Settings, TestEnv};

#[test]
fn passes_against_a_gitlab_that_answers_401_to_a_bad_token() {
    let (env, _standin) = TestEnv::with_standin("ok", |_| {});
    let out = env.check();
    let text = out.out();
    assert_eq!(out.code, Some(0), "{text}");
    assert!(!text.contains("FAIL"), "{text}");
    assert!(text.contains("answers 401 to an invalid token"), "{text}");
    assert!(text.contains("clock skew"), "{text}");
    assert_eq!(text.matches("decodes to 32 bytes").count(), 2, "{text}");
}

#[test]
fn fails_when_gitlab_is_down_or_the_route_is_missing() {
    let env = TestEnv::new(&Settings::default());
    let out = env.check();
    assert_eq!(out.code, Some(1));
    assert!(
        out.out().contains("FAIL") && out.out().contains("cannot reach GitLab"),
        "{}",
        out.out()
    );

    let (env, _standin) = TestEnv::with_standin("404", |_| {});
    let out = env.check();
    assert_eq!(out.code, Some(1));
    assert!(out.out().contains("answers 404"), "{}", out.out());
}

#[test]
fn fails_on_a_group_writable_secret_and_names_the_line() {
    let (env, _standin) = TestEnv::with_standin("ok", |_| {});
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&env.incoming_secret, std::fs::Permissions::from_mode(0o660)).unwrap();
    let out = env.check();
    assert_eq!(out.code, Some(1));
    let text = out.out();
    assert!(text.starts_with("FAIL"), "{text}");
    assert!(
        text.contains("config.toml:") && text.contains("chmod 0640"),
        "{text}"
    );
}

#[test]
fn warns_when_the_incoming_domain_is_gitlabs_own() {
    let (env, _standin) = TestEnv::with_standin("ok", |s| {
        s.gitlab_extra = "host = \"gitlab.incoming.example.com\"".into();
    });
    let out = env.check();
    let text = out.out();
    assert_eq!(out.code, Some(0), "{text}");
    assert!(
        text.contains("warn") && text.contains("dedicated"),
        "{text}"
    );
}
