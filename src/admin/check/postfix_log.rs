//! Where `check --send-test` reads what Postfix logged, and the one pure
//! function that finds the delivery status of the test message in it.
//!
//! Postfix logs to `maillog_file` when it is set (postlogd); otherwise to
//! syslog, which on a stock Debian 12 is journald alone: there is no
//! `/var/log/mail.log` unless rsyslog is installed. So the order is
//! `maillog_file`, else the journal (`journalctl` with Postfix's syslog
//! identifiers, from the start of the test), else `/var/log/mail.log`.
//! Every read is bounded: a file from where it ended before the test, at
//! most [`MAX_READ`] bytes of it; journalctl at most [`MAX_READ`] bytes and
//! [`JOURNAL_LINES`] lines of output, and killed after [`JOURNAL_TIME`].

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// At most this much of a log is read per look.
const MAX_READ: u64 = 4 << 20;

/// journalctl shows at most the last this many lines per look.
const JOURNAL_LINES: u32 = 20_000;

/// journalctl is killed after this long.
const JOURNAL_TIME: Duration = Duration::from_secs(10);

/// The syslog file of Debian's rsyslog.
const MAIL_LOG: &str = "/var/log/mail.log";

/// The Postfix programs whose lines say what became of a message.
const PROGRAMS: [&str; 6] = ["smtpd", "cleanup", "qmgr", "lmtp", "smtp", "bounce"];

/// Where Postfix's log is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    /// Postfix's own `maillog_file`.
    MaillogFile(PathBuf),
    /// The journal, by these syslog identifiers (`postfix/lmtp`, …).
    Journal(Vec<String>),
    /// A syslog file (rsyslog's `/var/log/mail.log`).
    Syslog(PathBuf),
    /// None of them: nothing to read.
    Nowhere,
}

/// What the host has, as far as the choice goes.
pub(super) struct Host {
    /// `postconf -h maillog_file` (empty: not set).
    pub(super) maillog_file: String,
    /// `postconf -h syslog_name` (`postfix`, or an instance's name).
    pub(super) syslog_name: String,
    /// journald runs and journalctl is installed.
    pub(super) journal: bool,
    /// `/var/log/mail.log` exists.
    pub(super) mail_log: bool,
}

impl Host {
    /// This machine.
    pub(super) fn here(maillog_file: String, syslog_name: String) -> Host {
        Host {
            maillog_file,
            syslog_name,
            journal: Path::new("/run/systemd/journal").is_dir() && journalctl().is_some(),
            mail_log: Path::new(MAIL_LOG).is_file(),
        }
    }
}

/// `maillog_file`, else the journal, else `/var/log/mail.log`.
pub(super) fn choose(host: &Host) -> Source {
    if !host.maillog_file.trim().is_empty() {
        Source::MaillogFile(PathBuf::from(host.maillog_file.trim()))
    } else if host.journal {
        let name = match host.syslog_name.trim() {
            "" => "postfix",
            n => n,
        };
        Source::Journal(PROGRAMS.iter().map(|p| format!("{name}/{p}")).collect())
    } else if host.mail_log {
        Source::Syslog(PathBuf::from(MAIL_LOG))
    } else {
        Source::Nowhere
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::MaillogFile(p) => write!(f, "Postfix's maillog_file {}", p.display()),
            Source::Journal(ids) => {
                write!(f, "the journal (journalctl")?;
                ids.iter().try_for_each(|id| write!(f, " -t {id}"))?;
                write!(f, ")")
            }
            Source::Syslog(p) => write!(f, "{}", p.display()),
            Source::Nowhere => write!(
                f,
                "no Postfix log (no maillog_file, no journal, no {MAIL_LOG}): \
                 set one with `postconf -e maillog_file=/var/log/postfix.log`"
            ),
        }
    }
}

/// Reads one source from where the test began.
pub(super) struct Reader {
    source: Source,
    /// Where a file ended before the test.
    offset: u64,
    /// When the test began (journal: `--since`).
    since: SystemTime,
}

impl Reader {
    pub(super) fn start(source: Source) -> Reader {
        let offset = match &source {
            Source::MaillogFile(p) | Source::Syslog(p) => {
                std::fs::metadata(p).map_or(0, |m| m.len())
            }
            _ => 0,
        };
        // A second back: the journal's --since has whole seconds.
        let since = SystemTime::now() - Duration::from_secs(1);
        Reader {
            source,
            offset,
            since,
        }
    }

    /// What was logged since the start, bounded.
    pub(super) fn read(&self) -> String {
        match &self.source {
            Source::MaillogFile(p) | Source::Syslog(p) => read_file_from(p, self.offset),
            Source::Journal(ids) => read_journal(ids, self.since),
            Source::Nowhere => String::new(),
        }
    }
}

fn read_file_from(path: &Path, offset: u64) -> String {
    use std::io::{Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    // A log rotated since the start is read from its beginning.
    let len = file.metadata().map_or(0, |m| m.len());
    let offset = if len < offset { 0 } else { offset };
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(offset)).is_ok() {
        let _ = file.take(MAX_READ).read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn journalctl() -> Option<PathBuf> {
    ["/usr/bin/journalctl", "/bin/journalctl"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// `journalctl -o cat -t ID … --since @T`, bounded in output and time.
fn read_journal(ids: &[String], since: SystemTime) -> String {
    let Some(program) = journalctl() else {
        return String::new();
    };
    let since = since.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut cmd = Command::new(program);
    cmd.args(["--no-pager", "-q", "-o", "cat"])
        .arg(format!("--since=@{since}"))
        .arg(format!("--lines={JOURNAL_LINES}"));
    for id in ids {
        cmd.arg("-t").arg(id);
    }
    let Ok(mut child) = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return String::new();
    };
    let Some(stdout) = child.stdout.take() else {
        return String::new();
    };
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.take(MAX_READ).read_to_end(&mut bytes);
        bytes
    });
    let started = Instant::now();
    while matches!(child.try_wait(), Ok(None)) {
        if started.elapsed() > JOURNAL_TIME {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned()
}

/// The line with the delivery status of `queue_id` to `rcpt` in `log`,
/// in any of Postfix's forms: maillog_file's, syslog's, or the journal's
/// `-o short-iso` and `-o cat` (`QUEUEID: to=<RCPT>, …, status=…`).
pub(super) fn status_line<'a>(log: &'a str, queue_id: &str, rcpt: &str) -> Option<&'a str> {
    let want = format!("{queue_id}: to=<{rcpt}>");
    log.lines().find(|l| {
        l.split_once(&want).is_some_and(|(before, after)| {
            (before.is_empty() || before.ends_with(' ')) && after.contains(", status=")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(maillog_file: &str, journal: bool, mail_log: bool) -> Host {
        Host {
            maillog_file: maillog_file.into(),
            syslog_name: "postfix".into(),
            journal,
            mail_log,
        }
    }

    #[test]
    fn maillog_file_then_journal_then_mail_log() {
        let file = Source::MaillogFile("/var/log/postfix.log".into());
        assert_eq!(choose(&host("/var/log/postfix.log", true, true)), file);
        let Source::Journal(ids) = choose(&host("", true, true)) else {
            panic!("journal not chosen")
        };
        assert!(ids.contains(&"postfix/lmtp".to_string()));
        assert!(ids.contains(&"postfix/smtp".to_string()));
        assert_eq!(
            choose(&host(" ", false, true)),
            Source::Syslog(MAIL_LOG.into())
        );
        assert_eq!(choose(&host("", false, false)), Source::Nowhere);
        let mut instance = host("", true, false);
        instance.syslog_name = "postfix-out".into();
        let Source::Journal(ids) = choose(&instance) else {
            panic!("journal not chosen")
        };
        assert!(ids.iter().all(|id| id.starts_with("postfix-out/")));
        let said = choose(&host("", true, false)).to_string();
        assert!(said.contains("journalctl -t postfix/smtpd"), "{said}");
    }

    #[test]
    fn finds_the_status_in_journal_output() {
        let rcpt = "incoming+gitlab-mailgate-route-test@in.example";
        let short_iso = format!(
            "2026-12-06T03:10:00+0000 gl postfix/smtpd[812]: 4C2F21F6A1: client=localhost[127.0.0.1]\n\
             2026-12-06T03:10:00+0000 gl postfix/qmgr[700]: 4C2F21F6A1: from=<>, size=412, nrcpt=1 (queue active)\n\
             2026-12-06T03:10:00+0000 gl postfix/lmtp[815]: 14C2F21F6A1: to=<{rcpt}>, relay=x, status=sent (250)\n\
             2026-12-06T03:10:00+0000 gl postfix/lmtp[815]: 4C2F21F6A1: to=<{rcpt}>, relay=gitlab-mailgate[/run/gitlab-mailgate/lmtp.sock], \
             delay=0.02, dsn=5.1.1, status=bounced (host said: 550 5.1.1 no such GitLab address)\n"
        );
        let line = status_line(&short_iso, "4C2F21F6A1", rcpt).expect("found");
        assert!(
            line.contains("status=bounced") && line.contains("5.1.1"),
            "{line}"
        );
        let cat = format!(
            "4C2F21F6A1: from=<>, size=412, nrcpt=1 (queue active)\n\
             4C2F21F6A1: to=<{rcpt}>, relay=gitlab-mailgate, dsn=5.1.1, status=bounced (550 5.1.1 x)\n"
        );
        let line = status_line(&cat, "4C2F21F6A1", rcpt).expect("found");
        assert!(line.starts_with("4C2F21F6A1: to=<") && line.contains("status=bounced"));
        assert_eq!(status_line(&cat, "4C2F21F6A", rcpt), None);
        assert_eq!(
            status_line("4C2F21F6A1: to=<x@y>, orig_to=<a>\n", "4C2F21F6A1", "x@y"),
            None
        );
        assert_eq!(status_line("", "4C2F21F6A1", rcpt), None);
    }
}
