//! A throwaway Postfix instance of the test's own for the end-to-end tests:
//! its own configuration directory, queue directory, data directory and
//! log file under a fresh temporary directory (`postfix -c DIR`), run as
//! root without systemd or syslog, fed over SMTP on a free loopback port,
//! and watched through its own log file and queue.
//!
//! The machine's own Postfix is never touched: nothing here reads or
//! writes `/etc/postfix` (beyond Debian's pristine `master.cf.proto`) or
//! `/var/spool/postfix`, and every instance checks on drop that
//! `/etc/postfix` hashes as it did when the instance started. So the tests
//! pass whatever state the machine's Postfix is in (never started,
//! running, misconfigured), and instances can run side by side.
//! This module knows nothing about gitlab-mailgate; the tests decide the
//! transport, the master.cf entries and the main.cf fragment.

use crate::common::wait_until;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The mail domain GitLab receives for.
pub const DOMAIN: &str = "incoming.example.com";
/// How long any single wait for Postfix may take.
pub const WAIT: Duration = Duration::from_secs(60);
/// The machine's own Postfix configuration, which no test may change.
const SYSTEM_CONFIG: &str = "/etc/postfix";

static INSTANCES: AtomicUsize = AtomicUsize::new(0);

/// What a test wants Postfix to look like, on top of the fixed base.
pub struct Setup {
    /// Files to write first (lookup tables), as `(path, content)`.
    pub files: Vec<(PathBuf, String)>,
    /// `name = value` settings from a main.cf fragment, applied in order.
    pub main_cf: Vec<(String, String)>,
    /// Whole master.cf entries (one service each, continuation lines kept).
    pub master_cf: Vec<String>,
}

/// A running Postfix instance of the test's own; stopped on drop, and its
/// directory removed unless the test failed.
pub struct Postfix {
    /// The instance's directory: `etc/`, `queue/`, `data/`, `maillog`.
    dir: PathBuf,
    /// Its configuration directory (`postfix -c`).
    config: String,
    /// Its log file.
    log: PathBuf,
    /// Where its smtpd listens.
    smtp_addr: String,
    /// The hash of the machine's `/etc/postfix` when this instance started.
    system_config_hash: String,
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

impl Postfix {
    /// Creates a new instance configured from scratch as `setup` says and
    /// starts it: empty queue, empty log, smtpd on a free loopback port.
    pub fn start(setup: &Setup) -> Postfix {
        let pf = Postfix::configure(setup);
        pf.launch();
        pf
    }

    /// An instance with only the fixed base (own directories and log,
    /// smtpd on a free port, no chroot) and nothing for any domain, not
    /// started: what `gitlab-mailgate setup --postfix` finds on a fresh
    /// host. Start it with [`launch`](Self::launch).
    pub fn bare() -> Postfix {
        Postfix::configure(&Setup {
            files: Vec::new(),
            main_cf: Vec::new(),
            master_cf: Vec::new(),
        })
    }

    /// Its configuration directory (`postfix -c`).
    pub fn config_dir(&self) -> &str {
        &self.config
    }

    /// `postfix check`, `postfix start`, and wait until smtpd listens.
    pub fn launch(&self) {
        self.postfix("check");
        self.postfix("start");
        self.wait_for("smtpd to listen", || {
            TcpStream::connect(&self.smtp_addr).ok().map(|_| ())
        });
    }

    fn configure(setup: &Setup) -> Postfix {
        let system_config_hash = tree_hash(Path::new(SYSTEM_CONFIG));
        let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "gitlab-mailgate-postfix-instance-{}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        let etc = dir.join("etc");
        fs::create_dir_all(&etc).expect("create the instance's config directory");
        // Empty: `postfix check` creates the subdirectories and the data
        // directory (post-install create-missing).
        fs::create_dir_all(dir.join("queue")).expect("create the instance's queue directory");
        // Postfix's daemons (user postfix) must reach the queue below it.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let pf = Postfix {
            config: etc.display().to_string(),
            log: dir.join("maillog"),
            smtp_addr: format!("127.0.0.1:{}", super::mailgate::free_port()),
            dir,
            system_config_hash,
        };
        for (path, text) in &setup.files {
            fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }

        // Debian's pristine master.cf; main.cf empty, then only what we set.
        fs::copy(
            Path::new(SYSTEM_CONFIG).join("master.cf.proto"),
            etc.join("master.cf"),
        )
        .expect("copy Debian's master.cf.proto");
        fs::write(etc.join("main.cf"), "").expect("empty main.cf");
        let queue = format!("queue_directory={}", pf.dir.join("queue").display());
        let data = format!("data_directory={}", pf.dir.join("data").display());
        // postlogd only writes below an allowed prefix (default /var).
        let log_prefix = format!("maillog_file_prefixes={}", pf.dir.display());
        let maillog = format!("maillog_file={}", pf.log.display());
        pf.postconf(&[
            "-e",
            "compatibility_level=3.6",
            &queue,
            &data,
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
            &log_prefix,
            &maillog,
            // Verification results only in memory: none from an earlier run.
            "address_verify_map=",
            // Retry within seconds, so a test sees deferral and recovery.
            "queue_run_delay=5s",
            "minimal_backoff_time=5s",
            "maximal_backoff_time=10s",
        ]);
        for (name, value) in &setup.main_cf {
            pf.postconf(&["-e", &format!("{name}={value}")]);
        }
        for entry in &setup.master_cf {
            pf.append_master_entry(entry);
        }
        // Debian's init script copies files into the chroot; without it,
        // chrooted services would fail.
        pf.postconf(&["-F", "*/*/chroot = n"]);
        // Only our smtpd: no port 25.
        pf.postconf(&["-MX", "smtp/inet"]);
        let smtpd = format!("{a}/inet={a} inet n - n - - smtpd", a = pf.smtp_addr);
        pf.postconf(&["-M", &smtpd]);
        pf
    }

    /// `postconf -c DIR args…`.
    fn postconf(&self, args: &[&str]) {
        let mut all = vec!["-c", self.config.as_str()];
        all.extend_from_slice(args);
        run("/usr/sbin/postconf", &all);
    }

    /// `postfix -c DIR command`.
    fn postfix(&self, command: &str) {
        run("/usr/sbin/postfix", &["-c", &self.config, command]);
    }

    /// Adds one master.cf service with `postconf -M`, which takes the entry
    /// as a single line: continuation lines are joined.
    fn append_master_entry(&self, entry: &str) {
        let line = entry.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut fields = line.split(' ');
        let (name, kind) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        self.postconf(&["-M", &format!("{name}/{kind}={line}")]);
    }

    /// Sends `message` from the null sender to `rcpt` over SMTP and returns
    /// Postfix's queue id.
    pub fn send(&self, rcpt: &str, message: &str) -> String {
        self.try_send(rcpt, message)
            .unwrap_or_else(|e| panic!("SMTP to {}: {e}", self.smtp_addr))
    }

    /// Like [`send`](Self::send), but a refusal is returned: the error
    /// holds the server's reply (`550 5.1.1 …`) when Postfix refused.
    pub fn try_send(&self, rcpt: &str, message: &str) -> Result<String, String> {
        smtp_send(&self.smtp_addr, "", rcpt, message)
    }

    /// Like [`try_send`](Self::try_send) with the envelope sender `sender`.
    pub fn try_send_from(&self, sender: &str, rcpt: &str, message: &str) -> Result<String, String> {
        smtp_send(&self.smtp_addr, sender, rcpt, message)
    }

    /// How many messages are in the queue (`postqueue -j`).
    pub fn queued(&self) -> usize {
        let listing = run("/usr/sbin/postqueue", &["-c", &self.config, "-j"]);
        listing
            .lines()
            .filter(|l| l.contains("\"queue_id\""))
            .count()
    }

    /// Like [`send`](Self::send) with the envelope sender `sender`.
    pub fn send_from(&self, sender: &str, rcpt: &str, message: &str) -> String {
        smtp_send(&self.smtp_addr, sender, rcpt, message)
            .unwrap_or_else(|e| panic!("SMTP to {}: {e}", self.smtp_addr))
    }

    /// Where its smtpd listens (`127.0.0.1:PORT`).
    pub fn smtp_addr(&self) -> &str {
        &self.smtp_addr
    }

    /// The lines of this instance's log so far.
    pub fn log_lines(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The log lines containing `text`.
    pub fn log_matching(&self, text: &str) -> Vec<String> {
        self.log_lines()
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
            self.log_lines()
                .into_iter()
                .find(|l| l.contains(&want) && l.contains(&word))
        });
        println!("postfix log: {line}");
        line
    }

    /// The `status=` lines for `queue_id` and `rcpt` so far.
    pub fn statuses(&self, queue_id: &str, rcpt: &str) -> Vec<String> {
        let want = format!("{queue_id}: to=<{rcpt}>");
        self.log_lines()
            .into_iter()
            .filter(|l| l.contains(&want) && l.contains("status="))
            .collect()
    }

    /// `postqueue -f`: retry everything in the queue now.
    pub fn flush(&self) {
        run("/usr/sbin/postqueue", &["-c", &self.config, "-f"]);
    }

    /// The queue (`active`, `deferred`, …) holding `queue_id`, if any,
    /// from `postqueue -j`.
    pub fn queue_of(&self, queue_id: &str) -> Option<String> {
        let listing = run("/usr/sbin/postqueue", &["-c", &self.config, "-j"]);
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
    pub fn wait_for<T>(&self, what: &str, probe: impl FnMut() -> Option<T>) -> T {
        wait_until(WAIT, Duration::from_millis(100), probe)
            .unwrap_or_else(|| panic!("timed out waiting for {what}"))
    }

    /// Whether this instance's master process runs.
    fn running(&self) -> bool {
        Command::new("/usr/sbin/postfix")
            .args(["-c", &self.config, "status"])
            .stderr(std::process::Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Stops the instance and waits (at most 10 s) until its master is
    /// gone; returns whether it is.
    fn stop(&self) -> bool {
        if !self.running() {
            return true;
        }
        let _ = Command::new("/usr/sbin/postfix")
            .args(["-c", &self.config, "stop"])
            .output();
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            !self.running()
        })
    }

    /// The last 30 lines of the log.
    fn log_tail(&self) -> String {
        let lines = self.log_lines();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        if failing {
            eprintln!("Postfix log tail:\n{}", self.log_tail());
        }
        let stopped = self.stop();
        if !stopped {
            eprintln!(
                "warning: Postfix ({}) did not stop within 10 s",
                self.config
            );
        }
        if failing || !stopped {
            eprintln!("kept {} for inspection", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
        // Every test that starts Postfix proves it left the machine's alone.
        if !failing {
            assert_eq!(
                tree_hash(Path::new(SYSTEM_CONFIG)),
                self.system_config_hash,
                "{SYSTEM_CONFIG} changed while a test's own Postfix ran"
            );
        }
    }
}

/// SHA-256 over every path, mode, link target and file content below
/// `root`, in sorted order: equal hashes mean an unchanged tree.
pub fn tree_hash(root: &Path) -> String {
    fn walk(path: &Path, hasher: &mut Sha256) {
        hasher.update(path.as_os_str().as_encoded_bytes());
        let Ok(meta) = fs::symlink_metadata(path) else {
            hasher.update(b"\0missing\0");
            return;
        };
        hasher.update(meta.permissions().mode().to_le_bytes());
        if meta.file_type().is_symlink() {
            let target = fs::read_link(path).unwrap_or_default();
            hasher.update(target.as_os_str().as_encoded_bytes());
        } else if meta.is_dir() {
            let mut entries: Vec<PathBuf> = fs::read_dir(path)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            entries.sort();
            for entry in entries {
                walk(&entry, hasher);
            }
        } else {
            hasher.update(fs::read(path).unwrap_or_default());
        }
        hasher.update(b"\0");
    }
    let mut hasher = Sha256::new();
    walk(root, &mut hasher);
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The string value of `"key": "…"` in one line of `postqueue -j` output
/// (no escapes expected in queue names).
fn json_string(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\": \""))? + key.len() + 5;
    let len = line[start..].find('"')?;
    Some(line[start..start + len].to_string())
}

/// A minimal SMTP client: EHLO, MAIL FROM:<sender>, one RCPT, DATA.
fn smtp_send(addr: &str, sender: &str, rcpt: &str, message: &str) -> Result<String, String> {
    let stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
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
    step(Some(format!("MAIL FROM:<{sender}>\r\n")), "250")?;
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
