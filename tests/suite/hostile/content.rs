//! Hostile message content over LMTP: NUL, bare CR and LF, invalid UTF-8,
//! end-of-data smuggling, empty and header-less messages, and a 30 MB
//! message against a 25 MB limit.

use crate::common::*;

/// Sends `message` by DATA to [`INCOMING_RCPT`] on `c` (LHLO done) and
/// checks the one reply.
fn send_by_data(c: &mut Client, message: &[u8]) {
    c.cmd("MAIL FROM:<>", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
    c.cmd("DATA", 354, "");
    c.send(&stuffed(message));
    c.expect(250, "2.0.0");
}

/// Sends `message` as one `BDAT n LAST` chunk.
fn send_by_bdat(c: &mut Client, message: &[u8]) {
    c.cmd("MAIL FROM:<>", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
    let mut bytes = format!("BDAT {} LAST\r\n", message.len()).into_bytes();
    bytes.extend_from_slice(message);
    c.send(&bytes);
    c.expect(250, "2.0.0");
}

#[test]
fn odd_bytes_reach_gitlab_byte_for_byte() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let mut server = Server::start(&env);
    let messages: Vec<Vec<u8>> = vec![
        // NUL in a header and in the body.
        b"Subject: nul\0here\r\nX-Nul: \0\r\n\r\nbody \0 with NUL\r\n\0\r\n".to_vec(),
        // Bare LF and bare CR line endings, and a dot after each.
        b"Subject: bare\r\nX-A: lf\nX-B: cr\r\r\nbody\nline\rline\n.\n.\r..\r\n".to_vec(),
        // Invalid UTF-8 in headers (Latin-1, a lone continuation byte,
        // an overlong form, a truncated sequence) and in the body.
        b"Subject: caf\xe9 \x80 \xc0\xaf \xe2\x82\r\nFrom: \xff\xfe <a@example.org>\r\n\
          Message-ID: <\xf0\x28\x8c\x28@example.org>\r\n\r\n\xff body\r\n"
            .to_vec(),
        // A dot line that stuffing must carry through.
        b"Subject: dots\r\n\r\n.\r\n..\r\n.x\r\n".to_vec(),
    ];
    let mut c = server.connect();
    c.hello();
    for m in &messages {
        send_by_data(&mut c, m);
        send_by_bdat(&mut c, m);
    }
    c.cmd("QUIT", 221, "2.0.0");
    let bodies = standin.bodies();
    assert_eq!(bodies.len(), messages.len() * 2);
    for (i, m) in messages.iter().enumerate() {
        for body in &bodies[i * 2..i * 2 + 2] {
            assert!(
                body.bytes == expected_body(INCOMING_RCPT, m),
                "message {i}: GitLab got {:?}",
                String::from_utf8_lossy(&body.bytes)
            );
        }
    }
    assert!(standin.requests().iter().all(|r| r.jwt_ok));
    server.assert_alive();
}

#[test]
fn only_crlf_dot_crlf_ends_data() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let mut server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    // SMTP smuggling: a dot between other line endings followed by a
    // second transaction. None of them may end the message.
    let fakes: [&[u8]; 9] = [
        b"\n.\n",
        b"\r\n.\r\r\n",
        b"\r\n.\r\r\r\n",
        b"\n.\r\n",
        b"\r\n.\n",
        b"\r.\r",
        b"\r.\r\n",
        b"\r\n.\r",
        b"\n.\r",
    ];
    for fake in fakes {
        c.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
        c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
        c.cmd("DATA", 354, "");
        let mut data = b"Subject: smuggle\r\n\r\nhello".to_vec();
        data.extend_from_slice(fake);
        data.extend_from_slice(
            format!(
                "MAIL FROM:<mallory@example.org>\r\nRCPT TO:<{SERVICE_DESK_RCPT}>\r\n\
                 DATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n"
            )
            .as_bytes(),
        );
        // The smuggled `.CRLF` above is the real end of this message.
        c.send(&data);
        c.expect(250, "2.0.0");
        // In step: the next reply is NOOP's, not one for a smuggled command.
        c.cmd("NOOP", 250, "2.0.0");
    }
    let bodies = standin.bodies();
    assert_eq!(bodies.len(), fakes.len(), "one message per DATA");
    for body in &bodies {
        assert_eq!(body.mailbox, "incoming_email");
        let text = String::from_utf8_lossy(&body.bytes);
        assert!(text.contains("mallory@example.org"), "{text}");
        assert!(text.contains("Subject: smuggled"), "{text}");
    }
    server.assert_alive();
}

#[test]
fn empty_message_and_message_without_headers() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let mut server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    let messages: [&[u8]; 4] = [
        b"",
        b"\r\n",
        b"no header here, just text\r\nand more text\r\n",
        b"\r\nbody after an empty header block\r\n",
    ];
    for m in messages {
        send_by_data(&mut c, m);
    }
    // BDAT 0 LAST: empty by chunking.
    c.cmd("MAIL FROM:<>", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
    c.cmd("BDAT 0 LAST", 250, "2.0.0");
    let bodies = standin.bodies();
    assert_eq!(bodies.len(), messages.len() + 1);
    for (body, m) in bodies.iter().zip(messages.iter().chain([&&b""[..]])) {
        assert_eq!(body.bytes, expected_body(INCOMING_RCPT, m));
    }
    server.assert_alive();
}

/// 30 MB of CRLF lines.
fn thirty_megabytes() -> Vec<u8> {
    let line = [b"x".repeat(78), b"\r\n".to_vec()].concat();
    let mut m = b"Subject: thirty megabytes\r\n\r\n".to_vec();
    while m.len() < 30 * 1024 * 1024 {
        m.extend_from_slice(&line);
    }
    m
}

#[test]
fn thirty_megabytes_against_a_25_megabyte_limit() {
    let (env, standin) =
        TestEnv::with_standin(StandIn::builder(), |s| s.max_message_size = 26_214_400);
    let mut server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    // Announced: refused at MAIL.
    c.cmd("MAIL FROM:<> SIZE=31457280", 552, "5.3.4");

    // Not announced, by DATA: read to the final dot, then one 552 per
    // recipient.
    let big = thirty_megabytes();
    c.cmd("MAIL FROM:<>", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
    c.cmd(&format!("RCPT TO:<{SERVICE_DESK_RCPT}>"), 250, "2.1.5");
    c.cmd("DATA", 354, "");
    let writer = c.send_in_background(stuffed(&big));
    c.expect(552, "5.3.4");
    c.expect(552, "5.3.4");
    writer.join().unwrap().expect("the whole message was read");
    c.cmd("NOOP", 250, "2.0.0");

    // By BDAT: the chunk is swallowed, then one 552 per recipient.
    c.cmd("MAIL FROM:<>", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
    c.cmd(&format!("RCPT TO:<{SERVICE_DESK_RCPT}>"), 250, "2.1.5");
    let mut chunk = format!("BDAT {} LAST\r\n", big.len()).into_bytes();
    chunk.extend_from_slice(&big);
    drop(big);
    let writer = c.send_in_background(chunk);
    c.expect(552, "5.3.4");
    c.expect(552, "5.3.4");
    writer.join().unwrap().expect("the whole chunk was read");
    c.cmd("NOOP", 250, "2.0.0");

    assert!(standin.requests().is_empty(), "{:?}", standin.requests());
    server.assert_alive();
    // The limit is 25 MB: the server may hold one message of that size,
    // never the 30 MB.
    server.assert_peak_memory_below(100);
    normal_delivery(&server, "after-30mb");
    assert_eq!(standin.bodies().len(), 1);
}

#[test]
fn no_smuggling_inside_an_oversize_message_either() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |s| s.max_message_size = 2000);
    let mut server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    for fake in [&b"\r\n.\r\r\n"[..], b"\n.\n", b"\r.\r\n", b"\r\n.\n"] {
        c.cmd("MAIL FROM:<>", 250, "2.1.0");
        c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
        c.cmd("DATA", 354, "");
        let mut data = b"Subject: big\r\n\r\n".to_vec();
        data.extend(b"0123456789012345678901234567890123456789\r\n".repeat(200));
        data.extend_from_slice(b"end");
        data.extend_from_slice(fake);
        data.extend_from_slice(
            format!(
                "MAIL FROM:<mallory@example.org>\r\nRCPT TO:<{INCOMING_RCPT}>\r\n\
                 DATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n"
            )
            .as_bytes(),
        );
        c.send(&data);
        c.expect(552, "5.3.4");
        c.cmd("NOOP", 250, "2.0.0");
    }
    assert!(standin.requests().is_empty(), "{:?}", standin.requests());
    server.assert_alive();
}
