//! The `[http]` section's checker (the settings are `http::Settings`).

use crate::http::Settings as Http;
use serde::Deserialize;
use std::net::SocketAddr;
use std::ops::Range;
use toml::Spanned;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    listen: Option<Spanned<String>>,
}

/// Checks the section; an error comes with the span of the bad value.
pub(super) fn check(raw: RawHttp) -> Result<Http, (Range<usize>, String)> {
    let Some(listen) = raw.listen else {
        return Ok(Http::default());
    };
    let text = listen.get_ref();
    let addr = text.parse::<SocketAddr>().map_err(|_| {
        let why = if text.starts_with("unix:") {
            "the HTTP listener is TCP only"
        } else {
            "it is no IP:PORT"
        };
        (
            listen.span(),
            format!("listen: \"{text}\": {why}; use e.g. \"127.0.0.1:9725\" (loopback) or \"[::1]:9725\""),
        )
    })?;
    Ok(Http { listen: Some(addr) })
}
