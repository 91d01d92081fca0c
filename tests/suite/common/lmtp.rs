//! A raw-bytes LMTP client ([`Client`]) over loopback TCP or a unix
//! socket: it can send anything, including bytes no well-behaved client
//! would, and reads (multi-line) replies as (code, enhanced code).
//!
//! Every read has a timeout of [`WAIT`]; nothing here asserts on timing.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

/// The longest a test waits for one reply, a log line or a start.
pub const WAIT: Duration = Duration::from_secs(30);

/// One end of an LMTP connection, TCP or a unix socket: what [`Client`]
/// needs beyond reading and writing.
pub trait Stream: Read + Write + Send + 'static {
    /// Another handle on the same connection.
    fn try_clone_stream(&self) -> io::Result<Box<dyn Stream>>;
    /// Closes both directions at once.
    fn shutdown_both(&self) -> io::Result<()>;
    /// Sets the read timeout.
    fn set_read_limit(&self, limit: Duration) -> io::Result<()>;
}

/// Implements [`Stream`] for socket types with the usual std methods.
macro_rules! impl_stream {
    ($($socket:ty),*) => {$(
        impl Stream for $socket {
            fn try_clone_stream(&self) -> io::Result<Box<dyn Stream>> {
                Ok(Box::new(self.try_clone()?))
            }
            fn shutdown_both(&self) -> io::Result<()> {
                self.shutdown(Shutdown::Both)
            }
            fn set_read_limit(&self, limit: Duration) -> io::Result<()> {
                self.set_read_timeout(Some(limit))
            }
        }
    )*};
}
impl_stream!(TcpStream, UnixStream);

/// One reply: the code, the enhanced code (`""` when none) and its last
/// line, for messages.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// `X.Y.Z`, or empty.
    pub enhanced: String,
    /// The last line, without its ending.
    pub line: String,
}

impl Reply {
    /// Panics unless this is `code enhanced`.
    pub fn expect(&self, code: u16, enhanced: &str) {
        assert!(
            self.code == code && self.enhanced == enhanced,
            "wanted {code} {enhanced}, got {:?}",
            self.line
        );
    }
}

/// A raw LMTP client: writes any bytes, reads replies.
pub struct Client {
    stream: Box<dyn Stream>,
    reader: BufReader<Box<dyn Stream>>,
}

impl Client {
    /// Connects to the TCP address `addr` with a read timeout of [`WAIT`].
    pub fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        Client::over(Box::new(stream))
    }

    /// Connects to the unix socket `path` with a read timeout of [`WAIT`].
    pub fn unix(path: &Path) -> Client {
        let stream =
            UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        Client::over(Box::new(stream))
    }

    /// Talks over `stream`, an already connected TCP socket (e.g. one
    /// bound to another loopback address first).
    pub fn over_tcp(stream: TcpStream) -> Client {
        Client::over(Box::new(stream))
    }

    fn over(stream: Box<dyn Stream>) -> Client {
        stream.set_read_limit(WAIT).expect("timeout");
        let reader = BufReader::new(stream.try_clone_stream().expect("clone"));
        Client { stream, reader }
    }

    /// Writes `bytes` (all of them).
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to serve");
        self.stream.flush().expect("flush");
    }

    /// Another handle on the connection, e.g. for a writer thread.
    pub fn stream(&self) -> Box<dyn Stream> {
        self.stream.try_clone_stream().expect("clone")
    }

    /// Writes `bytes` from another thread, so a large write and reading
    /// the replies cannot block each other. The thread's result says
    /// whether everything was written.
    pub fn send_in_background(&self, bytes: Vec<u8>) -> JoinHandle<io::Result<()>> {
        let mut stream = self.stream();
        std::thread::spawn(move || stream.write_all(&bytes))
    }

    /// Reads one (possibly multi-line) reply; `None` at the end of the
    /// stream (or a reset). Panics when none comes within [`WAIT`].
    pub fn reply(&mut self) -> Option<Reply> {
        loop {
            let mut line = Vec::new();
            match self.reader.read_until(b'\n', &mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("no reply within {WAIT:?}: {e}"),
            }
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            if line.as_bytes().get(3) == Some(&b'-') {
                continue;
            }
            let mut words = line.split(' ');
            let code = words
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("not a reply: {line:?}"));
            let enhanced = words
                .next()
                .filter(|w| {
                    w.split('.').count() == 3 && w.split('.').all(|p| p.parse::<u16>().is_ok())
                })
                .unwrap_or_default()
                .to_string();
            return Some(Reply {
                code,
                enhanced,
                line,
            });
        }
    }

    /// The next reply, which must be `code enhanced`.
    pub fn expect(&mut self, code: u16, enhanced: &str) {
        self.reply()
            .unwrap_or_else(|| panic!("connection closed; wanted {code} {enhanced}"))
            .expect(code, enhanced);
    }

    /// Sends `line` and CRLF; the reply must be `code enhanced`.
    pub fn cmd(&mut self, line: &str, code: u16, enhanced: &str) {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
            .unwrap_or_else(|| panic!("connection closed after {line:?}"))
            .expect(code, enhanced);
    }

    /// The greeting and LHLO.
    pub fn hello(&mut self) {
        self.expect(220, "");
        self.cmd("LHLO client.example", 250, "");
    }

    /// Asserts the server closes the connection now (nothing more to read).
    pub fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
        assert!(
            rest.is_empty(),
            "unexpected bytes before the close: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// Closes both directions at once.
    pub fn hang_up(self) {
        let _ = self.stream.shutdown_both();
    }
}

/// `message` dot-stuffed (a dot after CRLF, or at the start, is doubled)
/// and ended with `.CRLF`; `message` must be empty or end with CRLF.
pub fn stuffed(message: &[u8]) -> Vec<u8> {
    assert!(message.is_empty() || message.ends_with(b"\r\n"));
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut line_start = true;
    for (i, &b) in message.iter().enumerate() {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n' && i > 0 && message[i - 1] == b'\r';
    }
    out.extend_from_slice(b".\r\n");
    out
}
