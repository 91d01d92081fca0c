//! Transactions that go wrong: a thousand recipients, a message cut off
//! before its final dot, BDAT chunks shorter or longer than announced.

use crate::common::*;

#[test]
fn a_thousand_recipients_get_max_recipients_accepted_then_452() {
    const MAX: usize = 25;
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |s| {
        s.extra = format!("max_recipients = {MAX}\n")
    });
    let mut server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    c.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
    let rcpts: Vec<&str> = (0..1000)
        .map(|i| match i % 2 {
            0 => INCOMING_RCPT,
            _ => SERVICE_DESK_RCPT,
        })
        .collect();
    // All at once, as PIPELINING allows.
    let lines: String = rcpts.iter().map(|r| format!("RCPT TO:<{r}>\r\n")).collect();
    let writer = c.send_in_background(lines.into_bytes());
    for i in 0..rcpts.len() {
        match i < MAX {
            true => c.expect(250, "2.1.5"),
            false => c.expect(452, "4.5.3"),
        }
    }
    writer.join().unwrap().expect("all RCPTs written");
    c.cmd("DATA", 354, "");
    let msg = crlf_message("thousand");
    c.send(&stuffed(&msg));
    for _ in 0..MAX {
        c.expect(250, "2.0.0");
    }
    // Exactly MAX replies: the next one is NOOP's.
    c.cmd("NOOP", 250, "2.0.0");

    // One post per distinct recipient (issue 18 item 8): the two addresses
    // given again and again were each posted once, and every RCPT got its
    // own 250.
    let bodies = standin.bodies();
    assert_eq!(bodies.len(), 2);
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(body.bytes, expected_body(rcpts[i], &msg));
    }
    server.assert_alive();
}

#[test]
fn a_message_cut_off_before_its_final_dot_posts_nothing() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let mut server = Server::start(&env);
    let mut body = b"Subject: cut off\r\n\r\n".to_vec();
    body.extend(b"0123456789012345678901234567890123456789\r\n".repeat(5000));
    // Endings that look almost like the end of the data.
    let endings: [&[u8]; 5] = [b"", b"\r\n.", b"\r\n.\r", b"\n.\n", b"\r\n.\n"];
    for ending in endings {
        let mut c = server.connect();
        c.hello();
        c.cmd("MAIL FROM:<>", 250, "2.1.0");
        c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
        c.cmd("DATA", 354, "");
        c.send(&body);
        c.send(ending);
        c.hang_up();
    }
    let gone = server.wait_log("messages=0", endings.len());
    assert!(gone, "{}", server.log_text());
    assert!(standin.requests().is_empty(), "{:?}", standin.requests());
    server.assert_alive();
    normal_delivery(&server, "after-cut-off");
    assert_eq!(standin.bodies().len(), 1);
}

#[test]
fn bdat_with_fewer_bytes_than_announced_then_disconnect_posts_nothing() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let mut server = Server::start(&env);
    for (command, sent) in [
        ("BDAT 1000 LAST", 10),
        ("BDAT 1000", 999),
        ("BDAT 100000 LAST", 0),
    ] {
        let mut c = server.connect();
        c.hello();
        c.cmd("MAIL FROM:<>", 250, "2.1.0");
        c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
        let mut bytes = format!("{command}\r\n").into_bytes();
        bytes.extend(vec![b'x'; sent]);
        c.send(&bytes);
        c.hang_up();
    }
    let gone = server.wait_log("messages=0", 3);
    assert!(gone, "{}", server.log_text());
    assert!(standin.requests().is_empty(), "{:?}", standin.requests());
    server.assert_alive();
    normal_delivery(&server, "after-short-bdat");
    assert_eq!(standin.bodies().len(), 1);
}

#[test]
fn bytes_beyond_a_bdat_chunk_are_the_next_command() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let mut server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    c.cmd("MAIL FROM:<>", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
    // 12 bytes announced, 12 + "GARBAGE\r\n" sent: the message is the 12,
    // the rest is an (unknown) command.
    c.send(b"BDAT 12 LAST\r\nSubject: x\r\nGARBAGE\r\n");
    c.expect(250, "2.0.0");
    c.expect(500, "5.5.2");
    c.cmd("NOOP", 250, "2.0.0");

    // A middle chunk followed by a real command: NOOP is answered
    // between the chunks, and the message is both chunks.
    c.cmd("MAIL FROM:<>", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
    c.send(b"BDAT 12\r\nSubject: y\r\nNOOP\r\n");
    c.expect(250, "2.0.0");
    c.expect(250, "2.0.0");
    c.send(b"BDAT 8 LAST\r\n\r\nbody\r\n");
    c.expect(250, "2.0.0");
    c.cmd("NOOP", 250, "2.0.0");

    let bodies = standin.bodies();
    assert_eq!(bodies.len(), 2);
    assert_eq!(
        bodies[0].bytes,
        expected_body(INCOMING_RCPT, b"Subject: x\r\n")
    );
    assert_eq!(
        bodies[1].bytes,
        expected_body(INCOMING_RCPT, b"Subject: y\r\n\r\nbody\r\n")
    );
    server.assert_alive();
}
