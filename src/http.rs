//! The `[http]` listener of `serve`: `GET /livez`, `/readyz` and
//! `/metrics`, nothing else (404, or 405 for another method).
//!
//! One thread runs an event loop (`event_loop`: `poll(2)` over
//! non-blocking sockets) and answers one request per connection
//! (`Connection: close`). Not a pool of worker threads: a worker blocked
//! on a silent client is a worker no probe gets, so a handful of idle or
//! trickling connections used to leave `/livez` unanswered past a
//! kubelet's 1 s timeout (issue 18 item 5). In the loop a silent client
//! only holds a slot in a table; every answer is computed in microseconds
//! (`/metrics` encoding too), so it is computed inline. The loop is ~270
//! lines on the `libc` we already depend on; `mio` would bring a portable
//! epoll wrapper we do not need for one socket and at most
//! [`MAX_CONNECTIONS`] connections, and `tiny_http` (which builds with
//! Rust 1.95) starts a thread per connection without bound and has no
//! read timeout. Requests are parsed by `httparse`.
//!
//! Bounds: [`MAX_CONNECTIONS`] open (fewer if the process may open few
//! files: see [`start`]; when full, the oldest connection that has not
//! sent a whole request is closed, so a new probe always gets in),
//! [`MAX_REQUEST`] bytes of request each, and [`DEADLINE`] from accept
//! for the whole exchange (then 408, or close). None of it touches LMTP
//! delivery.

mod event_loop;

use crate::health::Health;
use crate::log::Log;
use crate::metrics::Metrics;
use event_loop::Limits;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

/// Connections open at once, at most: the 1,000 idle and 8 trickling
/// clients of the issue fit, and at [`MAX_REQUEST`] each the requests
/// take at most 8 MiB.
pub const MAX_CONNECTIONS: usize = 1024;
/// Largest request head read; more is answered 431.
pub const MAX_REQUEST: usize = 8 * 1024;
/// Time from accept for a client to send its request head (then 408) and
/// to take the answer.
pub const DEADLINE: Duration = Duration::from_secs(3);
/// The soft limit on open files `serve` raises itself to (within the hard
/// limit) when it has an `[http]` listener: [`MAX_CONNECTIONS`] here take
/// at most half of it, the other half is for LMTP clients and their GitLab
/// connections, files and logs.
const OPEN_FILES: u64 = 16 * 1024;
/// Connects the kernel queues until the loop accepts them; it caps this at
/// `net.core.somaxconn`. std's default is 128: a burst of connects beyond
/// that would have a probe's SYN dropped and resent only a second later.
const BACKLOG: libc::c_int = 4096;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const PLAIN: &str = "text/plain; charset=utf-8";

/// The `[http]` settings: where `serve` answers `/livez`, `/readyz` and
/// `/metrics`. Off unless `listen` is set; TCP only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// The address to listen on; `None`: no HTTP listener.
    pub listen: Option<SocketAddr>,
}

/// What the answers come from.
struct Answers {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

/// The line `check` prints about the listener.
pub fn describe(settings: &Settings) -> String {
    match settings.listen {
        Some(addr) => format!("http listener on {addr}: GET /livez, /readyz, /metrics"),
        None => "http listener off ([http] listen not set): no /livez, /readyz, /metrics".into(),
    }
}

/// Starts the loop's thread on the socket systemd passed (`inherited`,
/// see `lmtp::listen`), else on the configured address, which it binds;
/// `Ok(None)` when `[http]` is off and systemd passed none. A passed
/// socket is served even with `[http]` off: systemd holds it open, so
/// leaving it unserved would leave a probe hanging instead of refused.
pub fn start(
    settings: &Settings,
    inherited: Option<TcpListener>,
    health: &Arc<Health>,
    metrics: &Arc<Metrics>,
    log: &Log,
) -> Result<Option<SocketAddr>, String> {
    let (listener, addr, from) = match (inherited, settings.listen) {
        (Some(l), _) => {
            let addr = l
                .local_addr()
                .map_err(|e| format!("[http] socket from systemd: {e}"))?;
            (l, addr, " (systemd)")
        }
        (None, Some(addr)) => {
            let l = TcpListener::bind(addr).map_err(|e| format!("[http] listen {addr}: {e}"))?;
            (l, addr, "")
        }
        (None, None) => return Ok(None),
    };
    if !from.is_empty() && settings.listen != Some(addr) {
        log.warn(&format!(
            "http: systemd passed {addr}, [http] listen is {}: serving systemd's",
            settings.listen.map_or("off".into(), |a| a.to_string())
        ));
    }
    // SAFETY: listen(2) on the socket `listener` owns; again on a listening
    // socket it only changes the queue length.
    unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) };
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("[http] listen {addr}: {e}"))?;
    let bound = listener.local_addr().unwrap_or(addr);
    // The kernel's usual soft limit (1,024) would leave LMTP with no
    // descriptor once idle HTTP clients took them all (EMFILE): raise it
    // towards the hard limit (as Go's runtime does for every program), and
    // never let HTTP hold more than half of what we got.
    let open_files = event_loop::raise_open_files(OPEN_FILES);
    let limits = Limits {
        max_open: MAX_CONNECTIONS.min(usize::try_from(open_files / 2).unwrap_or(usize::MAX)),
        max_request: MAX_REQUEST,
        deadline: DEADLINE,
    };
    if limits.max_open < MAX_CONNECTIONS {
        log.warn(&format!(
            "http: open-file limit {open_files}: at most {} connections at once",
            limits.max_open
        ));
    }
    let answers = Answers {
        health: health.clone(),
        metrics: metrics.clone(),
    };
    let thread_log = log.clone();
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            let late = status(408, "request timeout\n");
            let answer = |request: &[u8]| respond(request, &answers);
            event_loop::run(&listener, limits, answer, &late, &thread_log)
        })
        .map_err(|e| format!("cannot start the http thread: {e}"))?;
    log.info(&format!("http on {bound}{from}: /livez, /readyz, /metrics"));
    Ok(Some(bound))
}

/// The response once `request` holds a whole request head; `None` while
/// it may still become one (shorter than [`MAX_REQUEST`]).
fn respond(request: &[u8], answers: &Answers) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(request) {
        Ok(httparse::Status::Complete(_)) => Some(route(&parsed, answers)),
        Ok(httparse::Status::Partial) if request.len() < MAX_REQUEST => None,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            Some(status(431, "request head too large\n"))
        }
        Err(_) => Some(status(400, "bad request\n")),
    }
}

/// The response to a complete request head.
fn route(request: &httparse::Request, answers: &Answers) -> Vec<u8> {
    let path = request.path.unwrap_or("");
    let path = path.split('?').next().unwrap_or(path);
    let method = request.method.unwrap_or("");
    if !matches!(path, "/livez" | "/readyz" | "/metrics") {
        return status(404, "not found: try /livez, /readyz or /metrics\n");
    }
    if !matches!(method, "GET" | "HEAD") {
        return response(405, PLAIN, "method not allowed\n", &["Allow: GET, HEAD"]);
    }
    let head_only = method == "HEAD";
    let (code, content_type, body) = match path {
        "/livez" => with_type(answers.health.livez()),
        "/readyz" => with_type(answers.health.readyz()),
        _ => {
            let om = wants_openmetrics(request);
            let content_type = if om { OPENMETRICS } else { PROMETHEUS_TEXT };
            (200, content_type, answers.metrics.encode(om))
        }
    };
    let mut bytes = response(code, content_type, &body, &[]);
    if head_only {
        bytes.truncate(bytes.len() - body.len());
    }
    bytes
}

fn with_type((code, body): (u16, String)) -> (u16, &'static str, String) {
    (code, PLAIN, body)
}

/// Whether the `Accept` header names OpenMetrics text (Prometheus asks
/// for it first); anything else gets the 0.0.4 text format.
fn wants_openmetrics(request: &httparse::Request) -> bool {
    request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("accept"))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .flat_map(|value| value.split(','))
        .any(|part| {
            let mut params = part.split(';').map(str::trim);
            params.next() == Some("application/openmetrics-text")
                && params.all(|p| p.replace(' ', "") != "q=0")
        })
}

fn status(code: u16, body: &str) -> Vec<u8> {
    response(code, PLAIN, body, &[])
}

fn response(code: u16, content_type: &str, body: &str, extra: &[&str]) -> Vec<u8> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    for line in extra {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer_to(raw: &str) -> String {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        assert!(request.parse(raw.as_bytes()).unwrap().is_complete());
        let answers = Answers {
            health: Arc::default(),
            metrics: Arc::new(Metrics::new(&[])),
        };
        String::from_utf8(route(&request, &answers)).unwrap()
    }

    #[test]
    fn routes_and_methods() {
        assert!(answer_to("GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        let post = answer_to("POST /metrics HTTP/1.1\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405 ") && post.contains("Allow: GET, HEAD"));
        let head = answer_to("HEAD /livez HTTP/1.1\r\n\r\n");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
    }

    #[test]
    fn negotiates_the_format() {
        let om = answer_to(
            "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\r\n",
        );
        assert!(om.contains(OPENMETRICS) && om.ends_with("# EOF\n"));
        let text = answer_to("GET /metrics HTTP/1.1\r\nAccept: text/plain\r\n\r\n");
        assert!(text.contains(PROMETHEUS_TEXT) && !text.contains("# EOF"));
        let refused =
            answer_to("GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; q=0\r\n\r\n");
        assert!(refused.contains(PROMETHEUS_TEXT));
    }
}
