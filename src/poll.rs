//! The small pieces both `poll(2)` loops share (the `[http]` listener's
//! and the recipient lookup's): a `pollfd`, a poll timeout that never
//! wakes just before a deadline, and taking one waiting connection.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

/// A `pollfd` asking for `events` on `fd`.
pub fn pollfd(fd: libc::c_int, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Milliseconds from `now` to `t`, rounded up so the loop does not wake
/// just before a deadline and spin; at most a minute.
pub fn millis_until(t: Instant, now: Instant) -> libc::c_int {
    let ms = t
        .saturating_duration_since(now)
        .as_nanos()
        .div_ceil(1_000_000);
    ms.min(60_000) as libc::c_int
}

/// The next connection waiting on the non-blocking `listener`: `None`
/// when none waits. One the client gave up on before it was taken (or a
/// signal) is skipped; any other error is the caller's.
pub fn accept(listener: &TcpListener) -> io::Result<Option<TcpStream>> {
    loop {
        match listener.accept() {
            Ok((stream, _)) => return Ok(Some(stream)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
}
