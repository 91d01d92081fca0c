//! The recipient lookup (`[lookup] listen`, Postfix's socketmap table for
//! `relay_recipient_maps`, issue 19 item 2) against hostile clients:
//! malformed netstrings, over-long requests, silent and trickling clients
//! and more connections than `max_connections`. Each case checks that the
//! answers stay those of the delivery core's routing, that a bad client
//! only loses its own connection, that silent clients hold no thread, and
//! that the server still answers lookups and delivers over LMTP.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// `max_connections` of the lookup in these tests.
const MAX: usize = 8;
/// Any wait for the server here.
const LIMIT: Duration = Duration::from_secs(30);

/// A server with the lookup on a free port; the port.
fn start() -> (Server, StandIn, TestEnv, u16) {
    let port = unused_port();
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |s| {
        s.extra = format!("\n[lookup]\nlisten = \"127.0.0.1:{port}\"\nmax_connections = {MAX}\n");
    });
    let server = Server::start(&env);
    assert!(
        server.wait_log("recipient lookup on 127.0.0.1:", 1),
        "no lookup listener:\n{}",
        server.log_text()
    );
    (server, standin, env, port)
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the lookup");
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s
}

fn netstring(text: &str) -> Vec<u8> {
    format!("{}:{text},", text.len()).into_bytes()
}

/// Sends one request on `s` and reads its whole reply netstring.
fn ask(s: &mut TcpStream, request: &str) -> String {
    s.write_all(&netstring(request)).expect("send a request");
    read_reply(s).unwrap_or_else(|| panic!("no answer to {request:?}"))
}

/// One reply netstring's text; `None` when the server closed first.
fn read_reply(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match s.read(&mut byte) {
            Ok(0) | Err(_) => return None,
            Ok(_) => buf.push(byte[0]),
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((len, rest)) = text.split_once(':') {
            let len: usize = len.parse().expect("a length");
            if rest.len() == len + 1 {
                assert!(rest.ends_with(','), "{text}");
                return Some(rest[..len].to_string());
            }
        }
        assert!(buf.len() < 10_000, "reply too long");
    }
}

/// Whether the server closes `s` (bounded wait), having sent nothing more.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(0) | Err(_))
}

/// Known, unknown and invalid-key addresses on one connection, as routing says.
fn assert_answers(port: u16) {
    let mut s = connect(port);
    assert_eq!(
        ask(&mut s, &format!("gitlab {INCOMING_RCPT}")),
        "OK incoming_email"
    );
    assert_eq!(
        ask(&mut s, "gitlab nobody@incoming.example.com"),
        "NOTFOUND "
    );
    assert_eq!(
        ask(&mut s, "gitlab incoming+nonsense@incoming.example.com"),
        "NOTFOUND "
    );
    assert_eq!(ask(&mut s, "gitlab someone@elsewhere.example"), "NOTFOUND ");
    assert!(ask(&mut s, "aliases nobody@incoming.example.com").starts_with("PERM "));
    assert!(ask(&mut s, "gitlab").starts_with("PERM "));
}

fn threads(server: &Server) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Threads: in /proc/PID/status")
}

#[test]
fn lookup_answers_as_routing_does_on_a_persistent_connection() {
    let (mut server, _standin, _env, port) = start();
    assert_answers(port);
    // Pipelined: two requests in one write, two answers in order.
    let mut s = connect(port);
    let mut both = netstring(&format!("gitlab {INCOMING_RCPT}"));
    both.extend(netstring("gitlab nobody@incoming.example.com"));
    s.write_all(&both).unwrap();
    assert_eq!(read_reply(&mut s).as_deref(), Some("OK incoming_email"));
    assert_eq!(read_reply(&mut s).as_deref(), Some("NOTFOUND "));
    server.assert_alive();
    // smtpd refuses a NOTFOUND address during SMTP: nothing is bounced,
    // and the line must not say so.
    let logged = server.wait_log(
        "lookup: to=<nobody@incoming.example.com>, NOTFOUND (550 5.1.1 ",
        2,
    );
    let log = server.log_text();
    assert!(logged && !log.contains("status=bounced"), "{log}");
}

#[test]
fn lookup_closes_malformed_and_over_long_requests_and_stays_up() {
    let (mut server, _standin, _env, port) = start();
    for bad in [
        &b"hello\r\n"[..],
        b":gitlab x,",
        b"5;gitlab,",
        b"3:abcX",
        b"007:gitlab ,",
        // Over-long: refused from the length alone, before the payload.
        b"4097:",
        b"99999999999999999999:",
    ] {
        let mut s = connect(port);
        s.write_all(bad).unwrap();
        assert!(closed_by_server(&mut s), "{bad:?} left open");
    }
    // A huge request actually sent: closed without reading it all.
    let mut s = connect(port);
    let mut huge = b"1000000:gitlab ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let _ = s.write_all(&huge);
    assert!(closed_by_server(&mut s), "a 1 MB request left open");
    assert_answers(port);
    server.assert_alive();
    normal_delivery(&server, "after malformed lookups");
}

#[test]
fn lookup_bounds_silent_trickling_and_many_clients() {
    let (mut server, _standin, _env, port) = start();
    assert_answers(port);
    let before = threads(&server);
    // Far more silent clients than slots: the idle ones give way.
    let silent: Vec<TcpStream> = (0..MAX * 8).map(|_| connect(port)).collect();
    // A client stuck in the middle of a request is closed at its deadline.
    let mut stuck = connect(port);
    stuck.write_all(b"40:gitlab incoming").unwrap();
    assert!(closed_by_server(&mut stuck), "a half request held its slot");
    // One sending a request a byte at a time is closed too.
    let mut trickle = connect(port);
    let request = netstring(&format!("gitlab {INCOMING_RCPT}"));
    let mut cut = false;
    for b in &request {
        if trickle.write_all(&[*b]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        cut || closed_by_server(&mut trickle),
        "a trickling client was served"
    );
    // A new client is answered however many were there (they reconnect
    // like Postfix: a connection closed for it is tried again).
    let answered = wait_until(LIMIT, Duration::from_millis(100), || {
        let mut s = connect(port);
        let _ = s.write_all(&netstring(&format!("gitlab {INCOMING_RCPT}")));
        read_reply(&mut s).as_deref() == Some("OK incoming_email")
    });
    assert!(answered, "the lookup stopped answering");
    assert_eq!(threads(&server), before, "clients took threads");
    drop(silent);
    assert_answers(port);
    server.assert_alive();
    normal_delivery(&server, "after many lookup clients");
}
