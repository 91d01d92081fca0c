//! A throwaway Debian Postfix for the end-to-end tests: configured from
//! scratch, run as root without systemd or syslog, fed over SMTP on
//! 127.0.0.1:2525, and watched through its own log file and queue.
//!
//! Only one Postfix can run on a machine, so every test that uses it holds
//! [`Postfix`], which holds a process-wide lock; dropping it stops Postfix.
//! This module knows nothing about gitlab-mailgate; the tests decide the
//! transport, the master.cf entries and the main.cf fragment.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The mail domain GitLab receives for.
pub const DOMAIN: &str = "incoming.example.com";
/// Where the test's smtpd listens.
pub const SMTP_ADDR: &str = "127.0.0.1:2525";
/// Postfix's log (maillog_file must live under /var by default).
pub const LOG_FILE: &str = "/var/log/gitlab-mailgate-e2e-postfix.log";
/// How long any single wait for Postfix may take.
pub const WAIT: Duration = Duration::from_secs(60);

static ONE_POSTFIX: Mutex<()> = Mutex::new(());

/// What a test wants Postfix to look like, on top of the fixed base.
pub struct Setup {
    /// Files to write first (lookup tables), as `(path, content)`.
    pub files: Vec<(PathBuf, String)>,
    /// `name = value` settings from a main.cf fragment, applied in order.
    pub main_cf: Vec<(String, String)>,
    /// Whole master.cf entries (one service each, continuation lines kept).
    pub master_cf: Vec<String>,
}

/// A running Postfix; stopped (and its queue emptied) on drop.
pub struct Postfix {
    _lock: MutexGuard<'static, ()>,
}

/// Runs `program args`, panicking with its output when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn postconf(args: &[&str]) {
    run("/usr/sbin/postconf", args);
}

impl Postfix {
    /// Configures Postfix from scratch as `setup` says and starts it with
    /// an empty queue and an empty log.
    pub fn start(setup: &Setup) -> Postfix {
        let lock = ONE_POSTFIX.lock().unwrap_or_else(|p| p.into_inner());
        assert!(stop_postfix(), "a running Postfix did not stop within 10 s");
        for (path, text) in &setup.files {
            fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }

        // Debian's pristine master.cf; main.cf empty ("No configuration"
        // leaves none), then only what we set.
        fs::copy("/etc/postfix/master.cf.proto", "/etc/postfix/master.cf")
            .expect("restore master.cf from master.cf.proto");
        fs::write("/etc/postfix/main.cf", "").expect("empty main.cf");
        // A queue left over from an earlier (failed) run would be delivered
        // now. Emptied before maillog_file is set: with Postfix down,
        // postsuper would write that file itself, as a user who cannot.
        run("/usr/sbin/postsuper", &["-d", "ALL"]);
        let maillog = format!("maillog_file={LOG_FILE}");
        postconf(&[
            "-e",
            "compatibility_level=3.6",
            "myhostname=mailgate-test.localdomain",
            "mydomain=localdomain",
            "myorigin=$myhostname",
            "mydestination=",
            "alias_maps=",
            "alias_database=",
            "inet_interfaces=loopback-only",
            "inet_protocols=ipv4",
            "mynetworks=127.0.0.0/8",
            "smtpd_peername_lookup=no",
            &maillog,
            // Verification results only in memory: none from an earlier run.
            "address_verify_map=",
            // Retry within seconds, so a test sees deferral and recovery.
            "queue_run_delay=5s",
            "minimal_backoff_time=5s",
            "maximal_backoff_time=10s",
        ]);
        for (name, value) in &setup.main_cf {
            postconf(&["-e", &format!("{name}={value}")]);
        }
        for entry in &setup.master_cf {
            append_master_entry(entry);
        }
        // Debian's init script copies files into the chroot; without it,
        // chrooted services would fail.
        postconf(&["-F", "*/*/chroot = n"]);
        // Only our smtpd: no port 25.
        postconf(&["-MX", "smtp/inet"]);
        postconf(&[
            "-M",
            "127.0.0.1:2525/inet=127.0.0.1:2525 inet n - n - - smtpd",
        ]);
        run("/usr/sbin/postfix", &["check"]);

        let _ = fs::remove_file(LOG_FILE);
        run("/usr/sbin/postfix", &["start"]);
        let pf = Postfix { _lock: lock };
        pf.wait_for("smtpd to listen", || {
            TcpStream::connect(SMTP_ADDR).ok().map(|_| ())
        });
        pf
    }

    /// Sends `message` from the null sender to `rcpt` over SMTP and returns
    /// Postfix's queue id.
    pub fn send(&self, rcpt: &str, message: &str) -> String {
        self.try_send(rcpt, message)
            .unwrap_or_else(|e| panic!("SMTP to {SMTP_ADDR}: {e}"))
    }

    /// Like [`send`](Self::send), but a refusal is returned: the error
    /// holds the server's reply (`550 5.1.1 …`) when Postfix refused.
    pub fn try_send(&self, rcpt: &str, message: &str) -> Result<String, String> {
        smtp_send(rcpt, message)
    }

    /// The log lines containing `text`.
    pub fn log_matching(&self, text: &str) -> Vec<String> {
        log_lines()
            .into_iter()
            .filter(|l| l.contains(text))
            .collect()
    }

    /// Waits for the log line reporting `status` (`sent`, `deferred`,
    /// `bounced`) for `queue_id` and `rcpt`, prints it and returns it.
    pub fn wait_status(&self, queue_id: &str, rcpt: &str, status: &str) -> String {
        let want = format!("{queue_id}: to=<{rcpt}>");
        let word = format!("status={status} ");
        let line = self.wait_for(&format!("{want} {word}"), || {
            log_lines()
                .into_iter()
                .find(|l| l.contains(&want) && l.contains(&word))
        });
        println!("postfix log: {line}");
        line
    }

    /// The `status=` lines for `queue_id` and `rcpt` so far.
    pub fn statuses(&self, queue_id: &str, rcpt: &str) -> Vec<String> {
        let want = format!("{queue_id}: to=<{rcpt}>");
        log_lines()
            .into_iter()
            .filter(|l| l.contains(&want) && l.contains("status="))
            .collect()
    }

    /// `postqueue -f`: retry everything in the queue now.
    pub fn flush(&self) {
        run("/usr/sbin/postqueue", &["-f"]);
    }

    /// The queue (`active`, `deferred`, …) holding `queue_id`, if any,
    /// from `postqueue -j`.
    pub fn queue_of(&self, queue_id: &str) -> Option<String> {
        let listing = run("/usr/sbin/postqueue", &["-j"]);
        let id = format!("\"queue_id\": \"{queue_id}\"");
        let line = listing.lines().find(|l| l.contains(&id))?;
        json_string(line, "queue_name")
    }

    /// Waits until `queue_id` has left the queue.
    pub fn wait_gone(&self, queue_id: &str) {
        self.wait_for(&format!("{queue_id} to leave the queue"), || {
            self.queue_of(queue_id).is_none().then_some(())
        });
    }

    /// Waits for the first `status=` line for `queue_id` and `rcpt`.
    pub fn wait_first_status(&self, queue_id: &str, rcpt: &str) -> String {
        self.wait_for(&format!("{queue_id}'s first status"), || {
            self.statuses(queue_id, rcpt).into_iter().next()
        })
    }

    /// Waits until `queue_id` rests: in the deferred queue, or gone.
    pub fn wait_settled(&self, queue_id: &str) {
        self.wait_for(&format!("{queue_id} deferred or done"), || {
            matches!(self.queue_of(queue_id).as_deref(), None | Some("deferred")).then_some(())
        });
    }

    /// `postqueue -f` every 3 s until none of `queue_ids` is left in the
    /// queue: a retry that was already under way when the flush came puts
    /// its message back into the deferred queue once more.
    pub fn flush_until_gone(&self, queue_ids: &[String]) {
        let mut polls = 0;
        self.wait_for("the queue to empty", || {
            if polls % 30 == 0 {
                self.flush();
            }
            polls += 1;
            queue_ids
                .iter()
                .all(|q| self.queue_of(q).is_none())
                .then_some(())
        });
    }

    /// Polls `probe` every 100 ms until it gives a value or [`WAIT`]
    /// passes; then panics with `what` (the log's tail follows on drop).
    pub fn wait_for<T>(&self, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = probe() {
                return v;
            }
            if start.elapsed() > WAIT {
                panic!("timed out waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("Postfix log tail:\n{}", log_tail());
        }
        // While Postfix runs, postsuper logs through postlogd.
        let _ = Command::new("/usr/sbin/postsuper")
            .args(["-d", "ALL"])
            .output();
        if !stop_postfix() {
            eprintln!("warning: Postfix did not stop within 10 s");
        }
    }
}

/// Stops a running Postfix and waits (at most 10 s) until its master is
/// gone; returns whether it is.
fn stop_postfix() -> bool {
    let running = || {
        Command::new("/usr/sbin/postfix")
            .arg("status")
            .stderr(std::process::Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !running() {
        return true;
    }
    let _ = Command::new("/usr/sbin/postfix").arg("stop").output();
    for _ in 0..100 {
        if !running() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Adds one master.cf service with `postconf -M`, which takes the entry
/// as a single line: continuation lines are joined.
fn append_master_entry(entry: &str) {
    let line = entry.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut fields = line.split(' ');
    let (name, kind) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
    postconf(&["-M", &format!("{name}/{kind}={line}")]);
}

/// The lines of Postfix's log file so far.
pub fn log_lines() -> Vec<String> {
    fs::read_to_string(LOG_FILE)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The last 30 lines of Postfix's log.
fn log_tail() -> String {
    let lines = log_lines();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The string value of `"key": "…"` in one line of `postqueue -j` output
/// (no escapes expected in queue names).
fn json_string(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\": \""))? + key.len() + 5;
    let len = line[start..].find('"')?;
    Some(line[start..start + len].to_string())
}

/// A minimal SMTP client: EHLO, MAIL FROM:<>, one RCPT, DATA.
fn smtp_send(rcpt: &str, message: &str) -> Result<String, String> {
    let stream = TcpStream::connect(SMTP_ADDR).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = stream;
    let mut step = |send: Option<String>, want: &str| -> Result<String, String> {
        if let Some(cmd) = send {
            writer
                .write_all(cmd.as_bytes())
                .map_err(|e| e.to_string())?;
        }
        let reply = read_reply(&mut reader)?;
        if !reply.starts_with(want) {
            return Err(reply);
        }
        Ok(reply)
    };
    step(None, "220")?;
    step(Some("EHLO test.localdomain\r\n".into()), "250")?;
    step(Some("MAIL FROM:<>\r\n".into()), "250")?;
    step(Some(format!("RCPT TO:<{rcpt}>\r\n")), "250")?;
    step(Some("DATA\r\n".into()), "354")?;
    let mut data = String::new();
    for line in message.lines() {
        if line.starts_with('.') {
            data.push('.');
        }
        data.push_str(line);
        data.push_str("\r\n");
    }
    data.push_str(".\r\n");
    let reply = step(Some(data), "250")?;
    let _ = step(Some("QUIT\r\n".into()), "221");
    reply
        .split("queued as ")
        .nth(1)
        .map(|id| id.trim().to_string())
        .ok_or_else(|| format!("no queue id in: {reply}"))
}

/// Reads one (possibly multi-line) SMTP reply, bounded in size.
fn read_reply(reader: &mut impl BufRead) -> Result<String, String> {
    let mut reply = String::new();
    for _ in 0..100 {
        let mut line = String::new();
        reader
            .by_ref()
            .take(4096)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if line.is_empty() {
            return Err(format!("connection closed after: {reply}"));
        }
        reply.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(reply.trim_end().to_string());
        }
    }
    Err("reply longer than 100 lines".into())
}
