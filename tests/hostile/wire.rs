//! A running `gitlab-mailgate serve` seen from outside ([`Server`]: its
//! log, its pid, its peak memory, its listening sockets) and a raw-bytes
//! LMTP client over loopback TCP ([`Client`]) that can send anything,
//! including bytes no well-behaved client would.
//!
//! Shared by the `hostile` and `security` test binaries. Every read has a
//! timeout and every wait a deadline; nothing here asserts on timing.

// Each test binary uses only some of these helpers.
#![allow(dead_code)]

use crate::common::*;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The longest a test waits for one reply, a log line or a start.
pub const WAIT: Duration = Duration::from_secs(30);

/// A running `gitlab-mailgate serve`, its stderr collected line by line;
/// killed on drop.
pub struct Server {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    /// The TCP address it reported listening on (`IP:PORT`).
    pub addr: String,
}

impl Server {
    /// Starts `serve` with `env`'s configuration; panics if it does not
    /// report listening.
    pub fn start(env: &TestEnv) -> Server {
        Server::try_start(env).unwrap_or_else(|log| panic!("serve did not start:\n{log}"))
    }

    /// Starts `serve`; `Err(log)` when it exits or never reports listening.
    pub fn try_start(env: &TestEnv) -> Result<Server, String> {
        let mut child = Command::new(bin())
            .arg("serve")
            .arg("--config")
            .arg(&env.config)
            .env_remove("GITLAB_MAILGATE_CONFIG")
            .env_remove("LISTEN_FDS")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gitlab-mailgate serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut server = Server {
            child,
            log,
            reader: Some(reader),
            addr: String::new(),
        };
        let mut exited = false;
        let ready = wait_until(WAIT, || {
            exited = matches!(server.child.try_wait(), Ok(Some(_)));
            exited || server.log_text().contains("listening on ")
        });
        if exited || !ready {
            // Let the reader catch the last lines before reporting them.
            server.kill();
            return Err(server.log_text());
        }
        let text = server.log_text();
        server.addr = text
            .lines()
            .find_map(|l| l.split("listening on ").nth(1))
            .and_then(|l| l.split(", ").find(|a| !a.starts_with("unix:")))
            .unwrap_or_default()
            .to_string();
        Ok(server)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits (bounded) until `n` log lines contain `needle`.
    pub fn wait_log(&self, needle: &str, n: usize) -> bool {
        wait_until(WAIT, || self.log_count(needle) >= n)
    }

    /// Panics unless the process is still running.
    pub fn assert_alive(&mut self) {
        let status = self.child.try_wait().expect("try_wait");
        assert!(
            status.is_none(),
            "serve exited ({status:?}):\n{}",
            self.log_text()
        );
        assert!(
            !self.log_text().contains("internal error"),
            "serve panicked:\n{}",
            self.log_text()
        );
    }

    /// The peak resident set size so far (`VmHWM`), in KiB.
    pub fn peak_memory_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// Asserts the peak RSS stayed under `mib` MiB.
    pub fn assert_peak_memory_below(&self, mib: u64) {
        let peak = self.peak_memory_kib();
        eprintln!("serve peak RSS (VmHWM): {} KiB", peak);
        assert!(
            peak < mib * 1024,
            "serve peaked at {} MiB of RSS, more than {mib} MiB",
            peak / 1024
        );
    }

    /// A new connection to its TCP listener.
    pub fn connect(&self) -> Client {
        Client::connect(&self.addr)
    }

    /// Sends SIGTERM, waits (bounded) for the exit and for the end of its
    /// stderr; returns the exit code and the whole log.
    pub fn stop(mut self) -> (Option<i32>, String) {
        // SAFETY: kill(2) on the pid of our own child process.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let code = wait_bounded(&mut self.child).code();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        (code, self.log_text())
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects to `addr` with a read timeout of [`WAIT`].
    pub fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Client { stream, reader }
    }

    /// Writes `bytes` (all of them).
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to serve");
    }

    /// Another handle on the connection, e.g. for a writer thread.
    pub fn stream(&self) -> TcpStream {
        self.stream.try_clone().expect("clone")
    }

    /// Writes `bytes` from another thread, so a large write and reading
    /// the replies cannot block each other. The thread's result says
    /// whether everything was written.
    pub fn send_in_background(&self, bytes: Vec<u8>) -> JoinHandle<io::Result<()>> {
        let mut stream = self.stream.try_clone().expect("clone");
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
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// `Delivered-To: <rcpt>\r\n` and the message: what GitLab must receive.
pub fn expected_body(rcpt: &str, message: &[u8]) -> Vec<u8> {
    let mut body = format!("Delivered-To: {rcpt}\r\n").into_bytes();
    body.extend_from_slice(message);
    body
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

/// A simple message with CRLF line endings.
pub fn crlf_message(subject: &str) -> Vec<u8> {
    String::from_utf8(message(subject))
        .expect("ASCII")
        .replace('\n', "\r\n")
        .into_bytes()
}

/// One ordinary delivery to [`INCOMING_RCPT`] on a new connection: proves
/// the server still serves others. The caller checks the stand-in.
pub fn normal_delivery(server: &Server, subject: &str) {
    let mut c = server.connect();
    c.hello();
    c.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
    c.cmd("DATA", 354, "");
    c.send(&stuffed(&crlf_message(subject)));
    c.expect(250, "2.0.0");
    c.cmd("QUIT", 221, "2.0.0");
}
