//! Log lines: to syslog (facility mail, next to Postfix's own lines), to
//! standard error, or held back in memory.
//!
//! Pipe mode holds lines back because Postfix reads a DSN code from the
//! very first bytes the command writes; the held lines follow it. Callers
//! format lines in Postfix's `name=value, ` style and never pass secrets.

use crate::config::LogTarget;
use std::io::Write;
use std::sync::Mutex;
use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

enum Sink {
    Stderr,
    Syslog(Box<Logger<LoggerBackend, Formatter3164>>),
    Held(Vec<(Level, String)>),
}

static SINK: Mutex<Sink> = Mutex::new(Sink::Stderr);

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

/// Sends lines to `target` from now on. When the syslog socket cannot be
/// opened, falls back to standard error and says so there. Lines being
/// held stay held when the target is standard error; with syslog they are
/// sent there now.
pub fn init(target: &LogTarget) {
    let sink = match target {
        LogTarget::Stderr => Sink::Stderr,
        LogTarget::Syslog(socket) => {
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
    let mut current = lock(&SINK);
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

/// Holds lines in memory until [`release_held`] (pipe mode).
pub fn hold() {
    *lock(&SINK) = Sink::Held(Vec::new());
}

/// Writes the lines held so far to standard error and stops holding.
pub fn release_held() {
    let mut current = lock(&SINK);
    if let Sink::Held(held) = std::mem::replace(&mut *current, Sink::Stderr) {
        for (level, text) in held {
            write(&mut current, level, &text);
        }
    }
}

/// Logs one line. Before [`init`], lines go to standard error.
pub fn line(level: Level, text: &str) {
    let mut sink = lock(&SINK);
    if let Sink::Stderr = *sink {
        // Standard error has a lock of its own: do not keep the other
        // connection threads waiting on this one during the write.
        drop(sink);
        to_stderr(level, text);
    } else {
        write(&mut sink, level, text);
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

/// Logs an informational line.
pub fn info(text: &str) {
    line(Level::Info, text);
}

/// Logs a warning.
pub fn warn(text: &str) {
    line(Level::Warning, text);
}

/// Logs an error.
pub fn error(text: &str) {
    line(Level::Error, text);
}

fn prefix(level: Level) -> &'static str {
    match level {
        Level::Info => "",
        Level::Warning => "warning: ",
        Level::Error => "error: ",
    }
}

/// A poisoned lock only means another thread panicked while logging; the
/// data (a logger or lines) is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn printable_escapes_controls() {
        assert_eq!(printable("a\r\nb\u{0}"), "a\\r\\nb\\u{0}");
    }
}
