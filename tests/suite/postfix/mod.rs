//! End to end with a real Postfix (the Debian package): mail sent over SMTP
//! for the incoming domain reaches a JWT-verifying GitLab stand-in through
//! the shipped Postfix configuration, once through the `pipe` entry and once
//! through LMTP (TCP and unix socket) to `gitlab-mailgate serve`.
//!
//! Needs root and Postfix installed (.ci/run installs it). Each test runs a
//! Postfix instance of its own beside the machine's (see
//! [`harness::Postfix`]), so they may run at once; they share the system
//! user with the package test ([`mailgate::Env`]). Waits are bounded polls;
//! run with `-- --nocapture` to see the Postfix log lines each test relied
//! on.

use crate::common;
mod faults;
mod guard;
mod harness;
pub(crate) mod mailgate;
mod prometheus;
mod setup;
mod shipped;
mod silent;
mod standin;
mod undo;

use harness::{Postfix, Setup, DOMAIN};
use mailgate::Env;
use shipped::Variant;
use standin::{requests, Request};
use std::path::PathBuf;
use std::time::Duration;

fn incoming_rcpt() -> String {
    format!("incoming+{}@{DOMAIN}", common::KEY)
}

fn service_desk_rcpt() -> String {
    format!("contact+grp-proj-7-issue-@{DOMAIN}")
}

/// A small message whose Message-ID names the test and this run, so its
/// copies at the stand-in can be counted.
fn message(rcpt: &str, id: &str) -> String {
    format!(
        "From: Alice <alice@example.org>\n\
         To: <{rcpt}>\n\
         Subject: e2e {id}\n\
         Message-ID: <{id}.{pid}@e2e.test>\n\
         Date: Thu, 26 Nov 2026 07:00:00 +0000\n\
         \n\
         Hello from the Postfix end-to-end test ({id}).\n\
         .a line that starts with a dot\n",
        pid = std::process::id()
    )
}

/// Refuses to run where it cannot, with a message saying why.
fn preflight() {
    let uid = std::process::Command::new("id").arg("-u").output();
    let is_root = uid.is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    assert!(
        is_root,
        "the Postfix end-to-end tests configure and start the system's Postfix: run them as root"
    );
    assert!(
        std::path::Path::new("/usr/sbin/postfix").exists()
            && std::path::Path::new("/etc/postfix/master.cf.proto").exists(),
        "Postfix is not installed (Debian package `postfix`; .ci/run installs it)"
    );
}

/// Postfix configured for `variant` with the shipped files; with
/// `verify`, also the fragment's optional recipient check.
fn postfix_for(variant: Variant, env: &Env, verify: bool) -> Postfix {
    let mut files = vec![shipped::transport(variant, env)];
    if verify {
        files.push(shipped::recipient_verify(env));
    }
    let mut master_cf = Vec::new();
    if variant == Variant::Pipe {
        master_cf.push(shipped::master_cf_pipe_entry(env));
    }
    Postfix::start(&Setup {
        files,
        main_cf: shipped::main_cf(env, verify),
        master_cf,
    })
}

/// The stand-in's accepted copies of message `id`.
fn accepted(outs: &[PathBuf], id: &str) -> Vec<Request> {
    let needle = format!("Message-ID: <{id}.{}@e2e.test>", std::process::id());
    requests(outs)
        .into_iter()
        .filter(|r| r.status == "200" && r.jwt_ok)
        .filter(|r| {
            r.body
                .as_deref()
                .is_some_and(|b| String::from_utf8_lossy(b).contains(&needle))
        })
        .collect()
}

/// Sends `id` to `rcpt`, waits for Postfix's `status=sent`, and checks the
/// stand-in got it exactly once, at `mailbox`, with our Delivered-To on top;
/// returns Postfix's queue id.
fn send_and_expect_delivery(
    pf: &Postfix,
    outs: &[PathBuf],
    rcpt: &str,
    mailbox: &str,
    id: &str,
) -> String {
    let qid = pf.send(rcpt, &message(rcpt, id));
    pf.wait_status(&qid, rcpt, "sent");
    pf.wait_gone(&qid);
    expect_once(outs, rcpt, mailbox, id);
    qid
}

/// [`send_and_expect_delivery`] from a person's address: for a
/// configuration with the guards' defaults, which refuse the null sender.
fn send_from_alice_and_expect_delivery(
    pf: &Postfix,
    outs: &[PathBuf],
    rcpt: &str,
    mailbox: &str,
    id: &str,
) {
    let qid = pf.send_from("alice@example.org", rcpt, &message(rcpt, id));
    pf.wait_status(&qid, rcpt, "sent");
    pf.wait_gone(&qid);
    expect_once(outs, rcpt, mailbox, id);
}

fn expect_once(outs: &[PathBuf], rcpt: &str, mailbox: &str, id: &str) {
    let got = accepted(outs, id);
    let mailboxes: Vec<&str> = got.iter().map(|r| r.mailbox.as_str()).collect();
    assert_eq!(got.len(), 1, "{id}: copies accepted at {mailboxes:?}");
    assert_eq!(got[0].mailbox, mailbox, "{id}: posted to the wrong mailbox");
    let body = String::from_utf8_lossy(got[0].body.as_deref().unwrap_or_default()).into_owned();
    let top = format!("Delivered-To: {rcpt}\r\n");
    assert!(
        body.starts_with(&top),
        "{id}: body does not start with {top:?}:\n{body}"
    );
    assert_eq!(
        body.matches("Delivered-To:").count(),
        1,
        "{id}: Postfix must not add a Delivered-To of its own:\n{body}"
    );
    assert!(
        body.contains("\n.a line that starts with a dot"),
        "{id}: dot-stuffing not undone:\n{body}"
    );
}

/// A recipient GitLab has no use for is bounced with 5.1.1 and never
/// reaches the stand-in.
fn expect_bounce(pf: &Postfix, outs: &[PathBuf], rcpt: &str, id: &str) -> String {
    let before = requests(outs).len();
    let qid = pf.send(rcpt, &message(rcpt, id));
    let line = pf.wait_status(&qid, rcpt, "bounced");
    assert!(line.contains("dsn=5.1.1"), "expected dsn=5.1.1: {line}");
    assert_eq!(requests(outs).len(), before, "{rcpt} reached the stand-in");
    line
}

/// GitLab failing (stand-in answering 500, or down) defers the message:
/// it stays in Postfix's queue; after recovery and `postqueue -f` it
/// arrives exactly once.
fn expect_deferral_then_delivery(pf: &Postfix, outs: &[PathBuf], id: &str, recover: impl FnOnce()) {
    let rcpt = incoming_rcpt();
    let qid = pf.send(&rcpt, &message(&rcpt, id));
    let deferred = pf.wait_status(&qid, &rcpt, "deferred");
    assert!(
        deferred.contains("dsn=4."),
        "expected a 4.x.x DSN: {deferred}"
    );
    pf.wait_for(&format!("{qid} in the deferred queue"), || {
        (pf.queue_of(&qid).as_deref() == Some("deferred")).then_some(())
    });
    assert!(
        accepted(outs, id).is_empty(),
        "{id} accepted while GitLab was failing"
    );

    recover();
    pf.flush();
    pf.wait_status(&qid, &rcpt, "sent");
    pf.wait_gone(&qid);
    expect_once(outs, &rcpt, "incoming_email", id);
    let sent_lines = pf
        .statuses(&qid, &rcpt)
        .into_iter()
        .filter(|l| l.contains("status=sent"))
        .count();
    assert_eq!(sent_lines, 1, "{qid} logged as sent more than once");
}

#[test]
fn pipe_delivers_both_mailboxes_bounces_unknown_defers_on_gitlab_error() {
    preflight();
    let env = Env::new();
    let outs = vec![env.dir.join("gitlab")];
    let mut gitlab = env.gitlab(&outs[0], "ok");
    let pf = postfix_for(Variant::Pipe, &env, false);

    send_and_expect_delivery(&pf, &outs, &incoming_rcpt(), "incoming_email", "pipe-in");
    send_and_expect_delivery(
        &pf,
        &outs,
        &service_desk_rcpt(),
        "service_desk_email",
        "pipe-sd",
    );
    expect_bounce(&pf, &outs, &format!("nobody@{DOMAIN}"), "pipe-nobody");
    expect_bounce(
        &pf,
        &outs,
        &format!("incoming+not-a-key@{DOMAIN}"),
        "pipe-badkey",
    );

    gitlab.set_mode("500");
    expect_deferral_then_delivery(&pf, &outs, "pipe-500", || gitlab.set_mode("ok"));
    let failed = requests(&outs)
        .into_iter()
        .filter(|r| r.status == "500")
        .count();
    assert!(failed >= 1, "the stand-in never answered 500");
    // pipe(8) puts the command's output into Postfix's log lines.
    env.assert_no_secrets(&pf.log_lines().join("\n"));
}

/// Delivery through `serve`: both mailboxes, an unknown recipient refused at
/// RCPT, GitLab down → deferred, back up + flush → delivered once.
fn lmtp_end_to_end(variant: Variant, tag: &str) {
    preflight();
    let env = Env::new();
    // One directory per stand-in run: it is killed and started again.
    let outs = vec![env.dir.join("gitlab-1"), env.dir.join("gitlab-2")];
    let gitlab = env.gitlab(&outs[0], "ok");
    let serve = env.serve();
    let pf = postfix_for(variant, &env, false);

    let qid = send_and_expect_delivery(
        &pf,
        &outs,
        &incoming_rcpt(),
        "incoming_email",
        &format!("{tag}-in"),
    );
    send_and_expect_delivery(
        &pf,
        &outs,
        &service_desk_rcpt(),
        "service_desk_email",
        &format!("{tag}-sd"),
    );
    let bounced = expect_bounce(
        &pf,
        &outs,
        &format!("nobody@{DOMAIN}"),
        &format!("{tag}-nobody"),
    );
    assert!(
        bounced.contains("RCPT TO"),
        "an unknown recipient must be refused at RCPT time: {bounced}"
    );
    // lmtp_send_xforward_command (the shipped main.cf): Postfix names its
    // queue id, and our lines of the message start with it, the RCPT
    // refusal and the from= line too.
    let bounced_qid = bounced
        .split_once("]: ")
        .and_then(|(_, rest)| rest.split_once(": to=<"))
        .map(|(id, _)| id.to_string())
        .expect("a queue id in Postfix's bounce line");
    let log = serve.log_text();
    for want in [
        format!("{qid}: from=<"),
        format!("{qid}: to=<{}>, mailbox=incoming_email", incoming_rcpt()),
        format!("{bounced_qid}: to=<nobody@{DOMAIN}>, status="),
    ] {
        assert!(log.contains(&want), "serve's log lacks {want:?}:\n{log}");
    }

    gitlab.kill();
    let mut restarted = None;
    expect_deferral_then_delivery(&pf, &outs, &format!("{tag}-down"), || {
        restarted = Some(env.gitlab(&outs[1], "ok"));
    });
    env.assert_no_secrets(&serve.log_text());
    env.assert_no_secrets(&pf.log_lines().join("\n"));
    // GitLab stays up until Postfix has stopped.
    drop(pf);
    drop(restarted);
}

#[test]
fn lmtp_inet_delivers_bounces_unknown_at_rcpt_defers_while_gitlab_down() {
    lmtp_end_to_end(Variant::LmtpInet, "lmtp-inet");
}

#[test]
fn lmtp_unix_delivers_bounces_unknown_at_rcpt_defers_while_gitlab_down() {
    lmtp_end_to_end(Variant::LmtpUnix, "lmtp-unix");
}

/// The fragment's optional recipient check: Postfix probes `serve` with an
/// LMTP RCPT and refuses an unknown recipient during the SMTP dialogue
/// (no bounce, no backscatter); a GitLab address still gets through.
#[test]
fn lmtp_recipient_check_refuses_unknown_recipients_during_smtp() {
    preflight();
    let env = Env::new();
    let outs = vec![env.dir.join("gitlab")];
    let _gitlab = env.gitlab(&outs[0], "ok");
    let _serve = env.serve();
    let pf = postfix_for(Variant::LmtpInet, &env, true);

    let nobody = format!("nobody@{DOMAIN}");
    let refused = send_until_answered(&pf, &nobody, "verify-nobody")
        .expect_err("Postfix accepted mail for an unknown recipient");
    assert!(
        refused.starts_with("550 5.1.1"),
        "expected 550 5.1.1: {refused}"
    );
    for line in pf.log_matching("reject: RCPT from") {
        println!("postfix log: {line}");
    }
    assert!(
        requests(&outs).is_empty(),
        "a probe or message reached GitLab"
    );

    let rcpt = incoming_rcpt();
    let qid = send_until_answered(&pf, &rcpt, "verify-in")
        .unwrap_or_else(|e| panic!("{rcpt} refused: {e}"));
    pf.wait_status(&qid, &rcpt, "sent");
    expect_once(&outs, &rcpt, "incoming_email", "verify-in");
}

/// Sends, trying again (bounded) while Postfix answers 450 "verification
/// in progress"; returns the queue id or the final refusal.
fn send_until_answered(pf: &Postfix, rcpt: &str, id: &str) -> Result<String, String> {
    let mut last = Err(String::new());
    common::wait_until(Duration::from_secs(10), Duration::from_secs(1), || {
        last = pf.try_send(rcpt, &message(rcpt, id));
        !matches!(&last, Err(reply) if reply.starts_with('4'))
    });
    last
}
