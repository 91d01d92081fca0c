//! Malformed command lines: far too long, NUL bytes, bare LF and bare CR,
//! 8-bit and UTF-8 addresses, hostile keys, garbage after QUIT.

use crate::common::*;

/// Asserts GitLab got exactly one body: `message`, delivered to `rcpt`.
fn assert_only_body(standin: &StandIn, rcpt: &str, message: &[u8]) {
    let bodies = standin.bodies();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0].bytes, expected_body(rcpt, message));
}

#[test]
fn a_one_megabyte_line_gets_one_500_and_the_session_stays_in_step() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let mut server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    // 1 MiB without a line ending, then the ending, then a normal command.
    let mut line = vec![b'A'; 1024 * 1024];
    line.extend_from_slice(b"\r\nNOOP\r\n");
    let writer = c.send_in_background(line);
    c.expect(500, "5.5.2");
    c.expect(250, "2.0.0");
    writer.join().unwrap().expect("the whole line was read");

    // The same inside a transaction: the long RCPT is refused, the
    // transaction goes on.
    c.cmd("MAIL FROM:<>", 250, "2.1.0");
    let mut rcpt = b"RCPT TO:<incoming+".to_vec();
    rcpt.extend(vec![b'a'; 1024 * 1024]);
    rcpt.extend_from_slice(b"@incoming.example.com>\r\n");
    let writer = c.send_in_background(rcpt);
    c.expect(500, "5.5.2");
    writer.join().unwrap().expect("the whole line was read");
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
    c.cmd("DATA", 354, "");
    let msg = crlf_message("after-long-line");
    c.send(&stuffed(&msg));
    c.expect(250, "2.0.0");

    assert_only_body(&standin, INCOMING_RCPT, &msg);
    server.assert_alive();
    server.assert_peak_memory_below(100);
    normal_delivery(&server, "long-line-next");
    assert_eq!(standin.bodies().len(), 2);
}

#[test]
fn nul_bytes_in_commands_are_refused() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let mut server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    for line in [
        &b"NOOP\0\r\n"[..],
        b"\0\r\n",
        b"\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\n",
        b"MAIL FROM:<alice\0@example.org>\r\n",
    ] {
        c.send(line);
        c.expect(500, "5.5.2");
    }
    // The refused MAIL opened no transaction.
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 503, "5.5.1");
    c.cmd("MAIL FROM:<>", 250, "2.1.0");
    c.send(b"RCPT TO:<incoming+59d8df8370b7e95c5a49fbf86aeb2c93\0@incoming.example.com>\r\n");
    c.expect(500, "5.5.2");
    c.send(b"RCPT TO:<\0incoming+59d8df8370b7e95c5a49fbf86aeb2c93@incoming.example.com>\r\n");
    c.expect(500, "5.5.2");
    c.cmd("DATA", 503, "5.5.1");
    c.cmd("NOOP", 250, "2.0.0");
    assert!(standin.requests().is_empty());
    server.assert_alive();
    normal_delivery(&server, "after-nul");
    assert_eq!(standin.bodies().len(), 1);
}

#[test]
fn bare_lf_ends_a_command_line() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let server = Server::start(&env);
    let mut c = server.connect();
    c.expect(220, "");
    c.send(b"LHLO client.example\n");
    c.expect(250, "");
    c.send(b"MAIL FROM:<alice@example.org>\n");
    c.expect(250, "2.1.0");
    c.send(format!("RCPT TO:<{INCOMING_RCPT}>\n").as_bytes());
    c.expect(250, "2.1.5");
    c.send(b"DATA\n");
    c.expect(354, "");
    let msg = crlf_message("bare-lf-commands");
    c.send(&stuffed(&msg));
    c.expect(250, "2.0.0");
    c.send(b"QUIT\n");
    c.expect(221, "2.0.0");
    c.expect_closed();
    assert_only_body(&standin, INCOMING_RCPT, &msg);
}

#[test]
fn bare_cr_is_no_line_ending_and_never_vanishes_from_a_command() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let mut server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    // Two commands joined by a bare CR are one bad line: one reply.
    c.send(b"NOOP\rNOOP\r\n");
    c.expect(500, "5.5.2");
    c.cmd("NOOP", 250, "2.0.0");
    c.cmd("MAIL FROM:<>", 250, "2.1.0");
    // A CR inside an address must not be dropped silently: the key
    // `grp/projX` would be valid, `grp/proj\rX` is not what was sent.
    c.send(b"RCPT TO:<incoming+grp/proj\rX@incoming.example.com>\r\n");
    c.expect(500, "5.5.2");
    c.send(format!("RCPT TO:<{INCOMING_RCPT}>\rRCPT TO:<{UNKNOWN_RCPT}>\r\n").as_bytes());
    c.expect(500, "5.5.2");
    c.cmd("DATA", 503, "5.5.1");
    c.cmd("NOOP", 250, "2.0.0");
    assert!(standin.requests().is_empty());
    server.assert_alive();
    normal_delivery(&server, "after-bare-cr");
    assert_eq!(standin.bodies().len(), 1);
}

#[test]
fn utf8_and_8bit_addresses_and_headers() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let mut server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    c.cmd("MAIL FROM:<jürgen@exämple.org> SMTPUTF8", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
    // UTF-8 in the key, and in the domain: no GitLab address.
    c.cmd(
        "RCPT TO:<incoming+schlüssel@incoming.example.com>",
        550,
        "5.1.1",
    );
    c.cmd(
        "RCPT TO:<incoming+59d8df8370b7e95c5a49fbf86aeb2c93@incoming.exämple.com>",
        550,
        "5.1.1",
    );
    c.cmd("RCPT TO:<контакт@incoming.example.com>", 550, "5.1.1");
    // 8-bit bytes that are not UTF-8.
    c.send(b"RCPT TO:<incoming+\xe9\xff\xfe@incoming.example.com>\r\n");
    c.expect(550, "5.1.1");
    c.send(b"RCPT TO:<incoming+59d8df8370b7e95c5a49fbf86aeb2c93\x80@incoming.example.com>\r\n");
    c.expect(550, "5.1.1");
    c.cmd("DATA", 354, "");
    let msg = format!(
        "From: Jürgen <jürgen@exämple.org>\r\n\
         To: {INCOMING_RCPT}\r\n\
         Subject: Grüße, 日本語, emoji 📬\r\n\
         \r\n\
         Ünïcödé body.\r\n"
    )
    .into_bytes();
    c.send(&stuffed(&msg));
    c.expect(250, "2.0.0");
    assert_only_body(&standin, INCOMING_RCPT, &msg);
    server.assert_alive();
}

#[test]
fn hostile_keys_are_refused_at_rcpt_and_never_reach_gitlab() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let mut server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    c.cmd("MAIL FROM:<>", 250, "2.1.0");
    let unknown = [
        r#""incoming+group/../project+token"@incoming.example.com"#,
        r#""contact+group/../project"@incoming.example.com"#,
        "incoming+/etc/passwd@incoming.example.com",
        "incoming+gitlab%2forg+token@incoming.example.com",
        "incoming+%2e%2e%2fadmin+token@incoming.example.com",
        "contact+grp-proj%0a-20-issue-@incoming.example.com",
        r#""incoming+grp/\"proj\""@incoming.example.com"#,
        r#""incoming+grp/proj\"+token"@incoming.example.com"#,
        r#""incoming+grp/pro j"@incoming.example.com"#,
        "incoming+grp/proj'+token@incoming.example.com",
    ];
    for rcpt in unknown {
        c.cmd(&format!("RCPT TO:<{rcpt}>"), 550, "5.1.1");
    }
    // Unquoted `..` is no valid local part at all (RFC 5321 dot-string).
    for rcpt in [
        "incoming+group/../project+token@incoming.example.com",
        "incoming+../../etc/passwd+token@incoming.example.com",
    ] {
        c.cmd(&format!("RCPT TO:<{rcpt}>"), 501, "5.1.3");
    }
    // A newline ends the line: the address is cut short (bad syntax) and
    // the rest is a line of its own (no command).
    c.send(b"RCPT TO:<incoming+grp/proj\nX-Evil: 1@incoming.example.com>\r\n");
    c.expect(501, "5.1.3");
    c.expect(500, "5.5.2");
    c.send(b"RCPT TO:<\"incoming+grp/proj\r\nX\"@incoming.example.com>\r\n");
    c.expect(501, "5.1.3");
    c.expect(500, "5.5.2");
    c.cmd("DATA", 503, "5.5.1");
    c.cmd("RSET", 250, "2.0.0");
    assert!(standin.requests().is_empty(), "{:?}", standin.requests());

    // A legacy key with `/` is a GitLab key (new issue by e-mail).
    let legacy = "incoming+group/project+token@incoming.example.com";
    c.cmd("MAIL FROM:<>", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{legacy}>"), 250, "2.1.5");
    c.cmd("DATA", 354, "");
    let msg = crlf_message("legacy-key");
    c.send(&stuffed(&msg));
    c.expect(250, "2.0.0");
    assert_only_body(&standin, legacy, &msg);
    server.assert_alive();
}

#[test]
fn garbage_pipelined_after_quit_is_not_answered() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let mut server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    let mut garbage = format!(
        "QUIT\r\nNOOP\r\nMAIL FROM:<>\r\nRCPT TO:<{INCOMING_RCPT}>\r\nDATA\r\n\
         Subject: after quit\r\n\r\n.\r\n"
    )
    .into_bytes();
    garbage.extend_from_slice(b"\0\xff garbage\r\n");
    // One write, so the server reads it all before closing (unread input
    // would turn its close into a reset).
    c.send(&garbage);
    c.expect(221, "2.0.0");
    c.expect_closed();
    assert!(standin.requests().is_empty());
    server.assert_alive();
    normal_delivery(&server, "after-quit-garbage");
    assert_eq!(standin.bodies().len(), 1);
}
