//! The `[log]` section's checker (the settings are `log::Target`).

use super::error::Invalid;
use crate::log::Target;
use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

/// The section as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    target: Option<Spanned<String>>,
    syslog_socket: Option<PathBuf>,
}

/// Checks the section: syslog when its socket exists, unless told.
pub(super) fn check(raw: RawLog) -> Result<Target, Invalid> {
    let socket = raw
        .syslog_socket
        .unwrap_or_else(|| PathBuf::from("/dev/log"));
    match raw.target {
        None if socket.exists() => Ok(Target::Syslog(socket)),
        None => Ok(Target::Stderr),
        Some(t) => match t.get_ref().as_str() {
            "syslog" => Ok(Target::Syslog(socket)),
            "stderr" => Ok(Target::Stderr),
            _ => Err(Invalid::at(
                t.span(),
                "target must be \"syslog\" or \"stderr\"",
            )),
        },
    }
}
