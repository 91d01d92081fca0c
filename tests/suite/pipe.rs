//! Pipe mode end to end: the real binary, run as Postfix's pipe(8) would
//! run it, against the GitLab stand-in (which verifies the JWT with PyJWT).
//!
//! One test per row of the outcome table: exit status, the DSN line that
//! must be the very first bytes of the output, what GitLab received, the
//! log line, and that no secret or token is ever printed (checked by the
//! helpers on every run).

use crate::common;

use common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Checks a merged run: exit status `code`, the first line is a DSN
/// starting with `dsn` (e.g. `"4.7.0 "`), and every later line is a log line.
fn assert_dsn_first(run: &Run, code: i32, dsn: &str) {
    assert_dsn_line(run, code, dsn);
    let out = run.out();
    for line in out.lines().skip(1) {
        assert!(
            line.starts_with("gitlab-mailgate: "),
            "after the DSN only log lines may follow: {line:?}\n{out}"
        );
    }
}

/// Checks a merged run: exit status `code` and a first line that is a DSN
/// starting with `dsn`; later lines are free (clap's usage text).
fn assert_dsn_line(run: &Run, code: i32, dsn: &str) {
    let out = run.out();
    assert_eq!(run.code, Some(code), "output:\n{out}");
    assert!(
        out.starts_with(dsn),
        "the output must start with {dsn:?}:\n{out}"
    );
    let first = out.lines().next().unwrap_or_default();
    // A DSN is `X.Y.Z text`: three numbers, then a space and text.
    let (code_part, text) = first.split_once(' ').expect("DSN text");
    assert_eq!(code_part.split('.').count(), 3, "{first}");
    assert!(!text.trim().is_empty(), "{first}");
}

/// The log line for `rcpt` in `output` (a `to=<rcpt>, mailbox=` line).
fn log_line_for<'a>(output: &'a str, rcpt: &str) -> &'a str {
    let needle = format!("to=<{rcpt}>, mailbox=");
    output
        .lines()
        .find(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("no log line for {rcpt}:\n{output}"))
}

#[test]
fn delivered_message_reaches_gitlab_byte_for_byte() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    // CRLF and LF mixed, 8-bit bytes, a NUL and a dot line: all passed as is.
    let mut msg = message("exact-bytes");
    msg.extend_from_slice(
        b"crlf line\r\n8bit \xe9\xff\x80 bytes\n\x00nul\n.\n..\nlast line without end",
    );

    let run = env.deliver_merged(&["--sender", "alice@example.org", INCOMING_RCPT], &msg);
    let out = run.out();
    assert_eq!(run.code, Some(0), "{out}");
    assert!(
        out.starts_with("gitlab-mailgate: "),
        "success writes no DSN, only log lines:\n{out}"
    );

    let bodies = standin.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0].mailbox, "incoming_email");
    assert!(
        bodies[0].bytes == expected_body(INCOMING_RCPT, &msg),
        "GitLab got other bytes:\n{}",
        String::from_utf8_lossy(&bodies[0].bytes)
    );

    let requests = standin.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert!(r.jwt_ok, "PyJWT must accept the token: {r:?}");
    assert_eq!(r.status, "200");
    assert_eq!(r.content_type.as_deref(), Some("text/plain"));
    let nonce = r.nonce.as_deref().unwrap_or_default();
    assert!(
        nonce.len() == 24 && nonce.bytes().all(|b| b.is_ascii_hexdigit()),
        "{nonce:?}"
    );
    assert_eq!(
        r.delivered_to.as_deref(),
        Some(format!("Delivered-To: {INCOMING_RCPT}").as_str())
    );

    let line = log_line_for(&out, INCOMING_RCPT);
    let want = format!("to=<{INCOMING_RCPT}>, mailbox=incoming_email, key={KEY}, status=sent (");
    assert!(line.contains(&want), "{line}");
    assert!(
        line.contains("message-id=<exact-bytes.test@example.org>"),
        "{line}"
    );
    assert!(
        out.contains("from=<alice@example.org>"),
        "the sender is logged:\n{out}"
    );
}

#[test]
fn success_prints_nothing_on_stdout() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let run = env.deliver(&[INCOMING_RCPT], &message("quiet"));
    assert_eq!(run.code, Some(0), "{}", run.err());
    assert!(run.stdout.is_empty(), "stdout: {:?}", run.out());
    assert!(run.err().contains("status=sent ("), "{}", run.err());
    assert_eq!(standin.bodies().len(), 1);
}

#[test]
fn service_desk_recipient_goes_to_the_service_desk_mailbox() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let msg = message("service-desk");
    let run = env.deliver(&[SERVICE_DESK_RCPT], &msg);
    assert_eq!(run.code, Some(0), "{}", run.err());

    let bodies = standin.bodies();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0].mailbox, "service_desk_email");
    assert!(bodies[0].bytes == expected_body(SERVICE_DESK_RCPT, &msg));
    // The stand-in checks the token against the service desk secret.
    assert!(standin.requests()[0].jwt_ok);

    let err = run.err();
    let line = log_line_for(&err, SERVICE_DESK_RCPT);
    assert!(
        line.contains(&format!(
            "mailbox=service_desk_email, key={SERVICE_DESK_KEY}, status=sent ("
        )),
        "{line}"
    );
}

#[test]
fn gitlab_answers_map_to_exit_status_and_dsn() {
    let (env, mut standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let rows = [
        (
            "proxy400",
            75,
            "4.3.0 ",
            "deferred (451 4.3.0 GitLab answered 400",
        ),
        ("401", 75, "4.7.0 ", "deferred (451 4.7.0"),
        ("404", 75, "4.3.5 ", "deferred (451 4.3.5"),
        ("500", 75, "4.3.0 ", "deferred (451 4.3.0"),
        ("502", 75, "4.3.0 ", "deferred (451 4.3.0"),
    ];
    for (i, (mode, code, dsn, status)) in rows.into_iter().enumerate() {
        standin.set_mode(mode);
        let run = env.deliver_merged(&[INCOMING_RCPT], &message(&format!("row-{mode}")));
        assert_dsn_first(&run, code, dsn);
        let out = run.out();
        let line = log_line_for(&out, INCOMING_RCPT);
        assert!(line.contains(&format!("status={status}")), "{mode}: {line}");

        let requests = standin.requests();
        assert_eq!(requests.len(), i + 1, "one request per run");
        // A proxy's 400 is still a 400 on the wire.
        assert_eq!(requests[i].status, mode.trim_start_matches("proxy"));
        assert!(requests[i].jwt_ok, "{mode}: the token was still valid");
    }
    assert!(standin.bodies().is_empty(), "nothing was accepted");
}

#[test]
fn a_wrong_secret_is_deferred_as_not_authorized() {
    // The stand-in really checks the JWT: sign with a secret GitLab does not have.
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    write_file(&env.incoming_secret, new_secret_text().as_bytes(), 0o600);
    let run = env.deliver_merged(&[INCOMING_RCPT], &message("wrong-secret"));
    assert_dsn_first(&run, 75, "4.7.0 ");
    let requests = standin.requests();
    assert_eq!(requests.len(), 1);
    assert!(!requests[0].jwt_ok);
    assert_eq!(requests[0].status, "401");
}

#[test]
fn es256_delivers_and_a_key_gitlab_does_not_know_is_deferred() {
    let keys = temp_dir();
    let (known, public) = keygen(keys.path(), "incoming_email", "known.pem");
    let (other, _) = keygen(keys.path(), "incoming_email", "other.pem");
    let extra = Extra {
        public_keys: vec![("incoming_email".into(), public)],
        clock_offset: 0,
    };
    let (env, standin) = TestEnv::with_standin(StandIn::builder().extra(&extra), |s| {
        s.incoming_extra = signing_key_line(&known)
    });
    let run = env.deliver_merged(&[INCOMING_RCPT], &message("es256"));
    assert_eq!(run.code, Some(0), "{}", run.out());
    let mut settings = Settings {
        gitlab_url: standin.url(),
        ..Settings::default()
    };
    settings.incoming_extra = signing_key_line(&other);
    env.write_config(&settings);
    let run = env.deliver_merged(&[INCOMING_RCPT], &message("es256-other"));
    assert_dsn_first(&run, 75, "4.7.0 ");
    let requests = standin.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[0].jwt_ok && requests[0].alg.as_deref() == Some("ES256"));
    assert!(!requests[1].jwt_ok);
}

#[test]
fn gitlab_down_is_deferred_as_no_answer() {
    let env = TestEnv::new(&Settings::default()); // the URL's port has no listener
    let run = env.deliver_merged(&[INCOMING_RCPT], &message("refused"));
    assert_dsn_first(&run, 75, "4.4.1 ");
    assert!(
        run.out().contains("status=deferred (451 4.4.1"),
        "{}",
        run.out()
    );
}

#[test]
fn a_hanging_gitlab_times_out_and_is_deferred() {
    let (env, standin) =
        TestEnv::with_standin(StandIn::builder().mode("hang"), |s| s.timeout_secs = 2);
    let run = env.deliver_merged(&[INCOMING_RCPT], &message("hang"));
    assert_dsn_first(&run, 75, "4.4.");
    assert_eq!(standin.requests().len(), 1, "the request did arrive");
    assert!(standin.bodies().is_empty());
}

#[test]
fn a_reset_connection_is_deferred() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder().mode("reset"), |_| {});
    let run = env.deliver_merged(&[INCOMING_RCPT], &message("reset"));
    assert_dsn_first(&run, 75, "4.4.");
    assert_eq!(standin.requests()[0].status, "reset");
}

#[test]
fn a_slow_but_timely_answer_is_delivered() {
    let (env, standin) =
        TestEnv::with_standin(StandIn::builder().mode("slow:300"), |s| s.timeout_secs = 30);
    let run = env.deliver(&[INCOMING_RCPT], &message("slow"));
    assert_eq!(run.code, Some(0), "{}", run.err());
    assert_eq!(standin.bodies().len(), 1);
}

#[test]
fn the_deadline_defers_a_delivery_that_takes_too_long() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder().mode("hang"), |s| {
        s.deadline_secs = 1;
        s.timeout_secs = 30;
    });
    let run = env.deliver_merged(&[INCOMING_RCPT], &message("deadline"));
    assert_dsn_first(&run, 75, "4.4.7 ");
    assert!(
        run.out().contains("deadline"),
        "the log says why:\n{}",
        run.out()
    );
    assert!(standin.bodies().is_empty());
}

#[test]
fn unknown_recipients_bounce_without_asking_gitlab() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    for rcpt in [
        UNKNOWN_RCPT,
        // In the domain, but no template or base address matches it.
        "postmaster@incoming.example.com",
        // Matches the template, but no GitLab handler takes such a key.
        "incoming+hello@incoming.example.com",
        "contact+UPPER@incoming.example.com",
        "incoming+a%2fb+token@incoming.example.com",
    ] {
        let run = env.deliver_merged(&[rcpt], &message("unknown"));
        assert_dsn_first(&run, 67, "5.1.1 ");
        assert!(
            run.out()
                .contains(&format!("to=<{rcpt}>, status=bounced (550 5.1.1")),
            "{}",
            run.out()
        );
    }
    assert!(standin.requests().is_empty(), "nothing may reach GitLab");
}

#[test]
fn a_message_over_the_size_limit_bounces_without_asking_gitlab() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |s| s.max_message_size = 1000);
    let mut big = message("big");
    big.resize(5000, b'x');
    let run = env.deliver_merged(&[INCOMING_RCPT], &big);
    assert_dsn_first(&run, 69, "5.3.4 ");
    assert!(standin.requests().is_empty(), "nothing may reach GitLab");

    // Exactly at the limit is fine.
    let mut fits = message("fits");
    fits.resize(1000, b'y');
    let run = env.deliver(&[INCOMING_RCPT], &fits);
    assert_eq!(run.code, Some(0), "{}", run.err());
    assert!(standin.bodies()[0].bytes == expected_body(INCOMING_RCPT, &fits));
}

#[test]
fn local_problems_defer_and_never_exit_otherwise() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let msg = message("local");

    // The configuration file is missing.
    let missing = env.dir().join("no-such-config.toml");
    let run = run_merged(
        std::process::Command::new(bin())
            .args(["deliver", "--config"])
            .arg(&missing)
            .arg(INCOMING_RCPT)
            .env_remove("GITLAB_MAILGATE_CONFIG"),
        &msg,
    );
    assert_dsn_first(&run, 75, "4.3.5 ");
    assert!(
        run.out().contains("no-such-config.toml"),
        "the log names the file:\n{}",
        run.out()
    );

    // No recipient, or an unknown option: clap would exit 2 (a bounce).
    for args in [&[][..], &["--no-such-option", INCOMING_RCPT][..]] {
        let run = env.deliver_merged(args, &msg);
        assert_dsn_line(&run, 75, "4.3.5 ");
    }

    // The secret file is a directory: unreadable.
    std::fs::remove_file(&env.incoming_secret).unwrap();
    std::fs::create_dir(&env.incoming_secret).unwrap();
    let run = env.deliver_merged(&[INCOMING_RCPT], &msg);
    assert_dsn_first(&run, 75, "4.3.5 ");
    std::fs::remove_dir(&env.incoming_secret).unwrap();

    // The secret file is missing.
    let run = env.deliver_merged(&[INCOMING_RCPT], &msg);
    assert_dsn_first(&run, 75, "4.3.5 ");

    // The secret file is writable by its group.
    write_file(&env.incoming_secret, new_secret_text().as_bytes(), 0o660);
    let run = env.deliver_merged(&[INCOMING_RCPT], &msg);
    assert_dsn_first(&run, 75, "4.3.5 ");

    assert!(standin.requests().is_empty(), "nothing may reach GitLab");
}

#[test]
fn several_recipients_one_unknown_bounces_that_one() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let msg = message("two-rcpts");
    let run = env.deliver_merged(&[INCOMING_RCPT, UNKNOWN_RCPT], &msg);
    assert_dsn_first(&run, 67, "5.1.1 ");
    let bodies = standin.bodies();
    assert_eq!(bodies.len(), 1, "the known recipient was delivered");
    assert!(bodies[0].bytes == expected_body(INCOMING_RCPT, &msg));
    let out = run.out();
    assert!(log_line_for(&out, INCOMING_RCPT).contains("status=sent ("));
}

#[test]
fn several_recipients_one_failing_defers_all() {
    // First request answered 200, the second 500.
    let (env, standin) = TestEnv::with_standin(StandIn::builder().mode("ok,500"), |_| {});
    let msg = message("ok-then-500");
    let run = env.deliver_merged(&[INCOMING_RCPT, SERVICE_DESK_RCPT, UNKNOWN_RCPT], &msg);
    // A temporary failure wins: Postfix retries rather than lose the message.
    assert_dsn_first(&run, 75, "4.3.0 ");

    let requests = standin.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(
        (requests[0].mailbox.as_str(), requests[0].status.as_str()),
        ("incoming_email", "200")
    );
    assert_eq!(
        (requests[1].mailbox.as_str(), requests[1].status.as_str()),
        ("service_desk_email", "500")
    );
    assert!(requests.iter().all(|r| r.jwt_ok));
    let out = run.out();
    assert!(log_line_for(&out, INCOMING_RCPT).contains("status=sent ("));
    assert!(log_line_for(&out, SERVICE_DESK_RCPT).contains("status=deferred (451 4.3.0"));
    assert!(out.contains(&format!("to=<{UNKNOWN_RCPT}>, status=bounced (550 5.1.1")));
}

#[test]
fn stand_in_mode_switches_at_run_time() {
    // The helpers themselves: mode switching and waiting are bounded.
    let (env, mut standin) = TestEnv::with_standin(StandIn::builder().mode("500"), |_| {});
    let run = env.deliver(&[INCOMING_RCPT], &message("first"));
    assert_eq!(run.code, Some(75));
    standin.set_mode("ok");
    let run = env.deliver(&[INCOMING_RCPT], &message("second"));
    assert_eq!(run.code, Some(0), "{}", run.err());
    let requests = standin.wait_requests(2, WAIT);
    assert_eq!(
        requests
            .iter()
            .map(|r| r.status.as_str())
            .collect::<Vec<_>>(),
        ["500", "200"]
    );
}

#[test]
fn https_with_the_configured_ca_file() {
    let mut settings = Settings::default();
    let env = TestEnv::new(&settings);
    let certs = tls_certificates(env.dir());
    let standin = StandIn::builder()
        .secret("incoming_email", &env.incoming_secret)
        .secret("service_desk_email", &env.service_desk_secret)
        .tls(&certs.cert, &certs.key)
        .spawn(&env.dir().join("standin"));
    assert!(standin.url().starts_with("https://"));
    settings.gitlab_url = standin.url();

    // Without the CA, the certificate is not trusted: unreachable, deferred.
    env.write_config(&settings);
    let run = env.deliver_merged(&[INCOMING_RCPT], &message("untrusted"));
    assert_dsn_first(&run, 75, "4.4.1 ");
    assert!(standin.bodies().is_empty());

    settings.gitlab_extra = format!("ca_file = {}", toml_string(&certs.ca.to_string_lossy()));
    env.write_config(&settings);
    let msg = message("tls");
    let run = env.deliver(&[INCOMING_RCPT], &msg);
    assert_eq!(run.code, Some(0), "{}", run.err());
    let bodies = standin.bodies();
    assert_eq!(bodies.len(), 1);
    assert!(bodies[0].bytes == expected_body(INCOMING_RCPT, &msg));
    assert!(standin.requests().iter().any(|r| r.jwt_ok));
}

#[test]
fn envelope_domain_in_capitals_reaches_its_key() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let rcpt = format!("incoming+{KEY}@INCOMING.EXAMPLE.COM");
    let msg = keyless_message("capitals");
    let run = env.deliver_merged(&["--sender", "alice@example.org", &rcpt], &msg);
    assert_eq!(run.code, Some(0), "{}", run.out());
    let bodies = standin.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    // Our Delivered-To spells the domain as the template: GitLab's
    // case-sensitive regex finds KEY in it.
    assert!(bodies[0].bytes == expected_body(INCOMING_RCPT, &msg));
    assert_eq!(key_in_posted(INCOMING_TEMPLATE, &bodies[0].bytes), KEY);
    assert_eq!(logged_key(log_line_for(&run.out(), &rcpt)), KEY);
}

#[test]
fn logged_key_is_the_key_gitlab_finds_in_the_posted_bytes() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |s| {
        s.gitlab_extra = format!("host = \"{GITLAB_HOST}\"");
    });
    // The base address gives no key (it all comes from the headers); the
    // keyed one in capitals gives OTHER_KEY unless To or References win.
    let base = "incoming@incoming.example.com";
    let keyed = format!("incoming+{OTHER_KEY}@INCOMING.Example.COM");
    let mut seen = Vec::new();
    for (name, msg) in own_emails() {
        let before = standin.bodies().len();
        let run = env.deliver_merged(&["--sender", "alice@example.org", base, &keyed], &msg);
        let out = run.out();
        assert_eq!(run.code, Some(0), "{name}: {out}");
        let bodies = standin.bodies();
        let keys: Vec<&str> = [base, keyed.as_str()]
            .iter()
            .map(|rcpt| logged_key(log_line_for(&out, rcpt)))
            .collect();
        // One post per key GitLab will find (issue 20): when both copies
        // resolve to the same key, the second recipient is not posted.
        let shared = keys[0] == keys[1] && keys[0] != "-";
        assert_eq!(bodies.len(), before + 2 - usize::from(shared), "{name}");
        if shared {
            assert!(
                log_line_for(&out, &keyed)
                    .contains(&format!("posted once for this key, with to=<{base}>")),
                "{name}: {out}"
            );
        }
        for (key, body) in keys.iter().zip(&bodies[before..]) {
            let posted = key_in_posted(INCOMING_TEMPLATE, &body.bytes);
            assert_eq!(*key, posted, "{name}");
        }
        seen.extend(keys.iter().map(|k| k.to_string()));
    }
    // Both kinds of result occurred: some e-mails have a key, some none.
    assert!(seen.iter().any(|k| k == KEY) && seen.iter().any(|k| k == "-"));
    assert!(seen.iter().any(|k| k == OTHER_KEY));
}

#[test]
fn postfixs_queue_id_leads_every_line_of_the_run() {
    let (env, _standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let run = env.deliver_merged(
        &[
            "--queue-id=4F2A81C0D3",
            "--sender=alice@example.org",
            "--",
            INCOMING_RCPT,
            UNKNOWN_RCPT,
        ],
        &message("queue-id"),
    );
    assert_eq!(run.code, Some(67), "{}", run.out());
    let out = run.out();
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("from=<") || l.contains("to=<"))
        .collect();
    assert_eq!(lines.len(), 3, "{}", run.out());
    for line in lines {
        assert!(line.starts_with("gitlab-mailgate: 4F2A81C0D3: "), "{line}");
    }
    // Anything but letters and digits is no queue id of Postfix's.
    let run = env.deliver_merged(&["--queue-id=a\nb", INCOMING_RCPT], &message("odd-id"));
    assert!(!run.out().contains("a\nb:"), "{}", run.out());
}
