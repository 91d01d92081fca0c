//! `gitlab-mailgate check`: one line per check, `ok`, `warn` or `FAIL`
//! with what to fix; exit 0 only when nothing failed.
//!
//! It proves the route to GitLab without creating anything: a POST with a
//! deliberately invalid token must be answered 401. It says which token
//! mode (HS256 or ES256) each mailbox uses, and compares the clocks. Then
//! the Postfix side ([`route`]): routing, LHLO, chroot and permissions. It
//! never prints a secret, a private key or a token.

use crate::config::Config;
use crate::mailbox::Mailbox;
use crate::gitlab::{Client, IAT_BACKDATE_SECS};
use crate::jwt::{Credential, Signer};
use std::fmt::Display;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

mod public_keys;
mod route;
mod send_test;
pub use route::RouteOptions;

/// Clock skew above this is a warning: half of what tokens tolerate.
const WARN_SKEW_SECS: i64 = 60;

/// Clock skew above this fails the check. Tokens still work up to
/// [`IAT_BACKDATE_SECS`] (150 s) either way; the rest is margin for the
/// clocks drifting further apart.
const FAIL_SKEW_SECS: i64 = 120;

#[derive(Default)]
struct Report {
    failed: bool,
}

impl Report {
    fn ok(&mut self, what: impl Display) {
        println!("ok    {what}");
    }
    fn warn(&mut self, what: impl Display) {
        println!("warn  {what}");
    }
    fn fail(&mut self, what: impl Display) {
        println!("FAIL  {what}");
        self.failed = true;
    }
}

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
            report.ok(crate::http::describe(&config));
            for mailbox in &config.mailboxes {
                check_credential(&mut report, mailbox);
                check_domain(&mut report, &config, mailbox);
            }
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
        let (status, date) = match client.probe(mailbox.kind) {
            Ok(answer) => answer,
            Err(e) => {
                report.fail(format_args!("{endpoint}: cannot reach GitLab: {e}"));
                continue;
            }
        };
        match status {
            401 => report.ok(format_args!(
                "{endpoint} answers 401 to an invalid token: the route exists"
            )),
            404 => report.fail(format_args!(
                "{endpoint} answers 404: check [gitlab] url, or GitLab is too old for this API"
            )),
            s => report.fail(format_args!(
                "{endpoint} answers {s} to an invalid token, expected 401: check [gitlab] url and proxies"
            )),
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
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Parses an HTTP IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) to Unix time.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let mut parts = s.split_whitespace().skip(1);
    let day: i64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT" {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
