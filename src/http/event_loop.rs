//! The `[http]` listener's event loop: one thread runs `poll(2)` over the
//! listening socket and every open connection, all non-blocking, so a
//! silent or trickling client costs a slot in a table, never a thread.
//! It knows connections, not HTTP: it buffers what a client sends, asks
//! its `answer` function whether that is a whole request yet, and writes
//! the answer out as the client takes it.
//!
//! Bounds, whatever the clients do: at most `max_open` connections (when
//! full, the oldest one that has not sent a whole request is closed, so a
//! new client — a probe — always gets in), at most `max_request` bytes
//! buffered per connection, and `deadline` from accept for the whole
//! exchange (a request not whole by then gets the `late` answer if the
//! socket takes it at once, and is closed either way; an answer not taken
//! by then is dropped).

use crate::log::Log;
use crate::poll::{self, pollfd};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// At most one log line per this about failing accepts.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The loop's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once.
    pub max_open: usize,
    /// Bytes of request kept per connection.
    pub max_request: usize,
    /// Time from accept to the last byte of the answer.
    pub deadline: Duration,
}

/// Where a connection is.
enum State {
    /// Reading the request: the bytes so far (at most `max_request`).
    Reading(Vec<u8>),
    /// Writing the answer: the bytes, and how many are out.
    Writing(Vec<u8>, usize),
    /// Finished or failed: closed at the end of this turn.
    Done,
}

struct Conn {
    stream: TcpStream,
    until: Instant,
    state: State,
}

/// Runs the loop on `listener` for the life of the process. `answer`
/// gets a request's bytes so far and returns the response once they are a
/// whole request (it must answer by `max_request` bytes); `late` is
/// written to a client that did not finish its request in time.
pub fn run(
    listener: &TcpListener,
    limits: Limits,
    answer: impl Fn(&[u8]) -> Option<Vec<u8>>,
    late: &[u8],
    log: &Log,
) {
    let mut conns: Vec<Conn> = Vec::new(); // in the order accepted
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let mut scratch = vec![0u8; limits.max_request];
    let mut paused: Option<Instant> = None;
    let mut warned: Option<Instant> = None;
    loop {
        let now = Instant::now();
        paused = paused.filter(|until| *until > now);
        fds.clear();
        fds.push(poll::listening(listener, paused.is_some()));
        fds.extend(conns.iter().map(|c| match c.state {
            State::Reading(_) => pollfd(c.stream.as_raw_fd(), libc::POLLIN),
            _ => pollfd(c.stream.as_raw_fd(), libc::POLLOUT),
        }));
        // The oldest connection has the nearest deadline.
        let wake = conns.first().map(|c| c.until).into_iter().chain(paused);
        if !poll::wait(&mut fds, wake.min(), now) {
            continue;
        }
        for (conn, fd) in conns.iter_mut().zip(&fds[1..]) {
            if fd.revents != 0 {
                conn.step(&answer, &mut scratch);
            }
        }
        let now = Instant::now();
        for conn in conns.iter_mut().filter(|c| c.until <= now) {
            conn.expire(late);
        }
        conns.retain(|c| !matches!(c.state, State::Done));
        if fds[0].revents & libc::POLLIN != 0 {
            if let Err(e) = accept(listener, &mut conns, limits, now) {
                // Out of file descriptors and the like: make room, and
                // let the other side of the process have a go.
                make_room(&mut conns);
                paused = Some(now + poll::PAUSE);
                if warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    log.warn(&format!("http: accept: {e}"));
                    warned = Some(Instant::now());
                }
            }
        }
    }
}

/// Accepts what is waiting (a burst, see [`poll::accept_burst`]).
fn accept(
    listener: &TcpListener,
    conns: &mut Vec<Conn>,
    limits: Limits,
    now: Instant,
) -> io::Result<()> {
    poll::accept_burst(listener, |stream| {
        if conns.len() >= limits.max_open && !make_room(conns) {
            return; // every one is being answered: this one is closed
        }
        conns.push(Conn {
            stream,
            until: now + limits.deadline,
            state: State::Reading(Vec::new()),
        });
    })
}

/// Closes the oldest connection still sending its request; false when
/// there is none.
fn make_room(conns: &mut Vec<Conn>) -> bool {
    match conns
        .iter()
        .position(|c| matches!(c.state, State::Reading(_)))
    {
        Some(oldest) => {
            conns.remove(oldest);
            true
        }
        None => false,
    }
}

impl Conn {
    /// Does what the socket is ready for: read (and maybe answer) or write.
    fn step(&mut self, answer: &impl Fn(&[u8]) -> Option<Vec<u8>>, scratch: &mut [u8]) {
        let State::Reading(request) = &mut self.state else {
            self.write();
            return;
        };
        // Never 0: a full buffer has been answered (below).
        let room = scratch.len().saturating_sub(request.len());
        let new = match self.stream.read(&mut scratch[..room]) {
            Ok(n) if n > 0 => &scratch[..n],
            Err(e) if is_retry(&e) => return,
            _ => {
                // Hung up before a whole request, or failed.
                self.state = State::Done;
                return;
            }
        };
        request.extend_from_slice(new);
        let full = request.len() >= scratch.len();
        // A request head ends at a line feed: looking only then keeps a
        // client sending a byte per packet from costing a parse per byte.
        if !new.contains(&b'\n') && !full {
            return;
        }
        match answer(request) {
            Some(response) => {
                self.state = State::Writing(response, 0);
                self.write();
            }
            None if full => self.state = State::Done, // `answer` broke its promise
            None => {}
        }
    }

    /// Writes what the socket takes now; done when all is out.
    fn write(&mut self) {
        let State::Writing(response, sent) = &mut self.state else {
            return;
        };
        while *sent < response.len() {
            match self.stream.write(&response[*sent..]) {
                Ok(0) => break,
                Ok(n) => *sent += n,
                Err(e) if is_retry(&e) => return,
                Err(_) => break,
            }
        }
        self.state = State::Done;
    }

    /// The deadline passed: a request still coming gets `late` if the
    /// socket takes it at once; either way the connection ends.
    fn expire(&mut self, late: &[u8]) {
        if matches!(self.state, State::Reading(_)) {
            let _ = self.stream.write(late);
        }
        self.state = State::Done;
    }
}

fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Raises the process's soft limit on open files to `want` if it is
/// lower (within the hard limit; never lowers it); returns the soft limit
/// in force after.
pub fn raise_open_files(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024; // the usual default: assume no more
        }
        if limit.rlim_cur < want {
            let old = limit.rlim_cur;
            limit.rlim_cur = want.min(limit.rlim_max);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                limit.rlim_cur = old;
            }
        }
    }
    limit.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    /// A loop on a loopback port answering `ok` to a line, `big` to
    /// `max_request` bytes without one; the thread lives as long as the
    /// test process.
    fn start(max_open: usize, max_request: usize, deadline: Duration) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            max_open,
            max_request,
            deadline,
        };
        std::thread::spawn(move || {
            let answer = |r: &[u8]| match r.contains(&b'\n') {
                true => Some(b"ok\n".to_vec()),
                false => (r.len() >= max_request).then(|| b"big\n".to_vec()),
            };
            run(&listener, limits, answer, b"late\n", &Log::default());
        });
        addr
    }

    /// Everything the server sends until it closes (at most 10 s).
    fn rest(stream: &mut TcpStream) -> String {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = String::new();
        stream.read_to_string(&mut got).expect("closed within 10 s");
        got
    }

    #[test]
    fn when_full_the_oldest_unfinished_makes_room_for_a_new_client() {
        let addr = start(3, 64, Duration::from_secs(60));
        let mut idle: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let mut probe = TcpStream::connect(addr).unwrap();
        probe.write_all(b"hi\n").unwrap();
        assert_eq!(rest(&mut probe), "ok\n");
        // The first idle one was closed for it, without an answer.
        assert_eq!(rest(&mut idle[0]), "");
        let mut again = TcpStream::connect(addr).unwrap();
        again.write_all(b"hi\n").unwrap();
        assert_eq!(rest(&mut again), "ok\n");
    }

    #[test]
    fn the_deadline_counts_from_accept_not_from_the_last_byte() {
        let addr = start(8, 1024, Duration::from_millis(300));
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        // A byte every 50 ms, never a line, until an answer; at most 10 s.
        let mut got = Vec::new();
        for _ in 0..200 {
            match slow.read_to_end(&mut got) {
                Ok(_) => break,
                Err(e) if is_retry(&e) || e.kind() == io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
            if !got.is_empty() || slow.write_all(b"x").is_err() {
                let _ = slow.read_to_end(&mut got);
                break;
            }
        }
        assert_eq!(String::from_utf8_lossy(&got), "late\n");
    }

    #[test]
    fn a_full_buffer_is_answered() {
        let addr = start(8, 16, Duration::from_secs(60));
        let mut big = TcpStream::connect(addr).unwrap();
        big.write_all(&[b'x'; 16]).unwrap();
        assert_eq!(rest(&mut big), "big\n");
    }
}
