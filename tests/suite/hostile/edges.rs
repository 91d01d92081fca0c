//! The edges a careless admin or a hostile peer reaches (issue 18, items
//! 1–4 and 8): numbers out of range, a proxy's 400, a configuration or
//! secret that is no file, a recipient that looks like an option, the same
//! recipient given many times. Nothing may be lost (250 / exit 0 only after
//! GitLab's 2xx) and nothing may bounce for a fault that may pass.

use crate::common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `deliver` with `config` and `args`, the message on stdin.
fn deliver_with(config: &str, args: &[&str]) -> Run {
    let mut cmd = Command::new(bin());
    cmd.args(["deliver", "--config", config])
        .args(args)
        .env_remove("GITLAB_MAILGATE_CONFIG");
    run(&mut cmd, &message("edges"))
}

/// The DSN pipe(8) reads: the first line of standard output.
fn dsn(run: &Run) -> String {
    run.out().lines().next().unwrap_or_default().to_string()
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &std::path::Path) -> std::path::PathBuf {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    path.to_path_buf()
}

/// Rewrites the configuration so `[incoming_email] secret_file` is `path`.
fn point_incoming_secret_at(env: &TestEnv, path: &std::path::Path) {
    let text = std::fs::read_to_string(&env.config).unwrap();
    let old = toml_string(&env.incoming_secret.to_string_lossy());
    assert!(text.contains(&old));
    let text = text.replace(&old, &toml_string(&path.to_string_lossy()));
    write_file(&env.config, text.as_bytes(), 0o644);
}

#[test]
fn unlimited_numbers_are_refused_by_name_and_range_not_wrapped() {
    type Set = fn(&mut Settings);
    let cases: [(Set, &str); 2] = [
        (|s| s.max_message_size = usize::MAX, "max_message_size"),
        (|s| s.deadline_secs = u64::MAX, "deliver_deadline_secs"),
    ];
    for (set, key) in cases {
        let (env, standin) = TestEnv::with_standin(StandIn::builder(), set);
        let run = env.deliver_merged(&[INCOMING_RCPT], &message("unlimited"));
        assert_eq!(run.code, Some(75), "{key}: {}", run.out());
        assert!(dsn(&run).starts_with("4.3.5 "), "{key}: {}", run.out());
        assert!(
            run.out()
                .contains(&format!("{key} = 18446744073709551615 is out of range")),
            "{key}: {}",
            run.out()
        );
        assert!(
            standin.requests().is_empty(),
            "{key}: nothing may be posted"
        );
        let check = env.check();
        assert_ne!(check.code, Some(0));
        assert!(check.out().contains("is out of range"), "{}", check.out());
    }
    let (env, _standin) = TestEnv::with_standin(StandIn::builder(), |s| {
        s.guard = "slot_wait_secs = 18446744073709551615\n".into();
    });
    let check = env.check();
    assert!(
        check.out().contains(
            "[guard] slot_wait_secs = 18446744073709551615 is out of range: use 0 to 300"
        ),
        "{}",
        check.out()
    );
}

#[test]
fn a_retry_after_date_beyond_any_clock_defers_and_serve_lives() {
    let (env, mut standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    standin.set_mode("retry-far:429");
    let mut server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    c.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
    c.cmd("DATA", 354, "");
    c.send(&stuffed(&crlf_message("far")));
    c.expect(451, "4.4.5");
    c.cmd("QUIT", 221, "2.0.0");
    server.assert_alive();
    assert!(
        !server.log_text().contains("internal error"),
        "{}",
        server.log_text()
    );
}

#[test]
fn a_proxys_400_defers_and_gitlabs_own_400_is_taken_without_a_bounce() {
    let (env, mut standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    standin.set_mode("proxy400");
    let run = env.deliver_merged(&[INCOMING_RCPT], &message("proxy"));
    assert_eq!(run.code, Some(75), "{}", run.out());
    assert!(
        dsn(&run).starts_with("4.3.0 GitLab answered 400"),
        "{}",
        run.out()
    );
    standin.set_mode("400");
    let run = env.deliver_merged(&[INCOMING_RCPT], &message("too-large"));
    assert_eq!(run.code, Some(0), "{}", run.out());
    assert!(
        run.out()
            .contains("status=rejected by GitLab (too large; GitLab notified the sender)"),
        "{}",
        run.out()
    );
}

#[test]
fn a_configuration_or_secret_that_is_no_file_defers_at_once() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    // /dev/zero never ends; a FIFO without a writer never opens.
    let run = deliver_with("/dev/zero", &[INCOMING_RCPT]);
    assert_eq!(run.code, Some(75), "{}", run.out());
    assert!(run.err().contains("not a regular file"), "{}", run.err());
    // The test's own secret stays a file (the helpers read it to check no
    // output shows it); the configuration names a FIFO instead.
    let fifo = mkfifo(&env.dir().join("secret.fifo"));
    point_incoming_secret_at(&env, &fifo);
    let started = Instant::now();
    let run = env.deliver_merged(&[INCOMING_RCPT], &message("fifo"));
    assert_eq!(run.code, Some(75), "{}", run.out());
    assert!(dsn(&run).starts_with("4.3.5 "), "{}", run.out());
    assert!(run.out().contains("not a regular file"), "{}", run.out());
    // Well inside the run's deadline (60 s here): it did not wait for it.
    assert!(
        !run.out().contains("delivery deadline passed"),
        "{:?}: {}",
        started.elapsed(),
        run.out()
    );
    assert!(standin.requests().is_empty());
}

#[test]
fn a_secret_swapped_for_a_fifo_never_holds_up_serve() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |s| {
        s.guard = "null_sender = \"accept\"\nloop_limit = 0\n".into();
    });
    // serve reads a copy, which is then swapped for a FIFO.
    let copy = env.dir().join("swappable.secret");
    std::fs::copy(&env.incoming_secret, &copy).unwrap();
    point_incoming_secret_at(&env, &copy);
    let server = Server::start(&env);
    normal_delivery(&server, "before");
    let fifo = mkfifo(&env.dir().join("swapped.fifo"));
    std::fs::remove_file(&copy).unwrap();
    std::os::unix::fs::symlink(&fifo, &copy).unwrap();
    // The client re-reads the secret at most every 10 s: deliver until it
    // has looked at the FIFO; every message gets an answer meanwhile.
    let answered_after_reread =
        wait_until(Duration::from_secs(30), Duration::from_millis(500), || {
            let mut c = server.connect();
            c.hello();
            c.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
            c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
            c.cmd("DATA", 354, "");
            c.send(&stuffed(&crlf_message("during")));
            let reply = c.reply().expect("an answer, not a hang");
            (reply.code, reply.enhanced.as_str()) == (451, "4.3.5")
        });
    assert!(answered_after_reread, "{}", server.log_text());
    assert!(
        server.log_text().contains("not a regular file"),
        "{}",
        server.log_text()
    );
    drop(standin);
}

#[test]
fn a_recipient_that_looks_like_an_option_is_never_lost() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    for args in [
        vec!["-h@incoming.example.com"],
        vec!["--help"],
        vec!["-V"],
        vec!["--version@incoming.example.com"],
    ] {
        let run = env.deliver_merged(&args, &message("option"));
        assert_eq!(run.code, Some(75), "{args:?}: {}", run.out());
        assert!(dsn(&run).starts_with("4.3.5 "), "{args:?}: {}", run.out());
    }
    // As the shipped master.cf passes them, such addresses are addresses.
    let run = env.deliver_merged(
        &["--sender=-h@example.org", "--", "-h@incoming.example.com"],
        &message("dashes"),
    );
    assert_eq!(run.code, Some(67), "{}", run.out());
    assert!(standin.requests().is_empty());
    let master = std::fs::read_to_string(project_file("postfix/master.cf")).unwrap();
    assert!(
        master.contains("--sender=${sender} -- ${recipient}"),
        "master.cf must end the options before the addresses"
    );
}

#[test]
fn the_same_recipient_a_hundred_times_is_one_post_and_counted_by_the_loop_breaker() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |s| {
        s.guard = "null_sender = \"accept\"\nloop_limit = 2\n".into();
    });
    let server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    for m in 0..4 {
        c.cmd("MAIL FROM:<bot@example.org>", 250, "2.1.0");
        for _ in 0..100 {
            c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
        }
        c.cmd("DATA", 354, "");
        c.send(&stuffed(&crlf_message(&format!("hundred-{m}"))));
        let (code, enhanced) = if m < 2 {
            (250, "2.0.0")
        } else {
            (451, "4.7.1")
        };
        for _ in 0..100 {
            c.expect(code, enhanced);
        }
    }
    c.cmd("QUIT", 221, "2.0.0");
    assert_eq!(standin.bodies().len(), 2);
}
