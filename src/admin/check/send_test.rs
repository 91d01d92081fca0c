//! `check --send-test`: one message through Postfix's own smtpd to an
//! address of a GitLab mailbox whose key fits none of GitLab's shapes, from
//! the null sender. With the recipient lookup (`relay_recipient_maps`),
//! Postfix asks gitlab-mailgate and refuses it in the SMTP dialogue;
//! without, gitlab-mailgate refuses it (550 5.1.1) over LMTP. Either way
//! GitLab is not asked, nothing is created there and no bounce goes
//! anywhere; what Postfix says or logs for it shows how far the route works.
//!
//! Needs a mailbox with `strict_keys` and without `catch_all` (otherwise
//! the message would reach GitLab) and Postfix's log: `maillog_file`, else
//! the journal, else `/var/log/mail.log` (see [`postfix_log`]); it says
//! which it read.

use super::postfix_log::{self, Host, Reader, Source};
use super::report::Report;
use crate::admin::postfix_conf::Postfix;
use crate::config::Config;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The key of the test address: no GitLab handler takes it.
const TEST_KEY: &str = "gitlab-mailgate-route-test";

/// How long to wait for Postfix's verdict.
const WAIT: Duration = Duration::from_secs(60);

pub(super) fn run(report: &mut Report, config: &Config, pf: &Postfix) {
    let rcpt = config
        .mailboxes
        .iter()
        .filter(|m| m.strict_keys && !m.catch_all && !crate::mail_key::is_valid(m.kind, TEST_KEY))
        .find_map(|m| m.template.with_key(TEST_KEY));
    let Some(rcpt) = rcpt else {
        return report.warn(
            "send-test skipped: it needs a mailbox with %{key}, strict_keys = true and \
             catch_all = false (else the test message would reach GitLab)",
        );
    };
    let Some(addr) = smtpd_address(pf) else {
        return report.fail("send-test: no smtpd inet service in Postfix's master.cf");
    };
    let host = Host::here(
        pf.get("maillog_file").unwrap_or_default(),
        pf.get("syslog_name").unwrap_or_default(),
    );
    let source = postfix_log::choose(&host);
    let log = Reader::start(source.clone());
    let queue_id = match send(&addr, &rcpt) {
        Ok(id) => id,
        // The recipient lookup (or reject_unverified_recipient) refuses it
        // during SMTP after asking gitlab-mailgate: the route works.
        Err(reply) if reply.starts_with("550") && reply.contains("5.1.1") => {
            return report.ok(format_args!(
                "send-test: Postfix ({addr}) asked gitlab-mailgate and refused {rcpt} during SMTP: {reply}"
            ))
        }
        Err(e) => return report.fail(format_args!("send-test: SMTP to {addr} failed: {e}")),
    };
    if source == Source::Nowhere {
        return report.fail(format_args!(
            "send-test: Postfix took {queue_id} for {rcpt}, but there is {source}"
        ));
    }
    let started = Instant::now();
    while started.elapsed() < WAIT {
        let text = log.read();
        if let Some(line) = postfix_log::status_line(&text, &queue_id, &rcpt) {
            let verdict = line.split(", status=").nth(1).unwrap_or(line);
            return if line.contains("status=bounced") && line.contains("5.1.1") {
                report.ok(format_args!(
                    "send-test: {queue_id} to {rcpt} reached gitlab-mailgate, which refused \
                     the test key as it should: status={verdict} (read from {source})"
                ))
            } else if line.contains("status=sent") {
                report.warn(format_args!(
                    "send-test: {queue_id} was delivered (GitLab has it): status={verdict} \
                     (read from {source})"
                ))
            } else {
                report.fail(format_args!(
                    "send-test: {queue_id} to {rcpt}: status={verdict} (read from {source})"
                ))
            };
        }
        // journalctl is a process per look: not as often as a file read.
        let pause = match source {
            Source::Journal(_) => 1000,
            _ => 200,
        };
        std::thread::sleep(Duration::from_millis(pause));
    }
    // The journal shows others' lines only to root and its readers.
    let hint = match source {
        Source::Journal(_) => "; run as root or in group systemd-journal",
        _ => "",
    };
    report.fail(format_args!(
        "send-test: no delivery status for {queue_id} in {source} within {} s (postqueue -p{hint})",
        WAIT.as_secs()
    ))
}

/// Where Postfix's first smtpd listens, from `postconf -M`.
fn smtpd_address(pf: &Postfix) -> Option<String> {
    let services = pf.master_services().ok()?;
    services.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || f[1] != "inet" || f[7] != "smtpd" {
            return None;
        }
        let (host, port) = f[0].rsplit_once(':').unwrap_or(("127.0.0.1", f[0]));
        let port = match port {
            "smtp" => "25",
            p if p.parse::<u16>().is_ok() => p,
            _ => return None,
        };
        let host = if host.is_empty() { "127.0.0.1" } else { host };
        Some(format!("{host}:{port}"))
    })
}

/// EHLO, MAIL FROM:<>, RCPT, DATA; the queue id, or the refusing reply.
fn send(addr: &str, rcpt: &str) -> Result<String, String> {
    let stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = stream;
    let mut step = |send: &str, want: &str| -> Result<String, String> {
        writer
            .write_all(send.as_bytes())
            .map_err(|e| e.to_string())?;
        let reply = reply(&mut reader)?;
        if reply.starts_with(want) {
            Ok(reply)
        } else {
            Err(reply)
        }
    };
    step("", "220")?;
    step("EHLO check.gitlab-mailgate.invalid\r\n", "250")?;
    step("MAIL FROM:<>\r\n", "250")?;
    step(&format!("RCPT TO:<{rcpt}>\r\n"), "250")?;
    step("DATA\r\n", "354")?;
    let message = format!(
        "From: gitlab-mailgate check <MAILER-DAEMON>\r\nTo: <{rcpt}>\r\n\
         Subject: gitlab-mailgate route test\r\nAuto-Submitted: auto-generated\r\n\r\n\
         A test of the route Postfix -> gitlab-mailgate; it is refused on purpose.\r\n.\r\n"
    );
    let done = step(&message, "250")?;
    let _ = step("QUIT\r\n", "221");
    done.split("queued as ")
        .nth(1)
        .map(|id| id.trim().to_string())
        .ok_or(format!("no queue id in {done:?}"))
}

/// One reply, its lines joined by spaces.
fn reply(reader: &mut impl BufRead) -> Result<String, String> {
    Ok(super::replies::reply_lines(reader)?.join(" "))
}
