//! Session tests: every command in and out of sequence, bodies, limits,
//! and the same input fed whole, byte by byte and in random pieces.
//! Replies are compared as `code enhanced` (text is free to change).

use super::*;

const KEY_RCPT: &str = "incoming+59d8df8370b7e95c5a49fbf86aeb2c93@in.example";
const LIMITS: Limits = Limits {
    max_message_size: 1000,
    max_recipients: 3,
};

type Router = fn(&str, &str, Option<&str>) -> Result<Route, Outcome>;

/// Accepts every address in `in.example` but `unknown@in.example`, from
/// any sender.
fn router(_sender: &str, rcpt: &str, _queue_id: Option<&str>) -> Result<Route, Outcome> {
    if rcpt.ends_with("@in.example") && !rcpt.starts_with("unknown@") {
        Ok(Route::sample(rcpt))
    } else {
        Err(Outcome::UnknownRecipient)
    }
}

fn session() -> Session<Router> {
    Session::new("mx.test", LIMITS, router)
}

/// What came out: `"250 2.1.5"` per reply line (`"250"` without an
/// enhanced code; continuation lines left out), `"deliver"`, `"log"`,
/// `"too-large"` (a recipient refused as too large),
/// `"close"`; and the transactions. Each delivery is answered with the
/// next outcomes of `script` (one per route), or all `Delivered`. The
/// message bytes are kept in a `Vec`, as any driver's sink would.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    events: Vec<String>,
    delivered: Vec<Delivered>,
    pending: Vec<u8>,
    script: Vec<Vec<Outcome>>,
    decided: Vec<Decision>,
    /// The bytes appended since the last delivery or abandon (how much of
    /// an oversize body is appended before it is dropped depends on how
    /// the input was split: compare after the message ended).
    message: Vec<u8>,
}

/// A transaction and the bytes appended for it.
#[derive(Debug, PartialEq)]
struct Delivered {
    sender: String,
    queue_id: Option<String>,
    routes: Vec<Route>,
    message: Vec<u8>,
}

impl Seen {
    fn take(&mut self, s: &mut Session<Router>, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send(bytes) => self.pending.extend(bytes),
                Action::Append(bytes) => {
                    assert!(!bytes.is_empty());
                    self.message.extend(bytes);
                    assert!(self.message.len() <= LIMITS.max_message_size);
                }
                Action::Abandon => self.message.clear(),
                Action::Deliver(t) => {
                    self.flush();
                    self.events.push("deliver".into());
                    let outcomes = match self.script.is_empty() {
                        true => vec![Outcome::Delivered; t.routes.len()],
                        false => self.script.remove(0),
                    };
                    let message = std::mem::take(&mut self.message);
                    assert_eq!(t.size, message.len());
                    self.delivered.push(Delivered {
                        sender: t.sender,
                        queue_id: t.queue_id,
                        routes: t.routes,
                        message,
                    });
                    let more = s.delivered(&outcomes);
                    self.take(s, more);
                }
                Action::Log(_) => {
                    self.flush();
                    self.events.push("log".into());
                }
                Action::Decided(d) => {
                    if let Decision::TooLarge {
                        recipient: Some(_), ..
                    } = d
                    {
                        self.flush();
                        self.events.push("too-large".into());
                    }
                    self.decided.push(d);
                }
                Action::Close => {
                    self.flush();
                    self.events.push("close".into());
                }
            }
        }
    }

    fn flush(&mut self) {
        let text = String::from_utf8(std::mem::take(&mut self.pending)).unwrap();
        assert!(text.is_empty() || text.ends_with("\r\n"), "{text:?}");
        for line in text.split_terminator("\r\n") {
            if line.as_bytes().get(3) == Some(&b'-') {
                continue;
            }
            let mut words = line.split(' ');
            let code = words.next().unwrap_or_default();
            let enhanced = words.next().filter(|w| {
                w.split('.').count() == 3 && w.split('.').all(|p| p.parse::<u16>().is_ok())
            });
            self.events.push(match enhanced {
                Some(e) => format!("{code} {e}"),
                None => code.to_string(),
            });
        }
    }
}

/// Feeds `input` in pieces of `piece` bytes (0 = all at once).
fn run_split(input: &[u8], piece: usize) -> Seen {
    let mut s = session();
    let mut seen = Seen::default();
    if piece == 0 {
        let actions = s.feed(input);
        seen.take(&mut s, actions);
    } else {
        for chunk in input.chunks(piece) {
            let actions = s.feed(chunk);
            seen.take(&mut s, actions);
        }
    }
    seen.flush();
    seen
}

/// Feeds `input` whole, byte by byte and in 7-byte pieces; all three
/// must agree. Returns what was seen.
fn run(input: &[u8]) -> Seen {
    let whole = run_split(input, 0);
    assert_eq!(whole, run_split(input, 1), "byte by byte differs");
    assert_eq!(whole, run_split(input, 7), "7-byte pieces differ");
    whole
}

fn events(input: &str) -> Vec<String> {
    run(input.as_bytes()).events
}

/// Shorthand: `ev!["250", "250 2.1.0"]`.
macro_rules! ev {
    ($($e:expr),* $(,)?) => { vec![$($e.to_string()),*] };
}

const HELLO: &str = "LHLO client.test\r\n";

fn envelope() -> String {
    format!("{HELLO}MAIL FROM:<a@b.example>\r\nRCPT TO:<{KEY_RCPT}>\r\n")
}

#[test]
fn greeting_has_no_enhanced_code() {
    assert_eq!(
        session().greeting(),
        b"220 mx.test LMTP gitlab-mailgate ready\r\n"
    );
    let s = Session::new("bad\r\nname", LIMITS, router as Router);
    assert_eq!(s.greeting(), b"220 badname LMTP gitlab-mailgate ready\r\n");
}

#[test]
fn lhlo_advertises_the_extensions() {
    let mut s = session();
    let out = s.feed(HELLO.as_bytes());
    let expected = "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n\
                    250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n\
                    250 XFORWARD NAME ADDR PROTO HELO IDENT SOURCE PORT\r\n";
    assert_eq!(out, vec![Action::Send(expected.as_bytes().to_vec())]);
}

#[test]
fn a_whole_transaction() {
    let input = format!(
        "{HELLO}MAIL FROM:<a@b.example> SIZE=20 BODY=8BITMIME\r\nRCPT TO:<{KEY_RCPT}>\r\n\
         RCPT TO:<unknown@in.example>\r\nRCPT TO:<x@in.example>\r\nDATA\r\n\
         Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n"
    );
    let seen = run(input.as_bytes());
    assert_eq!(
        seen.events,
        ev![
            "250",
            "250 2.1.0",
            "250 2.1.5",
            "550 5.1.1",
            "250 2.1.5",
            "354",
            "deliver",
            "250 2.0.0",
            "250 2.0.0",
            "221 2.0.0",
            "close"
        ]
    );
    let t = &seen.delivered[0];
    assert_eq!(t.sender, "a@b.example");
    let rcpts: Vec<_> = t.routes.iter().map(|r| r.recipient.as_str()).collect();
    assert_eq!(rcpts, [KEY_RCPT, "x@in.example"]);
    assert_eq!(t.message, b"Subject: hi\r\n\r\nbody\r\n");
}

#[test]
fn two_transactions_on_one_connection_and_bare_lf_commands() {
    let one = "LHLO c\nMAIL FROM:<>\nRCPT TO:<a@in.example>\nDATA\n1\r\n.\r\n";
    let two = "MAIL FROM:<>\r\nRCPT TO:<b@in.example>\r\nDATA\r\n2\r\n.\r\nQUIT\r\n";
    let seen = run(format!("{one}{two}").as_bytes());
    let tx = ["250 2.1.0", "250 2.1.5", "354", "deliver", "250 2.0.0"];
    let mut expected = ev!["250"];
    expected.extend(ev![
        tx[0],
        tx[1],
        tx[2],
        tx[3],
        tx[4],
        tx[0],
        tx[1],
        tx[2],
        tx[3],
        tx[4],
        "221 2.0.0",
        "close"
    ]);
    assert_eq!(seen.events, expected);
    assert_eq!(seen.delivered[0].sender, "");
    assert_eq!(seen.delivered[1].message, b"2\r\n");
}

#[test]
fn commands_out_of_sequence() {
    let cases: &[(&str, &[&str])] = &[
        ("MAIL FROM:<>\r\n", &["503 5.5.1"]),
        ("RCPT TO:<a@in.example>\r\n", &["503 5.5.1"]),
        ("DATA\r\n", &["503 5.5.1"]),
        (
            "LHLO c\r\nRCPT TO:<a@in.example>\r\n",
            &["250", "503 5.5.1"],
        ),
        ("LHLO c\r\nDATA\r\n", &["250", "503 5.5.1"]),
        (
            "LHLO c\r\nMAIL FROM:<>\r\nMAIL FROM:<>\r\n",
            &["250", "250 2.1.0", "503 5.5.1"],
        ),
        // RFC 2033 §4.2: DATA with no accepted recipient fails with 503.
        (
            "LHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<unknown@in.example>\r\nDATA\r\n",
            &["250", "250 2.1.0", "550 5.1.1", "503 5.5.1"],
        ),
        (
            "LHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@in.example>\r\nRSET\r\nDATA\r\n",
            &["250", "250 2.1.0", "250 2.1.5", "250 2.0.0", "503 5.5.1"],
        ),
        ("RSET\r\nMAIL FROM:<>\r\n", &["250 2.0.0", "503 5.5.1"]),
        // LHLO again resets the transaction.
        (
            "LHLO c\r\nMAIL FROM:<>\r\nLHLO c\r\nRCPT TO:<a@in.example>\r\n",
            &["250", "250 2.1.0", "250", "503 5.5.1"],
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(events(input), *expected, "{input:?}");
    }
}

#[test]
fn other_commands() {
    let cases: &[(&str, &[&str])] = &[
        ("EHLO c\r\n", &["500 5.5.1"]),
        ("HELO c\r\n", &["500 5.5.1"]),
        ("EHLO\r\n", &["500 5.5.1"]),
        ("XYZZY\r\n", &["500 5.5.2"]),
        ("\r\n", &["500 5.5.2"]),
        ("AUTH PLAIN AGZvbwBiYXI=\r\n", &["502 5.5.1"]),
        ("AUTH NONSENSE\r\n", &["502 5.5.1"]),
        ("STARTTLS\r\n", &["502 5.5.1"]),
        ("ETRN example.com\r\n", &["502 5.5.1"]),
        ("EXPN list\r\n", &["502 5.5.1"]),
        ("HELP\r\n", &["502 5.5.1"]),
        ("NOOP\r\n", &["250 2.0.0"]),
        ("noop hello\r\n", &["250 2.0.0"]),
        ("VRFY someone\r\n", &["252 2.0.0"]),
        ("LHLO\r\n", &["501 5.5.4"]),
        ("QUIT\r\n", &["221 2.0.0", "close"]),
    ];
    for (input, expected) in cases {
        assert_eq!(events(input), *expected, "{input:?}");
    }
}

#[test]
fn syntax_errors_in_mail_and_rcpt() {
    let cases: &[(&str, &str)] = &[
        ("MAIL FROM:a@b.example\r\n", "501 5.5.4"),
        ("MAIL TO:<a@b.example>\r\n", "501 5.5.4"),
        ("MAIL FROM:<a@b.example> SIZE=x\r\n", "501 5.5.4"),
        ("MAIL FROM:<a@b.example> FOO=bar\r\n", "555 5.5.4"),
        ("MAIL FROM:<a@b.example> BODY=BINARYMIME\r\n", "555 5.5.4"),
        ("MAIL FROM:<a b@c>\r\n", "501 5.1.7"),
    ];
    for (line, expected) in cases {
        let input = format!("{HELLO}{line}NOOP\r\n");
        assert_eq!(events(&input), ["250", expected, "250 2.0.0"], "{line:?}");
    }
    let long = format!(
        "{HELLO}MAIL FROM:<>\r\nRCPT TO:<{}@in.example>\r\n",
        "a".repeat(300)
    );
    assert_eq!(events(&long), ["250", "250 2.1.0", "501 5.1.3"]);
    let bad =
        format!("{HELLO}MAIL FROM:<>\r\nRCPT TO:a@in.example\r\nRCPT TO:<a@in.example> X=y\r\n");
    assert_eq!(events(&bad), ["250", "250 2.1.0", "501 5.5.4", "555 5.5.4"]);
}

#[test]
fn postmaster_without_domain_is_routed_like_any_address() {
    let input = format!("{HELLO}MAIL FROM:<>\r\nRCPT TO:<postmaster>\r\n");
    assert_eq!(events(&input), ["250", "250 2.1.0", "550 5.1.1"]);
}

fn message_of(body: &[u8]) -> Vec<u8> {
    let mut input = format!("{}DATA\r\n", envelope()).into_bytes();
    input.extend_from_slice(body);
    let seen = run(&input);
    assert_eq!(
        seen.events[seen.events.len() - 2..],
        ["deliver", "250 2.0.0"],
        "{body:?}"
    );
    seen.delivered.into_iter().next().unwrap().message
}

#[test]
fn dot_stuffing() {
    assert_eq!(message_of(b".\r\n"), b"");
    assert_eq!(message_of(b"..x\r\n.\r\n"), b".x\r\n");
    assert_eq!(message_of(b"..\r\n.\r\n"), b".\r\n");
    assert_eq!(
        message_of(b"a\r\n..\r\n.b\r\n...\r\n.\r\n"),
        b"a\r\n.\r\nb\r\n..\r\n"
    );
    assert_eq!(message_of(b"\r\n.\r\n"), b"\r\n");
}

#[test]
fn message_bytes_are_kept() {
    let body = b"Subject: \xc3\xa9t\xe9\r\n\r\nbare\rcr and bare\nlf\tand \x00nul\r\nend\r\n";
    let mut input = body.to_vec();
    input.extend_from_slice(b".\r\n");
    assert_eq!(message_of(&input), body);
}

#[test]
fn only_crlf_dot_crlf_ends_data() {
    // SMTP smuggling: a bare-LF "end of data" must stay in the message.
    // A line-start dot is un-stuffed even before a bare LF.
    let body = b"a\n.\nMAIL FROM:<x@y>\r\nb\r\n.\nc\r.\r\n";
    let mut input = body.to_vec();
    input.extend_from_slice(b"\r\n.\r\n");
    let expected = b"a\n.\nMAIL FROM:<x@y>\r\nb\r\n\nc\r.\r\n\r\n";
    assert_eq!(message_of(&input), expected);
}

#[test]
fn pipelined_commands_after_the_dot_come_after_the_delivery() {
    let input = format!(
        "{}DATA\r\nx\r\n.\r\nNOOP\r\nMAIL FROM:<>\r\nQUIT\r\n",
        envelope()
    );
    assert_eq!(
        events(&input),
        [
            "250",
            "250 2.1.0",
            "250 2.1.5",
            "354",
            "deliver",
            "250 2.0.0",
            "250 2.0.0",
            "250 2.1.0",
            "221 2.0.0",
            "close"
        ]
    );
}

#[test]
fn declared_size() {
    let over = format!("{HELLO}MAIL FROM:<> SIZE=1001\r\nRCPT TO:<a@in.example>\r\n");
    assert_eq!(events(&over), ["250", "552 5.3.4", "503 5.5.1"]);
    let limit = format!("{HELLO}MAIL FROM:<> SIZE=1000\r\n");
    assert_eq!(events(&limit), ["250", "250 2.1.0"]);
    for size in ["18446744073709551614", "99999999999999999999999"] {
        let huge = format!("{HELLO}MAIL FROM:<> SIZE={size}\r\n");
        assert_eq!(events(&huge)[1], "552 5.3.4", "{size}");
    }
    let zeros = format!("{HELLO}MAIL FROM:<> SIZE=000000000000000000000000012\r\n");
    assert_eq!(events(&zeros)[1], "250 2.1.0");
}

#[test]
fn recipient_limit_counts_accepted_recipients() {
    let mut input = format!("{HELLO}MAIL FROM:<>\r\nRCPT TO:<unknown@in.example>\r\n");
    for i in 0..4 {
        input.push_str(&format!("RCPT TO:<r{i}@in.example>\r\n"));
    }
    input.push_str("DATA\r\nx\r\n.\r\n");
    let seen = run(input.as_bytes());
    assert_eq!(
        seen.events,
        [
            "250",
            "250 2.1.0",
            "550 5.1.1",
            "250 2.1.5",
            "250 2.1.5",
            "250 2.1.5",
            "452 4.5.3",
            "354",
            "deliver",
            "250 2.0.0",
            "250 2.0.0",
            "250 2.0.0"
        ]
    );
    assert_eq!(seen.delivered[0].routes.len(), 3);
}

#[test]
fn oversize_body_is_read_to_the_end_and_refused_per_recipient() {
    let mut input = format!("{}RCPT TO:<b@in.example>\r\nDATA\r\n", envelope()).into_bytes();
    input.extend(b"0123456789\r\n".repeat(200));
    input.extend(b".\r\nNOOP\r\n");
    let seen = run(&input);
    assert_eq!(
        seen.events,
        [
            "250",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.1.5",
            "354",
            "too-large",
            "too-large",
            "552 5.3.4",
            "552 5.3.4",
            "250 2.0.0"
        ]
    );
    assert!(seen.delivered.is_empty());
}

#[test]
fn exactly_the_limit_is_accepted() {
    let mut body = b"x".repeat(998);
    body.extend(b"\r\n");
    let mut input = body.clone();
    input.extend(b".\r\n");
    assert_eq!(message_of(&input), body);
}

#[test]
fn oversize_body_memory_is_bounded() {
    let mut s = session();
    s.feed(format!("{}DATA\r\n", envelope()).as_bytes());
    let block = b"y".repeat(256 * 1024);
    let mut appended = 0;
    for _ in 0..40 {
        for action in s.feed(&block) {
            let Action::Append(bytes) = action else {
                panic!("{action:?}");
            };
            appended += bytes.len();
        }
        assert!(appended <= LIMITS.max_message_size);
        match &s.state {
            State::Data(_, body) => assert!(body.kept() <= LIMITS.max_message_size),
            _ => panic!("left DATA"),
        }
    }
    let mut seen = Seen::default();
    let actions = s.feed(b"\r\n.\r\n");
    seen.take(&mut s, actions);
    seen.flush();
    assert_eq!(seen.events, ["too-large", "552 5.3.4"]);
    assert!(!s.in_transaction());
}

#[test]
fn long_command_lines_are_answered_once_and_skipped() {
    let mut input = format!("NOOP {}\r\nNOOP\r\n", "x".repeat(5000)).into_bytes();
    assert_eq!(run(&input).events, ["500 5.5.2", "250 2.0.0"]);
    input = format!("NOOP {}\r\n", "x".repeat(4089)).into_bytes();
    assert_eq!(input.len(), 4096);
    assert_eq!(run(&input).events, ["250 2.0.0"]);
}

#[test]
fn a_megabyte_line_without_crlf_keeps_memory_bounded() {
    let mut s = session();
    let mut seen = Seen::default();
    let block = b"z".repeat(1024);
    for _ in 0..1024 {
        let actions = s.feed(&block);
        seen.take(&mut s, actions);
        match &s.line {
            LineReader::Collecting(buf) => assert!(buf.len() <= super::super::input::MAX_LINE),
            LineReader::Skipping => {}
        }
    }
    let actions = s.feed(b"\r\nNOOP\r\n");
    seen.take(&mut s, actions);
    seen.flush();
    assert_eq!(seen.events, ["500 5.5.2", "250 2.0.0"]);
}

#[test]
fn nul_bytes_in_commands() {
    assert_eq!(events("NO\0OP\r\nNOOP\r\n"), ["500 5.5.2", "250 2.0.0"]);
    assert_eq!(
        events("LHLO c\r\nMAIL FROM:<a\0@b>\r\n"),
        ["250", "500 5.5.2"]
    );
}

#[test]
fn a_cr_inside_a_command_line_is_refused_not_skipped() {
    assert_eq!(
        events("NOOP\rNOOP\r\nNOOP\r\r\n"),
        ["500 5.5.2", "500 5.5.2"]
    );
    assert_eq!(
        events(&format!(
            "{HELLO}MAIL FROM:<>\r\nRCPT TO:<{KEY_RCPT}\r>\r\n"
        )),
        ["250", "250 2.1.0", "500 5.5.2"]
    );
}

#[test]
fn garbage_after_quit_is_ignored() {
    let mut input = b"QUIT\r\nNOOP\r\n".to_vec();
    input.extend(b"\xff\x00garbage".repeat(10_000));
    assert_eq!(run(&input).events, ["221 2.0.0", "close"]);
}

#[test]
fn bdat_chunks() {
    let input = format!(
        "{}BDAT 7\r\nhello\r\nBDAT 10 LAST\r\n.\r\nworld\r\nQUIT\r\n",
        envelope()
    );
    let seen = run(input.as_bytes());
    assert_eq!(
        seen.events,
        [
            "250",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0",
            "deliver",
            "250 2.0.0",
            "221 2.0.0",
            "close"
        ]
    );
    // BDAT bytes are taken as they are: no dot un-stuffing.
    assert_eq!(seen.delivered[0].message, b"hello\r\n.\r\nworld\r\n");
}

#[test]
fn bdat_zero_last_ends_the_message() {
    let input = format!("{}BDAT 3\r\nabcBDAT 0 LAST\r\n", envelope());
    let seen = run(input.as_bytes());
    assert_eq!(
        seen.events,
        [
            "250",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0",
            "deliver",
            "250 2.0.0"
        ]
    );
    assert_eq!(seen.delivered[0].message, b"abc");
}

#[test]
fn bdat_out_of_sequence_swallows_its_chunk() {
    assert_eq!(
        events("BDAT 6\r\nQUIT\r\nNOOP\r\n"),
        ["503 5.5.1", "250 2.0.0"]
    );
    let no_rcpt = format!("{HELLO}MAIL FROM:<>\r\nBDAT 4 LAST\r\nQUITRCPT TO:<a@in.example>\r\n");
    assert_eq!(
        events(&no_rcpt),
        ["250", "250 2.1.0", "503 5.5.1", "250 2.1.5"]
    );
    let data_after = format!(
        "{}BDAT 1\r\nxDATA\r\nRCPT TO:<b@in.example>\r\nBDAT 0 LAST\r\n",
        envelope()
    );
    assert_eq!(
        events(&data_after),
        [
            "250",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0",
            "503 5.5.1",
            "503 5.5.1",
            "deliver",
            "250 2.0.0"
        ]
    );
    assert_eq!(events("LHLO c\r\nBDAT x\r\n"), ["250", "501 5.5.4"]);
}

#[test]
fn bdat_beyond_the_limit() {
    // A last chunk too large: swallowed, one 552 per recipient.
    let input = format!(
        "{}RCPT TO:<b@in.example>\r\nBDAT 1001 LAST\r\n{}NOOP\r\n",
        envelope(),
        "q".repeat(1001)
    );
    assert_eq!(
        events(&input),
        [
            "250",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.1.5",
            "too-large",
            "too-large",
            "552 5.3.4",
            "552 5.3.4",
            "250 2.0.0"
        ]
    );
    // A middle chunk that crosses the limit: one 552, the transaction ends,
    // and a later BDAT is refused (its chunk still swallowed).
    let input = format!(
        "{}BDAT 600\r\n{}BDAT 600\r\n{}BDAT 2 LAST\r\nzzNOOP\r\n",
        envelope(),
        "q".repeat(600),
        "q".repeat(600)
    );
    assert_eq!(
        events(&input),
        [
            "250",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0",
            "too-large",
            "552 5.3.4",
            "503 5.5.1",
            "250 2.0.0"
        ]
    );
    // A chunk size no one could send is swallowed without being stored.
    let mut s = session();
    s.feed(format!("{}BDAT 18446744073709551614\r\n", envelope()).as_bytes());
    s.feed(&b"w".repeat(100_000));
    assert!(matches!(s.state, State::Discard(..)));
    // smtp-proto wraps this one around to a small number; it must not be
    // taken as a small chunk.
    let mut s = session();
    s.feed(format!("{}BDAT 99999999999999999999999\r\n", envelope()).as_bytes());
    assert!(s.feed(&b"w".repeat(100_000)).is_empty());
    assert!(matches!(s.state, State::Discard(..)));
}

#[test]
fn in_transaction_follows_the_state() {
    let mut s = session();
    assert!(!s.in_transaction());
    s.feed(HELLO.as_bytes());
    assert!(!s.in_transaction());
    s.feed(b"MAIL FROM:<>\r\n");
    assert!(s.in_transaction());
    s.feed(b"RCPT TO:<a@in.example>\r\nDATA\r\npart");
    assert!(s.in_transaction());
    s.feed(b"ial\r\n.\r\n");
    // Delivering: still the client's transaction until it is answered.
    assert!(s.in_transaction());
    s.delivered(&[Outcome::Delivered]);
    assert!(!s.in_transaction());
    s.feed(b"MAIL FROM:<>\r\nRSET\r\n");
    assert!(!s.in_transaction());
    s.feed(b"QUIT\r\n");
    assert!(!s.in_transaction());
}

/// Deterministic pseudo-random numbers (no extra crate, same every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
}

#[test]
fn random_input_never_panics_and_splitting_does_not_matter() {
    let pieces: &[&[u8]] = &[
        b"LHLO c\r\n",
        b"MAIL FROM:<>\r\n",
        b"RCPT TO:<a@in.example>\r\n",
        b"RCPT TO:<unknown@in.example>\r\n",
        b"DATA\r\n",
        b".\r\n",
        b"\r\n.\r\n",
        b"..",
        b"BDAT 3\r\n",
        b"BDAT 2 LAST\r\n",
        b"RSET\r\n",
        b"\n",
        b"\r",
        b"\0",
        b"x",
        b"\xff",
        b"NOOP\r\n",
        b"EHLO x\r\n",
        b"MAIL FROM:<> SIZE=5000\r\n",
    ];
    let mut rng = Lcg(7);
    for _ in 0..300 {
        let mut input = Vec::new();
        for _ in 0..rng.next() % 40 {
            input.extend_from_slice(pieces[rng.next() % pieces.len()]);
        }
        let whole = run_split(&input, 0);
        let piece = 1 + rng.next() % 13;
        assert_eq!(
            whole,
            run_split(&input, piece),
            "{:?}",
            String::from_utf8_lossy(&input)
        );
    }
}

#[test]
fn utf8_addresses_with_smtputf8() {
    let input =
        format!("{HELLO}MAIL FROM:<jöe@b.example> SMTPUTF8\r\nRCPT TO:<δοκιμή@in.example>\r\n");
    assert_eq!(events(&input), ["250", "250 2.1.0", "250 2.1.5"]);
}

/// RFC 2033 §4.2: after the message, one reply per accepted recipient, in
/// RCPT order, each from its own outcome; refused recipients get none.
#[test]
fn one_reply_per_accepted_recipient_in_rcpt_order_for_any_outcomes() {
    let input = format!(
        "{HELLO}MAIL FROM:<>\r\nRCPT TO:<a@in.example>\r\nRCPT TO:<unknown@in.example>\r\n\
         RCPT TO:<b@in.example>\r\nRCPT TO:<c@in.example>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n"
    );
    let outcomes = [
        Outcome::Temporary(crate::outcome::Temporary::Status(500)),
        Outcome::Delivered,
        Outcome::UnknownRecipient,
    ];
    for piece in [0, 1, 7] {
        let mut s = session();
        let mut seen = Seen {
            script: vec![outcomes.to_vec()],
            ..Seen::default()
        };
        let chunks: Vec<&[u8]> = match piece {
            0 => vec![input.as_bytes()],
            n => input.as_bytes().chunks(n).collect(),
        };
        for chunk in chunks {
            let actions = s.feed(chunk);
            seen.take(&mut s, actions);
        }
        seen.flush();
        let tail = &seen.events[seen.events.len() - 6..];
        assert_eq!(
            tail,
            [
                "deliver",
                "451 4.3.0",
                "250 2.0.0",
                "550 5.1.1",
                "221 2.0.0",
                "close"
            ],
            "pieces of {piece}"
        );
    }
}

#[test]
fn input_behind_the_message_waits_for_its_outcomes() {
    let mut s = session();
    s.feed(format!("{}DATA\r\n", envelope()).as_bytes());
    let actions = s.feed(b"x\r\n.\r\nNOOP\r\n");
    assert!(matches!(actions.last(), Some(Action::Deliver(_))));
    // Nothing is answered while the message is being delivered.
    assert!(s.feed(b"QUIT\r\n").is_empty());
    let after = s.delivered(&[Outcome::Delivered]);
    assert_eq!(
        after,
        [
            Action::Send(
                b"250 2.0.0 delivered to GitLab\r\n250 2.0.0 ok\r\n221 2.0.0 bye\r\n".to_vec()
            ),
            Action::Close
        ]
    );
}

#[test]
fn a_missing_outcome_is_a_temporary_failure_never_a_250() {
    let mut s = session();
    let input = format!("{HELLO}MAIL FROM:<>\r\nRCPT TO:<a@in.example>\r\nRCPT TO:<b@in.example>\r\nDATA\r\nx\r\n.\r\n");
    s.feed(input.as_bytes());
    let after = s.delivered(&[Outcome::Delivered]);
    let mut seen = Seen::default();
    seen.take(&mut s, after);
    seen.flush();
    assert_eq!(seen.events, ["log", "250 2.0.0", "451 4.3.0"]);
    // Called again with no message: only a log line, no reply.
    assert!(matches!(s.delivered(&[]).as_slice(), [Action::Log(_)]));
}

#[test]
fn decisions_of_the_session_itself_are_reported_for_counting() {
    let mut input = format!("{HELLO}MAIL FROM:<>\r\n");
    for i in 0..4 {
        input.push_str(&format!("RCPT TO:<r{i}@in.example>\r\n"));
    }
    input.push_str("DATA\r\n");
    input.push_str(&"x".repeat(2000));
    input.push_str("\r\n.\r\n");
    let seen = run(input.as_bytes());
    let too_large = |i: usize| Decision::TooLarge {
        sender: String::new(),
        recipient: Some((format!("r{i}@in.example"), MailboxKind::Incoming)),
        size: Size::Over(LIMITS.max_message_size),
        queue_id: None,
    };
    assert_eq!(
        seen.decided,
        [
            Decision::RecipientLimit,
            too_large(0),
            too_large(1),
            too_large(2)
        ]
    );
    let announced = run(format!("{HELLO}MAIL FROM:<a@b.example> SIZE=1001\r\n").as_bytes());
    assert_eq!(
        announced.decided,
        [Decision::TooLarge {
            sender: "a@b.example".into(),
            recipient: None,
            size: Size::Announced(1001),
            queue_id: None,
        }]
    );
}

/// The router sees the envelope sender: a router that refuses the null
/// sender (as the guard does) answers its refusal at RCPT (the router
/// reports it; the session only answers).
#[test]
fn router_gets_the_envelope_sender() {
    fn no_null_sender(sender: &str, rcpt: &str, id: Option<&str>) -> Result<Route, Outcome> {
        match sender {
            "" => Err(Outcome::Discarded(crate::outcome::Discard::NullSender)),
            _ => router(sender, rcpt, id),
        }
    }
    let mut s = Session::new("mx.test", LIMITS, no_null_sender as Router);
    let mut seen = Seen::default();
    let input = format!(
        "{HELLO}MAIL FROM:<>\r\nRCPT TO:<{KEY_RCPT}>\r\nRSET\r\n\
         MAIL FROM:<a@b.example>\r\nRCPT TO:<{KEY_RCPT}>\r\n"
    );
    let actions = s.feed(input.as_bytes());
    seen.take(&mut s, actions);
    seen.flush();
    assert_eq!(
        seen.events,
        ev![
            "250",
            "250 2.1.0",
            "550 5.7.1",
            "250 2.0.0",
            "250 2.1.0",
            "250 2.1.5"
        ]
    );
}

#[test]
fn a_message_that_is_not_delivered_is_abandoned() {
    // Reset between chunks (RSET, LHLO), a middle chunk over the limit, a
    // DATA body over it: the next message carries only its own bytes (the
    // harness checks each delivery's size against the bytes appended).
    let over = "q".repeat(1200);
    for cut in [
        "BDAT 5\r\nfirstRSET\r\n".to_string(),
        format!("BDAT 5\r\nfirst{HELLO}"),
        format!("BDAT 5\r\nfirstBDAT 1200\r\n{over}"),
        format!("DATA\r\nfirst{over}\r\n.\r\n"),
    ] {
        let input = format!(
            "{}{cut}MAIL FROM:<>\r\nRCPT TO:<{KEY_RCPT}>\r\nBDAT 6 LAST\r\nsecond",
            envelope()
        );
        let seen = run(input.as_bytes());
        assert_eq!(seen.delivered.len(), 1, "{cut:?}");
        assert_eq!(seen.delivered[0].message, b"second", "{cut:?}");
    }
}

#[test]
fn a_body_leaves_as_appends_merged_per_feed() {
    let mut s = session();
    s.feed(format!("{}DATA\r\n", envelope()).as_bytes());
    let actions = s.feed(b"a\r\n..b\r\nc");
    assert_eq!(actions, [Action::Append(b"a\r\n.b\r\nc".to_vec())]);
    let actions = s.feed(b"\r\n.\r\n");
    assert!(matches!(
        actions.as_slice(),
        [
            Action::Append(_),
            Action::Deliver(Transaction { size: 10, .. })
        ]
    ));
}

/// XFORWARD (Postfix's lmtp client with `lmtp_send_xforward_command =
/// yes`): advertised in LHLO, taken between transactions, its IDENT the
/// queue id of the next transaction only (a delivery or RSET ends it).
#[test]
fn xforward_names_the_queue_id_of_the_next_transaction() {
    let mut s = session();
    let mut seen = Seen::default();
    let actions = s.feed(HELLO.as_bytes());
    let Some(Action::Send(lhlo)) = actions.first() else {
        panic!("{actions:?}")
    };
    assert!(
        String::from_utf8_lossy(lhlo)
            .contains("250 XFORWARD NAME ADDR PROTO HELO IDENT SOURCE PORT\r\n"),
        "{}",
        String::from_utf8_lossy(lhlo)
    );
    let message = "Subject: x\r\n\r\nhi\r\n.\r\n";
    let input = format!(
        "XFORWARD NAME=localhost ADDR=127.0.0.1 PORT=4 HELO=h.example\r\n\
         XFORWARD PROTO=ESMTP IDENT=4Fq1Lz2nYHz9sVh SOURCE=LOCAL\r\n\
         MAIL FROM:<a@b.example>\r\nRCPT TO:<{KEY_RCPT}>\r\nDATA\r\n{message}\
         MAIL FROM:<a@b.example>\r\nRCPT TO:<{KEY_RCPT}>\r\nDATA\r\n{message}\
         XFORWARD IDENT=AAAA\r\nRSET\r\n\
         MAIL FROM:<a@b.example>\r\nRCPT TO:<{KEY_RCPT}>\r\nDATA\r\n{message}"
    );
    let actions = s.feed(input.as_bytes());
    seen.take(&mut s, actions);
    seen.flush();
    let ids: Vec<Option<&str>> = seen
        .delivered
        .iter()
        .map(|d| d.queue_id.as_deref())
        .collect();
    assert_eq!(ids, [Some("4Fq1Lz2nYHz9sVh"), None, None]);
    assert_eq!(
        seen.events[..6],
        ev![
            "250 2.0.0",
            "250 2.0.0",
            "250 2.1.0",
            "250 2.1.5",
            "354",
            "deliver"
        ]
    );
}

/// The router and a refusal for size see the queue id: the core logs
/// RCPT refusals and too-large messages with it.
#[test]
fn xforward_queue_id_reaches_the_router_and_size_refusals() {
    fn needs_id(sender: &str, rcpt: &str, id: Option<&str>) -> Result<Route, Outcome> {
        match id {
            Some("QID1") => router(sender, rcpt, id),
            _ => Err(Outcome::UnknownRecipient),
        }
    }
    let mut s = Session::new("mx.test", LIMITS, needs_id as Router);
    let mut seen = Seen::default();
    let input = format!(
        "{HELLO}XFORWARD IDENT=QID1\r\nMAIL FROM:<a@b.example> SIZE=1001\r\n\
         MAIL FROM:<a@b.example>\r\nRCPT TO:<{KEY_RCPT}>\r\n"
    );
    let actions = s.feed(input.as_bytes());
    seen.take(&mut s, actions);
    seen.flush();
    assert_eq!(
        seen.events[1..],
        ev!["250 2.0.0", "552 5.3.4", "250 2.1.0", "250 2.1.5"]
    );
    assert!(matches!(
        &seen.decided[..],
        [Decision::TooLarge { queue_id: Some(id), .. }] if id == "QID1"
    ));
}

/// Postfix's rules: not in a transaction (`503 5.5.1`), names from the
/// list and `name=value` only (`501 5.5.4`); a refused XFORWARD leaves
/// the session where it was.
#[test]
fn xforward_out_of_sequence_or_malformed_is_refused() {
    assert_eq!(events("XFORWARD IDENT=A\r\n"), ev!["503 5.5.1"]);
    let input = format!("{}XFORWARD IDENT=A\r\nNOOP\r\n", envelope());
    assert_eq!(events(&input)[3..], ev!["503 5.5.1", "250 2.0.0"]);
    let input = format!(
        "{HELLO}XFORWARD\r\nXFORWARD USER=root\r\nXFORWARD IDENT\r\n\
         XFORWARD IDENT=a+zz\r\nXFORWARD NAME={}\r\nNOOP\r\n",
        "n".repeat(300)
    );
    assert_eq!(
        events(&input)[1..],
        ev![
            "501 5.5.4",
            "501 5.5.4",
            "501 5.5.4",
            "501 5.5.4",
            "501 5.5.4",
            "250 2.0.0"
        ]
    );
}
