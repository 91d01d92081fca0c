//! The fault matrix: for each way GitLab (the stand-in) or `serve` can
//! fail, three messages go through the real Postfix while the fault lasts;
//! then the fault is repaired, the queue flushed until empty, and every
//! message accounted for. A message must reach GitLab at least once, and
//! exactly once unless `serve` died after GitLab had taken it; GitLab's own
//! 400 ("too large", after GitLab mailed the sender) is taken without a
//! bounce, and then nothing reaches GitLab; a proxy's 400 defers.
//! Zero lost. The results are printed as a table before anything is
//! asserted, so a failing run still shows the whole matrix.
//!
//! Postfix's connection cache for lmtp is off here: a cached connection to
//! a `serve` that was just restarted would add deferrals of its own to a
//! case and make the first status depend on timing.

use super::harness::{Postfix, Setup};
use super::mailgate::{free_port, Env, Serve};
use super::shipped::{self, Variant};
use super::standin::{connections_to, requests};
use super::{accepted, incoming_rcpt, message, preflight};
use crate::common::{wait_until, StandIn};
use std::path::PathBuf;
use std::time::Duration;

/// Messages sent per case.
const PER_CASE: usize = 3;
/// `[lmtp] shutdown_grace_secs` in the matrix's configuration.
const GRACE_SECS: u64 = 10;

/// What goes wrong in a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The stand-in is stopped: connection refused.
    Refused,
    /// The stand-in reads the request and never answers (`timeout_secs = 3`).
    Hang,
    /// The stand-in answers this status (`500`, `502`, `401`, `404`, `400`).
    Status(&'static str),
    /// The stand-in resets the connection in the middle of the request body.
    Reset,
    /// https with a certificate from a CA that is not trusted.
    UntrustedTls,
    /// `serve` is killed with SIGKILL while GitLab is slow to answer.
    Sigkill,
    /// `serve` gets SIGTERM while GitLab is slow to answer.
    Sigterm,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Refused => "refused",
            Fault::Hang => "hang",
            Fault::Status(s) => s,
            Fault::Reset => "reset mid-body",
            Fault::UntrustedTls => "tls untrusted",
            Fault::Sigkill => "serve SIGKILL",
            Fault::Sigterm => "serve SIGTERM",
        }
    }
}

/// One message's line in the table.
struct Row {
    case: String,
    first: String,
    last: String,
    deliveries: usize,
    verdict: Result<(), String>,
}

/// Everything a case acts on: Postfix, `serve` and the stand-ins, in the
/// order they stop in (fields drop in order; the directory goes last).
struct Rig {
    pf: Postfix,
    serve: Option<Serve>,
    gitlab: Option<StandIn>,
    https: Option<StandIn>,
    variant: Variant,
    /// One directory per stand-in run, all counted.
    outs: Vec<PathBuf>,
    /// The `[gitlab]` section `serve` was started with.
    gitlab_section: String,
    lmtp_extra: String,
    env: Env,
}

impl Rig {
    fn new(variant: Variant) -> Rig {
        preflight();
        let env = Env::new();
        let lmtp_extra = format!("shutdown_grace_secs = {GRACE_SECS}\n");
        let gitlab_section = env.gitlab_section();
        env.write_config(&gitlab_section, &lmtp_extra);
        let mut main_cf = shipped::main_cf(&env, false);
        main_cf.push(("lmtp_connection_cache_on_demand".into(), "no".into()));
        let master_cf = match variant {
            Variant::Pipe => vec![shipped::master_cf_pipe_entry(&env)],
            _ => Vec::new(),
        };
        let mut rig = Rig {
            pf: Postfix::start(&Setup {
                files: vec![shipped::transport(variant, &env)],
                main_cf,
                master_cf,
            }),
            env,
            variant,
            outs: Vec::new(),
            gitlab: None,
            https: None,
            serve: None,
            gitlab_section,
            lmtp_extra,
        };
        rig.start_gitlab("ok");
        if variant != Variant::Pipe {
            rig.restart_serve();
        }
        rig
    }

    fn next_out(&mut self) -> PathBuf {
        let out = self.env.dir.join(format!("gitlab-{}", self.outs.len()));
        self.outs.push(out.clone());
        out
    }

    fn start_gitlab(&mut self, mode: &str) {
        let out = self.next_out();
        self.gitlab = Some(self.env.gitlab(&out, mode));
    }

    fn set_mode(&mut self, mode: &str) {
        self.gitlab
            .as_mut()
            .expect("stand-in running")
            .set_mode(mode);
    }

    /// Stops `serve` (SIGTERM, graceful) and starts it again, fresh: no
    /// pooled connections to GitLab, the configuration read anew.
    fn restart_serve(&mut self) {
        drop(self.serve.take());
        self.serve = Some(self.env.serve());
    }

    /// Writes `[gitlab]` as `section` and restarts `serve` if it changed
    /// (pipe mode reads the file for every message).
    fn configure(&mut self, section: String) {
        if section != self.gitlab_section {
            self.env.write_config(&section, &self.lmtp_extra);
            self.gitlab_section = section;
            if self.variant != Variant::Pipe {
                self.restart_serve();
            }
        }
    }

    /// Sets the fault up before the messages are sent.
    fn inject(&mut self, fault: Fault) {
        let section = match fault {
            // A GitLab that never answers is given up on after 3 s.
            Fault::Hang => self
                .env
                .gitlab_section()
                .replace("timeout_secs = 10", "timeout_secs = 3"),
            _ => self.env.gitlab_section(),
        };
        self.configure(section);
        match fault {
            Fault::Refused => drop(self.gitlab.take()),
            Fault::Hang => self.set_mode("hang"),
            Fault::Status(s) => self.set_mode(s),
            Fault::Reset => self.set_mode("reset"),
            Fault::UntrustedTls => {
                let dir = self.env.dir.join("tls");
                std::fs::create_dir_all(&dir).expect("create the tls directory");
                let certs = crate::common::tls_certificates(&dir);
                let port = free_port();
                let out = self.next_out();
                let https = self.env.standin().port(port).tls(&certs.cert, &certs.key);
                self.https = Some(https.spawn(&out));
                let url = format!("url = \"https://127.0.0.1:{port}\"\ntimeout_secs = 10\n");
                self.configure(url);
            }
            Fault::Sigkill | Fault::Sigterm => {
                self.restart_serve();
                self.set_mode(if fault == Fault::Sigkill {
                    "slow:5000"
                } else {
                    "slow:3000"
                });
            }
        }
    }

    /// For the daemon cases, once the messages are on their way: waits
    /// until `serve` has requests in flight at GitLab, then signals it.
    fn strike(&mut self, fault: Fault) -> Result<(), String> {
        if !matches!(fault, Fault::Sigkill | Fault::Sigterm) {
            return Ok(());
        }
        let port = self.env.gitlab_port;
        let before = requests(&self.outs).len();
        self.pf
            .wait_for("a request of serve's in flight at GitLab", || {
                (connections_to(port) > 0).then_some(())
            });
        // The others follow within moments; GitLab holds each for seconds.
        wait_until(Duration::from_secs(1), Duration::from_millis(50), || {
            connections_to(port) >= PER_CASE
        });
        let in_flight = connections_to(port);
        let serve = self.serve.as_mut().expect("serve running");
        let (signal, limit) = match fault {
            Fault::Sigkill => ("KILL", Duration::from_secs(5)),
            _ => ("TERM", Duration::from_secs(GRACE_SECS + 10)),
        };
        serve.signal(signal);
        println!("fault matrix: SIG{signal} to serve with {in_flight} requests in flight");
        let status = serve.wait_exit(limit);
        self.serve = None;
        if fault == Fault::Sigkill {
            // GitLab still takes what was in flight: wait (bounded, 5 s
            // of slowness and a margin) so the count of deliveries does not
            // depend on timing. A request cut off before its body was
            // complete is never recorded, hence no panic here.
            wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
                requests(&self.outs).len() >= before + in_flight
            });
            return Ok(());
        }
        match status {
            Some(s) if s.success() => Ok(()),
            Some(s) => Err(format!("serve exited with {s} after SIGTERM")),
            None => Err(format!("serve still running {limit:?} after SIGTERM")),
        }
    }

    /// Undoes the fault.
    fn repair(&mut self, fault: Fault) {
        match fault {
            Fault::Refused => self.start_gitlab("ok"),
            Fault::UntrustedTls => {
                let ca = self.env.dir.join("tls").join("ca.pem");
                let section = format!("{}ca_file = \"{}\"\n", self.gitlab_section, ca.display());
                self.configure(section);
            }
            Fault::Sigkill | Fault::Sigterm => {
                self.set_mode("ok");
                self.restart_serve();
            }
            _ => self.set_mode("ok"),
        }
    }

    /// Runs one case; one row per message. In the daemon cases, one more
    /// message is sent right after the signal, while `serve` is gone.
    fn case(&mut self, fault: Fault, tag: &str) -> Vec<Row> {
        let name = fault.name();
        let rcpt = incoming_rcpt();
        let id = |n: &str| format!("{tag}-{}-{n}", name.replace(' ', "-"));
        let mut ids: Vec<String> = (1..=PER_CASE).map(|i| id(&i.to_string())).collect();
        self.inject(fault);
        let mut qids: Vec<String> = ids
            .iter()
            .map(|id| self.pf.send(&rcpt, &body(fault, &rcpt, id)))
            .collect();
        let struck = self.strike(fault);
        if matches!(fault, Fault::Sigkill | Fault::Sigterm) {
            ids.push(id("late"));
            qids.push(self.pf.send(&rcpt, &body(fault, &rcpt, &id("late"))));
        }
        let firsts: Vec<String> = qids
            .iter()
            .map(|q| self.pf.wait_first_status(q, &rcpt))
            .collect();
        qids.iter().for_each(|q| self.pf.wait_settled(q));
        self.repair(fault);
        self.pf.flush_until_gone(&qids);

        let mut rows = Vec::new();
        for (n, ((id, q), first)) in ids.iter().zip(&qids).zip(&firsts).enumerate() {
            let lines = self.pf.statuses(q, &rcpt);
            lines.iter().for_each(|l| println!("postfix log: {l}"));
            let last = lines.last().map_or("-".into(), |l| status_dsn(l));
            let sent = lines.iter().filter(|l| l.contains("status=sent ")).count();
            let deliveries = accepted(&self.outs, id).len();
            let first = status_dsn(first);
            // GitLab took what was in flight after serve had died: it
            // comes again on the retry.
            let twice_ok = fault == Fault::Sigkill && n < PER_CASE;
            let verdict = judge(fault, &first, &last, sent, deliveries, twice_ok);
            let late = if n < PER_CASE { "" } else { " (late)" };
            let case = format!("{tag} {name} #{}{late}", n + 1);
            rows.push(Row {
                case,
                first,
                last,
                deliveries,
                verdict,
            });
        }
        if let Err(e) = struck {
            rows[0].verdict = Err(e);
        }
        if fault == Fault::Sigterm && !rows.iter().any(|r| r.first.starts_with("sent")) {
            rows[0].verdict = Err("no transaction in flight was answered after SIGTERM".into());
        }
        if fault == Fault::UntrustedTls {
            drop(self.https.take());
        }
        rows
    }
}

/// The case's message: for the reset, about 1 MB, so that the stand-in
/// resets the connection while the body is still being sent.
fn body(fault: Fault, rcpt: &str, id: &str) -> String {
    let mut text = message(rcpt, id);
    if fault == Fault::Reset {
        for n in 0..14_000 {
            text.push_str(&format!(
                "{n:06} padding padding padding padding padding padding padding\n"
            ));
        }
    }
    text
}

/// `deferred 4.4.1` from a Postfix `status=` log line.
fn status_dsn(line: &str) -> String {
    let field = |key: &str| {
        line.split(key)
            .nth(1)
            .and_then(|rest| rest.split([',', ' ']).next())
            .unwrap_or("?")
            .to_string()
    };
    format!("{} {}", field("status="), field("dsn="))
}

/// The expected accounting for one message of `fault`.
fn judge(
    fault: Fault,
    first: &str,
    last: &str,
    sent: usize,
    deliveries: usize,
    twice_ok: bool,
) -> Result<(), String> {
    let fail = |why: &str| {
        Err(format!(
            "{why} (first {first}, final {last}, {deliveries} at GitLab)"
        ))
    };
    if fault == Fault::Status("400") {
        // GitLab's own "too large" answer: GitLab has mailed the sender, so
        // Postfix takes the message and sends no second notice.
        return match (
            first.starts_with("sent 2."),
            last.starts_with("sent 2."),
            deliveries,
        ) {
            (true, true, 0) => Ok(()),
            _ => fail("GitLab's own 400 must be taken (sent, no bounce) and post nothing more"),
        };
    }
    let first_ok = first.starts_with("deferred 4.")
        || (fault == Fault::Sigterm && first.starts_with("sent 2."));
    if !first_ok {
        return fail("the fault must defer the message (4.x.x)");
    }
    if !last.starts_with("sent 2.") || sent != 1 {
        return fail("after the repair, Postfix must log it sent, once");
    }
    match deliveries {
        0 => fail("LOST: never reached GitLab"),
        1 => Ok(()),
        _ if twice_ok => Ok(()),
        _ => fail("delivered to GitLab more than once"),
    }
}

fn print_table(title: &str, rows: &[Row]) {
    println!("\nfault matrix ({title}):");
    println!(
        "{:<28} | {:<16} | {:<13} | {:>6} | verdict",
        "case", "first status", "final", "GitLab"
    );
    println!("{}", "-".repeat(82));
    for r in rows {
        let verdict = match &r.verdict {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("FAIL: {e}"),
        };
        println!(
            "{:<28} | {:<16} | {:<13} | {:>6} | {verdict}",
            r.case, r.first, r.last, r.deliveries
        );
    }
    println!();
}

fn run_matrix(variant: Variant, tag: &str, faults: &[Fault]) {
    let mut rig = Rig::new(variant);
    let mut rows = Vec::new();
    for &fault in faults {
        rows.extend(rig.case(fault, tag));
    }
    print_table(tag, &rows);
    let failed: Vec<String> = rows
        .iter()
        .filter_map(|r| r.verdict.as_ref().err().map(|e| format!("{}: {e}", r.case)))
        .collect();
    if let Some(serve) = &rig.serve {
        rig.env.assert_no_secrets(&serve.log_text());
    }
    rig.env.assert_no_secrets(&rig.pf.log_lines().join("\n"));
    assert!(
        failed.is_empty(),
        "fault matrix failures:\n{}",
        failed.join("\n")
    );
}

#[test]
fn fault_matrix_lmtp_every_message_delivered_or_bounced_by_the_outcome_table() {
    run_matrix(
        Variant::LmtpInet,
        "lmtp",
        &[
            Fault::Status("500"),
            Fault::Status("502"),
            Fault::Status("401"),
            Fault::Status("404"),
            Fault::Status("400"),
            Fault::Status("proxy400"),
            Fault::Reset,
            Fault::Refused,
            Fault::Hang,
            Fault::UntrustedTls,
            Fault::Sigkill,
            Fault::Sigterm,
        ],
    );
}

#[test]
fn fault_matrix_pipe_every_message_delivered_or_bounced_by_the_outcome_table() {
    run_matrix(
        Variant::Pipe,
        "pipe",
        &[Fault::Status("500"), Fault::Refused, Fault::Status("400")],
    );
}
