//! The `[http]` listener of `serve`: `GET /livez`, `/readyz` and
//! `/metrics`, nothing else (404, or 405 for another method).
//!
//! A fixed pool of [`WORKERS`] threads accepts on the one TCP socket and
//! answers one request per connection (`Connection: close`), each within
//! [`DEADLINE`] and [`MAX_REQUEST`] bytes; so however the clients behave,
//! it costs at most that many threads and never touches LMTP delivery.
//! Requests are parsed by `httparse`. The loop around it is written here
//! because `tiny_http` (which builds with Rust 1.95) starts a thread per
//! connection without bound and has no read timeout.

use crate::health::Health;
use crate::log::Log;
use crate::metrics::Metrics;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Threads answering requests: probes and scrapes are rare and quick.
pub const WORKERS: usize = 4;
/// Largest request head read; more is answered 431.
pub const MAX_REQUEST: usize = 8 * 1024;
/// Time for a client to send its request head (then 408) and to take the
/// answer.
pub const DEADLINE: Duration = Duration::from_secs(3);

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

/// What the workers answer from.
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

/// Binds the configured address and starts the workers; `Ok(None)` when
/// `[http]` is off.
pub fn start(
    settings: &Settings,
    health: &Arc<Health>,
    metrics: &Arc<Metrics>,
    log: &Log,
) -> Result<Option<SocketAddr>, String> {
    let Some(addr) = settings.listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr).map_err(|e| format!("[http] listen {addr}: {e}"))?;
    let bound = listener.local_addr().unwrap_or(addr);
    let answers = Arc::new(Answers {
        health: health.clone(),
        metrics: metrics.clone(),
    });
    for _ in 0..WORKERS {
        let listener = listener
            .try_clone()
            .map_err(|e| format!("[http] listen {addr}: {e}"))?;
        let (answers, log) = (answers.clone(), log.clone());
        std::thread::Builder::new()
            .name("http".into())
            .spawn(move || worker(&listener, &answers, &log))
            .map_err(|e| format!("cannot start an http thread: {e}"))?;
    }
    log.info(&format!("http on {bound}: /livez, /readyz, /metrics"));
    Ok(Some(bound))
}

fn worker(listener: &TcpListener, answers: &Answers, log: &Log) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = answer(stream, answers) {
                    // Timeouts and hang-ups are the client's business.
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) {
                        log.info(&format!("http: {e}"));
                    }
                }
            }
            // Out of file descriptors and the like: do not spin.
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Reads one request head and writes its response.
fn answer(mut stream: TcpStream, answers: &Answers) -> io::Result<()> {
    let start = Instant::now();
    stream.set_write_timeout(Some(DEADLINE))?;
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    let response = loop {
        let left = DEADLINE.saturating_sub(start.elapsed());
        if left.is_zero() {
            break status(408, "request timeout\n");
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut buf[len..]) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break status(408, "request timeout\n")
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => break route(&request, answers),
            Ok(httparse::Status::Partial) if len < MAX_REQUEST => continue,
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                break status(431, "request head too large\n")
            }
            Err(_) => break status(400, "bad request\n"),
        }
    };
    stream.write_all(&response)?;
    stream.flush()
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
