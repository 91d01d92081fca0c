//! GitLab's internal mail API: one POST per recipient to
//! `{url}/api/v4/internal/mail_room/{mailbox}`, signed with a fresh JWT.
//!
//! The body is the message exactly as received with one `Delivered-To:`
//! line on top, with a `Content-Length`, streamed from wherever the
//! message is kept (memory or its temporary file, see `spool`): no copy
//! per recipient, and memory does not grow with the message.
//! [`Client::post`] says what happened on the wire, as a [`Posted`]; what
//! that means for the message (sent, deferred, bounced) is decided by
//! `outcome`, not here.

use crate::jwt::{self, Credential, Signer};
use crate::mailbox::MailboxKind;
use crate::spool::Message;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

mod resolver;
mod retry_after;

/// Idle connections to GitLab kept for reuse.
const MAX_IDLE: usize = 64;

/// Messages up to this size are sent from one buffer (one write with the
/// request head); larger ones are streamed, so memory stays at one copy.
const COPY_LIMIT: usize = 64 * 1024;

/// The header carrying the JWT.
pub const AUTH_HEADER: &str = "Gitlab-Mailroom-Api-Request";

/// Debian's bundle of trusted CAs, used when it exists so that the
/// administrator's `update-ca-certificates` applies here too.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How long a secret or signing key read from disk is used before the file
/// is read again: a rotated key takes effect within this time, without a
/// restart, and busy servers do not read the file for every message.
pub const SECRET_TTL: Duration = Duration::from_secs(10);

/// How far `iat` is put in the past. GitLab accepts `iat` from its own
/// now − 300 s to its now, without leeway; backdating by B tolerates
/// GitLab's clock being up to B behind ours and up to 300 − B ahead.
/// The middle, 150, tolerates 150 s either way: `check` fails above 120.
pub const IAT_BACKDATE_SECS: u64 = 150;

/// The `[gitlab]` settings: where and how to reach GitLab.
#[derive(Debug, Clone)]
pub struct Settings {
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

/// What happened to one POST, as seen on the wire; what it means is
/// `outcome`'s to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    /// GitLab (or something in front of it) answered.
    Answer {
        /// The HTTP status.
        status: u16,
        /// Its `Retry-After`, when present and readable.
        retry_after: Option<Duration>,
        /// The body is GitLab's own refusal, `{"success":false,
        /// "message":"…"}` (lib/api/internal/mail_room.rb), not a proxy's.
        gitlab_refusal: bool,
    },
    /// GitLab could not be reached: refused, no route, DNS, TLS handshake.
    /// Nothing was sent.
    Unreachable(String),
    /// The connection broke or timed out during the request: GitLab may or
    /// may not have the message.
    Lost(String),
    /// Nothing was sent because of a local problem: the secret or signing
    /// key could not be read or used.
    Local(String),
}

/// Signing material recently read, by file.
type SignerCache = Mutex<Vec<Cached>>;

/// One file's signer, when it was read, and whether a thread is reading
/// it again right now.
struct Cached {
    path: PathBuf,
    signer: Signer,
    at: Instant,
    refreshing: bool,
}

/// A client for one GitLab instance; cheap to share between threads.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    url: String,
    signers: Arc<SignerCache>,
}

impl Client {
    /// Builds the HTTP agent: timeouts, no redirects, trusted CAs.
    pub fn new(config: &Settings) -> Result<Client, String> {
        // Reading and parsing the CA bundle costs milliseconds per pipe-mode run:
        // only pay for it when TLS is used.
        let roots = if config.url.starts_with("https://") {
            root_certs(config.ca_file.as_deref())?
        } else {
            RootCerts::WebPki
        };
        let agent_config = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .timeout_connect(Some(config.timeout.min(Duration::from_secs(10))))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("gitlab-mailgate/", env!("CARGO_PKG_VERSION")))
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            // Postfix runs up to 20 deliveries at once; ureq's default of 3
            // idle connections made every 5th message open a new one.
            .max_idle_connections(MAX_IDLE)
            .max_idle_connections_per_host(MAX_IDLE)
            .build();
        let agent = ureq::Agent::with_parts(
            agent_config,
            ureq::unversioned::transport::DefaultConnector::default(),
            resolver::CachingResolver::default(),
        );
        Ok(Client {
            agent,
            url: config.url.clone(),
            signers: Arc::default(),
        })
    }

    /// The API endpoint for `mailbox`.
    pub fn endpoint(&self, mailbox: MailboxKind) -> String {
        format!("{}/api/v4/internal/mail_room/{}", self.url, mailbox.name())
    }

    /// Posts [`delivered_to_line`]`(delivered_to)` + `message` to `mailbox`,
    /// signed as `credential` says (its file re-read every [`SECRET_TTL`],
    /// so rotation needs no restart).
    pub fn post(
        &self,
        mailbox: MailboxKind,
        credential: &Credential,
        delivered_to: &str,
        message: &Message,
    ) -> Posted {
        let token = self
            .signer(credential)
            .and_then(|signer| jwt::token(&signer, issued_at()).map_err(|e| e.to_string()));
        let token = match token {
            Ok(t) => t,
            Err(e) => return Posted::Local(e),
        };
        let prefix = delivered_to_line(delivered_to);
        let len = prefix.len() + message.len();
        let request = self
            .agent
            .post(self.endpoint(mailbox))
            .header(AUTH_HEADER, token)
            .header("Content-Length", len.to_string())
            .content_type("text/plain");
        let result = match message.in_memory().filter(|_| len <= COPY_LIMIT) {
            Some(bytes) => {
                let mut body = Vec::with_capacity(len);
                body.extend_from_slice(prefix.as_bytes());
                body.extend_from_slice(bytes);
                request.send(&body[..])
            }
            None => {
                let mut body = prefix.as_bytes().chain(message.reader());
                request.send(ureq::SendBody::from_reader(&mut body))
            }
        };
        match result {
            Ok(mut response) => {
                // Read (a bounded part of) the answer so the connection can
                // be reused, and to tell GitLab's own refusal from a proxy's.
                let body = response
                    .body_mut()
                    .with_config()
                    .limit(64 * 1024)
                    .read_to_vec()
                    .unwrap_or_default();
                Posted::Answer {
                    gitlab_refusal: is_gitlab_refusal(&body),
                    status: response.status().as_u16(),
                    retry_after: response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry_after::parse(v, SystemTime::now())),
                }
            }
            Err(e) => transport_error(&e),
        }
    }

    /// The secret or key `credential` names, from the cache when read less
    /// than [`SECRET_TTL`] ago. The file is read outside the lock, by one
    /// thread at a time: the others go on with the key they have, so a
    /// slow or hung read never holds up posting. Errors are not cached.
    fn signer(&self, credential: &Credential) -> Result<Signer, String> {
        let path = credential.file();
        let lock = || self.signers.lock().unwrap_or_else(|p| p.into_inner());
        {
            let mut cache = lock();
            if let Some(c) = cache.iter_mut().find(|c| c.path == path) {
                if c.at.elapsed() < SECRET_TTL || c.refreshing {
                    return Ok(c.signer.clone());
                }
                c.refreshing = true;
            }
        }
        let loaded = credential.load();
        let mut cache = lock();
        cache.retain(|c| c.path != path || loaded.is_err());
        match loaded {
            Ok(signer) => {
                cache.push(Cached {
                    path: path.to_path_buf(),
                    signer: signer.clone(),
                    at: Instant::now(),
                    refreshing: false,
                });
                Ok(signer)
            }
            Err(e) => {
                // The next post reads the file again.
                cache
                    .iter_mut()
                    .filter(|c| c.path == path)
                    .for_each(|c| c.refreshing = false);
                Err(e)
            }
        }
    }

    /// Posts with a deliberately invalid token: GitLab's 401 proves the
    /// route exists without creating anything (`outcome::Probe` reads
    /// it). Also returns the answer's `Date`, for the clock check.
    pub fn probe(&self, mailbox: MailboxKind) -> (Posted, Option<String>) {
        let result = self
            .agent
            .post(self.endpoint(mailbox))
            .header(AUTH_HEADER, "invalid")
            .content_type("text/plain")
            .send("");
        match result {
            Ok(response) => {
                let date = response
                    .headers()
                    .get("date")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let posted = Posted::Answer {
                    status: response.status().as_u16(),
                    retry_after: None,
                    gitlab_refusal: false,
                };
                (posted, date)
            }
            Err(e) => (transport_error(&e), None),
        }
    }
}

/// Whether `body` is GitLab's own refusal of a message: the mail_room
/// endpoint answers `{"success":false,"message":REASON}` when the message
/// is over its job size limit, after mailing the sender that reason
/// (Gitlab::Email::FailureHandler). A proxy's or a web server's error page
/// is not.
fn is_gitlab_refusal(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Answer {
        success: bool,
        message: String,
    }
    serde_json::from_slice::<Answer>(body).is_ok_and(|a| !a.success && !a.message.is_empty())
}

#[cfg(test)]
#[test]
fn gitlabs_refusal_is_told_from_a_proxys_400() {
    let own = br#"{"success":false,"message":"This message is too large"}"#;
    assert!(is_gitlab_refusal(own));
    for other in [
        &b"<html><head><title>400 The plain HTTP request was sent to HTTPS port</title>"[..],
        br#"{"error":"mailbox_type is missing"}"#,
        br#"{"success":true}"#,
        b"",
    ] {
        assert!(!is_gitlab_refusal(other));
    }
}

/// The line put on top of every message we post. The key we log is looked
/// up with the same address (see `deliver`), so it is the key GitLab finds
/// in the posted bytes.
pub fn delivered_to_line(delivered_to: &str) -> String {
    format!("Delivered-To: {delivered_to}\r\n")
}

/// `iat` [`IAT_BACKDATE_SECS`] in the past: GitLab allows no leeway for
/// the future, and its clock may be behind ours.
fn issued_at() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().saturating_sub(IAT_BACKDATE_SECS))
}

/// Whether a transport error happened before anything was sent
/// ([`Posted::Unreachable`]) or during the request ([`Posted::Lost`]).
fn transport_error(e: &ureq::Error) -> Posted {
    use ureq::Error as E;
    match e {
        E::HostNotFound | E::ConnectionFailed | E::Tls(_) | E::Rustls(_) => {
            Posted::Unreachable(describe(e))
        }
        E::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            Posted::Unreachable(describe(e))
        }
        // ureq hands a failed TLS handshake (untrusted certificate, wrong
        // name) over as an I/O error wrapping the rustls error.
        E::Io(io)
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>()) =>
        {
            Posted::Unreachable(describe(e))
        }
        _ => Posted::Lost(describe(e)),
    }
}

/// A one-line description of a transport error, without the URL's query
/// or anything from the request headers.
pub fn describe(e: &ureq::Error) -> String {
    e.to_string().lines().next().unwrap_or("error").to_string()
}

fn root_certs(ca_file: Option<&Path>) -> Result<RootCerts, String> {
    let mut certs: Vec<Certificate<'static>> = Vec::new();
    for path in [Some(Path::new(SYSTEM_CA_BUNDLE)), ca_file]
        .into_iter()
        .flatten()
    {
        let pem = match crate::file::read(path, crate::file::CA_MAX) {
            Ok((pem, _)) => pem,
            Err(_) if path == Path::new(SYSTEM_CA_BUNDLE) => continue,
            Err(e) => return Err(format!("ca_file {}: {e}", path.display())),
        };
        let before = certs.len();
        for item in ureq::tls::parse_pem(&pem) {
            if let Ok(PemItem::Certificate(c)) = item {
                certs.push(c);
            }
        }
        if certs.len() == before && Some(path) == ca_file {
            return Err(format!(
                "ca_file {}: no PEM certificate in it",
                path.display()
            ));
        }
    }
    Ok(if certs.is_empty() {
        RootCerts::WebPki
    } else {
        RootCerts::from(certs)
    })
}
