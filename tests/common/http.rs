//! A minimal HTTP/1.1 client for `serve`'s `[http]` listener, and the
//! samples of a Prometheus text exposition as a map.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// An HTTP answer: status, head (status line and headers) and body.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// The status code (0 when the connection closed without one).
    pub status: u16,
    /// The status line and headers.
    pub head: String,
    /// The body.
    pub body: String,
}

/// Sends `raw` to `addr` and reads the answer to the end (the server
/// closes after one response); at most 15 s.
pub fn http_raw(addr: &str, raw: &[u8]) -> HttpAnswer {
    let mut stream = TcpStream::connect(addr).expect("connect to the http listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream.write_all(raw).expect("send the request");
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    parse_answer(&bytes)
}

/// `GET path` with an optional `Accept` header.
pub fn http_get(addr: &str, path: &str, accept: Option<&str>) -> HttpAnswer {
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    let raw = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}\r\n");
    http_raw(addr, raw.as_bytes())
}

/// Splits an answer into status, head and body.
pub fn parse_answer(bytes: &[u8]) -> HttpAnswer {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    HttpAnswer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// The samples of a text exposition: `name{labels}` (as written) → value.
pub fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}
