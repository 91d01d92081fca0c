//! The lookup listener's event loop: one thread runs `poll(2)` over the
//! listening socket and every open connection, all non-blocking, so a
//! silent client holds a slot in a table, never a thread. Connections are
//! persistent (Postfix keeps one per process and sends request after
//! request); each request is answered inline by `socketmap`, which takes
//! microseconds (no I/O: the answer is the delivery core's routing).
//!
//! Bounds, whatever the clients do: at most `max_open` connections (when
//! full, the one idle longest is closed: Postfix reconnects and retries
//! once by itself); a partial request must be whole [`REQUEST_DEADLINE`]
//! after its first byte, and its answer taken as quickly; an idle
//! connection is closed after [`IDLE`]; at most one request of
//! `socketmap::MAX_REQUEST` bytes is buffered, and a client that does not
//! take its answers is not read from until it does.

use super::socketmap::{self, Parsed};
use crate::log::Log;
use crate::poll::{self, pollfd};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// From a request's first byte to its answer taken.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// A connection with nothing in flight this long is closed (Postfix
/// closes its own after 10 s idle, `socketmap` in `dict_sockmap.c`).
pub const IDLE: Duration = Duration::from_secs(60);

/// One client.
struct Conn {
    stream: TcpStream,
    /// Bytes of a request not yet whole.
    input: Vec<u8>,
    /// Answers not yet written, and how many bytes of them are out.
    output: Vec<u8>,
    written: usize,
    /// When it must have made progress: idle or request deadline.
    until: Instant,
    /// When it last had nothing in flight (for eviction).
    idle_since: Instant,
    closed: bool,
}

impl Conn {
    fn busy(&self) -> bool {
        !self.input.is_empty() || self.written < self.output.len()
    }

    /// Reads what is there and answers every whole request in it.
    fn read(&mut self, answer: &impl Fn(&[u8]) -> Vec<u8>, scratch: &mut [u8], now: Instant) {
        let room = socketmap::MAX_REQUEST + 8 - self.input.len();
        match self.stream.read(&mut scratch[..room]) {
            Ok(0) => self.closed = true,
            Ok(n) => {
                if self.input.is_empty() {
                    self.until = now + REQUEST_DEADLINE;
                }
                self.input.extend_from_slice(&scratch[..n]);
                self.answer(answer, now);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => self.closed = true,
        }
    }

    fn answer(&mut self, answer: &impl Fn(&[u8]) -> Vec<u8>, now: Instant) {
        loop {
            match socketmap::parse(&self.input) {
                Parsed::Incomplete => break,
                Parsed::Malformed(_) => {
                    self.closed = true;
                    return;
                }
                Parsed::Request { payload, used } => {
                    self.output.extend_from_slice(&answer(payload));
                    self.input.drain(..used);
                    self.until = now + REQUEST_DEADLINE;
                }
            }
        }
        if !self.input.is_empty() || !self.output.is_empty() {
            self.write(now);
        }
    }

    fn write(&mut self, now: Instant) {
        while self.written < self.output.len() {
            match self.stream.write(&self.output[self.written..]) {
                Ok(0) => self.closed = true,
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => self.closed = true,
            }
            if self.closed {
                return;
            }
        }
        self.output.clear();
        self.written = 0;
        if self.input.is_empty() {
            self.until = now + IDLE;
            self.idle_since = now;
        }
    }
}

/// Runs the loop on `listener` for the life of the process; `answer`
/// turns one request payload into one encoded reply.
pub fn run(listener: &TcpListener, max_open: usize, answer: impl Fn(&[u8]) -> Vec<u8>, log: &Log) {
    let mut conns: Vec<Conn> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let mut scratch = vec![0u8; socketmap::MAX_REQUEST + 8];
    let mut paused: Option<Instant> = None;
    let mut warned = false;
    loop {
        let now = Instant::now();
        paused = paused.filter(|until| *until > now);
        fds.clear();
        fds.push(poll::listening(listener, paused.is_some()));
        fds.extend(conns.iter().map(|c| {
            // Not read while its answers are not taken: no output grows.
            let events = if c.written < c.output.len() {
                libc::POLLOUT
            } else {
                libc::POLLIN
            };
            pollfd(c.stream.as_raw_fd(), events)
        }));
        let wake = conns.iter().map(|c| c.until).chain(paused).min();
        if !poll::wait(&mut fds, wake, now) {
            continue;
        }
        let now = Instant::now();
        for (conn, fd) in conns.iter_mut().zip(&fds[1..]) {
            if fd.revents == 0 {
                continue;
            }
            if conn.written < conn.output.len() {
                conn.write(now);
            } else {
                conn.read(&answer, &mut scratch, now);
            }
        }
        conns.retain(|c| !c.closed && c.until > now);
        if fds[0].revents & libc::POLLIN != 0 {
            if let Err(e) = accept(listener, &mut conns, max_open, now) {
                paused = Some(now + poll::PAUSE);
                if !warned {
                    log.warn(&format!("lookup: accept: {e}"));
                    warned = true;
                }
            }
        }
    }
}

/// Accepts what is waiting (a burst, see [`poll::accept_burst`]); when
/// full, a new connection takes the slot of the one idle longest, or is
/// closed when every one is in the middle of a request.
fn accept(
    listener: &TcpListener,
    conns: &mut Vec<Conn>,
    max_open: usize,
    now: Instant,
) -> io::Result<()> {
    poll::accept_burst(listener, |stream| {
        if conns.len() >= max_open {
            let idlest = conns
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.busy())
                .min_by_key(|(_, c)| c.idle_since)
                .map(|(i, _)| i);
            match idlest {
                Some(i) => drop(conns.swap_remove(i)),
                None => return, // all busy: this one is closed
            }
        }
        conns.push(Conn {
            stream,
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            until: now + IDLE,
            idle_since: now,
            closed: false,
        });
    })
}
