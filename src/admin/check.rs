//! `gitlab-mailgate check`: one line per check, `ok`, `warn` or `FAIL`
//! with what to fix; exit 0 only when nothing failed.
//!
//! It proves the route to GitLab without creating anything: a POST with a
//! deliberately invalid token must be answered 401; then that GitLab
//! accepts our real token, with a message it drops unread (`token`). It
//! says which token mode (HS256 or ES256) each mailbox uses, compares the
//! clocks, and a copied secret with GitLab's own file where it can. Then
//! the Postfix side ([`route`]): routing, LHLO, chroot and permissions,
//! and the recipient lookup Postfix asks at `RCPT` ([`lookup`]). It
//! never prints a secret, a private key or a token.

use crate::config::Config;
use crate::gitlab::{Client, IAT_BACKDATE_SECS};
use crate::jwt::{Credential, Signer};
use crate::mailbox::Mailbox;
use crate::outcome::Probe;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

mod lookup;
mod postfix_log;
mod public_keys;
mod replies;
mod report;
mod route;
mod send_test;
mod token;
use report::Report;
pub use route::RouteOptions;

/// Clock skew above this is a warning: half of what tokens tolerate.
const WARN_SKEW_SECS: i64 = 60;

/// Clock skew above this fails the check. Tokens still work up to
/// [`IAT_BACKDATE_SECS`] (150 s) either way; the rest is margin for the
/// clocks drifting further apart.
const FAIL_SKEW_SECS: i64 = 120;

/// Runs every check against the configuration at `path`, and the Postfix
/// route as `route` says.
pub fn run(path: &Path, route: &RouteOptions) -> ExitCode {
    let mut report = Report::default();
    match Config::load(path) {
        Ok(config) => {
            report.ok(format_args!("config {} parses", path.display()));
            if let Some(file) = &config.gitlab.config_file {
                report.ok(format_args!(
                    "GitLab's settings read from {}: url {}",
                    file.display(),
                    config.gitlab.url
                ));
            }
            report.ok(crate::http::describe(&config.http));
            report.ok(crate::lookup::describe(&config.lookup));
            for mailbox in &config.mailboxes {
                check_template(&mut report, mailbox);
                check_credential(&mut report, mailbox);
                check_domain(&mut report, &config, mailbox);
            }
            token::check_copies(&mut report, &config);
            public_keys::check(&mut report, &config);
            check_gitlab(&mut report, &config);
            route::check_route(&mut report, &config, route);
        }
        Err(e) => report.fail(e),
    }
    if report.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn check_credential(report: &mut Report, mailbox: &Mailbox) {
    let name = mailbox.kind.name();
    let credential = &mailbox.credential;
    let (setting, file) = match credential {
        Credential::Secret(path) => ("secret_file", path.display()),
        Credential::SigningKey { key_file, .. } => ("signing_key_file", key_file.display()),
    };
    let meta = match std::fs::metadata(credential.file()) {
        Ok(m) => m,
        Err(e) => return report.fail(format_args!("{name} {setting} {file}: {e}")),
    };
    let mode = meta.mode() & 0o7777;
    // Credential::load refuses unsafe modes too.
    let what = match credential.load() {
        Ok(Signer::Hs256(_)) => "HS256 (shared secret): decodes to 32 bytes".to_string(),
        Ok(Signer::Es256(key)) => format!(
            "ES256 (GitLab needs the public key in its public_key_files): kid {}",
            key.kid()
        ),
        Err(e) => return report.fail(format_args!("{name} {e}")),
    };
    if mode & 0o004 != 0 {
        report.warn(format_args!(
            "{name} {setting} {file} is readable by everyone (mode {mode:04o}): \
             make it root:gitlab-mailgate 0640"
        ));
    }
    report.ok(format_args!(
        "{name} signs {what}; {setting} {file}, mode {mode:04o} \
         (expected root:gitlab-mailgate 0640)"
    ));
    if let Credential::SigningKey {
        secret_file: Some(secret),
        ..
    } = credential
    {
        report.ok(format_args!(
            "{name} secret_file {} is valid but unused: signing_key_file wins",
            secret.display()
        ));
    }
}

/// An address without `%{key}` is refused as `setup` refuses it in
/// gitlab.yml: GitLab could not tell one issue's reply from another's.
fn check_template(report: &mut Report, mailbox: &Mailbox) {
    if mailbox.template.with_key("k").is_none() {
        report.fail(format_args!(
            "{} address \"{}\" {}",
            mailbox.kind.name(),
            mailbox.template,
            crate::address::NO_KEY
        ));
    }
}

/// GitLab warns against receiving mail on its own domain or a parent of
/// it: anyone could then sign up with an incoming address (GitLab issue 30366).
fn check_domain(report: &mut Report, config: &Config, mailbox: &Mailbox) {
    let domain = mailbox.template.domain().to_ascii_lowercase();
    let host = config.gitlab.host.to_ascii_lowercase();
    if host == domain || host.ends_with(&format!(".{domain}")) {
        report.warn(format_args!(
            "{} domain {domain} is GitLab's own domain or a parent of it: use a dedicated \
             subdomain (e.g. incoming.{host}) so incoming addresses cannot be used to verify sign-ups",
            mailbox.kind.name()
        ));
    }
}

fn check_gitlab(report: &mut Report, config: &Config) {
    let client = match Client::new(&config.gitlab) {
        Ok(c) => c,
        Err(e) => return report.fail(format_args!("gitlab: {e}")),
    };
    for mailbox in &config.mailboxes {
        let endpoint = client.endpoint(mailbox.kind);
        let before = now();
        let (posted, date) = client.probe(mailbox.kind);
        let probe = Probe::classify(posted);
        match probe.route_exists {
            true => report.ok(format_args!("{endpoint}{}", probe.text)),
            false => report.fail(format_args!("{endpoint}{}", probe.text)),
        }
        if !probe.answered {
            continue;
        }
        let after = now();
        match date.as_deref().and_then(parse_http_date) {
            Some(theirs) => {
                let skew = if theirs < before - 1 {
                    theirs - before
                } else if theirs > after {
                    theirs - after
                } else {
                    0
                };
                let text = format_args!(
                    "clock skew against GitLab {skew} s (tokens tolerate {IAT_BACKDATE_SECS} s \
                     either way; warn above {WARN_SKEW_SECS}, fail above {FAIL_SKEW_SECS})"
                );
                match skew.abs() {
                    s if s > FAIL_SKEW_SECS => report.fail(format_args!(
                        "{text}: GitLab will soon refuse our tokens; run NTP here and on GitLab"
                    )),
                    s if s > WARN_SKEW_SECS => {
                        report.warn(format_args!("{text}: run NTP here and on GitLab"))
                    }
                    _ => report.ok(text),
                }
            }
            None => report.warn("GitLab sent no usable Date header: clock skew not checked"),
        }
        // After the clock: a token GitLab refuses for its iat is told apart.
        if probe.route_exists {
            token::check_token(report, &client, mailbox);
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) as Unix time.
fn parse_http_date(s: &str) -> Option<i64> {
    let at = httpdate::parse_http_date(s).ok()?;
    at.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Thu, 26 Nov 2026 06:50:00 GMT"),
            Some(1795675800)
        );
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
        assert_eq!(parse_http_date("garbage"), None);
    }
}
