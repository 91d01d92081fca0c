//! Issue 19 items 3 and 6 from outside: `serve` started by systemd's
//! socket activation with the `[http]` socket among the inherited ones
//! (as the packaged gitlab-mailgate.socket passes it) answers `/livez` on
//! it and LMTP on the other; and `check` proves GitLab accepts our token,
//! failing on a secret GitLab does not share.

use crate::common::*;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};

/// Kills the child on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve` as systemd would: the LMTP unix socket as fd 3 and
/// the TCP socket `http` as fd 4, with `LISTEN_FDS=2`, `LISTEN_PID` its
/// own pid (set by `sh` before `exec`) and `LISTEN_FDNAMES` `names`.
/// Its standard error goes to `log`.
fn activated(
    env: &TestEnv,
    lmtp: &UnixListener,
    http: &TcpListener,
    names: &str,
    log: &std::path::Path,
) -> Killed {
    let (lmtp_fd, http_fd) = (lmtp.as_raw_fd(), http.as_raw_fd());
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ exec \"$0\" serve --config \"$1\"")
        .arg(bin())
        .arg(&env.config)
        .env("LISTEN_FDS", "2")
        .env("LISTEN_FDNAMES", names)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("GITLAB_MAILGATE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("create the log"));
    // SAFETY: only fcntl(2) and dup2(2), which are async-signal-safe,
    // between fork and exec; the copies on 3 and 4 have no close-on-exec
    // flag. Copied out of the way first: either may sit on 3 or 4.
    unsafe {
        cmd.pre_exec(move || {
            let high = [lmtp_fd, http_fd].map(|fd| libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100));
            for (from, to) in high.into_iter().zip([3, 4]) {
                if from < 0 || libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Killed(cmd.spawn().expect("start serve under socket activation"))
}

#[test]
fn serve_answers_http_on_the_socket_systemd_passed() {
    // As the packaged unit (one name for both sockets, matched by
    // address) and as a separate unit with FileDescriptorName=http and
    // [http] listen off.
    for (names, http_configured) in [
        ("gitlab-mailgate.socket:gitlab-mailgate.socket", true),
        ("lmtp:http", false),
    ] {
        let dir = temp_dir();
        let sock = dir.path().join("lmtp.sock");
        let lmtp = UnixListener::bind(&sock).expect("bind the LMTP socket");
        let http = TcpListener::bind("127.0.0.1:0").expect("bind the HTTP socket");
        let addr = http.local_addr().unwrap().to_string();
        let extra = if http_configured {
            format!("[http]\nlisten = \"{addr}\"\n")
        } else {
            String::new()
        };
        let env = TestEnv::new(&Settings {
            extra,
            ..Settings::default()
        });
        let log = dir.path().join("serve.log");
        let mut child = activated(&env, &lmtp, &http, names, &log);
        // Only the server holds them now, so a socket it does not serve
        // refuses connections instead of queueing them.
        drop((lmtp, http));
        let mut answer = None;
        let served = wait_until(WAIT, POLL, || {
            if let Ok(Some(status)) = child.0.try_wait() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("{names}: serve exited: {status}\n{log}");
            }
            let got = http_get(&addr, "/livez", None);
            let done = got.status != 0;
            answer = Some(got);
            done
        });
        let answer = answer.unwrap();
        assert!(served, "{names}: no answer on {addr}: {answer:?}");
        assert_eq!(answer.status, 200, "{names}: {answer:?}");
        assert_eq!(http_get(&addr, "/metrics", None).status, 200, "{names}");
        // And LMTP on the other socket.
        Client::unix(&sock).expect(220, "");
        drop(child);
    }
}
