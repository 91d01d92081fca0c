//! Security properties of the real binary: secrets and tokens never
//! appear in any output, secret files others could write are refused,
//! `serve` listens only where configured, and a recipient that is no
//! GitLab address never causes a request to GitLab.
//!
//! Loopback only; every wait bounded; nothing asserts on timing.

use crate::common;

use common::*;
use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;

/// One DATA transaction to `rcpt` on `c` (LHLO done); the final reply must
/// be `code enhanced`.
fn transaction(c: &mut Client, rcpt: &str, subject: &str, code: u16, enhanced: &str) {
    c.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{rcpt}>"), 250, "2.1.5");
    c.cmd("DATA", 354, "");
    c.send(&stuffed(&crlf_message(subject)));
    c.expect(code, enhanced);
}

#[test]
fn serve_logs_no_secret_and_no_token_whatever_gitlab_answers() {
    let (env, mut standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    transaction(&mut c, INCOMING_RCPT, "sec-ok", 250, "2.0.0");
    transaction(&mut c, SERVICE_DESK_RCPT, "sec-ok-sd", 250, "2.0.0");
    standin.set_mode("401");
    transaction(&mut c, INCOMING_RCPT, "sec-401", 451, "4.7.0");
    transaction(&mut c, SERVICE_DESK_RCPT, "sec-401-sd", 451, "4.7.0");
    standin.set_mode("500");
    transaction(&mut c, INCOMING_RCPT, "sec-500", 451, "4.3.0");
    c.cmd("MAIL FROM:<>", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{UNKNOWN_RCPT}>"), 550, "5.1.1");
    c.cmd("QUIT", 221, "2.0.0");

    let (code, log) = server.stop();
    assert_eq!(code, Some(0), "{log}");
    // The log has the lines that could leak: one per delivery and refusal.
    for status in ["status=sent", "status=deferred", "status=bounced"] {
        assert!(log.contains(status), "no {status} line:\n{log}");
    }
    assert_eq!(standin.requests().len(), 5);
    env.assert_no_secrets(log.as_bytes());
    env.assert_no_secrets(standin.log().as_bytes());

    // Pipe mode, the same answers (TestEnv::deliver checks its output).
    let msg = message("sec-pipe");
    for (mode, rcpt, exit) in [
        ("ok", INCOMING_RCPT, 0),
        ("401", INCOMING_RCPT, 75),
        ("401", SERVICE_DESK_RCPT, 75),
        ("500", INCOMING_RCPT, 75),
        ("ok", UNKNOWN_RCPT, 67),
    ] {
        standin.set_mode(mode);
        let run = env.deliver_merged(&[rcpt], &msg);
        assert_eq!(run.code, Some(exit), "{mode} {rcpt}: {}", run.out());
        assert!(!run.stdout.is_empty(), "{mode}: no output to look at");
    }
    // And `check`, which signs a token on purpose: TestEnv::check asserts
    // that its output shows no secret and no token.
    env.check();
}

#[test]
fn secret_files_others_may_write_are_refused_everywhere() {
    for mode in [0o660, 0o666] {
        for which in ["incoming", "service_desk"] {
            let env = TestEnv::new(&Settings::default());
            let file = match which {
                "incoming" => env.incoming_secret.clone(),
                _ => env.service_desk_secret.clone(),
            };
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            let name = file.display().to_string();
            let what = format!("{which} secret at {mode:o}");

            let run = env.deliver(&[INCOMING_RCPT], &message("perm"));
            assert_eq!(run.code, Some(75), "{what}: {}{}", run.out(), run.err());
            assert!(run.out().starts_with("4.3.5 "), "{what}: {}", run.out());
            assert!(run.err().contains(&name), "{what}: {}", run.err());

            let serve = common::run(env.command("serve").env_remove("LISTEN_FDS"), b"");
            assert_ne!(serve.code, Some(0), "{what}: serve started");
            assert!(serve.code.is_some(), "{what}: serve died of a signal");
            assert!(serve.err().contains(&name), "{what}: {}", serve.err());
            env.assert_no_secrets(&serve.stdout);
            env.assert_no_secrets(&serve.stderr);

            // TestEnv::check also asserts its output shows no secret.
            let check = env.check();
            let out = check.out();
            assert_eq!(check.code, Some(1), "{what}: {out}");
            assert!(
                out.lines()
                    .any(|l| l.starts_with("FAIL") && l.contains(&name)),
                "{what}: {out}"
            );
        }
    }
}

/// Asserts nothing answers at `addr` (refused, or not even routable).
fn assert_not_served(addr: &str) {
    if let Ok(s) = TcpStream::connect(addr) {
        panic!("{addr} accepted a connection: {s:?}");
    }
}

#[test]
fn serve_listens_only_on_the_configured_address() {
    let port = unused_port();
    let env = TestEnv::new(&Settings {
        lmtp_listen: vec![format!("127.0.0.1:{port}")],
        ..Settings::default()
    });
    let server = Server::start(&env);
    let want = BTreeSet::from([format!("127.0.0.1:{port}")]);
    assert_eq!(listening_sockets(server.pid()), want);
    Client::connect(&format!("127.0.0.1:{port}")).expect(220, "");
    // 127.0.0.2 is loopback too on Linux, but not configured.
    assert_not_served(&format!("127.0.0.2:{port}"));
    assert_not_served(&format!("[::1]:{port}"));

    // Only a unix socket configured: no TCP at all.
    let dir = temp_dir();
    let socket = dir.path().join("lmtp.sock");
    let env = TestEnv::new(&Settings {
        lmtp_listen: vec![format!("unix:{}", socket.display())],
        ..Settings::default()
    });
    let server = Server::start(&env);
    let want = BTreeSet::from([format!("unix:{}", socket.display())]);
    assert_eq!(listening_sockets(server.pid()), want);
}

#[test]
fn without_an_lmtp_section_serve_listens_on_127_0_0_1_port_2424_only() {
    let env = TestEnv::new(&Settings::default());
    let text = env.config_text(&Settings::default());
    let (without, _) = text.split_once("\n[lmtp]\n").expect("an [lmtp] section");
    assert!(!without.contains("[lmtp]") && !without.contains("listen"));
    std::fs::write(&env.config, without).unwrap();

    // The default port must be free: no other test uses it, so something
    // else on the machine holding it is a failure of the environment.
    if let Err(e) = TcpListener::bind("127.0.0.1:2424") {
        panic!("127.0.0.1:2424, the default LMTP port, is busy ({e}): this test needs it free");
    }
    let server = Server::start(&env);
    let want = BTreeSet::from(["127.0.0.1:2424".to_string()]);
    assert_eq!(listening_sockets(server.pid()), want);
    assert_eq!(server.addr, "127.0.0.1:2424");
    server.connect().expect(220, "");
    assert_not_served("127.0.0.2:2424");
    assert_not_served("[::1]:2424");
}

/// Recipients that are no GitLab address under the test configuration
/// (no catch-all, strict keys).
const NOT_GITLAB: [&str; 12] = [
    UNKNOWN_RCPT,
    "incoming@elsewhere.example.org",
    "incoming+59d8df8370b7e95c5a49fbf86aeb2c93@elsewhere.example.org",
    "incoming+59d8df8370b7e95c5a49fbf86aeb2c93@incoming.example.com.evil.example",
    "incoming+59d8df8370b7e95c5a49fbf86aeb2c93@sub.incoming.example.com",
    "Incoming+59d8df8370b7e95c5a49fbf86aeb2c93@incoming.example.com",
    "incoming+59D8DF8370B7E95C5A49FBF86AEB2C93@incoming.example.com",
    "incoming+nonsense@incoming.example.com",
    "incoming+@incoming.example.com",
    "someone@incoming.example.com",
    "contact+59d8df8370b7e95c5a49fbf86aeb2c93@incoming.example.com",
    "contact+group/project+token@incoming.example.com",
];

#[test]
fn recipients_that_are_no_gitlab_address_never_cause_a_request() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let mut server = Server::start(&env);
    let mut c = server.connect();
    c.hello();
    c.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
    for rcpt in NOT_GITLAB {
        c.cmd(&format!("RCPT TO:<{rcpt}>"), 550, "5.1.1");
    }
    c.cmd("RCPT TO:<postmaster>", 550, "5.1.1");
    c.cmd("RCPT TO:<>", 550, "5.1.1");
    // Without an accepted recipient no message is taken, by DATA or BDAT.
    c.cmd("DATA", 503, "5.5.1");
    c.send(b"BDAT 5 LAST\r\nhello");
    c.expect(503, "5.5.1");
    c.cmd("QUIT", 221, "2.0.0");
    server.assert_alive();

    let msg = message("not-gitlab");
    for rcpt in NOT_GITLAB.iter().chain(&["postmaster", ""]) {
        let run = env.deliver(&[rcpt], &msg);
        assert_eq!(run.code, Some(67), "{rcpt:?}: {}", run.out());
        assert!(run.out().starts_with("5.1.1 "), "{rcpt:?}: {}", run.out());
    }
    let run = env.deliver(&NOT_GITLAB, &msg);
    assert_eq!(run.code, Some(67), "{}", run.out());
    assert!(standin.requests().is_empty(), "{:?}", standin.requests());
}
