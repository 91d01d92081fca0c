//! What GitLab will make of the bytes we posted: the key our header lookup
//! finds in a body the stand-in recorded, the `key=` of our log line, and
//! the project's own test e-mails (`tests/emails/`).

use super::project_file;
use gitlab_mailgate::address::Template;
use gitlab_mailgate::message::Headers;

/// The GitLab host written into configurations that need References keys
/// (`[gitlab] host`), as in `tests/emails/README.md`.
pub const GITLAB_HOST: &str = "gitlab.example.com";

/// A second reply key, for recipients that must not be confused with [`super::KEY`].
pub const OTHER_KEY: &str = "0123456789abcdef0123456789abcdef";

/// The `key=` value in one of our log lines (`-` when none was found).
pub fn logged_key(line: &str) -> &str {
    line.split(", ")
        .find_map(|part| part.strip_prefix("key="))
        .unwrap_or_else(|| panic!("no key= in {line:?}"))
}

/// The key our header lookup finds in `posted`, the exact bytes GitLab
/// received (our `Delivered-To:` line included), for `template`; `-` when
/// none, as the log line writes it.
pub fn key_in_posted(template: &str, posted: &[u8]) -> String {
    let template = Template::parse(template).expect("valid template");
    Headers::parse(posted)
        .gitlab_key(&template, GITLAB_HOST, "")
        .unwrap_or_else(|| "-".into())
}

/// The project's own test e-mails, `(file name, bytes)`, sorted by name.
pub fn own_emails() -> Vec<(String, Vec<u8>)> {
    let dir = project_file("tests/emails");
    let mut emails: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("read tests/emails")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&p).expect("read a test e-mail");
            (name, bytes)
        })
        .collect();
    emails.sort();
    assert!(
        emails.len() >= 15,
        "tests/emails has {} e-mails",
        emails.len()
    );
    emails
}

/// A message with no key in the headers GitLab reads: only an envelope
/// recipient can give it one.
pub fn keyless_message(subject: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\n\
         To: Bob <bob@example.org>\r\n\
         Subject: {subject}\r\n\
         Message-ID: <{subject}.test@example.org>\r\n\
         \r\n\
         No key in To or References.\r\n"
    )
    .into_bytes()
}
