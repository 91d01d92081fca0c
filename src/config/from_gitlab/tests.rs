//! `[gitlab] config_file` against a gitlab.yml in Omnibus layout.

use super::super::Config;
use crate::jwt::Credential;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";

/// `DIR/gitlab-rails/etc/` with gitlab.yml and both secrets, as Omnibus
/// lays them out; removed on drop.
struct Omnibus(PathBuf);

impl Omnibus {
    fn new(name: &str, edit: impl Fn(String) -> String) -> Omnibus {
        let dir = std::env::temp_dir().join(format!(
            "gitlab-mailgate-from-gitlab-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        let etc = dir.join("gitlab-rails/etc");
        fs::create_dir_all(&etc).unwrap();
        let text = include_str!("../../../tests/data/gitlab.yml")
            .replace("@GITLAB_URL@", "http://127.0.0.1:8181")
            .replace("@DOMAIN@", "in.example.net");
        fs::write(etc.join("gitlab.yml"), edit(text)).unwrap();
        for f in [
            "gitlab_incoming_email_secret",
            "gitlab_service_desk_email_secret",
        ] {
            fs::write(etc.join(f), SECRET).unwrap();
            fs::set_permissions(etc.join(f), fs::Permissions::from_mode(0o640)).unwrap();
        }
        Omnibus(dir)
    }

    fn yml(&self) -> PathBuf {
        self.0.join("gitlab-rails/etc/gitlab.yml")
    }

    fn parse(&self, rest: &str) -> Result<Config, super::super::ConfigError> {
        let text = format!(
            "[gitlab]\nconfig_file = \"{}\"\n{rest}",
            self.yml().display()
        );
        Config::parse(Path::new("config.toml"), &text)
    }
}

impl Drop for Omnibus {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn takes_everything_from_gitlab() {
    let o = Omnibus::new("all", |t| t);
    let c = o.parse("").unwrap();
    assert_eq!(c.gitlab.url, "http://127.0.0.1:8181");
    assert_eq!(c.gitlab.host, "gitlab.example.com");
    assert_eq!(c.gitlab.config_file.as_deref(), Some(o.yml().as_path()));
    assert_eq!(c.mailboxes.len(), 2);
    assert_eq!(c.mailboxes[0].template.domain(), "in.example.net");
    let Credential::Secret(secret) = &c.mailboxes[1].credential else {
        panic!("HS256 expected")
    };
    assert!(secret.ends_with("gitlab-rails/etc/gitlab_service_desk_email_secret"));
}

#[test]
fn our_file_wins_setting_by_setting() {
    let o = Omnibus::new("ours", |t| t);
    let c = o
        .parse(
            "url = \"https://gitlab.internal\"\n[incoming_email]\naddress = \"in+%{key}@other.example\"\n\
             [service_desk_email]\nenabled = false\n",
        )
        .unwrap();
    assert_eq!(c.gitlab.url, "https://gitlab.internal");
    assert_eq!(c.mailboxes.len(), 1);
    assert_eq!(c.mailboxes[0].template.domain(), "other.example");
}

#[test]
fn without_gitlab_url_it_is_the_external_url() {
    let o = Omnibus::new("external", |t| {
        t.replace("    gitlab_url: http://127.0.0.1:8181\n", "")
    });
    assert_eq!(
        o.parse("").unwrap().gitlab.url,
        "https://gitlab.example.com"
    );
}

#[test]
fn refuses_sidekiq_and_names_gitlabs_file() {
    let o = Omnibus::new("sidekiq", |t| {
        t.replace("delivery_method: webhook", "delivery_method: sidekiq")
    });
    let e = o.parse("").unwrap_err();
    assert_eq!(e.file, o.yml());
    assert!(e.message.contains("webhook"), "{e}");
    // A mailbox fully configured in our file does not need GitLab's to work.
    let c = o.parse("url = \"http://x\"\n[incoming_email]\naddress = \"i+%{key}@a.example\"\nsecret_file = \"/dev/null\"\n[service_desk_email]\nenabled = false\n");
    assert!(
        c.is_err_and(|e| e.file != o.yml()),
        "our own section is checked as ours"
    );
}

#[test]
fn a_missing_gitlab_file_is_an_error_at_config_file() {
    let e = Config::parse(
        Path::new("config.toml"),
        "[gitlab]\nconfig_file = \"/nonexistent/gitlab.yml\"\n",
    )
    .unwrap_err();
    assert_eq!(e.at, Some((2, 15)), "{e}");
    assert!(
        e.message.contains("cannot read GitLab's configuration"),
        "{e}"
    );
}
