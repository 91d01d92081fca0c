//! Liveness and readiness of `serve`, as the `[http]` listener reports
//! them (`/livez`, `/readyz`).
//!
//! Live: the accept loops run. Ready: live, every mailbox's secret or key
//! loads, and GitLab is not known to be failing — the last answer it gave
//! (to a real post, or to a probe) was not a temporary failure. The probe
//! is `check`'s request with an invalid token, expecting 401; it is sent
//! by one background thread, only when nothing was heard from GitLab for
//! [`PROBE_EVERY`], so `/readyz` itself never causes a request.

use crate::config::Config;
use crate::gitlab::{Client, Posted, SECRET_TTL};
use crate::log;
use crate::outcome::{Outcome, Temporary};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The longest GitLab goes unasked while `serve` has an `[http]` listener.
pub const PROBE_EVERY: Duration = Duration::from_secs(30);

/// How often the background thread looks at the clock.
const TICK: Duration = Duration::from_secs(1);

/// True while the accept loops run.
static ACCEPTING: AtomicBool = AtomicBool::new(false);

/// The last word from GitLab: when, and what was wrong (`None`: fine).
static GITLAB: Mutex<Option<(Instant, Option<String>)>> = Mutex::new(None);

/// Secrets or keys that did not load at the last look, one line each.
static CREDENTIALS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Called when the accept loops start (`true`) and stop (`false`).
pub fn set_accepting(on: bool) {
    ACCEPTING.store(on, Ordering::SeqCst);
}

/// Records what a post to GitLab got. A local failure (our secret) says
/// nothing about GitLab and is left to the credential check.
pub fn gitlab_answered(posted: &Posted) {
    if matches!(posted, Posted::Local(_)) {
        return;
    }
    let problem = match Outcome::from_post(posted.clone()) {
        Outcome::Temporary(t) => Some(gitlab_problem(&t)),
        _ => None,
    };
    *lock(&GITLAB) = Some((Instant::now(), problem));
}

fn gitlab_problem(t: &Temporary) -> String {
    let text = Outcome::Temporary(t.clone()).reply().text;
    format!("GitLab is failing: {text}")
}

/// `/livez`: 200 while the accept loops run.
pub fn livez() -> (u16, String) {
    match ACCEPTING.load(Ordering::SeqCst) {
        true => (200, "live\n".into()),
        false => (503, "not accepting connections\n".into()),
    }
}

/// `/readyz`: 200, or 503 with one line per reason.
pub fn readyz() -> (u16, String) {
    let mut reasons = Vec::new();
    if !ACCEPTING.load(Ordering::SeqCst) {
        reasons.push("LMTP listeners are not accepting connections".to_string());
    }
    reasons.extend(lock(&CREDENTIALS).iter().cloned());
    if let Some((_, Some(problem))) = &*lock(&GITLAB) {
        reasons.push(problem.clone());
    }
    match reasons.is_empty() {
        true => (200, "ready\n".into()),
        false => (503, reasons.iter().map(|r| format!("{r}\n")).collect()),
    }
}

/// Starts the thread that re-reads the secrets and keys and probes GitLab
/// when it has been quiet for [`PROBE_EVERY`].
pub fn start(config: Arc<Config>) -> Result<(), String> {
    let client = Client::new(&config.gitlab)?;
    check_credentials(&config);
    std::thread::Builder::new()
        .name("health".into())
        .spawn(move || {
            let mut last_probe: Option<Instant> = None;
            let mut last_read = Instant::now();
            loop {
                if last_read.elapsed() >= SECRET_TTL {
                    check_credentials(&config);
                    last_read = Instant::now();
                }
                let heard = lock(&GITLAB).as_ref().map(|(at, _)| *at);
                let quiet = [heard, last_probe]
                    .into_iter()
                    .flatten()
                    .all(|at| at.elapsed() >= PROBE_EVERY);
                if quiet {
                    last_probe = Some(Instant::now());
                    probe(&client, &config);
                }
                std::thread::sleep(TICK);
            }
        })
        .map(drop)
        .map_err(|e| format!("cannot start the health thread: {e}"))
}

fn check_credentials(config: &Config) {
    let problems = config
        .mailboxes
        .iter()
        .filter_map(|m| {
            let e = m.credential.load().err()?;
            Some(format!("{}: {e}", m.kind.name()))
        })
        .collect();
    *lock(&CREDENTIALS) = problems;
}

/// `check`'s probe against the first mailbox: 401 means GitLab answers.
fn probe(client: &Client, config: &Config) {
    let Some(mailbox) = config.mailboxes.first() else {
        return;
    };
    let problem = match client.probe(mailbox.kind) {
        Ok((401, _)) => None,
        Ok((status, _)) => match Outcome::from_post(Posted::Status(status)) {
            Outcome::Temporary(t) => Some(gitlab_problem(&t)),
            _ => None,
        },
        Err(e) => Some(format!("GitLab is failing: cannot reach GitLab: {e}")),
    };
    let was = lock(&GITLAB).as_ref().and_then(|(_, p)| p.clone());
    if problem != was {
        match &problem {
            Some(p) => log::warn(&format!("readiness probe: {p}")),
            None => log::info("readiness probe: GitLab answers again"),
        }
    }
    *lock(&GITLAB) = Some((Instant::now(), problem));
}
