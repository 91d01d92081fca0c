//! GitLab's shared secret: reading, checking and decoding a secret file.
//!
//! The file holds standard base64 (padding required) plus at most one line
//! ending; decoded it must be exactly 32 bytes, GitLab's own rule. Those raw
//! bytes are the HMAC key. The secret is never printed: [`Secret`]'s `Debug`
//! is redacted and errors name only the file.

use base64::Engine as _;
use std::fmt;
use std::path::Path;

/// The 32-byte HMAC key shared with GitLab.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why a secret file cannot be used. `Display` says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretError {
    /// The file could not be opened or read.
    Unreadable(String),
    /// Group or others may write to the file: anyone could swap the key.
    UnsafePermissions(u32),
    /// The content is not strict standard base64.
    NotBase64,
    /// Decoded, the content is not 32 bytes long.
    WrongLength(usize),
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::Unreadable(e) => write!(f, "cannot read the secret file: {e}"),
            SecretError::UnsafePermissions(mode) => write!(
                f,
                "the secret file has mode {mode:04o}, writable by group or others; \
                 make it root:gitlab-mailgate 0640 (chmod 0640)"
            ),
            SecretError::NotBase64 => f.write_str(
                "the secret file is not strict base64 (copy GitLab's secret file unchanged)",
            ),
            SecretError::WrongLength(n) => write!(
                f,
                "the secret decodes to {n} bytes, GitLab requires exactly 32 \
                 (copy GitLab's secret file unchanged)"
            ),
        }
    }
}

impl std::error::Error for SecretError {}

impl Secret {
    /// Reads, checks and decodes the secret file at `path`.
    pub fn load(path: &Path) -> Result<Secret, SecretError> {
        let (text, mode) = crate::file::read(path, crate::file::SECRET_MAX)
            .map_err(|e| SecretError::Unreadable(e.to_string()))?;
        check_mode(mode)?;
        Secret::decode(&text)
    }

    /// Decodes the content of a secret file: one trailing line ending is
    /// allowed, nothing else around or inside the base64.
    pub fn decode(text: &[u8]) -> Result<Secret, SecretError> {
        let text = text
            .strip_suffix(b"\r\n")
            .or_else(|| text.strip_suffix(b"\n"))
            .or_else(|| text.strip_suffix(b"\r"))
            .unwrap_or(text);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| SecretError::NotBase64)?;
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SecretError::WrongLength(bytes.len()))?;
        Ok(Secret(key))
    }

    /// The raw key bytes, for the HMAC.
    pub fn key(&self) -> &[u8] {
        &self.0
    }
}

/// Refuses files that group or others can write.
pub fn check_mode(mode: u32) -> Result<(), SecretError> {
    if mode & 0o022 != 0 {
        return Err(SecretError::UnsafePermissions(mode & 0o7777));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn decodes_with_any_single_line_ending() {
        for end in ["", "\n", "\r\n", "\r"] {
            let s = Secret::decode(format!("{GOOD}{end}").as_bytes()).unwrap();
            assert_eq!(s.key()[31], 31);
        }
    }

    #[test]
    fn rejects_two_line_endings_spaces_and_missing_padding() {
        for bad in [
            format!("{GOOD}\n\n"),
            format!(" {GOOD}"),
            GOOD.trim_end_matches('=').to_string(),
            format!("{}\n{}", &GOOD[..20], &GOOD[20..]),
        ] {
            assert_eq!(
                Secret::decode(bad.as_bytes()),
                Err(SecretError::NotBase64),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rejects_wrong_length() {
        assert_eq!(Secret::decode(b"AAEC"), Err(SecretError::WrongLength(3)));
    }

    #[test]
    fn debug_and_errors_never_show_the_key() {
        let s = Secret::decode(GOOD.as_bytes()).unwrap();
        assert!(!format!("{s:?}").contains("AAEC"));
    }

    #[test]
    fn group_or_world_writable_is_refused() {
        assert!(check_mode(0o100640).is_ok());
        assert!(check_mode(0o100600).is_ok());
        assert!(check_mode(0o100660).is_err());
        assert!(check_mode(0o100602).is_err());
    }
}
