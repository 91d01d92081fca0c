//! The guards of issue 13 through the real binary: `serve` driven by the
//! LMTP client and by swaks, and `deliver` as pipe(8) runs it, in front of
//! the GitLab stand-in. Replies are compared as (code, enhanced code); the
//! stand-in's request log says what reached GitLab.

use crate::common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A message with extra header lines on top.
fn message_with(headers: &str, subject: &str) -> Vec<u8> {
    let mut m = headers.replace('\n', "\r\n").into_bytes();
    m.extend(crlf_message(subject));
    m
}

/// Sends one message from `from` to [`INCOMING_RCPT`] on a new
/// connection; returns the final reply as `"code enhanced"`.
fn send(server: &Server, from: &str, message: &[u8]) -> String {
    let mut c = server.connect();
    c.hello();
    c.cmd(&format!("MAIL FROM:<{from}>"), 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
    c.cmd("DATA", 354, "");
    c.send(&stuffed(message));
    let reply = c.reply().expect("a reply to the message");
    c.cmd("QUIT", 221, "2.0.0");
    format!("{} {}", reply.code, reply.enhanced)
}

fn guarded(mode: &str, guard: &str) -> (TestEnv, StandIn, Server) {
    let guard = guard.to_string();
    let (env, standin) = TestEnv::with_standin(StandIn::builder().mode(mode), |s| s.guard = guard);
    let server = Server::start(&env);
    (env, standin, server)
}

#[test]
fn null_sender_is_refused_at_rcpt_with_swaks_and_nothing_is_posted() {
    let (_env, standin, server) = guarded("ok", "");
    let out = Command::new("swaks")
        .args(["--protocol", "LMTP", "--server", &server.addr])
        .args(["--from", "<>", "--to", INCOMING_RCPT, "--timeout", "20"])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("<** 550 5.7.1"), "{text}");
        }
        Err(e) => panic!("swaks (Debian package swaks; .ci/run installs it): {e}"),
    }
    // The same client with a sender goes through.
    assert_eq!(
        send(&server, "alice@example.org", &crlf_message("n")),
        "250 2.0.0"
    );
    assert!(
        server.wait_log("status=discarded (null sender)", 1),
        "{}",
        server.log_text()
    );
    assert_eq!(
        standin.requests().len(),
        1,
        "only the normal message is posted"
    );
}

#[test]
fn null_sender_accepted_when_configured() {
    let (_env, standin, server) = guarded("ok", "null_sender = \"accept\"\n");
    assert_eq!(send(&server, "", &crlf_message("dsn")), "250 2.0.0");
    assert_eq!(standin.bodies().len(), 1);
}

#[test]
fn auto_submitted_mail_is_discarded_bulk_mail_is_not() {
    let (_env, standin, server) = guarded("ok", "");
    let auto = message_with("Auto-Submitted: auto-replied\n", "auto");
    assert_eq!(send(&server, "bot@example.org", &auto), "250 2.0.0");
    let autoreply = message_with("X-Autoreply: yes\n", "xauto");
    assert_eq!(send(&server, "bot@example.org", &autoreply), "250 2.0.0");
    assert!(
        standin.requests().is_empty(),
        "auto-submitted mail was posted"
    );
    assert!(
        server.wait_log("status=discarded (auto-submitted)", 2),
        "{}",
        server.log_text()
    );
    let bulk = message_with("Precedence: bulk\nAuto-Submitted: no\n", "bulk");
    assert_eq!(send(&server, "list@example.org", &bulk), "250 2.0.0");
    let normal = crlf_message("normal");
    assert_eq!(send(&server, "alice@example.org", &normal), "250 2.0.0");
    let bodies = standin.bodies();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[1].bytes, expected_body(INCOMING_RCPT, &normal));
}

#[test]
fn loop_breaker_defers_past_the_limit_per_sender_and_key() {
    let (_env, standin, server) = guarded("ok", "loop_limit = 3\n");
    let replies: Vec<String> = (0..5)
        .map(|i| {
            send(
                &server,
                "Bot@Example.org",
                &crlf_message(&format!("loop{i}")),
            )
        })
        .collect();
    assert_eq!(
        replies,
        [
            "250 2.0.0",
            "250 2.0.0",
            "250 2.0.0",
            "451 4.7.1",
            "451 4.7.1"
        ]
    );
    // Same key, another sender: not a loop.
    assert_eq!(
        send(&server, "alice@example.org", &crlf_message("other")),
        "250 2.0.0"
    );
    assert_eq!(standin.bodies().len(), 4);
    assert!(server.log_text().contains("not posted to GitLab"));
}

#[test]
fn breaker_opens_after_failures_answers_at_once_and_a_probe_closes_it() {
    let (_env, mut standin, server) = guarded(
        "500",
        "breaker_failures = 2\nbreaker_max_cooldown_secs = 5\n",
    );
    for i in 0..2 {
        assert_eq!(
            send(&server, "a@example.org", &crlf_message(&format!("f{i}"))),
            "451 4.3.0"
        );
    }
    let start = Instant::now();
    for i in 0..5 {
        assert_eq!(
            send(&server, "a@example.org", &crlf_message(&format!("o{i}"))),
            "451 4.3.0"
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "open breaker answers at once"
    );
    assert_eq!(standin.requests().len(), 2, "nothing posted while open");
    assert!(server.log_text().contains("circuit breaker open"));
    standin.set_mode("ok");
    // After the cool-down one probe goes through and closes the breaker.
    let mut last = String::new();
    let closed = wait_until(Duration::from_secs(15), Duration::from_millis(500), || {
        last = send(&server, "a@example.org", &crlf_message("probe"));
        last == "250 2.0.0"
    });
    assert!(closed, "still {last}:\n{}", server.log_text());
    assert_eq!(standin.requests().len(), 3, "exactly one probe");
    assert!(server.wait_log("circuit breaker closed", 1));
    assert_eq!(
        send(&server, "a@example.org", &crlf_message("after")),
        "250 2.0.0"
    );
}

#[test]
fn rate_limit_429_is_temporary_and_retry_after_opens_the_breaker() {
    let (_env, standin, server) = guarded("retry:429:60", "");
    assert_eq!(
        send(&server, "a@example.org", &crlf_message("r1")),
        "451 4.4.5"
    );
    let reply = {
        let mut c = server.connect();
        c.hello();
        c.cmd("MAIL FROM:<a@example.org>", 250, "2.1.0");
        c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
        c.cmd("DATA", 354, "");
        c.send(&stuffed(&crlf_message("r2")));
        c.reply().expect("reply")
    };
    assert_eq!((reply.code, reply.enhanced.as_str()), (451, "4.3.0"));
    assert!(reply.line.contains("next try in"), "{}", reply.line);
    assert_eq!(standin.requests().len(), 1);
    assert!(
        server.log_text().contains("Retry-After"),
        "{}",
        server.log_text()
    );
}

#[test]
fn back_pressure_bounds_posts_in_flight() {
    let (_env, standin, server) = guarded("slow:2000", "max_in_flight = 2\nslot_wait_secs = 1\n");
    let replies: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..5)
            .map(|i| {
                let server = &server;
                s.spawn(move || send(server, "a@example.org", &crlf_message(&format!("bp{i}"))))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = replies.iter().filter(|r| *r == "250 2.0.0").count();
    let busy = replies.iter().filter(|r| *r == "451 4.3.2").count();
    assert_eq!((ok, busy), (2, 3), "{replies:?}");
    let requests = standin.requests();
    let peak = requests.iter().filter_map(|r| r.in_flight).max();
    assert_eq!(requests.len(), 2);
    assert!(peak <= Some(2), "peak {peak:?}");
}

#[test]
fn pipe_mode_discards_null_sender_and_auto_submitted_with_exit_0() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |s| s.guard = String::new());
    let run = env.deliver_merged(
        &["--sender", "MAILER-DAEMON", INCOMING_RCPT],
        &message("bounce"),
    );
    assert_eq!(run.code, Some(0), "{}", run.out());
    assert!(
        run.out().contains("status=discarded (null sender)"),
        "{}",
        run.out()
    );
    let auto = [
        b"Auto-Submitted: auto-generated\n".as_slice(),
        &message("auto"),
    ]
    .concat();
    let run = env.deliver_merged(&["--sender", "bot@example.org", INCOMING_RCPT], &auto);
    assert_eq!(run.code, Some(0), "{}", run.out());
    assert!(
        run.out().contains("status=discarded (auto-submitted)"),
        "{}",
        run.out()
    );
    assert!(standin.requests().is_empty());
    let run = env.deliver_merged(
        &["--sender", "alice@example.org", INCOMING_RCPT],
        &message("n"),
    );
    assert_eq!(run.code, Some(0), "{}", run.out());
    assert_eq!(standin.bodies().len(), 1);
}

/// Each guard decision is counted in `gitlab_mailgate_guard_decisions_total`.
#[test]
fn guard_decisions_are_counted_in_the_metrics() {
    let http = format!("127.0.0.1:{}", unused_port());
    let listen = format!("\n[http]\nlisten = \"{http}\"\n");
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |s| {
        s.guard = "loop_limit = 1\n".into();
        s.extra = listen.clone();
    });
    let server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    c.cmd("MAIL FROM:<>", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 550, "5.7.1");
    c.cmd("QUIT", 221, "2.0.0");
    let auto = message_with("Auto-Submitted: auto-generated\n", "auto");
    assert_eq!(send(&server, "bot@example.org", &auto), "250 2.0.0");
    assert_eq!(
        send(&server, "a@example.org", &crlf_message("1")),
        "250 2.0.0"
    );
    assert_eq!(
        send(&server, "a@example.org", &crlf_message("2")),
        "451 4.7.1"
    );
    let got = samples(&http_get(&http, "/metrics", None).body);
    let count = |d: &str| {
        got.get(&format!(
            "gitlab_mailgate_guard_decisions_total{{decision=\"{d}\"}}"
        ))
        .copied()
    };
    assert_eq!(count("null_sender"), Some(1.0), "{got:?}");
    assert_eq!(count("auto_submitted"), Some(1.0));
    assert_eq!(count("loop"), Some(1.0));
    assert_eq!(count("no_slot"), Some(0.0));
    assert_eq!(count("breaker_open"), Some(0.0));
    assert_eq!(standin.bodies().len(), 1);
}
