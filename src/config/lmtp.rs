//! The `[lmtp]` section: its settings, which the LMTP front door reads as
//! `lmtp::Settings` (defined here because that front door sits above the
//! configuration), and their checker.

use super::error::Invalid;
use crate::range;
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

/// The `[lmtp]` settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `host:port`, `[v6]:port` or `unix:/path` entries.
    pub listen: Vec<String>,
    /// Mode of created unix sockets.
    pub socket_mode: u32,
    /// Connections served at once; a new one takes the slot of the one
    /// idle longest outside a transaction, or gets `421` when none is.
    pub max_connections: usize,
    /// Connections one TCP address may hold at once.
    pub max_connections_per_peer: usize,
    /// Recipients per transaction; more get `452`.
    pub max_recipients: usize,
    /// A client that completes no command and sends no message bytes
    /// this long is disconnected (trickling a command does not count).
    pub idle_timeout: Duration,
    /// A client must have completed LHLO this long after connecting.
    pub lhlo_timeout: Duration,
    /// The idle limit outside a transaction (after LHLO, before MAIL,
    /// between messages), when shorter than `idle_timeout`.
    pub between_messages_timeout: Duration,
    /// On SIGTERM, how long transactions in flight may take to finish.
    pub shutdown_grace: Duration,
}

/// The section as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLmtp {
    listen: Vec<Spanned<String>>,
    socket_mode: Spanned<String>,
    max_connections: usize,
    max_connections_per_peer: usize,
    max_recipients: usize,
    idle_timeout_secs: u64,
    lhlo_timeout_secs: u64,
    between_messages_timeout_secs: u64,
    shutdown_grace_secs: u64,
}

impl Default for RawLmtp {
    fn default() -> Self {
        RawLmtp {
            listen: vec![Spanned::new(0..0, "127.0.0.1:2424".to_string())],
            socket_mode: Spanned::new(0..0, "0660".to_string()),
            max_connections: 64,
            max_connections_per_peer: 32,
            max_recipients: 100,
            idle_timeout_secs: 300,
            lhlo_timeout_secs: 10,
            between_messages_timeout_secs: 30,
            shutdown_grace_secs: 30,
        }
    }
}

/// Checks the section.
pub(super) fn check(lm: RawLmtp) -> Result<Settings, Invalid> {
    for entry in &lm.listen {
        check_listen(entry.get_ref())
            .map_err(|m| Invalid::at(entry.span(), format!("listen: {m}")))?;
    }
    let socket_mode = u32::from_str_radix(lm.socket_mode.get_ref(), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            Invalid::at(
                lm.socket_mode.span(),
                "socket_mode must be an octal mode such as \"0660\"",
            )
        })?;
    let n = |key, value, range| range::check(key, value, range).map_err(Invalid::new);
    let secs = |key, value, range| Ok(Duration::from_secs(n(key, value, range)?));
    Ok(Settings {
        max_connections: n(
            "[lmtp] max_connections",
            lm.max_connections as u64,
            1..=4096,
        )? as usize,
        max_connections_per_peer: n(
            "[lmtp] max_connections_per_peer",
            lm.max_connections_per_peer as u64,
            1..=4096,
        )? as usize,
        max_recipients: n(
            "[lmtp] max_recipients",
            lm.max_recipients as u64,
            1..=10_000,
        )? as usize,
        idle_timeout: secs("[lmtp] idle_timeout_secs", lm.idle_timeout_secs, 1..=3600)?,
        lhlo_timeout: secs("[lmtp] lhlo_timeout_secs", lm.lhlo_timeout_secs, 1..=300)?,
        between_messages_timeout: secs(
            "[lmtp] between_messages_timeout_secs",
            lm.between_messages_timeout_secs,
            1..=3600,
        )?,
        shutdown_grace: secs(
            "[lmtp] shutdown_grace_secs",
            lm.shutdown_grace_secs,
            0..=3600,
        )?,
        listen: lm.listen.into_iter().map(Spanned::into_inner).collect(),
        socket_mode,
    })
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
