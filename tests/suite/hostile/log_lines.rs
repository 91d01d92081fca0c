//! The log as an administrator follows a message through it (issue 19):
//! Postfix's queue id, sent by XFORWARD, leads every line of the
//! transaction (the `from=` line and RCPT refusals carry no other), a
//! hostile queue id cannot forge a line, and `serve` says what it runs
//! with in its first line, without a secret.

use crate::common::*;

#[test]
fn xforward_queue_id_leads_every_line_of_the_transaction() {
    let (env, _standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let mut server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    // As Postfix's lmtp client sends it (captured from Postfix 3.7).
    c.cmd("XFORWARD ADDR=127.0.0.1 PORT=51332", 250, "2.0.0");
    c.cmd(
        "XFORWARD PROTO=ESMTP HELO=test.localdomain IDENT=F303C98E612 SOURCE=LOCAL",
        250,
        "2.0.0",
    );
    c.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{UNKNOWN_RCPT}>"), 550, "5.1.1");
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
    c.cmd("DATA", 354, "");
    c.send(&stuffed(&crlf_message("xforward")));
    c.expect(250, "2.0.0");
    // In a transaction, and a queue id with a line break or a colon.
    c.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
    c.cmd("XFORWARD IDENT=X", 503, "5.5.1");
    c.cmd("RSET", 250, "2.0.0");
    c.cmd("XFORWARD IDENT=A+0Afrom=<forged>", 501, "5.5.4");
    c.cmd("XFORWARD IDENT=B+3A+20to=<x>", 250, "2.0.0");
    c.cmd("MAIL FROM:<mallory@example.org>", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{UNKNOWN_RCPT}>"), 550, "5.1.1");
    c.cmd("QUIT", 221, "2.0.0");
    assert!(
        server.wait_log("B??to??x?: to=<", 1),
        "{}",
        server.log_text()
    );
    let log = server.log_text();
    for want in [
        "F303C98E612: from=<alice@example.org>, size=".to_string(),
        format!("F303C98E612: to=<{UNKNOWN_RCPT}>, status="),
        format!("F303C98E612: to=<{INCOMING_RCPT}>, mailbox=incoming_email"),
        format!("B??to??x?: to=<{UNKNOWN_RCPT}>, status="),
    ] {
        assert!(log.contains(&want), "log lacks {want:?}:\n{log}");
    }
    assert!(!log.contains("forged"), "{log}");
    server.assert_alive();
}

#[test]
fn serve_names_version_mailboxes_and_gitlab_in_its_first_line() {
    let env = TestEnv::new(&Settings {
        service_desk: true,
        gitlab_url: "http://127.0.0.1:9/gitlab".into(),
        ..Settings::default()
    });
    let server = Server::start(&env);
    let log = server.log_text();
    let first = log.lines().next().unwrap_or_default();
    let want = format!(
        "gitlab-mailgate {} starting: mailboxes incoming_email <{INCOMING_TEMPLATE}>, \
         service_desk_email <{SERVICE_DESK_TEMPLATE}>; GitLab http://127.0.0.1:9/gitlab",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        first.ends_with(&want),
        "first line {first:?}, want {want:?}"
    );
    env.assert_no_secrets(log.as_bytes());
}

/// `setup` refuses a gitlab.yml address without `%{key}`; `check` refuses
/// the same in our configuration, with the same words (before, it passed:
/// every reply-by-email would then reach GitLab without its key).
#[test]
fn check_fails_an_address_without_a_key_as_setup_does() {
    let (env, _standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let text = std::fs::read_to_string(&env.config).expect("read the configuration");
    let keyless = text.replace(INCOMING_TEMPLATE, "incoming@incoming.example.com");
    assert_ne!(
        keyless, text,
        "the configuration has no {INCOMING_TEMPLATE}"
    );
    std::fs::write(&env.config, keyless).expect("write the configuration");
    let out = env.check();
    let text = out.out();
    assert_eq!(out.code, Some(1), "{text}");
    let fails: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(fails.len(), 1, "{text}");
    assert!(
        fails[0].contains("incoming_email address \"incoming@incoming.example.com\" has no %{key}: GitLab then finds no key in the address"),
        "{text}"
    );
}

/// An administrator on a stock Debian 12 (journald only) or after a
/// broken configuration finds the way in the documents: every mention of
/// /var/log/mail.log says what to do without it, the troubleshooting table
/// has each temporary reply and the start-limit recovery, the metrics
/// table lists what the guards do, and installing says what comes next.
#[test]
fn the_documents_cover_journald_recovery_metrics_and_the_next_step() {
    let read = |f: &str| std::fs::read_to_string(project_file(f)).expect(f);
    let readme = read("README.md");
    let man = read("examples/manpage.rs") + &read("examples/manpage/operations.rs");
    for (name, text) in [("README.md", &readme), ("the man page", &man)] {
        for paragraph in text.split("\n\n").filter(|p| p.contains("mail.log")) {
            assert!(
                paragraph.contains("journalctl") || paragraph.contains("maillog_file"),
                "{name}: mail.log without journalctl or maillog_file:\n{paragraph}"
            );
        }
        for want in [
            "4.7.0",
            "4.4.1",
            "4.3.0",
            "4.7.1",
            "Start request repeated too quickly",
            "reset-failed gitlab-mailgate.service gitlab-mailgate.socket",
            "journalctl -t gitlab-mailgate",
            "journalctl -u gitlab-mailgate.service",
            "journalctl -t postfix/smtpd",
            "guard_decisions_total",
            "lmtp_send_xforward_command",
        ] {
            let flat = text
                .replace("\\\n", " ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            assert!(flat.contains(want), "{name} lacks {want:?}");
        }
    }
    assert!(
        readme.contains("`status=\"discarded\"`"),
        "README's metrics table"
    );
    assert!(
        man.contains("[http]") && man.contains("/metrics"),
        "man page lacks [http]"
    );
    let postinst = read("packaging/debian/postinst");
    assert!(
        postinst.contains("echo \"gitlab-mailgate: next step: gitlab-mailgate setup --postfix\""),
        "postinst does not print the next step"
    );
}
