//! A GitLab stand-in for the benchmark (`bench/run`) that is never the slow
//! part: it answers `200 {"success":true}` at once to every
//! `POST /api/v4/internal/mail_room/*`, without checking the token, and
//! counts what it answered.
//!
//! Std only, one thread per connection, HTTP/1.1 keep-alive. Bodies are
//! read (Content-Length or chunked) and thrown away in a fixed buffer, so
//! memory stays bounded whatever the message size.
//!
//! ```text
//! cargo run --release --example fast_gitlab -- [--port P] [--count-file F]
//!     [--interval-ms N] [--max-connections N]
//! ```
//! `--port 0` (the default) picks a free port; the first line on standard
//! output is always `PORT n`. The count of mail_room requests answered is
//! available as `GET /count` (text: `requests N bytes B`) and, with
//! `--count-file`, written to that file every `--interval-ms` (default 200).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Longest request or header line accepted.
const MAX_LINE: u64 = 16 * 1024;
/// Most header lines in one request.
const MAX_HEADERS: usize = 100;
/// A client silent this long is disconnected.
const IDLE: Duration = Duration::from_secs(120);

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"success\":true}";

/// What the stand-in has answered so far.
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    bytes: AtomicU64,
    connections: AtomicUsize,
}

impl Counters {
    fn text(&self) -> String {
        format!(
            "requests {} bytes {}\n",
            self.requests.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed)
        )
    }
}

struct Options {
    port: u16,
    count_file: Option<String>,
    interval: Duration,
    max_connections: usize,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        port: 0,
        count_file: None,
        interval: Duration::from_millis(200),
        max_connections: 1024,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--port" => o.port = number(value()?)?.try_into().map_err(|_| "bad port")?,
            "--count-file" => o.count_file = Some(value()?),
            "--interval-ms" => o.interval = Duration::from_millis(number(value()?)?.max(10)),
            "--max-connections" => o.max_connections = number(value()?)? as usize,
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    Ok(o)
}

fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fast_gitlab: {e}");
            std::process::exit(2);
        }
    };
    let listener = TcpListener::bind(("127.0.0.1", o.port)).unwrap_or_else(|e| {
        eprintln!("fast_gitlab: bind 127.0.0.1:{}: {e}", o.port);
        std::process::exit(1);
    });
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    println!("PORT {port}");
    let _ = io::stdout().flush();

    let counters = Arc::new(Counters::default());
    if let Some(path) = o.count_file.clone() {
        let c = counters.clone();
        std::thread::spawn(move || loop {
            // Write then rename, so a reader never sees half a file.
            let tmp = format!("{path}.tmp");
            if std::fs::write(&tmp, c.text()).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
            std::thread::sleep(o.interval);
        });
    }

    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if counters.connections.fetch_add(1, Ordering::Relaxed) >= o.max_connections {
            counters.connections.fetch_sub(1, Ordering::Relaxed);
            continue; // dropped: closed at once
        }
        let c = counters.clone();
        let spawned = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let _ = serve(stream, &c);
                c.connections.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            counters.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// One request's head, as far as the stand-in cares.
struct Head {
    method: String,
    path: String,
    content_length: u64,
    chunked: bool,
    close: bool,
    expect_continue: bool,
}

/// Serves requests on one connection until the client closes it.
fn serve(stream: TcpStream, counters: &Counters) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IDLE))?;
    let mut reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
    let mut writer = stream;
    let mut line = Vec::with_capacity(256);
    loop {
        let Some(head) = read_head(&mut reader, &mut line)? else {
            return Ok(());
        };
        if head.expect_continue {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let size = if head.chunked {
            discard_chunked(&mut reader, &mut line)?
        } else {
            io::copy(
                &mut (&mut reader).take(head.content_length),
                &mut io::sink(),
            )?
        };
        if !head.chunked && size < head.content_length {
            return Ok(()); // the client went away mid-body
        }
        let response: Vec<u8>;
        let answer: &[u8] =
            if head.method == "POST" && head.path.starts_with("/api/v4/internal/mail_room/") {
                counters.requests.fetch_add(1, Ordering::Relaxed);
                counters.bytes.fetch_add(size, Ordering::Relaxed);
                OK
            } else if head.method == "GET" && head.path == "/count" {
                let text = counters.text();
                response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            )
                .into_bytes();
                &response
            } else {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
            };
        writer.write_all(answer)?;
        if head.close {
            return Ok(());
        }
    }
}

/// Reads one line (CRLF or LF) of at most [`MAX_LINE`] bytes into `line`,
/// without the line ending; `None` at end of input.
fn read_line<R: BufRead>(reader: &mut R, line: &mut Vec<u8>) -> io::Result<Option<()>> {
    line.clear();
    let n = reader.take(MAX_LINE).read_until(b'\n', line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(()))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Reads a request line and its headers; `None` when the client closed
/// the connection between requests.
fn read_head<R: BufRead>(reader: &mut R, line: &mut Vec<u8>) -> io::Result<Option<Head>> {
    if read_line(reader, line)?.is_none() {
        return Ok(None);
    }
    let request = String::from_utf8_lossy(line).into_owned();
    let mut parts = request.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().ok_or_else(|| bad("no path"))?.to_string();
    let version = parts.next().unwrap_or("HTTP/1.0");
    let mut head = Head {
        method,
        path,
        content_length: 0,
        chunked: false,
        close: version != "HTTP/1.1",
        expect_continue: false,
    };
    for _ in 0..MAX_HEADERS {
        read_line(reader, line)?.ok_or_else(|| bad("eof in headers"))?;
        if line.is_empty() {
            return Ok(Some(head));
        }
        let text = String::from_utf8_lossy(line);
        let Some((name, value)) = text.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => {
                head.content_length = value.parse().map_err(|_| bad("content-length"))?
            }
            "transfer-encoding" => head.chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => head.close = value.eq_ignore_ascii_case("close"),
            "expect" => head.expect_continue = value.eq_ignore_ascii_case("100-continue"),
            _ => {}
        }
    }
    Err(bad("too many headers"))
}

/// Reads and drops a chunked body; returns its decoded size.
fn discard_chunked<R: BufRead>(reader: &mut R, line: &mut Vec<u8>) -> io::Result<u64> {
    let mut total = 0;
    loop {
        read_line(reader, line)?.ok_or_else(|| bad("eof in chunk size"))?;
        let text = String::from_utf8_lossy(line);
        let hex = text.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(hex, 16).map_err(|_| bad("chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            for _ in 0..MAX_HEADERS {
                read_line(reader, line)?.ok_or_else(|| bad("eof in trailers"))?;
                if line.is_empty() {
                    return Ok(total);
                }
            }
            return Err(bad("too many trailers"));
        }
        let got = io::copy(&mut reader.take(size), &mut io::sink())?;
        if got < size {
            return Err(bad("eof in chunk"));
        }
        total += size;
        read_line(reader, line)?.ok_or_else(|| bad("eof after chunk"))?;
    }
}
