//! The Postfix half of `check`: for each incoming domain, Postfix routes it
//! to gitlab-mailgate (`transport_maps` by `postmap -q`, `relay_domains`),
//! the LMTP target answers `LHLO`, and Postfix's lmtp client can reach a
//! unix socket at all (chroot, permissions of the user `postfix`).

use super::replies::reply_lines;
use super::report::Report;
use crate::access::{Need, User};
use crate::admin::postfix_conf::{list, Postfix};
use crate::config::Config;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which Postfix to check, and whether a missing route is a failure.
#[derive(Debug, Clone, Default)]
pub struct RouteOptions {
    /// `postconf -c DIR`; the system's Postfix when `None`.
    pub postfix_config: Option<PathBuf>,
    /// Fail (not warn) when Postfix is absent or does not route a domain.
    pub required: bool,
    /// Also send a test message through Postfix ([`super::send_test`]).
    pub send_test: bool,
}

pub(super) fn check_route(report: &mut Report, config: &Config, opts: &RouteOptions) {
    let missing = |report: &mut Report, text: String| {
        if opts.required {
            report.fail(text)
        } else {
            report.warn(text)
        }
    };
    if !Postfix::installed() {
        return missing(report, "Postfix is not installed: route not checked".into());
    }
    let pf = Postfix {
        config_dir: opts.postfix_config.clone(),
    };
    let (relay, queue) = match (pf.get("relay_domains"), pf.get("queue_directory")) {
        (Ok(r), Ok(q)) => (list(&r), q),
        (Err(e), _) | (_, Err(e)) => {
            return missing(
                report,
                format!("Postfix not configured, route not checked: {e}"),
            )
        }
    };
    let mut domains: Vec<String> = config
        .mailboxes
        .iter()
        .map(|m| m.template.domain().to_ascii_lowercase())
        .collect();
    domains.dedup();
    let mut tested = Vec::new();
    for domain in domains {
        if !relay.iter().any(|r| r.eq_ignore_ascii_case(&domain)) {
            missing(
                report,
                format!(
                    "Postfix's relay_domains does not list {domain}: mail for it is refused \
                 (gitlab-mailgate setup --postfix adds it)"
                ),
            );
        }
        let target = match pf.transport_of(&domain) {
            Ok(Some(t)) => t,
            Ok(None) => {
                missing(
                    report,
                    format!(
                        "Postfix has no transport_maps entry for {domain}: it does not reach \
                     gitlab-mailgate (gitlab-mailgate setup --postfix)"
                    ),
                );
                continue;
            }
            Err(e) => return report.fail(e),
        };
        report.ok(format_args!("Postfix routes {domain} to {target}"));
        if !tested.contains(&target) {
            check_target(report, &pf, &queue, &target);
            tested.push(target);
        }
    }
    super::lookup::check(report, config, &pf);
    if opts.send_test {
        super::send_test::run(report, config, &pf);
    }
}

fn check_target(report: &mut Report, pf: &Postfix, queue: &str, target: &str) {
    if let Some(path) = target.strip_prefix("lmtp:unix:") {
        let chrooted = pf.lmtp_chrooted().unwrap_or(false);
        let socket = Path::new(queue).join(path);
        if chrooted && path.starts_with('/') && !Path::new(path).starts_with(queue) {
            return report.fail(format_args!(
                "Postfix's lmtp runs chrooted in {queue} and would look for {queue}{path}: \
                 run postconf -F lmtp/unix/chroot=n (as setup does) or put the socket below {queue}"
            ));
        }
        let owner = pf.get("mail_owner").unwrap_or_else(|_| "postfix".into());
        match User::lookup(&owner).and_then(|u| u.blocked(&socket, Need::Connect)) {
            Some(why) => report.fail(format_args!("Postfix's lmtp client: {why}")),
            None if !socket.exists() => {}
            None => report.ok(format_args!(
                "user {owner} may connect to {} (lmtp {})",
                socket.display(),
                if chrooted { "chrooted" } else { "not chrooted" }
            )),
        }
        let connection = std::os::unix::net::UnixStream::connect(&socket).and_then(|s| {
            s.set_read_timeout(Some(PROBE_TIMEOUT))?;
            Ok((s.try_clone()?, s))
        });
        report_lhlo(report, target, lhlo(connection));
    } else if let Some(addr) = target
        .strip_prefix("lmtp:inet:")
        .or_else(|| target.strip_prefix("lmtp:"))
    {
        let addr = addr.replace(['[', ']'], "");
        let connection = std::net::TcpStream::connect(&addr).and_then(|s| {
            s.set_read_timeout(Some(PROBE_TIMEOUT))?;
            Ok((s.try_clone()?, s))
        });
        report_lhlo(report, target, lhlo(connection));
    } else {
        report.ok(format_args!(
            "{target} is not LMTP (the pipe transport?): no socket to test"
        ));
    }
}

fn report_lhlo(report: &mut Report, target: &str, answer: Result<String, String>) {
    match answer {
        Ok(greeting) => report.ok(format_args!("{target} answers LHLO ({greeting})")),
        Err(e) => report.fail(format_args!(
            "{target} does not answer LHLO: {e} (is gitlab-mailgate.socket or \
             gitlab-mailgate serve running?)"
        )),
    }
}

/// Greeting, `LHLO`, `QUIT` over a new connection (its read and write
/// halves); returns the greeting's first line.
fn lhlo<S: Read + Write>(connection: std::io::Result<(S, S)>) -> Result<String, String> {
    let (reader, mut writer) = connection.map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(reader);
    let greeting = reply(&mut reader)?;
    if !greeting.starts_with("220") {
        return Err(format!("greeting {greeting:?}"));
    }
    writer
        .write_all(b"LHLO check.gitlab-mailgate.invalid\r\n")
        .map_err(|e| e.to_string())?;
    let answer = reply(&mut reader)?;
    if !answer.starts_with("250") {
        return Err(format!("LHLO answered {answer:?}"));
    }
    let _ = writer.write_all(b"QUIT\r\n");
    Ok(greeting)
}

/// One reply's first line.
fn reply(reader: &mut impl BufRead) -> Result<String, String> {
    Ok(reply_lines(reader)?.swap_remove(0))
}

/// Timeouts for the probe connections.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
