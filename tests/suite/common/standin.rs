//! The GitLab stand-in (`tests/support/gitlab_standin.py`) as a child
//! process: start it, switch its mode, read what it received.

use super::{project_file, wait_until, POLL};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

/// How long the stand-in may take to print its port or confirm a mode.
const STANDIN_START_LIMIT: Duration = Duration::from_secs(20);

/// One request the stand-in received (a line of its `requests.jsonl`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Sequence number, from 1, over all API requests.
    pub seq: u64,
    /// The mailbox in the URL.
    pub mailbox: String,
    /// The HTTP status answered, or `reset` / `hang`.
    pub status: String,
    /// Whether PyJWT verified the token with that mailbox's secret or
    /// public key.
    pub jwt_ok: bool,
    /// The body's first line (our `Delivered-To:` line), without its end.
    pub delivered_to: Option<String>,
    /// Body bytes read.
    pub length: Option<u64>,
    /// The token's `nonce` claim, when the token was valid.
    pub nonce: Option<String>,
    /// The request's `Content-Type`.
    pub content_type: Option<String>,
    /// The token header's `alg` (verified or not).
    pub alg: Option<String>,
    /// The token header's `kid`, if any.
    pub kid: Option<String>,
    /// Requests in progress at the stand-in when this one came in, itself
    /// included.
    pub in_flight: Option<u64>,
}

/// What a stand-in may know beyond the secrets, and how its clock runs.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// `(mailbox, public key PEM file)` pairs: ES256 tokens are accepted for
    /// the mailbox when their `kid` names one of its keys.
    pub public_keys: Vec<(String, PathBuf)>,
    /// Seconds added to the stand-in's clock (iat checks and `Date`).
    pub clock_offset: i64,
}

/// A body the stand-in accepted (answered 200).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// The request's sequence number.
    pub seq: u64,
    /// The mailbox it was posted to.
    pub mailbox: String,
    /// The body, byte for byte.
    pub bytes: Vec<u8>,
}

/// The GitLab stand-in (`tests/support/gitlab_standin.py`) running as a
/// child process on a loopback port; killed on drop.
pub struct StandIn {
    child: Child,
    control: Option<ChildStdin>,
    lines: Receiver<String>,
    port: u16,
    out: PathBuf,
    scheme: &'static str,
}

/// How to start a [`StandIn`]: [`StandIn::builder`], then any of the
/// setters, then [`spawn`](StandInBuilder::spawn).
#[derive(Debug, Clone)]
pub struct StandInBuilder {
    secrets: Vec<(String, PathBuf)>,
    mode: String,
    port: Option<u16>,
    tls: Option<(PathBuf, PathBuf)>,
    extra: Extra,
    args: Vec<String>,
}

impl StandInBuilder {
    /// The mode to start in (default `"ok"`; see [`StandIn::set_mode`]).
    pub fn mode(mut self, mode: &str) -> Self {
        self.mode = mode.to_string();
        self
    }

    /// Knows `mailbox`'s secret, in the file `path`.
    pub fn secret(mut self, mailbox: &str, path: &Path) -> Self {
        self.secrets.push((mailbox.to_string(), path.to_path_buf()));
        self
    }

    /// Listens on 127.0.0.1:`port` (e.g. to bring GitLab back where a
    /// running server expects it) instead of a free port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Speaks https with this certificate and key.
    pub fn tls(mut self, cert: &Path, key: &Path) -> Self {
        self.tls = Some((cert.to_path_buf(), key.to_path_buf()));
        self
    }

    /// Also knows `extra`'s public keys, and shifts its clock by its
    /// offset.
    pub fn extra(mut self, extra: &Extra) -> Self {
        self.extra = extra.clone();
        self
    }

    /// More command-line arguments (e.g. `--reply-smtp HOST:PORT`).
    pub fn args(mut self, args: &[String]) -> Self {
        self.args.extend_from_slice(args);
        self
    }

    /// Starts the stand-in, recording into `out` (created if needed), and
    /// waits until it listens.
    pub fn spawn(self, out: &Path) -> StandIn {
        fs::create_dir_all(out).expect("create the stand-in's directory");
        let log = fs::File::create(out.join("standin.log")).expect("stand-in log");
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(project_file("tests/support/gitlab_standin.py"))
            .arg("--out")
            .arg(out)
            .arg("--mode")
            .arg(&self.mode)
            .arg("--control-stdin");
        if let Some(port) = self.port {
            cmd.arg("--port").arg(port.to_string());
        }
        for (mailbox, path) in &self.secrets {
            cmd.arg("--secret")
                .arg(format!("{mailbox}={}", path.display()));
        }
        for (mailbox, path) in &self.extra.public_keys {
            cmd.arg("--public-key")
                .arg(format!("{mailbox}={}", path.display()));
        }
        cmd.arg(format!("--clock-offset={}", self.extra.clock_offset));
        cmd.args(&self.args);
        if let Some((cert, key)) = &self.tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = cmd
            .spawn()
            .expect("start /usr/bin/python3 gitlab_standin.py");
        let stdout = child.stdout.take().expect("stand-in stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut standin = StandIn {
            control: child.stdin.take(),
            child,
            lines,
            port: 0,
            out: out.to_path_buf(),
            scheme: if self.tls.is_some() { "https" } else { "http" },
        };
        // The script prints its port once listening, or exits at once.
        let first = standin.next_line(STANDIN_START_LIMIT);
        let port = self.port;
        standin.port = first
            .as_deref()
            .and_then(|l| l.strip_prefix("PORT "))
            .and_then(|p| p.trim().parse().ok())
            .filter(|p| port.is_none_or(|want| want == *p))
            .unwrap_or_else(|| {
                panic!(
                    "the stand-in did not start (on port {port:?}: said {first:?}); its log:\n{}",
                    standin.log()
                )
            });
        standin
    }
}

impl StandIn {
    /// A stand-in in mode `ok` on a free port, plain http, knowing no
    /// secret yet: set what differs, then [`spawn`](StandInBuilder::spawn).
    pub fn builder() -> StandInBuilder {
        StandInBuilder {
            secrets: Vec::new(),
            mode: "ok".to_string(),
            port: None,
            tls: None,
            extra: Extra::default(),
            args: Vec::new(),
        }
    }

    /// Kills the stand-in at once (SIGKILL): GitLab is down, mid-request
    /// or not.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn next_line(&self, limit: Duration) -> Option<String> {
        self.lines.recv_timeout(limit).ok()
    }

    /// The base URL to put in `[gitlab] url`.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    /// Switches the mode (e.g. `"ok"`, `"500"`, `"hang"`, `"500,ok"`);
    /// returns once the stand-in confirmed it.
    pub fn set_mode(&mut self, mode: &str) {
        let control = self.control.as_mut().expect("control channel");
        writeln!(control, "mode {mode}").expect("write to the stand-in");
        control.flush().expect("flush the stand-in's stdin");
        let reply = self.next_line(STANDIN_START_LIMIT);
        assert!(
            reply.as_deref().is_some_and(|r| r.starts_with("MODE ")),
            "the stand-in refused mode {mode:?}: {reply:?}"
        );
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        recorded_requests(&self.out)
    }

    /// Waits (bounded by `limit`) until at least `n` requests were
    /// recorded, and returns them all.
    pub fn wait_requests(&self, n: usize, limit: Duration) -> Vec<Request> {
        wait_until(limit, POLL, || self.requests().len() >= n);
        self.requests()
    }

    /// The accepted bodies, in order of their sequence numbers.
    pub fn bodies(&self) -> Vec<Body> {
        let mut bodies: Vec<Body> = fs::read_dir(&self.out)
            .expect("read the stand-in's directory")
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let (seq, mailbox) = name.strip_suffix(".eml")?.split_once('-')?;
                Some(Body {
                    seq: seq.parse().ok()?,
                    mailbox: mailbox.to_string(),
                    bytes: fs::read(entry.path()).ok()?,
                })
            })
            .collect();
        bodies.sort_by_key(|b| b.seq);
        bodies
    }

    /// The stand-in's own log (request lines, errors; never tokens).
    pub fn log(&self) -> String {
        fs::read_to_string(self.out.join("standin.log")).unwrap_or_default()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        // Closing the control channel stops it; kill in case it is stuck.
        drop(self.control.take());
        let stopped = wait_until(Duration::from_secs(2), POLL, || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The requests a stand-in recorded into `out` (its `requests.jsonl`), in
/// order of their sequence numbers; none when it recorded nothing yet.
pub fn recorded_requests(out: &Path) -> Vec<Request> {
    let text = fs::read_to_string(out.join("requests.jsonl")).unwrap_or_default();
    let mut requests: Vec<Request> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| parse_request(l).unwrap_or_else(|e| panic!("requests.jsonl: {e}: {l}")))
        .collect();
    requests.sort_by_key(|r| r.seq);
    requests
}

fn parse_request(line: &str) -> Result<Request, String> {
    use serde_json::Value;
    let value: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let map = value.as_object().ok_or("not a JSON object")?;
    let text = |k: &str| match map.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let number = |k: &str| match map.get(k) {
        Some(Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)),
        _ => None,
    };
    Ok(Request {
        seq: number("seq").ok_or("no seq")?,
        mailbox: text("mailbox").ok_or("no mailbox")?,
        status: text("status").unwrap_or_default(),
        jwt_ok: map.get("jwt_ok") == Some(&Value::Bool(true)),
        delivered_to: text("delivered_to"),
        length: number("length"),
        nonce: text("nonce"),
        content_type: text("content_type"),
        alg: text("alg"),
        kid: text("kid"),
        in_flight: number("in_flight"),
    })
}
