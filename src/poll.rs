//! The small pieces both `poll(2)` loops share (the `[http]` listener's
//! and the recipient lookup's): a `pollfd`, a poll timeout that never
//! wakes just before a deadline, and taking the waiting connections.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// How long a loop pauses after a failed poll (it must not spin), and
/// accepting after an error such as EMFILE (the listening socket stays
/// readable).
pub const PAUSE: Duration = Duration::from_millis(100);

/// Connections accepted per wake-up at most, so a flood of connects does
/// not keep a loop from the connections it has.
const ACCEPT_BURST: usize = 256;

/// A `pollfd` asking for `events` on `fd`.
pub fn pollfd(fd: libc::c_int, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// The listener's entry in the poll set; while accepting pauses, a
/// negative descriptor, which poll(2) skips.
pub fn listening(listener: &TcpListener, paused: bool) -> libc::pollfd {
    pollfd(if paused { -1 } else { listener.as_raw_fd() }, libc::POLLIN)
}

/// poll(2) on `fds` until something is ready or `wake` (none: no
/// timeout); false when it failed: at once on a signal (EINTR), else
/// (ENOMEM) after [`PAUSE`]. The sockets are as they were either way.
pub fn wait(fds: &mut [libc::pollfd], wake: Option<Instant>, now: Instant) -> bool {
    let timeout = wake.map_or(-1, |t| millis_until(t, now));
    // SAFETY: `fds` is a live array of `fds.len()` pollfd structs.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
    if ready < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
        std::thread::sleep(PAUSE);
    }
    ready >= 0
}

/// Milliseconds from `now` to `t`, rounded up so the loop does not wake
/// just before a deadline and spin; at most a minute.
fn millis_until(t: Instant, now: Instant) -> libc::c_int {
    let ms = t
        .saturating_duration_since(now)
        .as_nanos()
        .div_ceil(1_000_000);
    ms.min(60_000) as libc::c_int
}

/// The next connection waiting on the non-blocking `listener`: `None`
/// when none waits. One the client gave up on before it was taken (or a
/// signal) is skipped; any other error is the caller's.
fn accept(listener: &TcpListener) -> io::Result<Option<TcpStream>> {
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

/// Accepts what waits on the non-blocking `listener`, up to
/// [`ACCEPT_BURST`], and hands each connection, made non-blocking, to
/// `take`.
pub fn accept_burst(listener: &TcpListener, mut take: impl FnMut(TcpStream)) -> io::Result<()> {
    for _ in 0..ACCEPT_BURST {
        let Some(stream) = accept(listener)? else {
            return Ok(());
        };
        if stream.set_nonblocking(true).is_ok() {
            take(stream);
        }
    }
    Ok(())
}
