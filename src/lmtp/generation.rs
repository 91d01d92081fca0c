//! The configuration `serve` works with, one *generation* at a time, and
//! its reload on SIGHUP (issue 18): a connection keeps the generation it
//! was accepted under to its end, a new one gets the one in force, so a
//! delivery in flight finishes with the deliverer it started with.
//!
//! A reload reads the file again and builds a new delivery core. Its
//! GitLab client has read no secret yet, so new secrets and keys take
//! effect at once rather than within `SECRET_TTL`. Its guards start afresh:
//! the circuit breaker closed and the loop breaker's table empty. A reload
//! usually follows a fix (a new URL, secret or CA), and a breaker opened
//! by the fault would go on deferring mail for a cool-down after it; the
//! loop breaker then lets a loop post at most `loop_limit` more times,
//! once per reload. While connections of the old generation finish, both
//! cores post, each up to its own `max_in_flight`.
//!
//! A file that does not load is logged with its file:line:column and the
//! old generation stays in force. What cannot change in a running process
//! is logged as needing a restart: the listening sockets (`[lmtp] listen`,
//! `socket_mode`, `[http] listen`, `[lookup]`).

use crate::config::Config;
use crate::deliver::Deliverer;
use crate::gitlab::Client;
use crate::health::Health;
use crate::log::Log;
use crate::observe::Observer;
use std::sync::Arc;

/// One loaded configuration and the delivery core built from it.
pub struct Generation {
    /// The checked configuration.
    pub config: Arc<Config>,
    /// The delivery core for it, with its own GitLab client and guards.
    pub deliverer: Arc<Deliverer>,
}

impl Generation {
    /// Builds the delivery core for `config`, reporting to `observer`.
    pub fn new(config: Arc<Config>, observer: Observer) -> Result<Generation, String> {
        let deliverer = Deliverer::new(config.clone(), observer)?.with_loop_breaker();
        Ok(Generation {
            config,
            deliverer: Arc::new(deliverer),
        })
    }

    /// Reads the configuration file again: the next generation, or `None`
    /// (logged) when it does not load and this one stays in force.
    /// `health` is pointed at the new GitLab client and mailboxes.
    pub fn reload(&self, log: &Log, health: &Health) -> Option<Generation> {
        let path = &self.config.path;
        log.info(&format!(
            "SIGHUP: reading the configuration {}",
            path.display()
        ));
        let kept = |why: &dyn std::fmt::Display| -> Option<Generation> {
            log.error(&format!(
                "configuration not reloaded, the one in force stays: {why}"
            ));
            None
        };
        let config = match Config::load(path) {
            Ok(c) => Arc::new(c),
            Err(e) => return kept(&e),
        };
        let observer = self.deliverer.observer().clone();
        let next = match Generation::new(config.clone(), observer) {
            Ok(next) => next,
            Err(e) => return kept(&e),
        };
        if let Ok(client) = Client::new(&config.gitlab) {
            health.retarget(client, config.mailboxes.clone());
        }
        for what in self.needs_restart(&config) {
            log.warn(&format!(
                "{what} changed: takes effect only after a restart; the sockets stay as they are"
            ));
        }
        if config.log_target != self.config.log_target {
            log.to(&config.log_target);
        }
        log.info("configuration reloaded: new connections use it, open ones finish with theirs");
        Some(next)
    }

    /// The settings of `new` that differ from this generation's and that a
    /// running server cannot apply.
    fn needs_restart(&self, new: &Config) -> Vec<&'static str> {
        let old = &self.config;
        let mut changed = Vec::new();
        if old.lmtp.listen != new.lmtp.listen {
            changed.push("[lmtp] listen");
        }
        if old.lmtp.socket_mode != new.lmtp.socket_mode {
            changed.push("[lmtp] socket_mode");
        }
        if old.http.listen != new.http.listen {
            changed.push("[http] listen");
        }
        if old.lookup != new.lookup {
            changed.push("[lookup]");
        }
        changed
    }
}
