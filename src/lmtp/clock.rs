//! A connection's time limits (issue 18): LHLO within `lhlo_timeout` of
//! connecting; then, without progress, `idle_timeout` in a transaction and
//! the shorter `between_messages_timeout` outside one. A client that says
//! nothing thus gives up its slot after seconds, while Postfix, which
//! keeps an unused connection for 2 s (`lmtp_connection_cache_time_limit`)
//! and answers at once, never meets the limits outside a transaction; a
//! transaction keeps the RFC 5321 minimum of minutes. Only decides; the
//! server reads the clock and closes.

use super::Settings;
use std::time::{Duration, Instant};

/// The limits of one connection.
pub struct Clock {
    lhlo: Duration,
    in_transaction: Duration,
    between_messages: Duration,
    connected: Instant,
}

impl Clock {
    /// The limits of `settings` for a connection made at `connected`.
    pub fn new(settings: &Settings, connected: Instant) -> Clock {
        Clock {
            lhlo: settings.lhlo_timeout,
            in_transaction: settings.idle_timeout,
            between_messages: settings.idle_timeout.min(settings.between_messages_timeout),
            connected,
        }
    }

    /// Why the connection must close at `now`, if it must: `greeted` and
    /// `in_transaction` are the session's state, `last_input` its last
    /// progress.
    pub fn expired(
        &self,
        (greeted, in_transaction): (bool, bool),
        last_input: Instant,
        now: Instant,
    ) -> Option<&'static str> {
        if !greeted && now.saturating_duration_since(self.connected) >= self.lhlo {
            return Some("no LHLO in time");
        }
        let limit = match in_transaction {
            true => self.in_transaction,
            false => self.between_messages,
        };
        (now.saturating_duration_since(last_input) >= limit).then_some("idle timeout")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            listen: Vec::new(),
            socket_mode: 0o660,
            max_connections: 64,
            max_connections_per_peer: 32,
            max_recipients: 100,
            idle_timeout: Duration::from_secs(300),
            lhlo_timeout: Duration::from_secs(10),
            between_messages_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
        }
    }

    #[test]
    fn lhlo_comes_within_its_deadline_whatever_else_is_sent() {
        let t0 = Instant::now();
        let clock = Clock::new(&settings(), t0);
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(clock.expired((false, false), at(9), at(9)), None);
        // A NOOP a second before does not help: the deadline is from connecting.
        assert_eq!(
            clock.expired((false, false), at(9), at(10)),
            Some("no LHLO in time")
        );
        assert_eq!(clock.expired((true, false), at(9), at(10)), None);
    }

    #[test]
    fn outside_a_transaction_the_idle_limit_is_shorter() {
        let t0 = Instant::now();
        let clock = Clock::new(&settings(), t0);
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(
            clock.expired((true, false), at(1), at(31)),
            Some("idle timeout")
        );
        assert_eq!(clock.expired((true, true), at(1), at(31)), None);
        assert_eq!(
            clock.expired((true, true), at(1), at(301)),
            Some("idle timeout")
        );
        // An idle_timeout below it wins everywhere.
        let short = Settings {
            idle_timeout: Duration::from_secs(2),
            ..settings()
        };
        let clock = Clock::new(&short, t0);
        assert_eq!(
            clock.expired((true, false), at(1), at(3)),
            Some("idle timeout")
        );
    }
}
