//! Liveness and readiness of `serve`, as the `[http]` listener reports
//! them (`/livez`, `/readyz`): a [`Health`] value that `serve` makes and
//! shares with the observer (which tells it what GitLab answered) and the
//! listener (which reads it).
//!
//! Live: the accept loops run. Ready: live, every mailbox's secret or key
//! loads, and GitLab is not known to be failing — the last answer it gave
//! (to a real post, or to a probe) was not a temporary failure, as
//! `outcome` classifies it. The probe is `check`'s request with an invalid
//! token; it is sent by one background thread, only when nothing was heard
//! from GitLab for [`PROBE_EVERY`], so `/readyz` itself never causes a
//! request.

use crate::gitlab::{Client, SECRET_TTL};
use crate::log::Log;
use crate::mailbox::Mailbox;
use crate::outcome::{Probe, Readiness};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The longest GitLab goes unasked while `serve` has an `[http]` listener.
pub const PROBE_EVERY: Duration = Duration::from_secs(30);

/// How often the background thread looks at the clock.
const TICK: Duration = Duration::from_secs(1);

/// What `/livez` and `/readyz` answer from.
#[derive(Default)]
pub struct Health {
    /// True while the accept loops run.
    accepting: AtomicBool,
    /// The last word from GitLab: when, and what was wrong (`None`: fine).
    gitlab: Mutex<Option<(Instant, Option<String>)>>,
    /// Secrets or keys that did not load at the last look, one line each.
    credentials: Mutex<Vec<String>>,
    /// The client and mailboxes probed and checked: those of the
    /// configuration in force (a reload replaces them).
    target: Mutex<Option<(Client, Vec<Mailbox>)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Health {
    /// Called when the accept loops start (`true`) and stop (`false`).
    pub fn set_accepting(&self, on: bool) {
        self.accepting.store(on, Ordering::SeqCst);
    }

    /// Records what a post or probe said about GitLab. Returns the change
    /// (`Some(new problem)`, `Some(None)`: fine again), if any.
    pub fn gitlab_said(&self, readiness: &Readiness) -> Option<Option<String>> {
        let problem = match readiness {
            Readiness::Unchanged => return None,
            Readiness::Answering => None,
            Readiness::Failing(why) => Some(why.clone()),
        };
        let mut gitlab = lock(&self.gitlab);
        let was = gitlab.as_ref().and_then(|(_, p)| p.clone());
        *gitlab = Some((Instant::now(), problem.clone()));
        (was != problem).then_some(problem)
    }

    /// `/livez`: 200 while the accept loops run.
    pub fn livez(&self) -> (u16, String) {
        match self.accepting.load(Ordering::SeqCst) {
            true => (200, "live\n".into()),
            false => (503, "not accepting connections\n".into()),
        }
    }

    /// `/readyz`: 200, or 503 with one line per reason.
    pub fn readyz(&self) -> (u16, String) {
        let mut reasons = Vec::new();
        if !self.accepting.load(Ordering::SeqCst) {
            reasons.push("LMTP listeners are not accepting connections".to_string());
        }
        reasons.extend(lock(&self.credentials).iter().cloned());
        if let Some((_, Some(problem))) = &*lock(&self.gitlab) {
            reasons.push(problem.clone());
        }
        match reasons.is_empty() {
            true => (200, "ready\n".into()),
            false => (503, reasons.iter().map(|r| format!("{r}\n")).collect()),
        }
    }

    /// Probes with `client` and checks `mailboxes` from now on (after a
    /// reload of the configuration); the credentials are checked at once.
    pub fn retarget(&self, client: Client, mailboxes: Vec<Mailbox>) {
        self.check_credentials(&mailboxes);
        *lock(&self.target) = Some((client, mailboxes));
    }

    /// Starts the thread that re-reads the secrets and keys and probes
    /// GitLab when it has been quiet for [`PROBE_EVERY`].
    pub fn start(
        self: &Arc<Health>,
        client: Client,
        mailboxes: Vec<Mailbox>,
        log: Log,
    ) -> Result<(), String> {
        let health = self.clone();
        health.retarget(client, mailboxes);
        std::thread::Builder::new()
            .name("health".into())
            .spawn(move || {
                let mut last_probe: Option<Instant> = None;
                let mut last_read = Instant::now();
                loop {
                    let target = lock(&health.target).clone();
                    let Some((client, mailboxes)) = target else {
                        return;
                    };
                    if last_read.elapsed() >= SECRET_TTL {
                        health.check_credentials(&mailboxes);
                        last_read = Instant::now();
                    }
                    let heard = lock(&health.gitlab).as_ref().map(|(at, _)| *at);
                    let quiet = [heard, last_probe]
                        .into_iter()
                        .flatten()
                        .all(|at| at.elapsed() >= PROBE_EVERY);
                    if quiet {
                        last_probe = Some(Instant::now());
                        health.probe(&client, &mailboxes, &log);
                    }
                    std::thread::sleep(TICK);
                }
            })
            .map(drop)
            .map_err(|e| format!("cannot start the health thread: {e}"))
    }

    fn check_credentials(&self, mailboxes: &[Mailbox]) {
        let problems = mailboxes
            .iter()
            .filter_map(|m| {
                let e = m.credential.load().err()?;
                Some(format!("{}: {e}", m.kind.name()))
            })
            .collect();
        *lock(&self.credentials) = problems;
    }

    /// `check`'s probe against the first mailbox.
    fn probe(&self, client: &Client, mailboxes: &[Mailbox], log: &Log) {
        let Some(mailbox) = mailboxes.first() else {
            return;
        };
        let (posted, _) = client.probe(mailbox.kind);
        match self.gitlab_said(&Probe::classify(posted).readiness) {
            Some(Some(problem)) => log.warn(&format!("readiness probe: {problem}")),
            Some(None) => log.info("readiness probe: GitLab answers again"),
            None => {}
        }
    }
}
