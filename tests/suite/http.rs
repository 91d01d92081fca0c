//! `serve`'s `[http]` listener from outside: `/livez`, `/readyz`,
//! `/metrics` in both text formats (checked by `promtool check metrics`),
//! 404/405, the request size bound and the read timeout, LMTP unaffected
//! by stuck HTTP clients, and every counter exact after a known mix.
//!
//! Every wait is bounded. Timing assertions are upper bounds only.

use crate::common;

use common::*;
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// `serve` with the listener on a free loopback port; returns its address.
fn with_http(settings: &mut Settings, more_lmtp: &str) -> String {
    let addr = format!("127.0.0.1:{}", unused_port());
    settings.extra = format!("{more_lmtp}\n[http]\nlisten = \"{addr}\"\n");
    addr
}

fn metrics(addr: &str) -> BTreeMap<String, f64> {
    let answer = http_get(addr, "/metrics", None);
    assert_eq!(answer.status, 200, "{answer:?}");
    samples(&answer.body)
}

fn wait_ready(addr: &str, status: u16) -> bool {
    wait_until(Duration::from_secs(10), POLL, || {
        http_get(addr, "/readyz", None).status == status
    })
}

#[test]
fn probes_and_formats() {
    let mut http = String::new();
    let (env, _standin) = TestEnv::with_standin(StandIn::builder(), |s| http = with_http(s, ""));
    let server = Server::start(&env);
    assert!(server.wait_log("http on ", 1), "{}", server.log_text());

    assert_eq!(http_get(&http, "/livez", None).status, 200);
    assert!(
        wait_ready(&http, 200),
        "{:?}",
        http_get(&http, "/readyz", None)
    );
    assert_eq!(http_get(&http, "/nope", None).status, 404);
    let post = http_raw(
        &http,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(post.status, 405, "{post:?}");
    assert!(post.head.contains("Allow: GET, HEAD"), "{post:?}");

    let om = http_get(
        &http,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert!(om.head.contains("application/openmetrics-text"), "{om:?}");
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
    let text = http_get(&http, "/metrics", Some("text/plain"));
    assert!(text.head.contains("text/plain; version=0.0.4"), "{text:?}");
    assert!(!text.body.contains("# EOF"), "{}", text.body);
    promtool_check_metrics(&text.body);

    let check = env.check();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(out.contains(&format!("http listener on {http}")), "{out}");
}

#[test]
fn bounded_requests_never_stall_lmtp() {
    let mut http = String::new();
    let (env, _standin) = TestEnv::with_standin(StandIn::builder(), |s| http = with_http(s, ""));
    let server = Server::start(&env);
    assert!(server.wait_log("http on ", 1), "{}", server.log_text());

    let big = format!(
        "GET /livez HTTP/1.1\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(10_000)
    );
    assert_eq!(http_raw(&http, big.as_bytes()).status, 431);

    // More silent clients than worker threads: each is cut off after the
    // deadline, and LMTP delivery goes on meanwhile.
    let start = Instant::now();
    let silent: Vec<TcpStream> = (0..6)
        .map(|_| TcpStream::connect(&http).expect("connect"))
        .collect();
    normal_delivery(&server, "http-stalled");
    let lmtp_took = start.elapsed();
    assert!(
        lmtp_took < Duration::from_secs(4),
        "LMTP took {lmtp_took:?}"
    );
    let mut first = silent.into_iter().next().unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut bytes = Vec::new();
    let _ = std::io::Read::read_to_end(&mut first, &mut bytes);
    let answer = parse_answer(&bytes);
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    // Once the silent ones are cut off, probes are answered again.
    assert_eq!(http_get(&http, "/livez", None).status, 200);
}

#[test]
fn counters_are_exact_after_a_known_mix() {
    let mut http = String::new();
    let (env, mut standin) = TestEnv::with_standin(StandIn::builder(), |s| {
        s.max_message_size = 4096;
        http = with_http(s, "max_recipients = 2");
    });
    let server = Server::start(&env);
    assert!(server.wait_log("http on ", 1), "{}", server.log_text());
    let invalid_key = "incoming+a/b+x+y@incoming.example.com";

    // 1: two delivered; one unknown address, one invalid key, one over the limit.
    let mut c = server.connect();
    c.hello();
    c.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
    c.cmd(&format!("RCPT TO:<{UNKNOWN_RCPT}>"), 550, "5.1.1");
    c.cmd(&format!("RCPT TO:<{invalid_key}>"), 550, "5.1.1");
    c.cmd(&format!("RCPT TO:<{SERVICE_DESK_RCPT}>"), 250, "2.1.5");
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 452, "4.5.3");
    c.cmd("DATA", 354, "");
    c.send(&stuffed(&crlf_message("mix-1")));
    c.expect(250, "2.0.0");
    c.expect(250, "2.0.0");

    // 2: GitLab answers 500 (deferred), then its own 400 (taken: GitLab
    // has mailed the sender).
    for (mode, code, enhanced) in [("500", 451, "4.3.0"), ("400", 250, "2.0.0")] {
        standin.set_mode(mode);
        c.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
        c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
        c.cmd("DATA", 354, "");
        c.send(&stuffed(&crlf_message(mode)));
        c.expect(code, enhanced);
    }
    // 3: too large for us: bounced without a post.
    c.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
    c.cmd("DATA", 354, "");
    let mut big = crlf_message("big");
    big.extend(b"x".repeat(8000));
    big.extend(b"\r\n");
    c.send(&stuffed(&big));
    c.expect(552, "5.3.4");
    c.cmd("QUIT", 221, "2.0.0");
    drop(c);
    assert!(server.wait_log("messages=3", 1), "{}", server.log_text());

    let expected: &[(&str, f64)] = &[
        (
            "deliveries_total{mailbox=\"incoming_email\",status=\"sent\",class=\"2\"}",
            1.0,
        ),
        (
            "deliveries_total{mailbox=\"service_desk_email\",status=\"sent\",class=\"2\"}",
            1.0,
        ),
        (
            "deliveries_total{mailbox=\"incoming_email\",status=\"deferred\",class=\"4\"}",
            1.0,
        ),
        (
            "deliveries_total{mailbox=\"incoming_email\",status=\"bounced\",class=\"5\"}",
            1.0,
        ),
        (
            "deliveries_total{mailbox=\"incoming_email\",status=\"rejected\",class=\"2\"}",
            1.0,
        ),
        (
            "deliveries_total{mailbox=\"service_desk_email\",status=\"deferred\",class=\"4\"}",
            0.0,
        ),
        ("rcpt_refused_total{reason=\"unknown_address\"}", 1.0),
        ("rcpt_refused_total{reason=\"invalid_key\"}", 1.0),
        ("rcpt_refused_total{reason=\"limit\"}", 1.0),
        (
            "gitlab_responses_total{mailbox=\"incoming_email\",code=\"200\"}",
            1.0,
        ),
        (
            "gitlab_responses_total{mailbox=\"service_desk_email\",code=\"200\"}",
            1.0,
        ),
        (
            "gitlab_responses_total{mailbox=\"incoming_email\",code=\"500\"}",
            1.0,
        ),
        (
            "gitlab_responses_total{mailbox=\"incoming_email\",code=\"400\"}",
            1.0,
        ),
        (
            "gitlab_request_duration_seconds_count{mailbox=\"incoming_email\"}",
            3.0,
        ),
        (
            "gitlab_request_duration_seconds_count{mailbox=\"service_desk_email\"}",
            1.0,
        ),
        ("message_size_bytes_count", 3.0),
        ("lmtp_connections_total", 1.0),
        ("lmtp_connections_open", 0.0),
        ("posts_in_flight", 0.0),
        ("build_info{version=\"0.1.0\"}", 1.0),
    ];
    // The connection thread may still be closing: wait (bounded) for it.
    let mut got = metrics(&http);
    wait_until(WAIT, POLL, || {
        got = metrics(&http);
        got.get("gitlab_mailgate_lmtp_connections_open") == Some(&0.0)
    });
    for (series, value) in expected {
        let name = format!("gitlab_mailgate_{series}");
        assert_eq!(got.get(&name), Some(value), "{name} in {got:#?}");
    }
    let transport_errors = got
        .keys()
        .filter(|k| k.contains("transport_errors"))
        .count();
    assert_eq!(transport_errors, 0, "{got:#?}");
    for mailbox in ["incoming_email", "service_desk_email"] {
        let name =
            format!("gitlab_mailgate_last_success_timestamp_seconds{{mailbox=\"{mailbox}\"}}");
        assert!(
            got.get(&name).is_some_and(|t| *t > 1.7e9),
            "{name}: {got:#?}"
        );
    }
    // Every metric the shipped alert rules use is in the scrape.
    let rules = std::fs::read_to_string(project_file(
        "packaging/prometheus/gitlab-mailgate.rules.yml",
    ))
    .expect("read the rules");
    let used: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("gitlab_mailgate_"))
        .collect();
    assert!(used.len() >= 3, "{used:?}");
    let exprs: String = rules
        .split("expr:")
        .skip(1)
        .map(|e| e.split("for:").next().unwrap_or(""))
        .collect();
    for name in used.iter().filter(|n| exprs.contains(*n)) {
        assert!(
            got.keys().any(|k| k.starts_with(&format!("{name}{{"))),
            "{name} (used by an alert rule) is not exposed: {got:#?}"
        );
    }
    // No recipient, key or sender in any label.
    let text = http_get(&http, "/metrics", None).body;
    for secret in ["alice", "incoming+", "contact+", "elsewhere", "59d8df"] {
        assert!(!text.contains(secret), "{secret} in:\n{text}");
    }
}

#[test]
fn readyz_follows_gitlab_and_credentials() {
    let mut http = String::new();
    let (env, mut standin) = TestEnv::with_standin(StandIn::builder(), |s| http = with_http(s, ""));
    let server = Server::start(&env);
    assert!(server.wait_log("http on ", 1), "{}", server.log_text());
    assert!(wait_ready(&http, 200));

    // A real post that fails makes it 503 at once; one that works, 200.
    standin.set_mode("502");
    let mut c = server.connect();
    c.hello();
    c.cmd("MAIL FROM:<>", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
    c.cmd("DATA", 354, "");
    c.send(&stuffed(&crlf_message("r1")));
    c.expect(451, "4.3.0");
    let answer = http_get(&http, "/readyz", None);
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.body.contains("GitLab answered 502"), "{answer:?}");
    assert_eq!(http_get(&http, "/livez", None).status, 200);
    standin.set_mode("ok");
    normal_delivery(&server, "r2");
    assert_eq!(http_get(&http, "/readyz", None).status, 200);

    // A secret that no longer loads (checked every 10 s).
    std::fs::write(&env.incoming_secret, "not base64\n").unwrap();
    assert!(
        wait_until(Duration::from_secs(15), POLL, || {
            let a = http_get(&http, "/readyz", None);
            a.status == 503 && a.body.contains("incoming_email")
        }),
        "{:?}",
        http_get(&http, "/readyz", None)
    );
}

#[test]
fn shipped_alert_rules_pass_promtool() {
    let dir = project_file("packaging/prometheus");
    for args in [
        ["check", "rules", "gitlab-mailgate.rules.yml"],
        ["test", "rules", "gitlab-mailgate.rules.test.yml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run promtool (Debian package prometheus)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn transport_errors_by_kind() {
    let mut settings = Settings::default();
    let http = with_http(&mut settings, "");
    // Nothing listens at the configured GitLab URL: unreachable.
    let env = TestEnv::new(&settings);
    let server = Server::start(&env);
    assert!(server.wait_log("http on ", 1), "{}", server.log_text());
    let deliver = |rcpt: &str, enhanced: &str| {
        let mut c = server.connect();
        c.hello();
        c.cmd("MAIL FROM:<>", 250, "2.1.0");
        c.cmd(&format!("RCPT TO:<{rcpt}>"), 250, "2.1.5");
        c.cmd("DATA", 354, "");
        c.send(&stuffed(&crlf_message("down")));
        c.expect(451, enhanced);
        c.cmd("QUIT", 221, "2.0.0");
    };
    deliver(INCOMING_RCPT, "4.4.1");
    // A secret spoiled after start: nothing is sent (local).
    std::fs::write(&env.service_desk_secret, "spoiled\n").unwrap();
    deliver(SERVICE_DESK_RCPT, "4.3.5");

    let got = metrics(&http);
    let want = [
        (
            "gitlab_transport_errors_total{mailbox=\"incoming_email\",kind=\"unreachable\"}",
            1.0,
        ),
        (
            "gitlab_transport_errors_total{mailbox=\"service_desk_email\",kind=\"local\"}",
            1.0,
        ),
        (
            "deliveries_total{mailbox=\"incoming_email\",status=\"deferred\",class=\"4\"}",
            1.0,
        ),
        (
            "deliveries_total{mailbox=\"service_desk_email\",status=\"deferred\",class=\"4\"}",
            1.0,
        ),
        (
            "gitlab_request_duration_seconds_count{mailbox=\"incoming_email\"}",
            1.0,
        ),
    ];
    for (series, value) in want {
        let name = format!("gitlab_mailgate_{series}");
        assert_eq!(got.get(&name), Some(&value), "{name} in {got:#?}");
    }
    assert!(
        !got.keys().any(|k| k.contains("gitlab_responses_total")),
        "{got:#?}"
    );
    let ready = http_get(&http, "/readyz", None);
    assert_eq!(ready.status, 503, "{ready:?}");
    assert!(ready.body.contains("cannot reach GitLab"), "{ready:?}");
    assert_eq!(http_get(&http, "/livez", None).status, 200);
}
