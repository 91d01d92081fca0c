//! The pipe front door: `gitlab-mailgate deliver RECIPIENT...` run by
//! Postfix's `pipe(8)`, message on standard input.
//!
//! The exit status is the interface: 0 sent, 75 deferred, 67 unknown
//! user, 69 bounced, and nothing else, ever — a panic, a bad config or an
//! unreadable secret is 75, and so is running out of time, since Postfix
//! bounces on its own `command_time_limit`. The DSN (`4.4.1 text`) is the
//! first thing written; log lines are held back until after it.
//!
//! The message is read from standard input into a `spool::Writer`, so a
//! large one is kept in an unlinked temporary file (`$TMPDIR`, else
//! `/var/tmp`), not in memory; no more than `max_message_size` bytes of it
//! are kept — a larger message is read to its end and refused.

use crate::config::{Config, DEFAULT_PIPE_DEADLINE};
use crate::deliver::Deliverer;
use crate::log::Log;
use crate::observe::Observer;
use crate::outcome::{Outcome, Temporary};
use crate::spool::{Spool, Writer};
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The single final report: whoever writes it first (the delivery or the
/// deadline watchdog) exits the process.
#[derive(Clone)]
struct Finish {
    done: Arc<Mutex<bool>>,
    log: Log,
}

/// What Postfix's pipe(8) told us about the message on standard input.
pub struct Envelope<'a> {
    /// The envelope sender; `None`: an old master.cf without `--sender`.
    pub sender: Option<&'a str>,
    /// Postfix's queue id, for the log lines.
    pub queue_id: Option<&'a str>,
    /// The envelope recipients.
    pub recipients: &'a [String],
}

/// Runs pipe mode and returns the sysexits status.
pub fn run(config_path: &Path, envelope: &Envelope) -> ExitCode {
    // Postfix's queue ids are letters and digits; anything else is no id.
    let queue_id = envelope.queue_id.filter(|id| {
        !id.is_empty() && id.len() <= 32 && id.chars().all(|c| c.is_ascii_alphanumeric())
    });
    let (sender, recipients) = (envelope.sender, envelope.recipients);
    let log = Log::held();
    log.on_panic();
    let finish = Finish {
        done: Arc::default(),
        log: log.clone(),
    };
    let received = Instant::now();
    // Armed before anything can block (the configuration or a secret on a
    // hung mount): Postfix bounces when its own time limit passes first.
    let deadline = Deadline::arm(
        received,
        DEFAULT_PIPE_DEADLINE,
        recipients.to_vec(),
        queue_id.map(str::to_string),
        Observer::new(log.clone()),
        finish.clone(),
    );
    let outcome = std::panic::catch_unwind(|| {
        deliver(
            config_path,
            sender,
            queue_id,
            recipients,
            received,
            &finish,
            &deadline,
        )
    })
    .unwrap_or_else(|_| Outcome::Temporary(Temporary::Local("internal error".into())));
    ExitCode::from(finish.exit(&outcome))
}

#[allow(clippy::too_many_arguments)] // one run's whole context, passed once
fn deliver(
    config_path: &Path,
    sender: Option<&str>,
    queue_id: Option<&str>,
    recipients: &[String],
    received: Instant,
    finish: &Finish,
    deadline: &Deadline,
) -> Outcome {
    let log = &finish.log;
    let config = match Config::load(config_path) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            log.error(&e.to_string());
            return Outcome::Temporary(Temporary::Local("configuration error, see the log".into()));
        }
    };
    log.to(&config.log_target);
    deadline.set(config.pipe_deadline);
    let observer = Observer::new(log.clone());
    let deliverer = match Deliverer::new(config.clone(), observer.clone()) {
        Ok(d) => d,
        Err(e) => {
            log.error(&e);
            return Outcome::Temporary(Temporary::Local(e));
        }
    };

    let message = match read_message(Spool::from_env().writer(), config.max_message_size) {
        Ok(m) => m,
        Err(e) => return Outcome::Temporary(Temporary::Local(format!("reading the message: {e}"))),
    };
    let size = match &message {
        Input::Whole(m) => m.len(),
        Input::TooLarge(size) => *size,
    };
    observer.message(queue_id, sender.unwrap_or(""), size, recipients.len());

    let mut outcomes = Vec::with_capacity(recipients.len());
    let mut routes = Vec::with_capacity(recipients.len());
    for r in recipients {
        match deliverer.route(sender, r, queue_id) {
            Ok(route) => routes.push(route),
            Err(o) => outcomes.push(o),
        }
    }
    let from = sender.unwrap_or_default();
    outcomes.extend(match message {
        Input::Whole(m) => match m.finish() {
            Ok(m) => deliverer.deliver(from, queue_id, &m, &routes, received),
            Err(e) => deliverer.not_stored(queue_id, &routes, &e),
        },
        Input::TooLarge(_) => deliverer.too_large(from, queue_id, &routes),
    });
    Outcome::combine(&outcomes)
}

/// What came on standard input.
enum Input {
    /// The message, at most the limit.
    Whole(Writer),
    /// Over the limit (this many bytes): read to its end and not kept.
    TooLarge(usize),
}

/// Reads the message into `kept`, up to `limit` bytes; beyond that reads
/// the rest so Postfix sees us take the whole message, keeping none of it.
fn read_message(mut kept: Writer, limit: usize) -> std::io::Result<Input> {
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => return Ok(Input::Whole(kept)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if kept.len() + n > limit {
            let rest = std::io::copy(&mut stdin, &mut std::io::sink()).unwrap_or(0);
            let size = (kept.len() + n).saturating_add(usize::try_from(rest).unwrap_or(0));
            return Ok(Input::TooLarge(size));
        }
        kept.write(&buf[..n]);
    }
}

/// The run's deadline, watched by a thread of its own: when it passes,
/// the run exits with a deferral. Postfix then defers every recipient of
/// this run, so each is logged so.
struct Deadline {
    /// Milliseconds after the start; the configuration may change it.
    after_ms: Arc<AtomicU64>,
}

impl Deadline {
    fn arm(
        started: Instant,
        after: Duration,
        recipients: Vec<String>,
        queue_id: Option<String>,
        observer: Observer,
        finish: Finish,
    ) -> Deadline {
        let after_ms = Arc::new(AtomicU64::new(millis(after)));
        let watched = after_ms.clone();
        std::thread::spawn(move || {
            // Bounded by the deadline itself; looks again every tick so a
            // new deadline from the configuration takes effect.
            while millis(started.elapsed()) < watched.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let outcome = Outcome::Temporary(Temporary::Deadline);
            for r in &recipients {
                observer.deferred(queue_id.as_deref(), r, &outcome);
            }
            std::process::exit(finish.exit(&outcome).into());
        });
        Deadline { after_ms }
    }

    /// The configured deadline, counted from the start of the run.
    fn set(&self, after: Duration) {
        self.after_ms.store(millis(after), Ordering::SeqCst);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Finish {
    /// Writes the DSN line (not for success) and the held log lines, once;
    /// returns the exit status. A second caller waits forever: the first
    /// one is about to exit the process.
    fn exit(&self, outcome: &Outcome) -> u8 {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        if *done {
            drop(done);
            loop {
                std::thread::park();
            }
        }
        *done = true;
        write_dsn(outcome);
        self.log.release_held();
        outcome.exit_code()
    }
}

/// `pipe(8)` ran us with arguments clap cannot parse: a broken master.cf
/// entry. Clap's own exit status 2 would bounce; this defers, with the DSN
/// first and clap's explanation on standard error.
pub fn bad_command_line(error: &clap::Error) -> ExitCode {
    let outcome = Outcome::Temporary(Temporary::BadCommandLine);
    write_dsn(&outcome);
    eprintln!("{error}");
    ExitCode::from(outcome.exit_code())
}

/// Writes the outcome's DSN line, if it has one, and flushes it: Postfix
/// reads it from the very first bytes of our output.
fn write_dsn(outcome: &Outcome) {
    if let Some(dsn) = outcome.dsn() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{dsn}");
        let _ = out.flush();
    }
}
