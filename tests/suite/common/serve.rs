//! A running `gitlab-mailgate serve` seen from outside ([`Server`]: its
//! log, its pid, its peak memory, its listening address), started from a
//! [`TestEnv`]'s configuration and talked to with [`Client`].
//!
//! Every wait has a deadline and the process is killed on drop; nothing
//! here asserts on timing.

use super::lmtp::{stuffed, Client, WAIT};
use super::{crlf_message, wait_bounded, wait_until, TestEnv, INCOMING_RCPT, POLL};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

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
        let mut child = env
            .command("serve")
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
        let ready = wait_until(WAIT, POLL, || {
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
        wait_until(WAIT, POLL, || self.log_count(needle) >= n)
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
        assert!(!self.addr.is_empty(), "serve listens on no TCP address");
        Client::connect(&self.addr)
    }

    /// Sends SIGTERM once (a second one would end the server at once) and
    /// returns: in-flight transactions may still finish.
    pub fn terminate(&self) {
        // SAFETY: kill(2) on the pid of our own child process.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }

    /// Sends SIGTERM, then [`wait`](Self::wait)s.
    pub fn stop(self) -> (Option<i32>, String) {
        self.terminate();
        self.wait()
    }

    /// Waits (bounded) for the exit and for the end of its stderr; returns
    /// the exit code and the whole log.
    pub fn wait(mut self) -> (Option<i32>, String) {
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
