//! `gitlab-mailgate setup --postfix` against an unconfigured Postfix
//! instance and a gitlab.yml in Omnibus layout: it writes the
//! configuration and routes the domain, a second run changes nothing, and
//! a dry run leaves Postfix's configuration directory as it was.

use super::harness::{tree_hash, Postfix, DOMAIN};
use super::mailgate::Env;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

/// `ENV/gitlab-rails/etc/gitlab.yml` from tests/data/gitlab.yml, with
/// GitLab at the stand-in's port and Omnibus's secret files beside it
/// (copies of the stand-in's secrets); returns the gitlab.yml path.
pub fn omnibus_gitlab_yml(env: &Env) -> PathBuf {
    let etc = env.dir.join("gitlab-rails/etc");
    fs::create_dir_all(&etc).expect("create gitlab-rails/etc");
    for dir in [env.dir.join("gitlab-rails"), etc.clone()] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let text = fs::read_to_string(crate::common::project_file("tests/data/gitlab.yml"))
        .expect("read tests/data/gitlab.yml")
        .replace(
            "@GITLAB_URL@",
            &format!("http://127.0.0.1:{}", env.gitlab_port),
        )
        .replace("@DOMAIN@", DOMAIN);
    let yml = etc.join("gitlab.yml");
    env.write_private(&yml, &text);
    let secrets = [
        ("incoming_email", &env.incoming_secret),
        ("service_desk_email", &env.service_desk_secret),
    ];
    for (mailbox, secret) in secrets {
        let text = fs::read_to_string(secret).expect("read secret");
        env.write_private(&etc.join(format!("gitlab_{mailbox}_secret")), &text);
    }
    yml
}

/// Runs `gitlab-mailgate setup` for `pf`, delivering over TCP to the
/// test's port; returns the exit code and the output.
fn setup(env: &Env, pf: &Postfix, yml: &std::path::Path, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(&env.bin)
        .arg("setup")
        .arg("--gitlab-config")
        .arg(yml)
        .arg("--config")
        .arg(&env.config)
        .args(["--postfix-config", pf.config_dir()])
        // Not /var/lib/gitlab-mailgate: the record of a test instance
        // stays with the test.
        .arg("--state-file")
        .arg(env.dir.join("setup-undo.toml"))
        .arg("--lmtp-target")
        .arg(format!("lmtp:inet:127.0.0.1:{}", env.lmtp_port))
        .args(extra)
        .output()
        .expect("run gitlab-mailgate setup");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "--- setup {extra:?} (exit {:?}):\n{text}",
        out.status.code()
    );
    env.assert_no_secrets(&text);
    (out.status.code(), text)
}

#[test]
fn setup_routes_an_unconfigured_postfix_and_a_second_run_changes_nothing() {
    super::preflight();
    let env = Env::new();
    let outs = vec![env.dir.join("gitlab")];
    let _gitlab = env.gitlab(&outs[0], "ok");
    let yml = omnibus_gitlab_yml(&env);
    let pf = Postfix::bare();

    // Env wrote a configuration of its own: --force replaces it.
    let (code, first) = setup(&env, &pf, &yml, &["--force"]);
    for want in [
        "change  write",
        "config_file = ",
        "-e transport_maps=texthash:",
        &format!("-e relay_domains={DOMAIN}"),
        "-e lmtp_send_xforward_command=yes",
        &format!(
            "-e relay_recipient_maps=socketmap:inet:127.0.0.1:{}:gitlab",
            env.lookup_port
        ),
        "ok    postfix -c ",
        "GitLab's settings read from",
        &format!(
            "Postfix routes {DOMAIN} to lmtp:inet:127.0.0.1:{}",
            env.lmtp_port
        ),
    ] {
        assert!(first.contains(want), "first run lacks {want:?}:\n{first}");
    }
    // Nothing listens yet: check says so (LMTP, the recipient lookup), and
    // those are its only failures.
    assert_eq!(code, Some(1), "{first}");
    let fails: Vec<&str> = first.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        fails.len() == 2
            && fails[0].contains("does not answer LHLO")
            && fails[1].contains("recipient lookup on"),
        "{first}"
    );

    let _serve = env.serve_waiting(true, false);
    pf.launch();
    let (code, second) = setup(&env, &pf, &yml, &[]);
    assert_eq!(code, Some(0), "{second}");
    assert!(second.contains("setup: nothing changed"), "{second}");
    assert!(!second.lines().any(|l| l.starts_with("change")), "{second}");
    assert!(second.contains("answers LHLO"), "{second}");
    assert!(second.contains(": OK incoming_email"), "{second}");
    assert!(second.contains(": NOTFOUND"), "{second}");

    super::send_from_alice_and_expect_delivery(
        &pf,
        &outs,
        &super::incoming_rcpt(),
        "incoming_email",
        "setup-in",
    );

    // check --send-test: Postfix asks gitlab-mailgate and refuses it in SMTP.
    let out = Command::new(&env.bin)
        .args(["check", "--send-test", "--postfix-config", pf.config_dir()])
        .arg("--config")
        .arg(&env.config)
        .output()
        .expect("run gitlab-mailgate check");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("--- check --send-test:\n{text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("asked gitlab-mailgate and refused"), "{text}");
}

#[test]
fn setup_dry_run_changes_nothing() {
    super::preflight();
    let env = Env::new();
    let yml = omnibus_gitlab_yml(&env);
    let pf = Postfix::bare();
    let etc = std::path::Path::new(pf.config_dir());
    let (postfix_before, config_before) = (tree_hash(etc), fs::read(&env.config).unwrap());

    let (code, out) = setup(&env, &pf, &yml, &["--force", "--dry-run"]);
    assert_eq!(code, Some(0), "{out}");
    for want in [
        "would  write",
        &format!("would  postconf -c {} -e transport_maps=", pf.config_dir()),
        "relay_domains=",
        "setup: dry run, ",
    ] {
        assert!(out.contains(want), "dry run lacks {want:?}:\n{out}");
    }
    assert_eq!(
        tree_hash(etc),
        postfix_before,
        "a dry run changed {}",
        etc.display()
    );
    assert_eq!(
        fs::read(&env.config).unwrap(),
        config_before,
        "a dry run wrote the configuration"
    );
}

#[test]
fn setup_copies_what_the_service_user_cannot_read() {
    super::preflight();
    let env = Env::new();
    let outs = vec![env.dir.join("gitlab")];
    let _gitlab = env.gitlab(&outs[0], "ok");
    let yml = omnibus_gitlab_yml(&env);
    // As on Omnibus: gitlab-rails/etc is 0700 for GitLab's user alone.
    let etc = yml.parent().unwrap();
    fs::set_permissions(etc, fs::Permissions::from_mode(0o700)).expect("chmod");
    let pf = Postfix::bare();

    let (_, first) = setup(&env, &pf, &yml, &["--force"]);
    for want in [
        "change  copy ",
        "gitlab_incoming_email_secret to ",
        "cannot enter the directory",
        "service_desk_email_secret (root:gitlab-mailgate 0640)",
    ] {
        assert!(first.contains(want), "first run lacks {want:?}:\n{first}");
    }
    let written = fs::read_to_string(&env.config).expect("read the configuration");
    assert!(
        written.contains("address = \"incoming+%{key}@incoming.example.com\"")
            && written.contains("url = \"http://127.0.0.1:")
            && !written.contains("config_file"),
        "{written}"
    );
    let copy = env.dir.join("incoming_email_secret");
    assert_eq!(
        fs::metadata(&copy)
            .expect("the copied secret")
            .permissions()
            .mode()
            & 0o777,
        0o640
    );
    // The service user reads the copies: serve starts and delivers.
    let _serve = env.serve_waiting(true, false);
    pf.launch();
    let (code, second) = setup(&env, &pf, &yml, &[]);
    assert_eq!(code, Some(0), "{second}");
    assert!(second.contains("setup: nothing changed"), "{second}");
    super::send_from_alice_and_expect_delivery(
        &pf,
        &outs,
        &super::incoming_rcpt(),
        "incoming_email",
        "setup-copy",
    );
}

/// The quick start as the README gives it (`setup --postfix`) refuses an
/// unknown address and a key GitLab cannot act on in the SMTP dialogue
/// (issue 19 item 2): 550 5.1.1 to the client, nothing queued, no
/// non-delivery notice to the (forged) sender. A GitLab address is still
/// delivered, and with gitlab-mailgate down Postfix answers 451 (the
/// sender retries; nothing is lost).
#[test]
fn setup_refuses_unknown_recipients_during_smtp_without_backscatter() {
    super::preflight();
    let env = Env::new();
    let outs = vec![env.dir.join("gitlab")];
    let _gitlab = env.gitlab(&outs[0], "ok");
    let yml = omnibus_gitlab_yml(&env);
    let pf = Postfix::bare();
    let (_, out) = setup(&env, &pf, &yml, &["--force"]);
    assert!(
        out.contains("relay_recipient_maps=socketmap:inet:"),
        "{out}"
    );
    let serve = env.serve_waiting(true, false);
    pf.launch();

    let forged = "victim@sender.example";
    for rcpt in [
        format!("nobody@{DOMAIN}"),
        format!("incoming+not-a-gitlab-key@{DOMAIN}"),
    ] {
        let reply = pf
            .try_send_from(forged, &rcpt, &super::message(&rcpt, "backscatter"))
            .expect_err("Postfix accepted mail for an unknown recipient");
        assert!(reply.starts_with("550 5.1.1"), "{rcpt}: {reply}");
    }
    super::send_from_alice_and_expect_delivery(
        &pf,
        &outs,
        &super::incoming_rcpt(),
        "incoming_email",
        "lookup-in",
    );
    let log = pf.log_lines().join("\n");
    assert!(
        log.contains("User unknown in relay recipient table"),
        "{log}"
    );
    assert!(!log.contains("sender non-delivery notification"), "{log}");
    assert_eq!(pf.queued(), 0, "something stayed in the queue:\n{log}");

    // gitlab-mailgate down: the lookup fails, Postfix defers in SMTP.
    drop(serve);
    let rcpt = super::incoming_rcpt();
    let reply = pf
        .try_send_from(forged, &rcpt, &super::message(&rcpt, "down"))
        .expect_err("Postfix accepted mail while the lookup was down");
    assert!(reply.starts_with("451 4.3.0"), "{reply}");
    assert_eq!(pf.queued(), 0);
}

/// `relay_recipient_maps` applies to every relay domain: on a host that
/// relays another domain with no recipient table, the lookup would refuse
/// all its mail, so setup stops before changing Postfix and says why.
#[test]
fn setup_stops_before_its_lookup_would_refuse_another_relay_domain() {
    super::preflight();
    let env = Env::new();
    let yml = omnibus_gitlab_yml(&env);
    let pf = Postfix::start(&super::harness::Setup {
        files: Vec::new(),
        main_cf: vec![("relay_domains".into(), "other.example".into())],
        master_cf: Vec::new(),
    });
    let etc = std::path::Path::new(pf.config_dir());
    let before = tree_hash(etc);
    let (code, out) = setup(&env, &pf, &yml, &["--force"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("relay_domains also lists other.example")
            && out.contains("relay_recipient_maps is empty"),
        "{out}"
    );
    assert_eq!(tree_hash(etc), before, "setup changed Postfix anyway");
}
