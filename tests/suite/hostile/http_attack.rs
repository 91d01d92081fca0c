//! The `[http]` listener under attack (issue 18 item 5): 1,000 idle
//! connections and 8 clients trickling a request head a byte at a time,
//! kept up all along (a connection the server cuts off is opened again),
//! while a kubelet-like client probes `/livez` and `/readyz`. Every probe
//! must be answered within the kubelet's timeout (1 s; three misses in a
//! row restart the pod), and LMTP delivery goes on.
//!
//! Every wait and every attacker is bounded in time; the 1 s is the
//! kubelet's rule for a probe, a functional requirement, not a measurement
//! (the figures are in bench/http_attack.py).

use crate::common::*;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const IDLE: usize = 1000;
const TRICKLERS: usize = 8;
const PROBES: usize = 20;
/// A kubelet gives a probe 1 s by default (`timeoutSeconds`).
const KUBELET_TIMEOUT: Duration = Duration::from_secs(1);
/// No attacker lives longer than this, whatever happens to the test.
const ATTACK_LIMIT: Duration = Duration::from_secs(120);

/// The attackers' shared state: a stop flag, and what they achieved.
#[derive(Default)]
struct Attack {
    stop: AtomicBool,
    /// Set once all [`IDLE`] connections were open at the same time.
    idle_all_open: AtomicBool,
    /// Bytes the trickling clients sent so far.
    trickled: AtomicUsize,
}

impl Attack {
    fn over(&self, start: Instant) -> bool {
        self.stop.load(Ordering::SeqCst) || start.elapsed() > ATTACK_LIMIT
    }
}

/// Whether the server closed or answered `stream` (non-blocking).
fn cut_off(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 64];
    !matches!(stream.read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

fn connect(addr: SocketAddr) -> Option<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_nonblocking(true).ok()?;
    Some(stream)
}

/// Keeps [`IDLE`] connections open that never send a byte; one the server
/// closes is opened again at the next round.
fn idle_keeper(addr: SocketAddr, attack: Arc<Attack>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut slots: Vec<Option<TcpStream>> = (0..IDLE).map(|_| None).collect();
        while !attack.over(start) {
            for slot in &mut slots {
                if attack.over(start) {
                    return;
                }
                if slot.as_mut().is_none_or(cut_off) {
                    *slot = connect(addr);
                }
            }
            if slots.iter().all(Option::is_some) {
                attack.idle_all_open.store(true, Ordering::SeqCst);
            }
            // Pacing: one round every 100 ms.
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// A client that sends a request head that never ends, one byte every
/// 700 ms, and connects again when the server cuts it off.
fn trickler(addr: SocketAddr, attack: Arc<Attack>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let head = b"GET /livez HTTP/1.1\r\nHost: attacker\r\nX-Slow: ";
        let mut stream: Option<(TcpStream, usize)> = None;
        while !attack.over(start) {
            if stream.as_mut().is_none_or(|(s, _)| cut_off(s)) {
                stream = connect(addr).map(|s| (s, 0));
            }
            if let Some((s, sent)) = &mut stream {
                let byte = head.get(*sent).copied().unwrap_or(b'a');
                if s.write(&[byte]).is_ok_and(|n| n == 1) {
                    *sent += 1;
                    attack.trickled.fetch_add(1, Ordering::SeqCst);
                }
            }
            // Pacing, the point of this client: a byte every 700 ms.
            for _ in 0..7 {
                if !attack.over(start) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    })
}

/// One probe as a kubelet sends it: the status code, if the status line
/// came within [`KUBELET_TIMEOUT`] of the connect.
fn probe(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let start = Instant::now();
    let mut stream =
        TcpStream::connect_timeout(&addr, KUBELET_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .set_write_timeout(Some(KUBELET_TIMEOUT))
        .and_then(|_| stream.write_all(request.as_bytes()))
        .map_err(|e| format!("send: {e}"))?;
    let mut got = Vec::new();
    while !got.windows(2).any(|w| w == b"\r\n") {
        let left = KUBELET_TIMEOUT.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(format!("no status line within {KUBELET_TIMEOUT:?}"));
        }
        stream.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 512];
        match stream.read(&mut buf) {
            Ok(0) => return Err(format!("closed after {got:?}")),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("no status line within {KUBELET_TIMEOUT:?}: {e}")),
        }
    }
    Ok(parse_answer(&got).status)
}

#[test]
fn probes_are_answered_while_1000_idle_and_8_trickling_clients_hold_the_listener() {
    // 1,000 idle sockets, 8 trickling, probes, LMTP, and the other tests.
    let limit = raise_fd_limit(4096);
    assert!(
        limit >= (IDLE + 500) as u64,
        "open-file limit {limit}: too low for {IDLE} connections"
    );
    let http = format!("127.0.0.1:{}", unused_port());
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |s| {
        s.extra = format!("\n[http]\nlisten = \"{http}\"\n");
    });
    let mut server = Server::start(&env);
    assert!(server.wait_log("http on ", 1), "{}", server.log_text());
    let addr: SocketAddr = http.parse().unwrap();
    let ready = wait_until(WAIT, POLL, || probe(addr, "/readyz") == Ok(200));
    assert!(ready, "{:?}", probe(addr, "/readyz"));

    let attack = Arc::new(Attack::default());
    let mut attackers = vec![idle_keeper(addr, attack.clone())];
    attackers.extend((0..TRICKLERS).map(|_| trickler(addr, attack.clone())));
    let at_strength = wait_until(Duration::from_secs(30), POLL, || {
        attack.idle_all_open.load(Ordering::SeqCst)
            && attack.trickled.load(Ordering::SeqCst) >= 2 * TRICKLERS
    });

    // Probes spread over more than one whole-request deadline (3 s), so
    // they meet the attackers both fresh and reconnecting.
    let mut failures = Vec::new();
    for i in 0..PROBES {
        let path = ["/livez", "/readyz"][i % 2];
        match probe(addr, path) {
            Ok(200) => {}
            other => failures.push(format!("probe {i} {path}: {other:?}")),
        }
        // Pacing: a probe every 300 ms.
        std::thread::sleep(Duration::from_millis(300));
    }
    // LMTP goes on beside the attack (no descriptor shortage there).
    normal_delivery(&server, "during-http-attack");
    let trickled = attack.trickled.load(Ordering::SeqCst);
    attack.stop.store(true, Ordering::SeqCst);
    for a in attackers {
        a.join().expect("attacker thread");
    }

    assert!(
        failures.is_empty(),
        "{} of {PROBES} probes not answered within the kubelet's timeout \
         (attack at strength: {at_strength}):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        at_strength,
        "the attack never got to {IDLE} idle connections and {TRICKLERS} trickling clients"
    );
    assert!(trickled >= 2 * TRICKLERS, "trickled {trickled} bytes");
    assert_eq!(standin.bodies().len(), 1);
    server.assert_alive();
}
