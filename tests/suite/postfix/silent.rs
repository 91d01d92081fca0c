//! Issue 18: clients that connect to `serve` and say nothing, as many as
//! its default `max_connections` (64), must not lock Postfix out. Half of
//! them come over TCP from 127.0.0.1 like Postfix (the default per-address
//! share, 32), half over the unix socket; with every slot so taken, a
//! message sent into Postfix is still delivered over LMTP: `serve` gives
//! Postfix the slot of the connection idle longest.

use super::shipped::Variant;
use super::{incoming_rcpt, postfix_for, preflight, send_and_expect_delivery, Env};
use crate::common::wait_until;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

#[test]
fn postfix_delivers_with_64_silent_connections_open() {
    preflight();
    let env = Env::new();
    let outs = vec![env.dir.join("gitlab")];
    let _gitlab = env.gitlab(&outs[0], "ok");
    let serve = env.serve();
    let connects = || serve.log_text().matches("connect from").count();
    let before = connects();
    let tcp: Vec<TcpStream> = (0..32)
        .map(|_| TcpStream::connect(("127.0.0.1", env.lmtp_port)).expect("connect over TCP"))
        .collect();
    let unix: Vec<UnixStream> = (0..32)
        .map(|_| UnixStream::connect(&env.lmtp_socket).expect("connect over the socket"))
        .collect();
    let all_in = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        connects() >= before + 64
    });
    assert!(
        all_in,
        "the 64 silent connections were not all admitted:\n{}",
        serve.log_text()
    );

    let pf = postfix_for(Variant::LmtpInet, &env, false);
    send_and_expect_delivery(&pf, &outs, &incoming_rcpt(), "incoming_email", "silent-64");
    let log = serve.log_text();
    assert!(
        log.contains("connection slots taken: closing the idle connection"),
        "Postfix got a slot without one being taken; the slots were not all full:\n{log}"
    );
    drop(pf);
    drop((tcp, unix));
}
