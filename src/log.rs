//! Log lines: to syslog (facility mail, next to Postfix's own lines), to
//! standard error, or held back in memory.
//!
//! A [`Log`] is a value the front doors make and hand down (cheap to
//! clone, shared by threads); there is no process-wide logger. Pipe mode
//! holds lines back because Postfix reads a DSN code from the very first
//! bytes the command writes; the held lines follow it. Callers format
//! lines in Postfix's `name=value, ` style and never pass secrets.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

/// Where log lines go: the `[log]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A syslog socket (normally `/dev/log`), facility mail.
    Syslog(PathBuf),
    /// Standard error.
    Stderr,
}

enum Sink {
    Stderr,
    Syslog(Box<Logger<LoggerBackend, Formatter3164>>),
    Held(Vec<(Level, String)>),
}

/// How serious a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Normal events: deliveries, connections.
    Info,
    /// Something an administrator should look at.
    Warning,
    /// Something failed.
    Error,
}

/// A log; clones write to the same place.
#[derive(Clone)]
pub struct Log {
    sink: Arc<Mutex<Sink>>,
}

impl Default for Log {
    /// Standard error, until [`Log::to`] says otherwise.
    fn default() -> Log {
        Log::with(Sink::Stderr)
    }
}

impl Log {
    fn with(sink: Sink) -> Log {
        Log {
            sink: Arc::new(Mutex::new(sink)),
        }
    }

    /// A log that holds its lines until [`Log::release_held`] (pipe mode).
    pub fn held() -> Log {
        Log::with(Sink::Held(Vec::new()))
    }

    /// Sends lines to `target` from now on. When the syslog socket cannot
    /// be opened, falls back to standard error and says so there. Lines
    /// being held stay held when the target is standard error; with syslog
    /// they are sent there now.
    pub fn to(&self, target: &Target) {
        let sink = match target {
            Target::Stderr => Sink::Stderr,
            Target::Syslog(socket) => {
                let formatter = Formatter3164 {
                    facility: Facility::LOG_MAIL,
                    hostname: None,
                    process: "gitlab-mailgate".into(),
                    pid: std::process::id(),
                };
                match syslog::unix_custom(formatter, socket) {
                    Ok(logger) => Sink::Syslog(Box::new(logger)),
                    Err(e) => {
                        eprintln!(
                            "gitlab-mailgate: warning: syslog {}: {e}; logging to stderr",
                            socket.display()
                        );
                        Sink::Stderr
                    }
                }
            }
        };
        let mut current = self.lock();
        match (&mut *current, sink) {
            (Sink::Held(_), Sink::Stderr) => {}
            (Sink::Held(held), mut new) => {
                for (level, text) in std::mem::take(held) {
                    write(&mut new, level, &text);
                }
                *current = new;
            }
            (_, new) => *current = new,
        }
    }

    /// Writes the lines held so far to standard error and stops holding.
    pub fn release_held(&self) {
        let mut current = self.lock();
        if let Sink::Held(held) = std::mem::replace(&mut *current, Sink::Stderr) {
            for (level, text) in held {
                write(&mut current, level, &text);
            }
        }
    }

    /// Logs one line.
    pub fn line(&self, level: Level, text: &str) {
        let mut sink = self.lock();
        if let Sink::Stderr = *sink {
            // Standard error has a lock of its own: do not keep the other
            // connection threads waiting on this one during the write.
            drop(sink);
            to_stderr(level, text);
        } else {
            write(&mut sink, level, text);
        }
    }

    /// Logs an informational line.
    pub fn info(&self, text: &str) {
        self.line(Level::Info, text);
    }

    /// Logs a warning.
    pub fn warn(&self, text: &str) {
        self.line(Level::Warning, text);
    }

    /// Logs an error.
    pub fn error(&self, text: &str) {
        self.line(Level::Error, text);
    }

    /// Logs panics as errors (the front doors' last word on a bug).
    pub fn on_panic(&self) {
        let log = self.clone();
        std::panic::set_hook(Box::new(move |info| {
            log.error(&format!("internal error: {info}"));
        }));
    }

    /// A poisoned lock only means another thread panicked while logging;
    /// the data (a logger or lines) is still usable.
    fn lock(&self) -> std::sync::MutexGuard<'_, Sink> {
        self.sink.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One write per line, so lines from several threads never mix.
fn to_stderr(level: Level, text: &str) {
    let line = format!("gitlab-mailgate: {}{text}\n", prefix(level));
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

fn write(sink: &mut Sink, level: Level, text: &str) {
    match sink {
        Sink::Stderr => to_stderr(level, text),
        Sink::Held(lines) => lines.push((level, text.to_string())),
        Sink::Syslog(logger) => {
            let _ = match level {
                Level::Info => logger.info(text),
                Level::Warning => logger.warning(text),
                Level::Error => logger.err(text),
            };
        }
    }
}

/// Text from the network made safe for one log line: control characters
/// escaped, length bounded.
pub fn printable(s: &str) -> String {
    s.chars()
        .take(512)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn prefix(level: Level) -> &'static str {
    match level {
        Level::Info => "",
        Level::Warning => "warning: ",
        Level::Error => "error: ",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_controls() {
        assert_eq!(printable("a\r\nb\u{0}"), "a\\r\\nb\\u{0}");
    }

    #[test]
    fn held_lines_wait_for_release() {
        let log = Log::held();
        log.info("one");
        log.to(&Target::Stderr);
        assert!(matches!(&*log.lock(), Sink::Held(lines) if lines.len() == 1));
        log.release_held();
        assert!(matches!(&*log.lock(), Sink::Stderr));
    }
}
