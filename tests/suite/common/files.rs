//! Files the tests make: temporary directories (the `tempfile` crate's), files with exact modes,
//! secrets as GitLab writes them and mailbox keys from `keygen`.

use super::{bin, run, toml_string};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

/// A new, empty directory under `std::env::temp_dir()`, removed on drop
/// (kept when `GITLAB_MAILGATE_KEEP_TEST_DIRS` is set, for looking at a
/// failure). Mode 0755 like a directory made with the usual umask, not
/// tempfile's 0700: some tests run children as other users.
pub fn temp_dir() -> TempDir {
    let keep = std::env::var_os("GITLAB_MAILGATE_KEEP_TEST_DIRS").is_some();
    let dir = tempfile::Builder::new()
        .prefix("gitlab-mailgate-test-")
        .permissions(fs::Permissions::from_mode(0o755))
        .disable_cleanup(keep)
        .tempdir()
        .expect("create a temporary directory");
    if keep {
        eprintln!("keeping {}", dir.path().display());
    }
    dir
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
