//! The LMTP server end to end: the real binary (`gitlab-mailgate serve`)
//! on loopback TCP or a unix socket, driven by a small LMTP client here and
//! by swaks, delivering to the GitLab stand-in (which verifies the JWT).
//!
//! Replies are compared as (code, enhanced code). Every wait is bounded;
//! nothing asserts on timing.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// A running `gitlab-mailgate serve`, its log lines collected; killed on
/// drop unless stopped.
struct Server {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    /// The TCP address it reported, if it listens on TCP.
    tcp: Option<String>,
}

impl Server {
    fn start(env: &TestEnv) -> Server {
        let mut child = Command::new(bin())
            .arg("serve")
            .arg("--config")
            .arg(&env.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gitlab-mailgate serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut server = Server {
            child,
            log,
            tcp: None,
        };
        let ready = wait_until(WAIT, || server.log_text().contains("listening on "));
        assert!(ready, "the server did not start:\n{}", server.log_text());
        let text = server.log_text();
        let line = text
            .lines()
            .find(|l| l.contains("listening on "))
            .unwrap_or_default();
        server.tcp = line
            .split("listening on ")
            .nth(1)
            .and_then(|l| l.split(", ").find(|a| !a.starts_with("unix:")))
            .map(str::to_string);
        server
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn connect(&self) -> Client {
        let addr = self.tcp.as_deref().expect("a TCP listener");
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Client::new(Box::new(stream.try_clone().unwrap()), Box::new(stream))
    }

    /// Sends SIGTERM once (a second one would end the server at once).
    fn terminate(&self) {
        // SAFETY: kill(2) on the pid of our own child process.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }

    /// Waits (bounded) for the exit and returns the exit code.
    fn wait(mut self) -> Option<i32> {
        wait_bounded(&mut self.child).code()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One reply: code, enhanced code (`""` when none) and the last line.
#[derive(Debug)]
struct Reply {
    code: u16,
    enhanced: String,
    line: String,
}

impl Reply {
    fn is(&self, code: u16, enhanced: &str) -> bool {
        self.code == code && self.enhanced == enhanced
    }
}

/// A line-at-a-time LMTP client.
struct Client {
    reader: BufReader<Box<dyn Read>>,
    writer: Box<dyn Write>,
}

impl Client {
    fn new(reader: Box<dyn Read>, writer: Box<dyn Write>) -> Client {
        Client {
            reader: BufReader::new(reader),
            writer,
        }
    }

    fn unix(path: &std::path::Path) -> Client {
        let stream = UnixStream::connect(path).expect("connect to the unix socket");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Client::new(Box::new(stream.try_clone().unwrap()), Box::new(stream))
    }

    /// Reads one (possibly multi-line) reply; `None` at end of stream.
    fn reply(&mut self) -> Option<Reply> {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end().to_string();
            if line.as_bytes().get(3) == Some(&b'-') {
                continue;
            }
            let mut words = line.split(' ');
            let code = words.next()?.parse().ok()?;
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

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
        self.writer.flush().expect("flush");
    }

    /// Sends one command line and reads its reply.
    fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply().unwrap_or_else(|| panic!("no reply to {line}"))
    }
}

fn expect(reply: Reply, code: u16, enhanced: &str) {
    assert!(
        reply.is(code, enhanced),
        "wanted {code} {enhanced}, got {:?}",
        reply.line
    );
}

/// Greeting and LHLO.
fn hello(c: &mut Client) {
    expect(c.reply().expect("greeting"), 220, "");
    expect(c.cmd("LHLO test.example"), 250, "");
}

/// A CRLF message (LMTP carries CRLF lines).
fn crlf_message(subject: &str) -> Vec<u8> {
    String::from_utf8(message(subject))
        .unwrap()
        .replace('\n', "\r\n")
        .into_bytes()
}

/// The message dot-stuffed and ended with `.CRLF`, as sent after DATA.
fn stuffed(message: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(message.to_vec()).unwrap();
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
    }
    out.push_str(".\r\n");
    out.into_bytes()
}

fn expected_body(rcpt: &str, message: &[u8]) -> Vec<u8> {
    let mut body = format!("Delivered-To: {rcpt}\r\n").into_bytes();
    body.extend_from_slice(message);
    body
}

#[test]
fn delivers_per_recipient_and_refuses_unknown_recipients_at_rcpt() {
    let (env, standin) = TestEnv::with_standin("ok", |_| {});
    let server = Server::start(&env);
    let mut c = server.connect();
    hello(&mut c);
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0");
    expect(c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>")), 250, "2.1.5");
    expect(c.cmd(&format!("RCPT TO:<{UNKNOWN_RCPT}>")), 550, "5.1.1");
    expect(
        c.cmd(&format!("RCPT TO:<{SERVICE_DESK_RCPT}>")),
        250,
        "2.1.5",
    );
    expect(c.cmd("DATA"), 354, "");
    let msg = crlf_message("lmtp-two");
    c.send(&stuffed(&msg));
    expect(c.reply().unwrap(), 250, "2.0.0");
    expect(c.reply().unwrap(), 250, "2.0.0");
    expect(c.cmd("QUIT"), 221, "2.0.0");

    let bodies = standin.bodies();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(bodies[0].mailbox, "incoming_email");
    assert_eq!(bodies[0].bytes, expected_body(INCOMING_RCPT, &msg));
    assert_eq!(bodies[1].mailbox, "service_desk_email");
    assert_eq!(bodies[1].bytes, expected_body(SERVICE_DESK_RCPT, &msg));
    assert!(standin.requests().iter().all(|r| r.jwt_ok));

    let done = wait_until(WAIT, || server.log_text().contains("messages=1"));
    let log = server.log_text();
    assert!(done, "{log}");
    assert!(log.contains("connect from 127.0.0.1:"), "{log}");
    assert!(
        log.contains(&format!("to=<{UNKNOWN_RCPT}>, status=bounced")),
        "{log}"
    );
    env.assert_no_secrets(log.as_bytes());
}

#[test]
fn each_recipient_gets_its_own_outcome() {
    let (env, _standin) = TestEnv::with_standin("500,ok", |_| {});
    let server = Server::start(&env);
    let mut c = server.connect();
    hello(&mut c);
    expect(c.cmd("MAIL FROM:<>"), 250, "2.1.0");
    expect(c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>")), 250, "2.1.5");
    expect(
        c.cmd(&format!("RCPT TO:<{SERVICE_DESK_RCPT}>")),
        250,
        "2.1.5",
    );
    expect(c.cmd("DATA"), 354, "");
    c.send(&stuffed(&crlf_message("lmtp-mixed")));
    expect(c.reply().unwrap(), 451, "4.3.0");
    expect(c.reply().unwrap(), 250, "2.0.0");
}

#[test]
fn gitlab_down_is_a_temporary_failure() {
    let env = TestEnv::new(&Settings::default());
    let server = Server::start(&env);
    let mut c = server.connect();
    hello(&mut c);
    expect(c.cmd("MAIL FROM:<>"), 250, "2.1.0");
    expect(c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>")), 250, "2.1.5");
    expect(c.cmd("DATA"), 354, "");
    c.send(&stuffed(&crlf_message("lmtp-down")));
    expect(c.reply().unwrap(), 451, "4.4.1");
}

#[test]
fn oversize_message_is_refused_per_recipient_and_not_posted() {
    let (env, standin) = TestEnv::with_standin("ok", |s| s.max_message_size = 2000);
    let server = Server::start(&env);
    let mut c = server.connect();
    hello(&mut c);
    expect(c.cmd("MAIL FROM:<> SIZE=5000"), 552, "5.3.4");
    expect(c.cmd("MAIL FROM:<>"), 250, "2.1.0");
    expect(c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>")), 250, "2.1.5");
    expect(
        c.cmd(&format!("RCPT TO:<{SERVICE_DESK_RCPT}>")),
        250,
        "2.1.5",
    );
    expect(c.cmd("DATA"), 354, "");
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    big.extend(b"0123456789012345678901234567890123456789\r\n".repeat(500));
    c.send(&stuffed(&big));
    expect(c.reply().unwrap(), 552, "5.3.4");
    expect(c.reply().unwrap(), 552, "5.3.4");
    expect(c.cmd("NOOP"), 250, "2.0.0");
    assert!(standin.requests().is_empty());
}

#[test]
fn a_connection_dropped_in_data_posts_nothing() {
    let (env, standin) = TestEnv::with_standin("ok", |_| {});
    let server = Server::start(&env);
    {
        let mut c = server.connect();
        hello(&mut c);
        expect(c.cmd("MAIL FROM:<>"), 250, "2.1.0");
        expect(c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>")), 250, "2.1.5");
        expect(c.cmd("DATA"), 354, "");
        c.send(b"Subject: cut\r\n\r\nhalf a message\r\n");
    }
    let gone = wait_until(WAIT, || server.log_text().contains("messages=0"));
    assert!(gone, "{}", server.log_text());
    assert!(standin.requests().is_empty());
}

#[test]
fn unix_socket_with_mode_and_swaks_pipelining() {
    let dir = TempDir::new();
    let socket = dir.path().join("lmtp.sock");
    let (env, standin) = TestEnv::with_standin("ok", |s| {
        s.lmtp_listen = vec![format!("unix:{}", socket.display())];
        s.extra = "socket_mode = \"0620\"\n".into();
    });
    let server = Server::start(&env);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o620);

    let mut c = Client::unix(&socket);
    hello(&mut c);
    expect(c.cmd("NOOP"), 250, "2.0.0");
    drop(c);

    let out = Command::new("swaks")
        .args(["--protocol", "LMTP", "--pipeline", "--socket"])
        .arg(&socket)
        .args(["--from", "alice@example.org", "--to"])
        .arg(format!(
            "{INCOMING_RCPT},{UNKNOWN_RCPT},{SERVICE_DESK_RCPT}"
        ))
        .args(["--timeout", "20"])
        .stdin(Stdio::null())
        .output();
    let Ok(out) = out else {
        eprintln!("skipped the swaks part: swaks is not installed");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    // swaks's exit status looks at the last recipient only: read the replies.
    let finals: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("<- ") || l.starts_with("<** "))
        .collect();
    assert!(finals.iter().any(|l| l.contains("550 5.1.1")), "{text}");
    let delivered = finals
        .iter()
        .filter(|l| l.contains("250 2.0.0 delivered"))
        .count();
    assert_eq!(delivered, 2, "{text}");
    assert_eq!(standin.bodies().len(), 2);
    drop(server);
    drop(dir);
}

#[test]
fn too_many_connections_get_421() {
    let env = TestEnv::new(&Settings {
        extra: "max_connections = 1\n".into(),
        ..Settings::default()
    });
    let server = Server::start(&env);
    let mut first = server.connect();
    expect(first.reply().unwrap(), 220, "");
    let mut second = server.connect();
    expect(second.reply().unwrap(), 421, "4.3.2");
    assert!(second.reply().is_none());
    expect(first.cmd("NOOP"), 250, "2.0.0");
}

#[test]
fn an_idle_client_is_told_and_dropped() {
    let env = TestEnv::new(&Settings {
        extra: "idle_timeout_secs = 1\n".into(),
        ..Settings::default()
    });
    let server = Server::start(&env);
    let mut c = server.connect();
    hello(&mut c);
    expect(
        c.reply().expect("421 before the test's read timeout"),
        421,
        "4.4.2",
    );
    assert!(c.reply().is_none());
}

#[test]
fn sigterm_lets_the_transaction_finish_then_exits_0() {
    let (env, standin) = TestEnv::with_standin("ok", |_| {});
    let server = Server::start(&env);
    let mut idle = server.connect();
    hello(&mut idle);
    let mut busy = server.connect();
    hello(&mut busy);
    expect(busy.cmd("MAIL FROM:<>"), 250, "2.1.0");
    expect(
        busy.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>")),
        250,
        "2.1.5",
    );
    expect(busy.cmd("DATA"), 354, "");
    busy.send(b"Subject: during shutdown\r\n\r\nfirst half\r\n");

    server.terminate();
    expect(idle.reply().expect("421 to the idle client"), 421, "4.3.2");

    busy.send(b"second half\r\n.\r\n");
    expect(busy.reply().unwrap(), 250, "2.0.0");
    expect(
        busy.reply().expect("421 after the transaction"),
        421,
        "4.3.2",
    );
    assert_eq!(server.wait(), Some(0));
    assert_eq!(standin.bodies().len(), 1);
}

#[test]
fn bad_configuration_names_the_place() {
    let env = TestEnv::new(&Settings::default());
    std::fs::write(&env.config, "[gitlab]\nurl = \"http://x\"\nbogus = 1\n").unwrap();
    let run = run(
        Command::new(bin())
            .arg("serve")
            .arg("--config")
            .arg(&env.config),
        b"",
    );
    assert_eq!(run.code, Some(1));
    assert!(run.err().contains("config.toml:3:1:"), "{}", run.err());
}
