//! One message, one post per GitLab key (issue 20): GitLab reads the key
//! from `To` and `References` before our `Delivered-To:`, so copies of a
//! message for several recipients would all act on the `To` key. Through
//! `serve` (LMTP) and `deliver` (pipe): a shared key is posted once and
//! every recipient answered from that post; different keys are posted
//! apart; a sender fanning out cannot pass the loop breaker.

use crate::common::*;

/// The second recipient of [`message`]'s `To:` key: another reply key.
fn other_rcpt() -> String {
    format!("incoming+{OTHER_KEY}@incoming.example.com")
}

/// A message whose `To` and `References` hold no GitLab key.
fn keyless(subject: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\nTo: team@example.org\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@example.org>\r\n\r\nHello.\r\n"
    )
    .into_bytes()
}

/// Sends `msg` to `rcpts` in one LMTP transaction; expects `code` and
/// `enhanced` for every recipient.
fn transaction(c: &mut Client, from: &str, rcpts: &[String], msg: &[u8], reply: (u16, &str)) {
    c.cmd(&format!("MAIL FROM:<{from}>"), 250, "2.1.0");
    for r in rcpts {
        c.cmd(&format!("RCPT TO:<{r}>"), 250, "2.1.5");
    }
    c.cmd("DATA", 354, "");
    c.send(&stuffed(msg));
    for _ in rcpts {
        c.expect(reply.0, reply.1);
    }
}

#[test]
fn lmtp_a_shared_key_is_posted_once_and_both_recipients_get_250() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    let rcpts = [INCOMING_RCPT.to_string(), other_rcpt()];
    let msg = crlf_message("reply-all");
    transaction(&mut c, "alice@example.org", &rcpts, &msg, (250, "2.0.0"));
    c.cmd("QUIT", 221, "2.0.0");
    let bodies = standin.bodies();
    assert_eq!(bodies.len(), 1, "one post for the one key in To:");
    assert_eq!(bodies[0].bytes, expected_body(INCOMING_RCPT, &msg));
    assert!(server.wait_log("posted once for this key, with to=<", 1));
    let log = server.log_text();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("to=<{}>", rcpts[1])))
        .unwrap_or_else(|| panic!("no line for the second recipient:\n{log}"));
    assert!(
        line.contains(&format!("key={KEY}, status=sent (250 2.0.0"))
            && line.ends_with(&format!(
                "posted once for this key, with to=<{INCOMING_RCPT}>"
            )),
        "{line}"
    );
}

#[test]
fn lmtp_without_a_key_in_to_each_recipient_is_posted() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    let rcpts = [INCOMING_RCPT.to_string(), other_rcpt()];
    transaction(
        &mut c,
        "alice@example.org",
        &rcpts,
        &keyless("no-key"),
        (250, "2.0.0"),
    );
    c.cmd("QUIT", 221, "2.0.0");
    let bodies = standin.bodies();
    assert_eq!(bodies.len(), 2);
    for (body, rcpt) in bodies.iter().zip(&rcpts) {
        assert_eq!(body.bytes, expected_body(rcpt, &keyless("no-key")));
    }
}

#[test]
fn lmtp_a_failed_shared_post_defers_every_recipient_it_stands_for() {
    let (env, mut standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    standin.set_mode("500");
    let server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    let rcpts = [INCOMING_RCPT.to_string(), other_rcpt()];
    let msg = crlf_message("fails");
    transaction(&mut c, "alice@example.org", &rcpts, &msg, (451, "4.3.0"));
    c.cmd("QUIT", 221, "2.0.0");
    assert_eq!(
        standin.requests().len(),
        1,
        "one post, not one per recipient"
    );
    assert!(standin.bodies().is_empty());
}

#[test]
fn lmtp_fanning_out_does_not_pass_the_loop_breaker() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |s| {
        s.guard = "null_sender = \"accept\"\nloop_limit = 3\n".into();
    });
    let server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    for m in 0..5 {
        // 20 distinct recipients, each with a key of its own; To: holds KEY.
        let rcpts: Vec<String> = (0..20)
            .map(|i| format!("incoming+{:032x}@incoming.example.com", m * 100 + i + 1))
            .collect();
        let reply = if m < 3 {
            (250, "2.0.0")
        } else {
            (451, "4.7.1")
        };
        let msg = crlf_message(&format!("loop-{m}"));
        transaction(&mut c, "bot@example.org", &rcpts, &msg, reply);
    }
    c.cmd("QUIT", 221, "2.0.0");
    assert_eq!(
        standin.bodies().len(),
        3,
        "loop_limit posts, not one per recipient"
    );
}

#[test]
fn pipe_a_shared_key_is_posted_once() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let other = other_rcpt();
    let msg = message("pipe-reply-all");
    let run = env.deliver_merged(
        &["--sender", "alice@example.org", INCOMING_RCPT, &other],
        &msg,
    );
    assert_eq!(run.code, Some(0), "{}", run.out());
    let bodies = standin.bodies();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0].bytes, expected_body(INCOMING_RCPT, &msg));
    assert!(
        run.out().contains(&format!(
            "posted once for this key, with to=<{INCOMING_RCPT}>"
        )),
        "{}",
        run.out()
    );
}

#[test]
fn pipe_without_a_key_in_to_each_recipient_is_posted() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let other = other_rcpt();
    let msg = keyless("pipe-no-key");
    let run = env.deliver_merged(
        &["--sender", "alice@example.org", INCOMING_RCPT, &other],
        &msg,
    );
    assert_eq!(run.code, Some(0), "{}", run.out());
    assert_eq!(standin.bodies().len(), 2);
}
