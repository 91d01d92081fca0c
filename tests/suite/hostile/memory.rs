//! Memory does not grow with the size of messages (issue 18 item 9): many
//! large messages held at once by `serve`, and a large one on `deliver`'s
//! standard input, keep the peak RSS far below their total, and each
//! reaches GitLab byte for byte (compared by SHA-256).

use super::pipe::deliver_measured;
use crate::common::*;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Messages held by `serve` at once.
const MESSAGES: usize = 8;
/// Bytes in each: 8 x 25 MB = 200 MB, three times the bound below.
const SIZE: usize = 25_000_000;
/// `serve`'s peak RSS must stay under this (MiB).
const SERVE_PEAK_MIB: u64 = 64;
/// `deliver`'s peak RSS must stay under this (MiB) with one such message.
const DELIVER_PEAK_MIB: u64 = 24;

/// A body of about `size` bytes in CRLF lines: printable text, 8-bit
/// bytes, and lines starting with a dot (stuffed over LMTP).
fn body(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 128);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut line = 0u64;
    while out.len() < size {
        if line.is_multiple_of(97) {
            out.push(b'.');
        }
        for _ in 0..74 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = (x >> 56) as u8;
            out.push(if b < 0xf0 { b' ' + b % 95 } else { b });
        }
        out.extend_from_slice(b"\r\n");
        line += 1;
    }
    out
}

/// The header section of message `i`.
fn header(i: usize) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\nTo: {INCOMING_RCPT}\r\n\
         Subject: large {i}\r\nMessage-ID: <large-{i}@example.org>\r\n\r\n"
    )
    .into_bytes()
}

/// SHA-256 of the body GitLab must get for `header` + `body`.
fn expected_hash(header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(format!("Delivered-To: {INCOMING_RCPT}\r\n").as_bytes());
    h.update(header);
    h.update(body);
    h.finalize().to_vec()
}

#[test]
fn many_large_messages_at_once_stay_out_of_memory() {
    let (env, standin) =
        TestEnv::with_standin(StandIn::builder(), |s| s.max_message_size = 26_214_400);
    let server = Server::start(&env);
    let body = body(SIZE - header(0).len());
    let mut expected: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|i| expected_hash(&header(i), &body))
        .collect();
    // The header section has no line starting with a dot: stuffing the
    // body alone stuffs the message. Without its final ".CRLF".
    let stuffed = Arc::new(stuffed(&body));
    let stuffed_len = stuffed.len() - 3;
    drop(body);

    // Every client sends its whole message but the final dot, then waits
    // for the others: serve holds all of them at once.
    let sent = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..MESSAGES)
        .map(|i| {
            let (stuffed, sent, addr) = (stuffed.clone(), sent.clone(), server.addr.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(&addr);
                c.hello();
                c.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
                c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
                c.cmd("DATA", 354, "");
                c.send(&header(i));
                c.send(&stuffed[..stuffed_len]);
                sent.fetch_add(1, Ordering::SeqCst);
                let all = wait_until(WAIT, POLL, || sent.load(Ordering::SeqCst) == MESSAGES);
                assert!(all, "not every client sent its message");
                c.send(b".\r\n");
                c.expect(250, "2.0.0");
                c.cmd("QUIT", 221, "2.0.0");
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client failed");
    }

    let peak_kib = server.peak_memory_kib();
    let mut got: Vec<Vec<u8>> = standin
        .bodies()
        .iter()
        .map(|b| Sha256::digest(&b.bytes).to_vec())
        .collect();
    got.sort();
    expected.sort();
    assert!(
        got == expected,
        "GitLab did not get every message byte for byte"
    );
    eprintln!("serve peak RSS (VmHWM) with {MESSAGES} x {SIZE} bytes: {peak_kib} KiB");
    server.assert_peak_memory_below(SERVE_PEAK_MIB);
}

#[test]
fn a_large_message_on_standard_input_stays_out_of_memory() {
    let (env, standin) =
        TestEnv::with_standin(StandIn::builder(), |s| s.max_message_size = 26_214_400);
    // LF line endings, as pipe(8) writes them.
    let head = b"From: Alice <alice@example.org>\nSubject: large\n\n".to_vec();
    let text = body(SIZE - head.len());
    let message = [head, text].concat();
    let (run, peak_kib) = deliver_measured(&env, &[INCOMING_RCPT], &message);
    assert_eq!(run.code, Some(0), "{}{}", run.out(), run.err());
    let bodies = standin.bodies();
    assert_eq!(bodies.len(), 1);
    assert!(
        Sha256::digest(&bodies[0].bytes).to_vec() == expected_hash(&[], &message),
        "GitLab did not get the message byte for byte"
    );
    eprintln!("deliver peak RSS with {SIZE} bytes: {peak_kib} KiB");
    assert!(
        peak_kib < DELIVER_PEAK_MIB * 1024,
        "deliver peaked at {} MiB",
        peak_kib / 1024
    );
}
