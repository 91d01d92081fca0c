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
            // 503 until the accept loops run, a moment after HTTP.
            let got = http_get(&addr, "/livez", None);
            let done = got.status == 200;
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

/// GitLab's gitlab.yml for `env`, with `secret` as incoming_email's
/// `secret_file` (GitLab's own), GitLab at `url`; returns its path.
fn gitlab_yml(env: &TestEnv, url: &str, secret: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(project_file("tests/data/gitlab.yml"))
        .expect("read tests/data/gitlab.yml")
        .replace("@GITLAB_URL@", url)
        .replace("@DOMAIN@", "incoming.example.com")
        .replace(
            "secret_file: .gitlab_incoming_email_secret",
            &format!("secret_file: {}", secret.display()),
        );
    let path = env.dir().join("gitlab.yml");
    write_file(&path, text.as_bytes(), 0o600);
    path
}

/// `check` with GitLab's gitlab.yml as `[gitlab] config_file` and
/// incoming_email's secret_file a copy of GitLab's (`same`) or another
/// secret; returns its exit code, its output and the mailboxes of the
/// bodies the stand-in accepted.
fn check_with_copy(same: bool) -> (Option<i32>, String, Vec<String>) {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let yml = gitlab_yml(&env, &standin.url(), &env.incoming_secret);
    let mut settings = Settings {
        gitlab_url: standin.url(),
        gitlab_extra: format!("config_file = {}", toml_string(&yml.to_string_lossy())),
        ..Settings::default()
    };
    settings.lmtp_listen = vec!["127.0.0.1:0".into()];
    let mut text = env.config_text(&settings);
    let copy = match same {
        true => std::fs::read_to_string(&env.incoming_secret).unwrap(),
        false => new_secret_text(),
    };
    {
        let path = env.dir().join("incoming_email_secret.copy");
        write_file(&path, copy.as_bytes(), 0o600);
        let gitlabs = toml_string(&env.incoming_secret.to_string_lossy());
        assert!(text.contains(&gitlabs), "{text}");
        text = text.replace(&gitlabs, &toml_string(&path.to_string_lossy()));
    }
    write_file(&env.config, text.as_bytes(), 0o600);
    let run = env.check();
    let mailboxes = standin.bodies().into_iter().map(|b| b.mailbox).collect();
    (run.code, run.out(), mailboxes)
}

#[test]
fn check_proves_gitlab_accepts_our_token_with_a_message_it_drops() {
    // The very secret GitLab has, in a copy of ours.
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let run = env.check();
    let out = run.out();
    assert_eq!(run.code, Some(0), "{out}");
    assert_eq!(
        out.matches("GitLab accepts our token (HS256)").count(),
        2,
        "{out}"
    );
    // Nothing but the two probes reached GitLab, each dropped unread.
    let bodies = standin.bodies();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    for body in &bodies {
        let text = String::from_utf8_lossy(&body.bytes);
        assert!(
            text.contains("\r\nAuto-Submitted: auto-generated\r\n")
                && text.contains("\r\nMessage-ID: <")
                && text.contains("\r\nTo: <")
                && !text.contains("%{key}"),
            "{text}"
        );
    }
    drop(env);
}

#[test]
fn check_fails_on_a_secret_gitlab_does_not_share() {
    // A rotated secret: ours differs from GitLab's (which the stand-in has).
    let (code, out, mailboxes) = check_with_copy(false);
    assert_eq!(code, Some(1), "{out}");
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        fails.iter().any(|l| l.contains(
            "incoming_email: GitLab refuses our token: the secret differs from GitLab's (rotated?)"
        )),
        "{out}"
    );
    // And, root reading GitLab's file, the copy is told stale.
    assert!(
        fails
            .iter()
            .any(|l| l.contains("differs from GitLab's") && l.contains("copy it again")),
        "{out}"
    );
    assert_eq!(fails.len(), 2, "{out}");
    // Service Desk's token was accepted, incoming_email's nothing.
    assert!(
        out.contains("service_desk_email: GitLab accepts our token"),
        "{out}"
    );
    assert_eq!(mailboxes, ["service_desk_email"], "{out}");

    // A copy of the same secret passes, and says it compared.
    let (code, out, mailboxes) = check_with_copy(true);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("is the same secret as GitLab's"), "{out}");
    assert_eq!(mailboxes.len(), 2, "{out}");
}
