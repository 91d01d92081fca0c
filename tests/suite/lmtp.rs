//! The LMTP server end to end: the real binary (`gitlab-mailgate serve`)
//! on loopback TCP or a unix socket, driven by a small LMTP client here and
//! by swaks, delivering to the GitLab stand-in (which verifies the JWT).
//!
//! Replies are compared as (code, enhanced code). Every wait is bounded;
//! nothing asserts on timing.

use crate::common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

/// Opens a transaction on `c` (LHLO done) with the null sender, one
/// accepted RCPT per recipient in `rcpts`, and DATA (354).
fn start_data(c: &mut Client, rcpts: &[&str]) {
    c.cmd("MAIL FROM:<>", 250, "2.1.0");
    for rcpt in rcpts {
        c.cmd(&format!("RCPT TO:<{rcpt}>"), 250, "2.1.5");
    }
    c.cmd("DATA", 354, "");
}

#[test]
fn delivers_per_recipient_and_refuses_unknown_recipients_at_rcpt() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    c.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
    c.cmd(&format!("RCPT TO:<{UNKNOWN_RCPT}>"), 550, "5.1.1");
    c.cmd(&format!("RCPT TO:<{SERVICE_DESK_RCPT}>"), 250, "2.1.5");
    c.cmd("DATA", 354, "");
    let msg = crlf_message("lmtp-two");
    c.send(&stuffed(&msg));
    c.expect(250, "2.0.0");
    c.expect(250, "2.0.0");
    c.cmd("QUIT", 221, "2.0.0");

    let bodies = standin.bodies();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(bodies[0].mailbox, "incoming_email");
    assert_eq!(bodies[0].bytes, expected_body(INCOMING_RCPT, &msg));
    assert_eq!(bodies[1].mailbox, "service_desk_email");
    assert_eq!(bodies[1].bytes, expected_body(SERVICE_DESK_RCPT, &msg));
    assert!(standin.requests().iter().all(|r| r.jwt_ok));

    let done = server.wait_log("messages=1", 1);
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
    let (env, _standin) = TestEnv::with_standin(StandIn::builder().mode("500,ok"), |_| {});
    let server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    start_data(&mut c, &[INCOMING_RCPT, SERVICE_DESK_RCPT]);
    c.send(&stuffed(&crlf_message("lmtp-mixed")));
    c.expect(451, "4.3.0");
    c.expect(250, "2.0.0");
}

#[test]
fn gitlab_down_is_a_temporary_failure() {
    let env = TestEnv::new(&Settings::default());
    let server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    start_data(&mut c, &[INCOMING_RCPT]);
    c.send(&stuffed(&crlf_message("lmtp-down")));
    c.expect(451, "4.4.1");
}

#[test]
fn oversize_message_is_refused_per_recipient_and_not_posted() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |s| s.max_message_size = 2000);
    let server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    c.cmd("MAIL FROM:<> SIZE=5000", 552, "5.3.4");
    start_data(&mut c, &[INCOMING_RCPT, SERVICE_DESK_RCPT]);
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    big.extend(b"0123456789012345678901234567890123456789\r\n".repeat(500));
    c.send(&stuffed(&big));
    c.expect(552, "5.3.4");
    c.expect(552, "5.3.4");
    c.cmd("NOOP", 250, "2.0.0");
    assert!(standin.requests().is_empty());
}

#[test]
fn a_connection_dropped_in_data_posts_nothing() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let server = Server::start(&env);
    {
        let mut c = server.connect();
        c.hello();
        start_data(&mut c, &[INCOMING_RCPT]);
        c.send(b"Subject: cut\r\n\r\nhalf a message\r\n");
    }
    let gone = server.wait_log("messages=0", 1);
    assert!(gone, "{}", server.log_text());
    assert!(standin.requests().is_empty());
}

#[test]
fn unix_socket_with_mode_and_swaks_pipelining() {
    let dir = temp_dir();
    let socket = dir.path().join("lmtp.sock");
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |s| {
        s.lmtp_listen = vec![format!("unix:{}", socket.display())];
        s.extra = "socket_mode = \"0620\"\n".into();
    });
    let server = Server::start(&env);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o620);

    let mut c = Client::unix(&socket);
    c.hello();
    c.cmd("NOOP", 250, "2.0.0");
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
    let out = out.unwrap_or_else(|e| panic!("cannot run swaks (.ci/run installs it): {e}"));
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
    // A connection in a transaction keeps its slot...
    let mut first = server.connect();
    first.hello();
    first.cmd("MAIL FROM:<>", 250, "2.1.0");
    let mut second = server.connect();
    second.expect(421, "4.3.2");
    assert!(second.reply().is_none());
    first.cmd("NOOP", 250, "2.0.0");
    // ...an idle one gives it to the next client (once the server has
    // marked it idle, just after its reply went out).
    first.cmd("RSET", 250, "2.0.0");
    let third = wait_until(WAIT, POLL, || {
        let mut c = server.connect();
        (c.reply().map(|r| r.code) == Some(220)).then_some(c)
    });
    let mut third = third.expect("no slot for a new client after RSET");
    first.expect(421, "4.4.2");
    third.cmd("NOOP", 250, "2.0.0");
}

#[test]
fn an_idle_client_is_told_and_dropped() {
    let env = TestEnv::new(&Settings {
        extra: "idle_timeout_secs = 1\n".into(),
        ..Settings::default()
    });
    let server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    c.expect(421, "4.4.2");
    assert!(c.reply().is_none());
}

#[test]
fn sigterm_lets_the_transaction_finish_then_exits_0() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let server = Server::start(&env);
    let mut idle = server.connect();
    idle.hello();
    let mut busy = server.connect();
    busy.hello();
    start_data(&mut busy, &[INCOMING_RCPT]);
    busy.send(b"Subject: during shutdown\r\n\r\nfirst half\r\n");

    server.terminate();
    idle.expect(421, "4.3.2");

    busy.send(b"second half\r\n.\r\n");
    busy.expect(250, "2.0.0");
    busy.expect(421, "4.3.2");
    let (code, _log) = server.wait();
    assert_eq!(code, Some(0));
    assert_eq!(standin.bodies().len(), 1);
}

#[test]
fn bad_configuration_names_the_place() {
    let env = TestEnv::new(&Settings::default());
    std::fs::write(&env.config, "[gitlab]\nurl = \"http://x\"\nbogus = 1\n").unwrap();
    let run = run(&mut env.command("serve"), b"");
    assert_eq!(run.code, Some(1));
    assert!(run.err().contains("config.toml:3:1:"), "{}", run.err());
}

#[test]
fn envelope_domain_in_capitals_reaches_its_key() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    let rcpt = format!("incoming+{KEY}@INCOMING.EXAMPLE.COM");
    start_data(&mut c, &[&rcpt]);
    let msg = keyless_message("lmtp-capitals");
    c.send(&stuffed(&msg));
    c.expect(250, "2.0.0");
    c.cmd("QUIT", 221, "2.0.0");

    let bodies = standin.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0].bytes, expected_body(INCOMING_RCPT, &msg));
    assert_eq!(key_in_posted(INCOMING_TEMPLATE, &bodies[0].bytes), KEY);
    assert!(server.wait_log("messages=1", 1), "{}", server.log_text());
    let log = server.log_text();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("to=<{rcpt}>, mailbox=")))
        .unwrap_or_else(|| panic!("no log line for {rcpt}:\n{log}"));
    assert_eq!(logged_key(line), KEY);
}

#[test]
fn rcpt_accepts_exactly_the_key_shapes_gitlabs_handlers_take() {
    let (env, _standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    c.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
    for (rcpt, code, enhanced) in [
        ("incoming+a/b+x+y@incoming.example.com", 550, "5.1.1"),
        (
            "incoming+a/b+tok+unsubscribe@incoming.example.com",
            550,
            "5.1.1",
        ),
        ("incoming+grp/proj+@incoming.example.com", 550, "5.1.1"),
        ("incoming++tok@incoming.example.com", 550, "5.1.1"),
        (
            "contact+grp/proj+tok-issue@incoming.example.com",
            250,
            "2.1.5",
        ),
        ("incoming+grp/proj+tok@incoming.example.com", 250, "2.1.5"),
    ] {
        c.cmd(&format!("RCPT TO:<{rcpt}>"), code, enhanced);
    }
    c.cmd("QUIT", 221, "2.0.0");
}

/// Delivers one message to `rcpt` over LMTP and expects `(code, enhanced)`.
fn deliver_one(env: &TestEnv, rcpt: &str, subject: &str, code: u16, enhanced: &str) {
    let server = Server::start(env);
    let mut c = server.connect();
    c.hello();
    start_data(&mut c, &[rcpt]);
    c.send(&stuffed(&crlf_message(subject)));
    c.expect(code, enhanced);
    c.cmd("QUIT", 221, "2.0.0");
}

/// A stand-in knowing `public` as incoming_email's public key, clock
/// shifted by `offset` s, and a configuration signing incoming_email
/// with `key` (service_desk_email stays HS256).
fn es256_env(key: &std::path::Path, public: &std::path::Path, offset: i64) -> (TestEnv, StandIn) {
    let extra = Extra {
        public_keys: vec![("incoming_email".into(), public.to_path_buf())],
        clock_offset: offset,
    };
    TestEnv::with_standin(StandIn::builder().extra(&extra), |s| {
        s.incoming_extra = signing_key_line(key)
    })
}

#[test]
fn es256_tokens_carry_gitlabs_kid_and_verify_with_the_public_key() {
    let keys = temp_dir();
    let (key, public) = keygen(keys.path(), "incoming_email", "in.pem");
    let (env, standin) = es256_env(&key, &public, 0);
    let server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    start_data(&mut c, &[INCOMING_RCPT, SERVICE_DESK_RCPT]);
    c.send(&stuffed(&crlf_message("lmtp-es256")));
    c.expect(250, "2.0.0");
    c.expect(250, "2.0.0");

    let requests = standin.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    // The stand-in computed the kid from the public key by itself; a
    // token verifies only when the kid names that key.
    assert!(requests.iter().all(|r| r.jwt_ok), "{requests:?}");
    assert_eq!(requests[0].alg.as_deref(), Some("ES256"));
    assert_eq!(requests[0].kid.as_ref().map(String::len), Some(64));
    // HS256 never carries a kid (GitLab would route it to ES256).
    assert_eq!(requests[1].alg.as_deref(), Some("HS256"));
    assert_eq!(requests[1].kid, None);
    let log = server.log_text();
    assert!(!log.contains("PRIVATE KEY"), "{log}");
}

#[test]
fn a_token_from_another_key_is_refused_and_deferred_4_7_0() {
    let keys = temp_dir();
    let (_, known) = keygen(keys.path(), "incoming_email", "known.pem");
    let (other, _) = keygen(keys.path(), "incoming_email", "other.pem");
    let (env, standin) = es256_env(&other, &known, 0);
    deliver_one(&env, INCOMING_RCPT, "lmtp-other-key", 451, "4.7.0");
    let requests = standin.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].status.as_str(), requests[0].jwt_ok),
        ("401", false)
    );
}

#[test]
fn gitlab_clocks_two_minutes_off_either_way_still_accept_our_tokens() {
    let keys = temp_dir();
    let (key, public) = keygen(keys.path(), "incoming_email", "in.pem");
    // Both token kinds, GitLab's clock 120 s behind and 120 s ahead.
    for offset in [-120, 120] {
        let (env, standin) = es256_env(&key, &public, offset);
        deliver_one(&env, INCOMING_RCPT, "skew-es256", 250, "2.0.0");
        deliver_one(&env, SERVICE_DESK_RCPT, "skew-hs256", 250, "2.0.0");
        assert!(
            standin.requests().iter().all(|r| r.jwt_ok),
            "offset {offset}"
        );
    }
    // The shifted clock really bites: 200 s either way is past the margin.
    for offset in [-200, 200] {
        let (env, standin) = es256_env(&key, &public, offset);
        deliver_one(&env, SERVICE_DESK_RCPT, "skew-too-far", 451, "4.7.0");
        assert_eq!(standin.requests()[0].status, "401", "offset {offset}");
    }
}
