//! Helpers shared by the integration tests: a temporary directory with
//! secret files and a configuration ([`TestEnv`]; the files themselves in
//! `files.rs`, with [`temp_dir`] and the secret writer), the GitLab stand-in
//! process ([`StandIn`], in `standin.rs`), running the binary with bounded
//! time ([`run`]), a running `serve` ([`Server`], in `serve.rs`) and a raw
//! LMTP client for it ([`Client`], in `lmtp.rs`), what GitLab makes of a
//! posted body (`keys.rs`), what a process listens on (`procfs.rs`),
//! test certificates ([`tls_certificates`]) and bounded waiting
//! ([`wait_until`]).
//!
//! Everything here is loopback-only and bounded: every wait has a deadline,
//! every child process is killed when its owner is dropped. Nothing here
//! asserts on timing.

mod files;
mod http;
mod keys;
mod lmtp;
mod procfs;
mod run;
mod serve;
mod standin;
mod tls;

pub use files::{keygen, new_secret_text, signing_key_line, temp_dir, write_file, write_secret};
pub use http::{http_get, http_raw, parse_answer, promtool_check_metrics, samples};
pub use keys::{key_in_posted, keyless_message, logged_key, own_emails, GITLAB_HOST, OTHER_KEY};
pub use lmtp::{stuffed, Client, WAIT};
pub use procfs::{listening_sockets, raise_fd_limit};
pub use run::{run, run_merged, wait_bounded, Run};
pub use serve::{normal_delivery, Server};
pub use standin::{recorded_requests, Extra, StandIn, StandInBuilder};
pub use tls::tls_certificates;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// A legacy reply key of GitLab's shape.
pub const KEY: &str = "59d8df8370b7e95c5a49fbf86aeb2c93";
/// The `incoming_email` address template written into test configurations.
pub const INCOMING_TEMPLATE: &str = "incoming+%{key}@incoming.example.com";
/// The `service_desk_email` address template written into test configurations.
pub const SERVICE_DESK_TEMPLATE: &str = "contact+%{key}@incoming.example.com";
/// A valid `incoming_email` recipient (reply key [`KEY`]).
pub const INCOMING_RCPT: &str = "incoming+59d8df8370b7e95c5a49fbf86aeb2c93@incoming.example.com";
/// The Service Desk key used with [`SERVICE_DESK_RCPT`].
pub const SERVICE_DESK_KEY: &str = "grp-proj-20-issue-";
/// A valid `service_desk_email` recipient.
pub const SERVICE_DESK_RCPT: &str = "contact+grp-proj-20-issue-@incoming.example.com";
/// A recipient in no configured mailbox.
pub const UNKNOWN_RCPT: &str = "someone@elsewhere.example.org";

/// The `gitlab-mailgate` binary Cargo built for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gitlab-mailgate")
}

/// A file of the project, by its path relative to the project root.
pub fn project_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A simple test message (LF line endings, as Postfix's pipe(8) writes),
/// with a distinct `Subject` so bodies can be told apart.
pub fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\n\
         To: {INCOMING_RCPT}\n\
         Subject: {subject}\n\
         Message-ID: <{subject}.test@example.org>\n\
         \n\
         Hello GitLab.\n\
         .leading dot stays\n"
    )
    .into_bytes()
}

/// [`message`] with CRLF line endings, as LMTP carries it.
pub fn crlf_message(subject: &str) -> Vec<u8> {
    String::from_utf8(message(subject))
        .expect("ASCII")
        .replace('\n', "\r\n")
        .into_bytes()
}

/// `Delivered-To: <rcpt>\r\n` and the message: what GitLab must receive.
pub fn expected_body(rcpt: &str, message: &[u8]) -> Vec<u8> {
    let mut body = format!("Delivered-To: {rcpt}\r\n").into_bytes();
    body.extend_from_slice(message);
    body
}

/// How often [`wait_until`] checks when the caller has no reason to pick
/// another interval.
pub const POLL: Duration = Duration::from_millis(20);

/// What a probe given to [`wait_until`] answers: `true` or `Some(value)`
/// once what it waits for has happened.
pub trait Ready {
    /// Whether the wait is over.
    fn is_ready(&self) -> bool;
}

impl Ready for bool {
    fn is_ready(&self) -> bool {
        *self
    }
}

impl<T> Ready for Option<T> {
    fn is_ready(&self) -> bool {
        self.is_some()
    }
}

/// The one poll loop of the tests: calls `probe` every `every` until its
/// answer [is ready](Ready), for at most `limit` (and at most
/// `limit / every + 1` times); returns its last answer (`true` or
/// `Some(value)` when it got ready, else the last `false` or `None`).
/// Callers decide what a timeout means (assert, or panic saying what they
/// waited for), never on how long it took.
pub fn wait_until<R: Ready>(limit: Duration, every: Duration, mut probe: impl FnMut() -> R) -> R {
    let deadline = Instant::now() + limit;
    let checks = limit.as_millis() / every.as_millis().max(1) + 1;
    let mut answer = probe();
    for _ in 0..checks {
        if answer.is_ready() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(every.min(deadline.saturating_duration_since(Instant::now())));
        answer = probe();
    }
    answer
}

/// The system user `gitlab-mailgate` is the machine's, not a test's: the
/// Postfix tests run `serve` and the pipe command as it (and create it
/// when absent), the package test has the package create and delete it.
/// All tests run as threads of one process, so they take turns here: the
/// Postfix tests share the user ([`system_user_shared`], once per test),
/// the package test has it alone ([`system_user_alone`]).
static SYSTEM_USER: RwLock<()> = RwLock::new(());

/// Holds the system user for a test that runs programs as it; others may
/// too, but the package test waits. Take it once per test (a second
/// shared hold could wait behind the package test's and never come).
pub fn system_user_shared() -> RwLockReadGuard<'static, ()> {
    SYSTEM_USER.read().unwrap_or_else(PoisonError::into_inner)
}

/// Holds the system user for a test that creates and deletes it, once no
/// other test uses it.
pub fn system_user_alone() -> RwLockWriteGuard<'static, ()> {
    SYSTEM_USER.write().unwrap_or_else(PoisonError::into_inner)
}

/// A loopback TCP port that nothing listens on (bound once, then freed).
pub fn unused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

// ---------------------------------------------------------------------------
// Configuration

/// The values a test configuration is written from.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `[gitlab] url`.
    pub gitlab_url: String,
    /// `[gitlab] timeout_secs`.
    pub timeout_secs: u64,
    /// `[limits] max_message_size`.
    pub max_message_size: usize,
    /// `[limits] deliver_deadline_secs`.
    pub deadline_secs: u64,
    /// `[lmtp] listen`.
    pub lmtp_listen: Vec<String>,
    /// Whether to write a `[service_desk_email]` section.
    pub service_desk: bool,
    /// Lines appended verbatim at the end (e.g. more `[lmtp]` keys, when
    /// no `[lmtp]` table follows; or `ca_file`, via `gitlab_extra`).
    pub extra: String,
    /// Lines added inside `[gitlab]` (e.g. `ca_file = "…"`, `host = "…"`).
    pub gitlab_extra: String,
    /// Lines added inside `[incoming_email]` (e.g. `signing_key_file = "…"`).
    pub incoming_extra: String,
    /// The body of the `[guard]` section. By default the null sender is
    /// accepted: most tests send `MAIL FROM:<>` (nobody to bounce to);
    /// tests/suite/guard.rs writes its own.
    pub guard: String,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            gitlab_url: format!("http://127.0.0.1:{}", unused_port()),
            timeout_secs: 10,
            max_message_size: 1024 * 1024,
            deadline_secs: 60,
            lmtp_listen: vec!["127.0.0.1:0".into()],
            service_desk: true,
            extra: String::new(),
            gitlab_extra: String::new(),
            incoming_extra: String::new(),
            guard: "null_sender = \"accept\"\n".into(),
        }
    }
}

/// A TOML basic string holding `s`.
pub fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A temporary directory with two secret files (`incoming.secret`,
/// `service_desk.secret`, mode 0600) and a configuration file written from
/// [`Settings`] (log target stderr).
pub struct TestEnv {
    dir: tempfile::TempDir,
    /// The configuration file.
    pub config: PathBuf,
    /// The `incoming_email` secret file.
    pub incoming_secret: PathBuf,
    /// The `service_desk_email` secret file.
    pub service_desk_secret: PathBuf,
}

impl TestEnv {
    /// Creates the directory and the secrets, and writes a configuration
    /// from `settings`.
    pub fn new(settings: &Settings) -> TestEnv {
        let dir = temp_dir();
        let incoming_secret = dir.path().join("incoming.secret");
        let service_desk_secret = dir.path().join("service_desk.secret");
        write_secret(&incoming_secret);
        write_secret(&service_desk_secret);
        let env = TestEnv {
            config: dir.path().join("config.toml"),
            dir,
            incoming_secret,
            service_desk_secret,
        };
        env.write_config(settings);
        env
    }

    /// An environment with the stand-in `standin` describes (knowing
    /// both secrets, recording into `DIR/standin`), and a configuration
    /// pointing at it built by `adjust` from the defaults.
    pub fn with_standin(
        standin: StandInBuilder,
        adjust: impl FnOnce(&mut Settings),
    ) -> (TestEnv, StandIn) {
        let mut settings = Settings::default();
        let env = TestEnv::new(&settings);
        let standin = standin
            .secret("incoming_email", &env.incoming_secret)
            .secret("service_desk_email", &env.service_desk_secret)
            .spawn(&env.dir().join("standin"));
        settings.gitlab_url = standin.url();
        adjust(&mut settings);
        env.write_config(&settings);
        (env, standin)
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The configuration text for `settings` (the same as [`write_config`]
    /// writes).
    pub fn config_text(&self, s: &Settings) -> String {
        let mut text = format!(
            "[gitlab]\nurl = {}\ntimeout_secs = {}\n{}\n\
             [incoming_email]\naddress = {}\nsecret_file = {}\n{}\n",
            toml_string(&s.gitlab_url),
            s.timeout_secs,
            s.gitlab_extra,
            toml_string(INCOMING_TEMPLATE),
            toml_string(&self.incoming_secret.to_string_lossy()),
            s.incoming_extra,
        );
        if s.service_desk {
            text += &format!(
                "[service_desk_email]\naddress = {}\nsecret_file = {}\n\n",
                toml_string(SERVICE_DESK_TEMPLATE),
                toml_string(&self.service_desk_secret.to_string_lossy()),
            );
        }
        let listen: Vec<String> = s.lmtp_listen.iter().map(|l| toml_string(l)).collect();
        text += &format!(
            "[limits]\nmax_message_size = {}\ndeliver_deadline_secs = {}\n\n\
             [log]\ntarget = \"stderr\"\n\n[guard]\n{}\n[lmtp]\nlisten = [{}]\n{}\n",
            s.max_message_size,
            s.deadline_secs,
            s.guard,
            listen.join(", "),
            s.extra,
        );
        text
    }

    /// (Re)writes the configuration file from `settings`.
    pub fn write_config(&self, settings: &Settings) {
        write_file(&self.config, self.config_text(settings).as_bytes(), 0o644);
    }

    /// The base64 text of both secrets, for checking that no output shows it.
    pub fn secret_texts(&self) -> Vec<String> {
        [&self.incoming_secret, &self.service_desk_secret]
            .iter()
            .filter_map(|p| fs::read_to_string(p).ok())
            .map(|t| t.trim().to_string())
            .collect()
    }

    /// Panics if `output` shows a secret's base64 text or a JWT (`eyJ`).
    pub fn assert_no_secrets(&self, output: &[u8]) {
        let text = String::from_utf8_lossy(output);
        for secret in self.secret_texts() {
            assert!(!text.contains(&secret), "a secret leaked into: {text}");
            // Also a long piece of it, in case it was cut or wrapped.
            assert!(
                !text.contains(&secret[..16]),
                "a secret leaked into: {text}"
            );
        }
        assert!(!text.contains("eyJ"), "a token leaked into: {text}");
    }

    /// Runs `gitlab-mailgate deliver --config <config> ARGS...` with `stdin`,
    /// stdout and stderr apart.
    pub fn deliver(&self, args: &[&str], stdin: &[u8]) -> Run {
        let run = run(&mut self.deliver_command(args), stdin);
        self.assert_no_secrets(&run.stdout);
        self.assert_no_secrets(&run.stderr);
        run
    }

    /// Like [`deliver`](Self::deliver) with stderr sent into the same pipe as
    /// stdout, as Postfix's pipe(8) reads them: `stdout` then holds both in
    /// the order written, and `stderr` is empty.
    pub fn deliver_merged(&self, args: &[&str], stdin: &[u8]) -> Run {
        let run = run_merged(&mut self.deliver_command(args), stdin);
        self.assert_no_secrets(&run.stdout);
        run
    }

    fn deliver_command(&self, args: &[&str]) -> Command {
        let mut cmd = self.command("deliver");
        cmd.args(args);
        cmd
    }

    /// Runs `gitlab-mailgate check --config <config>`; panics if its
    /// output shows a secret.
    pub fn check(&self) -> Run {
        let run = run(&mut self.command("check"), b"");
        self.assert_no_secrets(&run.stdout);
        self.assert_no_secrets(&run.stderr);
        run
    }

    /// `gitlab-mailgate SUBCOMMAND --config <config>`, not yet started
    /// (`GITLAB_MAILGATE_CONFIG` removed from its environment).
    pub fn command(&self, subcommand: &str) -> Command {
        let mut cmd = Command::new(bin());
        cmd.arg(subcommand).arg("--config").arg(&self.config);
        cmd.env_remove("GITLAB_MAILGATE_CONFIG");
        cmd
    }
}
