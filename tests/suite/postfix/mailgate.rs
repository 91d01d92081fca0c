//! gitlab-mailgate's side of the end-to-end tests: the system user Postfix
//! runs the pipe command as, a directory with the binary, secrets and
//! config that user can read, and the LMTP server as a child process.
//!
//! Files are laid out the way the package expects them: secrets and config
//! `root:gitlab-mailgate 0640`, the binary world-executable. The binary is
//! copied out of target/ so the test does not depend on the checkout's
//! parent directories being searchable by other users.

use crate::common::{system_user_shared, wait_until, StandIn, StandInBuilder};
use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLockReadGuard;
use std::time::Duration;

/// The system user the pipe command and the LMTP server run as.
pub const USER: &str = "gitlab-mailgate";

/// A test's own directory and files; removed on drop unless the test failed.
pub struct Env {
    /// The directory (mode 0755).
    pub dir: PathBuf,
    /// The copied gitlab-mailgate binary.
    pub bin: PathBuf,
    /// The configuration file.
    pub config: PathBuf,
    /// The `incoming_email` secret file.
    pub incoming_secret: PathBuf,
    /// The `service_desk_email` secret file.
    pub service_desk_secret: PathBuf,
    /// Where `serve` creates its unix socket.
    pub lmtp_socket: PathBuf,
    /// The TCP port `serve` listens on.
    pub lmtp_port: u16,
    /// The TCP port of `serve`'s recipient lookup (`[lookup] listen`).
    pub lookup_port: u16,
    /// The port the GitLab stand-in must listen on (the config's URL).
    pub gitlab_port: u16,
    uid: u32,
    gid: u32,
    /// The system user stays as it is (the package test waits) while
    /// this lives.
    _user: RwLockReadGuard<'static, ()>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Env {
    /// Creates the user if needed and the directory with binary, secrets
    /// and a configuration pointing at GitLab on [`Env::gitlab_port`].
    pub fn new() -> Env {
        let user = system_user_shared();
        let (uid, gid) = ensure_user();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "gitlab-mailgate-postfix-{}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create test dir");
        set_mode(&dir, 0o755);
        if let Err(d) = searchable_by_others(&dir) {
            panic!(
                "{} is not searchable by other users: the pipe user could not reach {}",
                d.display(),
                dir.display()
            );
        }

        let bin = dir.join("gitlab-mailgate");
        fs::copy(env!("CARGO_BIN_EXE_gitlab-mailgate"), &bin).expect("copy the binary");
        set_mode(&bin, 0o755);

        let run_dir = dir.join("run");
        fs::create_dir_all(&run_dir).expect("create run dir");
        set_mode(&run_dir, 0o755);
        chown(&run_dir, Some(uid), Some(gid)).expect("chown run dir");

        let env = Env {
            incoming_secret: dir.join("incoming_secret"),
            service_desk_secret: dir.join("service_desk_secret"),
            config: dir.join("config.toml"),
            lmtp_socket: run_dir.join("lmtp.sock"),
            lmtp_port: free_port(),
            lookup_port: free_port(),
            gitlab_port: free_port(),
            dir,
            bin,
            uid,
            gid,
            _user: user,
        };
        for path in [&env.incoming_secret, &env.service_desk_secret] {
            env.write_private(path, &crate::common::new_secret_text());
        }
        env.write_config(&env.gitlab_section(), "");
        env
    }

    /// The configuration's usual `[gitlab]` settings: plain http to
    /// [`Env::gitlab_port`], a 10 s timeout.
    pub fn gitlab_section(&self) -> String {
        format!(
            "url = \"http://127.0.0.1:{}\"\ntimeout_secs = 10\n",
            self.gitlab_port
        )
    }

    /// Writes the configuration with `gitlab` as the body of its
    /// `[gitlab]` section and `lmtp` added to its `[lmtp]` section; a
    /// running `serve` reads it when started again.
    pub fn write_config(&self, gitlab: &str, lmtp: &str) {
        self.write_config_guarded(gitlab, lmtp, "");
    }

    /// [`write_config`](Self::write_config) with `guard` as the body of
    /// the `[guard]` section. Empty: the harness sends everything from the
    /// null sender (nobody to bounce to) to one address, so the null
    /// sender is accepted and the loop breaker is off; other guards keep
    /// their defaults. tests/suite/postfix/guard.rs writes its own.
    pub fn write_config_guarded(&self, gitlab: &str, lmtp: &str, guard: &str) {
        let guard = match guard {
            "" => "null_sender = \"accept\"\nloop_limit = 0\n",
            g => g,
        };
        self.write_private(&self.config, &self.config_text(gitlab, lmtp, guard));
    }

    /// Writes `path` as `root:gitlab-mailgate 0640`.
    pub fn write_private(&self, path: &Path, text: &str) {
        fs::write(path, text).expect("write file");
        chown(path, Some(0), Some(self.gid)).expect("chown root:gitlab-mailgate");
        set_mode(path, 0o640);
    }

    fn config_text(&self, gitlab: &str, lmtp: &str, guard: &str) -> String {
        format!(
            r#"# gitlab-mailgate configuration for the Postfix end-to-end tests
[gitlab]
{gitlab}
[incoming_email]
address = "incoming+%{{key}}@{domain}"
secret_file = "{incoming}"

[service_desk_email]
address = "contact+%{{key}}@{domain}"
secret_file = "{sd}"

[limits]
deliver_deadline_secs = 30

[lmtp]
listen = ["127.0.0.1:{port}", "unix:{socket}"]
socket_mode = "0666"
{lmtp}
[log]
target = "stderr"

[lookup]
listen = "127.0.0.1:{lookup}"

[guard]
{guard}
"#,
            lookup = self.lookup_port,
            domain = super::harness::DOMAIN,
            incoming = self.incoming_secret.display(),
            sd = self.service_desk_secret.display(),
            port = self.lmtp_port,
            socket = self.lmtp_socket.display(),
        )
    }

    /// A GitLab stand-in knowing both secrets: start it with
    /// [`spawn`](crate::common::StandInBuilder::spawn) after setting its
    /// mode, port and the like.
    pub fn standin(&self) -> StandInBuilder {
        StandIn::builder()
            .secret("incoming_email", &self.incoming_secret)
            .secret("service_desk_email", &self.service_desk_secret)
    }

    /// Starts the GitLab stand-in in `mode` on [`Env::gitlab_port`],
    /// knowing both secrets, recording into `out`.
    pub fn gitlab(&self, out: &Path, mode: &str) -> StandIn {
        self.standin().mode(mode).port(self.gitlab_port).spawn(out)
    }

    /// Panics if `text` shows a secret's base64 (or a piece of it) or a JWT.
    pub fn assert_no_secrets(&self, text: &str) {
        for path in [&self.incoming_secret, &self.service_desk_secret] {
            let secret = fs::read_to_string(path).expect("read secret");
            assert!(
                !text.contains(&secret.trim()[..16]),
                "a secret leaked into: {text}"
            );
        }
        assert!(!text.contains("eyJ"), "a token leaked into: {text}");
    }

    /// Starts `gitlab-mailgate serve` as the system user and waits until
    /// both its TCP port and its unix socket accept connections.
    pub fn serve(&self) -> Serve {
        self.serve_waiting(true, true)
    }

    /// Starts `serve` like [`serve`](Self::serve), waiting only for the
    /// listeners its configuration has: the TCP port, the unix socket.
    pub fn serve_waiting(&self, want_tcp: bool, want_unix: bool) -> Serve {
        let log = self.dir.join("serve.log");
        // Appended to: a test that restarts `serve` keeps every run's log.
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open serve.log");
        let child = Command::new(&self.bin)
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .uid(self.uid)
            .gid(self.gid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start gitlab-mailgate serve");
        let mut serve = Serve { child, log };
        let listening = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            let tcp = std::net::TcpStream::connect(("127.0.0.1", self.lmtp_port)).is_ok();
            let unix = std::os::unix::net::UnixStream::connect(&self.lmtp_socket).is_ok();
            if let (false, Ok(Some(status))) = (tcp || unix, serve.child.try_wait()) {
                panic!(
                    "gitlab-mailgate serve exited ({status}) before listening:\n{}",
                    serve.log_text()
                );
            }
            (tcp || !want_tcp) && (unix || !want_unix)
        });
        assert!(
            listening,
            "gitlab-mailgate serve is not listening on 127.0.0.1:{} and {} after 20 s:\n{}",
            self.lmtp_port,
            self.lmtp_socket.display(),
            serve.log_text()
        );
        serve
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("kept {} for inspection", self.dir.display());
        }
    }
}

/// A running `gitlab-mailgate serve`; stopped with SIGTERM on drop.
pub struct Serve {
    child: Child,
    log: PathBuf,
}

impl Serve {
    /// What the server logged so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends signal `name` (`KILL`, `TERM`) to the server (by the system
    /// call: a minimal Debian has no kill(1) outside the shell).
    pub fn signal(&self, name: &str) {
        let signal = match name {
            "KILL" => libc::SIGKILL,
            "TERM" => libc::SIGTERM,
            other => panic!("no such signal in the tests: {other}"),
        };
        self.send(signal)
            .unwrap_or_else(|e| panic!("kill -{name} {}: {e}", self.child.id()));
    }

    fn send(&self, signal: libc::c_int) -> std::io::Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        match unsafe { libc::kill(pid, signal) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        }
    }

    /// Waits at most `limit` for the server to exit; its exit status, or
    /// `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_until(limit, Duration::from_millis(50), || {
            self.child.try_wait().ok().flatten()
        })
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("gitlab-mailgate serve's log:\n{}", self.log_text());
        }
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SIGTERM, the way systemd stops it: a graceful drain.
        let _ = self.send(libc::SIGTERM);
        if self.wait_exit(Duration::from_secs(10)).is_some() {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The uid and gid of [`USER`], created as a system user when absent (the
/// package's postinst does the same). Test threads and test processes
/// (`cargo nextest` runs each test in its own) take turns through a lock
/// file, so only one of them ever runs `useradd`.
fn ensure_user() -> (u32, u32) {
    let id = |flag: &str| {
        Command::new("id")
            .args([flag, USER])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
    };
    let lock_path = std::env::temp_dir().join("gitlab-mailgate-tests-useradd.lock");
    let lock = fs::File::create(&lock_path).expect("create the useradd lock file");
    lock.lock().expect("lock the useradd lock file");
    if id("-u").is_none() {
        // A group left behind (by a package purge that kept it) is reused.
        let group_exists = Command::new("getent")
            .args(["group", USER])
            .output()
            .is_ok_and(|o| o.status.success());
        let group = if group_exists {
            ["--gid", USER]
        } else {
            ["--user-group", "--system"]
        };
        let out = Command::new("/usr/sbin/useradd")
            .args(group)
            .args([
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                USER,
            ])
            .output()
            .expect("run useradd");
        // 9: the user exists after all (made outside this lock): fine.
        assert!(
            out.status.success() || out.status.code() == Some(9),
            "useradd {USER} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(lock);
    match (id("-u"), id("-g")) {
        (Some(u), Some(g)) => (u, g),
        _ => panic!("cannot find or create the user {USER}"),
    }
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

/// Checks that every directory above `path` lets other users through
/// (o+x), as the pipe user must to reach its files; returns the first one
/// that does not.
fn searchable_by_others(path: &Path) -> Result<(), PathBuf> {
    for dir in path.ancestors().skip(1) {
        let mode = fs::metadata(dir)
            .map_err(|_| dir.to_path_buf())?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            return Err(dir.to_path_buf());
        }
    }
    Ok(())
}
