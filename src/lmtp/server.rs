//! The LMTP server (`gitlab-mailgate serve`): loads the configuration,
//! listens (see `listen`), and runs one thread per connection that drives
//! a `Session` and hands finished messages to the delivery core.
//!
//! Limits: `max_connections` at once (more get `421 4.3.2`), `idle_timeout`
//! without progress — no command completed, no message bytes — (then
//! `421 4.4.2`), so a client trickling a command byte by byte is dropped.
//! On SIGTERM or SIGINT it stops accepting, lets transactions in flight
//! finish for up to `shutdown_grace`, answers `421 4.3.2` to the others
//! and exits 0; a second signal exits at once.
//! A connection that drops in the middle of a message posts nothing.
//! The message being received is kept in a `spool::Writer` (a temporary
//! file beyond `spool::IN_MEMORY` bytes), so memory per connection stays
//! bounded whatever the message's size.

use super::listen::{self, Bound, Stream};
use super::session::{Action, Decision, Limits, Session, Transaction};
use crate::config::Config;
use crate::deliver::Deliverer;
use crate::gitlab::Client;
use crate::health::Health;
use crate::log::Log;
use crate::metrics::Metrics;
use crate::observe::Observer;
use crate::outcome::Outcome;
use crate::reply::*;
use crate::spool::{Spool, Writer};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How often blocked reads and the accept loop look at the stop flag.
const TICK: Duration = Duration::from_millis(200);
/// Bytes read from a client at once.
const READ_SIZE: usize = 64 * 1024;
/// Extra time after `shutdown_grace` for connections to send their 421.
const DRAIN_MARGIN: Duration = Duration::from_secs(2);

/// What every connection thread shares.
struct Server {
    deliverer: Arc<Deliverer>,
    log: Log,
    hostname: String,
    limits: Limits,
    max_connections: usize,
    idle_timeout: Duration,
    grace: Duration,
    /// Where large messages are kept while being received and posted.
    spool: Spool,
    /// Connections being served now.
    active: AtomicUsize,
    /// Set when shutdown began.
    stopping: OnceLock<Instant>,
}

/// Counts a connection as active until dropped (even by a panic).
struct Active(Arc<Server>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs the server until SIGTERM/SIGINT; exit status 0 after a clean
/// shutdown, 1 when it cannot start.
pub fn run(config_path: &Path) -> ExitCode {
    let config = match Config::load(config_path) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("gitlab-mailgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log = Log::default();
    log.to(&config.log_target);
    log.on_panic();
    match start(config, &log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log.error(&e);
            ExitCode::FAILURE
        }
    }
}

fn start(config: Arc<Config>, log: &Log) -> Result<(), String> {
    let kinds: Vec<_> = config.mailboxes.iter().map(|m| m.kind).collect();
    let metrics = Arc::new(Metrics::new(&kinds));
    let health = Arc::new(Health::default());
    let observer = Observer::new(log.clone()).with(metrics.clone(), health.clone());
    let deliverer = Arc::new(Deliverer::new(config.clone(), observer)?.with_loop_breaker());
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT] {
        // The first signal sets the flag; one more while stopping exits.
        signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(signal, stop.clone()))
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    let lmtp = &config.lmtp;
    let listeners = listen::open(&lmtp.listen, lmtp.socket_mode)?;
    for l in &listeners {
        l.set_nonblocking()
            .map_err(|e| format!("{}: cannot set non-blocking: {e}", l.name))?;
    }
    let server = Arc::new(Server {
        log: log.clone(),
        deliverer,
        hostname: hostname(),
        limits: Limits {
            max_message_size: config.max_message_size,
            max_recipients: lmtp.max_recipients,
        },
        max_connections: lmtp.max_connections,
        idle_timeout: lmtp.idle_timeout,
        grace: lmtp.shutdown_grace,
        spool: Spool::from_env(),
        active: AtomicUsize::new(0),
        stopping: OnceLock::new(),
    });
    if crate::http::start(&config.http, &health, &metrics, log)?.is_some() {
        let client = Client::new(&config.gitlab)?;
        health.start(client, config.mailboxes.clone(), log.clone())?;
    }
    if let Err(e) = server.spool.check() {
        // Small messages still go through; large ones are deferred.
        log.warn(&format!(
            "{e}: messages over {} bytes will be deferred",
            crate::spool::IN_MEMORY
        ));
    }
    let names: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
    log.info(&format!("listening on {}", names.join(", ")));
    listen::notify("READY=1", log);

    health.set_accepting(true);
    accept_loop(&listeners, &server, &stop);
    health.set_accepting(false);

    let since = *server.stopping.get_or_init(Instant::now);
    listen::notify("STOPPING=1", log);
    drop(listeners);
    let busy = server.active.load(Ordering::SeqCst);
    server
        .log
        .info(&format!("stopping: no new connections, {busy} open"));
    while server.active.load(Ordering::SeqCst) > 0 && since.elapsed() < server.grace + DRAIN_MARGIN
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = server.active.load(Ordering::SeqCst);
    if left > 0 {
        server.log.warn(&format!(
            "{left} connections still busy after shutdown_grace; exiting anyway"
        ));
    }
    server.log.info("stopped");
    Ok(())
}

/// Accepts connections on all listeners until `stop` is set.
fn accept_loop(listeners: &[Bound], server: &Arc<Server>, stop: &AtomicBool) {
    let mut fds: Vec<libc::pollfd> = listeners
        .iter()
        .map(|l| libc::pollfd {
            fd: l.fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while !stop.load(Ordering::SeqCst) {
        // SAFETY: `fds` is a live array of `fds.len()` pollfd structs.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 200) };
        if ready < 0 {
            // EINTR (a signal) or worse: look at the flag, never spin.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        for (fd, listener) in fds.iter().zip(listeners) {
            if fd.revents == 0 {
                continue;
            }
            // Bounded: the backlog is finite, and stop ends it too.
            for _ in 0..1024 {
                match listener.accept() {
                    Ok((stream, peer)) => admit(stream, peer, server),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a bit
                        // rather than spin on a socket poll keeps flagging.
                        server
                            .log
                            .warn(&format!("accept on {}: {e}", listener.name));
                        std::thread::sleep(TICK);
                        break;
                    }
                }
            }
        }
    }
}

/// Starts serving `stream` on its own thread, or turns it away.
fn admit(mut stream: Stream, peer: String, server: &Arc<Server>) {
    if let Err(e) = stream.configure(TICK, server.idle_timeout) {
        server.log.warn(&format!("{peer}: {e}"));
        return;
    }
    if server.active.load(Ordering::SeqCst) >= server.max_connections {
        server
            .log
            .warn(&format!("too many connections, refused {peer}"));
        let _ = stream.configure(TICK, TICK);
        let reply = Reply::new(NOT_AVAILABLE, E_SHUTTING_DOWN, "too many connections");
        let _ = send(&mut stream, &mut line(&reply));
        return;
    }
    server.active.fetch_add(1, Ordering::SeqCst);
    let active = Active(server.clone());
    let spawned = std::thread::Builder::new()
        .name("lmtp".into())
        .spawn(move || serve(stream, &peer, &active.0));
    if let Err(e) = spawned {
        server
            .log
            .error(&format!("cannot start a connection thread: {e}"));
    }
}

/// One connection, from greeting to close.
fn serve(mut stream: Stream, peer: &str, server: &Server) {
    let _counted = server.deliverer.observer().connection();
    server.log.info(&format!("connect from {peer}"));
    let messages = converse(&mut stream, peer, server);
    server
        .log
        .info(&format!("disconnect from {peer} messages={messages}"));
}

/// Runs the session over `stream`; returns how many messages it took.
fn converse(stream: &mut Stream, peer: &str, server: &Server) -> usize {
    let deliverer = &server.deliverer;
    let observer = deliverer.observer();
    let mut session = Session::new(&server.hostname, server.limits, |sender, rcpt| {
        deliverer.route(Some(sender), rcpt)
    });
    let mut messages = 0;
    // The message being received, begun by its first bytes.
    let mut message: Option<Writer> = None;
    let mut out = session.greeting();
    if send(stream, &mut out).is_err() {
        return 0;
    }
    let mut buf = vec![0; READ_SIZE];
    let mut last_input = Instant::now();
    loop {
        if let Some(reply) = must_close(server, session.in_transaction(), last_input) {
            if reply.enhanced == Some(E_BAD_CONNECTION) {
                server
                    .log
                    .info(&format!("idle timeout, closing the connection from {peer}"));
            }
            let _ = send(stream, &mut line(&reply));
            return messages;
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => {
                if session.in_transaction() {
                    server
                        .log
                        .info(&format!("lost connection from {peer} in a transaction"));
                }
                return messages;
            }
            Ok(n) => n,
            Err(e) if is_tick(&e) => continue,
            Err(e) => {
                server
                    .log
                    .info(&format!("lost connection from {peer}: {e}"));
                return messages;
            }
        };
        let mut actions: VecDeque<Action> = session.feed(&buf[..n]).into();
        // The idle clock restarts on progress only: a command answered or
        // message bytes read. Bytes of a command line that never ends do
        // not count, or one byte a second would hold the connection forever.
        let progress = !actions.is_empty() || session.reading_message();
        while let Some(action) = actions.pop_front() {
            match action {
                Action::Send(bytes) => out.extend_from_slice(&bytes),
                Action::Append(bytes) => message
                    .get_or_insert_with(|| server.spool.writer())
                    .write(&bytes),
                Action::Abandon => message = None,
                Action::Log(text) => server.log.info(&text),
                Action::Decided(Decision::RecipientLimit) => observer.recipient_limit(),
                Action::Decided(Decision::TooLarge {
                    sender,
                    recipient,
                    size,
                }) => {
                    let to = recipient.as_ref().map(|(r, kind)| (r.as_str(), *kind));
                    observer.too_large(&sender, to, size)
                }
                Action::Deliver(t) => {
                    // Replies so far go out before the (slow) delivery; a
                    // client that is gone by now gets nothing delivered,
                    // since it will send the message again anyway.
                    if send(stream, &mut out).is_err() {
                        return messages;
                    }
                    let kept = message.take().unwrap_or_else(|| server.spool.writer());
                    let outcomes = deliver(deliverer, &t, kept);
                    actions.extend(session.delivered(&outcomes));
                    messages += 1;
                }
                Action::Close => {
                    let _ = send(stream, &mut out);
                    return messages;
                }
            }
        }
        if send(stream, &mut out).is_err() {
            return messages;
        }
        if progress {
            last_input = Instant::now();
        }
    }
}

/// Delivers the message the session just completed, kept in `kept`; a
/// message that could not be kept, or not exactly as the session counted
/// it, is deferred.
fn deliver(deliverer: &Deliverer, t: &Transaction, kept: Writer) -> Vec<Outcome> {
    deliverer
        .observer()
        .message(&t.sender, t.size, t.routes.len());
    match kept.finish() {
        Ok(m) if m.len() == t.size => deliverer.deliver(&t.sender, &m, &t.routes, Instant::now()),
        Ok(m) => {
            let why = format!("internal error: {} bytes kept of {}", m.len(), t.size);
            deliverer.not_stored(&t.routes, &why)
        }
        Err(e) => deliverer.not_stored(&t.routes, &e),
    }
}

/// The reply to close with now, if any: shutdown (at once when no
/// transaction is open, else after the grace time) or idle timeout.
fn must_close(server: &Server, in_transaction: bool, last_input: Instant) -> Option<Reply> {
    if let Some(since) = server.stopping.get() {
        if !in_transaction || since.elapsed() >= server.grace {
            return Some(Reply::new(NOT_AVAILABLE, E_SHUTTING_DOWN, "shutting down"));
        }
    }
    (last_input.elapsed() >= server.idle_timeout)
        .then(|| Reply::new(NOT_AVAILABLE, E_BAD_CONNECTION, "idle timeout"))
}

/// A read that timed out only so the loop can look at the clock.
fn is_tick(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn line(reply: &Reply) -> Vec<u8> {
    let mut bytes = Vec::new();
    reply.write_to(&mut bytes);
    bytes
}

/// Writes and empties `out`.
fn send(stream: &mut Stream, out: &mut Vec<u8>) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let result = stream.write_all(out).and_then(|_| stream.flush());
    out.clear();
    result
}

/// This machine's name for the greeting.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
