//! The `[lookup]` section's checker (the settings are `lookup::Settings`).

use super::error::Invalid;
use crate::lookup::Settings;
use crate::range;
use serde::Deserialize;
use std::net::SocketAddr;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLookup {
    listen: Option<Spanned<String>>,
    max_connections: u64,
}

impl Default for RawLookup {
    fn default() -> Self {
        RawLookup {
            listen: None,
            // Postfix holds one connection per smtpd process (default
            // process limit 100), and closes it after 10 s idle.
            max_connections: 256,
        }
    }
}

/// Checks the section.
pub(super) fn check(raw: RawLookup) -> Result<Settings, Invalid> {
    let max_connections = range::check("[lookup] max_connections", raw.max_connections, 1..=4096)
        .map_err(Invalid::new)? as usize;
    let listen = match raw.listen {
        None => None,
        Some(listen) => Some(listen.get_ref().parse::<SocketAddr>().map_err(|_| {
            Invalid::at(
                listen.span(),
                format!(
                    "listen: \"{}\" is no IP:PORT; use e.g. \"127.0.0.1:2425\" (TCP: Postfix's \
                     chrooted smtpd cannot reach a unix socket in /run)",
                    listen.get_ref()
                ),
            )
        })?),
    };
    Ok(Settings {
        listen,
        max_connections,
    })
}
