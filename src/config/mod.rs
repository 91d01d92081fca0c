//! The configuration file: TOML, checked once at start-up into a [`Config`]
//! that nothing later needs to re-validate.
//!
//! Every part owns its settings (`gitlab::Settings`, `log::Target`,
//! `guard::Settings`, `http::Settings`, `lookup::Settings`, `Mailbox`;
//! the LMTP front door's `lmtp::Settings`, which sit above this module,
//! are [`LmtpSettings`] in `config/lmtp.rs`); this
//! module only reads the file, fills it in from GitLab's gitlab.yml
//! (`from_gitlab`), runs one checker per section and puts the file, line
//! and column on what they refuse. Unknown keys are errors (a typo must not
//! silently fall back to a default).

use crate::mailbox::{Mailbox, MailboxKind};
use error::Invalid;
use raw::RawConfig;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod error;
mod from_gitlab;
mod gitlab;
pub(crate) mod gitlab_yml;
mod http;
mod limits;
mod lmtp;
mod log;
mod lookup;
mod mailboxes;
mod raw;

pub use crate::log::Target as LogTarget;
pub use error::ConfigError;
pub use lmtp::Settings as LmtpSettings;

/// Pipe mode's deadline until the configuration says otherwise.
pub const DEFAULT_PIPE_DEADLINE: Duration = limits::DEFAULT_DEADLINE;

/// The default configuration file.
pub const DEFAULT_PATH: &str = "/etc/gitlab-mailgate/config.toml";

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Where and how to reach GitLab.
    pub gitlab: crate::gitlab::Settings,
    /// The configured mailboxes, `incoming_email` first.
    pub mailboxes: Vec<Mailbox>,
    /// Largest message accepted, in bytes.
    pub max_message_size: usize,
    /// Overall deadline of one `deliver` run (pipe mode).
    pub pipe_deadline: Duration,
    /// The LMTP server's settings.
    pub lmtp: LmtpSettings,
    /// Where log lines go.
    pub log_target: LogTarget,
    /// The `[http]` listener of `serve` (health and metrics).
    pub http: crate::http::Settings,
    /// The `[guard]` section: automated mail, loops, back-pressure.
    pub guard: crate::guard::Settings,
    /// The `[lookup]` listener of `serve` (Postfix's recipient check).
    pub lookup: crate::lookup::Settings,
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            crate::file::read_text(path, crate::file::CONFIG_MAX).map_err(|e| ConfigError {
                file: path.to_path_buf(),
                at: None,
                message: format!("cannot read the configuration file: {e}"),
            })?;
        Config::parse(path, &text)
    }

    /// Checks configuration `text` read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let placed = |invalid: Invalid| ConfigError {
            file: path.to_path_buf(),
            at: invalid
                .span
                .filter(|s| s.end > 0)
                .map(|s| line_col(text, s.start)),
            message: invalid.message,
        };
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            placed(match e.span() {
                Some(span) => Invalid::at(span, message),
                None => Invalid::new(message),
            })
        })?;
        let gitlab_file = from_gitlab::merge(&mut raw).map_err(|e| match e {
            from_gitlab::Error::Here(span, message) => placed(Invalid::at(span, message)),
            from_gitlab::Error::There(e) => e,
        })?;
        Config::check(path, raw, gitlab_file).map_err(placed)
    }

    /// One checker per section, in the order of the file's documentation.
    fn check(path: &Path, raw: RawConfig, gitlab_file: Option<PathBuf>) -> Result<Config, Invalid> {
        let gitlab = gitlab::check(raw.gitlab, gitlab_file)?;
        let mailboxes = mailboxes::check([
            (MailboxKind::Incoming, raw.incoming_email),
            (MailboxKind::ServiceDesk, raw.service_desk_email),
        ])?;
        let (max_message_size, pipe_deadline) = limits::check(raw.limits)?;
        let lmtp = lmtp::check(raw.lmtp)?;
        let log_target = log::check(raw.log)?;
        let guard = raw.guard.check().map_err(Invalid::new)?;
        let http = http::check(raw.http).map_err(|(span, m)| Invalid::at(span, m))?;
        let lookup = lookup::check(raw.lookup)?;
        Ok(Config {
            path: path.to_path_buf(),
            gitlab,
            mailboxes,
            max_message_size,
            pipe_deadline,
            lmtp,
            log_target,
            http,
            guard,
            lookup,
        })
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

#[cfg(test)]
mod tests;
