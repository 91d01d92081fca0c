//! The `[gitlab]` section's checker (the settings are `gitlab::Settings`).

use super::error::Invalid;
use crate::gitlab::Settings;
use crate::range;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// The section as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGitlab {
    pub(super) url: Option<Spanned<String>>,
    pub(super) config_file: Option<Spanned<PathBuf>>,
    pub(super) host: Option<String>,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
    ca_file: Option<PathBuf>,
}

fn default_timeout() -> u64 {
    30
}

/// Checks the section; `config_file` is GitLab's file when settings were
/// taken from it.
pub(super) fn check(raw: RawGitlab, config_file: Option<PathBuf>) -> Result<Settings, Invalid> {
    let Some(raw_url) = raw.url else {
        return Err(Invalid::new(
            "[gitlab] needs url = \"https://gitlab.example.com\", or config_file = \
             GitLab's gitlab.yml to take it from there",
        ));
    };
    let url = raw_url.get_ref().trim_end_matches('/').to_string();
    let host = match (raw.host, url_host(&url)) {
        (Some(h), _) => h,
        (None, Some(h)) => h.to_string(),
        (None, None) => {
            return Err(Invalid::at(
                raw_url.span(),
                "url must be http://HOST[:PORT][/PATH] or https://…, e.g. \"https://gitlab.example.com\"",
            ))
        }
    };
    let timeout_secs =
        range::check("[gitlab] timeout_secs", raw.timeout_secs, 1..=600).map_err(Invalid::new)?;
    Ok(Settings {
        url,
        host,
        timeout: Duration::from_secs(timeout_secs),
        ca_file: raw.ca_file,
        config_file,
    })
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
