//! Host name resolution for the GitLab client, cached for a short time.
//!
//! ureq resolves on every request, and with a timeout configured it does so
//! on a new thread each time — even for `127.0.0.1` and even when it then
//! reuses a pooled connection. At a thousand messages a second that thread
//! was a measurable part of the cost (bench/README.md). GitLab is one host,
//! so the answer is kept for [`TTL`]; failures are never cached.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a resolved address is used before asking again.
pub const TTL: Duration = Duration::from_secs(30);

struct Entry {
    authority: String,
    addrs: Vec<SocketAddr>,
    at: Instant,
}

/// ureq's resolver behind a one-entry cache.
#[derive(Default)]
pub struct CachingResolver {
    inner: DefaultResolver,
    cache: Mutex<Option<Entry>>,
}

impl std::fmt::Debug for CachingResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CachingResolver")
    }
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = cache.as_ref() {
            if e.authority == authority && e.at.elapsed() < TTL {
                let mut addrs = self.empty();
                e.addrs.iter().for_each(|a| addrs.push(*a));
                return Ok(addrs);
            }
        }
        drop(cache);
        let addrs = self.inner.resolve(uri, config, timeout)?;
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some(Entry {
            authority: authority.to_string(),
            addrs: addrs.iter().copied().collect(),
            at: Instant::now(),
        });
        Ok(addrs)
    }
}
