//! Clients that abuse the connection itself: one that trickles a byte a
//! second, and a flood of simultaneous connections beyond
//! `max_connections` held in transactions (idle ones are evicted, see
//! `slots.rs`).

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn a_client_sending_one_byte_a_second_is_dropped_with_421() {
    let env = TestEnv::new(&Settings {
        extra: "idle_timeout_secs = 2\n".into(),
        ..Settings::default()
    });
    let mut server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    // Each byte comes well inside the idle timeout, but no command is ever
    // completed; at most 40 bytes (40 s), then the test gives up.
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = stop.clone();
        let mut stream = c.stream();
        std::thread::spawn(move || {
            for &b in b"NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP ".iter() {
                if stop.load(Ordering::SeqCst) || stream.write_all(&[b]).is_err() {
                    return;
                }
                // Pacing, not waiting for anything: one byte a second,
                // the slow client this test is about.
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    c.expect(421, "4.4.2");
    c.expect_closed();
    stop.store(true, Ordering::SeqCst);
    let _ = trickle.join();
    server.assert_alive();
    let mut other = server.connect();
    other.hello();
    other.cmd("NOOP", 250, "2.0.0");
}

#[test]
fn five_hundred_connections_against_max_connections_20() {
    const ADMITTED: usize = 20;
    // 500 sockets here, 20 of them with a second descriptor, plus slack.
    let limit = raise_fd_limit(2048);
    let total = 500.min(limit.saturating_sub(200) as usize);
    if total < 500 {
        eprintln!("note: open-file limit {limit}: using {total} connections instead of 500");
    }
    assert!(total > ADMITTED + 10, "open-file limit {limit} is too low");
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |s| {
        s.extra = format!("max_connections = {ADMITTED}\n")
    });
    let mut server = Server::start(&env);

    // In transactions: an idle connection would give its slot away.
    let mut admitted: Vec<Client> = (0..ADMITTED).map(|_| server.connect()).collect();
    for c in &mut admitted {
        c.hello();
        c.cmd("MAIL FROM:<>", 250, "2.1.0");
    }
    let flood: Vec<TcpStream> = (ADMITTED..total)
        .map(|_| TcpStream::connect(&server.addr).expect("connect"))
        .collect();
    for (i, mut s) in flood.into_iter().enumerate() {
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut got = Vec::new();
        // The refusal, then the close.
        let _ = s.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("421 4.3.2 ") && text.matches("\r\n").count() == 1,
            "connection {}: {text:?}",
            i + ADMITTED
        );
    }
    // The admitted ones were not disturbed.
    for c in &mut admitted {
        c.cmd("NOOP", 250, "2.0.0");
    }
    let c = &mut admitted[0];
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
    c.cmd("DATA", 354, "");
    c.send(&stuffed(&crlf_message("admitted")));
    c.expect(250, "2.0.0");
    assert_eq!(standin.bodies().len(), 1);

    // A freed place is given to the next client.
    admitted.pop().expect("one").hang_up();
    let mut tries = 0;
    let freed = wait_until(WAIT, POLL, || {
        tries += 1;
        let mut s = TcpStream::connect(&server.addr).expect("connect");
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut first = [0u8; 3];
        s.read_exact(&mut first).is_ok() && &first == b"220"
    });
    assert!(freed, "no place freed after {tries} tries");
    server.assert_alive();
}
