//! The LMTP server (`gitlab-mailgate serve`): loads the configuration,
//! listens (see `listen`), and runs one thread per connection that drives
//! a `Session` and hands finished messages to the delivery core.
//!
//! Limits: `max_connections` slots, shared out by `slots` (a new client
//! takes the slot of the connection idle longest outside a transaction,
//! which gets `421 4.4.2`; `421 4.3.2` when every slot is in use; one TCP
//! address holds at most `max_connections_per_peer`). Without progress —
//! no command completed, no message bytes — a connection is closed with
//! `421 4.4.2` after `idle_timeout` in a transaction and after the shorter
//! `between_messages_timeout` outside one, so a client trickling a command
//! byte by byte is dropped; LHLO must be done `lhlo_timeout` after connecting.
//! On SIGTERM or SIGINT it stops accepting, lets transactions in flight
//! finish for up to `shutdown_grace`, answers `421 4.3.2` to the others
//! and exits 0; a second signal exits at once. SIGHUP reloads the
//! configuration (see `generation`); it never ends the server.
//! Each connection is `connection`'s: a connection that drops in the
//! middle of a message posts nothing, and the message being received is
//! kept in a `spool::Writer` (a temporary file beyond `spool::IN_MEMORY`
//! bytes), so memory per connection stays bounded whatever its size.

use super::connection::{line, send, serve, Context, TICK};
use super::generation::Generation;
use super::listen::{self, Bound, Stream};
use super::slots::{self, Slots};
use crate::config::Config;
use crate::gitlab::Client;
use crate::health::Health;
use crate::log::Log;
use crate::metrics::Metrics;
use crate::observe::Observer;
use crate::spool::Spool;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::io;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Extra time after `shutdown_grace` for connections to send their 421.
const DRAIN_MARGIN: Duration = Duration::from_secs(2);

/// What every connection thread shares.
struct Server {
    log: Log,
    hostname: String,
    health: Arc<Health>,
    /// The configuration new connections get; SIGHUP replaces it.
    current: Mutex<Arc<Generation>>,
    slots: Arc<Slots>,
    /// Connection threads running now (evicted ones until they close).
    /// Where large messages are kept while being received and posted.
    spool: Spool,
    active: AtomicUsize,
    /// Set when shutdown began.
    stopping: OnceLock<Instant>,
}

impl Server {
    fn current(&self) -> Arc<Generation> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// SIGHUP: the next generation, when the file loads.
    fn reload(&self) {
        if let Some(next) = self.current().reload(&self.log, &self.health) {
            *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        }
    }
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

/// The first line `serve` logs: what runs, for which mailboxes, against
/// which GitLab; what an administrator reading the log needs first. The
/// URL without user information, query or fragment: never a secret.
fn banner(config: &Config) -> String {
    let mailboxes: Vec<String> = config
        .mailboxes
        .iter()
        .map(|m| format!("{} <{}>", m.kind.name(), m.template))
        .collect();
    let url = &config.gitlab.url;
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!(
        "gitlab-mailgate {} starting: mailboxes {}; GitLab {scheme}://{host}{path}",
        env!("CARGO_PKG_VERSION"),
        mailboxes.join(", "),
    )
}

fn start(config: Arc<Config>, log: &Log) -> Result<(), String> {
    log.info(&banner(&config));
    let kinds: Vec<_> = config.mailboxes.iter().map(|m| m.kind).collect();
    let metrics = Arc::new(Metrics::new(&kinds));
    let health = Arc::new(Health::default());
    let observer = Observer::new(log.clone()).with(metrics.clone(), health.clone());
    let generation = Generation::new(config.clone(), observer)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT] {
        // The first signal sets the flag; one more while stopping exits.
        signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(signal, stop.clone()))
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    // SIGHUP's default action would end the server in mid-delivery.
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(SIGHUP, reload.clone())
        .map_err(|e| format!("cannot handle signal {SIGHUP}: {e}"))?;
    let lmtp = &config.lmtp;
    let sockets = listen::open(&lmtp.listen, lmtp.socket_mode, config.http.listen)?;
    let listeners = sockets.lmtp;
    for l in &listeners {
        l.set_nonblocking()
            .map_err(|e| format!("{}: cannot set non-blocking: {e}", l.name))?;
    }
    let server = Arc::new(Server {
        log: log.clone(),
        hostname: hostname(),
        health: health.clone(),
        current: Mutex::new(Arc::new(generation)),
        slots: Slots::new(),
        active: AtomicUsize::new(0),
        spool: Spool::from_env(),
        stopping: OnceLock::new(),
    });
    let asked = server.clone();
    let route = move |address: &str| {
        let generation = asked.current();
        let route = generation.deliverer.look_up(address)?;
        Some(route.mailbox.kind.name().to_string())
    };
    crate::lookup::start(&config.lookup, route, log)?;
    if crate::http::start(&config.http, sockets.http, &health, &metrics, log)?.is_some() {
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
    accept_loop(&listeners, &server, &stop, &reload);
    health.set_accepting(false);

    let since = *server.stopping.get_or_init(Instant::now);
    listen::notify("STOPPING=1", log);
    drop(listeners);
    let busy = server.active.load(Ordering::SeqCst);
    server
        .log
        .info(&format!("stopping: no new connections, {busy} open"));
    let grace = server.current().config.lmtp.shutdown_grace;
    while server.active.load(Ordering::SeqCst) > 0 && since.elapsed() < grace + DRAIN_MARGIN {
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

/// Accepts connections on all listeners until `stop` is set; reloads the
/// configuration when `reload` is set.
fn accept_loop(listeners: &[Bound], server: &Arc<Server>, stop: &AtomicBool, reload: &AtomicBool) {
    let mut fds: Vec<libc::pollfd> = listeners
        .iter()
        .map(|l| libc::pollfd {
            fd: l.fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while !stop.load(Ordering::SeqCst) {
        if reload.swap(false, Ordering::SeqCst) {
            server.reload();
        }
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
    let generation = server.current();
    let lmtp = &generation.config.lmtp;
    if let Err(e) = stream.configure(TICK, lmtp.idle_timeout) {
        server.log.warn(&format!("{peer}: {e}"));
        return;
    }
    let limits = slots::Limits {
        total: lmtp.max_connections,
        per_peer: lmtp.max_connections_per_peer,
    };
    let admitted = match server.slots.admit(stream.peer_ip(), &peer, limits) {
        Ok(admitted) => admitted,
        Err(reply) => {
            server.log.warn(&format!("{}, refused {peer}", reply.text));
            let _ = stream.configure(TICK, TICK);
            let _ = send(&mut stream, &mut line(&reply));
            return;
        }
    };
    for victim in &admitted.evicted {
        server.log.info(&format!(
            "connection slots taken: closing the idle connection from {victim} for {peer}"
        ));
    }
    let held = admitted.held;
    server.active.fetch_add(1, Ordering::SeqCst);
    let active = Active(server.clone());
    let spawned = std::thread::Builder::new()
        .name("lmtp".into())
        .spawn(move || {
            let server = &active.0;
            let ctx = Context {
                log: &server.log,
                hostname: &server.hostname,
                spool: &server.spool,
                stopping: &server.stopping,
            };
            serve(stream, &peer, &ctx, &generation, &held)
        });
    if let Err(e) = spawned {
        server
            .log
            .error(&format!("cannot start a connection thread: {e}"));
    }
}

/// This machine's name for the greeting.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
