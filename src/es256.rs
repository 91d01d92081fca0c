//! A mailbox's ES256 signing key: reading, checking, generating, and the
//! `kid` GitLab knows its public half by.
//!
//! The file is a PEM `PRIVATE KEY` (PKCS#8) for the curve P-256, as
//! `gitlab-mailgate keygen` or `openssl genpkey` write it. The file-mode
//! rules are the secret file's ([`crate::secret::check_mode`]). The key is
//! never printed: `Debug` is redacted and errors name only the file.
//!
//! The `kid` is what ruby-jwt computes for an EC key with its default
//! generator (`JWT::JWK::KidAsKeyDigest`, i.e. `JWT::JWK::EC#key_digest`):
//! the lowercase hex SHA-256 of the DER `SEQUENCE { INTEGER x, INTEGER y }`.
//! GitLab's mail_room authenticator spec takes a key's kid as
//! `JWT::JWK.new(key).export[:kid]`, with no generator given, and GitLab
//! configures no other global one, so that is the value it looks tokens up
//! by, although its comment says "RFC 7638 thumbprint".

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;

/// DER of `SubjectPublicKeyInfo` for P-256 up to the point: the algorithm
/// (id-ecPublicKey, prime256v1) and the BIT STRING header. The 65-byte
/// uncompressed point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// An ES256 private key and its `kid`.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    kid: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(kid {}, <redacted>)", self.kid)
    }
}

/// Why a signing key file cannot be used. `Display` says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The file could not be opened or read.
    Unreadable(String),
    /// Group or others may write to the file: anyone could swap the key.
    UnsafePermissions(u32),
    /// No `-----BEGIN PRIVATE KEY-----` block with valid base64 in it.
    NotPem,
    /// The PKCS#8 content is not an EC P-256 key ring accepts.
    NotP256,
    /// The system's random number generator failed.
    NoRandomness,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Unreadable(e) => write!(f, "cannot read the signing key file: {e}"),
            KeyError::UnsafePermissions(mode) => write!(
                f,
                "the signing key file has mode {mode:04o}, writable by group or others; \
                 make it root:gitlab-mailgate 0640 (chmod 0640)"
            ),
            KeyError::NotPem => f.write_str(
                "the signing key file holds no PEM \"PRIVATE KEY\" (PKCS#8) block; \
                 make one with `gitlab-mailgate keygen`",
            ),
            KeyError::NotP256 => f.write_str(
                "the signing key is not an EC P-256 key in PKCS#8 form; \
                 make one with `gitlab-mailgate keygen`",
            ),
            KeyError::NoRandomness => f.write_str("the system has no randomness to give"),
        }
    }
}

impl std::error::Error for KeyError {}

impl SigningKey {
    /// Reads and checks the key file at `path` (same mode rules as a secret).
    pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
        let (text, mode) = crate::file::read(path, crate::file::SECRET_MAX)
            .map_err(|e| KeyError::Unreadable(e.to_string()))?;
        if crate::secret::check_mode(mode).is_err() {
            return Err(KeyError::UnsafePermissions(mode & 0o7777));
        }
        SigningKey::from_pem(&text)
    }

    /// Decodes a PEM `PRIVATE KEY` block.
    pub fn from_pem(text: &[u8]) -> Result<SigningKey, KeyError> {
        let der = pem_decode(text, "PRIVATE KEY").ok_or(KeyError::NotPem)?;
        SigningKey::from_pkcs8(&der)
    }

    /// Decodes PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey, KeyError> {
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
                .map_err(|_| KeyError::NotP256)?;
        let kid = key_digest(pair.public_key().as_ref());
        Ok(SigningKey { pair, kid })
    }

    /// A new random key, and its PKCS#8 PEM text for the key file.
    pub fn generate() -> Result<(SigningKey, String), KeyError> {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| KeyError::NoRandomness)?;
        let key = SigningKey::from_pkcs8(doc.as_ref())?;
        Ok((key, pem_encode("PRIVATE KEY", doc.as_ref())))
    }

    /// The `kid` GitLab identifies the public key by.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo), the form
    /// GitLab's `public_key_files` hold.
    pub fn public_key_pem(&self) -> String {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.pair.public_key().as_ref());
        pem_encode("PUBLIC KEY", &der)
    }

    /// The JWS ES256 signature of `message`: `r || s`, 32 bytes each.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.pair
            .sign(&SystemRandom::new(), message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| KeyError::NoRandomness)
    }
}

/// ruby-jwt's `EC#key_digest` of an uncompressed point (`04 || x || y`):
/// hex SHA-256 of DER `SEQUENCE { INTEGER x, INTEGER y }`.
pub fn key_digest(point: &[u8]) -> String {
    let (x, y) = point[1..].split_at((point.len() - 1) / 2);
    let mut body = der_uint(x);
    body.extend(der_uint(y));
    // At most 2 × 35 bytes for P-256: the short length form always fits.
    let mut der = vec![0x30, body.len() as u8];
    der.extend(body);
    Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// DER INTEGER of an unsigned big-endian number: no leading zero bytes,
/// except one when the top bit is set (else it would read as negative).
fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let start = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len() - 1);
    let digits = &bytes[start..];
    let pad = digits[0] & 0x80 != 0;
    let mut out = vec![0x02, (digits.len() + usize::from(pad)) as u8];
    if pad {
        out.push(0);
    }
    out.extend_from_slice(digits);
    out
}

/// The content of the first `-----BEGIN {label}-----` block, decoded.
fn pem_decode(text: &[u8], label: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(text).ok()?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = text.split_once(&begin)?.1.split_once(&end)?.0;
    let b64: String = body.split_whitespace().collect();
    STANDARD.decode(b64).ok()
}

/// `der` as a PEM block with 64-character lines.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by python3-cryptography (OpenSSL), with its public key and the
    /// kid Python computed (`encode_dss_signature(x, y)` is the same DER).
    const OPENSSL_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgiuE7Kl0Psqo09HRX
0lto89HCGz5g5SiuXRnT5r+c0I2hRANCAASDPQ7toG6yJVL+cERPMaUjukK5B2nu
WGhX8M52Yx4X/byR77MFNPM/UpeN8rQdYwKaSlD3rvwlOHVG8ghemwmt
-----END PRIVATE KEY-----
";
    const OPENSSL_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEgz0O7aBusiVS/nBETzGlI7pCuQdp
7lhoV/DOdmMeF/28ke+zBTTzP1KXjfK0HWMCmkpQ9678JTh1RvIIXpsJrQ==
-----END PUBLIC KEY-----
";
    const OPENSSL_KID: &str = "e76975726103eb4d719be445f1a0ce87b67b9257423b5da53ebe47949be7fbff";

    #[test]
    fn reads_an_openssl_key_with_gitlabs_kid_and_public_key() {
        let key = SigningKey::from_pem(OPENSSL_KEY.as_bytes()).unwrap();
        assert_eq!(key.kid(), OPENSSL_KID);
        assert_eq!(key.public_key_pem(), OPENSSL_PUBLIC);
        assert!(!format!("{key:?}").contains("MIGH"));
    }

    #[test]
    fn generated_keys_round_trip_and_sign() {
        let (key, pem) = SigningKey::generate().unwrap();
        let again = SigningKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(key.kid(), again.kid());
        assert_eq!(key.kid().len(), 64);
        assert_eq!(key.sign(b"x").unwrap().len(), 64);
        let (other, _) = SigningKey::generate().unwrap();
        assert_ne!(key.kid(), other.kid());
    }

    #[test]
    fn der_integers_are_minimal_and_positive() {
        assert_eq!(der_uint(&[0x00, 0x00, 0x7f]), [0x02, 0x01, 0x7f]);
        assert_eq!(der_uint(&[0x00, 0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(der_uint(&[0x00, 0x00]), [0x02, 0x01, 0x00]);
    }

    #[test]
    fn rejects_what_is_not_a_p256_pkcs8_key() {
        assert_eq!(
            SigningKey::from_pem(b"not pem").unwrap_err(),
            KeyError::NotPem
        );
        let public_only = OPENSSL_PUBLIC.replace("PUBLIC", "PRIVATE");
        assert_eq!(
            SigningKey::from_pem(public_only.as_bytes()).unwrap_err(),
            KeyError::NotP256
        );
    }
}
