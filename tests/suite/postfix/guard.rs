//! Issue 13's guards through the real Postfix and `serve` (LMTP over TCP):
//! a GitLab outage behind the circuit breaker, back-pressure with slow
//! GitLab, and an auto-responder loop. Each test prints the numbers it
//! measured (`-- --nocapture`) before asserting on them.

use super::harness::{Postfix, Setup};
use super::mailgate::Env;
use super::shipped::{self, Variant};
use super::standin::requests;
use super::{accepted, incoming_rcpt, message, preflight};
use crate::common::wait_until;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Postfix delivering to `serve` over LMTP with `extra` main.cf settings.
fn postfix_with(env: &Env, extra: &[(&str, &str)]) -> Postfix {
    let mut main_cf = shipped::main_cf(env, false);
    main_cf.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Postfix::start(&Setup {
        files: vec![shipped::transport(Variant::LmtpInet, env)],
        main_cf,
        master_cf: Vec::new(),
    })
}

/// Polls (every 2 s, `postqueue -f` every 10 s) until none of `ids` is in
/// the queue or `limit` passes; returns how many are left.
fn drain(pf: &Postfix, ids: &[String], limit: Duration) -> usize {
    let mut polls = 0;
    let mut left = ids.len();
    wait_until(limit, Duration::from_secs(2), || {
        left = ids.iter().filter(|q| pf.queue_of(q).is_some()).count();
        if left > 0 && polls % 5 == 0 {
            pf.flush();
        }
        polls += 1;
        left == 0
    });
    left
}

/// How many copies of each of `ids` the stand-in accepted, as
/// `(missing, duplicated)` lists.
fn once_each(outs: &[PathBuf], ids: &[String]) -> (Vec<String>, Vec<String>) {
    let mut missing = Vec::new();
    let mut twice = Vec::new();
    for id in ids {
        match accepted(outs, id).len() {
            0 => missing.push(id.clone()),
            1 => {}
            _ => twice.push(id.clone()),
        }
    }
    (missing, twice)
}

#[test]
fn outage_of_two_minutes_reaches_gitlab_only_as_probes_then_all_arrive_once() {
    preflight();
    const MESSAGES: usize = 200;
    const OUTAGE: Duration = Duration::from_secs(120);
    let env = Env::new();
    // Cool-downs 5, 10, 20, 30, 30, … s: the test ends soon after recovery.
    // All 200 go from the null sender to one key: no loop breaker here.
    env.write_config_guarded(
        &env.gitlab_section(),
        "",
        "null_sender = \"accept\"\nloop_limit = 0\nbreaker_max_cooldown_secs = 30\n",
    );
    let outs = vec![env.dir.join("gitlab")];
    let mut gitlab = env.gitlab(&outs[0], "502");
    let serve = env.serve();
    let pf = postfix_with(&env, &[]);

    let outage = Instant::now();
    let rcpt = incoming_rcpt();
    let ids: Vec<String> = (0..MESSAGES).map(|i| format!("outage-{i}")).collect();
    let qids: Vec<String> = ids
        .iter()
        .map(|id| pf.send(&rcpt, &message(&rcpt, id)))
        .collect();
    // Not a wait for an event: the outage lasts OUTAGE on purpose, however
    // quickly the breaker opens, so that its cool-downs and probes play out.
    std::thread::sleep(OUTAGE.saturating_sub(outage.elapsed()));
    gitlab.set_mode("ok");
    let during = requests(&outs);
    let log = serve.log_text();
    let probes = log.matches("half-open: one probe").count();
    let openings = log.matches("circuit breaker open:").count();
    let local = log.matches("circuit breaker open, not posted").count();

    let left = drain(&pf, &qids, Duration::from_secs(120));
    let (missing, twice) = once_each(&outs, &ids);
    println!(
        "outage: {MESSAGES} messages; during {} s GitLab got {} requests \
         ({probes} of them probes, the rest before the breaker first opened); \
         the breaker opened {openings} times and answered {local} deliveries itself; \
         after recovery: {left} left in the queue, {} missing, {} twice",
        OUTAGE.as_secs(),
        during.len(),
        missing.len(),
        twice.len()
    );
    assert!(during.iter().all(|r| r.status == "502"));
    assert!(probes <= 8, "{probes} probes");
    // 5 failures open it; posts already in flight then fail too.
    assert!(during.len() <= 5 + 16 + probes, "{} requests", during.len());
    assert!(local > 0, "the breaker never answered by itself");
    assert_eq!(left, 0, "messages left in the queue");
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert!(twice.is_empty(), "twice: {twice:?}");
    assert!(serve.log_text().contains("circuit breaker closed"));
}

#[test]
fn slow_gitlab_never_sees_more_than_max_in_flight() {
    preflight();
    const MESSAGES: usize = 40;
    let env = Env::new();
    // 40 connections from Postfix's one address: above the default share.
    env.write_config_guarded(
        &env.gitlab_section(),
        "max_connections_per_peer = 64\n",
        "null_sender = \"accept\"\nloop_limit = 0\nmax_in_flight = 4\n",
    );
    let outs = vec![env.dir.join("gitlab")];
    let _gitlab = env.gitlab(&outs[0], "slow:2000");
    let serve = env.serve();
    // Postfix may run 40 LMTP deliveries at once, from the start.
    let pf = postfix_with(
        &env,
        &[
            ("lmtp_destination_concurrency_limit", "40"),
            ("initial_destination_concurrency", "40"),
            ("lmtp_connection_cache_on_demand", "no"),
        ],
    );
    let rcpt = incoming_rcpt();
    let ids: Vec<String> = (0..MESSAGES).map(|i| format!("busy-{i}")).collect();
    let qids: Vec<String> = ids
        .iter()
        .map(|id| pf.send(&rcpt, &message(&rcpt, id)))
        .collect();
    let left = drain(&pf, &qids, Duration::from_secs(240));
    let all = requests(&outs);
    let peak = crate::common::recorded_requests(&outs[0])
        .iter()
        .filter_map(|r| r.in_flight)
        .max()
        .unwrap_or(0);
    let no_slot = serve.log_text().matches("no free slot").count();
    let (missing, twice) = once_each(&outs, &ids);
    println!(
        "back-pressure: {MESSAGES} messages, GitLab answering in 2 s, max_in_flight = 4: \
         at most {peak} requests at once at GitLab, {} requests in all, \
         {no_slot} deliveries deferred with 451 4.3.2; {left} left, {} missing, {} twice",
        all.len(),
        missing.len(),
        twice.len()
    );
    assert!(peak <= 4, "GitLab saw {peak} requests at once");
    assert_eq!(left, 0);
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert!(twice.is_empty(), "twice: {twice:?}");
}

#[test]
fn auto_responder_loop_stops_at_loop_limit() {
    preflight();
    let env = Env::new();
    env.write_config_guarded(&env.gitlab_section(), "", "loop_limit = 10\n");
    let serve = env.serve();
    let pf = postfix_with(&env, &[]);
    let outs = vec![env.dir.join("gitlab")];
    // A robot that answers every message GitLab takes with a new one from
    // the same sender to the same address (bounded: 50 replies).
    let args = ["--reply-smtp".to_string(), pf.smtp_addr().to_string()];
    let _gitlab = env
        .standin()
        .port(env.gitlab_port)
        .args(&args)
        .spawn(&outs[0]);

    let rcpt = incoming_rcpt();
    let first = format!(
        "From: Robot <robot@example.org>\nTo: <{rcpt}>\nSubject: hello\n\
         Message-ID: <loop-start.{}@e2e.test>\n\nhello\n",
        std::process::id()
    );
    pf.send_from("robot@example.org", &rcpt, &first);
    let stopped = pf.wait_for("a delivery deferred with 4.7.1", || {
        pf.log_lines().into_iter().find(|l| l.contains("dsn=4.7.1"))
    });
    println!("postfix log: {stopped}");
    // Nothing else comes through: the loop waits in Postfix's queue. Have
    // Postfix retry the deferred reply now, and wait until that retry was
    // refused as well; only then count what reached GitLab.
    let qid = stopped
        .split_whitespace()
        .find_map(|w| {
            w.strip_suffix(':')
                .filter(|q| q.chars().all(|c| c.is_ascii_alphanumeric()))
        })
        .unwrap_or_else(|| panic!("no queue id in: {stopped}"))
        .to_string();
    pf.flush();
    pf.wait_for(&format!("{qid}'s retry deferred with 4.7.1 too"), || {
        let refusals = pf
            .log_lines()
            .into_iter()
            .filter(|l| l.contains(&format!("{qid}: to=")) && l.contains("dsn=4.7.1"))
            .count();
        (refusals >= 2).then_some(())
    });
    let reached = requests(&outs).len();
    let deferred = serve.log_text().matches("451 4.7.1").count();
    println!("loop: {reached} messages reached GitLab (loop_limit = 10), {deferred} deferred");
    assert_eq!(reached, 10);
    assert!(requests(&outs).iter().all(|r| r.status == "200"));
}
