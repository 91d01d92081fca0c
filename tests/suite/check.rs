//! `gitlab-mailgate check` against the GitLab stand-in: every check passes
//! on a good setup, and each broken piece gives a FAIL line and exit 1.

use crate::common;

use common::{Settings, StandIn, TestEnv};

#[test]
fn passes_against_a_gitlab_that_answers_401_to_a_bad_token() {
    let (env, _standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
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

    let (env, _standin) = TestEnv::with_standin(StandIn::builder().mode("404"), |_| {});
    let out = env.check();
    assert_eq!(out.code, Some(1));
    assert!(out.out().contains("answers 404"), "{}", out.out());
}

#[test]
fn fails_on_a_group_writable_secret_and_names_the_line() {
    let (env, _standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
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
    let (env, _standin) = TestEnv::with_standin(StandIn::builder(), |s| {
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

#[test]
fn reports_which_token_mode_each_mailbox_uses() {
    let keys = common::temp_dir();
    let (key, public) = common::keygen(keys.path(), "incoming_email", "in.pem");
    let extra = common::Extra {
        public_keys: vec![("incoming_email".into(), public)],
        clock_offset: 0,
    };
    let (env, _standin) = TestEnv::with_standin(StandIn::builder().extra(&extra), |s| {
        s.incoming_extra = common::signing_key_line(&key);
    });
    let out = env.check();
    let text = out.out();
    assert_eq!(out.code, Some(0), "{text}");
    assert!(text.contains("ok    incoming_email signs ES256"), "{text}");
    assert!(
        text.contains("ok    service_desk_email signs HS256"),
        "{text}"
    );
    // secret_file is still given for incoming_email: said to be unused.
    assert!(
        text.contains("incoming_email secret_file") && text.contains("unused"),
        "{text}"
    );
    assert!(!text.contains("PRIVATE"), "{text}");
}

/// `check`'s clock line against a stand-in whose clock is `offset` s off.
fn skew_line(offset: i64) -> (Option<i32>, String) {
    let extra = common::Extra {
        clock_offset: offset,
        ..Default::default()
    };
    let (env, _standin) = TestEnv::with_standin(StandIn::builder().extra(&extra), |_| {});
    let out = env.check();
    let text = out.out();
    let line = text
        .lines()
        .find(|l| l.contains("clock skew"))
        .unwrap_or_else(|| panic!("no clock line: {text}"))
        .to_string();
    (out.code, line)
}

#[test]
fn warns_above_60_s_of_clock_skew_and_fails_above_120_s() {
    let (code, line) = skew_line(0);
    assert!(line.starts_with("ok "), "{line}");
    assert_eq!(code, Some(0));
    for offset in [90, -90] {
        let (code, line) = skew_line(offset);
        assert!(line.starts_with("warn "), "{offset}: {line}");
        assert_eq!(code, Some(0), "{line}");
    }
    for offset in [150, -150] {
        let (code, line) = skew_line(offset);
        assert!(line.starts_with("FAIL "), "{offset}: {line}");
        assert_eq!(code, Some(1), "{line}");
    }
}

/// A gitlab.yml (source layout) whose incoming_email verifies ES256 with
/// `public`; returns its path.
fn gitlab_yml_with_public_key(dir: &std::path::Path, public: &std::path::Path) -> String {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).unwrap();
    let yml = config.join("gitlab.yml");
    let text = format!(
        "production:\n  gitlab:\n    host: gitlab.example.com\n  incoming_email:\n    \
         enabled: true\n    address: \"{}\"\n    delivery_method: webhook\n    \
         public_key_files:\n      - {}\n",
        common::INCOMING_TEMPLATE,
        public.display()
    );
    std::fs::write(&yml, text).unwrap();
    common::toml_string(&yml.to_string_lossy())
}

#[test]
fn with_gitlabs_file_it_finds_our_signing_key_among_gitlabs_public_keys() {
    let keys = common::temp_dir();
    let (key, public) = common::keygen(keys.path(), "incoming_email", "in.pem");
    let (_other, other_public) = common::keygen(keys.path(), "incoming_email", "other.pem");
    let extra = common::Extra {
        public_keys: vec![("incoming_email".into(), public.clone())],
        clock_offset: 0,
    };
    for (gitlab_has, ok) in [(&public, true), (&other_public, false)] {
        let yml = gitlab_yml_with_public_key(keys.path(), gitlab_has);
        let (env, _standin) = TestEnv::with_standin(StandIn::builder().extra(&extra), |s| {
            s.incoming_extra = common::signing_key_line(&key);
            s.gitlab_extra = format!("config_file = {yml}");
        });
        let out = env.check();
        let text = out.out();
        assert!(text.contains("GitLab's settings read from"), "{text}");
        if ok {
            assert_eq!(out.code, Some(0), "{text}");
            assert!(
                text.contains("public_key_files include our signing key"),
                "{text}"
            );
        } else {
            assert_eq!(out.code, Some(1), "{text}");
            assert!(
                text.contains("FAIL  none of GitLab's incoming_email public_key_files"),
                "{text}"
            );
        }
    }
}
