//! Tests of the configuration file: the documented example parses into the
//! expected values, defaults apply, and every error names the file, the
//! line and column of the offending value, and what to change.

use super::*;
use crate::address::Template;
use crate::jwt::Credential;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicU32, Ordering};

const GOOD_SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";

/// A scratch directory holding secret files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gitlab-mailgate-config-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        Scratch(dir)
    }

    /// Writes a file with exactly `mode` and returns its path as text.
    fn file(&self, name: &str, content: &str, mode: u32) -> String {
        let path = self.0.join(name);
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path.to_str().unwrap().to_string()
    }

    fn config_path(&self) -> PathBuf {
        self.0.join("config.toml")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The example configuration from the documentation, with secret paths.
fn example(incoming_secret: &str, sd_secret: &str) -> String {
    format!(
        r#"[gitlab]
url = "http://127.0.0.1:8080"
timeout_secs = 30
[incoming_email]
address = "incoming+%{{key}}@incoming.example.com"
secret_file = "{incoming_secret}"      # base64 of 32 bytes + "\n", mode 0600/0640
catch_all = false
[service_desk_email]
address = "contact+%{{key}}@incoming.example.com"
secret_file = "{sd_secret}"
[limits]
max_message_size = 26214400
deliver_deadline_secs = 120
[lmtp]
listen = ["127.0.0.1:2424", "unix:/run/gitlab-mailgate/lmtp.sock"]
socket_mode = "0660"
max_connections = 64
max_recipients = 100
idle_timeout_secs = 300
shutdown_grace_secs = 30
[log]
target = "stderr"            # or "syslog"
syslog_socket = "/dev/log"
"#
    )
}

/// A minimal valid configuration with one incoming mailbox.
fn minimal(secret: &str) -> String {
    format!(
        "[gitlab]\nurl = \"https://gitlab.example.com/\"\n\n\
         [incoming_email]\naddress = \"incoming+%{{key}}@in.example.com\"\n\
         secret_file = \"{secret}\"\n\n[log]\ntarget = \"stderr\"\n"
    )
}

/// 1-based line and column of the first `needle` in `text`.
fn place(text: &str, needle: &str) -> (usize, usize) {
    let offset = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the config"));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = offset - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// Parses `text` and returns the error, which must point at `at` (the
/// first occurrence of that text) and mention `phrase`.
fn error_at(scratch: &Scratch, text: &str, at: &str, phrase: &str) -> ConfigError {
    let path = scratch.config_path();
    let err = Config::parse(&path, text).expect_err("the config must be refused");
    let (line, col) = place(text, at);
    assert_eq!(err.at, Some((line, col)), "{err}");
    let shown = err.to_string();
    let prefix = format!("{}:{line}:{col}: ", path.display());
    assert!(
        shown.starts_with(&prefix),
        "{shown:?} must start with {prefix:?}"
    );
    assert!(shown.contains(phrase), "{shown:?} must mention {phrase:?}");
    err
}

#[test]
fn the_example_config_parses() {
    let s = Scratch::new();
    let inc = s.file("incoming.secret", GOOD_SECRET, 0o600);
    let sd = s.file("sd.secret", GOOD_SECRET, 0o640);
    let path = s.config_path();
    fs::write(&path, example(&inc, &sd)).unwrap();
    let c = Config::load(&path).unwrap();

    assert_eq!(c.path, path);
    assert_eq!(c.gitlab.url, "http://127.0.0.1:8080");
    assert_eq!(c.gitlab.host, "127.0.0.1");
    assert_eq!(c.gitlab.timeout, Duration::from_secs(30));
    assert_eq!(c.gitlab.ca_file, None);

    assert_eq!(c.mailboxes.len(), 2);
    let (m0, m1) = (&c.mailboxes[0], &c.mailboxes[1]);
    assert_eq!(m0.kind, MailboxKind::Incoming);
    assert_eq!(
        m0.template,
        Template::parse("incoming+%{key}@incoming.example.com").unwrap()
    );
    assert_eq!(m0.credential, Credential::Secret(PathBuf::from(&inc)));
    assert!(!m0.catch_all);
    assert!(m0.strict_keys, "strict_keys defaults to true");
    assert_eq!(m1.kind, MailboxKind::ServiceDesk);
    assert_eq!(m1.credential, Credential::Secret(PathBuf::from(&sd)));

    assert_eq!(c.max_message_size, 26_214_400);
    assert_eq!(c.pipe_deadline, Duration::from_secs(120));
    assert_eq!(
        c.lmtp.listen,
        ["127.0.0.1:2424", "unix:/run/gitlab-mailgate/lmtp.sock"]
    );
    assert_eq!(c.lmtp.socket_mode, 0o660);
    assert_eq!(c.lmtp.max_connections, 64);
    assert_eq!(c.lmtp.max_recipients, 100);
    assert_eq!(c.lmtp.idle_timeout, Duration::from_secs(300));
    assert_eq!(c.lmtp.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.log_target, LogTarget::Stderr);
}

#[test]
fn defaults_and_url_normalisation() {
    let s = Scratch::new();
    let secret = s.file("s", GOOD_SECRET, 0o600);
    let c = Config::parse(&s.config_path(), &minimal(&secret)).unwrap();
    assert_eq!(
        c.gitlab.url, "https://gitlab.example.com",
        "trailing / removed"
    );
    assert_eq!(c.gitlab.host, "gitlab.example.com");
    assert_eq!(c.gitlab.timeout, Duration::from_secs(30));
    assert_eq!(c.mailboxes.len(), 1);
    assert_eq!(c.max_message_size, 25 * 1024 * 1024);
    assert_eq!(c.pipe_deadline, Duration::from_secs(120));
    assert_eq!(c.lmtp.listen, ["127.0.0.1:2424"]);
    assert_eq!(c.lmtp.socket_mode, 0o660);
    assert_eq!(c.lmtp.max_connections, 64);
    assert_eq!(c.lmtp.max_connections_per_peer, 32);
    assert_eq!(c.lmtp.max_recipients, 100);
    assert_eq!(c.lmtp.lhlo_timeout, Duration::from_secs(10));
    assert_eq!(c.lmtp.between_messages_timeout, Duration::from_secs(30));
}

#[test]
fn host_comes_from_the_url_or_is_given() {
    let s = Scratch::new();
    let secret = s.file("s", GOOD_SECRET, 0o600);
    let with = |url: &str, host: &str| {
        let text = minimal(&secret).replace(
            "url = \"https://gitlab.example.com/\"",
            &format!("url = \"{url}\"\n{host}"),
        );
        Config::parse(&s.config_path(), &text).map(|c| c.gitlab.host)
    };
    assert_eq!(
        with("http://gl.example:8080/gitlab", "").unwrap(),
        "gl.example"
    );
    assert_eq!(with("https://[::1]:8443", "").unwrap(), "::1");
    assert_eq!(
        with("http://127.0.0.1:8080", "host = \"gitlab.example.com\"").unwrap(),
        "gitlab.example.com"
    );
}

#[test]
fn a_bad_url_is_refused_where_it_is() {
    let s = Scratch::new();
    let secret = s.file("s", GOOD_SECRET, 0o600);
    for url in [
        "gitlab.example.com",
        "ftp://gitlab.example.com",
        "http://",
        "http://user@host",
    ] {
        let text = minimal(&secret).replace("https://gitlab.example.com/", url);
        error_at(&s, &text, &format!("\"{url}\""), "url must be http://");
    }
}

#[test]
fn an_address_without_at_is_refused() {
    let s = Scratch::new();
    let secret = s.file("s", GOOD_SECRET, 0o600);
    let text = minimal(&secret).replace("incoming+%{key}@in.example.com", "incoming+%{key}");
    error_at(
        &s,
        &text,
        "\"incoming+%{key}\"",
        "address: not an e-mail address",
    );
}

#[test]
fn two_keys_in_an_address_are_refused() {
    let s = Scratch::new();
    let secret = s.file("s", GOOD_SECRET, 0o600);
    let text = minimal(&secret).replace("incoming+%{key}@", "incoming+%{key}+%{key}@");
    error_at(
        &s,
        &text,
        "\"incoming+%{key}+%{key}@",
        "more than one %{key}",
    );
}

#[test]
fn a_key_in_the_domain_is_refused() {
    let s = Scratch::new();
    let secret = s.file("s", GOOD_SECRET, 0o600);
    let text = minimal(&secret).replace(
        "incoming+%{key}@in.example.com",
        "incoming@%{key}.in.example.com",
    );
    error_at(
        &s,
        &text,
        "\"incoming@%{key}",
        "%{key} must be in the local part",
    );
}

#[test]
fn unknown_keys_are_refused() {
    let s = Scratch::new();
    let secret = s.file("s", GOOD_SECRET, 0o600);
    // A typo must not silently fall back to a default.
    let text = minimal(&secret).replace("[log]\n", "[log]\ntraget = \"syslog\"\n");
    error_at(&s, &text, "traget", "unknown field `traget`");
    let text = minimal(&secret) + "[limit]\nmax_message_size = 1\n";
    error_at(&s, &text, "limit]", "unknown field `limit`");
    let text =
        minimal(&secret).replace("[incoming_email]\n", "[incoming_email]\ncatchall = true\n");
    error_at(&s, &text, "catchall", "unknown field `catchall`");
}

#[test]
fn wrong_types_and_toml_syntax_are_refused_with_a_place() {
    let s = Scratch::new();
    let secret = s.file("s", GOOD_SECRET, 0o600);
    let text = minimal(&secret).replace("[log]\n", "[limits]\nmax_message_size = \"big\"\n[log]\n");
    let err = Config::parse(&s.config_path(), &text).unwrap_err();
    assert_eq!(
        err.at.map(|(line, _)| line),
        Some(place(&text, "\"big\"").0),
        "{err}"
    );
    let text = minimal(&secret).replace("url = \"", "url = ");
    let err = Config::parse(&s.config_path(), &text).unwrap_err();
    assert_eq!(err.at.map(|(line, _)| line), Some(2), "{err}");
}

#[test]
fn a_missing_secret_file_is_refused() {
    let s = Scratch::new();
    let missing = s.0.join("nope.secret");
    let text = minimal(missing.to_str().unwrap());
    error_at(&s, &text, "\"/", "cannot read the secret file");
}

#[test]
fn a_group_writable_secret_is_refused() {
    let s = Scratch::new();
    let secret = s.file("s", GOOD_SECRET, 0o660);
    let err = error_at(&s, &minimal(&secret), "\"/", "writable by group or others");
    assert!(err.message.contains("0660"), "{err}");
    let secret = s.file("w", GOOD_SECRET, 0o602);
    error_at(&s, &minimal(&secret), "\"/", "writable by group or others");
}

#[test]
fn a_secret_that_is_not_base64_is_refused_without_showing_it() {
    let s = Scratch::new();
    let secret = s.file("s", "not base64 at all!\n", 0o600);
    let err = error_at(&s, &minimal(&secret), "\"/", "not strict base64");
    assert!(!err.to_string().contains("not base64 at all"), "{err}");
    // Two line endings are not GitLab's format either.
    let secret = s.file("t", &format!("{GOOD_SECRET}\n"), 0o600);
    error_at(&s, &minimal(&secret), "\"/", "not strict base64");
}

#[test]
fn a_secret_of_the_wrong_length_is_refused() {
    let s = Scratch::new();
    let secret = s.file("s", "MDEyMzQ1Njc4OWFiY2RlZg==\n", 0o600);
    let err = error_at(&s, &minimal(&secret), "\"/", "decodes to 16 bytes");
    assert!(!err.to_string().contains("MDEy"), "{err}");
}

#[test]
fn bad_listen_entries_are_refused_where_they_are() {
    let s = Scratch::new();
    let secret = s.file("s", GOOD_SECRET, 0o600);
    for (entry, phrase) in [
        ("localhost:2424", "neither IP:PORT"),
        ("127.0.0.1", "neither IP:PORT"),
        ("::1:2424", "neither IP:PORT"),
        ("unix:run/lmtp.sock", "absolute path"),
    ] {
        let text =
            minimal(&secret) + &format!("\n[lmtp]\nlisten = [\"127.0.0.1:2424\", \"{entry}\"]\n");
        error_at(&s, &text, &format!("\"{entry}\""), phrase);
    }
    let text = minimal(&secret) + "\n[lmtp]\nlisten = [\"[::1]:2424\", \"unix:/run/x.sock\"]\n";
    assert!(Config::parse(&s.config_path(), &text).is_ok());
}

#[test]
fn other_bad_values_are_refused() {
    let s = Scratch::new();
    let secret = s.file("s", GOOD_SECRET, 0o600);
    let text = minimal(&secret) + "\n[lmtp]\nsocket_mode = \"0999\"\n";
    error_at(&s, &text, "\"0999\"", "octal mode");
    let text = minimal(&secret).replace("target = \"stderr\"", "target = \"file\"");
    error_at(&s, &text, "\"file\"", "\"syslog\" or \"stderr\"");
    for (section, phrase) in [
        (
            "[gitlab]\ntimeout_secs = 0\n",
            "[gitlab] timeout_secs = 0 is out of range: use 1 to 600",
        ),
        (
            "[gitlab]\ntimeout_secs = 9223372036854775807\n",
            "timeout_secs = 9223372036854775807 is out of range",
        ),
        (
            "[limits]\nmax_message_size = 0\n",
            "[limits] max_message_size = 0 is out of range: use 1 to 2147483648",
        ),
        (
            "[limits]\nmax_message_size = 9223372036854775807\n",
            "max_message_size = 9223372036854775807 is out of range",
        ),
        (
            "[limits]\ndeliver_deadline_secs = 0\n",
            "[limits] deliver_deadline_secs = 0 is out of range: use 1 to 900",
        ),
        (
            "[lmtp]\nmax_connections = 0\n",
            "[lmtp] max_connections = 0 is out of range: use 1 to 4096",
        ),
        (
            "[lmtp]\nidle_timeout_secs = 9223372036854775807\n",
            "[lmtp] idle_timeout_secs = 9223372036854775807 is out of range",
        ),
        (
            "[lmtp]\nlhlo_timeout_secs = 0\n",
            "[lmtp] lhlo_timeout_secs = 0 is out of range: use 1 to 300",
        ),
        (
            "[lmtp]\nmax_connections_per_peer = 0\n",
            "[lmtp] max_connections_per_peer = 0 is out of range: use 1 to 4096",
        ),
        (
            "[guard]\nslot_wait_secs = 9223372036854775807\n",
            "[guard] slot_wait_secs = 9223372036854775807 is out of range: use 0 to 300",
        ),
        (
            "[guard]\nbreaker_max_cooldown_secs = 4\n",
            "[guard] breaker_max_cooldown_secs = 4 is out of range: use 5 to 86400",
        ),
    ] {
        let text = if section.starts_with("[gitlab]") {
            minimal(&secret).replace("[gitlab]\n", section)
        } else {
            minimal(&secret) + "\n" + section
        };
        let err = Config::parse(&s.config_path(), &text).unwrap_err();
        assert!(err.to_string().contains(phrase), "{err}");
    }
}

#[test]
fn no_mailbox_is_refused() {
    let s = Scratch::new();
    let path = s.config_path();
    let err = Config::parse(&path, "[gitlab]\nurl = \"http://127.0.0.1:8080\"\n").unwrap_err();
    assert_eq!(err.at, None);
    assert_eq!(
        err.to_string(),
        format!(
            "{}: no mailbox configured: add an [incoming_email] or [service_desk_email] section",
            path.display()
        )
    );
}

#[test]
fn a_missing_config_file_is_named() {
    let s = Scratch::new();
    let path = s.0.join("absent.toml");
    let err = Config::load(&path).unwrap_err();
    assert_eq!(err.at, None);
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!(
            "{}: cannot read the configuration file",
            path.display()
        )),
        "{shown}"
    );
}

#[test]
fn line_col_counts_from_one() {
    assert_eq!(line_col("abc", 0), (1, 1));
    assert_eq!(line_col("abc\ndef", 5), (2, 2));
    assert_eq!(line_col("a\n", 2), (2, 1));
    assert_eq!(
        line_col("a", 99),
        (1, 2),
        "offsets past the end are clamped"
    );
}

#[test]
fn signing_key_file_selects_es256_beside_or_instead_of_the_secret() {
    let s = Scratch::new();
    let secret = s.file("s", GOOD_SECRET, 0o600);
    let (_, pem) = crate::es256::SigningKey::generate().unwrap();
    let key = s.file("k.pem", &pem, 0o640);
    let line = format!("secret_file = \"{secret}\"\n");
    let both = minimal(&secret).replace(&line, &format!("{line}signing_key_file = \"{key}\"\n"));
    let c = Config::parse(&s.config_path(), &both).unwrap();
    let (key_file, secret_file) = (PathBuf::from(&key), Some(PathBuf::from(&secret)));
    assert_eq!(
        c.mailboxes[0].credential,
        Credential::SigningKey {
            key_file,
            secret_file
        }
    );
    let only = minimal(&secret).replace(&line, &format!("signing_key_file = \"{key}\"\n"));
    let c = Config::parse(&s.config_path(), &only).unwrap();
    assert_eq!(c.mailboxes[0].credential.algorithm(), "ES256");
    let neither = minimal(&secret).replace(&line, "");
    error_at(&s, &neither, "\"incoming+", "needs secret_file (HS256");
}

#[test]
fn a_bad_signing_key_file_is_refused_where_it_is_named() {
    let s = Scratch::new();
    let secret = s.file("s", GOOD_SECRET, 0o600);
    let line = format!("secret_file = \"{secret}\"\n");
    for (content, mode, phrase) in [
        (GOOD_SECRET, 0o600, "no PEM \"PRIVATE KEY\""),
        (
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            0o600,
            "not an EC P-256",
        ),
        ("x", 0o620, "writable by group or others"),
    ] {
        let key = s.file("k.pem", content, mode);
        let text = minimal(&secret).replace(&line, &format!("signing_key_file = \"{key}\"\n"));
        let err = error_at(&s, &text, "\"/", phrase);
        assert!(err.message.starts_with("signing_key_file "), "{err}");
    }
}

#[test]
fn http_listener_is_off_by_default_and_tcp_only() {
    let s = Scratch::new();
    let secret = s.file("incoming.secret", GOOD_SECRET, 0o600);
    let path = s.config_path();
    let off = Config::parse(&path, &minimal(&secret)).unwrap();
    assert_eq!(off.http.listen, None);
    let on = format!("{}[http]\nlisten = \"127.0.0.1:9725\"\n", minimal(&secret));
    let on = Config::parse(&path, &on).unwrap();
    assert_eq!(on.http.listen, Some("127.0.0.1:9725".parse().unwrap()));

    let unix = format!(
        "{}[http]\nlisten = \"unix:/run/x.sock\"\n",
        minimal(&secret)
    );
    error_at(&s, &unix, "\"unix:/run/x.sock\"", "TCP only");
    let bad = format!("{}[http]\nlisten = \"localhost\"\n", minimal(&secret));
    error_at(&s, &bad, "\"localhost\"", "127.0.0.1:9725");
    let typo = format!("{}[http]\nlisten_on = \"127.0.0.1:1\"\n", minimal(&secret));
    error_at(&s, &typo, "listen_on", "listen_on");
}

#[test]
fn the_guard_section_has_defaults_and_checked_values() {
    let s = Scratch::new();
    let secret = s.file("s", GOOD_SECRET, 0o600);
    let c = Config::parse(&s.config_path(), &minimal(&secret)).unwrap();
    assert_eq!(c.guard, crate::guard::Settings::default());
    let text = minimal(&secret)
        + "[guard]\nnull_sender = \"accept\"\nloop_limit = 3\nloop_window_secs = 60\n\
           max_in_flight = 4\nslot_wait_secs = 2\nbreaker_failures = 0\n\
           breaker_max_cooldown_secs = 20\n";
    let g = Config::parse(&s.config_path(), &text).unwrap().guard;
    assert_eq!(g.null_sender, crate::guard::NullSender::Accept);
    assert_eq!((g.loop_limit, g.loop_window), (3, Duration::from_secs(60)));
    assert_eq!((g.max_in_flight, g.slot_wait), (4, Duration::from_secs(2)));
    assert_eq!(g.breaker_failures, 0);
    assert_eq!(g.breaker_max_cooldown, Duration::from_secs(20));

    let text = minimal(&secret) + "[guard]\nnull_sender = \"drop\"\n";
    error_at(&s, &text, "\"drop\"", "`refuse`");
    let text = minimal(&secret) + "[guard]\nloop_limt = 3\n";
    error_at(&s, &text, "loop_limt", "unknown field `loop_limt`");
    let text = minimal(&secret) + "[guard]\nmax_in_flight = 0\n";
    let err = Config::parse(&s.config_path(), &text).unwrap_err();
    assert!(err.message.contains("max_in_flight"), "{err}");
}
