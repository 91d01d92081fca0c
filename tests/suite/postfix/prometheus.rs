//! A real Prometheus server (Debian's `prometheus`: own data directory,
//! loopback, free port, 1 s scrape interval, the shipped alert rules)
//! scraping `serve` while real Postfix delivers a known mix through it;
//! the counters read back through Prometheus's query API must equal the
//! counts in Postfix's log. Then `/readyz` follows the stand-in going
//! down and coming back, while `/livez` stays 200.

use super::harness::{Postfix, DOMAIN};
use super::mailgate::{free_port, Env};
use super::shipped::Variant;
use super::{incoming_rcpt, message, postfix_for, preflight, service_desk_rcpt};
use crate::common::{http_get, project_file, promtool_check_metrics, wait_until};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a counter may take to reach Prometheus (1 s scrapes).
const SCRAPED: Duration = Duration::from_secs(20);

/// A private Prometheus server; killed on drop.
struct Prometheus {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Prometheus {
    /// Starts `/usr/bin/prometheus` scraping `target` every second, and
    /// waits (bounded) until it has scraped it once.
    fn start(dir: &std::path::Path, target: &str) -> Prometheus {
        let dir = dir.join("prometheus");
        fs::create_dir_all(dir.join("data")).expect("create the Prometheus directory");
        let rules = project_file("packaging/prometheus/gitlab-mailgate.rules.yml");
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: gitlab-mailgate\n    \
                 static_configs:\n      - targets: ['{target}']\n",
                rules.display()
            ),
        )
        .expect("write prometheus.yml");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = dir.join("prometheus.log");
        let child = Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("prometheus.log"))
            .spawn()
            .expect("start /usr/bin/prometheus (Debian package prometheus)");
        let prometheus = Prometheus { child, addr, log };
        prometheus.wait("Prometheus ready", Duration::from_secs(30), || {
            http_get(&prometheus.addr, "/-/ready", None).status == 200
        });
        prometheus.wait("the first scrape", SCRAPED, || {
            prometheus.value("up{job=\"gitlab-mailgate\"}") == Some(1.0)
        });
        let rules = http_get(&prometheus.addr, "/api/v1/rules", None).body;
        assert!(
            rules.contains("GitLabMailgateGitLabFailing"),
            "the shipped rules did not load: {rules}"
        );
        prometheus
    }

    /// The value of the one-element vector `query` evaluates to, if any.
    fn value(&self, query: &str) -> Option<f64> {
        let answer = http_get(
            &self.addr,
            &format!("/api/v1/query?query={}", percent_encode(query)),
            None,
        );
        let json: serde_json::Value = serde_json::from_str(&answer.body).ok()?;
        let result = json["data"]["result"].as_array()?;
        match result.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// `sum(query)`, 0 when there is no series.
    fn sum(&self, query: &str) -> f64 {
        self.value(&format!("sum({query}) or vector(0)"))
            .unwrap_or(f64::NAN)
    }

    /// Polls `ready` every 200 ms for at most `limit`; panics with the
    /// server's log when it never holds.
    fn wait(&self, what: &str, limit: Duration, ready: impl FnMut() -> bool) {
        if !wait_until(limit, Duration::from_millis(200), ready) {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            panic!("timed out waiting for {what}; prometheus log:\n{log}");
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Postfix log lines with `status=WORD` for our recipients.
fn postfix_count(pf: &Postfix, word: &str) -> f64 {
    let word = format!("status={word} ");
    let n = pf
        .log_lines()
        .iter()
        .filter(|l| l.contains(&format!("@{DOMAIN}>")) && l.contains(&word))
        .count();
    n as f64
}

/// Polls `get` until it equals `want` (at most [`SCRAPED`]); returns the last value.
fn settles(want: f64, mut get: impl FnMut() -> f64) -> f64 {
    let mut got = f64::NAN;
    wait_until(SCRAPED, Duration::from_millis(250), || {
        got = get();
        got == want
    });
    got
}

#[test]
fn prometheus_reads_what_postfix_logged_and_readyz_follows_gitlab() {
    preflight();
    let env = Env::new();
    let http = format!("127.0.0.1:{}", free_port());
    env.write_config(
        &env.gitlab_section(),
        &format!("\n[http]\nlisten = \"{http}\"\n"),
    );
    let outs = [env.dir.join("gitlab-1"), env.dir.join("gitlab-2")];
    let mut gitlab = env.gitlab(&outs[0], "ok");
    let serve = env.serve();
    let pf = postfix_for(Variant::LmtpInet, &env, false);
    let prom = Prometheus::start(&env.dir, &http);

    // The mix: two sent, an unknown address and an invalid key bounced at
    // RCPT, one deferred by GitLab's 500 and sent after recovery.
    for (rcpt, id) in [
        (incoming_rcpt(), "prom-in"),
        (service_desk_rcpt(), "prom-sd"),
    ] {
        let qid = pf.send(&rcpt, &message(&rcpt, id));
        pf.wait_status(&qid, &rcpt, "sent");
    }
    for (rcpt, id) in [
        (format!("nobody@{DOMAIN}"), "prom-nobody"),
        (format!("incoming+not-a-key@{DOMAIN}"), "prom-badkey"),
    ] {
        let qid = pf.send(&rcpt, &message(&rcpt, id));
        pf.wait_status(&qid, &rcpt, "bounced");
    }
    gitlab.set_mode("500");
    let rcpt = incoming_rcpt();
    let qid = pf.send(&rcpt, &message(&rcpt, "prom-500"));
    pf.wait_status(&qid, &rcpt, "deferred");
    pf.wait_settled(&qid);
    gitlab.set_mode("ok");
    pf.flush_until_gone(std::slice::from_ref(&qid));

    let sent = postfix_count(&pf, "sent");
    let deferred = postfix_count(&pf, "deferred");
    let bounced = postfix_count(&pf, "bounced");
    assert_eq!((sent, bounced), (3.0, 2.0), "{:#?}", pf.log_lines());
    assert!(deferred >= 1.0);
    let checks = [
        (
            "sent",
            "gitlab_mailgate_deliveries_total{status=\"sent\",class=\"2\"}",
            sent,
        ),
        (
            "sent",
            "gitlab_mailgate_gitlab_responses_total{code=\"200\"}",
            sent,
        ),
        (
            "deferred",
            "gitlab_mailgate_deliveries_total{status=\"deferred\",class=\"4\"}",
            deferred,
        ),
        (
            "deferred",
            "gitlab_mailgate_gitlab_responses_total{code=\"500\"}",
            deferred,
        ),
        ("bounced", "gitlab_mailgate_rcpt_refused_total", bounced),
        (
            "none",
            "gitlab_mailgate_deliveries_total{status=\"bounced\"}",
            0.0,
        ),
        (
            "unknown",
            "gitlab_mailgate_rcpt_refused_total{reason=\"unknown_address\"}",
            1.0,
        ),
        (
            "bad key",
            "gitlab_mailgate_rcpt_refused_total{reason=\"invalid_key\"}",
            1.0,
        ),
        ("none", "gitlab_mailgate_gitlab_transport_errors_total", 0.0),
        ("idle", "gitlab_mailgate_posts_in_flight", 0.0),
        ("version", "gitlab_mailgate_build_info", 1.0),
    ];
    for (postfix_word, query, want) in checks {
        let got = settles(want, || prom.sum(query));
        println!("prometheus: sum({query}) = {got} (Postfix {postfix_word}: {want})");
        assert_eq!(got, want, "sum({query})");
    }
    let text = http_get(&http, "/metrics", None).body;
    promtool_check_metrics(&text);

    // Readiness: GitLab gone → 503 within 35 s (probes every 30 s), back → 200.
    assert_eq!(http_get(&http, "/readyz", None).status, 200);
    gitlab.kill();
    let down = Instant::now();
    let not_ready = wait_status(&http, 503, Duration::from_secs(40));
    println!("readyz: 503 {not_ready:?} after the stand-in went down");
    assert!(not_ready <= Duration::from_secs(35), "{not_ready:?}");
    assert_eq!(http_get(&http, "/livez", None).status, 200);
    let _back = env.gitlab(&outs[1], "ok");
    let up = Instant::now();
    let ready = wait_status(&http, 200, Duration::from_secs(40));
    println!(
        "readyz: 200 {ready:?} after the stand-in came back ({:?} down)",
        up - down
    );
    assert!(ready <= Duration::from_secs(35), "{ready:?}");
    assert_eq!(http_get(&http, "/livez", None).status, 200);
    env.assert_no_secrets(&serve.log_text());
    drop(pf);
}

/// Polls `/readyz` (and checks `/livez` stays 200) until it answers
/// `status`; returns how long that took; panics after `limit`.
fn wait_status(http: &str, status: u16, limit: Duration) -> Duration {
    let start = Instant::now();
    let answered = wait_until(limit, Duration::from_millis(250), || {
        let answered = http_get(http, "/readyz", None).status == status;
        if !answered {
            assert_eq!(http_get(http, "/livez", None).status, 200, "/livez");
        }
        answered
    });
    assert!(answered, "/readyz never answered {status}");
    start.elapsed()
}
