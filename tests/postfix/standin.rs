//! The GitLab stand-in (tests/support/gitlab_standin.py, run with Debian's
//! /usr/bin/python3 and its python3-jwt) for the Postfix tests, and what it
//! recorded.
//!
//! Why not `common::StandIn`: these tests kill GitLab and bring it back on
//! the same port (the LMTP server read the URL once, at start), which needs
//! the script's `--port`. The records are read with `common`'s JSON reader.
//! Each run records into its own directory, so a restarted stand-in does not
//! overwrite what the previous run received.

use crate::common::{parse_flat_json, project_file, Json};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// A running stand-in; stopped on drop.
pub struct Standin {
    child: Child,
    control: ChildStdin,
    replies: BufReader<ChildStdout>,
}

impl Standin {
    /// Starts a stand-in on 127.0.0.1:`port` in `mode`, knowing the
    /// `(mailbox, secret file)` pairs, recording into `out`.
    pub fn start(out: &Path, secrets: &[(&str, &Path)], port: u16, mode: &str) -> Standin {
        Standin::launch(out, secrets, port, mode, None)
    }

    /// Like [`start`](Self::start), but speaking https with the PEM
    /// certificate and key `tls` gives.
    pub fn start_tls(
        out: &Path,
        secrets: &[(&str, &Path)],
        port: u16,
        mode: &str,
        tls: (&Path, &Path),
    ) -> Standin {
        Standin::launch(out, secrets, port, mode, Some(tls))
    }

    fn launch(
        out: &Path,
        secrets: &[(&str, &Path)],
        port: u16,
        mode: &str,
        tls: Option<(&Path, &Path)>,
    ) -> Standin {
        fs::create_dir_all(out).expect("create the stand-in's directory");
        let log = fs::File::create(out.join("standin.log")).expect("stand-in log");
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(project_file("tests/support/gitlab_standin.py"))
            .arg("--out")
            .arg(out)
            .args(["--mode", mode, "--port", &port.to_string()])
            .arg("--control-stdin");
        if let Some((cert, key)) = tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        for (mailbox, path) in secrets {
            cmd.arg("--secret")
                .arg(format!("{mailbox}={}", path.display()));
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start /usr/bin/python3 gitlab_standin.py");
        let mut standin = Standin {
            control: child.stdin.take().expect("stand-in stdin"),
            replies: BufReader::new(child.stdout.take().expect("stand-in stdout")),
            child,
        };
        // The script prints its port once listening, or exits at once.
        let first = standin.reply();
        if first.trim() != format!("PORT {port}") {
            panic!(
                "the stand-in did not start on port {port} (said {first:?}); its log:\n{}",
                fs::read_to_string(out.join("standin.log")).unwrap_or_default()
            );
        }
        standin
    }

    fn reply(&mut self) -> String {
        let mut line = String::new();
        let _ = self.replies.read_line(&mut line);
        line
    }

    /// Switches the failure mode (`ok`, `500`, …); returns once the
    /// stand-in confirmed it.
    pub fn set_mode(&mut self, mode: &str) {
        writeln!(self.control, "mode {mode}").expect("write to the stand-in");
        self.control.flush().expect("flush the stand-in's stdin");
        let reply = self.reply();
        assert!(
            reply.starts_with("MODE "),
            "the stand-in refused mode {mode:?}: {reply:?}"
        );
    }

    /// Kills the stand-in (SIGKILL): GitLab is down.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many established TCP connections (IPv4) go to port `port` on this
/// machine, from /proc/net/tcp: with a freshly started `serve` as the
/// stand-in's only client, the requests it has in flight.
pub fn connections_to(port: u16) -> usize {
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let want = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl, local_address, rem_address, st (01 = ESTABLISHED).
            fields.len() > 3 && fields[2].ends_with(&want) && fields[3] == "01"
        })
        .count()
}

/// One request the stand-in answered.
#[derive(Debug)]
pub struct Request {
    /// The mailbox in the URL.
    pub mailbox: String,
    /// The HTTP status answered (`200`, `500`, …).
    pub status: String,
    /// Whether PyJWT verified the token with that mailbox's secret.
    pub jwt_ok: bool,
    /// The body, when the stand-in accepted it (status 200).
    pub body: Option<Vec<u8>>,
}

/// Every request recorded under `outs` (one directory per stand-in run).
pub fn requests(outs: &[PathBuf]) -> Vec<Request> {
    let mut all = Vec::new();
    for out in outs {
        let text = fs::read_to_string(out.join("requests.jsonl")).unwrap_or_default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let map =
                parse_flat_json(line).unwrap_or_else(|e| panic!("requests.jsonl: {e}: {line}"));
            let text = |k: &str| match map.get(k) {
                Some(Json::Str(s)) => s.clone(),
                Some(Json::Num(n)) => format!("{n}"),
                _ => String::new(),
            };
            let (mailbox, status, seq) = (text("mailbox"), text("status"), text("seq"));
            let body = (status == "200")
                .then(|| fs::read(out.join(format!("{seq}-{mailbox}.eml"))).ok())
                .flatten();
            all.push(Request {
                jwt_ok: map.get("jwt_ok") == Some(&Json::Bool(true)),
                mailbox,
                status,
                body,
            });
        }
    }
    all
}
