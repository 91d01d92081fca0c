//! `[log] target = "syslog"`: the lines of a pipe-mode run arrive on the
//! configured syslog socket with facility mail, under the program name
//! gitlab-mailgate, and never carry the secret.
//!
//! The test binds its own unix datagram socket in a temporary directory in
//! place of /dev/log and runs the real binary. No GitLab is needed: an
//! unknown recipient is refused before any request, and a known one with
//! GitLab unreachable (a closed loopback port) is deferred, which goes
//! through the code that reads the secret and signs the token.

use crate::common;

use common::{temp_dir, write_secret};
use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};

/// syslog facility mail (RFC 5424 §6.2.1: facility 2).
const LOG_MAIL: u8 = 2;
/// syslog severity informational.
const SEVERITY_INFO: u8 = 6;

const KNOWN_RECIPIENT: &str = "incoming+59d8df8370b7e95c5a49fbf86aeb2c93@incoming.example.com";
const UNKNOWN_RECIPIENT: &str = "nobody@elsewhere.example.org";

/// A loopback port nobody listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// What one `deliver` run left behind.
struct Run {
    pid: u32,
    status: Option<i32>,
    stdout: String,
    stderr: String,
    datagrams: Vec<String>,
}

/// Runs `gitlab-mailgate deliver` for `recipient` and collects the
/// datagrams that reached `socket` by the time it exited.
fn deliver(config: &Path, socket: &UnixDatagram, recipient: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gitlab-mailgate"))
        .args(["deliver", "--config"])
        .arg(config)
        .args(["--sender", "sender@example.org", recipient])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gitlab-mailgate");
    let pid = child.id();
    let message = "From: sender@example.org\r\nTo: someone@incoming.example.com\r\n\
                   Subject: syslog test\r\nMessage-ID: <syslog-test@example.org>\r\n\r\nbody\r\n";
    // The program may stop reading early; a broken pipe is not the test's concern.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(message.as_bytes());

    let status = common::wait_bounded(&mut child).code();
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");

    // The child has exited: everything it sent is queued on the socket.
    let mut datagrams = Vec::new();
    let mut buf = vec![0u8; 65536];
    for _ in 0..1000 {
        match socket.recv(&mut buf) {
            Ok(n) => datagrams.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("receive from the syslog socket: {e}"),
        }
    }
    Run {
        pid,
        status,
        stdout,
        stderr,
        datagrams,
    }
}

/// Splits `<PRI>rest` into the priority value and the rest.
fn priority(datagram: &str) -> Option<(u8, &str)> {
    let rest = datagram.strip_prefix('<')?;
    let (pri, rest) = rest.split_once('>')?;
    Some((pri.parse().ok()?, rest))
}

/// Checks every datagram of `run`: facility mail, program name with the
/// child's pid, no secret. Returns the datagrams' texts.
fn check_datagrams<'a>(run: &'a Run, secrets: &[&str]) -> Vec<&'a str> {
    assert!(
        !run.datagrams.is_empty(),
        "no datagram reached the syslog socket; stderr: {}",
        run.stderr
    );
    let tag = format!("gitlab-mailgate[{}]: ", run.pid);
    run.datagrams
        .iter()
        .map(|d| {
            let (pri, rest) = priority(d).unwrap_or_else(|| panic!("no <PRI> in {d:?}"));
            assert_eq!(pri >> 3, LOG_MAIL, "facility is not mail: {d:?}");
            assert!(rest.contains(&tag), "no {tag:?} in {d:?}");
            for secret in secrets {
                assert!(!d.contains(secret), "the secret is in a log line: {d:?}");
            }
            d.as_str()
        })
        .collect()
}

#[test]
fn pipe_mode_logs_to_syslog_with_facility_mail_and_no_secret() {
    let dir = temp_dir();
    let socket_path = dir.path().join("log.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the syslog socket");
    socket.set_nonblocking(true).expect("non-blocking socket");

    let incoming = write_secret(&dir.path().join("incoming_secret"));
    let service_desk = write_secret(&dir.path().join("service_desk_secret"));
    let secrets = [incoming.as_str(), service_desk.as_str()];
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"[gitlab]
url = "http://127.0.0.1:{port}"
timeout_secs = 5
[incoming_email]
address = "incoming+%{{key}}@incoming.example.com"
secret_file = "{dir}/incoming_secret"
[service_desk_email]
address = "contact+%{{key}}@incoming.example.com"
secret_file = "{dir}/service_desk_secret"
[limits]
deliver_deadline_secs = 30
[log]
target = "syslog"
syslog_socket = "{socket}"
"#,
            port = closed_port(),
            dir = dir.path().display(),
            socket = socket_path.display(),
        ),
    )
    .expect("write the configuration");

    // Unknown recipient: refused without asking GitLab, exit 67 (EX_NOUSER).
    let run = deliver(&config, &socket, UNKNOWN_RECIPIENT);
    assert_eq!(
        run.status,
        Some(67),
        "stdout: {}, stderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.starts_with("5.1.1 "), "stdout: {:?}", run.stdout);
    let lines = check_datagrams(&run, &secrets);
    let bounced = lines
        .iter()
        .find(|d| d.contains(UNKNOWN_RECIPIENT) && d.contains("status=bounced"))
        .unwrap_or_else(|| panic!("no bounced line for the recipient in {lines:#?}"));
    assert_eq!(
        priority(bounced).map(|(pri, _)| pri),
        Some(LOG_MAIL << 3 | SEVERITY_INFO),
        "not mail.info: {bounced:?}"
    );

    // Known recipient, GitLab unreachable: the secret is read and used,
    // the message deferred (exit 75, EX_TEMPFAIL), and still no secret logged.
    let run = deliver(&config, &socket, KNOWN_RECIPIENT);
    assert_eq!(
        run.status,
        Some(75),
        "stdout: {}, stderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.starts_with("4."), "stdout: {:?}", run.stdout);
    let lines = check_datagrams(&run, &secrets);
    assert!(
        lines
            .iter()
            .any(|d| d.contains(KNOWN_RECIPIENT) && d.contains("status=deferred")),
        "no deferred line for the recipient in {lines:#?}"
    );
    for secret in secrets {
        assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret));
    }
}
