//! The configuration file: TOML, checked once at start-up into a [`Config`]
//! that nothing later needs to re-validate.
//!
//! Every error names the file, the line and column, and what to change.
//! Unknown keys are errors (a typo must not silently fall back to a default).
//! Secret and signing key files are read and checked here so a bad one is
//! reported at once; the delivery path reads them again (at most every ten
//! seconds), so a rotated key takes effect without a restart.

use crate::address::Template;
use crate::jwt::Credential;
use crate::mailbox::{Mailbox, MailboxKind};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

pub(crate) mod gitlab_yml;
mod http;
pub use http::Http;

/// The default configuration file.
pub const DEFAULT_PATH: &str = "/etc/gitlab-mailgate/config.toml";

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Where and how to reach GitLab.
    pub gitlab: Gitlab,
    /// The configured mailboxes, `incoming_email` first.
    pub mailboxes: Vec<Mailbox>,
    /// Largest message accepted, in bytes.
    pub max_message_size: usize,
    /// Overall deadline of one `deliver` run (pipe mode).
    pub pipe_deadline: Duration,
    /// The LMTP server's settings.
    pub lmtp: Lmtp,
    /// Where log lines go.
    pub log_target: LogTarget,
    /// The `[http]` listener of `serve` (health and metrics).
    pub http: Http,
    /// The `[guard]` section: automated mail, loops, back-pressure.
    pub guard: crate::guard::Settings,
}

/// The `[gitlab]` section.
#[derive(Debug, Clone)]
pub struct Gitlab {
    /// Base URL without a trailing `/`.
    pub url: String,
    /// GitLab's external host name, for `References: <reply-KEY@host>`.
    pub host: String,
    /// Limit for one whole request.
    pub timeout: Duration,
    /// Extra CA certificates (PEM) trusted for https.
    pub ca_file: Option<PathBuf>,
    /// GitLab's `gitlab.yml`, when settings were read from it.
    pub config_file: Option<PathBuf>,
}

/// The `[lmtp]` section.
#[derive(Debug, Clone)]
pub struct Lmtp {
    /// `host:port`, `[v6]:port` or `unix:/path` entries.
    pub listen: Vec<String>,
    /// Mode of created unix sockets.
    pub socket_mode: u32,
    /// Connections served at once; more get `421`.
    pub max_connections: usize,
    /// Recipients per transaction; more get `452`.
    pub max_recipients: usize,
    /// A client that completes no command and sends no message bytes
    /// this long is disconnected (trickling a command does not count).
    pub idle_timeout: Duration,
    /// On SIGTERM, how long transactions in flight may take to finish.
    pub shutdown_grace: Duration,
}

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// A syslog socket (normally `/dev/log`), facility mail.
    Syslog(PathBuf),
    /// Standard error.
    Stderr,
}

/// A configuration error, with the place it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// 1-based line and column, when the error has a place in the file.
    pub at: Option<(usize, usize)>,
    /// What is wrong and what to change.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.file.display(), self.message)
            }
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    gitlab: RawGitlab,
    incoming_email: Option<RawMailbox>,
    service_desk_email: Option<RawMailbox>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    lmtp: RawLmtp,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    http: http::RawHttp,
    #[serde(default)]
    guard: crate::guard::RawSettings,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGitlab {
    url: Option<Spanned<String>>,
    config_file: Option<Spanned<PathBuf>>,
    host: Option<String>,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
    ca_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMailbox {
    enabled: Option<bool>,
    address: Option<Spanned<String>>,
    secret_file: Option<Spanned<PathBuf>>,
    signing_key_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    catch_all: bool,
    #[serde(default = "yes")]
    strict_keys: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default = "default_max_size")]
    max_message_size: usize,
    #[serde(default = "default_deadline")]
    deliver_deadline_secs: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLmtp {
    #[serde(default = "default_listen")]
    listen: Vec<Spanned<String>>,
    #[serde(default = "default_socket_mode")]
    socket_mode: Spanned<String>,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_max_recipients")]
    max_recipients: usize,
    #[serde(default = "default_idle")]
    idle_timeout_secs: u64,
    #[serde(default = "default_grace")]
    shutdown_grace_secs: u64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    target: Option<Spanned<String>>,
    syslog_socket: Option<PathBuf>,
}

fn yes() -> bool {
    true
}
fn default_timeout() -> u64 {
    30
}
fn default_max_size() -> usize {
    25 * 1024 * 1024
}
fn default_deadline() -> u64 {
    120
}
fn default_listen() -> Vec<Spanned<String>> {
    vec![Spanned::new(0..0, "127.0.0.1:2424".to_string())]
}
fn default_socket_mode() -> Spanned<String> {
    Spanned::new(0..0, "0660".to_string())
}
fn default_max_connections() -> usize {
    64
}
fn default_max_recipients() -> usize {
    100
}
fn default_idle() -> u64 {
    300
}
fn default_grace() -> u64 {
    30
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_message_size: default_max_size(),
            deliver_deadline_secs: default_deadline(),
        }
    }
}

impl Default for RawLmtp {
    fn default() -> Self {
        RawLmtp {
            listen: default_listen(),
            socket_mode: default_socket_mode(),
            max_connections: default_max_connections(),
            max_recipients: default_max_recipients(),
            idle_timeout_secs: default_idle(),
            shutdown_grace_secs: default_grace(),
        }
    }
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            at: None,
            message: format!("cannot read the configuration file: {e}"),
        })?;
        Config::parse(path, &text)
    }

    /// Checks configuration `text` read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let err = |span: Option<std::ops::Range<usize>>, message: String| ConfigError {
            file: path.to_path_buf(),
            at: span.filter(|s| s.end > 0).map(|s| line_col(text, s.start)),
            message,
        };
        let mut raw: RawConfig =
            toml::from_str(text).map_err(|e| err(e.span(), e.message().trim().to_string()))?;
        let gitlab_file = from_gitlab::merge(&mut raw).map_err(|e| match e {
            from_gitlab::Error::Here(span, message) => err(Some(span), message),
            from_gitlab::Error::There(e) => e,
        })?;

        let Some(raw_url) = raw.gitlab.url else {
            return Err(err(
                None,
                "[gitlab] needs url = \"https://gitlab.example.com\", or config_file = \
                 GitLab's gitlab.yml to take it from there"
                    .into(),
            ));
        };
        let url = raw_url.get_ref().trim_end_matches('/').to_string();
        let host = match (raw.gitlab.host, url_host(&url)) {
            (Some(h), _) => h,
            (None, Some(h)) => h.to_string(),
            (None, None) => {
                return Err(err(
                    Some(raw_url.span()),
                    "url must be http://HOST[:PORT][/PATH] or https://…, e.g. \"https://gitlab.example.com\"".into(),
                ))
            }
        };
        if raw.gitlab.timeout_secs == 0 {
            return Err(err(None, "[gitlab] timeout_secs must be at least 1".into()));
        }

        let mut mailboxes = Vec::new();
        for (kind, section) in [
            (MailboxKind::Incoming, raw.incoming_email),
            (MailboxKind::ServiceDesk, raw.service_desk_email),
        ] {
            let Some(m) = section.filter(|m| m.enabled != Some(false)) else {
                continue;
            };
            let Some(address) = m.address else {
                return Err(err(
                    None,
                    format!(
                        "[{}] needs address = GitLab's {0}.address, e.g. \
                         \"incoming+%{{key}}@incoming.example.com\"",
                        kind.name()
                    ),
                ));
            };
            let template = Template::parse(address.get_ref())
                .map_err(|e| err(Some(address.span()), format!("address: {e}")))?;
            // Both files are checked when both are given: the secret may be
            // what GitLab falls back to while keys change.
            for (file, credential) in [
                m.secret_file
                    .as_ref()
                    .map(|f| (f, Credential::Secret(f.get_ref().clone()))),
                m.signing_key_file.as_ref().map(|f| {
                    let key_file = f.get_ref().clone();
                    (
                        f,
                        Credential::SigningKey {
                            key_file,
                            secret_file: None,
                        },
                    )
                }),
            ]
            .into_iter()
            .flatten()
            {
                credential.load().map_err(|e| err(Some(file.span()), e))?;
            }
            let credential = match (m.secret_file, m.signing_key_file) {
                (secret, Some(key)) => Credential::SigningKey {
                    key_file: key.into_inner(),
                    secret_file: secret.map(Spanned::into_inner),
                },
                (Some(secret), None) => Credential::Secret(secret.into_inner()),
                (None, None) => {
                    return Err(err(
                        Some(address.span()),
                        format!(
                            "[{}] needs secret_file (HS256, GitLab's secret) or \
                             signing_key_file (ES256, see `gitlab-mailgate keygen`)",
                            kind.name()
                        ),
                    ))
                }
            };
            mailboxes.push(Mailbox {
                kind,
                template,
                credential,
                catch_all: m.catch_all,
                strict_keys: m.strict_keys,
            });
        }
        if mailboxes.is_empty() {
            return Err(err(
                None,
                "no mailbox configured: add an [incoming_email] or [service_desk_email] section"
                    .into(),
            ));
        }
        if raw.limits.max_message_size == 0 || raw.limits.deliver_deadline_secs == 0 {
            return Err(err(None, "[limits] values must be at least 1".into()));
        }

        let lm = raw.lmtp;
        for entry in &lm.listen {
            check_listen(entry.get_ref())
                .map_err(|m| err(Some(entry.span()), format!("listen: {m}")))?;
        }
        let socket_mode = u32::from_str_radix(lm.socket_mode.get_ref(), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                err(
                    Some(lm.socket_mode.span()),
                    "socket_mode must be an octal mode such as \"0660\"".into(),
                )
            })?;
        if lm.max_connections == 0 || lm.max_recipients == 0 || lm.idle_timeout_secs == 0 {
            return Err(err(None, "[lmtp] limits must be at least 1".into()));
        }

        let socket = raw
            .log
            .syslog_socket
            .unwrap_or_else(|| PathBuf::from("/dev/log"));
        let log_target = match raw.log.target {
            None if socket.exists() => LogTarget::Syslog(socket),
            None => LogTarget::Stderr,
            Some(t) => match t.get_ref().as_str() {
                "syslog" => LogTarget::Syslog(socket),
                "stderr" => LogTarget::Stderr,
                _ => {
                    return Err(err(
                        Some(t.span()),
                        "target must be \"syslog\" or \"stderr\"".into(),
                    ))
                }
            },
        };

        let guard = raw.guard.check().map_err(|m| err(None, m))?;

        Ok(Config {
            guard,
            path: path.to_path_buf(),
            gitlab: Gitlab {
                url,
                host,
                timeout: Duration::from_secs(raw.gitlab.timeout_secs),
                ca_file: raw.gitlab.ca_file,
                config_file: gitlab_file,
            },
            mailboxes,
            max_message_size: raw.limits.max_message_size,
            pipe_deadline: Duration::from_secs(raw.limits.deliver_deadline_secs),
            lmtp: Lmtp {
                listen: lm.listen.into_iter().map(Spanned::into_inner).collect(),
                socket_mode,
                max_connections: lm.max_connections,
                max_recipients: lm.max_recipients,
                idle_timeout: Duration::from_secs(lm.idle_timeout_secs),
                shutdown_grace: Duration::from_secs(lm.shutdown_grace_secs),
            },
            log_target,
            http: http::check(raw.http).map_err(|(span, m)| err(Some(span), m))?,
        })
    }
}

/// The host of an `http(s)://host[:port][/path]` URL, without the port.
fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.split(':').next()?,
    };
    (!host.is_empty() && !authority.contains('@')).then_some(host)
}

fn check_listen(entry: &str) -> Result<(), String> {
    if let Some(path) = entry.strip_prefix("unix:") {
        return if path.starts_with('/') {
            Ok(())
        } else {
            Err(format!("\"{entry}\": a unix socket needs an absolute path, e.g. \"unix:/run/gitlab-mailgate/lmtp.sock\""))
        };
    }
    entry
        .parse::<std::net::SocketAddr>()
        .map(|_| ())
        .map_err(|_| format!("\"{entry}\" is neither IP:PORT (\"127.0.0.1:2424\", \"[::1]:2424\") nor unix:/PATH"))
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

mod from_gitlab;
#[cfg(test)]
mod tests;
