//! Files the tests make: temporary directories, files with exact modes,
//! secrets as GitLab writes them and mailbox keys from `keygen`.

use super::{bin, run, toml_string};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A directory under `std::env::temp_dir()`, removed on drop (kept when
/// `GITLAB_MAILGATE_KEEP_TEST_DIRS` is set, for looking at a failure).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a new, empty directory with a unique name.
    pub fn new() -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        for _ in 0..100 {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let path = std::env::temp_dir().join(format!(
                "gitlab-mailgate-test-{}-{}-{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            if fs::create_dir(&path).is_ok() {
                return TempDir { path };
            }
        }
        panic!("cannot create a temporary directory");
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("GITLAB_MAILGATE_KEEP_TEST_DIRS").is_none() {
            let _ = fs::remove_dir_all(&self.path);
        } else {
            eprintln!("kept {}", self.path.display());
        }
    }
}

/// Writes `contents` to `path` with permission bits `mode` (exactly: the
/// umask does not apply).
pub fn write_file(path: &Path, contents: &[u8], mode: u32) {
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(contents).expect("write file");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Runs `gitlab-mailgate keygen MAILBOX --out DIR/NAME`, which must
/// succeed; returns the key file and a file `DIR/NAME.pub` with the public
/// key it printed (the PEM block of its output).
pub fn keygen(dir: &Path, mailbox: &str, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(name);
    let out = run(
        Command::new(bin())
            .args(["keygen", mailbox, "--out"])
            .arg(&key),
        b"",
    );
    assert_eq!(out.code, Some(0), "keygen: {}{}", out.out(), out.err());
    let text = out.out();
    let begin = text
        .find("-----BEGIN PUBLIC KEY-----")
        .expect("a public key");
    let end = text.find("-----END PUBLIC KEY-----").expect("its end") + 24;
    let public = dir.join(format!("{name}.pub"));
    write_file(
        &public,
        format!("{}\n", &text[begin..end]).as_bytes(),
        0o644,
    );
    (key, public)
}

/// The `signing_key_file = "…"` line for `key`.
pub fn signing_key_line(key: &Path) -> String {
    format!("signing_key_file = {}", toml_string(&key.to_string_lossy()))
}

/// A new random secret as GitLab writes it: base64 of 32 bytes and `\n`.
pub fn new_secret_text() -> String {
    let mut key = [0u8; 32];
    getrandom::getrandom(&mut key).expect("random bytes");
    format!("{}\n", BASE64.encode(key))
}

/// Writes a fresh secret file as GitLab does ([`new_secret_text`], mode
/// 0600), replacing any file there; returns the base64 text, for checking
/// that no output shows it.
pub fn write_secret(path: &Path) -> String {
    let text = new_secret_text();
    write_file(path, text.as_bytes(), 0o600);
    text.trim_end().to_string()
}
